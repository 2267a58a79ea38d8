/*
 * A QEMU-shaped VT-d vIOMMU on libpasid, in one file that builds alone.
 *
 * The three places QEMU meets the library, written as QEMU device code would be:
 *
 *  - the virtual command registers as their own MMIO region at 0xE00 (a
 *    MemoryRegionOps of their own, overlapping the DMAR register file), so that
 *    the register array QEMU migrates (DMAR_REG_SIZE bytes) does not grow;
 *    both VT-d revisions of the registers are served;
 *  - the guest's PASID state as an optional VMState subsection: pre_save exports
 *    it into a buffer (size query first), post_load imports it with the RID map
 *    of this host's devices and reports a refusal through Error **errp;
 *  - the library's log routed to a trace-style printer;
 *  - the host handle, one per QEMU process: a lease at the machine's PASID broker
 *    when one runs (host PASIDs unique on the machine), else an in-process one.
 *
 * The QEMU APIs used are stubbed below, just enough to run; each stub names what
 * it stands for. Build (static, as QEMU links it) and run:
 *
 *   cc -std=gnu11 $(pkg-config --cflags pasid) viommu.c \
 *      $(pkg-config --static --libs pasid) -o viommu && ./viommu
 *
 * or with meson: examples/c/meson.build. With PASID_BROKER_SOCKET=PATH in the
 * environment (standing for -device intel-iommu,x-pasid-broker=PATH) the host
 * PASIDs come from the broker listening there (scripts/broker.sh). Exits 0 when
 * every step did what a real guest and a real migration would expect.
 */
#include <pasid.h>

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- stand-ins for QEMU: qapi/error.h, trace events, KVM ---- */

typedef struct Error {
    char msg[512];
} Error;

static void __attribute__((format(printf, 2, 3)))
error_setg(Error **errp, const char *fmt, ...)
{
    va_list ap;

    if (!errp) {
        return;
    }
    *errp = calloc(1, sizeof(**errp));
    if (!*errp) {
        abort();
    }
    va_start(ap, fmt);
    vsnprintf((*errp)->msg, sizeof((*errp)->msg), fmt, ap);
    va_end(ap);
}

/* error_report_err(): prints and frees. */
static void error_report_err(Error *err)
{
    fprintf(stderr, "qemu: %s\n", err->msg);
    free(err);
}

/* trace-events: vtd_pasid_log(const char *iommu, const char *level, const char *msg) */
static void trace_vtd_pasid_log(const char *iommu, const char *level, const char *msg)
{
    printf("vtd_pasid_log iommu=%s level=%s %s\n", iommu, level, msg);
}

/* KVM_X86_SET_PASID_TRANSLATION (out-of-tree): hpasid 0 clears the entry. */
static void kvm_set_pasid_translation(uint32_t gpasid, uint32_t hpasid)
{
    printf("  kvm: PASID translation gPASID %u -> %u%s\n", gpasid, hpasid,
           hpasid ? "" : " (cleared)");
}

/* ---- the device ---- */

#define DMAR_REG_SIZE       0x230   /* QEMU's migrated register array: unchanged */
#define DMAR_ECAP_REG       0x10
#define VTD_VCMD_BASE       0xE00   /* virtual command registers: their own region */
#define VTD_VCMD_SIZE       0x40    /* covers both revisions' VCCAP, VCMD, VCRSP */
#define VTD_PASID_MAX_DEVS  4
#define VTD_PASID_BLOB_MAX  65536

/* A device assigned to the guest: where the guest sees it, where it is on the host. */
typedef struct VtdPasidDev {
    uint16_t guest_bdf;
    pasid_rid host_rid;
    uint32_t kind;          /* PASID_DEVICE_KIND_* */
} VtdPasidDev;

