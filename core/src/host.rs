//! The host: where its host PASIDs come from, its guests and the RIDs they use.
//!
//! Every method checks all it needs before it changes anything, so a call that returns
//! an error leaves the host exactly as it was. Checks run in a fixed order (guest,
//! platform, device, PASID, limits) so that the error a caller sees is predictable.
//!
//! The methods are grouped by job: guests here, RIDs and bindings in `devices`,
//! PASID allocation and translation in `pasids`, the teardown lifecycle in `teardown`.
//!
//! # The lifecycle of a PASID
//!
//! ```text
//! free --alloc--> held --free / destroy_guest--> draining --complete_teardown--> free
//! ```
//!
//! A freed gPASID stops translating at once (its table entry is invalid), but neither
//! it nor its host PASID is handed out again until the VMM says the hardware has let go
//! (the PASID-table entries cleared, IOTLB and device TLB invalidated, the work queue
//! drained): [`Host::complete_teardown`]. Quotas count draining PASIDs, so a guest
//! cannot churn past its quota. A destroyed guest's host PASIDs drain the same way.

mod devices;
mod orphans;
mod pasids;
mod teardown;

use alloc::vec::Vec;

use crate::bitmap::IdBitmap;
use crate::changes::ChangeLog;
use crate::contract::GuestContract;
use crate::error::{Error, Result};
use crate::layout::PasidLayout;
use crate::migrate::MigrationIdentity;
use crate::remap::RemapTable;
use crate::sorted::{SortedMap, SortedSet};
use crate::source::HostPasidSource;
use crate::types::{DeviceKind, Draining, GuestConfig, GuestId, Platform, ProgrammedEntry, Rid};
use orphans::Orphans;

const SLOT_BITS: u32 = 16;
const MAX_SLOTS: usize = 1 << SLOT_BITS;

/// A host's PASID state: the layout, where its host PASIDs come from, the guests and
/// the RIDs they use.
///
/// `S` is the [`HostPasidSource`] of host (shared-range) PASIDs: by default the
/// in-process [`IdBitmap`] ([`Host::new`]); a broker client or a VMM's own allocator
/// through [`Host::with_source`].
///
/// `Host` is plain data with no interior mutability: share it between threads behind a
/// lock (the C layer does). Cloning a host with the in-process source is a deep copy,
/// which makes undo cheap.
#[derive(Debug, Clone)]
pub struct Host<S = IdBitmap> {
    pub(crate) layout: PasidLayout,
    pub(crate) platform: Platform,
    pub(crate) source: S,
    /// Host PASIDs taken from the source and not given back: held or draining.
    pub(crate) host_pasids: u32,
    pub(crate) slots: Vec<Slot>,
    pub(crate) free_slots: Vec<u16>,
    /// Who uses each RID, and how.
    pub(crate) rids: SortedMap<Rid, RidUsers>,
    /// Draining host PASIDs of destroyed guests (a live guest keeps its own), sorted.
    pub(crate) orphans: Orphans,
    /// Host PASIDs whose teardown is confirmed but which the source did not take back
    /// (a broker that was unreachable): still ours, retried on the next teardown.
    pub(crate) release_backlog: Vec<u32>,
    /// This host's id in migration blobs it writes (0 until the VMM sets one).
    pub(crate) host_id: u64,
    /// The identities of the last blobs imported here, oldest first, so a replayed
    /// blob is refused (bounded: see `migrate::REMEMBERED_IMPORTS`).
    pub(crate) imported: Vec<MigrationIdentity>,
}

/// A guest slot. Not an `Option<Guest>`: its tag would sit in a niche of the guest's
/// last field, a cache line of its own; here one compare of `occupant` in the first
/// line checks an id's slot, generation and liveness at once.
// `repr(C)`, line-aligned, the id first and the guest's hot fields right after it (see
// `Guest`): with thousands of guests every line of a slot that a VM-exit path touches
// is a likely cache miss.
#[derive(Debug, Clone)]
#[repr(C, align(64))]
pub(crate) struct Slot {
    /// The id of the guest living here; when none does, [`vacant_mark`], which no id
    /// equals.
    occupant: u32,
    /// The generation of the last guest installed here.
    generation: u16,
    /// The live guest, or [`Guest::vacant`], which holds no memory.
    guest: Guest,
}

/// What an empty slot's `occupant` holds: an id whose slot bits name another slot, so
/// that no id that indexes this slot equals it (and its generation, 0, is no live
/// guest's: a slot's first guest has generation 1).
fn vacant_mark(slot: usize) -> u32 {
    (slot as u32) ^ 1
}

