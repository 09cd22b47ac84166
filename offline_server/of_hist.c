#include "of_hist.h"

#include <stdlib.h>
#include <string.h>

#include "feast/core/FeatureService.pb-c.h"
#include "feast/core/FeatureView.pb-c.h"
#include "feast/core/OnDemandFeatureView.pb-c.h"
#include "feast/core/StreamFeatureView.pb-c.h"
#include "ld_arena.h"
#include "ld_time.h"
#include "of_api_int.h"
#include "ot_pit.h"

#define DEFAULT_WINDOW_US (30LL * 86400 * 1000000) /* Feast: default_window_days = 30 */
#define DUMMY_ENTITY_ID   "__dummy_id"

static int in_project(const char *p, const char *project)
{
    return !p || !*p || strcmp(p, project) == 0;
}

static const char *cmd_project(const ld_config *cfg, json_t *cmd)
{
    const char *p = json_string_value(json_object_get(cmd, "project"));
    return p && *p ? p : cfg->project;
}

static int is_odfv(const Feast__Core__Registry *r, const char *project, const char *name,
                   size_t len)
{
    for (size_t i = 0; i < r->n_on_demand_feature_views; i++) {
        const Feast__Core__OnDemandFeatureViewSpec *s = r->on_demand_feature_views[i]->spec;
        if (s && strlen(s->name) == len && !strncmp(s->name, name, len) &&
            in_project(s->project, project))
            return 1;
    }
    return 0;
}

int of_hist_check_refs(const Feast__Core__Registry *r, const char *project, json_t *cmd,
                       ld_status *st)
{
    json_t *names = json_object_get(cmd, "feature_view_names");
    json_t *aliases = json_object_get(cmd, "name_aliases");
    json_t *refs = json_object_get(cmd, "feature_refs");
    for (size_t i = 0; i < json_array_size(refs); i++) {
        const char *ref = json_string_value(json_array_get(refs, i));
        const char *colon = ref ? strchr(ref, ':') : NULL;
        if (!colon)
            return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                                 "feature_refs[%zu] is not \"view:feature\"", i);
        size_t len = (size_t)(colon - ref);
        int known = 0;
        for (size_t v = 0; v < json_array_size(names) && !known; v++) {
            const char *use = json_string_value(json_array_get(aliases, v));
            if (!use)
                use = json_string_value(json_array_get(names, v));
            known = use && strlen(use) == len && !strncmp(use, ref, len);
        }
        if (known)
            continue;
        if (is_odfv(r, project, ref, len))
            return ld_status_set(st, GRPC_STATUS_FAILED_PRECONDITION, NULL,
                                 "on demand feature view %.*s needs its Python transformation, "
                                 "which larder-offline does not run (feature ref %s)",
                                 (int)len, ref, ref);
        return ld_status_set(st, GRPC_STATUS_NOT_FOUND, "FeatureViewNotFoundException",
                             "Feature view %.*s does not exist in project %s", (int)len, ref,
                             project);
    }
    return 0;
}

/* ------------------------------------------------------------ views */

typedef struct hview {
    const char *name, *use; /* registry name; alias or name */
    const Feast__Core__DataSource *ds;
    const char **keys;  /* source columns (Feast names) */
    const char **ekeys; /* output columns (join-key map applied) */
    size_t nk;
    int64_t ttl_us;
    const char **feats, **outs;
    size_t nf;
    ot_table *src;
    const ot_column *ts;
    const ot_column **kc;
    int64_t lo_ns;
} hview;

static const char *mapped(const Feast__Core__DataSource *ds, const char *col)
{
    for (size_t i = 0; i < ds->n_field_mapping; i++)
        if (!strcmp(ds->field_mapping[i]->key, col))
            return ds->field_mapping[i]->value;
    return col;
}

/* Feast's offline server applies the projection of the (last) feature
 * service projection that carries the alias. */
