/* ld_arena: a bump allocator that owns everything one call allocates (the
 * unpacked request, the response, scratch). It is freed in one go when the
 * call ends, so handlers never free piecemeal and cannot leak.
 *
 * The first block can be caller-provided (embedded in the call object), so a
 * small unary call allocates nothing beyond its call object. A byte limit
 * bounds what one call may take; past it ld_arena_alloc returns NULL. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

typedef struct ld_arena_block ld_arena_block;

typedef struct ld_arena {
    char *ptr;              /* next free byte in the current block */
    char *end;              /* end of the current block */
    ld_arena_block *blocks; /* heap blocks, newest first */
    size_t used;            /* bytes handed out in heap blocks */
    size_t limit;           /* 0 = no limit */
    char *first;            /* caller-provided first block, or NULL */
    size_t first_size;
    ProtobufCAllocator pbc; /* protobuf-c adapter: alloc from the arena, free is a no-op */
} ld_arena;

void ld_arena_init(ld_arena *a, void *first, size_t first_size, size_t limit);
/* 16-byte aligned; NULL when the limit would be exceeded. */
void *ld_arena_alloc(ld_arena *a, size_t n);
void *ld_arena_calloc(ld_arena *a, size_t n, size_t size);
char *ld_arena_strdup(ld_arena *a, const char *s);
char *ld_arena_strndup(ld_arena *a, const char *s, size_t n);
void *ld_arena_memdup(ld_arena *a, const void *p, size_t n);
char *ld_arena_sprintf(ld_arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Free every heap block and rewind to the first block. */
void ld_arena_reset(ld_arena *a);
void ld_arena_destroy(ld_arena *a);
static inline ProtobufCAllocator *ld_arena_pbc(ld_arena *a)
{
    return &a->pbc;
}
