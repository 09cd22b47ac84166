/* ld_pit_tool: what the two point-in-time join tools share,
 * tests/tools/ld_pit (CSV, the C side of the DuckDB oracle test) and
 * bench/ld-pit-arrow (Arrow IPC, timed): their clock and command line
 *
 *   [--threads N] --entities FILE --entity-ts COL
 *   { --view FILE --event-ts COL [--created COL] [--ttl-us N]
 *     [--key SRC[=ENTITY_COL]]... [--feature SRC[=OUT]]... }...
 *
 * Each --view starts a feature view; the options after it up to the next
 * --view describe it. A tool adds its own options through a callback; it
 * keeps its usage text, exit codes and file format. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "ot_pit.h"

/* The views' part of the usage text, after the tool's first line. */
#define LD_PIT_ARGS_USAGE_VIEWS                                                                    \
    "       { --view FILE --event-ts COL [--created COL] [--ttl-us N]\n"                           \
    "         [--key SRC[=ENTITY_COL]]... [--feature SRC[=OUT]]... }...\n"

#define LD_PIT_MAX_VIEWS 16
#define LD_PIT_MAX_ITEMS 256 /* keys, and features, per view */

typedef struct ld_pit_view_args {
    const char *file, *event_ts, *created; /* created: NULL if not given */
    int64_t ttl_us;
    const char *keys[LD_PIT_MAX_ITEMS], *ekeys[LD_PIT_MAX_ITEMS];
    const char *feats[LD_PIT_MAX_ITEMS], *outs[LD_PIT_MAX_ITEMS];
    size_t n_keys, n_feats;
} ld_pit_view_args;

typedef struct ld_pit_args {
    const char *entities, *entity_ts;
    int threads; /* left as the caller set it when not given */
    ld_pit_view_args views[LD_PIT_MAX_VIEWS];
    size_t n_views;
} ld_pit_args;

/* A tool's own option: called with value NULL first (1: a flag it took),
 * then, for an option that has a value, with the value (1: taken). */
typedef int (*ld_pit_own_opt)(void *arg, const char *name, const char *value);

/**
 * ld_pit_args_parse() - read argv[1..argc) into a.
 * @a:   zeroed by the caller but for the defaults it wants (threads)
 * @own: the tool's own options, or NULL; @arg is passed to it
 *
 * The values of --key and --feature are split in place at '='.
 * Return: NULL, or what is wrong for the tool's usage message (an unknown
 * option is named by itself).
 */
const char *ld_pit_args_parse(ld_pit_args *a, int argc, char **argv, ld_pit_own_opt own, void *arg);

/* ld_pit_args_view() - view v of the command line over its table. */
ot_pit_view ld_pit_args_view(const ld_pit_view_args *v, const ot_table *t);

/* ld_pit_now_ms() - the monotonic clock in milliseconds, for timings. */
double ld_pit_now_ms(void);
