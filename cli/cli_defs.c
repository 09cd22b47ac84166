/* cli_defs: definitions YAML -> Feast protobuf objects (see cli_defs.h). */
#include "cli_defs.h"
#include "cli_util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

#include "feast/core/FeatureService.pb-c.h"
#include "feast/core/FeatureView.pb-c.h"
#include "feast/core/OnDemandFeatureView.pb-c.h"
#include "feast/core/Permission.pb-c.h"
#include "feast/core/Project.pb-c.h"
#include "ld_time.h"

const char *const cd_kind_label[CD_NKINDS] = {
        "project",         "data source", "entity", "feature view", "on demand feature view",
        "feature service", "permission",
};

/* Feast's class paths (data_source_class_type). */
#define CLS_FILE    "feast.infra.offline_stores.file_source.FileSource"
#define CLS_PUSH    "feast.data_source.PushSource"
#define CLS_REQUEST "feast.data_source.RequestSource"
#define CLS_POSTGRES                                                                               \
    "feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source.PostgreSQLSource"

#define DUMMY_ENTITY_NAME "__dummy"
#define DUMMY_ENTITY_ID   "__dummy_id"

typedef struct doc {
    yaml_document_t y;
    const char *file;
    int loaded;
} doc;

typedef struct item {
    cd_kind kind;
    const char *name;
    doc *d;
    yaml_node_t *node;
    char path[64];
    int state; /* 0 not built, 1 building, 2 built, 3 failed */
    void *built;
} item;

typedef struct ctx {
    const ld_config *cfg;
    const char *project;
    const Feast__Core__Registry *reg;
    ld_arena *a;
    ld_buf *errs;
    int nerr;
    item *items;
    size_t nitems, cap;
    Feast__Core__DataSource__SourceMeta *src_meta;
    cd_defs *out;
} ctx;

/* ------------------------------------------------------------ basics */

static void *cnew(ctx *c, size_t n)
{
    void *p = ld_arena_calloc(c->a, 1, n);
    if (!p) {
        fprintf(stderr, "larder: out of memory\n");
        exit(1);
    }
    return p;
}

static char *cstr(ctx *c, const char *s)
{
    char *p = ld_arena_strdup(c->a, s ? s : "");
    if (!p) {
        fprintf(stderr, "larder: out of memory\n");
        exit(1);
    }
    return p;
}

#define NEWMSG(c, T, init_fn)                                                                      \
    ({                                                                                             \
        T *m_ = cnew((c), sizeof(T));                                                              \
        init_fn(m_);                                                                               \
        m_;                                                                                        \
    })

static void verr(ctx *c, const char *file, int line, const char *path, const char *fmt, va_list ap)
{
    c->nerr++;
    if (c->nerr > CD_MAX_ERRORS)
        return;
    if (path && *path)
        ld_buf_printf(c->errs, "%s:%d: key '%s': ", file, line, path);
    else
        ld_buf_printf(c->errs, "%s:%d: ", file, line);
    ld_buf_vprintf(c->errs, fmt, ap);
    ld_buf_putc(c->errs, '\n');
}

static void err(ctx *c, const doc *d, const yaml_node_t *n, const char *path, const char *fmt, ...)
        __attribute__((format(printf, 5, 6)));
static void err(ctx *c, const doc *d, const yaml_node_t *n, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verr(c, d->file, n ? (int)n->start_mark.line + 1 : 1, path, fmt, ap);
    va_end(ap);
}

static yaml_node_t *node(const doc *d, int i)
{
    return yaml_document_get_node((yaml_document_t *)&d->y, i);
}

static const char *scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int is_plain(const yaml_node_t *n)
{
    return n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

/* YAML 1.1 null as PyYAML resolves it: ~, null, Null, NULL or nothing. */
static int is_null(const yaml_node_t *n)
{
    if (!n)
        return 1;
    if (!is_plain(n))
        return 0;
    const char *s = scalar(n);
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

/* YAML 1.1 booleans: 1 true, 0 false, -1 not a boolean. */
static int yaml_bool(const yaml_node_t *n)
{
    static const char *const t[] = {"yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"};
    static const char *const f[] = {"no",    "No",  "NO",  "false", "False",
                                    "FALSE", "off", "Off", "OFF"};
    if (!is_plain(n))
        return -1;
    for (size_t i = 0; i < 9; i++) {
        if (!strcmp(scalar(n), t[i]))
            return 1;
        if (!strcmp(scalar(n), f[i]))
            return 0;
    }
    return -1;
}

static const char *node_kind(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_MAPPING_NODE:
        return "a mapping";
    case YAML_SEQUENCE_NODE:
        return "a list";
    default:
        return yaml_bool(n) >= 0 ? "a boolean" : "a scalar";
    }
}

static yaml_node_t *map_get(const doc *d, const yaml_node_t *map, const char *key)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    yaml_node_t *found = NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        const char *k = scalar(node(d, p->key));
        if (k && !strcmp(k, key))
            found = node(d, p->value);
    }
    return found;
}

static void subpath(char *out, size_t n, const char *path, const char *key)
{
    if (path && *path)
        snprintf(out, n, "%s.%s", path, key);
    else
        snprintf(out, n, "%s", key);
}

/* Unknown and repeated keys of a mapping. Returns -1 when any. */
static int check_keys(ctx *c, const doc *d, const yaml_node_t *map, const char *path,
                      const char *const *allowed)
{
    int bad = 0;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *kn = node(d, p->key);
        const char *k = scalar(kn);
        char sp[256];
        if (!k) {
            err(c, d, kn, path, "keys must be strings, not %s", node_kind(kn));
            bad = 1;
            continue;
        }
        subpath(sp, sizeof sp, path, k);
        int ok = 0;
        for (size_t i = 0; allowed[i]; i++)
            ok |= !strcmp(allowed[i], k);
        if (!ok) {
            ld_buf hint = LD_BUF_INIT;
            for (size_t i = 0; allowed[i]; i++)
                ld_buf_printf(&hint, "%s%s", i ? ", " : "", allowed[i]);
            err(c, d, kn, sp, "unknown key (allowed: %.*s)", (int)hint.len, hint.data);
            ld_buf_free(&hint);
            bad = 1;
            continue;
        }
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
            const char *k2 = scalar(node(d, q->key));
            if (k2 && !strcmp(k2, k)) {
                err(c, d, kn, sp, "repeated key (first on line %d)",
                    (int)node(d, q->key)->start_mark.line + 1);
                bad = 1;
                break;
            }
        }
    }
    return bad ? -1 : 0;
}

/* A string value: 0 and *out (NULL when absent or null), or -1 (reported). */
static int get_str(ctx *c, const doc *d, const yaml_node_t *map, const char *key, const char *path,
                   int required, const char **out)
{
    *out = NULL;
    yaml_node_t *n = map_get(d, map, key);
    char sp[256];
    subpath(sp, sizeof sp, path, key);
    if (is_null(n)) {
        if (required) {
            err(c, d, n ? n : map, sp, "required");
            return -1;
        }
        return 0;
    }
    if (n->type != YAML_SCALAR_NODE) {
        err(c, d, n, sp, "expected a string, got %s", node_kind(n));
        return -1;
    }
    if (strlen(scalar(n)) != n->data.scalar.length) {
        err(c, d, n, sp, "the string contains a NUL character");
        return -1;
    }
    if (required && !*scalar(n)) {
        err(c, d, n, sp, "must not be empty");
        return -1;
    }
    *out = cstr(c, scalar(n));
    return 0;
}

static int get_bool(ctx *c, const doc *d, const yaml_node_t *map, const char *key, const char *path,
                    int def, protobuf_c_boolean *out)
{
    *out = def;
    yaml_node_t *n = map_get(d, map, key);
    if (is_null(n))
        return 0;
    int b = yaml_bool(n);
    if (b < 0) {
        char sp[256];
        subpath(sp, sizeof sp, path, key);
        err(c, d, n, sp, "expected a boolean (true or false), got %s%s%s%s", node_kind(n),
            n->type == YAML_SCALAR_NODE ? " '" : "", n->type == YAML_SCALAR_NODE ? scalar(n) : "",
            n->type == YAML_SCALAR_NODE ? "'" : "");
        return -1;
    }
    *out = b;
    return 0;
}

/* A list of non-empty strings (a single string too when one_ok). */
static int get_str_list(ctx *c, const doc *d, const yaml_node_t *map, const char *key,
                        const char *path, int one_ok, char ***out, size_t *n_out,
                        yaml_node_t ***nodes)
{
    *out = NULL;
    *n_out = 0;
    if (nodes)
        *nodes = NULL;
    yaml_node_t *n = map_get(d, map, key);
    char sp[256];
    subpath(sp, sizeof sp, path, key);
    if (is_null(n))
        return 0;
    if (one_ok && n->type == YAML_SCALAR_NODE) {
        *out = cnew(c, sizeof(char *));
        (*out)[0] = cstr(c, scalar(n));
        *n_out = 1;
        if (nodes) {
            *nodes = cnew(c, sizeof(yaml_node_t *));
            (*nodes)[0] = n;
        }
        return 0;
    }
    if (n->type != YAML_SEQUENCE_NODE) {
        err(c, d, n, sp, "expected a list of strings, got %s", node_kind(n));
        return -1;
    }
    size_t cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    *out = cnew(c, (cnt + 1) * sizeof(char *));
    if (nodes)
        *nodes = cnew(c, (cnt + 1) * sizeof(yaml_node_t *));
    int bad = 0;
    for (size_t i = 0; i < cnt; i++) {
        yaml_node_t *e = node(d, n->data.sequence.items.start[i]);
        char ep[300];
        snprintf(ep, sizeof ep, "%s[%zu]", sp, i);
        if (e->type != YAML_SCALAR_NODE || is_null(e) || !*scalar(e)) {
            err(c, d, e, ep, "expected a non-empty string, got %s", node_kind(e));
            bad = 1;
            continue;
        }
        if (nodes)
            (*nodes)[*n_out] = e;
        (*out)[(*n_out)++] = cstr(c, scalar(e));
    }
    return bad ? -1 : 0;
}

