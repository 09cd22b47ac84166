/* ol_json: JSON for the HTTP front end (see ol_json.h).
 *
 * The parser copies CPython's _json scanner decision for decision (3.10 to
 * 3.12, the versions Feast runs on) so that an error comes out with the same
 * message and position FastAPI would report; it is byte-based and converts a
 * byte offset to a code-point offset only when reporting. Values go into the
 * caller's arena; array items and object members are gathered on two scratch
 * stacks and copied into the arena once their container closes, so each
 * container costs one allocation.
 *
 * The response encoder renders the common scalar Values (the bulk of any
 * response) straight from their wire bytes and falls back to protobuf-c plus
 * ld_value_to_json() for everything else, with identical output. */
#include "ol_json.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ld_value.h"

#define VC(x) FEAST__TYPES__VALUE__VAL_##x

/*==== Parser ====*/

typedef struct parser {
    const unsigned char *s;
    size_t n;
    ld_arena *a;
    int depth, max_depth;
    size_t values, max_values;
    ol_json *vs; /* pending array items */
    size_t vlen, vcap;
    ol_json_member *ms; /* pending object members */
    size_t mlen, mcap;
    ld_buf tmp; /* unescaped string / number text */
    ol_json_error *err;
} parser;

static int set_err(parser *p, ol_json_error_kind kind, size_t at, const char *msg)
{
    size_t cp = 0;
    for (size_t i = 0; i < at && i < p->n; i++)
        cp += (p->s[i] & 0xc0) != 0x80;
    p->err->kind = kind;
    p->err->pos = cp;
    snprintf(p->err->msg, sizeof p->err->msg, "%s", msg);
    return -1;
}

static int syntax(parser *p, size_t at, const char *msg)
{
    return set_err(p, OL_JSON_E_SYNTAX, at, msg);
}

/* CPython's StopIteration(idx), which json.decoder turns into this. */
static int stop(parser *p, size_t at)
{
    return syntax(p, at, "Expecting value");
}

static int no_memory(parser *p)
{
    return set_err(p, OL_JSON_E_LIMIT, 0, "the request needs more memory than one call may use");
}

static int is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static size_t skip_ws(const parser *p, size_t i)
{
    while (i < p->n && is_ws(p->s[i]))
        i++;
    return i;
}

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* Strict UTF-8 (no overlongs, no surrogates, at most U+10FFFF). */
static int utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp, min;
        if (c >= 0xc2 && c <= 0xdf) {
            len = 2, cp = c & 0x1f, min = 0x80;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3, cp = c & 0x0f, min = 0x800;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (n - i < len)
            return 0;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += len;
    }
    return 1;
}

static void put_utf8(ld_buf *b, uint32_t cp)
{
    char u[4];
    if (cp >= 0xd800 && cp <= 0xdfff)
        cp = 0xfffd; /* a lone surrogate has no UTF-8 form */
    if (cp < 0x80) {
        ld_buf_putc(b, (char)cp);
    } else if (cp < 0x800) {
        u[0] = (char)(0xc0 | cp >> 6);
        u[1] = (char)(0x80 | (cp & 0x3f));
        ld_buf_append(b, u, 2);
    } else if (cp < 0x10000) {
        u[0] = (char)(0xe0 | cp >> 12);
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f));
        ld_buf_append(b, u, 3);
    } else {
        u[0] = (char)(0xf0 | cp >> 18);
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[3] = (char)(0x80 | (cp & 0x3f));
        ld_buf_append(b, u, 4);
    }
}

static int hex4(const unsigned char *s, uint32_t *out)
{
    uint32_t c = 0;
    for (int k = 0; k < 4; k++) {
        unsigned char d = s[k];
        c <<= 4;
        if (d >= '0' && d <= '9')
            c |= (uint32_t)(d - '0');
        else if (d >= 'a' && d <= 'f')
            c |= (uint32_t)(d - 'a' + 10);
        else if (d >= 'A' && d <= 'F')
            c |= (uint32_t)(d - 'A' + 10);
        else
            return -1;
    }
    *out = c;
    return 0;
}

/* A string whose opening quote is at i - 1 (CPython's scanstring_unicode). */
static int parse_string(parser *p, size_t i, size_t *next, const char **out, uint32_t *len,
                        uint8_t *has_nul)
{
    const unsigned char *s = p->s;
    size_t n = p->n, begin = i - 1, j = i;
    while (j < n && s[j] != '"' && s[j] != '\\') {
        if (s[j] <= 0x1f)
            return syntax(p, j, "Invalid control character at");
        j++;
    }
    if (j >= n)
        return syntax(p, begin, "Unterminated string starting at");
    *has_nul = 0;
    if (s[j] == '"') {
        char *c = ld_arena_strndup(p->a, (const char *)s + i, j - i);
        if (!c)
            return no_memory(p);
        *out = c;
        *len = (uint32_t)(j - i);
        *next = j + 1;
        return 0;
    }
    ld_buf_reset(&p->tmp);
    size_t end = i;
    for (;;) {
        size_t k = end;
        unsigned char c = 0;
        for (; k < n; k++) {
            c = s[k];
            if (c == '"' || c == '\\')
                break;
            if (c <= 0x1f)
                return syntax(p, k, "Invalid control character at");
        }
        if (k >= n)
            return syntax(p, begin, "Unterminated string starting at");
        ld_buf_append(&p->tmp, s + end, k - end);
        k++;
        if (c == '"') {
            end = k;
            break;
        }
        if (k == n)
            return syntax(p, begin, "Unterminated string starting at");
        c = s[k];
        if (c != 'u') {
            end = k + 1;
            char e;
            switch (c) {
            case '"':
            case '\\':
            case '/':
                e = (char)c;
                break;
            case 'b':
                e = '\b';
                break;
            case 'f':
                e = '\f';
                break;
            case 'n':
                e = '\n';
                break;
            case 'r':
                e = '\r';
                break;
            case 't':
                e = '\t';
                break;
            default:
                return syntax(p, end - 2, "Invalid \\escape");
            }
            ld_buf_putc(&p->tmp, e);
            continue;
        }
        k++;
        end = k + 4;
        uint32_t cp, lo;
        if (end >= n)
            return syntax(p, k - 1, "Invalid \\uXXXX escape");
        if (hex4(s + k, &cp) != 0)
            return syntax(p, end - 5, "Invalid \\uXXXX escape");
        if (cp >= 0xd800 && cp <= 0xdbff && end + 6 < n && s[end] == '\\' && s[end + 1] == 'u') {
            if (hex4(s + end + 2, &lo) != 0)
                return syntax(p, end + 1, "Invalid \\uXXXX escape");
            if (lo >= 0xdc00 && lo <= 0xdfff) {
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                end += 6;
            }
        }
        if (cp == 0)
            *has_nul = 1;
        put_utf8(&p->tmp, cp);
    }
    if (p->tmp.len > UINT32_MAX)
        return set_err(p, OL_JSON_E_LIMIT, begin, "a string is too long");
    char *c = ld_arena_memdup(p->a, p->tmp.len ? p->tmp.data : "", p->tmp.len + 1);
    if (!c)
        return no_memory(p);
    c[p->tmp.len] = '\0';
    *out = c;
    *len = (uint32_t)p->tmp.len;
    *next = end;
    return 0;
}

