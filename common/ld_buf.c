#include "ld_buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void oom(void)
{
    fputs("larder: out of memory\n", stderr);
    abort();
}

void ld_buf_free(ld_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void ld_buf_reset(ld_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

char *ld_buf_reserve_grow(ld_buf *b, size_t n)
{
    if (n > SIZE_MAX / 2 - b->len)
        oom();
    size_t need = b->len + n + 1;
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < need)
            cap *= 2;
        char *p = realloc(b->data, cap);
        if (!p)
            oom();
        b->data = p;
        b->cap = cap;
    }
    return b->data + b->len;
}

void ld_buf_append_grow(ld_buf *b, const void *p, size_t n)
{
    char *dst = ld_buf_reserve(b, n);
    if (n)
        memcpy(dst, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void ld_buf_vprintf(ld_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    char *dst = ld_buf_reserve(b, 64);
    size_t room = b->cap - b->len;
    int n = vsnprintf(dst, room, fmt, ap);
    if (n < 0) {
        va_end(ap2);
        return;
    }
    if ((size_t)n >= room) {
        dst = ld_buf_reserve(b, (size_t)n);
        vsnprintf(dst, (size_t)n + 1, fmt, ap2);
    }
    va_end(ap2);
    b->len += (size_t)n;
}

void ld_buf_printf(ld_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ld_buf_vprintf(b, fmt, ap);
    va_end(ap);
}

void ld_buf_put_u32le(ld_buf *b, uint32_t v)
{
    unsigned char x[4] = {v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, (v >> 24) & 0xff};
    ld_buf_append(b, x, 4);
}

void ld_buf_put_u64le(ld_buf *b, uint64_t v)
{
    ld_buf_put_u32le(b, (uint32_t)v);
    ld_buf_put_u32le(b, (uint32_t)(v >> 32));
}

/* Decode one UTF-8 sequence at s[0..n); returns its length, or 0 when the
 * bytes are not valid UTF-8 (overlong forms and surrogates included). */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if ((c & 0xe0) == 0xc0) {
        len = 2, v = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3, v = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return len;
}

void ld_buf_json_str(ld_buf *b, const char *str, size_t n, int ascii_only)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    ld_buf_reserve(b, n + 2);
    ld_buf_putc(b, '"');
    size_t i = 0;
    while (i < n) {
        /* Copy the longest run that needs no escaping in one go. */
        size_t j = i;
        unsigned char top = ascii_only ? 0x7f : 0x80; /* Python escapes DEL when ASCII-only */
        while (j < n && s[j] >= 0x20 && s[j] < top && s[j] != '"' && s[j] != '\\')
            j++;
        if (j > i) {
            ld_buf_append(b, s + i, j - i);
            i = j;
            continue;
        }
        unsigned char c = s[i];
        char esc[12];
        switch (c) {
        case '"':
            ld_buf_append(b, "\\\"", 2);
            i++;
            continue;
        case '\\':
            ld_buf_append(b, "\\\\", 2);
            i++;
            continue;
        case '\n':
            ld_buf_append(b, "\\n", 2);
            i++;
            continue;
        case '\r':
            ld_buf_append(b, "\\r", 2);
            i++;
            continue;
        case '\t':
            ld_buf_append(b, "\\t", 2);
            i++;
            continue;
        case '\b':
            ld_buf_append(b, "\\b", 2);
            i++;
            continue;
        case '\f':
            ld_buf_append(b, "\\f", 2);
            i++;
            continue;
        default:
            break;
        }
        if (c < 0x20 || c == 0x7f) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            ld_buf_append(b, esc, 6);
            i++;
            continue;
        }
        uint32_t cp;
        size_t len = utf8_decode(s + i, n - i, &cp);
        if (len == 0) {
            cp = 0xfffd;
            len = 1;
        }
        if (!ascii_only && cp != 0xfffd) {
            ld_buf_append(b, s + i, len);
        } else if (!ascii_only) {
            ld_buf_append(b, "\xef\xbf\xbd", 3);
        } else if (cp < 0x10000) {
            esc[0] = '\\', esc[1] = 'u';
            for (int k = 0; k < 4; k++)
                esc[2 + k] = hex[(cp >> (12 - 4 * k)) & 15];
            ld_buf_append(b, esc, 6);
        } else {
            uint32_t v = cp - 0x10000;
            uint32_t hi = 0xd800 + (v >> 10), lo = 0xdc00 + (v & 0x3ff);
            esc[0] = '\\', esc[1] = 'u', esc[6] = '\\', esc[7] = 'u';
            for (int k = 0; k < 4; k++) {
                esc[2 + k] = hex[(hi >> (12 - 4 * k)) & 15];
                esc[8 + k] = hex[(lo >> (12 - 4 * k)) & 15];
            }
            ld_buf_append(b, esc, 12);
        }
        i += len;
    }
    ld_buf_putc(b, '"');
}

char *ld_buf_steal(ld_buf *b, size_t *len)
{
    char *p = b->data;
    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

/* "00" "01" ... "99": two digits per division */
static const char dec2[] = "00010203040506070809101112131415161718192021222324252627282930313233"
                           "34353637383940414243444546474849505152535455565758596061626364656667"
                           "6869707172737475767778798081828384858687888990919293949596979899";

void ld_buf_put_i64(ld_buf *b, int64_t v)
{
    char tmp[24], *e = tmp + sizeof tmp, *q = e;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    while (u >= 100) {
        unsigned r = (unsigned)(u % 100);
        u /= 100;
        q -= 2;
        memcpy(q, dec2 + 2 * r, 2);
    }
    if (u >= 10) {
        q -= 2;
        memcpy(q, dec2 + 2 * u, 2);
    } else {
        *--q = (char)('0' + u);
    }
    if (v < 0)
        *--q = '-';
    ld_buf_append(b, q, (size_t)(e - q));
}
