/* ld_config: feature_store.yaml loading (see ld_config.h).
 *
 * One table, `keys[]`, describes every setting: dotted name, kind, the
 * section whose `type` gates it, bounds, default and the offset of the field
 * it fills. Defaults, parsing, ld_config_set() and the dump all walk it.
 * The YAML is read with libyaml's document API so every node keeps its line;
 * anchors, aliases and `<<` merge keys work as in PyYAML. */
#include "ld_config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <yaml.h>

/* ===== allocation: failure is fatal, as in ld_buf ===== */

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        abort();
    return p;
}

static void *xrealloc(void *p, size_t size)
{
    p = realloc(p, size ? size : 1);
    if (!p)
        abort();
    return p;
}

static char *xstrdup(const char *s)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        abort();
    return d;
}

/* ===== the settings table ===== */

enum kind { K_STR, K_SECRET, K_INT, K_BOOL, K_DOUBLE, K_ENUM, K_EXTRA };

/* The section whose current type decides whether a key applies. */
enum sec { SEC_NONE, SEC_REGISTRY, SEC_ONLINE, SEC_OFFLINE, SEC_AUTH, SEC_FS };

enum hook { H_NONE, H_PROJECT, H_EKSV };

#define CH_HIDDEN   1 /* accepted spelling, not listed nor dumped */
#define UNSUPPORTED (-1)

typedef struct choice {
    const char *name;
    int value; /* UNSUPPORTED: a value Feast knows that larder does not serve */
    int flags;
} choice;

typedef struct key_def {
    const char *name; /* full dotted name; "x.*" matches any child of x */
    enum kind kind;
    enum sec sec;
    unsigned mask; /* bits of the section types the key applies to; 0 = all */
    size_t off;
    int64_t min, max;
    const choice *choices;
    const char *dstr; /* default of a string */
    double dnum;      /* default of a number, bool or enum */
    bool ci;          /* enum compared case-insensitively */
    enum hook hook;
} key_def;

static const choice registry_types[] = {
        {"file", LD_REGISTRY_FILE, 0},
        {"sql", LD_REGISTRY_SQL, 0},
        {"remote", LD_REGISTRY_REMOTE, 0},
        {"snowflake.registry", UNSUPPORTED, 0},
        {NULL, 0, 0},
};
static const choice cache_modes[] = {
        {"sync", LD_CACHE_SYNC, 0}, {"thread", LD_CACHE_THREAD, 0}, {NULL, 0, 0}};
static const choice schema_modes[] = {{"auto", LD_SCHEMA_AUTO, 0},
                                      {"verify", LD_SCHEMA_VERIFY, 0},
                                      {"skip", LD_SCHEMA_SKIP, 0},
                                      {NULL, 0, 0}};
static const choice online_types[] = {
        {"sqlite", LD_ONLINE_SQLITE, 0},
        {"redis", LD_ONLINE_REDIS, 0},
        {"postgres", LD_ONLINE_POSTGRES, 0},
        {"remote", LD_ONLINE_REMOTE, 0},
        /* class paths Feast accepts for the same stores */
        {"feast.infra.online_stores.sqlite.SqliteOnlineStore", LD_ONLINE_SQLITE, CH_HIDDEN},
        {"feast.infra.online_stores.redis.RedisOnlineStore", LD_ONLINE_REDIS, CH_HIDDEN},
        {"feast.infra.online_stores.postgres_online_store.postgres.PostgreSQLOnlineStore",
         LD_ONLINE_POSTGRES, CH_HIDDEN},
        {"feast.infra.online_stores.contrib.postgres.PostgreSQLOnlineStore", LD_ONLINE_POSTGRES,
         CH_HIDDEN},
        {"feast.infra.online_stores.remote.RemoteOnlineStore", LD_ONLINE_REMOTE, CH_HIDDEN},
        /* ONLINE_STORE_CLASS_FOR_TYPE entries larder does not serve */
        {"aerospike", UNSUPPORTED, 0},
        {"datastore", UNSUPPORTED, 0},
        {"dynamodb", UNSUPPORTED, 0},
        {"snowflake.online", UNSUPPORTED, 0},
        {"bigtable", UNSUPPORTED, 0},
        {"hbase", UNSUPPORTED, 0},
        {"cassandra", UNSUPPORTED, 0},
        {"scylladb", UNSUPPORTED, 0},
        {"mysql", UNSUPPORTED, 0},
        {"hazelcast", UNSUPPORTED, 0},
        {"elasticsearch", UNSUPPORTED, 0},
        {"singlestore", UNSUPPORTED, 0},
        {"qdrant", UNSUPPORTED, 0},
        {"couchbase.online", UNSUPPORTED, 0},
        {"milvus", UNSUPPORTED, 0},
        {"mongodb", UNSUPPORTED, 0},
        {"hybrid", UNSUPPORTED, 0},
        {NULL, 0, 0},
};
static const choice redis_types[] = {{"redis", LD_REDIS_SINGLE, 0},
                                     {"redis_cluster", LD_REDIS_CLUSTER, 0},
                                     {"redis_sentinel", LD_REDIS_SENTINEL, 0},
                                     {NULL, 0, 0}};
static const choice pg_conn_types[] = {
        {"singleton", LD_PG_SINGLETON, 0}, {"pool", LD_PG_POOL, 0}, {NULL, 0, 0}};
static const choice offline_types[] = {
        {"dask", LD_OFFLINE_DASK, 0},
        {"file", LD_OFFLINE_DASK, 0},
        {"duckdb", LD_OFFLINE_DUCKDB, 0},
        {"postgres", LD_OFFLINE_POSTGRES, 0},
        {"remote", LD_OFFLINE_REMOTE, 0},
        {"bigquery", UNSUPPORTED, 0},
        {"redshift", UNSUPPORTED, 0},
        {"snowflake.offline", UNSUPPORTED, 0},
        {"spark", UNSUPPORTED, 0},
        {"trino", UNSUPPORTED, 0},
        {"athena", UNSUPPORTED, 0},
        {"mssql", UNSUPPORTED, 0},
        {"couchbase.offline", UNSUPPORTED, 0},
        {"clickhouse", UNSUPPORTED, 0},
        {"ray", UNSUPPORTED, 0},
        {"oracle", UNSUPPORTED, 0},
        {"hybrid", UNSUPPORTED, 0},
        {NULL, 0, 0},
};
static const choice entity_select_modes[] = {{"temp_table", LD_ENTITY_SELECT_TEMP_TABLE, 0},
                                             {"embed_query", LD_ENTITY_SELECT_EMBED_QUERY, 0},
                                             {NULL, 0, 0}};
static const choice schemes[] = {
        {"http", LD_SCHEME_HTTP, 0}, {"https", LD_SCHEME_HTTPS, 0}, {NULL, 0, 0}};
static const choice auth_types[] = {{"no_auth", LD_AUTH_NONE, 0},
                                    {"oidc", LD_AUTH_OIDC, 0},
                                    {"kubernetes", LD_AUTH_KUBERNETES, 0},
                                    {NULL, 0, 0}};
static const choice fs_types[] = {
        {"local", LD_FEATURE_SERVER_LOCAL, 0}, {"mcp", LD_FEATURE_SERVER_MCP, 0}, {NULL, 0, 0}};
static const choice log_levels[] = {{"debug", LD_LOG_DEBUG, 0},
                                    {"info", LD_LOG_INFO, 0},
                                    {"warning", LD_LOG_WARN, 0},
                                    {"warn", LD_LOG_WARN, 0},
                                    {"error", LD_LOG_ERROR, 0},
                                    {"off", LD_LOG_OFF, 0},
                                    {NULL, 0, 0}};
static const choice log_formats[] = {
        {"text", LD_LOG_TEXT, 0}, {"json", LD_LOG_JSON, 0}, {NULL, 0, 0}};

/* Enum fields are read and written as int. */
_Static_assert(sizeof(ld_online_type) == sizeof(int), "enums must be int-sized");
_Static_assert(sizeof(ld_log_level) == sizeof(int), "enums must be int-sized");

#define OFF(f) offsetof(ld_config, f)
#define BIT(x) (1u << (x))
#define MAXI   INT_MAX
#define NO_FLD ((size_t)-1)

#define KSTR(n, f, d, s_, m_)                                                                      \
    {                                                                                              \
        .name = n, .kind = K_STR, .sec = s_, .mask = m_, .off = OFF(f), .dstr = d                  \
    }
#define KSECRET(n, f, s_, m_)                                                                      \
    {                                                                                              \
        .name = n, .kind = K_SECRET, .sec = s_, .mask = m_, .off = OFF(f)                          \
    }
