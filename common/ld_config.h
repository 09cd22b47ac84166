/* ld_config: Feast's feature_store.yaml, plus larder's own `larder:` section.
 *
 * The file is read the way Feast reads it (repo_config.load_repo_config):
 * os.path.expandvars runs over the raw text first ($VAR and ${VAR} are
 * replaced when VAR is set and left as they are when it is not), then the
 * text is parsed as YAML 1.1 (libyaml; booleans and integers resolved as
 * PyYAML does). Every setting lives in one table in ld_config.c that gives
 * its dotted key, type, bounds, default and the field it fills, so parsing,
 * ld_config_set() and ld_config_dump() share one definition.
 *
 * Checking differs from Feast's on purpose: Feast's store configs forbid
 * unknown keys; larder warns about them (ld_config.warnings) and goes on.
 * A value of the wrong type, a value out of range, an enum value that is not
 * allowed and a missing required key are errors (INVALID_ARGUMENT) naming
 * "file:line" and the dotted key. A YAML null (`key:`, `~`, `null`) means
 * "use the default". Scalars are accepted as strings whatever they resolve
 * to (`password: 12345` is the string "12345"); integer settings also accept
 * a quoted decimal ("5"), so `port: "${PGPORT}"` works.
 *
 * Does a `larder:` section break Feast? No. RepoConfig derives from
 * FeastBaseModel, whose pydantic config is extra="allow" (RepoConfig's own
 * model_config only adds populate_by_name and pydantic merges the two), so
 * Feast's SDK keeps an unknown top-level key as an extra attribute and
 * ignores it. Checked against feast-dev/feast master (pydantic >= 2.10) and
 * with pydantic 2.13 locally. Only the store sections (online_store,
 * offline_store, ...) forbid unknown keys, so larder's settings must stay out
 * of those.
 *
 * The `larder:` section (all keys optional):
 *
 *   larder:
 *     host: 127.0.0.1              # address every server binds
 *     registry_port: 6570          # gRPC RegistryServer (feast serve_registry)
 *     online_port: 50051           # gRPC serving (feast listen)
 *     online_http_port: 6566       # HTTP feature server (feast serve)
 *     offline_port: 8815           # Arrow Flight offline server (feast serve_offline)
 *                                  #   ports: 0..65535, 0 = let the kernel pick
 *     offline_advertise_address: h:p  # what larder-offline announces to the registry
 *                                  #   ("host" or "host:port"; default from host/port)
 *     workers: 1                   # completion-queue threads per server (1..256)
 *     max_message_bytes: 16777216  # largest gRPC message received or sent
 *     grace_period_seconds: 5      # shutdown: time given to calls in flight
 *     keepalive_time_seconds: 60   # HTTP/2 keepalive ping interval
 *     keepalive_timeout_seconds: 20
 *     access_log: true             # one log line per finished call
 *     cpu_dma_latency_us: -1       # >= 0: hold this CPU wake-up latency limit (PM QoS,
 *                                  #   /dev/cpu_dma_latency, needs root) while serving;
 *                                  #   0 = idle CPUs poll. -1 = leave the system's policy
 *     log_level: info              # debug|info|warning|warn|error|off
 *     log_format: text             # text|json
 *     tls_cert: server.crt         # PEM chain; TLS is on when tls_cert and tls_key are set
 *     tls_key: server.key
 *     tls_client_ca: ca.crt        # when set, clients must present a certificate it signed
 *     online_max_rows: 10000         # entity rows in one online request
 *     online_max_values: 1000000     # entity rows x features in one online request
 *     online_python_statuses: false  # true: statuses as Feast's Python server gives them
 *                                    #   (PRESENT/NOT_FOUND only, no TTL check)
 *     registry_max_request_bytes: 4194304        # largest request the registry accepts
 *     registry_max_page_size: 10000              # largest pagination limit
 *     registry_max_objects_per_project: 100000   # per kind and project
 *
 * Relative paths (registry file, sqlite file, TLS files) are relative to
 * repo_path, the directory of the yaml file; ld_config_resolve_path() makes
 * them absolute. Fields keep the text as written.
 *
 * Thread-safety: a loaded ld_config is read-only data; share it freely. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ld_buf.h"
#include "ld_log.h"
#include "ld_status.h"

/* Largest feature_store.yaml accepted, before and after env substitution. */
#define LD_CONFIG_MAX_FILE_BYTES (1024 * 1024)
/* Warnings kept per config; later ones are counted, not stored. */
#define LD_CONFIG_MAX_WARNINGS 64

