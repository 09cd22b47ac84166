/* Unit tests for ld_value: constructors, the total order and equality over
 * every kind of Value, Feast's type names, Python's float repr (vectors from
 * /usr/bin/python3 repr(), checked once against 2 million random doubles),
 * and the feature server's JSON rendering (vectors from json.dumps). */
#include "ld_test.h"

#include "ld_value.h"

#include <math.h>
#include <stdint.h>

static ld_arena arena;

static void arena_begin(void)
{
    ld_arena_init(&arena, NULL, 0, 0);
}

static void arena_end(void)
{
    ld_arena_destroy(&arena);
}

/* A map/struct Value from n key/value pairs. */
static Feast__Types__Value *map_of(ld_value_case c, size_t n, const char *const *keys,
                                   Feast__Types__Value *const *vals)
{
    Feast__Types__Value *v = ld_value_new(&arena);
    Feast__Types__Map *m = ld_arena_alloc(&arena, sizeof *m);
    feast__types__map__init(m);
    m->n_val = n;
    m->val = ld_arena_calloc(&arena, n ? n : 1, sizeof *m->val);
    for (size_t i = 0; i < n; i++) {
        Feast__Types__Map__ValEntry *e = ld_arena_alloc(&arena, sizeof *e);
        feast__types__map__val_entry__init(e);
        e->key = ld_arena_strdup(&arena, keys[i]);
        e->value = vals[i];
        m->val[i] = e;
    }
    v->val_case = c;
    if (c == FEAST__TYPES__VALUE__VAL_STRUCT_VAL)
        v->struct_val = m;
    else
        v->map_val = m;
    return v;
}

/* A list_val/set_val Value. */
static Feast__Types__Value *repeated_of(ld_value_case c, size_t n, Feast__Types__Value *const *vals)
{
    Feast__Types__Value *v = ld_value_new(&arena);
    Feast__Types__RepeatedValue *r = ld_arena_alloc(&arena, sizeof *r);
    feast__types__repeated_value__init(r);
    r->n_val = n;
    r->val = ld_arena_memdup(&arena, vals, n * sizeof *vals);
    v->val_case = c;
    if (c == FEAST__TYPES__VALUE__VAL_SET_VAL)
        v->set_val = r;
    else
        v->list_val = r;
    return v;
}

static Feast__Types__Value *zoned(int64_t secs, const char *zone)
{
    Feast__Types__Value *v = ld_value_new(&arena);
    Feast__Types__ZonedTimestamp *z = ld_arena_alloc(&arena, sizeof *z);
    feast__types__zoned_timestamp__init(z);
    z->unix_timestamp = secs;
    z->zone = ld_arena_strdup(&arena, zone);
    v->val_case = FEAST__TYPES__VALUE__VAL_ZONED_TIMESTAMP_VAL;
    v->zoned_timestamp_val = z;
    return v;
}

/* Serialize with protobuf-c and parse back. */
static Feast__Types__Value *pb_round_trip(const Feast__Types__Value *v)
{
    size_t n = feast__types__value__get_packed_size(v);
    uint8_t *buf = ld_arena_alloc(&arena, n);
    feast__types__value__pack(v, buf);
    return feast__types__value__unpack(ld_arena_pbc(&arena), n, buf);
}

