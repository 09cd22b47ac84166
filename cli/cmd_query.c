/* larder get-online-features / get-historical-features.
 *
 * get-online-features runs the online server's serving core in this process
 * (registry snapshot + the online store feature_store.yaml names), so a
 * lookup answers exactly as larder-online would, with no server address to
 * configure. Output: a table, or Feast's /get-online-features JSON (--json).
 *
 * get-historical-features sends the entity CSV to the offline server (found
 * through the registry) over Arrow Flight, as Feast's remote offline store
 * does, and writes the point-in-time-correct result as CSV or Arrow IPC. */
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grpc/grpc.h>

#include "cli.h"
#include "cli_util.h"
#include "feast/core/Registry.pb-c.h"
#include "ld_buf.h"
#include "ld_config.h"
#include "ld_log.h"
#include "ld_discovery.h"
#include "ld_regclient.h"
#include "ld_time.h"
#include "ld_value.h"
#include "ol_flight_client.h"
#include "ol_json.h"
#include "ol_registry.h"
#include "ol_serve.h"
#include "ol_server.h"
#include "ol_store.h"
#include "ot_csv.h"
#include "ot_ipc.h"

#define MAX_ITEMS 4096

/* ------------------------------------------------------------ online */

typedef struct get_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    ld_status st;
    const ol_get_response *resp;
} get_wait;

static void on_get(void *arg, const ol_get_response *resp, const ld_status *st)
{
    get_wait *w = arg;
    pthread_mutex_lock(&w->mu);
    w->resp = resp;
    if (st)
        w->st = *st;
    w->done = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static const char *status_name(int s)
{
    static const char *const names[] = {"INVALID", "PRESENT", "NULL_VALUE", "NOT_FOUND",
                                        "OUTSIDE_MAX_AGE"};
    return s >= 0 && s < 5 ? names[s] : "?";
}

/* One cell as text: the value as Feast renders it in JSON, plus the status
 * when it is not PRESENT. */
static void cell_text(const ol_column_out *c, size_t row, ld_arena *a, ld_buf *out)
{
    ld_buf_reset(out);
    Feast__Types__Value *v = NULL;
    if (c->val[row])
        v = feast__types__value__unpack(ld_arena_pbc(a), c->val_len[row], c->val[row]);
    ld_status st = LD_STATUS_INIT;
    if (!v || ld_value_to_json(v, out, &st) != 0) {
        ld_buf_reset(out);
        ld_buf_puts(out, "null");
    }
    if (c->status[row] != 1)
        ld_buf_printf(out, " (%s)", status_name(c->status[row]));
}

static void print_table(const ol_get_response *r)
{
    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    size_t nc = r->n_cols, nr = r->n_rows;
    ld_buf *cells = calloc((nr + 1) * nc + 1, sizeof *cells);
    size_t *width = calloc(nc + 1, sizeof *width);
    if (!cells || !width) {
        free(cells);
        free(width);
        ld_arena_destroy(&a);
        return;
    }
    for (size_t c = 0; c < nc; c++) {
        ld_buf_puts(&cells[c], r->cols[c].name);
        for (size_t i = 0; i < nr; i++)
            cell_text(&r->cols[c], i, &a, &cells[(i + 1) * nc + c]);
    }
    for (size_t k = 0; k < (nr + 1) * nc; k++)
        if (cells[k].len > width[k % nc])
            width[k % nc] = cells[k].len;
    for (size_t i = 0; i <= nr; i++) {
        for (size_t c = 0; c < nc; c++) {
            ld_buf *b = &cells[i * nc + c];
            printf("%s%.*s", c ? "  " : "", (int)b->len, b->data ? b->data : "");
            if (c + 1 < nc)
                printf("%*s", (int)(width[c] - b->len), "");
        }
        printf("\n");
        if (i == 0) {
            for (size_t c = 0; c < nc; c++) {
                printf("%s", c ? "  " : "");
                for (size_t k = 0; k < width[c]; k++)
                    putchar('-');
            }
            printf("\n");
        }
    }
    for (size_t k = 0; k < (nr + 1) * nc; k++)
        ld_buf_free(&cells[k]);
    free(cells);
    free(width);
    ld_arena_destroy(&a);
}

static void online_usage(FILE *f)
{
    fprintf(f, "usage: larder get-online-features (-f VIEW:FEATURE... | --feature-service NAME)\n"
               "                                  -e KEY=VALUE[,VALUE...]... [OPTIONS]\n\n"
               "Look up online feature values for entity rows, answered as larder-online would\n"
               "(the serving core runs in this process, on the registry and the online store of\n"
               "feature_store.yaml). Each -e gives one entity column; columns with several values\n"
               "give several rows (all columns need the same number of values).\n\n"
               "options:\n"
               "  -c, --config FILE          feature_store.yaml (default ./feature_store.yaml)\n"
               "  -f, --feature REF          a feature reference view:feature (repeatable)\n"
               "      --feature-service NAME the features of a feature service\n"
               "  -e, --entity KEY=VALUES    an entity column, values separated by commas\n"
               "      --full-feature-names   name features view__feature\n"
               "      --json                 Feast's /get-online-features JSON instead of a table\n"
               "  -h, --help                 this text\n\n"
               "Values are read as the join key's declared type (\"1001\" for an Int64 key).\n"
               "exit codes: 0 ok, 1 failed, 2 bad usage, 3 invalid config, 4 a server or store\n"
               "could not be reached.\n");
}

/* Split "key=v1,v2" into a column of string Values (coerced later). */
static int parse_entity(const char *arg, ld_arena *a, ol_column_in *col)
{
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg)
        return -1;
    col->name = ld_arena_strndup(a, arg, (size_t)(eq - arg));
    const char *p = eq + 1;
    size_t n = 1;
    for (const char *q = p; *q; q++)
        n += *q == ',';
    col->values = ld_arena_calloc(a, n, sizeof *col->values);
    col->n = 0;
    for (;;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        col->values[col->n++] = ld_value_string(a, p, len);
        if (!e)
            break;
        p = e + 1;
    }
    return 0;
}

