#include "lineage.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "feast/core/FeatureService.pb-c.h"
#include "feast/core/FeatureView.pb-c.h"
#include "feast/core/LabelView.pb-c.h"
#include "feast/core/OnDemandFeatureView.pb-c.h"
#include "feast/core/StreamFeatureView.pb-c.h"
#include "feast/registry/RegistryServer.pb-c.h"
#include "pbref.h"
#include "registry.h"
#include "rpc_util.h"

/* ------------------------------------------------------------ relations */

typedef struct rel {
    const char *stype, *sname, *ttype, *tname;
} rel;

typedef struct rel_list {
    rel *v;
    size_t n, cap;
} rel_list;

static void rel_push(rel_list *l, const char *st, const char *sn, const char *tt, const char *tn)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        rel *v = realloc(l->v, l->cap * sizeof *v);
        if (!v)
            abort();
        l->v = v;
    }
    l->v[l->n++] = (rel){st, sn, tt, tn};
}

static int in_project(const cat_obj *o, const char *project)
{
    return strcmp(o->project, project) == 0;
}

static int is_label_view_name(const catalog *s, const char *project, const char *name)
{
    return cat_find(s, CAT_LABEL_VIEW, project, name) != NULL;
}

/* Direct relations in Feast's order (registry_lineage.py). */
static void direct_relations(const catalog *s, const char *project, rel_list *out)
{
    const cat_vec *fss = &s->kinds[CAT_FEATURE_SERVICE];
    for (size_t i = 0; i < fss->n; i++) {
        if (!in_project(fss->v[i], project))
            continue;
        const Feast__Core__FeatureService *fs = (const void *)fss->v[i]->msg;
        if (!fs->spec)
            continue;
        for (size_t j = 0; j < fs->spec->n_features; j++) {
            const Feast__Core__FeatureViewProjection *p = fs->spec->features[j];
            int lv = strcmp(p->view_type, "labelView") == 0 ||
                     is_label_view_name(s, project, p->feature_view_name);
            rel_push(out, lv ? "labelView" : "featureView", p->feature_view_name, "featureService",
                     fs->spec->name);
        }
    }
    const cat_vec *fvs = &s->kinds[CAT_FEATURE_VIEW];
    for (size_t i = 0; i < fvs->n; i++) {
        if (!in_project(fvs->v[i], project))
            continue;
        const Feast__Core__FeatureView *fv = (const void *)fvs->v[i]->msg;
        if (!fv->spec)
            continue;
        const char *name = fv->spec->name;
        for (size_t j = 0; j < fv->spec->n_entities; j++)
            rel_push(out, "entity", fv->spec->entities[j], "featureView", name);
        for (size_t j = 0; j < fv->spec->n_features; j++)
            rel_push(out, "feature", fv->spec->features[j]->name, "featureView", name);
        /* Feast names an unnamed source by a per-process hash; an unset one
         * hashes "" to 0. We use the stable 0 for both. */
        const char *src = fv->spec->batch_source && *fv->spec->batch_source->name
                                  ? fv->spec->batch_source->name
                                  : "unnamed_source_0";
        rel_push(out, "dataSource", src, "featureView", name);
    }
    const cat_vec *odfvs = &s->kinds[CAT_ODFV];
    for (size_t i = 0; i < odfvs->n; i++) {
        if (!in_project(odfvs->v[i], project))
            continue;
        const Feast__Core__OnDemandFeatureView *o = (const void *)odfvs->v[i]->msg;
        if (!o->spec)
            continue;
        for (size_t j = 0; j < o->spec->n_entities; j++)
            rel_push(out, "entity", o->spec->entities[j], "featureView", o->spec->name);
        for (size_t j = 0; j < o->spec->n_features; j++)
            rel_push(out, "feature", o->spec->features[j]->name, "featureView", o->spec->name);
    }
    for (size_t i = 0; i < odfvs->n; i++) {
        if (!in_project(odfvs->v[i], project))
            continue;
        const Feast__Core__OnDemandFeatureView *o = (const void *)odfvs->v[i]->msg;
        if (!o->spec)
            continue;
        for (size_t j = 0; j < o->spec->n_sources; j++) {
            const Feast__Core__OnDemandSource *src = o->spec->sources[j]->value;
            if (!src)
                continue;
            if (src->source_case == FEAST__CORE__ON_DEMAND_SOURCE__SOURCE_REQUEST_DATA_SOURCE &&
                *src->request_data_source->name)
                rel_push(out, "dataSource", src->request_data_source->name, "featureView",
                         o->spec->name);
            else if (src->source_case ==
                             FEAST__CORE__ON_DEMAND_SOURCE__SOURCE_FEATURE_VIEW_PROJECTION &&
                     *src->feature_view_projection->feature_view_name)
                rel_push(out, "featureView", src->feature_view_projection->feature_view_name,
                         "featureView", o->spec->name);
        }
    }
    const cat_vec *sfvs = &s->kinds[CAT_SFV];
    for (size_t i = 0; i < sfvs->n; i++) {
        if (!in_project(sfvs->v[i], project))
            continue;
        const Feast__Core__StreamFeatureView *v = (const void *)sfvs->v[i]->msg;
        if (!v->spec)
            continue;
        if (v->spec->stream_source && *v->spec->stream_source->name)
            rel_push(out, "dataSource", v->spec->stream_source->name, "featureView", v->spec->name);
        if (v->spec->batch_source && *v->spec->batch_source->name)
            rel_push(out, "dataSource", v->spec->batch_source->name, "featureView", v->spec->name);
    }
    const cat_vec *lvs = &s->kinds[CAT_LABEL_VIEW];
    for (size_t i = 0; i < lvs->n; i++) {
        if (!in_project(lvs->v[i], project))
            continue;
        const Feast__Core__LabelView *v = (const void *)lvs->v[i]->msg;
        if (!v->spec)
            continue;
        for (size_t j = 0; j < v->spec->n_entities; j++)
            rel_push(out, "entity", v->spec->entities[j], "labelView", v->spec->name);
        if (v->spec->source && *v->spec->source->name)
            rel_push(out, "dataSource", v->spec->source->name, "labelView", v->spec->name);
        if (v->spec->source && v->spec->source->batch_source &&
            *v->spec->source->batch_source->name)
            rel_push(out, "dataSource", v->spec->source->batch_source->name, "labelView",
                     v->spec->name);
    }
}

