#include "registry.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ld_log.h"
#include "ld_ticker.h"
#include "ld_time.h"

static void publish(registry *r, catalog *c)
{
    pthread_mutex_lock(&r->snap_mu);
    catalog *old = r->snap;
    r->snap = c;
    pthread_mutex_unlock(&r->snap_mu);
    cat_unref(old);
}

catalog *registry_snapshot(registry *r)
{
    pthread_mutex_lock(&r->snap_mu);
    catalog *c = cat_ref(r->snap);
    pthread_mutex_unlock(&r->snap_mu);
    return c;
}

/* Under write_mu. */
static int reload_locked(registry *r, int force, ld_status *st)
{
    int changed = force ? 1 : r->store->ops->changed(r->store, st);
    if (changed < 0)
        return -1;
    r->loaded_us = ld_mono_us();
    if (!changed)
        return 0;
    catalog *c;
    if (r->store->ops->load(r->store, &c, st) != 0)
        return -1;
    publish(r, c);
    return 0;
}

int registry_refresh(registry *r, int force, ld_status *st)
{
    pthread_mutex_lock(&r->write_mu);
    int rc = reload_locked(r, force, st);
    pthread_mutex_unlock(&r->write_mu);
    return rc;
}

int registry_write(registry *r, registry_edit_fn fn, void *arg, ld_status *st)
{
    pthread_mutex_lock(&r->write_mu);
    int rc = -1;
    if (r->store->ops->begin(r->store, st) != 0)
        goto out;
    /* Someone else (another replica, `feast apply`) may have written. */
    if (reload_locked(r, 0, st) != 0) {
        r->store->ops->abort(r->store);
        goto out;
    }
    catalog *cur = registry_snapshot(r);
    catalog *next = NULL;
    cat_change changes[REGISTRY_MAX_CHANGES];
    size_t n = 0;
    rc = fn(r, cur, &next, changes, &n, arg, st);
    if (rc != 0 || !next) {
        r->store->ops->abort(r->store);
        cat_unref(cur);
        goto out;
    }
    if (!r->is_sql) /* Feast's file registry stamps every write; its SQL registry doesn't */
        cat_stamp(next, ld_wall_us());
    rc = r->store->ops->commit(r->store, next, changes, n, st);
    for (size_t i = 0; i < n; i++)
        if (changes[i].obj)
            cat_obj_unref(changes[i].obj);
    cat_unref(cur);
    if (rc != 0) {
        cat_unref(next);
        goto out;
    }
    publish(r, next);
out:
    pthread_mutex_unlock(&r->write_mu);
    return rc;
}

static void refresh_tick(void *arg)
{
    registry *r = arg;
    ld_status st = LD_STATUS_INIT;
    if (registry_refresh(r, 0, &st) != 0)
        ld_warn("registry refresh failed (serving the last snapshot): %s", st.msg);
}

/* SQLAlchemy URLs name a driver ("postgresql+psycopg://"); libpq wants the
 * plain scheme. */
static char *libpq_dsn(const char *url)
{
    const char *plus = strstr(url, "+");
    const char *sep = strstr(url, "://");
    if (plus && sep && plus < sep) {
        size_t n = strlen(url);
        char *d = malloc(n + 1);
        size_t head = (size_t)(plus - url);
        memcpy(d, url, head);
        strcpy(d + head, sep);
        return d;
    }
    return strdup(url);
}

registry *registry_new(const ld_config *cfg, ld_status *st)
{
    registry *r = calloc(1, sizeof *r);
    if (!r) {
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&r->snap_mu, NULL);
    pthread_mutex_init(&r->write_mu, NULL);
    r->max_request_bytes = (size_t)cfg->larder.registry_max_request_bytes;
    r->max_page_size = (size_t)cfg->larder.registry_max_page_size;
    r->max_objects_per_project = (size_t)cfg->larder.registry_max_objects_per_project;
    r->cache_ttl_us = (int64_t)cfg->registry.cache_ttl_seconds * 1000000;

    if (cfg->registry.registry_type == LD_REGISTRY_SQL) {
        char *dsn = libpq_dsn(cfg->registry.path);
        r->store = cat_store_sql_new(dsn, st);
        free(dsn);
        r->is_sql = 1;
    } else if (cfg->registry.registry_type == LD_REGISTRY_FILE) {
        char *path = ld_config_resolve_path(cfg, cfg->registry.path);
        r->store = cat_store_file_new(path, st);
        free(path);
    } else {
        ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                      "larder-registry serves a file or sql registry, not registry_type remote");
    }
    if (!r->store) {
        registry_free(r);
        return NULL;
    }
    catalog *c;
    int64_t t0 = ld_mono_us();
    if (r->store->ops->load(r->store, &c, st) != 0) {
        registry_free(r);
        return NULL;
    }
    size_t total = 0;
    for (int k = 0; k < CAT_N_KINDS; k++)
        total += c->kinds[k].n;
    ld_info("registry loaded: %zu objects (%zu feature views) from the %s store in %.1f ms", total,
            c->kinds[CAT_FEATURE_VIEW].n, r->store->ops->name, (ld_mono_us() - t0) / 1000.0);
    r->snap = c;
    r->loaded_us = ld_mono_us();
    if (r->is_sql && r->cache_ttl_us > 0)
        r->refresher = ld_ticker_start(r->cache_ttl_us, refresh_tick, r);
    return r;
}

void registry_free(registry *r)
{
    if (!r)
        return;
    ld_ticker_stop(r->refresher);
    if (r->store)
        r->store->ops->free(r->store);
    cat_unref(r->snap);
    pthread_mutex_destroy(&r->snap_mu);
    pthread_mutex_destroy(&r->write_mu);
    free(r);
}
