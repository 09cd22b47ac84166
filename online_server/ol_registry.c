#include "ol_registry.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "feast/core/Entity.pb-c.h"
#include "feast/core/FeatureService.pb-c.h"
#include "feast/core/FeatureView.pb-c.h"
#include "feast/core/OnDemandFeatureView.pb-c.h"
#include "feast/core/StreamFeatureView.pb-c.h"
#include "ld_hash.h"
#include "ld_regclient.h"
#include "ld_ticker.h"
#include "ld_log.h"
#include "ld_murmur3.h"
#include "ld_time.h"

#define DUMMY_ENTITY   "__dummy"
#define DUMMY_JOIN_KEY "__dummy_id"
#define REGISTRY_MAX   ((size_t)1 << 30)

struct ol_registry {
    char *project;
    ld_regclient *src;
    int64_t ttl_us;
    pthread_mutex_t mu;
    ol_snapshot *snap;
    atomic_int stale;
    ld_ticker *refresher;
    int64_t last_ok_us; /* ld_mono_us of the last successful load; refresher thread */
    ld_health *health;  /* NULL: none attached */
    pthread_mutex_t health_mu;
};

/* The health services this server answers for, and what they say: the
 * serving services are NOT_SERVING until a first snapshot is loaded (a
 * request could only fail); LD_ONLINE_REGISTRY_HEALTH says whether the last
 * refresh worked (NOT_SERVING: serving continues from the last snapshot). */
static const char *const serving_services[] = {"feast.serving.ServingService", "GrpcFeatureServer"};

static void publish_health(ol_registry *r)
{
    pthread_mutex_lock(&r->health_mu);
    if (r->health) {
        pthread_mutex_lock(&r->mu);
        int loaded = r->snap != NULL;
        pthread_mutex_unlock(&r->mu);
        for (size_t i = 0; i < sizeof serving_services / sizeof *serving_services; i++)
            ld_health_set(r->health, serving_services[i],
                          loaded ? LD_HEALTH_SERVING : LD_HEALTH_NOT_SERVING);
        ld_health_set(r->health, LD_ONLINE_REGISTRY_HEALTH,
                      loaded && !atomic_load(&r->stale) ? LD_HEALTH_SERVING
                                                        : LD_HEALTH_NOT_SERVING);
    }
    pthread_mutex_unlock(&r->health_mu);
}

void ol_registry_attach_health(ol_registry *r, ld_health *h)
{
    pthread_mutex_lock(&r->health_mu);
    r->health = h;
    pthread_mutex_unlock(&r->health_mu);
    publish_health(r);
}

/* ------------------------------------------------------------ snapshot */

static uint64_t hash_name(const char *s)
{
    return ld_fnv1a_str(s);
}

void ol_snapshot_unref(ol_snapshot *s)
{
    if (!s || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < s->n_views; i++) {
        free(s->views[i].features);
        free(s->views[i].join_keys);
    }
    for (size_t i = 0; i < s->n_plans; i++) {
        ol_cached *c = atomic_load_explicit(&s->plans[i], memory_order_acquire);
        if (c)
            c->free(c);
    }
    free(s->plans);
    free(s->views);
    free(s->view_slots);
    free(s->project);
    if (s->reg)
        feast__core__registry__free_unpacked(s->reg, NULL);
    free(s);
}

static const Feast__Core__Entity *find_entity(const Feast__Core__Registry *reg, const char *project,
                                              const char *name)
{
    for (size_t i = 0; i < reg->n_entities; i++) {
        const Feast__Core__EntitySpecV2 *e = reg->entities[i]->spec;
        if (e && strcmp(e->name, name) == 0 && (!*e->project || strcmp(e->project, project) == 0))
            return reg->entities[i];
    }
    return NULL;
}