LD_TEST(constructors)
{
    arena_begin();
    Feast__Types__Value *v = ld_value_int64(&arena, INT64_MIN);
    LD_CHECK_INT(v->val_case, FEAST__TYPES__VALUE__VAL_INT64_VAL);
    LD_CHECK(v->int64_val == INT64_MIN);
    LD_CHECK_INT(ld_value_int32(&arena, -3)->int32_val, -3);
    LD_CHECK(ld_value_double(&arena, 2.5)->double_val == 2.5);
    LD_CHECK(ld_value_float(&arena, 0.5f)->float_val == 0.5f);
    LD_CHECK_INT(ld_value_bool(&arena, 42)->bool_val, 1);
    LD_CHECK_INT(ld_value_unix_ts(&arena, 1640991600)->val_case,
                 FEAST__TYPES__VALUE__VAL_UNIX_TIMESTAMP_VAL);
    LD_CHECK_INT(ld_value_null(&arena)->val_case, FEAST__TYPES__VALUE__VAL_NULL_VAL);
    LD_CHECK_INT(ld_value_new(&arena)->val_case, FEAST__TYPES__VALUE__VAL__NOT_SET);

    /* strings are copied and NUL-terminated; the source need not be */
    char src[] = {'a', 'b', 'c', 'd'};
    v = ld_value_string(&arena, src, 3);
    src[0] = 'X';
    LD_CHECK_STR(v->string_val, "abc");
    v = ld_value_bytes(&arena, "\x00\x01", 2);
    LD_CHECK_MEM(v->bytes_val.data, v->bytes_val.len, "\x00\x01", 2);
    v = ld_value_bytes(&arena, NULL, 0);
    LD_CHECK_INT(v->bytes_val.len, 0);

    const int64_t i64[] = {1, -2, 3};
    v = ld_value_int64_list(&arena, i64, 3);
    LD_CHECK_INT(v->val_case, FEAST__TYPES__VALUE__VAL_INT64_LIST_VAL);
    LD_CHECK_INT(v->int64_list_val->n_val, 3);
    LD_CHECK_INT(v->int64_list_val->val[1], -2);
    const char *strs[] = {"x", "", "zz"};
    v = ld_value_string_list(&arena, strs, 3);
    LD_CHECK_STR(v->string_list_val->val[2], "zz");
    const ProtobufCBinaryData bins[] = {{1, (uint8_t *)"\xff"}, {0, NULL}};
    v = ld_value_bytes_list(&arena, bins, 2);
    LD_CHECK_INT(v->bytes_list_val->val[0].data[0], 0xff);
    LD_CHECK_INT(v->bytes_list_val->val[1].len, 0);
    v = ld_value_float_list(&arena, NULL, 0);
    LD_CHECK_INT(v->float_list_val->n_val, 0);
    LD_CHECK_INT(v->val_case, FEAST__TYPES__VALUE__VAL_FLOAT_LIST_VAL);
    const protobuf_c_boolean bools[] = {1, 0};
    LD_CHECK_INT(ld_value_bool_list(&arena, bools, 2)->bool_list_val->val[0], 1);
    const int32_t i32[] = {7};
    LD_CHECK_INT(ld_value_int32_list(&arena, i32, 1)->int32_list_val->val[0], 7);
    const double dbl[] = {0.25};
    LD_CHECK(ld_value_double_list(&arena, dbl, 1)->double_list_val->val[0] == 0.25);
    LD_CHECK_INT(ld_value_unix_ts_list(&arena, i64, 3)->val_case,
                 FEAST__TYPES__VALUE__VAL_UNIX_TIMESTAMP_LIST_VAL);

    /* constructed values are complete protobuf-c messages */
    v = ld_value_string_list(&arena, strs, 3);
    LD_CHECK(protobuf_c_message_check(&v->base));
    Feast__Types__Value *back = pb_round_trip(v);
    LD_CHECK(back && ld_value_equal(v, back));
    arena_end();
}

/* Redis worked example: Value{float_val=0.5} packs to 35 00 00 00 3f. */
LD_TEST(redis_value_bytes)
{
    arena_begin();
    Feast__Types__Value *v = ld_value_float(&arena, 0.5f);
    uint8_t buf[16];
    size_t n = feast__types__value__pack(v, buf);
    LD_CHECK_MEM(buf, n, "\x35\x00\x00\x00\x3f", 5);
    arena_end();
}

/* A full arena yields NULL, never a half-built value that looks valid. */
LD_TEST(constructors_out_of_memory)
{
    ld_arena small;
    ld_arena_init(&small, NULL, 0, 32);
    LD_CHECK(ld_value_string(&small, "a long string that does not fit", 31) == NULL);
    ld_arena_destroy(&small);
    ld_arena_init(&small, NULL, 0, 32);
    const char *strs[] = {"x", "y"};
    LD_CHECK(ld_value_string_list(&small, strs, 2) == NULL);
    ld_arena_destroy(&small);
}

LD_TEST(type_names)
{
    LD_CHECK_STR(ld_value_type_name(FEAST__TYPES__VALUE__VAL__NOT_SET), "UNKNOWN");
    LD_CHECK_STR(ld_value_type_name(FEAST__TYPES__VALUE__VAL_BYTES_VAL), "BYTES");
    LD_CHECK_STR(ld_value_type_name(FEAST__TYPES__VALUE__VAL_INT64_VAL), "INT64");
    LD_CHECK_STR(ld_value_type_name(FEAST__TYPES__VALUE__VAL_UNIX_TIMESTAMP_VAL), "UNIX_TIMESTAMP");
    LD_CHECK_STR(ld_value_type_name(FEAST__TYPES__VALUE__VAL_STRING_LIST_VAL), "STRING_LIST");
    LD_CHECK_STR(ld_value_type_name(FEAST__TYPES__VALUE__VAL_NULL_VAL), "NULL");
    LD_CHECK_STR(ld_value_type_name(FEAST__TYPES__VALUE__VAL_UNIX_TIMESTAMP_SET_VAL),
                 "UNIX_TIMESTAMP_SET");
    LD_CHECK_STR(ld_value_type_name(FEAST__TYPES__VALUE__VAL_LIST_VAL), "VALUE_LIST");
    LD_CHECK_STR(ld_value_type_name(FEAST__TYPES__VALUE__VAL_ZONED_TIMESTAMP_VAL),
                 "ZONED_TIMESTAMP");
    LD_CHECK_STR(ld_value_type_name((ld_value_case)9), "UNKNOWN");
    LD_CHECK_STR(ld_value_type_name((ld_value_case)49), "UNKNOWN");
    LD_CHECK_STR(ld_value_type_name((ld_value_case)-1), "UNKNOWN");
}

