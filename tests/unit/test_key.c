/* Unit tests for ld_key: the vectors of feast-protocols.md §1.5.1/§1.5.2,
 * vectors computed once with a struct-based Python serializer, and hostile
 * input for the parser (every truncation, garbage, lying lengths). */
#include "ld_test.h"

#include "ld_key.h"
#include "ld_value.h"

#include <stdint.h>

#define MEM(s) s, sizeof(s) - 1
/* The buffer holds exactly the bytes of a string literal (NULs included). */
#define CHECK_BUF(b, lit) LD_CHECK_MEM((b).data, (b).len, lit, sizeof(lit) - 1)

static ld_arena arena;

static void arena_begin(void)
{
    ld_arena_init(&arena, NULL, 0, 0);
}

static void arena_end(void)
{
    ld_arena_destroy(&arena);
}

/* Serialize n pairs at version v into a fresh buffer; -1 on error. */
static int ser(const char *const *keys, const Feast__Types__Value *const *vals, size_t n, int v,
               ld_buf *out, ld_status *st)
{
    ld_buf_reset(out);
    return ld_key_serialize(keys, vals, n, v, out, st);
}

LD_TEST(single_int64_v3)
{
    arena_begin();
    ld_buf b = LD_BUF_INIT;
    ld_status st = LD_STATUS_INIT;
    const char *keys[] = {"driver_id"};
    const Feast__Types__Value *vals[] = {ld_value_int64(&arena, 1001)};
    LD_CHECK_INT(ser(keys, vals, 1, 3, &b, &st), 0);
    CHECK_BUF(b, ("\x01\x00\x00\x00"
                  "\x02\x00\x00\x00\x09\x00\x00\x00"
                  "driver_id"
                  "\x04\x00\x00\x00\x08\x00\x00\x00\xe9\x03\x00\x00\x00\x00\x00\x00"));
    /* v2: no count, no key length */
    LD_CHECK_INT(ser(keys, vals, 1, 2, &b, &st), 0);
    CHECK_BUF(b, ("\x02\x00\x00\x00"
                  "driver_id"
                  "\x04\x00\x00\x00\x08\x00\x00\x00\xe9\x03\x00\x00\x00\x00\x00\x00"));
    ld_buf_free(&b);
    arena_end();
}

/* The Cassandra spec's example key is v1: int64 packed in 4 bytes. */
LD_TEST(v1_cassandra_example)
{
    arena_begin();
    ld_buf b = LD_BUF_INIT;
    ld_status st = LD_STATUS_INIT;
    const char *keys[] = {"driver_id"};
    const Feast__Types__Value *vals[] = {ld_value_int64(&arena, 1002)};
    LD_CHECK_INT(ser(keys, vals, 1, 1, &b, &st), 0);
    CHECK_BUF(b, ("\x02\x00\x00\x00"
                  "driver_id"
                  "\x04\x00\x00\x00\x04\x00\x00\x00\xea\x03\x00\x00"));
    /* struct.pack("<l") refuses what does not fit in 4 bytes */
    vals[0] = ld_value_int64(&arena, INT64_C(1) << 31);
    LD_CHECK_INT(ser(keys, vals, 1, 1, &b, &st), -1);
    LD_CHECK_INT(st.code, GRPC_STATUS_INVALID_ARGUMENT);
    LD_CHECK_INT(b.len, 0);
    ld_buf_free(&b);
    arena_end();
}

