/* ld_daemon: the process skeleton every larder server shares. It parses the
 * common flags, loads feature_store.yaml (flags override the file), sets up
 * logging, builds an ld_server with health (and the debug service when
 * asked), lets the server add its services, serves until SIGTERM/SIGINT, and
 * shuts down gracefully.
 *
 * Every flag is a config key, so `--port 7000` and `larder: {registry_port:
 * 7000}` are the same setting, checked by the same code. */
#pragma once

#include "ld_config.h"
#include "ld_server.h"

typedef struct ld_daemon_opt {
    const char *flag;       /* long option without dashes, e.g. "http-port" */
    const char *config_key; /* e.g. "larder.online_http_port" */
    const char *arg_name;   /* "PORT"; NULL for a boolean flag that sets "true" */
    const char *help;
} ld_daemon_opt;

typedef struct ld_daemon_spec {
    const char *prog;     /* "larder-registry" */
    const char *name;     /* "registry": log component, thread names */
    const char *summary;  /* one line for --help */
    const char *port_key; /* "larder.registry_port" */
    const ld_daemon_opt *extra_opts;
    size_t n_extra_opts;
    /* Add the server's services. *state is handed to teardown. */
    int (*setup)(ld_server *srv, const ld_config *cfg, void **state, ld_status *st);
    /* After the server stopped serving, before it is freed: stop background
     * work that uses the server (its health service); may be NULL. */
    void (*stop)(void *state);
    /* After the server was freed; may be NULL. */
    void (*teardown)(void *state);
} ld_daemon_spec;

/* Returns the process exit code: 0 clean stop, 1 runtime or config error,
 * 2 usage error. */
int ld_daemon_main(const ld_daemon_spec *spec, int argc, char **argv);
