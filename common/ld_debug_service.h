/* ld_debug_service: larder.debug.Debug, a test-only service that exercises
 * every call shape of ld_server (see protos/larder/debug/debug.proto). Only
 * registered when a server runs with --debug-service. */
#pragma once

#include "ld_server.h"

int ld_debug_service_register(ld_server *s, ld_status *st);