/* CPython's _match_number_unicode: the longest prefix that is a number,
 * backtracking over a dangling exponent ("1e" is the integer 1). */
static int parse_number(parser *p, size_t start, size_t *next, ol_json *out)
{
    const unsigned char *s = p->s;
    size_t idx = start, end_idx = p->n - 1;
    int is_float = 0;
    if (s[idx] == '-') {
        idx++;
        if (idx > end_idx)
            return stop(p, start);
    }
    if (s[idx] >= '1' && s[idx] <= '9') {
        idx++;
        while (idx <= end_idx && is_digit(s[idx]))
            idx++;
    } else if (s[idx] == '0') {
        idx++;
    } else {
        return stop(p, start);
    }
    if (idx < end_idx && s[idx] == '.' && is_digit(s[idx + 1])) {
        is_float = 1;
        idx += 2;
        while (idx <= end_idx && is_digit(s[idx]))
            idx++;
    }
    if (idx < end_idx && (s[idx] == 'e' || s[idx] == 'E')) {
        size_t e_start = idx++;
        if (idx < end_idx && (s[idx] == '-' || s[idx] == '+'))
            idx++;
        while (idx <= end_idx && is_digit(s[idx]))
            idx++;
        if (is_digit(s[idx - 1]))
            is_float = 1;
        else
            idx = e_start;
    }
    *next = idx;
    if (!is_float) {
        size_t k = start;
        int neg = s[k] == '-';
        k += (size_t)neg;
        uint64_t mag = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
        int big = 0;
        for (; k < idx; k++) {
            unsigned d = s[k] - '0';
            if (mag > (lim - d) / 10) {
                big = 1;
                break;
            }
            mag = mag * 10 + d;
        }
        if (!big) {
            out->type = OL_JSON_INT;
            out->u.i = neg ? (int64_t)(0 - mag) : (int64_t)mag;
            return 0;
        }
        char *c = ld_arena_strndup(p->a, (const char *)s + start, idx - start);
        if (!c)
            return no_memory(p);
        out->type = OL_JSON_BIGINT;
        out->u.s = c;
        out->n = (uint32_t)(idx - start);
        return 0;
    }
    ld_buf_reset(&p->tmp);
    ld_buf_append(&p->tmp, s + start, idx - start);
    out->type = OL_JSON_REAL;
    out->u.d = strtod(p->tmp.data, NULL); /* correctly rounded, ±inf on overflow, as Python */
    return 0;
}

static int parse_value(parser *p, size_t i, size_t *next, ol_json *out);

static int push_item(parser *p, const ol_json *v)
{
    if (p->vlen == p->vcap) {
        size_t cap = p->vcap ? p->vcap * 2 : 64;
        ol_json *x = realloc(p->vs, cap * sizeof *x);
        if (!x)
            return no_memory(p);
        p->vs = x;
        p->vcap = cap;
    }
    p->vs[p->vlen++] = *v;
    return 0;
}

static int push_member(parser *p, const ol_json_member *m)
{
    if (p->mlen == p->mcap) {
        size_t cap = p->mcap ? p->mcap * 2 : 32;
        ol_json_member *x = realloc(p->ms, cap * sizeof *x);
        if (!x)
            return no_memory(p);
        p->ms = x;
        p->mcap = cap;
    }
    p->ms[p->mlen++] = *m;
    return 0;
}

static int same_key(const ol_json_member *a, const ol_json_member *b)
{
    return a->key_len == b->key_len && memcmp(a->key, b->key, a->key_len) == 0;
}

static uint32_t key_hash(const ol_json_member *m)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (uint32_t i = 0; i < m->key_len; i++)
        h = (h ^ (unsigned char)m->key[i]) * 16777619u;
    return h;
}

/* Python dict semantics for a repeated key: the first position keeps the
 * last value. Returns the new count, or -1 when out of memory. */
static long dedupe(parser *p, ol_json_member *m, size_t n)
{
    size_t out = 0;
    if (n <= 16) {
        for (size_t i = 0; i < n; i++) {
            size_t j = 0;
            while (j < out && !same_key(&m[j], &m[i]))
                j++;
            if (j < out)
                m[j].val = m[i].val;
            else
                m[out++] = m[i];
        }
        return (long)out;
    }
    size_t cap = 32;
    while (cap < 2 * n)
        cap *= 2;
    uint32_t *slot = ld_arena_calloc(p->a, cap, sizeof *slot); /* index + 1; 0 = empty */
    if (!slot)
        return -1;
    for (size_t i = 0; i < n; i++) {
        size_t h = key_hash(&m[i]) & (cap - 1);
        while (slot[h] && !same_key(&m[slot[h] - 1], &m[i]))
            h = (h + 1) & (cap - 1);
        if (slot[h]) {
            m[slot[h] - 1].val = m[i].val;
        } else {
            m[out] = m[i];
            slot[h] = (uint32_t)++out;
        }
    }
    return (long)out;
}

static int parse_object(parser *p, size_t idx, size_t *next, ol_json *out)
{
    const unsigned char *s = p->s;
    size_t base = p->mlen, ni;
    idx = skip_ws(p, idx);
    if (idx >= p->n || s[idx] != '}') {
        for (;;) {
            ol_json_member m = {0};
            if (idx >= p->n || s[idx] != '"')
                return syntax(p, idx, "Expecting property name enclosed in double quotes");
            if (parse_string(p, idx + 1, &ni, &m.key, &m.key_len, &m.key_has_nul) != 0)
                return -1;
            idx = skip_ws(p, ni);
            if (idx >= p->n || s[idx] != ':')
                return syntax(p, idx, "Expecting ':' delimiter");
            idx = skip_ws(p, idx + 1);
            if (parse_value(p, idx, &ni, &m.val) != 0 || push_member(p, &m) != 0)
                return -1;
            idx = skip_ws(p, ni);
            if (idx < p->n && s[idx] == '}')
                break;
            if (idx >= p->n || s[idx] != ',')
                return syntax(p, idx, "Expecting ',' delimiter");
            idx = skip_ws(p, idx + 1);
        }
    }
    *next = idx + 1;
    long n = dedupe(p, p->ms + base, p->mlen - base);
    if (n < 0)
        return no_memory(p);
    out->type = OL_JSON_OBJECT;
    out->n = (uint32_t)n;
    out->u.members = NULL;
    if (n) {
        out->u.members = ld_arena_memdup(p->a, p->ms + base, (size_t)n * sizeof(ol_json_member));
        if (!out->u.members)
            return no_memory(p);
    }
    p->mlen = base;
    return 0;
}

static int parse_array(parser *p, size_t idx, size_t *next, ol_json *out)
{
    const unsigned char *s = p->s;
    size_t base = p->vlen, ni;
    idx = skip_ws(p, idx);
    if (idx >= p->n || s[idx] != ']') {
        for (;;) {
            ol_json v;
            if (parse_value(p, idx, &ni, &v) != 0 || push_item(p, &v) != 0)
                return -1;
            idx = skip_ws(p, ni);
            if (idx < p->n && s[idx] == ']')
                break;
            if (idx >= p->n || s[idx] != ',')
                return syntax(p, idx, "Expecting ',' delimiter");
            idx = skip_ws(p, idx + 1);
        }
    }
    *next = idx + 1;
    size_t n = p->vlen - base;
    out->type = OL_JSON_ARRAY;
    out->n = (uint32_t)n;
    out->u.items = NULL;
    if (n) {
        out->u.items = ld_arena_memdup(p->a, p->vs + base, n * sizeof(ol_json));
        if (!out->u.items)
            return no_memory(p);
    }
    p->vlen = base;
    return 0;
}

