/* ot_ipc: see ot_ipc.h.
 *
 * Decoding is two-phase per message: the RecordBatch metadata and body are
 * first parsed into a tree of `view`s (pointers into the body, every length
 * and offset checked), then the views are appended to per-column builders
 * (`colb`) that own growing buffers; ot_ipc_reader_finish moves the builders
 * into an ot_table. Dictionary batches are decoded the same way into one
 * builder per dictionary id; a dictionary-encoded column takes its rows from
 * that builder. Encoding writes an ot_table's row range straight into the
 * body (rebasing offsets, shifting bitmaps when the range is not on a byte
 * boundary) and the metadata with ot_fb's builder. */
#include "ot_ipc.h"

#include <lz4frame.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ot_fb.h"

/* ---- format constants (Schema.fbs, Message.fbs). Field ids are vtable
 * slots; a union field takes two slots (its type, then its value). ---- */

enum { MSG_VERSION = 0, MSG_HEADER_TYPE = 1, MSG_HEADER = 2, MSG_BODY_LENGTH = 3 };
enum { HDR_SCHEMA = 1, HDR_DICTIONARY_BATCH = 2, HDR_RECORD_BATCH = 3 };
enum { SCHEMA_ENDIANNESS = 0, SCHEMA_FIELDS = 1, SCHEMA_CUSTOM_METADATA = 2 };
enum {
    FIELD_NAME = 0,
    FIELD_NULLABLE = 1,
    FIELD_TYPE_TYPE = 2,
    FIELD_TYPE = 3,
    FIELD_DICTIONARY = 4,
    FIELD_CHILDREN = 5,
};
enum { KV_KEY = 0, KV_VALUE = 1 };
enum { DICTENC_ID = 0, DICTENC_INDEX_TYPE = 1 };
enum { INT_BIT_WIDTH = 0, INT_IS_SIGNED = 1 };
enum { FP_PRECISION = 0 };
enum { TS_UNIT = 0, TS_TIMEZONE = 1 };
enum { DATE_UNIT = 0 };
enum { RB_LENGTH = 0, RB_NODES = 1, RB_BUFFERS = 2, RB_COMPRESSION = 3 };
enum { DB_ID = 0, DB_DATA = 1, DB_IS_DELTA = 2 };
enum { BC_CODEC = 0, BC_METHOD = 1 };

enum {
    T_NULL = 1,
    T_INT = 2,
    T_FLOAT = 3,
    T_BINARY = 4,
    T_UTF8 = 5,
    T_BOOL = 6,
    T_DECIMAL = 7,
    T_DATE = 8,
    T_TIME = 9,
    T_TIMESTAMP = 10,
    T_INTERVAL = 11,
    T_LIST = 12,
    T_STRUCT = 13,
    T_UNION = 14,
    T_FIXED_SIZE_BINARY = 15,
    T_FIXED_SIZE_LIST = 16,
    T_MAP = 17,
    T_DURATION = 18,
    T_LARGE_BINARY = 19,
    T_LARGE_UTF8 = 20,
    T_LARGE_LIST = 21,
    T_RUN_END_ENCODED = 22,
    T_BINARY_VIEW = 23,
    T_UTF8_VIEW = 24,
    T_LIST_VIEW = 25,
    T_LARGE_LIST_VIEW = 26,
};

#define MD_V4        3
#define MD_V5        4
#define CONTINUATION 0xFFFFFFFFu
#define MAX_BUDGET   ((int64_t)1 << 48)

static const char *const type_tag_names[] = {
        "NONE",          "Null",      "Int",           "FloatingPoint",
        "Binary",        "Utf8",      "Bool",          "Decimal",
        "Date",          "Time",      "Timestamp",     "Interval",
        "List",          "Struct",    "Union",         "FixedSizeBinary",
        "FixedSizeList", "Map",       "Duration",      "LargeBinary",
        "LargeUtf8",     "LargeList", "RunEndEncoded", "BinaryView",
        "Utf8View",      "ListView",  "LargeListView",
};

static void ipc_oom(void)
{
    fputs("larder: out of memory\n", stderr);
    abort();
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        ipc_oom();
    return p;
}

static char *xstrndup(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (!d)
        ipc_oom();
    if (n)
        memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

__attribute__((format(printf, 2, 3))) static int bad(ld_status *st, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL, "invalid Arrow IPC data: %s", msg);
}

static int64_t ld_i64(const uint8_t *p)
{
    return (int64_t)fb_ld_u64(p);
}

/* Value i of a little-endian integer array of `bits` width. */
static int64_t ld_int(const uint8_t *p, int bits, int is_signed, int64_t i)
{
    switch (bits) {
    case 8:
        return is_signed ? (int64_t)(int8_t)p[i] : (int64_t)p[i];
    case 16: {
        uint16_t v = fb_ld_u16(p + 2 * i);
        return is_signed ? (int64_t)(int16_t)v : (int64_t)v;
    }
    case 32: {
        uint32_t v = fb_ld_u32(p + 4 * i);
        return is_signed ? (int64_t)(int32_t)v : (int64_t)v;
    }
    default:
        return (int64_t)fb_ld_u64(p + 8 * i);
    }
}

/* ---- bitmaps ---- */

static void bits_set_range(uint8_t *dst, int64_t off, int64_t n, int v)
{
    while (n > 0 && (off & 7)) {
        ot_bit_set(dst, off++, v);
        n--;
    }
    if (n >= 8) {
        memset(dst + (off >> 3), v ? 0xFF : 0, (size_t)(n >> 3));
        off += n & ~(int64_t)7;
        n &= 7;
    }
    while (n-- > 0)
        ot_bit_set(dst, off++, v);
}

static void bits_copy(uint8_t *dst, int64_t doff, const uint8_t *src, int64_t soff, int64_t n)
{
    if (((doff | soff) & 7) == 0 && n >= 8) {
        memcpy(dst + (doff >> 3), src + (soff >> 3), (size_t)(n >> 3));
        int64_t done = n & ~(int64_t)7;
        doff += done;
        soff += done;
        n -= done;
    }
    for (int64_t i = 0; i < n; i++)
        ot_bit_set(dst, doff + i, ot_bit_get(src, soff + i));
}

static int64_t bits_count_zero(const uint8_t *bits, int64_t off, int64_t n)
{
    ot_column tmp;
    memset(&tmp, 0, sizeof tmp);
    tmp.type.id = OT_BOOL;
    tmp.validity = (uint8_t *)bits;
    return ot_column_count_nulls(&tmp, off, n);
}

/* ---- schema model for decoding ---- */

typedef struct fdesc {
    char *name;
    int nullable;
    ot_type type;   /* the column's type (dictionary: the value type) */
    int int_bits;   /* OT_INT32/OT_INT64: the wire's integer width ... */
    int int_signed; /* ... and signedness (narrower ints are widened) */
    int dict;       /* dictionary-encoded */
    int64_t dict_id;
    size_t dict_idx; /* its entry in the reader's dicts */
    int idx_bits, idx_signed;
    struct fdesc *child; /* OT_LIST */
} fdesc;

static void fdesc_clear(fdesc *f)
{
    if (!f)
        return;
    free(f->name);
    ot_type_clear(&f->type);
    if (f->child) {
        fdesc_clear(f->child);
        free(f->child);
    }
    memset(f, 0, sizeof *f);
}

/* A column being decoded: an ot_column whose buffers have capacities. The
 * child column of a list lives in `child` until the table is built. */
typedef struct colb {
    ot_column c;
    size_t cap_valid, cap_values, cap_off, cap_data;
    struct colb *child;
} colb;

typedef struct dict {
    int64_t id;
    const fdesc *f; /* the first field using it: its type is the values' type */
    colb b;
    int loaded;
    int needed; /* a selected field uses it (every dictionary without a selection) */
} dict;

struct ot_ipc_reader {
    int64_t max_bytes;
    int64_t used;
    int failed;
    ld_status err;
    int have_schema;
    size_t n_fields;
    fdesc *fields;
    colb *cols;
    int64_t n_rows;
    char **meta_keys, **meta_values;
    size_t n_meta;
    dict *dicts;
    size_t n_dicts;
    /* column selection (ot_ipc_reader_select): the names, and per field of
     * the schema whether it is decoded (NULL before the schema) */
    int has_sel;
    char **sel;
    size_t n_sel;
    uint8_t *want;
    /* the current record batch's buffers when its body was read piecewise
     * (read_selected): buffer i at bufmap[i], NULL for skipped ones */
    const uint8_t *const *bufmap;
};

/* ---- column builders ---- */

static int reserve(ot_ipc_reader *r, void **p, size_t *cap, size_t need, int zero, ld_status *st)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap : 64;
    while (ncap < need) {
        if (ncap > ((size_t)1 << 50))
            return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL,
                                 "decoded Arrow data exceeds the limit of %lld bytes",
                                 (long long)r->max_bytes);
        ncap *= 2;
    }
    int64_t more = (int64_t)(ncap - *cap);
    if (r->used > r->max_bytes - more)
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL,
                             "decoded Arrow data exceeds the limit of %lld bytes",
                             (long long)r->max_bytes);
    uint8_t *np = realloc(*p, ncap);
    if (!np)
        ipc_oom();
    if (zero)
        memset(np + *cap, 0, ncap - *cap);
    r->used += more;
    *p = np;
    *cap = ncap;
    return 0;
}

static int is_var(ot_type_id id)
{
    return id == OT_UTF8 || id == OT_BINARY || id == OT_LARGE_UTF8;
}

/* Bytes per value of a fixed-width type in our tables (0: not fixed). */
static size_t fixed_width(ot_type_id id)
{
    switch (id) {
    case OT_INT32:
    case OT_FLOAT32:
    case OT_DATE32:
        return 4;
    case OT_INT64:
    case OT_FLOAT64:
    case OT_TIMESTAMP:
        return 8;
    default:
        return 0;
    }
}

/* (the first offsets are charged to the reader's budget like any growth) */
static void colb_init(ot_ipc_reader *r, colb *b, const fdesc *f)
{
    memset(b, 0, sizeof *b);
    b->c.name = xstrndup(f->name, strlen(f->name));
    ot_type_copy(&b->c.type, &f->type);
    if (b->c.type.id == OT_LARGE_UTF8) {
        b->c.offsets64 = xcalloc(8, sizeof(int64_t));
        b->cap_off = 8 * sizeof(int64_t);
    } else if (is_var(b->c.type.id) || b->c.type.id == OT_LIST) {
        b->c.offsets = xcalloc(16, sizeof(int32_t));
        b->cap_off = 16 * sizeof(int32_t);
    }
    r->used += (int64_t)b->cap_off;
    if (b->c.type.id == OT_LIST) {
        b->child = xcalloc(1, sizeof *b->child);
        colb_init(r, b->child, f->child);
    }
}

static size_t colb_caps(const colb *b)
{
    size_t n = b->cap_valid + b->cap_values + b->cap_off + b->cap_data;
    if (b->child)
        n += colb_caps(b->child);
    return n;
}

static void colb_free(colb *b)
{
    if (b->child) {
        colb_free(b->child);
        free(b->child);
    }
    ot_column_clear(&b->c);
    memset(b, 0, sizeof *b);
}

/* Move the builder's column into out (name, nullability from f). */
static void colb_take(colb *b, const fdesc *f, ot_column *out)
{
    *out = b->c;
    memset(&b->c, 0, sizeof b->c);
    out->not_null = !f->nullable;
    out->null_count = ot_column_count_nulls(out, 0, out->length);
    out->child = NULL;
    if (b->child) {
        out->child = xcalloc(1, sizeof *out->child);
        colb_take(b->child, f->child, out->child);
    }
    colb_free(b);
}

