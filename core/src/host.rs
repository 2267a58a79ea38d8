//! The host: its shared PASID allocator, its guests and their devices.
//!
//! Every method checks all it needs before it changes anything, so a call that returns
//! an error leaves the host exactly as it was. Checks run in a fixed order (guest,
//! platform, device, PASID, limits) so that the error a caller sees is predictable.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use crate::bitmap::IdBitmap;
use crate::error::{Error, Result};
use crate::layout::PasidLayout;
use crate::remap::{PagesTouched, RemapTable};
use crate::types::{DeviceKind, GuestConfig, GuestId, PasidKind, Platform, Rid};

const SLOT_BITS: u32 = 16;
const MAX_SLOTS: usize = 1 << SLOT_BITS;

/// A host's PASID state: the layout, the shared (global) PASIDs in use, the guests and
/// the devices attached to them.
///
/// `Host` is plain data with no interior mutability: share it between threads behind a
/// lock (the C layer does). Cloning a host is a deep copy, which makes undo cheap.
#[derive(Debug, Clone)]
pub struct Host {
    pub(crate) layout: PasidLayout,
    pub(crate) platform: Platform,
    pub(crate) shared: IdBitmap,
    pub(crate) slots: Vec<Slot>,
    pub(crate) free_slots: Vec<u16>,
    pub(crate) devices: BTreeMap<Rid, GuestId>,
}

#[derive(Debug, Clone)]
pub(crate) struct Slot {
    pub(crate) generation: u16,
    pub(crate) guest: Option<Guest>,
}

/// One guest's PASIDs and devices.
#[derive(Debug, Clone)]
pub(crate) struct Guest {
    pub(crate) config: GuestConfig,
    /// gPASIDs the guest holds, of both kinds (p2 guests only).
    pub(crate) pasids: IdBitmap,
    /// The shared ones, with their host PASIDs.
    pub(crate) remap: RemapTable,
    pub(crate) devices: BTreeMap<Rid, Device>,
    /// How many devices each bound gPASID is bound to.
    pub(crate) bind_counts: BTreeMap<u32, u32>,
}

#[derive(Debug, Clone)]
pub(crate) struct Device {
    pub(crate) kind: DeviceKind,
    /// p2: the gPASIDs bound to this device; p1: the PASIDs the guest recorded on it.
    pub(crate) pasids: BTreeSet<u32>,
}

/// The id of the guest in `slot`: the generation above the slot number.
fn guest_id(slot: usize, generation: u16) -> GuestId {
    GuestId(((generation as u32) << SLOT_BITS) | slot as u32)
}

/// The slot a guest id names (its low 16 bits).
#[inline(always)]
fn slot_of(id: GuestId) -> usize {
    (id.0 & (MAX_SLOTS as u32 - 1)) as usize
}

/// The generation a guest id carries (its high 16 bits).
#[inline(always)]
fn generation_of(id: GuestId) -> u16 {
    (id.0 >> SLOT_BITS) as u16
}

/// The live guest `id` names. A function of the slot table alone, not of the host, so
/// a caller can hold the guest and the host's shared allocator at once.
#[inline(always)]
fn live_guest_mut(slots: &mut [Slot], id: GuestId) -> Result<&mut Guest> {
    match slots.get_mut(slot_of(id)) {
        Some(Slot {
            generation,
            guest: Some(g),
        }) if generation_of(id) == *generation => Ok(g),
        _ => Err(Error::NoSuchGuest { guest: id }),
    }
}

impl Guest {
    pub(crate) fn new(config: GuestConfig, layout: &PasidLayout) -> Result<Self> {
        Ok(Guest {
            config,
            pasids: IdBitmap::new(layout.local())?,
            remap: RemapTable::new(layout.local())?,
            devices: BTreeMap::new(),
            bind_counts: BTreeMap::new(),
        })
    }

    fn device(&self, rid: Rid) -> Result<&Device> {
        self.devices.get(&rid).ok_or(Error::NoSuchDevice { rid })
    }

    fn require(&self, platform: Platform, what: &'static str) -> Result<()> {
        if self.config.platform == platform {
            Ok(())
        } else {
            Err(Error::NotSupported { what })
        }
    }

    fn check_held(&self, gpasid: u32, layout: &PasidLayout) -> Result<()> {
        if !layout.local().contains(&gpasid) {
            Err(Error::PasidOutOfRange { pasid: gpasid })
        } else if !self.pasids.is_used(gpasid) {
            Err(Error::NotAllocated { pasid: gpasid })
        } else {
            Ok(())
        }
    }

