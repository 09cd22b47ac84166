/* ld_server: the gRPC C-core service framework shared by the three servers.
 *
 * A server is one grpc_server with N completion-queue workers. Each worker
 * owns one completion queue and every call it accepts stays bound to it, so
 * all events of a call arrive on one thread and per-call state needs no
 * locks. Methods come from tables (ld_method) registered before start.
 *
 * Handlers are asynchronous: a handler receives the call, and the call ends
 * when someone calls ld_call_reply()/ld_call_fail() exactly once, from any
 * thread. A handler that must block (disk, database) sets LD_METHOD_BLOCKING
 * and runs on the server's pool instead of the completion-queue thread, or
 * hands the call to its own thread and completes it from there.
 *
 * Streaming: ld_call_send() / ld_call_recv() start one operation each and
 * call back on the completion-queue thread when it finishes. At most one send
 * and one receive may be outstanding per call.
 *
 * Every call owns an arena (ld_call_arena) freed when the call ends. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>

#include "ld_arena.h"
#include "ld_defer.h"
#include "ld_status.h"

typedef struct ld_server ld_server;
typedef struct ld_call ld_call;
typedef struct ld_health ld_health;
typedef struct ld_timers ld_timers;

typedef enum {
    LD_RPC_UNARY = 0,
    LD_RPC_SERVER_STREAM,
    LD_RPC_CLIENT_STREAM,
    LD_RPC_BIDI,
} ld_rpc_kind;

enum {
    LD_METHOD_BLOCKING = 1 << 0, /* run the handler on the blocking pool */
};

/* Unary and server-streaming handlers get the unpacked request (arena-owned,
 * never NULL); client-streaming and bidi handlers get NULL and read with
 * ld_call_recv(). */
typedef void (*ld_handler_fn)(ld_call *c, const ProtobufCMessage *request);

typedef struct ld_method {
    const char *name; /* full method name, "/package.Service/Method" */
    ld_rpc_kind kind;
    const ProtobufCMessageDescriptor *request;
    const ProtobufCMessageDescriptor *response;
    ld_handler_fn handler;
    unsigned flags;              /* LD_METHOD_* */
    size_t max_request_bytes;    /* 0: the server's max message size */
    int64_t default_deadline_ms; /* applied when the client sets none; 0: none */
    int prepost;                 /* calls requested ahead per worker; 0: 8 */
    const void *data;            /* per-method data for a shared handler */
    /* prepended to an error's status message (Feast's error JSON), e.g.
     * "Flight error: ", which Feast's Arrow Flight client looks for */
    const char *status_prefix;
} ld_method;

typedef struct ld_server_opts {
    const char *name; /* for logs and thread names, e.g. "registry" */
    const char *host;
    int port;                 /* 0: pick a free port (see ld_server_port) */
    int workers;              /* completion-queue threads; default 1 */
    int blocking_threads;     /* pool threads for LD_METHOD_BLOCKING; default 4 */
    size_t blocking_queue;    /* pool queue bound; default 4096 */
    size_t max_message_bytes; /* largest request; default 16 MiB */
    size_t call_memory_limit; /* arena bytes one call may use; default 4 x max message */
    int grace_period_ms;      /* drain time on shutdown; default 5000 */
    int keepalive_time_ms;    /* default 60000 */
    int keepalive_timeout_ms; /* default 20000 */
    int access_log;           /* one log line per call */
    const char *tls_cert;     /* PEM paths; NULL: plaintext */
    const char *tls_key;
    const char *tls_client_ca; /* non-NULL: require and verify client certificates */
} ld_server_opts;

ld_server *ld_server_new(const ld_server_opts *opts, ld_status *st);
/* Register a table of methods; ctx is returned by ld_call_ctx() in their
 * handlers. Before ld_server_start() only. */
int ld_server_add_methods(ld_server *s, const ld_method *methods, size_t n, void *ctx,
                          ld_status *st);
/* Bind, start the workers and serve. */
int ld_server_start(ld_server *s, ld_status *st);
/* The bound port (after start). */
int ld_server_port(const ld_server *s);
/* Graceful stop: refuse new calls, let in-flight calls finish for the grace
 * period, then cancel the rest; returns when every call has ended. */
void ld_server_shutdown(ld_server *s);
void ld_server_free(ld_server *s);

ld_health *ld_server_health(ld_server *s);
ld_timers *ld_server_timers(ld_server *s);

