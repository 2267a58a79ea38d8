/*
 * C tests of what KVM and the migration stream need (ffi/src/changes.rs): the
 * translation change stream, single-entry page updates, export/import options, the
 * blob's identity and the guest-visible contract. A standalone program like every
 * ffi/tests/c/test_*.c (scripts/test-c.sh builds and runs each): CHECK() records a
 * failure and goes on; the last line is "N passed, M failed".
 */
#include <pasid.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h" /* CHECK, CHECK_RC, OK: the harness all C test files share */

static pasid_layout layout(uint32_t local_end) {
    pasid_layout l;
    memset(&l, 0, sizeof l);
    l.size = sizeof l;
    l.width = 20;
    l.local_start = 1;
    l.local_end = local_end;
    l.shared_start = 8192;
    l.shared_end = 1u << 19;
    return l;
}

static pasid_host *new_host(uint32_t local_end) {
    pasid_layout l = layout(local_end);
    pasid_host *h = NULL;
    OK(pasid_host_new(&l, PASID_PLATFORM_P2, &h));
    return h;
}

static pasid_guest_id new_guest(pasid_host *h, uint32_t quota) {
    pasid_guest_config c;
    pasid_guest_id g = 0;
    memset(&c, 0, sizeof c);
    c.size = sizeof c;
    c.platform = PASID_PLATFORM_P2;
    c.shared_quota = quota;
    OK(pasid_guest_create(h, &c, &g));
    return g;
}

static uint32_t alloc_shared(pasid_host *h, pasid_guest_id g) {
    uint32_t gp = 0;
    OK(pasid_alloc(h, g, PASID_KIND_SHARED, &gp, NULL));
    return gp;
}

/* Pages a VMM keeps, aligned as real pages are. */
typedef struct {
    _Alignas(4096) uint8_t low[PASID_PAGE_SIZE];
    _Alignas(4096) uint8_t high[PASID_PAGE_SIZE];
    _Alignas(4096) uint8_t table[PASID_PAGE_SIZE];
} pages;

static int walk(const pages *p, uint32_t gpasid, uint32_t *hpasid) {
    pasid_page_ref refs[3] = {
        {0x10000, p->low, PASID_PAGE_SIZE},
        {0x11000, p->high, PASID_PAGE_SIZE},
        {0x12000, p->table, PASID_PAGE_SIZE},
    };
    pasid_walk_result r;
    memset(&r, 0, sizeof r);
    OK(pasid_walk(0x10000, 0x11000, gpasid, refs, 3, &r));
    *hpasid = r.hpasid;
    return r.fault == PASID_FAULT_NONE;
}

