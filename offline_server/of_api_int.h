/* of_api_int: what of_api.c shares with the modules that implement some of
 * its commands (of_hist.c: entity-less retrieval and view resolution;
 * of_write.c: the write-style commands). Not for the Flight layer. */
#pragma once

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "feast/core/DataSource.pb-c.h"
#include "feast/core/Registry.pb-c.h"
#include "ld_config.h"
#include "ld_status.h"
#include "of_api.h"
#include "ot_table.h"

/* A referenced copy of the registry (see of_api.c). */
typedef struct reg_copy reg_copy;

/* The registry, fetched at most every cache_ttl_seconds (blocking); release
 * with of_api_registry_release. NULL and st when there is none. */
reg_copy *of_api_registry(of_api *a, ld_status *st);
const Feast__Core__Registry *of_api_registry_get(const reg_copy *c);
void of_api_registry_release(reg_copy *c);
const ld_config *of_api_config(const of_api *a);
int of_api_threads(const of_api *a);

/* The data source `name` of `project` (a source with no project matches
 * any), or NULL. */
const Feast__Core__DataSource *of_api_find_source(const Feast__Core__Registry *r,
                                                  const char *project, const char *name);

/* Load a file source (CSV or Arrow IPC) with its field mapping applied:
 * every column of the file. */
int of_load_source(const ld_config *cfg, const Feast__Core__DataSource *ds, ot_table **out,
                   ld_status *st);
/* The same reading only what the Feast names names[0..n) need (NULL
 * entries ignored): those columns, and the columns the field mapping renames
 * into them. The other columns are not decoded at all (Arrow IPC: their
 * buffers are not even read; CSV: not converted or kept). The table may hold
 * a few more columns than asked (a mapped column's old name); a name the
 * file lacks is simply absent. names == NULL: every column. */
int of_load_source_cols(const ld_config *cfg, const Feast__Core__DataSource *ds,
                        const char *const *names, size_t n, ot_table **out, ld_status *st);

/* Run a read-style command (get_historical_features, pull_*, the column
 * listing) over file sources on `upload`: what DoGet streams (`upload`
 * must outlive *out). */
int of_api_run_read(of_api *a, json_t *cmd, const char *api, const ot_table *upload,
                    of_result **out, ld_status *st);
