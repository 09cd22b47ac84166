/* ot_table: see ot_table.h. */
#include "ot_table.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void ot_oom(void)
{
    fputs("larder: out of memory\n", stderr);
    abort();
}

static void *ot_calloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        ot_oom();
    return p;
}

static char *ot_strdup(const char *s)
{
    char *d = strdup(s ? s : "");
    if (!d)
        ot_oom();
    return d;
}

ot_table *ot_table_new(size_t n_cols, int64_t n_rows)
{
    ot_table *t = ot_calloc(1, sizeof *t);
    t->cols = ot_calloc(n_cols, sizeof *t->cols);
    t->n_cols = n_cols;
    t->n_rows = n_rows;
    return t;
}

void ot_type_clear(ot_type *t)
{
    if (!t)
        return;
    free(t->tz);
    t->tz = NULL;
    if (t->child) {
        ot_type_clear(t->child);
        free(t->child);
        t->child = NULL;
    }
}

void ot_type_copy(ot_type *dst, const ot_type *src)
{
    dst->id = src->id;
    dst->unit = src->unit;
    dst->tz = src->tz ? ot_strdup(src->tz) : NULL;
    dst->child = NULL;
    if (src->child) {
        dst->child = ot_calloc(1, sizeof *dst->child);
        ot_type_copy(dst->child, src->child);
    }
}

int ot_type_equal(const ot_type *a, const ot_type *b)
{
    if (a->id != b->id)
        return 0;
    if (a->id == OT_TIMESTAMP) {
        if (a->unit != b->unit)
            return 0;
        if (!a->tz != !b->tz || (a->tz && strcmp(a->tz, b->tz) != 0))
            return 0;
    }
    if (a->id == OT_LIST) {
        if (!a->child || !b->child)
            return a->child == b->child;
        return ot_type_equal(a->child, b->child);
    }
    return 1;
}

void ot_type_format(const ot_type *t, ld_buf *out)
{
    static const char *const units[] = {"s", "ms", "us", "ns"};
    switch (t->id) {
    case OT_NULL:
        ld_buf_puts(out, "null");
        break;
    case OT_BOOL:
        ld_buf_puts(out, "bool");
        break;
    case OT_INT32:
        ld_buf_puts(out, "int32");
        break;
    case OT_INT64:
        ld_buf_puts(out, "int64");
        break;
    case OT_FLOAT32:
        ld_buf_puts(out, "float");
        break;
    case OT_FLOAT64:
        ld_buf_puts(out, "double");
        break;
    case OT_UTF8:
        ld_buf_puts(out, "string");
        break;
    case OT_LARGE_UTF8:
        ld_buf_puts(out, "large_string");
        break;
    case OT_BINARY:
        ld_buf_puts(out, "binary");
        break;
    case OT_TIMESTAMP:
        ld_buf_printf(out, "timestamp[%s", (unsigned)t->unit < 4 ? units[t->unit] : "?");
        if (t->tz)
            ld_buf_printf(out, ", tz=%s", t->tz);
        ld_buf_putc(out, ']');
        break;
    case OT_DATE32:
        ld_buf_puts(out, "date32[day]");
        break;
    case OT_LIST:
        ld_buf_puts(out, "list<");
        if (t->child)
            ot_type_format(t->child, out);
        else
            ld_buf_puts(out, "?");
        ld_buf_putc(out, '>');
        break;
    default:
        ld_buf_printf(out, "unknown(%d)", (int)t->id);
    }
}

void ot_column_clear(ot_column *c)
{
    if (!c)
        return;
    free(c->name);
    ot_type_clear(&c->type);
    free(c->validity);
    free(c->values);
    free(c->offsets);
    free(c->offsets64);
    free(c->data);
    if (c->child) {
        ot_column_clear(c->child);
        free(c->child);
    }
    memset(c, 0, sizeof *c);
}

void ot_table_free(ot_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n_cols; i++)
        ot_column_clear(&t->cols[i]);
    free(t->cols);
    for (size_t i = 0; i < t->n_meta; i++) {
        free(t->meta_keys[i]);
        free(t->meta_values[i]);
    }
    free(t->meta_keys);
    free(t->meta_values);
    free(t);
}

const ot_column *ot_table_column(const ot_table *t, const char *name)
{
    for (size_t i = 0; i < t->n_cols; i++)
        if (t->cols[i].name && strcmp(t->cols[i].name, name) == 0)
            return &t->cols[i];
    return NULL;
}

int ot_column_valid(const ot_column *c, int64_t row)
{
    if (c->type.id == OT_NULL)
        return 0;
    if (!c->validity)
        return 1;
    return ot_bit_get(c->validity, row);
}

int64_t ot_column_count_nulls(const ot_column *c, int64_t off, int64_t n)
{
    if (n <= 0)
        return 0;
    if (c->type.id == OT_NULL)
        return n;
    if (!c->validity)
        return 0;
    int64_t valid = 0, i = off, end = off + n;
    while (i < end && (i & 7))
        valid += ot_bit_get(c->validity, i++);
    while (end - i >= 64) {
        uint64_t w;
        memcpy(&w, c->validity + (i >> 3), 8);
        valid += __builtin_popcountll(w);
        i += 64;
    }
    while (i < end)
        valid += ot_bit_get(c->validity, i++);
    return n - valid;
}

/* a * m, clamped to the int64 range */
static int64_t sat_mul(int64_t a, int64_t m)
{
    int64_t r;
    if (__builtin_mul_overflow(a, m, &r))
        return (a < 0) != (m < 0) ? INT64_MIN : INT64_MAX;
    return r;
}

static int64_t floor_div(int64_t a, int64_t d)
{
    int64_t q = a / d;
    if ((a % d != 0) && ((a < 0) != (d < 0)))
        q--;
    return q;
}

int64_t ot_column_ts_us(const ot_column *c, int64_t row)
{
    switch (c->type.id) {
    case OT_TIMESTAMP:
    case OT_INT64: {
        int64_t v = ((const int64_t *)c->values)[row];
        if (c->type.id == OT_INT64)
            return v;
        switch (c->type.unit) {
        case OT_SECOND:
            return sat_mul(v, 1000000);
        case OT_MILLI:
            return sat_mul(v, 1000);
        case OT_MICRO:
            return v;
        case OT_NANO:
            return floor_div(v, 1000);
        }
        return v;
    }
    case OT_DATE32:
        return sat_mul(((const int32_t *)c->values)[row], 86400LL * 1000000);
    case OT_INT32:
        return ((const int32_t *)c->values)[row];
    default:
        return 0;
    }
}

void ot_table_add_meta(ot_table *t, const char *key, const char *value)
{
    char **k = realloc(t->meta_keys, (t->n_meta + 1) * sizeof *k);
    if (!k)
        ot_oom();
    t->meta_keys = k;
    char **v = realloc(t->meta_values, (t->n_meta + 1) * sizeof *v);
    if (!v)
        ot_oom();
    t->meta_values = v;
    t->meta_keys[t->n_meta] = ot_strdup(key);
    t->meta_values[t->n_meta] = ot_strdup(value);
    t->n_meta++;
}

const char *ot_table_meta(const ot_table *t, const char *key)
{
    for (size_t i = 0; i < t->n_meta; i++)
        if (strcmp(t->meta_keys[i], key) == 0)
            return t->meta_values[i];
    return NULL;
}
