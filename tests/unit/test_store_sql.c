/* Unit tests for the SQL online stores (ol_store_sqlite.c, ol_store_postgres.c)
 * against a temporary SQLite file and a real PostgreSQL (LARDER_TEST_PG_DSN,
 * a libpq URL; tests/run exports it; without it the PostgreSQL tests fail).
 *
 * The same cases run on both stores (round trip, overwrite, missing table,
 * 5,000 keys, concurrency, deadline, all-or-nothing), plus compatibility
 * with tables Feast created and filled itself, and checks that what we
 * write looks like what Feast writes. */
#include "ld_test.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ld_config.h"
#include "ld_key.h"
#include "ld_time.h"
#include "ld_value.h"
#include "ol_store.h"

LD_TEST_MAIN

#define PROJECT "test_proj"
/* 2021-12-31T23:00:00.123456Z */
#define TS1 INT64_C(1640991600123456)
/* 2022-01-01T00:00:00Z */
#define TS2 INT64_C(1640995200000000)

/* ------------------------------------------------------------ plumbing */

typedef struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    ld_status st;
} waiter;

static void waiter_init(waiter *w)
{
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->done = 0;
    ld_status_clear(&w->st);
}

static void waiter_signal(waiter *w, const ld_status *st)
{
    pthread_mutex_lock(&w->mu);
    w->st = *st;
    w->done = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void waiter_wait(waiter *w)
{
    pthread_mutex_lock(&w->mu);
    while (!w->done)
        pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
}

static void read_done(ol_read *r, const ld_status *st)
{
    waiter_signal(r->arg, st);
}

static void write_done(ol_write *w, const ld_status *st)
{
    waiter_signal(w->arg, st);
}

/* Run a read to completion; the status code. */
static grpc_status_code do_read(ol_store *s, ol_read *r)
{
    waiter w;
    waiter_init(&w);
    r->done = read_done;
    r->arg = &w;
    ld_status st = LD_STATUS_INIT;
    if (s->ops->read(s, r, &st) != 0)
        return st.code ? st.code : GRPC_STATUS_UNKNOWN;
    waiter_wait(&w);
    if (w.st.code)
        printf("# read: %s: %s\n", ld_status_code_name(w.st.code), w.st.msg);
    return w.st.code;
}

static grpc_status_code do_write_w(ol_store *s, ol_write *wr, int quiet)
{
    waiter w;
    waiter_init(&w);
    wr->done = write_done;
    wr->arg = &w;
    ld_status st = LD_STATUS_INIT;
    if (s->ops->write(s, wr, &st) != 0)
        return st.code ? st.code : GRPC_STATUS_UNKNOWN;
    waiter_wait(&w);
    if (w.st.code && !quiet)
        printf("# write: %s: %s\n", ld_status_code_name(w.st.code), w.st.msg);
    return w.st.code;
}

/* {driver_id: int64 id}, serialized (v3) into the arena. */
static const uint8_t *key_of(ld_arena *a, int64_t id, size_t *len)
{
    const char *jk[] = {"driver_id"};
    const Feast__Types__Value *v[] = {ld_value_int64(a, id)};
    ld_buf b = LD_BUF_INIT;
    ld_status st = LD_STATUS_INIT;
    ld_key_serialize(jk, v, 1, 3, &b, &st);
    uint8_t *out = ld_arena_memdup(a, b.data, b.len);
    *len = b.len;
    ld_buf_free(&b);
    return out;
}

static const uint8_t *pack(ld_arena *a, const Feast__Types__Value *v, size_t *len)
{
    *len = feast__types__value__get_packed_size(v);
    uint8_t *p = ld_arena_alloc(a, *len + 1);
    feast__types__value__pack(v, p);
    return p;
}

/* A read group over ids (a negative id: a key nobody wrote). */
static void make_group(ld_arena *a, ol_read_group *g, const char *view, const char *const *feats,
                       size_t nf, const int64_t *ids, size_t nk)
{
    memset(g, 0, sizeof *g);
    g->table = view;
    g->features = feats;
    g->n_features = nf;
    const uint8_t **keys = ld_arena_calloc(a, nk ? nk : 1, sizeof *keys);
    size_t *lens = ld_arena_calloc(a, nk ? nk : 1, sizeof *lens);
    for (size_t i = 0; i < nk; i++)
        keys[i] = key_of(a, ids[i], &lens[i]);
    g->keys = keys;
    g->key_lens = lens;
    g->n_keys = nk;
    g->val = ld_arena_calloc(a, nk * nf + 1, sizeof *g->val);
    g->val_len = ld_arena_calloc(a, nk * nf + 1, sizeof *g->val_len);
    g->event_ts_us = ld_arena_calloc(a, nk + 1, sizeof *g->event_ts_us);
    g->found = ld_arena_calloc(a, nk + 1, 1);
    /* garbage, to see that the store fills every cell */
    for (size_t i = 0; i < nk; i++) {
        g->found[i] = 7;
        g->event_ts_us[i] = 12345;
        for (size_t f = 0; f < nf; f++)
            g->val[i * nf + f] = (const uint8_t *)"junk";
    }
}

static void read_init(ol_read *r, ld_arena *a, ol_read_group *groups, size_t n)
{
    memset(r, 0, sizeof *r);
    r->project = PROJECT;
    r->groups = groups;
    r->n_groups = n;
    r->arena = a;
    r->deadline_us = INT64_MAX;
}

/* The Value in a read cell, or NULL (absent / undecodable). */
static Feast__Types__Value *cell(ld_arena *a, const ol_read_group *g, size_t k, size_t f)
{
    const uint8_t *p = g->val[k * g->n_features + f];
    if (!p)
        return NULL;
    return feast__types__value__unpack(ld_arena_pbc(a), g->val_len[k * g->n_features + f], p);
}

/* Write n rows (ids) of a view whose features all get f(id, feature). */
typedef Feast__Types__Value *(*value_fn)(ld_arena *a, int64_t id, size_t f);

static grpc_status_code write_rows(ol_store *s, const char *view, const char *const *feats,
                                   size_t nf, const int64_t *ids, size_t n, int64_t ts,
                                   int64_t created, value_fn fn)
{
    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    ol_write_row *rows = ld_arena_calloc(&a, n + 1, sizeof *rows);
    for (size_t i = 0; i < n; i++) {
        rows[i].key = key_of(&a, ids[i], &rows[i].key_len);
        rows[i].event_ts_us = ts;
        rows[i].created_ts_us = created;
        const uint8_t **vals = ld_arena_calloc(&a, nf + 1, sizeof *vals);
        size_t *lens = ld_arena_calloc(&a, nf + 1, sizeof *lens);
        for (size_t f = 0; f < nf; f++) {
            Feast__Types__Value *v = fn(&a, ids[i], f);
            vals[f] = v ? pack(&a, v, &lens[f]) : NULL;
        }
        rows[i].val = vals;
        rows[i].val_len = lens;
    }
    ol_write w = {0};
    w.project = PROJECT;
    w.table = view;
    w.features = feats;
    w.n_features = nf;
    w.rows = rows;
    w.n_rows = n;
    w.arena = &a;
    w.deadline_us = INT64_MAX;
    grpc_status_code c = do_write_w(s, &w, 0);
    ld_arena_destroy(&a);
    return c;
}

static Feast__Types__Value *v_num(ld_arena *a, int64_t id, size_t f)
{
    return f == 0 ? ld_value_int64(a, id * 10) : ld_value_double(a, (double)id + 0.5);
}

static Feast__Types__Value *v_num2(ld_arena *a, int64_t id, size_t f)
{
    return f == 0 ? ld_value_int64(a, id * 100) : ld_value_double(a, (double)id + 0.25);
}

static Feast__Types__Value *v_str(ld_arena *a, int64_t id, size_t f)
{
    char buf[64];
    int n = snprintf(buf, sizeof buf, "s%lld-%zu", (long long)id, f);
    return ld_value_string(a, buf, (size_t)n);
}

static int64_t secs(int64_t us, int exact)
{
    return exact ? us : us / 1000000 * 1000000;
}

/* ------------------------------------------------------------ configs */

static char sqlite_dir[64];

static ld_config *sqlite_config(const char *file, int value_num)
{
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "project: " PROJECT "\nregistry: data/registry.db\nprovider: local\n"
             "online_store:\n  type: sqlite\n  path: %s\n%s",
             file, value_num ? "  enable_openai_compatible_store: true\n" : "");
    ld_config *c = NULL;
    ld_status st = LD_STATUS_INIT;
    if (ld_config_load_string(yaml, strlen(yaml), sqlite_dir, &c, &st) != 0)
        printf("# config: %s\n", st.msg);
    return c;
}

