//! The broker's state machine: leases, their host PASIDs, quarantine, reclaim.
//!
//! It is pure: it knows no socket, no clock and no disk. Every call gets the time
//! (wall clock, milliseconds since the Unix epoch, because deadlines are stored and
//! must survive a restart) and appends the changes it made to a list of
//! [`StoreOp`]s, which the server commits before it answers. A refused call changes
//! nothing and appends nothing.
//!
//! The lifecycle of a host PASID (DESIGN.md §6):
//!
//! ```text
//! free --grant--> held(lease) --release--> free
//! held(lease, connected) --connection lost--> held(lease, orphaned until T)
//!        --same lease reclaims before T--> held(lease, connected)
//!        --T passes and the lease's process is gone--> free
//! held(lease) --goodbye with PASIDs still held--> quarantined(until T) --T passes--> free
//! held(lease) --broker restarts--> held(lease, unconfirmed until G)
//!        --client reclaims--> held(lease, connected)
//!        --G passes and the lease's process is gone--> quarantined(until G + q) --> free
//! ```
//!
//! An orphaned lease's PASIDs are quarantined in all but name: nobody else can get
//! them, and they free when its quarantine ends; only the lease itself (its secret
//! token) can take them back first. Nothing else goes from held or quarantined to a
//! grant: a grant takes only free PASIDs and the lease's own spares.
//!
//! **Spares.** A commit to the store is the dearest step of a grant (tens of µs, where
//! the rest of a round trip is a few), so the broker records host PASIDs to a lease
//! ahead of its requests: when a lease's spares run out, one commit records the grant
//! and up to [`Policy::spare`] more to the lease, and later grants take a spare
//! without a commit; a release puts the PASID back among the lease's spares (again
//! without a commit) while it has fewer than `spare` of them. In memory the broker
//! knows which PASIDs are spares; the store does not (both are "held by the lease"),
//! which is what makes a spare's grant safe without a commit:
//!
//! ```text
//! free --refill (recorded)--> spare(lease) --grant (no commit)--> held(lease)
//! held(lease) --release, fewer than `spare` spares--> spare(lease)
//! spare(lease) --goodbye, disconnect, another lease short of free ones--> free
//! spare(lease) --broker restarts--> held(lease, unconfirmed): quarantined unless listed
//! ```
//!
//! Spares were never handed out (or were given back by a release, which says their
//! teardown is done), so ending a lease frees them at once; only after a broker restart,
//! when the store cannot tell them from grants, do they go through quarantine. They
//! count against the uid's cap, and the pool takes them back from every lease before it
//! answers `Exhausted`, so spares never make a grant fail. What is given up is the
//! order across leases: a grant is the lowest of the lease's spares, not the lowest
//! free PASID of the machine.

use std::collections::{BTreeSet, HashMap};
use std::ops::Range;

use pasid_broker_client::protocol::{
    ErrorKind, LeaseReport, Resume, StatusReport, WireError, WireLayout, TOKEN_LEN,
};
use pasid_core::IdBitmap;

/// A lease's number.
pub type LeaseId = u64;

/// Who is at the other end of a connection (from SO_PEERCRED), and when its process
/// started (from `/proc`, 0 if unknown), so a reused pid is not taken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Process id (0 if unknown).
    pub pid: u32,
    /// The process's start time in clock ticks since boot (0 if unknown).
    pub start: u64,
}

/// Where a lease is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// A client connection serves it (the connection's number).
    Connected {
        /// The serving connection.
        conn: u64,
    },
    /// Its connection closed without a goodbye; its PASIDs are quarantined until
    /// `until` (milliseconds), unless the lease is reclaimed first.
    Orphaned {
        /// End of the quarantine.
        until: u64,
    },
    /// Loaded after a broker restart; its client may reclaim it until `until`.
    Unconfirmed {
        /// End of the grace period.
        until: u64,
    },
}

impl LeaseState {
    /// A short name for status output.
    pub fn name(&self) -> &'static str {
        match self {
            LeaseState::Connected { .. } => "connected",
            LeaseState::Orphaned { .. } => "orphaned",
            LeaseState::Unconfirmed { .. } => "unconfirmed",
        }
    }
}

