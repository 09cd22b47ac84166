/* ld_time: one unit (microseconds, int64) for durations and instants. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Monotonic clock, for latencies and deadlines. */
int64_t ld_mono_us(void);
/* Wall clock (UTC, since the epoch). */
int64_t ld_wall_us(void);
/* "2026-11-21T10:00:00.123456Z" into buf (at least 32 bytes); returns buf. */
char *ld_time_rfc3339_us(int64_t wall_us, char *buf, size_t n);
/* Parse ISO 8601 ("2021-04-12T10:59:42", "2021-04-12 10:59:42.123456",
 * "...Z", "...+02:00"; naive means UTC) into µs since the epoch; -1 if not. */
int ld_time_parse_iso8601(const char *s, int64_t *us);