static void test_change_stream(void) {
    pasid_host *h = new_host(4096);
    pasid_guest_id g = new_guest(h, 4);
    uint32_t first = alloc_shared(h, g), hp = 0;
    pasid_translation_change buf[8];
    size_t n = 99;
    bool on = true;

    /* Off: nothing pending, draining refused. */
    OK(pasid_pending_translation_changes(h, g, &on, &n));
    CHECK(!on && n == 0);
    CHECK_RC(pasid_drain_translation_changes(h, g, buf, 8, &n), PASID_RESULT_NOT_SUPPORTED);

    /* On: seeded with the table, then every change in order. */
    OK(pasid_enable_translation_changes(h, g, 2));
    OK(pasid_pending_translation_changes(h, g, &on, &n));
    CHECK(on && n == 1);
    uint32_t second = alloc_shared(h, g);
    uint32_t third = 0;
    CHECK_RC(pasid_alloc(h, g, PASID_KIND_SHARED, &third, NULL), PASID_RESULT_CHANGE_LOG_FULL);
    OK(pasid_translate(h, g, first, &hp));
    OK(pasid_drain_translation_changes(h, g, buf, 1, &n));
    CHECK(n == 1 && buf[0].gpasid == first && buf[0].valid && buf[0].hpasid == hp);
    OK(pasid_drain_translation_changes(h, g, buf, 8, &n));
    CHECK(n == 1 && buf[0].gpasid == second && buf[0].valid);
    OK(pasid_free(h, g, first, NULL));
    /* The teardown waits until the invalidation left the log. */
    pasid_draining d;
    memset(&d, 0, sizeof d);
    d.guest = g;
    d.gpasid = first;
    d.hpasid = hp;
    CHECK_RC(pasid_complete_teardown(h, &d, 1), PASID_RESULT_CHANGE_PENDING);
    OK(pasid_drain_translation_changes(h, g, buf, 8, &n));
    CHECK(n == 1 && buf[0].gpasid == first && !buf[0].valid);
    OK(pasid_complete_teardown(h, &d, 1));

    /* The whole table, with a size query. */
    CHECK_RC(pasid_translation_entries(h, g, NULL, 0, &n), PASID_RESULT_BUFFER_TOO_SMALL);
    CHECK(n == 1);
    OK(pasid_translation_entries(h, g, buf, 8, &n));
    CHECK(n == 1 && buf[0].gpasid == second && buf[0].valid);

    /* Bad arguments. */
    CHECK_RC(pasid_pending_translation_changes(h, g, NULL, &n), PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_drain_translation_changes(h, g, NULL, 1, &n), PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_drain_translation_changes(h, g, buf, 8, NULL), PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_translation_entries(h, g, buf, 8, NULL), PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_enable_translation_changes(h, 12345, 8), PASID_RESULT_NO_SUCH_GUEST);
    CHECK_RC(pasid_enable_translation_changes(NULL, g, 8), PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_disable_translation_changes(h, 12345), PASID_RESULT_NO_SUCH_GUEST);
    CHECK_RC(pasid_enable_translation_changes(h, g, 0), PASID_RESULT_CHANGE_LOG_FULL);
    OK(pasid_disable_translation_changes(h, g));
    OK(pasid_pending_translation_changes(h, g, &on, &n));
    CHECK(!on);
    pasid_host_free(h);
}

static void test_single_entry_updates(void) {
    pages *p = aligned_alloc(4096, sizeof *p);
    uint32_t hp = 0;
    CHECK(p != NULL);
    if (p == NULL) return;
    /* The directories start empty; the table page is garbage until linked, except that a
     * page being linked must be all invalid. */
    memset(p->low, 0, sizeof p->low);
    memset(p->high, 0, sizeof p->high);
    memset(p->table, 0, sizeof p->table);

    pasid_translation_change c = {5, 0x9000, true};
    /* Links table 0: the entry first, then the directory entry. */
    OK(pasid_apply_translation_change(&c, 0, p->table, p->low, 0x12000));
    CHECK(walk(p, 5, &hp) && hp == 0x9000);
    CHECK(!walk(p, 6, &hp));
    /* Re-pointing: invalid first, then the new one (both stores made). */
    c.hpasid = 0x9001;
    OK(pasid_apply_translation_change(&c, 0x80009000u, p->table, NULL, 0));
    CHECK(walk(p, 5, &hp) && hp == 0x9001);
    /* Unmap. */
    c.valid = false;
    OK(pasid_apply_translation_change(&c, 0x80009001u, p->table, NULL, 0));
    CHECK(!walk(p, 5, &hp));

    /* Bad arguments: nothing is written. */
    uint8_t before[PASID_PAGE_SIZE];
    memcpy(before, p->table, sizeof before);
    c.valid = true;
    CHECK_RC(pasid_apply_translation_change(NULL, 0, p->table, NULL, 0),
             PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_apply_translation_change(&c, 0, NULL, NULL, 0), PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_apply_translation_change(&c, 0, p->table + 1, NULL, 0),
             PASID_RESULT_INVALID_ARGUMENT);
    CHECK_RC(pasid_apply_translation_change(&c, 0, p->table, p->low + 4, 0x12000),
             PASID_RESULT_INVALID_ARGUMENT);
    CHECK_RC(pasid_apply_translation_change(&c, 0, p->table, p->low, 0x12001),
             PASID_RESULT_UNALIGNED_PAGE);
    c.gpasid = 1u << 20;
    CHECK_RC(pasid_apply_translation_change(&c, 0, p->table, NULL, 0),
             PASID_RESULT_PASID_OUT_OF_RANGE);
    CHECK(memcmp(before, p->table, sizeof before) == 0);
    free(p);
}

