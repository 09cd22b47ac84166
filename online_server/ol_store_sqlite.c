/* The SQLite online store (the embedded default), in Feast's layout
 * (sdk/python/feast/infra/online_stores/sqlite.py) so Feast and larder can
 * share one file.
 *
 * Layout: one table per feature view, "{project}_{view}" (quoted, embedded
 * quotes doubled), created lazily on the first write with Feast's own
 * CREATE TABLE text (so sqlite_master reads the same as after `feast apply`):
 *   (entity_key BLOB, feature_name TEXT, value BLOB, value_text TEXT,
 *    [value_num REAL,] vector_value BLOB, event_ts timestamp,
 *    created_ts timestamp, PRIMARY KEY(entity_key, feature_name))
 * plus index "<t>_ek". value_num only with
 * online_store.enable_openai_compatible_store, as Feast does.
 *
 * Timestamps (feast-protocols.md §6 q8), decided: since Feast 0.42
 * (commit e198b173, "Add adapters for sqlite datetime conversion", still in
 * v0.66) sqlite.py registers adapt_datetime_epoch last, so Python's sqlite3
 * stores event_ts/created_ts as INTEGER epoch seconds (int(dt.timestamp())
 * of the naive UTC datetime: fractions truncated toward zero), and reads
 * them back with int(). Text timestamps would make today's Feast fail
 * (int("2021-...")), so we WRITE integer seconds. We READ every form a Feast
 * version ever stored: INTEGER/REAL epoch seconds and the older text form
 * "YYYY-MM-DD HH:MM:SS[.ffffff]" (also with 'T' and a Z/+HH:MM suffix),
 * naive = UTC. Feast's int(dt.timestamp()) treats the naive UTC datetime as
 * local time, so on a host whose TZ is not UTC Feast's own integers are
 * shifted by the offset (and shifted back when Feast reads them); we store
 * the true instant, which is what Feast stores on a UTC host.
 *
 * value_text (Feast's helpers.extract_text_and_num): string_val as is; int32,
 * int64 as decimal; float/double as Python's repr of the (widened) double;
 * bool as "True"/"False"; anything else NULL. value_num, when the table has
 * it and the option is on: the number (bool 1.0/0.0), else NULL.
 * vector_value is never written (vector search is not served).
 *
 * Writes: an upsert per (entity_key, feature_name), no timestamp check (last
 * writer wins, as Feast), all rows of a write in ONE transaction (BEGIN
 * IMMEDIATE ... COMMIT; any failure rolls everything back). Durability: WAL
 * with synchronous=FULL, so an acknowledged write is on disk (survives
 * kill -9 and power loss). journal_mode=WAL is persistent in the file;
 * Python's sqlite3 (Feast) reads and writes WAL databases unchanged.
 *
 * Reads: all views of a request in one job and one read transaction (one
 * snapshot); per view "SELECT entity_key, feature_name, value, event_ts
 * FROM <t> WHERE entity_key IN (?,...)" with the keys bound in chunks of at
 * most SQ_CHUNK. The IN list is padded with NULLs to a power of two (>= 8)
 * so each thread caches at most 7 statements per view. All features of the
 * view are read (as Feast): found = the key has any row; event_ts = the
 * last row seen. A missing table reads as not found.
 *
 * Threads: callers never block. read/write queue a job on a store-owned
 * ol_store_pool of SQ_THREADS threads; a job borrows one of SQ_THREADS
 * connections (opened with SQLITE_OPEN_NOMUTEX: one thread at a time), each
 * with its own statement cache. Pool full: RESOURCE_EXHAUSTED. Deadlines:
 * a job whose deadline passed is not run (DEADLINE_EXCEEDED); a running
 * query is interrupted at the deadline (progress handler) and lock waits
 * stop there too (busy handler, at most SQ_BUSY_MS). */
#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ld_buf.h"
#include "ld_log.h"
#include "ld_time.h"
#include "ld_value.h"
#include "ol_store.h"
#include "ol_store_pool.h"
#include "ol_store_sql.h"
#include "ol_values.h"

