/* Arrow IPC encoder/decoder (offline_server/ot_ipc.c): round trips for every
 * type, hand-checked Schema metadata, hand-built dictionary streams, legacy
 * framing, Flight-style incremental decoding, compression, error cases and a
 * mutation fuzz loop (LARDER_FUZZ_ITERS, default 4000 per seed stream;
 * LARDER_FUZZ_SEED picks another xorshift seed). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ld_test.h"
#include "ot_fb.h"
#include "ot_ipc.h"

LD_TEST_MAIN

/* ---- building tables ---- */

static char *dupstr(const char *s)
{
    return s ? strdup(s) : NULL;
}

static uint8_t *bitmap_from(const int *valid, int64_t n, int64_t *nulls)
{
    *nulls = 0;
    if (!valid)
        return NULL;
    uint8_t *b = calloc((size_t)(n + 7) / 8 + 1, 1);
    for (int64_t i = 0; i < n; i++) {
        if (valid[i])
            ot_bit_set(b, i, 1);
        else
            (*nulls)++;
    }
    if (*nulls == 0) {
        free(b);
        return NULL;
    }
    return b;
}

static void set_fixed(ot_column *c, ot_type_id id, const char *name, const void *vals, size_t width,
                      int64_t n, const int *valid)
{
    c->name = dupstr(name);
    c->type.id = id;
    c->length = n;
    c->values = malloc(width * (size_t)n + 1);
    memcpy(c->values, vals, width * (size_t)n);
    c->validity = bitmap_from(valid, n, &c->null_count);
}

static void set_ts(ot_column *c, const char *name, ot_time_unit unit, const char *tz,
                   const int64_t *vals, int64_t n, const int *valid)
{
    set_fixed(c, OT_TIMESTAMP, name, vals, 8, n, valid);
    c->type.unit = unit;
    c->type.tz = dupstr(tz);
}

static void set_bools(ot_column *c, const char *name, const int *vals, int64_t n, const int *valid)
{
    c->name = dupstr(name);
    c->type.id = OT_BOOL;
    c->length = n;
    uint8_t *b = calloc((size_t)(n + 7) / 8 + 1, 1);
    for (int64_t i = 0; i < n; i++)
        ot_bit_set(b, i, vals[i] != 0);
    c->values = b;
    c->validity = bitmap_from(valid, n, &c->null_count);
}

/* strs[i] == NULL is a null; lens (optional) for binary data with NULs */
static void set_strs(ot_column *c, ot_type_id id, const char *name, const char *const *strs,
                     const size_t *lens, int64_t n)
{
    c->name = dupstr(name);
    c->type.id = id;
    c->length = n;
    size_t total = 0;
    for (int64_t i = 0; i < n; i++)
        if (strs[i])
            total += lens ? lens[i] : strlen(strs[i]);
    c->data = malloc(total + 1);
    int *valid = malloc(sizeof(int) * (size_t)(n + 1));
    if (id == OT_LARGE_UTF8)
        c->offsets64 = malloc(sizeof(int64_t) * (size_t)(n + 1));
    else
        c->offsets = malloc(sizeof(int32_t) * (size_t)(n + 1));
    size_t pos = 0;
    for (int64_t i = 0; i < n; i++) {
        if (id == OT_LARGE_UTF8)
            c->offsets64[i] = (int64_t)pos;
        else
            c->offsets[i] = (int32_t)pos;
        valid[i] = strs[i] != NULL;
        if (strs[i]) {
            size_t l = lens ? lens[i] : strlen(strs[i]);
            memcpy(c->data + pos, strs[i], l);
            pos += l;
        }
    }
    if (id == OT_LARGE_UTF8)
        c->offsets64[n] = (int64_t)pos;
    else
        c->offsets[n] = (int32_t)pos;
    c->data_len = (int64_t)pos;
    c->validity = bitmap_from(valid, n, &c->null_count);
    free(valid);
}

/* list<double>: lens[i] < 0 is a null list; elem_valid over all elements */
static void set_list_f64(ot_column *c, const char *name, const double *elems, const int *lens,
                         int64_t n, const int *elem_valid)
{
    c->name = dupstr(name);
    c->type.id = OT_LIST;
    c->type.child = calloc(1, sizeof(ot_type));
    c->type.child->id = OT_FLOAT64;
    c->length = n;
    c->offsets = malloc(sizeof(int32_t) * (size_t)(n + 1));
    int *valid = malloc(sizeof(int) * (size_t)(n + 1));
    int32_t pos = 0;
    for (int64_t i = 0; i < n; i++) {
        c->offsets[i] = pos;
        valid[i] = lens[i] >= 0;
        if (lens[i] > 0)
            pos += lens[i];
    }
    c->offsets[n] = pos;
    c->validity = bitmap_from(valid, n, &c->null_count);
    free(valid);
    c->child = calloc(1, sizeof(ot_column));
    set_fixed(c->child, OT_FLOAT64, "item", elems, 8, pos, elem_valid);
}

/* ---- comparing ---- */

static int rows_equal(const ot_column *a, int64_t i, const ot_column *b, int64_t j);

static int cell_equal(const ot_column *a, int64_t i, const ot_column *b, int64_t j)
{
    switch (a->type.id) {
    case OT_NULL:
        return 1;
    case OT_BOOL:
        return ot_bit_get(a->values, i) == ot_bit_get(b->values, j);
    case OT_INT32:
    case OT_DATE32:
    case OT_FLOAT32:
        return memcmp((const char *)a->values + 4 * i, (const char *)b->values + 4 * j, 4) == 0;
    case OT_INT64:
    case OT_FLOAT64:
    case OT_TIMESTAMP:
        return memcmp((const char *)a->values + 8 * i, (const char *)b->values + 8 * j, 8) == 0;
    case OT_UTF8:
    case OT_BINARY: {
        int64_t la = a->offsets[i + 1] - a->offsets[i], lb = b->offsets[j + 1] - b->offsets[j];
        return la == lb &&
               memcmp(a->data + a->offsets[i], b->data + b->offsets[j], (size_t)la) == 0;
    }
    case OT_LARGE_UTF8: {
        int64_t la = a->offsets64[i + 1] - a->offsets64[i];
        int64_t lb = b->offsets64[j + 1] - b->offsets64[j];
        return la == lb &&
               memcmp(a->data + a->offsets64[i], b->data + b->offsets64[j], (size_t)la) == 0;
    }
    case OT_LIST: {
        int64_t la = a->offsets[i + 1] - a->offsets[i], lb = b->offsets[j + 1] - b->offsets[j];
        if (la != lb)
            return 0;
        for (int64_t k = 0; k < la; k++)
            if (!rows_equal(a->child, a->offsets[i] + k, b->child, b->offsets[j] + k))
                return 0;
        return 1;
    }
    }
    return 0;
}

static int rows_equal(const ot_column *a, int64_t i, const ot_column *b, int64_t j)
{
    int va = ot_column_valid(a, i), vb = ot_column_valid(b, j);
    if (va != vb)
        return 0;
    return !va || cell_equal(a, i, b, j);
}

static int columns_equal(const ot_column *a, const ot_column *b)
{
    if (strcmp(a->name ? a->name : "", b->name ? b->name : "") != 0) {
        printf("# column name %s vs %s\n", a->name, b->name);
        return 0;
    }
    if (!ot_type_equal(&a->type, &b->type) || a->length != b->length ||
        a->not_null != b->not_null) {
        printf("# column %s: type/length/nullability differ\n", a->name);
        return 0;
    }
    if (ot_column_count_nulls(a, 0, a->length) != b->null_count) {
        printf("# column %s: null count %lld vs %lld\n", a->name,
               (long long)ot_column_count_nulls(a, 0, a->length), (long long)b->null_count);
        return 0;
    }
    for (int64_t i = 0; i < a->length; i++)
        if (!rows_equal(a, i, b, i)) {
            printf("# column %s: row %lld differs\n", a->name, (long long)i);
            return 0;
        }
    return 1;
}

static int tables_equal(const ot_table *a, const ot_table *b)
{
    if (a->n_cols != b->n_cols || a->n_rows != b->n_rows || a->n_meta != b->n_meta) {
        printf("# table shape %zu x %lld (%zu meta) vs %zu x %lld (%zu meta)\n", a->n_cols,
               (long long)a->n_rows, a->n_meta, b->n_cols, (long long)b->n_rows, b->n_meta);
        return 0;
    }
    for (size_t i = 0; i < a->n_meta; i++)
        if (strcmp(a->meta_keys[i], b->meta_keys[i]) ||
            strcmp(a->meta_values[i], b->meta_values[i]))
            return 0;
    for (size_t i = 0; i < a->n_cols; i++)
        if (!columns_equal(&a->cols[i], &b->cols[i]))
            return 0;
    return 1;
}

/* ---- fixtures ---- */

