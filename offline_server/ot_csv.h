/* ot_csv: CSV files into ot_tables (file offline sources, entity tables,
 * test data).
 *
 * Format: RFC 4180 — a header row of column names, comma separator, fields
 * optionally in double quotes ("" inside quotes is one quote; quoted fields
 * may span lines), records ending in LF, CRLF or CR, the last one optionally
 * unterminated. A leading UTF-8 byte-order mark and blank lines are skipped.
 * Every record must have as many fields as the header.
 *
 * Nulls: an empty unquoted field is null. A quoted empty field ("") is the
 * empty string in a string column and null in any other.
 *
 * Types are inferred per column from all its non-null values: the first of
 *   int64     [+-]digits that fit in 64 bits
 *   float64   decimal or exponent notation, nan, inf, infinity (any case)
 *   timestamp ISO 8601: YYYY-MM-DD[( |T)HH:MM[:SS[.fraction]]][ ][Z|±HH[:MM]|±HHMM]
 *             -> OT_TIMESTAMP in µs (ns with ts_nanos; finer digits are
 *             truncated), tz "UTC" and converted to UTC when any value of
 *             the column carries Z or an offset (naive values in such a
 *             column are taken as UTC, as Feast does), naive otherwise
 *   bool      true / false (any case)
 *   utf8      anything else (large_utf8 beyond 2 GiB of text)
 * that accepts every value; an all-null column is utf8.
 *
 * The file is mapped, not read into memory, and parsed twice: once to infer
 * types and sizes, once to fill the columns; the pages already parsed are
 * handed back as each pass goes (MADV_DONTNEED every 8 MiB), so peak memory
 * is the result plus a few MiB of the file. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ld_status.h"
#include "ot_table.h"

typedef struct ot_csv_opts {
    size_t max_record; /* bytes per record, quoted newlines included; 0: 1 MiB */
    size_t max_cols;   /* 0: 4096 */
    int64_t max_rows;  /* 0: no limit */
    bool ts_nanos;     /* timestamps in ns (default µs) */
    /* Read only the columns named columns[0..n_columns) (header names;
     * NULL entries ignored), in the file's order; the others are tokenized
     * (records need it) and their names checked, but never typed, converted
     * or kept. NULL: every column. */
    const char *const *columns;
    size_t n_columns;
} ot_csv_opts;

/**
 * ot_csv_read() - read the CSV file at @path.
 * @o: limits and options, NULL for the defaults
 * @out: on success a new table, freed with ot_table_free
 *
 * Return: 0, or -1 with @st set: NOT_FOUND (no such file), INTERNAL (I/O),
 * INVALID_ARGUMENT ("path:line: ..." for malformed input, a wrong field
 * count, duplicate or empty column names), RESOURCE_EXHAUSTED (a limit or
 * out of memory).
 */
int ot_csv_read(const char *path, const ot_csv_opts *o, ot_table **out, ld_status *st);

/**
 * ot_csv_parse() - as ot_csv_read, from @len bytes at @buf; @name prefixes
 * error messages.
 */
int ot_csv_parse(const char *buf, size_t len, const char *name, const ot_csv_opts *o,
                 ot_table **out, ld_status *st);

/**
 * ot_csv_write() - write @t to @f in the format ot_csv_read reads back:
 * header, then one record per row; null is an empty field, the empty string
 * is ""; fields with a comma, quote, CR or LF are quoted. Integers in
 * decimal, floats in the shortest form that reads back to the same value
 * (nan, inf, -inf), bools true/false, timestamps
 * YYYY-MM-DDTHH:MM:SS[.ffffff | .fffffffff] (fraction only when non-zero;
 * "Z" appended when the column has a timezone; values are UTC), date32
 * YYYY-MM-DD, binary as raw bytes, lists as [a,b,...].
 *
 * Return: 0, or -1 with @st set (INTERNAL: write error).
 */
int ot_csv_write(const ot_table *t, FILE *f, ld_status *st);

/**
 * ot_csv_write_rows() - as ot_csv_write without the header row: the records
 * to append to a file that has one.
 */
int ot_csv_write_rows(const ot_table *t, FILE *f, ld_status *st);
