#include "of_write.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "feast/core/FeatureService.pb-c.h"
#include "feast/core/FeatureView.pb-c.h"
#include "feast/core/StreamFeatureView.pb-c.h"
#include "ld_arena.h"
#include "ld_buf.h"
#include "of_api_int.h"
#include "ot_csv.h"
#include "ot_fb.h"
#include "ot_ipc.h"
#include "ot_pit.h"

#define WRITE_BATCH_ROWS 65536
#define MAX_FILE_BYTES   ((int64_t)4 << 30) /* a source file rewritten in memory */

static const char *jstr(json_t *j, const char *key)
{
    return json_string_value(json_object_get(j, key));
}

static int in_project(const char *p, const char *project)
{
    return !p || !*p || strcmp(p, project) == 0;
}

/* ------------------------------------------------------------ files */

typedef enum { F_CSV, F_IPC_STREAM, F_IPC_FILE, F_PARQUET, F_UNKNOWN } file_kind;

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n > m && !strcasecmp(s + n - m, suffix);
}

static file_kind kind_of(const char *path)
{
    if (ends_with(path, ".csv"))
        return F_CSV;
    if (ends_with(path, ".arrow") || ends_with(path, ".feather"))
        return F_IPC_FILE;
    if (ends_with(path, ".ipc"))
        return F_IPC_STREAM;
    if (ends_with(path, ".parquet"))
        return F_PARQUET;
    return F_UNKNOWN;
}

/* The local path of a file uri (file:// or a path, relative to repo_path):
 * malloc'd, or NULL and st. */
static char *local_path(const ld_config *cfg, const char *what, const char *uri, ld_status *st)
{
    if (!uri || !*uri) {
        ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL, "%s has no path", what);
        return NULL;
    }
    if (!strncmp(uri, "file://", 7))
        uri += 7;
    else if (strstr(uri, "://")) {
        ld_status_set(st, GRPC_STATUS_UNIMPLEMENTED, NULL, "%s: only local files are written (%s)",
                      what, uri);
        return NULL;
    }
    char *p = ld_config_resolve_path(cfg, uri);
    if (!p)
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
    return p;
}

static int check_kind(file_kind k, const char *what, const char *path, ld_status *st)
{
    if (k == F_PARQUET)
        return ld_status_set(st, GRPC_STATUS_UNIMPLEMENTED, NULL,
                             "%s is Parquet (%s); larder-offline writes CSV and Arrow IPC files "
                             "— Parquet is a later step",
                             what, path);
    if (k == F_UNKNOWN)
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "%s: unknown file type %s (csv, arrow, feather, ipc)", what, path);
    return 0;
}

/* Exclusive lock on the directory of path (writers of every process that
 * uses flock take turns); returns the directory's fd (close to unlock). */
static int lock_dir(const char *path, ld_status *st)
{
    char *copy = strdup(path);
    if (!copy)
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        ld_status_set(st, errno == ENOENT ? GRPC_STATUS_NOT_FOUND : GRPC_STATUS_INTERNAL, NULL,
                      "cannot open the directory of %s: %s", path, strerror(errno));
    } else if (flock(fd, LOCK_EX) != 0) {
        ld_status_set(st, GRPC_STATUS_INTERNAL, NULL, "cannot lock the directory of %s: %s", path,
                      strerror(errno));
        close(fd);
        fd = -1;
    }
    free(copy);
    return fd;
}

/* The whole file, or NOT_FOUND. */
static int read_file(const char *path, ld_buf *out, ld_status *st)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return ld_status_set(st, errno == ENOENT ? GRPC_STATUS_NOT_FOUND : GRPC_STATUS_INTERNAL,
                             errno == ENOENT ? "DataSourceNotFoundException" : NULL,
                             errno == ENOENT ? "Unable to find table at '%s'. Please check that "
                                               "table exists."
                                             : "cannot open %s",
                             path);
    char chunk[65536];
    size_t got;
    int rc = 0;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if ((int64_t)(out->len + got) > MAX_FILE_BYTES) {
            rc = ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL,
                               "%s is over %lld bytes: too large to rewrite", path,
                               (long long)MAX_FILE_BYTES);
            break;
        }
        ld_buf_append(out, chunk, got);
    }
    if (rc == 0 && ferror(f))
        rc = ld_status_set(st, GRPC_STATUS_INTERNAL, NULL, "reading %s: %s", path, strerror(errno));
    fclose(f);
    return rc;
}

/* Temporary files ".<base>.larder-*" left by a writer that died (kill -9,
 * power loss) before its rename: with the directory locked no writer is
 * using one, so they go. */
static void remove_stale(int dfd, const char *base)
{
    int fd = dup(dfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return;
    }
    rewinddir(d);
    size_t n = strlen(base);
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] == '.' && !strncmp(e->d_name + 1, base, n) &&
            !strncmp(e->d_name + 1 + n, ".larder-", 8) && strlen(e->d_name + 1 + n) == 14)
            unlinkat(dfd, e->d_name, 0);
    closedir(d);
}

typedef int (*emit_fn)(FILE *f, void *arg, ld_status *st);

