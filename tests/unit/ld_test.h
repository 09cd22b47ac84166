/* ld_test: a minimal TAP producer for unit tests. meson runs each test
 * executable with protocol 'tap' and counts every "ok"/"not ok" line.
 *
 *   LD_TEST(name) { LD_CHECK(x == 1); LD_CHECK_STR(a, "b"); }
 *   int main(void) { return ld_test_run(); }
 *
 * Tests register themselves through a constructor, run in file order, and a
 * failed check marks the test failed but lets it continue. */
#pragma once

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*ld_test_fn)(void);

struct ld_test_case {
    const char *name;
    ld_test_fn fn;
};

extern struct ld_test_case ld_test_cases[256];
extern int ld_test_ncases;
extern int ld_test_failed_checks;

#define LD_TEST(tname)                                                                             \
    static void ld_test_##tname(void);                                                             \
    __attribute__((constructor)) static void ld_test_reg_##tname(void)                             \
    {                                                                                              \
        ld_test_cases[ld_test_ncases].name = #tname;                                               \
        ld_test_cases[ld_test_ncases++].fn = ld_test_##tname;                                      \
    }                                                                                              \
    static void ld_test_##tname(void)

#define LD_CHECK(cond)                                                                             \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("# %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);                      \
            ld_test_failed_checks++;                                                               \
        }                                                                                          \
    } while (0)

#define LD_CHECK_INT(a, b)                                                                         \
    do {                                                                                           \
        long long ld_a_ = (long long)(a), ld_b_ = (long long)(b);                                  \
        if (ld_a_ != ld_b_) {                                                                      \
            printf("# %s:%d: %s == %lld, expected %lld\n", __FILE__, __LINE__, #a, ld_a_, ld_b_);  \
            ld_test_failed_checks++;                                                               \
        }                                                                                          \
    } while (0)

#define LD_CHECK_STR(a, b)                                                                         \
    do {                                                                                           \
        const char *ld_a_ = (a), *ld_b_ = (b);                                                     \
        if (!ld_a_ || !ld_b_ || strcmp(ld_a_, ld_b_) != 0) {                                       \
            printf("# %s:%d: %s == \"%s\", expected \"%s\"\n", __FILE__, __LINE__, #a,             \
                   ld_a_ ? ld_a_ : "(null)", ld_b_ ? ld_b_ : "(null)");                            \
            ld_test_failed_checks++;                                                               \
        }                                                                                          \
    } while (0)

#define LD_CHECK_MEM(a, alen, b, blen)                                                             \
    do {                                                                                           \
        size_t ld_al_ = (alen), ld_bl_ = (blen);                                                   \
        if (ld_al_ != ld_bl_ || memcmp((a), (b), ld_al_) != 0) {                                   \
            printf("# %s:%d: %s differs from %s (%zu vs %zu bytes)\n", __FILE__, __LINE__, #a, #b, \
                   ld_al_, ld_bl_);                                                                \
            ld_test_failed_checks++;                                                               \
        }                                                                                          \
    } while (0)

#define LD_TEST_MAIN                                                                               \
    struct ld_test_case ld_test_cases[256];                                                        \
    int ld_test_ncases;                                                                            \
    int ld_test_failed_checks;                                                                     \
    int main(void)                                                                                 \
    {                                                                                              \
        int failed = 0;                                                                            \
        printf("1..%d\n", ld_test_ncases);                                                         \
        for (int i = 0; i < ld_test_ncases; i++) {                                                 \
            int before = ld_test_failed_checks;                                                    \
            ld_test_cases[i].fn();                                                                 \
            int ok = ld_test_failed_checks == before;                                              \
            failed += !ok;                                                                         \
            printf("%s %d - %s\n", ok ? "ok" : "not ok", i + 1, ld_test_cases[i].name);            \
            fflush(stdout);                                                                        \
        }                                                                                          \
        return failed ? 1 : 0;                                                                     \
    }
