#include "ol_serve.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "feast/core/FeatureService.pb-c.h"
#include "ld_pb.h"
#include "ld_hash.h"
#include "ld_key.h"
#include "ld_log.h"
#include "ld_value.h"
#include "ld_time.h"
#include "ol_registry.h"
#include "ol_server.h"
#include "ol_store.h"
#include "ol_values.h"

#define VT(x) FEAST__TYPES__VALUE_TYPE__ENUM__##x

struct ol_server {
    ol_registry *reg;
    ol_store *store;
    char *project;
    int key_version;
    int python_statuses;
    size_t max_rows;
    size_t max_values;
};

ol_server *ol_server_new(const ld_config *cfg, ol_registry *reg, ol_store *store, ld_status *st)
{
    ol_server *s = calloc(1, sizeof *s);
    if (!s) {
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        return NULL;
    }
    s->reg = reg;
    s->store = store;
    s->project = strdup(cfg->project);
    s->key_version = cfg->entity_key_serialization_version;
    s->python_statuses = cfg->larder.online_python_statuses;
    s->max_rows = (size_t)cfg->larder.online_max_rows;
    s->max_values = (size_t)cfg->larder.online_max_values;
    return s;
}

void ol_server_free(ol_server *s)
{
    if (!s)
        return;
    free(s->project);
    free(s);
}

int ol_serve_healthy(ol_server *s)
{
    ol_snapshot *snap = ol_registry_snapshot(s->reg);
    int ok = snap != NULL && s->store->ops->healthy(s->store);
    ol_snapshot_unref(snap);
    return ok;
}

static int fail_oom(ld_status *st)
{
    return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL,
                         "request needs more memory than one call may use");
}

/* ------------------------------------------------------------ resolution */

/* One feature-view projection of a request: a view, the name it is served
 * under (alias or name), its join-key map, and the features read. */
typedef struct group {
    const ol_view *view;
    const char *name_to_use;
    Feast__Core__FeatureViewProjection__JoinKeyMapEntry **jkm;
    size_t n_jkm;
    const char **features;
    unsigned char (*fields)[4];
    size_t n_features, cap_features;
    uint32_t *slot_of; /* [index in the view] -> index in features + 1; 0: not read */
    size_t *row_key;   /* [row] -> unique key index */
} group;

typedef struct out_feature {
    size_t group;
    size_t index; /* in the group's features */
    const char *name;
} out_feature;

typedef struct get_ctx {
    ol_server *srv;
    ol_snapshot *snap;
    ld_arena *a;
    ol_get_done done;
    void *arg;
    size_t n_rows;
    group *groups;
    size_t n_groups;
    out_feature *outs;
    size_t n_outs;
    const char **out_names; /* open addressing over outs' names (collisions) */
    size_t n_out_slots;
    ol_column_out *ecols; /* entity columns, prepared before the read */
    size_t n_ecols;
    ol_read_group *rg;
    ol_read read;
} get_ctx;

static group *find_or_add_group(get_ctx *g, const ol_view *v, const char *name_to_use,
                                Feast__Core__FeatureViewProjection *proj, size_t cap, ld_status *st)
{
    for (size_t i = 0; i < g->n_groups; i++)
        if (g->groups[i].view == v && strcmp(g->groups[i].name_to_use, name_to_use) == 0 &&
            (proj ? proj->join_key_map : NULL) == g->groups[i].jkm)
            return &g->groups[i];
    group *gr = &g->groups[g->n_groups++];
    memset(gr, 0, sizeof *gr);
    gr->view = v;
    gr->name_to_use = name_to_use;
    if (proj) {
        gr->jkm = proj->join_key_map;
        gr->n_jkm = proj->n_join_key_map;
    }
    gr->cap_features = v->n_features;
    gr->features = ld_arena_calloc(g->a, gr->cap_features + 1, sizeof *gr->features);
    gr->fields = ld_arena_calloc(g->a, gr->cap_features + 1, sizeof *gr->fields);
    gr->slot_of = ld_arena_calloc(g->a, gr->cap_features + 1, sizeof *gr->slot_of);
    if (!gr->features || !gr->fields || !gr->slot_of)
        return fail_oom(st), NULL;
    (void)cap;
    return gr;
}

static int check_servable(const ol_view *v, const char *project, ld_status *st)
{
    if (v->kind == OL_VIEW_ODFV && !v->write_to_online_store)
        return ld_status_set(st, GRPC_STATUS_FAILED_PRECONDITION, NULL,
                             "on demand feature view %s needs its Python transformation, which "
                             "larder does not run; serve it with write_to_online_store=True",
                             v->name);
    if (v->disabled)
        return ld_status_set(st, GRPC_STATUS_FAILED_PRECONDITION, NULL,
                             "feature view %s is disabled", v->name);
    if (v->state != 0 && v->state != 4)
        return ld_status_set(st, GRPC_STATUS_FAILED_PRECONDITION, NULL,
                             "feature view %s is not servable yet (state %d; needs "
                             "AVAILABLE_ONLINE)",
                             v->name, v->state);
    if (!v->online)
        return ld_status_set(st, GRPC_STATUS_FAILED_PRECONDITION, NULL,
                             "feature view %s is not online", v->name);
    (void)project;
    return 0;
}

