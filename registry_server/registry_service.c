#include "registry_service.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "feast/core/FeatureView.pb-c.h"
#include "feast/core/InfraObject.pb-c.h"
#include "feast/core/Project.pb-c.h"
#include "feast/registry/RegistryServer.pb-c.h"
#include "google/protobuf/empty.pb-c.h"
#include "google/protobuf/timestamp.pb-c.h"
#include "ld_log.h"
#include "ld_time.h"
#include "lineage.h"
#include "pbref.h"
#include "rpc_util.h"

#define REG(c) ((registry *)ld_call_ctx(c))

/* What one method of a shared handler works on. */
typedef struct rpc_def {
    cat_kind kind;
    const char *obj_field; /* Apply*: the request field that holds the object */
    void (*serve)(ld_call *c, const ProtobufCMessage *req, const catalog *snap);
} rpc_def;

static const rpc_def *def_of(ld_call *c)
{
    return ld_call_method(c)->data;
}

static void reply_empty(ld_call *c)
{
    ld_call_reply_copy(c, "", 0);
}

/* Feast's messages: "Feature view x does not exist in project p", without
 * "in project" when the project is empty (saved datasets and validation
 * references always say it). Labels follow the exception: every kind of
 * feature view is a "Feature view". */
static void fail_not_found(ld_call *c, cat_kind kind, const char *name, const char *project)
{
    const cat_kind_info *ki = &cat_kinds[kind];
    static const char *const labels[CAT_N_KINDS] = {
            [CAT_ENTITY] = "Entity",
            [CAT_DATA_SOURCE] = "Data source",
            [CAT_FEATURE_VIEW] = "Feature view",
            [CAT_ODFV] = "Feature view",
            [CAT_SFV] = "Feature view",
            [CAT_LABEL_VIEW] = "Feature view",
            [CAT_FEATURE_SERVICE] = "Feature service",
            [CAT_SAVED_DATASET] = "Saved dataset",
            [CAT_VALIDATION_REF] = "Validation reference",
            [CAT_PERMISSION] = "Permission",
            [CAT_PROJECT] = "Project",
    };
    int always_project = kind == CAT_SAVED_DATASET || kind == CAT_VALIDATION_REF;
    if (kind == CAT_PROJECT || (!*project && !always_project))
        ld_call_failf(c, GRPC_STATUS_NOT_FOUND, ki->not_found_class, "%s %s does not exist",
                      labels[kind], name);
    else
        ld_call_failf(c, GRPC_STATUS_NOT_FOUND, ki->not_found_class,
                      "%s %s does not exist in project %s", labels[kind], name, project);
}

/* ------------------------------------------------------------ reads */

/* Reads honour allow_cache: true answers from the snapshot right here;
 * false first brings the snapshot up to date with the store, which may
 * block, so it runs on the pool. */
static void serve_now(ld_call *c, const ProtobufCMessage *req)
{
    catalog *snap = registry_snapshot(REG(c));
    def_of(c)->serve(c, req, snap);
    cat_unref(snap);
}

static void serve_after_refresh(ld_call *c)
{
    ld_status st = LD_STATUS_INIT;
    if (registry_refresh(REG(c), 0, &st) != 0) {
        ld_call_fail(c, &st);
        return;
    }
    serve_now(c, ld_call_user(c));
}

static void h_read(ld_call *c, const ProtobufCMessage *req)
{
    void *p;
    const ProtobufCFieldDescriptor *f = pbref_field(req, "allow_cache", &p);
    int allow_cache = f && p ? *(protobuf_c_boolean *)p : 1;
    if (allow_cache) {
        serve_now(c, req);
        return;
    }
    ld_call_set_user(c, (void *)req);
    if (ld_call_offload(c, serve_after_refresh) != 0)
        ld_call_failf(c, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "registry is busy");
}

static void serve_get(ld_call *c, const ProtobufCMessage *req, const catalog *snap)
{
    const rpc_def *d = def_of(c);
    const char *name = pbref_string(req, "name");
    const char *project = d->kind == CAT_PROJECT ? name : pbref_string(req, "project");
    cat_obj *o = cat_find(snap, d->kind, project, name);
    if (!o) {
        fail_not_found(c, d->kind, name, project);
        return;
    }
    ld_call_reply_copy(c, o->bytes, o->len);
}

/* `{items = 1 (repeated), pagination = 2}`, the shape of every List
 * response, from the stored bytes of objects [first, first + count) of l:
 * one buffer sized up front, each object copied once. */
static uint8_t *list_bytes(const obj_list *l, size_t first, size_t count, const page_meta *pm,
                           size_t *len)
{
    ld_buf b = LD_BUF_INIT;
    size_t total = 64;
    for (size_t i = first; i < first + count; i++)
        total += l->v[i]->len + 24;
    ld_buf_reserve(&b, total);
    for (size_t i = first; i < first + count; i++) {
        cat_obj *o = l->v[i];
        if (l->wrap[i]) { /* AnyFeatureView{<kind field> = object} */
            size_t inner = o->len;
            ld_buf hdr = LD_BUF_INIT;
            pb_put_varint(&hdr, ((uint64_t)l->wrap[i] << 3) | 2);
            pb_put_varint(&hdr, inner);
            pb_put_varint(&b, (1 << 3) | 2);
            pb_put_varint(&b, hdr.len + inner);
            ld_buf_append(&b, hdr.data, hdr.len);
            ld_buf_append(&b, o->bytes, o->len);
            ld_buf_free(&hdr);
        } else {
            pb_put_bytes_field(&b, 1, o->bytes, o->len);
        }
    }
    pb_put_page_meta(&b, 2, pm);
    return (uint8_t *)ld_buf_steal(&b, len);
}

/* Lists of at least this many objects are kept in the snapshot's memo when
 * the request has no filter, sort or page (see cat_memo_get). */
#define LIST_MEMO_MIN 64

/* The request selects every object of the kind in its project, in registry
 * order: no tags, no sorting, no pagination (and no kind-specific filter,
 * which the caller checks). */
static int list_is_plain(const ProtobufCMessage *req)
{
    size_t ntags;
    pbref_map(req, "tags", &ntags);
    if (ntags)
        return 0;
    const Feast__Registry__SortingParams *s = (const void *)pbref_message(req, "sorting");
    if (s && s->sort_by && *s->sort_by)
        return 0;
    const Feast__Registry__PaginationParams *p = (const void *)pbref_message(req, "pagination");
    return !(p && p->page > 0 && p->limit > 0);
}

