#include "ol_values.h"
#include <inttypes.h>

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ld_time.h"
#include "ld_value.h"

#define VT(x) FEAST__TYPES__VALUE_TYPE__ENUM__##x
#define VC(x) FEAST__TYPES__VALUE__VAL_##x

int ol_parse_timestamp(const char *s, int64_t *us)
{
    return ld_time_parse_iso8601(s, us);
}

int ol_value_timestamp(const Feast__Types__Value *v, const char *what, int64_t *us, ld_status *st)
{
    if (v && v->val_case == VC(STRING_VAL)) {
        if (ol_parse_timestamp(v->string_val, us) == 0)
            return 0;
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "column %s: '%s' is not an ISO 8601 timestamp", what, v->string_val);
    }
    if (v && v->val_case == VC(UNIX_TIMESTAMP_VAL)) {
        *us = v->unix_timestamp_val * 1000000;
        return 0;
    }
    return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                         "column %s must hold timestamps (ISO 8601 strings or unix timestamps)",
                         what);
}

static int parse_int(const char *s, int64_t *out)
{
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end)
        return -1;
    *out = v;
    return 0;
}

static int parse_double(const char *s, double *out)
{
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (errno || end == s || *end)
        return -1;
    *out = v;
    return 0;
}

static int fail_type(ld_status *st, const char *what, const Feast__Types__Value *in, int declared)
{
    return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                         "column %s: a %s value cannot be used where %s is declared", what,
                         ld_value_type_name((ld_value_case)in->val_case),
                         ld_value_type_name((ld_value_case)declared));
}

/* scalar -> scalar of the declared type */
static int coerce_scalar(ld_arena *a, const Feast__Types__Value *in, int declared, const char *what,
                         Feast__Types__Value **out, ld_status *st)
{
    int c = in->val_case;
    int64_t i64 = 0;
    double dbl = 0;
    int is_int = c == VC(INT64_VAL) || c == VC(INT32_VAL);
    if (c == VC(INT64_VAL))
        i64 = in->int64_val;
    if (c == VC(INT32_VAL))
        i64 = in->int32_val;
    switch (declared) {
    case VT(INT64):
    case VT(INT32):
    case VT(UNIX_TIMESTAMP):
        if (c == VC(STRING_VAL)) {
            if (declared == VT(UNIX_TIMESTAMP) && ol_parse_timestamp(in->string_val, &i64) == 0)
                i64 /= 1000000;
            else if (parse_int(in->string_val, &i64) != 0)
                return fail_type(st, what, in, declared);
        } else if (c == VC(UNIX_TIMESTAMP_VAL)) {
            i64 = in->unix_timestamp_val;
        } else if (c == VC(DOUBLE_VAL) && in->double_val == floor(in->double_val) &&
                   fabs(in->double_val) < 9.2e18) {
            i64 = (int64_t)in->double_val;
        } else if (!is_int) {
            return fail_type(st, what, in, declared);
        }
        if (declared == VT(INT32)) {
            if (i64 < INT32_MIN || i64 > INT32_MAX)
                return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                                     "column %s: %lld does not fit in Int32", what, (long long)i64);
            *out = ld_value_int32(a, (int32_t)i64);
        } else if (declared == VT(INT64)) {
            *out = ld_value_int64(a, i64);
        } else {
            *out = ld_value_unix_ts(a, i64);
        }
        break;
    case VT(DOUBLE):
    case VT(FLOAT):
        if (is_int)
            dbl = (double)i64;
        else if (c == VC(DOUBLE_VAL))
            dbl = in->double_val;
        else if (c == VC(FLOAT_VAL))
            dbl = in->float_val;
        else if (c == VC(STRING_VAL) && parse_double(in->string_val, &dbl) == 0)
            ;
        else
            return fail_type(st, what, in, declared);
        *out = declared == VT(DOUBLE) ? ld_value_double(a, dbl) : ld_value_float(a, (float)dbl);
        break;
    case VT(BOOL):
        if (c == VC(BOOL_VAL))
            *out = ld_value_bool(a, in->bool_val);
        else if (c == VC(STRING_VAL) &&
                 (!strcasecmp(in->string_val, "true") || !strcasecmp(in->string_val, "false")))
            *out = ld_value_bool(a, !strcasecmp(in->string_val, "true"));
        else if (is_int && (i64 == 0 || i64 == 1))
            *out = ld_value_bool(a, i64 == 1);
        else
            return fail_type(st, what, in, declared);
        break;
    case VT(STRING):
        if (c == VC(STRING_VAL)) {
            *out = (Feast__Types__Value *)in;
            return 0;
        }
        if (is_int) {
            char buf[32];
            int n = snprintf(buf, sizeof buf, "%lld", (long long)i64);
            *out = ld_value_string(a, buf, (size_t)n);
            break;
        }
        return fail_type(st, what, in, declared);
    case VT(BYTES):
        if (c == VC(BYTES_VAL)) {
            *out = (Feast__Types__Value *)in;
            return 0;
        }
        if (c == VC(STRING_VAL)) {
            *out = ld_value_bytes(a, in->string_val, strlen(in->string_val));
            break;
        }
        return fail_type(st, what, in, declared);
    default:
        /* types without a scalar coercion: take the value as the client typed it */
        *out = (Feast__Types__Value *)in;
        return 0;
    }
    if (!*out)
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "request too large");
    return 0;
}

