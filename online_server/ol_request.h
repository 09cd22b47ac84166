/* ol_request: a GetOnlineFeatures / push / write request and its answer, in
 * one form for both front ends (gRPC and HTTP/JSON). The front end parses
 * into it; ol_serve resolves it against the registry snapshot, reads or
 * writes the store, and hands back an ol_response the front end encodes.
 *
 * Input values are feast.types.Value as the client typed them (gRPC) or as
 * their JSON type suggests (HTTP: integer -> int64_val, non-integer number
 * -> double_val, string -> string_val, bool -> bool_val, null -> unset,
 * array -> the matching *_list_val); ol_serve coerces them to the types the
 * registry declares, as Feast's python_values_to_proto_values does. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "feast/types/Value.pb-c.h"
#include "ld_arena.h"
#include "ld_status.h"

/* One named column of values (an entity, a request-context field, or a
 * column of a push / write dataframe). */
typedef struct ol_column_in {
    const char *name;
    Feast__Types__Value **values;
    size_t n;
} ol_column_in;

typedef struct ol_get_request {
    const char *feature_service; /* NULL or "" when features are given */
    const char *const *features; /* "view:feature" references */
    size_t n_features;
    ol_column_in *entities;
    size_t n_entities;
    ol_column_in *request_context;
    size_t n_request_context;
    int full_feature_names;
} ol_get_request;

/* Feast's FieldStatus */
enum {
    OL_INVALID = 0,
    OL_PRESENT = 1,
    OL_NULL_VALUE = 2,
    OL_NOT_FOUND = 3,
    OL_OUTSIDE_MAX_AGE = 4,
};

/* One output column: entity columns first, then features in request order.
 * For row i: val[i]/val_len[i] are serialized Value bytes (NULL: unset);
 * status[i] a FieldStatus; ts_us[i] the event timestamp (0: epoch).
 * Columns may share one ts_us array (a view's features share their rows'
 * event times, entity columns share zeros): an encoder may render a shared
 * array once and copy it. */
typedef struct ol_column_out {
    const char *name;
    const uint8_t **val;
    size_t *val_len;
    uint8_t *status;
    int64_t *ts_us;
} ol_column_out;

typedef struct ol_get_response {
    ol_column_out *cols;
    size_t n_cols;
    size_t n_rows;
    void *hold; /* what the column names point into (the registry snapshot) */
} ol_get_response;

/* WriteToOnlineStore (feature_view_name) or Push (push_source_name): a
 * column-major dataframe. Timestamp columns arrive as strings (ISO 8601,
 * naive = UTC, as pandas.to_datetime reads them) or as unix_timestamp_val;
 * ol_serve converts them and coerces feature values to the declared types. */
typedef struct ol_write_request {
    const char *feature_view_name; /* WriteToOnlineStore */
    const char *push_source_name;  /* Push */
    ol_column_in *columns;
    size_t n_columns;
    int to_online, to_offline; /* Push "to": online / offline / online_and_offline */
    int allow_registry_cache;
} ol_write_request;