const char *ol_snapshot_entity_join_key(const ol_snapshot *s, const char *entity, int *value_type)
{
    if (strcmp(entity, DUMMY_ENTITY) == 0) {
        if (value_type)
            *value_type = FEAST__TYPES__VALUE_TYPE__ENUM__STRING;
        return DUMMY_JOIN_KEY;
    }
    const Feast__Core__Entity *e = find_entity(s->reg, s->project, entity);
    if (!e)
        return NULL;
    if (value_type)
        *value_type = (int)e->spec->value_type;
    return *e->spec->join_key ? e->spec->join_key : e->spec->name;
}

/* Fill features, join keys and the fields every view kind shares. */
static int fill_view(ol_snapshot *s, ol_view *v, const char *name, ol_view_kind kind,
                     Feast__Core__FeatureSpecV2 **feats, size_t n_feats,
                     Feast__Core__FeatureSpecV2 **cols, size_t n_cols, char **entities,
                     size_t n_entities, ld_status *st)
{
    v->name = name;
    v->kind = kind;
    v->features = calloc(n_feats + 1, sizeof *v->features);
    v->join_keys = calloc(n_cols + n_entities + 1, sizeof *v->join_keys);
    if (!v->features || !v->join_keys)
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
    for (size_t i = 0; i < n_feats; i++) {
        v->features[i].name = feats[i]->name;
        v->features[i].value_type = (int)feats[i]->value_type;
        ld_murmur3_feature_field(name, feats[i]->name, v->features[i].field);
    }
    v->n_features = n_feats;
    if (n_cols) {
        for (size_t i = 0; i < n_cols; i++)
            v->join_keys[i] = (ol_join_key){cols[i]->name, (int)cols[i]->value_type};
        v->n_join_keys = n_cols;
    } else {
        for (size_t i = 0; i < n_entities; i++) {
            int vt = 0;
            const char *jk = ol_snapshot_entity_join_key(s, entities[i], &vt);
            if (!jk)
                continue; /* an entity the registry lacks: requests will say so */
            v->join_keys[v->n_join_keys++] = (ol_join_key){jk, vt};
        }
    }
    return 0;
}

static int64_t duration_us(const Google__Protobuf__Duration *d)
{
    return d ? d->seconds * 1000000 + d->nanos / 1000 : 0;
}

static void source_fields(ol_view *v, const Feast__Core__DataSource *batch,
                          const Feast__Core__DataSource *stream)
{
    if (stream && stream->type == FEAST__CORE__DATA_SOURCE__SOURCE_TYPE__PUSH_SOURCE)
        v->push_source = stream->name;
    const Feast__Core__DataSource *b = batch;
    if (!b && stream && stream->batch_source)
        b = stream->batch_source;
    if (b) {
        v->timestamp_field = b->timestamp_field;
        v->created_timestamp_column = b->created_timestamp_column;
    }
    if (!v->timestamp_field || !*v->timestamp_field)
        v->timestamp_field = "event_timestamp";
}