/* A parsed column of one batch: pointers into the (decompressed) body. */
typedef struct view {
    ot_type_id id;
    int int_bits, int_signed; /* fixed-width values as stored */
    int64_t length;
    const uint8_t *validity; /* NULL: all valid */
    const uint8_t *values;   /* fixed width, bool bits, or dictionary indices */
    const uint8_t *offsets;  /* NULL: length == 0 */
    int wide_offsets;
    const uint8_t *data;
    int64_t data_len;
    struct view *child;
    dict *d; /* dictionary-encoded: values are indices into d */
    int idx_bits, idx_signed;
} view;

static void view_free_children(view *v)
{
    if (v->child) {
        view_free_children(v->child);
        free(v->child);
        v->child = NULL;
    }
}

static int64_t view_off(const view *v, int64_t i)
{
    if (!v->offsets)
        return 0;
    return v->wide_offsets ? ld_i64(v->offsets + 8 * i)
                           : (int64_t)(int32_t)fb_ld_u32(v->offsets + 4 * i);
}

/* A view of a finished dictionary builder (values types only: no lists). */
static void view_of_colb(const colb *b, view *v)
{
    memset(v, 0, sizeof *v);
    v->id = b->c.type.id;
    v->int_bits = (int)fixed_width(v->id) * 8;
    v->int_signed = 1;
    v->length = b->c.length;
    v->validity = b->c.validity;
    v->values = b->c.values;
    if (b->c.type.id == OT_LARGE_UTF8) {
        v->offsets = (const uint8_t *)b->c.offsets64;
        v->wide_offsets = 1;
    } else {
        v->offsets = (const uint8_t *)b->c.offsets;
    }
    v->data = b->c.data;
    v->data_len = b->c.data_len;
}

static int app_validity(ot_ipc_reader *r, colb *b, const uint8_t *src, int64_t start, int64_t n,
                        ld_status *st)
{
    int64_t len = b->c.length;
    size_t need = (size_t)((len + n + 7) >> 3);
    if (!b->c.validity) {
        if (!src || bits_count_zero(src, start, n) == 0)
            return 0; /* still no nulls */
        if (reserve(r, (void **)&b->c.validity, &b->cap_valid, need, 1, st) < 0)
            return -1;
        bits_set_range(b->c.validity, 0, len, 1);
    } else if (reserve(r, (void **)&b->c.validity, &b->cap_valid, need, 1, st) < 0) {
        return -1;
    }
    if (src)
        bits_copy(b->c.validity, len, src, start, n);
    else
        bits_set_range(b->c.validity, len, n, 1);
    return 0;
}

static int app_nulls(ot_ipc_reader *r, colb *b, int64_t n, ld_status *st)
{
    ot_column *c = &b->c;
    int64_t len = c->length;
    if (c->type.id == OT_NULL) {
        c->length += n;
        return 0;
    }
    size_t need = (size_t)((len + n + 7) >> 3);
    if (!c->validity) {
        if (reserve(r, (void **)&c->validity, &b->cap_valid, need, 1, st) < 0)
            return -1;
        bits_set_range(c->validity, 0, len, 1);
    } else if (reserve(r, (void **)&c->validity, &b->cap_valid, need, 1, st) < 0) {
        return -1;
    }
    bits_set_range(c->validity, len, n, 0);
    size_t w = fixed_width(c->type.id);
    if (c->type.id == OT_BOOL) {
        if (reserve(r, &c->values, &b->cap_values, need, 1, st) < 0)
            return -1;
        bits_set_range(c->values, len, n, 0);
    } else if (w) {
        if (reserve(r, &c->values, &b->cap_values, (size_t)(len + n) * w, 0, st) < 0)
            return -1;
        memset((uint8_t *)c->values + (size_t)len * w, 0, (size_t)n * w);
    } else if (c->type.id == OT_LARGE_UTF8) {
        if (reserve(r, (void **)&c->offsets64, &b->cap_off, (size_t)(len + n + 1) * 8, 0, st) < 0)
            return -1;
        for (int64_t i = 1; i <= n; i++)
            c->offsets64[len + i] = c->offsets64[len];
    } else if (is_var(c->type.id) || c->type.id == OT_LIST) {
        if (reserve(r, (void **)&c->offsets, &b->cap_off, (size_t)(len + n + 1) * 4, 0, st) < 0)
            return -1;
        for (int64_t i = 1; i <= n; i++)
            c->offsets[len + i] = c->offsets[len];
    }
    c->length += n;
    return 0;
}

static int app_view(ot_ipc_reader *r, colb *b, const view *v, int64_t start, int64_t n,
                    ld_status *st);

static int app_take(ot_ipc_reader *r, colb *b, const view *v, int64_t start, int64_t n,
                    ld_status *st)
{
    view dv;
    int64_t dict_len = v->d->loaded ? v->d->b.c.length : 0;
    view_of_colb(&v->d->b, &dv);
    for (int64_t i = start; i < start + n; i++) {
        if (v->validity && !ot_bit_get(v->validity, i)) {
            if (app_nulls(r, b, 1, st) < 0)
                return -1;
            continue;
        }
        int64_t idx = ld_int(v->values, v->idx_bits, v->idx_signed, i);
        if (idx < 0 || idx >= dict_len)
            return bad(st, "dictionary index %lld out of range (dictionary %lld has %lld values)",
                       (long long)idx, (long long)v->d->id, (long long)dict_len);
        if (app_view(r, b, &dv, idx, 1, st) < 0)
            return -1;
    }
    return 0;
}

static int app_view(ot_ipc_reader *r, colb *b, const view *v, int64_t start, int64_t n,
                    ld_status *st)
{
    ot_column *c = &b->c;
    int64_t len = c->length;
    if (n == 0)
        return 0;
    if (v->d)
        return app_take(r, b, v, start, n, st);
    if (v->id == OT_NULL) {
        c->length += n;
        return 0;
    }
    if (app_validity(r, b, v->validity, start, n, st) < 0)
        return -1;
    size_t w = fixed_width(v->id);
    if (v->id == OT_BOOL) {
        if (reserve(r, &c->values, &b->cap_values, (size_t)((len + n + 7) >> 3), 1, st) < 0)
            return -1;
        bits_copy(c->values, len, v->values, start, n);
    } else if (w) {
        if (reserve(r, &c->values, &b->cap_values, (size_t)(len + n) * w, 0, st) < 0)
            return -1;
        uint8_t *dst = (uint8_t *)c->values + (size_t)len * w;
        if ((size_t)v->int_bits == w * 8 && (v->int_signed || v->int_bits != 64)) {
            memcpy(dst, v->values + (size_t)start * w, (size_t)n * w);
        } else {
            int u64 = v->int_bits == 64 && !v->int_signed;
            for (int64_t i = 0; i < n; i++) {
                int64_t x = ld_int(v->values, v->int_bits, v->int_signed, start + i);
                if (u64 && x < 0) {
                    if (!v->validity || ot_bit_get(v->validity, start + i))
                        return bad(st, "uint64 value %llu does not fit in int64",
                                   (unsigned long long)x);
                    x = 0;
                }
                if (w == 4) {
                    int32_t y = (int32_t)x;
                    memcpy(dst + 4 * i, &y, 4);
                } else {
                    memcpy(dst + 8 * i, &x, 8);
                }
            }
        }
    } else if (is_var(v->id)) {
        int wide = v->id == OT_LARGE_UTF8;
        int64_t base = view_off(v, start), end = view_off(v, start + n);
        int64_t add = end - base;
        if (!wide && c->data_len + add > INT32_MAX)
            return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL,
                                 "column '%s' exceeds 2 GiB of string data",
                                 c->name ? c->name : "");
        if (reserve(r, (void **)&c->data, &b->cap_data, (size_t)(c->data_len + add), 0, st) < 0)
            return -1;
        if (add)
            memcpy(c->data + c->data_len, v->data + base, (size_t)add);
        if (wide) {
            if (reserve(r, (void **)&c->offsets64, &b->cap_off, (size_t)(len + n + 1) * 8, 0, st) <
                0)
                return -1;
            for (int64_t i = 1; i <= n; i++)
                c->offsets64[len + i] = c->data_len + view_off(v, start + i) - base;
        } else {
            if (reserve(r, (void **)&c->offsets, &b->cap_off, (size_t)(len + n + 1) * 4, 0, st) < 0)
                return -1;
            for (int64_t i = 1; i <= n; i++)
                c->offsets[len + i] = (int32_t)(c->data_len + view_off(v, start + i) - base);
        }
        c->data_len += add;
    } else if (v->id == OT_LIST) {
        int64_t base = view_off(v, start), end = view_off(v, start + n);
        int64_t clen = b->child->c.length;
        if (clen + (end - base) > INT32_MAX)
            return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL,
                                 "list column exceeds 2^31 elements");
        if (reserve(r, (void **)&c->offsets, &b->cap_off, (size_t)(len + n + 1) * 4, 0, st) < 0)
            return -1;
        for (int64_t i = 1; i <= n; i++)
            c->offsets[len + i] = (int32_t)(clen + view_off(v, start + i) - base);
        if (app_view(r, b->child, v->child, base, end - base, st) < 0)
            return -1;
    }
    c->length += n;
    return 0;
}

/* ---- reader: schema ---- */

ot_ipc_reader *ot_ipc_reader_new(void)
{
    ot_ipc_reader *r = xcalloc(1, sizeof *r);
    r->max_bytes = OT_IPC_DEFAULT_MAX_BYTES;
    return r;
}

void ot_ipc_reader_set_max_bytes(ot_ipc_reader *r, int64_t max_bytes)
{
    if (max_bytes < 0)
        max_bytes = 0;
    if (max_bytes > MAX_BUDGET)
        max_bytes = MAX_BUDGET;
    r->max_bytes = max_bytes;
}

int ot_ipc_reader_has_schema(const ot_ipc_reader *r)
{
    return r->have_schema;
}

static void reader_clear(ot_ipc_reader *r)
{
    for (size_t i = 0; i < r->n_fields; i++) {
        if (r->cols)
            colb_free(&r->cols[i]);
        fdesc_clear(&r->fields[i]);
    }
    free(r->cols);
    free(r->fields);
    free(r->want);
    r->cols = NULL;
    r->fields = NULL;
    r->want = NULL;
    r->n_fields = 0;
    for (size_t i = 0; i < r->n_meta; i++) {
        free(r->meta_keys[i]);
        free(r->meta_values[i]);
    }
    free(r->meta_keys);
    free(r->meta_values);
    r->meta_keys = r->meta_values = NULL;
    r->n_meta = 0;
    for (size_t i = 0; i < r->n_dicts; i++)
        colb_free(&r->dicts[i].b);
    free(r->dicts);
    r->dicts = NULL;
    r->n_dicts = 0;
    r->have_schema = 0;
    r->n_rows = 0;
    r->used = 0;
}

void ot_ipc_reader_free(ot_ipc_reader *r)
{
    if (!r)
        return;
    reader_clear(r);
    for (size_t i = 0; i < r->n_sel; i++)
        free(r->sel[i]);
    free(r->sel);
    free(r);
}

void ot_ipc_reader_select(ot_ipc_reader *r, const char *const *names, size_t n)
{
    for (size_t i = 0; i < r->n_sel; i++)
        free(r->sel[i]);
    free(r->sel);
    r->sel = NULL;
    r->n_sel = 0;
    r->has_sel = names != NULL;
    if (!names)
        return;
    r->sel = xcalloc(n, sizeof *r->sel);
    for (size_t i = 0; i < n; i++)
        if (names[i])
            r->sel[r->n_sel++] = xstrndup(names[i], strlen(names[i]));
}

static const char *tag_name(uint8_t tag)
{
    return tag < sizeof type_tag_names / sizeof type_tag_names[0] ? type_tag_names[tag] : "unknown";
}

static int parse_int_type(const fb_table *tt, int present, int *bits, int *is_signed,
                          const char *fname, ld_status *st)
{
    int32_t bw = 0;
    uint8_t sg = 0;
    if (present &&
        (fb_get_i32(tt, INT_BIT_WIDTH, 0, &bw) < 0 || fb_get_u8(tt, INT_IS_SIGNED, 0, &sg) < 0))
        return bad(st, "field '%s': malformed Int type", fname);
    if (bw != 8 && bw != 16 && bw != 32 && bw != 64)
        return bad(st, "field '%s': Int bit width %d", fname, (int)bw);
    *bits = bw;
    *is_signed = sg != 0;
    return 0;
}

