/* Unit tests for ld_config: feature_store.yaml loading, overrides, dump.
 * Runs from tests/unit (meson's workdir), so fixtures are data/... */
#include "ld_test.h"

#include <stdarg.h>
#include <unistd.h>

#include "ld_config.h"

static ld_status st;

/* Load text with repo_path /srv/repo; NULL on error (message in st). */
static ld_config *load(const char *text)
{
    ld_config *c = NULL;
    ld_status_clear(&st);
    if (ld_config_load_string(text, strlen(text), "/srv/repo", &c, &st) != 0)
        return NULL;
    return c;
}

/* Expect a load failure whose message contains want. */
static int fails_with(const char *text, const char *want)
{
    ld_config *c = load(text);
    if (c) {
        ld_config_free(c);
        printf("# loaded, expected an error containing: %s\n", want);
        return 0;
    }
    if (!strstr(st.msg, want)) {
        printf("# error \"%s\" lacks \"%s\"\n", st.msg, want);
        return 0;
    }
    return st.code == GRPC_STATUS_INVALID_ARGUMENT;
}

static int has_warning(const ld_config *c, const char *want)
{
    for (size_t i = 0; i < c->nwarnings; i++)
        if (strstr(c->warnings[i], want))
            return 1;
    printf("# no warning contains: %s\n", want);
    for (size_t i = 0; i < c->nwarnings; i++)
        printf("#   warning: %s\n", c->warnings[i]);
    return 0;
}

static int ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), m = strlen(tail);
    return n >= m && strcmp(s + n - m, tail) == 0;
}

LD_TEST(quickstart_file)
{
    ld_config *c = NULL;
    ld_status_clear(&st);
    LD_CHECK_INT(ld_config_load("data/feature_store_quickstart.yaml", &c, &st), 0);
    if (!c) {
        printf("# %s\n", st.msg);
        return;
    }
    LD_CHECK_STR(c->project, "my_project");
    LD_CHECK_STR(c->provider, "local");
    LD_CHECK_STR(c->source, "data/feature_store_quickstart.yaml");
    LD_CHECK(c->repo_path[0] == '/');
    LD_CHECK(ends_with(c->repo_path, "/tests/unit/data"));
    LD_CHECK_INT(c->registry.registry_type, LD_REGISTRY_FILE);
    LD_CHECK_STR(c->registry.path, "data/registry.db");
    LD_CHECK_INT(c->registry.cache_ttl_seconds, 600);
    LD_CHECK_INT(c->online_store.type, LD_ONLINE_SQLITE);
    LD_CHECK_STR(c->online_store.sqlite.path, "data/online_store.db");
    LD_CHECK_INT(c->offline_store.type, LD_OFFLINE_DASK);
    LD_CHECK_INT(c->auth.type, LD_AUTH_NONE);
    LD_CHECK_INT(c->entity_key_serialization_version, 3);
    LD_CHECK_INT(c->nwarnings, 0);

    char *reg = ld_config_resolve_path(c, c->registry.path);
    LD_CHECK(reg && reg[0] == '/' && ends_with(reg, "/tests/unit/data/data/registry.db"));
    free(reg);
    ld_config_free(c);
}

LD_TEST(production_file)
{
    ld_config *c = NULL;
    ld_status_clear(&st);
    LD_CHECK_INT(ld_config_load("data/feature_store_larder.yaml", &c, &st), 0);
    if (!c) {
        printf("# %s\n", st.msg);
        return;
    }
    LD_CHECK_STR(c->project, "driver_ranking");
    LD_CHECK_INT(c->registry.registry_type, LD_REGISTRY_SQL);
    LD_CHECK_INT(c->registry.cache_ttl_seconds, 60);
    LD_CHECK_INT(c->registry.cache_mode, LD_CACHE_THREAD);
    LD_CHECK_INT(c->online_store.type, LD_ONLINE_REDIS);
    LD_CHECK_INT(c->online_store.redis.redis_type, LD_REDIS_CLUSTER);
    LD_CHECK_INT(c->online_store.redis.key_ttl_seconds, 86400);
    LD_CHECK_INT(c->offline_store.type, LD_OFFLINE_POSTGRES);
    LD_CHECK_STR(c->offline_store.postgres.db_schema, "analytics");
    LD_CHECK_STR(c->offline_store.postgres.sslmode, "verify-full");
    LD_CHECK_INT(c->offline_store.entity_select_mode, LD_ENTITY_SELECT_EMBED_QUERY);
    LD_CHECK_INT(c->auth.type, LD_AUTH_OIDC);
    LD_CHECK_STR(c->auth.client_id, "feast-server");
    LD_CHECK_STR(c->auth.audience, "feast");
    LD_CHECK(c->auth.issuer == NULL);
    LD_CHECK(c->auth.verify_ssl);
    LD_CHECK(c->materialization.pull_latest_features);
    LD_CHECK_INT(c->materialization.online_write_batch_size, 10000);
    LD_CHECK_STR(c->batch_engine.type, "spark.engine");
    LD_CHECK_STR(ld_config_extra(c, "batch_engine.partitions"), "10");
    LD_CHECK_STR(c->larder.host, "0.0.0.0");
    LD_CHECK_INT(c->larder.workers, 2);
    LD_CHECK_INT(c->larder.max_message_bytes, 32 * 1024 * 1024);
    LD_CHECK_INT(c->larder.online_port, 50052);
    LD_CHECK_INT(c->larder.registry_port, 6570);
    LD_CHECK(!c->larder.access_log);
    LD_CHECK_INT(c->larder.log_level, LD_LOG_DEBUG);
    LD_CHECK_INT(c->larder.log_format, LD_LOG_JSON);
    /* sqlalchemy_config_kwargs is a known Feast key: kept, not warned */
    LD_CHECK_INT(c->nwarnings, 0);
    char *cert = ld_config_resolve_path(c, c->larder.tls_cert);
    LD_CHECK(cert && ends_with(cert, "/tests/unit/data/certs/server.crt"));
    free(cert);
    ld_config_free(c);
}