LD_TEST(is_null)
{
    arena_begin();
    LD_CHECK(ld_value_is_null(NULL));
    LD_CHECK(ld_value_is_null(ld_value_new(&arena)));
    LD_CHECK(ld_value_is_null(ld_value_null(&arena)));
    LD_CHECK(!ld_value_is_null(ld_value_int64(&arena, 0)));
    LD_CHECK(!ld_value_is_null(ld_value_string(&arena, "", 0)));
    arena_end();
}

LD_TEST(equal_scalars)
{
    arena_begin();
    LD_CHECK(ld_value_equal(ld_value_int64(&arena, 5), ld_value_int64(&arena, 5)));
    LD_CHECK(!ld_value_equal(ld_value_int64(&arena, 5), ld_value_int32(&arena, 5)));
    LD_CHECK(!ld_value_equal(ld_value_int64(&arena, 5), ld_value_unix_ts(&arena, 5)));
    LD_CHECK(!ld_value_equal(ld_value_new(&arena), ld_value_null(&arena)));
    LD_CHECK(ld_value_equal(NULL, ld_value_new(&arena)));
    LD_CHECK(ld_value_equal(ld_value_null(&arena), ld_value_null(&arena)));
    LD_CHECK(ld_value_equal(ld_value_float(&arena, NAN), ld_value_float(&arena, -NAN)));
    LD_CHECK(ld_value_equal(ld_value_double(&arena, NAN), ld_value_double(&arena, NAN)));
    LD_CHECK(!ld_value_equal(ld_value_double(&arena, 0.0), ld_value_double(&arena, -0.0)));
    LD_CHECK(!ld_value_equal(ld_value_double(&arena, 1.0), ld_value_float(&arena, 1.0f)));
    LD_CHECK(ld_value_equal(ld_value_string(&arena, "ab", 2), ld_value_string(&arena, "ab", 2)));
    LD_CHECK(!ld_value_equal(ld_value_string(&arena, "ab", 2), ld_value_bytes(&arena, "ab", 2)));
    LD_CHECK(!ld_value_equal(ld_value_bytes(&arena, "a\0", 2), ld_value_bytes(&arena, "a", 1)));
    LD_CHECK(ld_value_equal(ld_value_bool(&arena, 1), ld_value_bool(&arena, 7)));
    arena_end();
}

LD_TEST(equal_composites)
{
    arena_begin();
    const float f1[] = {0.5f, NAN}, f2[] = {0.5f, NAN}, f3[] = {0.5f};
    LD_CHECK(
            ld_value_equal(ld_value_float_list(&arena, f1, 2), ld_value_float_list(&arena, f2, 2)));
    LD_CHECK(!ld_value_equal(ld_value_float_list(&arena, f1, 2),
                             ld_value_float_list(&arena, f3, 1)));
    LD_CHECK(!ld_value_equal(ld_value_float_list(&arena, NULL, 0), ld_value_new(&arena)));

    /* maps compare as maps: order does not matter, values do */
    const char *k1[] = {"a", "b"}, *k2[] = {"b", "a"};
    Feast__Types__Value *v1[] = {ld_value_int64(&arena, 1), ld_value_string(&arena, "x", 1)};
    Feast__Types__Value *v2[] = {ld_value_string(&arena, "x", 1), ld_value_int64(&arena, 1)};
    Feast__Types__Value *v3[] = {ld_value_string(&arena, "y", 1), ld_value_int64(&arena, 1)};
    Feast__Types__Value *m1 = map_of(FEAST__TYPES__VALUE__VAL_MAP_VAL, 2, k1, v1);
    Feast__Types__Value *m2 = map_of(FEAST__TYPES__VALUE__VAL_MAP_VAL, 2, k2, v2);
    Feast__Types__Value *m3 = map_of(FEAST__TYPES__VALUE__VAL_MAP_VAL, 2, k2, v3);
    Feast__Types__Value *s1 = map_of(FEAST__TYPES__VALUE__VAL_STRUCT_VAL, 2, k1, v1);
    LD_CHECK(ld_value_equal(m1, m2));
    LD_CHECK(!ld_value_equal(m1, m3));
    LD_CHECK(!ld_value_equal(m1, s1));
    LD_CHECK(!ld_value_equal(m1, map_of(FEAST__TYPES__VALUE__VAL_MAP_VAL, 1, k1, v1)));
    /* a repeated key counts once, the last one (as protobuf parses it) */
    const char *kd[] = {"b", "a", "b"};
    Feast__Types__Value *vd[] = {ld_value_string(&arena, "old", 3), ld_value_int64(&arena, 1),
                                 ld_value_string(&arena, "x", 1)};
    LD_CHECK(ld_value_equal(m1, map_of(FEAST__TYPES__VALUE__VAL_MAP_VAL, 3, kd, vd)));

    /* nested list_val */
    Feast__Types__Value *inner[] = {m1, ld_value_null(&arena), ld_value_float(&arena, NAN)};
    Feast__Types__Value *inner2[] = {m2, ld_value_null(&arena), ld_value_float(&arena, NAN)};
    Feast__Types__Value *l1 = repeated_of(FEAST__TYPES__VALUE__VAL_LIST_VAL, 3, inner);
    Feast__Types__Value *l2 = repeated_of(FEAST__TYPES__VALUE__VAL_LIST_VAL, 3, inner2);
    LD_CHECK(ld_value_equal(l1, l2));
    LD_CHECK(!ld_value_equal(l1, repeated_of(FEAST__TYPES__VALUE__VAL_SET_VAL, 3, inner)));
    LD_CHECK(!ld_value_equal(l1, repeated_of(FEAST__TYPES__VALUE__VAL_LIST_VAL, 2, inner)));

    LD_CHECK(ld_value_equal(zoned(5, "UTC"), zoned(5, "UTC")));
    LD_CHECK(!ld_value_equal(zoned(5, "UTC"), zoned(5, "+00:00")));

    /* a list message left NULL by hand reads as empty */
    Feast__Types__Value *hollow = ld_value_new(&arena);
    hollow->val_case = FEAST__TYPES__VALUE__VAL_STRING_LIST_VAL;
    LD_CHECK(ld_value_equal(hollow, ld_value_string_list(&arena, NULL, 0)));
    arena_end();
}

