/* ot_pit: point-in-time join, sort-merge as-of per hash partition.
 *
 * The join runs in stages, each a parallel-for over small tasks of every view
 * of a wave at once (so a single big view and many small ones both keep the
 * threads busy):
 *   1. count: per chunk of rows, hash each usable row's composite join key
 *      and count rows per partition (top bits of the hash);
 *   2. (serial) prefix sums turn the counts into write positions;
 *   3. scatter: per chunk, hash again and copy (row index, hash, timestamp,
 *      created timestamp) into the row's partition — stable, so each
 *      partition lists its rows in ascending order. The source columns are
 *      read sequentially here and never randomly afterwards (the key columns
 *      excepted, for exact comparison);
 *   4. join: per (view, partition), a hash table with exact key comparison
 *      numbers the distinct keys; positions are counting-sorted by key group;
 *      for each group that has entity rows, the feature rows are sorted by
 *      (event_ts, created_ts, row) and the entity rows by entity_ts, and one
 *      linear merge picks each entity row's match (a group with only a few
 *      entity rows is scanned instead of sorted);
 *   5. gather: every output column on its own task (ot_gather_rows, for the
 *      whole output or, streaming, for one piece at a time).
 * Partitions are disjoint in keys, so stage 4 tasks write disjoint entries
 * of the match arrays and need no locks.
 *
 * Stages 1-4 run per wave of views whose copies fit OT_PIT_WAVE_BYTES (a bigger
 * view alone), and a wave's copies are freed before the next one starts.
 * Memory beyond the output: 20 bytes per usable row on each side (28 with a
 * created column) of one wave for the partitioned copies, 8 per entity row
 * and view for
 * the match indexes, and per partition in flight a hash table and sort
 * scratch. One integer join key hashes through a bijection, so equal hashes
 * need no key comparison; other keys are compared on every hash hit.
 *
 * Ties: the merge takes the last feature row with event_ts <= entity_ts in
 * (event_ts, created_ts, row index) order, so full ties go to the highest row
 * index, i.e. the row written last. */
#include "ot_pit.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Tests compile this file with fewer hash bits to force collisions, and
 * with no scan path so that every group is sorted and merged. */
#ifndef OT_PIT_HASH_BITS
#define OT_PIT_HASH_BITS 64
#endif
#ifndef OT_PIT_SCAN_MAX
#define OT_PIT_SCAN_MAX 8 /* groups with <= this many entity rows are scanned */
#endif

#define PIT_CHUNK     65536       /* rows per hash/scatter task */
#define PIT_PART_ROWS 131072      /* target rows (both sides) per partition */
#define PIT_PART_MIN  8192        /* ... but split down to this for more tasks */
#define PIT_MAX_PARTS 4096        /* a power of two */
#define PIT_NONE      UINT32_MAX  /* empty slot / no group */
#define PIT_MAX_ROWS  0xfffffffeu /* row indexes are uint32 */
/* partitioned copies of the views joined at the same time (tests: 1, every
 * view alone) */
#ifndef OT_PIT_WAVE_BYTES
#define OT_PIT_WAVE_BYTES ((size_t)64 << 20)
#endif

/* ---- column access ---------------------------------------------------- */

static inline bool bit_get(const uint8_t *b, int64_t i)
{
    return (b[i >> 3] >> (i & 7)) & 1;
}

static inline void bit_set(uint8_t *b, int64_t i)
{
    b[i >> 3] |= (uint8_t)(1u << (i & 7));
}

static inline bool col_valid(const ot_column *c, int64_t i)
{
    return !c->validity || bit_get(c->validity, i);
}

static inline bool key_is_int(ot_type_id id)
{
    return id == OT_INT32 || id == OT_INT64;
}

static inline bool key_is_bytes(ot_type_id id)
{
    return id == OT_UTF8 || id == OT_LARGE_UTF8 || id == OT_BINARY;
}

static inline int64_t key_int(const ot_column *c, int64_t i)
{
    if (c->type.id == OT_INT32)
        return ((const int32_t *)c->values)[i];
    return ((const int64_t *)c->values)[i];
}

static inline const uint8_t *key_bytes(const ot_column *c, int64_t i, size_t *len)
{
    int64_t a, b;
    if (c->type.id == OT_LARGE_UTF8) {
        a = c->offsets64[i];
        b = c->offsets64[i + 1];
    } else {
        a = c->offsets[i];
        b = c->offsets[i + 1];
    }
    *len = (size_t)(b - a);
    /* no pointer arithmetic on a NULL data buffer (all-empty column) */
    return *len ? c->data + a : (const uint8_t *)"";
}

/* A timestamp column read in the join's common unit. */
typedef struct ts_conv {
    const ot_column *c;
    bool days; /* OT_DATE32: int32 values */
    int64_t mul;
} ts_conv;

static inline int64_t ts_at(const ts_conv *t, int64_t i)
{
    int64_t v = t->days ? ((const int32_t *)t->c->values)[i] : ((const int64_t *)t->c->values)[i];
    int64_t r;
    if (t->mul == 1)
        return v;
    if (__builtin_mul_overflow(v, t->mul, &r))
        r = v < 0 ? INT64_MIN : INT64_MAX;
    return r;
}

static int64_t pow1000(int e)
{
    int64_t m = 1;
    while (e-- > 0)
        m *= 1000;
    return m;
}

/* Unit index of a time column on the s=0 .. ns=3 scale (dates count as s). */
static int ts_unit(const ot_column *c)
{
    return c->type.id == OT_DATE32 ? OT_SECOND : (int)c->type.unit;
}

static void ts_conv_init(ts_conv *t, const ot_column *c, int target)
{
    t->c = c;
    t->days = c->type.id == OT_DATE32;
    t->mul = pow1000(target - ts_unit(c)) * (t->days ? 86400 : 1);
}

/* ---- hashing ---------------------------------------------------------- */

static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static inline uint64_t mum(uint64_t a, uint64_t b)
{
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

static uint64_t hash_bytes(const uint8_t *p, size_t n)
{
    uint64_t h = 0x243f6a8885a308d3ULL ^ (n * 0x9e3779b97f4a7c15ULL);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = mum(h ^ w, 0xa0761d6478bd642fULL);
        p += 8;
        n -= 8;
    }
    if (n) {
        uint64_t w = 0;
        memcpy(&w, p, n);
        h = mum(h ^ w, 0xe7037ed1a0b428dbULL);
    }
    return mix64(h);
}

