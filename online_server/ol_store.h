/* ol_store: the online store interface (Redis, PostgreSQL, SQLite), one
 * backend per file behind this vtable. Layouts are Feast's (see
 * ../shared/reference/feast-protocols.md §1.5): a backend reads what Feast
 * wrote and Feast reads what a backend writes.
 *
 * Everything is asynchronous: read() and write() return at once and call
 * `done` exactly once, from any thread (a store's I/O thread or a pool
 * thread). Completion-queue and HTTP threads never wait on a store.
 *
 * Values travel as the exact bytes of serialized feast.types.Value, which is
 * what all three stores keep; the gRPC response embeds them without decoding.
 * All memory of a request lives in its arena (the call's). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "ld_arena.h"
#include "ld_config.h"
#include "ld_status.h"

typedef struct ol_store ol_store;

/* One feature view's part of a read: which entities, which features. */
typedef struct ol_read_group {
    const char *table;                /* feature view name as stored (never the alias) */
    const char *const *features;      /* feature names to read */
    const unsigned char (*fields)[4]; /* murmur3_32("table:feature") per feature (Redis) */
    size_t n_features;
    /* serialized entity keys (serialize_entity_key v3) only, deduplicated;
     * the Redis store appends utf8(project) itself, SQL stores use them as
     * the entity_key column */
    const uint8_t *const *keys;
    const size_t *key_lens;
    size_t n_keys;
    /* results, allocated by the caller (n_keys x n_features cells, not
     * zeroed; n_keys timestamps and found flags, zeroed), filled by the
     * store: every cell of a key it sets found for */
    const uint8_t **val; /* [key * n_features + feature]: Value bytes, NULL when absent */
    size_t *val_len;
    int64_t *event_ts_us; /* [key]: the row's event timestamp (0 when absent) */
    uint8_t *found;       /* [key]: the entity has a row for this view */
} ol_read_group;

/* How a caller lets a store put off sending a read's commands until its
 * thread has handled the requests it already holds (ld_call_defer), so that
 * requests arriving together share one send. defer() returns 0 when it will
 * call fn(obj) later on this thread, -1 when the store must send now. Used
 * only inside read(). */
typedef struct ol_defer {
    int (*defer)(void *ctx, void (*fn)(void *obj), void *obj);
    void *ctx;
} ol_defer;

typedef struct ol_read {
    const char *project;
    ol_read_group *groups;
    size_t n_groups;
    ld_arena *arena;       /* result bytes may be allocated here */
    int64_t deadline_us;   /* ld_mono_us clock; INT64_MAX: none */
    const ol_defer *defer; /* NULL: send at once */
    void (*done)(struct ol_read *r, const ld_status *st);
    void *arg;
} ol_read;

/* One feature view's rows to write. */
typedef struct ol_write_row {
    const uint8_t *key; /* serialized entity key (without the project) */
    size_t key_len;
    int64_t event_ts_us;
    int64_t created_ts_us;     /* 0: none */
    const uint8_t *const *val; /* [feature]: Value bytes (NULL: write a null Value) */
    const size_t *val_len;
} ol_write_row;

typedef struct ol_write {
    const char *project;
    const char *table;
    const char *const *features;
    const unsigned char (*fields)[4];
    size_t n_features;
    const ol_write_row *rows;
    size_t n_rows;
    ld_arena *arena;
    int64_t deadline_us;
    void (*done)(struct ol_write *w, const ld_status *st);
    void *arg;
} ol_write;

typedef struct ol_store_ops {
    const char *name;
    /* 0: accepted, r->done will be called exactly once (possibly before
     * read returns). -1: refused at once with st set; done is not called. */
    int (*read)(ol_store *s, ol_read *r, ld_status *st);
    int (*write)(ol_store *s, ol_write *w, ld_status *st); /* same contract */
    /* 1 healthy, 0 not (e.g. Redis unreachable); cheap, no I/O */
    int (*healthy)(ol_store *s);
    void (*free)(ol_store *s);
} ol_store_ops;

struct ol_store {
    const ol_store_ops *ops;
};

/* Build the store the config names (online_store.type). */
ol_store *ol_store_new(const ld_config *cfg, ld_status *st);
ol_store *ol_store_redis_new(const ld_config *cfg, ld_status *st);
ol_store *ol_store_postgres_new(const ld_config *cfg, ld_status *st);
ol_store *ol_store_sqlite_new(const ld_config *cfg, ld_status *st);
