/* larder plan / apply / registry-dump: feature definitions from YAML into
 * the registry, shown first as a diff against what the registry holds. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_defs.h"
#include "cli_json.h"
#include "cli_util.h"
#include "feast/registry/RegistryServer.pb-c.h"
#include "google/protobuf/empty.pb-c.h"

typedef enum { T_CREATE, T_UPDATE, T_UNCHANGED, T_DELETE } transition;

typedef struct change {
    transition t;
    cd_kind kind;
    const char *name;
    const cd_obj *want;           /* create / update / unchanged */
    const ProtobufCMessage *have; /* update / unchanged / delete */
    char *diff;                   /* "\tfield: old -> new\n" lines (malloc'd) */
    int hidden;
} change;

typedef struct plan {
    change *v;
    size_t n, cap;
    size_t counts[4];
} plan;

/* ------------------------------------------------------------ diff */

static char *field_json(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    json_t *j = cj_field(m, f, CJ_SKIP_SOURCE_META);
    if (!j)
        return NULL;
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    json_decref(j);
    return s;
}

/* Feast's diff_registry_objects: spec fields (a DataSource's own fields)
 * compared one by one; project and timestamps are not compared. */
static char *spec_diff(const ProtobufCMessage *have, const ProtobufCMessage *want)
{
    const ProtobufCMessage *a = cli_spec_of(have), *b = cli_spec_of(want);
    ld_buf out = LD_BUF_INIT;
    if (!a || !b || a->descriptor != b->descriptor) {
        ld_buf_puts(&out, "\t(the registry holds a different kind of object)\n");
        return ld_buf_steal(&out, NULL);
    }
    const ProtobufCMessageDescriptor *d = b->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (!strcmp(f->name, "project") || (a == have && !strcmp(f->name, "meta")))
            continue;
        char *x = field_json(a, f), *y = field_json(b, f);
        if ((x || y) && (!x || !y || strcmp(x, y)))
            ld_buf_printf(&out, "\t%s: %s -> %s\n", f->name, x ? x : "(unset)", y ? y : "(unset)");
        free(x);
        free(y);
    }
    if (!out.len)
        return NULL;
    ld_buf_putc(&out, 0);
    return ld_buf_steal(&out, NULL);
}

static change *plan_add(plan *p, change c)
{
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 32;
        change *nv = realloc(p->v, p->cap * sizeof *nv);
        if (!nv) {
            fprintf(stderr, "larder: out of memory\n");
            exit(1);
        }
        p->v = nv;
    }
    p->v[p->n] = c;
    if (!c.hidden)
        p->counts[c.t]++;
    return &p->v[p->n++];
}

static int desired_has(const cd_defs *defs, cd_kind k, const char *name)
{
    for (size_t i = 0; i < defs->n; i++)
        if (defs->v[i].kind == k && !strcmp(defs->v[i].name, name))
            return 1;
    return 0;
}

static void make_plan(const cd_defs *defs, const Feast__Core__Registry *reg, const char *project,
                      int prune, plan *p)
{
    memset(p, 0, sizeof *p);
    for (size_t i = 0; i < defs->n; i++) {
        const cd_obj *o = &defs->v[i];
        const ProtobufCMessage *have = cli_registry_find(reg, o->kind, project, o->name);
        change c = {T_CREATE, o->kind, o->name, o, have, NULL, o->hidden};
        if (have) {
            c.diff = spec_diff(have, o->msg);
            c.t = c.diff ? T_UPDATE : T_UNCHANGED;
        }
        plan_add(p, c);
    }
    if (!prune)
        return;
    for (int k = CD_DATA_SOURCE; k < CD_NKINDS; k++) {
        size_t n;
        ProtobufCMessage **v = cli_registry_list(reg, (cd_kind)k, &n);
        for (size_t i = 0; i < n; i++) {
            const ProtobufCMessage *s = cli_spec_of(v[i]);
            const char *name = cli_str_field(s, "name");
            if (strcmp(cli_str_field(s, "project"), project) || desired_has(defs, (cd_kind)k, name))
                continue;
            plan_add(p, (change){T_DELETE, (cd_kind)k, name, NULL, v[i], NULL,
                                 k == CD_ENTITY && !strcmp(name, "__dummy")});
        }
    }
}