static const char *pg_dsn(void)
{
    const char *d = getenv("LARDER_TEST_PG_DSN");
    if (!d || !*d)
        printf("# LARDER_TEST_PG_DSN is not set: the PostgreSQL tests need a server\n");
    return d && *d ? d : NULL;
}

static char pg_schema[64];

/* An ld_config for the DSN (its keys as online_store.* keys), schema as
 * db_schema; port overrides the DSN's when > 0. */
static ld_config *pg_config(const char *schema, int value_num, int port)
{
    const char *dsn = pg_dsn();
    if (!dsn)
        return NULL;
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(dsn, &err);
    if (!opts) {
        printf("# bad DSN: %s\n", err ? err : "?");
        PQfreemem(err);
        return NULL;
    }
    const char *host = "127.0.0.1", *db = "postgres", *user = "postgres", *pw = NULL;
    const char *ssl = "prefer";
    int p = 5432;
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val || !*o->val)
            continue;
        if (!strcmp(o->keyword, "host"))
            host = o->val;
        else if (!strcmp(o->keyword, "port"))
            p = atoi(o->val);
        else if (!strcmp(o->keyword, "dbname"))
            db = o->val;
        else if (!strcmp(o->keyword, "user"))
            user = o->val;
        else if (!strcmp(o->keyword, "password"))
            pw = o->val;
        else if (!strcmp(o->keyword, "sslmode"))
            ssl = o->val;
    }
    char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "project: " PROJECT "\nregistry: data/registry.db\nprovider: local\n"
             "online_store:\n  type: postgres\n  host: \"%s\"\n  port: %d\n"
             "  database: \"%s\"\n  user: \"%s\"\n%s%s%s  sslmode: %s\n  db_schema: %s\n"
             "  max_conn: 4\n%s",
             host, port > 0 ? port : p, db, user, pw ? "  password: \"" : "", pw ? pw : "",
             pw ? "\"\n" : "", ssl, schema,
             value_num ? "  enable_openai_compatible_store: true\n" : "");
    PQconninfoFree(opts);
    ld_config *c = NULL;
    ld_status st = LD_STATUS_INIT;
    if (ld_config_load_string(yaml, strlen(yaml), "/tmp", &c, &st) != 0)
        printf("# config: %s\n", st.msg);
    return c;
}

