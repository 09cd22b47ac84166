/* ld-load: a closed-loop gRPC load generator on the C core.
 *
 * Every in-flight slot runs one unary call at a time: when its call completes
 * the slot records the latency and starts the next call, so the offered load
 * is exactly --concurrency calls in flight. Slots are spread over --threads
 * client threads; each thread owns one completion queue and the slots bound to
 * it, so per-slot state and the per-thread statistics need no locks. Calls go
 * round-robin over --connections channels, each on its own TCP connection
 * (GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL plus a distinct channel arg, otherwise
 * channels with equal args share one subchannel).
 *
 * A call is one 6-op batch on a call created from a registered method handle.
 * Latencies go into a fixed-size log-linear histogram per thread (no
 * allocation on the hot path); the histograms are merged at the end.
 *
 * Measurement: calls that complete inside [start + warm-up, start + warm-up +
 * duration) are counted. A call is "ok" when its status equals
 * --expect-status (default OK); only ok calls feed calls/s and the latency
 * percentiles, every other status is counted as an error by code.
 *
 * This is a benchmark tool, not library code: allocation failure and
 * impossible gRPC API errors abort with a message. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/status.h>
#include <grpc/support/time.h>

#include "ld_status.h"

#define LD_LOAD_VERSION "0.1"

/* Histogram layout, values in whole microseconds. Below 2^10 µs every µs has
 * its own bucket; above, each power of two is split into 2^7 buckets, so a
 * bucket is at most 1/128 (0.8 %) of its value wide. Values of 2^37 µs (38 h)
 * and more land in the last bucket. 4480 buckets, 35 KiB per thread. */
#define HIST_LINEAR_BITS 10
#define HIST_LINEAR      (1u << HIST_LINEAR_BITS)
#define HIST_SUB_BITS    7
#define HIST_SUB         (1u << HIST_SUB_BITS)
#define HIST_MAX_EXP     36
#define HIST_BUCKETS     (HIST_LINEAR + (HIST_MAX_EXP - HIST_LINEAR_BITS + 1) * HIST_SUB)

/* Status codes 0..16 are gRPC's; one extra slot counts batches that failed
 * without a status (should not happen on a client). */
#define N_CODES       17
#define CODE_NO_BATCH N_CODES

typedef struct ld_hist {
    uint64_t count[HIST_BUCKETS];
    uint64_t n;
    uint64_t sum_ns;
    uint64_t max_ns;
} ld_hist;

typedef struct ld_opts {
    const char *target;
    const char *method;
    const char *request_file;
    const char *request_hex;
    long concurrency;
    double duration_s;
    double warmup_s;
    long threads;
    long connections;
    long deadline_ms;
    double connect_timeout_s;
    const char *tls_ca;
    const char *tls_cert;
    const char *tls_key;
    const char *tls_override_host;
    int json;
    long expect_status;
    size_t n_md;
    grpc_metadata *md; /* --metadata key:value, shared read-only by all calls */
} ld_opts;

typedef struct ld_conn {
    grpc_channel *ch;
    void *reg; /* grpc_channel_register_call handle for --method */
} ld_conn;

typedef struct ld_worker ld_worker;

typedef struct ld_slot {
    ld_worker *w;
    grpc_call *call;
    grpc_byte_buffer *send_bb;
    grpc_byte_buffer *recv_bb;
    grpc_metadata_array recv_initial;
    grpc_metadata_array recv_trailing;
    grpc_status_code status;
    grpc_slice details;
    int64_t start_ns;
    grpc_op ops[6];
} ld_slot;

typedef struct ld_run ld_run;

struct ld_worker {
    ld_run *run;
    unsigned idx;
    pthread_t th;
    grpc_completion_queue *cq;
    ld_slot *slots;
    size_t n_slots;
    size_t inflight;
    unsigned rr; /* next connection, round-robin */
    ld_hist hist;
    uint64_t errors[N_CODES + 1];
    uint64_t resp_bytes;
    uint64_t total;        /* every completed call, warm-up and drain included */
    char first_error[256]; /* details of the first error seen in the window */
};

struct ld_run {
    const ld_opts *o;
    ld_conn *conns;
    size_t n_conns;
    grpc_slice request; /* serialized request; each call wraps it in a byte buffer */
    int64_t t_start_ns;
    int64_t t_measure_ns;      /* end of warm-up */
    _Atomic int64_t t_stop_ns; /* planned end; moved earlier by SIGINT/SIGTERM */
    ld_worker *workers;
    size_t n_workers;
};

