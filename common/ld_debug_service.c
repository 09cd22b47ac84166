#include "ld_debug_service.h"

#include <string.h>

#include "larder/debug/debug.pb-c.h"
#include "ld_pb.h"
#include "ld_time.h"
#include "ld_timer.h"

#define COUNT_MAX    1000000
#define PAD_MAX      (1 << 20)
#define SLEEP_MAX_MS 600000

/* ---- Sleep: completes from the timer thread, never blocks a CQ thread */

typedef struct sleep_state {
    ld_timer timer;
    ld_call *call;
    int64_t started_us;
    int fail_code;
    int past_deadline;
} sleep_state;

static void sleep_done(ld_timer *t, int fired)
{
    sleep_state *s = t->arg;
    if (!fired) {
        ld_call_failf(s->call, GRPC_STATUS_UNAVAILABLE, NULL, "server is shutting down");
        return;
    }
    if (s->past_deadline) {
        ld_call_failf(s->call, GRPC_STATUS_DEADLINE_EXCEEDED, NULL, "deadline exceeded");
        return;
    }
    if (s->fail_code) {
        ld_call_failf(s->call, (grpc_status_code)s->fail_code, NULL,
                      "requested failure with code %d", s->fail_code);
        return;
    }
    Larder__Debug__SleepResponse resp = LARDER__DEBUG__SLEEP_RESPONSE__INIT;
    resp.slept_millis = (int32_t)((ld_mono_us() - s->started_us) / 1000);
    ld_call_reply(s->call, &resp.base);
}

