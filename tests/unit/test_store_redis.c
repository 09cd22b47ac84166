/* test_store_redis: the Redis online store against a real Redis.
 *
 * LARDER_TEST_REDIS ("host:port", set by tests/run) names the shared Redis;
 * without it every test fails. Tests use db 11-13 of it and project names
 * carrying the pid, so parallel runs do not collide. The failure tests
 * (Redis down, deadlines, AUTH) start their own redis-server on a free port. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "ld_config.h"
#include "ld_key.h"
#include "ld_log.h"
#include "ld_murmur3.h"
#include "ld_test.h"
#include "ld_time.h"
#include "ld_value.h"
#include "ol_store.h"

#define T0_US (1640991600LL * 1000000) /* 2021-12-31T23:00:00Z */

__attribute__((constructor)) static void setup(void)
{
    signal(SIGPIPE, SIG_IGN); /* our sync connections to servers we kill */
    ld_log_setup(LD_LOG_ERROR, LD_LOG_TEXT, "test_store_redis");
}

static const char *redis_addr(void)
{
    const char *a = getenv("LARDER_TEST_REDIS");
    if (!a || !*a) {
        printf("# LARDER_TEST_REDIS is not set (tests/run starts a Redis and exports it)\n");
        LD_CHECK(!"LARDER_TEST_REDIS is set");
        return NULL;
    }
    return a;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* ---- a store ---------------------------------------------------------- */

static ol_store *store_open(const char *conn, int ttl, int skip_dedup, ld_status *st)
{
    ld_config *c = ld_config_default(NULL);
    char ttl_s[16];
    snprintf(ttl_s, sizeof(ttl_s), "%d", ttl);
    ol_store *s = NULL;
    if (ld_config_set(c, "online_store", "redis", st) == 0 &&
        ld_config_set(c, "online_store.connection_string", conn, st) == 0 &&
        ld_config_set(c, "online_store.key_ttl_seconds", ttl_s, st) == 0 &&
        ld_config_set(c, "online_store.skip_dedup", skip_dedup ? "true" : "false", st) == 0)
        s = ol_store_new(c, st);
    ld_config_free(c);
    return s;
}

static ol_store *store_open_db(int db, int ttl, int skip_dedup)
{
    const char *addr = redis_addr();
    if (!addr)
        return NULL;
    char conn[256];
    snprintf(conn, sizeof(conn), "%s,db=%d", addr, db);
    ld_status st = LD_STATUS_INIT;
    ol_store *s = store_open(conn, ttl, skip_dedup, &st);
    if (!s)
        printf("# store_open(%s): %s\n", conn, st.msg);
    LD_CHECK(s != NULL);
    if (s)
        LD_CHECK_INT(s->ops->healthy(s), 1);
    return s;
}

/* ---- waiting for done ------------------------------------------------- */

typedef struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    int calls;
    ld_status st;
} waiter;

static void waiter_init(waiter *w)
{
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->done = 0;
    w->calls = 0;
    ld_status_clear(&w->st);
}

static void waiter_fini(waiter *w)
{
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
}

static void waiter_signal(waiter *w, const ld_status *st)
{
    pthread_mutex_lock(&w->mu);
    w->st = *st;
    w->done = 1;
    w->calls++;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* The store must call done; if it never does, the request memory cannot be
 * released safely, so give up on the whole run. */
static void waiter_wait(waiter *w)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 20;
    pthread_mutex_lock(&w->mu);
    while (!w->done)
        if (pthread_cond_timedwait(&w->cv, &w->mu, &until) == ETIMEDOUT) {
            printf("# Bail out! a request never completed\n");
            fflush(stdout);
            _exit(1);
        }
    pthread_mutex_unlock(&w->mu);
}

static void read_done(ol_read *r, const ld_status *st)
{
    waiter_signal(r->arg, st);
}

static void write_done(ol_write *w, const ld_status *st)
{
    waiter_signal(w->arg, st);
}

/* ---- building requests ------------------------------------------------ */

static void ekey(ld_arena *a, int64_t id, const uint8_t **key, size_t *len)
{
    const char *jk[] = {"driver_id"};
    const Feast__Types__Value *v[] = {ld_value_int64(a, id)};
    ld_buf b = LD_BUF_INIT;
    ld_status st = LD_STATUS_INIT;
    LD_CHECK_INT(ld_key_serialize(jk, v, 1, 3, &b, &st), 0);
    *key = ld_arena_memdup(a, b.data, b.len);
    *len = b.len;
    ld_buf_free(&b);
}

static void pack(ld_arena *a, const Feast__Types__Value *v, const uint8_t **out, size_t *len)
{
    size_t n = feast__types__value__get_packed_size(v);
    uint8_t *p = ld_arena_alloc(a, n ? n : 1);
    feast__types__value__pack(v, p);
    *out = p;
    *len = n;
}

static const unsigned char (*fields_of(ld_arena *a, const char *table, const char *const *features,
                                       size_t nf))[4]
{
    unsigned char(*f)[4] = ld_arena_alloc(a, nf ? nf * 4 : 1);
    for (size_t i = 0; i < nf; i++)
        ld_murmur3_feature_field(table, features[i], f[i]);
    return (const unsigned char(*)[4])f;
}

static void group_set(ld_arena *a, ol_read_group *g, const char *table, const char *const *features,
                      size_t nf, const int64_t *ids, size_t nk)
{
    memset(g, 0, sizeof(*g));
    g->table = table;
    g->features = features;
    g->n_features = nf;
    g->fields = fields_of(a, table, features, nf);
    const uint8_t **keys = ld_arena_calloc(a, nk + 1, sizeof(*keys));
    size_t *lens = ld_arena_calloc(a, nk + 1, sizeof(*lens));
    for (size_t k = 0; k < nk; k++)
        ekey(a, ids[k], &keys[k], &lens[k]);
    g->keys = keys;
    g->key_lens = lens;
    g->n_keys = nk;
    g->val = ld_arena_calloc(a, nk * nf + 1, sizeof(*g->val));
    g->val_len = ld_arena_calloc(a, nk * nf + 1, sizeof(*g->val_len));
    g->event_ts_us = ld_arena_calloc(a, nk + 1, sizeof(*g->event_ts_us));
    g->found = ld_arena_calloc(a, nk + 1, 1);
    /* garbage, so a store that forgets a cell is caught */
    for (size_t i = 0; i < nk * nf; i++)
        g->val[i] = (const uint8_t *)"x";
    for (size_t k = 0; k < nk; k++) {
        g->found[k] = 7;
        g->event_ts_us[k] = 42;
    }
}

/* Run a read to completion; returns the status code. */
static int run_read(ol_store *s, ol_read *r, ld_status *st)
{
    waiter w;
    waiter_init(&w);
    r->done = read_done;
    r->arg = &w;
    if (!r->deadline_us)
        r->deadline_us = INT64_MAX;
    ld_status_clear(st);
    if (s->ops->read(s, r, st) < 0) {
        LD_CHECK(st->code != GRPC_STATUS_OK);
        waiter_fini(&w);
        return st->code;
    }
    waiter_wait(&w);
    *st = w.st;
    LD_CHECK_INT(w.calls, 1);
    waiter_fini(&w);
    return st->code;
}

static int run_write(ol_store *s, ol_write *wr, ld_status *st)
{
    waiter w;
    waiter_init(&w);
    wr->done = write_done;
    wr->arg = &w;
    if (!wr->deadline_us)
        wr->deadline_us = INT64_MAX;
    ld_status_clear(st);
    if (s->ops->write(s, wr, st) < 0) {
        LD_CHECK(st->code != GRPC_STATUS_OK);
        waiter_fini(&w);
        return st->code;
    }
    waiter_wait(&w);
    *st = w.st;
    LD_CHECK_INT(w.calls, 1);
    waiter_fini(&w);
    return st->code;
}

/* A write of n rows of view `table`; fill rows with row_set(). */
static void write_init(ld_arena *a, ol_write *w, const char *project, const char *table,
                       const char *const *features, size_t nf, size_t nrows)
{
    memset(w, 0, sizeof(*w));
    w->project = project;
    w->table = table;
    w->features = features;
    w->n_features = nf;
    w->fields = fields_of(a, table, features, nf);
    w->rows = ld_arena_calloc(a, nrows, sizeof(ol_write_row));
    w->n_rows = nrows;
    w->arena = a;
    w->deadline_us = INT64_MAX;
}

static void row_set(ld_arena *a, ol_write *w, size_t i, int64_t id, int64_t ts_us,
                    const Feast__Types__Value *const *vals)
{
    ol_write_row *row = (ol_write_row *)&w->rows[i];
    ekey(a, id, &row->key, &row->key_len);
    row->event_ts_us = ts_us;
    const uint8_t **v = ld_arena_calloc(a, w->n_features + 1, sizeof(*v));
    size_t *vl = ld_arena_calloc(a, w->n_features + 1, sizeof(*vl));
    for (size_t f = 0; f < w->n_features; f++)
        if (vals[f])
            pack(a, vals[f], &v[f], &vl[f]);
    row->val = v;
    row->val_len = vl;
}

/* Is cell (k, f) of g the serialized form of want? */
static int cell_is(ld_arena *a, const ol_read_group *g, size_t k, size_t f,
                   const Feast__Types__Value *want)
{
    const uint8_t *p;
    size_t n;
    pack(a, want, &p, &n);
    size_t i = k * g->n_features + f;
    return g->val[i] && g->val_len[i] == n && memcmp(g->val[i], p, n) == 0;
}

