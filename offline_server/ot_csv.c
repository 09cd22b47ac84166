/* ot_csv: CSV into ot_table, two passes over a mapped file (see ot_csv.h).
 *
 * Pass 1 tokenizes every record and narrows each column's set of candidate
 * types (int64, float64, timestamp, bool; utf8 always fits) and sums its
 * string bytes; pass 2 tokenizes again and converts straight into the
 * column buffers, whose sizes are now known. Fields are spans of the input;
 * only quoted fields with "" inside are copied to be unescaped. */
#include "ot_csv.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define CSV_MAX_RECORD (1u << 20)
#define CSV_MAX_COLS   4096

/* bytes that end an unquoted field */
static const bool csv_special[256] = {[','] = true, ['\n'] = true, ['\r'] = true};

enum { C_INT = 1, C_FLOAT = 2, C_TS = 4, C_BOOL = 8, C_ALL = 15 };

typedef struct csv_field {
    const char *p;
    size_t len;
    bool quoted, escaped;
} csv_field;

typedef struct csv_parser {
    const char *p, *end, *name;
    int64_t line;     /* line of the next record (1-based) */
    int64_t rec_line; /* line where the last record began */
    size_t max_record;
} csv_parser;

typedef struct csv_col {
    unsigned cand;
    bool any_tz;
    int64_t bytes; /* string bytes after unescaping */
} csv_col;

static int csv_err(csv_parser *ps, ld_status *st, const char *msg)
{
    return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL, "%s:%lld: %s", ps->name,
                         (long long)ps->rec_line, msg);
}

/* One record into f[0..*nf). Return: 1 record, 0 end of input, -1 error. */
static int csv_record(csv_parser *ps, csv_field *f, size_t maxf, size_t *nf, ld_status *st)
{
    const char *q, *e = ps->end, *start;
    size_t n = 0;

    for (;;) { /* skip blank lines */
        if (ps->p >= e)
            return 0;
        if (*ps->p == '\n') {
            ps->p++;
        } else if (*ps->p == '\r') {
            ps->p += ps->p + 1 < e && ps->p[1] == '\n' ? 2 : 1;
        } else {
            break;
        }
        ps->line++;
    }
    start = q = ps->p;
    ps->rec_line = ps->line;
    for (;;) {
        if (n == maxf) {
            char msg[64];
            snprintf(msg, sizeof msg, "more than %zu fields", maxf);
            return csv_err(ps, st, msg);
        }
        csv_field *fl = &f[n++];
        fl->escaped = false;
        if (q < e && *q == '"') {
            fl->quoted = true;
            fl->p = ++q;
            for (;;) {
                if (q >= e)
                    return csv_err(ps, st, "unterminated quoted field");
                if (*q == '"') {
                    if (q + 1 < e && q[1] == '"') {
                        fl->escaped = true;
                        q += 2;
                        continue;
                    }
                    break;
                }
                if (*q == '\n' || (*q == '\r' && !(q + 1 < e && q[1] == '\n')))
                    ps->line++;
                q++;
                if ((size_t)(q - start) > ps->max_record)
                    return csv_err(ps, st, "record too long");
            }
            fl->len = (size_t)(q - fl->p);
            q++;
            if (q < e && *q != ',' && *q != '\n' && *q != '\r')
                return csv_err(ps, st, "unexpected character after a closing quote");
        } else {
            fl->quoted = false;
            fl->p = q;
            while (q < e && !csv_special[(uint8_t)*q])
                q++;
            fl->len = (size_t)(q - fl->p);
        }
        if ((size_t)(q - start) > ps->max_record)
            return csv_err(ps, st, "record too long");
        if (q >= e)
            break;
        if (*q == ',') {
            q++;
            continue;
        }
        q += *q == '\r' && q + 1 < e && q[1] == '\n' ? 2 : 1;
        ps->line++;
        break;
    }
    ps->p = q;
    *nf = n;
    return 1;
}

/* Unescape a quoted field with "" into dst (len bytes at most); returns length. */
static size_t unescape(const csv_field *f, char *dst)
{
    size_t o = 0;
    for (size_t i = 0; i < f->len; i++) {
        dst[o++] = f->p[i];
        if (f->p[i] == '"')
            i++; /* the second quote of a pair */
    }
    return o;
}

