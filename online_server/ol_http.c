/* ol_http: the HTTP/JSON front end on libevent's evhttp (see ol_http.h).
 *
 * Threads. N loop threads (default 1), each with its own event_base and
 * evhttp, accept from one listening socket (the first loop binds it, the
 * others accept on dup()s of it, so whichever loop is idle takes the next
 * connection). A connection stays on the loop that accepted it; every
 * evhttp object is touched only by its loop's thread. Parsing and encoding
 * run on the loop: both are linear in the request/response bytes, and a
 * loop never waits for I/O; the store work happens in ol_serve.
 *
 * Completions. ol_serve calls `done` on any thread. It records the result in
 * the call and appends the call to its loop's queue under the loop's mutex;
 * when the queue was empty it wakes the loop with event_active() (thread-safe
 * because evthread_use_pthreads() is set before any base exists). The loop
 * drains the whole queue in one callback, so a burst of completions costs
 * one wake-up.
 *
 * Memory. A call owns an arena whose first 8 KiB live in the call object;
 * the request tree, the ol_*_request, ol_serve's response and scratch all go
 * there and are freed with the call. A response body is built in one ld_buf
 * and handed to evhttp by reference (no copy).
 *
 * Shutdown. ol_http_stop() wakes every loop: it closes its listener, keeps
 * answering what arrives on open connections (with Connection: close), and
 * closes everything once no call is inside ol_serve and every response has
 * been written, or when the grace period ends. Calls still inside ol_serve
 * then become orphans: evhttp frees their requests, and their `done`, when it
 * comes, frees them on ol_serve's thread. ol_http_free() waits for those. */
#include "ol_http.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <event2/util.h>

#include "ld_defer.h"
#include "ld_log.h"
#include "ld_time.h"
#include "ol_json.h"
#include "ol_materialize.h"

typedef struct http_loop http_loop;
typedef struct http_call http_call;

enum route {
    ROUTE_NONE = 0,
    ROUTE_GET,     /* POST /get-online-features */
    ROUTE_PUSH,    /* POST /push */
    ROUTE_WRITE,   /* POST /write-to-online-store */
    ROUTE_HEALTH,  /* GET|HEAD /health */
    ROUTE_MAT,     /* POST /materialize (ol_materialize.h runs it on a worker) */
    ROUTE_MAT_INC, /* POST /materialize-incremental */
    ROUTE_OTHER,   /* a route of Feast's server that larder does not serve */
};

static const struct {
    const char *path;
    enum route route;
    const char *log_name; /* the access line's method */
} routes[] = {
        {"/get-online-features", ROUTE_GET, "POST /get-online-features"},
        {"/push", ROUTE_PUSH, "POST /push"},
        {"/write-to-online-store", ROUTE_WRITE, "POST /write-to-online-store"},
        {"/health", ROUTE_HEALTH, "GET /health"},
        {"/materialize", ROUTE_MAT, "POST /materialize"},
        {"/materialize-incremental", ROUTE_MAT_INC, "POST /materialize-incremental"},
        {"/retrieve-online-documents", ROUTE_OTHER, "POST /retrieve-online-documents"},
        {"/search", ROUTE_OTHER, "POST /search"},
};

struct http_call {
    http_loop *loop;
    struct evhttp_request *req; /* NULL once orphaned */
    http_call *prev, *next;     /* loop->pending: handed to ol_serve, not yet answered */
    http_call *done_next;       /* loop->done queue */
    enum route route;
    const char *log_name;
    int64_t start_us;
    char peer[64];
    union {
        ol_get_request get;
        ol_write_request write;
    } rq;
    const ol_get_response *resp;
    ld_status st;
    int mat_code; /* ROUTE_MAT*: the answer ol_materialize gave */
    ld_buf mat_body;
    ld_arena arena;
    _Alignas(16) char first[8192];
};

struct http_loop {
    ol_http *h;
    int idx;
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    struct event *done_ev, *stop_ev, *check_ev, *grace_ev;
    struct event *defer_ev; /* runs `defer` after the events already active */
    pthread_t thread;
    int started;
    /* loop thread only */
    http_call *pending;
    size_t n_pending;
    size_t unfinished; /* requests received whose response is not fully written */
    int stopping, finished;
    /* store sends put off until this pass of the loop has read every request
     * that arrived (ol_defer): a burst shares one send per connection */
    ld_defer_list defer;
    /* shared with done callbacks */
    pthread_mutex_t mu;
    http_call *done_head, *done_tail;
    int alive;
};