static int word_at(const parser *p, size_t i, const char *w)
{
    size_t k = strlen(w);
    return i + k <= p->n && memcmp(p->s + i, w, k) == 0;
}

/* CPython's scan_once_unicode. */
static int parse_value(parser *p, size_t i, size_t *next, ol_json *out)
{
    memset(out, 0, sizeof *out);
    if (i >= p->n)
        return stop(p, i);
    if (++p->values > p->max_values)
        return set_err(p, OL_JSON_E_LIMIT, i, "the request holds too many JSON values");
    int rc;
    switch (p->s[i]) {
    case '"':
        out->type = OL_JSON_STRING;
        return parse_string(p, i + 1, next, &out->u.s, &out->n, &out->has_nul);
    case '{':
    case '[':
        /* Python raises RecursionError here, which FastAPI answers with 400 */
        if (++p->depth > p->max_depth)
            return set_err(p, OL_JSON_E_BODY, i, "the request nests JSON too deeply");
        rc = p->s[i] == '{' ? parse_object(p, i + 1, next, out) : parse_array(p, i + 1, next, out);
        p->depth--;
        return rc;
    case 'n':
        if (word_at(p, i, "null")) {
            out->type = OL_JSON_NULL;
            *next = i + 4;
            return 0;
        }
        break;
    case 't':
        if (word_at(p, i, "true")) {
            out->type = OL_JSON_TRUE;
            *next = i + 4;
            return 0;
        }
        break;
    case 'f':
        if (word_at(p, i, "false")) {
            out->type = OL_JSON_FALSE;
            *next = i + 5;
            return 0;
        }
        break;
    case 'N':
        if (word_at(p, i, "NaN")) {
            out->type = OL_JSON_REAL;
            out->u.d = NAN;
            *next = i + 3;
            return 0;
        }
        break;
    case 'I':
        if (word_at(p, i, "Infinity")) {
            out->type = OL_JSON_REAL;
            out->u.d = INFINITY;
            *next = i + 8;
            return 0;
        }
        break;
    case '-':
        if (word_at(p, i, "-Infinity")) {
            out->type = OL_JSON_REAL;
            out->u.d = -INFINITY;
            *next = i + 9;
            return 0;
        }
        break;
    default:
        break;
    }
    return parse_number(p, i, next, out);
}

int ol_json_parse(const char *data, size_t n, ld_arena *a, const ol_json_limits *lim, ol_json **out,
                  ol_json_error *err)
{
    const unsigned char *s = (const unsigned char *)data;
    memset(err, 0, sizeof *err);
    *out = NULL;
    /* json.loads(bytes): a UTF-8 BOM selects utf-8-sig; zero bytes up front
     * mean UTF-16/32, which larder does not decode (FastAPI would). */
    if (n >= 3 && s[0] == 0xef && s[1] == 0xbb && s[2] == 0xbf) {
        s += 3;
        n -= 3;
    }
    parser p = {.s = s, .n = n, .a = a, .err = err};
    p.max_depth = lim && lim->max_depth > 0 ? lim->max_depth : 64;
    p.max_values = lim && lim->max_values > 0 ? lim->max_values : 1000000;
    if (n > UINT32_MAX)
        return set_err(&p, OL_JSON_E_LIMIT, 0, "the request body is too large");
    if ((n >= 2 && (s[0] == 0 || s[1] == 0)) || !utf8_valid(s, n))
        return set_err(&p, OL_JSON_E_BODY, 0, "the request body is not UTF-8");
    ol_json *root = ld_arena_alloc(a, sizeof *root);
    if (!root)
        return no_memory(&p);
    size_t end;
    int rc = parse_value(&p, skip_ws(&p, 0), &end, root);
    if (rc == 0) {
        end = skip_ws(&p, end);
        if (end != n)
            rc = syntax(&p, end, "Extra data");
    }
    free(p.vs);
    free(p.ms);
    ld_buf_free(&p.tmp);
    if (rc == 0)
        *out = root;
    return rc;
}

const ol_json *ol_json_get(const ol_json *v, const char *key)
{
    if (!v || v->type != OL_JSON_OBJECT)
        return NULL;
    size_t len = strlen(key);
    for (uint32_t i = 0; i < v->n; i++) {
        const ol_json_member *m = &v->u.members[i];
        if (m->key_len == len && memcmp(m->key, key, len) == 0)
            return &m->val;
    }
    return NULL;
}

static void put_i64(ld_buf *out, int64_t x)
{
    ld_buf_put_i64(out, x);
}

void ol_json_write(ld_buf *out, const ol_json *v)
{
    char buf[LD_DOUBLE_REPR_MAX];
    switch ((ol_json_type)v->type) {
    case OL_JSON_NULL:
        ld_buf_append(out, "null", 4);
        return;
    case OL_JSON_FALSE:
        ld_buf_append(out, "false", 5);
        return;
    case OL_JSON_TRUE:
        ld_buf_append(out, "true", 4);
        return;
    case OL_JSON_INT:
        put_i64(out, v->u.i);
        return;
    case OL_JSON_BIGINT:
        ld_buf_append(out, v->u.s, v->n);
        return;
    case OL_JSON_REAL:
        if (!isfinite(v->u.d)) {
            ld_buf_append(out, "null", 4);
            return;
        }
        ld_buf_append(out, buf, ld_value_double_repr(v->u.d, buf));
        return;
    case OL_JSON_STRING:
        ld_buf_json_str(out, v->u.s, v->n, 0);
        return;
    case OL_JSON_ARRAY:
        ld_buf_putc(out, '[');
        for (uint32_t i = 0; i < v->n; i++) {
            if (i)
                ld_buf_putc(out, ',');
            ol_json_write(out, &v->u.items[i]);
        }
        ld_buf_putc(out, ']');
        return;
    case OL_JSON_OBJECT:
        ld_buf_putc(out, '{');
        for (uint32_t i = 0; i < v->n; i++) {
            if (i)
                ld_buf_putc(out, ',');
            ld_buf_json_str(out, v->u.members[i].key, v->u.members[i].key_len, 0);
            ld_buf_putc(out, ':');
            ol_json_write(out, &v->u.members[i].val);
        }
        ld_buf_putc(out, '}');
        return;
    }
}

/*==== JSON -> feast.types.Value ====*/

static int value_error(ld_status *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A bad value is the client's fault, so INVALID_ARGUMENT (HTTP 422); Feast
 * itself raises a plain ValueError/TypeError there (HTTP 500, the message as
 * the body), hence builtins.ValueError. */
static int value_error(ld_status *st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ld_status_setv(st, GRPC_STATUS_INVALID_ARGUMENT, "ValueError", fmt, ap);
    va_end(ap);
    st->err_module = "builtins";
    return -1;
}

static int oom(ld_status *st)
{
    return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL,
                         "the request needs more memory than one call may use");
}

