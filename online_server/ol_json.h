/* ol_json: the JSON codec of the HTTP front end.
 *
 * Requests are parsed the way Feast's Python feature server reads them:
 * Starlette's json.loads (CPython 3.10-3.12 _json scanner) and then FastAPI's
 * pydantic validation. So the same documents are accepted (NaN, Infinity,
 * integers of any size, duplicate keys with the last value winning in the
 * first key's place) and the same documents are refused with the same
 * FastAPI 422 body ({"detail":[{"type":"json_invalid","loc":["body",<pos>],
 * ...}]} with Python's message and code-point position, or pydantic's
 * "missing" / "list_type" / "string_type" / "bool_parsing" ... items).
 *
 * Everything a request produces (the tree, the ol_get_request /
 * ol_write_request and their Values) lives in the caller's arena; the parser
 * makes no other allocation except a scratch stack it frees before returning.
 *
 * Responses are written straight into one ld_buf in the bytes Starlette's
 * JSONResponse sends: json.dumps(ensure_ascii=False, allow_nan=False,
 * separators=(",", ":")). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "ld_arena.h"
#include "ld_buf.h"
#include "ld_status.h"
#include "ol_request.h"

/*==== The parsed tree ====*/

typedef enum {
    OL_JSON_NULL = 0,
    OL_JSON_FALSE,
    OL_JSON_TRUE,
    OL_JSON_INT,    /* u.i */
    OL_JSON_BIGINT, /* an integer outside int64: u.s holds its n digits (with '-') */
    OL_JSON_REAL,   /* u.d; also NaN, Infinity, -Infinity */
    OL_JSON_STRING, /* u.s: n bytes of UTF-8, NUL-terminated; has_nul if it holds U+0000 */
    OL_JSON_ARRAY,  /* u.items[n] */
    OL_JSON_OBJECT, /* u.members[n], keys unique, in first-appearance order */
} ol_json_type;

typedef struct ol_json_member ol_json_member;

typedef struct ol_json {
    uint8_t type; /* ol_json_type */
    uint8_t has_nul;
    uint32_t n;
    union {
        int64_t i;
        double d;
        const char *s;
        struct ol_json *items;
        ol_json_member *members;
    } u;
} ol_json;

struct ol_json_member {
    const char *key; /* NUL-terminated UTF-8 */
    uint32_t key_len;
    uint8_t key_has_nul;
    ol_json val;
};

typedef enum {
    OL_JSON_E_SYNTAX = 1, /* Python's JSONDecodeError: FastAPI answers 422 json_invalid */
    OL_JSON_E_BODY,       /* not UTF-8, or nested deeper than allowed: FastAPI's 400 */
    OL_JSON_E_LIMIT,      /* more values than allowed, or out of arena memory: 413 */
} ol_json_error_kind;

typedef struct ol_json_error {
    ol_json_error_kind kind;
    size_t pos;   /* JSONDecodeError.pos: code points from the start (after a BOM) */
    char msg[96]; /* JSONDecodeError.msg, or what was exceeded */
} ol_json_error;

typedef struct ol_json_limits {
    int max_depth;     /* nesting of arrays/objects; 0: 64 */
    size_t max_values; /* values in the whole document; 0: 1,000,000 */
} ol_json_limits;

/**
 * ol_json_parse() - parse n bytes of a request body as Python's json.loads
 * does when given bytes (a UTF-8 BOM is skipped).
 *
 * Return: 0 with *out set (in a), or -1 with err filled.
 */
int ol_json_parse(const char *p, size_t n, ld_arena *a, const ol_json_limits *lim, ol_json **out,
                  ol_json_error *err);

/** ol_json_get() - the member named key of an object, NULL if absent or v is no object. */
const ol_json *ol_json_get(const ol_json *v, const char *key);

/** ol_json_write() - append v as Python's compact json.dumps(ensure_ascii=False); non-finite
 *  reals (which Starlette would refuse) are written as null. */
void ol_json_write(ld_buf *out, const ol_json *v);

/*==== Requests ====*/

/**
 * ol_json_value() - a feast.types.Value for one JSON value, typed by its JSON
 * type: null -> unset, bool -> bool_val, integer -> int64_val, other number ->
 * double_val, string -> string_val; an array of those -> the matching
 * *_list_val (integers mixed with reals -> double_list_val, [] ->
 * int64_list_val with no elements), an array of arrays -> list_val, an object
 * -> map_val, an array of objects -> map_list_val.
 *
 * Return: 0, or -1 with st set: INVALID_ARGUMENT (class builtins.ValueError)
 * for integers outside int64, strings holding U+0000, nulls inside arrays or
 * arrays mixing types; RESOURCE_EXHAUSTED when the arena is full.
 */