#define SQ_THREADS    4
#define SQ_QUEUE      4096
#define SQ_CHUNK      512 /* keys per statement (a power of two) */
#define SQ_MIN_BUCKET 8
#define SQ_BUSY_MS    5000
#define SQ_CACHE      128 /* statements cached per connection */

typedef struct sq_stmt {
    char *table;
    int n; /* read: IN-list size; write: -1 (plain) or -2 (with value_num) */
    sqlite3_stmt *stmt;
    uint64_t used;
} sq_stmt;

typedef struct sq_table {
    char *name;
    int has_value_num;
} sq_table;

typedef struct sq_store sq_store;

typedef struct sq_conn {
    sq_store *s;
    sqlite3 *db;
    sq_stmt cache[SQ_CACHE];
    int ncache;
    uint64_t tick;
    sq_table *tables; /* tables this connection made sure exist (writes) */
    size_t ntables;
    int64_t deadline_us; /* of the running job */
    int64_t busy_start_us;
} sq_conn;

struct sq_store {
    ol_store base;
    char *path;
    int value_num; /* online_store.enable_openai_compatible_store */
    ol_store_pool *pool;
    sq_conn conns[SQ_THREADS];
    atomic_int healthy;
};

static const uint8_t sq_empty[1];

/* ------------------------------------------------------------ helpers */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static int digits(const char *s, size_t n, size_t at, size_t k, int *out)
{
    if (at + k > n)
        return -1;
    int v = 0;
    for (size_t i = 0; i < k; i++) {
        if (s[at + i] < '0' || s[at + i] > '9')
            return -1;
        v = v * 10 + (s[at + i] - '0');
    }
    *out = v;
    return 0;
}

/* "YYYY-MM-DD[( |T)HH:MM[:SS[.f{1,9}]]][Z|(+|-)HH[:MM]]" (naive = UTC) ->
 * microseconds since the epoch. */
static int parse_ts_text(const char *s, size_t n, int64_t *out)
{
    int y, mo, d, h = 0, mi = 0, sec = 0;
    int64_t us = 0;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\0'))
        n--;
    if (digits(s, n, 0, 4, &y) || n < 10 || s[4] != '-' || digits(s, n, 5, 2, &mo) || s[7] != '-' ||
        digits(s, n, 8, 2, &d) || mo < 1 || mo > 12 || d < 1 || d > 31)
        return -1;
    size_t i = 10;
    if (i < n && (s[i] == ' ' || s[i] == 'T')) {
        if (digits(s, n, i + 1, 2, &h) || i + 3 >= n || s[i + 3] != ':' ||
            digits(s, n, i + 4, 2, &mi))
            return -1;
        i += 6;
        if (i < n && s[i] == ':') {
            if (digits(s, n, i + 1, 2, &sec))
                return -1;
            i += 3;
            if (i < n && s[i] == '.') {
                i++;
                int64_t scale = 100000;
                size_t nd = 0;
                while (i < n && s[i] >= '0' && s[i] <= '9') {
                    us += (s[i] - '0') * scale;
                    scale /= 10;
                    i++;
                    nd++;
                }
                if (nd == 0)
                    return -1;
            }
        }
    }
    int64_t off = 0;
    if (i < n && (s[i] == 'Z' || s[i] == 'z')) {
        i++;
    } else if (i < n && (s[i] == '+' || s[i] == '-')) {
        int oh, om = 0;
        int sign = s[i] == '-' ? -1 : 1;
        if (digits(s, n, i + 1, 2, &oh))
            return -1;
        i += 3;
        if (i < n && s[i] == ':')
            i++;
        if (i < n) {
            if (digits(s, n, i, 2, &om))
                return -1;
            i += 2;
        }
        off = sign * ((int64_t)oh * 3600 + om * 60);
    }
    if (i != n || h > 23 || mi > 59 || sec > 60)
        return -1;
    int64_t secs =
            days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + sec - off;
    *out = secs * 1000000 + us;
    return 0;
}