static const Feast__Core__FeatureViewProjection *
alias_projection(const Feast__Core__Registry *r, const char *project, const char *alias)
{
    const Feast__Core__FeatureViewProjection *p = NULL;
    for (size_t i = 0; i < r->n_feature_services; i++) {
        const Feast__Core__FeatureServiceSpec *s = r->feature_services[i]->spec;
        if (!s || !in_project(s->project, project))
            continue;
        for (size_t k = 0; k < s->n_features; k++)
            if (!strcmp(s->features[k]->feature_view_name_alias, alias))
                p = s->features[k];
    }
    return p;
}

static int resolve_view(const Feast__Core__Registry *r, const char *project, const char *name,
                        const char *alias, json_t *refs, int full, hview *h, ld_arena *ar,
                        ld_status *st)
{
    size_t n_ec = 0;
    Feast__Core__FeatureSpecV2 **ec = NULL;
    Google__Protobuf__Duration *ttl = NULL;
    Feast__Core__DataSource *ds = NULL;
    int found = 0;
    for (size_t i = 0; i < r->n_feature_views && !found; i++) {
        const Feast__Core__FeatureViewSpec *s = r->feature_views[i]->spec;
        if (s && !strcmp(s->name, name) && in_project(s->project, project)) {
            found = 1;
            n_ec = s->n_entity_columns, ec = s->entity_columns, ttl = s->ttl, ds = s->batch_source;
        }
    }
    for (size_t i = 0; i < r->n_stream_feature_views && !found; i++) {
        const Feast__Core__StreamFeatureViewSpec *s = r->stream_feature_views[i]->spec;
        if (s && !strcmp(s->name, name) && in_project(s->project, project)) {
            found = 1;
            n_ec = s->n_entity_columns, ec = s->entity_columns, ttl = s->ttl, ds = s->batch_source;
        }
    }
    if (!found) {
        if (is_odfv(r, project, name, strlen(name)))
            return ld_status_set(st, GRPC_STATUS_FAILED_PRECONDITION, NULL,
                                 "on demand feature view %s needs its Python transformation, "
                                 "which larder-offline does not run",
                                 name);
        return ld_status_set(st, GRPC_STATUS_NOT_FOUND, "FeatureViewNotFoundException",
                             "Feature view %s does not exist in project %s", name, project);
    }
    if (!ds)
        return ld_status_set(st, GRPC_STATUS_FAILED_PRECONDITION, NULL,
                             "feature view %s has no batch source", name);
    const Feast__Core__FeatureViewProjection *proj =
            alias ? alias_projection(r, project, alias) : NULL;
    h->name = name;
    h->use = alias ? alias : name;
    h->ds = ds;
    h->ttl_us = ttl ? ttl->seconds * 1000000 + ttl->nanos / 1000 : 0;
    h->keys = ld_arena_calloc(ar, n_ec + 1, sizeof *h->keys);
    h->ekeys = ld_arena_calloc(ar, n_ec + 1, sizeof *h->ekeys);
    h->feats = ld_arena_calloc(ar, json_array_size(refs) + 1, sizeof *h->feats);
    h->outs = ld_arena_calloc(ar, json_array_size(refs) + 1, sizeof *h->outs);
    if (!h->keys || !h->ekeys || !h->feats || !h->outs)
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
    for (size_t k = 0; k < n_ec; k++) {
        const char *key = ec[k]->name;
        if (!strcmp(key, DUMMY_ENTITY_ID))
            continue;
        const char *ekey = key;
        for (size_t m = 0; proj && m < proj->n_join_key_map; m++)
            if (!strcmp(proj->join_key_map[m]->key, key))
                ekey = proj->join_key_map[m]->value;
        h->keys[h->nk] = key;
        h->ekeys[h->nk++] = ekey;
    }
    size_t ul = strlen(h->use);
    for (size_t i = 0; i < json_array_size(refs); i++) {
        const char *ref = json_string_value(json_array_get(refs, i));
        if (!ref || strncmp(ref, h->use, ul) || ref[ul] != ':')
            continue;
        h->feats[h->nf] = ref + ul + 1;
        h->outs[h->nf++] =
                full ? ld_arena_sprintf(ar, "%s__%s", h->use, ref + ul + 1) : ref + ul + 1;
    }
    return 0;
}

