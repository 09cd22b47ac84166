/* MurmurHash3 x86_32, written from the algorithm's description (Austin
 * Appleby's public-domain MurmurHash3): 4-byte little-endian blocks mixed into
 * the state, a 1-3 byte tail, then the length and the final avalanche.
 *
 * The streaming form keeps up to 3 pending bytes between updates, so the block
 * boundaries fall where they would over the concatenated input. */
#include "ld_murmur3.h"

#include <string.h>

#define C1 0xcc9e2d51u
#define C2 0x1b873593u

static inline uint32_t rotl32(uint32_t x, unsigned r)
{
    return (x << r) | (x >> (32 - r));
}

static inline uint32_t mix_k(uint32_t k)
{
    k *= C1;
    k = rotl32(k, 15);
    return k * C2;
}

static inline uint32_t mix_block(uint32_t h, uint32_t k)
{
    h ^= mix_k(k);
    h = rotl32(h, 13);
    return h * 5 + 0xe6546b64u;
}

static inline uint32_t load_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void ld_murmur3_init(ld_murmur3 *m, uint32_t seed)
{
    m->h = seed;
    m->tail = 0;
    m->total = 0;
    m->tail_len = 0;
}

void ld_murmur3_update(ld_murmur3 *m, const void *data, size_t len)
{
    const unsigned char *p = data;
    m->total += (uint32_t)len;
    /* Complete a block started by an earlier update. */
    while (m->tail_len && len) {
        m->tail |= (uint32_t)*p++ << (8 * m->tail_len);
        len--;
        if (++m->tail_len == 4) {
            m->h = mix_block(m->h, m->tail);
            m->tail = 0;
            m->tail_len = 0;
        }
    }
    for (; len >= 4; p += 4, len -= 4)
        m->h = mix_block(m->h, load_le32(p));
    for (size_t i = 0; i < len; i++)
        m->tail |= (uint32_t)p[i] << (8 * i);
    m->tail_len += (unsigned)len;
}

uint32_t ld_murmur3_final(const ld_murmur3 *m)
{
    uint32_t h = m->h;
    if (m->tail_len)
        h ^= mix_k(m->tail);
    h ^= m->total;
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

uint32_t ld_murmur3_32(const void *data, size_t len, uint32_t seed)
{
    ld_murmur3 m;
    ld_murmur3_init(&m, seed);
    ld_murmur3_update(&m, data, len);
    return ld_murmur3_final(&m);
}

void ld_murmur3_feature_field(const char *fv, const char *feature, unsigned char out[4])
{
    ld_murmur3 m;
    ld_murmur3_init(&m, 0);
    ld_murmur3_update(&m, fv, strlen(fv));
    ld_murmur3_update(&m, ":", 1);
    ld_murmur3_update(&m, feature, strlen(feature));
    uint32_t h = ld_murmur3_final(&m);
    out[0] = (unsigned char)h;
    out[1] = (unsigned char)(h >> 8);
    out[2] = (unsigned char)(h >> 16);
    out[3] = (unsigned char)(h >> 24);
}