impl Slot {
    fn vacant(slot: usize) -> Self {
        Slot {
            occupant: vacant_mark(slot),
            generation: 0,
            guest: Guest::vacant(),
        }
    }

    /// The guest living here, if any.
    pub(crate) fn live(&self) -> Option<&Guest> {
        (generation_of(GuestId(self.occupant)) != 0).then_some(&self.guest)
    }

    /// The id of the guest living here, if any.
    fn live_id(&self) -> Option<GuestId> {
        self.live().map(|_| GuestId(self.occupant))
    }

    /// Empties the slot; returns the guest that lived here.
    fn vacate(&mut self, slot: usize) -> Guest {
        self.occupant = vacant_mark(slot);
        core::mem::replace(&mut self.guest, Guest::vacant())
    }
}

/// The guests using one RID.
#[derive(Debug, Clone, Default)]
pub(crate) struct RidUsers {
    pub(crate) dedicated: Option<GuestId>,
    pub(crate) shared_wq: SortedSet<GuestId>,
}

impl RidUsers {
    fn is_empty(&self) -> bool {
        self.dedicated.is_none() && self.shared_wq.is_empty()
    }
}

/// One guest's PASIDs and devices.
// `repr(C)`, what alloc, free and teardown read first, in as few of the slot's lines as
// fit (on 64-bit targets, checked by `slot_layout` below): the change log's presence
// and the bind counts' length in the slot's first line with its id, the gPASID
// bitmap's hot head (`IdBitmap::HOT_BYTES`) filling the second, and the configuration
// and the translation map's hot head (`RemapTable::HOT_BYTES`) in the fourth, which
// the bitmap's cold tail leads to. The configuration sits there, not first, so that
// the bitmap's head fits its line whole: three lines a step, not four. The map's inline
// head (its lowest 128 entries) lies after them, so the line of the entry a step works
// on is a fixed offset from the slot too: all four loads issue at once, none waiting
// for a pointer. What only set-up, devices and migration read comes last.
#[derive(Debug, Clone)]
#[repr(C)]
pub(crate) struct Guest {
    /// The translation-change log, when the VMM turned it on.
    pub(crate) changes: Option<ChangeLog>,
    /// How many devices each bound gPASID is bound to.
    pub(crate) bind_counts: SortedMap<u32, u32>,
    /// gPASIDs the guest holds or that drain, of both kinds (p2 guests only).
    pub(crate) pasids: IdBitmap,
    /// Its platform and shared quota, as created or imported.
    pub(crate) config: GuestConfig,
    /// The shared ones it holds, with their host PASIDs.
    pub(crate) remap: RemapTable,
    /// What the guest's vIOMMU told it; a p2 guest's gPASIDs come from its range.
    pub(crate) contract: GuestContract,
    /// The guest's uses of RIDs.
    pub(crate) devices: SortedMap<(Rid, DeviceKind), Device>,
    /// Freed local gPASIDs whose teardown is not confirmed. Freed shared ones drain
    /// in `remap`, their entry marked ([`RemapTable::retire`]): one store each way on
    /// the VM-exit path, and no list that could need memory.
    pub(crate) draining_local: SortedSet<u32>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Device {
    /// p2: the gPASIDs bound to this use; p1: the PASIDs the guest recorded on it.
    pub(crate) pasids: SortedSet<u32>,
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
/// a caller can hold the guest and the host's source at once.
#[inline(always)]
pub(crate) fn live_guest_mut(slots: &mut [Slot], id: GuestId) -> Result<&mut Guest> {
    match slots.get_mut(slot_of(id)) {
        Some(slot) if slot.occupant == id.0 => Ok(&mut slot.guest),
        _ => Err(Error::NoSuchGuest { guest: id }),
    }
}

impl Guest {
    /// The stand-in an empty slot keeps: no range, no memory.
    fn vacant() -> Self {
        Guest {
            config: GuestConfig::p2(0),
            changes: None,
            bind_counts: SortedMap::new(),
            pasids: IdBitmap::empty(),
            remap: RemapTable::empty(),
            contract: GuestContract {
                width: 0,
                local_start: 0,
                local_end: 0,
                capabilities: 0,
            },
            devices: SortedMap::new(),
            draining_local: SortedSet::new(),
        }
    }

    /// A guest with nothing yet. `contract` was checked against `layout` (its range
    /// lies in the local range), so a p2 guest allocates only inside what it was told.
    pub(crate) fn new(
        config: GuestConfig,
        contract: GuestContract,
        layout: &PasidLayout,
    ) -> Result<Self> {
        let range = match config.platform {
            Platform::P2 => contract.local(),
            Platform::P1 => layout.local(),
        };
        Ok(Guest {
            config,
            contract,
            changes: None,
            pasids: IdBitmap::new(range)?,
            remap: RemapTable::new(layout.local())?,
            devices: SortedMap::new(),
            bind_counts: SortedMap::new(),
            draining_local: SortedSet::new(),
        })
    }

    pub(crate) fn require(&self, platform: Platform, what: &'static str) -> Result<()> {
        if self.config.platform == platform {
            Ok(())
        } else {
            Err(Error::NotSupported { what })
        }
    }

    /// `gpasid` is one the guest holds (not free, not draining).
    #[inline(always)]
    pub(crate) fn check_held(&self, gpasid: u32, layout: &PasidLayout) -> Result<()> {
        self.held_host_pasid(gpasid, layout).map(|_| ())
    }

    /// [`Guest::check_held`], also giving the host PASID of a shared gPASID (one
    /// lookup of the entry for both).
    #[inline(always)]
    pub(crate) fn held_host_pasid(&self, gpasid: u32, layout: &PasidLayout) -> Result<Option<u32>> {
        // A mapped entry is held (only an allocated gPASID is ever mapped): one lookup
        // answers the usual case of a shared gPASID.
        if let Some(hpasid) = self.remap.get(gpasid) {
            return Ok(Some(hpasid));
        }
        if !self.pasids.is_used(gpasid) {
            // The guest's allocator covers only its part of the local range, so the
            // range test is needed only to name the error.
            return Err(if layout.local().contains(&gpasid) {
                Error::NotAllocated { pasid: gpasid }
            } else {
                Error::PasidOutOfRange { pasid: gpasid }
            });
        }
        // Not mapped: local, or draining of either kind.
        if self.is_draining(gpasid) {
            return Err(Error::Draining { pasid: gpasid });
        }
        Ok(None)
    }

    /// Whether `item` (of this guest) drains exactly as given, and its invalidation is
    /// not still owed to the CPU's table (fail closed: the entry must be gone before
    /// the host PASID can go to anyone else).
    #[inline]
    pub(crate) fn check_draining(&self, item: &Draining) -> Result<()> {
        let as_given = match item.hpasid {
            Some(hpasid) => self.remap.draining(item.gpasid) == Some(hpasid),
            None => self.draining_local.contains(&item.gpasid),
        };
        if !as_given {
            Err(Error::NotDraining { pasid: item.gpasid })
        } else if self
            .changes
            .as_ref()
            .is_some_and(|log| log.unmap_pending(item.gpasid))
        {
            Err(Error::ChangePending { pasid: item.gpasid })
        } else {
            Ok(())
        }
    }

    /// Whether `gpasid` drains (freed, its teardown not confirmed).
    #[inline(always)]
    pub(crate) fn is_draining(&self, gpasid: u32) -> bool {
        self.remap.draining(gpasid).is_some()
            || (!self.draining_local.is_empty() && self.draining_local.contains(&gpasid))
    }

    /// How many gPASIDs drain, of both kinds.
    pub(crate) fn draining_len(&self) -> usize {
        self.remap.draining_len() as usize + self.draining_local.len()
    }

    /// The draining gPASIDs with their host PASIDs (`None`: local), by gPASID.
    pub(crate) fn draining(&self) -> impl Iterator<Item = (u32, Option<u32>)> + '_ {
        let mut local = self.draining_local.keys().copied().peekable();
        let mut shared = self.remap.iter_draining().peekable();
        // Two sorted lists of distinct gPASIDs, merged.
        core::iter::from_fn(move || match (local.peek(), shared.peek()) {
            (Some(&l), Some(&(s, _))) if l < s => local.next().map(|l| (l, None)),
            (_, Some(_)) => shared.next().map(|(s, h)| (s, Some(h))),
            (Some(_), None) => local.next().map(|l| (l, None)),
            (None, None) => None,
        })
    }

    /// Shared PASIDs the quota counts: held and draining.
    #[inline(always)]
    pub(crate) fn shared_charged(&self) -> u32 {
        self.remap.holding()
    }

    /// The PASID to program into the host IOMMU for `gpasid` on a use of `kind`.
    pub(crate) fn programmed(&self, gpasid: u32, kind: DeviceKind) -> u32 {
        match kind {
            DeviceKind::Dedicated => gpasid,
            DeviceKind::SharedWq => self.remap.get(gpasid).unwrap_or(gpasid),
        }
    }

    /// Every entry the VMM programmed for this guest's bindings (p2) and recorded
    /// PASIDs (p1), by RID, use and gPASID.
    pub(crate) fn programmed_entries(&self) -> impl Iterator<Item = ProgrammedEntry> + '_ {
        self.devices.iter().flat_map(move |(&(rid, kind), d)| {
            d.pasids.keys().map(move |&gpasid| ProgrammedEntry {
                rid,
                kind,
                gpasid,
                pasid: self.programmed(gpasid, kind),
            })
        })
    }