/* Write one row (one or two features of view `table`) and check the status. */
static int put1(ol_store *s, const char *project, const char *table, const char *const *features,
                size_t nf, int64_t id, int64_t ts_us, const Feast__Types__Value *const *vals)
{
    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    ol_write w;
    write_init(&a, &w, project, table, features, nf, 1);
    row_set(&a, &w, 0, id, ts_us, vals);
    ld_status st;
    int code = run_write(s, &w, &st);
    if (code)
        printf("# write: %s\n", st.msg);
    ld_arena_destroy(&a);
    return code;
}

/* Read feature 0 of view `table` for one id: 1 found (value float *out, ts
 * *ts), 0 not found, -1 error. */
static int get1(ol_store *s, const char *project, const char *table, const char *feature,
                int64_t id, float *out, int64_t *ts)
{
    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    ol_read_group g;
    const char *features[] = {feature};
    group_set(&a, &g, table, features, 1, &id, 1);
    ol_read r = {.project = project, .groups = &g, .n_groups = 1, .arena = &a};
    ld_status st;
    int rc = -1;
    if (run_read(s, &r, &st) == 0) {
        rc = g.found[0];
        *ts = g.event_ts_us[0];
        *out = -1;
        if (g.val[0]) {
            Feast__Types__Value *v =
                    feast__types__value__unpack(ld_arena_pbc(&a), g.val_len[0], g.val[0]);
            if (v && v->val_case == FEAST__TYPES__VALUE__VAL_FLOAT_VAL)
                *out = v->float_val;
        }
    } else {
        printf("# read: %s\n", st.msg);
    }
    ld_arena_destroy(&a);
    return rc;
}

/* ---- plain synchronous Redis, to look behind the store's back ---------- */

static redisContext *sync_conn(const char *addr, int db)
{
    char host[256];
    snprintf(host, sizeof(host), "%s", addr);
    char *colon = strrchr(host, ':');
    int port = 6379;
    if (colon) {
        *colon = '\0';
        port = atoi(colon + 1);
    }
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout(host, port, tv);
    if (!c || c->err) {
        printf("# cannot connect to %s: %s\n", addr, c ? c->errstr : "oom");
        if (c)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    if (db) {
        redisReply *r = redisCommand(c, "SELECT %d", db);
        if (r)
            freeReplyObject(r);
    }
    return c;
}

static void sync_cmd(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (r)
        freeReplyObject(r);
}

static void project_name(char *buf, size_t n, const char *what)
{
    snprintf(buf, n, "t_%s_%ld", what, (long)getpid());
}

/* ---- our own redis-server ------------------------------------------------ */

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    getsockname(fd, (struct sockaddr *)&sa, &len);
    close(fd);
    return ntohs(sa.sin_port);
}

/* Start redis-server on 127.0.0.1:port (extra: one more "--opt value" pair
 * or NULL) and wait until it answers PING. Returns its pid, or -1. */
