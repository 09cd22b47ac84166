#include "ol_flight_client.h"

#include <stdlib.h>
#include <string.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <jansson.h>

#include "arrow/flight/protocol/Flight.pb-c.h"
#include "ld_arena.h"
#include "ld_buf.h"
#include "ld_pb.h"
#include "ld_tls.h"
#include "ot_ipc.h"

#define SVC "/arrow.flight.protocol.FlightService/"

struct ol_flight_client {
    ol_flight_opts o;
    char *target;
    grpc_channel *ch;
};

typedef Arrow__Flight__Protocol__FlightData FlightData;
typedef Arrow__Flight__Protocol__FlightDescriptor Descriptor;

ol_flight_client *ol_flight_client_new(const ol_flight_opts *o, ld_status *st)
{
    if (!o->target || !*o->target) {
        ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL, "Flight target is empty");
        return NULL;
    }
    ol_flight_client *c = calloc(1, sizeof *c);
    if (!c) {
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        return NULL;
    }
    c->o = *o;
    c->target = strdup(o->target);
    c->o.target = c->target;
    if (c->o.timeout_ms <= 0)
        c->o.timeout_ms = 3600 * 1000;
    if (!c->o.max_message)
        c->o.max_message = (size_t)256 << 20;
    if (c->o.max_decoded <= 0)
        c->o.max_decoded = OT_IPC_DEFAULT_MAX_BYTES;
    grpc_channel_credentials *creds =
            o->tls || o->tls_ca ? ld_tls_channel_credentials(o->tls_ca, NULL, NULL, st)
                                : grpc_insecure_credentials_create();
    if (!creds) {
        free(c->target);
        free(c);
        return NULL;
    }
    grpc_arg args[] = {
            {.type = GRPC_ARG_INTEGER,
             .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
             .value.integer = c->o.max_message > INT32_MAX ? INT32_MAX : (int)c->o.max_message},
            {.type = GRPC_ARG_INTEGER,
             .key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH,
             .value.integer = c->o.max_message > INT32_MAX ? INT32_MAX : (int)c->o.max_message},
    };
    grpc_channel_args cargs = {2, args};
    c->ch = grpc_channel_create(c->target, creds, &cargs);
    grpc_channel_credentials_release(creds);
    if (!c->ch) {
        ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL, "cannot create a channel to %s",
                      c->target);
        free(c->target);
        free(c);
        return NULL;
    }
    return c;
}

void ol_flight_client_free(ol_flight_client *c)
{
    if (!c)
        return;
    grpc_channel_destroy(c->ch);
    free(c->target);
    free(c);
}

const char *ol_flight_client_target(const ol_flight_client *c)
{
    return c->target;
}

/* ------------------------------------------------------------ calls */

typedef struct fcall {
    grpc_completion_queue *cq;
    grpc_call *call;
    grpc_metadata_array md_init, md_trail;
    grpc_status_code code;
    grpc_slice details;
    int pending_recv; /* a RECV_MESSAGE is outstanding */
    grpc_op recv_op;  /* its op; its address is the batch's tag */
    grpc_byte_buffer *recv_bb;
    atomic_int *cancel;
    int cancelled;
} fcall;

static void fcall_open(ol_flight_client *c, fcall *f, const char *method)
{
    memset(f, 0, sizeof *f);
    f->cq = grpc_completion_queue_create_for_pluck(NULL);
    f->cancel = c->o.cancel;
    gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                         gpr_time_from_millis(c->o.timeout_ms, GPR_TIMESPAN));
    grpc_slice m = grpc_slice_from_static_string(method);
    f->call = grpc_channel_create_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, f->cq, m, NULL,
                                       deadline, NULL);
    grpc_slice_unref(m);
    grpc_metadata_array_init(&f->md_init);
    grpc_metadata_array_init(&f->md_trail);
    f->details = grpc_empty_slice();
    f->code = GRPC_STATUS_UNKNOWN;
}

/* Wait for the batch tagged tag; the call is cancelled meanwhile when the
 * client's cancel flag is set. */