/* Pack and parse a Value of every kind: the parsed one equals the original. */
LD_TEST(protobuf_round_trips)
{
    arena_begin();
    const int64_t i64[] = {INT64_MIN, 0, INT64_MAX};
    const double d[] = {NAN, -0.0, INFINITY, 1e-310};
    const float f[] = {-NAN, 0.1f};
    const char *s[] = {"", "\xe2\x9c\x93"};
    const char *k[] = {"z", "a"};
    Feast__Types__Value *mv[] = {ld_value_double_list(&arena, d, 4), ld_value_new(&arena)};
    Feast__Types__Value *map = map_of(FEAST__TYPES__VALUE__VAL_STRUCT_VAL, 2, k, mv);
    Feast__Types__Value *nested[] = {map, ld_value_string_list(&arena, s, 2)};
    Feast__Types__Value *vals[] = {
            ld_value_new(&arena),
            ld_value_null(&arena),
            ld_value_int64(&arena, -1),
            ld_value_float(&arena, NAN),
            ld_value_double(&arena, -0.0),
            ld_value_string(&arena, "", 0),
            ld_value_bytes(&arena, "\x00", 1),
            ld_value_int64_list(&arena, i64, 3),
            ld_value_double_list(&arena, d, 4),
            ld_value_float_list(&arena, f, 2),
            ld_value_string_list(&arena, s, 2),
            map,
            repeated_of(FEAST__TYPES__VALUE__VAL_SET_VAL, 2, nested),
            zoned(-1, "America/Los_Angeles"),
    };
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        Feast__Types__Value *back = pb_round_trip(vals[i]);
        LD_CHECK(back != NULL);
        if (!ld_value_equal(vals[i], back)) {
            printf("# value %zu differs after a round trip\n", i);
            LD_CHECK(0);
        }
    }
    arena_end();
}