/* ---- one view's state ------------------------------------------------- */

typedef struct pit_key {
    const ot_column *f, *e;
    bool bytes;
} pit_key;

/* One side (feature or entity rows) of a view, radix-partitioned by key
 * hash. Stage 3 copies each usable row's index, hash and time(s) into its
 * partition's slice, so that stage 4 reads partition-local memory only (the
 * source is read sequentially, once, when scattering). */
typedef struct pit_side {
    int64_t n;      /* rows in the table */
    size_t nchunks; /* stage 1/3 tasks */
    size_t *hist;   /* [chunk * np + part]: counts, then write positions */
    size_t *part;   /* np + 1 partition starts */
    uint32_t *row;  /* row index, partition order */
    uint64_t *hash; /* key hash */
    int64_t *ts;    /* event / entity timestamp, common unit */
    int64_t *cr;    /* created timestamp (feature side, if any) */
} pit_side;

typedef struct pit_job {
    const ot_pit_view *v;
    pit_key *keys;
    size_t nk;
    bool exact; /* equal hashes mean equal keys (one integer key) */
    ts_conv fts, ets;
    const ot_column *cts; /* created column or NULL */
    bool cdays;
    int64_t ttl; /* common unit; 0 = unbounded */
    unsigned pbits;
    size_t np; /* partitions */
    pit_side f, e;
    int64_t *match;
} pit_job;

typedef struct pit_ctx {
    pit_job *jobs;
    size_t n_jobs;
    atomic_int oom; /* a task ran out of memory: skip the rest */
} pit_ctx;

static inline int64_t cr_at(const pit_job *j, int64_t r)
{
    if (!j->cts || !col_valid(j->cts, r))
        return INT64_MIN; /* null created ranks below every value */
    return j->cdays ? ((const int32_t *)j->cts->values)[r] : ((const int64_t *)j->cts->values)[r];
}

static inline bool row_ok(const pit_job *j, bool ent, int64_t r)
{
    if (!col_valid(ent ? j->ets.c : j->fts.c, r))
        return false;
    for (size_t k = 0; k < j->nk; k++)
        if (!col_valid(ent ? j->keys[k].e : j->keys[k].f, r))
            return false;
    return true;
}

static inline uint64_t row_hash(const pit_job *j, bool ent, int64_t r)
{
    uint64_t h = 0x9e3779b97f4a7c15ULL;
    if (j->exact && j->nk == 1) {
        /* xor and mix64 are bijections: no two keys share a hash */
        h = mix64((uint64_t)key_int(ent ? j->keys[0].e : j->keys[0].f, r) ^ h);
    } else {
        for (size_t k = 0; k < j->nk; k++) {
            const ot_column *c = ent ? j->keys[k].e : j->keys[k].f;
            uint64_t kh;
            if (j->keys[k].bytes) {
                size_t len;
                const uint8_t *p = key_bytes(c, r, &len);
                kh = hash_bytes(p, len);
            } else {
                kh = mix64((uint64_t)key_int(c, r) ^ 0x6a09e667f3bcc909ULL);
            }
            h = mum(h ^ kh, 0x9fb21c651e98df25ULL);
        }
        h = mix64(h);
    }
#if OT_PIT_HASH_BITS < 64
    h &= (1ULL << OT_PIT_HASH_BITS) - 1;
#endif
    return h;
}

static inline bool col_key_eq(const ot_column *a, int64_t ia, const ot_column *b, int64_t ib,
                              bool bytes)
{
    if (!bytes)
        return key_int(a, ia) == key_int(b, ib);
    size_t la, lb;
    const uint8_t *pa = key_bytes(a, ia, &la), *pb = key_bytes(b, ib, &lb);
    return la == lb && memcmp(pa, pb, la) == 0;
}

/* Keys of row ra (entity side if a_ent) equal those of feature row rb. */
static inline bool keys_eq(const pit_job *j, bool a_ent, int64_t ra, int64_t rb)
{
    if (j->exact)
        return true; /* the caller compared the hashes */
    for (size_t k = 0; k < j->nk; k++)
        if (!col_key_eq(a_ent ? j->keys[k].e : j->keys[k].f, ra, j->keys[k].f, rb,
                        j->keys[k].bytes))
            return false;
    return true;
}

static inline size_t part_of(const pit_job *j, uint64_t h)
{
    return j->pbits ? (size_t)(h >> (64 - j->pbits)) : 0;
}

/* ---- the worker pool -------------------------------------------------- */

typedef void (*pit_task_fn)(pit_ctx *ctx, size_t task);

typedef struct pit_pool {
    pit_task_fn fn;
    pit_ctx *ctx;
    size_t n;
    atomic_size_t next;
} pit_pool;

static void *pit_worker(void *arg)
{
    pit_pool *p = arg;
    size_t t;
    while ((t = atomic_fetch_add(&p->next, 1)) < p->n)
        if (!atomic_load(&p->ctx->oom))
            p->fn(p->ctx, t);
    return NULL;
}

/* Run fn(ctx, 0..n-1) on up to `threads` threads (at most 64), the caller's
 * included. */
static void pit_run(pit_ctx *ctx, pit_task_fn fn, size_t n, int threads)
{
    pit_pool pool = {.fn = fn, .ctx = ctx, .n = n};
    size_t nt = threads > 1 ? (size_t)threads : 1;
    pthread_t tid[64];
    size_t started = 0;

    atomic_init(&pool.next, 0);
    if (nt > n)
        nt = n;
    if (nt > 64)
        nt = 64;
    for (size_t i = 1; i < nt; i++) {
        if (pthread_create(&tid[started], NULL, pit_worker, &pool) != 0)
            break; /* fewer threads still finish the work */
        started++;
    }
    pit_worker(&pool);
    for (size_t i = 0; i < started; i++)
        pthread_join(tid[i], NULL);
}

