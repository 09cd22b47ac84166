/* ol_server: construction of the serving core (see ol_serve.h for use). */
#pragma once

#include "ld_config.h"
#include "ld_status.h"
#include "ol_registry.h"
#include "ol_serve.h"
#include "ol_store.h"

/* The server borrows reg and store; free them after ol_server_free. */
ol_server *ol_server_new(const ld_config *cfg, ol_registry *reg, ol_store *store, ld_status *st);
void ol_server_free(ol_server *s);
