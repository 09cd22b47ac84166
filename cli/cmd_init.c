/* larder init: write the example repository (see cmd_init.h). */
#include "cmd_init.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define FIRST_DRIVER 1001
#define N_DRIVERS    5

/* splitmix64: small, fast and the same on every platform. */
static uint64_t next_u64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* uniform in [0, 1) with 6 decimals, as text-exact as it is printed */
static double next_rate(uint64_t *s)
{
    return (double)(next_u64(s) % 1000000) / 1e6;
}

static void iso(int64_t t, char *out, size_t n)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

long cli_gen_driver_stats(FILE *f, int64_t end_s, int days)
{
    uint64_t seed = 20240101;
    long rows = 0;
    int hours = days * 24;
    fprintf(f, "driver_id,event_timestamp,conv_rate,acc_rate,avg_daily_trips,created\n");
    for (int h = hours - 1; h >= 0; h--) {
        int64_t ts = end_s - (int64_t)h * 3600;
        char ets[32], cts[32];
        iso(ts, ets, sizeof ets);
        iso(ts + 600, cts, sizeof cts); /* written ten minutes after the hour */
        for (int d = 0; d < N_DRIVERS; d++) {
            double conv = next_rate(&seed), acc = next_rate(&seed);
            int trips = (int)(next_u64(&seed) % 1000);
            fprintf(f, "%d,%s,%.6f,%.6f,%d,%s\n", FIRST_DRIVER + d, ets, conv, acc, trips, cts);
            rows++;
            /* Every day at 12:00 driver 1001's row is corrected an hour
             * later: same event time, later created time, so a correct
             * point-in-time join and materialization take the correction. */
            if (d == 0 && (ts / 3600) % 24 == 12) {
                char cts2[32];
                iso(ts + 4200, cts2, sizeof cts2);
                fprintf(f, "%d,%s,%.6f,%.6f,%d,%s\n", FIRST_DRIVER, ets, next_rate(&seed), acc,
                        trips, cts2);
                rows++;
            }
        }
    }
    return rows;
}

long cli_gen_entity_rows(FILE *f, int64_t end_s)
{
    long rows = 0;
    fprintf(f, "driver_id,event_timestamp\n");
    static const int offsets_min[] = {-30, -(26 * 60 + 15)};
    for (int k = 0; k < 2; k++)
        for (int d = 0; d <= N_DRIVERS; d++) {
            char ts[32];
            iso(end_s + offsets_min[k] * 60, ts, sizeof ts);
            fprintf(f, "%d,%s\n", FIRST_DRIVER + d, ts);
            rows++;
        }
    return rows;
}

static int parse_time(const char *s, int64_t *out)
{
    if (!strcmp(s, "now")) {
        *out = (int64_t)time(NULL) / 3600 * 3600;
        return 0;
    }
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *e = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!e)
        e = strptime(s, "%Y-%m-%d", &tm);
    if (!e || (*e && strcmp(e, "Z")))
        return -1;
    *out = (int64_t)timegm(&tm) / 3600 * 3600;
    return 0;
}

static int mkdirs(const char *path)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return -1;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(buf, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

static int write_file(const char *dir, const char *rel, const void *data, size_t len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    char *slash = strrchr(path, '/');
    *slash = 0;
    if (mkdirs(path) != 0) {
        fprintf(stderr, "larder init: cannot create %s: %s\n", path, strerror(errno));
        return -1;
    }
    *slash = '/';
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "larder init: cannot write %s: %s\n", path, strerror(errno));
        if (f)
            fclose(f);
        return -1;
    }
    printf("  %s\n", rel);
    return 0;
}

static void usage_init(FILE *f)
{
    fprintf(f, "usage: larder init [OPTIONS] [DIR]\n\n"
               "Write the example repository (driver statistics, like Feast's quick start)\n"
               "into DIR (default ./driver_stats): feature_store.yaml (file registry, SQLite\n"
               "online store, file sources), definitions.yaml, a PostgreSQL + Redis variant in\n"
               "postgres/, and generated data: data/driver_stats.csv (7 days of hourly rows for\n"
               "drivers 1001-1005; the values are the same on every run, the timestamps end at\n"
               "--end) and data/entity_rows.csv (for get-historical-features).\n\n"
               "options:\n"
               "  -e, --end TIME   last hour of the data: YYYY-MM-DDTHH:MM:SSZ or now (default)\n"
               "  -d, --days N     days of history (default 7, 1..366)\n"
               "  -f, --force      write into a non-empty DIR, replacing the example's files\n"
               "  -h, --help       this help\n\n"
               "Then: cd DIR && larder serve & larder apply definitions.yaml\n");
}

