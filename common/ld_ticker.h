/* ld_ticker: run a function every period on a thread of its own, until
 * stopped (background refreshes of registry snapshots). Stopping wakes the
 * thread at once and joins it. */
#pragma once

#include <stdint.h>

typedef struct ld_ticker ld_ticker;

/* NULL if the thread cannot be started. fn must not call ld_ticker_stop. */
ld_ticker *ld_ticker_start(int64_t period_us, void (*fn)(void *arg), void *arg);
void ld_ticker_stop(ld_ticker *t);
