/* ol_http: Feast's Python feature-server HTTP/JSON API (feast serve) on
 * libevent's evhttp.
 *
 * Routes: POST /get-online-features, POST /push, POST /write-to-online-store,
 * GET|HEAD /health. Requests are parsed and answered on event-loop threads
 * that never block: the work is handed to ol_serve_get / ol_serve_write and
 * the reply goes out when their `done` fires (from whatever thread), after a
 * hop back onto the loop that owns the connection.
 *
 * Status codes follow Feast's exception handler: a Feast error's body is a
 * JSON string literal holding {"module","class","message"}; NOT_FOUND 404,
 * PERMISSION_DENIED 403, PushSourceNotFoundException 422. larder answers bad
 * input with 4xx where Feast's plain ValueErrors give 500 (see
 * ol_http_status_of). Malformed JSON and schema mismatches get FastAPI's 422
 * {"detail":[...]} body. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "ld_status.h"
#include "ol_serve.h"

typedef struct ol_http ol_http;

typedef struct ol_http_opts {
    size_t max_body_bytes;     /* larger bodies: 413 from evhttp; 0: 16 MiB */
    int64_t timeout_ms;        /* deadline handed to ol_serve per request; 0: 60000 */
    int64_t idle_timeout_ms;   /* a connection idle this long is closed; 0: 60000 */
    int64_t grace_ms;          /* ol_http_stop(): time in-flight requests get; 0: 5000 */
    int threads;               /* event-loop threads sharing the listener; 0: 1 */
    int max_json_depth;        /* deeper bodies: 400 as FastAPI's RecursionError; 0: 64 */
    size_t max_json_values;    /* more JSON values in a body: 413; 0: 1,000,000 */
    size_t max_request_memory; /* arena bytes per request; 0: 32 x max_body_bytes */
    int no_access_log;         /* 1: no log line per request (larder.access_log: false) */
    /* POST /materialize and /materialize-incremental run here (borrowed);
     * NULL: those routes answer 501 */
    struct ol_mat_jobs *materialize;
} ol_http_opts;

/**
 * ol_http_new() - listen on host:port (port 0 picks a free port) and start
 * serving s on o->threads event-loop threads.
 *
 * s is borrowed and must outlive ol_http_free(). o may be NULL.
 *
 * Return: the server, or NULL with st set (UNAVAILABLE when the address
 * cannot be bound, INTERNAL when libevent fails).
 */
ol_http *ol_http_new(ol_server *s, const char *host, int port, const ol_http_opts *o,
                     ld_status *st);

/** ol_http_port() - the bound port (the chosen one when asked for 0). */
int ol_http_port(const ol_http *h);

/**
 * ol_http_stop() - stop gracefully: close the listener at once, answer the
 * requests in flight (new requests on open connections are still answered,
 * with "Connection: close"), then close every connection, after the grace
 * period at the latest. Requests still inside ol_serve then are dropped
 * without an answer; their `done` is awaited by ol_http_free(). Returns when
 * the loop threads have exited. Idempotent; safe from any thread but the
 * loops'.
 */
void ol_http_stop(ol_http *h);

/**
 * ol_http_free() - stop (if not yet), wait until every request handed to
 * ol_serve has had its `done` called, and free everything. NULL is a no-op.
 */
void ol_http_free(ol_http *h);

/**
 * ol_http_status_of() - the HTTP status for an error from ol_serve:
 * class PushSourceNotFoundException 422 (as Feast); NOT_FOUND 404;
 * PERMISSION_DENIED 403; UNAUTHENTICATED 401; INVALID_ARGUMENT,
 * FAILED_PRECONDITION, OUT_OF_RANGE 422 (FastAPI's code for input it cannot
 * process; Feast would answer 500); RESOURCE_EXHAUSTED 413; ALREADY_EXISTS,
 * ABORTED 409; UNIMPLEMENTED 501; UNAVAILABLE 503; DEADLINE_EXCEEDED 504;
 * everything else 500.
 */
int ol_http_status_of(const ld_status *st);
