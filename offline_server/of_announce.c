#include "of_announce.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "feast/registry/RegistryServer.pb-c.h"
#include "google/protobuf/empty.pb-c.h"
#include "ld_discovery.h"
#include "ld_log.h"
#include "ld_ticker.h"

#define TICK_US     500000 /* until the first announcement succeeds */
#define CHECK_TICKS 6      /* then a check every 3 s */

struct of_announce {
    const ld_config *cfg;
    ld_server *srv;
    ld_client *client;
    ld_ticker *ticker;
    int announced; /* ticker thread only */
    int failing;   /* a failure was logged; log recovery once */
    unsigned ticks;
};

static int is_wildcard(const char *h)
{
    return !*h || !strcmp(h, "0.0.0.0") || !strcmp(h, "::") || !strcmp(h, "[::]");
}

/* The advertised target for the bound port. */
static void advertised(const of_announce *an, int port, char *out, size_t n)
{
    const char *adv = an->cfg->larder.offline_advertise_address;
    if (adv && *adv) {
        const char *colon = strrchr(adv, ':');
        int has_port = colon && (adv[0] != '[' || strchr(adv, ']') < colon);
        int w = has_port ? snprintf(out, n, "%s", adv) : snprintf(out, n, "%s:%d", adv, port);
        if (w >= 0 && (size_t)w < n)
            return;
    }
    const char *host = an->cfg->larder.host ? an->cfg->larder.host : "127.0.0.1";
    char name[256];
    if (is_wildcard(host)) {
        host = "127.0.0.1";
        if (gethostname(name, sizeof name) == 0) {
            name[sizeof name - 1] = '\0';
            struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
            if (getaddrinfo(name, NULL, &hints, &res) == 0) {
                host = name;
                freeaddrinfo(res);
            }
        }
    }
    int w = strchr(host, ':') && host[0] != '[' ? snprintf(out, n, "[%s]:%d", host, port)
                                                : snprintf(out, n, "%s:%d", host, port);
    if (w < 0 || (size_t)w >= n)
        snprintf(out, n, "127.0.0.1:%d", port);
}

static int same(const ld_endpoint *a, const ld_endpoint *b)
{
    return !strcmp(a->target, b->target) && a->tls == b->tls && !strcmp(a->project, b->project);
}

/* One round: read the Infra, announce if ours is missing or different. */
static int announce_once(of_announce *an, const ld_endpoint *ep, int *wrote, ld_status *st)
{
    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    Feast__Core__Infra *cur = NULL;
    int rc = ld_discovery_get_infra(an->client, an->cfg->project, 0, &a, &cur, st);
    *wrote = 0;
    ld_endpoint found;
    if (rc == 0 &&
        (ld_discovery_find(cur, LD_DISCOVERY_OFFLINE_CLASS, an->cfg->project, &found) != 0 ||
         !same(&found, ep))) {
        Feast__Core__Infra *next = ld_discovery_merge(cur, LD_DISCOVERY_OFFLINE_CLASS, ep, &a);
        Feast__Registry__UpdateInfraRequest req = FEAST__REGISTRY__UPDATE_INFRA_REQUEST__INIT;
        req.infra = next;
        req.project = an->cfg->project;
        req.commit = 1;
        ProtobufCMessage *resp = NULL;
        if (!next)
            rc = ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        else if ((rc = ld_client_unary(an->client, "/feast.registry.RegistryServer/UpdateInfra",
                                       &req.base, &google__protobuf__empty__descriptor, &a, 0, NULL,
                                       &resp, st)) != 0)
            ld_status_prefix(st, "UpdateInfra on registry %s", ld_client_target(an->client));
        else
            *wrote = 1;
    }
    ld_arena_destroy(&a);
    return rc;
}

static void tick(void *arg)
{
    of_announce *an = arg;
    an->ticks++;
    if (an->announced && an->ticks % CHECK_TICKS != 0)
        return;
    int port = ld_server_port(an->srv);
    if (port <= 0)
        return; /* not listening yet */
    ld_endpoint ep;
    memset(&ep, 0, sizeof ep);
    snprintf(ep.project, sizeof ep.project, "%s", an->cfg->project);
    advertised(an, port, ep.target, sizeof ep.target);
    ep.tls = an->cfg->larder.tls_cert && *an->cfg->larder.tls_cert;
    ld_status st = LD_STATUS_INIT;
    int wrote = 0;
    if (announce_once(an, &ep, &wrote, &st) != 0) {
        if (!an->failing)
            ld_warn("cannot announce this server to the registry (retrying): %s", st.msg);
        an->failing = 1;
        an->announced = 0;
        return;
    }
    if (wrote)
        ld_info("announced %s%s for project '%s' to registry %s", ep.target, ep.tls ? " (TLS)" : "",
                ep.project, ld_client_target(an->client));
    else if (an->failing)
        ld_info("registry %s reachable again; announcement in place", ld_client_target(an->client));
    an->failing = 0;
    an->announced = 1;
}

of_announce *of_announce_start(const ld_config *cfg, ld_server *srv, ld_status *st)
{
    of_announce *an = calloc(1, sizeof *an);
    if (!an) {
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        return NULL;
    }
    an->cfg = cfg;
    an->srv = srv;
    if (cfg->registry.registry_type != LD_REGISTRY_REMOTE && cfg->larder.registry_port <= 0) {
        /* nothing to announce to: a file registry nobody serves */
        ld_info("no registry server configured (registry_type remote, or larder.registry_port "
                "for a file registry served by larder-registry): this server is not announced");
        return an;
    }
    /* registry_type remote: that server; a file registry: the larder-registry
     * serving it at larder.host:larder.registry_port (as the CLI does) */
    if (!(an->client = ld_discovery_registry_client(cfg, st))) {
        free(an);
        return NULL;
    }
    if (!(an->ticker = ld_ticker_start(TICK_US, tick, an))) {
        ld_client_free(an->client);
        free(an);
        ld_status_set(st, GRPC_STATUS_INTERNAL, NULL, "cannot start the announcer thread");
        return NULL;
    }
    return an;
}

void of_announce_stop(of_announce *an)
{
    if (!an)
        return;
    if (an->ticker)
        ld_ticker_stop(an->ticker);
    ld_client_free(an->client);
    free(an);
}
