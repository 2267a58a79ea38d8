//! A store kept in memory: what the daemon's SQLite file holds, fed with the registry's
//! [`StoreOp`]s and given back as the [`StoredState`] a restart loads. The playground's
//! simulated broker restarts from it, and the reference-model test checks the ops
//! against it; the daemon keeps the same records on disk (`broker/src/store.rs`).

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use super::{LeaseId, LeaseState, Peer, StoreOp, StoredLease, StoredState, Token};

/// The records, as a store keeps them (spares included, as held: the store cannot tell
/// them from grants).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryStore {
    leases: BTreeMap<LeaseId, (Token, Peer, LeaseState)>,
    /// pasid -> its lease, or (quarantined) its deadline and uid.
    pasids: BTreeMap<u32, Result<LeaseId, (u64, u32)>>,
    last: LeaseId,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `ops` in order, as a commit would.
    pub fn apply(&mut self, ops: &[StoreOp]) {
        for op in ops {
            match *op {
                StoreOp::PutLease {
                    id,
                    token,
                    peer,
                    state,
                } => {
                    self.leases.insert(id, (token, peer, state));
                    self.last = self.last.max(id);
                }
                StoreOp::DeleteLease { id } => {
                    self.leases.remove(&id);
                }
                StoreOp::Hold { pasid, lease } => {
                    self.pasids.insert(pasid, Ok(lease));
                }
                StoreOp::Quarantine { pasid, until, uid } => {
                    self.pasids.insert(pasid, Err((until, uid)));
                }
                StoreOp::Free { pasid } => {
                    self.pasids.remove(&pasid);
                }
            }
        }
    }

    /// What a restart loads.
    pub fn stored(&self) -> StoredState {
        let leases = self
            .leases
            .iter()
            .map(|(&id, &(token, peer, state))| StoredLease {
                id,
                token,
                peer,
                state,
                held: self
                    .pasids
                    .iter()
                    .filter(|(_, v)| **v == Ok(id))
                    .map(|(p, _)| *p)
                    .collect(),
            })
            .collect();
        let quarantine = self
            .pasids
            .iter()
            .filter_map(|(&p, v)| v.err().map(|(until, uid)| (p, until, uid)))
            .collect();
        StoredState {
            leases,
            quarantine,
            last_lease: self.last,
        }
    }

    /// PASIDs recorded as held by a lease the store no longer has: none, unless the
    /// registry deleted a lease before moving its PASIDs (what the ops' order forbids).
    pub fn holds_of_deleted_leases(&self) -> Vec<u32> {
        self.pasids
            .iter()
            .filter(|(_, v)| matches!(v, Ok(l) if !self.leases.contains_key(l)))
            .map(|(p, _)| *p)
            .collect()
    }
}