struct ol_http {
    ol_server *srv;
    ol_http_opts o;
    int port;
    int n_loops;
    http_loop *loops;
    int stopped;
    pthread_mutex_t mu; /* outstanding, stop */
    pthread_cond_t cv;
    size_t outstanding; /* calls handed to ol_serve whose `done` has not been handled */
};

static pthread_once_t evthread_once = PTHREAD_ONCE_INIT;

static void init_evthread(void)
{
    evthread_use_pthreads();
}

/*==== Replies ====*/

static const char *reason(int code)
{
    switch (code) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 413:
        return "Request Entity Too Large";
    case 422:
        return "Unprocessable Entity";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return code >= 500 ? "Internal Server Error" : "Error";
    }
}

int ol_http_status_of(const ld_status *st)
{
    if (st->err_class && strcmp(st->err_class, "PushSourceNotFoundException") == 0)
        return 422;
    switch (st->code) {
    case GRPC_STATUS_OK:
        return 200;
    case GRPC_STATUS_NOT_FOUND:
        return 404;
    case GRPC_STATUS_PERMISSION_DENIED:
        return 403;
    case GRPC_STATUS_UNAUTHENTICATED:
        return 401;
    case GRPC_STATUS_INVALID_ARGUMENT:
    case GRPC_STATUS_FAILED_PRECONDITION:
    case GRPC_STATUS_OUT_OF_RANGE:
        return 422;
    case GRPC_STATUS_RESOURCE_EXHAUSTED:
        return 413;
    case GRPC_STATUS_ALREADY_EXISTS:
    case GRPC_STATUS_ABORTED:
        return 409;
    case GRPC_STATUS_UNIMPLEMENTED:
        return 501;
    case GRPC_STATUS_UNAVAILABLE:
        return 503;
    case GRPC_STATUS_DEADLINE_EXCEEDED:
        return 504;
    default:
        return 500;
    }
}

/* The gRPC code the access line shows for an HTTP answer of ours. */
static int log_code(int http)
{
    switch (http) {
    case 200:
        return GRPC_STATUS_OK;
    case 400:
    case 405:
    case 422:
        return GRPC_STATUS_INVALID_ARGUMENT;
    case 401:
        return GRPC_STATUS_UNAUTHENTICATED;
    case 403:
        return GRPC_STATUS_PERMISSION_DENIED;
    case 404:
        return GRPC_STATUS_NOT_FOUND;
    case 409:
        return GRPC_STATUS_ABORTED;
    case 413:
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    case 501:
        return GRPC_STATUS_UNIMPLEMENTED;
    case 503:
        return GRPC_STATUS_UNAVAILABLE;
    case 504:
        return GRPC_STATUS_DEADLINE_EXCEEDED;
    default:
        return GRPC_STATUS_INTERNAL;
    }
}

static void free_body(const void *data, size_t len, void *arg)
{
    (void)len;
    (void)arg;
    free((void *)data);
}

static void on_complete(struct evhttp_request *req, void *arg)
{
    http_loop *l = arg;
    (void)req;
    l->unfinished--;
    /* not from here: evhttp still uses the connection after this callback */
    if (l->stopping)
        event_active(l->check_ev, EV_READ, 0);
}

/* One request's answer, and its access line. body may be NULL (no body);
 * ctype NULL sends no Content-Type (as Starlette's bare Response). */
static void reply(http_loop *l, struct evhttp_request *req, int code, const char *ctype,
                  ld_buf *body, const char *log_name, const char *peer, int64_t start_us,
                  int grpc_code, const char *msg)
{
    struct evkeyvalq *hdr = evhttp_request_get_output_headers(req);
    if (ctype)
        evhttp_add_header(hdr, "Content-Type", ctype);
    if (l->stopping)
        evhttp_add_header(hdr, "Connection", "close");
    struct evbuffer *out = evbuffer_new();
    if (out && body && body->len) {
        size_t len;
        char *data = ld_buf_steal(body, &len);
        if (evbuffer_add_reference(out, data, len, free_body, NULL) != 0)
            free(data);
    }
    if (evhttp_request_get_connection(req))
        evhttp_request_set_on_complete_cb(req, on_complete, l);
    else
        l->unfinished--; /* the client left; evhttp frees req without completing it */
    evhttp_send_reply(req, code, reason(code), out);
    if (out)
        evbuffer_free(out);
    if (l->h->o.no_access_log)
        return;
    char line[LD_STATUS_MSG_MAX + 32];
    line[0] = '\0';
    if (code != 200)
        snprintf(line, sizeof line, "HTTP %d%s%s", code, msg && *msg ? ": " : "", msg ? msg : "");
    ld_log_call(log_name, peer, grpc_code, line, ld_mono_us() - start_us);
}