int of_hist_resolve(const Feast__Core__Registry *r, const char *project, json_t *cmd, size_t v,
                    ot_pit_view *pv, const Feast__Core__DataSource **ds, ld_arena *ar,
                    ld_status *st)
{
    const char *name =
            json_string_value(json_array_get(json_object_get(cmd, "feature_view_names"), v));
    const char *alias = json_string_value(json_array_get(json_object_get(cmd, "name_aliases"), v));
    if (!name)
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "feature_view_names must be strings");
    hview h = {0};
    if (resolve_view(r, project, name, alias, json_object_get(cmd, "feature_refs"),
                     json_is_true(json_object_get(cmd, "full_feature_names")), &h, ar, st) != 0)
        return -1;
    *ds = h.ds;
    *pv = (ot_pit_view){
            .join_keys = h.keys,
            .entity_keys = h.ekeys,
            .n_keys = h.nk,
            .event_ts = mapped(h.ds, h.ds->timestamp_field),
            .created_ts = *h.ds->created_timestamp_column
                                  ? mapped(h.ds, h.ds->created_timestamp_column)
                                  : NULL,
            .ttl_us = h.ttl_us,
            .features = h.feats,
            .out_names = h.outs,
            .n_features = h.nf,
    };
    return 0;
}

/* ------------------------------------------------------------ keys */

static int64_t ts_ns(const ot_column *c, int64_t r)
{
    static const int64_t per_unit[4] = {1000000000, 1000000, 1000, 1};
    int64_t v, m;
    if (c->type.id == OT_DATE32) {
        v = (int64_t)((const int32_t *)c->values)[r] * 86400;
        m = per_unit[OT_SECOND];
    } else {
        v = ((const int64_t *)c->values)[r];
        m = per_unit[c->type.unit & 3];
    }
    if (v > INT64_MAX / m)
        return INT64_MAX;
    if (v < INT64_MIN / m)
        return INT64_MIN;
    return v * m;
}

static int key_class(ot_type_id id)
{
    switch (id) {
    case OT_INT32:
    case OT_INT64:
        return 1;
    case OT_UTF8:
    case OT_LARGE_UTF8:
    case OT_BINARY:
        return 2;
    default:
        return 10 + (int)id;
    }
}

static int64_t get_int(const ot_column *c, int64_t r)
{
    return c->type.id == OT_INT32 ? ((const int32_t *)c->values)[r]
                                  : ((const int64_t *)c->values)[r];
}

static const uint8_t *get_bytes(const ot_column *c, int64_t r, size_t *n)
{
    if (c->type.id == OT_LARGE_UTF8) {
        *n = (size_t)(c->offsets64[r + 1] - c->offsets64[r]);
        return c->data + c->offsets64[r];
    }
    *n = (size_t)(c->offsets[r + 1] - c->offsets[r]);
    return c->data + c->offsets[r];
}

