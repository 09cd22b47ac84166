/* The sql backend: Feast's SQL-registry tables in PostgreSQL, one row per
 * object, exactly as Feast's SqlRegistry writes them, so that Feast and
 * larder can share one database.
 *
 * Layout (Feast's, see the DDL below): one table per object kind keyed by
 * (<kind>_name, project_id), where project_id is the project NAME; the
 * object's serialized proto with an EMPTY project field (Feast's
 * obj.to_proto() carries no project; the project_id column is
 * authoritative); last_updated_timestamp in epoch seconds. Plus
 * managed_infra (one "infra_obj" row per project), feast_metadata
 * (project_uuid, last_updated_timestamp per project) and the feature view
 * version history (not loaded: the catalog does not serve it for sql).
 *
 * Loading builds a feast.core.Registry from every row in one REPEATABLE READ
 * snapshot: the project of each object is set from project_id (re-packing
 * the proto), as Feast's SqlRegistry.proto() does. Within a kind, objects
 * are ordered by (last_updated_timestamp, ctid): write order, like the file
 * registry's "an update moves the object to the end" and like Feast's own
 * unordered SELECT (heap order) in practice; deterministic for a given
 * database, so every replica builds the same order. Ties within one second
 * fall back to physical row order.
 *
 * Infra: the catalog has one global Infra; we take the managed_infra row
 * written last (the newest UpdateInfra, whatever its project), which is
 * what the in-memory catalog holds after that write.
 *
 * Change detection (`changed`): one statement returning, per table, the
 * row count and the sum of the rows' xmin (the id of the transaction that
 * wrote each row version). Every insert, update or delete by anyone (Feast
 * included, even its data-source/permission deletes that do not bump
 * feast_metadata) changes the count or the sum: a new row version always has
 * an xmin newer than every existing row's, so with an equal count the sum
 * strictly grows. It is computed in the same snapshot as a load, and inside
 * the write transaction after our own changes, so it describes exactly the
 * state we hold.
 *
 * Writers: begin() takes a session-level advisory lock (one constant key)
 * and then opens a REPEATABLE READ transaction. Taking the lock BEFORE the
 * transaction's snapshot means the snapshot includes everything another
 * larder replica committed before it released the lock, so two replicas
 * never lose each other's updates. Writes by Feast itself do not take the
 * lock; a conflicting one makes our UPSERT fail with a serialization error
 * (UNAVAILABLE, the client retries) instead of silently overwriting it.
 *
 * Threads: one connection. Every call comes from the registry under its
 * write_mu (registry_write, registry_refresh from the refresher thread and
 * from allow_cache=false reads, and the initial load before any thread
 * starts), so calls never overlap.
 *
 * Reconnect: a broken connection is reset (once) at the start of an
 * operation; an operation that opens with a query on a connection that
 * turns out to be dead (server restart) resets and retries once. */
#include <libpq-fe.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "catalog_store.h"
#include "ld_buf.h"
#include "ld_log.h"
#include "pbref.h"

/* pg_advisory_lock key shared by every larder-registry: the bytes "lardreg" 0x01 as a
 * big-endian int64. */
#define SQL_LOCK_KEY     "7809649004578694913"
#define SQL_LOCK_TIMEOUT "30s"

typedef struct sql_store {
    cat_store base;
    PGconn *conn;
    int in_tx;     /* a write transaction (begin) is open */
    int locked;    /* we hold the session advisory lock */
    char *version; /* signature of the database as last loaded/committed */
    char *version_sql;
} sql_store;

/* ------------------------------------------------------------ schema */

/* Exactly SQLAlchemy's CreateTable/CreateIndex output for Feast's SqlRegistry
 * (PostgreSQL dialect), in its order, with IF NOT EXISTS. */
