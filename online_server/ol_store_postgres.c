/* The PostgreSQL online store, in Feast's layout
 * (sdk/python/feast/infra/online_stores/postgres_online_store/postgres.py)
 * so Feast and larder can share one database.
 *
 * Layout: one table per feature view, "{project}_{view}" (quoted), in the
 * session's search_path ("<db_schema or user>,public", as Feast's
 * connection_utils sets it), created lazily on the first write as Feast's
 * `feast apply` does:
 *   (entity_key BYTEA, feature_name TEXT, value BYTEA, value_text TEXT NULL,
 *    [value_num DOUBLE PRECISION NULL,] vector_value BYTEA NULL,
 *    event_ts TIMESTAMPTZ, created_ts TIMESTAMPTZ,
 *    PRIMARY KEY(entity_key, feature_name))
 * plus index "<t>_ek", and the schema (CREATE SCHEMA ... AUTHORIZATION
 * user) when it is missing. value_num only with
 * online_store.enable_openai_compatible_store. Not created: Feast's GIN
 * full-text index "<t>_fts_idx" (only for its text search; it needs the
 * view's schema, which a write does not carry) and pgvector columns.
 *
 * Timestamps (feast-protocols.md §6 q7), decided: we send and receive
 * TIMESTAMPTZ in binary (int64 microseconds since 2000-01-01 UTC), i.e. the
 * exact instant, independent of the session TimeZone. Feast hands psycopg
 * naive UTC datetimes, which psycopg 3 sends as `timestamp` and the server
 * converts with the session TimeZone: identical to ours when that is UTC
 * (the usual server default), shifted by the offset otherwise. Reading
 * TIMESTAMPTZ back is exact for anything Feast stored.
 *
 * value_text / value_num: Feast's helpers.extract_text_and_num (string as
 * is; ints as decimal; float/double as Python's repr of the double; bool
 * "True"/"False"; else NULL). vector_value is written NULL, as Feast does
 * without vector_enabled.
 *
 * Reads: every view of a request in ONE round trip, in libpq pipeline mode:
 * per view "SELECT entity_key, feature_name, value, event_ts FROM <t> WHERE
 * entity_key = ANY($1) AND feature_name = ANY($2)" (bytea[] and text[]
 * parameters in binary array format, binary results), each followed by a
 * Sync so a missing table (42P01, read as not found) fails only its own
 * query. The feature filter is Feast's: found = the key has a row for one
 * of the requested features; event_ts = the last such row seen.
 *
 * Writes: one pipelined batch: an INSERT ... ON CONFLICT (entity_key,
 * feature_name) DO UPDATE per (row, feature) through a per-connection
 * prepared statement, no timestamp check (last writer wins, as Feast), all
 * between two Syncs: one implicit transaction, all or nothing, committed at
 * the Sync before we answer.
 *
 * Threads: callers never block. read/write queue a job on a store-owned
 * ol_store_pool of max_conn threads (1..64); a job borrows one of as many
 * connections (opened lazily, the first one at start-up). Pool full:
 * RESOURCE_EXHAUSTED. A dead connection answers UNAVAILABLE and is
 * reconnected on the next request (a request that finds its connection
 * broken by a server restart reconnects and retries once: reads and
 * upserts are idempotent). Deadlines: a job past its deadline is not run
 * (DEADLINE_EXCEEDED), and statement_timeout is set to the time left. The
 * password goes to libpq only; libpq's messages never contain it. */
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ld_buf.h"
#include "ld_log.h"
#include "ld_time.h"
#include "ld_value.h"
#include "ol_store.h"
#include "ol_store_pool.h"
#include "ol_store_sql.h"
#include "ol_values.h"

#define PG_MAX_THREADS 64
#define PG_QUEUE       4096
#define PG_EPOCH_US    INT64_C(946684800000000) /* 2000-01-01 in unix microseconds */

/* type oids */
#define OID_BYTEA       17
#define OID_TEXT        25
#define OID_FLOAT8      701
#define OID_BYTEA_ARRAY 1001
#define OID_TEXT_ARRAY  1009
#define OID_TIMESTAMPTZ 1184

typedef struct pg_table {
    char *name; /* quoted */
    int has_value_num;
    int prepared;
    char stmt[24];
} pg_table;

typedef struct pg_conn {
    PGconn *c;
    int bad; /* reconnect before the next use */
    pg_table *tables;
    size_t ntables;
    unsigned next_stmt;
    int64_t timeout_ms; /* statement_timeout we set; -1: the session default */
} pg_conn;

typedef struct pg_store {
    ol_store base;
    const char **keys; /* conninfo, NULL-terminated */
    char **vals;
    char *search_path;
    char *schema, *user;
    char *where; /* "host:port/database" for messages */
    int value_num;
    ol_store_pool *pool;
    pg_conn *conns;
    int nconns;
    atomic_int healthy;
} pg_store;

