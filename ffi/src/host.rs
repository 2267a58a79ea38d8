//! Hosts, guests, devices, p2 allocation and binding, p1 recording, and queries.

use core::ffi::c_int;

use pasid_core::{DeviceKind, GuestId, PasidKind, Platform, Rid};

use crate::boundary::{
    answer, call, free_host, input_struct, list, register_host, reply, with_host, HostCell, Out,
    OutOpt, OutSized,
};
use crate::error::FfiError;
use crate::pasid_host;
use crate::types::*;

/// Checks a layout without making a host.
///
/// Returns `PASID_RESULT_OK` for a valid layout, else the core's layout error
/// (`PASID_RESULT_INVALID_WIDTH`, `PASID_RESULT_INCLUDES_PASID_ZERO`,
/// `PASID_RESULT_EMPTY_RANGE`, `PASID_RESULT_RANGE_BEYOND_WIDTH`,
/// `PASID_RESULT_RANGES_OVERLAP`). Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_layout_check(layout: *const pasid_layout) -> c_int {
    call(|| {
        // SAFETY: the caller passes NULL or a valid pasid_layout.
        let layout = unsafe { input_struct(layout, "layout") }?;
        layout_from_c(&layout).map(|_| ())
    })
}

/// Creates a host with an empty shared range allocator and no guests.
///
/// `platform` is `PASID_PLATFORM_P1` (no shared work queues: only p1 guests) or
/// `PASID_PLATFORM_P2`. On success `*out_host` is a new handle, to be released with
/// `pasid_host_free`; on error it is left unchanged. Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_host_new(
    layout: *const pasid_layout,
    platform: u32,
    out_host: *mut *mut pasid_host,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        let layout = input_struct(layout, "layout")?;
        reply(Out(out_host, "out_host"), || {
            let layout = layout_from_c(&layout)?;
            let host = crate::source::in_process_host(layout, Platform::from_c(platform)?)?;
            register_host(HostCell::new(host))
        })
    })
}

/// Frees a host and everything it holds. NULL, and a handle already freed, are
/// no-ops. Thread-safe, even against calls running on the same host in other threads:
/// those finish first on their own reference, and later calls on the handle return
/// `PASID_RESULT_INVALID_HANDLE`.
#[no_mangle]
pub extern "C" fn pasid_host_free(host: *mut pasid_host) {
    crate::boundary::call_or((), || {
        free_host(host);
    })
}

/// Describes a host: layout, platform, shared PASIDs in use and free, guest count and
/// heap use. Thread-safe (takes the host's lock).
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_host_get_info(
    host: *const pasid_host,
    out_info: *mut pasid_host_info,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        answer(host, OutSized(out_info, "out_info"), |h| {
            Ok(pasid_host_info {
                size: 0,
                layout: layout_to_c(h.layout()),
                platform: h.platform().to_c(),
                shared_in_use: h.shared_in_use(),
                shared_free: h.shared_free(),
                guests: h.guests().count() as u32,
                heap_bytes: crate::source::heap_bytes(h),
            })
        })
    })
}

/// Creates a guest. A p2 guest needs a p2 host (`PASID_RESULT_NOT_SUPPORTED`
/// otherwise). On success `*out_guest` is its id. Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_guest_create(
    host: *mut pasid_host,
    config: *const pasid_guest_config,
    out_guest: *mut pasid_guest_id,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        let config = config_from_c(&input_struct(config, "config")?)?;
        answer(host, Out(out_guest, "out_guest"), |h| {
            Ok(h.create_guest(config)?.0)
        })
    })
}

/// Destroys a guest, whatever it still holds: its uses of RIDs go at once (on a shared
/// RID only its own), its host PASIDs drain (`pasid_draining_list`) until the VMM
/// confirms their teardown with `pasid_complete_teardown`. List the entries to clear
/// with `pasid_guest_programmed_entries` first. Thread-safe.
#[must_use]
#[no_mangle]
pub extern "C" fn pasid_guest_destroy(host: *mut pasid_host, guest: pasid_guest_id) -> c_int {
    call(|| {
        with_host(host, |h| {
            h.destroy_guest(GuestId(guest))
                .map(|_| ())
                .map_err(Into::into)
        })
    })
}

/// Describes a guest: configuration, shared PASIDs held, gPASID and device counts.
/// Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_guest_get_info(
    host: *const pasid_host,
    guest: pasid_guest_id,
    out_info: *mut pasid_guest_info,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        answer(host, OutSized(out_info, "out_info"), |h| {
            let snap = h.guest_snapshot(GuestId(guest))?;
            Ok(pasid_guest_info {
                size: 0,
                config: config_to_c(&snap.config),
                shared_held: h.shared_held(GuestId(guest))?,
                pasids: snap.pasids.len() as u32,
                devices: snap.devices.len() as u32,
            })
        })
    })
}

