#include "rpc_util.h"

#include <ctype.h>
#include <stdio.h>
#include <strings.h>
#include <stdlib.h>
#include <string.h>

#include "feast/registry/RegistryServer.pb-c.h"
#include "google/protobuf/timestamp.pb-c.h"
#include "pbref.h"

void obj_list_push(obj_list *l, cat_obj *o, int wrap)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        cat_obj **v = realloc(l->v, cap * sizeof *v);
        int *w = realloc(l->wrap, cap * sizeof *w);
        if (!v || !w) {
            free(v ? v : l->v);
            abort(); /* out of memory: nothing sensible to answer */
        }
        l->v = v;
        l->wrap = w;
        l->cap = cap;
    }
    l->wrap[l->n] = wrap;
    l->v[l->n++] = o;
}

void obj_list_free(obj_list *l)
{
    free(l->v);
    free(l->wrap);
    memset(l, 0, sizeof *l);
}

int match_tags(const ProtobufCMessage *req, const cat_obj *o)
{
    size_t nreq, nobj;
    ProtobufCMessage **want = pbref_map(req, "tags", &nreq);
    if (!nreq)
        return 1;
    ProtobufCMessage **have = pbref_map(o->msg, cat_kinds[o->kind].tags_path, &nobj);
    for (size_t i = 0; i < nreq; i++) {
        const char *key = pbref_string(want[i], "key");
        const char *val = pbref_string(want[i], "value");
        const char *got = pbref_map_get(have, nobj, key);
        if (!got || strcmp(got, val) != 0)
            return 0;
    }
    return 1;
}

/* ---- sorting: Feast sorts with the key
 *   str      -> (s.lower(), 1, None)
 *   number   -> ("", 1, n)
 *   other    -> (str(v).lower(), 1, None)
 *   missing  -> ("", 0, None)
 * on an attribute path of the Python object; we resolve the same path on
 * the proto (spec.<path>, <path>, meta.<path>). Timestamps compare by time. */

typedef struct sort_key {
    int present;
    int is_num;
    double num;
    char *str; /* lower-cased */
} sort_key;

static void key_for(const cat_obj *o, const char *path, sort_key *k)
{
    memset(k, 0, sizeof *k);
    /* Python attributes map to spec.<x> and meta.<x> for objects with a
     * spec, to <x> and meta.<x> for data sources and validation references;
     * a path like "spec.name" is no Python attribute and sorts nothing. */
    int has_spec = cat_kinds[o->kind].name_path[0] == 's';
    const char *prefixes[2] = {has_spec ? "spec." : "", "meta."};
    char full[256];
    const ProtobufCFieldDescriptor *f = NULL;
    void *p = NULL;
    for (size_t i = 0; i < 2 && !f; i++) {
        snprintf(full, sizeof full, "%s%s", prefixes[i], path);
        f = pbref_field(o->msg, full, &p);
        if (f && !p)
            f = NULL;
    }
    if (!f || f->label == PROTOBUF_C_LABEL_REPEATED)
        return;
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char **)p;
        k->present = 1;
        k->str = strdup(s ? s : "");
        for (char *c = k->str; c && *c; c++)
            *c = (char)tolower((unsigned char)*c);
        return;
    }
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_ENUM:
        k->num = *(int32_t *)p;
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        k->num = *(uint32_t *)p;
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        k->num = (double)*(int64_t *)p;
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        k->num = (double)*(uint64_t *)p;
        break;
    case PROTOBUF_C_TYPE_BOOL:
        k->num = *(protobuf_c_boolean *)p;
        break;
    case PROTOBUF_C_TYPE_FLOAT:
        k->num = *(float *)p;
        break;
    case PROTOBUF_C_TYPE_DOUBLE:
        k->num = *(double *)p;
        break;
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *m = *(ProtobufCMessage **)p;
        if (!m || m->descriptor != &google__protobuf__timestamp__descriptor)
            return; /* unset, or nothing a sort can use */
        const Google__Protobuf__Timestamp *t = (const void *)m;
        k->num = (double)t->seconds + t->nanos / 1e9;
        break;
    }
    default:
        return;
    }
    k->present = 1;
    k->is_num = 1;
}

static int cmp_keys(const sort_key *a, const sort_key *b)
{
    const char *sa = a->present && !a->is_num ? a->str : "";
    const char *sb = b->present && !b->is_num ? b->str : "";
    int c = strcmp(sa, sb);
    if (c)
        return c;
    if (a->present != b->present)
        return a->present - b->present;
    if (a->is_num && b->is_num)
        return (a->num > b->num) - (a->num < b->num);
    return 0;
}

typedef struct sort_item {
    sort_key key;
    size_t index;
    cat_obj *obj;
    int wrap;
} sort_item;

