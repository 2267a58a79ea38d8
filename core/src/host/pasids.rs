//! p2 allocation and translation: the VM-exit paths.

use super::{live_guest_mut, Guest, Host, P1_NO_ALLOC};
use crate::error::{Error, Result};
use crate::layout::PasidLayout;
use crate::remap::PagesTouched;
use crate::source::HostPasidSource;
use crate::types::{Draining, GuestId, PasidKind, Platform};

impl<S: HostPasidSource> Host<S> {
    /// Allocates a guest PASID (p2 guests only): the lowest free gPASID of the guest
    /// range, and for [`PasidKind::Shared`] also a host PASID from the source (the
    /// in-process one: the lowest free of the shared range), mapped in the guest's
    /// translation table. Draining gPASIDs are not free: a guest never gets back a
    /// number the hardware may still hold.
    ///
    /// A shared request is checked against the quota (held and draining), then the
    /// guest range, then the source.
    #[inline]
    pub fn alloc(&mut self, guest: GuestId, kind: PasidKind) -> Result<u32> {
        self.alloc_reporting_pages(guest, kind).map(|(g, _)| g)
    }

    /// [`Host::alloc`], also telling which translation-table pages changed (for a
    /// shared PASID), so a VMM rewrites only those.
    #[inline(always)]
    pub fn alloc_reporting_pages(
        &mut self,
        guest: GuestId,
        kind: PasidKind,
    ) -> Result<(u32, Option<PagesTouched>)> {
        // One lookup, borrowing the guest and the source at once (disjoint fields):
        // this is a VM-exit path.
        let g = live_guest_mut(&mut self.slots, guest)?;
        g.require(Platform::P2, P1_NO_ALLOC)?;
        match kind {
            PasidKind::Local => {
                let gpasid = g.pasids.alloc().ok_or(Error::GuestRangeExhausted)?;
                Ok((gpasid, None))
            }
            // One test of the change log for the whole call; the logged path is the
            // same code with the log's steps in.
            PasidKind::Shared if g.changes.is_none() => {
                alloc_shared::<S, false>(g, &mut self.source, &mut self.host_pasids)
            }
            PasidKind::Shared => alloc_shared_logged(g, &mut self.source, &mut self.host_pasids),
        }
    }

    /// Frees a guest PASID (p2 guests only). It stops translating at once, and it and
    /// its host PASID drain until [`Host::complete_teardown`] (see the
    /// [lifecycle](crate::host#the-lifecycle-of-a-pasid)).
    /// Refused while the gPASID is bound to any device: unbind first, so the VMM knows
    /// every entry it has to clear.
    ///
    /// Returns the draining record to hand to [`Host::complete_teardown`] once the
    /// hardware has let go. A shared gPASID drains in its own table entry, so freeing
    /// it needs no memory; a local one goes on a list that may have to grow
    /// ([`Error::OutOfMemory`], nothing changed).
    #[inline]
    pub fn free(&mut self, guest: GuestId, gpasid: u32) -> Result<Draining> {
        self.free_inner(guest, gpasid).map(|(hpasid, _)| Draining {
            guest,
            gpasid,
            hpasid,
        })
    }

    /// [`Host::free`], also telling which translation-table page changed.
    #[inline]
    pub fn free_reporting_pages(
        &mut self,
        guest: GuestId,
        gpasid: u32,
    ) -> Result<Option<PagesTouched>> {
        self.free_inner(guest, gpasid).map(|(_, pages)| pages)
    }

    /// Frees `gpasid`; returns its host PASID and the table page that changed.
    #[inline(always)]
    fn free_inner(
        &mut self,
        guest: GuestId,
        gpasid: u32,
    ) -> Result<(Option<u32>, Option<PagesTouched>)> {
        let g = live_guest_mut(&mut self.slots, guest)?;
        g.require(Platform::P2, P1_NO_ALLOC)?;
        if g.changes.is_none() {
            // The usual case first: a mapped shared gPASID, no change log, found and
            // retired in one lookup. A bound gPASID is held, so testing the bindings
            // first refuses exactly what the full path below refuses.
            if !g.bind_counts.is_empty() && g.bind_counts.contains_key(&gpasid) {
                return Err(Error::StillBound { pasid: gpasid });
            }
            if let Some((hpasid, pages)) = g.remap.retire(gpasid) {
                return Ok((Some(hpasid), Some(pages)));
            }
        }
        free_checked(g, gpasid, &self.layout)
    }

