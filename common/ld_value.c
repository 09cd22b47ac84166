/* feast.types.Value helpers: arena constructors, a total order and deep
 * equality over every oneof case, Feast's type names, and the JSON rendering
 * of Feast's Python feature server.
 *
 * The order is defined once (value_cmp) and equality is "compares equal", so
 * the two can never disagree. Composite values are rare in entity keys and
 * small in features, so maps are walked in key order by repeated selection
 * (quadratic, but allocation-free) rather than by sorting a copy. */
#include "ld_value.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/*==== Constructors ====*/

Feast__Types__Value *ld_value_new(ld_arena *a)
{
    Feast__Types__Value *v = ld_arena_alloc(a, sizeof *v);
    if (v)
        feast__types__value__init(v);
    return v;
}

Feast__Types__Value *ld_value_null(ld_arena *a)
{
    Feast__Types__Value *v = ld_value_new(a);
    if (v) {
        v->val_case = FEAST__TYPES__VALUE__VAL_NULL_VAL;
        v->null_val = FEAST__TYPES__NULL__NULL;
    }
    return v;
}

Feast__Types__Value *ld_value_int32(ld_arena *a, int32_t x)
{
    Feast__Types__Value *v = ld_value_new(a);
    if (v) {
        v->val_case = FEAST__TYPES__VALUE__VAL_INT32_VAL;
        v->int32_val = x;
    }
    return v;
}

Feast__Types__Value *ld_value_int64(ld_arena *a, int64_t x)
{
    Feast__Types__Value *v = ld_value_new(a);
    if (v) {
        v->val_case = FEAST__TYPES__VALUE__VAL_INT64_VAL;
        v->int64_val = x;
    }
    return v;
}

Feast__Types__Value *ld_value_double(ld_arena *a, double x)
{
    Feast__Types__Value *v = ld_value_new(a);
    if (v) {
        v->val_case = FEAST__TYPES__VALUE__VAL_DOUBLE_VAL;
        v->double_val = x;
    }
    return v;
}

Feast__Types__Value *ld_value_float(ld_arena *a, float x)
{
    Feast__Types__Value *v = ld_value_new(a);
    if (v) {
        v->val_case = FEAST__TYPES__VALUE__VAL_FLOAT_VAL;
        v->float_val = x;
    }
    return v;
}

Feast__Types__Value *ld_value_bool(ld_arena *a, int x)
{
    Feast__Types__Value *v = ld_value_new(a);
    if (v) {
        v->val_case = FEAST__TYPES__VALUE__VAL_BOOL_VAL;
        v->bool_val = x != 0;
    }
    return v;
}

Feast__Types__Value *ld_value_unix_ts(ld_arena *a, int64_t seconds)
{
    Feast__Types__Value *v = ld_value_new(a);
    if (v) {
        v->val_case = FEAST__TYPES__VALUE__VAL_UNIX_TIMESTAMP_VAL;
        v->unix_timestamp_val = seconds;
    }
    return v;
}

Feast__Types__Value *ld_value_string(ld_arena *a, const char *s, size_t len)
{
    Feast__Types__Value *v = ld_value_new(a);
    char *copy = v ? ld_arena_strndup(a, s, len) : NULL;
    if (!copy)
        return NULL;
    v->val_case = FEAST__TYPES__VALUE__VAL_STRING_VAL;
    v->string_val = copy;
    return v;
}

Feast__Types__Value *ld_value_bytes(ld_arena *a, const void *p, size_t len)
{
    Feast__Types__Value *v = ld_value_new(a);
    if (!v)
        return NULL;
    v->val_case = FEAST__TYPES__VALUE__VAL_BYTES_VAL;
    v->bytes_val.len = len;
    v->bytes_val.data = NULL;
    if (len) {
        v->bytes_val.data = ld_arena_memdup(a, p, len);
        if (!v->bytes_val.data)
            return NULL;
    }
    return v;
}

/* Copy n elements of size sz into the arena; NULL data for n == 0. Returns
 * 0, or -1 when the arena is exhausted. */
static int dup_array(ld_arena *a, void **dst, const void *src, size_t n, size_t sz)
{
    *dst = NULL;
    if (n == 0)
        return 0;
    if (n > SIZE_MAX / sz)
        return -1;
    *dst = ld_arena_memdup(a, src, n * sz);
    return *dst ? 0 : -1;
}

/* Every generated list message is {base, n_val, val}; one macro builds them. */
#define LIST_CTOR(fn, ctype, msgtype, init, vcase, field)                                          \
    Feast__Types__Value *fn(ld_arena *a, const ctype *elems, size_t n)                             \
    {                                                                                              \
        Feast__Types__Value *v = ld_value_new(a);                                                  \
        msgtype *l = v ? ld_arena_alloc(a, sizeof *l) : NULL;                                      \
        if (!l)                                                                                    \
            return NULL;                                                                           \
        init(l);                                                                                   \
        void *arr;                                                                                 \
        if (dup_array(a, &arr, elems, n, sizeof(ctype)) < 0)                                       \
            return NULL;                                                                           \
        l->val = arr;                                                                              \
        l->n_val = n;                                                                              \
        v->val_case = vcase;                                                                       \
        v->field = l;                                                                              \
        return v;                                                                                  \
    }

LIST_CTOR(ld_value_int32_list, int32_t, Feast__Types__Int32List, feast__types__int32_list__init,
          FEAST__TYPES__VALUE__VAL_INT32_LIST_VAL, int32_list_val)
LIST_CTOR(ld_value_int64_list, int64_t, Feast__Types__Int64List, feast__types__int64_list__init,
          FEAST__TYPES__VALUE__VAL_INT64_LIST_VAL, int64_list_val)
LIST_CTOR(ld_value_double_list, double, Feast__Types__DoubleList, feast__types__double_list__init,
          FEAST__TYPES__VALUE__VAL_DOUBLE_LIST_VAL, double_list_val)
LIST_CTOR(ld_value_float_list, float, Feast__Types__FloatList, feast__types__float_list__init,
          FEAST__TYPES__VALUE__VAL_FLOAT_LIST_VAL, float_list_val)
