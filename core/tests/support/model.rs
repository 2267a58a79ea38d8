//! The reference model of a host: plain BTreeMaps, written from the rules in the docs
//! rather than from the code, and a runner that applies one operation to a real
//! [`Host`] and to the model and compares results, errors and whole snapshots.
//!
//! Shared by the property test (`core/tests/model.rs`), the hostile-guest tests and the
//! `host_ops` fuzz target (`fuzz/fuzz_targets/host_ops.rs` includes this file by path),
//! so it depends on nothing but `pasid-core` and std.

use std::collections::{BTreeMap, BTreeSet};
use std::format;
use std::string::String;
use std::vec::Vec;

use pasid_core::vcmd::VtdRevision;
use pasid_core::IdBitmap;
use pasid_core::{
    DeviceKind, DeviceSnapshot, Draining, Error, ErrorCode, GuestConfig, GuestId, GuestSnapshot,
    Host, HostPasidSource, HostSnapshot, PasidKind, PasidLayout, PasidSnapshot, Platform,
    ProgrammedPasid, Rid, SourceError,
};

#[derive(Debug, Clone)]
pub enum Op {
    Create {
        platform: Platform,
        quota: u32,
    },
    Destroy {
        guest: usize,
    },
    Attach {
        guest: usize,
        rid: u16,
        kind: DeviceKind,
    },
    Detach {
        guest: usize,
        rid: u16,
    },
    /// Detaches one use of a RID.
    DetachUse {
        guest: usize,
        rid: u16,
        kind: DeviceKind,
    },
    Alloc {
        guest: usize,
        kind: PasidKind,
    },
    Free {
        guest: usize,
        pasid: u32,
    },
    Translate {
        guest: usize,
        pasid: u32,
    },
    Bind {
        guest: usize,
        pasid: u32,
        rid: u16,
    },
    /// Binds to one named use of a RID.
    BindUse {
        guest: usize,
        pasid: u32,
        rid: u16,
        kind: DeviceKind,
    },
    Unbind {
        guest: usize,
        pasid: u32,
        rid: u16,
    },
    /// Confirms the teardown of the `pick % n`-th draining PASID of the host's list
    /// (and, with `twice`, hands the same item in twice: refused).
    Complete {
        pick: usize,
        twice: bool,
    },
    /// Confirms the teardown of a made-up item: refused unless it happens to drain.
    CompleteMadeUp {
        guest: usize,
        pasid: u32,
        hpasid: Option<u32>,
    },
    Record {
        guest: usize,
        rid: u16,
        pasid: u32,
    },
    Release {
        guest: usize,
        rid: u16,
        pasid: u32,
    },
    /// Reads the guest's VCCAP register.
    Vcap {
        guest: usize,
        rev: VtdRevision,
    },
    /// The guest writes `command` to its VCMD register; the result is VCRSP.
    Vcmd {
        guest: usize,
        rev: VtdRevision,
        command: u64,
    },
    /// Exports the guest, destroys it and imports the blob back (identity RID map):
    /// the guest keeps its gPASIDs, devices and bindings under a new id, and its shared
    /// gPASIDs get the lowest free host PASIDs, in gPASID order.
    Reimport {
        guest: usize,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    Unit,
    Guest,
    Pasid(u32),
    /// A register value (VCCAP or VCRSP).
    Reg(u64),
}

#[derive(Debug, Default, Clone)]
pub struct ModelGuest {
    pub config: Option<GuestConfig>,
    /// Held gPASID -> hPASID for shared ones.
    pub pasids: BTreeMap<u32, Option<u32>>,
    /// Freed gPASIDs whose teardown is not confirmed.
    pub draining: BTreeMap<u32, Option<u32>>,
    /// The guest's uses of RIDs and what is bound (or recorded) on each.
    pub devices: BTreeMap<(Rid, DeviceKind), BTreeSet<u32>>,
}

impl ModelGuest {
    fn only_use(&self, rid: Rid) -> Result<DeviceKind, Error> {
        let d = self.devices.contains_key(&(rid, DeviceKind::Dedicated));
        let s = self.devices.contains_key(&(rid, DeviceKind::SharedWq));
        match (d, s) {
            (true, true) => Err(Error::AmbiguousUse { rid }),
            (true, false) => Ok(DeviceKind::Dedicated),
            (false, true) => Ok(DeviceKind::SharedWq),
            (false, false) => Err(Error::NoSuchDevice { rid }),
        }
    }
}

pub struct Model {
    pub layout: PasidLayout,
    pub platform: Platform,
    pub guests: BTreeMap<GuestId, ModelGuest>,
    /// Every host PASID taken: held, draining, or draining after its guest went.
    pub shared_used: BTreeSet<u32>,
    /// The guest with the dedicated use of each RID.
    pub dedicated_owner: BTreeMap<Rid, GuestId>,
    /// Draining host PASIDs of destroyed guests (listed sorted).
    pub orphans: Vec<Draining>,
}

pub fn unsupported() -> Error {
    Error::NotSupported { what: "" }
}

/// VCRSP values, written from the VT-d spec table (docs/DESIGN: 3.0 SC in bits 2:1 and
/// the PASID in 27:8; 3.3 SC in bits 7:1 and the PASID in 35:16), not from vcmd.rs.
pub mod vcrsp {
    use pasid_core::vcmd::VtdRevision;