#define KINT(n, f, d, lo, hi, s_, m_)                                                              \
    {                                                                                              \
        .name = n, .kind = K_INT, .sec = s_, .mask = m_, .off = OFF(f), .min = lo, .max = hi,      \
        .dnum = d                                                                                  \
    }
#define KDBL(n, f, d, lo, hi, s_, m_)                                                              \
    {                                                                                              \
        .name = n, .kind = K_DOUBLE, .sec = s_, .mask = m_, .off = OFF(f), .min = lo, .max = hi,   \
        .dnum = d                                                                                  \
    }
#define KBOOL(n, f, d, s_, m_)                                                                     \
    {                                                                                              \
        .name = n, .kind = K_BOOL, .sec = s_, .mask = m_, .off = OFF(f), .dnum = d                 \
    }
#define KENUM(n, f, d, ch, s_, m_)                                                                 \
    {                                                                                              \
        .name = n, .kind = K_ENUM, .sec = s_, .mask = m_, .off = OFF(f), .choices = ch, .dnum = d  \
    }
#define KEXTRA(n, s_, m_)                                                                          \
    {                                                                                              \
        .name = n, .kind = K_EXTRA, .sec = s_, .mask = m_, .off = NO_FLD                           \
    }

#define PG_KEYS(P, base, s_, m_)                                                                   \
    KSTR(P "host", base.host, NULL, s_, m_), KINT(P "port", base.port, 5432, 1, 65535, s_, m_),    \
            KSTR(P "database", base.database, NULL, s_, m_),                                       \
            KSTR(P "db_schema", base.db_schema, "public", s_, m_),                                 \
            KSTR(P "user", base.user, NULL, s_, m_), KSECRET(P "password", base.password, s_, m_), \
            KSTR(P "sslmode", base.sslmode, "require", s_, m_),                                    \
            KSTR(P "sslkey_path", base.sslkey_path, NULL, s_, m_),                                 \
            KSTR(P "sslcert_path", base.sslcert_path, NULL, s_, m_),                               \
            KSTR(P "sslrootcert_path", base.sslrootcert_path, NULL, s_, m_),                       \
            KINT(P "min_conn", base.min_conn, 1, 0, 10000, s_, m_),                                \
            KINT(P "max_conn", base.max_conn, 10, 1, 10000, s_, m_),                               \
            KENUM(P "conn_type", base.conn_type, LD_PG_SINGLETON, pg_conn_types, s_, m_),          \
            KINT(P "keepalives_idle", base.keepalives_idle, 0, 0, MAXI, s_, m_)

#define R_SQL    BIT(LD_REGISTRY_SQL)
#define R_REMOTE BIT(LD_REGISTRY_REMOTE)
#define ON_SQL   BIT(LD_ONLINE_SQLITE)
#define ON_RED   BIT(LD_ONLINE_REDIS)
#define ON_PG    BIT(LD_ONLINE_POSTGRES)
#define ON_REM   BIT(LD_ONLINE_REMOTE)
#define OFF_DUCK BIT(LD_OFFLINE_DUCKDB)
#define OFF_PG   BIT(LD_OFFLINE_POSTGRES)
#define OFF_REM  BIT(LD_OFFLINE_REMOTE)
#define A_OIDC   BIT(LD_AUTH_OIDC)
#define A_K8S    BIT(LD_AUTH_KUBERNETES)
#define FS_LOCAL BIT(LD_FEATURE_SERVER_LOCAL)
#define FS_MCP   BIT(LD_FEATURE_SERVER_MCP)

