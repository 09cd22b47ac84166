/* ol_store_redis: the online store on a single Redis, in Feast's layout
 * (feast-protocols.md §1.5.2): one hash per entity and project, keyed
 * serialize_entity_key(v3) ‖ utf8(project); a field per feature named by the
 * 4-byte murmur3 of "view:feature" holding serialized Value bytes, and
 * "_ts:<view>" holding the serialized google.protobuf.Timestamp of the row's
 * event time.
 *
 * Threads. One I/O thread runs a libevent loop that owns every hiredis
 * (async) context. read() and write() run on the caller's thread: they
 * format all the request's commands into one buffer (RESP, ready to send),
 * queue the request under a mutex and wake the loop with event_active(); they
 * never wait on Redis. The loop hands the commands of one request to one
 * connection of a small pool (round-robin), so a request is pipelined and
 * concurrent requests share the sockets; it calls `done` once all replies
 * arrived, on a reply error, on a lost connection or at the deadline.
 *
 * Requests. A request's tracking object (rd_req) is ours, not the caller's:
 * hiredis callbacks keep pointing at it after `done` ran (deadline, early
 * error), so it lives until the last callback hiredis owes for it. Once done
 * ran, the caller's ol_read/ol_write and its arena are never touched again.
 * Replies of one connection come back in order, so the i-th reply of a
 * request answers its i-th command.
 *
 * Writes. Last-event-time-wins per view and entity, as Feast, but atomic:
 * each row is one EVALSHA of a script that decodes the stored "_ts:<view>"
 * Timestamp, and HSETs (plus EXPIRE) only when the new event time is strictly
 * newer. The rows of a batch run in order on one connection, so a key given
 * twice keeps the latest event time, as Feast's batch dedup does. skip_dedup
 * sends a plain HSET (and EXPIRE) per row. A NOSCRIPT error (SCRIPT FLUSH)
 * resends that row as EVAL.
 *
 * Failure. A request arriving while no connection is up fails at once with
 * UNAVAILABLE; requests on a connection that drops fail with UNAVAILABLE.
 * Each connection reconnects in the background with exponential backoff
 * (50 ms doubling to 800 ms), so a restarted Redis is used again within a
 * second. healthy() reads a counter of ready connections.
 *
 * Callers. `done` runs on the I/O thread (or inside read()/write() for an
 * empty request): keep it short, and never free the store from it. Between
 * read() and done the I/O thread allocates the values from r->arena, so the
 * caller must not use that arena meanwhile. A deadline of 0 counts as none,
 * like INT64_MAX. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>

#include "ld_hash.h"
#include "ld_log.h"
#include "ld_murmur3.h"
#include "ld_time.h"
#include "ol_store.h"

#define RD_NCONN              3       /* connections per store, round-robin */
#define RD_BACKOFF_MIN_US     50000   /* first reconnect delay */
#define RD_BACKOFF_MAX_US     800000  /* reconnect delay cap */
#define RD_CONNECT_TIMEOUT_US 1000000 /* connect + AUTH/SELECT/SCRIPT LOAD */
#define RD_STARTUP_WAIT_US    2000000 /* ol_store_redis_new waits this long for Redis */
#define RD_DEFAULT_PORT       6379

/* The write script. KEYS[1] the hash; ARGV[1] "_ts:<view>", ARGV[2] the
 * Timestamp bytes, ARGV[3] its seconds, ARGV[4] its nanos, ARGV[5] the TTL
 * (0: none), ARGV[6..] feature field/value pairs. dec() reads the stored
 * Timestamp's varints (fields 1 and 2, 64-bit two's complement, kept exact in
 * Lua's doubles by splitting at bit 49); an unreadable one is overwritten. */
static const char rd_script[] = "local function dec(b)\n"
                                "  local s, n, i, len = 0, 0, 1, #b\n"
                                "  while i <= len do\n"
                                "    local tag = string.byte(b, i)\n"
                                "    if tag ~= 8 and tag ~= 16 then return nil end\n"
                                "    i = i + 1\n"
                                "    local lo, hi, j, c = 0, 0, 0, 128\n"
                                "    while c >= 128 do\n"
                                "      c = string.byte(b, i)\n"
                                "      if c == nil or j > 9 then return nil end\n"
                                "      i = i + 1\n"
                                "      if j < 7 then lo = lo + (c % 128) * 128 ^ j\n"
                                "      else hi = hi + (c % 128) * 128 ^ (j - 7) end\n"
                                "      j = j + 1\n"
                                "    end\n"
                                "    hi = hi % 32768\n"
                                "    if hi >= 16384 then hi = hi - 32768 end\n"
                                "    local v = lo + hi * 562949953421312\n"
                                "    if tag == 8 then s = v else n = v end\n"
                                "  end\n"
                                "  return s, n\n"
                                "end\n"
                                "local cur = redis.call('HGET', KEYS[1], ARGV[1])\n"
                                "if cur then\n"
                                "  local s, n = dec(cur)\n"
                                "  if s then\n"
                                "    local ns, nn = tonumber(ARGV[3]), tonumber(ARGV[4])\n"
                                "    if ns < s or (ns == s and nn <= n) then return 0 end\n"
                                "  end\n"
                                "end\n"
                                "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])\n"
                                "local i, last = 6, #ARGV\n"
                                "while i <= last do\n"
                                "  local j = i + 999\n"
                                "  if j > last then j = last end\n"
                                "  redis.call('HSET', KEYS[1], unpack(ARGV, i, j))\n"
                                "  i = j + 1\n"
                                "end\n"
                                "local ttl = tonumber(ARGV[5])\n"
                                "if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end\n"
                                "return 1\n";

static char rd_script_sha[41]; /* SHA-1 of rd_script, hex; set once */
static pthread_once_t rd_once = PTHREAD_ONCE_INIT;

typedef struct rd_store rd_store;

enum { RD_DOWN, RD_CONNECTING, RD_READY };

typedef struct rd_conn {
    rd_store *s;
    int id;
    redisAsyncContext *ac; /* NULL when down */
    int state;
    int setup_pending; /* AUTH/SELECT/SCRIPT LOAD replies still due */
    int setup_failed;
    int failing; /* in a streak of failed attempts (logged once) */
    int tried;   /* the first attempt concluded (startup wait) */
    int dirty;   /* commands appended since the last flush */
    int64_t backoff_us;
    struct event *timer; /* reconnect delay, or connect timeout */
    /* Reply objects are built here by rd_reply_fns instead of one malloc per
     * element; rewound after every reply callback (hiredis parses the next
     * reply only after the previous one's callback returned). */
    ld_arena replies;
    char replies_first[16384];
} rd_conn;

enum { RD_READ, RD_WRITE };