#define NROWS 11

static ot_table *all_types_table(void)
{
    ot_table *t = ot_table_new(15, NROWS);
    int v1[NROWS] = {1, 1, 0, 1, 1, 1, 0, 0, 1, 1, 1};
    int32_t i32[NROWS] = {1, -2, 0, INT32_MAX, INT32_MIN, 5, 6, 7, 8, 9, 10};
    int64_t i64[NROWS] = {INT64_MIN, INT64_MAX, 0, -1, 2, 3, 4, 5, 6, 7, 8};
    float f32[NROWS] = {1.5f, -0.0f, 3.25f, 1e30f, -1e-30f, 0, 1, 2, 3, 4, 5};
    double f64[NROWS] = {0.1, -2.5, 1e300, -1e-300, 42, 0, 1, 2, 3, 4, 5};
    int bools[NROWS] = {1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 0};
    const char *strs[NROWS] = {"", "a", NULL, "héllo", "ünïcødé ✓", "x", NULL, "longer string here",
                               "", "z", "end"};
    const char *bins[NROWS] = {"\0\1\2", "", NULL, "abc", "\xff\xfe", "q", "r", "s", "t", "u", "v"};
    size_t blens[NROWS] = {3, 0, 0, 3, 2, 1, 1, 1, 1, 1, 1};
    int64_t ts[NROWS] = {0, 1700000000000000LL, -1, 86400000000LL, 5, 6, 7, 8, 9, 10, 11};
    int64_t tsn[NROWS] = {1, 2, 3, 4, 5, 6, 7, 8, 9, -1000000000LL, 1700000000123456789LL};
    int64_t tss[NROWS] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 1700000000};
    int32_t d32[NROWS] = {0, 19000, -1, 3, 4, 5, 6, 7, 8, 9, 20000};
    set_fixed(&t->cols[0], OT_INT32, "i32", i32, 4, NROWS, v1);
    set_fixed(&t->cols[1], OT_INT64, "i64", i64, 8, NROWS, NULL);
    t->cols[1].not_null = 1;
    set_fixed(&t->cols[2], OT_FLOAT32, "f32", f32, 4, NROWS, v1);
    set_fixed(&t->cols[3], OT_FLOAT64, "f64", f64, 8, NROWS, NULL);
    set_bools(&t->cols[4], "bool", bools, NROWS, v1);
    set_strs(&t->cols[5], OT_UTF8, "utf8", strs, NULL, NROWS);
    set_strs(&t->cols[6], OT_LARGE_UTF8, "large_utf8", strs, NULL, NROWS);
    set_strs(&t->cols[7], OT_BINARY, "binary", bins, blens, NROWS);
    set_ts(&t->cols[8], "event_timestamp", OT_MICRO, "UTC", ts, NROWS, v1);
    set_ts(&t->cols[9], "ts_ns", OT_NANO, NULL, tsn, NROWS, NULL);
    set_ts(&t->cols[10], "ts_s_ny", OT_SECOND, "America/New_York", tss, NROWS, NULL);
    set_ts(&t->cols[11], "ts_ms", OT_MILLI, "+01:00", tss, NROWS, v1);
    set_fixed(&t->cols[12], OT_DATE32, "date", d32, 4, NROWS, v1);
    double elems[] = {1, 2, 3, 4.5, -1, 0, 7, 8, 9, 10, 11, 12};
    int lens[NROWS] = {2, 0, -1, 3, 1, 0, 2, -1, 1, 2, 1};
    int ev[12] = {1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1};
    set_list_f64(&t->cols[13], "list", elems, lens, NROWS, ev);
    t->cols[14].name = dupstr("nothing");
    t->cols[14].type.id = OT_NULL;
    t->cols[14].length = NROWS;
    t->cols[14].null_count = NROWS;
    ot_table_add_meta(t, "pandas", "{\"index_columns\": [], \"columns\": []}");
    ot_table_add_meta(t, "other", "");
    return t;
}

static ot_table *roundtrip(const ot_table *t, int64_t batch_rows, ot_ipc_codec codec)
{
    ld_buf out = LD_BUF_INIT;
    ld_status st = LD_STATUS_INIT;
    ot_table *r = NULL;
    if (ot_ipc_write_stream_ex(t, batch_rows, codec, &out, &st) != 0) {
        printf("# encode: %s\n", st.msg);
        ld_buf_free(&out);
        return NULL;
    }
    if (ot_ipc_read_stream((const uint8_t *)out.data, out.len, &r, &st) != 0)
        printf("# decode: %s\n", st.msg);
    ld_buf_free(&out);
    return r;
}

LD_TEST(roundtrip_every_type)
{
    ot_table *t = all_types_table();
    int64_t sizes[] = {0, 1, 3, 5, 8, 11, 100};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        ot_table *r = roundtrip(t, sizes[k], OT_IPC_UNCOMPRESSED);
        LD_CHECK(r != NULL);
        if (r) {
            LD_CHECK(tables_equal(t, r));
            LD_CHECK_STR(r->cols[8].type.tz, "UTC");
            LD_CHECK(r->cols[9].type.tz == NULL);
            LD_CHECK_INT(r->cols[9].type.unit, OT_NANO);
            LD_CHECK_INT(r->cols[0].null_count, 3);
            LD_CHECK_INT(r->cols[1].not_null, 1);
            LD_CHECK_INT(r->cols[0].not_null, 0);
            LD_CHECK_STR(r->cols[13].child->name, "item");
            LD_CHECK_INT(r->cols[14].null_count, NROWS);
            LD_CHECK(!ot_column_valid(&r->cols[14], 0));
            LD_CHECK_STR(ot_table_meta(r, "pandas"), "{\"index_columns\": [], \"columns\": []}");
        }
        ot_table_free(r);
    }
    ot_table_free(t);
}

