#include "ld_server.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "ld_health.h"
#include "ld_log.h"
#include "ld_pb.h"
#include "ld_pool.h"
#include "ld_time.h"
#include "ld_timer.h"
#include "ld_tls.h"

#define ARENA0_SIZE    2048
#define GENERIC_POSTED 4

/* What a completion-queue tag stands for. Each call embeds one tag per kind
 * of batch, so several batches of one call can be outstanding at once. */
typedef enum {
    TAG_NEW,     /* a requested call arrived (or the request was cancelled) */
    TAG_SEND,    /* SEND_MESSAGE done */
    TAG_RECV,    /* RECV_MESSAGE done */
    TAG_CLOSE,   /* RECV_CLOSE_ON_SERVER done (streaming calls) */
    TAG_FINAL,   /* SEND_STATUS_FROM_SERVER done */
    TAG_HANDOFF, /* an empty batch: ld_call_handoff's work, on the call's worker */
} tag_kind;

typedef struct ld_tag {
    ld_call *call;
    tag_kind kind;
} ld_tag;

typedef struct reg_method {
    ld_method m;
    void *ctx;
    void *handle; /* from grpc_server_register_method */
} reg_method;

typedef struct worker {
    ld_server *srv;
    grpc_completion_queue *cq;
    pthread_t thread;
    pthread_t self; /* set by the worker itself before it handles events */
    int index;
    ld_defer_list defer; /* ld_call_defer: to run before this worker next waits */
    atomic_int open;     /* calls that arrived here and are not freed yet */
} worker;

struct ld_server {
    ld_server_opts opts;
    char *host;
    char *tls_cert, *tls_key, *tls_client_ca;
    grpc_server *server;
    reg_method *methods;
    size_t n_methods, cap_methods;
    worker *workers;
    ld_pool *pool;
    ld_timers *timers;
    ld_health *health;
    int port;
    int started;
    atomic_int shutting_down;
    /* calls that arrived and have not been freed yet */
    pthread_mutex_t calls_mu;
    pthread_cond_t calls_cv;
    long active_calls;
};

struct ld_call {
    ld_server *srv;
    worker *w;
    reg_method *rm; /* NULL: a method nobody registered */
    grpc_call *call;
    gpr_timespec deadline_ts;
    grpc_metadata_array req_md;
    grpc_byte_buffer *req_payload;
    grpc_call_details details; /* unregistered methods only */
    ld_tag tag_new, tag_send, tag_recv, tag_close, tag_final;
    atomic_int refs;
    atomic_int cancelled;
    atomic_int finished;
    int initial_md_sent;
    int close_posted;
    int close_cancelled; /* written by RECV_CLOSE_ON_SERVER */
    grpc_byte_buffer *send_bb;
    grpc_byte_buffer *recv_bb;
    grpc_byte_buffer *final_bb;
    ld_send_done_fn on_send;
    ld_recv_fn on_recv;
    ld_cancel_fn on_cancel;
    grpc_slice status_details;
    int has_status_details;
    grpc_metadata trailing[1];
    size_t n_trailing;
    grpc_status_code final_code;
    char *final_msg;
    const char *method_name;
    int64_t start_us;
    int64_t deadline_us;
    ld_timer deadline_timer;
    int timer_armed;
    void *user;
    const char *peer;
    ld_tag tag_handoff;
    ld_handoff_fn handoff_fn; /* set while a handoff is on its way */
    void *handoff_arg;
    int counted; /* in w->open */
    ld_arena arena;
    _Alignas(16) char arena0[ARENA0_SIZE];
};

static void request_call(worker *w, reg_method *rm);
static void finish(ld_call *c, grpc_byte_buffer *bb, grpc_status_code code, const ld_status *st);

/* ---------------------------------------------------------------- calls */

static int is_streaming(const reg_method *rm)
{
    return rm && rm->m.kind != LD_RPC_UNARY;
}