/* "NOT_FOUND" for a gRPC code; BATCH_FAILED for a batch that failed to start. */
static const char *code_name(int code)
{
    return code == CODE_NO_BATCH ? "BATCH_FAILED" : ld_status_code_name((grpc_status_code)code);
}

/* The run that SIGINT/SIGTERM cut short (they move its stop time to "now").
 * Set once before the threads start; a signal handler has no other way in. */
static ld_run *signal_run;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("ld-load: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (!p) {
        die("out of memory");
    }
    return p;
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- histogram ---------------------------------------------------------- */

static unsigned hist_index(uint64_t us)
{
    if (us < HIST_LINEAR) {
        return (unsigned)us;
    }
    unsigned e = 63u - (unsigned)__builtin_clzll(us);
    if (e > HIST_MAX_EXP) {
        return HIST_BUCKETS - 1;
    }
    unsigned sub = (unsigned)(us >> (e - HIST_SUB_BITS)) - HIST_SUB;
    return HIST_LINEAR + (e - HIST_LINEAR_BITS) * HIST_SUB + sub;
}

/* Highest value (µs) that maps to bucket i, as HdrHistogram reports it. */
static uint64_t hist_high(unsigned i)
{
    if (i < HIST_LINEAR) {
        return i;
    }
    unsigned k = i - HIST_LINEAR;
    unsigned e = HIST_LINEAR_BITS + k / HIST_SUB;
    uint64_t lo = (uint64_t)(HIST_SUB + k % HIST_SUB) << (e - HIST_SUB_BITS);
    return lo + ((uint64_t)1 << (e - HIST_SUB_BITS)) - 1;
}

static void hist_record(ld_hist *h, uint64_t ns)
{
    h->count[hist_index(ns / 1000)]++;
    h->n++;
    h->sum_ns += ns;
    if (ns > h->max_ns) {
        h->max_ns = ns;
    }
}

static void hist_merge(ld_hist *dst, const ld_hist *src)
{
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        dst->count[i] += src->count[i];
    }
    dst->n += src->n;
    dst->sum_ns += src->sum_ns;
    if (src->max_ns > dst->max_ns) {
        dst->max_ns = src->max_ns;
    }
}

/* Value (µs) at percentile p: the smallest bucket whose cumulative count
 * reaches ceil(p% of n), capped at the exact maximum. */
static double hist_percentile_us(const ld_hist *h, double p)
{
    if (h->n == 0) {
        return 0;
    }
    uint64_t want = (uint64_t)ceil(p / 100.0 * (double)h->n);
    if (want < 1) {
        want = 1;
    }
    double max_us = (double)h->max_ns / 1000.0;
    uint64_t cum = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        cum += h->count[i];
        if (cum >= want) {
            double v = (double)hist_high(i);
            return v < max_us ? v : max_us;
        }
    }
    return max_us;
}

/* ---- calls -------------------------------------------------------------- */

static void start_call(ld_slot *s)
{
    ld_worker *w = s->w;
    ld_run *r = w->run;
    const ld_opts *o = r->o;
    ld_conn *c = &r->conns[w->rr++ % r->n_conns];

    s->start_ns = mono_ns();
    gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                         gpr_time_from_millis(o->deadline_ms, GPR_TIMESPAN));
    s->call = grpc_channel_create_registered_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, w->cq,
                                                  c->reg, deadline, NULL);
    if (!s->call) {
        die("grpc_channel_create_registered_call failed");
    }
    /* SEND_MESSAGE takes over the buffer's slices; each buffer holds its own
     * ref of the one request slice, so the bytes are never copied. */
    s->send_bb = grpc_raw_byte_buffer_create(&r->request, 1);
    s->recv_bb = NULL;
    /* The arrays keep their capacity between calls; the entries point into
     * the call and die with it, so resetting the count is enough. */
    s->recv_initial.count = 0;
    s->recv_trailing.count = 0;
    s->details = grpc_empty_slice();

    grpc_op *op = s->ops;
    memset(s->ops, 0, sizeof(s->ops));
    op->op = GRPC_OP_SEND_INITIAL_METADATA;
    op->data.send_initial_metadata.count = o->n_md;
    op->data.send_initial_metadata.metadata = o->md;
    op++;
    op->op = GRPC_OP_SEND_MESSAGE;
    op->data.send_message.send_message = s->send_bb;
    op++;
    op->op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    op++;
    op->op = GRPC_OP_RECV_INITIAL_METADATA;
    op->data.recv_initial_metadata.recv_initial_metadata = &s->recv_initial;
    op++;
    op->op = GRPC_OP_RECV_MESSAGE;
    op->data.recv_message.recv_message = &s->recv_bb;
    op++;
    op->op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    op->data.recv_status_on_client.trailing_metadata = &s->recv_trailing;
    op->data.recv_status_on_client.status = &s->status;
    op->data.recv_status_on_client.status_details = &s->details;
    op++;

    grpc_call_error err = grpc_call_start_batch(s->call, s->ops, (size_t)(op - s->ops), s, NULL);
    if (err != GRPC_CALL_OK) {
        die("grpc_call_start_batch failed: %d", (int)err);
    }
    w->inflight++;
}