static void quiet_notice(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

/* A libpq connection for checks, search_path on the test schema. */
static PGconn *pg_check_conn(void)
{
    const char *dsn = pg_dsn();
    if (!dsn)
        return NULL;
    PGconn *c = PQconnectdb(dsn);
    if (PQstatus(c) != CONNECTION_OK) {
        printf("# cannot connect: %s", PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeProcessor(c, quiet_notice, NULL);
    char sql[256];
    snprintf(sql, sizeof sql, "SET search_path = %s, public; SET TimeZone = 'UTC'", pg_schema);
    PQclear(PQexec(c, sql));
    return c;
}

static int pg_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        printf("# %s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    return ok;
}

/* One text value of a query (malloc'd), NULL for SQL NULL or an error. */
static char *pg_one(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    char *out = NULL;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) >= 1 && !PQgetisnull(r, 0, 0))
        out = strdup(PQgetvalue(r, 0, 0));
    else if (PQresultStatus(r) != PGRES_TUPLES_OK)
        printf("# %s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    return out;
}

#define CHECK_PG_STR(c, sql, want)                                                                 \
    do {                                                                                           \
        char *got_ = pg_one(c, sql);                                                               \
        LD_CHECK_STR(got_, want);                                                                  \
        free(got_);                                                                                \
    } while (0)

/* ------------------------------------------------------------ shared cases */

/* Several views, keys and features; a missing key; a missing feature; a
 * null Value. exact: the store keeps microseconds. */
static void case_roundtrip(ol_store *s, int exact)
{
    const char *fa[] = {"trips", "rate"};
    const char *fb[] = {"name", "city", "zip"};
    int64_t ids[] = {1, 2, 3};
    LD_CHECK_INT(write_rows(s, "drivers", fa, 2, ids, 3, TS1, TS2, v_num), 0);
    LD_CHECK_INT(write_rows(s, "profiles", fb, 2, ids, 2, TS2, 0, v_str), 0);

    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    ol_read_group g[2];
    const char *ra[] = {"rate", "trips", "nope"};
    int64_t ka[] = {3, 99, 1};
    make_group(&a, &g[0], "drivers", ra, 3, ka, 3);
    const char *rb[] = {"city", "name", "zip"};
    int64_t kb[] = {1, 2, 3};
    make_group(&a, &g[1], "profiles", rb, 3, kb, 3);
    ol_read r;
    read_init(&r, &a, g, 2);
    LD_CHECK_INT(do_read(s, &r), 0);

    LD_CHECK_INT(g[0].found[0], 1);
    LD_CHECK_INT(g[0].found[1], 0);
    LD_CHECK_INT(g[0].found[2], 1);
    LD_CHECK_INT(g[0].event_ts_us[0], secs(TS1, exact));
    LD_CHECK_INT(g[0].event_ts_us[1], 0);
    Feast__Types__Value *v = cell(&a, &g[0], 0, 0);
    LD_CHECK(v && v->val_case == FEAST__TYPES__VALUE__VAL_DOUBLE_VAL && v->double_val == 3.5);
    v = cell(&a, &g[0], 0, 1);
    LD_CHECK(v && v->val_case == FEAST__TYPES__VALUE__VAL_INT64_VAL && v->int64_val == 30);
    LD_CHECK(g[0].val[2] == NULL); /* no such feature */
    LD_CHECK(g[0].val[3] == NULL && g[0].val[4] == NULL && g[0].val[5] == NULL);
    v = cell(&a, &g[0], 2, 1);
    LD_CHECK(v && v->int64_val == 10);

    LD_CHECK_INT(g[1].found[0], 1);
    LD_CHECK_INT(g[1].found[1], 1);
    LD_CHECK_INT(g[1].found[2], 0); /* only 1 and 2 were written */
    LD_CHECK_INT(g[1].event_ts_us[1], TS2);
    v = cell(&a, &g[1], 1, 0);
    LD_CHECK(v && v->val_case == FEAST__TYPES__VALUE__VAL_STRING_VAL &&
             strcmp(v->string_val, "s2-1") == 0);
    v = cell(&a, &g[1], 1, 1);
    LD_CHECK(v && strcmp(v->string_val, "s2-0") == 0);
    LD_CHECK(g[1].val[1 * 3 + 2] == NULL);
    ld_arena_destroy(&a);
}

static Feast__Types__Value *v_nullish(ld_arena *a, int64_t id, size_t f)
{
    return f == 0 ? NULL : ld_value_null(a);
}

/* A NULL Value pointer is stored as an empty (unset) Value: present, 0 bytes. */
static void case_null_values(ol_store *s)
{
    const char *fs[] = {"unset", "nullv"};
    int64_t ids[] = {5};
    LD_CHECK_INT(write_rows(s, "nulls", fs, 2, ids, 1, TS2, 0, v_nullish), 0);
    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    ol_read_group g;
    make_group(&a, &g, "nulls", fs, 2, ids, 1);
    ol_read r;
    read_init(&r, &a, &g, 1);
    LD_CHECK_INT(do_read(s, &r), 0);
    LD_CHECK_INT(g.found[0], 1);
    LD_CHECK(g.val[0] != NULL && g.val_len[0] == 0);
    Feast__Types__Value *v = cell(&a, &g, 0, 1);
    LD_CHECK(v && v->val_case == FEAST__TYPES__VALUE__VAL_NULL_VAL);
    ld_arena_destroy(&a);
}

/* Last writer wins, whatever the event timestamps (as Feast's SQL stores). */
static void case_overwrite(ol_store *s, int exact)
{
    const char *fs[] = {"trips", "rate"};
    int64_t ids[] = {7, 8};
    LD_CHECK_INT(write_rows(s, "ow", fs, 2, ids, 2, TS2, 0, v_num), 0);
    int64_t one[] = {7};
    LD_CHECK_INT(write_rows(s, "ow", fs, 2, one, 1, TS1, 0, v_num2), 0);
    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    ol_read_group g;
    make_group(&a, &g, "ow", fs, 2, ids, 2);
    ol_read r;
    read_init(&r, &a, &g, 1);
    LD_CHECK_INT(do_read(s, &r), 0);
    Feast__Types__Value *v = cell(&a, &g, 0, 0);
    LD_CHECK(v && v->int64_val == 700);
    v = cell(&a, &g, 0, 1);
    LD_CHECK(v && v->double_val == 7.25);
    LD_CHECK_INT(g.event_ts_us[0], secs(TS1, exact));
    v = cell(&a, &g, 1, 0);
    LD_CHECK(v && v->int64_val == 80);
    LD_CHECK_INT(g.event_ts_us[1], TS2);
    ld_arena_destroy(&a);
}

/* A view never written reads as not found, and does not spoil the others. */
static void case_missing_table(ol_store *s)
{
    const char *fs[] = {"trips", "rate"};
    int64_t ids[] = {1, 2};
    LD_CHECK_INT(write_rows(s, "present", fs, 2, ids, 2, TS2, 0, v_num), 0);
    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    ol_read_group g[3];
    make_group(&a, &g[0], "never_applied", fs, 2, ids, 2);
    make_group(&a, &g[1], "present", fs, 2, ids, 2);
    make_group(&a, &g[2], "never_applied_either", fs, 1, ids, 1);
    ol_read r;
    read_init(&r, &a, g, 3);
    LD_CHECK_INT(do_read(s, &r), 0);
    LD_CHECK(!g[0].found[0] && !g[0].found[1] && !g[2].found[0]);
    LD_CHECK(g[0].val[0] == NULL && g[0].event_ts_us[0] == 0);
    LD_CHECK(g[1].found[0] && g[1].found[1]);
    Feast__Types__Value *v = cell(&a, &g[1], 1, 0);
    LD_CHECK(v && v->int64_val == 20);
    ld_arena_destroy(&a);
}

/* 5,000 keys in one read (chunked for SQLite, one array for PostgreSQL). */
static void case_many_keys(ol_store *s)
{
    enum { N = 5000 };
    const char *fs[] = {"trips", "rate"};
    int64_t *ids = calloc(N, sizeof *ids);
    for (int i = 0; i < N; i++)
        ids[i] = 100000 + i;
    LD_CHECK_INT(write_rows(s, "many", fs, 2, ids, N, TS2, 0, v_num), 0);
    /* read them all plus 100 unknown ones, in a shuffled order */
    int64_t *rid = calloc(N + 100, sizeof *rid);
    for (int i = 0; i < N + 100; i++)
        rid[i] = 100000 + (int64_t)((i * 7919) % (N + 100));
    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    ol_read_group g;
    make_group(&a, &g, "many", fs, 2, rid, N + 100);
    ol_read r;
    read_init(&r, &a, &g, 1);
    LD_CHECK_INT(do_read(s, &r), 0);
    int bad = 0, found = 0;
    for (int i = 0; i < N + 100; i++) {
        int known = rid[i] < 100000 + N;
        found += g.found[i];
        if (g.found[i] != known) {
            bad++;
            continue;
        }
        if (!known)
            continue;
        Feast__Types__Value *v = cell(&a, &g, (size_t)i, 0);
        if (!v || v->int64_val != rid[i] * 10)
            bad++;
    }
    LD_CHECK_INT(found, N);
    LD_CHECK_INT(bad, 0);
    ld_arena_destroy(&a);
    free(ids);
    free(rid);
}

typedef struct reader_arg {
    ol_store *s;
    int bad;
} reader_arg;

static void *reader(void *p)
{
    reader_arg *ra = p;
    const char *fs[] = {"trips", "rate"};
    for (int it = 0; it < 40; it++) {
        ld_arena a;
        ld_arena_init(&a, NULL, 0, 0);
        int64_t ids[20];
        for (int i = 0; i < 20; i++)
            ids[i] = 100000 + (it * 37 + i * 101) % 5000;
        ol_read_group g[2];
        make_group(&a, &g[0], "many", fs, 2, ids, 20);
        make_group(&a, &g[1], "drivers", fs, 2, ids, 3);
        ol_read r;
        read_init(&r, &a, g, 2);
        if (do_read(ra->s, &r) != 0)
            ra->bad++;
        for (int i = 0; i < 20; i++) {
            Feast__Types__Value *v = cell(&a, &g[0], (size_t)i, 0);
            if (!g[0].found[i] || !v || v->int64_val != ids[i] * 10)
                ra->bad++;
        }
        ld_arena_destroy(&a);
    }
    return NULL;
}

/* Readers on several threads, and many reads outstanding at once. */
static void case_concurrent(ol_store *s)
{
    enum { T = 8 };
    pthread_t th[T];
    reader_arg ra[T];
    for (int i = 0; i < T; i++) {
        ra[i] = (reader_arg){s, 0};
        pthread_create(&th[i], NULL, reader, &ra[i]);
    }
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        LD_CHECK_INT(ra[i].bad, 0);
    }

    enum { M = 200 };
    const char *fs[] = {"trips"};
    ld_arena *arenas = calloc(M, sizeof *arenas);
    ol_read_group *gs = calloc(M, sizeof *gs);
    ol_read *rs = calloc(M, sizeof *rs);
    waiter *ws = calloc(M, sizeof *ws);
    int refused = 0;
    for (int i = 0; i < M; i++) {
        ld_arena_init(&arenas[i], NULL, 0, 0);
        int64_t id = 100000 + i;
        make_group(&arenas[i], &gs[i], "many", fs, 1, &id, 1);
        read_init(&rs[i], &arenas[i], &gs[i], 1);
        waiter_init(&ws[i]);
        rs[i].done = read_done;
        rs[i].arg = &ws[i];
        ld_status st = LD_STATUS_INIT;
        if (s->ops->read(s, &rs[i], &st) != 0) {
            refused++;
            ws[i].done = 1;
        }
    }
    int bad = 0;
    for (int i = 0; i < M; i++) {
        waiter_wait(&ws[i]);
        Feast__Types__Value *v = cell(&arenas[i], &gs[i], 0, 0);
        if (ws[i].st.code || !v || v->int64_val != (100000 + i) * 10)
            bad++;
        ld_arena_destroy(&arenas[i]);
    }
    LD_CHECK_INT(refused, 0);
    LD_CHECK_INT(bad, 0);
    free(arenas);
    free(gs);
    free(rs);
    free(ws);
}

/* A request whose deadline has passed is not run. */
static void case_deadline(ol_store *s)
{
    const char *fs[] = {"trips"};
    int64_t ids[] = {1};
    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    ol_read_group g;
    make_group(&a, &g, "drivers", fs, 1, ids, 1);
    ol_read r;
    read_init(&r, &a, &g, 1);
    r.deadline_us = ld_mono_us() - 1;
    LD_CHECK_INT(do_read(s, &r), GRPC_STATUS_DEADLINE_EXCEEDED);

    ol_write_row row = {0};
    row.key = key_of(&a, 424242, &row.key_len);
    const uint8_t *vals[1];
    size_t lens[1];
    vals[0] = pack(&a, ld_value_int64(&a, 1), &lens[0]);
    row.val = vals;
    row.val_len = lens;
    row.event_ts_us = TS2;
    ol_write w = {0};
    w.project = PROJECT;
    w.table = "drivers";
    w.features = fs;
    w.n_features = 1;
    w.rows = &row;
    w.n_rows = 1;
    w.arena = &a;
    w.deadline_us = ld_mono_us() - 1;
    LD_CHECK_INT(do_write_w(s, &w, 1), GRPC_STATUS_DEADLINE_EXCEEDED);
    /* a comfortable deadline works */
    w.deadline_us = ld_mono_us() + 10 * 1000000;
    LD_CHECK_INT(do_write_w(s, &w, 0), 0);
    r.deadline_us = ld_mono_us() + 10 * 1000000;
    LD_CHECK_INT(do_read(s, &r), 0);
    LD_CHECK_INT(g.found[0], 1);
    ld_arena_destroy(&a);
}

/* An invalid Value in the middle refuses the write: nothing of it stays. */
static void case_all_or_nothing(ol_store *s)
{
    const char *fs[] = {"a", "b"};
    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    ol_write_row rows[3];
    memset(rows, 0, sizeof rows);
    const uint8_t *vals[3][2];
    size_t lens[3][2];
    for (int i = 0; i < 3; i++) {
        rows[i].key = key_of(&a, 500 + i, &rows[i].key_len);
        rows[i].event_ts_us = TS2;
        for (int f = 0; f < 2; f++)
            vals[i][f] = pack(&a, ld_value_int32(&a, i), &lens[i][f]);
        rows[i].val = vals[i];
        rows[i].val_len = lens[i];
    }
    vals[2][1] = (const uint8_t *)"\xff\xff\xff";
    lens[2][1] = 3;
    ol_write w = {0};
    w.project = PROJECT;
    w.table = "aon";
    w.features = fs;
    w.n_features = 2;
    w.rows = rows;
    w.n_rows = 3;
    w.arena = &a;
    w.deadline_us = INT64_MAX;
    LD_CHECK_INT(do_write_w(s, &w, 1), GRPC_STATUS_INVALID_ARGUMENT);
    /* same view with a valid write first, then a failing one */
    w.n_rows = 1;
    LD_CHECK_INT(do_write_w(s, &w, 0), 0);
    w.n_rows = 3;
    vals[0][0] = pack(&a, ld_value_int32(&a, 99), &lens[0][0]);
    LD_CHECK_INT(do_write_w(s, &w, 1), GRPC_STATUS_INVALID_ARGUMENT);
    int64_t ids[] = {500, 501, 502};
    ol_read_group g;
    make_group(&a, &g, "aon", fs, 2, ids, 3);
    ol_read r;
    read_init(&r, &a, &g, 1);
    LD_CHECK_INT(do_read(s, &r), 0);
    LD_CHECK(g.found[0] && !g.found[1] && !g.found[2]);
    Feast__Types__Value *v = cell(&a, &g, 0, 0);
    LD_CHECK(v && v->int32_val == 0); /* not 99 */
    ld_arena_destroy(&a);
}

/* A view name with a double quote (identifiers are quoted, never spliced). */
static void case_quoting(ol_store *s)
{
    const char *fs[] = {"x\"; DROP TABLE y; --"};
    int64_t ids[] = {1};
    const char *view = "we\"ird view";
    LD_CHECK_INT(write_rows(s, view, fs, 1, ids, 1, TS2, 0, v_num), 0);
    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    ol_read_group g;
    make_group(&a, &g, view, fs, 1, ids, 1);
    ol_read r;
    read_init(&r, &a, &g, 1);
    LD_CHECK_INT(do_read(s, &r), 0);
    Feast__Types__Value *v = cell(&a, &g, 0, 0);
    LD_CHECK(v && v->int64_val == 10);
    ld_arena_destroy(&a);
}

static void shared_cases(ol_store *s, int exact)
{
    case_roundtrip(s, exact);
    case_null_values(s);
    case_overwrite(s, exact);
    case_missing_table(s);
    case_many_keys(s);
    case_concurrent(s);
    case_deadline(s);
    case_all_or_nothing(s);
    case_quoting(s);
}

/* Values of every kind value_text handles, for the layout checks. */
static Feast__Types__Value *v_kinds(ld_arena *a, int64_t id, size_t f)
{
    static const int32_t l[] = {1, 2};
    switch (f) {
    case 0:
        return ld_value_float(a, 0.5f);
    case 1:
        return ld_value_float(a, 0.1f);
    case 2:
        return ld_value_double(a, 1e16);
    case 3:
        return ld_value_int64(a, -5);
    case 4:
        return ld_value_int32(a, 42);
    case 5:
        return ld_value_bool(a, 1);
    case 6:
        return ld_value_string(a, "héllo", strlen("héllo"));
    default:
        return ld_value_int32_list(a, l, 2);
    }
}

static const char *kind_feats[] = {"f_half", "f_tenth", "d_big", "i64", "i32", "b", "s", "lst"};
static const char *kind_text[] = {
        "0.5", "0.10000000149011612", "1e+16", "-5", "42", "True", "héllo", NULL};

/* ------------------------------------------------------------ SQLite */

static char sqlite_file[128];

static ol_store *sqlite_open(int value_num)
{
    ld_config *c = sqlite_config(sqlite_file, value_num);
    if (!c)
        return NULL;
    ld_status st = LD_STATUS_INIT;
    ol_store *s = ol_store_new(c, &st);
    if (!s)
        printf("# sqlite store: %s\n", st.msg);
    ld_config_free(c);
    return s;
}

static sqlite3 *sqlite_check_db(void)
{
    sqlite3 *db = NULL;
    if (sqlite3_open(sqlite_file, &db) != SQLITE_OK) {
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, 5000);
    return db;
}

static char *sq_one(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *q = NULL;
    char *out = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK) {
        printf("# %s: %s\n", sql, sqlite3_errmsg(db));
        return NULL;
    }
    if (sqlite3_step(q) == SQLITE_ROW && sqlite3_column_type(q, 0) != SQLITE_NULL)
        out = strdup((const char *)sqlite3_column_text(q, 0));
    sqlite3_finalize(q);
    return out;
}