typedef struct IntelIOMMUState {
    const char *name;
    uint8_t regs[DMAR_REG_SIZE];    /* DMAR registers: VMSTATE_UINT8_ARRAY */
    uint32_t vcmd_rev;              /* property x-vcmd-rev: PASID_VTD_REVISION_* */
    pasid_vcmd_offsets vcmd_off;
    uint64_t vcrsp;                 /* VCRSP: the last command's response */

    pasid_host *pasid_host;         /* one per QEMU process, shared by vIOMMUs */
    pasid_guest_id pasid_guest;
    VtdPasidDev devs[VTD_PASID_MAX_DEVS];
    unsigned ndevs;

    /* The "vtd/pasid" subsection: filled by pre_save, consumed by post_load. */
    uint32_t pasid_blob_len;
    uint8_t *pasid_blob;            /* VMSTATE_VBUFFER_ALLOC_UINT32 */
    VtdPasidDev mig_devs[VTD_PASID_MAX_DEVS];   /* the source's devices */
    uint32_t mig_ndevs;
} IntelIOMMUState;

static uint64_t vtd_get_quad(IntelIOMMUState *s, uint64_t addr)
{
    uint64_t v;

    memcpy(&v, &s->regs[addr], sizeof(v));
    return v;
}

/*
 * The VCMD region. A vCPU thread calls these straight from its MMIO exit: the
 * library locks the host itself, so no BQL is needed around them.
 */
static uint64_t vtd_vcmd_read(void *opaque, uint64_t addr, unsigned size)
{
    IntelIOMMUState *s = opaque;
    uint32_t reg = PASID_VCMD_REGISTER_NONE;
    uint64_t v = 0;

    (void)size;
    if (pasid_vcmd_register_at(s->vcmd_rev, VTD_VCMD_BASE + addr, &reg)) {
        return 0;
    }
    switch (reg) {
    case PASID_VCMD_REGISTER_VCCAP:
        /* PAS for a p2 guest, 0 for a p1 guest: a failure reads as "no PAS" */
        if (pasid_vcap(s->pasid_host, s->pasid_guest, s->vcmd_rev, &v)) {
            v = 0;
        }
        return v;
    case PASID_VCMD_REGISTER_VCRSP:
        return s->vcrsp;
    default:
        return 0;   /* VCMD reads as 0; reserved offsets too */
    }
}

static void vtd_vcmd_write(void *opaque, uint64_t addr, uint64_t val, unsigned size)
{
    IntelIOMMUState *s = opaque;
    uint32_t reg = PASID_VCMD_REGISTER_NONE, kind = 0, hpasid = 0, gpasid;
    pasid_vcmd_response rsp;

    (void)size;
    if (pasid_vcmd_register_at(s->vcmd_rev, VTD_VCMD_BASE + addr, &reg) ||
        reg != PASID_VCMD_REGISTER_VCMD) {
        return;     /* VCCAP and VCRSP are read-only */
    }

    /* The host PASID behind a FREE's operand, while it is still allocated. */
    gpasid = (uint32_t)(val >> s->vcmd_off.operand_shift) & 0xfffff;
    if ((val & 0xff) == PASID_VCMD_FREE &&
        !pasid_kind_of(s->pasid_host, s->pasid_guest, gpasid, &kind) &&
        kind == PASID_KIND_SHARED &&
        pasid_translate(s->pasid_host, s->pasid_guest, gpasid, &hpasid)) {
        hpasid = 0;
    }

    /* Whatever the guest wrote, a VCRSP value comes back; an error is ours. */
    if (pasid_vcmd(s->pasid_host, s->pasid_guest, s->vcmd_rev, val, &s->vcrsp, NULL) ||
        pasid_vcmd_decode_response(s->vcmd_rev, s->vcrsp, &rsp)) {
        s->vcrsp = 0;
        return;
    }

    /*
     * A freed PASID drains: neither number is handed out again until the VMM
     * confirms the hardware let go of it (Linux's order: clear the entry, flush
     * the caches, drain, then free the number).
     */
    if ((val & 0xff) == PASID_VCMD_FREE && rsp.status == PASID_VCMD_SC_SUCCESS) {
        pasid_draining gone = {
            .guest = s->pasid_guest, .gpasid = gpasid, .hpasid = hpasid,
        };

        if (hpasid) {
            kvm_set_pasid_translation(gpasid, 0);
        }
        /* ...and the IOTLB / device-TLB invalidation, through iommufd. */
        if (pasid_complete_teardown(s->pasid_host, &gone, 1)) {
            /* Logged. The PASID stays draining, out of use: safe. */
        }
        return;
    }

    /* ALLOC of a shared PASID: install gPASID -> hPASID for ENQCMD. */
    if ((val & 0xff) == PASID_VCMD_ALLOC && rsp.status == PASID_VCMD_SC_SUCCESS &&
        !pasid_kind_of(s->pasid_host, s->pasid_guest, rsp.pasid, &kind) &&
        kind == PASID_KIND_SHARED &&
        !pasid_translate(s->pasid_host, s->pasid_guest, rsp.pasid, &hpasid)) {
        kvm_set_pasid_translation(rsp.pasid, hpasid);
    }
}