static int key_cmp(const ot_column *a, int64_t ra, const ot_column *b, int64_t rb)
{
    switch (key_class(a->type.id)) {
    case 1: {
        int64_t x = get_int(a, ra), y = get_int(b, rb);
        return (x > y) - (x < y);
    }
    case 2: {
        size_t la, lb;
        const uint8_t *pa = get_bytes(a, ra, &la), *pb = get_bytes(b, rb, &lb);
        int c = la && lb ? memcmp(pa, pb, la < lb ? la : lb) : 0;
        return c ? c : (la > lb) - (la < lb);
    }
    default:
        break;
    }
    switch (a->type.id) {
    case OT_BOOL: {
        int x = ot_bit_get(a->values, ra), y = ot_bit_get(b->values, rb);
        return x - y;
    }
    case OT_FLOAT32:
    case OT_FLOAT64: {
        double x = a->type.id == OT_FLOAT32 ? ((const float *)a->values)[ra]
                                            : ((const double *)a->values)[ra];
        double y = b->type.id == OT_FLOAT32 ? ((const float *)b->values)[rb]
                                            : ((const double *)b->values)[rb];
        return (x > y) - (x < y);
    }
    case OT_TIMESTAMP:
    case OT_DATE32: {
        int64_t x = ts_ns(a, ra), y = ts_ns(b, rb);
        return (x > y) - (x < y);
    }
    default:
        return 0;
    }
}

typedef struct pair {
    uint32_t v;
    int64_t row;
} pair;

typedef struct pair_ctx {
    const hview *vs;
    size_t nk;
} pair_ctx;

static int cmp_pair(const void *pa, const void *pb, void *arg)
{
    const pair_ctx *x = arg;
    const pair *a = pa, *b = pb;
    for (size_t k = 0; k < x->nk; k++) {
        int c = key_cmp(x->vs[a->v].kc[k], a->row, x->vs[b->v].kc[k], b->row);
        if (c)
            return c;
    }
    return 0;
}

/* Output column k of the key rows u[0..n) drawn from several views. */
static int gather_key(const hview *vs, size_t nv, size_t k, const pair *u, size_t n,
                      const char *name, ot_column *dst, ld_status *st)
{
    const ot_type *t0 = &vs[0].kc[k]->type;
    int same = 1;
    for (size_t v = 1; v < nv; v++)
        same = same && ot_type_equal(t0, &vs[v].kc[k]->type);
    ot_type out = {0};
    ot_type_copy(&out, t0);
    if (!same)
        out.id = key_class(t0->id) == 1 ? OT_INT64 : OT_LARGE_UTF8;
    dst->name = strdup(name);
    dst->type = out;
    dst->length = (int64_t)n;
    if (!dst->name)
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
    switch (out.id) {
    case OT_UTF8:
    case OT_BINARY:
    case OT_LARGE_UTF8: {
        int64_t total = 0;
        for (size_t i = 0; i < n; i++) {
            size_t len;
            get_bytes(vs[u[i].v].kc[k], u[i].row, &len);
            total += (int64_t)len;
        }
        if (out.id != OT_LARGE_UTF8 && total > INT32_MAX)
            return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL,
                                 "join key %s: over 2 GiB of key bytes", name);
        dst->data = malloc((size_t)total + 1);
        if (out.id == OT_LARGE_UTF8)
            dst->offsets64 = malloc((n + 1) * sizeof *dst->offsets64);
        else
            dst->offsets = malloc((n + 1) * sizeof *dst->offsets);
        if (!dst->data || (!dst->offsets && !dst->offsets64))
            return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        int64_t at = 0;
        for (size_t i = 0; i <= n; i++) {
            if (dst->offsets64)
                dst->offsets64[i] = at;
            else
                dst->offsets[i] = (int32_t)at;
            if (i == n)
                break;
            size_t len;
            const uint8_t *p = get_bytes(vs[u[i].v].kc[k], u[i].row, &len);
            if (len)
                memcpy(dst->data + at, p, len);
            at += (int64_t)len;
        }
        dst->data_len = at;
        return 0;
    }
    case OT_BOOL: {
        dst->values = calloc(n / 8 + 1, 1);
        if (!dst->values)
            return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        for (size_t i = 0; i < n; i++)
            ot_bit_set(dst->values, (int64_t)i, ot_bit_get(vs[u[i].v].kc[k]->values, u[i].row));
        return 0;
    }
    case OT_INT64:
        if (!same) {
            int64_t *vals = malloc((n + 1) * sizeof *vals);
            if (!vals)
                return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
            for (size_t i = 0; i < n; i++)
                vals[i] = get_int(vs[u[i].v].kc[k], u[i].row);
            dst->values = vals;
            return 0;
        }
        /* fall through */
    default: {
        size_t w = out.id == OT_INT32 || out.id == OT_FLOAT32 || out.id == OT_DATE32 ? 4 : 8;
        uint8_t *vals = malloc((n + 1) * w);
        if (!vals)
            return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        for (size_t i = 0; i < n; i++)
            memcpy(vals + i * w, (const uint8_t *)vs[u[i].v].kc[k]->values + u[i].row * (int64_t)w,
                   w);
        dst->values = vals;
        return 0;
    }
    }
}