static pid_t redis_start(int port, const char *opt, const char *val)
{
    char port_s[16];
    snprintf(port_s, sizeof(port_s), "%d", port);
    pid_t pid = fork();
    if (pid == 0) {
        freopen("/dev/null", "w", stdout);
        freopen("/dev/null", "w", stderr);
        execlp("redis-server", "redis-server", "--port", port_s, "--bind", "127.0.0.1", "--save",
               "", "--appendonly", "no", "--daemonize", "no", opt, val, (char *)NULL);
        _exit(127);
    }
    if (pid < 0)
        return -1;
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    for (int i = 0; i < 500; i++) {
        struct timeval tv = {0, 200000};
        redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
        if (c && !c->err) {
            redisReply *r = redisCommand(c, "PING");
            int ok = r && (r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_ERROR);
            if (r)
                freeReplyObject(r);
            redisFree(c);
            if (ok)
                return pid;
        } else if (c) {
            redisFree(c);
        }
        sleep_ms(10);
    }
    printf("# redis-server on port %d did not come up\n", port);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

static void redis_kill(pid_t pid)
{
    if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
}

/* A redis-server of this test's own on a free port (*port, addr "host:port")
 * and a store on it; NULL (nothing left running) when either fails. */
static ol_store *private_store(pid_t *pid, int *port, char *addr, size_t n)
{
    *port = free_port();
    *pid = redis_start(*port, NULL, NULL);
    LD_CHECK(*pid > 0);
    if (*pid < 0)
        return NULL;
    snprintf(addr, n, "127.0.0.1:%d", *port);
    ld_status st = LD_STATUS_INIT;
    ol_store *s = store_open(addr, 0, 0, &st);
    LD_CHECK(s != NULL);
    if (!s) {
        printf("# store_open(%s): %s\n", addr, st.msg);
        redis_kill(*pid);
    }
    return s;
}

/* ---- a fake Redis that answers HMGET with bytes a test chooses ---------- */

/* What the fake answers to an HMGET of n fields. */
enum {
    FK_NILS,        /* n nulls */
    FK_VALUES,      /* n copies of "hello", sent one byte at a time */
    FK_BIG_BULK,    /* a bulk length over the store's limit */
    FK_BIG_ARRAY,   /* an array count over the store's limit */
    FK_NESTED,      /* an array inside the array */
    FK_RESP3,       /* a RESP3 map */
    FK_BAD_LENGTH,  /* "$12abc" */
    FK_NO_CRLF,     /* a bulk string not followed by CRLF */
    FK_WRONG_COUNT, /* a well-formed array of the wrong length */
    FK_ERROR,       /* -ERR boom */
    FK_TWICE,       /* the right answer, then an extra one nobody asked for */
};

typedef struct fake {
    int lfd;
    int port;
    pthread_t th;
    int mode;     /* atomic */
    int stop;     /* atomic */
    int accepted; /* connections accepted; atomic */
} fake;

static void fake_send(int fd, const char *p, size_t n, int bytewise)
{
    while (n) {
        ssize_t w = send(fd, p, bytewise ? 1 : n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
        if (bytewise)
            sleep_ms(0);
    }
}

static void fake_answer(fake *f, int fd, const redisReply *cmd)
{
    if (cmd->type != REDIS_REPLY_ARRAY || cmd->elements < 1)
        return;
    const char *name = cmd->element[0]->str;
    if (strcasecmp(name, "HMGET") != 0) {
        fake_send(fd, ":1\r\n", 4, 0); /* SCRIPT LOAD, EVALSHA...: anything but an error */
        return;
    }
    size_t n = cmd->elements - 2;
    ld_buf b = LD_BUF_INIT;
    int mode = __atomic_load_n(&f->mode, __ATOMIC_ACQUIRE);
    switch (mode) {
    case FK_NILS:
    case FK_TWICE:
        ld_buf_printf(&b, "*%zu\r\n", n);
        for (size_t i = 0; i < n; i++)
            ld_buf_puts(&b, "$-1\r\n");
        if (mode == FK_TWICE)
            ld_buf_puts(&b, "*1\r\n$-1\r\n");
        break;
    case FK_VALUES:
        ld_buf_printf(&b, "*%zu\r\n", n);
        for (size_t i = 0; i < n; i++)
            ld_buf_puts(&b, "$5\r\nhello\r\n");
        break;
    case FK_BIG_BULK:
        ld_buf_printf(&b, "*%zu\r\n$99999999999\r\n", n);
        break;
    case FK_BIG_ARRAY:
        ld_buf_puts(&b, "*99999999999\r\n");
        break;
    case FK_NESTED:
        ld_buf_printf(&b, "*%zu\r\n*1\r\n$1\r\na\r\n", n);
        break;
    case FK_RESP3:
        ld_buf_puts(&b, "%1\r\n+a\r\n+b\r\n");
        break;
    case FK_BAD_LENGTH:
        ld_buf_puts(&b, "$12abc\r\n");
        break;
    case FK_NO_CRLF:
        ld_buf_printf(&b, "*%zu\r\n$2\r\nabcd\r\n", n);
        break;
    case FK_WRONG_COUNT:
        ld_buf_printf(&b, "*%zu\r\n", n + 1);
        for (size_t i = 0; i <= n; i++)
            ld_buf_puts(&b, "$-1\r\n");
        break;
    case FK_ERROR:
        ld_buf_puts(&b, "-ERR boom\r\n");
        break;
    }
    fake_send(fd, b.data, b.len, mode == FK_VALUES);
    ld_buf_free(&b);
}

static void *fake_main(void *arg)
{
    fake *f = arg;
    enum { MAXC = 16 };
    struct pollfd pf[MAXC + 1];
    redisReader *rd[MAXC + 1];
    int n = 1;
    pf[0] = (struct pollfd){.fd = f->lfd, .events = POLLIN};
    while (!__atomic_load_n(&f->stop, __ATOMIC_ACQUIRE)) {
        if (poll(pf, (nfds_t)n, 20) <= 0)
            continue;
        if ((pf[0].revents & POLLIN) && n <= MAXC) {
            int fd = accept(f->lfd, NULL, NULL);
            if (fd >= 0) {
                pf[n] = (struct pollfd){.fd = fd, .events = POLLIN};
                rd[n] = redisReaderCreate();
                n++;
                __atomic_add_fetch(&f->accepted, 1, __ATOMIC_RELEASE);
            }
        }
        for (int i = 1; i < n; i++) {
            if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            char buf[65536];
            ssize_t got = recv(pf[i].fd, buf, sizeof(buf), 0);
            if (got > 0) {
                redisReaderFeed(rd[i], buf, (size_t)got);
                void *cmd;
                while (redisReaderGetReply(rd[i], &cmd) == REDIS_OK && cmd) {
                    fake_answer(f, pf[i].fd, cmd);
                    freeReplyObject(cmd);
                }
                continue;
            }
            close(pf[i].fd);
            redisReaderFree(rd[i]);
            pf[i] = pf[n - 1];
            rd[i] = rd[n - 1];
            n--;
            i--;
        }
    }
    for (int i = 1; i < n; i++) {
        close(pf[i].fd);
        redisReaderFree(rd[i]);
    }
    return NULL;
}

static int fake_start(fake *f)
{
    memset(f, 0, sizeof(*f));
    f->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    if (bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(f->lfd, 16) < 0) {
        close(f->lfd);
        return -1;
    }
    getsockname(f->lfd, (struct sockaddr *)&sa, &len);
    f->port = ntohs(sa.sin_port);
    return pthread_create(&f->th, NULL, fake_main, f) == 0 ? 0 : -1;
}

static void fake_stop(fake *f)
{
    __atomic_store_n(&f->stop, 1, __ATOMIC_RELEASE);
    pthread_join(f->th, NULL);
    close(f->lfd);
}

/* One read of two features of one key against the fake; returns the code. */
static int fake_read(ol_store *s, ld_arena *a, ol_read_group *g, ld_status *st)
{
    const char *f[] = {"a", "b"};
    int64_t id = 1;
    group_set(a, g, "v", f, 2, &id, 1);
    ol_read r = {.project = "p", .groups = g, .n_groups = 1, .arena = a};
    return run_read(s, &r, st);
}

/* ======================================================================== */

LD_TEST(env)
{
    LD_CHECK(redis_addr() != NULL);
}

LD_TEST(write_then_read)
{
    ol_store *s = store_open_db(11, 0, 0);
    if (!s)
        return;
    char project[64];
    project_name(project, sizeof(project), "rw");
    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    ld_status st;

    /* view 1: two features, keys 1..3; view 2: one feature, keys 2..3 */
    const char *f1[] = {"conv_rate", "avg_daily_trips"};
    const char *f2[] = {"rating"};
    ol_write w;
    write_init(&a, &w, project, "driver_hourly_stats", f1, 2, 3);
    for (int i = 0; i < 3; i++) {
        const Feast__Types__Value *v[] = {ld_value_float(&a, 0.5f + (float)i),
                                          i == 2 ? NULL : ld_value_int64(&a, 100 + i)};
        row_set(&a, &w, (size_t)i, 1 + i, T0_US + i * 1000001, v);
    }
    LD_CHECK_INT(run_write(s, &w, &st), 0);
    ol_write w2;
    write_init(&a, &w2, project, "driver_rating", f2, 1, 2);
    for (int i = 0; i < 2; i++) {
        const Feast__Types__Value *v[] = {
                ld_value_string(&a, i ? "good" : "fine", 4),
        };
        row_set(&a, &w2, (size_t)i, 2 + i, T0_US - 5, v);
    }
    LD_CHECK_INT(run_write(s, &w2, &st), 0);

    /* one read, both views; key 4 was never written; "acc_rate" neither */
    const char *r1[] = {"conv_rate", "acc_rate", "avg_daily_trips"};
    int64_t ids1[] = {1, 2, 3, 4};
    int64_t ids2[] = {1, 2, 3};
    ol_read_group g[3];
    group_set(&a, &g[0], "driver_hourly_stats", r1, 3, ids1, 4);
    group_set(&a, &g[1], "driver_rating", f2, 1, ids2, 3);
    group_set(&a, &g[2], "empty_view", f2, 1, NULL, 0);
    g[1].fields = NULL; /* the store computes them itself */
    ol_read r = {.project = project, .groups = g, .n_groups = 3, .arena = &a};
    LD_CHECK_INT(run_read(s, &r, &st), 0);

    for (int k = 0; k < 3; k++) {
        LD_CHECK_INT(g[0].found[k], 1);
        LD_CHECK_INT(g[0].event_ts_us[k], T0_US + k * 1000001);
        LD_CHECK(cell_is(&a, &g[0], (size_t)k, 0, ld_value_float(&a, 0.5f + (float)k)));
        LD_CHECK(g[0].val[k * 3 + 1] == NULL); /* acc_rate */
        LD_CHECK_INT(g[0].val_len[k * 3 + 1], 0);
    }
    LD_CHECK(cell_is(&a, &g[0], 0, 2, ld_value_int64(&a, 100)));
    LD_CHECK(cell_is(&a, &g[0], 1, 2, ld_value_int64(&a, 101)));
    /* a NULL value is written as an empty Value: present, zero bytes */
    LD_CHECK(g[0].val[2 * 3 + 2] != NULL);
    LD_CHECK_INT(g[0].val_len[2 * 3 + 2], 0);
    LD_CHECK_INT(g[0].found[3], 0);
    LD_CHECK_INT(g[0].event_ts_us[3], 0);
    for (int f = 0; f < 3; f++)
        LD_CHECK(g[0].val[3 * 3 + f] == NULL);

    /* key 1 has a hash (view 1) but no driver_rating fields */
    LD_CHECK_INT(g[1].found[0], 0);
    LD_CHECK(g[1].val[0] == NULL);
    LD_CHECK_INT(g[1].event_ts_us[0], 0);
    LD_CHECK_INT(g[1].found[1], 1);
    LD_CHECK_INT(g[1].found[2], 1);
    LD_CHECK_INT(g[1].event_ts_us[2], T0_US - 5);
    LD_CHECK(cell_is(&a, &g[1], 1, 0, ld_value_string(&a, "fine", 4)));
    LD_CHECK(cell_is(&a, &g[1], 2, 0, ld_value_string(&a, "good", 4)));

    /* another project sees nothing */
    ol_read_group g3;
    group_set(&a, &g3, "driver_hourly_stats", r1, 3, ids1, 4);
    ol_read r3 = {.project = "t_nobody", .groups = &g3, .n_groups = 1, .arena = &a};
    LD_CHECK_INT(run_read(s, &r3, &st), 0);
    for (int k = 0; k < 4; k++)
        LD_CHECK_INT(g3.found[k], 0);

    /* empty requests complete at once */
    ol_read r0 = {.project = project, .groups = g, .n_groups = 0, .arena = &a};
    LD_CHECK_INT(run_read(s, &r0, &st), 0);
    ol_write w0;
    write_init(&a, &w0, project, "driver_rating", f2, 1, 0);
    LD_CHECK_INT(run_write(s, &w0, &st), 0);

    ld_arena_destroy(&a);
    s->ops->free(s);
}

static const unsigned char key_1001[] = {0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x09, 0x00,
                                         0x00, 0x00, 'd',  'r',  'i',  'v',  'e',  'r',  '_',  'i',
                                         'd',  0x04, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0xe9,
                                         0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 'f',  'e',  'a',
                                         't',  'u',  'r',  'e',  '_',  'r',  'e',  'p',  'o'};
static const unsigned char field_conv[] = {0x61, 0x60, 0xe3, 0xda};
static const unsigned char val_half[] = {0x35, 0x00, 0x00, 0x00, 0x3f};
static const unsigned char ts_example[] = {0x08, 0xf0, 0x96, 0xbe, 0x8e, 0x06};

/* The worked example of feast-protocols.md §1.5.2, byte for byte. */
LD_TEST(feast_layout_written)
{
    const char *addr = redis_addr();
    ol_store *s = store_open_db(13, 0, 0);
    if (!s)
        return;
    redisContext *c = sync_conn(addr, 13);
    LD_CHECK(c != NULL);
    if (!c) {
        s->ops->free(s);
        return;
    }
    sync_cmd(c, "DEL %b", key_1001, sizeof(key_1001));

    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    const uint8_t *k;
    size_t klen;
    ekey(&a, 1001, &k, &klen);
    LD_CHECK_MEM(k, klen, key_1001, sizeof(key_1001) - strlen("feature_repo"));

    const char *features[] = {"conv_rate"};
    const Feast__Types__Value *v[] = {ld_value_float(&a, 0.5f)};
    LD_CHECK_INT(put1(s, "feature_repo", "driver_hourly_stats", features, 1, 1001, T0_US, v), 0);

    redisReply *r = redisCommand(c, "HGETALL %b", key_1001, sizeof(key_1001));
    LD_CHECK(r && r->type == REDIS_REPLY_ARRAY && r->elements == 4);
    int seen = 0;
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
        redisReply *f = r->element[i], *val = r->element[i + 1];
        if (f->len == 4 && !memcmp(f->str, field_conv, 4)) {
            LD_CHECK_MEM(val->str, val->len, val_half, sizeof(val_half));
            seen |= 1;
        } else if (f->len == 23 && !memcmp(f->str, "_ts:driver_hourly_stats", 23)) {
            LD_CHECK_MEM(val->str, val->len, ts_example, sizeof(ts_example));
            seen |= 2;
        } else {
            printf("# unexpected field of %zu bytes\n", f->len);
            seen |= 4;
        }
    }
    LD_CHECK_INT(seen, 3);
    if (r)
        freeReplyObject(r);
    r = redisCommand(c, "TTL %b", key_1001, sizeof(key_1001));
    LD_CHECK(r && r->type == REDIS_REPLY_INTEGER && r->integer == -1);
    if (r)
        freeReplyObject(r);

    /* sub-second event times keep their nanos: 10 80 ca b5 ee 01 = 500000000 */
    static const unsigned char ts_half[] = {0x08, 0xf0, 0x96, 0xbe, 0x8e, 0x06,
                                            0x10, 0x80, 0xca, 0xb5, 0xee, 0x01};
    LD_CHECK_INT(
            put1(s, "feature_repo", "driver_hourly_stats", features, 1, 1001, T0_US + 500000, v),
            0);
    r = redisCommand(c, "HGET %b _ts:driver_hourly_stats", key_1001, sizeof(key_1001));
    LD_CHECK(r && r->type == REDIS_REPLY_STRING);
    if (r && r->type == REDIS_REPLY_STRING)
        LD_CHECK_MEM(r->str, r->len, ts_half, sizeof(ts_half));
    if (r)
        freeReplyObject(r);

    float got;
    int64_t ts;
    LD_CHECK_INT(get1(s, "feature_repo", "driver_hourly_stats", "conv_rate", 1001, &got, &ts), 1);
    LD_CHECK(got == 0.5f);
    LD_CHECK_INT(ts, T0_US + 500000);

    redisFree(c);
    ld_arena_destroy(&a);
    s->ops->free(s);
}

/* A hash Feast wrote (raw HSET of the worked example) reads back. */
LD_TEST(feast_layout_read)
{
    const char *addr = redis_addr();
    ol_store *s = store_open_db(12, 0, 0);
    if (!s)
        return;
    redisContext *c = sync_conn(addr, 12);
    LD_CHECK(c != NULL);
    if (!c) {
        s->ops->free(s);
        return;
    }
    sync_cmd(c, "DEL %b", key_1001, sizeof(key_1001));
    sync_cmd(c, "HSET %b %b %b _ts:driver_hourly_stats %b", key_1001, sizeof(key_1001), field_conv,
             sizeof(field_conv), val_half, sizeof(val_half), ts_example, sizeof(ts_example));

    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    const char *features[] = {"conv_rate", "acc_rate"};
    int64_t ids[] = {1001, 1002};
    ol_read_group g[2];
    group_set(&a, &g[0], "driver_hourly_stats", features, 2, ids, 2);
    group_set(&a, &g[1], "other_view", features, 2, ids, 1);
    ol_read r = {.project = "feature_repo", .groups = g, .n_groups = 2, .arena = &a};
    ld_status st;
    LD_CHECK_INT(run_read(s, &r, &st), 0);
    LD_CHECK_INT(g[0].found[0], 1);
    LD_CHECK_INT(g[0].event_ts_us[0], T0_US);
    LD_CHECK_MEM(g[0].val[0], g[0].val_len[0], val_half, sizeof(val_half));
    LD_CHECK(g[0].val[1] == NULL);
    LD_CHECK_INT(g[0].found[1], 0);
    LD_CHECK_INT(g[1].found[0], 0); /* the hash exists, but not for other_view */

    /* a hash with only the timestamp is found, with every value NULL */
    sync_cmd(c, "HDEL %b %b", key_1001, sizeof(key_1001), field_conv, sizeof(field_conv));
    group_set(&a, &g[0], "driver_hourly_stats", features, 2, ids, 1);
    ol_read r2 = {.project = "feature_repo", .groups = g, .n_groups = 1, .arena = &a};
    LD_CHECK_INT(run_read(s, &r2, &st), 0);
    LD_CHECK_INT(g[0].found[0], 1);
    LD_CHECK_INT(g[0].event_ts_us[0], T0_US);
    LD_CHECK(g[0].val[0] == NULL && g[0].val[1] == NULL);

    /* a value without a timestamp: found, epoch */
    sync_cmd(c, "HDEL %b _ts:driver_hourly_stats", key_1001, sizeof(key_1001));
    sync_cmd(c, "HSET %b %b %b", key_1001, sizeof(key_1001), field_conv, sizeof(field_conv),
             val_half, sizeof(val_half));
    LD_CHECK_INT(run_read(s, &r2, &st), 0);
    LD_CHECK_INT(g[0].found[0], 1);
    LD_CHECK_INT(g[0].event_ts_us[0], 0);
    LD_CHECK_MEM(g[0].val[0], g[0].val_len[0], val_half, sizeof(val_half));

    /* a key that is not a hash is an error, not a crash */
    sync_cmd(c, "DEL %b", key_1001, sizeof(key_1001));
    sync_cmd(c, "SET %b x", key_1001, sizeof(key_1001));
    LD_CHECK_INT(run_read(s, &r2, &st), GRPC_STATUS_INTERNAL);
    LD_CHECK(strstr(st.msg, "WRONGTYPE") != NULL);
    sync_cmd(c, "DEL %b", key_1001, sizeof(key_1001));

    redisFree(c);
    ld_arena_destroy(&a);
    s->ops->free(s);
}

LD_TEST(last_event_time_wins)
{
    const char *addr = redis_addr();
    ol_store *s = store_open_db(11, 0, 0);
    if (!s)
        return;
    char project[64];
    project_name(project, sizeof(project), "lww");
    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    const char *f[] = {"conv_rate"};
    const char *view = "driver_hourly_stats";
#define V(x) ((const Feast__Types__Value *const[]){ld_value_float(&a, (x))})
    float got;
    int64_t ts;

    LD_CHECK_INT(put1(s, project, view, f, 1, 7, T0_US, V(1)), 0);
    LD_CHECK_INT(get1(s, project, view, "conv_rate", 7, &got, &ts), 1);
    LD_CHECK(got == 1 && ts == T0_US);
    /* older: ignored */
    LD_CHECK_INT(put1(s, project, view, f, 1, 7, T0_US - 1000000, V(2)), 0);
    LD_CHECK_INT(get1(s, project, view, "conv_rate", 7, &got, &ts), 1);
    LD_CHECK(got == 1 && ts == T0_US);
    /* older by one microsecond (nanos compared): ignored */
    LD_CHECK_INT(put1(s, project, view, f, 1, 7, T0_US - 1, V(2)), 0);
    LD_CHECK_INT(get1(s, project, view, "conv_rate", 7, &got, &ts), 1);
    LD_CHECK(got == 1 && ts == T0_US);
    /* equal: ignored (Feast skips new <= stored) */
    LD_CHECK_INT(put1(s, project, view, f, 1, 7, T0_US, V(3)), 0);
    LD_CHECK_INT(get1(s, project, view, "conv_rate", 7, &got, &ts), 1);
    LD_CHECK(got == 1 && ts == T0_US);
    /* newer by one microsecond: applied */
    LD_CHECK_INT(put1(s, project, view, f, 1, 7, T0_US + 1, V(4)), 0);
    LD_CHECK_INT(get1(s, project, view, "conv_rate", 7, &got, &ts), 1);
    LD_CHECK(got == 4 && ts == T0_US + 1);

    /* another view of the same entity (same hash) has its own clock */
    LD_CHECK_INT(put1(s, project, "driver_other", f, 1, 7, T0_US - 100000000, V(5)), 0);
    LD_CHECK_INT(get1(s, project, "driver_other", "conv_rate", 7, &got, &ts), 1);
    LD_CHECK(got == 5 && ts == T0_US - 100000000);
    LD_CHECK_INT(get1(s, project, view, "conv_rate", 7, &got, &ts), 1);
    LD_CHECK(got == 4);

    /* a key given twice in one batch keeps the latest event time */
    ol_write w;
    write_init(&a, &w, project, view, f, 1, 2);
    row_set(&a, &w, 0, 7, T0_US + 20, V(6));
    row_set(&a, &w, 1, 7, T0_US + 10, V(7));
    ld_status st;
    LD_CHECK_INT(run_write(s, &w, &st), 0);
    LD_CHECK_INT(get1(s, project, view, "conv_rate", 7, &got, &ts), 1);
    LD_CHECK(got == 6 && ts == T0_US + 20);
    write_init(&a, &w, project, view, f, 1, 2);
    row_set(&a, &w, 0, 7, T0_US + 30, V(8));
    row_set(&a, &w, 1, 7, T0_US + 40, V(9));
    LD_CHECK_INT(run_write(s, &w, &st), 0);
    LD_CHECK_INT(get1(s, project, view, "conv_rate", 7, &got, &ts), 1);
    LD_CHECK(got == 9 && ts == T0_US + 40);

    /* before the epoch: negative seconds (10-byte varints) compare right */
    LD_CHECK_INT(put1(s, project, view, f, 1, 8, -1500000, V(10)), 0);
    LD_CHECK_INT(put1(s, project, view, f, 1, 8, -2000000, V(11)), 0);
    LD_CHECK_INT(get1(s, project, view, "conv_rate", 8, &got, &ts), 1);
    LD_CHECK(got == 10 && ts == -1500000);
    LD_CHECK_INT(put1(s, project, view, f, 1, 8, -1000000, V(12)), 0);
    LD_CHECK_INT(get1(s, project, view, "conv_rate", 8, &got, &ts), 1);
    LD_CHECK(got == 12 && ts == -1000000);
    LD_CHECK_INT(put1(s, project, view, f, 1, 8, 5, V(13)), 0);
    LD_CHECK_INT(get1(s, project, view, "conv_rate", 8, &got, &ts), 1);
    LD_CHECK(got == 13 && ts == 5);

    /* the script cache flushed under us: NOSCRIPT, the row is resent as EVAL */
    redisContext *c = sync_conn(addr, 11);
    LD_CHECK(c != NULL);
    if (c) {
        sync_cmd(c, "SCRIPT FLUSH");
        redisFree(c);
    }
    LD_CHECK_INT(put1(s, project, view, f, 1, 7, T0_US + 50, V(14)), 0);
    LD_CHECK_INT(put1(s, project, view, f, 1, 7, T0_US + 45, V(15)), 0);
    LD_CHECK_INT(get1(s, project, view, "conv_rate", 7, &got, &ts), 1);
    LD_CHECK(got == 14 && ts == T0_US + 50);
#undef V
    ld_arena_destroy(&a);
    s->ops->free(s);
}

LD_TEST(skip_dedup)
{
    ol_store *s = store_open_db(11, 0, 1);
    if (!s)
        return;
    char project[64];
    project_name(project, sizeof(project), "skip");
    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    const char *f[] = {"conv_rate"};
    float got;
    int64_t ts;
    const Feast__Types__Value *v1[] = {ld_value_float(&a, 1)};
    const Feast__Types__Value *v2[] = {ld_value_float(&a, 2)};
    LD_CHECK_INT(put1(s, project, "v", f, 1, 1, T0_US, v1), 0);
    LD_CHECK_INT(put1(s, project, "v", f, 1, 1, T0_US - 1000000, v2), 0);
    LD_CHECK_INT(get1(s, project, "v", "conv_rate", 1, &got, &ts), 1);
    LD_CHECK(got == 2 && ts == T0_US - 1000000);
    ld_arena_destroy(&a);
    s->ops->free(s);
}

static long long ttl_of(redisContext *c, const char *project, int64_t id)
{
    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    const uint8_t *k;
    size_t klen;
    ekey(&a, id, &k, &klen);
    ld_buf key = LD_BUF_INIT;
    ld_buf_append(&key, k, klen);
    ld_buf_puts(&key, project);
    redisReply *r = redisCommand(c, "TTL %b", key.data, key.len);
    long long t = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -100;
    if (r)
        freeReplyObject(r);
    ld_buf_free(&key);
    ld_arena_destroy(&a);
    return t;
}

LD_TEST(key_ttl_seconds)
{
    const char *addr = redis_addr();
    if (!addr)
        return;
    redisContext *c = sync_conn(addr, 11);
    LD_CHECK(c != NULL);
    if (!c)
        return;
    char project[64];
    project_name(project, sizeof(project), "ttl");
    const char *f[] = {"conv_rate"};
    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    const Feast__Types__Value *v[] = {ld_value_float(&a, 1)};
    for (int skip = 0; skip < 2; skip++) {
        ol_store *s = store_open_db(11, 100, skip);
        if (!s)
            break;
        LD_CHECK_INT(put1(s, project, "v", f, 1, 10 + skip, T0_US, v), 0);
        long long t = ttl_of(c, project, 10 + skip);
        LD_CHECK(t > 0 && t <= 100);
        s->ops->free(s);
        /* without key_ttl_seconds: no expiry */
        s = store_open_db(11, 0, skip);
        if (!s)
            break;
        LD_CHECK_INT(put1(s, project, "v", f, 1, 20 + skip, T0_US, v), 0);
        LD_CHECK_INT(ttl_of(c, project, 20 + skip), -1);
        s->ops->free(s);
    }
    ld_arena_destroy(&a);
    redisFree(c);
}

LD_TEST(ten_thousand_keys)
{
    ol_store *s = store_open_db(11, 0, 0);
    if (!s)
        return;
    char project[64];
    project_name(project, sizeof(project), "big");
    enum { N = 10000 };
    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    const char *f[] = {"conv_rate", "trips"};
    ol_write w;
    write_init(&a, &w, project, "stats", f, 2, N);
    for (int i = 0; i < N; i++) {
        const Feast__Types__Value *v[] = {ld_value_float(&a, (float)i), ld_value_int64(&a, -i)};
        row_set(&a, &w, (size_t)i, i, T0_US + i, v);
    }
    ld_status st;
    int64_t t = ld_mono_us();
    LD_CHECK_INT(run_write(s, &w, &st), 0);
    int64_t t_write = ld_mono_us() - t;

    static int64_t ids[N + 1];
    for (int i = 0; i <= N; i++)
        ids[i] = i;
    ol_read_group g;
    group_set(&a, &g, "stats", f, 2, ids, N + 1); /* key N is missing */
    ol_read r = {.project = project, .groups = &g, .n_groups = 1, .arena = &a};
    t = ld_mono_us();
    LD_CHECK_INT(run_read(s, &r, &st), 0);
    int64_t t_read = ld_mono_us() - t;
    int bad = 0;
    for (int i = 0; i < N; i++) {
        if (!g.found[i] || g.event_ts_us[i] != T0_US + i ||
            !cell_is(&a, &g, (size_t)i, 0, ld_value_float(&a, (float)i)) ||
            !cell_is(&a, &g, (size_t)i, 1, ld_value_int64(&a, -i)))
            bad++;
    }
    LD_CHECK_INT(bad, 0);
    LD_CHECK_INT(g.found[N], 0);
    printf("# 10000 rows written in %.1f ms, 10001 keys read in %.1f ms\n", t_write / 1e3,
           t_read / 1e3);

    /* a read bigger than the arena's limit fails cleanly */
    ld_arena small;
    ld_arena_init(&small, NULL, 0, 64 * 1024);
    ol_read_group g2;
    group_set(&a, &g2, "stats", f, 2, ids, N);
    ol_read r2 = {.project = project, .groups = &g2, .n_groups = 1, .arena = &small};
    LD_CHECK_INT(run_read(s, &r2, &st), GRPC_STATUS_RESOURCE_EXHAUSTED);
    ld_arena_destroy(&small);

    ld_arena_destroy(&a);
    s->ops->free(s);
}

typedef struct reader_arg {
    ol_store *s;
    const char *project;
    int seed;
    int n_reads;
    int keys_per_read;
    int bad;
} reader_arg;

static void *reader_main(void *p)
{
    reader_arg *ra = p;
    const char *f[] = {"conv_rate"};
    for (int i = 0; i < ra->n_reads; i++) {
        ld_arena a;
        ld_arena_init(&a, NULL, 0, 0);
        int64_t ids[64];
        for (int k = 0; k < ra->keys_per_read; k++)
            ids[k] = (ra->seed * 7919 + i * 31 + k) % 500;
        ol_read_group g;
        group_set(&a, &g, "conc", f, 1, ids, (size_t)ra->keys_per_read);
        ol_read r = {.project = ra->project, .groups = &g, .n_groups = 1, .arena = &a};
        ld_status st;
        if (run_read(ra->s, &r, &st) != 0)
            ra->bad++;
        else
            for (int k = 0; k < ra->keys_per_read; k++)
                if (!g.found[k] || g.event_ts_us[k] != T0_US + ids[k] ||
                    !cell_is(&a, &g, (size_t)k, 0, ld_value_float(&a, (float)ids[k])))
                    ra->bad++;
        ld_arena_destroy(&a);
    }
    return NULL;
}

static void run_readers(ol_store *s, const char *project, int threads, int n_reads, int kpr)
{
    pthread_t th[16];
    reader_arg ra[16];
    int64_t t = ld_mono_us();
    for (int i = 0; i < threads; i++) {
        ra[i] = (reader_arg){s, project, i, n_reads, kpr, 0};
        pthread_create(&th[i], NULL, reader_main, &ra[i]);
    }
    int bad = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        bad += ra[i].bad;
    }
    double secs = (double)(ld_mono_us() - t) / 1e6;
    LD_CHECK_INT(bad, 0);
    printf("# %d threads x %d reads of %d keys: %.0f reads/s, %.0f keys/s\n", threads, n_reads, kpr,
           threads * n_reads / secs, threads * n_reads * (double)kpr / secs);
}