/* Write path through a temporary file in its directory (dfd, locked):
 * fsync, then rename over path (replace) or link to it (no replace: an
 * existing path is SavedDatasetLocationAlreadyExists), then fsync the
 * directory. On failure nothing changes. */
static int write_atomic(int dfd, const char *path, const char *shown, int replace, emit_fn emit,
                        void *arg, ld_status *st)
{
    char *copy = strdup(path);
    char *tmp = copy ? malloc(strlen(path) + 32) : NULL;
    if (!tmp) {
        free(copy);
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
    }
    char *base = basename(copy);
    char *dir = strdup(path);
    if (!dir) {
        free(copy);
        free(tmp);
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
    }
    sprintf(tmp, "%s/.%s.larder-XXXXXX", dirname(dir), base);
    free(dir);
    remove_stale(dfd, base);
    int rc = -1;
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        ld_status_set(st, GRPC_STATUS_INTERNAL, NULL, "cannot create a file next to %s: %s", path,
                      strerror(errno));
        goto out;
    }
    struct stat sb;
    fchmod(fd, stat(path, &sb) == 0 ? (sb.st_mode & 07777) : 0644);
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        close(fd);
        ld_status_set(st, GRPC_STATUS_INTERNAL, NULL, "fdopen: %s", strerror(errno));
        goto unlink;
    }
    int wrc = emit(f, arg, st);
    if (wrc == 0 && (fflush(f) != 0 || fsync(fileno(f)) != 0))
        wrc = ld_status_set(st, GRPC_STATUS_INTERNAL, NULL, "writing %s: %s", path,
                            strerror(errno));
    if (fclose(f) != 0 && wrc == 0)
        wrc = ld_status_set(st, GRPC_STATUS_INTERNAL, NULL, "writing %s: %s", path,
                            strerror(errno));
    if (wrc != 0)
        goto unlink;
    if (replace) {
        if (rename(tmp, path) != 0) {
            ld_status_set(st, GRPC_STATUS_INTERNAL, NULL, "rename to %s: %s", path,
                          strerror(errno));
            goto unlink;
        }
    } else {
        if (link(tmp, path) != 0) {
            if (errno == EEXIST)
                ld_status_set(st, GRPC_STATUS_ALREADY_EXISTS, "SavedDatasetLocationAlreadyExists",
                              "Saved dataset location %s already exists.", shown);
            else
                ld_status_set(st, GRPC_STATUS_INTERNAL, NULL, "link to %s: %s", path,
                              strerror(errno));
            goto unlink;
        }
        unlink(tmp);
    }
    if (fsync(dfd) != 0) {
        ld_status_set(st, GRPC_STATUS_INTERNAL, NULL, "fsync of the directory of %s: %s", path,
                      strerror(errno));
        goto out; /* the new file is in place; its name may not be durable */
    }
    rc = 0;
    goto out;
unlink:
    unlink(tmp);
out:
    free(tmp);
    free(copy);
    return rc;
}

/* ------------------------------------------------------------ Arrow IPC out */

static int put_bytes(FILE *f, const void *p, size_t n, int64_t *at)
{
    if (n && fwrite(p, 1, n, f) != n)
        return -1;
    *at += (int64_t)n;
    return 0;
}

static int put_framed(FILE *f, const ld_buf *h, const ld_buf *b, int64_t *at, int64_t *meta_len)
{
    ld_buf m = LD_BUF_INIT;
    ot_ipc_frame(&m, (const uint8_t *)h->data, h->len, (const uint8_t *)b->data, b->len);
    *meta_len = (int64_t)m.len - (int64_t)b->len;
    int rc = put_bytes(f, m.data, m.len, at);
    ld_buf_free(&m);
    return rc;
}

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

typedef struct block {
    int64_t offset, meta_len, body_len;
} block;

/* The file format's Footer {version: V5, schema, recordBatches} as one
 * flatbuffer. The Schema table is not rebuilt: the schema Message
 * flatbuffer is placed after the footer's own tables, 8-byte aligned, and
 * the footer's schema field points at the Schema table inside it (a
 * flatbuffer may hold bytes nothing refers to). Layout: root offset,
 * vtable, table {schema, recordBatches, version}, the Block vector, then
 * the schema Message. */
static int footer(const ld_buf *schema_msg, const block *blocks, size_t n, ld_buf *out,
                  ld_status *st)
{
    fb_table msg, sch;
    int present = 0;
    if (fb_root((const uint8_t *)schema_msg->data, schema_msg->len, &msg) != 0 ||
        fb_get_table(&msg, 2, &present, &sch) != 0 || !present)
        return ld_status_set(st, GRPC_STATUS_INTERNAL, NULL, "schema message does not parse");
    size_t vec = 36, elems = 40, msg_at = elems + 24 * n;
    size_t total = msg_at + ((schema_msg->len + 7) & ~(size_t)7);
    uint8_t *p = (uint8_t *)ld_buf_reserve(out, total);
    memset(p, 0, total);
    put_u32(p, 16);      /* root: the table */
    put_u16(p + 4, 12);  /* vtable: its size */
    put_u16(p + 6, 16);  /* the table's size */
    put_u16(p + 8, 12);  /* field 0 version */
    put_u16(p + 10, 4);  /* field 1 schema */
    put_u16(p + 12, 0);  /* field 2 dictionaries: absent */
    put_u16(p + 14, 8);  /* field 3 recordBatches */
    put_u32(p + 16, 12); /* soffset to the vtable (16 - 4) */
    put_u32(p + 20, (uint32_t)(msg_at + sch.pos - 20));
    put_u32(p + 24, (uint32_t)(vec - 24));
    put_u16(p + 28, 4); /* MetadataVersion V5 */
    put_u32(p + vec, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        uint8_t *b = p + elems + 24 * i;
        put_u64(b, (uint64_t)blocks[i].offset);
        put_u32(b + 8, (uint32_t)blocks[i].meta_len);
        put_u64(b + 16, (uint64_t)blocks[i].body_len);
    }
    memcpy(p + msg_at, schema_msg->data, schema_msg->len);
    out->len += total;
    return 0;
}

