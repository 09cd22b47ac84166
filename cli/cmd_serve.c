/* larder serve: the three servers as child processes, for development; and
 * larder version.
 *
 * Each server is its own binary (larder-registry, larder-online,
 * larder-offline) and runs alone just as well; serve only starts them with
 * one config, registry first (the others read it), forwards SIGINT/SIGTERM
 * and stops the rest when one exits. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cli_util.h"

#ifndef LARDER_VERSION
#define LARDER_VERSION "0.0.0"
#endif

int cli_cmd_version(int argc, char **argv)
{
    if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        printf("usage: larder version\n\nPrint larder's version.\n");
        return CLI_EXIT_OK;
    }
    if (argc > 1) {
        fprintf(stderr, "usage: larder version\n");
        return CLI_EXIT_USAGE;
    }
    printf("larder %s\n", LARDER_VERSION);
    return CLI_EXIT_OK;
}

/* ------------------------------------------------------------ serve */

typedef struct child {
    const char *name; /* "registry" */
    const char *prog; /* "larder-registry" */
    const char *subdir;
    char path[PATH_MAX];
    pid_t pid;
    int status;
    int enabled;
} child;

static int is_exec(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode) && access(p, X_OK) == 0;
}

/* Next to the larder binary, in the build tree's server folder, or on PATH. */
static int find_binary(child *c)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = 0;
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = 0;
            int w = snprintf(c->path, sizeof c->path, "%s/%s", self, c->prog);
            if (w > 0 && (size_t)w < sizeof c->path && is_exec(c->path))
                return 0;
            w = snprintf(c->path, sizeof c->path, "%s/../%s/%s", self, c->subdir, c->prog);
            if (w > 0 && (size_t)w < sizeof c->path && is_exec(c->path))
                return 0;
        }
    }
    const char *path = getenv("PATH");
    while (path && *path) {
        const char *e = strchr(path, ':');
        size_t len = e ? (size_t)(e - path) : strlen(path);
        int w = snprintf(c->path, sizeof c->path, "%.*s/%s", (int)len, len ? path : ".", c->prog);
        if (w > 0 && (size_t)w < sizeof c->path && is_exec(c->path))
            return 0;
        path = e ? e + 1 : NULL;
    }
    return -1;
}

static pid_t spawn(child *c, const char *config, char **extra, int nextra)
{
    char **args = calloc((size_t)nextra + 4, sizeof *args);
    if (!args)
        return -1;
    int k = 0;
    args[k++] = c->path;
    args[k++] = (char *)"-c";
    args[k++] = (char *)config;
    for (int i = 0; i < nextra; i++)
        args[k++] = extra[i];
    pid_t pid = fork();
    if (pid == 0) {
        /* the servers die with us, whatever happens to us */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execv(c->path, args);
        fprintf(stderr, "larder serve: cannot run %s: %s\n", c->path, strerror(errno));
        _exit(127);
    }
    free(args);
    return pid;
}

static int port_open(const char *host, int port)
{
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(host, ps, &hints, &res) != 0)
        return 0;
    int ok = 0;
    for (struct addrinfo *ai = res; ai && !ok; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        ok = connect(fd, ai->ai_addr, ai->ai_addrlen) == 0;
        close(fd);
    }
    freeaddrinfo(res);
    return ok;
}

static void usage_serve(FILE *f)
{
    fprintf(f, "usage: larder serve [OPTIONS] [-- SERVER-FLAGS...]\n\n"
               "Run larder-registry, larder-online and larder-offline as child processes with\n"
               "one feature_store.yaml, for development. The registry starts first; the others\n"
               "follow once it accepts connections. SIGINT/SIGTERM go to every server; when one\n"
               "server exits, the others are stopped. Ports and host come from the config's\n"
               "larder: section (registry 6570, online 50051 + HTTP 6566, offline 8815).\n"
               "The binaries are taken from the directory of this larder binary, the build\n"
               "tree, or PATH. Each also runs alone: larder-registry -c feature_store.yaml.\n\n"
               "options:\n"
               "  -c, --config FILE   feature_store.yaml (default ./feature_store.yaml)\n"
               "      --no-registry   do not start larder-registry (registry_type remote)\n"
               "      --no-online     do not start larder-online\n"
               "      --no-offline    do not start larder-offline\n"
               "  -h, --help          this help\n\n"
               "exit codes: 0 all servers stopped cleanly, 1 a server failed, 2 usage,\n"
               "3 invalid config\n");
}

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
    got_signal = sig;
}