LD_TEST(roundtrip_compressed)
{
    ot_table *t = all_types_table();
    ot_ipc_codec codecs[] = {OT_IPC_LZ4_FRAME, OT_IPC_ZSTD};
    for (size_t k = 0; k < 2; k++) {
        for (int64_t bs = 0; bs <= 4; bs += 4) {
            ot_table *r = roundtrip(t, bs, codecs[k]);
            LD_CHECK(r != NULL);
            if (r)
                LD_CHECK(tables_equal(t, r));
            ot_table_free(r);
        }
    }
    ot_table_free(t);
    int64_t n = 100000;
    ot_table *big = ot_table_new(2, n);
    int64_t *v = malloc(8 * (size_t)n);
    const char **s = malloc(sizeof(char *) * (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        v[i] = i % 7;
        s[i] = i % 3 ? "feature_value" : NULL;
    }
    set_fixed(&big->cols[0], OT_INT64, "v", v, 8, n, NULL);
    set_strs(&big->cols[1], OT_UTF8, "s", s, NULL, n);
    for (size_t k = 0; k < 2; k++) {
        ld_buf out = LD_BUF_INIT, plain = LD_BUF_INIT;
        ld_status st = LD_STATUS_INIT;
        LD_CHECK(ot_ipc_write_stream_ex(big, 30000, codecs[k], &out, &st) == 0);
        LD_CHECK(ot_ipc_write_stream(big, 30000, &plain, &st) == 0);
        LD_CHECK(out.len * 4 < plain.len); /* it did compress */
        ot_table *r = NULL;
        LD_CHECK(ot_ipc_read_stream((const uint8_t *)out.data, out.len, &r, &st) == 0);
        LD_CHECK(r && tables_equal(big, r));
        ot_table_free(r);
        ld_buf_free(&out);
        ld_buf_free(&plain);
    }
    free(v);
    free(s);
    ot_table_free(big);
}

LD_TEST(empty_tables)
{
    /* no columns */
    ot_table *t = ot_table_new(0, 0);
    ot_table *r = roundtrip(t, 0, OT_IPC_UNCOMPRESSED);
    LD_CHECK(r && r->n_cols == 0 && r->n_rows == 0);
    ot_table_free(r);
    ot_table_free(t);
    /* columns, no rows, NULL buffers */
    t = ot_table_new(4, 0);
    t->cols[0].name = dupstr("a");
    t->cols[0].type.id = OT_INT64;
    t->cols[1].name = dupstr("s");
    t->cols[1].type.id = OT_UTF8;
    t->cols[2].name = dupstr("l");
    t->cols[2].type.id = OT_LIST;
    t->cols[2].type.child = calloc(1, sizeof(ot_type));
    t->cols[2].type.child->id = OT_UTF8;
    t->cols[3].name = dupstr("ls");
    t->cols[3].type.id = OT_LARGE_UTF8;
    r = roundtrip(t, 0, OT_IPC_UNCOMPRESSED);
    LD_CHECK(r != NULL);
    if (r) {
        LD_CHECK_INT(r->n_rows, 0);
        LD_CHECK_INT(r->n_cols, 4);
        LD_CHECK_INT(r->cols[2].type.id, OT_LIST);
        LD_CHECK_INT(r->cols[2].type.child->id, OT_UTF8);
        LD_CHECK(r->cols[1].offsets && r->cols[1].offsets[0] == 0);
        LD_CHECK(r->cols[3].offsets64 && r->cols[3].offsets64[0] == 0);
        LD_CHECK(r->cols[2].child && r->cols[2].child->length == 0);
    }
    /* an explicit empty batch decodes too */
    ld_buf h = LD_BUF_INIT, b = LD_BUF_INIT, s = LD_BUF_INIT;
    ld_status st = LD_STATUS_INIT;
    LD_CHECK(ot_ipc_write_schema(t, &h) == 0);
    ot_ipc_frame(&s, (const uint8_t *)h.data, h.len, NULL, 0);
    LD_CHECK(ot_ipc_write_batch(t, 0, 0, &h, &b, &st) == 0);
    ot_ipc_frame(&s, (const uint8_t *)h.data, h.len, (const uint8_t *)b.data, b.len);
    ot_table *r2 = NULL;
    LD_CHECK(ot_ipc_read_stream((const uint8_t *)s.data, s.len, &r2, &st) == 0);
    LD_CHECK(r2 && r2->n_rows == 0 && r2->n_cols == 4);
    ot_table_free(r2);
    ld_buf_free(&h);
    ld_buf_free(&b);
    ld_buf_free(&s);
    ot_table_free(r);
    ot_table_free(t);
}

LD_TEST(batches_and_slices)
{
    ot_table *t = all_types_table();
    ld_buf h = LD_BUF_INIT, b = LD_BUF_INIT;
    ld_status st = LD_STATUS_INIT;
    ot_ipc_reader *rd = ot_ipc_reader_new();
    LD_CHECK(ot_ipc_write_schema(t, &h) == 0);
    LD_CHECK(h.len % 8 == 0);
    LD_CHECK(ot_ipc_reader_feed(rd, (const uint8_t *)h.data, h.len, NULL, 0, &st) == 0);
    LD_CHECK(ot_ipc_reader_has_schema(rd));
    LD_CHECK(ot_ipc_reader_feed(rd, NULL, 0, NULL, 0, &st) == 0); /* metadata-only FlightData */
    /* uneven slices, fed with an unaligned body */
    int64_t cuts[] = {0, 3, 4, 9, 9, 11};
    for (size_t k = 0; k + 1 < sizeof cuts / sizeof cuts[0]; k++) {
        LD_CHECK(ot_ipc_write_batch(t, cuts[k], cuts[k + 1] - cuts[k], &h, &b, &st) == 0);
        LD_CHECK(b.len % 8 == 0);
        uint8_t *odd = malloc(b.len + 1);
        memcpy(odd + 1, b.data, b.len);
        LD_CHECK(ot_ipc_reader_feed(rd, (const uint8_t *)h.data, h.len, odd + 1, b.len, &st) == 0);
        free(odd);
    }
    ot_table *r = ot_ipc_reader_finish(rd, &st);
    LD_CHECK(r && tables_equal(t, r));
    ot_table_free(r);
    ot_ipc_reader_free(rd);
    /* out of range */
    LD_CHECK(ot_ipc_write_batch(t, 5, 7, &h, &b, &st) == -1);
    LD_CHECK_INT(st.code, GRPC_STATUS_INVALID_ARGUMENT);
    ld_buf_free(&h);
    ld_buf_free(&b);
    ot_table_free(t);
}

/* ---- the Schema flatbuffer, checked field by field ---- */

LD_TEST(schema_metadata_by_hand)
{
    ot_table *t = ot_table_new(3, 0);
    t->cols[0].name = dupstr("driver_id");
    t->cols[0].type.id = OT_INT64;
    t->cols[0].not_null = 1;
    t->cols[1].name = dupstr("ts");
    t->cols[1].type.id = OT_TIMESTAMP;
    t->cols[1].type.unit = OT_MICRO;
    t->cols[1].type.tz = dupstr("UTC");
    t->cols[2].name = dupstr("d");
    t->cols[2].type.id = OT_DATE32;
    ot_table_add_meta(t, "k", "v");
    ld_buf h = LD_BUF_INIT;
    LD_CHECK(ot_ipc_write_schema(t, &h) == 0);
    const uint8_t *p = (const uint8_t *)h.data;
    fb_table msg, sch, f, ty, kv;
    fb_vec fields, meta;
    int present;
    int16_t i16;
    uint8_t u8;
    int32_t i32;
    int64_t i64;
    const char *s;
    size_t n;
    /* root offset: a uint32 pointing inside the buffer, at a 4-aligned table */
    uint32_t root = fb_ld_u32(p);
    LD_CHECK(root < h.len && root % 4 == 0);
    LD_CHECK(fb_root(p, h.len, &msg) == 0);
    LD_CHECK(fb_get_i16(&msg, 0, -1, &i16) == 0 && i16 == 4); /* version V5 */
    LD_CHECK(fb_get_u8(&msg, 1, 0, &u8) == 0 && u8 == 1);     /* header_type Schema */
    LD_CHECK(fb_get_i64(&msg, 3, -1, &i64) == 0 && i64 == 0); /* bodyLength */
    LD_CHECK(fb_get_table(&msg, 2, &present, &sch) == 0 && present);
    LD_CHECK(fb_get_i16(&sch, 0, -1, &i16) == 0 && i16 == 0); /* little endian */
    LD_CHECK(fb_get_vector(&sch, 1, 4, &present, &fields) == 0 && present && fields.n == 3);
    /* field 0: driver_id, not nullable, Int{64, signed}, children [] */
    LD_CHECK(fb_vec_table(&fields, 0, &f) == 0);
    LD_CHECK(fb_get_string(&f, 0, &present, &s, &n) == 0 && present);
    LD_CHECK_MEM(s, n, "driver_id", 9);
    LD_CHECK(s[n] == '\0');
    LD_CHECK(fb_get_u8(&f, 1, 7, &u8) == 0 && u8 == 0);
    LD_CHECK(fb_get_u8(&f, 2, 0, &u8) == 0 && u8 == 2); /* Type.Int */
    LD_CHECK(fb_get_table(&f, 3, &present, &ty) == 0 && present);
    LD_CHECK(fb_get_i32(&ty, 0, 0, &i32) == 0 && i32 == 64);
    LD_CHECK(fb_get_u8(&ty, 1, 0, &u8) == 0 && u8 == 1);
    fb_vec ch;
    LD_CHECK(fb_get_vector(&f, 5, 4, &present, &ch) == 0 && present && ch.n == 0);
    /* field 1: ts, nullable, Timestamp{MICROSECOND, "UTC"} */
    LD_CHECK(fb_get_vector(&sch, 1, 4, &present, &fields) == 0);
    LD_CHECK(fb_vec_table(&fields, 1, &f) == 0);
    LD_CHECK(fb_get_u8(&f, 1, 0, &u8) == 0 && u8 == 1);
    LD_CHECK(fb_get_u8(&f, 2, 0, &u8) == 0 && u8 == 10); /* Type.Timestamp */
    LD_CHECK(fb_get_table(&f, 3, &present, &ty) == 0 && present);
    LD_CHECK(fb_get_i16(&ty, 0, -1, &i16) == 0 && i16 == 2);
    LD_CHECK(fb_get_string(&ty, 1, &present, &s, &n) == 0 && present);
    LD_CHECK_MEM(s, n, "UTC", 3);
    /* field 2: Date{DAY} written explicitly (the default is MILLISECOND) */
    LD_CHECK(fb_vec_table(&fields, 2, &f) == 0);
    LD_CHECK(fb_get_u8(&f, 2, 0, &u8) == 0 && u8 == 8);
    LD_CHECK(fb_get_table(&f, 3, &present, &ty) == 0 && present);
    LD_CHECK(fb_get_i16(&ty, 0, 1, &i16) == 0 && i16 == 0);
    /* custom_metadata [{k: v}] */
    LD_CHECK(fb_get_vector(&sch, 2, 4, &present, &meta) == 0 && present && meta.n == 1);
    LD_CHECK(fb_vec_table(&meta, 0, &kv) == 0);
    LD_CHECK(fb_get_string(&kv, 0, &present, &s, &n) == 0 && n == 1 && s[0] == 'k');
    LD_CHECK(fb_get_string(&kv, 1, &present, &s, &n) == 0 && n == 1 && s[0] == 'v');

    /* the stream framing around it */
    ld_buf out = LD_BUF_INIT;
    ld_status st = LD_STATUS_INIT;
    LD_CHECK(ot_ipc_write_stream(t, 0, &out, &st) == 0);
    const uint8_t *o = (const uint8_t *)out.data;
    LD_CHECK(fb_ld_u32(o) == 0xFFFFFFFFu);
    uint32_t mlen = fb_ld_u32(o + 4);
    LD_CHECK(mlen % 8 == 0 && mlen >= h.len && mlen < h.len + 8);
    LD_CHECK_MEM(o + 8, h.len, h.data, h.len);
    LD_CHECK_INT(out.len, 8 + mlen + 8); /* schema + EOS, no batch for 0 rows */
    LD_CHECK_MEM(o + out.len - 8, 8, "\xff\xff\xff\xff\0\0\0\0", 8);
    ld_buf_free(&out);
    ld_buf_free(&h);
    ot_table_free(t);
}

LD_TEST(record_batch_metadata_by_hand)
{
    ot_table *t = ot_table_new(2, 3);
    int32_t v[3] = {7, 8, 9};
    int valid[3] = {1, 0, 1};
    set_fixed(&t->cols[0], OT_INT32, "a", v, 4, 3, valid);
    const char *s[3] = {"x", "yz", ""};
    set_strs(&t->cols[1], OT_UTF8, "s", s, NULL, 3);
    ld_buf h = LD_BUF_INIT, b = LD_BUF_INIT;
    ld_status st = LD_STATUS_INIT;
    LD_CHECK(ot_ipc_write_batch(t, 0, 3, &h, &b, &st) == 0);
    fb_table msg, rb;
    fb_vec nodes, bufs;
    int present;
    uint8_t u8;
    int64_t i64;
    LD_CHECK(fb_root((const uint8_t *)h.data, h.len, &msg) == 0);
    LD_CHECK(fb_get_u8(&msg, 1, 0, &u8) == 0 && u8 == 3);
    LD_CHECK(fb_get_i64(&msg, 3, -1, &i64) == 0 && i64 == (int64_t)b.len);
    LD_CHECK(fb_get_table(&msg, 2, &present, &rb) == 0 && present);
    LD_CHECK(fb_get_i64(&rb, 0, -1, &i64) == 0 && i64 == 3);
    LD_CHECK(fb_get_vector(&rb, 1, 16, &present, &nodes) == 0 && nodes.n == 2);
    LD_CHECK(fb_ld_u64(fb_vec_at(&nodes, 0)) == 3 && fb_ld_u64(fb_vec_at(&nodes, 0) + 8) == 1);
    LD_CHECK(fb_ld_u64(fb_vec_at(&nodes, 1)) == 3 && fb_ld_u64(fb_vec_at(&nodes, 1) + 8) == 0);
    LD_CHECK(fb_get_vector(&rb, 2, 16, &present, &bufs) == 0 && bufs.n == 5);
    /* a.validity [0,1), a.values [8,20), s.validity empty, s.offsets [24,40), s.data [40,43) */
    int64_t expect[5][2] = {{0, 1}, {8, 12}, {24, 0}, {24, 16}, {40, 3}};
    for (size_t i = 0; i < 5; i++) {
        LD_CHECK_INT((int64_t)fb_ld_u64(fb_vec_at(&bufs, i)), expect[i][0]);
        LD_CHECK_INT((int64_t)fb_ld_u64(fb_vec_at(&bufs, i) + 8), expect[i][1]);
    }
    LD_CHECK((fb_vec_at(&nodes, 0) - (const uint8_t *)h.data) % 8 == 0); /* structs aligned */
    LD_CHECK_INT(b.len, 48);
    const uint8_t *body = (const uint8_t *)b.data;
    LD_CHECK_INT(body[0], 0x05);
    LD_CHECK(fb_ld_u32(body + 8) == 7 && fb_ld_u32(body + 16) == 9);
    LD_CHECK(fb_ld_u32(body + 24) == 0 && fb_ld_u32(body + 28) == 1 && fb_ld_u32(body + 32) == 3 &&
             fb_ld_u32(body + 36) == 3);
    LD_CHECK_MEM(body + 40, 3, "xyz", 3);
    ld_buf_free(&h);
    ld_buf_free(&b);
    ot_table_free(t);
}

/* ---- hand-built streams (dictionaries, foreign types, bad input) ---- */

typedef struct {
    ld_buf out;
} sb;

static void sb_msg(sb *s, fb_builder *b, const void *body, size_t blen)
{
    ot_ipc_frame(&s->out, fb_data(b), fb_size(b), body, blen);
    fb_reset(b);
}

static fb_ref mk_message(fb_builder *b, uint8_t htype, fb_ref header, int64_t body_len, int version)
{
    fb_start(b);
    fb_add_i16(b, 0, (int16_t)version);
    fb_add_u8(b, 1, htype);
    fb_add_ref(b, 2, header);
    fb_add_i64(b, 3, body_len);
    return fb_end(b);
}

/* field with a type table holding int fields (id, value) */
static fb_ref mk_field(fb_builder *b, const char *name, uint8_t tag, const int32_t *tparams,
                       size_t n_tparams, fb_ref dict_enc, fb_ref children)
{
    fb_start(b);
    for (size_t i = 0; i < n_tparams; i++) {
        if (tparams[2 * i] < 0)
            fb_add_u8(b, -tparams[2 * i] - 1, (uint8_t)tparams[2 * i + 1]);
        else if (tparams[2 * i] >= 100)
            fb_add_i16(b, tparams[2 * i] - 100, (int16_t)tparams[2 * i + 1]);
        else
            fb_add_i32(b, tparams[2 * i], tparams[2 * i + 1]);
    }
    fb_ref ty = fb_end(b);
    fb_ref nm = fb_create_string(b, name, strlen(name));
    fb_start(b);
    fb_add_ref(b, 0, nm);
    fb_add_u8(b, 1, 1);
    fb_add_u8(b, 2, tag);
    fb_add_ref(b, 3, ty);
    if (dict_enc)
        fb_add_ref(b, 4, dict_enc);
    if (children)
        fb_add_ref(b, 5, children);
    return fb_end(b);
}

static void mk_schema_msg(sb *s, fb_builder *b, const fb_ref *fields, size_t n, int16_t endian,
                          int version)
{
    fb_ref vf = fb_create_ref_vector(b, fields, n);
    fb_start(b);
    fb_add_i16(b, 0, endian);
    fb_add_ref(b, 1, vf);
    fb_ref sch = fb_end(b);
    fb_finish(b, mk_message(b, 1, sch, 0, version));
    sb_msg(s, b, NULL, 0);
}

/* a RecordBatch table: nodes (len, nulls)*, buffers (off, len)* */
static fb_ref mk_rb(fb_builder *b, int64_t length, const int64_t *nodes, size_t n_nodes,
                    const int64_t *bufs, size_t n_bufs, int codec)
{
    fb_ref vn = fb_create_struct_vector(b, nodes, n_nodes, 16, 8);
    fb_ref vb = fb_create_struct_vector(b, bufs, n_bufs, 16, 8);
    fb_ref comp = 0;
    if (codec >= 0) {
        fb_start(b);
        fb_add_u8(b, 0, (uint8_t)codec);
        comp = fb_end(b);
    }
    fb_start(b);
    fb_add_i64(b, 0, length);
    fb_add_ref(b, 1, vn);
    fb_add_ref(b, 2, vb);
    if (comp)
        fb_add_ref(b, 3, comp);
    return fb_end(b);
}

/* dictionary values as a utf8 body: offsets at 0, data at 8*k */
static size_t utf8_body(uint8_t *body, const char *const *v, size_t n, int64_t *bufs)
{
    int32_t off = 0;
    size_t data_at = ((4 * (n + 1)) + 7) & ~(size_t)7;
    memset(body, 0, 256);
    memcpy(body, &off, 4);
    for (size_t i = 0; i < n; i++) {
        memcpy(body + data_at + (size_t)off, v[i], strlen(v[i]));
        off += (int32_t)strlen(v[i]);
        memcpy(body + 4 * (i + 1), &off, 4);
    }
    int64_t b[6] = {0, 0, 0, (int64_t)(4 * (n + 1)), (int64_t)data_at, off};
    memcpy(bufs, b, sizeof b);
    return (data_at + (size_t)off + 7) & ~(size_t)7;
}

static void mk_dict_batch(sb *s, fb_builder *b, int64_t id, const char *const *v, size_t n,
                          int delta)
{
    uint8_t body[256];
    int64_t bufs[6];
    size_t blen = utf8_body(body, v, n, bufs);
    int64_t nodes[2] = {(int64_t)n, 0};
    fb_ref rb = mk_rb(b, (int64_t)n, nodes, 1, bufs, 3, -1);
    fb_start(b);
    fb_add_i64(b, 0, id);
    fb_add_ref(b, 1, rb);
    if (delta)
        fb_add_u8(b, 2, 1);
    fb_ref db = fb_end(b);
    fb_finish(b, mk_message(b, 2, db, (int64_t)blen, 4));
    sb_msg(s, b, body, blen);
}

/* a batch of int8 dictionary indices (idx < 0: null) */
static void mk_index_batch(sb *s, fb_builder *b, const int *idx, size_t n)
{
    uint8_t body[64] = {0};
    int64_t nulls = 0;
    for (size_t i = 0; i < n; i++) {
        if (idx[i] >= 0)
            ot_bit_set(body, (int64_t)i, 1);
        else
            nulls++;
        body[8 + i] = (uint8_t)(idx[i] < 0 ? 0 : idx[i]);
    }
    int64_t nodes[2] = {(int64_t)n, nulls};
    int64_t bufs[4] = {0, 1, 8, (int64_t)n};
    size_t blen = 8 + ((n + 7) & ~(size_t)7);
    fb_ref rb = mk_rb(b, (int64_t)n, nodes, 1, bufs, 2, -1);
    fb_finish(b, mk_message(b, 3, rb, (int64_t)blen, 4));
    sb_msg(s, b, body, blen);
}

static void mk_dict_stream(sb *s, int bad_index)
{
    fb_builder b;
    fb_init(&b);
    memset(s, 0, sizeof *s);
    int32_t int8_params[] = {0, 8, -2, 1}; /* bitWidth 8, is_signed */
    fb_start(&b);
    for (size_t i = 0; i < 2; i++) {
        if (int8_params[2 * i] < 0)
            fb_add_u8(&b, -int8_params[2 * i] - 1, (uint8_t)int8_params[2 * i + 1]);
        else
            fb_add_i32(&b, int8_params[2 * i], int8_params[2 * i + 1]);
    }
    fb_ref itype = fb_end(&b);
    fb_start(&b);
    fb_add_i64(&b, 0, 7);
    fb_add_ref(&b, 1, itype);
    fb_ref enc = fb_end(&b);
    fb_ref f = mk_field(&b, "city", 5 /* Utf8 */, NULL, 0, enc, 0);
    mk_schema_msg(s, &b, &f, 1, 0, 4);
    const char *d1[] = {"x", "yy"};
    mk_dict_batch(s, &b, 7, d1, 2, 0);
    int i1[] = {1, 0, -1, 1};
    mk_index_batch(s, &b, i1, 4);
    const char *d2[] = {"zzz"};
    mk_dict_batch(s, &b, 7, d2, 1, 1); /* delta: x yy zzz */
    int i2[] = {2, 0, bad_index ? 3 : 2};
    mk_index_batch(s, &b, i2, 3);
    const char *d3[] = {"new"};
    mk_dict_batch(s, &b, 7, d3, 1, 0); /* replacement */
    int i3[] = {0};
    mk_index_batch(s, &b, i3, 1);
    ld_buf_put_u32le(&s->out, 0xFFFFFFFFu);
    ld_buf_put_u32le(&s->out, 0);
    fb_free(&b);
}

static const char *cell(const ot_column *c, int64_t i, char *buf, size_t cap)
{
    if (!ot_column_valid(c, i))
        return "(null)";
    int64_t n = c->offsets[i + 1] - c->offsets[i];
    snprintf(buf, cap, "%.*s", (int)n, c->data + c->offsets[i]);
    return buf;
}

LD_TEST(dictionary_stream)
{
    sb s;
    mk_dict_stream(&s, 0);
    ot_table *t = NULL;
    ld_status st = LD_STATUS_INIT;
    LD_CHECK(ot_ipc_read_stream((const uint8_t *)s.out.data, s.out.len, &t, &st) == 0);
    if (!t) {
        printf("# %s\n", st.msg);
    } else {
        const char *want[] = {"yy", "x", "(null)", "yy", "zzz", "x", "zzz", "new"};
        char buf[32];
        LD_CHECK_INT(t->n_rows, 8);
        LD_CHECK_INT(t->cols[0].type.id, OT_UTF8);
        LD_CHECK_STR(t->cols[0].name, "city");
        LD_CHECK_INT(t->cols[0].null_count, 1);
        for (int64_t i = 0; i < 8; i++)
            LD_CHECK_STR(cell(&t->cols[0], i, buf, sizeof buf), want[i]);
        /* and it re-encodes as plain utf8 */
        ot_table *r = roundtrip(t, 3, OT_IPC_UNCOMPRESSED);
        LD_CHECK(r && tables_equal(t, r));
        ot_table_free(r);
    }
    ot_table_free(t);
    ld_buf_free(&s.out);

    mk_dict_stream(&s, 1);
    t = NULL;
    LD_CHECK(ot_ipc_read_stream((const uint8_t *)s.out.data, s.out.len, &t, &st) == -1);
    LD_CHECK_INT(st.code, GRPC_STATUS_INVALID_ARGUMENT);
    LD_CHECK(strstr(st.msg, "dictionary index 3 out of range") != NULL);
    ld_buf_free(&s.out);
}

LD_TEST(legacy_framing)
{
    ot_table *t = all_types_table();
    ld_buf out = LD_BUF_INIT, legacy = LD_BUF_INIT;
    ld_status st = LD_STATUS_INIT;
    LD_CHECK(ot_ipc_write_stream(t, 4, &out, &st) == 0);
    /* drop every continuation marker: <int32 len><metadata><body>, EOS = 0 */
    const uint8_t *p = (const uint8_t *)out.data;
    size_t pos = 0;
    while (pos < out.len) {
        uint32_t len = fb_ld_u32(p + pos + 4);
        ld_buf_put_u32le(&legacy, len);
        pos += 8;
        if (len == 0)
            break;
        fb_table msg;
        int64_t bl = 0;
        LD_CHECK(fb_root(p + pos, len, &msg) == 0);
        fb_get_i64(&msg, 3, 0, &bl);
        ld_buf_append(&legacy, p + pos, len + (size_t)bl);
        pos += len + (size_t)bl;
    }
    LD_CHECK_INT(legacy.len, out.len - 5 * 4); /* schema, 3 batches, EOS */
    ot_table *r = NULL;
    LD_CHECK(ot_ipc_read_stream((const uint8_t *)legacy.data, legacy.len, &r, &st) == 0);
    LD_CHECK(r && tables_equal(t, r));
    ot_table_free(r);
    /* a stream without EOS (the writer just closed) is whole too */
    r = NULL;
    LD_CHECK(ot_ipc_read_stream((const uint8_t *)out.data, out.len - 8, &r, &st) == 0);
    LD_CHECK(r && tables_equal(t, r));
    ot_table_free(r);
    ld_buf_free(&out);
    ld_buf_free(&legacy);
    ot_table_free(t);
}

static int decode_fails(const ld_buf *s, grpc_status_code code, const char *needle)
{
    ot_table *t = NULL;
    ld_status st = LD_STATUS_INIT;
    int rc = ot_ipc_read_stream((const uint8_t *)s->data, s->len, &t, &st);
    ot_table_free(t);
    if (rc != -1 || st.code != code || (needle && !strstr(st.msg, needle))) {
        printf("# rc %d code %d msg '%s' (wanted '%s')\n", rc, st.code, st.msg, needle);
        return 0;
    }
    return 1;
}

LD_TEST(refused_input)
{
    fb_builder b;
    fb_init(&b);
    sb s;
    /* unsupported type: Decimal */
    memset(&s, 0, sizeof s);
    int32_t dec[] = {0, 10, 1, 2};
    fb_ref f = mk_field(&b, "price", 7, dec, 2, 0, 0);
    mk_schema_msg(&s, &b, &f, 1, 0, 4);
    LD_CHECK(decode_fails(&s.out, GRPC_STATUS_INVALID_ARGUMENT,
                          "unsupported Arrow type Decimal (type id 7) in field 'price'"));
    ld_buf_free(&s.out);
    /* Struct */
    memset(&s, 0, sizeof s);
    f = mk_field(&b, "st", 13, NULL, 0, 0, 0);
    mk_schema_msg(&s, &b, &f, 1, 0, 4);
    LD_CHECK(decode_fails(&s.out, GRPC_STATUS_INVALID_ARGUMENT, "Struct"));
    ld_buf_free(&s.out);
    /* big endian */
    memset(&s, 0, sizeof s);
    f = mk_field(&b, "a", 6, NULL, 0, 0, 0);
    mk_schema_msg(&s, &b, &f, 1, 1, 4);
    LD_CHECK(decode_fails(&s.out, GRPC_STATUS_INVALID_ARGUMENT, "big-endian"));
    ld_buf_free(&s.out);
    /* metadata V3 */
    memset(&s, 0, sizeof s);
    f = mk_field(&b, "a", 6, NULL, 0, 0, 0);
    mk_schema_msg(&s, &b, &f, 1, 0, 2);
    LD_CHECK(decode_fails(&s.out, GRPC_STATUS_INVALID_ARGUMENT, "version V3"));
    ld_buf_free(&s.out);
    /* date64 */
    memset(&s, 0, sizeof s);
    int32_t d64[] = {100, 1};
    f = mk_field(&b, "d", 8, d64, 1, 0, 0);
    mk_schema_msg(&s, &b, &f, 1, 0, 4);
    LD_CHECK(decode_fails(&s.out, GRPC_STATUS_INVALID_ARGUMENT, "date64"));
    ld_buf_free(&s.out);
    /* lists nested deeper than OT_IPC_MAX_DEPTH */
    memset(&s, 0, sizeof s);
    f = mk_field(&b, "leaf", 6, NULL, 0, 0, 0);
    for (int d = 0; d < OT_IPC_MAX_DEPTH + 2; d++) {
        fb_ref ch = fb_create_ref_vector(&b, &f, 1);
        f = mk_field(&b, "l", 12, NULL, 0, 0, ch);
    }
    mk_schema_msg(&s, &b, &f, 1, 0, 4);
    LD_CHECK(decode_fails(&s.out, GRPC_STATUS_INVALID_ARGUMENT, "nested deeper than 16"));
    ld_buf_free(&s.out);
    /* a list without its child field */
    memset(&s, 0, sizeof s);
    f = mk_field(&b, "l", 12, NULL, 0, 0, 0);
    mk_schema_msg(&s, &b, &f, 1, 0, 4);
    LD_CHECK(decode_fails(&s.out, GRPC_STATUS_INVALID_ARGUMENT, "exactly one child"));
    ld_buf_free(&s.out);
    /* two schemas */
    memset(&s, 0, sizeof s);
    f = mk_field(&b, "a", 6, NULL, 0, 0, 0);
    mk_schema_msg(&s, &b, &f, 1, 0, 4);
    f = mk_field(&b, "a", 6, NULL, 0, 0, 0);
    mk_schema_msg(&s, &b, &f, 1, 0, 4);
    LD_CHECK(decode_fails(&s.out, GRPC_STATUS_INVALID_ARGUMENT, "a second Schema"));
    ld_buf_free(&s.out);
    /* no schema at all, and a batch first */
    memset(&s, 0, sizeof s);
    ld_buf_put_u32le(&s.out, 0xFFFFFFFFu);
    ld_buf_put_u32le(&s.out, 0);
    LD_CHECK(decode_fails(&s.out, GRPC_STATUS_INVALID_ARGUMENT, "no Schema"));
    ld_buf_free(&s.out);
    memset(&s, 0, sizeof s);
    int idx[] = {0};
    mk_index_batch(&s, &b, idx, 1);
    LD_CHECK(decode_fails(&s.out, GRPC_STATUS_INVALID_ARGUMENT, "RecordBatch before the Schema"));
    ld_buf_free(&s.out);
    /* int8 / uint16 / uint64 are widened; a uint64 above INT64_MAX is refused */
    memset(&s, 0, sizeof s);
    int32_t i8p[] = {0, 8, -2, 1}, u16p[] = {0, 16, -2, 0}, u64p[] = {0, 64, -2, 0};
    fb_ref fs[3];
    fs[0] = mk_field(&b, "i8", 2, i8p, 2, 0, 0);
    fs[1] = mk_field(&b, "u16", 2, u16p, 2, 0, 0);
    fs[2] = mk_field(&b, "u64", 2, u64p, 2, 0, 0);
    mk_schema_msg(&s, &b, fs, 3, 0, 4);
    uint8_t body[64] = {0};
    body[0] = 0xFF;                 /* i8: -1 */
    body[8] = 0xFF, body[9] = 0xFF; /* u16: 65535 */
    memset(body + 16, 0xFF, 7);     /* u64: 2^56 - 1 */
    int64_t nodes[6] = {1, 0, 1, 0, 1, 0};
    int64_t bufs[12] = {0, 0, 0, 1, 0, 0, 8, 2, 0, 0, 16, 8};
    fb_ref rb = mk_rb(&b, 1, nodes, 3, bufs, 6, -1);
    fb_finish(&b, mk_message(&b, 3, rb, 24, 4));
    sb_msg(&s, &b, body, 24);
    ot_table *t = NULL;
    ld_status st = LD_STATUS_INIT;
    LD_CHECK(ot_ipc_read_stream((const uint8_t *)s.out.data, s.out.len, &t, &st) == 0);
    if (t) {
        LD_CHECK_INT(t->cols[0].type.id, OT_INT32);
        LD_CHECK_INT(((int32_t *)t->cols[0].values)[0], -1);
        LD_CHECK_INT(t->cols[1].type.id, OT_INT32);
        LD_CHECK_INT(((int32_t *)t->cols[1].values)[0], 65535);
        LD_CHECK_INT(t->cols[2].type.id, OT_INT64);
        LD_CHECK_INT(((int64_t *)t->cols[2].values)[0], (1LL << 56) - 1);
    }
    ot_table_free(t);
    /* same stream, u64 = 2^64 - 1 */
    ld_buf_reset(&s.out);
    fs[0] = mk_field(&b, "u64", 2, u64p, 2, 0, 0);
    mk_schema_msg(&s, &b, fs, 1, 0, 4);
    memset(body, 0xFF, 8);
    int64_t nodes1[2] = {1, 0}, bufs1[4] = {0, 0, 0, 8};
    rb = mk_rb(&b, 1, nodes1, 1, bufs1, 2, -1);
    fb_finish(&b, mk_message(&b, 3, rb, 8, 4));
    sb_msg(&s, &b, body, 8);
    LD_CHECK(decode_fails(&s.out, GRPC_STATUS_INVALID_ARGUMENT, "does not fit in int64"));
    ld_buf_free(&s.out);
    fb_free(&b);

    /* more than 10,000 columns */
    ot_table *wide = ot_table_new(OT_IPC_MAX_COLUMNS + 1, 0);
    for (size_t i = 0; i < wide->n_cols; i++) {
        wide->cols[i].name = dupstr("c");
        wide->cols[i].type.id = OT_BOOL;
    }
    ld_buf out = LD_BUF_INIT;
    LD_CHECK(ot_ipc_write_stream(wide, 0, &out, &st) == 0);
    LD_CHECK(decode_fails(&out, GRPC_STATUS_INVALID_ARGUMENT, "at most 10000"));
    ld_buf_free(&out);
    ot_table_free(wide);

    /* the decoded-size budget */
    ot_table *all = all_types_table();
    LD_CHECK(ot_ipc_write_stream(all, 0, &out, &st) == 0);
    t = NULL;
    LD_CHECK(ot_ipc_read_stream_ex((const uint8_t *)out.data, out.len, 256, &t, &st) == -1);
    LD_CHECK_INT(st.code, GRPC_STATUS_RESOURCE_EXHAUSTED);
    LD_CHECK(ot_ipc_read_stream_ex((const uint8_t *)out.data, out.len, 1 << 20, &t, &st) == 0);
    ot_table_free(t);
    /* truncated */
    for (size_t cut = 1; cut < out.len - 8; cut += 7) {
        ld_buf tr = LD_BUF_INIT;
        ld_buf_append(&tr, out.data, cut);
        t = NULL;
        int rc = ot_ipc_read_stream((const uint8_t *)tr.data, tr.len, &t, &st);
        LD_CHECK(rc == -1 && st.code == GRPC_STATUS_INVALID_ARGUMENT);
        ot_table_free(t);
        ld_buf_free(&tr);
    }
    ld_buf_free(&out);
    /* after a failure the reader stays failed */
    ot_ipc_reader *rd = ot_ipc_reader_new();
    LD_CHECK(ot_ipc_reader_feed(rd, (const uint8_t *)"\x08\0\0\0\0\0\0\0", 8, NULL, 0, &st) == -1);
    ld_buf h = LD_BUF_INIT;
    ot_ipc_write_schema(all, &h);
    LD_CHECK(ot_ipc_reader_feed(rd, (const uint8_t *)h.data, h.len, NULL, 0, &st) == -1);
    LD_CHECK(ot_ipc_reader_finish(rd, &st) == NULL);
    LD_CHECK_INT(st.code, GRPC_STATUS_INVALID_ARGUMENT);
    ot_ipc_reader_free(rd);
    ld_buf_free(&h);
    ot_table_free(all);
}

/* ---- mutation fuzzing ---- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void mutate(ld_buf *m, const ld_buf *src)
{
    ld_buf_reset(m);
    ld_buf_append(m, src->data, src->len);
    uint8_t *p = (uint8_t *)m->data;
    int kind = (int)(rnd() % 8);
    int count = 1 + (int)(rnd() % 4);
    for (int k = 0; k < count && m->len > 0; k++) {
        size_t at = (size_t)(rnd() % m->len);
        switch (kind) {
        case 0: /* flip a bit */
            p[at] ^= (uint8_t)(1u << (rnd() % 8));
            break;
        case 1: /* random byte */
            p[at] = (uint8_t)rnd();
            break;
        case 2: { /* interesting byte */
            static const uint8_t vals[] = {0, 1, 0x7F, 0x80, 0xFF, 0xFE, 8, 16};
            p[at] = vals[rnd() % sizeof vals];
            break;
        }
        case 3: { /* interesting 32-bit word, aligned */
            static const uint32_t words[] = {0,           1, 0xFFFFFFFFu, 0x7FFFFFFFu,
                                             0x80000000u, 4, 8,           0xFFFFFFF8u};
            at &= ~(size_t)3;
            if (at + 4 <= m->len) {
                uint32_t w = words[rnd() % 8];
                memcpy(p + at, &w, 4);
            }
            break;
        }
        case 4: { /* interesting 64-bit word, aligned (buffer offsets, lengths) */
            static const int64_t words[] = {0, 1, -1, INT64_MAX, INT64_MIN, 1 << 20, 7, 1LL << 40};
            at &= ~(size_t)7;
            if (at + 8 <= m->len) {
                int64_t w = words[rnd() % 8];
                memcpy(p + at, &w, 8);
            }
            break;
        }
        case 5: /* truncate */
            m->len = at;
            break;
        case 6: /* small integer change */
            p[at] = (uint8_t)(p[at] + (rnd() % 2 ? 1 : -1));
            break;
        default: /* copy a chunk over another place */ {
            size_t from = (size_t)(rnd() % m->len), n = (size_t)(rnd() % 16);
            if (from + n <= m->len && at + n <= m->len)
                memmove(p + at, p + from, n);
        }
        }
    }
}

