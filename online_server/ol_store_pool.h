/* ol_store_pool: the threads of the SQL online stores (PostgreSQL, SQLite).
 *
 * A store whose client library blocks hands each read and write to a pool:
 * a bounded queue (a full one refuses with RESOURCE_EXHAUSTED, so callers
 * never block) served by a fixed set of threads, and as many connections,
 * each used by one job at a time. A job whose deadline has passed before it
 * starts is answered DEADLINE_EXCEEDED without running; the store's own
 * functions handle the deadline while a job runs. The store keeps its SQL,
 * its connections' contents and its health; the pool only lends them. */
#pragma once

#include <stddef.h>

#include "ld_status.h"
#include "ol_store.h"

typedef struct ol_store_pool ol_store_pool;

typedef struct ol_store_pool_spec {
    const char *what;        /* "sqlite online store": the prefix of the messages */
    const char *thread_name; /* at most 15 characters */
    int threads;             /* also the number of connections (>= 1) */
    size_t max_queued;
    void *store;
    void *const *conns; /* [threads], read by ol_store_pool_new; conns[0] is lent first */
    /* Run a read or a write on a borrowed connection and set st; the pool
     * then takes the connection back and calls done(r or w, st). */
    void (*read)(void *store, void *conn, ol_read *r, ld_status *st);
    void (*write)(void *store, void *conn, ol_write *w, ld_status *st);
} ol_store_pool_spec;

/**
 * ol_store_pool_new() - start the threads.
 * @spec: copied; the store and its connections must outlive the pool.
 *
 * Return: the pool, or NULL with st set (RESOURCE_EXHAUSTED).
 */
ol_store_pool *ol_store_pool_new(const ol_store_pool_spec *spec, ld_status *st);

/**
 * ol_store_pool_read() - queue a read (the ol_store_ops.read contract).
 *
 * Return: 0 when queued (r->done is called exactly once, from a pool
 * thread); -1 with st set (RESOURCE_EXHAUSTED) when the queue is full.
 */
int ol_store_pool_read(ol_store_pool *p, ol_read *r, ld_status *st);
/* ol_store_pool_write() - the same for a write. */
int ol_store_pool_write(ol_store_pool *p, ol_write *w, ld_status *st);

/* ol_store_pool_free() - run every queued job, join the threads, free.
 * NULL is accepted. The connections are the store's to close afterwards. */
void ol_store_pool_free(ol_store_pool *p);