/* A string -> string mapping into the map field `field` of msg. */
static int get_str_map(ctx *c, const doc *d, const yaml_node_t *map, const char *key,
                       const char *path, ProtobufCMessage *msg, const char *field)
{
    yaml_node_t *n = map_get(d, map, key);
    char sp[256];
    subpath(sp, sizeof sp, path, key);
    if (is_null(n))
        return 0;
    if (n->type != YAML_MAPPING_NODE) {
        err(c, d, n, sp, "expected a mapping of strings to strings, got %s", node_kind(n));
        return -1;
    }
    const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field_by_name(msg->descriptor, field);
    const ProtobufCMessageDescriptor *ed = f->descriptor;
    size_t cnt = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
    ProtobufCMessage **arr = cnew(c, (cnt + 1) * sizeof *arr);
    size_t k = 0;
    int bad = 0;
    for (size_t i = 0; i < cnt; i++) {
        yaml_node_t *kn = node(d, n->data.mapping.pairs.start[i].key);
        yaml_node_t *vn = node(d, n->data.mapping.pairs.start[i].value);
        if (kn->type != YAML_SCALAR_NODE || vn->type != YAML_SCALAR_NODE) {
            err(c, d, kn, sp, "keys and values must be strings");
            bad = 1;
            continue;
        }
        ProtobufCMessage *e = cnew(c, ed->sizeof_message);
        protobuf_c_message_init(ed, e);
        *(char **)((char *)e + ed->fields[0].offset) = cstr(c, scalar(kn));
        *(char **)((char *)e + ed->fields[1].offset) = cstr(c, is_null(vn) ? "" : scalar(vn));
        arr[k++] = e;
    }
    *(size_t *)((char *)msg + f->quantifier_offset) = k;
    *(ProtobufCMessage ***)((char *)msg + f->offset) = arr;
    return bad ? -1 : 0;
}

/* "86400s", "1d", "2h", "1h30m", "45m", "1w", or a number of seconds. */
static int parse_duration(const char *s, int64_t *secs)
{
    int64_t total = 0;
    const char *p = s;
    if (!*p)
        return -1;
    while (*p) {
        if (*p < '0' || *p > '9')
            return -1;
        errno = 0;
        char *end;
        long long v = strtoll(p, &end, 10);
        if (errno || v > 100LL * 365 * 86400)
            return -1;
        int64_t mult;
        switch (*end) {
        case 0:
            if (p != s)
                return -1; /* "1h30" is ambiguous */
            mult = 1;
            break;
        case 's':
            mult = 1;
            break;
        case 'm':
            mult = 60;
            break;
        case 'h':
            mult = 3600;
            break;
        case 'd':
            mult = 86400;
            break;
        case 'w':
            mult = 7 * 86400;
            break;
        default:
            return -1;
        }
        total += (int64_t)v * mult;
        if (total > 100LL * 365 * 86400)
            return -1;
        p = *end ? end + 1 : end;
    }
    *secs = total;
    return 0;
}

/* ------------------------------------------------------------ value types */

static const struct {
    const char *feast; /* feast.types name */
    int vt;
} type_names[] = {
        {"Bytes", 1},
        {"String", 2},
        {"Int32", 3},
        {"Int64", 4},
        {"Float64", 5},
        {"Float32", 6},
        {"Bool", 7},
        {"UnixTimestamp", 8},
        {"Map", 20},
        {"Json", 32},
        {"Uuid", 36},
        {"TimeUuid", 37},
        {"Decimal", 44},
        {"Array(Bytes)", 11},
        {"Array(String)", 12},
        {"Array(Int32)", 13},
        {"Array(Int64)", 14},
        {"Array(Float64)", 15},
        {"Array(Float32)", 16},
        {"Array(Bool)", 17},
        {"Array(UnixTimestamp)", 18},
        {"Array(Map)", 21},
        {"Array(Json)", 33},
        {"Array(Uuid)", 38},
        {"Array(TimeUuid)", 39},
        {"Array(Decimal)", 45},
        {"Set(Bytes)", 22},
        {"Set(String)", 23},
        {"Set(Int32)", 24},
        {"Set(Int64)", 25},
        {"Set(Float64)", 26},
        {"Set(Float32)", 27},
        {"Set(Bool)", 28},
        {"Set(UnixTimestamp)", 29},
        {"Set(Uuid)", 40},
        {"Set(TimeUuid)", 41},
        {"Set(Decimal)", 46},
};

static const char *type_name(int vt)
{
    for (size_t i = 0; i < sizeof type_names / sizeof type_names[0]; i++)
        if (type_names[i].vt == vt)
            return type_names[i].feast;
    const ProtobufCEnumValue *ev =
            protobuf_c_enum_descriptor_get_value(&feast__types__value_type__enum__descriptor, vt);
    return ev ? ev->name : "?";
}

/* A Feast type name ("Float32", "Array(Int64)") or a ValueType name
 * ("FLOAT", "INT64_LIST"); -1 if neither. */
static int parse_type(const char *s)
{
    char buf[64];
    size_t j = 0;
    for (const char *p = s; *p && j + 1 < sizeof buf; p++)
        if (*p != ' ')
            buf[j++] = *p;
    buf[j] = 0;
    for (size_t i = 0; i < sizeof type_names / sizeof type_names[0]; i++)
        if (!strcmp(type_names[i].feast, buf))
            return type_names[i].vt;
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value_by_name(
            &feast__types__value_type__enum__descriptor, s);
    if (ev && ev->value != 0 && ev->value != 19 && strcmp(type_name(ev->value), "?"))
        return ev->value;
    return -1;
}

/* ------------------------------------------------------------ registry lookups */

/* The project's objects in the registry (cli_registry_find), typed. */
static const Feast__Core__DataSource *reg_source(ctx *c, const char *name)
{
    return (const Feast__Core__DataSource *)cli_registry_find(c->reg, CD_DATA_SOURCE, c->project,
                                                              name);
}

static const Feast__Core__EntitySpecV2 *reg_entity(ctx *c, const char *name)
{
    const Feast__Core__Entity *e =
            (const Feast__Core__Entity *)cli_registry_find(c->reg, CD_ENTITY, c->project, name);
    return e ? e->spec : NULL;
}

static const Feast__Core__FeatureViewSpec *reg_fv(ctx *c, const char *name)
{
    const Feast__Core__FeatureView *v = (const Feast__Core__FeatureView *)cli_registry_find(
            c->reg, CD_FEATURE_VIEW, c->project, name);
    return v ? v->spec : NULL;
}

static const Feast__Core__OnDemandFeatureViewSpec *reg_odfv(ctx *c, const char *name)
{
    const Feast__Core__OnDemandFeatureView *v =
            (const Feast__Core__OnDemandFeatureView *)cli_registry_find(c->reg, CD_ODFV, c->project,
                                                                        name);
    return v ? v->spec : NULL;
}

static item *find_item(ctx *c, cd_kind k, const char *name)
{
    for (size_t i = 0; i < c->nitems; i++)
        if (c->items[i].kind == k && !strcmp(c->items[i].name, name))
            return &c->items[i];
    return NULL;
}

static void add_obj(ctx *c, cd_kind kind, const char *name, ProtobufCMessage *msg, const item *it)
{
    cd_defs *o = c->out;
    if (o->n == o->cap) {
        o->cap = o->cap ? 2 * o->cap : 32;
        cd_obj *nv = realloc(o->v, o->cap * sizeof *nv);
        if (!nv) {
            fprintf(stderr, "larder: out of memory\n");
            exit(1);
        }
        o->v = nv;
    }
    o->v[o->n++] = (cd_obj){
            kind, name, msg, it ? it->d->file : NULL, it ? (int)it->node->start_mark.line + 1 : 0,
            0};
}

/* ------------------------------------------------------------ data sources */

static const char *class_of(const Feast__Core__DataSource *s)
{
    switch (s->type) {
    case FEAST__CORE__DATA_SOURCE__SOURCE_TYPE__BATCH_FILE:
        return CLS_FILE;
    case FEAST__CORE__DATA_SOURCE__SOURCE_TYPE__PUSH_SOURCE:
        return CLS_PUSH;
    case FEAST__CORE__DATA_SOURCE__SOURCE_TYPE__REQUEST_SOURCE:
        return CLS_REQUEST;
    default:
        return s->data_source_class_type;
    }
}

/* A copy of s as Feast serializes it in another object: without project,
 * with data_source_class_type (serialize_data_source) or without
 * (DataSource.to_proto(); PostgreSQLSource always sets its own). */
static Feast__Core__DataSource *source_copy(ctx *c, const Feast__Core__DataSource *s,
                                            int with_class)
{
    Feast__Core__DataSource *r = cnew(c, sizeof *r);
    *r = *s;
    r->project = (char *)"";
    if (s->type == FEAST__CORE__DATA_SOURCE__SOURCE_TYPE__CUSTOM_SOURCE)
        r->data_source_class_type = s->data_source_class_type;
    else
        r->data_source_class_type = (char *)(with_class ? class_of(s) : "");
    return r;
}

static Feast__Core__FeatureSpecV2 *fspec(ctx *c, const char *name, int vt)
{
    Feast__Core__FeatureSpecV2 *f =
            NEWMSG(c, Feast__Core__FeatureSpecV2, feast__core__feature_spec_v2__init);
    f->name = cstr(c, name);
    f->value_type = vt;
    return f;
}

/* schema: [{name, type|dtype, description, tags}] */
static int parse_schema(ctx *c, const doc *d, const yaml_node_t *map, const char *key,
                        const char *path, Feast__Core__FeatureSpecV2 ***out, size_t *n_out,
                        yaml_node_t ***nodes)
{
    static const char *const keys[] = {"name", "type", "dtype", "description", "tags", NULL};
    *out = NULL;
    *n_out = 0;
    yaml_node_t *n = map_get(d, map, key);
    char sp[256];
    subpath(sp, sizeof sp, path, key);
    if (is_null(n))
        return 0;
    if (n->type != YAML_SEQUENCE_NODE) {
        err(c, d, n, sp, "expected a list of fields ({name, type}), got %s", node_kind(n));
        return -1;
    }
    size_t cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    *out = cnew(c, (cnt + 1) * sizeof **out);
    *nodes = cnew(c, (cnt + 1) * sizeof **nodes);
    int bad = 0;
    for (size_t i = 0; i < cnt; i++) {
        yaml_node_t *e = node(d, n->data.sequence.items.start[i]);
        char ep[300];
        snprintf(ep, sizeof ep, "%s[%zu]", sp, i);
        if (e->type != YAML_MAPPING_NODE) {
            err(c, d, e, ep, "expected a field mapping ({name, type}), got %s", node_kind(e));
            bad = 1;
            continue;
        }
        if (check_keys(c, d, e, ep, keys) != 0) {
            bad = 1;
            continue;
        }
        const char *name, *type, *dtype, *desc;
        if (get_str(c, d, e, "name", ep, 1, &name) || get_str(c, d, e, "type", ep, 0, &type) ||
            get_str(c, d, e, "dtype", ep, 0, &dtype) ||
            get_str(c, d, e, "description", ep, 0, &desc)) {
            bad = 1;
            continue;
        }
        char tp[320];
        snprintf(tp, sizeof tp, "%s.%s", ep, dtype ? "dtype" : "type");
        if (type && dtype) {
            err(c, d, map_get(d, e, "dtype"), tp, "give either type or dtype, not both");
            bad = 1;
            continue;
        }
        if (!type && !dtype) {
            err(c, d, e, tp,
                "required (a Feast type: Int64, Float32, String, Array(Float32), ...)");
            bad = 1;
            continue;
        }
        int vt = parse_type(type ? type : dtype);
        if (vt < 0) {
            err(c, d, map_get(d, e, dtype ? "dtype" : "type"), tp,
                "unknown type '%s' (Feast types: Int32, Int64, Float32, Float64, String, Bytes, "
                "Bool, UnixTimestamp, Json, Map, Uuid, Decimal, Array(T), Set(T))",
                type ? type : dtype);
            bad = 1;
            continue;
        }
        for (size_t j = 0; j < *n_out; j++)
            if (!strcmp((*out)[j]->name, name)) {
                err(c, d, map_get(d, e, "name"), ep, "field '%s' appears twice", name);
                bad = 1;
            }
        Feast__Core__FeatureSpecV2 *f = fspec(c, name, vt);
        f->description = (char *)(desc ? desc : "");
        if (get_str_map(c, d, e, "tags", ep, &f->base, "tags"))
            bad = 1;
        (*nodes)[*n_out] = e;
        (*out)[(*n_out)++] = f;
    }
    return bad ? -1 : 0;
}