/* Map a stage-1/3 task to (job, side, chunk). */
static pit_job *chunk_task(pit_ctx *ctx, size_t task, bool *ent, size_t *chunk)
{
    *ent = false;
    *chunk = 0;
    for (size_t i = 0; i < ctx->n_jobs; i++) {
        pit_job *j = &ctx->jobs[i];
        if (task < j->f.nchunks) {
            *chunk = task;
            return j;
        }
        task -= j->f.nchunks;
        if (task < j->e.nchunks) {
            *ent = true;
            *chunk = task;
            return j;
        }
        task -= j->e.nchunks;
    }
    return NULL;
}

static void chunk_range(const pit_side *sd, size_t chunk, int64_t *a, int64_t *b)
{
    *a = (int64_t)chunk * PIT_CHUNK;
    *b = *a + PIT_CHUNK < sd->n ? *a + PIT_CHUNK : sd->n;
}

/* Stage 1: count usable rows per partition. */
static void task_hash(pit_ctx *ctx, size_t task)
{
    bool ent;
    size_t chunk;
    int64_t a, b;
    pit_job *j = chunk_task(ctx, task, &ent, &chunk);
    pit_side *sd = ent ? &j->e : &j->f;
    size_t *hist = sd->hist + chunk * j->np;

    chunk_range(sd, chunk, &a, &b);
    for (int64_t r = a; r < b; r++)
        if (row_ok(j, ent, r))
            hist[part_of(j, row_hash(j, ent, r))]++;
}

/* Stage 3: copy row, hash and times into the partitions. Rows stay in
 * ascending order within a partition (chunks are laid out in order). */
static void task_scatter(pit_ctx *ctx, size_t task)
{
    bool ent;
    size_t chunk;
    int64_t a, b;
    pit_job *j = chunk_task(ctx, task, &ent, &chunk);
    pit_side *sd = ent ? &j->e : &j->f;
    size_t *pos = sd->hist + chunk * j->np;
    const ts_conv *tc = ent ? &j->ets : &j->fts;

    chunk_range(sd, chunk, &a, &b);
    for (int64_t r = a; r < b; r++) {
        if (!row_ok(j, ent, r))
            continue;
        uint64_t h = row_hash(j, ent, r);
        size_t at = pos[part_of(j, h)]++;
        sd->row[at] = (uint32_t)r;
        sd->hash[at] = h;
        sd->ts[at] = ts_at(tc, r);
        if (sd->cr)
            sd->cr[at] = cr_at(j, r);
    }
}

/* Stage 2: counts -> write positions, partition-major, chunks in order. */
static void plan_positions(pit_side *sd, size_t np)
{
    size_t run = 0;
    for (size_t p = 0; p < np; p++) {
        sd->part[p] = run;
        for (size_t c = 0; c < sd->nchunks; c++) {
            size_t n = sd->hist[c * np + p];
            sd->hist[c * np + p] = run;
            run += n;
        }
    }
    sd->part[np] = run;
}

/* After stage 2: room for the usable rows of a side. */
static int side_alloc(pit_side *sd, size_t np, bool created)
{
    size_t n = sd->part[np] ? sd->part[np] : 1;
    sd->row = malloc(n * sizeof *sd->row);
    sd->hash = malloc(n * sizeof *sd->hash);
    sd->ts = malloc(n * sizeof *sd->ts);
    if (created)
        sd->cr = malloc(n * sizeof *sd->cr);
    return sd->row && sd->hash && sd->ts && (!created || sd->cr) ? 0 : -1;
}

static void side_free(pit_side *sd)
{
    free(sd->hist);
    free(sd->part);
    free(sd->row);
    free(sd->hash);
    free(sd->ts);
    free(sd->cr);
    sd->hist = sd->part = NULL;
    sd->row = NULL;
    sd->hash = NULL;
    sd->ts = sd->cr = NULL;
}

/* ---- stage 4: one partition ------------------------------------------- */

typedef struct pit_item {
    int64_t ts, cr;
    uint32_t idx;
} pit_item;

static inline bool item_lt(const pit_item *a, const pit_item *b)
{
    return a->ts < b->ts || (a->ts == b->ts && a->cr < b->cr);
}

/* Stable merge sort by (ts, cr); tmp holds n / 2 + 1 items (or more). */
static void item_sort(pit_item *a, pit_item *tmp, size_t n)
{
    if (n <= 16) {
        for (size_t i = 1; i < n; i++) {
            pit_item x = a[i];
            size_t k = i;
            while (k > 0 && item_lt(&x, &a[k - 1])) {
                a[k] = a[k - 1];
                k--;
            }
            a[k] = x;
        }
        return;
    }
    size_t h = n / 2;
    item_sort(a, tmp, h);
    item_sort(a + h, tmp, n - h);
    if (!item_lt(&a[h], &a[h - 1]))
        return;
    memcpy(tmp, a, h * sizeof *a);
    size_t i = 0, r = h, o = 0;
    while (i < h && r < n)
        a[o++] = item_lt(&a[r], &tmp[i]) ? a[r++] : tmp[i++];
    while (i < h)
        a[o++] = tmp[i++];
}

#define RADIX_BITS 11
#define RADIX_MIN  256 /* smaller runs use the merge sort */

/* Stable LSD radix sort of a[0..n) by ts (by_cr false) or cr, over the
 * digits of (key - min) that vary. tmp holds n items. */
static void item_radix(pit_item *a, pit_item *tmp, size_t n, bool by_cr)
{
    uint64_t lo = UINT64_MAX, hi = 0;
    size_t cnt[1u << RADIX_BITS];
    pit_item *src = a, *dst = tmp;

    /* keys as offset-binary so that unsigned order is signed order */
    for (size_t i = 0; i < n; i++) {
        uint64_t k = (uint64_t)(by_cr ? a[i].cr : a[i].ts) ^ (1ULL << 63);
        lo = k < lo ? k : lo;
        hi = k > hi ? k : hi;
    }
    if (lo == hi)
        return;
    unsigned bits = 64 - (unsigned)__builtin_clzll(hi - lo);
    for (unsigned shift = 0; shift < bits; shift += RADIX_BITS) {
        memset(cnt, 0, sizeof cnt);
        for (size_t i = 0; i < n; i++) {
            uint64_t k = ((uint64_t)(by_cr ? src[i].cr : src[i].ts) ^ (1ULL << 63)) - lo;
            cnt[(k >> shift) & ((1u << RADIX_BITS) - 1)]++;
        }
        size_t run = 0;
        for (size_t d = 0; d < (1u << RADIX_BITS); d++) {
            size_t c = cnt[d];
            cnt[d] = run;
            run += c;
        }
        for (size_t i = 0; i < n; i++) {
            uint64_t k = ((uint64_t)(by_cr ? src[i].cr : src[i].ts) ^ (1ULL << 63)) - lo;
            dst[cnt[(k >> shift) & ((1u << RADIX_BITS) - 1)]++] = src[i];
        }
        pit_item *t = src;
        src = dst;
        dst = t;
    }
    if (src != a)
        memcpy(a, src, n * sizeof *a);
}