static const uint8_t pg_empty[1];

/* ------------------------------------------------------------ helpers */

static void put_be32(ld_buf *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    ld_buf_append(b, x, 4);
}

static void be64(uint8_t out[8], uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        out[i] = (uint8_t)v;
}

static int64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return (int64_t)v;
}

/* A one-dimensional array in PostgreSQL's binary format. */
static void put_array(ld_buf *b, uint32_t elem_oid, const uint8_t *const *p, const size_t *len,
                      size_t n)
{
    put_be32(b, 1); /* ndim */
    put_be32(b, 0); /* no NULLs */
    put_be32(b, elem_oid);
    put_be32(b, (uint32_t)n);
    put_be32(b, 1); /* lower bound */
    for (size_t i = 0; i < n; i++) {
        size_t l = len ? len[i] : strlen((const char *)p[i]);
        put_be32(b, (uint32_t)l);
        ld_buf_append(b, p[i], l);
    }
}

/* libpq's or the server's message on one line. */
static void pg_message(PGconn *c, const PGresult *res, char *out, size_t n)
{
    const char *m = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (!m || !*m)
        m = c ? PQerrorMessage(c) : NULL;
    snprintf(out, n, "%s", m && *m ? m : "unknown error");
    size_t j = 0;
    for (size_t i = 0; out[i]; i++) {
        char ch = out[i] == '\n' || out[i] == '\t' || out[i] == '\r' ? ' ' : out[i];
        if (ch != ' ' || (j && out[j - 1] != ' '))
            out[j++] = ch;
    }
    while (j && out[j - 1] == ' ')
        j--;
    out[j] = '\0';
}

static const char *sqlstate(const PGresult *res)
{
    const char *s = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    return s ? s : "";
}

/* Status for a failed result. */
static int pg_fail(pg_store *s, pg_conn *pc, const PGresult *res, ld_status *st, const char *what,
                   const char *table)
{
    char msg[640];
    pg_message(pc->c, res, msg, sizeof msg);
    const char *state = sqlstate(res);
    grpc_status_code code = GRPC_STATUS_INTERNAL;
    if (strcmp(state, "57014") == 0) /* statement_timeout */
        return ld_status_set(st, GRPC_STATUS_DEADLINE_EXCEEDED, NULL,
                             "postgres online store: %s %s: deadline exceeded", what, table);
    if (!pc->c || PQstatus(pc->c) != CONNECTION_OK || !*state) {
        pc->bad = 1;
        atomic_store(&s->healthy, 0);
        code = GRPC_STATUS_UNAVAILABLE;
    } else if (strncmp(state, "22", 2) == 0) {
        /* data exception: e.g. a string_val that is not UTF-8 */
        code = GRPC_STATUS_INVALID_ARGUMENT;
    } else if (strncmp(state, "08", 2) == 0 || strncmp(state, "40", 2) == 0 ||
               strncmp(state, "53", 2) == 0 || strncmp(state, "57", 2) == 0 ||
               strcmp(state, "55P03") == 0) {
        code = GRPC_STATUS_UNAVAILABLE;
    }
    return ld_status_set(st, code, NULL, "postgres online store: %s %s: %s%s%s%s", what, table, msg,
                         *state ? " (SQLSTATE " : "", state, *state ? ")" : "");
}

/* ------------------------------------------------------------ connections */

static void conn_reset(pg_conn *pc)
{
    if (pc->c)
        PQfinish(pc->c);
    pc->c = NULL;
    for (size_t i = 0; i < pc->ntables; i++)
        free(pc->tables[i].name);
    free(pc->tables);
    pc->tables = NULL;
    pc->ntables = 0;
    pc->timeout_ms = -1;
    pc->bad = 0;
}

/* Server notices ("relation ... already exists, skipping") go to the debug
 * log, not to libpq's default of stderr. */
static void notice_cb(void *arg, const char *message)
{
    (void)arg;
    ld_debug("postgres online store: %.*s", (int)strcspn(message, "\n"), message);
}

/* Connected and ready, (re)connecting if needed. 0, or -1 UNAVAILABLE. */
static int ensure_conn(pg_store *s, pg_conn *pc, ld_status *st)
{
    if (pc->c && !pc->bad && PQstatus(pc->c) == CONNECTION_OK)
        return 0;
    int again = pc->c != NULL;
    conn_reset(pc);
    pc->c = PQconnectdbParams(s->keys, (const char *const *)s->vals, 0);
    if (!pc->c)
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL,
                             "postgres online store: out of memory");
    if (PQstatus(pc->c) != CONNECTION_OK) {
        char msg[640];
        pg_message(pc->c, NULL, msg, sizeof msg);
        conn_reset(pc);
        atomic_store(&s->healthy, 0);
        return ld_status_set(st, GRPC_STATUS_UNAVAILABLE, NULL,
                             "postgres online store: cannot connect to %s: %s", s->where, msg);
    }
    PQsetNoticeProcessor(pc->c, notice_cb, NULL);
    const char *sp[1] = {s->search_path};
    PGresult *res = PQexecParams(pc->c, "SELECT set_config('search_path', $1, false)", 1, NULL, sp,
                                 NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        pg_fail(s, pc, res, st, "setting search_path on", s->where);
        PQclear(res);
        conn_reset(pc);
        return -1;
    }
    PQclear(res);
    if (again)
        ld_info("postgres online store: reconnected to %s", s->where);
    atomic_store(&s->healthy, 1);
    return 0;
}