static const key_def keys[] = {
        {.name = "project", .kind = K_STR, .off = OFF(project), .hook = H_PROJECT},
        KSTR("project_description", project_description, NULL, SEC_NONE, 0),
        KSTR("provider", provider, "local", SEC_NONE, 0),
        {.name = "entity_key_serialization_version",
         .kind = K_INT,
         .off = OFF(entity_key_serialization_version),
         .min = 1,
         .max = 3,
         .dnum = 3,
         .hook = H_EKSV},
        KBOOL("coerce_tz_aware", coerce_tz_aware, 1, SEC_NONE, 0),
        /* Feast settings larder has no use for */
        KEXTRA("flags", SEC_NONE, 0),
        KEXTRA("embedding_model", SEC_NONE, 0),
        KEXTRA("openlineage", SEC_NONE, 0),
        KEXTRA("mlflow", SEC_NONE, 0),
        KEXTRA("data_quality_monitoring", SEC_NONE, 0),
        KEXTRA("go_feature_serving", SEC_NONE, 0),
        KEXTRA("go_feature_retrieval", SEC_NONE, 0),

        KENUM("registry.registry_type", registry.registry_type, LD_REGISTRY_FILE, registry_types,
              SEC_REGISTRY, 0),
        KSTR("registry.registry_store_type", registry.registry_store_type, NULL, SEC_REGISTRY, 0),
        KSTR("registry.path", registry.path, NULL, SEC_REGISTRY, 0),
        KINT("registry.cache_ttl_seconds", registry.cache_ttl_seconds, 600, 0, MAXI, SEC_REGISTRY,
             0),
        KENUM("registry.cache_mode", registry.cache_mode, LD_CACHE_SYNC, cache_modes, SEC_REGISTRY,
              0),
        KBOOL("registry.purge_feast_metadata", registry.purge_feast_metadata, 0, SEC_REGISTRY, 0),
        KBOOL("registry.enable_online_feature_view_versioning",
              registry.enable_online_feature_view_versioning, 0, SEC_REGISTRY, 0),
        KSTR("registry.read_path", registry.read_path, NULL, SEC_REGISTRY, R_SQL),
        KENUM("registry.schema_mode", registry.schema_mode, LD_SCHEMA_AUTO, schema_modes,
              SEC_REGISTRY, R_SQL),
        KINT("registry.thread_pool_executor_worker_count",
             registry.thread_pool_executor_worker_count, 0, 0, 1024, SEC_REGISTRY, R_SQL),
        KSTR("registry.cert", registry.cert, NULL, SEC_REGISTRY, R_REMOTE),
        KBOOL("registry.is_tls", registry.is_tls, 0, SEC_REGISTRY, R_REMOTE),
        KSTR("registry.client_cert", registry.client_cert, NULL, SEC_REGISTRY, R_REMOTE),
        KSTR("registry.client_key", registry.client_key, NULL, SEC_REGISTRY, R_REMOTE),
        KSTR("registry.authority", registry.authority, NULL, SEC_REGISTRY, R_REMOTE),
        KEXTRA("registry.s3_additional_kwargs", SEC_REGISTRY, 0),
        KEXTRA("registry.sqlalchemy_config_kwargs", SEC_REGISTRY, R_SQL),
        KEXTRA("registry.mcp", SEC_REGISTRY, 0),

        KENUM("online_store.type", online_store.type, LD_ONLINE_SQLITE, online_types, SEC_ONLINE,
              0),
        KSTR("online_store.path", online_store.sqlite.path, "data/online.db", SEC_ONLINE, ON_SQL),
        KSTR("online_store.path", online_store.remote.path, "http://localhost:6566", SEC_ONLINE,
             ON_REM),
        KENUM("online_store.redis_type", online_store.redis.redis_type, LD_REDIS_SINGLE,
              redis_types, SEC_ONLINE, ON_RED),
        KSTR("online_store.connection_string", online_store.redis.connection_string,
             "localhost:6379", SEC_ONLINE, ON_RED),
        KSTR("online_store.sentinel_master", online_store.redis.sentinel_master, "mymaster",
             SEC_ONLINE, ON_RED),
        KINT("online_store.key_ttl_seconds", online_store.redis.key_ttl_seconds, 0, 0, MAXI,
             SEC_ONLINE, ON_RED),
        KBOOL("online_store.full_scan_for_deletion", online_store.redis.full_scan_for_deletion, 1,
              SEC_ONLINE, ON_RED),
        KBOOL("online_store.skip_dedup", online_store.redis.skip_dedup, 0, SEC_ONLINE, ON_RED),
        PG_KEYS("online_store.", online_store.postgres, SEC_ONLINE, ON_PG),
        KSTR("online_store.cert", online_store.remote.cert, NULL, SEC_ONLINE, ON_REM),
        KINT("online_store.connection_pool_size", online_store.remote.connection_pool_size, 50, 1,
             100000, SEC_ONLINE, ON_REM),
        KINT("online_store.connection_idle_timeout", online_store.remote.connection_idle_timeout,
             300, 0, MAXI, SEC_ONLINE, ON_REM),
        KINT("online_store.connection_retries", online_store.remote.connection_retries, 3, 0, 100,
             SEC_ONLINE, ON_REM),
        KEXTRA("online_store.vector_enabled", SEC_ONLINE, ON_SQL | ON_PG),
        KEXTRA("online_store.similarity", SEC_ONLINE, ON_SQL | ON_PG),
        KEXTRA("online_store.vector_len", SEC_ONLINE, ON_SQL | ON_PG),
        KEXTRA("online_store.enable_openai_compatible_store", SEC_ONLINE, ON_SQL | ON_PG),
        KEXTRA("online_store.text_search_enabled", SEC_ONLINE, ON_SQL),

        KENUM("offline_store.type", offline_store.type, LD_OFFLINE_DASK, offline_types, SEC_OFFLINE,
              0),
        PG_KEYS("offline_store.", offline_store.postgres, SEC_OFFLINE, OFF_PG),
        KENUM("offline_store.entity_select_mode", offline_store.entity_select_mode,
              LD_ENTITY_SELECT_TEMP_TABLE, entity_select_modes, SEC_OFFLINE, OFF_PG),
        KSTR("offline_store.host", offline_store.remote.host, NULL, SEC_OFFLINE, OFF_REM),
        KINT("offline_store.port", offline_store.remote.port, 0, 0, 65535, SEC_OFFLINE, OFF_REM),
        KENUM("offline_store.scheme", offline_store.remote.scheme, LD_SCHEME_HTTP, schemes,
              SEC_OFFLINE, OFF_REM),
        KSTR("offline_store.cert", offline_store.remote.cert, NULL, SEC_OFFLINE, OFF_REM),
        KINT("offline_store.connection_retries", offline_store.remote.connection_retries, 3, 0, 100,
             SEC_OFFLINE, OFF_REM),
        KSTR("offline_store.staging_location", offline_store.duckdb.staging_location, NULL,
             SEC_OFFLINE, OFF_DUCK),
        KSTR("offline_store.staging_location_endpoint_override",
             offline_store.duckdb.staging_location_endpoint_override, NULL, SEC_OFFLINE, OFF_DUCK),

        KENUM("auth.type", auth.type, LD_AUTH_NONE, auth_types, SEC_AUTH, 0),
        KSTR("auth.auth_discovery_url", auth.auth_discovery_url, NULL, SEC_AUTH, A_OIDC),
        KSTR("auth.client_id", auth.client_id, NULL, SEC_AUTH, A_OIDC),
        KSTR("auth.ui_client_id", auth.ui_client_id, NULL, SEC_AUTH, A_OIDC),
        KBOOL("auth.verify_ssl", auth.verify_ssl, 1, SEC_AUTH, A_OIDC),
        KSTR("auth.ca_cert_path", auth.ca_cert_path, NULL, SEC_AUTH, A_OIDC),
        KSTR("auth.audience", auth.audience, NULL, SEC_AUTH, A_OIDC),
        KSTR("auth.issuer", auth.issuer, NULL, SEC_AUTH, A_OIDC),
        KINT("auth.jwks_cache_lifespan_seconds", auth.jwks_cache_lifespan_seconds, 300, 1, MAXI,
             SEC_AUTH, A_OIDC),
        KDBL("auth.jwks_request_timeout_seconds", auth.jwks_request_timeout_seconds, 10, 0, 86400,
             SEC_AUTH, A_OIDC),
        KSTR("auth.username", auth.username, NULL, SEC_AUTH, A_OIDC),
        KSECRET("auth.password", auth.password, SEC_AUTH, A_OIDC),
        KSECRET("auth.client_secret", auth.client_secret, SEC_AUTH, A_OIDC),
        KSECRET("auth.token", auth.token, SEC_AUTH, A_OIDC),
        KSTR("auth.token_env_var", auth.token_env_var, NULL, SEC_AUTH, A_OIDC),
        KDBL("auth.token_refresh_margin_seconds", auth.token_refresh_margin_seconds, 30, 0, 86400,
             SEC_AUTH, A_OIDC),
        KSECRET("auth.user_token", auth.user_token, SEC_AUTH, A_K8S),

        KENUM("feature_server.type", feature_server.type, LD_FEATURE_SERVER_LOCAL, fs_types, SEC_FS,
              0),
        KBOOL("feature_server.enabled", feature_server.enabled, 0, SEC_FS, 0),
        /* NULL here; finish() fills the default of the type */
        KSTR("feature_server.transformation_service_endpoint",
             feature_server.transformation_service_endpoint, NULL, SEC_FS, 0),
        KBOOL("feature_server.metrics.enabled", feature_server.metrics.enabled, 0, SEC_FS, 0),
        KBOOL("feature_server.metrics.resource", feature_server.metrics.resource, 1, SEC_FS, 0),
        KBOOL("feature_server.metrics.request", feature_server.metrics.request, 1, SEC_FS, 0),
        KBOOL("feature_server.metrics.online_features", feature_server.metrics.online_features, 1,
              SEC_FS, 0),
        KBOOL("feature_server.metrics.push", feature_server.metrics.push, 1, SEC_FS, 0),
        KBOOL("feature_server.metrics.materialization", feature_server.metrics.materialization, 1,
              SEC_FS, 0),
        KBOOL("feature_server.metrics.freshness", feature_server.metrics.freshness, 1, SEC_FS, 0),
        KBOOL("feature_server.metrics.offline_features", feature_server.metrics.offline_features, 1,
              SEC_FS, 0),
        KBOOL("feature_server.metrics.audit_logging", feature_server.metrics.audit_logging, 0,
              SEC_FS, 0),
        KBOOL("feature_server.feature_logging.enabled", feature_server.feature_logging.enabled, 0,
              SEC_FS, 0),
        KINT("feature_server.feature_logging.flush_interval_secs",
             feature_server.feature_logging.flush_interval_secs, 600, 0, MAXI, SEC_FS, 0),
        KINT("feature_server.feature_logging.write_to_disk_interval_secs",
             feature_server.feature_logging.write_to_disk_interval_secs, 30, 0, MAXI, SEC_FS, 0),
        KINT("feature_server.feature_logging.queue_capacity",
             feature_server.feature_logging.queue_capacity, 100000, 0, MAXI, SEC_FS, 0),
        KINT("feature_server.feature_logging.emit_timeout_micro_secs",
             feature_server.feature_logging.emit_timeout_micro_secs, 10000, 0, MAXI, SEC_FS, 0),
        KBOOL("feature_server.offline_push_batching_enabled",
              feature_server.offline_push_batching_enabled, 0, SEC_FS, 0),
        KINT("feature_server.offline_push_batching_batch_size",
             feature_server.offline_push_batching_batch_size, 0, 0, MAXI, SEC_FS, 0),
        KINT("feature_server.offline_push_batching_batch_interval_seconds",
             feature_server.offline_push_batching_batch_interval_seconds, 0, 0, MAXI, SEC_FS, 0),
        KEXTRA("feature_server.mcp_enabled", SEC_FS, FS_MCP),
        KEXTRA("feature_server.mcp_server_name", SEC_FS, FS_MCP),
        KEXTRA("feature_server.mcp_server_version", SEC_FS, FS_MCP),
        KEXTRA("feature_server.mcp_transport", SEC_FS, FS_MCP),

        KBOOL("materialization.pull_latest_features", materialization.pull_latest_features, 0,
              SEC_NONE, 0),
        KINT("materialization.online_write_batch_size", materialization.online_write_batch_size, 0,
             1, MAXI, SEC_NONE, 0),

        KSTR("batch_engine.type", batch_engine.type, "local", SEC_NONE, 0),
        KEXTRA("batch_engine.*", SEC_NONE, 0),

        KINT("larder.workers", larder.workers, 1, 1, 256, SEC_NONE, 0),
        KINT("larder.max_message_bytes", larder.max_message_bytes, 16 * 1024 * 1024, 1024,
             1024 * 1024 * 1024, SEC_NONE, 0),
        KINT("larder.grace_period_seconds", larder.grace_period_seconds, 5, 0, 3600, SEC_NONE, 0),
        KINT("larder.keepalive_time_seconds", larder.keepalive_time_seconds, 60, 1, 86400, SEC_NONE,
             0),
        KINT("larder.keepalive_timeout_seconds", larder.keepalive_timeout_seconds, 20, 1, 3600,
             SEC_NONE, 0),
        KBOOL("larder.access_log", larder.access_log, 1, SEC_NONE, 0),
        KINT("larder.cpu_dma_latency_us", larder.cpu_dma_latency_us, -1, -1, 2000000000, SEC_NONE,
             0),
        {.name = "larder.log_level",
         .kind = K_ENUM,
         .off = OFF(larder.log_level),
         .choices = log_levels,
         .dnum = LD_LOG_INFO,
         .ci = true},
        {.name = "larder.log_format",
         .kind = K_ENUM,
         .off = OFF(larder.log_format),
         .choices = log_formats,
         .dnum = LD_LOG_TEXT,
         .ci = true},
        KSTR("larder.host", larder.host, "127.0.0.1", SEC_NONE, 0),
        KINT("larder.registry_port", larder.registry_port, 6570, 0, 65535, SEC_NONE, 0),
        KINT("larder.online_port", larder.online_port, 50051, 0, 65535, SEC_NONE, 0),
        KINT("larder.online_http_port", larder.online_http_port, 6566, 0, 65535, SEC_NONE, 0),
        KINT("larder.offline_port", larder.offline_port, 8815, 0, 65535, SEC_NONE, 0),
        KSTR("larder.offline_advertise_address", larder.offline_advertise_address, NULL, SEC_NONE,
             0),
        KSTR("larder.tls_cert", larder.tls_cert, NULL, SEC_NONE, 0),
        KSTR("larder.tls_key", larder.tls_key, NULL, SEC_NONE, 0),
        KSTR("larder.tls_client_ca", larder.tls_client_ca, NULL, SEC_NONE, 0),
        KINT("larder.online_max_rows", larder.online_max_rows, 10000, 1, 10000000, SEC_NONE, 0),
        KINT("larder.online_max_values", larder.online_max_values, 1000000, 1, 100000000, SEC_NONE,
             0),
        KBOOL("larder.online_python_statuses", larder.online_python_statuses, 0, SEC_NONE, 0),
        KINT("larder.registry_max_request_bytes", larder.registry_max_request_bytes,
             4 * 1024 * 1024, 1024, 1024 * 1024 * 1024, SEC_NONE, 0),
        KINT("larder.registry_max_page_size", larder.registry_max_page_size, 10000, 1, 1000000,
             SEC_NONE, 0),
        KINT("larder.registry_max_objects_per_project", larder.registry_max_objects_per_project,
             100000, 1, 100000000, SEC_NONE, 0),
};