static size_t unescaped_len(const csv_field *f)
{
    size_t quotes = 0;
    for (size_t i = 0; i < f->len; i++)
        quotes += f->p[i] == '"';
    return f->len - quotes / 2;
}

/* ---- value parsers ---------------------------------------------------- */

static bool parse_int(const char *p, size_t n, int64_t *out)
{
    size_t i = 0;
    bool neg = false;
    uint64_t v = 0;

    if (n && (p[0] == '+' || p[0] == '-')) {
        neg = p[0] == '-';
        i = 1;
    }
    if (i == n)
        return false;
    for (; i < n; i++) {
        unsigned d = (unsigned)(p[i] - '0');
        if (d > 9)
            return false;
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    if (neg ? v > (uint64_t)INT64_MAX + 1 : v > (uint64_t)INT64_MAX)
        return false;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return true;
}

static bool ieq(const char *p, size_t n, const char *word)
{
    return strlen(word) == n && strncasecmp(p, word, n) == 0;
}

static bool float_syntax(const char *p, size_t n)
{
    size_t i = 0, digits = 0;
    if (n && (p[0] == '+' || p[0] == '-'))
        i++;
    if (ieq(p + i, n - i, "nan") || ieq(p + i, n - i, "inf") || ieq(p + i, n - i, "infinity"))
        return true;
    while (i < n && p[i] >= '0' && p[i] <= '9')
        i++, digits++;
    if (i < n && p[i] == '.')
        for (i++; i < n && p[i] >= '0' && p[i] <= '9'; i++)
            digits++;
    if (!digits)
        return false;
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        size_t ed = 0;
        i++;
        if (i < n && (p[i] == '+' || p[i] == '-'))
            i++;
        for (; i < n && p[i] >= '0' && p[i] <= '9'; i++)
            ed++;
        if (!ed)
            return false;
    }
    return i == n;
}

/* Clinger's fast path: a mantissa of at most 2^53 and a power of ten of at
 * most 22 are both exact doubles, so one multiplication or division gives
 * the correctly rounded result, the same strtod gives. Anything else (long
 * mantissas, big exponents, nan, inf) returns false for strtod to handle. */
static bool fast_float(const char *p, size_t n, double *out)
{
    static const double p10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                   1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                   1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    size_t i = 0;
    bool neg = false;
    uint64_t m = 0;
    int digits = 0, e10 = 0;

    if (n && (p[0] == '+' || p[0] == '-')) {
        neg = p[0] == '-';
        i++;
    }
    for (; i < n && p[i] >= '0' && p[i] <= '9'; i++) {
        if (m == 0 && p[i] == '0')
            continue;
        if (++digits > 19)
            return false;
        m = m * 10 + (uint64_t)(p[i] - '0');
    }
    if (i < n && p[i] == '.')
        for (i++; i < n && p[i] >= '0' && p[i] <= '9'; i++) {
            e10--;
            if (m == 0 && p[i] == '0')
                continue;
            if (++digits > 19)
                return false;
            m = m * 10 + (uint64_t)(p[i] - '0');
        }
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        int es = 1, ev = 0;
        i++;
        if (i < n && (p[i] == '+' || p[i] == '-'))
            es = p[i++] == '-' ? -1 : 1;
        for (; i < n && p[i] >= '0' && p[i] <= '9'; i++)
            if (ev < 10000)
                ev = ev * 10 + (p[i] - '0');
        e10 += es * ev;
    }
    if (i != n || m > (1ULL << 53))
        return false;
    double d = (double)m;
    if (m != 0) {
        if (e10 < -22 || e10 > 22)
            return false;
        d = e10 < 0 ? d / p10[-e10] : d * p10[e10];
    }
    *out = neg ? -d : d;
    return true;
}

static bool parse_float(const char *p, size_t n, double *out)
{
    char buf[512];
    if (n >= sizeof buf || !float_syntax(p, n))
        return false;
    if (fast_float(p, n, out))
        return true;
    memcpy(buf, p, n);
    buf[n] = 0;
    *out = strtod(buf, NULL); /* C locale: '.' is the decimal point */
    return true;
}