static void reply_json(http_loop *l, struct evhttp_request *req, int code, ld_buf *body,
                       const char *log_name, const char *peer, int64_t start_us, const char *msg)
{
    reply(l, req, code, "application/json", body, log_name, peer, start_us, log_code(code), msg);
}

/* {"detail":"<text>"}: Starlette's HTTPException body */
static void reply_detail(http_loop *l, struct evhttp_request *req, int code, const char *text,
                         const char *log_name, const char *peer, int64_t start_us)
{
    ld_buf b = LD_BUF_INIT;
    ld_buf_puts(&b, "{\"detail\":");
    ld_buf_json_str(&b, text, strlen(text), 0);
    ld_buf_putc(&b, '}');
    reply_json(l, req, code, &b, log_name, peer, start_us, text);
    ld_buf_free(&b);
}

static void reply_status(http_loop *l, struct evhttp_request *req, const ld_status *st,
                         const char *log_name, const char *peer, int64_t start_us)
{
    ld_buf b = LD_BUF_INIT;
    ol_json_error_body(st, &b);
    int code = ol_http_status_of(st);
    reply(l, req, code, "application/json", &b, log_name, peer, start_us, (int)st->code, st->msg);
    ld_buf_free(&b);
}

/*==== Calls ====*/

static void outstanding_add(ol_http *h, int delta)
{
    pthread_mutex_lock(&h->mu);
    h->outstanding = (size_t)((long)h->outstanding + delta);
    if (!h->outstanding)
        pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

static void call_free(http_call *c)
{
    ol_get_response_release(c->resp);
    ld_buf_free(&c->mat_body);
    ld_arena_destroy(&c->arena);
    free(c);
}

static void pending_unlink(http_loop *l, http_call *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        l->pending = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    l->n_pending--;
}

static void post_done(http_call *c)
{
    http_loop *l = c->loop;
    pthread_mutex_lock(&l->mu);
    if (l->alive) {
        c->done_next = NULL;
        if (l->done_tail) {
            l->done_tail->done_next = c;
        } else {
            l->done_head = c;
            event_active(l->done_ev, EV_READ, 0);
        }
        l->done_tail = c;
        pthread_mutex_unlock(&l->mu);
        return;
    }
    pthread_mutex_unlock(&l->mu);
    /* an orphan: its connection was closed after the grace period */
    ol_http *h = l->h;
    call_free(c);
    outstanding_add(h, -1);
}

static void on_get_done(void *arg, const ol_get_response *resp, const ld_status *st)
{
    http_call *c = arg;
    c->resp = resp;
    if (st)
        c->st = *st;
    else
        ld_status_clear(&c->st);
    post_done(c);
}

static void on_write_done(void *arg, const ld_status *st)
{
    http_call *c = arg;
    c->resp = NULL;
    if (st)
        c->st = *st;
    else
        ld_status_clear(&c->st);
    post_done(c);
}

/* On the loop: answer a call ol_serve has finished. */
static void finish_call(http_loop *l, http_call *c)
{
    struct evhttp_request *req = c->req;
    if (!req)
        return;
    if (!ld_status_ok(&c->st)) {
        reply_status(l, req, &c->st, c->log_name, c->peer, c->start_us);
        return;
    }
    ld_buf b = LD_BUF_INIT;
    if (c->route == ROUTE_MAT || c->route == ROUTE_MAT_INC) {
        reply(l, req, c->mat_code, c->mat_body.len ? "application/json" : NULL, &c->mat_body,
              c->log_name, c->peer, c->start_us, c->mat_code < 300 ? 0 : log_code(c->mat_code),
              NULL);
    } else if (c->route == ROUTE_GET) {
        ld_status st = LD_STATUS_INIT;
        if (!c->resp) {
            ld_status_set(&st, GRPC_STATUS_INTERNAL, NULL, "the server produced no response");
            reply_status(l, req, &st, c->log_name, c->peer, c->start_us);
        } else if (ol_json_encode_get(c->resp, &b, &st) != 0) {
            reply_status(l, req, &st, c->log_name, c->peer, c->start_us);
        } else {
            reply_json(l, req, 200, &b, c->log_name, c->peer, c->start_us, NULL);
        }
    } else if (c->route == ROUTE_WRITE) {
        ld_buf_puts(&b, "null"); /* the endpoint returns None */
        reply_json(l, req, 200, &b, c->log_name, c->peer, c->start_us, NULL);
    } else {
        /* push returns Response(status_code=200): no body, no type */
        reply(l, req, 200, NULL, NULL, c->log_name, c->peer, c->start_us, 0, NULL);
    }
    ld_buf_free(&b);
}

static void maybe_finish_loop(http_loop *l);

static void on_done_ev(evutil_socket_t fd, short what, void *arg)
{
    http_loop *l = arg;
    (void)fd;
    (void)what;
    pthread_mutex_lock(&l->mu);
    http_call *q = l->done_head;
    l->done_head = l->done_tail = NULL;
    pthread_mutex_unlock(&l->mu);
    size_t n = 0;
    while (q) {
        http_call *c = q;
        q = q->done_next;
        if (c->req)
            pending_unlink(l, c);
        finish_call(l, c);
        call_free(c);
        n++;
    }
    if (n)
        outstanding_add(l->h, -(int)n);
    if (l->stopping)
        maybe_finish_loop(l);
}

static int is_json_type(const char *ct)
{
    /* email.message: maintype "application", subtype "json" or "*+json" */
    while (*ct == ' ' || *ct == '\t')
        ct++;
    size_t n = strcspn(ct, ";");
    while (n && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
        n--;
    if (n < 12 || strncasecmp(ct, "application/", 12) != 0)
        return 0;
    const char *sub = ct + 12;
    size_t sn = n - 12;
    return (sn == 4 && strncasecmp(sub, "json", 4) == 0) ||
           (sn >= 5 && strncasecmp(sub + sn - 5, "+json", 5) == 0);
}

/* POST /get-online-features, /push, /write-to-online-store */
/* ol_defer on a loop thread: fn(obj) runs once libevent has run the events
 * that are already active (the other requests read in this pass). */
static int loop_defer(void *ctx, void (*fn)(void *obj), void *obj)
{
    http_loop *l = ctx;
    int was_empty = !l->defer.n;
    if (ld_defer_add(&l->defer, fn, obj) != 0)
        return -1;
    if (was_empty)
        event_active(l->defer_ev, 0, 0);
    return 0;
}

static void on_defer_ev(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    ld_defer_run(&((http_loop *)arg)->defer);
}

static void start_call(http_loop *l, struct evhttp_request *req, enum route route,
                       const char *log_name, const char *peer, int64_t start_us)
{
    ol_http *h = l->h;
    http_call *c = malloc(sizeof *c);
    if (!c) {
        reply_detail(l, req, 503, "out of memory", log_name, peer, start_us);
        return;
    }
    memset(c, 0, offsetof(http_call, first));
    c->loop = l;
    c->req = req;
    c->route = route;
    c->log_name = log_name;
    c->start_us = start_us;
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    ld_arena_init(&c->arena, c->first, sizeof c->first, h->o.max_request_memory);
    ld_status_clear(&c->st);

    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    const char *p = n ? (const char *)evbuffer_pullup(in, -1) : "";
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    ld_buf detail = LD_BUF_INIT, body = LD_BUF_INIT;
    ol_json *doc = NULL;
    ld_status st = LD_STATUS_INIT;
    int rc;

    if (n && !p) {
        reply_detail(l, req, 503, "out of memory", log_name, peer, start_us);
        goto out;
    }
    if (n && ct && !is_json_type(ct)) {
        /* FastAPI leaves a non-JSON body as bytes, which fail the model */
        ol_json_detail_not_json(&detail, p, n);
        ol_json_detail_body(&body, &detail);
        reply_json(l, req, 422, &body, log_name, peer, start_us, "the body is not JSON");
        goto out;
    }
    if (n) {
        ol_json_limits lim = {h->o.max_json_depth, h->o.max_json_values};
        ol_json_error err;
        if (ol_json_parse(p, n, &c->arena, &lim, &doc, &err) != 0) {
            if (err.kind == OL_JSON_E_SYNTAX) {
                ol_json_detail_decode_error(&detail, &err);
                ol_json_detail_body(&body, &detail);
                reply_json(l, req, 422, &body, log_name, peer, start_us, "JSON decode error");
            } else if (err.kind == OL_JSON_E_BODY) {
                ld_log_write(LD_LOG_DEBUG, "http: %s from %s: %s", log_name, peer, err.msg);
                reply_detail(l, req, 400, "There was an error parsing the body", log_name, peer,
                             start_us);
            } else {
                reply_detail(l, req, 413, err.msg, log_name, peer, start_us);
            }
            goto out;
        }
    }
    if (route == ROUTE_GET)
        rc = ol_json_decode_get(doc, &c->arena, &c->rq.get, &detail, &st);
    else
        rc = ol_json_decode_write(doc, route == ROUTE_PUSH, &c->arena, &c->rq.write, &detail, &st);
    if (rc != 0) {
        if (detail.len) {
            ol_json_detail_body(&body, &detail);
            reply_json(l, req, 422, &body, log_name, peer, start_us, st.msg);
        } else {
            reply_status(l, req, &st, log_name, peer, start_us);
        }
        goto out;
    }

    /* Hand over. `done` may run at once, even on this thread, so the call is
     * pending before ol_serve sees it. */
    c->next = l->pending;
    if (l->pending)
        l->pending->prev = c;
    l->pending = c;
    l->n_pending++;
    outstanding_add(h, 1);
    int64_t deadline = start_us + h->o.timeout_ms * 1000;
    ol_defer defer = {.defer = loop_defer, .ctx = l};
    if (route == ROUTE_GET)
        rc = ol_serve_get(h->srv, &c->rq.get, &c->arena, deadline, &defer, on_get_done, c, &st);
    else
        rc = ol_serve_write(h->srv, &c->rq.write, &c->arena, deadline, on_write_done, c, &st);
    if (rc == 0) {
        c = NULL; /* owned by the done path now */
    } else {
        pending_unlink(l, c);
        outstanding_add(h, -1);
        reply_status(l, req, &st, log_name, peer, start_us);
    }
out:
    ld_buf_free(&detail);
    ld_buf_free(&body);
    if (c)
        call_free(c);
}

static void on_mat_done(void *arg, int code, ld_buf *body, const ld_status *st)
{
    http_call *c = arg;
    c->st = *st;
    c->mat_code = code;
    ld_buf_free(&c->mat_body);
    c->mat_body = *body;
    *body = (ld_buf)LD_BUF_INIT;
    post_done(c);
}

/* FastAPI's bool query parameter: 1: true, 0: false, -1: not a bool. */
static int query_bool(const char *v)
{
    static const char *const yes[] = {"1", "true", "on", "yes", "t", "y"};
    static const char *const no[] = {"0", "false", "off", "no", "f", "n"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (!strcasecmp(v, yes[i]))
            return 1;
        if (!strcasecmp(v, no[i]))
            return 0;
    }
    return -1;
}

/* POST /materialize[-incremental][?async=true][&force=true]: parsed here,
 * run on a materialization worker, answered on this loop when it is done
 * (sync) or when the views are selected (async). */
static void start_mat_call(http_loop *l, struct evhttp_request *req, enum route route,
                           const char *log_name, const char *peer, int64_t start_us)
{
    ol_http *h = l->h;
    const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    struct evkeyvalq params;
    TAILQ_INIT(&params);
    int flags[2] = {0, 0};
    const char *names[2] = {"async", "force"};
    if (q && evhttp_parse_query_str(q, &params) == 0) {
        for (int i = 0; i < 2; i++) {
            const char *v = evhttp_find_header(&params, names[i]);
            if (v && (flags[i] = query_bool(v)) < 0) {
                evhttp_clear_headers(&params);
                reply_detail(l, req, 422, "Input should be a valid boolean", log_name, peer,
                             start_us);
                return;
            }
        }
    }
    evhttp_clear_headers(&params);
    http_call *c = calloc(1, sizeof *c);
    if (!c) {
        reply_detail(l, req, 503, "out of memory", log_name, peer, start_us);
        return;
    }
    c->loop = l;
    c->req = req;
    c->route = route;
    c->log_name = log_name;
    c->start_us = start_us;
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    ld_arena_init(&c->arena, c->first, sizeof c->first, h->o.max_request_memory);
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    const char *p = n ? (const char *)evbuffer_pullup(in, -1) : "";
    c->next = l->pending;
    if (l->pending)
        l->pending->prev = c;
    l->pending = c;
    l->n_pending++;
    outstanding_add(h, 1);
    ld_status st = LD_STATUS_INIT;
    ld_buf resp = LD_BUF_INIT;
    int code = 0;
    if (ol_mat_jobs_http(h->o.materialize, route == ROUTE_MAT_INC, p, n, flags[0], flags[1],
                         on_mat_done, c, &code, &resp, &st) != 0) {
        pending_unlink(l, c);
        outstanding_add(h, -1);
        if (!ld_status_ok(&st))
            reply_status(l, req, &st, log_name, peer, start_us);
        else
            reply_json(l, req, code, &resp, log_name, peer, start_us, "invalid body");
        call_free(c);
    }
    ld_buf_free(&resp);
}

static void peer_of(struct evhttp_request *req, char *out, size_t n)
{
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    char *addr = NULL;
    ev_uint16_t port = 0;
    out[0] = '\0';
    if (!conn)
        return;
    evhttp_connection_get_peer(conn, &addr, &port);
    if (addr && strchr(addr, ':'))
        snprintf(out, n, "[%s]:%u", addr, (unsigned)port);
    else if (addr)
        snprintf(out, n, "%s:%u", addr, (unsigned)port);
}

static const char *method_name(enum evhttp_cmd_type m)
{
    switch (m) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    case EVHTTP_REQ_OPTIONS:
        return "OPTIONS";
    case EVHTTP_REQ_TRACE:
        return "TRACE";
    case EVHTTP_REQ_CONNECT:
        return "CONNECT";
    case EVHTTP_REQ_PATCH:
        return "PATCH";
    }
    return "?";
}

/* Responses are written in one piece: turn Nagle off, or a response that
 * spans segments waits for the client's delayed ACK (40 ms) whenever the
 * previous segment is unacknowledged. evhttp does not set it. */
static void set_nodelay(struct evhttp_request *req)
{
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    struct bufferevent *bev = conn ? evhttp_connection_get_bufferevent(conn) : NULL;
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    http_loop *l = arg;
    ol_http *h = l->h;
    int64_t start_us = ld_mono_us();
    set_nodelay(req);
    l->unfinished++;
    char peer[64];
    peer_of(req, peer, sizeof peer);
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    if (!path || !*path)
        path = "/";

    size_t k = 0;
    while (k < sizeof routes / sizeof routes[0] && strcmp(routes[k].path, path) != 0)
        k++;
    if (k == sizeof routes / sizeof routes[0]) {
        char name[160];
        snprintf(name, sizeof name, "%s %.128s", method_name(m), path);
        reply_detail(l, req, 404, "Not Found", name, peer, start_us);
        return;
    }
    enum route route = routes[k].route;
    const char *log_name = routes[k].log_name;
    if (route == ROUTE_HEALTH) {
        if (m != EVHTTP_REQ_GET && m != EVHTTP_REQ_HEAD) {
            evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
            reply_detail(l, req, 405, "Method Not Allowed", log_name, peer, start_us);
            return;
        }
        int ok = ol_serve_healthy(h->srv);
        reply(l, req, ok ? 200 : 503, NULL, NULL, log_name, peer, start_us,
              ok ? GRPC_STATUS_OK : GRPC_STATUS_UNAVAILABLE, ok ? NULL : "not serving");
        return;
    }
    if (m != EVHTTP_REQ_POST) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "POST");
        reply_detail(l, req, 405, "Method Not Allowed", log_name, peer, start_us);
        return;
    }
    if ((route == ROUTE_MAT || route == ROUTE_MAT_INC) && h->o.materialize) {
        start_mat_call(l, req, route, log_name, peer, start_us);
        return;
    }
    if (route == ROUTE_OTHER || route == ROUTE_MAT || route == ROUTE_MAT_INC) {
        ld_status st = LD_STATUS_INIT;
        ld_status_set(&st, GRPC_STATUS_UNIMPLEMENTED, NULL, "%s is not served by larder-online",
                      path);
        reply_status(l, req, &st, log_name, peer, start_us);
        return;
    }
    start_call(l, req, route, log_name, peer, start_us);
}

