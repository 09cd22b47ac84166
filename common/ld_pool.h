/* ld_pool: a fixed set of threads for blocking work (disk, database, store
 * round trips that have no async API), so completion-queue threads never
 * block. The queue is bounded: a full pool refuses work rather than growing
 * without limit, and the caller answers RESOURCE_EXHAUSTED. */
#pragma once

#include <stddef.h>

typedef struct ld_pool ld_pool;
typedef void (*ld_pool_fn)(void *arg);

ld_pool *ld_pool_new(int threads, size_t max_queued, const char *name);
/* 0 when queued; -1 when the queue is full or the pool is stopping. */
int ld_pool_submit(ld_pool *p, ld_pool_fn fn, void *arg);
/* Run every queued job, then join the threads. Idempotent. */
void ld_pool_stop(ld_pool *p);
void ld_pool_free(ld_pool *p);