int cli_cmd_get_online_features(int argc, char **argv)
{
    static const struct option longopts[] = {
            {"config", required_argument, NULL, 'c'},
            {"feature", required_argument, NULL, 'f'},
            {"features", required_argument, NULL, 'f'},
            {"feature-service", required_argument, NULL, 'S'},
            {"entity", required_argument, NULL, 'e'},
            {"full-feature-names", no_argument, NULL, 'F'},
            {"json", no_argument, NULL, 'J'},
            {"help", no_argument, NULL, 'h'},
            {NULL, 0, NULL, 0},
    };
    const char *config = "feature_store.yaml", *service = NULL;
    const char *features[MAX_ITEMS];
    const char *entities[MAX_ITEMS];
    size_t nf = 0, ne = 0;
    int json = 0, full = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":c:f:e:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 'f':
            if (nf == MAX_ITEMS)
                goto too_many;
            features[nf++] = optarg;
            break;
        case 'S':
            service = optarg;
            break;
        case 'e':
            if (ne == MAX_ITEMS)
                goto too_many;
            entities[ne++] = optarg;
            break;
        case 'F':
            full = 1;
            break;
        case 'J':
            json = 1;
            break;
        case 'h':
            online_usage(stdout);
            return CLI_EXIT_OK;
        default:
            return cli_bad_option(c, argv);
        }
    }
    if (optind < argc) {
        fprintf(stderr, "larder %s: unexpected argument '%s' (see --help)\n", argv[0],
                argv[optind]);
        return CLI_EXIT_USAGE;
    }
    if ((nf == 0) == (service == NULL)) {
        fprintf(stderr, "larder %s: give features (-f) or --feature-service, not both\n", argv[0]);
        return CLI_EXIT_USAGE;
    }
    if (ne == 0) {
        fprintf(stderr, "larder %s: give at least one entity column (-e KEY=VALUE)\n", argv[0]);
        return CLI_EXIT_USAGE;
    }
    ld_arena a;
    ld_arena_init(&a, NULL, 0, 0);
    ol_column_in *cols = ld_arena_calloc(&a, ne, sizeof *cols);
    for (size_t i = 0; i < ne; i++)
        if (parse_entity(entities[i], &a, &cols[i]) != 0) {
            fprintf(stderr, "larder %s: -e '%s' is not KEY=VALUE[,VALUE...]\n", argv[0],
                    entities[i]);
            ld_arena_destroy(&a);
            return CLI_EXIT_USAGE;
        }
    ld_config *cfg;
    if (cli_load_config(argv[0], config, &cfg) != CLI_EXIT_OK) {
        ld_arena_destroy(&a);
        return CLI_EXIT_INVALID;
    }
    ld_log_setup(LD_LOG_WARN, LD_LOG_TEXT, "larder"); /* store chatter off */
    grpc_init();
    int rc = CLI_EXIT_OK;
    ld_status st = LD_STATUS_INIT;
    ol_registry *reg = NULL;
    ol_store *store = NULL;
    ol_server *core = NULL;
    ol_snapshot *snap = NULL;
    if (!(reg = ol_registry_new(cfg, &st)) || !(store = ol_store_new(cfg, &st)) ||
        !(core = ol_server_new(cfg, reg, store, &st))) {
        fprintf(stderr, "larder %s: %s\n", argv[0], st.msg);
        rc = st.code == GRPC_STATUS_INVALID_ARGUMENT ? CLI_EXIT_INVALID : CLI_EXIT_UNAVAILABLE;
        goto out;
    }
    if (!(snap = ol_registry_snapshot(reg))) {
        fprintf(stderr, "larder %s: the registry (%s) could not be read\n", argv[0],
                cfg->registry.path ? cfg->registry.path : "?");
        rc = CLI_EXIT_UNAVAILABLE;
        goto out;
    }
    ol_snapshot_unref(snap);
    for (int i = 0; i < 500 && !store->ops->healthy(store); i++) {
        struct timespec ts = {0, 10 * 1000000};
        nanosleep(&ts, NULL);
    }
    ol_get_request req = {.feature_service = service,
                          .features = features,
                          .n_features = nf,
                          .entities = cols,
                          .n_entities = ne,
                          .full_feature_names = full};
    get_wait w = {.st = LD_STATUS_INIT};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    if (ol_serve_get(core, &req, &a, ld_mono_us() + 60 * 1000000LL, NULL, on_get, &w, &st) != 0) {
        w.st = st;
        w.done = 1;
    }
    pthread_mutex_lock(&w.mu);
    while (!w.done)
        pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    if (!ld_status_ok(&w.st) || !w.resp) {
        fprintf(stderr, "larder %s: %s\n", argv[0], w.st.msg);
        rc = cli_exit_for(&w.st);
    } else if (json) {
        ld_buf b = LD_BUF_INIT;
        if (ol_json_encode_get(w.resp, &b, &st) != 0) {
            fprintf(stderr, "larder %s: %s\n", argv[0], st.msg);
            rc = CLI_EXIT_FAIL;
        } else {
            fwrite(b.data, 1, b.len, stdout);
            putchar('\n');
        }
        ld_buf_free(&b);
    } else {
        print_table(w.resp);
    }
    if (w.resp)
        ol_get_response_release(w.resp);
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
out:
    ol_server_free(core);
    if (store)
        store->ops->free(store);
    ol_registry_free(reg);
    ld_config_free(cfg);
    ld_arena_destroy(&a);
    grpc_shutdown();
    return rc;