LD_TEST(concurrent_reads)
{
    ol_store *s = store_open_db(11, 0, 0);
    if (!s)
        return;
    char project[64];
    project_name(project, sizeof(project), "conc");
    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    const char *f[] = {"conv_rate"};
    ol_write w;
    write_init(&a, &w, project, "conc", f, 1, 500);
    for (int i = 0; i < 500; i++) {
        const Feast__Types__Value *v[] = {ld_value_float(&a, (float)i)};
        row_set(&a, &w, (size_t)i, i, T0_US + i, v);
    }
    ld_status st;
    LD_CHECK_INT(run_write(s, &w, &st), 0);
    ld_arena_destroy(&a);

    run_readers(s, project, 1, 2000, 1); /* closed loop, one request in flight */
    run_readers(s, project, 8, 1000, 1);
    run_readers(s, project, 8, 200, 50);
    s->ops->free(s);
}

LD_TEST(bad_config)
{
    ld_status st = LD_STATUS_INIT;
    LD_CHECK(store_open("localhost:6379,ssl=true", 0, 0, &st) == NULL);
    LD_CHECK_INT(st.code, GRPC_STATUS_INVALID_ARGUMENT);
    LD_CHECK(strstr(st.msg, "TLS") != NULL);
    ld_status_clear(&st);
    LD_CHECK(store_open("localhost:6379,db=x", 0, 0, &st) == NULL);
    LD_CHECK_INT(st.code, GRPC_STATUS_INVALID_ARGUMENT);
    ld_status_clear(&st);
    LD_CHECK(store_open("localhost:99999", 0, 0, &st) == NULL);
    LD_CHECK_INT(st.code, GRPC_STATUS_INVALID_ARGUMENT);

    for (int i = 0; i < 2; i++) {
        ld_config *c = ld_config_default(NULL);
        ld_status_clear(&st);
        LD_CHECK_INT(ld_config_set(c, "online_store", "redis", &st), 0);
        LD_CHECK_INT(ld_config_set(c, "online_store.redis_type",
                                   i ? "redis_sentinel" : "redis_cluster", &st),
                     0);
        LD_CHECK(ol_store_new(c, &st) == NULL);
        LD_CHECK_INT(st.code, GRPC_STATUS_UNIMPLEMENTED);
        ld_config_free(c);
    }
}