static int add_feature(get_ctx *g, group *gr, const char *feature, int full_names, ld_status *st)
{
    const ol_feature *f = ol_view_feature(gr->view, feature);
    if (!f)
        return ld_status_set(st, GRPC_STATUS_NOT_FOUND, "FeastObjectNotFoundException",
                             "Feature %s not found in feature view %s", feature, gr->view->name);
    size_t vi = (size_t)(f - gr->view->features), idx;
    if (gr->slot_of[vi]) {
        idx = gr->slot_of[vi] - 1;
    } else {
        idx = gr->n_features++;
        gr->features[idx] = f->name;
        memcpy(gr->fields[idx], f->field, 4);
        gr->slot_of[vi] = (uint32_t)idx + 1;
    }
    const char *name =
            full_names ? ld_arena_sprintf(g->a, "%s__%s", gr->name_to_use, feature) : f->name;
    if (!name)
        return fail_oom(st);
    size_t mask = g->n_out_slots - 1, k = ld_fnv1a_str(name) & mask;
    for (; g->out_names[k]; k = (k + 1) & mask)
        if (strcmp(g->out_names[k], name) == 0)
            return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "FeatureNameCollisionError",
                                 "Duplicate features named %s found. To resolve this collision, "
                                 "either use the full feature name by setting "
                                 "'full_feature_names=True', or ensure that the features in "
                                 "question have different names.",
                                 name);
    g->out_names[k] = name;
    g->outs[g->n_outs++] = (out_feature){(size_t)(gr - g->groups), idx, name};
    return 0;
}

static int resolve_features(get_ctx *g, const ol_get_request *req, ld_status *st)
{
    const ol_snapshot *snap = g->snap;
    size_t max_refs = req->n_features;
    const Feast__Core__FeatureService *fs = NULL;
    if (req->feature_service && *req->feature_service) {
        fs = ol_snapshot_service(snap, req->feature_service);
        if (!fs)
            return ld_status_set(st, GRPC_STATUS_NOT_FOUND, "FeatureServiceNotFoundException",
                                 "Feature service %s does not exist in project %s",
                                 req->feature_service, g->srv->project);
        max_refs = 0;
        for (size_t i = 0; i < fs->spec->n_features; i++) {
            const Feast__Core__FeatureViewProjection *p = fs->spec->features[i];
            const ol_view *v = ol_snapshot_view(snap, p->feature_view_name);
            max_refs += p->n_feature_columns ? p->n_feature_columns : (v ? v->n_features : 0);
        }
    } else if (req->n_features == 0) {
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "the request names no features and no feature service");
    }
    g->outs = ld_arena_calloc(g->a, max_refs + 1, sizeof *g->outs);
    g->groups = ld_arena_calloc(g->a, max_refs + 1, sizeof *g->groups);
    g->n_out_slots = 16;
    while (g->n_out_slots < 2 * max_refs)
        g->n_out_slots *= 2;
    g->out_names = ld_arena_calloc(g->a, g->n_out_slots, sizeof *g->out_names);
    if (!g->outs || !g->groups || !g->out_names)
        return fail_oom(st);

    if (fs) {
        for (size_t i = 0; i < fs->spec->n_features; i++) {
            Feast__Core__FeatureViewProjection *p = fs->spec->features[i];
            const ol_view *v = ol_snapshot_view(snap, p->feature_view_name);
            if (!v)
                return ld_status_set(st, GRPC_STATUS_NOT_FOUND, "FeatureViewNotFoundException",
                                     "Feature view %s does not exist in project %s",
                                     p->feature_view_name, g->srv->project);
            if (check_servable(v, g->srv->project, st) != 0)
                return -1;
            const char *use = *p->feature_view_name_alias ? p->feature_view_name_alias : v->name;
            group *gr = find_or_add_group(g, v, use, p, 0, st);
            if (!gr)
                return -1;
            if (p->n_feature_columns) {
                for (size_t j = 0; j < p->n_feature_columns; j++)
                    if (add_feature(g, gr, p->feature_columns[j]->name, req->full_feature_names,
                                    st) != 0)
                        return -1;
            } else {
                for (size_t j = 0; j < v->n_features; j++)
                    if (add_feature(g, gr, v->features[j].name, req->full_feature_names, st) != 0)
                        return -1;
            }
        }
        return 0;
    }
    for (size_t i = 0; i < req->n_features; i++) {
        const char *ref = req->features[i];
        const char *colon = strchr(ref, ':');
        if (!colon || colon == ref || !colon[1])
            return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                                 "feature reference '%s' is not of the form view:feature", ref);
        char *view = ld_arena_strndup(g->a, ref, (size_t)(colon - ref));
        if (!view)
            return fail_oom(st);
        if (strchr(view, '@'))
            return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                                 "versioned feature reference '%s': feature view versioning is "
                                 "not enabled",
                                 ref);
        const ol_view *v = ol_snapshot_view(snap, view);
        if (!v)
            return ld_status_set(st, GRPC_STATUS_NOT_FOUND, "FeatureViewNotFoundException",
                                 "Feature view %s does not exist in project %s", view,
                                 g->srv->project);
        if (check_servable(v, g->srv->project, st) != 0)
            return -1;
        group *gr = find_or_add_group(g, v, v->name, NULL, 0, st);
        if (!gr || add_feature(g, gr, colon + 1, req->full_feature_names, st) != 0)
            return -1;
    }
    return 0;
}