static Feast__Core__DataSource__SourceMeta *source_meta(ctx *c)
{
    if (!c->src_meta) {
        int64_t now = ld_wall_us();
        Feast__Core__DataSource__SourceMeta *m =
                NEWMSG(c, Feast__Core__DataSource__SourceMeta,
                       feast__core__data_source__source_meta__init);
        Google__Protobuf__Timestamp *t =
                NEWMSG(c, Google__Protobuf__Timestamp, google__protobuf__timestamp__init);
        t->seconds = now / 1000000;
        t->nanos = (int32_t)(now % 1000000) * 1000;
        m->created_timestamp = t;
        m->last_updated_timestamp = t;
        c->src_meta = m;
    }
    return c->src_meta;
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcasecmp(s + a - b, suf);
}

static Feast__Core__DataSource *build_source(ctx *c, item *it);

/* A batch source by name for a push source or a view: from the files or the
 * registry. Reports and returns NULL when missing. */
static const Feast__Core__DataSource *lookup_source(ctx *c, const doc *d, const yaml_node_t *n,
                                                    const char *path, const char *name)
{
    item *si = find_item(c, CD_DATA_SOURCE, name);
    if (si) {
        Feast__Core__DataSource *s = build_source(c, si);
        if (!s && si->state == 1)
            err(c, d, n, path, "data source '%s' refers back to itself", name);
        return s;
    }
    const Feast__Core__DataSource *r = reg_source(c, name);
    if (!r)
        err(c, d, n, path,
            "data source '%s' is not defined (not in the definition files, not in project '%s' "
            "of the registry)",
            name, c->project);
    return r;
}

static Feast__Core__DataSource *build_source(ctx *c, item *it)
{
    if (it->state == 2)
        return it->built;
    if (it->state == 1 || it->state == 3)
        return NULL;
    it->state = 1;
    const doc *d = it->d;
    yaml_node_t *m = it->node;
    const char *path = it->path;
    const char *type;
    if (get_str(c, d, m, "type", path, 1, &type) != 0)
        goto fail;
    static const char *const file_keys[] = {"name",
                                            "type",
                                            "path",
                                            "format",
                                            "timestamp_field",
                                            "created_timestamp_column",
                                            "field_mapping",
                                            "s3_endpoint_override",
                                            "description",
                                            "tags",
                                            "owner",
                                            NULL};
    static const char *const pg_keys[] = {"name",
                                          "type",
                                          "table",
                                          "query",
                                          "timestamp_field",
                                          "created_timestamp_column",
                                          "field_mapping",
                                          "description",
                                          "tags",
                                          "owner",
                                          NULL};
    static const char *const push_keys[] = {"name",  "type", "batch_source", "description", "tags",
                                            "owner", NULL};
    static const char *const req_keys[] = {"name", "type",  "schema", "description",
                                           "tags", "owner", NULL};
    Feast__Core__DataSource *s = NEWMSG(c, Feast__Core__DataSource, feast__core__data_source__init);
    s->name = (char *)it->name;
    s->meta = source_meta(c);
    int bad = 0;
    const char *desc, *owner;
    char tp[128];
    subpath(tp, sizeof tp, path, "type");
    if (!strcmp(type, "file")) {
        bad |= check_keys(c, d, m, path, file_keys);
        const char *fpath, *fmt, *ts, *cts, *s3;
        bad |= get_str(c, d, m, "path", path, 1, &fpath);
        bad |= get_str(c, d, m, "format", path, 0, &fmt);
        bad |= get_str(c, d, m, "timestamp_field", path, 1, &ts);
        bad |= get_str(c, d, m, "created_timestamp_column", path, 0, &cts);
        bad |= get_str(c, d, m, "s3_endpoint_override", path, 0, &s3);
        bad |= get_str_map(c, d, m, "field_mapping", path, &s->base, "field_mapping");
        if (bad)
            goto fail;
        char fp[128];
        subpath(fp, sizeof fp, path, "format");
        const char *ext = ends_with(fpath, ".csv")       ? "csv"
                          : ends_with(fpath, ".parquet") ? "parquet"
                          : ends_with(fpath, ".arrow") || ends_with(fpath, ".feather") ||
                                          ends_with(fpath, ".ipc")
                                  ? "arrow"
                                  : NULL;
        if (fmt && strcmp(fmt, "csv") && strcmp(fmt, "arrow") && strcmp(fmt, "parquet")) {
            err(c, d, map_get(d, m, "format"), fp, "unknown format '%s' (csv, arrow, parquet)",
                fmt);
            goto fail;
        }
        if (!fmt && !ext) {
            char pp[128];
            subpath(pp, sizeof pp, path, "path");
            err(c, d, map_get(d, m, "path"), pp,
                "cannot tell the format of '%s' from its name (.csv, .arrow/.feather/.ipc, "
                ".parquet); larder-offline picks the reader by extension",
                fpath);
            goto fail;
        }
        if (fmt && ext && strcmp(fmt, ext)) {
            err(c, d, map_get(d, m, "format"), fp,
                "format '%s' does not match the file name '%s' (larder-offline picks the reader by "
                "extension)",
                fmt, fpath);
            goto fail;
        }
        if (!fmt)
            fmt = ext;
        s->type = FEAST__CORE__DATA_SOURCE__SOURCE_TYPE__BATCH_FILE;
        Feast__Core__DataSource__FileOptions *fo =
                NEWMSG(c, Feast__Core__DataSource__FileOptions,
                       feast__core__data_source__file_options__init);
        fo->uri = (char *)fpath;
        fo->s3_endpoint_override = (char *)(s3 ? s3 : "");
        if (!strcmp(fmt, "parquet")) {
            Feast__Core__FileFormat *ff =
                    NEWMSG(c, Feast__Core__FileFormat, feast__core__file_format__init);
            ff->format_case = FEAST__CORE__FILE_FORMAT__FORMAT_PARQUET_FORMAT;
            ff->parquet_format = NEWMSG(c, Feast__Core__FileFormat__ParquetFormat,
                                        feast__core__file_format__parquet_format__init);
            fo->file_format = ff;
        }
        s->options_case = FEAST__CORE__DATA_SOURCE__OPTIONS_FILE_OPTIONS;
        s->file_options = fo;
        s->timestamp_field = (char *)ts;
        s->created_timestamp_column = (char *)(cts ? cts : "");
        if (cts && !strcmp(cts, ts)) {
            char cp[128];
            subpath(cp, sizeof cp, path, "created_timestamp_column");
            err(c, d, map_get(d, m, "created_timestamp_column"), cp,
                "must differ from timestamp_field");
            goto fail;
        }
        if (!strstr(fpath, "://")) {
            char *abs = ld_config_resolve_path(c->cfg, fpath);
            struct stat sb;
            if (abs && stat(abs, &sb) != 0)
                fprintf(stderr, "%s:%d: warning: data source '%s': %s does not exist (yet)\n",
                        d->file, (int)m->start_mark.line + 1, it->name, abs);
            free(abs);
        }
    } else if (!strcmp(type, "postgres")) {
        bad |= check_keys(c, d, m, path, pg_keys);
        const char *table, *query, *ts, *cts;
        bad |= get_str(c, d, m, "table", path, 0, &table);
        bad |= get_str(c, d, m, "query", path, 0, &query);
        bad |= get_str(c, d, m, "timestamp_field", path, 1, &ts);
        bad |= get_str(c, d, m, "created_timestamp_column", path, 0, &cts);
        bad |= get_str_map(c, d, m, "field_mapping", path, &s->base, "field_mapping");
        if (bad)
            goto fail;
        if (!table == !query) {
            err(c, d, m, path, "a postgres source needs exactly one of table and query");
            goto fail;
        }
        if (cts && !strcmp(cts, ts)) {
            char cp[128];
            subpath(cp, sizeof cp, path, "created_timestamp_column");
            err(c, d, map_get(d, m, "created_timestamp_column"), cp,
                "must differ from timestamp_field");
            goto fail;
        }
        s->type = FEAST__CORE__DATA_SOURCE__SOURCE_TYPE__CUSTOM_SOURCE;
        s->data_source_class_type = (char *)CLS_POSTGRES;
        /* PostgreSQLOptions.to_proto(): json.dumps({"name", "query", "table"}) */
        ld_buf j = LD_BUF_INIT;
        ld_buf_puts(&j, "{\"name\": ");
        ld_buf_json_str(&j, it->name, strlen(it->name), 1);
        ld_buf_puts(&j, ", \"query\": ");
        if (query)
            ld_buf_json_str(&j, query, strlen(query), 1);
        else
            ld_buf_puts(&j, "null");
        ld_buf_puts(&j, ", \"table\": ");
        if (table)
            ld_buf_json_str(&j, table, strlen(table), 1);
        else
            ld_buf_puts(&j, "null");
        ld_buf_putc(&j, '}');
        Feast__Core__DataSource__CustomSourceOptions *co =
                NEWMSG(c, Feast__Core__DataSource__CustomSourceOptions,
                       feast__core__data_source__custom_source_options__init);
        co->configuration.data = ld_arena_memdup(c->a, j.data, j.len);
        co->configuration.len = j.len;
        ld_buf_free(&j);
        s->options_case = FEAST__CORE__DATA_SOURCE__OPTIONS_CUSTOM_OPTIONS;
        s->custom_options = co;
        s->timestamp_field = (char *)ts;
        s->created_timestamp_column = (char *)(cts ? cts : "");
    } else if (!strcmp(type, "push")) {
        bad |= check_keys(c, d, m, path, push_keys);
        const char *bs;
        bad |= get_str(c, d, m, "batch_source", path, 1, &bs);
        if (bad)
            goto fail;
        char bp[128];
        subpath(bp, sizeof bp, path, "batch_source");
        const Feast__Core__DataSource *b =
                lookup_source(c, d, map_get(d, m, "batch_source"), bp, bs);
        if (!b)
            goto fail;
        if (b->type != FEAST__CORE__DATA_SOURCE__SOURCE_TYPE__BATCH_FILE &&
            b->type != FEAST__CORE__DATA_SOURCE__SOURCE_TYPE__CUSTOM_SOURCE) {
            err(c, d, map_get(d, m, "batch_source"), bp,
                "data source '%s' is not a batch source (file or postgres)", bs);
            goto fail;
        }
        s->type = FEAST__CORE__DATA_SOURCE__SOURCE_TYPE__PUSH_SOURCE;
        /* PushSource._to_proto_impl: the batch source's timestamp columns
         * and field mapping are copied up. */
        s->timestamp_field = b->timestamp_field;
        s->created_timestamp_column = b->created_timestamp_column;
        s->n_field_mapping = b->n_field_mapping;
        s->field_mapping = b->field_mapping;
        s->date_partition_column = b->date_partition_column;
        s->batch_source = source_copy(c, b, 0);
    } else if (!strcmp(type, "request")) {
        bad |= check_keys(c, d, m, path, req_keys);
        Feast__Core__FeatureSpecV2 **fs;
        size_t nfs;
        yaml_node_t **fn;
        bad |= parse_schema(c, d, m, "schema", path, &fs, &nfs, &fn);
        if (bad)
            goto fail;
        if (nfs == 0) {
            char sp[128];
            subpath(sp, sizeof sp, path, "schema");
            err(c, d, m, sp, "a request source needs a schema");
            goto fail;
        }
        s->type = FEAST__CORE__DATA_SOURCE__SOURCE_TYPE__REQUEST_SOURCE;
        Feast__Core__DataSource__RequestDataOptions *ro =
                NEWMSG(c, Feast__Core__DataSource__RequestDataOptions,
                       feast__core__data_source__request_data_options__init);
        ro->schema = fs;
        ro->n_schema = nfs;
        s->options_case = FEAST__CORE__DATA_SOURCE__OPTIONS_REQUEST_DATA_OPTIONS;
        s->request_data_options = ro;
    } else {
        err(c, d, map_get(d, m, "type"), tp,
            "unknown source type '%s' (file, postgres, push, request)", type);
        goto fail;
    }
    bad |= get_str(c, d, m, "description", path, 0, &desc);
    bad |= get_str(c, d, m, "owner", path, 0, &owner);
    bad |= get_str_map(c, d, m, "tags", path, &s->base, "tags");
    if (bad)
        goto fail;
    s->description = (char *)(desc ? desc : "");
    s->owner = (char *)(owner ? owner : "");
    it->built = s;
    it->state = 2;
    return s;
fail:
    it->state = 3;
    return NULL;
}