/* The event_ts column of a row in any form Feast has stored it (see top). */
static int64_t column_ts(sqlite3_stmt *st, int col)
{
    switch (sqlite3_column_type(st, col)) {
    case SQLITE_INTEGER: {
        int64_t v = sqlite3_column_int64(st, col);
        if (v > INT64_MAX / 1000000 || v < INT64_MIN / 1000000)
            return 0;
        return v * 1000000;
    }
    case SQLITE_FLOAT: {
        double v = sqlite3_column_double(st, col);
        if (!(v > -9.2e12 && v < 9.2e12))
            return 0;
        return (int64_t)(v * 1e6 + (v < 0 ? -0.5 : 0.5));
    }
    case SQLITE_TEXT:
    case SQLITE_BLOB: {
        const char *t = (const char *)sqlite3_column_blob(st, col);
        int64_t us;
        if (t && parse_ts_text(t, (size_t)sqlite3_column_bytes(st, col), &us) == 0)
            return us;
        return 0;
    }
    default:
        return 0;
    }
}

static int mkdir_parents(const char *path)
{
    char *p = strdup(path);
    if (!p)
        return -1;
    char *slash = strrchr(p, '/');
    if (slash && slash != p) {
        *slash = '\0';
        for (char *q = p + 1; *q; q++) {
            if (*q != '/')
                continue;
            *q = '\0';
            if (mkdir(p, 0755) != 0 && errno != EEXIST) {
                free(p);
                return -1;
            }
            *q = '/';
        }
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            free(p);
            return -1;
        }
    }
    free(p);
    return 0;
}

/* ------------------------------------------------------------ connections */

static int progress_cb(void *arg)
{
    sq_conn *c = arg;
    return c->deadline_us != INT64_MAX && ld_mono_us() > c->deadline_us;
}

/* sqlite3_busy_timeout's job, stopping at the request deadline too. */
static int busy_cb(void *arg, int count)
{
    sq_conn *c = arg;
    int64_t now = ld_mono_us();
    if (count == 0)
        c->busy_start_us = now;
    if (now - c->busy_start_us > (int64_t)SQ_BUSY_MS * 1000 ||
        (c->deadline_us != INT64_MAX && now > c->deadline_us))
        return 0;
    int ms = count < 5 ? 1 << count : 25;
    struct timespec ts = {0, (long)ms * 1000000L};
    nanosleep(&ts, NULL);
    return 1;
}

static void cache_drop(sq_conn *c, int i)
{
    sqlite3_finalize(c->cache[i].stmt);
    free(c->cache[i].table);
    c->cache[i] = c->cache[--c->ncache];
}

/* Forget everything cached about a table (dropped or changed underneath). */
static void forget_table(sq_conn *c, const char *table)
{
    for (int i = c->ncache - 1; i >= 0; i--)
        if (strcmp(c->cache[i].table, table) == 0)
            cache_drop(c, i);
    for (size_t i = 0; i < c->ntables; i++) {
        if (strcmp(c->tables[i].name, table) == 0) {
            free(c->tables[i].name);
            c->tables[i] = c->tables[--c->ntables];
            break;
        }
    }
}

static void conn_close(sq_conn *c)
{
    while (c->ncache)
        cache_drop(c, c->ncache - 1);
    for (size_t i = 0; i < c->ntables; i++)
        free(c->tables[i].name);
    free(c->tables);
    c->tables = NULL;
    c->ntables = 0;
    if (c->db)
        sqlite3_close_v2(c->db);
    c->db = NULL;
}

