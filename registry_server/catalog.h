/* catalog: the registry's content as an immutable snapshot.
 *
 * Every object (entity, feature view, ...) is kept twice: as the exact bytes
 * of its protobuf (what Get and List send, and what the file holds) and
 * parsed (what filters, lineage and validation read). Objects are immutable
 * and reference-counted, so a new snapshot shares every object it did not
 * change with the old one. A snapshot is never modified after it is
 * published: readers take a reference and never wait for writers.
 *
 * Per kind, objects are kept in registry order (the order of the repeated
 * field in feast.core.Registry); an update removes the old object and
 * appends the new one, as Feast's file registry does. */
#pragma once

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

#include "ld_buf.h"
#include "ld_status.h"

typedef enum {
    CAT_ENTITY,
    CAT_DATA_SOURCE,
    CAT_FEATURE_VIEW,
    CAT_ODFV,
    CAT_SFV,
    CAT_LABEL_VIEW,
    CAT_FEATURE_SERVICE,
    CAT_SAVED_DATASET,
    CAT_VALIDATION_REF,
    CAT_PERMISSION,
    CAT_PROJECT,
    CAT_N_KINDS
} cat_kind;

typedef struct cat_kind_info {
    const char *label; /* "feature view", for messages */
    const char *table; /* the SQL registry's table, e.g. "feature_views" */
    const char *sql_name_col;
    const char *sql_proto_col;
    const ProtobufCMessageDescriptor *desc;
    int registry_field; /* field number in feast.core.Registry */
    const char *name_path;
    const char *project_path; /* NULL for projects (the name is the project) */
    const char *tags_path;
    const char *meta; /* the meta sub-message with created/last_updated, or NULL */
    const char *not_found_class;
} cat_kind_info;

extern const cat_kind_info cat_kinds[CAT_N_KINDS];

typedef struct cat_obj {
    atomic_int refs;
    cat_kind kind;
    const char *name;    /* inside msg */
    const char *project; /* inside msg */
    uint8_t *bytes;      /* exact serialized proto */
    size_t len;
    ProtobufCMessage *msg; /* parsed, protobuf-c default allocator */
    int64_t created_us, updated_us;
} cat_obj;

/* Parse bytes of a `kind` object. NULL with INVALID_ARGUMENT on bad bytes or
 * an empty name. */
cat_obj *cat_obj_new(cat_kind kind, const uint8_t *bytes, size_t len, ld_status *st);
/* Pack a (modified) message into a new object. */
cat_obj *cat_obj_from_msg(cat_kind kind, const ProtobufCMessage *msg, ld_status *st);
cat_obj *cat_obj_ref(cat_obj *o);
void cat_obj_unref(cat_obj *o);

typedef struct cat_vec {
    cat_obj **v;
    size_t n;
} cat_vec;

/* A raw top-level field of the Registry proto that we keep but don't
 * interpret (feature_tables, unknown fields): tag and value bytes. */
typedef struct cat_raw {
    uint8_t *bytes;
    size_t len;
} cat_raw;

typedef struct cat_project_meta {
    char *project;
    char *uuid;
} cat_project_meta;

typedef struct catalog {
    atomic_int refs;
    cat_vec kinds[CAT_N_KINDS];
    cat_project_meta *pmeta; /* Registry.project_metadata */
    size_t n_pmeta;
    uint8_t *infra; /* Registry.infra, serialized Infra; NULL when unset */
    size_t infra_len;
    uint8_t *history; /* Registry.feature_view_version_history, serialized */
    size_t history_len;
    cat_raw *raw; /* feature_tables and unknown fields, in file order */
    size_t n_raw;
    char *schema_version; /* "1" */
    char *version_id;
    int64_t last_updated_us;
    /* index: open addressing over (kind, project, name) */
    cat_obj **slots;
    size_t n_slots;
    /* memo of whole List responses, see cat_memo_get; freed with the snapshot */
    _Atomic(struct cat_memo *) memo;
} catalog;

catalog *cat_new_empty(void);
/* Parse a serialized feast.core.Registry. */
catalog *cat_parse(const uint8_t *data, size_t len, ld_status *st);
/* Serialize to feast.core.Registry bytes (field-number order, as protobuf
 * serializers do). */
void cat_serialize(const catalog *c, ld_buf *out);
catalog *cat_ref(catalog *c);
void cat_unref(catalog *c);

cat_obj *cat_find(const catalog *c, cat_kind kind, const char *project, const char *name);
int cat_has_project(const catalog *c, const char *project);

/* Copy-on-write edits: each returns a new catalog (refcount 1) sharing the
 * unchanged objects; `c` is not modified. */
catalog *cat_with_put(const catalog *c, cat_obj *o); /* insert or replace; takes a ref */
/* replace old (in c) by o at old's position; takes a ref on o */
catalog *cat_with_replace(const catalog *c, cat_obj *old, cat_obj *o);
catalog *cat_with_delete(const catalog *c, cat_obj *o); /* o must be in c */
catalog *cat_with_project_deleted(const catalog *c, const char *project);
catalog *cat_with_infra(const catalog *c, const uint8_t *infra, size_t len);
catalog *cat_with_project_meta(const catalog *c, const char *project, const char *uuid);
/* Stamp version_id (a new uuid4) and last_updated (now), as every Feast
 * file-registry write does. Mutates: only on a catalog not yet published. */
void cat_stamp(catalog *c, int64_t now_us);

/* Memo of serialized List responses of a snapshot. The snapshot never
 * changes, so the response to "every object of kind K in project P, no
 * filter, sort or page" is the same bytes for its whole life: it is built
 * on the first such call and copied out on the next ones (one contiguous
 * memcpy instead of a walk over every object). Entries are added lock-free
 * and live as long as the snapshot; the caller bounds how many there can be
 * (one per (kind, project) that holds objects). */
typedef struct cat_memo {
    struct cat_memo *next;
    cat_kind kind;
    char *project;
    uint8_t *bytes;
    size_t len;
} cat_memo;

const cat_memo *cat_memo_get(const catalog *c, cat_kind kind, const char *project);
/* Adds bytes (malloc'd; taken) under (kind, project) and returns the entry
 * now in the memo: ours, or the one another thread added first (then ours is
 * freed). NULL when out of memory (bytes freed). The memo is not part of the
 * snapshot's content, hence the const. */
const cat_memo *cat_memo_put(const catalog *c, cat_kind kind, const char *project, uint8_t *bytes,
                             size_t len);

/* A fresh uuid4 string (37 bytes with NUL). */
void cat_uuid4(char out[37]);
