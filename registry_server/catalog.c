#include "catalog.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "feast/core/DataSource.pb-c.h"
#include "feast/core/Entity.pb-c.h"
#include "feast/core/FeatureService.pb-c.h"
#include "feast/core/FeatureView.pb-c.h"
#include "feast/core/LabelView.pb-c.h"
#include "feast/core/OnDemandFeatureView.pb-c.h"
#include "feast/core/Permission.pb-c.h"
#include "feast/core/Project.pb-c.h"
#include "feast/core/SavedDataset.pb-c.h"
#include "feast/core/StreamFeatureView.pb-c.h"
#include "feast/core/ValidationProfile.pb-c.h"
#include "pbref.h"

const cat_kind_info cat_kinds[CAT_N_KINDS] = {
        [CAT_ENTITY] = {"entity", "entities", "entity_name", "entity_proto",
                        &feast__core__entity__descriptor, 1, "spec.name", "spec.project",
                        "spec.tags", "meta", "EntityNotFoundException"},
        [CAT_DATA_SOURCE] = {"data source", "data_sources", "data_source_name", "data_source_proto",
                             &feast__core__data_source__descriptor, 12, "name", "project", "tags",
                             "meta", "DataSourceObjectNotFoundException"},
        [CAT_FEATURE_VIEW] = {"feature view", "feature_views", "feature_view_name",
                              "feature_view_proto", &feast__core__feature_view__descriptor, 6,
                              "spec.name", "spec.project", "spec.tags", "meta",
                              "FeatureViewNotFoundException"},
        [CAT_ODFV] = {"on demand feature view", "on_demand_feature_views", "feature_view_name",
                      "feature_view_proto", &feast__core__on_demand_feature_view__descriptor, 8,
                      "spec.name", "spec.project", "spec.tags", "meta",
                      "FeatureViewNotFoundException"},
        [CAT_SFV] = {"stream feature view", "stream_feature_views", "feature_view_name",
                     "feature_view_proto", &feast__core__stream_feature_view__descriptor, 14,
                     "spec.name", "spec.project", "spec.tags", "meta",
                     "FeatureViewNotFoundException"},
        [CAT_LABEL_VIEW] = {"label view", "label_views", "feature_view_name", "feature_view_proto",
                            &feast__core__label_view__descriptor, 19, "spec.name", "spec.project",
                            "spec.tags", "meta", "FeatureViewNotFoundException"},
        [CAT_FEATURE_SERVICE] = {"feature service", "feature_services", "feature_service_name",
                                 "feature_service_proto", &feast__core__feature_service__descriptor,
                                 7, "spec.name", "spec.project", "spec.tags", "meta",
                                 "FeatureServiceNotFoundException"},
        [CAT_SAVED_DATASET] = {"saved dataset", "saved_datasets", "saved_dataset_name",
                               "saved_dataset_proto", &feast__core__saved_dataset__descriptor, 11,
                               "spec.name", "spec.project", "spec.tags", "meta",
                               "SavedDatasetNotFound"},
        [CAT_VALIDATION_REF] = {"validation reference", "validation_references",
                                "validation_reference_name", "validation_reference_proto",
                                &feast__core__validation_reference__descriptor, 13, "name",
                                "project", "tags", NULL, "ValidationReferenceNotFound"},
        [CAT_PERMISSION] = {"permission", "permissions", "permission_name", "permission_proto",
                            &feast__core__permission__descriptor, 16, "spec.name", "spec.project",
                            "spec.tags", "meta", "PermissionObjectNotFoundException"},
        [CAT_PROJECT] = {"project", "projects", "project_name", "project_proto",
                         &feast__core__project__descriptor, 17, "spec.name", NULL, "spec.tags",
                         "meta", "ProjectObjectNotFoundException"},
};

/* ------------------------------------------------------------ objects */

