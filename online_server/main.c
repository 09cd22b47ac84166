/* larder-online: Feast's online feature server — gRPC ServingService and
 * GrpcFeatureServer on --port, Feast's HTTP/JSON feature-server API on
 * --http-port — over a Redis, PostgreSQL or SQLite online store. */
#include <stdlib.h>

#include "ld_daemon.h"
#include "ld_health.h"
#include "ld_log.h"
#include "ol_grpc.h"
#include "ol_http.h"
#include "ol_materialize.h"
#include "ol_registry.h"
#include "ol_server.h"
#include "ol_store.h"

typedef struct online {
    ol_registry *reg;
    ol_store *store;
    ol_server *core;
    ol_http *http;
    ol_mat_jobs *mat; /* POST /materialize runs */
} online;

static void online_free(online *o)
{
    if (!o)
        return;
    ol_mat_jobs_cancel(o->mat); /* running materializations stop at their next batch */
    if (o->http) {
        ol_http_stop(o->http);
        ol_http_free(o->http);
    }
    ol_mat_jobs_free(o->mat);
    ol_server_free(o->core);
    if (o->store)
        o->store->ops->free(o->store);
    ol_registry_free(o->reg);
    free(o);
}

static int online_setup(ld_server *srv, const ld_config *cfg, void **state, ld_status *st)
{
    online *o = calloc(1, sizeof *o);
    if (!o)
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
    if (!(o->reg = ol_registry_new(cfg, st)) || !(o->store = ol_store_new(cfg, st)) ||
        !(o->core = ol_server_new(cfg, o->reg, o->store, st)) ||
        ol_grpc_register(srv, o->core, st) != 0) {
        online_free(o);
        return -1;
    }
    if (cfg->larder.online_http_port >= 0) {
        if (!(o->mat = ol_mat_jobs_new(cfg, o->store, st))) {
            online_free(o);
            return -1;
        }
        ol_http_opts ho = {.max_body_bytes = (size_t)cfg->larder.max_message_bytes,
                           .grace_ms = (int64_t)cfg->larder.grace_period_seconds * 1000,
                           .no_access_log = !cfg->larder.access_log,
                           .materialize = o->mat};
        o->http = ol_http_new(o->core, cfg->larder.host, cfg->larder.online_http_port, &ho, st);
        if (!o->http) {
            online_free(o);
            return -1;
        }
        ld_info("HTTP feature server on %s:%d", cfg->larder.host, ol_http_port(o->http));
    }
    ld_health *h = ld_server_health(srv);
    ol_registry_attach_health(o->reg, h);
    *state = o;
    return 0;
}

/* The registry refresher publishes into the server's health service, which
 * ld_server_free frees: detach it first. */
static void online_stop(void *state)
{
    online *o = state;
    ol_registry_attach_health(o->reg, NULL);
}

static void online_teardown(void *state)
{
    online_free(state);
}

int main(int argc, char **argv)
{
    static const ld_daemon_opt extra[] = {
            {"http-port", "larder.online_http_port", "PORT",
             "HTTP/JSON feature-server port (default 6566; 0: pick a free one)"},
    };
    static const ld_daemon_spec spec = {
            .prog = "larder-online",
            .name = "online",
            .summary = "Feast's online feature server: gRPC ServingService and GrpcFeatureServer, "
                       "and Feast's HTTP/JSON API, over Redis, PostgreSQL or SQLite.",
            .port_key = "larder.online_port",
            .extra_opts = extra,
            .n_extra_opts = 1,
            .setup = online_setup,
            .stop = online_stop,
            .teardown = online_teardown,
    };
    return ld_daemon_main(&spec, argc, argv);
}
