/*
 * C tests of libpasid, built against the installed header and static library (see
 * scripts/test-c.sh). Every exported function is called here (test-c.sh checks that
 * each name in pasid.h appears in this file), with its success path and its error
 * paths: NULL pointers, bad handles, bad values, short buffers.
 *
 * A tiny harness: CHECK() records a failure and goes on; a test passes when none of
 * its checks failed. The last line is "N passed, M failed".
 */
#include <pasid.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h" /* CHECK, CHECK_RC, OK: the harness all C test files share */

/* ---- fixtures ---- */

static pasid_layout standard_layout(void) {
    pasid_layout l;
    memset(&l, 0, sizeof l);
    l.size = sizeof l;
    l.width = 20;
    l.local_start = 1;
    l.local_end = 4096;
    l.shared_start = 4096;
    l.shared_end = 1u << 19;
    return l;
}

static pasid_host *new_host(uint32_t platform) {
    pasid_layout l = standard_layout();
    pasid_host *h = NULL;
    OK(pasid_host_new(&l, platform, &h));
    return h;
}

static pasid_guest_id new_guest(pasid_host *h, uint32_t platform, uint32_t quota) {
    pasid_guest_config c = {.size = sizeof(pasid_guest_config)};
    pasid_guest_id g = 0;
    c.platform = platform;
    c.shared_quota = quota;
    OK(pasid_guest_create(h, &c, &g));
    return g;
}

static pasid_rid rid(uint16_t segment, uint16_t bdf) {
    pasid_rid r;
    r.segment = segment;
    r.bdf = bdf;
    return r;
}

/* The VMM confirms the teardown of everything that drains on `h`, as one that clears
   the entries and flushes synchronously on each free does. */
static void confirm_all(pasid_host *h) {
    pasid_draining items[64];
    size_t n = 0;
    OK(pasid_draining_list(h, items, 64, &n));
    OK(pasid_complete_teardown(h, items, n));
}

/* Frees a gPASID and confirms its teardown at once; returns the free's result. */
static int free_confirmed(pasid_host *h, pasid_guest_id g, uint32_t gpasid) {
    pasid_draining item = {g, gpasid, 0};
    int rc;
    if (pasid_translate(h, g, gpasid, &item.hpasid) != PASID_RESULT_OK)
        item.hpasid = 0;
    rc = pasid_free(h, g, gpasid, NULL);
    if (rc == PASID_RESULT_OK)
        rc = pasid_complete_teardown(h, &item, 1);
    return rc;
}

static const pasid_rid VF = {0, 0x0301};
static const pasid_rid WQ = {0, 0x0a00};

static pasid_host_info host_info(const pasid_host *h) {
    pasid_host_info info = {.size = sizeof(pasid_host_info)};
    OK(pasid_host_get_info(h, &info));
    return info;
}

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

/* ---- guests and devices ---- */

static void test_guests(void) {
    pasid_host *h = new_host(PASID_PLATFORM_P2);
    pasid_host *p1host = new_host(PASID_PLATFORM_P1);
    pasid_guest_config c = {.size = sizeof(pasid_guest_config)};
    pasid_guest_id g2, g1, g = 77, ids[4];
    pasid_guest_info gi = {.size = sizeof(pasid_guest_info)};
    size_t n = 0;

    g2 = new_guest(h, PASID_PLATFORM_P2, 8);
    g1 = new_guest(h, PASID_PLATFORM_P1, 0);
    CHECK(g1 != g2);
    c.platform = PASID_PLATFORM_P2;
    c.shared_quota = 1;
    CHECK_RC(pasid_guest_create(p1host, &c, &g), PASID_RESULT_NOT_SUPPORTED);
    CHECK(g == 77);
    c.platform = 9;
    CHECK_RC(pasid_guest_create(h, &c, &g), PASID_RESULT_INVALID_ARGUMENT);
    CHECK_RC(pasid_guest_create(h, NULL, &g), PASID_RESULT_NULL_PARAMETER);
    c.platform = PASID_PLATFORM_P2;
    CHECK_RC(pasid_guest_create(h, &c, NULL), PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_guest_create(NULL, &c, &g), PASID_RESULT_NULL_PARAMETER);

    OK(pasid_guest_get_info(h, g2, &gi));
    CHECK(gi.config.platform == PASID_PLATFORM_P2 && gi.config.shared_quota == 8);
    CHECK(gi.shared_held == 0 && gi.pasids == 0 && gi.devices == 0);
    OK(pasid_guest_get_info(h, g1, &gi));
    CHECK(gi.config.platform == PASID_PLATFORM_P1);
    CHECK_RC(pasid_guest_get_info(h, g1, NULL), PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_guest_get_info(h, 0xdead, &gi), PASID_RESULT_NO_SUCH_GUEST);

    /* Size query, short buffer (left untouched), full buffer. */
    CHECK_RC(pasid_host_guests(h, NULL, 0, &n), PASID_RESULT_BUFFER_TOO_SMALL);
    CHECK(n == 2);
    ids[0] = 0xffffffff;
    CHECK_RC(pasid_host_guests(h, ids, 1, &n), PASID_RESULT_BUFFER_TOO_SMALL);
    CHECK(n == 2 && ids[0] == 0xffffffff);
    OK(pasid_host_guests(h, ids, 4, &n));
    CHECK(n == 2 && ids[0] == g2 && ids[1] == g1);
    CHECK_RC(pasid_host_guests(h, NULL, 4, &n), PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_host_guests(h, ids, 4, NULL), PASID_RESULT_NULL_PARAMETER);
    OK(pasid_host_guests(p1host, NULL, 0, &n)); /* nothing to list: fits in 0 */
    CHECK(n == 0);
    CHECK(host_info(h).guests == 2);

    OK(pasid_guest_destroy(h, g2));
    CHECK_RC(pasid_guest_destroy(h, g2), PASID_RESULT_NO_SUCH_GUEST);
    CHECK_RC(pasid_guest_get_info(h, g2, &gi), PASID_RESULT_NO_SUCH_GUEST);
    /* The slot is reused, but the stale id stays dead. */
    g = new_guest(h, PASID_PLATFORM_P2, 1);
    CHECK(g != g2);
    CHECK_RC(pasid_guest_get_info(h, g2, &gi), PASID_RESULT_NO_SUCH_GUEST);
    CHECK_RC(pasid_guest_destroy(NULL, g), PASID_RESULT_NULL_PARAMETER);

    pasid_host_free(h);
    pasid_host_free(p1host);
}

