#include "ld_health.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"
#include "ld_server.h"

typedef struct service {
    char *name;
    ld_health_status status;
    struct service *next;
} service;

typedef struct watcher {
    ld_call *call;
    ld_health *h;
    char *service;
    int sending;        /* a send is outstanding */
    int sent;           /* status of the last send */
    int done;           /* stream must end (client gone, or shutting down) */
    int end_after_send; /* shutting down: end once the last update is out */
    struct watcher *prev, *next;
} watcher;

struct ld_health {
    pthread_mutex_t mu;
    service *services;
    watcher *watchers;
    int closing;
};

static service *find(ld_health *h, const char *name)
{
    for (service *s = h->services; s; s = s->next)
        if (strcmp(s->name, name) == 0)
            return s;
    return NULL;
}

static ld_health_status lookup(ld_health *h, const char *name)
{
    service *s = find(h, name);
    return s ? s->status : LD_HEALTH_SERVICE_UNKNOWN;
}

static void unlink_watcher(ld_health *h, watcher *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else if (h->watchers == w)
        h->watchers = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->prev = w->next = NULL;
}

static void watch_sent(ld_call *c, int ok);

/* Under h->mu. */
static int send_status(watcher *w, ld_health_status st)
{
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    resp.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)st;
    w->sending = 1;
    w->sent = st;
    if (ld_call_send(w->call, &resp.base, watch_sent) != 0) {
        w->sending = 0;
        return -1;
    }
    return 0;
}

static void end_watch(watcher *w)
{
    ld_call *c = w->call;
    free(w->service);
    free(w);
    ld_call_reply(c, NULL);
}

static void watch_sent(ld_call *c, int ok)
{
    watcher *w = ld_call_user(c);
    ld_health *h = w->h;
    pthread_mutex_lock(&h->mu);
    w->sending = 0;
    if (!ok)
        w->done = 1;
    if (!w->done) {
        ld_health_status now = lookup(h, w->service);
        if ((int)now != w->sent) {
            if (send_status(w, now) == 0) {
                pthread_mutex_unlock(&h->mu);
                return;
            }
            w->done = 1;
        } else if (w->end_after_send) {
            w->done = 1;
        }
    }
    if (w->done) {
        unlink_watcher(h, w);
        pthread_mutex_unlock(&h->mu);
        end_watch(w);
        return;
    }
    pthread_mutex_unlock(&h->mu);
}

static void watch_cancelled(ld_call *c)
{
    watcher *w = ld_call_user(c);
    ld_health *h = w->h;
    pthread_mutex_lock(&h->mu);
    w->done = 1;
    if (w->sending) { /* the send completes (failed) and ends it */
        pthread_mutex_unlock(&h->mu);
        return;
    }
    unlink_watcher(h, w);
    pthread_mutex_unlock(&h->mu);
    end_watch(w);
}

static void health_check(ld_call *c, const ProtobufCMessage *msg)
{
    const Grpc__Health__V1__HealthCheckRequest *req = (const void *)msg;
    ld_health *h = ld_call_ctx(c);
    pthread_mutex_lock(&h->mu);
    service *s = find(h, req->service);
    ld_health_status st = s ? s->status : LD_HEALTH_UNKNOWN;
    pthread_mutex_unlock(&h->mu);
    if (!s) {
        ld_call_failf(c, GRPC_STATUS_NOT_FOUND, NULL, "unknown service '%s'", req->service);
        return;
    }
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    resp.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)st;
    ld_call_reply(c, &resp.base);
}

static void health_watch(ld_call *c, const ProtobufCMessage *msg)
{
    const Grpc__Health__V1__HealthCheckRequest *req = (const void *)msg;
    ld_health *h = ld_call_ctx(c);
    watcher *w = calloc(1, sizeof *w);
    if (w)
        w->service = strdup(req->service);
    if (!w || !w->service) {
        free(w);
        ld_call_failf(c, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        return;
    }
    w->call = c;
    w->h = h;
    ld_call_set_user(c, w);
    ld_call_on_cancel(c, watch_cancelled);
    pthread_mutex_lock(&h->mu);
    if (h->closing)
        w->end_after_send = 1;
    w->next = h->watchers;
    if (h->watchers)
        h->watchers->prev = w;
    h->watchers = w;
    if (send_status(w, lookup(h, w->service)) != 0) {
        unlink_watcher(h, w);
        pthread_mutex_unlock(&h->mu);
        end_watch(w);
        return;
    }
    pthread_mutex_unlock(&h->mu);
}

ld_health *ld_health_new(void)
{
    ld_health *h = calloc(1, sizeof *h);
    if (h)
        pthread_mutex_init(&h->mu, NULL);
    return h;
}

int ld_health_register(ld_health *h, ld_server *s, ld_status *st)
{
    static const ld_method methods[] = {
            {.name = "/grpc.health.v1.Health/Check",
             .kind = LD_RPC_UNARY,
             .request = &grpc__health__v1__health_check_request__descriptor,
             .response = &grpc__health__v1__health_check_response__descriptor,
             .handler = health_check,
             .max_request_bytes = 4096,
             .prepost = 64},
            {.name = "/grpc.health.v1.Health/Watch",
             .kind = LD_RPC_SERVER_STREAM,
             .request = &grpc__health__v1__health_check_request__descriptor,
             .response = &grpc__health__v1__health_check_response__descriptor,
             .handler = health_watch,
             .max_request_bytes = 4096},
    };
    return ld_server_add_methods(s, methods, sizeof methods / sizeof methods[0], h, st);
}

void ld_health_set(ld_health *h, const char *name, ld_health_status status)
{
    pthread_mutex_lock(&h->mu);
    if (h->closing) { /* shutting down: everything stays NOT_SERVING */
        pthread_mutex_unlock(&h->mu);
        return;
    }
    service *s = find(h, name);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s || !(s->name = strdup(name))) {
            free(s);
            pthread_mutex_unlock(&h->mu);
            return;
        }
        s->next = h->services;
        h->services = s;
    }
    s->status = status;
    for (watcher *w = h->watchers; w; w = w->next)
        if (!w->sending && !w->done && strcmp(w->service, name) == 0 && w->sent != (int)status)
            send_status(w, status);
    pthread_mutex_unlock(&h->mu);
}

void ld_health_shutdown(ld_health *h)
{
    /* Watchers are only ever freed on their call's completion-queue thread:
     * here each gets one last update (NOT_SERVING) and its send completion
     * ends the stream. A watcher whose send cannot start ends when the server
     * cancels its call. */
    pthread_mutex_lock(&h->mu);
    h->closing = 1;
    for (service *s = h->services; s; s = s->next)
        s->status = LD_HEALTH_NOT_SERVING;
    for (watcher *w = h->watchers; w; w = w->next) {
        w->end_after_send = 1;
        if (!w->sending && !w->done)
            send_status(w, lookup(h, w->service));
    }
    pthread_mutex_unlock(&h->mu);
}

void ld_health_free(ld_health *h)
{
    if (!h)
        return;
    for (service *s = h->services, *next; s; s = next) {
        next = s->next;
        free(s->name);
        free(s);
    }
    pthread_mutex_destroy(&h->mu);
    free(h);
}
