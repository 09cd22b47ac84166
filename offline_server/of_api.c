#include "of_api.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "feast/core/DataSource.pb-c.h"
#include "feast/core/FeatureView.pb-c.h"
#include "feast/core/OnDemandFeatureView.pb-c.h"
#include "feast/core/Registry.pb-c.h"
#include "feast/core/StreamFeatureView.pb-c.h"
#include "ld_arena.h"
#include "ld_buf.h"
#include "ld_log.h"
#include "ld_regclient.h"
#include "ld_time.h"
#include "of_api_int.h"
#include "of_hist.h"
#include "of_write.h"
#include "ot_csv.h"
#include "ot_ipc.h"
#include "ot_pit.h"

/* A fetched registry, shared by the commands that use it: a refresh swaps
 * in a new one and the old one goes when its last user is done. */
typedef struct reg_copy {
    atomic_int refs;
    Feast__Core__Registry *r;
} reg_copy;

static void reg_copy_unref(reg_copy *c)
{
    if (c && atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1) {
        feast__core__registry__free_unpacked(c->r, NULL);
        free(c);
    }
}

struct of_api {
    const ld_config *cfg;
    ld_regclient *reg;
    pthread_mutex_t mu;
    reg_copy *cached;
    int64_t fetched_us;
    int64_t ttl_us;
    int threads;
    of_pg *pg; /* PostgreSQL sources (of_pg.c) */
};

static const struct {
    const char *name;
    of_api_kind kind;
} apis[] = {
        {"get_historical_features", OF_API_READ},
        {"pull_latest_from_table_or_query", OF_API_READ},
        {"pull_all_from_table_or_query", OF_API_READ},
        {"get_table_column_names_and_types_from_data_source", OF_API_READ},
        {"offline_write_batch", OF_API_WRITE},
        {"write_logged_features", OF_API_WRITE},
        {"persist", OF_API_WRITE},
        {"validate_data_source", OF_API_WRITE},
};

#define CMD_MAX (16u << 20)

static json_t *parse_cmd(const char *cmd, size_t len, ld_status *st)
{
    if (len > CMD_MAX) {
        ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL, "command of %zu bytes is too large",
                      len);
        return NULL;
    }
    json_error_t err;
    json_t *j = json_loadb(cmd, len, 0, &err);
    if (!j || !json_is_object(j)) {
        ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                      "the descriptor's command is not a JSON object: %s (at %d)",
                      j ? "not an object" : err.text, j ? 0 : err.position);
        json_decref(j);
        return NULL;
    }
    return j;
}

int of_api_classify(const char *cmd, size_t len, of_api_kind *kind, ld_status *st)
{
    json_t *j = parse_cmd(cmd, len, st);
    if (!j)
        return -1;
    const char *api = json_string_value(json_object_get(j, "api"));
    int rc = -1;
    if (!api) {
        ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                      "the command has no \"api\" key: nothing to do with the upload");
    } else {
        size_t i;
        for (i = 0; i < sizeof apis / sizeof apis[0]; i++)
            if (strcmp(api, apis[i].name) == 0)
                break;
        if (i == sizeof apis / sizeof apis[0]) {
            ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL, "unknown api '%s' in the command",
                          api);
        } else {
            *kind = apis[i].kind;
            rc = 0;
        }
    }
    json_decref(j);
    return rc;
}

/* ------------------------------------------------------------ registry */

/* The registry, fetched at most every cache_ttl_seconds (blocking; pool),
 * referenced: release with reg_copy_unref. */
static reg_copy *registry(of_api *a, ld_status *st)
{
    pthread_mutex_lock(&a->mu);
    if (!a->cached || ld_mono_us() - a->fetched_us > a->ttl_us) {
        uint8_t *bytes;
        size_t len;
        if (ld_regclient_fetch_bytes(a->reg, &bytes, &len, st) == 0) {
            Feast__Core__Registry *r = feast__core__registry__unpack(NULL, len, bytes);
            free(bytes);
            reg_copy *c = r ? calloc(1, sizeof *c) : NULL;
            if (c) {
                atomic_init(&c->refs, 1);
                c->r = r;
                reg_copy_unref(a->cached);
                a->cached = c;
                a->fetched_us = ld_mono_us();
            } else {
                if (r)
                    feast__core__registry__free_unpacked(r, NULL);
                ld_status_set(st, GRPC_STATUS_DATA_LOSS, NULL, "registry does not parse");
            }
        } else if (a->cached) {
            ld_warn("registry refresh failed, using the last copy: %s", st->msg);
            ld_status_clear(st);
        }
    }
    reg_copy *c = a->cached;
    if (c)
        atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    pthread_mutex_unlock(&a->mu);
    if (!c && ld_status_ok(st))
        ld_status_set(st, GRPC_STATUS_UNAVAILABLE, NULL, "registry not available");
    return c;
}

