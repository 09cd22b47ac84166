#include "ld_client.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "ld_pb.h"
#include "ld_time.h"
#include "ld_tls.h"

#define MAX_REGISTERED 64

typedef struct reg_call {
    char *method;
    void *handle;
} reg_call;

struct ld_client {
    ld_client_opts opts;
    char *target;
    grpc_channel *channel;
    pthread_mutex_t mu;
    reg_call regs[MAX_REGISTERED];
    int n_regs;
};

ld_client *ld_client_new(const ld_client_opts *o, ld_status *st)
{
    if (!o->target || !*o->target) {
        ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL, "client target is empty");
        return NULL;
    }
    ld_client *cl = calloc(1, sizeof *cl);
    if (!cl) {
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        return NULL;
    }
    cl->opts = *o;
    cl->target = strdup(o->target);
    cl->opts.target = cl->target;
    if (cl->opts.timeout_ms <= 0)
        cl->opts.timeout_ms = 10000;
    if (cl->opts.max_attempts <= 0)
        cl->opts.max_attempts = 4;
    if (cl->opts.initial_backoff_ms <= 0)
        cl->opts.initial_backoff_ms = 50;
    if (cl->opts.max_backoff_ms <= 0)
        cl->opts.max_backoff_ms = 2000;
    if (!cl->opts.max_message_bytes)
        cl->opts.max_message_bytes = 64u << 20;
    pthread_mutex_init(&cl->mu, NULL);

    grpc_channel_credentials *creds;
    if (o->tls || o->tls_ca || o->tls_cert) {
        creds = ld_tls_channel_credentials(o->tls_ca, o->tls_cert, o->tls_key, st);
        if (!creds) {
            ld_client_free(cl);
            return NULL;
        }
    } else {
        creds = grpc_insecure_credentials_create();
    }
    grpc_arg args[3];
    size_t n = 0;
    args[n++] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                           .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
                           .value.integer = (int)(cl->opts.max_message_bytes > INT32_MAX
                                                          ? INT32_MAX
                                                          : cl->opts.max_message_bytes)};
    /* our own retry loop decides; don't let the channel retry too */
    args[n++] = (grpc_arg){
            .type = GRPC_ARG_INTEGER, .key = GRPC_ARG_ENABLE_RETRIES, .value.integer = 0};
    if (o->authority)
        args[n++] = (grpc_arg){.type = GRPC_ARG_STRING,
                               .key = GRPC_SSL_TARGET_NAME_OVERRIDE_ARG,
                               .value.string = (char *)o->authority};
    grpc_channel_args cargs = {n, args};
    cl->channel = grpc_channel_create(cl->target, creds, &cargs);
    grpc_channel_credentials_release(creds);
    if (!cl->channel) {
        ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL, "cannot create a channel to %s",
                      cl->target);
        ld_client_free(cl);
        return NULL;
    }
    return cl;
}

void ld_client_free(ld_client *cl)
{
    if (!cl)
        return;
    if (cl->channel)
        grpc_channel_destroy(cl->channel);
    for (int i = 0; i < cl->n_regs; i++)
        free(cl->regs[i].method);
    pthread_mutex_destroy(&cl->mu);
    free(cl->target);
    free(cl);
}

const char *ld_client_target(const ld_client *cl)
{
    return cl->target;
}

/* The registered-call handle of a method: registered once per client. */
static void *method_handle(ld_client *cl, const char *method)
{
    void *h = NULL;
    pthread_mutex_lock(&cl->mu);
    for (int i = 0; i < cl->n_regs; i++)
        if (strcmp(cl->regs[i].method, method) == 0) {
            h = cl->regs[i].handle;
            break;
        }
    if (!h && cl->n_regs < MAX_REGISTERED) {
        char *m = strdup(method);
        if (m) {
            h = grpc_channel_register_call(cl->channel, m, NULL, NULL);
            cl->regs[cl->n_regs++] = (reg_call){m, h};
        }
    }
    pthread_mutex_unlock(&cl->mu);
    return h;
}

static gpr_timespec abs_deadline(int64_t until_us)
{
    int64_t left = until_us - ld_mono_us();
    if (left < 0)
        left = 0;
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_micros(left, GPR_TIMESPAN));
}

