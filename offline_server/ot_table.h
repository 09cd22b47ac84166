/* ot_table: the offline server's in-memory columnar tables — the shape
 * Arrow IPC decodes into and encodes from, and what the point-in-time join
 * reads and writes. Arrow's memory layout: per column a validity bitmap
 * (bit i set = row i valid; NULL = all valid), fixed-width values, or
 * int32 offsets + data for strings/binary (int64 offsets for large_utf8),
 * or int32 offsets + a child column for lists.
 *
 * A table owns its buffers; ot_table_free releases them. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "ld_buf.h"
#include "ld_status.h"

typedef enum {
    OT_NULL = 0,
    OT_BOOL,
    OT_INT32,
    OT_INT64,
    OT_FLOAT32,
    OT_FLOAT64,
    OT_UTF8,
    OT_LARGE_UTF8,
    OT_BINARY,
    OT_TIMESTAMP, /* int64 in `unit` since the epoch, optional timezone */
    OT_DATE32,    /* int32 days since the epoch */
    OT_LIST,      /* int32 offsets + child column */
} ot_type_id;

typedef enum { OT_SECOND = 0, OT_MILLI = 1, OT_MICRO = 2, OT_NANO = 3 } ot_time_unit;

typedef struct ot_type {
    ot_type_id id;
    ot_time_unit unit;     /* OT_TIMESTAMP */
    char *tz;              /* OT_TIMESTAMP: NULL (naive) or e.g. "UTC" */
    struct ot_type *child; /* OT_LIST: element type */
} ot_type;

typedef struct ot_column {
    char *name;
    ot_type type;
    int64_t length;
    int64_t null_count;
    uint8_t *validity;  /* NULL: no nulls */
    void *values;       /* fixed width: length elements (bools: bit-packed) */
    int32_t *offsets;   /* UTF8/BINARY/LIST: length + 1 */
    int64_t *offsets64; /* LARGE_UTF8 */
    uint8_t *data;      /* UTF8/BINARY/LARGE_UTF8 bytes */
    int64_t data_len;
    struct ot_column *child; /* LIST */
    int not_null;            /* the Arrow field is declared non-nullable (0: nullable) */
} ot_column;

typedef struct ot_table {
    ot_column *cols;
    size_t n_cols;
    int64_t n_rows;
    /* schema-level key/value metadata (e.g. pandas'), kept for round trips */
    char **meta_keys;
    char **meta_values;
    size_t n_meta;
} ot_table;

ot_table *ot_table_new(size_t n_cols, int64_t n_rows);
void ot_table_free(ot_table *t);
const ot_column *ot_table_column(const ot_table *t, const char *name);
int ot_column_valid(const ot_column *c, int64_t row);
/* Timestamp of row i in microseconds since the epoch (any unit). */
int64_t ot_column_ts_us(const ot_column *c, int64_t row);

/* ---- helpers (ot_table.c) ----
 * OT_NULL columns have no buffers: every row is null (ot_column_valid is 0,
 * null_count == length). A LIST column's element type is both type.child
 * and child->type: two owned copies that must agree. */

/* Free what the type owns (tz, child types); the struct itself stays. */
void ot_type_clear(ot_type *t);
/* Deep copy (dst is overwritten, not freed). */
void ot_type_copy(ot_type *dst, const ot_type *src);
int ot_type_equal(const ot_type *a, const ot_type *b);
/* Arrow's spelling of a type: "int64", "timestamp[us, tz=UTC]",
 * "list<item: double>" ... appended to out. */
void ot_type_format(const ot_type *t, struct ld_buf *out);
/* Free what the column owns (name, type, buffers, child); the struct stays. */
void ot_column_clear(ot_column *c);
/* Number of null rows in [off, off + n) (n rows of an OT_NULL column). */
int64_t ot_column_count_nulls(const ot_column *c, int64_t off, int64_t n);
/* Append a schema-level metadata pair (copied). */
void ot_table_add_meta(ot_table *t, const char *key, const char *value);
/* The value of a schema-level metadata key, or NULL. */
const char *ot_table_meta(const ot_table *t, const char *key);

/* Validity bitmap helpers (LSB first, as Arrow). */
static inline int ot_bit_get(const uint8_t *bits, int64_t i)
{
    return (bits[i >> 3] >> (i & 7)) & 1;
}

static inline void ot_bit_set(uint8_t *bits, int64_t i, int v)
{
    if (v)
        bits[i >> 3] |= (uint8_t)(1u << (i & 7));
    else
        bits[i >> 3] &= (uint8_t) ~(1u << (i & 7));
}