#define CHECK_SQ_STR(db, sql, want)                                                                \
    do {                                                                                           \
        char *got_ = sq_one(db, sql);                                                              \
        LD_CHECK_STR(got_, want);                                                                  \
        free(got_);                                                                                \
    } while (0)

LD_TEST(sqlite_setup)
{
    strcpy(sqlite_dir, "/tmp/ld_store_sql_XXXXXX");
    LD_CHECK(mkdtemp(sqlite_dir) != NULL);
    /* relative to the repo path, in directories that do not exist yet */
    snprintf(sqlite_file, sizeof sqlite_file, "%s/data/sub/online.db", sqlite_dir);
    ol_store *s = sqlite_open(0);
    LD_CHECK(s != NULL);
    if (!s)
        return;
    LD_CHECK_STR(s->ops->name, "sqlite");
    LD_CHECK_INT(s->ops->healthy(s), 1);
    LD_CHECK(access(sqlite_file, F_OK) == 0);
    s->ops->free(s);
    /* the yaml's relative path resolves against the repo path */
    char yaml[512];
    snprintf(yaml, sizeof yaml,
             "project: " PROJECT "\nregistry: data/registry.db\nonline_store:\n"
             "  type: sqlite\n  path: rel/online2.db\n");
    ld_config *c = NULL;
    ld_status st = LD_STATUS_INIT;
    LD_CHECK_INT(ld_config_load_string(yaml, strlen(yaml), sqlite_dir, &c, &st), 0);
    s = c ? ol_store_new(c, &st) : NULL;
    LD_CHECK(s != NULL);
    char p2[256];
    snprintf(p2, sizeof p2, "%s/rel/online2.db", sqlite_dir);
    LD_CHECK(access(p2, F_OK) == 0);
    if (s)
        s->ops->free(s);
    ld_config_free(c);
}