typedef struct rd_req {
    struct rd_req *next; /* submit queue */
    rd_store *s;
    int kind;
    ol_read *r;
    ol_write *w;
    int64_t deadline_us;
    ld_buf cmds;     /* every command, formatted; freed once handed to hiredis */
    size_t *cmd_len; /* [command] */
    size_t n_cmds;
    size_t n_replies; /* replies seen, in command order */
    size_t pending;   /* callbacks hiredis still owes for this request */
    /* read: command i is one HMGET on one entity key, answering the (group,
     * key) pairs members[first[i] .. first[i + 1]) in field order */
    size_t *first;
    struct rd_member {
        uint32_t g;
        uint32_t k;
    } * members;
    int finished; /* done ran: r/w belong to the caller again */
    struct event *deadline_ev;
    ld_status st;
} rd_req;

struct rd_store {
    ol_store base;
    /* connection string */
    char *host;
    int port;
    char *username;
    char *password;
    int db;
    char addr[300]; /* "host:port" for messages */
    int key_ttl_seconds;
    int skip_dedup;

    struct event_base *evb;
    struct event *wake_ev;
    struct event *stop_ev;
    pthread_t thread;
    int thread_started;
    int loop_stopping; /* I/O thread only */
    unsigned rr;       /* I/O thread only */
    int ready;         /* READY connections; atomic */

    pthread_mutex_t mu; /* guards what follows */
    pthread_cond_t cond;
    rd_req *q_head, *q_tail;
    int stopping;
    int n_tried;
    char last_err[256];

    rd_conn conns[RD_NCONN];
};

/* ------------------------------------------------------------------------ */
/* Reply objects: hiredis's reader builds them through these, in the
 * connection's arena (task->privdata), as plain redisReply structs. They are
 * only read inside a reply callback; rd_replies_done() rewinds the arena when
 * the callback is over, and freeObject has nothing to do. */

static void *rp_new(const redisReadTask *t, int type, size_t extra)
{
    redisReply *r = ld_arena_alloc(t->privdata, sizeof(*r) + extra);
    if (!r)
        return NULL;
    memset(r, 0, sizeof(*r));
    r->type = type;
    if (t->parent) {
        redisReply *p = t->parent->obj;
        p->element[t->idx] = r;
    }
    return r;
}

static void *rp_string(const redisReadTask *t, char *str, size_t len)
{
    redisReply *r = rp_new(t, t->type, len + 1);
    if (!r)
        return NULL;
    r->str = (char *)(r + 1);
    memcpy(r->str, str, len);
    r->str[len] = '\0';
    r->len = len;
    return r;
}

static void *rp_array(const redisReadTask *t, int n)
{
    size_t cnt = n > 0 ? (size_t)n : 0;
    redisReply *r = rp_new(t, REDIS_REPLY_ARRAY, cnt * sizeof(redisReply *));
    if (!r)
        return NULL;
    r->elements = cnt;
    r->element = cnt ? (redisReply **)(r + 1) : NULL;
    return r;
}

static void *rp_integer(const redisReadTask *t, long long v)
{
    redisReply *r = rp_new(t, REDIS_REPLY_INTEGER, 0);
    if (r)
        r->integer = v;
    return r;
}

static void *rp_nil(const redisReadTask *t)
{
    return rp_new(t, REDIS_REPLY_NIL, 0);
}

static void rp_free(void *obj)
{
    (void)obj;
}

static redisReplyObjectFunctions rd_reply_fns = {
        .createString = rp_string,
        .createArray = rp_array,
        .createInteger = rp_integer,
        .createNil = rp_nil,
        .freeObject = rp_free,
};

/* Call last in every reply callback: the reply is garbage from here on. */
static void rd_replies_done(const redisAsyncContext *ac)
{
    ld_arena_reset(ac->c.reader->privdata);
}

/* ------------------------------------------------------------------------ */
/* SHA-1 (for EVALSHA; the script is fixed, so its digest is computed once). */

static uint32_t rol32(uint32_t x, int n)
{
    return (x << n) | (x >> (32 - n));
}

static void sha1_hex(const char *msg, size_t len, char out[41])
{
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    size_t nblk = (len + 9 + 63) / 64;
    uint64_t bits = (uint64_t)len * 8;
    for (size_t b = 0; b < nblk; b++) {
        uint8_t blk[64];
        for (size_t i = 0; i < 64; i++) {
            size_t pos = b * 64 + i;
            if (pos < len)
                blk[i] = (uint8_t)msg[pos];
            else if (pos == len)
                blk[i] = 0x80;
            else if (pos >= nblk * 64 - 8)
                blk[i] = (uint8_t)(bits >> (8 * (nblk * 64 - 1 - pos)));
            else
                blk[i] = 0;
        }
        uint32_t w[80];
        for (int i = 0; i < 16; i++)
            w[i] = (uint32_t)blk[4 * i] << 24 | (uint32_t)blk[4 * i + 1] << 16 |
                   (uint32_t)blk[4 * i + 2] << 8 | blk[4 * i + 3];
        for (int i = 16; i < 80; i++)
            w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
        uint32_t a = h[0], bb = h[1], c = h[2], d = h[3], e = h[4];
        for (int i = 0; i < 80; i++) {
            uint32_t f, k;
            if (i < 20) {
                f = (bb & c) | (~bb & d);
                k = 0x5A827999;
            } else if (i < 40) {
                f = bb ^ c ^ d;
                k = 0x6ED9EBA1;
            } else if (i < 60) {
                f = (bb & c) | (bb & d) | (c & d);
                k = 0x8F1BBCDC;
            } else {
                f = bb ^ c ^ d;
                k = 0xCA62C1D6;
            }
            uint32_t t = rol32(a, 5) + f + e + k + w[i];
            e = d;
            d = c;
            c = rol32(bb, 30);
            bb = a;
            a = t;
        }
        h[0] += a;
        h[1] += bb;
        h[2] += c;
        h[3] += d;
        h[4] += e;
    }
    for (int i = 0; i < 5; i++)
        snprintf(out + 8 * i, 9, "%08x", h[i]);
}

static void rd_init_once(void)
{
    /* libevent must lock its bases: requests are queued (event_active) from
     * other threads. Idempotent with other users of libevent in the process. */
    evthread_use_pthreads();
    sha1_hex(rd_script, sizeof(rd_script) - 1, rd_script_sha);
}

/* ------------------------------------------------------------------------ */
/* Wire formats: RESP commands, protobuf Timestamps. */

