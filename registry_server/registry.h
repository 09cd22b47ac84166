/* registry: the registry server's state. It owns the current catalog
 * snapshot, the store behind it, and the one writer lock.
 *
 * Reads take a reference to the current snapshot (a pointer copy and an
 * atomic increment under a short mutex) and never wait for a writer.
 * Writes are serialized: writer lock, store lock (flock / transaction),
 * reload if someone else changed the store, build the new catalog, make it
 * durable, then publish it. An acknowledged write is on disk or committed in
 * PostgreSQL before the reply is sent. */
#pragma once

#include <pthread.h>
#include <stdint.h>

#include "catalog.h"
#include "catalog_store.h"
#include "ld_config.h"
#include "ld_status.h"

typedef struct registry {
    cat_store *store;
    int is_sql;
    pthread_mutex_t snap_mu;
    catalog *snap;
    pthread_mutex_t write_mu;
    int64_t loaded_us; /* when the snapshot was last checked against the store */
    int64_t cache_ttl_us;
    /* limits */
    size_t max_request_bytes;
    size_t max_page_size;
    size_t max_objects_per_project;
    /* background refresh (sql backend: other replicas' writes) */
    struct ld_ticker *refresher;
} registry;

registry *registry_new(const ld_config *cfg, ld_status *st);
void registry_free(registry *r);

/* The current snapshot, referenced; release with cat_unref. */
catalog *registry_snapshot(registry *r);
/* Reload from the store if it changed (force: always). Blocking. */
int registry_refresh(registry *r, int force, ld_status *st);

/* A write: fn builds the new catalog from `cur` and lists the changes.
 * Returning 0 with *next == NULL means "nothing to do" (no write). */
typedef int (*registry_edit_fn)(registry *r, const catalog *cur, catalog **next,
                                cat_change *changes, size_t *n_changes, void *arg, ld_status *st);
#define REGISTRY_MAX_CHANGES 8
int registry_write(registry *r, registry_edit_fn fn, void *arg, ld_status *st);
