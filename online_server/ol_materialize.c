#include "ol_materialize.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "feast/registry/RegistryServer.pb-c.h"
#include "google/protobuf/empty.pb-c.h"
#include "ld_pb.h"
#include "ld_buf.h"
#include "ld_discovery.h"
#include "ld_key.h"
#include "ld_log.h"
#include "ld_murmur3.h"
#include "ld_time.h"
#include "ld_value.h"
#include "ol_flight_client.h"
#include "ol_values.h"

#define DEFAULT_BATCH    10000
#define DEFAULT_INFLIGHT 4
#define WRITE_TIMEOUT_US (120 * 1000000LL)
#define WEEKS_52_US      (52LL * 7 * 86400 * 1000000)
#define VT(x)            FEAST__TYPES__VALUE_TYPE__ENUM__##x
#define VC(x)            FEAST__TYPES__VALUE__VAL_##x

typedef Feast__Core__FeatureView FeatureView;

/* ------------------------------------------------------------ registry */

typedef struct reg_views {
    ld_arena arena;
    ld_client *client;
    FeatureView **fvs;
    size_t n;
} reg_views;

static int load_views(const ld_config *cfg, reg_views *rv, ld_status *st)
{
    memset(rv, 0, sizeof *rv);
    ld_arena_init(&rv->arena, NULL, 0, 0);
    if (!(rv->client = ld_discovery_registry_client(cfg, st)))
        return -1;
    Feast__Registry__ListFeatureViewsRequest req =
            FEAST__REGISTRY__LIST_FEATURE_VIEWS_REQUEST__INIT;
    req.project = cfg->project;
    req.allow_cache = 0;
    ProtobufCMessage *resp = NULL;
    if (ld_client_unary(rv->client, "/feast.registry.RegistryServer/ListFeatureViews", &req.base,
                        &feast__registry__list_feature_views_response__descriptor, &rv->arena, 0,
                        NULL, &resp, st) != 0) {
        ld_status_prefix(st, "registry %s", ld_client_target(rv->client));
        return -1;
    }
    Feast__Registry__ListFeatureViewsResponse *r = (void *)resp;
    rv->fvs = r->feature_views;
    rv->n = r->n_feature_views;
    return 0;
}

static void free_views(reg_views *rv)
{
    ld_client_free(rv->client);
    ld_arena_destroy(&rv->arena);
}

static FeatureView *find_view(const reg_views *rv, const char *name)
{
    for (size_t i = 0; i < rv->n; i++)
        if (rv->fvs[i]->spec && !strcmp(rv->fvs[i]->spec->name, name))
            return rv->fvs[i];
    return NULL;
}

/* Feast's _get_feature_views_to_materialize, for feature views. */
static int select_views(const ld_config *cfg, const reg_views *rv, const ol_mat_request *req,
                        FeatureView ***out, size_t *n_out, ld_status *st)
{
    FeatureView **sel = calloc(rv->n + req->n_views + 1, sizeof *sel);
    size_t n = 0;
    if (!sel)
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
    if (req->n_views == 0) {
        for (size_t i = 0; i < rv->n; i++) {
            const Feast__Core__FeatureViewSpec *s = rv->fvs[i]->spec;
            if (s && s->online && !s->disabled)
                sel[n++] = rv->fvs[i];
        }
    } else {
        for (size_t i = 0; i < req->n_views; i++) {
            FeatureView *fv = find_view(rv, req->views[i]);
            if (!fv) {
                free(sel);
                return ld_status_set(st, GRPC_STATUS_NOT_FOUND, "FeatureViewNotFoundException",
                                     "Feature view %s does not exist in project %s", req->views[i],
                                     cfg->project);
            }
            if (fv->spec->disabled) {
                free(sel);
                return ld_status_set(st, GRPC_STATUS_FAILED_PRECONDITION, NULL,
                                     "FeatureView %s is disabled and cannot be materialized",
                                     req->views[i]);
            }
            if (!fv->spec->online) {
                free(sel);
                return ld_status_set(st, GRPC_STATUS_FAILED_PRECONDITION, NULL,
                                     "FeatureView %s is not configured to be served online.",
                                     req->views[i]);
            }
            int dup = 0;
            for (size_t k = 0; k < n; k++)
                dup |= sel[k] == fv;
            if (!dup)
                sel[n++] = fv;
        }
    }
    *out = sel;
    *n_out = n;
    return 0;
}

static int64_t ts_us(const Google__Protobuf__Timestamp *t)
{
    return t ? t->seconds * 1000000 + t->nanos / 1000 : 0;
}

/* Start of an incremental run (feature_store.py materialize_incremental). */
static int incremental_start(const FeatureView *fv, int64_t now_us, int64_t *start, ld_status *st)
{
    int64_t best = INT64_MIN;
    for (size_t i = 0; fv->meta && i < fv->meta->n_materialization_intervals; i++) {
        const Feast__Core__MaterializationInterval *iv = fv->meta->materialization_intervals[i];
        if (iv && iv->end_time && ts_us(iv->end_time) > best)
            best = ts_us(iv->end_time);
    }
    if (best != INT64_MIN) {
        *start = best;
        return 0;
    }
    const Google__Protobuf__Duration *ttl = fv->spec->ttl;
    if (!ttl)
        return ld_status_set(st, GRPC_STATUS_FAILED_PRECONDITION, NULL,
                             "Feature view %s has no ttl and was never materialized: "
                             "materialize-incremental cannot choose a start date (run materialize "
                             "START END first, or give the view a ttl)",
                             fv->spec->name);
    int64_t t = ttl->seconds * 1000000 + ttl->nanos / 1000;
    *start = now_us - (t > 0 ? t : WEEKS_52_US);
    return 0;
}

/* ------------------------------------------------------------ values */

static int64_t cell_int(const ot_column *c, int64_t i)
{
    return c->type.id == OT_INT32 || c->type.id == OT_DATE32 ? ((const int32_t *)c->values)[i]
                                                             : ((const int64_t *)c->values)[i];
}

static double cell_double(const ot_column *c, int64_t i)
{
    return c->type.id == OT_FLOAT32 ? ((const float *)c->values)[i]
                                    : ((const double *)c->values)[i];
}

static const char *cell_str(const ot_column *c, int64_t i, size_t *len)
{
    if (c->type.id == OT_LARGE_UTF8) {
        *len = (size_t)(c->offsets64[i + 1] - c->offsets64[i]);
        return (const char *)c->data + c->offsets64[i];
    }
    *len = (size_t)(c->offsets[i + 1] - c->offsets[i]);
    return (const char *)c->data + c->offsets[i];
}

static int is_int(ot_type_id t)
{
    return t == OT_INT32 || t == OT_INT64;
}

static int is_float(ot_type_id t)
{
    return t == OT_FLOAT32 || t == OT_FLOAT64;
}

static int is_str(ot_type_id t)
{
    return t == OT_UTF8 || t == OT_LARGE_UTF8;
}