static int parse_field(ot_ipc_reader *r, const fb_table *ft, fdesc *f, int depth, ld_status *st)
{
    const char *s;
    size_t n;
    int present;
    uint8_t u8;
    if (fb_get_string(ft, FIELD_NAME, &present, &s, &n) < 0)
        return bad(st, "malformed field name");
    f->name = xstrndup(present ? s : "", present ? n : 0);
    if (fb_get_u8(ft, FIELD_NULLABLE, 0, &u8) < 0)
        return bad(st, "field '%s': malformed", f->name);
    f->nullable = u8 != 0;
    uint8_t tag;
    fb_table tt;
    int tpresent;
    if (fb_get_u8(ft, FIELD_TYPE_TYPE, 0, &tag) < 0 ||
        fb_get_table(ft, FIELD_TYPE, &tpresent, &tt) < 0)
        return bad(st, "field '%s': malformed type", f->name);
    f->int_bits = 0;
    f->int_signed = 1;
    switch (tag) {
    case T_NULL:
        f->type.id = OT_NULL;
        break;
    case T_INT: {
        int bits, sg;
        if (parse_int_type(&tt, tpresent, &bits, &sg, f->name, st) < 0)
            return -1;
        f->int_bits = bits;
        f->int_signed = sg;
        f->type.id = (bits < 32 || (bits == 32 && sg)) ? OT_INT32 : OT_INT64;
        break;
    }
    case T_FLOAT: {
        int16_t prec = 0;
        if (tpresent && fb_get_i16(&tt, FP_PRECISION, 0, &prec) < 0)
            return bad(st, "field '%s': malformed FloatingPoint type", f->name);
        if (prec == 1)
            f->type.id = OT_FLOAT32;
        else if (prec == 2)
            f->type.id = OT_FLOAT64;
        else
            return bad(st,
                       "field '%s': unsupported floating point precision %d (half floats "
                       "are not supported)",
                       f->name, (int)prec);
        break;
    }
    case T_BINARY:
        f->type.id = OT_BINARY;
        break;
    case T_UTF8:
        f->type.id = OT_UTF8;
        break;
    case T_LARGE_UTF8:
        f->type.id = OT_LARGE_UTF8;
        break;
    case T_BOOL:
        f->type.id = OT_BOOL;
        break;
    case T_DATE: {
        int16_t unit = 1;
        if (tpresent && fb_get_i16(&tt, DATE_UNIT, 1, &unit) < 0)
            return bad(st, "field '%s': malformed Date type", f->name);
        if (unit != 0)
            return bad(st, "field '%s': unsupported type date64 (only date32 is supported)",
                       f->name);
        f->type.id = OT_DATE32;
        break;
    }
    case T_TIMESTAMP: {
        int16_t unit = 0;
        if (tpresent && fb_get_i16(&tt, TS_UNIT, 0, &unit) < 0)
            return bad(st, "field '%s': malformed Timestamp type", f->name);
        if (unit < 0 || unit > 3)
            return bad(st, "field '%s': Timestamp unit %d", f->name, (int)unit);
        f->type.id = OT_TIMESTAMP;
        f->type.unit = (ot_time_unit)unit;
        f->int_bits = 64;
        if (tpresent) {
            if (fb_get_string(&tt, TS_TIMEZONE, &present, &s, &n) < 0)
                return bad(st, "field '%s': malformed timezone", f->name);
            /* (a NUL inside a string ends it, here as in names and metadata) */
            if (present && n > 0 && s[0] != '\0')
                f->type.tz = xstrndup(s, n);
        }
        break;
    }
    case T_LIST: {
        fb_vec ch;
        fb_table ct;
        if (depth + 1 >= OT_IPC_MAX_DEPTH)
            return bad(st, "field '%s': lists nested deeper than %d", f->name, OT_IPC_MAX_DEPTH);
        if (fb_get_vector(ft, FIELD_CHILDREN, 4, &present, &ch) < 0 || !present || ch.n != 1 ||
            fb_vec_table(&ch, 0, &ct) < 0)
            return bad(st, "field '%s': a List needs exactly one child field", f->name);
        f->type.id = OT_LIST;
        f->child = xcalloc(1, sizeof *f->child);
        if (parse_field(r, &ct, f->child, depth + 1, st) < 0)
            return -1;
        f->type.child = xcalloc(1, sizeof *f->type.child);
        ot_type_copy(f->type.child, &f->child->type);
        break;
    }
    default:
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "unsupported Arrow type %s (type id %u) in field '%s'", tag_name(tag),
                             (unsigned)tag, f->name);
    }
    if (fixed_width(f->type.id) && !f->int_bits)
        f->int_bits = (int)fixed_width(f->type.id) * 8;

    fb_table dt;
    if (fb_get_table(ft, FIELD_DICTIONARY, &present, &dt) < 0)
        return bad(st, "field '%s': malformed dictionary encoding", f->name);
    if (present) {
        fb_table it;
        int ipresent;
        if (fb_get_i64(&dt, DICTENC_ID, 0, &f->dict_id) < 0 ||
            fb_get_table(&dt, DICTENC_INDEX_TYPE, &ipresent, &it) < 0)
            return bad(st, "field '%s': malformed dictionary encoding", f->name);
        f->idx_bits = 32;
        f->idx_signed = 1;
        if (ipresent && parse_int_type(&it, 1, &f->idx_bits, &f->idx_signed, f->name, st) < 0)
            return -1;
        if (f->type.id == OT_LIST)
            return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                                 "unsupported Arrow type: dictionary of lists in field '%s'",
                                 f->name);
        f->dict = 1;
        /* register the dictionary id */
        size_t i;
        for (i = 0; i < r->n_dicts; i++)
            if (r->dicts[i].id == f->dict_id)
                break;
        if (i < r->n_dicts) {
            if (!ot_type_equal(&r->dicts[i].f->type, &f->type) ||
                r->dicts[i].f->int_bits != f->int_bits ||
                r->dicts[i].f->int_signed != f->int_signed)
                return bad(st, "dictionary id %lld used with two value types",
                           (long long)f->dict_id);
            f->dict_idx = i;
        } else {
            if (r->n_dicts >= OT_IPC_MAX_COLUMNS)
                return bad(st, "too many dictionaries");
            dict *nd = realloc(r->dicts, (r->n_dicts + 1) * sizeof *nd);
            if (!nd)
                ipc_oom();
            r->dicts = nd;
            memset(&nd[r->n_dicts], 0, sizeof *nd);
            nd[r->n_dicts].id = f->dict_id;
            nd[r->n_dicts].f = f;
            colb_init(r, &nd[r->n_dicts].b, f);
            f->dict_idx = r->n_dicts++;
        }
    }
    return 0;
}

static int selected(const ot_ipc_reader *r, const char *name)
{
    for (size_t i = 0; i < r->n_sel; i++)
        if (!strcmp(r->sel[i], name))
            return 1;
    return 0;
}

static int parse_schema(ot_ipc_reader *r, const fb_table *sch, ld_status *st)
{
    int16_t endian = 0;
    int present;
    fb_vec fv;
    if (r->have_schema)
        return bad(st, "a second Schema message");
    if (fb_get_i16(sch, SCHEMA_ENDIANNESS, 0, &endian) < 0)
        return bad(st, "malformed Schema");
    if (endian != 0)
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "big-endian Arrow data is not supported");
    if (fb_get_vector(sch, SCHEMA_FIELDS, 4, &present, &fv) < 0)
        return bad(st, "malformed Schema fields");
    size_t n = present ? fv.n : 0;
    if (n > OT_IPC_MAX_COLUMNS)
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "Arrow schema has %zu columns; at most %d are supported", n,
                             OT_IPC_MAX_COLUMNS);
    r->fields = xcalloc(n, sizeof *r->fields);
    r->n_fields = n;
    for (size_t i = 0; i < n; i++) {
        fb_table ft;
        if (fb_vec_table(&fv, i, &ft) < 0)
            return bad(st, "malformed field %zu", i);
        if (parse_field(r, &ft, &r->fields[i], 0, st) < 0)
            return -1;
    }
    fb_vec mv;
    if (fb_get_vector(sch, SCHEMA_CUSTOM_METADATA, 4, &present, &mv) < 0)
        return bad(st, "malformed Schema metadata");
    if (present && mv.n) {
        r->meta_keys = xcalloc(mv.n, sizeof(char *));
        r->meta_values = xcalloc(mv.n, sizeof(char *));
        for (size_t i = 0; i < mv.n; i++) {
            fb_table kv;
            const char *k = "", *v = "";
            size_t kn = 0, vn = 0;
            int kp, vp;
            if (fb_vec_table(&mv, i, &kv) < 0 || fb_get_string(&kv, KV_KEY, &kp, &k, &kn) < 0 ||
                fb_get_string(&kv, KV_VALUE, &vp, &v, &vn) < 0)
                return bad(st, "malformed Schema metadata entry %zu", i);
            if (r->used > r->max_bytes - (int64_t)(kn + vn))
                return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL,
                                     "decoded Arrow data exceeds the limit of %lld bytes",
                                     (long long)r->max_bytes);
            r->used += (int64_t)(kn + vn);
            r->meta_keys[i] = xstrndup(kp ? k : "", kp ? kn : 0);
            r->meta_values[i] = xstrndup(vp ? v : "", vp ? vn : 0);
            r->n_meta++;
        }
    }
    r->cols = xcalloc(n, sizeof *r->cols);
    r->want = xcalloc(n, 1);
    for (size_t i = 0; i < n; i++) {
        r->want[i] = !r->has_sel || selected(r, r->fields[i].name);
        if (!r->want[i])
            continue;
        colb_init(r, &r->cols[i], &r->fields[i]);
        for (const fdesc *f = &r->fields[i]; f; f = f->child)
            if (f->dict)
                r->dicts[f->dict_idx].needed = 1;
    }
    for (size_t i = 0; !r->has_sel && i < r->n_dicts; i++)
        r->dicts[i].needed = 1;
    r->have_schema = 1;
    return 0;
}

/* ---- reader: record batches ---- */

typedef struct rbctx {
    ot_ipc_reader *r;
    ld_status *st;
    const uint8_t *body;
    size_t blen;
    fb_vec nodes, bufs;
    size_t node_i, buf_i;
    int codec;                 /* -1: none */
    const uint8_t *const *map; /* buffers read piecewise (reader's bufmap) */
    uint8_t **tmp;
    size_t n_tmp, cap_tmp;
    int64_t tmp_bytes;
} rbctx;

static void rb_release(rbctx *c)
{
    for (size_t i = 0; i < c->n_tmp; i++)
        free(c->tmp[i]);
    free(c->tmp);
    c->r->used -= c->tmp_bytes;
    c->tmp = NULL;
    c->n_tmp = c->cap_tmp = 0;
    c->tmp_bytes = 0;
}

static int rb_next_node(rbctx *c, int64_t *len, int64_t *nulls)
{
    if (c->node_i >= c->nodes.n)
        return bad(c->st, "fewer field nodes than the schema needs");
    const uint8_t *p = fb_vec_at(&c->nodes, c->node_i++);
    *len = ld_i64(p);
    *nulls = ld_i64(p + 8);
    /* a null count of -1 means "not computed" (apache-arrow writes it for
     * sliced arrays): the validity bitmap, if any, decides */
    if (*len < 0 || *nulls < -1 || *nulls > *len)
        return bad(c->st, "field node with length %lld and null count %lld", (long long)*len,
                   (long long)*nulls);
    if (*len > c->r->max_bytes)
        return ld_status_set(c->st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL,
                             "Arrow record batch of %lld rows exceeds the limit", (long long)*len);
    return 0;
}

