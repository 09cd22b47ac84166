/* of_pg: see of_pg.h.
 *
 * The point-in-time join in SQL. Feast's template (postgres.py,
 * MULTIPLE_FEATURE_VIEW_POINT_IN_TIME_JOIN) joins every entity row with every
 * feature row of the same key inside the window and ranks them; the result
 * is the same as an as-of join. We write the as-of join as PostgreSQL can run
 * it in O((n + m) log(n + m)) without indexes: per view, the feature rows
 * (kind 0) and the entity rows (kind 1) are put in one relation, ordered per
 * key by (timestamp, kind, created NULLS FIRST), so an entity row comes after
 * every feature row with event_ts <= entity_ts, and the greatest created
 * timestamp last among equal timestamps. A running count of feature rows
 * (g) names, for each entity row, the latest such feature row: the one
 * feature row of its (key, g) group. The TTL (ttl 0 = unbounded) then keeps
 * or nulls it: entity_ts − ttl ≤ event_ts ≤ entity_ts. Every entity row
 * appears exactly once per view (no duplication on full ties, unlike
 * Feast's template), null keys and null timestamps match nothing, and the
 * result is ordered as the entity rows were uploaded. */
#include "of_pg.h"

#include <libpq-fe.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "feast/core/FeatureService.pb-c.h"
#include "feast/core/FeatureView.pb-c.h"
#include "feast/core/FeatureViewProjection.pb-c.h"
#include "feast/core/OnDemandFeatureView.pb-c.h"
#include "feast/core/StreamFeatureView.pb-c.h"
#include "ld_arena.h"
#include "ld_buf.h"
#include "ld_log.h"
#include "ld_time.h"
#include "ot_ipc.h"

#define CHUNK_ROWS     65536
#define MAX_IDLE       4
#define PG_EPOCH_US    946684800000000LL /* 2000-01-01 in Unix µs */
#define PG_EPOCH_DAYS  10957
#define COPY_FLUSH     (1 << 20)
#define DUMMY_ID       "__dummy_id"
#define ROW_COL        "__larder_row"
#define ENTITY_TABLE   "larder_entities"
#define CURSOR         "larder_cur"
#define DEFAULT_WINDOW (30LL * 86400 * 1000000) /* entity-less default: 30 days */

struct of_pg {
    const ld_config *cfg;
    int configured; /* offline_store type is postgres */
    const char *keys[LD_PG_MAX_PARAMS + 1];
    char *vals[LD_PG_MAX_PARAMS + 1];
    char *where; /* host:port/db, for messages */
    char *search_path;
    pthread_mutex_t mu;
    PGconn *idle[MAX_IDLE];
    int nidle;
};

/* ------------------------------------------------------------ errors */

static void chomp(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == ' '))
        s[--n] = 0;
}

/* A failed statement: the code from the SQLSTATE, PostgreSQL's message. */
static int pg_err(of_pg *p, PGconn *c, PGresult *res, const char *what, ld_status *st)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *prim = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *detail = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
    char msg[600];
    snprintf(msg, sizeof msg, "%s", prim ? prim : c ? PQerrorMessage(c) : "no connection");
    chomp(msg);
    grpc_status_code code = GRPC_STATUS_INTERNAL;
    if (c && PQstatus(c) != CONNECTION_OK)
        code = GRPC_STATUS_UNAVAILABLE;
    else if (state && !strcmp(state, "42P01"))
        code = GRPC_STATUS_NOT_FOUND; /* undefined table */
    else if (state && (!strncmp(state, "42", 2) || !strncmp(state, "22", 2)))
        code = GRPC_STATUS_INVALID_ARGUMENT; /* syntax, undefined column, data */
    else if (state && !strncmp(state, "23", 2))
        code = GRPC_STATUS_FAILED_PRECONDITION; /* integrity constraint */
    else if (state && !strncmp(state, "08", 2))
        code = GRPC_STATUS_UNAVAILABLE;
    else if (state && !strncmp(state, "53", 2))
        code = GRPC_STATUS_RESOURCE_EXHAUSTED;
    else if (state && !strcmp(state, "57014"))
        code = GRPC_STATUS_DEADLINE_EXCEEDED;
    return ld_status_set(st, code, NULL, "%s: PostgreSQL (%s) says: %s%s%s%s%s%s", what, p->where,
                         msg, detail ? " (" : "", detail ? detail : "", detail ? ")" : "",
                         state ? " SQLSTATE " : "", state ? state : "");
}

/* ------------------------------------------------------------ connections */

static void notice_cb(void *arg, const char *message)
{
    (void)arg;
    ld_debug("postgres offline store: %.*s", (int)strcspn(message, "\n"), message);
}

static PGconn *conn_get(of_pg *p, ld_status *st)
{
    PGconn *c = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->nidle)
        c = p->idle[--p->nidle];
    pthread_mutex_unlock(&p->mu);
    if (c) {
        if (PQstatus(c) == CONNECTION_OK && PQtransactionStatus(c) == PQTRANS_IDLE)
            return c;
        PQfinish(c);
    }
    c = PQconnectdbParams(p->keys, (const char *const *)p->vals, 0);
    if (!c) {
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        return NULL;
    }
    if (PQstatus(c) != CONNECTION_OK) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s", PQerrorMessage(c));
        chomp(msg);
        PQfinish(c);
        ld_status_set(st, GRPC_STATUS_UNAVAILABLE, NULL,
                      "postgres offline store: cannot connect to %s: %s", p->where, msg);
        return NULL;
    }
    PQsetNoticeProcessor(c, notice_cb, NULL);
    const char *sp[1] = {p->search_path};
    PGresult *res = PQexecParams(c,
                                 "SELECT set_config('search_path', $1, false), "
                                 "set_config('TimeZone', 'UTC', false)",
                                 1, NULL, sp, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        pg_err(p, c, res, "postgres offline store: setting up the session", st);
        PQclear(res);
        PQfinish(c);
        return NULL;
    }
    PQclear(res);
    return c;
}

/* Back to the idle list if it is clean, else closed. */
static void conn_put(of_pg *p, PGconn *c)
{
    if (!c)
        return;
    if (PQstatus(c) == CONNECTION_OK && PQtransactionStatus(c) == PQTRANS_IDLE) {
        pthread_mutex_lock(&p->mu);
        if (p->nidle < MAX_IDLE) {
            p->idle[p->nidle++] = c;
            c = NULL;
        }
        pthread_mutex_unlock(&p->mu);
    }
    if (c)
        PQfinish(c);
}

/* Run one statement that returns no rows (or rows we ignore). The extended
 * protocol takes exactly one statement: text that reaches SQL from a client
 * (entity SQL) cannot stack a second one. */
static int exec(of_pg *p, PGconn *c, const char *sql, const char *what, ld_status *st)
{
    PGresult *res = PQexecParams(c, sql, 0, NULL, NULL, NULL, NULL, 0);
    ExecStatusType s = PQresultStatus(res);
    int rc = 0;
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK)
        rc = pg_err(p, c, res, what, st);
    PQclear(res);
    return rc;
}

/* End a failed command: roll back (if the connection still works) and
 * return the connection. */
static void abandon(of_pg *p, PGconn *c)
{
    if (!c)
        return;
    if (PQstatus(c) == CONNECTION_OK && PQtransactionStatus(c) != PQTRANS_IDLE) {
        PGresult *res = PQexec(c, "ROLLBACK");
        PQclear(res);
    }
    conn_put(p, c);
}

of_pg *of_pg_new(const ld_config *cfg, ld_status *st)
{
    of_pg *p = calloc(1, sizeof *p);
    if (!p) {
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        return NULL;
    }
    p->cfg = cfg;
    pthread_mutex_init(&p->mu, NULL);
    const ld_postgres_config *pg = &cfg->offline_store.postgres;
    p->configured = cfg->offline_store.type == LD_OFFLINE_POSTGRES;
    if (p->configured && ld_postgres_params(pg, "larder-offline", p->keys, p->vals) < 0) {
        pthread_mutex_destroy(&p->mu);
        free(p);
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        return NULL;
    }
    /* Feast: search_path = (db_schema or user).strip() [+ ",public"] */
    const char *schema = pg->db_schema && *pg->db_schema ? pg->db_schema
                         : pg->user                      ? pg->user
                                                         : "public";
    while (*schema == ' ')
        schema++;
    size_t sl = strlen(schema);
    while (sl && schema[sl - 1] == ' ')
        sl--;
    if (asprintf(&p->search_path, "%.*s%s", (int)sl, schema,
                 sl == 6 && !strncmp(schema, "public", 6) ? "" : ",public") < 0)
        p->search_path = NULL;
    if (asprintf(&p->where, "%s:%d/%s", pg->host ? pg->host : "(default host)", pg->port,
                 pg->database ? pg->database : "(default database)") < 0)
        p->where = NULL;
    if (!p->search_path || !p->where) {
        of_pg_free(p);
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        return NULL;
    }
    return p;
}

void of_pg_free(of_pg *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->nidle; i++)
        PQfinish(p->idle[i]);
    for (int i = 0; p->vals[i]; i++)
        free(p->vals[i]);
    free(p->where);
    free(p->search_path);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

/* ------------------------------------------------------------ SQL text */

static void qi(ld_buf *b, const char *name) /* "identifier" */
{
    ld_buf_putc(b, '"');
    for (const char *s = name; *s; s++) {
        if (*s == '"')
            ld_buf_putc(b, '"');
        ld_buf_putc(b, *s);
    }
    ld_buf_putc(b, '"');
}

static void ts_lit(ld_buf *b, int64_t us) /* an exact timestamptz */
{
    ld_buf_printf(b, "('epoch'::timestamptz + %lld * interval '1 microsecond')", (long long)us);
}

/* ------------------------------------------------------------ sources */

typedef struct pg_src {
    const char *name;
    char *from;  /* table, or (query) */
    char *table; /* NULL for a query source */
    size_t n_map;
    const char **map_from, **map_to; /* field_mapping: source column -> Feast name */
    const char *ts, *created;        /* "" when unset */
} pg_src;

/* The source column holding Feast name `name` (reverse field mapping). */
static const char *src_col(const pg_src *s, const char *name)
{
    for (size_t i = 0; i < s->n_map; i++)
        if (!strcmp(s->map_to[i], name))
            return s->map_from[i];
    return name;
}

static int src_options(const char *name, const uint8_t *conf, size_t len, pg_src *s, ld_arena *ar,
                       ld_status *st)
{
    json_error_t err;
    json_t *j = json_loadb((const char *)conf, len, 0, &err);
    const char *table = j ? json_string_value(json_object_get(j, "table")) : NULL;
    const char *query = j ? json_string_value(json_object_get(j, "query")) : NULL;
    int rc = 0;
    if (table && *table) {
        s->table = ld_arena_strdup(ar, table);
        s->from = s->table;
    } else if (query && *query) {
        s->from = ld_arena_sprintf(ar, "(%s)", query);
    } else {
        rc = ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                           "PostgreSQL source %s has neither a table nor a query", name);
    }
    json_decref(j);
    return rc;
}