/* ------------------------------------------------------------ entities */

typedef struct ent_info {
    const char *name;
    const char *join_key;
    int value_type;
} ent_info;

static Feast__Core__Entity *build_entity(ctx *c, item *it)
{
    static const char *const keys[] = {"name",        "join_keys", "join_key", "value_type",
                                       "description", "tags",      "owner",    NULL};
    const doc *d = it->d;
    yaml_node_t *m = it->node;
    const char *path = it->path;
    int bad = check_keys(c, d, m, path, keys);
    char **jks;
    size_t njk;
    const char *jk, *vts, *desc, *owner;
    bad |= get_str_list(c, d, m, "join_keys", path, 0, &jks, &njk, NULL);
    bad |= get_str(c, d, m, "join_key", path, 0, &jk);
    bad |= get_str(c, d, m, "value_type", path, 0, &vts);
    bad |= get_str(c, d, m, "description", path, 0, &desc);
    bad |= get_str(c, d, m, "owner", path, 0, &owner);
    Feast__Core__Entity *e = NEWMSG(c, Feast__Core__Entity, feast__core__entity__init);
    e->spec = NEWMSG(c, Feast__Core__EntitySpecV2, feast__core__entity_spec_v2__init);
    e->meta = NEWMSG(c, Feast__Core__EntityMeta, feast__core__entity_meta__init);
    bad |= get_str_map(c, d, m, "tags", path, &e->spec->base, "tags");
    if (bad)
        return NULL;
    char p2[128];
    if (njk > 1) {
        subpath(p2, sizeof p2, path, "join_keys");
        err(c, d, map_get(d, m, "join_keys"), p2,
            "an entity has exactly one join key (Feast: multiple join keys are not supported)");
        return NULL;
    }
    if (njk && jk) {
        subpath(p2, sizeof p2, path, "join_key");
        err(c, d, map_get(d, m, "join_key"), p2, "give join_keys or join_key, not both");
        return NULL;
    }
    int vt = 0;
    if (vts && strcmp(vts, "UNKNOWN") && strcmp(vts, "INVALID")) {
        vt = parse_type(vts);
        if (vt < 0) {
            subpath(p2, sizeof p2, path, "value_type");
            err(c, d, map_get(d, m, "value_type"), p2,
                "unknown value type '%s' (INT64, STRING, INT32, BYTES, ... or Int64, String, ...)",
                vts);
            return NULL;
        }
    }
    e->spec->name = (char *)it->name;
    e->spec->join_key = (char *)(njk ? jks[0] : jk ? jk : it->name);
    e->spec->value_type = vt;
    e->spec->description = (char *)(desc ? desc : "");
    e->spec->owner = (char *)(owner ? owner : "");
    e->spec->project = (char *)c->project;
    return e;
}

static int lookup_entity(ctx *c, const char *name, ent_info *out)
{
    item *it = find_item(c, CD_ENTITY, name);
    if (it) {
        if (it->state != 2)
            return -1;
        Feast__Core__Entity *e = it->built;
        *out = (ent_info){name, e->spec->join_key, e->spec->value_type};
        return 0;
    }
    const Feast__Core__EntitySpecV2 *s = reg_entity(c, name);
    if (!s)
        return -1;
    *out = (ent_info){name, s->join_key, s->value_type};
    return 0;
}

/* ------------------------------------------------------------ views */

/* Entities and schema into entity_columns and features, as FeatureView's
 * constructor and Feast's inference split them. */
static int split_schema(ctx *c, const doc *d, yaml_node_t *m, const char *path, char **ents,
                        size_t nents, yaml_node_t **ent_nodes, Feast__Core__FeatureSpecV2 **fs,
                        size_t nfs, yaml_node_t **fnodes, ProtobufCMessage *spec)
{
    int bad = 0;
    ent_info *ei = cnew(c, (nents + 1) * sizeof *ei);
    char ep[128];
    subpath(ep, sizeof ep, path, "entities");
    for (size_t i = 0; i < nents; i++) {
        char p2[160];
        snprintf(p2, sizeof p2, "%s[%zu]", ep, i);
        if (lookup_entity(c, ents[i], &ei[i]) != 0) {
            if (!find_item(c, CD_ENTITY, ents[i]))
                err(c, d, ent_nodes[i], p2,
                    "entity '%s' is not defined (not in the definition files, not in project "
                    "'%s' of the registry)",
                    ents[i], c->project);
            bad = 1;
            continue;
        }
        for (size_t j = 0; j < i; j++)
            if (ei[j].name && !strcmp(ei[j].join_key, ei[i].join_key)) {
                err(c, d, ent_nodes[i], p2,
                    "entities '%s' and '%s' share the join key '%s' (Feast does not allow it)",
                    ei[j].name, ents[i], ei[i].join_key);
                bad = 1;
            }
    }
    if (bad)
        return -1;
    Feast__Core__FeatureSpecV2 **cols = cnew(c, (nfs + nents + 2) * sizeof *cols);
    Feast__Core__FeatureSpecV2 **feats = cnew(c, (nfs + 1) * sizeof *feats);
    size_t ncols = 0, nfeats = 0;
    for (size_t i = 0; i < nfs; i++) {
        size_t k = nents;
        for (size_t j = 0; j < nents; j++)
            if (!strcmp(ei[j].join_key, fs[i]->name))
                k = j;
        if (k == nents) {
            feats[nfeats++] = fs[i];
            continue;
        }
        if (ei[k].value_type != 0 && ei[k].value_type != (int)fs[i]->value_type) {
            char p2[160];
            snprintf(p2, sizeof p2, "%s.schema.%s", path, fs[i]->name);
            err(c, d, fnodes[i], p2, "type %s does not match the value_type %s of entity '%s'",
                type_name(fs[i]->value_type), type_name(ei[k].value_type), ei[k].name);
            bad = 1;
        }
        cols[ncols++] = fs[i];
    }
    for (size_t j = 0; j < nents; j++) {
        int have = 0;
        for (size_t i = 0; i < ncols; i++)
            have |= !strcmp(cols[i]->name, ei[j].join_key);
        if (have)
            continue;
        if (ei[j].value_type == 0) {
            char p2[160];
            snprintf(p2, sizeof p2, "%s[%zu]", ep, j);
            err(c, d, ent_nodes[j], p2,
                "the type of join key '%s' is unknown: give entity '%s' a value_type or list "
                "'%s' in the schema",
                ei[j].join_key, ei[j].name, ei[j].join_key);
            bad = 1;
            continue;
        }
        cols[ncols++] = fspec(c, ei[j].join_key, ei[j].value_type);
    }
    if (nents == 0 && ncols == 0)
        cols[ncols++] = fspec(c, DUMMY_ENTITY_ID, FEAST__TYPES__VALUE_TYPE__ENUM__STRING);
    if (nfeats == 0 && !bad) {
        char p2[160];
        subpath(p2, sizeof p2, path, "schema");
        err(c, d, map_get(d, m, "schema") ? map_get(d, m, "schema") : m, p2,
            "no feature columns (larder does not infer features from data: list them with their "
            "types)");
        bad = 1;
    }
    if (bad)
        return -1;
    char **names = ents;
    size_t nnames = nents;
    if (nents == 0) {
        names = cnew(c, sizeof(char *));
        names[0] = (char *)DUMMY_ENTITY_NAME;
        nnames = 1;
    }
    if (spec->descriptor == &feast__core__feature_view_spec__descriptor) {
        Feast__Core__FeatureViewSpec *s = (Feast__Core__FeatureViewSpec *)spec;
        s->entities = names;
        s->n_entities = nnames;
        s->entity_columns = cols;
        s->n_entity_columns = ncols;
        s->features = feats;
        s->n_features = nfeats;
    } else {
        Feast__Core__OnDemandFeatureViewSpec *s = (Feast__Core__OnDemandFeatureViewSpec *)spec;
        s->entities = names;
        s->n_entities = nnames;
        s->entity_columns = cols;
        s->n_entity_columns = ncols;
        s->features = feats;
        s->n_features = nfeats;
    }
    return 0;
}