static int decompress(rbctx *c, const uint8_t *src, size_t slen, int64_t hint, uint8_t **out,
                      size_t *olen)
{
    ot_ipc_reader *r = c->r;
    int64_t room = r->max_bytes - r->used;
    /* start from the announced length (+16, so the end of the frame is seen
     * without growing), but do not trust it with a huge allocation: LZ4
     * expands at most ~255x; zstd output grows the buffer below */
    int64_t start = hint > 0 && hint < ((int64_t)1 << 48) ? hint + 16 : 64;
    if (start > (int64_t)slen * 256 + 64)
        start = (int64_t)slen * 256 + 64;
    if (start < 64)
        start = 64;
    if (start > room) {
        if (room < 64)
            goto too_big;
        start = room;
    }
    size_t cap = (size_t)start;
    uint8_t *dst = malloc(cap);
    if (!dst)
        ipc_oom();
    size_t produced = 0;
    int done = 0;
    if (c->codec == OT_IPC_ZSTD) {
        ZSTD_DCtx *z = ZSTD_createDCtx();
        if (!z)
            ipc_oom();
        ZSTD_inBuffer in = {src, slen, 0};
        size_t ret = 1;
        for (;;) {
            if (produced == cap) {
                if ((int64_t)cap >= room) {
                    ZSTD_freeDCtx(z);
                    free(dst);
                    goto too_big;
                }
                cap = (int64_t)cap * 2 > room ? (size_t)room : cap * 2;
                uint8_t *nd = realloc(dst, cap);
                if (!nd)
                    ipc_oom();
                dst = nd;
            }
            ZSTD_outBuffer ob = {dst, cap, produced};
            ret = ZSTD_decompressStream(z, &ob, &in);
            produced = ob.pos;
            if (ZSTD_isError(ret))
                break;
            if (in.pos == in.size && ret == 0)
                break;
            if (in.pos == in.size && ob.pos < ob.size)
                break; /* input ended inside a frame */
        }
        ZSTD_freeDCtx(z);
        done = !ZSTD_isError(ret) && ret == 0 && in.pos == in.size;
    } else {
        LZ4F_dctx *z;
        if (LZ4F_isError(LZ4F_createDecompressionContext(&z, LZ4F_VERSION)))
            ipc_oom();
        size_t pos = 0, ret = 1;
        for (;;) {
            if (produced == cap) {
                if ((int64_t)cap >= room) {
                    LZ4F_freeDecompressionContext(z);
                    free(dst);
                    goto too_big;
                }
                cap = (int64_t)cap * 2 > room ? (size_t)room : cap * 2;
                uint8_t *nd = realloc(dst, cap);
                if (!nd)
                    ipc_oom();
                dst = nd;
            }
            size_t osz = cap - produced, isz = slen - pos;
            ret = LZ4F_decompress(z, dst + produced, &osz, src + pos, &isz, NULL);
            produced += osz;
            pos += isz;
            if (LZ4F_isError(ret))
                break;
            if (pos == slen && ret == 0)
                break;
            if (osz == 0 && isz == 0 && produced < cap)
                break; /* no progress: input ended inside a frame */
        }
        LZ4F_freeDecompressionContext(z);
        done = !LZ4F_isError(ret) && ret == 0 && pos == slen;
    }
    if (!done) {
        free(dst);
        return bad(c->st, "corrupt %s-compressed buffer",
                   c->codec == OT_IPC_ZSTD ? "ZSTD" : "LZ4_FRAME");
    }
    /* The length prefix should equal `produced`; some writers put the
     * compressed length there, so the frame's own end is what counts. */
    if (c->n_tmp == c->cap_tmp) {
        c->cap_tmp = c->cap_tmp ? c->cap_tmp * 2 : 8;
        uint8_t **nt = realloc(c->tmp, c->cap_tmp * sizeof *nt);
        if (!nt)
            ipc_oom();
        c->tmp = nt;
    }
    c->tmp[c->n_tmp++] = dst;
    c->tmp_bytes += (int64_t)cap;
    r->used += (int64_t)cap;
    *out = dst;
    *olen = produced;
    return 0;
too_big:
    return ld_status_set(c->st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL,
                         "decoded Arrow data exceeds the limit of %lld bytes",
                         (long long)r->max_bytes);
}

static int rb_next_buffer(rbctx *c, const uint8_t **p, size_t *size)
{
    if (c->buf_i >= c->bufs.n)
        return bad(c->st, "fewer buffers than the schema needs");
    const uint8_t *e = fb_vec_at(&c->bufs, c->buf_i++);
    int64_t off = ld_i64(e), len = ld_i64(e + 8);
    if (off < 0 || len < 0 || (uint64_t)off > c->blen || (uint64_t)len > c->blen - (size_t)off)
        return bad(c->st, "buffer [%lld, +%lld) outside the %zu-byte body", (long long)off,
                   (long long)len, c->blen);
    if (c->map && !c->map[c->buf_i - 1])
        return bad(c->st, "buffer %zu was not read", c->buf_i - 1);
    *p = c->map ? c->map[c->buf_i - 1] : c->body + off;
    *size = (size_t)len;
    if (c->codec < 0 || len == 0)
        return 0;
    if (len < 8)
        return bad(c->st, "compressed buffer of %lld bytes has no length prefix", (long long)len);
    int64_t ulen = ld_i64(*p);
    if (ulen == -1) {
        *p += 8;
        *size -= 8;
        return 0;
    }
    if (ulen < 0)
        return bad(c->st, "compressed buffer with uncompressed length %lld", (long long)ulen);
    uint8_t *d = NULL;
    if (decompress(c, *p + 8, *size - 8, ulen, &d, size) < 0)
        return -1;
    *p = d;
    return 0;
}

static int check_offsets(rbctx *c, const view *v, int64_t limit, const char *name)
{
    int64_t prev = view_off(v, 0);
    if (prev < 0)
        return bad(c->st, "field '%s': negative offset", name);
    for (int64_t i = 1; i <= v->length; i++) {
        int64_t o = view_off(v, i);
        if (o < prev)
            return bad(c->st, "field '%s': offsets decrease at row %lld", name, (long long)i);
        prev = o;
    }
    if (prev > limit)
        return bad(c->st, "field '%s': offset %lld beyond its %lld-byte data", name,
                   (long long)prev, (long long)limit);
    return 0;
}

static dict *find_dict(ot_ipc_reader *r, int64_t id)
{
    for (size_t i = 0; i < r->n_dicts; i++)
        if (r->dicts[i].id == id)
            return &r->dicts[i];
    return NULL;
}

/* Parse the next node of field f (and its children) into v. */
static int parse_view(rbctx *c, const fdesc *f, int use_dict, view *v)
{
    int64_t len = 0, nulls = 0;
    const uint8_t *p;
    size_t sz;
    memset(v, 0, sizeof *v);
    v->id = f->type.id;
    v->int_bits = f->int_bits;
    v->int_signed = f->int_signed;
    if (rb_next_node(c, &len, &nulls) < 0)
        return -1;
    v->length = len;
    if (f->type.id == OT_NULL && !(use_dict && f->dict))
        return 0; /* no buffers */
    if (rb_next_buffer(c, &p, &sz) < 0)
        return -1;
    if (nulls > 0 || (nulls == -1 && sz > 0)) {
        if (sz < (size_t)((len + 7) >> 3))
            return bad(c->st, "field '%s': validity bitmap of %zu bytes for %lld rows", f->name, sz,
                       (long long)len);
        v->validity = p;
    }
    if (use_dict && f->dict) {
        v->d = &c->r->dicts[f->dict_idx];
        v->idx_bits = f->idx_bits;
        v->idx_signed = f->idx_signed;
        if (rb_next_buffer(c, &p, &sz) < 0)
            return -1;
        if (sz / (size_t)(f->idx_bits / 8) < (size_t)len)
            return bad(c->st, "field '%s': %zu bytes of dictionary indices for %lld rows", f->name,
                       sz, (long long)len);
        v->values = p;
        return 0;
    }
    switch (f->type.id) {
    case OT_BOOL:
        if (rb_next_buffer(c, &p, &sz) < 0)
            return -1;
        if (sz < (size_t)((len + 7) >> 3))
            return bad(c->st, "field '%s': %zu bytes of booleans for %lld rows", f->name, sz,
                       (long long)len);
        v->values = p;
        return 0;
    case OT_INT32:
    case OT_INT64:
    case OT_FLOAT32:
    case OT_FLOAT64:
    case OT_TIMESTAMP:
    case OT_DATE32: {
        size_t w = (size_t)f->int_bits / 8;
        if (rb_next_buffer(c, &p, &sz) < 0)
            return -1;
        if (sz / w < (size_t)len)
            return bad(c->st, "field '%s': %zu bytes of values for %lld rows of %zu bytes", f->name,
                       sz, (long long)len, w);
        v->values = p;
        return 0;
    }
    case OT_UTF8:
    case OT_BINARY:
    case OT_LARGE_UTF8:
    case OT_LIST: {
        size_t ow = f->type.id == OT_LARGE_UTF8 ? 8 : 4;
        v->wide_offsets = ow == 8;
        if (rb_next_buffer(c, &p, &sz) < 0)
            return -1;
        if (sz / ow < (size_t)len + 1) {
            if (!(len == 0 && sz == 0))
                return bad(c->st, "field '%s': %zu bytes of offsets for %lld rows", f->name, sz,
                           (long long)len);
        } else {
            v->offsets = p;
        }
        if (f->type.id == OT_LIST) {
            v->child = xcalloc(1, sizeof *v->child);
            if (parse_view(c, f->child, use_dict, v->child) < 0)
                return -1;
            return check_offsets(c, v, v->child->length, f->name);
        }
        if (rb_next_buffer(c, &p, &sz) < 0)
            return -1;
        v->data = p;
        v->data_len = (int64_t)sz;
        return check_offsets(c, v, v->data_len, f->name);
    }
    default:
        return bad(c->st, "field '%s': unexpected type", f->name);
    }
}

/* The field nodes and buffers field f takes in a batch: what parse_view
 * consumes for it. */
static void field_shape(const fdesc *f, int use_dict, size_t *nodes, size_t *bufs)
{
    *nodes += 1;
    if (f->type.id == OT_NULL && !(use_dict && f->dict))
        return;
    *bufs += 1; /* validity */
    if (use_dict && f->dict) {
        *bufs += 1; /* indices */
        return;
    }
    switch (f->type.id) {
    case OT_UTF8:
    case OT_BINARY:
    case OT_LARGE_UTF8:
        *bufs += 2; /* offsets, data */
        return;
    case OT_LIST:
        *bufs += 1; /* offsets */
        field_shape(f->child, use_dict, nodes, bufs);
        return;
    default:
        *bufs += 1; /* values */
        return;
    }
}

/* Step over the nodes and buffers of a field that is not decoded: nothing
 * of its body is looked at. */
static int skip_field(rbctx *c, const fdesc *f)
{
    size_t nodes = 0, bufs = 0;
    field_shape(f, 1, &nodes, &bufs);
    if (c->nodes.n - c->node_i < nodes)
        return bad(c->st, "fewer field nodes than the schema needs");
    if (c->bufs.n - c->buf_i < bufs)
        return bad(c->st, "fewer buffers than the schema needs");
    c->node_i += nodes;
    c->buf_i += bufs;
    return 0;
}