    /// How many entries [`Guest::programmed_entries`] yields.
    pub(crate) fn programmed_count(&self) -> usize {
        self.devices.values().map(|d| d.pasids.len()).sum()
    }
}

pub(crate) const P1_NO_ALLOC: &str =
    "the guest's vIOMMU offers no PASID allocation (p1): record its PASIDs";
pub(crate) const P2_NO_RECORD: &str =
    "the guest allocates PASIDs through its vIOMMU (p2): use alloc and bind";
const P1_NOT_EXACT: &str =
    "a p1 guest learns only a PASID width: it can be told exactly 1..2^width, no other range";
const P1_HOST_NO_P2: &str = "a p1 host has no shared work queues, so it cannot host a p2 guest";
const SOURCE_RANGE_DIFFERS: &str =
    "the host-PASID source serves another range than the layout's shared range";

impl Host {
    /// An empty host that owns its whole shared range in-process. Fails only when
    /// memory for the shared allocator cannot be had.
    pub fn new(layout: PasidLayout, platform: Platform) -> Result<Self> {
        let source = IdBitmap::new(layout.shared())?;
        Self::with_source(layout, platform, source)
    }
}

impl<S: HostPasidSource> Host<S> {
    /// An empty host whose host PASIDs come from `source` (a broker client, a VMM's
    /// own allocator). The source must serve exactly the layout's shared range.
    pub fn with_source(layout: PasidLayout, platform: Platform, source: S) -> Result<Self> {
        if source.range() != layout.shared() {
            return Err(Error::IncompatibleLayout {
                reason: SOURCE_RANGE_DIFFERS,
            });
        }
        Ok(Host {
            layout,
            platform,
            source,
            host_pasids: 0,
            slots: Vec::new(),
            free_slots: Vec::new(),
            rids: SortedMap::new(),
            orphans: Orphans::default(),
            release_backlog: Vec::new(),
            host_id: 0,
            imported: Vec::new(),
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

    /// Where the host's host PASIDs come from.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// How many host (shared-range) PASIDs this host holds: held by guests, draining,
    /// or confirmed but not yet taken back by the source.
    pub fn shared_in_use(&self) -> u32 {
        self.host_pasids
    }

    /// How many shared PASIDs are free, as far as the source knows (for the in-process
    /// source: exactly; for a broker: its last figure, for the whole machine).
    pub fn shared_free(&self) -> u32 {
        self.source.free_count()
    }

    // ---- guests ----

    /// Creates a guest. A p2 guest needs a p2 host. Its vIOMMU is taken to advertise
    /// [`GuestContract::for_layout`]; [`Host::create_guest_advertising`] says otherwise.
    pub fn create_guest(&mut self, config: GuestConfig) -> Result<GuestId> {
        let contract = GuestContract::for_layout(&self.layout, config.platform);
        self.create_guest_told(config, contract)
    }

    /// Creates a guest whose vIOMMU advertises `contract` (the width, the range a p2
    /// guest's gPASIDs come from, the capability bits). The contract must be one its
    /// platform can state ([`GuestContract::validate`]; for p1 exactly `1..2^width`,
    /// [`GuestContract::is_exact`]) and this host must honour it
    /// ([`Error::ContractNotHonoured`]). It migrates with the guest, and a destination
    /// that cannot honour it refuses the import.
    pub fn create_guest_advertising(
        &mut self,
        config: GuestConfig,
        contract: GuestContract,
    ) -> Result<GuestId> {
        if !contract.is_exact(config.platform) {
            return Err(Error::IncompatibleLayout {
                reason: P1_NOT_EXACT,
            });
        }
        self.create_guest_told(config, contract)
    }

    fn create_guest_told(
        &mut self,
        config: GuestConfig,
        contract: GuestContract,
    ) -> Result<GuestId> {
        if config.platform == Platform::P2 && self.platform == Platform::P1 {
            return Err(Error::NotSupported {
                what: P1_HOST_NO_P2,
            });
        }
        contract.validate(config.platform)?;
        contract.check_honoured(&self.layout, self.platform)?;
        let guest = Guest::new(config, contract, &self.layout)?;
        self.install_guest(guest)
    }

    /// What a guest's vIOMMU advertised (see [`Host::create_guest_advertising`]).
    pub fn guest_contract(&self, guest: GuestId) -> Result<GuestContract> {
        Ok(self.guest(guest)?.contract)
    }

    /// Names this host in the migration blobs it writes (part of each blob's
    /// [`MigrationIdentity`]). Give every host of a fleet its own id (a hash of its
    /// machine id, say): destinations refuse a second blob with the same identity.
    pub fn set_host_id(&mut self, host_id: u64) {
        self.host_id = host_id;
    }

    /// This host's id (see [`Host::set_host_id`]); 0 until set.
    pub fn host_id(&self) -> u64 {
        self.host_id
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
                self.slots.push(Slot::vacant(self.slots.len()));
                self.slots.len() - 1
            }
            None => return Err(Error::TooManyGuests),
        };
        let entry = &mut self.slots[slot];
        // Never wraps: a slot at the last generation is retired by destroy_guest.
        entry.generation += 1;
        let id = guest_id(slot, entry.generation);
        entry.occupant = id.0;
        entry.guest = guest;
        Ok(id)
    }

    /// Takes a guest out again right after [`Host::install_guest`] (an import that
    /// failed after installing it), so that the host is as it was: nobody has seen the
    /// id, so the slot's generation goes back too. The slot is free again, and
    /// `free_slots` has room: install took it from there or reserved for it.
    pub(crate) fn uninstall_guest(&mut self, guest: GuestId) {
        let slot = slot_of(guest);
        self.slots[slot].vacate(slot);
        self.slots[slot].generation -= 1;
        self.free_slots.push(slot as u16);
    }

    /// Destroys a guest, whatever it still holds, and returns every entry the VMM
    /// programmed for it (its bindings and recorded PASIDs), which the VMM must now
    /// clear. Its devices are detached at once (on a shared RID, only this guest's
    /// use goes); its host PASIDs drain like freed ones (see [`Host::draining`]) until
    /// the VMM calls [`Host::complete_teardown`] for them.
    pub fn destroy_guest(&mut self, guest: GuestId) -> Result<Vec<ProgrammedEntry>> {
        let g = self.guest(guest)?;
        let mut entries = Vec::new();
        entries.try_reserve_exact(g.programmed_count())?;
        entries.extend(g.programmed_entries());
        self.orphans.try_reserve(g.shared_charged() as usize)?;
        // Reserved when the slot was made, but a clone of the host keeps no spare
        // capacity: make sure (a no-op when it is there).
        self.free_slots.try_reserve(1)?;

        let slot = slot_of(guest);
        let g = self.slots[slot].vacate(slot);
        let held = g
            .remap
            .iter()
            .map(|(gpasid, hpasid)| (gpasid, Some(hpasid)));
        let draining = g.draining();
        // Reserved above, so this cannot allocate. Local gPASIDs need no draining once
        // their guest is gone: nobody else can be handed those numbers. No orphan has
        // this guest's id yet (ids are never reused).
        self.orphans.add_guest(
            held.chain(draining)
                .filter(|(_, hpasid)| hpasid.is_some())
                .map(|(gpasid, hpasid)| Draining {
                    guest,
                    gpasid,
                    hpasid,
                }),
        );
        for &(rid, kind) in g.devices.keys() {
            self.remove_user(rid, kind, guest);
        }
        // A slot at the last generation is retired: its next id would wrap onto an old
        // one. Capacity for this push was reserved above.
        if self.slots[slot].generation < u16::MAX {
            self.free_slots.push(slot as u16);
        }
        Ok(entries)
    }

    /// The ids of the live guests, in slot order.
    pub fn guests(&self) -> impl Iterator<Item = GuestId> + '_ {
        self.slots.iter().filter_map(Slot::live_id)
    }

