/* Entity-key serialization, byte for byte as Feast's key_encoding_utils.py.
 *
 * Sorting works on an index array so keys and values stay paired without
 * copying either; entity keys have a handful of join keys, so the array sits
 * on the stack and an insertion sort is the fastest sort there is. */
#include "ld_key.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "ld_value.h"

#define STACK_KEYS  16
#define TYPE_STRING 2u

/* Insertion sort of idx[0..n) by join key, code-point order (strcmp compares
 * unsigned bytes, and UTF-8 byte order is code-point order). */
static void sort_by_key(const char *const *keys, size_t *idx, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        size_t x = idx[i], j = i;
        while (j > 0 && strcmp(keys[idx[j - 1]], keys[x]) > 0) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = x;
    }
}

static void truncate_to(ld_buf *out, size_t len)
{
    out->len = len;
    if (out->data)
        out->data[len] = '\0';
}

static int put_value(ld_buf *out, const char *key, const Feast__Types__Value *v, int version,
                     ld_status *st)
{
    switch (ld_value_case_of(v)) {
    case FEAST__TYPES__VALUE__VAL_STRING_VAL: {
        const char *s = v->string_val ? v->string_val : "";
        size_t n = strlen(s);
        if (n > UINT32_MAX)
            return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                                 "entity key '%s': string value too long", key);
        ld_buf_put_u32le(out, TYPE_STRING);
        ld_buf_put_u32le(out, (uint32_t)n);
        ld_buf_append(out, s, n);
        return 0;
    }
    case FEAST__TYPES__VALUE__VAL_BYTES_VAL:
        if (v->bytes_val.len > UINT32_MAX)
            return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                                 "entity key '%s': bytes value too long", key);
        ld_buf_put_u32le(out, FEAST__TYPES__VALUE__VAL_BYTES_VAL);
        ld_buf_put_u32le(out, (uint32_t)v->bytes_val.len);
        ld_buf_append(out, v->bytes_val.data, v->bytes_val.len);
        return 0;
    case FEAST__TYPES__VALUE__VAL_INT32_VAL:
        ld_buf_put_u32le(out, FEAST__TYPES__VALUE__VAL_INT32_VAL);
        ld_buf_put_u32le(out, 4);
        ld_buf_put_u32le(out, (uint32_t)v->int32_val);
        return 0;
    case FEAST__TYPES__VALUE__VAL_INT64_VAL:
        ld_buf_put_u32le(out, FEAST__TYPES__VALUE__VAL_INT64_VAL);
        if (version == 1) {
            /* struct.pack("<l") is 4 bytes and refuses what does not fit */
            if (v->int64_val < INT32_MIN || v->int64_val > INT32_MAX)
                return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                                     "entity key '%s': int64 value %" PRId64
                                     " does not fit entity key serialization version 1",
                                     key, v->int64_val);
            ld_buf_put_u32le(out, 4);
            ld_buf_put_u32le(out, (uint32_t)(int32_t)v->int64_val);
            return 0;
        }
        ld_buf_put_u32le(out, 8);
        ld_buf_put_u64le(out, (uint64_t)v->int64_val);
        return 0;
    case FEAST__TYPES__VALUE__VAL_UNIX_TIMESTAMP_VAL:
        /* 8 bytes in every version */
        ld_buf_put_u32le(out, FEAST__TYPES__VALUE__VAL_UNIX_TIMESTAMP_VAL);
        ld_buf_put_u32le(out, 8);
        ld_buf_put_u64le(out, (uint64_t)v->unix_timestamp_val);
        return 0;
    default:
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "entity key '%s': value type %s is not supported in an entity key "
                             "(supported: STRING, BYTES, INT32, INT64, UNIX_TIMESTAMP)",
                             key, ld_value_type_name(ld_value_case_of(v)));
    }
}

static void put_key_name(ld_buf *out, const char *k, size_t len, int version)
{
    ld_buf_put_u32le(out, TYPE_STRING);
    if (version >= 3)
        ld_buf_put_u32le(out, (uint32_t)len);
    ld_buf_append(out, k, len);
}

static int check_version(int version, ld_status *st)
{
    if (version < 1 || version > 3)
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "entity_key_serialization_version %d is not supported (1, 2 or 3)",
                             version);
    return 0;
}

/* The sorted index array: idx is the caller's stack array when n fits,
 * else a heap one the caller frees (when it differs from the stack one). */
static size_t *sorted_index(const char *const *keys, size_t n, size_t stack[STACK_KEYS])
{
    size_t *idx = stack;
    if (n > STACK_KEYS) {
        idx = malloc(n * sizeof *idx);
        if (!idx)
            return NULL;
    }
    for (size_t i = 0; i < n; i++)
        idx[i] = i;
    /* Feast skips the sort for a single key; sorting one is a no-op anyway */
    if (n > 1)
        sort_by_key(keys, idx, n);
    return idx;
}