static int rb_begin(rbctx *c, const fb_table *rb, int64_t *length)
{
    int present;
    if (fb_get_i64(rb, RB_LENGTH, 0, length) < 0 || *length < 0)
        return bad(c->st, "malformed RecordBatch length");
    if (fb_get_vector(rb, RB_NODES, 16, &present, &c->nodes) < 0)
        return bad(c->st, "malformed RecordBatch nodes");
    if (!present)
        c->nodes.n = 0;
    if (fb_get_vector(rb, RB_BUFFERS, 16, &present, &c->bufs) < 0)
        return bad(c->st, "malformed RecordBatch buffers");
    if (!present)
        c->bufs.n = 0;
    fb_table bc;
    if (fb_get_table(rb, RB_COMPRESSION, &present, &bc) < 0)
        return bad(c->st, "malformed BodyCompression");
    c->codec = -1;
    if (present) {
        int8_t codec = 0, method = 0;
        uint8_t u;
        if (fb_get_u8(&bc, BC_CODEC, 0, &u) < 0)
            return bad(c->st, "malformed BodyCompression");
        codec = (int8_t)u;
        if (fb_get_u8(&bc, BC_METHOD, 0, &u) < 0)
            return bad(c->st, "malformed BodyCompression");
        method = (int8_t)u;
        if (method != 0)
            return bad(c->st, "unsupported body compression method %d", method);
        if (codec != OT_IPC_LZ4_FRAME && codec != OT_IPC_ZSTD)
            return bad(c->st, "unsupported compression codec %d", codec);
        c->codec = codec;
    }
    return 0;
}

static int read_record_batch(ot_ipc_reader *r, const fb_table *rb, const uint8_t *body, size_t blen,
                             ld_status *st)
{
    rbctx c = {.r = r, .st = st, .body = body, .blen = blen, .map = r->bufmap};
    int64_t length;
    if (!r->have_schema)
        return bad(st, "RecordBatch before the Schema");
    if (rb_begin(&c, rb, &length) < 0)
        return -1;
    if (length > r->max_bytes - r->n_rows)
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL,
                             "Arrow stream has more rows than the limit allows");
    view *views = xcalloc(r->n_fields, sizeof *views);
    int rc = 0;
    for (size_t i = 0; i < r->n_fields && rc == 0; i++) {
        if (!r->want[i]) {
            rc = skip_field(&c, &r->fields[i]);
            continue;
        }
        rc = parse_view(&c, &r->fields[i], 1, &views[i]);
        if (rc == 0 && views[i].length != length)
            rc = bad(st, "column '%s' has %lld rows in a batch of %lld", r->fields[i].name,
                     (long long)views[i].length, (long long)length);
    }
    for (size_t i = 0; i < r->n_fields && rc == 0; i++)
        if (r->want[i])
            rc = app_view(r, &r->cols[i], &views[i], 0, length, st);
    for (size_t i = 0; i < r->n_fields; i++)
        view_free_children(&views[i]);
    free(views);
    rb_release(&c);
    if (rc == 0)
        r->n_rows += length;
    return rc;
}

static int read_dictionary_batch(ot_ipc_reader *r, const fb_table *db, const uint8_t *body,
                                 size_t blen, ld_status *st)
{
    rbctx c = {.r = r, .st = st, .body = body, .blen = blen};
    int64_t id, length;
    uint8_t delta;
    fb_table rb;
    int present;
    if (!r->have_schema)
        return bad(st, "DictionaryBatch before the Schema");
    if (fb_get_i64(db, DB_ID, 0, &id) < 0 || fb_get_u8(db, DB_IS_DELTA, 0, &delta) < 0 ||
        fb_get_table(db, DB_DATA, &present, &rb) < 0 || !present)
        return bad(st, "malformed DictionaryBatch");
    dict *d = find_dict(r, id);
    if (!d)
        return bad(st, "DictionaryBatch for unknown dictionary id %lld", (long long)id);
    if (!d->needed)
        return 0; /* only unselected fields use it */
    if (rb_begin(&c, &rb, &length) < 0)
        return -1;
    view v;
    int rc = parse_view(&c, d->f, 0, &v);
    if (rc == 0 && v.length != length)
        rc = bad(st, "dictionary %lld has %lld values in a batch of %lld", (long long)id,
                 (long long)v.length, (long long)length);
    if (rc == 0) {
        if (!delta || !d->loaded) {
            r->used -= (int64_t)colb_caps(&d->b);
            colb_free(&d->b);
            colb_init(r, &d->b, d->f);
        }
        rc = app_view(r, &d->b, &v, 0, length, st);
        d->loaded = 1;
    }
    view_free_children(&v);
    rb_release(&c);
    return rc;
}

static int feed_message(ot_ipc_reader *r, const fb_table *msg, const uint8_t *body, size_t blen,
                        ld_status *st)
{
    int16_t version;
    uint8_t htype;
    fb_table h;
    int present;
    if (fb_get_i16(msg, MSG_VERSION, 0, &version) < 0 ||
        fb_get_u8(msg, MSG_HEADER_TYPE, 0, &htype) < 0 ||
        fb_get_table(msg, MSG_HEADER, &present, &h) < 0)
        return bad(st, "malformed Message");
    if (version < MD_V4)
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "Arrow IPC metadata version V%d is not supported (V4 or later)",
                             version + 1);
    if (!present)
        return bad(st, "Message without a header");
    switch (htype) {
    case HDR_SCHEMA:
        return parse_schema(r, &h, st);
    case HDR_DICTIONARY_BATCH:
        return read_dictionary_batch(r, &h, body, blen, st);
    case HDR_RECORD_BATCH:
        return read_record_batch(r, &h, body, blen, st);
    default:
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "unsupported Arrow IPC message type %u (tensors are not supported)",
                             (unsigned)htype);
    }
}

static int reader_fail(ot_ipc_reader *r, ld_status *st)
{
    r->failed = 1;
    r->err = *st;
    return -1;
}

int ot_ipc_reader_feed(ot_ipc_reader *r, const uint8_t *header, size_t hlen, const uint8_t *body,
                       size_t blen, ld_status *st)
{
    if (r->failed) {
        *st = r->err;
        return -1;
    }
    if (hlen == 0)
        return 0;
    fb_table msg;
    if (fb_root(header, hlen, &msg) < 0) {
        bad(st, "malformed Message flatbuffer");
        return reader_fail(r, st);
    }
    if (!body)
        blen = 0;
    if (feed_message(r, &msg, body, blen, st) < 0)
        return reader_fail(r, st);
    return 0;
}

ot_table *ot_ipc_reader_finish(ot_ipc_reader *r, ld_status *st)
{
    if (r->failed) {
        *st = r->err;
        return NULL;
    }
    if (!r->have_schema) {
        bad(st, "the stream has no Schema message");
        return NULL;
    }
    size_t n = 0;
    for (size_t i = 0; i < r->n_fields; i++)
        n += r->want[i];
    ot_table *t = ot_table_new(n, r->n_rows);
    for (size_t i = 0, k = 0; i < r->n_fields; i++)
        if (r->want[i])
            colb_take(&r->cols[i], &r->fields[i], &t->cols[k++]);
    t->meta_keys = r->meta_keys;
    t->meta_values = r->meta_values;
    t->n_meta = r->n_meta;
    r->meta_keys = r->meta_values = NULL;
    r->n_meta = 0;
    reader_clear(r);
    return t;
}

int ot_ipc_read_stream_ex(const uint8_t *data, size_t len, int64_t max_bytes, ot_table **out,
                          ld_status *st)
{
    *out = NULL;
    ot_ipc_reader *r = ot_ipc_reader_new();
    ot_ipc_reader_set_max_bytes(r, max_bytes);
    size_t pos = 0;
    int rc = 0;
    while (rc == 0 && pos < len) {
        if (len - pos < 4) {
            rc = bad(st, "truncated message length at byte %zu", pos);
            break;
        }
        uint32_t w = fb_ld_u32(data + pos);
        pos += 4;
        if (w == CONTINUATION) {
            if (len - pos < 4) {
                rc = bad(st, "truncated message length at byte %zu", pos);
                break;
            }
            w = fb_ld_u32(data + pos);
            pos += 4;
        }
        if (w == 0)
            break; /* end of stream */
        if (w > INT32_MAX || w > len - pos) {
            rc = bad(st, "message metadata of %u bytes at byte %zu overruns the stream", w, pos);
            break;
        }
        const uint8_t *hdr = data + pos;
        pos += w;
        fb_table msg;
        int64_t body_len;
        if (fb_root(hdr, w, &msg) < 0 || fb_get_i64(&msg, MSG_BODY_LENGTH, 0, &body_len) < 0) {
            rc = bad(st, "malformed Message flatbuffer");
            break;
        }
        if (body_len < 0 || (uint64_t)body_len > len - pos) {
            rc = bad(st, "message body of %lld bytes overruns the stream", (long long)body_len);
            break;
        }
        rc = ot_ipc_reader_feed(r, hdr, w, data + pos, (size_t)body_len, st);
        pos += (size_t)body_len;
    }
    if (rc == 0) {
        *out = ot_ipc_reader_finish(r, st);
        if (!*out)
            rc = -1;
    }
    ot_ipc_reader_free(r);
    return rc;
}

int ot_ipc_read_stream(const uint8_t *data, size_t len, ot_table **out, ld_status *st)
{
    return ot_ipc_read_stream_ex(data, len, OT_IPC_DEFAULT_MAX_BYTES, out, st);
}

/* ---- the file format (Feather v2) ----
 * "ARROW1" + 2 bytes of padding, the streaming format, a Footer flatbuffer,
 * its int32 length, "ARROW1". The Footer holds the schema and one Block
 * {offset: int64, metaDataLength: int32, padding, bodyLength: int64} per
 * dictionary and record batch. Some writers (apache-arrow's JS writer) put
 * the schema in the footer only, so the footer is what is read. */

enum { FOOTER_SCHEMA = 1, FOOTER_DICTIONARIES = 2, FOOTER_RECORD_BATCHES = 3 };
#define FILE_MAGIC     "ARROW1"
#define FILE_BLOCK_LEN 24

/* A Block's fields: offset, metadata length (prefix included), body length;
 * checked against a file of len bytes. */
static int block_of(const uint8_t *blk, size_t len, int64_t *off, int32_t *meta_len,
                    int64_t *body_len, ld_status *st)
{
    *off = ld_i64(blk);
    *body_len = ld_i64(blk + 16);
    *meta_len = (int32_t)fb_ld_u32(blk + 8);
    if (*off < 8 || *meta_len < 8 || *body_len < 0 || (uint64_t)*off > len ||
        (uint64_t)*meta_len > len - (uint64_t)*off ||
        (uint64_t)*body_len > len - (uint64_t)*off - (uint64_t)*meta_len)
        return bad(st, "file block at %lld overruns the file", (long long)*off);
    return 0;
}

/* Feed the block's message at p (meta_len + body_len bytes). */
static int feed_block_at(ot_ipc_reader *r, const uint8_t *p, int64_t off, int32_t meta_len,
                         int64_t body_len, ld_status *st)
{
    size_t prefix = 4;
    uint32_t w = fb_ld_u32(p);
    if (w == CONTINUATION) {
        w = fb_ld_u32(p + 4);
        prefix = 8;
    }
    if (w > (uint32_t)meta_len - prefix)
        return bad(st, "file block at %lld: message metadata overruns the block", (long long)off);
    return ot_ipc_reader_feed(r, p + prefix, w, p + meta_len, (size_t)body_len, st);
}

/* Feed the message a Block points at. */
static int feed_block(ot_ipc_reader *r, const uint8_t *data, size_t len, const uint8_t *blk,
                      ld_status *st)
{
    int64_t off, body_len;
    int32_t meta_len;
    if (block_of(blk, len, &off, &meta_len, &body_len, st) != 0)
        return -1;
    return feed_block_at(r, data + off, off, meta_len, body_len, st);
}

/* 1 and the footer table when data is a file with a well-formed footer. */
static int file_footer(const uint8_t *data, size_t len, fb_table *footer)
{
    if (len < 8 + 10 || memcmp(data, FILE_MAGIC, 6) != 0 || memcmp(data + len - 6, FILE_MAGIC, 6))
        return 0;
    uint32_t flen = fb_ld_u32(data + len - 10);
    if (flen == 0 || flen > len - 8 - 10)
        return 0;
    return fb_root(data + len - 10 - flen, flen, footer) == 0;
}

