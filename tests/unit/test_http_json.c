/* The HTTP/JSON front end of larder-online (ol_http + ol_json) in-process:
 * a real evhttp server on a loopback port, raw-socket clients, and a fake
 * ol_serve defined below (test scaffolding only; the real serving core is
 * covered by the integration tests). */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "ld_log.h"
#include "ld_test.h"
#include "ld_time.h"
#include "ld_value.h"
#include "ol_http.h"
#include "ol_json.h"
#include "ol_serve.h"

#define VC(x) FEAST__TYPES__VALUE__VAL_##x

/*==== A fake ol_serve ====*/

typedef int (*fake_build_fn)(const ol_get_request *req, ld_arena *a, ol_get_response *resp);

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int healthy;
    int delay_ms;        /* > 0: done from another thread after this long */
    ld_status refuse;    /* set: ol_serve_* refuses at once */
    ld_status fail;      /* set: done reports this error */
    fake_build_fn build; /* get: builds the response */
    int threads_running; /* deferred completions not yet finished */
    int calls;           /* ol_serve_get/write calls */
    char last[4096];     /* a dump of the last request */
} fake = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER};

typedef struct deferred {
    int delay_ms;
    ol_get_done get_done;
    ol_write_done write_done;
    void *arg;
    const ol_get_response *resp;
    ld_status st;
} deferred;

static void run_deferred(deferred *d)
{
    if (d->get_done)
        d->get_done(d->arg, d->resp, &d->st);
    else
        d->write_done(d->arg, &d->st);
}

static void *deferred_main(void *arg)
{
    deferred *d = arg;
    usleep((useconds_t)d->delay_ms * 1000);
    run_deferred(d);
    free(d);
    pthread_mutex_lock(&fake.mu);
    fake.threads_running--;
    pthread_cond_broadcast(&fake.cv);
    pthread_mutex_unlock(&fake.mu);
    return NULL;
}

static void complete(deferred *d)
{
    if (d->delay_ms <= 0) { /* at once, before ol_serve_* returns */
        run_deferred(d);
        free(d);
        return;
    }
    pthread_t t;
    pthread_mutex_lock(&fake.mu);
    fake.threads_running++;
    pthread_mutex_unlock(&fake.mu);
    pthread_create(&t, NULL, deferred_main, d);
    pthread_detach(t);
}

static void wait_deferred(void)
{
    pthread_mutex_lock(&fake.mu);
    while (fake.threads_running)
        pthread_cond_wait(&fake.cv, &fake.mu);
    pthread_mutex_unlock(&fake.mu);
}

static void dump_columns(ld_buf *b, const char *what, const ol_column_in *c, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        ld_buf_printf(b, " %s:%s:%zu[", what, c[i].name, c[i].n);
        for (size_t r = 0; r < c[i].n; r++) {
            const Feast__Types__Value *v = c[i].values[r];
            ld_buf_printf(b, "%s%s", r ? "," : "", ld_value_type_name(ld_value_case_of(v)));
            if (r && v == c[i].values[r - 1])
                ld_buf_puts(b, "=");
        }
        ld_buf_putc(b, ']');
    }
}

static void record(const char *what, ld_buf *b)
{
    pthread_mutex_lock(&fake.mu);
    snprintf(fake.last, sizeof fake.last, "%s%s", what, b->data ? b->data : "");
    fake.calls++;
    pthread_mutex_unlock(&fake.mu);
    ld_buf_free(b);
}

int ol_serve_get(ol_server *s, const ol_get_request *req, ld_arena *a, int64_t deadline_us,
                 const ol_defer *defer, ol_get_done done, void *arg, ld_status *st)
{
    (void)s;
    (void)defer;
    ld_buf b = LD_BUF_INIT;
    ld_buf_printf(&b, " fs=%s ffn=%d feats=", req->feature_service ? req->feature_service : "-",
                  req->full_feature_names);
    for (size_t i = 0; i < req->n_features; i++)
        ld_buf_printf(&b, "%s%s", i ? "," : "", req->features[i]);
    dump_columns(&b, "ent", req->entities, req->n_entities);
    dump_columns(&b, "ctx", req->request_context, req->n_request_context);
    ld_buf_printf(&b, " deadline_ok=%d", deadline_us > ld_mono_us());
    record("get", &b);
    if (!ld_status_ok(&fake.refuse)) {
        *st = fake.refuse;
        return -1;
    }
    deferred *d = calloc(1, sizeof *d);
    d->delay_ms = fake.delay_ms;
    d->get_done = done;
    d->arg = arg;
    d->st = fake.fail;
    if (ld_status_ok(&fake.fail)) {
        ol_get_response *resp = ld_arena_calloc(a, 1, sizeof *resp);
        if (fake.build(req, a, resp) != 0)
            ld_status_set(&d->st, GRPC_STATUS_INTERNAL, NULL, "fixture failed");
        d->resp = resp;
    }
    complete(d);
    return 0;
}

int ol_serve_write(ol_server *s, const ol_write_request *req, ld_arena *a, int64_t deadline_us,
                   ol_write_done done, void *arg, ld_status *st)
{
    (void)s;
    (void)a;
    (void)deadline_us;
    ld_buf b = LD_BUF_INIT;
    ld_buf_printf(&b, " fv=%s push=%s to=%d%d cache=%d",
                  req->feature_view_name ? req->feature_view_name : "-",
                  req->push_source_name ? req->push_source_name : "-", req->to_online,
                  req->to_offline, req->allow_registry_cache);
    dump_columns(&b, "col", req->columns, req->n_columns);
    record("write", &b);
    if (!ld_status_ok(&fake.refuse)) {
        *st = fake.refuse;
        return -1;
    }
    deferred *d = calloc(1, sizeof *d);
    d->delay_ms = fake.delay_ms;
    d->write_done = done;
    d->arg = arg;
    d->st = fake.fail;
    complete(d);
    return 0;
}

int ol_serve_healthy(ol_server *s)
{
    (void)s;
    return fake.healthy;
}

void ol_get_response_release(const ol_get_response *r)
{
    (void)r; /* the fixtures' responses live in the call's arena only */
}

/*==== Response fixtures ====*/

static void pack(ld_arena *a, const Feast__Types__Value *v, const uint8_t **p, size_t *n)
{
    if (!v) {
        *p = NULL;
        *n = 0;
        return;
    }
    *n = feast__types__value__get_packed_size(v);
    uint8_t *buf = ld_arena_alloc(a, *n + 1);
    feast__types__value__pack(v, buf);
    *p = buf;
}

static ol_column_out *new_cols(ld_arena *a, size_t n_cols, size_t rows)
{
    ol_column_out *c = ld_arena_calloc(a, n_cols, sizeof *c);
    for (size_t i = 0; i < n_cols; i++) {
        c[i].val = ld_arena_calloc(a, rows + 1, sizeof *c[i].val);
        c[i].val_len = ld_arena_calloc(a, rows + 1, sizeof *c[i].val_len);
        c[i].status = ld_arena_calloc(a, rows + 1, 1);
        c[i].ts_us = ld_arena_calloc(a, rows + 1, sizeof *c[i].ts_us);
    }
    return c;
}

#define TS_2021_12_31_23H (1640991600LL * 1000000)

/* The example of feast-protocols.md §1.2.2: driver 1001 has both features,
 * 9999 is absent (SQLite/Postgres behaviour). */