/// One lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Its secret.
    pub token: [u8; TOKEN_LEN],
    /// The client that made (or last reclaimed) it.
    pub peer: Peer,
    /// Its state.
    pub state: LeaseState,
    /// Its host PASIDs, granted to the client.
    pub held: BTreeSet<u32>,
    /// PASIDs recorded to it in the store but not granted (see the module doc).
    pub spare: BTreeSet<u32>,
}

/// A change to record in the store, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOp {
    /// A new lease, or a lease whose peer or state changed (insert or replace).
    PutLease {
        /// The lease's number.
        id: LeaseId,
        /// Its secret.
        token: [u8; TOKEN_LEN],
        /// Its client.
        peer: Peer,
        /// Its state.
        state: LeaseState,
    },
    /// The lease is gone (its PASIDs were moved first).
    DeleteLease {
        /// The lease's number.
        id: LeaseId,
    },
    /// The PASID is held by the lease.
    Hold {
        /// The PASID.
        pasid: u32,
        /// The lease.
        lease: LeaseId,
    },
    /// The PASID is quarantined until `until`, counted against `uid`'s cap.
    Quarantine {
        /// The PASID.
        pasid: u32,
        /// End of the quarantine (ms since the epoch).
        until: u64,
        /// The uid of the lease it came from.
        uid: u32,
    },
    /// The PASID is free.
    Free {
        /// The PASID.
        pasid: u32,
    },
}

/// Per-uid limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    /// Leases at once (all states).
    pub max_leases: u32,
    /// Host PASIDs at once: held by its leases (spares included) plus quarantined
    /// from them, so a client that dies again and again cannot fill the machine with
    /// quarantine.
    pub max_pasids: u32,
}

/// The limits and timers of a registry.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The layout every client must share.
    pub layout: WireLayout,
    /// Host PASIDs never granted (the host kernel's own).
    pub reserved: Vec<Range<u32>>,
    /// How long a dead lease's PASIDs stay out of the pool.
    pub quarantine_ms: u64,
    /// How long a lease loaded after a restart waits for its client.
    pub grace_ms: u64,
    /// The most spares a lease keeps (0: none, every grant is a commit).
    pub spare: u32,
    /// The cap of any uid without its own.
    pub default_cap: Cap,
    /// Caps of particular uids.
    pub uid_caps: HashMap<u32, Cap>,
}

/// A lease as the store gives it back after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLease {
    /// Its number.
    pub id: LeaseId,
    /// Its secret.
    pub token: [u8; TOKEN_LEN],
    /// Its client.
    pub peer: Peer,
    /// Its state when the broker stopped.
    pub state: LeaseState,
    /// Its PASIDs.
    pub held: Vec<u32>,
}

/// What the store holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredState {
    /// Every lease.
    pub leases: Vec<StoredLease>,
    /// Quarantined PASIDs: (pasid, until, uid).
    pub quarantine: Vec<(u32, u64, u32)>,
    /// The highest lease number ever given.
    pub last_lease: LeaseId,
}

/// Why stored state cannot be loaded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoadError {
    /// A stored PASID is outside the configured shared range.
    #[error("stored host PASID {0} is outside the configured shared range")]
    OutOfRange(u32),
    /// A stored PASID appears twice.
    #[error("stored host PASID {0} appears twice")]
    Duplicate(u32),
    /// Memory for the bitmap could not be had.
    #[error("out of memory")]
    OutOfMemory,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Usage {
    leases: u32,
    pasids: u32,
}

/// Totals over the shared range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Free.
    pub free: u32,
    /// Held by a lease (connected or unconfirmed).
    pub held: u32,
    /// Spares of connected leases.
    pub spare: u32,
    /// Quarantined (orphaned leases' included).
    pub quarantined: u32,
    /// Reserved by configuration.
    pub reserved: u32,
    /// Leases.
    pub leases: u32,
}