/* --------------------------------------------------- pipeline plumbing */

/* The result of the next query in the pipeline (followed by a NULL, which
 * is consumed). NULL when the connection broke. */
static PGresult *pipe_result(PGconn *c)
{
    PGresult *res = PQgetResult(c);
    if (!res || PQstatus(c) != CONNECTION_OK)
        return res;
    PGresult *more;
    while ((more = PQgetResult(c)) != NULL) {
        PQclear(more);
        if (PQstatus(c) != CONNECTION_OK)
            break;
    }
    return res;
}

/* The Sync marker that follows a segment; -1 when something else came. */
static int pipe_sync(PGconn *c)
{
    PGresult *res = PQgetResult(c);
    int ok = res && PQresultStatus(res) == PGRES_PIPELINE_SYNC;
    PQclear(res);
    return ok ? 0 : -1;
}

/* Milliseconds left before the deadline, 0 for none, -1 when passed. */
static int64_t time_left_ms(int64_t deadline_us)
{
    if (deadline_us == INT64_MAX)
        return 0;
    int64_t left = deadline_us - ld_mono_us();
    if (left <= 0)
        return -1;
    return (left + 999) / 1000;
}

/* Queue a statement_timeout change (own segment) if it differs from the
 * connection's. 1 when queued, 0 when not needed, -1 on a send failure. */
static int send_timeout(pg_conn *pc, int64_t ms)
{
    if (ms == 0 ? pc->timeout_ms == -1 : ms == pc->timeout_ms)
        return 0;
    int ok;
    if (ms == 0) {
        ok = PQsendQueryParams(pc->c, "RESET statement_timeout", 0, NULL, NULL, NULL, NULL, 0);
    } else {
        char v[24];
        snprintf(v, sizeof v, "%" PRId64, ms);
        const char *vals[1] = {v};
        ok = PQsendQueryParams(pc->c, "SELECT set_config('statement_timeout', $1, false)", 1, NULL,
                               vals, NULL, NULL, 0);
    }
    if (!ok || !PQpipelineSync(pc->c))
        return -1;
    pc->timeout_ms = ms ? ms : -1;
    return 1;
}

/* Read what send_timeout queued. 0, or -1 (connection broke). */
static int recv_timeout(pg_store *s, pg_conn *pc, ld_status *st)
{
    PGresult *res = pipe_result(pc->c);
    if (!res) {
        pg_fail(s, pc, NULL, st, "setting statement_timeout on", s->where);
        return -1;
    }
    ExecStatusType rs = PQresultStatus(res);
    if (rs != PGRES_TUPLES_OK && rs != PGRES_COMMAND_OK) {
        pg_fail(s, pc, res, st, "setting statement_timeout on", s->where);
        pc->timeout_ms = -2; /* unknown: set it again next time */
    }
    PQclear(res);
    if (pipe_sync(pc->c) != 0) {
        pc->bad = 1;
        return -1;
    }
    return 0;
}

/* Leave pipeline mode; a connection that cannot is replaced. */
static void pipe_end(pg_conn *pc)
{
    if (pc->c && PQpipelineStatus(pc->c) != PQ_PIPELINE_OFF && !PQexitPipelineMode(pc->c))
        pc->bad = 1;
}

/* ------------------------------------------------------------ read */

/* Rows of one view's result into its arrays. */
static int fill_group(ol_read_group *g, const PGresult *res, ld_arena *arena, ld_status *st)
{
    ol_store_sql_rows rows;
    int rc = 0;
    if (ol_store_sql_rows_init(&rows, g, arena) != 0) {
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL,
                      "postgres online store: out of memory");
        rc = -1;
    }
    int n = rc == 0 ? PQntuples(res) : 0;
    for (int i = 0; i < n; i++) {
        int64_t ts = 0;
        if (!PQgetisnull(res, i, 3) && PQgetlength(res, i, 3) == 8) {
            int64_t pg = get_be64((const uint8_t *)PQgetvalue(res, i, 3));
            if (pg > INT64_MIN + PG_EPOCH_US && pg < INT64_MAX - PG_EPOCH_US) /* not +-infinity */
                ts = pg + PG_EPOCH_US;
        }
        if (ol_store_sql_rows_put(&rows, PQgetvalue(res, i, 0), (size_t)PQgetlength(res, i, 0),
                                  PQgetvalue(res, i, 1), (size_t)PQgetlength(res, i, 1),
                                  PQgetvalue(res, i, 2), (size_t)PQgetlength(res, i, 2), ts) != 0) {
            ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL,
                          "postgres online store: response too large");
            rc = -1;
            break;
        }
    }
    ol_store_sql_rows_free(&rows);
    return rc;
}