    pub fn pasid_shift(rev: VtdRevision) -> u32 {
        match rev {
            VtdRevision::V3_0 => 8,
            VtdRevision::V3_3 => 16,
        }
    }
    pub fn success(rev: VtdRevision, pasid: u32) -> u64 {
        (pasid as u64) << pasid_shift(rev)
    }
    pub fn undefined_command(_: VtdRevision) -> u64 {
        1 << 1
    }
    /// "No PASID available" (ALLOC) and "invalid PASID" (FREE) share one code.
    pub fn no_pasid(rev: VtdRevision) -> u64 {
        match rev {
            VtdRevision::V3_0 => 2 << 1,
            VtdRevision::V3_3 => 16 << 1,
        }
    }
}

impl Model {
    pub fn new(layout: PasidLayout, platform: Platform) -> Self {
        Model {
            layout,
            platform,
            guests: BTreeMap::new(),
            shared_used: BTreeSet::new(),
            dedicated_owner: BTreeMap::new(),
            orphans: Vec::new(),
        }
    }

    /// The host's list of draining PASIDs: live guests by slot, then orphans.
    pub fn draining(&self) -> Vec<Draining> {
        let mut ids: Vec<GuestId> = self.guests.keys().copied().collect();
        ids.sort_by_key(|id| id.0 & 0xffff);
        let mut out: Vec<Draining> = ids
            .into_iter()
            .flat_map(|guest| {
                self.guests[&guest]
                    .draining
                    .iter()
                    .map(move |(&gpasid, &hpasid)| Draining {
                        guest,
                        gpasid,
                        hpasid,
                    })
            })
            .collect();
        let mut orphans = self.orphans.clone();
        orphans.sort();
        out.extend(orphans);
        out
    }

    /// Applies a confirmed teardown of `items`, all or nothing.
    fn complete(&mut self, items: &[Draining]) -> Result<Out, Error> {
        let listed = self.draining();
        for (i, item) in items.iter().enumerate() {
            if !listed.contains(item) || items[..i].contains(item) {
                return Err(Error::NotDraining { pasid: item.gpasid });
            }
        }
        for item in items {
            if let Some(g) = self.guests.get_mut(&item.guest) {
                g.draining.remove(&item.gpasid);
            } else {
                self.orphans.retain(|o| o != item);
            }
            if let Some(h) = item.hpasid {
                self.shared_used.remove(&h);
            }
        }
        Ok(Out::Unit)
    }

    pub fn guest(&self, id: GuestId) -> Result<&ModelGuest, Error> {
        self.guests.get(&id).ok_or(Error::NoSuchGuest { guest: id })
    }

    fn platform_is(g: &ModelGuest, p: Platform) -> Result<(), Error> {
        if g.config.unwrap().platform == p {
            Ok(())
        } else {
            Err(unsupported())
        }
    }

