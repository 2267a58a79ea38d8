//! What KVM and the migration stream need: the translation change stream, single-entry
//! page updates with real single stores, export and import options (format version,
//! epoch, quota, change log), the blob's identity, and the guest-visible contract.
//!
//! Pages handed in here may be memory the library must not read (a fresh page, not yet
//! initialised): `pasid_apply_translation_change` only writes, through raw pointers,
//! with one volatile store per entry, and never makes a Rust reference to them.

use core::ffi::c_int;
use core::sync::atomic::{fence, Ordering};
use std::vec::Vec;

use pasid_core::contract::{self, GuestContract};
use pasid_core::hwtable::{self, Store, TableEntry};
use pasid_core::migrate::{ExportOptions, FormatVersion, ImportOptions, QuotaRule};
use pasid_core::{GuestId, TranslationChange};

use crate::boundary::{
    answer, call, call_or, input, input_slice, input_struct, input_struct_slice, list, list_into,
    reply, report, with_host, NewReport, Out, OutSized,
};
use crate::error::FfiError;
use crate::migrate::read_rid_map;
use crate::types::*;
use crate::{pasid_host, pasid_import_report, pasid_rid_mapping};

/// One change to a guest's translation table (`pasid_drain_translation_changes`):
/// the entry of `gpasid` now maps to `hpasid` when `valid`, or is invalid.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct pasid_translation_change {
    /// The guest PASID whose entry changes.
    pub gpasid: u32,
    /// Its new host PASID (meaningful when `valid`).
    pub hpasid: u32,
    /// Whether the entry is now valid.
    pub valid: bool,
}

impl pasid_translation_change {
    fn from_core(c: TranslationChange) -> Self {
        pasid_translation_change {
            gpasid: c.gpasid,
            hpasid: c.hpasid.unwrap_or(0),
            valid: c.hpasid.is_some(),
        }
    }
    fn to_core(self) -> TranslationChange {
        TranslationChange {
            gpasid: self.gpasid,
            hpasid: self.valid.then_some(self.hpasid),
        }
    }
}

/// How `pasid_export_guest_with` writes a blob.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct pasid_export_options {
    /// `sizeof(pasid_export_options)` (the struct-size rule of the header).
    pub size: u32,
    /// Format version to write, major: `PASID_MIGRATION_FORMAT_MAJOR` (2) by default,
    /// 1 for a destination that reads only 1.0.
    pub format_major: u16,
    /// Format version to write, minor (0).
    pub format_minor: u16,
    /// The migration attempt: a new number per attempt, so a retry is not a replay.
    pub epoch: u64,
}

/// `pasid_import_options.quota_rule`: the blob's quota as it says.
pub const PASID_QUOTA_REQUEST: u32 = 0;
/// `pasid_import_options.quota_rule`: the blob's quota, capped at `quota`.
pub const PASID_QUOTA_CAP: u32 = 1;
/// `pasid_import_options.quota_rule`: `quota`, whatever the blob says.
pub const PASID_QUOTA_SET: u32 = 2;

/// How `pasid_import_guest_with` imports a blob.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct pasid_import_options {
    /// `sizeof(pasid_import_options)` (the struct-size rule of the header).
    pub size: u32,
    /// `PASID_QUOTA_REQUEST`, `PASID_QUOTA_CAP` or `PASID_QUOTA_SET`.
    pub quota_rule: u32,
    /// The cap or the quota for `PASID_QUOTA_CAP` / `PASID_QUOTA_SET`.
    pub quota: u32,
    /// Non-zero: start the guest's translation-change log with this capacity (its first
    /// changes are the whole new table).
    pub change_log_capacity: u32,
}