static const char *json_type_name(const ol_json *v)
{
    switch ((ol_json_type)v->type) {
    case OL_JSON_NULL:
        return "null";
    case OL_JSON_FALSE:
    case OL_JSON_TRUE:
        return "bool";
    case OL_JSON_INT:
    case OL_JSON_BIGINT:
        return "int";
    case OL_JSON_REAL:
        return "float";
    case OL_JSON_STRING:
        return "str";
    case OL_JSON_ARRAY:
        return "list";
    case OL_JSON_OBJECT:
        return "dict";
    }
    return "?";
}

static int is_bool(const ol_json *v)
{
    return v->type == OL_JSON_TRUE || v->type == OL_JSON_FALSE;
}

static int map_from_object(const ol_json *v, ld_arena *a, const char *what, Feast__Types__Map **out,
                           ld_status *st)
{
    Feast__Types__Map *m = ld_arena_alloc(a, sizeof *m);
    Feast__Types__Map__ValEntry **ents = ld_arena_calloc(a, v->n + 1, sizeof *ents);
    if (!m || !ents)
        return oom(st);
    feast__types__map__init(m);
    for (uint32_t i = 0; i < v->n; i++) {
        const ol_json_member *mem = &v->u.members[i];
        if (mem->key_has_nul)
            return value_error(st, "%s: a map key holds U+0000", what);
        Feast__Types__Map__ValEntry *e = ld_arena_alloc(a, sizeof *e);
        if (!e)
            return oom(st);
        feast__types__map__val_entry__init(e);
        e->key = (char *)mem->key;
        if (ol_json_value(&mem->val, a, what, &e->value, st) != 0)
            return -1;
        ents[i] = e;
    }
    m->n_val = v->n;
    m->val = ents;
    *out = m;
    return 0;
}

static int list_value(const ol_json *v, ld_arena *a, const char *what, Feast__Types__Value *out,
                      ld_status *st)
{
    size_t n = v->n;
    const ol_json *it = v->u.items;
    int n_int = 0, n_real = 0, n_bool = 0, n_str = 0, n_arr = 0, n_obj = 0;
    for (size_t i = 0; i < n; i++) {
        switch ((ol_json_type)it[i].type) {
        case OL_JSON_NULL:
            return value_error(st,
                               "%s: a list holds null at index %zu; Feast lists cannot hold "
                               "nulls",
                               what, i);
        case OL_JSON_BIGINT:
            return value_error(st, "%s: Value out of range: %.*s", what, (int)it[i].n, it[i].u.s);
        case OL_JSON_FALSE:
        case OL_JSON_TRUE:
            n_bool++;
            break;
        case OL_JSON_INT:
            n_int++;
            break;
        case OL_JSON_REAL:
            n_real++;
            break;
        case OL_JSON_STRING:
            if (it[i].has_nul)
                return value_error(st, "%s: a string holds U+0000", what);
            n_str++;
            break;
        case OL_JSON_ARRAY:
            n_arr++;
            break;
        case OL_JSON_OBJECT:
            n_obj++;
            break;
        }
    }
    if ((size_t)(n_int + n_real) == n && n_real) {
        Feast__Types__DoubleList *l = ld_arena_alloc(a, sizeof *l);
        double *x = ld_arena_calloc(a, n, sizeof *x);
        if (!l || !x)
            return oom(st);
        feast__types__double_list__init(l);
        for (size_t i = 0; i < n; i++)
            x[i] = it[i].type == OL_JSON_INT ? (double)it[i].u.i : it[i].u.d;
        l->n_val = n;
        l->val = x;
        out->val_case = VC(DOUBLE_LIST_VAL);
        out->double_list_val = l;
    } else if ((size_t)n_int == n) { /* also the empty list */
        Feast__Types__Int64List *l = ld_arena_alloc(a, sizeof *l);
        int64_t *x = ld_arena_calloc(a, n + 1, sizeof *x);
        if (!l || !x)
            return oom(st);
        feast__types__int64_list__init(l);
        for (size_t i = 0; i < n; i++)
            x[i] = it[i].u.i;
        l->n_val = n;
        l->val = n ? x : NULL;
        out->val_case = VC(INT64_LIST_VAL);
        out->int64_list_val = l;
    } else if ((size_t)n_bool == n) {
        Feast__Types__BoolList *l = ld_arena_alloc(a, sizeof *l);
        protobuf_c_boolean *x = ld_arena_calloc(a, n, sizeof *x);
        if (!l || !x)
            return oom(st);
        feast__types__bool_list__init(l);
        for (size_t i = 0; i < n; i++)
            x[i] = it[i].type == OL_JSON_TRUE;
        l->n_val = n;
        l->val = x;
        out->val_case = VC(BOOL_LIST_VAL);
        out->bool_list_val = l;
    } else if ((size_t)n_str == n) {
        Feast__Types__StringList *l = ld_arena_alloc(a, sizeof *l);
        char **x = ld_arena_calloc(a, n, sizeof *x);
        if (!l || !x)
            return oom(st);
        feast__types__string_list__init(l);
        for (size_t i = 0; i < n; i++)
            x[i] = (char *)it[i].u.s;
        l->n_val = n;
        l->val = x;
        out->val_case = VC(STRING_LIST_VAL);
        out->string_list_val = l;
    } else if ((size_t)n_arr == n) {
        Feast__Types__RepeatedValue *l = ld_arena_alloc(a, sizeof *l);
        Feast__Types__Value **x = ld_arena_calloc(a, n, sizeof *x);
        if (!l || !x)
            return oom(st);
        feast__types__repeated_value__init(l);
        for (size_t i = 0; i < n; i++)
            if (ol_json_value(&it[i], a, what, &x[i], st) != 0)
                return -1;
        l->n_val = n;
        l->val = x;
        out->val_case = VC(LIST_VAL);
        out->list_val = l;
    } else if ((size_t)n_obj == n) {
        Feast__Types__MapList *l = ld_arena_alloc(a, sizeof *l);
        Feast__Types__Map **x = ld_arena_calloc(a, n, sizeof *x);
        if (!l || !x)
            return oom(st);
        feast__types__map_list__init(l);
        for (size_t i = 0; i < n; i++)
            if (map_from_object(&it[i], a, what, &x[i], st) != 0)
                return -1;
        l->n_val = n;
        l->val = x;
        out->val_case = VC(MAP_LIST_VAL);
        out->map_list_val = l;
    } else {
        const char *first = json_type_name(&it[0]);
        size_t k = 1;
        while (k < n &&
               (strcmp(json_type_name(&it[k]), first) == 0 || (is_bool(&it[k]) && is_bool(&it[0]))))
            k++;
        return value_error(st, "%s: a list mixes %s and %s values", what, first,
                           json_type_name(&it[k < n ? k : 0]));
    }
    return 0;
}