/* Tables sharing one schema (the first's), written as one IPC stream or
 * file. */
typedef struct ipc_parts {
    const ot_table *const *parts;
    size_t n;
    int file_format;
} ipc_parts;

static int emit_ipc(FILE *f, void *arg, ld_status *st)
{
    const ipc_parts *ip = arg;
    ld_buf schema = LD_BUF_INIT, h = LD_BUF_INIT, b = LD_BUF_INIT, foot = LD_BUF_INIT;
    block *blocks = NULL;
    size_t nb = 0, cap = 0;
    int64_t at = 0, meta;
    int rc = -1;
    static const uint8_t magic[8] = {'A', 'R', 'R', 'O', 'W', '1', 0, 0};
    static const uint8_t eos[8] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0};
    if (ot_ipc_write_schema(ip->parts[0], &schema) != 0) {
        ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL, "a column type cannot be written");
        goto out;
    }
    if ((ip->file_format && put_bytes(f, magic, 8, &at) != 0) ||
        put_framed(f, &schema, &b, &at, &meta) != 0)
        goto io;
    for (size_t p = 0; p < ip->n; p++) {
        const ot_table *t = ip->parts[p];
        for (int64_t row = 0; row < t->n_rows; row += WRITE_BATCH_ROWS) {
            int64_t n = t->n_rows - row < WRITE_BATCH_ROWS ? t->n_rows - row : WRITE_BATCH_ROWS;
            if (ot_ipc_write_batch(t, row, n, &h, &b, st) != 0)
                goto out;
            if (nb == cap) {
                cap = cap ? 2 * cap : 16;
                block *nbk = realloc(blocks, cap * sizeof *nbk);
                if (!nbk) {
                    ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
                    goto out;
                }
                blocks = nbk;
            }
            blocks[nb].offset = at;
            if (put_framed(f, &h, &b, &at, &meta) != 0)
                goto io;
            blocks[nb].meta_len = meta;
            blocks[nb++].body_len = (int64_t)b.len;
        }
    }
    if (put_bytes(f, eos, 8, &at) != 0)
        goto io;
    if (ip->file_format) {
        if (footer(&schema, blocks, nb, &foot, st) != 0)
            goto out;
        uint8_t len[4];
        put_u32(len, (uint32_t)foot.len);
        if (put_bytes(f, foot.data, foot.len, &at) != 0 || put_bytes(f, len, 4, &at) != 0 ||
            put_bytes(f, magic, 6, &at) != 0)
            goto io;
    }
    rc = 0;
    goto out;
io:
    ld_status_set(st, GRPC_STATUS_INTERNAL, NULL, "write: %s", strerror(errno));
out:
    free(blocks);
    ld_buf_free(&schema);
    ld_buf_free(&h);
    ld_buf_free(&b);
    ld_buf_free(&foot);
    return rc;
}

/* CSV: the file's own bytes, then the new records. */
typedef struct csv_append {
    const ld_buf *old; /* NULL: a new file with a header */
    const ot_table *rows;
} csv_append;

static int emit_csv(FILE *f, void *arg, ld_status *st)
{
    const csv_append *ca = arg;
    if (!ca->old)
        return ot_csv_write(ca->rows, f, st);
    if (ca->old->len) {
        if (fwrite(ca->old->data, 1, ca->old->len, f) != ca->old->len)
            return ld_status_set(st, GRPC_STATUS_INTERNAL, NULL, "write: %s", strerror(errno));
        char last = ca->old->data[ca->old->len - 1];
        if (last != '\n' && last != '\r')
            putc('\n', f);
    }
    return ot_csv_write_rows(ca->rows, f, st);
}

/* ------------------------------------------------------------ casts */

static size_t width(ot_type_id id)
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

static int64_t unit_per_s(ot_time_unit u)
{
    static const int64_t per[4] = {1, 1000, 1000000, 1000000000};
    return per[u & 3];
}

static int copy_validity(const ot_column *src, ot_column *dst)
{
    dst->null_count = src->type.id == OT_NULL ? src->length : src->null_count;
    if (src->type.id == OT_NULL) {
        dst->validity = calloc((size_t)src->length / 8 + 1, 1);
        return dst->validity ? 0 : -1;
    }
    if (!src->validity)
        return 0;
    size_t n = (size_t)(src->length + 7) / 8;
    dst->validity = malloc(n + 1);
    if (!dst->validity)
        return -1;
    memcpy(dst->validity, src->validity, n);
    return 0;
}