static void call_destroy(ld_call *c)
{
    ld_server *s = c->srv;
    if (c->call)
        grpc_call_unref(c->call);
    grpc_metadata_array_destroy(&c->req_md);
    if (!c->rm)
        grpc_call_details_destroy(&c->details);
    if (c->req_payload)
        grpc_byte_buffer_destroy(c->req_payload);
    if (c->send_bb)
        grpc_byte_buffer_destroy(c->send_bb);
    if (c->recv_bb)
        grpc_byte_buffer_destroy(c->recv_bb);
    if (c->final_bb)
        grpc_byte_buffer_destroy(c->final_bb);
    if (c->has_status_details)
        grpc_slice_unref(c->status_details);
    for (size_t i = 0; i < c->n_trailing; i++) {
        grpc_slice_unref(c->trailing[i].key);
        grpc_slice_unref(c->trailing[i].value);
    }
    ld_arena_destroy(&c->arena);
    if (c->counted)
        atomic_fetch_sub_explicit(&c->w->open, 1, memory_order_relaxed);
    free(c);

    pthread_mutex_lock(&s->calls_mu);
    if (--s->active_calls == 0)
        pthread_cond_broadcast(&s->calls_cv);
    pthread_mutex_unlock(&s->calls_mu);
}

static void call_ref(ld_call *c)
{
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
}

static void call_unref(ld_call *c)
{
    if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
        call_destroy(c);
}

static int start_batch(ld_call *c, const grpc_op *ops, size_t n, ld_tag *tag)
{
    call_ref(c);
    grpc_call_error e = grpc_call_start_batch(c->call, ops, n, tag, NULL);
    if (e != GRPC_CALL_OK) {
        ld_error("%s: grpc_call_start_batch failed (%d)", c->method_name, (int)e);
        call_unref(c);
        return -1;
    }
    return 0;
}

ld_arena *ld_call_arena(ld_call *c)
{
    return &c->arena;
}

void *ld_call_ctx(ld_call *c)
{
    return c->rm ? c->rm->ctx : NULL;
}

ld_server *ld_call_server(ld_call *c)
{
    return c->srv;
}

const ld_method *ld_call_method(ld_call *c)
{
    return c->rm ? &c->rm->m : NULL;
}

int64_t ld_call_deadline_us(ld_call *c)
{
    return c->deadline_us;
}

int ld_call_cancelled(ld_call *c)
{
    return atomic_load(&c->cancelled);
}

void ld_call_set_user(ld_call *c, void *user)
{
    c->user = user;
}

void *ld_call_user(ld_call *c)
{
    return c->user;
}

const char *ld_call_metadata(ld_call *c, const char *key, size_t *len)
{
    for (size_t i = 0; i < c->req_md.count; i++) {
        if (grpc_slice_str_cmp(c->req_md.metadata[i].key, key) == 0) {
            const grpc_slice *v = &c->req_md.metadata[i].value;
            if (len)
                *len = GRPC_SLICE_LENGTH(*v);
            return (const char *)GRPC_SLICE_START_PTR(*v);
        }
    }
    return NULL;
}

const char *ld_call_peer(ld_call *c)
{
    if (!c->peer) {
        char *p = grpc_call_get_peer(c->call);
        c->peer = ld_arena_strdup(&c->arena, p ? p : "");
        gpr_free(p);
    }
    return c->peer ? c->peer : "";
}

void ld_call_on_cancel(ld_call *c, ld_cancel_fn fn)
{
    c->on_cancel = fn;
}

/* The deadline the server imposes (method default) when the client set a
 * later one or none. Core enforces client deadlines itself. */
static void deadline_fired(ld_timer *t, int fired)
{
    ld_call *c = t->arg;
    atomic_store(&c->cancelled, 1);
    grpc_call_cancel_with_status(c->call, GRPC_STATUS_DEADLINE_EXCEEDED, "Deadline Exceeded", NULL);
    call_unref(c);
}

static void send_initial_md_op(ld_call *c, grpc_op *op)
{
    memset(op, 0, sizeof *op);
    op->op = GRPC_OP_SEND_INITIAL_METADATA;
    c->initial_md_sent = 1;
}

