/* ld_buf: a growable byte buffer. Allocation failure is fatal (as in Redis):
 * a server that cannot allocate a few bytes cannot answer anyone anyway. */
#pragma once

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct ld_buf {
    char *data; /* always NUL-terminated when non-NULL */
    size_t len;
    size_t cap;
} ld_buf;

#define LD_BUF_INIT                                                                                \
    {                                                                                              \
        NULL, 0, 0                                                                                 \
    }

/* Copy n bytes where n is mostly small (a serialized Value, a Timestamp):
 * up to 16 bytes with two overlapping fixed-size moves instead of a call to
 * memcpy, which is most of the cost at that size. */
static inline void ld_copy_small(void *dst, const void *src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    if (n >= 8 && n <= 16) {
        uint64_t a, b;
        memcpy(&a, s, 8);
        memcpy(&b, s + n - 8, 8);
        memcpy(d, &a, 8);
        memcpy(d + n - 8, &b, 8);
    } else if (n >= 4 && n < 8) {
        uint32_t a, b;
        memcpy(&a, s, 4);
        memcpy(&b, s + n - 4, 4);
        memcpy(d, &a, 4);
        memcpy(d + n - 4, &b, 4);
    } else if (n < 4) {
        for (size_t i = 0; i < n; i++)
            d[i] = s[i];
    } else {
        memcpy(d, s, n);
    }
}

void ld_buf_free(ld_buf *b);
void ld_buf_reset(ld_buf *b); /* len = 0, keeps the memory */
/* Make room for n more bytes; returns a pointer to the first free byte. The
 * common case (room left) is inline, the rest grows. */
char *ld_buf_reserve_grow(ld_buf *b, size_t n);
static inline char *ld_buf_reserve(ld_buf *b, size_t n)
{
    if (b->cap - b->len > n)
        return b->data + b->len;
    return ld_buf_reserve_grow(b, n);
}
/* Append v in decimal. */
void ld_buf_put_i64(ld_buf *b, int64_t v);
/* Append n bytes; the common case (room left) is inline, the rest grows. */
void ld_buf_append_grow(ld_buf *b, const void *p, size_t n);
static inline void ld_buf_append(ld_buf *b, const void *p, size_t n)
{
    if (b->cap - b->len > n) {
        if (n)
            memcpy(b->data + b->len, p, n);
        b->len += n;
        b->data[b->len] = '\0';
    } else {
        ld_buf_append_grow(b, p, n);
    }
}
static inline void ld_buf_puts(ld_buf *b, const char *s)
{
    ld_buf_append(b, s, strlen(s));
}
static inline void ld_buf_putc(ld_buf *b, char c)
{
    if (b->cap - b->len > 1) {
        b->data[b->len++] = c;
        b->data[b->len] = '\0';
    } else {
        ld_buf_append_grow(b, &c, 1);
    }
}
void ld_buf_printf(ld_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ld_buf_vprintf(ld_buf *b, const char *fmt, va_list ap);
void ld_buf_put_u32le(ld_buf *b, uint32_t v);
void ld_buf_put_u64le(ld_buf *b, uint64_t v);

/* Append s (n bytes of UTF-8) as a JSON string literal, quotes included.
 * ascii_only escapes every non-ASCII code point as \uXXXX (surrogate pairs
 * above U+FFFF), as Python's json.dumps does by default; otherwise UTF-8
 * passes through. Invalid UTF-8 bytes become U+FFFD. */
void ld_buf_json_str(ld_buf *b, const char *s, size_t n, int ascii_only);

/* Detach the data (caller frees with free()); the buffer becomes empty. */
char *ld_buf_steal(ld_buf *b, size_t *len);