/* 0 (st may still carry a per-view error), -1 (st set), 1 when the
 * connection broke (st set; the caller may retry). */
static int read_once(pg_store *s, pg_conn *pc, ol_read *r, ld_status *st)
{
    if (ensure_conn(s, pc, st) != 0)
        return -1;
    int64_t ms = time_left_ms(r->deadline_us);
    if (ms < 0)
        return ld_status_set(st, GRPC_STATUS_DEADLINE_EXCEEDED, NULL,
                             "postgres online store: deadline exceeded before the read");
    PGconn *c = pc->c;
    if (!PQenterPipelineMode(c)) {
        pc->bad = 1;
        return ld_status_set(st, GRPC_STATUS_UNAVAILABLE, NULL,
                             "postgres online store: cannot enter pipeline mode");
    }
    uint8_t *sent = calloc(r->n_groups ? r->n_groups : 1, 1);
    ld_buf sql = LD_BUF_INIT, karr = LD_BUF_INIT, farr = LD_BUF_INIT;
    int broke = 0, rc = 0;
    int tq = sent ? send_timeout(pc, ms) : 0;
    if (!sent) {
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL,
                      "postgres online store: out of memory");
        rc = -1;
        goto out;
    }
    broke = tq < 0;
    for (size_t i = 0; i < r->n_groups && !broke; i++) {
        ol_read_group *g = &r->groups[i];
        ol_store_sql_clear(g);
        if (g->n_keys == 0)
            continue;
        ld_buf_reset(&sql);
        ld_buf_reset(&karr);
        ld_buf_reset(&farr);
        ld_buf_puts(&sql, "SELECT entity_key, feature_name, value, event_ts FROM ");
        ol_store_sql_ident(&sql, r->project, g->table, NULL);
        ld_buf_puts(&sql, " WHERE entity_key = ANY($1)");
        put_array(&karr, OID_BYTEA, g->keys, g->key_lens, g->n_keys);
        int np = 1;
        if (g->n_features) { /* Feast filters on the requested features */
            ld_buf_puts(&sql, " AND feature_name = ANY($2)");
            put_array(&farr, OID_TEXT, (const uint8_t *const *)g->features, NULL, g->n_features);
            np = 2;
        }
        const Oid types[2] = {OID_BYTEA_ARRAY, OID_TEXT_ARRAY};
        const char *vals[2] = {karr.data, farr.data};
        const int lens[2] = {(int)karr.len, (int)farr.len};
        const int fmts[2] = {1, 1};
        if (!PQsendQueryParams(c, sql.data, np, types, vals, lens, fmts, 1) || !PQpipelineSync(c)) {
            broke = 1;
            break;
        }
        sent[i] = 1;
    }
    if (!broke && tq == 1 && recv_timeout(s, pc, st) != 0)
        broke = 1;
    for (size_t i = 0; i < r->n_groups && !broke; i++) {
        if (!sent[i])
            continue;
        ol_read_group *g = &r->groups[i];
        ld_buf_reset(&sql);
        ol_store_sql_ident(&sql, r->project, g->table, NULL);
        PGresult *res = pipe_result(c);
        if (!res || PQstatus(c) != CONNECTION_OK) {
            PQclear(res);
            broke = 1;
            break;
        }
        if (PQresultStatus(res) == PGRES_TUPLES_OK) {
            if (ld_status_ok(st))
                fill_group(g, res, r->arena, st);
        } else if (strcmp(sqlstate(res), "42P01") != 0 && ld_status_ok(st)) {
            /* 42P01: no such table, i.e. never applied: not found */
            pg_fail(s, pc, res, st, "reading", sql.data);
        }
        PQclear(res);
        if (pipe_sync(c) != 0) {
            broke = 1;
            break;
        }
    }
out:
    if (broke) {
        ld_status_clear(st);
        pg_fail(s, pc, NULL, st, "reading from", s->where);
        pc->bad = 1;
        rc = 1;
    }
    pipe_end(pc);
    free(sent);
    ld_buf_free(&sql);
    ld_buf_free(&karr);
    ld_buf_free(&farr);
    return rc;
}

/* ol_store_pool_spec.read: one pipelined round trip, retried once on a
 * connection that broke since its last use. */