static char *put_udec(char *p, uint64_t v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

static char *put_sdec(char *p, int64_t v)
{
    if (v < 0) {
        *p++ = '-';
        return put_udec(p, (uint64_t)0 - (uint64_t)v);
    }
    return put_udec(p, (uint64_t)v);
}

/* "*<n>\r\n" or "$<n>\r\n" */
static void resp_hdr(ld_buf *b, char c, size_t n)
{
    char *start = ld_buf_reserve(b, 32), *p = start;
    *p++ = c;
    p = put_udec(p, n);
    *p++ = '\r';
    *p++ = '\n';
    b->len += (size_t)(p - start);
    b->data[b->len] = '\0';
}

/* One bulk string made of two pieces (the Redis key is entity key ‖ project). */
static void resp_arg2(ld_buf *b, const void *p1, size_t n1, const void *p2, size_t n2)
{
    resp_hdr(b, '$', n1 + n2);
    char *dst = ld_buf_reserve(b, n1 + n2 + 2);
    if (n1)
        memcpy(dst, p1, n1);
    if (n2)
        memcpy(dst + n1, p2, n2);
    dst[n1 + n2] = '\r';
    dst[n1 + n2 + 1] = '\n';
    b->len += n1 + n2 + 2;
    b->data[b->len] = '\0';
}

static void resp_arg(ld_buf *b, const void *p, size_t n)
{
    resp_arg2(b, p, n, NULL, 0);
}

static void resp_str(ld_buf *b, const char *s)
{
    resp_arg(b, s, strlen(s));
}

static void resp_int(ld_buf *b, int64_t v)
{
    char tmp[24];
    char *e = put_sdec(tmp, v);
    resp_arg(b, tmp, (size_t)(e - tmp));
}

static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

/* google.protobuf.Timestamp of us (µs since the epoch), as Python's
 * SerializeToString writes it: zero fields omitted, nanos in [0, 1e9). */
static size_t ts_encode(int64_t us, uint8_t out[24], int64_t *sec_out, int64_t *nanos_out)
{
    int64_t sec = us / 1000000, rem = us % 1000000;
    if (rem < 0) {
        rem += 1000000;
        sec -= 1;
    }
    int64_t nanos = rem * 1000;
    size_t n = 0;
    if (sec) {
        out[n++] = 0x08;
        n += put_varint(out + n, (uint64_t)sec);
    }
    if (nanos) {
        out[n++] = 0x10;
        n += put_varint(out + n, (uint64_t)nanos);
    }
    *sec_out = sec;
    *nanos_out = nanos;
    return n;
}

static int get_varint(const uint8_t *p, size_t n, size_t *i, uint64_t *v)
{
    uint64_t r = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*i >= n)
            return -1;
        uint8_t c = p[(*i)++];
        r |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *v = r;
            return 0;
        }
    }
    return -1;
}

/* Event time (µs) of stored Timestamp bytes; -1 when malformed. */
static int ts_decode(const uint8_t *p, size_t n, int64_t *us)
{
    int64_t sec = 0, nanos = 0;
    size_t i = 0;
    while (i < n) {
        uint64_t tag, v;
        if (get_varint(p, n, &i, &tag) < 0)
            return -1;
        switch (tag & 7) {
        case 0:
            if (get_varint(p, n, &i, &v) < 0)
                return -1;
            if (tag >> 3 == 1)
                sec = (int64_t)v;
            else if (tag >> 3 == 2)
                nanos = (int32_t)v;
            break;
        case 1:
            if (n - i < 8)
                return -1;
            i += 8;
            break;
        case 5:
            if (n - i < 4)
                return -1;
            i += 4;
            break;
        case 2:
            if (get_varint(p, n, &i, &v) < 0 || v > n - i)
                return -1;
            i += (size_t)v;
            break;
        default:
            return -1;
        }
    }
    int64_t r;
    if (__builtin_mul_overflow(sec, (int64_t)1000000, &r) ||
        __builtin_add_overflow(r, nanos / 1000, &r))
        return -1;
    *us = r;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Connection string: "host:port[,host:port...][,key=value...]" as Feast's
 * RedisOnlineStore._parse_connection_string reads it (values may be JSON,
 * only the first host:port is used for a single Redis). */

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    return s;
}

/* A JSON string value ("abc") loses its quotes; anything else stays as written. */
static char *unquote(char *v)
{
    size_t n = strlen(v);
    if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
        v[n - 1] = '\0';
        return v + 1;
    }
    return v;
}

static int parse_int(const char *v, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (!*v || *end || errno || x < lo || x > hi)
        return -1;
    *out = x;
    return 0;
}

static int parse_hostport(rd_store *s, char *tok, ld_status *st)
{
    char *host = tok, *port = NULL;
    if (tok[0] == '[') { /* [v6]:port */
        char *close = strchr(tok, ']');
        if (!close)
            return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                                 "online_store.connection_string: bad address '%s'", tok);
        *close = '\0';
        host = tok + 1;
        if (close[1] == ':')
            port = close + 2;
        else if (close[1])
            return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                                 "online_store.connection_string: bad address '%s'", tok);
    } else {
        char *colon = strchr(tok, ':');
        if (colon) {
            *colon = '\0';
            port = colon + 1;
        }
    }
    long p = RD_DEFAULT_PORT;
    if (port && parse_int(port, 1, 65535, &p) < 0)
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "online_store.connection_string: bad port '%s'", port);
    s->host = strdup(*host ? host : "localhost");
    s->port = (int)p;
    return 0;
}

static int is_false(const char *v)
{
    return !*v || !strcasecmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "null") ||
           !strcasecmp(v, "none");
}

static int parse_connection_string(rd_store *s, const char *cs, ld_status *st)
{
    char *copy = strdup(cs ? cs : "");
    int rc = 0;
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok && rc == 0; tok = strtok_r(NULL, ",", &save)) {
        tok = trim(tok);
        if (!*tok)
            continue;
        char *eq = strchr(tok, '=');
        if (!eq) {
            if (!s->host)
                rc = parse_hostport(s, tok, st);
            else
                ld_warn("redis: online_store.connection_string: only the first address is used "
                        "for redis_type redis; ignoring '%s'",
                        tok);
            continue;
        }
        *eq = '\0';
        char *k = trim(tok), *v = unquote(trim(eq + 1));
        long x;
        if (!strcmp(k, "password")) {
            free(s->password);
            s->password = strdup(v);
        } else if (!strcmp(k, "username")) {
            free(s->username);
            s->username = strdup(v);
        } else if (!strcmp(k, "db")) {
            if (parse_int(v, 0, INT_MAX, &x) < 0)
                rc = ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                                   "online_store.connection_string: db must be a non-negative "
                                   "integer, got '%s'",
                                   v);
            else
                s->db = (int)x;
        } else if (!strcmp(k, "ssl")) {
            if (!is_false(v))
                rc = ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                                   "online_store.connection_string: ssl=%s: TLS to Redis is not "
                                   "supported by this build of larder-online (hiredis 0.14 has no "
                                   "TLS); connect to Redis without TLS or through a TLS tunnel",
                                   v);
        } else {
            ld_warn("redis: online_store.connection_string: ignoring unsupported option '%s'", k);
        }
    }
    free(copy);
    if (rc == 0 && !s->host) {
        s->host = strdup("localhost");
        s->port = RD_DEFAULT_PORT;
    }
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Request lifecycle (I/O thread unless noted). */

