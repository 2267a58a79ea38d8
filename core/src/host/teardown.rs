//! The end of a PASID's life: draining until the VMM confirms the hardware let go.
//!
//! Linux tears a PASID down in this order: clear the PASID-table entry, flush the
//! IOTLB and device TLB, drain the work queue, and only then free the number. The host
//! cannot see the hardware, so the VMM does the first three and then says so with
//! [`Host::complete_teardown`]; until then the numbers stay out of reach of every
//! allocation (the guest's next ALLOC gets a new gPASID, no guest gets the host PASID).

use alloc::vec::Vec;

use super::{live_guest_mut, Host};

/// Up to this many items, `complete_teardown` works item by item with no allocation
/// (the VM-exit path confirms one or a few); a bigger batch is sorted first.
const SMALL_BATCH: usize = 16;
/// A batch up to this long is sorted in a buffer on the stack (1 KiB), not the heap:
/// a VMM that confirms a few dozen after one IOTLB invalidation pays no allocation.
const STACK_BATCH: usize = 64;
use crate::error::{Error, Result};
use crate::source::HostPasidSource;
use crate::types::{Draining, GuestId};

impl<S: HostPasidSource> Host<S> {
    /// Every draining PASID: those of live guests by guest and gPASID, then those of
    /// destroyed guests by guest id and gPASID.
    pub fn draining(&self) -> impl Iterator<Item = Draining> + '_ {
        self.guests()
            .flat_map(move |guest| {
                let g = self.guest(guest).expect("live guest");
                g.draining().map(move |(gpasid, hpasid)| Draining {
                    guest,
                    gpasid,
                    hpasid,
                })
            })
            .chain(self.orphans.iter())
    }

    /// How many PASIDs [`Host::draining`] lists.
    pub fn draining_count(&self) -> usize {
        let live: usize = self
            .slots
            .iter()
            .filter_map(super::Slot::live)
            .map(|g| g.draining_len())
            .sum();
        live + self.orphans.len()
    }

    /// The VMM confirms that the hardware has let go of each of `items` (entries
    /// cleared, IOTLB and device TLB invalidated, WQs drained): each gPASID becomes free
    /// in its guest and each host PASID goes back to the source.
    ///
    /// All or nothing: every item must be draining exactly as given ([`Host::draining`]
    /// lists them), at most once in `items`, or [`Error::NotDraining`] names one that is
    /// not (the first, in a batch of up to 16) and nothing changes. The cost is linear in
    /// the batch for up to 16 items and for a sorted batch (as [`Host::draining`] lists
    /// them), `n log n` for another, never quadratic; confirming destroyed guests'
    /// PASIDs one call each costs a binary search per call, not a shift of the list of
    /// them. A guest whose change log is on
    /// must have had its invalidation drained first ([`Error::ChangePending`]; see
    /// [`crate::changes`]). A source that cannot take a host PASID back at once (an
    /// unreachable broker) does not fail the call: the PASID stays this host's until
    /// [`Host::retry_releases`] (or the next teardown) hands it back, so it is never
    /// granted twice.
    #[inline]
    pub fn complete_teardown(&mut self, items: &[Draining]) -> Result<()> {
        match items {
            [item] => self.complete_one(item),
            _ => self.complete_batch(items),
        }
    }

    /// [`Host::complete_teardown`] of any number but one: checked whole, then applied.
    #[inline(never)]
    fn complete_batch(&mut self, items: &[Draining]) -> Result<()> {
        if items.len() <= SMALL_BATCH {
            self.check_small_batch(items)?;
            for item in items {
                self.forget_draining(item);
            }
        } else if let Some(checked) = self.check_increasing(items) {
            // As `draining()` and `draining_of` list them: no copy, no sort, and no
            // repeats to look for.
            checked?;
            self.forget_draining_batch(items);
        } else if items.len() <= STACK_BATCH {
            let mut buf = [items[0]; STACK_BATCH];
            let sorted = &mut buf[..items.len()];
            sorted.copy_from_slice(items);
            sorted.sort_unstable();
            self.check_sorted_batch(sorted)?;
            self.forget_draining_batch(sorted);
        } else {
            let mut sorted = Vec::new();
            sorted.try_reserve_exact(items.len())?;
            sorted.extend_from_slice(items);
            sorted.sort_unstable();
            self.check_sorted_batch(&sorted)?;
            self.forget_draining_batch(&sorted);
        }
        if !self.release_backlog.is_empty() {
            self.retry_releases();
        }
        Ok(())
    }

    /// [`Host::complete_teardown`] of one item, the VM-exit path's usual case: one
    /// guest lookup and one search, where the batch path checks first and removes
    /// after. The same rules, in the same order.
    #[inline(always)]
    fn complete_one(&mut self, item: &Draining) -> Result<()> {
        let not = Error::NotDraining { pasid: item.gpasid };
        // Each path gives its host PASID back itself: one test of `item.hpasid`.
        match live_guest_mut(&mut self.slots, item.guest) {
            Ok(g) => match item.hpasid {
                Some(hpasid) => {
                    // Fail closed, as in Guest::check_draining: no reuse while the
                    // log may still owe the CPU's table this entry's invalidation.
                    if g.changes
                        .as_ref()
                        .is_some_and(|log| log.unmap_pending(item.gpasid))
                        && g.remap.draining(item.gpasid) == Some(hpasid)
                    {
                        return Err(Error::ChangePending { pasid: item.gpasid });
                    }
                    if !g.remap.forget_draining(item.gpasid, hpasid) {
                        return Err(not);
                    }
                    g.pasids.free(item.gpasid);
                    self.give_back(hpasid);
                }
                None => {
                    if g.draining_local.remove(&item.gpasid).is_none() {
                        return Err(not);
                    }
                    g.pasids.free(item.gpasid);
                }
            },
            Err(_) => {
                if !self.orphans.remove(item) {
                    return Err(not);
                }
                // An orphan always has its host PASID (local ones do not drain once
                // their guest is gone).
                if let Some(hpasid) = item.hpasid {
                    self.give_back(hpasid);
                }
            }
        }
        if !self.release_backlog.is_empty() {
            self.retry_releases();
        }
        Ok(())
    }

    /// Takes one checked item off its guest's draining list (or the orphans) and hands
    /// its host PASID back.
    fn forget_draining(&mut self, item: &Draining) {
        match self.guest_mut(item.guest) {
            Ok(g) => {
                match item.hpasid {
                    Some(hpasid) => {
                        g.remap.forget_draining(item.gpasid, hpasid);
                    }
                    // The list keeps its capacity: a guest that frees and reallocates
                    // local PASIDs must not pay an allocation for each cycle. It is
                    // bounded by the guest range, like the rest of the guest.
                    None => {
                        g.draining_local.remove(&item.gpasid);
                    }
                }
                g.pasids.free(item.gpasid);
            }
            Err(_) => {
                self.orphans.remove(item);
            }
        }
        if let Some(hpasid) = item.hpasid {
            self.give_back(hpasid);
        }
    }

    /// [`Host::forget_draining`] for a big batch, sorted: one pass over each guest's
    /// list (and the orphans) instead of one removal per item, one lookup of the guest
    /// per run of its items.
    fn forget_draining_batch(&mut self, sorted: &[Draining]) {
        let mut orphans_in_batch = false;
        for run in sorted.chunk_by(|a, b| a.guest == b.guest) {
            let guest = run[0].guest;
            match live_guest_mut(&mut self.slots, guest) {
                Ok(g) => {
                    // Local ones: both lists are sorted by gPASID, so one merging walk
                    // (none without a local list: the batch was checked).
                    let mut local = run.iter().filter(|d| d.hpasid.is_none()).peekable();
                    if !g.draining_local.is_empty() && local.peek().is_some() {
                        g.draining_local.retain(|gpasid, _| {
                            while local.next_if(|d| d.gpasid < *gpasid).is_some() {}
                            local.next_if(|d| d.gpasid == *gpasid).is_none()
                        });
                    }
                    for d in run {
                        if let Some(hpasid) = d.hpasid {
                            g.remap.forget_draining(d.gpasid, hpasid);
                        }
                        g.pasids.free(d.gpasid);
                    }
                }
                // Taken off the orphans below, in one pass for every destroyed guest.
                Err(_) => orphans_in_batch = true,
            }
            // The run is still in L1: a second short pass, once the guest is let go.
            for d in run {
                if let Some(hpasid) = d.hpasid {
                    self.give_back(hpasid);
                }
            }
        }
        if orphans_in_batch {
            // Both sorted, so one merging walk (a pass per destroyed guest made
            // confirming many destroyed guests' PASIDs at once quadratic). The batch
            // was checked: an item equal to an orphan is that orphan, and no item of a
            // live guest equals one.
            self.orphans.remove_sorted(sorted);
        }
    }

    /// Hands a host PASID whose teardown is confirmed back to the source, or keeps it
    /// in the backlog if the source cannot take it now. Should even the backlog have no
    /// room (no memory), the PASID stays counted as this host's: never granted twice,
    /// at worst lost to this host until it goes.
    #[inline(always)]
    fn give_back(&mut self, hpasid: u32) {
        if self.source.release(hpasid).is_ok() {
            self.host_pasids -= 1;
        } else {
            self.keep_for_retry(hpasid);
        }
    }

    /// The cold half of [`Host::give_back`]: the source refused, so keep the PASID.
    #[cold]
    #[inline(never)]
    fn keep_for_retry(&mut self, hpasid: u32) {
        if self.release_backlog.try_reserve(1).is_ok() {
            self.release_backlog.push(hpasid);
        }
    }

    /// Hands the source the host PASIDs whose teardown is confirmed but which it could
    /// not take back before; returns how many are still waiting.
    pub fn retry_releases(&mut self) -> usize {
        let source = &mut self.source;
        let before = self.release_backlog.len();
        self.release_backlog.retain(|&h| source.release(h).is_err());
        self.host_pasids -= (before - self.release_backlog.len()) as u32;
        if self.release_backlog.is_empty() {
            self.release_backlog = Vec::new();
        }
        self.release_backlog.len()
    }

    /// Host PASIDs confirmed free but not yet taken back by the source.
    pub fn pending_releases(&self) -> usize {
        self.release_backlog.len()
    }

    /// Whether `item` is draining exactly as given, and its invalidation is not still
    /// owed to the CPU's table (fail closed: the entry must be gone before the host
    /// PASID can go to anyone else).
    fn check_item(&self, item: &Draining) -> Result<()> {
        match self.guest(item.guest) {
            Ok(g) => g.check_draining(item),
            Err(_) => self.check_orphan(item),
        }
    }

    /// Whether `item`, of a destroyed guest, drains as given.
    fn check_orphan(&self, item: &Draining) -> Result<()> {
        if self.orphans.contains(item) {
            Ok(())
        } else {
            Err(Error::NotDraining { pasid: item.gpasid })
        }
    }

    /// Every item is draining as given and none is given twice; the first that is not
    /// is named (repeats looked for as it goes: quadratic only in a few).
    fn check_small_batch(&self, items: &[Draining]) -> Result<()> {
        for (i, item) in items.iter().enumerate() {
            if items[..i].contains(item) {
                return Err(Error::NotDraining { pasid: item.gpasid });
            }
            self.check_item(item)?;
        }
        Ok(())
    }

    /// [`Host::check_small_batch`] for a sorted batch: repeats are neighbours.
    fn check_sorted_batch(&self, sorted: &[Draining]) -> Result<()> {
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::NotDraining { pasid: w[0].gpasid });
        }
        self.check_increasing(sorted).unwrap_or_else(|| {
            // Sorted without repeats, so the order broke where one (guest, gPASID)
            // comes with two host PASIDs: at most one of them drains as given, and
            // every item before the pair passed (as a check in order would find).
            let w = sorted
                .windows(2)
                .find(|w| (w[0].guest, w[0].gpasid) == (w[1].guest, w[1].gpasid))
                .expect("a sorted batch breaks the strict order only at such a pair");
            Err(Error::NotDraining { pasid: w[1].gpasid })
        })
    }

    /// Checks a batch that goes up strictly by (guest, gPASID), as [`Host::draining`]
    /// lists a live guest's (so no item is given twice), in one pass: one guest lookup
    /// per run of its items, the order tested on the way. `None`, with nothing decided,
    /// as soon as the order breaks (the caller sorts); otherwise the first item that
    /// does not drain as given is named.
    fn check_increasing(&self, items: &[Draining]) -> Option<Result<()>> {
        let mut last_guest = None;
        for run in items.chunk_by(|a, b| a.guest == b.guest) {
            let guest = run[0].guest;
            if last_guest.is_some_and(|last| last >= guest) {
                return None;
            }
            last_guest = Some(guest);
            let live = self.guest(guest);
            let mut last_gpasid = None;
            for item in run {
                if last_gpasid.is_some_and(|last| last >= item.gpasid) {
                    return None;
                }
                last_gpasid = Some(item.gpasid);
                let checked = match &live {
                    Ok(g) => g.check_draining(item),
                    Err(_) => self.check_orphan(item),
                };
                if let Err(e) = checked {
                    return Some(Err(e));
                }
            }
        }
        Some(Ok(()))
    }

    /// The draining PASIDs of one live guest, by gPASID.
    pub fn draining_of(&self, guest: GuestId) -> Result<Vec<Draining>> {
        let g = self.guest(guest)?;
        let mut out = Vec::new();
        out.try_reserve_exact(g.draining_len())?;
        out.extend(g.draining().map(|(gpasid, hpasid)| Draining {
            guest,
            gpasid,
            hpasid,
        }));
        Ok(out)
    }
}