LIST_CTOR(ld_value_bool_list, protobuf_c_boolean, Feast__Types__BoolList,
          feast__types__bool_list__init, FEAST__TYPES__VALUE__VAL_BOOL_LIST_VAL, bool_list_val)
LIST_CTOR(ld_value_unix_ts_list, int64_t, Feast__Types__Int64List, feast__types__int64_list__init,
          FEAST__TYPES__VALUE__VAL_UNIX_TIMESTAMP_LIST_VAL, unix_timestamp_list_val)

Feast__Types__Value *ld_value_string_list(ld_arena *a, const char *const *elems, size_t n)
{
    Feast__Types__Value *v = ld_value_new(a);
    Feast__Types__StringList *l = v ? ld_arena_alloc(a, sizeof *l) : NULL;
    if (!l)
        return NULL;
    feast__types__string_list__init(l);
    if (n) {
        l->val = ld_arena_calloc(a, n, sizeof *l->val);
        if (!l->val)
            return NULL;
        for (size_t i = 0; i < n; i++) {
            l->val[i] = ld_arena_strdup(a, elems[i]);
            if (!l->val[i])
                return NULL;
        }
    }
    l->n_val = n;
    v->val_case = FEAST__TYPES__VALUE__VAL_STRING_LIST_VAL;
    v->string_list_val = l;
    return v;
}

Feast__Types__Value *ld_value_bytes_list(ld_arena *a, const ProtobufCBinaryData *elems, size_t n)
{
    Feast__Types__Value *v = ld_value_new(a);
    Feast__Types__BytesList *l = v ? ld_arena_alloc(a, sizeof *l) : NULL;
    if (!l)
        return NULL;
    feast__types__bytes_list__init(l);
    if (n) {
        l->val = ld_arena_calloc(a, n, sizeof *l->val);
        if (!l->val)
            return NULL;
        for (size_t i = 0; i < n; i++) {
            l->val[i].len = elems[i].len;
            if (elems[i].len) {
                l->val[i].data = ld_arena_memdup(a, elems[i].data, elems[i].len);
                if (!l->val[i].data)
                    return NULL;
            }
        }
    }
    l->n_val = n;
    v->val_case = FEAST__TYPES__VALUE__VAL_BYTES_LIST_VAL;
    v->bytes_list_val = l;
    return v;
}

/*==== Type names ====*/

/* Feast's Python ValueType names; the gaps (9, 10) have none. */
static const char *const type_names[] = {
        [0] = "UNKNOWN",
        [1] = "BYTES",
        [2] = "STRING",
        [3] = "INT32",
        [4] = "INT64",
        [5] = "DOUBLE",
        [6] = "FLOAT",
        [7] = "BOOL",
        [8] = "UNIX_TIMESTAMP",
        [11] = "BYTES_LIST",
        [12] = "STRING_LIST",
        [13] = "INT32_LIST",
        [14] = "INT64_LIST",
        [15] = "DOUBLE_LIST",
        [16] = "FLOAT_LIST",
        [17] = "BOOL_LIST",
        [18] = "UNIX_TIMESTAMP_LIST",
        [19] = "NULL",
        [20] = "MAP",
        [21] = "MAP_LIST",
        [22] = "BYTES_SET",
        [23] = "STRING_SET",
        [24] = "INT32_SET",
        [25] = "INT64_SET",
        [26] = "DOUBLE_SET",
        [27] = "FLOAT_SET",
        [28] = "BOOL_SET",
        [29] = "UNIX_TIMESTAMP_SET",
        [30] = "PDF_BYTES",
        [31] = "IMAGE_BYTES",
        [32] = "JSON",
        [33] = "JSON_LIST",
        [34] = "STRUCT",
        [35] = "STRUCT_LIST",
        [36] = "UUID",
        [37] = "TIME_UUID",
        [38] = "UUID_LIST",
        [39] = "TIME_UUID_LIST",
        [40] = "UUID_SET",
        [41] = "TIME_UUID_SET",
        [42] = "VALUE_LIST",
        [43] = "VALUE_SET",
        [44] = "DECIMAL",
        [45] = "DECIMAL_LIST",
        [46] = "DECIMAL_SET",
        [47] = "SCALAR_MAP",
        [48] = "ZONED_TIMESTAMP",
};

const char *ld_value_type_name(ld_value_case c)
{
    size_t i = (size_t)c;
    if (i < sizeof type_names / sizeof type_names[0] && type_names[i])
        return type_names[i];
    return "UNKNOWN";
}

/*==== Order and equality ====*/

static int value_cmp(const Feast__Types__Value *a, const Feast__Types__Value *b);

static int cmp_i64(int64_t a, int64_t b)
{
    return (a > b) - (a < b);
}

/* Numeric, with -0.0 < +0.0 and all NaNs equal and greatest. */
static int cmp_dbl(double a, double b)
{
    int na = isnan(a), nb = isnan(b);
    if (na || nb)
        return na - nb;
    if (a == b)
        return (signbit(b) != 0) - (signbit(a) != 0);
    return a < b ? -1 : 1;
}

static int cmp_bytes(const void *a, size_t alen, const void *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;
    if (c)
        return c < 0 ? -1 : 1;
    return (alen > blen) - (alen < blen);
}

static int cmp_bin(ProtobufCBinaryData a, ProtobufCBinaryData b)
{
    return cmp_bytes(a.data, a.len, b.data, b.len);
}

/* strcmp compares as unsigned char, so this is byte order (= code point
 * order for UTF-8) with the shorter string first on a common prefix. */
static int cmp_str(const char *a, const char *b)
{
    int c = strcmp(a ? a : "", b ? b : "");
    return (c > 0) - (c < 0);
}

/* Compare two arrays element by element, then by length. */
#define CMP_ARRAY(na, va, nb, vb, cmp)                                                             \
    do {                                                                                           \
        size_t n_ = (na) < (nb) ? (na) : (nb);                                                     \
        for (size_t i_ = 0; i_ < n_; i_++) {                                                       \
            int c_ = cmp((va)[i_], (vb)[i_]);                                                      \
            if (c_)                                                                                \
                return c_;                                                                         \
        }                                                                                          \
        return ((na) > (nb)) - ((na) < (nb));                                                      \
    } while (0)