/* Sorts, paginates and answers. With memo_project set (a plain request, see
 * list_is_plain), a large enough answer is also kept in snap's memo. */
static void reply_list_memo(ld_call *c, const ProtobufCMessage *req, obj_list *l,
                            const catalog *snap, cat_kind kind, const char *memo_project)
{
    size_t first, count;
    page_meta pm;
    ld_status st = LD_STATUS_INIT;
    if (sort_and_paginate(req, l, REG(c)->max_page_size, &first, &count, &pm, &st) != 0) {
        ld_call_fail(c, &st);
        return;
    }
    size_t len;
    uint8_t *data = list_bytes(l, first, count, &pm, &len);
    if (memo_project && count >= LIST_MEMO_MIN) {
        const cat_memo *m = cat_memo_put(snap, kind, memo_project, data, len);
        if (m) {
            ld_call_reply_copy(c, m->bytes, m->len);
            return;
        }
        data = list_bytes(l, first, count, &pm, &len); /* out of memory in the memo */
    }
    ld_call_reply_take(c, data, len);
}

static void reply_list(ld_call *c, const ProtobufCMessage *req, obj_list *l)
{
    reply_list_memo(c, req, l, NULL, CAT_ENTITY, NULL);
}

static int is_protected_project(const cat_obj *o)
{
    size_t n;
    ProtobufCMessage **tags = pbref_map(o->msg, "spec.tags", &n);
    const char *v = pbref_map_get(tags, n, "feast.dev/protected-project");
    return v && strcasecmp(v, "true") == 0;
}

/* The feature service uses a projection of this view. */
static int fs_uses_view(const cat_obj *fs, const char *view)
{
    const Feast__Core__FeatureService *m = (const void *)fs->msg;
    if (!m->spec)
        return 0;
    for (size_t i = 0; i < m->spec->n_features; i++)
        if (strcmp(m->spec->features[i]->feature_view_name, view) == 0)
            return 1;
    return 0;
}

static void serve_list(ld_call *c, const ProtobufCMessage *req, const catalog *snap)
{
    const rpc_def *d = def_of(c);
    const char *project = pbref_string(req, "project");
    const char *fv_filter = d->kind == CAT_FEATURE_SERVICE ? pbref_string(req, "feature_view") : "";
    const char *ns = d->kind == CAT_SAVED_DATASET ? pbref_string(req, "namespace") : "";
    const char *coll = d->kind == CAT_SAVED_DATASET ? pbref_string(req, "collection") : "";
    /* ListProjects filters protected projects: never memoized */
    int plain = d->kind != CAT_PROJECT && !*fv_filter && !*ns && !*coll && list_is_plain(req);
    if (plain) {
        const cat_memo *m = cat_memo_get(snap, d->kind, project);
        if (m) {
            ld_call_reply_copy(c, m->bytes, m->len);
            return;
        }
    }
    size_t ntags;
    pbref_map(req, "tags", &ntags); /* once, not per object */
    obj_list l = {0};
    const cat_vec *v = &snap->kinds[d->kind];
    for (size_t i = 0; i < v->n; i++) {
        cat_obj *o = v->v[i];
        if (d->kind == CAT_PROJECT) {
            if (is_protected_project(o))
                continue;
        } else if (strcmp(o->project, project) != 0) {
            continue;
        }
        if (ntags && !match_tags(req, o))
            continue;
        if (*fv_filter && !fs_uses_view(o, fv_filter))
            continue;
        if (*ns && strcmp(pbref_string(o->msg, "spec.namespace"), ns) != 0)
            continue;
        if (*coll && strcmp(pbref_string(o->msg, "spec.collection"), coll) != 0)
            continue;
        obj_list_push(&l, o, 0);
    }
    reply_list_memo(c, req, &l, snap, d->kind, plain ? project : NULL);
    obj_list_free(&l);
}

/* Feature views of every type, as one oneof (AnyFeatureView field numbers). */
static const struct {
    cat_kind kind;
    int field;
} any_fv[] = {
        {CAT_FEATURE_VIEW, 1},
        {CAT_ODFV, 2},
        {CAT_SFV, 3},
        {CAT_LABEL_VIEW, 4},
};

static void serve_get_any(ld_call *c, const ProtobufCMessage *req, const catalog *snap)
{
    const char *name = pbref_string(req, "name");
    const char *project = pbref_string(req, "project");
    /* Feast's file registry looks in FV, SFV, ODFV, label views */
    static const size_t order[] = {0, 2, 1, 3};
    for (size_t oi = 0; oi < 4; oi++) {
        size_t i = order[oi];
        cat_obj *o = cat_find(snap, any_fv[i].kind, project, name);
        if (!o)
            continue;
        /* GetAnyFeatureViewResponse{any_feature_view = 1: AnyFeatureView{...}} */
        ld_buf inner = LD_BUF_INIT, b = LD_BUF_INIT;
        pb_put_bytes_field(&inner, any_fv[i].field, o->bytes, o->len);
        pb_put_bytes_field(&b, 1, inner.data, inner.len);
        ld_buf_free(&inner);
        size_t len;
        void *data = ld_buf_steal(&b, &len);
        ld_call_reply_take(c, data, len);
        return;
    }
    fail_not_found(c, CAT_FEATURE_VIEW, name, project);
}

static int view_has_entity(const cat_obj *o, const char *entity)
{
    void *p;
    const ProtobufCFieldDescriptor *f = pbref_field(o->msg, "spec.entities", &p);
    if (!f || !p)
        return 0;
    size_t n = *(size_t *)((char *)p - f->offset + f->quantifier_offset);
    char **names = *(char ***)p;
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], entity) == 0)
            return 1;
    return 0;
}

static int view_has_feature(const cat_obj *o, const char *feature)
{
    void *p;
    const ProtobufCFieldDescriptor *f = pbref_field(o->msg, "spec.features", &p);
    if (!f || !p)
        return 0;
    size_t n = *(size_t *)((char *)p - f->offset + f->quantifier_offset);
    ProtobufCMessage **feats = *(ProtobufCMessage ***)p;
    for (size_t i = 0; i < n; i++)
        if (strcmp(pbref_string(feats[i], "name"), feature) == 0)
            return 1;
    return 0;
}

