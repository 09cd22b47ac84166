/* ol_resp: incremental RESP2 reply reader (see ol_resp.h). */
#include "ol_resp.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define RESP_DEFAULT_MAX_BULK  ((size_t)512 << 20)
#define RESP_DEFAULT_MAX_ARRAY ((size_t)16 << 20)
#define RESP_DEFAULT_MAX_LINE  ((size_t)64 << 10)
#define RESP_MAX_DIGITS        19 /* digits of INT64_MAX */

void resp_init(resp_reader *r, size_t max_bulk, size_t max_array, size_t max_line)
{
    memset(r, 0, sizeof(*r));
    r->max_bulk = max_bulk ? max_bulk : RESP_DEFAULT_MAX_BULK;
    r->max_array = max_array ? max_array : RESP_DEFAULT_MAX_ARRAY;
    r->max_line = max_line ? max_line : RESP_DEFAULT_MAX_LINE;
}

void resp_reset(resp_reader *r)
{
    r->left = 0;
    r->need = 0;
    r->failed = 0;
    r->err[0] = '\0';
}

static int proto(resp_reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int proto(resp_reader *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, sizeof(r->err), fmt, ap);
    va_end(ap);
    r->failed = 1;
    return RESP_PROTO;
}

/* A decimal line after the type byte: p[0 .. avail) holds "[-]digits\r\n"
 * (or its beginning). Sets *v and *used (digits and CRLF). */
static inline __attribute__((always_inline)) int read_num(resp_reader *r, char type, const char *p,
                                                          size_t avail, int64_t *v, size_t *used)
{
    size_t i = 0;
    int neg = 0;
    if (avail && p[0] == '-') {
        neg = 1;
        i = 1;
    }
    uint64_t x = 0;
    size_t d0 = i;
    for (; i < avail; i++) {
        unsigned c = (unsigned char)p[i] - '0';
        if (c > 9)
            break;
        if (i - d0 == RESP_MAX_DIGITS) /* up to 19 digits cannot overflow x */
            return proto(r, "number after '%c' out of range", type);
        x = x * 10 + c;
    }
    if (i == avail)
        return RESP_MORE;
    if (i == d0 || p[i] != '\r')
        return proto(r, "malformed number after '%c'", type);
    if (i + 1 == avail)
        return RESP_MORE;
    if (p[i + 1] != '\n')
        return proto(r, "CR without LF after '%c'", type);
    if (neg ? x > (uint64_t)INT64_MAX + 1 : x > (uint64_t)INT64_MAX)
        return proto(r, "number after '%c' out of range", type);
    *v = neg ? (int64_t)(0 - x) : (int64_t)x;
    *used = i + 2;
    return RESP_OK;
}

/* A text line after the type byte ('+' or '-'), at most r->max_line bytes. */
static int read_line(resp_reader *r, char type, const char *p, size_t avail, size_t *line_len,
                     size_t *used)
{
    size_t scan = avail < r->max_line + 1 ? avail : r->max_line + 1;
    const char *cr = memchr(p, '\r', scan);
    if (!cr) {
        if (avail > r->max_line)
            return proto(r, "'%c' line longer than %zu bytes", type, r->max_line);
        return RESP_MORE;
    }
    size_t n = (size_t)(cr - p);
    if (n + 1 == avail)
        return RESP_MORE;
    if (cr[1] != '\n')
        return proto(r, "CR without LF in a '%c' line", type);
    *line_len = n;
    *used = n + 2;
    return RESP_OK;
}

