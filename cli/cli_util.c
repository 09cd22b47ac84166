/* cli_util: config and registry access for the CLI (see cli_util.h). */
#include "cli_util.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "feast/registry/RegistryServer.pb-c.h"
#include "google/protobuf/empty.pb-c.h"

int cli_bad_option(int c, char *const *argv)
{
    if (c == ':')
        fprintf(stderr, "larder %s: option '%s' needs a value (see --help)\n", argv[0],
                argv[optind - 1]);
    else
        fprintf(stderr, "larder %s: unknown option '%s' (see --help)\n", argv[0], argv[optind - 1]);
    return CLI_EXIT_USAGE;
}

int cli_load_config(const char *cmd, const char *path, ld_config **out)
{
    ld_status st = LD_STATUS_INIT;
    const char *sep = cmd ? " " : "";
    if (!cmd)
        cmd = "";
    if (!path)
        path = "feature_store.yaml";
    if (ld_config_load(path, out, &st) != 0) {
        fprintf(stderr, "larder%s%s: %s\n", sep, cmd, st.msg);
        return CLI_EXIT_INVALID;
    }
    for (size_t i = 0; i < (*out)->nwarnings; i++)
        fprintf(stderr, "larder%s%s: warning: %s\n", sep, cmd, (*out)->warnings[i]);
    return CLI_EXIT_OK;
}

ld_client *cli_registry_client(const ld_config *cfg, const char *override, ld_status *st)
{
    const ld_registry_config *rc = &cfg->registry;
    char target[300];
    ld_client_opts o = {.timeout_ms = 30000};
    char *ca = NULL, *cc = NULL, *ck = NULL;
    if (override) {
        snprintf(target, sizeof target, "%s", override);
    } else if (rc->registry_type == LD_REGISTRY_REMOTE) {
        snprintf(target, sizeof target, "%s", rc->path);
        ca = rc->cert ? ld_config_resolve_path(cfg, rc->cert) : NULL;
        cc = rc->client_cert ? ld_config_resolve_path(cfg, rc->client_cert) : NULL;
        ck = rc->client_key ? ld_config_resolve_path(cfg, rc->client_key) : NULL;
        o.tls = rc->is_tls || rc->cert;
        o.authority = rc->authority;
    } else {
        const char *h = cfg->larder.host ? cfg->larder.host : "127.0.0.1";
        if (!*h || !strcmp(h, "0.0.0.0"))
            h = "127.0.0.1";
        else if (!strcmp(h, "::") || !strcmp(h, "[::]"))
            h = "[::1]";
        snprintf(target, sizeof target, "%s:%d", h, cfg->larder.registry_port);
        if (cfg->larder.tls_cert) {
            /* our own server with TLS: trust its certificate (development) */
            o.tls = 1;
            ca = ld_config_resolve_path(cfg, cfg->larder.tls_cert);
        }
    }
    o.target = target;
    o.tls_ca = ca;
    o.tls_cert = cc;
    o.tls_key = ck;
    ld_client *cl = ld_client_new(&o, st);
    free(ca);
    free(cc);
    free(ck);
    return cl;
}

int cli_exit_for(const ld_status *st)
{
    return st->code == GRPC_STATUS_UNAVAILABLE || st->code == GRPC_STATUS_DEADLINE_EXCEEDED
                   ? CLI_EXIT_UNAVAILABLE
                   : CLI_EXIT_FAIL;
}

const char *cli_status_text(const ld_status *st, char *buf, size_t n)
{
    json_t *j = json_loads(st->msg, 0, NULL);
    const char *m = j ? json_string_value(json_object_get(j, "message")) : NULL;
    snprintf(buf, n, "%s (%s)", m ? m : st->msg, ld_status_code_name(st->code));
    json_decref(j);
    return buf;
}