static const struct {
    uint64_t (*read)(void *opaque, uint64_t addr, unsigned size);
    void (*write)(void *opaque, uint64_t addr, uint64_t val, unsigned size);
} vtd_vcmd_ops = {                  /* MemoryRegionOps */
    .read = vtd_vcmd_read,
    .write = vtd_vcmd_write,
};

/*
 * What the memory API does with the regions. The vIOMMU's 4 KiB register page is
 * a container (memory_region_init(&s->mmio, ..., "intel_iommu", 0x1000)) holding
 * the DMAR registers at 0 (csrmem, DMAR_REG_SIZE: migrated as a fixed array, as
 * before) and, with memory_region_init_io(&s->vcmd_mr, ..., &vtd_vcmd_ops, s,
 * "intel_iommu.vcmd", VTD_VCMD_SIZE), the VCMD region at VTD_VCMD_BASE. Growing
 * DMAR_REG_SIZE to reach 0xE00 instead would break migration from older QEMUs.
 */
static uint64_t vtd_mmio_read(IntelIOMMUState *s, uint64_t addr)
{
    if (addr >= VTD_VCMD_BASE && addr < VTD_VCMD_BASE + VTD_VCMD_SIZE) {
        return vtd_vcmd_ops.read(s, addr - VTD_VCMD_BASE, 8);
    }
    return addr + 8 <= DMAR_REG_SIZE ? vtd_get_quad(s, addr) : 0;
}

static void vtd_mmio_write(IntelIOMMUState *s, uint64_t addr, uint64_t val)
{
    if (addr >= VTD_VCMD_BASE && addr < VTD_VCMD_BASE + VTD_VCMD_SIZE) {
        vtd_vcmd_ops.write(s, addr - VTD_VCMD_BASE, val, 8);
    }
}

/* The guest programmed a PASID-table entry: what goes into the host's entry. */
static int vtd_pasid_bind(IntelIOMMUState *s, unsigned dev, uint32_t gpasid,
                          uint32_t *host_pasid)
{
    /* Then iommufd: IOMMU_HWPT_ALLOC_PASID / attach (host_rid, *host_pasid). */
    return pasid_bind(s->pasid_host, s->pasid_guest, gpasid, s->devs[dev].host_rid,
                      host_pasid);
}

static void vtd_pasid_log(uint32_t level, const char *msg, void *opaque)
{
    IntelIOMMUState *s = opaque;

    trace_vtd_pasid_log(s->name, pasid_log_level_name(level), msg);
}

static bool vtd_realize(IntelIOMMUState *s, pasid_host *host, uint32_t rev,
                        bool incoming, Error **errp)
{
    pasid_guest_config cfg = {
        .size = sizeof(cfg), .platform = PASID_PLATFORM_P2, .shared_quota = 16,
    };
    uint64_t ecap = PASID_ECAP_VCS;
    unsigned i;

    s->pasid_host = host;   /* one per process: see vtd_pasid_host_new() */
    s->vcmd_rev = rev;
    memcpy(&s->regs[DMAR_ECAP_REG], &ecap, sizeof(ecap));
    if (pasid_vcmd_get_offsets(rev, &s->vcmd_off)) {
        error_setg(errp, "x-vcmd-rev=%u is not a VT-d revision", rev);
        return false;
    }
    if (incoming) {
        return true;    /* post_load creates the guest from the stream */
    }
    if (pasid_guest_create(host, &cfg, &s->pasid_guest)) {
        error_setg(errp, "vIOMMU %s: cannot create the guest's PASID state", s->name);
        return false;
    }
    for (i = 0; i < s->ndevs; i++) {
        if (pasid_attach(host, s->pasid_guest, s->devs[i].host_rid, s->devs[i].kind)) {
            error_setg(errp, "vIOMMU %s: device %02x.%x cannot use PASIDs", s->name,
                       s->devs[i].guest_bdf >> 3, s->devs[i].guest_bdf & 7);
            return false;
        }
    }
    return true;
}