/* The order is total: antisymmetric, consistent with equality, transitive. */
LD_TEST(compare_total_order)
{
    arena_begin();
    const int64_t l1[] = {1, 2}, l2[] = {1, 2, 0}, l3[] = {1, 3};
    const char *ka[] = {"a"}, *kb[] = {"b"};
    Feast__Types__Value *one[] = {ld_value_int64(&arena, 1)};
    Feast__Types__Value *vals[] = {
            NULL,
            ld_value_bytes(&arena, "", 0),
            ld_value_bytes(&arena, "\x00", 1),
            ld_value_bytes(&arena, "\xff", 1),
            ld_value_string(&arena, "", 0),
            ld_value_string(&arena, "Z", 1),
            ld_value_string(&arena, "a", 1),
            ld_value_string(&arena, "ab", 2),
            ld_value_string(&arena, "\xc3\xa9", 2),
            ld_value_string(&arena, "\xe6\x97\xa5", 3),
            ld_value_int32(&arena, INT32_MIN),
            ld_value_int32(&arena, 0),
            ld_value_int64(&arena, INT64_MIN),
            ld_value_int64(&arena, -1),
            ld_value_int64(&arena, INT64_MAX),
            ld_value_double(&arena, -INFINITY),
            ld_value_double(&arena, -0.0),
            ld_value_double(&arena, 0.0),
            ld_value_double(&arena, 1e-300),
            ld_value_double(&arena, INFINITY),
            ld_value_double(&arena, NAN),
            ld_value_float(&arena, -1.0f),
            ld_value_bool(&arena, 0),
            ld_value_bool(&arena, 1),
            ld_value_unix_ts(&arena, 0),
            ld_value_int64_list(&arena, NULL, 0),
            ld_value_int64_list(&arena, l1, 2),
            ld_value_int64_list(&arena, l2, 3),
            ld_value_int64_list(&arena, l3, 2),
            ld_value_null(&arena),
            map_of(FEAST__TYPES__VALUE__VAL_MAP_VAL, 0, NULL, NULL),
            map_of(FEAST__TYPES__VALUE__VAL_MAP_VAL, 1, ka, one),
            map_of(FEAST__TYPES__VALUE__VAL_MAP_VAL, 1, kb, one),
            zoned(0, ""),
            zoned(0, "UTC"),
    };
    const size_t n = sizeof vals / sizeof vals[0];
    /* the array above is in ascending order */
    for (size_t i = 0; i + 1 < n; i++) {
        if (ld_value_compare(vals[i], vals[i + 1]) >= 0) {
            printf("# values %zu and %zu out of order\n", i, i + 1);
            LD_CHECK(0);
        }
    }
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < n; j++) {
            int c = ld_value_compare(vals[i], vals[j]);
            int want = (i > j) - (i < j);
            if ((c > 0) - (c < 0) != want || ld_value_equal(vals[i], vals[j]) != (i == j)) {
                printf("# compare(%zu, %zu) = %d\n", i, j, c);
                LD_CHECK(0);
            }
        }
    }
    /* NaNs compare equal to each other whatever their payload */
    LD_CHECK_INT(ld_value_compare(ld_value_double(&arena, NAN), ld_value_double(&arena, -NAN)), 0);
    arena_end();
}

/*==== Python float repr ====*/

static const struct {
    uint64_t bits;
    const char *repr;
} repr_vecs[] = {
        /* from repr(struct.unpack('<d', ...)[0]) in Python 3.11 */
        {UINT64_C(0x3fe0000000000000), "0.5"},
        {UINT64_C(0x3fe684ed20000000), "0.7037263512611389"}, /* float32(0.70372635) */
        {UINT64_C(0x3ff0000000000000), "1.0"},
        {UINT64_C(0xbff0000000000000), "-1.0"},
        {UINT64_C(0x0000000000000000), "0.0"},
        {UINT64_C(0x8000000000000000), "-0.0"},
        {UINT64_C(0x4341c37937e08000), "1e+16"},
        {UINT64_C(0x430c6bf526340000), "1000000000000000.0"},
        {UINT64_C(0x4341c37937e07fff), "9999999999999998.0"},
        {UINT64_C(0x3e8421f5f40d8376), "1.5e-07"},
        {UINT64_C(0x3f1a36e2eb1c432d), "0.0001"},
        {UINT64_C(0x3ee4f8b588e368f1), "1e-05"},
        {UINT64_C(0x3f202e4b6ce5dc68), "0.00012345"},
        {UINT64_C(0x0000000000000001), "5e-324"},
        {UINT64_C(0x0010000000000000), "2.2250738585072014e-308"},
        {UINT64_C(0x7fefffffffffffff), "1.7976931348623157e+308"},
        {UINT64_C(0x437b69b4ba630f35), "1.2345678901234568e+17"},
        {UINT64_C(0x3fb999999999999a), "0.1"},
        {UINT64_C(0x3fb99999a0000000), "0.10000000149011612"},
        {UINT64_C(0x3fd5555555555555), "0.3333333333333333"},
        {UINT64_C(0x3fd5555560000000), "0.3333333432674408"},
        {UINT64_C(0x4059000000000000), "100.0"},
        {UINT64_C(0x40934a0000000000), "1234.5"},
        {UINT64_C(0x4340000000000000), "9007199254740992.0"},
        {UINT64_C(0x4340000000000001), "9007199254740994.0"},
        {UINT64_C(0x3eb0000000000000), "9.5367431640625e-07"},
        {UINT64_C(0x4450000000000000), "1.1805916207174113e+21"},
        {UINT64_C(0x4480f0cf064dd592), "1e+22"},
        {UINT64_C(0x44b52d02c7e14af6), "1e+23"},
        {UINT64_C(0x44dfe185ca57c517), "6.02214076e+23"},
        {UINT64_C(0x4073400000000000), "308.0"},
        {UINT64_C(0x400921fa00000000), "3.141590118408203"},
        {UINT64_C(0x4170000000000000), "16777216.0"},
        {UINT64_C(0x3e7ad7f2a0000000), "1.0000000116860974e-07"},
        {UINT64_C(0x47efffffe0000000), "3.4028234663852886e+38"},
        {UINT64_C(0x41678c29dccccccd), "12345678.9"},
        {UINT64_C(0x3fd3333333333333), "0.3"},
        {UINT64_C(0x3efa36e2eb1c432d), "2.5e-05"},
        {UINT64_C(0xfe41eb2d66005835), "-1.5e+300"},
        /* a power of two whose nearest 16-digit decimal misses but the next
         * one up reads back: Python prints 16 digits, not 17 */
        {UINT64_C(0x0e80000000000000), "7.678447687145631e-239"},
        {UINT64_C(0x7ff0000000000000), "inf"},
        {UINT64_C(0xfff0000000000000), "-inf"},
        {UINT64_C(0x7ff8000000000000), "nan"},
};