/* A view with other problems: still name the entities and source it
 * refers to that exist nowhere, so one run lists every problem. */
static void report_missing_refs(ctx *c, const doc *d, yaml_node_t *m, const char *path, char **ents,
                                size_t nents, yaml_node_t **ent_nodes, const char *src)
{
    char p2[160];
    for (size_t i = 0; i < nents; i++) {
        ent_info ei;
        if (!find_item(c, CD_ENTITY, ents[i]) && lookup_entity(c, ents[i], &ei) != 0) {
            snprintf(p2, sizeof p2, "%s.entities[%zu]", path, i);
            err(c, d, ent_nodes[i], p2,
                "entity '%s' is not defined (not in the definition files, not in project '%s' "
                "of the registry)",
                ents[i], c->project);
        }
    }
    if (src && !find_item(c, CD_DATA_SOURCE, src) && !reg_source(c, src)) {
        subpath(p2, sizeof p2, path, "source");
        err(c, d, map_get(d, m, "source"), p2,
            "data source '%s' is not defined (not in the definition files, not in project '%s' "
            "of the registry)",
            src, c->project);
    }
}

static Feast__Core__FeatureView *build_fv(ctx *c, item *it)
{
    static const char *const keys[] = {"name",        "entities", "source",  "schema",
                                       "ttl",         "online",   "offline", "tags",
                                       "description", "owner",    "org",     NULL};
    const doc *d = it->d;
    yaml_node_t *m = it->node;
    const char *path = it->path;
    int bad = check_keys(c, d, m, path, keys);
    char **ents;
    size_t nents;
    yaml_node_t **ent_nodes, **fnodes;
    const char *src, *desc, *owner, *org;
    Feast__Core__FeatureSpecV2 **fs;
    size_t nfs;
    Feast__Core__FeatureView *fv =
            NEWMSG(c, Feast__Core__FeatureView, feast__core__feature_view__init);
    Feast__Core__FeatureViewSpec *s =
            NEWMSG(c, Feast__Core__FeatureViewSpec, feast__core__feature_view_spec__init);
    fv->spec = s;
    fv->meta = NEWMSG(c, Feast__Core__FeatureViewMeta, feast__core__feature_view_meta__init);
    bad |= get_str_list(c, d, m, "entities", path, 0, &ents, &nents, &ent_nodes);
    bad |= get_str(c, d, m, "source", path, 0, &src);
    bad |= parse_schema(c, d, m, "schema", path, &fs, &nfs, &fnodes);
    bad |= get_bool(c, d, m, "online", path, 1, &s->online);
    bad |= get_bool(c, d, m, "offline", path, 0, &s->offline);
    bad |= get_str(c, d, m, "description", path, 0, &desc);
    bad |= get_str(c, d, m, "owner", path, 0, &owner);
    bad |= get_str(c, d, m, "org", path, 0, &org);
    bad |= get_str_map(c, d, m, "tags", path, &s->base, "tags");
    /* ttl: Feast's default is timedelta(0) (no expiry), always serialized */
    int64_t ttl = 0;
    yaml_node_t *tn = map_get(d, m, "ttl");
    char tp[128];
    subpath(tp, sizeof tp, path, "ttl");
    if (!is_null(tn)) {
        if (tn->type != YAML_SCALAR_NODE || parse_duration(scalar(tn), &ttl) != 0) {
            err(c, d, tn, tp,
                "expected a duration such as 86400s, 1d, 2h, 1h30m or a number of seconds, got "
                "%s%s%s%s",
                node_kind(tn), tn->type == YAML_SCALAR_NODE ? " '" : "",
                tn->type == YAML_SCALAR_NODE ? scalar(tn) : "",
                tn->type == YAML_SCALAR_NODE ? "'" : "");
            bad = 1;
        }
    }
    if (bad) {
        report_missing_refs(c, d, m, path, ents, nents, ent_nodes, src);
        return NULL;
    }
    s->name = (char *)it->name;
    s->project = (char *)c->project;
    s->description = (char *)(desc ? desc : "");
    s->owner = (char *)(owner ? owner : "");
    s->org = (char *)(org ? org : "");
    s->version = (char *)"latest";
    s->ttl = NEWMSG(c, Google__Protobuf__Duration, google__protobuf__duration__init);
    s->ttl->seconds = ttl;
    if (split_schema(c, d, m, path, ents, nents, ent_nodes, fs, nfs, fnodes, &s->base) != 0)
        return NULL;
    if (src) {
        char sp[128];
        subpath(sp, sizeof sp, path, "source");
        const Feast__Core__DataSource *ds = lookup_source(c, d, map_get(d, m, "source"), sp, src);
        if (!ds)
            return NULL;
        const Feast__Core__DataSource *batch = ds;
        if (ds->type == FEAST__CORE__DATA_SOURCE__SOURCE_TYPE__PUSH_SOURCE) {
            s->stream_source = source_copy(c, ds, 1);
            batch = ds->batch_source;
            if (!batch) {
                err(c, d, map_get(d, m, "source"), sp, "push source '%s' has no batch source", src);
                return NULL;
            }
        } else if (ds->type == FEAST__CORE__DATA_SOURCE__SOURCE_TYPE__REQUEST_SOURCE) {
            err(c, d, map_get(d, m, "source"), sp,
                "request source '%s' can only feed on-demand feature views", src);
            return NULL;
        }
        s->batch_source = source_copy(c, batch, 1);
        /* Feast: a schema column must not be a key of the field mapping */
        for (size_t i = 0; i < batch->n_field_mapping; i++)
            for (size_t j = 0; j < nfs; j++)
                if (!strcmp(batch->field_mapping[i]->key, fs[j]->name)) {
                    err(c, d, fnodes[j], sp,
                        "field %s is mapped to %s by data source '%s': use %s in the schema or "
                        "remove the mapping",
                        fs[j]->name, batch->field_mapping[i]->value, src,
                        batch->field_mapping[i]->value);
                    bad = 1;
                }
    }
    return bad ? NULL : fv;
}

/* The projection Feast's FeatureViewProjection.from_definition builds for a
 * feature view (whole view; callers narrow feature_columns). */
static Feast__Core__FeatureViewProjection *projection_of(ctx *c, const char *name,
                                                         Feast__Core__FeatureSpecV2 **features,
                                                         size_t nfeatures,
                                                         const Feast__Core__DataSource *batch)
{
    Feast__Core__FeatureViewProjection *p = NEWMSG(c, Feast__Core__FeatureViewProjection,
                                                   feast__core__feature_view_projection__init);
    p->feature_view_name = (char *)name;
    p->feature_columns = features;
    p->n_feature_columns = nfeatures;
    p->view_type = (char *)"featureView";
    if (batch) {
        /* sic: Feast fills timestamp_field from created_timestamp_column */
        p->timestamp_field = batch->created_timestamp_column;
        p->created_timestamp_column = batch->created_timestamp_column;
        p->date_partition_column = batch->date_partition_column;
        p->batch_source = source_copy(c, batch, 0);
    }
    return p;
}

/* A feature view or on-demand view by name, from the files or the
 * registry: its features and batch source. */
static int lookup_view(ctx *c, const char *name, int allow_odfv, const char **kind_out,
                       Feast__Core__FeatureSpecV2 ***features, size_t *nfeatures,
                       const Feast__Core__DataSource **batch)
{
    item *it = find_item(c, CD_FEATURE_VIEW, name);
    const Feast__Core__FeatureViewSpec *fs = NULL;
    const Feast__Core__OnDemandFeatureViewSpec *os = NULL;
    if (it) {
        if (it->state != 2)
            return 1; /* already reported */
        fs = ((Feast__Core__FeatureView *)it->built)->spec;
    } else if (allow_odfv && (it = find_item(c, CD_ODFV, name))) {
        if (it->state != 2)
            return 1;
        os = ((Feast__Core__OnDemandFeatureView *)it->built)->spec;
    } else if (!(fs = reg_fv(c, name)) && (!allow_odfv || !(os = reg_odfv(c, name)))) {
        return -1;
    }
    if (fs) {
        *kind_out = "feature view";
        *features = fs->features;
        *nfeatures = fs->n_features;
        *batch = fs->batch_source;
    } else {
        *kind_out = "on demand feature view";
        *features = os->features;
        *nfeatures = os->n_features;
        *batch = NULL;
    }
    return 0;
}