static int view_uses_source(const cat_obj *o, const char *source)
{
    static const char *const paths[] = {"spec.batch_source.name", "spec.stream_source.name",
                                        "spec.source.name"};
    for (size_t i = 0; i < 3; i++)
        if (strcmp(pbref_string(o->msg, paths[i]), source) == 0)
            return 1;
    if (o->kind == CAT_ODFV) {
        size_t n;
        ProtobufCMessage **srcs = pbref_map(o->msg, "spec.sources", &n);
        for (size_t i = 0; i < n; i++) {
            ProtobufCMessage *val = pbref_message(srcs[i], "value");
            if (val && strcmp(pbref_string(val, "request_data_source.name"), source) == 0)
                return 1;
        }
    }
    return 0;
}

static void serve_list_all(ld_call *c, const ProtobufCMessage *req, const catalog *snap)
{
    const Feast__Registry__ListAllFeatureViewsRequest *r = (const void *)req;
    cat_obj *fs = NULL;
    if (*r->feature_service) {
        fs = cat_find(snap, CAT_FEATURE_SERVICE, r->project, r->feature_service);
        if (!fs) { /* Feast returns nothing when the service is missing */
            obj_list empty = {0};
            reply_list(c, req, &empty);
            return;
        }
    }
    int64_t since_us =
            r->updated_since ? r->updated_since->seconds * 1000000 + r->updated_since->nanos / 1000
                             : 0;
    obj_list l = {0};
    /* Feast's order: feature views, stream, on demand; label views are not
     * part of ListAllFeatureViews */
    static const size_t order[] = {0, 2, 1};
    for (size_t oi = 0; oi < 3; oi++) {
        size_t k = order[oi];
        const cat_vec *v = &snap->kinds[any_fv[k].kind];
        for (size_t i = 0; i < v->n; i++) {
            cat_obj *o = v->v[i];
            if (strcmp(o->project, r->project) != 0 || !match_tags(req, o))
                continue;
            if (*r->entity && !view_has_entity(o, r->entity))
                continue;
            if (*r->feature && !view_has_feature(o, r->feature))
                continue;
            if (fs && !fs_uses_view(fs, o->name))
                continue;
            if (*r->data_source && !view_uses_source(o, r->data_source))
                continue;
            if (r->updated_since && o->updated_us < since_us)
                continue;
            obj_list_push(&l, o, any_fv[k].field);
        }
    }
    reply_list(c, req, &l);
    obj_list_free(&l);
}

static void serve_list_project_metadata(ld_call *c, const ProtobufCMessage *req,
                                        const catalog *snap)
{
    const char *project = pbref_string(req, "project");
    ld_buf b = LD_BUF_INIT;
    for (size_t i = 0; i < snap->n_pmeta; i++) {
        if (strcmp(snap->pmeta[i].project, project) != 0)
            continue;
        ld_buf m = LD_BUF_INIT;
        pb_put_string_field(&m, 1, snap->pmeta[i].project);
        pb_put_string_field(&m, 2, snap->pmeta[i].uuid);
        pb_put_bytes_field(&b, 1, m.data ? m.data : "", m.len);
        ld_buf_free(&m);
    }
    size_t len;
    void *data = ld_buf_steal(&b, &len);
    ld_call_reply_take(c, data ? data : calloc(1, 1), len);
}

static void serve_get_infra(ld_call *c, const ProtobufCMessage *req, const catalog *snap)
{
    /* The file registry keeps one Infra for the whole registry. */
    ld_call_reply_copy(c, snap->infra ? snap->infra : (const uint8_t *)"",
                       snap->infra ? snap->infra_len : 0);
}

/* Proto(): the registry object by object, project by project in project
 * order (as Feast's server rebuilds it from list calls), without infra,
 * project metadata, version history and schema version. */
