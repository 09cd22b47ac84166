/* ld_absl: Abseil's Mutex deadlock detector is off after the call.
 *
 * The probe takes two gRPC locks (gpr_mu, an absl::Mutex) in both orders,
 * in a child process. With the detector on, as Debian's Abseil is built,
 * Abseil kills the child (SIGABRT, "dying due to potential deadlock"); after
 * ld_absl_deadlock_detection_off() the child finishes. */
#include <grpc/support/sync.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ld_absl.h"
#include "ld_test.h"

/* the child's end: its exit status, or 128 + the signal that killed it */
static int lock_both_orders(int switch_off)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        if (switch_off && !ld_absl_deadlock_detection_off())
            _exit(3);
        /* Abseil's report goes to stderr: keep the TAP output clean */
        if (!freopen("/dev/null", "w", stderr))
            _exit(4);
        gpr_mu a, b;
        gpr_mu_init(&a);
        gpr_mu_init(&b);
        gpr_mu_lock(&a);
        gpr_mu_lock(&b);
        gpr_mu_unlock(&b);
        gpr_mu_unlock(&a);
        gpr_mu_lock(&b);
        gpr_mu_lock(&a); /* the inverted order */
        gpr_mu_unlock(&a);
        gpr_mu_unlock(&b);
        _exit(0);
    }
    int ws = 0;
    if (pid < 0 || waitpid(pid, &ws, 0) != pid)
        return -1;
    return WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
}

/* the switch is found in a process linked with gRPC, and the inverted lock
 * order then passes */
LD_TEST(off_lets_inverted_order_pass)
{
    LD_CHECK_INT(lock_both_orders(1), 0);
}

/* the detector was on before: without the switch the same child is killed
 * (an Abseil built with NDEBUG has it off already; the check then says so) */
LD_TEST(on_as_built)
{
    int rc = lock_both_orders(0);
    if (rc == 0)
        printf("# this Abseil's deadlock detector is off as built\n");
    else
        LD_CHECK_INT(rc, 128 + SIGABRT);
}

LD_TEST_MAIN