/*==== Loops and shutdown ====*/

/* On the loop: close every connection and leave the loop. */
static void finish_loop(http_loop *l)
{
    if (l->finished)
        return;
    l->finished = 1;
    ld_defer_run(&l->defer); /* what is inside ol_serve must reach the store */
    /* Orphan what is still inside ol_serve: evhttp frees the requests. */
    for (http_call *c = l->pending; c; c = c->next)
        c->req = NULL;
    pthread_mutex_lock(&l->mu);
    l->alive = 0;
    http_call *q = l->done_head;
    l->done_head = l->done_tail = NULL;
    pthread_mutex_unlock(&l->mu);
    size_t n = 0;
    while (q) { /* finished but not yet answered: too late now */
        http_call *c = q;
        q = q->done_next;
        call_free(c);
        n++;
    }
    if (n)
        outstanding_add(l->h, -(int)n);
    l->pending = NULL;
    l->n_pending = 0;
    if (l->unfinished)
        ld_debug("http: closing with %zu response(s) unfinished", l->unfinished);
    evhttp_free(l->http);
    l->http = NULL;
    l->bound = NULL;
    event_base_loopbreak(l->base);
}

static void maybe_finish_loop(http_loop *l)
{
    if (l->stopping && !l->n_pending && !l->unfinished)
        finish_loop(l);
}