static int in_project(const char *p, const char *project)
{
    return !*p || strcmp(p, project) == 0;
}

static const Feast__Core__DataSource *find_source(const Feast__Core__Registry *r,
                                                  const char *project, const char *name)
{
    for (size_t i = 0; i < r->n_data_sources; i++)
        if (!strcmp(r->data_sources[i]->name, name) &&
            in_project(r->data_sources[i]->project, project))
            return r->data_sources[i];
    return NULL;
}

/* of_api_int.h: for of_hist.c and of_write.c */
reg_copy *of_api_registry(of_api *a, ld_status *st)
{
    return registry(a, st);
}

const Feast__Core__Registry *of_api_registry_get(const reg_copy *c)
{
    return c->r;
}

void of_api_registry_release(reg_copy *c)
{
    reg_copy_unref(c);
}

const ld_config *of_api_config(const of_api *a)
{
    return a->cfg;
}

int of_api_threads(const of_api *a)
{
    return a->threads;
}

const Feast__Core__DataSource *of_api_find_source(const Feast__Core__Registry *r,
                                                  const char *project, const char *name)
{
    return find_source(r, project, name);
}

/* ------------------------------------------------------------ sources */

/* The file columns to read for the Feast names `names` (n of them):
 * each name, and every column the field mapping renames into one of them,
 * directly or through a chain of renames (of_load_source_cols applies the
 * entries in order, so a → b, b → c makes a into c). More is harmless: the
 * caller keeps only the columns that end up named as it asked. */
static const char **source_columns(const Feast__Core__DataSource *ds, const char *const *names,
                                   size_t n, size_t *n_out)
{
    size_t cap = n + ds->n_field_mapping, k = 0;
    const char **cols = calloc(cap + 1, sizeof *cols);
    if (!cols)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (names[i])
            cols[k++] = names[i];
    for (int grew = 1; grew;) {
        grew = 0;
        for (size_t m = 0; m < ds->n_field_mapping; m++) {
            const char *key = ds->field_mapping[m]->key, *val = ds->field_mapping[m]->value;
            int has_key = 0, has_val = 0;
            for (size_t i = 0; i < k; i++) {
                has_key |= !strcmp(cols[i], key);
                has_val |= !strcmp(cols[i], val);
            }
            if (has_val && !has_key && k < cap) {
                cols[k++] = key;
                grew = 1;
            }
        }
    }
    *n_out = k;
    return cols;
}

/* Load a file source: CSV, or Arrow IPC stream/file (Feather v2). */
int of_load_source(const ld_config *cfg, const Feast__Core__DataSource *ds, ot_table **out,
                   ld_status *st)
{
    return of_load_source_cols(cfg, ds, NULL, 0, out, st);
}

int of_load_source_cols(const ld_config *cfg, const Feast__Core__DataSource *ds,
                        const char *const *names, size_t n_names, ot_table **out, ld_status *st)
{
    if (ds->options_case != FEAST__CORE__DATA_SOURCE__OPTIONS_FILE_OPTIONS || !ds->file_options)
        return ld_status_set(st, GRPC_STATUS_UNIMPLEMENTED, NULL,
                             "data source %s is neither a file nor a PostgreSQL source; "
                             "larder-offline reads those two kinds",
                             ds->name);
    const char *uri = ds->file_options->uri;
    if (!uri || !*uri)
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL, "file source %s has no uri",
                             ds->name);
    if (!strncmp(uri, "file://", 7))
        uri += 7;
    else if (strstr(uri, "://"))
        return ld_status_set(st, GRPC_STATUS_UNIMPLEMENTED, NULL,
                             "file source %s: only local files are read (%s)", ds->name, uri);
    /* only the columns asked for are decoded: the file's names */
    size_t n_cols = 0;
    const char **cols = NULL;
    if (names && !(cols = source_columns(ds, names, n_names, &n_cols)))
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
    char *path = ld_config_resolve_path(cfg, uri);
    size_t n = strlen(path);
    int rc;
    if (n > 4 && !strcasecmp(path + n - 4, ".csv")) {
        ot_csv_opts o = {.columns = cols, .n_columns = n_cols};
        rc = ot_csv_read(path, &o, out, st);
    } else if ((n > 6 && !strcasecmp(path + n - 6, ".arrow")) ||
               (n > 8 && !strcasecmp(path + n - 8, ".feather")) ||
               (n > 4 && !strcasecmp(path + n - 4, ".ipc"))) {
        /* block by block through the footer, the selected fields' buffers
         * only (ot_ipc_read_path_cols) */
        rc = ot_ipc_read_path_cols(path, cols, n_cols, out, st);
    } else if (n > 8 && !strcasecmp(path + n - 8, ".parquet")) {
        rc = ld_status_set(st, GRPC_STATUS_UNIMPLEMENTED, NULL,
                           "file source %s is Parquet (%s); larder-offline reads CSV and Arrow "
                           "IPC/Feather files — Parquet is a later step",
                           ds->name, path);
    } else {
        rc = ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                           "file source %s: unknown file type %s (csv, arrow, feather, ipc)",
                           ds->name, path);
    }
    free(path);
    free(cols);
    if (rc != 0)
        return -1;
    /* field_mapping: source column -> Feast name */
    for (size_t i = 0; i < ds->n_field_mapping; i++)
        for (size_t c = 0; c < (*out)->n_cols; c++)
            if (!strcmp((*out)->cols[c].name, ds->field_mapping[i]->key)) {
                free((*out)->cols[c].name);
                (*out)->cols[c].name = strdup(ds->field_mapping[i]->value);
            }
    return 0;
}