static void set_last_err(rd_store *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_last_err(rd_store *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&s->mu);
    vsnprintf(s->last_err, sizeof(s->last_err), fmt, ap);
    pthread_mutex_unlock(&s->mu);
    va_end(ap);
}

/* Any thread. */
static int set_unavailable(rd_store *s, ld_status *st)
{
    char why[sizeof(s->last_err)];
    pthread_mutex_lock(&s->mu);
    memcpy(why, s->last_err, sizeof(why));
    pthread_mutex_unlock(&s->mu);
    return ld_status_set(st, GRPC_STATUS_UNAVAILABLE, NULL, "Redis at %s is unavailable%s%s",
                         s->addr, why[0] ? ": " : "", why);
}

static void req_free(rd_req *q)
{
    if (q->deadline_ev)
        event_free(q->deadline_ev);
    ld_buf_free(&q->cmds);
    free(q->cmd_len);
    free(q->first);
    free(q->members);
    free(q);
}

static void req_finish(rd_req *q)
{
    q->finished = 1;
    if (q->deadline_ev)
        event_del(q->deadline_ev);
    if (q->kind == RD_READ)
        q->r->done(q->r, &q->st);
    else
        q->w->done(q->w, &q->st);
}

/* Finish now with an error; later replies are ignored. */
static void req_fail(rd_req *q, grpc_status_code code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void req_fail(rd_req *q, grpc_status_code code, const char *fmt, ...)
{
    if (q->finished)
        return;
    va_list ap;
    va_start(ap, fmt);
    ld_status_setv(&q->st, code, NULL, fmt, ap);
    va_end(ap);
    req_finish(q);
}

/* Free the request once hiredis owes nothing more for it. */
static void req_settle(rd_req *q)
{
    if (q->pending)
        return;
    if (!q->finished)
        req_finish(q);
    req_free(q);
}

/* Redis errors that mean "try again later" rather than a bug. */
static grpc_status_code error_code(const char *msg)
{
    static const char *const transient[] = {"LOADING",  "BUSY",        "READONLY", "MASTERDOWN",
                                            "TRYAGAIN", "CLUSTERDOWN", "NOAUTH",   NULL};
    for (int i = 0; transient[i]; i++)
        if (!strncmp(msg, transient[i], strlen(transient[i])))
            return GRPC_STATUS_UNAVAILABLE;
    if (!strncmp(msg, "OOM", 3))
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    return GRPC_STATUS_INTERNAL;
}

static void fail_lost(rd_req *q, const redisAsyncContext *ac)
{
    rd_store *s = q->s;
    if (s->loop_stopping)
        req_fail(q, GRPC_STATUS_UNAVAILABLE, "the Redis online store is shutting down");
    else
        req_fail(q, GRPC_STATUS_UNAVAILABLE, "Redis at %s is unavailable: %s", s->addr,
                 ac->errstr && ac->errstr[0] ? ac->errstr : "connection lost");
}

static const uint8_t rd_empty[1];

/* Reply i answers command i: the fields of every (group, key) sharing one
 * entity key, each group's features followed by its "_ts:<view>". */
static void read_reply(rd_req *q, size_t i, redisReply *rep)
{
    ol_read *r = q->r;
    if (rep->type == REDIS_REPLY_ERROR) {
        req_fail(q, error_code(rep->str), "Redis HMGET on %s: %s", q->s->addr, rep->str);
        return;
    }
    size_t m0 = q->first[i], m1 = q->first[i + 1], want = 0;
    for (size_t m = m0; m < m1; m++)
        want += r->groups[q->members[m].g].n_features + 1;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != want) {
        req_fail(q, GRPC_STATUS_INTERNAL, "Redis HMGET on %s: unexpected reply (type %d)",
                 q->s->addr, rep->type);
        return;
    }
    size_t bytes = 0;
    for (size_t e = 0; e < want; e++) {
        const redisReply *el = rep->element[e];
        if (el->type == REDIS_REPLY_STRING)
            bytes += el->len;
        else if (el->type != REDIS_REPLY_NIL) {
            req_fail(q, GRPC_STATUS_INTERNAL, "Redis HMGET on %s: unexpected field (type %d)",
                     q->s->addr, el->type);
            return;
        }
    }
    uint8_t *dst = NULL;
    if (bytes && !(dst = ld_arena_alloc(r->arena, bytes))) {
        req_fail(q, GRPC_STATUS_RESOURCE_EXHAUSTED,
                 "the feature values read from Redis exceed the request's memory limit");
        return;
    }
    redisReply *const *el = rep->element;
    for (size_t m = m0; m < m1; m++) {
        ol_read_group *gr = &r->groups[q->members[m].g];
        size_t k = q->members[m].k, nf = gr->n_features;
        const uint8_t **val = gr->val + k * nf;
        size_t *val_len = gr->val_len + k * nf;
        int found = 0;
        for (size_t f = 0; f < nf; f++) {
            const redisReply *e = el[f];
            if (e->type == REDIS_REPLY_NIL) {
                val[f] = NULL;
                val_len[f] = 0;
                continue;
            }
            found = 1;
            if (e->len) {
                memcpy(dst, e->str, e->len);
                val[f] = dst;
                dst += e->len;
            } else {
                val[f] = rd_empty;
            }
            val_len[f] = e->len;
        }
        const redisReply *ts = el[nf];
        int64_t us = 0;
        if (ts->type == REDIS_REPLY_STRING) {
            found = 1;
            if (ts_decode((const uint8_t *)ts->str, ts->len, &us) < 0)
                us = 0;
        }
        gr->found[k] = (uint8_t)found;
        gr->event_ts_us[k] = us;
        el += nf + 1;
    }
}

static size_t format_row(ld_buf *b, const rd_store *s, const ol_write *w, size_t row, int eval,
                         size_t lens[2]);

static void on_retry_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    rd_req *q = priv;
    redisReply *rep = reply;
    q->pending--;
    if (!rep)
        fail_lost(q, ac);
    else if (rep->type == REDIS_REPLY_ERROR)
        req_fail(q, error_code(rep->str), "Redis EVAL on %s: %s", q->s->addr, rep->str);
    req_settle(q);
    rd_replies_done(ac);
}