static void on_check_ev(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    maybe_finish_loop(arg);
}

static void on_grace_ev(evutil_socket_t fd, short what, void *arg)
{
    http_loop *l = arg;
    (void)fd;
    (void)what;
    on_done_ev(-1, 0, l); /* answer what has finished meanwhile */
    if (!l->finished) {
        if (l->n_pending)
            ld_warn("http: grace period over, dropping %zu request(s) still being served",
                    l->n_pending);
        finish_loop(l);
    }
}

static void on_stop_ev(evutil_socket_t fd, short what, void *arg)
{
    http_loop *l = arg;
    (void)fd;
    (void)what;
    if (l->stopping)
        return;
    l->stopping = 1;
    if (l->bound) {
        evhttp_del_accept_socket(l->http, l->bound);
        l->bound = NULL;
    }
    int64_t g = l->h->o.grace_ms;
    struct timeval tv = {(time_t)(g / 1000), (suseconds_t)(g % 1000 * 1000)};
    evtimer_add(l->grace_ev, &tv);
    maybe_finish_loop(l);
}

static void *loop_main(void *arg)
{
    http_loop *l = arg;
    char name[16];
    snprintf(name, sizeof name, "ld-http-%d", l->idx);
    pthread_setname_np(pthread_self(), name);
    event_base_loop(l->base, EVLOOP_NO_EXIT_ON_EMPTY);
    ld_defer_run(&l->defer);
    return NULL;
}

