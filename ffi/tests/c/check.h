/*
 * The C tests' harness, shared by every ffi/tests/c/test_*.c program: CHECK() records
 * a failure and goes on; CHECK_RC() also prints the library's message for the code;
 * RUN() runs one test function and counts it; FINISH() prints "N passed, M failed"
 * (the line CI reads) and gives main's exit status.
 */
#ifndef PASID_TEST_CHECK_H
#define PASID_TEST_CHECK_H

#include <pasid.h>

#include <stdio.h>

static int failures_in_test;
/* Used by RUN()/FINISH(); a file with its own runner leaves them be. */
__attribute__((unused)) static unsigned tests_passed, tests_failed;

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            failures_in_test++;                                                        \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
        }                                                                              \
    } while (0)

#define CHECK_RC(expr, want)                                                            \
    do {                                                                                \
        int rc_ = (expr);                                                               \
        if (rc_ != (int)(want)) {                                                       \
            char msg_[256];                                                             \
            size_t n_ = 0;                                                              \
            (void)pasid_last_error_message(msg_, sizeof msg_, &n_);                     \
            failures_in_test++;                                                         \
            fprintf(stderr, "  %s:%d: %s = %d (%s: %s), want %s = %d\n", __FILE__,      \
                    __LINE__, #expr, rc_, pasid_strerror(rc_), msg_, #want, (int)(want)); \
        }                                                                               \
    } while (0)

#define OK(expr) CHECK_RC(expr, PASID_RESULT_OK)

#define RUN(fn)                                                   \
    do {                                                          \
        failures_in_test = 0;                                     \
        fn();                                                     \
        if (failures_in_test == 0) {                              \
            tests_passed++;                                       \
            printf("ok   %s\n", #fn);                             \
        } else {                                                  \
            tests_failed++;                                       \
            printf("FAIL %s (%d checks)\n", #fn, failures_in_test); \
        }                                                         \
    } while (0)

#define FINISH()                                                      \
    (printf("%u passed, %u failed\n", tests_passed, tests_failed),    \
     tests_failed == 0 ? 0 : 1)

#endif /* PASID_TEST_CHECK_H */