/* A feature service's resolution depends on the snapshot alone: built once
 * per (service, full_feature_names) on first use, published in the
 * snapshot, and shared read-only by every request on that snapshot. A
 * request copies only the small group array (row_key is per request). */
typedef struct fs_plan {
    ol_cached hdr;
    ld_arena arena; /* owns everything below */
    group *groups;
    size_t n_groups;
    out_feature *outs;
    size_t n_outs;
} fs_plan;

static void fs_plan_free(ol_cached *c)
{
    fs_plan *p = (fs_plan *)c;
    ld_arena_destroy(&p->arena);
    free(p);
}

static int resolve_cached(get_ctx *g, const ol_get_request *req, ld_status *st)
{
    long fi = req->feature_service && *req->feature_service
                      ? ol_snapshot_service_index(g->snap, req->feature_service)
                      : -1;
    if (fi < 0)
        return resolve_features(g, req, st); /* refs, or the not-found error */
    _Atomic(ol_cached *) *slot = &g->snap->plans[(size_t)fi * 2 + (req->full_feature_names != 0)];
    fs_plan *p = (fs_plan *)atomic_load_explicit(slot, memory_order_acquire);
    if (!p) {
        fs_plan *mine = calloc(1, sizeof *mine);
        if (!mine)
            return fail_oom(st);
        mine->hdr.free = fs_plan_free;
        ld_arena_init(&mine->arena, NULL, 0, 0);
        get_ctx pg = {.srv = g->srv, .snap = g->snap, .a = &mine->arena};
        if (resolve_features(&pg, req, st) != 0) {
            fs_plan_free(&mine->hdr);
            return -1;
        }
        mine->groups = pg.groups;
        mine->n_groups = pg.n_groups;
        mine->outs = pg.outs;
        mine->n_outs = pg.n_outs;
        ol_cached *expect = NULL;
        if (atomic_compare_exchange_strong_explicit(slot, &expect, &mine->hdr, memory_order_acq_rel,
                                                    memory_order_acquire)) {
            p = mine;
        } else {
            fs_plan_free(&mine->hdr);
            p = (fs_plan *)expect;
        }
    }
    g->groups = ld_arena_alloc(g->a, (p->n_groups + 1) * sizeof *g->groups);
    if (!g->groups)
        return fail_oom(st);
    memcpy(g->groups, p->groups, p->n_groups * sizeof *g->groups);
    g->n_groups = p->n_groups;
    g->outs = p->outs;
    g->n_outs = p->n_outs;
    return 0;
}

static const ol_column_in *find_column(const ol_column_in *cols, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(cols[i].name, name) == 0)
            return &cols[i];
    return NULL;
}

/* The request column that feeds join key `jk` of a group: the join-key map
 * first, then the join key itself, then an entity whose join key it is. */
static const ol_column_in *column_for_join_key(const get_ctx *g, const group *gr, const char *jk,
                                               const ol_get_request *req)
{
    const char *name = jk;
    for (size_t i = 0; i < gr->n_jkm; i++)
        if (strcmp(gr->jkm[i]->key, jk) == 0)
            name = gr->jkm[i]->value;
    const ol_column_in *c = find_column(req->entities, req->n_entities, name);
    if (c || name != jk)
        return c;
    for (size_t i = 0; i < req->n_entities; i++) {
        const char *ejk = ol_snapshot_entity_join_key(g->snap, req->entities[i].name, NULL);
        if (ejk && strcmp(ejk, jk) == 0)
            return &req->entities[i];
    }
    return NULL;
}

typedef struct key_slot {
    const uint8_t *bytes;
    size_t len;
    size_t index;
} key_slot;

/* A read group's result arrays. The cells are not zeroed (100 rows x 50
 * features would be 80 KB a call): the store fills every cell of a key it
 * found (ol_store.h), and get_finish reads cells of found keys only; the
 * found flags and timestamps start at zero. */
static int alloc_results(get_ctx *g, ol_read_group *rg, ld_status *st)
{
    size_t cells = rg->n_keys * rg->n_features + 1;
    rg->val = ld_arena_alloc(g->a, cells * sizeof *rg->val);
    rg->val_len = ld_arena_alloc(g->a, cells * sizeof *rg->val_len);
    rg->event_ts_us = ld_arena_calloc(g->a, rg->n_keys + 1, sizeof *rg->event_ts_us);
    rg->found = ld_arena_calloc(g->a, rg->n_keys + 1, sizeof *rg->found);
    if (!rg->val || !rg->val_len || !rg->event_ts_us || !rg->found)
        return fail_oom(st);
    return 0;
}