static void fuzz_stream(const ld_buf *seed, long iters, int *ok_decodes, int *failures)
{
    ld_buf m = LD_BUF_INIT;
    for (long i = 0; i < iters; i++) {
        mutate(&m, seed);
        /* exact-size heap copy so ASan sees any over-read */
        uint8_t *exact = malloc(m.len ? m.len : 1);
        memcpy(exact, m.data, m.len);
        ot_table *t = NULL;
        ld_status st = LD_STATUS_INIT;
        int rc = ot_ipc_read_stream_ex(exact, m.len, 16 << 20, &t, &st);
        if (rc == 0) {
            (*ok_decodes)++;
            /* whatever decoded must be a consistent table: re-encode it */
            ld_buf again = LD_BUF_INIT;
            ld_status st2 = LD_STATUS_INIT;
            if (ot_ipc_write_stream(t, 5, &again, &st2) != 0) {
                printf("# decoded table does not re-encode: %s\n", st2.msg);
                (*failures)++;
            }
            ot_table *t2 = NULL;
            if (ot_ipc_read_stream((const uint8_t *)again.data, again.len, &t2, &st2) != 0 ||
                !tables_equal(t, t2)) {
                printf("# decoded table does not round trip: %s\n", st2.msg);
                (*failures)++;
            }
            ot_table_free(t2);
            ld_buf_free(&again);
        } else if (st.code != GRPC_STATUS_INVALID_ARGUMENT &&
                   st.code != GRPC_STATUS_RESOURCE_EXHAUSTED) {
            printf("# unexpected code %d: %s\n", st.code, st.msg);
            (*failures)++;
        } else if (st.msg[0] == '\0') {
            (*failures)++;
        }
        ot_table_free(t);
        free(exact);
    }
    ld_buf_free(&m);
}