LD_TEST(double_repr)
{
    for (size_t i = 0; i < sizeof repr_vecs / sizeof repr_vecs[0]; i++) {
        double d;
        memcpy(&d, &repr_vecs[i].bits, sizeof d);
        char out[LD_DOUBLE_REPR_MAX];
        size_t n = ld_value_double_repr(d, out);
        LD_CHECK_STR(out, repr_vecs[i].repr);
        LD_CHECK_INT(n, strlen(repr_vecs[i].repr));
    }
}

/* The longest outputs fit: negative, 17 digits, a three-digit exponent. */
LD_TEST(double_repr_longest)
{
    char out[LD_DOUBLE_REPR_MAX];
    size_t n = ld_value_double_repr(-2.2250738585072009e-308, out);
    LD_CHECK_STR(out, "-2.225073858507201e-308");
    n = ld_value_double_repr(-1.2345678901234567e-300, out);
    LD_CHECK_STR(out, "-1.2345678901234568e-300");
    LD_CHECK(n < LD_DOUBLE_REPR_MAX);
}

/*==== JSON rendering ====*/

static void check_json(const Feast__Types__Value *v, const char *want, int line)
{
    ld_buf b = LD_BUF_INIT;
    ld_status st = LD_STATUS_INIT;
    int rc = ld_value_to_json(v, &b, &st);
    if (rc != 0 || !b.data || strcmp(b.data, want) != 0) {
        printf("# line %d: got %s (%s), want %s\n", line, b.data ? b.data : "(nothing)",
               rc ? st.msg : "ok", want);
        ld_test_failed_checks++;
    }
    ld_buf_free(&b);
}

#define CHECK_JSON(v, want) check_json(v, want, __LINE__)

/* Expected strings from json.dumps(_value_to_native(v), ensure_ascii=False,
 * separators=(",", ":")), as Starlette's JSONResponse writes them. */
LD_TEST(json_scalars)
{
    arena_begin();
    CHECK_JSON(NULL, "null");
    CHECK_JSON(ld_value_new(&arena), "null");
    CHECK_JSON(ld_value_null(&arena), "null");
    CHECK_JSON(ld_value_int64(&arena, 1001), "1001");
    CHECK_JSON(ld_value_int64(&arena, INT64_MIN), "-9223372036854775808");
    CHECK_JSON(ld_value_int32(&arena, -7), "-7");
    CHECK_JSON(ld_value_unix_ts(&arena, 1640991600), "1640991600");
    CHECK_JSON(ld_value_float(&arena, 0.5f), "0.5");
    CHECK_JSON(ld_value_float(&arena, 0.70372635f), "0.7037263512611389");
    CHECK_JSON(ld_value_float(&arena, 308.0f), "308.0");
    CHECK_JSON(ld_value_double(&arena, 1e16), "1e+16");
    CHECK_JSON(ld_value_double(&arena, 1.5e-7), "1.5e-07");
    CHECK_JSON(ld_value_double(&arena, -0.0), "-0.0");
    CHECK_JSON(ld_value_bool(&arena, 1), "true");
    CHECK_JSON(ld_value_bool(&arena, 0), "false");
    CHECK_JSON(ld_value_string(&arena, "", 0), "\"\"");
    /* ensure_ascii=False: non-ASCII, DEL and U+2028 pass through */
    const char s[] = "h\xc3\xa9llo \"q\" \n\t\x01 \xe2\x9c\x93\x7f\xe2\x80\xa8";
    CHECK_JSON(ld_value_string(&arena, s, sizeof s - 1),
               "\"h\xc3\xa9llo \\\"q\\\" \\n\\t\\u0001 \xe2\x9c\x93\x7f\xe2\x80\xa8\"");
    CHECK_JSON(ld_value_bytes(&arena, "", 0), "\"\"");
    CHECK_JSON(ld_value_bytes(&arena, "\x00", 1), "\"AA==\"");
    CHECK_JSON(ld_value_bytes(&arena, "\x00\x01", 2), "\"AAE=\"");
    CHECK_JSON(ld_value_bytes(&arena,
                              "\x00\xff\x10"
                              "abc",
                              6),
               "\"AP8QYWJj\"");
    CHECK_JSON(ld_value_bytes(&arena, "\xfb\xff", 2), "\"+/8=\"");

    /* uuid/decimal/json strings stay strings */
    Feast__Types__Value *v = ld_value_string(&arena, "{\"a\":1}", 7);
    v->val_case = FEAST__TYPES__VALUE__VAL_JSON_VAL;
    CHECK_JSON(v, "\"{\\\"a\\\":1}\"");
    v = ld_value_string(&arena, "1.50", 4);
    v->val_case = FEAST__TYPES__VALUE__VAL_DECIMAL_VAL;
    CHECK_JSON(v, "\"1.50\"");
    arena_end();
}