static int conn_open(sq_store *s, sq_conn *c, ld_status *st)
{
    int rc =
            sqlite3_open_v2(s->path, &c->db,
                            SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        ld_status_set(st, GRPC_STATUS_UNAVAILABLE, NULL, "sqlite online store: cannot open %s: %s",
                      s->path, c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
        conn_close(c);
        return -1;
    }
    c->deadline_us = INT64_MAX;
    sqlite3_extended_result_codes(c->db, 1);
    sqlite3_busy_handler(c->db, busy_cb, c);
    sqlite3_progress_handler(c->db, 1000, progress_cb, c);
    /* WAL: readers never wait for the writer; FULL: a commit is on disk. */
    sqlite3_stmt *jm = NULL;
    const char *mode = NULL;
    if (sqlite3_prepare_v2(c->db, "PRAGMA journal_mode=WAL", -1, &jm, NULL) == SQLITE_OK &&
        sqlite3_step(jm) == SQLITE_ROW)
        mode = (const char *)sqlite3_column_text(jm, 0);
    if (!mode || strcasecmp(mode, "wal") != 0)
        ld_warn("sqlite online store: %s: journal_mode is %s, not wal", s->path,
                mode ? mode : "unknown");
    sqlite3_finalize(jm);
    char *err = NULL;
    if (sqlite3_exec(c->db, "PRAGMA synchronous=FULL", NULL, NULL, &err) != SQLITE_OK) {
        ld_status_set(st, GRPC_STATUS_UNAVAILABLE, NULL, "sqlite online store: %s: %s", s->path,
                      err ? err : "PRAGMA synchronous failed");
        sqlite3_free(err);
        conn_close(c);
        return -1;
    }
    return 0;
}

/* Ready the borrowed connection for a job that ends by `deadline_us`. */
static void conn_begin(sq_conn *c, int64_t deadline_us)
{
    if (!sqlite3_get_autocommit(c->db)) /* never expected: a transaction left open */
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    c->deadline_us = deadline_us;
}

/* Map a failed SQLite call to a status. */
static int sq_fail(sq_conn *c, int rc, ld_status *st, const char *what, const char *table)
{
    grpc_status_code code = GRPC_STATUS_INTERNAL;
    int prim = rc & 0xff;
    int late = c->deadline_us != INT64_MAX && ld_mono_us() > c->deadline_us;
    if (prim == SQLITE_INTERRUPT || (late && (prim == SQLITE_BUSY || prim == SQLITE_LOCKED)))
        return ld_status_set(st, GRPC_STATUS_DEADLINE_EXCEEDED, NULL,
                             "sqlite online store: %s %s: deadline exceeded", what, table);
    if (prim == SQLITE_BUSY || prim == SQLITE_LOCKED || prim == SQLITE_IOERR ||
        prim == SQLITE_FULL || prim == SQLITE_CANTOPEN || prim == SQLITE_READONLY ||
        prim == SQLITE_PROTOCOL)
        code = GRPC_STATUS_UNAVAILABLE;
    if (prim == SQLITE_NOMEM)
        code = GRPC_STATUS_RESOURCE_EXHAUSTED;
    if (prim == SQLITE_IOERR || prim == SQLITE_FULL || prim == SQLITE_CORRUPT ||
        prim == SQLITE_CANTOPEN || prim == SQLITE_NOTADB)
        atomic_store(&c->s->healthy, 0); /* until a request succeeds again */
    return ld_status_set(st, code, NULL, "sqlite online store: %s %s: %s", what, table,
                         sqlite3_errmsg(c->db));
}

static int no_such_table(sq_conn *c)
{
    return strncmp(sqlite3_errmsg(c->db), "no such table", 13) == 0;
}

/* A cached statement for (table, n), preparing `sql` on a miss. NULL with
 * *rc set on failure. */
static sqlite3_stmt *cache_get(sq_conn *c, const char *table, int n, const char *sql, int *rc)
{
    c->tick++;
    for (int i = 0; i < c->ncache; i++) {
        if (c->cache[i].n == n && strcmp(c->cache[i].table, table) == 0) {
            c->cache[i].used = c->tick;
            return c->cache[i].stmt;
        }
    }
    sqlite3_stmt *stmt = NULL;
    *rc = sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, NULL);
    if (*rc != SQLITE_OK) {
        sqlite3_finalize(stmt);
        return NULL;
    }
    char *t = strdup(table);
    if (!t) {
        sqlite3_finalize(stmt);
        *rc = SQLITE_NOMEM;
        return NULL;
    }
    if (c->ncache == SQ_CACHE) {
        int lru = 0;
        for (int i = 1; i < c->ncache; i++)
            if (c->cache[i].used < c->cache[lru].used)
                lru = i;
        cache_drop(c, lru);
    }
    c->cache[c->ncache++] = (sq_stmt){t, n, stmt, c->tick};
    return stmt;
}