static void plan_free(plan *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->v[i].diff);
    free(p->v);
}

static void print_plan(const plan *p, int verbose)
{
    static const char *const verbs[] = {"Created", "Updated", "Unchanged", "Deleted"};
    int any = 0;
    for (size_t i = 0; i < p->n; i++) {
        const change *c = &p->v[i];
        if (c->hidden || (c->t == T_UNCHANGED && !verbose))
            continue;
        printf("%s %s %s\n", verbs[c->t], cd_kind_label[c->kind], c->name);
        if (c->diff)
            fputs(c->diff, stdout);
        any |= c->t != T_UNCHANGED;
    }
    if (!any)
        printf("No changes to registry\n");
    printf("Plan: %zu to create, %zu to update, %zu to delete, %zu unchanged.\n",
           p->counts[T_CREATE], p->counts[T_UPDATE], p->counts[T_DELETE], p->counts[T_UNCHANGED]);
}

/* ------------------------------------------------------------ writes */

static int rpc(ld_client *cl, const char *method, const ProtobufCMessage *req, const char *what,
               const char *name)
{
    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    ld_status st = LD_STATUS_INIT;
    ProtobufCMessage *resp;
    int rc = ld_client_unary(cl, method, req, &google__protobuf__empty__descriptor, &a, 0, NULL,
                             &resp, &st);
    ld_arena_destroy(&a);
    if (rc != 0) {
        char buf[LD_STATUS_MSG_MAX + 64];
        fprintf(stderr, "larder: %s %s: %s\n", what, name, cli_status_text(&st, buf, sizeof buf));
        return cli_exit_for(&st);
    }
    return CLI_EXIT_OK;
}

/* Set the field `name` of m to the value at `value` (a pointer or a bool),
 * selecting it when it is a member of a oneof. -1 when m has no such field. */
static int set_field(ProtobufCMessage *m, const char *name, const void *value, size_t size)
{
    const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field_by_name(m->descriptor, name);
    if (!f)
        return -1;
    memcpy((char *)m + f->offset, value, size);
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        *(uint32_t *)((char *)m + f->quantifier_offset) = f->id;
    return 0;
}

/* Every Apply*Request is {the object, project, commit}, the object in the
 * field named here (ApplyProjectRequest's `project` is the object itself;
 * ApplyFeatureView's object fields are a oneof). */
static const struct {
    const char *method;
    const ProtobufCMessageDescriptor *desc;
    const char *field;
} applies[CD_NKINDS] = {
        [CD_PROJECT] = {"ApplyProject", &feast__registry__apply_project_request__descriptor,
                        "project"},
        [CD_DATA_SOURCE] = {"ApplyDataSource",
                            &feast__registry__apply_data_source_request__descriptor, "data_source"},
        [CD_ENTITY] = {"ApplyEntity", &feast__registry__apply_entity_request__descriptor, "entity"},
        [CD_FEATURE_VIEW] = {"ApplyFeatureView",
                             &feast__registry__apply_feature_view_request__descriptor,
                             "feature_view"},
        [CD_ODFV] = {"ApplyFeatureView", &feast__registry__apply_feature_view_request__descriptor,
                     "on_demand_feature_view"},
        [CD_FEATURE_SERVICE] = {"ApplyFeatureService",
                                &feast__registry__apply_feature_service_request__descriptor,
                                "feature_service"},
        [CD_PERMISSION] = {"ApplyPermission",
                           &feast__registry__apply_permission_request__descriptor, "permission"},
};

