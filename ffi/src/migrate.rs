//! Live migration: export a guest as bytes, inspect and check a blob, import it with a
//! RID map, and read the import's report.

use core::ffi::c_int;
use std::vec::Vec;

use pasid_core::migrate::{inspect, ImportReport, RidMapping};
use pasid_core::{GuestId, Rid};

use crate::boundary::{
    call, free_report, input_slice, input_struct_slice, list, list_into, reply, report, with_host,
    NewReport, Out, OutSized,
};
use crate::error::FfiError;
use crate::types::*;
use crate::{pasid_host, pasid_import_report};

/// What a report handle holds.
pub(crate) struct ReportData {
    pub(crate) report: ImportReport,
}

/// One entry of an import's RID map: where the device at `source` on the source host
/// is attached on this host, and what kind of device that is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct pasid_rid_mapping {
    /// `sizeof` this struct, set by the caller (see "Struct sizes" in the header's
    /// introduction); the library sets it in structs it fills.
    pub size: u32,
    /// The device's RID on the source host.
    pub source: pasid_rid,
    /// Its RID on this (destination) host.
    pub destination: pasid_rid,
    /// What the destination device is, as the VMM configured it: a
    /// `PASID_DEVICE_KIND_*` value, checked against the guest's device (a mismatch is
    /// refused with `PASID_RESULT_DEVICE_KIND_MISMATCH`), or `PASID_DEVICE_KIND_SAME_AS_SOURCE`
    /// (0, so a zero-initialized entry) when the caller does not say: not checked.
    /// Any other value: `PASID_RESULT_INVALID_ARGUMENT`.
    pub kind: u32,
}

/// A summary of an import (`pasid_import_report_get_info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct pasid_import_info {
    /// `sizeof` this struct, set by the caller (see "Struct sizes" in the header's
    /// introduction); the library sets it in structs it fills.
    pub size: u32,
    /// The guest's platform (`PASID_PLATFORM_*`), as it was on the source.
    pub guest_platform: u32,
    /// True when a p1 guest landed on a p2 host: it stays p1 (its vIOMMU offers no
    /// PASID allocation), so it cannot use shared work queues there.
    pub p1_guest_on_p2_host: bool,
    /// Entries of `pasid_import_report_shared`.
    pub shared: usize,
    /// Entries of `pasid_import_report_devices`.
    pub devices: usize,
}

/// A shared gPASID's host PASIDs before and after migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct pasid_shared_remap {
    /// The guest PASID; unchanged by migration.
    pub gpasid: u32,
    /// Whether the blob carried the source's host PASID (diagnostic only).
    pub has_source_hpasid: bool,
    /// The host PASID on the source, if `has_source_hpasid`; else 0.
    pub source_hpasid: u32,
    /// The new host PASID on this host (what `pasid_translate` now returns).
    pub destination_hpasid: u32,
}

/// A device's RID before and after migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct pasid_rid_remap {
    /// The RID on the source.
    pub source: pasid_rid,
    /// The RID on this host.
    pub destination: pasid_rid,
    /// The device's kind (`PASID_DEVICE_KIND_*`), the same on both.
    pub kind: u32,
}

/// What a migration blob holds (`pasid_inspect_blob`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct pasid_blob_info {
    /// `sizeof` this struct, set by the caller (see "Struct sizes" in the header's
    /// introduction); the library sets it in structs it fills.
    pub size: u32,
    /// The blob's format version, major. Readers refuse other majors.
    pub format_major: u16,
    /// The blob's format version, minor (minor versions only append fields).
    pub format_minor: u16,
    /// The source host's layout.
    pub source_layout: pasid_layout,
    /// The source host's platform (`PASID_PLATFORM_*`).
    pub source_platform: u32,
    /// The guest's configuration.
    pub config: pasid_guest_config,
    /// gPASIDs (p2) in the blob: entries of `pasid_inspect_blob_pasids`.
    pub pasids: usize,
    /// Devices in the blob.
    pub devices: usize,
}

sized_structs!(pasid_rid_mapping pasid_import_info pasid_blob_info);

/// The migration format's major version this library writes by default (it reads 1.0 too).
pub const PASID_MIGRATION_FORMAT_MAJOR: u16 = 2;
/// The migration format's minor version this library writes.
pub const PASID_MIGRATION_FORMAT_MINOR: u16 = 0;

const _: () = {
    assert!(PASID_MIGRATION_FORMAT_MAJOR == pasid_core::migrate::FORMAT_MAJOR);
    assert!(PASID_MIGRATION_FORMAT_MINOR == pasid_core::migrate::FORMAT_MINOR);
};