LD_TEST(string_registry_and_defaults)
{
    ld_config *c = load("project: p\nregistry: gs://bucket/registry.pb\n");
    LD_CHECK(c != NULL);
    if (!c)
        return;
    LD_CHECK_INT(c->registry.registry_type, LD_REGISTRY_FILE);
    LD_CHECK_STR(c->registry.path, "gs://bucket/registry.pb");
    LD_CHECK_INT(c->registry.cache_ttl_seconds, 600);
    LD_CHECK_INT(c->registry.cache_mode, LD_CACHE_SYNC);
    LD_CHECK(!c->registry.purge_feast_metadata);
    LD_CHECK(!c->registry.enable_online_feature_view_versioning);
    LD_CHECK_STR(c->provider, "local");
    LD_CHECK_STR(c->repo_path, "/srv/repo");
    LD_CHECK_INT(c->online_store.type, LD_ONLINE_SQLITE);
    LD_CHECK_STR(c->online_store.sqlite.path, "data/online.db");
    LD_CHECK_STR(c->online_store.redis.connection_string, "localhost:6379");
    LD_CHECK_INT(c->offline_store.type, LD_OFFLINE_DASK);
    LD_CHECK_INT(c->auth.type, LD_AUTH_NONE);
    LD_CHECK_INT(c->entity_key_serialization_version, 3);
    LD_CHECK(c->coerce_tz_aware);
    LD_CHECK(!c->feature_server.present);
    LD_CHECK_STR(c->feature_server.transformation_service_endpoint, "localhost:6569");
    LD_CHECK_STR(c->batch_engine.type, "local");
    LD_CHECK_INT(c->larder.workers, 1);
    LD_CHECK_INT(c->larder.max_message_bytes, 16 * 1024 * 1024);
    LD_CHECK_INT(c->larder.grace_period_seconds, 5);
    LD_CHECK_INT(c->larder.keepalive_time_seconds, 60);
    LD_CHECK_INT(c->larder.keepalive_timeout_seconds, 20);
    LD_CHECK(c->larder.access_log);
    LD_CHECK_INT(c->larder.log_level, LD_LOG_INFO);
    LD_CHECK_INT(c->larder.log_format, LD_LOG_TEXT);
    LD_CHECK_STR(c->larder.host, "127.0.0.1");
    LD_CHECK_INT(c->larder.registry_port, 6570);
    LD_CHECK_INT(c->larder.online_port, 50051);
    LD_CHECK_INT(c->larder.online_http_port, 6566);
    LD_CHECK_INT(c->larder.offline_port, 8815);
    LD_CHECK(c->larder.tls_cert == NULL);
    LD_CHECK_INT(c->nwarnings, 0);
    ld_config_free(c);
}

LD_TEST(default_config)
{
    ld_config *c = ld_config_default("/srv/repo");
    LD_CHECK_STR(c->project, "default");
    LD_CHECK_STR(c->registry.path, "data/registry.db");
    LD_CHECK(c->source == NULL);
    LD_CHECK_STR(c->repo_path, "/srv/repo");
    LD_CHECK_INT(c->online_store.type, LD_ONLINE_SQLITE);
    LD_CHECK_INT(c->larder.online_http_port, 6566);
    ld_status_clear(&st);
    LD_CHECK_INT(ld_config_validate(c, &st), 0);
    ld_config_free(c);

    c = ld_config_default(NULL);
    char cwd[4096];
    LD_CHECK(getcwd(cwd, sizeof cwd) != NULL);
    LD_CHECK_STR(c->repo_path, cwd);
    ld_config_free(c);
}

LD_TEST(registry_file_mapping)
{
    ld_config *c = load("project: p\n"
                        "registry:\n"
                        "  registry_type: file\n"
                        "  path: /var/lib/feast/registry.db\n"
                        "  cache_ttl_seconds: 0\n"
                        "  cache_mode: thread\n"
                        "  purge_feast_metadata: true\n"
                        "  enable_online_feature_view_versioning: yes\n"
                        "  s3_additional_kwargs: {ServerSideEncryption: AES256}\n");
    LD_CHECK(c != NULL);
    if (!c)
        return;
    LD_CHECK_INT(c->registry.registry_type, LD_REGISTRY_FILE);
    LD_CHECK_STR(c->registry.path, "/var/lib/feast/registry.db");
    LD_CHECK_INT(c->registry.cache_ttl_seconds, 0);
    LD_CHECK_INT(c->registry.cache_mode, LD_CACHE_THREAD);
    LD_CHECK(c->registry.purge_feast_metadata);
    LD_CHECK(c->registry.enable_online_feature_view_versioning);
    LD_CHECK_INT(c->nwarnings, 0);
    char *p = ld_config_resolve_path(c, c->registry.path);
    LD_CHECK_STR(p, "/var/lib/feast/registry.db");
    free(p);
    ld_config_free(c);

    /* registry_type defaults to file when the mapping omits it */
    c = load("project: p\nregistry:\n  path: reg.db\n");
    LD_CHECK(c && c->registry.registry_type == LD_REGISTRY_FILE);
    ld_config_free(c);
}

LD_TEST(registry_sql_mapping)
{
    ld_config *c = load("project: p\n"
                        "registry:\n"
                        "  path: postgresql://u:pw@db:5432/reg\n"
                        "  read_path: postgresql://u:pw@replica:5432/reg\n"
                        "  schema_mode: verify\n"
                        "  thread_pool_executor_worker_count: 4\n"
                        "  registry_type: sql\n"); /* type after the keys it gates */
    LD_CHECK(c != NULL);
    if (!c)
        return;
    LD_CHECK_INT(c->registry.registry_type, LD_REGISTRY_SQL);
    LD_CHECK_STR(c->registry.path, "postgresql://u:pw@db:5432/reg");
    LD_CHECK_STR(c->registry.read_path, "postgresql://u:pw@replica:5432/reg");
    LD_CHECK_INT(c->registry.schema_mode, LD_SCHEMA_VERIFY);
    LD_CHECK_INT(c->registry.thread_pool_executor_worker_count, 4);
    LD_CHECK_INT(c->nwarnings, 0);
    ld_config_free(c);
    LD_CHECK(fails_with("project: p\nregistry:\n  registry_type: sql\n  path: x\n"
                        "  schema_mode: maybe\n",
                        "key 'registry.schema_mode': unknown value \"maybe\" (allowed: auto, "
                        "verify, skip)"));
}

LD_TEST(registry_remote_mapping)
{
    ld_config *c = load("project: p\n"
                        "registry:\n"
                        "  registry_type: remote\n"
                        "  path: registry.internal:6570\n"
                        "  cert: certs/ca.crt\n"
                        "  is_tls: True\n"
                        "  client_cert: certs/client.crt\n"
                        "  client_key: certs/client.key\n"
                        "  authority: registry.example.com\n");
    LD_CHECK(c != NULL);
    if (!c)
        return;
    LD_CHECK_INT(c->registry.registry_type, LD_REGISTRY_REMOTE);
    LD_CHECK_STR(c->registry.path, "registry.internal:6570");
    LD_CHECK_STR(c->registry.cert, "certs/ca.crt");
    LD_CHECK(c->registry.is_tls);
    LD_CHECK_STR(c->registry.client_cert, "certs/client.crt");
    LD_CHECK_STR(c->registry.client_key, "certs/client.key");
    LD_CHECK_STR(c->registry.authority, "registry.example.com");
    LD_CHECK_INT(c->nwarnings, 0);
    ld_config_free(c);
}