too_many:
    fprintf(stderr, "larder %s: too many -f/-e options (at most %d)\n", argv[0], MAX_ITEMS);
    return CLI_EXIT_USAGE;
}

/* ------------------------------------------------------------ historical */

static void historical_usage(FILE *f)
{
    fprintf(f,
            "usage: larder get-historical-features --entities FILE.csv\n"
            "          (-f VIEW:FEATURE... | --feature-service NAME) [--out "
            "FILE.csv|FILE.arrow]\n\n"
            "Point-in-time-correct feature values for every row of the entity CSV (join keys\n"
            "and an event_timestamp column), computed by the offline server, which is found\n"
            "through the registry.\n\n"
            "options:\n"
            "  -c, --config FILE          feature_store.yaml (default ./feature_store.yaml)\n"
            "      --entities FILE.csv    the entity dataframe\n"
            "  -f, --feature REF          a feature reference view:feature (repeatable)\n"
            "      --feature-service NAME the features of a feature service\n"
            "      --full-feature-names   name features view__feature\n"
            "  -o, --out FILE             write the result there: .arrow/.ipc/.feather writes an\n"
            "                             Arrow IPC stream, anything else CSV (default: CSV on\n"
            "                             stdout)\n"
            "  -h, --help                 this text\n\n"
            "exit codes: 0 ok, 1 failed, 2 bad usage, 3 invalid config, 4 a server could not be\n"
            "reached.\n");
}