static void test_devices(void) {
    pasid_host *h = new_host(PASID_PLATFORM_P2);
    pasid_guest_id g = new_guest(h, PASID_PLATFORM_P2, 4);
    pasid_guest_id p1 = new_guest(h, PASID_PLATFORM_P1, 0);
    pasid_guest_id other = new_guest(h, PASID_PLATFORM_P2, 4);
    pasid_device_info devs[3];
    bool attached = true;
    pasid_guest_id owner = 1234;
    uint32_t gp = 0, prog = 0;
    size_t n = 0;

    OK(pasid_attach(h, g, VF, PASID_DEVICE_KIND_DEDICATED));
    OK(pasid_attach(h, g, WQ, PASID_DEVICE_KIND_SHARED_WQ));
    CHECK_RC(pasid_attach(h, other, VF, PASID_DEVICE_KIND_DEDICATED), PASID_RESULT_RID_IN_USE);
    CHECK_RC(pasid_attach(h, p1, rid(0, 0x0b00), PASID_DEVICE_KIND_SHARED_WQ),
             PASID_RESULT_NOT_SUPPORTED);
    CHECK_RC(pasid_attach(h, g, rid(0, 0x0b00), 0), PASID_RESULT_INVALID_ARGUMENT);
    CHECK_RC(pasid_attach(h, g, rid(0, 0x0b00), 7), PASID_RESULT_INVALID_ARGUMENT);
    CHECK_RC(pasid_attach(h, 0xbad, rid(0, 0x0b00), PASID_DEVICE_KIND_DEDICATED),
             PASID_RESULT_NO_SUCH_GUEST);
    CHECK_RC(pasid_attach(NULL, g, rid(0, 0x0b00), PASID_DEVICE_KIND_DEDICATED),
             PASID_RESULT_NULL_PARAMETER);

    OK(pasid_owner(h, VF, &attached, &owner));
    CHECK(attached && owner == g);
    OK(pasid_owner(h, rid(1, 0x0301), &attached, &owner));
    CHECK(!attached && owner == 0);
    CHECK_RC(pasid_owner(h, VF, NULL, &owner), PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_owner(h, VF, &attached, NULL), PASID_RESULT_NULL_PARAMETER);

    CHECK_RC(pasid_guest_devices(h, g, NULL, 0, &n), PASID_RESULT_BUFFER_TOO_SMALL);
    CHECK(n == 2);
    OK(pasid_guest_devices(h, g, devs, 3, &n));
    CHECK(n == 2);
    CHECK(devs[0].rid.bdf == VF.bdf && devs[0].kind == PASID_DEVICE_KIND_DEDICATED);
    CHECK(devs[1].rid.bdf == WQ.bdf && devs[1].kind == PASID_DEVICE_KIND_SHARED_WQ);
    CHECK(devs[0].programmed == 0);
    CHECK_RC(pasid_guest_devices(h, g, devs, 3, NULL), PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_guest_devices(h, 0xbad, devs, 3, &n), PASID_RESULT_NO_SUCH_GUEST);

    /* Busy while bound. */
    OK(pasid_alloc(h, g, PASID_KIND_LOCAL, &gp, NULL));
    OK(pasid_bind(h, g, gp, VF, &prog));
    CHECK_RC(pasid_detach(h, g, VF), PASID_RESULT_DEVICE_BUSY);
    OK(pasid_guest_devices(h, g, devs, 3, &n));
    CHECK(devs[0].programmed == 1);
    OK(pasid_unbind(h, g, gp, VF));
    OK(pasid_detach(h, g, VF));
    CHECK_RC(pasid_detach(h, g, VF), PASID_RESULT_NO_SUCH_DEVICE);
    CHECK_RC(pasid_detach(h, other, WQ), PASID_RESULT_NO_SUCH_DEVICE);
    OK(pasid_owner(h, VF, &attached, &owner));
    CHECK(!attached);
    CHECK_RC(pasid_detach(NULL, g, WQ), PASID_RESULT_NULL_PARAMETER);

    pasid_host_free(h);
}

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

/* ---- hardware-format translation tables ---- */

/* A set of page buffers with made-up physical addresses, and a reader for the walk. */
#define NPAGES 8
typedef struct {
    uint8_t *mem[NPAGES];
    uint64_t phys[NPAGES];
} pages_t;

static void pages_init(pages_t *p) {
    int i;
    for (i = 0; i < NPAGES; i++) {
        p->mem[i] = (uint8_t *)aligned_alloc(PASID_PAGE_SIZE, PASID_PAGE_SIZE);
        memset(p->mem[i], 0xAA, PASID_PAGE_SIZE);
        p->phys[i] = 0x100000000ull + (uint64_t)i * 0x1000;
    }
}

static void pages_fini(pages_t *p) {
    int i;
    for (i = 0; i < NPAGES; i++)
        free(p->mem[i]);
}

static pasid_page page_of(pages_t *p, int i) {
    pasid_page pg;
    pg.phys = p->phys[i];
    pg.bytes = p->mem[i];
    pg.len = PASID_PAGE_SIZE;
    return pg;
}

static pasid_walk_result walk(pages_t *p, uint32_t gpasid) {
    pasid_page_ref refs[NPAGES];
    pasid_walk_result r;
    int i;
    for (i = 0; i < NPAGES; i++) {
        refs[i].phys = p->phys[i];
        refs[i].bytes = p->mem[i];
        refs[i].len = PASID_PAGE_SIZE;
    }
    memset(&r, 0xff, sizeof r);
    /* pages 0 and 1 are the low and high directories */
    OK(pasid_walk(p->phys[0], p->phys[1], gpasid, refs, NPAGES, &r));
    return r;
}

static int untouched(const uint8_t *mem) {
    size_t i;
    for (i = 0; i < PASID_PAGE_SIZE; i++)
        if (mem[i] != 0xAA)
            return 0;
    return 1;
}