int of_pg_is_source(const Feast__Core__DataSource *ds)
{
    if (!ds || ds->options_case != FEAST__CORE__DATA_SOURCE__OPTIONS_CUSTOM_OPTIONS ||
        !ds->custom_options)
        return 0;
    const char *cls = ds->data_source_class_type ? ds->data_source_class_type : "";
    size_t n = strlen(cls), k = strlen("PostgreSQLSource");
    return n >= k && !strcmp(cls + n - k, "PostgreSQLSource");
}

static int src_from_proto(const Feast__Core__DataSource *ds, pg_src *s, ld_arena *ar, ld_status *st)
{
    memset(s, 0, sizeof *s);
    s->name = ds->name;
    if (src_options(ds->name, ds->custom_options->configuration.data,
                    ds->custom_options->configuration.len, s, ar, st) != 0)
        return -1;
    s->n_map = ds->n_field_mapping;
    s->map_from = ld_arena_calloc(ar, s->n_map + 1, sizeof *s->map_from);
    s->map_to = ld_arena_calloc(ar, s->n_map + 1, sizeof *s->map_to);
    for (size_t i = 0; i < s->n_map; i++) {
        s->map_from[i] = ds->field_mapping[i]->key;
        s->map_to[i] = ds->field_mapping[i]->value;
    }
    s->ts = ds->timestamp_field ? ds->timestamp_field : "";
    s->created = ds->created_timestamp_column ? ds->created_timestamp_column : "";
    return 0;
}

static int b64val(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

/* Base64 (protobuf JSON's bytes), padding optional. NULL if malformed. */
static uint8_t *b64dec(const char *in, size_t *out_len, ld_arena *ar)
{
    size_t n = strlen(in);
    uint8_t *out = ld_arena_alloc(ar, n * 3 / 4 + 4);
    if (!out)
        return NULL;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        if (in[i] == '=')
            break;
        int v = b64val((unsigned char)in[i]);
        if (v < 0)
            return NULL;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    *out_len = o;
    return out;
}

/* A DataSource in protobuf JSON (camelCase keys): is it a PostgreSQLSource? */
static int json_is_pg(json_t *ds)
{
    const char *cls = json_string_value(json_object_get(ds, "dataSourceClassType"));
    if (!cls)
        cls = json_string_value(json_object_get(ds, "data_source_class_type"));
    json_t *co = json_object_get(ds, "customOptions");
    if (!co)
        co = json_object_get(ds, "custom_options");
    size_t n = cls ? strlen(cls) : 0, k = strlen("PostgreSQLSource");
    return co && n >= k && !strcmp(cls + n - k, "PostgreSQLSource");
}

static int src_from_json(json_t *ds, pg_src *s, ld_arena *ar, ld_status *st)
{
    memset(s, 0, sizeof *s);
    const char *name = json_string_value(json_object_get(ds, "name"));
    s->name = name ? ld_arena_strdup(ar, name) : "";
    json_t *co = json_object_get(ds, "customOptions");
    if (!co)
        co = json_object_get(ds, "custom_options");
    const char *conf = json_string_value(json_object_get(co, "configuration"));
    size_t len = 0;
    uint8_t *bytes = conf ? b64dec(conf, &len, ar) : NULL;
    if (!bytes)
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "PostgreSQL source %s: customOptions.configuration must be base64 "
                             "of {\"name\", \"query\", \"table\"}",
                             s->name);
    if (src_options(s->name, bytes, len, s, ar, st) != 0)
        return -1;
    const char *ts = json_string_value(json_object_get(ds, "timestampField"));
    const char *cr = json_string_value(json_object_get(ds, "createdTimestampColumn"));
    s->ts = ts ? ld_arena_strdup(ar, ts) : "";
    s->created = cr ? ld_arena_strdup(ar, cr) : "";
    json_t *fm = json_object_get(ds, "fieldMapping");
    s->n_map = json_is_object(fm) ? json_object_size(fm) : 0;
    s->map_from = ld_arena_calloc(ar, s->n_map + 1, sizeof *s->map_from);
    s->map_to = ld_arena_calloc(ar, s->n_map + 1, sizeof *s->map_to);
    size_t i = 0;
    const char *k;
    json_t *v;
    if (s->n_map)
        json_object_foreach(fm, k, v)
        {
            if (i < s->n_map && json_is_string(v)) {
                s->map_from[i] = ld_arena_strdup(ar, k);
                s->map_to[i] = ld_arena_strdup(ar, json_string_value(v));
                i++;
            }
        }
    s->n_map = i;
    return 0;
}

/* ------------------------------------------------------------ PG -> Arrow */

enum {
    K_BOOL,
    K_I16,
    K_I32,
    K_I64,
    K_OID,
    K_F32,
    K_F64,
    K_NUMERIC,
    K_TEXT,
    K_JSONB,
    K_UUID,
    K_BYTEA,
    K_TS,
    K_TSTZ,
    K_DATE,
    K_ARRAY,
};

static const struct {
    uint32_t oid;
    int kind;
    const char *feast_name; /* Feast's pg_type_code_to_pg_type */
} pg_types[] = {
        {16, K_BOOL, "boolean"},
        {17, K_BYTEA, "bytea"},
        {18, K_TEXT, "unknown"},
        {19, K_TEXT, "unknown"},
        {20, K_I64, "bigint"},
        {21, K_I16, "smallint"},
        {23, K_I32, "integer"},
        {25, K_TEXT, "text"},
        {26, K_OID, "unknown"},
        {114, K_TEXT, "json"},
        {142, K_TEXT, "unknown"},
        {700, K_F32, "real"},
        {701, K_F64, "double precision"},
        {705, K_TEXT, "unknown"},
        {1042, K_TEXT, "character"},
        {1043, K_TEXT, "character varying"},
        {1082, K_DATE, "date"},
        {1114, K_TS, "timestamp without time zone"},
        {1184, K_TSTZ, "timestamp with time zone"},
        {1700, K_NUMERIC, "numeric"},
        {2950, K_UUID, "uuid"},
        {3802, K_JSONB, "jsonb"},
};

static const struct {
    uint32_t oid, elem;
    const char *feast_name;
} pg_arrays[] = {
        {199, 114, "json[]"},
        {1000, 16, "boolean[]"},
        {1001, 17, "bytea[]"},
        {1005, 21, "smallint[]"},
        {1007, 23, "integer[]"},
        {1009, 25, "text[]"},
        {1014, 1042, "character[]"},
        {1015, 1043, "unknown"},
        {1016, 20, "bigint[]"},
        {1021, 700, "real[]"},
        {1022, 701, "double precision[]"},
        {1028, 26, "unknown"},
        {1115, 1114, "timestamp without time zone[]"},
        {1182, 1082, "date[]"},
        {1185, 1184, "timestamp with time zone[]"},
        {1231, 1700, "numeric[]"},
        {2951, 2950, "uuid[]"},
        {3807, 3802, "jsonb[]"},
};

static const char *feast_type_name(uint32_t oid)
{
    for (size_t i = 0; i < sizeof pg_types / sizeof *pg_types; i++)
        if (pg_types[i].oid == oid)
            return pg_types[i].feast_name;
    for (size_t i = 0; i < sizeof pg_arrays / sizeof *pg_arrays; i++)
        if (pg_arrays[i].oid == oid)
            return pg_arrays[i].feast_name;
    return "unknown";
}

typedef struct colb {
    int kind;
    ot_type type;
    ld_buf vals, offs, data, valid;
    int64_t n, nulls;
    struct colb *child;
} colb;

static void colb_free(colb *b)
{
    if (!b)
        return;
    ld_buf_free(&b->vals);
    ld_buf_free(&b->offs);
    ld_buf_free(&b->data);
    ld_buf_free(&b->valid);
    ot_type_clear(&b->type);
    if (b->child) {
        colb_free(b->child);
        free(b->child);
        b->child = NULL;
    }
}

static void put_i32(ld_buf *b, int32_t v)
{
    ld_buf_append(b, &v, 4);
}

static int colb_init(colb *b, uint32_t oid, const char *name, int depth, ld_status *st)
{
    memset(b, 0, sizeof *b);
    for (size_t i = 0; i < sizeof pg_types / sizeof *pg_types; i++)
        if (pg_types[i].oid == oid) {
            b->kind = pg_types[i].kind;
            static const ot_type_id ids[] = {
                    [K_BOOL] = OT_BOOL,    [K_I16] = OT_INT32,       [K_I32] = OT_INT32,
                    [K_I64] = OT_INT64,    [K_OID] = OT_INT64,       [K_F32] = OT_FLOAT32,
                    [K_F64] = OT_FLOAT64,  [K_NUMERIC] = OT_FLOAT64, [K_TEXT] = OT_UTF8,
                    [K_JSONB] = OT_UTF8,   [K_UUID] = OT_UTF8,       [K_BYTEA] = OT_BINARY,
                    [K_TS] = OT_TIMESTAMP, [K_TSTZ] = OT_TIMESTAMP,  [K_DATE] = OT_DATE32,
            };
            b->type.id = ids[b->kind];
            if (b->type.id == OT_TIMESTAMP) {
                b->type.unit = OT_MICRO;
                b->type.tz = b->kind == K_TSTZ ? strdup("UTC") : NULL;
            }
            if (b->type.id == OT_UTF8 || b->type.id == OT_BINARY)
                put_i32(&b->offs, 0);
            return 0;
        }
    for (size_t i = 0; depth == 0 && i < sizeof pg_arrays / sizeof *pg_arrays; i++)
        if (pg_arrays[i].oid == oid) {
            b->kind = K_ARRAY;
            b->child = calloc(1, sizeof *b->child);
            if (!b->child || colb_init(b->child, pg_arrays[i].elem, name, 1, st) != 0)
                return -1;
            b->type.id = OT_LIST;
            b->type.child = calloc(1, sizeof *b->type.child);
            ot_type_copy(b->type.child, &b->child->type);
            put_i32(&b->offs, 0);
            return 0;
        }
    return ld_status_set(st, GRPC_STATUS_UNIMPLEMENTED, NULL,
                         "column %s has PostgreSQL type oid %u, which larder-offline does not "
                         "convert to Arrow (cast it in the source query: integers, floats, "
                         "numeric, bool, text, bytea, timestamps, dates and 1-d arrays of them)",
                         name, oid);
}

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t rd32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static uint64_t rd64(const uint8_t *p)
{
    return ((uint64_t)rd32(p) << 32) | rd32(p + 4);
}