/// The state machine (see the module doc).
#[derive(Debug)]
pub struct Registry {
    policy: Policy,
    /// Taken = reserved, held or quarantined; the free ids are the clear ones.
    taken: IdBitmap,
    reserved: u32,
    leases: HashMap<LeaseId, Lease>,
    /// Quarantined PASIDs whose lease is gone: pasid -> (until, uid).
    quarantine: HashMap<u32, (u64, u32)>,
    usage: HashMap<u32, Usage>,
    last_lease: LeaseId,
}

fn refuse(kind: ErrorKind, message: impl Into<String>) -> WireError {
    WireError {
        kind,
        message: message.into(),
    }
}

impl Registry {
    /// A registry with `stored` state: every lease that was connected becomes
    /// unconfirmed until `now + grace`; orphaned leases and quarantine keep their
    /// stored deadlines. The changes of state go to `ops`.
    pub fn load(
        policy: Policy,
        stored: StoredState,
        now: u64,
        ops: &mut Vec<StoreOp>,
    ) -> Result<Self, LoadError> {
        let shared = policy.layout.shared();
        let mut taken = IdBitmap::new(shared.clone()).map_err(|_| LoadError::OutOfMemory)?;
        let mut reserved = 0;
        for r in &policy.reserved {
            for p in r.start.max(shared.start)..r.end.min(shared.end) {
                if taken.claim(p) {
                    reserved += 1;
                }
            }
        }
        let mut reg = Registry {
            policy,
            taken,
            reserved,
            leases: HashMap::new(),
            quarantine: HashMap::new(),
            usage: HashMap::new(),
            last_lease: stored.last_lease,
        };
        let mut seen = std::collections::HashSet::new();
        let mut take = |reg: &mut Registry, p: u32| -> Result<(), LoadError> {
            if !shared.contains(&p) {
                return Err(LoadError::OutOfRange(p));
            }
            if !seen.insert(p) {
                return Err(LoadError::Duplicate(p));
            }
            // A PASID reserved since it was granted stays taken either way.
            reg.taken.claim(p);
            Ok(())
        };
        for (pasid, until, uid) in stored.quarantine {
            take(&mut reg, pasid)?;
            reg.quarantine.insert(pasid, (until, uid));
            reg.usage.entry(uid).or_default().pasids += 1;
        }
        for l in stored.leases {
            for &p in &l.held {
                take(&mut reg, p)?;
            }
            let state = match l.state {
                LeaseState::Connected { .. } => {
                    let s = LeaseState::Unconfirmed {
                        until: now + reg.policy.grace_ms,
                    };
                    ops.push(StoreOp::PutLease {
                        id: l.id,
                        token: l.token,
                        peer: l.peer,
                        state: s,
                    });
                    s
                }
                s => s,
            };
            let u = reg.usage.entry(l.peer.uid).or_default();
            u.leases += 1;
            u.pasids += l.held.len() as u32;
            reg.last_lease = reg.last_lease.max(l.id);
            reg.leases.insert(
                l.id,
                Lease {
                    token: l.token,
                    peer: l.peer,
                    state,
                    held: l.held.into_iter().collect(),
                    spare: BTreeSet::new(),
                },
            );
        }
        Ok(reg)
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    fn cap(&self, uid: u32) -> Cap {
        *self
            .policy
            .uid_caps
            .get(&uid)
            .unwrap_or(&self.policy.default_cap)
    }

    /// Free host PASIDs.
    pub fn free(&self) -> u32 {
        self.taken.capacity() - self.taken.used()
    }

    /// A lease, if it exists.
    pub fn lease(&self, id: LeaseId) -> Option<&Lease> {
        self.leases.get(&id)
    }

    /// Checks a client's layout against the broker's.
    pub fn check_layout(&self, client: &WireLayout) -> Result<(), WireError> {
        if *client == self.policy.layout {
            Ok(())
        } else {
            Err(refuse(
                ErrorKind::LayoutMismatch,
                format!(
                    "layout mismatch: client has {client}, broker has {}",
                    self.policy.layout
                ),
            ))
        }
    }

    /// Opens a new lease for `peer`, served by connection `conn`.
    pub fn open(
        &mut self,
        peer: Peer,
        conn: u64,
        token: [u8; TOKEN_LEN],
        ops: &mut Vec<StoreOp>,
    ) -> Result<LeaseId, WireError> {
        let cap = self.cap(peer.uid);
        let usage = self.usage.get(&peer.uid).copied().unwrap_or_default();
        if usage.leases >= cap.max_leases {
            return Err(refuse(
                ErrorKind::CapReached,
                format!(
                    "uid {} has {} leases, its cap is {}",
                    peer.uid, usage.leases, cap.max_leases
                ),
            ));
        }
        self.last_lease += 1;
        let id = self.last_lease;
        let state = LeaseState::Connected { conn };
        self.leases.insert(
            id,
            Lease {
                token,
                peer,
                state,
                held: BTreeSet::new(),
                spare: BTreeSet::new(),
            },
        );
        self.usage.entry(peer.uid).or_default().leases += 1;
        ops.push(StoreOp::PutLease {
            id,
            token,
            peer,
            state,
        });
        Ok(id)
    }

    /// Takes back a lease after a lost connection or a broker restart. The listed
    /// PASIDs must all be the lease's (else nothing changes); the lease's PASIDs not
    /// listed go to quarantine.
    pub fn reclaim(
        &mut self,
        peer: Peer,
        conn: u64,
        resume: &Resume,
        now: u64,
        ops: &mut Vec<StoreOp>,
    ) -> Result<LeaseId, WireError> {
        let refused = |why: String| refuse(ErrorKind::ReclaimRefused, why);
        let Some(lease) = self.leases.get(&resume.lease) else {
            return Err(refused(format!("no lease {}", resume.lease)));
        };
        // Not a timing-safe comparison: tokens are 256 random bits and a wrong guess
        // costs a connection; the difference in time tells nothing useful.
        if lease.token != resume.token || lease.peer.uid != peer.uid {
            return Err(refused(format!(
                "lease {} is not this client's",
                resume.lease
            )));
        }
        if let Some(p) = resume.held.iter().find(|p| !lease.held.contains(p)) {
            return Err(refused(format!(
                "lease {} does not hold host PASID {p}",
                resume.lease
            )));
        }
        let listed: BTreeSet<u32> = resume.held.iter().copied().collect();
        let dropped: Vec<u32> = lease.held.difference(&listed).copied().collect();
        let until = now + self.policy.quarantine_ms;
        let lease = self.leases.get_mut(&resume.lease).expect("found above");
        for p in dropped {
            lease.held.remove(&p);
            self.quarantine.insert(p, (until, peer.uid));
            ops.push(StoreOp::Quarantine {
                pasid: p,
                until,
                uid: peer.uid,
            });
        }
        lease.peer = peer;
        lease.state = LeaseState::Connected { conn };
        ops.push(StoreOp::PutLease {
            id: resume.lease,
            token: lease.token,
            peer,
            state: lease.state,
        });
        Ok(resume.lease)
    }

    fn connected(&self, id: LeaseId, conn: u64) -> Result<&Lease, WireError> {
        match self.leases.get(&id) {
            Some(l) if l.state == LeaseState::Connected { conn } => Ok(l),
            // The lease was taken over by a newer connection (a reclaim) or ended.
            _ => Err(refuse(
                ErrorKind::ReclaimRefused,
                format!("connection no longer serves lease {id}"),
            )),
        }
    }

    fn check_cap(&self, uid: u32, more: u32) -> Result<(), WireError> {
        let cap = self.cap(uid);
        let used = self.usage.get(&uid).map_or(0, |u| u.pasids);
        if used.saturating_add(more) > cap.max_pasids {
            return Err(refuse(
                ErrorKind::CapReached,
                format!(
                    "uid {uid} has {used} host PASIDs (held or quarantined), its cap is {}",
                    cap.max_pasids
                ),
            ));
        }
        Ok(())
    }

    /// Grants `count` host PASIDs, all or none: the lease's spares first, lowest
    /// first; when they do not cover `count`, the lowest free PASIDs, and as many more
    /// as the lease may keep go to its spares. A grant served from spares changes
    /// nothing on record and appends no op (the server answers it without a commit).
    pub fn alloc(
        &mut self,
        id: LeaseId,
        conn: u64,
        count: u32,
        ops: &mut Vec<StoreOp>,
    ) -> Result<Vec<u32>, WireError> {
        let lease = self.connected(id, conn)?;
        let uid = lease.peer.uid;
        let need = count.saturating_sub(lease.spare.len() as u32);
        // Others' spares are not in use: they give way before a cap or the pool says
        // no. Both checks come before any change, so a refusal changes nothing.
        let others_spare = |same_uid: bool| -> u32 {
            self.leases
                .iter()
                .filter(|(other, l)| **other != id && (!same_uid || l.peer.uid == uid))
                .map(|(_, l)| l.spare.len() as u32)
                .sum()
        };
        let over_cap = self.usage_of(uid) + need > self.cap(uid).max_pasids;
        if over_cap && self.usage_of(uid) - others_spare(true) + need > self.cap(uid).max_pasids {
            self.check_cap(uid, need)?;
        }
        let pool = self.free() + others_spare(false);
        if need > pool {
            return Err(refuse(
                ErrorKind::Exhausted,
                format!("{count} host PASIDs asked, {pool} free"),
            ));
        }
        if over_cap {
            self.return_spares(id, Some(uid), ops);
        }
        let short = over_cap || need > self.free();
        if need > self.free() {
            self.return_spares(id, None, ops);
        }
        // Spares only from a pool and a cap that have them to spare: not when others'
        // spares had to come back for this grant.
        let extra = if need == 0 || short {
            0
        } else {
            let room = self
                .cap(uid)
                .max_pasids
                .saturating_sub(self.usage_of(uid) + need);
            self.policy.spare.min(room).min(self.free() - need)
        };
        let lease = self.leases.get_mut(&id).expect("checked");
        for _ in 0..need + extra {
            let p = self.taken.alloc().expect("counted above");
            lease.spare.insert(p);
            ops.push(StoreOp::Hold {
                pasid: p,
                lease: id,
            });
        }
        self.usage.entry(uid).or_default().pasids += need + extra;
        let mut out = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let p = lease.spare.pop_first().expect("counted above");
            lease.held.insert(p);
            out.push(p);
        }
        Ok(out)
    }