static void read_on(void *store, void *conn, ol_read *r, ld_status *st)
{
    pg_store *s = store;
    pg_conn *pc = conn;
    int was_open = pc->c != NULL && !pc->bad;
    int rc = read_once(s, pc, r, st);
    if (rc == 1 && was_open) { /* e.g. the server restarted since the last use */
        ld_warn("%s; reconnecting", st->msg);
        ld_status_clear(st);
        read_once(s, pc, r, st);
    }
}

/* ------------------------------------------------------------ write */

static void forget_table(pg_conn *pc, const char *name)
{
    for (size_t i = 0; i < pc->ntables; i++) {
        if (strcmp(pc->tables[i].name, name) == 0) {
            free(pc->tables[i].name);
            pc->tables[i] = pc->tables[--pc->ntables];
            return;
        }
    }
}

static pg_table *find_table(pg_conn *pc, const char *name)
{
    for (size_t i = 0; i < pc->ntables; i++)
        if (strcmp(pc->tables[i].name, name) == 0)
            return &pc->tables[i];
    return NULL;
}

/* Set statement_timeout now, outside a batch: before the DDL of a table's
 * first write, which must not run under the previous request's timeout.
 * 0, or -1 when the connection broke (st set). */
static int set_timeout_now(pg_store *s, pg_conn *pc, int64_t ms, ld_status *st)
{
    if (!PQenterPipelineMode(pc->c)) {
        pc->bad = 1;
        return ld_status_set(st, GRPC_STATUS_UNAVAILABLE, NULL,
                             "postgres online store: cannot enter pipeline mode");
    }
    int tq = send_timeout(pc, ms), rc = 0;
    if (tq < 0 || (tq == 1 && recv_timeout(s, pc, st) != 0)) {
        if (ld_status_ok(st))
            pg_fail(s, pc, NULL, st, "setting statement_timeout on", s->where);
        pc->bad = 1;
        rc = -1;
    }
    pipe_end(pc);
    return rc;
}

/* Create the table (and schema) if missing and learn its columns; outside
 * the write's pipeline, once per connection and table. NULL with st set. */
static pg_table *ensure_table(pg_store *s, pg_conn *pc, const char *project, const char *view,
                              const char *tname, ld_status *st)
{
    pg_table *known = find_table(pc, tname);
    if (known)
        return known;
    static const char probe[] =
            "SELECT to_regclass($1) IS NOT NULL, "
            "EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) "
            "AND attname = 'value_text' AND attnum > 0 AND NOT attisdropped), "
            "EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) "
            "AND attname = 'value_num' AND attnum > 0 AND NOT attisdropped), "
            "EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $2)";
    const char *vals[2] = {tname, s->schema};
    int exists = 0, has_text = 0, has_num = 0;
    for (int attempt = 0;; attempt++) {
        PGresult *res = PQexecParams(pc->c, probe, 2, NULL, vals, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
            pg_fail(s, pc, res, st, "looking up", tname);
            PQclear(res);
            return NULL;
        }
        exists = PQgetvalue(res, 0, 0)[0] == 't';
        has_text = PQgetvalue(res, 0, 1)[0] == 't';
        has_num = PQgetvalue(res, 0, 2)[0] == 't';
        int has_schema = PQgetvalue(res, 0, 3)[0] == 't';
        PQclear(res);
        ld_buf ddl = LD_BUF_INIT;
        if (!exists) {
            if (!has_schema && strcmp(s->schema, "public") != 0) {
                ld_buf_puts(&ddl, "CREATE SCHEMA IF NOT EXISTS ");
                ol_store_sql_ident(&ddl, s->schema, NULL, NULL);
                ld_buf_puts(&ddl, " AUTHORIZATION ");
                ol_store_sql_ident(&ddl, s->user, NULL, NULL);
                ld_buf_puts(&ddl, "; ");
            }
            ld_buf_printf(&ddl,
                          "CREATE TABLE IF NOT EXISTS %s (entity_key BYTEA, feature_name TEXT, "
                          "value BYTEA, value_text TEXT NULL, %svector_value BYTEA NULL, "
                          "event_ts TIMESTAMPTZ, created_ts TIMESTAMPTZ, "
                          "PRIMARY KEY(entity_key, feature_name)); "
                          "CREATE INDEX IF NOT EXISTS ",
                          tname, s->value_num ? "value_num DOUBLE PRECISION NULL, " : "");
            ol_store_sql_ident(&ddl, project, view, "_ek");
            ld_buf_printf(&ddl, " ON %s (entity_key);", tname);
        } else if (!has_text) {
            /* a table from before value_text: Feast's apply adds it too */
            ld_buf_printf(&ddl, "ALTER TABLE %s ADD COLUMN IF NOT EXISTS value_text TEXT NULL",
                          tname);
        }
        if (!ddl.len)
            break;
        res = PQexec(pc->c, ddl.data);
        ld_buf_free(&ddl);
        ExecStatusType rs = PQresultStatus(res);
        const char *state = sqlstate(res);
        int race = strcmp(state, "23505") == 0 || strcmp(state, "42P07") == 0 ||
                   strcmp(state, "42P06") == 0;
        if (rs == PGRES_COMMAND_OK) {
            PQclear(res);
            if (!exists) {
                has_text = 1;
                has_num = s->value_num;
            }
            break;
        }
        if (race && attempt == 0) { /* another connection created it meanwhile */
            PQclear(res);
            continue;
        }
        pg_fail(s, pc, res, st, "creating", tname);
        PQclear(res);
        return NULL;
    }
    pg_table *nt = realloc(pc->tables, (pc->ntables + 1) * sizeof *nt);
    char *name = strdup(tname);
    if (!nt || !name) {
        if (nt)
            pc->tables = nt;
        free(name);
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL,
                      "postgres online store: out of memory");
        return NULL;
    }
    pc->tables = nt;
    pg_table *t = &pc->tables[pc->ntables++];
    *t = (pg_table){.name = name, .has_value_num = s->value_num && has_num};
    snprintf(t->stmt, sizeof t->stmt, "larder_w%u", pc->next_stmt++);
    return t;
}