static int build_driver_stats(const ol_get_request *req, ld_arena *a, ol_get_response *resp)
{
    size_t rows = req->entities[0].n;
    size_t n_cols = 1 + req->n_features;
    ol_column_out *c = new_cols(a, n_cols, rows);
    c[0].name = req->entities[0].name;
    for (size_t r = 0; r < rows; r++) {
        pack(a, req->entities[0].values[r], &c[0].val[r], &c[0].val_len[r]);
        c[0].status[r] = OL_PRESENT;
    }
    for (size_t f = 0; f < req->n_features; f++) {
        const char *name = strchr(req->features[f], ':') + 1;
        c[1 + f].name = name;
        for (size_t r = 0; r < rows; r++) {
            const Feast__Types__Value *e = req->entities[0].values[r];
            Feast__Types__Value *v = NULL;
            if (e->int64_val == 1001 && strcmp(name, "conv_rate") == 0)
                v = ld_value_float(a, 0.7037263512611389f);
            else if (e->int64_val == 1001 && strcmp(name, "avg_daily_trips") == 0)
                v = ld_value_int64(a, 308);
            pack(a, v, &c[1 + f].val[r], &c[1 + f].val_len[r]);
            c[1 + f].status[r] = v ? OL_PRESENT : OL_NOT_FOUND;
            c[1 + f].ts_us[r] = v ? TS_2021_12_31_23H : 0;
        }
    }
    resp->cols = c;
    resp->n_cols = n_cols;
    resp->n_rows = rows;
    return 0;
}

/* One row, one column per value type. */
static int build_all_types(const ol_get_request *req, ld_arena *a, ol_get_response *resp)
{
    (void)req;
    static const int32_t i32[] = {1, -2};
    static const int64_t i64[] = {INT64_MIN, INT64_MAX};
    static const double dbl[] = {1.5, -0.0, 1e16};
    static const float flt[] = {0.1f};
    static const protobuf_c_boolean bl[] = {1, 0};
    static const char *const strs[] = {"a", "é\"\n"};
    ProtobufCBinaryData bins[] = {{1, (uint8_t *)"\x01"}, {0, NULL}};
    Feast__Types__Value *v[] = {
            ld_value_int32(a, -5),
            ld_value_int64(a, -9007199254740993LL),
            ld_value_double(a, 0.1),
            ld_value_float(a, 0.1f),
            ld_value_bool(a, 1),
            ld_value_string(a, "日本 \"q\"\\", strlen("日本 \"q\"\\")),
            ld_value_bytes(a, "\x00\xff", 2),
            ld_value_unix_ts(a, 1640991600),
            ld_value_int32_list(a, i32, 2),
            ld_value_int64_list(a, i64, 2),
            ld_value_double_list(a, dbl, 3),
            ld_value_float_list(a, flt, 1),
            ld_value_bool_list(a, bl, 2),
            ld_value_string_list(a, strs, 2),
            ld_value_bytes_list(a, bins, 2),
            ld_value_unix_ts_list(a, i64 + 1, 1),
            ld_value_null(a),
            NULL,
    };
    size_t n = sizeof v / sizeof v[0];
    ol_column_out *c = new_cols(a, n, 1);
    for (size_t i = 0; i < n; i++) {
        c[i].name = ld_arena_sprintf(a, "f%zu", i);
        pack(a, v[i], &c[i].val[0], &c[i].val_len[0]);
        c[i].status[0] = (uint8_t)(i % 5);
        c[i].ts_us[0] = (int64_t)i * 1000;
    }
    resp->cols = c;
    resp->n_cols = n;
    resp->n_rows = 1;
    return 0;
}

static int build_nan(const ol_get_request *req, ld_arena *a, ol_get_response *resp)
{
    (void)req;
    ol_column_out *c = new_cols(a, 1, 1);
    c[0].name = "x";
    pack(a, ld_value_double(a, NAN), &c[0].val[0], &c[0].val_len[0]);
    c[0].status[0] = OL_PRESENT;
    resp->cols = c;
    resp->n_cols = 1;
    resp->n_rows = 1;
    return 0;
}

static void fake_reset(void)
{
    wait_deferred();
    pthread_mutex_lock(&fake.mu);
    fake.healthy = 1;
    fake.delay_ms = 0;
    ld_status_clear(&fake.refuse);
    ld_status_clear(&fake.fail);
    fake.build = build_driver_stats;
    fake.last[0] = '\0';
    fake.calls = 0;
    pthread_mutex_unlock(&fake.mu);
}

/*==== A raw HTTP/1.1 client ====*/

typedef struct resp {
    int status;
    char head[4096];
    char *body;
    size_t body_len;
} resp;

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k <= 0)
            return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* ctype NULL: no Content-Type; body NULL: no body. */
static int send_req(int fd, const char *method, const char *path, const char *ctype,
                    const char *body, size_t body_len)
{
    ld_buf b = LD_BUF_INIT;
    ld_buf_printf(&b, "%s %s HTTP/1.1\r\nHost: test\r\n", method, path);
    if (ctype)
        ld_buf_printf(&b, "Content-Type: %s\r\n", ctype);
    if (body)
        ld_buf_printf(&b, "Content-Length: %zu\r\n", body_len);
    ld_buf_puts(&b, "\r\n");
    if (body)
        ld_buf_append(&b, body, body_len);
    int rc = send_all(fd, b.data, b.len);
    ld_buf_free(&b);
    return rc;
}

static const char *header(const resp *r, const char *name)
{
    static __thread char val[256];
    size_t n = strlen(name);
    for (const char *p = strstr(r->head, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, name, n) == 0 && p[2 + n] == ':') {
            const char *v = p + 3 + n;
            while (*v == ' ')
                v++;
            size_t k = strcspn(v, "\r");
            snprintf(val, sizeof val, "%.*s", (int)k, v);
            return val;
        }
    }
    return NULL;
}

/* Read one response (Content-Length framed). 0, or -1 on EOF / timeout. */
static int recv_resp(int fd, resp *r)
{
    memset(r, 0, sizeof *r);
    size_t hl = 0;
    while (hl < sizeof r->head - 1) {
        ssize_t k = recv(fd, r->head + hl, 1, 0);
        if (k <= 0)
            return -1;
        hl++;
        if (hl >= 4 && memcmp(r->head + hl - 4, "\r\n\r\n", 4) == 0)
            break;
    }
    r->head[hl] = '\0';
    if (sscanf(r->head, "HTTP/1.%*d %d", &r->status) != 1)
        return -1;
    const char *cl = header(r, "Content-Length");
    r->body_len = cl ? (size_t)strtoull(cl, NULL, 10) : 0;
    r->body = calloc(1, r->body_len + 1);
    for (size_t got = 0; got < r->body_len;) {
        ssize_t k = recv(fd, r->body + got, r->body_len - got, 0);
        if (k <= 0)
            return -1;
        got += (size_t)k;
    }
    return 0;
}

static void resp_free(resp *r)
{
    free(r->body);
    r->body = NULL;
}

/* One request on a fresh connection. */
static int roundtrip(int port, const char *method, const char *path, const char *ctype,
                     const char *body, resp *r)
{
    int fd = dial(port);
    if (fd < 0)
        return -1;
    int rc = send_req(fd, method, path, ctype, body, body ? strlen(body) : 0);
    if (rc == 0)
        rc = recv_resp(fd, r);
    close(fd);
    return rc;
}

static int post(int port, const char *path, const char *body, resp *r)
{
    return roundtrip(port, "POST", path, "application/json", body, r);
}

static ol_http *start(const ol_http_opts *o, int *port)
{
    ld_status st = LD_STATUS_INIT;
    ol_http *h = ol_http_new(NULL, "127.0.0.1", 0, o, &st);
    if (!h) {
        printf("# ol_http_new: %s\n", st.msg);
        return NULL;
    }
    *port = ol_http_port(h);
    return h;
}

#define CHECK_BODY(r, expect) LD_CHECK_STR((r).body ? (r).body : "(none)", expect)

/*==== Tests ====*/

static const char DRIVER_REQ[] =
        "{\"features\":[\"driver_hourly_stats:conv_rate\",\"driver_hourly_stats:avg_daily_trips\"],"
        "\"entities\":{\"driver_id\":[1001,9999]}}";