int ol_coerce(ld_arena *a, const Feast__Types__Value *in, int declared, const char *what,
              Feast__Types__Value **out, ld_status *st)
{
    if (!in || in->val_case == FEAST__TYPES__VALUE__VAL__NOT_SET || in->val_case == VC(NULL_VAL)) {
        *out = ld_value_new(a);
        return *out ? 0 : ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "oom");
    }
    if ((int)in->val_case == declared || declared == VT(INVALID)) {
        *out = (Feast__Types__Value *)in; /* already the declared type */
        return 0;
    }
    /* Lists: a list of the right element type passes, otherwise refuse
     * (JSON arrays arrive as the list type of their elements). */
    if (declared >= VT(BYTES_LIST) && declared <= VT(UNIX_TIMESTAMP_LIST)) {
        int elem = declared - VT(BYTES_LIST) + VT(BYTES);
        /* an empty JSON array arrives as an empty int64 list: any list type */
        if (in->val_case == VC(INT64_LIST_VAL) &&
            (!in->int64_list_val || in->int64_list_val->n_val == 0)) {
            switch (elem) {
            case VT(BYTES):
                *out = ld_value_bytes_list(a, NULL, 0);
                break;
            case VT(STRING):
                *out = ld_value_string_list(a, NULL, 0);
                break;
            case VT(INT32):
                *out = ld_value_int32_list(a, NULL, 0);
                break;
            case VT(DOUBLE):
                *out = ld_value_double_list(a, NULL, 0);
                break;
            case VT(FLOAT):
                *out = ld_value_float_list(a, NULL, 0);
                break;
            case VT(BOOL):
                *out = ld_value_bool_list(a, NULL, 0);
                break;
            case VT(UNIX_TIMESTAMP):
                *out = ld_value_unix_ts_list(a, NULL, 0);
                break;
            default:
                *out = (Feast__Types__Value *)in;
                return 0;
            }
            return *out ? 0 : ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "oom");
        }
        /* int64 list where an int32/timestamp/float/double list is declared */
        if (in->val_case == VC(INT64_LIST_VAL) && in->int64_list_val) {
            size_t n = in->int64_list_val->n_val;
            const int64_t *v = in->int64_list_val->val;
            switch (elem) {
            case VT(INT32): {
                int32_t *x = ld_arena_calloc(a, n + 1, sizeof *x);
                for (size_t i = 0; x && i < n; i++)
                    x[i] = (int32_t)v[i];
                *out = x ? ld_value_int32_list(a, x, n) : NULL;
                break;
            }
            case VT(UNIX_TIMESTAMP):
                *out = ld_value_unix_ts_list(a, v, n);
                break;
            case VT(DOUBLE): {
                double *x = ld_arena_calloc(a, n + 1, sizeof *x);
                for (size_t i = 0; x && i < n; i++)
                    x[i] = (double)v[i];
                *out = x ? ld_value_double_list(a, x, n) : NULL;
                break;
            }
            case VT(FLOAT): {
                float *x = ld_arena_calloc(a, n + 1, sizeof *x);
                for (size_t i = 0; x && i < n; i++)
                    x[i] = (float)v[i];
                *out = x ? ld_value_float_list(a, x, n) : NULL;
                break;
            }
            default:
                return fail_type(st, what, in, declared);
            }
            return *out ? 0 : ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "oom");
        }
        if (in->val_case == VC(DOUBLE_LIST_VAL) && in->double_list_val && elem == VT(FLOAT)) {
            size_t n = in->double_list_val->n_val;
            float *x = ld_arena_calloc(a, n + 1, sizeof *x);
            for (size_t i = 0; x && i < n; i++)
                x[i] = (float)in->double_list_val->val[i];
            *out = x ? ld_value_float_list(a, x, n) : NULL;
            return *out ? 0 : ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "oom");
        }
        return fail_type(st, what, in, declared);
    }
    return coerce_scalar(a, in, declared, what, out, st);
}

int ol_value_text_of(const uint8_t *b, size_t n, ol_value_text *t, Feast__Types__Value **owned)
{
    _Static_assert(sizeof t->buf >= LD_DOUBLE_REPR_MAX, "ol_value_text.buf too small");
    memset(t, 0, sizeof *t);
    *owned = NULL;
    if (n == 0)
        return 0;
    Feast__Types__Value *v = feast__types__value__unpack(NULL, n, b);
    if (!v)
        return -1;
    *owned = v;
    switch (v->val_case) {
    case FEAST__TYPES__VALUE__VAL_STRING_VAL:
        t->text = v->string_val ? v->string_val : "";
        t->len = strlen(t->text);
        return 0;
    case FEAST__TYPES__VALUE__VAL_INT32_VAL:
        t->len = (size_t)snprintf(t->buf, sizeof t->buf, "%" PRId32, v->int32_val);
        t->has_num = 1, t->num = v->int32_val;
        break;
    case FEAST__TYPES__VALUE__VAL_INT64_VAL:
        t->len = (size_t)snprintf(t->buf, sizeof t->buf, "%" PRId64, v->int64_val);
        t->has_num = 1, t->num = (double)v->int64_val;
        break;
    case FEAST__TYPES__VALUE__VAL_DOUBLE_VAL:
        t->len = ld_value_double_repr(v->double_val, t->buf);
        t->has_num = 1, t->num = v->double_val;
        break;
    case FEAST__TYPES__VALUE__VAL_FLOAT_VAL:
        t->len = ld_value_double_repr((double)v->float_val, t->buf);
        t->has_num = 1, t->num = (double)v->float_val;
        break;
    case FEAST__TYPES__VALUE__VAL_BOOL_VAL:
        t->len = (size_t)snprintf(t->buf, sizeof t->buf, "%s", v->bool_val ? "True" : "False");
        t->has_num = 1, t->num = v->bool_val ? 1.0 : 0.0;
        break;
    default:
        return 0;
    }
    t->text = t->buf;
    return 0;
}
