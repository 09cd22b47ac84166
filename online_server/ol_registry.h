/* ol_registry: the online server's view of the registry — an immutable
 * snapshot of the configured project with every lookup a request needs
 * precomputed (views by name, their features and Redis field hashes, join
 * keys and types, TTLs, feature services, push sources), refreshed in the
 * background every cache_ttl_seconds and swapped atomically. No request
 * waits on a refresh; when the registry is unreachable the last snapshot
 * keeps serving and the failure is logged and reported by ol_registry_stale.
 *
 * Sources: registry_type remote (gRPC Proto() of larder-registry or any
 * Feast registry server) or file (the serialized feast.core.Registry). */
#pragma once

#include <stdatomic.h>

#include "ld_health.h"
#include <stddef.h>
#include <stdint.h>

#include "feast/core/Registry.pb-c.h"
#include "ld_config.h"
#include "ld_status.h"

typedef enum { OL_VIEW_FV, OL_VIEW_SFV, OL_VIEW_ODFV } ol_view_kind;

typedef struct ol_feature {
    const char *name;
    int value_type;         /* feast.types.ValueType */
    unsigned char field[4]; /* murmur3_32("view:feature"), little-endian */
} ol_feature;

typedef struct ol_join_key {
    const char *name;
    int value_type;
} ol_join_key;

typedef struct ol_view {
    const char *name;
    ol_view_kind kind;
    ol_feature *features;
    size_t n_features;
    ol_join_key *join_keys; /* in the view's entity_columns order */
    size_t n_join_keys;
    int64_t ttl_us; /* 0: no TTL */
    int online;
    int disabled;
    int state;                   /* FeatureViewState; servable: 0 or 4 */
    int write_to_online_store;   /* ODFV */
    const char *push_source;     /* name of the PushSource feeding it, or NULL */
    const char *timestamp_field; /* batch source's */
    const char *created_timestamp_column;
} ol_view;

/* Something a user of the snapshot derives from it once and keeps with it
 * (ol_serve's resolved feature-service plans): freed with the snapshot. */
typedef struct ol_cached {
    void (*free)(struct ol_cached *c);
} ol_cached;

typedef struct ol_snapshot {
    atomic_int refs;
    char *project;
    Feast__Core__Registry *reg; /* owns every string below */
    ol_view *views;
    size_t n_views;
    ol_view **view_slots; /* open addressing by name */
    size_t n_view_slots;
    /* [feature service index * 2 + full_feature_names]: published once with
     * a compare-and-swap by whoever builds it first */
    _Atomic(ol_cached *) *plans;
    size_t n_plans;
    int64_t loaded_us;
} ol_snapshot;

typedef struct ol_registry ol_registry;

ol_registry *ol_registry_new(const ld_config *cfg, ld_status *st);
void ol_registry_free(ol_registry *r);
/* The current snapshot, referenced; NULL before the first successful load. */
ol_snapshot *ol_registry_snapshot(ol_registry *r);
void ol_snapshot_unref(ol_snapshot *s);
/* Health service reporting whether the registry's last refresh worked. */
#define LD_ONLINE_REGISTRY_HEALTH "larder.online.Registry"
/* Publish the serving services' and LD_ONLINE_REGISTRY_HEALTH's status in h
 * now and on every change (h must outlive r or be detached with NULL). */
void ol_registry_attach_health(ol_registry *r, ld_health *h);
/* 1 when the last refresh failed (serving an older snapshot). */
int ol_registry_stale(ol_registry *r);
/* Reload now (blocking; used at start and by the refresher). */
int ol_registry_refresh(ol_registry *r, ld_status *st);

const ol_view *ol_snapshot_view(const ol_snapshot *s, const char *name);
const Feast__Core__FeatureService *ol_snapshot_service(const ol_snapshot *s, const char *name);
/* index of that service in s->reg->feature_services, or -1 */
long ol_snapshot_service_index(const ol_snapshot *s, const char *name);
/* join key of an entity by entity name, or NULL */
const char *ol_snapshot_entity_join_key(const ol_snapshot *s, const char *entity, int *value_type);
const ol_feature *ol_view_feature(const ol_view *v, const char *name);

/* Build a snapshot from Registry bytes (exposed for tests). */
ol_snapshot *ol_snapshot_build(const uint8_t *bytes, size_t len, const char *project,
                               ld_status *st);
