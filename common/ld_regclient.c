#include "ld_regclient.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "google/protobuf/empty.pb-c.h"
#include "ld_client.h"

#define REGISTRY_MAX ((size_t)1 << 30)

struct ld_regclient {
    ld_client *client; /* remote */
    char *path;        /* file */
    char describe[512];
};

static int fetch_file(ld_regclient *r, uint8_t **out, size_t *len, ld_status *st)
{
    FILE *f = fopen(r->path, "rb");
    if (!f)
        return ld_status_set(st, errno == ENOENT ? GRPC_STATUS_NOT_FOUND : GRPC_STATUS_UNAVAILABLE,
                             NULL, "cannot read registry %s: %s", r->path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || (size_t)sb.st_size > REGISTRY_MAX) {
        fclose(f);
        return ld_status_set(st, GRPC_STATUS_DATA_LOSS, NULL, "registry %s is too large", r->path);
    }
    *len = (size_t)sb.st_size;
    *out = malloc(*len + 1);
    size_t got = *out ? fread(*out, 1, *len, f) : 0;
    fclose(f);
    if (got != *len) {
        free(*out);
        *out = NULL;
        return ld_status_set(st, GRPC_STATUS_UNAVAILABLE, NULL, "short read of %s", r->path);
    }
    return 0;
}

static int fetch_remote(ld_regclient *r, uint8_t **out, size_t *len, ld_status *st)
{
    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    Google__Protobuf__Empty req = GOOGLE__PROTOBUF__EMPTY__INIT;
    ProtobufCMessage *resp = NULL;
    int rc = ld_client_unary(r->client, "/feast.registry.RegistryServer/Proto", &req.base,
                             &feast__core__registry__descriptor, &a, 0, NULL, &resp, st);
    if (rc == 0) {
        *len = protobuf_c_message_get_packed_size(resp);
        *out = malloc(*len + 1);
        if (*out)
            protobuf_c_message_pack(resp, *out);
        else
            rc = ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
    } else {
        ld_status_prefix(st, "registry %s", ld_client_target(r->client));
    }
    ld_arena_destroy(&a);
    return rc;
}

int ld_regclient_fetch_bytes(ld_regclient *r, uint8_t **out, size_t *len, ld_status *st)
{
    *out = NULL;
    *len = 0;
    return r->client ? fetch_remote(r, out, len, st) : fetch_file(r, out, len, st);
}

const char *ld_regclient_describe(const ld_regclient *r)
{
    return r->describe;
}

ld_regclient *ld_regclient_new(const ld_config *cfg, ld_status *st)
{
    ld_regclient *r = calloc(1, sizeof *r);
    if (!r) {
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        return NULL;
    }
    const ld_registry_config *rc = &cfg->registry;
    if (rc->registry_type == LD_REGISTRY_REMOTE) {
        char *ca = rc->cert ? ld_config_resolve_path(cfg, rc->cert) : NULL;
        char *cc = rc->client_cert ? ld_config_resolve_path(cfg, rc->client_cert) : NULL;
        char *ck = rc->client_key ? ld_config_resolve_path(cfg, rc->client_key) : NULL;
        ld_client_opts o = {.target = rc->path,
                            .tls = rc->is_tls || rc->cert,
                            .tls_ca = ca,
                            .tls_cert = cc,
                            .tls_key = ck,
                            .authority = rc->authority,
                            .timeout_ms = 10000};
        r->client = ld_client_new(&o, st);
        free(ca);
        free(cc);
        free(ck);
        if (!r->client) {
            free(r);
            return NULL;
        }
        snprintf(r->describe, sizeof r->describe, "remote %s", rc->path);
    } else if (rc->registry_type == LD_REGISTRY_FILE) {
        r->path = ld_config_resolve_path(cfg, rc->path);
        snprintf(r->describe, sizeof r->describe, "file %s", r->path);
    } else {
        ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                      "this server reads a file or remote registry (for registry_type sql, run "
                      "larder-registry on it and use registry_type remote)");
        free(r);
        return NULL;
    }
    return r;
}

void ld_regclient_free(ld_regclient *r)
{
    if (!r)
        return;
    ld_client_free(r->client);
    free(r->path);
    free(r);
}