static int exec_simple(sq_conn *c, const char *sql)
{
    return sqlite3_exec(c->db, sql, NULL, NULL, NULL);
}

/* COMMIT or ROLLBACK: never interrupted by the deadline. */
static int exec_end(sq_conn *c, const char *sql)
{
    c->deadline_us = INT64_MAX;
    return sqlite3_exec(c->db, sql, NULL, NULL, NULL);
}

/* ------------------------------------------------------------ read */

/* Fill one view's results. 0, or -1 with st set. */
static int read_group(sq_conn *c, const char *project, ol_read_group *g, ld_arena *arena,
                      ld_status *st)
{
    ol_store_sql_clear(g);
    if (g->n_keys == 0)
        return 0;

    ld_buf tname = LD_BUF_INIT, sql = LD_BUF_INIT;
    ol_store_sql_ident(&tname, project, g->table, NULL);
    ol_store_sql_rows rows;
    int rc = -1;
    if (ol_store_sql_rows_init(&rows, g, arena) != 0)
        goto oom;

    for (size_t off = 0; off < g->n_keys; off += SQ_CHUNK) {
        size_t m = g->n_keys - off < SQ_CHUNK ? g->n_keys - off : SQ_CHUNK;
        int bucket = SQ_MIN_BUCKET;
        while ((size_t)bucket < m)
            bucket <<= 1;
        ld_buf_reset(&sql);
        ld_buf_printf(&sql,
                      "SELECT entity_key, feature_name, value, event_ts FROM %s WHERE "
                      "entity_key IN (?",
                      tname.data);
        for (int i = 1; i < bucket; i++)
            ld_buf_puts(&sql, ",?");
        ld_buf_puts(&sql, ")");
        int prc = SQLITE_OK;
        sqlite3_stmt *q = cache_get(c, tname.data, bucket, sql.data, &prc);
        if (!q) {
            if (no_such_table(c)) { /* Feast never applied it: nothing stored */
                rc = 0;
                goto out;
            }
            sq_fail(c, prc, st, "reading", tname.data);
            goto out;
        }
        for (size_t i = 0; i < m; i++) {
            const uint8_t *kp = g->key_lens[off + i] ? g->keys[off + i] : sq_empty;
            sqlite3_bind_blob(q, (int)i + 1, kp, (int)g->key_lens[off + i], SQLITE_STATIC);
        }
        for (int i = (int)m; i < bucket; i++)
            sqlite3_bind_null(q, i + 1);
        int src;
        while ((src = sqlite3_step(q)) == SQLITE_ROW) {
            const void *kb = sqlite3_column_blob(q, 0);
            size_t kl = (size_t)sqlite3_column_bytes(q, 0);
            const char *fname = (const char *)sqlite3_column_text(q, 1);
            size_t fl = (size_t)sqlite3_column_bytes(q, 1);
            const void *vb = sqlite3_column_blob(q, 2);
            size_t vl = (size_t)sqlite3_column_bytes(q, 2);
            if (ol_store_sql_rows_put(&rows, kb, kl, fname, fl, vb, vl, column_ts(q, 3)) != 0) {
                sqlite3_reset(q);
                sqlite3_clear_bindings(q);
                ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL,
                              "sqlite online store: response too large");
                goto out;
            }
        }
        sqlite3_reset(q);
        sqlite3_clear_bindings(q);
        if (src != SQLITE_DONE) {
            if (no_such_table(c)) { /* dropped since we prepared it */
                forget_table(c, tname.data);
                rc = 0;
                goto out;
            }
            sq_fail(c, src, st, "reading", tname.data);
            goto out;
        }
    }
    rc = 0;
    goto out;
oom:
    ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "sqlite online store: out of memory");
