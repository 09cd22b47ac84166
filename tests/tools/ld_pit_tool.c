/* ld_pit_tool: the point-in-time join tools' command line and clock (see
 * the header). */
#include "ld_pit_tool.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* "a=b" -> a, b; "a" -> a, a. The argument string is modified. */
static void split_pair(char *arg, const char **left, const char **right)
{
    char *eq = strchr(arg, '=');
    *left = arg;
    *right = arg;
    if (eq) {
        *eq = 0;
        *right = eq + 1;
    }
}

const char *ld_pit_args_parse(ld_pit_args *a, int argc, char **argv, ld_pit_own_opt own, void *arg)
{
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (own && own(arg, o, NULL))
            continue;
        if (i + 1 >= argc)
            return "missing value";
        char *v = argv[++i];
        ld_pit_view_args *cur = a->n_views ? &a->views[a->n_views - 1] : NULL;
        if (!strcmp(o, "--threads")) {
            a->threads = atoi(v);
        } else if (!strcmp(o, "--entities")) {
            a->entities = v;
        } else if (!strcmp(o, "--entity-ts")) {
            a->entity_ts = v;
        } else if (!strcmp(o, "--view")) {
            if (a->n_views == LD_PIT_MAX_VIEWS)
                return "too many views";
            a->views[a->n_views++].file = v;
        } else if (own && own(arg, o, v)) {
            continue;
        } else if (!cur) {
            return "view option before --view";
        } else if (!strcmp(o, "--event-ts")) {
            cur->event_ts = v;
        } else if (!strcmp(o, "--created")) {
            cur->created = v;
        } else if (!strcmp(o, "--ttl-us")) {
            cur->ttl_us = strtoll(v, NULL, 10);
        } else if (!strcmp(o, "--key")) {
            if (cur->n_keys == LD_PIT_MAX_ITEMS)
                return "too many keys";
            split_pair(v, &cur->keys[cur->n_keys], &cur->ekeys[cur->n_keys]);
            cur->n_keys++;
        } else if (!strcmp(o, "--feature")) {
            if (cur->n_feats == LD_PIT_MAX_ITEMS)
                return "too many features";
            split_pair(v, &cur->feats[cur->n_feats], &cur->outs[cur->n_feats]);
            cur->n_feats++;
        } else {
            return o;
        }
    }
    if (!a->entities || !a->entity_ts)
        return "--entities and --entity-ts are required";
    return NULL;
}

ot_pit_view ld_pit_args_view(const ld_pit_view_args *v, const ot_table *t)
{
    return (ot_pit_view){
            .source = t,
            .join_keys = v->keys,
            .entity_keys = v->ekeys,
            .n_keys = v->n_keys,
            .event_ts = v->event_ts,
            .created_ts = v->created,
            .ttl_us = v->ttl_us,
            .features = v->feats,
            .out_names = v->outs,
            .n_features = v->n_feats,
    };
}

double ld_pit_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}
