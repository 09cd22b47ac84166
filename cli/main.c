/* larder: the command-line tool. One binary, one function per subcommand
 * (cli.h); this file only dispatches and prints the top-level help. */
#include <stdio.h>
#include <string.h>

#include <grpc/grpc.h>

#include "cli.h"

typedef struct cli_command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} cli_command;

static const cli_command commands[] = {
        {"init", cli_cmd_init, "write the example repository (driver statistics) into DIR"},
        {"plan", cli_cmd_plan, "show what `apply` would change in the registry"},
        {"apply", cli_cmd_apply, "register feature definitions from YAML files"},
        {"registry-dump", cli_cmd_registry_dump, "print the registry as JSON"},
        {"materialize", cli_cmd_materialize, "load a time window into the online store"},
        {"materialize-incremental", cli_cmd_materialize_incremental,
         "load everything since the last materialization"},
        {"get-online-features", cli_cmd_get_online_features, "look up online feature values"},
        {"get-historical-features", cli_cmd_get_historical_features,
         "point-in-time correct training data for an entity CSV"},
        {"serve", cli_cmd_serve, "run the registry, online and offline servers (development)"},
        {"version", cli_cmd_version, "print the version"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: larder COMMAND [OPTIONS] [ARGS]\n\n"
               "The command-line tool of larder, a Feast-compatible feature store server.\n\n"
               "commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-25s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n`larder COMMAND --help` describes a command's options. Every command reads\n"
               "./feature_store.yaml unless -c/--config FILE is given.\n\n"
               "exit codes: 0 ok, 1 failed, 2 bad usage, 3 invalid definitions or config\n"
               "(nothing written), 4 a server could not be reached.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *name = argv[1];
    if (!strcmp(name, "-h") || !strcmp(name, "--help") || !strcmp(name, "help")) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    if (!strcmp(name, "--version") || !strcmp(name, "-V"))
        return cli_cmd_version(argc - 1, argv + 1);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (!strcmp(name, commands[i].name)) {
            /* One gRPC library instance for the whole run: every client
             * (registry, online, offline) shares it. */
            grpc_init();
            int rc = commands[i].fn(argc - 1, argv + 1);
            grpc_shutdown();
            return rc;
        }
    }
    fprintf(stderr, "larder: unknown command '%s' (larder --help lists them)\n", name);
    return CLI_EXIT_USAGE;
}