int resp_next(resp_reader *r, const char *buf, size_t len, size_t *pos, resp_item *it)
{
    if (r->failed)
        return RESP_PROTO;
    r->need = 0;
    size_t at = *pos;
    if (at >= len)
        return RESP_MORE;
    const char *p = buf + at;
    size_t avail = len - at;
    char type = p[0];
    int in_array = r->left != 0;
    int64_t v = 0;
    size_t used = 0, n = 0;
    int rc;

    switch (type) {
    case '$':
        rc = read_num(r, type, p + 1, avail - 1, &v, &used);
        if (rc != RESP_OK)
            return rc;
        if (v == -1) {
            it->type = RESP_NIL;
            it->str = NULL;
            it->len = 0;
            used += 1;
            break;
        }
        if (v < 0)
            return proto(r, "bad bulk string length %lld", (long long)v);
        if ((uint64_t)v > r->max_bulk)
            return proto(r, "bulk string of %lld bytes exceeds the limit of %zu", (long long)v,
                         r->max_bulk);
        n = 1 + used + (size_t)v + 2;
        if (avail < n) {
            r->need = n;
            return RESP_MORE;
        }
        if (p[n - 2] != '\r' || p[n - 1] != '\n')
            return proto(r, "bulk string of %lld bytes not followed by CRLF", (long long)v);
        it->type = RESP_BULK;
        it->str = p + 1 + used;
        it->len = (size_t)v;
        used = n;
        break;
    case '*':
        if (in_array)
            return proto(r, "nested array");
        rc = read_num(r, type, p + 1, avail - 1, &v, &used);
        if (rc != RESP_OK)
            return rc;
        used += 1;
        if (v == -1) {
            it->type = RESP_NIL;
            it->str = NULL;
            it->len = 0;
            break;
        }
        if (v < 0)
            return proto(r, "bad array length %lld", (long long)v);
        if ((uint64_t)v > r->max_array)
            return proto(r, "array of %lld elements exceeds the limit of %zu", (long long)v,
                         r->max_array);
        it->type = RESP_ARRAY;
        it->n = v;
        it->str = NULL;
        it->len = 0;
        it->in_array = 0;
        it->end = v == 0;
        r->left = (size_t)v;
        *pos = at + used;
        return RESP_OK;
    case ':':
        if (in_array)
            return proto(r, "integer inside an array");
        rc = read_num(r, type, p + 1, avail - 1, &v, &used);
        if (rc != RESP_OK)
            return rc;
        it->type = RESP_INTEGER;
        it->n = v;
        it->str = NULL;
        it->len = 0;
        used += 1;
        break;
    case '+':
    case '-':
        if (in_array)
            return proto(r, "%s inside an array", type == '+' ? "simple string" : "error");
        rc = read_line(r, type, p + 1, avail - 1, &n, &used);
        if (rc != RESP_OK)
            return rc;
        it->type = type == '+' ? RESP_SIMPLE : RESP_ERROR;
        it->str = p + 1;
        it->len = n;
        used += 1;
        break;
    default:
        if (type >= 0x21 && type <= 0x7e)
            return proto(r, "unknown reply type '%c'", type);
        return proto(r, "unknown reply type byte 0x%02x", (unsigned char)type);
    }
    if (it->type != RESP_INTEGER)
        it->n = 0;
    it->in_array = in_array;
    if (in_array) {
        r->left--;
        it->end = r->left == 0;
    } else {
        it->end = 1;
    }
    *pos = at + used;
    return RESP_OK;
}

size_t resp_run(resp_reader *r, const char *buf, size_t len, size_t *pos, resp_span *out,
                size_t max)
{
    if (r->failed || r->left < 2)
        return 0;
    if (max > r->left - 1) /* the array's last element goes through resp_next */
        max = r->left - 1;
    size_t at = *pos, k = 0, max_bulk = r->max_bulk;
    while (k < max && len - at >= 5) {
        const char *p = buf + at;
        if (p[0] != '$')
            break;
        unsigned d = (unsigned char)p[1] - '0';
        if (d <= 9) {
            size_t n = d, i = 2, avail = len - at;
            while (i < 8 && i < avail && (d = (unsigned char)p[i] - '0') <= 9) {
                n = n * 10 + d;
                i++;
            }
            if (i == 8 || n > max_bulk || avail < i + n + 4 || p[i] != '\r' || p[i + 1] != '\n' ||
                p[i + 2 + n] != '\r' || p[i + 3 + n] != '\n')
                break;
            out[k].str = p + i + 2;
            out[k].len = n;
            at += i + n + 4;
        } else if (p[1] == '-' && p[2] == '1' && p[3] == '\r' && p[4] == '\n') {
            out[k].str = NULL;
            out[k].len = 0;
            at += 5;
        } else {
            break;
        }
        k++;
    }
    r->left -= k;
    r->need = 0;
    *pos = at;
    return k;
}
