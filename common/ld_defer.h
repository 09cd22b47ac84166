/* ld_defer: a short list of work one thread puts off until it has handled
 * what it already holds (ld_call_defer on a gRPC worker, the HTTP loop's
 * deferred sends). Each distinct (fn, obj) is kept once. Used by one thread
 * only: no locking. */
#pragma once

#include <stddef.h>

#define LD_DEFER_MAX 16

typedef void (*ld_defer_fn)(void *obj);

typedef struct ld_defer_list {
    struct {
        ld_defer_fn fn;
        void *obj;
    } item[LD_DEFER_MAX];
    size_t n;
} ld_defer_list;

/* Keep (fn, obj) to run later; 0 when kept (or kept already), -1 when the
 * list is full (the caller does the work now). */
static inline int ld_defer_add(ld_defer_list *l, ld_defer_fn fn, void *obj)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->item[i].fn == fn && l->item[i].obj == obj)
            return 0;
    if (l->n == LD_DEFER_MAX)
        return -1;
    l->item[l->n].fn = fn;
    l->item[l->n].obj = obj;
    l->n++;
    return 0;
}

/* Run and empty the list. What runs may defer again: that goes on the
 * emptied list, for the next run. */
static inline void ld_defer_run(ld_defer_list *l)
{
    size_t n = l->n;
    struct {
        ld_defer_fn fn;
        void *obj;
    } item[LD_DEFER_MAX];
    for (size_t i = 0; i < n; i++) {
        item[i].fn = l->item[i].fn;
        item[i].obj = l->item[i].obj;
    }
    l->n = 0;
    for (size_t i = 0; i < n; i++)
        item[i].fn(item[i].obj);
}
