/*
 * A QEMU-shaped vIOMMU using libpasid: a small emulated VT-d register file whose
 * virtual command registers are backed by the library, PASID-table programming through
 * pasid_bind, the CPU's ENQCMD PASID-translation pages kept up to date, and the guest's
 * PASID state carried through a migration stream to a second host.
 *
 * Build (static, as QEMU links it):
 *   cc -std=c11 $(pkg-config --cflags pasid) viommu.c \
 *      $(pkg-config --libs-only-L pasid) -Wl,-Bstatic -lpasid -Wl,-Bdynamic \
 *      $(pkg-config --static --libs-only-l pasid | sed 's/-lpasid//')
 *
 * Exits 0 when every step did what a real guest would expect.
 */
#include <pasid.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Die with the library's full message: what a VMM would log. */
static void check(int rc, const char *what) {
    char msg[256];
    size_t n = 0;
    if (rc == PASID_RESULT_OK)
        return;
    pasid_last_error_message(msg, sizeof msg, &n);
    fprintf(stderr, "viommu: %s: %s (%d: %s)\n", what, msg, rc, pasid_strerror(rc));
    exit(1);
}

/* ---- the "machine": guest-physical pages the CPU walks ---- */

typedef struct {
    uint8_t *bytes;
    uint64_t phys;
} Page;

static Page page_new(uint64_t phys) {
    Page p;
    p.bytes = (uint8_t *)aligned_alloc(PASID_PAGE_SIZE, PASID_PAGE_SIZE);
    memset(p.bytes, 0, PASID_PAGE_SIZE);
    p.phys = phys;
    return p;
}

/* ---- the vIOMMU device ---- */

#define DMAR_ECAP_REG 0x10
#define MAX_TABLES 4

typedef struct {
    pasid_host *host; /* one per QEMU process, shared by every vIOMMU and vCPU thread */
    pasid_guest_id guest;
    uint32_t revision;
    pasid_vcmd_offsets off;
    uint64_t ecap;
    uint64_t vcrsp; /* the last response, returned on every VCRSP read */
    /* The VMCS fields and pages of ENQCMD PASID translation for this guest. */
    Page dir[2]; /* low, high */
    Page table[MAX_TABLES];
    uint64_t vmcs_low_dir, vmcs_high_dir;
} VtdState;

static uint64_t next_phys = 0x7f000000;

/* Keeps the CPU's translation pages current after an update that touched them. */
static void vtd_sync_translation(VtdState *s, const pasid_pages_touched *t) {
    uint32_t dir = 0;
    pasid_page table;
    if (!t->changed)
        return;
    if (t->table >= MAX_TABLES) {
        fprintf(stderr, "viommu: example only keeps %d tables\n", MAX_TABLES);
        exit(1);
    }
    if (s->table[t->table].bytes == NULL) {
        s->table[t->table] = page_new(next_phys);
        next_phys += PASID_PAGE_SIZE;
    }
    check(pasid_directory_of_table(t->table, &dir, NULL), "directory_of_table");
    table.phys = s->table[t->table].phys;
    table.bytes = s->table[t->table].bytes;
    table.len = PASID_PAGE_SIZE;
    check(pasid_write_touched_pages(s->host, s->guest, t, table,
                                    s->dir[dir == PASID_DIRECTORY_HIGH].bytes, PASID_PAGE_SIZE),
          "write_touched_pages");
}

/* MMIO read handler (QEMU: MemoryRegionOps.read). */
static uint64_t vtd_mmio_read(VtdState *s, uint32_t addr) {
    uint32_t reg = PASID_VCMD_REGISTER_NONE;
    uint64_t v = 0;
    if (addr == DMAR_ECAP_REG)
        return s->ecap;
    check(pasid_vcmd_register_at(s->revision, addr, &reg), "register_at");
    switch (reg) {
    case PASID_VCMD_REGISTER_VCCAP:
        check(pasid_vcap(s->host, s->guest, s->revision, &v), "vcap");
        return v;
    case PASID_VCMD_REGISTER_VCRSP:
        return s->vcrsp;
    default:
        return 0;
    }
}