static cat_obj *obj_finish(cat_kind kind, uint8_t *bytes, size_t len, ProtobufCMessage *msg,
                           ld_status *st)
{
    const cat_kind_info *ki = &cat_kinds[kind];
    cat_obj *o = calloc(1, sizeof *o);
    if (!o) {
        free(bytes);
        protobuf_c_message_free_unpacked(msg, NULL);
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        return NULL;
    }
    atomic_init(&o->refs, 1);
    o->kind = kind;
    o->bytes = bytes;
    o->len = len;
    o->msg = msg;
    o->name = pbref_string(msg, ki->name_path);
    o->project = ki->project_path ? pbref_string(msg, ki->project_path) : o->name;
    if (ki->meta) {
        char path[64];
        snprintf(path, sizeof path, "%s.created_timestamp", ki->meta);
        o->created_us = pbref_timestamp_us(msg, path);
        snprintf(path, sizeof path, "%s.last_updated_timestamp", ki->meta);
        o->updated_us = pbref_timestamp_us(msg, path);
    }
    if (!*o->name) {
        ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL, "%s has an empty name", ki->label);
        cat_obj_unref(o);
        return NULL;
    }
    return o;
}

cat_obj *cat_obj_new(cat_kind kind, const uint8_t *bytes, size_t len, ld_status *st)
{
    const cat_kind_info *ki = &cat_kinds[kind];
    ProtobufCMessage *msg = protobuf_c_message_unpack(ki->desc, NULL, len, bytes);
    if (!msg) {
        ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL, "bytes are not a valid %s",
                      ki->desc->name);
        return NULL;
    }
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy) {
        protobuf_c_message_free_unpacked(msg, NULL);
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        return NULL;
    }
    memcpy(copy, bytes, len);
    return obj_finish(kind, copy, len, msg, st);
}

cat_obj *cat_obj_from_msg(cat_kind kind, const ProtobufCMessage *msg, ld_status *st)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *bytes = malloc(len ? len : 1);
    if (!bytes) {
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        return NULL;
    }
    protobuf_c_message_pack(msg, bytes);
    cat_obj *o = cat_obj_new(kind, bytes, len, st);
    free(bytes);
    return o;
}

cat_obj *cat_obj_ref(cat_obj *o)
{
    atomic_fetch_add_explicit(&o->refs, 1, memory_order_relaxed);
    return o;
}

void cat_obj_unref(cat_obj *o)
{
    if (!o || atomic_fetch_sub_explicit(&o->refs, 1, memory_order_acq_rel) != 1)
        return;
    protobuf_c_message_free_unpacked(o->msg, NULL);
    free(o->bytes);
    free(o);
}

/* ------------------------------------------------------------ index */