/* Entity keys of every row for a group, deduplicated. */
static int build_keys(get_ctx *g, group *gr, ol_read_group *rg, const ol_get_request *req,
                      ld_status *st)
{
    const ol_view *v = gr->view;
    size_t nk = v->n_join_keys;
    const char **names = ld_arena_calloc(g->a, nk + 1, sizeof *names);
    const ol_column_in **cols = ld_arena_calloc(g->a, nk + 1, sizeof *cols);
    const Feast__Types__Value **vals = ld_arena_calloc(g->a, nk + 1, sizeof *vals);
    gr->row_key = ld_arena_calloc(g->a, g->n_rows + 1, sizeof *gr->row_key);
    const uint8_t **keys = ld_arena_calloc(g->a, g->n_rows + 1, sizeof *keys);
    size_t *key_lens = ld_arena_calloc(g->a, g->n_rows + 1, sizeof *key_lens);
    size_t n_slots = 16;
    while (n_slots < g->n_rows * 2)
        n_slots *= 2;
    key_slot *slots = ld_arena_calloc(g->a, n_slots, sizeof *slots);
    if (!names || !cols || !vals || !gr->row_key || !keys || !key_lens || !slots)
        return fail_oom(st);
    Feast__Types__Value *dummy = NULL;
    for (size_t k = 0; k < nk; k++) {
        names[k] = v->join_keys[k].name;
        if (strcmp(names[k], "__dummy_id") == 0) {
            dummy = ld_value_string(g->a, "", 0);
            continue;
        }
        cols[k] = column_for_join_key(g, gr, names[k], req);
        if (!cols[k])
            return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                                 "entity column for join key %s of feature view %s is missing "
                                 "from the request",
                                 names[k], v->name);
    }
    ld_buf kb = LD_BUF_INIT;
    size_t n_unique = 0;
    int rc = 0;
    for (size_t row = 0; row < g->n_rows && rc == 0; row++) {
        for (size_t k = 0; k < nk; k++) {
            if (!cols[k]) {
                vals[k] = dummy;
                continue;
            }
            Feast__Types__Value *cv;
            if (ol_coerce(g->a, cols[k]->values[row], v->join_keys[k].value_type, cols[k]->name,
                          &cv, st) != 0) {
                rc = -1;
                break;
            }
            if (cv->val_case == FEAST__TYPES__VALUE__VAL__NOT_SET) {
                rc = ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                                   "entity column %s has a null in row %zu", cols[k]->name, row);
                break;
            }
            vals[k] = cv;
        }
        if (rc)
            break;
        ld_buf_reset(&kb);
        if (ld_key_serialize(names, vals, nk, g->srv->key_version, &kb, st) != 0) {
            rc = -1;
            break;
        }
        uint64_t h = ld_fnv1a(kb.data, kb.len);
        size_t s = h & (n_slots - 1);
        while (slots[s].bytes &&
               !(slots[s].len == kb.len && memcmp(slots[s].bytes, kb.data, kb.len) == 0))
            s = (s + 1) & (n_slots - 1);
        if (!slots[s].bytes) {
            uint8_t *copy = ld_arena_memdup(g->a, kb.data, kb.len);
            if (!copy) {
                rc = fail_oom(st);
                break;
            }
            slots[s] = (key_slot){copy, kb.len, n_unique};
            keys[n_unique] = copy;
            key_lens[n_unique] = kb.len;
            n_unique++;
        }
        gr->row_key[row] = slots[s].index;
    }
    ld_buf_free(&kb);
    if (rc)
        return rc;
    rg->table = v->name;
    rg->features = gr->features;
    rg->fields = (const unsigned char(*)[4])gr->fields;
    rg->n_features = gr->n_features;
    rg->keys = keys;
    rg->key_lens = key_lens;
    rg->n_keys = n_unique;
    return alloc_results(g, rg, st);
}

/* Two groups whose entity keys are built from the same request columns the
 * same way (same join keys and types, same join-key map) have the same keys:
 * the usual case of several views of one entity. */
static int same_keys(const group *a, const group *b)
{
    const ol_view *va = a->view, *vb = b->view;
    if (va->n_join_keys != vb->n_join_keys || a->n_jkm != b->n_jkm)
        return 0;
    for (size_t k = 0; k < va->n_join_keys; k++)
        if (va->join_keys[k].value_type != vb->join_keys[k].value_type ||
            strcmp(va->join_keys[k].name, vb->join_keys[k].name) != 0)
            return 0;
    for (size_t k = 0; k < a->n_jkm; k++)
        if (strcmp(a->jkm[k]->key, b->jkm[k]->key) != 0 ||
            strcmp(a->jkm[k]->value, b->jkm[k]->value) != 0)
            return 0;
    return 1;
}

static int share_keys(get_ctx *g, const group *from, const ol_read_group *rfrom, group *gr,
                      ol_read_group *rg, ld_status *st)
{
    gr->row_key = from->row_key;
    rg->table = gr->view->name;
    rg->features = gr->features;
    rg->fields = (const unsigned char(*)[4])gr->fields;
    rg->n_features = gr->n_features;
    rg->keys = rfrom->keys;
    rg->key_lens = rfrom->key_lens;
    rg->n_keys = rfrom->n_keys;
    return alloc_results(g, rg, st);
}

