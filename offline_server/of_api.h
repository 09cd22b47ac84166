/* of_api: Feast's remote-offline commands. A command is the JSON text in a
 * FlightDescriptor ({"command_id", "api", ...parameters}); the table the
 * client uploaded with DoPut is its input. Read-style APIs produce a table
 * that DoGet streams back; write-style APIs run inside DoPut. */
#pragma once

#include <stddef.h>

#include "ld_status.h"
#include "ot_table.h"

#include "ld_config.h"
#include "of_pg.h"

typedef struct of_api of_api;

/* cfg must outlive the api (the daemon's config does). */
of_api *of_api_new(const ld_config *cfg, ld_status *st);
void of_api_free(of_api *a);

typedef enum {
    OF_API_READ = 0,  /* result fetched with GetFlightInfo + DoGet */
    OF_API_WRITE = 1, /* runs inside DoPut */
} of_api_kind;

/* Parse the command: its api must be one Feast defines. */
int of_api_classify(const char *cmd, size_t len, of_api_kind *kind, ld_status *st);
/* Run it (blocking: call from a pool thread). `upload` may be Feast's mock
 * one-column table meaning "no entity dataframe". *result is set for read
 * APIs (free with ot_table_free). */
int of_api_run(of_api *api, const char *cmd, size_t len, const ot_table *upload, ot_table **result,
               ld_status *st);
/* The same for DoGet: a result read from PostgreSQL comes as *stream
 * (chunk by chunk, see of_pg.h) instead of *result; one of them is set. */
int of_api_run_stream(of_api *api, const char *cmd, size_t len, const ot_table *upload,
                      ot_table **result, of_pg_stream **stream, ld_status *st);