static void debug_sleep(ld_call *c, const ProtobufCMessage *msg)
{
    const Larder__Debug__SleepRequest *req = (const void *)msg;
    if (req->millis < 0 || req->millis > SLEEP_MAX_MS) {
        ld_call_failf(c, GRPC_STATUS_INVALID_ARGUMENT, NULL, "millis must be in 0..%d",
                      SLEEP_MAX_MS);
        return;
    }
    if (req->fail_code < 0 || req->fail_code > 16) {
        ld_call_failf(c, GRPC_STATUS_INVALID_ARGUMENT, NULL, "fail_code must be in 0..16");
        return;
    }
    sleep_state *s = ld_arena_calloc(ld_call_arena(c), 1, sizeof *s);
    if (!s) {
        ld_call_failf(c, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        return;
    }
    s->call = c;
    s->started_us = ld_mono_us();
    s->fail_code = req->fail_code;
    int64_t when = s->started_us + (int64_t)req->millis * 1000;
    int64_t deadline = ld_call_deadline_us(c);
    if (deadline < when) {
        when = deadline;
        s->past_deadline = 1;
    }
    if (ld_timers_add(ld_server_timers(ld_call_server(c)), &s->timer, when, sleep_done, s) != 0)
        ld_call_failf(c, GRPC_STATUS_UNAVAILABLE, NULL, "server is shutting down");
}

/* ---- Count: server streaming, one message in flight at a time */

typedef struct count_state {
    int n, next;
    uint8_t *pad;
    size_t pad_len;
} count_state;

static void count_next(ld_call *c, int ok)
{
    count_state *s = ld_call_user(c);
    if (!ok || ld_call_cancelled(c)) {
        ld_call_failf(c, GRPC_STATUS_CANCELLED, NULL, "stream cancelled");
        return;
    }
    if (s->next >= s->n) {
        ld_call_reply(c, NULL);
        return;
    }
    Larder__Debug__CountResponse resp = LARDER__DEBUG__COUNT_RESPONSE__INIT;
    resp.seq = s->next++;
    resp.pad.data = s->pad;
    resp.pad.len = s->pad_len;
    if (ld_call_send(c, &resp.base, count_next) != 0)
        ld_call_failf(c, GRPC_STATUS_INTERNAL, NULL, "send failed");
}

static void debug_count(ld_call *c, const ProtobufCMessage *msg)
{
    const Larder__Debug__CountRequest *req = (const void *)msg;
    if (req->n < 0 || req->n > COUNT_MAX || req->pad_bytes < 0 || req->pad_bytes > PAD_MAX) {
        ld_call_failf(c, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                      "n must be in 0..%d and pad_bytes in 0..%d", COUNT_MAX, PAD_MAX);
        return;
    }
    count_state *s = ld_arena_calloc(ld_call_arena(c), 1, sizeof *s);
    if (s && req->pad_bytes) {
        s->pad = ld_arena_alloc(ld_call_arena(c), (size_t)req->pad_bytes);
        if (s->pad)
            memset(s->pad, 'x', (size_t)req->pad_bytes);
    }
    if (!s || (req->pad_bytes && !s->pad)) {
        ld_call_failf(c, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        return;
    }
    s->n = req->n;
    s->pad_len = (size_t)req->pad_bytes;
    ld_call_set_user(c, s);
    count_next(c, 1);
}

/* ---- Sum: client streaming */

static int unpack_number(grpc_byte_buffer *bb, ld_arena *scratch, int64_t *out)
{
    ld_status st;
    Larder__Debug__Number *n = (Larder__Debug__Number *)ld_pb_unpack_bb(
            &larder__debug__number__descriptor, bb, scratch, &st);
    if (!n)
        return -1;
    *out = n->value;
    return 0;
}

typedef struct sum_state {
    int64_t sum;
    long count;
} sum_state;

static void sum_recv(ld_call *c, grpc_byte_buffer *bb);

static void sum_recv(ld_call *c, grpc_byte_buffer *bb)
{
    sum_state *s = ld_call_user(c);
    if (!bb) {
        if (ld_call_cancelled(c)) {
            ld_call_failf(c, GRPC_STATUS_CANCELLED, NULL, "stream cancelled");
            return;
        }
        Larder__Debug__Number resp = LARDER__DEBUG__NUMBER__INIT;
        resp.value = s->sum;
        ld_call_reply(c, &resp.base);
        return;
    }
    char scratch_mem[512];
    ld_arena scratch;
    ld_arena_init(&scratch, scratch_mem, sizeof scratch_mem, 1 << 16);
    int64_t v;
    int rc = unpack_number(bb, &scratch, &v);
    ld_arena_destroy(&scratch);
    grpc_byte_buffer_destroy(bb);
    if (rc != 0) {
        ld_call_failf(c, GRPC_STATUS_INVALID_ARGUMENT, NULL, "message %ld is not a Number",
                      s->count);
        return;
    }
    s->sum += v;
    s->count++;
    if (ld_call_recv(c, sum_recv) != 0)
        ld_call_failf(c, GRPC_STATUS_INTERNAL, NULL, "receive failed");
}

static void debug_sum(ld_call *c, const ProtobufCMessage *msg)
{
    sum_state *s = ld_arena_calloc(ld_call_arena(c), 1, sizeof *s);
    if (!s) {
        ld_call_failf(c, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        return;
    }
    ld_call_set_user(c, s);
    if (ld_call_recv(c, sum_recv) != 0)
        ld_call_failf(c, GRPC_STATUS_INTERNAL, NULL, "receive failed");
}

/* ---- Echo: bidi, receive one, send it back, receive the next */

static void echo_recv(ld_call *c, grpc_byte_buffer *bb);

static void echo_sent(ld_call *c, int ok)
{
    if (!ok) {
        ld_call_failf(c, GRPC_STATUS_CANCELLED, NULL, "stream cancelled");
        return;
    }
    if (ld_call_recv(c, echo_recv) != 0)
        ld_call_failf(c, GRPC_STATUS_INTERNAL, NULL, "receive failed");
}

static void echo_recv(ld_call *c, grpc_byte_buffer *bb)
{
    if (!bb) {
        if (ld_call_cancelled(c))
            ld_call_failf(c, GRPC_STATUS_CANCELLED, NULL, "stream cancelled");
        else
            ld_call_reply(c, NULL);
        return;
    }
    char scratch_mem[512];
    ld_arena scratch;
    ld_arena_init(&scratch, scratch_mem, sizeof scratch_mem, 1 << 16);
    int64_t v;
    int rc = unpack_number(bb, &scratch, &v);
    ld_arena_destroy(&scratch);
    grpc_byte_buffer_destroy(bb);
    if (rc != 0) {
        ld_call_failf(c, GRPC_STATUS_INVALID_ARGUMENT, NULL, "message is not a Number");
        return;
    }
    Larder__Debug__Number out = LARDER__DEBUG__NUMBER__INIT;
    out.value = v;
    if (ld_call_send(c, &out.base, echo_sent) != 0)
        ld_call_failf(c, GRPC_STATUS_INTERNAL, NULL, "send failed");
}

static void debug_echo(ld_call *c, const ProtobufCMessage *msg)
{
    if (ld_call_recv(c, echo_recv) != 0)
        ld_call_failf(c, GRPC_STATUS_INTERNAL, NULL, "receive failed");
}

int ld_debug_service_register(ld_server *s, ld_status *st)
{
    static const ld_method methods[] = {
            {.name = "/larder.debug.Debug/Sleep",
             .kind = LD_RPC_UNARY,
             .request = &larder__debug__sleep_request__descriptor,
             .response = &larder__debug__sleep_response__descriptor,
             .handler = debug_sleep,
             .prepost = 32},
            {.name = "/larder.debug.Debug/Count",
             .kind = LD_RPC_SERVER_STREAM,
             .request = &larder__debug__count_request__descriptor,
             .response = &larder__debug__count_response__descriptor,
             .handler = debug_count},
            {.name = "/larder.debug.Debug/Sum",
             .kind = LD_RPC_CLIENT_STREAM,
             .request = &larder__debug__number__descriptor,
             .response = &larder__debug__number__descriptor,
             .handler = debug_sum,
             .max_request_bytes = 1024},
            {.name = "/larder.debug.Debug/Echo",
             .kind = LD_RPC_BIDI,
             .request = &larder__debug__number__descriptor,
             .response = &larder__debug__number__descriptor,
             .handler = debug_echo,
             .max_request_bytes = 1024},
    };
    return ld_server_add_methods(s, methods, sizeof methods / sizeof methods[0], NULL, st);
}