/* Flight-style: mutate header and body separately */
static void fuzz_flight(const ot_table *t, long iters, int *failures)
{
    ld_buf sh = LD_BUF_INIT, h = LD_BUF_INIT, b = LD_BUF_INIT, mh = LD_BUF_INIT, mb = LD_BUF_INIT;
    ld_status st = LD_STATUS_INIT;
    ot_ipc_write_schema(t, &sh);
    ot_ipc_write_batch(t, 1, t->n_rows - 1, &h, &b, &st);
    for (long i = 0; i < iters; i++) {
        ot_ipc_reader *rd = ot_ipc_reader_new();
        ot_ipc_reader_set_max_bytes(rd, 16 << 20);
        int which = (int)(rnd() % 3);
        mutate(&mh, which == 0 ? &sh : &h);
        mutate(&mb, &b);
        uint8_t *eh = malloc(mh.len + 1), *eb = malloc(mb.len + 1);
        memcpy(eh, mh.data, mh.len);
        memcpy(eb, mb.data, mb.len);
        int rc;
        if (which == 0) {
            rc = ot_ipc_reader_feed(rd, eh, mh.len, NULL, 0, &st);
            if (rc == 0)
                rc = ot_ipc_reader_feed(rd, (const uint8_t *)h.data, h.len, (const uint8_t *)b.data,
                                        b.len, &st);
        } else {
            rc = ot_ipc_reader_feed(rd, (const uint8_t *)sh.data, sh.len, NULL, 0, &st);
            if (rc == 0)
                rc = ot_ipc_reader_feed(rd, eh, mh.len, which == 1 ? eb : (const uint8_t *)b.data,
                                        which == 1 ? mb.len : b.len, &st);
        }
        ot_table *out = ot_ipc_reader_finish(rd, &st);
        if (!out && st.code != GRPC_STATUS_INVALID_ARGUMENT &&
            st.code != GRPC_STATUS_RESOURCE_EXHAUSTED)
            (*failures)++;
        (void)rc;
        ot_table_free(out);
        ot_ipc_reader_free(rd);
        free(eh);
        free(eb);
    }
    ld_buf_free(&sh);
    ld_buf_free(&h);
    ld_buf_free(&b);
    ld_buf_free(&mh);
    ld_buf_free(&mb);
}

