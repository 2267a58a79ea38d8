/*
 * Migration: export with its size query, blob inspection, check and import with RID
 * maps, the import report, refusals that leave the destination unchanged, and p1
 * guests.
 * A program of its own, as every test_*.c (see fixtures.h).
 */
#include <stdio.h>
#include <stdint.h>

#include "fixtures.h" /* the shared fixtures, and check.h's CHECK, OK, RUN, FINISH */

/* ---- migration ---- */

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

int main(void) {
    RUN(test_migration_p2);
    RUN(test_migration_p1);
    return FINISH();
}