int ot_ipc_read_file_ex(const uint8_t *data, size_t len, int64_t max_bytes, ot_table **out,
                        ld_status *st)
{
    fb_table footer, sch;
    fb_vec dicts, batches;
    int has_schema, has_dicts, has_batches;
    *out = NULL;
    if (len < 8 || memcmp(data, FILE_MAGIC, 6) != 0)
        return ot_ipc_read_stream_ex(data, len, max_bytes, out, st);
    if (!file_footer(data, len, &footer))
        /* no usable footer (e.g. a truncated file): the stream part */
        return ot_ipc_read_stream_ex(data + 8, len - 8, max_bytes, out, st);
    if (fb_get_table(&footer, FOOTER_SCHEMA, &has_schema, &sch) < 0 || !has_schema ||
        fb_get_vector(&footer, FOOTER_DICTIONARIES, FILE_BLOCK_LEN, &has_dicts, &dicts) < 0 ||
        fb_get_vector(&footer, FOOTER_RECORD_BATCHES, FILE_BLOCK_LEN, &has_batches, &batches) < 0)
        return bad(st, "malformed file footer");
    ot_ipc_reader *r = ot_ipc_reader_new();
    ot_ipc_reader_set_max_bytes(r, max_bytes);
    int rc = parse_schema(r, &sch, st);
    for (size_t i = 0; rc == 0 && has_dicts && i < dicts.n; i++)
        rc = feed_block(r, data, len, fb_vec_at(&dicts, i), st);
    for (size_t i = 0; rc == 0 && has_batches && i < batches.n; i++)
        rc = feed_block(r, data, len, fb_vec_at(&batches, i), st);
    if (rc == 0 && !(*out = ot_ipc_reader_finish(r, st)))
        rc = -1;
    ot_ipc_reader_free(r);
    return rc;
}

int ot_ipc_read_file(const uint8_t *data, size_t len, ot_table **out, ld_status *st)
{
    return ot_ipc_read_file_ex(data, len, OT_IPC_DEFAULT_MAX_BYTES, out, st);
}

/* n bytes at off, or fewer at the end of the file; -1 on an error. */
static ssize_t pread_full(int fd, void *buf, size_t n, off_t off)
{
    size_t got = 0;
    while (got < n) {
        ssize_t k = pread(fd, (uint8_t *)buf + got, n - got, off + (off_t)got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -1;
        if (k == 0)
            break;
        got += (size_t)k;
    }
    return (ssize_t)got;
}

/* A file read message by message: buffers reused across its messages. */
typedef struct fdread {
    int fd;
    size_t size; /* the file's size when opened */
    uint8_t *meta, *body;
    size_t meta_cap, body_cap;
    const uint8_t **map; /* read_selected: buffer i of the batch */
    size_t *pos;         /* ... at body + pos[i] */
    size_t map_cap;
    struct fdrun {
        int64_t off, len; /* in the body */
        size_t dst;       /* in f->body */
    } * runs;
    size_t runs_cap;
} fdread;

static void fdread_free(fdread *f)
{
    free(f->meta);
    free(f->body);
    free(f->map);
    free(f->pos);
    free(f->runs);
}

static void grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return;
    void *np = realloc(*p, need * elem);
    if (!np)
        ipc_oom();
    *p = np;
    *cap = need;
}

/* n bytes of the file at off into p. A file that ends early was rewritten
 * meanwhile (e.g. truncated first): a decoding error, not a crash. */
static int fd_read(const fdread *f, void *p, size_t n, int64_t off, ld_status *st)
{
    ssize_t got = pread_full(f->fd, p, n, (off_t)off);
    if (got < 0)
        return ld_status_set(st, GRPC_STATUS_INTERNAL, NULL, "reading the file at byte %lld: %s",
                             (long long)off, strerror(errno));
    if ((size_t)got != n)
        return bad(st, "the file ends early at byte %lld", (long long)off + got);
    return 0;
}

/* With a column selection, a record batch's body is read only where the
 * selected fields' buffers are: each run of adjacent buffers (the padding
 * between them included) with one pread into f->body, f->map[i] pointing at
 * buffer i; the other fields' bytes are never read. 1 when this does not
 * apply (no selection, not a record batch, no schema yet, buffers out of
 * range or out of order): the whole body is read and the decoder judges it. */
static int read_selected(ot_ipc_reader *r, fdread *f, const fb_table *msg, int64_t body_off,
                         int64_t body_len, ld_status *st)
{
    static const uint8_t empty[8];
    uint8_t htype;
    fb_table h;
    fb_vec bufs;
    int present;
    if (!r->has_sel || !r->have_schema || r->failed ||
        fb_get_u8(msg, MSG_HEADER_TYPE, 0, &htype) < 0 || htype != HDR_RECORD_BATCH ||
        fb_get_table(msg, MSG_HEADER, &present, &h) < 0 || !present ||
        fb_get_vector(&h, RB_BUFFERS, 16, &present, &bufs) < 0 || !present)
        return 1;
    size_t cap = f->map_cap;
    grow((void **)&f->map, &cap, bufs.n + 1, sizeof *f->map);
    grow((void **)&f->pos, &f->map_cap, bufs.n + 1, sizeof *f->pos);
    grow((void **)&f->runs, &f->runs_cap, bufs.n + 1, sizeof *f->runs);
    memset(f->map, 0, (bufs.n + 1) * sizeof *f->map);
    size_t bi = 0, n_runs = 0;
    for (size_t i = 0; i < r->n_fields; i++) {
        size_t nodes = 0, nb = 0;
        field_shape(&r->fields[i], 1, &nodes, &nb);
        for (size_t j = bi; r->want[i] && j < bi + nb && j < bufs.n; j++) {
            const uint8_t *e = fb_vec_at(&bufs, j);
            int64_t off = ld_i64(e), len = ld_i64(e + 8);
            if (off < 0 || len < 0 || off > body_len || len > body_len - off)
                return 1;
            if (len == 0) {
                f->map[j] = empty;
                continue;
            }
            struct fdrun *last = n_runs ? &f->runs[n_runs - 1] : NULL;
            if (last && off >= last->off + last->len && off - (last->off + last->len) <= 64) {
                last->len = off + len - last->off;
            } else if (last && off < last->off + last->len) {
                return 1; /* overlapping or backwards: not how writers lay bodies out */
            } else {
                size_t dst = last ? ((last->dst + (size_t)last->len + 7) & ~(size_t)7) : 0;
                f->runs[n_runs++] = (struct fdrun){off, len, dst};
                last = &f->runs[n_runs - 1];
            }
            f->pos[j] = last->dst + (size_t)(off - last->off);
            f->map[j] = empty + 1; /* set below */
        }
        bi += nb;
    }
    size_t total = n_runs ? f->runs[n_runs - 1].dst + (size_t)f->runs[n_runs - 1].len : 0;
    if (total > (uint64_t)body_len)
        return 1;
    grow((void **)&f->body, &f->body_cap, total + 1, 1);
    for (size_t k = 0; k < n_runs; k++)
        if (fd_read(f, f->body + f->runs[k].dst, (size_t)f->runs[k].len, body_off + f->runs[k].off,
                    st) != 0)
            return -1;
    for (size_t j = 0; j < bufs.n; j++)
        if (f->map[j] == empty + 1)
            f->map[j] = f->body + f->pos[j];
    return 0;
}

/* A DictionaryBatch that only unselected fields use: its body is not read. */
static int dict_unneeded(ot_ipc_reader *r, const fb_table *msg)
{
    uint8_t htype;
    fb_table h;
    int present;
    int64_t id;
    if (!r->has_sel || !r->have_schema || fb_get_u8(msg, MSG_HEADER_TYPE, 0, &htype) < 0 ||
        htype != HDR_DICTIONARY_BATCH || fb_get_table(msg, MSG_HEADER, &present, &h) < 0 ||
        !present || fb_get_i64(&h, DB_ID, 0, &id) < 0)
        return 0;
    const dict *d = find_dict(r, id);
    return d && !d->needed;
}

/* Feed the message whose metadata (w bytes, no framing) is at hdr and whose
 * body is body_len bytes at body_off in the file (checked by the caller). */
static int feed_fd_message(ot_ipc_reader *r, fdread *f, const uint8_t *hdr, size_t w,
                           int64_t body_off, int64_t body_len, ld_status *st)
{
    fb_table msg;
    if (r->failed) {
        *st = r->err;
        return -1;
    }
    if (w == 0)
        return 0;
    if (fb_root(hdr, w, &msg) < 0) {
        bad(st, "malformed Message flatbuffer");
        return reader_fail(r, st);
    }
    int rc = read_selected(r, f, &msg, body_off, body_len, st);
    if (rc < 0)
        return reader_fail(r, st);
    if (rc == 0) {
        r->bufmap = f->map;
        rc = feed_message(r, &msg, NULL, (size_t)body_len, st);
        r->bufmap = NULL;
        return rc < 0 ? reader_fail(r, st) : 0;
    }
    if (dict_unneeded(r, &msg))
        return ot_ipc_reader_feed(r, hdr, w, NULL, 0, st);
    grow((void **)&f->body, &f->body_cap, (size_t)body_len + 1, 1);
    if (fd_read(f, f->body, (size_t)body_len, body_off, st) != 0)
        return reader_fail(r, st);
    return ot_ipc_reader_feed(r, hdr, w, f->body, (size_t)body_len, st);
}

/* Feed the message a footer Block points at. */
static int feed_block_fd(ot_ipc_reader *r, fdread *f, const uint8_t *blk, ld_status *st)
{
    int64_t off, body_len;
    int32_t meta_len;
    if (block_of(blk, f->size, &off, &meta_len, &body_len, st) != 0)
        return -1;
    grow((void **)&f->meta, &f->meta_cap, (size_t)meta_len, 1);
    if (fd_read(f, f->meta, (size_t)meta_len, off, st) != 0)
        return -1;
    size_t prefix = 4;
    uint32_t w = fb_ld_u32(f->meta);
    if (w == CONTINUATION) {
        w = fb_ld_u32(f->meta + 4);
        prefix = 8;
    }
    if (w > (uint32_t)meta_len - prefix)
        return bad(st, "file block at %lld: message metadata overruns the block", (long long)off);
    return feed_fd_message(r, f, f->meta + prefix, w, off + meta_len, body_len, st);
}

/* An Arrow IPC file decoded through its footer one block at a time: the
 * memory is the decoded table plus the largest block (with a selection, the
 * selected part of the largest block), not the file. 1 (nothing done, the
 * reader untouched) when the file has no magic or no usable footer. */
static int read_fd_blocks(ot_ipc_reader *r, fdread *f, ld_status *st)
{
    uint8_t head[8], tail[10];
    size_t size = f->size;
    if (size < 8 + 10 || pread_full(f->fd, head, 8, 0) != 8 || memcmp(head, FILE_MAGIC, 6) != 0 ||
        pread_full(f->fd, tail, 10, (off_t)(size - 10)) != 10 ||
        memcmp(tail + 4, FILE_MAGIC, 6) != 0)
        return 1;
    uint32_t flen = fb_ld_u32(tail);
    if (flen == 0 || flen > size - 8 - 10)
        return 1;
    uint8_t *fbuf = malloc(flen);
    fb_table footer, sch;
    if (!fbuf)
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
    if (pread_full(f->fd, fbuf, flen, (off_t)(size - 10 - flen)) != (ssize_t)flen ||
        fb_root(fbuf, flen, &footer) != 0) {
        free(fbuf);
        return 1;
    }
    fb_vec dicts, batches;
    int has_schema, has_dicts, has_batches;
    if (fb_get_table(&footer, FOOTER_SCHEMA, &has_schema, &sch) < 0 || !has_schema ||
        fb_get_vector(&footer, FOOTER_DICTIONARIES, FILE_BLOCK_LEN, &has_dicts, &dicts) < 0 ||
        fb_get_vector(&footer, FOOTER_RECORD_BATCHES, FILE_BLOCK_LEN, &has_batches, &batches) < 0) {
        free(fbuf);
        return bad(st, "malformed file footer");
    }
    int rc = parse_schema(r, &sch, st);
    for (size_t i = 0; rc == 0 && has_dicts && i < dicts.n; i++)
        rc = feed_block_fd(r, f, fb_vec_at(&dicts, i), st);
    for (size_t i = 0; rc == 0 && has_batches && i < batches.n; i++)
        rc = feed_block_fd(r, f, fb_vec_at(&batches, i), st);
    free(fbuf);
    return rc;
}