    /// The PASID to program into the host IOMMU for `gpasid` on a device of `kind`.
    pub(crate) fn programmed(&self, gpasid: u32, kind: DeviceKind) -> u32 {
        match kind {
            DeviceKind::Dedicated => gpasid,
            DeviceKind::SharedWq => self.remap.get(gpasid).unwrap_or(gpasid),
        }
    }
}

const P1_NO_ALLOC: &str = "the guest's vIOMMU offers no PASID allocation (p1): record its PASIDs";
const P2_NO_RECORD: &str = "the guest allocates PASIDs through its vIOMMU (p2): use alloc and bind";
const P1_NO_SHARED_WQ: &str = "shared work queues need a p2 guest";
const P1_HOST_NO_P2: &str = "a p1 host has no shared work queues, so it cannot host a p2 guest";

impl Host {
    /// An empty host. Fails only when memory for the shared allocator cannot be had.
    pub fn new(layout: PasidLayout, platform: Platform) -> Result<Self> {
        Ok(Host {
            shared: IdBitmap::new(layout.shared())?,
            layout,
            platform,
            slots: Vec::new(),
            free_slots: Vec::new(),
            devices: BTreeMap::new(),
        })
    }

    /// The host's layout.
    pub fn layout(&self) -> &PasidLayout {
        &self.layout
    }

    /// The host's platform.
    pub fn platform(&self) -> Platform {
        self.platform
    }

    /// How many shared (host-global) PASIDs are in use.
    pub fn shared_in_use(&self) -> u32 {
        self.shared.used()
    }

    /// How many shared PASIDs are free.
    pub fn shared_free(&self) -> u32 {
        self.shared.capacity() - self.shared.used()
    }

    // ---- guests ----

    /// Creates a guest. A p2 guest needs a p2 host.
    pub fn create_guest(&mut self, config: GuestConfig) -> Result<GuestId> {
        if config.platform == Platform::P2 && self.platform == Platform::P1 {
            return Err(Error::NotSupported {
                what: P1_HOST_NO_P2,
            });
        }
        let guest = Guest::new(config, &self.layout)?;
        self.install_guest(guest)
    }

    /// Puts a fully built guest in a free slot; the only step that can fail is memory.
    pub(crate) fn install_guest(&mut self, guest: Guest) -> Result<GuestId> {
        let slot = match self.free_slots.pop() {
            Some(slot) => slot as usize,
            None if self.slots.len() < MAX_SLOTS => {
                self.slots.try_reserve(1)?;
                // Every slot may be free at once: reserve now so destroy never allocates.
                let additional = self.slots.len() + 1 - self.free_slots.len();
                self.free_slots.try_reserve(additional)?;
                self.slots.push(Slot {
                    generation: 0,
                    guest: None,
                });
                self.slots.len() - 1
            }
            None => return Err(Error::TooManyGuests),
        };
        let entry = &mut self.slots[slot];
        entry.generation = entry.generation.wrapping_add(1).max(1);
        entry.guest = Some(guest);
        Ok(guest_id(slot, entry.generation))
    }

    /// Destroys a guest and releases everything it held: its shared PASIDs return to
    /// the host and its devices are detached.
    pub fn destroy_guest(&mut self, guest: GuestId) -> Result<()> {
        self.guest(guest)?;
        let slot = slot_of(guest);
        let g = self.slots[slot].guest.take().expect("checked above");
        for (_, hpasid) in g.remap.iter() {
            self.shared.free(hpasid);
        }
        for rid in g.devices.keys() {
            self.devices.remove(rid);
        }
        // Capacity for this push was reserved when the slot was made.
        self.free_slots.push(slot as u16);
        Ok(())
    }

