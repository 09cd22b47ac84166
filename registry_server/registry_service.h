/* registry_service: feast.registry.RegistryServer's RPCs over a registry.
 * Reads with allow_cache=true are answered from the snapshot on the
 * completion-queue thread; reads with allow_cache=false first check the
 * store on the blocking pool; writes run on the blocking pool. */
#pragma once

#include "ld_server.h"
#include "registry.h"

int registry_service_register(ld_server *srv, registry *r, ld_status *st);