/* The messages of a stream from byte pos of the file up to its
 * end-of-stream marker or the end of the file, one at a time. */
static int read_fd_stream(ot_ipc_reader *r, fdread *f, size_t pos, ld_status *st)
{
    while (pos < f->size) {
        uint8_t pre[8];
        size_t avail = f->size - pos < 8 ? f->size - pos : 8;
        if (avail < 4)
            return bad(st, "truncated message length at byte %zu", pos);
        if (fd_read(f, pre, avail, (int64_t)pos, st) != 0)
            return -1;
        uint32_t w = fb_ld_u32(pre);
        size_t prefix = 4;
        if (w == CONTINUATION) {
            if (avail < 8)
                return bad(st, "truncated message length at byte %zu", pos + 4);
            w = fb_ld_u32(pre + 4);
            prefix = 8;
        }
        if (w == 0)
            break; /* end of stream */
        pos += prefix;
        if (w > INT32_MAX || w > f->size - pos)
            return bad(st, "message metadata of %u bytes at byte %zu overruns the stream", w, pos);
        grow((void **)&f->meta, &f->meta_cap, w, 1);
        if (fd_read(f, f->meta, w, (int64_t)pos, st) != 0)
            return -1;
        pos += w;
        fb_table msg;
        int64_t body_len;
        if (fb_root(f->meta, w, &msg) < 0 || fb_get_i64(&msg, MSG_BODY_LENGTH, 0, &body_len) < 0)
            return bad(st, "malformed Message flatbuffer");
        if (body_len < 0 || (uint64_t)body_len > f->size - pos)
            return bad(st, "message body of %lld bytes overruns the stream", (long long)body_len);
        if (feed_fd_message(r, f, f->meta, w, (int64_t)pos, body_len, st) != 0)
            return -1;
        pos += (size_t)body_len;
    }
    return 0;
}

int ot_ipc_read_path_cols(const char *path, const char *const *names, size_t n, ot_table **out,
                          ld_status *st)
{
    /* pread, not mmap: a file rewritten in place while it is decoded
     * (pandas' to_feather truncates first) must give a decoding error, not
     * SIGBUS */
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ld_status_set(st, GRPC_STATUS_NOT_FOUND, NULL, "cannot open %s", path);
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL, "%s is not a regular file",
                             path);
    }
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    ot_ipc_reader *r = ot_ipc_reader_new();
    ot_ipc_reader_select(r, names, n);
    fdread f = {.fd = fd, .size = (size_t)sb.st_size};
    /* the file format: block by block through the footer */
    int rc = read_fd_blocks(r, &f, st);
    if (rc == 1) {
        /* a stream, or a file without a usable footer: its stream part */
        uint8_t head[8];
        size_t start =
                f.size >= 8 && pread_full(fd, head, 8, 0) == 8 && memcmp(head, FILE_MAGIC, 6) == 0
                        ? 8
                        : 0;
        rc = read_fd_stream(r, &f, start, st);
    }
    if (rc == 0 && !(*out = ot_ipc_reader_finish(r, st)))
        rc = -1;
    ot_ipc_reader_free(r);
    fdread_free(&f);
    close(fd);
    return rc;
}

int ot_ipc_read_path(const char *path, ot_table **out, ld_status *st)
{
    return ot_ipc_read_path_cols(path, NULL, 0, out, st);
}

/* ---- encoder ---- */

static int type_tag(ot_type_id id)
{
    switch (id) {
    case OT_NULL:
        return T_NULL;
    case OT_BOOL:
        return T_BOOL;
    case OT_INT32:
    case OT_INT64:
        return T_INT;
    case OT_FLOAT32:
    case OT_FLOAT64:
        return T_FLOAT;
    case OT_UTF8:
        return T_UTF8;
    case OT_LARGE_UTF8:
        return T_LARGE_UTF8;
    case OT_BINARY:
        return T_BINARY;
    case OT_TIMESTAMP:
        return T_TIMESTAMP;
    case OT_DATE32:
        return T_DATE;
    case OT_LIST:
        return T_LIST;
    }
    return -1;
}

static int write_field(fb_builder *b, const char *name, const ot_type *type, int nullable,
                       const ot_column *child, int depth, fb_ref *out)
{
    int tag = type_tag(type->id);
    if (tag < 0 || depth >= OT_IPC_MAX_DEPTH)
        return -1;
    fb_ref children[1];
    size_t n_children = 0;
    if (type->id == OT_LIST) {
        const ot_type *ct = child ? &child->type : type->child;
        if (!ct)
            return -1;
        const char *cname = child && child->name ? child->name : "item";
        int cnull = child ? !child->not_null : 1;
        if (write_field(b, cname, ct, cnull, child ? child->child : NULL, depth + 1, &children[0]) <
            0)
            return -1;
        n_children = 1;
    }
    fb_ref vchildren = fb_create_ref_vector(b, children, n_children);
    fb_ref tz = 0;
    if (type->id == OT_TIMESTAMP && type->tz && type->tz[0])
        tz = fb_create_string(b, type->tz, strlen(type->tz));
    fb_start(b);
    switch (type->id) {
    case OT_INT32:
    case OT_INT64:
        fb_add_i32(b, INT_BIT_WIDTH, type->id == OT_INT32 ? 32 : 64);
        fb_add_u8(b, INT_IS_SIGNED, 1);
        break;
    case OT_FLOAT32:
    case OT_FLOAT64:
        fb_add_i16(b, FP_PRECISION, type->id == OT_FLOAT32 ? 1 : 2);
        break;
    case OT_TIMESTAMP:
        if ((unsigned)type->unit > 3)
            return -1;
        fb_add_i16(b, TS_UNIT, (int16_t)type->unit);
        if (tz)
            fb_add_ref(b, TS_TIMEZONE, tz);
        break;
    case OT_DATE32:
        fb_add_i16(b, DATE_UNIT, 0); /* DAY; the default is MILLISECOND */
        break;
    default:
        break;
    }
    fb_ref vtype = fb_end(b);
    fb_ref vname = fb_create_string(b, name ? name : "", name ? strlen(name) : 0);
    fb_start(b);
    fb_add_ref(b, FIELD_NAME, vname);
    fb_add_u8(b, FIELD_NULLABLE, nullable ? 1 : 0);
    fb_add_u8(b, FIELD_TYPE_TYPE, (uint8_t)tag);
    fb_add_ref(b, FIELD_TYPE, vtype);
    fb_add_ref(b, FIELD_CHILDREN, vchildren);
    *out = fb_end(b);
    return 0;
}

static void put_header(fb_builder *b, ld_buf *header)
{
    ld_buf_reset(header);
    ld_buf_append(header, fb_data(b), fb_size(b));
}

int ot_ipc_write_schema(const ot_table *t, ld_buf *header)
{
    fb_builder b;
    fb_init(&b);
    fb_ref *fields = xcalloc(t->n_cols, sizeof *fields);
    int rc = 0;
    for (size_t i = 0; i < t->n_cols && rc == 0; i++) {
        const ot_column *c = &t->cols[i];
        rc = write_field(&b, c->name, &c->type, !c->not_null, c->child, 0, &fields[i]);
    }
    if (rc < 0) {
        free(fields);
        fb_free(&b);
        return -1;
    }
    fb_ref vfields = fb_create_ref_vector(&b, fields, t->n_cols);
    free(fields);
    fb_ref vmeta = 0;
    if (t->n_meta) {
        fb_ref *kvs = xcalloc(t->n_meta, sizeof *kvs);
        for (size_t i = 0; i < t->n_meta; i++) {
            const char *k = t->meta_keys[i] ? t->meta_keys[i] : "";
            const char *v = t->meta_values[i] ? t->meta_values[i] : "";
            fb_ref rk = fb_create_string(&b, k, strlen(k));
            fb_ref rv = fb_create_string(&b, v, strlen(v));
            fb_start(&b);
            fb_add_ref(&b, KV_KEY, rk);
            fb_add_ref(&b, KV_VALUE, rv);
            kvs[i] = fb_end(&b);
        }
        vmeta = fb_create_ref_vector(&b, kvs, t->n_meta);
        free(kvs);
    }
    fb_start(&b);
    fb_add_i16(&b, SCHEMA_ENDIANNESS, 0);
    fb_add_ref(&b, SCHEMA_FIELDS, vfields);
    if (vmeta)
        fb_add_ref(&b, SCHEMA_CUSTOM_METADATA, vmeta);
    fb_ref schema = fb_end(&b);
    fb_start(&b);
    fb_add_i16(&b, MSG_VERSION, MD_V5);
    fb_add_u8(&b, MSG_HEADER_TYPE, HDR_SCHEMA);
    fb_add_ref(&b, MSG_HEADER, schema);
    fb_add_i64(&b, MSG_BODY_LENGTH, 0);
    fb_finish(&b, fb_end(&b));
    put_header(&b, header);
    fb_free(&b);
    return 0;
}

typedef struct wctx {
    ld_buf *body;
    ot_ipc_body *spans; /* span mode: record ranges instead of copying (uncompressed only) */
    ld_buf scratch;
    ld_buf cbuf; /* compression output */
    int codec;
    int64_t *nodes; /* pairs: length, null count */
    size_t n_nodes, cap_nodes;
    int64_t *bufs; /* pairs: offset, length */
    size_t n_bufs, cap_bufs;
    ld_status *st;
} wctx;

static void push_pair(int64_t **arr, size_t *n, size_t *cap, int64_t a, int64_t b)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        int64_t *na = realloc(*arr, *cap * 2 * sizeof *na);
        if (!na)
            ipc_oom();
        *arr = na;
    }
    (*arr)[2 * *n] = a;
    (*arr)[2 * *n + 1] = b;
    (*n)++;
}

static const uint8_t body_zeros[8];

static void body_align(ld_buf *body)
{
    size_t pad = (size_t)(-body->len) & 7;
    if (pad)
        ld_buf_append(body, body_zeros, pad);
}

static void span_push(ot_ipc_body *b, const uint8_t *p, size_t off, size_t n)
{
    if (!n)
        return;
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 32;
        ot_ipc_span *ns = realloc(b->spans, b->cap * sizeof *ns);
        if (!ns)
            ipc_oom();
        b->spans = ns;
    }
    b->spans[b->n++] = (ot_ipc_span){.p = p, .off = off, .len = n};
    b->len += n;
}

/* Span mode: bytes in the table (stable) are referenced, others copied
 * into b->own; padding references a static block of zeros. */
static int add_span(wctx *w, const void *p, size_t n, int stable)
{
    ot_ipc_body *b = w->spans;
    span_push(b, body_zeros, 0, (size_t)(-b->len) & 7);
    size_t off = b->len;
    if (n && stable) {
        span_push(b, p, 0, n);
    } else if (n) {
        span_push(b, NULL, b->own.len, n);
        ld_buf_append(&b->own, p, n);
    }
    push_pair(&w->bufs, &w->n_bufs, &w->cap_bufs, (int64_t)off, (int64_t)n);
    return 0;
}