static int cmp_items(const void *pa, const void *pb, void *arg)
{
    const sort_item *a = pa, *b = pb;
    int c = cmp_keys(&a->key, &b->key);
    if (*(const int *)arg)
        c = -c;
    if (c)
        return c;
    /* stable, like Python's sort (reverse=True keeps equal items in order) */
    return (a->index > b->index) - (a->index < b->index);
}

static void sort_list(obj_list *l, const char *path, int desc)
{
    sort_item *items = calloc(l->n ? l->n : 1, sizeof *items);
    if (!items)
        return;
    for (size_t i = 0; i < l->n; i++) {
        key_for(l->v[i], path, &items[i].key);
        items[i].index = i;
        items[i].obj = l->v[i];
        items[i].wrap = l->wrap[i];
    }
    qsort_r(items, l->n, sizeof *items, cmp_items, &desc);
    for (size_t i = 0; i < l->n; i++) {
        l->v[i] = items[i].obj;
        l->wrap[i] = items[i].wrap;
        free(items[i].key.str);
    }
    free(items);
}

int check_page_limit(const ProtobufCMessage *req, size_t max_page, ld_status *st)
{
    const Feast__Registry__PaginationParams *p = (const void *)pbref_message(req, "pagination");
    if (p && p->page > 0 && p->limit > 0 && (size_t)p->limit > max_page)
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "pagination limit %d exceeds the maximum page size %zu", p->limit,
                             max_page);
    return 0;
}

int sort_and_paginate(const ProtobufCMessage *req, obj_list *l, size_t max_page, size_t *first,
                      size_t *count, page_meta *pm, ld_status *st)
{
    memset(pm, 0, sizeof *pm);
    const Feast__Registry__SortingParams *s = (const void *)pbref_message(req, "sorting");
    if (s && s->sort_by && *s->sort_by && l->n > 1)
        sort_list(l, s->sort_by, s->sort_order && strcasecmp(s->sort_order, "desc") == 0);

    const Feast__Registry__PaginationParams *p = (const void *)pbref_message(req, "pagination");
    size_t total = l->n;
    *first = 0;
    *count = total;
    if (p && p->page > 0 && p->limit > 0) {
        if ((size_t)p->limit > max_page)
            return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                                 "pagination limit %d exceeds the maximum page size %zu", p->limit,
                                 max_page);
        size_t start = (size_t)(p->page - 1) * (size_t)p->limit;
        *first = start < total ? start : total;
        size_t end = start + (size_t)p->limit;
        *count = (end < total ? end : total) - *first;
        if (total == 0)
            return 0; /* empty: all-zero metadata */
        pm->page = p->page;
        pm->limit = p->limit;
        pm->total_count = (int32_t)total;
        pm->total_pages = (int32_t)((total + (size_t)p->limit - 1) / (size_t)p->limit);
        pm->has_next = p->page < pm->total_pages;
        pm->has_previous = p->page > 1;
        return 0;
    }
    if (total == 0)
        return 0;
    pm->total_count = (int32_t)total;
    pm->total_pages = 1;
    return 0;
}

void pb_put_varint(ld_buf *b, uint64_t v)
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

void pb_put_bytes_field(ld_buf *b, int field, const void *data, size_t len)
{
    pb_put_varint(b, ((uint64_t)field << 3) | 2);
    pb_put_varint(b, len);
    ld_buf_append(b, data, len);
}

void pb_put_string_field(ld_buf *b, int field, const char *s)
{
    if (s && *s)
        pb_put_bytes_field(b, field, s, strlen(s));
}

void pb_put_varint_field(ld_buf *b, int field, uint64_t v)
{
    if (!v)
        return;
    pb_put_varint(b, (uint64_t)field << 3);
    pb_put_varint(b, v);
}

void pb_put_page_meta(ld_buf *b, int field, const page_meta *pm)
{
    ld_buf m = LD_BUF_INIT;
    pb_put_varint_field(&m, 1, (uint64_t)(int64_t)pm->page);
    pb_put_varint_field(&m, 2, (uint64_t)(int64_t)pm->limit);
    pb_put_varint_field(&m, 3, (uint64_t)(int64_t)pm->total_count);
    pb_put_varint_field(&m, 4, (uint64_t)(int64_t)pm->total_pages);
    pb_put_varint_field(&m, 5, (uint64_t)pm->has_next);
    pb_put_varint_field(&m, 6, (uint64_t)pm->has_previous);
    pb_put_bytes_field(b, field, m.data ? m.data : "", m.len);
    ld_buf_free(&m);
}

void pb_put_timestamp_field(ld_buf *b, int field, int64_t us)
{
    if (!us)
        return;
    ld_buf m = LD_BUF_INIT;
    int64_t secs = us / 1000000, nanos = (us % 1000000) * 1000;
    pb_put_varint_field(&m, 1, (uint64_t)secs);
    pb_put_varint_field(&m, 2, (uint64_t)nanos);
    pb_put_bytes_field(b, field, m.data ? m.data : "", m.len);
    ld_buf_free(&m);
}
