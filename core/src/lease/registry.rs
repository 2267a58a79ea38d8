//! The [`Registry`]: the state machine of the module doc, over one shared range.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use super::{
    Cap, Lease, LeaseError, LeaseId, LeaseState, LoadError, PasidState, Peer, Policy,
    ReclaimRefusal, Resume, StoreOp, StoredState, Token, Totals,
};
use crate::bitmap::IdBitmap;
use crate::layout::PasidLayout;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Usage {
    leases: u32,
    pasids: u32,
}

/// The state machine (see the [module doc](super)).
///
/// Ordered maps throughout: the registry must build without `std`, and its ops then
/// come out in one order for one history, which keeps a replayed store identical.
#[derive(Debug, Clone)]
pub struct Registry {
    policy: Policy,
    /// Taken = reserved, held, spare or quarantined; the free ids are the clear ones.
    taken: IdBitmap,
    reserved: u32,
    leases: BTreeMap<LeaseId, Lease>,
    /// Quarantined PASIDs whose lease is gone: pasid -> (until, uid).
    quarantine: BTreeMap<u32, (u64, u32)>,
    usage: BTreeMap<u32, Usage>,
    last_lease: LeaseId,
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
            leases: BTreeMap::new(),
            quarantine: BTreeMap::new(),
            usage: BTreeMap::new(),
            last_lease: stored.last_lease,
        };
        let mut seen = BTreeSet::new();
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
        self.policy.cap(uid)
    }

    /// Free host PASIDs.
    pub fn free(&self) -> u32 {
        self.taken.capacity() - self.taken.used()
    }

    /// A lease, if it exists.
    pub fn lease(&self, id: LeaseId) -> Option<&Lease> {
        self.leases.get(&id)
    }

    /// Every lease, by number.
    pub fn leases(&self) -> impl Iterator<Item = (LeaseId, &Lease)> + '_ {
        self.leases.iter().map(|(id, l)| (*id, l))
    }

    /// PASIDs quarantined after their lease ended, by PASID: (pasid, until, uid).
    /// An orphaned lease's PASIDs are its own (see [`Registry::state_of`]).
    pub fn quarantined(&self) -> impl Iterator<Item = (u32, u64, u32)> + '_ {
        self.quarantine
            .iter()
            .map(|(p, (until, uid))| (*p, *until, *uid))
    }

    /// Where host PASID `pasid` is.
    pub fn state_of(&self, pasid: u32) -> PasidState {
        if !self.policy.layout.shared().contains(&pasid) {
            return PasidState::Outside;
        }
        // Leases and quarantine first: a PASID reserved after it was granted is still
        // the lease's until it comes back.
        for (&lease, l) in &self.leases {
            if l.held.contains(&pasid) {
                return match l.state {
                    LeaseState::Orphaned { until } => PasidState::Orphaned { lease, until },
                    _ => PasidState::Held { lease },
                };
            }
            if l.spare.contains(&pasid) {
                return PasidState::Spare { lease };
            }
        }
        if let Some(&(until, uid)) = self.quarantine.get(&pasid) {
            return PasidState::Quarantined { until, uid };
        }
        if self.taken.is_used(pasid) {
            PasidState::Reserved
        } else {
            PasidState::Free
        }
    }

    /// Checks a client's layout against the registry's.
    pub fn check_layout(&self, client: &PasidLayout) -> Result<(), LeaseError> {
        if *client == self.policy.layout {
            Ok(())
        } else {
            Err(LeaseError::LayoutMismatch)
        }
    }

    /// Opens a new lease for `peer`, served by connection `conn`.
    pub fn open(
        &mut self,
        peer: Peer,
        conn: u64,
        token: Token,
        ops: &mut Vec<StoreOp>,
    ) -> Result<LeaseId, LeaseError> {
        let cap = self.cap(peer.uid);
        let usage = self.usage.get(&peer.uid).copied().unwrap_or_default();
        if usage.leases >= cap.max_leases {
            return Err(LeaseError::TooManyLeases {
                uid: peer.uid,
                leases: usage.leases,
                cap: cap.max_leases,
            });
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
    /// PASIDs must all be the lease's (else nothing changes); those the client says it
    /// released (`resume.released`) that are still the lease's are released; the
    /// lease's other PASIDs not listed go to quarantine.
    pub fn reclaim(
        &mut self,
        peer: Peer,
        conn: u64,
        resume: Resume<'_>,
        now: u64,
        ops: &mut Vec<StoreOp>,
    ) -> Result<LeaseId, LeaseError> {
        let refused = |why| LeaseError::ReclaimRefused {
            lease: resume.lease,
            why,
        };
        let Some(lease) = self.leases.get(&resume.lease) else {
            return Err(refused(ReclaimRefusal::NoSuchLease));
        };
        // Not a timing-safe comparison: tokens are 256 random bits and a wrong guess
        // costs a connection; the difference in time tells nothing useful.
        if lease.token != *resume.token || lease.peer.uid != peer.uid {
            return Err(refused(ReclaimRefusal::NotThisClients));
        }
        if let Some(&pasid) = resume.held.iter().find(|p| !lease.held.contains(p)) {
            return Err(refused(ReclaimRefusal::DoesNotHold { pasid }));
        }
        let listed: BTreeSet<u32> = resume.held.iter().copied().collect();
        // Releases the client sent (or queued) but had no answer to when the connection
        // broke: each one still the lease's, and not listed as held, is released now, as
        // its `Release` would have been (the VMM confirmed its teardown before it let it
        // go). The others reached the broker before, or were never the lease's: nothing
        // to do, so no client can free what is not its lease's.
        let owed: Vec<u32> = resume
            .released
            .iter()
            .filter(|p| !listed.contains(p) && lease.held.contains(p))
            .copied()
            .collect();
        for pasid in owed {
            self.give_back(resume.lease, pasid, ops);
        }
        let lease = &self.leases[&resume.lease];
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

    fn connected(&self, id: LeaseId, conn: u64) -> Result<&Lease, LeaseError> {
        match self.leases.get(&id) {
            Some(l) if l.state == LeaseState::Connected { conn } => Ok(l),
            // The lease was taken over by a newer connection (a reclaim) or ended.
            _ => Err(LeaseError::NotServing { lease: id }),
        }
    }

    fn check_cap(&self, uid: u32, more: u32) -> Result<(), LeaseError> {
        let cap = self.cap(uid);
        let used = self.usage_of(uid);
        if used.saturating_add(more) > cap.max_pasids {
            return Err(LeaseError::CapReached {
                uid,
                used,
                cap: cap.max_pasids,
            });
        }
        Ok(())
    }

    /// Grants `count` host PASIDs, all or none: the lease's spares first, lowest
    /// first; when they do not cover `count`, the lowest free PASIDs, and as many more
    /// as the lease may keep go to its spares. A grant served from spares changes
    /// nothing on record and appends no op (the daemon answers it without a commit).
    pub fn alloc(
        &mut self,
        id: LeaseId,
        conn: u64,
        count: u32,
        ops: &mut Vec<StoreOp>,
    ) -> Result<Vec<u32>, LeaseError> {
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
            return Err(LeaseError::Exhausted {
                asked: count,
                free: pool,
            });
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
        // By lease number (the map's order), so the ops come out the same every time.
        let ids: Vec<LeaseId> = self
            .leases
            .iter()
            .filter(|(id, l)| {
                **id != keep && !l.spare.is_empty() && uid.is_none_or(|u| u == l.peer.uid)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.free_spares(id, ops);
        }
    }

    /// Frees one lease's spares (never handed out, or given back torn down).
    fn free_spares(&mut self, id: LeaseId, ops: &mut Vec<StoreOp>) {
        let Some(lease) = self.leases.get_mut(&id) else {
            return;
        };
        let spare = core::mem::take(&mut lease.spare);
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
    ) -> Result<(), LeaseError> {
        let uid = self.connected(id, conn)?.peer.uid;
        let unavailable = LeaseError::Unavailable { pasid };
        if !self.policy.layout.shared().contains(&pasid) {
            return Err(unavailable);
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
            return Err(unavailable);
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
    ) -> Result<(), LeaseError> {
        if !self.connected(id, conn)?.held.contains(&pasid) {
            return Err(LeaseError::NotHeld { pasid });
        }
        self.give_back(id, pasid, ops);
        Ok(())
    }

    /// Takes `pasid`, held by lease `id`, off it: into its spares while they have
    /// room (no store record: the store still gives it to the lease), else free. A
    /// PASID the lease does not hold (given back already: a reclaim may name one
    /// release twice) changes nothing, so nothing is freed or counted twice.
    fn give_back(&mut self, id: LeaseId, pasid: u32, ops: &mut Vec<StoreOp>) {
        let lease = self
            .leases
            .get_mut(&id)
            .expect("the caller found the lease");
        if !lease.held.remove(&pasid) {
            return;
        }
        if (lease.spare.len() as u32) < self.policy.spare {
            lease.spare.insert(pasid);
            return;
        }
        let uid = lease.peer.uid;
        self.taken.free(pasid);
        self.usage.entry(uid).or_default().pasids -= 1;
        ops.push(StoreOp::Free { pasid });
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
    /// ends. Nothing happens if the connection no longer serves the lease (a reclaim
    /// took it over).
    pub fn disconnect(&mut self, id: LeaseId, conn: u64, now: u64, ops: &mut Vec<StoreOp>) {
        if self.connected(id, conn).is_err() {
            return;
        }
        self.free_spares(id, ops);
        if self.leases[&id].held.is_empty() {
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
        let ending: Vec<(LeaseId, bool)> = self
            .leases
            .iter()
            .filter_map(|(id, l)| match l.state {
                LeaseState::Orphaned { until } if until <= now => Some((*id, true)),
                LeaseState::Unconfirmed { until } if until <= now => Some((*id, false)),
                _ => None,
            })
            .filter(|(id, _)| !alive(&self.leases[id].peer))
            .collect();
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
}
