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

/* A read command's result for DoGet, produced piece by piece so that it is
 * never held whole: over file sources the join's (or the pull's) matches are
 * computed first and the output columns are gathered a chunk at a time;
 * from PostgreSQL, a cursor is fetched a chunk at a time. */
typedef struct of_result of_result;

/* Run a read-style command for DoGet (blocking: call from a pool thread).
 * `upload` is borrowed: it must outlive *out. `cancel` (NULL: none), fired
 * when the call goes away, cancels the command's PostgreSQL statements,
 * those the result runs while it is read included (of_pg.h). */
int of_api_run_stream(of_api *api, const char *cmd, size_t len, const ot_table *upload,
                      of_pg_cancel *cancel, of_result **out, ld_status *st);
/* The result's row count when known before it is read (file sources), or
 * -1 (a PostgreSQL cursor). */
int64_t of_result_total_rows(const of_result *r);
/* The next piece of about max_rows rows (blocking; a result computed whole,
 * such as the column listing, comes as one table of any size). The first
 * call always gives a table (maybe without rows: it carries the schema),
 * later calls tables with rows, then *chunk = NULL at the end. Free chunks
 * with ot_table_free. */
int of_result_next(of_result *r, int64_t max_rows, ot_table **chunk, ld_status *st);
/* Cheap; may be called from any thread once no of_result_next runs. */
void of_result_free(of_result *r);
