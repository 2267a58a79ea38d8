//! The lease state machine (`pasid_core::lease`, which the broker daemon and the
//! playground's simulated broker both run) against a reference model: random sequences of opens,
//! reclaims, grants, claims, releases, goodbyes, disconnects, time passing, process
//! deaths and broker restarts (through a store that replays the registry's own
//! [`StoreOp`]s). The model is a plain per-PASID state table with linear scans; a
//! lease's spares are slots of their own kind, and grants served from them must append
//! no store op.

use std::collections::{BTreeMap, BTreeSet};

use pasid_core::lease::{
    Cap, LeaseError, LeaseId, LeaseState, MemoryStore, PasidState, Peer, Policy, ReclaimRefusal,
    Registry, Resume, StoredState,
};
use pasid_core::PasidLayout;
use proptest::prelude::*;

const START: u32 = 4096;
const END: u32 = 4096 + 24;
const RESERVED: std::ops::Range<u32> = 4100..4103;
const Q: u64 = 1000;
const G: u64 = 3000;
/// Small enough that the 21 grantable PASIDs run short with spares out.
const SPARE: u32 = 3;

fn policy() -> Policy {
    Policy {
        layout: PasidLayout::new(20, 1..4096, START..END).unwrap(),
        reserved: vec![RESERVED],
        quarantine_ms: Q,
        grace_ms: G,
        spare: SPARE,
        default_cap: Cap {
            max_leases: 4,
            max_pasids: 10,
        },
        uid_caps: BTreeMap::from([(
            7,
            Cap {
                max_leases: 2,
                max_pasids: 30,
            },
        )]),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Free,
    Reserved,
    Held(LeaseId),
    Spare(LeaseId),
    Quarantined { until: u64, uid: u32 },
}

#[derive(Debug, Clone)]
struct MLease {
    uid: u32,
    pid: u32,
    token: [u8; 32],
    state: LeaseState,
}

/// The reference model.
struct Model {
    slots: Vec<Slot>,
    leases: BTreeMap<LeaseId, MLease>,
    last: LeaseId,
    now: u64,
    dead_pids: BTreeSet<u32>,
}

fn cap(uid: u32) -> Cap {
    let p = policy();
    *p.uid_caps.get(&uid).unwrap_or(&p.default_cap)
}

impl Model {
    fn new() -> Self {
        let slots = (START..END)
            .map(|p| {
                if RESERVED.contains(&p) {
                    Slot::Reserved
                } else {
                    Slot::Free
                }
            })
            .collect();
        Model {
            slots,
            leases: BTreeMap::new(),
            last: 0,
            now: 1_000_000,
            dead_pids: BTreeSet::new(),
        }
    }
    fn held(&self, id: LeaseId) -> Vec<u32> {
        self.with(Slot::Held(id))
    }
    fn spare(&self, id: LeaseId) -> Vec<u32> {
        self.with(Slot::Spare(id))
    }
    fn with(&self, slot: Slot) -> Vec<u32> {
        (START..END)
            .filter(|p| self.slots[(p - START) as usize] == slot)
            .collect()
    }
    fn set(&mut self, p: u32, slot: Slot) {
        self.slots[(p - START) as usize] = slot;
    }
    /// Frees the spares of `id`, or of every lease but `keep`.
    fn free_spares(&mut self, only: Option<LeaseId>, keep: Option<LeaseId>) {
        for s in &mut self.slots {
            if let Slot::Spare(l) = *s {
                if only.is_none_or(|o| o == l) && keep != Some(l) {
                    *s = Slot::Free;
                }
            }
        }
    }
    fn uid_pasids(&self, uid: u32) -> u32 {
        self.slots
            .iter()
            .filter(|s| match s {
                Slot::Held(l) | Slot::Spare(l) => self.leases[l].uid == uid,
                Slot::Quarantined { uid: u, .. } => *u == uid,
                _ => false,
            })
            .count() as u32
    }
    fn connected(&self, id: LeaseId, conn: u64) -> bool {
        self.leases
            .get(&id)
            .is_some_and(|l| l.state == LeaseState::Connected { conn })
    }
    /// Connection `conn` of lease `id` closed without a goodbye: its spares free; a
    /// lease holding nothing else ends, one holding PASIDs is orphaned.
    fn disconnect(&mut self, id: LeaseId, conn: u64) {
        if !self.connected(id, conn) {
            return;
        }
        self.free_spares(Some(id), None);
        if self.held(id).is_empty() {
            self.leases.remove(&id);
        } else {
            self.leases.get_mut(&id).unwrap().state = LeaseState::Orphaned {
                until: self.now + Q,
            };
        }
    }
    fn quarantine_all(&mut self, id: LeaseId, until: u64) {
        self.free_spares(Some(id), None);
        let uid = self.leases[&id].uid;
        for s in &mut self.slots {
            if *s == Slot::Held(id) {
                *s = Slot::Quarantined { until, uid };
            }
        }
        self.leases.remove(&id);
    }
    fn tick(&mut self) {
        let now = self.now;
        for s in &mut self.slots {
            if matches!(s, Slot::Quarantined { until, .. } if *until <= now) {
                *s = Slot::Free;
            }
        }
        let ids: Vec<LeaseId> = self.leases.keys().copied().collect();
        for id in ids {
            let l = &self.leases[&id];
            if !self.dead_pids.contains(&l.pid) {
                continue;
            }
            match l.state {
                LeaseState::Orphaned { until } if until <= now => {
                    for s in &mut self.slots {
                        if *s == Slot::Held(id) {
                            *s = Slot::Free;
                        }
                    }
                    self.leases.remove(&id);
                }
                LeaseState::Unconfirmed { until } if until <= now => {
                    self.quarantine_all(id, now + Q)
                }
                _ => {}
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Open {
        uid: u32,
    },
    Reclaim {
        lease: usize,
        drop_one: bool,
        /// The dropped one is named as released (its answer lost), not just left out.
        release_dropped: bool,
        foreign: Option<u32>,
        /// Named as released though the client never held it (a lying client).
        released_foreign: Option<u32>,
        bad_token: bool,
    },
    Alloc {
        lease: usize,
        count: u32,
    },
    Claim {
        lease: usize,
        pasid: u32,
    },
    Release {
        lease: usize,
        pick: usize,
    },
    Goodbye {
        lease: usize,
    },
    Disconnect {
        lease: usize,
    },
    Advance {
        ms: u64,
    },
    Die {
        lease: usize,
    },
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => prop_oneof![Just(0u32), Just(7u32)].prop_map(|uid| Op::Open { uid }),
        2 => (0..6usize, any::<bool>(), any::<bool>(), proptest::option::weighted(0.2, START..END), proptest::option::weighted(0.2, START..END), proptest::bool::weighted(0.1))
            .prop_map(|(lease, drop_one, release_dropped, foreign, released_foreign, bad_token)| Op::Reclaim { lease, drop_one, release_dropped, foreign, released_foreign, bad_token }),
        5 => (0..6usize, 1..5u32).prop_map(|(lease, count)| Op::Alloc { lease, count }),
        2 => (0..6usize, START - 2..END + 2).prop_map(|(lease, pasid)| Op::Claim { lease, pasid }),
        4 => (0..6usize, any::<usize>()).prop_map(|(lease, pick)| Op::Release { lease, pick }),
        1 => (0..6usize).prop_map(|lease| Op::Goodbye { lease }),
        1 => (0..6usize).prop_map(|lease| Op::Disconnect { lease }),
        2 => prop_oneof![Just(10u64), Just(600), Just(1500), Just(4000)].prop_map(|ms| Op::Advance { ms }),
        1 => (0..6usize).prop_map(|lease| Op::Die { lease }),
        1 => Just(Op::Restart),
    ]
}

fn err<T>(r: &Result<T, LeaseError>) -> Option<LeaseError> {
    r.as_ref().err().copied()
}

fn run(ops: Vec<Op>) {
    let mut m = Model::new();
    let mut store = MemoryStore::new();
    let mut buf = Vec::new();
    let mut reg = Registry::load(policy(), StoredState::default(), m.now, &mut buf).unwrap();
    store.apply(&buf);
    // Each client the test plays: its lease, connection, and the PASIDs it holds.
    let mut clients: Vec<(LeaseId, u64, BTreeSet<u32>)> = Vec::new();
    let mut next_conn = 1u64;
    let mut next_pid = 100u32;
    for op in ops {
        let mut ops = Vec::new();
        let now = m.now;
        match op {
            Op::Open { uid } => {
                let conn = next_conn;
                next_conn += 1;
                let pid = next_pid;
                next_pid += 1;
                let token = [pid as u8; 32];
                let peer = Peer {
                    uid,
                    gid: uid,
                    pid,
                    start: 1,
                };
                let r = reg.open(peer, conn, token, &mut ops);
                let leases = m.leases.values().filter(|l| l.uid == uid).count() as u32;
                if leases >= cap(uid).max_leases {
                    assert_eq!(
                        err(&r),
                        Some(LeaseError::TooManyLeases {
                            uid,
                            leases,
                            cap: cap(uid).max_leases
                        })
                    );
                } else {
                    let id = r.unwrap();
                    m.last += 1;
                    assert_eq!(id, m.last);
                    m.leases.insert(
                        id,
                        MLease {
                            uid,
                            pid,
                            token,
                            state: LeaseState::Connected { conn },
                        },
                    );
                    clients.push((id, conn, BTreeSet::new()));
                }
            }
            Op::Reclaim {
                lease,
                drop_one,
                release_dropped,
                foreign,
                released_foreign,
                bad_token,
            } => {
                let Some((id, _, held)) = clients.get(lease).cloned() else {
                    continue;
                };
                let mut list: BTreeSet<u32> = held.clone();
                let mut released: Vec<u32> = Vec::new();
                if drop_one {
                    if let Some(p) = list.iter().next().copied() {
                        list.remove(&p);
                        clients[lease].2.remove(&p);
                        if release_dropped {
                            released.push(p);
                        }
                    }
                }
                released.extend(released_foreign);
                if let Some(f) = foreign {
                    list.insert(f);
                }
                let conn = next_conn;
                next_conn += 1;
                let Some(ml) = m.leases.get(&id).cloned() else {
                    let r = reg.reclaim(
                        Peer {
                            uid: 0,
                            gid: 0,
                            pid: 1,
                            start: 1,
                        },
                        conn,
                        Resume {
                            lease: id,
                            token: &[0; 32],
                            held: &[],
                            released: &released,
                        },
                        now,
                        &mut ops,
                    );
                    assert_eq!(
                        err(&r),
                        Some(LeaseError::ReclaimRefused {
                            lease: id,
                            why: ReclaimRefusal::NoSuchLease
                        })
                    );
                    continue;
                };
                let token = if bad_token { [0xEE; 32] } else { ml.token };
                let peer = Peer {
                    uid: ml.uid,
                    gid: ml.uid,
                    pid: ml.pid,
                    start: 1,
                };
                let listed: Vec<u32> = list.iter().copied().collect();
                let resume = Resume {
                    lease: id,
                    token: &token,
                    held: &listed,
                    released: &released,
                };
                let r = reg.reclaim(peer, conn, resume, now, &mut ops);
                let mine = m.held(id);
                let foreign = list.iter().find(|p| !mine.contains(p)).copied();
                if bad_token || foreign.is_some() {
                    let why = match foreign {
                        _ if bad_token => ReclaimRefusal::NotThisClients,
                        Some(pasid) => ReclaimRefusal::DoesNotHold { pasid },
                        None => unreachable!(),
                    };
                    assert_eq!(err(&r), Some(LeaseError::ReclaimRefused { lease: id, why }));
                    if drop_one {
                        // The client gave it up locally; it stays in the lease.
                        clients[lease].2 = held;
                    }
                } else {
                    assert_eq!(r.unwrap(), id);
                    // Named as released and still the lease's: released by the rule of
                    // a release (a spare while there is room), in the order named.
                    for &p in &released {
                        if !list.contains(&p) && m.slots[(p - START) as usize] == Slot::Held(id) {
                            let keep = (m.spare(id).len() as u32) < SPARE;
                            m.set(p, if keep { Slot::Spare(id) } else { Slot::Free });
                        }
                    }
                    let mine = m.held(id);
                    for p in mine.iter().filter(|p| !list.contains(p)) {
                        m.slots[(p - START) as usize] = Slot::Quarantined {
                            until: now + Q,
                            uid: ml.uid,
                        };
                    }
                    m.leases.get_mut(&id).unwrap().state = LeaseState::Connected { conn };
                    clients[lease].1 = conn;
                    clients[lease].2 = list;
                }
            }
            Op::Alloc { lease, count } => {
                let Some((id, conn, _)) = clients.get(lease).cloned() else {
                    continue;
                };
                let r = reg.alloc(id, conn, count, &mut ops);
                if !m.connected(id, conn) {
                    assert_eq!(err(&r), Some(LeaseError::NotServing { lease: id }));
                    continue;
                }
                let uid = m.leases[&id].uid;
                let spare = m.spare(id);
                let need = count.saturating_sub(spare.len() as u32);
                let free = m.with(Slot::Free).len() as u32;
                let spare_of = |same_uid: bool| {
                    (START..END)
                        .filter(|p| {
                            matches!(m.slots[(p - START) as usize],
                            Slot::Spare(l) if l != id && (!same_uid || m.leases[&l].uid == uid))
                        })
                        .count() as u32
                };
                let used = m.uid_pasids(uid);
                let over_cap = used + need > cap(uid).max_pasids;
                if over_cap && used - spare_of(true) + need > cap(uid).max_pasids {
                    assert_eq!(
                        err(&r),
                        Some(LeaseError::CapReached {
                            uid,
                            used,
                            cap: cap(uid).max_pasids
                        })
                    );
                } else if free + spare_of(false) < need {
                    assert_eq!(
                        err(&r),
                        Some(LeaseError::Exhausted {
                            asked: count,
                            free: free + spare_of(false)
                        })
                    );
                } else {
                    if over_cap {
                        for p in START..END {
                            if matches!(m.slots[(p - START) as usize], Slot::Spare(l) if l != id && m.leases[&l].uid == uid)
                            {
                                m.set(p, Slot::Free);
                            }
                        }
                    }
                    let free = m.with(Slot::Free).len() as u32;
                    let short = over_cap || need > free;
                    if need > free {
                        m.free_spares(None, Some(id));
                    }
                    let free = m.with(Slot::Free).len() as u32;
                    let extra = if need == 0 || short {
                        0
                    } else {
                        let room = cap(uid).max_pasids - m.uid_pasids(uid) - need;
                        SPARE.min(room).min(free - need)
                    };
                    let taken: Vec<u32> = m.with(Slot::Free)[..(need + extra) as usize].to_vec();
                    for &p in &taken {
                        m.set(p, Slot::Spare(id));
                    }
                    let got = r.unwrap();
                    let pool = m.spare(id);
                    assert_eq!(got, pool[..count as usize], "lowest of the lease's spares");
                    assert_eq!(
                        ops.is_empty(),
                        taken.is_empty() && !short,
                        "a commit only when the pool is touched"
                    );
                    for p in got {
                        m.set(p, Slot::Held(id));
                        clients[lease].2.insert(p);
                    }
                }
            }
            Op::Claim { lease, pasid } => {
                let Some((id, conn, _)) = clients.get(lease).cloned() else {
                    continue;
                };
                let r = reg.claim(id, conn, pasid, &mut ops);
                if !m.connected(id, conn) {
                    assert_eq!(err(&r), Some(LeaseError::NotServing { lease: id }));
                    continue;
                }
                let uid = m.leases[&id].uid;
                let slot = (START..END)
                    .contains(&pasid)
                    .then(|| m.slots[(pasid - START) as usize]);
                let free = matches!(slot, Some(Slot::Free | Slot::Spare(_)));
                if slot == Some(Slot::Spare(id)) {
                    r.unwrap();
                    assert!(ops.is_empty(), "its own spare is on record");
                    m.set(pasid, Slot::Held(id));
                    clients[lease].2.insert(pasid);
                } else if !free {
                    assert_eq!(err(&r), Some(LeaseError::Unavailable { pasid }));
                } else if m.uid_pasids(uid) + 1 > cap(uid).max_pasids {
                    assert_eq!(
                        err(&r),
                        Some(LeaseError::CapReached {
                            uid,
                            used: m.uid_pasids(uid),
                            cap: cap(uid).max_pasids
                        })
                    );
                } else {
                    r.unwrap();
                    m.slots[(pasid - START) as usize] = Slot::Held(id);
                    clients[lease].2.insert(pasid);
                }
            }
            Op::Release { lease, pick } => {
                let Some((id, conn, held)) = clients.get(lease).cloned() else {
                    continue;
                };
                // Mostly its own PASIDs; sometimes any, which must be refused if not its own.
                let pasid = if !held.is_empty() && pick % 4 != 0 {
                    *held.iter().nth(pick % held.len()).unwrap()
                } else {
                    START + (pick % (END - START) as usize) as u32
                };
                let r = reg.release(id, conn, pasid, &mut ops);
                if !m.connected(id, conn) {
                    assert_eq!(err(&r), Some(LeaseError::NotServing { lease: id }));
                } else if m.slots[(pasid - START) as usize] == Slot::Held(id) {
                    r.unwrap();
                    let keep = (m.spare(id).len() as u32) < SPARE;
                    assert_eq!(ops.is_empty(), keep);
                    m.set(pasid, if keep { Slot::Spare(id) } else { Slot::Free });
                    clients[lease].2.remove(&pasid);
                } else {
                    assert_eq!(err(&r), Some(LeaseError::NotHeld { pasid }));
                }
            }
            Op::Goodbye { lease } => {
                let Some((id, conn, _)) = clients.get(lease).cloned() else {
                    continue;
                };
                reg.goodbye(id, conn, now, &mut ops);
                if m.connected(id, conn) {
                    m.quarantine_all(id, now + Q);
                    clients[lease].2.clear();
                }
            }
            Op::Disconnect { lease } => {
                let Some((id, conn, _)) = clients.get(lease).cloned() else {
                    continue;
                };
                reg.disconnect(id, conn, now, &mut ops);
                m.disconnect(id, conn);
            }
            Op::Advance { ms } => {
                m.now += ms;
                reg.tick(m.now, |p| !m.dead_pids.contains(&p.pid), &mut ops);
                m.tick();
            }
            Op::Die { lease } => {
                let Some((id, conn, _)) = clients.get(lease).cloned() else {
                    continue;
                };
                if let Some(l) = m.leases.get(&id) {
                    m.dead_pids.insert(l.pid);
                }
                // The kernel closes its socket.
                reg.disconnect(id, conn, now, &mut ops);
                m.disconnect(id, conn);
                clients.remove(lease);
            }
            Op::Restart => {
                let mut ops = Vec::new();
                assert_eq!(store.holds_of_deleted_leases(), [] as [u32; 0]);
                reg = Registry::load(policy(), store.stored(), now, &mut ops).unwrap();
                store.apply(&ops);
                // The store cannot tell a spare from a grant.
                for s in &mut m.slots {
                    if let Slot::Spare(l) = *s {
                        *s = Slot::Held(l);
                    }
                }
                for l in m.leases.values_mut() {
                    if let LeaseState::Connected { .. } = l.state {
                        l.state = LeaseState::Unconfirmed { until: now + G };
                    }
                }
                continue;
            }
        }
        store.apply(&ops);
        compare(&reg, &m);
    }
}

fn compare(reg: &Registry, m: &Model) {
    let held = m.slots.iter().filter(|s| matches!(s, Slot::Held(l) if !matches!(m.leases[l].state, LeaseState::Orphaned { .. }))).count() as u32;
    let orphaned = m.slots.iter().filter(|s| matches!(s, Slot::Held(l) if matches!(m.leases[l].state, LeaseState::Orphaned { .. }))).count() as u32;
    let quarantined = m
        .slots
        .iter()
        .filter(|s| matches!(s, Slot::Quarantined { .. }))
        .count() as u32;
    let free = m.slots.iter().filter(|s| **s == Slot::Free).count() as u32;
    let spare = m
        .slots
        .iter()
        .filter(|s| matches!(s, Slot::Spare(_)))
        .count() as u32;
    let t = reg.totals();
    assert_eq!(
        (t.free, t.held, t.spare, t.quarantined, t.leases),
        (
            free,
            held,
            spare,
            quarantined + orphaned,
            m.leases.len() as u32
        )
    );
    for (id, l) in &m.leases {
        let r = reg.lease(*id).expect("lease in both");
        assert_eq!(r.state, l.state);
        assert_eq!(r.held.iter().copied().collect::<Vec<_>>(), m.held(*id));
        assert_eq!(r.spare.iter().copied().collect::<Vec<_>>(), m.spare(*id));
    }
    assert_eq!(
        reg.leases().map(|(id, _)| id).collect::<Vec<_>>(),
        m.leases.keys().copied().collect::<Vec<_>>()
    );
    // PASID by PASID, as a status view shows them.
    for p in START - 1..=END {
        let want = if !(START..END).contains(&p) {
            PasidState::Outside
        } else {
            match m.slots[(p - START) as usize] {
                Slot::Free => PasidState::Free,
                Slot::Reserved => PasidState::Reserved,
                Slot::Spare(lease) => PasidState::Spare { lease },
                Slot::Held(lease) => match m.leases[&lease].state {
                    LeaseState::Orphaned { until } => PasidState::Orphaned { lease, until },
                    _ => PasidState::Held { lease },
                },
                Slot::Quarantined { until, uid } => PasidState::Quarantined { until, uid },
            }
        };
        assert_eq!(reg.state_of(p), want, "host PASID {p}");
    }
    let listed: Vec<(u32, u64, u32)> = (START..END)
        .filter_map(|p| match m.slots[(p - START) as usize] {
            Slot::Quarantined { until, uid } => Some((p, until, uid)),
            _ => None,
        })
        .collect();
    assert_eq!(reg.quarantined().collect::<Vec<_>>(), listed);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn the_registry_behaves_like_the_model(ops in proptest::collection::vec(op(), 1..120)) {
        run(ops);
    }
}

#[test]
fn a_reclaim_after_a_restart_keeps_the_list_and_quarantines_the_rest() {
    run(vec![
        Op::Open { uid: 0 },
        Op::Alloc { lease: 0, count: 3 },
        Op::Restart,
        Op::Reclaim {
            lease: 0,
            drop_one: true,
            release_dropped: false,
            foreign: None,
            released_foreign: None,
            bad_token: false,
        },
        Op::Alloc { lease: 0, count: 1 },
        Op::Advance { ms: 1500 },
    ]);
}

#[test]
fn a_reclaim_frees_a_release_whose_answer_was_lost_and_ignores_a_strangers() {
    run(vec![
        Op::Open { uid: 0 },
        Op::Alloc { lease: 0, count: 3 },
        Op::Open { uid: 7 },
        Op::Alloc { lease: 1, count: 1 },
        Op::Restart,
        Op::Reclaim {
            lease: 0,
            drop_one: true,
            release_dropped: true,
            foreign: None,
            // The other lease's PASID, named as released: ignored.
            released_foreign: Some(START + 3),
            bad_token: false,
        },
        Op::Alloc { lease: 0, count: 1 },
        Op::Advance { ms: 1500 },
    ]);
}

#[test]
fn a_reclaim_naming_one_release_twice_gives_it_back_once() {
    run(vec![
        Op::Open { uid: 0 },
        Op::Alloc { lease: 0, count: 1 },
        Op::Reclaim {
            lease: 0,
            drop_one: true,
            release_dropped: true,
            foreign: None,
            // The dropped PASID itself (the lease's only one), so `released` names
            // it twice.
            released_foreign: Some(START),
            bad_token: false,
        },
        // Ending the lease takes its spares off the uid's count: once each.
        Op::Goodbye { lease: 0 },
        Op::Open { uid: 0 },
        Op::Alloc { lease: 1, count: 1 },
    ]);
}