#define NKEYS (sizeof keys / sizeof keys[0])

/* Top-level keys that open a section. A scalar in place of the mapping sets
 * `shorthand` (registry: data/registry.db, online_store: redis). */
typedef struct section {
    const char *name;
    const char *prefix; /* differs from name only for the legacy alias */
    const char *type_key;
    const char *shorthand;
} section;

static const section sections[] = {
        {"registry", "registry", "registry_type", "path"},
        {"online_store", "online_store", "type", "type"},
        {"offline_store", "offline_store", "type", "type"},
        {"auth", "auth", "type", "type"},
        {"feature_server", "feature_server", "type", NULL},
        {"materialization", "materialization", NULL, NULL},
        {"batch_engine", "batch_engine", "type", "type"},
        {"batch_engine_config", "batch_engine", "type", "type"},
        {"larder", "larder", NULL, NULL},
};

static const section *find_section(const char *name)
{
    for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++)
        if (strcmp(sections[i].name, name) == 0)
            return &sections[i];
    return NULL;
}

/* ===== field access ===== */

static void *field(ld_config *c, const key_def *k)
{
    return (char *)c + k->off;
}

static const void *cfield(const ld_config *c, const key_def *k)
{
    return (const char *)c + k->off;
}

static int section_type(const ld_config *c, enum sec s)
{
    switch (s) {
    case SEC_REGISTRY:
        return (int)c->registry.registry_type;
    case SEC_ONLINE:
        return (int)c->online_store.type;
    case SEC_OFFLINE:
        return (int)c->offline_store.type;
    case SEC_AUTH:
        return (int)c->auth.type;
    case SEC_FS:
        return (int)c->feature_server.type;
    case SEC_NONE:
        break;
    }
    return 0;
}

static const char *section_type_key(enum sec s)
{
    switch (s) {
    case SEC_REGISTRY:
        return "registry.registry_type";
    case SEC_ONLINE:
        return "online_store.type";
    case SEC_OFFLINE:
        return "offline_store.type";
    case SEC_AUTH:
        return "auth.type";
    case SEC_FS:
        return "feature_server.type";
    case SEC_NONE:
        break;
    }
    return "";
}

static bool applies(const ld_config *c, const key_def *k)
{
    return k->mask == 0 || (k->mask & BIT(section_type(c, k->sec))) != 0;
}

static const char *choice_name(const choice *ch, int v)
{
    for (; ch->name; ch++)
        if (ch->value == v && !(ch->flags & CH_HIDDEN))
            return ch->name;
    return "?";
}

static const key_def *key_by_name(const char *name)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (strcmp(keys[i].name, name) == 0)
            return &keys[i];
    return NULL;
}

/* Name of the current type of k's section, for messages. */
static const char *current_type_name(const ld_config *c, const key_def *k)
{
    const key_def *tk = key_by_name(section_type_key(k->sec));
    return tk ? choice_name(tk->choices, section_type(c, k->sec)) : "?";
}

enum lookup { L_FOUND, L_NOT_APPLICABLE, L_UNKNOWN };

/* The entry for a dotted key, the "parent.*" wildcard included. */
static enum lookup find_key(const ld_config *c, const char *name, const key_def **out)
{
    const key_def *seen = NULL;
    for (size_t i = 0; i < NKEYS; i++) {
        if (strcmp(keys[i].name, name) != 0)
            continue;
        if (applies(c, &keys[i])) {
            *out = &keys[i];
            return L_FOUND;
        }
        seen = &keys[i];
    }
    if (seen) {
        *out = seen;
        return L_NOT_APPLICABLE;
    }
    const char *dot = strrchr(name, '.');
    if (dot) {
        size_t plen = (size_t)(dot - name);
        for (size_t i = 0; i < NKEYS; i++) {
            const char *kn = keys[i].name;
            if (strncmp(kn, name, plen) == 0 && strcmp(kn + plen, ".*") == 0) {
                *out = &keys[i];
                return L_FOUND;
            }
        }
    }
    return L_UNKNOWN;
}

/* Does some key live below `name.` (a nested mapping such as metrics)? */
static bool is_subsection(const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < NKEYS; i++)
        if (strncmp(keys[i].name, name, n) == 0 && keys[i].name[n] == '.' &&
            keys[i].name[n + 1] != '*')
            return true;
    return false;
}

/* ===== extras and warnings ===== */

static void extra_put(ld_config *c, const char *key, const char *value)
{
    for (size_t i = 0; i < c->nextras; i++) {
        if (strcmp(c->extras[i].key, key) == 0) {
            free(c->extras[i].value);
            c->extras[i].value = xstrdup(value);
            return;
        }
    }
    c->extras = xrealloc(c->extras, (c->nextras + 1) * sizeof *c->extras);
    c->extras[c->nextras].key = xstrdup(key);
    c->extras[c->nextras].value = xstrdup(value);
    c->nextras++;
}

const char *ld_config_extra(const ld_config *c, const char *dotted_key)
{
    for (size_t i = 0; i < c->nextras; i++)
        if (strcmp(c->extras[i].key, dotted_key) == 0)
            return c->extras[i].value;
    return NULL;
}

static void add_warning(ld_config *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add_warning(ld_config *c, const char *fmt, ...)
{
    if (c->nwarnings >= LD_CONFIG_MAX_WARNINGS) {
        c->nwarnings_dropped++;
        return;
    }
    ld_buf b = LD_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    ld_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    c->warnings = xrealloc(c->warnings, (c->nwarnings + 1) * sizeof *c->warnings);
    c->warnings[c->nwarnings++] = ld_buf_steal(&b, NULL);
}

/* ===== scalar parsing ===== */

/* yaml_forms: YAML 1.1 integers as PyYAML resolves them: decimal, 0x hex,
 * 0b binary and leading-0 octal, '_' allowed between digits. Otherwise
 * plain decimal only, as pydantic reads a string ("5"). */
static bool parse_int(const char *s, bool yaml_forms, int64_t *out)
{
    bool neg = false;
    if (*s == '+' || *s == '-')
        neg = *s++ == '-';
    int base = 10;
    if (yaml_forms && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
    } else if (yaml_forms && s[0] == '0' && s[1] == 'b') {
        base = 2;
        s += 2;
    } else if (yaml_forms && s[0] == '0' && s[1] != '\0') {
        base = 8;
        s += 1;
    }
    uint64_t v = 0;
    int ndigits = 0;
    for (; *s; s++) {
        if (*s == '_' && yaml_forms)
            continue;
        int d;
        if (*s >= '0' && *s <= '9')
            d = *s - '0';
        else if (*s >= 'a' && *s <= 'f')
            d = *s - 'a' + 10;
        else if (*s >= 'A' && *s <= 'F')
            d = *s - 'A' + 10;
        else
            return false;
        if (d >= base)
            return false;
        if (v > (UINT64_MAX - (uint64_t)d) / (uint64_t)base)
            return false;
        v = v * (uint64_t)base + (uint64_t)d;
        ndigits++;
    }
    if (ndigits == 0 || v > (uint64_t)INT64_MAX)
        return false;
    *out = neg ? -(int64_t)v : (int64_t)v;
    return true;
}

/* PyYAML's YAML 1.1 booleans (true/false, yes/no, on/off) in any case, and
 * 1/0 as pydantic takes for a bool. */
static bool parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

static bool parse_double(const char *s, double *out)
{
    if (*s == '\0')
        return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end != '\0' || errno != 0 || v != v)
        return false;
    *out = v;
    return true;
}