out:
    ol_store_sql_rows_free(&rows);
    ld_buf_free(&tname);
    ld_buf_free(&sql);
    return rc;
}

/* ol_store_pool_spec.read: every view in one read transaction. */
static void read_on(void *store, void *conn, ol_read *r, ld_status *st)
{
    sq_store *s = store;
    sq_conn *c = conn;
    conn_begin(c, r->deadline_us);
    /* one snapshot for every view of the request */
    int in_tx = exec_simple(c, "BEGIN") == SQLITE_OK;
    for (size_t i = 0; i < r->n_groups; i++)
        if (read_group(c, r->project, &r->groups[i], r->arena, st) != 0)
            break;
    if (in_tx && exec_end(c, "COMMIT") != SQLITE_OK)
        exec_end(c, "ROLLBACK");
    c->deadline_us = INT64_MAX;
    if (ld_status_ok(st))
        atomic_store(&s->healthy, 1);
}

/* ------------------------------------------------------------ write */

static const char create_fmt[] =
        /* Feast's text, byte for byte (two spaces before PRIMARY KEY, and
         * after "value_text TEXT," when value_num is absent) */
        "CREATE TABLE IF NOT EXISTS %s (entity_key BLOB, feature_name TEXT, value BLOB, "
        "value_text TEXT, %s vector_value BLOB, event_ts timestamp, created_ts timestamp,  "
        "PRIMARY KEY(entity_key, feature_name))";

/* Make sure the table exists (inside the write transaction) and learn
 * whether it has value_num. Returns the cached entry, or NULL (st set). */
static sq_table *ensure_table(sq_store *s, sq_conn *c, const char *project, const char *view,
                              const char *tname, ld_status *st)
{
    for (size_t i = 0; i < c->ntables; i++)
        if (strcmp(c->tables[i].name, tname) == 0)
            return &c->tables[i];

    ld_buf sql = LD_BUF_INIT;
    int has_text = 0, has_num = 0, exists = 0, rc;
    ld_buf_printf(&sql, "PRAGMA table_info(%s)", tname);
    sqlite3_stmt *q = NULL;
    rc = sqlite3_prepare_v2(c->db, sql.data, -1, &q, NULL);
    if (rc == SQLITE_OK) {
        while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
            const char *col = (const char *)sqlite3_column_text(q, 1);
            exists = 1;
            if (col && strcmp(col, "value_text") == 0)
                has_text = 1;
            if (col && strcmp(col, "value_num") == 0)
                has_num = 1;
        }
        if (rc == SQLITE_DONE)
            rc = SQLITE_OK;
    }
    sqlite3_finalize(q);
    if (rc == SQLITE_OK && !exists) {
        ld_buf_reset(&sql);
        ld_buf_printf(&sql, create_fmt, tname, s->value_num ? "value_num REAL," : "");
        rc = exec_simple(c, sql.data);
        if (rc == SQLITE_OK) {
            ld_buf_reset(&sql);
            ld_buf_puts(&sql, "CREATE INDEX IF NOT EXISTS ");
            ol_store_sql_ident(&sql, project, view, "_ek");
            ld_buf_printf(&sql, " ON %s (entity_key);", tname);
            rc = exec_simple(c, sql.data);
        }
        has_text = 1;
        has_num = s->value_num;
    } else if (rc == SQLITE_OK && !has_text) {
        /* a table from before value_text: Feast's apply adds it the same way */
        ld_buf_reset(&sql);
        ld_buf_printf(&sql, "ALTER TABLE %s ADD COLUMN \"value_text\" TEXT", tname);
        rc = exec_simple(c, sql.data);
    }
    ld_buf_free(&sql);
    if (rc != SQLITE_OK) {
        sq_fail(c, rc, st, "creating", tname);
        return NULL;
    }
    sq_table *nt = realloc(c->tables, (c->ntables + 1) * sizeof *nt);
    char *name = strdup(tname);
    if (!nt || !name) {
        if (nt)
            c->tables = nt;
        free(name);
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL,
                      "sqlite online store: out of memory");
        return NULL;
    }
    c->tables = nt;
    c->tables[c->ntables] = (sq_table){name, s->value_num && has_num};
    return &c->tables[c->ntables++];
}