static int is_view_type(const char *t)
{
    return strcmp(t, "featureView") == 0 || strcmp(t, "labelView") == 0;
}

static void indirect_relations(const catalog *s, const char *project, const rel_list *direct,
                               rel_list *out)
{
    const cat_vec *fss = &s->kinds[CAT_FEATURE_SERVICE];
    for (size_t i = 0; i < fss->n; i++) {
        if (!in_project(fss->v[i], project))
            continue;
        const Feast__Core__FeatureService *fs = (const void *)fss->v[i]->msg;
        if (!fs->spec)
            continue;
        for (size_t j = 0; j < fs->spec->n_features; j++) {
            const char *view = fs->spec->features[j]->feature_view_name;
            for (size_t k = 0; k < direct->n; k++) {
                const rel *r = &direct->v[k];
                if (strcmp(r->tname, view) == 0 && is_view_type(r->ttype))
                    rel_push(out, r->stype, r->sname, "featureService", fs->spec->name);
            }
        }
    }
    /* entity -> data source, through the views that join them */
    for (size_t k = 0; k < direct->n; k++) {
        const rel *e = &direct->v[k];
        if (strcmp(e->stype, "entity") != 0 || !is_view_type(e->ttype))
            continue;
        for (size_t m = 0; m < direct->n; m++) {
            const rel *d = &direct->v[m];
            if (strcmp(d->stype, "dataSource") == 0 && is_view_type(d->ttype) &&
                strcmp(d->tname, e->tname) == 0)
                rel_push(out, e->stype, e->sname, "dataSource", d->sname);
        }
    }
}