typedef enum { LD_REGISTRY_FILE, LD_REGISTRY_SQL, LD_REGISTRY_REMOTE } ld_registry_type;
typedef enum { LD_CACHE_SYNC, LD_CACHE_THREAD } ld_cache_mode;
typedef enum { LD_SCHEMA_AUTO, LD_SCHEMA_VERIFY, LD_SCHEMA_SKIP } ld_schema_mode;
typedef enum {
    LD_ONLINE_SQLITE,
    LD_ONLINE_REDIS,
    LD_ONLINE_POSTGRES,
    LD_ONLINE_REMOTE,
} ld_online_type;
typedef enum { LD_REDIS_SINGLE, LD_REDIS_CLUSTER, LD_REDIS_SENTINEL } ld_redis_type;
typedef enum { LD_PG_SINGLETON, LD_PG_POOL } ld_pg_conn_type;
typedef enum {
    LD_OFFLINE_DASK, /* "dask" and its alias "file" */
    LD_OFFLINE_DUCKDB,
    LD_OFFLINE_POSTGRES,
    LD_OFFLINE_REMOTE,
} ld_offline_type;
typedef enum { LD_ENTITY_SELECT_TEMP_TABLE, LD_ENTITY_SELECT_EMBED_QUERY } ld_entity_select_mode;
typedef enum { LD_SCHEME_HTTP, LD_SCHEME_HTTPS } ld_scheme;
typedef enum { LD_AUTH_NONE, LD_AUTH_OIDC, LD_AUTH_KUBERNETES } ld_auth_type;
typedef enum { LD_FEATURE_SERVER_LOCAL, LD_FEATURE_SERVER_MCP } ld_feature_server_type;

/* `registry:`. A plain string is a file registry at that path. */
typedef struct ld_registry_config {
    ld_registry_type registry_type; /* file */
    char *registry_store_type;      /* optional class override; NULL if unset */
    char *path;                     /* file path, SQLAlchemy URL or host:port; required */
    int cache_ttl_seconds;          /* 600; 0 = the cache never expires */
    ld_cache_mode cache_mode;       /* sync */
    bool purge_feast_metadata;
    bool enable_online_feature_view_versioning;
    /* sql */
    char *read_path; /* NULL = use path */
    ld_schema_mode schema_mode;
    int thread_pool_executor_worker_count;
    /* remote */
    char *cert;
    bool is_tls;
    char *client_cert;
    char *client_key;
    char *authority;
} ld_registry_config;

/* Feast's PostgreSQLConfig; used by the online and the offline store. */
typedef struct ld_postgres_config {
    char *host;      /* required */
    int port;        /* 5432 */
    char *database;  /* required */
    char *db_schema; /* "public" */
    char *user;      /* required */
    char *password;  /* NULL = libpq's own lookup (PGPASSWORD, .pgpass) */
    char *sslmode;   /* "require" */
    char *sslkey_path;
    char *sslcert_path;
    char *sslrootcert_path;
    int min_conn;              /* 1 */
    int max_conn;              /* 10 */
    ld_pg_conn_type conn_type; /* singleton */
    int keepalives_idle;       /* 0 = unset */
} ld_postgres_config;

typedef struct ld_sqlite_config {
    char *path; /* "data/online.db" */
} ld_sqlite_config;

typedef struct ld_redis_config {
    ld_redis_type redis_type;    /* redis */
    char *connection_string;     /* "localhost:6379" ("host:port[,host:port][,k=v...]") */
    char *sentinel_master;       /* "mymaster" */
    int key_ttl_seconds;         /* 0 = keys never expire */
    bool full_scan_for_deletion; /* true */
    bool skip_dedup;             /* false */
} ld_redis_config;

typedef struct ld_remote_online_config {
    char *path; /* "http://localhost:6566" */
    char *cert;
    int connection_pool_size;    /* 50 */
    int connection_idle_timeout; /* 300 */
    int connection_retries;      /* 3 */
} ld_remote_online_config;

/* `online_store:` (default {type: sqlite, path: data/online.db}). Only the
 * member matching `type` is meaningful; the others hold their defaults. */
typedef struct ld_online_store_config {
    ld_online_type type;
    ld_sqlite_config sqlite;
    ld_redis_config redis;
    ld_postgres_config postgres;
    ld_remote_online_config remote;
} ld_online_store_config;

typedef struct ld_remote_offline_config {
    char *host; /* required */
    int port;   /* 0 = unset */
    ld_scheme scheme;
    char *cert;
    int connection_retries; /* 3 */
} ld_remote_offline_config;

