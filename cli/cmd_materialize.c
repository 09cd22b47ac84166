/* larder materialize / materialize-incremental: run the materialization
 * engine (online_server/ol_materialize.h) in this process, against the online
 * store feature_store.yaml names; the offline server is found through the
 * registry. Progress goes to stderr (a bar on a terminal, a log line every
 * few seconds otherwise), the result to stdout (a line per view and a total,
 * or JSON with --json). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <grpc/grpc.h>

#include "cli.h"
#include "cli_util.h"
#include "ld_buf.h"
#include "ld_config.h"
#include "ld_log.h"
#include "ld_time.h"
#include "ol_materialize.h"
#include "ol_store.h"

#define MAX_VIEWS 1024

typedef struct progress_state {
    int tty;
    int quiet;
    int64_t every_us; /* between two updates */
    int64_t last_us;
    int drawn; /* a bar is on the terminal line */
} progress_state;

static void fmt_count(int64_t n, char *out, size_t cap)
{
    char tmp[32];
    int len = snprintf(tmp, sizeof tmp, "%lld", (long long)(n < 0 ? -n : n));
    size_t o = 0;
    if (n < 0 && o + 1 < cap)
        out[o++] = '-';
    for (int i = 0; i < len && o + 1 < cap; i++) {
        if (i && (len - i) % 3 == 0 && o + 1 < cap)
            out[o++] = ',';
        out[o++] = tmp[i];
    }
    out[o] = '\0';
}