/* ------------------------------------------------------------ entity-less */

static int parse_date(json_t *cmd, const char *key, int64_t *us, int *present, ld_status *st)
{
    json_t *v = json_object_get(cmd, key);
    *present = v && !json_is_null(v);
    if (*present && (!json_is_string(v) || ld_time_parse_iso8601(json_string_value(v), us) != 0))
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "%s must be an ISO 8601 timestamp", key);
    return 0;
}

/* Put view v's keys in the order of view 0's output keys. */
static int align_keys(hview *h0, hview *h, ld_status *st)
{
    int same = h->nk == h0->nk;
    for (size_t k = 0; same && k < h0->nk; k++) {
        size_t m = k;
        while (m < h->nk && strcmp(h->ekeys[m], h0->ekeys[k]))
            m++;
        if (m == h->nk) {
            same = 0;
            break;
        }
        const char *t = h->keys[k], *e = h->ekeys[k];
        h->keys[k] = h->keys[m], h->ekeys[k] = h->ekeys[m];
        h->keys[m] = t, h->ekeys[m] = e;
    }
    if (!same)
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "entity-less retrieval needs feature views with the same join keys; "
                             "%s and %s differ",
                             h0->use, h->use);
    return 0;
}

/* Load view h's source and find its columns. */
static int load_view(const ld_config *cfg, hview *h, ld_arena *ar, ld_status *st)
{
    if (of_load_source(cfg, h->ds, &h->src, st) != 0)
        return -1;
    const char *tsn = mapped(h->ds, h->ds->timestamp_field);
    h->ts = ot_table_column(h->src, tsn);
    if (!h->ts || (h->ts->type.id != OT_TIMESTAMP && h->ts->type.id != OT_DATE32))
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "timestamp column %s of %s is missing or not a timestamp", tsn,
                             h->ds->name);
    h->kc = ld_arena_calloc(ar, h->nk + 1, sizeof *h->kc);
    if (!h->kc)
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
    for (size_t k = 0; k < h->nk; k++) {
        h->kc[k] = ot_table_column(h->src, h->keys[k]);
        if (!h->kc[k])
            return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                                 "join key %s is not a column of %s", h->keys[k], h->ds->name);
        ot_type_id id = h->kc[k]->type.id;
        if (id == OT_LIST || id == OT_NULL)
            return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                                 "join key %s of %s cannot be a join key (%s)", h->keys[k],
                                 h->ds->name, id == OT_LIST ? "a list" : "all null");
    }
    return 0;
}