int ld_key_serialize(const char *const *join_keys, const Feast__Types__Value *const *values,
                     size_t n, int version, ld_buf *out, ld_status *st)
{
    if (check_version(version, st) < 0)
        return -1;
    if (n > UINT32_MAX)
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL, "too many join keys");
    for (size_t i = 0; i < n; i++)
        if (!join_keys[i])
            return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                                 "entity key: join key %zu is missing", i);
    size_t stack[STACK_KEYS];
    size_t *idx = sorted_index(join_keys, n, stack);
    if (!idx)
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");

    size_t start = out->len;
    int rc = 0;
    for (size_t i = 1; i < n; i++) {
        /* Python's sort would go on to compare the two Values, which fails
         * unless they are equal; a join key names one column */
        if (strcmp(join_keys[idx[i - 1]], join_keys[idx[i]]) == 0) {
            rc = ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                               "entity key: join key '%s' appears more than once",
                               join_keys[idx[i]]);
            goto done;
        }
    }
    if (version >= 3)
        ld_buf_put_u32le(out, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        const char *k = join_keys[idx[i]];
        size_t len = strlen(k);
        if (len > UINT32_MAX) {
            rc = ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL, "join key too long");
            goto done;
        }
        put_key_name(out, k, len, version);
    }
    for (size_t i = 0; i < n; i++) {
        rc = put_value(out, join_keys[idx[i]], values[idx[i]], version, st);
        if (rc < 0)
            goto done;
    }
done:
    if (rc < 0)
        truncate_to(out, start);
    if (idx != stack)
        free(idx);
    return rc;
}

int ld_key_serialize_proto(const Feast__Types__EntityKey *k, int version, ld_buf *out,
                           ld_status *st)
{
    if (k->n_join_keys != k->n_entity_values)
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "entity key has %zu join keys but %zu values", k->n_join_keys,
                             k->n_entity_values);
    return ld_key_serialize((const char *const *)k->join_keys,
                            (const Feast__Types__Value *const *)k->entity_values, k->n_join_keys,
                            version, out, st);
}

int ld_key_prefix(const char *const *join_keys, size_t n, int version, ld_buf *out)
{
    if (version < 1 || version > 3 || n > UINT32_MAX)
        return -1;
    size_t stack[STACK_KEYS];
    size_t *idx = sorted_index(join_keys, n, stack);
    if (!idx)
        return -1;
    if (version >= 3)
        ld_buf_put_u32le(out, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        const char *k = join_keys[idx[i]];
        put_key_name(out, k, strlen(k), version);
    }
    if (idx != stack)
        free(idx);
    return 0;
}

/*==== Parsing ====*/

static uint32_t get_u32le(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64le(const unsigned char *p)
{
    return (uint64_t)get_u32le(p) | (uint64_t)get_u32le(p + 4) << 32;
}

/* Strict UTF-8 as Python's bytes.decode("utf-8") accepts it: no overlong
 * forms, no surrogates, nothing above U+10FFFF. NUL is valid UTF-8 but is
 * refused too, since a protobuf-c string ends at the first NUL. */
static int valid_utf8_no_nul(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c == 0)
            return 0;
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        unsigned lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
        if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            if (c == 0xe0)
                lo = 0xa0; /* overlong */
            else if (c == 0xed)
                hi = 0x9f; /* surrogates */
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            if (c == 0xf0)
                lo = 0x90; /* overlong */
            else if (c == 0xf4)
                hi = 0x8f; /* above U+10FFFF */
        } else {
            return 0;
        }
        if (n - i < len || s[i + 1] < lo || s[i + 1] > hi)
            return 0;
        for (size_t j = 2; j < len; j++)
            if ((s[i + j] & 0xc0) != 0x80)
                return 0;
        i += len;
    }
    return 1;
}

static int bad_key(ld_status *st, const char *what, size_t pos)
{
    return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                         "Invalid serialized entity key: %s at byte %zu", what, pos);
}

static int no_memory(ld_status *st)
{
    return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL,
                         "entity key: call memory limit reached");
}

