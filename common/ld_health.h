/* ld_health: grpc.health.v1.Health (Check and Watch) for every server.
 * Service "" is the whole server; servers add their service names. */
#pragma once

#include "ld_status.h"

typedef struct ld_health ld_health;
typedef struct ld_server ld_server;

typedef enum {
    LD_HEALTH_UNKNOWN = 0,
    LD_HEALTH_SERVING = 1,
    LD_HEALTH_NOT_SERVING = 2,
    LD_HEALTH_SERVICE_UNKNOWN = 3,
} ld_health_status;

ld_health *ld_health_new(void);
/* Add the Check and Watch methods to the server (done by ld_server_new). */
int ld_health_register(ld_health *h, ld_server *s, ld_status *st);
/* Set a service's status; Watch streams of that service see the change. */
void ld_health_set(ld_health *h, const char *service, ld_health_status status);
/* Server stopping: every service becomes NOT_SERVING, each Watch stream gets
 * that last update and then ends. */
void ld_health_shutdown(ld_health *h);
void ld_health_free(ld_health *h);