int cli_cmd_init(int argc, char **argv)
{
    const char *dir = "driver_stats";
    int64_t end_s = (int64_t)time(NULL) / 3600 * 3600;
    int days = 7, force = 0;
    static const struct option lo[] = {{"end", required_argument, NULL, 'e'},
                                       {"days", required_argument, NULL, 'd'},
                                       {"force", no_argument, NULL, 'f'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "e:d:fh", lo, NULL)) != -1) {
        switch (ch) {
        case 'e':
            if (parse_time(optarg, &end_s) != 0) {
                fprintf(stderr,
                        "larder init: --end: expected YYYY-MM-DDTHH:MM:SSZ or now, got "
                        "'%s'\n",
                        optarg);
                return CLI_EXIT_USAGE;
            }
            break;
        case 'd': {
            char *e;
            long v = strtol(optarg, &e, 10);
            if (*e || v < 1 || v > 366) {
                fprintf(stderr, "larder init: --days: expected 1..366, got '%s'\n", optarg);
                return CLI_EXIT_USAGE;
            }
            days = (int)v;
            break;
        }
        case 'f':
            force = 1;
            break;
        case 'h':
            usage_init(stdout);
            return CLI_EXIT_OK;
        default:
            usage_init(stderr);
            return CLI_EXIT_USAGE;
        }
    }
    if (optind < argc)
        dir = argv[optind++];
    if (optind < argc) {
        usage_init(stderr);
        return CLI_EXIT_USAGE;
    }
    struct stat sb;
    if (stat(dir, &sb) == 0 && !force) {
        if (!S_ISDIR(sb.st_mode)) {
            fprintf(stderr, "larder init: %s exists and is not a directory\n", dir);
            return CLI_EXIT_FAIL;
        }
        char probe[4096];
        for (unsigned i = 0; i < cli_example_nfiles; i++) {
            snprintf(probe, sizeof probe, "%s/%s", dir, cli_example_files[i].path);
            if (access(probe, F_OK) == 0) {
                fprintf(stderr, "larder init: %s already exists (--force replaces it)\n", probe);
                return CLI_EXIT_FAIL;
            }
        }
    }
    if (mkdirs(dir) != 0) {
        fprintf(stderr, "larder init: cannot create %s: %s\n", dir, strerror(errno));
        return CLI_EXIT_FAIL;
    }
    printf("Creating the driver statistics example in %s:\n", dir);
    for (unsigned i = 0; i < cli_example_nfiles; i++)
        if (write_file(dir, cli_example_files[i].path, cli_example_files[i].data,
                       cli_example_files[i].len) != 0)
            return CLI_EXIT_FAIL;
    /* generated data */
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    long rows = m ? cli_gen_driver_stats(m, end_s, days) : -1;
    if (!m || fclose(m) != 0 || write_file(dir, "data/driver_stats.csv", buf, len) != 0) {
        free(buf);
        return CLI_EXIT_FAIL;
    }
    free(buf);
    buf = NULL;
    m = open_memstream(&buf, &len);
    if (!m)
        return CLI_EXIT_FAIL;
    cli_gen_entity_rows(m, end_s);
    if (fclose(m) != 0 || write_file(dir, "data/entity_rows.csv", buf, len) != 0) {
        free(buf);
        return CLI_EXIT_FAIL;
    }
    free(buf);
    char end[32];
    time_t t = (time_t)end_s;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(end, sizeof end, "%Y-%m-%dT%H:%M:%SZ", &tm);
    printf("%ld rows of driver statistics ending at %s.\n\n"
           "Next:\n"
           "  cd %s\n"
           "  larder serve &                    # registry, online and offline servers\n"
           "  larder apply definitions.yaml     # register the definitions\n",
           rows, end, dir);
    return CLI_EXIT_OK;
}