static uint64_t key_hash(cat_kind kind, const char *project, const char *name)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)kind;
    for (const unsigned char *p = (const void *)project; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;
    for (const unsigned char *p = (const void *)name; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return h;
}

static void index_build(catalog *c)
{
    size_t total = 0;
    for (int k = 0; k < CAT_N_KINDS; k++)
        total += c->kinds[k].n;
    size_t n = 16;
    while (n < total * 2)
        n *= 2;
    free(c->slots);
    c->slots = calloc(n, sizeof *c->slots);
    c->n_slots = c->slots ? n : 0;
    if (!c->slots)
        return;
    for (int k = 0; k < CAT_N_KINDS; k++)
        for (size_t i = 0; i < c->kinds[k].n; i++) {
            cat_obj *o = c->kinds[k].v[i];
            size_t s = key_hash(o->kind, o->project, o->name) & (n - 1);
            while (c->slots[s])
                s = (s + 1) & (n - 1);
            c->slots[s] = o;
        }
}

cat_obj *cat_find(const catalog *c, cat_kind kind, const char *project, const char *name)
{
    if (!c->n_slots)
        return NULL;
    size_t s = key_hash(kind, project, name) & (c->n_slots - 1);
    for (cat_obj *o; (o = c->slots[s]); s = (s + 1) & (c->n_slots - 1))
        if (o->kind == kind && strcmp(o->name, name) == 0 && strcmp(o->project, project) == 0)
            return o;
    return NULL;
}

int cat_has_project(const catalog *c, const char *project)
{
    return cat_find(c, CAT_PROJECT, project, project) != NULL;
}

/* ------------------------------------------------------------ lifecycle */

catalog *cat_new_empty(void)
{
    catalog *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    atomic_init(&c->refs, 1);
    c->schema_version = strdup("1");
    c->version_id = strdup("");
    index_build(c);
    return c;
}

catalog *cat_ref(catalog *c)
{
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    return c;
}

void cat_unref(catalog *c)
{
    if (!c || atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (int k = 0; k < CAT_N_KINDS; k++) {
        for (size_t i = 0; i < c->kinds[k].n; i++)
            cat_obj_unref(c->kinds[k].v[i]);
        free(c->kinds[k].v);
    }
    for (size_t i = 0; i < c->n_pmeta; i++) {
        free(c->pmeta[i].project);
        free(c->pmeta[i].uuid);
    }
    free(c->pmeta);
    for (size_t i = 0; i < c->n_raw; i++)
        free(c->raw[i].bytes);
    free(c->raw);
    free(c->infra);
    free(c->history);
    free(c->schema_version);
    free(c->version_id);
    free(c->slots);
    for (cat_memo *m = atomic_load(&c->memo), *next; m; m = next) {
        next = m->next;
        free(m->project);
        free(m->bytes);
        free(m);
    }
    free(c);
}

static const cat_memo *memo_find(const cat_memo *m, cat_kind kind, const char *project)
{
    for (; m; m = m->next)
        if (m->kind == kind && strcmp(m->project, project) == 0)
            return m;
    return NULL;
}

const cat_memo *cat_memo_get(const catalog *c, cat_kind kind, const char *project)
{
    return memo_find(atomic_load_explicit(&c->memo, memory_order_acquire), kind, project);
}

const cat_memo *cat_memo_put(const catalog *c, cat_kind kind, const char *project, uint8_t *bytes,
                             size_t len)
{
    catalog *mc = (catalog *)c; /* the memo only: the content stays immutable */
    cat_memo *e = calloc(1, sizeof *e);
    char *proj = strdup(project);
    if (!e || !proj) {
        free(e);
        free(proj);
        free(bytes);
        return NULL;
    }
    e->kind = kind;
    e->project = proj;
    e->bytes = bytes;
    e->len = len;
    cat_memo *head = atomic_load_explicit(&mc->memo, memory_order_acquire);
    for (;;) {
        const cat_memo *had = memo_find(head, kind, project);
        if (had) {
            free(e->project);
            free(e->bytes);
            free(e);
            return had;
        }
        e->next = head;
        if (atomic_compare_exchange_weak_explicit(&mc->memo, &head, e, memory_order_acq_rel,
                                                  memory_order_acquire))
            return e;
    }
}

static void *memdup(const void *p, size_t n)
{
    void *q = malloc(n ? n : 1);
    if (q && n)
        memcpy(q, p, n);
    return q;
}

/* A copy sharing every object (each gets a reference). */
static catalog *cat_copy(const catalog *c)
{
    catalog *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    atomic_init(&d->refs, 1);
    for (int k = 0; k < CAT_N_KINDS; k++) {
        size_t n = c->kinds[k].n;
        d->kinds[k].v = malloc((n + 1) * sizeof(cat_obj *));
        for (size_t i = 0; i < n; i++)
            d->kinds[k].v[i] = cat_obj_ref(c->kinds[k].v[i]);
        d->kinds[k].n = n;
    }
    d->pmeta = calloc(c->n_pmeta + 1, sizeof *d->pmeta);
    for (size_t i = 0; i < c->n_pmeta; i++) {
        d->pmeta[i].project = strdup(c->pmeta[i].project);
        d->pmeta[i].uuid = strdup(c->pmeta[i].uuid);
    }
    d->n_pmeta = c->n_pmeta;
    if (c->infra) {
        d->infra = memdup(c->infra, c->infra_len);
        d->infra_len = c->infra_len;
    }
    if (c->history) {
        d->history = memdup(c->history, c->history_len);
        d->history_len = c->history_len;
    }
    d->raw = calloc(c->n_raw + 1, sizeof *d->raw);
    for (size_t i = 0; i < c->n_raw; i++) {
        d->raw[i].bytes = memdup(c->raw[i].bytes, c->raw[i].len);
        d->raw[i].len = c->raw[i].len;
    }
    d->n_raw = c->n_raw;
    d->schema_version = strdup(c->schema_version);
    d->version_id = strdup(c->version_id);
    d->last_updated_us = c->last_updated_us;
    return d;
}

static void vec_remove(cat_vec *v, cat_obj *o)
{
    for (size_t i = 0; i < v->n; i++)
        if (v->v[i] == o) {
            cat_obj_unref(o);
            memmove(&v->v[i], &v->v[i + 1], (v->n - i - 1) * sizeof *v->v);
            v->n--;
            return;
        }
}

catalog *cat_with_put(const catalog *c, cat_obj *o)
{
    catalog *d = cat_copy(c);
    if (!d)
        return NULL;
    cat_obj *old = cat_find(c, o->kind, o->project, o->name);
    cat_vec *v = &d->kinds[o->kind];
    if (old)
        vec_remove(v, old);
    v->v[v->n++] = cat_obj_ref(o); /* cat_copy left room for one more */
    index_build(d);
    return d;
}

catalog *cat_with_replace(const catalog *c, cat_obj *old, cat_obj *o)
{
    catalog *d = cat_copy(c);
    if (!d)
        return NULL;
    cat_vec *v = &d->kinds[o->kind];
    for (size_t i = 0; i < v->n; i++)
        if (v->v[i] == old) {
            cat_obj_unref(old);
            v->v[i] = cat_obj_ref(o);
            break;
        }
    index_build(d);
    return d;
}

catalog *cat_with_delete(const catalog *c, cat_obj *o)
{
    catalog *d = cat_copy(c);
    if (!d)
        return NULL;
    vec_remove(&d->kinds[o->kind], o);
    index_build(d);
    return d;
}

catalog *cat_with_project_deleted(const catalog *c, const char *project)
{
    catalog *d = cat_copy(c);
    if (!d)
        return NULL;
    for (int k = 0; k < CAT_N_KINDS; k++) {
        cat_vec *v = &d->kinds[k];
        size_t j = 0;
        for (size_t i = 0; i < v->n; i++) {
            if (strcmp(v->v[i]->project, project) == 0)
                cat_obj_unref(v->v[i]);
            else
                v->v[j++] = v->v[i];
        }
        v->n = j;
    }
    /* Feast keeps the project's metadata and the registry's infra */
    index_build(d);
    return d;
}

catalog *cat_with_infra(const catalog *c, const uint8_t *infra, size_t len)
{
    catalog *d = cat_copy(c);
    if (!d)
        return NULL;
    free(d->infra);
    d->infra = memdup(infra, len);
    d->infra_len = len;
    index_build(d);
    return d;
}

catalog *cat_with_project_meta(const catalog *c, const char *project, const char *uuid)
{
    catalog *d = cat_copy(c);
    if (!d)
        return NULL;
    d->pmeta[d->n_pmeta].project = strdup(project);
    d->pmeta[d->n_pmeta].uuid = strdup(uuid);
    d->n_pmeta++;
    index_build(d);
    return d;
}

void cat_uuid4(char out[37])
{
    unsigned char b[16];
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, b, sizeof b) != (ssize_t)sizeof b) {
        /* never expected; fall back to something unique enough */
        for (int i = 0; i < 16; i++)
            b[i] = (unsigned char)(rand() & 0xff);
    }
    if (fd >= 0)
        close(fd);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}

