/* larder-offline: Feast's offline feature server — Arrow Flight with
 * Feast's remote-offline commands: point-in-time-correct training sets and
 * materialization reads over file sources. */
#include <stdlib.h>

#include "ld_daemon.h"
#include "ld_health.h"
#include "of_announce.h"
#include "of_api.h"
#include "of_flight.h"

typedef struct offline {
    of_api *api;
    of_flight *flight;
    of_announce *announce; /* endpoint kept in the registry's Infra */
} offline;

static void offline_free(offline *o)
{
    if (!o)
        return;
    of_announce_stop(o->announce);
    of_flight_free(o->flight);
    of_api_free(o->api);
    free(o);
}

static int offline_setup(ld_server *srv, const ld_config *cfg, void **state, ld_status *st)
{
    offline *o = calloc(1, sizeof *o);
    if (!o)
        return ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
    /* uploads live 10 minutes and may hold up to 1 GiB in total */
    if (!(o->api = of_api_new(cfg, st)) ||
        !(o->flight = of_flight_new(o->api, 600 * 1000000LL, (size_t)1 << 30, st)) ||
        of_flight_register(srv, o->flight, st) != 0 ||
        !(o->announce = of_announce_start(cfg, srv, st))) {
        offline_free(o);
        return -1;
    }
    ld_health_set(ld_server_health(srv), "arrow.flight.protocol.FlightService", LD_HEALTH_SERVING);
    *state = o;
    return 0;
}

static void offline_teardown(void *state)
{
    offline_free(state);
}

int main(int argc, char **argv)
{
    static const ld_daemon_opt extra[] = {
            {"advertise-address", "larder.offline_advertise_address", "HOST[:PORT]",
             "endpoint announced to the registry (default: --host and the bound port; a "
             "wildcard host becomes this machine's name)"},
    };
    static const ld_daemon_spec spec = {
            .prog = "larder-offline",
            .name = "offline",
            .summary = "Feast's offline feature server: Arrow Flight with Feast's remote-offline "
                       "commands.",
            .port_key = "larder.offline_port",
            .extra_opts = extra,
            .n_extra_opts = 1,
            .setup = offline_setup,
            .teardown = offline_teardown,
    };
    return ld_daemon_main(&spec, argc, argv);
}