static const char DRIVER_RESP[] =
        "{\"results\":[{\"values\":[1001,9999],\"statuses\":[\"PRESENT\",\"PRESENT\"],"
        "\"event_timestamps\":[\"1970-01-01T00:00:00Z\",\"1970-01-01T00:00:00Z\"]},"
        "{\"values\":[0.7037263512611389,null],\"statuses\":[\"PRESENT\",\"NOT_FOUND\"],"
        "\"event_timestamps\":[\"2021-12-31T23:00:00Z\",\"1970-01-01T00:00:00Z\"]},"
        "{\"values\":[308,null],\"statuses\":[\"PRESENT\",\"NOT_FOUND\"],"
        "\"event_timestamps\":[\"2021-12-31T23:00:00Z\",\"1970-01-01T00:00:00Z\"]}],"
        "\"metadata\":{\"feature_names\":[\"driver_id\",\"conv_rate\",\"avg_daily_trips\"]}}";

LD_TEST(get_online_features_exact_bytes)
{
    fake_reset();
    int port;
    ol_http *h = start(NULL, &port);
    LD_CHECK(h != NULL);
    if (!h)
        return;
    resp r;
    LD_CHECK_INT(post(port, "/get-online-features", DRIVER_REQ, &r), 0);
    LD_CHECK_INT(r.status, 200);
    CHECK_BODY(r, DRIVER_RESP);
    LD_CHECK_STR(header(&r, "Content-Type"), "application/json");
    LD_CHECK_STR(fake.last,
                 "get fs=- ffn=0 feats=driver_hourly_stats:conv_rate,"
                 "driver_hourly_stats:avg_daily_trips ent:driver_id:2[INT64,INT64] deadline_ok=1");
    resp_free(&r);

    /* the same answer when done comes later from another thread */
    fake.delay_ms = 50;
    LD_CHECK_INT(post(port, "/get-online-features", DRIVER_REQ, &r), 0);
    LD_CHECK_INT(r.status, 200);
    CHECK_BODY(r, DRIVER_RESP);
    resp_free(&r);
    ol_http_free(h);
}

LD_TEST(get_request_decoding)
{
    fake_reset();
    int port;
    ol_http *h = start(NULL, &port);
    if (!h)
        return;
    resp r;
    /* all JSON types as entity values, a feature service, request_context,
     * extra keys, lax booleans, whitespace */
    const char *body = " {\"entities\": {\"a\": [1, 2.5, \"s\", true, null, [1, 2], [1, 2.5], "
                       "[\"x\"], [true], [], [[1], [2]], {\"k\": 1}, [{\"k\": 1}]]}, "
                       "\"feature_service\": \"svc\", \"full_feature_names\": \"yes\", "
                       "\"unknown\": {\"x\": [1]}, "
                       "\"request_context\": {\"rc\": [1,2,3,4,5,6,7,8,9,10,11,12,13]}} ";
    fake.build = build_all_types;
    LD_CHECK_INT(post(port, "/get-online-features", body, &r), 0);
    LD_CHECK_INT(r.status, 200);
    LD_CHECK_STR(fake.last,
                 "get fs=svc ffn=1 feats= ent:a:13[INT64,DOUBLE,STRING,BOOL,UNKNOWN,INT64_LIST,"
                 "DOUBLE_LIST,STRING_LIST,BOOL_LIST,INT64_LIST,VALUE_LIST,MAP,MAP_LIST] "
                 "ctx:rc:13[INT64,INT64,INT64,INT64,INT64,INT64,INT64,INT64,INT64,INT64,INT64,"
                 "INT64,INT64] deadline_ok=1");
    resp_free(&r);

    /* entity columns of different lengths: Feast's ValueError, as 422 */
    LD_CHECK_INT(post(port, "/get-online-features",
                      "{\"entities\":{\"a\":[1,2],\"b\":[1]},\"features\":[\"v:f\"]}", &r),
                 0);
    LD_CHECK_INT(r.status, 422);
    CHECK_BODY(r, "\"All entity rows must have the same columns.\"");
    resp_free(&r);

    /* values Feast cannot type */
    LD_CHECK_INT(post(port, "/get-online-features",
                      "{\"entities\":{\"a\":[[1,\"x\"]]},\"features\":[\"v:f\"]}", &r),
                 0);
    LD_CHECK_INT(r.status, 422);
    CHECK_BODY(r, "\"a: a list mixes int and str values\"");
    resp_free(&r);
    LD_CHECK_INT(post(port, "/get-online-features",
                      "{\"entities\":{\"a\":[99999999999999999999]},\"features\":[\"v:f\"]}", &r),
                 0);
    LD_CHECK_INT(r.status, 422);
    CHECK_BODY(r, "\"a: Value out of range: 99999999999999999999\"");
    resp_free(&r);
    ol_http_free(h);
}

LD_TEST(value_rendering_every_type)
{
    fake_reset();
    fake.build = build_all_types;
    int port;
    ol_http *h = start(NULL, &port);
    if (!h)
        return;
    resp r;
    LD_CHECK_INT(post(port, "/get-online-features",
                      "{\"entities\":{\"e\":[1]},\"features\":[\"v:f\"]}", &r),
                 0);
    LD_CHECK_INT(r.status, 200);
    const char *expect =
            "{\"results\":["
            "{\"values\":[-5],\"statuses\":[\"INVALID\"],\"event_timestamps\":[\"1970-01-01T00:00:"
            "00Z\"]},"
            "{\"values\":[-9007199254740993],\"statuses\":[\"PRESENT\"],\"event_timestamps\":["
            "\"1970-01-01T00:00:00.001Z\"]},"
            "{\"values\":[0.1],\"statuses\":[\"NULL_VALUE\"],\"event_timestamps\":[\"1970-01-01T00:"
            "00:00.002Z\"]},"
            "{\"values\":[0.10000000149011612],\"statuses\":[\"NOT_FOUND\"],\"event_timestamps\":["
            "\"1970-01-01T00:00:00.003Z\"]},"
            "{\"values\":[true],\"statuses\":[\"OUTSIDE_MAX_AGE\"],\"event_timestamps\":["
            "\"1970-01-01T00:00:00.004Z\"]},"
            "{\"values\":[\"日本 \\\"q\\\"\\\\\"],\"statuses\":[\"INVALID\"],\"event_timestamps\":"
            "[\"1970-01-01T00:00:00.005Z\"]},"
            "{\"values\":[\"AP8=\"],\"statuses\":[\"PRESENT\"],\"event_timestamps\":[\"1970-01-"
            "01T00:00:00.006Z\"]},"
            "{\"values\":[1640991600],\"statuses\":[\"NULL_VALUE\"],\"event_timestamps\":[\"1970-"
            "01-01T00:00:00.007Z\"]},"
            "{\"values\":[[1,-2]],\"statuses\":[\"NOT_FOUND\"],\"event_timestamps\":[\"1970-01-"
            "01T00:00:00.008Z\"]},"
            "{\"values\":[[-9223372036854775808,9223372036854775807]],\"statuses\":[\"OUTSIDE_MAX_"
            "AGE\"],\"event_timestamps\":[\"1970-01-01T00:00:00.009Z\"]},"
            "{\"values\":[[1.5,-0.0,1e+16]],\"statuses\":[\"INVALID\"],\"event_timestamps\":["
            "\"1970-01-01T00:00:00.010Z\"]},"
            "{\"values\":[[0.10000000149011612]],\"statuses\":[\"PRESENT\"],\"event_timestamps\":["
            "\"1970-01-01T00:00:00.011Z\"]},"
            "{\"values\":[[true,false]],\"statuses\":[\"NULL_VALUE\"],\"event_timestamps\":[\"1970-"
            "01-01T00:00:00.012Z\"]},"
            "{\"values\":[[\"a\",\"é\\\"\\n\"]],\"statuses\":[\"NOT_FOUND\"],\"event_timestamps\":["
            "\"1970-01-01T00:00:00.013Z\"]},"
            "{\"values\":[[\"AQ==\",\"\"]],\"statuses\":[\"OUTSIDE_MAX_AGE\"],\"event_timestamps\":"
            "["
            "\"1970-01-01T00:00:00.014Z\"]},"
            "{\"values\":[[9223372036854775807]],\"statuses\":[\"INVALID\"],\"event_timestamps\":["
            "\"1970-01-01T00:00:00.015Z\"]},"
            "{\"values\":[null],\"statuses\":[\"PRESENT\"],\"event_timestamps\":[\"1970-01-01T00:"
            "00:00.016Z\"]},"
            "{\"values\":[null],\"statuses\":[\"NULL_VALUE\"],\"event_timestamps\":[\"1970-01-"
            "01T00:"
            "00:00.017Z\"]}],"
            "\"metadata\":{\"feature_names\":[\"f0\",\"f1\",\"f2\",\"f3\",\"f4\",\"f5\",\"f6\","
            "\"f7\","
            "\"f8\",\"f9\",\"f10\",\"f11\",\"f12\",\"f13\",\"f14\",\"f15\",\"f16\",\"f17\"]}}";
    CHECK_BODY(r, expect);
    resp_free(&r);

    /* NaN: Starlette's allow_nan=False raises ValueError -> 500 + message */
    fake.build = build_nan;
    LD_CHECK_INT(post(port, "/get-online-features",
                      "{\"entities\":{\"e\":[1]},\"features\":[\"v:f\"]}", &r),
                 0);
    LD_CHECK_INT(r.status, 500);
    CHECK_BODY(r, "\"Out of range float values are not JSON compliant: nan\"");
    resp_free(&r);
    ol_http_free(h);
}