LD_TEST(sqlite_shared_cases)
{
    ol_store *s = sqlite_open(0);
    LD_CHECK(s != NULL);
    if (!s)
        return;
    shared_cases(s, 0);
    s->ops->free(s);
}

/* A file Feast made: its DDL, rows inserted as Python's sqlite3 does
 * (current Feast: integer epoch seconds; Feast < 0.42: ISO text). */
LD_TEST(sqlite_reads_feast_tables)
{
    sqlite3 *db = sqlite_check_db();
    LD_CHECK(db != NULL);
    if (!db)
        return;
    char *err = NULL;
    int rc = sqlite3_exec(
            db,
            "CREATE TABLE IF NOT EXISTS \"" PROJECT "_driver_hourly_stats\" (entity_key BLOB, "
            "feature_name TEXT, value BLOB, value_text TEXT,  vector_value BLOB, event_ts "
            "timestamp, created_ts timestamp,  PRIMARY KEY(entity_key, feature_name));"
            "CREATE INDEX IF NOT EXISTS \"" PROJECT "_driver_hourly_stats_ek\" ON \"" PROJECT
            "_driver_hourly_stats\" (entity_key);",
            NULL, NULL, &err);
    LD_CHECK_INT(rc, SQLITE_OK);
    if (err)
        printf("# %s\n", err);
    sqlite3_free(err);
    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    sqlite3_stmt *ins = NULL;
    sqlite3_prepare_v2(db,
                       "INSERT INTO \"" PROJECT "_driver_hourly_stats\" (entity_key, "
                       "feature_name, value, value_text, event_ts, created_ts) VALUES (?, ?, ?, "
                       "?, ?, ?) ON CONFLICT(entity_key, feature_name) DO UPDATE SET value = "
                       "excluded.value, value_text = excluded.value_text, event_ts = "
                       "excluded.event_ts, created_ts = excluded.created_ts;",
                       -1, &ins, NULL);
    struct {
        int64_t id;
        const char *feat;
        float v;
        const char *text_ts; /* NULL: integer seconds */
    } rows[] = {
            {1001, "conv_rate", 0.5f, NULL},
            {1001, "acc_rate", 0.25f, NULL},
            {1002, "conv_rate", 0.75f, "2021-12-31 23:00:00.123456"},
            {1003, "conv_rate", 1.5f, "2021-12-31T23:00:00+01:00"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        size_t kl, vl;
        const uint8_t *k = key_of(&a, rows[i].id, &kl);
        const uint8_t *v = pack(&a, ld_value_float(&a, rows[i].v), &vl);
        sqlite3_bind_blob(ins, 1, k, (int)kl, SQLITE_STATIC);
        sqlite3_bind_text(ins, 2, rows[i].feat, -1, SQLITE_STATIC);
        sqlite3_bind_blob(ins, 3, v, (int)vl, SQLITE_STATIC);
        sqlite3_bind_text(ins, 4, "x", -1, SQLITE_STATIC);
        if (rows[i].text_ts)
            sqlite3_bind_text(ins, 5, rows[i].text_ts, -1, SQLITE_STATIC);
        else
            sqlite3_bind_int64(ins, 5, 1640991600);
        sqlite3_bind_null(ins, 6);
        LD_CHECK_INT(sqlite3_step(ins), SQLITE_DONE);
        sqlite3_reset(ins);
    }
    sqlite3_finalize(ins);
    sqlite3_close(db);

    ol_store *s = sqlite_open(0);
    LD_CHECK(s != NULL);
    if (!s) {
        ld_arena_destroy(&a);
        return;
    }
    const char *fs[] = {"acc_rate", "conv_rate"};
    int64_t ids[] = {1001, 1002, 1003, 1004};
    ol_read_group g;
    make_group(&a, &g, "driver_hourly_stats", fs, 2, ids, 4);
    ol_read r;
    read_init(&r, &a, &g, 1);
    LD_CHECK_INT(do_read(s, &r), 0);
    LD_CHECK(g.found[0] && g.found[1] && g.found[2] && !g.found[3]);
    LD_CHECK_INT(g.event_ts_us[0], INT64_C(1640991600000000));
    LD_CHECK_INT(g.event_ts_us[1], TS1);
    LD_CHECK_INT(g.event_ts_us[2], INT64_C(1640991600000000) - INT64_C(3600000000));
    Feast__Types__Value *v = cell(&a, &g, 0, 0);
    LD_CHECK(v && v->val_case == FEAST__TYPES__VALUE__VAL_FLOAT_VAL && v->float_val == 0.25f);
    v = cell(&a, &g, 0, 1);
    LD_CHECK(v && v->float_val == 0.5f);
    LD_CHECK(g.val[2] == NULL); /* 1002 has no acc_rate */
    v = cell(&a, &g, 1, 1);
    LD_CHECK(v && v->float_val == 0.75f);
    s->ops->free(s);
    ld_arena_destroy(&a);
}

/* What we write looks like what Feast writes. */
LD_TEST(sqlite_layout_like_feast)
{
    ol_store *s = sqlite_open(0);
    LD_CHECK(s != NULL);
    if (!s)
        return;
    int64_t ids[] = {1001};
    LD_CHECK_INT(write_rows(s, "kinds", kind_feats, 8, ids, 1, TS1, TS2, v_kinds), 0);
    int64_t ids2[] = {1002};
    LD_CHECK_INT(write_rows(s, "kinds", kind_feats, 1, ids2, 1, TS1, 0, v_kinds), 0);
    s->ops->free(s);

    sqlite3 *db = sqlite_check_db();
    LD_CHECK(db != NULL);
    if (!db)
        return;
    CHECK_SQ_STR(db, "SELECT sql FROM sqlite_master WHERE name = '" PROJECT "_kinds'",
                 "CREATE TABLE \"" PROJECT "_kinds\" (entity_key BLOB, feature_name TEXT, value "
                 "BLOB, value_text TEXT,  vector_value BLOB, event_ts timestamp, created_ts "
                 "timestamp,  PRIMARY KEY(entity_key, feature_name))");
    CHECK_SQ_STR(db, "SELECT sql FROM sqlite_master WHERE name = '" PROJECT "_kinds_ek'",
                 "CREATE INDEX \"" PROJECT "_kinds_ek\" ON \"" PROJECT "_kinds\" (entity_key)");
    CHECK_SQ_STR(db, "PRAGMA journal_mode", "wal");
    CHECK_SQ_STR(db,
                 "SELECT typeof(event_ts) || ' ' || event_ts || ' ' || typeof(created_ts) || ' ' "
                 "|| created_ts FROM \"" PROJECT "_kinds\" WHERE feature_name = 'i64'",
                 "integer 1640991600 integer 1640995200");
    CHECK_SQ_STR(db,
                 "SELECT count(*) FROM \"" PROJECT "_kinds\" WHERE created_ts IS NULL AND "
                 "vector_value IS NULL",
                 "1");
    CHECK_SQ_STR(db, "SELECT count(*) FROM \"" PROJECT "_kinds\"", "9");
    /* entity_key = the serialized key; value = the Value bytes */
    CHECK_SQ_STR(db,
                 "SELECT hex(entity_key) || ' ' || hex(value) FROM \"" PROJECT
                 "_kinds\" WHERE feature_name = 'f_half' AND value_text = '0.5' AND "
                 "event_ts = 1640991600 AND created_ts = 1640995200",
                 "0100000002000000090000006472697665725F69640400000008000000E903000000000000 "
                 "350000003F");
    for (int f = 0; f < 8; f++) {
        char sql[256];
        snprintf(sql, sizeof sql,
                 "SELECT value_text FROM \"" PROJECT "_kinds\" WHERE feature_name = '%s' "
                 "AND length(entity_key) = 37 AND typeof(value) = 'blob'",
                 kind_feats[f]);
        char *got = sq_one(db, sql);
        if (kind_text[f])
            LD_CHECK_STR(got, kind_text[f]);
        else
            LD_CHECK(got == NULL);
        free(got);
    }
    sqlite3_close(db);
}

/* enable_openai_compatible_store: the value_num column, as Feast. */
LD_TEST(sqlite_value_num)
{
    ol_store *s = sqlite_open(1);
    LD_CHECK(s != NULL);
    if (!s)
        return;
    int64_t ids[] = {1};
    LD_CHECK_INT(write_rows(s, "vnum", kind_feats, 8, ids, 1, TS1, 0, v_kinds), 0);
    /* a table without the column: written without it (as Feast) */
    LD_CHECK_INT(write_rows(s, "drivers", kind_feats, 2, ids, 1, TS1, 0, v_kinds), 0);
    s->ops->free(s);
    sqlite3 *db = sqlite_check_db();
    if (!db)
        return;
    CHECK_SQ_STR(db, "SELECT sql FROM sqlite_master WHERE name = '" PROJECT "_vnum'",
                 "CREATE TABLE \"" PROJECT "_vnum\" (entity_key BLOB, feature_name TEXT, value "
                 "BLOB, value_text TEXT, value_num REAL, vector_value BLOB, event_ts timestamp, "
                 "created_ts timestamp,  PRIMARY KEY(entity_key, feature_name))");
    CHECK_SQ_STR(db,
                 "SELECT group_concat(feature_name || '=' || coalesce(value_num, 'null'), ',') "
                 "FROM (SELECT * FROM \"" PROJECT "_vnum\" ORDER BY feature_name)",
                 "b=1.0,d_big=1.0e+16,f_half=0.5,f_tenth=0.100000001490116,i32=42.0,i64=-5.0,"
                 "lst=null,s=null");
    sqlite3_close(db);
}

/* A write waiting for a lock stops at its deadline; a full pool refuses at
 * once (RESOURCE_EXHAUSTED, done never called); readers are not blocked by
 * a writer (WAL). */
LD_TEST(sqlite_lock_deadline_full_pool)
{
    ol_store *s = sqlite_open(0);
    sqlite3 *db = sqlite_check_db();
    LD_CHECK(s != NULL && db != NULL);
    if (!s || !db) {
        if (s)
            s->ops->free(s);
        sqlite3_close(db);
        return;
    }
    LD_CHECK_INT(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);

    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    const char *fs[] = {"trips"};
    ol_write_row row = {0};
    row.key = key_of(&a, 31337, &row.key_len);
    const uint8_t *vals[1];
    size_t lens[1];
    vals[0] = pack(&a, ld_value_int64(&a, 1), &lens[0]);
    row.val = vals;
    row.val_len = lens;
    row.event_ts_us = TS2;
    ol_write w0 = {0};
    w0.project = PROJECT;
    w0.table = "drivers";
    w0.features = fs;
    w0.n_features = 1;
    w0.rows = &row;
    w0.n_rows = 1;
    w0.arena = &a;

    int64_t t0 = ld_mono_us();
    ol_write w = w0;
    w.deadline_us = t0 + 300000;
    LD_CHECK_INT(do_write_w(s, &w, 1), GRPC_STATUS_DEADLINE_EXCEEDED);
    int64_t took = ld_mono_us() - t0;
    LD_CHECK(took >= 250000 && took < 3000000);

    /* readers go on while the writer holds the lock */
    int64_t ids[] = {1};
    ol_read_group g;
    make_group(&a, &g, "drivers", fs, 1, ids, 1);
    ol_read r;
    read_init(&r, &a, &g, 1);
    LD_CHECK_INT(do_read(s, &r), 0);
    LD_CHECK_INT(g.found[0], 1);

    /* 4 threads stuck on the lock, 4096 queued, the rest refused */
    enum { N = 4300 };
    ol_write *ws = calloc(N, sizeof *ws);
    waiter *wt = calloc(N, sizeof *wt);
    int refused = 0, wrong = 0;
    int64_t deadline = ld_mono_us() + 1000000;
    for (int i = 0; i < N; i++) {
        ws[i] = w0;
        ws[i].deadline_us = deadline;
        waiter_init(&wt[i]);
        ws[i].done = write_done;
        ws[i].arg = &wt[i];
        ld_status st = LD_STATUS_INIT;
        if (s->ops->write(s, &ws[i], &st) != 0) {
            refused++;
            wrong += st.code != GRPC_STATUS_RESOURCE_EXHAUSTED;
            wt[i].done = 1;
            wt[i].st.code = GRPC_STATUS_RESOURCE_EXHAUSTED;
        }
    }
    LD_CHECK(refused > 0);
    LD_CHECK_INT(wrong, 0);
    while (ld_mono_us() < deadline + 100000)
        usleep(20000);
    LD_CHECK_INT(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    int other = 0;
    for (int i = 0; i < N; i++) {
        waiter_wait(&wt[i]);
        grpc_status_code c = wt[i].st.code;
        other += c != GRPC_STATUS_DEADLINE_EXCEEDED && c != GRPC_STATUS_RESOURCE_EXHAUSTED;
    }
    LD_CHECK_INT(other, 0);
    free(ws);
    free(wt);
    /* the lock is gone: writes work again */
    w = w0;
    w.deadline_us = INT64_MAX;
    LD_CHECK_INT(do_write_w(s, &w, 0), 0);
    sqlite3_close(db);
    s->ops->free(s);
    ld_arena_destroy(&a);
}

/* An acknowledged write survives kill -9 of the writer right after the ack. */
LD_TEST(sqlite_survives_kill9)
{
    pid_t pid = fork();
    if (pid == 0) {
        ol_store *s = sqlite_open(0);
        const char *fs[] = {"trips", "rate"};
        int64_t ids[] = {9001, 9002};
        if (s && write_rows(s, "durable", fs, 2, ids, 2, TS2, 0, v_num) == 0)
            kill(getpid(), SIGKILL);
        _exit(3);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    LD_CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    ol_store *s = sqlite_open(0);
    LD_CHECK(s != NULL);
    if (!s)
        return;
    const char *fs[] = {"trips", "rate"};
    int64_t ids[] = {9001, 9002};
    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    ol_read_group g;
    make_group(&a, &g, "durable", fs, 2, ids, 2);
    ol_read r;
    read_init(&r, &a, &g, 1);
    LD_CHECK_INT(do_read(s, &r), 0);
    LD_CHECK(g.found[0] && g.found[1]);
    Feast__Types__Value *v = cell(&a, &g, 1, 0);
    LD_CHECK(v && v->int64_val == 90020);
    ld_arena_destroy(&a);
    s->ops->free(s);
}

LD_TEST(sqlite_cleanup)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", sqlite_dir);
    LD_CHECK_INT(system(cmd), 0);
}

/* ------------------------------------------------------------ PostgreSQL */

static ol_store *pg_open(int value_num, int port)
{
    ld_config *c = pg_config(pg_schema, value_num, port);
    if (!c)
        return NULL;
    ld_status st = LD_STATUS_INIT;
    ol_store *s = ol_store_new(c, &st);
    if (!s)
        printf("# postgres store: %s\n", st.msg);
    ld_config_free(c);
    return s;
}

LD_TEST(pg_setup)
{
    snprintf(pg_schema, sizeof pg_schema, "larder_t%d", (int)getpid());
    PGconn *c = pg_check_conn();
    LD_CHECK(c != NULL);
    if (!c)
        return;
    char sql[128];
    snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE", pg_schema);
    LD_CHECK(pg_ok(c, sql));
    PQfinish(c);
    ol_store *s = pg_open(0, 0);
    LD_CHECK(s != NULL);
    if (!s)
        return;
    LD_CHECK_STR(s->ops->name, "postgres");
    LD_CHECK_INT(s->ops->healthy(s), 1);
    s->ops->free(s);
}

LD_TEST(pg_shared_cases)
{
    ol_store *s = pg_open(0, 0);
    LD_CHECK(s != NULL);
    if (!s)
        return;
    shared_cases(s, 1);
    s->ops->free(s);
}

/* Tables Feast created, rows as psycopg writes them (naive UTC datetimes
 * sent as `timestamp` into TIMESTAMPTZ columns, TimeZone UTC). */
LD_TEST(pg_reads_feast_tables)
{
    PGconn *c = pg_check_conn();
    LD_CHECK(c != NULL);
    if (!c)
        return;
    char sql[1024];
    snprintf(sql, sizeof sql,
             "CREATE SCHEMA IF NOT EXISTS %s; "
             "CREATE TABLE IF NOT EXISTS %s.\"" PROJECT "_driver_hourly_stats\" "
             "(entity_key BYTEA, feature_name TEXT, value BYTEA, value_text TEXT NULL, "
             "vector_value BYTEA NULL, event_ts TIMESTAMPTZ, created_ts TIMESTAMPTZ, "
             "PRIMARY KEY(entity_key, feature_name)); "
             "CREATE INDEX IF NOT EXISTS \"" PROJECT "_driver_hourly_stats_ek\" ON "
             "%s.\"" PROJECT "_driver_hourly_stats\" (entity_key);",
             pg_schema, pg_schema, pg_schema);
    LD_CHECK(pg_ok(c, sql));
    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    struct {
        int64_t id;
        const char *feat;
        float v;
        const char *ts;
    } rows[] = {
            {1001, "conv_rate", 0.5f, "2021-12-31 23:00:00"},
            {1001, "acc_rate", 0.25f, "2021-12-31 23:00:00"},
            {1002, "conv_rate", 0.75f, "2021-12-31 23:00:00.123456"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        size_t kl, vl;
        const uint8_t *k = key_of(&a, rows[i].id, &kl);
        const uint8_t *v = pack(&a, ld_value_float(&a, rows[i].v), &vl);
        const char *vals[5] = {(const char *)k, rows[i].feat, (const char *)v, "x", rows[i].ts};
        int lens[5] = {(int)kl, 0, (int)vl, 0, 0};
        int fmts[5] = {1, 0, 1, 0, 0};
        Oid types[5] = {17, 25, 17, 25, 1114}; /* ts as `timestamp`, as psycopg sends naive */
        PGresult *res = PQexecParams(c,
                                     "INSERT INTO \"" PROJECT "_driver_hourly_stats\" "
                                     "(entity_key, feature_name, value, value_text, vector_value, "
                                     "event_ts, created_ts) VALUES ($1, $2, $3, $4, NULL, $5, "
                                     "NULL) ON CONFLICT (entity_key, feature_name) DO UPDATE SET "
                                     "value = EXCLUDED.value",
                                     5, types, vals, lens, fmts, 0);
        LD_CHECK_INT(PQresultStatus(res), PGRES_COMMAND_OK);
        PQclear(res);
    }
    PQfinish(c);

    ol_store *s = pg_open(0, 0);
    LD_CHECK(s != NULL);
    if (!s) {
        ld_arena_destroy(&a);
        return;
    }
    const char *fs[] = {"acc_rate", "conv_rate"};
    int64_t ids[] = {1001, 1002, 1004};
    ol_read_group g;
    make_group(&a, &g, "driver_hourly_stats", fs, 2, ids, 3);
    ol_read r;
    read_init(&r, &a, &g, 1);
    LD_CHECK_INT(do_read(s, &r), 0);
    LD_CHECK(g.found[0] && g.found[1] && !g.found[2]);
    LD_CHECK_INT(g.event_ts_us[0], INT64_C(1640991600000000));
    LD_CHECK_INT(g.event_ts_us[1], TS1);
    Feast__Types__Value *v = cell(&a, &g, 0, 0);
    LD_CHECK(v && v->float_val == 0.25f);
    v = cell(&a, &g, 0, 1);
    LD_CHECK(v && v->float_val == 0.5f);
    LD_CHECK(g.val[2] == NULL);
    v = cell(&a, &g, 1, 1);
    LD_CHECK(v && v->float_val == 0.75f);
    /* only requested features count (Feast's feature_name = ANY filter) */
    const char *only[] = {"acc_rate"};
    make_group(&a, &g, "driver_hourly_stats", only, 1, ids, 2);
    read_init(&r, &a, &g, 1);
    LD_CHECK_INT(do_read(s, &r), 0);
    LD_CHECK(g.found[0] && !g.found[1]);
    s->ops->free(s);
    ld_arena_destroy(&a);
}

LD_TEST(pg_layout_like_feast)
{
    ol_store *s = pg_open(0, 0);
    LD_CHECK(s != NULL);
    if (!s)
        return;
    int64_t ids[] = {1001};
    LD_CHECK_INT(write_rows(s, "kinds", kind_feats, 8, ids, 1, TS1, TS2, v_kinds), 0);
    s->ops->free(s);
    PGconn *c = pg_check_conn();
    if (!c)
        return;
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT string_agg(column_name || ' ' || data_type || ' ' || is_nullable, ', ' "
             "ORDER BY ordinal_position) FROM information_schema.columns WHERE table_schema = "
             "'%s' AND table_name = '" PROJECT "_kinds'",
             pg_schema);
    CHECK_PG_STR(c, sql,
                 "entity_key bytea NO, feature_name text NO, value bytea YES, value_text text "
                 "YES, vector_value bytea YES, event_ts timestamp with time zone YES, created_ts "
                 "timestamp with time zone YES");
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM pg_indexes WHERE schemaname = '%s' AND indexname = "
             "'" PROJECT "_kinds_ek' AND indexdef LIKE '%%(entity_key)'",
             pg_schema);
    CHECK_PG_STR(c, sql, "1");
    CHECK_PG_STR(c,
                 "SELECT encode(entity_key, 'hex') || ' ' || encode(value, 'hex') || ' ' || "
                 "event_ts || ' ' || created_ts FROM \"" PROJECT "_kinds\" WHERE feature_name = "
                 "'f_half'",
                 "0100000002000000090000006472697665725f69640400000008000000e903000000000000 "
                 "350000003f 2021-12-31 23:00:00.123456+00 2022-01-01 00:00:00+00");
    for (int f = 0; f < 8; f++) {
        snprintf(sql, sizeof sql,
                 "SELECT value_text FROM \"" PROJECT "_kinds\" WHERE feature_name = '%s'",
                 kind_feats[f]);
        char *got = pg_one(c, sql);
        if (kind_text[f])
            LD_CHECK_STR(got, kind_text[f]);
        else
            LD_CHECK(got == NULL);
        free(got);
    }
    PQfinish(c);
}

LD_TEST(pg_value_num)
{
    ol_store *s = pg_open(1, 0);
    LD_CHECK(s != NULL);
    if (!s)
        return;
    int64_t ids[] = {1};
    LD_CHECK_INT(write_rows(s, "vnum", kind_feats, 8, ids, 1, TS1, 0, v_kinds), 0);
    /* an existing table without the column: written without it (as Feast) */
    LD_CHECK_INT(write_rows(s, "drivers", kind_feats, 2, ids, 1, TS1, 0, v_kinds), 0);
    s->ops->free(s);
    PGconn *c = pg_check_conn();
    if (!c)
        return;
    CHECK_PG_STR(c,
                 "SELECT string_agg(feature_name || '=' || coalesce(value_num::text, 'null'), ',' "
                 "ORDER BY feature_name) FROM \"" PROJECT "_vnum\"",
                 "b=1,d_big=1e+16,f_half=0.5,f_tenth=0.10000000149011612,i32=42,i64=-5,lst=null,"
                 "s=null");
    PQfinish(c);
}

/* Waiting on a lock stops at the deadline (statement_timeout); the next
 * request without a deadline is not limited by it. */
LD_TEST(pg_lock_deadline)
{
    ol_store *s = pg_open(0, 0);
    PGconn *c = pg_check_conn();
    LD_CHECK(s != NULL && c != NULL);
    if (!s || !c) {
        if (s)
            s->ops->free(s);
        PQfinish(c);
        return;
    }
    const char *fs[] = {"trips"};
    int64_t ids[] = {1};
    LD_CHECK_INT(write_rows(s, "locked", fs, 1, ids, 1, TS2, 0, v_num), 0);
    LD_CHECK(pg_ok(c, "BEGIN"));
    LD_CHECK(pg_ok(c, "LOCK TABLE \"" PROJECT "_locked\" IN ACCESS EXCLUSIVE MODE"));

    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    ol_read_group g;
    make_group(&a, &g, "locked", fs, 1, ids, 1);
    ol_read r;
    read_init(&r, &a, &g, 1);
    int64_t t0 = ld_mono_us();
    r.deadline_us = t0 + 300000;
    LD_CHECK_INT(do_read(s, &r), GRPC_STATUS_DEADLINE_EXCEEDED);
    int64_t took = ld_mono_us() - t0;
    LD_CHECK(took >= 250000 && took < 3000000);

    ol_write_row row = {0};
    row.key = key_of(&a, 1, &row.key_len);
    const uint8_t *vals[1];
    size_t lens[1];
    vals[0] = pack(&a, ld_value_int64(&a, 77), &lens[0]);
    row.val = vals;
    row.val_len = lens;
    row.event_ts_us = TS2;
    ol_write w = {0};
    w.project = PROJECT;
    w.table = "locked";
    w.features = fs;
    w.n_features = 1;
    w.rows = &row;
    w.n_rows = 1;
    w.arena = &a;
    w.deadline_us = ld_mono_us() + 300000;
    LD_CHECK_INT(do_write_w(s, &w, 1), GRPC_STATUS_DEADLINE_EXCEEDED);

    LD_CHECK(pg_ok(c, "ROLLBACK"));
    /* no deadline: every connection is back to no statement_timeout */
    for (int i = 0; i < 8; i++) {
        read_init(&r, &a, &g, 1);
        LD_CHECK_INT(do_read(s, &r), 0);
    }
    w.deadline_us = INT64_MAX;
    LD_CHECK_INT(do_write_w(s, &w, 0), 0);
    read_init(&r, &a, &g, 1);
    LD_CHECK_INT(do_read(s, &r), 0);
    Feast__Types__Value *v = cell(&a, &g, 0, 0);
    LD_CHECK(v && v->int64_val == 77);
    ld_arena_destroy(&a);
    PQfinish(c);
    s->ops->free(s);
}

static Feast__Types__Value *v_bad_utf8(ld_arena *a, int64_t id, size_t f)
{
    return ld_value_string(a, "ok\xff", 3);
}

/* A string_val that is not UTF-8 cannot go into a TEXT column: the
 * client's fault (INVALID_ARGUMENT), not the server's. */
LD_TEST(pg_invalid_utf8)
{
    ol_store *s = pg_open(0, 0);
    LD_CHECK(s != NULL);
    if (!s)
        return;
    const char *fs[] = {"name"};
    int64_t ids[] = {1};
    LD_CHECK_INT(write_rows(s, "utf8", fs, 1, ids, 1, TS2, 0, v_bad_utf8),
                 GRPC_STATUS_INVALID_ARGUMENT);
    LD_CHECK_INT(write_rows(s, "utf8", fs, 1, ids, 1, TS2, 0, v_str), 0);
    s->ops->free(s);
}

/* Connections killed under the store: the next requests reconnect. */
LD_TEST(pg_reconnect)
{
    ol_store *s = pg_open(0, 0);
    LD_CHECK(s != NULL);
    if (!s)
        return;
    const char *fs[] = {"trips"};
    int64_t ids[] = {1};
    for (int round = 0; round < 2; round++) {
        /* use every connection, then kill them all */
        case_concurrent(s);
        PGconn *c = pg_check_conn();
        if (c) {
            LD_CHECK(pg_ok(c, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                              "application_name = 'larder-online' AND pid <> "
                              "pg_backend_pid()"));
            PQfinish(c);
        }
        usleep(100000);
        for (int i = 0; i < 8; i++) {
            ld_arena a;
            ld_arena_init(&a, NULL, 0, 0);
            ol_read_group g;
            make_group(&a, &g, "drivers", fs, 1, ids, 1);
            ol_read r;
            read_init(&r, &a, &g, 1);
            LD_CHECK_INT(do_read(s, &r), 0);
            LD_CHECK_INT(g.found[0], 1);
            ld_arena_destroy(&a);
        }
        LD_CHECK_INT(write_rows(s, "drivers", fs, 1, ids, 1, TS2, 0, v_num), 0);
    }
    LD_CHECK_INT(s->ops->healthy(s), 1);
    s->ops->free(s);
}

/* Nothing listening: the store is created unhealthy and answers UNAVAILABLE. */
LD_TEST(pg_unavailable)
{
    ol_store *s = pg_open(0, 1);
    LD_CHECK(s != NULL);
    if (!s)
        return;
    LD_CHECK_INT(s->ops->healthy(s), 0);
    const char *fs[] = {"trips"};
    int64_t ids[] = {1};
    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    ol_read_group g;
    make_group(&a, &g, "drivers", fs, 1, ids, 1);
    ol_read r;
    read_init(&r, &a, &g, 1);
    LD_CHECK_INT(do_read(s, &r), GRPC_STATUS_UNAVAILABLE);
    LD_CHECK_INT(write_rows(s, "drivers", fs, 1, ids, 1, TS2, 0, v_num), GRPC_STATUS_UNAVAILABLE);
    ld_arena_destroy(&a);
    s->ops->free(s);
}

LD_TEST(pg_cleanup)
{
    PGconn *c = pg_check_conn();
    LD_CHECK(c != NULL);
    if (!c)
        return;
    char sql[128];
    snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE", pg_schema);
    LD_CHECK(pg_ok(c, sql));
    PQfinish(c);
}
