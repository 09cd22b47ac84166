/* ld_client: a blocking gRPC C-core client for service-to-service calls
 * (online/offline server -> registry, CLI -> servers). One channel per
 * client, reused by every call and thread (HTTP/2 multiplexes them); each
 * call has a deadline; UNAVAILABLE is retried with exponential backoff and
 * jitter until the attempts or the call's deadline run out.
 *
 * Blocking by design: call it from pool threads, background refreshers or
 * the CLI, never from a completion-queue thread. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

#include "ld_arena.h"
#include "ld_status.h"

typedef struct ld_client ld_client;

typedef struct ld_client_opts {
    const char *target;   /* "host:port" */
    int tls;              /* use TLS (implied by tls_ca) */
    const char *tls_ca;   /* PEM; NULL: system roots */
    const char *tls_cert; /* client certificate for mutual TLS */
    const char *tls_key;
    const char *authority;      /* override the TLS target name / :authority */
    int64_t timeout_ms;         /* default deadline per call; default 10000 */
    int max_attempts;           /* default 4 */
    int64_t initial_backoff_ms; /* default 50 */
    int64_t max_backoff_ms;     /* default 2000 */
    size_t max_message_bytes;   /* largest response; default 64 MiB */
} ld_client_opts;

ld_client *ld_client_new(const ld_client_opts *opts, ld_status *st);
void ld_client_free(ld_client *cl);
const char *ld_client_target(const ld_client *cl);

/* One unary call. The response is unpacked into `arena`. timeout_ms 0 uses
 * the client's default; it bounds the whole call, retries included. On a
 * failed call st carries the server's code and status message (for larder
 * and Feast servers, Feast's error JSON). metadata: NULL or pairs of
 * lower-case key/value strings ending with NULL. */
int ld_client_unary(ld_client *cl, const char *method, const ProtobufCMessage *req,
                    const ProtobufCMessageDescriptor *resp_desc, ld_arena *arena,
                    int64_t timeout_ms, const char *const *metadata, ProtobufCMessage **resp,
                    ld_status *st);
