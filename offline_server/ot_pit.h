/* ot_pit: Feast's point-in-time-correct join of an entity table against
 * feature views.
 *
 * For every entity row and every view, the matched feature row is the one
 * whose join keys equal the row's and whose event timestamp is the greatest
 * with
 *
 *     entity_ts - ttl <= event_ts <= entity_ts          (both inclusive)
 *
 * (ttl 0 = no lower bound). Ties on event_ts go to the greatest created
 * timestamp when the view has a created column; a null created timestamp
 * ranks below every non-null one. Rows still tied after that (same keys,
 * event_ts and created_ts) resolve to the one that comes LAST in the source
 * table ("the later write wins"). No candidate -> every feature of the view is
 * null for that row. This is the semantics of Feast's SQL offline stores
 * (PostgreSQL template, docs §2 of feast-protocols.md), not Dask's: every
 * entity row is kept, duplicates included, and keeps its position.
 *
 * Nulls: a null join key (entity or feature side) never matches; a null
 * entity timestamp gives null features; feature rows with a null event
 * timestamp are ignored.
 *
 * Types: join keys are compared by value across INT32/INT64 (an int32 entity
 * column joins an int64 source column) and by bytes across
 * UTF8/LARGE_UTF8/BINARY; an integer key against a string key is an error.
 * Timestamp columns are OT_TIMESTAMP of any unit (tz-aware and naive alike are
 * instants since the epoch, naive meaning UTC as in Feast) or OT_DATE32. Entity
 * and event timestamps are compared exactly, in nanoseconds when either side
 * is in nanoseconds and in microseconds otherwise; the created column is only
 * compared with itself, in its own unit.
 *
 * Algorithm (sort-merge as-of): per view, every usable row's composite join
 * key is hashed and the rows are radix-partitioned by hash, each partition
 * receiving a copy of its rows' (index, hash, timestamps); inside a partition
 * a hash table with exact key comparison assigns a group id per distinct key,
 * rows are counting-sorted by group and each group by (event_ts, created_ts,
 * row) — entity rows by entity_ts — and one linear merge per group picks each
 * entity row's match. (view, partition) pairs run on `threads` threads, the
 * views in waves whose partitioned copies fit 64 MiB (a bigger view runs
 * alone). Memory: about 20-28 bytes per row of the views of one wave for the
 * partitioned copies, 8 bytes per entity row and view for the match, scratch
 * for the partitions in flight, and the output — or, with ot_pit_plan, only
 * the pieces of it the caller gathers at a time; the source tables are not
 * copied (only the gathered output values are). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "ld_status.h"
#include "ot_table.h"

/* One feature view (projection) in the join. Names refer to columns of
 * `source` (field mapping already resolved by the caller) except
 * `entity_keys`, which name columns of the entity table (join-key map
 * applied). */
typedef struct ot_pit_view {
    const ot_table *source;
    const char *const *join_keys;   /* n_keys source columns */
    const char *const *entity_keys; /* n_keys entity columns, same order */
    size_t n_keys;                  /* 0: entity-less view, every row is one group */
    const char *event_ts;           /* source timestamp column */
    const char *created_ts;         /* NULL if none */
    int64_t ttl_us;                 /* 0 = unbounded; negative is an error */
    const char *const *features;    /* n_features source columns to output */
    const char *const *out_names;   /* n_features output names (feature or view__feature) */
    size_t n_features;
} ot_pit_view;

/**
 * ot_pit_join() - point-in-time join of @entities against @n_views views.
 * @entities:      the entity rows; @entity_ts_col names its timestamp column
 * @threads:       worker threads (<= 1: run on the caller's thread)
 * @out:           on success a new table the caller frees with ot_table_free:
 *                 every entity column (same names, types, values and ROW ORDER
 *                 as @entities), then each view's features in order, typed as
 *                 their source columns, null where nothing matched.
 *
 * Output names must be unique across entity columns and features
 * (FeatureNameCollisionError otherwise). Tables are limited to 2^32-1 rows.
 *
 * Return: 0, or -1 with @st set (INVALID_ARGUMENT for a bad spec: unknown
 * column, unsupported or mismatched type, negative ttl; RESOURCE_EXHAUSTED
 * for out of memory or too many rows).
 */
int ot_pit_join(const ot_table *entities, const char *entity_ts_col, const ot_pit_view *views,
                size_t n_views, int threads, ot_table **out, ld_status *st);

/* A result described rather than built, to be gathered in pieces (DoGet
 * streams it batch by batch): output column k is named names[k] and holds,
 * for output row i, row idx[k][i] of src[k] (-1: null), or row i of src[k]
 * when idx[k] is NULL. The columns it points to must outlive it. */
typedef struct ot_gather {
    int64_t n_rows;
    size_t n_cols;
    const ot_column **src;
    const int64_t **idx;
    const char **names;
} ot_gather;

/**
 * ot_gather_rows() - rows [@off, @off + @n) of @g as a new table (free with
 * ot_table_free), its columns gathered on up to @threads threads.
 *
 * Return: 0, or -1 with @st set (INVALID_ARGUMENT for rows outside the
 * result, RESOURCE_EXHAUSTED).
 */
int ot_gather_rows(const ot_gather *g, int64_t off, int64_t n, int threads, ot_table **out,
                   ld_status *st);

/**
 * ot_pit_plan() - ot_pit_join without building the output: the match phase,
 * and in *@out the output ot_pit_join would build (same columns, names and
 * rows), to gather with ot_gather_rows. The plan owns the matches (8 bytes
 * per entity row and view) and points into @entities and the views' sources,
 * which must outlive it. Free with ot_pit_plan_free.
 *
 * Return: 0, or -1 with @st set (as ot_pit_join).
 */
int ot_pit_plan(const ot_table *entities, const char *entity_ts_col, const ot_pit_view *views,
                size_t n_views, int threads, ot_gather **out, ld_status *st);
void ot_pit_plan_free(ot_gather *g);

/**
 * ot_pit_match() - the join without building the output: for each view v
 * and entity row i, @match[v][i] is the matched source row, or -1.
 * @match: n_views arrays of entities->n_rows elements, allocated by the caller.
 *
 * Return: 0, or -1 with @st set (as ot_pit_join).
 */
int ot_pit_match(const ot_table *entities, const char *entity_ts_col, const ot_pit_view *views,
                 size_t n_views, int threads, int64_t *const *match, ld_status *st);

/**
 * ot_column_take() - a new column named @name with rows @idx[0..n) of @src
 * (idx -1 gives a null). Every type of ot_table.h is supported, lists
 * recursively. The result has the layout ot_table_free expects.
 *
 * Return: 0, or -1 with @st set (RESOURCE_EXHAUSTED).
 */
int ot_column_take(const ot_column *src, const int64_t *idx, int64_t n, const char *name,
                   ot_column *dst, ld_status *st);