/* Redis is not there at start-up: the store exists, is unhealthy and fails
 * requests at once. */
LD_TEST(unreachable_at_start)
{
    char conn[64];
    snprintf(conn, sizeof(conn), "127.0.0.1:%d", free_port());
    ld_status st = LD_STATUS_INIT;
    int64_t t = ld_mono_us();
    ol_store *s = store_open(conn, 0, 0, &st);
    LD_CHECK(s != NULL);
    if (!s)
        return;
    LD_CHECK(ld_mono_us() - t < 2500000);
    LD_CHECK_INT(s->ops->healthy(s), 0);
    float got;
    int64_t ts;
    t = ld_mono_us();
    LD_CHECK_INT(get1(s, "p", "v", "f", 1, &got, &ts), -1);
    LD_CHECK(ld_mono_us() - t < 100000);
    s->ops->free(s);
}

LD_TEST(redis_down_and_back)
{
    pid_t pid;
    int port;
    char addr[64];
    ol_store *s = private_store(&pid, &port, addr, sizeof(addr));
    if (!s)
        return;
    ld_status st = LD_STATUS_INIT;
    LD_CHECK_INT(s->ops->healthy(s), 1);
    const char *f[] = {"conv_rate"};
    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    const Feast__Types__Value *v[] = {ld_value_float(&a, 3)};
    LD_CHECK_INT(put1(s, "p", "v", f, 1, 1, T0_US, v), 0);
    float got;
    int64_t ts;
    LD_CHECK_INT(get1(s, "p", "v", "conv_rate", 1, &got, &ts), 1);

    /* a request in flight when the connection drops fails with UNAVAILABLE
     * (Redis stopped, so the request waits, then killed) */
    kill(pid, SIGSTOP);
    ol_read_group g;
    int64_t id = 1;
    group_set(&a, &g, "v", f, 1, &id, 1);
    ol_read r = {.project = "p",
                 .groups = &g,
                 .n_groups = 1,
                 .arena = &a,
                 .deadline_us = INT64_MAX,
                 .done = read_done};
    waiter w;
    waiter_init(&w);
    r.arg = &w;
    LD_CHECK_INT(s->ops->read(s, &r, &st), 0);
    sleep_ms(100);
    LD_CHECK_INT(w.done, 0);
    int64_t t = ld_mono_us();
    redis_kill(pid);
    waiter_wait(&w);
    LD_CHECK_INT(w.st.code, GRPC_STATUS_UNAVAILABLE);
    LD_CHECK(ld_mono_us() - t < 1000000);
    waiter_fini(&w);

    /* unhealthy without I/O, and requests fail fast */
    t = ld_mono_us();
    while (s->ops->healthy(s) && ld_mono_us() - t < 1000000)
        sleep_ms(5);
    LD_CHECK_INT(s->ops->healthy(s), 0);
    for (int i = 0; i < 3; i++) {
        t = ld_mono_us();
        LD_CHECK_INT(get1(s, "p", "v", "conv_rate", 1, &got, &ts), -1);
        LD_CHECK_INT(put1(s, "p", "v", f, 1, 1, T0_US + 1, v), GRPC_STATUS_UNAVAILABLE);
        LD_CHECK(ld_mono_us() - t < 100000);
        sleep_ms(300);
    }

    /* Redis comes back on the same port: the store recovers by itself */
    pid = redis_start(port, NULL, NULL);
    LD_CHECK(pid > 0);
    t = ld_mono_us();
    int ok = 0;
    while (!ok && ld_mono_us() - t < 3000000) {
        if (s->ops->healthy(s) && put1(s, "p", "v", f, 1, 2, T0_US, v) == 0)
            ok = 1;
        else
            sleep_ms(10);
    }
    int64_t took = ld_mono_us() - t;
    LD_CHECK(ok);
    printf("# recovered %.0f ms after Redis restarted\n", took / 1e3);
    LD_CHECK(took < 1500000);
    LD_CHECK_INT(get1(s, "p", "v", "conv_rate", 2, &got, &ts), 1);
    LD_CHECK(got == 3);

    s->ops->free(s);
    ld_arena_destroy(&a);
    redis_kill(pid);
}