    /// The host PASID behind a guest's shared gPASID: what ENQCMD's PASID becomes.
    #[inline]
    pub fn translate(&self, guest: GuestId, gpasid: u32) -> Result<u32> {
        let g = self.guest(guest)?;
        match g.remap.get(gpasid) {
            Some(hpasid) => Ok(hpasid),
            None => {
                g.check_held(gpasid, &self.layout)?;
                Err(Error::NotShared { pasid: gpasid })
            }
        }
    }

    /// The kind of a gPASID the guest holds (p2).
    pub fn kind_of(&self, guest: GuestId, gpasid: u32) -> Result<PasidKind> {
        let g = self.guest(guest)?;
        g.check_held(gpasid, &self.layout)?;
        Ok(if g.remap.get(gpasid).is_some() {
            PasidKind::Shared
        } else {
            PasidKind::Local
        })
    }
}

/// A shared allocation for guest `g` from `source`; `LOGGED`: `g` keeps a change log
/// (checked for room first, written last).
#[inline(always)]
fn alloc_shared<S: HostPasidSource, const LOGGED: bool>(
    g: &mut Guest,
    source: &mut S,
    host_pasids: &mut u32,
) -> Result<(u32, Option<PagesTouched>)> {
    if g.shared_charged() >= g.config.shared_quota {
        return Err(Error::QuotaExceeded {
            quota: g.config.shared_quota,
        });
    }
    if LOGGED {
        if let Some(log) = &g.changes {
            log.check_room()?;
        }
    }
    let gpasid = g.pasids.alloc().ok_or(Error::GuestRangeExhausted)?;
    let hpasid = match source.alloc() {
        Ok(h) => h,
        Err(e) => {
            g.pasids.free(gpasid);
            return Err(e.into());
        }
    };
    match g.remap.insert(gpasid, hpasid) {
        Ok(pages) => {
            *host_pasids += 1;
            if LOGGED {
                if let Some(log) = &mut g.changes {
                    log.push(gpasid, Some(hpasid));
                }
            }
            Ok((gpasid, Some(pages)))
        }
        Err(e) => {
            g.pasids.free(gpasid);
            // Given straight back: the hardware never saw it.
            let _ = source.release(hpasid);
            Err(e)
        }
    }
}

/// [`alloc_shared`] for a guest with a change log, out of the fast path's way.
#[inline(never)]
fn alloc_shared_logged<S: HostPasidSource>(
    g: &mut Guest,
    source: &mut S,
    host_pasids: &mut u32,
) -> Result<(u32, Option<PagesTouched>)> {
    alloc_shared::<S, true>(g, source, host_pasids)
}

/// Frees `gpasid` of `g` with every check in the documented order: what
/// [`Host::free`] does when its fast path (a mapped gPASID, no change log) does not
/// apply. Returns the host PASID of a shared gPASID and the page that changed.
#[inline(never)]
fn free_checked(
    g: &mut Guest,
    gpasid: u32,
    layout: &PasidLayout,
) -> Result<(Option<u32>, Option<PagesTouched>)> {
    let hpasid = g.held_host_pasid(gpasid, layout)?;
    if !g.bind_counts.is_empty() && g.bind_counts.contains_key(&gpasid) {
        return Err(Error::StillBound { pasid: gpasid });
    }
    match hpasid {
        Some(_) => {
            if let Some(log) = &g.changes {
                log.check_room()?;
            }
            // The entry keeps the host PASID, marked draining: nothing to grow.
            let pages = g.remap.retire(gpasid).map(|(_, pages)| pages);
            if let Some(log) = &mut g.changes {
                log.push(gpasid, None);
            }
            Ok((hpasid, pages))
        }
        None => {
            g.draining_local.try_insert_key(gpasid)?;
            Ok((None, None))
        }
    }
}
