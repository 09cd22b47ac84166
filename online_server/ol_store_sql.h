/* ol_store_sql: what the two SQL online stores (PostgreSQL, SQLite) share of
 * Feast's SQL layout: one table per feature view, "{project}_{view}", with a
 * row per (entity_key, feature_name) holding the serialized Value and the
 * event time. Here: the table's quoted name, the value_num switch, and
 * putting the rows a read returns into the read group's cells. The SQL and
 * the client libraries stay in each store's file. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "ld_arena.h"
#include "ld_buf.h"
#include "ld_config.h"
#include "ol_store.h"

/**
 * ol_store_sql_ident() - append a quoted identifier (embedded quotes doubled):
 * "{project}_{table}{suffix}", or "{project}{suffix}" when table is NULL
 * (to quote a single name). suffix may be NULL.
 */
void ol_store_sql_ident(ld_buf *b, const char *project, const char *table, const char *suffix);

/* ol_store_sql_value_num() - 1 when online_store.enable_openai_compatible_store
 * is on (YAML true/yes/on/1, any case): new tables get Feast's value_num
 * column and writes fill it. */
int ol_store_sql_value_num(const ld_config *cfg);

/* ol_store_sql_clear() - every cell of the group to "not found". */
void ol_store_sql_clear(ol_read_group *g);

/* An index of byte strings to their first position, later copies chained
 * (a request may repeat a key or a feature). Private to ol_store_sql.c. */
typedef struct ol_store_sql_index {
    uint32_t *slot; /* position + 1; 0 = empty */
    uint32_t *dup;  /* [i]: next position with the same bytes + 1; 0 = none */
    size_t mask;
    const uint8_t *const *p;
    const size_t *len;
} ol_store_sql_index;

/* The rows of one group's read, being put into its cells. */
typedef struct ol_store_sql_rows {
    ol_read_group *g;
    ld_arena *arena;
    size_t *flen;
    ol_store_sql_index keys, feats;
} ol_store_sql_rows;

/**
 * ol_store_sql_rows_init() - index the group's keys and features.
 * @arena: where the values read are copied.
 *
 * Return: 0, or -1 out of memory. Either way call ol_store_sql_rows_free().
 */
int ol_store_sql_rows_init(ol_store_sql_rows *m, ol_read_group *g, ld_arena *arena);

/**
 * ol_store_sql_rows_put() - one stored row into the cells of every copy of
 * its key: found, event time (the last row seen wins) and, when the feature
 * was asked for, the value (copied into the arena). A row of a key not asked
 * for is ignored; feature may be NULL (no such feature).
 *
 * Return: 0, or -1 when the arena refused the value (response too large).
 */
int ol_store_sql_rows_put(ol_store_sql_rows *m, const void *key, size_t key_len,
                          const char *feature, size_t feature_len, const void *value,
                          size_t value_len, int64_t event_ts_us);

void ol_store_sql_rows_free(ol_store_sql_rows *m);
