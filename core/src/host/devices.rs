//! RIDs and the guests that use them: attach, detach, bind, and p1's recording.
//!
//! A RID is the host's requester ID, what the host IOMMU is programmed on. A guest
//! uses a RID one way or both ([`DeviceKind`]): at most one guest has its dedicated use,
//! any number of p2 guests its shared-WQ use. How the guest itself sees the device (its
//! virtual BDF, a SIOV interface's own config space) is the VMM's business; the library
//! works on host RIDs, and migration maps them with the RID map.

use super::{live_guest_mut, Device, Guest, Host, RidUsers, P1_NO_ALLOC, P2_NO_RECORD};
use crate::error::{Error, Result};
use crate::source::HostPasidSource;
use crate::types::{DeviceKind, GuestId, Platform, Rid};

const P1_NO_SHARED_WQ: &str = "shared work queues need a p2 guest";

impl Guest {
    /// The guest's use of `rid` that a call naming no use means: the only one it has.
    pub(crate) fn only_use(&self, rid: Rid) -> Result<DeviceKind> {
        let dedicated = self.devices.contains_key(&(rid, DeviceKind::Dedicated));
        let shared = self.devices.contains_key(&(rid, DeviceKind::SharedWq));
        match (dedicated, shared) {
            (true, true) => Err(Error::AmbiguousUse { rid }),
            (true, false) => Ok(DeviceKind::Dedicated),
            (false, true) => Ok(DeviceKind::SharedWq),
            (false, false) => Err(Error::NoSuchDevice { rid }),
        }
    }

    fn device_mut(&mut self, rid: Rid, kind: DeviceKind) -> Result<&mut Device> {
        self.devices
            .get_mut(&(rid, kind))
            .ok_or(Error::NoSuchDevice { rid })
    }
}

impl<S: HostPasidSource> Host<S> {
    /// Gives a guest a use of the device at `rid`. At most one guest has the dedicated
    /// use of a RID; any number of p2 guests may each have its shared-WQ use, and one
    /// guest may have both (a function with a dedicated and a shared WQ). Refused with
    /// [`Error::RidInUse`] when another guest has the dedicated use, or this guest has
    /// this use already.
    pub fn attach(&mut self, guest: GuestId, rid: Rid, kind: DeviceKind) -> Result<()> {
        let g = self.guest(guest)?;
        if kind == DeviceKind::SharedWq {
            g.require(Platform::P2, P1_NO_SHARED_WQ)?;
        }
        if g.devices.contains_key(&(rid, kind))
            || (kind == DeviceKind::Dedicated
                && self.rids.get(&rid).is_some_and(|u| u.dedicated.is_some()))
        {
            return Err(Error::RidInUse { rid });
        }
        // Reserve everything first, so the inserts below cannot fail half way.
        let users = self.rids.get_or_try_insert_with(rid, RidUsers::default)?;
        let added = match kind {
            DeviceKind::Dedicated => {
                users.dedicated = Some(guest);
                Ok(true)
            }
            DeviceKind::SharedWq => users.shared_wq.try_insert_key(guest),
        };
        let added = added.and_then(|_| {
            let g = live_guest_mut(&mut self.slots, guest).expect("checked above");
            g.devices.try_insert((rid, kind), Device::default())
        });
        if let Err(e) = added {
            self.remove_user(rid, kind, guest);
            return Err(e);
        }
        Ok(())
    }

    /// Takes one of a guest's uses of a RID away. Refused while PASIDs are bound (p2)
    /// or recorded (p1) on it ([`Error::DeviceBusy`]): unbind first, and clear what
    /// [`Host::unbind`] returns. Other guests' uses of the RID are untouched.
    pub fn detach_use(&mut self, guest: GuestId, rid: Rid, kind: DeviceKind) -> Result<()> {
        let g = self.guest_mut(guest)?;
        if !g.device_mut(rid, kind)?.pasids.is_empty() {
            return Err(Error::DeviceBusy { rid });
        }
        g.devices.remove(&(rid, kind));
        self.remove_user(rid, kind, guest);
        Ok(())
    }