/* {feature_view: NAME, features: [..], alias: A, join_key_map: {..}} or NAME */
static Feast__Core__FeatureViewProjection *parse_projection(ctx *c, const doc *d, yaml_node_t *e,
                                                            const char *ep, int allow_odfv,
                                                            int allow_alias)
{
    static const char *const keys[] = {"feature_view", "features", "alias", "join_key_map", NULL};
    static const char *const keys_noalias[] = {"feature_view", "features", NULL};
    const char *name = NULL, *alias = NULL;
    char **want = NULL;
    size_t nwant = 0;
    yaml_node_t **want_nodes = NULL, *name_node = e;
    Feast__Core__FeatureViewProjection tmp = FEAST__CORE__FEATURE_VIEW_PROJECTION__INIT;
    if (e->type == YAML_SCALAR_NODE && !is_null(e)) {
        name = scalar(e);
    } else if (e->type == YAML_MAPPING_NODE) {
        int bad = check_keys(c, d, e, ep, allow_alias ? keys : keys_noalias);
        bad |= get_str(c, d, e, "feature_view", ep, 1, &name);
        bad |= get_str_list(c, d, e, "features", ep, 0, &want, &nwant, &want_nodes);
        if (allow_alias) {
            bad |= get_str(c, d, e, "alias", ep, 0, &alias);
            bad |= get_str_map(c, d, e, "join_key_map", ep, &tmp.base, "join_key_map");
        }
        if (bad)
            return NULL;
        name_node = map_get(d, e, "feature_view");
    } else {
        err(c, d, e, ep, "expected a view name or {feature_view, features%s}, got %s",
            allow_alias ? ", alias, join_key_map" : "", node_kind(e));
        return NULL;
    }
    const char *kind;
    Feast__Core__FeatureSpecV2 **features;
    size_t nfeatures;
    const Feast__Core__DataSource *batch;
    int rc = lookup_view(c, name, allow_odfv, &kind, &features, &nfeatures, &batch);
    if (rc != 0) {
        if (rc < 0)
            err(c, d, name_node, ep,
                "%s '%s' is not defined (not in the definition files, not in project '%s' of "
                "the registry)",
                allow_odfv ? "feature view or on demand feature view" : "feature view", name,
                c->project);
        return NULL;
    }
    Feast__Core__FeatureViewProjection *p =
            projection_of(c, cstr(c, name), features, nfeatures, batch);
    if (nwant) {
        Feast__Core__FeatureSpecV2 **sel = cnew(c, nwant * sizeof *sel);
        int bad = 0;
        for (size_t i = 0; i < nwant; i++) {
            sel[i] = NULL;
            for (size_t j = 0; j < nfeatures; j++)
                if (!strcmp(features[j]->name, want[i]))
                    sel[i] = features[j];
            if (!sel[i]) {
                char p2[200];
                snprintf(p2, sizeof p2, "%s.features[%zu]", ep, i);
                err(c, d, want_nodes[i], p2, "%s '%s' has no feature '%s'", kind, name, want[i]);
                bad = 1;
            }
        }
        if (bad)
            return NULL;
        p->feature_columns = sel;
        p->n_feature_columns = nwant;
    }
    p->feature_view_name_alias = (char *)(alias ? alias : "");
    p->n_join_key_map = tmp.n_join_key_map;
    p->join_key_map = tmp.join_key_map;
    return p;
}

static Feast__Core__OnDemandFeatureView *build_odfv(ctx *c, item *it)
{
    static const char *const keys[] = {
            "name", "entities",    "sources", "schema", "mode", "write_to_online_store",
            "tags", "description", "owner",   "org",    NULL};
    const doc *d = it->d;
    yaml_node_t *m = it->node;
    const char *path = it->path;
    int bad = check_keys(c, d, m, path, keys);
    char **ents;
    size_t nents;
    yaml_node_t **ent_nodes, **fnodes;
    const char *mode, *desc, *owner, *org;
    Feast__Core__FeatureSpecV2 **fs;
    size_t nfs;
    Feast__Core__OnDemandFeatureView *o =
            NEWMSG(c, Feast__Core__OnDemandFeatureView, feast__core__on_demand_feature_view__init);
    Feast__Core__OnDemandFeatureViewSpec *s =
            NEWMSG(c, Feast__Core__OnDemandFeatureViewSpec,
                   feast__core__on_demand_feature_view_spec__init);
    o->spec = s;
    o->meta = NEWMSG(c, Feast__Core__OnDemandFeatureViewMeta,
                     feast__core__on_demand_feature_view_meta__init);
    bad |= get_str_list(c, d, m, "entities", path, 0, &ents, &nents, &ent_nodes);
    bad |= parse_schema(c, d, m, "schema", path, &fs, &nfs, &fnodes);
    bad |= get_str(c, d, m, "mode", path, 0, &mode);
    bad |= get_bool(c, d, m, "write_to_online_store", path, 0, &s->write_to_online_store);
    bad |= get_str(c, d, m, "description", path, 0, &desc);
    bad |= get_str(c, d, m, "owner", path, 0, &owner);
    bad |= get_str(c, d, m, "org", path, 0, &org);
    bad |= get_str_map(c, d, m, "tags", path, &s->base, "tags");
    if (bad)
        return NULL;
    char p2[160];
    if (mode && strcmp(mode, "pandas") && strcmp(mode, "python") && strcmp(mode, "substrait")) {
        subpath(p2, sizeof p2, path, "mode");
        err(c, d, map_get(d, m, "mode"), p2, "unknown mode '%s' (pandas, python, substrait)", mode);
        return NULL;
    }
    s->name = (char *)it->name;
    s->project = (char *)c->project;
    s->mode = (char *)(mode ? mode : "pandas");
    s->description = (char *)(desc ? desc : "");
    s->owner = (char *)(owner ? owner : "");
    s->org = (char *)(org ? org : "");
    s->version = (char *)"latest";
    if (split_schema(c, d, m, path, ents, nents, ent_nodes, fs, nfs, fnodes, &s->base) != 0)
        return NULL;
    /* sources: view names, {feature_view, features} or request source names */
    yaml_node_t *sn = map_get(d, m, "sources");
    subpath(p2, sizeof p2, path, "sources");
    if (is_null(sn) || sn->type != YAML_SEQUENCE_NODE ||
        sn->data.sequence.items.top == sn->data.sequence.items.start) {
        err(c, d, sn ? sn : m, p2,
            is_null(sn) ? "required: the feature views and request sources it reads"
                        : "expected a non-empty list of feature views and request sources");
        return NULL;
    }
    size_t cnt = (size_t)(sn->data.sequence.items.top - sn->data.sequence.items.start);
    char **keys_ = cnew(c, cnt * sizeof(char *));
    Feast__Core__OnDemandSource **vals = cnew(c, cnt * sizeof *vals);
    for (size_t i = 0; i < cnt; i++) {
        yaml_node_t *e = node(d, sn->data.sequence.items.start[i]);
        char ep[200];
        snprintf(ep, sizeof ep, "%s[%zu]", p2, i);
        Feast__Core__OnDemandSource *os =
                NEWMSG(c, Feast__Core__OnDemandSource, feast__core__on_demand_source__init);
        const char *nm = scalar(e);
        item *ri = nm ? find_item(c, CD_DATA_SOURCE, nm) : NULL;
        const Feast__Core__DataSource *rs = ri   ? build_source(c, ri)
                                            : nm ? reg_source(c, nm)
                                                 : NULL;
        if (nm && (ri || rs) && !find_item(c, CD_FEATURE_VIEW, nm) && !reg_fv(c, nm)) {
            if (!rs) {
                bad = 1;
                continue;
            }
            if (rs->type != FEAST__CORE__DATA_SOURCE__SOURCE_TYPE__REQUEST_SOURCE) {
                err(c, d, e, ep,
                    "data source '%s' is not a request source (on-demand views read feature "
                    "views and request sources)",
                    nm);
                bad = 1;
                continue;
            }
            os->source_case = FEAST__CORE__ON_DEMAND_SOURCE__SOURCE_REQUEST_DATA_SOURCE;
            os->request_data_source = source_copy(c, rs, 0);
            keys_[i] = cstr(c, nm);
        } else {
            Feast__Core__FeatureViewProjection *p = parse_projection(c, d, e, ep, 0, 0);
            if (!p) {
                bad = 1;
                continue;
            }
            os->source_case = FEAST__CORE__ON_DEMAND_SOURCE__SOURCE_FEATURE_VIEW_PROJECTION;
            os->feature_view_projection = p;
            keys_[i] = p->feature_view_name;
        }
        for (size_t j = 0; j < i; j++)
            if (keys_[j] && !strcmp(keys_[j], keys_[i])) {
                err(c, d, e, ep, "source '%s' is listed twice", keys_[i]);
                bad = 1;
            }
        vals[i] = os;
    }
    if (bad)
        return NULL;
    const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field_by_name(s->base.descriptor, "sources");
    Feast__Core__OnDemandFeatureViewSpec__SourcesEntry **arr = cnew(c, cnt * sizeof *arr);
    for (size_t i = 0; i < cnt; i++) {
        arr[i] = NEWMSG(c, Feast__Core__OnDemandFeatureViewSpec__SourcesEntry,
                        feast__core__on_demand_feature_view_spec__sources_entry__init);
        arr[i]->key = keys_[i];
        arr[i]->value = vals[i];
    }
    (void)f;
    s->sources = arr;
    s->n_sources = cnt;
    return o;
}

/* ------------------------------------------------------------ services, permissions */

static Feast__Core__FeatureService *build_fs(ctx *c, item *it)
{
    static const char *const keys[] = {"name", "features", "tags", "description", "owner", NULL};
    const doc *d = it->d;
    yaml_node_t *m = it->node;
    const char *path = it->path;
    int bad = check_keys(c, d, m, path, keys);
    const char *desc, *owner;
    Feast__Core__FeatureService *fsv =
            NEWMSG(c, Feast__Core__FeatureService, feast__core__feature_service__init);
    Feast__Core__FeatureServiceSpec *s =
            NEWMSG(c, Feast__Core__FeatureServiceSpec, feast__core__feature_service_spec__init);
    fsv->spec = s;
    fsv->meta = NEWMSG(c, Feast__Core__FeatureServiceMeta, feast__core__feature_service_meta__init);
    bad |= get_str(c, d, m, "description", path, 0, &desc);
    bad |= get_str(c, d, m, "owner", path, 0, &owner);
    bad |= get_str_map(c, d, m, "tags", path, &s->base, "tags");
    if (bad)
        return NULL;
    yaml_node_t *fn = map_get(d, m, "features");
    char p2[160];
    subpath(p2, sizeof p2, path, "features");
    if (is_null(fn) || fn->type != YAML_SEQUENCE_NODE ||
        fn->data.sequence.items.top == fn->data.sequence.items.start) {
        err(c, d, fn ? fn : m, p2,
            is_null(fn) ? "required: the feature views it serves"
                        : "expected a non-empty list of feature views");
        return NULL;
    }
    size_t cnt = (size_t)(fn->data.sequence.items.top - fn->data.sequence.items.start);
    s->features = cnew(c, cnt * sizeof *s->features);
    for (size_t i = 0; i < cnt; i++) {
        char ep[200];
        snprintf(ep, sizeof ep, "%s[%zu]", p2, i);
        Feast__Core__FeatureViewProjection *p =
                parse_projection(c, d, node(d, fn->data.sequence.items.start[i]), ep, 1, 1);
        if (!p) {
            bad = 1;
            continue;
        }
        s->features[s->n_features++] = p;
    }
    if (bad)
        return NULL;
    s->name = (char *)it->name;
    s->project = (char *)c->project;
    s->description = (char *)(desc ? desc : "");
    s->owner = (char *)(owner ? owner : "");
    return fsv;
}