/// A migration blob's identity (`pasid_import_report_identity`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct pasid_migration_identity {
    /// `sizeof(pasid_migration_identity)`, set by the caller (the struct-size rule of
    /// the header): a later format's identity may carry more.
    pub size: u32,
    /// The source host's id (`pasid_host_set_id`).
    pub source_host: u64,
    /// The guest's id on the source.
    pub source_guest: pasid_guest_id,
    /// The migration attempt (`pasid_export_options.epoch`).
    pub epoch: u64,
}

/// What a guest's vIOMMU advertised.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct pasid_guest_contract {
    /// `sizeof(pasid_guest_contract)` (the struct-size rule of the header).
    pub size: u32,
    /// The PASID width (ECAP.PSS + 1), 1..=20.
    pub width: u8,
    /// Start of the range the guest may use.
    pub local_start: u32,
    /// End (exclusive) of that range.
    pub local_end: u32,
    /// `PASID_CAP_*` bits.
    pub capabilities: u32,
}

crate::types::sized_structs!(
    pasid_export_options pasid_import_options pasid_guest_contract pasid_migration_identity
);

/// Capability bit: virtual commands (VT-d ECAP.VCS).
pub const PASID_CAP_VCS: u32 = 1;
/// Capability bit: PASID allocation (VT-d VCCAP.PAS).
pub const PASID_CAP_PASID_ALLOC: u32 = 2;

const _: () = {
    assert!(PASID_CAP_VCS == contract::CAP_VCS);
    assert!(PASID_CAP_PASID_ALLOC == contract::CAP_PASID_ALLOC);
};

fn contract_from_c(c: &pasid_guest_contract) -> GuestContract {
    GuestContract {
        width: c.width,
        local_start: c.local_start,
        local_end: c.local_end,
        capabilities: c.capabilities,
    }
}

fn contract_to_c(c: &GuestContract) -> pasid_guest_contract {
    pasid_guest_contract {
        size: 0,
        width: c.width,
        local_start: c.local_start,
        local_end: c.local_end,
        capabilities: c.capabilities,
    }
}

// ---- the change stream ----

/// Turns on a guest's translation-change log with room for `capacity` pending changes
/// (reserved now) and seeds it with the guest's whole table, so a consumer starting
/// from an empty table (a fresh KVM table) converges. Restarts a log that was on. While
/// on, a shared `pasid_alloc` logs (gPASID, hPASID) and a `pasid_free` of a shared
/// gPASID logs (gPASID, invalid); a call whose change does not fit fails with
/// `PASID_RESULT_CHANGE_LOG_FULL` and changes nothing. Thread-safe.
#[must_use]
#[no_mangle]
pub extern "C" fn pasid_enable_translation_changes(
    host: *mut pasid_host,
    guest: pasid_guest_id,
    capacity: u32,
) -> c_int {
    call(|| {
        with_host(host, |h| {
            Ok(h.enable_translation_changes(GuestId(guest), capacity)?)
        })
    })
}

/// Turns a guest's change log off; pending changes are dropped. Thread-safe.
#[must_use]
#[no_mangle]
pub extern "C" fn pasid_disable_translation_changes(
    host: *mut pasid_host,
    guest: pasid_guest_id,
) -> c_int {
    call(|| with_host(host, |h| Ok(h.disable_translation_changes(GuestId(guest))?)))
}

/// Whether a guest's change log is on (`*out_enabled`) and how many changes wait
/// (`*out_n`, 0 when off). Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_pending_translation_changes(
    host: *const pasid_host,
    guest: pasid_guest_id,
    out_enabled: *mut bool,
    out_n: *mut usize,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        let outs = (Out(out_enabled, "out_enabled"), Out(out_n, "out_n"));
        answer(host, outs, |h| {
            let pending = h.pending_translation_changes(GuestId(guest))?;
            Ok((pending.is_some(), pending.unwrap_or(0)))
        })
    })
}