/*
 * The guest goes (it quit, or migrated away): clear the PASID-table entries the
 * VMM programmed for it, destroy it, then confirm the teardown of the PASIDs it
 * left, so that they can be handed out again.
 */
static bool vtd_pasid_unrealize(IntelIOMMUState *s)
{
    pasid_programmed_entry entries[16];
    pasid_draining left[64];
    size_t n = 0, i, mine = 0;

    if (pasid_guest_programmed_entries(s->pasid_host, s->pasid_guest, entries, 16, &n)) {
        return false;
    }
    for (i = 0; i < n; i++) {
        printf("  iommufd: detach PASID %u from %04x:%02x:%02x.%x\n", entries[i].pasid,
               entries[i].rid.segment, entries[i].rid.bdf >> 8,
               (entries[i].rid.bdf >> 3) & 0x1f, entries[i].rid.bdf & 7);
    }
    if (pasid_guest_destroy(s->pasid_host, s->pasid_guest) ||
        pasid_draining_list(s->pasid_host, left, 64, &n)) {
        return false;
    }
    /* The host is shared by every vIOMMU of this QEMU: confirm only our own. */
    for (i = 0; i < n; i++) {
        if (left[i].guest != s->pasid_guest) {
            continue;
        }
        if (left[i].hpasid) {
            kvm_set_pasid_translation(left[i].gpasid, 0);
        }
        left[mine++] = left[i];
    }
    return pasid_complete_teardown(s->pasid_host, left, mine) == PASID_RESULT_OK;
}

/* ---- migration: the optional "vtd/pasid" subsection ---- */

static bool vtd_pasid_needed(void *opaque)
{
    IntelIOMMUState *s = opaque;
    size_t n = 0;

    /* Only a guest that holds PASIDs sends the subsection (an old QEMU copes). */
    return pasid_guest_pasids(s->pasid_host, s->pasid_guest, NULL, 0, &n) ==
               PASID_RESULT_BUFFER_TOO_SMALL && n > 0;
}

static int vtd_pasid_pre_save(void *opaque)
{
    IntelIOMMUState *s = opaque;
    size_t len = 0;

    /* The guest is stopped: the size cannot change between the two calls. */
    if (pasid_export_guest(s->pasid_host, s->pasid_guest, NULL, 0, &len) !=
        PASID_RESULT_BUFFER_TOO_SMALL || len > VTD_PASID_BLOB_MAX) {
        return -EINVAL;
    }
    free(s->pasid_blob);
    s->pasid_blob = malloc(len);
    if (!s->pasid_blob ||
        pasid_export_guest(s->pasid_host, s->pasid_guest, s->pasid_blob, len, &len)) {
        return -ENOMEM;
    }
    s->pasid_blob_len = (uint32_t)len;
    memcpy(s->mig_devs, s->devs, sizeof(s->mig_devs));
    s->mig_ndevs = s->ndevs;
    return 0;
}

