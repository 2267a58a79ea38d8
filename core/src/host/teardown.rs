//! The end of a PASID's life: draining until the VMM confirms the hardware let go.
//!
//! Linux tears a PASID down in this order: clear the PASID-table entry, flush the
//! IOTLB and device TLB, drain the work queue, and only then free the number. The host
//! cannot see the hardware, so the VMM does the first three and then says so with
//! [`Host::complete_teardown`]; until then the numbers stay out of reach of every
//! allocation (the guest's next ALLOC gets a new gPASID, no guest gets the host PASID).

use alloc::vec::Vec;

use super::Host;
use crate::error::{Error, Result};
use crate::sorted::SortedMap;
use crate::source::HostPasidSource;
use crate::types::{Draining, GuestId};

impl<S: HostPasidSource> Host<S> {
    /// Every draining PASID: those of live guests by guest and gPASID, then those of
    /// destroyed guests in the order they were destroyed.
    pub fn draining(&self) -> impl Iterator<Item = Draining> + '_ {
        self.guests()
            .flat_map(move |guest| {
                let g = self.guest(guest).expect("live guest");
                g.draining.iter().map(move |(&gpasid, &hpasid)| Draining {
                    guest,
                    gpasid,
                    hpasid,
                })
            })
            .chain(self.orphans.iter().copied())
    }

    /// How many PASIDs [`Host::draining`] lists.
    pub fn draining_count(&self) -> usize {
        let live: usize = self
            .slots
            .iter()
            .filter_map(|s| s.guest.as_ref())
            .map(|g| g.draining.len())
            .sum();
        live + self.orphans.len()
    }

    /// The VMM confirms that the hardware has let go of each of `items` (entries
    /// cleared, IOTLB and device TLB invalidated, WQs drained): each gPASID becomes free
    /// in its guest and each host PASID goes back to the source.
    ///
    /// All or nothing: every item must be draining exactly as given ([`Host::draining`]
    /// lists them), at most once in `items`, or [`Error::NotDraining`] names the first
    /// that is not and nothing changes. A guest whose change log is on must have had its
    /// invalidation drained first ([`Error::ChangePending`]; see [`crate::changes`]). A source that cannot take a host PASID back at
    /// once (an unreachable broker) does not fail the call: the PASID stays this host's
    /// until [`Host::retry_releases`] (or the next teardown) hands it back, so it is
    /// never granted twice.
    pub fn complete_teardown(&mut self, items: &[Draining]) -> Result<()> {
        self.check_draining(items)?;
        let mut orphans_done = false;
        for item in items {
            match self.guest_mut(item.guest) {
                Ok(g) => {
                    g.draining.remove(&item.gpasid);
                    g.pasids.free(item.gpasid);
                    g.draining_shared -= item.hpasid.is_some() as u32;
                    if g.draining.is_empty() {
                        // A guest that churned leaves no memory behind once its
                        // teardowns are done, so its footprint follows what it holds.
                        g.draining = SortedMap::new();
                    }
                }
                Err(_) => orphans_done = true,
            }
            if let Some(hpasid) = item.hpasid {
                self.give_back(hpasid);
            }
        }
        if orphans_done {
            self.orphans.retain(|o| !items.contains(o));
            if self.orphans.is_empty() {
                self.orphans = Vec::new();
            }
        }
        if !self.release_backlog.is_empty() {
            self.retry_releases();
        }
        Ok(())
    }

    /// Hands a host PASID whose teardown is confirmed back to the source, or keeps it
    /// in the backlog if the source cannot take it now. Should even the backlog have no
    /// room (no memory), the PASID stays counted as this host's: never granted twice,
    /// at worst lost to this host until it goes.
    fn give_back(&mut self, hpasid: u32) {
        if self.source.release(hpasid).is_ok() {
            self.host_pasids -= 1;
        } else if self.release_backlog.try_reserve(1).is_ok() {
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

    /// Every item is draining as given, and none is given twice.
    fn check_draining(&self, items: &[Draining]) -> Result<()> {
        for (i, item) in items.iter().enumerate() {
            let not = Err(Error::NotDraining { pasid: item.gpasid });
            let draining = match self.guest(item.guest) {
                Ok(g) => g.draining.get(&item.gpasid) == Some(&item.hpasid),
                Err(_) => item.hpasid.is_some() && self.orphans.contains(item),
            };
            // Quadratic only in the batch a VMM hands in at once.
            if !draining || items[..i].contains(item) {
                return not;
            }
            // Fail closed: the entry must be gone from the CPU's table before the host
            // PASID can go to anyone else, and the log says it may not be.
            if let Some(log) = self.guest(item.guest).ok().and_then(|g| g.changes.as_ref()) {
                if log.unmap_pending(item.gpasid) {
                    return Err(Error::ChangePending { pasid: item.gpasid });
                }
            }
        }
        Ok(())
    }

    /// The draining PASIDs of one live guest, by gPASID.
    pub fn draining_of(&self, guest: GuestId) -> Result<Vec<Draining>> {
        let g = self.guest(guest)?;
        let mut out = Vec::new();
        out.try_reserve_exact(g.draining.len())?;
        out.extend(g.draining.iter().map(|(&gpasid, &hpasid)| Draining {
            guest,
            gpasid,
            hpasid,
        }));
        Ok(out)
    }
}