static void serve_proto(ld_call *c, const ProtobufCMessage *req, const catalog *snap)
{
    catalog view = {0};
    const cat_vec *projects = &snap->kinds[CAT_PROJECT];
    for (int k = 0; k < CAT_N_KINDS; k++) {
        view.kinds[k].v = calloc(snap->kinds[k].n + 1, sizeof(cat_obj *));
        if (!view.kinds[k].v) {
            for (int j = 0; j < k; j++)
                free(view.kinds[j].v);
            ld_call_failf(c, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
            return;
        }
        if (k == CAT_PROJECT) {
            if (projects->n) /* v may be NULL in an empty registry */
                memcpy(view.kinds[k].v, projects->v, projects->n * sizeof(cat_obj *));
            view.kinds[k].n = projects->n;
            continue;
        }
        for (size_t p = 0; p < projects->n; p++)
            for (size_t i = 0; i < snap->kinds[k].n; i++)
                if (strcmp(snap->kinds[k].v[i]->project, projects->v[p]->name) == 0)
                    view.kinds[k].v[view.kinds[k].n++] = snap->kinds[k].v[i];
    }
    view.version_id = snap->version_id;
    view.last_updated_us = snap->last_updated_us;
    ld_buf b = LD_BUF_INIT;
    cat_serialize(&view, &b);
    for (int k = 0; k < CAT_N_KINDS; k++)
        free(view.kinds[k].v);
    size_t len;
    void *data = ld_buf_steal(&b, &len);
    ld_call_reply_take(c, data ? data : calloc(1, 1), len);
}

/* ------------------------------------------------------------ writes */

typedef struct apply_ctx {
    ProtobufCMessage *msg; /* the request's object (call arena) */
    cat_kind kind;
    const char *project;
    const char *name;
    ld_arena *arena;
} apply_ctx;

static void stamp_object(ProtobufCMessage *m, cat_kind kind, const char *project,
                         const cat_obj *old, int in_place, ProtobufCAllocator *alloc);

/* A project that does not exist yet is created with its metadata, as
 * Feast's registry does on the first apply into it. */
static int ensure_project(const catalog *cur, catalog **next, cat_change *ch, size_t *n,
                          const char *project, ld_status *st)
{
    if (cat_has_project(*next ? *next : cur, project))
        return 0;
    Feast__Core__Project p = FEAST__CORE__PROJECT__INIT;
    Feast__Core__ProjectSpec spec = FEAST__CORE__PROJECT_SPEC__INIT;
    Feast__Core__ProjectMeta meta = FEAST__CORE__PROJECT_META__INIT;
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    int64_t now = ld_wall_us();
    ts.seconds = now / 1000000;
    ts.nanos = (int32_t)(now % 1000000) * 1000;
    spec.name = (char *)project;
    meta.created_timestamp = &ts;
    meta.last_updated_timestamp = &ts;
    p.spec = &spec;
    p.meta = &meta;
    cat_obj *o = cat_obj_from_msg(CAT_PROJECT, &p.base, st);
    if (!o)
        return -1;
    catalog *base = *next ? *next : (catalog *)cur;
    catalog *with = cat_with_put(base, o);
    ch[(*n)++] = (cat_change){CAT_CHANGE_PUT, o, project, ""};
    int have_meta = 0;
    for (size_t i = 0; i < with->n_pmeta; i++)
        if (strcmp(with->pmeta[i].project, project) == 0)
            have_meta = 1;
    if (!have_meta) {
        char uuid[37];
        cat_uuid4(uuid);
        catalog *w2 = cat_with_project_meta(with, project, uuid);
        cat_unref(with);
        with = w2;
        cat_change pm = {CAT_CHANGE_PROJECT_META, NULL, project, ""};
        memcpy(pm.uuid, uuid, sizeof pm.uuid);
        ch[(*n)++] = pm;
    }
    if (*next)
        cat_unref(*next);
    *next = with;
    return 0;
}

static size_t count_in_project(const catalog *c, cat_kind kind, const char *project)
{
    size_t n = 0;
    for (size_t i = 0; i < c->kinds[kind].n; i++)
        n += strcmp(c->kinds[kind].v[i]->project, project) == 0;
    return n;
}

static int msg_equal(const ProtobufCMessage *a, const ProtobufCMessage *b)
{
    if (!a || !b)
        return a == b;
    size_t la = protobuf_c_message_get_packed_size(a);
    size_t lb = protobuf_c_message_get_packed_size(b);
    if (la != lb)
        return 0;
    uint8_t *ba = malloc(la + 1), *bb = malloc(lb + 1);
    int eq = 0;
    if (ba && bb) {
        protobuf_c_message_pack(a, ba);
        protobuf_c_message_pack(b, bb);
        eq = memcmp(ba, bb, la) == 0;
    }
    free(ba);
    free(bb);
    return eq;
}

/* The fields of a repeated/oneof spec field as bytes, for comparisons. */
static int field_equal(const cat_obj *a, const cat_obj *b, const char *path)
{
    void *pa, *pb;
    const ProtobufCFieldDescriptor *fa = pbref_field(a->msg, path, &pa);
    const ProtobufCFieldDescriptor *fb = pbref_field(b->msg, path, &pb);
    if (!fa || !fb)
        return fa == fb;
    if (!pa || !pb)
        return pa == pb;
    if (fa->label == PROTOBUF_C_LABEL_REPEATED) {
        size_t na = *(size_t *)((char *)pa - fa->offset + fa->quantifier_offset);
        size_t nb = *(size_t *)((char *)pb - fb->offset + fb->quantifier_offset);
        if (na != nb)
            return 0;
        for (size_t i = 0; i < na; i++) {
            if (fa->type == PROTOBUF_C_TYPE_MESSAGE) {
                if (!msg_equal((*(ProtobufCMessage ***)pa)[i], (*(ProtobufCMessage ***)pb)[i]))
                    return 0;
            } else if (fa->type == PROTOBUF_C_TYPE_STRING) {
                if (strcmp((*(char ***)pa)[i], (*(char ***)pb)[i]) != 0)
                    return 0;
            }
        }
        return 1;
    }
    if (fa->type == PROTOBUF_C_TYPE_MESSAGE)
        return msg_equal(*(ProtobufCMessage **)pa, *(ProtobufCMessage **)pb);
    if (fa->type == PROTOBUF_C_TYPE_STRING)
        return strcmp(*(char **)pa, *(char **)pb) == 0;
    return 1;
}

/* Feast's _schema_or_udf_changed: for a view whose schema is unchanged the
 * file registry updates the stored view in place (same position, same
 * created time, same materialization intervals). */
static int schema_changed(const cat_obj *old, const cat_obj *o)
{
    static const char *const paths[] = {
            "spec.features",
            "spec.entities",
            "spec.entity_columns",
            "spec.source_views",
            "spec.feature_transformation",
            "spec.mode",
            "spec.sources",
            "spec.aggregations",
            "spec.timestamp_field",
    };
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        if (!field_equal(old, o, paths[i]))
            return 1;
    return 0;
}

/* A data source equal to the stored one apart from its timestamps. */
static int data_source_equal(const cat_obj *old, const cat_obj *o)
{
    const Feast__Core__DataSource *a = (const void *)old->msg, *b = (const void *)o->msg;
    Feast__Core__DataSource ca = *a, cb = *b;
    ca.meta = cb.meta = NULL;
    return msg_equal(&ca.base, &cb.base);
}

static int edit_apply(registry *r, const catalog *cur, catalog **next, cat_change *ch, size_t *n,
                      void *arg, ld_status *st)
{
    apply_ctx *a = arg;
    cat_obj *old = cat_find(cur, a->kind, a->project, a->name);
    int is_view = a->kind == CAT_FEATURE_VIEW || a->kind == CAT_ODFV || a->kind == CAT_SFV ||
                  a->kind == CAT_LABEL_VIEW;
    int in_place = 0;
    if (old && is_view) {
        /* compare schemas on the request as parsed, before stamping */
        cat_obj probe = *old;
        probe.msg = a->msg;
        in_place = !schema_changed(old, &probe);
    }
    stamp_object(a->msg, a->kind, a->project, old, in_place, ld_arena_pbc(a->arena));
    cat_obj *o = cat_obj_from_msg(a->kind, a->msg, st);
    if (!o)
        return -1;
    int rc = -1;
    if (o->kind == CAT_DATA_SOURCE && old && data_source_equal(old, o)) {
        cat_obj_unref(o);
        return 0; /* Feast: an equal data source is not written at all */
    }
    if (!old && count_in_project(cur, o->kind, o->project) >= r->max_objects_per_project) {
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL,
                      "project %s already has %zu objects of this kind (limit "
                      "larder.registry_max_objects_per_project)",
                      o->project, r->max_objects_per_project);
        goto out;
    }
    if (is_view) {
        /* A name is unique across feature-view kinds within a project. */
        for (size_t i = 0; i < 4; i++) {
            if (any_fv[i].kind != o->kind && cat_find(cur, any_fv[i].kind, o->project, o->name)) {
                ld_status_set(st, GRPC_STATUS_INTERNAL, "ConflictingFeatureViewNames",
                              "The feature view name: %s refers to feature views of "
                              "different types.",
                              o->name);
                goto out;
            }
        }
    }
    if (o->kind != CAT_PROJECT && ensure_project(cur, next, ch, n, o->project, st) != 0)
        goto out;
    catalog *base = *next ? *next : (catalog *)cur;
    catalog *w = in_place ? cat_with_replace(base, old, o) : cat_with_put(base, o);
    if (*next)
        cat_unref(*next);
    *next = w;
    ch[(*n)++] = (cat_change){CAT_CHANGE_PUT, cat_obj_ref(o), o->project, ""};
    rc = 0;
out:
    cat_obj_unref(o);
    return rc;
}