void cat_stamp(catalog *c, int64_t now_us)
{
    char id[37];
    cat_uuid4(id);
    free(c->version_id);
    c->version_id = strdup(id);
    c->last_updated_us = now_us;
}

/* ------------------------------------------------------------ wire format */

static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

static void put_varint(ld_buf *b, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;
    do {
        tmp[n] = v & 0x7f;
        v >>= 7;
        if (v)
            tmp[n] |= 0x80;
        n++;
    } while (v);
    ld_buf_append(b, tmp, n);
}

static void put_len_field(ld_buf *b, int field, const void *data, size_t len)
{
    put_varint(b, ((uint64_t)field << 3) | 2);
    put_varint(b, len);
    ld_buf_append(b, data, len);
}

static int vec_push(cat_vec *v, cat_obj *o)
{
    if ((v->n & (v->n + 1)) == 0 || v->n == 0) { /* grow at 0, 1, 3, 7, ... */
        size_t cap = v->n ? (v->n + 1) * 2 : 4;
        cat_obj **nv = realloc(v->v, (cap + 1) * sizeof *nv);
        if (!nv)
            return -1;
        v->v = nv;
    }
    v->v[v->n++] = o;
    return 0;
}

static cat_kind kind_of_field(int field)
{
    for (int k = 0; k < CAT_N_KINDS; k++)
        if (cat_kinds[k].registry_field == field)
            return (cat_kind)k;
    return CAT_N_KINDS;
}