/// Moves the oldest pending changes of a guest into `buf` (`len` entries; NULL when 0),
/// as many as fit, in apply order; `*out_n` says how many. The rest stay pending: call
/// again until `*out_n < len`. Apply each in order (to KVM one pair per call, or to
/// pages with `pasid_apply_translation_change`), and apply a gPASID's invalid entry
/// before confirming its teardown. `PASID_RESULT_NOT_SUPPORTED` when the log is off.
/// Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_drain_translation_changes(
    host: *mut pasid_host,
    guest: pasid_guest_id,
    buf: *mut pasid_translation_change,
    len: usize,
    out_n: *mut usize,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        list_into(buf, len, out_n, |out| {
            // Room for what fits, taken before the host's lock.
            let mut tmp = Vec::new();
            tmp.try_reserve_exact(out.capacity())
                .map_err(|_| pasid_core::Error::OutOfMemory)?;
            let none = TranslationChange {
                gpasid: 0,
                hpasid: None,
            };
            tmp.resize(out.capacity(), none);
            let n = with_host(host, |h| {
                Ok(h.drain_translation_changes_into(GuestId(guest), &mut tmp)?)
            })?;
            out.fill_some(
                tmp[..n]
                    .iter()
                    .map(|&c| pasid_translation_change::from_core(c)),
            )
        })
    })
}

/// A guest's whole current table as changes (valid entries, by gPASID): what a
/// consumer starting from an empty table applies, and, before `pasid_guest_destroy`,
/// the entries to invalidate. `*out_n` is the count; written when `len` is enough,
/// else `PASID_RESULT_BUFFER_TOO_SMALL` (NULL `buf` with `len` 0: a size query).
/// Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_translation_entries(
    host: *const pasid_host,
    guest: pasid_guest_id,
    buf: *mut pasid_translation_change,
    len: usize,
    out_n: *mut usize,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        list(host, buf, len, out_n, |h, out| {
            let entries = h.translation_entries(GuestId(guest))?;
            out.fill_counted(entries.map(pasid_translation_change::from_core))
        })
    })
}

// ---- single-entry page updates ----

/// Applies one change to pages a vCPU may be walking, with one aligned volatile store
/// per entry (32-bit table entries, a 64-bit directory entry), in the order that never
/// shows a valid entry naming a host PASID the guest does not hold: a valid entry that
/// names another host PASID is invalidated first; a new table gets its entry before the
/// directory entry that links it. Nothing is read from the pages, so an unlinked page
/// may be uninitialised memory, except that a page being linked must already be all
/// zero (invalid) but for this entry.
///
/// - `previous`: the raw entry the VMM last stored there (0 when never, or when the
///   table is being linked);
/// - `table_page`: the table's 4096-byte page (gPASID >> 10), 4-byte aligned;
/// - `directory_page`: NULL when the table is linked already; otherwise the 4096-byte,
///   8-byte aligned page of the directory `pasid_directory_of_table` names, whose entry
///   is then pointed at `table_phys` (4 KiB aligned), last.
///
/// Everything is checked before the first store. Then the VMM flushes as
/// `docs/kvm.md` says (kick the guest's vCPUs after an invalidation, before
/// `pasid_complete_teardown`). Thread-safe (touches only the given pages; the caller
/// serialises updates of one page).
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_apply_translation_change(
    change: *const pasid_translation_change,
    previous: u32,
    table_page: *mut u8,
    directory_page: *mut u8,
    table_phys: u64,
) -> c_int {
    call(|| {
        // SAFETY: the caller passes NULL or a valid pointer.
        let change = unsafe { input(change, "change") }?.to_core();
        let link = (!directory_page.is_null()).then_some(table_phys);
        let update = hwtable::plan_update(change, TableEntry(previous), link)?;
        let table = page_ptr(table_page, 4, "table_page")?;
        let directory = if update.links_table() {
            Some(page_ptr(directory_page, 8, "directory_page")?)
        } else {
            None
        };
        for store in update.stores() {
            match store {
                Store::Table { offset, entry, .. } => {
                    // SAFETY: `table` is a non-NULL, 4-byte aligned page of 4096
                    // writable bytes (the caller's promise, alignment checked);
                    // `offset` is a multiple of 4 below 4096, so the target is one
                    // aligned u32 inside it. A raw volatile store: no reference to
                    // possibly uninitialised memory, and one 32-bit store.
                    unsafe {
                        table
                            .add(offset)
                            .cast::<u32>()
                            .write_volatile(entry.0.to_le())
                    };
                }
                Store::Directory { offset, entry, .. } => {
                    let Some(dir) = directory else { continue };
                    // SAFETY: as above, for an 8-byte aligned page and an offset that is
                    // a multiple of 8 below 4096: one aligned u64 store.
                    unsafe {
                        dir.add(offset)
                            .cast::<u64>()
                            .write_volatile(entry.0.to_le())
                    };
                }
            }
            // Keeps the stores of one update in order for the compiler and the CPU
            // (free on x86, whose stores are not reordered with each other).
            fence(Ordering::Release);
        }
        Ok(())
    })
}