LD_TEST(mutation_fuzz)
{
    long iters = 4000;
    const char *env = getenv("LARDER_FUZZ_ITERS");
    if (env && atol(env) > 0)
        iters = atol(env);
    const char *seed = getenv("LARDER_FUZZ_SEED");
    if (seed && strtoull(seed, NULL, 0))
        rng_state = strtoull(seed, NULL, 0);
    ot_table *t = all_types_table();
    ld_buf seeds[5] = {LD_BUF_INIT, LD_BUF_INIT, LD_BUF_INIT, LD_BUF_INIT, LD_BUF_INIT};
    ld_status st = LD_STATUS_INIT;
    LD_CHECK(ot_ipc_write_stream(t, 4, &seeds[0], &st) == 0);
    LD_CHECK(ot_ipc_write_stream_ex(t, 6, OT_IPC_LZ4_FRAME, &seeds[1], &st) == 0);
    LD_CHECK(ot_ipc_write_stream_ex(t, 0, OT_IPC_ZSTD, &seeds[2], &st) == 0);
    sb s;
    mk_dict_stream(&s, 0);
    seeds[3] = s.out;
    /* a compressible seed, so the compressed buffers are really compressed */
    ot_table *rep = ot_table_new(2, 64);
    int64_t v[64];
    const char *strs[64];
    for (int i = 0; i < 64; i++) {
        v[i] = i % 3;
        strs[i] = i % 5 ? "aaaaaaaaaaaaaaaaaaaa" : NULL;
    }
    set_fixed(&rep->cols[0], OT_INT64, "v", v, 8, 64, NULL);
    set_strs(&rep->cols[1], OT_UTF8, "s", strs, NULL, 64);
    LD_CHECK(ot_ipc_write_stream_ex(rep, 0, (ot_ipc_codec)(rnd() % 2), &seeds[4], &st) == 0);
    int ok = 0, failures = 0;
    for (int k = 0; k < 5; k++) {
        int before = ok;
        fuzz_stream(&seeds[k], iters, &ok, &failures);
        printf("# seed %d: %d of %ld mutants decoded\n", k, ok - before, iters);
    }
    fuzz_flight(t, iters, &failures);
    LD_CHECK_INT(failures, 0);
    for (int k = 0; k < 5; k++)
        ld_buf_free(&seeds[k]);
    ot_table_free(rep);
    ot_table_free(t);
}