typedef struct hist_out {
    FILE *f;
    int arrow;
    int wrote_header;
    int64_t rows;
} hist_out;

static int on_hist_batch(void *arg, const ot_table *t, ld_status *st)
{
    hist_out *o = arg;
    if (o->arrow) {
        ld_buf h = LD_BUF_INIT, body = LD_BUF_INIT, frame = LD_BUF_INIT;
        int rc = 0;
        if (!o->wrote_header) {
            ot_ipc_write_schema(t, &h);
            ot_ipc_frame(&frame, (const uint8_t *)h.data, h.len, NULL, 0);
        }
        if (t->n_rows > 0) {
            if (ot_ipc_write_batch(t, 0, t->n_rows, &h, &body, st) != 0)
                rc = -1;
            else
                ot_ipc_frame(&frame, (const uint8_t *)h.data, h.len, (const uint8_t *)body.data,
                             body.len);
        }
        if (rc == 0 && frame.len && fwrite(frame.data, 1, frame.len, o->f) != frame.len)
            rc = ld_status_set(st, GRPC_STATUS_INTERNAL, NULL, "write error");
        ld_buf_free(&h);
        ld_buf_free(&body);
        ld_buf_free(&frame);
        o->wrote_header = 1;
        o->rows += t->n_rows;
        return rc;
    }
    int rc = o->wrote_header ? ot_csv_write_rows(t, o->f, st) : ot_csv_write(t, o->f, st);
    o->wrote_header = 1;
    o->rows += t->n_rows;
    return rc;
}

static int ends_with(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && !strcasecmp(s + n - m, suf);
}

/* Feast's feature_refs / feature_view_names / name_aliases for a feature
 * service, from the registry. */
static int service_refs(const ld_config *cfg, const char *name, ld_buf *refs, ld_buf *views,
                        ld_buf *aliases, ld_status *st)
{
    ld_regclient *rc = ld_regclient_new(cfg, st);
    if (!rc)
        return -1;
    uint8_t *bytes = NULL;
    size_t len = 0;
    int r = ld_regclient_fetch_bytes(rc, &bytes, &len, st);
    ld_regclient_free(rc);
    if (r != 0)
        return -1;
    Feast__Core__Registry *reg = feast__core__registry__unpack(NULL, len, bytes);
    free(bytes);
    if (!reg)
        return ld_status_set(st, GRPC_STATUS_DATA_LOSS, NULL, "the registry does not parse");
    const Feast__Core__FeatureService *fs = NULL;
    for (size_t i = 0; i < reg->n_feature_services; i++) {
        const Feast__Core__FeatureService *s = reg->feature_services[i];
        if (s->spec && !strcmp(s->spec->name, name) &&
            (!*s->spec->project || !strcmp(s->spec->project, cfg->project)))
            fs = s;
    }
    if (!fs) {
        feast__core__registry__free_unpacked(reg, NULL);
        return ld_status_set(st, GRPC_STATUS_NOT_FOUND, "FeatureServiceNotFoundException",
                             "Feature service %s does not exist in project %s", name, cfg->project);
    }
    int first_ref = 1;
    for (size_t i = 0; i < fs->spec->n_features; i++) {
        const Feast__Core__FeatureViewProjection *p = fs->spec->features[i];
        const char *use = p->feature_view_name_alias && *p->feature_view_name_alias
                                  ? p->feature_view_name_alias
                                  : p->feature_view_name;
        for (size_t k = 0; k < p->n_feature_columns; k++) {
            char ref[1024];
            snprintf(ref, sizeof ref, "%s:%s", use, p->feature_columns[k]->name);
            ld_buf_puts(refs, first_ref ? "" : ", ");
            ld_buf_json_str(refs, ref, strlen(ref), 1);
            first_ref = 0;
        }
        ld_buf_puts(views, i ? ", " : "");
        ld_buf_json_str(views, p->feature_view_name, strlen(p->feature_view_name), 1);
        ld_buf_puts(aliases, i ? ", " : "");
        if (p->feature_view_name_alias && *p->feature_view_name_alias)
            ld_buf_json_str(aliases, p->feature_view_name_alias, strlen(p->feature_view_name_alias),
                            1);
        else
            ld_buf_puts(aliases, "null");
    }
    feast__core__registry__free_unpacked(reg, NULL);
    return 0;
}