static void finish_call(ld_slot *s, int batch_ok, int64_t now)
{
    ld_worker *w = s->w;
    ld_run *r = w->run;
    size_t resp = s->recv_bb ? grpc_byte_buffer_length(s->recv_bb) : 0;

    w->total++;
    if (now >= r->t_measure_ns && now < atomic_load_explicit(&r->t_stop_ns, memory_order_relaxed)) {
        int code = batch_ok ? (int)s->status : CODE_NO_BATCH;
        if (code < 0 || code >= N_CODES) {
            code = GRPC_STATUS_UNKNOWN;
        }
        if (batch_ok && code == r->o->expect_status) {
            hist_record(&w->hist, (uint64_t)(now - s->start_ns));
            w->resp_bytes += resp;
        } else {
            w->errors[code]++;
            if (!w->first_error[0]) {
                size_t n = GRPC_SLICE_LENGTH(s->details);
                if (n > sizeof(w->first_error) - 64) {
                    n = sizeof(w->first_error) - 64;
                }
                snprintf(w->first_error, sizeof(w->first_error), "%s: %.*s", code_name(code),
                         (int)n, (const char *)GRPC_SLICE_START_PTR(s->details));
            }
        }
    }

    if (s->recv_bb) {
        grpc_byte_buffer_destroy(s->recv_bb);
    }
    grpc_byte_buffer_destroy(s->send_bb);
    grpc_slice_unref(s->details);
    grpc_call_unref(s->call);
    s->call = NULL;
    w->inflight--;
}

/* Calls still in flight this long after the planned end are cancelled, so a
 * stalled server cannot hold the run for a whole --deadline-ms. */
#define DRAIN_GRACE_NS 1000000000

static void *worker_main(void *arg)
{
    ld_worker *w = arg;
    ld_run *r = w->run;
    /* gpr's monotonic clock has another origin than CLOCK_MONOTONIC: map the
     * planned end + grace onto it once. */
    int64_t drain_ns = atomic_load(&r->t_stop_ns) + DRAIN_GRACE_NS - mono_ns();
    gpr_timespec drain_at =
            gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_nanos(drain_ns, GPR_TIMESPAN));

    for (size_t i = 0; i < w->n_slots; i++) {
        start_call(&w->slots[i]);
    }
    while (w->inflight > 0) {
        grpc_event ev = grpc_completion_queue_next(w->cq, drain_at, NULL);
        if (ev.type == GRPC_QUEUE_TIMEOUT) {
            for (size_t i = 0; i < w->n_slots; i++) {
                if (w->slots[i].call) {
                    grpc_call_cancel(w->slots[i].call, NULL);
                }
            }
            drain_at = gpr_inf_future(GPR_CLOCK_MONOTONIC);
            continue;
        }
        if (ev.type != GRPC_OP_COMPLETE) {
            die("unexpected completion queue event %d", (int)ev.type);
        }
        ld_slot *s = ev.tag;
        int64_t now = mono_ns();
        finish_call(s, ev.success, now);
        if (now < atomic_load_explicit(&r->t_stop_ns, memory_order_relaxed)) {
            start_call(s);
        }
    }
    return NULL;
}

/* ---- setup -------------------------------------------------------------- */

static void on_signal(int sig)
{
    (void)sig;
    int64_t now = mono_ns();
    int64_t stop = atomic_load(&signal_run->t_stop_ns);
    if (now < stop) {
        atomic_store(&signal_run->t_stop_ns, now);
    }
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        die("%s: %s", path, strerror(errno));
    }
    size_t cap = 4096, n = 0;
    char *buf = xcalloc(1, cap + 1);
    for (;;) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) {
            if (ferror(f)) {
                die("%s: read error", path);
            }
            break;
        }
        cap *= 2;
        buf = realloc(buf, cap + 1);
        if (!buf) {
            die("out of memory");
        }
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