/// A page pointer checked for NULL and alignment, never dereferenced here.
fn page_ptr(p: *mut u8, align: usize, name: &'static str) -> Result<*mut u8, FfiError> {
    if p.is_null() {
        return Err(FfiError::Null(name));
    }
    if (p as usize) % align != 0 {
        return Err(FfiError::InvalidArgument(std::format!(
            "{name} is not {align}-byte aligned"
        )));
    }
    Ok(p)
}

// ---- migration: options, identity ----

/// Names this host in the migration blobs it writes (part of each blob's identity).
/// Give every host of a fleet its own id. Thread-safe.
#[must_use]
#[no_mangle]
pub extern "C" fn pasid_host_set_id(host: *mut pasid_host, host_id: u64) -> c_int {
    call(|| {
        with_host(host, |h| {
            h.set_host_id(host_id);
            Ok(())
        })
    })
}

/// `pasid_export_guest` with a format version (write 1.0 to migrate back to an older
/// library) and a migration epoch (a new one per attempt). `options` NULL: the
/// defaults (current version, epoch 0). Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_export_guest_with(
    host: *const pasid_host,
    guest: pasid_guest_id,
    options: *const pasid_export_options,
    buf: *mut u8,
    len: usize,
    out_n: *mut usize,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        let opts = if options.is_null() {
            ExportOptions::default()
        } else {
            let o = input_struct(options, "options")?;
            ExportOptions {
                version: FormatVersion {
                    major: o.format_major,
                    minor: o.format_minor,
                },
                epoch: o.epoch,
            }
        };
        list(host, buf, len, out_n, |h, out| {
            out.fill(h.export_guest_with(GuestId(guest), &opts)?.into_iter())
        })
    })
}

/// `pasid_import_guest` with the destination's choices: the guest's quota (the blob's
/// quota is a request: cap it or set it) and its change log. `options` NULL: the
/// defaults (the blob's quota, no log). A blob whose identity this host imported
/// before is refused (`PASID_RESULT_REPLAYED`), as is a guest whose advertised
/// contract this host cannot honour (`PASID_RESULT_CONTRACT_NOT_HONOURED`). On error
/// this host is unchanged. Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_import_guest_with(
    host: *mut pasid_host,
    blob: *const u8,
    blob_len: usize,
    rid_map: *const pasid_rid_mapping,
    rid_map_len: usize,
    options: *const pasid_import_options,
    out_guest: *mut pasid_guest_id,
    out_report: *mut *mut pasid_import_report,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        let blob = input_slice(blob, blob_len, "blob")?;
        let entries = input_struct_slice(rid_map, rid_map_len, "rid_map")?;
        let opts = if options.is_null() {
            ImportOptions::default()
        } else {
            let o = input_struct(options, "options")?;
            ImportOptions {
                quota: match o.quota_rule {
                    PASID_QUOTA_REQUEST => QuotaRule::Request,
                    PASID_QUOTA_CAP => QuotaRule::Cap(o.quota),
                    PASID_QUOTA_SET => QuotaRule::Set(o.quota),
                    other => {
                        return Err(FfiError::InvalidArgument(std::format!(
                            "options.quota_rule {other} is not a PASID_QUOTA_* value"
                        )))
                    }
                },
                change_log: (o.change_log_capacity != 0).then_some(o.change_log_capacity),
            }
        };
        reply((Out(out_guest, "out_guest"), NewReport(out_report)), || {
            let map = read_rid_map(&entries)?;
            with_host(host, |h| {
                let (id, report) = h.import_guest_with(blob, &map, &opts)?;
                Ok((id.0, report))
            })
        })
    })
}

