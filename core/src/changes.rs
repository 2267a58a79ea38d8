//! The translation change stream: every change to a guest's gPASID -> hPASID table,
//! one entry at a time, in the order to apply it.
//!
//! KVM owns the CPU's PASID-translation pages in the only public implementation: it
//! takes one {guest PASID, host PASID} pair per ioctl and writes each entry with a
//! single 4-byte store. A VMM in that position needs the changes, not page images. So a
//! guest can carry an opt-in, bounded **change log**:
//!
//! * [`Host::enable_translation_changes`] turns it on with a fixed capacity, reserved
//!   at once, and seeds it with the guest's current table, so a consumer that starts
//!   from an empty table (a fresh KVM table, a freshly imported guest) converges;
//! * every call that changes the table appends to it: a shared [`Host::alloc`] (also
//!   through VCMD) appends `(gPASID, Some(hPASID))`, a [`Host::free`] of a shared
//!   gPASID appends `(gPASID, None)`; [`Host::destroy_guest_reporting_changes`]
//!   reports the pending log and then `(gPASID, None)` for every entry left. Import
//!   starts a guest's log through `ImportOptions::change_log`. No other call changes the
//!   table: binding, attaching and [`Host::complete_teardown`] do not (a draining
//!   gPASID's entry went invalid when it was freed);
//! * the VMM drains it ([`Host::drain_translation_changes`]) and applies the changes in
//!   order: to KVM one ioctl each, or to its own pages with
//!   [`crate::hwtable::plan_update`].
//!
//! A call whose change would not fit fails with [`Error::ChangeLogFull`] and changes
//! nothing, so the log never drops a change and never grows on the VM-exit path: the
//! capacity is reserved when the log is turned on. With the log off, the fast path
//! pays one predictable branch.
//!
//! **Order with teardown.** A freed gPASID's `(gPASID, None)` must be applied (and the
//! CPU's view of it flushed, see [`crate::hwtable`]) before the VMM confirms its
//! teardown with [`Host::complete_teardown`]: after that the host PASID may go to
//! another guest, and a stale entry would let this guest's ENQCMD reach it. The host
//! holds the VMM to the first half: while the invalidation is still in the log,
//! confirming the teardown fails with [`Error::ChangePending`].

use alloc::vec::Vec;

use crate::error::{Error, Result};
use crate::host::Host;
use crate::source::HostPasidSource;
use crate::types::{GuestId, ProgrammedEntry};

/// One change to a guest's translation table, in the CPU's terms: the entry of
/// `gpasid` now maps to `hpasid` (valid), or is invalid (`None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct TranslationChange {
    /// The guest PASID whose entry changes.
    pub gpasid: u32,
    /// Its new host PASID, or `None` for an invalid entry.
    pub hpasid: Option<u32>,
}

/// A guest's pending changes. `entries` has `capacity` reserved from the start, so a
/// push below the capacity never allocates.
#[derive(Debug, Clone)]
pub(crate) struct ChangeLog {
    entries: Vec<TranslationChange>,
    capacity: u32,
}

impl ChangeLog {
    /// A log of `capacity` holding `entries`, which has that capacity reserved.
    pub(crate) fn new(entries: Vec<TranslationChange>, capacity: u32) -> Self {
        ChangeLog { entries, capacity }
    }

    /// Fails, changing nothing, when one more change would not fit.
    #[inline(always)]
    pub(crate) fn check_room(&self) -> Result<()> {
        if self.entries.len() < self.capacity as usize {
            Ok(())
        } else {
            Err(Error::ChangeLogFull {
                capacity: self.capacity,
            })
        }
    }

    /// Appends a change; [`ChangeLog::check_room`] said there is room, so this never
    /// allocates.
    #[inline(always)]
    pub(crate) fn push(&mut self, gpasid: u32, hpasid: Option<u32>) {
        debug_assert!(self.entries.len() < self.entries.capacity());
        self.entries.push(TranslationChange { gpasid, hpasid });
    }

    /// Whether an invalidation of `gpasid` waits to be drained (the log is short:
    /// bounded by its capacity, and drained after every call in practice).
    pub(crate) fn unmap_pending(&self, gpasid: u32) -> bool {
        self.entries
            .iter()
            .any(|c| c.gpasid == gpasid && c.hpasid.is_none())
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.entries.capacity() * core::mem::size_of::<TranslationChange>()
    }
}

const LOG_OFF: &str =
    "the guest's translation-change log is off: turn it on with enable_translation_changes";

/// The largest capacity a log may have: one change per gPASID of a 20-bit space, four
/// times over (each gPASID can be mapped and unmapped between drains), well beyond any
/// sane VMM and bounded so a hostile caller cannot ask for unbounded memory by number.
pub const MAX_CHANGE_LOG: u32 = 4 << 20;

