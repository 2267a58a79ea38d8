/*
 * PASIDs: p2 allocation, free, translation and binding (with the pages an update
 * touches), exhaustion of the guest range, the shared range and the quota, and p1
 * record and release.
 * A program of its own, as every test_*.c (see fixtures.h).
 */
#include <stdint.h>

#include "fixtures.h" /* the shared fixtures, and check.h's CHECK, OK, RUN, FINISH */

/* ---- p2: alloc, free, translate, bind ---- */

static void test_p2_alloc_translate_bind(void) {
    pasid_host *h = new_host(PASID_PLATFORM_P2);
    pasid_guest_id g = new_guest(h, PASID_PLATFORM_P2, 2);
    pasid_pages_touched pages;
    pasid_guest_pasid list[4];
    pasid_programmed progs[4];
    pasid_guest_info gi = {.size = sizeof(pasid_guest_info)};
    uint32_t local = 0, shared = 0, shared2 = 0, hp = 0, prog = 0, kind = 0, x = 0;
    size_t n = 0;

    OK(pasid_attach(h, g, VF, PASID_DEVICE_KIND_DEDICATED));
    OK(pasid_attach(h, g, WQ, PASID_DEVICE_KIND_SHARED_WQ));

    memset(&pages, 0xff, sizeof pages);
    OK(pasid_alloc(h, g, PASID_KIND_LOCAL, &local, &pages));
    CHECK(local == 1);
    CHECK(!pages.changed);
    OK(pasid_alloc(h, g, PASID_KIND_SHARED, &shared, &pages));
    CHECK(shared == 2);
    CHECK(pages.changed && pages.directory_changed && pages.table == 0);
    OK(pasid_alloc(h, g, PASID_KIND_SHARED, &shared2, &pages));
    CHECK(pages.changed && !pages.directory_changed && pages.table == 0);
    CHECK_RC(pasid_alloc(h, g, PASID_KIND_SHARED, &x, NULL), PASID_RESULT_QUOTA_EXCEEDED);
    CHECK_RC(pasid_alloc(h, g, 0, &x, NULL), PASID_RESULT_INVALID_ARGUMENT);
    CHECK_RC(pasid_alloc(h, g, PASID_KIND_LOCAL, NULL, NULL), PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_alloc(h, 0xbad, PASID_KIND_LOCAL, &x, NULL), PASID_RESULT_NO_SUCH_GUEST);
    CHECK_RC(pasid_alloc(NULL, g, PASID_KIND_LOCAL, &x, NULL), PASID_RESULT_NULL_PARAMETER);
    CHECK(host_info(h).shared_in_use == 2);

    /* translate: shared -> hPASID in the shared range; local / unknown refused */
    OK(pasid_translate(h, g, shared, &hp));
    CHECK(hp >= 4096 && hp < (1u << 19));
    CHECK_RC(pasid_translate(h, g, local, &x), PASID_RESULT_NOT_SHARED);
    CHECK_RC(pasid_translate(h, g, 100, &x), PASID_RESULT_NOT_ALLOCATED);
    CHECK_RC(pasid_translate(h, g, 5000, &x), PASID_RESULT_PASID_OUT_OF_RANGE);
    CHECK_RC(pasid_translate(h, g, shared, NULL), PASID_RESULT_NULL_PARAMETER);

    OK(pasid_kind_of(h, g, local, &kind));
    CHECK(kind == PASID_KIND_LOCAL);
    OK(pasid_kind_of(h, g, shared, &kind));
    CHECK(kind == PASID_KIND_SHARED);
    CHECK_RC(pasid_kind_of(h, g, 100, &kind), PASID_RESULT_NOT_ALLOCATED);
    CHECK_RC(pasid_kind_of(h, g, 1, NULL), PASID_RESULT_NULL_PARAMETER);

    /* bind: the WQ gets the hPASID, the VF the gPASID; a local one cannot go to a WQ */
    OK(pasid_bind(h, g, shared, WQ, &prog));
    CHECK(prog == hp);
    OK(pasid_bind(h, g, shared, VF, &prog));
    CHECK(prog == shared);
    OK(pasid_bind(h, g, local, VF, &prog));
    CHECK(prog == local);
    CHECK_RC(pasid_bind(h, g, local, WQ, &prog), PASID_RESULT_NOT_SHARED);
    CHECK_RC(pasid_bind(h, g, shared, WQ, &prog), PASID_RESULT_ALREADY_BOUND);
    CHECK_RC(pasid_bind(h, g, 100, VF, &prog), PASID_RESULT_NOT_ALLOCATED);
    CHECK_RC(pasid_bind(h, g, shared, rid(0, 0x0c00), &prog), PASID_RESULT_NO_SUCH_DEVICE);
    CHECK_RC(pasid_bind(h, g, shared, WQ, NULL), PASID_RESULT_NULL_PARAMETER);

    /* what the host IOMMU holds, per device */
    CHECK_RC(pasid_device_programmed(h, g, VF, NULL, 0, &n), PASID_RESULT_BUFFER_TOO_SMALL);
    CHECK(n == 2);
    OK(pasid_device_programmed(h, g, VF, progs, 4, &n));
    CHECK(n == 2 && progs[0].gpasid == local && progs[0].programmed == local);
    CHECK(progs[1].gpasid == shared && progs[1].programmed == shared);
    OK(pasid_device_programmed(h, g, WQ, progs, 4, &n));
    CHECK(n == 1 && progs[0].gpasid == shared && progs[0].programmed == hp);
    CHECK_RC(pasid_device_programmed(h, g, rid(0, 0x0c00), progs, 4, &n),
             PASID_RESULT_NO_SUCH_DEVICE);
    CHECK_RC(pasid_device_programmed(h, g, VF, progs, 4, NULL), PASID_RESULT_NULL_PARAMETER);

    OK(pasid_guest_pasids(h, g, list, 4, &n));
    CHECK(n == 3);
    CHECK(list[0].gpasid == local && list[0].kind == PASID_KIND_LOCAL && list[0].hpasid == 0);
    CHECK(list[1].gpasid == shared && list[1].kind == PASID_KIND_SHARED && list[1].hpasid == hp);
    CHECK_RC(pasid_guest_pasids(h, g, list, 2, &n), PASID_RESULT_BUFFER_TOO_SMALL);
    CHECK(n == 3);
    CHECK_RC(pasid_guest_pasids(h, g, NULL, 2, &n), PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_guest_pasids(h, 0xbad, list, 4, &n), PASID_RESULT_NO_SUCH_GUEST);
    OK(pasid_guest_get_info(h, g, &gi));
    CHECK(gi.shared_held == 2 && gi.pasids == 3 && gi.devices == 2);

    /* free: refused while bound; then the hPASID returns to the host */
    CHECK_RC(pasid_free(h, g, shared, NULL), PASID_RESULT_STILL_BOUND);
    OK(pasid_unbind(h, g, shared, WQ));
    CHECK_RC(pasid_unbind(h, g, shared, WQ), PASID_RESULT_NOT_BOUND);
    CHECK_RC(pasid_unbind(h, g, shared, rid(0, 0x0c00)), PASID_RESULT_NO_SUCH_DEVICE);
    CHECK_RC(pasid_unbind(NULL, g, shared, VF), PASID_RESULT_NULL_PARAMETER);
    OK(pasid_unbind(h, g, shared, VF));
    OK(pasid_free(h, g, shared, &pages));
    CHECK(pages.changed && !pages.directory_changed && pages.table == 0);
    /* It drains until the VMM confirms the teardown. */
    CHECK(host_info(h).shared_in_use == 2);
    CHECK_RC(pasid_free(h, g, shared, NULL), PASID_RESULT_DRAINING);
    confirm_all(h);
    CHECK(host_info(h).shared_in_use == 1);
    CHECK_RC(pasid_free(h, g, shared, NULL), PASID_RESULT_NOT_ALLOCATED);
    CHECK_RC(pasid_free(h, g, 0, NULL), PASID_RESULT_PASID_OUT_OF_RANGE);
    OK(pasid_unbind(h, g, local, VF));
    OK(pasid_free(h, g, local, &pages));
    CHECK(!pages.changed);
    CHECK_RC(pasid_free(NULL, g, local, NULL), PASID_RESULT_NULL_PARAMETER);

    /* Destroying the guest returns its hPASIDs once their teardown is confirmed. */
    OK(pasid_guest_destroy(h, g));
    CHECK(host_info(h).shared_in_use == 1);
    confirm_all(h);
    CHECK(host_info(h).shared_in_use == 0);
    pasid_host_free(h);
}