/* ------------------------------------------------------------ results */

enum { RES_TABLE, RES_GATHER, RES_PG };

/* A read command's result (of_api.h). A gathered result keeps what its
 * columns point into: the loaded sources, the registry copy and the
 * command (names), and an arena (views, the pull's row selection). */
struct of_result {
    int kind;
    int started;
    ot_table *table;   /* RES_TABLE: handed out whole by the first next() */
    of_pg_stream *pg;  /* RES_PG */
    ot_gather *gather; /* RES_GATHER: a pit plan, or &pull */
    int plan;
    ot_gather pull;
    int64_t next_row;
    int64_t table_rows; /* RES_TABLE: the table's rows */
    ot_table **sources;
    size_t n_sources;
    ld_arena ar;
    reg_copy *reg;
    json_t *cmd;
};

static of_result *result_new(int kind, ld_status *st)
{
    of_result *r = calloc(1, sizeof *r);
    if (!r) {
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        return NULL;
    }
    r->kind = kind;
    ld_arena_init(&r->ar, NULL, 0, 0);
    return r;
}

/* A result computed whole (takes t; frees it on failure). */
static int result_table(ot_table *t, of_result **out, ld_status *st)
{
    if (!(*out = result_new(RES_TABLE, st))) {
        ot_table_free(t);
        return -1;
    }
    (*out)->table = t;
    (*out)->table_rows = t->n_rows;
    return 0;
}

void of_result_free(of_result *r)
{
    if (!r)
        return;
    ot_table_free(r->table);
    of_pg_stream_free(r->pg);
    if (r->plan)
        ot_pit_plan_free(r->gather);
    for (size_t i = 0; i < r->n_sources; i++)
        ot_table_free(r->sources[i]);
    ld_arena_destroy(&r->ar); /* sources' array lives here */
    reg_copy_unref(r->reg);
    json_decref(r->cmd);
    free(r);
}

int64_t of_result_total_rows(const of_result *r)
{
    switch (r->kind) {
    case RES_TABLE:
        return r->table_rows;
    case RES_GATHER:
        return r->gather->n_rows;
    default:
        return -1;
    }
}

int of_result_next(of_result *r, int64_t max_rows, ot_table **chunk, ld_status *st)
{
    *chunk = NULL;
    if (r->kind == RES_PG)
        return of_pg_stream_next(r->pg, chunk, st);
    if (r->kind == RES_TABLE) {
        if (!r->started) {
            *chunk = r->table;
            r->table = NULL;
        }
        r->started = 1;
        return 0;
    }
    int64_t left = r->gather->n_rows - r->next_row;
    if (r->started && left <= 0)
        return 0;
    int64_t n = max_rows > 0 && left > max_rows ? max_rows : left;
    /* one thread: the completion-queue thread sends the previous chunk */
    if (ot_gather_rows(r->gather, r->next_row, n, 1, chunk, st) != 0)
        return -1;
    r->started = 1;
    r->next_row += n;
    return 0;
}

