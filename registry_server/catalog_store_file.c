/* The file backend: one serialized feast.core.Registry, as Feast writes it.
 *
 * Durability: every commit writes a temporary file next to the registry,
 * fsyncs it, renames it over the registry and fsyncs the directory, so after
 * a crash the file is either the old or the new registry, never a mix, and a
 * commit that returned is on disk.
 *
 * Concurrency: writers in this process are serialized by the registry's
 * writer lock; writers in other processes (another larder-registry on the
 * same file) by flock() on "<path>.lock", taken in begin() before the
 * registry checks for outside changes and reloads. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog_store.h"

#define REGISTRY_FILE_MAX ((size_t)1 << 31)

typedef struct file_store {
    cat_store base;
    char *path;
    char *lock_path;
    int lock_fd;
    struct stat seen; /* the file as we last read or wrote it */
    int seen_valid;
} file_store;

static void remember(file_store *fs)
{
    fs->seen_valid = stat(fs->path, &fs->seen) == 0;
}

static int file_load(cat_store *s, catalog **out, ld_status *st)
{
    file_store *fs = (file_store *)s;
    int fd = open(fs->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            *out = cat_new_empty();
            fs->seen_valid = 0;
            return *out ? 0 : ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "oom");
        }
        return ld_status_set(st, GRPC_STATUS_UNAVAILABLE, NULL, "cannot open registry %s: %s",
                             fs->path, strerror(errno));
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || (size_t)sb.st_size > REGISTRY_FILE_MAX) {
        close(fd);
        return ld_status_set(st, GRPC_STATUS_DATA_LOSS, NULL,
                             "registry %s is too large or unreadable", fs->path);
    }
    size_t len = (size_t)sb.st_size;
    uint8_t *data = malloc(len ? len : 1);
    size_t got = 0;
    while (data && got < len) {
        ssize_t r = read(fd, data + got, len - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (!data || got != len) {
        free(data);
        return ld_status_set(st, GRPC_STATUS_DATA_LOSS, NULL, "cannot read registry %s", fs->path);
    }
    catalog *c = cat_parse(data, len, st);
    free(data);
    if (!c) {
        ld_status_prefix(st, "%s", fs->path);
        return -1;
    }
    fs->seen = sb;
    fs->seen_valid = 1;
    *out = c;
    return 0;
}

static int file_changed(cat_store *s, ld_status *st)
{
    file_store *fs = (file_store *)s;
    struct stat sb;
    if (stat(fs->path, &sb) != 0)
        return fs->seen_valid ? 1 : 0;
    if (!fs->seen_valid)
        return 1;
    return sb.st_ino != fs->seen.st_ino || sb.st_size != fs->seen.st_size ||
           sb.st_mtim.tv_sec != fs->seen.st_mtim.tv_sec ||
           sb.st_mtim.tv_nsec != fs->seen.st_mtim.tv_nsec;
}

static int file_begin(cat_store *s, ld_status *st)
{
    file_store *fs = (file_store *)s;
    if (flock(fs->lock_fd, LOCK_EX) != 0)
        return ld_status_set(st, GRPC_STATUS_UNAVAILABLE, NULL, "cannot lock %s: %s", fs->lock_path,
                             strerror(errno));
    return 0;
}

static void file_abort(cat_store *s)
{
    file_store *fs = (file_store *)s;
    flock(fs->lock_fd, LOCK_UN);
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static int file_commit(cat_store *s, const catalog *next, const cat_change *changes, size_t n,
                       ld_status *st)
{
    file_store *fs = (file_store *)s;
    ld_buf b = LD_BUF_INIT;
    cat_serialize(next, &b);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp-%d", fs->path, (int)getpid());
    int rc = -1;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        ld_status_set(st, GRPC_STATUS_UNAVAILABLE, NULL, "cannot write %s: %s", tmp,
                      strerror(errno));
        goto out;
    }
    if (write_all(fd, b.data ? b.data : "", b.len) != 0 || fsync(fd) != 0) {
        ld_status_set(st, GRPC_STATUS_UNAVAILABLE, NULL, "cannot write %s: %s", tmp,
                      strerror(errno));
        close(fd);
        unlink(tmp);
        goto out;
    }
    close(fd);
    if (rename(tmp, fs->path) != 0) {
        ld_status_set(st, GRPC_STATUS_UNAVAILABLE, NULL, "cannot replace %s: %s", fs->path,
                      strerror(errno));
        unlink(tmp);
        goto out;
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", fs->path);
    int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    remember(fs);
    rc = 0;
out:
    ld_buf_free(&b);
    flock(fs->lock_fd, LOCK_UN);
    (void)changes;
    (void)n;
    return rc;
}

static void file_free(cat_store *s)
{
    file_store *fs = (file_store *)s;
    if (fs->lock_fd >= 0)
        close(fs->lock_fd);
    free(fs->path);
    free(fs->lock_path);
    free(fs);
}

static const cat_store_ops file_ops = {
        .name = "file",
        .load = file_load,
        .changed = file_changed,
        .begin = file_begin,
        .commit = file_commit,
        .abort = file_abort,
        .free = file_free,
};

/* mkdir -p of the registry's directory, as Feast creates data/ on apply. */
static void make_parent_dirs(const char *path)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        mkdir(buf, 0755);
        *p = '/';
    }
}

cat_store *cat_store_file_new(const char *path, ld_status *st)
{
    file_store *fs = calloc(1, sizeof *fs);
    if (!fs) {
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        return NULL;
    }
    fs->base.ops = &file_ops;
    fs->path = strdup(path);
    size_t n = strlen(path) + 6;
    fs->lock_path = malloc(n);
    snprintf(fs->lock_path, n, "%s.lock", path);
    make_parent_dirs(path);
    fs->lock_fd = open(fs->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fs->lock_fd < 0) {
        ld_status_set(st, GRPC_STATUS_UNAVAILABLE, NULL, "cannot create %s: %s", fs->lock_path,
                      strerror(errno));
        file_free(&fs->base);
        return NULL;
    }
    return &fs->base;
}
