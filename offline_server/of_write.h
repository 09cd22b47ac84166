/* of_write: Feast's write-style remote-offline commands over file sources.
 * Each runs inside DoPut on the uploaded table (Feast's offline_server.py
 * does the same) and answers with the call's status only.
 *
 *   offline_write_batch    the upload appended to the feature view's batch
 *                          source file (CSV or Arrow IPC stream/file); its
 *                          columns must be the file's columns (by the file's
 *                          names or the Feast names of the field mapping, in
 *                          any order), each castable losslessly to the
 *                          file's type;
 *   write_logged_features  the upload written as a new Arrow IPC file
 *                          "<uuid>-0.arrow" in the feature service's logging
 *                          destination directory;
 *   persist                the originating retrieval re-run and its result
 *                          written to the saved-dataset data source's file
 *                          (CSV or Arrow IPC by extension); an existing file
 *                          is SavedDatasetLocationAlreadyExists unless
 *                          allow_overwrite;
 *   validate_data_source   the source's file exists and reads, and its
 *                          timestamp and created-timestamp columns are there.
 *
 * Durability: every write builds a complete new file next to the target
 * (same directory, hidden temporary name), fsyncs it, renames it over the
 * target (or links it, when an existing file must not be replaced) and
 * fsyncs the directory, all under an exclusive flock on the directory. A
 * failure at any point leaves the old file untouched; an acknowledged write
 * survives kill -9 and power loss. */
#pragma once

#include <jansson.h>

#include "ld_status.h"
#include "of_api.h"
#include "ot_table.h"

int of_write_batch(of_api *a, json_t *cmd, const ot_table *upload, ld_status *st);
int of_write_logged_features(of_api *a, json_t *cmd, const ot_table *upload, ld_status *st);
int of_write_persist(of_api *a, json_t *cmd, const ot_table *upload, ld_status *st);
int of_write_validate(of_api *a, json_t *cmd, ld_status *st);
