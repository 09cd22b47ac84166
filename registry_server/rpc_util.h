/* rpc_util: pieces the registry's handlers share — reading common request
 * fields, tag filters, Feast's sorting and pagination, and writing list
 * responses straight from stored object bytes. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

#include "catalog.h"
#include "ld_buf.h"
#include "ld_status.h"

/* A list being answered: objects (not referenced; the snapshot holds them)
 * plus, for ListAllFeatureViews, the AnyFeatureView field number of each. */
typedef struct obj_list {
    cat_obj **v;
    int *wrap; /* NULL, or per object the field to wrap it in */
    size_t n, cap;
} obj_list;

void obj_list_push(obj_list *l, cat_obj *o, int wrap);
void obj_list_free(obj_list *l);

/* Every requested tag (map field "tags" of the request) equals the
 * object's tag of that key. */
int match_tags(const ProtobufCMessage *req, const cat_obj *o);

typedef struct page_meta {
    int32_t page, limit, total_count, total_pages;
    int has_next, has_previous;
} page_meta;

/* Sort by req.sorting (if any), then paginate by req.pagination (if page
 * and limit > 0), as Feast's apply_pagination_and_sorting does. Fails only
 * on a limit above max_page. *first and *count select the page. */
int sort_and_paginate(const ProtobufCMessage *req, obj_list *l, size_t max_page, size_t *first,
                      size_t *count, page_meta *pm, ld_status *st);

/* The request's pagination limit (field "pagination") is within max_page. */
int check_page_limit(const ProtobufCMessage *req, size_t max_page, ld_status *st);

/* Protobuf writing helpers. */
void pb_put_varint(ld_buf *b, uint64_t v);
void pb_put_bytes_field(ld_buf *b, int field, const void *data, size_t len);
void pb_put_string_field(ld_buf *b, int field, const char *s);
void pb_put_varint_field(ld_buf *b, int field, uint64_t v);
/* PaginationMetadata as field `field` (always present, as Feast sets it). */
void pb_put_page_meta(ld_buf *b, int field, const page_meta *pm);
/* google.protobuf.Timestamp as field `field` from µs; omitted when 0. */
void pb_put_timestamp_field(ld_buf *b, int field, int64_t us);