static bool parse_bool(const char *p, size_t n, bool *out)
{
    if (ieq(p, n, "true"))
        return *out = true, true;
    if (ieq(p, n, "false"))
        return *out = false, true;
    return false;
}

static bool digits_at(const char *p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return true;
}

static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m)
{
    static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : dim[m - 1];
}

/* ISO 8601 (see ot_csv.h) into µs or ns since the epoch, UTC. */
static bool parse_ts(const char *p, size_t n, bool nanos, int64_t *out, bool *has_tz)
{
    const char *e = p + n;
    int y, mo, d, h = 0, mi = 0, s = 0, off = 0;
    int64_t frac = 0; /* ns */

    *has_tz = false;
    if (n < 10 || !digits_at(p, 4, &y) || p[4] != '-' || !digits_at(p + 5, 2, &mo) || p[7] != '-' ||
        !digits_at(p + 8, 2, &d))
        return false;
    p += 10;
    if (p < e && (*p == 'T' || *p == 't' || *p == ' ')) {
        p++;
        if (e - p < 5 || !digits_at(p, 2, &h) || p[2] != ':' || !digits_at(p + 3, 2, &mi))
            return false;
        p += 5;
        if (p < e && *p == ':') {
            if (e - p < 3 || !digits_at(p + 1, 2, &s))
                return false;
            p += 3;
            if (p < e && (*p == '.' || *p == ',')) {
                int nd = 0;
                for (p++; p < e && *p >= '0' && *p <= '9'; p++, nd++)
                    if (nd < 9)
                        frac = frac * 10 + (*p - '0');
                if (!nd)
                    return false;
                for (; nd < 9; nd++)
                    frac *= 10;
            }
        }
        if (p < e && *p == ' ' && p + 1 < e)
            p++;
        if (p < e && (*p == 'Z' || *p == 'z')) {
            *has_tz = true;
            p++;
        } else if (p < e && (*p == '+' || *p == '-')) {
            int sign = *p == '-' ? -1 : 1, oh, om = 0;
            p++;
            if (e - p < 2 || !digits_at(p, 2, &oh))
                return false;
            p += 2;
            if (p < e && *p == ':')
                p++;
            if (e - p >= 2 && digits_at(p, 2, &om))
                p += 2;
            if (oh > 23 || om > 59)
                return false;
            off = sign * (oh * 3600 + om * 60);
            *has_tz = true;
        }
    } else if (p < e && (*p == 'Z' || *p == 'z')) {
        *has_tz = true;
        p++;
    }
    if (p != e || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 ||
        s > 59)
        return false;
    int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - off, v;
    if (nanos) {
        if (secs < 0 && frac > 0) { /* reach down to INT64_MIN without overflowing */
            secs++;
            frac -= 1000000000;
        }
        if (__builtin_mul_overflow(secs, (int64_t)1000000000, &v) ||
            __builtin_add_overflow(v, frac, &v))
            return false;
    } else {
        v = secs * 1000000 + frac / 1000; /* years 0..9999 fit easily */
    }
    *out = v;
    return true;
}

/* ---- the two passes --------------------------------------------------- */

static void infer(csv_col *c, const csv_field *f, bool nanos)
{
    int64_t iv;
    bool bv, tz;

    if (f->len == 0)
        return; /* null, or "" (a string if the column ends up utf8) */
    c->bytes += f->escaped ? (int64_t)unescaped_len(f) : (int64_t)f->len;
    if (f->escaped) {
        c->cand = 0; /* no number, date or bool contains a quote */
        return;
    }
    if ((c->cand & C_INT) && !parse_int(f->p, f->len, &iv))
        c->cand &= ~(unsigned)C_INT;
    if ((c->cand & C_FLOAT) && !(c->cand & C_INT) && !float_syntax(f->p, f->len))
        c->cand &= ~(unsigned)C_FLOAT;
    if (c->cand & C_TS) {
        if (!parse_ts(f->p, f->len, nanos, &iv, &tz))
            c->cand &= ~(unsigned)C_TS;
        else
            c->any_tz |= tz;
    }
    if ((c->cand & C_BOOL) && !parse_bool(f->p, f->len, &bv))
        c->cand &= ~(unsigned)C_BOOL;
}

