/* of_pg: Feast's PostgreSQL offline store behind the remote-offline
 * commands — PostgreSQLSource (a table or a query) read and written in
 * PostgreSQL itself, over libpq:
 *
 *   get_historical_features  the point-in-time join runs in PostgreSQL: the
 *                            uploaded entity dataframe goes into a temporary
 *                            table with binary COPY (or the entity SQL becomes
 *                            one; or the entity-less start/end mode), and one
 *                            query joins every view, Feast's semantics;
 *   pull_latest / pull_all   Feast's queries;
 *   column listing, validate `SELECT * FROM <source> LIMIT 0`;
 *   offline_write_batch      rows appended to the source table, one
 *                            transaction.
 *
 * Results are read through a cursor (FETCH in chunks, binary format) and
 * converted chunk by chunk into ot_tables, so a result is never held whole.
 * Every call blocks on the network: run them on the blocking pool, never on
 * a completion-queue thread.
 *
 * Connections come from offline_store (type: postgres): host, port,
 * database, db_schema, user, password, sslmode, ssl*_path; a few idle ones
 * are kept for reuse. Each command uses one connection for its lifetime. */
#pragma once

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "feast/core/DataSource.pb-c.h"
#include "feast/core/Registry.pb-c.h"
#include "ld_config.h"
#include "ld_status.h"
#include "ot_table.h"

typedef struct of_pg of_pg;

/* Never connects; cfg must outlive it. */
of_pg *of_pg_new(const ld_config *cfg, ld_status *st);
void of_pg_free(of_pg *p);

/* Whether ds is Feast's PostgreSQLSource (custom options, class type
 * ...PostgreSQLSource). */
int of_pg_is_source(const Feast__Core__DataSource *ds);

/* Cancellation of one command's statements (a DoGet whose client went
 * away, or whose deadline passed). of_pg_cancel_fire, from any thread and
 * without blocking, makes PostgreSQL cancel the statement the command is
 * running (PQcancel, sent from a short-lived thread of its own so that the
 * caller never waits on the network), and every later statement of the
 * command fail at once with CANCELLED; the command's connection is then
 * closed, never reused (a cancel request that arrives late must not hit
 * someone else's statement). Referenced: new gives one reference, each
 * command or stream using it takes its own. */
typedef struct of_pg_cancel of_pg_cancel;

of_pg_cancel *of_pg_cancel_new(void); /* NULL when out of memory */
of_pg_cancel *of_pg_cancel_ref(of_pg_cancel *k);
void of_pg_cancel_fire(of_pg_cancel *k);
void of_pg_cancel_unref(of_pg_cancel *k);

/* A result being read from a cursor. */
typedef struct of_pg_stream of_pg_stream;

/* The next chunk (blocking). The first call always gives a table (maybe
 * without rows: it carries the schema); later calls give tables with rows,
 * then *chunk = NULL at the end. Free chunks with ot_table_free. */
int of_pg_stream_next(of_pg_stream *s, ot_table **chunk, ld_status *st);
/* Cheap (no round trip): an unfinished stream's connection is closed. */
void of_pg_stream_free(of_pg_stream *s);
/* Read the rest of the stream into one table (frees the stream). */
int of_pg_stream_collect(of_pg_stream *s, ot_table **out, ld_status *st);

/* Run command `cmd` (parsed JSON) as api `api` (NULL: its "api" key) if it
 * concerns PostgreSQL sources: returns 1 when it does not (nothing done,
 * nothing set), else 0 with the result in *stream (read APIs) or nothing
 * (write APIs), or -1 and st. `upload` is the DoPut table (Feast's mock
 * table = no entity dataframe); `r` the registry (NULL: none), `project` the
 * server's project; `cancel` (NULL: none) cancels the read APIs' statements,
 * the stream's included. */
int of_pg_command(of_pg *p, const Feast__Core__Registry *r, const char *project, const char *api,
                  json_t *cmd, const ot_table *upload, of_pg_cancel *cancel, of_pg_stream **stream,
                  ld_status *st);
