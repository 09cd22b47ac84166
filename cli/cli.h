/* larder CLI: one binary, one function per subcommand.
 *
 * Each command gets argv starting at its own name (argv[0] = "apply", ...),
 * parses its options itself (getopt_long; -c/--config FILE, default
 * ./feature_store.yaml; -h/--help prints usage and returns CLI_EXIT_OK) and
 * returns one of the exit codes below. Errors go to stderr, results to
 * stdout, so scripts can rely on both. */
#pragma once

enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_FAIL = 1,        /* the command ran and failed (server error, I/O) */
    CLI_EXIT_USAGE = 2,       /* bad options or arguments */
    CLI_EXIT_INVALID = 3,     /* bad definitions or config: nothing was written */
    CLI_EXIT_UNAVAILABLE = 4, /* a server could not be reached */
};

int cli_cmd_init(int argc, char **argv);
int cli_cmd_apply(int argc, char **argv);
int cli_cmd_plan(int argc, char **argv);
int cli_cmd_registry_dump(int argc, char **argv);
int cli_cmd_serve(int argc, char **argv);
int cli_cmd_version(int argc, char **argv);

int cli_cmd_materialize(int argc, char **argv);
int cli_cmd_materialize_incremental(int argc, char **argv);
int cli_cmd_get_online_features(int argc, char **argv);
int cli_cmd_get_historical_features(int argc, char **argv);