LD_TEST(registry_errors)
{
    LD_CHECK(fails_with("project: p\n"
                        "registry:\n"
                        "  registry_type: snowflake.registry\n"
                        "  path: x\n",
                        "feature_store.yaml:3: key 'registry.registry_type': "
                        "\"snowflake.registry\" is a Feast value that larder does not support "
                        "(supported: file, sql, remote)"));
    LD_CHECK(fails_with("project: p\nregistry:\n  registry_type: sql\n",
                        "missing required key 'registry.path'"));
    LD_CHECK(fails_with("project: p\n", "feature_store.yaml: missing required key 'registry'"));
    LD_CHECK(fails_with("project: p\nregistry:\n", "missing required key 'registry'"));
    LD_CHECK(fails_with("project: p\nregistry: [a, b]\n",
                        "feature_store.yaml:2: key 'registry': expected a mapping or a string, "
                        "got a sequence"));
}

LD_TEST(online_redis)
{
    ld_config *c = load("project: p\n"
                        "registry: r.db\n"
                        "online_store:\n"
                        "  type: redis\n"
                        "  redis_type: redis_sentinel\n"
                        "  sentinel_master: primary\n"
                        "  connection_string: \"sentinel:26379,db=1\"\n"
                        "  key_ttl_seconds: 3600\n"
                        "  full_scan_for_deletion: false\n"
                        "  skip_dedup: on\n");
    LD_CHECK(c != NULL);
    if (!c)
        return;
    LD_CHECK_INT(c->online_store.type, LD_ONLINE_REDIS);
    LD_CHECK_INT(c->online_store.redis.redis_type, LD_REDIS_SENTINEL);
    LD_CHECK_STR(c->online_store.redis.sentinel_master, "primary");
    LD_CHECK_STR(c->online_store.redis.connection_string, "sentinel:26379,db=1");
    LD_CHECK_INT(c->online_store.redis.key_ttl_seconds, 3600);
    LD_CHECK(!c->online_store.redis.full_scan_for_deletion);
    LD_CHECK(c->online_store.redis.skip_dedup);
    ld_config_free(c);

    /* the string form picks the type with its defaults */
    c = load("project: p\nregistry: r.db\nonline_store: redis\n");
    LD_CHECK(c != NULL);
    if (!c)
        return;
    LD_CHECK_INT(c->online_store.type, LD_ONLINE_REDIS);
    LD_CHECK_INT(c->online_store.redis.redis_type, LD_REDIS_SINGLE);
    LD_CHECK_STR(c->online_store.redis.connection_string, "localhost:6379");
    LD_CHECK_INT(c->online_store.redis.key_ttl_seconds, 0);
    LD_CHECK(c->online_store.redis.full_scan_for_deletion);
    LD_CHECK(!c->online_store.redis.skip_dedup);
    ld_config_free(c);

    /* key_ttl_seconds: null is Optional[int] None */
    c = load("project: p\nregistry: r.db\nonline_store:\n  type: redis\n  key_ttl_seconds: null\n");
    LD_CHECK(c && c->online_store.redis.key_ttl_seconds == 0);
    ld_config_free(c);
}

LD_TEST(online_postgres)
{
    ld_config *c = load("project: p\n"
                        "registry: r.db\n"
                        "online_store:\n"
                        "  type: postgres\n"
                        "  host: localhost\n"
                        "  port: 5433\n"
                        "  database: feast\n"
                        "  user: feast\n"
                        "  password: feast\n"
                        "  sslmode: disable\n"
                        "  sslkey_path: k.pem\n"
                        "  sslcert_path: c.pem\n"
                        "  sslrootcert_path: ca.pem\n"
                        "  min_conn: 2\n"
                        "  max_conn: 20\n"
                        "  conn_type: pool\n"
                        "  keepalives_idle: 30\n"
                        "  vector_enabled: true\n");
    LD_CHECK(c != NULL);
    if (!c)
        return;
    const ld_postgres_config *pg = &c->online_store.postgres;
    LD_CHECK_INT(c->online_store.type, LD_ONLINE_POSTGRES);
    LD_CHECK_STR(pg->host, "localhost");
    LD_CHECK_INT(pg->port, 5433);
    LD_CHECK_STR(pg->database, "feast");
    LD_CHECK_STR(pg->db_schema, "public");
    LD_CHECK_STR(pg->user, "feast");
    LD_CHECK_STR(pg->password, "feast");
    LD_CHECK_STR(pg->sslmode, "disable");
    LD_CHECK_STR(pg->sslkey_path, "k.pem");
    LD_CHECK_STR(pg->sslcert_path, "c.pem");
    LD_CHECK_STR(pg->sslrootcert_path, "ca.pem");
    LD_CHECK_INT(pg->min_conn, 2);
    LD_CHECK_INT(pg->max_conn, 20);
    LD_CHECK_INT(pg->conn_type, LD_PG_POOL);
    LD_CHECK_INT(pg->keepalives_idle, 30);
    LD_CHECK_STR(ld_config_extra(c, "online_store.vector_enabled"), "true");
    LD_CHECK_INT(c->nwarnings, 0);
    ld_config_free(c);

    c = load("project: p\nregistry: r.db\n"
             "online_store: {type: postgres, host: h, database: d, user: u}\n");
    LD_CHECK(c != NULL);
    if (c) {
        LD_CHECK_INT(c->online_store.postgres.port, 5432);
        LD_CHECK_STR(c->online_store.postgres.sslmode, "require");
        LD_CHECK_INT(c->online_store.postgres.min_conn, 1);
        LD_CHECK_INT(c->online_store.postgres.max_conn, 10);
        LD_CHECK_INT(c->online_store.postgres.conn_type, LD_PG_SINGLETON);
        LD_CHECK(c->online_store.postgres.password == NULL);
    }
    ld_config_free(c);

    LD_CHECK(fails_with("project: p\nregistry: r.db\n"
                        "online_store: {type: postgres, database: d, user: u}\n",
                        "missing required key 'online_store.host' (required for type postgres)"));
    LD_CHECK(fails_with("project: p\nregistry: r.db\n"
                        "online_store: {type: postgres, host: h, database: d, user: u,\n"
                        "               min_conn: 5, max_conn: 2}\n",
                        "'online_store.min_conn' (5) is larger than 'online_store.max_conn' (2)"));
    LD_CHECK(fails_with("project: p\nregistry: r.db\n"
                        "online_store: {type: postgres, host: h, database: d, user: u,\n"
                        "               conn_type: pooled}\n",
                        "feature_store.yaml:4: key 'online_store.conn_type': unknown value "
                        "\"pooled\" (allowed: singleton, pool)"));
}