static void test_hwtable(void) {
    pasid_host *h = new_host(PASID_PLATFORM_P2);
    pasid_guest_id g = new_guest(h, PASID_PLATFORM_P2, 2000);
    pasid_table_page tp[3];
    pasid_pages_touched touched;
    pasid_walk_result r;
    pages_t p;
    uint32_t tables[4], gp = 0, hp = 0, dir = 0, last_shared = 0, local = 0;
    size_t n = 0, off = 0;
    int i, ok;

    pages_init(&p);
    /* 1030 shared gPASIDs fill table 0 and start table 1; then one local. */
    for (i = 0; i < 1030; i++)
        OK(pasid_alloc(h, g, PASID_KIND_SHARED, &last_shared, NULL));
    CHECK(last_shared == 1030);
    OK(pasid_alloc(h, g, PASID_KIND_LOCAL, &local, NULL));
    CHECK_RC(free_confirmed(h, g, 7), PASID_RESULT_OK); /* a hole */

    CHECK_RC(pasid_translation_tables(h, g, NULL, 0, &n), PASID_RESULT_BUFFER_TOO_SMALL);
    CHECK(n == 2);
    OK(pasid_translation_tables(h, g, tables, 4, &n));
    CHECK(n == 2 && tables[0] == 0 && tables[1] == 1);
    CHECK_RC(pasid_translation_tables(h, g, tables, 4, NULL), PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_translation_tables(h, 0xbad, tables, 4, &n), PASID_RESULT_NO_SUCH_GUEST);

    /* Refusals, each before any page is written. */
    tp[0].table = 0;
    tp[0].page = page_of(&p, 2);
    tp[1].table = 1;
    tp[1].page = page_of(&p, 3);
    CHECK_RC(pasid_export_translation(h, g, page_of(&p, 0), page_of(&p, 1), tp, 1),
             PASID_RESULT_MISSING_TABLE_PAGE);
    tp[1].table = 1024;
    CHECK_RC(pasid_export_translation(h, g, page_of(&p, 0), page_of(&p, 1), tp, 2),
             PASID_RESULT_BAD_TABLE_PAGE);
    tp[1].table = 0;
    CHECK_RC(pasid_export_translation(h, g, page_of(&p, 0), page_of(&p, 1), tp, 2),
             PASID_RESULT_BAD_TABLE_PAGE);
    tp[1].table = 1;
    tp[1].page.phys += 8;
    CHECK_RC(pasid_export_translation(h, g, page_of(&p, 0), page_of(&p, 1), tp, 2),
             PASID_RESULT_UNALIGNED_PAGE);
    tp[1].page.phys = p.phys[2];
    CHECK_RC(pasid_export_translation(h, g, page_of(&p, 0), page_of(&p, 1), tp, 2),
             PASID_RESULT_DUPLICATE_PAGE);
    tp[1].page = page_of(&p, 3);
    tp[1].page.len = 100;
    CHECK_RC(pasid_export_translation(h, g, page_of(&p, 0), page_of(&p, 1), tp, 2),
             PASID_RESULT_PAGE_SIZE);
    tp[1].page = page_of(&p, 2); /* same memory as table 0's page */
    tp[1].page.phys = p.phys[3];
    CHECK_RC(pasid_export_translation(h, g, page_of(&p, 0), page_of(&p, 1), tp, 2),
             PASID_RESULT_INVALID_ARGUMENT);
    tp[1].page = page_of(&p, 3);
    tp[1].page.bytes = NULL;
    CHECK_RC(pasid_export_translation(h, g, page_of(&p, 0), page_of(&p, 1), tp, 2),
             PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_export_translation(h, g, page_of(&p, 0), page_of(&p, 1), NULL, 2),
             PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_export_translation(NULL, g, page_of(&p, 0), page_of(&p, 1), tp, 0),
             PASID_RESULT_NULL_PARAMETER);
    for (i = 0; i < NPAGES; i++)
        CHECK(untouched(p.mem[i]));

    /* The export, then the walk agrees with translate for every gPASID. */
    tp[1].page = page_of(&p, 3);
    OK(pasid_export_translation(h, g, page_of(&p, 0), page_of(&p, 1), tp, 2));
    ok = 1;
    for (gp = 1; gp <= 1031; gp++) {
        int trc = pasid_translate(h, g, gp, &hp);
        r = walk(&p, gp);
        if (trc == PASID_RESULT_OK)
            ok &= r.fault == PASID_FAULT_NONE && r.hpasid == hp;
        else
            ok &= r.fault == PASID_FAULT_ENTRY_INVALID && r.hpasid == 0;
    }
    CHECK(ok);
    r = walk(&p, 7);
    CHECK(r.fault == PASID_FAULT_ENTRY_INVALID && r.index == 7 && r.phys == p.phys[2]);
    r = walk(&p, local);
    CHECK(r.fault == PASID_FAULT_ENTRY_INVALID);
    r = walk(&p, 5 << 10);
    CHECK(r.fault == PASID_FAULT_DIRECTORY_NOT_PRESENT && r.directory == PASID_DIRECTORY_LOW &&
          r.index == 5);
    r = walk(&p, (1u << 19) | 3);
    CHECK(r.fault == PASID_FAULT_DIRECTORY_NOT_PRESENT && r.directory == PASID_DIRECTORY_HIGH &&
          r.index == 0);

    /* Byte-exact format: table 0 entry 1 is valid | hPASID, little-endian. */
    OK(pasid_translate(h, g, 1, &hp));
    {
        uint32_t e = (uint32_t)p.mem[2][4] | (uint32_t)p.mem[2][5] << 8 |
                     (uint32_t)p.mem[2][6] << 16 | (uint32_t)p.mem[2][7] << 24;
        uint64_t d = 0;
        CHECK(e == (0x80000000u | hp));
        for (i = 7; i >= 0; i--)
            d = d << 8 | p.mem[0][i];
        CHECK(d == (p.phys[2] | 1));
    }

    /* Reserved bits make the CPU exit. */
    p.mem[2][4 * 3 + 2] |= 0x10; /* entry 3: bit 20 */
    r = walk(&p, 3);
    CHECK(r.fault == PASID_FAULT_ENTRY_RESERVED && r.index == 3 && r.entry != 0);
    p.mem[0][8] |= 0x2; /* directory entry 1: bit 1 */
    r = walk(&p, 1024);
    CHECK(r.fault == PASID_FAULT_DIRECTORY_RESERVED && r.directory == PASID_DIRECTORY_LOW);

    /* A page the walk cannot read. */
    {
        pasid_page_ref only_dir;
        only_dir.phys = p.phys[0];
        only_dir.bytes = p.mem[0];
        only_dir.len = PASID_PAGE_SIZE;
        OK(pasid_walk(p.phys[0], p.phys[1], 2, &only_dir, 1, &r));
        CHECK(r.fault == PASID_FAULT_UNREADABLE && r.phys == p.phys[2]);
        CHECK_RC(pasid_walk(0, 0, 2, NULL, 1, &r), PASID_RESULT_NULL_PARAMETER);
        CHECK_RC(pasid_walk(0, 0, 2, &only_dir, 1, NULL), PASID_RESULT_NULL_PARAMETER);
        OK(pasid_walk(0, 0, 2, NULL, 0, &r));
        CHECK(r.fault == PASID_FAULT_UNREADABLE && r.phys == 0);
    }

    /* Rewriting a table page restores it. */
    OK(pasid_write_translation_table(h, g, 0, p.mem[2], PASID_PAGE_SIZE));
    r = walk(&p, 3);
    OK(pasid_translate(h, g, 3, &hp));
    CHECK(r.fault == PASID_FAULT_NONE && r.hpasid == hp);
    CHECK_RC(pasid_write_translation_table(h, g, 1024, p.mem[2], PASID_PAGE_SIZE),
             PASID_RESULT_BAD_TABLE_PAGE);
    CHECK_RC(pasid_write_translation_table(h, g, 0, p.mem[2], 10), PASID_RESULT_PAGE_SIZE);
    CHECK_RC(pasid_write_translation_table(h, g, 0, NULL, PASID_PAGE_SIZE),
             PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_write_translation_table(h, 0xbad, 0, p.mem[2], PASID_PAGE_SIZE),
             PASID_RESULT_NO_SUCH_GUEST);

    /* Directory helpers. */
    OK(pasid_directory_of_table(0x201, &dir, &off));
    CHECK(dir == PASID_DIRECTORY_HIGH && off == 8);
    OK(pasid_directory_of_table(5, &dir, NULL));
    CHECK(dir == PASID_DIRECTORY_LOW);
    CHECK_RC(pasid_directory_of_table(5, NULL, &off), PASID_RESULT_NULL_PARAMETER);
    OK(pasid_write_directory_entry(p.mem[0], PASID_PAGE_SIZE, 1, p.phys[3], &dir));
    CHECK(dir == PASID_DIRECTORY_LOW);
    r = walk(&p, 1024);
    CHECK(r.fault == PASID_FAULT_NONE);
    CHECK_RC(pasid_write_directory_entry(p.mem[0], PASID_PAGE_SIZE, 1, p.phys[3] + 1, NULL),
             PASID_RESULT_UNALIGNED_PAGE);
    CHECK_RC(pasid_write_directory_entry(p.mem[0], PASID_PAGE_SIZE, 1024, p.phys[3], NULL),
             PASID_RESULT_BAD_TABLE_PAGE);
    CHECK_RC(pasid_write_directory_entry(p.mem[0], 4095, 1, p.phys[3], NULL),
             PASID_RESULT_PAGE_SIZE);
    CHECK_RC(pasid_write_directory_entry(NULL, PASID_PAGE_SIZE, 1, p.phys[3], NULL),
             PASID_RESULT_NULL_PARAMETER);

    /* Incremental updates: a shared gPASID in a new table (2) changes the directory. */
    {
        uint32_t g2048 = 0;
        for (i = 1032; i <= 2048; i++)
            OK(pasid_alloc(h, g, PASID_KIND_LOCAL, &gp, NULL));
        OK(pasid_alloc(h, g, PASID_KIND_SHARED, &g2048, &touched));
        CHECK(g2048 == 2048); /* 7 and 1032..2047 went to the locals */
        CHECK(touched.changed && touched.directory_changed && touched.table == 2);
        r = walk(&p, g2048);
        CHECK(r.fault == PASID_FAULT_DIRECTORY_NOT_PRESENT);
        CHECK_RC(pasid_write_touched_pages(h, g, &touched, page_of(&p, 4), NULL, 0),
                 PASID_RESULT_NULL_PARAMETER);
        CHECK_RC(pasid_write_touched_pages(h, g, &touched, page_of(&p, 4), p.mem[4],
                                           PASID_PAGE_SIZE),
                 PASID_RESULT_INVALID_ARGUMENT); /* overlapping pages */
        CHECK_RC(pasid_write_touched_pages(h, g, NULL, page_of(&p, 4), p.mem[0],
                                           PASID_PAGE_SIZE),
                 PASID_RESULT_NULL_PARAMETER);
        OK(pasid_write_touched_pages(h, g, &touched, page_of(&p, 4), p.mem[0],
                                     PASID_PAGE_SIZE));
        OK(pasid_translate(h, g, g2048, &hp));
        r = walk(&p, g2048);
        CHECK(r.fault == PASID_FAULT_NONE && r.hpasid == hp);
        /* freeing it changes the table page only */
        OK(pasid_free(h, g, g2048, &touched));
        CHECK(touched.changed && !touched.directory_changed && touched.table == 2);
        OK(pasid_write_touched_pages(h, g, &touched, page_of(&p, 4), NULL, 0));
        r = walk(&p, g2048);
        CHECK(r.fault == PASID_FAULT_ENTRY_INVALID);
        /* flags filled with arbitrary non-zero bytes read as true, never as UB */
        memset(&touched, 0x7f, sizeof touched);
        touched.table = 2;
        OK(pasid_write_touched_pages(h, g, &touched, page_of(&p, 4), p.mem[0], PASID_PAGE_SIZE));
        r = walk(&p, g2048);
        CHECK(r.fault == PASID_FAULT_ENTRY_INVALID && r.phys == p.phys[4]);
        /* nothing changed: nothing to write, but the guest must exist */
        touched.changed = false;
        OK(pasid_write_touched_pages(h, g, &touched, page_of(&p, 4), NULL, 0));
        CHECK_RC(pasid_write_touched_pages(h, 0xbad, &touched, page_of(&p, 4), NULL, 0),
                 PASID_RESULT_NO_SUCH_GUEST);
    }

    pages_fini(&p);
    pasid_host_free(h);
}