static ot_type_id pick_type(const csv_col *c, bool seen)
{
    if (!seen || !c->cand)
        return c->bytes > INT32_MAX ? OT_LARGE_UTF8 : OT_UTF8;
    if (c->cand & C_INT)
        return OT_INT64;
    if (c->cand & C_FLOAT)
        return OT_FLOAT64;
    if (c->cand & C_TS)
        return OT_TIMESTAMP;
    if (c->cand & C_BOOL)
        return OT_BOOL;
    return OT_UTF8;
}

static int col_alloc(ot_column *c, int64_t rows, int64_t bytes)
{
    size_t n = rows ? (size_t)rows : 1, nb = (n + 7) / 8;
    if (!(c->validity = calloc(nb, 1)))
        return -1;
    switch (c->type.id) {
    case OT_INT64:
    case OT_FLOAT64:
    case OT_TIMESTAMP:
        c->values = calloc(n, 8);
        return c->values ? 0 : -1;
    case OT_BOOL:
        c->values = calloc(nb, 1);
        return c->values ? 0 : -1;
    case OT_LARGE_UTF8:
        c->offsets64 = calloc(n + 1, sizeof *c->offsets64);
        c->data = malloc(bytes ? (size_t)bytes : 1);
        return c->offsets64 && c->data ? 0 : -1;
    default:
        c->offsets = calloc(n + 1, sizeof *c->offsets);
        c->data = malloc(bytes ? (size_t)bytes : 1);
        return c->offsets && c->data ? 0 : -1;
    }
}

/* Store field f as row r of c; data_len is the string cursor. */
static void col_put(ot_column *c, int64_t r, const csv_field *f, bool nanos)
{
    bool valid =
            f->len > 0 || (f->quoted && (c->type.id == OT_UTF8 || c->type.id == OT_LARGE_UTF8));
    int64_t iv = 0;
    bool tz, bv = false;

    if (valid) {
        c->validity[r >> 3] |= (uint8_t)(1u << (r & 7));
        switch (c->type.id) {
        case OT_INT64:
            parse_int(f->p, f->len, &iv);
            ((int64_t *)c->values)[r] = iv;
            break;
        case OT_FLOAT64:
            parse_float(f->p, f->len, &((double *)c->values)[r]);
            break;
        case OT_TIMESTAMP:
            parse_ts(f->p, f->len, nanos, &((int64_t *)c->values)[r], &tz);
            break;
        case OT_BOOL:
            parse_bool(f->p, f->len, &bv);
            if (bv)
                ((uint8_t *)c->values)[r >> 3] |= (uint8_t)(1u << (r & 7));
            break;
        default:
            if (f->escaped) {
                c->data_len += (int64_t)unescape(f, (char *)c->data + c->data_len);
            } else if (f->len) {
                memcpy(c->data + c->data_len, f->p, f->len);
                c->data_len += (int64_t)f->len;
            }
            break;
        }
    } else {
        c->null_count++;
    }
    if (c->type.id == OT_LARGE_UTF8)
        c->offsets64[r + 1] = c->data_len;
    else if (c->type.id == OT_UTF8)
        c->offsets[r + 1] = (int32_t)c->data_len;
}

/* A mapped input whose parsed pages are handed back (MADV_DONTNEED) as a
 * pass goes: they hold nothing that is looked at again (names are copied;
 * a page touched anew is read back from the file). */
#define CSV_DROP_STEP ((size_t)8 << 20)

typedef struct csv_drop {
    const char *base; /* page-aligned start of the mapping; NULL: not mapped */
    size_t done;      /* bytes handed back */
    size_t page;
} csv_drop;

static void drop_behind(csv_drop *d, const char *p)
{
    if (!d->base)
        return;
    size_t upto = (size_t)(p - d->base) & ~(d->page - 1);
    if (upto < d->done + CSV_DROP_STEP)
        return;
    madvise((void *)(d->base + d->done), upto - d->done, MADV_DONTNEED);
    d->done = upto;
}

