/*
 * Fixtures of the C tests that share them (test_errors.c, test_host.c, test_guests.c,
 * test_alloc.c, test_hwtable.c, test_vcmd.c, test_migrate.c, test_handles.c and
 * test_hooks.c): the standard layout, hosts and guests made with checked calls, the
 * two usual devices, teardown confirmation and an export with its size query. Each is
 * `static inline` (or marked unused), so a file that does not use one is not warned
 * about it.
 *
 * Every ffi/tests/c/test_*.c is a program of its own, one area each, built against the
 * installed header and static library and run by scripts/test-c.sh (plain, under
 * ASan+UBSan, and against the shared library) and scripts/harden.sh (valgrind); its
 * last line is "N passed, M failed".
 */
#ifndef PASID_TEST_FIXTURES_H
#define PASID_TEST_FIXTURES_H

#include <pasid.h>

#include <stdlib.h>
#include <string.h>

#include "check.h" /* CHECK, CHECK_RC, OK, RUN, FINISH: the harness all C test files share */

static inline pasid_layout standard_layout(void) {
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

static inline pasid_host *new_host(uint32_t platform) {
    pasid_layout l = standard_layout();
    pasid_host *h = NULL;
    OK(pasid_host_new(&l, platform, &h));
    return h;
}

static inline pasid_guest_id new_guest(pasid_host *h, uint32_t platform, uint32_t quota) {
    pasid_guest_config c = {.size = sizeof(pasid_guest_config)};
    pasid_guest_id g = 0;
    c.platform = platform;
    c.shared_quota = quota;
    OK(pasid_guest_create(h, &c, &g));
    return g;
}

static inline pasid_rid rid(uint16_t segment, uint16_t bdf) {
    pasid_rid r;
    r.segment = segment;
    r.bdf = bdf;
    return r;
}

/* The VMM confirms the teardown of everything that drains on `h`, as one that clears
   the entries and flushes synchronously on each free does. */
static inline void confirm_all(pasid_host *h) {
    pasid_draining items[64];
    size_t n = 0;
    OK(pasid_draining_list(h, items, 64, &n));
    OK(pasid_complete_teardown(h, items, n));
}

/* Frees a gPASID and confirms its teardown at once; returns the free's result. */
static inline int free_confirmed(pasid_host *h, pasid_guest_id g, uint32_t gpasid) {
    pasid_draining item = {g, gpasid, 0};
    int rc;
    if (pasid_translate(h, g, gpasid, &item.hpasid) != PASID_RESULT_OK)
        item.hpasid = 0;
    rc = pasid_free(h, g, gpasid, NULL);
    if (rc == PASID_RESULT_OK)
        rc = pasid_complete_teardown(h, &item, 1);
    return rc;
}

/* A VF (dedicated) and a DSA shared work queue, the two devices most tests attach. */
__attribute__((unused)) static const pasid_rid VF = {0, 0x0301};
__attribute__((unused)) static const pasid_rid WQ = {0, 0x0a00};

static inline pasid_host_info host_info(const pasid_host *h) {
    pasid_host_info info = {.size = sizeof(pasid_host_info)};
    OK(pasid_host_get_info(h, &info));
    return info;
}

/* Exports a guest with a size query first; the caller frees the blob. */
static inline uint8_t *export_guest(pasid_host *h, pasid_guest_id g, size_t *len) {
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

#endif /* PASID_TEST_FIXTURES_H */