/* ---- VT-d virtual commands ---- */

/* Register layouts written from the spec's bit positions, not the library's constants. */
static uint64_t cmd33(uint64_t code, uint64_t operand) { return operand << 16 | code; }
static uint64_t cmd30(uint64_t code, uint64_t operand) { return operand << 8 | code; }
static uint32_t sc33(uint64_t rsp) { return (uint32_t)(rsp >> 1) & 0x7f; }
static uint32_t sc30(uint64_t rsp) { return (uint32_t)(rsp >> 1) & 0x3; }
static uint32_t pasid33(uint64_t rsp) { return (uint32_t)(rsp >> 16) & 0xfffff; }
static uint32_t pasid30(uint64_t rsp) { return (uint32_t)(rsp >> 8) & 0xfffff; }

static void test_vcmd(void) {
    pasid_host *h = new_host(PASID_PLATFORM_P2);
    pasid_guest_id g = new_guest(h, PASID_PLATFORM_P2, 1);
    pasid_guest_id p1 = new_guest(h, PASID_PLATFORM_P1, 0);
    pasid_vcmd_offsets off;
    pasid_vcmd_response resp;
    pasid_pages_touched touched;
    uint64_t cap = 99, rsp = 0, c = 0;
    uint32_t reg = 99, kind = 0, hp = 0, shared = 0, local = 0;

    /* Offsets: 3.3 VCMD 0xE00, VCRSP 0xE10, VCCAP 0xE30; 3.0 VCCAP 0xE00, VCMD 0xE10,
     * VCRSP 0xE20. */
    OK(pasid_vcmd_get_offsets(PASID_VTD_REVISION_V33, &off));
    CHECK(off.vcmd == 0xE00 && off.vcrsp == 0xE10 && off.vccap == 0xE30 &&
          off.operand_shift == 16);
    OK(pasid_vcmd_get_offsets(PASID_VTD_REVISION_V30, &off));
    CHECK(off.vccap == 0xE00 && off.vcmd == 0xE10 && off.vcrsp == 0xE20 &&
          off.operand_shift == 8);
    CHECK_RC(pasid_vcmd_get_offsets(31, &off), PASID_RESULT_INVALID_ARGUMENT);
    CHECK_RC(pasid_vcmd_get_offsets(PASID_VTD_REVISION_V33, NULL), PASID_RESULT_NULL_PARAMETER);
    OK(pasid_vcmd_register_at(PASID_VTD_REVISION_V33, 0xE00, &reg));
    CHECK(reg == PASID_VCMD_REGISTER_VCMD);
    OK(pasid_vcmd_register_at(PASID_VTD_REVISION_V33, 0xE30, &reg));
    CHECK(reg == PASID_VCMD_REGISTER_VCCAP);
    OK(pasid_vcmd_register_at(PASID_VTD_REVISION_V30, 0xE20, &reg));
    CHECK(reg == PASID_VCMD_REGISTER_VCRSP);
    OK(pasid_vcmd_register_at(PASID_VTD_REVISION_V30, 0xE08, &reg));
    CHECK(reg == PASID_VCMD_REGISTER_NONE);
    CHECK_RC(pasid_vcmd_register_at(0, 0xE00, &reg), PASID_RESULT_INVALID_ARGUMENT);
    CHECK_RC(pasid_vcmd_register_at(PASID_VTD_REVISION_V33, 0xE00, NULL),
             PASID_RESULT_NULL_PARAMETER);

    /* Capability: PAS on p2 only. */
    OK(pasid_vcap(h, g, PASID_VTD_REVISION_V33, &cap));
    CHECK(cap == 1);
    OK(pasid_vcap(h, p1, PASID_VTD_REVISION_V30, &cap));
    CHECK(cap == 0);
    CHECK_RC(pasid_vcap(h, 0xbad, PASID_VTD_REVISION_V33, &cap), PASID_RESULT_NO_SUCH_GUEST);
    CHECK_RC(pasid_vcap(h, g, 7, &cap), PASID_RESULT_INVALID_ARGUMENT);
    CHECK_RC(pasid_vcap(h, g, PASID_VTD_REVISION_V33, NULL), PASID_RESULT_NULL_PARAMETER);
    CHECK((PASID_ECAP_VCS >> 44) == 1);

    /* 3.3: ALLOC (shared), ALLOC with the local operand, FREE; errors as statuses. */
    OK(pasid_vcmd(h, g, PASID_VTD_REVISION_V33, cmd33(1, 0), &rsp, &touched));
    CHECK((rsp & 1) == 0 && sc33(rsp) == 0);
    shared = pasid33(rsp);
    CHECK(shared == 1);
    CHECK(touched.changed && touched.directory_changed);
    OK(pasid_kind_of(h, g, shared, &kind));
    CHECK(kind == PASID_KIND_SHARED);
    OK(pasid_translate(h, g, shared, &hp));
    CHECK(hp >= 4096);
    OK(pasid_vcmd(h, g, PASID_VTD_REVISION_V33, cmd33(1, 1), &rsp, NULL));
    CHECK(sc33(rsp) == 0);
    local = pasid33(rsp);
    OK(pasid_kind_of(h, g, local, &kind));
    CHECK(kind == PASID_KIND_LOCAL);
    OK(pasid_vcmd(h, g, PASID_VTD_REVISION_V33, cmd33(1, 0), &rsp, NULL));
    CHECK(rsp == (uint64_t)16 << 1); /* quota of 1 reached: no PASID available */
    OK(pasid_vcmd(h, g, PASID_VTD_REVISION_V33, cmd33(2, 999), &rsp, NULL));
    CHECK(sc33(rsp) == 16); /* FREE of a PASID the guest does not hold */
    OK(pasid_vcmd(h, g, PASID_VTD_REVISION_V33, cmd33(3, 0), &rsp, NULL));
    CHECK(sc33(rsp) == 1); /* undefined command */
    OK(pasid_vcmd(h, g, PASID_VTD_REVISION_V33, 1 | 1 << 8, &rsp, NULL));
    CHECK(sc33(rsp) == 1); /* reserved bits 15:8 */
    OK(pasid_vcmd(h, p1, PASID_VTD_REVISION_V33, cmd33(1, 0), &rsp, NULL));
    CHECK(sc33(rsp) == 1); /* p1: no PASID allocation */
    OK(pasid_vcmd(h, g, PASID_VTD_REVISION_V33, cmd33(2, shared), &rsp, &touched));
    CHECK(rsp == 0 && touched.changed);
    CHECK_RC(pasid_translate(h, g, shared, &hp), PASID_RESULT_DRAINING);
    confirm_all(h); /* the vIOMMU flushed: the teardown is done */
    CHECK_RC(pasid_translate(h, g, shared, &hp), PASID_RESULT_NOT_ALLOCATED);
    CHECK_RC(pasid_vcmd(h, 0xbad, PASID_VTD_REVISION_V33, cmd33(1, 0), &rsp, NULL),
             PASID_RESULT_NO_SUCH_GUEST);
    CHECK_RC(pasid_vcmd(h, g, 0, cmd33(1, 0), &rsp, NULL), PASID_RESULT_INVALID_ARGUMENT);
    CHECK_RC(pasid_vcmd(h, g, PASID_VTD_REVISION_V33, cmd33(1, 0), NULL, NULL),
             PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_vcmd(NULL, g, PASID_VTD_REVISION_V33, cmd33(1, 0), &rsp, NULL),
             PASID_RESULT_NULL_PARAMETER);

    /* 3.0 layout: PASID in bits 27:8, "no PASID" is status 2. */
    OK(pasid_vcmd(h, g, PASID_VTD_REVISION_V30, cmd30(1, 0), &rsp, NULL));
    CHECK(sc30(rsp) == 0 && pasid30(rsp) == shared);
    OK(pasid_vcmd(h, g, PASID_VTD_REVISION_V30, cmd30(1, 0), &rsp, NULL));
    CHECK(rsp == 2 << 1);
    OK(pasid_vcmd(h, g, PASID_VTD_REVISION_V30, cmd30(2, shared), &rsp, NULL));
    CHECK(rsp == 0);

    /* Encode / decode helpers agree with the spec layout. */
    OK(pasid_vcmd_encode(PASID_VTD_REVISION_V33, PASID_VCMD_FREE, 5, &c));
    CHECK(c == cmd33(2, 5));
    OK(pasid_vcmd_encode(PASID_VTD_REVISION_V30, PASID_VCMD_ALLOC, 0, &c));
    CHECK(c == cmd30(1, 0));
    CHECK_RC(pasid_vcmd_encode(1, PASID_VCMD_ALLOC, 0, &c), PASID_RESULT_INVALID_ARGUMENT);
    CHECK_RC(pasid_vcmd_encode(PASID_VTD_REVISION_V33, PASID_VCMD_ALLOC, 0, NULL),
             PASID_RESULT_NULL_PARAMETER);
    OK(pasid_vcmd_decode_response(PASID_VTD_REVISION_V33, (uint64_t)0x12345 << 16 | 16 << 1 | 1,
                                  &resp));
    CHECK(resp.in_progress && resp.status == PASID_VCMD_SC_NO_PASID_V3_3 && resp.pasid == 0x12345);
    OK(pasid_vcmd_decode_response(PASID_VTD_REVISION_V30, (uint64_t)0x54321 << 8 | 2 << 1, &resp));
    CHECK(!resp.in_progress && resp.status == PASID_VCMD_SC_NO_PASID_V3_0 &&
          resp.pasid == 0x54321);
    CHECK_RC(pasid_vcmd_decode_response(2, 0, &resp), PASID_RESULT_INVALID_ARGUMENT);
    CHECK_RC(pasid_vcmd_decode_response(PASID_VTD_REVISION_V30, 0, NULL),
             PASID_RESULT_NULL_PARAMETER);

    pasid_host_free(h);
}