    /// The ids of the live guests, in slot order.
    pub fn guests(&self) -> impl Iterator<Item = GuestId> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.guest.as_ref().map(|_| guest_id(i, s.generation)))
    }

    /// A guest's configuration.
    pub fn guest_config(&self, guest: GuestId) -> Result<GuestConfig> {
        Ok(self.guest(guest)?.config)
    }

    /// How many shared PASIDs a guest holds (what its quota limits).
    pub fn shared_held(&self, guest: GuestId) -> Result<u32> {
        Ok(self.guest(guest)?.remap.len())
    }

    #[inline(always)]
    pub(crate) fn guest(&self, guest: GuestId) -> Result<&Guest> {
        match self.slots.get(slot_of(guest)) {
            Some(Slot {
                generation,
                guest: Some(g),
            }) if generation_of(guest) == *generation => Ok(g),
            _ => Err(Error::NoSuchGuest { guest }),
        }
    }

    #[inline(always)]
    pub(crate) fn guest_mut(&mut self, guest: GuestId) -> Result<&mut Guest> {
        live_guest_mut(&mut self.slots, guest)
    }

    // ---- devices ----

    /// Attaches the device at `rid` to a guest. A RID belongs to at most one guest, and
    /// shared work queues need a p2 guest.
    pub fn attach(&mut self, guest: GuestId, rid: Rid, kind: DeviceKind) -> Result<()> {
        let g = self.guest(guest)?;
        if kind == DeviceKind::SharedWq {
            g.require(Platform::P2, P1_NO_SHARED_WQ)?;
        }
        if self.devices.contains_key(&rid) {
            return Err(Error::RidInUse { rid });
        }
        self.devices.insert(rid, guest);
        let device = Device {
            kind,
            pasids: BTreeSet::new(),
        };
        self.guest_mut(guest)?.devices.insert(rid, device);
        Ok(())
    }

    /// Detaches a device. Refused while PASIDs are bound (p2) or recorded (p1) on it.
    pub fn detach(&mut self, guest: GuestId, rid: Rid) -> Result<()> {
        let g = self.guest_mut(guest)?;
        if !g.device(rid)?.pasids.is_empty() {
            return Err(Error::DeviceBusy { rid });
        }
        g.devices.remove(&rid);
        self.devices.remove(&rid);
        Ok(())
    }

    /// The guest a RID is attached to, if any.
    pub fn owner(&self, rid: Rid) -> Option<GuestId> {
        self.devices.get(&rid).copied()
    }

    // ---- p2: allocation ----

    /// Allocates a guest PASID (p2 guests only): the lowest free gPASID of the guest
    /// range, and for [`PasidKind::Shared`] also the lowest free host PASID of the
    /// shared range, mapped in the guest's translation table.
    ///
    /// A shared request is checked against the quota, then the guest range, then the
    /// shared range.
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
        // One lookup, borrowing the guest and the shared allocator at once (disjoint
        // fields): this is a VM-exit path.
        let g = live_guest_mut(&mut self.slots, guest)?;
        g.require(Platform::P2, P1_NO_ALLOC)?;
        match kind {
            PasidKind::Local => {
                let gpasid = g.pasids.alloc().ok_or(Error::GuestRangeExhausted)?;
                Ok((gpasid, None))
            }
            PasidKind::Shared => {
                if g.remap.len() >= g.config.shared_quota {
                    return Err(Error::QuotaExceeded {
                        quota: g.config.shared_quota,
                    });
                }
                let gpasid = g.pasids.alloc().ok_or(Error::GuestRangeExhausted)?;
                let Some(hpasid) = self.shared.alloc() else {
                    g.pasids.free(gpasid);
                    return Err(Error::SharedRangeExhausted);
                };
                match g.remap.insert(gpasid, hpasid) {
                    Ok(pages) => Ok((gpasid, Some(pages))),
                    Err(e) => {
                        g.pasids.free(gpasid);
                        self.shared.free(hpasid);
                        Err(e)
                    }
                }
            }
        }
    }

    /// Frees a guest PASID (p2 guests only), and its host PASID if it is shared.
    /// Refused while the gPASID is bound to any device: unbind first, so a device can
    /// never keep DMA tagged with a PASID that may be handed out again.
    #[inline]
    pub fn free(&mut self, guest: GuestId, gpasid: u32) -> Result<()> {
        self.free_reporting_pages(guest, gpasid).map(|_| ())
    }

    /// [`Host::free`], also telling which translation-table page changed.
    #[inline(always)]
    pub fn free_reporting_pages(
        &mut self,
        guest: GuestId,
        gpasid: u32,
    ) -> Result<Option<PagesTouched>> {
        let g = live_guest_mut(&mut self.slots, guest)?;
        g.require(Platform::P2, P1_NO_ALLOC)?;
        g.check_held(gpasid, &self.layout)?;
        // The emptiness test is inline; the map lookup is a call.
        if !g.bind_counts.is_empty() && g.bind_counts.contains_key(&gpasid) {
            return Err(Error::StillBound { pasid: gpasid });
        }
        let pages = g.remap.remove(gpasid).map(|(hpasid, pages)| {
            self.shared.free(hpasid);
            pages
        });
        g.pasids.free(gpasid);
        Ok(pages)
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

    /// Binds a guest PASID to one of the guest's devices (p2) and returns the PASID to
    /// program into the host IOMMU for it: the gPASID itself on a dedicated RID, the
    /// host PASID on a shared work queue. A local gPASID cannot go to a shared WQ.
    pub fn bind(&mut self, guest: GuestId, gpasid: u32, rid: Rid) -> Result<u32> {
        let layout = &self.layout;
        let g = live_guest_mut(&mut self.slots, guest)?;
        g.require(Platform::P2, P1_NO_ALLOC)?;
        let kind = g.device(rid)?.kind;
        g.check_held(gpasid, layout)?;
        if kind == DeviceKind::SharedWq && g.remap.get(gpasid).is_none() {
            return Err(Error::NotShared { pasid: gpasid });
        }
        let device = g.devices.get_mut(&rid).expect("checked above");
        if !device.pasids.insert(gpasid) {
            return Err(Error::AlreadyBound { pasid: gpasid, rid });
        }
        *g.bind_counts.entry(gpasid).or_insert(0) += 1;
        Ok(g.programmed(gpasid, kind))
    }

    /// Undoes [`Host::bind`].
    pub fn unbind(&mut self, guest: GuestId, gpasid: u32, rid: Rid) -> Result<()> {
        let g = self.guest_mut(guest)?;
        g.require(Platform::P2, P1_NO_ALLOC)?;
        let device = g.devices.get_mut(&rid).ok_or(Error::NoSuchDevice { rid })?;
        if !device.pasids.remove(&gpasid) {
            return Err(Error::NotBound { pasid: gpasid, rid });
        }
        match g.bind_counts.get_mut(&gpasid) {
            Some(1) | None => {
                g.bind_counts.remove(&gpasid);
            }
            Some(n) => *n -= 1,
        }
        Ok(())
    }

    // ---- p1: recording the guest's own choices ----

    /// Records the PASID a p1 guest chose for one of its (dedicated) devices and returns
    /// the PASID to program: the same number. It must lie in the guest range and be new
    /// on that RID; the same number on two RIDs of one guest is fine.
    pub fn record(&mut self, guest: GuestId, rid: Rid, pasid: u32) -> Result<u32> {
        let local = self.layout.local();
        let g = self.guest_mut(guest)?;
        g.require(Platform::P1, P2_NO_RECORD)?;
        let device = g.devices.get_mut(&rid).ok_or(Error::NoSuchDevice { rid })?;
        if !local.contains(&pasid) {
            return Err(Error::PasidOutOfRange { pasid });
        }
        if !device.pasids.insert(pasid) {
            return Err(Error::PasidInUse { pasid });
        }
        Ok(pasid)
    }

    /// Forgets a PASID a p1 guest recorded on a device.
    pub fn release(&mut self, guest: GuestId, rid: Rid, pasid: u32) -> Result<()> {
        let g = self.guest_mut(guest)?;
        g.require(Platform::P1, P2_NO_RECORD)?;
        let device = g.devices.get_mut(&rid).ok_or(Error::NoSuchDevice { rid })?;
        if !device.pasids.remove(&pasid) {
            return Err(Error::NotAllocated { pasid });
        }
        Ok(())
    }

    /// Heap bytes the host holds (allocators, tables and registries), counted directly.
    pub fn heap_bytes(&self) -> usize {
        use core::mem::size_of;
        let per_guest: usize = self
            .slots
            .iter()
            .filter_map(|s| s.guest.as_ref())
            .map(|g| {
                g.pasids.heap_bytes()
                    + g.remap.heap_bytes()
                    + g.devices.len() * (size_of::<Rid>() + size_of::<Device>())
                    + g.devices
                        .values()
                        .map(|d| d.pasids.len() * 4)
                        .sum::<usize>()
                    + g.bind_counts.len() * 8
            })
            .sum();
        self.shared.heap_bytes()
            + self.slots.capacity() * size_of::<Slot>()
            + self.free_slots.capacity() * 2
            + self.devices.len() * (size_of::<Rid>() + size_of::<GuestId>())
            + per_guest
    }
}