static grpc_slice load_request(const ld_opts *o)
{
    if (o->request_file) {
        size_t n;
        char *buf = read_file(o->request_file, &n);
        grpc_slice s = grpc_slice_from_copied_buffer(buf, n);
        free(buf);
        return s;
    }
    const char *hex = o->request_hex ? o->request_hex : "";
    size_t len = strlen(hex);
    if (len % 2) {
        die("--request-hex: odd number of hex digits");
    }
    grpc_slice s = grpc_slice_malloc(len / 2);
    uint8_t *p = GRPC_SLICE_START_PTR(s);
    for (size_t i = 0; i < len; i += 2) {
        int hi = hexval((unsigned char)hex[i]), lo = hexval((unsigned char)hex[i + 1]);
        if (hi < 0 || lo < 0) {
            die("--request-hex: not a hex digit near offset %zu", i);
        }
        p[i / 2] = (uint8_t)(hi << 4 | lo);
    }
    return s;
}

static grpc_channel_credentials *make_creds(const ld_opts *o)
{
    if (!o->tls_ca && !o->tls_cert && !o->tls_key) {
        return grpc_insecure_credentials_create();
    }
    if (!o->tls_ca) {
        die("--tls-cert/--tls-key need --tls-ca");
    }
    if (!o->tls_cert != !o->tls_key) {
        die("--tls-cert and --tls-key go together");
    }
    size_t n;
    char *ca = read_file(o->tls_ca, &n);
    grpc_ssl_pem_key_cert_pair pair = {NULL, NULL};
    char *cert = NULL, *key = NULL;
    if (o->tls_cert) {
        cert = read_file(o->tls_cert, &n);
        key = read_file(o->tls_key, &n);
        pair.cert_chain = cert;
        pair.private_key = key;
    }
    grpc_channel_credentials *creds =
            grpc_ssl_credentials_create(ca, cert ? &pair : NULL, NULL, NULL);
    free(ca);
    free(cert);
    free(key);
    if (!creds) {
        die("cannot create TLS credentials");
    }
    return creds;
}

static const char *state_name(grpc_connectivity_state st)
{
    switch (st) {
    case GRPC_CHANNEL_IDLE:
        return "IDLE";
    case GRPC_CHANNEL_CONNECTING:
        return "CONNECTING";
    case GRPC_CHANNEL_READY:
        return "READY";
    case GRPC_CHANNEL_TRANSIENT_FAILURE:
        return "TRANSIENT_FAILURE";
    case GRPC_CHANNEL_SHUTDOWN:
        return "SHUTDOWN";
    }
    return "?";
}

/* Wait until the channel is READY or the timeout passes; returns the last
 * state seen. Connecting up front keeps connection setup out of the warm-up
 * and lets an unreachable target fail with a clear message. */
static grpc_connectivity_state wait_ready(grpc_channel *ch, grpc_completion_queue *cq,
                                          double timeout_s)
{
    gpr_timespec deadline =
            gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                         gpr_time_from_millis((int64_t)(timeout_s * 1000.0), GPR_TIMESPAN));
    grpc_connectivity_state st = grpc_channel_check_connectivity_state(ch, 1);
    while (st != GRPC_CHANNEL_READY && st != GRPC_CHANNEL_SHUTDOWN) {
        grpc_channel_watch_connectivity_state(ch, st, deadline, cq, NULL);
        grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        st = grpc_channel_check_connectivity_state(ch, 1);
        if (!ev.success) {
            break; /* deadline passed */
        }
    }
    return st;
}