LD_TEST(online_sqlite_and_remote)
{
    ld_config *c = load("project: p\nregistry: r.db\nonline_store:\n  path: /tmp/o.db\n");
    LD_CHECK(c && c->online_store.type == LD_ONLINE_SQLITE);
    if (c) {
        LD_CHECK_STR(c->online_store.sqlite.path, "/tmp/o.db");
        LD_CHECK_STR(c->online_store.remote.path, "http://localhost:6566");
    }
    ld_config_free(c);

    c = load("project: p\nregistry: r.db\n"
             "online_store:\n  type: remote\n  path: https://online:6566\n  cert: ca.crt\n"
             "  connection_pool_size: 8\n  connection_retries: 0\n");
    LD_CHECK(c && c->online_store.type == LD_ONLINE_REMOTE);
    if (c) {
        LD_CHECK_STR(c->online_store.remote.path, "https://online:6566");
        LD_CHECK_STR(c->online_store.remote.cert, "ca.crt");
        LD_CHECK_INT(c->online_store.remote.connection_pool_size, 8);
        LD_CHECK_INT(c->online_store.remote.connection_idle_timeout, 300);
        LD_CHECK_INT(c->online_store.remote.connection_retries, 0);
        LD_CHECK_STR(c->online_store.sqlite.path, "data/online.db");
        /* a URL is never joined to the repo path */
        char *p = ld_config_resolve_path(c, c->online_store.remote.path);
        LD_CHECK_STR(p, "https://online:6566");
        free(p);
    }
    ld_config_free(c);

    /* Feast accepts the class path too */
    c = load("project: p\nregistry: r.db\n"
             "online_store: {type: feast.infra.online_stores.redis.RedisOnlineStore}\n");
    LD_CHECK(c && c->online_store.type == LD_ONLINE_REDIS);
    ld_config_free(c);
}

LD_TEST(offline_stores)
{
    ld_config *c = load("project: p\nregistry: r.db\noffline_store:\n  type: file\n");
    LD_CHECK(c && c->offline_store.type == LD_OFFLINE_DASK);
    ld_config_free(c);

    c = load("project: p\nregistry: r.db\noffline_store: duckdb\n");
    LD_CHECK(c && c->offline_store.type == LD_OFFLINE_DUCKDB);
    ld_config_free(c);

    c = load("project: p\nregistry: r.db\n"
             "offline_store:\n  type: remote\n  host: flight.internal\n  port: 8815\n"
             "  scheme: https\n  cert: ca.crt\n");
    LD_CHECK(c && c->offline_store.type == LD_OFFLINE_REMOTE);
    if (c) {
        LD_CHECK_STR(c->offline_store.remote.host, "flight.internal");
        LD_CHECK_INT(c->offline_store.remote.port, 8815);
        LD_CHECK_INT(c->offline_store.remote.scheme, LD_SCHEME_HTTPS);
        LD_CHECK_STR(c->offline_store.remote.cert, "ca.crt");
        LD_CHECK_INT(c->offline_store.remote.connection_retries, 3);
    }
    ld_config_free(c);

    LD_CHECK(fails_with("project: p\nregistry: r.db\noffline_store: {type: remote}\n",
                        "missing required key 'offline_store.host' (required for type remote)"));
    LD_CHECK(fails_with("project: p\nregistry: r.db\noffline_store: bigquery\n",
                        "key 'offline_store': \"bigquery\" is a Feast value that larder does not "
                        "support (supported: dask, file, duckdb, postgres, remote)"));
    LD_CHECK(fails_with("project: p\nregistry: r.db\n"
                        "offline_store: {type: postgres, host: h, database: d, user: u,\n"
                        "  entity_select_mode: cte}\n",
                        "(allowed: temp_table, embed_query)"));
}

LD_TEST(auth_section)
{
    ld_config *c = load("project: p\nregistry: r.db\n"
                        "auth:\n"
                        "  type: oidc\n"
                        "  auth_discovery_url: https://idp/.well-known/openid-configuration\n"
                        "  client_id: cid\n"
                        "  issuer: https://idp\n"
                        "  verify_ssl: false\n"
                        "  ca_cert_path: ca.pem\n"
                        "  jwks_request_timeout_seconds: 2.5\n");
    LD_CHECK(c && c->auth.type == LD_AUTH_OIDC);
    if (c) {
        LD_CHECK_STR(c->auth.auth_discovery_url, "https://idp/.well-known/openid-configuration");
        LD_CHECK_STR(c->auth.client_id, "cid");
        LD_CHECK_STR(c->auth.issuer, "https://idp");
        LD_CHECK(c->auth.audience == NULL);
        LD_CHECK(!c->auth.verify_ssl);
        LD_CHECK_STR(c->auth.ca_cert_path, "ca.pem");
        LD_CHECK_INT(c->auth.jwks_cache_lifespan_seconds, 300);
        LD_CHECK(c->auth.jwks_request_timeout_seconds == 2.5);
    }
    ld_config_free(c);

    c = load("project: p\nregistry: r.db\nauth: {type: kubernetes}\n");
    LD_CHECK(c && c->auth.type == LD_AUTH_KUBERNETES);
    ld_config_free(c);

    LD_CHECK(fails_with("project: p\nregistry: r.db\nauth:\n  type: ldap\n",
                        "feature_store.yaml:4: key 'auth.type': unknown value \"ldap\" "
                        "(allowed: no_auth, oidc, kubernetes)"));
}

LD_TEST(feature_server_materialization_batch_engine)
{
    ld_config *c = load("project: p\nregistry: r.db\n"
                        "feature_server:\n"
                        "  type: local\n"
                        "  transformation_service_endpoint: xform:6569\n"
                        "  metrics:\n"
                        "    enabled: true\n"
                        "    push: false\n"
                        "  offline_push_batching_enabled: true\n"
                        "  offline_push_batching_batch_size: 100\n"
                        "  offline_push_batching_batch_interval_seconds: 5\n"
                        "  feature_logging: {enabled: true, queue_capacity: 10}\n"
                        "materialization: {online_write_batch_size: 500}\n"
                        "batch_engine: local\n");
    LD_CHECK(c != NULL);
    if (c) {
        LD_CHECK(c->feature_server.present);
        LD_CHECK_STR(c->feature_server.transformation_service_endpoint, "xform:6569");
        LD_CHECK(c->feature_server.metrics.enabled);
        LD_CHECK(!c->feature_server.metrics.push);
        LD_CHECK(c->feature_server.metrics.request);
        LD_CHECK(!c->feature_server.metrics.audit_logging);
        LD_CHECK(c->feature_server.offline_push_batching_enabled);
        LD_CHECK_INT(c->feature_server.offline_push_batching_batch_size, 100);
        LD_CHECK_INT(c->feature_server.offline_push_batching_batch_interval_seconds, 5);
        LD_CHECK(c->feature_server.feature_logging.enabled);
        LD_CHECK_INT(c->feature_server.feature_logging.queue_capacity, 10);
        LD_CHECK_INT(c->feature_server.feature_logging.flush_interval_secs, 600);
        LD_CHECK(!c->materialization.pull_latest_features);
        LD_CHECK_INT(c->materialization.online_write_batch_size, 500);
        LD_CHECK_STR(c->batch_engine.type, "local");
        LD_CHECK_INT(c->nwarnings, 0);
    }
    ld_config_free(c);

    c = load("project: p\nregistry: r.db\nfeature_server: {type: mcp, mcp_enabled: true}\n");
    LD_CHECK(c && c->feature_server.type == LD_FEATURE_SERVER_MCP);
    if (c) {
        LD_CHECK_STR(c->feature_server.transformation_service_endpoint, "localhost:6566");
        LD_CHECK_STR(ld_config_extra(c, "feature_server.mcp_enabled"), "true");
        LD_CHECK_INT(c->nwarnings, 0);
    }
    ld_config_free(c);

    LD_CHECK(fails_with("project: p\nregistry: r.db\nfeature_server:\n  metrics: true\n",
                        "key 'feature_server.metrics': expected a mapping, got a scalar"));
    LD_CHECK(fails_with("project: p\nregistry: r.db\nmaterialization:\n"
                        "  online_write_batch_size: 0\n",
                        "key 'materialization.online_write_batch_size': 0 is out of range"));
}