/* dst = src as `to` when that loses nothing: the same type; int32 <-> int64
 * (in range); integers and floats into float32/float64; a timestamp in any
 * unit/timezone or a date32 into a timestamp (no sub-unit digits lost);
 * utf8 <-> large_utf8; a null column into any fixed-width or string type. */
static int cast_column(const ot_column *src, const ot_type *to, const char *name, ot_column *dst,
                       ld_status *st)
{
    int64_t n = src->length;
    memset(dst, 0, sizeof *dst);
    if (ot_type_equal(&src->type, to)) {
        int64_t *idx = malloc((size_t)(n + 1) * sizeof *idx);
        if (!idx)
            return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        for (int64_t i = 0; i < n; i++)
            idx[i] = i;
        int rc = ot_column_take(src, idx, n, name, dst, st);
        free(idx);
        return rc;
    }
    ot_type_id s = src->type.id, d = to->id;
    ld_buf tn = LD_BUF_INIT, fn = LD_BUF_INIT;
    dst->name = strdup(name);
    ot_type_copy(&dst->type, to);
    dst->length = n;
    if (!dst->name || copy_validity(src, dst) != 0)
        goto oom;
    if (s == OT_NULL && (width(d) || d == OT_BOOL)) {
        dst->values = calloc((size_t)n * (width(d) ? width(d) : 1) + 8, 1);
        if (!dst->values)
            goto oom;
        return 0;
    }
    if (s == OT_NULL && (d == OT_UTF8 || d == OT_BINARY || d == OT_LARGE_UTF8)) {
        dst->data = calloc(1, 1);
        if (d == OT_LARGE_UTF8)
            dst->offsets64 = calloc((size_t)n + 1, sizeof *dst->offsets64);
        else
            dst->offsets = calloc((size_t)n + 1, sizeof *dst->offsets);
        if (!dst->data || (!dst->offsets && !dst->offsets64))
            goto oom;
        return 0;
    }
    if ((s == OT_UTF8 && d == OT_LARGE_UTF8) || (s == OT_LARGE_UTF8 && d == OT_UTF8)) {
        if (d == OT_UTF8 && src->data_len > INT32_MAX)
            goto bad;
        dst->data = malloc((size_t)src->data_len + 1);
        if (d == OT_LARGE_UTF8)
            dst->offsets64 = malloc(((size_t)n + 1) * sizeof *dst->offsets64);
        else
            dst->offsets = malloc(((size_t)n + 1) * sizeof *dst->offsets);
        if (!dst->data || (!dst->offsets && !dst->offsets64))
            goto oom;
        if (src->data_len)
            memcpy(dst->data, src->data, (size_t)src->data_len);
        dst->data_len = src->data_len;
        for (int64_t i = 0; i <= n; i++) {
            if (d == OT_LARGE_UTF8)
                dst->offsets64[i] = src->offsets[i];
            else
                dst->offsets[i] = (int32_t)src->offsets64[i];
        }
        return 0;
    }
    size_t w = width(d);
    int numeric_src = s == OT_INT32 || s == OT_INT64 || s == OT_FLOAT32 || s == OT_FLOAT64;
    int time_src = s == OT_TIMESTAMP || s == OT_DATE32;
    if (!w ||
        (d == OT_TIMESTAMP ? !time_src
         : d == OT_DATE32  ? 1
                           : !numeric_src) ||
        ((d == OT_INT32 || d == OT_INT64) && (s == OT_FLOAT32 || s == OT_FLOAT64)))
        goto bad;
    dst->values = calloc((size_t)n + 1, w);
    if (!dst->values)
        goto oom;
    for (int64_t i = 0; i < n; i++) {
        if (!ot_column_valid(src, i))
            continue;
        if (d == OT_TIMESTAMP) {
            int64_t v = s == OT_DATE32 ? (int64_t)((const int32_t *)src->values)[i] * 86400
                                       : ((const int64_t *)src->values)[i];
            int64_t from = s == OT_DATE32 ? 1 : unit_per_s(src->type.unit);
            int64_t into = unit_per_s(to->unit);
            if (into >= from) {
                int64_t m = into / from;
                if (v > INT64_MAX / m || v < INT64_MIN / m)
                    goto range;
                v *= m;
            } else {
                if (v % (from / into))
                    goto lossy;
                v /= from / into;
            }
            ((int64_t *)dst->values)[i] = v;
            continue;
        }
        double x = 0;
        int64_t iv = 0;
        if (s == OT_INT32 || s == OT_INT64)
            iv = s == OT_INT32 ? ((const int32_t *)src->values)[i]
                               : ((const int64_t *)src->values)[i],
            x = (double)iv;
        else
            x = s == OT_FLOAT32 ? ((const float *)src->values)[i]
                                : ((const double *)src->values)[i];
        switch (d) {
        case OT_INT32:
            if (iv < INT32_MIN || iv > INT32_MAX)
                goto range;
            ((int32_t *)dst->values)[i] = (int32_t)iv;
            break;
        case OT_INT64:
            ((int64_t *)dst->values)[i] = iv;
            break;
        case OT_FLOAT32:
            ((float *)dst->values)[i] = (float)x;
            break;
        default:
            ((double *)dst->values)[i] = x;
            break;
        }
    }
    return 0;
range:
    ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                  "column %s: a value is out of the range of the file's type", name);
    goto fail;