    fn held(&self, g: &ModelGuest, pasid: u32) -> Result<(), Error> {
        if !self.layout.local().contains(&pasid) {
            Err(Error::PasidOutOfRange { pasid })
        } else if g.draining.contains_key(&pasid) {
            Err(Error::Draining { pasid })
        } else if !g.pasids.contains_key(&pasid) {
            Err(Error::NotAllocated { pasid })
        } else {
            Ok(())
        }
    }

    /// Applies `op` to the model; a created guest's id comes from the real host.
    pub fn apply(&mut self, op: &Op, id: GuestId, created: Option<GuestId>) -> Result<Out, Error> {
        match *op {
            Op::Create { platform, quota } => {
                if platform == Platform::P2 && self.platform == Platform::P1 {
                    return Err(unsupported());
                }
                let config = GuestConfig {
                    platform,
                    shared_quota: quota,
                };
                let new = created.expect("the host created a guest");
                self.guests.insert(
                    new,
                    ModelGuest {
                        config: Some(config),
                        ..Default::default()
                    },
                );
                Ok(Out::Guest)
            }
            Op::Destroy { .. } => {
                let g = self
                    .guests
                    .remove(&id)
                    .ok_or(Error::NoSuchGuest { guest: id })?;
                self.orphan(id, &g);
                Ok(Out::Unit)
            }
            Op::Attach { rid, kind, .. } => {
                let rid = Rid::new(0, rid);
                let g = self.guest(id)?;
                if kind == DeviceKind::SharedWq {
                    Self::platform_is(g, Platform::P2)?;
                }
                if g.devices.contains_key(&(rid, kind))
                    || (kind == DeviceKind::Dedicated && self.dedicated_owner.contains_key(&rid))
                {
                    return Err(Error::RidInUse { rid });
                }
                if kind == DeviceKind::Dedicated {
                    self.dedicated_owner.insert(rid, id);
                }
                let g = self.guests.get_mut(&id).unwrap();
                g.devices.insert((rid, kind), BTreeSet::new());
                Ok(Out::Unit)
            }
            Op::Detach { rid, .. } => {
                let rid = Rid::new(0, rid);
                let g = self.guest(id)?;
                let uses: Vec<DeviceKind> = [DeviceKind::Dedicated, DeviceKind::SharedWq]
                    .into_iter()
                    .filter(|&k| g.devices.contains_key(&(rid, k)))
                    .collect();
                if uses.is_empty() {
                    return Err(Error::NoSuchDevice { rid });
                }
                if uses.iter().any(|&k| !g.devices[&(rid, k)].is_empty()) {
                    return Err(Error::DeviceBusy { rid });
                }
                for kind in uses {
                    self.detach_use(id, rid, kind);
                }
                Ok(Out::Unit)
            }
            Op::DetachUse { rid, kind, .. } => {
                let rid = Rid::new(0, rid);
                let g = self.guest(id)?;
                let set = g
                    .devices
                    .get(&(rid, kind))
                    .ok_or(Error::NoSuchDevice { rid })?;
                if !set.is_empty() {
                    return Err(Error::DeviceBusy { rid });
                }
                self.detach_use(id, rid, kind);
                Ok(Out::Unit)
            }
            Op::Alloc { kind, .. } => {
                let g = self.guest(id)?;
                Self::platform_is(g, Platform::P2)?;
                let quota = g.config.unwrap().shared_quota;
                let charged = g
                    .pasids
                    .values()
                    .chain(g.draining.values())
                    .flatten()
                    .count();
                if kind == PasidKind::Shared && charged as u32 >= quota {
                    return Err(Error::QuotaExceeded { quota });
                }
                let gpasid = self
                    .layout
                    .local()
                    .find(|p| !g.pasids.contains_key(p) && !g.draining.contains_key(p))
                    .ok_or(Error::GuestRangeExhausted)?;
                let hpasid = match kind {
                    PasidKind::Local => None,
                    PasidKind::Shared => Some(
                        self.layout
                            .shared()
                            .find(|p| !self.shared_used.contains(p))
                            .ok_or(Error::SharedRangeExhausted)?,
                    ),
                };
                if let Some(h) = hpasid {
                    self.shared_used.insert(h);
                }
                self.guests
                    .get_mut(&id)
                    .unwrap()
                    .pasids
                    .insert(gpasid, hpasid);
                Ok(Out::Pasid(gpasid))
            }
            Op::Free { pasid, .. } => {
                let g = self.guest(id)?;
                Self::platform_is(g, Platform::P2)?;
                self.held(g, pasid)?;
                if g.devices.values().any(|set| set.contains(&pasid)) {
                    return Err(Error::StillBound { pasid });
                }
                let g = self.guests.get_mut(&id).unwrap();
                let h = g.pasids.remove(&pasid).unwrap();
                g.draining.insert(pasid, h);
                Ok(Out::Unit)
            }
            Op::Translate { pasid, .. } => {
                let g = self.guest(id)?;
                if let Some(Some(h)) = g.pasids.get(&pasid) {
                    return Ok(Out::Pasid(*h));
                }
                self.held(g, pasid)?;
                Err(Error::NotShared { pasid })
            }
            Op::Bind { pasid, rid, guest } => {
                let r = Rid::new(0, rid);
                let g = self.guest(id)?;
                Self::platform_is(g, Platform::P2)?;
                let kind = g.only_use(r)?;
                self.apply(
                    &Op::BindUse {
                        guest,
                        pasid,
                        rid,
                        kind,
                    },
                    id,
                    None,
                )
            }
            Op::BindUse {
                pasid, rid, kind, ..
            } => {
                let rid = Rid::new(0, rid);
                let g = self.guest(id)?;
                Self::platform_is(g, Platform::P2)?;
                let set = g
                    .devices
                    .get(&(rid, kind))
                    .ok_or(Error::NoSuchDevice { rid })?;
                self.held(g, pasid)?;
                let hpasid = g.pasids[&pasid];
                if kind == DeviceKind::SharedWq && hpasid.is_none() {
                    return Err(Error::NotShared { pasid });
                }
                if set.contains(&pasid) {
                    return Err(Error::AlreadyBound { pasid, rid });
                }
                let programmed = match kind {
                    DeviceKind::Dedicated => pasid,
                    DeviceKind::SharedWq => hpasid.unwrap(),
                };
                let g = self.guests.get_mut(&id).unwrap();
                g.devices.get_mut(&(rid, kind)).unwrap().insert(pasid);
                Ok(Out::Pasid(programmed))
            }
            Op::Unbind { pasid, rid, .. } => {
                let rid = Rid::new(0, rid);
                let g = self.guest(id)?;
                Self::platform_is(g, Platform::P2)?;
                let kind = match g.only_use(rid) {
                    Err(Error::AmbiguousUse { .. }) => {
                        let on = |k| g.devices[&(rid, k)].contains(&pasid);
                        match (on(DeviceKind::Dedicated), on(DeviceKind::SharedWq)) {
                            (true, false) => DeviceKind::Dedicated,
                            (false, true) => DeviceKind::SharedWq,
                            (true, true) => return Err(Error::AmbiguousUse { rid }),
                            (false, false) => return Err(Error::NotBound { pasid, rid }),
                        }
                    }
                    other => other?,
                };
                if !g.devices[&(rid, kind)].contains(&pasid) {
                    return Err(Error::NotBound { pasid, rid });
                }
                let programmed = match kind {
                    DeviceKind::Dedicated => pasid,
                    DeviceKind::SharedWq => g.pasids[&pasid].unwrap(),
                };
                let g = self.guests.get_mut(&id).unwrap();
                g.devices.get_mut(&(rid, kind)).unwrap().remove(&pasid);
                Ok(Out::Pasid(programmed))
            }
            Op::Complete { pick, twice } => {
                let listed = self.draining();
                if listed.is_empty() {
                    return self.complete(&[]);
                }
                let item = listed[pick % listed.len()];
                if twice {
                    self.complete(&[item, item])
                } else {
                    self.complete(&[item])
                }
            }
            Op::CompleteMadeUp { pasid, hpasid, .. } => self.complete(&[Draining {
                guest: id,
                gpasid: pasid,
                hpasid,
            }]),
            Op::Record { rid, pasid, .. } => {
                let rid = Rid::new(0, rid);
                let g = self.guest(id)?;
                Self::platform_is(g, Platform::P1)?;
                let key = (rid, DeviceKind::Dedicated);
                let set = g.devices.get(&key).ok_or(Error::NoSuchDevice { rid })?;
                if !self.layout.local().contains(&pasid) {
                    return Err(Error::PasidOutOfRange { pasid });
                }
                if set.contains(&pasid) {
                    return Err(Error::PasidInUse { pasid });
                }
                let g = self.guests.get_mut(&id).unwrap();
                g.devices.get_mut(&key).unwrap().insert(pasid);
                Ok(Out::Pasid(pasid))
            }
            Op::Release { rid, pasid, .. } => {
                let rid = Rid::new(0, rid);
                let g = self.guest(id)?;
                Self::platform_is(g, Platform::P1)?;
                let key = (rid, DeviceKind::Dedicated);
                let set = g.devices.get(&key).ok_or(Error::NoSuchDevice { rid })?;
                if !set.contains(&pasid) {
                    return Err(Error::NotAllocated { pasid });
                }
                let g = self.guests.get_mut(&id).unwrap();
                g.devices.get_mut(&key).unwrap().remove(&pasid);
                Ok(Out::Unit)
            }
            Op::Vcap { .. } => {
                let g = self.guest(id)?;
                Ok(Out::Reg(match g.config.unwrap().platform {
                    Platform::P1 => 0,
                    Platform::P2 => 1,
                }))
            }
            Op::Vcmd {
                guest,
                rev,
                command,
            } => {
                let g = self.guest(id)?;
                let undefined = Ok(Out::Reg(vcrsp::undefined_command(rev)));
                let no_pasid = Ok(Out::Reg(vcrsp::no_pasid(rev)));
                if g.config.unwrap().platform == Platform::P1 {
                    return undefined; // VCCAP.PAS is clear: no command is defined
                }
                let shift = vcrsp::pasid_shift(rev);
                if rev == VtdRevision::V3_3 && command & 0xff00 != 0 {
                    return undefined; // reserved bits 15:8
                }
                let operand = command >> shift;
                match command & 0xff {
                    1 => {
                        let kind = match operand {
                            0 => PasidKind::Shared,
                            1 => PasidKind::Local,
                            _ => return undefined,
                        };
                        match self.apply(&Op::Alloc { guest, kind }, id, None) {
                            Ok(Out::Pasid(p)) => Ok(Out::Reg(vcrsp::success(rev, p))),
                            Err(
                                Error::QuotaExceeded { .. }
                                | Error::GuestRangeExhausted
                                | Error::SharedRangeExhausted,
                            ) => no_pasid,
                            other => other,
                        }
                    }
                    2 => {
                        if operand >= 1 << 20 {
                            return no_pasid;
                        }
                        let pasid = operand as u32;
                        match self.apply(&Op::Free { guest, pasid }, id, None) {
                            Ok(_) => Ok(Out::Reg(0)),
                            Err(
                                Error::PasidOutOfRange { .. }
                                | Error::NotAllocated { .. }
                                | Error::Draining { .. }
                                | Error::StillBound { .. },
                            ) => no_pasid,
                            other => other,
                        }
                    }
                    _ => undefined,
                }
            }
            Op::Reimport { .. } => {
                let g = self
                    .guests
                    .remove(&id)
                    .ok_or(Error::NoSuchGuest { guest: id })?;
                // Export, destroy, confirm the teardown of everything the guest had (its
                // host PASIDs drained as orphans), import: the imported guest gets the
                // lowest free host PASIDs, in gPASID order. What was draining does not
                // travel (it is the source's hardware state).
                self.orphan(id, &g);
                for o in self.orphans.iter().filter(|o| o.guest == id) {
                    self.shared_used.remove(&o.hpasid.unwrap());
                }
                self.orphans.retain(|o| o.guest != id);
                let new = created.expect("the host imported the guest");
                let mut fresh_guest = ModelGuest {
                    config: g.config,
                    pasids: g.pasids.clone(),
                    draining: BTreeMap::new(),
                    devices: g.devices.clone(),
                };
                for h in fresh_guest.pasids.values_mut().flatten() {
                    let fresh = self
                        .layout
                        .shared()
                        .find(|p| !self.shared_used.contains(p))
                        .expect("the import's check found enough free host PASIDs");
                    self.shared_used.insert(fresh);
                    *h = fresh;
                }
                for &(rid, kind) in fresh_guest.devices.keys() {
                    if kind == DeviceKind::Dedicated {
                        self.dedicated_owner.insert(rid, new);
                    }
                }
                self.guests.insert(new, fresh_guest);
                Ok(Out::Guest)
            }
        }
    }