static void write_reply(rd_req *q, redisAsyncContext *ac, size_t i, redisReply *rep)
{
    rd_store *s = q->s;
    if (rep->type != REDIS_REPLY_ERROR)
        return;
    if (!s->skip_dedup && !strncmp(rep->str, "NOSCRIPT", 8)) {
        /* the script cache was flushed: send this row's script in full */
        ld_buf b = LD_BUF_INIT;
        size_t lens[2];
        format_row(&b, s, q->w, i, 1, lens);
        if (redisAsyncFormattedCommand(ac, on_retry_reply, q, b.data, b.len) == REDIS_OK)
            q->pending++;
        else
            fail_lost(q, ac);
        ld_buf_free(&b);
        return;
    }
    req_fail(q, error_code(rep->str), "Redis %s on %s: %s", s->skip_dedup ? "HSET" : "EVALSHA",
             s->addr, rep->str);
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    rd_req *q = priv;
    size_t i = q->n_replies++;
    q->pending--;
    if (!q->finished) {
        if (!reply)
            fail_lost(q, ac);
        else if (q->kind == RD_READ)
            read_reply(q, i, reply);
        else
            write_reply(q, ac, i, reply);
    }
    req_settle(q);
    rd_replies_done(ac);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    rd_req *q = arg;
    /* pending > 0 here (else the request would be finished and freed); the
     * late replies find it finished and free it */
    req_fail(q, GRPC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded waiting for Redis at %s",
             q->s->addr);
}

static rd_conn *pick_conn(rd_store *s)
{
    for (unsigned i = 0; i < RD_NCONN; i++) {
        rd_conn *c = &s->conns[(s->rr + i) % RD_NCONN];
        if (c->state == RD_READY) {
            s->rr = (unsigned)c->id + 1;
            return c;
        }
    }
    return NULL;
}