/* ---- migration ---- */

static uint8_t *export_guest(pasid_host *h, pasid_guest_id g, size_t *len) {
    size_t n = 0, n2 = 0;
    uint8_t *blob;
    CHECK_RC(pasid_export_guest(h, g, NULL, 0, &n), PASID_RESULT_BUFFER_TOO_SMALL);
    CHECK(n > 0);
    blob = (uint8_t *)malloc(n);
    OK(pasid_export_guest(h, g, blob, n, &n2));
    CHECK(n2 == n);
    *len = n;
    return blob;
}

/* Everything a host holds, as one comparable string, for "unchanged" checks. */
static void host_fingerprint(pasid_host *h, char *out, size_t cap) {
    pasid_host_info info = host_info(h);
    pasid_guest_id ids[16];
    size_t n = 0, i, used;
    used = (size_t)snprintf(out, cap, "in_use=%u guests=%u:", info.shared_in_use, info.guests);
    OK(pasid_host_guests(h, ids, 16, &n));
    for (i = 0; i < n && used < cap; i++) {
        pasid_guest_pasid ps[64];
        size_t np = 0, j;
        OK(pasid_guest_pasids(h, ids[i], ps, 64, &np));
        used += (size_t)snprintf(out + used, cap - used, " g%x[", ids[i]);
        for (j = 0; j < np && used < cap; j++)
            used += (size_t)snprintf(out + used, cap - used, "%u>%u,", ps[j].gpasid, ps[j].hpasid);
        if (used < cap)
            used += (size_t)snprintf(out + used, cap - used, "]");
    }
}