static bool valid_project_name(const char *s)
{
    if (*s == '\0' || *s == '_' || *s == '-')
        return false;
    for (; *s; s++) {
        char ch = *s;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

static void list_choices(const choice *ch, ld_buf *b)
{
    bool first = true;
    for (; ch->name; ch++) {
        if (ch->value == UNSUPPORTED || (ch->flags & CH_HIDDEN))
            continue;
        ld_buf_printf(b, "%s%s", first ? "" : ", ", ch->name);
        first = false;
    }
}

/* ===== setting one value ===== */

static void set_default(ld_config *c, const key_def *k)
{
    switch (k->kind) {
    case K_STR:
    case K_SECRET: {
        char **p = field(c, k);
        free(*p);
        *p = xstrdup(k->dstr);
        break;
    }
    case K_INT:
    case K_ENUM:
        *(int *)field(c, k) = (int)k->dnum;
        break;
    case K_BOOL:
        *(bool *)field(c, k) = k->dnum != 0;
        break;
    case K_DOUBLE:
        *(double *)field(c, k) = k->dnum;
        break;
    case K_EXTRA:
        break;
    }
}

/* Set k from text. `where` prefixes messages ("feature_store.yaml:7: " or
 * ""); `name` is the key as written (differs from k->name for wildcards);
 * `yaml_plain` says the text is an unquoted YAML scalar. Nothing changes
 * unless the value is valid. */
static int set_value(ld_config *c, const key_def *k, const char *name, const char *text,
                     bool yaml_plain, const char *where, ld_status *st)
{
    switch (k->kind) {
    case K_STR:
    case K_SECRET: {
        if (k->hook == H_PROJECT && !valid_project_name(text))
            return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                                 "%skey '%s': \"%.64s\" is not a valid project name (letters, "
                                 "digits, '_' and '-' only, not starting with '_' or '-')",
                                 where, name, text);
        char **p = field(c, k);
        free(*p);
        *p = xstrdup(text);
        return 0;
    }
    case K_INT: {
        int64_t v;
        /* a plain scalar that is no YAML int ("09") is a string to PyYAML,
         * which pydantic then reads as decimal */
        if (!(yaml_plain && parse_int(text, true, &v)) && !parse_int(text, false, &v))
            return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                                 "%skey '%s': expected an integer, got \"%.64s\"", where, name,
                                 text);
        if (v < k->min || v > k->max)
            return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                                 "%skey '%s': %lld is out of range (%lld..%lld)", where, name,
                                 (long long)v, (long long)k->min, (long long)k->max);
        *(int *)field(c, k) = (int)v;
        if (k->hook == H_EKSV && v < 3)
            add_warning(c,
                        "%skey '%s': serialization version %lld is deprecated by Feast; 3 is "
                        "recommended",
                        where, name, (long long)v);
        return 0;
    }
    case K_BOOL: {
        bool v;
        if (!parse_bool(text, &v))
            return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                                 "%skey '%s': expected a boolean (true/false, yes/no, on/off), "
                                 "got \"%.64s\"",
                                 where, name, text);
        *(bool *)field(c, k) = v;
        return 0;
    }
    case K_DOUBLE: {
        double v;
        if (!parse_double(text, &v))
            return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                                 "%skey '%s': expected a number, got \"%.64s\"", where, name, text);
        if (v < (double)k->min || v > (double)k->max)
            return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                                 "%skey '%s': %g is out of range (%lld..%lld)", where, name, v,
                                 (long long)k->min, (long long)k->max);
        *(double *)field(c, k) = v;
        return 0;
    }
    case K_ENUM: {
        const choice *ch;
        for (ch = k->choices; ch->name; ch++)
            if (k->ci ? strcasecmp(ch->name, text) == 0 : strcmp(ch->name, text) == 0)
                break;
        if (!ch->name || ch->value == UNSUPPORTED) {
            ld_buf allowed = LD_BUF_INIT;
            list_choices(k->choices, &allowed);
            if (ch->name)
                ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                              "%skey '%s': \"%s\" is a Feast value that larder does not support "
                              "(supported: %s)",
                              where, name, text, allowed.data);
            else
                ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                              "%skey '%s': unknown value \"%.64s\" (allowed: %s)", where, name,
                              text, allowed.data);
            ld_buf_free(&allowed);
            return -1;
        }
        *(int *)field(c, k) = ch->value;
        return 0;
    }
    case K_EXTRA:
        extra_put(c, name, text);
        return 0;
    }
    return 0;
}

/* ===== YAML walking ===== */

#define MAX_DEPTH 8
/* Mapping entries visited, merges and aliases counted each time they are
 * expanded: `<<: [*a, *a, ...]` nested a few levels would otherwise cost
 * time exponential in the file size. */
#define MAX_VISITS 100000

typedef struct loader {
    ld_config *c;
    yaml_document_t *doc;
    ld_status *st;
    bool saw_project;
    bool saw_registry;
    long visits;
    int seen_line[NKEYS]; /* line of the explicit setting, for duplicate warnings */
} loader;

static yaml_node_t *node_at(loader *L, int idx)
{
    return yaml_document_get_node(L->doc, idx);
}

static int line_of(const yaml_node_t *n)
{
    return (int)n->start_mark.line + 1;
}

static const char *kind_name(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_MAPPING_NODE:
        return "a mapping";
    case YAML_SEQUENCE_NODE:
        return "a sequence";
    default:
        return "a scalar";
    }
}

