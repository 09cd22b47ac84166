#include "ld_daemon.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <grpc/grpc.h>
#include <grpc/support/log.h>

#include "ld_absl.h"
#include "ld_debug_service.h"
#include "ld_log.h"
#include "ld_pmqos.h"

#ifndef LARDER_VERSION
#define LARDER_VERSION "0.1.0"
#endif

enum {
    OPT_CONFIG = 'c',
    OPT_HELP = 'h',
    OPT_VERSION = 1000,
    OPT_DEBUG_SERVICE,
    OPT_PRINT_CONFIG,
    OPT_MAPPED, /* OPT_MAPPED + i: the i-th entry of the flag table */
};

/* Flags shared by every server; "@port" stands for the spec's port key. */
static const ld_daemon_opt common_opts[] = {
        {"host", "larder.host", "HOST", "address to listen on (default 127.0.0.1)"},
        {"port", "@port", "PORT", "gRPC port (0: pick a free one)"},
        {"tls-cert", "larder.tls_cert", "FILE", "serve TLS with this PEM certificate chain"},
        {"tls-key", "larder.tls_key", "FILE", "private key (PEM) of --tls-cert"},
        {"tls-client-ca", "larder.tls_client_ca", "FILE",
         "require client certificates signed by this CA (mutual TLS)"},
        {"log-level", "larder.log_level", "LEVEL", "debug|info|warning|error|off (default info)"},
        {"log-format", "larder.log_format", "FORMAT", "text|json (default text)"},
        {"workers", "larder.workers", "N", "completion-queue threads (default 1)"},
        {"max-message-bytes", "larder.max_message_bytes", "N",
         "largest request accepted (default 16777216)"},
        {"grace-period", "larder.grace_period_seconds", "SECONDS",
         "on SIGTERM/SIGINT, time given to calls in flight before they are cancelled (default 5)"},
        {"no-access-log", "larder.access_log", NULL, "no log line per call"},
        {"cpu-dma-latency", "larder.cpu_dma_latency_us", "US",
         "hold this CPU wake-up latency limit while serving (PM QoS; 0: idle CPUs poll; needs "
         "root)"},
};

#define N_COMMON (sizeof common_opts / sizeof common_opts[0])
#define MAX_OPTS 64

static void usage(const ld_daemon_spec *spec, FILE *f)
{
    fprintf(f, "Usage: %s [OPTIONS]\n%s\n\n", spec->prog, spec->summary);
    fprintf(f, "  -c, --config FILE        Feast feature_store.yaml (default: ./feature_store.yaml "
               "if present,\n                           else embedded defaults)\n");
    for (size_t i = 0; i < N_COMMON + spec->n_extra_opts; i++) {
        const ld_daemon_opt *o = i < N_COMMON ? &common_opts[i] : &spec->extra_opts[i - N_COMMON];
        char left[64];
        snprintf(left, sizeof left, "--%s%s%s", o->flag, o->arg_name ? " " : "",
                 o->arg_name ? o->arg_name : "");
        fprintf(f, "      %-21s %s\n", left, o->help);
    }
    fprintf(f, "      %-21s%s\n", "--debug-service", "also serve larder.debug.Debug (tests)");
    fprintf(f, "      %-21s%s\n", "--print-config", "print the effective configuration and exit");
    fprintf(f, "  -h, %-21s%s\n", "--help", "this text");
    fprintf(f, "      %-21s%s\n", "--version", "print the version and exit");
    fprintf(f, "\nSignals: SIGTERM/SIGINT stop gracefully. Exit codes: 0 clean stop, 1 error, "
               "2 usage.\n");
}

/* A path given on the command line is relative to the working directory;
 * the config resolves relative paths against the yaml's directory, so make
 * command-line paths absolute first. */
static char *absolute(const char *p)
{
    if (!p || !*p || p[0] == '/')
        return strdup(p ? p : "");
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd))
        return strdup(p);
    size_t n = strlen(cwd) + strlen(p) + 2;
    char *out = malloc(n);
    if (out)
        snprintf(out, n, "%s/%s", cwd, p);
    return out;
}

static int is_path_key(const char *key)
{
    return strstr(key, "tls_") != NULL;
}

typedef struct override {
    const char *key;
    char *value;
} override;

/* Returns rc, for `return free_overrides(...)` on early exits. */
static int free_overrides(override *o, size_t n, int rc)
{
    for (size_t i = 0; i < n; i++)
        free(o[i].value);
    return rc;
}

static void log_warnings(const ld_config *cfg)
{
    for (size_t i = 0; i < cfg->nwarnings; i++)
        ld_warn("%s", cfg->warnings[i]);
    if (cfg->nwarnings_dropped)
        ld_warn("%zu more configuration warnings not shown", cfg->nwarnings_dropped);
}

