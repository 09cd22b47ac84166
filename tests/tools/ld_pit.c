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
#include <time.h>

#include "ot_csv.h"
#include "ot_pit.h"

#define MAX_VIEWS 16
#define MAX_ITEMS 256

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
            "ld_pit: %s\n"
            "usage: ld_pit [--threads N] [--ns] [--timing] --entities FILE --entity-ts COL\n"
            "       { --view FILE --event-ts COL [--created COL] [--ttl-us N]\n"
            "         [--key SRC[=ENTITY_COL]]... [--feature SRC[=OUT]]... }...\n",
            msg);
    return 1;
}

/* "a=b" -> a, b; "a" -> a, a. The argument string is modified. */
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

int main(int argc, char **argv)
{
    static view_spec views[MAX_VIEWS];
    ot_pit_view pv[MAX_VIEWS];
    const char *ent_file = NULL, *ent_ts = NULL;
    size_t nv = 0;
    int threads = 1, timing = 0;
    ot_csv_opts copts = {0};
    ld_status st = LD_STATUS_INIT;
    ot_table *ent = NULL, *out = NULL;
    int rc = 1;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        char *v = i + 1 < argc ? argv[i + 1] : NULL;
        view_spec *cur = nv ? &views[nv - 1] : NULL;
        if (strcmp(a, "--ns") == 0) {
            copts.ts_nanos = true;
            continue;
        }
        if (strcmp(a, "--timing") == 0) {
            timing = 1;
            continue;
        }
        if (!v)
            return usage("missing value");
        i++;
        if (strcmp(a, "--threads") == 0) {
            threads = atoi(v);
        } else if (strcmp(a, "--entities") == 0) {
            ent_file = v;
        } else if (strcmp(a, "--entity-ts") == 0) {
            ent_ts = v;
        } else if (strcmp(a, "--view") == 0) {
            if (nv == MAX_VIEWS)
                return usage("too many views");
            views[nv++].file = v;
        } else if (!cur) {
            return usage("view option before --view");
        } else if (strcmp(a, "--event-ts") == 0) {
            cur->event_ts = v;
        } else if (strcmp(a, "--created") == 0) {
            cur->created = v;
        } else if (strcmp(a, "--ttl-us") == 0) {
            cur->ttl_us = strtoll(v, NULL, 10);
        } else if (strcmp(a, "--key") == 0) {
            if (cur->n_keys == MAX_ITEMS)
                return usage("too many keys");
            split_pair(v, &cur->keys[cur->n_keys], &cur->ekeys[cur->n_keys]);
            cur->n_keys++;
        } else if (strcmp(a, "--feature") == 0) {
            if (cur->n_feats == MAX_ITEMS)
                return usage("too many features");
            split_pair(v, &cur->feats[cur->n_feats], &cur->outs[cur->n_feats]);
            cur->n_feats++;
        } else {
            return usage(a);
        }
    }
    if (!ent_file || !ent_ts)
        return usage("--entities and --entity-ts are required");

    double t0 = now_ms();
    if (ot_csv_read(ent_file, &copts, &ent, &st) < 0)
        goto fail;
    for (size_t i = 0; i < nv; i++) {
        view_spec *s = &views[i];
        if (!s->event_ts) {
            usage("--event-ts is required for each view");
            goto done;
        }
        if (ot_csv_read(s->file, &copts, &s->t, &st) < 0)
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
    if (ot_pit_join(ent, ent_ts, pv, nv, threads, &out, &st) < 0)
        goto fail;
    double t2 = now_ms();
    static char obuf[1 << 20];
    setvbuf(stdout, obuf, _IOFBF, sizeof obuf);
    if (ot_csv_write(out, stdout, &st) < 0 || fflush(stdout) != 0)
        goto fail;
    double t3 = now_ms();
    if (timing)
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
        ot_table_free(views[i].t);
    return rc;
}