ol_snapshot *ol_snapshot_build(const uint8_t *bytes, size_t len, const char *project, ld_status *st)
{
    ol_snapshot *s = calloc(1, sizeof *s);
    if (!s) {
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        return NULL;
    }
    atomic_init(&s->refs, 1);
    s->project = strdup(project);
    s->reg = feast__core__registry__unpack(NULL, len, bytes);
    if (!s->reg) {
        ld_status_set(st, GRPC_STATUS_DATA_LOSS, NULL,
                      "registry bytes are not a valid feast.core.Registry");
        goto fail;
    }
    const Feast__Core__Registry *r = s->reg;
    size_t cap = r->n_feature_views + r->n_stream_feature_views + r->n_on_demand_feature_views;
    s->views = calloc(cap + 1, sizeof *s->views);
    if (!s->views)
        goto oom;
    for (size_t i = 0; i < r->n_feature_views; i++) {
        const Feast__Core__FeatureView *fv = r->feature_views[i];
        const Feast__Core__FeatureViewSpec *sp = fv->spec;
        if (!sp || (*sp->project && strcmp(sp->project, project) != 0))
            continue;
        ol_view *v = &s->views[s->n_views];
        if (fill_view(s, v, sp->name, OL_VIEW_FV, sp->features, sp->n_features, sp->entity_columns,
                      sp->n_entity_columns, sp->entities, sp->n_entities, st) != 0)
            goto fail;
        v->ttl_us = duration_us(sp->ttl);
        v->online = sp->online;
        v->disabled = sp->disabled;
        v->state = fv->meta ? (int)fv->meta->state : 0;
        source_fields(v, sp->batch_source, sp->stream_source);
        s->n_views++;
    }
    for (size_t i = 0; i < r->n_stream_feature_views; i++) {
        const Feast__Core__StreamFeatureView *fv = r->stream_feature_views[i];
        const Feast__Core__StreamFeatureViewSpec *sp = fv->spec;
        if (!sp || (*sp->project && strcmp(sp->project, project) != 0))
            continue;
        ol_view *v = &s->views[s->n_views];
        if (fill_view(s, v, sp->name, OL_VIEW_SFV, sp->features, sp->n_features, sp->entity_columns,
                      sp->n_entity_columns, sp->entities, sp->n_entities, st) != 0)
            goto fail;
        v->ttl_us = duration_us(sp->ttl);
        v->online = sp->online;
        v->disabled = sp->disabled;
        v->state = fv->meta ? (int)fv->meta->state : 0;
        source_fields(v, sp->batch_source, sp->stream_source);
        s->n_views++;
    }
    for (size_t i = 0; i < r->n_on_demand_feature_views; i++) {
        const Feast__Core__OnDemandFeatureView *fv = r->on_demand_feature_views[i];
        const Feast__Core__OnDemandFeatureViewSpec *sp = fv->spec;
        if (!sp || (*sp->project && strcmp(sp->project, project) != 0))
            continue;
        ol_view *v = &s->views[s->n_views];
        if (fill_view(s, v, sp->name, OL_VIEW_ODFV, sp->features, sp->n_features,
                      sp->entity_columns, sp->n_entity_columns, sp->entities, sp->n_entities,
                      st) != 0)
            goto fail;
        v->online = 1;
        v->disabled = sp->disabled;
        v->state = fv->meta ? (int)fv->meta->state : 0;
        v->write_to_online_store = sp->write_to_online_store;
        v->timestamp_field = "event_timestamp";
        s->n_views++;
    }
    size_t n = 16;
    while (n < s->n_views * 2)
        n *= 2;
    s->view_slots = calloc(n, sizeof *s->view_slots);
    if (!s->view_slots)
        goto oom;
    s->n_view_slots = n;
    for (size_t i = 0; i < s->n_views; i++) {
        size_t k = hash_name(s->views[i].name) & (n - 1);
        while (s->view_slots[k]) {
            if (strcmp(s->view_slots[k]->name, s->views[i].name) == 0)
                break; /* a name used twice: the first (FV, then SFV, then ODFV) wins */
            k = (k + 1) & (n - 1);
        }
        if (!s->view_slots[k])
            s->view_slots[k] = &s->views[i];
    }
    s->n_plans = s->reg->n_feature_services * 2;
    s->plans = calloc(s->n_plans + 1, sizeof *s->plans);
    if (!s->plans)
        goto oom;
    s->loaded_us = ld_wall_us();
    return s;
oom:
    ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
fail:
    ol_snapshot_unref(s);
    return NULL;
}

const ol_view *ol_snapshot_view(const ol_snapshot *s, const char *name)
{
    if (!s->n_view_slots)
        return NULL;
    size_t k = hash_name(name) & (s->n_view_slots - 1);
    for (const ol_view *v; (v = s->view_slots[k]); k = (k + 1) & (s->n_view_slots - 1))
        if (strcmp(v->name, name) == 0)
            return v;
    return NULL;
}

long ol_snapshot_service_index(const ol_snapshot *s, const char *name)
{
    for (size_t i = 0; i < s->reg->n_feature_services; i++) {
        const Feast__Core__FeatureServiceSpec *sp = s->reg->feature_services[i]->spec;
        if (sp && strcmp(sp->name, name) == 0 &&
            (!*sp->project || !strcmp(sp->project, s->project)))
            return (long)i;
    }
    return -1;
}