/* The whole result as one table (frees r). */
static int result_collect(of_result *r, int threads, ot_table **out, ld_status *st)
{
    int rc = 0;
    *out = NULL;
    if (r->kind == RES_TABLE) {
        *out = r->table;
        r->table = NULL;
    } else if (r->kind == RES_PG) {
        rc = of_pg_stream_collect(r->pg, out, st);
        r->pg = NULL;
    } else {
        rc = ot_gather_rows(r->gather, 0, r->gather->n_rows, threads, out, st);
    }
    of_result_free(r);
    return rc;
}

/* ------------------------------------------------------------ APIs */

/* Keep only the columns of t named in names[0..n) (NULL entries ignored):
 * a source is loaded whole, and a request reads only some of its columns,
 * so the others go at once rather than living through the join. */
static void table_keep(ot_table *t, const char *const *names, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < t->n_cols; i++) {
        int want = 0;
        for (size_t j = 0; j < n && !want; j++)
            want = names[j] && t->cols[i].name && !strcmp(names[j], t->cols[i].name);
        if (!want) {
            ot_column_clear(&t->cols[i]);
            continue;
        }
        if (k != i)
            t->cols[k] = t->cols[i];
        k++;
    }
    t->n_cols = k;
}

/* Free, in place, the columns of t that are not features of v (the plan
 * points at the others, which keep their places). */
static void view_keep_in_place(ot_table *t, const ot_pit_view *v)
{
    for (size_t i = 0; i < t->n_cols; i++) {
        int want = 0;
        for (size_t f = 0; f < v->n_features && !want; f++)
            want = t->cols[i].name && !strcmp(v->features[f], t->cols[i].name);
        if (!want)
            ot_column_clear(&t->cols[i]);
    }
}

/* The source columns view v reads (Feast names; NULL entries possible):
 * join keys, features, event and created timestamps. NULL when out of
 * memory. */
static const char **view_columns(const ot_pit_view *v, ld_arena *ar, size_t *n)
{
    const char **names = ld_arena_calloc(ar, v->n_keys + v->n_features + 2, sizeof *names);
    if (!names)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < v->n_keys; i++)
        names[k++] = v->join_keys[i];
    for (size_t i = 0; i < v->n_features; i++)
        names[k++] = v->features[i];
    names[k++] = v->event_ts;
    names[k++] = v->created_ts;
    *n = k;
    return names;
}

/* Load v's source reading only the columns v reads (the field mapping can
 * bring in a few more: those go right after loading). */
static int load_view_source(const ld_config *cfg, const Feast__Core__DataSource *ds,
                            const ot_pit_view *v, ld_arena *ar, ot_table **out, ld_status *st)
{
    size_t n = 0;
    const char **names = view_columns(v, ar, &n);
    if (!names)
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
    if (of_load_source_cols(cfg, ds, names, n, out, st) != 0)
        return -1;
    table_keep(*out, names, n);
    return 0;
}

static const char *jstr(json_t *j, const char *key)
{
    return json_string_value(json_object_get(j, key));
}

/* r's result: the table's columns `names` at the rows `idx` (n of them),
 * gathered when read; names and idx live as long as r. */
static int take(of_result *r, const ot_table *src, const char *const *names, size_t n_names,
                const int64_t *idx, int64_t n, ld_status *st)
{
    ot_gather *g = &r->pull;
    g->src = ld_arena_calloc(&r->ar, n_names + 1, sizeof *g->src);
    g->idx = ld_arena_calloc(&r->ar, n_names + 1, sizeof *g->idx);
    g->names = ld_arena_calloc(&r->ar, n_names + 1, sizeof *g->names);
    if (!g->src || !g->idx || !g->names)
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
    for (size_t i = 0; i < n_names; i++) {
        if (!(g->src[i] = ot_table_column(src, names[i])))
            return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                                 "column %s is not in the source", names[i]);
        g->idx[i] = idx;
        g->names[i] = names[i];
    }
    g->n_cols = n_names;
    g->n_rows = n;
    r->gather = g;
    return 0;
}

static int parse_iso(json_t *j, const char *key, int64_t *us, int *present, ld_status *st)
{
    json_t *v = json_object_get(j, key);
    *present = v && !json_is_null(v);
    if (!*present)
        return 0;
    if (!json_is_string(v) || ld_time_parse_iso8601(json_string_value(v), us) != 0)
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "%s must be an ISO 8601 timestamp", key);
    return 0;
}

typedef struct sort_ctx {
    const ot_column **keys;
    size_t n_keys;
    const ot_column *ts, *created;
} sort_ctx;