static void dispatch(rd_store *s, rd_req *q)
{
    if (q->deadline_us > 0 && q->deadline_us != INT64_MAX) {
        int64_t left = q->deadline_us - ld_mono_us();
        if (left <= 0) {
            req_fail(q, GRPC_STATUS_DEADLINE_EXCEEDED,
                     "deadline exceeded before the request was sent to Redis at %s", s->addr);
            req_free(q);
            return;
        }
        q->deadline_ev = evtimer_new(s->evb, on_deadline, q);
        struct timeval tv = {.tv_sec = left / 1000000, .tv_usec = left % 1000000};
        evtimer_add(q->deadline_ev, &tv);
    }
    rd_conn *c = pick_conn(s);
    if (!c) {
        ld_status_clear(&q->st);
        set_unavailable(s, &q->st);
        req_finish(q);
        req_free(q);
        return;
    }
    const char *p = q->cmds.data;
    for (size_t i = 0; i < q->n_cmds; i++) {
        if (redisAsyncFormattedCommand(c->ac, on_reply, q, p, q->cmd_len[i]) != REDIS_OK) {
            req_fail(q, GRPC_STATUS_UNAVAILABLE, "Redis at %s: connection is closing", s->addr);
            break;
        }
        q->pending++;
        p += q->cmd_len[i];
    }
    c->dirty = 1;
    ld_buf_free(&q->cmds);
    free(q->cmd_len);
    q->cmd_len = NULL;
    req_settle(q);
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    rd_store *s = arg;
    pthread_mutex_lock(&s->mu);
    rd_req *q = s->q_head;
    s->q_head = s->q_tail = NULL;
    pthread_mutex_unlock(&s->mu);
    while (q) {
        rd_req *next = q->next;
        dispatch(s, q);
        q = next;
    }
    /* Send now rather than on the next loop turn (saves an epoll round):
     * everything queued so far goes out in one write per connection. */
    for (int i = 0; i < RD_NCONN; i++) {
        rd_conn *c = &s->conns[i];
        if (c->dirty && c->ac) {
            c->dirty = 0;
            redisAsyncHandleWrite(c->ac); /* may drop the connection (conn_lost) */
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Connections (I/O thread). */

static void conn_start(rd_conn *c);

static void note_tried(rd_conn *c)
{
    rd_store *s = c->s;
    if (c->tried)
        return;
    c->tried = 1;
    pthread_mutex_lock(&s->mu);
    s->n_tried++;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
}

static void conn_schedule(rd_conn *c, int64_t us)
{
    struct timeval tv = {.tv_sec = us / 1000000, .tv_usec = us % 1000000};
    event_del(c->timer);
    evtimer_add(c->timer, &tv);
}

/* The context ac of c is gone or going (hiredis frees it): mark c down and
 * retry later. Ignores a stale ac (one c no longer uses). */
static void conn_lost(rd_conn *c, const redisAsyncContext *ac, const char *why)
{
    rd_store *s = c->s;
    if (c->ac != ac)
        return;
    c->ac = NULL;
    if (why && *why)
        set_last_err(s, "%s", why);
    if (c->state == RD_READY) {
        __atomic_sub_fetch(&s->ready, 1, __ATOMIC_RELEASE);
        if (!s->loop_stopping)
            ld_warn("redis: connection %d to %s lost: %s; reconnecting", c->id, s->addr,
                    why && *why ? why : "closed");
    } else if (!c->failing && !s->loop_stopping) {
        ld_warn("redis: cannot connect to %s: %s; retrying in the background", s->addr,
                why && *why ? why : "closed");
    } else {
        ld_debug("redis: connection %d to %s: %s", c->id, s->addr, why ? why : "closed");
    }
    /* A connection that was up retries at once (Redis may only have closed
     * an idle client); failed attempts back off. */
    int64_t delay = c->state == RD_READY ? 0 : c->backoff_us;
    c->failing = 1;
    c->state = RD_DOWN;
    c->dirty = 0;
    note_tried(c);
    if (!s->loop_stopping) {
        conn_schedule(c, delay);
        if (delay) {
            c->backoff_us *= 2;
            if (c->backoff_us > RD_BACKOFF_MAX_US)
                c->backoff_us = RD_BACKOFF_MAX_US;
        }
    }
}

static void conn_ready(rd_conn *c)
{
    rd_store *s = c->s;
    event_del(c->timer);
    c->state = RD_READY;
    c->backoff_us = RD_BACKOFF_MIN_US;
    if (c->failing)
        ld_info("redis: connection %d to %s is up", c->id, s->addr);
    c->failing = 0;
    __atomic_add_fetch(&s->ready, 1, __ATOMIC_RELEASE);
    note_tried(c);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    rd_conn *c = ac->data;
    if (c->ac != ac)
        return;
    if (status != REDIS_OK) {
        conn_lost(c, ac, ac->errstr); /* hiredis frees ac after this */
        return;
    }
    redisEnableKeepAlive(&c->ac->c);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    rd_conn *c = ac->data;
    if (c->setup_failed) /* keep the setup error as the reason */
        conn_lost(c, ac, NULL);
    else
        conn_lost(c, ac, status == REDIS_OK ? "connection closed" : ac->errstr);
}

static void on_setup(rd_conn *c, redisAsyncContext *ac, const redisReply *rep);

static void on_setup_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    rd_conn *c = priv;
    redisReply *rep = reply;
    if (c->ac != ac || !rep) {
        rd_replies_done(ac);
        return; /* stale, or being torn down: on_connect/on_disconnect handle it */
    }
    on_setup(c, ac, rep);
    rd_replies_done(ac);
}

static void on_setup(rd_conn *c, redisAsyncContext *ac, const redisReply *rep)
{
    c->setup_pending--;
    if (rep->type == REDIS_REPLY_ERROR) {
        if (!c->setup_failed) {
            c->setup_failed = 1;
            if (!c->failing)
                ld_error("redis: %s refused the connection setup: %s", c->s->addr, rep->str);
            set_last_err(c->s, "%s", rep->str);
        }
        redisAsyncDisconnect(ac);
        return;
    }
    if (rep->type == REDIS_REPLY_STRING && rep->len == 40 &&
        memcmp(rep->str, rd_script_sha, 40) != 0)
        ld_error("redis: SCRIPT LOAD answered %.40s, expected %s (writes fall back to EVAL)",
                 rep->str, rd_script_sha);
    if (c->setup_pending == 0 && !c->setup_failed)
        conn_ready(c);
}

static void setup_cmd(rd_conn *c, int argc, const char **argv)
{
    size_t len[4];
    for (int i = 0; i < argc; i++)
        len[i] = strlen(argv[i]);
    if (redisAsyncCommandArgv(c->ac, on_setup_reply, c, argc, argv, len) == REDIS_OK)
        c->setup_pending++;
}

static void conn_start(rd_conn *c)
{
    rd_store *s = c->s;
    redisAsyncContext *ac = redisAsyncConnect(s->host, s->port);
    if (!ac || ac->err) {
        char why[160];
        snprintf(why, sizeof(why), "%s", ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        c->ac = NULL;
        c->state = RD_CONNECTING; /* so conn_lost logs it as a failed attempt */
        conn_lost(c, NULL, why);
        return;
    }
    ac->data = c;
    ac->c.reader->fn = &rd_reply_fns;
    ac->c.reader->privdata = &c->replies;
    if (redisLibeventAttach(ac, s->evb) != REDIS_OK) {
        redisAsyncFree(ac);
        c->state = RD_CONNECTING;
        c->ac = NULL;
        conn_lost(c, NULL, "cannot attach to the event loop");
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    c->ac = ac;
    c->state = RD_CONNECTING;
    c->setup_pending = 0;
    c->setup_failed = 0;

    /* sent as soon as the socket connects, before any request */
    char db[16];
    snprintf(db, sizeof(db), "%d", s->db);
    if (s->password || s->username) {
        const char *a3[] = {"AUTH", s->username, s->password ? s->password : ""};
        const char *a2[] = {"AUTH", s->password};
        if (s->username)
            setup_cmd(c, 3, a3);
        else
            setup_cmd(c, 2, a2);
    }
    if (s->db) {
        const char *a[] = {"SELECT", db};
        setup_cmd(c, 2, a);
    }
    const char *load[] = {"SCRIPT", "LOAD", rd_script};
    setup_cmd(c, 3, load);
    conn_schedule(c, RD_CONNECT_TIMEOUT_US);
}

static void on_conn_timer(evutil_socket_t fd, short what, void *arg)
{
    rd_conn *c = arg;
    if (c->s->loop_stopping)
        return;
    if (c->state == RD_DOWN) {
        conn_start(c);
    } else if (c->state == RD_CONNECTING) {
        redisAsyncContext *ac = c->ac;
        conn_lost(c, ac, "timed out connecting");
        redisAsyncFree(ac); /* its callbacks find c->ac changed and ignore it */
    }
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    rd_store *s = arg;
    s->loop_stopping = 1;
    on_wake(-1, 0, s); /* dispatch fails them: the connections are going */
    for (int i = 0; i < RD_NCONN; i++) {
        rd_conn *c = &s->conns[i];
        event_del(c->timer);
        if (c->ac) {
            redisAsyncContext *ac = c->ac;
            if (c->state == RD_READY)
                __atomic_sub_fetch(&s->ready, 1, __ATOMIC_RELEASE);
            c->state = RD_DOWN;
            c->ac = NULL;
            redisAsyncFree(ac); /* pending requests get NULL replies: UNAVAILABLE */
        }
    }
    event_base_loopbreak(s->evb);
}

static void *io_main(void *arg)
{
    rd_store *s = arg;
    event_base_loop(s->evb, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* The ops (caller threads). */

static rd_req *req_new(rd_store *s, int kind, int64_t deadline_us)
{
    rd_req *q = calloc(1, sizeof(*q));
    if (!q)
        return NULL;
    q->s = s;
    q->kind = kind;
    q->deadline_us = deadline_us;
    ld_status_clear(&q->st);
    return q;
}

static int submit(rd_store *s, rd_req *q, ld_status *st)
{
    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        pthread_mutex_unlock(&s->mu);
        req_free(q);
        return ld_status_set(st, GRPC_STATUS_UNAVAILABLE, NULL,
                             "the Redis online store is shutting down");
    }
    int was_empty = s->q_head == NULL;
    if (s->q_tail)
        s->q_tail->next = q;
    else
        s->q_head = q;
    s->q_tail = q;
    pthread_mutex_unlock(&s->mu);
    if (was_empty)
        event_active(s->wake_ev, EV_TIMEOUT, 0);
    return 0;
}

static int oom(ld_status *st)
{
    return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
}

/* One HMGET per distinct entity key: views sharing an entity (the usual
 * case: a feature service over several views of one entity) live in the same
 * hash, so their fields go in one command. */
static int rd_read(ol_store *base, ol_read *r, ld_status *st)
{
    rd_store *s = (rd_store *)base;
    size_t total = 0;
    for (size_t g = 0; g < r->n_groups; g++) {
        if (r->groups[g].n_keys && r->groups[g].n_features > (size_t)INT_MAX / 4)
            return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL, "too many features");
        total += r->groups[g].n_keys;
    }
    if (total == 0) {
        ld_status ok = LD_STATUS_INIT;
        r->done(r, &ok);
        return 0;
    }
    if (total > UINT32_MAX || r->n_groups > UINT32_MAX)
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL, "too many entity keys");
    if (!__atomic_load_n(&s->ready, __ATOMIC_ACQUIRE))
        return set_unavailable(s, st);

    /* distinct keys: open addressing over (hash, first member) */
    size_t n_slots = 16;
    while (n_slots < total * 2)
        n_slots *= 2;
    struct slot {
        uint64_t h;
        size_t cmd; /* + 1; 0 = empty */
    } *slots = ld_arena_calloc(r->arena, n_slots, sizeof *slots);
    size_t *cmd_of = ld_arena_alloc(
            r->arena, total * sizeof *cmd_of); /* [member in (g, k) order] -> command */
    size_t *count = ld_arena_calloc(r->arena, total + 1,
                                    sizeof *count); /* [command] -> members, then offsets */
    struct rd_member *rep_of =
            ld_arena_alloc(r->arena, total * sizeof *rep_of); /* [command] -> first member */
    size_t *fields =
            ld_arena_calloc(r->arena, total + 1, sizeof *fields); /* [command] -> HMGET fields */
    rd_req *q = req_new(s, RD_READ, r->deadline_us);
    if (q) {
        q->first = malloc((total + 1) * sizeof *q->first);
        q->members = malloc(total * sizeof *q->members);
        q->cmd_len = malloc(total * sizeof *q->cmd_len);
    }
    if (!slots || !cmd_of || !count || !rep_of || !fields || !q || !q->first || !q->members ||
        !q->cmd_len) {
        if (q)
            req_free(q);
        return oom(st);
    }
    size_t n_cmds = 0, m = 0;
    for (size_t g = 0; g < r->n_groups; g++) {
        const ol_read_group *gr = &r->groups[g];
        for (size_t k = 0; k < gr->n_keys; k++, m++) {
            const uint8_t *kb = gr->keys[k];
            size_t kl = gr->key_lens[k];
            uint64_t h = ld_fnv1a(kb, kl);
            size_t i = h & (n_slots - 1);
            for (;; i = (i + 1) & (n_slots - 1)) {
                if (!slots[i].cmd) {
                    slots[i] = (struct slot){h, ++n_cmds};
                    rep_of[n_cmds - 1] = (struct rd_member){(uint32_t)g, (uint32_t)k};
                    break;
                }
                const struct rd_member *o = &rep_of[slots[i].cmd - 1];
                const ol_read_group *og = &r->groups[o->g];
                if (slots[i].h == h && og->key_lens[o->k] == kl &&
                    memcmp(og->keys[o->k], kb, kl) == 0)
                    break;
            }
            size_t c = slots[i].cmd - 1;
            cmd_of[m] = c;
            count[c]++;
            fields[c] += gr->n_features + 1;
        }
    }
    /* members grouped by command, in (group, key) order within each */
    size_t off = 0;
    for (size_t c = 0; c < n_cmds; c++) {
        q->first[c] = off;
        off += count[c];
        count[c] = q->first[c];
    }
    q->first[n_cmds] = off;
    m = 0;
    for (size_t g = 0; g < r->n_groups; g++)
        for (size_t k = 0; k < r->groups[g].n_keys; k++, m++)
            q->members[count[cmd_of[m]]++] = (struct rd_member){(uint32_t)g, (uint32_t)k};

    /* each group's field list ("_ts:<view>" last), formatted once */
    ld_buf gf = LD_BUF_INIT;
    size_t *gf_off = ld_arena_alloc(r->arena, (r->n_groups + 1) * sizeof *gf_off);
    if (!gf_off) {
        req_free(q);
        return oom(st);
    }
    for (size_t g = 0; g < r->n_groups; g++) {
        const ol_read_group *gr = &r->groups[g];
        gf_off[g] = gf.len;
        /* a field is always "$4\r\n" + 4 hash bytes + "\r\n" */
        char *w = ld_buf_reserve(&gf, gr->n_features * 10);
        for (size_t f = 0; f < gr->n_features; f++, w += 10) {
            memcpy(w, "$4\r\n", 4);
            if (gr->fields)
                memcpy(w + 4, gr->fields[f], 4);
            else
                ld_murmur3_feature_field(gr->table, gr->features[f], (unsigned char *)w + 4);
            memcpy(w + 8, "\r\n", 2);
        }
        gf.len += gr->n_features * 10;
        resp_arg2(&gf, "_ts:", 4, gr->table, strlen(gr->table));
    }
    gf_off[r->n_groups] = gf.len;

    q->r = r;
    q->n_cmds = n_cmds;
    size_t plen = strlen(r->project), need = 0;
    for (size_t i = 0; i < q->first[n_cmds]; i++) {
        const struct rd_member *rm = &q->members[i];
        need += gf_off[rm->g + 1] - gf_off[rm->g] + 64 + r->groups[rm->g].key_lens[rm->k] + plen;
    }
    ld_buf_reserve(&q->cmds, need);
    for (size_t c = 0; c < n_cmds; c++) {
        size_t start = q->cmds.len;
        const struct rd_member *rm = &rep_of[c];
        const ol_read_group *rg = &r->groups[rm->g];
        resp_hdr(&q->cmds, '*', fields[c] + 2);
        resp_arg(&q->cmds, "HMGET", 5);
        resp_arg2(&q->cmds, rg->keys[rm->k], rg->key_lens[rm->k], r->project, plen);
        for (size_t i = q->first[c]; i < q->first[c + 1]; i++) {
            size_t g = q->members[i].g, n = gf_off[g + 1] - gf_off[g];
            memcpy(q->cmds.data + q->cmds.len, gf.data + gf_off[g], n); /* reserved above */
            q->cmds.len += n;
        }
        q->cmds.data[q->cmds.len] = '\0';
        q->cmd_len[c] = q->cmds.len - start;
    }
    ld_buf_free(&gf);
    return submit(s, q, st);
}

/* Append one row's command(s): EVALSHA (EVAL when eval) of the script, or
 * HSET [+ EXPIRE] with skip_dedup. Stores each command's length in lens and
 * returns how many there are (1 or 2). */
static size_t format_row(ld_buf *b, const rd_store *s, const ol_write *w, size_t row, int eval,
                         size_t lens[2])
{
    const ol_write_row *rw = &w->rows[row];
    size_t plen = strlen(w->project), tlen = strlen(w->table), nf = w->n_features;
    size_t start = b->len;
    uint8_t ts[24];
    int64_t sec, nanos;
    size_t tslen = ts_encode(rw->event_ts_us, ts, &sec, &nanos);
    if (s->skip_dedup) {
        resp_hdr(b, '*', 4 + 2 * nf);
        resp_arg(b, "HSET", 4);
        resp_arg2(b, rw->key, rw->key_len, w->project, plen);
    } else {
        resp_hdr(b, '*', 9 + 2 * nf);
        resp_str(b, eval ? "EVAL" : "EVALSHA");
        resp_str(b, eval ? rd_script : rd_script_sha);
        resp_arg(b, "1", 1);
        resp_arg2(b, rw->key, rw->key_len, w->project, plen);
    }
    resp_arg2(b, "_ts:", 4, w->table, tlen);
    resp_arg(b, ts, tslen);
    if (!s->skip_dedup) {
        resp_int(b, sec);
        resp_int(b, nanos);
        resp_int(b, s->key_ttl_seconds);
    }
    for (size_t f = 0; f < nf; f++) {
        unsigned char h[4];
        if (w->fields)
            memcpy(h, w->fields[f], 4);
        else
            ld_murmur3_feature_field(w->table, w->features[f], h);
        resp_arg(b, h, 4);
        /* a missing value is an empty Value (b""), as Feast writes None */
        const uint8_t *v = rw->val ? rw->val[f] : NULL;
        resp_arg(b, v ? v : rd_empty, v ? rw->val_len[f] : 0);
    }
    lens[0] = b->len - start;
    if (!s->skip_dedup || s->key_ttl_seconds <= 0)
        return 1;
    start = b->len;
    resp_hdr(b, '*', 3);
    resp_arg(b, "EXPIRE", 6);
    resp_arg2(b, rw->key, rw->key_len, w->project, plen);
    resp_int(b, s->key_ttl_seconds);
    lens[1] = b->len - start;
    return 2;
}

static int rd_write(ol_store *base, ol_write *w, ld_status *st)
{
    rd_store *s = (rd_store *)base;
    if (w->n_rows == 0) {
        ld_status ok = LD_STATUS_INIT;
        w->done(w, &ok);
        return 0;
    }
    if (w->n_features > (size_t)(INT_MAX - 9) / 2)
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL, "too many features");
    if (!__atomic_load_n(&s->ready, __ATOMIC_ACQUIRE))
        return set_unavailable(s, st);

    rd_req *q = req_new(s, RD_WRITE, w->deadline_us);
    if (!q || !(q->cmd_len = malloc(w->n_rows * 2 * sizeof(*q->cmd_len)))) {
        free(q);
        return oom(st);
    }
    q->w = w;
    for (size_t row = 0; row < w->n_rows; row++)
        q->n_cmds += format_row(&q->cmds, s, w, row, 0, q->cmd_len + q->n_cmds);
    return submit(s, q, st);
}

static int rd_healthy(ol_store *base)
{
    rd_store *s = (rd_store *)base;
    return __atomic_load_n(&s->ready, __ATOMIC_ACQUIRE) > 0;
}

static void rd_free(ol_store *base)
{
    rd_store *s = (rd_store *)base;
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_mutex_unlock(&s->mu);
    if (s->thread_started) {
        event_active(s->stop_ev, EV_TIMEOUT, 0);
        pthread_join(s->thread, NULL);
    }
    /* anything queued after the loop's last look (none in practice) */
    rd_req *q = s->q_head;
    s->q_head = s->q_tail = NULL;
    while (q) {
        rd_req *next = q->next;
        ld_status_set(&q->st, GRPC_STATUS_UNAVAILABLE, NULL,
                      "the Redis online store is shutting down");
        req_finish(q);
        req_free(q);
        q = next;
    }
    for (int i = 0; i < RD_NCONN; i++) {
        rd_conn *c = &s->conns[i];
        if (c->ac) {
            redisAsyncContext *ac = c->ac;
            c->ac = NULL;
            redisAsyncFree(ac);
        }
        if (c->timer)
            event_free(c->timer);
        ld_arena_destroy(&c->replies);
    }
    if (s->wake_ev)
        event_free(s->wake_ev);
    if (s->stop_ev)
        event_free(s->stop_ev);
    if (s->evb)
        event_base_free(s->evb);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cond);
    free(s->host);
    free(s->username);
    free(s->password);
    free(s);
}

static const ol_store_ops rd_ops = {
        .name = "redis",
        .read = rd_read,
        .write = rd_write,
        .healthy = rd_healthy,
        .free = rd_free,
};

ol_store *ol_store_redis_new(const ld_config *cfg, ld_status *st)
{
    const ld_redis_config *rc = &cfg->online_store.redis;
    if (rc->redis_type != LD_REDIS_SINGLE) {
        ld_status_set(st, GRPC_STATUS_UNIMPLEMENTED, NULL,
                      "online_store.redis_type %s is not supported by larder-online yet; use "
                      "redis_type: redis (a single Redis instance)",
                      rc->redis_type == LD_REDIS_CLUSTER ? "redis_cluster" : "redis_sentinel");
        return NULL;
    }
    pthread_once(&rd_once, rd_init_once);

    rd_store *s = calloc(1, sizeof(*s));
    if (!s) {
        oom(st);
        return NULL;
    }
    s->base.ops = &rd_ops;
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (parse_connection_string(s, rc->connection_string, st) < 0) {
        rd_free(&s->base);
        return NULL;
    }
    if (strchr(s->host, ':'))
        snprintf(s->addr, sizeof(s->addr), "[%s]:%d", s->host, s->port);
    else
        snprintf(s->addr, sizeof(s->addr), "%s:%d", s->host, s->port);
    s->key_ttl_seconds = rc->key_ttl_seconds > 0 ? rc->key_ttl_seconds : 0;
    s->skip_dedup = rc->skip_dedup;

    s->evb = event_base_new();
    if (s->evb) {
        s->wake_ev = event_new(s->evb, -1, 0, on_wake, s);
        s->stop_ev = event_new(s->evb, -1, 0, on_stop, s);
    }
    int ok = s->evb && s->wake_ev && s->stop_ev;
    for (int i = 0; i < RD_NCONN && ok; i++) {
        rd_conn *c = &s->conns[i];
        c->s = s;
        c->id = i;
        ld_arena_init(&c->replies, c->replies_first, sizeof(c->replies_first), 0);
        c->state = RD_DOWN;
        c->backoff_us = RD_BACKOFF_MIN_US;
        c->timer = evtimer_new(s->evb, on_conn_timer, c);
        ok = c->timer != NULL;
        if (ok)
            conn_schedule(c, 0); /* first connect, from the loop */
    }
    if (!ok) {
        ld_status_set(st, GRPC_STATUS_INTERNAL, NULL, "redis: cannot set up the event loop");
        rd_free(&s->base);
        return NULL;
    }

    /* the I/O thread takes no signals (SIGPIPE on a dead socket, SIGTERM) */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int err = pthread_create(&s->thread, NULL, io_main, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err) {
        ld_status_set(st, GRPC_STATUS_INTERNAL, NULL, "redis: cannot start the I/O thread: %s",
                      strerror(err));
        rd_free(&s->base);
        return NULL;
    }
    s->thread_started = 1;

    /* Give Redis a moment so the first requests find a connection; a Redis
     * that is down is not an error (the store reconnects on its own). */
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += RD_STARTUP_WAIT_US / 1000000;
    until.tv_nsec += (RD_STARTUP_WAIT_US % 1000000) * 1000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&s->mu);
    while (!__atomic_load_n(&s->ready, __ATOMIC_ACQUIRE) && s->n_tried < RD_NCONN)
        if (pthread_cond_timedwait(&s->cond, &s->mu, &until) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&s->mu);
    if (__atomic_load_n(&s->ready, __ATOMIC_ACQUIRE))
        ld_info("redis: online store at %s (db %d)", s->addr, s->db);
    return &s->base;
}
