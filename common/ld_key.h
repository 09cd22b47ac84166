/* ld_key: Feast's entity-key serialization (key_encoding_utils.py), the bytes
 * every online store keys its rows by: the Redis key is this plus the project
 * name, SQL stores keep it in the entity_key column.
 *
 * v3 (current, the default):
 *   u32 n_keys
 *   per key, in sorted order:      u32 2 (STRING)  u32 len  utf8 bytes
 *   per value, in the same order:  u32 type        u32 len  payload
 * v2 drops n_keys and the key length; v1 is v2 with int64 packed in 4 bytes.
 * All integers little-endian. Keys sort by code point (UTF-8 byte order) and
 * values move with their keys. Value types: STRING=2 (utf8), BYTES=1,
 * INT32=3 (4 bytes), INT64=4 (8), UNIX_TIMESTAMP=8 (8); anything else is
 * refused, as Feast refuses it. */
#pragma once

#include <stddef.h>

#include "feast/types/EntityKey.pb-c.h"
#include "feast/types/Value.pb-c.h"
#include "ld_arena.h"
#include "ld_buf.h"
#include "ld_status.h"

#define LD_KEY_VERSION_DEFAULT 3

/**
 * ld_key_serialize() - append the serialized entity key to out.
 * @join_keys: n NUL-terminated UTF-8 join key names
 * @values: n values, values[i] belonging to join_keys[i]
 * @version: 3, 2 or 1 (Feast's entity_key_serialization_version)
 *
 * Return: 0, or -1 with st set to INVALID_ARGUMENT (unsupported value type,
 * naming the key and the type; a join key given twice; an int64 that does
 * not fit v1's 4 bytes; an unknown version). On error out is left as it was.
 */
int ld_key_serialize(const char *const *join_keys, const Feast__Types__Value *const *values,
                     size_t n, int version, ld_buf *out, ld_status *st);

/** ld_key_serialize_proto() - as ld_key_serialize() for an EntityKey
 * message; join_keys and entity_values must have the same length. */
int ld_key_serialize_proto(const Feast__Types__EntityKey *k, int version, ld_buf *out,
                           ld_status *st);

/**
 * ld_key_deserialize_v3() - parse a v3 key (Feast's deserialize_entity_key).
 * @data, @len: the bytes, as read from a store or a client; untrusted
 * @arena: owns the EntityKey and everything in it
 * @out: receives the key; join keys in stored (sorted) order
 *
 * Every length is checked against the input before use. Trailing NUL bytes
 * of key names are dropped, as Feast does. Unlike Feast, the number of values
 * must equal n_keys, and strings must be valid UTF-8 without NUL bytes (a
 * protobuf-c string cannot hold one).
 *
 * Return: 0, or -1 with st set: INVALID_ARGUMENT for malformed bytes,
 * RESOURCE_EXHAUSTED when the arena is full. *out is NULL on error.
 */
int ld_key_deserialize_v3(const void *data, size_t len, ld_arena *arena,
                          Feast__Types__EntityKey **out, ld_status *st);

/**
 * ld_key_prefix() - append the join-key part alone (Feast's
 * serialize_entity_key_prefix): the leading bytes of every key over this set
 * of join keys, for prefix scans. Duplicates are kept, as Feast keeps them.
 *
 * Return: 0, or -1 for an unknown version (out untouched).
 */
int ld_key_prefix(const char *const *join_keys, size_t n, int version, ld_buf *out);

static inline int ld_key_prefix_v3(const char *const *join_keys, size_t n, ld_buf *out)
{
    return ld_key_prefix(join_keys, n, 3, out);
}
