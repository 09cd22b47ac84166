/* of_announce: larder-offline tells the registry where clients reach it
 * (ld_discovery.h describes the Infra object), and keeps it there: a
 * background thread announces as soon as the server is listening, then
 * checks every few seconds with GetInfra and announces again when the object
 * is missing or different (a registry restarted on an empty store, another
 * writer replaced the Infra, the server's address changed).
 *
 * The advertised target is larder.offline_advertise_address ("host" or
 * "host:port"); by default larder.host and the bound port, where a wildcard
 * host (0.0.0.0, ::) becomes this machine's host name if it resolves, else
 * 127.0.0.1. TLS is announced when the server serves TLS. Only a remote
 * registry (registry_type remote) is announced to; with a file registry the
 * announcer does nothing. */
#pragma once

#include "ld_config.h"
#include "ld_server.h"
#include "ld_status.h"

typedef struct of_announce of_announce;

/* Start announcing srv's endpoint (srv and cfg must outlive the announcer).
 * The first attempt waits until srv is listening. */
of_announce *of_announce_start(const ld_config *cfg, ld_server *srv, ld_status *st);
/* Stop the thread (the announcement stays in the registry, as a restarted
 * server replaces it). NULL is a no-op. */
void of_announce_stop(of_announce *an);