static int rel_matches(const rel *r, const char *type, const char *name)
{
    return (strcmp(r->stype, type) == 0 && strcmp(r->sname, name) == 0) ||
           (strcmp(r->ttype, type) == 0 && strcmp(r->tname, name) == 0);
}

static void rel_filter(rel_list *l, const char *type, const char *name)
{
    size_t j = 0;
    for (size_t i = 0; i < l->n; i++)
        if (rel_matches(&l->v[i], type, name))
            l->v[j++] = l->v[i];
    l->n = j;
}

/* Sorting relations: Feast sorts EntityRelation dataclasses; the usable
 * paths are source.name, target.name and source.type.value/target.type.value. */
static const char *rel_key(const rel *r, const char *path)
{
    if (!strcmp(path, "source.name"))
        return r->sname;
    if (!strcmp(path, "target.name"))
        return r->tname;
    if (!strcmp(path, "source.type.value"))
        return r->stype;
    if (!strcmp(path, "target.type.value"))
        return r->ttype;
    return NULL;
}

typedef struct rel_sort {
    rel r;
    size_t idx;
    const char *path;
    int desc;
} rel_sort;

static int cmp_rel(const void *pa, const void *pb)
{
    const rel_sort *a = pa, *b = pb;
    int c = strcasecmp(rel_key(&a->r, a->path), rel_key(&b->r, b->path));
    if (a->desc)
        c = -c;
    if (c)
        return c;
    return (a->idx > b->idx) - (a->idx < b->idx);
}

static int rel_page(const ProtobufCMessage *req, rel_list *l, size_t *first, size_t *count,
                    page_meta *pm)
{
    memset(pm, 0, sizeof *pm);
    const Feast__Registry__SortingParams *s = (const void *)pbref_message(req, "sorting");
    if (s && *s->sort_by && l->n > 1 && rel_key(&l->v[0], s->sort_by)) {
        rel_sort *v = calloc(l->n, sizeof *v);
        if (v) {
            int desc = strcasecmp(s->sort_order, "desc") == 0;
            for (size_t i = 0; i < l->n; i++)
                v[i] = (rel_sort){l->v[i], i, s->sort_by, desc};
            qsort(v, l->n, sizeof *v, cmp_rel);
            for (size_t i = 0; i < l->n; i++)
                l->v[i] = v[i].r;
            free(v);
        }
    }
    const Feast__Registry__PaginationParams *p = (const void *)pbref_message(req, "pagination");
    size_t total = l->n;
    *first = 0;
    *count = total;
    if (!total)
        return 0;
    pm->total_count = (int32_t)total;
    if (p && p->page > 0 && p->limit > 0) {
        size_t start = (size_t)(p->page - 1) * (size_t)p->limit;
        *first = start < total ? start : total;
        size_t end = start + (size_t)p->limit;
        *count = (end < total ? end : total) - *first;
        pm->page = p->page;
        pm->limit = p->limit;
        pm->total_pages = (int32_t)((total + (size_t)p->limit - 1) / (size_t)p->limit);
        pm->has_next = p->page < pm->total_pages;
        pm->has_previous = p->page > 1;
    } else {
        pm->total_pages = 1;
    }
    return 0;
}

static void put_relations(ld_buf *b, int field, const rel_list *l, size_t first, size_t count)
{
    for (size_t i = first; i < first + count; i++) {
        const rel *r = &l->v[i];
        ld_buf src = LD_BUF_INIT, dst = LD_BUF_INIT, er = LD_BUF_INIT;
        pb_put_string_field(&src, 1, r->stype);
        pb_put_string_field(&src, 2, r->sname);
        pb_put_string_field(&dst, 1, r->ttype);
        pb_put_string_field(&dst, 2, r->tname);
        pb_put_bytes_field(&er, 1, src.data ? src.data : "", src.len);
        pb_put_bytes_field(&er, 2, dst.data ? dst.data : "", dst.len);
        pb_put_bytes_field(b, field, er.data, er.len);
        ld_buf_free(&src);
        ld_buf_free(&dst);
        ld_buf_free(&er);
    }
}

