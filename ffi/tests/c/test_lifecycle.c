/*
 * Devices as hardware has them and PASIDs that wait for the hardware, from C: a shared
 * WQ used by several guests, a RID with a dedicated and a shared use, draining PASIDs
 * and pasid_complete_teardown, destroy's entries, and a host whose host PASIDs come
 * from the VMM's own callbacks. Bad, stale and forged arguments for each new call.
 * Built and run by scripts/test-c.sh (plain, ASan+UBSan) and scripts/harden.sh
 * (valgrind).
 */
#include "check.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

static const pasid_rid DSA = {0, 0x0a00};
static const pasid_rid VF = {0, 0x0301};

static pasid_layout standard_layout(void) {
    pasid_layout l = {
        .size = sizeof(l),
        .width = 20,
        .local_start = 1,
        .local_end = 4096,
        .shared_start = 4096,
        .shared_end = 1u << 19,
    };
    return l;
}

static pasid_host *new_host(void) {
    pasid_layout l = standard_layout();
    pasid_host *h = NULL;
    OK(pasid_host_new(&l, PASID_PLATFORM_P2, &h));
    return h;
}

static pasid_guest_id new_guest(pasid_host *h, uint32_t quota) {
    pasid_guest_config c = {.size = sizeof(c), .platform = PASID_PLATFORM_P2,
                            .shared_quota = quota};
    pasid_guest_id g = 0;
    OK(pasid_guest_create(h, &c, &g));
    return g;
}

static void test_a_shared_wq_serves_several_guests(void) {
    pasid_host *h = new_host();
    pasid_guest_id g[3];
    uint32_t programmed[3], gp, i;
    pasid_rid_user users[4];
    size_t n = 0;

    for (i = 0; i < 3; i++) {
        g[i] = new_guest(h, 4);
        OK(pasid_attach(h, g[i], DSA, PASID_DEVICE_KIND_SHARED_WQ));
        OK(pasid_alloc(h, g[i], PASID_KIND_SHARED, &gp, NULL));
        CHECK(gp == 1);
        OK(pasid_bind(h, g[i], gp, DSA, &programmed[i]));
    }
    CHECK(programmed[0] == 4096 && programmed[1] == 4097 && programmed[2] == 4098);
    OK(pasid_rid_users(h, DSA, users, 4, &n));
    CHECK(n == 3);
    for (i = 0; i < n && i < 3; i++) {
        CHECK(users[i].guest == g[i] && users[i].kind == PASID_DEVICE_KIND_SHARED_WQ);
    }
    /* Size query, then a short buffer. */
    CHECK_RC(pasid_rid_users(h, DSA, NULL, 0, &n), PASID_RESULT_BUFFER_TOO_SMALL);
    CHECK(n == 3);
    CHECK_RC(pasid_rid_users(h, DSA, users, 1, &n), PASID_RESULT_BUFFER_TOO_SMALL);
    CHECK_RC(pasid_rid_users(h, DSA, users, 4, NULL), PASID_RESULT_NULL_PARAMETER);
    /* Detach per guest never touches the others. */
    OK(pasid_unbind(h, g[0], 1, DSA));
    OK(pasid_detach(h, g[0], DSA));
    OK(pasid_rid_users(h, DSA, users, 4, &n));
    CHECK(n == 2 && users[0].guest == g[1]);
    pasid_host_free(h);
}

static void test_one_rid_with_both_uses(void) {
    pasid_host *h = new_host();
    pasid_guest_id g = new_guest(h, 4), other = new_guest(h, 4);
    uint32_t s, hp, out = 0;

    OK(pasid_attach(h, g, DSA, PASID_DEVICE_KIND_DEDICATED));
    OK(pasid_attach(h, g, DSA, PASID_DEVICE_KIND_SHARED_WQ));
    CHECK_RC(pasid_attach(h, other, DSA, PASID_DEVICE_KIND_DEDICATED),
             PASID_RESULT_RID_IN_USE);
    OK(pasid_alloc(h, g, PASID_KIND_SHARED, &s, NULL));
    OK(pasid_translate(h, g, s, &hp));
    CHECK_RC(pasid_bind(h, g, s, DSA, &out), PASID_RESULT_AMBIGUOUS_USE);
    OK(pasid_bind_use(h, g, s, DSA, PASID_DEVICE_KIND_DEDICATED, &out));
    CHECK(out == s);
    OK(pasid_bind_use(h, g, s, DSA, PASID_DEVICE_KIND_SHARED_WQ, &out));
    CHECK(out == hp);
    CHECK_RC(pasid_bind_use(h, g, s, DSA, 77, &out), PASID_RESULT_INVALID_ARGUMENT);
    CHECK_RC(pasid_bind_use(h, g, s, DSA, PASID_DEVICE_KIND_DEDICATED, NULL),
             PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_detach_use(h, g, DSA, PASID_DEVICE_KIND_SHARED_WQ),
             PASID_RESULT_DEVICE_BUSY);
    OK(pasid_unbind_use(h, g, s, DSA, PASID_DEVICE_KIND_SHARED_WQ, &out));
    CHECK(out == hp);
    CHECK_RC(pasid_unbind_use(h, g, s, DSA, PASID_DEVICE_KIND_SHARED_WQ, &out),
             PASID_RESULT_NOT_BOUND);
    OK(pasid_detach_use(h, g, DSA, PASID_DEVICE_KIND_SHARED_WQ));
    CHECK_RC(pasid_detach_use(h, g, DSA, 0), PASID_RESULT_INVALID_ARGUMENT);
    pasid_host_free(h);
}

