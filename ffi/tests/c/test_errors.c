/*
 * The library's version, `pasid_strerror` for every code, and the per-thread last
 * error (`pasid_last_error_code`, `pasid_last_error_message`: size query, truncation,
 * NULLs, what a success leaves).
 * A program of its own, as every test_*.c (see fixtures.h).
 */
#include <pthread.h>
#include <stdint.h>

#include "fixtures.h" /* the shared fixtures, and check.h's CHECK, OK, RUN, FINISH */

/* ---- version, strerror, last error ---- */

static void test_version_and_strerror(void) {
    static const int known[] = {
        PASID_RESULT_OK, PASID_RESULT_INVALID_WIDTH, PASID_RESULT_INCLUDES_PASID_ZERO,
        PASID_RESULT_EMPTY_RANGE, PASID_RESULT_RANGE_BEYOND_WIDTH, PASID_RESULT_RANGES_OVERLAP,
        PASID_RESULT_NOT_SUPPORTED, PASID_RESULT_NO_SUCH_GUEST, PASID_RESULT_TOO_MANY_GUESTS,
        PASID_RESULT_RID_IN_USE, PASID_RESULT_NO_SUCH_DEVICE,
        PASID_RESULT_DEVICE_BUSY, PASID_RESULT_PASID_OUT_OF_RANGE, PASID_RESULT_PASID_IN_USE,
        PASID_RESULT_NOT_ALLOCATED, PASID_RESULT_NOT_SHARED, PASID_RESULT_STILL_BOUND,
        PASID_RESULT_ALREADY_BOUND, PASID_RESULT_NOT_BOUND, PASID_RESULT_GUEST_RANGE_EXHAUSTED,
        PASID_RESULT_SHARED_RANGE_EXHAUSTED, PASID_RESULT_QUOTA_EXCEEDED,
        PASID_RESULT_OUT_OF_MEMORY, PASID_RESULT_BUFFER_TOO_SMALL, PASID_RESULT_MALFORMED_BLOB,
        PASID_RESULT_CHECKSUM_MISMATCH, PASID_RESULT_UNSUPPORTED_VERSION,
        PASID_RESULT_INCOMPATIBLE_LAYOUT, PASID_RESULT_RID_NOT_MAPPED, PASID_RESULT_PAGE_SIZE,
        PASID_RESULT_UNALIGNED_PAGE, PASID_RESULT_MISSING_TABLE_PAGE,
        PASID_RESULT_BAD_TABLE_PAGE, PASID_RESULT_DUPLICATE_PAGE, PASID_RESULT_RID_MAPPED_TWICE,
        PASID_RESULT_DEVICE_KIND_MISMATCH,
        PASID_RESULT_NULL_PARAMETER, PASID_RESULT_INVALID_HANDLE, PASID_RESULT_INVALID_ARGUMENT,
        PASID_RESULT_PANIC, PASID_RESULT_HOST_POISONED,
    };
    size_t i;
    CHECK(strcmp(pasid_version(), "0.1.0") == 0);
    CHECK(strcmp(pasid_strerror(PASID_RESULT_OK), "success") == 0);
    CHECK(strcmp(pasid_strerror(PASID_RESULT_QUOTA_EXCEEDED), "shared PASID quota reached") == 0);
    for (i = 0; i < sizeof known / sizeof known[0]; i++) {
        const char *s = pasid_strerror(known[i]);
        CHECK(s != NULL && s[0] != '\0');
        CHECK(strcmp(s, "unknown error code") != 0);
    }
    CHECK(strcmp(pasid_strerror(-1), "unknown error code") == 0);
    CHECK(strcmp(pasid_strerror(999), "unknown error code") == 0);
    CHECK(strcmp(pasid_strerror(1 << 30), "unknown error code") == 0);
}

static void *fresh_thread_last_error(void *arg) {
    int *result = (int *)arg;
    char buf[8];
    size_t n = 99;
    *result = pasid_last_error_code() == 0 &&
              pasid_last_error_message(NULL, 0, &n) == PASID_RESULT_OK && n == 0 &&
              pasid_last_error_message(buf, sizeof buf, &n) == PASID_RESULT_OK && buf[0] == '\0';
    return NULL;
}

static void test_last_error(void) {
    pasid_layout l = standard_layout();
    char buf[256];
    char small[8];
    size_t n = 0;
    pthread_t t;
    int fresh = 0;

    /* A thread that never failed has no message. */
    CHECK(pthread_create(&t, NULL, fresh_thread_last_error, &fresh) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(fresh);

    l.local_end = 4097; /* overlaps the shared range */
    CHECK_RC(pasid_layout_check(&l), PASID_RESULT_RANGES_OVERLAP);
    CHECK(pasid_last_error_code() == PASID_RESULT_RANGES_OVERLAP);
    OK(pasid_last_error_message(buf, sizeof buf, &n));
    CHECK(strcmp(buf, "the local and shared ranges overlap") == 0);
    CHECK(n == strlen("the local and shared ranges overlap"));

    /* Size query, truncation, NULLs. */
    CHECK_RC(pasid_last_error_message(NULL, 0, &n), PASID_RESULT_BUFFER_TOO_SMALL);
    CHECK(n == strlen("the local and shared ranges overlap"));
    memset(small, 'x', sizeof small);
    CHECK_RC(pasid_last_error_message(small, sizeof small, &n), PASID_RESULT_BUFFER_TOO_SMALL);
    CHECK(memcmp(small, "the loc", 8) == 0); /* 7 bytes and the NUL */
    CHECK_RC(pasid_last_error_message(buf, sizeof buf, NULL), PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_last_error_message(NULL, 10, &n), PASID_RESULT_NULL_PARAMETER);
    /* ... which did not replace the last error. */
    CHECK(pasid_last_error_code() == PASID_RESULT_RANGES_OVERLAP);

    /* A success leaves it; a new failure replaces it, with the numbers involved. */
    l = standard_layout();
    OK(pasid_layout_check(&l));
    CHECK(pasid_last_error_code() == PASID_RESULT_RANGES_OVERLAP);
    l.width = 21;
    CHECK_RC(pasid_layout_check(&l), PASID_RESULT_INVALID_WIDTH);
    OK(pasid_last_error_message(buf, sizeof buf, &n));
    CHECK(strcmp(buf, "PASID width 21 is outside 1..=20 bits") == 0);
    CHECK_RC(pasid_layout_check(NULL), PASID_RESULT_NULL_PARAMETER);
    OK(pasid_last_error_message(buf, sizeof buf, &n));
    CHECK(strcmp(buf, "layout is NULL") == 0);
}

int main(void) {
    RUN(test_version_and_strerror);
    RUN(test_last_error);
    return FINISH();
}
