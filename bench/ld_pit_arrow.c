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

#include "ld_pit_tool.h"
#include "ot_ipc.h"
#include "ot_pit.h"

static int usage(const char *msg)
{
    fprintf(stderr,
            "ld-pit-arrow: %s\n"
            "usage: ld-pit-arrow [--threads N] [--repeat R] --entities FILE --entity-ts COL\n"
            "%s",
            msg, LD_PIT_ARGS_USAGE_VIEWS);
    return 2;
}

/* --repeat R (ld_pit_args_parse's callback). */
static int own_opt(void *arg, const char *name, const char *value)
{
    if (!value || strcmp(name, "--repeat"))
        return 0;
    *(int *)arg = atoi(value);
    return 1;
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
    static ld_pit_args args = {.threads = 2};
    ot_table *tables[LD_PIT_MAX_VIEWS] = {0};
    ot_pit_view pv[LD_PIT_MAX_VIEWS];
    int repeat = 3, rc = 1;
    ld_status st = LD_STATUS_INIT;
    ot_table *ent = NULL;

    const char *bad = ld_pit_args_parse(&args, argc, argv, own_opt, &repeat);
    if (!bad && repeat < 1)
        bad = "--entities and --entity-ts are required";
    if (bad)
        return usage(bad);
    size_t nv = args.n_views;
    int threads = args.threads;

    double t0 = ld_pit_now_ms();
    if (ot_ipc_read_path(args.entities, &ent, &st) < 0)
        goto fail;
    for (size_t i = 0; i < nv; i++) {
        const ld_pit_view_args *v = &args.views[i];
        if (!v->event_ts) {
            rc = usage("--event-ts is required for each view");
            goto done;
        }
        if (ot_ipc_read_path(v->file, &tables[i], &st) < 0)
            goto fail;
        pv[i] = ld_pit_args_view(v, tables[i]);
    }
    double t1 = ld_pit_now_ms();
    printf("{\"read_ms\": %.3f, \"join_ms\": [", t1 - t0);
    int64_t rows = 0;
    for (int r = 0; r < repeat; r++) {
        ot_table *out = NULL;
        double a = ld_pit_now_ms();
        if (ot_pit_join(ent, args.entity_ts, pv, nv, threads, &out, &st) < 0)
            goto fail;
        double b = ld_pit_now_ms();
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
        ot_table_free(tables[i]);
    return rc;
}