int ol_json_value(const ol_json *v, ld_arena *a, const char *what, Feast__Types__Value **out,
                  ld_status *st)
{
    Feast__Types__Value *x = ld_value_new(a);
    if (!x)
        return oom(st);
    switch ((ol_json_type)v->type) {
    case OL_JSON_NULL:
        break;
    case OL_JSON_FALSE:
    case OL_JSON_TRUE:
        x->val_case = VC(BOOL_VAL);
        x->bool_val = v->type == OL_JSON_TRUE;
        break;
    case OL_JSON_INT:
        x->val_case = VC(INT64_VAL);
        x->int64_val = v->u.i;
        break;
    case OL_JSON_BIGINT:
        return value_error(st, "%s: Value out of range: %.*s", what, (int)v->n, v->u.s);
    case OL_JSON_REAL:
        x->val_case = VC(DOUBLE_VAL);
        x->double_val = v->u.d;
        break;
    case OL_JSON_STRING:
        if (v->has_nul)
            return value_error(st, "%s: a string holds U+0000", what);
        x->val_case = VC(STRING_VAL);
        x->string_val = (char *)v->u.s; /* already NUL-terminated in the arena */
        break;
    case OL_JSON_ARRAY:
        if (list_value(v, a, what, x, st) != 0)
            return -1;
        break;
    case OL_JSON_OBJECT:
        x->val_case = VC(MAP_VAL);
        if (map_from_object(v, a, what, &x->map_val, st) != 0)
            return -1;
        break;
    }
    *out = x;
    return 0;
}

/*==== FastAPI / pydantic request validation ====*/

/* One step of a pydantic "loc": an object key or an array index. */
typedef struct loc_seg {
    const char *key; /* NULL: index */
    size_t len;
    size_t idx;
} loc_seg;

static void put_item(ld_buf *d, const char *type, const loc_seg *loc, int nloc, const char *msg,
                     const ol_json *input)
{
    if (d->len)
        ld_buf_putc(d, ',');
    ld_buf_puts(d, "{\"type\":\"");
    ld_buf_puts(d, type);
    ld_buf_puts(d, "\",\"loc\":[\"body\"");
    for (int i = 0; i < nloc; i++) {
        ld_buf_putc(d, ',');
        if (loc[i].key)
            ld_buf_json_str(d, loc[i].key, loc[i].len, 0);
        else
            ld_buf_printf(d, "%zu", loc[i].idx);
    }
    ld_buf_puts(d, "],\"msg\":\"");
    ld_buf_puts(d, msg);
    ld_buf_puts(d, "\",\"input\":");
    if (input)
        ol_json_write(d, input);
    else
        ld_buf_puts(d, "null");
    ld_buf_putc(d, '}');
}

static void put_field_item(ld_buf *d, const char *type, const char *field, const char *msg,
                           const ol_json *input)
{
    loc_seg loc = {field, strlen(field), 0};
    put_item(d, type, &loc, 1, msg, input);
}

static const char MSG_MISSING[] = "Field required";
static const char MSG_DICT[] = "Input should be a valid dictionary";
static const char MSG_LIST[] = "Input should be a valid list";
static const char MSG_STR[] = "Input should be a valid string";
static const char MSG_BOOL[] = "Input should be a valid boolean";
static const char MSG_BOOL_PARSE[] = "Input should be a valid boolean, unable to interpret input";
static const char MSG_MODEL[] = "Input should be a valid dictionary or object to extract fields "
                                "from";

/* The body itself: FastAPI validates it with from_attributes=True. */
static int check_model(const ol_json *body, ld_buf *d)
{
    if (!body || body->type == OL_JSON_NULL) {
        put_item(d, "missing", NULL, 0, MSG_MISSING, NULL);
        return -1;
    }
    if (body->type != OL_JSON_OBJECT) {
        put_item(d, "model_attributes_type", NULL, 0, MSG_MODEL, body);
        return -1;
    }
    return 0;
}

/* pydantic's lax bool: true/false, 0/1, 0.0/1.0, and the usual words.
 * Return: 0, 1 (bool_parsing) or 2 (bool_type). */
static int bool_of(const ol_json *v, int *out)
{
    static const char *const yes[] = {"1", "on", "t", "true", "y", "yes"};
    static const char *const no[] = {"0", "off", "f", "false", "n", "no"};
    switch ((ol_json_type)v->type) {
    case OL_JSON_TRUE:
    case OL_JSON_FALSE:
        *out = v->type == OL_JSON_TRUE;
        return 0;
    case OL_JSON_INT:
        if (v->u.i == 0 || v->u.i == 1) {
            *out = (int)v->u.i;
            return 0;
        }
        return 1;
    case OL_JSON_REAL: /* other floats, and ints beyond int64, are "not a bool" */
        if (v->u.d == 0.0 || v->u.d == 1.0) {
            *out = v->u.d == 1.0;
            return 0;
        }
        return 2;
    case OL_JSON_BIGINT:
        return 2;
    case OL_JSON_STRING: {
        char low[8];
        if (v->n >= sizeof low)
            return 1;
        for (uint32_t i = 0; i <= v->n; i++)
            low[i] = (char)(v->u.s[i] >= 'A' && v->u.s[i] <= 'Z' ? v->u.s[i] + 32 : v->u.s[i]);
        for (size_t i = 0; i < 6; i++) {
            if (strcmp(low, yes[i]) == 0) {
                *out = 1;
                return 0;
            }
            if (strcmp(low, no[i]) == 0) {
                *out = 0;
                return 0;
            }
        }
        return 1;
    }
    default:
        return 2;
    }
}

static void check_bool(const ol_json *body, const char *field, int dflt, int *out, ld_buf *d)
{
    const ol_json *v = ol_json_get(body, field);
    *out = dflt;
    if (!v)
        return;
    int rc = bool_of(v, out);
    if (rc == 1)
        put_field_item(d, "bool_parsing", field, MSG_BOOL_PARSE, v);
    else if (rc == 2)
        put_field_item(d, "bool_type", field, MSG_BOOL, v);
}

/* str (required) or Optional[str] / str with a default (!required). */
static const ol_json *check_str(const ol_json *body, const char *field, int required, int nullable,
                                ld_buf *d)
{
    const ol_json *v = ol_json_get(body, field);
    if (!v) {
        if (required)
            put_field_item(d, "missing", field, MSG_MISSING, body);
        return NULL;
    }
    if (v->type == OL_JSON_STRING)
        return v;
    if (!(nullable && v->type == OL_JSON_NULL))
        put_field_item(d, "string_type", field, MSG_STR, v);
    return NULL;
}

/* Dict[str, List[Any]] */
static const ol_json *check_columns(const ol_json *body, const char *field, int required,
                                    int nullable, ld_buf *d)
{
    const ol_json *v = ol_json_get(body, field);
    if (!v) {
        if (required)
            put_field_item(d, "missing", field, MSG_MISSING, body);
        return NULL;
    }
    if (nullable && v->type == OL_JSON_NULL)
        return NULL;
    if (v->type != OL_JSON_OBJECT) {
        put_field_item(d, "dict_type", field, MSG_DICT, v);
        return NULL;
    }
    int ok = 1;
    for (uint32_t i = 0; i < v->n; i++) {
        const ol_json_member *m = &v->u.members[i];
        if (m->val.type != OL_JSON_ARRAY) {
            loc_seg loc[2] = {{field, strlen(field), 0}, {m->key, m->key_len, 0}};
            put_item(d, "list_type", loc, 2, MSG_LIST, &m->val);
            ok = 0;
        }
    }
    return ok ? v : NULL;
}