/* Sort a[0..n) by (ts, cr), stably (ties keep ascending row order) unless
 * it is sorted already (time-ordered sources often are). tmp holds n items. */
static void items_order(pit_item *a, pit_item *tmp, size_t n)
{
    for (size_t i = 1; i < n; i++)
        if (item_lt(&a[i], &a[i - 1])) {
            if (n < RADIX_MIN) {
                item_sort(a, tmp, n);
            } else {
                item_radix(a, tmp, n, true); /* least significant key first */
                item_radix(a, tmp, n, false);
            }
            return;
        }
}

static inline int64_t ttl_floor(const pit_job *j, int64_t t)
{
    int64_t lo;
    if (!j->ttl || __builtin_sub_overflow(t, j->ttl, &lo))
        return INT64_MIN;
    return lo;
}

/* One partition's slices of both sides, and its scratch. Positions k index
 * the slices (fr[k] is the table row). */
typedef struct part_work {
    const uint32_t *fr, *er;
    const uint64_t *fh, *eh;
    const int64_t *ft, *fc, *et;
    size_t nf, ne;
    uint32_t *slot, *grep, *gid, *fstart, *S, *egid, *estart, *ES;
    uint64_t *ghash;
    pit_item *fi, *ei, *tmp;
} part_work;

static void work_free(part_work *w)
{
    free(w->slot);
    free(w->grep);
    free(w->gid);
    free(w->fstart);
    free(w->S);
    free(w->egid);
    free(w->estart);
    free(w->ES);
    free(w->ghash);
    free(w->fi);
    free(w->ei);
    free(w->tmp);
}

/* Match the entity rows of one key group: feature positions S[0..nf),
 * entity positions ES[0..ne), each in ascending row order. */
static void join_group(pit_job *j, part_work *w, const uint32_t *S, size_t nf, const uint32_t *ES,
                       size_t ne)
{
    if (ne <= OT_PIT_SCAN_MAX) {
        /* a few entity rows: one pass over the group each, no sorting */
        for (size_t q = 0; q < ne; q++) {
            int64_t t = w->et[ES[q]], lo = ttl_floor(j, t), bts = 0, bcr = 0;
            uint32_t best = PIT_NONE;
            for (size_t k = 0; k < nf; k++) {
                int64_t ts = w->ft[S[k]];
                if (ts > t || ts < lo)
                    continue;
                int64_t cr = w->fc ? w->fc[S[k]] : 0;
                /* S is in ascending row order: >= lets later rows win full ties */
                if (best == PIT_NONE || ts > bts || (ts == bts && cr >= bcr)) {
                    best = S[k];
                    bts = ts;
                    bcr = cr;
                }
            }
            if (best != PIT_NONE)
                j->match[w->er[ES[q]]] = w->fr[best];
        }
        return;
    }

    pit_item *fi = w->fi, *ei = w->ei;
    for (size_t k = 0; k < nf; k++) {
        fi[k].ts = w->ft[S[k]];
        fi[k].cr = w->fc ? w->fc[S[k]] : 0;
        fi[k].idx = w->fr[S[k]];
    }
    items_order(fi, w->tmp, nf);
    for (size_t q = 0; q < ne; q++) {
        ei[q].ts = w->et[ES[q]];
        ei[q].cr = 0;
        ei[q].idx = w->er[ES[q]];
    }
    items_order(ei, w->tmp, ne);

    size_t p = 0;
    for (size_t q = 0; q < ne; q++) {
        int64_t t = ei[q].ts;
        while (p < nf && fi[p].ts <= t)
            p++;
        if (p == 0)
            continue;
        if (fi[p - 1].ts >= ttl_floor(j, t))
            j->match[ei[q].idx] = fi[p - 1].idx;
    }
}