static double numeric_value(const uint8_t *v, int len, int *ok)
{
    *ok = 0;
    if (len < 8)
        return 0;
    int ndigits = (int16_t)rd16(v), weight = (int16_t)rd16(v + 2);
    uint16_t sign = rd16(v + 4);
    if (ndigits < 0 || len < 8 + 2 * ndigits)
        return 0;
    *ok = 1;
    if (sign == 0xC000)
        return NAN;
    if (sign == 0xD000)
        return INFINITY;
    if (sign == 0xF000)
        return -INFINITY;
    double x = 0;
    for (int i = 0; i < ndigits; i++)
        x = x * 10000 + rd16(v + 8 + 2 * i);
    x *= pow(10000, weight - ndigits + 1);
    return sign == 0x4000 ? -x : x;
}

static int colb_add(colb *b, const uint8_t *v, int len, const char *name, ld_status *st);

static int bad_value(const char *name, ld_status *st)
{
    return ld_status_set(st, GRPC_STATUS_INTERNAL, NULL,
                         "column %s: PostgreSQL sent a value in an unexpected binary form", name);
}

static int colb_add_array(colb *b, const uint8_t *v, int len, const char *name, ld_status *st)
{
    if (len < 12)
        return bad_value(name, st);
    int32_t ndim = (int32_t)rd32(v);
    int64_t count = 0;
    const uint8_t *p = v + 12, *end = v + len;
    if (ndim > 1)
        return ld_status_set(st, GRPC_STATUS_UNIMPLEMENTED, NULL,
                             "column %s holds a %d-dimensional array; larder-offline converts "
                             "1-dimensional arrays to Arrow lists",
                             name, ndim);
    if (ndim == 1) {
        if (len < 20)
            return bad_value(name, st);
        count = (int32_t)rd32(v + 12);
        p = v + 20;
    }
    for (int64_t i = 0; i < count; i++) {
        if (end - p < 4)
            return bad_value(name, st);
        int32_t el = (int32_t)rd32(p);
        p += 4;
        if (el > end - p)
            return bad_value(name, st);
        if (colb_add(b->child, el < 0 ? NULL : p, el, name, st) != 0)
            return -1;
        if (el > 0)
            p += el;
    }
    if (b->child->n > INT32_MAX)
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL,
                             "column %s: too many array elements in one chunk", name);
    put_i32(&b->offs, (int32_t)b->child->n);
    return 0;
}

/* Append one value (v NULL: null) in PostgreSQL's binary format. */
static int colb_add(colb *b, const uint8_t *v, int len, const char *name, ld_status *st)
{
    if (b->n % 8 == 0)
        ld_buf_putc(&b->valid, 0);
    if (b->type.id == OT_BOOL && b->n % 8 == 0)
        ld_buf_putc(&b->vals, 0);
    int valid = v != NULL;
    int64_t i64 = 0;
    double f64 = 0;
    if (valid) {
        switch (b->kind) {
        case K_BOOL:
            if (len != 1)
                return bad_value(name, st);
            if (v[0])
                b->vals.data[b->n >> 3] |= (char)(1u << (b->n & 7));
            break;
        case K_I16:
            if (len != 2)
                return bad_value(name, st);
            i64 = (int16_t)rd16(v);
            break;
        case K_I32:
            if (len != 4)
                return bad_value(name, st);
            i64 = (int32_t)rd32(v);
            break;
        case K_OID:
            if (len != 4)
                return bad_value(name, st);
            i64 = rd32(v);
            break;
        case K_I64:
            if (len != 8)
                return bad_value(name, st);
            i64 = (int64_t)rd64(v);
            break;
        case K_F32: {
            if (len != 4)
                return bad_value(name, st);
            uint32_t u = rd32(v);
            float f;
            memcpy(&f, &u, 4);
            f64 = f;
            break;
        }
        case K_F64: {
            if (len != 8)
                return bad_value(name, st);
            uint64_t u = rd64(v);
            memcpy(&f64, &u, 8);
            break;
        }
        case K_NUMERIC: {
            int ok;
            f64 = numeric_value(v, len, &ok);
            if (!ok)
                return bad_value(name, st);
            break;
        }
        case K_TS:
        case K_TSTZ:
            if (len != 8)
                return bad_value(name, st);
            i64 = (int64_t)rd64(v);
            if (i64 == INT64_MAX || i64 == INT64_MIN)
                valid = 0; /* ±infinity */
            else
                i64 += PG_EPOCH_US;
            break;
        case K_DATE:
            if (len != 4)
                return bad_value(name, st);
            i64 = (int32_t)rd32(v);
            if (i64 == INT32_MAX || i64 == INT32_MIN)
                valid = 0;
            else
                i64 += PG_EPOCH_DAYS;
            break;
        case K_TEXT:
        case K_BYTEA:
            ld_buf_append(&b->data, v, (size_t)len);
            break;
        case K_JSONB:
            if (len < 1)
                return bad_value(name, st);
            ld_buf_append(&b->data, v + 1, (size_t)len - 1);
            break;
        case K_UUID: {
            if (len != 16)
                return bad_value(name, st);
            char u[40];
            int o = 0;
            for (int i = 0; i < 16; i++) {
                if (i == 4 || i == 6 || i == 8 || i == 10)
                    u[o++] = '-';
                o += snprintf(u + o, sizeof u - (size_t)o, "%02x", v[i]);
            }
            ld_buf_append(&b->data, u, (size_t)o);
            break;
        }
        case K_ARRAY:
            if (colb_add_array(b, v, len, name, st) != 0)
                return -1;
            break;
        }
    }
    if (valid)
        b->valid.data[b->n >> 3] |= (char)(1u << (b->n & 7));
    else
        b->nulls++;
    switch (b->type.id) {
    case OT_INT32:
    case OT_DATE32: {
        int32_t x = (int32_t)i64;
        ld_buf_append(&b->vals, &x, 4);
        break;
    }
    case OT_INT64:
    case OT_TIMESTAMP:
        ld_buf_append(&b->vals, &i64, 8);
        break;
    case OT_FLOAT32: {
        float x = (float)f64;
        ld_buf_append(&b->vals, &x, 4);
        break;
    }
    case OT_FLOAT64:
        ld_buf_append(&b->vals, &f64, 8);
        break;
    case OT_UTF8:
    case OT_BINARY:
        if (b->data.len > INT32_MAX)
            return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL,
                                 "column %s: more than 2 GiB of text in one chunk", name);
        put_i32(&b->offs, (int32_t)b->data.len);
        break;
    case OT_LIST:
        if (!valid)
            put_i32(&b->offs, (int32_t)b->child->n);
        break;
    default:
        break;
    }
    b->n++;
    return 0;
}

static void *steal_or_empty(ld_buf *b)
{
    void *p = ld_buf_steal(b, NULL);
    return p ? p : calloc(1, 8);
}

/* Move the builder into a column (the builder is left empty). */
static void colb_finish(colb *b, const char *name, ot_column *c)
{
    memset(c, 0, sizeof *c);
    c->name = strdup(name);
    c->type = b->type;
    memset(&b->type, 0, sizeof b->type);
    c->length = b->n;
    c->null_count = b->nulls;
    if (b->nulls)
        c->validity = steal_or_empty(&b->valid);
    switch (c->type.id) {
    case OT_UTF8:
    case OT_BINARY:
        c->data_len = (int64_t)b->data.len;
        c->offsets = steal_or_empty(&b->offs);
        c->data = steal_or_empty(&b->data);
        break;
    case OT_LIST:
        c->offsets = steal_or_empty(&b->offs);
        c->child = calloc(1, sizeof *c->child);
        colb_finish(b->child, "item", c->child);
        break;
    default:
        c->values = steal_or_empty(&b->vals);
        break;
    }
    colb_free(b);
}

static int result_to_table(PGresult *res, ot_table **out, ld_status *st)
{
    int nf = PQnfields(res), nt = PQntuples(res);
    colb *cb = calloc((size_t)nf + 1, sizeof *cb);
    if (!cb)
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
    int f, rc = 0;
    for (f = 0; f < nf && rc == 0; f++) {
        const char *name = PQfname(res, f);
        rc = colb_init(&cb[f], (uint32_t)PQftype(res, f), name, 0, st);
        for (int r = 0; r < nt && rc == 0; r++)
            rc = colb_add(&cb[f],
                          PQgetisnull(res, r, f) ? NULL : (const uint8_t *)PQgetvalue(res, r, f),
                          PQgetlength(res, r, f), name, st);
    }
    if (rc != 0) {
        for (int i = 0; i < f; i++)
            colb_free(&cb[i]);
        free(cb);
        return -1;
    }
    ot_table *t = ot_table_new((size_t)nf, nt);
    for (f = 0; f < nf; f++)
        colb_finish(&cb[f], PQfname(res, f), &t->cols[f]);
    free(cb);
    *out = t;
    return 0;
}

/* ------------------------------------------------------------ cancellation
 *
 * A command attaches its connection to its token (PQgetCancel: the
 * backend's pid and key, a copy that does not point into the PGconn) and
 * detaches it before the connection is closed or given back. A fire sends
 * the cancel request holding the token's lock, so after a detach no request
 * for that connection leaves any more; one sent just before may still reach
 * the backend after the statement ended, which is why a connection whose
 * token fired is closed instead of reused. */

struct of_pg_cancel {
    atomic_int refs;
    pthread_mutex_t mu; /* fired, pc; held while a cancel request is sent */
    int fired;
    PGcancel *pc; /* the running command's connection; NULL: none attached */
};

of_pg_cancel *of_pg_cancel_new(void)
{
    of_pg_cancel *k = calloc(1, sizeof *k);
    if (!k)
        return NULL;
    atomic_init(&k->refs, 1);
    pthread_mutex_init(&k->mu, NULL);
    return k;
}

of_pg_cancel *of_pg_cancel_ref(of_pg_cancel *k)
{
    if (k)
        atomic_fetch_add_explicit(&k->refs, 1, memory_order_relaxed);
    return k;
}

void of_pg_cancel_unref(of_pg_cancel *k)
{
    if (k && atomic_fetch_sub_explicit(&k->refs, 1, memory_order_acq_rel) == 1) {
        PQfreeCancel(k->pc);
        pthread_mutex_destroy(&k->mu);
        free(k);
    }
}

/* A short-lived thread: the cancel request connects to the server, which
 * may take a while (PQcancel has no timeout of its own). */
static void *cancel_thread(void *arg)
{
    of_pg_cancel *k = arg;
    char err[256];
    pthread_mutex_lock(&k->mu);
    if (k->pc) {
        if (PQcancel(k->pc, err, (int)sizeof err))
            ld_debug("postgres offline store: the call is gone, its statement cancelled");
        else
            ld_warn("postgres offline store: cancelling the statement of a call that is gone "
                    "failed: %s",
                    err);
    }
    pthread_mutex_unlock(&k->mu);
    of_pg_cancel_unref(k);
    return NULL;
}