int cli_cmd_serve(int argc, char **argv)
{
    const char *config = "feature_store.yaml";
    child ch[3] = {{"registry", "larder-registry", "registry_server", "", 0, 0, 1},
                   {"online", "larder-online", "online_server", "", 0, 0, 1},
                   {"offline", "larder-offline", "offline_server", "", 0, 0, 1}};
    enum { OPT_NO_REG = 1000, OPT_NO_ON, OPT_NO_OFF };
    static const struct option lo[] = {{"config", required_argument, NULL, 'c'},
                                       {"no-registry", no_argument, NULL, OPT_NO_REG},
                                       {"no-online", no_argument, NULL, OPT_NO_ON},
                                       {"no-offline", no_argument, NULL, OPT_NO_OFF},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    optind = 1;
    int opt;
    while ((opt = getopt_long(argc, argv, "c:h", lo, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config = optarg;
            break;
        case OPT_NO_REG:
            ch[0].enabled = 0;
            break;
        case OPT_NO_ON:
            ch[1].enabled = 0;
            break;
        case OPT_NO_OFF:
            ch[2].enabled = 0;
            break;
        case 'h':
            usage_serve(stdout);
            return CLI_EXIT_OK;
        default:
            usage_serve(stderr);
            return CLI_EXIT_USAGE;
        }
    }
    ld_config *cfg = NULL;
    int rc = cli_load_config(NULL, config, &cfg);
    if (rc != CLI_EXIT_OK)
        return rc;
    char host[256];
    const char *h = cfg->larder.host ? cfg->larder.host : "127.0.0.1";
    snprintf(host, sizeof host, "%s",
             !*h || !strcmp(h, "0.0.0.0") ? "127.0.0.1"
             : !strcmp(h, "::")           ? "::1"
                                          : h);
    int reg_port = cfg->larder.registry_port;
    ld_config_free(cfg);
    for (int i = 0; i < 3; i++) {
        if (ch[i].enabled && find_binary(&ch[i]) != 0) {
            fprintf(stderr,
                    "larder serve: %s not found next to larder, in the build tree or on PATH\n",
                    ch[i].prog);
            return CLI_EXIT_FAIL;
        }
    }
    /* Signals are taken synchronously-ish: handlers only record them. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    int extra_n = optind < argc ? argc - optind : 0;
    char **extra = argv + optind;
    int failed = 0, running = 0;
    for (int i = 0; i < 3 && !got_signal && !failed; i++) {
        if (!ch[i].enabled)
            continue;
        ch[i].pid = spawn(&ch[i], config, extra, extra_n);
        if (ch[i].pid < 0) {
            fprintf(stderr, "larder serve: cannot start %s: %s\n", ch[i].prog, strerror(errno));
            failed = 1;
            break;
        }
        running++;
        fprintf(stderr, "larder serve: started %s (pid %d)\n", ch[i].prog, (int)ch[i].pid);
        if (i == 0) {
            /* the others load the registry at start: wait until it listens */
            struct timespec ts = {0, 50 * 1000 * 1000};
            for (int t = 0; t < 400 && !got_signal; t++) {
                if (port_open(host, reg_port))
                    break;
                int st;
                if (waitpid(ch[0].pid, &st, WNOHANG) == ch[0].pid) {
                    ch[0].pid = 0;
                    ch[0].status = st;
                    running--;
                    failed = 1;
                    break;
                }
                nanosleep(&ts, NULL);
            }
        }
    }
    if (!failed && !got_signal)
        fprintf(stderr, "larder serve: running; Ctrl-C stops every server\n");
    int stopping = failed || got_signal;
    int first_status = failed ? ch[0].status : 0;
    if (stopping)
        for (int i = 0; i < 3; i++)
            if (ch[i].pid > 0)
                kill(ch[i].pid, got_signal ? got_signal : SIGTERM);
    while (running > 0) {
        int st;
        pid_t pid = waitpid(-1, &st, 0);
        if (pid < 0) {
            if (errno == EINTR) {
                if (got_signal && stopping < 2) {
                    for (int i = 0; i < 3; i++)
                        if (ch[i].pid > 0)
                            kill(ch[i].pid, got_signal == SIGHUP ? SIGTERM : got_signal);
                    stopping = 2;
                }
                continue;
            }
            break;
        }
        for (int i = 0; i < 3; i++) {
            if (ch[i].pid != pid)
                continue;
            ch[i].pid = 0;
            ch[i].status = st;
            running--;
            if (WIFEXITED(st))
                fprintf(stderr, "larder serve: %s exited with %d\n", ch[i].prog, WEXITSTATUS(st));
            else if (WIFSIGNALED(st))
                fprintf(stderr, "larder serve: %s killed by signal %d\n", ch[i].prog, WTERMSIG(st));
            if (!stopping) {
                /* one server ended on its own: stop the rest */
                first_status = st;
                stopping = 1;
                for (int j = 0; j < 3; j++)
                    if (ch[j].pid > 0)
                        kill(ch[j].pid, SIGTERM);
            }
            if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0) && !got_signal)
                failed = 1;
        }
    }
    if (first_status && !(WIFEXITED(first_status) && WEXITSTATUS(first_status) == 0))
        failed = 1;
    return failed ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}
