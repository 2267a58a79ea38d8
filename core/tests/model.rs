//! Model-based test: random sequences of every host operation run against `Host` and
//! against a plain reference model built from BTreeMaps. After each step the results
//! (errors included) and the whole state (via snapshots) must agree.

use std::collections::{BTreeMap, BTreeSet};

use pasid_core::{
    DeviceKind, DeviceSnapshot, Error, ErrorCode, GuestConfig, GuestId, GuestSnapshot, Host,
    HostSnapshot, PasidKind, PasidLayout, PasidSnapshot, Platform, ProgrammedPasid, Rid,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
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
    Unbind {
        guest: usize,
        pasid: u32,
        rid: u16,
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
}

#[derive(Debug, Clone, PartialEq)]
enum Out {
    Unit,
    Guest,
    Pasid(u32),
}

#[derive(Debug, Default, Clone)]
struct ModelGuest {
    config: Option<GuestConfig>,
    /// gPASID -> hPASID for shared ones.
    pasids: BTreeMap<u32, Option<u32>>,
    devices: BTreeMap<Rid, (DeviceKind, BTreeSet<u32>)>,
}

struct Model {
    layout: PasidLayout,
    platform: Platform,
    guests: BTreeMap<GuestId, ModelGuest>,
    shared_used: BTreeSet<u32>,
    rid_owner: BTreeMap<Rid, GuestId>,
}

fn unsupported() -> Error {
    Error::NotSupported { what: "" }
}

impl Model {
    fn guest(&self, id: GuestId) -> Result<&ModelGuest, Error> {
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
        } else if !g.pasids.contains_key(&pasid) {
            Err(Error::NotAllocated { pasid })
        } else {
            Ok(())
        }
    }

    /// Applies `op` to the model; a created guest's id comes from the real host.
    fn apply(&mut self, op: &Op, id: GuestId, created: Option<GuestId>) -> Result<Out, Error> {
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
                for h in g.pasids.values().flatten() {
                    self.shared_used.remove(h);
                }
                for rid in g.devices.keys() {
                    self.rid_owner.remove(rid);
                }
                Ok(Out::Unit)
            }
            Op::Attach { rid, kind, .. } => {
                let rid = Rid::new(0, rid);
                let g = self.guest(id)?;
                if kind == DeviceKind::SharedWq {
                    Self::platform_is(g, Platform::P2)?;
                }
                if self.rid_owner.contains_key(&rid) {
                    return Err(Error::RidInUse { rid });
                }
                self.rid_owner.insert(rid, id);
                let g = self.guests.get_mut(&id).unwrap();
                g.devices.insert(rid, (kind, BTreeSet::new()));
                Ok(Out::Unit)
            }
            Op::Detach { rid, .. } => {
                let rid = Rid::new(0, rid);
                let g = self.guest(id)?;
                let (_, set) = g.devices.get(&rid).ok_or(Error::NoSuchDevice { rid })?;
                if !set.is_empty() {
                    return Err(Error::DeviceBusy { rid });
                }
                self.guests.get_mut(&id).unwrap().devices.remove(&rid);
                self.rid_owner.remove(&rid);
                Ok(Out::Unit)
            }
            Op::Alloc { kind, .. } => {
                let g = self.guest(id)?;
                Self::platform_is(g, Platform::P2)?;
                let quota = g.config.unwrap().shared_quota;
                if kind == PasidKind::Shared
                    && g.pasids.values().filter(|h| h.is_some()).count() as u32 >= quota
                {
                    return Err(Error::QuotaExceeded { quota });
                }
                let gpasid = self
                    .layout
                    .local()
                    .find(|p| !g.pasids.contains_key(p))
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
                if g.devices.values().any(|(_, set)| set.contains(&pasid)) {
                    return Err(Error::StillBound { pasid });
                }
                let g = self.guests.get_mut(&id).unwrap();
                if let Some(h) = g.pasids.remove(&pasid).unwrap() {
                    self.shared_used.remove(&h);
                }
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
            Op::Bind { pasid, rid, .. } => {
                let rid = Rid::new(0, rid);
                let g = self.guest(id)?;
                Self::platform_is(g, Platform::P2)?;
                let (kind, set) = g.devices.get(&rid).ok_or(Error::NoSuchDevice { rid })?;
                self.held(g, pasid)?;
                let hpasid = g.pasids[&pasid];
                if *kind == DeviceKind::SharedWq && hpasid.is_none() {
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
                g.devices.get_mut(&rid).unwrap().1.insert(pasid);
                Ok(Out::Pasid(programmed))
            }
            Op::Unbind { pasid, rid, .. } => {
                let rid = Rid::new(0, rid);
                let g = self.guest(id)?;
                Self::platform_is(g, Platform::P2)?;
                let (_, set) = g.devices.get(&rid).ok_or(Error::NoSuchDevice { rid })?;
                if !set.contains(&pasid) {
                    return Err(Error::NotBound { pasid, rid });
                }
                let g = self.guests.get_mut(&id).unwrap();
                g.devices.get_mut(&rid).unwrap().1.remove(&pasid);
                Ok(Out::Unit)
            }
            Op::Record { rid, pasid, .. } => {
                let rid = Rid::new(0, rid);
                let g = self.guest(id)?;
                Self::platform_is(g, Platform::P1)?;
                let (_, set) = g.devices.get(&rid).ok_or(Error::NoSuchDevice { rid })?;
                if !self.layout.local().contains(&pasid) {
                    return Err(Error::PasidOutOfRange { pasid });
                }
                if set.contains(&pasid) {
                    return Err(Error::PasidInUse { pasid });
                }
                let g = self.guests.get_mut(&id).unwrap();
                g.devices.get_mut(&rid).unwrap().1.insert(pasid);
                Ok(Out::Pasid(pasid))
            }
            Op::Release { rid, pasid, .. } => {
                let rid = Rid::new(0, rid);
                let g = self.guest(id)?;
                Self::platform_is(g, Platform::P1)?;
                let (_, set) = g.devices.get(&rid).ok_or(Error::NoSuchDevice { rid })?;
                if !set.contains(&pasid) {
                    return Err(Error::NotAllocated { pasid });
                }
                let g = self.guests.get_mut(&id).unwrap();
                g.devices.get_mut(&rid).unwrap().1.remove(&pasid);
                Ok(Out::Unit)
            }
        }
    }

    fn snapshot(&self) -> HostSnapshot {
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
                        devices: g
                            .devices
                            .iter()
                            .map(|(&rid, (kind, set))| DeviceSnapshot {
                                rid,
                                kind: *kind,
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
        }
    }
}

fn run(host: &mut Host, op: &Op, id: GuestId) -> Result<(Out, Option<GuestId>), Error> {
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
        Op::Alloc { kind, .. } => (Out::Pasid(host.alloc(id, kind)?), None),
        Op::Free { pasid, .. } => (host.free(id, pasid).map(|_| Out::Unit)?, None),
        Op::Translate { pasid, .. } => (Out::Pasid(host.translate(id, pasid)?), None),
        Op::Bind { pasid, rid: r, .. } => (Out::Pasid(host.bind(id, pasid, rid(r))?), None),
        Op::Unbind { pasid, rid: r, .. } => {
            (host.unbind(id, pasid, rid(r)).map(|_| Out::Unit)?, None)
        }
        Op::Record { rid: r, pasid, .. } => (Out::Pasid(host.record(id, rid(r), pasid)?), None),
        Op::Release { rid: r, pasid, .. } => {
            (host.release(id, rid(r), pasid).map(|_| Out::Unit)?, None)
        }
    })
}

