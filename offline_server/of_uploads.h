/* of_uploads: what clients DoPut before they GetFlightInfo / DoGet — Feast's
 * remote-offline protocol uploads a table under a descriptor (a JSON
 * command), then asks for the result by that descriptor. Entries are keyed
 * by the descriptor's exact bytes, expire after a TTL (Feast keeps them
 * forever and leaks), and their total size is bounded: an upload that would
 * exceed the bound is refused. Thread-safe. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "ld_status.h"
#include "ot_table.h"

typedef struct of_uploads of_uploads;

typedef struct of_upload {
    uint8_t *key; /* serialized FlightDescriptor */
    size_t key_len;
    char *cmd; /* the descriptor's command (JSON text) */
    size_t cmd_len;
    ot_table *table;
    size_t bytes;
    int64_t created_us;
} of_upload;

of_uploads *of_uploads_new(int64_t ttl_us, size_t max_bytes);
void of_uploads_free(of_uploads *u);
/* Store (replacing an entry with the same key); takes the table. */
int of_uploads_put(of_uploads *u, const uint8_t *key, size_t key_len, const char *cmd,
                   size_t cmd_len, ot_table *table, size_t bytes, ld_status *st);
/* Take an entry out (the caller owns it); NULL if unknown or expired. */
of_upload *of_uploads_take(of_uploads *u, const uint8_t *key, size_t key_len);
/* Put back an entry taken with of_uploads_take (after a failed run). */
void of_uploads_restore(of_uploads *u, of_upload *e);
int of_uploads_has(of_uploads *u, const uint8_t *key, size_t key_len);
/* Copy the keys of every live entry (for ListFlights); caller frees each and the array. */
size_t of_uploads_keys(of_uploads *u, uint8_t ***keys, size_t **lens);
void of_upload_free(of_upload *e);
/* Bytes one table occupies (its buffers), for the bound. */
size_t of_table_bytes(const ot_table *t);