static void test_exhaustion(void) {
    pasid_layout l = standard_layout();
    pasid_host *h = NULL;
    pasid_guest_id g, g2;
    uint32_t x = 0;
    int i;

    /* A guest range of 3 PASIDs and a shared range of 2. */
    l.width = 5;
    l.local_start = 1;
    l.local_end = 4;
    l.shared_start = 8;
    l.shared_end = 10;
    OK(pasid_host_new(&l, PASID_PLATFORM_P2, &h));
    g = new_guest(h, PASID_PLATFORM_P2, 10);
    for (i = 0; i < 3; i++)
        OK(pasid_alloc(h, g, PASID_KIND_LOCAL, &x, NULL));
    CHECK_RC(pasid_alloc(h, g, PASID_KIND_LOCAL, &x, NULL), PASID_RESULT_GUEST_RANGE_EXHAUSTED);
    g2 = new_guest(h, PASID_PLATFORM_P2, 10);
    OK(pasid_alloc(h, g2, PASID_KIND_SHARED, &x, NULL));
    OK(pasid_alloc(h, g2, PASID_KIND_SHARED, &x, NULL));
    CHECK_RC(pasid_alloc(h, g2, PASID_KIND_SHARED, &x, NULL),
             PASID_RESULT_SHARED_RANGE_EXHAUSTED);
    CHECK(host_info(h).shared_free == 0);
    pasid_host_free(h);
}

