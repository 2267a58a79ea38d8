//! The lease state machine against a reference model: random sequences of opens,
//! reclaims, grants, claims, releases, goodbyes, disconnects, time passing, process
//! deaths and broker restarts (through a store that replays the registry's own
//! [`StoreOp`]s). The model is a plain per-PASID state table with linear scans.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use pasid_broker::registry::{
    Cap, LeaseId, LeaseState, Peer, Policy, Registry, StoreOp, StoredLease, StoredState,
};
use pasid_broker_client::protocol::{ErrorKind, Resume, WireLayout};
use proptest::prelude::*;

const START: u32 = 4096;
const END: u32 = 4096 + 24;
const RESERVED: std::ops::Range<u32> = 4100..4103;
const Q: u64 = 1000;
const G: u64 = 3000;

fn policy() -> Policy {
    Policy {
        layout: WireLayout {
            width: 20,
            local_start: 1,
            local_end: 4096,
            shared_start: START,
            shared_end: END,
        },
        reserved: vec![RESERVED],
        quarantine_ms: Q,
        grace_ms: G,
        default_cap: Cap {
            max_leases: 4,
            max_pasids: 10,
        },
        uid_caps: HashMap::from([(
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
        (START..END)
            .filter(|p| self.slots[(p - START) as usize] == Slot::Held(id))
            .collect()
    }
    fn uid_pasids(&self, uid: u32) -> u32 {
        self.slots
            .iter()
            .filter(|s| match s {
                Slot::Held(l) => self.leases[l].uid == uid,
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
    fn quarantine_all(&mut self, id: LeaseId, until: u64) {
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

/// The store as a map, fed with the registry's ops.
#[derive(Default, Clone)]
struct FakeStore {
    leases: BTreeMap<LeaseId, ([u8; 32], Peer, LeaseState)>,
    pasids: BTreeMap<u32, (Option<LeaseId>, u64, u32)>,
    last: LeaseId,
}

impl FakeStore {
    fn apply(&mut self, ops: &[StoreOp]) {
        for op in ops {
            match op {
                StoreOp::PutLease {
                    id,
                    token,
                    peer,
                    state,
                } => {
                    self.leases.insert(*id, (*token, *peer, *state));
                    self.last = self.last.max(*id);
                }
                StoreOp::DeleteLease { id } => {
                    self.leases.remove(id);
                }
                StoreOp::Hold { pasid, lease } => {
                    self.pasids.insert(*pasid, (Some(*lease), 0, 0));
                }
                StoreOp::Quarantine { pasid, until, uid } => {
                    self.pasids.insert(*pasid, (None, *until, *uid));
                }
                StoreOp::Free { pasid } => {
                    self.pasids.remove(pasid);
                }
            }
        }
    }
    fn stored(&self) -> StoredState {
        let mut s = StoredState {
            last_lease: self.last,
            ..Default::default()
        };
        for (id, (token, peer, state)) in &self.leases {
            let held = self
                .pasids
                .iter()
                .filter(|(_, v)| v.0 == Some(*id))
                .map(|(p, _)| *p)
                .collect();
            s.leases.push(StoredLease {
                id: *id,
                token: *token,
                peer: *peer,
                state: *state,
                held,
            });
        }
        for (p, (lease, until, uid)) in &self.pasids {
            match lease {
                None => s.quarantine.push((*p, *until, *uid)),
                Some(l) => assert!(self.leases.contains_key(l), "PASID {p} of a deleted lease"),
            }
        }
        s
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
        foreign: Option<u32>,
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
        2 => (0..6usize, any::<bool>(), proptest::option::weighted(0.2, START..END), proptest::bool::weighted(0.1))
            .prop_map(|(lease, drop_one, foreign, bad_token)| Op::Reclaim { lease, drop_one, foreign, bad_token }),
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

fn kind<T>(r: &Result<T, pasid_broker_client::protocol::WireError>) -> Option<ErrorKind> {
    r.as_ref().err().map(|e| e.kind)
}

fn run(ops: Vec<Op>) {
    let mut m = Model::new();
    let mut store = FakeStore::default();
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
                    assert_eq!(kind(&r), Some(ErrorKind::CapReached));
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
                foreign,
                bad_token,
            } => {
                let Some((id, _, held)) = clients.get(lease).cloned() else {
                    continue;
                };
                let mut list: BTreeSet<u32> = held.clone();
                if drop_one {
                    if let Some(p) = list.iter().next().copied() {
                        list.remove(&p);
                        clients[lease].2.remove(&p);
                    }
                }
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
                        &Resume {
                            lease: id,
                            token: [0; 32],
                            held: vec![],
                        },
                        now,
                        &mut ops,
                    );
                    assert_eq!(kind(&r), Some(ErrorKind::ReclaimRefused));
                    continue;
                };
                let token = if bad_token { [0xEE; 32] } else { ml.token };
                let peer = Peer {
                    uid: ml.uid,
                    gid: ml.uid,
                    pid: ml.pid,
                    start: 1,
                };
                let resume = Resume {
                    lease: id,
                    token,
                    held: list.iter().copied().collect(),
                };
                let r = reg.reclaim(peer, conn, &resume, now, &mut ops);
                let mine = m.held(id);
                if bad_token || list.iter().any(|p| !mine.contains(p)) {
                    assert_eq!(kind(&r), Some(ErrorKind::ReclaimRefused));
                    if drop_one {
                        // The client gave it up locally; it stays in the lease.
                        clients[lease].2 = held;
                    }
                } else {
                    assert_eq!(r.unwrap(), id);
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
                    assert_eq!(kind(&r), Some(ErrorKind::ReclaimRefused));
                    continue;
                }
                let uid = m.leases[&id].uid;
                let free: Vec<u32> = (START..END)
                    .filter(|p| m.slots[(p - START) as usize] == Slot::Free)
                    .collect();
                if m.uid_pasids(uid) + count > cap(uid).max_pasids {
                    assert_eq!(kind(&r), Some(ErrorKind::CapReached));
                } else if (free.len() as u32) < count {
                    assert_eq!(kind(&r), Some(ErrorKind::Exhausted));
                } else {
                    let got = r.unwrap();
                    assert_eq!(got, free[..count as usize], "lowest free first");
                    for p in got {
                        m.slots[(p - START) as usize] = Slot::Held(id);
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
                    assert_eq!(kind(&r), Some(ErrorKind::ReclaimRefused));
                    continue;
                }
                let uid = m.leases[&id].uid;
                let free = (START..END).contains(&pasid)
                    && m.slots[(pasid - START) as usize] == Slot::Free;
                if !free {
                    assert_eq!(kind(&r), Some(ErrorKind::Unavailable { pasid }));
                } else if m.uid_pasids(uid) + 1 > cap(uid).max_pasids {
                    assert_eq!(kind(&r), Some(ErrorKind::CapReached));
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
                    assert_eq!(kind(&r), Some(ErrorKind::ReclaimRefused));
                } else if m.slots[(pasid - START) as usize] == Slot::Held(id) {
                    r.unwrap();
                    m.slots[(pasid - START) as usize] = Slot::Free;
                    clients[lease].2.remove(&pasid);
                } else {
                    assert_eq!(kind(&r), Some(ErrorKind::Unavailable { pasid }));
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
                if m.connected(id, conn) {
                    if m.held(id).is_empty() {
                        m.leases.remove(&id);
                    } else {
                        m.leases.get_mut(&id).unwrap().state =
                            LeaseState::Orphaned { until: now + Q };
                    }
                }
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
                if m.connected(id, conn) {
                    if m.held(id).is_empty() {
                        m.leases.remove(&id);
                    } else {
                        m.leases.get_mut(&id).unwrap().state =
                            LeaseState::Orphaned { until: now + Q };
                    }
                }
                clients.remove(lease);
            }
            Op::Restart => {
                let mut ops = Vec::new();
                reg = Registry::load(policy(), store.stored(), now, &mut ops).unwrap();
                store.apply(&ops);
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
    let t = reg.totals();
    assert_eq!(
        (t.free, t.held, t.quarantined, t.leases),
        (free, held, quarantined + orphaned, m.leases.len() as u32)
    );
    for (id, l) in &m.leases {
        let r = reg.lease(*id).expect("lease in both");
        assert_eq!(r.state, l.state);
        assert_eq!(r.held.iter().copied().collect::<Vec<_>>(), m.held(*id));
    }
    // A non-admin sees its own lease only.
    if let Some(id) = m.leases.keys().next() {
        let s = reg.status(false, Some(*id));
        assert!(!s.all_leases);
        assert_eq!(s.leases.len(), 1);
        assert_eq!(s.leases[0].lease, *id);
        assert_eq!(reg.status(false, None).leases.len(), 0);
        assert_eq!(reg.status(true, None).leases.len(), m.leases.len());
    }
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
            foreign: None,
            bad_token: false,
        },
        Op::Alloc { lease: 0, count: 1 },
        Op::Advance { ms: 1500 },
    ]);
}