static int cmp_cell(const ot_column *c, int64_t a, int64_t b)
{
    int va = ot_column_valid(c, a), vb = ot_column_valid(c, b);
    if (!va || !vb)
        return va - vb;
    switch (c->type.id) {
    case OT_INT32:
    case OT_DATE32: {
        int32_t x = ((const int32_t *)c->values)[a], y = ((const int32_t *)c->values)[b];
        return (x > y) - (x < y);
    }
    case OT_INT64:
    case OT_TIMESTAMP: {
        int64_t x = ((const int64_t *)c->values)[a], y = ((const int64_t *)c->values)[b];
        return (x > y) - (x < y);
    }
    case OT_FLOAT64: {
        double x = ((const double *)c->values)[a], y = ((const double *)c->values)[b];
        return (x > y) - (x < y);
    }
    case OT_UTF8:
    case OT_BINARY: {
        int32_t la = c->offsets[a + 1] - c->offsets[a], lb = c->offsets[b + 1] - c->offsets[b];
        int r = memcmp(c->data + c->offsets[a], c->data + c->offsets[b], la < lb ? la : lb);
        return r ? r : (la > lb) - (la < lb);
    }
    default:
        return 0;
    }
}

static int cmp_rows(const void *pa, const void *pb, void *arg)
{
    const sort_ctx *s = arg;
    int64_t a = *(const int64_t *)pa, b = *(const int64_t *)pb;
    for (size_t k = 0; k < s->n_keys; k++) {
        int c = cmp_cell(s->keys[k], a, b);
        if (c)
            return c;
    }
    int c = cmp_cell(s->ts, a, b);
    if (!c && s->created)
        c = cmp_cell(s->created, a, b);
    return c ? c : (a > b) - (a < b);
}

static int strings_of(json_t *arr, const char ***out, size_t *n, ld_arena *ar)
{
    *n = json_is_array(arr) ? json_array_size(arr) : 0;
    *out = ld_arena_calloc(ar, *n + 1, sizeof **out);
    if (!*out)
        return -1;
    for (size_t i = 0; i < *n; i++) {
        const char *s = json_string_value(json_array_get(arr, i));
        if (!s)
            return -1;
        (*out)[i] = s;
    }
    return 0;
}

/* pull_all_from_table_or_query / pull_latest_from_table_or_query */
static int api_pull(of_api *a, json_t *j, int latest, of_result **out, ld_status *st)
{
    const char *name = jstr(j, "data_source_name");
    const char *ts = jstr(j, "timestamp_field");
    const char *created = jstr(j, "created_timestamp_column");
    if (!name || !ts)
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "the command needs data_source_name and timestamp_field");
    /* the result keeps the source, the command (names) and the selection */
    of_result *res = result_new(RES_GATHER, st);
    if (!res)
        return -1;
    ld_arena *ar = &res->ar;
    res->cmd = json_incref(j);
    const char **keys, **feats;
    size_t nk, nf;
    int64_t start = 0, end = 0;
    int has_start, has_end;
    int rc = -1;
    if (!(res->sources = ld_arena_calloc(ar, 1, sizeof *res->sources))) {
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        goto out;
    }
    /* a missing source first, then the command's lists, then the file */
    reg_copy *rc_ = registry(a, st);
    if (!rc_)
        goto out;
    const Feast__Core__DataSource *ds = find_source(rc_->r, a->cfg->project, name);
    if (!ds) {
        ld_status_set(st, GRPC_STATUS_NOT_FOUND, "DataSourceObjectNotFoundException",
                      "Data source %s does not exist in project %s", name, a->cfg->project);
        reg_copy_unref(rc_);
        goto out;
    }
    if (strings_of(json_object_get(j, "join_key_columns"), &keys, &nk, ar) != 0 ||
        strings_of(json_object_get(j, "feature_name_columns"), &feats, &nf, ar) != 0) {
        ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                      "join_key_columns and feature_name_columns must be lists of strings");
        reg_copy_unref(rc_);
        goto out;
    }
    if (parse_iso(j, "start_date", &start, &has_start, st) != 0 ||
        parse_iso(j, "end_date", &end, &has_end, st) != 0) {
        reg_copy_unref(rc_);
        goto out;
    }
    ot_pit_view pv = {.join_keys = keys,
                      .n_keys = nk,
                      .features = feats,
                      .n_features = nf,
                      .event_ts = ts,
                      .created_ts = created};
    int lrc = load_view_source(a->cfg, ds, &pv, ar, &res->sources[0], st);
    reg_copy_unref(rc_);
    if (lrc != 0)
        goto out;
    res->n_sources = 1;
    ot_table *src = res->sources[0];
    const ot_column *tsc = ot_table_column(src, ts);
    const ot_column *cc = created && *created ? ot_table_column(src, created) : NULL;
    if (!tsc || tsc->type.id != OT_TIMESTAMP) {
        ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                      "timestamp column %s is missing from %s or is not a timestamp", ts, name);
        goto out;
    }
    int64_t *idx = ld_arena_calloc(ar, (size_t)src->n_rows + 1, sizeof *idx);
    if (!idx) {
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        goto out;
    }
    int64_t n = 0;
    for (int64_t i = 0; i < src->n_rows; i++) {
        if (!ot_column_valid(tsc, i))
            continue;
        int64_t t = ot_column_ts_us(tsc, i);
        if ((has_start && t < start) || (has_end && t > end))
            continue;
        idx[n++] = i;
    }
    if (latest) {
        sort_ctx sc = {ld_arena_calloc(ar, nk + 1, sizeof(ot_column *)), nk, tsc, cc};
        for (size_t k = 0; k < nk; k++)
            if (!(sc.keys[k] = ot_table_column(src, keys[k]))) {
                ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                              "join key %s is not a column of %s", keys[k], name);
                goto out;
            }
        qsort_r(idx, (size_t)n, sizeof *idx, cmp_rows, &sc);
        int64_t m = 0;
        for (int64_t i = 0; i < n; i++) {
            int last = i + 1 == n;
            for (size_t k = 0; !last && k < nk; k++)
                last = cmp_cell(sc.keys[k], idx[i], idx[i + 1]) != 0;
            if (last)
                idx[m++] = idx[i];
        }
        n = m;
    }
    const char **cols = ld_arena_calloc(ar, nk + nf + 3, sizeof *cols);
    if (!cols) {
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        goto out;
    }
    size_t ncols = 0;
    for (size_t k = 0; k < nk; k++)
        cols[ncols++] = keys[k];
    for (size_t f = 0; f < nf; f++)
        cols[ncols++] = feats[f];
    cols[ncols++] = ts;
    if (cc)
        cols[ncols++] = created;
    rc = take(res, src, cols, ncols, idx, n, st);