static void reply_buf(ld_call *c, ld_buf *b)
{
    size_t len;
    void *data = ld_buf_steal(b, &len);
    ld_call_reply_take(c, data ? data : calloc(1, 1), len);
}

void lineage_serve_registry(ld_call *c, const ProtobufCMessage *req, const catalog *snap)
{
    ld_status lst = LD_STATUS_INIT;
    if (check_page_limit(req, ((registry *)ld_call_ctx(c))->max_page_size, &lst) != 0) {
        ld_call_fail(c, &lst);
        return;
    }
    const Feast__Registry__GetRegistryLineageRequest *r = (const void *)req;
    rel_list direct = {0}, indirect = {0};
    direct_relations(snap, r->project, &direct);
    indirect_relations(snap, r->project, &direct, &indirect);
    if (*r->filter_object_type && *r->filter_object_name) {
        rel_filter(&direct, r->filter_object_type, r->filter_object_name);
        rel_filter(&indirect, r->filter_object_type, r->filter_object_name);
    }
    size_t f1, n1, f2, n2;
    page_meta pm1, pm2;
    rel_page(req, &direct, &f1, &n1, &pm1);
    rel_page(req, &indirect, &f2, &n2, &pm2);
    ld_buf b = LD_BUF_INIT;
    put_relations(&b, 1, &direct, f1, n1);
    put_relations(&b, 2, &indirect, f2, n2);
    pb_put_page_meta(&b, 3, &pm1);
    pb_put_page_meta(&b, 4, &pm2);
    free(direct.v);
    free(indirect.v);
    reply_buf(c, &b);
}

static const char *const object_types[] = {"dataSource",     "entity",  "featureView",
                                           "featureService", "feature", "savedDataset",
                                           "labelView"};

void lineage_serve_object(ld_call *c, const ProtobufCMessage *req, const catalog *snap)
{
    ld_status lst = LD_STATUS_INIT;
    if (check_page_limit(req, ((registry *)ld_call_ctx(c))->max_page_size, &lst) != 0) {
        ld_call_fail(c, &lst);
        return;
    }
    const Feast__Registry__GetObjectRelationshipsRequest *r = (const void *)req;
    int valid = 0;
    for (size_t i = 0; i < sizeof object_types / sizeof object_types[0]; i++)
        valid |= strcmp(object_types[i], r->object_type) == 0;
    if (!valid) {
        ld_call_failf(c, GRPC_STATUS_INVALID_ARGUMENT, NULL, "'%s' is not a valid FeastObjectType",
                      r->object_type);
        return;
    }
    rel_list direct = {0}, indirect = {0};
    direct_relations(snap, r->project, &direct);
    if (r->include_indirect) {
        indirect_relations(snap, r->project, &direct, &indirect);
        for (size_t i = 0; i < indirect.n; i++)
            rel_push(&direct, indirect.v[i].stype, indirect.v[i].sname, indirect.v[i].ttype,
                     indirect.v[i].tname);
    }
    rel_filter(&direct, r->object_type, r->object_name);
    size_t first, count;
    page_meta pm;
    rel_page(req, &direct, &first, &count, &pm);
    ld_buf b = LD_BUF_INIT;
    put_relations(&b, 1, &direct, first, count);
    pb_put_page_meta(&b, 2, &pm);
    free(direct.v);
    free(indirect.v);
    reply_buf(c, &b);
}

/* ------------------------------------------------------------ features */

static const char *const primitive_names[] = {
        [0] = "Invalid",         [1] = "Bytes",     [2] = "String",      [3] = "Int32",
        [4] = "Int64",           [5] = "Float64",   [6] = "Float32",     [7] = "Bool",
        [8] = "UnixTimestamp",   [30] = "PdfBytes", [31] = "ImageBytes", [32] = "Json",
        [36] = "Uuid",           [37] = "TimeUuid", [44] = "Decimal",    [47] = "ScalarMap",
        [48] = "ZonedTimestamp", [20] = "Map",
};