static void test_migration_options(void) {
    pasid_host *src = new_host(4096), *dst = new_host(4096), *small = new_host(2048);
    pasid_guest_id g = new_guest(src, 8), g2 = 0;
    uint8_t blob[512];
    size_t n = 0;
    pasid_import_report *report = NULL;
    pasid_migration_identity id = {.size = sizeof(id)};
    bool present = false;
    uint32_t quota = 0;
    pasid_translation_change buf[4];

    alloc_shared(src, g);
    alloc_shared(src, g);
    OK(pasid_host_set_id(src, 0xabcd));
    CHECK_RC(pasid_host_set_id(NULL, 1), PASID_RESULT_NULL_PARAMETER);

    pasid_export_options eo = {sizeof eo, PASID_MIGRATION_FORMAT_MAJOR,
                               PASID_MIGRATION_FORMAT_MINOR, 7};
    OK(pasid_export_guest_with(src, g, &eo, blob, sizeof blob, &n));
    CHECK(n > 20 && blob[8] == 2);

    /* The destination caps the quota below what the guest holds: refused. */
    pasid_import_options io = {sizeof io, PASID_QUOTA_SET, 1, 0};
    CHECK_RC(pasid_import_guest_with(dst, blob, n, NULL, 0, &io, &g2, NULL),
             PASID_RESULT_QUOTA_EXCEEDED);
    io.quota_rule = 99;
    CHECK_RC(pasid_import_guest_with(dst, blob, n, NULL, 0, &io, &g2, NULL),
             PASID_RESULT_INVALID_ARGUMENT);
    /* A host with a smaller local range cannot honour what the guest was told. */
    CHECK_RC(pasid_import_guest_with(small, blob, n, NULL, 0, NULL, &g2, NULL),
             PASID_RESULT_CONTRACT_NOT_HONOURED);
    /* Capped, with a change log: its first changes are the new table. */
    io.quota_rule = PASID_QUOTA_CAP;
    io.quota = 4;
    io.change_log_capacity = 16;
    OK(pasid_import_guest_with(dst, blob, n, NULL, 0, &io, &g2, &report));
    OK(pasid_import_report_identity(report, &id, &present, &quota));
    CHECK(present && id.source_host == 0xabcd && id.source_guest == g && id.epoch == 7);
    CHECK(quota == 4);
    OK(pasid_drain_translation_changes(dst, g2, buf, 4, &n));
    CHECK(n == 2 && buf[0].valid && buf[1].valid);
    CHECK_RC(pasid_import_report_identity(NULL, &id, &present, &quota),
             PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_import_report_identity(report, &id, NULL, &quota),
             PASID_RESULT_NULL_PARAMETER);
    pasid_import_report_free(report);

    /* The same blob again: a replay. */
    OK(pasid_export_guest_with(src, g, &eo, blob, sizeof blob, &n));
    CHECK_RC(pasid_import_guest_with(dst, blob, n, NULL, 0, NULL, &g2, NULL),
             PASID_RESULT_REPLAYED);

    /* Back to an older reader: format 1.0 carries no identity. */
    eo.format_major = 1;
    eo.format_minor = 0;
    OK(pasid_export_guest_with(src, g, &eo, blob, sizeof blob, &n));
    CHECK(blob[8] == 1);
    OK(pasid_import_guest_with(dst, blob, n, NULL, 0, NULL, &g2, &report));
    OK(pasid_import_report_identity(report, &id, &present, &quota));
    CHECK(!present && id.source_host == 0 && quota == 8);
    pasid_import_report_free(report);
    eo.format_major = 9;
    CHECK_RC(pasid_export_guest_with(src, g, &eo, blob, sizeof blob, &n),
             PASID_RESULT_UNSUPPORTED_VERSION);
    /* Defaults, with a size query. */
    CHECK_RC(pasid_export_guest_with(src, g, NULL, NULL, 0, &n), PASID_RESULT_BUFFER_TOO_SMALL);
    CHECK(n > 20);
    CHECK_RC(pasid_export_guest_with(src, g, NULL, blob, sizeof blob, NULL),
             PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_import_guest_with(dst, NULL, 4, NULL, 0, NULL, &g2, NULL),
             PASID_RESULT_NULL_PARAMETER);
    pasid_host_free(src);
    pasid_host_free(dst);
    pasid_host_free(small);
}

