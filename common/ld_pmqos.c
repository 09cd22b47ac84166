/* ld_pmqos: see ld_pmqos.h. The device takes and gives a native-endian
 * int32 (it also accepts a hex string, which we do not need). */
#include "ld_pmqos.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PMQOS_DEVICE "/dev/cpu_dma_latency"
#define PMQOS_MAX_US 2000000000L

struct ld_pmqos {
    int fd;
};

int ld_pmqos_hold(long latency_us, ld_pmqos **out, ld_status *st)
{
    *out = NULL;
    if (latency_us < 0 || latency_us > PMQOS_MAX_US) {
        ld_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, NULL,
                      "cpu_dma_latency_us must be within 0..%ld, got %ld", PMQOS_MAX_US,
                      latency_us);
        return -1;
    }
    int fd = open(PMQOS_DEVICE, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        ld_status_set(st, GRPC_STATUS_FAILED_PRECONDITION, NULL, "cannot open %s: %s", PMQOS_DEVICE,
                      strerror(errno));
        return -1;
    }
    int32_t v = (int32_t)latency_us;
    if (write(fd, &v, sizeof v) != (ssize_t)sizeof v) {
        int e = errno;
        close(fd);
        ld_status_set(st, GRPC_STATUS_FAILED_PRECONDITION, NULL, "cannot write %s: %s",
                      PMQOS_DEVICE, strerror(e));
        return -1;
    }
    ld_pmqos *q = malloc(sizeof *q);
    if (!q) {
        close(fd);
        ld_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, NULL, "out of memory");
        return -1;
    }
    q->fd = fd;
    *out = q;
    return 0;
}

long ld_pmqos_current(void)
{
    int fd = open(PMQOS_DEVICE, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int32_t v;
    ssize_t n = read(fd, &v, sizeof v);
    close(fd);
    return n == (ssize_t)sizeof v ? (long)v : -1;
}

void ld_pmqos_release(ld_pmqos *q)
{
    if (!q)
        return;
    close(q->fd);
    free(q);
}
