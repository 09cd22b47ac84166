/* ot_ipc: Arrow IPC (streaming format) encoder and decoder for ot_table,
 * written from Arrow's format specification (Schema.fbs, Message.fbs and the
 * "Serialization and Interprocess Communication" section of Columnar.rst).
 *
 * Types: null, bool, int32, int64, float32, float64, utf8, large_utf8,
 * binary, timestamp (unit + timezone), date32, list<T> (T any of these).
 * On read, also: int8/int16/uint8/uint16 (widened to int32), uint32 (to
 * int64), uint64 (to int64 when every value fits), and dictionary-encoded
 * fields (DictionaryBatch messages, delta and replacement; signed or
 * unsigned 8/16/32/64-bit indices), decoded into plain columns of the
 * dictionary's value type. Compressed bodies (LZ4_FRAME, ZSTD) are decoded.
 * Anything else (decimal, struct, big-endian data ...) is refused with
 * INVALID_ARGUMENT naming the field and the type.
 *
 * The decoder treats every byte as hostile: all flatbuffer references,
 * vectors, buffer regions, offsets and dictionary indices are bounds-checked,
 * nesting is limited, the number of columns is at most OT_IPC_MAX_COLUMNS and
 * the decoded data at most a byte budget; a malformed stream yields
 * GRPC_STATUS_INVALID_ARGUMENT (RESOURCE_EXHAUSTED for the budget). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "ld_buf.h"
#include "ld_status.h"
#include "ot_table.h"

#define OT_IPC_MAX_COLUMNS 10000
#define OT_IPC_MAX_DEPTH   16 /* list nesting */
/* Default limit on the decoded size of one stream (column buffers,
 * dictionaries, decompressed buffers): 4 GiB. */
#define OT_IPC_DEFAULT_MAX_BYTES ((int64_t)4 << 30)

typedef enum {
    OT_IPC_UNCOMPRESSED = -1,
    OT_IPC_LZ4_FRAME = 0, /* Arrow's CompressionType values */
    OT_IPC_ZSTD = 1,
} ot_ipc_codec;

/* ---- decoding ---- */

/* Decode a whole IPC stream (messages framed as 0xFFFFFFFF, int32 length,
 * Message flatbuffer, padding, body; the pre-0.15 framing without the
 * 0xFFFFFFFF marker is accepted too; the end-of-stream marker, or the end of
 * the data, ends it). All record batches are concatenated into one table.
 * Returns 0 and *out (free with ot_table_free), or -1 and st. */
int ot_ipc_read_stream(const uint8_t *data, size_t len, ot_table **out, ld_status *st);
/* The same with an explicit budget for the decoded size. */
int ot_ipc_read_stream_ex(const uint8_t *data, size_t len, int64_t max_bytes, ot_table **out,
                          ld_status *st);

/* Decode an Arrow IPC file (Feather v2: "ARROW1" magic, stream, footer)
 * through its footer: the schema and every dictionary and record batch the
 * footer lists. Data without the leading magic is read as a stream; a file
 * whose footer is missing or unusable falls back to its stream part. */
int ot_ipc_read_file(const uint8_t *data, size_t len, ot_table **out, ld_status *st);
int ot_ipc_read_file_ex(const uint8_t *data, size_t len, int64_t max_bytes, ot_table **out,
                        ld_status *st);
/* The same on a file by path (NOT_FOUND if it cannot be opened), read one
 * message at a time with pread: the file format's blocks through its footer,
 * a stream (or a file without a usable footer) message after message. The
 * memory is the decoded table plus the largest message. */
int ot_ipc_read_path(const char *path, ot_table **out, ld_status *st);
/* The same decoding only the columns named in names[0..n) (see
 * ot_ipc_reader_select): of the other fields' buffers nothing is read from
 * the file, copied or decompressed, and a dictionary that only they use is
 * not read either. names == NULL: every column. */
int ot_ipc_read_path_cols(const char *path, const char *const *names, size_t n, ot_table **out,
                          ld_status *st);

/* Incremental decoding for Arrow Flight, whose FlightData carries each
 * message's flatbuffer (data_header, without the framing) and its body
 * (data_body) separately: feed them in order (Schema first). A message with
 * an empty header (hlen == 0, e.g. app_metadata only) is skipped. Neither
 * pointer needs any alignment; the reader copies what it keeps. */
