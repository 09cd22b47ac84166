/* In-process tests of ld_server and ld_client together: a real gRPC server
 * on a loopback port and the C-core client calling it. */
#include <pthread.h>
#include <string.h>
#include <unistd.h>
#include <grpc/grpc.h>

#include "larder/debug/debug.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"
#include "ld_client.h"
#include "ld_debug_service.h"
#include "ld_log.h"
#include "ld_server.h"
#include "ld_test.h"
#include "ld_time.h"
#include "ld_timer.h"

static ld_server *start_server(int port, ld_status *st)
{
    ld_server_opts o = {.name = "test", .host = "127.0.0.1", .port = port, .grace_period_ms = 200};
    ld_server *s = ld_server_new(&o, st);
    if (!s)
        return NULL;
    if (ld_debug_service_register(s, st) != 0 || ld_server_start(s, st) != 0) {
        ld_server_free(s);
        return NULL;
    }
    return s;
}

/* A server with only these methods (no debug service), started. */
static ld_server *start_methods(const ld_method *m, size_t n, ld_status *st)
{
    ld_server_opts o = {.name = "test", .host = "127.0.0.1", .grace_period_ms = 100};
    ld_server *s = ld_server_new(&o, st);
    if (!s)
        return NULL;
    if (ld_server_add_methods(s, m, n, NULL, st) != 0 || ld_server_start(s, st) != 0) {
        ld_server_free(s);
        return NULL;
    }
    return s;
}

static ld_client *client_for(int port, int attempts)
{
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", port);
    ld_client_opts o = {.target = target, .max_attempts = attempts, .initial_backoff_ms = 20};
    ld_status st;
    return ld_client_new(&o, &st);
}

static int sleep_call(ld_client *cl, int millis, int fail_code, int64_t timeout_ms, ld_status *st)
{
    Larder__Debug__SleepRequest req = LARDER__DEBUG__SLEEP_REQUEST__INIT;
    req.millis = millis;
    req.fail_code = fail_code;
    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    ProtobufCMessage *resp = NULL;
    int rc = ld_client_unary(cl, "/larder.debug.Debug/Sleep", &req.base,
                             &larder__debug__sleep_response__descriptor, &a, timeout_ms, NULL,
                             &resp, st);
    ld_arena_destroy(&a);
    return rc;
}