typedef struct ld_duckdb_config {
    char *staging_location;
    char *staging_location_endpoint_override;
} ld_duckdb_config;

/* `offline_store:` (default {type: dask}). */
typedef struct ld_offline_store_config {
    ld_offline_type type;
    ld_postgres_config postgres;
    ld_entity_select_mode entity_select_mode; /* postgres; temp_table */
    ld_remote_offline_config remote;
    ld_duckdb_config duckdb;
} ld_offline_store_config;

/* `auth:` (default no_auth). Server-side OIDC needs auth_discovery_url; the
 * client-side keys (username ... token_refresh_margin_seconds) are kept for
 * larder's own clients. Whether a given combination is usable is for the
 * auth module to decide. */
typedef struct ld_auth_config {
    ld_auth_type type;
    char *auth_discovery_url;
    char *client_id;
    char *ui_client_id;
    bool verify_ssl; /* true */
    char *ca_cert_path;
    char *audience;                      /* NULL = aud not checked */
    char *issuer;                        /* NULL = iss not checked */
    int jwks_cache_lifespan_seconds;     /* 300 */
    double jwks_request_timeout_seconds; /* 10 */
    char *username;
    char *password;
    char *client_secret;
    char *token;
    char *token_env_var;
    double token_refresh_margin_seconds; /* 30 */
    char *user_token;                    /* kubernetes */
} ld_auth_config;

typedef struct ld_metrics_config {
    bool enabled; /* false; the per-category switches below default to true */
    bool resource;
    bool request;
    bool online_features;
    bool push;
    bool materialization;
    bool freshness;
    bool offline_features;
    bool audit_logging; /* false */
} ld_metrics_config;

typedef struct ld_feature_logging_config {
    bool enabled;
    int flush_interval_secs;         /* 600 */
    int write_to_disk_interval_secs; /* 30 */
    int queue_capacity;              /* 100000 */
    int emit_timeout_micro_secs;     /* 10000 */
} ld_feature_logging_config;

typedef struct ld_feature_server_config {
    bool present; /* the file has a feature_server section */
    ld_feature_server_type type;
    bool enabled;
    char *transformation_service_endpoint; /* local: "localhost:6569", mcp: "localhost:6566" */
    ld_metrics_config metrics;
    ld_feature_logging_config feature_logging;
    bool offline_push_batching_enabled;
    int offline_push_batching_batch_size;             /* 0 = unset */
    int offline_push_batching_batch_interval_seconds; /* 0 = unset */
} ld_feature_server_config;

typedef struct ld_materialization_config {
    bool pull_latest_features;
    int online_write_batch_size; /* 0 = everything in one batch */
} ld_materialization_config;

/* `batch_engine:` a string (the type) or a mapping with `type`; its other
 * keys are engine-specific and kept in ld_config.extras. */
typedef struct ld_batch_engine_config {
    char *type; /* "local" */
} ld_batch_engine_config;

typedef struct ld_larder_config {
    int workers; /* 1 */
    /* 16 MiB: gRPC's default receive limit (4 MiB) rejects the large push
     * and online-write batches materialization sends and big registry
     * protos; 16 MiB gives 4x headroom while keeping the memory one call can
     * pin bounded (workers x calls x 16 MiB). Feast's Python clients keep
     * their 4 MiB receive limit, so responses beyond it fail on their side
     * whatever we allow. */
    int max_message_bytes;
    int grace_period_seconds;      /* 5 */
    int keepalive_time_seconds;    /* 60 */
    int keepalive_timeout_seconds; /* 20 */
    bool access_log;               /* true */
    int cpu_dma_latency_us;        /* -1: untouched; else PM QoS limit held (ld_pmqos.h) */
    ld_log_level log_level;        /* info */
    ld_log_format log_format;      /* text */
    char *host;                    /* "127.0.0.1" */
    int registry_port;             /* 6570 */
    int online_port;               /* 50051 */
    int online_http_port;          /* 6566 */
    int offline_port;              /* 8815 */
    char *tls_cert;
    char *tls_key;
    char *tls_client_ca;
    int online_max_rows;            /* 10000: entity rows in one online request */
    int online_max_values;          /* 1000000: rows x features in one online request */
    bool online_python_statuses;    /* false: Go/Java statuses with TTL; true: Feast Python's */
    int registry_max_request_bytes; /* 4 MiB: largest object a client may apply */
    int registry_max_page_size;     /* 10000: largest pagination limit accepted */
    int registry_max_objects_per_project; /* 100000: objects of one kind in one project */
    /* what larder-offline announces to the registry ("host[:port]"); NULL: from
     * host and the bound port */
    char *offline_advertise_address;
} ld_larder_config;

