#include "of_flight.h"

#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/slice.h>

#include "arrow/flight/protocol/Flight.pb-c.h"
#include "ld_buf.h"
#include "ld_log.h"
#include "ld_pb.h"
#include "of_api.h"
#include "of_uploads.h"
#include "ot_ipc.h"

/* rows per record batch (and per gathered chunk) */
#define BATCH_ROWS 65536
#define FLIGHT     "/arrow.flight.protocol.FlightService/"
/* Feast's Flight client finds its error JSON after "Flight error: " (what
 * pyarrow's server puts before a raised FlightError's message). */
#define FLIGHT_ERROR "Flight error: "

struct of_flight {
    of_api *api;
    of_uploads *uploads;
    int64_t max_upload_bytes;
    int64_t batch_rows;
};

typedef Arrow__Flight__Protocol__FlightDescriptor Descriptor;

/* An upload's key: the descriptor's serialized bytes (type, cmd, path). */
static uint8_t *descriptor_key(const Descriptor *d, ld_arena *a, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(&d->base);
    uint8_t *k = ld_arena_alloc(a, *len + 1);
    if (k)
        protobuf_c_message_pack(&d->base, k);
    return k;
}

/* Encapsulated IPC Schema message (continuation, length, flatbuffer), as
 * FlightInfo.schema and SchemaResult.schema carry it. */
static void encapsulated_schema(const ot_table *t, ld_buf *out)
{
    ld_buf h = LD_BUF_INIT;
    ot_ipc_write_schema(t, &h);
    ot_ipc_frame(out, (const uint8_t *)h.data, h.len, NULL, 0);
    ld_buf_free(&h);
}

/* ------------------------------------------------------------ DoPut */

typedef struct put_state {
    of_flight *f;
    ot_ipc_reader *reader;
    Descriptor *desc; /* call arena */
    int64_t messages;
} put_state;

static void put_state_free(put_state *p)
{
    ot_ipc_reader_free(p->reader);
    p->reader = NULL;
}

static void put_run_write(ld_call *c)
{
    put_state *p = ld_call_user(c);
    ld_status st = LD_STATUS_INIT;
    ot_table *t = ot_ipc_reader_finish(p->reader, &st);
    put_state_free(p);
    if (!t) {
        ld_call_fail(c, &st);
        return;
    }
    ot_table *result = NULL;
    int rc = of_api_run(p->f->api, (const char *)p->desc->cmd.data, p->desc->cmd.len, t, &result,
                        &st);
    ot_table_free(t);
    ot_table_free(result);
    if (rc != 0)
        ld_call_fail(c, &st);
    else
        ld_call_reply(c, NULL);
}

