/* pbref: read fields of protobuf-c messages by dotted path ("spec.name",
 * "meta.created_timestamp") through their descriptors. The registry serves
 * eleven object kinds whose name, project, tags and timestamps sit at
 * different paths; one table of paths replaces eleven sets of accessors. */
#pragma once

#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

/* The field at path, or NULL. *member receives the address of the field's
 * storage inside the (innermost) message; NULL when a sub-message on the
 * way is unset. */
const ProtobufCFieldDescriptor *pbref_field(const ProtobufCMessage *m, const char *path,
                                            void **member);

/* A string field; "" when unset or not a string. */
const char *pbref_string(const ProtobufCMessage *m, const char *path);
/* A sub-message; NULL when unset. */
ProtobufCMessage *pbref_message(const ProtobufCMessage *m, const char *path);
/* A google.protobuf.Timestamp field as microseconds since the epoch; 0 when
 * unset. */
int64_t pbref_timestamp_us(const ProtobufCMessage *m, const char *path);
/* A map<string,string> field: its entries (each a message with key/value
 * char* after the base) and count. */
ProtobufCMessage **pbref_map(const ProtobufCMessage *m, const char *path, size_t *n);
/* The value of key in a map<string,string>, or NULL. */
const char *pbref_map_get(ProtobufCMessage *const *entries, size_t n, const char *key);
/* Make sure the sub-message at a one-level path ("meta") exists, allocating
 * it with `alloc` (initialised) if needed; returns it. */
ProtobufCMessage *pbref_ensure_message(ProtobufCMessage *m, const char *field,
                                       ProtobufCAllocator *alloc);