/* value_text / value_num of every cell of a write, computed before anything
 * is sent so that an invalid Value refuses the whole write. */
typedef struct cell_text {
    size_t off; /* into the text buffer */
    int len;    /* -1: NULL */
    int has_num;
    double num;
} cell_text;

static int compute_texts(const ol_write *w, cell_text *cells, ld_buf *text, ld_status *st)
{
    for (size_t i = 0; i < w->n_rows; i++) {
        const ol_write_row *row = &w->rows[i];
        for (size_t f = 0; f < w->n_features; f++) {
            ol_value_text tx;
            Feast__Types__Value *owned;
            if (ol_value_text_of(row->val[f], row->val[f] ? row->val_len[f] : 0, &tx, &owned) != 0)
                return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                                     "postgres online store: the value of feature %s is not a "
                                     "valid feast.types.Value",
                                     w->features[f]);
            cell_text *ct = &cells[i * w->n_features + f];
            *ct = (cell_text){text->len, tx.text ? (int)tx.len : -1, tx.has_num, tx.num};
            if (tx.text)
                ld_buf_append(text, tx.text, tx.len);
            if (owned)
                protobuf_c_message_free_unpacked(&owned->base, NULL);
        }
    }
    return 0;
}

/* 0, -1 (st set), 1 when the connection broke or the table vanished (st
 * set; the caller may retry: an upsert can be repeated). */