LD_TEST(composite_sorted_v3)
{
    arena_begin();
    ld_buf b = LD_BUF_INIT;
    ld_status st = LD_STATUS_INIT;
    const char *keys[] = {"driver_id", "customer_id"};
    const Feast__Types__Value *vals[] = {ld_value_int64(&arena, 1001),
                                         ld_value_string(&arena, "c1", 2)};
    LD_CHECK_INT(ser(keys, vals, 2, 3, &b, &st), 0);
    CHECK_BUF(b, ("\x02\x00\x00\x00"
                  "\x02\x00\x00\x00\x0b\x00\x00\x00"
                  "customer_id"
                  "\x02\x00\x00\x00\x09\x00\x00\x00"
                  "driver_id"
                  "\x02\x00\x00\x00\x02\x00\x00\x00"
                  "c1"
                  "\x04\x00\x00\x00\x08\x00\x00\x00\xe9\x03\x00\x00\x00\x00\x00\x00"));
    /* the same key given in the other order serializes identically */
    const char *keys2[] = {"customer_id", "driver_id"};
    const Feast__Types__Value *vals2[] = {vals[1], vals[0]};
    ld_buf b2 = LD_BUF_INIT;
    LD_CHECK_INT(ser(keys2, vals2, 2, 3, &b2, &st), 0);
    LD_CHECK_MEM(b.data, b.len, b2.data, b2.len);
    ld_buf_free(&b);
    ld_buf_free(&b2);
    arena_end();
}

/* "a" sorts before "ab" (a prefix first); values follow their keys. */
LD_TEST(prefix_key_sorts_first)
{
    arena_begin();
    ld_buf b = LD_BUF_INIT;
    ld_status st = LD_STATUS_INIT;
    const char *keys[] = {"ab", "a"};
    const Feast__Types__Value *vals[] = {ld_value_int64(&arena, 1), ld_value_int64(&arena, 2)};
    LD_CHECK_INT(ser(keys, vals, 2, 3, &b, &st), 0);
    CHECK_BUF(b, ("\x02\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00\x00\x61\x02\x00\x00\x00\x02"
                  "\x00\x00\x00\x61\x62\x04\x00\x00\x00\x08\x00\x00\x00\x02\x00\x00\x00\x00"
                  "\x00\x00\x00\x04\x00\x00\x00\x08\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00"
                  "\x00"));
    ld_buf_free(&b);
    arena_end();
}

LD_TEST(entityless_dummy_key)
{
    arena_begin();
    ld_buf b = LD_BUF_INIT;
    ld_status st = LD_STATUS_INIT;
    const char *keys[] = {"__dummy_id"};
    const Feast__Types__Value *vals[] = {ld_value_string(&arena, "", 0)};
    LD_CHECK_INT(ser(keys, vals, 1, 3, &b, &st), 0);
    CHECK_BUF(b, ("\x01\x00\x00\x00\x02\x00\x00\x00\x0a\x00\x00\x00"
                  "__dummy_id"
                  "\x02\x00\x00\x00\x00\x00\x00\x00"));
    ld_buf_free(&b);
    arena_end();
}

/* Redis key = serialized key ‖ project (Feast's test_redis.py, and the
 * worked driver_hourly_stats example). */
LD_TEST(redis_keys)
{
    arena_begin();
    ld_buf b = LD_BUF_INIT;
    ld_status st = LD_STATUS_INIT;
    const char *keys[] = {"entity"};
    const Feast__Types__Value *vals[] = {ld_value_int32(&arena, 1)};
    LD_CHECK_INT(ser(keys, vals, 1, 3, &b, &st), 0);
    ld_buf_puts(&b, "test");
    CHECK_BUF(b, ("\x01\x00\x00\x00\x02\x00\x00\x00\x06\x00\x00\x00"
                  "entity"
                  "\x03\x00\x00\x00\x04\x00\x00\x00\x01\x00\x00\x00"
                  "test"));

    const char *dkeys[] = {"driver_id"};
    const Feast__Types__Value *dvals[] = {ld_value_int64(&arena, 1001)};
    LD_CHECK_INT(ser(dkeys, dvals, 1, 3, &b, &st), 0);
    ld_buf_puts(&b, "feature_repo");
    CHECK_BUF(b, ("\x01\x00\x00\x00\x02\x00\x00\x00\x09\x00\x00\x00\x64\x72\x69\x76\x65\x72"
                  "\x5f\x69\x64\x04\x00\x00\x00\x08\x00\x00\x00\xe9\x03\x00\x00\x00\x00\x00"
                  "\x00"
                  "feature_repo"));
    ld_buf_free(&b);
    arena_end();
}