LD_TEST(deadline_exceeded)
{
    pid_t pid;
    int port;
    char addr[64];
    ol_store *s = private_store(&pid, &port, addr, sizeof(addr));
    if (!s)
        return;
    ld_status st = LD_STATUS_INIT;
    const char *f[] = {"conv_rate"};
    int64_t id = 1;

    /* already past */
    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    ol_read_group g;
    group_set(&a, &g, "v", f, 1, &id, 1);
    ol_read r = {.project = "p", .groups = &g, .n_groups = 1, .arena = &a};
    r.deadline_us = ld_mono_us() - 1;
    LD_CHECK_INT(run_read(s, &r, &st), GRPC_STATUS_DEADLINE_EXCEEDED);
    ld_arena_destroy(&a);

    /* Redis stalls (stopped): the deadline fires, and the late replies are
     * ignored after the request's memory (heap, so ASan sees any use) is gone */
    kill(pid, SIGSTOP);
    for (int i = 0; i < 4; i++) {
        ld_arena *ha = malloc(sizeof(*ha));
        ld_arena_init(ha, NULL, 0, 0);
        ol_read_group *hg = ld_arena_alloc(ha, sizeof(*hg));
        group_set(ha, hg, "v", f, 1, &id, 1);
        ol_read *hr = ld_arena_calloc(ha, 1, sizeof(*hr));
        *hr = (ol_read){.project = "p", .groups = hg, .n_groups = 1, .arena = ha};
        hr->deadline_us = ld_mono_us() + 50000;
        int64_t t = ld_mono_us();
        LD_CHECK_INT(run_read(s, hr, &st), GRPC_STATUS_DEADLINE_EXCEEDED);
        int64_t took = ld_mono_us() - t;
        LD_CHECK(took >= 40000 && took < 1000000);
        ld_arena_destroy(ha);
        free(ha);
    }
    /* a write times out too */
    ld_arena_init(&a, NULL, 0, 0);
    ol_write w;
    write_init(&a, &w, "p", "v", f, 1, 1);
    const Feast__Types__Value *v[] = {ld_value_float(&a, 1)};
    row_set(&a, &w, 0, 1, T0_US, v);
    w.deadline_us = ld_mono_us() + 20000;
    LD_CHECK_INT(run_write(s, &w, &st), GRPC_STATUS_DEADLINE_EXCEEDED);
    ld_arena_destroy(&a);

    kill(pid, SIGCONT); /* the late replies arrive */
    sleep_ms(200);
    LD_CHECK_INT(s->ops->healthy(s), 1);
    float got;
    int64_t ts;
    LD_CHECK_INT(get1(s, "p", "v", "conv_rate", 1, &got, &ts), 1); /* the write went through */

    /* free() with requests in flight: each fails with UNAVAILABLE */
    kill(pid, SIGSTOP);
    enum { K = 5 };
    ld_arena ka[K];
    ol_read_group kg[K];
    ol_read kr[K];
    waiter kw[K];
    for (int i = 0; i < K; i++) {
        ld_arena_init(&ka[i], NULL, 0, 0);
        group_set(&ka[i], &kg[i], "v", f, 1, &id, 1);
        kr[i] = (ol_read){.project = "p",
                          .groups = &kg[i],
                          .n_groups = 1,
                          .arena = &ka[i],
                          .deadline_us = INT64_MAX,
                          .done = read_done,
                          .arg = &kw[i]};
        waiter_init(&kw[i]);
        LD_CHECK_INT(s->ops->read(s, &kr[i], &st), 0);
    }
    sleep_ms(50);
    int64_t t = ld_mono_us();
    s->ops->free(s);
    LD_CHECK(ld_mono_us() - t < 1000000);
    for (int i = 0; i < K; i++) {
        LD_CHECK_INT(kw[i].calls, 1);
        LD_CHECK_INT(kw[i].st.code, GRPC_STATUS_UNAVAILABLE);
        waiter_fini(&kw[i]);
        ld_arena_destroy(&ka[i]);
    }
    kill(pid, SIGCONT);
    redis_kill(pid);
}

/* A request with an earlier deadline than those already waiting on its
 * connection re-arms the connection's timer: it fails on time, not when
 * the earlier requests' deadline comes. */