/* A list message may be absent (NULL) in a hand-built Value: read it as empty. */
#define LEN(l)   ((l) ? (l)->n_val : 0)
#define ELEMS(l) ((l) ? (l)->val : NULL)

static int cmp_i32_arr(size_t na, const int32_t *a, size_t nb, const int32_t *b)
{
    CMP_ARRAY(na, a, nb, b, cmp_i64);
}

static int cmp_i64_arr(size_t na, const int64_t *a, size_t nb, const int64_t *b)
{
    CMP_ARRAY(na, a, nb, b, cmp_i64);
}

static int cmp_dbl_arr(size_t na, const double *a, size_t nb, const double *b)
{
    CMP_ARRAY(na, a, nb, b, cmp_dbl);
}

static int cmp_flt_arr(size_t na, const float *a, size_t nb, const float *b)
{
    CMP_ARRAY(na, a, nb, b, cmp_dbl);
}

static int cmp_bool_arr(size_t na, const protobuf_c_boolean *a, size_t nb,
                        const protobuf_c_boolean *b)
{
    /* protobuf-c booleans are ints; anything non-zero is true */
#define BOOL_CMP(x, y) cmp_i64((x) != 0, (y) != 0)
    CMP_ARRAY(na, a, nb, b, BOOL_CMP);
#undef BOOL_CMP
}

static int cmp_str_arr(size_t na, char *const *a, size_t nb, char *const *b)
{
    CMP_ARRAY(na, a, nb, b, cmp_str);
}

static int cmp_bin_arr(size_t na, const ProtobufCBinaryData *a, size_t nb,
                       const ProtobufCBinaryData *b)
{
    CMP_ARRAY(na, a, nb, b, cmp_bin);
}

static int cmp_val_arr(size_t na, Feast__Types__Value *const *a, size_t nb,
                       Feast__Types__Value *const *b)
{
    CMP_ARRAY(na, a, nb, b, value_cmp);
}

static int cmp_repeated(const Feast__Types__RepeatedValue *a, const Feast__Types__RepeatedValue *b)
{
    return cmp_val_arr(LEN(a), ELEMS(a), LEN(b), ELEMS(b));
}

/* The entry with the smallest key greater than prev (any key when prev is
 * NULL); of equal keys the last one, as protobuf keeps the last on parse. */
static const Feast__Types__Map__ValEntry *map_next(const Feast__Types__Map *m, const char *prev)
{
    const Feast__Types__Map__ValEntry *best = NULL;
    for (size_t i = 0; i < LEN(m); i++) {
        const Feast__Types__Map__ValEntry *e = m->val[i];
        if (!e || (prev && cmp_str(e->key, prev) <= 0))
            continue;
        if (!best || cmp_str(e->key, best->key) <= 0)
            best = e;
    }
    return best;
}

static int cmp_map(const Feast__Types__Map *a, const Feast__Types__Map *b)
{
    const char *pa = NULL, *pb = NULL;
    for (;;) {
        const Feast__Types__Map__ValEntry *ea = map_next(a, pa), *eb = map_next(b, pb);
        if (!ea || !eb)
            return (ea != NULL) - (eb != NULL);
        int c = cmp_str(ea->key, eb->key);
        if (!c)
            c = value_cmp(ea->value, eb->value);
        if (c)
            return c;
        pa = ea->key ? ea->key : "";
        pb = eb->key ? eb->key : "";
    }
}

static int cmp_map_list(const Feast__Types__MapList *a, const Feast__Types__MapList *b)
{
    CMP_ARRAY(LEN(a), ELEMS(a), LEN(b), ELEMS(b), cmp_map);
}

static int cmp_map_key(const Feast__Types__MapKey *a, const Feast__Types__MapKey *b)
{
    int ca = a ? (int)a->key_case : 0, cb = b ? (int)b->key_case : 0;
    if (ca != cb)
        return (ca > cb) - (ca < cb);
    switch (a ? a->key_case : FEAST__TYPES__MAP_KEY__KEY__NOT_SET) {
    case FEAST__TYPES__MAP_KEY__KEY_INT32_KEY:
        return cmp_i64(a->int32_key, b->int32_key);
    case FEAST__TYPES__MAP_KEY__KEY_INT64_KEY:
        return cmp_i64(a->int64_key, b->int64_key);
    case FEAST__TYPES__MAP_KEY__KEY_FLOAT_KEY:
        return cmp_dbl(a->float_key, b->float_key);
    case FEAST__TYPES__MAP_KEY__KEY_DOUBLE_KEY:
        return cmp_dbl(a->double_key, b->double_key);
    case FEAST__TYPES__MAP_KEY__KEY_BOOL_KEY:
        return cmp_i64(a->bool_key != 0, b->bool_key != 0);
    case FEAST__TYPES__MAP_KEY__KEY_UNIX_TIMESTAMP_KEY:
        return cmp_i64(a->unix_timestamp_key, b->unix_timestamp_key);
    case FEAST__TYPES__MAP_KEY__KEY_BYTES_KEY:
        return cmp_bin(a->bytes_key, b->bytes_key);
    case FEAST__TYPES__MAP_KEY__KEY_UUID_KEY:
        return cmp_str(a->uuid_key, b->uuid_key);
    case FEAST__TYPES__MAP_KEY__KEY_TIME_UUID_KEY:
        return cmp_str(a->time_uuid_key, b->time_uuid_key);
    case FEAST__TYPES__MAP_KEY__KEY_DECIMAL_KEY:
        return cmp_str(a->decimal_key, b->decimal_key);
    default:
        return 0;
    }
}

static int cmp_scalar_entry(const Feast__Types__ScalarMapEntry *a,
                            const Feast__Types__ScalarMapEntry *b)
{
    int c = cmp_map_key(a ? a->key : NULL, b ? b->key : NULL);
    return c ? c : value_cmp(a ? a->value : NULL, b ? b->value : NULL);
}

