/* ol_values: turning client values into the types the registry declares
 * (as Feast's python_values_to_proto_values does), and the few facts about
 * serialized Values the serving path needs without decoding them. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "feast/types/Value.pb-c.h"
#include "ld_arena.h"
#include "ld_status.h"

/* A Value of the declared ValueType built from `in` (which may be typed as
 * the client typed it, e.g. JSON numbers as int64/double, or strings from
 * GrpcFeatureServer.Push's string map). An unset or null input gives an
 * unset Value. `what` names the column for error messages. */
int ol_coerce(ld_arena *a, const Feast__Types__Value *in, int declared, const char *what,
              Feast__Types__Value **out, ld_status *st);

/* Serialized Value bytes that stand for "no value" (unset or null_val):
 * no bytes, or null_val (field 19, varint) = 0x98 0x01 <enum>. Inline: it
 * runs once per cell of a response. */
static inline int ol_value_bytes_null(const uint8_t *p, size_t n)
{
    return n == 0 || (n >= 2 && p[0] == 0x98 && p[1] == 0x01);
}

/* Parse an ISO 8601 timestamp ("2021-04-12T10:59:42", "2021-04-12 10:59:42.123456",
 * "...Z", "...+02:00"; naive means UTC) into µs since the epoch. */
int ol_parse_timestamp(const char *s, int64_t *us);

/* A timestamp column value (ISO string or unix_timestamp_val seconds) in µs. */
int ol_value_timestamp(const Feast__Types__Value *v, const char *what, int64_t *us, ld_status *st);

/* Feast's helpers.extract_text_and_num for the SQL stores' value_text and
 * value_num columns: a string as is; int32/int64/double/float/bool as
 * Python's str() prints them, with the number alongside. */
typedef struct ol_value_text {
    const char *text; /* NULL: SQL NULL */
    size_t len;
    int has_num;
    double num;
    char buf[32]; /* >= LD_DOUBLE_REPR_MAX */
} ol_value_text;

/* From serialized Value bytes. *owned (may be NULL) is the decoded Value the
 * text points into: the caller frees it with protobuf_c_message_free_unpacked.
 * 0, or -1 when the bytes do not decode. */
int ol_value_text_of(const uint8_t *b, size_t n, ol_value_text *t, Feast__Types__Value **owned);