int cli_fetch_registry(ld_client *cl, const char *project, ld_arena *a, Feast__Core__Registry **out)
{
    ld_status st = LD_STATUS_INIT;
    char buf[LD_STATUS_MSG_MAX + 64];
    Feast__Registry__RefreshRequest rr = FEAST__REGISTRY__REFRESH_REQUEST__INIT;
    rr.project = (char *)project;
    ProtobufCMessage *resp = NULL;
    /* Refresh makes the server re-read its store (writes by other
     * replicas); a server that refuses it still answers Proto. */
    if (ld_client_unary(cl, "/feast.registry.RegistryServer/Refresh", &rr.base,
                        &google__protobuf__empty__descriptor, a, 0, NULL, &resp, &st) != 0 &&
        cli_exit_for(&st) == CLI_EXIT_UNAVAILABLE) {
        fprintf(stderr, "larder: cannot reach the registry at %s: %s\n", ld_client_target(cl),
                cli_status_text(&st, buf, sizeof buf));
        return CLI_EXIT_UNAVAILABLE;
    }
    ld_status_clear(&st);
    Google__Protobuf__Empty e = GOOGLE__PROTOBUF__EMPTY__INIT;
    if (ld_client_unary(cl, "/feast.registry.RegistryServer/Proto", &e.base,
                        &feast__core__registry__descriptor, a, 0, NULL, &resp, &st) != 0) {
        fprintf(stderr, "larder: registry %s: %s\n", ld_client_target(cl),
                cli_status_text(&st, buf, sizeof buf));
        return cli_exit_for(&st);
    }
    *out = (Feast__Core__Registry *)resp;
    return CLI_EXIT_OK;
}

ProtobufCMessage **cli_registry_list(const Feast__Core__Registry *r, cd_kind k, size_t *n)
{
    *n = 0;
    if (!r)
        return NULL;
    switch (k) {
    case CD_PROJECT:
        *n = r->n_projects;
        return (ProtobufCMessage **)r->projects;
    case CD_DATA_SOURCE:
        *n = r->n_data_sources;
        return (ProtobufCMessage **)r->data_sources;
    case CD_ENTITY:
        *n = r->n_entities;
        return (ProtobufCMessage **)r->entities;
    case CD_FEATURE_VIEW:
        *n = r->n_feature_views;
        return (ProtobufCMessage **)r->feature_views;
    case CD_ODFV:
        *n = r->n_on_demand_feature_views;
        return (ProtobufCMessage **)r->on_demand_feature_views;
    case CD_FEATURE_SERVICE:
        *n = r->n_feature_services;
        return (ProtobufCMessage **)r->feature_services;
    case CD_PERMISSION:
        *n = r->n_permissions;
        return (ProtobufCMessage **)r->permissions;
    default:
        return NULL;
    }
}

const ProtobufCMessage *cli_spec_of(const ProtobufCMessage *m)
{
    const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field_by_name(m->descriptor, "spec");
    if (!f)
        return m;
    return *(ProtobufCMessage *const *)((const char *)m + f->offset);
}

const char *cli_str_field(const ProtobufCMessage *m, const char *name)
{
    if (!m)
        return "";
    const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field_by_name(m->descriptor, name);
    if (!f || f->type != PROTOBUF_C_TYPE_STRING)
        return "";
    const char *s = *(char *const *)((const char *)m + f->offset);
    return s ? s : "";
}

const ProtobufCMessage *cli_registry_find(const Feast__Core__Registry *r, cd_kind k,
                                          const char *project, const char *name)
{
    size_t n;
    ProtobufCMessage **v = cli_registry_list(r, k, &n);
    for (size_t i = 0; i < n; i++) {
        const ProtobufCMessage *s = cli_spec_of(v[i]);
        if (!s || strcmp(cli_str_field(s, "name"), name))
            continue;
        if (k == CD_PROJECT || !strcmp(cli_str_field(s, "project"), project))
            return v[i];
    }
    return NULL;
}