LD_TEST(env_substitution)
{
    setenv("LD_TEST_PROJECT", "env_project", 1);
    setenv("LD_TEST_PORT", "6380", 1);
    setenv("LD_TEST_PW", "pa$$word", 1);
    unsetenv("LD_TEST_UNSET");
    ld_config *c = load("project: ${LD_TEST_PROJECT}\n"
                        "registry: $LD_TEST_PROJECT/registry.db\n"
                        "online_store:\n"
                        "  type: postgres\n"
                        "  host: db\n"
                        "  port: \"${LD_TEST_PORT}\"\n"
                        "  database: d\n"
                        "  user: u\n"
                        "  password: ${LD_TEST_PW}\n"
                        "  sslmode: $LD_TEST_UNSET\n"
                        "  db_schema: ${LD_TEST_UNSET}\n");
    LD_CHECK(c != NULL);
    if (!c) {
        printf("# %s\n", st.msg);
        return;
    }
    LD_CHECK_STR(c->project, "env_project");
    LD_CHECK_STR(c->registry.path, "env_project/registry.db");
    LD_CHECK_INT(c->online_store.postgres.port, 6380);
    /* the value is not expanded again */
    LD_CHECK_STR(c->online_store.postgres.password, "pa$$word");
    /* unset variables stay as written */
    LD_CHECK_STR(c->online_store.postgres.sslmode, "$LD_TEST_UNSET");
    LD_CHECK_STR(c->online_store.postgres.db_schema, "${LD_TEST_UNSET}");
    ld_config_free(c);

    /* os.path.expandvars edge cases */
    setenv("A", "x", 1);
    setenv("EMPTY", "", 1);
    /* expected values are what Python's os.path.expandvars returns */
    const char *in = "$A ${A} $$ $ ${A}b $Ab $EMPTY| ${} $-A a$A ${unclosed $A";
    const char *want = "x x $$ $ xb $Ab | ${} $-A ax ${unclosed x";
    size_t n = 0;
    char *out = ld_config_expand_env(in, strlen(in), &n);
    LD_CHECK_STR(out, want);
    LD_CHECK_INT(n, strlen(want));
    free(out);
    /* "${" runs to the next '}' wherever it is, so $EMPTY here is not a variable */
    in = "${ ${unclosed $EMPTY| ${} $A";
    out = ld_config_expand_env(in, strlen(in), &n);
    LD_CHECK_STR(out, "${ ${unclosed $EMPTY| ${} x");
    free(out);
    out = ld_config_expand_env("", 0, &n);
    LD_CHECK_STR(out, "");
    LD_CHECK_INT(n, 0);
    free(out);
    unsetenv("A");
    unsetenv("EMPTY");
}

LD_TEST(unknown_keys_warn)
{
    ld_config *c = load("project: p\n"                    /* 1 */
                        "registry: r.db\n"                /* 2 */
                        "larder_typo: 1\n"                /* 3 */
                        "online_store:\n"                 /* 4 */
                        "  type: redis\n"                 /* 5 */
                        "  foo: bar\n"                    /* 6 */
                        "  host: db\n"                    /* 7 */
                        "larder:\n"                       /* 8 */
                        "  workers: 2\n"                  /* 9 */
                        "  colour: blue\n"                /* 10 */
                        "  workers: 3\n"                  /* 11 */
                        "flags: {alpha_features: true}\n" /* 12: known, deprecated */
                        "repo_path: /elsewhere\n");       /* 13 */
    LD_CHECK(c != NULL);
    if (!c) {
        printf("# %s\n", st.msg);
        return;
    }
    LD_CHECK_INT(c->nwarnings, 6);
    LD_CHECK(has_warning(c, "feature_store.yaml:3: unknown key 'larder_typo' (ignored)"));
    LD_CHECK(has_warning(c, "feature_store.yaml:6: unknown key 'online_store.foo' (ignored)"));
    LD_CHECK(has_warning(c, "feature_store.yaml:7: key 'online_store.host' does not apply to "
                            "online_store.type redis (ignored)"));
    LD_CHECK(has_warning(c, "feature_store.yaml:10: unknown key 'larder.colour' (ignored)"));
    LD_CHECK(has_warning(c, "feature_store.yaml:11: duplicate key 'larder.workers' (line 9 is "
                            "overridden)"));
    LD_CHECK(has_warning(c, "feature_store.yaml:13: key 'repo_path' is ignored"));
    LD_CHECK_INT(c->larder.workers, 3);
    LD_CHECK_STR(c->repo_path, "/srv/repo");
    ld_config_free(c);
}

LD_TEST(warning_cap)
{
    ld_buf b = LD_BUF_INIT;
    ld_buf_puts(&b, "project: p\nregistry: r.db\n");
    for (int i = 0; i < 100; i++)
        ld_buf_printf(&b, "unknown_%d: 1\n", i);
    ld_config *c = load(b.data);
    LD_CHECK(c != NULL);
    if (c) {
        LD_CHECK_INT(c->nwarnings, LD_CONFIG_MAX_WARNINGS);
        LD_CHECK_INT(c->nwarnings_dropped, 100 - LD_CONFIG_MAX_WARNINGS);
    }
    ld_config_free(c);
    ld_buf_free(&b);
}

