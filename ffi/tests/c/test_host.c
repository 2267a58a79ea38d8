/*
 * Layouts (`pasid_layout_check` and each of its refusals) and a host's life: made,
 * described, freed, NULL and stale handles.
 * A program of its own, as every test_*.c (see fixtures.h).
 */
#include <stdint.h>

#include "fixtures.h" /* the shared fixtures, and check.h's CHECK, OK, RUN, FINISH */

/* ---- layout and host ---- */

static void test_layout_check(void) {
    pasid_layout l = standard_layout();
    OK(pasid_layout_check(&l));
    l.width = 0;
    CHECK_RC(pasid_layout_check(&l), PASID_RESULT_INVALID_WIDTH);
    l = standard_layout();
    l.local_start = 0;
    CHECK_RC(pasid_layout_check(&l), PASID_RESULT_INCLUDES_PASID_ZERO);
    l = standard_layout();
    l.shared_end = l.shared_start;
    CHECK_RC(pasid_layout_check(&l), PASID_RESULT_EMPTY_RANGE);
    l = standard_layout();
    l.width = 12;
    CHECK_RC(pasid_layout_check(&l), PASID_RESULT_RANGE_BEYOND_WIDTH);
    l = standard_layout();
    l.shared_start = 100;
    CHECK_RC(pasid_layout_check(&l), PASID_RESULT_RANGES_OVERLAP);
    CHECK_RC(pasid_layout_check(NULL), PASID_RESULT_NULL_PARAMETER);
}

static void test_host_lifecycle(void) {
    pasid_layout l = standard_layout();
    pasid_host *h = NULL;
    pasid_host *sentinel = (pasid_host *)&l;
    pasid_host_info info = {.size = sizeof(pasid_host_info)};

    CHECK_RC(pasid_host_new(NULL, PASID_PLATFORM_P2, &h), PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_host_new(&l, PASID_PLATFORM_P2, NULL), PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_host_new(&l, 0, &sentinel), PASID_RESULT_INVALID_ARGUMENT);
    CHECK_RC(pasid_host_new(&l, 3, &sentinel), PASID_RESULT_INVALID_ARGUMENT);
    l.width = 0;
    CHECK_RC(pasid_host_new(&l, PASID_PLATFORM_P2, &sentinel), PASID_RESULT_INVALID_WIDTH);
    CHECK(sentinel == (pasid_host *)&l); /* not written on error */

    l = standard_layout();
    OK(pasid_host_new(&l, PASID_PLATFORM_P2, &h));
    CHECK(h != NULL);
    info = host_info(h);
    CHECK(info.layout.width == 20 && info.layout.local_start == 1 &&
          info.layout.local_end == 4096 && info.layout.shared_start == 4096 &&
          info.layout.shared_end == (1u << 19));
    CHECK(info.platform == PASID_PLATFORM_P2);
    CHECK(info.shared_in_use == 0);
    CHECK(info.shared_free == (1u << 19) - 4096);
    CHECK(info.guests == 0);
    CHECK(info.heap_bytes > 0);
    CHECK_RC(pasid_host_get_info(h, NULL), PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_host_get_info(NULL, &info), PASID_RESULT_NULL_PARAMETER);

    pasid_host_free(h);
    /* Freed, made-up and wrong-type handles are refused, never dereferenced. */
    CHECK_RC(pasid_host_get_info(h, &info), PASID_RESULT_INVALID_HANDLE);
    CHECK_RC(pasid_host_get_info((const pasid_host *)(uintptr_t)0x1234, &info),
             PASID_RESULT_INVALID_HANDLE);
    CHECK_RC(pasid_host_get_info((const pasid_host *)&l, &info), PASID_RESULT_INVALID_HANDLE);
    pasid_host_free(h);    /* a second free is a no-op */
    pasid_host_free(NULL); /* so is NULL */
    pasid_host_free((pasid_host *)(uintptr_t)0x1234);

    /* A new host never gets the old handle back. */
    {
        pasid_host *h2 = new_host(PASID_PLATFORM_P1);
        CHECK(h2 != h);
        CHECK_RC(pasid_host_get_info(h, &info), PASID_RESULT_INVALID_HANDLE);
        info = host_info(h2);
        CHECK(info.platform == PASID_PLATFORM_P1);
        pasid_host_free(h2);
    }
}

int main(void) {
    RUN(test_layout_check);
    RUN(test_host_lifecycle);
    return FINISH();
}
