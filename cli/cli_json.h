/* cli_json: protobuf-c messages as proto3 JSON, the way Python's
 * google.protobuf.json_format.MessageToJson writes them (what `feast
 * registry-dump` prints): lowerCamelCase field names, fields at their
 * default value left out, enums by name, 64-bit integers as strings, bytes
 * as base64, Timestamp as RFC 3339 ("2024-01-01T00:00:00Z", 0/3/6/9
 * fraction digits), Duration as "86400s", maps as objects.
 *
 * Known difference: floats are written by jansson ("%.17g"), not with
 * Python's shortest repr. */
#pragma once

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>

enum {
    CJ_SKIP_SOURCE_META = 1, /* leave out feast.core.DataSource.meta everywhere (diffs) */
};

/* A new JSON object for m (never NULL unless out of memory). */
json_t *cj_message(const ProtobufCMessage *m, int flags);

/* The JSON value of one field of m, or NULL when the field is absent or at
 * its default (MessageToJson would leave it out). */
json_t *cj_field(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, int flags);

/* lowerCamelCase JSON name of a proto field name into out (size n). */
void cj_json_name(const char *name, char *out, size_t n);