static const char *const ddl[] = {
        "CREATE TABLE IF NOT EXISTS data_sources (data_source_name VARCHAR(255) NOT NULL, "
        "project_id VARCHAR(255) NOT NULL, last_updated_timestamp BIGINT NOT NULL, "
        "data_source_proto BYTEA NOT NULL, PRIMARY KEY (data_source_name, project_id))",
        "CREATE INDEX IF NOT EXISTS idx_data_sources_project_id ON data_sources (project_id)",
        "CREATE TABLE IF NOT EXISTS entities (entity_name VARCHAR(255) NOT NULL, "
        "project_id VARCHAR(255) NOT NULL, last_updated_timestamp BIGINT NOT NULL, "
        "entity_proto BYTEA NOT NULL, PRIMARY KEY (entity_name, project_id))",
        "CREATE INDEX IF NOT EXISTS idx_entities_project_id ON entities (project_id)",
        "CREATE TABLE IF NOT EXISTS feast_metadata (project_id VARCHAR(255) NOT NULL, "
        "metadata_key VARCHAR(50) NOT NULL, metadata_value TEXT NOT NULL, "
        "last_updated_timestamp BIGINT NOT NULL, PRIMARY KEY (project_id, metadata_key))",
        "CREATE INDEX IF NOT EXISTS idx_feast_metadata_project_id ON feast_metadata (project_id)",
        "CREATE TABLE IF NOT EXISTS feature_services (feature_service_name VARCHAR(255) NOT NULL, "
        "project_id VARCHAR(255) NOT NULL, last_updated_timestamp BIGINT NOT NULL, "
        "feature_service_proto BYTEA NOT NULL, PRIMARY KEY (feature_service_name, project_id))",
        "CREATE INDEX IF NOT EXISTS idx_feature_services_project_id ON feature_services "
        "(project_id)",
        "CREATE TABLE IF NOT EXISTS feature_view_version_history (feature_view_name VARCHAR(255) "
        "NOT NULL, project_id VARCHAR(255) NOT NULL, version_number INTEGER NOT NULL, "
        "feature_view_type VARCHAR(50) NOT NULL, feature_view_proto BYTEA NOT NULL, "
        "created_timestamp BIGINT NOT NULL, description TEXT, version_id VARCHAR(36) NOT NULL, "
        "PRIMARY KEY (feature_view_name, project_id, version_number))",
        "CREATE INDEX IF NOT EXISTS idx_fv_version_history_project_id ON "
        "feature_view_version_history (project_id)",
        "CREATE TABLE IF NOT EXISTS feature_views (feature_view_name VARCHAR(255) NOT NULL, "
        "project_id VARCHAR(255) NOT NULL, last_updated_timestamp BIGINT NOT NULL, "
        "materialized_intervals BYTEA, feature_view_proto BYTEA NOT NULL, user_metadata BYTEA, "
        "PRIMARY KEY (feature_view_name, project_id))",
        "CREATE INDEX IF NOT EXISTS idx_feature_views_project_id ON feature_views (project_id)",
        "CREATE TABLE IF NOT EXISTS label_views (feature_view_name VARCHAR(255) NOT NULL, "
        "project_id VARCHAR(255) NOT NULL, last_updated_timestamp BIGINT NOT NULL, "
        "feature_view_proto BYTEA NOT NULL, user_metadata BYTEA, "
        "PRIMARY KEY (feature_view_name, project_id))",
        "CREATE INDEX IF NOT EXISTS idx_label_views_project_id ON label_views (project_id)",
        "CREATE TABLE IF NOT EXISTS managed_infra (infra_name VARCHAR(255) NOT NULL, "
        "project_id VARCHAR(255) NOT NULL, last_updated_timestamp BIGINT NOT NULL, "
        "infra_proto BYTEA NOT NULL, PRIMARY KEY (infra_name, project_id))",
        "CREATE INDEX IF NOT EXISTS idx_managed_infra_project_id ON managed_infra (project_id)",
        "CREATE TABLE IF NOT EXISTS on_demand_feature_views (feature_view_name VARCHAR(255) NOT "
        "NULL, project_id VARCHAR(255) NOT NULL, last_updated_timestamp BIGINT NOT NULL, "
        "feature_view_proto BYTEA NOT NULL, user_metadata BYTEA, "
        "PRIMARY KEY (feature_view_name, project_id))",
        "CREATE INDEX IF NOT EXISTS idx_on_demand_feature_views_project_id ON "
        "on_demand_feature_views (project_id)",
        "CREATE TABLE IF NOT EXISTS permissions (permission_name VARCHAR(255) NOT NULL, "
        "project_id VARCHAR(255) NOT NULL, last_updated_timestamp BIGINT NOT NULL, "
        "permission_proto BYTEA NOT NULL, PRIMARY KEY (permission_name, project_id))",
        "CREATE INDEX IF NOT EXISTS idx_permissions_project_id ON permissions (project_id)",
        "CREATE TABLE IF NOT EXISTS projects (project_id VARCHAR(255) NOT NULL, "
        "project_name VARCHAR(255) NOT NULL, last_updated_timestamp BIGINT NOT NULL, "
        "project_proto BYTEA NOT NULL, PRIMARY KEY (project_id))",
        "CREATE INDEX IF NOT EXISTS idx_projects_project_id ON projects (project_id)",
        "CREATE TABLE IF NOT EXISTS saved_datasets (saved_dataset_name VARCHAR(255) NOT NULL, "
        "project_id VARCHAR(255) NOT NULL, last_updated_timestamp BIGINT NOT NULL, "
        "saved_dataset_proto BYTEA NOT NULL, PRIMARY KEY (saved_dataset_name, project_id))",
        "CREATE INDEX IF NOT EXISTS idx_saved_datasets_project_id ON saved_datasets (project_id)",
        "CREATE TABLE IF NOT EXISTS stream_feature_views (feature_view_name VARCHAR(255) NOT "
        "NULL, project_id VARCHAR(255) NOT NULL, last_updated_timestamp BIGINT NOT NULL, "
        "feature_view_proto BYTEA NOT NULL, user_metadata BYTEA, "
        "PRIMARY KEY (feature_view_name, project_id))",
        "CREATE INDEX IF NOT EXISTS idx_stream_feature_views_project_id ON stream_feature_views "
        "(project_id)",
        "CREATE TABLE IF NOT EXISTS validation_references (validation_reference_name "
        "VARCHAR(255) NOT NULL, project_id VARCHAR(255) NOT NULL, last_updated_timestamp BIGINT "
        "NOT NULL, validation_reference_proto BYTEA NOT NULL, "
        "PRIMARY KEY (validation_reference_name, project_id))",
        "CREATE INDEX IF NOT EXISTS idx_validation_references_project_id ON "
        "validation_references (project_id)",
};