static int bind_ts(sqlite3_stmt *q, int i, int64_t us)
{
    /* int(dt.timestamp()): seconds, the fraction truncated toward zero */
    return sqlite3_bind_int64(q, i, us / 1000000);
}

/* 0; 1 when the table vanished under a cached statement (retry); -1 (st). */
static int write_once(sq_store *s, sq_conn *c, ol_write *w, const char *tname, ld_status *st)
{
    int rc = exec_simple(c, "BEGIN IMMEDIATE");
    if (rc != SQLITE_OK)
        return sq_fail(c, rc, st, "writing", tname);
    sq_table *t = ensure_table(s, c, w->project, w->table, tname, st);
    if (!t) {
        exec_end(c, "ROLLBACK");
        return -1;
    }
    int vn = t->has_value_num;
    ld_buf sql = LD_BUF_INIT;
    ld_buf_printf(&sql,
                  "INSERT INTO %s (entity_key, feature_name, value, value_text%s, event_ts, "
                  "created_ts) VALUES (?, ?, ?, ?%s, ?, ?) ON CONFLICT(entity_key, feature_name) "
                  "DO UPDATE SET value = excluded.value, value_text = excluded.value_text%s, "
                  "event_ts = excluded.event_ts, created_ts = excluded.created_ts;",
                  tname, vn ? ", value_num" : "", vn ? ", ?" : "",
                  vn ? ", value_num = excluded.value_num" : "");
    sqlite3_stmt *q = cache_get(c, tname, vn ? -2 : -1, sql.data, &rc);
    ld_buf_free(&sql);
    if (!q) {
        int gone = no_such_table(c);
        if (!gone)
            sq_fail(c, rc, st, "writing", tname);
        exec_end(c, "ROLLBACK");
        forget_table(c, tname);
        return gone ? 1 : -1;
    }
    int col_ts = vn ? 6 : 5;
    for (size_t i = 0; i < w->n_rows; i++) {
        const ol_write_row *row = &w->rows[i];
        for (size_t f = 0; f < w->n_features; f++) {
            const uint8_t *vb = row->val[f] ? row->val[f] : sq_empty;
            size_t vl = row->val[f] ? row->val_len[f] : 0;
            ol_value_text tx;
            Feast__Types__Value *owned;
            if (ol_value_text_of(vb, vl, &tx, &owned) != 0) {
                ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                              "sqlite online store: the value of feature %s is not a valid "
                              "feast.types.Value",
                              w->features[f]);
                exec_end(c, "ROLLBACK");
                return -1;
            }
            sqlite3_bind_blob(q, 1, row->key_len ? row->key : sq_empty, (int)row->key_len,
                              SQLITE_STATIC);
            sqlite3_bind_text(q, 2, w->features[f], -1, SQLITE_STATIC);
            sqlite3_bind_blob(q, 3, vl ? vb : sq_empty, (int)vl, SQLITE_STATIC);
            if (tx.text)
                sqlite3_bind_text(q, 4, tx.text, (int)tx.len, SQLITE_TRANSIENT);
            else
                sqlite3_bind_null(q, 4);
            if (vn) {
                if (tx.has_num)
                    sqlite3_bind_double(q, 5, tx.num);
                else
                    sqlite3_bind_null(q, 5);
            }
            bind_ts(q, col_ts, row->event_ts_us);
            if (row->created_ts_us)
                bind_ts(q, col_ts + 1, row->created_ts_us);
            else
                sqlite3_bind_null(q, col_ts + 1);
            rc = sqlite3_step(q);
            sqlite3_reset(q);
            if (owned)
                protobuf_c_message_free_unpacked(&owned->base, NULL);
            if (rc != SQLITE_DONE) {
                int gone = no_such_table(c);
                if (!gone)
                    sq_fail(c, rc, st, "writing", tname);
                sqlite3_clear_bindings(q);
                exec_end(c, "ROLLBACK");
                forget_table(c, tname);
                return gone ? 1 : -1;
            }
        }
    }
    sqlite3_clear_bindings(q);
    rc = exec_end(c, "COMMIT");
    if (rc != SQLITE_OK) {
        sq_fail(c, rc, st, "committing to", tname);
        exec_end(c, "ROLLBACK");
        return -1;
    }
    return 0;
}