static int vtd_pasid_post_load(void *opaque, int version_id, Error **errp)
{
    IntelIOMMUState *s = opaque;
    pasid_rid_mapping map[VTD_PASID_MAX_DEVS];
    pasid_guest_pasid pasids[64];
    char msg[256];
    size_t n = 0, i, j;
    int rc;

    (void)version_id;
    /* Where each of the source's devices is on this host, by guest BDF. */
    for (i = 0; i < s->mig_ndevs && i < VTD_PASID_MAX_DEVS; i++) {
        map[i] = (pasid_rid_mapping) {
            .size = sizeof(map[i]),
            .source = s->mig_devs[i].host_rid,
            .kind = s->mig_devs[i].kind,
        };
        for (j = 0; j < s->ndevs; j++) {
            if (s->devs[j].guest_bdf == s->mig_devs[i].guest_bdf) {
                map[i].destination = s->devs[j].host_rid;
            }
        }
    }
    rc = pasid_import_guest(s->pasid_host, s->pasid_blob, s->pasid_blob_len, map, i,
                            &s->pasid_guest, NULL);
    if (rc) {
        pasid_last_error_message(msg, sizeof(msg), &n);
        error_setg(errp, "vIOMMU %s: guest PASID state refused: %s", s->name, msg);
        return -EINVAL;
    }

    /* Every gPASID kept; the shared ones got new host PASIDs: tell KVM. */
    if (pasid_guest_pasids(s->pasid_host, s->pasid_guest, pasids, 64, &n)) {
        error_setg(errp, "vIOMMU %s: more PASIDs than this example keeps", s->name);
        return -EINVAL;
    }
    for (i = 0; i < n; i++) {
        if (pasids[i].kind == PASID_KIND_SHARED) {
            kvm_set_pasid_translation(pasids[i].gpasid, pasids[i].hpasid);
        }
    }
    return 0;
}

/*
 * static const VMStateDescription vmstate_vtd_pasid = {
 *     .name = "vtd/pasid",
 *     .version_id = 1,
 *     .needed = vtd_pasid_needed,
 *     .pre_save = vtd_pasid_pre_save,
 *     .post_load_errp = vtd_pasid_post_load,
 *     .fields = (const VMStateField[]) {
 *         VMSTATE_UINT32(pasid_blob_len, IntelIOMMUState),
 *         VMSTATE_VBUFFER_ALLOC_UINT32(pasid_blob, IntelIOMMUState, 0, NULL,
 *                                      pasid_blob_len),
 *         ...the source's devices (guest BDF, host RID, kind)...
 *         VMSTATE_END_OF_LIST()
 *     }
 * };
 *
 * The stand-in below is what the migration core does with it.
 */
static int migrate(IntelIOMMUState *src, IntelIOMMUState *dst, Error **errp)
{
    int rc;

    if (!vtd_pasid_needed(src)) {
        return 0;
    }
    rc = vtd_pasid_pre_save(src);
    if (rc) {
        error_setg(errp, "vtd/pasid: pre_save failed: %s", strerror(-rc));
        return rc;
    }
    dst->pasid_blob_len = src->pasid_blob_len;
    dst->pasid_blob = malloc(src->pasid_blob_len);
    if (!dst->pasid_blob) {
        return -ENOMEM;
    }
    memcpy(dst->pasid_blob, src->pasid_blob, src->pasid_blob_len);
    memcpy(dst->mig_devs, src->mig_devs, sizeof(dst->mig_devs));
    dst->mig_ndevs = src->mig_ndevs;
    return vtd_pasid_post_load(dst, 1, errp);
}

/* ---- a guest driver, as Linux's vcmd_alloc_pasid() did it ---- */

static int guest_vcmd(IntelIOMMUState *s, uint8_t code, uint64_t operand,
                      uint32_t *pasid)
{
    pasid_vcmd_response rsp;
    uint64_t cmd = 0, vcrsp;

    if (!(vtd_mmio_read(s, DMAR_ECAP_REG) & PASID_ECAP_VCS) ||
        !(vtd_mmio_read(s, s->vcmd_off.vccap) & PASID_VCCAP_PAS) ||
        pasid_vcmd_encode(s->vcmd_rev, code, operand, &cmd)) {
        return -1;
    }
    vtd_mmio_write(s, s->vcmd_off.vcmd, cmd);
    do {
        vcrsp = vtd_mmio_read(s, s->vcmd_off.vcrsp);
    } while (vcrsp & PASID_VCRSP_IP);
    if (pasid_vcmd_decode_response(s->vcmd_rev, vcrsp, &rsp)) {
        return -1;
    }
    *pasid = rsp.pasid;
    return rsp.status;
}