/* How many of the tables above are missing (0: nothing to create, which also
 * works for a role that may read and write but not create). */
static const char missing_sql[] =
        "SELECT count(*) FROM (VALUES ('data_sources'), ('entities'), ('feast_metadata'), "
        "('feature_services'), ('feature_view_version_history'), ('feature_views'), "
        "('label_views'), ('managed_infra'), ('on_demand_feature_views'), ('permissions'), "
        "('projects'), ('saved_datasets'), ('stream_feature_views'), "
        "('validation_references')) AS v(t) WHERE to_regclass(v.t) IS NULL";

/* ------------------------------------------------------------ helpers */

/* The server's primary message, or libpq's, without the trailing newline. */
static void pg_message(sql_store *ss, const PGresult *res, char *out, size_t n)
{
    const char *m = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (!m || !*m)
        m = PQerrorMessage(ss->conn);
    snprintf(out, n, "%s", m && *m ? m : "unknown error");
    size_t len = strlen(out);
    /* libpq's multi-line messages on one line */
    size_t j = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = out[i] == '\n' || out[i] == '\t' ? ' ' : out[i];
        if (ch != ' ' || (j && out[j - 1] != ' '))
            out[j++] = ch;
    }
    out[j] = '\0';
    len = j;
    while (len && (out[len - 1] == '\n' || out[len - 1] == ' '))
        out[--len] = '\0';
}

/* Map a failed result to a status: connection trouble, serialization
 * failures, lock timeouts and shutdowns are UNAVAILABLE (retryable); the
 * rest INTERNAL. */
static int pg_fail(sql_store *ss, const PGresult *res, ld_status *st, const char *what)
{
    char msg[768];
    pg_message(ss, res, msg, sizeof msg);
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    grpc_status_code code = GRPC_STATUS_INTERNAL;
    if (PQstatus(ss->conn) != CONNECTION_OK || !state || strncmp(state, "08", 2) == 0 ||
        strncmp(state, "40", 2) == 0 || strncmp(state, "53", 2) == 0 ||
        strncmp(state, "57", 2) == 0 || strcmp(state, "55P03") == 0)
        code = GRPC_STATUS_UNAVAILABLE;
    return ld_status_set(st, code, NULL, "sql registry: %s: %s%s%s%s", what, msg,
                         state ? " (SQLSTATE " : "", state ? state : "", state ? ")" : "");
}

/* Run a statement; NULL (status set) unless it returned `expect`. */
static PGresult *pg_exec(sql_store *ss, const char *sql, int n, const char *const *values,
                         const int *lengths, const int *formats, int binary_result,
                         ExecStatusType expect, const char *what, ld_status *st)
{
    PGresult *res = PQexecParams(ss->conn, sql, n, NULL, values, lengths, formats, binary_result);
    if (!res || PQresultStatus(res) != expect) {
        pg_fail(ss, res, st, what);
        PQclear(res);
        return NULL;
    }
    return res;
}

static int pg_cmd(sql_store *ss, const char *sql, int n, const char *const *values,
                  const int *lengths, const int *formats, const char *what, ld_status *st)
{
    PGresult *res = pg_exec(ss, sql, n, values, lengths, formats, 0, PGRES_COMMAND_OK, what, st);
    if (!res)
        return -1;
    PQclear(res);
    return 0;
}

static int pg_simple_what(sql_store *ss, const char *sql, const char *what, ld_status *st)
{
    PGresult *res = PQexec(ss->conn, sql);
    ExecStatusType s = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
        pg_fail(ss, res, st, what ? what : sql);
        PQclear(res);
        return -1;
    }
    PQclear(res);
    return 0;
}

static int pg_simple(sql_store *ss, const char *sql, ld_status *st)
{
    return pg_simple_what(ss, sql, NULL, st);
}

/* Best effort, for cleanup paths (the connection may be gone). */
static void pg_quiet(sql_store *ss, const char *sql)
{
    if (PQstatus(ss->conn) != CONNECTION_OK)
        return;
    PQclear(PQexec(ss->conn, sql));
}

