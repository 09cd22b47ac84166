#include <stdint.h>
#include <string.h>

#include "ld_arena.h"
#include "ld_test.h"

LD_TEST(first_block_then_heap)
{
    char first[256];
    ld_arena a;
    ld_arena_init(&a, first, sizeof first, 0);
    char *p = ld_arena_alloc(&a, 10);
    LD_CHECK(p >= first && p < first + sizeof first);
    LD_CHECK(((uintptr_t)p & 15) == 0);
    char *q = ld_arena_alloc(&a, 1000); /* does not fit: heap block */
    LD_CHECK(q && (q < first || q >= first + sizeof first));
    memset(q, 1, 1000);
    LD_CHECK(a.blocks != NULL);
    ld_arena_reset(&a);
    LD_CHECK(a.blocks == NULL);
    char *r = ld_arena_alloc(&a, 10);
    LD_CHECK(r == p); /* rewound to the first block */
    ld_arena_destroy(&a);
}

LD_TEST(limit_is_enforced)
{
    ld_arena a;
    ld_arena_init(&a, NULL, 0, 10000);
    LD_CHECK(ld_arena_alloc(&a, 4000) != NULL);
    LD_CHECK(ld_arena_alloc(&a, 4000) != NULL);
    LD_CHECK(ld_arena_alloc(&a, 4000) == NULL);
    LD_CHECK(ld_arena_alloc(&a, 100000) == NULL);
    ld_arena_destroy(&a);
}

LD_TEST(strings_and_overflow)
{
    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    LD_CHECK_STR(ld_arena_strdup(&a, "abc"), "abc");
    LD_CHECK_STR(ld_arena_strndup(&a, "abcdef", 3), "abc");
    LD_CHECK_STR(ld_arena_sprintf(&a, "%d-%s", 42, "x"), "42-x");
    LD_CHECK(ld_arena_calloc(&a, SIZE_MAX / 2, 4) == NULL);
    int *z = ld_arena_calloc(&a, 100, sizeof(int));
    int sum = 0;
    for (int i = 0; i < 100; i++)
        sum += z[i];
    LD_CHECK_INT(sum, 0);
    ld_arena_destroy(&a);
}

LD_TEST(many_small_allocations)
{
    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    for (int i = 0; i < 100000; i++) {
        char *p = ld_arena_alloc(&a, (size_t)(i % 200) + 1);
        LD_CHECK(p != NULL);
        if (!p)
            break;
        p[0] = 'x';
    }
    ld_arena_destroy(&a);
}

LD_TEST_MAIN