static void put_finish(ld_call *c)
{
    put_state *p = ld_call_user(c);
    ld_status st = LD_STATUS_INIT;
    if (!p->desc) {
        put_state_free(p);
        ld_call_failf(c, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                      "DoPut needs a FlightDescriptor in its first message");
        return;
    }
    of_api_kind kind;
    if (of_api_classify((const char *)p->desc->cmd.data, p->desc->cmd.len, &kind, &st) != 0) {
        put_state_free(p);
        ld_call_fail(c, &st);
        return;
    }
    if (kind == OF_API_WRITE) {
        if (ld_call_offload(c, put_run_write) != 0) {
            put_state_free(p);
            ld_call_failf(c, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "offline server is busy");
        }
        return;
    }
    ot_table *t = ot_ipc_reader_finish(p->reader, &st);
    put_state_free(p);
    if (!t) {
        ld_call_fail(c, &st);
        return;
    }
    size_t klen;
    uint8_t *key = descriptor_key(p->desc, ld_call_arena(c), &klen);
    if (!key || of_uploads_put(p->f->uploads, key, klen, (const char *)p->desc->cmd.data,
                               p->desc->cmd.len, t, of_table_bytes(t), &st) != 0) {
        if (!key) {
            ot_table_free(t);
            ld_status_set(&st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        }
        ld_call_fail(c, &st);
        return;
    }
    ld_call_reply(c, NULL);
}

static void put_recv(ld_call *c, grpc_byte_buffer *bb)
{
    put_state *p = ld_call_user(c);
    if (!bb) {
        if (ld_call_cancelled(c)) {
            put_state_free(p);
            ld_call_failf(c, GRPC_STATUS_CANCELLED, NULL, "DoPut cancelled");
            return;
        }
        put_finish(c);
        return;
    }
    /* each message in a scratch arena: the reader copies what it keeps */
    ld_arena scratch;
    ld_arena_init(&scratch, NULL, 0, 0);
    ld_status st = LD_STATUS_INIT;
    Arrow__Flight__Protocol__FlightData *fd =
            (Arrow__Flight__Protocol__FlightData *)ld_pb_unpack_bb(
                    &arrow__flight__protocol__flight_data__descriptor, bb, &scratch, &st);
    grpc_byte_buffer_destroy(bb);
    int rc = fd ? 0 : -1;
    if (fd && fd->flight_descriptor && !p->desc) {
        size_t n = protobuf_c_message_get_packed_size(&fd->flight_descriptor->base);
        uint8_t *tmp = malloc(n + 1);
        if (tmp) {
            protobuf_c_message_pack(&fd->flight_descriptor->base, tmp);
            p->desc = (Descriptor *)protobuf_c_message_unpack(
                    &arrow__flight__protocol__flight_descriptor__descriptor,
                    ld_arena_pbc(ld_call_arena(c)), n, tmp);
            free(tmp);
        }
        if (!p->desc)
            rc = ld_status_set(&st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
    }
    if (rc == 0 && fd->data_header.len)
        rc = ot_ipc_reader_feed(p->reader, fd->data_header.data, fd->data_header.len,
                                fd->data_body.data, fd->data_body.len, &st);
    ld_arena_destroy(&scratch);
    p->messages++;
    if (rc != 0) {
        put_state_free(p);
        ld_call_fail(c, &st);
        return;
    }
    if (ld_call_recv(c, put_recv) != 0) {
        put_state_free(p);
        ld_call_failf(c, GRPC_STATUS_INTERNAL, NULL, "receive failed");
    }
}

static void h_do_put(ld_call *c, const ProtobufCMessage *msg)
{
    put_state *p = ld_arena_calloc(ld_call_arena(c), 1, sizeof *p);
    if (p) {
        p->f = ld_call_ctx(c);
        p->reader = ot_ipc_reader_new();
    }
    if (!p || !p->reader) {
        ld_call_failf(c, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        return;
    }
    ot_ipc_reader_set_max_bytes(p->reader, p->f->max_upload_bytes);
    ld_call_set_user(c, p);
    if (ld_call_recv(c, put_recv) != 0) {
        put_state_free(p);
        ld_call_failf(c, GRPC_STATUS_INTERNAL, NULL, "receive failed");
    }
}

/* ------------------------------------------------------------ GetFlightInfo */

static void h_get_flight_info(ld_call *c, const ProtobufCMessage *msg)
{
    of_flight *f = ld_call_ctx(c);
    const Descriptor *d = (const void *)msg;
    size_t klen;
    uint8_t *key = descriptor_key(d, ld_call_arena(c), &klen);
    if (!key || !of_uploads_has(f->uploads, key, klen)) {
        ld_call_failf(c, GRPC_STATUS_NOT_FOUND, NULL, "Flight not found.");
        return;
    }
    ot_table empty = {0};
    ld_buf schema = LD_BUF_INIT;
    encapsulated_schema(&empty, &schema);
    Arrow__Flight__Protocol__Ticket ticket = ARROW__FLIGHT__PROTOCOL__TICKET__INIT;
    ticket.ticket.data = key; /* the ticket is the descriptor's key */
    ticket.ticket.len = klen;
    Arrow__Flight__Protocol__FlightEndpoint ep = ARROW__FLIGHT__PROTOCOL__FLIGHT_ENDPOINT__INIT;
    ep.ticket = &ticket;
    Arrow__Flight__Protocol__FlightEndpoint *eps[1] = {&ep};
    Arrow__Flight__Protocol__FlightInfo info = ARROW__FLIGHT__PROTOCOL__FLIGHT_INFO__INIT;
    info.schema.data = (uint8_t *)schema.data;
    info.schema.len = schema.len;
    info.flight_descriptor = (Descriptor *)d;
    info.n_endpoint = 1;
    info.endpoint = eps;
    info.total_records = -1;
    info.total_bytes = -1;
    ld_call_reply(c, &info.base);
    ld_buf_free(&schema);
}

/* ------------------------------------------------------------ DoGet
 *
 * The result is produced on the blocking pool and sent from the
 * completion-queue thread, overlapped: a producer job takes the result's
 * next chunk (of_result_next: over file sources the output rows are gathered
 * from the join's matches a chunk at a time), encodes it as one RecordBatch
 * message and queues it; each completed send starts the next queued one.
 * At most QUEUE_MAX messages wait besides the one being sent: a producer
 * that finds the queue full stops, and the send that makes room starts it
 * again, so a slow client holds no pool thread and at most a few batches
 * in memory (gRPC's flow control decides when a send completes). A client
 * that cancels makes the next send fail or the producer stop; whichever of
 * the two is last frees everything and ends the call. The first message
 * (the Schema) carries {"total_records":N} in app_metadata when the
 * result's row count is known before it is read. */

#define QUEUE_MAX 3

/* Record batches go out without copying the chunk: each message is a list
 * of gRPC slices pointing into the chunk's table (ot_ipc_write_batch_spans),
 * and every such slice holds a reference to the table, so it lives until
 * gRPC has written the last of them. */
typedef struct get_hold {
    atomic_int refs;
    ot_table *t;
} get_hold;

static void get_hold_unref(void *p)
{
    get_hold *h = p;
    if (atomic_fetch_sub_explicit(&h->refs, 1, memory_order_acq_rel) == 1) {
        /* no malloc_trim here: the next chunk would fault its pages back in;
         * get_end trims once, when the call is over */
        ot_table_free(h->t);
        free(h);
    }
}

typedef struct get_state {
    of_flight *f;
    ProtobufCBinaryData ticket; /* in the call arena */
    of_upload *upload;          /* the entity table the result reads, kept to the end */
    of_result *res;
    /* the producer's (one producer job at a time) */
    get_hold *hold; /* the chunk being cut into batches */
    int64_t cur_row;
    int schema_done;
    ld_buf header;
    ot_ipc_body spans;
    /* shared, under mu */
    pthread_mutex_t mu;
    grpc_byte_buffer *queue[QUEUE_MAX];
    size_t qhead, qn;
    int sending, producing, eof, abort, ended;
    ld_status err; /* abort with a failure (code != OK); else cancelled */
    /* cancels the command's PostgreSQL statements when the call goes away:
     * the slot's reference goes to get_cancelled (which fires it) or to the
     * end of the call, whichever takes it first; get_run holds its own
     * while it runs the command (the result keeps another) */
    _Atomic(of_pg_cancel *) cancel;
    of_pg_cancel *run_cancel;
} get_state;

static void get_cancel_release(get_state *g)
{
    of_pg_cancel_unref(atomic_exchange(&g->cancel, NULL));
    of_pg_cancel_unref(g->run_cancel);
    g->run_cancel = NULL;
}

/* Completion-queue thread: the client went away or the deadline passed. A
 * producer blocked on PostgreSQL returns once the statement is cancelled. */
static void get_cancelled(ld_call *c)
{
    get_state *g = ld_call_user(c);
    of_pg_cancel *k = atomic_exchange(&g->cancel, NULL);
    of_pg_cancel_fire(k);
    of_pg_cancel_unref(k);
}

/* FlightData{data_header = header, data_body = the spans} as slices: one
 * for the protobuf framing and the header, then one per span (table memory,
 * shared through hold, or a piece of the batch's own bytes). */
static grpc_byte_buffer *batch_bb(const ld_buf *header, ot_ipc_body *b, get_hold *hold)
{
    size_t n = 1 + b->n;
    grpc_slice *sl = malloc(n * sizeof *sl);
    if (!sl)
        return NULL;
    uint8_t pre[16], post[16];
    size_t npre = 0, npost = 0;
    pre[npre++] = 0x12; /* field 2 (data_header), length-delimited */
    npre += ld_pb_put_varint(pre + npre, header->len);
    post[npost++] = 0xc2; /* field 1000 (data_body), length-delimited */
    post[npost++] = 0x3e;
    npost += ld_pb_put_varint(post + npost, b->len);
    sl[0] = grpc_slice_malloc(npre + header->len + npost);
    uint8_t *w = GRPC_SLICE_START_PTR(sl[0]);
    memcpy(w, pre, npre);
    memcpy(w + npre, header->data, header->len);
    memcpy(w + npre + header->len, post, npost);
    grpc_slice own = grpc_empty_slice();
    if (b->own.len) {
        size_t olen;
        void *od = ld_buf_steal(&b->own, &olen);
        own = grpc_slice_new(od, olen, free);
    }
    for (size_t i = 0; i < b->n; i++) {
        const ot_ipc_span *s = &b->spans[i];
        if (s->p) {
            atomic_fetch_add_explicit(&hold->refs, 1, memory_order_relaxed);
            sl[1 + i] = grpc_slice_new_with_user_data((void *)s->p, s->len, get_hold_unref, hold);
        } else {
            sl[1 + i] = grpc_slice_sub(own, s->off, s->off + s->len);
        }
    }
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(sl, n);
    for (size_t i = 0; i < n; i++)
        grpc_slice_unref(sl[i]);
    grpc_slice_unref(own);
    free(sl);
    return bb;
}

/* The Schema message of chunk t, with the row count when known. */
static grpc_byte_buffer *schema_bb(get_state *g, const ot_table *t)
{
    ld_buf_reset(&g->header);
    if (ot_ipc_write_schema(t, &g->header) != 0)
        return NULL;
    Arrow__Flight__Protocol__FlightData fd = ARROW__FLIGHT__PROTOCOL__FLIGHT_DATA__INIT;
    fd.data_header.data = (uint8_t *)g->header.data;
    fd.data_header.len = g->header.len;
    char meta[64];
    int64_t total = of_result_total_rows(g->res);
    if (total >= 0) {
        int n = snprintf(meta, sizeof meta, "{\"total_records\":%lld}", (long long)total);
        fd.app_metadata.data = (uint8_t *)meta;
        fd.app_metadata.len = (size_t)n;
    }
    return ld_pb_pack_bb(&fd.base);
}

static void get_drop_chunk(get_state *g)
{
    if (g->hold)
        get_hold_unref(g->hold);
    g->hold = NULL;
}

/* Producer: the next message (*bb), or *eof. */
static int get_produce_one(get_state *g, grpc_byte_buffer **bb, int *eof, ld_status *st)
{
    *bb = NULL;
    *eof = 0;
    while (!g->hold || g->cur_row >= g->hold->t->n_rows) {
        get_drop_chunk(g);
        ot_table *chunk = NULL;
        if (of_result_next(g->res, g->f->batch_rows, &chunk, st) != 0)
            return -1;
        if (!chunk) {
            *eof = 1;
            return 0;
        }
        if (!(g->hold = malloc(sizeof *g->hold))) {
            ot_table_free(chunk);
            return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        }
        atomic_init(&g->hold->refs, 1);
        g->hold->t = chunk;
        g->cur_row = 0;
        if (!g->schema_done) {
            g->schema_done = 1;
            if (!(*bb = schema_bb(g, chunk)))
                return ld_status_set(st, GRPC_STATUS_INTERNAL, NULL,
                                     "the result has a column of a type Arrow IPC cannot carry");
            return 0;
        }
    }
    const ot_table *t = g->hold->t;
    int64_t n = t->n_rows - g->cur_row;
    if (n > g->f->batch_rows)
        n = g->f->batch_rows;
    if (ot_ipc_write_batch_spans(t, g->cur_row, n, &g->header, &g->spans, st) != 0)
        return -1;
    if (!(*bb = batch_bb(&g->header, &g->spans, g->hold)))
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
    g->cur_row += n;
    return 0;
}

static void get_sent(ld_call *c, int ok);
static void get_produce(ld_call *c);

/* Under mu: send the oldest queued message. */
static void get_send_locked(ld_call *c, get_state *g)
{
    grpc_byte_buffer *bb = g->queue[g->qhead];
    g->qhead = (g->qhead + 1) % QUEUE_MAX;
    g->qn--;
    g->sending = 1;
    if (ld_call_send_bb(c, bb, get_sent) != 0) { /* takes bb either way */
        g->sending = 0;
        g->abort = 1;
        ld_status_set(&g->err, GRPC_STATUS_INTERNAL, NULL, "send failed");
    }
}

/* Under mu: whether the call is over now (nothing in flight and aborted or
 * everything sent); the caller then runs get_end after unlocking. */
static int get_settle_locked(get_state *g)
{
    if (g->ended || g->sending || g->producing)
        return 0;
    if (!g->abort && !(g->eof && g->qn == 0))
        return 0;
    g->ended = 1;
    return 1;
}

static void get_end(ld_call *c, get_state *g)
{
    while (g->qn) {
        grpc_byte_buffer_destroy(g->queue[g->qhead]);
        g->qhead = (g->qhead + 1) % QUEUE_MAX;
        g->qn--;
    }
    get_drop_chunk(g);
    of_result_free(g->res);
    g->res = NULL;
    of_upload_free(g->upload);
    g->upload = NULL;
    ld_buf_free(&g->header);
    ot_ipc_body_free(&g->spans);
    get_cancel_release(g);
    pthread_mutex_destroy(&g->mu);
    malloc_trim(0); /* the sources and the join state are gone: give the memory back */
    if (!g->abort)
        ld_call_reply(c, NULL);
    else if (g->err.code != GRPC_STATUS_OK)
        ld_call_fail(c, &g->err);
    else
        ld_call_failf(c, GRPC_STATUS_CANCELLED, NULL, "DoGet cancelled");
}

/* Completion-queue thread: a message went out (or the call is gone). */
static void get_sent(ld_call *c, int ok)
{
    get_state *g = ld_call_user(c);
    pthread_mutex_lock(&g->mu);
    g->sending = 0;
    if (!ok)
        g->abort = 1;
    if (!g->abort && g->qn)
        get_send_locked(c, g);
    if (!g->abort && !g->producing && !g->eof && g->qn < QUEUE_MAX) {
        g->producing = 1;
        if (ld_call_offload(c, get_produce) != 0) {
            g->producing = 0;
            g->abort = 1;
            ld_status_set(&g->err, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "offline server is busy");
        }
    }
    int end = get_settle_locked(g);
    pthread_mutex_unlock(&g->mu);
    if (end)
        get_end(c, g);
}

/* Pool: produce messages until the queue is full, the result ends, or the
 * call is cancelled. */
static void get_produce(ld_call *c)
{
    get_state *g = ld_call_user(c);
    for (;;) {
        pthread_mutex_lock(&g->mu);
        if (ld_call_cancelled(c))
            g->abort = 1;
        if (g->abort || g->qn >= QUEUE_MAX) {
            g->producing = 0;
            int end = get_settle_locked(g);
            pthread_mutex_unlock(&g->mu);
            if (end)
                get_end(c, g);
            return;
        }
        pthread_mutex_unlock(&g->mu);

        grpc_byte_buffer *bb = NULL;
        int eof = 0;
        ld_status st = LD_STATUS_INIT;
        int rc = get_produce_one(g, &bb, &eof, &st);

        pthread_mutex_lock(&g->mu);
        if (rc != 0) {
            g->abort = 1;
            g->err = st;
        } else if (eof) {
            g->eof = 1;
        } else {
            g->queue[(g->qhead + g->qn) % QUEUE_MAX] = bb;
            g->qn++;
        }
        if (!g->abort && !g->sending && g->qn)
            get_send_locked(c, g);
        if (g->abort || g->eof) {
            g->producing = 0;
            int end = get_settle_locked(g);
            pthread_mutex_unlock(&g->mu);
            if (end)
                get_end(c, g);
            return;
        }
        pthread_mutex_unlock(&g->mu);
    }
}

/* Pool: run the command, then produce. */
static void get_run(ld_call *c)
{
    get_state *g = ld_call_user(c);
    ld_status st = LD_STATUS_INIT;
    of_upload *e = of_uploads_take(g->f->uploads, g->ticket.data, g->ticket.len);
    if (!e) {
        get_cancel_release(g);
        ld_call_failf(c, GRPC_STATUS_NOT_FOUND, NULL, "unknown ticket: no upload is waiting");
        return;
    }
    int rc =
            of_api_run_stream(g->f->api, e->cmd, e->cmd_len, e->table, g->run_cancel, &g->res, &st);
    of_pg_cancel_unref(g->run_cancel); /* the result holds its own */
    g->run_cancel = NULL;
    if (rc != 0) {
        of_uploads_restore(g->f->uploads, e); /* the client may retry */
        get_cancel_release(g);
        ld_call_fail(c, &st);
        return;
    }
    g->upload = e;
    pthread_mutex_init(&g->mu, NULL);
    g->producing = 1;
    get_produce(c);
}

static void h_do_get(ld_call *c, const ProtobufCMessage *msg)
{
    const Arrow__Flight__Protocol__Ticket *t = (const void *)msg;
    get_state *g = ld_arena_calloc(ld_call_arena(c), 1, sizeof *g);
    if (!g) {
        ld_call_failf(c, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        return;
    }
    g->f = ld_call_ctx(c);
    g->ticket = t->ticket; /* the request lives in the call arena */
    /* NULL (out of memory): the PostgreSQL statements are not cancellable */
    of_pg_cancel *k = of_pg_cancel_new();
    atomic_init(&g->cancel, k);
    g->run_cancel = of_pg_cancel_ref(k);
    ld_call_set_user(c, g);
    ld_call_on_cancel(c, get_cancelled);
    if (ld_call_offload(c, get_run) != 0) {
        get_cancel_release(g);
        ld_call_failf(c, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "offline server is busy");
    }
}

/* ------------------------------------------------------------ the rest */

static void h_get_schema(ld_call *c, const ProtobufCMessage *msg)
{
    of_flight *f = ld_call_ctx(c);
    const Descriptor *d = (const void *)msg;
    size_t klen;
    uint8_t *key = descriptor_key(d, ld_call_arena(c), &klen);
    if (!key || !of_uploads_has(f->uploads, key, klen)) {
        ld_call_failf(c, GRPC_STATUS_NOT_FOUND, NULL, "Flight not found.");
        return;
    }
    ot_table empty = {0};
    ld_buf schema = LD_BUF_INIT;
    encapsulated_schema(&empty, &schema);
    Arrow__Flight__Protocol__SchemaResult r = ARROW__FLIGHT__PROTOCOL__SCHEMA_RESULT__INIT;
    r.schema.data = (uint8_t *)schema.data;
    r.schema.len = schema.len;
    ld_call_reply(c, &r.base);
    ld_buf_free(&schema);
}

typedef struct list_state {
    uint8_t **keys;
    size_t *lens;
    size_t n, next;
    ld_buf schema;
} list_state;

static void list_state_free(list_state *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->keys[i]);
    free(l->keys);
    free(l->lens);
    ld_buf_free(&l->schema);
    l->keys = NULL;
    l->lens = NULL;
    l->n = 0;
}

static void list_next(ld_call *c, int ok)
{
    list_state *l = ld_call_user(c);
    if (!ok || l->next >= l->n) {
        list_state_free(l);
        if (ok)
            ld_call_reply(c, NULL);
        else
            ld_call_failf(c, GRPC_STATUS_CANCELLED, NULL, "ListFlights cancelled");
        return;
    }
    size_t i = l->next++;
    Descriptor *d = (Descriptor *)protobuf_c_message_unpack(
            &arrow__flight__protocol__flight_descriptor__descriptor, NULL, l->lens[i], l->keys[i]);
    Arrow__Flight__Protocol__FlightInfo info = ARROW__FLIGHT__PROTOCOL__FLIGHT_INFO__INIT;
    info.schema.data = (uint8_t *)l->schema.data;
    info.schema.len = l->schema.len;
    info.flight_descriptor = d;
    info.total_records = -1;
    info.total_bytes = -1;
    int rc = ld_call_send(c, &info.base, list_next);
    if (d)
        protobuf_c_message_free_unpacked(&d->base, NULL);
    if (rc != 0) {
        list_state_free(l);
        ld_call_failf(c, GRPC_STATUS_INTERNAL, NULL, "send failed");
    }
}

static void h_list_flights(ld_call *c, const ProtobufCMessage *msg)
{
    of_flight *f = ld_call_ctx(c);
    list_state *l = ld_arena_calloc(ld_call_arena(c), 1, sizeof *l);
    if (!l) {
        ld_call_failf(c, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        return;
    }
    l->n = of_uploads_keys(f->uploads, &l->keys, &l->lens);
    ot_table empty = {0};
    encapsulated_schema(&empty, &l->schema);
    ld_call_set_user(c, l);
    list_next(c, 1);
}

static const struct {
    const char *type, *description;
} actions[] = {
        {"offline_write_batch", "Append rows to a feature view's batch source (via DoPut)"},
        {"write_logged_features", "Write a feature service's logged features (via DoPut)"},
        {"persist", "Persist a retrieval as a saved dataset (via DoPut)"},
};

static void actions_next(ld_call *c, int ok)
{
    size_t *next = ld_call_user(c);
    if (!ok || *next >= sizeof actions / sizeof actions[0]) {
        if (ok)
            ld_call_reply(c, NULL);
        else
            ld_call_failf(c, GRPC_STATUS_CANCELLED, NULL, "ListActions cancelled");
        return;
    }
    Arrow__Flight__Protocol__ActionType a = ARROW__FLIGHT__PROTOCOL__ACTION_TYPE__INIT;
    a.type = (char *)actions[*next].type;
    a.description = (char *)actions[*next].description;
    (*next)++;
    if (ld_call_send(c, &a.base, actions_next) != 0)
        ld_call_failf(c, GRPC_STATUS_INTERNAL, NULL, "send failed");
}

static void h_list_actions(ld_call *c, const ProtobufCMessage *msg)
{
    size_t *next = ld_arena_calloc(ld_call_arena(c), 1, sizeof *next);
    if (!next) {
        ld_call_failf(c, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        return;
    }
    ld_call_set_user(c, next);
    actions_next(c, 1);
}

static void h_do_action(ld_call *c, const ProtobufCMessage *msg)
{
    const Arrow__Flight__Protocol__Action *a = (const void *)msg;
    for (size_t i = 0; i < sizeof actions / sizeof actions[0]; i++)
        if (strcmp(a->type, actions[i].type) == 0) {
            ld_call_failf(c, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                          "action %s takes a table: send it with DoPut and a command whose "
                          "api is %s",
                          a->type, a->type);
            return;
        }
    ld_call_failf(c, GRPC_STATUS_INVALID_ARGUMENT, NULL, "unknown action '%s' (see ListActions)",
                  a->type);
}

/* Handshake: accept (authentication comes with the auth work), echo the
 * client's protocol version and payload. */
static void handshake_recv(ld_call *c, grpc_byte_buffer *bb);

static void handshake_sent(ld_call *c, int ok)
{
    if (!ok) {
        ld_call_failf(c, GRPC_STATUS_CANCELLED, NULL, "Handshake cancelled");
        return;
    }
    if (ld_call_recv(c, handshake_recv) != 0)
        ld_call_failf(c, GRPC_STATUS_INTERNAL, NULL, "receive failed");
}

static void handshake_recv(ld_call *c, grpc_byte_buffer *bb)
{
    if (!bb) {
        ld_call_reply(c, NULL);
        return;
    }
    ld_status st = LD_STATUS_INIT;
    Arrow__Flight__Protocol__HandshakeRequest *r =
            (Arrow__Flight__Protocol__HandshakeRequest *)ld_pb_unpack_bb(
                    &arrow__flight__protocol__handshake_request__descriptor, bb, ld_call_arena(c),
                    &st);
    grpc_byte_buffer_destroy(bb);
    if (!r) {
        ld_call_fail(c, &st);
        return;
    }
    Arrow__Flight__Protocol__HandshakeResponse resp =
            ARROW__FLIGHT__PROTOCOL__HANDSHAKE_RESPONSE__INIT;
    resp.protocol_version = r->protocol_version;
    resp.payload = r->payload;
    if (ld_call_send(c, &resp.base, handshake_sent) != 0)
        ld_call_failf(c, GRPC_STATUS_INTERNAL, NULL, "send failed");
}

static void h_handshake(ld_call *c, const ProtobufCMessage *msg)
{
    if (ld_call_recv(c, handshake_recv) != 0)
        ld_call_failf(c, GRPC_STATUS_INTERNAL, NULL, "receive failed");
}

static void h_unimplemented(ld_call *c, const ProtobufCMessage *msg)
{
    ld_call_failf(c, GRPC_STATUS_UNIMPLEMENTED, NULL,
                  "%s is not implemented by larder-offline (Feast's remote-offline protocol "
                  "uses DoPut, GetFlightInfo and DoGet)",
                  ld_call_method(c)->name);
}

#define MSG(n) &arrow__flight__protocol__##n##__descriptor

int of_flight_register(ld_server *srv, of_flight *f, ld_status *st)
{
    static const ld_method methods[] = {
            {.name = FLIGHT "Handshake",
             .kind = LD_RPC_BIDI,
             .request = MSG(handshake_request),
             .handler = h_handshake,
             .status_prefix = FLIGHT_ERROR},
            {.name = FLIGHT "ListFlights",
             .kind = LD_RPC_SERVER_STREAM,
             .request = MSG(criteria),
             .handler = h_list_flights,
             .status_prefix = FLIGHT_ERROR},
            {.name = FLIGHT "GetFlightInfo",
             .kind = LD_RPC_UNARY,
             .request = MSG(flight_descriptor),
             .handler = h_get_flight_info,
             .status_prefix = FLIGHT_ERROR},
            {.name = FLIGHT "PollFlightInfo",
             .kind = LD_RPC_UNARY,
             .request = MSG(flight_descriptor),
             .handler = h_unimplemented,
             .status_prefix = FLIGHT_ERROR},
            {.name = FLIGHT "GetSchema",
             .kind = LD_RPC_UNARY,
             .request = MSG(flight_descriptor),
             .handler = h_get_schema,
             .status_prefix = FLIGHT_ERROR},
            {.name = FLIGHT "DoGet",
             .kind = LD_RPC_SERVER_STREAM,
             .request = MSG(ticket),
             .handler = h_do_get,
             .status_prefix = FLIGHT_ERROR},
            {.name = FLIGHT "DoPut",
             .kind = LD_RPC_BIDI,
             .request = MSG(flight_data),
             .handler = h_do_put,
             .status_prefix = FLIGHT_ERROR},
            {.name = FLIGHT "DoExchange",
             .kind = LD_RPC_BIDI,
             .request = MSG(flight_data),
             .handler = h_unimplemented,
             .status_prefix = FLIGHT_ERROR},
            {.name = FLIGHT "DoAction",
             .kind = LD_RPC_SERVER_STREAM,
             .request = MSG(action),
             .handler = h_do_action,
             .status_prefix = FLIGHT_ERROR},
            {.name = FLIGHT "ListActions",
             .kind = LD_RPC_SERVER_STREAM,
             .request = MSG(empty),
             .handler = h_list_actions,
             .status_prefix = FLIGHT_ERROR},
    };
    return ld_server_add_methods(srv, methods, sizeof methods / sizeof methods[0], f, st);
}

of_flight *of_flight_new(of_api *api, int64_t upload_ttl_us, size_t max_upload_bytes, ld_status *st)
{
    of_flight *f = calloc(1, sizeof *f);
    if (f)
        f->uploads = of_uploads_new(upload_ttl_us, max_upload_bytes);
    if (!f || !f->uploads) {
        free(f);
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        return NULL;
    }
    f->api = api;
    f->max_upload_bytes = (int64_t)max_upload_bytes;
    f->batch_rows = BATCH_ROWS;
    return f;
}

void of_flight_free(of_flight *f)
{
    if (!f)
        return;
    of_uploads_free(f->uploads);
    free(f);
}