/* Entity output columns: the request's join-key columns (an entity name is
 * renamed to its join key), in request order, each PRESENT at the epoch. */
/* The serialized bytes of v in the arena. Join keys are mostly int64 or
 * string: those two are written here, the rest through protobuf-c. */
static int pack_value(ld_arena *a, const Feast__Types__Value *v, uint8_t **out, size_t *len)
{
    uint8_t *b, *p;
    if (v->val_case == FEAST__TYPES__VALUE__VAL_INT64_VAL) {
        if (!(b = ld_arena_alloc(a, 11)))
            return -1;
        p = b;
        *p++ = 4 << 3; /* int64_val = 4, varint */
        p += ld_pb_put_varint(p, (uint64_t)v->int64_val);
    } else if (v->val_case == FEAST__TYPES__VALUE__VAL_STRING_VAL && v->string_val) {
        size_t sl = strlen(v->string_val);
        if (!(b = ld_arena_alloc(a, sl + 11)))
            return -1;
        p = b;
        *p++ = (2 << 3) | 2; /* string_val = 2, length-delimited */
        p += ld_pb_put_varint(p, sl);
        memcpy(p, v->string_val, sl);
        p += sl;
    } else {
        size_t n = feast__types__value__get_packed_size(v);
        if (!(b = ld_arena_alloc(a, n + 1)))
            return -1;
        p = b + feast__types__value__pack(v, b);
    }
    *out = b;
    *len = (size_t)(p - b);
    return 0;
}

static int prepare_entity_columns(get_ctx *g, const ol_get_request *req, ld_status *st)
{
    g->ecols = ld_arena_calloc(g->a, req->n_entities + 1, sizeof *g->ecols);
    if (!g->ecols)
        return fail_oom(st);
    int64_t *zero_ts = NULL;
    for (size_t i = 0; i < req->n_entities; i++) {
        const ol_column_in *c = &req->entities[i];
        const char *name = NULL;
        int vt = VT(INVALID);
        for (size_t gi = 0; gi < g->n_groups && !name; gi++) {
            const group *gr = &g->groups[gi];
            for (size_t k = 0; k < gr->view->n_join_keys && !name; k++) {
                const char *jk = gr->view->join_keys[k].name;
                if (column_for_join_key(g, gr, jk, req) == c) {
                    name = strcmp(c->name, jk) == 0 || gr->n_jkm ? c->name : jk;
                    vt = gr->view->join_keys[k].value_type;
                }
            }
        }
        if (!name)
            continue; /* not used by any requested view: dropped, as Feast does */
        ol_column_out *o = &g->ecols[g->n_ecols++];
        o->name = name;
        o->val = ld_arena_alloc(g->a, (g->n_rows + 1) * sizeof *o->val);
        o->val_len = ld_arena_alloc(g->a, (g->n_rows + 1) * sizeof *o->val_len);
        o->status = ld_arena_alloc(g->a, (g->n_rows + 1) * sizeof *o->status);
        /* entity columns carry no event time: one array of zeros for all */
        if (!zero_ts)
            zero_ts = ld_arena_calloc(g->a, g->n_rows + 1, sizeof *zero_ts);
        o->ts_us = zero_ts;
        if (!o->val || !o->val_len || !o->status || !o->ts_us)
            return fail_oom(st);
        for (size_t row = 0; row < g->n_rows; row++) {
            Feast__Types__Value *cv;
            if (ol_coerce(g->a, c->values[row], vt, c->name, &cv, st) != 0)
                return -1;
            uint8_t *b;
            size_t n;
            if (pack_value(g->a, cv, &b, &n) != 0)
                return fail_oom(st);
            o->val[row] = b;
            o->val_len[row] = n;
            o->status[row] = OL_PRESENT;
        }
    }
    return 0;
}