LD_TEST(deadline_earlier_than_queued)
{
    pid_t pid;
    int port;
    char addr[64];
    ol_store *s = private_store(&pid, &port, addr, sizeof(addr));
    if (!s)
        return;
    ld_status st = LD_STATUS_INIT;
    kill(pid, SIGSTOP);
    enum { K = 6 }; /* 3 long then 3 short: each connection gets one of each */
    const char *f[] = {"conv_rate"};
    int64_t id = 1;
    ld_arena ka[K];
    ol_read_group kg[K];
    ol_read kr[K];
    waiter kw[K];
    int64_t t0 = ld_mono_us();
    for (int i = 0; i < K; i++) {
        ld_arena_init(&ka[i], NULL, 0, 0);
        group_set(&ka[i], &kg[i], "v", f, 1, &id, 1);
        kr[i] = (ol_read){.project = "p",
                          .groups = &kg[i],
                          .n_groups = 1,
                          .arena = &ka[i],
                          .deadline_us = t0 + (i < K / 2 ? 3000000 : 60000),
                          .done = read_done,
                          .arg = &kw[i]};
        waiter_init(&kw[i]);
        LD_CHECK_INT(s->ops->read(s, &kr[i], &st), 0);
    }
    for (int i = K / 2; i < K; i++) {
        waiter_wait(&kw[i]);
        LD_CHECK_INT(kw[i].st.code, GRPC_STATUS_DEADLINE_EXCEEDED);
    }
    int64_t took = ld_mono_us() - t0;
    printf("# the short deadlines fired after %.0f ms\n", took / 1e3);
    LD_CHECK(took >= 50000 && took < 1500000);
    for (int i = 0; i < K / 2; i++) {
        pthread_mutex_lock(&kw[i].mu);
        LD_CHECK_INT(kw[i].done, 0); /* the long ones still wait */
        pthread_mutex_unlock(&kw[i].mu);
    }
    for (int i = 0; i < K / 2; i++) {
        waiter_wait(&kw[i]);
        LD_CHECK_INT(kw[i].st.code, GRPC_STATUS_DEADLINE_EXCEEDED);
    }
    LD_CHECK(ld_mono_us() - t0 >= 2900000);
    kill(pid, SIGCONT);
    for (int i = 0; i < K; i++) {
        LD_CHECK_INT(kw[i].calls, 1);
        waiter_fini(&kw[i]);
        ld_arena_destroy(&ka[i]);
    }
    /* the late replies are read and dropped; the store serves on */
    float got;
    int64_t ts;
    LD_CHECK_INT(get1(s, "p", "v", "conv_rate", 1, &got, &ts), 0);
    s->ops->free(s);
    redis_kill(pid);
}

LD_TEST(auth_and_db)
{
    int port = free_port();
    pid_t pid = redis_start(port, "--requirepass", "s3cret");
    LD_CHECK(pid > 0);
    if (pid < 0)
        return;
    char conn[128];
    snprintf(conn, sizeof(conn), "127.0.0.1:%d,password=s3cret,db=3", port);
    ld_status st = LD_STATUS_INIT;
    ol_store *s = store_open(conn, 0, 0, &st);
    LD_CHECK(s != NULL);
    if (s) {
        LD_CHECK_INT(s->ops->healthy(s), 1);
        const char *f[] = {"conv_rate"};
        ld_arena a;
        ld_arena_init(&a, NULL, 0, 0);
        const Feast__Types__Value *v[] = {ld_value_float(&a, 0.5f)};
        LD_CHECK_INT(put1(s, "feature_repo", "driver_hourly_stats", f, 1, 1001, T0_US, v), 0);
        /* it landed in db 3 */
        char addr[64];
        snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
        redisContext *c = sync_conn(addr, 0);
        if (c) {
            sync_cmd(c, "AUTH s3cret");
            sync_cmd(c, "SELECT 3");
            redisReply *r = redisCommand(c, "EXISTS %b", key_1001, sizeof(key_1001));
            LD_CHECK(r && r->type == REDIS_REPLY_INTEGER && r->integer == 1);
            if (r)
                freeReplyObject(r);
            redisFree(c);
        }
        ld_arena_destroy(&a);
        s->ops->free(s);
    }

    /* a wrong password: the store is up but unhealthy, and says why */
    snprintf(conn, sizeof(conn), "127.0.0.1:%d,password=\"wrong\"", port);
    s = store_open(conn, 0, 0, &st);
    LD_CHECK(s != NULL);
    if (s) {
        LD_CHECK_INT(s->ops->healthy(s), 0);
        ld_arena a;
        ld_arena_init(&a, NULL, 0, 0);
        ol_read_group g;
        const char *f[] = {"conv_rate"};
        int64_t id = 1;
        group_set(&a, &g, "v", f, 1, &id, 1);
        ol_read r = {.project = "p", .groups = &g, .n_groups = 1, .arena = &a};
        LD_CHECK_INT(run_read(s, &r, &st), GRPC_STATUS_UNAVAILABLE);
        LD_CHECK(strstr(st.msg, "WRONGPASS") != NULL || strstr(st.msg, "invalid") != NULL);
        printf("# %s\n", st.msg);
        ld_arena_destroy(&a);
        s->ops->free(s);
    }
    redis_kill(pid);
}

/* Views of one entity share one key array (as ol_serve builds them): the
 * store reuses the first view's commands for the others; a view with equal
 * keys in an array of its own is matched by content. Each cell must come
 * from its own view's fields. */
LD_TEST(shared_keys)
{
    ol_store *s = store_open_db(11, 0, 0);
    if (!s)
        return;
    char project[64];
    project_name(project, sizeof(project), "shared");
    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    const char *fa[] = {"x", "y"};
    const char *fb[] = {"z"};
    ld_status st;
    for (int v = 0; v < 2; v++) {
        ol_write w;
        write_init(&a, &w, project, v ? "vb" : "va", v ? fb : fa, v ? 1 : 2, 3);
        for (int i = 0; i < 3; i++) {
            const Feast__Types__Value *vals[] = {ld_value_int64(&a, v * 100 + i * 10),
                                                 ld_value_int64(&a, v * 100 + i * 10 + 1)};
            row_set(&a, &w, (size_t)i, 7 + i, T0_US + v * 1000 + i, vals);
        }
        LD_CHECK_INT(run_write(s, &w, &st), 0);
    }
    int64_t ids[] = {9, 7, 8, 42};
    ol_read_group g[3];
    group_set(&a, &g[0], "va", fa, 2, ids, 4);
    group_set(&a, &g[1], "vb", fb, 1, ids, 4);
    g[1].keys = g[0].keys; /* shared, as ol_serve does */
    g[1].key_lens = g[0].key_lens;
    group_set(&a, &g[2], "vb", fb, 1, ids + 1, 2); /* equal keys, own array */
    ol_read r = {.project = project, .groups = g, .n_groups = 3, .arena = &a};
    LD_CHECK_INT(run_read(s, &r, &st), 0);
    for (int k = 0; k < 4; k++) {
        int i = (int)ids[k] - 7; /* row index, 35 for the missing key */
        int found = k < 3;
        LD_CHECK_INT(g[0].found[k], found);
        LD_CHECK_INT(g[1].found[k], found);
        if (!found) {
            LD_CHECK(g[0].val[k * 2] == NULL && g[1].val[k] == NULL);
            continue;
        }
        LD_CHECK(cell_is(&a, &g[0], (size_t)k, 0, ld_value_int64(&a, i * 10)));
        LD_CHECK(cell_is(&a, &g[0], (size_t)k, 1, ld_value_int64(&a, i * 10 + 1)));
        LD_CHECK(cell_is(&a, &g[1], (size_t)k, 0, ld_value_int64(&a, 100 + i * 10)));
        LD_CHECK_INT(g[0].event_ts_us[k], T0_US + i);
        LD_CHECK_INT(g[1].event_ts_us[k], T0_US + 1000 + i);
    }
    for (int k = 0; k < 2; k++) {
        int i = (int)ids[k + 1] - 7;
        LD_CHECK_INT(g[2].found[k], 1);
        LD_CHECK(cell_is(&a, &g[2], (size_t)k, 0, ld_value_int64(&a, 100 + i * 10)));
    }
    ld_arena_destroy(&a);
    s->ops->free(s);
}

/* Replies the store cannot read fail the request they answer (INTERNAL) and
 * drop the connection, which comes back at once; the store never crashes
 * and keeps serving. Replies that are well-formed but wrong fail the request
 * and keep the connection. A reply split into single bytes reads fine. */