static void set_timestamp(ProtobufCMessage *meta, const char *field, int64_t us,
                          ProtobufCAllocator *alloc)
{
    Google__Protobuf__Timestamp *t =
            (Google__Protobuf__Timestamp *)pbref_ensure_message(meta, field, alloc);
    if (t) {
        t->seconds = us / 1000000;
        t->nanos = (int32_t)(us % 1000000) * 1000;
    }
}

/* Set the object's project (the request's wins, as in Feast) and its
 * timestamps as Feast's file registry does: created is the stored object's
 * if there is one, else the client's, else now; last updated is now (a
 * project keeps the client's if it sent one). A view updated in place keeps
 * its materialization intervals and, unless the client sets one, its state;
 * a replaced view inherits the intervals when the client sends none. */
static void stamp_object(ProtobufCMessage *m, cat_kind kind, const char *project,
                         const cat_obj *old, int in_place, ProtobufCAllocator *alloc)
{
    const cat_kind_info *ki = &cat_kinds[kind];
    if (ki->project_path) {
        void *p;
        const ProtobufCFieldDescriptor *f = pbref_field(m, ki->project_path, &p);
        if (f && p)
            *(char **)p = (char *)project;
    }
    if (!ki->meta)
        return;
    ProtobufCMessage *meta = pbref_ensure_message(m, ki->meta, alloc);
    if (!meta)
        return;
    int64_t now = ld_wall_us();
    if (old && old->created_us)
        set_timestamp(meta, "created_timestamp", old->created_us, alloc);
    else if (!pbref_timestamp_us(meta, "created_timestamp"))
        set_timestamp(meta, "created_timestamp", now, alloc);
    if (kind != CAT_PROJECT || !pbref_timestamp_us(meta, "last_updated_timestamp"))
        set_timestamp(meta, "last_updated_timestamp", now, alloc);
    if (!old ||
        (kind != CAT_FEATURE_VIEW && kind != CAT_SFV && kind != CAT_ODFV && kind != CAT_LABEL_VIEW))
        return;
    ProtobufCMessage *old_meta = pbref_message(old->msg, "meta");
    if (!old_meta)
        return;
    void *pn, *po;
    const ProtobufCFieldDescriptor *fn = pbref_field(meta, "materialization_intervals", &pn);
    const ProtobufCFieldDescriptor *fo = pbref_field(old_meta, "materialization_intervals", &po);
    if (fn && fo && pn && po) {
        size_t *nn = (size_t *)((char *)pn - fn->offset + fn->quantifier_offset);
        size_t no = *(size_t *)((char *)po - fo->offset + fo->quantifier_offset);
        if (in_place || *nn == 0) { /* borrow the stored intervals for packing */
            *nn = no;
            *(void **)pn = *(void **)po;
        }
    }
    if (in_place) {
        void *sn, *so;
        const ProtobufCFieldDescriptor *f1 = pbref_field(meta, "state", &sn);
        const ProtobufCFieldDescriptor *f2 = pbref_field(old_meta, "state", &so);
        if (f1 && f2 && sn && so && *(int *)sn == 0)
            *(int *)sn = *(int *)so;
    }
}

static void do_apply(ld_call *c, ProtobufCMessage *obj, cat_kind kind, const char *project)
{
    if (!obj) {
        ld_call_failf(c, GRPC_STATUS_INVALID_ARGUMENT, NULL, "the request carries no %s",
                      cat_kinds[kind].label);
        return;
    }
    if (kind != CAT_PROJECT && !*project) {
        ld_call_failf(c, GRPC_STATUS_INVALID_ARGUMENT, NULL, "project must not be empty");
        return;
    }
    const char *name = pbref_string(obj, cat_kinds[kind].name_path);
    if (!*name) {
        ld_call_failf(c, GRPC_STATUS_INVALID_ARGUMENT, NULL, "%s name must not be empty",
                      cat_kinds[kind].label);
        return;
    }
    if (kind != CAT_PROJECT && (strchr(name, ':') || strchr(name, '@')) &&
        (kind == CAT_FEATURE_VIEW || kind == CAT_SFV || kind == CAT_ODFV ||
         kind == CAT_LABEL_VIEW)) {
        ld_call_failf(c, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                      "Feature view name '%s' must not contain '@' or ':'", name);
        return;
    }
    apply_ctx a = {obj, kind, kind == CAT_PROJECT ? name : project, name, ld_call_arena(c)};
    ld_status st = LD_STATUS_INIT;
    if (registry_write(REG(c), edit_apply, &a, &st) != 0)
        ld_call_fail(c, &st);
    else
        reply_empty(c);
}

static void h_apply(ld_call *c, const ProtobufCMessage *req)
{
    const rpc_def *d = def_of(c);
    do_apply(c, pbref_message(req, d->obj_field), d->kind, pbref_string(req, "project"));
}

