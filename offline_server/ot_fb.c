/* ot_fb: see ot_fb.h. */
#include "ot_fb.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "ot_fb assumes a little-endian host");

static void fb_oom(void)
{
    fputs("larder: out of memory\n", stderr);
    abort();
}

void fb_init(fb_builder *b)
{
    memset(b, 0, sizeof *b);
    b->minalign = 1;
}

void fb_free(fb_builder *b)
{
    free(b->buf);
    fb_init(b);
}

void fb_reset(fb_builder *b)
{
    b->size = 0;
    b->minalign = 1;
    b->in_table = 0;
    b->n_fields = 0;
}

/* Make room for n more bytes at the front. */
static void fb_grow(fb_builder *b, size_t n)
{
    if (b->cap - b->size >= n)
        return;
    if (n > UINT32_MAX - b->size)
        fb_oom(); /* a FlatBuffer is at most 2 GiB; never reached by our metadata */
    size_t cap = b->cap ? b->cap * 2 : 256;
    while (cap - b->size < n)
        cap *= 2;
    uint8_t *nb = malloc(cap);
    if (!nb)
        fb_oom();
    if (b->size)
        memcpy(nb + cap - b->size, b->buf + b->cap - b->size, b->size);
    free(b->buf);
    b->buf = nb;
    b->cap = cap;
}

static void fb_push(fb_builder *b, const void *p, size_t n)
{
    if (n == 0)
        return;
    fb_grow(b, n);
    b->size += n;
    memcpy(b->buf + b->cap - b->size, p, n);
}

static void fb_pad(fb_builder *b, size_t n)
{
    if (n == 0)
        return;
    fb_grow(b, n);
    b->size += n;
    memset(b->buf + b->cap - b->size, 0, n);
}

/* Pad so that, once `extra` more bytes are written, the front is aligned to
 * `align` (a power of two). */
static void fb_prep(fb_builder *b, size_t align, size_t extra)
{
    if (align > b->minalign)
        b->minalign = align;
    size_t pad = (size_t)(-(b->size + extra)) & (align - 1);
    fb_pad(b, pad);
}

static void fb_push_u32(fb_builder *b, uint32_t v)
{
    fb_push(b, &v, 4);
}

static uint32_t fb_rel(const fb_builder *b, fb_ref ref)
{
    /* a reference about to be written at the front: forward distance from
     * its own position to the object */
    return (uint32_t)(b->size + 4 - ref);
}

fb_ref fb_create_string(fb_builder *b, const char *s, size_t n)
{
    fb_prep(b, 4, n + 1);
    fb_pad(b, 1);
    fb_push(b, s, n);
    fb_push_u32(b, (uint32_t)n);
    return (fb_ref)b->size;
}

fb_ref fb_create_ref_vector(fb_builder *b, const fb_ref *refs, size_t n)
{
    fb_prep(b, 4, 4 * n);
    for (size_t i = n; i-- > 0;)
        fb_push_u32(b, fb_rel(b, refs[i]));
    fb_push_u32(b, (uint32_t)n);
    return (fb_ref)b->size;
}

fb_ref fb_create_struct_vector(fb_builder *b, const void *elems, size_t n, size_t elem_size,
                               size_t align)
{
    fb_prep(b, 4, n * elem_size);
    fb_prep(b, align, n * elem_size);
    fb_push(b, elems, n * elem_size);
    fb_push_u32(b, (uint32_t)n);
    return (fb_ref)b->size;
}

void fb_start(fb_builder *b)
{
    b->in_table = 1;
    b->table_start = b->size;
    memset(b->fields, 0, sizeof b->fields);
    b->n_fields = 0;
}

static void fb_add_scalar(fb_builder *b, int field, const void *p, size_t n)
{
    if (field < 0 || field >= FB_MAX_FIELDS)
        abort(); /* programming error */
    fb_prep(b, n, 0);
    fb_push(b, p, n);
    b->fields[field] = (fb_ref)b->size;
    if (field + 1 > b->n_fields)
        b->n_fields = field + 1;
}