LD_TEST(malformed_replies)
{
    fake f;
    LD_CHECK_INT(fake_start(&f), 0);
    char conn[64];
    snprintf(conn, sizeof(conn), "127.0.0.1:%d", f.port);
    ld_status st = LD_STATUS_INIT;
    ol_store *s = store_open(conn, 0, 0, &st);
    LD_CHECK(s != NULL);
    if (!s) {
        fake_stop(&f);
        return;
    }
    LD_CHECK_INT(s->ops->healthy(s), 1);
    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    ol_read_group g;

    __atomic_store_n(&f.mode, FK_NILS, __ATOMIC_RELEASE);
    LD_CHECK_INT(fake_read(s, &a, &g, &st), 0);
    LD_CHECK_INT(g.found[0], 0);
    LD_CHECK(g.val[0] == NULL && g.val[1] == NULL);

    __atomic_store_n(&f.mode, FK_VALUES, __ATOMIC_RELEASE);
    LD_CHECK_INT(fake_read(s, &a, &g, &st), 0);
    LD_CHECK_INT(g.found[0], 1);
    for (int i = 0; i < 2; i++)
        LD_CHECK(g.val[i] && g.val_len[i] == 5 && !memcmp(g.val[i], "hello", 5));

    static const struct {
        int mode;
        int drops;
        const char *msg;
    } cases[] = {
            {FK_BIG_BULK, 1, "exceeds the limit"},
            {FK_BIG_ARRAY, 1, "exceeds the limit"},
            {FK_NESTED, 1, "nested array"},
            {FK_RESP3, 1, "unknown reply type"},
            {FK_BAD_LENGTH, 1, "malformed number"},
            {FK_NO_CRLF, 1, "not followed by CRLF"},
            {FK_WRONG_COUNT, 0, "4 elements, expected 3"},
            {FK_ERROR, 0, "ERR boom"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int before = __atomic_load_n(&f.accepted, __ATOMIC_ACQUIRE);
        __atomic_store_n(&f.mode, cases[i].mode, __ATOMIC_RELEASE);
        int code = fake_read(s, &a, &g, &st);
        LD_CHECK_INT(code, GRPC_STATUS_INTERNAL);
        if (!strstr(st.msg, cases[i].msg))
            printf("# case %zu: '%s' lacks '%s'\n", i, st.msg, cases[i].msg);
        LD_CHECK(strstr(st.msg, cases[i].msg) != NULL);
        if (cases[i].drops)
            LD_CHECK(strstr(st.msg, "malformed reply") != NULL);

        /* the store keeps serving (the other connections, then this one) */
        __atomic_store_n(&f.mode, FK_NILS, __ATOMIC_RELEASE);
        LD_CHECK_INT(fake_read(s, &a, &g, &st), 0);
        int64_t t = ld_mono_us();
        while (__atomic_load_n(&f.accepted, __ATOMIC_ACQUIRE) == before &&
               ld_mono_us() - t < 2000000)
            sleep_ms(5);
        sleep_ms(50);
        int now = __atomic_load_n(&f.accepted, __ATOMIC_ACQUIRE);
        LD_CHECK_INT(now - before, cases[i].drops);
        for (int k = 0; k < 6; k++) /* every connection, round-robin */
            LD_CHECK_INT(fake_read(s, &a, &g, &st), 0);
        LD_CHECK_INT(s->ops->healthy(s), 1);
    }

    /* an extra reply no request asked for drops the connection after the
     * request before it got its answer */
    int before = __atomic_load_n(&f.accepted, __ATOMIC_ACQUIRE);
    __atomic_store_n(&f.mode, FK_TWICE, __ATOMIC_RELEASE);
    LD_CHECK_INT(fake_read(s, &a, &g, &st), 0);
    __atomic_store_n(&f.mode, FK_NILS, __ATOMIC_RELEASE);
    int64_t t = ld_mono_us();
    while (__atomic_load_n(&f.accepted, __ATOMIC_ACQUIRE) == before && ld_mono_us() - t < 2000000)
        sleep_ms(5);
    LD_CHECK_INT(__atomic_load_n(&f.accepted, __ATOMIC_ACQUIRE) - before, 1);
    LD_CHECK_INT(fake_read(s, &a, &g, &st), 0);

    ld_arena_destroy(&a);
    s->ops->free(s);
    fake_stop(&f);
}

/* Values far larger than a connection's receive buffer, in a write larger
 * than the socket takes at once (the rest is sent from the output buffer). */
LD_TEST(big_values)
{
    ol_store *s = store_open_db(12, 0, 0);
    if (!s)
        return;
    char project[64];
    project_name(project, sizeof(project), "big");
    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    enum { ROWS = 12, SIZE = 1536 * 1024 };
    const char *f[] = {"blob", "small"};
    char *blob = malloc(SIZE);
    ol_write w;
    write_init(&a, &w, project, "big", f, 2, ROWS);
    const Feast__Types__Value *want[ROWS];
    for (int i = 0; i < ROWS; i++) {
        for (size_t k = 0; k < SIZE; k++)
            blob[k] = (char)('a' + (k * 7 + (size_t)i) % 26);
        want[i] = ld_value_string(&a, blob, SIZE - (size_t)i * 1000);
        const Feast__Types__Value *v[] = {want[i], ld_value_int64(&a, i)};
        row_set(&a, &w, (size_t)i, 100 + i, T0_US + i, v);
    }
    free(blob);
    ld_status st;
    LD_CHECK_INT(run_write(s, &w, &st), 0);

    int64_t ids[ROWS];
    for (int i = 0; i < ROWS; i++)
        ids[i] = 100 + i;
    ol_read_group g;
    group_set(&a, &g, "big", f, 2, ids, ROWS);
    ol_read r = {.project = project, .groups = &g, .n_groups = 1, .arena = &a};
    LD_CHECK_INT(run_read(s, &r, &st), 0);
    for (int i = 0; i < ROWS; i++) {
        LD_CHECK_INT(g.found[i], 1);
        LD_CHECK_INT(g.event_ts_us[i], T0_US + i);
        LD_CHECK(cell_is(&a, &g, (size_t)i, 0, want[i]));
        LD_CHECK(cell_is(&a, &g, (size_t)i, 1, ld_value_int64(&a, i)));
    }
    /* and small reads still work on the same connections */
    float got;
    int64_t ts;
    LD_CHECK_INT(get1(s, project, "big", "blob", 999, &got, &ts), 0);
    ld_arena_destroy(&a);
    s->ops->free(s);
}

/* ---- ol_defer: the reads of a burst share one send per connection ------ */

typedef struct defer_list {
    void (*fn[8])(void *);
    void *obj[8];
    int n;
    int refuse; /* answer -1: the store must send at once */
} defer_list;

static int defer_collect(void *ctx, void (*fn)(void *), void *obj)
{
    defer_list *d = ctx;
    if (d->refuse || d->n == 8)
        return -1;
    for (int i = 0; i < d->n; i++)
        if (d->fn[i] == fn && d->obj[i] == obj)
            return 0;
    d->fn[d->n] = fn;
    d->obj[d->n] = obj;
    d->n++;
    return 0;
}

/* Redis's count of socket reads (INFO stats), or -1 */
static long long redis_reads(redisContext *c)
{
    redisReply *r = redisCommand(c, "INFO stats");
    long long n = -1;
    const char *p =
            r && r->type == REDIS_REPLY_STRING ? strstr(r->str, "total_reads_processed:") : NULL;
    if (p)
        n = atoll(p + strlen("total_reads_processed:"));
    if (r)
        freeReplyObject(r);
    return n;
}

/* With a defer, reads wait in their connection (nothing reaches Redis, no
 * reply) until the caller runs the deferred flush: all of them join the one
 * cork the first opened, so one flush sends them at once, Redis reads them
 * in one read, and every read gets its own row. A defer that refuses
 * makes the store send at once. A private Redis, so that nothing else reads. */
LD_TEST(corked_reads)
{
    pid_t pid;
    int port;
    char addr[64];
    ol_store *s = private_store(&pid, &port, addr, sizeof(addr));
    if (!s)
        return;
    redisContext *rc = sync_conn(addr, 0);
    LD_CHECK(rc != NULL);
    if (!rc) {
        s->ops->free(s);
        redis_kill(pid);
        return;
    }
    ld_status st = LD_STATUS_INIT;
    enum { N = 9 };
    const char *f[] = {"x"};
    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    ol_write w;
    write_init(&a, &w, "corked", "vc", f, 1, N);
    for (int i = 0; i < N; i++) {
        const Feast__Types__Value *v[] = {ld_value_int64(&a, 1000 + i)};
        row_set(&a, &w, (size_t)i, 1 + i, T0_US + i, v);
    }
    LD_CHECK_INT(run_write(s, &w, &st), 0);

    defer_list d = {.n = 0};
    ol_defer df = {.defer = defer_collect, .ctx = &d};
    waiter wt[N];
    ol_read r[N];
    ol_read_group g[N];
    int64_t ids[N];
    long long before = redis_reads(rc);
    for (int i = 0; i < N; i++) {
        ids[i] = 1 + i;
        waiter_init(&wt[i]);
        group_set(&a, &g[i], "vc", f, 1, &ids[i], 1);
        r[i] = (ol_read){.project = "corked",
                         .groups = &g[i],
                         .n_groups = 1,
                         .arena = &a,
                         .deadline_us = INT64_MAX,
                         .defer = &df,
                         .done = read_done,
                         .arg = &wt[i]};
        LD_CHECK_INT(s->ops->read(s, &r[i], &st), 0);
    }
    sleep_ms(100);
    int early = 0;
    for (int i = 0; i < N; i++) {
        pthread_mutex_lock(&wt[i].mu);
        early += wt[i].done;
        pthread_mutex_unlock(&wt[i].mu);
    }
    LD_CHECK_INT(early, 0);
    /* every read joined the cork the first one opened: one connection, one
     * flush (round-robin would have spread them over all three) */
    LD_CHECK_INT(d.n, 1);
    int used = d.n;
    for (int i = 0; i < d.n; i++)
        d.fn[i](d.obj[i]);
    d.n = 0;
    for (int i = 0; i < N; i++) {
        waiter_wait(&wt[i]);
        LD_CHECK_INT(wt[i].st.code, 0);
        LD_CHECK_INT(g[i].found[0], 1);
        LD_CHECK(cell_is(&a, &g[i], 0, 0, ld_value_int64(&a, 1000 + i)));
        LD_CHECK_INT(g[i].event_ts_us[0], T0_US + i);
        waiter_fini(&wt[i]);
    }
    long long after = redis_reads(rc); /* counts its own INFO too */
    printf("# %d reads, %d connections: %lld socket reads in Redis\n", N, used, after - before - 1);
    LD_CHECK(before >= 0 && after - before - 1 <= used);

    d.refuse = 1;
    ol_read_group g1;
    group_set(&a, &g1, "vc", f, 1, &ids[2], 1);
    ol_read r1 = {.project = "corked", .groups = &g1, .n_groups = 1, .arena = &a, .defer = &df};
    LD_CHECK_INT(run_read(s, &r1, &st), 0);
    LD_CHECK(cell_is(&a, &g1, 0, 0, ld_value_int64(&a, 1002)));
    LD_CHECK_INT(d.n, 0);

    ld_arena_destroy(&a);
    s->ops->free(s);
    redisFree(rc);
    redis_kill(pid);
}

LD_TEST_MAIN