/* Six keys: upper case before lower, ASCII before é before 日本, every
 * supported type, negative numbers, an empty string. Computed with Python's
 * struct module and sorted(). */
static const char six_v3[] =
        "\x06\x00\x00\x00\x02\x00\x00\x00\x04\x00\x00\x00\x5a\x65\x74\x61\x02\x00\x00\x00\x01\x00"
        "\x00\x00\x61\x02\x00\x00\x00\x05\x00\x00\x00\x61\x6c\x70\x68\x61\x02\x00\x00\x00\x04\x00"
        "\x00\x00\x7a\x65\x74\x61\x02\x00\x00\x00\x02\x00\x00\x00\xc3\xa9\x02\x00\x00\x00\x06\x00"
        "\x00\x00\xe6\x97\xa5\xe6\x9c\xac\x02\x00\x00\x00\x0d\x00\x00\x00\xc3\x9c\x6e\xc3\xaf\x63"
        "\x6f\x64\x65\x20\xe2\x9c\x93\x02\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x03\x00\x00"
        "\x00\x00\xff\x10\x04\x00\x00\x00\x08\x00\x00\x00\xfe\xff\xff\xff\xff\xff\xff\xff\x03\x00"
        "\x00\x00\x04\x00\x00\x00\xf9\xff\xff\xff\x08\x00\x00\x00\x08\x00\x00\x00\x70\x8b\xcf\x61"
        "\x00\x00\x00\x00";
static const char six_v2[] =
        "\x02\x00\x00\x00\x5a\x65\x74\x61\x02\x00\x00\x00\x61\x02\x00\x00\x00\x61\x6c\x70\x68\x61"
        "\x02\x00\x00\x00\x7a\x65\x74\x61\x02\x00\x00\x00\xc3\xa9\x02\x00\x00\x00\xe6\x97\xa5\xe6"
        "\x9c\xac\x02\x00\x00\x00\x0d\x00\x00\x00\xc3\x9c\x6e\xc3\xaf\x63\x6f\x64\x65\x20\xe2\x9c"
        "\x93\x02\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x03\x00\x00\x00\x00\xff\x10\x04\x00"
        "\x00\x00\x08\x00\x00\x00\xfe\xff\xff\xff\xff\xff\xff\xff\x03\x00\x00\x00\x04\x00\x00\x00"
        "\xf9\xff\xff\xff\x08\x00\x00\x00\x08\x00\x00\x00\x70\x8b\xcf\x61\x00\x00\x00\x00";

static size_t six_key(const char **keys, const Feast__Types__Value **vals)
{
    keys[0] = "zeta";
    vals[0] = ld_value_int64(&arena, -2);
    keys[1] = "Zeta";
    vals[1] = ld_value_string(&arena,
                              "\xc3\x9cn\xc3\xaf"
                              "code \xe2\x9c\x93",
                              13);
    keys[2] = "alpha";
    vals[2] = ld_value_bytes(&arena, "\x00\xff\x10", 3);
    keys[3] = "\xc3\xa9"; /* é */
    vals[3] = ld_value_int32(&arena, -7);
    keys[4] = "\xe6\x97\xa5\xe6\x9c\xac"; /* 日本 */
    vals[4] = ld_value_unix_ts(&arena, 1640991600);
    keys[5] = "a";
    vals[5] = ld_value_string(&arena, "", 0);
    return 6;
}

