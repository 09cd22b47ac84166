/* ol_store_redis: the online store on a single Redis, in Feast's layout
 * (feast-protocols.md §1.5.2): one hash per entity and project, keyed
 * serialize_entity_key(v3) ‖ utf8(project); a field per feature named by the
 * 4-byte murmur3 of "view:feature" holding serialized Value bytes, and
 * "_ts:<view>" holding the serialized google.protobuf.Timestamp of the row's
 * event time.
 *
 * Connections. The store owns a few TCP connections to Redis (RD_NCONN),
 * shared by every request and pipelined. hiredis opens each one: it
 * resolves and connects (non-blocking), sends AUTH, SELECT and SCRIPT LOAD
 * and reads their replies; then it lets go of the socket (redisFreeKeepFd)
 * and the store speaks RESP on it itself, formatting commands here and
 * reading replies with ol_resp. Why not hiredis's reader for the replies of
 * reads: it moves its buffer after every reply and builds an object per
 * array element, which was 2.1M of the 4.0M instructions of a 100-row,
 * 50-feature call (bench/README.md); ol_resp decodes the values in place.
 *
 * Threads. read() and write() run on the caller's thread (a gRPC worker, the
 * HTTP loop): they format all the request's commands into one buffer, pick a
 * ready connection (round-robin, or the one whose cork is open), and under
 * that connection's mutex append the request to the connection's queue of
 * requests awaiting replies and send the bytes on the non-blocking socket
 * themselves. Bytes the socket does not take at once stay in the
 * connection's output buffer, and from then on later requests append there
 * too (order on the wire = queue order); the I/O thread sends them when the
 * socket becomes writable. A read with an ol_defer is corked instead: its
 * bytes wait in the output buffer, and rd_flush, which the caller's thread
 * runs once it has handled the requests it already holds, sends everything
 * the connection gathered meanwhile in one call (fewer sends here, fewer
 * reads and writes in Redis). Nobody waits on Redis. One I/O thread runs a
 * libevent loop: it reads every connection's replies and completes requests
 * in queue order (Redis answers a connection's commands in order), connects
 * and reconnects, and runs the deadline timers.
 *
 * Replies. A connection reads into one buffer that it compacts only when
 * little room is left at its end (or grows for a reply element larger than
 * it); ol_resp hands out each element in place (an HMGET's values in runs,
 * resp_run), and each value is copied once, straight into the request's
 * cells (in chunks of r->arena). No reply objects. A malformed reply, or
 * one over the reader's limits (RD_MAX_BULK, RD_MAX_ARRAY), fails the
 * request it answers with INTERNAL and drops the connection (its other
 * requests fail with UNAVAILABLE).
 *
 * Requests. A request's tracking object (rd_req) is ours, not the caller's:
 * it stays in its connection's queue until all its replies were read, also
 * after `done` ran early (deadline, a reply error). Once done ran, the
 * caller's ol_read/ol_write and its arena are never touched again: the rest
 * of the request's replies are read and dropped. The (group, key) map of a
 * read lives in r->arena for that reason.
 *
 * Deadlines. Each connection has one timer, armed for the earliest deadline
 * among its requests: a caller arms it only when its request's deadline is
 * earlier than the one the timer is set for, so a steady stream of requests
 * with similar deadlines does not wake the I/O thread for each one. When it
 * fires, expired requests fail with DEADLINE_EXCEEDED and it is re-armed for
 * the next.
 *
 * Writes. Last-event-time-wins per view and entity, as Feast, but atomic:
 * each row is one EVALSHA of a script that decodes the stored "_ts:<view>"
 * Timestamp, and HSETs (plus EXPIRE) only when the new event time is strictly
 * newer. The rows of a batch run in order on one connection, so a key given
 * twice keeps the latest event time, as Feast's batch dedup does. skip_dedup
 * sends a plain HSET (and EXPIRE) per row. A NOSCRIPT error (SCRIPT FLUSH)
 * resends that row as EVAL.
 *
 * Setup. A new connection sends AUTH (password, username), SELECT (db) and
 * SCRIPT LOAD through hiredis before it takes requests; an error reply to any of them drops
 * it and is kept as the reason requests are refused. TLS (ssl=true) is
 * refused at start-up: Debian's hiredis 0.14 has no TLS to open such a
 * connection with; use a TLS tunnel.
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
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <hiredis/hiredis.h>

#include "ld_pb.h"
#include "ld_buf.h"
#include "ld_hash.h"
#include "ld_log.h"
#include "ld_murmur3.h"
#include "ld_time.h"
#include "ol_resp.h"
#include "ol_store.h"

#define RD_NCONN              3       /* connections per store, round-robin */
#define RD_BACKOFF_MIN_US     50000   /* first reconnect delay */
#define RD_BACKOFF_MAX_US     800000  /* reconnect delay cap */
#define RD_CONNECT_TIMEOUT_US 1000000 /* connect + AUTH/SELECT/SCRIPT LOAD */
#define RD_STARTUP_WAIT_US    2000000 /* ol_store_redis_new waits this long for Redis */
#define RD_DEFAULT_PORT       6379
#define RD_KEEPALIVE_S        15 /* TCP keepalive idle time (probes every 5 s, 3 of them) */
#define RD_IN_FIRST           (64 * 1024) /* a connection's receive buffer */
#define RD_IN_KEEP            (1 << 20)   /* a buffer grown past this shrinks when empty */
#define RD_READ_MIN           4096        /* compact (or grow) when less room is left */
#define RD_MAX_BULK           (64u << 20) /* longest value accepted (> any gRPC message) */
#define RD_MAX_ARRAY          (16u << 20) /* most elements in one reply */
#define RD_MAX_OUT            (64u << 20) /* unsent bytes a connection may queue */
#define RD_VAL_CHUNK_MAX      (64 * 1024) /* values are copied into chunks of r->arena */

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
typedef struct rd_conn rd_conn;

enum { RD_DOWN, RD_CONNECTING, RD_READY };
enum { RD_READ, RD_WRITE, RD_RETRY };

/* read: command i is one HMGET on one entity key, answering the (group,
 * key) pairs members[first[i] .. first[i + 1]) in field order */
typedef struct rd_member {
    uint32_t g;
    uint32_t k;
} rd_member;