out:
    if (rc != 0)
        of_result_free(res);
    else
        *out = res;
    return rc;
}

static int api_columns(of_api *a, json_t *j, of_result **res, ld_status *st)
{
    const char *proto = jstr(j, "data_source_proto");
    json_error_t err;
    json_t *ds = proto ? json_loads(proto, 0, &err) : NULL;
    if (!ds)
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "data_source_proto must be a DataSource in JSON");
    json_t *fo = json_object_get(ds, "fileOptions");
    Feast__Core__DataSource src = FEAST__CORE__DATA_SOURCE__INIT;
    Feast__Core__DataSource__FileOptions opts = FEAST__CORE__DATA_SOURCE__FILE_OPTIONS__INIT;
    src.name = (char *)(jstr(ds, "name") ? jstr(ds, "name") : "");
    if (fo) {
        opts.uri = (char *)(jstr(fo, "uri") ? jstr(fo, "uri") : "");
        src.options_case = FEAST__CORE__DATA_SOURCE__OPTIONS_FILE_OPTIONS;
        src.file_options = &opts;
    }
    ot_table *t = NULL;
    int rc = of_load_source(a->cfg, &src, &t, st);
    json_decref(ds);
    if (rc != 0)
        return -1;
    ot_table *out = ot_table_new(2, (int64_t)t->n_cols);
    ld_buf names = LD_BUF_INIT, types = LD_BUF_INIT;
    int32_t *no = calloc(t->n_cols + 1, sizeof *no), *to = calloc(t->n_cols + 1, sizeof *to);
    for (size_t i = 0; no && to && i < t->n_cols; i++) {
        ld_buf_puts(&names, t->cols[i].name);
        no[i + 1] = (int32_t)names.len;
        ot_type_format(&t->cols[i].type, &types);
        to[i + 1] = (int32_t)types.len;
    }
    ot_table_free(t);
    if (!out || !no || !to) {
        free(no);
        free(to);
        ld_buf_free(&names);
        ld_buf_free(&types);
        ot_table_free(out);
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
    }
    const char *cn[2] = {"name", "type"};
    ld_buf *bufs[2] = {&names, &types};
    int32_t *offs[2] = {no, to};
    for (int k = 0; k < 2; k++) {
        ot_column *c = &out->cols[k];
        c->name = strdup(cn[k]);
        c->type.id = OT_UTF8;
        c->length = out->n_rows;
        c->offsets = offs[k];
        size_t len;
        c->data = (uint8_t *)ld_buf_steal(bufs[k], &len);
        c->data_len = (int64_t)len;
        if (!c->data)
            c->data = calloc(1, 1);
    }
    return result_table(out, res, st);
}