static int apply_one(ld_client *cl, const change *c, const char *project)
{
    const ProtobufCMessageDescriptor *d = applies[c->kind].desc;
    char method[96], what[64];
    snprintf(method, sizeof method, "/feast.registry.RegistryServer/%s", applies[c->kind].method);
    snprintf(what, sizeof what, "apply %s", cd_kind_label[c->kind]);
    ProtobufCMessage *req = d ? calloc(1, d->sizeof_message) : NULL;
    if (req)
        protobuf_c_message_init(d, req);
    const protobuf_c_boolean commit = 1;
    if (!req || set_field(req, applies[c->kind].field, &c->want->msg, sizeof c->want->msg) != 0 ||
        (c->kind != CD_PROJECT && set_field(req, "project", &project, sizeof project) != 0) ||
        set_field(req, "commit", &commit, sizeof commit) != 0) {
        fprintf(stderr, "larder: %s %s: cannot build the request\n", what, c->name);
        free(req);
        return CLI_EXIT_FAIL;
    }
    int rc = rpc(cl, method, req, what, c->name);
    free(req);
    return rc;
}

static int delete_one(ld_client *cl, const change *c, const char *project)
{
    /* Every Delete*Request is {name = 1, project = 2, commit = 3}. */
    Feast__Registry__DeleteEntityRequest r = FEAST__REGISTRY__DELETE_ENTITY_REQUEST__INIT;
    static const char *const methods[CD_NKINDS] = {
            [CD_DATA_SOURCE] = "DeleteDataSource",         [CD_ENTITY] = "DeleteEntity",
            [CD_FEATURE_VIEW] = "DeleteFeatureView",       [CD_ODFV] = "DeleteFeatureView",
            [CD_FEATURE_SERVICE] = "DeleteFeatureService", [CD_PERMISSION] = "DeletePermission",
    };
    const ProtobufCMessageDescriptor *descs[CD_NKINDS] = {
            [CD_DATA_SOURCE] = &feast__registry__delete_data_source_request__descriptor,
            [CD_ENTITY] = &feast__registry__delete_entity_request__descriptor,
            [CD_FEATURE_VIEW] = &feast__registry__delete_feature_view_request__descriptor,
            [CD_ODFV] = &feast__registry__delete_feature_view_request__descriptor,
            [CD_FEATURE_SERVICE] = &feast__registry__delete_feature_service_request__descriptor,
            [CD_PERMISSION] = &feast__registry__delete_permission_request__descriptor,
    };
    r.base.descriptor = descs[c->kind];
    r.name = (char *)c->name;
    r.project = (char *)project;
    r.commit = 1;
    char method[96], what[64];
    snprintf(method, sizeof method, "/feast.registry.RegistryServer/%s", methods[c->kind]);
    snprintf(what, sizeof what, "delete %s", cd_kind_label[c->kind]);
    return rpc(cl, method, &r.base, what, c->name);
}

/* ------------------------------------------------------------ plan / apply */

static void usage_apply(FILE *f, const char *cmd)
{
    fprintf(f,
            "usage: larder %s [OPTIONS] FILE...\n\n"
            "%s feature definitions (YAML, see cli/README.md) %s the registry of the\n"
            "project in feature_store.yaml. The plan lists what is created, updated (field by\n"
            "field) and, with --prune, deleted; unchanged objects are not written again.\n"
            "Every file is checked before anything is written: a problem is reported as\n"
            "FILE:LINE: key 'path': problem, with exit code 3.\n\n"
            "options:\n"
            "  -c, --config FILE      feature_store.yaml (default ./feature_store.yaml)\n"
            "  -r, --registry ADDR    registry server host:port (default: from the config)\n"
            "      --prune            also delete the project's objects the files do not define\n"
            "                         (data sources, entities, views, services, permissions)\n"
            "  -v, --verbose          also list unchanged objects\n"
            "%s"
            "  -h, --help             this help\n\n"
            "exit codes: 0 ok, 1 a write failed, 2 usage, 3 invalid definitions or config,\n"
            "4 registry unreachable\n",
            cmd, !strcmp(cmd, "plan") ? "Compares the" : "Registers the",
            !strcmp(cmd, "plan") ? "with" : "in",
            !strcmp(cmd, "apply")
                    ? "  -n, --dry-run          print the plan, write nothing (= larder plan)\n"
                    : "");
}