/* stable: p points into the table being encoded (not into scratch). */
static int add_buffer_ex(wctx *w, const void *p, size_t n, int stable)
{
    if (w->spans)
        return add_span(w, p, n, stable);
    body_align(w->body);
    size_t off = w->body->len;
    if (w->codec < 0 || n == 0) {
        if (n)
            ld_buf_append(w->body, p, n);
        push_pair(&w->bufs, &w->n_bufs, &w->cap_bufs, (int64_t)off, (int64_t)n);
        return 0;
    }
    size_t clen;
    ld_buf_reset(&w->cbuf);
    if (w->codec == OT_IPC_ZSTD) {
        size_t bound = ZSTD_compressBound(n);
        ld_buf_reserve(&w->cbuf, bound);
        clen = ZSTD_compress(w->cbuf.data, bound, p, n, 1);
        if (ZSTD_isError(clen))
            return ld_status_set(w->st, GRPC_STATUS_INTERNAL, NULL, "zstd: %s",
                                 ZSTD_getErrorName(clen));
    } else {
        size_t bound = LZ4F_compressFrameBound(n, NULL);
        ld_buf_reserve(&w->cbuf, bound);
        clen = LZ4F_compressFrame(w->cbuf.data, bound, p, n, NULL);
        if (LZ4F_isError(clen))
            return ld_status_set(w->st, GRPC_STATUS_INTERNAL, NULL, "lz4: %s",
                                 LZ4F_getErrorName(clen));
    }
    int64_t prefix;
    if (clen < n) {
        prefix = (int64_t)n;
        ld_buf_put_u64le(w->body, (uint64_t)prefix);
        ld_buf_append(w->body, w->cbuf.data, clen);
    } else {
        prefix = -1;
        ld_buf_put_u64le(w->body, (uint64_t)prefix);
        ld_buf_append(w->body, p, n);
    }
    push_pair(&w->bufs, &w->n_bufs, &w->cap_bufs, (int64_t)off, (int64_t)(w->body->len - off));
    return 0;
}

static int add_buffer(wctx *w, const void *p, size_t n)
{
    return add_buffer_ex(w, p, n, 1);
}

/* n bits of src from bit off, shifted to bit 0, unused bits zero. */
static int add_bits(wctx *w, const uint8_t *src, int64_t off, int64_t n)
{
    size_t nbytes = (size_t)((n + 7) >> 3);
    if ((off & 7) == 0 && (n & 7) == 0)
        return add_buffer(w, src + (off >> 3), nbytes);
    ld_buf_reset(&w->scratch);
    uint8_t *d = (uint8_t *)ld_buf_reserve(&w->scratch, nbytes);
    memset(d, 0, nbytes);
    bits_copy(d, 0, src, off, n);
    return add_buffer_ex(w, d, nbytes, 0);
}

static int emit_column(wctx *w, const ot_column *c, int64_t off, int64_t n, int depth)
{
    const char *name = c->name ? c->name : "";
    if (depth >= OT_IPC_MAX_DEPTH)
        return ld_status_set(w->st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "column '%s' nests too deeply", name);
    if (off < 0 || n < 0 || off > c->length || n > c->length - off)
        return ld_status_set(w->st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "rows [%lld, +%lld) outside column '%s' of %lld rows", (long long)off,
                             (long long)n, name, (long long)c->length);
    int64_t nulls = ot_column_count_nulls(c, off, n);
    push_pair(&w->nodes, &w->n_nodes, &w->cap_nodes, n, nulls);
    if (c->type.id == OT_NULL)
        return 0;
    if (nulls > 0) {
        if (add_bits(w, c->validity, off, n) < 0)
            return -1;
    } else if (add_buffer(w, NULL, 0) < 0) {
        return -1;
    }
    size_t fw = fixed_width(c->type.id);
    if (fw || c->type.id == OT_BOOL) {
        if (n > 0 && !c->values)
            return ld_status_set(w->st, GRPC_STATUS_INTERNAL, NULL, "column '%s' has no values",
                                 name);
        if (c->type.id == OT_BOOL)
            return n ? add_bits(w, c->values, off, n) : add_buffer(w, NULL, 0);
        return add_buffer(w, n ? (const uint8_t *)c->values + (size_t)off * fw : NULL,
                          (size_t)n * fw);
    }
    int wide = c->type.id == OT_LARGE_UTF8;
    if (!is_var(c->type.id) && c->type.id != OT_LIST)
        return ld_status_set(w->st, GRPC_STATUS_INTERNAL, NULL, "column '%s' has type %d", name,
                             (int)c->type.id);
    if ((wide && !c->offsets64) || (!wide && !c->offsets)) {
        if (n > 0)
            return ld_status_set(w->st, GRPC_STATUS_INTERNAL, NULL, "column '%s' has no offsets",
                                 name);
    }
    int has_off = wide ? c->offsets64 != NULL : c->offsets != NULL;
    int64_t base = has_off ? (wide ? c->offsets64[off] : c->offsets[off]) : 0;
    int64_t limit = c->type.id == OT_LIST ? (c->child ? c->child->length : 0) : c->data_len;
    ld_buf_reset(&w->scratch);
    int64_t prev = base;
    if (base < 0)
        goto bad_offsets;
    for (int64_t i = 0; i <= n; i++) {
        int64_t o = has_off ? (wide ? c->offsets64[off + i] : c->offsets[off + i]) : 0;
        if (o < prev || o > limit)
            goto bad_offsets;
        prev = o;
        if (wide)
            ld_buf_put_u64le(&w->scratch, (uint64_t)(o - base));
        else
            ld_buf_put_u32le(&w->scratch, (uint32_t)(o - base));
    }
    if (add_buffer_ex(w, w->scratch.data, w->scratch.len, 0) < 0)
        return -1;
    if (c->type.id == OT_LIST) {
        if (c->child)
            return emit_column(w, c->child, base, prev - base, depth + 1);
        if (!c->type.child)
            return ld_status_set(w->st, GRPC_STATUS_INTERNAL, NULL,
                                 "list column '%s' has no element type", name);
        ot_column empty;
        memset(&empty, 0, sizeof empty);
        empty.type = *c->type.child;
        return emit_column(w, &empty, 0, 0, depth + 1);
    }
    if (prev > base && !c->data)
        goto bad_offsets;
    return add_buffer(w, prev > base ? c->data + base : NULL, (size_t)(prev - base));
bad_offsets:
    return ld_status_set(w->st, GRPC_STATUS_INTERNAL, NULL, "column '%s' has inconsistent offsets",
                         name);
}

static int write_batch(const ot_table *t, int64_t row_offset, int64_t n_rows, ot_ipc_codec codec,
                       ld_buf *header, ld_buf *body, ot_ipc_body *spans, ld_status *st)
{
    if (row_offset < 0 || n_rows < 0 || row_offset > t->n_rows || n_rows > t->n_rows - row_offset)
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "rows [%lld, +%lld) outside a table of %lld rows",
                             (long long)row_offset, (long long)n_rows, (long long)t->n_rows);
    if (codec != OT_IPC_UNCOMPRESSED && codec != OT_IPC_LZ4_FRAME && codec != OT_IPC_ZSTD)
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL, "unknown codec %d",
                             (int)codec);
    wctx w;
    memset(&w, 0, sizeof w);
    w.body = body;
    w.spans = spans;
    w.codec = codec;
    w.st = st;
    if (spans) {
        spans->n = 0;
        spans->len = 0;
        ld_buf_reset(&spans->own);
    } else {
        ld_buf_reset(body);
    }
    int rc = 0;
    for (size_t i = 0; i < t->n_cols && rc == 0; i++)
        rc = emit_column(&w, &t->cols[i], row_offset, n_rows, 0);
    if (rc == 0) {
        size_t body_len;
        if (spans) {
            span_push(spans, body_zeros, 0, (size_t)(-spans->len) & 7);
            body_len = spans->len;
        } else {
            body_align(body);
            body_len = body->len;
        }
        fb_builder b;
        fb_init(&b);
        fb_ref vnodes = fb_create_struct_vector(&b, w.nodes, w.n_nodes, 16, 8);
        fb_ref vbufs = fb_create_struct_vector(&b, w.bufs, w.n_bufs, 16, 8);
        fb_ref comp = 0;
        if (codec != OT_IPC_UNCOMPRESSED) {
            fb_start(&b);
            fb_add_u8(&b, BC_CODEC, (uint8_t)codec);
            fb_add_u8(&b, BC_METHOD, 0);
            comp = fb_end(&b);
        }
        fb_start(&b);
        fb_add_i64(&b, RB_LENGTH, n_rows);
        fb_add_ref(&b, RB_NODES, vnodes);
        fb_add_ref(&b, RB_BUFFERS, vbufs);
        if (comp)
            fb_add_ref(&b, RB_COMPRESSION, comp);
        fb_ref rb = fb_end(&b);
        fb_start(&b);
        fb_add_i16(&b, MSG_VERSION, MD_V5);
        fb_add_u8(&b, MSG_HEADER_TYPE, HDR_RECORD_BATCH);
        fb_add_ref(&b, MSG_HEADER, rb);
        fb_add_i64(&b, MSG_BODY_LENGTH, (int64_t)body_len);
        fb_finish(&b, fb_end(&b));
        put_header(&b, header);
        fb_free(&b);
    }
    free(w.nodes);
    free(w.bufs);
    ld_buf_free(&w.scratch);
    ld_buf_free(&w.cbuf);
    return rc;
}

int ot_ipc_write_batch_ex(const ot_table *t, int64_t row_offset, int64_t n_rows, ot_ipc_codec codec,
                          ld_buf *header, ld_buf *body, ld_status *st)
{
    return write_batch(t, row_offset, n_rows, codec, header, body, NULL, st);
}

int ot_ipc_write_batch_spans(const ot_table *t, int64_t row_offset, int64_t n_rows, ld_buf *header,
                             ot_ipc_body *body, ld_status *st)
{
    return write_batch(t, row_offset, n_rows, OT_IPC_UNCOMPRESSED, header, NULL, body, st);
}

void ot_ipc_body_free(ot_ipc_body *b)
{
    free(b->spans);
    ld_buf_free(&b->own);
    memset(b, 0, sizeof *b);
}

int ot_ipc_write_batch(const ot_table *t, int64_t row_offset, int64_t n_rows, ld_buf *header,
                       ld_buf *body, ld_status *st)
{
    return ot_ipc_write_batch_ex(t, row_offset, n_rows, OT_IPC_UNCOMPRESSED, header, body, st);
}

void ot_ipc_frame(ld_buf *out, const uint8_t *header, size_t hlen, const uint8_t *body, size_t blen)
{
    static const uint8_t zeros[8];
    size_t padded = (hlen + 7) & ~(size_t)7;
    ld_buf_put_u32le(out, CONTINUATION);
    ld_buf_put_u32le(out, (uint32_t)padded);
    ld_buf_append(out, header, hlen);
    ld_buf_append(out, zeros, padded - hlen);
    if (blen)
        ld_buf_append(out, body, blen);
    size_t bpad = (size_t)(-blen) & 7;
    if (bpad)
        ld_buf_append(out, zeros, bpad);
}

int ot_ipc_write_stream_ex(const ot_table *t, int64_t batch_rows, ot_ipc_codec codec, ld_buf *out,
                           ld_status *st)
{
    ld_buf h = LD_BUF_INIT, body = LD_BUF_INIT;
    ld_buf_reset(out);
    if (ot_ipc_write_schema(t, &h) < 0) {
        ld_buf_free(&h);
        return ld_status_set(st, GRPC_STATUS_INTERNAL, NULL,
                             "table has a column of an unsupported type");
    }
    ot_ipc_frame(out, (const uint8_t *)h.data, h.len, NULL, 0);
    int rc = 0;
    int64_t step = batch_rows > 0 ? batch_rows : t->n_rows;
    for (int64_t off = 0; off < t->n_rows && rc == 0; off += step) {
        int64_t n = t->n_rows - off < step ? t->n_rows - off : step;
        rc = ot_ipc_write_batch_ex(t, off, n, codec, &h, &body, st);
        if (rc == 0)
            ot_ipc_frame(out, (const uint8_t *)h.data, h.len, (const uint8_t *)body.data, body.len);
    }
    if (rc == 0) {
        ld_buf_put_u32le(out, CONTINUATION);
        ld_buf_put_u32le(out, 0);
    }
    ld_buf_free(&h);
    ld_buf_free(&body);
    return rc;
}

int ot_ipc_write_stream(const ot_table *t, int64_t batch_rows, ld_buf *out, ld_status *st)
{
    return ot_ipc_write_stream_ex(t, batch_rows, OT_IPC_UNCOMPRESSED, out, st);
}