LD_TEST(wrong_types_fail)
{
    LD_CHECK(fails_with("project: p\n"
                        "registry:\n"
                        "  path: r.db\n"
                        "  cache_mode: sync\n"
                        "\n"
                        "  # comment\n"
                        "  cache_ttl_seconds: abc\n",
                        "feature_store.yaml:7: key 'registry.cache_ttl_seconds': expected an "
                        "integer, got \"abc\""));
    LD_CHECK(st.code == GRPC_STATUS_INVALID_ARGUMENT);
    LD_CHECK(fails_with("project: p\nregistry: r.db\nlarder:\n  workers: [1, 2]\n",
                        "feature_store.yaml:4: key 'larder.workers': expected an integer, got a "
                        "sequence"));
    LD_CHECK(fails_with("project: p\nregistry: r.db\nlarder:\n  host: {a: 1}\n",
                        "key 'larder.host': expected a string, got a mapping"));
    LD_CHECK(fails_with("project: p\nregistry: r.db\nlarder:\n  workers: 2.5\n",
                        "key 'larder.workers': expected an integer, got \"2.5\""));
    LD_CHECK(fails_with("project: p\nregistry: r.db\nlarder:\n  online_port: 70000\n",
                        "key 'larder.online_port': 70000 is out of range (0..65535)"));
    LD_CHECK(fails_with("project: p\nregistry: r.db\nlarder:\n  workers: 0\n",
                        "key 'larder.workers': 0 is out of range (1..256)"));
    LD_CHECK(fails_with("project: p\nregistry: r.db\nlarder:\n  workers: 99999999999999999999\n",
                        "expected an integer"));
    LD_CHECK(fails_with("project: p\nregistry: r.db\nlarder: 5\n",
                        "key 'larder': expected a mapping, got a scalar"));
    LD_CHECK(fails_with("- project\n- p\n",
                        "feature_store.yaml:1: expected a mapping at the top level, got a "
                        "sequence"));
    LD_CHECK(fails_with("project: p\nregistry: r.db\nlarder:\n  host: \"a\\0b\"\n",
                        "value contains a NUL character"));
}

LD_TEST(integers_as_pyyaml)
{
    ld_config *c = load("project: p\nregistry: r.db\n"
                        "larder:\n"
                        "  registry_port: 0x1A0A\n" /* 6666 */
                        "  online_port: 010\n"      /* YAML 1.1 octal: 8 */
                        "  offline_port: 8_815\n"
                        "  online_http_port: \"6567\"\n"
                        "  workers: +4\n"
                        "  grace_period_seconds: 0b101\n");
    LD_CHECK(c != NULL);
    if (c) {
        LD_CHECK_INT(c->larder.registry_port, 6666);
        LD_CHECK_INT(c->larder.online_port, 8);
        LD_CHECK_INT(c->larder.offline_port, 8815);
        LD_CHECK_INT(c->larder.online_http_port, 6567);
        LD_CHECK_INT(c->larder.workers, 4);
        LD_CHECK_INT(c->larder.grace_period_seconds, 5);
    }
    ld_config_free(c);
    /* quoted text only takes plain decimal */
    LD_CHECK(fails_with("project: p\nregistry: r.db\nlarder:\n  online_port: \"0x10\"\n",
                        "expected an integer, got \"0x10\""));
    /* "09" is no YAML int, so a string, which pydantic reads as decimal */
    c = load("project: p\nregistry: r.db\nlarder:\n  online_port: 09\n");
    LD_CHECK(c && c->larder.online_port == 9);
    ld_config_free(c);
}