typedef struct rd_req {
    struct rd_req *next;  /* the connection's queue */
    struct rd_req *xnext; /* expired, in a deadline sweep */
    rd_store *s;
    int kind;
    int finished; /* done ran: r/w belong to the caller again */
    int expiring; /* on a sweep's expired list */
    ol_read *r;
    ol_write *w;
    struct rd_req *parent; /* RD_RETRY: the write one of whose rows it resends */
    int64_t deadline_us;   /* INT64_MAX: none */
    size_t n_cmds;
    size_t n_replies; /* complete replies read, in command order */
    size_t pending;   /* 1 while queued on a connection, + retries in flight */
    /* read, valid while !finished (they live in r->arena) */
    const size_t *first;
    const rd_member *members;
    const size_t *want;      /* [command]: elements of its reply */
    size_t cur_m;            /* member the next elements belong to */
    size_t cur_left;         /* its features still due (then its "_ts:<view>") */
    const uint8_t **cur_val; /* where the next feature's value goes */
    size_t *cur_len;
    int cur_found;
    uint8_t *vbuf; /* values go here: vleft bytes left in a chunk of r->arena */
    size_t vleft;
    size_t vchunk;
    ld_status st;
} rd_req;

struct rd_conn {
    rd_store *s;
    int id;
    pthread_mutex_t mu; /* guards state, fd, out*, head/tail, dl_at, broken */
    int state;
    int fd;    /* -1 when down */
    char *out; /* accepted, not yet sent: out[out_off .. out_len) */
    size_t out_off, out_len, out_cap;
    int out_armed; /* wev is added */
    int corked;    /* out holds bytes a deferred rd_flush will send; written
                      under mu (atomically: submit peeks at it without mu) */
    rd_req *head, *tail;
    int64_t dl_at; /* dl_timer is armed for this deadline; 0: not armed */
    int broken;    /* a send failed: kill_ev is active */
    char broken_why[96];

