/* ol_materialize: Feast's materialization (feast materialize /
 * materialize-incremental, POST /materialize): for each selected feature
 * view, the latest row per entity key in [start, end] is pulled from the
 * offline server over Arrow Flight (pull_latest_from_table_or_query; the
 * server is found through the registry, ld_discovery), converted to the
 * declared types, written to the online store in pipelined batches through
 * ol_store's write path, and the interval is recorded with
 * ApplyMaterialization once every row of the view is written.
 *
 * Selection (Feast's _get_feature_views_to_materialize): no names → every
 * feature view that is online and not disabled, in registry order; a named
 * view that does not exist, is not online or is disabled is an error and
 * nothing is run. Incremental runs start at the latest recorded end of the
 * view, else at now − ttl (52 weeks when ttl is 0; an error when ttl is
 * unset). disable_event_timestamp writes every row with the run's start time
 * as its event timestamp.
 *
 * Idempotent: the Redis store writes last-event-time-wins, the SQL stores
 * upsert, and the interval is recorded only after the writes completed, so
 * a run killed half way and run again leaves the state of one clean run.
 * Stream and on-demand feature views are not materialized.
 *
 * Blocking: run it from the CLI or a worker thread. */
#pragma once

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "ld_buf.h"
#include "ld_config.h"
#include "ld_status.h"
#include "ol_store.h"

typedef struct ol_mat_progress {
    const char *view;
    size_t view_index; /* 0-based */
    size_t n_views;
    int64_t view_rows;       /* rows of this view written so far */
    int64_t view_total;      /* rows this view will write (the offline server's
                                count, ol_flight_client.h); -1 unknown */
    int64_t rows;            /* rows written in the whole run */
    int64_t elapsed_us;      /* since the run started */
    int64_t view_elapsed_us; /* since this view's first rows arrived; 0 before */
    int view_done;           /* this view finished (interval recorded) */
} ol_mat_progress;

typedef struct ol_mat_request {
    int incremental;
    int64_t start_us; /* µs since the epoch; ignored when incremental */
    int64_t end_us;
    const char *const *views; /* names; n_views 0: every online view */
    size_t n_views;
    int disable_event_timestamp;
    /* called on the running thread after each write completes (and at the
     * end of each view); may be NULL */
    void (*progress)(void *arg, const ol_mat_progress *p);
    void *progress_arg;
    atomic_int *cancel;       /* set to 1 to stop between batches; may be NULL */
    int64_t write_batch_rows; /* rows per store write; 0: config or 10,000 */
    int max_inflight;         /* store writes in flight; 0: 4 */
    /* Feast's Redis algorithm: read each batch's stored "_ts:<view>" first
     * and write only the rows that are newer, with a store that writes
     * unconditionally (online_store.skip_dedup). The default (0) leaves the
     * decision to the store's write (larder's Redis store does it atomically
     * in a script, which costs Redis about three times the CPU per row). */
    int lww_precheck;
} ol_mat_request;

typedef struct ol_mat_view_result {
    char *name;
    int64_t start_us, end_us;
    int64_t rows;
    int64_t elapsed_us;
    int64_t first_batch_us; /* until the offline server's first rows arrived; -1: none */
    int64_t skipped;        /* lww_precheck: rows not written, the store had newer ones */
} ol_mat_view_result;

typedef struct ol_mat_result {
    ol_mat_view_result *views;
    size_t n_views;
    int64_t rows;
    int64_t elapsed_us;
    char offline_target[256];
} ol_mat_result;

/* Run it. cfg names the project, the registry and (through the registry)
 * the offline server; the rows go to `store`. res may be NULL; free it with
 * ol_mat_result_clear. Errors: FeatureViewNotFoundException (NOT_FOUND),
 * FAILED_PRECONDITION for views that cannot be materialized, UNAVAILABLE
 * for peers, and whatever the offline server or the store reports. */
int ol_materialize(const ld_config *cfg, ol_store *store, const ol_mat_request *req,
                   ol_mat_result *res, ld_status *st);

/* Only the selection: the names of the views a request would materialize
 * (malloc'd array of malloc'd strings, free with ol_mat_names_free). */
int ol_materialize_select(const ld_config *cfg, const ol_mat_request *req, char ***names, size_t *n,
                          ld_status *st);
void ol_mat_names_free(char **names, size_t n);

void ol_mat_result_clear(ol_mat_result *res);

/* ---- the online server's POST /materialize and /materialize-incremental
 * (Feast's feature_server.py): runs happen on worker threads of their own,
 * never on the HTTP event loop. */
typedef struct ol_mat_jobs ol_mat_jobs;

/* cfg and store are borrowed and must outlive the jobs. */
ol_mat_jobs *ol_mat_jobs_new(const ld_config *cfg, ol_store *store, ld_status *st);
/* Ask running jobs to stop at their next batch (shutdown). */
void ol_mat_jobs_cancel(ol_mat_jobs *j);
/* Cancel, wait for every worker, free. NULL is a no-op. */
void ol_mat_jobs_free(ol_mat_jobs *j);

/* code: the HTTP status; body: the JSON to send (ownership passes to the
 * callee: ld_buf_free it), empty for none; st: an error to answer instead
 * (Feast's error body) when not OK. */
typedef void (*ol_mat_http_done)(void *arg, int code, ld_buf *body, const ld_status *st);

/**
 * ol_mat_jobs_http() - a request of Feast's feature server.
 * @incremental: /materialize-incremental
 * @body, @len: the JSON body {"start_ts","end_ts","feature_views",
 *   "disable_event_timestamp"} (start_ts not for incremental); timestamps are
 *   ISO 8601, naive means UTC. disable_event_timestamp runs over
 *   1970-01-01..now with now as every row's event time, as Feast does.
 * @async: `?async=true`: answer 202 {"status":"accepted","feature_views":[..]}
 *   as soon as the views are selected and run in the background; 409
 *   {"error","feature_views"} when one of them is being materialized by an
 *   earlier async request of this server, unless @force.
 *
 * Return: 0 when `done` will be called exactly once, from a worker thread;
 * -1 to answer now with *code and *resp (422 for a body FastAPI would
 * refuse) or st (503 when the workers are busy or stopping).
 */
int ol_mat_jobs_http(ol_mat_jobs *j, int incremental, const char *body, size_t len, int async,
                     int force, ol_mat_http_done done, void *arg, int *code, ld_buf *resp,
                     ld_status *st);
