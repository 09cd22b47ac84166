/* ld-resp-pipe: one fixed pipeline of Redis commands, sent again and again
 * on one connection, one pipeline in flight; each round trip's latency.
 *
 * It is the floor under a GetOnlineFeatures call: online_bench.py writes
 * the exact commands larder-online sends for a request (100 HMGETs of 55
 * fields for 100x50) and this tool times Redis answering them with nothing
 * else in the way: no gRPC, no decoding beyond finding the end.
 *
 * The first round trip is parsed with hiredis's reader: it must bring
 * exactly --replies replies, none of them an error, and its length in bytes
 * is kept. Later rounds read that many bytes (the data does not change
 * during a benchmark), so the client's own cost stays a send and a few
 * receives. A final round is parsed again, to check that nothing changed.
 *
 * Output: one line of text, or of JSON with --json (p50_us, p90_us, p99_us,
 * p999_us, max_us, calls, rps, and calls_total: every round trip, warm-up
 * and the two parsed rounds included, for CPU per call). Exit status 0, 1 when Redis cannot be
 * reached or answers otherwise, 2 on bad usage. */
#include <errno.h>
#include <getopt.h>
#include <hiredis/hiredis.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_COMMAND_BYTES (64u << 20)
#define MAX_REPLY_BYTES   (256u << 20)

typedef struct opts {
    const char *host, *port, *commands;
    long replies;
    double duration, warmup;
    int json;
} opts;

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void usage(FILE *f)
{
    fputs("Usage: ld-resp-pipe --target HOST:PORT --commands FILE --replies N [options]\n"
          "Send FILE (RESP commands) to Redis, wait for N replies, repeat; one\n"
          "pipeline in flight. Reports the round trip's percentiles.\n\n"
          "  --duration SECONDS   measured time (default 10)\n"
          "  --warmup SECONDS     unmeasured time before it (default 1)\n"
          "  --json               print one JSON line\n",
          f);
}