lossy:
    ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                  "column %s: a timestamp has digits finer than the file's unit", name);
    goto fail;
bad:
    ot_type_format(&src->type, &fn);
    ot_type_format(to, &tn);
    ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                  "column %s: cannot write %s values into the file's %s column", name,
                  fn.data ? fn.data : "?", tn.data ? tn.data : "?");
    goto fail;
oom:
    ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
fail:
    ld_buf_free(&tn);
    ld_buf_free(&fn);
    ot_column_clear(dst);
    return -1;
}

/* ------------------------------------------------------------ offline_write_batch */

static const Feast__Core__DataSource *view_source(const Feast__Core__Registry *r,
                                                  const char *project, const char *name)
{
    for (size_t i = 0; i < r->n_feature_views; i++) {
        const Feast__Core__FeatureViewSpec *s = r->feature_views[i]->spec;
        if (s && !strcmp(s->name, name) && in_project(s->project, project))
            return s->batch_source;
    }
    for (size_t i = 0; i < r->n_stream_feature_views; i++) {
        const Feast__Core__StreamFeatureViewSpec *s = r->stream_feature_views[i]->spec;
        if (s && !strcmp(s->name, name) && in_project(s->project, project))
            return s->batch_source;
    }
    return NULL;
}

static int has_view(const Feast__Core__Registry *r, const char *project, const char *name)
{
    for (size_t i = 0; i < r->n_feature_views; i++)
        if (r->feature_views[i]->spec && !strcmp(r->feature_views[i]->spec->name, name) &&
            in_project(r->feature_views[i]->spec->project, project))
            return 1;
    for (size_t i = 0; i < r->n_stream_feature_views; i++)
        if (r->stream_feature_views[i]->spec &&
            !strcmp(r->stream_feature_views[i]->spec->name, name) &&
            in_project(r->stream_feature_views[i]->spec->project, project))
            return 1;
    return 0;
}

/* The upload's columns in the file's order and types; upload columns may
 * carry the file's names or the Feast names of the field mapping. */
static int conform(const ot_table *file, const ot_table *up, const Feast__Core__DataSource *ds,
                   int csv, ot_table **out, ld_status *st)
{
    ld_buf missing = LD_BUF_INIT, extra = LD_BUF_INIT;
    const ot_column **pick = calloc(file->n_cols + 1, sizeof *pick);
    int rc = -1;
    ot_table *t = NULL;
    if (!pick)
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
    for (size_t u = 0; u < up->n_cols; u++) {
        const char *name = up->cols[u].name;
        const char *as = name;
        if (!ot_table_column(file, name))
            for (size_t m = 0; ds && m < ds->n_field_mapping; m++)
                if (!strcmp(ds->field_mapping[m]->value, name))
                    as = ds->field_mapping[m]->key;
        size_t c = 0;
        while (c < file->n_cols && strcmp(file->cols[c].name, as))
            c++;
        if (c == file->n_cols || pick[c]) {
            ld_buf_printf(&extra, "%s'%s'", extra.len ? ", " : "", name);
            continue;
        }
        pick[c] = &up->cols[u];
    }
    for (size_t c = 0; c < file->n_cols; c++)
        if (!pick[c])
            ld_buf_printf(&missing, "%s'%s'", missing.len ? ", " : "", file->cols[c].name);
    if (missing.len || extra.len) {
        ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                      "The input pyarrow table does not match the columns of the batch source "
                      "file. missing_expected_columns: [%s], extra_unexpected_columns: [%s].",
                      missing.len ? missing.data : "", extra.len ? extra.data : "");
        goto out;
    }
    t = ot_table_new(file->n_cols, up->n_rows);
    for (size_t c = 0; c < file->n_cols; c++) {
        const ot_column *fc = &file->cols[c];
        /* a CSV column without any value has no real type yet */
        int untyped =
                csv && fc->length > 0 && ot_column_count_nulls(fc, 0, fc->length) == fc->length;
        untyped = untyped || (csv && fc->length == 0);
        const ot_type *to = untyped ? &pick[c]->type : &fc->type;
        if (csv && !untyped && fc->type.id == OT_TIMESTAMP && pick[c]->type.id == OT_DATE32)
            to = &pick[c]->type; /* written as YYYY-MM-DD: a timestamp when read back */
        if (cast_column(pick[c], to, fc->name, &t->cols[c], st) != 0) {
            goto out;
        }
        if (fc->not_null && fc->type.id != OT_NULL && t->cols[c].null_count) {
            ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                          "column %s is not nullable in the file, and the input has nulls",
                          fc->name);
            goto out;
        }
        t->cols[c].not_null = fc->not_null;
    }
    *out = t;
    t = NULL;
    rc = 0;
out:
    ot_table_free(t);
    free(pick);
    ld_buf_free(&missing);
    ld_buf_free(&extra);
    return rc;
}