static void unlock_writers(sql_store *ss)
{
    if (ss->locked)
        pg_quiet(ss, "SELECT pg_advisory_unlock(" SQL_LOCK_KEY ")");
    ss->locked = 0;
}

static int session_setup(sql_store *ss, ld_status *st)
{
    /* a writer waiting for another replica's lock gives up after a while
     * (UNAVAILABLE) unless the DSN chose its own lock_timeout */
    return pg_simple(ss,
                     "SELECT set_config('lock_timeout', '" SQL_LOCK_TIMEOUT "', false) "
                     "WHERE current_setting('lock_timeout') = '0'",
                     st);
}

static int conn_fail(sql_store *ss, ld_status *st, const char *what)
{
    char msg[768];
    pg_message(ss, NULL, msg, sizeof msg);
    /* libpq's messages name host, port and user, never the password */
    return ld_status_set(st, GRPC_STATUS_UNAVAILABLE, NULL, "sql registry: %s: %s", what, msg);
}

/* At the start of an operation: a broken connection is reset once. */
static int ensure_conn(sql_store *ss, ld_status *st)
{
    if (PQstatus(ss->conn) == CONNECTION_OK)
        return 0;
    if (ss->in_tx)
        return conn_fail(ss, st, "connection lost inside a write");
    ss->locked = 0; /* the server released it with the session */
    PQreset(ss->conn);
    if (PQstatus(ss->conn) != CONNECTION_OK)
        return conn_fail(ss, st, "cannot reconnect to PostgreSQL");
    ld_info("sql registry: reconnected to PostgreSQL");
    return session_setup(ss, st);
}

/* After a failed opening statement: retry once if it was the connection. */
static int should_retry(sql_store *ss, ld_status *st)
{
    if (ss->in_tx || PQstatus(ss->conn) == CONNECTION_OK)
        return 0;
    ld_warn("%s; reconnecting", st->msg);
    ld_status_clear(st);
    return 1;
}

static void put_varint(ld_buf *b, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;
    do {
        tmp[n] = v & 0x7f;
        v >>= 7;
        if (v)
            tmp[n] |= 0x80;
        n++;
    } while (v);
    ld_buf_append(b, tmp, n);
}

static void put_field(ld_buf *b, int field, const void *data, size_t len)
{
    put_varint(b, ((uint64_t)field << 3) | 2);
    put_varint(b, len);
    ld_buf_append(b, data, len);
}

/* Append field `field` = the `kind` proto in bytes with its project field
 * set to `project` (re-packed only when it differs). With field == 0 the
 * bare message is appended instead. */
static int put_with_project(ld_buf *b, int field, cat_kind kind, const uint8_t *bytes, size_t len,
                            const char *project, ld_status *st)
{
    const cat_kind_info *ki = &cat_kinds[kind];
    ProtobufCMessage *m = protobuf_c_message_unpack(ki->desc, NULL, len, bytes);
    if (!m)
        return ld_status_set(st, GRPC_STATUS_DATA_LOSS, NULL, "bytes are not a valid %s",
                             ki->desc->name);
    void *member = NULL;
    const ProtobufCFieldDescriptor *f =
            ki->project_path ? pbref_field(m, ki->project_path, &member) : NULL;
    char **slot = f && member && f->type == PROTOBUF_C_TYPE_STRING ? (char **)member : NULL;
    const char *cur = slot && *slot ? *slot : "";
    if (!slot || strcmp(cur, project) == 0) {
        if (field)
            put_field(b, field, bytes, len);
        else
            ld_buf_append(b, bytes, len);
    } else {
        char *saved = *slot;
        *slot = (char *)project; /* only read by pack; restored before free */
        size_t n = protobuf_c_message_get_packed_size(m);
        if (field) {
            put_varint(b, ((uint64_t)field << 3) | 2);
            put_varint(b, n);
        }
        uint8_t *p = (uint8_t *)ld_buf_reserve(b, n);
        protobuf_c_message_pack(m, p);
        b->len += n;
        b->data[b->len] = '\0';
        *slot = saved;
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}

/* ------------------------------------------------------------ version */

static char *build_version_sql(void)
{
    ld_buf b = LD_BUF_INIT;
    ld_buf_puts(&b, "SELECT concat_ws(','");
    const char *extra[] = {"managed_infra", "feast_metadata"};
    for (int i = 0; i < CAT_N_KINDS + 2; i++) {
        const char *t = i < CAT_N_KINDS ? cat_kinds[i].table : extra[i - CAT_N_KINDS];
        ld_buf_printf(&b,
                      ", (SELECT count(*) || ':' || coalesce(sum(xmin::text::bigint), 0) "
                      "FROM %s)",
                      t);
    }
    ld_buf_puts(&b, ")");
    size_t len;
    return ld_buf_steal(&b, &len);
}

static int query_version(sql_store *ss, char **out, ld_status *st)
{
    PGresult *res = pg_exec(ss, ss->version_sql, 0, NULL, NULL, NULL, 0, PGRES_TUPLES_OK,
                            "reading the registry version", st);
    if (!res)
        return -1;
    *out = strdup(PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : "");
    PQclear(res);
    return 0;
}

/* ------------------------------------------------------------ load */

/* Rows of one object table into the Registry being built. */
static int load_kind(sql_store *ss, cat_kind k, ld_buf *reg, ld_status *st)
{
    const cat_kind_info *ki = &cat_kinds[k];
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT %s, project_id, %s FROM %s "
             "ORDER BY last_updated_timestamp, ctid",
             cat_kinds[k].sql_name_col, cat_kinds[k].sql_proto_col, ki->table);
    char what[128];
    snprintf(what, sizeof what, "reading %s", ki->table);
    PGresult *res = pg_exec(ss, sql, 0, NULL, NULL, NULL, 1, PGRES_TUPLES_OK, what, st);
    if (!res)
        return -1;
    int rows = PQntuples(res);
    for (int i = 0; i < rows; i++) {
        const char *name = PQgetvalue(res, i, 0); /* libpq NUL-terminates binary values too */
        const char *project = PQgetvalue(res, i, 1);
        const uint8_t *bytes = (const uint8_t *)PQgetvalue(res, i, 2);
        size_t len = (size_t)PQgetlength(res, i, 2);
        if (put_with_project(reg, ki->registry_field, k, bytes, len, project, st) != 0) {
            ld_status_prefix(st, "sql registry: %s row (%s, project %s)", ki->table, name, project);
            PQclear(res);
            return -1;
        }
    }
    PQclear(res);
    return 0;
}