/* Scalar maps are a repeated message, not a protobuf map: entry order counts. */
static int cmp_scalar_map(const Feast__Types__ScalarMap *a, const Feast__Types__ScalarMap *b)
{
    CMP_ARRAY(LEN(a), ELEMS(a), LEN(b), ELEMS(b), cmp_scalar_entry);
}

static int cmp_zoned(const Feast__Types__ZonedTimestamp *a, const Feast__Types__ZonedTimestamp *b)
{
    int c = cmp_i64(a ? a->unix_timestamp : 0, b ? b->unix_timestamp : 0);
    return c ? c : cmp_str(a ? a->zone : NULL, b ? b->zone : NULL);
}

#define LIST_CMP(fn, field)                                                                        \
    return fn(LEN(a->field), ELEMS(a->field), LEN(b->field), ELEMS(b->field))

static int value_cmp(const Feast__Types__Value *a, const Feast__Types__Value *b)
{
    ld_value_case ca = ld_value_case_of(a), cb = ld_value_case_of(b);
    if (ca != cb)
        return ((int)ca > (int)cb) - ((int)ca < (int)cb);
    switch (ca) {
    case FEAST__TYPES__VALUE__VAL__NOT_SET:
        return 0;
    case FEAST__TYPES__VALUE__VAL_BYTES_VAL:
        return cmp_bin(a->bytes_val, b->bytes_val);
    case FEAST__TYPES__VALUE__VAL_STRING_VAL:
        return cmp_str(a->string_val, b->string_val);
    case FEAST__TYPES__VALUE__VAL_INT32_VAL:
        return cmp_i64(a->int32_val, b->int32_val);
    case FEAST__TYPES__VALUE__VAL_INT64_VAL:
        return cmp_i64(a->int64_val, b->int64_val);
    case FEAST__TYPES__VALUE__VAL_DOUBLE_VAL:
        return cmp_dbl(a->double_val, b->double_val);
    case FEAST__TYPES__VALUE__VAL_FLOAT_VAL:
        return cmp_dbl(a->float_val, b->float_val);
    case FEAST__TYPES__VALUE__VAL_BOOL_VAL:
        return cmp_i64(a->bool_val != 0, b->bool_val != 0);
    case FEAST__TYPES__VALUE__VAL_UNIX_TIMESTAMP_VAL:
        return cmp_i64(a->unix_timestamp_val, b->unix_timestamp_val);
    case FEAST__TYPES__VALUE__VAL_BYTES_LIST_VAL:
        LIST_CMP(cmp_bin_arr, bytes_list_val);
    case FEAST__TYPES__VALUE__VAL_STRING_LIST_VAL:
        LIST_CMP(cmp_str_arr, string_list_val);
    case FEAST__TYPES__VALUE__VAL_INT32_LIST_VAL:
        LIST_CMP(cmp_i32_arr, int32_list_val);
    case FEAST__TYPES__VALUE__VAL_INT64_LIST_VAL:
        LIST_CMP(cmp_i64_arr, int64_list_val);
    case FEAST__TYPES__VALUE__VAL_DOUBLE_LIST_VAL:
        LIST_CMP(cmp_dbl_arr, double_list_val);
    case FEAST__TYPES__VALUE__VAL_FLOAT_LIST_VAL:
        LIST_CMP(cmp_flt_arr, float_list_val);
    case FEAST__TYPES__VALUE__VAL_BOOL_LIST_VAL:
        LIST_CMP(cmp_bool_arr, bool_list_val);
    case FEAST__TYPES__VALUE__VAL_UNIX_TIMESTAMP_LIST_VAL:
        LIST_CMP(cmp_i64_arr, unix_timestamp_list_val);
    case FEAST__TYPES__VALUE__VAL_NULL_VAL:
        return cmp_i64(a->null_val, b->null_val);
    case FEAST__TYPES__VALUE__VAL_MAP_VAL:
        return cmp_map(a->map_val, b->map_val);
    case FEAST__TYPES__VALUE__VAL_MAP_LIST_VAL:
        return cmp_map_list(a->map_list_val, b->map_list_val);
    case FEAST__TYPES__VALUE__VAL_BYTES_SET_VAL:
        LIST_CMP(cmp_bin_arr, bytes_set_val);
    case FEAST__TYPES__VALUE__VAL_STRING_SET_VAL:
        LIST_CMP(cmp_str_arr, string_set_val);
    case FEAST__TYPES__VALUE__VAL_INT32_SET_VAL:
        LIST_CMP(cmp_i32_arr, int32_set_val);
    case FEAST__TYPES__VALUE__VAL_INT64_SET_VAL:
        LIST_CMP(cmp_i64_arr, int64_set_val);
    case FEAST__TYPES__VALUE__VAL_DOUBLE_SET_VAL:
        LIST_CMP(cmp_dbl_arr, double_set_val);
    case FEAST__TYPES__VALUE__VAL_FLOAT_SET_VAL:
        LIST_CMP(cmp_flt_arr, float_set_val);
    case FEAST__TYPES__VALUE__VAL_BOOL_SET_VAL:
        LIST_CMP(cmp_bool_arr, bool_set_val);
    case FEAST__TYPES__VALUE__VAL_UNIX_TIMESTAMP_SET_VAL:
        LIST_CMP(cmp_i64_arr, unix_timestamp_set_val);
    case FEAST__TYPES__VALUE__VAL_JSON_VAL:
        return cmp_str(a->json_val, b->json_val);
    case FEAST__TYPES__VALUE__VAL_JSON_LIST_VAL:
        LIST_CMP(cmp_str_arr, json_list_val);
    case FEAST__TYPES__VALUE__VAL_STRUCT_VAL:
        return cmp_map(a->struct_val, b->struct_val);
    case FEAST__TYPES__VALUE__VAL_STRUCT_LIST_VAL:
        return cmp_map_list(a->struct_list_val, b->struct_list_val);
    case FEAST__TYPES__VALUE__VAL_UUID_VAL:
        return cmp_str(a->uuid_val, b->uuid_val);
    case FEAST__TYPES__VALUE__VAL_TIME_UUID_VAL:
        return cmp_str(a->time_uuid_val, b->time_uuid_val);
    case FEAST__TYPES__VALUE__VAL_UUID_LIST_VAL:
        LIST_CMP(cmp_str_arr, uuid_list_val);
    case FEAST__TYPES__VALUE__VAL_TIME_UUID_LIST_VAL:
        LIST_CMP(cmp_str_arr, time_uuid_list_val);
    case FEAST__TYPES__VALUE__VAL_UUID_SET_VAL:
        LIST_CMP(cmp_str_arr, uuid_set_val);
    case FEAST__TYPES__VALUE__VAL_TIME_UUID_SET_VAL:
        LIST_CMP(cmp_str_arr, time_uuid_set_val);
    case FEAST__TYPES__VALUE__VAL_LIST_VAL:
        return cmp_repeated(a->list_val, b->list_val);
    case FEAST__TYPES__VALUE__VAL_SET_VAL:
        return cmp_repeated(a->set_val, b->set_val);
    case FEAST__TYPES__VALUE__VAL_DECIMAL_VAL:
        return cmp_str(a->decimal_val, b->decimal_val);
    case FEAST__TYPES__VALUE__VAL_DECIMAL_LIST_VAL:
        LIST_CMP(cmp_str_arr, decimal_list_val);
    case FEAST__TYPES__VALUE__VAL_DECIMAL_SET_VAL:
        LIST_CMP(cmp_str_arr, decimal_set_val);
    case FEAST__TYPES__VALUE__VAL_SCALAR_MAP_VAL:
        return cmp_scalar_map(a->scalar_map_val, b->scalar_map_val);
    case FEAST__TYPES__VALUE__VAL_ZONED_TIMESTAMP_VAL:
        return cmp_zoned(a->zoned_timestamp_val, b->zoned_timestamp_val);
    default:
        /* A case this build does not know (a newer Feast proto parsed as
         * unknown fields never gets here; protobuf-c leaves it unset). */
        return 0;
    }
}