static void finish(ld_call *c, grpc_byte_buffer *bb, grpc_status_code code, const ld_status *st)
{
    if (atomic_exchange(&c->finished, 1)) {
        /* a cancellation racing a normal finish; the first one wins */
        ld_debug("%s: call finished twice", c->method_name);
        if (bb)
            grpc_byte_buffer_destroy(bb);
        return;
    }
    if (c->timer_armed && ld_timers_cancel(c->srv->timers, &c->deadline_timer))
        call_unref(c); /* the timer's reference */

    grpc_op ops[4];
    size_t n = 0;
    if (!c->initial_md_sent)
        send_initial_md_op(c, &ops[n++]);
    if (bb) {
        c->final_bb = bb;
        memset(&ops[n], 0, sizeof ops[n]);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = bb;
    }
    c->final_code = code;
    memset(&ops[n], 0, sizeof ops[n]);
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = code;
    if (code != GRPC_STATUS_OK && st) {
        ld_buf json = LD_BUF_INIT, details = LD_BUF_INIT;
        if (c->rm && c->rm->m.status_prefix)
            ld_buf_puts(&json, c->rm->m.status_prefix);
        ld_status_feast_json(st, &json);
        ld_status_details_bin(st, json.data, json.len, &details);
        c->status_details = grpc_slice_from_copied_buffer(json.data, json.len);
        c->has_status_details = 1;
        c->trailing[0].key = grpc_slice_from_static_string("grpc-status-details-bin");
        c->trailing[0].value = grpc_slice_from_copied_buffer(details.data, details.len);
        c->n_trailing = 1;
        c->final_msg = ld_arena_strdup(&c->arena, st->msg);
        ld_buf_free(&json);
        ld_buf_free(&details);
        ops[n].data.send_status_from_server.status_details = &c->status_details;
        ops[n].data.send_status_from_server.trailing_metadata_count = c->n_trailing;
        ops[n].data.send_status_from_server.trailing_metadata = c->trailing;
    }
    n++;
    if (!c->close_posted) {
        memset(&ops[n], 0, sizeof ops[n]);
        ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
        ops[n++].data.recv_close_on_server.cancelled = &c->close_cancelled;
        c->close_posted = 1;
    }
    start_batch(c, ops, n, &c->tag_final);
    call_unref(c); /* the handler's reference */
}

void ld_call_reply(ld_call *c, const ProtobufCMessage *msg)
{
    finish(c, msg ? ld_pb_pack_bb(msg) : NULL, GRPC_STATUS_OK, NULL);
}

void ld_call_reply_copy(ld_call *c, const void *bytes, size_t len)
{
    grpc_slice sl = grpc_slice_from_copied_buffer(bytes, len);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
    finish(c, bb, GRPC_STATUS_OK, NULL);
}

void ld_call_reply_take(ld_call *c, void *bytes, size_t len)
{
    grpc_slice sl = len ? grpc_slice_new(bytes, len, free) : grpc_empty_slice();
    if (!len)
        free(bytes);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
    finish(c, bb, GRPC_STATUS_OK, NULL);
}

void ld_call_fail(ld_call *c, const ld_status *st)
{
    grpc_status_code code = st->code == GRPC_STATUS_OK ? GRPC_STATUS_UNKNOWN : st->code;
    finish(c, NULL, code, st);
}

void ld_call_failf(ld_call *c, grpc_status_code code, const char *err_class, const char *fmt, ...)
{
    ld_status st;
    va_list ap;
    va_start(ap, fmt);
    ld_status_setv(&st, code, err_class, fmt, ap);
    va_end(ap);
    ld_call_fail(c, &st);
}

int ld_call_send_bb(ld_call *c, grpc_byte_buffer *bb, ld_send_done_fn done)
{
    if (c->send_bb || atomic_load(&c->finished)) {
        grpc_byte_buffer_destroy(bb);
        return -1;
    }
    grpc_op ops[2];
    size_t n = 0;
    if (!c->initial_md_sent)
        send_initial_md_op(c, &ops[n++]);
    memset(&ops[n], 0, sizeof ops[n]);
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = bb;
    c->send_bb = bb;
    c->on_send = done;
    if (start_batch(c, ops, n, &c->tag_send) != 0) {
        c->send_bb = NULL;
        c->on_send = NULL;
        grpc_byte_buffer_destroy(bb);
        return -1;
    }
    return 0;
}

int ld_call_send(ld_call *c, const ProtobufCMessage *msg, ld_send_done_fn done)
{
    return ld_call_send_bb(c, ld_pb_pack_bb(msg), done);
}

int ld_call_recv(ld_call *c, ld_recv_fn done)
{
    if (c->on_recv || atomic_load(&c->finished))
        return -1;
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &c->recv_bb;
    c->on_recv = done;
    if (start_batch(c, &op, 1, &c->tag_recv) != 0) {
        c->on_recv = NULL;
        return -1;
    }
    return 0;
}