static int load_rows(sql_store *ss, ld_buf *reg, ld_status *st)
{
    for (int k = 0; k < CAT_N_KINDS; k++)
        if (load_kind(ss, (cat_kind)k, reg, st) != 0)
            return -1;

    PGresult *res = pg_exec(ss,
                            "SELECT infra_proto FROM managed_infra WHERE infra_name = 'infra_obj' "
                            "ORDER BY last_updated_timestamp DESC, ctid DESC LIMIT 1",
                            0, NULL, NULL, NULL, 1, PGRES_TUPLES_OK, "reading managed_infra", st);
    if (!res)
        return -1;
    if (PQntuples(res) == 1)
        put_field(reg, 10, PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0));
    PQclear(res);

    res = pg_exec(ss,
                  "SELECT project_id, metadata_value FROM feast_metadata "
                  "WHERE metadata_key = 'project_uuid' ORDER BY last_updated_timestamp, ctid",
                  0, NULL, NULL, NULL, 0, PGRES_TUPLES_OK, "reading feast_metadata", st);
    if (!res)
        return -1;
    for (int i = 0; i < PQntuples(res); i++) {
        /* ProjectMetadata{project=1, project_uuid=2} */
        ld_buf pm = LD_BUF_INIT;
        put_field(&pm, 1, PQgetvalue(res, i, 0), strlen(PQgetvalue(res, i, 0)));
        put_field(&pm, 2, PQgetvalue(res, i, 1), strlen(PQgetvalue(res, i, 1)));
        put_field(reg, 15, pm.data, pm.len);
        ld_buf_free(&pm);
    }
    PQclear(res);
    return 0;
}