/* A list cell as a Value of the declared list type. */
static Feast__Types__Value *list_value(ld_arena *a, const ot_column *c, int64_t i, int declared,
                                       const char *what, ld_status *st)
{
    const ot_column *ch = c->child;
    int64_t b = c->offsets[i], e = c->offsets[i + 1], n = e - b;
    if (!ch || b < 0 || e > ch->length || n < 0) {
        ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL, "%s: malformed list", what);
        return NULL;
    }
    ot_type_id t = ch->type.id;
    switch (declared) {
    case VT(INT64_LIST):
    case VT(INT32_LIST):
    case VT(UNIX_TIMESTAMP_LIST): {
        if (!is_int(t) && t != OT_TIMESTAMP)
            break;
        int64_t *v = ld_arena_calloc(a, (size_t)n + 1, sizeof *v);
        int32_t *v32 = ld_arena_calloc(a, (size_t)n + 1, sizeof *v32);
        if (!v || !v32)
            return NULL;
        for (int64_t k = 0; k < n; k++) {
            v[k] = t == OT_TIMESTAMP ? ot_column_ts_us(ch, b + k) / 1000000 : cell_int(ch, b + k);
            v32[k] = (int32_t)v[k];
        }
        return declared == VT(INT32_LIST)            ? ld_value_int32_list(a, v32, (size_t)n)
               : declared == VT(UNIX_TIMESTAMP_LIST) ? ld_value_unix_ts_list(a, v, (size_t)n)
                                                     : ld_value_int64_list(a, v, (size_t)n);
    }
    case VT(DOUBLE_LIST):
    case VT(FLOAT_LIST): {
        if (!is_float(t) && !is_int(t))
            break;
        double *v = ld_arena_calloc(a, (size_t)n + 1, sizeof *v);
        float *f = ld_arena_calloc(a, (size_t)n + 1, sizeof *f);
        if (!v || !f)
            return NULL;
        for (int64_t k = 0; k < n; k++) {
            v[k] = is_int(t) ? (double)cell_int(ch, b + k) : cell_double(ch, b + k);
            f[k] = (float)v[k];
        }
        return declared == VT(FLOAT_LIST) ? ld_value_float_list(a, f, (size_t)n)
                                          : ld_value_double_list(a, v, (size_t)n);
    }
    case VT(STRING_LIST): {
        if (!is_str(t))
            break;
        const char **v = ld_arena_calloc(a, (size_t)n + 1, sizeof *v);
        if (!v)
            return NULL;
        for (int64_t k = 0; k < n; k++) {
            size_t len;
            const char *s = cell_str(ch, b + k, &len);
            v[k] = ld_arena_strndup(a, s, len);
        }
        return ld_value_string_list(a, v, (size_t)n);
    }
    case VT(BOOL_LIST): {
        if (t != OT_BOOL)
            break;
        protobuf_c_boolean *v = ld_arena_calloc(a, (size_t)n + 1, sizeof *v);
        if (!v)
            return NULL;
        for (int64_t k = 0; k < n; k++)
            v[k] = ot_bit_get(ch->values, b + k);
        return ld_value_bool_list(a, v, (size_t)n);
    }
    default:
        break;
    }
    ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                  "%s: a list of Arrow type %d cannot become Feast type %s", what, (int)t,
                  ld_value_type_name((ld_value_case)declared));
    return NULL;
}

/* The cell as a Value of the declared type (slow path; everything the fast
 * path does not cover). NULL with st on error. */
static Feast__Types__Value *cell_value(ld_arena *a, const ot_column *c, int64_t i, int declared,
                                       const char *what, ld_status *st)
{
    Feast__Types__Value *in = NULL;
    switch (c->type.id) {
    case OT_INT32:
    case OT_INT64:
        in = ld_value_int64(a, cell_int(c, i));
        break;
    case OT_FLOAT32:
    case OT_FLOAT64:
        in = ld_value_double(a, cell_double(c, i));
        break;
    case OT_BOOL:
        in = ld_value_bool(a, ot_bit_get(c->values, i));
        break;
    case OT_UTF8:
    case OT_LARGE_UTF8: {
        size_t len;
        const char *s = cell_str(c, i, &len);
        in = ld_value_string(a, s, len);
        break;
    }
    case OT_BINARY:
        in = ld_value_bytes(a, c->data + c->offsets[i],
                            (size_t)(c->offsets[i + 1] - c->offsets[i]));
        break;
    case OT_TIMESTAMP:
        in = ld_value_unix_ts(a, ot_column_ts_us(c, i) / 1000000);
        break;
    case OT_DATE32:
        in = ld_value_unix_ts(a, (int64_t)((const int32_t *)c->values)[i] * 86400);
        break;
    case OT_LIST:
        return list_value(a, c, i, declared, what, st);
    default:
        ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                      "%s: Arrow type %d is not materialized", what, (int)c->type.id);
        return NULL;
    }
    Feast__Types__Value *out = NULL;
    if (!in) {
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        return NULL;
    }
    if (ol_coerce(a, in, declared, what, &out, st) != 0)
        return NULL;
    return out;
}

/* Serialized Value bytes of a feature cell; *p NULL for a null cell. */
static int feature_bytes(ld_arena *a, const ot_column *c, int64_t i, int declared, const char *what,
                         const uint8_t **p, size_t *n, ld_status *st)
{
    *p = NULL;
    *n = 0;
    if (!c || !ot_column_valid(c, i))
        return 0;
    ot_type_id t = c->type.id;
    uint8_t tmp[16];
    size_t k = 0;
    switch (declared) {
    case VT(INT64):
        if (is_int(t)) {
            tmp[k++] = 0x20;
            k += ld_pb_put_varint(tmp + k, (uint64_t)cell_int(c, i));
        }
        break;
    case VT(INT32):
        if (t == OT_INT32) {
            tmp[k++] = 0x18;
            k += ld_pb_put_varint(tmp + k, (uint64_t)(int64_t)((const int32_t *)c->values)[i]);
        }
        break;
    case VT(DOUBLE):
        if (is_float(t)) {
            double d = cell_double(c, i);
            tmp[k++] = 0x29;
            memcpy(tmp + k, &d, 8);
            k += 8;
        }
        break;
    case VT(FLOAT):
        if (is_float(t)) {
            float f = (float)cell_double(c, i);
            tmp[k++] = 0x35;
            memcpy(tmp + k, &f, 4);
            k += 4;
        }
        break;
    case VT(BOOL):
        if (t == OT_BOOL) {
            tmp[k++] = 0x38;
            tmp[k++] = (uint8_t)ot_bit_get(c->values, i);
        }
        break;
    case VT(UNIX_TIMESTAMP):
        if (t == OT_TIMESTAMP) {
            tmp[k++] = 0x40;
            int64_t us = ot_column_ts_us(c, i);
            int64_t s = us >= 0 ? us / 1000000 : -((-us + 999999) / 1000000);
            k += ld_pb_put_varint(tmp + k, (uint64_t)s);
        }
        break;
    case VT(STRING):
        if (is_str(t)) {
            size_t len;
            const char *s = cell_str(c, i, &len);
            uint8_t *out = ld_arena_alloc(a, len + 11);
            if (!out)
                return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
            size_t m = 0;
            out[m++] = 0x12;
            m += ld_pb_put_varint(out + m, len);
            memcpy(out + m, s, len);
            *p = out;
            *n = m + len;
            return 0;
        }
        break;
    default:
        break;
    }
    if (k) {
        uint8_t *out = ld_arena_memdup(a, tmp, k);
        if (!out)
            return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        *p = out;
        *n = k;
        return 0;
    }
    Feast__Types__Value *v = cell_value(a, c, i, declared, what, st);
    if (!v)
        return -1;
    size_t len = protobuf_c_message_get_packed_size(&v->base);
    uint8_t *out = ld_arena_alloc(a, len + 1);
    if (!out)
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
    protobuf_c_message_pack(&v->base, out);
    *p = out;
    *n = len;
    return 0;
}