/* The wire fast path and protobuf-c + ld_value_to_json agree, value by value. */
LD_TEST(value_bytes_fast_path_matches_ld_value)
{
    ld_arena a, scratch;
    ld_arena_init(&a, NULL, 0, 0);
    ld_arena_init(&scratch, NULL, 0, 0);
    static const int64_t i64s[] = {0,         1,         -1,        127,       128,       -300,
                                   INT32_MIN, INT32_MAX, INT64_MIN, INT64_MAX, 1640991600};
    static const double dbls[] = {0.0, -0.0, 1.0, 0.1, 1e16, 1e-5, 123456.789, 5e-324, 1e308};
    Feast__Types__Value *vals[128];
    size_t n = 0;
    for (size_t i = 0; i < sizeof i64s / sizeof i64s[0]; i++) {
        vals[n++] = ld_value_int64(&a, i64s[i]);
        vals[n++] = ld_value_int32(&a, (int32_t)i64s[i]);
        vals[n++] = ld_value_unix_ts(&a, i64s[i]);
        vals[n++] = ld_value_bool(&a, i64s[i] != 0);
    }
    for (size_t i = 0; i < sizeof dbls / sizeof dbls[0]; i++) {
        vals[n++] = ld_value_double(&a, dbls[i]);
        vals[n++] = ld_value_float(&a, (float)dbls[i]);
    }
    vals[n++] = ld_value_string(&a, "", 0);
    vals[n++] = ld_value_string(&a, "a\0b", 3); /* protobuf-c's C string stops at the NUL */
    vals[n++] = ld_value_string(&a, "\x7f\x01\xe2\x82", 4);
    vals[n++] = ld_value_null(&a);
    vals[n++] = ld_value_new(&a);
    for (size_t i = 0; i < n; i++) {
        size_t len = feast__types__value__get_packed_size(vals[i]);
        uint8_t *buf = ld_arena_alloc(&a, len + 1);
        feast__types__value__pack(vals[i], buf);
        Feast__Types__Value *back = feast__types__value__unpack(NULL, len, buf);
        ld_buf slow = LD_BUF_INIT, fast = LD_BUF_INIT;
        ld_status st1 = LD_STATUS_INIT, st2 = LD_STATUS_INIT;
        int rc1 = ld_value_to_json(back, &slow, &st1);
        int rc2 = ol_json_value_bytes(&fast, buf, len, &scratch, &st2);
        LD_CHECK_INT(rc1, rc2);
        if (rc1 == 0)
            LD_CHECK_STR(fast.data ? fast.data : "", slow.data ? slow.data : "");
        feast__types__value__free_unpacked(back, NULL);
        ld_buf_free(&slow);
        ld_buf_free(&fast);
    }
    /* the same Value with a repeated field goes the slow way and still agrees */
    static const uint8_t twice[] = {0x20, 0x01, 0x20, 0x02};
    ld_buf b = LD_BUF_INIT;
    ld_status st = LD_STATUS_INIT;
    LD_CHECK_INT(ol_json_value_bytes(&b, twice, sizeof twice, &scratch, &st), 0);
    LD_CHECK_STR(b.data, "2");
    ld_buf_reset(&b);
    static const uint8_t garbage[] = {0x0a, 0x7f};
    LD_CHECK_INT(ol_json_value_bytes(&b, garbage, sizeof garbage, &scratch, &st), -1);
    LD_CHECK_INT(b.len, 0);
    ld_buf_free(&b);
    ld_arena_destroy(&scratch);
    ld_arena_destroy(&a);
}

LD_TEST(timestamps)
{
    char ts[OL_JSON_TS_MAX];
    ol_json_timestamp(0, ts);
    LD_CHECK_STR(ts, "1970-01-01T00:00:00Z");
    ol_json_timestamp(TS_2021_12_31_23H, ts);
    LD_CHECK_STR(ts, "2021-12-31T23:00:00Z");
    ol_json_timestamp(TS_2021_12_31_23H + 123000, ts);
    LD_CHECK_STR(ts, "2021-12-31T23:00:00.123Z");
    ol_json_timestamp(TS_2021_12_31_23H + 1000, ts);
    LD_CHECK_STR(ts, "2021-12-31T23:00:00.001Z");
    ol_json_timestamp(TS_2021_12_31_23H + 123456, ts);
    LD_CHECK_STR(ts, "2021-12-31T23:00:00.123456Z");
    ol_json_timestamp(TS_2021_12_31_23H + 10, ts);
    LD_CHECK_STR(ts, "2021-12-31T23:00:00.000010Z");
    ol_json_timestamp(-1, ts);
    LD_CHECK_STR(ts, "1969-12-31T23:59:59.999999Z");
    ol_json_timestamp(1000000, ts);
    LD_CHECK_STR(ts, "1970-01-01T00:00:01Z");
    ol_json_timestamp(951782400LL * 1000000, ts); /* leap day */
    LD_CHECK_STR(ts, "2000-02-29T00:00:00Z");
    ol_json_timestamp(-30610310400LL * 1000000, ts); /* strftime %Y is not padded */
    LD_CHECK_STR(ts, "999-12-31T00:00:00Z");
    LD_CHECK_INT(ol_json_timestamp(253402300800LL * 1000000, ts), 0); /* year 10000 */
    LD_CHECK_INT(ol_json_timestamp(-62135596801LL * 1000000, ts), 0); /* year 0 */
}