/* Append `up` to the file source ds (locked read-modify-write). */
static int append_to_source(const ld_config *cfg, const Feast__Core__DataSource *ds,
                            const ot_table *up, ld_status *st)
{
    if (ds->options_case != FEAST__CORE__DATA_SOURCE__OPTIONS_FILE_OPTIONS || !ds->file_options)
        return ld_status_set(st, GRPC_STATUS_UNIMPLEMENTED, NULL,
                             "data source %s is not a file source; larder-offline appends to "
                             "file sources here",
                             ds->name);
    char *path = local_path(cfg, ds->name, ds->file_options->uri, st);
    if (!path)
        return -1;
    file_kind k = kind_of(path);
    ld_buf old = LD_BUF_INIT;
    ot_table *file = NULL, *rows = NULL;
    int rc = -1, dfd = -1;
    if (check_kind(k, ds->name, path, st) != 0 || (dfd = lock_dir(path, st)) < 0 ||
        read_file(path, &old, st) != 0)
        goto out;
    const uint8_t *bytes = old.len ? (const uint8_t *)old.data : (const uint8_t *)"";
    if (k == F_CSV) {
        if (ot_csv_parse((const char *)bytes, old.len, path, NULL, &file, st) != 0)
            goto out;
    } else {
        if (old.len >= 6 && !memcmp(bytes, "ARROW1", 6))
            k = F_IPC_FILE;
        else
            k = F_IPC_STREAM;
        if (ot_ipc_read_file(bytes, old.len, &file, st) != 0) {
            ld_status_prefix(st, "%s", path);
            goto out;
        }
    }
    if (conform(file, up, ds, k == F_CSV, &rows, st) != 0)
        goto out;
    if (rows->n_rows == 0) {
        rc = 0;
        goto out;
    }
    if (k == F_CSV) {
        csv_append ca = {&old, rows};
        rc = write_atomic(dfd, path, path, 1, emit_csv, &ca, st);
    } else {
        const ot_table *parts[2] = {file, rows};
        ipc_parts ip = {parts, 2, k == F_IPC_FILE};
        rc = write_atomic(dfd, path, path, 1, emit_ipc, &ip, st);
    }
out:
    if (dfd >= 0)
        close(dfd);
    ot_table_free(file);
    ot_table_free(rows);
    ld_buf_free(&old);
    free(path);
    return rc;
}

int of_write_batch(of_api *a, json_t *cmd, const ot_table *upload, ld_status *st)
{
    json_t *names = json_object_get(cmd, "feature_view_names");
    json_t *aliases = json_object_get(cmd, "name_aliases");
    if (!json_is_array(names) || json_array_size(names) != 1 ||
        !json_is_string(json_array_get(names, 0)))
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "feature_view_names list should only have one item");
    if (!json_is_array(aliases) || json_array_size(aliases) != 1)
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "name_aliases list should only have one item");
    const char *name = json_string_value(json_array_get(names, 0));
    const ld_config *cfg = of_api_config(a);
    reg_copy *copy = of_api_registry(a, st);
    if (!copy)
        return -1;
    const Feast__Core__Registry *r = of_api_registry_get(copy);
    int rc;
    if (!has_view(r, cfg->project, name))
        rc = ld_status_set(st, GRPC_STATUS_NOT_FOUND, "FeatureViewNotFoundException",
                           "Feature view %s does not exist in project %s", name, cfg->project);
    else if (!view_source(r, cfg->project, name))
        rc = ld_status_set(st, GRPC_STATUS_FAILED_PRECONDITION, NULL,
                           "feature view %s has no batch source", name);
    else
        rc = append_to_source(cfg, view_source(r, cfg->project, name), upload, st);
    of_api_registry_release(copy);
    return rc;
}

/* ------------------------------------------------------------ write_logged_features */

static int mkdirs(const char *path, ld_status *st)
{
    char *p = strdup(path);
    if (!p)
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
    int rc = 0;
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s)
            continue;
        char c = *s;
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            rc = ld_status_set(st, GRPC_STATUS_INTERNAL, NULL, "mkdir %s: %s", p, strerror(errno));
            break;
        }
        *s = c;
        if (!c)
            break;
    }
    free(p);
    return rc;
}