static int run(uint32_t rev, pasid_host *src_host, pasid_host *dst_host)
{
    /* A VF at guest 03.0 and a DSA shared work queue at guest 04.0 ... */
    IntelIOMMUState src = {
        .name = "src", .ndevs = 2,
        .devs = {
            { 0x18, { 0, 0x0301 }, PASID_DEVICE_KIND_DEDICATED },
            { 0x20, { 0, 0x0a00 }, PASID_DEVICE_KIND_SHARED_WQ },
        },
    };
    /* ... and the same guest devices on other host functions after migration. */
    IntelIOMMUState dst = {
        .name = "dst", .ndevs = 2,
        .devs = {
            { 0x18, { 0, 0x0411 }, PASID_DEVICE_KIND_DEDICATED },
            { 0x20, { 0, 0x0a08 }, PASID_DEVICE_KIND_SHARED_WQ },
        },
    };
    uint32_t shared = 0, local = 0, extra = 0, junk = 0, on_wq = 0, on_vf = 0, after = 0;
    Error *err = NULL;
    int ok = 0;

    if (!vtd_realize(&src, src_host, rev, false, &err) ||
        !vtd_realize(&dst, dst_host, rev, true, &err)) {
        error_report_err(err);
        return 0;
    }
    printf("--- VT-d %s: VCMD at 0x%x, VCRSP 0x%x, VCCAP 0x%x\n",
           rev == PASID_VTD_REVISION_V33 ? "3.3" : "3.0", src.vcmd_off.vcmd,
           src.vcmd_off.vcrsp, src.vcmd_off.vccap);

    /* The guest asks for PASIDs, and frees one it never had (refused in VCRSP). */
    if (guest_vcmd(&src, PASID_VCMD_ALLOC, 0, &shared) != PASID_VCMD_SC_SUCCESS ||
        guest_vcmd(&src, PASID_VCMD_ALLOC, PASID_VCMD_ALLOC_OPERAND_LOCAL, &local) !=
            PASID_VCMD_SC_SUCCESS ||
        guest_vcmd(&src, PASID_VCMD_FREE, 999, &junk) !=
            (rev == PASID_VTD_REVISION_V33 ? PASID_VCMD_SC_NO_PASID_V3_3
                                           : PASID_VCMD_SC_NO_PASID_V3_0)) {
        goto out;
    }
    printf("guest: ALLOC -> gPASID %u (shared), ALLOC(local) -> %u, FREE 999 refused\n",
           shared, local);

    /* It programs PASID-table entries: the WQ gets the host PASID, the VF its own. */
    if (vtd_pasid_bind(&src, 1, shared, &on_wq) || vtd_pasid_bind(&src, 0, shared, &on_vf) ||
        vtd_pasid_bind(&src, 0, local, &junk) || on_vf != shared || on_wq == shared) {
        goto out;
    }
    printf("vIOMMU: gPASID %u -> %u on the shared WQ, %u on the VF\n", shared, on_wq, on_vf);

    /* FREE of a bound PASID is refused (unbind first); an unbound one goes. */
    if (guest_vcmd(&src, PASID_VCMD_FREE, shared, &junk) == PASID_VCMD_SC_SUCCESS ||
        guest_vcmd(&src, PASID_VCMD_ALLOC, 0, &extra) != PASID_VCMD_SC_SUCCESS ||
        guest_vcmd(&src, PASID_VCMD_FREE, extra, &junk) != PASID_VCMD_SC_SUCCESS) {
        goto out;
    }
    printf("guest: FREE %u refused while bound; ALLOC -> %u, FREE %u done\n", shared,
           extra, extra);

    /* A bind of a PASID the guest does not hold: refused, and logged. */
    if (vtd_pasid_bind(&src, 1, 4000, &junk) != PASID_RESULT_NOT_ALLOCATED) {
        goto out;
    }

    /* Live migration: the gPASIDs stay, the shared one gets a new host PASID. */
    if (migrate(&src, &dst, &err)) {
        error_report_err(err);
        goto out;
    }
    if (pasid_translate(dst_host, dst.pasid_guest, shared, &after) || after == on_wq ||
        !vtd_pasid_unrealize(&src)) {    /* the source lets go */
        goto out;
    }
    printf("migration: %u bytes; gPASID %u kept, host PASID %u -> %u\n",
           src.pasid_blob_len, shared, on_wq, after);

    /* A damaged stream is refused with a message, and changes nothing. */
    dst.pasid_blob[dst.pasid_blob_len / 2] ^= 1;
    if (vtd_pasid_post_load(&dst, 1, &err) != -EINVAL) {
        goto out;
    }
    error_report_err(err);
    ok = vtd_pasid_unrealize(&dst);     /* the guest quits */

out:
    free(src.pasid_blob);
    free(dst.pasid_blob);
    return ok;
}

