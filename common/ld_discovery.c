#include "ld_discovery.h"

#include <time.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "feast/registry/RegistryServer.pb-c.h"

/* Copy the value of `key=` on its own line of payload into out. */
static int payload_get(const uint8_t *p, size_t n, const char *key, char *out, size_t cap)
{
    size_t klen = strlen(key);
    size_t i = 0;
    while (i < n) {
        size_t e = i;
        while (e < n && p[e] != '\n')
            e++;
        if (e - i > klen && !memcmp(p + i, key, klen) && p[i + klen] == '=') {
            size_t vlen = e - i - klen - 1;
            if (vlen + 1 > cap)
                return -1;
            memcpy(out, p + i + klen + 1, vlen);
            out[vlen] = '\0';
            return 0;
        }
        i = e + 1;
    }
    return -1;
}

static int parse_object(const Feast__Core__InfraObject *o, const char *cls, ld_endpoint *ep)
{
    if (!o || strcmp(o->infra_object_class_type, cls) != 0 ||
        o->infra_object_case != FEAST__CORE__INFRA_OBJECT__INFRA_OBJECT_CUSTOM_INFRA ||
        !o->custom_infra)
        return -1;
    const uint8_t *p = o->custom_infra->field.data;
    size_t n = o->custom_infra->field.len;
    char tls[8] = "0";
    memset(ep, 0, sizeof *ep);
    if (payload_get(p, n, "project", ep->project, sizeof ep->project) != 0 ||
        payload_get(p, n, "target", ep->target, sizeof ep->target) != 0 || !ep->target[0])
        return -1;
    payload_get(p, n, "tls", tls, sizeof tls);
    ep->tls = tls[0] == '1';
    return 0;
}

int ld_discovery_find(const Feast__Core__Infra *infra, const char *cls, const char *project,
                      ld_endpoint *out)
{
    for (size_t i = 0; infra && i < infra->n_infra_objects; i++) {
        ld_endpoint ep;
        if (parse_object(infra->infra_objects[i], cls, &ep) == 0 &&
            strcmp(ep.project, project) == 0) {
            *out = ep;
            return 0;
        }
    }
    return -1;
}

Feast__Core__Infra *ld_discovery_merge(const Feast__Core__Infra *cur, const char *cls,
                                       const ld_endpoint *ep, ld_arena *a)
{
    Feast__Core__Infra *out = ld_arena_calloc(a, 1, sizeof *out);
    size_t n = cur ? cur->n_infra_objects : 0;
    Feast__Core__InfraObject **objs = ld_arena_calloc(a, n + 1, sizeof *objs);
    Feast__Core__InfraObject *mine = ld_arena_calloc(a, 1, sizeof *mine);
    Feast__Core__InfraObject__CustomInfra *ci = ld_arena_calloc(a, 1, sizeof *ci);
    char *payload = ld_arena_sprintf(a, "larder-endpoint=1\nproject=%s\ntarget=%s\ntls=%d\n",
                                     ep->project, ep->target, ep->tls ? 1 : 0);
    char *cls_copy = ld_arena_strdup(a, cls);
    if (!out || !objs || !mine || !ci || !payload || !cls_copy)
        return NULL;
    feast__core__infra__init(out);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        ld_endpoint old;
        if (parse_object(cur->infra_objects[i], cls, &old) == 0 &&
            strcmp(old.project, ep->project) == 0)
            continue;
        objs[k++] = cur->infra_objects[i];
    }
    feast__core__infra_object__init(mine);
    feast__core__infra_object__custom_infra__init(ci);
    ci->field.data = (uint8_t *)payload;
    ci->field.len = strlen(payload);
    mine->infra_object_class_type = cls_copy;
    mine->infra_object_case = FEAST__CORE__INFRA_OBJECT__INFRA_OBJECT_CUSTOM_INFRA;
    mine->custom_infra = ci;
    objs[k++] = mine;
    out->infra_objects = objs;
    out->n_infra_objects = k;
    return out;
}

