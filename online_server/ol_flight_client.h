/* ol_flight_client: a blocking Arrow Flight client on the gRPC C core for
 * Feast's remote-offline commands (the sequence Feast's RemoteRetrievalJob
 * runs): DoPut the input table under a descriptor whose command is the JSON
 * text, GetFlightInfo on the same descriptor for a ticket, DoGet the ticket
 * and decode the record batches as they arrive (ot_ipc), one table per batch.
 *
 * One channel per client, shared by its calls; every call has a deadline.
 * Blocking: use it from the CLI or a worker thread, never an event loop or a
 * completion-queue thread. Errors carry the server's status code and message
 * (Feast's error JSON for larder-offline and Feast's offline server). */
#pragma once

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "ld_status.h"
#include "ot_table.h"

typedef struct ol_flight_client ol_flight_client;

typedef struct ol_flight_opts {
    const char *target;  /* "host:port" */
    int tls;             /* grpc+tls */
    const char *tls_ca;  /* PEM file; NULL: system roots */
    int64_t timeout_ms;  /* per call (DoGet included); 0: one hour */
    size_t max_message;  /* largest FlightData accepted; 0: 256 MiB */
    int64_t max_decoded; /* decoded bytes of one batch; 0: 4 GiB */
    atomic_int *cancel;  /* set to 1: calls in progress are cancelled (checked every 100 ms) */
} ol_flight_opts;

ol_flight_client *ol_flight_client_new(const ol_flight_opts *o, ld_status *st);
void ol_flight_client_free(ol_flight_client *c);
const char *ol_flight_client_target(const ol_flight_client *c);

/* Called once per record batch with a table holding that batch's rows
 * (borrowed; valid during the call). Return 0 to go on, -1 (st set) to stop:
 * the call is cancelled and ol_flight_* returns -1 with that status. */
typedef int (*ol_flight_batch_fn)(void *arg, const ot_table *batch, ld_status *st);

/* Called with the number of rows the stream will carry when the server says
 * so: FlightInfo.total_records when it is positive, and the UTF-8 JSON object
 * {"total_records":N} in the app_metadata of the DoGet stream's first
 * FlightData (larder-offline puts it on the Schema message). Called before
 * the first batch; possibly twice (the later figure wins). Absent or
 * unreadable metadata is ignored. */
typedef void (*ol_flight_total_fn)(void *arg, int64_t total_records);

typedef struct ol_flight_sink {
    ol_flight_batch_fn batch; /* may be NULL */
    ol_flight_total_fn total; /* may be NULL */
    void *arg;
} ol_flight_sink;

/* The row count in a DoGet stream's app_metadata: 0 and *n for a JSON
 * object with a non-negative integer "total_records" (other members are
 * ignored); -1 for anything else (empty, not JSON, no such member, a
 * negative or non-integer value, more than 4 KiB). */
int ol_flight_parse_total_records(const uint8_t *meta, size_t len, int64_t *n);

/* DoPut t (NULL: Feast's mock table, one string column "key" with one row
 * "mock_key") under the command descriptor cmd. */
int ol_flight_put(ol_flight_client *c, const char *cmd, const ot_table *t, ld_status *st);
/* GetFlightInfo for the command descriptor: the first endpoint's ticket
 * (malloc'd) and total_records (-1 when unknown). */
int ol_flight_info(ol_flight_client *c, const char *cmd, uint8_t **ticket, size_t *ticket_len,
                   int64_t *total_records, ld_status *st);
/* DoGet: sink->batch per record batch, sink->total with the stream's row
 * count when its first app_metadata gives one; *rows gets the number of rows
 * received. */
int ol_flight_get(ol_flight_client *c, const uint8_t *ticket, size_t ticket_len,
                  const ol_flight_sink *sink, int64_t *rows, ld_status *st);
/* The three in a row, as Feast's client does for a read API (sink->total
 * also gets FlightInfo's total_records when it is positive). */
int ol_flight_command(ol_flight_client *c, const char *cmd, const ot_table *upload,
                      const ol_flight_sink *sink, int64_t *rows, ld_status *st);