int ol_json_value(const ol_json *v, ld_arena *a, const char *what, Feast__Types__Value **out,
                  ld_status *st);

/**
 * ol_json_decode_get() - the body of POST /get-online-features as an
 * ol_get_request: {"entities": {name: [v, ...]}, "features": [...],
 * "feature_service": str|null, "full_feature_names": bool,
 * "include_feature_view_version_metadata": bool} and, as larder's extension,
 * "request_context": {name: [v, ...]}. Other keys are ignored. body is NULL
 * when the request had no body.
 *
 * Return: 0, or -1 with st set. When the body fails FastAPI's validation,
 * the pydantic error items ("{...},{...}") are appended to detail and st is
 * INVALID_ARGUMENT; otherwise detail is left alone (e.g. entity columns of
 * different lengths: INVALID_ARGUMENT, builtins.ValueError, Feast's message).
 */
int ol_json_decode_get(const ol_json *body, ld_arena *a, ol_get_request *req, ld_buf *detail,
                       ld_status *st);

/**
 * ol_json_decode_write() - the body of POST /push (push != 0:
 * {"push_source_name", "df", "allow_registry_cache", "to",
 * "transform_on_write"}) or POST /write-to-online-store
 * ({"feature_view_name", "df", "allow_registry_cache", "transform_on_write"})
 * as an ol_write_request. df is {column: [cells...] | scalar}; scalars are
 * broadcast to the length of the array columns as pandas.DataFrame does (the
 * same Value is shared by every row).
 *
 * Return: as ol_json_decode_get().
 */
int ol_json_decode_write(const ol_json *body, int push, ld_arena *a, ol_write_request *req,
                         ld_buf *detail, ld_status *st);

/*==== Error bodies ====*/

/* Append one FastAPI validation item {"type":"json_invalid","loc":["body",pos],
 * "msg":"JSON decode error","input":{},"ctx":{"error":msg}} to detail. */
void ol_json_detail_decode_error(ld_buf *detail, const ol_json_error *e);
/* Append the item FastAPI gives for a body that is not JSON by its
 * Content-Type: {"type":"model_attributes_type","loc":["body"],...,"input":"<body>"}. */
void ol_json_detail_not_json(ld_buf *detail, const char *body, size_t n);
/* {"detail":[<detail>]} */
void ol_json_detail_body(ld_buf *out, const ld_buf *detail);

/**
 * ol_json_error_body() - Feast's HTTP error body for st: a JSON string literal
 * holding Feast's error JSON ("{\"module\": \"feast.errors\", ...}"), which
 * is what JSONResponse(content=e.to_error_detail()) sends for a FeastError.
 * For a Python builtin exception (err_module "builtins") the literal holds
 * only the message, as Feast answers json.dumps(str(exc)).
 */
void ol_json_error_body(const ld_status *st, ld_buf *out);

/*==== Responses ====*/

/* Longest ol_json_timestamp() output, NUL included. */
#define OL_JSON_TS_MAX 40

/**
 * ol_json_timestamp() - an event timestamp (µs since the epoch) as Feast's
 * feature_server_utils._timestamp_to_str writes it: "1970-01-01T00:00:00Z"
 * for 0, else "YYYY-MM-DDTHH:MM:SS" plus ".mmm" / ".uuuuuu" when the
 * fraction needs it, plus "Z".
 *
 * Return: the length written (NUL-terminated), or 0 when the year is outside
 * 1..9999 (Python's datetime raises ValueError).
 */
size_t ol_json_timestamp(int64_t us, char out[OL_JSON_TS_MAX]);

/**
 * ol_json_value_bytes() - append a serialized feast.types.Value as
 * ld_value_to_json() renders it (n == 0: null). Common scalars are rendered
 * straight from the wire bytes; others are unpacked into scratch (which the
 * caller may reset afterwards).
 *
 * Return: 0, or -1 with st set (out unchanged): INTERNAL builtins.ValueError
 * for NaN/Infinity (Starlette's allow_nan=False), INTERNAL for bytes that do
 * not decode.
 */
int ol_json_value_bytes(ld_buf *out, const uint8_t *p, size_t n, ld_arena *scratch, ld_status *st);

/**
 * ol_json_encode_get() - append the /get-online-features response:
 * {"results":[{"values":[...],"statuses":[...],"event_timestamps":[...]},...],
 * "metadata":{"feature_names":[...]}} (event_timestamps is left out when
 * there are no rows, as Feast does).
 *
 * Return: 0, or -1 with st set and out truncated back to its length on entry.
 */
int ol_json_encode_get(const ol_get_response *r, ld_buf *out, ld_status *st);