/* gRPC's own messages (handshake failures, ...) go through our logger, so
 * every stderr line has one format (text or JSON). */
static void grpc_log(gpr_log_func_args *args)
{
    ld_log_level level = args->severity == GPR_LOG_SEVERITY_ERROR  ? LD_LOG_WARN
                         : args->severity == GPR_LOG_SEVERITY_INFO ? LD_LOG_INFO
                                                                   : LD_LOG_DEBUG;
    if (level < ld_log_get_level())
        return;
    const char *file = strrchr(args->file, '/');
    ld_log_write(level, "grpc: %s (%s:%d)", args->message, file ? file + 1 : args->file,
                 args->line);
}

static int port_for(const ld_larder_config *lc, const char *key)
{
    if (strcmp(key, "larder.registry_port") == 0)
        return lc->registry_port;
    if (strcmp(key, "larder.online_port") == 0)
        return lc->online_port;
    if (strcmp(key, "larder.online_http_port") == 0)
        return lc->online_http_port;
    return lc->offline_port;
}

static char *tls_path(const ld_config *cfg, const char *p)
{
    return p && *p ? ld_config_resolve_path(cfg, p) : NULL;
}

int ld_daemon_main(const ld_daemon_spec *spec, int argc, char **argv)
{
    struct option longopts[MAX_OPTS + 8];
    size_t n_opts = N_COMMON + spec->n_extra_opts;
    if (n_opts > MAX_OPTS) {
        fprintf(stderr, "%s: too many options (bug)\n", spec->prog);
        return 1;
    }
    size_t k = 0;
    longopts[k++] = (struct option){"config", required_argument, NULL, OPT_CONFIG};
    longopts[k++] = (struct option){"help", no_argument, NULL, OPT_HELP};
    longopts[k++] = (struct option){"version", no_argument, NULL, OPT_VERSION};
    longopts[k++] = (struct option){"debug-service", no_argument, NULL, OPT_DEBUG_SERVICE};
    longopts[k++] = (struct option){"print-config", no_argument, NULL, OPT_PRINT_CONFIG};
    for (size_t i = 0; i < n_opts; i++) {
        const ld_daemon_opt *o = i < N_COMMON ? &common_opts[i] : &spec->extra_opts[i - N_COMMON];
        longopts[k++] = (struct option){o->flag, o->arg_name ? required_argument : no_argument,
                                        NULL, OPT_MAPPED + (int)i};
    }
    longopts[k] = (struct option){NULL, 0, NULL, 0};

    const char *config_path = NULL;
    int debug_service = 0, print_config = 0;
    override overrides[MAX_OPTS];
    size_t n_over = 0;
    int c, rc = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":c:h", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_CONFIG:
            config_path = optarg;
            break;
        case OPT_HELP:
            usage(spec, stdout);
            return free_overrides(overrides, n_over, 0);
        case OPT_VERSION:
            printf("%s %s\n", spec->prog, LARDER_VERSION);
            return free_overrides(overrides, n_over, 0);
        case OPT_DEBUG_SERVICE:
            debug_service = 1;
            break;
        case OPT_PRINT_CONFIG:
            print_config = 1;
            break;
        case ':':
            fprintf(stderr, "%s: option '%s' needs a value (see --help)\n", spec->prog,
                    argv[optind - 1]);
            return free_overrides(overrides, n_over, 2);
        case '?':
            fprintf(stderr, "%s: unknown option '%s' (see --help)\n", spec->prog, argv[optind - 1]);
            return free_overrides(overrides, n_over, 2);
        default: {
            size_t i = (size_t)(c - OPT_MAPPED);
            const ld_daemon_opt *o =
                    i < N_COMMON ? &common_opts[i] : &spec->extra_opts[i - N_COMMON];
            const char *key = strcmp(o->config_key, "@port") == 0 ? spec->port_key : o->config_key;
            char *value;
            if (!o->arg_name)
                value = strdup(strcmp(o->flag, "no-access-log") == 0 ? "false" : "true");
            else if (is_path_key(key))
                value = absolute(optarg);
            else
                value = strdup(optarg);
            if (n_over < MAX_OPTS)
                overrides[n_over++] = (override){key, value};
            else
                free(value);
        }
        }
    }
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n", spec->prog, argv[optind]);
        return free_overrides(overrides, n_over, 2);
    }

    /* Configuration: file, then flags. */
    ld_status st = LD_STATUS_INIT;
    ld_config *cfg = NULL;
    if (!config_path && access("feature_store.yaml", F_OK) == 0)
        config_path = "feature_store.yaml";
    if (config_path) {
        if (ld_config_load(config_path, &cfg, &st) != 0) {
            fprintf(stderr, "%s: %s\n", spec->prog, st.msg);
            for (size_t i = 0; i < n_over; i++)
                free(overrides[i].value);
            return 1;
        }
    } else {
        cfg = ld_config_default(NULL);
    }
    int usage_error = 0;
    for (size_t i = 0; i < n_over; i++) {
        if (!usage_error && ld_config_set(cfg, overrides[i].key, overrides[i].value, &st) != 0) {
            fprintf(stderr, "%s: %s\n", spec->prog, st.msg);
            usage_error = 1;
        }
        free(overrides[i].value);
    }
    if (usage_error) {
        ld_config_free(cfg);
        return 2;
    }
    if (ld_config_validate(cfg, &st) != 0) {
        fprintf(stderr, "%s: %s\n", spec->prog, st.msg);
        ld_config_free(cfg);
        return 1;
    }
    if (print_config) {
        ld_buf b = LD_BUF_INIT;
        ld_config_dump(cfg, &b);
        fwrite(b.data, 1, b.len, stdout);
        ld_buf_free(&b);
        ld_config_free(cfg);
        return 0;
    }

    const ld_larder_config *lc = &cfg->larder;
    ld_log_setup(lc->log_level, lc->log_format, spec->name);
    log_warnings(cfg);

    /* Signals are taken by sigwait() in this thread only: block them before
     * any thread (gRPC's included) starts, so every thread inherits the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    gpr_set_log_function(grpc_log);
    int absl_off = ld_absl_deadlock_detection_off();
    grpc_init();
    ld_debug("Abseil Mutex deadlock detection: %s",
             absl_off ? "off" : "as built (switch not found)");
    ld_status pst = LD_STATUS_INIT;
    int port = port_for(lc, spec->port_key);
    char *cert = tls_path(cfg, lc->tls_cert), *key = tls_path(cfg, lc->tls_key);
    char *client_ca = tls_path(cfg, lc->tls_client_ca);
    ld_server_opts opts = {
            .name = spec->name,
            .host = lc->host,
            .port = port,
            .workers = lc->workers,
            .max_message_bytes = (size_t)lc->max_message_bytes,
            .grace_period_ms = lc->grace_period_seconds * 1000,
            .keepalive_time_ms = lc->keepalive_time_seconds * 1000,
            .keepalive_timeout_ms = lc->keepalive_timeout_seconds * 1000,
            .access_log = lc->access_log,
            .tls_cert = cert,
            .tls_key = key,
            .tls_client_ca = client_ca,
    };
    void *state = NULL;
    int have_state = 0;
    ld_pmqos *pmqos = NULL;
    ld_server *srv = ld_server_new(&opts, &pst);
    free(cert);
    free(key);
    free(client_ca);
    if (!srv)
        goto fail;
    if (debug_service && ld_debug_service_register(srv, &pst) != 0)
        goto fail;
    if (spec->setup) {
        if (spec->setup(srv, cfg, &state, &pst) != 0)
            goto fail;
        have_state = 1;
    }
    if (ld_server_start(srv, &pst) != 0)
        goto fail;
    ld_info("%s %s serving project '%s' on %s:%d%s", spec->prog, LARDER_VERSION, cfg->project,
            lc->host, ld_server_port(srv), lc->tls_cert ? " (TLS)" : "");
    if (lc->cpu_dma_latency_us >= 0) {
        ld_status qst = LD_STATUS_INIT;
        if (ld_pmqos_hold(lc->cpu_dma_latency_us, &pmqos, &qst) == 0)
            ld_info("holding a CPU wake-up latency limit of %d us (PM QoS) while serving",
                    lc->cpu_dma_latency_us);
        else
            ld_warn("cpu_dma_latency_us: %s; serving with the system's idle policy", qst.msg);
    }

    int sig = 0;
    while (sigwait(&sigs, &sig) != 0)
        ;
    ld_info("received %s: stopping (grace period %d s)", sig == SIGTERM ? "SIGTERM" : "SIGINT",
            lc->grace_period_seconds);
    ld_server_shutdown(srv);
    rc = 0;
    goto out;

fail:
    ld_error("%s", pst.msg);
    rc = 1;
out:
    if (have_state && spec->stop)
        spec->stop(state);
    ld_server_free(srv);
    ld_pmqos_release(pmqos);
    if (have_state && spec->teardown)
        spec->teardown(state);
    ld_config_free(cfg);
    grpc_shutdown();
    return rc;
}
