#include "ol_grpc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "feast/serving/GrpcServer.pb-c.h"
#include "feast/serving/ServingService.pb-c.h"
#include "ld_buf.h"
#include "ld_pb.h"
#include "ld_value.h"

#ifndef LARDER_VERSION
#define LARDER_VERSION "0.1.0"
#endif

#define CORE(c) ((ol_server *)ld_call_ctx(c))

/* ------------------------------------------------------------ encoding */

/* GetOnlineFeaturesResponse{metadata = 1 {feature_names = 1 {val = 1}},
 * results = 2 [FeatureVector{values = 1, statuses = 2 (packed),
 * event_timestamps = 3}]}, written from the stored Value bytes. The size is
 * computed first, then everything is written into one exact buffer. */

static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
    return p + ld_pb_put_varint(p, v);
}

/* length-delimited field header: tag (field < 16: one byte) and length */
static uint8_t *put_tag_len(uint8_t *p, int field, size_t len)
{
    *p++ = (uint8_t)((field << 3) | 2);
    return put_varint(p, len);
}

static inline uint8_t *put_bytes(uint8_t *p, const uint8_t *src, size_t n)
{
    ld_copy_small(p, src, n);
    return p + n;
}

static size_t ld_len(size_t len)
{
    return 1 + varint_len(len) + len;
}

/* google.protobuf.Timestamp of `us` (0: the empty message) */
typedef struct ts_enc {
    uint8_t b[24];
    size_t n;
} ts_enc;

static void ts_encode(int64_t us, ts_enc *t)
{
    t->n = 0;
    if (!us)
        return;
    int64_t s = us / 1000000, ns = (us % 1000000) * 1000;
    if (ns < 0) {
        ns += 1000000000;
        s -= 1;
    }
    uint8_t *p = t->b;
    if (s) {
        *p++ = 1 << 3;
        p = put_varint(p, (uint64_t)s);
    }
    if (ns) {
        *p++ = 2 << 3;
        p = put_varint(p, (uint64_t)ns);
    }
    t->n = (size_t)(p - t->b);
}

/* A column's event times as encoded: columns sharing one ts_us array
 * (ol_request.h) encode it once, into `runs_buf`, and copy it. */
typedef struct ts_run {
    const int64_t *ts_us;
    size_t off, size; /* in runs_buf */
} ts_run;

#define TS_RUN_SEARCH 16 /* runs searched back for a shared array */

/* Append the encoded event times of rows [0, n) to b: per row a tag, a
 * length (< 128) and the Timestamp; equal neighbours encode once. */
static void ts_run_encode(ld_buf *b, const int64_t *us, size_t n)
{
    ts_enc e = {.n = 0};
    int64_t last = 0; /* e holds the encoding of `last` (0: empty) */
    uint8_t *p = (uint8_t *)ld_buf_reserve(b, n * (2 + sizeof e.b)), *p0 = p;
    for (size_t i = 0; i < n; i++) {
        if (us[i] != last) {
            last = us[i];
            ts_encode(last, &e);
        }
        p[0] = (3 << 3) | 2;
        p[1] = (uint8_t)e.n; /* at most 22 bytes */
        p = put_bytes(p + 2, e.b, e.n);
    }
    b->len += (size_t)(p - p0);
}

static uint8_t *encode_response(const ol_get_response *r, size_t *out_len)
{
    size_t names = 0;
    for (size_t c = 0; c < r->n_cols; c++)
        names += ld_len(strlen(r->cols[c].name));
    size_t total = ld_len(ld_len(names));
    size_t *body = malloc((r->n_cols + 1) * sizeof *body);
    size_t *run_of = malloc((r->n_cols + 1) * sizeof *run_of);
    ts_run *runs = malloc((r->n_cols + 1) * sizeof *runs);
    ld_buf runs_buf = LD_BUF_INIT;
    uint8_t *buf = NULL;
    if (!body || !run_of || !runs)
        goto out;
    size_t n_runs = 0;
    /* Per cell: a value (tag, length, bytes), a status (one byte: the codes
     * are 0..4), a Timestamp (from its run). Lengths under 128 take one
     * byte, the common case, which both loops write directly. */
    for (size_t c = 0; c < r->n_cols; c++) {
        const ol_column_out *col = &r->cols[c];
        size_t b = 0;
        for (size_t i = 0; i < r->n_rows; i++) {
            size_t vl = col->val[i] ? col->val_len[i] : 0;
            b += vl < 128 ? 2 + vl : ld_len(vl);
        }
        if (r->n_rows)
            b += ld_len(r->n_rows); /* the packed statuses, a byte each */
        size_t k = n_runs;
        for (size_t j = n_runs; j > 0 && n_runs - j < TS_RUN_SEARCH; j--)
            if (runs[j - 1].ts_us == col->ts_us) {
                k = j - 1;
                break;
            }
        if (k == n_runs) {
            size_t off = runs_buf.len;
            ts_run_encode(&runs_buf, col->ts_us, r->n_rows);
            runs[n_runs++] = (ts_run){col->ts_us, off, runs_buf.len - off};
        }
        run_of[c] = k;
        b += runs[k].size;
        body[c] = b;
        total += ld_len(b);
    }
    uint8_t *p = buf = malloc(total ? total : 1);
    if (!buf)
        goto out;
    p = put_tag_len(p, 1, ld_len(names));
    p = put_tag_len(p, 1, names);
    for (size_t c = 0; c < r->n_cols; c++) {
        size_t l = strlen(r->cols[c].name);
        p = put_tag_len(p, 1, l);
        memcpy(p, r->cols[c].name, l);
        p += l;
    }
    for (size_t c = 0; c < r->n_cols; c++) {
        const ol_column_out *col = &r->cols[c];
        p = put_tag_len(p, 2, body[c]);
        for (size_t i = 0; i < r->n_rows; i++) {
            size_t vl = col->val[i] ? col->val_len[i] : 0;
            if (vl < 128) {
                p[0] = (1 << 3) | 2;
                p[1] = (uint8_t)vl;
                p += 2;
            } else {
                p = put_tag_len(p, 1, vl);
            }
            p = put_bytes(p, col->val[i], vl);
        }
        if (r->n_rows) {
            p = put_tag_len(p, 2, r->n_rows);
            for (size_t i = 0; i < r->n_rows; i++)
                *p++ = col->status[i]; /* 0..4: a one-byte varint */
        }
        const ts_run *run = &runs[run_of[c]];
        if (run->size)
            p = put_bytes(p, (const uint8_t *)runs_buf.data + run->off, run->size);
    }
    *out_len = (size_t)(p - buf);
out:
    free(body);
    free(run_of);
    free(runs);
    ld_buf_free(&runs_buf);
    return buf;
}