static int join_partition(pit_job *j, size_t part)
{
    part_work w = {0};
    size_t f0 = j->f.part[part], e0 = j->e.part[part], cap = 16, G = 0;
    int rc = -1;

    w.nf = j->f.part[part + 1] - f0;
    w.ne = j->e.part[part + 1] - e0;
    if (w.nf == 0 || w.ne == 0)
        return 0; /* every match stays -1 */
    w.fr = j->f.row + f0;
    w.fh = j->f.hash + f0;
    w.ft = j->f.ts + f0;
    w.fc = j->f.cr ? j->f.cr + f0 : NULL;
    w.er = j->e.row + e0;
    w.eh = j->e.hash + e0;
    w.et = j->e.ts + e0;
    while (cap < 2 * w.nf)
        cap <<= 1;
    w.slot = malloc(cap * sizeof *w.slot);
    w.ghash = malloc(w.nf * sizeof *w.ghash);
    w.grep = malloc(w.nf * sizeof *w.grep);
    w.gid = malloc(w.nf * sizeof *w.gid);
    w.egid = malloc(w.ne * sizeof *w.egid);
    if (!w.slot || !w.ghash || !w.grep || !w.gid || !w.egid)
        goto out;
    memset(w.slot, 0xff, cap * sizeof *w.slot);

    /* number the distinct feature keys; grep[g] is a row holding key g */
    for (size_t k = 0; k < w.nf; k++) {
        uint64_t h = w.fh[k];
        size_t i = (size_t)h & (cap - 1);
        for (;;) {
            uint32_t g = w.slot[i];
            if (g == PIT_NONE) {
                w.slot[i] = (uint32_t)G;
                w.ghash[G] = h;
                w.grep[G] = w.fr[k];
                w.gid[k] = (uint32_t)G++;
                break;
            }
            if (w.ghash[g] == h && keys_eq(j, false, w.fr[k], w.grep[g])) {
                w.gid[k] = g;
                break;
            }
            i = (i + 1) & (cap - 1);
        }
    }

    /* look up the entity keys */
    size_t nEm = 0;
    for (size_t k = 0; k < w.ne; k++) {
        uint64_t h = w.eh[k];
        size_t i = (size_t)h & (cap - 1);
        w.egid[k] = PIT_NONE;
        for (;;) {
            uint32_t g = w.slot[i];
            if (g == PIT_NONE)
                break;
            if (w.ghash[g] == h && keys_eq(j, true, w.er[k], w.grep[g])) {
                w.egid[k] = g;
                nEm++;
                break;
            }
            i = (i + 1) & (cap - 1);
        }
    }
    if (nEm == 0) {
        rc = 0;
        goto out;
    }

    /* counting sort of positions by group (stable: rows stay ascending) */
    w.fstart = calloc(G + 1, sizeof *w.fstart);
    w.estart = calloc(G + 1, sizeof *w.estart);
    w.S = malloc(w.nf * sizeof *w.S);
    w.ES = malloc(nEm * sizeof *w.ES);
    if (!w.fstart || !w.estart || !w.S || !w.ES)
        goto out;
    for (size_t k = 0; k < w.nf; k++)
        w.fstart[w.gid[k] + 1]++;
    for (size_t k = 0; k < w.ne; k++)
        if (w.egid[k] != PIT_NONE)
            w.estart[w.egid[k] + 1]++;
    size_t maxf = 0, maxe = 0;
    for (size_t g = 0; g < G; g++) {
        size_t fc = w.fstart[g + 1], ec = w.estart[g + 1];
        if (ec > OT_PIT_SCAN_MAX) {
            if (fc > maxf)
                maxf = fc;
            if (ec > maxe)
                maxe = ec;
        }
        w.fstart[g + 1] += w.fstart[g];
        w.estart[g + 1] += w.estart[g];
    }
    /* fill using the starts as cursors, then shift them back */
    for (size_t k = 0; k < w.nf; k++)
        w.S[w.fstart[w.gid[k]]++] = (uint32_t)k;
    for (size_t k = 0; k < w.ne; k++)
        if (w.egid[k] != PIT_NONE)
            w.ES[w.estart[w.egid[k]]++] = (uint32_t)k;
    memmove(w.fstart + 1, w.fstart, G * sizeof *w.fstart);
    memmove(w.estart + 1, w.estart, G * sizeof *w.estart);
    w.fstart[0] = w.estart[0] = 0;

    if (maxe) {
        size_t maxt = maxf > maxe ? maxf : maxe;
        w.fi = malloc(maxf * sizeof *w.fi);
        w.ei = malloc(maxe * sizeof *w.ei);
        w.tmp = malloc(maxt * sizeof *w.tmp);
        if (!w.fi || !w.ei || !w.tmp)
            goto out;
    }
    for (size_t g = 0; g < G; g++) {
        size_t a = w.estart[g], b = w.estart[g + 1];
        if (a == b)
            continue; /* no entity row asks for this key: never sorted */
        join_group(j, &w, w.S + w.fstart[g], w.fstart[g + 1] - w.fstart[g], w.ES + a, b - a);
    }
    rc = 0;
out:
    work_free(&w);
    return rc;
}

static void task_join(pit_ctx *ctx, size_t task)
{
    for (size_t i = 0; i < ctx->n_jobs; i++) {
        pit_job *j = &ctx->jobs[i];
        if (task < j->np) {
            if (join_partition(j, task) < 0)
                atomic_store(&ctx->oom, 1);
            return;
        }
        task -= j->np;
    }
}

/* ---- validation and setup --------------------------------------------- */

static bool is_time(const ot_column *c)
{
    return c->type.id == OT_TIMESTAMP || c->type.id == OT_DATE32;
}

static const ot_column *need_col(const ot_table *t, const char *name, const char *what, size_t v,
                                 ld_status *st)
{
    const ot_column *c = name ? ot_table_column(t, name) : NULL;
    if (!c)
        ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT,
                      strcmp(what, "entity") == 0 ? "FeastEntityDFMissingColumnsError" : NULL,
                      "feature view %zu: %s table has no column \"%s\"", v, what,
                      name ? name : "(null)");
    return c;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int check_names(const ot_table *ent, const ot_pit_view *views, size_t n_views, ld_status *st)
{
    size_t n = ent->n_cols, k = 0;
    for (size_t v = 0; v < n_views; v++)
        n += views[v].n_features;
    const char **names = malloc((n ? n : 1) * sizeof *names);
    if (!names)
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
    for (size_t c = 0; c < ent->n_cols; c++)
        names[k++] = ent->cols[c].name ? ent->cols[c].name : "";
    for (size_t v = 0; v < n_views; v++)
        for (size_t f = 0; f < views[v].n_features; f++)
            names[k++] = views[v].out_names[f];
    qsort(names, n, sizeof *names, name_cmp);
    for (size_t i = 1; i < n; i++)
        if (strcmp(names[i], names[i - 1]) == 0) {
            ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "FeatureNameCollisionError",
                          "duplicate output column \"%s\"", names[i]);
            free(names);
            return -1;
        }
    free(names);
    return 0;
}