static void test_freed_pasids_drain_until_confirmed(void) {
    pasid_host *h = new_host();
    pasid_guest_id g = new_guest(h, 1);
    uint32_t p, hp, again;
    pasid_draining d[2];
    size_t n = 0;

    OK(pasid_alloc(h, g, PASID_KIND_SHARED, &p, NULL));
    OK(pasid_translate(h, g, p, &hp));
    OK(pasid_free(h, g, p, NULL));
    CHECK_RC(pasid_translate(h, g, p, &again), PASID_RESULT_DRAINING);
    CHECK_RC(pasid_alloc(h, g, PASID_KIND_SHARED, &again, NULL),
             PASID_RESULT_QUOTA_EXCEEDED);
    OK(pasid_draining_list(h, d, 2, &n));
    CHECK(n == 1 && d[0].guest == g && d[0].gpasid == p && d[0].hpasid == hp);
    /* Wrong, doubled, forged: refused, nothing changes. */
    {
        pasid_draining bad[2] = {d[0], d[0]};
        pasid_draining wrong = d[0];
        wrong.hpasid++;
        CHECK_RC(pasid_complete_teardown(h, bad, 2), PASID_RESULT_NOT_DRAINING);
        CHECK_RC(pasid_complete_teardown(h, &wrong, 1), PASID_RESULT_NOT_DRAINING);
        CHECK_RC(pasid_complete_teardown(h, NULL, 1), PASID_RESULT_NULL_PARAMETER);
        CHECK_RC(pasid_complete_teardown((pasid_host *)(uintptr_t)0x1234, d, 1),
                 PASID_RESULT_INVALID_HANDLE);
        OK(pasid_complete_teardown(h, NULL, 0));
        CHECK_RC(pasid_draining_list(h, NULL, 0, &n), PASID_RESULT_BUFFER_TOO_SMALL);
        CHECK(n == 1);
    }
    OK(pasid_complete_teardown(h, d, 1));
    OK(pasid_draining_list(h, NULL, 0, &n));
    CHECK(n == 0);
    OK(pasid_alloc(h, g, PASID_KIND_SHARED, &again, NULL));
    CHECK(again == p);
    pasid_host_free(h);
}

static void test_destroy_lists_entries_and_drains(void) {
    pasid_host *h = new_host();
    pasid_guest_id g = new_guest(h, 4);
    uint32_t s, l, hp, out;
    pasid_programmed_entry e[4];
    pasid_draining d[4];
    size_t n = 0;

    OK(pasid_attach(h, g, VF, PASID_DEVICE_KIND_DEDICATED));
    OK(pasid_attach(h, g, DSA, PASID_DEVICE_KIND_SHARED_WQ));
    OK(pasid_alloc(h, g, PASID_KIND_SHARED, &s, NULL));
    OK(pasid_alloc(h, g, PASID_KIND_LOCAL, &l, NULL));
    OK(pasid_translate(h, g, s, &hp));
    OK(pasid_bind(h, g, s, VF, &out));
    OK(pasid_bind(h, g, s, DSA, &out));
    OK(pasid_bind(h, g, l, VF, &out));
    OK(pasid_guest_programmed_entries(h, g, e, 4, &n));
    CHECK(n == 3);
    CHECK(e[0].rid.bdf == VF.bdf && e[0].kind == PASID_DEVICE_KIND_DEDICATED);
    CHECK(e[2].rid.bdf == DSA.bdf && e[2].pasid == hp && e[2].gpasid == s);
    CHECK_RC(pasid_guest_programmed_entries(h, g + 1, e, 4, &n), PASID_RESULT_NO_SUCH_GUEST);
    /* Destroy goes through bindings and busy devices. */
    OK(pasid_guest_destroy(h, g));
    OK(pasid_draining_list(h, d, 4, &n));
    CHECK(n == 1 && d[0].guest == g && d[0].hpasid == hp);
    OK(pasid_complete_teardown(h, d, n));
    pasid_host_free(h);
}