static int parse_opts(int argc, char **argv, opts *o, char *hostbuf, size_t hostcap)
{
    static const struct option lo[] = {
            {"target", required_argument, NULL, 't'},  {"commands", required_argument, NULL, 'c'},
            {"replies", required_argument, NULL, 'n'}, {"duration", required_argument, NULL, 'd'},
            {"warmup", required_argument, NULL, 'w'},  {"json", no_argument, NULL, 'j'},
            {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
    };
    *o = (opts){.duration = 10, .warmup = 1};
    int ch;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        char *end = NULL;
        switch (ch) {
        case 't': {
            const char *colon = strrchr(optarg, ':');
            if (!colon || colon == optarg || (size_t)(colon - optarg) >= hostcap)
                return -1;
            memcpy(hostbuf, optarg, (size_t)(colon - optarg));
            hostbuf[colon - optarg] = '\0';
            o->host = hostbuf;
            o->port = colon + 1;
            break;
        }
        case 'c':
            o->commands = optarg;
            break;
        case 'n':
            o->replies = strtol(optarg, &end, 10);
            if (*end || o->replies < 1 || o->replies > 1000000)
                return -1;
            break;
        case 'd':
            o->duration = strtod(optarg, &end);
            if (*end || !(o->duration > 0 && o->duration <= 3600))
                return -1;
            break;
        case 'w':
            o->warmup = strtod(optarg, &end);
            if (*end || !(o->warmup >= 0 && o->warmup <= 3600))
                return -1;
            break;
        case 'j':
            o->json = 1;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            return -1;
        }
    }
    return o->host && o->commands && o->replies && optind == argc ? 0 : -1;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (cap - n < 65536) {
            cap = cap ? cap * 2 : 65536;
            char *p = cap <= MAX_COMMAND_BYTES * 2 ? realloc(buf, cap) : NULL;
            if (!p) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = p;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
    }
    int bad = ferror(f) || n == 0 || n > MAX_COMMAND_BYTES;
    fclose(f);
    if (bad) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

static int connect_to(const char *host, const char *port)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    if (getaddrinfo(host, port, &hints, &ai) != 0)
        return -1;
    int fd = -1;
    for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    if (fd >= 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return fd;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* One round trip parsed: the bytes of `want` replies, or -1 (an error
 * reply, a short read, a protocol error). */
static long long round_parsed(int fd, const char *cmd, size_t len, long want, char *rbuf,
                              size_t rcap)
{
    if (send_all(fd, cmd, len) != 0)
        return -1;
    redisReader *rd = redisReaderCreate();
    if (!rd)
        return -1;
    long got = 0;
    long long bytes = 0;
    int bad = 0;
    while (got < want && !bad) {
        ssize_t r = recv(fd, rbuf, rcap, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || redisReaderFeed(rd, rbuf, (size_t)r) != REDIS_OK) {
            bad = 1;
            break;
        }
        bytes += r;
        for (;;) {
            void *rep = NULL;
            if (redisReaderGetReply(rd, &rep) != REDIS_OK) {
                bad = 1;
                break;
            }
            if (!rep)
                break;
            if (((redisReply *)rep)->type == REDIS_REPLY_ERROR) {
                fprintf(stderr, "ld-resp-pipe: Redis answered: %s\n", ((redisReply *)rep)->str);
                bad = 1;
            }
            freeReplyObject(rep);
            got++;
        }
        if (bytes > MAX_REPLY_BYTES)
            bad = 1;
    }
    /* Redis sends nothing unasked: what is left in the reader is garbage */
    if (!bad && (got != want || rd->len > rd->pos))
        bad = 1;
    redisReaderFree(rd);
    return bad ? -1 : bytes;
}

/* One round trip read by length. */
static int round_counted(int fd, const char *cmd, size_t len, long long bytes, char *rbuf,
                         size_t rcap)
{
    if (send_all(fd, cmd, len) != 0)
        return -1;
    while (bytes > 0) {
        ssize_t r = recv(fd, rbuf, rcap, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || r > bytes)
            return -1;
        bytes -= r;
    }
    return 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* nearest rank */
static double pct_us(const int64_t *v, size_t n, double p)
{
    size_t k = (size_t)((p / 100.0) * (double)n + 0.999999);
    if (k < 1)
        k = 1;
    if (k > n)
        k = n;
    return (double)v[k - 1] / 1000.0;
}

int main(int argc, char **argv)
{
    opts o;
    char host[256];
    if (parse_opts(argc, argv, &o, host, sizeof host) != 0) {
        usage(stderr);
        return 2;
    }
    size_t len = 0;
    char *cmd = read_file(o.commands, &len);
    if (!cmd) {
        fprintf(stderr, "ld-resp-pipe: cannot read %s (empty, or over %u bytes?)\n", o.commands,
                MAX_COMMAND_BYTES);
        return 2;
    }
    int fd = connect_to(o.host, o.port);
    if (fd < 0) {
        fprintf(stderr, "ld-resp-pipe: cannot connect to %s:%s\n", o.host, o.port);
        free(cmd);
        return 1;
    }
    size_t rcap = 1 << 20;
    char *rbuf = malloc(rcap);
    size_t cap = 1 << 14, n = 0, total = 1;
    int64_t *lat = malloc(cap * sizeof *lat);
    long long bytes = rbuf && lat ? round_parsed(fd, cmd, len, o.replies, rbuf, rcap) : -1;
    int rc = 1;
    if (bytes < 0) {
        fprintf(stderr, "ld-resp-pipe: the first round did not bring %ld good replies\n",
                o.replies);
        goto out;
    }
    int64_t t0 = now_ns(), warm_end = t0 + (int64_t)(o.warmup * 1e9);
    int64_t end = warm_end + (int64_t)(o.duration * 1e9);
    for (;;) {
        int64_t a = now_ns();
        if (a >= end)
            break;
        if (round_counted(fd, cmd, len, bytes, rbuf, rcap) != 0) {
            fprintf(stderr, "ld-resp-pipe: a round trip failed or its length changed\n");
            goto out;
        }
        total++;
        if (a < warm_end)
            continue;
        if (n == cap) {
            int64_t *p = realloc(lat, cap * 2 * sizeof *lat);
            if (!p)
                goto out;
            lat = p;
            cap *= 2;
        }
        lat[n++] = now_ns() - a;
    }
    if (round_parsed(fd, cmd, len, o.replies, rbuf, rcap) != bytes) {
        fprintf(stderr, "ld-resp-pipe: the replies changed during the run\n");
        goto out;
    }
    total++;
    if (!n) {
        fprintf(stderr, "ld-resp-pipe: no round trip in the measured time\n");
        goto out;
    }
    qsort(lat, n, sizeof *lat, cmp_i64);
    double rps = (double)n / o.duration;
    if (o.json)
        printf("{\"target\":\"%s:%s\",\"commands_bytes\":%zu,\"replies\":%ld,"
               "\"reply_bytes\":%lld,\"calls\":%zu,\"calls_total\":%zu,\"rps\":%.1f,"
               "\"p50_us\":%.0f,\"p90_us\":%.0f,\"p99_us\":%.0f,\"p999_us\":%.0f,"
               "\"max_us\":%.0f}\n",
               o.host, o.port, len, o.replies, bytes, n, total, rps, pct_us(lat, n, 50),
               pct_us(lat, n, 90), pct_us(lat, n, 99), pct_us(lat, n, 99.9),
               (double)lat[n - 1] / 1000.0);
    else
        printf("%zu round trips (%ld replies, %lld bytes each), %.1f/s: p50 %.0f us, p99 %.0f us, "
               "max %.0f us\n",
               n, o.replies, bytes, rps, pct_us(lat, n, 50), pct_us(lat, n, 99),
               (double)lat[n - 1] / 1000.0);
    rc = 0;
out:
    close(fd);
    free(cmd);
    free(rbuf);
    free(lat);
    return rc;
}