/// Lists the live guests, in slot order, into `buf` (`len` elements).
///
/// Stores the number of guests in `*out_n`; writes them if `len` is enough, else
/// writes none and returns `PASID_RESULT_BUFFER_TOO_SMALL` (`buf` may be NULL when
/// `len` is 0: a size query). Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_host_guests(
    host: *const pasid_host,
    buf: *mut pasid_guest_id,
    len: usize,
    out_n: *mut usize,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        list(host, buf, len, out_n, |h, out| {
            out.fill_counted(h.guests().map(|g| g.0))
        })
    })
}

/// Attaches the device at `rid` to a guest as `kind` (a `PASID_DEVICE_KIND_*` value).
/// A RID belongs to at most one guest (`PASID_RESULT_RID_IN_USE`); shared work queues
/// need a p2 guest. Thread-safe.
#[must_use]
#[no_mangle]
pub extern "C" fn pasid_attach(
    host: *mut pasid_host,
    guest: pasid_guest_id,
    rid: pasid_rid,
    kind: u32,
) -> c_int {
    call(|| {
        let kind = DeviceKind::from_c(kind)?;
        with_host(host, |h| Ok(h.attach(GuestId(guest), rid.into(), kind)?))
    })
}

/// Detaches a device; refused while PASIDs are bound or recorded on it
/// (`PASID_RESULT_DEVICE_BUSY`). Thread-safe.
#[must_use]
#[no_mangle]
pub extern "C" fn pasid_detach(
    host: *mut pasid_host,
    guest: pasid_guest_id,
    rid: pasid_rid,
) -> c_int {
    call(|| with_host(host, |h| Ok(h.detach(GuestId(guest), rid.into())?)))
}

/// Tells which guest a RID is attached to: `*out_attached` is true and `*out_guest`
/// the guest, or `*out_attached` is false and `*out_guest` 0. Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_owner(
    host: *const pasid_host,
    rid: pasid_rid,
    out_attached: *mut bool,
    out_guest: *mut pasid_guest_id,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        let outs = (
            Out(out_attached, "out_attached"),
            Out(out_guest, "out_guest"),
        );
        answer(host, outs, |h| {
            let owner = h.owner(Rid::from(rid));
            Ok((owner.is_some(), owner.map_or(0, |g| g.0)))
        })
    })
}

/// Allocates a guest PASID for a p2 guest; `kind` is `PASID_KIND_LOCAL` or
/// `PASID_KIND_SHARED`.
///
/// `*out_gpasid` is the lowest free gPASID of the guest range. A shared one also gets
/// the lowest free host PASID, mapped in the guest's translation table; a shared
/// request is checked against the quota (`PASID_RESULT_QUOTA_EXCEEDED`), then the
/// guest range (`PASID_RESULT_GUEST_RANGE_EXHAUSTED`), then the shared range
/// (`PASID_RESULT_SHARED_RANGE_EXHAUSTED`). `out_pages` may be NULL; else it says
/// which translation-table page changed. Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_alloc(
    host: *mut pasid_host,
    guest: pasid_guest_id,
    kind: u32,
    out_gpasid: *mut u32,
    out_pages: *mut pasid_pages_touched,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        let outs = (
            Out(out_gpasid, "out_gpasid"),
            OutOpt(out_pages, "out_pages"),
        );
        reply(outs, || {
            let kind = PasidKind::from_c(kind)?;
            with_host(host, |h| {
                let (gpasid, pages) = h.alloc_reporting_pages(GuestId(guest), kind)?;
                Ok((gpasid, pages_to_c(pages)))
            })
        })
    })
}

/// Frees a p2 guest's gPASID, and its host PASID if it is shared. Refused while the
/// gPASID is bound to a device (`PASID_RESULT_STILL_BOUND`): unbind first.
/// `out_pages` may be NULL; else it says which translation-table page changed.
/// Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_free(
    host: *mut pasid_host,
    guest: pasid_guest_id,
    gpasid: u32,
    out_pages: *mut pasid_pages_touched,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        answer(host, OutOpt(out_pages, "out_pages"), |h| {
            Ok(pages_to_c(h.free_reporting_pages(GuestId(guest), gpasid)?))
        })
    })
}

/// The host PASID behind a guest's shared gPASID: what ENQCMD's PASID becomes.
/// A local gPASID gives `PASID_RESULT_NOT_SHARED`. Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_translate(
    host: *const pasid_host,
    guest: pasid_guest_id,
    gpasid: u32,
    out_hpasid: *mut u32,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        answer(host, Out(out_hpasid, "out_hpasid"), |h| {
            Ok(h.translate(GuestId(guest), gpasid)?)
        })
    })
}

/// The kind (`PASID_KIND_*`) of a gPASID a p2 guest holds. Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_kind_of(
    host: *const pasid_host,
    guest: pasid_guest_id,
    gpasid: u32,
    out_kind: *mut u32,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        answer(host, Out(out_kind, "out_kind"), |h| {
            Ok(h.kind_of(GuestId(guest), gpasid)?.to_c())
        })
    })
}