LD_TEST(six_keys_all_types)
{
    arena_begin();
    ld_buf b = LD_BUF_INIT;
    ld_status st = LD_STATUS_INIT;
    const char *keys[6];
    const Feast__Types__Value *vals[6];
    size_t n = six_key(keys, vals);
    LD_CHECK_INT(ser(keys, vals, n, 3, &b, &st), 0);
    LD_CHECK_MEM(b.data, b.len, six_v3, sizeof six_v3 - 1);
    LD_CHECK_INT(ser(keys, vals, n, 2, &b, &st), 0);
    LD_CHECK_MEM(b.data, b.len, six_v2, sizeof six_v2 - 1);
    ld_buf_free(&b);
    arena_end();
}

/* v1 only changes int64; unix timestamps stay 8 bytes. */
LD_TEST(v1_two_keys)
{
    arena_begin();
    ld_buf b = LD_BUF_INIT;
    ld_status st = LD_STATUS_INIT;
    const char *keys[] = {"driver_id", "b"};
    const Feast__Types__Value *vals[] = {ld_value_int64(&arena, -5),
                                         ld_value_unix_ts(&arena, INT64_C(1) << 40)};
    LD_CHECK_INT(ser(keys, vals, 2, 1, &b, &st), 0);
    CHECK_BUF(b, ("\x02\x00\x00\x00\x62\x02\x00\x00\x00\x64\x72\x69\x76\x65\x72\x5f\x69\x64"
                  "\x08\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x04\x00"
                  "\x00\x00\x04\x00\x00\x00\xfb\xff\xff\xff"));
    ld_buf_free(&b);
    arena_end();
}

/* More keys than the stack index array holds: sorted through the heap. */
LD_TEST(many_keys)
{
    arena_begin();
    ld_buf b = LD_BUF_INIT;
    ld_status st = LD_STATUS_INIT;
    enum { N = 40 };
    const char *keys[N];
    const Feast__Types__Value *vals[N];
    for (int i = 0; i < N; i++) {
        /* k39, k38, ... k00: reverse order in */
        keys[i] = ld_arena_sprintf(&arena, "k%02d", N - 1 - i);
        vals[i] = ld_value_int32(&arena, N - 1 - i);
    }
    LD_CHECK_INT(ser(keys, vals, N, 3, &b, &st), 0);
    Feast__Types__EntityKey *k = NULL;
    LD_CHECK_INT(ld_key_deserialize_v3(b.data, b.len, &arena, &k, &st), 0);
    LD_CHECK(k != NULL);
    if (k) {
        LD_CHECK_INT(k->n_join_keys, N);
        for (int i = 0; i < N && i < (int)k->n_join_keys; i++) {
            char want[8];
            snprintf(want, sizeof want, "k%02d", i);
            LD_CHECK_STR(k->join_keys[i], want);
            LD_CHECK_INT(k->entity_values[i]->int32_val, i);
        }
    }
    ld_buf_free(&b);
    arena_end();
}

LD_TEST(unsupported_types_rejected)
{
    arena_begin();
    ld_buf b = LD_BUF_INIT;
    ld_status st = LD_STATUS_INIT;
    ld_buf_puts(&b, "keep");
    const char *keys[] = {"driver_id", "rating"};
    const Feast__Types__Value *vals[] = {ld_value_int64(&arena, 1), ld_value_float(&arena, 4.5f)};
    LD_CHECK_INT(ld_key_serialize(keys, vals, 2, 3, &b, &st), -1);
    LD_CHECK_INT(st.code, GRPC_STATUS_INVALID_ARGUMENT);
    LD_CHECK(strstr(st.msg, "'rating'") != NULL);
    LD_CHECK(strstr(st.msg, "FLOAT") != NULL);
    /* the buffer is back to what it held before the call */
    LD_CHECK_MEM(b.data, b.len, "keep", 4);

    const Feast__Types__Value *bad[] = {
            ld_value_double(&arena, 1.0),
            ld_value_bool(&arena, 1),
            ld_value_null(&arena),
            ld_value_new(&arena),
            NULL,
            ld_value_int64_list(&arena, NULL, 0),
    };
    const char *names[] = {"DOUBLE", "BOOL", "NULL", "UNKNOWN", "UNKNOWN", "INT64_LIST"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ld_status_clear(&st);
        LD_CHECK_INT(ld_key_serialize(keys, bad + i, 1, 3, &b, &st), -1);
        LD_CHECK(strstr(st.msg, names[i]) != NULL);
        LD_CHECK(strstr(st.msg, "'driver_id'") != NULL);
    }
    LD_CHECK_INT(b.len, 4);
    ld_buf_free(&b);
    arena_end();
}