/* ------------------------------------------------------------ writes */

typedef struct mat_run mat_run;

typedef struct mat_batch {
    mat_run *run;
    ol_write w;
    ld_arena arena;
    ol_write_row *rows;
    size_t n, cap;
    /* lww_precheck: the read of the stored event times, in flight while the
     * next batch is converted */
    ol_read rd;
    ol_read_group g;
    int read_done;
    ld_status read_st;
} mat_batch;

struct mat_run {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int inflight;
    int64_t written; /* rows whose write completed (or were skipped as older) */
    int64_t skipped; /* lww_precheck: rows the store had a newer version of */
    ld_status err;   /* first store error */
};

static void batch_free(mat_batch *b)
{
    if (!b)
        return;
    ld_arena_destroy(&b->arena);
    free(b);
}

static void batch_done(ol_write *w, const ld_status *st)
{
    mat_batch *b = w->arg;
    mat_run *r = b->run;
    size_t n = b->n;
    batch_free(b);
    pthread_mutex_lock(&r->mu);
    if (!ld_status_ok(st)) {
        if (ld_status_ok(&r->err))
            r->err = *st;
    } else {
        r->written += (int64_t)n;
    }
    r->inflight--;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* One view's run: conversion state and the batch being filled. */
typedef struct view_run {
    const ld_config *cfg;
    ol_store *store;
    const ol_mat_request *req;
    mat_run *run;
    const FeatureView *fv;
    const char *name;
    const char **jk;
    int *jk_type;
    size_t n_jk;
    const char **feat;
    int *feat_type;
    unsigned char (*fields)[4];
    size_t n_feat;
    const char *ts_col;
    const char *created_col;
    int64_t run_now_us;
    int64_t batch_rows;
    int max_inflight;
    mat_batch *cur;
    mat_batch *reading;   /* lww_precheck: the batch whose timestamp read is in flight */
    int64_t base_written; /* run->written when this view started */
    ol_mat_progress prog;
    int64_t t0_us;
    int64_t view_t0_us;
    int64_t first_batch_us; /* -1 until the first batch arrived */
    ld_buf keybuf;
} view_run;

static mat_batch *batch_new(view_run *v)
{
    mat_batch *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->run = v->run;
    ld_arena_init(&b->arena, NULL, 0, 0);
    b->cap = (size_t)v->batch_rows;
    b->rows = ld_arena_calloc(&b->arena, b->cap, sizeof *b->rows);
    if (!b->rows) {
        batch_free(b);
        return NULL;
    }
    return b;
}

static void report(view_run *v, int view_done)
{
    if (!v->req->progress)
        return;
    pthread_mutex_lock(&v->run->mu);
    int64_t w = v->run->written;
    pthread_mutex_unlock(&v->run->mu);
    v->prog.view_rows = w - v->base_written;
    v->prog.rows = w;
    int64_t now = ld_mono_us();
    v->prog.elapsed_us = now - v->t0_us;
    v->prog.view_elapsed_us = v->first_batch_us < 0 ? 0 : now - (v->view_t0_us + v->first_batch_us);
    v->prog.view_done = view_done;
    v->req->progress(v->req->progress_arg, &v->prog);
}

static int cancelled(const view_run *v)
{
    return v->req->cancel && atomic_load(v->req->cancel);
}

static void ts_read_done(ol_read *rd, const ld_status *st)
{
    mat_batch *b = rd->arg;
    mat_run *r = b->run;
    pthread_mutex_lock(&r->mu);
    b->read_st = *st;
    b->read_done = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* Feast's first pipeline: ask for the stored event time of every key of the
 * batch (asynchronously; the batch's arena belongs to the store until the
 * read is done). */
static int precheck_start(view_run *v, mat_batch *b, ld_status *st)
{
    ld_arena *a = &b->arena;
    size_t n = b->n;
    const uint8_t **keys = ld_arena_calloc(a, n, sizeof *keys);
    size_t *klen = ld_arena_calloc(a, n, sizeof *klen);
    const uint8_t **val = ld_arena_calloc(a, 1, sizeof *val);
    size_t *val_len = ld_arena_calloc(a, 1, sizeof *val_len);
    int64_t *ts = ld_arena_calloc(a, n, sizeof *ts);
    uint8_t *found = ld_arena_calloc(a, n, 1);
    if (!keys || !klen || !val || !val_len || !ts || !found)
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        keys[i] = b->rows[i].key;
        klen[i] = b->rows[i].key_len;
    }
    b->g = (ol_read_group){.table = v->name,
                           .keys = keys,
                           .key_lens = klen,
                           .n_keys = n,
                           .val = val,
                           .val_len = val_len,
                           .event_ts_us = ts,
                           .found = found};
    b->read_done = 0;
    b->rd = (ol_read){.project = v->cfg->project,
                      .groups = &b->g,
                      .n_groups = 1,
                      .arena = a,
                      .deadline_us = ld_mono_us() + WRITE_TIMEOUT_US,
                      .done = ts_read_done,
                      .arg = b};
    return v->store->ops->read(v->store, &b->rd, st);
}

/* Wait for the batch's read; drop the rows the store has a version of that
 * is as new or newer (counted as written: the store holds their result). */
static int precheck_finish(view_run *v, mat_batch *b, ld_status *st)
{
    mat_run *r = v->run;
    pthread_mutex_lock(&r->mu);
    while (!b->read_done)
        pthread_cond_wait(&r->cv, &r->mu);
    pthread_mutex_unlock(&r->mu);
    if (!ld_status_ok(&b->read_st)) {
        *st = b->read_st;
        return -1;
    }
    size_t n = b->n, m = 0;
    for (size_t i = 0; i < n; i++)
        if (!b->g.found[i] || b->rows[i].event_ts_us > b->g.event_ts_us[i])
            b->rows[m++] = b->rows[i];
    pthread_mutex_lock(&r->mu);
    r->skipped += (int64_t)(n - m);
    r->written += (int64_t)(n - m);
    pthread_mutex_unlock(&r->mu);
    b->n = m;
    return 0;
}

static int write_batch(view_run *v, mat_batch *b, ld_status *st);

/* lww_precheck: start this batch's read, then finish the previous one's and
 * write it, so reading and converting overlap. b NULL: flush. */
static int precheck_step(view_run *v, mat_batch *b, ld_status *st)
{
    if (b && precheck_start(v, b, st) != 0) {
        batch_free(b);
        b = NULL;
        int rc = -1;
        if (v->reading) { /* still owned by the store until its read is done */
            ld_status ignore = LD_STATUS_INIT;
            precheck_finish(v, v->reading, &ignore);
            batch_free(v->reading);
            v->reading = NULL;
        }
        return rc;
    }
    mat_batch *prev = v->reading;
    v->reading = b;
    if (!prev)
        return 0;
    if (precheck_finish(v, prev, st) != 0) {
        batch_free(prev);
        return -1;
    }
    return write_batch(v, prev, st);
}

/* Hand the current batch to the store, after waiting for a free slot. */
static int submit(view_run *v, ld_status *st)
{
    mat_batch *b = v->cur;
    v->cur = NULL;
    if (!b || b->n == 0) {
        batch_free(b);
        return 0;
    }
    if (v->req->lww_precheck)
        return precheck_step(v, b, st);
    return write_batch(v, b, st);
}

static int write_batch(view_run *v, mat_batch *b, ld_status *st)
{
    mat_run *r = v->run;
    if (b->n == 0) {
        batch_free(b);
        report(v, 0);
        return 0;
    }
    pthread_mutex_lock(&r->mu);
    while (r->inflight >= v->max_inflight && ld_status_ok(&r->err))
        pthread_cond_wait(&r->cv, &r->mu);
    int failed = !ld_status_ok(&r->err);
    if (failed)
        *st = r->err;
    else
        r->inflight++;
    pthread_mutex_unlock(&r->mu);
    if (failed) {
        batch_free(b);
        return -1;
    }
    if (cancelled(v)) {
        batch_free(b);
        pthread_mutex_lock(&r->mu);
        r->inflight--;
        pthread_mutex_unlock(&r->mu);
        return ld_status_set(st, GRPC_STATUS_CANCELLED, NULL, "materialization cancelled");
    }
    b->w = (ol_write){.project = v->cfg->project,
                      .table = v->name,
                      .features = v->feat,
                      .fields = (const unsigned char(*)[4])v->fields,
                      .n_features = v->n_feat,
                      .rows = b->rows,
                      .n_rows = b->n,
                      .arena = &b->arena,
                      .deadline_us = ld_mono_us() + WRITE_TIMEOUT_US,
                      .done = batch_done,
                      .arg = b};
    ld_status wst = LD_STATUS_INIT;
    if (v->store->ops->write(v->store, &b->w, &wst) != 0) {
        batch_free(b);
        pthread_mutex_lock(&r->mu);
        r->inflight--;
        if (ld_status_ok(&r->err))
            r->err = wst;
        pthread_mutex_unlock(&r->mu);
        *st = wst;
        return -1;
    }
    report(v, 0);
    return 0;
}

static int wait_all(view_run *v, ld_status *st)
{
    mat_run *r = v->run;
    pthread_mutex_lock(&r->mu);
    while (r->inflight > 0)
        pthread_cond_wait(&r->cv, &r->mu);
    int failed = !ld_status_ok(&r->err);
    if (failed && ld_status_ok(st))
        *st = r->err;
    pthread_mutex_unlock(&r->mu);
    return failed ? -1 : 0;
}

static int join_key_value(view_run *v, const ot_column *c, int64_t i, size_t k, ld_arena *a,
                          Feast__Types__Value *tmp, const Feast__Types__Value **out, ld_status *st)
{
    if (!ot_column_valid(c, i))
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "feature view %s: join key %s is null in a row of the source", v->name,
                             v->jk[k]);
    int declared = v->jk_type[k];
    if ((declared == VT(INT64) || declared == VT(INVALID)) && is_int(c->type.id)) {
        feast__types__value__init(tmp);
        tmp->val_case = VC(INT64_VAL);
        tmp->int64_val = cell_int(c, i);
        *out = tmp;
        return 0;
    }
    if ((declared == VT(STRING) || declared == VT(INVALID)) && is_str(c->type.id)) {
        size_t len;
        const char *s = cell_str(c, i, &len);
        feast__types__value__init(tmp);
        tmp->val_case = VC(STRING_VAL);
        tmp->string_val = ld_arena_strndup(a, s, len);
        *out = tmp;
        return tmp->string_val ? 0 : -1;
    }
    Feast__Types__Value *val = cell_value(a, c, i, declared, v->jk[k], st);
    *out = val;
    return val ? 0 : -1;
}