static void run_handler(ld_call *c)
{
    const ld_method *m = &c->rm->m;
    if (m->kind == LD_RPC_UNARY || m->kind == LD_RPC_SERVER_STREAM) {
        ld_status st = LD_STATUS_INIT;
        ProtobufCMessage *req = NULL;
        if (!c->req_payload) {
            ld_status_set(&st, GRPC_STATUS_INVALID_ARGUMENT, NULL, "no request message was sent");
        } else {
            req = ld_pb_unpack_bb(m->request, c->req_payload, &c->arena, &st);
            grpc_byte_buffer_destroy(c->req_payload);
            c->req_payload = NULL;
        }
        if (!req) {
            ld_call_fail(c, &st);
            return;
        }
        m->handler(c, req);
    } else {
        m->handler(c, NULL);
    }
}

static void run_handler_job(void *arg)
{
    run_handler(arg);
}

int ld_call_offload(ld_call *c, void (*fn)(ld_call *c))
{
    return ld_pool_submit(c->srv->pool, (ld_pool_fn)(void (*)(void))fn, c);
}

static void on_new_call(ld_call *c)
{
    ld_server *s = c->srv;
    c->start_us = ld_mono_us();
    ld_arena_init(&c->arena, c->arena0, sizeof c->arena0, s->opts.call_memory_limit);
    c->deadline_timer.heap_index = -1;
    atomic_store(&c->refs, 1); /* the handler's reference */
    c->counted = 1;
    atomic_fetch_add_explicit(&c->w->open, 1, memory_order_relaxed);

    pthread_mutex_lock(&s->calls_mu);
    s->active_calls++;
    pthread_mutex_unlock(&s->calls_mu);

    if (gpr_time_cmp(c->deadline_ts, gpr_inf_future(c->deadline_ts.clock_type)) == 0) {
        c->deadline_us = INT64_MAX;
    } else {
        gpr_timespec left = gpr_time_sub(c->deadline_ts, gpr_now(c->deadline_ts.clock_type));
        c->deadline_us = c->start_us + (int64_t)left.tv_sec * 1000000 + left.tv_nsec / 1000;
    }

    if (!c->rm) {
        c->method_name =
                ld_arena_strndup(&c->arena, (const char *)GRPC_SLICE_START_PTR(c->details.method),
                                 GRPC_SLICE_LENGTH(c->details.method));
        ld_call_failf(c, GRPC_STATUS_UNIMPLEMENTED, NULL, "Method not found: %s",
                      c->method_name ? c->method_name : "?");
        return;
    }
    const ld_method *m = &c->rm->m;
    c->method_name = m->name;

    if (is_streaming(c->rm)) {
        /* Learn about cancellation as soon as it happens. */
        grpc_op op;
        memset(&op, 0, sizeof op);
        op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
        op.data.recv_close_on_server.cancelled = &c->close_cancelled;
        c->close_posted = 1;
        start_batch(c, &op, 1, &c->tag_close);
    }

    if (m->default_deadline_ms > 0) {
        int64_t d = c->start_us + m->default_deadline_ms * 1000;
        if (d < c->deadline_us) {
            c->deadline_us = d;
            call_ref(c);
            if (ld_timers_add(s->timers, &c->deadline_timer, d, deadline_fired, c) != 0)
                call_unref(c);
            else
                c->timer_armed = 1;
        }
    }

    size_t limit = m->max_request_bytes ? m->max_request_bytes : s->opts.max_message_bytes;
    if (c->req_payload && grpc_byte_buffer_length(c->req_payload) > limit) {
        ld_call_failf(c, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL,
                      "request of %zu bytes exceeds the limit of %zu bytes for %s",
                      grpc_byte_buffer_length(c->req_payload), limit, m->name);
        return;
    }

    if (m->flags & LD_METHOD_BLOCKING) {
        if (ld_pool_submit(s->pool, run_handler_job, c) != 0)
            ld_call_failf(c, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL,
                          "server is busy: too many requests queued");
        return;
    }
    run_handler(c);
}

/* ---------------------------------------------------------------- workers */