    /// A destroyed guest's host PASIDs (held and draining) become orphans, in
    /// gPASID order of held ones, then draining ones; its uses of RIDs go.
    fn orphan(&mut self, id: GuestId, g: &ModelGuest) {
        for (&gpasid, &hpasid) in g.pasids.iter().chain(g.draining.iter()) {
            if hpasid.is_some() {
                self.orphans.push(Draining {
                    guest: id,
                    gpasid,
                    hpasid,
                });
            }
        }
        for &(rid, kind) in g.devices.keys() {
            if kind == DeviceKind::Dedicated {
                self.dedicated_owner.remove(&rid);
            }
        }
    }

    fn detach_use(&mut self, id: GuestId, rid: Rid, kind: DeviceKind) {
        self.guests
            .get_mut(&id)
            .unwrap()
            .devices
            .remove(&(rid, kind));
        if kind == DeviceKind::Dedicated {
            self.dedicated_owner.remove(&rid);
        }
    }

    pub fn snapshot(&self) -> HostSnapshot {
        let mut ids: Vec<GuestId> = self.guests.keys().copied().collect();
        ids.sort_by_key(|id| id.0 & 0xffff);
        HostSnapshot {
            width: self.layout.width(),
            local: self.layout.local(),
            shared: self.layout.shared(),
            platform: self.platform,
            shared_in_use: self.shared_used.len() as u32,
            guests: ids
                .into_iter()
                .map(|id| {
                    let g = &self.guests[&id];
                    GuestSnapshot {
                        id,
                        config: g.config.unwrap(),
                        pasids: g
                            .pasids
                            .iter()
                            .map(|(&gpasid, &hpasid)| PasidSnapshot {
                                gpasid,
                                kind: if hpasid.is_some() {
                                    PasidKind::Shared
                                } else {
                                    PasidKind::Local
                                },
                                hpasid,
                            })
                            .collect(),
                        draining: g
                            .draining
                            .iter()
                            .map(|(&gpasid, &hpasid)| Draining {
                                guest: id,
                                gpasid,
                                hpasid,
                            })
                            .collect(),
                        devices: g
                            .devices
                            .iter()
                            .map(|(&(rid, kind), set)| DeviceSnapshot {
                                rid,
                                kind,
                                programmed: set
                                    .iter()
                                    .map(|&gpasid| ProgrammedPasid {
                                        gpasid,
                                        programmed: match kind {
                                            DeviceKind::Dedicated => gpasid,
                                            DeviceKind::SharedWq => g.pasids[&gpasid].unwrap(),
                                        },
                                    })
                                    .collect(),
                            })
                            .collect(),
                    }
                })
                .collect(),
            orphans: {
                let mut o = self.orphans.clone();
                o.sort();
                o
            },
        }
    }
}

pub fn run<S: HostPasidSource>(
    host: &mut Host<S>,
    op: &Op,
    id: GuestId,
) -> Result<(Out, Option<GuestId>), Error> {
    let rid = |r: u16| Rid::new(0, r);
    Ok(match *op {
        Op::Create { platform, quota } => {
            let new = host.create_guest(GuestConfig {
                platform,
                shared_quota: quota,
            })?;
            (Out::Guest, Some(new))
        }
        Op::Destroy { .. } => (host.destroy_guest(id).map(|_| Out::Unit)?, None),
        Op::Attach { rid: r, kind, .. } => {
            (host.attach(id, rid(r), kind).map(|_| Out::Unit)?, None)
        }
        Op::Detach { rid: r, .. } => (host.detach(id, rid(r)).map(|_| Out::Unit)?, None),
        Op::DetachUse { rid: r, kind, .. } => {
            (host.detach_use(id, rid(r), kind).map(|_| Out::Unit)?, None)
        }
        Op::Alloc { kind, .. } => (Out::Pasid(host.alloc(id, kind)?), None),
        Op::Free { pasid, .. } => (host.free(id, pasid).map(|_| Out::Unit)?, None),
        Op::Translate { pasid, .. } => (Out::Pasid(host.translate(id, pasid)?), None),
        Op::Bind { pasid, rid: r, .. } => (Out::Pasid(host.bind(id, pasid, rid(r))?), None),
        Op::BindUse {
            pasid,
            rid: r,
            kind,
            ..
        } => (Out::Pasid(host.bind_use(id, pasid, rid(r), kind)?), None),
        Op::Unbind { pasid, rid: r, .. } => (Out::Pasid(host.unbind(id, pasid, rid(r))?), None),
        Op::Complete { pick, twice } => {
            let listed: Vec<Draining> = host.draining().collect();
            let items = match listed.len() {
                0 => vec![],
                n if twice => vec![listed[pick % n]; 2],
                n => vec![listed[pick % n]],
            };
            (host.complete_teardown(&items).map(|_| Out::Unit)?, None)
        }
        Op::CompleteMadeUp { pasid, hpasid, .. } => {
            let item = Draining {
                guest: id,
                gpasid: pasid,
                hpasid,
            };
            (host.complete_teardown(&[item]).map(|_| Out::Unit)?, None)
        }
        Op::Record { rid: r, pasid, .. } => (Out::Pasid(host.record(id, rid(r), pasid)?), None),
        Op::Release { rid: r, pasid, .. } => {
            (host.release(id, rid(r), pasid).map(|_| Out::Unit)?, None)
        }
        Op::Vcap { rev, .. } => (Out::Reg(host.vcap(id, rev)?), None),
        Op::Vcmd { rev, command, .. } => (Out::Reg(host.vcmd(id, rev, command)?), None),
        Op::Reimport { .. } => {
            let blob = host.export_guest(id)?;
            // One entry per RID, even when the guest uses a RID both ways.
            let mut map: Vec<(Rid, Rid)> = host
                .guest_snapshot(id)?
                .devices
                .iter()
                .map(|d| (d.rid, d.rid))
                .collect();
            map.dedup();
            host.destroy_guest(id)?;
            let gone: Vec<Draining> = host.draining().filter(|d| d.guest == id).collect();
            host.complete_teardown(&gone)?;
            let (new, _) = host.import_guest(&blob, &map)?;
            (Out::Guest, Some(new))
        }
    })
}

pub fn guest_index(op: &Op) -> usize {
    match *op {
        Op::Create { .. } => 0,
        Op::Destroy { guest }
        | Op::Attach { guest, .. }
        | Op::Detach { guest, .. }
        | Op::DetachUse { guest, .. }
        | Op::BindUse { guest, .. }
        | Op::CompleteMadeUp { guest, .. }
        | Op::Alloc { guest, .. }
        | Op::Free { guest, .. }
        | Op::Translate { guest, .. }
        | Op::Bind { guest, .. }
        | Op::Unbind { guest, .. }
        | Op::Record { guest, .. }
        | Op::Release { guest, .. }
        | Op::Vcap { guest, .. }
        | Op::Vcmd { guest, .. }
        | Op::Reimport { guest } => guest,
        Op::Complete { .. } => 0,
    }
}

pub fn same_error(a: &Error, b: &Error) -> bool {
    // NotSupported carries prose that the model does not repeat; its code is enough.
    if a.code() == ErrorCode::NotSupported {
        b.code() == ErrorCode::NotSupported
    } else {
        a == b
    }
}

/// Runs operations on a host and on the model side by side, checking each step: equal
/// results (errors included), an unchanged host after any error, equal snapshots,
/// never a stale guest id handed out again, no host PASID reachable from two guests,
/// and no draining host PASID handed out.
pub struct Checker<S = IdBitmap> {
    pub host: Host<S>,
    pub model: Model,
    /// Every id ever handed out (and one never handed out), so stale ids are used too.
    pub ids: Vec<GuestId>,
}

impl Checker {
    pub fn new(layout: PasidLayout, platform: Platform) -> Self {
        Checker {
            host: Host::new(layout.clone(), platform).unwrap(),
            model: Model::new(layout, platform),
            ids: vec![GuestId(0xdead_0000)],
        }
    }
}

impl<S: HostPasidSource> Checker<S> {
    /// A checker whose host takes its host PASIDs from `source`, which must hand out
    /// the lowest free one as the in-process source does (the model expects that).
    pub fn with_source(layout: PasidLayout, platform: Platform, source: S) -> Self {
        Checker {
            host: Host::with_source(layout.clone(), platform, source).unwrap(),
            model: Model::new(layout, platform),
            ids: vec![GuestId(0xdead_0000)],
        }
    }

