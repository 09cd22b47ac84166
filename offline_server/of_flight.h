/* of_flight: arrow.flight.protocol.FlightService with Feast's
 * remote-offline protocol: DoPut stores an uploaded table under its
 * descriptor (or runs a write-style command at once), GetFlightInfo answers
 * with a ticket for a stored upload, DoGet runs the command on the blocking
 * pool and streams the result as record batches while the rest of it is
 * still being produced (a few batches at a time in memory). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "ld_server.h"
#include "of_api.h"

typedef struct of_flight of_flight;

of_flight *of_flight_new(of_api *api, int64_t upload_ttl_us, size_t max_upload_bytes,
                         ld_status *st);
void of_flight_free(of_flight *f);
int of_flight_register(ld_server *srv, of_flight *f, ld_status *st);