static int write_once(pg_store *s, pg_conn *pc, const ol_write *w, const char *tname,
                      const cell_text *cells, const char *text, ld_status *st)
{
    if (ensure_conn(s, pc, st) != 0)
        return -1;
    int64_t ms = time_left_ms(w->deadline_us);
    if (ms < 0)
        return ld_status_set(st, GRPC_STATUS_DEADLINE_EXCEEDED, NULL,
                             "postgres online store: deadline exceeded before the write");
    if (!find_table(pc, tname) && set_timeout_now(s, pc, ms, st) != 0)
        return 1;
    pg_table *t = ensure_table(s, pc, w->project, w->table, tname, st);
    if (!t)
        return pc->bad ? 1 : -1;
    PGconn *c = pc->c;
    if (!PQenterPipelineMode(c)) {
        pc->bad = 1;
        return ld_status_set(st, GRPC_STATUS_UNAVAILABLE, NULL,
                             "postgres online store: cannot enter pipeline mode");
    }
    int vn = t->has_value_num;
    int np = vn ? 7 : 6;
    int tq = send_timeout(pc, ms);
    int broke = tq < 0, prepared_now = 0, gone = 0;
    size_t nsent = 0;
    if (!broke && !t->prepared) {
        ld_buf sql = LD_BUF_INIT;
        ld_buf_printf(&sql,
                      "INSERT INTO %s (entity_key, feature_name, value, value_text%s, "
                      "vector_value, event_ts, created_ts) VALUES ($1, $2, $3, $4%s, NULL, "
                      "$%d, $%d) ON CONFLICT (entity_key, feature_name) DO UPDATE SET "
                      "value = EXCLUDED.value, value_text = EXCLUDED.value_text%s, "
                      "vector_value = EXCLUDED.vector_value, event_ts = EXCLUDED.event_ts, "
                      "created_ts = EXCLUDED.created_ts",
                      tname, vn ? ", value_num" : "", vn ? ", $5" : "", np - 1, np,
                      vn ? ", value_num = EXCLUDED.value_num" : "");
        Oid types[7] = {OID_BYTEA, OID_TEXT, OID_BYTEA, OID_TEXT, OID_FLOAT8, 0, 0};
        types[np - 2] = types[np - 1] = OID_TIMESTAMPTZ;
        broke = !PQsendPrepare(c, t->stmt, sql.data, np, types);
        ld_buf_free(&sql);
        prepared_now = 1;
    }
    static const int fmts[7] = {1, 1, 1, 1, 1, 1, 1};
    for (size_t i = 0; i < w->n_rows && !broke; i++) {
        const ol_write_row *row = &w->rows[i];
        uint8_t ev[8], cr[8];
        be64(ev, (uint64_t)(row->event_ts_us - PG_EPOCH_US));
        be64(cr, (uint64_t)(row->created_ts_us - PG_EPOCH_US));
        for (size_t f = 0; f < w->n_features; f++) {
            const cell_text *ct = &cells[i * w->n_features + f];
            uint8_t num[8];
            uint64_t bits;
            memcpy(&bits, &ct->num, 8);
            be64(num, bits);
            const char *vals[7];
            int lens[7], p = 0;
            vals[p] = (const char *)(row->key_len ? row->key : pg_empty);
            lens[p++] = (int)row->key_len;
            vals[p] = w->features[f];
            lens[p++] = (int)strlen(w->features[f]);
            /* a NULL Value pointer is an unset Value: empty bytes, not SQL NULL */
            vals[p] = (const char *)(row->val[f] && row->val_len[f] ? row->val[f] : pg_empty);
            lens[p++] = row->val[f] ? (int)row->val_len[f] : 0;
            vals[p] = ct->len >= 0 ? text + ct->off : NULL;
            lens[p++] = ct->len >= 0 ? ct->len : 0;
            if (vn) {
                vals[p] = ct->has_num ? (const char *)num : NULL;
                lens[p++] = 8;
            }
            vals[p] = (const char *)ev;
            lens[p++] = 8;
            vals[p] = row->created_ts_us ? (const char *)cr : NULL;
            lens[p++] = 8;
            if (!PQsendQueryPrepared(c, t->stmt, np, vals, lens, fmts, 0)) {
                broke = 1;
                break;
            }
            nsent++;
        }
    }
    /* everything up to this Sync is one implicit transaction */
    if (!broke && !PQpipelineSync(c))
        broke = 1;
    if (!broke && tq == 1 && recv_timeout(s, pc, st) != 0)
        broke = 1;
    if (!broke && prepared_now) {
        PGresult *res = pipe_result(c);
        if (!res || PQstatus(c) != CONNECTION_OK) {
            broke = 1;
        } else if (PQresultStatus(res) == PGRES_COMMAND_OK) {
            t->prepared = 1;
        } else if (ld_status_ok(st)) {
            gone = strcmp(sqlstate(res), "42P01") == 0;
            pg_fail(s, pc, res, st, "writing", tname);
        }
        PQclear(res);
    }
    for (size_t k = 0; k < nsent && !broke; k++) {
        PGresult *res = pipe_result(c);
        if (!res || PQstatus(c) != CONNECTION_OK) {
            PQclear(res);
            broke = 1;
            break;
        }
        ExecStatusType rs = PQresultStatus(res);
        if (rs != PGRES_COMMAND_OK && rs != PGRES_PIPELINE_ABORTED && ld_status_ok(st)) {
            gone = strcmp(sqlstate(res), "42P01") == 0;
            pg_fail(s, pc, res, st, "writing", tname);
        }
        PQclear(res);
    }
    if (!broke && pipe_sync(c) != 0)
        broke = 1;
    if (broke) {
        ld_status_clear(st);
        pg_fail(s, pc, NULL, st, "writing to", s->where);
        pc->bad = 1;
        return 1;
    }
    pipe_end(pc);
    if (gone) { /* dropped since we looked: create it again */
        forget_table(pc, tname);
        return 1;
    }
    return ld_status_ok(st) ? 0 : -1;
}

/* ol_store_pool_spec.write: one pipelined batch, retried once when the
 * connection broke or the table vanished. */
static void write_on(void *store, void *conn, ol_write *w, ld_status *st)
{
    pg_store *s = store;
    pg_conn *pc = conn;
    size_t ncells = w->n_rows * w->n_features;
    if (ncells == 0)
        return;
    cell_text *cells = malloc(ncells * sizeof *cells);
    ld_buf text = LD_BUF_INIT, tname = LD_BUF_INIT;
    ol_store_sql_ident(&tname, w->project, w->table, NULL);
    ld_buf_putc(&text, '\0'); /* offsets stay valid; data never NULL */
    if (!cells) {
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL,
                      "postgres online store: out of memory");
    } else if (compute_texts(w, cells, &text, st) == 0) {
        int was_open = pc->c != NULL && !pc->bad;
        int rc = write_once(s, pc, w, tname.data, cells, text.data, st);
        if (rc == 1 && (was_open || !pc->bad)) {
            ld_warn("%s; retrying", st->msg);
            ld_status_clear(st);
            write_once(s, pc, w, tname.data, cells, text.data, st);
        }
    }
    free(cells);
    ld_buf_free(&text);
    ld_buf_free(&tname);
}