int of_hist_range(of_api *a, json_t *cmd, ot_table **result, ld_status *st)
{
    *result = NULL;
    const ld_config *cfg = of_api_config(a);
    const char *project = cmd_project(cfg, cmd);
    json_t *names = json_object_get(cmd, "feature_view_names");
    json_t *aliases = json_object_get(cmd, "name_aliases");
    json_t *refs = json_object_get(cmd, "feature_refs");
    int full = json_is_true(json_object_get(cmd, "full_feature_names"));
    size_t nv = json_array_size(names);
    if (!json_is_array(names) || !json_is_array(refs) || !nv || !json_array_size(refs))
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "the command needs feature_view_names and feature_refs");
    int64_t start = 0, end = 0;
    int has_start, has_end;
    if (parse_date(cmd, "start_date", &start, &has_start, st) != 0 ||
        parse_date(cmd, "end_date", &end, &has_end, st) != 0)
        return -1;
    reg_copy *copy = of_api_registry(a, st);
    if (!copy)
        return -1;
    const Feast__Core__Registry *r = of_api_registry_get(copy);
    ld_arena ar;
    ld_arena_init(&ar, NULL, 0, 0);
    hview *vs = ld_arena_calloc(&ar, nv, sizeof *vs);
    ot_pit_view *pv = ld_arena_calloc(&ar, nv, sizeof *pv);
    int64_t **match = ld_arena_calloc(&ar, nv, sizeof *match);
    pair *pairs = NULL;
    ot_table *ent = NULL, *out = NULL;
    int rc = -1;
    if (!vs || !pv || !match) {
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        goto done;
    }
    if (of_hist_check_refs(r, project, cmd, st) != 0)
        goto done;
    int64_t max_ttl = 0;
    for (size_t v = 0; v < nv; v++) {
        const char *name = json_string_value(json_array_get(names, v));
        if (!name) {
            ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                          "feature_view_names must be strings");
            goto done;
        }
        if (resolve_view(r, project, name, json_string_value(json_array_get(aliases, v)), refs,
                         full, &vs[v], &ar, st) != 0 ||
            (v && align_keys(&vs[0], &vs[v], st) != 0))
            goto done;
        if (vs[v].ttl_us < 0) {
            ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL, "feature view %s: negative ttl",
                          name);
            goto done;
        }
        /* Feast: whole seconds of the largest ttl */
        int64_t t = vs[v].ttl_us / 1000000 * 1000000;
        if (t > max_ttl)
            max_ttl = t;
    }
    if (!has_end)
        end = ld_wall_us();
    if (!has_start)
        start = end - (max_ttl > 0 ? max_ttl : DEFAULT_WINDOW_US);
    if (start > end) {
        ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                      "start_date is after end_date in an entity-less retrieval");
        goto done;
    }
    /* every view's rows in its window, with non-null keys */
    size_t n_pairs = 0, cap = 0;
    const size_t nk = vs[0].nk;
    for (size_t v = 0; v < nv; v++) {
        hview *h = &vs[v];
        if (load_view(cfg, h, &ar, st) != 0)
            goto done;
        for (size_t k = 0; k < nk && v; k++)
            if (key_class(h->kc[k]->type.id) != key_class(vs[0].kc[k]->type.id) ||
                (key_class(h->kc[k]->type.id) > 2 &&
                 !ot_type_equal(&h->kc[k]->type, &vs[0].kc[k]->type))) {
                ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                              "join key %s has different types in %s and %s", h->ekeys[k],
                              vs[0].use, h->use);
                goto done;
            }
        int64_t lo = h->ttl_us > 0 && end - h->ttl_us > start ? end - h->ttl_us : start;
        h->lo_ns = lo > INT64_MIN / 1000 ? lo * 1000 : INT64_MIN;
        int64_t hi_ns = end < INT64_MAX / 1000 ? end * 1000 : INT64_MAX;
        for (int64_t i = 0; i < h->src->n_rows; i++) {
            if (!ot_column_valid(h->ts, i))
                continue;
            int64_t t = ts_ns(h->ts, i);
            if (t < h->lo_ns || t > hi_ns)
                continue;
            int ok = 1;
            for (size_t k = 0; k < nk && ok; k++)
                ok = ot_column_valid(h->kc[k], i);
            if (!ok)
                continue;
            if (n_pairs == cap) {
                cap = cap ? cap * 2 : 1024;
                pair *np = realloc(pairs, cap * sizeof *np);
                if (!np) {
                    ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
                    goto done;
                }
                pairs = np;
            }
            pairs[n_pairs++] = (pair){(uint32_t)v, i};
        }
    }
    /* the distinct keys, in key order */
    pair_ctx pc = {vs, nk};
    if (n_pairs)
        qsort_r(pairs, n_pairs, sizeof *pairs, cmp_pair, &pc);
    size_t nu = 0;
    for (size_t i = 0; i < n_pairs; i++)
        if (!nu || cmp_pair(&pairs[nu - 1], &pairs[i], &pc) != 0)
            pairs[nu++] = pairs[i];
    /* the synthetic entity table: event_timestamp = end_date, the keys */
    ent = ot_table_new(1 + nk, (int64_t)nu);
    ot_column *tc = &ent->cols[0];
    tc->name = strdup("event_timestamp");
    tc->type.id = OT_TIMESTAMP;
    tc->type.unit = OT_MICRO;
    tc->type.tz = strdup("UTC");
    tc->length = (int64_t)nu;
    int64_t *tv = malloc((nu + 1) * sizeof *tv);
    tc->values = tv;
    if (!tc->name || !tc->type.tz || !tv) {
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < nu; i++)
        tv[i] = end;
    for (size_t k = 0; k < nk; k++)
        if (gather_key(vs, nv, k, pairs, nu, vs[0].ekeys[k], &ent->cols[1 + k], st) != 0)
            goto done;
    /* each view's latest row at end_date, then its window's lower bound */
    size_t n_out = 1 + nk;
    for (size_t v = 0; v < nv; v++) {
        hview *h = &vs[v];
        pv[v] = (ot_pit_view){
                .source = h->src,
                .join_keys = h->keys,
                .entity_keys = h->ekeys,
                .n_keys = nk,
                .event_ts = mapped(h->ds, h->ds->timestamp_field),
                .created_ts = *h->ds->created_timestamp_column
                                      ? mapped(h->ds, h->ds->created_timestamp_column)
                                      : NULL,
                .ttl_us = 0,
                .features = h->feats,
                .out_names = h->outs,
                .n_features = h->nf,
        };
        match[v] = ld_arena_calloc(&ar, nu + 1, sizeof **match);
        if (!match[v]) {
            ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
            goto done;
        }
        n_out += h->nf;
    }
    if (ot_pit_match(ent, "event_timestamp", pv, nv, of_api_threads(a), match, st) != 0)
        goto done;
    out = ot_table_new(n_out, (int64_t)nu);
    for (size_t c = 0; c < ent->n_cols; c++) {
        out->cols[c] = ent->cols[c];
        memset(&ent->cols[c], 0, sizeof ent->cols[c]);
    }
    size_t c = ent->n_cols;
    for (size_t v = 0; v < nv; v++) {
        hview *h = &vs[v];
        for (size_t i = 0; i < nu; i++)
            if (match[v][i] >= 0 && ts_ns(h->ts, match[v][i]) < h->lo_ns)
                match[v][i] = -1;
        for (size_t f = 0; f < h->nf; f++, c++) {
            for (size_t p = 0; p < c; p++)
                if (out->cols[p].name && !strcmp(out->cols[p].name, h->outs[f])) {
                    ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "FeatureNameCollisionError",
                                  "Duplicate features named %s found.", h->outs[f]);
                    goto done;
                }
            const ot_column *src = ot_table_column(h->src, h->feats[f]);
            if (!src) {
                ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                              "feature %s is not a column of %s", h->feats[f], h->ds->name);
                goto done;
            }
            if (ot_column_take(src, match[v], (int64_t)nu, h->outs[f], &out->cols[c], st) != 0)
                goto done;
        }
    }
    *result = out;
    out = NULL;
    rc = 0;
done:
    ot_table_free(out);
    ot_table_free(ent);
    free(pairs);
    for (size_t v = 0; vs && v < nv; v++)
        ot_table_free(vs[v].src);
    of_api_registry_release(copy);
    ld_arena_destroy(&ar);
    return rc;
}
