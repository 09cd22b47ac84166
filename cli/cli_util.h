/* cli_util: what several larder subcommands share — reporting bad options,
 * loading feature_store.yaml, reaching the registry server and finding
 * objects in the registry it returns. */
#pragma once

#include <stddef.h>

#include "cli_defs.h"
#include "feast/core/Registry.pb-c.h"
#include "ld_arena.h"
#include "ld_client.h"
#include "ld_config.h"

/* For a command that parses with opterr = 0 and a leading ':' in its
 * optstring: what getopt_long returned that is no option of the command
 * (':' a value is missing, anything else an unknown option), said on stderr
 * as "larder CMD: ...". Returns CLI_EXIT_USAGE. */
int cli_bad_option(int c, char *const *argv);

/* Load the config (default ./feature_store.yaml) and print its warnings,
 * prefixed "larder CMD:" (cmd NULL: "larder:"). Returns CLI_EXIT_OK, or
 * CLI_EXIT_INVALID after printing the problem. */
int cli_load_config(const char *cmd, const char *path, ld_config **out);

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

/* The registry's objects of one kind, as a pointer array into reg (NULL
 * with *n = 0 for a NULL reg). */
ProtobufCMessage **cli_registry_list(const Feast__Core__Registry *reg, cd_kind k, size_t *n);

/* The message that carries an object's name and project: its spec, or the
 * object itself when it has none (a DataSource). NULL when spec is unset. */
const ProtobufCMessage *cli_spec_of(const ProtobufCMessage *m);

/* The string field `name` of m; "" when m is NULL or has no such string. */
const char *cli_str_field(const ProtobufCMessage *m, const char *name);

/* The object of kind k called name in project (projects: in any), or NULL.
 * reg may be NULL. */
const ProtobufCMessage *cli_registry_find(const Feast__Core__Registry *reg, cd_kind k,
                                          const char *project, const char *name);