/* One value's payload into v; the framing was checked by the caller. */
static int parse_value(uint32_t type, const unsigned char *p, uint32_t len, size_t pos,
                       ld_arena *arena, Feast__Types__Value *v, ld_status *st)
{
    feast__types__value__init(v);
    switch (type) {
    case FEAST__TYPES__VALUE__VAL_INT64_VAL:
    case FEAST__TYPES__VALUE__VAL_UNIX_TIMESTAMP_VAL:
        if (len != 8)
            return bad_key(st, "64-bit value is not 8 bytes", pos);
        if (type == FEAST__TYPES__VALUE__VAL_INT64_VAL)
            v->int64_val = (int64_t)get_u64le(p);
        else
            v->unix_timestamp_val = (int64_t)get_u64le(p);
        break;
    case FEAST__TYPES__VALUE__VAL_INT32_VAL:
        if (len != 4)
            return bad_key(st, "int32 value is not 4 bytes", pos);
        v->int32_val = (int32_t)get_u32le(p);
        break;
    case FEAST__TYPES__VALUE__VAL_STRING_VAL:
        if (!valid_utf8_no_nul(p, len))
            return bad_key(st, "string value is not UTF-8 text", pos);
        v->string_val = ld_arena_strndup(arena, (const char *)p, len);
        if (!v->string_val)
            return no_memory(st);
        break;
    case FEAST__TYPES__VALUE__VAL_BYTES_VAL:
        v->bytes_val.len = len;
        v->bytes_val.data = NULL;
        if (len) {
            v->bytes_val.data = ld_arena_memdup(arena, p, len);
            if (!v->bytes_val.data)
                return no_memory(st);
        }
        break;
    default:
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "Invalid serialized entity key: unsupported value type %" PRIu32
                             " at byte %zu",
                             type, pos);
    }
    v->val_case = (Feast__Types__Value__ValCase)type;
    return 0;
}

int ld_key_deserialize_v3(const void *data, size_t len, ld_arena *arena,
                          Feast__Types__EntityKey **out, ld_status *st)
{
    const unsigned char *b = data;
    *out = NULL;
    if (len < 4)
        return bad_key(st, "no key count", 0);
    uint32_t n_keys = get_u32le(b);
    size_t pos = 4;
    /* Each key takes at least 8 bytes: bound the count before allocating. */
    if (n_keys > (len - pos) / 8)
        return bad_key(st, "key count larger than the data", 0);

    Feast__Types__EntityKey *k = ld_arena_alloc(arena, sizeof *k);
    char **keys = n_keys ? ld_arena_calloc(arena, n_keys, sizeof *keys) : NULL;
    if (!k || (n_keys && !keys))
        return no_memory(st);
    feast__types__entity_key__init(k);

    for (uint32_t i = 0; i < n_keys; i++) {
        if (len - pos < 8)
            return bad_key(st, "truncated key header", pos);
        uint32_t type = get_u32le(b + pos), klen = get_u32le(b + pos + 4);
        if (type != TYPE_STRING)
            return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                                 "Invalid serialized entity key: unsupported key type %" PRIu32
                                 " at byte %zu",
                                 type, pos);
        pos += 8;
        if (klen > len - pos)
            return bad_key(st, "truncated key name", pos);
        /* Feast strips trailing NULs from key names (rstrip("\x00")) */
        size_t name_len = klen;
        while (name_len && b[pos + name_len - 1] == 0)
            name_len--;
        if (!valid_utf8_no_nul(b + pos, name_len))
            return bad_key(st, "key name is not UTF-8 text", pos);
        keys[i] = ld_arena_strndup(arena, (const char *)b + pos, name_len);
        if (!keys[i])
            return no_memory(st);
        pos += klen;
    }

    /* Values run to the end of the data: check the framing and count them
     * first, so the array is allocated once and exactly. */
    size_t n_values = 0;
    for (size_t p = pos; p < len; n_values++) {
        if (len - p < 8)
            return bad_key(st, "truncated value header", p);
        uint32_t vlen = get_u32le(b + p + 4);
        p += 8;
        if (vlen > len - p)
            return bad_key(st, "truncated value", p);
        p += vlen;
    }
    if (n_values != n_keys)
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "Invalid serialized entity key: %" PRIu32 " keys but %zu values",
                             n_keys, n_values);

    Feast__Types__Value **values =
            n_values ? ld_arena_calloc(arena, n_values, sizeof *values) : NULL;
    if (n_values && !values)
        return no_memory(st);
    for (size_t i = 0; i < n_values; i++) {
        uint32_t type = get_u32le(b + pos), vlen = get_u32le(b + pos + 4);
        values[i] = ld_arena_alloc(arena, sizeof *values[i]);
        if (!values[i])
            return no_memory(st);
        if (parse_value(type, b + pos + 8, vlen, pos, arena, values[i], st) < 0)
            return -1;
        pos += 8 + (size_t)vlen;
    }

    k->n_join_keys = n_keys;
    k->join_keys = keys;
    k->n_entity_values = n_values;
    k->entity_values = values;
    *out = k;
    return 0;
}