const char *lineage_type_string(int vt)
{
    static const struct {
        int vt;
        const char *s;
    } composite[] = {
            {11, "Array(Bytes)"},
            {12, "Array(String)"},
            {13, "Array(Int32)"},
            {14, "Array(Int64)"},
            {15, "Array(Float64)"},
            {16, "Array(Float32)"},
            {17, "Array(Bool)"},
            {18, "Array(UnixTimestamp)"},
            {21, "Array(Map)"},
            {22, "Set(Bytes)"},
            {23, "Set(String)"},
            {24, "Set(Int32)"},
            {25, "Set(Int64)"},
            {26, "Set(Float64)"},
            {27, "Set(Float32)"},
            {28, "Set(Bool)"},
            {29, "Set(UnixTimestamp)"},
            {33, "Array(Json)"},
            {34, "Struct({_value: String})"},
            {35, "Array(Struct({_value: String}))"},
            {38, "Array(Uuid)"},
            {39, "Array(TimeUuid)"},
            {40, "Set(Uuid)"},
            {41, "Set(TimeUuid)"},
            {42, "Array(Array(String))"},
            {43, "Set(Array(String))"},
            {45, "Array(Decimal)"},
            {46, "Set(Decimal)"},
    };
    if (vt >= 0 && (size_t)vt < sizeof primitive_names / sizeof primitive_names[0] &&
        primitive_names[vt])
        return primitive_names[vt];
    for (size_t i = 0; i < sizeof composite / sizeof composite[0]; i++)
        if (composite[i].vt == vt)
            return composite[i].s;
    return NULL;
}

/* A struct type with a feast:struct_schema tag such as {"a": "INT64"}:
 * "Struct({a: Int64})". Only flat schemas of primitives are rendered;
 * anything else falls back to Feast's untagged form. */
static const char *enum_display(const char *e)
{
    static const struct {
        const char *e, *d;
    } m[] = {{"BYTES", "Bytes"},     {"STRING", "String"},
             {"INT32", "Int32"},     {"INT64", "Int64"},
             {"FLOAT64", "Float64"}, {"FLOAT32", "Float32"},
             {"DOUBLE", "Float64"},  {"FLOAT", "Float32"},
             {"BOOL", "Bool"},       {"UNIX_TIMESTAMP", "UnixTimestamp"},
             {"JSON", "Json"},       {"UUID", "Uuid"},
             {"DECIMAL", "Decimal"}};
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
        if (!strcmp(m[i].e, e))
            return m[i].d;
    return NULL;
}

static int struct_from_schema(const char *json, ld_buf *out)
{
    const char *p = json;
    ld_buf_puts(out, "Struct({");
    int first = 1;
    while ((p = strchr(p, '"'))) {
        const char *k0 = ++p, *k1 = strchr(p, '"');
        if (!k1)
            return -1;
        p = strchr(k1 + 1, '"');
        if (!p)
            return -1;
        const char *v0 = ++p, *v1 = strchr(p, '"');
        if (!v1)
            return -1;
        char type[64];
        size_t vn = (size_t)(v1 - v0);
        if (vn >= sizeof type)
            return -1;
        memcpy(type, v0, vn);
        type[vn] = '\0';
        const char *d = enum_display(type);
        if (!d)
            return -1;
        ld_buf_printf(out, "%s%.*s: %s", first ? "" : ", ", (int)(k1 - k0), k0, d);
        first = 0;
        p = v1 + 1;
    }
    ld_buf_puts(out, "})");
    return 0;
}

typedef struct feat_list {
    Feast__Registry__Feature **v;
    size_t n, cap;
} feat_list;