LD_TEST(json_lists)
{
    arena_begin();
    const int64_t i64[] = {1, -2, 3};
    CHECK_JSON(ld_value_int64_list(&arena, i64, 3), "[1,-2,3]");
    CHECK_JSON(ld_value_int64_list(&arena, NULL, 0), "[]");
    CHECK_JSON(ld_value_unix_ts_list(&arena, i64, 1), "[1]");
    const int32_t i32[] = {INT32_MIN};
    CHECK_JSON(ld_value_int32_list(&arena, i32, 1), "[-2147483648]");
    const float f[] = {0.5f, 0.1f};
    CHECK_JSON(ld_value_float_list(&arena, f, 2), "[0.5,0.10000000149011612]");
    const double d[] = {1.0, 1e22, 0.1};
    CHECK_JSON(ld_value_double_list(&arena, d, 3), "[1.0,1e+22,0.1]");
    const protobuf_c_boolean bools[] = {1, 0};
    CHECK_JSON(ld_value_bool_list(&arena, bools, 2), "[true,false]");
    const char *strs[] = {"a", "", "\xe6\x97\xa5"};
    CHECK_JSON(ld_value_string_list(&arena, strs, 3), "[\"a\",\"\",\"\xe6\x97\xa5\"]");
    const ProtobufCBinaryData bins[] = {{1, (uint8_t *)"\x00"}, {2, (uint8_t *)"\x00\x01"}};
    CHECK_JSON(ld_value_bytes_list(&arena, bins, 2), "[\"AA==\",\"AAE=\"]");

    /* sets render as arrays too */
    Feast__Types__Value *v = ld_value_string_list(&arena, strs, 1);
    v->val_case = FEAST__TYPES__VALUE__VAL_STRING_SET_VAL;
    CHECK_JSON(v, "[\"a\"]");
    v = ld_value_bytes_list(&arena, bins, 1);
    v->val_case = FEAST__TYPES__VALUE__VAL_BYTES_SET_VAL;
    CHECK_JSON(v, "[\"AA==\"]");
    v = ld_value_double_list(&arena, d, 1);
    v->val_case = FEAST__TYPES__VALUE__VAL_DOUBLE_SET_VAL;
    CHECK_JSON(v, "[1.0]");
    arena_end();
}

LD_TEST(json_nested)
{
    arena_begin();
    /* {"a":1,"b":[1.5,null],"c":{"d":"x"}} */
    Feast__Types__Value *inner_vals[] = {ld_value_double(&arena, 1.5), ld_value_new(&arena)};
    const char *kd[] = {"d"};
    Feast__Types__Value *dv[] = {ld_value_string(&arena, "x", 1)};
    const char *keys[] = {"a", "b", "c"};
    Feast__Types__Value *vals[] = {
            ld_value_int64(&arena, 1),
            repeated_of(FEAST__TYPES__VALUE__VAL_LIST_VAL, 2, inner_vals),
            map_of(FEAST__TYPES__VALUE__VAL_MAP_VAL, 1, kd, dv),
    };
    Feast__Types__Value *m = map_of(FEAST__TYPES__VALUE__VAL_STRUCT_VAL, 3, keys, vals);
    CHECK_JSON(m, "{\"a\":1,\"b\":[1.5,null],\"c\":{\"d\":\"x\"}}");
    CHECK_JSON(map_of(FEAST__TYPES__VALUE__VAL_MAP_VAL, 0, NULL, NULL), "{}");

    /* map_list_val: array of objects */
    Feast__Types__Value *ml = ld_value_new(&arena);
    Feast__Types__MapList *l = ld_arena_alloc(&arena, sizeof *l);
    feast__types__map_list__init(l);
    l->n_val = 2;
    l->val = ld_arena_calloc(&arena, 2, sizeof *l->val);
    l->val[0] = map_of(FEAST__TYPES__VALUE__VAL_MAP_VAL, 1, kd, dv)->map_val;
    l->val[1] = map_of(FEAST__TYPES__VALUE__VAL_MAP_VAL, 0, NULL, NULL)->map_val;
    ml->val_case = FEAST__TYPES__VALUE__VAL_MAP_LIST_VAL;
    ml->map_list_val = l;
    CHECK_JSON(ml, "[{\"d\":\"x\"},{}]");

    /* set_val of lists */
    Feast__Types__Value *sv[] = {m, ld_value_null(&arena)};
    CHECK_JSON(repeated_of(FEAST__TYPES__VALUE__VAL_SET_VAL, 2, sv),
               "[{\"a\":1,\"b\":[1.5,null],\"c\":{\"d\":\"x\"}},null]");

    /* scalar_map_val is not rendered by Feast: null */
    Feast__Types__Value *sm = ld_value_new(&arena);
    Feast__Types__ScalarMap *smap = ld_arena_alloc(&arena, sizeof *smap);
    feast__types__scalar_map__init(smap);
    sm->val_case = FEAST__TYPES__VALUE__VAL_SCALAR_MAP_VAL;
    sm->scalar_map_val = smap;
    CHECK_JSON(sm, "null");
    arena_end();
}

