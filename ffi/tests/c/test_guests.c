/*
 * Guests and devices: guest creation and its refusals, info, listing with the buffer
 * rule, destroy; attach, detach, owner and the device queries.
 * A program of its own, as every test_*.c (see fixtures.h).
 */
#include <stdint.h>

#include "fixtures.h" /* the shared fixtures, and check.h's CHECK, OK, RUN, FINISH */

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

int main(void) {
    RUN(test_guests);
    RUN(test_devices);
    return FINISH();
}