static void open_connections(ld_run *r)
{
    const ld_opts *o = r->o;
    grpc_channel_credentials *creds = make_creds(o);
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);

    r->n_conns = (size_t)o->connections;
    r->conns = xcalloc(r->n_conns, sizeof(*r->conns));
    for (size_t i = 0; i < r->n_conns; i++) {
        grpc_arg args[6];
        size_t n = 0;
        args[n].type = GRPC_ARG_INTEGER;
        args[n].key = GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL;
        args[n++].value.integer = 1;
        /* distinct per channel, so no two channels share a subchannel */
        args[n].type = GRPC_ARG_INTEGER;
        args[n].key = "ld_load.connection";
        args[n++].value.integer = (int)i;
        args[n].type = GRPC_ARG_INTEGER;
        args[n].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
        args[n++].value.integer = -1;
        /* no hidden resends: one call on the wire per measured call */
        args[n].type = GRPC_ARG_INTEGER;
        args[n].key = GRPC_ARG_ENABLE_RETRIES;
        args[n++].value.integer = 0;
        args[n].type = GRPC_ARG_STRING;
        args[n].key = GRPC_ARG_PRIMARY_USER_AGENT_STRING;
        args[n++].value.string = "ld-load/" LD_LOAD_VERSION;
        if (o->tls_override_host) {
            args[n].type = GRPC_ARG_STRING;
            args[n].key = GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
            args[n++].value.string = (char *)o->tls_override_host;
        }
        grpc_channel_args cargs = {n, args};
        r->conns[i].ch = grpc_channel_create(o->target, creds, &cargs);
        r->conns[i].reg = grpc_channel_register_call(r->conns[i].ch, o->method, NULL, NULL);
    }
    grpc_channel_credentials_release(creds);

    for (size_t i = 0; i < r->n_conns; i++) {
        grpc_connectivity_state st = wait_ready(r->conns[i].ch, cq, o->connect_timeout_s);
        if (st != GRPC_CHANNEL_READY) {
            fprintf(stderr,
                    "ld-load: %s: target unreachable: connection %zu not ready after %.1f s "
                    "(channel state %s; is the server up, and TLS configured alike?)\n",
                    o->target, i + 1, o->connect_timeout_s, state_name(st));
            exit(1);
        }
    }
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(cq);
}

/* ---- options ------------------------------------------------------------ */

static void usage(FILE *f)
{
    fputs("Usage: ld-load --target HOST:PORT [options]\n"
          "Closed-loop unary gRPC load: --concurrency calls in flight; each completion\n"
          "records its latency and starts the next call.\n"
          "\n"
          "  --target HOST:PORT       server address (required)\n"
          "  --method /pkg.Svc/M      full method name (default /grpc.health.v1.Health/Check)\n"
          "  --request FILE           request body: a serialized protobuf message\n"
          "  --request-hex HEX        request body as hex (default: empty message)\n"
          "  --metadata KEY:VALUE     add a request header (repeatable)\n"
          "  --concurrency N          calls in flight (default 32)\n"
          "  --duration SECONDS       measured time (default 10)\n"
          "  --warmup SECONDS         unmeasured time before it (default 1)\n"
          "  --threads T              client threads, one completion queue each (default 1)\n"
          "  --connections C          TCP connections, used round-robin (default 1)\n"
          "  --deadline-ms MS         per-call deadline (default 5000)\n"
          "  --connect-timeout SEC    wait this long for every connection (default 5)\n"
          "  --tls-ca FILE            use TLS, trusting this CA bundle (PEM)\n"
          "  --tls-cert FILE          client certificate for mTLS (with --tls-key)\n"
          "  --tls-key FILE           client private key for mTLS\n"
          "  --tls-override-host NAME expected server name in the certificate\n"
          "  --expect-status N        status counted as success (default 0 = OK)\n"
          "  --json                   print one JSON line instead of text\n"
          "  --help                   this text\n"
          "\n"
          "Exit status: 0 when at least one call succeeded, 1 when the target is\n"
          "unreachable or no call succeeded, 2 on bad usage.\n",
          f);
}

static double parse_double(const char *opt, const char *s, double min, double max)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= min && v <= max)) {
        die("%s: expected a number in [%g, %g], got '%s'", opt, min, max, s);
    }
    return v;
}

static long parse_long(const char *opt, const char *s, long min, long max)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) {
        die("%s: expected an integer in [%ld, %ld], got '%s'", opt, min, max, s);
    }
    return v;
}

static void add_metadata(ld_opts *o, const char *kv)
{
    const char *colon = strchr(kv, ':');
    if (!colon || colon == kv) {
        die("--metadata: expected KEY:VALUE, got '%s'", kv);
    }
    o->md = realloc(o->md, (o->n_md + 1) * sizeof(*o->md));
    if (!o->md) {
        die("out of memory");
    }
    grpc_metadata *m = &o->md[o->n_md++];
    memset(m, 0, sizeof(*m));
    m->key = grpc_slice_from_copied_buffer(kv, (size_t)(colon - kv));
    m->value = grpc_slice_from_copied_string(colon + 1);
}