static void get_finish(ol_read *r, const ld_status *rst)
{
    get_ctx *g = r->arg;
    ld_status st = LD_STATUS_INIT;
    if (rst && !ld_status_ok(rst)) {
        g->done(g->arg, NULL, rst);
        ol_snapshot_unref(g->snap);
        return;
    }
    ol_get_response *resp = ld_arena_calloc(g->a, 1, sizeof *resp);
    ol_column_out *cols =
            resp ? ld_arena_calloc(g->a, g->n_ecols + g->n_outs + 1, sizeof *cols) : NULL;
    if (!cols) {
        fail_oom(&st);
        g->done(g->arg, NULL, &st);
        ol_snapshot_unref(g->snap);
        return;
    }
    memcpy(cols, g->ecols, g->n_ecols * sizeof *cols);
    int64_t now = ld_wall_us();
    int python = g->srv->python_statuses;
    /* every feature column's cells in three allocations, each cell written
     * below (no zeroing: 100 rows x 50 features is 85 KB); the event times
     * once per read group, shared by its columns (ol_request.h) */
    size_t cells = g->n_outs * g->n_rows + 1;
    const uint8_t **all_val = ld_arena_alloc(g->a, cells * sizeof *all_val);
    size_t *all_len = ld_arena_alloc(g->a, cells * sizeof *all_len);
    uint8_t *all_status = ld_arena_alloc(g->a, cells * sizeof *all_status);
    int64_t *group_ts = ld_arena_alloc(g->a, (g->n_groups * g->n_rows + 1) * sizeof *group_ts);
    if (!all_val || !all_len || !all_status || !group_ts) {
        fail_oom(&st);
        g->done(g->arg, NULL, &st);
        ol_snapshot_unref(g->snap);
        return;
    }
    for (size_t gi = 0; gi < g->n_groups; gi++) {
        const group *gr = &g->groups[gi];
        const ol_read_group *rg = &g->rg[gi];
        int64_t *ts = group_ts + gi * g->n_rows;
        for (size_t row = 0; row < g->n_rows; row++) {
            size_t k = gr->row_key[row];
            ts[row] = rg->found[k] ? rg->event_ts_us[k] : 0;
        }
    }
    for (size_t o = 0; o < g->n_outs; o++) {
        const out_feature *of = &g->outs[o];
        const group *gr = &g->groups[of->group];
        const ol_read_group *rg = &g->rg[of->group];
        int64_t *ts = group_ts + of->group * g->n_rows;
        /* a row older than this is OUTSIDE_MAX_AGE (now - ts > ttl) */
        int64_t ttl_us = gr->view->ttl_us;
        int64_t oldest = ttl_us > 0 && now >= INT64_MIN + ttl_us ? now - ttl_us : INT64_MIN;
        ol_column_out *c = &cols[g->n_ecols + o];
        c->name = of->name; /* in the snapshot (or the arena) */
        const uint8_t **val = c->val = all_val + o * g->n_rows;
        size_t *len = c->val_len = all_len + o * g->n_rows;
        uint8_t *status = c->status = all_status + o * g->n_rows;
        c->ts_us = ts;
        const size_t *row_key = gr->row_key, nf = rg->n_features;
        const uint8_t *found = rg->found;
        const uint8_t *const *rv = rg->val + of->index;
        const size_t *rl = rg->val_len + of->index;
        for (size_t row = 0; row < g->n_rows; row++) {
            size_t k = row_key[row];
            const uint8_t *v = found[k] ? rv[k * nf] : NULL;
            size_t vl = v ? rl[k * nf] : 0;
            uint8_t s;
            if (python)
                s = found[k] ? OL_PRESENT : OL_NOT_FOUND;
            else if (!v)
                s = OL_NOT_FOUND;
            else if (ol_value_bytes_null(v, vl))
                s = OL_NULL_VALUE;
            else if (ts[row] < oldest)
                s = OL_OUTSIDE_MAX_AGE;
            else
                s = OL_PRESENT;
            val[row] = v;
            len[row] = vl;
            status[row] = s;
        }
    }
    resp->cols = cols;
    resp->n_cols = g->n_ecols + g->n_outs;
    resp->n_rows = g->n_rows;
    resp->hold = g->snap; /* the caller's reference now: ol_get_response_release */
    g->done(g->arg, resp, NULL);
}

void ol_get_response_release(const ol_get_response *r)
{
    if (r)
        ol_snapshot_unref(r->hold);
}

int ol_serve_get(ol_server *s, const ol_get_request *req, ld_arena *a, int64_t deadline_us,
                 const ol_defer *defer, ol_get_done done, void *arg, ld_status *st)
{
    ol_snapshot *snap = ol_registry_snapshot(s->reg);
    if (!snap)
        return ld_status_set(st, GRPC_STATUS_UNAVAILABLE, NULL,
                             "the registry has not been loaded yet");
    get_ctx *g = ld_arena_calloc(a, 1, sizeof *g);
    if (!g) {
        ol_snapshot_unref(snap);
        return fail_oom(st);
    }
    g->srv = s;
    g->snap = snap;
    g->a = a;
    g->done = done;
    g->arg = arg;
    int rc = -1;
    /* rows: every entity column has the same length */
    size_t rows = req->n_entities ? req->entities[0].n : 1;
    for (size_t i = 1; i < req->n_entities; i++)
        if (req->entities[i].n != rows) {
            ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                          "entity columns have different lengths: %s has %zu values, %s has %zu",
                          req->entities[0].name, rows, req->entities[i].name, req->entities[i].n);
            goto fail;
        }
    if (rows > s->max_rows) {
        ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                      "%zu entity rows exceed the limit of %zu (larder.online_max_rows)", rows,
                      s->max_rows);
        goto fail;
    }
    g->n_rows = rows;
    if (resolve_cached(g, req, st) != 0)
        goto fail;
    if (rows * g->n_outs > s->max_values) {
        ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                      "%zu rows x %zu features exceed the limit of %zu values "
                      "(larder.online_max_values)",
                      rows, g->n_outs, s->max_values);
        goto fail;
    }
    g->rg = ld_arena_calloc(a, g->n_groups + 1, sizeof *g->rg);
    if (!g->rg) {
        fail_oom(st);
        goto fail;
    }
    for (size_t i = 0; i < g->n_groups; i++) {
        size_t j = 0;
        while (j < i && !same_keys(&g->groups[j], &g->groups[i]))
            j++;
        if (j < i ? share_keys(g, &g->groups[j], &g->rg[j], &g->groups[i], &g->rg[i], st) != 0
                  : build_keys(g, &g->groups[i], &g->rg[i], req, st) != 0)
            goto fail;
    }
    if (prepare_entity_columns(g, req, st) != 0)
        goto fail;
    g->read = (ol_read){.project = s->project,
                        .groups = g->rg,
                        .n_groups = g->n_groups,
                        .arena = a,
                        .deadline_us = deadline_us,
                        .defer = defer,
                        .done = get_finish,
                        .arg = g};
    if (s->store->ops->read(s->store, &g->read, st) != 0)
        goto fail;
    return 0;