/*
 * The process's host handle, made once at machine init. A shared work queue needs
 * host PASIDs unique on the whole machine, and each QEMU is its own process, so
 * with x-pasid-broker=PATH they come from a lease at the machine's broker: the
 * broker quarantines them if this QEMU dies, and pasid_host_free() ends the lease.
 * Without it, an in-process allocator: fine while one VMM owns the shared range.
 */
static pasid_host *vtd_pasid_host_new(const pasid_layout *layout, const char *broker,
                                      Error **errp)
{
    pasid_host *host = NULL;
    char msg[256];
    size_t n;
    int rc;

    if (broker) {
        rc = pasid_host_new_brokered(layout, PASID_PLATFORM_P2, broker, &host);
    } else {
        rc = pasid_host_new(layout, PASID_PLATFORM_P2, &host);
    }
    if (rc != PASID_RESULT_OK) {
        if (pasid_last_error_message(msg, sizeof(msg), &n) != PASID_RESULT_OK) {
            msg[0] = '\0';
        }
        error_setg(errp, "intel-iommu: no PASID host%s%s: %s", broker ? " at broker " : "",
                   broker ? broker : "", msg);
        return NULL;
    }
    return host;
}

int main(void)
{
    pasid_layout layout = {
        .size = sizeof(layout), .width = 20,
        .local_start = 1, .local_end = 4096, .shared_start = 4096, .shared_end = 1u << 19,
    };
    /* The log hook is process-wide: one name for every vIOMMU of this QEMU. */
    IntelIOMMUState tracer = { .name = "intel-iommu" };
    pasid_host *src = NULL, *dst = NULL;
    pasid_guest_config other = {
        .size = sizeof(other), .platform = PASID_PLATFORM_P2, .shared_quota = 4,
    };
    const char *broker = getenv("PASID_BROKER_SOCKET");  /* x-pasid-broker */
    pasid_guest_id busy = 0;
    Error *err = NULL;
    uint32_t x = 0;
    int ok;

    if (broker && !*broker) {
        broker = NULL;
    }
    pasid_set_log_callback(vtd_pasid_log, &tracer);
    /*
     * Two hosts, standing for the source and destination QEMU (with a broker, two
     * leases at one broker); the destination already runs a guest that holds
     * host PASIDs.
     */
    src = vtd_pasid_host_new(&layout, broker, &err);
    dst = src ? vtd_pasid_host_new(&layout, broker, &err) : NULL;
    if (!dst) {
        error_report_err(err);
        pasid_host_free(src);
        pasid_set_log_callback(NULL, NULL);
        return 1;
    }
    printf("host PASIDs: %s%s\n", broker ? "leased from the broker at " : "in-process",
           broker ? broker : "");
    if (pasid_guest_create(dst, &other, &busy) ||
        pasid_alloc(dst, busy, PASID_KIND_SHARED, &x, NULL) ||
        pasid_alloc(dst, busy, PASID_KIND_SHARED, &x, NULL)) {
        return 1;
    }
    ok = run(PASID_VTD_REVISION_V33, src, dst) && run(PASID_VTD_REVISION_V30, src, dst);
    pasid_host_free(src);
    pasid_host_free(dst);
    pasid_set_log_callback(NULL, NULL);
    printf("viommu example: %s\n", ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
}