int of_write_logged_features(of_api *a, json_t *cmd, const ot_table *upload, ld_status *st)
{
    const char *name = jstr(cmd, "feature_service_name");
    if (!name)
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "feature_service_name is a mandatory parameter");
    const ld_config *cfg = of_api_config(a);
    reg_copy *copy = of_api_registry(a, st);
    if (!copy)
        return -1;
    const Feast__Core__Registry *r = of_api_registry_get(copy);
    const Feast__Core__FeatureServiceSpec *fs = NULL;
    for (size_t i = 0; i < r->n_feature_services && !fs; i++)
        if (r->feature_services[i]->spec && !strcmp(r->feature_services[i]->spec->name, name) &&
            in_project(r->feature_services[i]->spec->project, cfg->project))
            fs = r->feature_services[i]->spec;
    char *dir = NULL, *file = NULL;
    int rc = -1, dfd = -1;
    const Feast__Core__LoggingConfig *lc = fs ? fs->logging_config : NULL;
    if (!fs) {
        ld_status_set(st, GRPC_STATUS_NOT_FOUND, "FeatureServiceNotFoundException",
                      "Feature service %s does not exist in project %s", name, cfg->project);
        goto out;
    }
    if (!lc) {
        ld_status_set(st, GRPC_STATUS_FAILED_PRECONDITION, NULL,
                      "feature service %s must have logging_config set", name);
        goto out;
    }
    if (lc->destination_case != FEAST__CORE__LOGGING_CONFIG__DESTINATION_FILE_DESTINATION ||
        !lc->file_destination) {
        ld_status_set(st, GRPC_STATUS_UNIMPLEMENTED, NULL,
                      "feature service %s logs to a destination larder-offline does not write "
                      "(file destinations only)",
                      name);
        goto out;
    }
    if (lc->file_destination->n_partition_by) {
        ld_status_set(st, GRPC_STATUS_UNIMPLEMENTED, NULL,
                      "feature service %s: partitioned logging destinations (partition_by) are "
                      "not written yet",
                      name);
        goto out;
    }
    if (!(dir = local_path(cfg, name, lc->file_destination->path, st)) || mkdirs(dir, st) != 0)
        goto out;
    uint8_t id[16];
    if (getrandom(id, sizeof id, 0) != (ssize_t)sizeof id) {
        ld_status_set(st, GRPC_STATUS_INTERNAL, NULL, "getrandom: %s", strerror(errno));
        goto out;
    }
    file = malloc(strlen(dir) + 64);
    if (!file) {
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        goto out;
    }
    char *w = file + sprintf(file, "%s/", dir);
    for (int i = 0; i < 16; i++)
        w += sprintf(w, "%02x", id[i]);
    strcpy(w, "-0.arrow");
    if ((dfd = lock_dir(file, st)) < 0)
        goto out;
    const ot_table *parts[1] = {upload};
    ipc_parts ip = {parts, 1, 1};
    rc = write_atomic(dfd, file, file, 0, emit_ipc, &ip, st);
out:
    if (dfd >= 0)
        close(dfd);
    free(dir);
    free(file);
    of_api_registry_release(copy);
    return rc;
}

/* ------------------------------------------------------------ persist */

/* The retrieval a persist command came from: the same command with api =
 * retrieve_func, run as DoGet would run it (any source kind). */
static int rerun(of_api *a, json_t *cmd, const char *func, const ot_table *upload, ot_table **out,
                 ld_status *st)
{
    json_t *j = json_copy(cmd);
    char *text = NULL;
    int rc = -1;
    if (j && json_object_set_new(j, "api", json_string(func)) == 0)
        text = json_dumps(j, JSON_COMPACT);
    if (!text)
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
    else
        rc = of_api_run(a, text, strlen(text), upload, out, st);
    free(text);
    json_decref(j);
    return rc;
}

int of_write_persist(of_api *a, json_t *cmd, const ot_table *upload, ld_status *st)
{
    const char *func = jstr(cmd, "retrieve_func");
    const char *ds_name = jstr(cmd, "data_source_name");
    json_t *ow = json_object_get(cmd, "allow_overwrite");
    if (!func || !ds_name || !json_is_boolean(ow))
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "persist needs retrieve_func, data_source_name and allow_overwrite");
    if (strcmp(func, "get_historical_features") &&
        strcmp(func, "pull_latest_from_table_or_query") &&
        strcmp(func, "pull_all_from_table_or_query"))
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "persist: retrieve_func %s is not a retrieval", func);
    const ld_config *cfg = of_api_config(a);
    reg_copy *copy = of_api_registry(a, st);
    if (!copy)
        return -1;
    const Feast__Core__DataSource *ds =
            of_api_find_source(of_api_registry_get(copy), cfg->project, ds_name);
    char *path = NULL, *shown = NULL;
    if (!ds)
        ld_status_set(st, GRPC_STATUS_NOT_FOUND, "DataSourceObjectNotFoundException",
                      "Data source %s does not exist in project %s", ds_name, cfg->project);
    else if (ds->options_case != FEAST__CORE__DATA_SOURCE__OPTIONS_FILE_OPTIONS ||
             !ds->file_options)
        ld_status_set(st, GRPC_STATUS_UNIMPLEMENTED, NULL,
                      "data source %s is not a file source; larder-offline persists saved "
                      "datasets to files",
                      ds_name);
    else if (strcmp(func, "get_historical_features") != 0)
        /* Feast's client sends the job's parameters after the storage's, so
         * a pull_* job's own data_source_name replaces the saved dataset's:
         * persisting would overwrite the source being read. */
        ld_status_set(st, GRPC_STATUS_FAILED_PRECONDITION, NULL,
                      "persist of a %s job would write into its own source %s (Feast's client "
                      "sends the pulled source's name as data_source_name); refused",
                      func, ds_name);
    else if ((path = local_path(cfg, ds_name, ds->file_options->uri, st)))
        shown = strdup(ds->file_options->uri);
    of_api_registry_release(copy);
    if (!path || !shown) {
        if (path && !shown)
            ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        free(path);
        return -1;
    }
    int replace = json_is_true(ow), rc = -1, dfd = -1;
    file_kind k = kind_of(path);
    ot_table *t = NULL;
    struct stat sb;
    if (check_kind(k, ds_name, path, st) != 0)
        goto out;
    if (!replace && stat(path, &sb) == 0) {
        ld_status_set(st, GRPC_STATUS_ALREADY_EXISTS, "SavedDatasetLocationAlreadyExists",
                      "Saved dataset location %s already exists.", shown);
        goto out;
    }
    if (rerun(a, cmd, func, upload, &t, st) != 0 || (dfd = lock_dir(path, st)) < 0)
        goto out;
    if (k == F_CSV) {
        csv_append ca = {NULL, t};
        rc = write_atomic(dfd, path, shown, replace, emit_csv, &ca, st);
    } else {
        const ot_table *parts[1] = {t};
        ipc_parts ip = {parts, 1, k == F_IPC_FILE};
        rc = write_atomic(dfd, path, shown, replace, emit_ipc, &ip, st);
    }