/* A setting Feast knows that larder keeps as text only: engine options,
 * vector-store switches, embedding_model, ... value is NULL for a null,
 * a mapping or a sequence. */
typedef struct ld_config_kv {
    char *key; /* dotted: "batch_engine.partitions" */
    char *value;
} ld_config_kv;

/* Owns every string it points to; free with ld_config_free(). */
typedef struct ld_config {
    char *source;    /* file name used in messages; NULL for ld_config_default() */
    char *repo_path; /* absolute; directory of the yaml */
    char *project;   /* required; [A-Za-z0-9_-], not starting with '_' or '-' */
    char *project_description;
    char *provider; /* "local" */
    ld_registry_config registry;
    ld_online_store_config online_store;
    ld_offline_store_config offline_store;
    ld_auth_config auth;
    int entity_key_serialization_version; /* 3; 1 and 2 are accepted with a warning */
    bool coerce_tz_aware;                 /* true */
    ld_feature_server_config feature_server;
    ld_materialization_config materialization;
    ld_batch_engine_config batch_engine;
    ld_larder_config larder;

    ld_config_kv *extras;
    size_t nextras;
    /* "feature_store.yaml:12: unknown key 'online_store.foo' (ignored)".
     * The library never prints them; the caller logs them. */
    char **warnings;
    size_t nwarnings;
    size_t nwarnings_dropped; /* beyond LD_CONFIG_MAX_WARNINGS */
} ld_config;

/* Load and check the file at path. repo_path becomes the absolute directory
 * of path. On success *out owns a new config and 0 is returned; otherwise -1
 * with st set (NOT_FOUND if the file is missing, INVALID_ARGUMENT for a bad
 * file). */
int ld_config_load(const char *path, ld_config **out, ld_status *st);

/* As ld_config_load for text already in memory (len bytes, need not be
 * NUL-terminated). repo_path NULL means the current directory; messages name
 * "feature_store.yaml". */
int ld_config_load_string(const char *yaml_text, size_t len, const char *repo_path, ld_config **out,
                          ld_status *st);

/* Every default, project "default", registry "data/registry.db", for
 * running without a file. repo_path NULL means the current directory. */
ld_config *ld_config_default(const char *repo_path);

void ld_config_free(ld_config *c);

/* Set one scalar by dotted key ("larder.workers", "online_store.port",
 * "registry", "online_store" (= its type), "repo_path") with the same type
 * and range checks as the file; value "" resets a setting to its default.
 * The key must apply to the section's current type (online_store.host needs
 * type postgres). On error the config is unchanged. Run ld_config_validate()
 * after the last override. */
int ld_config_set(ld_config *c, const char *dotted_key, const char *value, ld_status *st);

/* Cross-field checks (required keys of the chosen backends, project name vs.
 * SQLite, TLS key/cert pairs). ld_config_load* already ran it. */
int ld_config_validate(const ld_config *c, ld_status *st);

/* Absolute form of p: p itself if absolute or a URL ("scheme://..."), else
 * repo_path/p. Returns a malloc'd string, or NULL when p is NULL. */
char *ld_config_resolve_path(const ld_config *c, const char *p);

/* Most libpq connection keywords ld_postgres_params() produces. */
#define LD_PG_MAX_PARAMS 12

/* libpq connection keywords (PQconnectdbParams) for a Feast PostgreSQL store
 * section: every setting that is set (host, port, dbname, user, password,
 * sslmode, sslkey, sslcert, sslrootcert, keepalives_idle), then
 * application_name = @application and connect_timeout = 10 s. @kw gets
 * static strings, @val malloc'd copies; both need LD_PG_MAX_PARAMS + 1
 * slots and end with NULL. Returns the count, or -1 when out of memory (the
 * copies made so far freed). */
int ld_postgres_params(const ld_postgres_config *pg, const char *application, const char **kw,
                       char **val);

/* Value of an extras entry, or NULL if absent (or present with no text). */
const char *ld_config_extra(const ld_config *c, const char *dotted_key);

/* Append "key = value" lines for every setting that applies, passwords,
 * tokens and URL/connection-string passwords shown as "****". */
void ld_config_dump(const ld_config *c, ld_buf *out);

/* os.path.expandvars over len bytes: returns a malloc'd NUL-terminated copy
 * and its length in *out_len. */
char *ld_config_expand_env(const char *text, size_t len, size_t *out_len);
