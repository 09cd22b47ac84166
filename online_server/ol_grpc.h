/* ol_grpc: feast.serving.ServingService and GrpcFeatureServer over the
 * serving core. Handlers run on completion-queue threads, hand the request
 * to ol_serve and return; the reply is sent from the store's thread. */
#pragma once

#include "ld_server.h"
#include "ol_serve.h"

int ol_grpc_register(ld_server *srv, ol_server *core, ld_status *st);