void fb_add_u8(fb_builder *b, int field, uint8_t v)
{
    fb_add_scalar(b, field, &v, 1);
}

void fb_add_i16(fb_builder *b, int field, int16_t v)
{
    fb_add_scalar(b, field, &v, 2);
}

void fb_add_i32(fb_builder *b, int field, int32_t v)
{
    fb_add_scalar(b, field, &v, 4);
}

void fb_add_i64(fb_builder *b, int field, int64_t v)
{
    fb_add_scalar(b, field, &v, 8);
}

void fb_add_ref(fb_builder *b, int field, fb_ref ref)
{
    fb_prep(b, 4, 0);
    uint32_t v = fb_rel(b, ref);
    fb_add_scalar(b, field, &v, 4);
}

fb_ref fb_end(fb_builder *b)
{
    fb_prep(b, 4, 0);
    int32_t placeholder = 0;
    fb_push(b, &placeholder, 4);
    fb_ref table = (fb_ref)b->size;
    uint16_t vt[2 + FB_MAX_FIELDS];
    int nf = b->n_fields;
    vt[0] = (uint16_t)(4 + 2 * nf);
    vt[1] = (uint16_t)(table - b->table_start);
    for (int i = 0; i < nf; i++)
        vt[2 + i] = b->fields[i] ? (uint16_t)(table - b->fields[i]) : 0;
    fb_push(b, vt, (size_t)vt[0]);
    int32_t soff = (int32_t)(b->size - table); /* the vtable sits before the table */
    memcpy(b->buf + b->cap - table, &soff, 4);
    b->in_table = 0;
    return table;
}

void fb_finish(fb_builder *b, fb_ref root)
{
    fb_prep(b, b->minalign < 4 ? 4 : b->minalign, 4);
    fb_push_u32(b, fb_rel(b, root));
}

const uint8_t *fb_data(const fb_builder *b)
{
    return b->buf + b->cap - b->size;
}

size_t fb_size(const fb_builder *b)
{
    return b->size;
}

/* ---- reader ---- */

static int fb_table_at(const uint8_t *buf, size_t len, size_t pos, fb_table *out)
{
    if (pos > len || len - pos < 4)
        return -1;
    int32_t soff = (int32_t)fb_ld_u32(buf + pos);
    int64_t vt = (int64_t)pos - (int64_t)soff;
    if (vt < 0 || (uint64_t)vt > len || len - (size_t)vt < 4)
        return -1;
    uint16_t vt_len = fb_ld_u16(buf + vt);
    uint16_t t_len = fb_ld_u16(buf + vt + 2);
    if (vt_len < 4 || (vt_len & 1) || (size_t)vt_len > len - (size_t)vt)
        return -1;
    if (t_len < 4 || (size_t)t_len > len - pos)
        return -1;
    out->buf = buf;
    out->len = len;
    out->pos = pos;
    out->vt = (size_t)vt;
    out->vt_len = vt_len;
    out->t_len = t_len;
    return 0;
}

int fb_root(const uint8_t *buf, size_t len, fb_table *out)
{
    if (!buf || len < 8)
        return -1;
    return fb_table_at(buf, len, fb_ld_u32(buf), out);
}

/* The field's offset in the table (0 = absent), or -1 if it would not fit. */
static int fb_field(const fb_table *t, int field, size_t size)
{
    size_t slot = 4 + 2 * (size_t)field;
    if (slot + 2 > t->vt_len)
        return 0;
    uint16_t off = fb_ld_u16(t->buf + t->vt + slot);
    if (off == 0)
        return 0;
    if (off < 4 || (size_t)off + size > t->t_len)
        return -1;
    return off;
}

#define FB_GET_SCALAR(name, type, size, load)                                                      \
    int name(const fb_table *t, int field, type def, type *out)                                    \
    {                                                                                              \
        int off = fb_field(t, field, size);                                                        \
        if (off < 0)                                                                               \
            return -1;                                                                             \
        *out = off ? (type)load(t->buf + t->pos + (size_t)off) : def;                              \
        return 0;                                                                                  \
    }