static int parse_project_meta(catalog *c, const uint8_t *p, size_t len)
{
    const uint8_t *end = p + len;
    char *fields[2] = {NULL, NULL};
    while (p < end) {
        uint64_t tag, n;
        if (read_varint(&p, end, &tag) != 0)
            goto bad;
        if ((tag & 7) != 2) {
            /* skip a varint / fixed field */
            uint64_t skip;
            if ((tag & 7) == 0 && read_varint(&p, end, &skip) == 0)
                continue;
            goto bad;
        }
        if (read_varint(&p, end, &n) != 0 || n > (uint64_t)(end - p))
            goto bad;
        int f = (int)(tag >> 3);
        if (f == 1 || f == 2) {
            free(fields[f - 1]);
            fields[f - 1] = strndup((const char *)p, n);
        }
        p += n;
    }
    cat_project_meta *pm = realloc(c->pmeta, (c->n_pmeta + 2) * sizeof *pm);
    if (!pm)
        goto bad;
    c->pmeta = pm;
    pm[c->n_pmeta].project = fields[0] ? fields[0] : strdup("");
    pm[c->n_pmeta].uuid = fields[1] ? fields[1] : strdup("");
    c->n_pmeta++;
    return 0;
bad:
    free(fields[0]);
    free(fields[1]);
    return -1;
}

catalog *cat_parse(const uint8_t *data, size_t len, ld_status *st)
{
    catalog *c = calloc(1, sizeof *c);
    if (!c) {
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        return NULL;
    }
    atomic_init(&c->refs, 1);
    const uint8_t *p = data, *end = data + len;
    while (p < end) {
        const uint8_t *field_start = p;
        uint64_t tag, n = 0;
        if (read_varint(&p, end, &tag) != 0)
            goto bad;
        int field = (int)(tag >> 3), wt = (int)(tag & 7);
        const uint8_t *val = p;
        switch (wt) {
        case 0:
            if (read_varint(&p, end, &n) != 0)
                goto bad;
            break;
        case 1:
            if (end - p < 8)
                goto bad;
            p += 8;
            break;
        case 5:
            if (end - p < 4)
                goto bad;
            p += 4;
            break;
        case 2:
            if (read_varint(&p, end, &n) != 0 || n > (uint64_t)(end - p))
                goto bad;
            val = p;
            p += n;
            break;
        default:
            goto bad;
        }
        cat_kind k = wt == 2 ? kind_of_field(field) : CAT_N_KINDS;
        if (k != CAT_N_KINDS) {
            cat_obj *o = cat_obj_new(k, val, n, st);
            if (!o) {
                ld_status_prefix(st, "registry %s #%zu", cat_kinds[k].label, c->kinds[k].n + 1);
                goto fail;
            }
            if (vec_push(&c->kinds[k], o) != 0) {
                cat_obj_unref(o);
                goto bad;
            }
        } else if (wt == 2 && field == 3) {
            free(c->schema_version);
            c->schema_version = strndup((const char *)val, n);
        } else if (wt == 2 && field == 4) {
            free(c->version_id);
            c->version_id = strndup((const char *)val, n);
        } else if (wt == 2 && field == 5) {
            /* Timestamp{seconds=1 varint, nanos=2 varint} */
            const uint8_t *q = val, *qe = val + n;
            int64_t secs = 0, nanos = 0;
            while (q < qe) {
                uint64_t t, v;
                if (read_varint(&q, qe, &t) != 0 || (t & 7) != 0 || read_varint(&q, qe, &v))
                    goto bad;
                if ((t >> 3) == 1)
                    secs = (int64_t)v;
                else if ((t >> 3) == 2)
                    nanos = (int64_t)(int32_t)v;
            }
            c->last_updated_us = secs * 1000000 + nanos / 1000;
        } else if (wt == 2 && field == 10) {
            free(c->infra);
            c->infra = memdup(val, n);
            c->infra_len = n;
        } else if (wt == 2 && field == 15) {
            if (parse_project_meta(c, val, n) != 0)
                goto bad;
        } else if (wt == 2 && field == 18) {
            free(c->history);
            c->history = memdup(val, n);
            c->history_len = n;
        } else {
            cat_raw *r = realloc(c->raw, (c->n_raw + 1) * sizeof *r);
            if (!r)
                goto bad;
            c->raw = r;
            r[c->n_raw].len = (size_t)(p - field_start);
            r[c->n_raw].bytes = memdup(field_start, r[c->n_raw].len);
            c->n_raw++;
        }
    }
    if (!c->schema_version)
        c->schema_version = strdup("");
    if (!c->version_id)
        c->version_id = strdup("");
    /* leave room for one more object per kind (cat_with_put relies on it
     * only for copies; parsed catalogs are copied before any edit) */
    index_build(c);
    return c;
bad:
    ld_status_set(st, GRPC_STATUS_DATA_LOSS, NULL,
                  "registry bytes are not a valid feast.core.Registry (at byte %zu)",
                  (size_t)(p - data));
fail:
    if (!c->schema_version)
        c->schema_version = strdup("");
    if (!c->version_id)
        c->version_id = strdup("");
    cat_unref(c);
    return NULL;
}