static int job_init(pit_job *j, const ot_table *ent, const ot_column *ets, const ot_pit_view *v,
                    size_t vi, int threads, ld_status *st)
{
    const ot_column *fts;

    j->v = v;
    if (!v->source)
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "feature view %zu: no source table", vi);
    if (v->ttl_us < 0)
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "feature view %zu: negative ttl", vi);
    if (v->n_keys && (!v->join_keys || !v->entity_keys))
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "feature view %zu: join keys missing", vi);
    if (v->n_features && (!v->features || !v->out_names))
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "feature view %zu: feature names missing", vi);
    if (v->source->n_rows > PIT_MAX_ROWS)
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL,
                             "feature view %zu: too many rows", vi);
    for (size_t f = 0; f < v->n_features; f++) {
        if (!need_col(v->source, v->features[f], "source", vi, st))
            return -1;
        if (!v->out_names[f])
            return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                                 "feature view %zu: feature %zu has no output name", vi, f);
    }
    if (!(fts = need_col(v->source, v->event_ts, "source", vi, st)))
        return -1;
    if (!is_time(fts))
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "feature view %zu: event timestamp \"%s\" is not a timestamp", vi,
                             v->event_ts);
    if (v->created_ts) {
        if (!(j->cts = need_col(v->source, v->created_ts, "source", vi, st)))
            return -1;
        if (!is_time(j->cts))
            return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                                 "feature view %zu: created timestamp \"%s\" is not a timestamp",
                                 vi, v->created_ts);
        j->cdays = j->cts->type.id == OT_DATE32;
    }

    j->nk = v->n_keys;
    j->keys = calloc(j->nk ? j->nk : 1, sizeof *j->keys);
    if (!j->keys)
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
    for (size_t k = 0; k < j->nk; k++) {
        pit_key *key = &j->keys[k];
        if (!(key->f = need_col(v->source, v->join_keys[k], "source", vi, st)) ||
            !(key->e = need_col(ent, v->entity_keys[k], "entity", vi, st)))
            return -1;
        bool fi = key_is_int(key->f->type.id), ei = key_is_int(key->e->type.id);
        bool fb = key_is_bytes(key->f->type.id), eb = key_is_bytes(key->e->type.id);
        if (!(fi || fb) || !(ei || eb))
            return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                                 "feature view %zu: join key \"%s\": unsupported type", vi,
                                 v->join_keys[k]);
        if (fi != ei)
            return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                                 "feature view %zu: join key \"%s\" is %s in the source but "
                                 "%s in the entity table",
                                 vi, v->join_keys[k], fi ? "an integer" : "a string",
                                 ei ? "an integer" : "a string");
        key->bytes = fb;
    }

    int target = ts_unit(fts) == OT_NANO || ts_unit(ets) == OT_NANO ? OT_NANO : OT_MICRO;
    ts_conv_init(&j->fts, fts, target);
    ts_conv_init(&j->ets, ets, target);
    if (__builtin_mul_overflow(v->ttl_us, target == OT_NANO ? 1000 : 1, &j->ttl))
        j->ttl = 0; /* beyond ~292 years: no bound */

    j->exact = OT_PIT_HASH_BITS == 64 && (j->nk == 0 || (j->nk == 1 && !j->keys[0].bytes));
    j->f.n = v->source->n_rows;
    j->e.n = ent->n_rows;
    /* big partitions stay cache-friendly; with threads, aim at >= 8 per thread */
    size_t rows = (size_t)(j->f.n + j->e.n), np = 1;
    size_t want = threads > 1 ? 8 * (size_t)threads : 1;
    while (np < PIT_MAX_PARTS &&
           (np * PIT_PART_ROWS < rows || (np < want && np * PIT_PART_MIN < rows)))
        np <<= 1;
    j->np = np;
    while ((1u << j->pbits) < np)
        j->pbits++;
    pit_side *sides[2] = {&j->f, &j->e};
    for (int i = 0; i < 2; i++) {
        pit_side *sd = sides[i];
        sd->nchunks = (size_t)((sd->n + PIT_CHUNK - 1) / PIT_CHUNK);
        sd->hist = calloc((sd->nchunks ? sd->nchunks : 1) * np, sizeof *sd->hist);
        sd->part = malloc((np + 1) * sizeof *sd->part);
        if (!sd->hist || !sd->part)
            return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
    }
    return 0;
}

/* Bytes of a view's partitioned copies (upper bound: every row usable). */
static size_t job_bytes(const pit_job *j)
{
    size_t f = sizeof(uint32_t) + sizeof(uint64_t) + sizeof(int64_t) + (j->cts ? 8 : 0);
    size_t e = sizeof(uint32_t) + sizeof(uint64_t) + sizeof(int64_t);
    return (size_t)j->f.n * f + (size_t)j->e.n * e;
}

static void job_free(pit_job *j)
{
    free(j->keys);
    j->keys = NULL;
    side_free(&j->f);
    side_free(&j->e);
}

int ot_pit_match(const ot_table *entities, const char *entity_ts_col, const ot_pit_view *views,
                 size_t n_views, int threads, int64_t *const *match, ld_status *st)
{
    pit_ctx ctx = {0};
    const ot_column *ets;
    int rc = -1;

    if (!entities || (n_views && (!views || !match)))
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL, "no entity table or views");
    if (entities->n_rows > PIT_MAX_ROWS)
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL,
                             "entity table: too many rows");
    ets = entity_ts_col ? ot_table_column(entities, entity_ts_col) : NULL;
    if (!ets)
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "FeastEntityDFMissingColumnsError",
                             "entity table has no timestamp column \"%s\"",
                             entity_ts_col ? entity_ts_col : "(null)");
    if (!is_time(ets))
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "entity column \"%s\" is not a timestamp", entity_ts_col);

    atomic_init(&ctx.oom, 0);
    ctx.n_jobs = n_views;
    ctx.jobs = calloc(n_views ? n_views : 1, sizeof *ctx.jobs);
    if (!ctx.jobs)
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
    for (size_t v = 0; v < n_views; v++) {
        pit_job *j = &ctx.jobs[v];
        if (job_init(j, entities, ets, &views[v], v, threads, st) < 0)
            goto out;
        j->match = match[v];
        for (int64_t i = 0; i < j->e.n; i++)
            j->match[i] = -1;
    }

    /* Views run in waves whose partitioned copies fit OT_PIT_WAVE_BYTES (a
     * bigger view runs alone): every stage is parallel across the wave's
     * views and their chunks or partitions, and the copies of one wave are
     * freed before the next, so the join's memory is bounded by the biggest
     * view, not the sum of all. */
    for (size_t w0 = 0, w1; w0 < n_views; w0 = w1) {
        size_t bytes = job_bytes(&ctx.jobs[w0]);
        for (w1 = w0 + 1; w1 < n_views && bytes + job_bytes(&ctx.jobs[w1]) <= OT_PIT_WAVE_BYTES;
             w1++)
            bytes += job_bytes(&ctx.jobs[w1]);
        pit_ctx wave = {.jobs = &ctx.jobs[w0], .n_jobs = w1 - w0};
        atomic_init(&wave.oom, 0);
        size_t n_chunks = 0, n_parts = 0;
        for (size_t v = w0; v < w1; v++) {
            n_chunks += ctx.jobs[v].f.nchunks + ctx.jobs[v].e.nchunks;
            n_parts += ctx.jobs[v].np;
        }
        pit_run(&wave, task_hash, n_chunks, threads);
        for (size_t v = w0; v < w1; v++) {
            pit_job *j = &ctx.jobs[v];
            plan_positions(&j->f, j->np);
            plan_positions(&j->e, j->np);
            if (side_alloc(&j->f, j->np, j->cts != NULL) < 0 ||
                side_alloc(&j->e, j->np, false) < 0) {
                ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
                goto out;
            }
        }
        pit_run(&wave, task_scatter, n_chunks, threads);
        pit_run(&wave, task_join, n_parts, threads);
        for (size_t v = w0; v < w1; v++)
            job_free(&ctx.jobs[v]);
        if (atomic_load(&wave.oom)) {
            ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
            goto out;
        }
    }
    rc = 0;