    fn usage_of(&self, uid: u32) -> u32 {
        self.usage.get(&uid).map_or(0, |u| u.pasids)
    }

    /// Frees the spares of every lease but `keep` (of `uid`'s leases only, if given):
    /// the pool or the uid's cap ran short.
    fn return_spares(&mut self, keep: LeaseId, uid: Option<u32>, ops: &mut Vec<StoreOp>) {
        let mut ids: Vec<LeaseId> = self
            .leases
            .iter()
            .filter(|(id, l)| {
                **id != keep && !l.spare.is_empty() && uid.is_none_or(|u| u == l.peer.uid)
            })
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        for id in ids {
            self.free_spares(id, ops);
        }
    }

    /// Frees one lease's spares (never handed out, or given back torn down).
    fn free_spares(&mut self, id: LeaseId, ops: &mut Vec<StoreOp>) {
        let Some(lease) = self.leases.get_mut(&id) else {
            return;
        };
        let spare = std::mem::take(&mut lease.spare);
        self.usage.entry(lease.peer.uid).or_default().pasids -= spare.len() as u32;
        for p in spare {
            self.taken.free(p);
            ops.push(StoreOp::Free { pasid: p });
        }
    }

    /// Grants exactly `pasid`, which must be free or a spare (of any lease: a spare
    /// was never handed out).
    pub fn claim(
        &mut self,
        id: LeaseId,
        conn: u64,
        pasid: u32,
        ops: &mut Vec<StoreOp>,
    ) -> Result<(), WireError> {
        let uid = self.connected(id, conn)?.peer.uid;
        let unavailable = || {
            refuse(
                ErrorKind::Unavailable { pasid },
                format!("host PASID {pasid} is not free"),
            )
        };
        if !self.policy.layout.shared().contains(&pasid) {
            return Err(unavailable());
        }
        let lease = self.leases.get_mut(&id).expect("checked");
        if lease.spare.remove(&pasid) {
            lease.held.insert(pasid);
            return Ok(());
        }
        let spare_of = self
            .leases
            .iter()
            .find(|(_, l)| l.spare.contains(&pasid))
            .map(|(other, l)| (*other, l.peer.uid));
        if self.taken.is_used(pasid) && spare_of.is_none() {
            return Err(unavailable());
        }
        self.check_cap(uid, 1)?;
        match spare_of {
            Some((other, other_uid)) => {
                self.leases
                    .get_mut(&other)
                    .expect("found")
                    .spare
                    .remove(&pasid);
                self.usage.entry(other_uid).or_default().pasids -= 1;
            }
            None => {
                self.taken.claim(pasid);
            }
        }
        self.leases
            .get_mut(&id)
            .expect("checked")
            .held
            .insert(pasid);
        self.usage.entry(uid).or_default().pasids += 1;
        ops.push(StoreOp::Hold { pasid, lease: id });
        Ok(())
    }