/* ------------------------------------------------------------ ops */

static int pg_read(ol_store *base, ol_read *r, ld_status *st)
{
    return ol_store_pool_read(((pg_store *)base)->pool, r, st);
}

static int pg_write(ol_store *base, ol_write *w, ld_status *st)
{
    return ol_store_pool_write(((pg_store *)base)->pool, w, st);
}

static int pg_healthy(ol_store *base)
{
    return atomic_load(&((pg_store *)base)->healthy);
}

static void pg_free(ol_store *base)
{
    pg_store *s = (pg_store *)base;
    if (!s)
        return;
    ol_store_pool_free(s->pool);
    for (int i = 0; i < s->nconns; i++)
        conn_reset(&s->conns[i]);
    free(s->conns);
    if (s->keys && s->vals)
        for (int i = 0; s->keys[i]; i++)
            free(s->vals[i]);
    free(s->keys);
    free(s->vals);
    free(s->search_path);
    free(s->schema);
    free(s->user);
    free(s->where);
    free(s);
}

static const ol_store_ops pg_ops = {
        .name = "postgres",
        .read = pg_read,
        .write = pg_write,
        .healthy = pg_healthy,
        .free = pg_free,
};

static char *strip_dup(const char *v)
{
    if (!v)
        return strdup("");
    while (*v == ' ' || *v == '\t' || *v == '\n')
        v++;
    size_t n = strlen(v);
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t' || v[n - 1] == '\n'))
        n--;
    return strndup(v, n);
}

ol_store *ol_store_postgres_new(const ld_config *cfg, ld_status *st)
{
    const ld_postgres_config *pg = &cfg->online_store.postgres;
    pg_store *s = calloc(1, sizeof *s);
    if (!s) {
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        return NULL;
    }
    s->base.ops = &pg_ops;
    s->value_num = ol_store_sql_value_num(cfg);

    /* conninfo: Feast's keys, plus ours; password only ever handed to libpq */
    s->keys = calloc(LD_PG_MAX_PARAMS + 1, sizeof *s->keys);
    s->vals = calloc(LD_PG_MAX_PARAMS + 1, sizeof *s->vals);
    if (!s->keys || !s->vals || ld_postgres_params(pg, "larder-online", s->keys, s->vals) < 0)
        goto oom;
    /* Feast: search_path = (db_schema or user).strip() [+ ",public"] */
    s->schema = strip_dup(pg->db_schema && *pg->db_schema ? pg->db_schema : pg->user);
    s->user = strdup(pg->user ? pg->user : "");
    if (!s->schema || !s->user)
        goto oom;
    if (asprintf(&s->search_path, "%s%s", s->schema,
                 strcmp(s->schema, "public") == 0 ? "" : ",public") < 0) {
        s->search_path = NULL;
        goto oom;
    }
    if (asprintf(&s->where, "%s:%d/%s", pg->host ? pg->host : "(default host)", pg->port,
                 pg->database ? pg->database : "(default database)") < 0) {
        s->where = NULL;
        goto oom;
    }

    s->nconns = pg->max_conn < 1                ? 1
                : pg->max_conn > PG_MAX_THREADS ? PG_MAX_THREADS
                                                : pg->max_conn;
    s->conns = calloc((size_t)s->nconns, sizeof *s->conns);
    if (!s->conns)
        goto oom;
    for (int i = 0; i < s->nconns; i++)
        s->conns[i].timeout_ms = -1;
    /* one connection now, to report a bad configuration early; the store
     * is still created (unhealthy) and reconnects on each request */
    ld_status cst = LD_STATUS_INIT;
    if (ensure_conn(s, &s->conns[0], &cst) != 0)
        ld_warn("%s; will retry on each request", cst.msg);
    else
        ld_info("postgres online store: %s (search_path %s, %d connections)", s->where,
                s->search_path, s->nconns);
    void *conns[PG_MAX_THREADS];
    for (int i = 0; i < s->nconns; i++)
        conns[i] = &s->conns[i];
    const ol_store_pool_spec spec = {
            .what = "postgres online store",
            .thread_name = "ld-postgres",
            .threads = s->nconns,
            .max_queued = PG_QUEUE,
            .store = s,
            .conns = conns,
            .read = read_on,
            .write = write_on,
    };
    s->pool = ol_store_pool_new(&spec, st);
    if (!s->pool) {
        pg_free(&s->base);
        return NULL;
    }
    return &s->base;
oom:
    ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
    pg_free(&s->base);
    return NULL;
}