out:
    for (size_t v = 0; v < n_views; v++)
        job_free(&ctx.jobs[v]);
    free(ctx.jobs);
    return rc;
}

/* ---- gathering columns ------------------------------------------------ */

static size_t fixed_width(ot_type_id id)
{
    switch (id) {
    case OT_INT32:
    case OT_FLOAT32:
    case OT_DATE32:
        return 4;
    case OT_INT64:
    case OT_FLOAT64:
    case OT_TIMESTAMP:
        return 8;
    default:
        return 0;
    }
}

static inline int64_t src_row(const int64_t *idx, int64_t off, int64_t i)
{
    return idx ? idx[i] : off + i;
}

static inline void span_of(const ot_column *c, int64_t r, int64_t *a, int64_t *b)
{
    if (c->type.id == OT_LARGE_UTF8) {
        *a = c->offsets64[r];
        *b = c->offsets64[r + 1];
    } else {
        *a = c->offsets[r];
        *b = c->offsets[r + 1];
    }
}

/* Whether idx[0..n) is a run of consecutive rows (pull_all's selection). */
static bool idx_run(const int64_t *idx, int64_t n)
{
    if (!idx || n == 0 || idx[0] < 0)
        return false;
    for (int64_t i = 1; i < n; i++)
        if (idx[i] != idx[i - 1] + 1)
            return false;
    return true;
}

/* Gather rows idx[0..n) (NULL: rows off..off+n) of src into dst; nulls
 * where the index is negative or the source row is null. */
static int col_take(const ot_column *src, const int64_t *idx, int64_t off, int64_t n,
                    const char *name, ot_column *dst)
{
    size_t nb = (size_t)(n + 7) / 8, w = fixed_width(src->type.id);
    int64_t nulls = 0;
    /* consecutive rows from `first`: fixed-width values are one copy */
    bool run = idx_run(idx, n);
    int64_t first = run ? idx[0] : off;

    memset(dst, 0, sizeof *dst);
    dst->length = n;
    if (!(dst->name = strdup(name ? name : "")))
        goto oom;
    ot_type_copy(&dst->type, &src->type);
    if (src->type.id == OT_NULL) {
        dst->null_count = n;
        return 0;
    }

    if ((run || !idx) && !src->validity)
        goto no_nulls; /* every row valid: no bitmap */
    if (!(dst->validity = calloc(nb ? nb : 1, 1)))
        goto oom;
    for (int64_t i = 0; i < n; i++) {
        int64_t r = src_row(idx, off, i);
        if (r >= 0 && col_valid(src, r))
            bit_set(dst->validity, i);
        else
            nulls++;
    }
    dst->null_count = nulls;
    if (!nulls) {
        free(dst->validity);
        dst->validity = NULL;
    }
no_nulls:
#define TAKE_VALID(i) (!dst->validity || bit_get(dst->validity, (i)))

    if (w) {
        if (!(dst->values = malloc(n ? (size_t)n * w : 1)))
            goto oom;
        if (!idx || run) {
            if (n)
                memcpy(dst->values, (const uint8_t *)src->values + (size_t)first * w,
                       (size_t)n * w);
        } else if (w == 8) {
            const int64_t *s = src->values;
            int64_t *d = dst->values;
            for (int64_t i = 0; i < n; i++) /* zero under nulls: no stale heap bytes */
                d[i] = idx[i] >= 0 ? s[idx[i]] : 0;
        } else {
            const int32_t *s = src->values;
            int32_t *d = dst->values;
            for (int64_t i = 0; i < n; i++)
                d[i] = idx[i] >= 0 ? s[idx[i]] : 0;
        }
        return 0;
    }

    switch (src->type.id) {
    case OT_BOOL:
        if (!(dst->values = calloc(nb ? nb : 1, 1)))
            goto oom;
        for (int64_t i = 0; i < n; i++) {
            int64_t r = src_row(idx, off, i);
            if (r >= 0 && bit_get(src->values, r))
                bit_set(dst->values, i);
        }
        return 0;
    case OT_UTF8:
    case OT_BINARY:
    case OT_LARGE_UTF8: {
        bool large = src->type.id == OT_LARGE_UTF8;
        int64_t total = 0, a, b, at = 0;
        for (int64_t i = 0; i < n; i++)
            if (TAKE_VALID(i)) {
                span_of(src, src_row(idx, off, i), &a, &b);
                total += b - a;
            }
        if (!large && total > INT32_MAX)
            goto oom;
        if (large)
            dst->offsets64 = malloc((size_t)(n + 1) * sizeof *dst->offsets64);
        else
            dst->offsets = malloc((size_t)(n + 1) * sizeof *dst->offsets);
        dst->data = malloc(total ? (size_t)total : 1);
        if ((large ? !dst->offsets64 : !dst->offsets) || !dst->data)
            goto oom;
        for (int64_t i = 0; i <= n; i++) {
            if (i > 0 && TAKE_VALID(i - 1)) {
                span_of(src, src_row(idx, off, i - 1), &a, &b);
                if (b > a)
                    memcpy(dst->data + at, src->data + a, (size_t)(b - a));
                at += b - a;
            }
            if (large)
                dst->offsets64[i] = at;
            else
                dst->offsets[i] = (int32_t)at;
        }
        dst->data_len = total;
        return 0;
    }
    case OT_LIST: {
        int64_t total = 0, at = 0;
        for (int64_t i = 0; i < n; i++)
            if (TAKE_VALID(i)) {
                int64_t r = src_row(idx, off, i);
                total += src->offsets[r + 1] - src->offsets[r];
            }
        if (total > INT32_MAX || !src->child)
            goto oom;
        int64_t *cidx = malloc((total ? (size_t)total : 1) * sizeof *cidx);
        dst->offsets = malloc((size_t)(n + 1) * sizeof *dst->offsets);
        dst->child = calloc(1, sizeof *dst->child);
        if (!cidx || !dst->offsets || !dst->child) {
            free(cidx);
            goto oom;
        }
        dst->offsets[0] = 0;
        for (int64_t i = 0; i < n; i++) {
            if (TAKE_VALID(i)) {
                int64_t r = src_row(idx, off, i);
                for (int64_t e = src->offsets[r]; e < src->offsets[r + 1]; e++)
                    cidx[at++] = e;
            }
            dst->offsets[i + 1] = (int32_t)at;
        }
        int rc = col_take(src->child, cidx, 0, total, src->child->name, dst->child);
        free(cidx);
        if (rc < 0)
            goto oom;
        return 0;
    }
    default:
        goto oom;
    }
#undef TAKE_VALID
oom:
    ot_column_clear(dst);
    return -1;
}