/// The caller's RID map, with every kind checked before anything else happens.
pub(crate) fn read_rid_map(entries: &[pasid_rid_mapping]) -> Result<Vec<RidMapping>, FfiError> {
    let mut map = Vec::new();
    map.try_reserve_exact(entries.len())
        .map_err(|_| pasid_core::Error::OutOfMemory)?;
    for e in entries {
        map.push(RidMapping {
            source: e.source.into(),
            destination: e.destination.into(),
            kind: mapping_kind_from_c(e.kind)?,
        });
    }
    Ok(map)
}

/// Exports a guest's PASID state as a migration blob (versioned, checksummed; put it
/// in the migration stream). The guest stays as it is: after the destination imported
/// it, release it with `pasid_guest_destroy`.
///
/// `*out_n` receives the blob's size. If `len` is enough the blob is written to `buf`;
/// else nothing is written and `PASID_RESULT_BUFFER_TOO_SMALL` is returned (`buf` may
/// be NULL when `len` is 0: a size query). The size can change between two calls if
/// the guest changes in between: retry with the new size. Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_export_guest(
    host: *const pasid_host,
    guest: pasid_guest_id,
    buf: *mut u8,
    len: usize,
    out_n: *mut usize,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        list(host, buf, len, out_n, |h, out| {
            out.fill(h.export_guest(GuestId(guest))?.into_iter())
        })
    })
}

/// Decodes and checks a blob without a host: its version, source layout and platform,
/// the guest's configuration and counts. Fails exactly when the blob itself is bad
/// (`PASID_RESULT_MALFORMED_BLOB`, `PASID_RESULT_CHECKSUM_MISMATCH`,
/// `PASID_RESULT_UNSUPPORTED_VERSION`, ...). Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_inspect_blob(
    blob: *const u8,
    blob_len: usize,
    out_info: *mut pasid_blob_info,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        let blob = input_slice(blob, blob_len, "blob")?;
        reply(OutSized(out_info, "out_info"), || {
            let g = inspect(blob)?;
            Ok(pasid_blob_info {
                size: 0,
                format_major: g.format_major,
                format_minor: g.format_minor,
                source_layout: layout_to_c(&g.source_layout),
                source_platform: g.source_platform.to_c(),
                config: config_to_c(&g.config),
                pasids: g.pasids.len(),
                devices: g.devices.len(),
            })
        })
    })
}

/// Lists the gPASIDs in a blob, ascending, with kind and (in `hpasid`) the source's
/// host PASID of a shared one if it travelled (else 0). Buffer rule as
/// `pasid_host_guests`. Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_inspect_blob_pasids(
    blob: *const u8,
    blob_len: usize,
    buf: *mut pasid_guest_pasid,
    len: usize,
    out_n: *mut usize,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        let blob = input_slice(blob, blob_len, "blob")?;
        list_into(buf, len, out_n, |out| {
            out.fill(inspect(blob)?.pasids.iter().map(|p| pasid_guest_pasid {
                gpasid: p.gpasid,
                kind: p.kind.to_c(),
                hpasid: p.source_hpasid.unwrap_or(0),
            }))
        })
    })
}

/// Lists the devices in a blob by source RID, ascending, each with its kind and the
/// number of PASIDs bound (p2) or recorded (p1) on it. Buffer rule as
/// `pasid_host_guests`. Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_inspect_blob_devices(
    blob: *const u8,
    blob_len: usize,
    buf: *mut pasid_device_info,
    len: usize,
    out_n: *mut usize,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        let blob = input_slice(blob, blob_len, "blob")?;
        list_into(buf, len, out_n, |out| {
            out.fill(inspect(blob)?.devices.iter().map(|d| pasid_device_info {
                rid: d.rid.into(),
                kind: d.kind.to_c(),
                programmed: d.pasids.len() as u32,
            }))
        })
    })
}

/// Lists the PASIDs bound (p2) or recorded (p1) on the device at source RID `rid` in a
/// blob, ascending (`PASID_RESULT_NO_SUCH_DEVICE` if the blob has no such device).
/// Buffer rule as `pasid_host_guests`. Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_inspect_blob_device_pasids(
    blob: *const u8,
    blob_len: usize,
    rid: pasid_rid,
    buf: *mut u32,
    len: usize,
    out_n: *mut usize,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        let blob = input_slice(blob, blob_len, "blob")?;
        list_into(buf, len, out_n, |out| {
            let g = inspect(blob)?;
            let rid = Rid::from(rid);
            let device = g
                .devices
                .iter()
                .find(|d| d.rid == rid)
                .ok_or(pasid_core::Error::NoSuchDevice { rid })?;
            out.fill(device.pasids.iter().copied())
        })
    })
}