/// Binds a p2 guest's gPASID to one of its devices, and stores in `*out_programmed`
/// the PASID to program into the host IOMMU's PASID entry for that device: the gPASID
/// itself on a dedicated RID, the host PASID on a shared work queue. A local gPASID
/// cannot go to a shared work queue (`PASID_RESULT_NOT_SHARED`). Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_bind(
    host: *mut pasid_host,
    guest: pasid_guest_id,
    gpasid: u32,
    rid: pasid_rid,
    out_programmed: *mut u32,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        answer(host, Out(out_programmed, "out_programmed"), |h| {
            Ok(h.bind(GuestId(guest), gpasid, rid.into())?)
        })
    })
}

/// Undoes `pasid_bind` (`PASID_RESULT_NOT_BOUND` if it was not bound). Thread-safe.
#[must_use]
#[no_mangle]
pub extern "C" fn pasid_unbind(
    host: *mut pasid_host,
    guest: pasid_guest_id,
    gpasid: u32,
    rid: pasid_rid,
) -> c_int {
    call(|| {
        with_host(host, |h| {
            h.unbind(GuestId(guest), gpasid, rid.into())?;
            Ok(())
        })
    })
}

/// Records the PASID a p1 guest chose for one of its devices, and stores in
/// `*out_programmed` the PASID to program: the same number. It must lie in the guest
/// range (`PASID_RESULT_PASID_OUT_OF_RANGE`) and be new on that RID
/// (`PASID_RESULT_PASID_IN_USE`). Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_record(
    host: *mut pasid_host,
    guest: pasid_guest_id,
    rid: pasid_rid,
    pasid: u32,
    out_programmed: *mut u32,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        answer(host, Out(out_programmed, "out_programmed"), |h| {
            Ok(h.record(GuestId(guest), rid.into(), pasid)?)
        })
    })
}

/// Forgets a PASID a p1 guest recorded on a device (`PASID_RESULT_NOT_ALLOCATED` if
/// it was not recorded). Thread-safe.
#[must_use]
#[no_mangle]
pub extern "C" fn pasid_release(
    host: *mut pasid_host,
    guest: pasid_guest_id,
    rid: pasid_rid,
    pasid: u32,
) -> c_int {
    call(|| {
        with_host(host, |h| {
            Ok(h.release(GuestId(guest), rid.into(), pasid)?)
        })
    })
}

/// Lists the gPASIDs a guest holds, ascending, with kind and host PASID, into `buf`
/// (`len` elements). Buffer rule as `pasid_host_guests`. Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_guest_pasids(
    host: *const pasid_host,
    guest: pasid_guest_id,
    buf: *mut pasid_guest_pasid,
    len: usize,
    out_n: *mut usize,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        list(host, buf, len, out_n, |h, out| {
            let snap = h.guest_snapshot(GuestId(guest))?;
            out.fill(snap.pasids.iter().map(|p| pasid_guest_pasid {
                gpasid: p.gpasid,
                kind: p.kind.to_c(),
                hpasid: p.hpasid.unwrap_or(0),
            }))
        })
    })
}

/// Lists a guest's devices by RID, with kind and count of programmed PASIDs, into
/// `buf` (`len` elements). Buffer rule as `pasid_host_guests`. Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_guest_devices(
    host: *const pasid_host,
    guest: pasid_guest_id,
    buf: *mut pasid_device_info,
    len: usize,
    out_n: *mut usize,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        list(host, buf, len, out_n, |h, out| {
            let snap = h.guest_snapshot(GuestId(guest))?;
            out.fill(snap.devices.iter().map(|d| pasid_device_info {
                rid: d.rid.into(),
                kind: d.kind.to_c(),
                programmed: d.programmed.len() as u32,
            }))
        })
    })
}

/// Lists the PASIDs bound (p2) or recorded (p1) on one device of a guest, ascending by
/// gPASID, each with the PASID its host IOMMU entry holds, into `buf` (`len`
/// elements). Buffer rule as `pasid_host_guests`. Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_device_programmed(
    host: *const pasid_host,
    guest: pasid_guest_id,
    rid: pasid_rid,
    buf: *mut pasid_programmed,
    len: usize,
    out_n: *mut usize,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        list(host, buf, len, out_n, |h, out| {
            let snap = h.guest_snapshot(GuestId(guest))?;
            let rid = Rid::from(rid);
            let device = snap
                .devices
                .iter()
                .find(|d| d.rid == rid)
                .ok_or(FfiError::Core(pasid_core::Error::NoSuchDevice { rid }))?;
            out.fill(device.programmed.iter().map(|p| pasid_programmed {
                gpasid: p.gpasid,
                programmed: p.programmed,
            }))
        })
    })
}
