/* larder-registry: Feast's registry server (feast.registry.RegistryServer over gRPC).
 * At this stage the process serves the gRPC health protocol; its services
 * are added by registry_setup() as they are built. */
#include "ld_daemon.h"

int main(int argc, char **argv)
{
    static const ld_daemon_spec spec = {
            .prog = "larder-registry",
            .name = "registry",
            .summary = "Feast's registry server (feast.registry.RegistryServer over gRPC).",
            .port_key = "larder.registry_port",
    };
    return ld_daemon_main(&spec, argc, argv);
}