/* MMIO write handler (QEMU: MemoryRegionOps.write), on a vCPU thread. */
static void vtd_mmio_write(VtdState *s, uint32_t addr, uint64_t val) {
    uint32_t reg = PASID_VCMD_REGISTER_NONE;
    pasid_pages_touched touched;
    check(pasid_vcmd_register_at(s->revision, addr, &reg), "register_at");
    if (reg != PASID_VCMD_REGISTER_VCMD)
        return; /* VCCAP and VCRSP are read-only */
    check(pasid_vcmd(s->host, s->guest, s->revision, val, &s->vcrsp, &touched), "vcmd");
    vtd_sync_translation(s, &touched);
}

/* The guest's PASID-cache invalidation for (rid, gpasid): program the host IOMMU. */
static uint32_t vtd_pasid_entry_programmed(VtdState *s, pasid_rid rid, uint32_t gpasid) {
    uint32_t host_pasid = 0;
    check(pasid_bind(s->host, s->guest, gpasid, rid, &host_pasid), "bind");
    /* A real VMM now attaches the guest's page table to (rid, host_pasid) on the host
     * IOMMU, e.g. through iommufd. */
    return host_pasid;
}

static void vtd_init(VtdState *s, pasid_host *host, pasid_guest_id guest, uint32_t revision) {
    memset(s, 0, sizeof *s);
    s->host = host;
    s->guest = guest;
    s->revision = revision;
    s->ecap = PASID_ECAP_VCS;
    check(pasid_vcmd_get_offsets(revision, &s->off), "offsets");
    s->dir[0] = page_new(next_phys);
    s->dir[1] = page_new(next_phys + PASID_PAGE_SIZE);
    next_phys += 2 * PASID_PAGE_SIZE;
    s->vmcs_low_dir = s->dir[0].phys;
    s->vmcs_high_dir = s->dir[1].phys;
}

static void vtd_fini(VtdState *s) {
    int i;
    free(s->dir[0].bytes);
    free(s->dir[1].bytes);
    for (i = 0; i < MAX_TABLES; i++)
        free(s->table[i].bytes);
}

/* What the CPU does for ENQCMD with IA32_PASID = gpasid. */
static uint32_t cpu_enqcmd(VtdState *s, uint32_t gpasid) {
    pasid_page_ref refs[2 + MAX_TABLES];
    pasid_walk_result r;
    size_t n = 0;
    int i;
    for (i = 0; i < 2; i++) {
        refs[n].phys = s->dir[i].phys;
        refs[n].bytes = s->dir[i].bytes;
        refs[n++].len = PASID_PAGE_SIZE;
    }
    for (i = 0; i < MAX_TABLES; i++) {
        if (s->table[i].bytes == NULL)
            continue;
        refs[n].phys = s->table[i].phys;
        refs[n].bytes = s->table[i].bytes;
        refs[n++].len = PASID_PAGE_SIZE;
    }
    check(pasid_walk(s->vmcs_low_dir, s->vmcs_high_dir, gpasid, refs, n, &r), "walk");
    if (r.fault != PASID_FAULT_NONE) {
        printf("  cpu: ENQCMD gPASID %u -> VM exit %d (fault %u)\n", gpasid,
               PASID_EXIT_REASON_ENQCMD, r.fault);
        return 0;
    }
    printf("  cpu: ENQCMD gPASID %u -> hPASID %u\n", gpasid, r.hpasid);
    return r.hpasid;
}

/* ---- the guest's driver, as Linux's vcmd_alloc_pasid did it ---- */