/* ---- p1: record and release ---- */

static void test_p1_record_release(void) {
    pasid_host *h = new_host(PASID_PLATFORM_P1);
    pasid_guest_id g = new_guest(h, PASID_PLATFORM_P1, 0);
    pasid_rid vf2 = rid(0, 0x0302);
    pasid_programmed progs[4];
    uint32_t prog = 0, x = 0;
    size_t n = 0;

    OK(pasid_attach(h, g, VF, PASID_DEVICE_KIND_DEDICATED));
    OK(pasid_attach(h, g, vf2, PASID_DEVICE_KIND_DEDICATED));
    OK(pasid_record(h, g, VF, 42, &prog));
    CHECK(prog == 42);
    OK(pasid_record(h, g, vf2, 42, &prog)); /* same number on another RID is fine */
    CHECK_RC(pasid_record(h, g, VF, 42, &prog), PASID_RESULT_PASID_IN_USE);
    CHECK_RC(pasid_record(h, g, VF, 4096, &prog), PASID_RESULT_PASID_OUT_OF_RANGE);
    CHECK_RC(pasid_record(h, g, VF, 0, &prog), PASID_RESULT_PASID_OUT_OF_RANGE);
    CHECK_RC(pasid_record(h, g, WQ, 43, &prog), PASID_RESULT_NO_SUCH_DEVICE);
    CHECK_RC(pasid_record(h, g, VF, 43, NULL), PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_alloc(h, g, PASID_KIND_LOCAL, &x, NULL), PASID_RESULT_NOT_SUPPORTED);
    OK(pasid_device_programmed(h, g, VF, progs, 4, &n));
    CHECK(n == 1 && progs[0].gpasid == 42 && progs[0].programmed == 42);
    CHECK_RC(pasid_detach(h, g, VF), PASID_RESULT_DEVICE_BUSY);

    OK(pasid_release(h, g, VF, 42));
    CHECK_RC(pasid_release(h, g, VF, 42), PASID_RESULT_NOT_ALLOCATED);
    CHECK_RC(pasid_release(h, g, WQ, 42), PASID_RESULT_NO_SUCH_DEVICE);
    CHECK_RC(pasid_release(NULL, g, VF, 42), PASID_RESULT_NULL_PARAMETER);
    OK(pasid_detach(h, g, VF));

    /* p2 guests allocate; they do not record. */
    {
        pasid_host *h2 = new_host(PASID_PLATFORM_P2);
        pasid_guest_id p2 = new_guest(h2, PASID_PLATFORM_P2, 1);
        OK(pasid_attach(h2, p2, VF, PASID_DEVICE_KIND_DEDICATED));
        CHECK_RC(pasid_record(h2, p2, VF, 5, &prog), PASID_RESULT_NOT_SUPPORTED);
        CHECK_RC(pasid_release(h2, p2, VF, 5), PASID_RESULT_NOT_SUPPORTED);
        pasid_host_free(h2);
    }
    pasid_host_free(h);
}

int main(void) {
    RUN(test_p2_alloc_translate_bind);
    RUN(test_exhaustion);
    RUN(test_p1_record_release);
    return FINISH();
}