enum {
    OPT_TARGET = 256,
    OPT_METHOD,
    OPT_REQUEST,
    OPT_REQUEST_HEX,
    OPT_METADATA,
    OPT_CONCURRENCY,
    OPT_DURATION,
    OPT_WARMUP,
    OPT_THREADS,
    OPT_CONNECTIONS,
    OPT_DEADLINE_MS,
    OPT_CONNECT_TIMEOUT,
    OPT_TLS_CA,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_TLS_OVERRIDE_HOST,
    OPT_EXPECT_STATUS,
    OPT_JSON,
    OPT_HELP,
};

static void parse_args(ld_opts *o, int argc, char **argv)
{
    static const struct option longopts[] = {
            {"target", required_argument, NULL, OPT_TARGET},
            {"method", required_argument, NULL, OPT_METHOD},
            {"request", required_argument, NULL, OPT_REQUEST},
            {"request-hex", required_argument, NULL, OPT_REQUEST_HEX},
            {"metadata", required_argument, NULL, OPT_METADATA},
            {"concurrency", required_argument, NULL, OPT_CONCURRENCY},
            {"duration", required_argument, NULL, OPT_DURATION},
            {"warmup", required_argument, NULL, OPT_WARMUP},
            {"threads", required_argument, NULL, OPT_THREADS},
            {"connections", required_argument, NULL, OPT_CONNECTIONS},
            {"deadline-ms", required_argument, NULL, OPT_DEADLINE_MS},
            {"connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT},
            {"tls-ca", required_argument, NULL, OPT_TLS_CA},
            {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
            {"tls-key", required_argument, NULL, OPT_TLS_KEY},
            {"tls-override-host", required_argument, NULL, OPT_TLS_OVERRIDE_HOST},
            {"expect-status", required_argument, NULL, OPT_EXPECT_STATUS},
            {"json", no_argument, NULL, OPT_JSON},
            {"help", no_argument, NULL, OPT_HELP},
            {NULL, 0, NULL, 0},
    };

    *o = (ld_opts){
            .method = "/grpc.health.v1.Health/Check",
            .concurrency = 32,
            .duration_s = 10,
            .warmup_s = 1,
            .threads = 1,
            .connections = 1,
            .deadline_ms = 5000,
            .connect_timeout_s = 5,
    };
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_TARGET:
            o->target = optarg;
            break;
        case OPT_METHOD:
            if (optarg[0] != '/') {
                die("--method: expected /package.Service/Method, got '%s'", optarg);
            }
            o->method = optarg;
            break;
        case OPT_REQUEST:
            o->request_file = optarg;
            break;
        case OPT_REQUEST_HEX:
            o->request_hex = optarg;
            break;
        case OPT_METADATA:
            add_metadata(o, optarg);
            break;
        case OPT_CONCURRENCY:
            o->concurrency = parse_long("--concurrency", optarg, 1, 100000);
            break;
        case OPT_DURATION:
            o->duration_s = parse_double("--duration", optarg, 0.001, 86400);
            break;
        case OPT_WARMUP:
            o->warmup_s = parse_double("--warmup", optarg, 0, 86400);
            break;
        case OPT_THREADS:
            o->threads = parse_long("--threads", optarg, 1, 1024);
            break;
        case OPT_CONNECTIONS:
            o->connections = parse_long("--connections", optarg, 1, 10000);
            break;
        case OPT_DEADLINE_MS:
            o->deadline_ms = parse_long("--deadline-ms", optarg, 1, 86400000);
            break;
        case OPT_CONNECT_TIMEOUT:
            o->connect_timeout_s = parse_double("--connect-timeout", optarg, 0.001, 3600);
            break;
        case OPT_TLS_CA:
            o->tls_ca = optarg;
            break;
        case OPT_TLS_CERT:
            o->tls_cert = optarg;
            break;
        case OPT_TLS_KEY:
            o->tls_key = optarg;
            break;
        case OPT_TLS_OVERRIDE_HOST:
            o->tls_override_host = optarg;
            break;
        case OPT_EXPECT_STATUS:
            o->expect_status = parse_long("--expect-status", optarg, 0, N_CODES - 1);
            break;
        case OPT_JSON:
            o->json = 1;
            break;
        case OPT_HELP:
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            exit(2);
        }
    }
    if (optind < argc) {
        die("unexpected argument '%s' (see --help)", argv[optind]);
    }
    if (!o->target) {
        usage(stderr);
        exit(2);
    }
    if (o->request_file && o->request_hex) {
        die("--request and --request-hex are exclusive");
    }
    if (o->threads > o->concurrency) {
        o->threads = o->concurrency;
    }
}