    /// Gives back a PASID of the lease (the client confirms its teardown is done): it
    /// becomes a spare of the lease (no op) while the lease has fewer than
    /// [`Policy::spare`], else it is free at once.
    pub fn release(
        &mut self,
        id: LeaseId,
        conn: u64,
        pasid: u32,
        ops: &mut Vec<StoreOp>,
    ) -> Result<(), WireError> {
        let uid = self.connected(id, conn)?.peer.uid;
        let lease = self.leases.get_mut(&id).expect("checked");
        if !lease.held.remove(&pasid) {
            // The same answer whether the PASID is free or another lease's: a client
            // learns nothing about other leases.
            return Err(refuse(
                ErrorKind::Unavailable { pasid },
                format!("host PASID {pasid} is not held by this lease"),
            ));
        }
        if (lease.spare.len() as u32) < self.policy.spare {
            lease.spare.insert(pasid);
            return Ok(());
        }
        self.taken.free(pasid);
        self.usage.entry(uid).or_default().pasids -= 1;
        ops.push(StoreOp::Free { pasid });
        Ok(())
    }

    fn end_lease(&mut self, id: LeaseId, quarantine_until: u64, ops: &mut Vec<StoreOp>) {
        self.free_spares(id, ops);
        let Some(lease) = self.leases.remove(&id) else {
            return;
        };
        let uid = lease.peer.uid;
        for p in lease.held {
            self.quarantine.insert(p, (quarantine_until, uid));
            ops.push(StoreOp::Quarantine {
                pasid: p,
                until: quarantine_until,
                uid,
            });
        }
        self.usage.entry(uid).or_default().leases -= 1;
        ops.push(StoreOp::DeleteLease { id });
    }