static void request_call(worker *w, reg_method *rm)
{
    ld_server *s = w->srv;
    if (atomic_load(&s->shutting_down))
        return;
    ld_call *c = calloc(1, sizeof *c);
    if (!c) {
        ld_error("out of memory requesting a call");
        return;
    }
    c->srv = s;
    c->w = w;
    c->rm = rm;
    c->tag_new = (ld_tag){c, TAG_NEW};
    c->tag_send = (ld_tag){c, TAG_SEND};
    c->tag_recv = (ld_tag){c, TAG_RECV};
    c->tag_close = (ld_tag){c, TAG_CLOSE};
    c->tag_final = (ld_tag){c, TAG_FINAL};
    c->tag_handoff = (ld_tag){c, TAG_HANDOFF};
    grpc_metadata_array_init(&c->req_md);
    grpc_call_error e;
    if (rm) {
        int with_payload = rm->m.kind == LD_RPC_UNARY || rm->m.kind == LD_RPC_SERVER_STREAM;
        e = grpc_server_request_registered_call(s->server, rm->handle, &c->call, &c->deadline_ts,
                                                &c->req_md, with_payload ? &c->req_payload : NULL,
                                                w->cq, w->cq, &c->tag_new);
    } else {
        grpc_call_details_init(&c->details);
        e = grpc_server_request_call(s->server, &c->call, &c->details, &c->req_md, w->cq, w->cq,
                                     &c->tag_new);
        c->deadline_ts = gpr_inf_future(GPR_CLOCK_REALTIME);
    }
    if (e != GRPC_CALL_OK) {
        grpc_metadata_array_destroy(&c->req_md);
        if (!rm)
            grpc_call_details_destroy(&c->details);
        free(c);
    }
}

/* A requested call that never arrived (server shutting down). */
static void free_unmatched(ld_call *c)
{
    grpc_metadata_array_destroy(&c->req_md);
    if (!c->rm)
        grpc_call_details_destroy(&c->details);
    if (c->req_payload)
        grpc_byte_buffer_destroy(c->req_payload);
    if (c->call)
        grpc_call_unref(c->call);
    free(c);
}

static void log_call(ld_call *c)
{
    if (!c->srv->opts.access_log)
        return;
    int64_t lat = ld_mono_us() - c->start_us;
    int code = c->final_code;
    if (c->close_cancelled && code == GRPC_STATUS_OK)
        code = GRPC_STATUS_CANCELLED;
    ld_log_call(c->method_name ? c->method_name : "?", ld_call_peer(c), code, c->final_msg, lat);
}

static void handle_event(worker *w, grpc_event *ev)
{
    ld_tag *tag = ev->tag;
    ld_call *c = tag->call;
    switch (tag->kind) {
    case TAG_NEW:
        if (!ev->success) {
            free_unmatched(c);
            return;
        }
        request_call(w, c->rm); /* keep the number of requested calls level */
        on_new_call(c);
        return;
    case TAG_SEND: {
        grpc_byte_buffer_destroy(c->send_bb);
        c->send_bb = NULL;
        ld_send_done_fn cb = c->on_send;
        c->on_send = NULL;
        if (cb)
            cb(c, ev->success);
        call_unref(c);
        return;
    }
    case TAG_RECV: {
        grpc_byte_buffer *bb = c->recv_bb;
        c->recv_bb = NULL;
        ld_recv_fn cb = c->on_recv;
        c->on_recv = NULL;
        if (bb && !ev->success) {
            grpc_byte_buffer_destroy(bb);
            bb = NULL;
        }
        size_t limit = c->rm->m.max_request_bytes;
        if (bb && limit && grpc_byte_buffer_length(bb) > limit) {
            grpc_byte_buffer_destroy(bb);
            bb = NULL;
            atomic_store(&c->cancelled, 1);
            grpc_call_cancel_with_status(c->call, GRPC_STATUS_RESOURCE_EXHAUSTED,
                                         "message exceeds the method's size limit", NULL);
        }
        if (cb)
            cb(c, bb);
        else if (bb)
            grpc_byte_buffer_destroy(bb);
        call_unref(c);
        return;
    }
    case TAG_CLOSE:
        if (c->close_cancelled || !ev->success) {
            atomic_store(&c->cancelled, 1);
            if (c->on_cancel && !atomic_load(&c->finished))
                c->on_cancel(c);
        }
        call_unref(c);
        return;
    case TAG_FINAL:
        log_call(c);
        call_unref(c);
        return;
    case TAG_HANDOFF: {
        ld_handoff_fn fn = c->handoff_fn;
        c->handoff_fn = NULL;
        fn(c, c->handoff_arg);
        call_unref(c);
        return;
    }
    }
}

