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
    /* Every code the header lists (its X-macro), the core's and the C layer's. */
#define PASID_AS_ENTRY(code) code,
    static const int known[] = {PASID_RESULT_CODES(PASID_AS_ENTRY)};
#undef PASID_AS_ENTRY
    size_t i;
    CHECK(strcmp(pasid_version(), "0.1.0") == 0);
    CHECK(strcmp(pasid_strerror(PASID_RESULT_OK), "success") == 0);
    CHECK(strcmp(pasid_strerror(PASID_RESULT_QUOTA_EXCEEDED), "shared PASID quota reached") == 0);
    CHECK(sizeof known / sizeof known[0] == 50); /* 0, the core's 1..59 in use, 1000.. */
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