    /// A guest's configuration.
    pub fn guest_config(&self, guest: GuestId) -> Result<GuestConfig> {
        Ok(self.guest(guest)?.config)
    }

    /// How many shared PASIDs count against a guest's quota: the ones it holds and the
    /// ones still draining.
    pub fn shared_held(&self, guest: GuestId) -> Result<u32> {
        Ok(self.guest(guest)?.shared_charged())
    }

    /// Every entry the VMM programmed for a guest (its bindings on p2, its recorded
    /// PASIDs on p1), by RID, use and gPASID: what [`Host::destroy_guest`] would return.
    pub fn programmed_entries(
        &self,
        guest: GuestId,
    ) -> Result<impl Iterator<Item = ProgrammedEntry> + '_> {
        Ok(self.guest(guest)?.programmed_entries())
    }

    #[inline(always)]
    pub(crate) fn guest(&self, guest: GuestId) -> Result<&Guest> {
        match self.slots.get(slot_of(guest)) {
            Some(slot) if slot.occupant == guest.0 => Ok(&slot.guest),
            _ => Err(Error::NoSuchGuest { guest }),
        }
    }

    #[inline(always)]
    pub(crate) fn guest_mut(&mut self, guest: GuestId) -> Result<&mut Guest> {
        live_guest_mut(&mut self.slots, guest)
    }

    /// Heap bytes the host holds for its guests and registries, counted directly; not
    /// the source's own memory (for the in-process source, [`Host::heap_bytes`] adds
    /// it).
    pub fn heap_bytes_excluding_source(&self) -> usize {
        use core::mem::size_of;
        let per_guest: usize = self
            .slots
            .iter()
            .filter_map(Slot::live)
            .map(|g| {
                g.pasids.heap_bytes()
                    + g.remap.heap_bytes()
                    + g.devices.heap_bytes()
                    + g.devices
                        .values()
                        .map(|d| d.pasids.heap_bytes())
                        .sum::<usize>()
                    + g.bind_counts.heap_bytes()
                    + g.draining_local.heap_bytes()
                    + g.changes.as_ref().map_or(0, |l| l.heap_bytes())
            })
            .sum();
        self.slots.capacity() * size_of::<Slot>()
            + self.free_slots.capacity() * 2
            + self.rids.heap_bytes()
            + self
                .rids
                .values()
                .map(|u| u.shared_wq.heap_bytes())
                .sum::<usize>()
            + self.orphans.heap_bytes()
            + self.release_backlog.capacity() * 4
            + self.imported.capacity() * size_of::<MigrationIdentity>()
            + per_guest
    }
}