LD_TEST(bad_arguments)
{
    arena_begin();
    ld_buf b = LD_BUF_INIT;
    ld_status st = LD_STATUS_INIT;
    const char *dup[] = {"id", "id"};
    const Feast__Types__Value *vals[] = {ld_value_int64(&arena, 1), ld_value_int64(&arena, 2)};
    LD_CHECK_INT(ser(dup, vals, 2, 3, &b, &st), -1);
    LD_CHECK(strstr(st.msg, "'id'") != NULL);
    LD_CHECK_INT(ser(dup, vals, 1, 4, &b, &st), -1);
    LD_CHECK_INT(ser(dup, vals, 1, 0, &b, &st), -1);
    LD_CHECK_INT(b.len, 0);

    /* an EntityKey whose lists disagree in length */
    Feast__Types__EntityKey k = FEAST__TYPES__ENTITY_KEY__INIT;
    char *jk[] = {"a", "b"};
    Feast__Types__Value *ev[] = {(Feast__Types__Value *)vals[0]};
    k.n_join_keys = 2;
    k.join_keys = jk;
    k.n_entity_values = 1;
    k.entity_values = ev;
    LD_CHECK_INT(ld_key_serialize_proto(&k, 3, &b, &st), -1);
    LD_CHECK_INT(st.code, GRPC_STATUS_INVALID_ARGUMENT);
    k.n_join_keys = 1;
    LD_CHECK_INT(ld_key_serialize_proto(&k, 3, &b, &st), 0);
    CHECK_BUF(b, ("\x01\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00\x00"
                  "a"
                  "\x04\x00\x00\x00\x08\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00"));
    ld_buf_free(&b);
    arena_end();
}

LD_TEST(zero_keys)
{
    ld_buf b = LD_BUF_INIT;
    ld_status st = LD_STATUS_INIT;
    LD_CHECK_INT(ld_key_serialize(NULL, NULL, 0, 3, &b, &st), 0);
    LD_CHECK_MEM(b.data, b.len, "\x00\x00\x00\x00", 4);
    arena_begin();
    Feast__Types__EntityKey *k = NULL;
    LD_CHECK_INT(ld_key_deserialize_v3(b.data, b.len, &arena, &k, &st), 0);
    LD_CHECK(k && k->n_join_keys == 0 && k->n_entity_values == 0);
    arena_end();
    ld_buf_free(&b);
}

LD_TEST(prefix)
{
    ld_buf b = LD_BUF_INIT;
    const char *one[] = {"driver_id"};
    LD_CHECK_INT(ld_key_prefix_v3(one, 1, &b), 0);
    CHECK_BUF(b, ("\x01\x00\x00\x00\x02\x00\x00\x00\x09\x00\x00\x00"
                  "driver_id"));
    ld_buf_reset(&b);
    const char *two[] = {"driver_id", "customer_id"};
    LD_CHECK_INT(ld_key_prefix_v3(two, 2, &b), 0);
    CHECK_BUF(b, ("\x02\x00\x00\x00"
                  "\x02\x00\x00\x00\x0b\x00\x00\x00"
                  "customer_id"
                  "\x02\x00\x00\x00\x09\x00\x00\x00"
                  "driver_id"));
    ld_buf_reset(&b);
    LD_CHECK_INT(ld_key_prefix(two, 2, 2, &b), 0);
    CHECK_BUF(b, ("\x02\x00\x00\x00"
                  "customer_id"
                  "\x02\x00\x00\x00"
                  "driver_id"));
    ld_buf_reset(&b);
    LD_CHECK_INT(ld_key_prefix(two, 2, 9, &b), -1);
    LD_CHECK_INT(b.len, 0);

    /* the prefix is where the full key starts */
    arena_begin();
    ld_status st = LD_STATUS_INIT;
    const char *keys[6];
    const Feast__Types__Value *vals[6];
    size_t n = six_key(keys, vals);
    LD_CHECK_INT(ld_key_prefix_v3(keys, n, &b), 0);
    LD_CHECK(b.len < sizeof six_v3 && memcmp(b.data, six_v3, b.len) == 0);
    arena_end();
    (void)st;
    ld_buf_free(&b);
}

