/*
 * VT-d virtual commands in both revisions: register offsets, VCCAP, ALLOC and FREE
 * through VCMD/VCRSP values laid out from the spec's bit positions, and what a p1 or
 * misbehaving guest gets.
 * A program of its own, as every test_*.c (see fixtures.h).
 */
#include <stdint.h>

#include "fixtures.h" /* the shared fixtures, and check.h's CHECK, OK, RUN, FINISH */

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

int main(void) {
    RUN(test_vcmd);
    return FINISH();
}
