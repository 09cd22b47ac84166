/* ol_store_pool: a bounded queue of reads and writes, a fixed set of threads
 * and as many connections for a blocking online store (see the header).
 *
 * Connections are lent from a stack under a mutex. At most `threads` jobs
 * run at once and there are as many connections, so a job always finds one
 * idle. Each job is one malloc'd record, freed by the thread that runs it. */
#include "ol_store_pool.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "ld_pool.h"
#include "ld_time.h"

struct ol_store_pool {
    ol_store_pool_spec spec;
    ld_pool *pool;
    pthread_mutex_t mu;
    void **idle; /* stack of idle connections */
    int nidle;
};

typedef struct pool_job {
    ol_store_pool *p;
    ol_read *r;
    ol_write *w;
} pool_job;

static void *conn_get(ol_store_pool *p)
{
    pthread_mutex_lock(&p->mu);
    void *c = p->idle[--p->nidle];
    pthread_mutex_unlock(&p->mu);
    return c;
}

static void conn_put(ol_store_pool *p, void *c)
{
    pthread_mutex_lock(&p->mu);
    p->idle[p->nidle++] = c;
    pthread_mutex_unlock(&p->mu);
}

/* One read or write: refused when its deadline passed while it was queued,
 * else run on a borrowed connection; answered once either way. */
static void run_job(void *arg)
{
    pool_job *j = arg;
    ol_store_pool *p = j->p;
    ol_read *r = j->r;
    ol_write *w = j->w;
    free(j);
    ld_status st = LD_STATUS_INIT;
    int64_t deadline_us = r ? r->deadline_us : w->deadline_us;
    if (deadline_us != INT64_MAX && ld_mono_us() > deadline_us) {
        ld_status_set(&st, GRPC_STATUS_DEADLINE_EXCEEDED, NULL,
                      "%s: deadline exceeded before the %s started", p->spec.what,
                      r ? "read" : "write");
    } else {
        void *c = conn_get(p);
        if (r)
            p->spec.read(p->spec.store, c, r, &st);
        else
            p->spec.write(p->spec.store, c, w, &st);
        conn_put(p, c);
    }
    if (r)
        r->done(r, &st);
    else
        w->done(w, &st);
}

static int submit(ol_store_pool *p, ol_read *r, ol_write *w, ld_status *st)
{
    pool_job *j = malloc(sizeof *j);
    if (!j)
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "%s: out of memory",
                             p->spec.what);
    *j = (pool_job){p, r, w};
    if (ld_pool_submit(p->pool, run_job, j) != 0) {
        free(j);
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL,
                             "%s: too many requests queued", p->spec.what);
    }
    return 0;
}

int ol_store_pool_read(ol_store_pool *p, ol_read *r, ld_status *st)
{
    return submit(p, r, NULL, st);
}

int ol_store_pool_write(ol_store_pool *p, ol_write *w, ld_status *st)
{
    return submit(p, NULL, w, st);
}

ol_store_pool *ol_store_pool_new(const ol_store_pool_spec *spec, ld_status *st)
{
    ol_store_pool *p = calloc(1, sizeof *p);
    void **idle = spec->threads > 0 ? calloc((size_t)spec->threads, sizeof *idle) : NULL;
    if (!p || !idle) {
        free(p);
        free(idle);
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "%s: out of memory", spec->what);
        return NULL;
    }
    p->spec = *spec;
    p->idle = idle;
    pthread_mutex_init(&p->mu, NULL);
    for (int i = spec->threads - 1; i >= 0; i--)
        p->idle[p->nidle++] = spec->conns[i];
    p->spec.conns = NULL; /* the caller's array, read only here */
    p->pool = ld_pool_new(spec->threads, spec->max_queued, spec->thread_name);
    if (!p->pool) {
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "%s: cannot start threads",
                      spec->what);
        ol_store_pool_free(p);
        return NULL;
    }
    return p;
}

void ol_store_pool_free(ol_store_pool *p)
{
    if (!p)
        return;
    ld_pool_free(p->pool);
    pthread_mutex_destroy(&p->mu);
    free(p->idle);
    free(p);
}
