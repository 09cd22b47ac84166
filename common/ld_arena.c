#include "ld_arena.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ld_arena_block {
    ld_arena_block *next;
    size_t size;
    _Alignas(16) char data[];
};

#define ALIGN16(n) (((n) + 15) & ~(size_t)15)

static void *pbc_alloc(void *ctx, size_t n)
{
    return ld_arena_alloc(ctx, n);
}

static void pbc_free(void *ctx, void *p)
{
    (void)ctx;
    (void)p; /* freed with the arena */
}

void ld_arena_init(ld_arena *a, void *first, size_t first_size, size_t limit)
{
    memset(a, 0, sizeof *a);
    a->limit = limit;
    if (first && first_size >= 16) {
        /* align the caller's block */
        uintptr_t p = ((uintptr_t)first + 15) & ~(uintptr_t)15;
        size_t lost = p - (uintptr_t)first;
        a->first = (char *)p;
        a->first_size = first_size - lost;
        a->ptr = a->first;
        a->end = a->first + a->first_size;
    }
    a->pbc.alloc = pbc_alloc;
    a->pbc.free = pbc_free;
    a->pbc.allocator_data = a;
}

static void *grow(ld_arena *a, size_t n)
{
    /* Blocks double with use, from 4 KiB to 1 MiB; a large request gets a
     * block of its own size. */
    size_t size = a->used < 4096 ? 4096 : a->used;
    if (size > (1u << 20))
        size = 1u << 20;
    if (size < n)
        size = n;
    if (a->limit && a->used + size > a->limit) {
        if (a->used + n > a->limit)
            return NULL;
        size = a->limit - a->used;
    }
    ld_arena_block *b = malloc(sizeof *b + size);
    if (!b)
        return NULL;
    b->next = a->blocks;
    b->size = size;
    a->blocks = b;
    a->used += size;
    a->ptr = b->data + n;
    a->end = b->data + size;
    return b->data;
}

void *ld_arena_alloc(ld_arena *a, size_t n)
{
    if (n > SIZE_MAX - 32)
        return NULL;
    n = ALIGN16(n ? n : 1);
    if ((size_t)(a->end - a->ptr) >= n) {
        void *p = a->ptr;
        a->ptr += n;
        return p;
    }
    return grow(a, n);
}

void *ld_arena_calloc(ld_arena *a, size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    void *p = ld_arena_alloc(a, n * size);
    if (p)
        memset(p, 0, n * size);
    return p;
}

void *ld_arena_memdup(ld_arena *a, const void *src, size_t n)
{
    void *p = ld_arena_alloc(a, n);
    if (p && n)
        memcpy(p, src, n);
    return p;
}

char *ld_arena_strndup(ld_arena *a, const char *s, size_t n)
{
    char *p = n < SIZE_MAX ? ld_arena_alloc(a, n + 1) : NULL;
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

char *ld_arena_strdup(ld_arena *a, const char *s)
{
    return ld_arena_strndup(a, s, strlen(s));
}

char *ld_arena_sprintf(ld_arena *a, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *p = n >= 0 ? ld_arena_alloc(a, (size_t)n + 1) : NULL;
    if (p)
        vsnprintf(p, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return p;
}

void ld_arena_reset(ld_arena *a)
{
    ld_arena_block *b = a->blocks;
    while (b) {
        ld_arena_block *next = b->next;
        free(b);
        b = next;
    }
    a->blocks = NULL;
    a->used = 0;
    a->ptr = a->first;
    a->end = a->first ? a->first + a->first_size : NULL;
}

void ld_arena_destroy(ld_arena *a)
{
    ld_arena_reset(a);
    a->first = a->ptr = a->end = NULL;
}