    /// The client said goodbye: the lease ends; PASIDs it still held go to quarantine.
    pub fn goodbye(&mut self, id: LeaseId, conn: u64, now: u64, ops: &mut Vec<StoreOp>) {
        if self.connected(id, conn).is_ok() {
            self.end_lease(id, now + self.policy.quarantine_ms, ops);
        }
    }

    /// Connection `conn` closed without a goodbye. Its spares are free at once; a lease
    /// holding nothing else ends; one holding PASIDs is orphaned until its quarantine
    /// ends. Nothing happens if the
    /// connection no longer serves the lease (a reclaim took it over).
    pub fn disconnect(&mut self, id: LeaseId, conn: u64, now: u64, ops: &mut Vec<StoreOp>) {
        if self.connected(id, conn).is_err() {
            return;
        }
        self.free_spares(id, ops);
        let lease = &self.leases[&id];
        if lease.held.is_empty() {
            self.end_lease(id, now, ops);
            return;
        }
        let lease = self.leases.get_mut(&id).expect("checked");
        lease.state = LeaseState::Orphaned {
            until: now + self.policy.quarantine_ms,
        };
        ops.push(StoreOp::PutLease {
            id,
            token: lease.token,
            peer: lease.peer,
            state: lease.state,
        });
    }

    /// The next deadline after which [`Registry::tick`] has work, if any.
    pub fn next_deadline(&self) -> Option<u64> {
        let leases = self.leases.values().filter_map(|l| match l.state {
            LeaseState::Orphaned { until } | LeaseState::Unconfirmed { until } => Some(until),
            LeaseState::Connected { .. } => None,
        });
        let quarantine = self.quarantine.values().map(|(until, _)| *until);
        leases.chain(quarantine).min()
    }