static uint32_t guest_vcmd(VtdState *s, uint64_t code, uint64_t operand, uint32_t *status) {
    uint64_t cap = vtd_mmio_read(s, s->off.vccap);
    uint64_t rsp;
    if (!(vtd_mmio_read(s, DMAR_ECAP_REG) & PASID_ECAP_VCS) || !(cap & PASID_VCCAP_PAS)) {
        *status = 0xff;
        return 0;
    }
    vtd_mmio_write(s, s->off.vcmd, operand << s->off.operand_shift | code);
    do
        rsp = vtd_mmio_read(s, s->off.vcrsp);
    while (rsp & PASID_VCRSP_IP);
    *status = (uint32_t)(rsp >> 1) & (s->revision == PASID_VTD_REVISION_V33 ? 0x7f : 0x3);
    return (uint32_t)(rsp >> s->off.operand_shift) & 0xfffff;
}

int main(void) {
    pasid_layout layout = {.size = sizeof(layout), .width = 20, .local_start = 1, .local_end = 4096, .shared_start = 4096, .shared_end = 1u << 19};
    pasid_host *src = NULL, *dst = NULL;
    pasid_guest_config cfg = {.size = sizeof(cfg), .platform = PASID_PLATFORM_P2, .shared_quota = 16};
    pasid_guest_id guest = 0, migrated = 0;
    pasid_rid vf = {0, 0x0301}, dsa_wq = {0, 0x0a00};
    pasid_rid vf_dst = {0, 0x0411}, dsa_wq_dst = {0, 0x0a00};
    pasid_rid_mapping map[2];
    pasid_import_report *report = NULL;
    pasid_shared_remap remap[4];
    VtdState s, d;
    uint32_t status = 0, shared, local, hpasid, on_wq, on_vf;
    uint8_t *stream;
    size_t stream_len = 0, n = 0, i;

    printf("libpasid %s\n", pasid_version());
    check(pasid_host_new(&layout, PASID_PLATFORM_P2, &src), "host_new");
    check(pasid_guest_create(src, &cfg, &guest), "guest_create");
    check(pasid_attach(src, guest, vf, PASID_DEVICE_KIND_DEDICATED), "attach VF");
    check(pasid_attach(src, guest, dsa_wq, PASID_DEVICE_KIND_SHARED_WQ), "attach DSA WQ");
    vtd_init(&s, src, guest, PASID_VTD_REVISION_V33);

    /* The guest asks its vIOMMU for PASIDs through VCMD. */
    shared = guest_vcmd(&s, PASID_VCMD_ALLOC, 0, &status);
    if (status != PASID_VCMD_SC_SUCCESS)
        return 1;
    printf("guest: VCMD ALLOC -> gPASID %u (shared)\n", shared);
    local = guest_vcmd(&s, PASID_VCMD_ALLOC, PASID_VCMD_ALLOC_OPERAND_LOCAL, &status);
    if (status != PASID_VCMD_SC_SUCCESS)
        return 1;
    printf("guest: VCMD ALLOC(local) -> gPASID %u\n", local);
    guest_vcmd(&s, PASID_VCMD_FREE, 999, &status);
    printf("guest: VCMD FREE 999 -> status %u (invalid PASID)\n", status);
    if (status != PASID_VCMD_SC_NO_PASID_V3_3)
        return 1;

    /* The guest programs PASID-table entries; the vIOMMU binds them. */
    on_wq = vtd_pasid_entry_programmed(&s, dsa_wq, shared);
    on_vf = vtd_pasid_entry_programmed(&s, vf, shared);
    printf("vIOMMU: gPASID %u on the DSA WQ -> host PASID entry %u\n", shared, on_wq);
    printf("vIOMMU: gPASID %u on the VF     -> host PASID entry %u\n", shared, on_vf);
    printf("vIOMMU: gPASID %u on the VF     -> host PASID entry %u\n", local,
           vtd_pasid_entry_programmed(&s, vf, local));
    check(pasid_translate(src, guest, shared, &hpasid), "translate");
    if (on_wq != hpasid || on_vf != shared || cpu_enqcmd(&s, shared) != hpasid)
        return 1;
    if (cpu_enqcmd(&s, local) != 0) /* a local gPASID has no translation: VM exit */
        return 1;

    /* Live migration: the blob goes into the migration stream. */
    check(pasid_export_guest(src, guest, NULL, 0, &stream_len) == PASID_RESULT_BUFFER_TOO_SMALL
              ? PASID_RESULT_OK
              : PASID_RESULT_INVALID_ARGUMENT,
          "export size");
    stream = (uint8_t *)malloc(stream_len);
    check(pasid_export_guest(src, guest, stream, stream_len, &n), "export");
    printf("migration: %zu bytes of PASID state\n", stream_len);

    check(pasid_host_new(&layout, PASID_PLATFORM_P2, &dst), "host_new dst");
    {
        /* The destination already runs a guest with shared PASIDs. */
        pasid_guest_id other = 0;
        uint32_t x = 0;
        check(pasid_guest_create(dst, &cfg, &other), "guest_create dst");
        for (i = 0; i < 3; i++)
            check(pasid_alloc(dst, other, PASID_KIND_SHARED, &x, NULL), "alloc dst");
    }
    /* Where each device lives on the destination, and what the VMM set up there. */
    map[0].size = map[1].size = sizeof(map[0]);
    map[0].source = vf;
    map[0].destination = vf_dst;
    map[0].kind = PASID_DEVICE_KIND_DEDICATED;
    map[1].source = dsa_wq;
    map[1].destination = dsa_wq_dst;
    map[1].kind = PASID_DEVICE_KIND_SHARED_WQ;
    check(pasid_import_guest(dst, stream, stream_len, map, 2, &migrated, &report), "import");
    check(pasid_import_report_shared(report, remap, 4, &n), "report");
    for (i = 0; i < n; i++)
        printf("migration: gPASID %u kept, hPASID %u -> %u\n", remap[i].gpasid,
               remap[i].source_hpasid, remap[i].destination_hpasid);
    pasid_import_report_free(report);
    check(pasid_guest_destroy(src, guest), "release on source");

    /* The destination vIOMMU rebuilds the CPU's pages from scratch. */
    vtd_init(&d, dst, migrated, PASID_VTD_REVISION_V33);
    {
        pasid_table_page tp[MAX_TABLES];
        uint32_t tables[MAX_TABLES];
        pasid_page lo, hi;
        check(pasid_translation_tables(dst, migrated, tables, MAX_TABLES, &n), "tables");
        for (i = 0; i < n; i++) {
            d.table[tables[i]] = page_new(next_phys);
            next_phys += PASID_PAGE_SIZE;
            tp[i].table = tables[i];
            tp[i].page.phys = d.table[tables[i]].phys;
            tp[i].page.bytes = d.table[tables[i]].bytes;
            tp[i].page.len = PASID_PAGE_SIZE;
        }
        lo.phys = d.dir[0].phys;
        lo.bytes = d.dir[0].bytes;
        lo.len = PASID_PAGE_SIZE;
        hi.phys = d.dir[1].phys;
        hi.bytes = d.dir[1].bytes;
        hi.len = PASID_PAGE_SIZE;
        check(pasid_export_translation(dst, migrated, lo, hi, tp, n), "export_translation");
    }
    check(pasid_translate(dst, migrated, shared, &hpasid), "translate dst");
    if (cpu_enqcmd(&d, shared) != hpasid || hpasid == on_wq)
        return 1;
    printf("migration: VMCS %#x = %#" PRIx64 ", %#x = %#" PRIx64 "\n",
           PASID_VMCS_LOW_PASID_DIRECTORY, d.vmcs_low_dir, PASID_VMCS_HIGH_PASID_DIRECTORY,
           d.vmcs_high_dir);

    vtd_fini(&s);
    vtd_fini(&d);
    free(stream);
    pasid_host_free(src);
    pasid_host_free(dst);
    printf("viommu example: ok\n");
    return 0;
}