static void test_contract(void) {
    pasid_layout l = layout(3000);
    uint8_t w = 0;
    pasid_host *h = new_host(4096);
    pasid_guest_config c = {sizeof c, PASID_PLATFORM_P1, 0};
    pasid_guest_contract k, got;
    pasid_guest_id g = 0;

    CHECK(pasid_ecap_pss(20) == 19 && pasid_ecap_pss(1) == 0 && pasid_ecap_pss(0) == 0);
    OK(pasid_p1_exact_width(&l, &w));
    CHECK(w == 11);
    l.local_start = 2;
    CHECK_RC(pasid_p1_exact_width(&l, &w), PASID_RESULT_INCOMPATIBLE_LAYOUT);
    CHECK_RC(pasid_p1_exact_width(NULL, &w), PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_p1_exact_width(&l, NULL), PASID_RESULT_NULL_PARAMETER);

    /* A p1 guest told width 11: exactly 1..2048. */
    memset(&k, 0, sizeof k);
    k.size = sizeof k;
    k.width = 11;
    k.local_start = 1;
    k.local_end = 2048;
    OK(pasid_guest_create_advertising(h, &c, &k, &g));
    got.size = sizeof got;
    OK(pasid_guest_contract_get(h, g, &got));
    CHECK(got.width == 11 && got.local_end == 2048 && got.capabilities == 0);
    /* Not 1..2^width, or allocation on p1: refused. */
    k.local_end = 2000;
    CHECK_RC(pasid_guest_create_advertising(h, &c, &k, &g), PASID_RESULT_INCOMPATIBLE_LAYOUT);
    k.local_end = 2048;
    k.capabilities = PASID_CAP_VCS | PASID_CAP_PASID_ALLOC;
    CHECK_RC(pasid_guest_create_advertising(h, &c, &k, &g), PASID_RESULT_INCOMPATIBLE_LAYOUT);
    /* More than the host has. */
    k.capabilities = 0;
    k.width = 13;
    k.local_end = 8192;
    CHECK_RC(pasid_guest_create_advertising(h, &c, &k, &g), PASID_RESULT_CONTRACT_NOT_HONOURED);
    CHECK_RC(pasid_guest_create_advertising(h, NULL, &k, &g), PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_guest_create_advertising(h, &c, NULL, &g), PASID_RESULT_NULL_PARAMETER);
    CHECK_RC(pasid_guest_contract_get(h, 12345, &got), PASID_RESULT_NO_SUCH_GUEST);
    CHECK_RC(pasid_guest_contract_get(h, g, NULL), PASID_RESULT_NULL_PARAMETER);
    pasid_host_free(h);
}

int main(void) {
    RUN(test_change_stream);
    RUN(test_single_entry_updates);
    RUN(test_migration_options);
    RUN(test_contract);
    return FINISH();
}