/* get_historical_features with the entity dataframe given as SQL
 * (entity_df_sql) — a hook for SQL sources. Over file sources there is no
 * SQL engine to run it. */
static int historical_entity_sql(of_api *a, json_t *j, ot_table **result, ld_status *st)
{
    (void)a;
    (void)j;
    *result = NULL;
    return ld_status_set(st, GRPC_STATUS_FAILED_PRECONDITION, NULL,
                         "an entity dataframe given as SQL (entity_df_sql) needs feature views "
                         "over PostgreSQL sources; over file sources send the entity dataframe "
                         "as a table");
}

/* Feast's get_historical_features over file sources: a point-in-time join of
 * the uploaded entity dataframe with each feature view's batch source. */
static int api_historical(of_api *a, json_t *j, const ot_table *entities, of_result **out,
                          ld_status *st)
{
    /* Feast's mock one-column table: no entity dataframe */
    if (entities->n_cols == 1 && !strcmp(entities->cols[0].name, "key")) {
        ot_table *t = NULL;
        if (jstr(j, "entity_df_sql"))
            return historical_entity_sql(a, j, &t, st);
        if (of_hist_range(a, j, &t, st) != 0)
            return -1;
        return result_table(t, out, st);
    }
    const char *ts_col = NULL;
    if (ot_table_column(entities, "event_timestamp")) {
        ts_col = "event_timestamp";
    } else {
        for (size_t i = 0; i < entities->n_cols; i++)
            if (entities->cols[i].type.id == OT_TIMESTAMP) {
                if (ts_col)
                    return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT,
                                         "EntityTimestampInferenceException",
                                         "Please provide an entity_df with a column named "
                                         "event_timestamp representing the time of events.");
                ts_col = entities->cols[i].name;
            }
    }
    if (!ts_col)
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "EntityTimestampInferenceException",
                             "Please provide an entity_df with a column named event_timestamp "
                             "representing the time of events.");
    json_t *names = json_object_get(j, "feature_view_names");
    json_t *refs = json_object_get(j, "feature_refs");
    /* Feast's server looks the views up in the command's project */
    const char *project =
            jstr(j, "project") && *jstr(j, "project") ? jstr(j, "project") : a->cfg->project;
    size_t nv = json_array_size(names), nr = json_array_size(refs);
    if (!json_is_array(names) || !json_is_array(refs) || !nv || !nr)
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "the command needs feature_view_names and feature_refs");
    reg_copy *copy = registry(a, st);
    if (!copy)
        return -1;
    /* the result keeps what its plan points into: the sources, the views
     * (arena), their names (registry copy, command) */
    of_result *res = result_new(RES_GATHER, st);
    if (!res) {
        reg_copy_unref(copy);
        return -1;
    }
    res->reg = copy;
    res->cmd = json_incref(j);
    const Feast__Core__Registry *r = copy->r;
    ot_pit_view *views = ld_arena_calloc(&res->ar, nv + 1, sizeof *views);
    res->sources = ld_arena_calloc(&res->ar, nv + 1, sizeof *res->sources);
    int rc = -1;
    if (!views || !res->sources) {
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        goto out;
    }
    if (of_hist_check_refs(r, project, j, st) != 0)
        goto out;
    for (size_t v = 0; v < nv; v++) {
        const Feast__Core__DataSource *ds = NULL;
        if (of_hist_resolve(r, project, j, v, &views[v], &ds, &res->ar, st) != 0 ||
            load_view_source(a->cfg, ds, &views[v], &res->ar, &res->sources[v], st) != 0)
            goto out;
        res->n_sources = v + 1;
        views[v].source = res->sources[v];
    }
    rc = ot_pit_plan(entities, ts_col, views, nv, a->threads, &res->gather, st);
    res->plan = rc == 0;
    /* matched: the keys and timestamps of the sources are read no more,
     * only the features are gathered while the result streams */
    for (size_t v = 0; rc == 0 && v < nv; v++) {
        ot_pit_view fv = {.features = views[v].features, .n_features = views[v].n_features};
        view_keep_in_place(res->sources[v], &fv);
    }
out:
    if (rc != 0)
        of_result_free(res);
    else
        *out = res;
    return rc;
}

/* Commands on PostgreSQL sources go to of_pg.c: 1 when `j` (run as `api`,
 * NULL: its own) is not one. */