static void h_apply_feature_view(ld_call *c, const ProtobufCMessage *req)
{
    const Feast__Registry__ApplyFeatureViewRequest *r = (const void *)req;
    switch (r->base_feature_view_case) {
    case FEAST__REGISTRY__APPLY_FEATURE_VIEW_REQUEST__BASE_FEATURE_VIEW_FEATURE_VIEW:
        do_apply(c, &r->feature_view->base, CAT_FEATURE_VIEW, r->project);
        return;
    case FEAST__REGISTRY__APPLY_FEATURE_VIEW_REQUEST__BASE_FEATURE_VIEW_ON_DEMAND_FEATURE_VIEW:
        do_apply(c, &r->on_demand_feature_view->base, CAT_ODFV, r->project);
        return;
    case FEAST__REGISTRY__APPLY_FEATURE_VIEW_REQUEST__BASE_FEATURE_VIEW_STREAM_FEATURE_VIEW:
        do_apply(c, &r->stream_feature_view->base, CAT_SFV, r->project);
        return;
    case FEAST__REGISTRY__APPLY_FEATURE_VIEW_REQUEST__BASE_FEATURE_VIEW_LABEL_VIEW:
        do_apply(c, &r->label_view->base, CAT_LABEL_VIEW, r->project);
        return;
    default:
        ld_call_failf(c, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                      "ApplyFeatureView needs one of feature_view, on_demand_feature_view, "
                      "stream_feature_view or label_view");
    }
}

static void h_apply_project(ld_call *c, const ProtobufCMessage *req)
{
    const Feast__Registry__ApplyProjectRequest *r = (const void *)req;
    const char *name = r->project && r->project->spec ? r->project->spec->name : "";
    do_apply(c, r->project ? &r->project->base : NULL, CAT_PROJECT, name);
}

typedef struct delete_ctx {
    cat_kind kind;
    const char *project, *name;
    int found;
} delete_ctx;

static int edit_delete(registry *r, const catalog *cur, catalog **next, cat_change *ch, size_t *n,
                       void *arg, ld_status *st)
{
    delete_ctx *d = arg;
    if (d->kind == CAT_PROJECT) {
        if (!cat_has_project(cur, d->name))
            return 0;
        d->found = 1;
        *next = cat_with_project_deleted(cur, d->name);
        ch[(*n)++] = (cat_change){CAT_CHANGE_DELETE_PROJECT, NULL, d->name, ""};
        return 0;
    }
    cat_obj *o = cat_find(cur, d->kind, d->project, d->name);
    /* DeleteFeatureView removes a view of any kind, as Feast does */
    for (size_t i = 1; !o && d->kind == CAT_FEATURE_VIEW && i < 4; i++)
        o = cat_find(cur, any_fv[i].kind, d->project, d->name);
    if (!o)
        return 0;
    d->found = 1;
    *next = cat_with_delete(cur, o);
    ch[(*n)++] = (cat_change){CAT_CHANGE_DELETE, cat_obj_ref(o), d->project, ""};
    return 0;
}

static void h_delete(ld_call *c, const ProtobufCMessage *req)
{
    const rpc_def *def = def_of(c);
    delete_ctx d = {def->kind, pbref_string(req, "project"), pbref_string(req, "name"), 0};
    if (def->kind == CAT_PROJECT)
        d.project = d.name;
    ld_status st = LD_STATUS_INIT;
    if (registry_write(REG(c), edit_delete, &d, &st) != 0) {
        ld_call_fail(c, &st);
        return;
    }
    if (!d.found) {
        fail_not_found(c, def->kind, d.name, d.project);
        return;
    }
    reply_empty(c);
}

typedef struct mat_ctx {
    const char *project, *name;
    int64_t start_us, end_us;
    int found;
    int wrong_kind;
} mat_ctx;

static int edit_materialization(registry *r, const catalog *cur, catalog **next, cat_change *ch,
                                size_t *n, void *arg, ld_status *st)
{
    mat_ctx *m = arg;
    cat_obj *o = cat_find(cur, CAT_FEATURE_VIEW, m->project, m->name);
    if (!o)
        o = cat_find(cur, CAT_SFV, m->project, m->name);
    if (!o)
        return 0;
    m->found = 1;
    /* copy the view, append the interval, mark it available online */
    Feast__Core__FeatureView *fv = (Feast__Core__FeatureView *)protobuf_c_message_unpack(
            cat_kinds[o->kind].desc, NULL, o->len, o->bytes);
    if (!fv)
        return ld_status_set(st, GRPC_STATUS_INTERNAL, NULL, "stored view does not parse");
    ProtobufCAllocator *sys = NULL;
    (void)sys;
    Feast__Core__FeatureViewMeta *meta =
            (Feast__Core__FeatureViewMeta *)pbref_message(&fv->base, "meta");
    Feast__Core__FeatureViewMeta local_meta = FEAST__CORE__FEATURE_VIEW_META__INIT;
    if (!meta) {
        meta = &local_meta;
        fv->meta = meta;
    }
    Google__Protobuf__Timestamp ts_start = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    Google__Protobuf__Timestamp ts_end = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    Google__Protobuf__Timestamp ts_now = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    ts_start.seconds = m->start_us / 1000000;
    ts_start.nanos = (int32_t)(m->start_us % 1000000) * 1000;
    ts_end.seconds = m->end_us / 1000000;
    ts_end.nanos = (int32_t)(m->end_us % 1000000) * 1000;
    int64_t now = ld_wall_us();
    ts_now.seconds = now / 1000000;
    ts_now.nanos = (int32_t)(now % 1000000) * 1000;
    Feast__Core__MaterializationInterval iv = FEAST__CORE__MATERIALIZATION_INTERVAL__INIT;
    iv.start_time = &ts_start;
    iv.end_time = &ts_end;
    size_t k = meta->n_materialization_intervals;
    Feast__Core__MaterializationInterval **ivs = malloc((k + 1) * sizeof *ivs);
    if (!ivs) {
        protobuf_c_message_free_unpacked(&fv->base, NULL);
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
    }
    if (k)
        memcpy(ivs, meta->materialization_intervals, k * sizeof *ivs);
    ivs[k] = &iv;
    Feast__Core__MaterializationInterval **saved_ivs = meta->materialization_intervals;
    Google__Protobuf__Timestamp *saved_upd = meta->last_updated_timestamp;
    Feast__Core__FeatureViewState saved_state = meta->state;
    meta->materialization_intervals = ivs;
    meta->n_materialization_intervals = k + 1;
    meta->last_updated_timestamp = &ts_now;
    meta->state = FEAST__CORE__FEATURE_VIEW_STATE__AVAILABLE_ONLINE;
    cat_obj *updated = cat_obj_from_msg(o->kind, &fv->base, st);
    /* restore what we borrowed before freeing the unpacked message */
    meta->materialization_intervals = saved_ivs;
    meta->n_materialization_intervals = k;
    meta->last_updated_timestamp = saved_upd;
    meta->state = saved_state;
    if (meta == &local_meta)
        fv->meta = NULL;
    free(ivs);
    protobuf_c_message_free_unpacked(&fv->base, NULL);
    if (!updated)
        return -1;
    *next = cat_with_put(cur, updated);
    ch[(*n)++] = (cat_change){CAT_CHANGE_PUT, updated, m->project, ""};
    return 0;
}

