/* ld-pit-arrow: the point-in-time join engine alone (ot_pit_join) on Arrow
 * IPC files, timed — the "engine only" column of bench/offline_bench.mjs,
 * next to DuckDB's query on tables already in memory.
 *
 *   ld-pit-arrow [--threads N] [--repeat R] --entities FILE --entity-ts COL
 *                { --view FILE --event-ts COL [--created COL] [--ttl-us N]
 *                  [--key SRC[=ENTITY_COL]]... [--feature SRC[=OUT]]... }...
 *
 * Files are read once (ot_ipc_read_path); the join runs R times (default 3)
 * on the same tables, the result freed each time. Prints one JSON line:
 *   {"read_ms", "join_ms": [...], "rows", "threads", "peak_rss_bytes"}
 * Exit 0, 1 on error, 2 on bad usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ot_ipc.h"
#include "ot_pit.h"

#define MAX_VIEWS 16
#define MAX_ITEMS 64

typedef struct view_spec {
    const char *file, *event_ts, *created;
    int64_t ttl_us;
    const char *keys[MAX_ITEMS], *ekeys[MAX_ITEMS], *feats[MAX_ITEMS], *outs[MAX_ITEMS];
    size_t n_keys, n_feats;
    ot_table *t;
} view_spec;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int usage(const char *msg)
{
    fprintf(stderr,
            "ld-pit-arrow: %s\n"
            "usage: ld-pit-arrow [--threads N] [--repeat R] --entities FILE --entity-ts COL\n"
            "       { --view FILE --event-ts COL [--created COL] [--ttl-us N]\n"
            "         [--key SRC[=ENTITY_COL]]... [--feature SRC[=OUT]]... }...\n",
            msg);
    return 2;
}

static void split_pair(char *arg, const char **left, const char **right)
{
    char *eq = strchr(arg, '=');
    *left = arg;
    *right = arg;
    if (eq) {
        *eq = 0;
        *right = eq + 1;
    }
}

static long long peak_rss(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %lld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

int main(int argc, char **argv)
{
    static view_spec views[MAX_VIEWS];
    ot_pit_view pv[MAX_VIEWS];
    const char *ent_file = NULL, *ent_ts = NULL;
    size_t nv = 0;
    int threads = 2, repeat = 3, rc = 1;
    ld_status st = LD_STATUS_INIT;
    ot_table *ent = NULL;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc)
            return usage("missing value");
        char *v = argv[++i];
        view_spec *cur = nv ? &views[nv - 1] : NULL;
        if (!strcmp(a, "--threads")) {
            threads = atoi(v);
        } else if (!strcmp(a, "--repeat")) {
            repeat = atoi(v);
        } else if (!strcmp(a, "--entities")) {
            ent_file = v;
        } else if (!strcmp(a, "--entity-ts")) {
            ent_ts = v;
        } else if (!strcmp(a, "--view")) {
            if (nv == MAX_VIEWS)
                return usage("too many views");
            views[nv++].file = v;
        } else if (!cur) {
            return usage("view option before --view");
        } else if (!strcmp(a, "--event-ts")) {
            cur->event_ts = v;
        } else if (!strcmp(a, "--created")) {
            cur->created = v;
        } else if (!strcmp(a, "--ttl-us")) {
            cur->ttl_us = strtoll(v, NULL, 10);
        } else if (!strcmp(a, "--key")) {
            if (cur->n_keys == MAX_ITEMS)
                return usage("too many keys");
            split_pair(v, &cur->keys[cur->n_keys], &cur->ekeys[cur->n_keys]);
            cur->n_keys++;
        } else if (!strcmp(a, "--feature")) {
            if (cur->n_feats == MAX_ITEMS)
                return usage("too many features");
            split_pair(v, &cur->feats[cur->n_feats], &cur->outs[cur->n_feats]);
            cur->n_feats++;
        } else {
            return usage(a);
        }
    }
    if (!ent_file || !ent_ts || repeat < 1)
        return usage("--entities and --entity-ts are required");

    double t0 = now_ms();
    if (ot_ipc_read_path(ent_file, &ent, &st) < 0)
        goto fail;
    for (size_t i = 0; i < nv; i++) {
        view_spec *s = &views[i];
        if (!s->event_ts) {
            rc = usage("--event-ts is required for each view");
            goto done;
        }
        if (ot_ipc_read_path(s->file, &s->t, &st) < 0)
            goto fail;
        pv[i] = (ot_pit_view){
                .source = s->t,
                .join_keys = s->keys,
                .entity_keys = s->ekeys,
                .n_keys = s->n_keys,
                .event_ts = s->event_ts,
                .created_ts = s->created,
                .ttl_us = s->ttl_us,
                .features = s->feats,
                .out_names = s->outs,
                .n_features = s->n_feats,
        };
    }
    double t1 = now_ms();
    printf("{\"read_ms\": %.3f, \"join_ms\": [", t1 - t0);
    int64_t rows = 0;
    for (int r = 0; r < repeat; r++) {
        ot_table *out = NULL;
        double a = now_ms();
        if (ot_pit_join(ent, ent_ts, pv, nv, threads, &out, &st) < 0)
            goto fail;
        double b = now_ms();
        rows = out->n_rows;
        ot_table_free(out);
        printf("%s%.3f", r ? ", " : "", b - a);
    }
    printf("], \"rows\": %lld, \"threads\": %d, \"peak_rss_bytes\": %lld}\n", (long long)rows,
           threads, peak_rss());
    rc = 0;
    goto done;
fail:
    fflush(stdout);
    fprintf(stderr, "ld-pit-arrow: %s: %s\n", ld_status_code_name(st.code), st.msg);
done:
    ot_table_free(ent);
    for (size_t i = 0; i < nv; i++)
        ot_table_free(views[i].t);
    return rc;
}