typedef struct ot_ipc_reader ot_ipc_reader;

ot_ipc_reader *ot_ipc_reader_new(void);
void ot_ipc_reader_set_max_bytes(ot_ipc_reader *r, int64_t max_bytes);
/* Decode only the top-level fields named in names[0..n) (copied; NULL
 * entries ignored): the others' buffers are stepped over without being
 * looked at, copied or decompressed, and DictionaryBatches that only they
 * use are skipped. The table has the selected columns in the schema's order
 * (a name the schema lacks selects nothing). names == NULL selects every
 * field (the default). Call before the Schema is fed. */
void ot_ipc_reader_select(ot_ipc_reader *r, const char *const *names, size_t n);
int ot_ipc_reader_feed(ot_ipc_reader *r, const uint8_t *header, size_t hlen, const uint8_t *body,
                       size_t blen, ld_status *st);
/* Whether a Schema message has been fed. */
int ot_ipc_reader_has_schema(const ot_ipc_reader *r);
/* The table of every batch fed so far (a schema-only stream gives a table
 * with no rows). The reader is left empty: free it afterwards. NULL and st
 * if no schema was fed or an earlier feed failed. */
ot_table *ot_ipc_reader_finish(ot_ipc_reader *r, ld_status *st);
void ot_ipc_reader_free(ot_ipc_reader *r);

/* ---- encoding ----
 * Each function resets its output buffers and fills them. Buffers in the
 * body are 8-byte aligned and padded, the body length a multiple of 8;
 * validity bitmaps are written only for columns with nulls in the range. */

/* The Schema Message flatbuffer (Flight's data_header of the first
 * FlightData; no body). Fields' names, types, nullability (!not_null) and
 * the table's metadata. Returns 0, or -1 if a column has an unknown type. */
int ot_ipc_write_schema(const ot_table *t, ld_buf *header);

/* A RecordBatch Message flatbuffer (header) and its body for rows
 * [row_offset, row_offset + n_rows), uncompressed. */
int ot_ipc_write_batch(const ot_table *t, int64_t row_offset, int64_t n_rows, ld_buf *header,
                       ld_buf *body, ld_status *st);
/* The same, compressing each buffer with codec (a buffer that would not
 * shrink is stored as is, with the -1 length prefix). */
int ot_ipc_write_batch_ex(const ot_table *t, int64_t row_offset, int64_t n_rows, ot_ipc_codec codec,
                          ld_buf *header, ld_buf *body, ld_status *st);

/* A record batch body described rather than copied, for senders that can
 * hand out scattered buffers (Flight's DoGet): the body is the
 * concatenation of spans; a span with p != NULL references memory of the
 * table (or static zeros for padding) and stays valid as long as the table
 * does; p == NULL means bytes [off, off + len) of own (rebased offsets,
 * shifted bitmaps). len is the body's total length (a multiple of 8). */
typedef struct ot_ipc_span {
    const uint8_t *p;
    size_t off, len;
} ot_ipc_span;

typedef struct ot_ipc_body {
    ot_ipc_span *spans;
    size_t n, cap;
    ld_buf own;
    size_t len;
} ot_ipc_body;

/* ot_ipc_write_batch (uncompressed) with the body as spans; body is reset
 * and reused (zero-initialize it first; free with ot_ipc_body_free). */
int ot_ipc_write_batch_spans(const ot_table *t, int64_t row_offset, int64_t n_rows, ld_buf *header,
                             ot_ipc_body *body, ld_status *st);
void ot_ipc_body_free(ot_ipc_body *b);

/* A whole stream: schema, record batches of at most batch_rows rows (<= 0:
 * one batch; a table without rows gets no batch), end-of-stream marker. */
int ot_ipc_write_stream(const ot_table *t, int64_t batch_rows, ld_buf *out, ld_status *st);
int ot_ipc_write_stream_ex(const ot_table *t, int64_t batch_rows, ot_ipc_codec codec, ld_buf *out,
                           ld_status *st);

/* Frame one message for a stream: continuation marker, metadata length,
 * header padded to 8 bytes, body (appended to out). */
void ot_ipc_frame(ld_buf *out, const uint8_t *header, size_t hlen, const uint8_t *body,
                  size_t blen);