/// Runs every check of `pasid_import_guest` without changing anything: OK means the
/// import would succeed now, short of memory or a free guest slot. `rid_map` as for
/// `pasid_import_guest`. Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_check_import(
    host: *const pasid_host,
    blob: *const u8,
    blob_len: usize,
    rid_map: *const pasid_rid_mapping,
    rid_map_len: usize,
) -> c_int {
    call(|| {
        // SAFETY: the caller passes NULL or valid pointers for the given lengths.
        let blob = unsafe { input_slice(blob, blob_len, "blob") }?;
        let entries = unsafe { input_struct_slice(rid_map, rid_map_len, "rid_map") }?;
        let map = read_rid_map(&entries)?;
        with_host(host, |h| Ok(h.check_import_mapped(blob, &map)?))
    })
}

/// Imports a guest exported by `pasid_export_guest` on another host (or this one).
///
/// `rid_map` (`rid_map_len` entries; NULL when 0) says where each of the guest's
/// devices is attached here and, unless an entry's `kind` is `PASID_DEVICE_KIND_SAME_AS_SOURCE`,
/// what kind of device that is; a device missing from it is refused
/// (`PASID_RESULT_RID_NOT_MAPPED`), one mapped to a device of another kind too
/// (`PASID_RESULT_DEVICE_KIND_MISMATCH`); entries for RIDs the guest lacks are ignored
/// (their kinds must still be valid values).
///
/// Every gPASID keeps its number and kind, bindings (p2) and recorded PASIDs (p1) are
/// restored, and each shared gPASID gets a new host PASID from this host's shared
/// range. All-or-nothing: on any error this host is unchanged.
///
/// On success `*out_guest` is the new guest's id and, if `out_report` is not NULL,
/// `*out_report` a new report handle (release it with `pasid_import_report_free`).
/// Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_import_guest(
    host: *mut pasid_host,
    blob: *const u8,
    blob_len: usize,
    rid_map: *const pasid_rid_mapping,
    rid_map_len: usize,
    out_guest: *mut pasid_guest_id,
    out_report: *mut *mut pasid_import_report,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        let blob = input_slice(blob, blob_len, "blob")?;
        let entries = input_struct_slice(rid_map, rid_map_len, "rid_map")?;
        // Registering the report cannot fail (it only takes memory), so a host that was
        // changed always reports its new guest.
        reply((Out(out_guest, "out_guest"), NewReport(out_report)), || {
            let map = read_rid_map(&entries)?;
            let (id, report) = with_host(host, |h| Ok(h.import_guest_mapped(blob, &map)?))?;
            // Logged outside the host's lock, so the callback may call in on this host.
            let (shared, devices) = (report.shared.len(), report.devices.len());
            crate::boundary::event(|| {
                std::format!(
                    "guest {} imported: {shared} shared PASIDs on new host PASIDs, {devices} devices",
                    id.0
                )
            });
            Ok((id.0, report))
        })
    })
}

/// Frees an import report. NULL, and a report already freed, are no-ops.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn pasid_import_report_free(report: *mut pasid_import_report) {
    crate::boundary::call_or((), || {
        free_report(report);
    })
}

/// Summarizes an import report. Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_import_report_get_info(
    report_handle: *const pasid_import_report,
    out_info: *mut pasid_import_info,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        reply(OutSized(out_info, "out_info"), || {
            let r = &report(report_handle, "report")?.report;
            Ok(pasid_import_info {
                size: 0,
                guest_platform: r.guest_platform.to_c(),
                p1_guest_on_p2_host: r.p1_guest_on_p2_host,
                shared: r.shared.len(),
                devices: r.devices.len(),
            })
        })
    })
}

/// Lists every shared gPASID of the imported guest with its source and new host
/// PASID, ascending by gPASID. Buffer rule as `pasid_host_guests`. Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_import_report_shared(
    report_handle: *const pasid_import_report,
    buf: *mut pasid_shared_remap,
    len: usize,
    out_n: *mut usize,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        list_into(buf, len, out_n, |out| {
            let data = report(report_handle, "report")?;
            out.fill(data.report.shared.iter().map(|s| pasid_shared_remap {
                gpasid: s.gpasid,
                has_source_hpasid: s.source_hpasid.is_some(),
                source_hpasid: s.source_hpasid.unwrap_or(0),
                destination_hpasid: s.destination_hpasid,
            }))
        })
    })
}

/// Lists every device of the imported guest with its source and destination RID,
/// ascending by source RID. Buffer rule as `pasid_host_guests`. Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_import_report_devices(
    report_handle: *const pasid_import_report,
    buf: *mut pasid_rid_remap,
    len: usize,
    out_n: *mut usize,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        list_into(buf, len, out_n, |out| {
            let data = report(report_handle, "report")?;
            out.fill(data.report.devices.iter().map(|d| pasid_rid_remap {
                source: d.source.into(),
                destination: d.destination.into(),
                kind: d.kind.to_c(),
            }))
        })
    })
}
