/* ld_murmur3: MurmurHash3 x86_32, the hash Feast's Redis store names its hash
 * fields with (Python's mmh3.hash(s, signed=False), seed 0).
 *
 * The hash can be fed in pieces (init/update/final) and gives the same result
 * as one call over the concatenation, so "fv:feature" is hashed without ever
 * building the joined string. */
#pragma once

#include <stddef.h>
#include <stdint.h>

typedef struct ld_murmur3 {
    uint32_t h;     /* running hash over the whole 4-byte blocks seen so far */
    uint32_t tail;  /* pending bytes (little-endian), tail_len of them */
    uint32_t total; /* bytes hashed, modulo 2^32 as the reference does */
    unsigned tail_len;
} ld_murmur3;

/** ld_murmur3_32() - MurmurHash3 x86_32 of len bytes with seed. */
uint32_t ld_murmur3_32(const void *data, size_t len, uint32_t seed);

/** ld_murmur3_init() - start a streaming hash with seed. */
void ld_murmur3_init(ld_murmur3 *m, uint32_t seed);
/** ld_murmur3_update() - hash len more bytes; any split gives the same result. */
void ld_murmur3_update(ld_murmur3 *m, const void *data, size_t len);
/** ld_murmur3_final() - the hash of everything fed so far. m is left unchanged,
 * so more bytes may still be appended. */
uint32_t ld_murmur3_final(const ld_murmur3 *m);

/**
 * ld_murmur3_feature_field() - Feast's Redis hash field for a feature.
 * @fv: feature view name (UTF-8, NUL-terminated)
 * @feature: feature name (UTF-8, NUL-terminated)
 * @out: receives the 4 bytes, murmur3_32("<fv>:<feature>", 0) little-endian
 *
 * Same bytes as Feast's helpers._mmh3(f"{fv}:{feature}").
 */
void ld_murmur3_feature_field(const char *fv, const char *feature, unsigned char out[4]);