static void put_objects(ld_buf *b, const catalog *c, int field)
{
    cat_kind k = kind_of_field(field);
    for (size_t i = 0; i < c->kinds[k].n; i++)
        put_len_field(b, field, c->kinds[k].v[i]->bytes, c->kinds[k].v[i]->len);
}

void cat_serialize(const catalog *c, ld_buf *out)
{
    put_objects(out, c, 1);
    for (size_t i = 0; i < c->n_raw; i++) { /* feature_tables (2) are known; keep them here */
        const uint8_t *p = c->raw[i].bytes;
        uint64_t tag;
        if (read_varint(&p, c->raw[i].bytes + c->raw[i].len, &tag) == 0 && (tag >> 3) == 2)
            ld_buf_append(out, c->raw[i].bytes, c->raw[i].len);
    }
    if (c->schema_version && *c->schema_version)
        put_len_field(out, 3, c->schema_version, strlen(c->schema_version));
    if (c->version_id && *c->version_id)
        put_len_field(out, 4, c->version_id, strlen(c->version_id));
    if (c->last_updated_us) {
        ld_buf ts = LD_BUF_INIT;
        int64_t secs = c->last_updated_us / 1000000;
        int64_t nanos = (c->last_updated_us % 1000000) * 1000;
        if (secs) {
            put_varint(&ts, 1 << 3);
            put_varint(&ts, (uint64_t)secs);
        }
        if (nanos) {
            put_varint(&ts, 2 << 3);
            put_varint(&ts, (uint64_t)nanos);
        }
        put_len_field(out, 5, ts.data ? ts.data : "", ts.len);
        ld_buf_free(&ts);
    }
    put_objects(out, c, 6);
    put_objects(out, c, 7);
    put_objects(out, c, 8);
    if (c->infra)
        put_len_field(out, 10, c->infra, c->infra_len);
    put_objects(out, c, 11);
    put_objects(out, c, 12);
    put_objects(out, c, 13);
    put_objects(out, c, 14);
    for (size_t i = 0; i < c->n_pmeta; i++) {
        ld_buf pm = LD_BUF_INIT;
        if (*c->pmeta[i].project)
            put_len_field(&pm, 1, c->pmeta[i].project, strlen(c->pmeta[i].project));
        if (*c->pmeta[i].uuid)
            put_len_field(&pm, 2, c->pmeta[i].uuid, strlen(c->pmeta[i].uuid));
        put_len_field(out, 15, pm.data ? pm.data : "", pm.len);
        ld_buf_free(&pm);
    }
    put_objects(out, c, 16);
    put_objects(out, c, 17);
    if (c->history)
        put_len_field(out, 18, c->history, c->history_len);
    put_objects(out, c, 19);
    for (size_t i = 0; i < c->n_raw; i++) { /* unknown fields last */
        const uint8_t *p = c->raw[i].bytes;
        uint64_t tag;
        if (read_varint(&p, c->raw[i].bytes + c->raw[i].len, &tag) != 0 || (tag >> 3) != 2)
            ld_buf_append(out, c->raw[i].bytes, c->raw[i].len);
    }
}
