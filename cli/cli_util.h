/* cli_util: what several larder subcommands share — loading
 * feature_store.yaml and reaching the registry server. */
#pragma once

#include <stddef.h>

#include "feast/core/Registry.pb-c.h"
#include "ld_arena.h"
#include "ld_client.h"
#include "ld_config.h"

/* Load the config (default ./feature_store.yaml) and print its warnings.
 * Returns CLI_EXIT_OK, or CLI_EXIT_INVALID after printing the problem. */
int cli_load_config(const char *path, ld_config **out);

/* The registry server the CLI talks to. `registry_type: remote` -> its
 * path (with its TLS settings); a file or sql registry -> the larder-registry
 * that serves this same config, at larder.host:larder.registry_port
 * (0.0.0.0 and :: mean this machine). override ("host:port") wins. */
ld_client *cli_registry_client(const ld_config *cfg, const char *override, ld_status *st);

/* CLI_EXIT_UNAVAILABLE for "could not reach the server" codes, else
 * CLI_EXIT_FAIL. */
int cli_exit_for(const ld_status *st);

/* Refresh(project) then Proto(): the registry as the server holds it,
 * unpacked into a. Prints the problem and returns an exit code on failure. */
int cli_fetch_registry(ld_client *cl, const char *project, ld_arena *a,
                       Feast__Core__Registry **out);

/* "message" of Feast's error JSON in a status message, or the message. */
const char *cli_status_text(const ld_status *st, char *buf, size_t n);