/* One attempt. Returns the status code; fills st (and *resp on OK). */
static grpc_status_code attempt(ld_client *cl, const char *method, grpc_byte_buffer *req_bb,
                                const ProtobufCMessageDescriptor *resp_desc, ld_arena *arena,
                                int64_t until_us, const char *const *md, ProtobufCMessage **resp,
                                ld_status *st)
{
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    gpr_timespec deadline = abs_deadline(until_us);
    void *h = method_handle(cl, method);
    grpc_call *call;
    if (h) {
        call = grpc_channel_create_registered_call(cl->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                                   h, deadline, NULL);
    } else {
        grpc_slice m = grpc_slice_from_copied_string(method);
        call = grpc_channel_create_call(cl->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq, m, NULL,
                                        deadline, NULL);
        grpc_slice_unref(m);
    }

    grpc_metadata send_md[8];
    size_t n_md = 0;
    for (size_t i = 0; md && md[i] && md[i + 1] && n_md < 8; i += 2, n_md++) {
        send_md[n_md].key = grpc_slice_from_copied_string(md[i]);
        send_md[n_md].value = grpc_slice_from_copied_string(md[i + 1]);
    }
    grpc_metadata_array recv_initial, recv_trailing;
    grpc_metadata_array_init(&recv_initial);
    grpc_metadata_array_init(&recv_trailing);
    grpc_byte_buffer *resp_bb = NULL;
    grpc_status_code code = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();

    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = n_md;
    ops[0].data.send_initial_metadata.metadata = n_md ? send_md : NULL;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = req_bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &recv_initial;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &resp_bb;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &recv_trailing;
    ops[5].data.recv_status_on_client.status = &code;
    ops[5].data.recv_status_on_client.status_details = &details;
    int tag;
    grpc_call_error e = grpc_call_start_batch(call, ops, 6, &tag, NULL);
    if (e == GRPC_CALL_OK) {
        grpc_completion_queue_pluck(cq, &tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    } else {
        code = GRPC_STATUS_INTERNAL;
    }

    if (code == GRPC_STATUS_OK) {
        ProtobufCMessage *m = ld_pb_unpack_bb(resp_desc, resp_bb, arena, st);
        if (!m) {
            ld_status_prefix(st, "bad response from %s%s", cl->target, method);
            code = GRPC_STATUS_INTERNAL;
            st->code = code;
        } else {
            *resp = m;
        }
    } else {
        char *msg = grpc_slice_to_c_string(details);
        ld_status_set(st, code, NULL, "%s", msg && *msg ? msg : ld_status_code_name(code));
        gpr_free(msg);
    }

    if (resp_bb)
        grpc_byte_buffer_destroy(resp_bb);
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&recv_initial);
    grpc_metadata_array_destroy(&recv_trailing);
    for (size_t i = 0; i < n_md; i++) {
        grpc_slice_unref(send_md[i].key);
        grpc_slice_unref(send_md[i].value);
    }
    grpc_call_unref(call);
    grpc_completion_queue_shutdown(cq); /* its one event was plucked above */
    grpc_completion_queue_destroy(cq);
    return code;
}

int ld_client_unary(ld_client *cl, const char *method, const ProtobufCMessage *req,
                    const ProtobufCMessageDescriptor *resp_desc, ld_arena *arena,
                    int64_t timeout_ms, const char *const *metadata, ProtobufCMessage **resp,
                    ld_status *st)
{
    if (timeout_ms <= 0)
        timeout_ms = cl->opts.timeout_ms;
    int64_t until = ld_mono_us() + timeout_ms * 1000;
    int64_t backoff = cl->opts.initial_backoff_ms * 1000;
    grpc_byte_buffer *req_bb = ld_pb_pack_bb(req);
    grpc_status_code code = GRPC_STATUS_UNKNOWN;
    for (int i = 0; i < cl->opts.max_attempts; i++) {
        ld_status_clear(st);
        code = attempt(cl, method, req_bb, resp_desc, arena, until, metadata, resp, st);
        if (code != GRPC_STATUS_UNAVAILABLE || i + 1 == cl->opts.max_attempts)
            break;
        /* full jitter: sleep a random time in [backoff/2, backoff] */
        unsigned r = (unsigned)ld_mono_us() ^ (unsigned)(uintptr_t)&r;
        r = r * 1103515245u + 12345u;
        int64_t sleep_us = backoff / 2 + (int64_t)(r % (unsigned)(backoff / 2 + 1));
        if (ld_mono_us() + sleep_us >= until)
            break;
        struct timespec ts = {sleep_us / 1000000, (sleep_us % 1000000) * 1000};
        nanosleep(&ts, NULL);
        backoff *= 2;
        if (backoff > cl->opts.max_backoff_ms * 1000)
            backoff = cl->opts.max_backoff_ms * 1000;
    }
    grpc_byte_buffer_destroy(req_bb);
    return code == GRPC_STATUS_OK ? 0 : -1;
}