int ld_value_compare(const Feast__Types__Value *a, const Feast__Types__Value *b)
{
    return value_cmp(a, b);
}

int ld_value_equal(const Feast__Types__Value *a, const Feast__Types__Value *b)
{
    return value_cmp(a, b) == 0;
}

/*==== Python float repr ====*/

/* printf and strtod do the decimal work; both follow LC_NUMERIC, which our
 * servers leave at "C" (they never call setlocale). */

/* Digits of a positive finite double: value = 0.DIGITS x 10^decpt. */
struct digits {
    char d[24];
    int n;
    int decpt;
};

/* Parse printf's "%.*e" output ("D.DDDe-XX") into digits. */
static void parse_e(const char *s, struct digits *out)
{
    out->n = 0;
    for (; *s && *s != 'e'; s++)
        if (*s >= '0' && *s <= '9')
            out->d[out->n++] = *s;
    out->decpt = (*s == 'e' ? atoi(s + 1) : 0) + 1;
}

static void strip_zeros(struct digits *g)
{
    while (g->n > 1 && g->d[g->n - 1] == '0')
        g->n--;
}

/* Read the digits back as a double. */
static double digits_value(const struct digits *g)
{
    char buf[48];
    snprintf(buf, sizeof buf, "0.%.*se%d", g->n, g->d, g->decpt);
    return strtod(buf, NULL);
}

/* Step the last digit of an n-digit decimal by +1 or -1, with carry. */
static void digits_step(struct digits *g, int dir)
{
    int i = g->n - 1;
    if (dir > 0) {
        while (i >= 0 && g->d[i] == '9')
            g->d[i--] = '0';
        if (i < 0) {
            /* 999 + 1 = 1000: one more power of ten */
            g->d[0] = '1';
            memset(g->d + 1, '0', (size_t)g->n - 1);
            g->decpt++;
        } else {
            g->d[i]++;
        }
    } else {
        while (i >= 0 && g->d[i] == '0')
            g->d[i--] = '9';
        if (i >= 0)
            g->d[i]--;
        if (g->d[0] == '0') {
            /* 1000 - 1 = 0999: renormalise to 999 and one more 9 */
            memmove(g->d, g->d + 1, (size_t)g->n - 1);
            g->d[g->n - 1] = '9';
            g->decpt--;
        }
    }
}

/* The correctly rounded p-significant-digit decimal of d, all p digits.
 * Returns the value those digits read back as. */
static double format_digits(double d, int p, struct digits *g)
{
    char buf[48];
    snprintf(buf, sizeof buf, "%.*e", p - 1, d);
    parse_e(buf, g);
    return strtod(buf, NULL);
}

static int round_trips(double d, int p, struct digits *g)
{
    return format_digits(d, p, g) == d;
}

/*
 * Shortest round-tripping digits, choosing the closest of equally short ones
 * (what Python's repr does, via David Gay's dtoa mode 0).
 *
 * For normal doubles any decimal of at most 15 digits round-trips uniquely
 * (DBL_DIG), so if the 15-digit rounding reads back as d, it is the answer
 * with its trailing zeros dropped; 17 digits always read back. At 16 digits
 * the nearest decimal may miss while its neighbour on the far side of d hits:
 * that happens only at a power of two, where the gap below d is half the gap
 * above. Subnormals have fewer digits of precision, so they search upward.
 */
static void shortest_digits(double d, struct digits *g)
{
    if (d < 2.2250738585072014e-308) {
        int p = 1;
        while (p < 17 && !round_trips(d, p, g))
            p++;
        if (p == 17)
            (void)format_digits(d, 17, g);
    } else if (!round_trips(d, 15, g) && !round_trips(d, 16, g)) {
        int e2;
        struct digits alt = *g;
        if (frexp(d, &e2) == 0.5) {
            digits_step(&alt, digits_value(g) < d ? 1 : -1);
            if (digits_value(&alt) == d) {
                *g = alt;
                strip_zeros(g);
                return;
            }
        }
        (void)format_digits(d, 17, g);
    }
    strip_zeros(g);
}

