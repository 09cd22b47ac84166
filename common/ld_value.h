/* ld_value: helpers for feast.types.Value (protoc-c Feast__Types__Value).
 *
 * Constructors allocate the Value and everything it points to from an arena,
 * copying the caller's data, so the result lives exactly as long as the call
 * that built it. They return NULL only when the arena's byte limit is hit.
 *
 * A Value's oneof case number is also its Feast ValueType number (BYTES=1,
 * STRING=2, ... ZONED_TIMESTAMP=48), which is why the case enum is used as
 * the type throughout. A NULL Value pointer is read as an unset Value. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "feast/types/Value.pb-c.h"
#include "ld_arena.h"
#include "ld_buf.h"
#include "ld_status.h"

typedef Feast__Types__Value__ValCase ld_value_case;

/* Scalars. ld_value_new() is an unset Value (VAL_NOT_SET). */
Feast__Types__Value *ld_value_new(ld_arena *a);
Feast__Types__Value *ld_value_null(ld_arena *a); /* null_val = NULL */
Feast__Types__Value *ld_value_int32(ld_arena *a, int32_t v);
Feast__Types__Value *ld_value_int64(ld_arena *a, int64_t v);
Feast__Types__Value *ld_value_double(ld_arena *a, double v);
Feast__Types__Value *ld_value_float(ld_arena *a, float v);
Feast__Types__Value *ld_value_bool(ld_arena *a, int v);
Feast__Types__Value *ld_value_unix_ts(ld_arena *a, int64_t seconds);
/* s need not be NUL-terminated; the copy is. len excludes any NUL. */
Feast__Types__Value *ld_value_string(ld_arena *a, const char *s, size_t len);
Feast__Types__Value *ld_value_bytes(ld_arena *a, const void *p, size_t len);

/* Lists (the *_list_val cases). n may be 0; the elements are copied. */
Feast__Types__Value *ld_value_int32_list(ld_arena *a, const int32_t *v, size_t n);
Feast__Types__Value *ld_value_int64_list(ld_arena *a, const int64_t *v, size_t n);
Feast__Types__Value *ld_value_double_list(ld_arena *a, const double *v, size_t n);
Feast__Types__Value *ld_value_float_list(ld_arena *a, const float *v, size_t n);
Feast__Types__Value *ld_value_bool_list(ld_arena *a, const protobuf_c_boolean *v, size_t n);
Feast__Types__Value *ld_value_unix_ts_list(ld_arena *a, const int64_t *v, size_t n);
/* NUL-terminated strings. */
Feast__Types__Value *ld_value_string_list(ld_arena *a, const char *const *v, size_t n);
Feast__Types__Value *ld_value_bytes_list(ld_arena *a, const ProtobufCBinaryData *v, size_t n);

/** ld_value_case_of() - the oneof case of v; VAL_NOT_SET for NULL. */
static inline ld_value_case ld_value_case_of(const Feast__Types__Value *v)
{
    return v ? v->val_case : FEAST__TYPES__VALUE__VAL__NOT_SET;
}

/** ld_value_is_null() - true for an unset Value (or NULL) and for null_val. */
static inline int ld_value_is_null(const Feast__Types__Value *v)
{
    ld_value_case c = ld_value_case_of(v);
    return c == FEAST__TYPES__VALUE__VAL__NOT_SET || c == FEAST__TYPES__VALUE__VAL_NULL_VAL;
}

/**
 * ld_value_type_name() - the name of Feast's ValueType for a oneof case.
 *
 * Uses Feast's Python enum names (feast.value_type.ValueType): "INT64",
 * "STRING_LIST", "NULL", and "UNKNOWN" for VAL_NOT_SET (the proto enum calls
 * 0 "INVALID"). Unknown numbers give "UNKNOWN". Never NULL.
 */
const char *ld_value_type_name(ld_value_case c);

/**
 * ld_value_compare() - a total order over Values: by oneof case number first,
 * then by value.
 *
 * Integers and bools compare numerically; floats and doubles numerically with
 * -0.0 < +0.0 and every NaN equal to each other and above +inf; strings and
 * bytes by bytes (= code-point order for UTF-8), shorter first on a tie;
 * lists and sets element by element, then by length; maps and structs as their
 * entries sorted by key (a repeated key counts once, the last one, as protobuf
 * does); zoned timestamps by instant, then zone. Unset sorts first.
 *
 * Return: <0, 0 or >0. Equal (0) exactly when ld_value_equal() is true.
 */
int ld_value_compare(const Feast__Types__Value *a, const Feast__Types__Value *b);

/**
 * ld_value_equal() - deep equality for every oneof case.
 *
 * Floats are equal when bitwise equal or both NaN (so a round trip can be
 * asserted; -0.0 and +0.0 differ). Map and struct entries are compared as
 * maps, in any order. An unset Value and null_val are different.
 */
int ld_value_equal(const Feast__Types__Value *a, const Feast__Types__Value *b);

/* Longest output of ld_value_double_repr(), NUL included. */
#define LD_DOUBLE_REPR_MAX 32

/**
 * ld_value_double_repr() - format d exactly as Python's repr(float) does.
 *
 * The shortest digits that read back as d, in fixed notation when
 * 1e-4 <= |d| < 1e16 (always with a fraction: "1.0") and otherwise in
 * exponent form with a signed two-digit-minimum exponent ("1e+16",
 * "1.5e-07"). NaN and infinities give "nan", "inf", "-inf".
 *
 * Return: the length written to out (NUL-terminated).
 */
size_t ld_value_double_repr(double d, char out[LD_DOUBLE_REPR_MAX]);

/**
 * ld_value_to_json() - append v as Feast's Python feature server renders a
 * value in a /get-online-features response (feature_server_utils.
 * _value_to_native, then json.dumps(ensure_ascii=False, allow_nan=False)).
 *
 * Unset and null_val give null; numbers are bare (int64 too); floats are
 * widened to double and printed by ld_value_double_repr(); bytes are base64;
 * lists and sets are arrays; list_val/set_val nest; map_val/struct_val are
 * objects (entries in stored order); scalar_map_val is null (as in Feast);
 * zoned timestamps are ISO-8601 strings in their zone, as isoformat() writes
 * them ("2021-12-31T16:00:00-07:00"): an empty, unknown or UTC-alias zone is
 * UTC, and fixed offsets such as "-07:00" or "UTC+05:30" are applied.
 *
 * Return: 0, or -1 with st set, out left as it was: INTERNAL for NaN or
 * infinite floats (Python's json.dumps(allow_nan=False) refuses them, so
 * Feast answers 500) and for zoned timestamps outside years 1..9999 or with
 * an offset of a day or more; UNIMPLEMENTED for a zone from the IANA
 * database other than UTC's aliases (it would need a TZif reader).
 */
int ld_value_to_json(const Feast__Types__Value *v, ld_buf *out, ld_status *st);