int ot_column_take(const ot_column *src, const int64_t *idx, int64_t n, const char *name,
                   ot_column *dst, ld_status *st)
{
    if (col_take(src, idx, 0, n, name, dst) < 0)
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL,
                             "column \"%s\": out of memory or too large", name ? name : "");
    return 0;
}

/* ---- gathering a result in pieces ------------------------------------ */

typedef struct gather_ctx {
    pit_ctx base; /* first: tasks get a pit_ctx pointer */
    const ot_gather *g;
    int64_t off, n;
    ot_table *out;
} gather_ctx;

static void task_gather(pit_ctx *base, size_t k)
{
    gather_ctx *o = (gather_ctx *)base;
    const ot_gather *g = o->g;
    const int64_t *idx = g->idx[k] ? g->idx[k] + o->off : NULL;
    if (col_take(g->src[k], idx, o->off, o->n, g->names[k], &o->out->cols[k]) < 0)
        atomic_store(&base->oom, 1);
}

int ot_gather_rows(const ot_gather *g, int64_t off, int64_t n, int threads, ot_table **out,
                   ld_status *st)
{
    *out = NULL;
    if (off < 0 || n < 0 || off > g->n_rows || n > g->n_rows - off)
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "rows %lld..%lld are outside the result's %lld", (long long)off,
                             (long long)(off + n), (long long)g->n_rows);
    gather_ctx o = {0};
    atomic_init(&o.base.oom, 0);
    o.g = g;
    o.off = off;
    o.n = n;
    if (!(o.out = ot_table_new(g->n_cols, n)))
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
    pit_run(&o.base, task_gather, g->n_cols, threads);
    if (atomic_load(&o.base.oom)) {
        ot_table_free(o.out);
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL,
                             "out of memory gathering the result");
    }
    *out = o.out;
    return 0;
}

/* ---- ot_pit_plan / ot_pit_join ----------------------------------------- */

typedef struct pit_plan {
    ot_gather g; /* first: the caller holds a pointer to it */
    size_t n_views;
    int64_t **match;
} pit_plan;

void ot_pit_plan_free(ot_gather *g)
{
    pit_plan *p = (pit_plan *)g;
    if (!p)
        return;
    if (p->match)
        for (size_t v = 0; v < p->n_views; v++)
            free(p->match[v]);
    free(p->match);
    free(p->g.src);
    free(p->g.idx);
    free(p->g.names);
    free(p);
}

int ot_pit_plan(const ot_table *entities, const char *entity_ts_col, const ot_pit_view *views,
                size_t n_views, int threads, ot_gather **out, ld_status *st)
{
    *out = NULL;
    if (!entities || (n_views && !views))
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL, "no entity table or views");
    for (size_t v = 0; v < n_views; v++)
        if (views[v].n_features && (!views[v].features || !views[v].out_names))
            return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                                 "feature view %zu: feature names missing", v);
    if (check_names(entities, views, n_views, st) < 0)
        return -1;

    pit_plan *p = calloc(1, sizeof *p);
    size_t n_out = entities->n_cols;
    for (size_t v = 0; v < n_views; v++)
        n_out += views[v].n_features;
    if (!p)
        goto oom;
    p->n_views = n_views;
    p->match = calloc(n_views ? n_views : 1, sizeof *p->match);
    p->g.src = calloc(n_out ? n_out : 1, sizeof *p->g.src);
    p->g.idx = calloc(n_out ? n_out : 1, sizeof *p->g.idx);
    p->g.names = calloc(n_out ? n_out : 1, sizeof *p->g.names);
    if (!p->match || !p->g.src || !p->g.idx || !p->g.names)
        goto oom;
    for (size_t v = 0; v < n_views; v++)
        if (!(p->match[v] = malloc((entities->n_rows ? (size_t)entities->n_rows : 1) *
                                   sizeof **p->match)))
            goto oom;
    if (ot_pit_match(entities, entity_ts_col, views, n_views, threads, p->match, st) < 0) {
        ot_pit_plan_free(&p->g);
        return -1;
    }
    size_t k = 0;
    for (size_t c = 0; c < entities->n_cols; c++, k++) {
        p->g.src[k] = &entities->cols[c];
        p->g.names[k] = entities->cols[c].name;
    }
    for (size_t v = 0; v < n_views; v++)
        for (size_t f = 0; f < views[v].n_features; f++, k++) {
            p->g.src[k] = ot_table_column(views[v].source, views[v].features[f]);
            p->g.idx[k] = p->match[v];
            p->g.names[k] = views[v].out_names[f];
        }
    p->g.n_cols = n_out;
    p->g.n_rows = entities->n_rows;
    *out = &p->g;
    return 0;
oom:
    ot_pit_plan_free(p ? &p->g : NULL);
    return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
}

int ot_pit_join(const ot_table *entities, const char *entity_ts_col, const ot_pit_view *views,
                size_t n_views, int threads, ot_table **out, ld_status *st)
{
    ot_gather *g;
    *out = NULL;
    if (ot_pit_plan(entities, entity_ts_col, views, n_views, threads, &g, st) < 0)
        return -1;
    int rc = ot_gather_rows(g, 0, g->n_rows, threads, out, st);
    ot_pit_plan_free(g);
    return rc;
}
