/* ot_fb: a small FlatBuffers builder and a bounds-checked FlatBuffers reader,
 * enough for Arrow's IPC metadata (Schema.fbs, Message.fbs). Written from the
 * FlatBuffers binary format: little-endian scalars; a table starts with an
 * int32 soffset to its vtable (vtable = table - soffset); a vtable is uint16
 * {vtable bytes, table bytes, one field offset per field id (0 = absent)};
 * references (uoffset, uint32) point forward from where they are stored;
 * vectors and strings are a uint32 count followed by the elements (strings
 * add a NUL); a union is two fields: a uint8 type then a reference.
 *
 * The builder writes back to front (children before parents, as forward
 * references require) into one growing allocation; allocation failure is
 * fatal, as for ld_buf. The reader never trusts the bytes: every vtable,
 * field, reference and vector is checked against the buffer before use. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define FB_MAX_FIELDS 16

/* An object written by the builder: its distance in bytes from the end of
 * the buffer (stable while the buffer grows at the front). */
typedef uint32_t fb_ref;

typedef struct fb_builder {
    uint8_t *buf; /* the data is buf[cap - size, cap) */
    size_t cap;
    size_t size;
    size_t minalign;
    /* the table being built (fb_start .. fb_end) */
    int in_table;
    size_t table_start;
    fb_ref fields[FB_MAX_FIELDS]; /* where each field was written; 0 = absent */
    int n_fields;
} fb_builder;

void fb_init(fb_builder *b);
void fb_free(fb_builder *b);
void fb_reset(fb_builder *b);

/* Objects: call outside fb_start/fb_end. */
fb_ref fb_create_string(fb_builder *b, const char *s, size_t n);
fb_ref fb_create_ref_vector(fb_builder *b, const fb_ref *refs, size_t n);
/* A vector of n structs (or scalars) of elem_size bytes aligned to align,
 * given as little-endian bytes (n * elem_size). */
fb_ref fb_create_struct_vector(fb_builder *b, const void *elems, size_t n, size_t elem_size,
                               size_t align);

/* Tables: fields may be added in any order, each id at most once. */
void fb_start(fb_builder *b);
void fb_add_u8(fb_builder *b, int field, uint8_t v);
void fb_add_i16(fb_builder *b, int field, int16_t v);
void fb_add_i32(fb_builder *b, int field, int32_t v);
void fb_add_i64(fb_builder *b, int field, int64_t v);
void fb_add_ref(fb_builder *b, int field, fb_ref ref);
fb_ref fb_end(fb_builder *b);

/* Write the root reference; the finished buffer is fb_data(b), fb_size(b),
 * a multiple of the largest alignment used. */
void fb_finish(fb_builder *b, fb_ref root);
const uint8_t *fb_data(const fb_builder *b);
size_t fb_size(const fb_builder *b);

/* ---- reader ---- */

typedef struct fb_table {
    const uint8_t *buf;
    size_t len;
    size_t pos; /* the table's first byte (its soffset) */
    size_t vt;  /* its vtable */
    uint16_t vt_len;
    uint16_t t_len;
} fb_table;

typedef struct fb_vec {
    const uint8_t *buf;
    size_t len;
    size_t pos; /* the first element */
    size_t n;
    size_t elem_size;
} fb_vec;

/* All return 0 on success, -1 if the bytes are malformed (out of bounds). */
int fb_root(const uint8_t *buf, size_t len, fb_table *out);

/* Scalars: *out = the field's value, or def when absent. */
int fb_get_u8(const fb_table *t, int field, uint8_t def, uint8_t *out);
int fb_get_i16(const fb_table *t, int field, int16_t def, int16_t *out);
int fb_get_i32(const fb_table *t, int field, int32_t def, int32_t *out);
int fb_get_i64(const fb_table *t, int field, int64_t def, int64_t *out);

/* References: *present = 0 when the field is absent (out untouched). */
int fb_get_table(const fb_table *t, int field, int *present, fb_table *out);
int fb_get_string(const fb_table *t, int field, int *present, const char **s, size_t *n);
int fb_get_vector(const fb_table *t, int field, size_t elem_size, int *present, fb_vec *out);

/* Elements of a vector (i < v->n). */
const uint8_t *fb_vec_at(const fb_vec *v, size_t i);
int fb_vec_table(const fb_vec *v, size_t i, fb_table *out);
int fb_vec_string(const fb_vec *v, size_t i, const char **s, size_t *n);

/* Little-endian loads from possibly unaligned memory. */
static inline uint16_t fb_ld_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t fb_ld_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline uint64_t fb_ld_u64(const uint8_t *p)
{
    return (uint64_t)fb_ld_u32(p) | ((uint64_t)fb_ld_u32(p + 4) << 32);
}