static bool wanted(const ot_csv_opts *o, const char *name)
{
    if (!o->columns)
        return true;
    for (size_t i = 0; i < o->n_columns; i++)
        if (o->columns[i] && !strcmp(o->columns[i], name))
            return true;
    return false;
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; names && i < n; i++)
        free(names[i]);
    free(names);
}

static int csv_parse(const char *buf, size_t len, const char *name, const ot_csv_opts *o,
                     bool mapped, ot_table **out, ld_status *st)
{
    ot_csv_opts def = {0};
    csv_parser ps = {0};
    csv_field *f = NULL;
    csv_col *cols = NULL;
    ot_table *t = NULL;
    size_t nc = 0, nf, maxc, nw = 0;
    char **names = NULL;  /* the header's names */
    ptrdiff_t *at = NULL; /* file column -> table column; -1: not read */
    int64_t rows = 0;
    int rc;
    csv_drop drop = {.base = mapped ? buf : NULL, .page = (size_t)sysconf(_SC_PAGESIZE)};

    *out = NULL;
    if (!o)
        o = &def;
    maxc = o->max_cols ? o->max_cols : CSV_MAX_COLS;
    ps.name = name ? name : "csv";
    ps.end = buf + len;
    ps.p = buf;
    ps.line = 1;
    ps.max_record = o->max_record ? o->max_record : CSV_MAX_RECORD;
    if (len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0)
        ps.p += 3;

    if (!(f = malloc((maxc + 1) * sizeof *f)))
        goto oom;
    rc = csv_record(&ps, f, maxc, &nc, st);
    if (rc <= 0) {
        if (rc == 0)
            ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL, "%s: no header row", ps.name);
        goto fail;
    }
    const char *header = ps.p; /* records start here in both passes */
    int64_t header_lines = ps.line;
    /* header fields stay in f[0..nc); records go to f[nc..2nc+1) */
    csv_field *grown = realloc(f, (2 * nc + 1) * sizeof *f);
    if (!grown)
        goto oom;
    f = grown;
    /* the names, copied (checked after pass 1, as they always were) */
    if (!(names = calloc(nc, sizeof *names)) || !(at = calloc(nc, sizeof *at)))
        goto oom;
    for (size_t c = 0; c < nc; c++) {
        const csv_field *h = &f[c];
        if (!(names[c] = malloc(h->len + 1)))
            goto oom;
        size_t hl = h->escaped ? unescape(h, names[c]) : (memcpy(names[c], h->p, h->len), h->len);
        names[c][hl] = 0;
        if (!hl || memchr(names[c], 0, hl))
            at[c] = -2; /* no name: an error after pass 1 */
        else
            at[c] = wanted(o, names[c]) ? (ptrdiff_t)nw++ : -1;
    }

    /* pass 1 */
    if (!(cols = calloc(nc, sizeof *cols)))
        goto oom;
    bool *seen = calloc(nc, sizeof *seen);
    if (!seen)
        goto oom;
    for (size_t c = 0; c < nc; c++)
        cols[c].cand = C_ALL;
    for (;;) {
        drop_behind(&drop, ps.p);
        if ((rc = csv_record(&ps, f + nc, nc + 1, &nf, st)) != 1)
            break;
        if (nf != nc) {
            char msg[96];
            snprintf(msg, sizeof msg, "%zu fields, the header has %zu", nf, nc);
            csv_err(&ps, st, msg);
            free(seen);
            goto fail;
        }
        if (o->max_rows && rows >= o->max_rows) {
            ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "%s: more than %lld rows",
                          ps.name, (long long)o->max_rows);
            free(seen);
            goto fail;
        }
        for (size_t c = 0; c < nc; c++) {
            if (at[c] < 0)
                continue;
            infer(&cols[c], &f[nc + c], o->ts_nanos);
            seen[c] |= f[nc + c].len > 0;
        }
        rows++;
    }
    if (rc < 0) {
        free(seen);
        goto fail;
    }

    /* the names: every column's, read or not */
    for (size_t c = 0; c < nc; c++) {
        if (at[c] == -2) {
            ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL, "%s: column %zu has no name",
                          ps.name, c + 1);
            free(seen);
            goto fail;
        }
        for (size_t k = 0; k < c; k++)
            if (strcmp(names[k], names[c]) == 0) {
                ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL, "%s: duplicate column \"%s\"",
                              ps.name, names[c]);
                free(seen);
                goto fail;
            }
    }
    /* the table: the columns read */
    if (!(t = ot_table_new(nw, rows))) {
        free(seen);
        goto oom;
    }
    for (size_t c = 0; c < nc; c++) {
        if (at[c] < 0)
            continue;
        ot_column *col = &t->cols[at[c]];
        col->name = names[c];
        names[c] = NULL;
        col->type.id = pick_type(&cols[c], seen[c]);
        if (col->type.id == OT_TIMESTAMP) {
            col->type.unit = o->ts_nanos ? OT_NANO : OT_MICRO;
            if (cols[c].any_tz && !(col->type.tz = strdup("UTC"))) {
                free(seen);
                goto oom;
            }
        }
        col->length = rows;
        if (col_alloc(col, rows, cols[c].bytes) < 0) {
            free(seen);
            goto oom;
        }
    }
    free(seen);

    /* pass 2 */
    ps.p = header;
    ps.line = header_lines;
    drop.done = 0;
    for (int64_t r = 0; r < rows; r++) {
        drop_behind(&drop, ps.p);
        if (csv_record(&ps, f, nc + 1, &nf, st) != 1)
            goto fail; /* cannot happen: pass 1 read the same bytes */
        for (size_t c = 0; c < nc; c++)
            if (at[c] >= 0)
                col_put(&t->cols[at[c]], r, &f[c], o->ts_nanos);
    }
    for (size_t c = 0; c < t->n_cols; c++)
        if (t->cols[c].null_count == 0) {
            free(t->cols[c].validity);
            t->cols[c].validity = NULL;
        }
    free(f);
    free(cols);
    free(at);
    free_names(names, nc);
    *out = t;
    return 0;