static int run_pg(of_api *a, json_t *j, const char *api, const ot_table *upload,
                  of_pg_cancel *cancel, of_pg_stream **stream, ld_status *st)
{
    if (!api)
        api = jstr(j, "api");
    ld_status ignored = LD_STATUS_INIT; /* no registry: the file path reports it */
    reg_copy *c = api && strcmp(api, "get_table_column_names_and_types_from_data_source") &&
                                  strcmp(api, "validate_data_source")
                          ? registry(a, &ignored)
                          : NULL;
    int rc = of_pg_command(a->pg, c ? c->r : NULL, a->cfg->project, api, j, upload, cancel, stream,
                           st);
    reg_copy_unref(c);
    return rc;
}

int of_api_run_stream(of_api *a, const char *cmd, size_t len, const ot_table *upload,
                      of_pg_cancel *cancel, of_result **out, ld_status *st)
{
    *out = NULL;
    json_t *j = parse_cmd(cmd, len, st);
    if (!j)
        return -1;
    of_pg_stream *pgs = NULL;
    int rc = run_pg(a, j, NULL, upload, cancel, &pgs, st);
    if (rc == 0) {
        if (!pgs) {
            rc = ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                               "the command has no result to fetch");
        } else if (!(*out = result_new(RES_PG, st))) {
            of_pg_stream_free(pgs);
            rc = -1;
        } else {
            (*out)->pg = pgs;
        }
    } else if (rc == 1) {
        const char *api = jstr(j, "api");
        rc = api ? of_api_run_read(a, j, api, upload, out, st)
                 : ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL, "the command has no api");
    }
    json_decref(j);
    return rc;
}

int of_api_run(of_api *a, const char *cmd, size_t len, const ot_table *upload, ot_table **result,
               ld_status *st)
{
    *result = NULL;
    json_t *j = parse_cmd(cmd, len, st);
    if (!j)
        return -1;
    of_pg_stream *pgs = NULL;
    int pgrc = run_pg(a, j, NULL, upload, NULL, &pgs, st);
    if (pgrc != 1) {
        if (pgrc == 0 && pgs)
            pgrc = of_pg_stream_collect(pgs, result, st);
        json_decref(j);
        return pgrc;
    }
    const char *api = jstr(j, "api");
    int rc;
    if (!api)
        rc = ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL, "the command has no api");
    else if (!strcmp(api, "offline_write_batch"))
        rc = of_write_batch(a, j, upload, st);
    else if (!strcmp(api, "write_logged_features"))
        rc = of_write_logged_features(a, j, upload, st);
    else if (!strcmp(api, "persist"))
        rc = of_write_persist(a, j, upload, st);
    else if (!strcmp(api, "validate_data_source"))
        rc = of_write_validate(a, j, st);
    else {
        of_result *r = NULL;
        rc = of_api_run_read(a, j, api, upload, &r, st);
        if (rc == 0)
            rc = result_collect(r, a->threads, result, st);
    }
    json_decref(j);
    return rc;
}

int of_api_run_read(of_api *a, json_t *j, const char *api, const ot_table *upload, of_result **out,
                    ld_status *st)
{
    *out = NULL;
    if (!strcmp(api, "get_historical_features"))
        return api_historical(a, j, upload, out, st);
    if (!strcmp(api, "pull_all_from_table_or_query"))
        return api_pull(a, j, 0, out, st);
    if (!strcmp(api, "pull_latest_from_table_or_query"))
        return api_pull(a, j, 1, out, st);
    if (!strcmp(api, "get_table_column_names_and_types_from_data_source"))
        return api_columns(a, j, out, st);
    return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL, "unknown api '%s' in the command",
                         api);
}

of_api *of_api_new(const ld_config *cfg, ld_status *st)
{
    of_api *a = calloc(1, sizeof *a);
    if (!a) {
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        return NULL;
    }
    a->cfg = cfg;
    a->reg = ld_regclient_new(cfg, st);
    if (!a->reg) {
        free(a);
        return NULL;
    }
    pthread_mutex_init(&a->mu, NULL);
    a->ttl_us =
            (int64_t)(cfg->registry.cache_ttl_seconds > 0 ? cfg->registry.cache_ttl_seconds : 5) *
            1000000;
    a->threads = 2;
    if (!(a->pg = of_pg_new(cfg, st))) {
        of_api_free(a);
        return NULL;
    }
    return a;
}

void of_api_free(of_api *a)
{
    if (!a)
        return;
    reg_copy_unref(a->cached);
    of_pg_free(a->pg);
    ld_regclient_free(a->reg);
    pthread_mutex_destroy(&a->mu);
    free(a);
}
