/* ld-flight-get: one Arrow Flight DoGet, counted but not decoded — the
 * client side of the DoGet throughput figure in bench/offline_bench.mjs.
 *
 *   ld-flight-get --target HOST:PORT --ticket-hex HEX [--repeat N]
 *                 [--window BYTES] [--max-frame BYTES]
 *
 * For each repetition it opens a DoGet stream with the ticket and receives
 * every FlightData message as a gRPC byte buffer, counting messages and
 * bytes without copying or parsing them (gRPC core's receive path is the
 * only cost on this side). Prints one JSON line per call:
 *   {"messages", "bytes", "first_ms" (call start to the first message),
 *    "second_ms" (call start to the second message: a Flight stream's first
 *    record batch, the schema being the first message),
 *    "total_ms", "stream_ms" (first message to the last), "cpu_ms" (this
 *    client's CPU time for the call), "status", "details"}
 * Exit 0 when every call ended with status OK, 1 otherwise, 2 on bad usage.
 * It links only gRPC core, so it can time any Flight server. */
#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* CPU time (user + system) of this process so far, ms. */
static double cpu_ms(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

static int usage(const char *msg)
{
    fprintf(stderr,
            "ld-flight-get: %s\n"
            "usage: ld-flight-get --target HOST:PORT --ticket-hex HEX [--repeat N]\n"
            "                     [--window BYTES] [--max-frame BYTES]\n",
            msg);
    return 2;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* One batch of ops on the call, waited for on cq. */
static int run_ops(grpc_call *call, grpc_completion_queue *cq, grpc_op *ops, size_t n)
{
    static int tag;
    if (grpc_call_start_batch(call, ops, n, &tag, NULL) != GRPC_CALL_OK)
        return -1;
    grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    return ev.type == GRPC_OP_COMPLETE && ev.success ? 0 : -1;
}

static int one_get(grpc_channel *ch, grpc_completion_queue *cq, const uint8_t *req, size_t rlen)
{
    grpc_slice method = grpc_slice_from_static_string("/arrow.flight.protocol.FlightService/DoGet");
    gpr_timespec deadline =
            gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_seconds(600, GPR_TIMESPAN));
    double t0 = now_ms(), t_first = 0, t_second = 0, t_end, c0 = cpu_ms();
    grpc_call *call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, method, NULL,
                                               deadline, NULL);
    grpc_slice body = grpc_slice_from_copied_buffer((const char *)req, rlen);
    grpc_byte_buffer *send = grpc_raw_byte_buffer_create(&body, 1);
    grpc_metadata_array md_init, md_trail;
    grpc_metadata_array_init(&md_init);
    grpc_metadata_array_init(&md_trail);
    grpc_op ops[4];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &md_init;
    int rc = run_ops(call, cq, ops, 4);
    grpc_byte_buffer_destroy(send);
    grpc_slice_unref(body);

    int64_t messages = 0, bytes = 0;
    while (rc == 0) {
        grpc_byte_buffer *bb = NULL;
        grpc_op op;
        memset(&op, 0, sizeof op);
        op.op = GRPC_OP_RECV_MESSAGE;
        op.data.recv_message.recv_message = &bb;
        if (run_ops(call, cq, &op, 1) != 0 || !bb)
            break;
        if (!messages)
            t_first = now_ms();
        else if (messages == 1)
            t_second = now_ms();
        messages++;
        bytes += (int64_t)grpc_byte_buffer_length(bb);
        grpc_byte_buffer_destroy(bb);
    }
    t_end = now_ms();

    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    op.data.recv_status_on_client.trailing_metadata = &md_trail;
    op.data.recv_status_on_client.status = &status;
    op.data.recv_status_on_client.status_details = &details;
    run_ops(call, cq, &op, 1);

    char *d = grpc_slice_to_c_string(details);
    printf("{\"messages\": %lld, \"bytes\": %lld, \"first_ms\": %.3f, \"second_ms\": %.3f, "
           "\"total_ms\": %.3f, \"stream_ms\": %.3f, \"cpu_ms\": %.3f, \"status\": %d, "
           "\"details\": \"",
           (long long)messages, (long long)bytes, messages ? t_first - t0 : 0.0,
           messages > 1 ? t_second - t0 : 0.0, t_end - t0, messages ? t_end - t_first : 0.0,
           cpu_ms() - c0, (int)status);
    for (const char *p = d; *p; p++)
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if ((unsigned char)*p >= 0x20)
            putchar(*p);
    printf("\"}\n");
    fflush(stdout);
    gpr_free(d);
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&md_init);
    grpc_metadata_array_destroy(&md_trail);
    grpc_call_unref(call);
    return status == GRPC_STATUS_OK ? 0 : -1;
}

int main(int argc, char **argv)
{
    const char *target = NULL, *hex = NULL;
    int repeat = 1, window = 0, frame = 0;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            return usage("missing value");
        if (!strcmp(argv[i], "--target"))
            target = argv[++i];
        else if (!strcmp(argv[i], "--ticket-hex"))
            hex = argv[++i];
        else if (!strcmp(argv[i], "--repeat"))
            repeat = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--window"))
            window = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--max-frame"))
            frame = atoi(argv[++i]);
        else
            return usage(argv[i]);
    }
    if (!target || !hex || repeat < 1)
        return usage("--target and --ticket-hex are required");
    size_t hl = strlen(hex), tl = hl / 2;
    if (hl % 2 || tl > (1u << 20))
        return usage("bad --ticket-hex");
    /* Ticket { bytes ticket = 1; } */
    uint8_t *req = malloc(tl + 16);
    size_t n = 0;
    req[n++] = 0x0a;
    for (size_t v = tl;; v >>= 7) {
        req[n++] = (uint8_t)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
        if (v < 0x80)
            break;
    }
    for (size_t i = 0; i < tl; i++) {
        int a = hexval(hex[2 * i]), b = hexval(hex[2 * i + 1]);
        if (a < 0 || b < 0) {
            free(req);
            return usage("bad --ticket-hex");
        }
        req[n++] = (uint8_t)(a << 4 | b);
    }

    grpc_init();
    grpc_arg args[3];
    size_t nargs = 0;
    args[nargs].type = GRPC_ARG_INTEGER;
    args[nargs].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[nargs++].value.integer = -1;
    if (window > 0) { /* initial HTTP/2 stream window (default: gRPC's, with BDP probing) */
        args[nargs].type = GRPC_ARG_INTEGER;
        args[nargs].key = GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES;
        args[nargs++].value.integer = window;
    }
    if (frame > 0) { /* largest HTTP/2 frame we accept (default 16 KiB) */
        args[nargs].type = GRPC_ARG_INTEGER;
        args[nargs].key = GRPC_ARG_HTTP2_MAX_FRAME_SIZE;
        args[nargs++].value.integer = frame;
    }
    grpc_channel_args cargs = {nargs, args};
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    grpc_channel *ch = grpc_channel_create(target, creds, &cargs);
    grpc_channel_credentials_release(creds);
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
    int failed = 0;
    for (int r = 0; r < repeat; r++)
        if (one_get(ch, cq, req, n) != 0)
            failed = 1;
    grpc_channel_destroy(ch);
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
    grpc_shutdown();
    free(req);
    return failed;
}