static const char *scalar_text(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

static bool is_plain(const yaml_node_t *n)
{
    return n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

/* PyYAML's null: an empty plain scalar, ~, null, Null, NULL. */
static bool is_null(const yaml_node_t *n)
{
    if (!is_plain(n))
        return false;
    const char *s = scalar_text(n);
    return s[0] == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
           strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

static bool is_merge_key(const yaml_node_t *n)
{
    return is_plain(n) && strcmp(scalar_text(n), "<<") == 0;
}

static void where_of(loader *L, const yaml_node_t *n, char *buf, size_t len)
{
    snprintf(buf, len, "%s:%d: ", L->c->source, line_of(n));
}

static int fail_at(loader *L, const yaml_node_t *n, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static int fail_at(loader *L, const yaml_node_t *n, const char *fmt, ...)
{
    char msg[LD_STATUS_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ld_status_set(L->st, GRPC_STATUS_INVALID_ARGUMENT, NULL, "%s:%d: %s", L->c->source,
                         line_of(n), msg);
}

/* Scalars with NUL bytes (double-quoted "\0") would be cut short by every C
 * consumer; refuse them. */
static int check_scalar(loader *L, const yaml_node_t *n, const char *name)
{
    if (strlen(scalar_text(n)) != n->data.scalar.length)
        return fail_at(L, n, "key '%s': value contains a NUL character", name);
    return 0;
}

/* Apply one value node to key k. */
static int apply(loader *L, const key_def *k, const char *name, yaml_node_t *v, bool from_merge)
{
    size_t idx = (size_t)(k - keys);
    if (!from_merge && k->kind != K_EXTRA) {
        if (L->seen_line[idx])
            add_warning(L->c, "%s:%d: duplicate key '%s' (line %d is overridden)", L->c->source,
                        line_of(v), name, L->seen_line[idx]);
        L->seen_line[idx] = line_of(v);
    }
    if (k->kind == K_EXTRA) {
        const char *text = NULL;
        if (v->type == YAML_SCALAR_NODE && !is_null(v)) {
            if (check_scalar(L, v, name))
                return -1;
            text = scalar_text(v);
        }
        extra_put(L->c, name, text);
        return 0;
    }
    if (v->type != YAML_SCALAR_NODE) {
        const char *want = k->kind == K_INT      ? "an integer"
                           : k->kind == K_BOOL   ? "a boolean"
                           : k->kind == K_DOUBLE ? "a number"
                                                 : "a string";
        return fail_at(L, v, "key '%s': expected %s, got %s", name, want, kind_name(v));
    }
    if (is_null(v)) {
        set_default(L->c, k);
        return 0;
    }
    if (check_scalar(L, v, name))
        return -1;
    char where[512];
    where_of(L, v, where, sizeof where);
    return set_value(L->c, k, name, scalar_text(v), is_plain(v), where, L->st);
}

/* Last explicit `key` of a mapping, else one from its `<<` merges. */
static yaml_node_t *map_get(loader *L, yaml_node_t *m, const char *key, int depth)
{
    if (!m || m->type != YAML_MAPPING_NODE || depth > MAX_DEPTH)
        return NULL;
    L->visits += m->data.mapping.pairs.top - m->data.mapping.pairs.start;
    if (L->visits > MAX_VISITS)
        return NULL; /* walk_mapping reports it */
    yaml_node_t *found = NULL;
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = node_at(L, p->key);
        if (kn && kn->type == YAML_SCALAR_NODE && strcmp(scalar_text(kn), key) == 0)
            found = node_at(L, p->value);
    }
    if (found)
        return found;
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = node_at(L, p->key);
        if (!kn || !is_merge_key(kn))
            continue;
        yaml_node_t *v = node_at(L, p->value);
        if (v && v->type == YAML_MAPPING_NODE) {
            if ((found = map_get(L, v, key, depth + 1)))
                return found;
        } else if (v && v->type == YAML_SEQUENCE_NODE) {
            /* the first mapping listed wins */
            for (yaml_node_item_t *it = v->data.sequence.items.start;
                 it < v->data.sequence.items.top; it++)
                if ((found = map_get(L, node_at(L, *it), key, depth + 1)))
                    return found;
        }
    }
    return NULL;
}

static int walk_mapping(loader *L, yaml_node_t *m, const char *prefix, const char *skip, int depth,
                        bool from_merge);

static int walk_section(loader *L, const section *s, yaml_node_t *v, int depth, bool from_merge);

static int handle_key(loader *L, const char *prefix, yaml_node_t *kn, yaml_node_t *v, int depth,
                      bool from_merge)
{
    const char *k = scalar_text(kn);
    if (!*prefix) {
        const section *s = find_section(k);
        if (s)
            return walk_section(L, s, v, depth, from_merge);
        if (strcmp(k, "project") == 0)
            L->saw_project = true;
        if (strcmp(k, "repo_path") == 0) {
            add_warning(L->c,
                        "%s:%d: key 'repo_path' is ignored (the repo path is the file's directory)",
                        L->c->source, line_of(kn));
            return 0;
        }
    }
    ld_buf full = LD_BUF_INIT;
    ld_buf_printf(&full, "%s%s%s", prefix, *prefix ? "." : "", k);
    const key_def *kd = NULL;
    int rc = 0;
    switch (find_key(L->c, full.data, &kd)) {
    case L_FOUND:
        rc = apply(L, kd, full.data, v, from_merge);
        break;
    case L_NOT_APPLICABLE:
        add_warning(L->c, "%s:%d: key '%s' does not apply to %s %s (ignored)", L->c->source,
                    line_of(kn), full.data, section_type_key(kd->sec), current_type_name(L->c, kd));
        break;
    case L_UNKNOWN:
        if (is_subsection(full.data)) {
            if (v->type == YAML_MAPPING_NODE)
                rc = walk_mapping(L, v, full.data, NULL, depth + 1, from_merge);
            else if (!is_null(v))
                rc = fail_at(L, v, "key '%s': expected a mapping, got %s", full.data, kind_name(v));
        } else {
            add_warning(L->c, "%s:%d: unknown key '%s' (ignored)", L->c->source, line_of(kn),
                        full.data);
        }
        break;
    }
    ld_buf_free(&full);
    return rc;
}

static int walk_merge(loader *L, yaml_node_t *v, const char *prefix, const char *skip, int depth)
{
    if (v->type == YAML_MAPPING_NODE)
        return walk_mapping(L, v, prefix, skip, depth + 1, true);
    if (v->type == YAML_SEQUENCE_NODE) {
        /* PyYAML: earlier mappings take precedence, so apply them last */
        for (yaml_node_item_t *it = v->data.sequence.items.top; it > v->data.sequence.items.start;
             it--) {
            yaml_node_t *item = node_at(L, it[-1]);
            if (!item || item->type != YAML_MAPPING_NODE)
                return fail_at(L, v, "merge key '<<' expects mappings");
            if (walk_mapping(L, item, prefix, skip, depth + 1, true))
                return -1;
        }
        return 0;
    }
    return fail_at(L, v, "merge key '<<' expects a mapping, got %s", kind_name(v));
}

static int walk_mapping(loader *L, yaml_node_t *m, const char *prefix, const char *skip, int depth,
                        bool from_merge)
{
    if (depth > MAX_DEPTH)
        return fail_at(L, m, "nesting deeper than %d levels", MAX_DEPTH);
    yaml_node_pair_t *start = m->data.mapping.pairs.start, *top = m->data.mapping.pairs.top;
    L->visits += top - start;
    if (L->visits > MAX_VISITS)
        return fail_at(L, m, "more than %d keys once aliases and merges are expanded", MAX_VISITS);
    /* merged keys first, so the mapping's own keys override them */
    for (yaml_node_pair_t *p = start; p < top; p++) {
        yaml_node_t *kn = node_at(L, p->key), *v = node_at(L, p->value);
        if (kn && v && is_merge_key(kn) && walk_merge(L, v, prefix, skip, depth))
            return -1;
    }
    for (yaml_node_pair_t *p = start; p < top; p++) {
        yaml_node_t *kn = node_at(L, p->key), *v = node_at(L, p->value);
        if (!kn || !v || is_merge_key(kn))
            continue;
        if (kn->type != YAML_SCALAR_NODE)
            return fail_at(L, kn, "expected a string key%s%s, got %s", *prefix ? " in " : "",
                           prefix, kind_name(kn));
        if (check_scalar(L, kn, prefix))
            return -1;
        if (skip && strcmp(scalar_text(kn), skip) == 0)
            continue;
        if (handle_key(L, prefix, kn, v, depth, from_merge))
            return -1;
    }
    return 0;
}

static int walk_section(loader *L, const section *s, yaml_node_t *v, int depth, bool from_merge)
{
    bool is_registry = strcmp(s->prefix, "registry") == 0;
    if (is_null(v))
        return 0; /* defaults; a null registry still counts as missing */
    if (is_registry)
        L->saw_registry = true;
    if (strcmp(s->prefix, "feature_server") == 0)
        L->c->feature_server.present = true;

    char name[64];
    if (v->type == YAML_SCALAR_NODE) {
        if (!s->shorthand)
            return fail_at(L, v, "key '%s': expected a mapping, got a scalar", s->name);
        snprintf(name, sizeof name, "%s.%s", s->prefix, s->shorthand);
        const key_def *k = key_by_name(name);
        if (apply(L, k, s->name, v, from_merge))
            return -1;
        if (is_registry)
            L->c->registry.registry_type = LD_REGISTRY_FILE;
        return 0;
    }
    if (v->type != YAML_MAPPING_NODE)
        return fail_at(L, v, "key '%s': expected a mapping%s, got %s", s->name,
                       s->shorthand ? " or a string" : "", kind_name(v));
    /* the type decides which keys apply, so it goes first */
    if (s->type_key) {
        yaml_node_t *t = map_get(L, v, s->type_key, 0);
        if (t) {
            snprintf(name, sizeof name, "%s.%s", s->prefix, s->type_key);
            if (apply(L, key_by_name(name), name, t, from_merge))
                return -1;
        }
    }
    return walk_mapping(L, v, s->prefix, s->type_key, depth + 1, from_merge);
}

/* ===== environment substitution ===== */

static bool is_word(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_';
}

/* posixpath.expandvars: `$name` (name = [A-Za-z0-9_]+) or `${anything but
 * '}'}`; replaced when the variable is set, kept verbatim otherwise. The
 * replacement is not scanned again. */
char *ld_config_expand_env(const char *text, size_t len, size_t *out_len)
{
    ld_buf out = LD_BUF_INIT;
    ld_buf_reserve(&out, len + 1);
    size_t i = 0;
    while (i < len) {
        const char *dollar = memchr(text + i, '$', len - i);
        if (!dollar) {
            ld_buf_append(&out, text + i, len - i);
            break;
        }
        size_t d = (size_t)(dollar - text);
        ld_buf_append(&out, text + i, d - i);
        size_t name_start = d + 1, name_end = name_start, end = name_start;
        if (name_start < len && text[name_start] == '{') {
            const char *close = memchr(text + name_start, '}', len - name_start);
            if (close) {
                name_start++;
                name_end = (size_t)(close - text);
                end = name_end + 1;
            }
        } else {
            while (name_end < len && is_word(text[name_end]))
                name_end++;
            end = name_end;
        }
        if (end == d + 1) { /* a lone '$' */
            ld_buf_putc(&out, '$');
            i = d + 1;
            continue;
        }
        char *name = strndup(text + name_start, name_end - name_start);
        if (!name)
            abort();
        /* a name with '=' or a NUL can't be an environment key */
        const char *val = NULL;
        if (*name && !strchr(name, '=') && strlen(name) == name_end - name_start)
            val = getenv(name);
        free(name);
        if (val)
            ld_buf_puts(&out, val);
        else
            ld_buf_append(&out, text + d, end - d);
        i = end;
    }
    ld_buf_reserve(&out, 0)[0] = '\0';
    size_t n;
    char *s = ld_buf_steal(&out, &n);
    if (out_len)
        *out_len = n;
    return s;
}

/* ===== construction ===== */

static char *absolute_dir(const char *dir)
{
    char *r = realpath(dir && *dir ? dir : ".", NULL);
    if (r)
        return r;
    if (dir && dir[0] == '/')
        return xstrdup(dir);
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd))
        return xstrdup(dir && *dir ? dir : ".");
    if (!dir || !*dir)
        return xstrdup(cwd);
    ld_buf b = LD_BUF_INIT;
    ld_buf_printf(&b, "%s/%s", cwd, dir);
    return ld_buf_steal(&b, NULL);
}

static ld_config *config_new(const char *repo_path, const char *source)
{
    ld_config *c = xcalloc(1, sizeof *c);
    for (size_t i = 0; i < NKEYS; i++)
        set_default(c, &keys[i]);
    c->repo_path = absolute_dir(repo_path);
    c->source = xstrdup(source);
    return c;
}

/* Defaults that depend on another setting. */
static void finish(ld_config *c)
{
    if (!c->feature_server.transformation_service_endpoint)
        c->feature_server.transformation_service_endpoint =
                xstrdup(c->feature_server.type == LD_FEATURE_SERVER_MCP ? "localhost:6566"
                                                                        : "localhost:6569");
}

ld_config *ld_config_default(const char *repo_path)
{
    ld_config *c = config_new(repo_path, NULL);
    c->project = xstrdup("default");
    c->registry.path = xstrdup("data/registry.db");
    finish(c);
    return c;
}

void ld_config_free(ld_config *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < NKEYS; i++)
        if (keys[i].kind == K_STR || keys[i].kind == K_SECRET)
            free(*(char **)field(c, &keys[i]));
    for (size_t i = 0; i < c->nextras; i++) {
        free(c->extras[i].key);
        free(c->extras[i].value);
    }
    free(c->extras);
    for (size_t i = 0; i < c->nwarnings; i++)
        free(c->warnings[i]);
    free(c->warnings);
    free(c->source);
    free(c->repo_path);
    free(c);
}

