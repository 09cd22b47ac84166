/* ld_pit: run ot_pit_join on CSV files and print the result as CSV — the
 * C side of tests/node/pit_oracle.test.mjs (DuckDB computes the other side).
 *
 *   ld_pit [--threads N] [--ns] [--timing]
 *          --entities FILE --entity-ts COL
 *          { --view FILE --event-ts COL [--created COL] [--ttl-us N]
 *            [--key SRC[=ENTITY_COL]]... [--feature SRC[=OUT_NAME]]... }...
 *
 * Each --view starts a feature view; the options after it up to the next
 * --view describe it. --ns reads timestamps in nanoseconds; --timing prints
 * read / join / write times (ms) to stderr. Exit 0, or 1 with a message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ld_pit_tool.h"
#include "ot_csv.h"
#include "ot_pit.h"

static int usage(const char *msg)
{
    fprintf(stderr,
            "ld_pit: %s\n"
            "usage: ld_pit [--threads N] [--ns] [--timing] --entities FILE --entity-ts COL\n"
            "%s",
            msg, LD_PIT_ARGS_USAGE_VIEWS);
    return 1;
}

typedef struct own_opts {
    ot_csv_opts copts;
    int timing;
} own_opts;

/* --ns, --timing (ld_pit_args_parse's callback). */
static int own_opt(void *arg, const char *name, const char *value)
{
    own_opts *o = arg;
    if (value)
        return 0;
    if (strcmp(name, "--ns") == 0) {
        o->copts.ts_nanos = true;
        return 1;
    }
    if (strcmp(name, "--timing") == 0) {
        o->timing = 1;
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static ld_pit_args args = {.threads = 1};
    ot_table *tables[LD_PIT_MAX_VIEWS] = {0};
    ot_pit_view pv[LD_PIT_MAX_VIEWS];
    own_opts own = {0};
    ld_status st = LD_STATUS_INIT;
    ot_table *ent = NULL, *out = NULL;
    int rc = 1;

    const char *bad = ld_pit_args_parse(&args, argc, argv, own_opt, &own);
    if (bad)
        return usage(bad);
    size_t nv = args.n_views;
    int threads = args.threads;

    double t0 = ld_pit_now_ms();
    if (ot_csv_read(args.entities, &own.copts, &ent, &st) < 0)
        goto fail;
    for (size_t i = 0; i < nv; i++) {
        const ld_pit_view_args *v = &args.views[i];
        if (!v->event_ts) {
            usage("--event-ts is required for each view");
            goto done;
        }
        if (ot_csv_read(v->file, &own.copts, &tables[i], &st) < 0)
            goto fail;
        pv[i] = ld_pit_args_view(v, tables[i]);
    }
    double t1 = ld_pit_now_ms();
    if (ot_pit_join(ent, args.entity_ts, pv, nv, threads, &out, &st) < 0)
        goto fail;
    double t2 = ld_pit_now_ms();
    static char obuf[1 << 20];
    setvbuf(stdout, obuf, _IOFBF, sizeof obuf);
    if (ot_csv_write(out, stdout, &st) < 0 || fflush(stdout) != 0)
        goto fail;
    double t3 = ld_pit_now_ms();
    if (own.timing)
        fprintf(stderr,
                "ld_pit: read %.1f ms, join %.1f ms, write %.1f ms (%lld rows, %d threads)\n",
                t1 - t0, t2 - t1, t3 - t2, (long long)out->n_rows, threads);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "ld_pit: %s: %s\n", ld_status_code_name(st.code), st.msg);
done:
    ot_table_free(out);
    ot_table_free(ent);
    for (size_t i = 0; i < nv; i++)
        ot_table_free(tables[i]);
    return rc;
}