impl<S: HostPasidSource> Host<S> {
    /// Turns on a guest's translation-change log with room for `capacity` pending
    /// changes (at most [`MAX_CHANGE_LOG`]), reserved now, and seeds it with the
    /// guest's whole current table as `(gPASID, Some(hPASID))` in gPASID order: replayed
    /// into an empty table, the log gives the guest's table. A log that was on is
    /// restarted (its pending changes are dropped and the seed replaces them), which is
    /// how a VMM that lost track resynchronises.
    ///
    /// Refused with [`Error::ChangeLogFull`] when the seed alone does not fit, and with
    /// [`Error::OutOfMemory`]; either way nothing changes.
    pub fn enable_translation_changes(&mut self, guest: GuestId, capacity: u32) -> Result<()> {
        let g = self.guest_mut(guest)?;
        let capacity = capacity.min(MAX_CHANGE_LOG);
        if g.remap.len() > capacity {
            return Err(Error::ChangeLogFull { capacity });
        }
        let mut entries = Vec::new();
        entries.try_reserve_exact(capacity as usize)?;
        entries.extend(g.remap.iter().map(|(gpasid, hpasid)| TranslationChange {
            gpasid,
            hpasid: Some(hpasid),
        }));
        g.changes = Some(ChangeLog::new(entries, capacity));
        Ok(())
    }

    /// Turns a guest's change log off and frees it; pending changes are dropped.
    pub fn disable_translation_changes(&mut self, guest: GuestId) -> Result<()> {
        self.guest_mut(guest)?.changes = None;
        Ok(())
    }

    /// Whether a guest's change log is on, and if so how many changes are pending.
    pub fn pending_translation_changes(&self, guest: GuestId) -> Result<Option<usize>> {
        Ok(self.guest(guest)?.changes.as_ref().map(|l| l.entries.len()))
    }

    /// Moves every pending change of a guest, in apply order, to the end of `out`;
    /// returns how many. [`Error::NotSupported`] when the log is off; on
    /// [`Error::OutOfMemory`] (growing `out`) nothing moves.
    pub fn drain_translation_changes(
        &mut self,
        guest: GuestId,
        out: &mut Vec<TranslationChange>,
    ) -> Result<usize> {
        let log = self.log_mut(guest)?;
        let n = log.entries.len();
        out.try_reserve(n)?;
        // `append` leaves the log's reserved capacity in place.
        out.append(&mut log.entries);
        Ok(n)
    }

    /// Moves the oldest pending changes of a guest into `buf`, as many as fit, and
    /// returns how many (for callers that own their memory, such as C). The rest stay
    /// pending, still in order.
    pub fn drain_translation_changes_into(
        &mut self,
        guest: GuestId,
        buf: &mut [TranslationChange],
    ) -> Result<usize> {
        let log = self.log_mut(guest)?;
        let n = log.entries.len().min(buf.len());
        for (dst, src) in buf.iter_mut().zip(log.entries.drain(..n)) {
            *dst = src;
        }
        Ok(n)
    }

    /// A guest's whole current table as changes, `(gPASID, Some(hPASID))` in gPASID
    /// order: what a consumer starting from an empty table applies to catch up (the same
    /// as the seed of [`Host::enable_translation_changes`]).
    pub fn translation_entries(
        &self,
        guest: GuestId,
    ) -> Result<impl Iterator<Item = TranslationChange> + '_> {
        Ok(self
            .guest(guest)?
            .remap
            .iter()
            .map(|(gpasid, hpasid)| TranslationChange {
                gpasid,
                hpasid: Some(hpasid),
            }))
    }

    /// [`Host::destroy_guest`], also appending to `out` the guest's table changes in
    /// apply order: its pending log (if on), then `(gPASID, None)` for every entry still
    /// valid. On error (no such guest, memory) nothing changes, `out` included.
    pub fn destroy_guest_reporting_changes(
        &mut self,
        guest: GuestId,
        out: &mut Vec<TranslationChange>,
    ) -> Result<Vec<ProgrammedEntry>> {
        let g = self.guest(guest)?;
        let pending = g.changes.as_ref().map_or(&[][..], |l| &l.entries[..]);
        out.try_reserve(pending.len() + g.remap.len() as usize)?;
        let start = out.len();
        out.extend_from_slice(pending);
        out.extend(g.remap.iter().map(|(gpasid, _)| TranslationChange {
            gpasid,
            hpasid: None,
        }));
        self.destroy_guest(guest)
            .inspect_err(|_| out.truncate(start))
    }

    fn log_mut(&mut self, guest: GuestId) -> Result<&mut ChangeLog> {
        self.guest_mut(guest)?
            .changes
            .as_mut()
            .ok_or(Error::NotSupported { what: LOG_OFF })
    }
}