/* ---- column selection (ot_ipc_reader_select, ot_ipc_read_path_cols) ---- */

static char *write_tmp(const ld_buf *b)
{
    char *path = strdup("/tmp/larder-test-ipc-XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0) {
        free(path);
        return NULL;
    }
    FILE *f = fdopen(fd, "wb");
    fwrite(b->data, 1, b->len, f);
    fclose(f);
    return path;
}

/* full's columns named in names, in full's order (moved out of full). */
static ot_table *subset(ot_table *full, const char *const *names, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < full->n_cols; i++)
        for (size_t j = 0; j < n; j++)
            if (names[j] && !strcmp(names[j], full->cols[i].name)) {
                k++;
                break;
            }
    ot_table *t = ot_table_new(k, full->n_rows);
    k = 0;
    for (size_t i = 0; i < full->n_cols; i++)
        for (size_t j = 0; j < n; j++)
            if (names[j] && !strcmp(names[j], full->cols[i].name)) {
                t->cols[k++] = full->cols[i];
                memset(&full->cols[i], 0, sizeof full->cols[i]);
                break;
            }
    for (size_t i = 0; i < full->n_meta; i++)
        ot_table_add_meta(t, full->meta_keys[i], full->meta_values[i]);
    return t;
}

LD_TEST(select_columns_from_files)
{
    ot_table *t = all_types_table();
    const char *sets[][4] = {
            {"i64", NULL, NULL, NULL},
            {"utf8", "event_timestamp", NULL, NULL},
            {"list", "nothing", "large_utf8", NULL},
            {"binary", "bool", "ts_ns", "date"},
            {"no_such_column", NULL, NULL, NULL},
            {"f32", "i32", "ts_ms", "ts_s_ny"},
    };
    ot_ipc_codec codecs[] = {OT_IPC_UNCOMPRESSED, OT_IPC_LZ4_FRAME, OT_IPC_ZSTD};
    for (size_t c = 0; c < 3; c++)
        for (int64_t bs = 0; bs <= 4; bs += 4) {
            ld_buf out = LD_BUF_INIT;
            ld_status st = LD_STATUS_INIT;
            LD_CHECK(ot_ipc_write_stream_ex(t, bs, codecs[c], &out, &st) == 0);
            char *path = write_tmp(&out);
            LD_CHECK(path != NULL);
            for (size_t s = 0; path && s < sizeof sets / sizeof sets[0]; s++) {
                ot_table *full = NULL, *got = NULL;
                LD_CHECK(ot_ipc_read_path(path, &full, &st) == 0);
                LD_CHECK(ot_ipc_read_path_cols(path, sets[s], 4, &got, &st) == 0);
                if (full && got) {
                    ot_table *want = subset(full, sets[s], 4);
                    if (!tables_equal(want, got))
                        printf("# set %zu, codec %zu, batch %lld\n", s, c, (long long)bs);
                    LD_CHECK(tables_equal(want, got));
                    ot_table_free(want);
                }
                ot_table_free(full);
                ot_table_free(got);
            }
            /* no names selected: rows but no columns; NULL: every column */
            ot_table *none = NULL, *all = NULL;
            LD_CHECK(path && ot_ipc_read_path_cols(path, sets[0], 0, &none, &st) == 0);
            LD_CHECK(none && none->n_cols == 0 && none->n_rows == NROWS);
            LD_CHECK(path && ot_ipc_read_path_cols(path, NULL, 0, &all, &st) == 0);
            LD_CHECK(all && tables_equal(t, all));
            ot_table_free(none);
            ot_table_free(all);
            if (path)
                unlink(path);
            free(path);
            ld_buf_free(&out);
        }
    ot_table_free(t);
}