/* ===== validation ===== */

static int need(const ld_config *c, const char *value, const char *key, const char *why,
                ld_status *st)
{
    if (value && *value)
        return 0;
    return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL, "%s%smissing required key '%s'%s",
                         c->source ? c->source : "", c->source ? ": " : "", key, why);
}

static int check_pg(const ld_config *c, const ld_postgres_config *pg, const char *sect,
                    ld_status *st)
{
    char key[64];
    const char *why = " (required for type postgres)";
    snprintf(key, sizeof key, "%s.host", sect);
    if (need(c, pg->host, key, why, st))
        return -1;
    snprintf(key, sizeof key, "%s.database", sect);
    if (need(c, pg->database, key, why, st))
        return -1;
    snprintf(key, sizeof key, "%s.user", sect);
    if (need(c, pg->user, key, why, st))
        return -1;
    if (pg->min_conn > pg->max_conn)
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "%s%skey '%s.min_conn' (%d) is larger than '%s.max_conn' (%d)",
                             c->source ? c->source : "", c->source ? ": " : "", sect, pg->min_conn,
                             sect, pg->max_conn);
    return 0;
}

int ld_config_validate(const ld_config *c, ld_status *st)
{
    const char *src = c->source ? c->source : "";
    const char *sep = c->source ? ": " : "";
    if (need(c, c->project, "project", "", st))
        return -1;
    if (!valid_project_name(c->project))
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "%s%skey 'project': \"%.64s\" is not a valid project name", src, sep,
                             c->project);
    if (c->online_store.type == LD_ONLINE_SQLITE && strchr(c->project, '-'))
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "%s%skey 'project': project names for SQLite online stores cannot "
                             "contain hyphens because they are used in table names",
                             src, sep);
    if (need(c, c->registry.path, "registry.path", "", st))
        return -1;
    if (c->online_store.type == LD_ONLINE_POSTGRES &&
        check_pg(c, &c->online_store.postgres, "online_store", st))
        return -1;
    if (c->offline_store.type == LD_OFFLINE_POSTGRES &&
        check_pg(c, &c->offline_store.postgres, "offline_store", st))
        return -1;
    if (c->offline_store.type == LD_OFFLINE_REMOTE &&
        need(c, c->offline_store.remote.host, "offline_store.host", " (required for type remote)",
             st))
        return -1;
    const ld_larder_config *l = &c->larder;
    if (!l->tls_cert != !l->tls_key)
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "%s%skeys 'larder.tls_cert' and 'larder.tls_key' must be set together",
                             src, sep);
    if (l->tls_client_ca && !l->tls_cert)
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "%s%skey 'larder.tls_client_ca' needs 'larder.tls_cert' and "
                             "'larder.tls_key'",
                             src, sep);
    return 0;
}

/* ===== loading ===== */

static int yaml_error(ld_config *c, yaml_parser_t *p, ld_status *st)
{
    const char *problem = p->problem ? p->problem : "invalid YAML";
    if (p->error == YAML_MEMORY_ERROR)
        abort();
    if (p->context)
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "%s:%zu:%zu: YAML syntax error: %s %s (line %zu)", c->source,
                             p->problem_mark.line + 1, p->problem_mark.column + 1, problem,
                             p->context, p->context_mark.line + 1);
    return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                         "%s:%zu:%zu: YAML syntax error: %s", c->source, p->problem_mark.line + 1,
                         p->problem_mark.column + 1, problem);
}

static int parse_into(ld_config *c, const char *text, size_t len, ld_status *st)
{
    yaml_parser_t parser;
    yaml_document_t doc, extra;
    if (!yaml_parser_initialize(&parser))
        abort();
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        int rc = yaml_error(c, &parser, st);
        yaml_parser_delete(&parser);
        return rc;
    }
    int rc = 0;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root) {
        /* safe_load wants exactly one document */
        if (!yaml_parser_load(&parser, &extra)) {
            rc = yaml_error(c, &parser, st);
        } else {
            yaml_node_t *r2 = yaml_document_get_root_node(&extra);
            if (r2)
                rc = ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                                   "%s:%zu: expected a single YAML document", c->source,
                                   r2->start_mark.line + 1);
            yaml_document_delete(&extra);
        }
    }
    if (rc == 0) {
        loader *L = xcalloc(1, sizeof *L);
        L->c = c;
        L->doc = &doc;
        L->st = st;
        if (!root)
            rc = ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                               "%s: the file is empty: missing required key 'project'", c->source);
        else if (root->type != YAML_MAPPING_NODE)
            rc = fail_at(L, root, "expected a mapping at the top level, got %s", kind_name(root));
        else
            rc = walk_mapping(L, root, "", NULL, 0, false);
        if (rc == 0 && !L->saw_project)
            rc = ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                               "%s: missing required key 'project'", c->source);
        if (rc == 0 && !L->saw_registry)
            rc = ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                               "%s: missing required key 'registry' (e.g. registry: "
                               "data/registry.db)",
                               c->source);
        free(L);
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return rc;
}

