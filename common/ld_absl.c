#include "ld_absl.h"

#include <dlfcn.h>
#include <stddef.h>

/* absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle), mangled: the
 * argument is an `enum class OnDeadlockCycle : int` whose kIgnore is 0, so
 * the function is called as void (int). */
static const char *const set_mode_names[] = {
        "_ZN4absl7debian329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE",
        "_ZN4absl12lts_2022062329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE",
        "_ZN4absl29SetMutexDeadlockDetectionModeENS_15OnDeadlockCycleE",
        NULL,
};

enum { ABSL_ON_DEADLOCK_CYCLE_IGNORE = 0 };

int ld_absl_deadlock_detection_off(void)
{
    for (const char *const *n = set_mode_names; *n; n++) {
        void *sym = dlsym(RTLD_DEFAULT, *n);
        if (!sym)
            continue;
        void (*set_mode)(int);
        *(void **)&set_mode = sym; /* POSIX: dlsym returns functions as void * */
        set_mode(ABSL_ON_DEADLOCK_CYCLE_IGNORE);
        return 1;
    }
    return 0;
}