static int enum_by_name(const ProtobufCEnumDescriptor *ed, const char *s)
{
    char buf[64];
    size_t j = 0;
    /* feature_view, FeatureView, FEATURE_VIEW -> FEATURE_VIEW */
    for (const char *p = s; *p && j + 2 < sizeof buf; p++) {
        if (p != s && *p >= 'A' && *p <= 'Z' && p[-1] >= 'a' && p[-1] <= 'z')
            buf[j++] = '_';
        buf[j++] = (char)(*p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
    }
    buf[j] = 0;
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value_by_name(ed, buf);
    return v ? v->value : -1;
}

static Feast__Core__Permission *build_permission(ctx *c, item *it)
{
    static const char *const keys[] = {"name",    "types",  "name_patterns", "required_tags",
                                       "actions", "policy", "tags",          NULL};
    /* ALL_RESOURCE_TYPES in feast/feast_object.py order */
    static const int all_types[] = {10, 0, 1, 2, 3, 11, 4, 5, 6, 7, 8, 9};
    const doc *d = it->d;
    yaml_node_t *m = it->node;
    const char *path = it->path;
    int bad = check_keys(c, d, m, path, keys);
    char **types, **pats, **acts;
    size_t ntypes, npats, nacts;
    yaml_node_t **type_nodes, **act_nodes;
    Feast__Core__Permission *pm = NEWMSG(c, Feast__Core__Permission, feast__core__permission__init);
    Feast__Core__PermissionSpec *s =
            NEWMSG(c, Feast__Core__PermissionSpec, feast__core__permission_spec__init);
    pm->spec = s;
    pm->meta = NEWMSG(c, Feast__Core__PermissionMeta, feast__core__permission_meta__init);
    bad |= get_str_list(c, d, m, "types", path, 1, &types, &ntypes, &type_nodes);
    bad |= get_str_list(c, d, m, "name_patterns", path, 1, &pats, &npats, NULL);
    bad |= get_str_list(c, d, m, "actions", path, 1, &acts, &nacts, &act_nodes);
    bad |= get_str_map(c, d, m, "required_tags", path, &s->base, "required_tags");
    bad |= get_str_map(c, d, m, "tags", path, &s->base, "tags");
    if (bad)
        return NULL;
    s->name = (char *)it->name;
    s->project = (char *)c->project;
    for (size_t i = 0; i < npats; i++) { /* Feast strips the patterns */
        char *p = pats[i];
        while (*p == ' ' || *p == '\t')
            p++;
        size_t n = strlen(p);
        while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            p[--n] = 0;
        pats[i] = p;
    }
    s->name_patterns = pats;
    s->n_name_patterns = npats;
    char p2[160];
    if (ntypes == 0) {
        s->n_types = sizeof all_types / sizeof all_types[0];
        s->types = cnew(c, sizeof all_types);
        for (size_t i = 0; i < s->n_types; i++)
            s->types[i] = all_types[i];
    } else {
        s->types = cnew(c, ntypes * sizeof *s->types);
        for (size_t i = 0; i < ntypes; i++) {
            int v = enum_by_name(&feast__core__permission_spec__type__descriptor, types[i]);
            if (v < 0) {
                snprintf(p2, sizeof p2, "%s.types[%zu]", path, i);
                err(c, d, type_nodes[i], p2,
                    "unknown type '%s' (project, feature_view, on_demand_feature_view, "
                    "batch_feature_view, stream_feature_view, label_view, entity, "
                    "feature_service, data_source, validation_reference, saved_dataset, "
                    "permission)",
                    types[i]);
                bad = 1;
                continue;
            }
            s->types[s->n_types++] = v;
        }
    }
    /* actions; aliases of feast.permissions.action: READ, WRITE, CRUD, ALL */
    s->actions = cnew(c, (nacts * 8 + 8) * sizeof *s->actions);
    if (nacts == 0) {
        for (int v = 0; v < 8; v++)
            s->actions[s->n_actions++] = v;
    }
    for (size_t i = 0; i < nacts; i++) {
        int v = enum_by_name(&feast__core__permission_spec__authzed_action__descriptor, acts[i]);
        static const struct {
            const char *alias;
            int v[8];
            int n;
        } aliases[] = {{"READ", {5, 4}, 2},
                       {"WRITE", {7, 6}, 2},
                       {"CRUD", {0, 1, 2, 3}, 4},
                       {"ALL", {0, 1, 2, 3, 4, 5, 6, 7}, 8}};
        if (v >= 0) {
            s->actions[s->n_actions++] = v;
            continue;
        }
        int found = 0;
        for (size_t a = 0; a < 4; a++)
            if (!strcasecmp(aliases[a].alias, acts[i])) {
                for (int k = 0; k < aliases[a].n; k++)
                    s->actions[s->n_actions++] = aliases[a].v[k];
                found = 1;
            }
        if (!found) {
            snprintf(p2, sizeof p2, "%s.actions[%zu]", path, i);
            err(c, d, act_nodes[i], p2,
                "unknown action '%s' (create, describe, update, delete, read_online, "
                "read_offline, write_online, write_offline, read, write, crud, all)",
                acts[i]);
            bad = 1;
        }
    }
    /* policy: {roles} | {groups} | {namespaces} | {groups, namespaces}; none = allow all */
    s->policy = NEWMSG(c, Feast__Core__Policy, feast__core__policy__init);
    yaml_node_t *pn = map_get(d, m, "policy");
    subpath(p2, sizeof p2, path, "policy");
    if (!is_null(pn)) {
        static const char *const pkeys[] = {"roles", "groups", "namespaces", NULL};
        if (pn->type != YAML_MAPPING_NODE) {
            err(c, d, pn, p2,
                "expected a mapping ({roles: [...]}, {groups: [...]}, "
                "{namespaces: [...]}), got %s",
                node_kind(pn));
            return NULL;
        }
        char **roles, **groups, **nss;
        size_t nr, ng, nn;
        if (check_keys(c, d, pn, p2, pkeys) ||
            get_str_list(c, d, pn, "roles", p2, 0, &roles, &nr, NULL) ||
            get_str_list(c, d, pn, "groups", p2, 0, &groups, &ng, NULL) ||
            get_str_list(c, d, pn, "namespaces", p2, 0, &nss, &nn, NULL))
            return NULL;
        Feast__Core__Policy *po = s->policy;
        if (nr && !ng && !nn) {
            po->policy_type_case = FEAST__CORE__POLICY__POLICY_TYPE_ROLE_BASED_POLICY;
            po->role_based_policy =
                    NEWMSG(c, Feast__Core__RoleBasedPolicy, feast__core__role_based_policy__init);
            po->role_based_policy->roles = roles;
            po->role_based_policy->n_roles = nr;
        } else if (ng && nn && !nr) {
            po->policy_type_case = FEAST__CORE__POLICY__POLICY_TYPE_COMBINED_GROUP_NAMESPACE_POLICY;
            po->combined_group_namespace_policy =
                    NEWMSG(c, Feast__Core__CombinedGroupNamespacePolicy,
                           feast__core__combined_group_namespace_policy__init);
            po->combined_group_namespace_policy->groups = groups;
            po->combined_group_namespace_policy->n_groups = ng;
            po->combined_group_namespace_policy->namespaces = nss;
            po->combined_group_namespace_policy->n_namespaces = nn;
        } else if (ng && !nr) {
            po->policy_type_case = FEAST__CORE__POLICY__POLICY_TYPE_GROUP_BASED_POLICY;
            po->group_based_policy =
                    NEWMSG(c, Feast__Core__GroupBasedPolicy, feast__core__group_based_policy__init);
            po->group_based_policy->groups = groups;
            po->group_based_policy->n_groups = ng;
        } else if (nn && !nr) {
            po->policy_type_case = FEAST__CORE__POLICY__POLICY_TYPE_NAMESPACE_BASED_POLICY;
            po->namespace_based_policy = NEWMSG(c, Feast__Core__NamespaceBasedPolicy,
                                                feast__core__namespace_based_policy__init);
            po->namespace_based_policy->namespaces = nss;
            po->namespace_based_policy->n_namespaces = nn;
        } else {
            err(c, d, pn, p2,
                "give roles, groups, namespaces, or groups and namespaces (non-empty lists)");
            return NULL;
        }
    }
    return bad ? NULL : pm;
}

/* ------------------------------------------------------------ files */

static const char *const section_names[] = {
        [CD_DATA_SOURCE] = "data_sources",         [CD_ENTITY] = "entities",
        [CD_FEATURE_VIEW] = "feature_views",       [CD_ODFV] = "on_demand_feature_views",
        [CD_FEATURE_SERVICE] = "feature_services", [CD_PERMISSION] = "permissions",
};

static int load_doc(ctx *c, doc *d, const char *file)
{
    d->file = file;
    FILE *f = fopen(file, "rb");
    if (!f) {
        c->nerr++;
        ld_buf_printf(c->errs, "%s: cannot open: %s\n", file, strerror(errno));
        return -1;
    }
    ld_buf b = LD_BUF_INIT;
    char chunk[65536];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0 && b.len <= CD_MAX_FILE_BYTES)
        ld_buf_append(&b, chunk, got);
    fclose(f);
    if (b.len > CD_MAX_FILE_BYTES) {
        c->nerr++;
        ld_buf_printf(c->errs, "%s: larger than %d bytes\n", file, CD_MAX_FILE_BYTES);
        ld_buf_free(&b);
        return -1;
    }
    yaml_parser_t p;
    yaml_parser_initialize(&p);
    yaml_parser_set_input_string(&p, (const unsigned char *)(b.data ? b.data : ""), b.len);
    int ok = yaml_parser_load(&p, &d->y);
    if (!ok) {
        c->nerr++;
        ld_buf_printf(c->errs, "%s:%d: YAML syntax error: %s%s%s\n", file,
                      (int)p.problem_mark.line + 1, p.problem ? p.problem : "invalid YAML",
                      p.context ? " " : "", p.context ? p.context : "");
    } else {
        d->loaded = 1;
        /* A second document in the same file is not read: say so. */
        yaml_document_t extra;
        if (yaml_parser_load(&p, &extra)) {
            if (yaml_document_get_root_node(&extra)) {
                c->nerr++;
                ld_buf_printf(c->errs, "%s:%d: only one YAML document per file\n", file,
                              (int)yaml_document_get_root_node(&extra)->start_mark.line + 1);
                ok = 0;
            }
            yaml_document_delete(&extra);
        }
    }
    yaml_parser_delete(&p);
    ld_buf_free(&b);
    return ok ? 0 : -1;
}

