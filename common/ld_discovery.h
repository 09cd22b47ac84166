/* ld_discovery: finding peers through the registry.
 *
 * larder-offline announces where clients reach it as one object of the
 * registry's Infra (feast.core.Infra, written with UpdateInfra, read with
 * GetInfra): an InfraObject whose infra_object_class_type is
 * LD_DISCOVERY_OFFLINE_CLASS and whose custom_infra.field holds the payload
 * below. Feast ignores infra objects of classes it does not know (it only
 * instantiates them on teardown, which a larder registry never asks for),
 * and every other object of the Infra is kept as it was.
 *
 * Payload (UTF-8 text, one "key=value" per line, unknown keys ignored):
 *   larder-endpoint=1
 *   project=<project>      the project the server serves
 *   target=<host:port>     gRPC target clients dial
 *   tls=0|1
 *
 * The registry keeps one Infra for the whole registry (Feast's file
 * registry does the same), so each project has its own object: announcing
 * replaces the object of the same class and project only.
 *
 * The registry's address: registry_type remote names it (registry.path);
 * with a file registry, the larder-registry serving that file listens on
 * larder.host:larder.registry_port. */
#pragma once

/* how long ld_discovery_offline() waits for a fresh announcement */
#define LD_DISCOVERY_WAIT_MS 3000

#include <stddef.h>

#include "feast/core/InfraObject.pb-c.h"
#include "ld_arena.h"
#include "ld_client.h"
#include "ld_config.h"
#include "ld_status.h"

#define LD_DISCOVERY_OFFLINE_CLASS "larder.OfflineServerEndpoint"
#define LD_DISCOVERY_MAX_TARGET    256

typedef struct ld_endpoint {
    char project[256];
    char target[LD_DISCOVERY_MAX_TARGET];
    int tls;
} ld_endpoint;

/* The endpoint object of `project` and `cls` in infra, parsed into *out.
 * 0 when found, -1 when absent or unreadable. infra may be NULL. */
int ld_discovery_find(const Feast__Core__Infra *infra, const char *cls, const char *project,
                      ld_endpoint *out);

/* A new Infra (in arena a) holding every object of cur except the one of the
 * same class and project, plus ep's object at the end. */
Feast__Core__Infra *ld_discovery_merge(const Feast__Core__Infra *cur, const char *cls,
                                       const ld_endpoint *ep, ld_arena *a);

/* "host:port" of the registry server cfg points at (see above), written to
 * buf; -1 if the config names none (sql registry without larder.host). */
int ld_discovery_registry_target(const ld_config *cfg, char *buf, size_t n);

/* A client of that registry server (TLS settings of a remote registry
 * applied). NULL and st on error. */
ld_client *ld_discovery_registry_client(const ld_config *cfg, ld_status *st);

/* GetInfra(project, allow_cache) over cl; the Infra lives in a. */
int ld_discovery_get_infra(ld_client *cl, const char *project, int allow_cache, ld_arena *a,
                           Feast__Core__Infra **out, ld_status *st);

/* The offline server of cfg's project, looked up in the registry (blocking).
 * NOT_FOUND when none is announced; UNAVAILABLE when the registry cannot be
 * reached. */
int ld_discovery_offline(const ld_config *cfg, ld_endpoint *out, ld_status *st);
