/* cmd_init: `larder init` — the example repository (examples/driver_stats,
 * embedded at build time by cli/embed.py) plus generated data. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct cli_embedded_file {
    const char *path; /* relative to the repository root */
    const unsigned char *data;
    size_t len;
} cli_embedded_file;

extern const cli_embedded_file cli_example_files[];
extern const unsigned cli_example_nfiles;

/* The driver statistics history: `days` days of hourly rows for drivers
 * 1001..1005 ending at the hour end_s (Unix seconds, UTC), values from a
 * fixed-seed generator (identical for every run; only the timestamps follow
 * end_s). Returns the number of rows written. */
long cli_gen_driver_stats(FILE *f, int64_t end_s, int days);
/* Entity rows for get-historical-features: each driver (and one unknown,
 * 1006) at two times before end_s. */
long cli_gen_entity_rows(FILE *f, int64_t end_s);