static void test_migration_p2(void) {
    pasid_host *src = new_host(PASID_PLATFORM_P2);
    pasid_host *dst = new_host(PASID_PLATFORM_P2);
    pasid_host *p1dst = new_host(PASID_PLATFORM_P1);
    pasid_guest_id g = new_guest(src, PASID_PLATFORM_P2, 8);
    pasid_guest_id busy = new_guest(dst, PASID_PLATFORM_P2, 8);
    pasid_guest_id g2 = 0, untouched_id = 4242;
    pasid_import_report *report = NULL;
    pasid_import_info ri = {.size = sizeof(pasid_import_info)};
    pasid_shared_remap shared[4];
    pasid_rid_remap devs[4];
    pasid_blob_info bi = {.size = sizeof(pasid_blob_info)};
    pasid_guest_pasid bp[8];
    pasid_programmed progs[4];
    pasid_rid_mapping map[3] = {
        {.size = sizeof(pasid_rid_mapping), .kind = PASID_DEVICE_KIND_SAME_AS_SOURCE},
        {.size = sizeof(pasid_rid_mapping), .kind = PASID_DEVICE_KIND_SAME_AS_SOURCE},
        {.size = sizeof(pasid_rid_mapping), .kind = PASID_DEVICE_KIND_SAME_AS_SOURCE},
    };
    pasid_rid vf_dst = rid(0, 0x0405), wq_dst = rid(0, 0x0a08);
    uint32_t local = 0, s1 = 0, s2 = 0, x = 0, src_h1 = 0, src_h2 = 0, dst_h1 = 0, prog = 0;
    uint8_t *blob, small[4];
    size_t len = 0, n = 0, i;
    char before[4096], after[4096];

    OK(pasid_attach(src, g, VF, PASID_DEVICE_KIND_DEDICATED));
    OK(pasid_attach(src, g, WQ, PASID_DEVICE_KIND_SHARED_WQ));
    OK(pasid_alloc(src, g, PASID_KIND_LOCAL, &local, NULL));
    OK(pasid_alloc(src, g, PASID_KIND_SHARED, &s1, NULL));
    OK(pasid_alloc(src, g, PASID_KIND_SHARED, &s2, NULL));
    OK(pasid_bind(src, g, local, VF, &prog));
    OK(pasid_bind(src, g, s1, VF, &prog));
    OK(pasid_bind(src, g, s1, WQ, &prog));
    OK(pasid_translate(src, g, s1, &src_h1));
    OK(pasid_translate(src, g, s2, &src_h2));
    /* The destination already uses some host PASIDs, so the new ones differ. */
    for (i = 0; i < 5; i++)
        OK(pasid_alloc(dst, busy, PASID_KIND_SHARED, &x, NULL));

    blob = export_guest(src, g, &len);
    memset(small, 0x5a, sizeof small);
    CHECK_RC(pasid_export_guest(src, g, small, sizeof small, &n), PASID_RESULT_BUFFER_TOO_SMALL);
    CHECK(n == len && small[0] == 0x5a && small[3] == 0x5a);
    CHECK_RC(pasid_export_guest(src, g, NULL, 10, &n), PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_export_guest(src, g, blob, len, NULL), PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_export_guest(src, 0xbad, blob, len, &n), PASID_RESULT_NO_SUCH_GUEST);

    /* What the blob holds. */
    OK(pasid_inspect_blob(blob, len, &bi));
    CHECK(bi.format_major == PASID_MIGRATION_FORMAT_MAJOR);
    CHECK(bi.source_platform == PASID_PLATFORM_P2 && bi.source_layout.local_end == 4096);
    CHECK(bi.config.platform == PASID_PLATFORM_P2 && bi.config.shared_quota == 8);
    CHECK(bi.pasids == 3 && bi.devices == 2);
    CHECK_RC(pasid_inspect_blob(NULL, len, &bi), PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_inspect_blob(blob, len, NULL), PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_inspect_blob_pasids(blob, len, NULL, 0, &n), PASID_RESULT_BUFFER_TOO_SMALL);
    CHECK(n == 3);
    OK(pasid_inspect_blob_pasids(blob, len, bp, 8, &n));
    CHECK(bp[0].gpasid == local && bp[0].kind == PASID_KIND_LOCAL);
    CHECK(bp[1].gpasid == s1 && bp[1].kind == PASID_KIND_SHARED);
    CHECK_RC(pasid_inspect_blob_pasids(blob, len, bp, 8, NULL), PASID_RESULT_NULL_PARAMETER);
    {
        pasid_device_info bd[4];
        uint32_t on_vf[4];
        CHECK_RC(pasid_inspect_blob_devices(blob, len, bd, 1, &n), PASID_RESULT_BUFFER_TOO_SMALL);
        CHECK(n == 2);
        OK(pasid_inspect_blob_devices(blob, len, bd, 4, &n));
        CHECK(bd[0].rid.bdf == VF.bdf && bd[0].kind == PASID_DEVICE_KIND_DEDICATED &&
              bd[0].programmed == 2);
        CHECK(bd[1].rid.bdf == WQ.bdf && bd[1].kind == PASID_DEVICE_KIND_SHARED_WQ &&
              bd[1].programmed == 1);
        CHECK_RC(pasid_inspect_blob_devices(blob, 3, bd, 4, &n), PASID_RESULT_MALFORMED_BLOB);
        OK(pasid_inspect_blob_device_pasids(blob, len, VF, on_vf, 4, &n));
        CHECK(n == 2 && on_vf[0] == local && on_vf[1] == s1);
        CHECK_RC(pasid_inspect_blob_device_pasids(blob, len, rid(0, 0x0c00), on_vf, 4, &n),
                 PASID_RESULT_NO_SUCH_DEVICE);
        CHECK_RC(pasid_inspect_blob_device_pasids(blob, len, VF, NULL, 4, &n),
                 PASID_RESULT_NULL_PARAMETER);
    }

    /* Refusals leave the destination unchanged. */
    host_fingerprint(dst, before, sizeof before);
    map[0].source = VF;
    map[0].destination = vf_dst;
    map[0].kind = PASID_DEVICE_KIND_DEDICATED;
    map[1].source = WQ;
    map[1].destination = wq_dst;
    /* The VMM says wq_dst is a VF: the guest's shared WQ cannot land there. */
    map[1].kind = PASID_DEVICE_KIND_DEDICATED;
    CHECK_RC(pasid_check_import(dst, blob, len, map, 2), PASID_RESULT_DEVICE_KIND_MISMATCH);
    CHECK_RC(pasid_import_guest(dst, blob, len, map, 2, &untouched_id, &report),
             PASID_RESULT_DEVICE_KIND_MISMATCH);
    {
        char msg[256];
        OK(pasid_last_error_message(msg, sizeof msg, &n));
        CHECK(strstr(msg, "RID kind mismatch") != NULL);
        CHECK(strstr(msg, "0000:0a:01.0") != NULL); /* the destination RID */
        CHECK(strcmp(pasid_strerror(PASID_RESULT_DEVICE_KIND_MISMATCH),
                     "RID kind mismatch: the destination device is of another kind") == 0);
    }
    /* A kind that is no PASID_DEVICE_KIND_* value, even on an entry the guest does not
       need, is an invalid argument. */
    map[1].kind = 7;
    CHECK_RC(pasid_import_guest(dst, blob, len, map, 2, &untouched_id, &report),
             PASID_RESULT_INVALID_ARGUMENT);
    map[1].kind = PASID_DEVICE_KIND_SHARED_WQ;
    map[2].source = rid(0, 0x0c00);
    map[2].destination = rid(0, 0x0c00);
    map[2].kind = 4;
    CHECK_RC(pasid_check_import(dst, blob, len, map, 3), PASID_RESULT_INVALID_ARGUMENT);
    map[2].kind = PASID_DEVICE_KIND_SAME_AS_SOURCE;
    CHECK_RC(pasid_import_guest(dst, blob, len, map, 1, &untouched_id, &report),
             PASID_RESULT_RID_NOT_MAPPED);
    CHECK_RC(pasid_check_import(dst, blob, len, map, 1), PASID_RESULT_RID_NOT_MAPPED);
    map[2].source = WQ;
    map[2].destination = rid(0, 0x0a09);
    CHECK_RC(pasid_import_guest(dst, blob, len, map, 3, &untouched_id, &report),
             PASID_RESULT_RID_MAPPED_TWICE);
    /* Another guest on the destination's shared WQ is no conflict (it is shared); one
       with the dedicated use of the VF's destination is. */
    OK(pasid_attach(dst, busy, wq_dst, PASID_DEVICE_KIND_SHARED_WQ));
    OK(pasid_check_import(dst, blob, len, map, 2));
    OK(pasid_detach(dst, busy, wq_dst));
    OK(pasid_attach(dst, busy, map[0].destination, PASID_DEVICE_KIND_DEDICATED));
    CHECK_RC(pasid_import_guest(dst, blob, len, map, 2, &untouched_id, &report),
             PASID_RESULT_RID_IN_USE);
    OK(pasid_detach(dst, busy, map[0].destination));
    CHECK_RC(pasid_import_guest(p1dst, blob, len, map, 2, &untouched_id, &report),
             PASID_RESULT_NOT_SUPPORTED);
    blob[len / 2] ^= 0x04;
    CHECK(pasid_import_guest(dst, blob, len, map, 2, &untouched_id, &report) != 0);
    CHECK(pasid_inspect_blob(blob, len, &bi) != 0);
    blob[len / 2] ^= 0x04;
    CHECK(pasid_import_guest(dst, blob, len - 3, map, 2, &untouched_id, &report) != 0);
    CHECK_RC(pasid_import_guest(dst, blob, 0, map, 2, &untouched_id, &report),
             PASID_RESULT_MALFORMED_BLOB);
    CHECK_RC(pasid_import_guest(dst, NULL, len, map, 2, &untouched_id, &report),
             PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_import_guest(dst, blob, len, NULL, 2, &untouched_id, &report),
             PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_import_guest(dst, blob, len, map, 2, NULL, &report),
             PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_import_guest(NULL, blob, len, map, 2, &untouched_id, &report),
             PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_check_import(NULL, blob, len, map, 2), PASID_RESULT_NULL_PARAMETER);
    CHECK(untouched_id == 4242 && report == NULL);
    host_fingerprint(dst, after, sizeof after);
    CHECK(strcmp(before, after) == 0);

    /* The migration. */
    OK(pasid_check_import(dst, blob, len, map, 2));
    OK(pasid_import_guest(dst, blob, len, map, 2, &g2, &report));
    CHECK(report != NULL);
    OK(pasid_import_report_get_info(report, &ri));
    CHECK(ri.guest_platform == PASID_PLATFORM_P2 && !ri.p1_guest_on_p2_host);
    CHECK(ri.shared == 2 && ri.devices == 2);
    CHECK_RC(pasid_import_report_shared(report, shared, 1, &n), PASID_RESULT_BUFFER_TOO_SMALL);
    CHECK(n == 2);
    OK(pasid_import_report_shared(report, shared, 4, &n));
    CHECK(shared[0].gpasid == s1 && shared[1].gpasid == s2);
    CHECK(!shared[0].has_source_hpasid || shared[0].source_hpasid == src_h1);
    CHECK(!shared[1].has_source_hpasid || shared[1].source_hpasid == src_h2);
    OK(pasid_translate(dst, g2, s1, &dst_h1));
    CHECK(shared[0].destination_hpasid == dst_h1);
    CHECK(dst_h1 != src_h1); /* the 5 busy ones pushed it */
    OK(pasid_import_report_devices(report, devs, 4, &n));
    CHECK(n == 2);
    CHECK(devs[0].source.bdf == VF.bdf && devs[0].destination.bdf == vf_dst.bdf &&
          devs[0].kind == PASID_DEVICE_KIND_DEDICATED);
    CHECK(devs[1].source.bdf == WQ.bdf && devs[1].destination.bdf == wq_dst.bdf);
    CHECK_RC(pasid_import_report_devices(report, NULL, 4, &n), PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_import_report_get_info(report, NULL), PASID_RESULT_NULL_PARAMETER);

    /* gPASIDs kept; the VF programmed as before, the WQ with the new hPASID. */
    OK(pasid_guest_pasids(dst, g2, bp, 8, &n));
    CHECK(n == 3 && bp[0].gpasid == local && bp[1].gpasid == s1 && bp[2].gpasid == s2);
    OK(pasid_device_programmed(dst, g2, vf_dst, progs, 4, &n));
    CHECK(n == 2 && progs[0].programmed == local && progs[1].programmed == s1);
    OK(pasid_device_programmed(dst, g2, wq_dst, progs, 4, &n));
    CHECK(n == 1 && progs[0].gpasid == s1 && progs[0].programmed == dst_h1);
    CHECK_RC(pasid_free(dst, g2, s1, NULL), PASID_RESULT_STILL_BOUND); /* bindings came along */

    /* The source releases the guest; its host PASIDs drain until the teardown is done. */
    OK(pasid_guest_destroy(src, g));
    CHECK(host_info(src).shared_in_use == 2);
    confirm_all(src);
    CHECK(host_info(src).shared_in_use == 0);

    /* Report handles: checked like host handles. */
    CHECK_RC(pasid_import_report_get_info((const pasid_import_report *)dst, &ri),
             PASID_RESULT_INVALID_HANDLE);
    CHECK_RC(pasid_host_get_info((const pasid_host *)report, NULL), PASID_RESULT_NULL_PARAMETER);
    {
        pasid_host_info hi = {.size = sizeof(pasid_host_info)};
        CHECK_RC(pasid_host_get_info((const pasid_host *)report, &hi),
                 PASID_RESULT_INVALID_HANDLE);
    }
    pasid_host_free((pasid_host *)report); /* wrong type: ignored */
    OK(pasid_import_report_get_info(report, &ri));
    pasid_import_report_free(report);
    CHECK_RC(pasid_import_report_get_info(report, &ri), PASID_RESULT_INVALID_HANDLE);
    CHECK_RC(pasid_import_report_shared(report, shared, 4, &n), PASID_RESULT_INVALID_HANDLE);
    CHECK_RC(pasid_import_report_devices(NULL, devs, 4, &n), PASID_RESULT_NULL_PARAMETER);
    pasid_import_report_free(report);
    pasid_import_report_free(NULL);
    pasid_import_report_free((pasid_import_report *)dst); /* wrong type: ignored */
    CHECK(host_info(dst).guests == 2);

    /* The same blob again is a replay of that migration: refused, host unchanged. */
    map[0].destination = rid(1, 0x0405);
    map[1].destination = rid(1, 0x0a08);
    CHECK_RC(pasid_import_guest(dst, blob, len, map, 2, &g2, NULL), PASID_RESULT_REPLAYED);
    CHECK(host_info(dst).guests == 2);
    /* (A new attempt exports with a new epoch: test_changes.c.) */

    free(blob);
    pasid_host_free(src);
    pasid_host_free(dst);
    pasid_host_free(p1dst);
}

