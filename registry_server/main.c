/* larder-registry: Feast's registry server (feast.registry.RegistryServer
 * over gRPC) on a file or PostgreSQL registry. */
#include <stdlib.h>

#include "ld_daemon.h"
#include "ld_health.h"
#include "registry.h"
#include "registry_service.h"

static int registry_setup(ld_server *srv, const ld_config *cfg, void **state, ld_status *st)
{
    registry *r = registry_new(cfg, st);
    if (!r)
        return -1;
    if (registry_service_register(srv, r, st) != 0) {
        registry_free(r);
        return -1;
    }
    ld_health_set(ld_server_health(srv), "feast.registry.RegistryServer", LD_HEALTH_SERVING);
    *state = r;
    return 0;
}

static void registry_teardown(void *state)
{
    registry_free(state);
}

int main(int argc, char **argv)
{
    static const ld_daemon_spec spec = {
            .prog = "larder-registry",
            .name = "registry",
            .summary = "Feast's registry server (feast.registry.RegistryServer over gRPC), on a "
                       "file or PostgreSQL registry.",
            .port_key = "larder.registry_port",
            .setup = registry_setup,
            .teardown = registry_teardown,
    };
    return ld_daemon_main(&spec, argc, argv);
}