void of_pg_cancel_fire(of_pg_cancel *k)
{
    if (!k)
        return;
    pthread_mutex_lock(&k->mu);
    int send = !k->fired && k->pc;
    k->fired = 1;
    pthread_mutex_unlock(&k->mu);
    if (!send)
        return; /* nothing runs yet: the next statement will not start */
    pthread_attr_t at;
    pthread_t t;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &at, cancel_thread, of_pg_cancel_ref(k)) != 0)
        cancel_thread(k); /* no thread: send it from here */
    pthread_attr_destroy(&at);
}

static int cancel_fired(of_pg_cancel *k)
{
    if (!k)
        return 0;
    pthread_mutex_lock(&k->mu);
    int fired = k->fired;
    pthread_mutex_unlock(&k->mu);
    return fired;
}

static int cancelled(ld_status *st)
{
    return ld_status_set(st, GRPC_STATUS_CANCELLED, NULL,
                         "the call was cancelled: its PostgreSQL statement was cancelled");
}

/* c becomes what a fire of k cancels; CANCELLED when k has fired already. */
static int cancel_attach(of_pg_cancel *k, PGconn *c, ld_status *st)
{
    if (!k)
        return 0;
    PGcancel *pc = PQgetCancel(c);
    pthread_mutex_lock(&k->mu);
    int fired = k->fired;
    if (!fired) {
        PQfreeCancel(k->pc);
        k->pc = pc;
        pc = NULL;
    }
    pthread_mutex_unlock(&k->mu);
    PQfreeCancel(pc);
    return fired ? cancelled(st) : 0;
}

/* No cancel request for the attached connection from now on. 1 when k has
 * fired: the connection must be closed, not reused. */
static int cancel_detach(of_pg_cancel *k)
{
    if (!k)
        return 0;
    pthread_mutex_lock(&k->mu);
    PGcancel *pc = k->pc;
    k->pc = NULL;
    int fired = k->fired;
    pthread_mutex_unlock(&k->mu);
    PQfreeCancel(pc);
    return fired;
}

/* A read command is over without a stream: the connection goes back (rolled
 * back) or, after a cancel, is closed. */
static void end_command(of_pg *p, PGconn *c, of_pg_cancel *k)
{
    if (!c)
        return;
    if (cancel_detach(k))
        PQfinish(c);
    else
        abandon(p, c);
}

/* ------------------------------------------------------------ streams */

struct of_pg_stream {
    of_pg *pg;
    PGconn *c; /* in a transaction with the cursor open; NULL when done */
    of_pg_cancel *k;
    int started;
    int done;
};

static int stream_finish(of_pg_stream *s, ld_status *st)
{
    int rc = exec(s->pg, s->c, "COMMIT", "finishing the result", st);
    int fired = cancel_detach(s->k);
    if (rc == 0 && !fired)
        conn_put(s->pg, s->c);
    else
        PQfinish(s->c);
    s->c = NULL;
    s->done = 1;
    return rc;
}

int of_pg_stream_next(of_pg_stream *s, ot_table **chunk, ld_status *st)
{
    *chunk = NULL;
    if (s->done || !s->c)
        return 0;
    if (cancel_fired(s->k))
        return cancelled(st);
    PGresult *res =
            PQexecParams(s->c, "FETCH FORWARD 65536 FROM " CURSOR, 0, NULL, NULL, NULL, NULL, 1);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        if (cancel_fired(s->k))
            cancelled(st);
        else
            pg_err(s->pg, s->c, res, "reading the result", st);
        PQclear(res);
        return -1;
    }
    int n = PQntuples(res);
    if (n == 0 && s->started) {
        PQclear(res);
        return stream_finish(s, st);
    }
    int rc = result_to_table(res, chunk, st);
    PQclear(res);
    if (rc != 0)
        return -1;
    s->started = 1;
    if (n < CHUNK_ROWS && stream_finish(s, st) != 0) {
        ot_table_free(*chunk);
        *chunk = NULL;
        return -1;
    }
    return 0;
}

void of_pg_stream_free(of_pg_stream *s)
{
    if (!s)
        return;
    if (s->c) {
        cancel_detach(s->k);
        PQfinish(s->c); /* mid-transaction: closing is cheaper than a rollback */
    }
    of_pg_cancel_unref(s->k);
    free(s);
}

int of_pg_stream_collect(of_pg_stream *s, ot_table **out, ld_status *st)
{
    /* the chunks become one IPC stream, which decodes as one table */
    *out = NULL;
    ld_buf ipc = LD_BUF_INIT, h = LD_BUF_INIT, body = LD_BUF_INIT;
    int rc = 0, first = 1;
    for (;;) {
        ot_table *c = NULL;
        if ((rc = of_pg_stream_next(s, &c, st)) != 0 || !c)
            break;
        if (first) {
            first = 0;
            ot_ipc_write_schema(c, &h);
            ot_ipc_frame(&ipc, (const uint8_t *)h.data, h.len, NULL, 0);
        }
        if (c->n_rows) {
            rc = ot_ipc_write_batch(c, 0, c->n_rows, &h, &body, st);
            if (rc == 0)
                ot_ipc_frame(&ipc, (const uint8_t *)h.data, h.len, (const uint8_t *)body.data,
                             body.len);
        }
        ot_table_free(c);
        if (rc != 0)
            break;
    }
    of_pg_stream_free(s);
    if (rc == 0)
        rc = ot_ipc_read_stream((const uint8_t *)(ipc.data ? ipc.data : ""), ipc.len, out, st);
    ld_buf_free(&ipc);
    ld_buf_free(&h);
    ld_buf_free(&body);
    return rc;
}

/* BEGIN was run on c (attached to k): declare the cursor and wrap it. On
 * failure the command ends (end_command). */
static int stream_open(of_pg *p, PGconn *c, of_pg_cancel *k, const char *sql, const char *what,
                       of_pg_stream **out, ld_status *st)
{
    ld_buf q = LD_BUF_INIT;
    ld_buf_puts(&q, "DECLARE " CURSOR " NO SCROLL CURSOR FOR ");
    ld_buf_puts(&q, sql);
    ld_debug("postgres offline store: %s", q.data);
    /* the temporary tables are filled: from here on nothing may write */
    int rc = exec(p, c, "SET TRANSACTION READ ONLY", what, st);
    if (rc == 0)
        rc = exec(p, c, q.data, what, st);
    ld_buf_free(&q);
    if (rc != 0) {
        end_command(p, c, k);
        return -1;
    }
    of_pg_stream *s = calloc(1, sizeof *s);
    if (!s) {
        end_command(p, c, k);
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
    }
    s->pg = p;
    s->c = c;
    s->k = of_pg_cancel_ref(k);
    *out = s;
    return 0;
}

/* A connection in a fresh transaction (attached to k, when not NULL), or
 * NULL. */
static PGconn *begin(of_pg *p, of_pg_cancel *k, ld_status *st)
{
    PGconn *c = conn_get(p, st);
    if (c && cancel_attach(k, c, st) != 0) {
        conn_put(p, c);
        return NULL;
    }
    /* cursors are planned for the first 10% of their rows by default
     * (nested loops); we read them to the end */
    if (c &&
        (exec(p, c, "BEGIN", "starting a transaction", st) != 0 ||
         exec(p, c, "SET LOCAL cursor_tuple_fraction = 1", "starting a transaction", st) != 0)) {
        cancel_detach(k);
        PQfinish(c);
        return NULL;
    }
    return c;
}

/* ------------------------------------------------------------ Arrow -> PG */

static int pg_type_of(const ot_type *t, const char **name, uint32_t *oid)
{
    switch (t->id) {
    case OT_BOOL:
        *name = "boolean", *oid = 16;
        return 0;
    case OT_INT32:
        *name = "integer", *oid = 23;
        return 0;
    case OT_INT64:
        *name = "bigint", *oid = 20;
        return 0;
    case OT_FLOAT32:
        *name = "real", *oid = 700;
        return 0;
    case OT_FLOAT64:
        *name = "double precision", *oid = 701;
        return 0;
    case OT_NULL:
    case OT_UTF8:
    case OT_LARGE_UTF8:
        *name = "text", *oid = 25;
        return 0;
    case OT_BINARY:
        *name = "bytea", *oid = 17;
        return 0;
    case OT_TIMESTAMP:
        *name = "timestamptz", *oid = 1184;
        return 0;
    case OT_DATE32:
        *name = "date", *oid = 1082;
        return 0;
    default:
        return -1;
    }
}

static void put_be32(ld_buf *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    ld_buf_append(b, x, 4);
}

static void put_be64(ld_buf *b, uint64_t v)
{
    put_be32(b, (uint32_t)(v >> 32));
    put_be32(b, (uint32_t)v);
}

/* One field of a binary COPY tuple: length, then the value. */
static void put_value(ld_buf *b, const ot_column *c, int64_t i)
{
    if (c->type.id == OT_NULL || !ot_column_valid(c, i)) {
        put_be32(b, 0xFFFFFFFFu);
        return;
    }
    switch (c->type.id) {
    case OT_BOOL:
        put_be32(b, 1);
        ld_buf_putc(b, (char)ot_bit_get(c->values, i));
        break;
    case OT_INT32:
    case OT_DATE32: {
        int32_t v = ((const int32_t *)c->values)[i];
        if (c->type.id == OT_DATE32)
            v -= PG_EPOCH_DAYS;
        put_be32(b, 4);
        put_be32(b, (uint32_t)v);
        break;
    }
    case OT_INT64:
        put_be32(b, 8);
        put_be64(b, (uint64_t)((const int64_t *)c->values)[i]);
        break;
    case OT_TIMESTAMP:
        put_be32(b, 8);
        put_be64(b, (uint64_t)(ot_column_ts_us(c, i) - PG_EPOCH_US));
        break;
    case OT_FLOAT32: {
        uint32_t u;
        memcpy(&u, (const float *)c->values + i, 4);
        put_be32(b, 4);
        put_be32(b, u);
        break;
    }
    case OT_FLOAT64: {
        uint64_t u;
        memcpy(&u, (const double *)c->values + i, 8);
        put_be32(b, 8);
        put_be64(b, u);
        break;
    }
    case OT_UTF8:
    case OT_BINARY: {
        int32_t a = c->offsets[i], e = c->offsets[i + 1];
        put_be32(b, (uint32_t)(e - a));
        ld_buf_append(b, c->data + a, (size_t)(e - a));
        break;
    }
    case OT_LARGE_UTF8: {
        int64_t a = c->offsets64[i], e = c->offsets64[i + 1];
        put_be32(b, (uint32_t)(e - a));
        ld_buf_append(b, c->data + a, (size_t)(e - a));
        break;
    }
    case OT_LIST: {
        const char *tn;
        uint32_t eoid = 0;
        pg_type_of(&c->child->type, &tn, &eoid);
        int32_t a = c->offsets[i], e = c->offsets[i + 1];
        size_t at = b->len;
        put_be32(b, 0); /* length, patched below */
        int has_null = 0;
        for (int32_t k = a; k < e; k++)
            has_null |= !ot_column_valid(c->child, k);
        put_be32(b, e > a ? 1 : 0);
        put_be32(b, (uint32_t)has_null);
        put_be32(b, eoid);
        if (e > a) {
            put_be32(b, (uint32_t)(e - a));
            put_be32(b, 1);
        }
        for (int32_t k = a; k < e; k++)
            put_value(b, c->child, k);
        uint32_t len = (uint32_t)(b->len - at - 4);
        uint8_t x[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
                        (uint8_t)len};
        memcpy(b->data + at, x, 4);
        break;
    }
    default:
        put_be32(b, 0xFFFFFFFFu);
        break;
    }
}