int cli_cmd_get_historical_features(int argc, char **argv)
{
    static const struct option longopts[] = {
            {"config", required_argument, NULL, 'c'},
            {"entities", required_argument, NULL, 'E'},
            {"feature", required_argument, NULL, 'f'},
            {"features", required_argument, NULL, 'f'},
            {"feature-service", required_argument, NULL, 'S'},
            {"full-feature-names", no_argument, NULL, 'F'},
            {"out", required_argument, NULL, 'o'},
            {"help", no_argument, NULL, 'h'},
            {NULL, 0, NULL, 0},
    };
    const char *config = "feature_store.yaml", *service = NULL, *entities = NULL, *out = NULL;
    const char *features[MAX_ITEMS];
    size_t nf = 0;
    int full = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":c:f:o:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 'E':
            entities = optarg;
            break;
        case 'f':
            if (nf == MAX_ITEMS) {
                fprintf(stderr, "larder %s: at most %d features\n", argv[0], MAX_ITEMS);
                return CLI_EXIT_USAGE;
            }
            features[nf++] = optarg;
            break;
        case 'S':
            service = optarg;
            break;
        case 'F':
            full = 1;
            break;
        case 'o':
            out = optarg;
            break;
        case 'h':
            historical_usage(stdout);
            return CLI_EXIT_OK;
        default:
            return cli_bad_option(c, argv);
        }
    }
    if (optind < argc || !entities || (nf == 0) == (service == NULL)) {
        fprintf(stderr,
                "larder %s: needs --entities FILE.csv and either -f VIEW:FEATURE... or "
                "--feature-service (see --help)\n",
                argv[0]);
        return CLI_EXIT_USAGE;
    }
    for (size_t i = 0; i < nf; i++)
        if (!strchr(features[i], ':')) {
            fprintf(stderr, "larder %s: '%s' is not a VIEW:FEATURE reference\n", argv[0],
                    features[i]);
            return CLI_EXIT_USAGE;
        }
    ld_status st = LD_STATUS_INIT;
    ot_table *ent = NULL;
    if (ot_csv_read(entities, NULL, &ent, &st) != 0) {
        fprintf(stderr, "larder %s: %s\n", argv[0], st.msg);
        return CLI_EXIT_USAGE;
    }
    ld_config *cfg;
    if (cli_load_config(argv[0], config, &cfg) != CLI_EXIT_OK) {
        ot_table_free(ent);
        return CLI_EXIT_INVALID;
    }
    ld_log_setup(LD_LOG_WARN, LD_LOG_TEXT, "larder"); /* store chatter off */
    grpc_init();
    int rc = CLI_EXIT_OK;
    ld_buf refs = LD_BUF_INIT, views = LD_BUF_INIT, aliases = LD_BUF_INIT, cmd = LD_BUF_INIT;
    ol_flight_client *fc = NULL;
    FILE *f = NULL;
    if (service) {
        if (service_refs(cfg, service, &refs, &views, &aliases, &st) != 0) {
            fprintf(stderr, "larder %s: %s\n", argv[0], st.msg);
            rc = cli_exit_for(&st);
            goto out;
        }
    } else {
        /* views in first-appearance order, no aliases */
        const char *seen[MAX_ITEMS];
        size_t n_seen = 0;
        for (size_t i = 0; i < nf; i++) {
            ld_buf_puts(&refs, i ? ", " : "");
            ld_buf_json_str(&refs, features[i], strlen(features[i]), 1);
            size_t vl = (size_t)(strchr(features[i], ':') - features[i]);
            int dup = 0;
            for (size_t k = 0; k < n_seen; k++)
                dup |= strlen(seen[k]) >= vl && !strncmp(seen[k], features[i], vl) &&
                       seen[k][vl] == ':';
            if (dup)
                continue;
            seen[n_seen] = features[i];
            ld_buf_puts(&views, n_seen ? ", " : "");
            ld_buf_json_str(&views, features[i], vl, 1);
            ld_buf_puts(&aliases, n_seen ? ", null" : "null");
            n_seen++;
        }
    }
    ld_endpoint ep;
    if (ld_discovery_offline(cfg, &ep, &st) != 0) {
        fprintf(stderr, "larder %s: %s\n", argv[0], st.msg);
        rc = cli_exit_for(&st);
        goto out;
    }
    ol_flight_opts fo = {.target = ep.target, .tls = ep.tls};
    if (!(fc = ol_flight_client_new(&fo, &st))) {
        fprintf(stderr, "larder %s: %s\n", argv[0], st.msg);
        rc = CLI_EXIT_FAIL;
        goto out;
    }
    char id[64];
    snprintf(id, sizeof id, "larder-cli-%lld", (long long)ld_wall_us());
    ld_buf_printf(&cmd, "{\"command_id\": \"%s\", \"api\": \"get_historical_features\", ", id);
    ld_buf_printf(&cmd, "\"feature_view_names\": [%.*s], \"feature_refs\": [%.*s], ",
                  (int)views.len, views.data ? views.data : "", (int)refs.len,
                  refs.data ? refs.data : "");
    ld_buf_puts(&cmd, "\"project\": ");
    ld_buf_json_str(&cmd, cfg->project, strlen(cfg->project), 1);
    ld_buf_printf(&cmd, ", \"full_feature_names\": %s, \"name_aliases\": [%.*s]}",
                  full ? "true" : "false", (int)aliases.len, aliases.data ? aliases.data : "");
    int arrow = out &&
                (ends_with(out, ".arrow") || ends_with(out, ".ipc") || ends_with(out, ".feather"));
    f = out ? fopen(out, "wb") : stdout;
    if (!f) {
        fprintf(stderr, "larder %s: cannot write %s\n", argv[0], out);
        rc = CLI_EXIT_FAIL;
        goto out;
    }
    hist_out ho = {.f = f, .arrow = arrow};
    int64_t rows = 0;
    ol_flight_sink sink = {.batch = on_hist_batch, .arg = &ho};
    if (ol_flight_command(fc, cmd.data, ent, &sink, &rows, &st) != 0) {
        fprintf(stderr, "larder %s: %s\n", argv[0], st.msg);
        rc = cli_exit_for(&st);
        goto out;
    }
    if (arrow) {
        static const uint8_t eos[8] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0};
        fwrite(eos, 1, sizeof eos, f);
    }
    if (out)
        fprintf(stderr, "larder %s: %lld rows written to %s\n", argv[0], (long long)ho.rows, out);
out:
    if (f && f != stdout && fclose(f) != 0 && rc == CLI_EXIT_OK) {
        fprintf(stderr, "larder %s: error writing %s\n", argv[0], out);
        rc = CLI_EXIT_FAIL;
    }
    ol_flight_client_free(fc);
    ld_buf_free(&refs);
    ld_buf_free(&views);
    ld_buf_free(&aliases);
    ld_buf_free(&cmd);
    ot_table_free(ent);
    ld_config_free(cfg);
    grpc_shutdown();
    return rc;
}