fail:
    ol_snapshot_unref(snap);
    (void)rc;
    return -1;
}

/* ------------------------------------------------------------ writes */

typedef struct write_ctx {
    ol_write_done done;
    void *arg;
    ol_snapshot *snap;
    atomic_int pending;   /* outstanding store writes + 1 while issuing */
    atomic_int has_error; /* first_error is set */
    ld_status first_error;
} write_ctx;

static void write_release(write_ctx *wc)
{
    if (atomic_fetch_sub_explicit(&wc->pending, 1, memory_order_acq_rel) != 1)
        return;
    ol_snapshot *snap = wc->snap;
    wc->done(wc->arg, atomic_load(&wc->has_error) ? &wc->first_error : NULL);
    ol_snapshot_unref(snap);
}

static void write_part_done(ol_write *w, const ld_status *st)
{
    write_ctx *wc = w->arg;
    int expected = 0;
    if (st && !ld_status_ok(st) && atomic_compare_exchange_strong(&wc->has_error, &expected, 1))
        wc->first_error = *st;
    write_release(wc);
}

/* The rows of one view from the request's dataframe. */
static int build_write(ol_server *s, const ol_view *v, const ol_write_request *req, size_t rows,
                       ld_arena *a, ol_write *w, ld_status *st)
{
    size_t nk = v->n_join_keys, nf = v->n_features;
    const ol_column_in **kcols = ld_arena_calloc(a, nk + 1, sizeof *kcols);
    const ol_column_in **fcols = ld_arena_calloc(a, nf + 1, sizeof *fcols);
    const char **names = ld_arena_calloc(a, nk + 1, sizeof *names);
    const Feast__Types__Value **kv = ld_arena_calloc(a, nk + 1, sizeof *kv);
    const char **features = ld_arena_calloc(a, nf + 1, sizeof *features);
    unsigned char(*fields)[4] = ld_arena_calloc(a, nf + 1, sizeof *fields);
    ol_write_row *out = ld_arena_calloc(a, rows + 1, sizeof *out);
    if (!kcols || !fcols || !names || !kv || !features || !fields || !out)
        return fail_oom(st);
    for (size_t k = 0; k < nk; k++) {
        names[k] = v->join_keys[k].name;
        if (strcmp(names[k], "__dummy_id") == 0)
            continue;
        kcols[k] = find_column(req->columns, req->n_columns, names[k]);
        if (!kcols[k])
            return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                                 "column %s (a join key of feature view %s) is missing", names[k],
                                 v->name);
    }
    for (size_t f = 0; f < nf; f++) {
        features[f] = v->features[f].name;
        memcpy(fields[f], v->features[f].field, 4);
        fcols[f] = find_column(req->columns, req->n_columns, features[f]);
        if (!fcols[f])
            return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                                 "column %s (a feature of feature view %s) is missing", features[f],
                                 v->name);
    }
    const ol_column_in *tcol = find_column(req->columns, req->n_columns, v->timestamp_field);
    if (!tcol)
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "column %s (the event timestamp of feature view %s) is missing",
                             v->timestamp_field, v->name);
    const ol_column_in *ccol =
            v->created_timestamp_column && *v->created_timestamp_column
                    ? find_column(req->columns, req->n_columns, v->created_timestamp_column)
                    : NULL;
    Feast__Types__Value *dummy = ld_value_string(a, "", 0);
    ld_buf kb = LD_BUF_INIT;
    int rc = 0;
    for (size_t r = 0; r < rows && rc == 0; r++) {
        ol_write_row *row = &out[r];
        for (size_t k = 0; k < nk; k++) {
            Feast__Types__Value *cv = dummy;
            if (kcols[k] && ol_coerce(a, kcols[k]->values[r], v->join_keys[k].value_type,
                                      kcols[k]->name, &cv, st) != 0) {
                rc = -1;
                break;
            }
            if (cv->val_case == FEAST__TYPES__VALUE__VAL__NOT_SET) {
                rc = ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                                   "column %s has a null in row %zu", names[k], r);
                break;
            }
            kv[k] = cv;
        }
        if (rc)
            break;
        ld_buf_reset(&kb);
        if (ld_key_serialize(names, kv, nk, s->key_version, &kb, st) != 0) {
            rc = -1;
            break;
        }
        row->key = ld_arena_memdup(a, kb.data, kb.len);
        row->key_len = kb.len;
        if (ol_value_timestamp(tcol->values[r], tcol->name, &row->event_ts_us, st) != 0) {
            rc = -1;
            break;
        }
        if (ccol && ccol->values[r] && ccol->values[r]->val_case != 0 &&
            ol_value_timestamp(ccol->values[r], ccol->name, &row->created_ts_us, st) != 0) {
            rc = -1;
            break;
        }
        const uint8_t **vals = ld_arena_calloc(a, nf + 1, sizeof *vals);
        size_t *lens = ld_arena_calloc(a, nf + 1, sizeof *lens);
        if (!vals || !lens || !row->key) {
            rc = fail_oom(st);
            break;
        }
        for (size_t f = 0; f < nf; f++) {
            Feast__Types__Value *cv;
            if (ol_coerce(a, fcols[f]->values[r], v->features[f].value_type, fcols[f]->name, &cv,
                          st) != 0) {
                rc = -1;
                break;
            }
            size_t n = feast__types__value__get_packed_size(cv);
            uint8_t *b = ld_arena_alloc(a, n + 1);
            if (!b) {
                rc = fail_oom(st);
                break;
            }
            feast__types__value__pack(cv, b);
            vals[f] = b;
            lens[f] = n;
        }
        row->val = vals;
        row->val_len = lens;
    }
    ld_buf_free(&kb);
    if (rc)
        return rc;
    *w = (ol_write){.project = s->project,
                    .table = v->name,
                    .features = features,
                    .fields = (const unsigned char(*)[4])fields,
                    .n_features = nf,
                    .rows = out,
                    .n_rows = rows,
                    .arena = a};
    return 0;
}