    /// Ends what is due at `now`: quarantines that are over free their PASIDs;
    /// orphaned leases whose quarantine is over end and free theirs; unconfirmed
    /// leases whose grace is over end and quarantine theirs. A lease whose process
    /// still runs (`alive`) is kept: its PASIDs may still be programmed in hardware.
    pub fn tick(&mut self, now: u64, alive: impl Fn(&Peer) -> bool, ops: &mut Vec<StoreOp>) {
        let due: Vec<u32> = self
            .quarantine
            .iter()
            .filter(|(_, (until, _))| *until <= now)
            .map(|(p, _)| *p)
            .collect();
        for p in due {
            let (_, uid) = self.quarantine.remove(&p).expect("listed");
            self.taken.free(p);
            self.usage.entry(uid).or_default().pasids -= 1;
            ops.push(StoreOp::Free { pasid: p });
        }
        let mut ending: Vec<(LeaseId, bool)> = self
            .leases
            .iter()
            .filter_map(|(id, l)| match l.state {
                LeaseState::Orphaned { until } if until <= now => Some((*id, true)),
                LeaseState::Unconfirmed { until } if until <= now => Some((*id, false)),
                _ => None,
            })
            .filter(|(id, _)| !alive(&self.leases[id].peer))
            .collect();
        ending.sort_unstable();
        for (id, orphaned) in ending {
            if orphaned {
                // Its quarantine is over: the PASIDs go straight to free.
                let lease = self.leases.remove(&id).expect("listed");
                let u = self.usage.entry(lease.peer.uid).or_default();
                u.leases -= 1;
                u.pasids -= lease.held.len() as u32;
                for p in lease.held {
                    self.taken.free(p);
                    ops.push(StoreOp::Free { pasid: p });
                }
                ops.push(StoreOp::DeleteLease { id });
            } else {
                self.end_lease(id, now + self.policy.quarantine_ms, ops);
            }
        }
    }

    /// Totals over the shared range.
    pub fn totals(&self) -> Totals {
        let (mut held, mut orphaned, mut spare) = (0, 0, 0);
        for l in self.leases.values() {
            spare += l.spare.len() as u32;
            match l.state {
                LeaseState::Orphaned { .. } => orphaned += l.held.len() as u32,
                _ => held += l.held.len() as u32,
            }
        }
        Totals {
            free: self.free(),
            held,
            spare,
            quarantined: self.quarantine.len() as u32 + orphaned,
            reserved: self.reserved,
            leases: self.leases.len() as u32,
        }
    }

    /// The status report: every lease for an admin, else only `own` (if any).
    pub fn status(&self, admin: bool, own: Option<LeaseId>) -> StatusReport {
        let t = self.totals();
        let mut ids: Vec<LeaseId> = if admin {
            self.leases.keys().copied().collect()
        } else {
            own.into_iter()
                .filter(|id| self.leases.contains_key(id))
                .collect()
        };
        ids.sort_unstable();
        let leases = ids
            .into_iter()
            .map(|id| {
                let l = &self.leases[&id];
                let n = l.held.len() as u32;
                let spare = l.spare.len() as u32;
                let orphaned = matches!(l.state, LeaseState::Orphaned { .. });
                LeaseReport {
                    lease: id,
                    uid: l.peer.uid,
                    pid: l.peer.pid,
                    state: l.state.name().to_owned(),
                    held: if orphaned { 0 } else { n },
                    spare,
                    quarantined: if orphaned { n } else { 0 },
                }
            })
            .collect();
        StatusReport {
            layout: self.policy.layout,
            reserved: t.reserved,
            free: t.free,
            held: t.held,
            spare: t.spare,
            quarantined: t.quarantined,
            all_leases: admin,
            leases,
        }
    }
}