LD_TEST(unary_ok_error_deadline_unknown)
{
    ld_status st = LD_STATUS_INIT;
    ld_server *s = start_server(0, &st);
    LD_CHECK(s != NULL);
    if (!s)
        return;
    ld_client *cl = client_for(ld_server_port(s), 1);
    LD_CHECK_INT(sleep_call(cl, 10, 0, 5000, &st), 0);

    LD_CHECK_INT(sleep_call(cl, 0, GRPC_STATUS_NOT_FOUND, 5000, &st), -1);
    LD_CHECK_INT(st.code, GRPC_STATUS_NOT_FOUND);
    LD_CHECK(strstr(st.msg, "\"module\": \"feast.errors\"") != NULL);

    int64_t t0 = ld_mono_us();
    LD_CHECK_INT(sleep_call(cl, 5000, 0, 100, &st), -1);
    LD_CHECK_INT(st.code, GRPC_STATUS_DEADLINE_EXCEEDED);
    LD_CHECK(ld_mono_us() - t0 < 4000000); /* the call did not wait for the sleep */

    Grpc__Health__V1__HealthCheckRequest hreq = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    ProtobufCMessage *resp = NULL;
    LD_CHECK_INT(ld_client_unary(cl, "/no.Such/Method", &hreq.base,
                                 &grpc__health__v1__health_check_response__descriptor, &a, 2000,
                                 NULL, &resp, &st),
                 -1);
    LD_CHECK_INT(st.code, GRPC_STATUS_UNIMPLEMENTED);
    LD_CHECK_INT(ld_client_unary(cl, "/grpc.health.v1.Health/Check", &hreq.base,
                                 &grpc__health__v1__health_check_response__descriptor, &a, 2000,
                                 NULL, &resp, &st),
                 0);
    LD_CHECK(resp && ((Grpc__Health__V1__HealthCheckResponse *)resp)->status ==
                             GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
    ld_arena_destroy(&a);
    ld_client_free(cl);
    ld_server_free(s);
}

/* ---- the client retries UNAVAILABLE until a server comes up */

struct late_start {
    int port;
    ld_server *srv;
};

static void *start_late(void *arg)
{
    struct late_start *ls = arg;
    usleep(300 * 1000);
    ld_status st;
    ls->srv = start_server(ls->port, &st);
    return NULL;
}

LD_TEST(client_retries_unavailable)
{
    ld_status st = LD_STATUS_INIT;
    ld_server *s = start_server(0, &st);
    LD_CHECK(s != NULL);
    if (!s)
        return;
    int port = ld_server_port(s);
    ld_server_free(s); /* the port is free again */

    ld_client *once = client_for(port, 1);
    LD_CHECK_INT(sleep_call(once, 0, 0, 2000, &st), -1);
    LD_CHECK_INT(st.code, GRPC_STATUS_UNAVAILABLE);
    ld_client_free(once);

    struct late_start ls = {port, NULL};
    pthread_t th;
    pthread_create(&th, NULL, start_late, &ls);
    ld_client *cl = client_for(port, 30);
    int rc = sleep_call(cl, 0, 0, 10000, &st);
    if (rc != 0)
        printf("# %s\n", st.msg);
    LD_CHECK_INT(rc, 0);
    pthread_join(th, NULL);
    LD_CHECK(ls.srv != NULL);
    ld_client_free(cl);
    ld_server_free(ls.srv);
}

/* ---- server-imposed default deadline and the blocking pool */

static void never_finish_timer(ld_timer *t, int fired)
{
    ld_call_reply(t->arg, NULL);
}

static void slow_handler(ld_call *c, const ProtobufCMessage *req)
{
    ld_timer *t = ld_arena_calloc(ld_call_arena(c), 1, sizeof *t);
    /* answers after 3 s, long after the method's 100 ms default deadline */
    ld_timers_add(ld_server_timers(ld_call_server(c)), t, ld_mono_us() + 3000000,
                  never_finish_timer, c);
}

static void blocking_handler(ld_call *c, const ProtobufCMessage *req)
{
    char name[16] = "";
    pthread_getname_np(pthread_self(), name, sizeof name);
    Larder__Debug__SleepResponse resp = LARDER__DEBUG__SLEEP_RESPONSE__INIT;
    resp.slept_millis = strncmp(name, "ld-pool", 7) == 0 ? 1 : 0;
    usleep(1000); /* blocking is allowed here */
    ld_call_reply(c, &resp.base);
}

LD_TEST(default_deadline_and_blocking_pool)
{
    ld_status st = LD_STATUS_INIT;
    static const ld_method methods[] = {
            {.name = "/larder.debug.Debug/Sleep",
             .kind = LD_RPC_UNARY,
             .request = &larder__debug__sleep_request__descriptor,
             .handler = slow_handler,
             .default_deadline_ms = 100},
            {.name = "/larder.debug.Debug/Count",
             .kind = LD_RPC_UNARY,
             .request = &larder__debug__sleep_request__descriptor,
             .handler = blocking_handler,
             .flags = LD_METHOD_BLOCKING},
    };
    ld_server *s = start_methods(methods, 2, &st);
    LD_CHECK(s != NULL);
    if (!s)
        return;
    ld_client *cl = client_for(ld_server_port(s), 1);
    int64_t t0 = ld_mono_us();
    LD_CHECK_INT(sleep_call(cl, 0, 0, 10000, &st), -1);
    LD_CHECK_INT(st.code, GRPC_STATUS_DEADLINE_EXCEEDED);
    LD_CHECK(ld_mono_us() - t0 < 2500000);

    Larder__Debug__SleepRequest req = LARDER__DEBUG__SLEEP_REQUEST__INIT;
    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    ProtobufCMessage *resp = NULL;
    LD_CHECK_INT(ld_client_unary(cl, "/larder.debug.Debug/Count", &req.base,
                                 &larder__debug__sleep_response__descriptor, &a, 5000, NULL, &resp,
                                 &st),
                 0);
    LD_CHECK(resp && ((Larder__Debug__SleepResponse *)resp)->slept_millis == 1);
    ld_arena_destroy(&a);
    ld_client_free(cl);
    ld_server_free(s); /* the slow call is still pending: shutdown must end it */
}

/* ld_call_handoff: a reply finished from another thread (here the timer
 * thread) runs on the call's worker when the worker has other calls open,
 * and right where it is when the call is the worker's only one. The reply
 * says where it ran: slept_millis 1 on a worker (ld-cq-N), 0 elsewhere. */
static void handoff_reply(ld_call *c, void *arg)
{
    (void)arg;
    char name[16] = "";
    pthread_getname_np(pthread_self(), name, sizeof name);
    Larder__Debug__SleepResponse resp = LARDER__DEBUG__SLEEP_RESPONSE__INIT;
    resp.slept_millis = strncmp(name, "ld-cq", 5) == 0 ? 1 : 0;
    ld_call_reply(c, &resp.base);
}

static void handoff_timer(ld_timer *t, int fired)
{
    (void)fired;
    ld_call_handoff(t->arg, handoff_reply, NULL);
}

static void handoff_handler(ld_call *c, const ProtobufCMessage *msg)
{
    const Larder__Debug__SleepRequest *req = (const void *)msg;
    ld_timer *t = ld_arena_calloc(ld_call_arena(c), 1, sizeof *t);
    ld_timers_add(ld_server_timers(ld_call_server(c)), t, ld_mono_us() + req->millis * 1000,
                  handoff_timer, c);
}

/* where the reply of a Sleep(millis) call ran: 1 worker, 0 elsewhere, -1 failed */
static int handoff_call(int port, int millis)
{
    ld_client *cl = client_for(port, 1);
    if (!cl)
        return -1;
    Larder__Debug__SleepRequest req = LARDER__DEBUG__SLEEP_REQUEST__INIT;
    req.millis = millis;
    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    ProtobufCMessage *resp = NULL;
    ld_status st = LD_STATUS_INIT;
    int rc =
            ld_client_unary(cl, "/larder.debug.Debug/Sleep", &req.base,
                            &larder__debug__sleep_response__descriptor, &a, 5000, NULL, &resp, &st);
    int where = rc == 0 && resp ? (int)((Larder__Debug__SleepResponse *)resp)->slept_millis : -1;
    ld_arena_destroy(&a);
    ld_client_free(cl);
    return where;
}

typedef struct bg_call {
    int port, millis, where;
} bg_call;

static void *bg_call_main(void *arg)
{
    bg_call *b = arg;
    b->where = handoff_call(b->port, b->millis);
    return NULL;
}

LD_TEST(handoff_to_busy_worker_only)
{
    ld_status st = LD_STATUS_INIT;
    static const ld_method methods[] = {
            {.name = "/larder.debug.Debug/Sleep",
             .kind = LD_RPC_UNARY,
             .request = &larder__debug__sleep_request__descriptor,
             .handler = handoff_handler},
    };
    ld_server *s = start_methods(methods, 1, &st);
    LD_CHECK(s != NULL);
    if (!s)
        return;
    int port = ld_server_port(s);
    /* alone: the timer thread replies itself */
    LD_CHECK_INT(handoff_call(port, 10), 0);
    /* while a long call is open on the worker: the worker replies */
    bg_call long_call = {.port = port, .millis = 600};
    pthread_t th;
    LD_CHECK_INT(pthread_create(&th, NULL, bg_call_main, &long_call), 0);
    usleep(200 * 1000); /* the long call has arrived */
    LD_CHECK_INT(handoff_call(port, 10), 1);
    pthread_join(th, NULL);
    LD_CHECK_INT(long_call.where, 0); /* it ended alone again */
    ld_server_free(s);
}

static int setup(void)
{
    ld_log_setup(LD_LOG_ERROR, LD_LOG_TEXT, "test");
    grpc_init();
    return 0;
}

__attribute__((constructor(101))) static void init(void)
{
    setup();
}

LD_TEST_MAIN