static void reply_get(ld_call *c, void *arg)
{
    const ol_get_response *resp = arg;
    size_t len = 0;
    uint8_t *data = encode_response(resp, &len);
    ol_get_response_release(resp);
    if (!data) {
        ld_call_failf(c, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        return;
    }
    ld_call_reply_take(c, data, len);
}

/* The store's thread (or the worker, for a read that needed no store):
 * encode and reply where ld_call_handoff says, the worker when it is busy. */
static void get_done(void *arg, const ol_get_response *resp, const ld_status *st)
{
    ld_call *c = arg;
    if (st) {
        ld_call_fail(c, st);
        return;
    }
    ld_call_handoff(c, reply_get, (void *)resp);
}

static ol_column_in *
columns_from_map(ld_arena *a, Feast__Serving__GetOnlineFeaturesRequest__EntitiesEntry **e, size_t n)
{
    ol_column_in *cols = ld_arena_calloc(a, n + 1, sizeof *cols);
    for (size_t i = 0; cols && i < n; i++) {
        cols[i].name = e[i]->key;
        cols[i].values = e[i]->value ? e[i]->value->val : NULL;
        cols[i].n = e[i]->value ? e[i]->value->n_val : 0;
    }
    return cols;
}

/* The store sends the request's commands once this worker has handled the
 * requests already waiting for it (ld_call_defer). */
static int defer_on_worker(void *ctx, void (*fn)(void *obj), void *obj)
{
    return ld_call_defer(ctx, fn, obj);
}

static void h_get_online_features(ld_call *c, const ProtobufCMessage *msg)
{
    const Feast__Serving__GetOnlineFeaturesRequest *r = (const void *)msg;
    ld_arena *a = ld_call_arena(c);
    ol_get_request req = {0};
    if (r->kind_case == FEAST__SERVING__GET_ONLINE_FEATURES_REQUEST__KIND_FEATURE_SERVICE)
        req.feature_service = r->feature_service;
    else if (r->kind_case == FEAST__SERVING__GET_ONLINE_FEATURES_REQUEST__KIND_FEATURES &&
             r->features) {
        req.features = (const char *const *)r->features->val;
        req.n_features = r->features->n_val;
    }
    req.entities = columns_from_map(a, r->entities, r->n_entities);
    req.n_entities = r->n_entities;
    /* request_context entries have the same shape as entities */
    req.request_context = columns_from_map(
            a, (Feast__Serving__GetOnlineFeaturesRequest__EntitiesEntry **)r->request_context,
            r->n_request_context);
    req.n_request_context = r->n_request_context;
    req.full_feature_names = r->full_feature_names;
    if (!req.entities || !req.request_context) {
        ld_call_failf(c, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "request too large");
        return;
    }
    ld_status st = LD_STATUS_INIT;
    ol_defer defer = {.defer = defer_on_worker, .ctx = c};
    if (ol_serve_get(CORE(c), &req, a, ld_call_deadline_us(c), &defer, get_done, c, &st) != 0)
        ld_call_fail(c, &st);
}

static void h_serving_info(ld_call *c, const ProtobufCMessage *msg)
{
    Feast__Serving__GetFeastServingInfoResponse resp =
            FEAST__SERVING__GET_FEAST_SERVING_INFO_RESPONSE__INIT;
    resp.version = "larder-" LARDER_VERSION;
    ld_call_reply(c, &resp.base);
}

/* ------------------------------------------------------------ writes */

static void write_done(void *arg, const ld_status *st)
{
    ld_call *c = arg;
    if (st) {
        ld_call_fail(c, st);
        return;
    }
    /* PushResponse / WriteToOnlineStoreResponse: {status = 1: true} */
    static const uint8_t ok[] = {0x08, 0x01};
    ld_call_reply_copy(c, ok, sizeof ok);
}

/* The map entries of PushRequest and WriteToOnlineStoreRequest: protoc-c
 * generates one struct per map, all of these two shapes. */
typedef struct str_entry {
    ProtobufCMessage base;
    char *key;
    char *value;
} str_entry;

typedef struct typed_entry {
    ProtobufCMessage base;
    char *key;
    Feast__Types__Value *value;
} typed_entry;

/* One row from a string map or a typed map (not both), as Feast does. */
static int one_row(ld_arena *a, str_entry *const *strs, size_t n_str, typed_entry *const *typed,
                   size_t n_typed, ol_write_request *req, ld_status *st)
{
    if (n_str && n_typed)
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "set either features or typed_features, not both");
    size_t n = n_str ? n_str : n_typed;
    ol_column_in *c = ld_arena_calloc(a, n + 1, sizeof *c);
    Feast__Types__Value **v = ld_arena_calloc(a, n + 1, sizeof *v);
    if (!c || !v)
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "request too large");
    for (size_t i = 0; i < n; i++) {
        if (n_str) {
            c[i].name = strs[i]->key;
            v[i] = ld_value_string(a, strs[i]->value, strlen(strs[i]->value));
            if (!v[i])
                return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "request too large");
        } else {
            c[i].name = typed[i]->key;
            v[i] = typed[i]->value;
        }
        c[i].values = &v[i];
        c[i].n = 1;
    }
    req->columns = c;
    req->n_columns = n;
    return 0;
}