fn guest_index(op: &Op) -> usize {
    match *op {
        Op::Create { .. } => 0,
        Op::Destroy { guest }
        | Op::Attach { guest, .. }
        | Op::Detach { guest, .. }
        | Op::Alloc { guest, .. }
        | Op::Free { guest, .. }
        | Op::Translate { guest, .. }
        | Op::Bind { guest, .. }
        | Op::Unbind { guest, .. }
        | Op::Record { guest, .. }
        | Op::Release { guest, .. } => guest,
    }
}

fn same_error(a: &Error, b: &Error) -> bool {
    // NotSupported carries prose that the model does not repeat; its code is enough.
    if a.code() == ErrorCode::NotSupported {
        b.code() == ErrorCode::NotSupported
    } else {
        a == b
    }
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let guest = 0usize..6;
    // Small ranges so exhaustion, quota and collisions happen often; PASIDs reach past
    // the local range (and 0) so range errors are exercised too.
    let pasid = 0u32..14;
    let rid = 0u16..5;
    let platform = prop_oneof![Just(Platform::P1), Just(Platform::P2)];
    let dkind = prop_oneof![Just(DeviceKind::Dedicated), Just(DeviceKind::SharedWq)];
    let pkind = prop_oneof![Just(PasidKind::Local), Just(PasidKind::Shared)];
    prop_oneof![
        2 => (platform, 0u32..6).prop_map(|(platform, quota)| Op::Create { platform, quota }),
        1 => guest.clone().prop_map(|guest| Op::Destroy { guest }),
        3 => (guest.clone(), rid.clone(), dkind).prop_map(|(guest, rid, kind)| Op::Attach { guest, rid, kind }),
        1 => (guest.clone(), rid.clone()).prop_map(|(guest, rid)| Op::Detach { guest, rid }),
        6 => (guest.clone(), pkind).prop_map(|(guest, kind)| Op::Alloc { guest, kind }),
        3 => (guest.clone(), pasid.clone()).prop_map(|(guest, pasid)| Op::Free { guest, pasid }),
        3 => (guest.clone(), pasid.clone()).prop_map(|(guest, pasid)| Op::Translate { guest, pasid }),
        4 => (guest.clone(), pasid.clone(), rid.clone()).prop_map(|(guest, pasid, rid)| Op::Bind { guest, pasid, rid }),
        2 => (guest.clone(), pasid.clone(), rid.clone()).prop_map(|(guest, pasid, rid)| Op::Unbind { guest, pasid, rid }),
        3 => (guest.clone(), rid.clone(), pasid.clone()).prop_map(|(guest, rid, pasid)| Op::Record { guest, rid, pasid }),
        1 => (guest, rid, pasid).prop_map(|(guest, rid, pasid)| Op::Release { guest, rid, pasid }),
    ]
}