/* "ETA 42 s", "ETA 3:05", "ETA 1:02:03"; "ETA --" while unknown. */
static void fmt_eta(const ol_mat_progress *p, double rate, char *out, size_t cap)
{
    if (p->view_total < 0 || rate <= 0 || p->view_done) {
        snprintf(out, cap, "%s", p->view_done ? "done" : "ETA --");
        return;
    }
    double left = (double)(p->view_total - p->view_rows) / rate;
    long long s = left < 0 ? 0 : (long long)(left + 0.5);
    if (s < 60)
        snprintf(out, cap, "ETA %lld s", s);
    else if (s < 3600)
        snprintf(out, cap, "ETA %lld:%02lld", s / 60, s % 60);
    else
        snprintf(out, cap, "ETA %lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
}

static void on_progress(void *arg, const ol_mat_progress *p)
{
    progress_state *ps = arg;
    if (ps->quiet)
        return;
    int64_t now = ld_mono_us();
    if (!p->view_done && now - ps->last_us < ps->every_us)
        return;
    ps->last_us = now;
    double secs = (double)p->elapsed_us / 1e6;
    double rate = secs > 0 ? (double)p->rows / secs : 0;
    /* the ETA uses this view's pace since its first rows arrived (the wait
     * for the offline server's query is behind it) */
    double vsecs = (double)p->view_elapsed_us / 1e6;
    double vrate = vsecs > 0.2 ? (double)p->view_rows / vsecs : rate;
    char rows[32], vrows[32], rs[32], of[48] = "", eta[48];
    fmt_count(p->rows, rows, sizeof rows);
    fmt_count(p->view_rows, vrows, sizeof vrows);
    fmt_count((int64_t)rate, rs, sizeof rs);
    fmt_eta(p, vrate, eta, sizeof eta);
    if (p->view_total >= 0) {
        char t[32];
        fmt_count(p->view_total, t, sizeof t);
        snprintf(of, sizeof of, "/%s", t);
    }
    if (ps->tty) {
        /* a bar over the views, filled within a view when its total is known */
        double frac = p->n_views ? (double)p->view_index / (double)p->n_views : 0;
        if (p->view_done)
            frac = (double)(p->view_index + 1) / (double)p->n_views;
        else if (p->view_total > 0)
            frac += (double)p->view_rows / (double)p->view_total / (double)p->n_views;
        if (frac > 1)
            frac = 1;
        char bar[25];
        int fill = (int)(frac * 24);
        for (int i = 0; i < 24; i++)
            bar[i] = i < fill ? '#' : '-';
        bar[24] = '\0';
        fprintf(stderr, "\r\033[K[%s] view %zu/%zu %s: %s%s rows | total %s rows, %s rows/s, %s",
                bar, p->view_index + 1, p->n_views, p->view, vrows, of, rows, rs, eta);
        ps->drawn = 1;
        if (p->view_done) {
            fputc('\n', stderr);
            ps->drawn = 0;
        }
    } else {
        char pct[16] = "";
        if (p->view_total > 0)
            snprintf(pct, sizeof pct, " (%d%%)",
                     (int)(100.0 * (double)p->view_rows / (double)p->view_total));
        fprintf(stderr, "materialize: view %zu/%zu %s: %s%s rows%s; total %s rows, %s rows/s, %s\n",
                p->view_index + 1, p->n_views, p->view, vrows, of, pct, rows, rs, eta);
    }
    fflush(stderr);
}

static void print_usage(FILE *f, int incremental)
{
    if (incremental)
        fprintf(f, "usage: larder materialize-incremental END [-v VIEW]... [OPTIONS]\n\n"
                   "Load every feature view's rows from where its last materialization ended\n"
                   "(or now - ttl, 52 weeks for ttl 0) up to END into the online store.\n\n");
    else
        fprintf(f, "usage: larder materialize START END [-v VIEW]... [OPTIONS]\n\n"
                   "Load the latest row per entity with an event time in [START, END] into the\n"
                   "online store, for every online feature view or the ones named.\n\n");
    fprintf(f, "Times are ISO 8601 (2021-04-12, 2021-04-12T10:59:42, ...Z, ...+02:00; naive\n"
               "means UTC) or 'now'. The offline server is found through the registry.\n\n"
               "options:\n"
               "  -c, --config FILE            feature_store.yaml (default ./feature_store.yaml)\n"
               "  -v, --views VIEW             only this feature view (repeatable)\n");
    if (!incremental)
        fprintf(f, "      --disable-event-timestamp  write every row with the current time as "
                   "its\n                               event timestamp\n");
    fprintf(f, "      --batch-rows N           rows per online-store write (default: "
               "materialization.\n                               online_write_batch_size, else "
               "10000)\n"
               "      --inflight N             online-store writes in flight (default 4)\n"
               "      --json                   print the result as JSON\n"
               "  -q, --quiet                  no progress on stderr\n"
               "      --progress-interval S    seconds between progress updates (default 0.1\n"
               "                               on a terminal, else 5: one log line each)\n"
               "  -h, --help                   this text\n\n"
               "exit codes: 0 ok, 1 failed, 2 bad usage, 3 invalid config, 4 a server could not\n"
               "be reached. Rerunning an interrupted run is safe: writes are idempotent.\n");
}

static int parse_time(const char *s, int64_t *us)
{
    if (!strcmp(s, "now")) {
        *us = ld_wall_us();
        return 0;
    }
    return ld_time_parse_iso8601(s, us);
}

static void print_result(const ol_mat_result *r, int json, const char *project)
{
    double secs = (double)r->elapsed_us / 1e6;
    double rate = secs > 0 ? (double)r->rows / secs : 0;
    if (json) {
        ld_buf b = LD_BUF_INIT;
        ld_buf_puts(&b, "{\"project\": ");
        ld_buf_json_str(&b, project, strlen(project), 0);
        ld_buf_puts(&b, ", \"offline_server\": ");
        ld_buf_json_str(&b, r->offline_target, strlen(r->offline_target), 0);
        ld_buf_puts(&b, ", \"views\": [");
        for (size_t i = 0; i < r->n_views; i++) {
            const ol_mat_view_result *v = &r->views[i];
            char s[40], e[40];
            ld_time_rfc3339_us(v->start_us, s, sizeof s);
            ld_time_rfc3339_us(v->end_us, e, sizeof e);
            ld_buf_printf(&b, "%s{\"name\": ", i ? ", " : "");
            ld_buf_json_str(&b, v->name, strlen(v->name), 0);
            ld_buf_printf(&b, ", \"start\": \"%s\", \"end\": \"%s\", \"rows\": %lld", s, e,
                          (long long)v->rows);
            ld_buf_printf(&b, ", \"skipped_older\": %lld", (long long)v->skipped);
            ld_buf_printf(&b, ", \"seconds\": %.3f, \"first_rows_seconds\": %.3f}",
                          (double)v->elapsed_us / 1e6,
                          v->first_batch_us < 0 ? -1.0 : (double)v->first_batch_us / 1e6);
        }
        ld_buf_printf(&b, "], \"rows\": %lld, \"seconds\": %.3f, \"rows_per_second\": %.0f}\n",
                      (long long)r->rows, secs, rate);
        fwrite(b.data, 1, b.len, stdout);
        ld_buf_free(&b);
        return;
    }
    for (size_t i = 0; i < r->n_views; i++) {
        const ol_mat_view_result *v = &r->views[i];
        char s[40], e[40], n[32];
        ld_time_rfc3339_us(v->start_us, s, sizeof s);
        ld_time_rfc3339_us(v->end_us, e, sizeof e);
        fmt_count(v->rows, n, sizeof n);
        printf("%s: %s rows from %s to %s in %.2f s\n", v->name, n, s, e,
               (double)v->elapsed_us / 1e6);
    }
    char n[32], rs[32];
    fmt_count(r->rows, n, sizeof n);
    fmt_count((int64_t)rate, rs, sizeof rs);
    printf("materialized %s rows into %zu feature view%s in %.2f s (%s rows/s)\n", n, r->n_views,
           r->n_views == 1 ? "" : "s", secs, rs);
}

static int run(int argc, char **argv, int incremental)
{
    static const struct option longopts[] = {
            {"config", required_argument, NULL, 'c'},
            {"views", required_argument, NULL, 'v'},
            {"view", required_argument, NULL, 'v'},
            {"disable-event-timestamp", no_argument, NULL, 'D'},
            {"batch-rows", required_argument, NULL, 'B'},
            {"inflight", required_argument, NULL, 'I'},
            {"json", no_argument, NULL, 'J'},
            {"quiet", no_argument, NULL, 'q'},
            {"progress-interval", required_argument, NULL, 'P'},
            {"help", no_argument, NULL, 'h'},
            {NULL, 0, NULL, 0},
    };
    const char *config = "feature_store.yaml";
    const char *views[MAX_VIEWS];
    size_t n_views = 0;
    int disable_ts = 0, json = 0, quiet = 0;
    long long batch_rows = 0;
    long inflight = 0;
    double interval = -1;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":c:v:qh", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 'v':
            if (n_views == MAX_VIEWS) {
                fprintf(stderr, "larder %s: at most %d views\n", argv[0], MAX_VIEWS);
                return CLI_EXIT_USAGE;
            }
            views[n_views++] = optarg;
            break;
        case 'D':
            if (incremental) {
                fprintf(stderr, "larder %s: --disable-event-timestamp is for materialize\n",
                        argv[0]);
                return CLI_EXIT_USAGE;
            }
            disable_ts = 1;
            break;
        case 'B': {
            char *end;
            batch_rows = strtoll(optarg, &end, 10);
            if (*end || batch_rows < 1 || batch_rows > 1000000) {
                fprintf(stderr, "larder %s: --batch-rows must be 1..1000000\n", argv[0]);
                return CLI_EXIT_USAGE;
            }
            break;
        }
        case 'I': {
            char *end;
            inflight = strtol(optarg, &end, 10);
            if (*end || inflight < 1 || inflight > 256) {
                fprintf(stderr, "larder %s: --inflight must be 1..256\n", argv[0]);
                return CLI_EXIT_USAGE;
            }
            break;
        }
        case 'J':
            json = 1;
            break;
        case 'P': {
            char *end;
            interval = strtod(optarg, &end);
            if (*end || end == optarg || !(interval >= 0.01 && interval <= 3600)) {
                fprintf(stderr, "larder %s: --progress-interval must be 0.01..3600 seconds\n",
                        argv[0]);
                return CLI_EXIT_USAGE;
            }
            break;
        }
        case 'q':
            quiet = 1;
            break;
        case 'h':
            print_usage(stdout, incremental);
            return CLI_EXIT_OK;
        default:
            return cli_bad_option(c, argv);
        }
    }
    int want = incremental ? 1 : 2;
    if (argc - optind != want) {
        fprintf(stderr, "larder %s: expected %s (see --help)\n", argv[0],
                incremental ? "END" : "START END");
        return CLI_EXIT_USAGE;
    }
    int64_t start = 0, end = 0;
    if (!incremental && parse_time(argv[optind], &start) != 0) {
        fprintf(stderr, "larder %s: START '%s' is not an ISO 8601 time\n", argv[0], argv[optind]);
        return CLI_EXIT_USAGE;
    }
    if (parse_time(argv[argc - 1], &end) != 0) {
        fprintf(stderr, "larder %s: END '%s' is not an ISO 8601 time\n", argv[0], argv[argc - 1]);
        return CLI_EXIT_USAGE;
    }
    if (!incremental && start > end) {
        fprintf(stderr, "larder %s: START is after END\n", argv[0]);
        return CLI_EXIT_USAGE;
    }

    ld_status st = LD_STATUS_INIT;
    ld_config *cfg = NULL;
    if (cli_load_config(argv[0], config, &cfg) != CLI_EXIT_OK)
        return CLI_EXIT_INVALID;
    ld_log_setup(LD_LOG_WARN, LD_LOG_TEXT, "larder"); /* store chatter off */
    grpc_init();
    int rc = CLI_EXIT_OK;
    /* Redis with Feast's default dedup: do it the way Feast does (read the
     * stored event times, write only newer rows) over plain HSETs, rather
     * than one script call per row */
    int precheck = cfg->online_store.type == LD_ONLINE_REDIS && !cfg->online_store.redis.skip_dedup;
    if (precheck && ld_config_set(cfg, "online_store.skip_dedup", "true", &st) != 0)
        precheck = 0;
    ol_store *store = ol_store_new(cfg, &st);
    if (!store) {
        fprintf(stderr, "larder %s: online store: %s\n", argv[0], st.msg);
        rc = st.code == GRPC_STATUS_INVALID_ARGUMENT ? CLI_EXIT_INVALID : CLI_EXIT_UNAVAILABLE;
    } else {
        progress_state ps = {.tty = isatty(STDERR_FILENO), .quiet = quiet};
        ps.every_us = interval > 0 ? (int64_t)(interval * 1e6) : ps.tty ? 100000 : 5000000;
        ol_mat_request req = {.incremental = incremental,
                              .start_us = start,
                              .end_us = end,
                              .views = views,
                              .n_views = n_views,
                              .disable_event_timestamp = disable_ts,
                              .progress = on_progress,
                              .progress_arg = &ps,
                              .write_batch_rows = batch_rows,
                              .max_inflight = (int)inflight,
                              .lww_precheck = precheck};
        ol_mat_result res;
        int mrc = ol_materialize(cfg, store, &req, &res, &st);
        if (ps.drawn)
            fputc('\n', stderr);
        if (mrc != 0) {
            char n[32];
            fmt_count(res.rows, n, sizeof n);
            fprintf(stderr, "larder %s: %s\n", argv[0], st.msg);
            if (res.rows)
                fprintf(stderr,
                        "larder %s: %s rows were written before the failure; rerunning is "
                        "safe\n",
                        argv[0], n);
            rc = cli_exit_for(&st);
        } else {
            print_result(&res, json, cfg->project);
        }
        ol_mat_result_clear(&res);
        store->ops->free(store);
    }
    ld_config_free(cfg);
    grpc_shutdown();
    return rc;
}

int cli_cmd_materialize(int argc, char **argv)
{
    return run(argc, argv, 0);
}

int cli_cmd_materialize_incremental(int argc, char **argv)
{
    return run(argc, argv, 1);
}
