/* larder-offline: Feast's offline feature server (Arrow Flight).
 * At this stage the process serves the gRPC health protocol; its services
 * are added by offline_setup() as they are built. */
#include "ld_daemon.h"

int main(int argc, char **argv)
{
    static const ld_daemon_spec spec = {
            .prog = "larder-offline",
            .name = "offline",
            .summary = "Feast's offline feature server (Arrow Flight).",
            .port_key = "larder.offline_port",
    };
    return ld_daemon_main(&spec, argc, argv);
}