size_t ld_value_double_repr(double d, char out[LD_DOUBLE_REPR_MAX])
{
    if (isnan(d))
        return (size_t)snprintf(out, LD_DOUBLE_REPR_MAX, "nan");
    if (isinf(d))
        return (size_t)snprintf(out, LD_DOUBLE_REPR_MAX, "%s", d < 0 ? "-inf" : "inf");
    char *p = out;
    if (signbit(d)) {
        *p++ = '-';
        d = -d;
    }
    if (d == 0) {
        memcpy(p, "0.0", 4);
        return (size_t)(p - out) + 3;
    }
    struct digits g;
    shortest_digits(d, &g);
    if (g.decpt <= -4 || g.decpt > 16) {
        /* 1e+16, 1.5e-07 */
        *p++ = g.d[0];
        if (g.n > 1) {
            *p++ = '.';
            memcpy(p, g.d + 1, (size_t)g.n - 1);
            p += g.n - 1;
        }
        p += sprintf(p, "e%c%02d", g.decpt - 1 < 0 ? '-' : '+', abs(g.decpt - 1));
    } else if (g.decpt <= 0) {
        /* 0.000123 */
        *p++ = '0';
        *p++ = '.';
        memset(p, '0', (size_t)-g.decpt);
        p += -g.decpt;
        memcpy(p, g.d, (size_t)g.n);
        p += g.n;
    } else if (g.decpt < g.n) {
        /* 12.5 */
        memcpy(p, g.d, (size_t)g.decpt);
        p += g.decpt;
        *p++ = '.';
        memcpy(p, g.d + g.decpt, (size_t)(g.n - g.decpt));
        p += g.n - g.decpt;
    } else {
        /* 1200.0 */
        memcpy(p, g.d, (size_t)g.n);
        p += g.n;
        memset(p, '0', (size_t)(g.decpt - g.n));
        p += g.decpt - g.n;
        memcpy(p, ".0", 2);
        p += 2;
    }
    *p = '\0';
    return (size_t)(p - out);
}

/*==== JSON rendering ====*/

static void put_base64(ld_buf *out, const uint8_t *s, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *w = ld_buf_reserve(out, (n + 2) / 3 * 4 + 2);
    char *p = w;
    *p++ = '"';
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t x = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        *p++ = tab[x >> 18];
        *p++ = tab[(x >> 12) & 63];
        *p++ = tab[(x >> 6) & 63];
        *p++ = tab[x & 63];
    }
    if (i < n) {
        uint32_t x = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0);
        *p++ = tab[x >> 18];
        *p++ = tab[(x >> 12) & 63];
        *p++ = i + 1 < n ? tab[(x >> 6) & 63] : '=';
        *p++ = '=';
    }
    *p++ = '"';
    out->len += (size_t)(p - w);
    out->data[out->len] = '\0';
}

static void put_str(ld_buf *out, const char *s)
{
    s = s ? s : "";
    ld_buf_json_str(out, s, strlen(s), 0);
}

static void put_i64(ld_buf *out, int64_t x)
{
    ld_buf_printf(out, "%" PRId64, x);
}

static int put_dbl(ld_buf *out, double x, ld_status *st)
{
    char buf[LD_DOUBLE_REPR_MAX];
    size_t n = ld_value_double_repr(x, buf);
    if (!isfinite(x))
        return ld_status_set(st, GRPC_STATUS_INTERNAL, NULL,
                             "Out of range float values are not JSON compliant: %s", buf);
    ld_buf_append(out, buf, n);
    return 0;
}

static int put_value(ld_buf *out, const Feast__Types__Value *v, ld_status *st);

/* JSON array of n elements, each written by one statement using i. */
#define PUT_ARRAY(out, n, stmt)                                                                    \
    do {                                                                                           \
        ld_buf_putc(out, '[');                                                                     \
        for (size_t i = 0; i < (n); i++) {                                                         \
            if (i)                                                                                 \
                ld_buf_putc(out, ',');                                                             \
            stmt;                                                                                  \
        }                                                                                          \
        ld_buf_putc(out, ']');                                                                     \
    } while (0)

static int put_map(ld_buf *out, const Feast__Types__Map *m, ld_status *st)
{
    ld_buf_putc(out, '{');
    int first = 1;
    for (size_t i = 0; i < LEN(m); i++) {
        const Feast__Types__Map__ValEntry *e = m->val[i];
        if (!e)
            continue;
        if (!first)
            ld_buf_putc(out, ',');
        first = 0;
        put_str(out, e->key);
        ld_buf_putc(out, ':');
        if (put_value(out, e->value, st) < 0)
            return -1;
    }
    ld_buf_putc(out, '}');
    return 0;
}

static int put_map_list(ld_buf *out, const Feast__Types__MapList *l, ld_status *st)
{
    ld_buf_putc(out, '[');
    for (size_t i = 0; i < LEN(l); i++) {
        if (i)
            ld_buf_putc(out, ',');
        if (put_map(out, l->val[i], st) < 0)
            return -1;
    }
    ld_buf_putc(out, ']');
    return 0;
}

static int put_repeated(ld_buf *out, const Feast__Types__RepeatedValue *l, ld_status *st)
{
    ld_buf_putc(out, '[');
    for (size_t i = 0; i < LEN(l); i++) {
        if (i)
            ld_buf_putc(out, ',');
        if (put_value(out, l->val[i], st) < 0)
            return -1;
    }
    ld_buf_putc(out, ']');
    return 0;
}

static int put_dbl_array(ld_buf *out, size_t n, const double *x, ld_status *st)
{
    ld_buf_putc(out, '[');
    for (size_t i = 0; i < n; i++) {
        if (i)
            ld_buf_putc(out, ',');
        if (put_dbl(out, x[i], st) < 0)
            return -1;
    }
    ld_buf_putc(out, ']');
    return 0;
}