oom:
    ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "%s: out of memory", ps.name);
fail:
    free(f);
    free(cols);
    free(at);
    free_names(names, nc);
    if (t)
        ot_table_free(t);
    return -1;
}

int ot_csv_parse(const char *buf, size_t len, const char *name, const ot_csv_opts *o,
                 ot_table **out, ld_status *st)
{
    return csv_parse(buf, len, name, o, false, out, st);
}

int ot_csv_read(const char *path, const ot_csv_opts *o, ot_table **out, ld_status *st)
{
    struct stat sb;
    void *map = NULL;
    int fd, rc;

    *out = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ld_status_set(st, errno == ENOENT ? GRPC_STATUS_NOT_FOUND : GRPC_STATUS_INTERNAL,
                             NULL, "%s: %s", path, strerror(errno));
    if (fstat(fd, &sb) < 0) {
        rc = ld_status_set(st, GRPC_STATUS_INTERNAL, NULL, "%s: %s", path, strerror(errno));
        close(fd);
        return rc;
    }
    if (sb.st_size > 0) {
        map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            rc = ld_status_set(st, GRPC_STATUS_INTERNAL, NULL, "%s: mmap: %s", path,
                               strerror(errno));
            close(fd);
            return rc;
        }
        madvise(map, (size_t)sb.st_size, MADV_SEQUENTIAL);
    }
    close(fd);
    rc = csv_parse(map ? map : "", map ? (size_t)sb.st_size : 0, path, o, map != NULL, out, st);
    if (map)
        munmap(map, (size_t)sb.st_size);
    return rc;
}

/* ---- writing ---------------------------------------------------------- */

static void put_quoted(FILE *f, const uint8_t *p, size_t n)
{
    bool quote = n == 0;
    for (size_t i = 0; i < n && !quote; i++)
        quote = p[i] == ',' || p[i] == '"' || p[i] == '\n' || p[i] == '\r';
    if (!quote) {
        fwrite(p, 1, n, f);
        return;
    }
    putc('"', f);
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '"')
            putc('"', f);
        putc(p[i], f);
    }
    putc('"', f);
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