fn layouts() -> impl Strategy<Value = (PasidLayout, Platform)> {
    let layout = prop_oneof![
        Just(PasidLayout::new(5, 1..9, 16..24).unwrap()),
        Just(PasidLayout::new(5, 1..12, 12..15).unwrap()),
        Just(PasidLayout::new(5, 3..7, 20..32).unwrap()),
    ];
    let platform = prop_oneof![Just(Platform::P1), Just(Platform::P2)];
    (layout, platform)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn host_agrees_with_the_model(
        (layout, platform) in layouts(),
        ops in proptest::collection::vec(op_strategy(), 1..80),
    ) {
        let mut host = Host::new(layout.clone(), platform).unwrap();
        let mut model = Model {
            layout,
            platform,
            guests: BTreeMap::new(),
            shared_used: BTreeSet::new(),
            rid_owner: BTreeMap::new(),
        };
        // Every id ever handed out, so destroyed (stale) ids are used too.
        let mut ids: Vec<GuestId> = vec![GuestId(0xdead_0000)];
        for op in &ops {
            let id = ids[guest_index(op) % ids.len()];
            let before = host.snapshot();
            let real = run(&mut host, op, id);
            let created = real.as_ref().ok().and_then(|(_, c)| *c);
            let expected = model.apply(op, id, created);
            match (&real, &expected) {
                (Ok((out, _)), Ok(want)) => prop_assert_eq!(out, want, "{:?}", op),
                (Err(e), Err(want)) => {
                    prop_assert!(same_error(e, want), "{:?}: got {:?}, model {:?}", op, e, want);
                    prop_assert_eq!(&host.snapshot(), &before, "failed {:?} changed the host", op);
                }
                _ => prop_assert!(false, "{:?}: host {:?}, model {:?}", op, real, expected),
            }
            if let Some(new) = created {
                // A reused slot gets a new generation: stale ids never alias a new guest.
                prop_assert!(!ids.contains(&new));
                ids.push(new);
            }
            prop_assert_eq!(host.snapshot(), model.snapshot(), "after {:?}", op);
        }
    }
}
