/* larder-online: Feast's online feature server (gRPC ServingService / GrpcFeatureServer, HTTP API).
 * At this stage the process serves the gRPC health protocol; its services
 * are added by online_setup() as they are built. */
#include "ld_daemon.h"

int main(int argc, char **argv)
{
    static const ld_daemon_spec spec = {
            .prog = "larder-online",
            .name = "online",
            .summary = "Feast's online feature server (gRPC ServingService / GrpcFeatureServer, "
                       "HTTP API).",
            .port_key = "larder.online_port",
    };
    return ld_daemon_main(&spec, argc, argv);
}