static int put_flt_array(ld_buf *out, size_t n, const float *x, ld_status *st)
{
    ld_buf_putc(out, '[');
    for (size_t i = 0; i < n; i++) {
        if (i)
            ld_buf_putc(out, ',');
        if (put_dbl(out, x[i], st) < 0)
            return -1;
    }
    ld_buf_putc(out, ']');
    return 0;
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

/* Python's _fixed_offset_from_name: "UTC"/"GMT", or [UTC|GMT](+|-)HH[:]MM.
 * Returns 0 and the offset in seconds, or -1 if zone is no such string. */
static int fixed_offset(const char *zone, int *offset)
{
    /* Python strips whitespace first (str.strip) */
    while (*zone == ' ' || (*zone >= '\t' && *zone <= '\r'))
        zone++;
    size_t n = strlen(zone);
    while (n && (zone[n - 1] == ' ' || (zone[n - 1] >= '\t' && zone[n - 1] <= '\r')))
        n--;
    if ((n == 3 && !memcmp(zone, "UTC", 3)) || (n == 3 && !memcmp(zone, "GMT", 3))) {
        *offset = 0;
        return 0;
    }
    if (n >= 3 && (!memcmp(zone, "UTC", 3) || !memcmp(zone, "GMT", 3))) {
        zone += 3;
        n -= 3;
    }
    /* \d in a Python str pattern also matches non-ASCII digits; zone names
     * that use them do not occur in practice, and ASCII is all we accept. */
#define D(c) ((c) >= '0' && (c) <= '9')
    int colon = n == 6 && zone[3] == ':';
    if (!(n == 5 || colon) || (zone[0] != '+' && zone[0] != '-'))
        return -1;
    const char *mm = zone + 3 + colon;
    if (!D(zone[1]) || !D(zone[2]) || !D(mm[0]) || !D(mm[1]))
        return -1;
#undef D
    int secs = ((zone[1] - '0') * 10 + (zone[2] - '0')) * 3600 +
               ((mm[0] - '0') * 10 + (mm[1] - '0')) * 60;
    /* timezone() refuses offsets of a day or more */
    if (secs >= 86400)
        return -2;
    *offset = zone[0] == '-' ? -secs : secs;
    return 0;
}

/* Whether Python's ZoneInfo would find the zone in the system database
 * (Debian's TZPATH starts at /usr/share/zoneinfo). Such a zone takes
 * precedence over the fixed-offset parse; rendering one needs a TZif reader,
 * which is not written yet. Returns 1 if the zone file exists. */
static int iana_zone_exists(const char *zone)
{
    /* ZoneInfo refuses absolute paths and ".." components */
    if (!*zone || zone[0] == '/' || strstr(zone, "..") || strlen(zone) > 200)
        return 0;
    char path[256];
    snprintf(path, sizeof path, "/usr/share/zoneinfo/%s", zone);
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static int is_utc_alias(const char *zone)
{
    static const char *const names[] = {
            "UTC",       "GMT",      "UCT",       "Zulu",      "Universal",     "Etc/UTC",
            "Etc/GMT",   "Etc/UCT",  "Etc/Zulu",  "GMT0",      "GMT+0",         "GMT-0",
            "Greenwich", "Etc/GMT0", "Etc/GMT+0", "Etc/GMT-0", "Etc/Greenwich", "Etc/Universal"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(zone, names[i]))
            return 1;
    return 0;
}

/* Feast's _zoned_timestamp_to_str: datetime.fromtimestamp(s, zone).isoformat(). */
static int put_zoned(ld_buf *out, const Feast__Types__ZonedTimestamp *z, ld_status *st)
{
    int64_t secs = z ? z->unix_timestamp : 0;
    const char *zone = z && z->zone ? z->zone : "";
    if (secs == INT64_MIN) {
        /* numpy's NaT, Feast's null timestamp */
        ld_buf_puts(out, "null");
        return 0;
    }
    int offset = 0;
    if (*zone && !is_utc_alias(zone)) {
        if (iana_zone_exists(zone))
            return ld_status_set(st, GRPC_STATUS_UNIMPLEMENTED, NULL,
                                 "zoned timestamp in zone '%s': only UTC and fixed-offset zones "
                                 "are rendered",
                                 zone);
        int r = fixed_offset(zone, &offset);
        if (r == -2)
            return ld_status_set(st, GRPC_STATUS_INTERNAL, NULL,
                                 "zoned timestamp: offset '%s' is not strictly between -24 and 24 "
                                 "hours",
                                 zone);
        if (r < 0)
            offset = 0; /* Feast logs a warning and decodes as UTC */
    }
    /* Python's datetime covers years 1..9999, in UTC and in the zone */
    const int64_t lo = days_from_civil(1, 1, 1) * 86400, hi = days_from_civil(10000, 1, 1) * 86400;
    if (secs < lo || secs >= hi || secs < lo - offset || secs >= hi - offset)
        return ld_status_set(st, GRPC_STATUS_INTERNAL, NULL,
                             "zoned timestamp %" PRId64 " is out of range", secs);
    int64_t local = secs + offset;
    int64_t days = local >= 0 ? local / 86400 : -((-local + 86399) / 86400);
    int64_t sod = local - days * 86400;
    int64_t y;
    unsigned mo, d;
    civil_from_days(days, &y, &mo, &d);
    int off = offset < 0 ? -offset : offset;
    ld_buf_printf(out, "\"%04d-%02u-%02uT%02d:%02d:%02d%c%02d:%02d\"", (int)y, mo, d,
                  (int)(sod / 3600), (int)(sod / 60 % 60), (int)(sod % 60), offset < 0 ? '-' : '+',
                  off / 3600, off / 60 % 60);
    return 0;
}

static int put_value(ld_buf *out, const Feast__Types__Value *v, ld_status *st)
{
    switch (ld_value_case_of(v)) {
    case FEAST__TYPES__VALUE__VAL__NOT_SET:
    case FEAST__TYPES__VALUE__VAL_NULL_VAL:
    case FEAST__TYPES__VALUE__VAL_SCALAR_MAP_VAL:
        ld_buf_puts(out, "null");
        return 0;
    case FEAST__TYPES__VALUE__VAL_BYTES_VAL:
        put_base64(out, v->bytes_val.data, v->bytes_val.len);
        return 0;
    case FEAST__TYPES__VALUE__VAL_STRING_VAL:
        put_str(out, v->string_val);
        return 0;
    case FEAST__TYPES__VALUE__VAL_JSON_VAL:
        put_str(out, v->json_val);
        return 0;
    case FEAST__TYPES__VALUE__VAL_UUID_VAL:
        put_str(out, v->uuid_val);
        return 0;
    case FEAST__TYPES__VALUE__VAL_TIME_UUID_VAL:
        put_str(out, v->time_uuid_val);
        return 0;
    case FEAST__TYPES__VALUE__VAL_DECIMAL_VAL:
        put_str(out, v->decimal_val);
        return 0;
    case FEAST__TYPES__VALUE__VAL_INT32_VAL:
        put_i64(out, v->int32_val);
        return 0;
    case FEAST__TYPES__VALUE__VAL_INT64_VAL:
        put_i64(out, v->int64_val);
        return 0;
    case FEAST__TYPES__VALUE__VAL_UNIX_TIMESTAMP_VAL:
        put_i64(out, v->unix_timestamp_val);
        return 0;
    case FEAST__TYPES__VALUE__VAL_DOUBLE_VAL:
        return put_dbl(out, v->double_val, st);
    case FEAST__TYPES__VALUE__VAL_FLOAT_VAL:
        return put_dbl(out, v->float_val, st);
    case FEAST__TYPES__VALUE__VAL_BOOL_VAL:
        ld_buf_puts(out, v->bool_val ? "true" : "false");
        return 0;
    case FEAST__TYPES__VALUE__VAL_BYTES_LIST_VAL:
    case FEAST__TYPES__VALUE__VAL_BYTES_SET_VAL: {
        /* BytesList and BytesSet have the same layout */
        const Feast__Types__BytesList *l = v->bytes_list_val;
        PUT_ARRAY(out, LEN(l), put_base64(out, l->val[i].data, l->val[i].len));
        return 0;
    }
    case FEAST__TYPES__VALUE__VAL_STRING_LIST_VAL:
    case FEAST__TYPES__VALUE__VAL_STRING_SET_VAL:
    case FEAST__TYPES__VALUE__VAL_JSON_LIST_VAL:
    case FEAST__TYPES__VALUE__VAL_UUID_LIST_VAL:
    case FEAST__TYPES__VALUE__VAL_TIME_UUID_LIST_VAL:
    case FEAST__TYPES__VALUE__VAL_UUID_SET_VAL:
    case FEAST__TYPES__VALUE__VAL_TIME_UUID_SET_VAL:
    case FEAST__TYPES__VALUE__VAL_DECIMAL_LIST_VAL:
    case FEAST__TYPES__VALUE__VAL_DECIMAL_SET_VAL: {
        /* all of these are StringList or StringSet, which share a layout */
        const Feast__Types__StringList *l = v->string_list_val;
        PUT_ARRAY(out, LEN(l), put_str(out, l->val[i]));
        return 0;
    }
    case FEAST__TYPES__VALUE__VAL_INT32_LIST_VAL:
    case FEAST__TYPES__VALUE__VAL_INT32_SET_VAL: {
        const Feast__Types__Int32List *l = v->int32_list_val;
        PUT_ARRAY(out, LEN(l), put_i64(out, l->val[i]));
        return 0;
    }
    case FEAST__TYPES__VALUE__VAL_INT64_LIST_VAL:
    case FEAST__TYPES__VALUE__VAL_INT64_SET_VAL:
    case FEAST__TYPES__VALUE__VAL_UNIX_TIMESTAMP_LIST_VAL:
    case FEAST__TYPES__VALUE__VAL_UNIX_TIMESTAMP_SET_VAL: {
        const Feast__Types__Int64List *l = v->int64_list_val;
        PUT_ARRAY(out, LEN(l), put_i64(out, l->val[i]));
        return 0;
    }
    case FEAST__TYPES__VALUE__VAL_DOUBLE_LIST_VAL:
    case FEAST__TYPES__VALUE__VAL_DOUBLE_SET_VAL:
        return put_dbl_array(out, LEN(v->double_list_val), ELEMS(v->double_list_val), st);
    case FEAST__TYPES__VALUE__VAL_FLOAT_LIST_VAL:
    case FEAST__TYPES__VALUE__VAL_FLOAT_SET_VAL:
        return put_flt_array(out, LEN(v->float_list_val), ELEMS(v->float_list_val), st);
    case FEAST__TYPES__VALUE__VAL_BOOL_LIST_VAL:
    case FEAST__TYPES__VALUE__VAL_BOOL_SET_VAL: {
        const Feast__Types__BoolList *l = v->bool_list_val;
        PUT_ARRAY(out, LEN(l), ld_buf_puts(out, l->val[i] ? "true" : "false"));
        return 0;
    }
    case FEAST__TYPES__VALUE__VAL_MAP_VAL:
        return put_map(out, v->map_val, st);
    case FEAST__TYPES__VALUE__VAL_STRUCT_VAL:
        return put_map(out, v->struct_val, st);
    case FEAST__TYPES__VALUE__VAL_MAP_LIST_VAL:
        return put_map_list(out, v->map_list_val, st);
    case FEAST__TYPES__VALUE__VAL_STRUCT_LIST_VAL:
        return put_map_list(out, v->struct_list_val, st);
    case FEAST__TYPES__VALUE__VAL_LIST_VAL:
        return put_repeated(out, v->list_val, st);
    case FEAST__TYPES__VALUE__VAL_SET_VAL:
        return put_repeated(out, v->set_val, st);
    case FEAST__TYPES__VALUE__VAL_ZONED_TIMESTAMP_VAL:
        return put_zoned(out, v->zoned_timestamp_val, st);
    default:
        return ld_status_set(st, GRPC_STATUS_INTERNAL, NULL, "cannot render value of type %d",
                             (int)v->val_case);
    }
}

int ld_value_to_json(const Feast__Types__Value *v, ld_buf *out, ld_status *st)
{
    size_t start = out->len;
    if (put_value(out, v, st) < 0) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
        return -1;
    }
    return 0;
}