int ld_call_handoff(ld_call *c, ld_handoff_fn fn, void *arg)
{
    worker *w = c->w;
    /* here: on the worker itself, or when the worker has no other call (its
     * transport is idle: a hop would only add a wake-up) */
    if (!w || pthread_equal(w->self, pthread_self()) ||
        atomic_load_explicit(&w->open, memory_order_relaxed) <= 1 || c->handoff_fn) {
        fn(c, arg);
        return 0;
    }
    c->handoff_fn = fn;
    c->handoff_arg = arg;
    /* a batch of no operations completes at once, on the call's queue */
    if (start_batch(c, NULL, 0, &c->tag_handoff) != 0) {
        c->handoff_fn = NULL;
        fn(c, arg);
        return 0;
    }
    return 1;
}

int ld_call_defer(ld_call *c, ld_defer_fn fn, void *obj)
{
    worker *w = c->w;
    if (!w || !pthread_equal(w->self, pthread_self()))
        return -1;
    return ld_defer_add(&w->defer, fn, obj);
}

/* With deferred work pending, the worker only polls its queue: events that
 * are already there are handled first (their deferred work joins the list),
 * then the list runs, then the worker waits. A busy queue runs the list at
 * least every LD_DEFER_EVENTS events. */
static void *worker_main(void *arg)
{
    worker *w = arg;
    char name[16];
    snprintf(name, sizeof name, "ld-cq-%d", w->index);
    pthread_setname_np(pthread_self(), name);
    w->self = pthread_self();
    unsigned since = 0; /* events handled since the list became non-empty */
    for (;;) {
        if (w->defer.n && since >= LD_DEFER_EVENTS) {
            ld_defer_run(&w->defer);
            since = 0;
        }
        gpr_timespec until =
                w->defer.n ? gpr_inf_past(GPR_CLOCK_MONOTONIC) : gpr_inf_future(GPR_CLOCK_REALTIME);
        grpc_event ev = grpc_completion_queue_next(w->cq, until, NULL);
        if (ev.type == GRPC_QUEUE_TIMEOUT) {
            ld_defer_run(&w->defer);
            since = 0;
            continue;
        }
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type == GRPC_OP_COMPLETE) {
            handle_event(w, &ev);
            if (w->defer.n)
                since++;
        }
    }
    ld_defer_run(&w->defer);
    return NULL;
}

/* ---------------------------------------------------------------- server */

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

ld_server *ld_server_new(const ld_server_opts *opts, ld_status *st)
{
    ld_server *s = calloc(1, sizeof *s);
    if (!s) {
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        return NULL;
    }
    s->opts = *opts;
    if (s->opts.workers < 1)
        s->opts.workers = 1;
    if (s->opts.blocking_threads < 1)
        s->opts.blocking_threads = 4;
    if (!s->opts.blocking_queue)
        s->opts.blocking_queue = 4096;
    if (!s->opts.max_message_bytes)
        s->opts.max_message_bytes = 16u << 20;
    if (!s->opts.call_memory_limit)
        s->opts.call_memory_limit = 4 * s->opts.max_message_bytes + (1u << 20);
    if (s->opts.grace_period_ms < 0)
        s->opts.grace_period_ms = 0;
    if (!s->opts.keepalive_time_ms)
        s->opts.keepalive_time_ms = 60000;
    if (!s->opts.keepalive_timeout_ms)
        s->opts.keepalive_timeout_ms = 20000;
    s->host = strdup(opts->host ? opts->host : "127.0.0.1");
    s->tls_cert = dup_or_null(opts->tls_cert);
    s->tls_key = dup_or_null(opts->tls_key);
    s->tls_client_ca = dup_or_null(opts->tls_client_ca);
    s->opts.host = s->host;
    s->opts.tls_cert = s->tls_cert;
    s->opts.tls_key = s->tls_key;
    s->opts.tls_client_ca = s->tls_client_ca;
    s->opts.name = opts->name ? opts->name : "larder";
    pthread_mutex_init(&s->calls_mu, NULL);
    pthread_cond_init(&s->calls_cv, NULL);

    grpc_arg args[] = {
            {.type = GRPC_ARG_INTEGER,
             .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
             .value.integer =
                     (int)(s->opts.max_message_bytes > INT32_MAX ? INT32_MAX
                                                                 : s->opts.max_message_bytes)},
            {.type = GRPC_ARG_INTEGER,
             .key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH,
             .value.integer = -1},
            {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_ALLOW_REUSEPORT, .value.integer = 0},
            {.type = GRPC_ARG_INTEGER,
             .key = GRPC_ARG_KEEPALIVE_TIME_MS,
             .value.integer = s->opts.keepalive_time_ms},
            {.type = GRPC_ARG_INTEGER,
             .key = GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
             .value.integer = s->opts.keepalive_timeout_ms},
            /* accept client keepalive pings down to every 10 s */
            {.type = GRPC_ARG_INTEGER,
             .key = GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
             .value.integer = 10000},
    };
    grpc_channel_args cargs = {sizeof args / sizeof args[0], args};
    s->server = grpc_server_create(&cargs, NULL);
    s->timers = ld_timers_new();
    s->pool = ld_pool_new(s->opts.blocking_threads, s->opts.blocking_queue, "ld-pool");
    s->health = ld_health_new();
    if (!s->server || !s->timers || !s->pool || !s->health) {
        ld_status_set(st, GRPC_STATUS_INTERNAL, NULL, "could not create the server");
        ld_server_free(s);
        return NULL;
    }
    if (ld_health_register(s->health, s, st) != 0) {
        ld_server_free(s);
        return NULL;
    }
    return s;
}