static void test_migration_p1(void) {
    pasid_host *src = new_host(PASID_PLATFORM_P1);
    pasid_host *dst = new_host(PASID_PLATFORM_P2);
    pasid_guest_id g = new_guest(src, PASID_PLATFORM_P1, 0), g2 = 0;
    pasid_import_report *report = NULL;
    pasid_import_info ri = {.size = sizeof(pasid_import_info)};
    pasid_programmed progs[4];
    pasid_rid_mapping map[1] = {
        {.size = sizeof(pasid_rid_mapping), .kind = PASID_DEVICE_KIND_SAME_AS_SOURCE}};
    uint32_t prog = 0;
    uint8_t *blob;
    size_t len = 0, n = 0;

    OK(pasid_attach(src, g, VF, PASID_DEVICE_KIND_DEDICATED));
    OK(pasid_record(src, g, VF, 17, &prog));
    OK(pasid_record(src, g, VF, 300, &prog));
    blob = export_guest(src, g, &len);
    map[0].source = VF;
    map[0].destination = rid(0, 0x0808);
    map[0].kind = PASID_DEVICE_KIND_SHARED_WQ;
    CHECK_RC(pasid_check_import(dst, blob, len, map, 1), PASID_RESULT_DEVICE_KIND_MISMATCH);
    map[0].kind = PASID_DEVICE_KIND_DEDICATED;
    OK(pasid_import_guest(dst, blob, len, map, 1, &g2, &report));
    OK(pasid_import_report_get_info(report, &ri));
    CHECK(ri.guest_platform == PASID_PLATFORM_P1 && ri.p1_guest_on_p2_host);
    CHECK(ri.shared == 0 && ri.devices == 1);
    OK(pasid_import_report_shared(report, NULL, 0, &n));
    CHECK(n == 0);
    OK(pasid_device_programmed(dst, g2, map[0].destination, progs, 4, &n));
    CHECK(n == 2 && progs[0].programmed == 17 && progs[1].programmed == 300);
    pasid_import_report_free(report);
    free(blob);
    pasid_host_free(src);
    pasid_host_free(dst);
}

/* ---- every handle-taking function refuses NULL, freed, made-up and wrong-type handles ---- */