static grpc_event wait_tag(fcall *f, void *tag)
{
    for (;;) {
        gpr_timespec t =
                gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(100, GPR_TIMESPAN));
        grpc_event ev = grpc_completion_queue_pluck(f->cq, tag, t, NULL);
        if (ev.type != GRPC_QUEUE_TIMEOUT)
            return ev;
        if (f->cancel && atomic_load(f->cancel) && !f->cancelled) {
            f->cancelled = 1;
            grpc_call_cancel(f->call, NULL);
        }
    }
}

/* Run one batch and wait for it. 0 when the batch completed successfully. */
static int run(fcall *f, grpc_op *ops, size_t n)
{
    if (grpc_call_start_batch(f->call, ops, n, ops, NULL) != GRPC_CALL_OK)
        return -1;
    grpc_event ev = wait_tag(f, ops);
    return ev.type == GRPC_OP_COMPLETE && ev.success ? 0 : -1;
}

static int start_recv(fcall *f)
{
    grpc_op *op = &f->recv_op;
    memset(op, 0, sizeof *op);
    op->op = GRPC_OP_RECV_MESSAGE;
    op->data.recv_message.recv_message = &f->recv_bb;
    f->recv_bb = NULL;
    if (grpc_call_start_batch(f->call, op, 1, op, NULL) != GRPC_CALL_OK)
        return -1;
    f->pending_recv = 1;
    return 0;
}

/* Wait for the outstanding RECV_MESSAGE; the message (or NULL at the end). */
static grpc_byte_buffer *finish_recv(fcall *f)
{
    wait_tag(f, &f->recv_op);
    f->pending_recv = 0;
    grpc_byte_buffer *bb = f->recv_bb;
    f->recv_bb = NULL;
    return bb;
}

/* Receive the status; returns 0 for OK, else -1 with st (unless st already
 * holds an error of ours, which wins). */
