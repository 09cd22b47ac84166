/* ld_defer: the list behind ld_call_defer and the HTTP loop's deferred sends. */
#include "ld_defer.h"
#include "ld_test.h"

typedef struct counter {
    int runs;
    ld_defer_list *again; /* when set, the first run defers itself once more */
} counter;

static void bump(void *obj)
{
    counter *c = obj;
    c->runs++;
    if (c->again) {
        ld_defer_list *l = c->again;
        c->again = NULL;
        LD_CHECK_INT(ld_defer_add(l, bump, c), 0);
    }
}

static void other(void *obj)
{
    ((counter *)obj)->runs += 100;
}

/* a pair kept twice runs once; distinct pairs each run; the list empties */
LD_TEST(dedup_and_run)
{
    ld_defer_list l = {.n = 0};
    counter a = {0}, b = {0};
    LD_CHECK_INT(ld_defer_add(&l, bump, &a), 0);
    LD_CHECK_INT(ld_defer_add(&l, bump, &a), 0);
    LD_CHECK_INT(ld_defer_add(&l, bump, &b), 0);
    LD_CHECK_INT(ld_defer_add(&l, other, &a), 0);
    LD_CHECK_INT((int)l.n, 3);
    ld_defer_run(&l);
    LD_CHECK_INT(a.runs, 101);
    LD_CHECK_INT(b.runs, 1);
    LD_CHECK_INT((int)l.n, 0);
    ld_defer_run(&l);
    LD_CHECK_INT(a.runs, 101);
}

/* a full list refuses (the caller then does the work itself) */
LD_TEST(full)
{
    ld_defer_list l = {.n = 0};
    counter c[LD_DEFER_MAX + 1] = {{0}};
    for (int i = 0; i < LD_DEFER_MAX; i++)
        LD_CHECK_INT(ld_defer_add(&l, bump, &c[i]), 0);
    LD_CHECK_INT(ld_defer_add(&l, bump, &c[LD_DEFER_MAX]), -1);
    LD_CHECK_INT(ld_defer_add(&l, bump, &c[0]), 0); /* already there */
    ld_defer_run(&l);
    for (int i = 0; i < LD_DEFER_MAX; i++)
        LD_CHECK_INT(c[i].runs, 1);
    LD_CHECK_INT(c[LD_DEFER_MAX].runs, 0);
}

/* what a run defers waits for the next run */
LD_TEST(defer_while_running)
{
    ld_defer_list l = {.n = 0};
    counter c = {.runs = 0, .again = &l};
    LD_CHECK_INT(ld_defer_add(&l, bump, &c), 0);
    ld_defer_run(&l);
    LD_CHECK_INT(c.runs, 1);
    LD_CHECK_INT((int)l.n, 1);
    ld_defer_run(&l);
    LD_CHECK_INT(c.runs, 2);
    LD_CHECK_INT((int)l.n, 0);
}

LD_TEST_MAIN