/* ---- report ------------------------------------------------------------- */

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            fprintf(f, "\\%c", ch);
        } else if (ch < 0x20) {
            fprintf(f, "\\u%04x", ch);
        } else {
            fputc(ch, f);
        }
    }
    fputc('"', f);
}

static void fmt_us(char *buf, size_t n, double us)
{
    if (us < 1000) {
        snprintf(buf, n, "%.0f us", us);
    } else if (us < 1000000) {
        snprintf(buf, n, "%.3f ms", us / 1000);
    } else {
        snprintf(buf, n, "%.3f s", us / 1e6);
    }
}

static double tv_s(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static int report(const ld_run *r, double window_s, double elapsed_s)
{
    const ld_opts *o = r->o;
    ld_hist *h = xcalloc(1, sizeof(*h));
    uint64_t errors[N_CODES + 1] = {0};
    uint64_t n_err = 0, resp_bytes = 0, total = 0;
    const char *first_error = NULL;

    for (size_t i = 0; i < r->n_workers; i++) {
        const ld_worker *w = &r->workers[i];
        hist_merge(h, &w->hist);
        resp_bytes += w->resp_bytes;
        total += w->total;
        for (int c = 0; c <= N_CODES; c++) {
            errors[c] += w->errors[c];
            n_err += w->errors[c];
        }
        if (!first_error && w->first_error[0]) {
            first_error = w->first_error;
        }
    }
    uint64_t ok = h->n, calls = ok + n_err;
    double rps = window_s > 0 ? (double)ok / window_s : 0;
    double mean = ok ? (double)h->sum_ns / (double)ok / 1000.0 : 0;
    double p50 = hist_percentile_us(h, 50), p90 = hist_percentile_us(h, 90);
    double p99 = hist_percentile_us(h, 99), p999 = hist_percentile_us(h, 99.9);
    double max = (double)h->max_ns / 1000.0;
    double resp_mean = ok ? (double)resp_bytes / (double)ok : 0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu_user = tv_s(ru.ru_utime), cpu_sys = tv_s(ru.ru_stime);

    if (o->json) {
        FILE *f = stdout;
        fputs("{\"target\":", f);
        json_str(f, o->target);
        fputs(",\"method\":", f);
        json_str(f, o->method);
        fprintf(f,
                ",\"concurrency\":%ld,\"threads\":%ld,\"connections\":%ld"
                ",\"duration_s\":%.3f,\"calls\":%" PRIu64 ",\"ok\":%" PRIu64 ",\"errors\":%" PRIu64
                ",\"errors_by_status\":{",
                o->concurrency, o->threads, o->connections, window_s, calls, ok, n_err);
        int first = 1;
        for (int c = 0; c <= N_CODES; c++) {
            if (errors[c]) {
                fprintf(f, "%s\"%s\":%" PRIu64, first ? "" : ",", code_name(c), errors[c]);
                first = 0;
            }
        }
        fprintf(f,
                "},\"rps\":%.1f,\"mean_us\":%.1f,\"p50_us\":%.0f,\"p90_us\":%.0f"
                ",\"p99_us\":%.0f,\"p999_us\":%.0f,\"max_us\":%.0f,\"resp_bytes_mean\":%.1f"
                ",\"calls_total\":%" PRIu64 ",\"elapsed_s\":%.3f"
                ",\"client_cpu_user_s\":%.3f,\"client_cpu_sys_s\":%.3f",
                rps, mean, p50, p90, p99, p999, max, resp_mean, total, elapsed_s, cpu_user,
                cpu_sys);
        if (first_error) {
            fputs(",\"first_error\":", f);
            json_str(f, first_error);
        }
        fputs("}\n", f);
    } else {
        char b50[32], b90[32], b99[32], b999[32], bmax[32], bmean[32];
        fmt_us(b50, sizeof(b50), p50);
        fmt_us(b90, sizeof(b90), p90);
        fmt_us(b99, sizeof(b99), p99);
        fmt_us(b999, sizeof(b999), p999);
        fmt_us(bmax, sizeof(bmax), max);
        fmt_us(bmean, sizeof(bmean), mean);
        printf("target      %s %s\n", o->target, o->method);
        printf("load        %ld in flight, %ld thread(s), %ld connection(s), %.1f s warm-up\n",
               o->concurrency, o->threads, o->connections, o->warmup_s);
        printf("measured    %.3f s\n", window_s);
        printf("calls       %" PRIu64 " (ok %" PRIu64 ", errors %" PRIu64 ")\n", calls, ok, n_err);
        printf("calls/s     %.1f\n", rps);
        printf("latency     mean %s  p50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n", bmean, b50, b90,
               b99, b999, bmax);
        printf("response    %.1f bytes mean\n", resp_mean);
        printf("client      %.2f s user + %.2f s sys CPU over %.2f s, %" PRIu64
               " calls in all (warm-up and drain included)\n",
               cpu_user, cpu_sys, elapsed_s, total);
        for (int c = 0; c <= N_CODES; c++) {
            if (errors[c]) {
                printf("errors      %-20s %" PRIu64 "\n", code_name(c), errors[c]);
            }
        }
        if (first_error) {
            printf("first error %s\n", first_error);
        }
    }
    fflush(stdout);
    free(h);

    if (calls == 0) {
        fprintf(stderr, "ld-load: no call completed in the measured time (server stalled?)\n");
        return 1;
    }
    if (ok == 0) {
        fprintf(stderr, "ld-load: no call succeeded; first error: %s\n",
                first_error ? first_error : "?");
        return 1;
    }
    return 0;
}

/* ---- main --------------------------------------------------------------- */

int main(int argc, char **argv)
{
    ld_opts o;
    parse_args(&o, argc, argv);

    grpc_init();
    ld_run r = {.o = &o};
    r.request = load_request(&o);
    open_connections(&r);

    r.n_workers = (size_t)o.threads;
    r.workers = xcalloc(r.n_workers, sizeof(*r.workers));
    for (size_t i = 0; i < r.n_workers; i++) {
        ld_worker *w = &r.workers[i];
        w->run = &r;
        w->idx = (unsigned)i;
        w->rr = (unsigned)i; /* threads start on different connections */
        w->cq = grpc_completion_queue_create_for_next(NULL);
        /* slot k goes to thread k % T */
        w->n_slots = (size_t)o.concurrency / r.n_workers +
                     (i < (size_t)o.concurrency % r.n_workers ? 1 : 0);
        w->slots = xcalloc(w->n_slots, sizeof(*w->slots));
        for (size_t k = 0; k < w->n_slots; k++) {
            w->slots[k].w = w;
            grpc_metadata_array_init(&w->slots[k].recv_initial);
            grpc_metadata_array_init(&w->slots[k].recv_trailing);
        }
    }

    r.t_start_ns = mono_ns();
    r.t_measure_ns = r.t_start_ns + (int64_t)(o.warmup_s * 1e9);
    atomic_init(&r.t_stop_ns, r.t_measure_ns + (int64_t)(o.duration_s * 1e9));

    signal_run = &r;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    for (size_t i = 0; i < r.n_workers; i++) {
        int err = pthread_create(&r.workers[i].th, NULL, worker_main, &r.workers[i]);
        if (err) {
            die("pthread_create: %s", strerror(err));
        }
    }
    for (size_t i = 0; i < r.n_workers; i++) {
        pthread_join(r.workers[i].th, NULL);
    }

    int64_t stop = atomic_load(&r.t_stop_ns);
    double window_s = stop > r.t_measure_ns ? (double)(stop - r.t_measure_ns) / 1e9 : 0;
    double elapsed_s = (double)(mono_ns() - r.t_start_ns) / 1e9;
    int rc = report(&r, window_s, elapsed_s);

    for (size_t i = 0; i < r.n_workers; i++) {
        ld_worker *w = &r.workers[i];
        grpc_completion_queue_shutdown(w->cq);
        while (grpc_completion_queue_next(w->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
               GRPC_QUEUE_SHUTDOWN) {
        }
        grpc_completion_queue_destroy(w->cq);
        for (size_t k = 0; k < w->n_slots; k++) {
            grpc_metadata_array_destroy(&w->slots[k].recv_initial);
            grpc_metadata_array_destroy(&w->slots[k].recv_trailing);
        }
        free(w->slots);
    }
    free(r.workers);
    for (size_t i = 0; i < r.n_conns; i++) {
        grpc_channel_destroy(r.conns[i].ch);
    }
    free(r.conns);
    for (size_t i = 0; i < o.n_md; i++) {
        grpc_slice_unref(o.md[i].key);
        grpc_slice_unref(o.md[i].value);
    }
    free(o.md);
    grpc_slice_unref(r.request);
    grpc_shutdown();
    return rc;
}
