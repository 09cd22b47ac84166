/* ol_store_sql: Feast's SQL online-store layout, the parts the PostgreSQL and
 * SQLite stores share (see the header). */
#include "ol_store_sql.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ld_hash.h"

/* the bytes of an empty value: a cell's pointer is never NULL when found */
static const uint8_t empty_value[1];

void ol_store_sql_ident(ld_buf *b, const char *project, const char *table, const char *suffix)
{
    ld_buf_putc(b, '"');
    const char *parts[3] = {project, table, suffix};
    for (int i = 0; i < 3; i++) {
        if (i == 1 && table)
            ld_buf_putc(b, '_');
        for (const char *p = parts[i] ? parts[i] : ""; *p; p++) {
            if (*p == '"')
                ld_buf_putc(b, '"');
            ld_buf_putc(b, *p);
        }
    }
    ld_buf_putc(b, '"');
}

int ol_store_sql_value_num(const ld_config *cfg)
{
    const char *v = ld_config_extra(cfg, "online_store.enable_openai_compatible_store");
    return v && (strcasecmp(v, "true") == 0 || strcasecmp(v, "yes") == 0 ||
                 strcasecmp(v, "on") == 0 || strcmp(v, "1") == 0);
}

void ol_store_sql_clear(ol_read_group *g)
{
    size_t nf = g->n_features;
    for (size_t k = 0; k < g->n_keys; k++) {
        g->found[k] = 0;
        g->event_ts_us[k] = 0;
        for (size_t f = 0; f < nf; f++) {
            g->val[k * nf + f] = NULL;
            g->val_len[k * nf + f] = 0;
        }
    }
}

/* ------------------------------------------------------------ index */

static uint64_t hash_bytes(const void *data, size_t n)
{
    uint64_t h = ld_fnv1a(data, n);
    return h ^ (h >> 29);
}

static int index_init(ol_store_sql_index *m, const uint8_t *const *p, const size_t *len, size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n)
        cap <<= 1;
    m->slot = calloc(cap, sizeof *m->slot);
    m->dup = calloc(n ? n : 1, sizeof *m->dup);
    m->mask = cap - 1;
    m->p = p;
    m->len = len;
    if (!m->slot || !m->dup) {
        free(m->slot);
        free(m->dup);
        m->slot = m->dup = NULL;
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        size_t h = hash_bytes(p[i], len[i]) & m->mask;
        for (;; h = (h + 1) & m->mask) {
            uint32_t s = m->slot[h];
            if (!s) {
                m->slot[h] = (uint32_t)i + 1;
                break;
            }
            if (len[s - 1] == len[i] && memcmp(p[s - 1], p[i], len[i]) == 0) {
                uint32_t j = s - 1;
                while (m->dup[j])
                    j = m->dup[j] - 1;
                m->dup[j] = (uint32_t)i + 1;
                break;
            }
        }
    }
    return 0;
}

/* First position of the bytes, or -1. */
static long index_find(const ol_store_sql_index *m, const void *d, size_t n)
{
    if (!d && n)
        return -1;
    for (size_t h = hash_bytes(d, n) & m->mask;; h = (h + 1) & m->mask) {
        uint32_t s = m->slot[h];
        if (!s)
            return -1;
        if (m->len[s - 1] == n && (n == 0 || memcmp(m->p[s - 1], d, n) == 0))
            return (long)s - 1;
    }
}

/* ------------------------------------------------------------ rows */

int ol_store_sql_rows_init(ol_store_sql_rows *m, ol_read_group *g, ld_arena *arena)
{
    size_t nf = g->n_features;
    *m = (ol_store_sql_rows){.g = g, .arena = arena};
    m->flen = calloc(nf ? nf : 1, sizeof *m->flen);
    if (!m->flen)
        return -1;
    for (size_t f = 0; f < nf; f++)
        m->flen[f] = strlen(g->features[f]);
    if (index_init(&m->keys, g->keys, g->key_lens, g->n_keys) != 0 ||
        index_init(&m->feats, (const uint8_t *const *)g->features, m->flen, nf) != 0)
        return -1;
    return 0;
}

int ol_store_sql_rows_put(ol_store_sql_rows *m, const void *key, size_t key_len,
                          const char *feature, size_t feature_len, const void *value,
                          size_t value_len, int64_t event_ts_us)
{
    ol_read_group *g = m->g;
    size_t nf = g->n_features;
    long k = index_find(&m->keys, key, key_len);
    if (k < 0)
        return 0;
    long f = feature ? index_find(&m->feats, feature, feature_len) : -1;
    const uint8_t *vb = NULL;
    size_t vl = 0;
    if (f >= 0) {
        vl = value_len;
        vb = vl ? ld_arena_memdup(m->arena, value, vl) : empty_value;
        if (!vb)
            return -1;
    }
    for (long kk = k; kk >= 0; kk = (long)m->keys.dup[kk] - 1) {
        g->found[kk] = 1;
        g->event_ts_us[kk] = event_ts_us;
        for (long ff = f; ff >= 0; ff = (long)m->feats.dup[ff] - 1) {
            g->val[(size_t)kk * nf + (size_t)ff] = vb;
            g->val_len[(size_t)kk * nf + (size_t)ff] = vl;
        }
    }
    return 0;
}

void ol_store_sql_rows_free(ol_store_sql_rows *m)
{
    free(m->keys.slot);
    free(m->keys.dup);
    free(m->feats.slot);
    free(m->feats.dup);
    free(m->flen);
    *m = (ol_store_sql_rows){0};
}