static int setup_loop(ol_http *h, http_loop *l, const char *host, int port, evutil_socket_t fd,
                      ld_status *st)
{
    const ol_http_opts *o = &h->o;
    l->h = h;
    pthread_mutex_init(&l->mu, NULL);
    l->alive = 1;
    l->base = event_base_new();
    l->http = l->base ? evhttp_new(l->base) : NULL;
    if (!l->http)
        return ld_status_set(st, GRPC_STATUS_INTERNAL, NULL, "libevent: cannot create evhttp");
    l->done_ev = event_new(l->base, -1, 0, on_done_ev, l);
    l->stop_ev = event_new(l->base, -1, 0, on_stop_ev, l);
    l->check_ev = event_new(l->base, -1, 0, on_check_ev, l);
    l->grace_ev = evtimer_new(l->base, on_grace_ev, l);
    l->defer_ev = event_new(l->base, -1, 0, on_defer_ev, l);
    if (!l->done_ev || !l->stop_ev || !l->check_ev || !l->grace_ev || !l->defer_ev)
        return ld_status_set(st, GRPC_STATUS_INTERNAL, NULL, "libevent: cannot create events");
    evhttp_set_max_body_size(l->http, (ev_ssize_t)o->max_body_bytes);
    evhttp_set_max_headers_size(l->http, 64 * 1024);
    struct timeval idle = {(time_t)(o->idle_timeout_ms / 1000),
                           (suseconds_t)(o->idle_timeout_ms % 1000 * 1000)};
    evhttp_set_timeout_tv(l->http, &idle);
    evhttp_set_allowed_methods(l->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                                EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                                EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    evhttp_set_default_content_type(l->http, NULL);
    evhttp_set_gencb(l->http, on_request, l);
    if (fd < 0) {
        l->bound = evhttp_bind_socket_with_handle(l->http, host, (ev_uint16_t)port);
        if (!l->bound) {
            int e = errno;
            return ld_status_set(st, GRPC_STATUS_UNAVAILABLE, NULL, "cannot listen on %s:%d: %s",
                                 host, port, e ? strerror(e) : "address not usable");
        }
    } else {
        int dupfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (dupfd < 0)
            return ld_status_set(st, GRPC_STATUS_UNAVAILABLE, NULL, "dup: %s", strerror(errno));
        evutil_make_socket_nonblocking(dupfd);
        l->bound = evhttp_accept_socket_with_handle(l->http, dupfd);
        if (!l->bound) {
            close(dupfd);
            return ld_status_set(st, GRPC_STATUS_INTERNAL, NULL, "libevent: cannot accept");
        }
    }
    return 0;
}

static void apply_defaults(ol_http_opts *o)
{
    if (!o->max_body_bytes)
        o->max_body_bytes = 16u << 20;
    if (o->timeout_ms <= 0)
        o->timeout_ms = 60000;
    if (o->idle_timeout_ms <= 0)
        o->idle_timeout_ms = 60000;
    if (o->grace_ms <= 0)
        o->grace_ms = 5000;
    if (o->threads <= 0)
        o->threads = 1;
    if (o->threads > 64)
        o->threads = 64;
    if (o->max_json_depth <= 0)
        o->max_json_depth = 64;
    if (!o->max_json_values)
        o->max_json_values = 1000000;
    if (!o->max_request_memory)
        o->max_request_memory = o->max_body_bytes * 32;
}

ol_http *ol_http_new(ol_server *s, const char *host, int port, const ol_http_opts *o, ld_status *st)
{
    pthread_once(&evthread_once, init_evthread);
    ol_http *h = calloc(1, sizeof *h);
    if (!h) {
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        return NULL;
    }
    h->srv = s;
    if (o)
        h->o = *o;
    apply_defaults(&h->o);
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    h->loops = calloc((size_t)h->o.threads, sizeof *h->loops);
    if (!h->loops) {
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        ol_http_free(h);
        return NULL;
    }
    if (!host || !*host)
        host = "0.0.0.0";
    evutil_socket_t fd = -1;
    for (int i = 0; i < h->o.threads; i++) {
        http_loop *l = &h->loops[i];
        l->idx = i;
        h->n_loops = i + 1;
        if (setup_loop(h, l, host, port, fd, st) != 0) {
            ol_http_free(h);
            return NULL;
        }
        if (i == 0) {
            fd = evhttp_bound_socket_get_fd(l->bound);
            struct sockaddr_storage ss;
            socklen_t sl = sizeof ss;
            if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
                h->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                         : ((struct sockaddr_in *)&ss)->sin_port);
        }
    }
    /* Loop threads take no process signals; SIGPIPE stays pending there
     * instead of killing the process when a client goes away mid-write. */
    sigset_t block, old;
    sigemptyset(&block);
    int sigs[] = {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGCHLD};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaddset(&block, sigs[i]);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    for (int i = 0; i < h->n_loops; i++) {
        http_loop *l = &h->loops[i];
        if (pthread_create(&l->thread, NULL, loop_main, l) != 0) {
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            ld_status_set(st, GRPC_STATUS_INTERNAL, NULL, "cannot start an HTTP thread");
            ol_http_free(h);
            return NULL;
        }
        l->started = 1;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return h;
}

int ol_http_port(const ol_http *h)
{
    return h->port;
}

void ol_http_stop(ol_http *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->mu);
    int already = h->stopped;
    h->stopped = 1;
    pthread_mutex_unlock(&h->mu);
    if (already)
        return;
    for (int i = 0; i < h->n_loops; i++)
        if (h->loops[i].started)
            event_active(h->loops[i].stop_ev, EV_READ, 0);
    for (int i = 0; i < h->n_loops; i++)
        if (h->loops[i].started) {
            pthread_join(h->loops[i].thread, NULL);
            h->loops[i].started = 0;
        }
}

void ol_http_free(ol_http *h)
{
    if (!h)
        return;
    ol_http_stop(h);
    pthread_mutex_lock(&h->mu);
    while (h->outstanding)
        pthread_cond_wait(&h->cv, &h->mu);
    pthread_mutex_unlock(&h->mu);
    for (int i = 0; i < h->n_loops; i++) {
        http_loop *l = &h->loops[i];
        if (l->http)
            evhttp_free(l->http);
        if (l->done_ev)
            event_free(l->done_ev);
        if (l->stop_ev)
            event_free(l->stop_ev);
        if (l->check_ev)
            event_free(l->check_ev);
        if (l->grace_ev)
            event_free(l->grace_ev);
        if (l->defer_ev)
            event_free(l->defer_ev);
        if (l->base)
            event_base_free(l->base);
        pthread_mutex_destroy(&l->mu);
    }
    free(h->loops);
    pthread_cond_destroy(&h->cv);
    pthread_mutex_destroy(&h->mu);
    free(h);
}