static int64_t ts_us(const Google__Protobuf__Timestamp *t)
{
    return t ? t->seconds * 1000000 + t->nanos / 1000 : 0;
}

static void h_apply_materialization(ld_call *c, const ProtobufCMessage *req)
{
    const Feast__Registry__ApplyMaterializationRequest *r = (const void *)req;
    const char *name = r->feature_view && r->feature_view->spec ? r->feature_view->spec->name : "";
    mat_ctx m = {r->project, name, ts_us(r->start_date), ts_us(r->end_date), 0, 0};
    ld_status st = LD_STATUS_INIT;
    if (!*name) {
        ld_call_failf(c, GRPC_STATUS_INVALID_ARGUMENT, NULL, "feature_view.spec.name is empty");
        return;
    }
    if (registry_write(REG(c), edit_materialization, &m, &st) != 0) {
        ld_call_fail(c, &st);
        return;
    }
    if (!m.found) {
        fail_not_found(c, CAT_FEATURE_VIEW, name, r->project);
        return;
    }
    reply_empty(c);
}

typedef struct infra_ctx {
    const uint8_t *bytes;
    size_t len;
    const char *project;
} infra_ctx;

static int edit_infra(registry *r, const catalog *cur, catalog **next, cat_change *ch, size_t *n,
                      void *arg, ld_status *st)
{
    infra_ctx *x = arg;
    if (ensure_project(cur, next, ch, n, x->project, st) != 0)
        return -1;
    catalog *base = *next ? *next : (catalog *)cur;
    catalog *w = cat_with_infra(base, x->bytes, x->len);
    if (*next)
        cat_unref(*next);
    *next = w;
    ch[(*n)++] = (cat_change){CAT_CHANGE_INFRA, NULL, x->project, ""};
    return 0;
}

static void h_update_infra(ld_call *c, const ProtobufCMessage *req)
{
    const Feast__Registry__UpdateInfraRequest *r = (const void *)req;
    if (!*r->project) {
        ld_call_failf(c, GRPC_STATUS_INVALID_ARGUMENT, NULL, "project must not be empty");
        return;
    }
    size_t len = r->infra ? protobuf_c_message_get_packed_size(&r->infra->base) : 0;
    uint8_t *bytes = ld_arena_alloc(ld_call_arena(c), len + 1);
    if (!bytes) {
        ld_call_failf(c, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "infra too large");
        return;
    }
    if (r->infra)
        protobuf_c_message_pack(&r->infra->base, bytes);
    infra_ctx x = {bytes, len, r->project};
    ld_status st = LD_STATUS_INIT;
    if (registry_write(REG(c), edit_infra, &x, &st) != 0)
        ld_call_fail(c, &st);
    else
        reply_empty(c);
}

static void h_commit(ld_call *c, const ProtobufCMessage *req)
{
    /* every write is committed (durable) before it is acknowledged */
    reply_empty(c);
}

static void h_refresh(ld_call *c, const ProtobufCMessage *req)
{
    ld_status st = LD_STATUS_INIT;
    if (registry_refresh(REG(c), 0, &st) != 0)
        ld_call_fail(c, &st);
    else
        reply_empty(c);
}

static void h_unimplemented(ld_call *c, const ProtobufCMessage *req)
{
    ld_call_failf(c, GRPC_STATUS_UNIMPLEMENTED, NULL,
                  "%s is not implemented by larder-registry: saved-dataset jobs run in "
                  "Feast's Python registry server",
                  ld_call_method(c)->name);
}

/* ------------------------------------------------------------ method table */

#define D(name_, kind_, field_, serve_) static const rpc_def name_ = {kind_, field_, serve_}

D(d_entity, CAT_ENTITY, "entity", NULL);
D(d_ds, CAT_DATA_SOURCE, "data_source", NULL);
D(d_fs, CAT_FEATURE_SERVICE, "feature_service", NULL);
D(d_sd, CAT_SAVED_DATASET, "saved_dataset", NULL);
D(d_vr, CAT_VALIDATION_REF, "validation_reference", NULL);
D(d_perm, CAT_PERMISSION, "permission", NULL);
D(d_fv, CAT_FEATURE_VIEW, NULL, NULL);
D(d_project, CAT_PROJECT, NULL, NULL);

D(g_entity, CAT_ENTITY, NULL, serve_get);
D(g_ds, CAT_DATA_SOURCE, NULL, serve_get);
D(g_fv, CAT_FEATURE_VIEW, NULL, serve_get);
D(g_sfv, CAT_SFV, NULL, serve_get);
D(g_odfv, CAT_ODFV, NULL, serve_get);
D(g_lv, CAT_LABEL_VIEW, NULL, serve_get);
D(g_fs, CAT_FEATURE_SERVICE, NULL, serve_get);
D(g_sd, CAT_SAVED_DATASET, NULL, serve_get);
D(g_vr, CAT_VALIDATION_REF, NULL, serve_get);
D(g_perm, CAT_PERMISSION, NULL, serve_get);
D(g_project, CAT_PROJECT, NULL, serve_get);

D(l_entity, CAT_ENTITY, NULL, serve_list);
D(l_ds, CAT_DATA_SOURCE, NULL, serve_list);
D(l_fv, CAT_FEATURE_VIEW, NULL, serve_list);
D(l_sfv, CAT_SFV, NULL, serve_list);
D(l_odfv, CAT_ODFV, NULL, serve_list);
D(l_lv, CAT_LABEL_VIEW, NULL, serve_list);
D(l_fs, CAT_FEATURE_SERVICE, NULL, serve_list);
D(l_sd, CAT_SAVED_DATASET, NULL, serve_list);
D(l_vr, CAT_VALIDATION_REF, NULL, serve_list);
D(l_perm, CAT_PERMISSION, NULL, serve_list);
D(l_project, CAT_PROJECT, NULL, serve_list);

