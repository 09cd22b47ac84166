/* ld_hash: FNV-1a, the hash of larder's small open-addressing tables (names,
 * entity keys). Not for anything a client could use to force collisions
 * beyond what the tables' size limits already bound. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define LD_FNV1A_INIT 1469598103934665603ull

static inline uint64_t ld_fnv1a_from(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static inline uint64_t ld_fnv1a(const void *p, size_t n)
{
    return ld_fnv1a_from(LD_FNV1A_INIT, p, n);
}

static inline uint64_t ld_fnv1a_str(const char *s)
{
    uint64_t h = LD_FNV1A_INIT;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}