/* CREATE TEMP TABLE `name` (t's columns [, __larder_row bigint]) ON COMMIT
 * DROP and fill it with binary COPY. In the caller's transaction. */
static int copy_table(of_pg *p, PGconn *c, const char *name, const ot_table *t, int with_row,
                      ld_status *st)
{
    ld_buf q = LD_BUF_INIT;
    ld_buf_puts(&q, "CREATE TEMP TABLE ");
    qi(&q, name);
    ld_buf_puts(&q, " (");
    for (size_t i = 0; i < t->n_cols; i++) {
        const ot_type *ty = &t->cols[i].type;
        const char *tn;
        uint32_t oid;
        int list = ty->id == OT_LIST;
        if ((list && (!ty->child || ty->child->id == OT_LIST || ty->child->id == OT_NULL)) ||
            pg_type_of(list ? ty->child : ty, &tn, &oid) != 0) {
            ld_buf fmt = LD_BUF_INIT;
            ot_type_format(ty, &fmt);
            ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                          "column %s has Arrow type %s, which has no PostgreSQL counterpart here",
                          t->cols[i].name, fmt.data ? fmt.data : "?");
            ld_buf_free(&fmt);
            ld_buf_free(&q);
            return -1;
        }
        if (i)
            ld_buf_puts(&q, ", ");
        qi(&q, t->cols[i].name);
        ld_buf_printf(&q, " %s%s", tn, list ? "[]" : "");
    }
    if (with_row)
        ld_buf_puts(&q, t->n_cols ? ", " ROW_COL " bigint" : ROW_COL " bigint");
    ld_buf_puts(&q, ") ON COMMIT DROP");
    int rc = exec(p, c, q.data, "creating a temporary table", st);
    ld_buf_reset(&q);
    if (rc != 0) {
        ld_buf_free(&q);
        return -1;
    }
    ld_buf_puts(&q, "COPY ");
    qi(&q, name);
    ld_buf_puts(&q, " FROM STDIN (FORMAT binary)");
    PGresult *res = PQexec(c, q.data);
    if (PQresultStatus(res) != PGRES_COPY_IN) {
        pg_err(p, c, res, "starting COPY", st);
        PQclear(res);
        ld_buf_free(&q);
        return -1;
    }
    PQclear(res);
    ld_buf_reset(&q);
    ld_buf_append(&q, "PGCOPY\n\377\r\n\0", 11);
    put_be32(&q, 0);
    put_be32(&q, 0);
    int16_t nf = (int16_t)(t->n_cols + (with_row ? 1 : 0));
    rc = 0;
    for (int64_t r = 0; r < t->n_rows && rc == 0; r++) {
        uint8_t h[2] = {(uint8_t)((uint16_t)nf >> 8), (uint8_t)nf};
        ld_buf_append(&q, h, 2);
        for (size_t i = 0; i < t->n_cols; i++)
            put_value(&q, &t->cols[i], r);
        if (with_row) {
            put_be32(&q, 8);
            put_be64(&q, (uint64_t)r);
        }
        if (q.len >= COPY_FLUSH) {
            if (PQputCopyData(c, q.data, (int)q.len) != 1)
                rc = -1;
            ld_buf_reset(&q);
        }
    }
    ld_buf_append(&q, "\377\377", 2);
    if (rc == 0 && PQputCopyData(c, q.data, (int)q.len) != 1)
        rc = -1;
    ld_buf_free(&q);
    if (PQputCopyEnd(c, rc == 0 ? NULL : "larder-offline: send failed") != 1)
        rc = -1;
    res = PQgetResult(c);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        pg_err(p, c, res, "uploading the table with COPY", st);
        rc = -1;
    } else if (rc != 0) {
        pg_err(p, c, NULL, "uploading the table with COPY", st);
    }
    PQclear(res);
    while ((res = PQgetResult(c)))
        PQclear(res);
    return rc;
}

/* The column names and type oids of `SELECT * FROM <from> LIMIT 0`. */
static PGresult *describe(of_pg *p, PGconn *c, const char *from, const char *what, ld_status *st)
{
    ld_buf q = LD_BUF_INIT;
    ld_buf_printf(&q, "SELECT * FROM %s AS sub LIMIT 0", from);
    PGresult *res = PQexecParams(c, q.data, 0, NULL, NULL, NULL, NULL, 0);
    ld_buf_free(&q);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        pg_err(p, c, res, what, st);
        PQclear(res);
        return NULL;
    }
    return res;
}

/* ------------------------------------------------------------ the join */

typedef struct pv { /* a view, resolved to source columns */
    const char *name;
    pg_src src;
    size_t nk;
    const char **skeys; /* source columns */
    const char **ekeys; /* entity columns */
    const char *ts, *created;
    size_t nf;
    const char **sfeat; /* source columns */
    const char **out;   /* output names */
    int64_t ttl_us;
} pv;

static void interval(ld_buf *q, int64_t us)
{
    ld_buf_printf(q, "(%lld * interval '1 microsecond')", (long long)us);
}

/* The join of entity table `et` (columns ecols, timestamp ets, plus
 * __larder_row) with every view; ordered as the entity rows. */
static void pit_sql(ld_buf *q, const char *et, const char *const *ecols, size_t nec,
                    const char *ets, const pv *vs, size_t nv)
{
    ld_buf_puts(q, "WITH ");
    for (size_t v = 0; v < nv; v++) {
        const pv *w = &vs[v];
        char u[32], g[32], r[32];
        snprintf(u, sizeof u, "v%zu_u", v);
        snprintf(g, sizeof g, "v%zu_g", v);
        snprintf(r, sizeof r, "v%zu", v);
        if (v)
            ld_buf_puts(q, ",\n");
        /* feature rows and entity rows in one relation */
        ld_buf_printf(q, "%s AS (SELECT ", u);
        for (size_t k = 0; k < w->nk; k++) {
            ld_buf_puts(q, "s.");
            qi(q, w->skeys[k]);
            ld_buf_printf(q, " AS k%zu, ", k);
        }
        ld_buf_puts(q, "s.");
        qi(q, w->ts);
        ld_buf_puts(q, "::timestamptz AS t, 0 AS kind, ");
        if (w->created) {
            ld_buf_puts(q, "s.");
            qi(q, w->created);
            ld_buf_puts(q, "::timestamptz AS c, ");
        }
        ld_buf_puts(q, "NULL::bigint AS r");
        for (size_t f = 0; f < w->nf; f++) {
            ld_buf_puts(q, ", s.");
            qi(q, w->sfeat[f]);
            ld_buf_printf(q, " AS f%zu", f);
        }
        ld_buf_printf(q, " FROM %s AS s WHERE s.", w->src.from);
        qi(q, w->ts);
        ld_buf_puts(q, " IS NOT NULL");
        for (size_t k = 0; k < w->nk; k++) {
            ld_buf_puts(q, " AND s.");
            qi(q, w->skeys[k]);
            ld_buf_puts(q, " IS NOT NULL");
        }
        ld_buf_puts(q, " AND s.");
        qi(q, w->ts);
        ld_buf_printf(q, " <= (SELECT max(");
        qi(q, ets);
        ld_buf_printf(q, ") FROM %s)", et);
        if (w->ttl_us) {
            ld_buf_puts(q, " AND s.");
            qi(q, w->ts);
            ld_buf_puts(q, " >= (SELECT min(");
            qi(q, ets);
            ld_buf_printf(q, ") FROM %s) - ", et);
            interval(q, w->ttl_us);
        }
        ld_buf_puts(q, "\n  UNION ALL SELECT ");
        for (size_t k = 0; k < w->nk; k++) {
            ld_buf_puts(q, "e.");
            qi(q, w->ekeys[k]);
            ld_buf_puts(q, ", ");
        }
        ld_buf_puts(q, "e.");
        qi(q, ets);
        ld_buf_puts(q, "::timestamptz, 1, ");
        if (w->created)
            ld_buf_puts(q, "NULL, ");
        ld_buf_puts(q, "e." ROW_COL);
        for (size_t f = 0; f < w->nf; f++)
            ld_buf_puts(q, ", NULL");
        ld_buf_printf(q, " FROM %s AS e),\n", et);
        /* g: feature rows so far in the key's order */
        ld_buf_printf(q, "%s AS (SELECT *, sum(1 - kind) OVER (", g);
        for (size_t k = 0; k < w->nk; k++)
            ld_buf_printf(q, "%sk%zu", k ? ", " : "PARTITION BY ", k);
        ld_buf_printf(q, " ORDER BY t, kind%s ROWS UNBOUNDED PRECEDING) AS g FROM %s),\n",
                      w->created ? ", c NULLS FIRST" : "", u);
        /* per entity row: the feature row of its group, kept within the TTL */
        ld_buf_printf(q, "%s AS (SELECT r", r);
        for (size_t f = 0; f < w->nf; f++)
            ld_buf_printf(q, ", CASE WHEN ok THEN f%zu END AS f%zu", f, f);
        ld_buf_puts(q, " FROM (SELECT kind, r, g > 0 AND t IS NOT NULL");
        if (w->ttl_us) {
            ld_buf_puts(q, " AND first_value(t) OVER w >= t - ");
            interval(q, w->ttl_us);
        }
        ld_buf_puts(q, " AS ok");
        for (size_t f = 0; f < w->nf; f++)
            ld_buf_printf(q, ", first_value(f%zu) OVER w AS f%zu", f, f);
        ld_buf_printf(q, " FROM %s WINDOW w AS (PARTITION BY ", g);
        for (size_t k = 0; k < w->nk; k++)
            ld_buf_printf(q, "k%zu, ", k);
        ld_buf_puts(q, "g ORDER BY kind ROWS UNBOUNDED PRECEDING)) x WHERE kind = 1)");
    }
    ld_buf_puts(q, "\nSELECT ");
    for (size_t i = 0; i < nec; i++) {
        if (i)
            ld_buf_puts(q, ", ");
        ld_buf_puts(q, "e.");
        qi(q, ecols[i]);
    }
    for (size_t v = 0; v < nv; v++)
        for (size_t f = 0; f < vs[v].nf; f++) {
            ld_buf_printf(q, "%sv%zu.f%zu AS ", nec || v || f ? ", " : "", v, f);
            qi(q, vs[v].out[f]);
        }
    ld_buf_printf(q, " FROM %s AS e", et);
    for (size_t v = 0; v < nv; v++)
        ld_buf_printf(q, " LEFT JOIN v%zu ON v%zu.r = e." ROW_COL, v, v);
    ld_buf_puts(q, " ORDER BY e." ROW_COL);
}