int ld_discovery_registry_target(const ld_config *cfg, char *buf, size_t n)
{
    if (cfg->registry.registry_type == LD_REGISTRY_REMOTE && cfg->registry.path) {
        snprintf(buf, n, "%s", cfg->registry.path);
        return 0;
    }
    const char *host = cfg->larder.host && *cfg->larder.host ? cfg->larder.host : "127.0.0.1";
    if (!strcmp(host, "0.0.0.0") || !strcmp(host, "::") || !strcmp(host, "[::]"))
        host = "127.0.0.1";
    snprintf(buf, n, "%s:%d", host, cfg->larder.registry_port);
    return 0;
}

ld_client *ld_discovery_registry_client(const ld_config *cfg, ld_status *st)
{
    char target[512];
    if (ld_discovery_registry_target(cfg, target, sizeof target) != 0) {
        ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                      "the configuration names no registry server");
        return NULL;
    }
    const ld_registry_config *rc = &cfg->registry;
    int remote = rc->registry_type == LD_REGISTRY_REMOTE;
    char *ca = remote && rc->cert ? ld_config_resolve_path(cfg, rc->cert) : NULL;
    char *cc = remote && rc->client_cert ? ld_config_resolve_path(cfg, rc->client_cert) : NULL;
    char *ck = remote && rc->client_key ? ld_config_resolve_path(cfg, rc->client_key) : NULL;
    ld_client_opts o = {.target = target,
                        .tls = remote && (rc->is_tls || rc->cert),
                        .tls_ca = ca,
                        .tls_cert = cc,
                        .tls_key = ck,
                        .authority = remote ? rc->authority : NULL,
                        .timeout_ms = 10000,
                        .max_attempts = 3};
    ld_client *cl = ld_client_new(&o, st);
    free(ca);
    free(cc);
    free(ck);
    return cl;
}

int ld_discovery_get_infra(ld_client *cl, const char *project, int allow_cache, ld_arena *a,
                           Feast__Core__Infra **out, ld_status *st)
{
    Feast__Registry__GetInfraRequest req = FEAST__REGISTRY__GET_INFRA_REQUEST__INIT;
    req.project = (char *)project;
    req.allow_cache = allow_cache;
    ProtobufCMessage *resp = NULL;
    if (ld_client_unary(cl, "/feast.registry.RegistryServer/GetInfra", &req.base,
                        &feast__core__infra__descriptor, a, 0, NULL, &resp, st) != 0) {
        ld_status_prefix(st, "GetInfra from registry %s", ld_client_target(cl));
        return -1;
    }
    *out = (Feast__Core__Infra *)resp;
    return 0;
}

int ld_discovery_offline(const ld_config *cfg, ld_endpoint *out, ld_status *st)
{
    ld_client *cl = ld_discovery_registry_client(cfg, st);
    if (!cl)
        return -1;
    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    int rc;
    /* A larder-offline that has just started announces itself within a
     * second: give it LD_DISCOVERY_WAIT_MS before saying it is not there. */
    for (int waited = 0;; waited += 200) {
        Feast__Core__Infra *infra = NULL;
        rc = ld_discovery_get_infra(cl, cfg->project, 1, &a, &infra, st);
        if (rc != 0 || ld_discovery_find(infra, LD_DISCOVERY_OFFLINE_CLASS, cfg->project, out) == 0)
            break;
        if (waited >= LD_DISCOVERY_WAIT_MS) {
            rc = ld_status_set(st, GRPC_STATUS_NOT_FOUND, NULL,
                               "no offline server of project '%s' is announced in registry %s "
                               "(is larder-offline running with this registry?)",
                               cfg->project, ld_client_target(cl));
            break;
        }
        ld_arena_reset(&a);
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL);
    }
    ld_arena_destroy(&a);
    ld_client_free(cl);
    return rc;
}