static int run_apply(int argc, char **argv, int write)
{
    const char *cfg_path = NULL, *registry = NULL;
    int prune = 0, verbose = 0, dry = !write;
    enum { OPT_PRUNE = 1000 };
    static const struct option lo[] = {{"config", required_argument, NULL, 'c'},
                                       {"registry", required_argument, NULL, 'r'},
                                       {"prune", no_argument, NULL, OPT_PRUNE},
                                       {"verbose", no_argument, NULL, 'v'},
                                       {"dry-run", no_argument, NULL, 'n'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "c:r:vnh", lo, NULL)) != -1) {
        switch (ch) {
        case 'c':
            cfg_path = optarg;
            break;
        case 'r':
            registry = optarg;
            break;
        case OPT_PRUNE:
            prune = 1;
            break;
        case 'v':
            verbose = 1;
            break;
        case 'n':
            if (!write)
                goto bad;
            dry = 1;
            break;
        case 'h':
            usage_apply(stdout, argv[0]);
            return CLI_EXIT_OK;
        default:
        bad:
            usage_apply(stderr, argv[0]);
            return CLI_EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "larder %s: name at least one definitions file\n", argv[0]);
        usage_apply(stderr, argv[0]);
        return CLI_EXIT_USAGE;
    }
    ld_config *cfg = NULL;
    int rc = cli_load_config(NULL, cfg_path, &cfg);
    if (rc != CLI_EXIT_OK)
        return rc;
    ld_status st = LD_STATUS_INIT;
    ld_client *cl = cli_registry_client(cfg, registry, &st);
    if (!cl) {
        fprintf(stderr, "larder: registry client: %s\n", st.msg);
        ld_config_free(cfg);
        return CLI_EXIT_INVALID;
    }
    ld_arena ra;
    ld_arena_init(&ra, NULL, 0, 0);
    Feast__Core__Registry *reg = NULL;
    cd_defs defs;
    memset(&defs, 0, sizeof defs);
    plan p;
    memset(&p, 0, sizeof p);
    rc = cli_fetch_registry(cl, cfg->project, &ra, &reg);
    if (rc != CLI_EXIT_OK)
        goto out;
    ld_buf errs = LD_BUF_INIT;
    int nerr = cd_load((const char *const *)argv + optind, (size_t)(argc - optind), cfg, reg, &defs,
                       &errs);
    if (nerr) {
        fwrite(errs.data, 1, errs.len, stderr);
        fprintf(stderr, "larder %s: %d problem%s; nothing was written\n", argv[0], nerr,
                nerr == 1 ? "" : "s");
        ld_buf_free(&errs);
        rc = CLI_EXIT_INVALID;
        goto out;
    }
    ld_buf_free(&errs);
    make_plan(&defs, reg, cfg->project, prune, &p);
    print_plan(&p, verbose);
    if (dry) {
        if (write)
            printf("Dry run: nothing was written.\n");
        goto out;
    }
    size_t written = 0;
    for (size_t i = 0; i < p.n && rc == CLI_EXIT_OK; i++) {
        const change *c = &p.v[i];
        if (c->t == T_CREATE || c->t == T_UPDATE) {
            rc = apply_one(cl, c, cfg->project);
            written += rc == CLI_EXIT_OK && !c->hidden;
        }
    }
    /* deletions: dependents first */
    static const cd_kind del_order[] = {CD_FEATURE_SERVICE, CD_ODFV,        CD_FEATURE_VIEW,
                                        CD_ENTITY,          CD_DATA_SOURCE, CD_PERMISSION};
    for (size_t k = 0; k < sizeof del_order / sizeof del_order[0]; k++)
        for (size_t i = 0; i < p.n && rc == CLI_EXIT_OK; i++)
            if (p.v[i].t == T_DELETE && p.v[i].kind == del_order[k]) {
                rc = delete_one(cl, &p.v[i], cfg->project);
                written += rc == CLI_EXIT_OK && !p.v[i].hidden;
            }
    if (rc == CLI_EXIT_OK && written == 0)
        printf("The registry at %s (project %s) is up to date: nothing written.\n",
               ld_client_target(cl), cfg->project);
    else if (rc == CLI_EXIT_OK)
        printf("Applied to the registry at %s (project %s): %zu change%s written.\n",
               ld_client_target(cl), cfg->project, written, written == 1 ? "" : "s");
    else
        fprintf(stderr, "larder apply: stopped after %zu change%s were written\n", written,
                written == 1 ? "" : "s");