/* ------------------------------------------------------------ commands */

static const char *jstr(json_t *j, const char *key)
{
    return json_string_value(json_object_get(j, key));
}

static int in_project(const char *p, const char *project)
{
    return !p || !*p || strcmp(p, project) == 0;
}

static int strings_of(json_t *arr, const char ***out, size_t *n, ld_arena *ar)
{
    *n = json_is_array(arr) ? json_array_size(arr) : 0;
    *out = ld_arena_calloc(ar, *n + 1, sizeof **out);
    if (!*out)
        return -1;
    for (size_t i = 0; i < *n; i++) {
        const char *s = json_string_value(json_array_get(arr, i));
        if (!s)
            return -1;
        (*out)[i] = s;
    }
    return 0;
}

static int parse_iso(json_t *j, const char *key, int64_t *us, int *present, ld_status *st)
{
    json_t *v = json_object_get(j, key);
    *present = v && !json_is_null(v);
    if (!*present)
        return 0;
    if (!json_is_string(v) || ld_time_parse_iso8601(json_string_value(v), us) != 0)
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "%s must be an ISO 8601 timestamp", key);
    return 0;
}

static int not_configured(of_pg *p, const char *name, ld_status *st)
{
    (void)p;
    return ld_status_set(st, GRPC_STATUS_FAILED_PRECONDITION, NULL,
                         "data source %s is a PostgreSQLSource: larder-offline reads it with "
                         "offline_store: {type: postgres, host, port, database, user, password} "
                         "in feature_store.yaml, which is not configured",
                         name);
}

static const Feast__Core__DataSource *find_source(const Feast__Core__Registry *r,
                                                  const char *project, const char *name)
{
    for (size_t i = 0; name && i < r->n_data_sources; i++)
        if (!strcmp(r->data_sources[i]->name, name) &&
            in_project(r->data_sources[i]->project, project))
            return r->data_sources[i];
    return NULL;
}

typedef struct fv_ref {
    const char *name;
    const Feast__Core__DataSource *ds;
    Feast__Core__FeatureSpecV2 **entity_columns;
    size_t n_entity_columns;
    const Google__Protobuf__Duration *ttl;
} fv_ref;

static int find_view(const Feast__Core__Registry *r, const char *project, const char *name,
                     fv_ref *out)
{
    for (size_t i = 0; name && i < r->n_feature_views; i++) {
        const Feast__Core__FeatureViewSpec *s = r->feature_views[i]->spec;
        if (s && !strcmp(s->name, name) && in_project(s->project, project)) {
            *out = (fv_ref){s->name, s->batch_source, s->entity_columns, s->n_entity_columns,
                            s->ttl};
            return 1;
        }
    }
    for (size_t i = 0; name && i < r->n_stream_feature_views; i++) {
        const Feast__Core__StreamFeatureViewSpec *s = r->stream_feature_views[i]->spec;
        if (s && !strcmp(s->name, name) && in_project(s->project, project)) {
            *out = (fv_ref){s->name, s->batch_source, s->entity_columns, s->n_entity_columns,
                            s->ttl};
            return 1;
        }
    }
    return 0;
}

/* The feature-service projection Feast applies for an alias (the last one
 * with that alias, as offline_server.py's loop leaves it). */
static const Feast__Core__FeatureViewProjection *
alias_projection(const Feast__Core__Registry *r, const char *project, const char *alias)
{
    const Feast__Core__FeatureViewProjection *found = NULL;
    for (size_t i = 0; alias && i < r->n_feature_services; i++) {
        const Feast__Core__FeatureServiceSpec *s = r->feature_services[i]->spec;
        if (!s || !in_project(s->project, project))
            continue;
        for (size_t k = 0; k < s->n_features; k++)
            if (s->features[k]->feature_view_name_alias &&
                !strcmp(s->features[k]->feature_view_name_alias, alias))
                found = s->features[k];
    }
    return found;
}

/* Does one of the command's feature views read a PostgreSQL source? (A
 * request mixing kinds of sources is refused in resolve_views.) */
static int hist_is_pg(const Feast__Core__Registry *r, const char *project, json_t *j)
{
    json_t *names = json_object_get(j, "feature_view_names");
    for (size_t i = 0; i < json_array_size(names); i++) {
        fv_ref v;
        if (find_view(r, project, json_string_value(json_array_get(names, i)), &v) &&
            of_pg_is_source(v.ds))
            return 1;
    }
    return 0;
}

/* Resolve the command's feature views into pv's (order of first appearance
 * in feature_refs). */
static int resolve_views(const Feast__Core__Registry *r, const char *project, json_t *j, pv **out,
                         size_t *n_out, ld_arena *ar, ld_status *st)
{
    json_t *names = json_object_get(j, "feature_view_names");
    json_t *refs = json_object_get(j, "feature_refs");
    json_t *aliases = json_object_get(j, "name_aliases");
    int full = json_is_true(json_object_get(j, "full_feature_names"));
    size_t nv = json_array_size(names), nr = json_array_size(refs);
    if (!json_is_array(names) || !json_is_array(refs) || !nv || !nr)
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "the command needs feature_view_names and feature_refs");
    pv *vs = ld_arena_calloc(ar, nv, sizeof *vs);
    const char **use = ld_arena_calloc(ar, nv, sizeof *use);
    for (size_t v = 0; v < nv; v++) {
        const char *vname = json_string_value(json_array_get(names, v));
        const char *alias = json_string_value(json_array_get(aliases, v));
        fv_ref fv;
        if (!find_view(r, project, vname, &fv)) {
            for (size_t i = 0; vname && i < r->n_on_demand_feature_views; i++)
                if (r->on_demand_feature_views[i]->spec &&
                    !strcmp(r->on_demand_feature_views[i]->spec->name, vname))
                    return ld_status_set(st, GRPC_STATUS_FAILED_PRECONDITION, NULL,
                                         "on demand feature view %s needs its Python "
                                         "transformation, which larder-offline does not run",
                                         vname);
            return ld_status_set(st, GRPC_STATUS_NOT_FOUND, "FeatureViewNotFoundException",
                                 "Feature view %s does not exist in project %s",
                                 vname ? vname : "?", project);
        }
        if (!of_pg_is_source(fv.ds))
            return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                                 "feature view %s does not read a PostgreSQLSource, but other "
                                 "views of this request do: one request reads one kind of "
                                 "source",
                                 vname);
        pv *w = &vs[v];
        use[v] = alias ? alias : vname;
        w->name = use[v];
        if (src_from_proto(fv.ds, &w->src, ar, st) != 0)
            return -1;
        const Feast__Core__FeatureViewProjection *proj = alias_projection(r, project, alias);
        w->skeys = ld_arena_calloc(ar, fv.n_entity_columns + 1, sizeof *w->skeys);
        w->ekeys = ld_arena_calloc(ar, fv.n_entity_columns + 1, sizeof *w->ekeys);
        for (size_t k = 0; k < fv.n_entity_columns; k++) {
            const char *jk = fv.entity_columns[k]->name;
            if (!strcmp(jk, DUMMY_ID))
                continue;
            const char *ek = jk;
            for (size_t m = 0; proj && m < proj->n_join_key_map; m++)
                if (!strcmp(proj->join_key_map[m]->key, jk))
                    ek = proj->join_key_map[m]->value;
            w->skeys[w->nk] = src_col(&w->src, jk);
            w->ekeys[w->nk] = ek;
            w->nk++;
        }
        if (!*w->src.ts)
            return ld_status_set(st, GRPC_STATUS_FAILED_PRECONDITION, NULL,
                                 "the batch source of feature view %s has no timestamp_field",
                                 vname);
        w->ts = src_col(&w->src, w->src.ts);
        w->created = *w->src.created ? src_col(&w->src, w->src.created) : NULL;
        w->ttl_us = fv.ttl ? fv.ttl->seconds * 1000000 + fv.ttl->nanos / 1000 : 0;
        w->sfeat = ld_arena_calloc(ar, nr + 1, sizeof *w->sfeat);
        w->out = ld_arena_calloc(ar, nr + 1, sizeof *w->out);
        size_t ul = strlen(use[v]);
        for (size_t i = 0; i < nr; i++) {
            const char *ref = json_string_value(json_array_get(refs, i));
            const char *colon = ref ? strchr(ref, ':') : NULL;
            if (!colon || (size_t)(colon - ref) != ul || strncmp(ref, use[v], ul))
                continue;
            w->sfeat[w->nf] = src_col(&w->src, colon + 1);
            w->out[w->nf] = full ? ld_arena_sprintf(ar, "%s__%s", use[v], colon + 1) : colon + 1;
            w->nf++;
        }
    }
    /* order: first appearance in feature_refs */
    pv *sorted = ld_arena_calloc(ar, nv, sizeof *sorted);
    char *taken = ld_arena_calloc(ar, nv, 1);
    size_t ns = 0;
    for (size_t i = 0; i < nr; i++) {
        const char *ref = json_string_value(json_array_get(refs, i));
        const char *colon = ref ? strchr(ref, ':') : NULL;
        for (size_t v = 0; colon && v < nv; v++)
            if (!taken[v] && (size_t)(colon - ref) == strlen(use[v]) &&
                !strncmp(ref, use[v], strlen(use[v]))) {
                taken[v] = 1;
                sorted[ns++] = vs[v];
            }
    }
    for (size_t v = 0; v < nv; v++)
        if (!taken[v])
            sorted[ns++] = vs[v];
    *out = sorted;
    *n_out = nv;
    return 0;
}

/* The entity timestamp column: event_timestamp, else the one timestamp. */
static int entity_ts(const char *const *names, const int *is_ts, size_t n, const char **out,
                     ld_status *st)
{
    size_t nts = 0;
    *out = NULL;
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(names[i], "event_timestamp")) {
            *out = names[i];
            return 0;
        }
        if (is_ts[i] && nts++ == 0)
            *out = names[i];
    }
    if (nts == 1)
        return 0;
    *out = NULL;
    return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "EntityTimestampInferenceException",
                         "Please provide an entity_df with a column named event_timestamp "
                         "representing the time of events.");
}

static int check_keys(const pv *vs, size_t nv, const char *const *ecols, size_t nec, ld_status *st)
{
    for (size_t v = 0; v < nv; v++)
        for (size_t k = 0; k < vs[v].nk; k++) {
            size_t i;
            for (i = 0; i < nec; i++)
                if (!strcmp(ecols[i], vs[v].ekeys[k]))
                    break;
            if (i == nec)
                return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT,
                                     "FeastEntityDFMissingColumnsError",
                                     "The entity dataframe you have provided must contain "
                                     "columns ['%s'], but ['%s'] were missing.",
                                     vs[v].ekeys[k], vs[v].ekeys[k]);
        }
    return 0;
}