impl Host<IdBitmap> {
    /// Heap bytes the host holds (allocators, tables and registries, its in-process
    /// shared allocator included), counted directly.
    pub fn heap_bytes(&self) -> usize {
        self.heap_bytes_excluding_source() + self.source.heap_bytes()
    }
}

#[cfg(all(test, target_pointer_width = "64"))]
mod slot_layout {
    use core::mem::{offset_of, size_of};

    use super::{ChangeLog, Guest, GuestConfig, IdBitmap, RemapTable, Slot, SortedMap};

    const LINE: usize = 64;

    /// The cache lines of a slot that `len` bytes at slot offset `at` lie in.
    fn lines(at: usize, len: usize) -> core::ops::RangeInclusive<usize> {
        at / LINE..=(at + len - 1) / LINE
    }

    /// What a churn step (free, complete_teardown, alloc) reads of a guest's slot lies
    /// in three lines: the id with the change log and bind counts, the bitmap's head,
    /// and the configuration with the map's head.
    #[test]
    fn a_step_reads_three_lines_of_the_slot() {
        let guest = offset_of!(Slot, guest);
        let field = |at: usize| guest + at;
        assert_eq!(lines(offset_of!(Slot, occupant), size_of::<u32>()), 0..=0);
        assert_eq!(
            lines(
                field(offset_of!(Guest, changes)),
                size_of::<Option<ChangeLog>>()
            ),
            0..=0
        );
        assert_eq!(
            lines(
                field(offset_of!(Guest, bind_counts)),
                size_of::<SortedMap<u32, u32>>()
            ),
            0..=0
        );
        assert_eq!(
            lines(field(offset_of!(Guest, pasids)), IdBitmap::HOT_BYTES),
            1..=1
        );
        assert_eq!(
            lines(field(offset_of!(Guest, config)), size_of::<GuestConfig>()),
            3..=3
        );
        assert_eq!(
            lines(field(offset_of!(Guest, remap)), RemapTable::HOT_BYTES),
            3..=3
        );
    }
}
