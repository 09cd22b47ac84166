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

void ld_buf_free(ld_buf *b);
void ld_buf_reset(ld_buf *b); /* len = 0, keeps the memory */
/* Make room for n more bytes; returns a pointer to the first free byte. */
char *ld_buf_reserve(ld_buf *b, size_t n);
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