/* The offline server's row count for this view: the progress total. */
static void on_total(void *arg, int64_t total)
{
    view_run *v = arg;
    v->prog.view_total = total;
}

static int on_batch(void *arg, const ot_table *t, ld_status *st)
{
    view_run *v = arg;
    const ot_column *jkc[64], *fc_stack[256];
    if (v->first_batch_us < 0)
        v->first_batch_us = ld_mono_us() - v->view_t0_us;
    if (v->n_jk > 64)
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL, "too many join keys");
    const ot_column **fc = v->n_feat <= 256 ? fc_stack : calloc(v->n_feat, sizeof *fc);
    if (!fc)
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
    int rc = 0;
    for (size_t k = 0; k < v->n_jk; k++)
        if (!(jkc[k] = ot_table_column(t, v->jk[k]))) {
            rc = ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                               "the offline server's rows for %s have no join key column %s",
                               v->name, v->jk[k]);
            goto out;
        }
    for (size_t f = 0; f < v->n_feat; f++)
        fc[f] = ot_table_column(t, v->feat[f]); /* missing: null values */
    const ot_column *tsc = ot_table_column(t, v->ts_col);
    const ot_column *cc = v->created_col ? ot_table_column(t, v->created_col) : NULL;
    if (!v->req->disable_event_timestamp && (!tsc || tsc->type.id != OT_TIMESTAMP)) {
        rc = ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                           "the offline server's rows for %s have no timestamp column %s", v->name,
                           v->ts_col);
        goto out;
    }
    static const char dummy_key[] = "__dummy_id";
    for (int64_t i = 0; i < t->n_rows; i++) {
        if (cancelled(v)) {
            rc = ld_status_set(st, GRPC_STATUS_CANCELLED, NULL, "materialization cancelled");
            goto out;
        }
        if (!v->cur && !(v->cur = batch_new(v))) {
            rc = ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
            goto out;
        }
        mat_batch *b = v->cur;
        ld_arena *a = &b->arena;
        ol_write_row *row = &b->rows[b->n];
        /* entity key */
        Feast__Types__Value tmp[64];
        const Feast__Types__Value *vals[64];
        const char *names[64];
        size_t nk = v->n_jk;
        ld_buf_reset(&v->keybuf);
        if (nk == 0) {
            feast__types__value__init(&tmp[0]);
            tmp[0].val_case = VC(STRING_VAL);
            tmp[0].string_val = (char *)"";
            vals[0] = &tmp[0];
            names[0] = dummy_key;
            nk = 1;
        } else {
            for (size_t k = 0; k < nk; k++) {
                names[k] = v->jk[k];
                if (join_key_value(v, jkc[k], i, k, a, &tmp[k], &vals[k], st) != 0) {
                    rc = -1;
                    goto out;
                }
            }
        }
        if (ld_key_serialize(names, vals, nk, v->cfg->entity_key_serialization_version, &v->keybuf,
                             st) != 0) {
            ld_status_prefix(st, "feature view %s", v->name);
            rc = -1;
            goto out;
        }
        row->key = ld_arena_memdup(a, v->keybuf.data, v->keybuf.len);
        row->key_len = v->keybuf.len;
        const uint8_t **vp = ld_arena_calloc(a, v->n_feat + 1, sizeof *vp);
        size_t *vl = ld_arena_calloc(a, v->n_feat + 1, sizeof *vl);
        if (!row->key || !vp || !vl) {
            rc = ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
            goto out;
        }
        for (size_t f = 0; f < v->n_feat; f++)
            if (feature_bytes(a, fc[f], i, v->feat_type[f], v->feat[f], &vp[f], &vl[f], st) != 0) {
                ld_status_prefix(st, "feature view %s", v->name);
                rc = -1;
                goto out;
            }
        row->val = vp;
        row->val_len = vl;
        row->event_ts_us =
                v->req->disable_event_timestamp ? v->run_now_us : ot_column_ts_us(tsc, i);
        row->created_ts_us = cc && ot_column_valid(cc, i) && cc->type.id == OT_TIMESTAMP
                                     ? ot_column_ts_us(cc, i)
                                     : 0;
        b->n++;
        if (b->n == b->cap && submit(v, st) != 0) {
            rc = -1;
            goto out;
        }
    }