const Feast__Core__FeatureService *ol_snapshot_service(const ol_snapshot *s, const char *name)
{
    long i = ol_snapshot_service_index(s, name);
    return i < 0 ? NULL : s->reg->feature_services[i];
}

const ol_feature *ol_view_feature(const ol_view *v, const char *name)
{
    for (size_t i = 0; i < v->n_features; i++)
        if (strcmp(v->features[i].name, name) == 0)
            return &v->features[i];
    return NULL;
}

/* ------------------------------------------------------------ loading */

int ol_registry_refresh(ol_registry *r, ld_status *st)
{
    uint8_t *bytes = NULL;
    size_t len = 0;
    if (ld_regclient_fetch_bytes(r->src, &bytes, &len, st) != 0) {
        if (!atomic_exchange(&r->stale, 1))
            publish_health(r);
        return -1;
    }
    ol_snapshot *s = ol_snapshot_build(bytes, len, r->project, st);
    free(bytes);
    if (!s) {
        if (!atomic_exchange(&r->stale, 1))
            publish_health(r);
        return -1;
    }
    pthread_mutex_lock(&r->mu);
    ol_snapshot *old = r->snap;
    r->snap = s;
    pthread_mutex_unlock(&r->mu);
    ol_snapshot_unref(old);
    r->last_ok_us = ld_mono_us();
    if (atomic_exchange(&r->stale, 0))
        ld_info("registry reachable again: serving a fresh snapshot");
    publish_health(r);
    return 0;
}

ol_snapshot *ol_registry_snapshot(ol_registry *r)
{
    pthread_mutex_lock(&r->mu);
    ol_snapshot *s = r->snap;
    if (s)
        atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    pthread_mutex_unlock(&r->mu);
    return s;
}

int ol_registry_stale(ol_registry *r)
{
    return atomic_load(&r->stale);
}

/* Ticks every min(cache_ttl, 1 s): a healthy snapshot is refreshed every
 * cache_ttl_seconds; a missing or stale one is retried every tick, so a
 * registry that comes back is picked up within a second. */
static void refresh_tick(void *arg)
{
    ol_registry *r = arg;
    if (r->last_ok_us && !atomic_load(&r->stale) && ld_mono_us() - r->last_ok_us < r->ttl_us)
        return;
    ld_status st = LD_STATUS_INIT;
    if (ol_registry_refresh(r, &st) != 0)
        ld_warn("registry refresh failed, serving the snapshot of %s: %s",
                r->snap ? "an earlier load" : "nothing", st.msg);
}

ol_registry *ol_registry_new(const ld_config *cfg, ld_status *st)
{
    ol_registry *r = calloc(1, sizeof *r);
    if (!r) {
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&r->mu, NULL);
    pthread_mutex_init(&r->health_mu, NULL);
    r->project = strdup(cfg->project);
    r->ttl_us = (int64_t)cfg->registry.cache_ttl_seconds * 1000000;
    r->src = ld_regclient_new(cfg, st);
    if (!r->src) {
        ol_registry_free(r);
        return NULL;
    }
    ld_status lst = LD_STATUS_INIT;
    if (ol_registry_refresh(r, &lst) != 0)
        ld_warn("registry not loaded yet (%s); retrying every %lld s", lst.msg,
                (long long)(r->ttl_us / 1000000));
    if (r->ttl_us > 0)
        r->refresher = ld_ticker_start(r->ttl_us < 1000000 ? r->ttl_us : 1000000, refresh_tick, r);
    return r;
}

void ol_registry_free(ol_registry *r)
{
    if (!r)
        return;
    ld_ticker_stop(r->refresher);
    ol_snapshot_unref(r->snap);
    ld_regclient_free(r->src);
    free(r->project);
    pthread_mutex_destroy(&r->mu);
    pthread_mutex_destroy(&r->health_mu);
    free(r);
}