/// The identity of the blob an import report is for, and the guest's quota there:
/// `*out_present` is false for a 1.0 blob (which has none; `*out_identity` is then
/// zeroed). Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_import_report_identity(
    report_handle: *const pasid_import_report,
    out_identity: *mut pasid_migration_identity,
    out_present: *mut bool,
    out_quota: *mut u32,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        let outs = (
            OutSized(out_identity, "out_identity"),
            Out(out_present, "out_present"),
            Out(out_quota, "out_quota"),
        );
        reply(outs, || {
            let r = &report(report_handle, "report")?.report;
            let identity = r.identity.map(|i| pasid_migration_identity {
                size: size_of::<pasid_migration_identity>(),
                source_host: i.source_host,
                source_guest: i.source_guest.0,
                epoch: i.epoch,
            });
            let absent = pasid_migration_identity {
                size: size_of::<pasid_migration_identity>(),
                ..Default::default()
            };
            Ok((identity.unwrap_or(absent), identity.is_some(), r.quota))
        })
    })
}

// ---- the guest-visible contract ----

/// The VT-d ECAP.PSS value that advertises a PASID width: `width - 1` (0 for 0).
/// Thread-safe.
#[no_mangle]
pub extern "C" fn pasid_ecap_pss(width: u8) -> u8 {
    call_or(0, || contract::ecap_pss(width))
}

/// The widest PASID width a p1 guest can be told on `layout` without being promised a
/// PASID outside its local range (the largest w with 1..2^w inside it). A layout whose
/// local range does not start at 1 has none: `PASID_RESULT_INCOMPATIBLE_LAYOUT`.
/// Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_p1_exact_width(
    layout: *const pasid_layout,
    out_width: *mut u8,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        let layout = layout_from_c(&input_struct(layout, "layout")?)?;
        reply(Out(out_width, "out_width"), || {
            Ok(
                contract::p1_exact_width(&layout).ok_or(pasid_core::Error::IncompatibleLayout {
                    reason: "the local range does not start at 1: no width is exact for a p1 guest",
                })?,
            )
        })
    })
}

/// Creates a guest whose vIOMMU advertises `contract` (for p1 exactly 1..2^width); the
/// contract migrates with it and a destination that cannot honour it refuses the
/// import. Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_guest_create_advertising(
    host: *mut pasid_host,
    config: *const pasid_guest_config,
    contract: *const pasid_guest_contract,
    out_guest: *mut pasid_guest_id,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        let config = config_from_c(&input_struct(config, "config")?)?;
        let contract = contract_from_c(&input_struct(contract, "contract")?);
        answer(host, Out(out_guest, "out_guest"), |h| {
            Ok(h.create_guest_advertising(config, contract)?.0)
        })
    })
}

/// What a guest's vIOMMU advertised. Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_guest_contract_get(
    host: *const pasid_host,
    guest: pasid_guest_id,
    out_contract: *mut pasid_guest_contract,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        answer(host, OutSized(out_contract, "out_contract"), |h| {
            Ok(contract_to_c(&h.guest_contract(GuestId(guest))?))
        })
    })
}
