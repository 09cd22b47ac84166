#include "ld_timer.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "ld_time.h"

struct ld_timers {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    ld_timer **heap;
    int n, cap;
    int stopping;
};

static void swap(ld_timers *ts, int a, int b)
{
    ld_timer *t = ts->heap[a];
    ts->heap[a] = ts->heap[b];
    ts->heap[b] = t;
    ts->heap[a]->heap_index = a;
    ts->heap[b]->heap_index = b;
}

static void sift_up(ld_timers *ts, int i)
{
    while (i > 0) {
        int p = (i - 1) / 2;
        if (ts->heap[p]->when_us <= ts->heap[i]->when_us)
            break;
        swap(ts, i, p);
        i = p;
    }
}

static void sift_down(ld_timers *ts, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < ts->n && ts->heap[l]->when_us < ts->heap[m]->when_us)
            m = l;
        if (r < ts->n && ts->heap[r]->when_us < ts->heap[m]->when_us)
            m = r;
        if (m == i)
            return;
        swap(ts, i, m);
        i = m;
    }
}

static void heap_remove(ld_timers *ts, int i)
{
    ld_timer *t = ts->heap[i];
    ts->n--;
    if (i != ts->n) {
        ts->heap[i] = ts->heap[ts->n];
        ts->heap[i]->heap_index = i;
        sift_down(ts, i);
        sift_up(ts, i);
    }
    t->heap_index = -1;
}

static void *timer_main(void *arg)
{
    ld_timers *ts = arg;
    pthread_mutex_lock(&ts->mu);
    while (!ts->stopping) {
        if (ts->n == 0) {
            pthread_cond_wait(&ts->cv, &ts->mu);
            continue;
        }
        int64_t now = ld_mono_us();
        ld_timer *t = ts->heap[0];
        if (t->when_us > now) {
            int64_t wait = t->when_us - now;
            struct timespec abs;
            clock_gettime(CLOCK_MONOTONIC, &abs);
            abs.tv_sec += wait / 1000000;
            abs.tv_nsec += (wait % 1000000) * 1000;
            if (abs.tv_nsec >= 1000000000) {
                abs.tv_sec++;
                abs.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&ts->cv, &ts->mu, &abs);
            continue;
        }
        heap_remove(ts, 0);
        pthread_mutex_unlock(&ts->mu);
        t->fn(t, 1);
        pthread_mutex_lock(&ts->mu);
    }
    pthread_mutex_unlock(&ts->mu);
    return NULL;
}

ld_timers *ld_timers_new(void)
{
    ld_timers *ts = calloc(1, sizeof *ts);
    if (!ts)
        return NULL;
    pthread_mutex_init(&ts->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ts->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&ts->thread, NULL, timer_main, ts) != 0) {
        free(ts);
        return NULL;
    }
    return ts;
}

int ld_timers_add(ld_timers *ts, ld_timer *t, int64_t when_us, ld_timer_fn fn, void *arg)
{
    pthread_mutex_lock(&ts->mu);
    if (ts->stopping) {
        pthread_mutex_unlock(&ts->mu);
        return -1;
    }
    if (ts->n == ts->cap) {
        int cap = ts->cap ? ts->cap * 2 : 64;
        ld_timer **h = realloc(ts->heap, (size_t)cap * sizeof *h);
        if (!h) {
            pthread_mutex_unlock(&ts->mu);
            return -1;
        }
        ts->heap = h;
        ts->cap = cap;
    }
    t->when_us = when_us;
    t->fn = fn;
    t->arg = arg;
    t->heap_index = ts->n;
    ts->heap[ts->n++] = t;
    sift_up(ts, t->heap_index);
    if (ts->heap[0] == t)
        pthread_cond_signal(&ts->cv);
    pthread_mutex_unlock(&ts->mu);
    return 0;
}

int ld_timers_cancel(ld_timers *ts, ld_timer *t)
{
    int removed = 0;
    pthread_mutex_lock(&ts->mu);
    if (t->heap_index >= 0 && t->heap_index < ts->n && ts->heap[t->heap_index] == t) {
        heap_remove(ts, t->heap_index);
        removed = 1;
    }
    pthread_mutex_unlock(&ts->mu);
    return removed;
}

void ld_timers_stop(ld_timers *ts)
{
    pthread_mutex_lock(&ts->mu);
    if (ts->stopping) {
        pthread_mutex_unlock(&ts->mu);
        return;
    }
    ts->stopping = 1;
    pthread_cond_signal(&ts->cv);
    pthread_mutex_unlock(&ts->mu);
    pthread_join(ts->thread, NULL);
    /* Run what is left, without the lock: callbacks may cancel other timers. */
    for (;;) {
        pthread_mutex_lock(&ts->mu);
        if (ts->n == 0) {
            pthread_mutex_unlock(&ts->mu);
            break;
        }
        ld_timer *t = ts->heap[0];
        heap_remove(ts, 0);
        pthread_mutex_unlock(&ts->mu);
        t->fn(t, 0);
    }
}

void ld_timers_free(ld_timers *ts)
{
    if (!ts)
        return;
    ld_timers_stop(ts);
    pthread_mutex_destroy(&ts->mu);
    pthread_cond_destroy(&ts->cv);
    free(ts->heap);
    free(ts);
}