static int invalid(ld_status *st)
{
    return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                         "the request body does not match the API's schema");
}

static int column_name(const ol_json_member *m, ld_status *st)
{
    if (m->key_has_nul)
        return value_error(st, "a column name holds U+0000");
    return 0;
}

/* Entity-style columns: every value of an array, typed by ol_json_value. */
static int decode_columns(const ol_json *obj, ld_arena *a, ol_column_in **out, size_t *n_out,
                          ld_status *st)
{
    *out = NULL;
    *n_out = 0;
    if (!obj || !obj->n)
        return 0;
    ol_column_in *cols = ld_arena_calloc(a, obj->n, sizeof *cols);
    if (!cols)
        return oom(st);
    for (uint32_t i = 0; i < obj->n; i++) {
        const ol_json_member *m = &obj->u.members[i];
        if (column_name(m, st) != 0)
            return -1;
        cols[i].name = m->key;
        cols[i].n = m->val.n;
        cols[i].values = ld_arena_calloc(a, m->val.n + 1, sizeof *cols[i].values);
        if (!cols[i].values)
            return oom(st);
        for (uint32_t r = 0; r < m->val.n; r++)
            if (ol_json_value(&m->val.u.items[r], a, m->key, &cols[i].values[r], st) != 0)
                return -1;
    }
    *out = cols;
    *n_out = obj->n;
    return 0;
}

int ol_json_decode_get(const ol_json *body, ld_arena *a, ol_get_request *req, ld_buf *detail,
                       ld_status *st)
{
    memset(req, 0, sizeof *req);
    size_t d0 = detail->len;
    if (check_model(body, detail) != 0)
        return invalid(st);
    /* pydantic reports the fields in declaration order */
    const ol_json *ent = check_columns(body, "entities", 1, 0, detail);
    const ol_json *fs = check_str(body, "feature_service", 0, 1, detail);
    const ol_json *feats = ol_json_get(body, "features");
    if (feats && feats->type != OL_JSON_ARRAY) {
        put_field_item(detail, "list_type", "features", MSG_LIST, feats);
        feats = NULL;
    }
    for (uint32_t i = 0; feats && i < feats->n; i++) {
        if (feats->u.items[i].type != OL_JSON_STRING) {
            loc_seg loc[2] = {{"features", 8, 0}, {NULL, 0, i}};
            put_item(detail, "string_type", loc, 2, MSG_STR, &feats->u.items[i]);
        }
    }
    int ffn, meta;
    check_bool(body, "full_feature_names", 0, &ffn, detail);
    check_bool(body, "include_feature_view_version_metadata", 0, &meta, detail);
    const ol_json *ctx = check_columns(body, "request_context", 0, 1, detail);
    if (detail->len != d0)
        return invalid(st);

    req->full_feature_names = ffn;
    if (fs) {
        if (fs->has_nul)
            return value_error(st, "feature_service holds U+0000");
        req->feature_service = fs->u.s;
    }
    if (feats && feats->n) {
        const char **f = ld_arena_calloc(a, feats->n, sizeof *f);
        if (!f)
            return oom(st);
        for (uint32_t i = 0; i < feats->n; i++) {
            if (feats->u.items[i].has_nul)
                return value_error(st, "a feature reference holds U+0000");
            f[i] = feats->u.items[i].u.s;
        }
        req->features = f;
        req->n_features = feats->n;
    }
    if (decode_columns(ent, a, &req->entities, &req->n_entities, st) != 0 ||
        decode_columns(ctx, a, &req->request_context, &req->n_request_context, st) != 0)
        return -1;
    /* utils._validate_entity_values; request data rides along the entity rows */
    size_t rows = req->n_entities ? req->entities[0].n : 0;
    int have_rows = req->n_entities > 0;
    for (size_t i = 0; i < req->n_request_context; i++) {
        if (!have_rows) {
            rows = req->request_context[i].n;
            have_rows = 1;
        }
        if (req->request_context[i].n != rows)
            return value_error(st, "All entity rows must have the same columns.");
    }
    for (size_t i = 1; i < req->n_entities; i++)
        if (req->entities[i].n != rows)
            return value_error(st, "All entity rows must have the same columns.");
    return 0;
}

/* pandas.DataFrame(dict): lists are columns, scalars are broadcast. */
static int decode_df(const ol_json *df, ld_arena *a, ol_write_request *req, ld_status *st)
{
    size_t rows = 0;
    int have_rows = 0;
    for (uint32_t i = 0; i < df->n; i++) {
        const ol_json_member *m = &df->u.members[i];
        if (column_name(m, st) != 0)
            return -1;
        if (m->val.type == OL_JSON_OBJECT)
            return value_error(st,
                               "df column %s is a JSON object; give each column as a list of "
                               "values (DataFrame.to_dict(orient=\"list\"))",
                               m->key);
        if (m->val.type != OL_JSON_ARRAY)
            continue;
        if (have_rows && m->val.n != rows)
            return value_error(st, "All arrays must be of the same length");
        rows = m->val.n;
        have_rows = 1;
    }
    if (df->n && !have_rows)
        return value_error(st, "If using all scalar values, you must pass an index");
    if (!df->n)
        return 0;
    ol_column_in *cols = ld_arena_calloc(a, df->n, sizeof *cols);
    if (!cols)
        return oom(st);
    for (uint32_t i = 0; i < df->n; i++) {
        const ol_json_member *m = &df->u.members[i];
        cols[i].name = m->key;
        cols[i].n = rows;
        cols[i].values = ld_arena_calloc(a, rows + 1, sizeof *cols[i].values);
        if (!cols[i].values)
            return oom(st);
        if (m->val.type == OL_JSON_ARRAY) {
            for (size_t r = 0; r < rows; r++)
                if (ol_json_value(&m->val.u.items[r], a, m->key, &cols[i].values[r], st) != 0)
                    return -1;
        } else {
            Feast__Types__Value *one;
            if (ol_json_value(&m->val, a, m->key, &one, st) != 0)
                return -1;
            for (size_t r = 0; r < rows; r++)
                cols[i].values[r] = one;
        }
    }
    req->columns = cols;
    req->n_columns = df->n;
    return 0;
}

int ol_json_decode_write(const ol_json *body, int push, ld_arena *a, ol_write_request *req,
                         ld_buf *detail, ld_status *st)
{
    memset(req, 0, sizeof *req);
    size_t d0 = detail->len;
    if (check_model(body, detail) != 0)
        return invalid(st);
    const ol_json *name =
            check_str(body, push ? "push_source_name" : "feature_view_name", 1, 0, detail);
    const ol_json *df = ol_json_get(body, "df");
    if (!df)
        put_field_item(detail, "missing", "df", MSG_MISSING, body);
    else if (df->type != OL_JSON_OBJECT)
        put_field_item(detail, "dict_type", "df", MSG_DICT, df);
    int cache, tow;
    check_bool(body, "allow_registry_cache", 1, &cache, detail);
    const ol_json *to = push ? check_str(body, "to", 0, 0, detail) : NULL;
    check_bool(body, "transform_on_write", 1, &tow, detail);
    if (detail->len != d0)
        return invalid(st);

    if (name->has_nul)
        return value_error(st, "the name holds U+0000");
    if (push) {
        req->push_source_name = name->u.s;
        const char *t = to ? to->u.s : "online";
        if (to && to->has_nul)
            t = "";
        if (strcmp(t, "online") == 0) {
            req->to_online = 1;
        } else if (strcmp(t, "offline") == 0) {
            req->to_offline = 1;
        } else if (strcmp(t, "online_and_offline") == 0) {
            req->to_online = req->to_offline = 1;
        } else {
            return value_error(st,
                               "%s is not a supported push format. Please specify one of these "
                               "['online', 'offline', 'online_and_offline'].",
                               t);
        }
    } else {
        req->feature_view_name = name->u.s;
        req->to_online = 1;
    }
    req->allow_registry_cache = cache;
    return decode_df(df, a, req, st);
}

