/*
 * Handles and threads: every handle-taking function refuses NULL, freed, made-up and
 * wrong-type handles; calls from several threads on one host, and a host freed while
 * other threads use it.
 * A program of its own, as every test_*.c (see fixtures.h).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdint.h>

#include "fixtures.h" /* the shared fixtures, and check.h's CHECK, OK, RUN, FINISH */

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

int main(void) {
    RUN(test_bad_handles);
    RUN(test_threads);
    return FINISH();
}