/* ol_store_pool_spec.write: all rows in one transaction. */
static void write_on(void *store, void *conn, ol_write *w, ld_status *st)
{
    sq_store *s = store;
    sq_conn *c = conn;
    conn_begin(c, w->deadline_us);
    ld_buf tname = LD_BUF_INIT;
    ol_store_sql_ident(&tname, w->project, w->table, NULL);
    int rc = 0;
    if (w->n_rows && w->n_features) {
        rc = write_once(s, c, w, tname.data, st);
        if (rc == 1) { /* the table was dropped under us: create it again */
            c->deadline_us = w->deadline_us;
            rc = write_once(s, c, w, tname.data, st);
        }
        if (rc == 1)
            ld_status_set(st, GRPC_STATUS_UNAVAILABLE, NULL,
                          "sqlite online store: table %s keeps disappearing", tname.data);
    }
    ld_buf_free(&tname);
    c->deadline_us = INT64_MAX;
    if (ld_status_ok(st))
        atomic_store(&s->healthy, 1);
}

/* ------------------------------------------------------------ ops */

static int sq_read(ol_store *base, ol_read *r, ld_status *st)
{
    return ol_store_pool_read(((sq_store *)base)->pool, r, st);
}

static int sq_write(ol_store *base, ol_write *w, ld_status *st)
{
    return ol_store_pool_write(((sq_store *)base)->pool, w, st);
}

static int sq_healthy(ol_store *base)
{
    return atomic_load(&((sq_store *)base)->healthy);
}

static void sq_free(ol_store *base)
{
    sq_store *s = (sq_store *)base;
    if (!s)
        return;
    ol_store_pool_free(s->pool);
    for (int i = 0; i < SQ_THREADS; i++)
        conn_close(&s->conns[i]);
    free(s->path);
    free(s);
}

static const ol_store_ops sq_ops = {
        .name = "sqlite",
        .read = sq_read,
        .write = sq_write,
        .healthy = sq_healthy,
        .free = sq_free,
};

ol_store *ol_store_sqlite_new(const ld_config *cfg, ld_status *st)
{
    sq_store *s = calloc(1, sizeof *s);
    if (!s) {
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        return NULL;
    }
    s->base.ops = &sq_ops;
    const char *p =
            cfg->online_store.sqlite.path ? cfg->online_store.sqlite.path : "data/online.db";
    s->path = ld_config_resolve_path(cfg, p);
    s->value_num = ol_store_sql_value_num(cfg);
    if (!s->path) {
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        goto fail;
    }
    if (mkdir_parents(s->path) != 0) {
        ld_status_set(st, GRPC_STATUS_UNAVAILABLE, NULL,
                      "sqlite online store: cannot create the directory of %s: %s", s->path,
                      strerror(errno));
        goto fail;
    }
    void *conns[SQ_THREADS];
    for (int i = 0; i < SQ_THREADS; i++) {
        s->conns[i].s = s;
        if (conn_open(s, &s->conns[i], st) != 0)
            goto fail;
        conns[i] = &s->conns[i];
    }
    const ol_store_pool_spec spec = {
            .what = "sqlite online store",
            .thread_name = "ld-sqlite",
            .threads = SQ_THREADS,
            .max_queued = SQ_QUEUE,
            .store = s,
            .conns = conns,
            .read = read_on,
            .write = write_on,
    };
    s->pool = ol_store_pool_new(&spec, st);
    if (!s->pool)
        goto fail;
    atomic_store(&s->healthy, 1);
    ld_info("sqlite online store: %s", s->path);
    return &s->base;
fail:
    sq_free(&s->base);
    return NULL;
}