/*==== Error bodies ====*/

void ol_json_detail_decode_error(ld_buf *detail, const ol_json_error *e)
{
    if (detail->len)
        ld_buf_putc(detail, ',');
    ld_buf_printf(detail,
                  "{\"type\":\"json_invalid\",\"loc\":[\"body\",%zu],\"msg\":\"JSON decode "
                  "error\",\"input\":{},\"ctx\":{\"error\":",
                  e->pos);
    ld_buf_json_str(detail, e->msg, strlen(e->msg), 0);
    ld_buf_puts(detail, "}}");
}

void ol_json_detail_not_json(ld_buf *detail, const char *body, size_t n)
{
    if (detail->len)
        ld_buf_putc(detail, ',');
    ld_buf_puts(detail, "{\"type\":\"model_attributes_type\",\"loc\":[\"body\"],\"msg\":\"");
    ld_buf_puts(detail, MSG_MODEL);
    ld_buf_puts(detail, "\",\"input\":");
    ld_buf_json_str(detail, body, n, 0);
    ld_buf_putc(detail, '}');
}

void ol_json_detail_body(ld_buf *out, const ld_buf *detail)
{
    ld_buf_puts(out, "{\"detail\":[");
    ld_buf_append(out, detail->data ? detail->data : "", detail->len);
    ld_buf_puts(out, "]}");
}

void ol_json_error_body(const ld_status *st, ld_buf *out)
{
    const char *mod = ld_status_module(st);
    if (strcmp(mod, "builtins") == 0) {
        ld_buf_json_str(out, st->msg, strlen(st->msg), 0);
        return;
    }
    ld_buf inner = LD_BUF_INIT;
    ld_status_feast_json(st, &inner);
    ld_buf_json_str(out, inner.data, inner.len, 0);
    ld_buf_free(&inner);
}

/*==== Responses ====*/

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

static char *put_digits(char *p, unsigned v, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return p + width;
}

size_t ol_json_timestamp(int64_t us, char out[OL_JSON_TS_MAX])
{
    if (us == 0) {
        memcpy(out, "1970-01-01T00:00:00Z", 21);
        return 20;
    }
    int64_t secs = us / 1000000, frac = us % 1000000;
    if (frac < 0) {
        frac += 1000000;
        secs--;
    }
    int64_t days = secs / 86400, sod = secs % 86400;
    if (sod < 0) {
        sod += 86400;
        days--;
    }
    int64_t y;
    unsigned mo, d;
    civil_from_days(days, &y, &mo, &d);
    if (y < 1 || y > 9999) {
        out[0] = '\0';
        return 0;
    }
    /* by hand: this runs once per cell. strftime's %Y is not zero-padded
     * below year 1000 (glibc, so Python on Linux). */
    char *p = out;
    p = put_digits(p, (unsigned)y, y >= 1000 ? 4 : y >= 100 ? 3 : y >= 10 ? 2 : 1);
    *p++ = '-';
    p = put_digits(p, mo, 2);
    *p++ = '-';
    p = put_digits(p, d, 2);
    *p++ = 'T';
    p = put_digits(p, (unsigned)(sod / 3600), 2);
    *p++ = ':';
    p = put_digits(p, (unsigned)(sod / 60 % 60), 2);
    *p++ = ':';
    p = put_digits(p, (unsigned)(sod % 60), 2);
    if (frac % 1000 == 0 && frac) {
        *p++ = '.';
        p = put_digits(p, (unsigned)(frac / 1000), 3);
    } else if (frac) {
        *p++ = '.';
        p = put_digits(p, (unsigned)frac, 6);
    }
    *p++ = 'Z';
    *p = '\0';
    return (size_t)(p - out);
}

static int varint(const uint8_t *p, size_t n, size_t *i, uint64_t *v)
{
    uint64_t r = 0;
    for (unsigned shift = 0; *i < n && shift < 64; shift += 7) {
        uint8_t b = p[(*i)++];
        r |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = r;
            return 0;
        }
    }
    return -1;
}

static int nan_error(ld_status *st, const char *repr)
{
    ld_status_set(st, GRPC_STATUS_INTERNAL, "ValueError",
                  "Out of range float values are not JSON compliant: %s", repr);
    st->err_module = "builtins";
    return -1;
}

static int put_double(ld_buf *out, double d, ld_status *st)
{
    char *w = ld_buf_reserve(out, LD_DOUBLE_REPR_MAX);
    size_t n = ld_value_double_repr(d, w);
    if (!isfinite(d)) {
        w[0] = '\0';
        char repr[LD_DOUBLE_REPR_MAX];
        ld_value_double_repr(d, repr);
        return nan_error(st, repr);
    }
    out->len += n;
    return 0;
}

/* The single-field Values ld_value_to_json() would render trivially, read
 * straight off the wire. Return: 1 rendered, 0 not such a Value, -1 error. */
static int fast_value(ld_buf *out, const uint8_t *p, size_t n, ld_status *st)
{
    size_t i = 1;
    uint64_t v;
    switch (p[0]) {
    case 0x12: /* string_val */
        if (varint(p, n, &i, &v) != 0 || v != n - i)
            return 0;
        {
            const uint8_t *z = memchr(p + i, 0, v); /* protobuf-c's C string ends there */
            ld_buf_json_str(out, (const char *)p + i, z ? (size_t)(z - (p + i)) : v, 0);
        }
        return 1;
    case 0x18: /* int32_val */
        if (varint(p, n, &i, &v) != 0 || i != n)
            return 0;
        put_i64(out, (int32_t)(uint32_t)v);
        return 1;
    case 0x20: /* int64_val */
    case 0x40: /* unix_timestamp_val */
        if (varint(p, n, &i, &v) != 0 || i != n)
            return 0;
        put_i64(out, (int64_t)v);
        return 1;
    case 0x38: /* bool_val */
        if (varint(p, n, &i, &v) != 0 || i != n)
            return 0;
        if (v)
            ld_buf_append(out, "true", 4);
        else
            ld_buf_append(out, "false", 5);
        return 1;
    case 0x29: /* double_val */
        if (n != 9)
            return 0;
        {
            uint64_t bits = 0;
            for (int k = 7; k >= 0; k--)
                bits = bits << 8 | p[1 + k];
            double d;
            memcpy(&d, &bits, sizeof d);
            return put_double(out, d, st) == 0 ? 1 : -1;
        }
    case 0x35: /* float_val */
        if (n != 5)
            return 0;
        {
            uint32_t bits = (uint32_t)p[1] | (uint32_t)p[2] << 8 | (uint32_t)p[3] << 16 |
                            (uint32_t)p[4] << 24;
            float f;
            memcpy(&f, &bits, sizeof f);
            return put_double(out, (double)f, st) == 0 ? 1 : -1;
        }
    case 0x98: /* null_val */
        if (n < 2 || p[1] != 0x01)
            return 0;
        i = 2;
        if (varint(p, n, &i, &v) != 0 || i != n)
            return 0;
        ld_buf_append(out, "null", 4);
        return 1;
    default:
        return 0;
    }
}