out:
    plan_free(&p);
    cd_free(&defs);
    ld_arena_destroy(&ra);
    ld_client_free(cl);
    ld_config_free(cfg);
    return rc;
}

int cli_cmd_apply(int argc, char **argv)
{
    return run_apply(argc, argv, 1);
}

int cli_cmd_plan(int argc, char **argv)
{
    return run_apply(argc, argv, 0);
}

/* ------------------------------------------------------------ registry-dump */

static int by_name(const void *a, const void *b)
{
    const ProtobufCMessage *x = *(ProtobufCMessage *const *)a, *y = *(ProtobufCMessage *const *)b;
    return strcmp(cli_str_field(cli_spec_of(x), "name"), cli_str_field(cli_spec_of(y), "name"));
}

/* The objects of v[0..n) in the project, sorted by name, as root[key]
 * (left out when there are none). */
static void dump_kind(json_t *root, const char *key, ProtobufCMessage *const *v, size_t n,
                      const char *project)
{
    ProtobufCMessage **sel = malloc((n + 1) * sizeof *sel);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(cli_str_field(cli_spec_of(v[i]), "project"), project))
            sel[m++] = v[i];
    qsort(sel, m, sizeof *sel, by_name);
    if (m) {
        json_t *a = json_array();
        for (size_t i = 0; i < m; i++)
            json_array_append_new(a, cj_message(sel[i], 0));
        json_object_set_new(root, key, a);
    }
    free(sel);
}

/* Feast's Registry.to_dict(project): objects of the project, sorted by name,
 * each as MessageToJson; then json.dumps(indent=2, sort_keys=True). */
static json_t *dump_json(const Feast__Core__Registry *reg, const char *project,
                         const Feast__Registry__ListProjectMetadataResponse *pm,
                         const Feast__Core__Infra *infra)
{
    json_t *root = json_object();
    json_object_set_new(root, "project", json_string(project));
    if (pm && pm->n_project_metadata) {
        json_t *a = json_array();
        for (size_t i = 0; i < pm->n_project_metadata; i++)
            json_array_append_new(a, cj_message(&pm->project_metadata[i]->base, 0));
        json_object_set_new(root, "projectMetadata", a);
    }
    static const struct {
        cd_kind kind;
        const char *key;
    } kinds[] = {{CD_DATA_SOURCE, "dataSources"},   {CD_ENTITY, "entities"},
                 {CD_FEATURE_VIEW, "featureViews"}, {CD_FEATURE_SERVICE, "featureServices"},
                 {CD_ODFV, "onDemandFeatureViews"}, {CD_PERMISSION, "permissions"}};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        size_t n;
        ProtobufCMessage **v = cli_registry_list(reg, kinds[k].kind, &n);
        dump_kind(root, kinds[k].key, v, n, project);
    }
    struct {
        size_t n;
        ProtobufCMessage **v;
        const char *key;
    } more[] = {{reg->n_stream_feature_views, (ProtobufCMessage **)reg->stream_feature_views,
                 "streamFeatureViews"},
                {reg->n_label_views, (ProtobufCMessage **)reg->label_views, "labelViews"},
                {reg->n_saved_datasets, (ProtobufCMessage **)reg->saved_datasets, "savedDatasets"}};
    for (size_t k = 0; k < sizeof more / sizeof more[0]; k++)
        dump_kind(root, more[k].key, more[k].v, more[k].n, project);
    if (infra && infra->n_infra_objects) {
        json_t *a = json_array();
        for (size_t i = 0; i < infra->n_infra_objects; i++)
            json_array_append_new(a, cj_message(&infra->infra_objects[i]->base, 0));
        json_object_set_new(root, "infra", a);
    }
    return root;
}