/* ---- a host PASID allocator of the VMM's own: a tiny bump allocator ---- */

typedef struct {
    uint32_t next, end;
    unsigned released;
    bool rogue; /* hands out a PASID outside the shared range */
    bool gone;  /* refuses as a broker would that went away */
} Pool;

static uint32_t pool_alloc(void *opaque, uint32_t *out) {
    Pool *p = opaque;
    if (p->gone) {
        return PASID_SOURCE_STATUS_DISCONNECTED;
    }
    if (p->rogue) {
        *out = 7; /* in the local range */
        return PASID_SOURCE_STATUS_OK;
    }
    if (p->next == p->end) {
        return PASID_SOURCE_STATUS_EXHAUSTED;
    }
    *out = p->next++;
    return PASID_SOURCE_STATUS_OK;
}

static uint32_t pool_claim(void *opaque, uint32_t pasid) {
    (void)opaque;
    (void)pasid;
    return PASID_SOURCE_STATUS_UNAVAILABLE;
}

static uint32_t pool_release(void *opaque, uint32_t pasid) {
    Pool *p = opaque;
    (void)pasid;
    p->released++;
    return PASID_SOURCE_STATUS_OK;
}

static uint32_t pool_free_count(void *opaque) {
    Pool *p = opaque;
    return p->end - p->next;
}

static void test_a_host_with_the_vmms_own_source(void) {
    pasid_layout l = standard_layout();
    pasid_source_ops ops = {.size = sizeof(ops), .alloc = pool_alloc, .claim = pool_claim,
                            .release = pool_release, .free_count = pool_free_count};
    Pool pool = {.next = 9000, .end = 9002};
    pasid_host *h = NULL;
    pasid_guest_id g;
    uint32_t p, hp;
    pasid_draining d;
    size_t n;

    OK(pasid_host_new_with_source(&l, PASID_PLATFORM_P2, &ops, &pool, &h));
    g = new_guest(h, 8);
    OK(pasid_alloc(h, g, PASID_KIND_SHARED, &p, NULL));
    OK(pasid_translate(h, g, p, &hp));
    CHECK(hp == 9000);
    OK(pasid_alloc(h, g, PASID_KIND_SHARED, &p, NULL));
    CHECK_RC(pasid_alloc(h, g, PASID_KIND_SHARED, &p, NULL),
             PASID_RESULT_SHARED_RANGE_EXHAUSTED);
    /* A source gone away is the source's error, the host unchanged. */
    pool.gone = true;
    pool.end = 9010;
    CHECK_RC(pasid_alloc(h, g, PASID_KIND_SHARED, &p, NULL), PASID_RESULT_SOURCE);
    pool.gone = false;
    /* A rogue source's PASID in the local range is refused (and given back). */
    pool.rogue = true;
    CHECK_RC(pasid_alloc(h, g, PASID_KIND_SHARED, &p, NULL), PASID_RESULT_SOURCE);
    CHECK(pool.released == 1);
    pool.rogue = false;
    /* Release reaches the source only after the teardown is confirmed. */
    OK(pasid_free(h, g, 1, NULL));
    CHECK(pool.released == 1);
    OK(pasid_draining_list(h, &d, 1, &n));
    OK(pasid_complete_teardown(h, &d, 1));
    CHECK(pool.released == 2);
    pasid_host_free(h);

    /* Bad arguments: no callbacks, a table of an unknown size, NULLs. */
    ops.release = NULL;
    CHECK_RC(pasid_host_new_with_source(&l, PASID_PLATFORM_P2, &ops, &pool, &h),
             PASID_RESULT_NULL_PARAMETER);
    ops.release = pool_release;
    ops.size = 3;
    CHECK_RC(pasid_host_new_with_source(&l, PASID_PLATFORM_P2, &ops, &pool, &h),
             PASID_RESULT_BAD_STRUCT_SIZE);
    ops.size = sizeof(ops);
    CHECK_RC(pasid_host_new_with_source(&l, PASID_PLATFORM_P2, NULL, &pool, &h),
             PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_host_new_with_source(&l, 9, &ops, &pool, &h), PASID_RESULT_INVALID_ARGUMENT);
    CHECK_RC(pasid_host_new_with_source(&l, PASID_PLATFORM_P2, &ops, &pool, NULL),
             PASID_RESULT_NULL_PARAMETER);
}

int main(void) {
    RUN(test_a_shared_wq_serves_several_guests);
    RUN(test_one_rid_with_both_uses);
    RUN(test_freed_pasids_drain_until_confirmed);
    RUN(test_destroy_lists_entries_and_drains);
    RUN(test_a_host_with_the_vmms_own_source);
    return FINISH();
}