    /// One step; `Err` describes the first disagreement.
    pub fn step(&mut self, op: &Op) -> Result<(), String> {
        let id = self.ids[guest_index(op) % self.ids.len()];
        let before = self.host.snapshot();
        let draining_before: BTreeSet<u32> =
            self.host.draining().filter_map(|d| d.hpasid).collect();
        let real = run(&mut self.host, op, id);
        let created = real.as_ref().ok().and_then(|(_, c)| *c);
        let expected = self.model.apply(op, id, created);
        match (&real, &expected) {
            (Ok((out, _)), Ok(want)) if out == want => {}
            (Err(e), Err(want)) if same_error(e, want) => {
                if self.host.snapshot() != before {
                    return Err(format!("failed {op:?} ({e:?}) changed the host"));
                }
            }
            _ => return Err(format!("{op:?}: host {real:?}, model {expected:?}")),
        }
        if let Some(new) = created {
            // A reused slot gets a new generation: stale ids never alias a new guest.
            if self.ids.contains(&new) {
                return Err(format!("{op:?} handed out {new:?} again"));
            }
            self.ids.push(new);
        }
        let (real, model) = (self.host.snapshot(), self.model.snapshot());
        if real != model {
            return Err(format!("after {op:?}: host {real:?}, model {model:?}"));
        }
        // Independent of the model: every host PASID is reachable from one place only,
        // and none that drained before this step is held by a guest now (unless the
        // step confirmed its teardown).
        let mut seen = BTreeSet::new();
        let held = real
            .guests
            .iter()
            .flat_map(|g| g.pasids.iter().filter_map(|p| p.hpasid));
        let draining = real
            .guests
            .iter()
            .flat_map(|g| g.draining.iter().filter_map(|d| d.hpasid))
            .chain(real.orphans.iter().filter_map(|d| d.hpasid));
        for h in held.clone().chain(draining) {
            if !seen.insert(h) {
                return Err(format!("after {op:?}: host PASID {h} reachable twice"));
            }
        }
        let confirmed = matches!(op, Op::Complete { .. } | Op::Reimport { .. });
        if !confirmed {
            if let Some(h) = held.into_iter().find(|h| draining_before.contains(h)) {
                return Err(format!("after {op:?}: draining host PASID {h} handed out"));
            }
        }
        Ok(())
    }
}

/// A source that offers only what [`HostPasidSource`] requires, delegating to a bitmap:
/// it runs the host's generic paths (the trait's default `alloc_many`, errors mapped
/// from [`SourceError`]) that the in-process source's own overrides skip.
#[derive(Debug, Clone)]
pub struct MinimalSource(pub IdBitmap);

impl HostPasidSource for MinimalSource {
    fn range(&self) -> core::ops::Range<u32> {
        self.0.range()
    }
    fn alloc(&mut self) -> Result<u32, SourceError> {
        self.0.alloc().ok_or(SourceError::Exhausted)
    }
    fn claim(&mut self, pasid: u32) -> Result<(), SourceError> {
        HostPasidSource::claim(&mut self.0, pasid)
    }
    fn release(&mut self, pasid: u32) -> Result<(), SourceError> {
        HostPasidSource::release(&mut self.0, pasid)
    }
    fn free_count(&self) -> u32 {
        self.0.capacity() - self.0.used()
    }
}