int ol_serve_write(ol_server *s, const ol_write_request *req, ld_arena *a, int64_t deadline_us,
                   ol_write_done done, void *arg, ld_status *st)
{
    size_t rows = 0;
    for (size_t i = 0; i < req->n_columns; i++) {
        if (i && req->columns[i].n != rows)
            return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                                 "dataframe columns have different lengths (%s: %zu, %s: %zu)",
                                 req->columns[0].name, rows, req->columns[i].name,
                                 req->columns[i].n);
        rows = req->columns[i].n;
    }
    if (rows > s->max_rows)
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "%zu rows exceed the limit of %zu (larder.online_max_rows)", rows,
                             s->max_rows);
    if (req->push_source_name && req->to_offline)
        return ld_status_set(st, GRPC_STATUS_FAILED_PRECONDITION, NULL,
                             "pushing to the offline store goes through the offline server, "
                             "which larder-online does not reach yet; push with to=online");
    ol_snapshot *snap = ol_registry_snapshot(s->reg);
    if (!snap)
        return ld_status_set(st, GRPC_STATUS_UNAVAILABLE, NULL,
                             "the registry has not been loaded yet");
    const ol_view **views = ld_arena_calloc(a, snap->n_views + 1, sizeof *views);
    size_t n_views = 0;
    if (!views) {
        ol_snapshot_unref(snap);
        return fail_oom(st);
    }
    if (req->feature_view_name) {
        const ol_view *v = ol_snapshot_view(snap, req->feature_view_name);
        if (!v) {
            ol_snapshot_unref(snap);
            return ld_status_set(st, GRPC_STATUS_NOT_FOUND, "FeatureViewNotFoundException",
                                 "Feature view %s does not exist in project %s",
                                 req->feature_view_name, s->project);
        }
        views[n_views++] = v;
    } else {
        for (size_t i = 0; i < snap->n_views; i++)
            if (snap->views[i].push_source &&
                strcmp(snap->views[i].push_source, req->push_source_name) == 0)
                views[n_views++] = &snap->views[i];
        if (!n_views) {
            ol_snapshot_unref(snap);
            return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "PushSourceNotFoundException",
                                 "Unable to find push source '%s'.", req->push_source_name);
        }
    }
    write_ctx *wc = ld_arena_calloc(a, 1, sizeof *wc);
    ol_write *writes = ld_arena_calloc(a, n_views + 1, sizeof *writes);
    if (!wc || !writes) {
        ol_snapshot_unref(snap);
        return fail_oom(st);
    }
    for (size_t i = 0; i < n_views; i++) {
        if (build_write(s, views[i], req, rows, a, &writes[i], st) != 0) {
            ol_snapshot_unref(snap);
            return -1;
        }
        writes[i].deadline_us = deadline_us;
        writes[i].done = write_part_done;
        writes[i].arg = wc;
    }
    wc->done = done;
    wc->arg = arg;
    wc->snap = snap;
    ld_status_clear(&wc->first_error);
    if (rows == 0) { /* nothing to write: Feast answers 200 */
        atomic_init(&wc->pending, 1);
        write_release(wc);
        return 0;
    }
    atomic_init(&wc->pending, (int)n_views + 1);
    for (size_t i = 0; i < n_views; i++) {
        ld_status wst = LD_STATUS_INIT;
        if (s->store->ops->write(s->store, &writes[i], &wst) != 0) {
            ld_status *e = &wst;
            write_part_done(&writes[i], e);
        }
    }
    write_release(wc); /* the issuing reference */
    return 0;
}