static void add_item(ctx *c, cd_kind k, const char *name, doc *d, yaml_node_t *n, const char *path)
{
    item *prev = find_item(c, k, name);
    if (prev) {
        char sp[128];
        snprintf(sp, sizeof sp, "%s.name", path);
        err(c, d, map_get(d, n, "name"), sp, "%s '%s' is defined twice (first at %s:%d)",
            cd_kind_label[k], name, prev->d->file, (int)prev->node->start_mark.line + 1);
        return;
    }
    if (c->nitems == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 32;
        item *nv = realloc(c->items, c->cap * sizeof *nv);
        if (!nv) {
            fprintf(stderr, "larder: out of memory\n");
            exit(1);
        }
        c->items = nv;
    }
    item *it = &c->items[c->nitems++];
    memset(it, 0, sizeof *it);
    it->kind = k;
    it->name = name;
    it->d = d;
    it->node = n;
    snprintf(it->path, sizeof it->path, "%s", path);
}

/* Project from a definitions file (a name, or {name, description, tags,
 * owner}) or from feature_store.yaml. */
static Feast__Core__Project *project_obj(ctx *c, doc *d, yaml_node_t *n)
{
    static const char *const keys[] = {"name", "description", "tags", "owner", NULL};
    Feast__Core__Project *p = NEWMSG(c, Feast__Core__Project, feast__core__project__init);
    p->spec = NEWMSG(c, Feast__Core__ProjectSpec, feast__core__project_spec__init);
    p->meta = NEWMSG(c, Feast__Core__ProjectMeta, feast__core__project_meta__init);
    p->spec->name = (char *)c->project;
    p->spec->description = (char *)(c->cfg->project_description ? c->cfg->project_description : "");
    if (!n)
        return p;
    const char *name = NULL, *desc = NULL, *owner = NULL;
    if (n->type == YAML_SCALAR_NODE) {
        name = scalar(n);
    } else if (n->type == YAML_MAPPING_NODE) {
        if (check_keys(c, d, n, "project", keys) || get_str(c, d, n, "name", "project", 1, &name) ||
            get_str(c, d, n, "description", "project", 0, &desc) ||
            get_str(c, d, n, "owner", "project", 0, &owner) ||
            get_str_map(c, d, n, "tags", "project", &p->spec->base, "tags"))
            return NULL;
    } else {
        err(c, d, n, "project",
            "expected a project name or {name, description, tags, owner}, "
            "got %s",
            node_kind(n));
        return NULL;
    }
    if (strcmp(name, c->project)) {
        err(c, d, n, "project",
            "project '%s' differs from project '%s' of %s (apply into the configured project)",
            name, c->project, c->cfg->source ? c->cfg->source : "feature_store.yaml");
        return NULL;
    }
    if (desc)
        p->spec->description = (char *)desc;
    p->spec->owner = (char *)(owner ? owner : "");
    return p;
}

int cd_load(const char *const *files, size_t nfiles, const ld_config *cfg,
            const Feast__Core__Registry *reg, cd_defs *out, ld_buf *errs)
{
    memset(out, 0, sizeof *out);
    ld_arena_init(&out->arena, NULL, 0, 0);
    ctx cx = {.cfg = cfg,
              .project = cfg->project,
              .reg = reg,
              .a = &out->arena,
              .errs = errs,
              .out = out};
    ctx *c = &cx;
    doc *docs = calloc(nfiles ? nfiles : 1, sizeof *docs);
    if (!docs) {
        fprintf(stderr, "larder: out of memory\n");
        exit(1);
    }
    static const char *const top_keys[] = {"project",
                                           "entities",
                                           "data_sources",
                                           "feature_views",
                                           "on_demand_feature_views",
                                           "feature_services",
                                           "permissions",
                                           NULL};
    Feast__Core__Project *project = NULL;
    doc *project_doc = NULL;
    yaml_node_t *project_node = NULL;
    for (size_t i = 0; i < nfiles; i++) {
        doc *d = &docs[i];
        if (load_doc(c, d, files[i]) != 0)
            continue;
        yaml_node_t *root = yaml_document_get_root_node(&d->y);
        if (!root || is_null(root))
            continue; /* an empty file defines nothing */
        if (root->type != YAML_MAPPING_NODE) {
            err(c, d, root, "", "the file must be a mapping with sections (%s, ...), got %s",
                "entities, data_sources, feature_views", node_kind(root));
            continue;
        }
        if (check_keys(c, d, root, "", top_keys) != 0)
            continue;
        yaml_node_t *pn = map_get(d, root, "project");
        if (pn && !is_null(pn)) {
            if (project_node)
                err(c, d, pn, "project", "the project is already defined in %s:%d",
                    project_doc->file, (int)project_node->start_mark.line + 1);
            project_doc = d;
            project_node = pn;
        }
        for (int k = CD_DATA_SOURCE; k < CD_NKINDS; k++) {
            yaml_node_t *sec = map_get(d, root, section_names[k]);
            if (is_null(sec))
                continue;
            if (sec->type != YAML_SEQUENCE_NODE) {
                err(c, d, sec, section_names[k], "expected a list, got %s", node_kind(sec));
                continue;
            }
            size_t cnt = (size_t)(sec->data.sequence.items.top - sec->data.sequence.items.start);
            for (size_t j = 0; j < cnt; j++) {
                yaml_node_t *e = node(d, sec->data.sequence.items.start[j]);
                char path[64];
                snprintf(path, sizeof path, "%s[%zu]", section_names[k], j);
                if (e->type != YAML_MAPPING_NODE) {
                    err(c, d, e, path, "expected a mapping with a name, got %s", node_kind(e));
                    continue;
                }
                const char *name;
                if (get_str(c, d, e, "name", path, 1, &name) != 0)
                    continue;
                if ((k == CD_FEATURE_VIEW || k == CD_ODFV) &&
                    (strchr(name, ':') || strchr(name, '@'))) {
                    char np[96];
                    snprintf(np, sizeof np, "%s.name", path);
                    err(c, d, map_get(d, e, "name"), np, "a view name must not contain ':' or '@'");
                    continue;
                }
                add_item(c, (cd_kind)k, name, d, e, path);
            }
        }
    }
    /* Names are unique across view kinds (Feast's ConflictingFeatureViewNames). */
    for (size_t i = 0; i < c->nitems; i++) {
        item *it = &c->items[i];
        char np[96];
        snprintf(np, sizeof np, "%s.name", it->path);
        if (it->kind == CD_FEATURE_VIEW && find_item(c, CD_ODFV, it->name))
            err(c, it->d, it->node, np,
                "'%s' names both a feature view and an on demand feature "
                "view",
                it->name);
        else if (it->kind == CD_FEATURE_VIEW && reg_odfv(c, it->name))
            err(c, it->d, it->node, np,
                "'%s' is an on demand feature view in the registry (delete it first)", it->name);
        else if (it->kind == CD_ODFV && reg_fv(c, it->name))
            err(c, it->d, it->node, np, "'%s' is a feature view in the registry (delete it first)",
                it->name);
    }

    project = project_obj(c, project_doc, project_node);
    if (project)
        add_obj(c, CD_PROJECT, c->project, &project->base, NULL);
    if (project && project_node)
        out->v[out->n - 1].file = project_doc->file,
                        out->v[out->n - 1].line = (int)project_node->start_mark.line + 1;

    for (size_t i = 0; i < c->nitems; i++)
        if (c->items[i].kind == CD_DATA_SOURCE)
            build_source(c, &c->items[i]);
    for (size_t i = 0; i < c->nitems; i++)
        if (c->items[i].kind == CD_DATA_SOURCE && c->items[i].state == 2)
            add_obj(c, CD_DATA_SOURCE, c->items[i].name,
                    &source_copy(c, c->items[i].built, 1)->base, &c->items[i]);
    for (size_t i = 0; i < c->nitems; i++) {
        item *it = &c->items[i];
        if (it->kind != CD_ENTITY)
            continue;
        Feast__Core__Entity *e = build_entity(c, it);
        it->state = e ? 2 : 3;
        it->built = e;
        if (e)
            add_obj(c, CD_ENTITY, it->name, &e->base, it);
    }
    /* Feast applies its placeholder entity for entity-less views every time. */
    if (!find_item(c, CD_ENTITY, DUMMY_ENTITY_NAME)) {
        Feast__Core__Entity *e = NEWMSG(c, Feast__Core__Entity, feast__core__entity__init);
        e->spec = NEWMSG(c, Feast__Core__EntitySpecV2, feast__core__entity_spec_v2__init);
        e->meta = NEWMSG(c, Feast__Core__EntityMeta, feast__core__entity_meta__init);
        e->spec->name = (char *)DUMMY_ENTITY_NAME;
        e->spec->join_key = (char *)DUMMY_ENTITY_ID;
        e->spec->project = (char *)c->project;
        add_obj(c, CD_ENTITY, DUMMY_ENTITY_NAME, &e->base, NULL);
        out->v[out->n - 1].hidden = 1;
    }
    for (size_t i = 0; i < c->nitems; i++) {
        item *it = &c->items[i];
        if (it->kind != CD_FEATURE_VIEW)
            continue;
        Feast__Core__FeatureView *fv = build_fv(c, it);
        it->state = fv ? 2 : 3;
        it->built = fv;
        if (fv)
            add_obj(c, CD_FEATURE_VIEW, it->name, &fv->base, it);
    }
    for (size_t i = 0; i < c->nitems; i++) {
        item *it = &c->items[i];
        if (it->kind != CD_ODFV)
            continue;
        Feast__Core__OnDemandFeatureView *o = build_odfv(c, it);
        it->state = o ? 2 : 3;
        it->built = o;
        if (o)
            add_obj(c, CD_ODFV, it->name, &o->base, it);
    }
    for (size_t i = 0; i < c->nitems; i++) {
        item *it = &c->items[i];
        if (it->kind == CD_FEATURE_SERVICE) {
            Feast__Core__FeatureService *f = build_fs(c, it);
            if (f)
                add_obj(c, CD_FEATURE_SERVICE, it->name, &f->base, it);
        }
    }
    for (size_t i = 0; i < c->nitems; i++) {
        item *it = &c->items[i];
        if (it->kind == CD_PERMISSION) {
            Feast__Core__Permission *p = build_permission(c, it);
            if (p)
                add_obj(c, CD_PERMISSION, it->name, &p->base, it);
        }
    }
    if (c->nerr > CD_MAX_ERRORS)
        ld_buf_printf(errs, "... and %d more problems\n", c->nerr - CD_MAX_ERRORS);
    for (size_t i = 0; i < nfiles; i++)
        if (docs[i].loaded)
            yaml_document_delete(&docs[i].y);
    free(docs);
    free(c->items);
    return c->nerr;
}

void cd_free(cd_defs *d)
{
    free(d->v);
    d->v = NULL;
    d->n = d->cap = 0;
    ld_arena_destroy(&d->arena);
}