static int handle_calls(pasid_host *h, pasid_import_report *r, int want_host, int want_report) {
    pasid_guest_config c = {.size = sizeof c, .platform = PASID_PLATFORM_P2, .shared_quota = 1};
    pasid_host_info hi = {.size = sizeof(pasid_host_info)};
    pasid_guest_info gi = {.size = sizeof(pasid_guest_info)};
    pasid_guest_pasid gp[1];
    pasid_device_info di[1];
    pasid_programmed pr[1];
    pasid_pages_touched pt = {true, false, 0};
    pasid_page pg = {0x1000, NULL, 0};
    pasid_import_info ii = {.size = sizeof(pasid_import_info)};
    pasid_shared_remap sr[1];
    pasid_rid_remap rr[1];
    uint8_t blob[1] = {0}, page[1];
    uint32_t u = 0, tables[1];
    uint64_t v = 0;
    bool b = false;
    size_t n = 0;
    int bad = 0;
#define EXPECT(expr, want)                                                             \
    do {                                                                               \
        int rc__ = (expr);                                                             \
        if (rc__ != (want)) {                                                          \
            bad++;                                                                     \
            fprintf(stderr, "  %s = %d, want %d\n", #expr, rc__, (want));              \
        }                                                                              \
    } while (0)
    EXPECT(pasid_host_get_info(h, &hi), want_host);
    EXPECT(pasid_guest_create(h, &c, &u), want_host);
    EXPECT(pasid_guest_destroy(h, 1), want_host);
    EXPECT(pasid_guest_get_info(h, 1, &gi), want_host);
    EXPECT(pasid_host_guests(h, &u, 1, &n), want_host);
    EXPECT(pasid_attach(h, 1, VF, PASID_DEVICE_KIND_DEDICATED), want_host);
    EXPECT(pasid_detach(h, 1, VF), want_host);
    EXPECT(pasid_owner(h, VF, &b, &u), want_host);
    EXPECT(pasid_alloc(h, 1, PASID_KIND_LOCAL, &u, NULL), want_host);
    EXPECT(pasid_free(h, 1, 1, NULL), want_host);
    EXPECT(pasid_translate(h, 1, 1, &u), want_host);
    EXPECT(pasid_kind_of(h, 1, 1, &u), want_host);
    EXPECT(pasid_bind(h, 1, 1, VF, &u), want_host);
    EXPECT(pasid_unbind(h, 1, 1, VF), want_host);
    EXPECT(pasid_record(h, 1, VF, 1, &u), want_host);
    EXPECT(pasid_release(h, 1, VF, 1), want_host);
    EXPECT(pasid_guest_pasids(h, 1, gp, 1, &n), want_host);
    EXPECT(pasid_guest_devices(h, 1, di, 1, &n), want_host);
    EXPECT(pasid_device_programmed(h, 1, VF, pr, 1, &n), want_host);
    EXPECT(pasid_translation_tables(h, 1, tables, 1, &n), want_host);
    EXPECT(pasid_export_translation(h, 1, pg, pg, NULL, 0), want_host);
    EXPECT(pasid_write_translation_table(h, 1, 0, page, 1), want_host);
    EXPECT(pasid_write_touched_pages(h, 1, &pt, pg, NULL, 0), want_host);
    EXPECT(pasid_vcap(h, 1, PASID_VTD_REVISION_V33, &v), want_host);
    EXPECT(pasid_vcmd(h, 1, PASID_VTD_REVISION_V33, 1, &v, NULL), want_host);
    EXPECT(pasid_export_guest(h, 1, blob, 1, &n), want_host);
    EXPECT(pasid_check_import(h, blob, 1, NULL, 0), want_host);
    EXPECT(pasid_import_guest(h, blob, 1, NULL, 0, &u, NULL), want_host);
    EXPECT(pasid_import_report_get_info(r, &ii), want_report);
    EXPECT(pasid_import_report_shared(r, sr, 1, &n), want_report);
    EXPECT(pasid_import_report_devices(r, rr, 1, &n), want_report);
#undef EXPECT
    return bad;
}

static void test_bad_handles(void) {
    pasid_host *h = new_host(PASID_PLATFORM_P2);
    pasid_host *freed = new_host(PASID_PLATFORM_P2);
    pasid_import_report *report = NULL;
    pasid_guest_id g = new_guest(h, PASID_PLATFORM_P2, 1), g2 = 0;
    uint8_t *blob;
    size_t len = 0;

    blob = export_guest(h, g, &len);
    OK(pasid_import_guest(h, blob, len, NULL, 0, &g2, &report));
    free(blob);
    pasid_host_free(freed);

    CHECK(handle_calls(NULL, NULL, PASID_RESULT_NULL_PARAMETER, PASID_RESULT_NULL_PARAMETER) == 0);
    CHECK(handle_calls(freed, (pasid_import_report *)freed, PASID_RESULT_INVALID_HANDLE,
                       PASID_RESULT_INVALID_HANDLE) == 0);
    CHECK(handle_calls((pasid_host *)(uintptr_t)0xdeadbeef,
                       (pasid_import_report *)(uintptr_t)0xdeadbeef, PASID_RESULT_INVALID_HANDLE,
                       PASID_RESULT_INVALID_HANDLE) == 0);
    CHECK(handle_calls((pasid_host *)report, (pasid_import_report *)h, PASID_RESULT_INVALID_HANDLE,
                       PASID_RESULT_INVALID_HANDLE) == 0);
    /* The live host and report were not disturbed. */
    CHECK(host_info(h).guests == 2);
    pasid_import_report_free(report);
    pasid_host_free(h);
}

/* ---- threads ---- */

typedef struct {
    pasid_host *host;
    pasid_guest_id guest;
    int errors;
} worker_arg;

static void *worker(void *p) {
    worker_arg *a = (worker_arg *)p;
    int i;
    for (i = 0; i < 2000; i++) {
        uint32_t gp = 0, hp = 0;
        uint64_t rsp = 0;
        if (pasid_alloc(a->host, a->guest, PASID_KIND_SHARED, &gp, NULL) != 0)
            a->errors++;
        if (pasid_translate(a->host, a->guest, gp, &hp) != 0 || hp < 4096)
            a->errors++;
        if (free_confirmed(a->host, a->guest, gp) != 0)
            a->errors++;
        if (pasid_vcmd(a->host, a->guest, PASID_VTD_REVISION_V33, 1, &rsp, NULL) != 0 ||
            ((rsp >> 1) & 0x7f) != 0)
            a->errors++;
        {
            pasid_draining item = {a->guest, (uint32_t)(rsp >> 16) & 0xfffff, 0};
            if (pasid_translate(a->host, a->guest, item.gpasid, &item.hpasid) != 0)
                a->errors++;
            if (pasid_vcmd(a->host, a->guest, PASID_VTD_REVISION_V33, (rsp & ~0xffffull) | 2,
                           &rsp, NULL) != 0 ||
                rsp != 0)
                a->errors++;
            if (pasid_complete_teardown(a->host, &item, 1) != 0)
                a->errors++;
        }
    }
    return NULL;
}

static void *user_after_free(void *p) {
    worker_arg *a = (worker_arg *)p;
    int i;
    for (i = 0; i < 20000; i++) {
        uint32_t gp = 0;
        int rc = pasid_alloc(a->host, a->guest, PASID_KIND_LOCAL, &gp, NULL);
        if (rc == PASID_RESULT_INVALID_HANDLE)
            break;
        if (rc == PASID_RESULT_OK)
            rc = free_confirmed(a->host, a->guest, gp);
        if (rc != PASID_RESULT_OK && rc != PASID_RESULT_INVALID_HANDLE)
            a->errors++;
    }
    return NULL;
}

static void test_threads(void) {
    pasid_host *h = new_host(PASID_PLATFORM_P2);
    worker_arg args[4];
    pthread_t t[4];
    int i;

    for (i = 0; i < 4; i++) {
        args[i].host = h;
        args[i].guest = new_guest(h, PASID_PLATFORM_P2, 4);
        args[i].errors = 0;
    }
    for (i = 0; i < 4; i++)
        CHECK(pthread_create(&t[i], NULL, worker, &args[i]) == 0);
    for (i = 0; i < 4; i++) {
        CHECK(pthread_join(t[i], NULL) == 0);
        CHECK(args[i].errors == 0);
    }
    CHECK(host_info(h).shared_in_use == 0);

    /* Freeing a host while other threads use it: they see INVALID_HANDLE, no crash. */
    for (i = 0; i < 2; i++) {
        args[i].host = h;
        args[i].errors = 0;
        CHECK(pthread_create(&t[i], NULL, user_after_free, &args[i]) == 0);
    }
    pasid_host_free(h);
    for (i = 0; i < 2; i++) {
        CHECK(pthread_join(t[i], NULL) == 0);
        CHECK(args[i].errors == 0);
    }
}

/* ---- main ---- */

int main(void) {
    RUN(test_version_and_strerror);
    RUN(test_last_error);
    RUN(test_layout_check);
    RUN(test_host_lifecycle);
    RUN(test_guests);
    RUN(test_devices);
    RUN(test_p2_alloc_translate_bind);
    RUN(test_exhaustion);
    RUN(test_p1_record_release);
    RUN(test_hwtable);
    RUN(test_vcmd);
    RUN(test_migration_p2);
    RUN(test_migration_p1);
    RUN(test_bad_handles);
    RUN(test_threads);
    return FINISH();
}