D(r_any, CAT_FEATURE_VIEW, NULL, serve_get_any);
D(r_all, CAT_FEATURE_VIEW, NULL, serve_list_all);
D(r_pmeta, CAT_PROJECT, NULL, serve_list_project_metadata);
D(r_infra, CAT_PROJECT, NULL, serve_get_infra);
D(r_proto, CAT_PROJECT, NULL, serve_proto);
D(r_lineage, CAT_PROJECT, NULL, lineage_serve_registry);
D(r_relations, CAT_PROJECT, NULL, lineage_serve_object);
D(r_features, CAT_FEATURE_VIEW, NULL, lineage_serve_list_features);
D(r_feature, CAT_FEATURE_VIEW, NULL, lineage_serve_get_feature);

#define PFX    "/feast.registry.RegistryServer/"
#define MSG(n) &feast__registry__##n##__descriptor

#define WRITE(method, req, fn, def)                                                                \
    {                                                                                              \
        .name = PFX method, .kind = LD_RPC_UNARY, .request = MSG(req), .handler = fn,              \
        .flags = LD_METHOD_BLOCKING, .data = def                                                   \
    }
#define READ(method, req, def)                                                                     \
    {                                                                                              \
        .name = PFX method, .kind = LD_RPC_UNARY, .request = MSG(req), .handler = h_read,          \
        .prepost = 16, .data = def                                                                 \
    }

static const ld_method methods[] = {
        WRITE("ApplyEntity", apply_entity_request, h_apply, &d_entity),
        READ("GetEntity", get_entity_request, &g_entity),
        READ("ListEntities", list_entities_request, &l_entity),
        WRITE("DeleteEntity", delete_entity_request, h_delete, &d_entity),
        WRITE("ApplyDataSource", apply_data_source_request, h_apply, &d_ds),
        READ("GetDataSource", get_data_source_request, &g_ds),
        READ("ListDataSources", list_data_sources_request, &l_ds),
        WRITE("DeleteDataSource", delete_data_source_request, h_delete, &d_ds),
        WRITE("ApplyFeatureView", apply_feature_view_request, h_apply_feature_view, &d_fv),
        WRITE("DeleteFeatureView", delete_feature_view_request, h_delete, &d_fv),
        READ("GetAnyFeatureView", get_any_feature_view_request, &r_any),
        READ("ListAllFeatureViews", list_all_feature_views_request, &r_all),
        READ("GetFeatureView", get_feature_view_request, &g_fv),
        READ("ListFeatureViews", list_feature_views_request, &l_fv),
        READ("GetStreamFeatureView", get_stream_feature_view_request, &g_sfv),
        READ("ListStreamFeatureViews", list_stream_feature_views_request, &l_sfv),
        READ("GetOnDemandFeatureView", get_on_demand_feature_view_request, &g_odfv),
        READ("ListOnDemandFeatureViews", list_on_demand_feature_views_request, &l_odfv),
        READ("GetLabelView", get_label_view_request, &g_lv),
        READ("ListLabelViews", list_label_views_request, &l_lv),
        WRITE("ApplyFeatureService", apply_feature_service_request, h_apply, &d_fs),
        READ("GetFeatureService", get_feature_service_request, &g_fs),
        READ("ListFeatureServices", list_feature_services_request, &l_fs),
        WRITE("DeleteFeatureService", delete_feature_service_request, h_delete, &d_fs),
        WRITE("ApplySavedDataset", apply_saved_dataset_request, h_apply, &d_sd),
        READ("GetSavedDataset", get_saved_dataset_request, &g_sd),
        READ("ListSavedDatasets", list_saved_datasets_request, &l_sd),
        WRITE("DeleteSavedDataset", delete_saved_dataset_request, h_delete, &d_sd),
        WRITE("CreateDatasetFromRetrieval", create_dataset_from_retrieval_request, h_unimplemented,
              NULL),
        WRITE("GetDatasetData", get_dataset_data_request, h_unimplemented, NULL),
        WRITE("GetDatasetJobStatus", get_dataset_job_status_request, h_unimplemented, NULL),
        WRITE("ListDatasetJobs", list_dataset_jobs_request, h_unimplemented, NULL),
        WRITE("ApplyValidationReference", apply_validation_reference_request, h_apply, &d_vr),
        READ("GetValidationReference", get_validation_reference_request, &g_vr),
        READ("ListValidationReferences", list_validation_references_request, &l_vr),
        WRITE("DeleteValidationReference", delete_validation_reference_request, h_delete, &d_vr),
        WRITE("ApplyPermission", apply_permission_request, h_apply, &d_perm),
        READ("GetPermission", get_permission_request, &g_perm),
        READ("ListPermissions", list_permissions_request, &l_perm),
        WRITE("DeletePermission", delete_permission_request, h_delete, &d_perm),
        WRITE("ApplyProject", apply_project_request, h_apply_project, &d_project),
        READ("GetProject", get_project_request, &g_project),
        READ("ListProjects", list_projects_request, &l_project),
        WRITE("DeleteProject", delete_project_request, h_delete, &d_project),
        WRITE("ApplyMaterialization", apply_materialization_request, h_apply_materialization, NULL),
        READ("ListProjectMetadata", list_project_metadata_request, &r_pmeta),
        WRITE("UpdateInfra", update_infra_request, h_update_infra, NULL),
        READ("GetInfra", get_infra_request, &r_infra),
        {.name = PFX "Commit",
         .kind = LD_RPC_UNARY,
         .request = &google__protobuf__empty__descriptor,
         .handler = h_commit},
        WRITE("Refresh", refresh_request, h_refresh, NULL),
        {.name = PFX "Proto",
         .kind = LD_RPC_UNARY,
         .request = &google__protobuf__empty__descriptor,
         .handler = h_read,
         .data = &r_proto},
        READ("GetRegistryLineage", get_registry_lineage_request, &r_lineage),
        READ("GetObjectRelationships", get_object_relationships_request, &r_relations),
        READ("ListFeatures", list_features_request, &r_features),
        READ("GetFeature", get_feature_request, &r_feature),
};

int registry_service_register(ld_server *srv, registry *r, ld_status *st)
{
    size_t n = sizeof methods / sizeof methods[0];
    ld_method *m = malloc(n * sizeof *m);
    if (!m)
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        m[i] = methods[i];
        m[i].max_request_bytes = r->max_request_bytes;
    }
    int rc = ld_server_add_methods(srv, m, n, r, st);
    free(m);
    return rc;
}