    /// Takes all of a guest's uses of a RID away (see [`Host::detach_use`]); refused,
    /// with nothing changed, if any of them is busy.
    pub fn detach(&mut self, guest: GuestId, rid: Rid) -> Result<()> {
        let g = self.guest(guest)?;
        let uses = [DeviceKind::Dedicated, DeviceKind::SharedWq];
        let mut found = false;
        for kind in uses {
            if let Some(d) = g.devices.get(&(rid, kind)) {
                found = true;
                if !d.pasids.is_empty() {
                    return Err(Error::DeviceBusy { rid });
                }
            }
        }
        if !found {
            return Err(Error::NoSuchDevice { rid });
        }
        for kind in uses {
            if self.guest(guest)?.devices.contains_key(&(rid, kind)) {
                self.detach_use(guest, rid, kind)?;
            }
        }
        Ok(())
    }

    /// The guest with the dedicated use of a RID, if any.
    pub fn owner(&self, rid: Rid) -> Option<GuestId> {
        self.rids.get(&rid).and_then(|u| u.dedicated)
    }

    /// Every guest using a RID, with its use: the dedicated one first, then the
    /// shared-WQ users by id.
    pub fn rid_users(&self, rid: Rid) -> impl Iterator<Item = (GuestId, DeviceKind)> + '_ {
        let users = self.rids.get(&rid);
        let dedicated = users.and_then(|u| u.dedicated);
        dedicated
            .map(|g| (g, DeviceKind::Dedicated))
            .into_iter()
            .chain(
                users
                    .into_iter()
                    .flat_map(|u| u.shared_wq.keys().map(|&g| (g, DeviceKind::SharedWq))),
            )
    }

    /// Forgets that `guest` uses `rid` as `kind` in the host's RID registry.
    pub(crate) fn remove_user(&mut self, rid: Rid, kind: DeviceKind, guest: GuestId) {
        let Some(users) = self.rids.get_mut(&rid) else {
            return;
        };
        match kind {
            DeviceKind::Dedicated if users.dedicated == Some(guest) => users.dedicated = None,
            DeviceKind::Dedicated => {}
            DeviceKind::SharedWq => {
                users.shared_wq.remove(&guest);
            }
        }
        if users.is_empty() {
            self.rids.remove(&rid);
        }
    }

    /// Binds a guest PASID to the guest's only use of `rid` (p2) and returns the PASID
    /// to program into the host IOMMU for it: the gPASID itself on a dedicated use, the
    /// host PASID on a shared WQ. A guest with both uses of the RID must say which:
    /// [`Host::bind_use`].
    pub fn bind(&mut self, guest: GuestId, gpasid: u32, rid: Rid) -> Result<u32> {
        let g = self.guest(guest)?;
        g.require(Platform::P2, P1_NO_ALLOC)?;
        let kind = g.only_use(rid)?;
        self.bind_use(guest, gpasid, rid, kind)
    }

    /// Binds a guest PASID to the guest's `kind` use of `rid` (p2) and returns the PASID
    /// to program there (see [`Host::bind`]). A local gPASID cannot go to a shared WQ.
    pub fn bind_use(
        &mut self,
        guest: GuestId,
        gpasid: u32,
        rid: Rid,
        kind: DeviceKind,
    ) -> Result<u32> {
        let layout = &self.layout;
        let g = live_guest_mut(&mut self.slots, guest)?;
        g.require(Platform::P2, P1_NO_ALLOC)?;
        if !g.devices.contains_key(&(rid, kind)) {
            return Err(Error::NoSuchDevice { rid });
        }
        g.check_held(gpasid, layout)?;
        if kind == DeviceKind::SharedWq && g.remap.get(gpasid).is_none() {
            return Err(Error::NotShared { pasid: gpasid });
        }
        if g.device_mut(rid, kind)?.pasids.contains(&gpasid) {
            return Err(Error::AlreadyBound { pasid: gpasid, rid });
        }
        // Both inserts reserve before they change anything; undo the first if the
        // second fails.
        let count = g.bind_counts.get_or_try_insert_with(gpasid, || 0)?;
        *count += 1;
        if let Err(e) = g.device_mut(rid, kind)?.pasids.try_insert_key(gpasid) {
            unbump(g, gpasid);
            return Err(e);
        }
        Ok(g.programmed(gpasid, kind))
    }

    /// Undoes [`Host::bind`] and returns the PASID that was programmed for the binding,
    /// which the VMM must clear on that RID. The gPASID stays the guest's.
    pub fn unbind(&mut self, guest: GuestId, gpasid: u32, rid: Rid) -> Result<u32> {
        let g = self.guest(guest)?;
        g.require(Platform::P2, P1_NO_ALLOC)?;
        let kind = match g.only_use(rid) {
            // Both uses: the one it is bound on, if only one.
            Err(Error::AmbiguousUse { .. }) => {
                let on = |k| {
                    g.devices
                        .get(&(rid, k))
                        .is_some_and(|d| d.pasids.contains(&gpasid))
                };
                match (on(DeviceKind::Dedicated), on(DeviceKind::SharedWq)) {
                    (true, false) => DeviceKind::Dedicated,
                    (false, true) => DeviceKind::SharedWq,
                    (true, true) => return Err(Error::AmbiguousUse { rid }),
                    (false, false) => return Err(Error::NotBound { pasid: gpasid, rid }),
                }
            }
            other => other?,
        };
        self.unbind_use(guest, gpasid, rid, kind)
    }

    /// Undoes [`Host::bind_use`]; returns the PASID to clear on that RID.
    pub fn unbind_use(
        &mut self,
        guest: GuestId,
        gpasid: u32,
        rid: Rid,
        kind: DeviceKind,
    ) -> Result<u32> {
        let g = self.guest_mut(guest)?;
        g.require(Platform::P2, P1_NO_ALLOC)?;
        if g.device_mut(rid, kind)?.pasids.remove(&gpasid).is_none() {
            return Err(Error::NotBound { pasid: gpasid, rid });
        }
        let programmed = g.programmed(gpasid, kind);
        unbump(g, gpasid);
        Ok(programmed)
    }

    // ---- p1: recording the guest's own choices ----

    /// Records the PASID a p1 guest chose for its dedicated use of a RID and returns
    /// the PASID to program: the same number. It must lie in the guest range and be new
    /// on that RID; the same number on two RIDs of one guest is fine.
    pub fn record(&mut self, guest: GuestId, rid: Rid, pasid: u32) -> Result<u32> {
        let local = self.layout.local();
        let g = self.guest_mut(guest)?;
        g.require(Platform::P1, P2_NO_RECORD)?;
        let device = g.device_mut(rid, DeviceKind::Dedicated)?;
        if !local.contains(&pasid) {
            return Err(Error::PasidOutOfRange { pasid });
        }
        if !device.pasids.try_insert_key(pasid)? {
            return Err(Error::PasidInUse { pasid });
        }
        Ok(pasid)
    }

    /// Forgets a PASID a p1 guest recorded on a device; the VMM clears its entry.
    pub fn release(&mut self, guest: GuestId, rid: Rid, pasid: u32) -> Result<()> {
        let g = self.guest_mut(guest)?;
        g.require(Platform::P1, P2_NO_RECORD)?;
        let device = g.device_mut(rid, DeviceKind::Dedicated)?;
        if device.pasids.remove(&pasid).is_none() {
            return Err(Error::NotAllocated { pasid });
        }
        Ok(())
    }
}

/// One binding of `gpasid` fewer.
fn unbump(g: &mut Guest, gpasid: u32) {
    match g.bind_counts.get_mut(&gpasid) {
        Some(n) if *n > 1 => *n -= 1,
        _ => {
            g.bind_counts.remove(&gpasid);
        }
    }
}