int ol_json_value_bytes(ld_buf *out, const uint8_t *p, size_t n, ld_arena *scratch, ld_status *st)
{
    if (!p || n == 0) {
        ld_buf_append(out, "null", 4);
        return 0;
    }
    int rc = fast_value(out, p, n, st);
    if (rc != 0)
        return rc > 0 ? 0 : -1;
    Feast__Types__Value *v = feast__types__value__unpack(ld_arena_pbc(scratch), n, p);
    if (!v)
        return ld_status_set(st, GRPC_STATUS_INTERNAL, NULL,
                             "a stored feature value does not decode as feast.types.Value");
    if (ld_value_to_json(v, out, st) != 0) {
        if (st->code == GRPC_STATUS_INTERNAL && !st->err_class) {
            st->err_module = "builtins"; /* json.dumps / datetime raise ValueError */
            st->err_class = "ValueError";
        }
        return -1;
    }
    return 0;
}

#define STATUS_JSON(x)                                                                             \
    {                                                                                              \
        "\"" x "\"", sizeof(x) + 1                                                                 \
    }
static const struct {
    const char *s;
    size_t n;
} status_json[] = {
        STATUS_JSON("INVALID"),   STATUS_JSON("PRESENT"),         STATUS_JSON("NULL_VALUE"),
        STATUS_JSON("NOT_FOUND"), STATUS_JSON("OUTSIDE_MAX_AGE"),
};

/* The last timestamp rendered for a row: a row's features of one view share
 * it, so the columns of a view after the first find it here (one slot per
 * row; entity columns are all the epoch). */
typedef struct ts_cache {
    int64_t us;
    size_t len; /* 0: empty */
    char s[OL_JSON_TS_MAX];
} ts_cache;

/* A column's rendered event times (the bytes inside its brackets): columns
 * sharing one ts_us array (ol_request.h) render it once and copy it. */
typedef struct ts_run {
    const int64_t *ts_us;
    size_t off, len; /* in the output */
} ts_run;

#define TS_RUN_SEARCH 16 /* runs searched back for a shared array */

typedef struct ts_state {
    ts_cache *tc; /* [row] */
    ts_run *runs; /* [column] */
    size_t n_runs;
} ts_state;

static int encode_column(const ol_column_out *c, size_t rows, ld_buf *out, ld_arena *scratch,
                         ts_state *ts, ld_status *st)
{
    ld_buf_puts(out, "{\"values\":[");
    for (size_t r = 0; r < rows; r++) {
        if (r)
            ld_buf_putc(out, ',');
        const uint8_t *p = c->val ? c->val[r] : NULL;
        size_t n = p && c->val_len ? c->val_len[r] : 0;
        int rc = ol_json_value_bytes(out, p, n, scratch, st);
        if (scratch->blocks)
            ld_arena_reset(scratch);
        if (rc != 0)
            return -1;
    }
    ld_buf_puts(out, "],\"statuses\":[");
    for (size_t r = 0; r < rows; r++) {
        unsigned s = c->status ? c->status[r] : OL_PRESENT;
        if (s > OL_OUTSIDE_MAX_AGE)
            s = OL_INVALID;
        char *w = ld_buf_reserve(out, 20);
        size_t k = 0;
        if (r)
            w[k++] = ',';
        ld_copy_small(w + k, status_json[s].s, status_json[s].n);
        out->len += k + status_json[s].n;
    }
    out->data[out->len] = '\0';
    ld_buf_putc(out, ']');
    if (rows) {
        ld_buf_puts(out, ",\"event_timestamps\":[");
        for (size_t j = ts->n_runs; j > 0 && ts->n_runs - j < TS_RUN_SEARCH; j--) {
            const ts_run *run = &ts->runs[j - 1];
            if (run->ts_us == c->ts_us) {
                char *w = ld_buf_reserve(out, run->len + 2);
                memcpy(w, out->data + run->off, run->len); /* after the reserve */
                memcpy(w + run->len, "]}", 3);
                out->len += run->len + 2;
                return 0;
            }
        }
        ts_run *run = &ts->runs[ts->n_runs++];
        run->ts_us = c->ts_us;
        run->off = out->len;
        for (size_t r = 0; r < rows; r++) {
            int64_t us = c->ts_us ? c->ts_us[r] : 0;
            ts_cache *t = &ts->tc[r];
            if (!t->len || us != t->us) {
                t->len = ol_json_timestamp(us, t->s);
                t->us = us;
                if (!t->len) {
                    ld_status_set(st, GRPC_STATUS_INTERNAL, "ValueError",
                                  "year is out of range for event timestamp %" PRId64 " µs", us);
                    st->err_module = "builtins";
                    return -1;
                }
            }
            char *w = ld_buf_reserve(out, t->len + 3);
            size_t k = 0;
            if (r)
                w[k++] = ',';
            w[k++] = '"';
            ld_copy_small(w + k, t->s, t->len);
            k += t->len;
            w[k++] = '"';
            out->len += k;
        }
        run->len = out->len - run->off;
        out->data[out->len] = '\0';
        ld_buf_putc(out, ']');
    }
    ld_buf_putc(out, '}');
    return 0;
}

int ol_json_encode_get(const ol_get_response *r, ld_buf *out, ld_status *st)
{
    size_t start = out->len;
    char first[2048];
    ld_arena scratch;
    ld_arena_init(&scratch, first, sizeof first, 0);
    /* a guess that saves most regrowth: ~40 bytes per cell */
    ld_buf_reserve(out, 64 + r->n_cols * (64 + r->n_rows * 40));
    ld_buf_puts(out, "{\"results\":[");
    int rc = 0;
    ts_state ts = {.tc = calloc(r->n_rows + 1, sizeof *ts.tc),
                   .runs = malloc((r->n_cols + 1) * sizeof *ts.runs)};
    if (!ts.tc || !ts.runs) {
        free(ts.tc);
        free(ts.runs);
        ld_arena_destroy(&scratch);
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < r->n_cols && rc == 0; i++) {
        if (i)
            ld_buf_putc(out, ',');
        rc = encode_column(&r->cols[i], r->n_rows, out, &scratch, &ts, st);
    }
    free(ts.tc);
    free(ts.runs);
    ld_arena_destroy(&scratch);
    if (rc != 0) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
        return -1;
    }
    ld_buf_puts(out, "],\"metadata\":{\"feature_names\":[");
    for (size_t i = 0; i < r->n_cols; i++) {
        if (i)
            ld_buf_putc(out, ',');
        const char *name = r->cols[i].name ? r->cols[i].name : "";
        ld_buf_json_str(out, name, strlen(name), 0);
    }
    ld_buf_puts(out, "]}}");
    return 0;
}