static inline uint8_t fb_ld_u8(const uint8_t *p)
{
    return *p;
}

FB_GET_SCALAR(fb_get_u8, uint8_t, 1, fb_ld_u8)
FB_GET_SCALAR(fb_get_i16, int16_t, 2, fb_ld_u16)
FB_GET_SCALAR(fb_get_i32, int32_t, 4, fb_ld_u32)
FB_GET_SCALAR(fb_get_i64, int64_t, 8, fb_ld_u64)

/* Follow the reference stored at pos; the target must have `need` bytes. */
static int fb_deref(const uint8_t *buf, size_t len, size_t pos, size_t need, size_t *target)
{
    if (pos > len || len - pos < 4)
        return -1;
    uint64_t tgt = (uint64_t)pos + fb_ld_u32(buf + pos);
    if (tgt > len || len - tgt < need)
        return -1;
    *target = (size_t)tgt;
    return 0;
}

static int fb_field_ref(const fb_table *t, int field, int *present, size_t need, size_t *target)
{
    int off = fb_field(t, field, 4);
    *present = 0;
    if (off < 0)
        return -1;
    if (off == 0)
        return 0;
    if (fb_deref(t->buf, t->len, t->pos + (size_t)off, need, target) < 0)
        return -1;
    *present = 1;
    return 0;
}

int fb_get_table(const fb_table *t, int field, int *present, fb_table *out)
{
    size_t target;
    if (fb_field_ref(t, field, present, 4, &target) < 0)
        return -1;
    if (!*present)
        return 0;
    return fb_table_at(t->buf, t->len, target, out);
}

static int fb_string_at(const uint8_t *buf, size_t len, size_t pos, const char **s, size_t *n)
{
    /* pos has 4 bytes (checked by the caller) */
    uint32_t cnt = fb_ld_u32(buf + pos);
    if ((uint64_t)cnt > len - pos - 4)
        return -1;
    *s = (const char *)buf + pos + 4;
    *n = cnt;
    return 0;
}

int fb_get_string(const fb_table *t, int field, int *present, const char **s, size_t *n)
{
    size_t target;
    if (fb_field_ref(t, field, present, 4, &target) < 0)
        return -1;
    if (!*present)
        return 0;
    return fb_string_at(t->buf, t->len, target, s, n);
}

static int fb_vector_at(const uint8_t *buf, size_t len, size_t pos, size_t elem_size, fb_vec *out)
{
    uint32_t cnt = fb_ld_u32(buf + pos);
    size_t avail = len - pos - 4;
    if (elem_size && (uint64_t)cnt > avail / elem_size)
        return -1;
    out->buf = buf;
    out->len = len;
    out->pos = pos + 4;
    out->n = cnt;
    out->elem_size = elem_size;
    return 0;
}

int fb_get_vector(const fb_table *t, int field, size_t elem_size, int *present, fb_vec *out)
{
    size_t target;
    if (fb_field_ref(t, field, present, 4, &target) < 0)
        return -1;
    if (!*present)
        return 0;
    return fb_vector_at(t->buf, t->len, target, elem_size, out);
}

const uint8_t *fb_vec_at(const fb_vec *v, size_t i)
{
    return v->buf + v->pos + i * v->elem_size;
}

int fb_vec_table(const fb_vec *v, size_t i, fb_table *out)
{
    size_t target;
    if (i >= v->n || v->elem_size != 4)
        return -1;
    if (fb_deref(v->buf, v->len, v->pos + 4 * i, 4, &target) < 0)
        return -1;
    return fb_table_at(v->buf, v->len, target, out);
}

int fb_vec_string(const fb_vec *v, size_t i, const char **s, size_t *n)
{
    size_t target;
    if (i >= v->n || v->elem_size != 4)
        return -1;
    if (fb_deref(v->buf, v->len, v->pos + 4 * i, 4, &target) < 0)
        return -1;
    return fb_string_at(v->buf, v->len, target, s, n);
}