/*==== Parsing ====*/

LD_TEST(deserialize_round_trip)
{
    arena_begin();
    ld_status st = LD_STATUS_INIT;
    const char *keys[6];
    const Feast__Types__Value *vals[6];
    six_key(keys, vals);
    Feast__Types__EntityKey *k = NULL;
    LD_CHECK_INT(ld_key_deserialize_v3(six_v3, sizeof six_v3 - 1, &arena, &k, &st), 0);
    LD_CHECK(k != NULL);
    if (!k) {
        arena_end();
        return;
    }
    LD_CHECK_INT(k->n_join_keys, 6);
    LD_CHECK_INT(k->n_entity_values, 6);
    /* sorted order: Zeta a alpha zeta é 日本 */
    static const int order[] = {1, 5, 2, 0, 3, 4};
    for (size_t i = 0; i < 6 && i < k->n_join_keys; i++) {
        LD_CHECK_STR(k->join_keys[i], keys[order[i]]);
        LD_CHECK(ld_value_equal(k->entity_values[i], vals[order[i]]));
    }
    /* and back again */
    ld_buf b = LD_BUF_INIT;
    LD_CHECK_INT(ld_key_serialize_proto(k, 3, &b, &st), 0);
    LD_CHECK_MEM(b.data, b.len, six_v3, sizeof six_v3 - 1);
    /* the parsed messages are complete protobuf-c messages */
    LD_CHECK(protobuf_c_message_check(&k->base));
    size_t packed = feast__types__entity_key__get_packed_size(k);
    uint8_t *pb = ld_arena_alloc(&arena, packed);
    feast__types__entity_key__pack(k, pb);
    Feast__Types__EntityKey *k2 = feast__types__entity_key__unpack(NULL, packed, pb);
    LD_CHECK(k2 != NULL);
    if (k2) {
        ld_buf_reset(&b);
        LD_CHECK_INT(ld_key_serialize_proto(k2, 3, &b, &st), 0);
        LD_CHECK_MEM(b.data, b.len, six_v3, sizeof six_v3 - 1);
        feast__types__entity_key__free_unpacked(k2, NULL);
    }
    ld_buf_free(&b);
    arena_end();
}

/* Every proper prefix of a valid key is refused, never read past. Each
 * truncation is copied to its own heap block so ASan sees any overread. */
LD_TEST(deserialize_every_truncation)
{
    static const char dummy_v3[] = "\x01\x00\x00\x00\x02\x00\x00\x00\x0a\x00\x00\x00"
                                   "__dummy_id"
                                   "\x02\x00\x00\x00\x00\x00\x00\x00";
    const char *const inputs[] = {six_v3, dummy_v3};
    const size_t lens[] = {sizeof six_v3 - 1, sizeof dummy_v3 - 1};
    for (size_t t = 0; t < 2; t++) {
        for (size_t len = 0; len < lens[t]; len++) {
            arena_begin();
            ld_status st = LD_STATUS_INIT;
            char *copy = malloc(len ? len : 1);
            memcpy(copy, inputs[t], len);
            Feast__Types__EntityKey *k = (Feast__Types__EntityKey *)1;
            int rc = ld_key_deserialize_v3(copy, len, &arena, &k, &st);
            if (rc != -1 || k != NULL || st.code != GRPC_STATUS_INVALID_ARGUMENT) {
                printf("# truncation to %zu of input %zu accepted\n", len, t);
                LD_CHECK(0);
            }
            free(copy);
            arena_end();
        }
        arena_begin();
        ld_status st = LD_STATUS_INIT;
        Feast__Types__EntityKey *k = NULL;
        LD_CHECK_INT(ld_key_deserialize_v3(inputs[t], lens[t], &arena, &k, &st), 0);
        arena_end();
    }
}

