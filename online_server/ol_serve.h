/* ol_serve: the serving core shared by the gRPC and HTTP front ends.
 * Resolves a request against the current registry snapshot, reads or writes
 * the online store, and assembles the answer (statuses, TTL, column order).
 * Never blocks: the store does the I/O on its own threads. */
#pragma once

#include <stdint.h>

#include "ld_arena.h"
#include "ld_config.h"
#include "ld_status.h"
#include "ol_request.h"
#include "ol_store.h"

typedef struct ol_server ol_server;

typedef void (*ol_get_done)(void *arg, const ol_get_response *resp, const ld_status *st);
typedef void (*ol_write_done)(void *arg, const ld_status *st);

/* 0: accepted, `done` follows (from any thread, possibly before this
 * returns); -1: refused now with st set, `done` is not called. The response
 * lives in `a` (the caller's per-request arena), its column names in the
 * registry snapshot it holds: the caller releases it with
 * ol_get_response_release() once encoded (or dropped). */
int ol_serve_get(ol_server *s, const ol_get_request *req, ld_arena *a, int64_t deadline_us,
                 const ol_defer *defer, ol_get_done done, void *arg, ld_status *st);
int ol_serve_write(ol_server *s, const ol_write_request *req, ld_arena *a, int64_t deadline_us,
                   ol_write_done done, void *arg, ld_status *st);
void ol_get_response_release(const ol_get_response *r);
/* The registry snapshot is loaded and the store is healthy. */
int ol_serve_healthy(ol_server *s);