int ld_server_add_methods(ld_server *s, const ld_method *methods, size_t n, void *ctx,
                          ld_status *st)
{
    if (s->started)
        return ld_status_set(st, GRPC_STATUS_INTERNAL, NULL, "methods added after start");
    if (s->n_methods + n > s->cap_methods) {
        size_t cap = s->cap_methods ? s->cap_methods : 32;
        while (cap < s->n_methods + n)
            cap *= 2;
        reg_method *rm = realloc(s->methods, cap * sizeof *rm);
        if (!rm)
            return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        s->methods = rm;
        s->cap_methods = cap;
    }
    for (size_t i = 0; i < n; i++) {
        const ld_method *m = &methods[i];
        int with_payload = m->kind == LD_RPC_UNARY || m->kind == LD_RPC_SERVER_STREAM;
        void *h = grpc_server_register_method(
                s->server, m->name, NULL,
                with_payload ? GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER : GRPC_SRM_PAYLOAD_NONE,
                0);
        if (!h)
            return ld_status_set(st, GRPC_STATUS_INTERNAL, NULL,
                                 "could not register method %s (registered twice?)", m->name);
        reg_method *rm = &s->methods[s->n_methods++];
        rm->m = *m;
        rm->ctx = ctx;
        rm->handle = h;
    }
    return 0;
}

int ld_server_start(ld_server *s, ld_status *st)
{
    s->workers = calloc((size_t)s->opts.workers, sizeof *s->workers);
    if (!s->workers)
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
    for (int i = 0; i < s->opts.workers; i++) {
        s->workers[i].srv = s;
        s->workers[i].index = i;
        s->workers[i].cq = grpc_completion_queue_create_for_next(NULL);
        grpc_server_register_completion_queue(s->server, s->workers[i].cq, NULL);
    }

    grpc_server_credentials *creds = NULL;
    if (s->opts.tls_cert || s->opts.tls_key) {
        creds = ld_tls_server_credentials(s->opts.tls_cert, s->opts.tls_key, s->opts.tls_client_ca,
                                          st);
        if (!creds)
            return -1;
    } else if (s->opts.tls_client_ca) {
        return ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                             "--tls-client-ca needs --tls-cert and --tls-key");
    } else {
        creds = grpc_insecure_server_credentials_create();
    }
    char addr[300];
    if (strchr(s->opts.host, ':') && s->opts.host[0] != '[')
        snprintf(addr, sizeof addr, "[%s]:%d", s->opts.host, s->opts.port);
    else
        snprintf(addr, sizeof addr, "%s:%d", s->opts.host, s->opts.port);
    s->port = grpc_server_add_http2_port(s->server, addr, creds);
    grpc_server_credentials_release(creds);
    if (s->port == 0)
        return ld_status_set(st, GRPC_STATUS_UNAVAILABLE, NULL,
                             "cannot listen on %s (address in use or not available)", addr);

    grpc_server_start(s->server);
    s->started = 1;
    for (int i = 0; i < s->opts.workers; i++) {
        worker *w = &s->workers[i];
        for (size_t k = 0; k < s->n_methods; k++) {
            int pre = s->methods[k].m.prepost > 0 ? s->methods[k].m.prepost : 8;
            for (int j = 0; j < pre; j++)
                request_call(w, &s->methods[k]);
        }
        for (int j = 0; j < GENERIC_POSTED; j++)
            request_call(w, NULL);
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
            return ld_status_set(st, GRPC_STATUS_INTERNAL, NULL, "cannot start worker thread");
    }
    ld_health_set(s->health, "", LD_HEALTH_SERVING);
    return 0;
}

