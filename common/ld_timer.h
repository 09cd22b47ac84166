/* ld_timer: one thread that runs callbacks at a time (monotonic µs). The C
 * core has no public alarm API, so deadlines the server imposes itself and
 * delayed completions go through here. Callbacks run on the timer thread and
 * must not block: they start gRPC batches or hand work to a pool.
 *
 * Entries are caller-owned (embed them in the object they time) and can be
 * cancelled; a min-heap keeps add/cancel O(log n). */
#pragma once

#include <stdint.h>

typedef struct ld_timers ld_timers;
typedef struct ld_timer ld_timer;
/* fired == 0 when the callback runs because the timers are being stopped. */
typedef void (*ld_timer_fn)(ld_timer *t, int fired);

struct ld_timer {
    int64_t when_us;
    ld_timer_fn fn;
    void *arg;
    int heap_index; /* -1 when not scheduled */
};

ld_timers *ld_timers_new(void);
/* Schedule t (must not be scheduled already); returns -1 after stop. */
int ld_timers_add(ld_timers *ts, ld_timer *t, int64_t when_us, ld_timer_fn fn, void *arg);
/* Returns 1 if t was removed before it ran, 0 if it already ran or is running. */
int ld_timers_cancel(ld_timers *ts, ld_timer *t);
/* Run every pending callback now with fired == 0 and refuse new timers. */
void ld_timers_stop(ld_timers *ts);
void ld_timers_free(ld_timers *ts);