    /* I/O thread only */
    struct event *rev, *wev; /* of fd; NULL when down */
    struct event *timer;     /* reconnect delay, or connect timeout */
    struct event *dl_timer;  /* earliest deadline */
    struct event *kill_ev;   /* a caller saw the socket fail */
    int connected;           /* the TCP connect completed */
    redisContext *hs;        /* hiredis, while it connects and runs the setup; then NULL */
    int setup_pending;       /* AUTH/SELECT/SCRIPT LOAD replies still due */
    int setup_failed;
    int failing; /* in a streak of failed attempts (logged once) */
    int tried;   /* the first attempt concluded (startup wait) */
    int64_t backoff_us;
    char *in; /* received: in[in_start .. in_end) not yet parsed */
    size_t in_cap, in_start, in_end;
    resp_reader rd;
    rd_req *head_cur; /* the queue's head while its replies are read */
};

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
    struct event *stop_ev;
    pthread_t thread;
    int thread_started;
    int loop_stopping; /* I/O thread only */
    unsigned rr;       /* round-robin; atomic */
    int ready;         /* READY connections; atomic */

    pthread_mutex_t mu; /* guards what follows */
    pthread_cond_t cond;
    int n_tried;
    char last_err[256];

    rd_conn conns[RD_NCONN];
};

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
static void cmd_hdr(ld_buf *b, char c, size_t n)
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
static void cmd_arg2(ld_buf *b, const void *p1, size_t n1, const void *p2, size_t n2)
{
    cmd_hdr(b, '$', n1 + n2);
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

static void cmd_arg(ld_buf *b, const void *p, size_t n)
{
    cmd_arg2(b, p, n, NULL, 0);
}

static void cmd_str(ld_buf *b, const char *s)
{
    cmd_arg(b, s, strlen(s));
}

static void cmd_int(ld_buf *b, int64_t v)
{
    char tmp[24];
    char *e = put_sdec(tmp, v);
    cmd_arg(b, tmp, (size_t)(e - tmp));
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
        n += ld_pb_put_varint(out + n, (uint64_t)sec);
    }
    if (nanos) {
        out[n++] = 0x10;
        n += ld_pb_put_varint(out + n, (uint64_t)nanos);
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

static void req_finish(rd_req *q)
{
    q->finished = 1;
    if (q->kind == RD_READ)
        q->r->done(q->r, &q->st);
    else
        q->w->done(q->w, &q->st);
}

/* Finish now with an error; later replies are read and dropped. */
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

/* One thing the request waited for is over: finish it (OK unless it failed
 * before) and free it when nothing is left. */
static void req_release(rd_req *q)
{
    if (--q->pending)
        return;
    if (!q->finished)
        req_finish(q);
    free(q);
}

/* Redis errors that mean "try again later" rather than a bug. */
static grpc_status_code error_code(const char *msg, size_t len)
{
    static const char *const transient[] = {"LOADING",  "BUSY",        "READONLY", "MASTERDOWN",
                                            "TRYAGAIN", "CLUSTERDOWN", "NOAUTH",   NULL};
    for (int i = 0; transient[i]; i++) {
        size_t n = strlen(transient[i]);
        if (len >= n && !memcmp(msg, transient[i], n))
            return GRPC_STATUS_UNAVAILABLE;
    }
    if (len >= 3 && !memcmp(msg, "OOM", 3))
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    return GRPC_STATUS_INTERNAL;
}

/* Error messages quote at most this much of what Redis sent. */
static int quote_len(size_t len)
{
    return len > 512 ? 512 : (int)len;
}

static const uint8_t rd_empty[1];

/* Room for n value bytes in the read's arena, taken in chunks. */
static uint8_t *val_chunk(rd_req *q, size_t n)
{
    size_t chunk = q->vchunk ? q->vchunk * 2 : 1024;
    if (chunk > RD_VAL_CHUNK_MAX)
        chunk = RD_VAL_CHUNK_MAX;
    q->vchunk = chunk;
    if (chunk < n)
        chunk = n;
    uint8_t *p = ld_arena_alloc(q->r->arena, chunk);
    if (!p) {
        q->vleft = 0;
        return NULL;
    }
    q->vbuf = p + n;
    q->vleft = chunk - n;
    return p;
}

static inline uint8_t *val_space(rd_req *q, size_t n)
{
    if (n > q->vleft)
        return val_chunk(q, n);
    uint8_t *p = q->vbuf;
    q->vbuf += n;
    q->vleft -= n;
    return p;
}

/* The next elements answer member m of the read. */
static inline void read_member(rd_req *q, size_t m)
{
    const rd_member *mb = &q->members[m];
    ol_read_group *gr = &q->r->groups[mb->g];
    q->cur_m = m;
    q->cur_left = gr->n_features;
    q->cur_val = gr->val + (size_t)mb->k * gr->n_features;
    q->cur_len = gr->val_len + (size_t)mb->k * gr->n_features;
    q->cur_found = 0;
}

/* The top-level item of reply i of a read: the HMGET of command i, on the
 * fields of every (group, key) sharing one entity key, each group's features
 * followed by its "_ts:<view>". */
static void read_reply_start(rd_req *q, size_t i, const resp_item *it)
{
    if (it->type == RESP_ARRAY && (size_t)it->n == q->want[i]) {
        read_member(q, q->first[i]);
    } else if (it->type == RESP_ERROR) {
        req_fail(q, error_code(it->str, it->len), "Redis HMGET on %s: %.*s", q->s->addr,
                 quote_len(it->len), it->str);
    } else if (it->type == RESP_ARRAY) {
        req_fail(q, GRPC_STATUS_INTERNAL,
                 "Redis HMGET on %s: unexpected reply (%lld elements, expected %zu)", q->s->addr,
                 (long long)it->n, q->want[i]);
    } else {
        req_fail(q, GRPC_STATUS_INTERNAL, "Redis HMGET on %s: unexpected reply (type %d)",
                 q->s->addr, (int)it->type);
    }
}

/* The "_ts:<view>" element closes a member. */
static void read_member_end(rd_req *q, const resp_item *it)
{
    const rd_member *mb = &q->members[q->cur_m];
    ol_read_group *gr = &q->r->groups[mb->g];
    int64_t us = 0;
    if (it->type == RESP_BULK) {
        q->cur_found = 1;
        if (ts_decode((const uint8_t *)it->str, it->len, &us) < 0)
            us = 0;
    }
    gr->found[mb->k] = (uint8_t)q->cur_found;
    gr->event_ts_us[mb->k] = us;
    if (!it->end)
        read_member(q, q->cur_m + 1);
}

/* One item of reply i of a read; values are copied straight into their cells. */
static inline void read_item(rd_req *q, size_t i, const resp_item *it)
{
    if (!it->in_array) {
        read_reply_start(q, i, it);
        return;
    }
    if (!q->cur_left) {
        read_member_end(q, it);
        return;
    }
    q->cur_left--;
    if (it->type == RESP_NIL) {
        *q->cur_val++ = NULL;
        *q->cur_len++ = 0;
        return;
    }
    q->cur_found = 1;
    const uint8_t *v = rd_empty;
    if (it->len) {
        uint8_t *dst = val_space(q, it->len);
        if (!dst) {
            req_fail(q, GRPC_STATUS_RESOURCE_EXHAUSTED,
                     "the feature values read from Redis exceed the request's memory limit");
            return;
        }
        ld_copy_small(dst, it->str, it->len);
        v = dst;
    }
    *q->cur_val++ = v;
    *q->cur_len++ = it->len;
}

static size_t format_row(ld_buf *b, const rd_store *s, const ol_write *w, size_t row, int eval,
                         size_t lens[2]);
static int conn_send(rd_conn *c, rd_req *q, const char *data, size_t len, const ol_defer *defer);

/* Reply i of a write (top-level items only matter: EVALSHA, HSET and EXPIRE
 * answer integers). */
static void write_item(rd_req *q, rd_conn *c, size_t i, const resp_item *it)
{
    rd_store *s = q->s;
    if (it->in_array || it->type != RESP_ERROR)
        return;
    if (!s->skip_dedup && it->len >= 8 && !memcmp(it->str, "NOSCRIPT", 8)) {
        /* the script cache was flushed: send this row's script in full */
        rd_req *rq = calloc(1, sizeof(*rq));
        if (!rq) {
            req_fail(q, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
            return;
        }
        rq->s = s;
        rq->kind = RD_RETRY;
        rq->parent = q;
        rq->deadline_us = INT64_MAX;
        rq->n_cmds = 1;
        rq->pending = 1;
        ld_buf b = LD_BUF_INIT;
        size_t lens[2];
        format_row(&b, s, q->w, i, 1, lens);
        q->pending++;
        if (conn_send(c, rq, b.data, b.len, NULL) < 0) {
            free(rq);
            q->pending--;
            req_fail(q, GRPC_STATUS_UNAVAILABLE, "Redis at %s: connection lost", s->addr);
        }
        ld_buf_free(&b);
        return;
    }
    req_fail(q, error_code(it->str, it->len), "Redis %s on %s: %.*s",
             s->skip_dedup ? "HSET" : "EVALSHA", s->addr, quote_len(it->len), it->str);
}

static void retry_item(rd_req *rq, const resp_item *it)
{
    if (!it->in_array && it->type == RESP_ERROR)
        req_fail(rq->parent, error_code(it->str, it->len), "Redis EVAL on %s: %.*s", rq->s->addr,
                 quote_len(it->len), it->str);
}

/* The request left its connection's queue (answered or not). */
static void req_dequeued(rd_req *q)
{
    if (q->kind == RD_RETRY) {
        rd_req *parent = q->parent;
        free(q);
        req_release(parent);
    } else {
        req_release(q);
    }
}

/* Fail q (a queued request) because its connection is gone. */
static void req_lost(rd_req *q, const char *why)
{
    rd_req *t = q->kind == RD_RETRY ? q->parent : q;
    if (t->s->loop_stopping)
        req_fail(t, GRPC_STATUS_UNAVAILABLE, "the Redis online store is shutting down");
    else
        req_fail(t, GRPC_STATUS_UNAVAILABLE, "Redis at %s is unavailable: %s", t->s->addr, why);
    req_dequeued(q);
}

/* ------------------------------------------------------------------------ */
/* Sending (any thread). */

/* Arm c's deadline timer for `at` unless it fires earlier already. Under c->mu. */
static void conn_arm_deadline(rd_conn *c, int64_t at)
{
    if (at == INT64_MAX || (c->dl_at && c->dl_at <= at))
        return;
    int64_t left = at - ld_mono_us();
    if (left < 1)
        left = 1;
    struct timeval tv = {.tv_sec = left / 1000000, .tv_usec = left % 1000000};
    c->dl_at = at;
    evtimer_add(c->dl_timer, &tv);
}

/* Keep n bytes in the output buffer: for the I/O thread to send when the
 * socket is writable (arm), or for a deferred rd_flush. Under c->mu. */
static int out_append(rd_conn *c, const char *p, size_t n, int arm)
{
    if (c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    if (c->out_cap - c->out_len < n && c->out_off) {
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
    }
    if (c->out_cap - c->out_len < n) {
        size_t cap = c->out_cap ? c->out_cap : 16384;
        while (cap - c->out_len < n)
            cap *= 2;
        char *o = realloc(c->out, cap);
        if (!o)
            return -1;
        c->out = o;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
    if (arm && !c->out_armed) {
        c->out_armed = 1;
        event_add(c->wev, NULL);
    }
    return 0;
}

/* The socket failed under a sender: the I/O thread drops the connection
 * (never the sender: it may be a reply handler of this connection). Under c->mu. */
static void conn_break_locked(rd_conn *c, const char *why)
{
    if (c->broken)
        return;
    c->broken = 1;
    snprintf(c->broken_why, sizeof(c->broken_why), "%s", why);
    event_active(c->kill_ev, EV_READ, 0);
}

/* Send what the non-blocking socket takes of p[0..n) (*sent bytes). 0, or
 * the errno that broke the socket. */
static int send_some(int fd, const char *p, size_t n, size_t *sent)
{
    *sent = 0;
    while (*sent < n) {
        ssize_t w = send(fd, p + *sent, n - *sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0)
            *sent += (size_t)w;
        else if (w < 0 && errno == EINTR)
            continue;
        else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        else
            return w < 0 ? errno : EIO;
    }
    return 0;
}

/* Send n bytes on c, or queue what the socket does not take. Under c->mu, c READY. */
static void conn_write_locked(rd_conn *c, const char *p, size_t n)
{
    if (c->out_len == c->out_off) {
        size_t sent;
        int err = send_some(c->fd, p, n, &sent);
        if (err) {
            conn_break_locked(c, strerror(err));
            return;
        }
        p += sent;
        n -= sent;
        if (!n)
            return;
    }
    if (out_append(c, p, n, 1) < 0)
        conn_break_locked(c, "out of memory");
}

/* Send what the output buffer holds; what the socket does not take waits
 * for it to become writable (the I/O thread). 0, or the errno that broke the
 * socket. Under c->mu. */
static int out_send_locked(rd_conn *c)
{
    size_t sent;
    int err = send_some(c->fd, c->out + c->out_off, c->out_len - c->out_off, &sent);
    c->out_off += sent;
    if (err)
        return err;
    if (c->out_off == c->out_len) {
        c->out_off = c->out_len = 0;
        if (c->out_armed) {
            c->out_armed = 0;
            event_del(c->wev);
        }
        if (c->out_cap > RD_IN_KEEP) {
            free(c->out);
            c->out = NULL;
            c->out_cap = 0;
        }
    } else if (!c->out_armed) {
        c->out_armed = 1;
        event_add(c->wev, NULL);
    }
    return 0;
}

/* ld_call_defer's work: send what requests corked on c. On the thread that
 * deferred it, once that thread has handled the requests it already had. */
static void rd_flush(void *obj)
{
    rd_conn *c = obj;
    pthread_mutex_lock(&c->mu);
    if (c->corked) {
        __atomic_store_n(&c->corked, 0, __ATOMIC_RELAXED);
        /* armed: the I/O thread sends it (a caller without a defer came by) */
        if (c->state == RD_READY && !c->broken && !c->out_armed) {
            int err = out_send_locked(c);
            if (err)
                conn_break_locked(c, strerror(err));
        }
    }
    pthread_mutex_unlock(&c->mu);
}

/* Queue q on c and send its commands. Any thread (the caller's, or the I/O
 * thread for a retry). With a defer, the commands may wait in the output
 * buffer (corked) until the caller's thread has handled the requests it
 * already holds: every request that joins the cork meanwhile leaves in the
 * same send. -1: c takes no requests (not ready, failing, or not reading
 * what it was sent). On 0 the request belongs to the I/O thread: it may be
 * answered and freed before this returns. */
static int conn_send(rd_conn *c, rd_req *q, const char *data, size_t len, const ol_defer *defer)
{
    pthread_mutex_lock(&c->mu);
    if (c->state != RD_READY || c->broken || c->out_len - c->out_off > RD_MAX_OUT) {
        pthread_mutex_unlock(&c->mu);
        return -1;
    }
    q->next = NULL;
    if (c->tail)
        c->tail->next = q;
    else
        c->head = q;
    c->tail = q;
    conn_arm_deadline(c, q->deadline_us);
    /* nothing waits for the socket, or a cork is open: cork (a defer that
     * refuses leaves the plain path) */
    if (defer && (c->corked || c->out_len == c->out_off) &&
        defer->defer(defer->ctx, rd_flush, c) == 0) {
        if (out_append(c, data, len, 0) < 0)
            conn_break_locked(c, "out of memory");
        else
            __atomic_store_n(&c->corked, 1, __ATOMIC_RELAXED);
    } else {
        conn_write_locked(c, data, len);
    }
    pthread_mutex_unlock(&c->mu);
    return 0;
}

/* Caller thread: hand q (its commands in data) to a ready connection. */
static int submit(rd_store *s, rd_req *q, const char *data, size_t len, const ol_defer *defer,
                  ld_status *st)
{
    if (q->deadline_us != INT64_MAX && q->deadline_us <= ld_mono_us()) {
        free(q);
        return ld_status_set(st, GRPC_STATUS_DEADLINE_EXCEEDED, NULL,
                             "deadline exceeded before the request was sent to Redis at %s",
                             s->addr);
    }
    /* a cork already open takes the request: requests that arrive together
     * then leave in one send on one connection (one read and one write in
     * Redis) instead of one per connection */
    if (defer)
        for (unsigned i = 0; i < RD_NCONN; i++)
            if (__atomic_load_n(&s->conns[i].corked, __ATOMIC_RELAXED) &&
                conn_send(&s->conns[i], q, data, len, defer) == 0)
                return 0;
    unsigned start = __atomic_fetch_add(&s->rr, 1, __ATOMIC_RELAXED);
    for (unsigned i = 0; i < RD_NCONN; i++)
        if (conn_send(&s->conns[(start + i) % RD_NCONN], q, data, len, defer) == 0)
            return 0;
    free(q);
    return set_unavailable(s, st);
}

/* ------------------------------------------------------------------------ */
/* Connections (I/O thread). */

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

/* c's socket is gone or going: close it, fail every request still waiting
 * on it with UNAVAILABLE, and retry later. */
static void conn_lost(rd_conn *c, const char *why)
{
    rd_store *s = c->s;
    if (!why || !*why)
        why = "connection lost";
    pthread_mutex_lock(&c->mu);
    int was = c->state;
    if (was == RD_DOWN) {
        pthread_mutex_unlock(&c->mu);
        return;
    }
    int fd = c->fd;
    rd_req *q = c->head;
    c->head = c->tail = NULL;
    c->state = RD_DOWN;
    c->fd = -1;
    c->out_off = c->out_len = 0;
    c->out_armed = 0;
    __atomic_store_n(&c->corked, 0, __ATOMIC_RELAXED);
    c->broken = 0;
    c->dl_at = 0;
    struct event *rev = c->rev, *wev = c->wev;
    c->rev = c->wev = NULL;
    pthread_mutex_unlock(&c->mu);
    if (rev)
        event_free(rev);
    if (wev)
        event_free(wev);
    event_del(c->dl_timer);
    if (c->hs) {
        redisFreeKeepFd(c->hs); /* the fd is ours to close */
        c->hs = NULL;
    }
    if (fd >= 0)
        close(fd);
    c->connected = 0;
    c->setup_pending = 0;
    c->head_cur = NULL;
    c->in_start = c->in_end = 0;
    resp_reset(&c->rd);
    if (!c->setup_failed) /* a refused setup keeps its reply as the reason */
        set_last_err(s, "%s", why);
    if (was == RD_READY) {
        __atomic_sub_fetch(&s->ready, 1, __ATOMIC_RELEASE);
        if (!s->loop_stopping)
            ld_warn("redis: connection %d to %s lost: %s; reconnecting", c->id, s->addr, why);
    } else if (!c->failing && !s->loop_stopping) {
        ld_warn("redis: cannot connect to %s: %s; retrying in the background", s->addr, why);
    } else {
        ld_debug("redis: connection %d to %s: %s", c->id, s->addr, why);
    }
    while (q) {
        rd_req *next = q->next;
        req_lost(q, why);
        q = next;
    }
    /* A connection that was up retries at once (Redis may only have closed
     * an idle client); failed attempts back off. */
    int64_t delay = was == RD_READY ? 0 : c->backoff_us;
    c->failing = 1;
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
    pthread_mutex_lock(&c->mu);
    c->state = RD_READY;
    pthread_mutex_unlock(&c->mu);
    c->backoff_us = RD_BACKOFF_MIN_US;
    if (c->failing)
        ld_info("redis: connection %d to %s is up", c->id, s->addr);
    c->failing = 0;
    __atomic_add_fetch(&s->ready, 1, __ATOMIC_RELEASE);
    note_tried(c);
}

/* hiredis's reply to AUTH, SELECT or SCRIPT LOAD. -1: the connection was dropped. */
static int setup_reply(rd_conn *c, const redisReply *rep)
{
    rd_store *s = c->s;
    c->setup_pending--;
    if (rep->type == REDIS_REPLY_ERROR || rep->type == REDIS_REPLY_ARRAY) {
        char msg[256];
        if (rep->type == REDIS_REPLY_ERROR)
            snprintf(msg, sizeof(msg), "%.*s", quote_len(rep->len), rep->str);
        else
            snprintf(msg, sizeof(msg), "unexpected reply to the connection setup");
        if (!c->failing)
            ld_error("redis: %s refused the connection setup: %s", s->addr, msg);
        set_last_err(s, "%s", msg);
        c->setup_failed = 1;
        conn_lost(c, msg);
        return -1;
    }
    if (rep->type == REDIS_REPLY_STRING && rep->len == 40 &&
        memcmp(rep->str, rd_script_sha, 40) != 0)
        ld_error("redis: SCRIPT LOAD answered %.40s, expected %s (writes fall back to EVAL)",
                 rep->str, rd_script_sha);
    return 0;
}

static rd_req *conn_head(rd_conn *c)
{
    pthread_mutex_lock(&c->mu);
    rd_req *q = c->head;
    pthread_mutex_unlock(&c->mu);
    return q;
}

/* Redis sent something we cannot read: the request it answers fails with
 * INTERNAL, the others with UNAVAILABLE, and the connection is dropped (what
 * follows on it cannot be trusted). */
static void conn_protocol_error(rd_conn *c, const char *what)
{
    rd_store *s = c->s;
    char why[200];
    snprintf(why, sizeof(why), "malformed reply: %s", what);
    ld_warn("redis: %s sent a malformed reply (%s)", s->addr, what);
    rd_req *q = conn_head(c);
    if (q)
        req_fail(q->kind == RD_RETRY ? q->parent : q, GRPC_STATUS_INTERNAL,
                 "Redis at %s sent a malformed reply: %s", s->addr, what);
    conn_lost(c, why);
}

/* One reply item, for the request at the head of c's queue. -1: the
 * connection was dropped. */
static int conn_item(rd_conn *c, const resp_item *it)
{
    rd_req *q = c->head_cur;
    if (!q) {
        q = conn_head(c);
        if (!q) {
            conn_protocol_error(c, "a reply to no request");
            return -1;
        }
        c->head_cur = q;
    }
    size_t i = q->n_replies;
    switch (q->kind) {
    case RD_READ:
        if (!q->finished)
            read_item(q, i, it);
        break;
    case RD_WRITE:
        if (!q->finished)
            write_item(q, c, i, it);
        break;
    default:
        retry_item(q, it);
        break;
    }
    if (it->end && ++q->n_replies == q->n_cmds) {
        pthread_mutex_lock(&c->mu);
        c->head = q->next;
        if (!c->head)
            c->tail = NULL;
        pthread_mutex_unlock(&c->mu);
        c->head_cur = NULL;
        req_dequeued(q);
    }
    return 0;
}

/* A run of a read's feature values (k <= cur_left): into their cells. */
static void read_values(rd_req *q, const resp_span *sp, size_t k)
{
    const uint8_t **val = q->cur_val;
    size_t *len = q->cur_len;
    q->cur_left -= k;
    q->cur_val += k;
    q->cur_len += k;
    for (size_t j = 0; j < k; j++) {
        size_t n = sp[j].len;
        len[j] = n;
        if (!sp[j].str) {
            val[j] = NULL;
            continue;
        }
        q->cur_found = 1;
        if (!n) {
            val[j] = rd_empty;
            continue;
        }
        uint8_t *dst = val_space(q, n);
        if (!dst) {
            req_fail(q, GRPC_STATUS_RESOURCE_EXHAUSTED,
                     "the feature values read from Redis exceed the request's memory limit");
            return;
        }
        ld_copy_small(dst, sp[j].str, n);
        val[j] = dst;
    }
}

/* Parse what arrived. -1: the connection was dropped. */
static int conn_parse(rd_conn *c)
{
    resp_item it;
    resp_span sp[32];
    for (;;) {
        /* the bulk of a read: its values, a run at a time */
        rd_req *q = c->head_cur;
        if (q && q->kind == RD_READ && !q->finished && q->cur_left && resp_in_reply(&c->rd)) {
            size_t k = resp_run(&c->rd, c->in, c->in_end, &c->in_start, sp,
                                q->cur_left < 32 ? q->cur_left : 32);
            if (k) {
                read_values(q, sp, k);
                continue;
            }
        }
        int rc = resp_next(&c->rd, c->in, c->in_end, &c->in_start, &it);
        if (rc == RESP_MORE)
            break;
        if (rc == RESP_PROTO) {
            conn_protocol_error(c, resp_error(&c->rd));
            return -1;
        }
        if (conn_item(c, &it) < 0)
            return -1;
    }
    if (c->in_start == c->in_end)
        c->in_start = c->in_end = 0;
    return 0;
}

/* Room to receive into: at least RD_READ_MIN bytes after in_end, and the
 * whole of a reply element whose length is known. Compacts (moves the
 * unparsed tail to the front) only when that is short. */
static int conn_room(rd_conn *c)
{
    size_t have = c->in_end - c->in_start;
    if (!have)
        c->in_start = c->in_end = 0;
    size_t need = c->rd.need > have ? c->rd.need : have;
    if (c->in_cap - c->in_end >= RD_READ_MIN && c->in_start + need <= c->in_cap)
        return 0;
    if (c->in_start) {
        memmove(c->in, c->in + c->in_start, have);
        c->in_start = 0;
        c->in_end = have;
    }
    size_t cap = c->in_cap;
    while (cap < need + RD_READ_MIN)
        cap *= 2;
    if (cap != c->in_cap) {
        char *p = realloc(c->in, cap);
        if (!p)
            return -1;
        c->in = p;
        c->in_cap = cap;
    }
    return 0;
}

/* hiredis failed during the setup: drop the connection with its message
 * (copied first: conn_lost frees the context that holds it). */
static void hs_lost(rd_conn *c, const char *fallback)
{
    char why[sizeof(c->hs->errstr)];
    snprintf(why, sizeof(why), "%s", c->hs->errstr[0] ? c->hs->errstr : fallback);
    conn_lost(c, why);
}

/* The setup's replies, read and parsed by hiredis. Once all are in, the
 * socket is ours: hiredis lets go of it and the connection takes requests. */
static void setup_readable(rd_conn *c)
{
    redisContext *hs = c->hs;
    if (redisBufferRead(hs) != REDIS_OK) {
        hs_lost(c, "connection closed by Redis");
        return;
    }
    while (c->setup_pending > 0) {
        void *rep = NULL;
        if (redisGetReplyFromReader(hs, &rep) != REDIS_OK) {
            hs_lost(c, "malformed reply to the connection setup");
            return;
        }
        if (!rep)
            return; /* more to come */
        int rc = setup_reply(c, rep);
        freeReplyObject(rep);
        if (rc < 0)
            return;
    }
    /* Redis says nothing unasked: anything left over is garbage */
    void *extra = NULL;
    if (redisGetReplyFromReader(hs, &extra) != REDIS_OK || extra ||
        hs->reader->len > hs->reader->pos) {
        if (extra)
            freeReplyObject(extra);
        conn_lost(c, "unexpected bytes after the connection setup");
        return;
    }
    redisFreeKeepFd(hs);
    c->hs = NULL;
    conn_ready(c);
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    rd_conn *c = arg;
    if (c->hs) {
        setup_readable(c);
        return;
    }
    for (;;) {
        if (conn_room(c) < 0) {
            conn_lost(c, "out of memory for a reply");
            return;
        }
        size_t room = c->in_cap - c->in_end;
        ssize_t n = recv(fd, c->in + c->in_end, room, 0);
        if (n > 0) {
            c->in_end += (size_t)n;
            if (conn_parse(c) < 0)
                return;
            if ((size_t)n < room)
                break;
        } else if (n == 0) {
            conn_lost(c, "connection closed by Redis");
            return;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            break;
        } else if (errno != EINTR) {
            conn_lost(c, strerror(errno));
            return;
        }
    }
    if (c->in_start == c->in_end && c->in_cap > RD_IN_KEEP) {
        char *p = realloc(c->in, RD_IN_FIRST);
        if (p) {
            c->in = p;
            c->in_cap = RD_IN_FIRST;
            c->in_start = c->in_end = 0;
        }
    }
}

static void set_keepalive(int fd)
{
    int one = 1, idle = RD_KEEPALIVE_S, intvl = RD_KEEPALIVE_S / 3, cnt = 3;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

/* The connect completed, or the socket takes more of the output buffer. */
static void on_writable(evutil_socket_t fd, short what, void *arg)
{
    rd_conn *c = arg;
    if (!c->connected) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err) {
            conn_lost(c, strerror(err));
            return;
        }
        c->connected = 1;
        set_keepalive(fd);
        event_add(c->rev, NULL);
    }
    if (c->hs) {
        int done = 0;
        if (redisBufferWrite(c->hs, &done) != REDIS_OK) {
            hs_lost(c, "cannot send the connection setup");
            return;
        }
        if (done) {
            pthread_mutex_lock(&c->mu);
            c->out_armed = 0;
            event_del(c->wev);
            pthread_mutex_unlock(&c->mu);
        }
        return;
    }
    pthread_mutex_lock(&c->mu);
    int err = out_send_locked(c);
    pthread_mutex_unlock(&c->mu);
    if (err)
        conn_lost(c, strerror(err));
}

static void on_kill(evutil_socket_t fd, short what, void *arg)
{
    rd_conn *c = arg;
    char why[sizeof(c->broken_why)];
    pthread_mutex_lock(&c->mu);
    int broken = c->broken;
    memcpy(why, c->broken_why, sizeof(why));
    pthread_mutex_unlock(&c->mu);
    if (broken) /* else stale: that socket is gone already */
        conn_lost(c, why);
}

/* Requests past their deadline fail; the timer is re-armed for the next one. */
static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    rd_conn *c = arg;
    int64_t now = ld_mono_us(), next = INT64_MAX;
    rd_req *expired = NULL;
    pthread_mutex_lock(&c->mu);
    c->dl_at = 0;
    for (rd_req *q = c->head; q; q = q->next) {
        rd_req *t = q->kind == RD_RETRY ? q->parent : q;
        if (t->finished || t->expiring)
            continue;
        if (t->deadline_us <= now) {
            t->expiring = 1;
            t->xnext = expired;
            expired = t;
        } else if (t->deadline_us < next) {
            next = t->deadline_us;
        }
    }
    conn_arm_deadline(c, next);
    pthread_mutex_unlock(&c->mu);
    while (expired) {
        rd_req *t = expired;
        expired = t->xnext;
        t->expiring = 0;
        req_fail(t, GRPC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded waiting for Redis at %s",
                 t->s->addr);
    }
}

/* A failure before the socket exists. */
static void conn_failed(rd_conn *c, const char *why)
{
    pthread_mutex_lock(&c->mu);
    c->state = RD_CONNECTING; /* so conn_lost logs it as a failed attempt */
    pthread_mutex_unlock(&c->mu);
    conn_lost(c, why);
}

/* Connect (non-blocking) and queue AUTH/SELECT/SCRIPT LOAD with hiredis,
 * which resolves the address (IPv4 first, then IPv6), connects, sends the
 * setup and reads its replies (setup_readable); the connection takes
 * requests once they all succeeded, and from then on speaks RESP itself. */
static void conn_start(rd_conn *c)
{
    rd_store *s = c->s;
    c->setup_failed = 0;
    redisContext *hs = redisConnectNonBlock(s->host, s->port);
    if (!hs || hs->err) {
        char why[128];
        snprintf(why, sizeof(why), "%s", hs ? hs->errstr : "out of memory");
        if (hs)
            redisFree(hs);
        conn_failed(c, why);
        return;
    }
    int fd = hs->fd;
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    int n = 0;
    if (s->password || s->username) {
        const char *argv[3];
        int argc = 0;
        argv[argc++] = "AUTH";
        if (s->username)
            argv[argc++] = s->username;
        argv[argc++] = s->password ? s->password : "";
        redisAppendCommandArgv(hs, argc, argv, NULL);
        n++;
    }
    if (s->db) {
        redisAppendCommand(hs, "SELECT %d", s->db);
        n++;
    }
    redisAppendCommand(hs, "SCRIPT LOAD %s", rd_script);
    n++;
    struct event *rev = event_new(s->evb, fd, EV_READ | EV_PERSIST, on_readable, c);
    struct event *wev = event_new(s->evb, fd, EV_WRITE | EV_PERSIST, on_writable, c);
    if (!rev || !wev || hs->err) {
        if (rev)
            event_free(rev);
        if (wev)
            event_free(wev);
        redisFree(hs); /* closes fd */
        conn_failed(c, "cannot attach to the event loop");
        return;
    }

    c->hs = hs;
    c->connected = 0;
    c->setup_pending = n;
    c->head_cur = NULL;
    c->in_start = c->in_end = 0;
    resp_reset(&c->rd);
    pthread_mutex_lock(&c->mu);
    c->fd = fd;
    c->rev = rev;
    c->wev = wev;
    c->state = RD_CONNECTING;
    c->broken = 0;
    c->out_off = c->out_len = 0;
    c->out_armed = 1;
    event_add(wev, NULL); /* the connect's completion, then the setup's bytes */
    pthread_mutex_unlock(&c->mu);
    conn_schedule(c, RD_CONNECT_TIMEOUT_US);
}

static void on_conn_timer(evutil_socket_t fd, short what, void *arg)
{
    rd_conn *c = arg;
    if (c->s->loop_stopping)
        return;
    if (c->state == RD_DOWN)
        conn_start(c);
    else if (c->state == RD_CONNECTING)
        conn_lost(c, "timed out connecting");
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    rd_store *s = arg;
    s->loop_stopping = 1;
    for (int i = 0; i < RD_NCONN; i++) {
        rd_conn *c = &s->conns[i];
        event_del(c->timer);
        event_del(c->dl_timer);
        conn_lost(c, "the store is shutting down"); /* its requests: UNAVAILABLE */
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
    q->deadline_us = deadline_us > 0 ? deadline_us : INT64_MAX;
    q->pending = 1;
    ld_status_clear(&q->st);
    return q;
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
    rd_member *rep_of =
            ld_arena_alloc(r->arena, total * sizeof *rep_of); /* [command] -> first member */
    size_t *fields =
            ld_arena_calloc(r->arena, total + 1, sizeof *fields); /* [command] -> HMGET fields */
    /* the (group, key) map by command, read by the I/O thread until done */
    size_t *first = ld_arena_alloc(r->arena, (total + 1) * sizeof *first);
    rd_member *members = ld_arena_alloc(r->arena, total * sizeof *members);
    if (!slots || !cmd_of || !count || !rep_of || !fields || !first || !members)
        return oom(st);
    size_t n_cmds = 0, m = 0;
    size_t *m0 = ld_arena_alloc(r->arena, r->n_groups * sizeof *m0); /* [group] -> first member */
    if (!m0)
        return oom(st);
    for (size_t g = 0; g < r->n_groups; g++) {
        const ol_read_group *gr = &r->groups[g];
        m0[g] = m;
        /* views of one entity share their key array (ol_serve): reuse the
         * commands found for the first of them instead of hashing again */
        size_t same = g;
        for (size_t h = 0; h < g && same == g; h++)
            if (r->groups[h].keys == gr->keys && r->groups[h].key_lens == gr->key_lens &&
                r->groups[h].n_keys == gr->n_keys)
                same = h;
        if (same != g) {
            for (size_t k = 0; k < gr->n_keys; k++, m++) {
                size_t c = cmd_of[m0[same] + k];
                cmd_of[m] = c;
                count[c]++;
                fields[c] += gr->n_features + 1;
            }
            continue;
        }
        for (size_t k = 0; k < gr->n_keys; k++, m++) {
            const uint8_t *kb = gr->keys[k];
            size_t kl = gr->key_lens[k];
            uint64_t h = ld_fnv1a(kb, kl);
            size_t i = h & (n_slots - 1);
            for (;; i = (i + 1) & (n_slots - 1)) {
                if (!slots[i].cmd) {
                    slots[i] = (struct slot){h, ++n_cmds};
                    rep_of[n_cmds - 1] = (rd_member){(uint32_t)g, (uint32_t)k};
                    break;
                }
                const rd_member *o = &rep_of[slots[i].cmd - 1];
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
        first[c] = off;
        off += count[c];
        count[c] = first[c];
    }
    first[n_cmds] = off;
    m = 0;
    for (size_t g = 0; g < r->n_groups; g++)
        for (size_t k = 0; k < r->groups[g].n_keys; k++, m++)
            members[count[cmd_of[m]]++] = (rd_member){(uint32_t)g, (uint32_t)k};

    /* each group's field list ("_ts:<view>" last), formatted once */
    ld_buf gf = LD_BUF_INIT;
    size_t *gf_off = ld_arena_alloc(r->arena, (r->n_groups + 1) * sizeof *gf_off);
    if (!gf_off)
        return oom(st);
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
        cmd_arg2(&gf, "_ts:", 4, gr->table, strlen(gr->table));
    }
    gf_off[r->n_groups] = gf.len;

    size_t plen = strlen(r->project), need = 0;
    for (size_t i = 0; i < first[n_cmds]; i++) {
        const rd_member *rm = &members[i];
        need += gf_off[rm->g + 1] - gf_off[rm->g] + 64 + r->groups[rm->g].key_lens[rm->k] + plen;
    }
    ld_buf cmds = LD_BUF_INIT;
    ld_buf_reserve(&cmds, need);
    for (size_t c = 0; c < n_cmds; c++) {
        const rd_member *rm = &rep_of[c];
        const ol_read_group *rg = &r->groups[rm->g];
        cmd_hdr(&cmds, '*', fields[c] + 2);
        cmd_arg(&cmds, "HMGET", 5);
        cmd_arg2(&cmds, rg->keys[rm->k], rg->key_lens[rm->k], r->project, plen);
        for (size_t i = first[c]; i < first[c + 1]; i++) {
            size_t g = members[i].g, n = gf_off[g + 1] - gf_off[g];
            memcpy(cmds.data + cmds.len, gf.data + gf_off[g], n); /* reserved above */
            cmds.len += n;
        }
        cmds.data[cmds.len] = '\0';
    }
    ld_buf_free(&gf);

    rd_req *q = req_new(s, RD_READ, r->deadline_us);
    if (!q) {
        ld_buf_free(&cmds);
        return oom(st);
    }
    q->r = r;
    q->n_cmds = n_cmds;
    q->first = first;
    q->members = members;
    q->want = fields;
    int rc = submit(s, q, cmds.data, cmds.len, r->defer, st);
    ld_buf_free(&cmds);
    return rc;
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
        cmd_hdr(b, '*', 4 + 2 * nf);
        cmd_arg(b, "HSET", 4);
        cmd_arg2(b, rw->key, rw->key_len, w->project, plen);
    } else {
        cmd_hdr(b, '*', 9 + 2 * nf);
        cmd_str(b, eval ? "EVAL" : "EVALSHA");
        cmd_str(b, eval ? rd_script : rd_script_sha);
        cmd_arg(b, "1", 1);
        cmd_arg2(b, rw->key, rw->key_len, w->project, plen);
    }
    cmd_arg2(b, "_ts:", 4, w->table, tlen);
    cmd_arg(b, ts, tslen);
    if (!s->skip_dedup) {
        cmd_int(b, sec);
        cmd_int(b, nanos);
        cmd_int(b, s->key_ttl_seconds);
    }
    for (size_t f = 0; f < nf; f++) {
        unsigned char h[4];
        if (w->fields)
            memcpy(h, w->fields[f], 4);
        else
            ld_murmur3_feature_field(w->table, w->features[f], h);
        cmd_arg(b, h, 4);
        /* a missing value is an empty Value (b""), as Feast writes None */
        const uint8_t *v = rw->val ? rw->val[f] : NULL;
        cmd_arg(b, v ? v : rd_empty, v ? rw->val_len[f] : 0);
    }
    lens[0] = b->len - start;
    if (!s->skip_dedup || s->key_ttl_seconds <= 0)
        return 1;
    start = b->len;
    cmd_hdr(b, '*', 3);
    cmd_arg(b, "EXPIRE", 6);
    cmd_arg2(b, rw->key, rw->key_len, w->project, plen);
    cmd_int(b, s->key_ttl_seconds);
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
    if (!q)
        return oom(st);
    q->w = w;
    ld_buf cmds = LD_BUF_INIT;
    for (size_t row = 0; row < w->n_rows; row++) {
        size_t lens[2];
        q->n_cmds += format_row(&cmds, s, w, row, 0, lens);
    }
    int rc = submit(s, q, cmds.data, cmds.len, NULL, st);
    ld_buf_free(&cmds);
    return rc;
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
    if (s->thread_started) {
        event_active(s->stop_ev, EV_TIMEOUT, 0);
        pthread_join(s->thread, NULL);
    }
    for (int i = 0; i < RD_NCONN; i++) {
        rd_conn *c = &s->conns[i];
        if (c->rev)
            event_free(c->rev);
        if (c->wev)
            event_free(c->wev);
        if (c->fd >= 0)
            close(c->fd);
        if (c->timer)
            event_free(c->timer);
        if (c->dl_timer)
            event_free(c->dl_timer);
        if (c->kill_ev)
            event_free(c->kill_ev);
        free(c->in);
        free(c->out);
        if (c->s)
            pthread_mutex_destroy(&c->mu);
    }
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
    for (int i = 0; i < RD_NCONN; i++)
        s->conns[i].fd = -1;
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
    if (s->evb)
        s->stop_ev = event_new(s->evb, -1, 0, on_stop, s);
    int ok = s->evb && s->stop_ev;
    for (int i = 0; i < RD_NCONN && ok; i++) {
        rd_conn *c = &s->conns[i];
        c->s = s;
        c->id = i;
        pthread_mutex_init(&c->mu, NULL);
        c->state = RD_DOWN;
        c->backoff_us = RD_BACKOFF_MIN_US;
        resp_init(&c->rd, RD_MAX_BULK, RD_MAX_ARRAY, 0);
        c->in = malloc(RD_IN_FIRST);
        c->in_cap = RD_IN_FIRST;
        c->timer = evtimer_new(s->evb, on_conn_timer, c);
        c->dl_timer = evtimer_new(s->evb, on_deadline, c);
        c->kill_ev = event_new(s->evb, -1, 0, on_kill, c);
        ok = c->in && c->timer && c->dl_timer && c->kill_ev;
        if (ok)
            conn_schedule(c, 0); /* first connect, from the loop */
    }
    if (!ok) {
        ld_status_set(st, GRPC_STATUS_INTERNAL, NULL, "redis: cannot set up the event loop");
        rd_free(&s->base);
        return NULL;
    }

    /* the I/O thread takes no signals (SIGTERM); sockets use MSG_NOSIGNAL */
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