static void submit_write(ld_call *c, ol_write_request *req, str_entry *const *strs, size_t n_str,
                         typed_entry *const *typed, size_t n_typed)
{
    ld_status st = LD_STATUS_INIT;
    ld_arena *a = ld_call_arena(c);
    if (one_row(a, strs, n_str, typed, n_typed, req, &st) != 0 ||
        ol_serve_write(CORE(c), req, a, ld_call_deadline_us(c), write_done, c, &st) != 0)
        ld_call_fail(c, &st);
}

static void h_push(ld_call *c, const ProtobufCMessage *msg)
{
    const PushRequest *r = (const void *)msg;
    ol_write_request req = {0};
    req.push_source_name = r->stream_feature_view;
    req.allow_registry_cache = r->allow_registry_cache;
    const char *to = *r->to ? r->to : "online";
    if (!strcmp(to, "online")) {
        req.to_online = 1;
    } else if (!strcmp(to, "offline")) {
        req.to_offline = 1;
    } else if (!strcmp(to, "online_and_offline")) {
        req.to_online = req.to_offline = 1;
    } else {
        ld_call_failf(c, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                      "to must be online, offline or online_and_offline, not '%s'", r->to);
        return;
    }
    submit_write(c, &req, (str_entry *const *)r->features, r->n_features,
                 (typed_entry *const *)r->typed_features, r->n_typed_features);
}

static void h_write(ld_call *c, const ProtobufCMessage *msg)
{
    const WriteToOnlineStoreRequest *r = (const void *)msg;
    ol_write_request req = {0};
    req.feature_view_name = r->feature_view_name;
    req.allow_registry_cache = r->allow_registry_cache;
    req.to_online = 1;
    if (!*r->feature_view_name) {
        ld_call_failf(c, GRPC_STATUS_INVALID_ARGUMENT, NULL, "feature_view_name is empty");
        return;
    }
    submit_write(c, &req, (str_entry *const *)r->features, r->n_features,
                 (typed_entry *const *)r->typed_features, r->n_typed_features);
}

int ol_grpc_register(ld_server *srv, ol_server *core, ld_status *st)
{
    static const ld_method methods[] = {
            {.name = "/feast.serving.ServingService/GetFeastServingInfo",
             .kind = LD_RPC_UNARY,
             .request = &feast__serving__get_feast_serving_info_request__descriptor,
             .handler = h_serving_info},
            {.name = "/feast.serving.ServingService/GetOnlineFeatures",
             .kind = LD_RPC_UNARY,
             .request = &feast__serving__get_online_features_request__descriptor,
             .handler = h_get_online_features,
             .prepost = 64},
            {.name = "/GrpcFeatureServer/GetOnlineFeatures",
             .kind = LD_RPC_UNARY,
             .request = &feast__serving__get_online_features_request__descriptor,
             .handler = h_get_online_features,
             .prepost = 32},
            {.name = "/GrpcFeatureServer/Push",
             .kind = LD_RPC_UNARY,
             .request = &push_request__descriptor,
             .handler = h_push},
            {.name = "/GrpcFeatureServer/WriteToOnlineStore",
             .kind = LD_RPC_UNARY,
             .request = &write_to_online_store_request__descriptor,
             .handler = h_write},
    };
    return ld_server_add_methods(srv, methods, sizeof methods / sizeof methods[0], core, st);
}