int ld_server_port(const ld_server *s)
{
    return s->port;
}

ld_health *ld_server_health(ld_server *s)
{
    return s->health;
}

ld_timers *ld_server_timers(ld_server *s)
{
    return s->timers;
}

static int wait_calls_drained(ld_server *s, int64_t until_us)
{
    pthread_mutex_lock(&s->calls_mu);
    while (s->active_calls > 0 && ld_mono_us() < until_us) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&s->calls_cv, &s->calls_mu, &ts);
    }
    long left = s->active_calls;
    pthread_mutex_unlock(&s->calls_mu);
    return left == 0;
}

void ld_server_shutdown(ld_server *s)
{
    if (!s->started || atomic_exchange(&s->shutting_down, 1))
        return;
    int64_t t0 = ld_mono_us();
    ld_health_shutdown(s->health);

    grpc_completion_queue *scq = grpc_completion_queue_create_for_pluck(NULL);
    int shutdown_tag;
    grpc_server_shutdown_and_notify(s->server, scq, &shutdown_tag);

    /* Drain: in-flight calls may finish during the grace period. Core's
     * shutdown also waits for clients to close idle connections, which a
     * client may never do; once no call is left, stop waiting and let
     * cancel_all_calls disconnect them. */
    int64_t grace_end = ld_mono_us() + (int64_t)s->opts.grace_period_ms * 1000;
    grpc_event ev;
    int done = 0;
    for (;;) {
        gpr_timespec step =
                gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(10, GPR_TIMESPAN));
        ev = grpc_completion_queue_pluck(scq, &shutdown_tag, step, NULL);
        if (ev.type == GRPC_OP_COMPLETE) {
            done = 1;
            break;
        }
        pthread_mutex_lock(&s->calls_mu);
        long active = s->active_calls;
        pthread_mutex_unlock(&s->calls_mu);
        if (active == 0)
            break;
        if (ld_mono_us() >= grace_end) {
            ld_info("grace period over with %ld calls in flight: cancelling them", active);
            break;
        }
    }
    if (!done)
        grpc_server_cancel_all_calls(s->server);
    /* Timers complete their calls now (they see fired == 0), the pool runs
     * what is queued; both finish calls that are cancelled already. */
    ld_timers_stop(s->timers);
    ld_pool_stop(s->pool);
    if (!wait_calls_drained(s, ld_mono_us() + 2000000))
        ld_warn("calls still active after cancellation");
    if (!done) {
        gpr_timespec limit = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                          gpr_time_from_millis(2000, GPR_TIMESPAN));
        ev = grpc_completion_queue_pluck(scq, &shutdown_tag, limit, NULL);
        done = ev.type == GRPC_OP_COMPLETE;
    }
    if (done) {
        grpc_server_destroy(s->server);
        s->server = NULL;
    } else {
        ld_error("server did not shut down cleanly");
    }
    for (int i = 0; i < s->opts.workers; i++)
        grpc_completion_queue_shutdown(s->workers[i].cq);
    for (int i = 0; i < s->opts.workers; i++) {
        pthread_join(s->workers[i].thread, NULL);
        grpc_completion_queue_destroy(s->workers[i].cq);
        s->workers[i].cq = NULL;
    }
    /* a pluck queue whose one event was taken; if it was not, leave it */
    grpc_completion_queue_shutdown(scq);
    if (done)
        grpc_completion_queue_destroy(scq);
    ld_info("stopped in %lld ms", (long long)((ld_mono_us() - t0) / 1000));
}

void ld_server_free(ld_server *s)
{
    if (!s)
        return;
    if (s->started)
        ld_server_shutdown(s);
    if (s->server)
        grpc_server_destroy(s->server);
    if (s->workers) {
        for (int i = 0; i < s->opts.workers; i++)
            if (s->workers[i].cq)
                grpc_completion_queue_destroy(s->workers[i].cq);
        free(s->workers);
    }
    ld_timers_free(s->timers);
    ld_pool_free(s->pool);
    ld_health_free(s->health);
    free(s->methods);
    free(s->host);
    free(s->tls_cert);
    free(s->tls_key);
    free(s->tls_client_ca);
    pthread_mutex_destroy(&s->calls_mu);
    pthread_cond_destroy(&s->calls_cv);
    free(s);
}