/* The unselected column's bytes are not looked at: a compressed buffer of
 * it corrupted fails the whole read but not a read without it. */
LD_TEST(select_skips_unselected_buffers)
{
    int64_t n = 5000;
    ot_table *t = ot_table_new(2, n);
    int64_t *v = malloc(8 * (size_t)n);
    const char **s = malloc(sizeof(char *) * (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        v[i] = i;
        s[i] = "a long and very compressible string value";
    }
    set_fixed(&t->cols[0], OT_INT64, "v", v, 8, n, NULL);
    set_strs(&t->cols[1], OT_UTF8, "s", s, NULL, n);
    ot_ipc_codec codecs[] = {OT_IPC_LZ4_FRAME, OT_IPC_ZSTD};
    for (size_t c = 0; c < 2; c++) {
        ld_buf out = LD_BUF_INIT;
        ld_status st = LD_STATUS_INIT;
        LD_CHECK(ot_ipc_write_stream_ex(t, 0, codecs[c], &out, &st) == 0);
        /* the string data is the last buffer of the body: the bytes before
         * the end-of-stream marker and the body's padding; zero its frame's
         * last 16 bytes (inside the compressed data, past its prefix) */
        size_t end = out.len - 8;
        while (end > 0 && out.data[end - 1] == 0)
            end--;
        LD_CHECK(end > 32);
        memset(out.data + end - 16, 0, 16);
        char *path = write_tmp(&out);
        ot_table *r = NULL;
        LD_CHECK(ot_ipc_read_path(path, &r, &st) == -1);
        LD_CHECK_INT(st.code, GRPC_STATUS_INVALID_ARGUMENT);
        const char *only_v[] = {"v"};
        LD_CHECK(ot_ipc_read_path_cols(path, only_v, 1, &r, &st) == 0);
        LD_CHECK(r && r->n_cols == 1 && r->n_rows == n);
        LD_CHECK(r && columns_equal(&t->cols[0], &r->cols[0]));
        ot_table_free(r);
        /* the same through the incremental reader */
        ot_ipc_reader *rd = ot_ipc_reader_new();
        ot_ipc_reader_select(rd, only_v, 1);
        const uint8_t *p = (const uint8_t *)out.data;
        size_t pos = 0;
        int rc = 0;
        while (rc == 0 && pos + 8 <= out.len) {
            uint32_t len = fb_ld_u32(p + pos + 4);
            if (!len)
                break;
            fb_table msg;
            int64_t blen = 0;
            LD_CHECK(fb_root(p + pos + 8, len, &msg) == 0);
            fb_get_i64(&msg, 3, 0, &blen);
            rc = ot_ipc_reader_feed(rd, p + pos + 8, len, p + pos + 8 + len, (size_t)blen, &st);
            pos += 8 + len + (size_t)blen;
        }
        LD_CHECK_INT(rc, 0);
        r = ot_ipc_reader_finish(rd, &st);
        LD_CHECK(r && r->n_cols == 1 && columns_equal(&t->cols[0], &r->cols[0]));
        ot_table_free(r);
        ot_ipc_reader_free(rd);
        unlink(path);
        free(path);
        ld_buf_free(&out);
    }
    free(v);
    free(s);
    ot_table_free(t);
}

/* A dictionary only unselected fields use is not decoded (a bad index in
 * it goes unnoticed); selected, it is. */
LD_TEST(select_skips_unselected_dictionaries)
{
    sb s;
    mk_dict_stream(&s, 1);
    char *path = write_tmp(&s.out);
    ot_table *t = NULL;
    ld_status st = LD_STATUS_INIT;
    const char *city[] = {"city"}, *other[] = {"other"};
    LD_CHECK(ot_ipc_read_path_cols(path, city, 1, &t, &st) == -1);
    LD_CHECK(strstr(st.msg, "dictionary index 3 out of range") != NULL);
    LD_CHECK(ot_ipc_read_path_cols(path, other, 1, &t, &st) == 0);
    LD_CHECK(t && t->n_cols == 0 && t->n_rows == 8);
    ot_table_free(t);
    unlink(path);
    free(path);
    ld_buf_free(&s.out);
}

/* Mutated streams read from a file with a random selection: an error or a
 * table, never a crash (ASan). */
LD_TEST(select_fuzz_files)
{
    long iters = 1000;
    const char *env = getenv("LARDER_FUZZ_ITERS");
    if (env && atol(env) > 0)
        iters = atol(env) / 4 + 1;
    ot_table *t = all_types_table();
    ld_buf seeds[3] = {LD_BUF_INIT, LD_BUF_INIT, LD_BUF_INIT};
    ld_status st = LD_STATUS_INIT;
    LD_CHECK(ot_ipc_write_stream(t, 4, &seeds[0], &st) == 0);
    LD_CHECK(ot_ipc_write_stream_ex(t, 6, OT_IPC_LZ4_FRAME, &seeds[1], &st) == 0);
    LD_CHECK(ot_ipc_write_stream_ex(t, 0, OT_IPC_ZSTD, &seeds[2], &st) == 0);
    int failures = 0, decoded = 0;
    for (long i = 0; i < iters; i++) {
        ld_buf m = LD_BUF_INIT;
        mutate(&m, &seeds[i % 3]);
        char *path = write_tmp(&m);
        const char *names[3];
        for (int k = 0; k < 3; k++)
            names[k] = t->cols[rnd() % t->n_cols].name;
        ot_table *r = NULL;
        ld_status st2 = LD_STATUS_INIT;
        int rc = ot_ipc_read_path_cols(path, names, 1 + rnd() % 3, &r, &st2);
        if (rc == 0)
            decoded++;
        else if (st2.code != GRPC_STATUS_INVALID_ARGUMENT &&
                 st2.code != GRPC_STATUS_RESOURCE_EXHAUSTED)
            failures++;
        ot_table_free(r);
        unlink(path);
        free(path);
        ld_buf_free(&m);
    }
    printf("# %d of %ld mutants decoded\n", decoded, iters);
    LD_CHECK_INT(failures, 0);
    for (int k = 0; k < 3; k++)
        ld_buf_free(&seeds[k]);
    ot_table_free(t);
}