/* datetime.fromtimestamp(s, tz).isoformat() */
LD_TEST(json_zoned_timestamps)
{
    arena_begin();
    CHECK_JSON(zoned(1640991600, ""), "\"2021-12-31T23:00:00+00:00\"");
    CHECK_JSON(zoned(1640991600, "UTC"), "\"2021-12-31T23:00:00+00:00\"");
    CHECK_JSON(zoned(1640991600, "Etc/UTC"), "\"2021-12-31T23:00:00+00:00\"");
    CHECK_JSON(zoned(1640991600, "-07:00"), "\"2021-12-31T16:00:00-07:00\"");
    CHECK_JSON(zoned(1640991600, "UTC+05:30"), "\"2022-01-01T04:30:00+05:30\"");
    CHECK_JSON(zoned(1640991600, " GMT+0530 "), "\"2022-01-01T04:30:00+05:30\"");
    CHECK_JSON(zoned(-1, "-23:59"), "\"1969-12-31T00:00:59-23:59\"");
    CHECK_JSON(zoned(-62135596800, ""), "\"0001-01-01T00:00:00+00:00\"");
    CHECK_JSON(zoned(253402300799, ""), "\"9999-12-31T23:59:59+00:00\"");
    /* an unknown zone decodes as UTC (Feast logs a warning) */
    CHECK_JSON(zoned(0, "Nowhere/Special"), "\"1970-01-01T00:00:00+00:00\"");
    /* numpy's NaT is Feast's null timestamp */
    CHECK_JSON(zoned(INT64_MIN, "UTC"), "null");

    ld_buf b = LD_BUF_INIT;
    ld_status st = LD_STATUS_INIT;
    LD_CHECK_INT(ld_value_to_json(zoned(253402300800, ""), &b, &st), -1);
    LD_CHECK_INT(ld_value_to_json(zoned(0, "+24:00"), &b, &st), -1);
    LD_CHECK_INT(b.len, 0);

    /* A zone from the tz database is not rendered yet; without the database
     * Python falls back to UTC, and so do we. */
    const char *la = "America/Los_Angeles";
    FILE *tzf = fopen("/usr/share/zoneinfo/America/Los_Angeles", "rb");
    if (tzf) {
        fclose(tzf);
        LD_CHECK_INT(ld_value_to_json(zoned(0, la), &b, &st), -1);
        LD_CHECK_INT(st.code, GRPC_STATUS_UNIMPLEMENTED);
        LD_CHECK(strstr(st.msg, la) != NULL);
    } else {
        CHECK_JSON(zoned(0, la), "\"1970-01-01T00:00:00+00:00\"");
    }
    ld_buf_free(&b);
    arena_end();
}

LD_TEST(json_refuses_nan)
{
    arena_begin();
    ld_buf b = LD_BUF_INIT;
    ld_status st = LD_STATUS_INIT;
    ld_buf_puts(&b, "[1,");
    LD_CHECK_INT(ld_value_to_json(ld_value_float(&arena, NAN), &b, &st), -1);
    LD_CHECK_INT(st.code, GRPC_STATUS_INTERNAL);
    LD_CHECK(strstr(st.msg, "Out of range float values are not JSON compliant") != NULL);
    LD_CHECK_STR(b.data, "[1,");
    const double d[] = {1.0, -INFINITY};
    ld_status_clear(&st);
    LD_CHECK_INT(ld_value_to_json(ld_value_double_list(&arena, d, 2), &b, &st), -1);
    LD_CHECK(strstr(st.msg, "-inf") != NULL);
    LD_CHECK_STR(b.data, "[1,");
    LD_CHECK_INT(b.len, 3);
    /* deep inside a map, too */
    const char *k[] = {"x"};
    Feast__Types__Value *v[] = {ld_value_double(&arena, INFINITY)};
    LD_CHECK_INT(ld_value_to_json(map_of(FEAST__TYPES__VALUE__VAL_MAP_VAL, 1, k, v), &b, &st), -1);
    LD_CHECK_INT(b.len, 3);
    ld_buf_free(&b);
    arena_end();
}

LD_TEST_MAIN