out:
    if (fc != fc_stack)
        free(fc);
    return rc;
}

/* ------------------------------------------------------------ commands */

static void json_strs(ld_buf *b, const char *const *s, size_t n)
{
    ld_buf_putc(b, '[');
    for (size_t i = 0; i < n; i++) {
        if (i)
            ld_buf_puts(b, ", ");
        ld_buf_json_str(b, s[i], strlen(s[i]), 1);
    }
    ld_buf_putc(b, ']');
}

static void iso(int64_t us, char *out, size_t n)
{
    time_t s = (time_t)(us >= 0 ? us / 1000000 : -((-us + 999999) / 1000000));
    int64_t frac = us - (int64_t)s * 1000000;
    struct tm tm;
    gmtime_r(&s, &tm);
    char base[24];
    if (strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm) == 0)
        base[0] = '\0';
    int w = frac ? snprintf(out, n, "%.23s.%06lld+00:00", base, (long long)frac)
                 : snprintf(out, n, "%.23s+00:00", base);
    (void)w;
}

static void command_json(const view_run *v, int64_t start, int64_t end, ld_buf *b)
{
    char id[64], s[48], e[48];
    uint64_t r = (uint64_t)ld_wall_us() ^ ((uint64_t)ld_mono_us() << 20) ^ (uint64_t)(uintptr_t)b;
    snprintf(id, sizeof id, "%08llx-%04llx-4%03llx-8%03llx-%012llx",
             (unsigned long long)(r & 0xffffffff), (unsigned long long)((r >> 32) & 0xffff),
             (unsigned long long)((r >> 48) & 0xfff), (unsigned long long)(r & 0xfff),
             (unsigned long long)(ld_mono_us() & 0xffffffffffffULL));
    iso(start, s, sizeof s);
    iso(end, e, sizeof e);
    const Feast__Core__DataSource *src = v->fv->spec->batch_source;
    ld_buf_puts(b, "{\"command_id\": ");
    ld_buf_json_str(b, id, strlen(id), 1);
    ld_buf_puts(b, ", \"api\": \"pull_latest_from_table_or_query\", \"data_source_name\": ");
    ld_buf_json_str(b, src->name, strlen(src->name), 1);
    ld_buf_puts(b, ", \"join_key_columns\": ");
    json_strs(b, v->jk, v->n_jk);
    ld_buf_puts(b, ", \"feature_name_columns\": ");
    json_strs(b, v->feat, v->n_feat);
    ld_buf_puts(b, ", \"timestamp_field\": ");
    ld_buf_json_str(b, v->ts_col, strlen(v->ts_col), 1);
    ld_buf_puts(b, ", \"created_timestamp_column\": ");
    if (v->created_col)
        ld_buf_json_str(b, v->created_col, strlen(v->created_col), 1);
    else
        ld_buf_puts(b, "null");
    ld_buf_printf(b, ", \"start_date\": \"%s\", \"end_date\": \"%s\"}", s, e);
}

static int apply_interval(reg_views *rv, const ld_config *cfg, FeatureView *fv, int64_t start,
                          int64_t end, ld_status *st)
{
    Google__Protobuf__Timestamp s = GOOGLE__PROTOBUF__TIMESTAMP__INIT,
                                e = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    s.seconds = start >= 0 ? start / 1000000 : -((-start + 999999) / 1000000);
    s.nanos = (int32_t)((start - s.seconds * 1000000) * 1000);
    e.seconds = end >= 0 ? end / 1000000 : -((-end + 999999) / 1000000);
    e.nanos = (int32_t)((end - e.seconds * 1000000) * 1000);
    Feast__Registry__ApplyMaterializationRequest req =
            FEAST__REGISTRY__APPLY_MATERIALIZATION_REQUEST__INIT;
    req.feature_view = fv;
    req.project = cfg->project;
    req.start_date = &s;
    req.end_date = &e;
    req.commit = 1;
    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    ProtobufCMessage *resp = NULL;
    int rc = ld_client_unary(rv->client, "/feast.registry.RegistryServer/ApplyMaterialization",
                             &req.base, &google__protobuf__empty__descriptor, &a, 0, NULL, &resp,
                             st);
    ld_arena_destroy(&a);
    if (rc != 0)
        ld_status_prefix(st, "recording the interval of %s", fv->spec->name);
    return rc;
}