/* ---- per call ---- */

ld_arena *ld_call_arena(ld_call *c);
void *ld_call_ctx(ld_call *c);
ld_server *ld_call_server(ld_call *c);
const ld_method *ld_call_method(ld_call *c);
/* Monotonic µs deadline (ld_mono_us clock); INT64_MAX when none. */
int64_t ld_call_deadline_us(ld_call *c);
/* Set once the client cancelled or the deadline passed (streaming calls
 * learn this as soon as it happens; unary calls when they finish). */
int ld_call_cancelled(ld_call *c);
/* Value of request metadata `key` (lower case), or NULL; *len gets its size. */
const char *ld_call_metadata(ld_call *c, const char *key, size_t *len);
/* Peer address ("ipv4:127.0.0.1:5000"), allocated in the call arena. */
const char *ld_call_peer(ld_call *c);
/* Put work off until the worker thread handling c has run the events its
 * completion queue already holds (at most LD_DEFER_EVENTS of them): a store
 * appends a request's commands to a connection and defers the send, so the
 * commands of every request that arrived together leave in one write. The
 * worker runs fn(obj) once per distinct (fn, obj) before it next waits, or
 * exits. Call it only from a handler running on c's worker thread; obj must
 * outlive the server's workers. -1 (nothing registered): not on that thread,
 * or the worker's list is full; do the work now. */
#define LD_DEFER_EVENTS 32
int ld_call_defer(ld_call *c, ld_defer_fn fn, void *obj);
/* Finish c with fn(c, arg) on the thread best placed to: another thread
 * (a store's I/O thread) calls this when its part of c is done. When c's
 * worker has other calls open, fn runs on that worker (its queue gets an
 * empty batch): the worker also reads the calls' transport, and a reply
 * written from a second thread would contend for the transport's lock and
 * push gRPC's writes onto its executor thread. When c is the worker's only
 * call, or this is the worker, fn runs here at once (a hop would only add a
 * wake-up). One handoff per call at a time. Returns 1 when handed to the
 * worker, 0 when fn ran here. */
typedef void (*ld_handoff_fn)(ld_call *c, void *arg);
int ld_call_handoff(ld_call *c, ld_handoff_fn fn, void *arg);
/* Handler state slot. */
void ld_call_set_user(ld_call *c, void *user);
void *ld_call_user(ld_call *c);

/* Finish a call: OK with a response (unary, client-streaming) or just the OK
 * status (msg NULL, streaming). Exactly one of reply/fail per call. */
void ld_call_reply(ld_call *c, const ProtobufCMessage *msg);
/* Reply with bytes that already are a serialized response message. _copy
 * copies them; _take takes a malloc'd buffer and frees it when sent. */
void ld_call_reply_copy(ld_call *c, const void *bytes, size_t len);
void ld_call_reply_take(ld_call *c, void *bytes, size_t len);
/* Finish with an error: the status message is Feast's error JSON, and the
 * grpc-status-details-bin trailer carries google.rpc.Status. */
void ld_call_fail(ld_call *c, const ld_status *st);
void ld_call_failf(ld_call *c, grpc_status_code code, const char *err_class, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

/* Streaming. The callbacks run on the call's completion-queue thread. */
typedef void (*ld_send_done_fn)(ld_call *c, int ok);
/* recv: bb is NULL at end of stream or on failure; the callee owns bb and
 * must grpc_byte_buffer_destroy() it. */
typedef void (*ld_recv_fn)(ld_call *c, grpc_byte_buffer *bb);
typedef void (*ld_cancel_fn)(ld_call *c);

int ld_call_send(ld_call *c, const ProtobufCMessage *msg, ld_send_done_fn done);
/* Send a prepared buffer; takes ownership of bb. */
int ld_call_send_bb(ld_call *c, grpc_byte_buffer *bb, ld_send_done_fn done);
int ld_call_recv(ld_call *c, ld_recv_fn done);
/* Called once on the completion-queue thread if the call is cancelled
 * (client gone, deadline, server shutdown) before it finished. Streaming
 * calls only; set it before the first ld_call_send/recv. */
void ld_call_on_cancel(ld_call *c, ld_cancel_fn fn);
/* Run fn(c) on the blocking pool; -1 (and nothing happens) when the pool is
 * full or stopping: the caller should fail the call with RESOURCE_EXHAUSTED. */
int ld_call_offload(ld_call *c, void (*fn)(ld_call *c));