/* Entity-less mode: Feast's template for start/end without entities. */
static int hist_entityless(of_pg *p, PGconn *c, json_t *j, pv *vs, size_t nv, ld_buf *q,
                           ld_status *st)
{
    int64_t start = 0, end = 0;
    int hs, he;
    if (parse_iso(j, "start_date", &start, &hs, st) != 0 ||
        parse_iso(j, "end_date", &end, &he, st) != 0)
        return -1;
    if (!he)
        end = ld_wall_us();
    if (!hs) {
        int64_t mx = 0;
        for (size_t v = 0; v < nv; v++)
            mx = vs[v].ttl_us > mx ? vs[v].ttl_us : mx;
        start = end - (mx ? mx : DEFAULT_WINDOW);
    }
    if (nv == 1) {
        const pv *w = &vs[0];
        ld_buf_puts(q, "SELECT s.");
        qi(q, w->ts);
        ld_buf_puts(q, "::timestamptz AS event_timestamp");
        if (w->created) {
            ld_buf_puts(q, ", s.");
            qi(q, w->created);
            ld_buf_puts(q, "::timestamptz AS created_timestamp");
        }
        for (size_t k = 0; k < w->nk; k++) {
            ld_buf_puts(q, ", s.");
            qi(q, w->skeys[k]);
            ld_buf_puts(q, " AS ");
            qi(q, w->ekeys[k]);
        }
        for (size_t f = 0; f < w->nf; f++) {
            ld_buf_puts(q, ", s.");
            qi(q, w->sfeat[f]);
            ld_buf_puts(q, " AS ");
            qi(q, w->out[f]);
        }
        ld_buf_printf(q, " FROM %s AS s WHERE s.", w->src.from);
        qi(q, w->ts);
        ld_buf_puts(q, " BETWEEN ");
        ts_lit(q, start);
        ld_buf_puts(q, " AND ");
        ts_lit(q, end);
        return 0;
    }
    /* several views: the union of their (keys, ts) in the range is the
     * entity table, joined point-in-time with every view */
    for (size_t v = 1; v < nv; v++) {
        int same = vs[v].nk == vs[0].nk;
        for (size_t k = 0; same && k < vs[0].nk; k++) {
            size_t m;
            for (m = 0; m < vs[v].nk && strcmp(vs[v].ekeys[m], vs[0].ekeys[k]); m++)
                ;
            same = m < vs[v].nk;
        }
        if (!same)
            return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                                 "entity-less retrieval needs feature views with the same join "
                                 "keys (%s and %s differ)",
                                 vs[0].name, vs[v].name);
    }
    ld_buf b = LD_BUF_INIT;
    ld_buf_puts(&b, "CREATE TEMP TABLE " ENTITY_TABLE " ON COMMIT DROP AS SELECT u.*, "
                    "row_number() OVER (ORDER BY u.event_timestamp) AS " ROW_COL " FROM (");
    for (size_t v = 0; v < nv; v++) {
        const pv *w = &vs[v];
        ld_buf_puts(&b, v ? " UNION SELECT s." : "SELECT s.");
        qi(&b, w->ts);
        ld_buf_puts(&b, "::timestamptz AS event_timestamp");
        for (size_t k = 0; k < vs[0].nk; k++) {
            size_t m;
            for (m = 0; strcmp(w->ekeys[m], vs[0].ekeys[k]); m++)
                ;
            ld_buf_puts(&b, ", s.");
            qi(&b, w->skeys[m]);
            ld_buf_puts(&b, " AS ");
            qi(&b, vs[0].ekeys[k]);
        }
        ld_buf_printf(&b, " FROM %s AS s WHERE s.", w->src.from);
        qi(&b, w->ts);
        ld_buf_puts(&b, " BETWEEN ");
        ts_lit(&b, start);
        ld_buf_puts(&b, " AND ");
        ts_lit(&b, end);
    }
    ld_buf_puts(&b, ") AS u");
    int rc = exec(p, c, b.data, "collecting the entities of the range", st);
    ld_buf_free(&b);
    if (rc != 0)
        return -1;
    const char **ecols = calloc(vs[0].nk + 1, sizeof *ecols);
    if (!ecols)
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
    ecols[0] = "event_timestamp";
    for (size_t k = 0; k < vs[0].nk; k++)
        ecols[k + 1] = vs[0].ekeys[k];
    /* the data of each view is limited to the range, as in Feast */
    for (size_t v = 0; v < nv; v++) {
        pv *w = &vs[v];
        ld_buf f = LD_BUF_INIT;
        ld_buf_printf(&f, "(SELECT * FROM %s AS r WHERE r.", w->src.from);
        qi(&f, w->ts);
        ld_buf_puts(&f, " BETWEEN ");
        ts_lit(&f, start);
        ld_buf_puts(&f, " AND ");
        ts_lit(&f, end);
        ld_buf_puts(&f, ")");
        w->src.from = f.data; /* freed below */
    }
    pit_sql(q, ENTITY_TABLE, ecols, vs[0].nk + 1, "event_timestamp", vs, nv);
    for (size_t v = 0; v < nv; v++)
        free(vs[v].src.from);
    free(ecols);
    return 0;
}

static int api_historical(of_pg *p, const Feast__Core__Registry *r, const char *project, json_t *j,
                          const ot_table *upload, of_pg_cancel *k, of_pg_stream **out,
                          ld_status *st)
{
    ld_arena ar;
    ld_arena_init(&ar, NULL, 0, 0);
    pv *vs = NULL;
    size_t nv = 0;
    PGconn *c = NULL;
    ld_buf q = LD_BUF_INIT;
    int rc = -1;
    if (resolve_views(r, project, j, &vs, &nv, &ar, st) != 0)
        goto out;
    if (!p->configured) {
        not_configured(p, vs[0].src.name, st);
        goto out;
    }
    int mock = !upload || (upload->n_cols == 1 && !strcmp(upload->cols[0].name, "key"));
    const char *sql = jstr(j, "entity_df_sql");
    if (!(c = begin(p, k, st)))
        goto out;
    if (!mock || sql) {
        const char **ecols = NULL;
        int *is_ts = NULL;
        size_t nec = 0;
        PGresult *desc = NULL;
        if (!mock) {
            if (copy_table(p, c, ENTITY_TABLE, upload, 1, st) != 0)
                goto out;
            nec = upload->n_cols;
            ecols = ld_arena_calloc(&ar, nec + 1, sizeof *ecols);
            is_ts = ld_arena_calloc(&ar, nec + 1, sizeof *is_ts);
            for (size_t i = 0; i < nec; i++) {
                ecols[i] = upload->cols[i].name;
                is_ts[i] = upload->cols[i].type.id == OT_TIMESTAMP;
            }
        } else {
            ld_buf_puts(&q, "CREATE TEMP TABLE " ENTITY_TABLE " ON COMMIT DROP AS SELECT q.*, "
                            "row_number() OVER () AS " ROW_COL " FROM (");
            ld_buf_puts(&q, sql);
            ld_buf_puts(&q, "\n) AS q");
            int erc = exec(p, c, q.data, "running the entity SQL", st);
            ld_buf_reset(&q);
            if (erc != 0 || !(desc = describe(p, c, ENTITY_TABLE, "reading the entities", st)))
                goto out;
            int nf = PQnfields(desc);
            ecols = ld_arena_calloc(&ar, (size_t)nf + 1, sizeof *ecols);
            is_ts = ld_arena_calloc(&ar, (size_t)nf + 1, sizeof *is_ts);
            for (int i = 0; i < nf; i++) {
                if (!strcmp(PQfname(desc, i), ROW_COL))
                    continue;
                ecols[nec] = ld_arena_strdup(&ar, PQfname(desc, i));
                is_ts[nec++] = PQftype(desc, i) == 1114 || PQftype(desc, i) == 1184;
            }
            PQclear(desc);
        }
        const char *ets;
        if (entity_ts(ecols, is_ts, nec, &ets, st) != 0 || check_keys(vs, nv, ecols, nec, st) != 0)
            goto out;
        /* a temporary table has no statistics until analyzed: without them
         * the planner may pick nested loops over the per-view results */
        if (exec(p, c, "ANALYZE " ENTITY_TABLE, "analyzing the entities", st) != 0)
            goto out;
        pit_sql(&q, ENTITY_TABLE, ecols, nec, ets, vs, nv);
    } else if (hist_entityless(p, c, j, vs, nv, &q, st) != 0) {
        goto out;
    }
    rc = stream_open(p, c, k, q.data, "get_historical_features", out, st);
    c = NULL; /* the stream has it, or the command ended */
out:
    end_command(p, c, k);
    ld_buf_free(&q);
    ld_arena_destroy(&ar);
    return rc;
}