static int parse(const char *data, size_t len, Feast__Types__EntityKey **k, ld_status *st)
{
    ld_status_clear(st);
    return ld_key_deserialize_v3(data, len, &arena, k, st);
}

LD_TEST(deserialize_garbage)
{
    arena_begin();
    ld_status st = LD_STATUS_INIT;
    Feast__Types__EntityKey *k;
    /* key count far beyond the data: refused before any allocation */
    LD_CHECK_INT(parse(MEM("\xff\xff\xff\xff\x02\x00\x00\x00\x01\x00\x00\x00x"), &k, &st), -1);
    LD_CHECK_INT(st.code, GRPC_STATUS_INVALID_ARGUMENT);
    /* key type other than STRING */
    LD_CHECK_INT(parse(MEM("\x01\x00\x00\x00\x04\x00\x00\x00\x01\x00\x00\x00x"
                           "\x02\x00\x00\x00\x00\x00\x00\x00"),
                       &k, &st),
                 -1);
    LD_CHECK(strstr(st.msg, "key type 4") != NULL);
    /* key length past the end (and one near UINT32_MAX: no wrap-around) */
    LD_CHECK_INT(parse(MEM("\x01\x00\x00\x00\x02\x00\x00\x00\x09\x00\x00\x00x"), &k, &st), -1);
    LD_CHECK_INT(parse(MEM("\x01\x00\x00\x00\x02\x00\x00\x00\xff\xff\xff\xffxxxxxxxx"), &k, &st),
                 -1);
    /* value length near UINT32_MAX */
    LD_CHECK_INT(parse(MEM("\x01\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00\x00x"
                           "\x01\x00\x00\x00\xfc\xff\xff\xff"
                           "abcd"),
                       &k, &st),
                 -1);
    /* unsupported value type */
    LD_CHECK_INT(parse(MEM("\x01\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00\x00x"
                           "\x06\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x3f"),
                       &k, &st),
                 -1);
    LD_CHECK(strstr(st.msg, "value type 6") != NULL);
    /* int64 / unix timestamp / int32 of the wrong width */
    LD_CHECK_INT(parse(MEM("\x01\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00\x00x"
                           "\x04\x00\x00\x00\x04\x00\x00\x00\xe9\x03\x00\x00"),
                       &k, &st),
                 -1);
    LD_CHECK_INT(parse(MEM("\x01\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00\x00x"
                           "\x08\x00\x00\x00\x00\x00\x00\x00"),
                       &k, &st),
                 -1);
    LD_CHECK_INT(parse(MEM("\x01\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00\x00x"
                           "\x03\x00\x00\x00\x08\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00"),
                       &k, &st),
                 -1);
    /* invalid UTF-8 in a key name and in a string value */
    LD_CHECK_INT(parse(MEM("\x01\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00\x00\xff"
                           "\x02\x00\x00\x00\x00\x00\x00\x00"),
                       &k, &st),
                 -1);
    LD_CHECK_INT(parse(MEM("\x01\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00\x00x"
                           "\x02\x00\x00\x00\x03\x00\x00\x00\xed\xa0\x80"), /* a surrogate */
                       &k, &st),
                 -1);
    LD_CHECK_INT(parse(MEM("\x01\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00\x00x"
                           "\x02\x00\x00\x00\x02\x00\x00\x00\xc0\x80"), /* overlong NUL */
                       &k, &st),
                 -1);
    /* a NUL inside a string value cannot be held by a protobuf-c string */
    LD_CHECK_INT(parse(MEM("\x01\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00\x00x"
                           "\x02\x00\x00\x00\x03\x00\x00\x00\x61\x00\x62"),
                       &k, &st),
                 -1);
    /* fewer or more values than keys */
    LD_CHECK_INT(parse(MEM("\x01\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00\x00x"), &k, &st), -1);
    LD_CHECK(strstr(st.msg, "1 keys but 0 values") != NULL);
    LD_CHECK_INT(parse(MEM("\x01\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00\x00x"
                           "\x01\x00\x00\x00\x00\x00\x00\x00"
                           "\x01\x00\x00\x00\x00\x00\x00\x00"),
                       &k, &st),
                 -1);
    /* trailing bytes that do not make a value header */
    LD_CHECK_INT(parse(MEM("\x01\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00\x00x"
                           "\x01\x00\x00\x00\x00\x00\x00\x00\x00"),
                       &k, &st),
                 -1);
    arena_end();
}