static Feast__Registry__Feature *make_feature(ld_arena *a, const cat_obj *view,
                                              const Feast__Core__FeatureSpecV2 *f)
{
    Feast__Registry__Feature *out = ld_arena_calloc(a, 1, sizeof *out);
    if (!out)
        return NULL;
    feast__registry__feature__init(out);
    out->name = f->name;
    out->feature_view = (char *)view->name;
    out->description = f->description;
    out->kind = view->kind == CAT_LABEL_VIEW ? "label" : "feature";
    const char *type = lineage_type_string((int)f->value_type);
    ld_buf tb = LD_BUF_INIT;
    const char *schema = NULL;
    for (size_t i = 0; i < f->n_tags; i++)
        if (!strcmp(f->tags[i]->key, "feast:struct_schema"))
            schema = f->tags[i]->value;
    if (schema && (f->value_type == 34 || f->value_type == 35)) {
        if (f->value_type == 35)
            ld_buf_puts(&tb, "Array(");
        if (struct_from_schema(schema, &tb) == 0) {
            if (f->value_type == 35)
                ld_buf_putc(&tb, ')');
            type = ld_arena_strdup(a, tb.data);
        }
    }
    ld_buf_free(&tb);
    out->type = (char *)(type ? type : "Invalid");
    /* user tags only */
    out->tags = ld_arena_calloc(a, f->n_tags + 1, sizeof *out->tags);
    for (size_t i = 0; out->tags && i < f->n_tags; i++) {
        const char *k = f->tags[i]->key;
        if (!strcmp(k, "feast:struct_schema") || !strcmp(k, "feast:nested_inner_type"))
            continue;
        Feast__Registry__Feature__TagsEntry *e = ld_arena_calloc(a, 1, sizeof *e);
        feast__registry__feature__tags_entry__init(e);
        e->key = f->tags[i]->key;
        e->value = f->tags[i]->value;
        out->tags[out->n_tags++] = e;
    }
    return out;
}

static const cat_kind feature_kinds[] = {CAT_FEATURE_VIEW, CAT_SFV, CAT_ODFV, CAT_LABEL_VIEW};

static size_t view_features(const cat_obj *o, Feast__Core__FeatureSpecV2 ***feats)
{
    void *p;
    const ProtobufCFieldDescriptor *f = pbref_field(o->msg, "spec.features", &p);
    if (!f || !p)
        return 0;
    *feats = *(Feast__Core__FeatureSpecV2 ***)p;
    return *(size_t *)((char *)p - f->offset + f->quantifier_offset);
}

static int feature_key_cmp(const Feast__Registry__Feature *a, const Feast__Registry__Feature *b,
                           const char *path)
{
    const char *x = "", *y = "";
    if (!strcmp(path, "name"))
        x = a->name, y = b->name;
    else if (!strcmp(path, "feature_view"))
        x = a->feature_view, y = b->feature_view;
    else if (!strcmp(path, "type"))
        x = a->type, y = b->type;
    else if (!strcmp(path, "kind"))
        x = a->kind, y = b->kind;
    else if (!strcmp(path, "description"))
        x = a->description, y = b->description;
    return strcasecmp(x, y);
}