static void put_time(FILE *f, int64_t v, int unit, bool date_only, bool utc)
{
    static const int64_t per_s[4] = {1, 1000, 1000000, 1000000000};
    static const int digits[4] = {0, 3, 6, 9};
    int64_t secs = v / per_s[unit], frac = v % per_s[unit];
    if (frac < 0) {
        frac += per_s[unit];
        secs--;
    }
    int64_t days = floor_div(secs, 86400), sod = secs - days * 86400, y;
    int m, d;

    civil_from_days(days, &y, &m, &d);
    fprintf(f, "%04lld-%02d-%02d", (long long)y, m, d);
    if (date_only)
        return;
    fprintf(f, "T%02d:%02d:%02d", (int)(sod / 3600), (int)(sod / 60 % 60), (int)(sod % 60));
    if (frac)
        fprintf(f, ".%0*lld", digits[unit], (long long)frac);
    if (utc)
        putc('Z', f);
}

static void put_double(FILE *f, double v, int max_digits)
{
    char buf[64];
    if (isnan(v)) {
        fputs("nan", f);
        return;
    }
    if (isinf(v)) {
        fputs(v < 0 ? "-inf" : "inf", f);
        return;
    }
    for (int prec = max_digits - 2; prec <= max_digits; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (prec == max_digits ||
            (max_digits == 17 ? strtod(buf, NULL) == v : strtof(buf, NULL) == (float)v))
            break;
    }
    fputs(buf, f);
}

static void put_value(FILE *f, const ot_column *c, int64_t r)
{
    if (c->type.id == OT_NULL || (c->validity && !((c->validity[r >> 3] >> (r & 7)) & 1)))
        return;
    switch (c->type.id) {
    case OT_BOOL:
        fputs((((const uint8_t *)c->values)[r >> 3] >> (r & 7)) & 1 ? "true" : "false", f);
        break;
    case OT_INT32:
        fprintf(f, "%d", ((const int32_t *)c->values)[r]);
        break;
    case OT_INT64:
        fprintf(f, "%lld", (long long)((const int64_t *)c->values)[r]);
        break;
    case OT_FLOAT32:
        put_double(f, ((const float *)c->values)[r], 9);
        break;
    case OT_FLOAT64:
        put_double(f, ((const double *)c->values)[r], 17);
        break;
    case OT_TIMESTAMP:
        put_time(f, ((const int64_t *)c->values)[r], (int)c->type.unit & 3, false,
                 c->type.tz != NULL);
        break;
    case OT_DATE32:
        put_time(f, (int64_t)((const int32_t *)c->values)[r] * 86400, OT_SECOND, true, false);
        break;
    case OT_UTF8:
    case OT_BINARY:
        put_quoted(f, c->data + c->offsets[r], (size_t)(c->offsets[r + 1] - c->offsets[r]));
        break;
    case OT_LARGE_UTF8:
        put_quoted(f, c->data + c->offsets64[r], (size_t)(c->offsets64[r + 1] - c->offsets64[r]));
        break;
    case OT_LIST: {
        /* render the list to memory so it can be quoted as one field */
        char *mem = NULL;
        size_t n = 0;
        FILE *m = open_memstream(&mem, &n);
        if (!m)
            break;
        putc('[', m);
        for (int64_t e = c->offsets[r]; e < c->offsets[r + 1]; e++) {
            if (e > c->offsets[r])
                putc(',', m);
            put_value(m, c->child, e);
        }
        putc(']', m);
        fclose(m);
        put_quoted(f, (const uint8_t *)mem, n);
        free(mem);
        break;
    }
    default:
        break;
    }
}

int ot_csv_write(const ot_table *t, FILE *f, ld_status *st)
{
    for (size_t c = 0; c < t->n_cols; c++) {
        if (c)
            putc(',', f);
        const char *n = t->cols[c].name ? t->cols[c].name : "";
        put_quoted(f, (const uint8_t *)n, strlen(n));
    }
    putc('\n', f);
    return ot_csv_write_rows(t, f, st);
}

int ot_csv_write_rows(const ot_table *t, FILE *f, ld_status *st)
{
    for (int64_t r = 0; r < t->n_rows; r++) {
        for (size_t c = 0; c < t->n_cols; c++) {
            if (c)
                putc(',', f);
            put_value(f, &t->cols[c], r);
        }
        putc('\n', f);
    }
    if (ferror(f))
        return ld_status_set(st, GRPC_STATUS_INTERNAL, NULL, "csv write: %s", strerror(errno));
    return 0;
}