static int fcall_close(ol_flight_client *c, fcall *f, const char *what, ld_status *st)
{
    if (f->pending_recv) {
        grpc_byte_buffer *bb = finish_recv(f);
        if (bb)
            grpc_byte_buffer_destroy(bb);
    }
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    op.data.recv_status_on_client.trailing_metadata = &f->md_trail;
    op.data.recv_status_on_client.status = &f->code;
    op.data.recv_status_on_client.status_details = &f->details;
    if (run(f, &op, 1) != 0)
        f->code = GRPC_STATUS_INTERNAL;
    int rc = 0;
    if (!ld_status_ok(st)) {
        rc = -1;
    } else if (f->cancelled) {
        rc = ld_status_set(st, GRPC_STATUS_CANCELLED, NULL, "%s on %s cancelled", what, c->target);
    } else if (f->code != GRPC_STATUS_OK) {
        char *msg = grpc_slice_to_c_string(f->details);
        ld_status_set(st, f->code, NULL, "%s", msg && *msg ? msg : ld_status_code_name(f->code));
        gpr_free(msg);
        if (f->code == GRPC_STATUS_UNAVAILABLE)
            ld_status_prefix(st, "%s on %s", what, c->target);
        rc = -1;
    }
    grpc_slice_unref(f->details);
    grpc_metadata_array_destroy(&f->md_init);
    grpc_metadata_array_destroy(&f->md_trail);
    grpc_call_unref(f->call);
    grpc_completion_queue_shutdown(f->cq);
    while (grpc_completion_queue_pluck(f->cq, NULL, gpr_inf_past(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(f->cq);
    return rc;
}

/* Send initial metadata (and optionally one message plus half-close) and
 * receive the initial metadata. */
static int send_first(fcall *f, grpc_byte_buffer *msg, int close)
{
    grpc_op ops[4];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (msg) {
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = msg;
    }
    if (close)
        ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    if (close) {
        ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
        ops[n++].data.recv_initial_metadata.recv_initial_metadata = &f->md_init;
    }
    return run(f, ops, n);
}

static int send_msg(fcall *f, const ProtobufCMessage *m)
{
    grpc_byte_buffer *bb = ld_pb_pack_bb(m);
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_SEND_MESSAGE;
    op.data.send_message.send_message = bb;
    int rc = run(f, &op, 1);
    grpc_byte_buffer_destroy(bb);
    return rc;
}

static void cmd_descriptor(Descriptor *d, const char *cmd)
{
    arrow__flight__protocol__flight_descriptor__init(d);
    d->type = ARROW__FLIGHT__PROTOCOL__FLIGHT_DESCRIPTOR__DESCRIPTOR_TYPE__CMD;
    d->cmd.data = (uint8_t *)cmd;
    d->cmd.len = strlen(cmd);
}

/* ------------------------------------------------------------ DoPut */

static ot_table *mock_table(void)
{
    ot_table *t = ot_table_new(1, 1);
    ot_column *col = &t->cols[0];
    col->name = strdup("key");
    col->type.id = OT_UTF8;
    col->length = 1;
    col->offsets = calloc(2, sizeof *col->offsets);
    col->data = malloc(8);
    if (!col->name || !col->offsets || !col->data) {
        ot_table_free(t);
        return NULL;
    }
    col->offsets[1] = 8;
    memcpy(col->data, "mock_key", 8);
    col->data_len = 8;
    return t;
}

int ol_flight_put(ol_flight_client *c, const char *cmd, const ot_table *t, ld_status *st)
{
    ot_table *mock = NULL;
    if (!t && !(t = mock = mock_table()))
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
    fcall f;
    fcall_open(c, &f, SVC "DoPut");
    ld_buf h = LD_BUF_INIT, body = LD_BUF_INIT;
    Descriptor d;
    cmd_descriptor(&d, cmd);
    FlightData fd = ARROW__FLIGHT__PROTOCOL__FLIGHT_DATA__INIT;
    int failed = 0;
    if (ot_ipc_write_schema(t, &h) != 0) {
        ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL, "table has a column of unknown type");
        failed = 1;
    }
    if (!failed && send_first(&f, NULL, 0) != 0)
        failed = 1;
    if (!failed) {
        fd.flight_descriptor = &d;
        fd.data_header.data = (uint8_t *)h.data;
        fd.data_header.len = h.len;
        failed = send_msg(&f, &fd.base) != 0;
    }
    const int64_t batch = 65536;
    for (int64_t off = 0; !failed && off < t->n_rows; off += batch) {
        int64_t n = t->n_rows - off < batch ? t->n_rows - off : batch;
        if (ot_ipc_write_batch(t, off, n, &h, &body, st) != 0) {
            failed = 1;
            break;
        }
        FlightData b = ARROW__FLIGHT__PROTOCOL__FLIGHT_DATA__INIT;
        b.data_header.data = (uint8_t *)h.data;
        b.data_header.len = h.len;
        b.data_body.data = (uint8_t *)body.data;
        b.data_body.len = body.len;
        failed = send_msg(&f, &b.base) != 0;
    }
    ld_buf_free(&h);
    ld_buf_free(&body);
    ot_table_free(mock);
    if (failed && ld_status_ok(st))
        grpc_call_cancel(f.call, NULL);
    if (!failed || !ld_status_ok(st)) {
        /* half-close, then drain PutResults */
        grpc_op ops[2];
        memset(ops, 0, sizeof ops);
        ops[0].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
        ops[1].op = GRPC_OP_RECV_INITIAL_METADATA;
        ops[1].data.recv_initial_metadata.recv_initial_metadata = &f.md_init;
        if (!failed && run(&f, ops, 2) == 0) {
            for (;;) {
                if (start_recv(&f) != 0)
                    break;
                grpc_byte_buffer *bb = finish_recv(&f);
                if (!bb)
                    break;
                grpc_byte_buffer_destroy(bb);
            }
        }
    }
    return fcall_close(c, &f, "DoPut", st);
}

/* ------------------------------------------------------------ GetFlightInfo */

int ol_flight_info(ol_flight_client *c, const char *cmd, uint8_t **ticket, size_t *ticket_len,
                   int64_t *total_records, ld_status *st)
{
    *ticket = NULL;
    *ticket_len = 0;
    Descriptor d;
    cmd_descriptor(&d, cmd);
    fcall f;
    fcall_open(c, &f, SVC "GetFlightInfo");
    grpc_byte_buffer *req = ld_pb_pack_bb(&d.base);
    int ok = send_first(&f, req, 1) == 0;
    grpc_byte_buffer_destroy(req);
    grpc_byte_buffer *bb = NULL;
    if (ok && start_recv(&f) == 0)
        bb = finish_recv(&f);
    int rc = fcall_close(c, &f, "GetFlightInfo", st);
    if (rc == 0) {
        ld_arena a;
        ld_arena_init(&a, NULL, 0, 0);
        Arrow__Flight__Protocol__FlightInfo *info = (void *)ld_pb_unpack_bb(
                &arrow__flight__protocol__flight_info__descriptor, bb, &a, st);
        if (!info) {
            rc = -1;
        } else if (!info->n_endpoint || !info->endpoint[0]->ticket) {
            rc = ld_status_set(st, GRPC_STATUS_INTERNAL, NULL, "FlightInfo from %s has no ticket",
                               c->target);
        } else {
            const ProtobufCBinaryData *tk = &info->endpoint[0]->ticket->ticket;
            *ticket = malloc(tk->len + 1);
            memcpy(*ticket, tk->data, tk->len);
            *ticket_len = tk->len;
            if (total_records)
                *total_records = info->total_records;
        }
        ld_arena_destroy(&a);
    }
    if (bb)
        grpc_byte_buffer_destroy(bb);
    return rc;
}

/* ------------------------------------------------------------ DoGet */

typedef struct held {
    uint8_t *h;
    size_t hlen;
    uint8_t *b;
    size_t blen;
} held;

/* The Message flatbuffer's header_type (Schema 1, DictionaryBatch 2,
 * RecordBatch 3), bounds-checked; 0 when unreadable. */
static int message_type(const uint8_t *p, size_t n)
{
    if (n < 8)
        return 0;
    uint32_t root;
    memcpy(&root, p, 4);
    if ((size_t)root + 4 > n)
        return 0;
    int32_t soff;
    memcpy(&soff, p + root, 4);
    int64_t vt = (int64_t)root - soff;
    if (vt < 0 || (size_t)vt + 4 > n)
        return 0;
    uint16_t vlen;
    memcpy(&vlen, p + vt, 2);
    if (vlen < 8 || (size_t)vt + vlen > n)
        return 0;
    uint16_t fo;
    memcpy(&fo, p + vt + 6, 2); /* field 1: header_type */
    if (!fo || (size_t)root + fo >= n)
        return 0;
    return p[root + fo];
}

static int is_batch_message(const uint8_t *p, size_t n)
{
    return message_type(p, n) == 3;
}

#define MAX_META_JSON 4096

int ol_flight_parse_total_records(const uint8_t *meta, size_t len, int64_t *n)
{
    if (!meta || !len || len > MAX_META_JSON)
        return -1;
    json_error_t err;
    json_t *doc = json_loadb((const char *)meta, len, JSON_REJECT_DUPLICATES, &err);
    json_t *v = json_is_object(doc) ? json_object_get(doc, "total_records") : NULL;
    int rc = -1;
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *n = (int64_t)json_integer_value(v);
        rc = 0;
    }
    json_decref(doc);
    return rc;
}

int ol_flight_get(ol_flight_client *c, const uint8_t *ticket, size_t ticket_len,
                  const ol_flight_sink *sink, int64_t *rows, ld_status *st)
{
    if (rows)
        *rows = 0;
    Arrow__Flight__Protocol__Ticket t = ARROW__FLIGHT__PROTOCOL__TICKET__INIT;
    t.ticket.data = (uint8_t *)ticket;
    t.ticket.len = ticket_len;
    fcall f;
    fcall_open(c, &f, SVC "DoGet");
    grpc_byte_buffer *req = ld_pb_pack_bb(&t.base);
    int ok = send_first(&f, req, 1) == 0;
    grpc_byte_buffer_destroy(req);
    /* Schema and dictionary messages are kept and fed again in front of each
     * record batch, so each batch decodes into a table of its own. */
    held *pre = NULL;
    size_t n_pre = 0, cap_pre = 0;
    if (ok && start_recv(&f) != 0)
        ok = 0;
    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    int first = 1;
    while (ok && ld_status_ok(st)) {
        grpc_byte_buffer *bb = finish_recv(&f);
        if (!bb)
            break;
        if (start_recv(&f) != 0) /* the next one arrives while we decode */
            ok = 0;
        ld_arena_reset(&a);
        FlightData *fd = (void *)ld_pb_unpack_bb(&arrow__flight__protocol__flight_data__descriptor,
                                                 bb, &a, st);
        grpc_byte_buffer_destroy(bb);
        if (!fd)
            break;
        if (first) {
            int64_t total;
            first = 0;
            if (sink->total && ol_flight_parse_total_records(fd->app_metadata.data,
                                                             fd->app_metadata.len, &total) == 0)
                sink->total(sink->arg, total);
        }
        if (!fd->data_header.len)
            continue;
        const uint8_t *hp = fd->data_header.data;
        size_t hl = fd->data_header.len;
        if (!is_batch_message(hp, hl)) {
            /* schema or dictionary: kept and fed again before each batch */
            if (n_pre == 64) {
                ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL,
                              "DoGet from %s: too many dictionary messages", c->target);
                break;
            }
            if (n_pre == cap_pre) {
                cap_pre = cap_pre ? cap_pre * 2 : 4;
                pre = realloc(pre, cap_pre * sizeof *pre);
            }
            held *k = &pre[n_pre++];
            k->hlen = hl;
            k->h = malloc(hl);
            memcpy(k->h, hp, hl);
            k->blen = fd->data_body.len;
            k->b = malloc(k->blen + 1);
            if (k->blen)
                memcpy(k->b, fd->data_body.data, k->blen);
            continue;
        }
        ot_ipc_reader *r = ot_ipc_reader_new();
        ot_ipc_reader_set_max_bytes(r, c->o.max_decoded);
        int rc = 0;
        for (size_t i = 0; rc == 0 && i < n_pre; i++)
            rc = ot_ipc_reader_feed(r, pre[i].h, pre[i].hlen, pre[i].b, pre[i].blen, st);
        if (rc == 0)
            rc = ot_ipc_reader_feed(r, hp, hl, fd->data_body.data, fd->data_body.len, st);
        ot_table *tb = rc == 0 ? ot_ipc_reader_finish(r, st) : NULL;
        ot_ipc_reader_free(r);
        if (!tb)
            break;
        if (rows)
            *rows += tb->n_rows;
        rc = sink->batch ? sink->batch(sink->arg, tb, st) : 0;
        ot_table_free(tb);
        if (rc != 0)
            break;
    }
    ld_arena_destroy(&a);
    if (!ld_status_ok(st))
        grpc_call_cancel(f.call, NULL);
    for (size_t i = 0; i < n_pre; i++) {
        free(pre[i].h);
        free(pre[i].b);
    }
    free(pre);
    return fcall_close(c, &f, "DoGet", st);
}

int ol_flight_command(ol_flight_client *c, const char *cmd, const ot_table *upload,
                      const ol_flight_sink *sink, int64_t *rows, ld_status *st)
{
    uint8_t *ticket = NULL;
    size_t tlen = 0;
    int64_t total = -1;
    if (rows)
        *rows = 0;
    if (ol_flight_put(c, cmd, upload, st) != 0 ||
        ol_flight_info(c, cmd, &ticket, &tlen, &total, st) != 0)
        return -1;
    if (total > 0 && sink->total) /* 0 is also what a server that leaves it unset sends */
        sink->total(sink->arg, total);
    int rc = ol_flight_get(c, ticket, tlen, sink, rows, st);
    free(ticket);
    return rc;
}