out:
    if (dfd >= 0)
        close(dfd);
    ot_table_free(t);
    free(path);
    free(shown);
    return rc;
}

/* ------------------------------------------------------------ validate_data_source */

int of_write_validate(of_api *a, json_t *cmd, ld_status *st)
{
    const char *proto = jstr(cmd, "data_source_proto");
    json_error_t err;
    json_t *ds = proto ? json_loads(proto, 0, &err) : NULL;
    if (!json_is_object(ds)) {
        json_decref(ds);
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "data_source_proto must be a DataSource in JSON");
    }
    const ld_config *cfg = of_api_config(a);
    const char *name = jstr(ds, "name") ? jstr(ds, "name") : "";
    json_t *fo = json_object_get(ds, "fileOptions");
    json_t *fm = json_object_get(ds, "fieldMapping");
    ld_arena ar;
    ld_arena_init(&ar, NULL, 0, 0);
    Feast__Core__DataSource src = FEAST__CORE__DATA_SOURCE__INIT;
    Feast__Core__DataSource__FileOptions opts = FEAST__CORE__DATA_SOURCE__FILE_OPTIONS__INIT;
    ot_table *t = NULL;
    char *path = NULL;
    int rc = -1;
    if (!json_is_object(fo)) {
        ld_status_set(st, GRPC_STATUS_UNIMPLEMENTED, NULL,
                      "data source %s is not a file source; larder-offline validates file and "
                      "PostgreSQL sources",
                      name);
        goto out;
    }
    src.name = (char *)name;
    opts.uri = (char *)(jstr(fo, "uri") ? jstr(fo, "uri") : "");
    src.options_case = FEAST__CORE__DATA_SOURCE__OPTIONS_FILE_OPTIONS;
    src.file_options = &opts;
    src.timestamp_field = (char *)(jstr(ds, "timestampField") ? jstr(ds, "timestampField") : "");
    src.created_timestamp_column =
            (char *)(jstr(ds, "createdTimestampColumn") ? jstr(ds, "createdTimestampColumn") : "");
    size_t nm = json_is_object(fm) ? json_object_size(fm) : 0;
    src.field_mapping = ld_arena_calloc(&ar, nm + 1, sizeof *src.field_mapping);
    Feast__Core__DataSource__FieldMappingEntry *ents = ld_arena_calloc(&ar, nm + 1, sizeof *ents);
    if (!src.field_mapping || !ents) {
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        goto out;
    }
    const char *key;
    json_t *val;
    json_object_foreach(fm, key, val)
    {
        if (!json_is_string(val))
            continue;
        Feast__Core__DataSource__FieldMappingEntry e =
                FEAST__CORE__DATA_SOURCE__FIELD_MAPPING_ENTRY__INIT;
        e.key = (char *)key;
        e.value = (char *)json_string_value(val);
        ents[src.n_field_mapping] = e;
        src.field_mapping[src.n_field_mapping] = &ents[src.n_field_mapping];
        src.n_field_mapping++;
    }
    if (!(path = local_path(cfg, name, opts.uri, st)))
        goto out;
    struct stat sb;
    if (stat(path, &sb) != 0) {
        ld_status_set(st, GRPC_STATUS_NOT_FOUND, "DataSourceNotFoundException",
                      "Unable to find table at '%s'. Please check that table exists.", opts.uri);
        goto out;
    }
    if (of_load_source(cfg, &src, &t, st) != 0)
        goto out;
    const char *need[2] = {src.timestamp_field, src.created_timestamp_column};
    for (int i = 0; i < 2; i++) {
        if (!*need[i])
            continue;
        const char *col = need[i];
        for (size_t m = 0; m < src.n_field_mapping; m++)
            if (!strcmp(src.field_mapping[m]->key, col))
                col = src.field_mapping[m]->value;
        const ot_column *c = ot_table_column(t, col);
        if (!c || (c->type.id != OT_TIMESTAMP && c->type.id != OT_DATE32)) {
            ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                          "data source %s: %s column '%s' is %s in %s", name,
                          i ? "created timestamp" : "timestamp", need[i],
                          c ? "not a timestamp" : "missing", opts.uri);
            goto out;
        }
    }
    rc = 0;
out:
    ot_table_free(t);
    free(path);
    ld_arena_destroy(&ar);
    json_decref(ds);
    return rc;
}
