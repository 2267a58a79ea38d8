//! RIDs with two uses, and the end of a PASID's life: the entries to clear, the PASIDs
//! that drain, and the call that confirms the hardware let go.

use core::ffi::c_int;

use pasid_core::{DeviceKind, Draining, GuestId, ProgrammedEntry, Rid};

use crate::boundary::{answer, call, input_slice, list, with_host, Out};
use crate::pasid_host;
use crate::types::*;

/// A freed guest PASID waiting for its teardown (`pasid_draining`), as handed back to
/// `pasid_complete_teardown`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct pasid_draining {
    /// The guest that freed it (possibly destroyed since).
    pub guest: pasid_guest_id,
    /// The guest PASID.
    pub gpasid: u32,
    /// Its host PASID, or 0 for a local gPASID (0 is never a host PASID).
    pub hpasid: u32,
}

impl From<Draining> for pasid_draining {
    fn from(d: Draining) -> Self {
        pasid_draining {
            guest: d.guest.0,
            gpasid: d.gpasid,
            hpasid: d.hpasid.unwrap_or(0),
        }
    }
}

impl From<pasid_draining> for Draining {
    fn from(d: pasid_draining) -> Self {
        Draining {
            guest: GuestId(d.guest),
            gpasid: d.gpasid,
            hpasid: (d.hpasid != 0).then_some(d.hpasid),
        }
    }
}

/// A PASID-table entry the VMM programmed for a guest, which it must clear.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct pasid_programmed_entry {
    /// The host RID whose PASID table holds the entry.
    pub rid: pasid_rid,
    /// The use of the RID: a `PASID_DEVICE_KIND_*` value.
    pub kind: u32,
    /// The guest PASID bound (or recorded, p1).
    pub gpasid: u32,
    /// The PASID in the entry: the gPASID on a dedicated use, the hPASID on a shared WQ.
    pub pasid: u32,
}

impl From<ProgrammedEntry> for pasid_programmed_entry {
    fn from(e: ProgrammedEntry) -> Self {
        pasid_programmed_entry {
            rid: e.rid.into(),
            kind: e.kind.to_c(),
            gpasid: e.gpasid,
            pasid: e.pasid,
        }
    }
}

/// One guest's use of a RID (`pasid_rid_users`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct pasid_rid_user {
    /// The guest.
    pub guest: pasid_guest_id,
    /// Its use: a `PASID_DEVICE_KIND_*` value.
    pub kind: u32,
}

/// Binds a gPASID to the guest's `kind` use of `rid` (a `PASID_DEVICE_KIND_*` value)
/// and stores in `*out_programmed` the PASID to program there: the gPASID on a
/// dedicated use, its host PASID on a shared WQ. `pasid_bind` does the same for a RID
/// the guest uses one way only. Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_bind_use(
    host: *mut pasid_host,
    guest: pasid_guest_id,
    gpasid: u32,
    rid: pasid_rid,
    kind: u32,
    out_programmed: *mut u32,
) -> c_int {
    call(|| {
        let kind = DeviceKind::from_c(kind)?;
        // SAFETY: the header's pointer rule.
        unsafe {
            answer(host, Out(out_programmed, "out_programmed"), |h| {
                Ok(h.bind_use(GuestId(guest), gpasid, rid.into(), kind)?)
            })
        }
    })
}

/// Undoes `pasid_bind_use` and stores in `*out_programmed` the PASID that was
/// programmed for the binding: the entry to clear on that RID. Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_unbind_use(
    host: *mut pasid_host,
    guest: pasid_guest_id,
    gpasid: u32,
    rid: pasid_rid,
    kind: u32,
    out_programmed: *mut u32,
) -> c_int {
    call(|| {
        let kind = DeviceKind::from_c(kind)?;
        // SAFETY: the header's pointer rule.
        unsafe {
            answer(host, Out(out_programmed, "out_programmed"), |h| {
                Ok(h.unbind_use(GuestId(guest), gpasid, rid.into(), kind)?)
            })
        }
    })
}

/// Takes the guest's `kind` use of `rid` away (other guests' uses stay); refused while
/// PASIDs are bound or recorded on it (`PASID_RESULT_DEVICE_BUSY`). Thread-safe.
#[must_use]
#[no_mangle]
pub extern "C" fn pasid_detach_use(
    host: *mut pasid_host,
    guest: pasid_guest_id,
    rid: pasid_rid,
    kind: u32,
) -> c_int {
    call(|| {
        let kind = DeviceKind::from_c(kind)?;
        with_host(host, |h| {
            Ok(h.detach_use(GuestId(guest), rid.into(), kind)?)
        })
    })
}

/// Lists every guest using `rid` with its use (the dedicated one first) into `buf`
/// (`len` elements). Buffer rule as `pasid_host_guests`. Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_rid_users(
    host: *const pasid_host,
    rid: pasid_rid,
    buf: *mut pasid_rid_user,
    len: usize,
    out_n: *mut usize,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        list(host, buf, len, out_n, |h, out| {
            out.fill_counted(h.rid_users(Rid::from(rid)).map(|(g, kind)| pasid_rid_user {
                guest: g.0,
                kind: kind.to_c(),
            }))
        })
    })
}

/// Lists every entry the VMM programmed for a guest (bindings on p2, recorded PASIDs
/// on p1) into `buf` (`len` elements): what the VMM must clear when it destroys the
/// guest (`pasid_guest_destroy` goes through bindings and busy devices). Buffer rule
/// as `pasid_host_guests`. Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_guest_programmed_entries(
    host: *const pasid_host,
    guest: pasid_guest_id,
    buf: *mut pasid_programmed_entry,
    len: usize,
    out_n: *mut usize,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        list(host, buf, len, out_n, |h, out| {
            out.fill_counted(h.programmed_entries(GuestId(guest))?.map(Into::into))
        })
    })
}

/// Lists every draining PASID of the host (freed or left by a destroyed guest, not yet
/// confirmed torn down) into `buf` (`len` elements): live guests' by guest and gPASID,
/// then destroyed guests'. Buffer rule as `pasid_host_guests`. Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_draining_list(
    host: *const pasid_host,
    buf: *mut pasid_draining,
    len: usize,
    out_n: *mut usize,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        list(host, buf, len, out_n, |h, out| {
            out.fill_counted(h.draining().map(pasid_draining::from))
        })
    })
}

/// Confirms that the hardware has let go of the `n` draining PASIDs in `items`
/// (entries cleared, IOTLB and device TLB invalidated, work queues drained): each
/// gPASID becomes free in its guest and each host PASID goes back to the source.
/// All or nothing: an item not draining as given, or given twice, is refused with
/// `PASID_RESULT_NOT_DRAINING` and nothing changes. `items` may be NULL when `n` is 0.
/// Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_complete_teardown(
    host: *mut pasid_host,
    items: *const pasid_draining,
    n: usize,
) -> c_int {
    call(|| {
        // SAFETY: the caller passes NULL or a valid array of `n` elements.
        let items = unsafe { input_slice(items, n, "items") }?;
        let mut core_items = Vec::new();
        core_items
            .try_reserve_exact(items.len())
            .map_err(|_| pasid_core::Error::OutOfMemory)?;
        core_items.extend(items.iter().map(|&d| Draining::from(d)));
        with_host(host, |h| Ok(h.complete_teardown(&core_items)?))
    })
}