static int load_once(sql_store *ss, catalog **out, ld_status *st)
{
    int own_tx = !ss->in_tx;
    if (own_tx && pg_simple(ss, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", st) != 0)
        return -1;
    char *ver = NULL;
    ld_buf reg = LD_BUF_INIT;
    int rc = -1;
    if (query_version(ss, &ver, st) != 0 || load_rows(ss, &reg, st) != 0)
        goto out;
    if (own_tx) {
        own_tx = 0;
        if (pg_simple(ss, "COMMIT", st) != 0)
            goto out;
    }
    catalog *c = cat_parse((const uint8_t *)(reg.data ? reg.data : ""), reg.len, st);
    if (!c) {
        ld_status_prefix(st, "sql registry");
        goto out;
    }
    /* Registry.last_updated as Feast's SqlRegistry.proto() sets it: the
     * newest project's meta.last_updated_timestamp (unset without projects);
     * version_id stays "" (Feast never sets it for sql) */
    c->last_updated_us = 0;
    for (size_t i = 0; i < c->kinds[CAT_PROJECT].n; i++)
        if (c->kinds[CAT_PROJECT].v[i]->updated_us > c->last_updated_us)
            c->last_updated_us = c->kinds[CAT_PROJECT].v[i]->updated_us;
    free(ss->version);
    ss->version = ver;
    ver = NULL;
    *out = c;
    rc = 0;
out:
    if (own_tx)
        pg_quiet(ss, "ROLLBACK");
    free(ver);
    ld_buf_free(&reg);
    return rc;
}

static int sql_load(cat_store *s, catalog **out, ld_status *st)
{
    sql_store *ss = (sql_store *)s;
    if (ensure_conn(ss, st) != 0)
        return -1;
    int rc = load_once(ss, out, st);
    if (rc != 0 && should_retry(ss, st) && ensure_conn(ss, st) == 0)
        rc = load_once(ss, out, st);
    return rc;
}

/* ------------------------------------------------------------ changed */

static int changed_once(sql_store *ss, ld_status *st)
{
    char *ver;
    if (query_version(ss, &ver, st) != 0)
        return -1;
    int changed = !ss->version || strcmp(ver, ss->version) != 0;
    free(ver);
    return changed;
}

static int sql_changed(cat_store *s, ld_status *st)
{
    sql_store *ss = (sql_store *)s;
    if (ensure_conn(ss, st) != 0)
        return -1;
    int rc = changed_once(ss, st);
    if (rc < 0 && should_retry(ss, st) && ensure_conn(ss, st) == 0)
        rc = changed_once(ss, st);
    return rc;
}

/* ------------------------------------------------------------ writes */

static int begin_once(sql_store *ss, ld_status *st)
{
    if (pg_simple_what(ss, "SELECT pg_advisory_lock(" SQL_LOCK_KEY ")",
                       "taking the registry writers' lock", st) != 0)
        return -1;
    ss->locked = 1;
    /* the snapshot is taken at the first query after this, i.e. after the
     * lock: it includes every write of the replica that held it */
    if (pg_simple(ss, "BEGIN ISOLATION LEVEL REPEATABLE READ", st) != 0) {
        unlock_writers(ss);
        return -1;
    }
    ss->in_tx = 1;
    return 0;
}

static int sql_begin(cat_store *s, ld_status *st)
{
    sql_store *ss = (sql_store *)s;
    if (ss->in_tx)
        return ld_status_set(st, GRPC_STATUS_INTERNAL, NULL, "sql registry: nested write");
    if (ensure_conn(ss, st) != 0)
        return -1;
    int rc = begin_once(ss, st);
    if (rc != 0 && should_retry(ss, st) && ensure_conn(ss, st) == 0)
        rc = begin_once(ss, st);
    return rc;
}

static void end_write(sql_store *ss, int rollback)
{
    if (rollback && ss->in_tx)
        pg_quiet(ss, "ROLLBACK");
    ss->in_tx = 0;
    unlock_writers(ss);
}

static void sql_abort(cat_store *s)
{
    end_write((sql_store *)s, 1);
}

static int bump_metadata(sql_store *ss, const char *project, const char *now_s, ld_status *st)
{
    const char *v[] = {project, now_s, now_s};
    return pg_cmd(ss,
                  "INSERT INTO feast_metadata (project_id, metadata_key, metadata_value, "
                  "last_updated_timestamp) VALUES ($1, 'last_updated_timestamp', $2, $3::bigint) "
                  "ON CONFLICT (project_id, metadata_key) DO UPDATE SET "
                  "metadata_value = EXCLUDED.metadata_value, "
                  "last_updated_timestamp = EXCLUDED.last_updated_timestamp",
                  3, v, NULL, NULL, "updating feast_metadata", st);
}

static int apply_put(sql_store *ss, const cat_obj *o, const char *now_s, ld_status *st)
{
    const cat_kind_info *ki = &cat_kinds[o->kind];
    /* stored as Feast stores it: the project lives in project_id only */
    ld_buf proto = LD_BUF_INIT;
    if (put_with_project(&proto, 0, o->kind, o->bytes, o->len, "", st) != 0)
        return -1;
    char sql[768];
    const char *v[4];
    int len[4] = {0, 0, 0, 0}, fmt[4] = {0, 0, 0, 1};
    if (o->kind == CAT_PROJECT) {
        snprintf(sql, sizeof sql,
                 "INSERT INTO projects (project_id, project_name, last_updated_timestamp, "
                 "project_proto) VALUES ($1, $2, $3::bigint, $4) ON CONFLICT (project_id) DO "
                 "UPDATE SET project_name = EXCLUDED.project_name, "
                 "last_updated_timestamp = EXCLUDED.last_updated_timestamp, "
                 "project_proto = EXCLUDED.project_proto");
    } else {
        snprintf(sql, sizeof sql,
                 "INSERT INTO %s (%s, project_id, last_updated_timestamp, %s) "
                 "VALUES ($1, $2, $3::bigint, $4) ON CONFLICT (%s, project_id) DO UPDATE SET "
                 "last_updated_timestamp = EXCLUDED.last_updated_timestamp, %s = EXCLUDED.%s",
                 ki->table, cat_kinds[o->kind].sql_name_col, cat_kinds[o->kind].sql_proto_col,
                 cat_kinds[o->kind].sql_name_col, cat_kinds[o->kind].sql_proto_col,
                 cat_kinds[o->kind].sql_proto_col);
    }
    v[0] = o->name;
    v[1] = o->project; /* projects: project_name = project_id = the name */
    v[2] = now_s;
    v[3] = proto.data ? proto.data : "";
    len[3] = (int)proto.len;
    char what[128];
    snprintf(what, sizeof what, "writing %s %s", ki->label, o->name);
    int rc = pg_cmd(ss, sql, 4, v, len, fmt, what, st);
    ld_buf_free(&proto);
    if (rc != 0)
        return -1;
    return bump_metadata(ss, o->project, now_s, st);
}

static int is_fv_kind(cat_kind k)
{
    return k == CAT_FEATURE_VIEW || k == CAT_ODFV || k == CAT_SFV || k == CAT_LABEL_VIEW;
}

static int apply_delete(sql_store *ss, const cat_obj *o, const char *now_s, ld_status *st)
{
    const cat_kind_info *ki = &cat_kinds[o->kind];
    char sql[512], what[128];
    snprintf(sql, sizeof sql, "DELETE FROM %s WHERE %s = $1 AND project_id = $2", ki->table,
             cat_kinds[o->kind].sql_name_col);
    snprintf(what, sizeof what, "deleting %s %s", ki->label, o->name);
    const char *v[] = {o->name, o->project};
    if (pg_cmd(ss, sql, 2, v, NULL, NULL, what, st) != 0)
        return -1;
    if (is_fv_kind(o->kind) &&
        pg_cmd(ss,
               "DELETE FROM feature_view_version_history WHERE feature_view_name = $1 AND "
               "project_id = $2",
               2, v, NULL, NULL, what, st) != 0)
        return -1;
    return bump_metadata(ss, o->project, now_s, st);
}

static int apply_delete_project(sql_store *ss, const char *project, ld_status *st)
{
    /* Feast's delete_project: every table but the version history */
    static const char *const tables[] = {"managed_infra",
                                         "saved_datasets",
                                         "validation_references",
                                         "feature_services",
                                         "feature_views",
                                         "on_demand_feature_views",
                                         "stream_feature_views",
                                         "label_views",
                                         "data_sources",
                                         "entities",
                                         "permissions",
                                         "feast_metadata",
                                         "projects"};
    const char *v[] = {project};
    for (size_t i = 0; i < sizeof tables / sizeof *tables; i++) {
        char sql[128], what[128];
        snprintf(sql, sizeof sql, "DELETE FROM %s WHERE project_id = $1", tables[i]);
        snprintf(what, sizeof what, "deleting project %s from %s", project, tables[i]);
        if (pg_cmd(ss, sql, 1, v, NULL, NULL, what, st) != 0)
            return -1;
    }
    return 0;
}

static int apply_infra(sql_store *ss, const catalog *next, const char *project, const char *now_s,
                       ld_status *st)
{
    const char *v[] = {project, now_s, next->infra ? (const char *)next->infra : ""};
    int len[] = {0, 0, next->infra ? (int)next->infra_len : 0};
    int fmt[] = {0, 0, 1};
    if (pg_cmd(ss,
               "INSERT INTO managed_infra (infra_name, project_id, last_updated_timestamp, "
               "infra_proto) VALUES ('infra_obj', $1, $2::bigint, $3) "
               "ON CONFLICT (infra_name, project_id) DO UPDATE SET "
               "last_updated_timestamp = EXCLUDED.last_updated_timestamp, "
               "infra_proto = EXCLUDED.infra_proto",
               3, v, len, fmt, "writing managed_infra", st) != 0)
        return -1;
    return bump_metadata(ss, project, now_s, st);
}

static int apply_project_meta(sql_store *ss, const char *project, const char *uuid,
                              const char *now_s, ld_status *st)
{
    const char *v[] = {project, uuid, now_s};
    return pg_cmd(ss,
                  "INSERT INTO feast_metadata (project_id, metadata_key, metadata_value, "
                  "last_updated_timestamp) VALUES ($1, 'project_uuid', $2, $3::bigint) "
                  "ON CONFLICT (project_id, metadata_key) DO NOTHING",
                  3, v, NULL, NULL, "writing feast_metadata", st);
}

static int sql_commit(cat_store *s, const catalog *next, const cat_change *changes, size_t n,
                      ld_status *st)
{
    sql_store *ss = (sql_store *)s;
    if (!ss->in_tx)
        return ld_status_set(st, GRPC_STATUS_INTERNAL, NULL, "sql registry: commit without begin");
    char now_s[24];
    snprintf(now_s, sizeof now_s, "%lld", (long long)time(NULL));
    int rc = 0, reload_after = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const cat_change *c = &changes[i];
        switch (c->op) {
        case CAT_CHANGE_PUT:
            rc = apply_put(ss, c->obj, now_s, st);
            break;
        case CAT_CHANGE_DELETE:
            rc = apply_delete(ss, c->obj, now_s, st);
            break;
        case CAT_CHANGE_DELETE_PROJECT:
            rc = apply_delete_project(ss, c->project, st);
            /* the database drops the project's metadata and infra, the
             * in-memory catalog keeps them (file semantics): reload next
             * time so that we serve what the database holds */
            reload_after = 1;
            break;
        case CAT_CHANGE_INFRA:
            rc = apply_infra(ss, next, c->project, now_s, st);
            break;
        case CAT_CHANGE_PROJECT_META:
            rc = apply_project_meta(ss, c->project, c->uuid, now_s, st);
            break;
        }
    }
    char *ver = NULL;
    if (rc == 0)
        rc = query_version(ss, &ver, st);
    if (rc == 0) {
        PGresult *res = PQexec(ss->conn, "COMMIT");
        if (!res || PQresultStatus(res) != PGRES_COMMAND_OK) {
            pg_fail(ss, res, st, "COMMIT");
            rc = -1;
        }
        PQclear(res);
        ss->in_tx = 0; /* COMMIT ends the transaction, successful or not */
    }
    free(ss->version);
    ss->version = NULL; /* after a failure the state is unknown: reload */
    if (rc == 0 && !reload_after)
        ss->version = ver;
    else
        free(ver);
    end_write(ss, rc != 0);
    return rc;
}

/* ------------------------------------------------------------ lifecycle */

static void sql_free(cat_store *s)
{
    sql_store *ss = (sql_store *)s;
    if (!ss)
        return;
    if (ss->conn) {
        end_write(ss, 1);
        PQfinish(ss->conn);
    }
    free(ss->version);
    free(ss->version_sql);
    free(ss);
}

static const cat_store_ops sql_ops = {
        .name = "sql",
        .load = sql_load,
        .changed = sql_changed,
        .begin = sql_begin,
        .commit = sql_commit,
        .abort = sql_abort,
        .free = sql_free,
};

/* Create the tables Feast's SqlRegistry would (schema_mode auto), once, under
 * the writers' lock so that replicas starting together do not race. */
static int ensure_schema(sql_store *ss, ld_status *st)
{
    PGresult *res = pg_exec(ss, missing_sql, 0, NULL, NULL, NULL, 0, PGRES_TUPLES_OK,
                            "checking the registry tables", st);
    if (!res)
        return -1;
    int missing = atoi(PQgetvalue(res, 0, 0));
    PQclear(res);
    if (!missing)
        return 0;
    if (pg_simple_what(ss, "SELECT pg_advisory_lock(" SQL_LOCK_KEY ")",
                       "taking the registry writers' lock", st) != 0)
        return -1;
    ss->locked = 1;
    int rc = pg_simple(ss, "BEGIN", st);
    for (size_t i = 0; rc == 0 && i < sizeof ddl / sizeof *ddl; i++)
        rc = pg_simple(ss, ddl[i], st);
    if (rc == 0)
        rc = pg_simple(ss, "COMMIT", st);
    else
        pg_quiet(ss, "ROLLBACK");
    unlock_writers(ss);
    if (rc != 0)
        ld_status_prefix(st, "creating the registry tables");
    else
        ld_info("sql registry: created the missing registry tables (%d)", missing);
    return rc;
}

cat_store *cat_store_sql_new(const char *dsn, ld_status *st)
{
    sql_store *ss = calloc(1, sizeof *ss);
    if (!ss) {
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        return NULL;
    }
    ss->base.ops = &sql_ops;
    ss->version_sql = build_version_sql();
    /* Parse first: libpq may quote an unparsable DSN, password included, in
     * its message, so that one is not echoed. Connection errors name host,
     * port and user, never the password. */
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(dsn, &perr);
    int parsed = opts != NULL;
    PQconninfoFree(opts);
    PQfreemem(perr);
    if (!parsed) {
        ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                      "sql registry: registry.path is not a valid PostgreSQL URL or "
                      "connection string");
        sql_free(&ss->base);
        return NULL;
    }
    /* our defaults first: anything the DSN sets wins (later keywords win) */
    const char *keys[] = {"application_name", "connect_timeout", "dbname", NULL};
    const char *vals[] = {"larder-registry", "10", dsn, NULL};
    ss->conn = PQconnectdbParams(keys, vals, 1);
    if (!ss->conn) {
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        sql_free(&ss->base);
        return NULL;
    }
    if (PQstatus(ss->conn) != CONNECTION_OK) {
        conn_fail(ss, st, "cannot connect to PostgreSQL");
        sql_free(&ss->base);
        return NULL;
    }
    if (session_setup(ss, st) != 0 || ensure_schema(ss, st) != 0) {
        sql_free(&ss->base);
        return NULL;
    }
    ld_info("sql registry: connected to PostgreSQL at %s:%s, database %s", PQhost(ss->conn),
            PQport(ss->conn), PQdb(ss->conn));
    return &ss->base;
}