static int wait_store(ol_store *store, ld_status *st)
{
    int64_t until = ld_mono_us() + 10 * 1000000LL;
    while (!store->ops->healthy(store)) {
        if (ld_mono_us() > until)
            return ld_status_set(st, GRPC_STATUS_UNAVAILABLE, NULL,
                                 "the %s online store is not reachable", store->ops->name);
        struct timespec ts = {0, 20 * 1000000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

static int run_view(view_run *v, ol_flight_client *fc, reg_views *rv, int64_t start, int64_t end,
                    ld_status *st)
{
    const Feast__Core__FeatureViewSpec *spec = v->fv->spec;
    const Feast__Core__DataSource *src = spec->batch_source;
    if (!src || !src->name || !*src->name)
        return ld_status_set(st, GRPC_STATUS_FAILED_PRECONDITION, NULL,
                             "feature view %s has no named batch source", spec->name);
    if (!src->timestamp_field || !*src->timestamp_field)
        return ld_status_set(st, GRPC_STATUS_FAILED_PRECONDITION, NULL,
                             "feature view %s: its batch source %s has no timestamp_field",
                             spec->name, src->name);
    v->ts_col = src->timestamp_field;
    v->created_col = src->created_timestamp_column && *src->created_timestamp_column
                             ? src->created_timestamp_column
                             : NULL;
    ld_buf cmd = LD_BUF_INIT;
    command_json(v, start, end, &cmd);
    int64_t rows = 0;
    ol_flight_sink sink = {.batch = on_batch, .total = on_total, .arg = v};
    int rc = ol_flight_command(fc, cmd.data, NULL, &sink, &rows, st);
    ld_buf_free(&cmd);
    if (rc == 0)
        rc = submit(v, st);
    if (rc == 0 && v->req->lww_precheck)
        rc = precheck_step(v, NULL, st);
    if (rc != 0) {
        batch_free(v->cur);
        v->cur = NULL;
        if (v->reading) { /* the store owns its arena until the read is done */
            ld_status ignore = LD_STATUS_INIT;
            precheck_finish(v, v->reading, &ignore);
            batch_free(v->reading);
            v->reading = NULL;
        }
    }
    if (wait_all(v, st) != 0)
        rc = -1;
    if (rc == 0)
        rc = apply_interval(rv, v->cfg, (FeatureView *)v->fv, start, end, st);
    return rc;
}

int ol_materialize_select(const ld_config *cfg, const ol_mat_request *req, char ***names, size_t *n,
                          ld_status *st)
{
    reg_views rv;
    *names = NULL;
    *n = 0;
    int rc = load_views(cfg, &rv, st);
    FeatureView **sel = NULL;
    size_t ns = 0;
    if (rc == 0)
        rc = select_views(cfg, &rv, req, &sel, &ns, st);
    if (rc == 0) {
        *names = calloc(ns + 1, sizeof **names);
        for (size_t i = 0; *names && i < ns; i++)
            (*names)[i] = strdup(sel[i]->spec->name);
        *n = ns;
    }
    free(sel);
    free_views(&rv);
    return rc;
}

void ol_mat_names_free(char **names, size_t n)
{
    for (size_t i = 0; names && i < n; i++)
        free(names[i]);
    free(names);
}

void ol_mat_result_clear(ol_mat_result *res)
{
    if (!res)
        return;
    for (size_t i = 0; i < res->n_views; i++)
        free(res->views[i].name);
    free(res->views);
    memset(res, 0, sizeof *res);
}

int ol_materialize(const ld_config *cfg, ol_store *store, const ol_mat_request *req,
                   ol_mat_result *res, ld_status *st)
{
    int64_t t0 = ld_mono_us(), now = ld_wall_us();
    ol_mat_result local;
    if (!res)
        res = &local;
    memset(res, 0, sizeof *res);
    reg_views rv;
    if (load_views(cfg, &rv, st) != 0) {
        free_views(&rv);
        return -1;
    }
    FeatureView **sel = NULL;
    size_t ns = 0;
    int rc = select_views(cfg, &rv, req, &sel, &ns, st);
    int64_t *starts = rc == 0 ? calloc(ns + 1, sizeof *starts) : NULL;
    if (rc == 0 && !starts)
        rc = ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
    /* every start is decided (and every error found) before anything runs */
    for (size_t i = 0; rc == 0 && i < ns; i++) {
        if (req->incremental)
            rc = incremental_start(sel[i], now, &starts[i], st);
        else
            starts[i] = req->start_us;
    }
    ld_endpoint ep;
    ol_flight_client *fc = NULL;
    if (rc == 0 && ns > 0 && (rc = ld_discovery_offline(cfg, &ep, st)) == 0) {
        char *ca = ep.tls && cfg->registry.cert ? ld_config_resolve_path(cfg, cfg->registry.cert)
                                                : NULL;
        ol_flight_opts fo = {
                .target = ep.target, .tls = ep.tls, .tls_ca = ca, .cancel = req->cancel};
        fc = ol_flight_client_new(&fo, st);
        free(ca);
        snprintf(res->offline_target, sizeof res->offline_target, "%s", ep.target);
        if (!fc)
            rc = -1;
    }
    if (rc == 0 && ns > 0)
        rc = wait_store(store, st);
    res->views = rc == 0 ? calloc(ns + 1, sizeof *res->views) : NULL;
    mat_run run;
    memset(&run, 0, sizeof run);
    pthread_mutex_init(&run.mu, NULL);
    pthread_cond_init(&run.cv, NULL);
    run.err = (ld_status)LD_STATUS_INIT;
    int64_t batch_rows = req->write_batch_rows > 0 ? req->write_batch_rows
                         : cfg->materialization.online_write_batch_size > 0
                                 ? cfg->materialization.online_write_batch_size
                                 : DEFAULT_BATCH;
    for (size_t i = 0; rc == 0 && i < ns; i++) {
        const Feast__Core__FeatureViewSpec *spec = sel[i]->spec;
        view_run v;
        memset(&v, 0, sizeof v);
        v.cfg = cfg;
        v.store = store;
        v.req = req;
        v.run = &run;
        v.fv = sel[i];
        v.name = spec->name;
        v.run_now_us = now;
        v.batch_rows = batch_rows;
        v.max_inflight = req->max_inflight > 0 ? req->max_inflight : DEFAULT_INFLIGHT;
        v.n_jk = spec->n_entity_columns;
        v.n_feat = spec->n_features;
        v.jk = calloc(v.n_jk + 1, sizeof *v.jk);
        v.jk_type = calloc(v.n_jk + 1, sizeof *v.jk_type);
        v.feat = calloc(v.n_feat + 1, sizeof *v.feat);
        v.feat_type = calloc(v.n_feat + 1, sizeof *v.feat_type);
        v.fields = calloc(v.n_feat + 1, sizeof *v.fields);
        if (!v.jk || !v.jk_type || !v.feat || !v.feat_type || !v.fields) {
            rc = ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        } else {
            for (size_t k = 0; k < v.n_jk; k++) {
                v.jk[k] = spec->entity_columns[k]->name;
                v.jk_type[k] = spec->entity_columns[k]->value_type;
            }
            /* entity-less views keep the dummy entity as their only column */
            if (v.n_jk == 1 && !strcmp(v.jk[0], "__dummy_id"))
                v.n_jk = 0;
            for (size_t f = 0; f < v.n_feat; f++) {
                v.feat[f] = spec->features[f]->name;
                v.feat_type[f] = spec->features[f]->value_type;
                ld_murmur3_feature_field(spec->name, v.feat[f], v.fields[f]);
            }
            v.base_written = run.written;
            int64_t base_skipped = run.skipped;
            v.t0_us = t0;
            v.prog = (ol_mat_progress){
                    .view = spec->name, .view_index = i, .n_views = ns, .view_total = -1};
            int64_t vt0 = ld_mono_us();
            v.view_t0_us = vt0;
            v.first_batch_us = -1;
            rc = run_view(&v, fc, &rv, starts[i], req->end_us, st);
            ol_mat_view_result *vr = &res->views[res->n_views++];
            vr->name = strdup(spec->name);
            vr->start_us = starts[i];
            vr->end_us = req->end_us;
            vr->rows = run.written - v.base_written;
            vr->elapsed_us = ld_mono_us() - vt0;
            vr->first_batch_us = v.first_batch_us;
            vr->skipped = run.skipped - base_skipped;
            if (rc == 0)
                report(&v, 1);
        }
        ld_buf_free(&v.keybuf);
        free(v.jk);
        free(v.jk_type);
        free(v.feat);
        free(v.feat_type);
        free(v.fields);
    }
    res->rows = run.written;
    res->elapsed_us = ld_mono_us() - t0;
    pthread_mutex_destroy(&run.mu);
    pthread_cond_destroy(&run.cv);
    ol_flight_client_free(fc);
    free(starts);
    free(sel);
    free_views(&rv);
    if (res == &local)
        ol_mat_result_clear(&local);
    return rc;
}

/* ------------------------------------------------------------ HTTP jobs */

#include <jansson.h>

#define MAX_WORKERS 8

struct ol_mat_jobs {
    const ld_config *cfg;
    ol_store *store;
    /* Redis with Feast's default dedup: the store materialization writes
     * through, opened with skip_dedup (plain HSETs after a read of the stored
     * event times, lww_precheck) by the first run, freed with the jobs.
     * fast_cfg is a shallow copy of cfg (its strings stay cfg's). */
    pthread_mutex_t fast_mu;
    ld_config fast_cfg;
    ol_store *fast;
    int fast_failed;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int workers;
    int stopping;
    atomic_int cancel;
    char **running; /* views of async runs in progress (duplicates allowed) */
    size_t n_running, cap_running;
};

typedef struct mat_job {
    ol_mat_jobs *jobs;
    int incremental, async, force, disable_ts;
    int64_t start_us, end_us;
    char **views;
    size_t n_views;
    int views_given;
    ol_mat_http_done done;
    void *arg;
} mat_job;

ol_mat_jobs *ol_mat_jobs_new(const ld_config *cfg, ol_store *store, ld_status *st)
{
    ol_mat_jobs *j = calloc(1, sizeof *j);
    if (!j) {
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        return NULL;
    }
    j->cfg = cfg;
    j->store = store;
    pthread_mutex_init(&j->fast_mu, NULL);
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    atomic_init(&j->cancel, 0);
    return j;
}

void ol_mat_jobs_cancel(ol_mat_jobs *j)
{
    if (!j)
        return;
    pthread_mutex_lock(&j->mu);
    j->stopping = 1;
    atomic_store(&j->cancel, 1);
    pthread_mutex_unlock(&j->mu);
}

void ol_mat_jobs_free(ol_mat_jobs *j)
{
    if (!j)
        return;
    ol_mat_jobs_cancel(j);
    pthread_mutex_lock(&j->mu);
    while (j->workers > 0)
        pthread_cond_wait(&j->cv, &j->mu);
    pthread_mutex_unlock(&j->mu);
    for (size_t i = 0; i < j->n_running; i++)
        free(j->running[i]);
    free(j->running);
    if (j->fast)
        j->fast->ops->free(j->fast);
    pthread_mutex_destroy(&j->fast_mu);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
}

static void job_free(mat_job *job)
{
    ol_mat_names_free(job->views, job->n_views);
    free(job);
}

static void json_names(ld_buf *b, char *const *names, size_t n)
{
    ld_buf_putc(b, '[');
    for (size_t i = 0; i < n; i++) {
        if (i)
            ld_buf_puts(b, ", ");
        ld_buf_json_str(b, names[i], strlen(names[i]), 0);
    }
    ld_buf_putc(b, ']');
}

/* Under j->mu: the first of names an async run holds, or NULL. */
static const char *busy_view(ol_mat_jobs *j, char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < j->n_running; k++)
            if (!strcmp(names[i], j->running[k]))
                return names[i];
    return NULL;
}

static void running_add(ol_mat_jobs *j, char *const *names, size_t n)
{
    if (j->n_running + n > j->cap_running) {
        size_t cap = (j->n_running + n) * 2 + 4;
        char **r = realloc(j->running, cap * sizeof *r);
        if (!r)
            return;
        j->running = r;
        j->cap_running = cap;
    }
    for (size_t i = 0; i < n; i++)
        j->running[j->n_running++] = strdup(names[i]);
}

static void running_remove(ol_mat_jobs *j, char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < j->n_running; k++)
            if (j->running[k] && !strcmp(names[i], j->running[k])) {
                free(j->running[k]);
                j->running[k] = j->running[--j->n_running];
                break;
            }
}

/* The store a run writes through, and whether it must read the stored event
 * times first. Redis with Feast's default dedup: a store of its own with
 * skip_dedup, Feast's algorithm (HMGET "_ts:<view>", HSET the newer rows),
 * like the CLI; the serving store's atomic per-row script stays for Push
 * and WriteToOnlineStore. If that store cannot be built, the serving store
 * (atomic, slower) is used. */
static ol_store *job_store(ol_mat_jobs *j, int *precheck)
{
    *precheck = 0;
    const ld_online_store_config *os = &j->cfg->online_store;
    if (os->type != LD_ONLINE_REDIS || os->redis.skip_dedup)
        return j->store;
    pthread_mutex_lock(&j->fast_mu);
    if (!j->fast && !j->fast_failed) {
        ld_status st = LD_STATUS_INIT;
        j->fast_cfg = *j->cfg;
        j->fast_cfg.online_store.redis.skip_dedup = true;
        if (!(j->fast = ol_store_new(&j->fast_cfg, &st))) {
            j->fast_failed = 1;
            ld_warn("materialize: cannot open a second Redis store for materialization (%s); "
                    "writing through the serving store",
                    st.msg);
        }
    }
    ol_store *s = j->fast ? j->fast : j->store;
    pthread_mutex_unlock(&j->fast_mu);
    *precheck = s != j->store;
    return s;
}

static void *job_main(void *arg)
{
    mat_job *job = arg;
    ol_mat_jobs *j = job->jobs;
    ld_status st = LD_STATUS_INIT;
    ld_buf body = LD_BUF_INIT;
    ol_mat_request req = {.incremental = job->incremental,
                          .start_us = job->start_us,
                          .end_us = job->end_us,
                          .views = (const char *const *)job->views,
                          .n_views = job->views_given ? job->n_views : 0,
                          .disable_event_timestamp = job->disable_ts,
                          .cancel = &j->cancel};
    char **sel = NULL;
    size_t n_sel = 0;
    /* feature_views [] names no view (Feast iterates the empty list) */
    int none = job->views_given && job->n_views == 0;
    if (job->async && none) {
        ld_buf_puts(&body, "{\"status\": \"accepted\", \"feature_views\": []}");
        job->done(job->arg, 202, &body, &st);
        goto out;
    }
    if (!job->async && none) {
        ld_buf_puts(&body, "null");
        job->done(job->arg, 200, &body, &st);
        goto out;
    }
    if (job->async) {
        /* select now: the answer names the views, and the 409 rule needs them */
        if (ol_materialize_select(j->cfg, &req, &sel, &n_sel, &st) != 0) {
            job->done(job->arg, 0, &body, &st);
            goto out;
        }
        pthread_mutex_lock(&j->mu);
        const char *busy = job->force ? NULL : busy_view(j, sel, n_sel);
        if (busy) {
            ld_buf_puts(&body, "{\"error\": ");
            char msg[512];
            snprintf(msg, sizeof msg,
                     "Feature view %s is already being materialized; retry later or pass "
                     "force=true",
                     busy);
            ld_buf_json_str(&body, msg, strlen(msg), 0);
            ld_buf_puts(&body, ", \"feature_views\": ");
            json_names(&body, sel, n_sel);
            ld_buf_putc(&body, '}');
            pthread_mutex_unlock(&j->mu);
            job->done(job->arg, 409, &body, &st);
            goto out;
        }
        running_add(j, sel, n_sel);
        pthread_mutex_unlock(&j->mu);
        ld_buf_puts(&body, "{\"status\": \"accepted\", \"feature_views\": ");
        json_names(&body, sel, n_sel);
        ld_buf_putc(&body, '}');
        job->done(job->arg, 202, &body, &st);
        req.views = (const char *const *)sel;
        req.n_views = n_sel;
    }
    ol_mat_result res;
    ol_store *store = job_store(j, &req.lww_precheck);
    int rc = ol_materialize(j->cfg, store, &req, &res, &st);
    if (rc == 0)
        ld_info("materialize%s: %lld rows into %zu feature views in %.2f s",
                job->incremental ? "-incremental" : "", (long long)res.rows, res.n_views,
                (double)res.elapsed_us / 1e6);
    else
        ld_warn("materialize%s failed after %lld rows: %s", job->incremental ? "-incremental" : "",
                (long long)res.rows, st.msg);
    ol_mat_result_clear(&res);
    if (job->async) {
        pthread_mutex_lock(&j->mu);
        running_remove(j, sel, n_sel);
        pthread_mutex_unlock(&j->mu);
    } else {
        if (rc == 0)
            ld_buf_puts(&body, "null");
        job->done(job->arg, 200, &body, &st);
    }
out:
    ld_buf_free(&body);
    ol_mat_names_free(sel, n_sel);
    job_free(job);
    pthread_mutex_lock(&j->mu);
    j->workers--;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

/* FastAPI's 422 body for one field. */
static void detail_422(ld_buf *out, const char *type, const char *field, const char *msg,
                       json_t *input)
{
    ld_buf_reset(out);
    ld_buf_printf(out, "{\"detail\":[{\"type\":\"%s\",\"loc\":[\"body\"", type);
    if (field) {
        ld_buf_putc(out, ',');
        ld_buf_json_str(out, field, strlen(field), 0);
    }
    ld_buf_puts(out, "],\"msg\":");
    ld_buf_json_str(out, msg, strlen(msg), 0);
    if (input) {
        char *s = json_dumps(input, JSON_COMPACT | JSON_ENCODE_ANY);
        if (s) {
            ld_buf_puts(out, ",\"input\":");
            ld_buf_puts(out, s);
            free(s);
        }
    }
    ld_buf_puts(out, "}]}");
}

int ol_mat_jobs_http(ol_mat_jobs *j, int incremental, const char *body, size_t len, int async,
                     int force, ol_mat_http_done done, void *arg, int *code, ld_buf *resp,
                     ld_status *st)
{
    json_error_t err;
    json_t *doc = json_loadb(body ? body : "", len, JSON_DECODE_ANY, &err);
    *code = 422;
    if (!doc) {
        ld_buf_reset(resp);
        ld_buf_puts(resp, "{\"detail\":[{\"type\":\"json_invalid\",\"loc\":[\"body\",0],"
                          "\"msg\":\"JSON decode error\",\"input\":{},\"ctx\":{\"error\":");
        ld_buf_json_str(resp, err.text, strlen(err.text), 0);
        ld_buf_puts(resp, "}}]}");
        return -1;
    }
    mat_job *job = NULL;
    int rc = -1;
    if (!json_is_object(doc)) {
        detail_422(resp, "model_attributes_type", NULL,
                   "Input should be a valid dictionary or object to extract fields from", doc);
        goto out;
    }
    const char *keys[2] = {incremental ? NULL : "start_ts", "end_ts"};
    int64_t ts[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        if (!keys[k])
            continue;
        json_t *v = json_object_get(doc, keys[k]);
        if (!v) {
            detail_422(resp, "missing", keys[k], "Field required", doc);
            goto out;
        }
        if (!json_is_string(v)) {
            detail_422(resp, "string_type", keys[k], "Input should be a valid string", v);
            goto out;
        }
        if (ld_time_parse_iso8601(json_string_value(v), &ts[k]) != 0) {
            ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                          "%s: '%s' is not an ISO 8601 timestamp", keys[k], json_string_value(v));
            goto out;
        }
    }
    json_t *fvs = json_object_get(doc, "feature_views");
    if (fvs && !json_is_null(fvs) && !json_is_array(fvs)) {
        detail_422(resp, "list_type", "feature_views", "Input should be a valid list", fvs);
        goto out;
    }
    json_t *det = json_object_get(doc, "disable_event_timestamp");
    if (det && !json_is_boolean(det)) {
        detail_422(resp, "bool_type", "disable_event_timestamp", "Input should be a valid boolean",
                   det);
        goto out;
    }
    job = calloc(1, sizeof *job);
    size_t nv = json_is_array(fvs) ? json_array_size(fvs) : 0;
    if (!job || !(job->views = calloc(nv + 1, sizeof *job->views))) {
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < nv; i++) {
        json_t *v = json_array_get(fvs, i);
        if (!json_is_string(v)) {
            detail_422(resp, "string_type", "feature_views", "Input should be a valid string", v);
            goto out;
        }
        job->views[job->n_views++] = strdup(json_string_value(v));
    }
    job->jobs = j;
    job->incremental = incremental;
    job->async = async;
    job->force = force;
    job->views_given = fvs && !json_is_null(fvs);
    job->start_us = ts[0];
    job->end_us = ts[1];
    job->disable_ts = det && json_is_true(det);
    if (job->disable_ts && !incremental) {
        job->start_us = 0;
        job->end_us = ld_wall_us();
    }
    job->done = done;
    job->arg = arg;
    pthread_mutex_lock(&j->mu);
    int ok = !j->stopping && j->workers < MAX_WORKERS;
    if (ok)
        j->workers++;
    pthread_mutex_unlock(&j->mu);
    if (!ok) {
        ld_status_set(st, GRPC_STATUS_UNAVAILABLE, NULL,
                      "too many materializations are running (or the server is stopping)");
        goto out;
    }
    pthread_t t;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &at, job_main, job) != 0) {
        pthread_attr_destroy(&at);
        pthread_mutex_lock(&j->mu);
        j->workers--;
        pthread_cond_broadcast(&j->cv);
        pthread_mutex_unlock(&j->mu);
        ld_status_set(st, GRPC_STATUS_UNAVAILABLE, NULL, "cannot start a materialization thread");
        goto out;
    }
    pthread_attr_destroy(&at);
    job = NULL;
    rc = 0;
out:
    if (job)
        job_free(job);
    json_decref(doc);
    return rc;
}