static int api_pull(of_pg *p, const Feast__Core__DataSource *ds, json_t *j, int latest,
                    of_pg_cancel *cancel, of_pg_stream **out, ld_status *st)
{
    const char *ts = jstr(j, "timestamp_field");
    const char *created = jstr(j, "created_timestamp_column");
    if (!ts)
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "the command needs data_source_name and timestamp_field");
    if (created && !*created)
        created = NULL;
    if (!p->configured)
        return not_configured(p, ds->name, st);
    ld_arena ar;
    ld_arena_init(&ar, NULL, 0, 0);
    ld_buf q = LD_BUF_INIT;
    pg_src src;
    const char **keys, **feats;
    size_t nk, nf;
    int64_t start = 0, end = 0;
    int hs, he, rc = -1;
    if (strings_of(json_object_get(j, "join_key_columns"), &keys, &nk, &ar) != 0 ||
        strings_of(json_object_get(j, "feature_name_columns"), &feats, &nf, &ar) != 0) {
        ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                      "join_key_columns and feature_name_columns must be lists of strings");
        goto out;
    }
    if (parse_iso(j, "start_date", &start, &hs, st) != 0 ||
        parse_iso(j, "end_date", &end, &he, st) != 0 || src_from_proto(ds, &src, &ar, st) != 0)
        goto out;
    if (latest && (!hs || !he)) {
        ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                      "pull_latest_from_table_or_query needs start_date and end_date");
        goto out;
    }
    ld_buf where = LD_BUF_INIT;
    if (hs || he) {
        ld_buf_puts(&where, " WHERE s.");
        qi(&where, ts);
        if (hs && he) {
            ld_buf_puts(&where, " BETWEEN ");
            ts_lit(&where, start);
            ld_buf_puts(&where, " AND ");
            ts_lit(&where, end);
        } else {
            ld_buf_puts(&where, hs ? " >= " : " <= ");
            ts_lit(&where, hs ? start : end);
        }
    }
    /* the selected columns: keys, features, ts[, created] */
    ld_buf cols = LD_BUF_INIT;
    for (size_t i = 0; i < nk + nf + 2; i++) {
        const char *col = i < nk         ? keys[i]
                          : i < nk + nf  ? feats[i - nk]
                          : i == nk + nf ? ts
                                         : created;
        if (!col)
            continue;
        ld_buf_puts(&cols, cols.len ? ", s." : "s.");
        qi(&cols, col);
    }
    if (!latest) {
        ld_buf_printf(&q, "SELECT %s FROM %s AS s%s", nf ? cols.data : "s.*", src.from,
                      where.data ? where.data : "");
    } else {
        ld_buf order = LD_BUF_INIT;
        ld_buf_puts(&order, "s.");
        qi(&order, ts);
        ld_buf_puts(&order, " DESC");
        if (created) {
            ld_buf_puts(&order, ", s.");
            qi(&order, created);
            ld_buf_puts(&order, " DESC NULLS LAST");
        }
        ld_buf part = LD_BUF_INIT;
        for (size_t k = 0; k < nk; k++) {
            ld_buf_puts(&part, k ? ", s." : "s.");
            qi(&part, keys[k]);
        }
        if (nf) {
            ld_buf bcols = LD_BUF_INIT;
            for (size_t i = 0; i < nk + nf + 2; i++) {
                const char *col = i < nk         ? keys[i]
                                  : i < nk + nf  ? feats[i - nk]
                                  : i == nk + nf ? ts
                                                 : created;
                if (!col)
                    continue;
                ld_buf_puts(&bcols, bcols.len ? ", b." : "b.");
                qi(&bcols, col);
            }
            ld_buf_printf(&q,
                          "SELECT %s%s FROM (SELECT %s, row_number() OVER (%s%s ORDER BY %s) "
                          "AS _feast_row FROM %s AS s%s) AS b WHERE _feast_row = 1",
                          bcols.data, nk ? "" : ", '' AS " DUMMY_ID, cols.data,
                          nk ? "PARTITION BY " : "", nk ? part.data : "", order.data, src.from,
                          where.data ? where.data : "");
            ld_buf_free(&bcols);
        } else { /* no features: every column of the latest row (Feast's DISTINCT ON) */
            ld_buf_puts(&q, "SELECT DISTINCT ON (");
            if (nk) {
                ld_buf_puts(&q, part.data);
            } else {
                ld_buf_puts(&q, "s.");
                qi(&q, ts);
            }
            ld_buf_printf(&q, ") s.*%s FROM %s AS s%s ORDER BY %s%s%s",
                          nk ? "" : ", '' AS " DUMMY_ID, src.from, where.data ? where.data : "",
                          nk ? part.data : "", nk ? ", " : "", order.data);
        }
        ld_buf_free(&order);
        ld_buf_free(&part);
    }
    ld_buf_free(&where);
    ld_buf_free(&cols);
    PGconn *c = begin(p, cancel, st);
    if (c)
        rc = stream_open(p, c, cancel, q.data,
                         latest ? "pull_latest_from_table_or_query"
                                : "pull_all_from_table_or_query",
                         out, st);
out:
    ld_buf_free(&q);
    ld_arena_destroy(&ar);
    return rc;
}

/* get_table_column_names_and_types_from_data_source / validate_data_source */
static int api_describe(of_pg *p, json_t *dsj, int validate, of_pg_cancel *k, of_pg_stream **out,
                        ld_status *st)
{
    ld_arena ar;
    ld_arena_init(&ar, NULL, 0, 0);
    pg_src src;
    int rc = src_from_json(dsj, &src, &ar, st);
    if (rc == 0 && !p->configured)
        rc = not_configured(p, src.name, st);
    PGconn *c = rc == 0 ? begin(p, k, st) : NULL;
    if (!c) {
        ld_arena_destroy(&ar);
        return -1;
    }
    char what[300];
    snprintf(what, sizeof what, "reading the columns of PostgreSQL source %s", src.name);
    PGresult *res = describe(p, c, src.from, what, st);
    if (!res) {
        end_command(p, c, k);
        ld_arena_destroy(&ar);
        return -1;
    }
    int nf = PQnfields(res);
    if (validate || nf == 0) {
        if (nf == 0)
            rc = ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "ZeroColumnQueryResult",
                               "PostgreSQL source %s has no columns", src.name);
        PQclear(res);
        end_command(p, c, k);
        ld_arena_destroy(&ar);
        return rc;
    }
    /* the listing as a query, so it streams like every other result */
    ld_buf q = LD_BUF_INIT;
    ld_buf_puts(&q, "SELECT * FROM (VALUES ");
    for (int i = 0; i < nf; i++) {
        char *n = PQescapeLiteral(c, PQfname(res, i), strlen(PQfname(res, i)));
        ld_buf_printf(&q, "%s(%s::text, '%s'::text)", i ? ", " : "", n ? n : "''",
                      feast_type_name((uint32_t)PQftype(res, i)));
        PQfreemem(n);
    }
    ld_buf_puts(&q, ") AS t(name, type)");
    PQclear(res);
    rc = stream_open(p, c, k, q.data, "listing columns", out, st);
    ld_buf_free(&q);
    ld_arena_destroy(&ar);
    return rc;
}

static int has_col(const PGresult *res, const char *name)
{
    ld_buf q = LD_BUF_INIT;
    qi(&q, name); /* PQfnumber folds unquoted names to lower case */
    int found = PQfnumber(res, q.data) >= 0;
    ld_buf_free(&q);
    return found;
}

/* offline_write_batch: the rows appended to the view's source table. */
static int api_write(of_pg *p, const Feast__Core__Registry *r, const char *project, json_t *j,
                     const ot_table *rows, ld_status *st)
{
    json_t *names = json_object_get(j, "feature_view_names");
    if (json_array_size(names) != 1)
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "offline_write_batch takes exactly one feature view");
    fv_ref fv;
    const char *vname = json_string_value(json_array_get(names, 0));
    if (!find_view(r, project, vname, &fv))
        return ld_status_set(st, GRPC_STATUS_NOT_FOUND, "FeatureViewNotFoundException",
                             "Feature view %s does not exist in project %s", vname ? vname : "?",
                             project);
    if (!p->configured)
        return not_configured(p, fv.ds->name, st);
    ld_arena ar;
    ld_arena_init(&ar, NULL, 0, 0);
    pg_src src;
    int rc = src_from_proto(fv.ds, &src, &ar, st);
    if (rc == 0 && !src.table)
        rc = ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                           "PostgreSQL source %s is a query: offline_write_batch appends to a "
                           "table source",
                           src.name);
    if (rc == 0 && (!rows || rows->n_cols == 0))
        rc = ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                           "offline_write_batch needs a table of rows");
    PGconn *c = rc == 0 ? begin(p, NULL, st) : NULL;
    if (!c) {
        ld_arena_destroy(&ar);
        return -1;
    }
    ld_buf q = LD_BUF_INIT;
    char what[300];
    snprintf(what, sizeof what, "reading the columns of table %s", src.table);
    PGresult *desc = describe(p, c, src.table, what, st);
    rc = desc ? 0 : -1;
    const char **target = ld_arena_calloc(&ar, rows->n_cols + 1, sizeof *target);
    for (size_t i = 0; rc == 0 && i < rows->n_cols; i++) {
        const char *name = src_col(&src, rows->cols[i].name);
        if (!has_col(desc, name))
            name = rows->cols[i].name;
        if (!has_col(desc, name))
            rc = ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                               "column %s of the batch is not a column of table %s",
                               rows->cols[i].name, src.table);
        target[i] = name;
    }
    PQclear(desc);
    if (rc == 0)
        rc = copy_table(p, c, "larder_batch", rows, 0, st);
    if (rc == 0) {
        ld_buf_printf(&q, "INSERT INTO %s (", src.table);
        for (size_t i = 0; i < rows->n_cols; i++) {
            if (i)
                ld_buf_puts(&q, ", ");
            qi(&q, target[i]);
        }
        ld_buf_puts(&q, ") SELECT ");
        for (size_t i = 0; i < rows->n_cols; i++) {
            if (i)
                ld_buf_puts(&q, ", ");
            qi(&q, rows->cols[i].name);
        }
        ld_buf_puts(&q, " FROM larder_batch");
        snprintf(what, sizeof what, "appending to table %s", src.table);
        rc = exec(p, c, q.data, what, st);
    }
    if (rc == 0)
        rc = exec(p, c, "COMMIT", "committing the batch", st);
    if (rc == 0)
        conn_put(p, c);
    else
        abandon(p, c);
    ld_buf_free(&q);
    ld_arena_destroy(&ar);
    return rc;
}

static int read_command(of_pg *p, const Feast__Core__Registry *r, const char *project,
                        const char *api, json_t *j, const ot_table *upload, of_pg_cancel *k,
                        of_pg_stream **stream, ld_status *st);

int of_pg_command(of_pg *p, const Feast__Core__Registry *r, const char *project, const char *api,
                  json_t *j, const ot_table *upload, of_pg_cancel *cancel, of_pg_stream **stream,
                  ld_status *st)
{
    *stream = NULL;
    if (!api)
        api = jstr(j, "api");
    if (!api)
        return 1;
    int rc = read_command(p, r, project, api, j, upload, cancel, stream, st);
    if (rc < 0 && cancel_fired(cancel))
        cancelled(st); /* whatever PostgreSQL said about it */
    if (rc != 2)
        return rc;
    if (!strcmp(api, "offline_write_batch")) {
        json_t *names = json_object_get(j, "feature_view_names");
        fv_ref fv;
        if (!r || !find_view(r, project, json_string_value(json_array_get(names, 0)), &fv) ||
            !of_pg_is_source(fv.ds))
            return 1;
        return api_write(p, r, project, j, upload, st);
    }
    return 1;
}

/* The read APIs; 2 when api is none of them. */
static int read_command(of_pg *p, const Feast__Core__Registry *r, const char *project,
                        const char *api, json_t *j, const ot_table *upload, of_pg_cancel *k,
                        of_pg_stream **stream, ld_status *st)
{
    if (!strcmp(api, "get_historical_features")) {
        if (!r || !hist_is_pg(r, project, j))
            return 1;
        return api_historical(p, r, project, j, upload, k, stream, st);
    }
    if (!strcmp(api, "pull_all_from_table_or_query") ||
        !strcmp(api, "pull_latest_from_table_or_query")) {
        const Feast__Core__DataSource *ds =
                r ? find_source(r, project, jstr(j, "data_source_name")) : NULL;
        if (!of_pg_is_source(ds))
            return 1;
        return api_pull(p, ds, j, api[5] == 'l', k, stream, st);
    }
    if (!strcmp(api, "get_table_column_names_and_types_from_data_source") ||
        !strcmp(api, "validate_data_source")) {
        const char *proto = jstr(j, "data_source_proto");
        json_error_t err;
        json_t *ds = proto ? json_loads(proto, 0, &err) : NULL;
        int rc = 1;
        if (ds && json_is_pg(ds))
            rc = api_describe(p, ds, api[0] == 'v', k, stream, st);
        json_decref(ds);
        return rc;
    }
    return 2;
}