LD_TEST(booleans)
{
    static const struct {
        const char *text;
        int want; /* -1: error */
    } cases[] = {
            {"true", 1},     {"True", 1}, {"TRUE", 1}, {"yes", 1},   {"Yes", 1},    {"YES", 1},
            {"on", 1},       {"On", 1},   {"ON", 1},   {"false", 0}, {"False", 0},  {"FALSE", 0},
            {"no", 0},       {"No", 0},   {"NO", 0},   {"off", 0},   {"Off", 0},    {"OFF", 0},
            {"\"true\"", 1}, {"'no'", 0}, {"1", 1},    {"0", 0},     {"maybe", -1}, {"2", -1},
            {"y", -1},       {"[]", -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[256];
        snprintf(text, sizeof text, "project: p\nregistry: r.db\nlarder:\n  access_log: %s\n",
                 cases[i].text);
        ld_config *c = load(text);
        if (cases[i].want < 0) {
            if (c)
                printf("# %s accepted as a boolean\n", cases[i].text);
            LD_CHECK(c == NULL);
            LD_CHECK(strstr(st.msg, "key 'larder.access_log': expected a boolean") != NULL);
        } else {
            if (!c)
                printf("# %s: %s\n", cases[i].text, st.msg);
            LD_CHECK(c != NULL && c->larder.access_log == (cases[i].want == 1));
        }
        ld_config_free(c);
    }
}

LD_TEST(missing_and_invalid_project)
{
    LD_CHECK(fails_with("registry: r.db\n", "feature_store.yaml: missing required key 'project'"));
    LD_CHECK(fails_with("", "missing required key 'project'"));
    LD_CHECK(fails_with("# only a comment\n", "missing required key 'project'"));
    LD_CHECK(fails_with("project:\nregistry: r.db\n", "missing required key 'project'"));
    LD_CHECK(fails_with("project: _private\nregistry: r.db\n",
                        "feature_store.yaml:1: key 'project': \"_private\" is not a valid "
                        "project name"));
    LD_CHECK(fails_with("project: a.b\nregistry: r.db\n", "is not a valid project name"));
    LD_CHECK(fails_with("project: -x\nregistry: r.db\n", "is not a valid project name"));
    /* hyphens are fine, except with the SQLite online store (Feast's rule) */
    LD_CHECK(fails_with("project: my-proj\nregistry: r.db\n",
                        "project names for SQLite online stores cannot contain hyphens"));
    ld_config *c = load("project: my-proj\nregistry: r.db\nonline_store: redis\n");
    LD_CHECK(c && strcmp(c->project, "my-proj") == 0);
    ld_config_free(c);
}

LD_TEST(bad_enum_lists_choices)
{
    LD_CHECK(fails_with("project: p\nregistry: r.db\nonline_store:\n  type: foo\n",
                        "feature_store.yaml:4: key 'online_store.type': unknown value \"foo\" "
                        "(allowed: sqlite, redis, postgres, remote)"));
    LD_CHECK(fails_with("project: p\nregistry: r.db\nonline_store: dynamodb\n",
                        "key 'online_store': \"dynamodb\" is a Feast value that larder does not "
                        "support (supported: sqlite, redis, postgres, remote)"));
    LD_CHECK(fails_with("project: p\nregistry: r.db\nonline_store: {type: redis, redis_type: "
                        "memcached}\n",
                        "(allowed: redis, redis_cluster, redis_sentinel)"));
    LD_CHECK(fails_with("project: p\nregistry: r.db\nregistry_x: 1\nregistry:\n"
                        "  path: r\n  cache_mode: lazy\n",
                        "key 'registry.cache_mode': unknown value \"lazy\" (allowed: sync, "
                        "thread)"));
    LD_CHECK(fails_with("project: p\nregistry: r.db\nlarder: {log_format: xml}\n",
                        "(allowed: text, json)"));
}

LD_TEST(entity_key_serialization_version)
{
    ld_config *c = load("project: p\nregistry: r.db\nentity_key_serialization_version: 2\n");
    LD_CHECK(c != NULL);
    if (c) {
        LD_CHECK_INT(c->entity_key_serialization_version, 2);
        LD_CHECK(has_warning(c, "feature_store.yaml:3: key 'entity_key_serialization_version': "
                                "serialization version 2 is deprecated"));
    }
    ld_config_free(c);
    LD_CHECK(fails_with("project: p\nregistry: r.db\nentity_key_serialization_version: 4\n",
                        "4 is out of range (1..3)"));
}

LD_TEST(yaml_syntax_and_documents)
{
    LD_CHECK(fails_with("project: p\nregistry: [r.db\n", "feature_store.yaml:3:1: YAML syntax "
                                                         "error"));
    LD_CHECK(fails_with("project: p\nregistry: r.db\n---\nproject: q\n",
                        "feature_store.yaml:4: expected a single YAML document"));
    /* a lone document marker is still one document */
    ld_config *c = load("---\nproject: p\nregistry: r.db\n...\n");
    LD_CHECK(c != NULL);
    ld_config_free(c);
}

LD_TEST(anchors_and_merge_keys)
{
    ld_config *c = load("project: p\n"
                        "registry: r.db\n"
                        "x-pg: &pg\n"
                        "  host: db.internal\n"
                        "  database: feast\n"
                        "  user: feast\n"
                        "  port: 6000\n"
                        "online_store:\n"
                        "  <<: *pg\n"
                        "  type: postgres\n"
                        "  port: 6001\n"
                        "offline_store:\n"
                        "  <<: [*pg, {type: postgres, db_schema: other}]\n");
    LD_CHECK(c != NULL);
    if (!c) {
        printf("# %s\n", st.msg);
        return;
    }
    LD_CHECK_INT(c->online_store.type, LD_ONLINE_POSTGRES);
    LD_CHECK_STR(c->online_store.postgres.host, "db.internal");
    LD_CHECK_INT(c->online_store.postgres.port, 6001);
    LD_CHECK_INT(c->offline_store.type, LD_OFFLINE_POSTGRES);
    LD_CHECK_INT(c->offline_store.postgres.port, 6000);
    LD_CHECK_STR(c->offline_store.postgres.db_schema, "other");
    LD_CHECK_INT(c->nwarnings, 1); /* x-pg itself */
    LD_CHECK(has_warning(c, "unknown key 'x-pg'"));
    ld_config_free(c);

    /* a self-referencing alias must not recurse forever */
    LD_CHECK(fails_with("project: p\nregistry: r.db\nlarder: &l\n  <<: *l\n",
                        "feature_store.yaml:3: nesting deeper than 8 levels"));

    /* nor may merges of merges blow up: 6 levels of 10 aliases = 10^6 visits */
    ld_buf b = LD_BUF_INIT;
    ld_buf_puts(&b, "project: p\nregistry: r.db\nl0: &l0 {workers: 1}\n");
    for (int i = 1; i <= 6; i++) {
        ld_buf_printf(&b, "l%d: &l%d {<<: [", i, i);
        for (int j = 0; j < 10; j++)
            ld_buf_printf(&b, "%s*l%d", j ? ", " : "", i - 1);
        ld_buf_puts(&b, "]}\n");
    }
    ld_buf_puts(&b, "larder: {<<: *l6}\n");
    LD_CHECK(fails_with(b.data, "more than 100000 keys once aliases and merges are expanded"));
    ld_buf_free(&b);
}

LD_TEST(overrides)
{
    ld_config *c = load("project: p\nregistry: r.db\n");
    LD_CHECK(c != NULL);
    if (!c)
        return;
    ld_status_clear(&st);
    LD_CHECK_INT(ld_config_set(c, "larder.workers", "4", &st), 0);
    LD_CHECK_INT(c->larder.workers, 4);
    LD_CHECK_INT(ld_config_set(c, "larder.access_log", "false", &st), 0);
    LD_CHECK(!c->larder.access_log);
    LD_CHECK_INT(ld_config_set(c, "larder.log_level", "warning", &st), 0);
    LD_CHECK_INT(c->larder.log_level, LD_LOG_WARN);
    LD_CHECK_INT(ld_config_set(c, "larder.host", "::", &st), 0);
    LD_CHECK_STR(c->larder.host, "::");
    LD_CHECK_INT(ld_config_set(c, "larder.host", "", &st), 0);
    LD_CHECK_STR(c->larder.host, "127.0.0.1");
    LD_CHECK_INT(ld_config_set(c, "feature_server.metrics.enabled", "yes", &st), 0);
    LD_CHECK(c->feature_server.metrics.enabled);

    /* bad values leave the config unchanged */
    LD_CHECK_INT(ld_config_set(c, "larder.workers", "four", &st), -1);
    LD_CHECK_STR(st.msg, "key 'larder.workers': expected an integer, got \"four\"");
    LD_CHECK_INT(st.code, GRPC_STATUS_INVALID_ARGUMENT);
    LD_CHECK_INT(c->larder.workers, 4);
    LD_CHECK_INT(ld_config_set(c, "larder.workers", "0x10", &st), -1);
    LD_CHECK_INT(ld_config_set(c, "larder.online_port", "65536", &st), -1);
    LD_CHECK_STR(st.msg, "key 'larder.online_port': 65536 is out of range (0..65535)");
    LD_CHECK_INT(ld_config_set(c, "larder.nope", "1", &st), -1);
    LD_CHECK_STR(st.msg, "unknown configuration key 'larder.nope'");
    LD_CHECK_INT(ld_config_set(c, "online_store.host", "db", &st), -1);
    LD_CHECK_STR(st.msg, "key 'online_store.host' does not apply to online_store.type sqlite");
    LD_CHECK_INT(ld_config_set(c, "project", "_bad", &st), -1);
    LD_CHECK_STR(c->project, "p");
    LD_CHECK_INT(ld_config_set(c, "larder", "x", &st), -1);

    /* section shorthands, then keys of the new type */
    LD_CHECK_INT(ld_config_set(c, "online_store", "postgres", &st), 0);
    LD_CHECK_INT(c->online_store.type, LD_ONLINE_POSTGRES);
    ld_status_clear(&st);
    LD_CHECK_INT(ld_config_validate(c, &st), -1);
    LD_CHECK(strstr(st.msg, "missing required key 'online_store.host'") != NULL);
    LD_CHECK_INT(ld_config_set(c, "online_store.host", "db", &st), 0);
    LD_CHECK_INT(ld_config_set(c, "online_store.database", "feast", &st), 0);
    LD_CHECK_INT(ld_config_set(c, "online_store.user", "feast", &st), 0);
    LD_CHECK_INT(ld_config_set(c, "online_store.port", "5433", &st), 0);
    LD_CHECK_INT(c->online_store.postgres.port, 5433);
    ld_status_clear(&st);
    LD_CHECK_INT(ld_config_validate(c, &st), 0);

    LD_CHECK_INT(ld_config_set(c, "registry.registry_type", "snowflake.registry", &st), -1);
    LD_CHECK(strstr(st.msg, "does not support") != NULL);
    LD_CHECK_INT(ld_config_set(c, "registry.registry_type", "remote", &st), 0);
    LD_CHECK_INT(ld_config_set(c, "registry.is_tls", "on", &st), 0);
    LD_CHECK(c->registry.is_tls);
    LD_CHECK_INT(ld_config_set(c, "registry", "other.db", &st), 0);
    LD_CHECK_INT(c->registry.registry_type, LD_REGISTRY_FILE);
    LD_CHECK_STR(c->registry.path, "other.db");

    LD_CHECK_INT(ld_config_set(c, "batch_engine.partitions", "4", &st), 0);
    LD_CHECK_STR(ld_config_extra(c, "batch_engine.partitions"), "4");
    LD_CHECK_INT(ld_config_set(c, "repo_path", "/opt/repo", &st), 0);
    LD_CHECK_STR(c->repo_path, "/opt/repo");

    LD_CHECK_INT(ld_config_set(c, "larder.tls_cert", "/etc/c.pem", &st), 0);
    ld_status_clear(&st);
    LD_CHECK_INT(ld_config_validate(c, &st), -1);
    LD_CHECK(strstr(st.msg, "'larder.tls_cert' and 'larder.tls_key' must be set together"));
    LD_CHECK_INT(ld_config_set(c, "larder.tls_key", "/etc/k.pem", &st), 0);
    ld_status_clear(&st);
    LD_CHECK_INT(ld_config_validate(c, &st), 0);
    ld_config_free(c);
}

LD_TEST(size_limit)
{
    size_t n = LD_CONFIG_MAX_FILE_BYTES + 1;
    char *big = malloc(n + 1);
    memcpy(big, "project: p\nregistry: r.db\n", 26);
    memset(big + 26, '#', n - 26);
    big[n] = '\0';
    ld_config *c = NULL;
    ld_status_clear(&st);
    LD_CHECK_INT(ld_config_load_string(big, n, "/srv", &c, &st), -1);
    LD_CHECK(c == NULL);
    LD_CHECK(strstr(st.msg, "larger than 1048576 bytes") != NULL);

    char path[] = "/tmp/ld_config_test_XXXXXX";
    int fd = mkstemp(path);
    LD_CHECK(fd >= 0);
    if (fd >= 0) {
        LD_CHECK(write(fd, big, n) == (ssize_t)n);
        close(fd);
        ld_status_clear(&st);
        LD_CHECK_INT(ld_config_load(path, &c, &st), -1);
        LD_CHECK(strstr(st.msg, "larger than 1048576 bytes") != NULL);
        /* exactly at the limit is fine */
        LD_CHECK(truncate(path, LD_CONFIG_MAX_FILE_BYTES) == 0);
        ld_status_clear(&st);
        LD_CHECK_INT(ld_config_load(path, &c, &st), 0);
        LD_CHECK_STR(c ? c->repo_path : NULL, "/tmp");
        ld_config_free(c);
        unlink(path);
    }
    free(big);

    /* substitution may not grow the text past the limit either */
    char *huge = malloc(LD_CONFIG_MAX_FILE_BYTES + 1);
    memset(huge, 'x', LD_CONFIG_MAX_FILE_BYTES);
    huge[LD_CONFIG_MAX_FILE_BYTES] = '\0';
    setenv("LD_TEST_HUGE", huge, 1);
    free(huge);
    LD_CHECK(fails_with("project: p\nregistry: r.db\nprovider: $LD_TEST_HUGE\n",
                        "after environment substitution"));
    unsetenv("LD_TEST_HUGE");
}

LD_TEST(missing_file)
{
    ld_config *c = NULL;
    ld_status_clear(&st);
    LD_CHECK_INT(ld_config_load("data/no_such_feature_store.yaml", &c, &st), -1);
    LD_CHECK_INT(st.code, GRPC_STATUS_NOT_FOUND);
    LD_CHECK(strstr(st.msg, "no_such_feature_store.yaml") != NULL);
    LD_CHECK(c == NULL);
    ld_status_clear(&st);
    LD_CHECK_INT(ld_config_load("data", &c, &st), -1);
    LD_CHECK(strstr(st.msg, "cannot read data") != NULL);
}

LD_TEST(resolve_path)
{
    ld_config *c = ld_config_default("/srv/repo");
    char *p = ld_config_resolve_path(c, "data/online.db");
    LD_CHECK_STR(p, "/srv/repo/data/online.db");
    free(p);
    p = ld_config_resolve_path(c, "/abs/x.db");
    LD_CHECK_STR(p, "/abs/x.db");
    free(p);
    p = ld_config_resolve_path(c, "s3://bucket/registry.db");
    LD_CHECK_STR(p, "s3://bucket/registry.db");
    free(p);
    LD_CHECK(ld_config_resolve_path(c, NULL) == NULL);
    ld_config_free(c);

    /* a relative repo path is made absolute against the cwd */
    char cwd[4096];
    LD_CHECK(getcwd(cwd, sizeof cwd) != NULL);
    c = ld_config_default("data");
    char want[4200];
    snprintf(want, sizeof want, "%s/data", cwd);
    LD_CHECK_STR(c->repo_path, want);
    ld_config_free(c);
}

LD_TEST(dump_hides_secrets)
{
    ld_config *c = NULL;
    ld_status_clear(&st);
    LD_CHECK_INT(ld_config_load("data/feature_store_larder.yaml", &c, &st), 0);
    if (!c)
        return;
    ld_buf b = LD_BUF_INIT;
    ld_config_dump(c, &b);
    LD_CHECK(strstr(b.data, "project = \"driver_ranking\"\n") != NULL);
    LD_CHECK(strstr(b.data, "larder.workers = 2\n") != NULL);
    LD_CHECK(strstr(b.data, "larder.access_log = false\n") != NULL);
    LD_CHECK(strstr(b.data, "larder.log_level = debug\n") != NULL);
    LD_CHECK(strstr(b.data, "online_store.type = redis\n") != NULL);
    LD_CHECK(strstr(b.data, "offline_store.password = \"****\"\n") != NULL);
    LD_CHECK(strstr(b.data, "registry.path = \"postgresql+psycopg://feast:****@pg.internal:5432/"
                            "feast_registry\"\n") != NULL);
    LD_CHECK(strstr(b.data, "online_store.connection_string = \"redis-0:6379,redis-1:6379,"
                            "ssl=true,password=****\"\n") != NULL);
    LD_CHECK(strstr(b.data, "batch_engine.partitions = \"10\"\n") != NULL);
    LD_CHECK(strstr(b.data, "registry.sqlalchemy_config_kwargs = null\n") != NULL);
    /* keys of other store types are not shown */
    LD_CHECK(strstr(b.data, "online_store.host") == NULL);
    LD_CHECK(strstr(b.data, "s3cret") == NULL);
    LD_CHECK(strstr(b.data, "hunter2") == NULL);
    ld_buf_free(&b);
    ld_config_free(c);
}

LD_TEST_MAIN
