#include "of_uploads.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ld_time.h"

struct of_uploads {
    pthread_mutex_t mu;
    of_upload **v;
    size_t n, cap;
    size_t bytes;
    int64_t ttl_us;
    size_t max_bytes;
};

void of_upload_free(of_upload *e)
{
    if (!e)
        return;
    ot_table_free(e->table);
    free(e->key);
    free(e->cmd);
    free(e);
}

static size_t column_bytes(const ot_column *c)
{
    size_t n = (size_t)((c->length + 7) / 8) + (size_t)c->data_len;
    if (c->values)
        n += (size_t)c->length * 8;
    if (c->offsets || c->offsets64)
        n += (size_t)(c->length + 1) * 8;
    if (c->child)
        n += column_bytes(c->child);
    return n;
}

size_t of_table_bytes(const ot_table *t)
{
    size_t n = 0;
    for (size_t i = 0; t && i < t->n_cols; i++)
        n += column_bytes(&t->cols[i]);
    return n;
}

of_uploads *of_uploads_new(int64_t ttl_us, size_t max_bytes)
{
    of_uploads *u = calloc(1, sizeof *u);
    if (!u)
        return NULL;
    pthread_mutex_init(&u->mu, NULL);
    u->ttl_us = ttl_us;
    u->max_bytes = max_bytes;
    return u;
}

void of_uploads_free(of_uploads *u)
{
    if (!u)
        return;
    for (size_t i = 0; i < u->n; i++)
        of_upload_free(u->v[i]);
    free(u->v);
    pthread_mutex_destroy(&u->mu);
    free(u);
}

/* Under mu: drop expired entries. */
static void expire(of_uploads *u)
{
    int64_t now = ld_mono_us();
    size_t j = 0;
    for (size_t i = 0; i < u->n; i++) {
        if (u->ttl_us > 0 && now - u->v[i]->created_us > u->ttl_us) {
            u->bytes -= u->v[i]->bytes;
            of_upload_free(u->v[i]);
        } else {
            u->v[j++] = u->v[i];
        }
    }
    u->n = j;
}

static size_t find(of_uploads *u, const uint8_t *key, size_t len)
{
    for (size_t i = 0; i < u->n; i++)
        if (u->v[i]->key_len == len && memcmp(u->v[i]->key, key, len) == 0)
            return i;
    return (size_t)-1;
}

static void remove_at(of_uploads *u, size_t i)
{
    u->bytes -= u->v[i]->bytes;
    u->v[i] = u->v[--u->n];
}

int of_uploads_put(of_uploads *u, const uint8_t *key, size_t key_len, const char *cmd,
                   size_t cmd_len, ot_table *table, size_t bytes, ld_status *st)
{
    of_upload *e = calloc(1, sizeof *e);
    if (e) {
        e->key = malloc(key_len + 1);
        e->cmd = malloc(cmd_len + 1);
    }
    if (!e || !e->key || !e->cmd) {
        if (e) {
            free(e->key);
            free(e->cmd);
            free(e);
        }
        ot_table_free(table);
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
    }
    memcpy(e->key, key, key_len);
    e->key_len = key_len;
    memcpy(e->cmd, cmd, cmd_len);
    e->cmd[cmd_len] = '\0';
    e->cmd_len = cmd_len;
    e->table = table;
    e->bytes = bytes;
    e->created_us = ld_mono_us();
    pthread_mutex_lock(&u->mu);
    expire(u);
    size_t old = find(u, key, key_len);
    size_t freed = old != (size_t)-1 ? u->v[old]->bytes : 0;
    if (u->bytes - freed + bytes > u->max_bytes) {
        pthread_mutex_unlock(&u->mu);
        of_upload_free(e);
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL,
                             "uploads in flight would exceed %zu bytes "
                             "(larder.offline_max_upload_bytes); fetch or retry later",
                             u->max_bytes);
    }
    if (old != (size_t)-1) {
        of_upload *prev = u->v[old];
        remove_at(u, old);
        of_upload_free(prev);
    }
    if (u->n == u->cap) {
        size_t cap = u->cap ? u->cap * 2 : 16;
        of_upload **v = realloc(u->v, cap * sizeof *v);
        if (!v) {
            pthread_mutex_unlock(&u->mu);
            of_upload_free(e);
            return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        }
        u->v = v;
        u->cap = cap;
    }
    u->v[u->n++] = e;
    u->bytes += bytes;
    pthread_mutex_unlock(&u->mu);
    return 0;
}

of_upload *of_uploads_take(of_uploads *u, const uint8_t *key, size_t key_len)
{
    pthread_mutex_lock(&u->mu);
    expire(u);
    size_t i = find(u, key, key_len);
    of_upload *e = NULL;
    if (i != (size_t)-1) {
        e = u->v[i];
        remove_at(u, i);
    }
    pthread_mutex_unlock(&u->mu);
    return e;
}

void of_uploads_restore(of_uploads *u, of_upload *e)
{
    ld_status st;
    of_uploads_put(u, e->key, e->key_len, e->cmd, e->cmd_len, e->table, e->bytes, &st);
    e->table = NULL;
    of_upload_free(e);
}

int of_uploads_has(of_uploads *u, const uint8_t *key, size_t key_len)
{
    pthread_mutex_lock(&u->mu);
    expire(u);
    int has = find(u, key, key_len) != (size_t)-1;
    pthread_mutex_unlock(&u->mu);
    return has;
}

size_t of_uploads_keys(of_uploads *u, uint8_t ***keys, size_t **lens)
{
    pthread_mutex_lock(&u->mu);
    expire(u);
    size_t n = u->n;
    *keys = calloc(n + 1, sizeof **keys);
    *lens = calloc(n + 1, sizeof **lens);
    for (size_t i = 0; *keys && *lens && i < n; i++) {
        (*keys)[i] = malloc(u->v[i]->key_len + 1);
        if ((*keys)[i])
            memcpy((*keys)[i], u->v[i]->key, u->v[i]->key_len);
        (*lens)[i] = u->v[i]->key_len;
    }
    pthread_mutex_unlock(&u->mu);
    return *keys && *lens ? n : 0;
}