LD_TEST(deserialize_details)
{
    arena_begin();
    ld_status st = LD_STATUS_INIT;
    Feast__Types__EntityKey *k = NULL;
    /* Feast strips trailing NULs from key names; an empty bytes value and an
     * empty string value are fine */
    LD_CHECK_INT(parse(MEM("\x02\x00\x00\x00\x02\x00\x00\x00\x04\x00\x00\x00id\x00\x00"
                           "\x02\x00\x00\x00\x00\x00\x00\x00"
                           "\x01\x00\x00\x00\x00\x00\x00\x00"
                           "\x02\x00\x00\x00\x00\x00\x00\x00"),
                       &k, &st),
                 0);
    LD_CHECK(k != NULL);
    if (k) {
        LD_CHECK_STR(k->join_keys[0], "id");
        LD_CHECK_STR(k->join_keys[1], "");
        LD_CHECK_INT(k->entity_values[0]->val_case, FEAST__TYPES__VALUE__VAL_BYTES_VAL);
        LD_CHECK_INT(k->entity_values[0]->bytes_val.len, 0);
        LD_CHECK_INT(k->entity_values[1]->val_case, FEAST__TYPES__VALUE__VAL_STRING_VAL);
        LD_CHECK_STR(k->entity_values[1]->string_val, "");
    }
    /* a NUL inside a key name (not trailing) is refused */
    LD_CHECK_INT(parse(MEM("\x01\x00\x00\x00\x02\x00\x00\x00\x03\x00\x00\x00i\x00"
                           "d"
                           "\x01\x00\x00\x00\x00\x00\x00\x00"),
                       &k, &st),
                 -1);
    /* extreme integers */
    LD_CHECK_INT(parse(MEM("\x02\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00\x00"
                           "a"
                           "\x02\x00\x00\x00\x01\x00\x00\x00"
                           "b"
                           "\x04\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80"
                           "\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\xff\x7f"),
                       &k, &st),
                 0);
    if (k) {
        LD_CHECK(k->entity_values[0]->int64_val == INT64_MIN);
        LD_CHECK_INT(k->entity_values[1]->int32_val, INT32_MAX);
    }
    /* a full arena is RESOURCE_EXHAUSTED, not a crash */
    ld_arena small;
    ld_arena_init(&small, NULL, 0, 64);
    LD_CHECK_INT(ld_key_deserialize_v3(six_v3, sizeof six_v3 - 1, &small, &k, &st), -1);
    LD_CHECK_INT(st.code, GRPC_STATUS_RESOURCE_EXHAUSTED);
    LD_CHECK(k == NULL);
    ld_arena_destroy(&small);
    arena_end();
}

LD_TEST_MAIN