static int load_text(const char *text, size_t len, const char *repo_path, const char *source,
                     ld_config **out, ld_status *st)
{
    *out = NULL;
    if (len > LD_CONFIG_MAX_FILE_BYTES)
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "%s: file is larger than %d bytes", source, LD_CONFIG_MAX_FILE_BYTES);
    size_t xlen;
    char *expanded = ld_config_expand_env(text, len, &xlen);
    if (xlen > LD_CONFIG_MAX_FILE_BYTES) {
        free(expanded);
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "%s: larger than %d bytes after environment substitution", source,
                             LD_CONFIG_MAX_FILE_BYTES);
    }
    ld_config *c = config_new(repo_path, source);
    int rc = parse_into(c, expanded, xlen, st);
    free(expanded);
    if (rc == 0) {
        finish(c);
        rc = ld_config_validate(c, st);
    }
    if (rc != 0) {
        ld_config_free(c);
        return -1;
    }
    *out = c;
    return 0;
}

int ld_config_load_string(const char *yaml_text, size_t len, const char *repo_path, ld_config **out,
                          ld_status *st)
{
    return load_text(yaml_text, len, repo_path, "feature_store.yaml", out, st);
}

int ld_config_load(const char *path, ld_config **out, ld_status *st)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        char eb[128];
        return ld_status_set(st, e == ENOENT ? GRPC_STATUS_NOT_FOUND : GRPC_STATUS_INVALID_ARGUMENT,
                             NULL, "cannot open %s: %s", path, strerror_r(e, eb, sizeof eb));
    }
    /* read at most one byte past the limit: the size of a pipe or /proc
     * file is unknown up front */
    size_t cap = LD_CONFIG_MAX_FILE_BYTES + 1, len = 0;
    char *buf = xcalloc(1, cap);
    while (len < cap) {
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            char eb[128];
            close(fd);
            free(buf);
            return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL, "cannot read %s: %s", path,
                                 strerror_r(e, eb, sizeof eb));
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    char *dir = strdup(path);
    if (!dir)
        abort();
    char *slash = strrchr(dir, '/');
    if (slash)
        *(slash == dir ? slash + 1 : slash) = '\0';
    else
        strcpy(dir, ".");
    int rc = load_text(buf, len, dir, path, out, st);
    free(dir);
    free(buf);
    return rc;
}

/* ===== overrides ===== */

int ld_config_set(ld_config *c, const char *dotted_key, const char *value, ld_status *st)
{
    if (strcmp(dotted_key, "repo_path") == 0) {
        if (!*value)
            return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                                 "key 'repo_path': expected a directory");
        free(c->repo_path);
        c->repo_path = absolute_dir(value);
        return 0;
    }
    const section *s = find_section(dotted_key);
    char name[64];
    const char *key = dotted_key;
    if (s) {
        if (!s->shorthand)
            return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                                 "key '%s' is a section; set one of its keys ('%s.<key>')",
                                 dotted_key, dotted_key);
        snprintf(name, sizeof name, "%s.%s", s->prefix, s->shorthand);
        key = name;
    }
    const key_def *k = NULL;
    switch (find_key(c, key, &k)) {
    case L_FOUND:
        break;
    case L_NOT_APPLICABLE:
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "key '%s' does not apply to %s %s", dotted_key,
                             section_type_key(k->sec), current_type_name(c, k));
    case L_UNKNOWN:
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "unknown configuration key '%s'", dotted_key);
    }
    if (*value == '\0' && k->kind != K_EXTRA) {
        if (k->hook == H_PROJECT)
            return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                                 "key 'project': expected a project name");
        set_default(c, k);
    } else if (set_value(c, k, key, value, false, "", st)) {
        return -1;
    }
    if (s && strcmp(s->prefix, "registry") == 0)
        c->registry.registry_type = LD_REGISTRY_FILE;
    if (s && strcmp(s->prefix, "feature_server") == 0)
        c->feature_server.present = true;
    return 0;
}

/* ===== paths and dump ===== */

char *ld_config_resolve_path(const ld_config *c, const char *p)
{
    if (!p)
        return NULL;
    if (p[0] == '/' || strstr(p, "://") || !c->repo_path)
        return xstrdup(p);
    ld_buf b = LD_BUF_INIT;
    ld_buf_printf(&b, "%s/%s", c->repo_path, p);
    return ld_buf_steal(&b, NULL);
}

static bool secret_name(const char *key)
{
    return strstr(key, "password") || strstr(key, "secret") || strstr(key, "token");
}

/* Copy s with the password of "scheme://user:pass@host" and of
 * "password=..." (Redis connection strings) replaced by ****. */
static void put_masked(ld_buf *out, const char *s)
{
    const char *scheme = strstr(s, "://");
    if (scheme) {
        const char *auth = scheme + 3;
        const char *at = strchr(auth, '@');
        const char *slash = strchr(auth, '/');
        const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
        if (at && (!slash || at < slash) && colon) {
            ld_buf_append(out, s, (size_t)(colon + 1 - s));
            ld_buf_puts(out, "****");
            s = at;
        }
    }
    while (*s) {
        const char *pw = strcasestr(s, "password=");
        if (!pw) {
            ld_buf_puts(out, s);
            return;
        }
        pw += strlen("password=");
        ld_buf_append(out, s, (size_t)(pw - s));
        ld_buf_puts(out, "****");
        s = pw + strcspn(pw, ",");
    }
}

void ld_config_dump(const ld_config *c, ld_buf *out)
{
    ld_buf_printf(out, "# source = %s\n", c->source ? c->source : "(defaults)");
    ld_buf_puts(out, "repo_path = ");
    ld_buf_json_str(out, c->repo_path, strlen(c->repo_path), 0);
    ld_buf_putc(out, '\n');
    for (size_t i = 0; i < NKEYS; i++) {
        const key_def *k = &keys[i];
        if (k->kind == K_EXTRA || !applies(c, k))
            continue;
        ld_buf_printf(out, "%s = ", k->name);
        switch (k->kind) {
        case K_STR: {
            const char *s = *(char *const *)cfield(c, k);
            if (!s) {
                ld_buf_puts(out, "null");
            } else {
                ld_buf m = LD_BUF_INIT;
                put_masked(&m, s);
                ld_buf_json_str(out, m.data, m.len, 0);
                ld_buf_free(&m);
            }
            break;
        }
        case K_SECRET:
            ld_buf_puts(out, *(char *const *)cfield(c, k) ? "\"****\"" : "null");
            break;
        case K_INT:
            ld_buf_printf(out, "%d", *(const int *)cfield(c, k));
            break;
        case K_BOOL:
            ld_buf_puts(out, *(const bool *)cfield(c, k) ? "true" : "false");
            break;
        case K_DOUBLE:
            ld_buf_printf(out, "%g", *(const double *)cfield(c, k));
            break;
        case K_ENUM:
            ld_buf_puts(out, choice_name(k->choices, *(const int *)cfield(c, k)));
            break;
        case K_EXTRA:
            break;
        }
        ld_buf_putc(out, '\n');
    }
    for (size_t i = 0; i < c->nextras; i++) {
        const ld_config_kv *kv = &c->extras[i];
        ld_buf_printf(out, "%s = ", kv->key);
        if (!kv->value) {
            ld_buf_puts(out, "null");
        } else if (secret_name(kv->key)) {
            ld_buf_puts(out, "\"****\"");
        } else {
            ld_buf m = LD_BUF_INIT;
            put_masked(&m, kv->value);
            ld_buf_json_str(out, m.data, m.len, 0);
            ld_buf_free(&m);
        }
        ld_buf_putc(out, '\n');
    }
}

int ld_postgres_params(const ld_postgres_config *pg, const char *application, const char **kw,
                       char **val)
{
    char port[16], idle[16];
    snprintf(port, sizeof port, "%d", pg->port);
    snprintf(idle, sizeof idle, "%d", pg->keepalives_idle);
    const char *kv[LD_PG_MAX_PARAMS][2] = {
            {"host", pg->host},
            {"port", port},
            {"dbname", pg->database},
            {"user", pg->user},
            {"password", pg->password},
            {"sslmode", pg->sslmode},
            {"sslkey", pg->sslkey_path},
            {"sslcert", pg->sslcert_path},
            {"sslrootcert", pg->sslrootcert_path},
            {"keepalives_idle", pg->keepalives_idle > 0 ? idle : NULL},
            {"application_name", application},
            {"connect_timeout", "10"},
    };
    int n = 0;
    for (size_t i = 0; i < LD_PG_MAX_PARAMS; i++) {
        if (!kv[i][1] || !*kv[i][1])
            continue;
        kw[n] = kv[i][0];
        val[n] = strdup(kv[i][1]);
        if (!val[n]) {
            while (n > 0)
                free(val[--n]);
            kw[0] = NULL;
            val[0] = NULL;
            return -1;
        }
        n++;
    }
    kw[n] = NULL;
    val[n] = NULL;
    return n;
}