static void usage_dump(FILE *f)
{
    fprintf(f, "usage: larder registry-dump [OPTIONS]\n\n"
               "Print the registry's objects of the project as JSON, the way `feast\n"
               "registry-dump` does (proto3 JSON with camelCase names, each list sorted by\n"
               "name, keys sorted, indented by 2).\n\n"
               "options:\n"
               "  -c, --config FILE      feature_store.yaml (default ./feature_store.yaml)\n"
               "  -r, --registry ADDR    registry server host:port (default: from the config)\n"
               "  -p, --project NAME     another project than the config's\n"
               "  -h, --help             this help\n");
}

int cli_cmd_registry_dump(int argc, char **argv)
{
    const char *cfg_path = NULL, *registry = NULL, *project = NULL;
    static const struct option lo[] = {{"config", required_argument, NULL, 'c'},
                                       {"registry", required_argument, NULL, 'r'},
                                       {"project", required_argument, NULL, 'p'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "c:r:p:h", lo, NULL)) != -1) {
        switch (ch) {
        case 'c':
            cfg_path = optarg;
            break;
        case 'r':
            registry = optarg;
            break;
        case 'p':
            project = optarg;
            break;
        case 'h':
            usage_dump(stdout);
            return CLI_EXIT_OK;
        default:
            usage_dump(stderr);
            return CLI_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        usage_dump(stderr);
        return CLI_EXIT_USAGE;
    }
    ld_config *cfg = NULL;
    int rc = cli_load_config(NULL, cfg_path, &cfg);
    if (rc != CLI_EXIT_OK)
        return rc;
    if (!project)
        project = cfg->project;
    ld_status st = LD_STATUS_INIT;
    ld_client *cl = cli_registry_client(cfg, registry, &st);
    if (!cl) {
        fprintf(stderr, "larder: registry client: %s\n", st.msg);
        ld_config_free(cfg);
        return CLI_EXIT_INVALID;
    }
    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    Feast__Core__Registry *reg = NULL;
    rc = cli_fetch_registry(cl, project, &a, &reg);
    if (rc == CLI_EXIT_OK) {
        Feast__Registry__ListProjectMetadataRequest pr =
                FEAST__REGISTRY__LIST_PROJECT_METADATA_REQUEST__INIT;
        pr.project = (char *)project;
        ProtobufCMessage *pm = NULL, *infra = NULL;
        if (ld_client_unary(cl, "/feast.registry.RegistryServer/ListProjectMetadata", &pr.base,
                            &feast__registry__list_project_metadata_response__descriptor, &a, 0,
                            NULL, &pm, &st) != 0)
            pm = NULL;
        ld_status_clear(&st);
        Feast__Registry__GetInfraRequest ir = FEAST__REGISTRY__GET_INFRA_REQUEST__INIT;
        ir.project = (char *)project;
        if (ld_client_unary(cl, "/feast.registry.RegistryServer/GetInfra", &ir.base,
                            &feast__core__infra__descriptor, &a, 0, NULL, &infra, &st) != 0)
            infra = NULL;
        json_t *j = dump_json(reg, project, (Feast__Registry__ListProjectMetadataResponse *)pm,
                              (Feast__Core__Infra *)infra);
        char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
        if (s) {
            puts(s);
            free(s);
        } else {
            rc = CLI_EXIT_FAIL;
        }
        json_decref(j);
    }
    ld_arena_destroy(&a);
    ld_client_free(cl);
    ld_config_free(cfg);
    return rc;
}
