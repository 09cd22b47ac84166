/* catalog_store: where the registry persists. One interface, two backends:
 *   file — the serialized feast.core.Registry at registry.path, exactly what
 *          Feast's file registry reads and writes;
 *   sql  — Feast's SQL-registry tables in PostgreSQL (one row per object).
 *
 * All calls block (disk, database): they run on the blocking pool or the
 * refresher thread, never on a completion-queue thread. */
#pragma once

#include "catalog.h"
#include "ld_status.h"

typedef enum {
    CAT_CHANGE_PUT,            /* obj inserted or replaced */
    CAT_CHANGE_DELETE,         /* obj removed */
    CAT_CHANGE_DELETE_PROJECT, /* every object of project removed */
    CAT_CHANGE_INFRA,          /* Registry.infra replaced (project given) */
    CAT_CHANGE_PROJECT_META,   /* project metadata added (project, uuid) */
} cat_change_op;

typedef struct cat_change {
    cat_change_op op;
    cat_obj *obj;
    const char *project;
    char uuid[37]; /* CAT_CHANGE_PROJECT_META */
} cat_change;

typedef struct cat_store cat_store;

typedef struct cat_store_ops {
    const char *name;
    /* The whole registry as the store has it now. */
    int (*load)(cat_store *s, catalog **out, ld_status *st);
    /* 1 if the store changed since our last load or commit (someone else
     * wrote), 0 if not, -1 on error. Cheap: a stat or one small query. */
    int (*changed)(cat_store *s, ld_status *st);
    /* Take the store's write lock across processes (file: flock; sql: the
     * transaction). Paired with commit or abort. */
    int (*begin)(cat_store *s, ld_status *st);
    /* Persist: `next` is the full new content, `changes` what differs from
     * the previous content. Durable when it returns 0. Ends the write. */
    int (*commit)(cat_store *s, const catalog *next, const cat_change *changes, size_t n,
                  ld_status *st);
    void (*abort)(cat_store *s);
    void (*free)(cat_store *s);
} cat_store_ops;

struct cat_store {
    const cat_store_ops *ops;
};

cat_store *cat_store_file_new(const char *path, ld_status *st);
cat_store *cat_store_sql_new(const char *dsn, ld_status *st);