void lineage_serve_list_features(ld_call *c, const ProtobufCMessage *req, const catalog *snap)
{
    ld_status lst = LD_STATUS_INIT;
    if (check_page_limit(req, ((registry *)ld_call_ctx(c))->max_page_size, &lst) != 0) {
        ld_call_fail(c, &lst);
        return;
    }
    const Feast__Registry__ListFeaturesRequest *r = (const void *)req;
    ld_arena *a = ld_call_arena(c);
    feat_list l = {0};
    for (size_t k = 0; k < 4; k++) {
        const cat_vec *v = &snap->kinds[feature_kinds[k]];
        for (size_t i = 0; i < v->n; i++) {
            const cat_obj *o = v->v[i];
            if (!in_project(o, r->project))
                continue;
            const char *kind = o->kind == CAT_LABEL_VIEW ? "label" : "feature";
            if (*r->kind && strcmp(r->kind, kind) != 0)
                continue;
            if (*r->feature_view && strcmp(r->feature_view, o->name) != 0)
                continue;
            Feast__Core__FeatureSpecV2 **feats;
            size_t nf = view_features(o, &feats);
            for (size_t j = 0; j < nf; j++) {
                if (*r->name && strcmp(r->name, feats[j]->name) != 0)
                    continue;
                if (l.n == l.cap) {
                    l.cap = l.cap ? l.cap * 2 : 64;
                    l.v = realloc(l.v, l.cap * sizeof *l.v);
                    if (!l.v)
                        abort();
                }
                Feast__Registry__Feature *f = make_feature(a, o, feats[j]);
                if (!f) {
                    free(l.v);
                    ld_call_failf(c, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "response too large");
                    return;
                }
                l.v[l.n++] = f;
            }
        }
    }
    /* sort (stable insertion sort keeps Feast's stability; lists are small) */
    if (r->sorting && *r->sorting->sort_by && l.n > 1) {
        int desc = strcasecmp(r->sorting->sort_order, "desc") == 0;
        for (size_t i = 1; i < l.n; i++) {
            Feast__Registry__Feature *x = l.v[i];
            size_t j = i;
            while (j > 0) {
                int cmp = feature_key_cmp(l.v[j - 1], x, r->sorting->sort_by);
                if (desc ? cmp >= 0 : cmp <= 0)
                    break;
                l.v[j] = l.v[j - 1];
                j--;
            }
            l.v[j] = x;
        }
    }
    size_t first = 0, count = l.n;
    page_meta pm;
    memset(&pm, 0, sizeof pm);
    if (l.n) {
        pm.total_count = (int32_t)l.n;
        pm.total_pages = 1;
        if (r->pagination && r->pagination->page > 0 && r->pagination->limit > 0) {
            size_t lim = (size_t)r->pagination->limit;
            size_t start = (size_t)(r->pagination->page - 1) * lim;
            first = start < l.n ? start : l.n;
            count = (start + lim < l.n ? start + lim : l.n) - first;
            pm.page = r->pagination->page;
            pm.limit = r->pagination->limit;
            pm.total_pages = (int32_t)((l.n + lim - 1) / lim);
            pm.has_next = pm.page < pm.total_pages;
            pm.has_previous = pm.page > 1;
        }
    }
    Feast__Registry__ListFeaturesResponse resp = FEAST__REGISTRY__LIST_FEATURES_RESPONSE__INIT;
    resp.features = l.v + first;
    resp.n_features = count;
    Feast__Registry__PaginationMetadata meta = FEAST__REGISTRY__PAGINATION_METADATA__INIT;
    meta.page = pm.page;
    meta.limit = pm.limit;
    meta.total_count = pm.total_count;
    meta.total_pages = pm.total_pages;
    meta.has_next = pm.has_next;
    meta.has_previous = pm.has_previous;
    resp.pagination = &meta;
    ld_call_reply(c, &resp.base);
    free(l.v);
}

void lineage_serve_get_feature(ld_call *c, const ProtobufCMessage *req, const catalog *snap)
{
    const Feast__Registry__GetFeatureRequest *r = (const void *)req;
    for (size_t k = 0; k < 4; k++) {
        const cat_vec *v = &snap->kinds[feature_kinds[k]];
        for (size_t i = 0; i < v->n; i++) {
            const cat_obj *o = v->v[i];
            if (!in_project(o, r->project) || strcmp(o->name, r->feature_view) != 0)
                continue;
            Feast__Core__FeatureSpecV2 **feats;
            size_t nf = view_features(o, &feats);
            for (size_t j = 0; j < nf; j++) {
                if (strcmp(feats[j]->name, r->name) != 0)
                    continue;
                Feast__Registry__Feature *f = make_feature(ld_call_arena(c), o, feats[j]);
                if (!f) {
                    ld_call_failf(c, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
                    return;
                }
                ld_call_reply(c, &f->base);
                return;
            }
        }
    }
    ld_call_failf(c, GRPC_STATUS_NOT_FOUND, "FeastObjectNotFoundException",
                  "Feature %s not found in feature view %s in project %s", r->name, r->feature_view,
                  r->project);
}