LD_TEST(encode_edge_cases)
{
    /* no rows: Feast leaves event_timestamps out; no columns at all */
    ol_column_out col = {.name = "a"};
    ol_get_response r0 = {&col, 1, 0};
    ld_buf b = LD_BUF_INIT;
    ld_status st = LD_STATUS_INIT;
    LD_CHECK_INT(ol_json_encode_get(&r0, &b, &st), 0);
    LD_CHECK_STR(b.data, "{\"results\":[{\"values\":[],\"statuses\":[]}],\"metadata\":{\"feature_"
                         "names\":[\"a\"]}}");
    ld_buf_reset(&b);
    ol_get_response none = {NULL, 0, 0};
    LD_CHECK_INT(ol_json_encode_get(&none, &b, &st), 0);
    LD_CHECK_STR(b.data, "{\"results\":[],\"metadata\":{\"feature_names\":[]}}");

    /* a failure leaves the buffer as it was */
    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    const uint8_t *vals[1];
    size_t lens[1];
    uint8_t status[1] = {OL_PRESENT};
    int64_t ts[1] = {0};
    pack(&a, ld_value_float(&a, INFINITY), &vals[0], &lens[0]);
    ol_column_out bad = {"x", vals, lens, status, ts};
    ol_get_response rb = {&bad, 1, 1};
    ld_buf_reset(&b);
    ld_buf_puts(&b, "keep");
    LD_CHECK_INT(ol_json_encode_get(&rb, &b, &st), -1);
    LD_CHECK_STR(b.data, "keep");
    LD_CHECK_STR(ld_status_module(&st), "builtins");
    LD_CHECK_STR(st.msg, "Out of range float values are not JSON compliant: inf");
    /* an event timestamp Python's datetime cannot hold */
    pack(&a, ld_value_int64(&a, 1), &vals[0], &lens[0]);
    ts[0] = INT64_MAX;
    LD_CHECK_INT(ol_json_encode_get(&rb, &b, &st), -1);
    LD_CHECK_STR(b.data, "keep");
    ld_buf_free(&b);

    /* Values from JSON that Feast cannot hold */
    static const struct {
        const char *json, *msg;
    } refused[] = {
            {"\"a\\u0000b\"", "c: a string holds U+0000"},
            {"[1,null]", "c: a list holds null at index 1; Feast lists cannot hold nulls"},
            {"[true,1]", "c: a list mixes bool and int values"},
            {"[{\"a\":1},[1]]", "c: a list mixes dict and list values"},
            {"-9223372036854775809", "c: Value out of range: -9223372036854775809"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        ol_json *doc;
        ol_json_error err;
        Feast__Types__Value *v;
        LD_CHECK_INT(ol_json_parse(refused[i].json, strlen(refused[i].json), &a, NULL, &doc, &err),
                     0);
        LD_CHECK_INT(ol_json_value(doc, &a, "c", &v, &st), -1);
        LD_CHECK_STR(st.msg, refused[i].msg);
        LD_CHECK_INT(st.code, GRPC_STATUS_INVALID_ARGUMENT);
    }
    /* a lone surrogate has no UTF-8 form: U+FFFD */
    ol_json *doc;
    ol_json_error err;
    Feast__Types__Value *v = NULL;
    LD_CHECK_INT(ol_json_parse("\"\\ud800x\"", 9, &a, NULL, &doc, &err), 0);
    LD_CHECK_INT(ol_json_value(doc, &a, "c", &v, &st), 0);
    LD_CHECK(v && v->val_case == VC(STRING_VAL) && strcmp(v->string_val, "\xef\xbf\xbdx") == 0);
    /* {"k": [1.5, 2]} -> map_val with a double list */
    LD_CHECK_INT(ol_json_parse("{\"k\":[1.5,2]}", 13, &a, NULL, &doc, &err), 0);
    LD_CHECK_INT(ol_json_value(doc, &a, "c", &v, &st), 0);
    LD_CHECK(v && v->val_case == VC(MAP_VAL) && v->map_val->n_val == 1 &&
             strcmp(v->map_val->val[0]->key, "k") == 0 &&
             v->map_val->val[0]->value->val_case == VC(DOUBLE_LIST_VAL) &&
             v->map_val->val[0]->value->double_list_val->val[1] == 2.0);
    ld_arena_destroy(&a);
}

/* Python's json.loads messages and code-point positions, as FastAPI reports them. */
LD_TEST(parser_errors_like_python)
{
    static const struct {
        const char *doc;
        size_t pos;
        const char *msg;
    } cases[] = {
            {"", 0, "Expecting value"},
            {"  ", 2, "Expecting value"},
            {"{x", 1, "Expecting property name enclosed in double quotes"},
            {"{\"k\":\"v\",}", 9, "Expecting property name enclosed in double quotes"},
            {"[1,]", 3, "Expecting value"},
            {"[1 2]", 3, "Expecting ',' delimiter"},
            {"{\"a\" 1}", 5, "Expecting ':' delimiter"},
            {"01", 1, "Extra data"},
            {"1.", 1, "Extra data"},
            {"{} x", 3, "Extra data"},
            {"\"abc", 0, "Unterminated string starting at"},
            {"\"a\\x\"", 2, "Invalid \\escape"},
            {"\"\\u12\"", 2, "Invalid \\uXXXX escape"},
            {"\"\\ud83d\\uZZZZ\"", 8, "Invalid \\uXXXX escape"},
            {"\"a\x01\"", 2, "Invalid control character at"},
            {"[\"日本\", x]", 7, "Expecting value"}, /* code points, not bytes */
            {"nul", 0, "Expecting value"},
            {"-", 0, "Expecting value"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ld_arena a;
        ld_arena_init(&a, NULL, 0, 0);
        ol_json *doc;
        ol_json_error err;
        int rc = ol_json_parse(cases[i].doc, strlen(cases[i].doc), &a, NULL, &doc, &err);
        LD_CHECK_INT(rc, -1);
        LD_CHECK_INT(err.kind, OL_JSON_E_SYNTAX);
        if (err.pos != cases[i].pos || strcmp(err.msg, cases[i].msg) != 0)
            printf("# %s: got %zu %s\n", cases[i].doc, err.pos, err.msg);
        LD_CHECK_INT(err.pos, cases[i].pos);
        LD_CHECK_STR(err.msg, cases[i].msg);
        ld_arena_destroy(&a);
    }
    /* what Python accepts and how it reads it back */
    static const struct {
        const char *doc, *dump;
    } ok[] = {
            {"\xef\xbb\xbf {\"a\":1}", "{\"a\":1}"},
            {"{\"b\":1,\"a\":2,\"b\":3}", "{\"b\":3,\"a\":2}"},
            {"[1e400,NaN,-Infinity,-0,1E+2,12345678901234567890123]",
             "[null,null,null,0,100.0,12345678901234567890123]"},
            {"\"\\ud83d\\ude00\\u00e9\\/\"", "\"😀é/\""},
            {"[[[]],{}]", "[[[]],{}]"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        ld_arena a;
        ld_arena_init(&a, NULL, 0, 0);
        ol_json *doc;
        ol_json_error err;
        LD_CHECK_INT(ol_json_parse(ok[i].doc, strlen(ok[i].doc), &a, NULL, &doc, &err), 0);
        ld_buf b = LD_BUF_INIT;
        if (doc)
            ol_json_write(&b, doc);
        LD_CHECK_STR(b.data ? b.data : "", ok[i].dump);
        ld_buf_free(&b);
        ld_arena_destroy(&a);
    }
    /* limits */
    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    ol_json *doc;
    ol_json_error err;
    ol_json_limits lim = {3, 5};
    LD_CHECK_INT(ol_json_parse("[[[[1]]]]", 9, &a, &lim, &doc, &err), -1);
    LD_CHECK_INT(err.kind, OL_JSON_E_BODY);
    LD_CHECK_INT(ol_json_parse("[1,2,3,4,5]", 11, &a, &lim, &doc, &err), -1);
    LD_CHECK_INT(err.kind, OL_JSON_E_LIMIT);
    LD_CHECK_INT(ol_json_parse("\"\xff\"", 3, &a, &lim, &doc, &err), -1);
    LD_CHECK_INT(err.kind, OL_JSON_E_BODY);
    ld_arena_destroy(&a);
}

LD_TEST(fastapi_422_bodies)
{
    fake_reset();
    int port;
    ol_http *h = start(NULL, &port);
    if (!h)
        return;
    resp r;
    LD_CHECK_INT(post(port, "/get-online-features", "{x", &r), 0);
    LD_CHECK_INT(r.status, 422);
    CHECK_BODY(r, "{\"detail\":[{\"type\":\"json_invalid\",\"loc\":[\"body\",1],\"msg\":\"JSON "
                  "decode error\",\"input\":{},\"ctx\":{\"error\":\"Expecting property name "
                  "enclosed in double quotes\"}}]}");
    LD_CHECK_STR(header(&r, "Content-Type"), "application/json");
    resp_free(&r);

    LD_CHECK_INT(post(port, "/get-online-features", "{\"features\":[\"a:b\"]}", &r), 0);
    LD_CHECK_INT(r.status, 422);
    CHECK_BODY(r, "{\"detail\":[{\"type\":\"missing\",\"loc\":[\"body\",\"entities\"],\"msg\":"
                  "\"Field required\",\"input\":{\"features\":[\"a:b\"]}}]}");
    resp_free(&r);

    /* several errors at once, in field order */
    LD_CHECK_INT(post(port, "/get-online-features",
                      "{\"entities\":{\"d\":5},\"features\":[\"a:b\",7],\"feature_service\":1,"
                      "\"full_feature_names\":\"maybe\",\"include_feature_view_version_metadata\":"
                      "null}",
                      &r),
                 0);
    LD_CHECK_INT(r.status, 422);
    CHECK_BODY(
            r,
            "{\"detail\":[{\"type\":\"list_type\",\"loc\":[\"body\",\"entities\",\"d\"],\"msg\":"
            "\"Input should be a valid list\",\"input\":5},"
            "{\"type\":\"string_type\",\"loc\":[\"body\",\"feature_service\"],\"msg\":\"Input "
            "should be a valid string\",\"input\":1},"
            "{\"type\":\"string_type\",\"loc\":[\"body\",\"features\",1],\"msg\":\"Input should "
            "be a valid string\",\"input\":7},"
            "{\"type\":\"bool_parsing\",\"loc\":[\"body\",\"full_feature_names\"],\"msg\":\"Input "
            "should be a valid boolean, unable to interpret input\",\"input\":\"maybe\"},"
            "{\"type\":\"bool_type\",\"loc\":[\"body\",\"include_feature_view_version_"
            "metadata\"],\"msg\":\"Input should be a valid boolean\",\"input\":null}]}");
    resp_free(&r);

    /* no body; a body that is not a JSON object; a non-JSON Content-Type */
    LD_CHECK_INT(roundtrip(port, "POST", "/get-online-features", NULL, NULL, &r), 0);
    LD_CHECK_INT(r.status, 422);
    CHECK_BODY(r, "{\"detail\":[{\"type\":\"missing\",\"loc\":[\"body\"],\"msg\":\"Field "
                  "required\",\"input\":null}]}");
    resp_free(&r);
    LD_CHECK_INT(post(port, "/push", "[1]", &r), 0);
    LD_CHECK_INT(r.status, 422);
    CHECK_BODY(r, "{\"detail\":[{\"type\":\"model_attributes_type\",\"loc\":[\"body\"],\"msg\":"
                  "\"Input should be a valid dictionary or object to extract fields from\","
                  "\"input\":[1]}]}");
    resp_free(&r);
    LD_CHECK_INT(roundtrip(port, "POST", "/get-online-features",
                           "application/x-www-form-urlencoded", "{\"entities\":{}}", &r),
                 0);
    LD_CHECK_INT(r.status, 422);
    CHECK_BODY(r, "{\"detail\":[{\"type\":\"model_attributes_type\",\"loc\":[\"body\"],\"msg\":"
                  "\"Input should be a valid dictionary or object to extract fields from\","
                  "\"input\":\"{\\\"entities\\\":{}}\"}]}");
    resp_free(&r);
    /* no Content-Type at all is read as JSON; so is any application/...+json */
    LD_CHECK_INT(roundtrip(port, "POST", "/get-online-features", NULL, DRIVER_REQ, &r), 0);
    LD_CHECK_INT(r.status, 200);
    resp_free(&r);
    LD_CHECK_INT(roundtrip(port, "POST", "/get-online-features",
                           "Application/vnd.feast+JSON; charset=utf-8", DRIVER_REQ, &r),
                 0);
    LD_CHECK_INT(r.status, 200);
    resp_free(&r);
    /* not UTF-8: FastAPI's generic 400 */
    LD_CHECK_INT(post(port, "/get-online-features", "{\"entities\":\"\xff\"}", &r), 0);
    LD_CHECK_INT(r.status, 400);
    CHECK_BODY(r, "{\"detail\":\"There was an error parsing the body\"}");
    resp_free(&r);
    ol_http_free(h);
}

LD_TEST(serve_errors_map_to_feast_codes)
{
    fake_reset();
    int port;
    ol_http *h = start(NULL, &port);
    if (!h)
        return;
    resp r;
    ld_status_set(&fake.refuse, GRPC_STATUS_NOT_FOUND, "FeatureViewNotFoundException",
                  "Feature view driver_hourly_stats does not exist in project p");
    LD_CHECK_INT(post(port, "/get-online-features", DRIVER_REQ, &r), 0);
    LD_CHECK_INT(r.status, 404);
    CHECK_BODY(r, "\"{\\\"module\\\": \\\"feast.errors\\\", \\\"class\\\": "
                  "\\\"FeatureViewNotFoundException\\\", \\\"message\\\": \\\"Feature view "
                  "driver_hourly_stats does not exist in project p\\\"}\"");
    resp_free(&r);

    /* an error reported by done rather than at once */
    ld_status_clear(&fake.refuse);
    ld_status_set(&fake.fail, GRPC_STATUS_INTERNAL, NULL, "store: connection refused – é");
    fake.delay_ms = 10;
    LD_CHECK_INT(post(port, "/get-online-features", DRIVER_REQ, &r), 0);
    LD_CHECK_INT(r.status, 500);
    /* Feast's detail is ASCII-only inside; the outer literal passes UTF-8 */
    CHECK_BODY(r, "\"{\\\"module\\\": \\\"feast.errors\\\", \\\"class\\\": \\\"FeastError\\\", "
                  "\\\"message\\\": \\\"store: connection refused \\\\u2013 \\\\u00e9\\\"}\"");
    resp_free(&r);

    ld_status_set(&fake.fail, GRPC_STATUS_PERMISSION_DENIED, "FeastPermissionError", "no");
    LD_CHECK_INT(post(port, "/get-online-features", DRIVER_REQ, &r), 0);
    LD_CHECK_INT(r.status, 403);
    resp_free(&r);

    fake.delay_ms = 0;
    ld_status_clear(&fake.fail);
    ld_status_set(&fake.refuse, GRPC_STATUS_INVALID_ARGUMENT, "PushSourceNotFoundException",
                  "Unable to find push source 'nope'.");
    LD_CHECK_INT(post(port, "/push", "{\"push_source_name\":\"nope\",\"df\":{\"a\":[1]}}", &r), 0);
    LD_CHECK_INT(r.status, 422);
    CHECK_BODY(r, "\"{\\\"module\\\": \\\"feast.errors\\\", \\\"class\\\": "
                  "\\\"PushSourceNotFoundException\\\", \\\"message\\\": \\\"Unable to find push "
                  "source 'nope'.\\\"}\"");
    resp_free(&r);

    ld_status_set(&fake.refuse, GRPC_STATUS_UNAVAILABLE, NULL, "not loaded");
    LD_CHECK_INT(post(port, "/write-to-online-store",
                      "{\"feature_view_name\":\"fv\",\"df\":{\"a\":[1]}}", &r),
                 0);
    LD_CHECK_INT(r.status, 503);
    resp_free(&r);

    /* the routes of Feast's server that larder does not serve */
    LD_CHECK_INT(post(port, "/materialize", "{}", &r), 0);
    LD_CHECK_INT(r.status, 501);
    resp_free(&r);

    ld_status st = LD_STATUS_INIT;
    ld_status_set(&st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "x");
    LD_CHECK_INT(ol_http_status_of(&st), 413);
    ld_status_set(&st, GRPC_STATUS_FAILED_PRECONDITION, NULL, "x");
    LD_CHECK_INT(ol_http_status_of(&st), 422);
    ld_status_set(&st, GRPC_STATUS_UNKNOWN, NULL, "x");
    LD_CHECK_INT(ol_http_status_of(&st), 500);
    ol_http_free(h);
}

LD_TEST(push_and_write)
{
    fake_reset();
    int port;
    ol_http *h = start(NULL, &port);
    if (!h)
        return;
    resp r;
    /* push: 200, no body, no Content-Type; scalars broadcast */
    LD_CHECK_INT(post(port, "/push",
                      "{\"push_source_name\":\"ps\",\"df\":{\"driver_id\":[1,2,3],\"conv_rate\":"
                      "[0.5,null,1],\"event_timestamp\":\"2021-01-01T00:00:00\"},\"to\":"
                      "\"online_and_offline\",\"allow_registry_cache\":false}",
                      &r),
                 0);
    LD_CHECK_INT(r.status, 200);
    LD_CHECK_INT(r.body_len, 0);
    LD_CHECK(header(&r, "Content-Type") == NULL);
    LD_CHECK_STR(fake.last, "write fv=- push=ps to=11 cache=0 col:driver_id:3[INT64,INT64,INT64] "
                            "col:conv_rate:3[DOUBLE,UNKNOWN,INT64] "
                            "col:event_timestamp:3[STRING,STRING=,STRING=]");
    resp_free(&r);

    /* write-to-online-store: 200 with body null, from another thread */
    fake.delay_ms = 20;
    LD_CHECK_INT(post(port, "/write-to-online-store",
                      "{\"feature_view_name\":\"fv\",\"df\":{\"a\":[\"x\"]},\"transform_on_write\":"
                      "0}",
                      &r),
                 0);
    LD_CHECK_INT(r.status, 200);
    CHECK_BODY(r, "null");
    LD_CHECK_STR(header(&r, "Content-Type"), "application/json");
    LD_CHECK_STR(fake.last, "write fv=fv push=- to=10 cache=1 col:a:1[STRING]");
    resp_free(&r);
    fake.delay_ms = 0;

    /* an empty df is passed on (Feast answers 200 and writes nothing) */
    LD_CHECK_INT(post(port, "/push", "{\"push_source_name\":\"ps\",\"df\":{}}", &r), 0);
    LD_CHECK_INT(r.status, 200);
    LD_CHECK_STR(fake.last, "write fv=- push=ps to=10 cache=1");
    resp_free(&r);

    /* pandas' complaints, as 422 with Feast's plain-message body */
    LD_CHECK_INT(
            post(port, "/push", "{\"push_source_name\":\"ps\",\"df\":{\"a\":1,\"b\":\"x\"}}", &r),
            0);
    LD_CHECK_INT(r.status, 422);
    CHECK_BODY(r, "\"If using all scalar values, you must pass an index\"");
    resp_free(&r);
    LD_CHECK_INT(
            post(port, "/push", "{\"push_source_name\":\"ps\",\"df\":{\"a\":[1],\"b\":[]}}", &r),
            0);
    LD_CHECK_INT(r.status, 422);
    CHECK_BODY(r, "\"All arrays must be of the same length\"");
    resp_free(&r);
    LD_CHECK_INT(post(port, "/push",
                      "{\"push_source_name\":\"ps\",\"df\":{\"a\":[1]},\"to\":\"x\"}", &r),
                 0);
    LD_CHECK_INT(r.status, 422);
    CHECK_BODY(r, "\"x is not a supported push format. Please specify one of these ['online', "
                  "'offline', 'online_and_offline'].\"");
    resp_free(&r);
    LD_CHECK_INT(post(port, "/push", "{\"df\":[]}", &r), 0);
    LD_CHECK_INT(r.status, 422);
    CHECK_BODY(r, "{\"detail\":[{\"type\":\"missing\",\"loc\":[\"body\",\"push_source_name\"],"
                  "\"msg\":\"Field required\",\"input\":{\"df\":[]}},{\"type\":\"dict_type\","
                  "\"loc\":[\"body\",\"df\"],\"msg\":\"Input should be a valid dictionary\","
                  "\"input\":[]}]}");
    resp_free(&r);
    ol_http_free(h);
}

LD_TEST(health_routes_methods_and_limits)
{
    fake_reset();
    ol_http_opts o = {.max_body_bytes = 1024};
    int port;
    ol_http *h = start(&o, &port);
    if (!h)
        return;
    resp r;
    LD_CHECK_INT(roundtrip(port, "GET", "/health", NULL, NULL, &r), 0);
    LD_CHECK_INT(r.status, 200);
    LD_CHECK_INT(r.body_len, 0);
    resp_free(&r);
    fake.healthy = 0;
    LD_CHECK_INT(roundtrip(port, "GET", "/health?x=1", NULL, NULL, &r), 0);
    LD_CHECK_INT(r.status, 503);
    resp_free(&r);
    fake.healthy = 1;
    LD_CHECK_INT(roundtrip(port, "HEAD", "/health", NULL, NULL, &r), 0);
    LD_CHECK_INT(r.status, 200);
    resp_free(&r);

    LD_CHECK_INT(roundtrip(port, "GET", "/nope", NULL, NULL, &r), 0);
    LD_CHECK_INT(r.status, 404);
    CHECK_BODY(r, "{\"detail\":\"Not Found\"}");
    resp_free(&r);
    LD_CHECK_INT(roundtrip(port, "GET", "/get-online-features", NULL, NULL, &r), 0);
    LD_CHECK_INT(r.status, 405);
    CHECK_BODY(r, "{\"detail\":\"Method Not Allowed\"}");
    LD_CHECK_STR(header(&r, "Allow"), "POST");
    resp_free(&r);
    LD_CHECK_INT(post(port, "/health", "{}", &r), 0);
    LD_CHECK_INT(r.status, 405);
    LD_CHECK_STR(header(&r, "Allow"), "GET, HEAD");
    resp_free(&r);

    /* 413: a body over max_body_bytes never reaches the handler */
    char big[2048];
    memset(big, ' ', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    big[0] = '{';
    big[sizeof big - 2] = '}';
    fake.calls = 0;
    LD_CHECK_INT(post(port, "/get-online-features", big, &r), 0);
    LD_CHECK_INT(r.status, 413);
    LD_CHECK_INT(fake.calls, 0);
    resp_free(&r);
    /* too many values for the parser: 413 too */
    ol_http_free(h);
    ol_http_opts o2 = {.max_json_values = 10};
    h = start(&o2, &port);
    if (!h)
        return;
    LD_CHECK_INT(post(port, "/get-online-features",
                      "{\"entities\":{\"a\":[1,2,3,4,5,6,7,8,9,10,11]}}", &r),
                 0);
    LD_CHECK_INT(r.status, 413);
    CHECK_BODY(r, "{\"detail\":\"the request holds too many JSON values\"}");
    resp_free(&r);
    ol_http_free(h);
}

LD_TEST(keep_alive_many_requests_one_connection)
{
    fake_reset();
    int port;
    ol_http *h = start(NULL, &port);
    if (!h)
        return;
    int fd = dial(port);
    LD_CHECK(fd >= 0);
    for (int i = 0; i < 20; i++) {
        resp r;
        fake.delay_ms = i % 2 ? 5 : 0;
        LD_CHECK_INT(send_req(fd, "POST", "/get-online-features", "application/json", DRIVER_REQ,
                              strlen(DRIVER_REQ)),
                     0);
        LD_CHECK_INT(recv_resp(fd, &r), 0);
        LD_CHECK_INT(r.status, 200);
        CHECK_BODY(r, DRIVER_RESP);
        resp_free(&r);
        LD_CHECK_INT(send_req(fd, "GET", "/health", NULL, NULL, 0), 0);
        LD_CHECK_INT(recv_resp(fd, &r), 0);
        LD_CHECK_INT(r.status, 200);
        resp_free(&r);
    }
    /* two requests written back to back (pipelined) are answered in order */
    char two[1024];
    int n = snprintf(two, sizeof two,
                     "POST /push HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     "Content-Length: 2\r\n\r\n{}"
                     "GET /health HTTP/1.1\r\nHost: t\r\n\r\n");
    LD_CHECK_INT(send_all(fd, two, (size_t)n), 0);
    resp r1, r2;
    LD_CHECK_INT(recv_resp(fd, &r1), 0);
    LD_CHECK_INT(recv_resp(fd, &r2), 0);
    LD_CHECK_INT(r1.status, 422);
    LD_CHECK_INT(r2.status, 200);
    resp_free(&r1);
    resp_free(&r2);
    close(fd);
    ol_http_free(h);
}

typedef struct slow_client {
    int port;
    int status;
    int64_t took_us;
} slow_client;

static void *slow_client_main(void *arg)
{
    slow_client *c = arg;
    int64_t t0 = ld_mono_us();
    resp r;
    if (post(c->port, "/get-online-features", DRIVER_REQ, &r) == 0) {
        c->status = r.status;
        resp_free(&r);
    }
    c->took_us = ld_mono_us() - t0;
    return NULL;
}

/* One loop thread, a request whose done comes 400 ms later from another
 * thread: meanwhile the loop answers other requests at once. */
LD_TEST(loop_never_blocks_on_a_slow_request)
{
    fake_reset();
    fake.delay_ms = 400;
    ol_http_opts o = {.threads = 1};
    int port;
    ol_http *h = start(&o, &port);
    if (!h)
        return;
    slow_client sc = {.port = port};
    pthread_t t;
    pthread_create(&t, NULL, slow_client_main, &sc);
    while (fake.calls == 0) /* the slow request is inside ol_serve */
        usleep(1000);
    fake.delay_ms = 0;
    int64_t t0 = ld_mono_us();
    for (int i = 0; i < 5; i++) {
        resp r;
        LD_CHECK_INT(post(port, "/get-online-features", DRIVER_REQ, &r), 0);
        LD_CHECK_INT(r.status, 200);
        resp_free(&r);
        LD_CHECK_INT(roundtrip(port, "GET", "/health", NULL, NULL, &r), 0);
        LD_CHECK_INT(r.status, 200);
        resp_free(&r);
    }
    int64_t fast_us = ld_mono_us() - t0;
    pthread_join(t, NULL);
    LD_CHECK_INT(sc.status, 200);
    LD_CHECK(sc.took_us >= 390000);
    LD_CHECK(fast_us < 300000);
    if (fast_us >= 300000)
        printf("# fast requests took %lld us\n", (long long)fast_us);
    ol_http_free(h);
}

LD_TEST(graceful_stop)
{
    fake_reset();
    ol_http_opts o = {.threads = 2, .grace_ms = 2000};
    int port;
    ol_http *h = start(&o, &port);
    if (!h)
        return;
    /* a request in flight when stop begins is still answered */
    fake.delay_ms = 200;
    int fd = dial(port);
    LD_CHECK_INT(send_req(fd, "POST", "/get-online-features", "application/json", DRIVER_REQ,
                          strlen(DRIVER_REQ)),
                 0);
    while (fake.calls == 0)
        usleep(1000);
    int64_t t0 = ld_mono_us();
    ol_http_stop(h);
    int64_t took = ld_mono_us() - t0;
    LD_CHECK(took >= 150000 && took < 1500000);
    resp r;
    LD_CHECK_INT(recv_resp(fd, &r), 0);
    LD_CHECK_INT(r.status, 200);
    CHECK_BODY(r, DRIVER_RESP);
    LD_CHECK_STR(header(&r, "Connection"), "close");
    resp_free(&r);
    close(fd);
    /* the listener is gone */
    LD_CHECK_INT(dial(port), -1);
    ol_http_free(h);

    /* past the grace period the connection closes unanswered; free waits for done */
    o.grace_ms = 50;
    h = start(&o, &port);
    if (!h)
        return;
    fake.delay_ms = 400;
    fake.calls = 0;
    fd = dial(port);
    LD_CHECK_INT(send_req(fd, "POST", "/push", "application/json",
                          "{\"push_source_name\":\"p\",\"df\":{}}", 32),
                 0);
    while (fake.calls == 0)
        usleep(1000);
    t0 = ld_mono_us();
    ol_http_stop(h);
    LD_CHECK(ld_mono_us() - t0 < 350000);
    LD_CHECK_INT(recv_resp(fd, &r), -1);
    close(fd);
    ol_http_free(h);
    LD_CHECK(ld_mono_us() - t0 >= 350000);
    wait_deferred();
}

LD_TEST(access_log_line)
{
    fake_reset();
    int port;
    ol_http *h = start(NULL, &port);
    if (!h)
        return;
    int pipefd[2];
    LD_CHECK_INT(pipe(pipefd), 0);
    int saved = dup(2);
    dup2(pipefd[1], 2);
    ld_log_setup(LD_LOG_INFO, LD_LOG_JSON, "test");
    resp r;
    post(port, "/get-online-features", DRIVER_REQ, &r);
    resp_free(&r);
    post(port, "/get-online-features", "{x", &r);
    resp_free(&r);
    ld_log_setup(LD_LOG_OFF, LD_LOG_TEXT, "test");
    dup2(saved, 2);
    close(saved);
    close(pipefd[1]);
    char buf[8192];
    ssize_t n = read(pipefd[0], buf, sizeof buf - 1);
    close(pipefd[0]);
    buf[n > 0 ? n : 0] = '\0';
    LD_CHECK(strstr(buf, "\"method\":\"POST /get-online-features\",\"peer\":\"127.0.0.1:") != NULL);
    LD_CHECK(strstr(buf, "\"code\":0,\"status\":\"OK\"") != NULL);
    LD_CHECK(strstr(buf, "\"status\":\"INVALID_ARGUMENT\"") != NULL);
    LD_CHECK(strstr(buf, "\"error\":\"HTTP 422: JSON decode error\"") != NULL);
    if (!strstr(buf, "HTTP 422"))
        printf("# log: %s\n", buf);
    ol_http_free(h);
}

LD_TEST(bind_errors)
{
    ld_status st = LD_STATUS_INIT;
    int port;
    ol_http *h = start(NULL, &port);
    if (!h)
        return;
    ol_http *h2 = ol_http_new(NULL, "127.0.0.1", port, NULL, &st);
    LD_CHECK(h2 == NULL);
    LD_CHECK_INT(st.code, GRPC_STATUS_UNAVAILABLE);
    ol_http_free(h2);
    ol_http_free(h);
}

__attribute__((constructor)) static void quiet(void)
{
    signal(SIGPIPE, SIG_IGN);
    ld_log_setup(LD_LOG_OFF, LD_LOG_TEXT, "test");
}

LD_TEST_MAIN
