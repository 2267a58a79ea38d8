//! The host-PASID lease state machine of the machine's broker: leases, their host
//! PASIDs, spares, quarantine, reclaim (DESIGN.md §6).
//!
//! One state machine serves the `pasid-broker` daemon and the playground's simulated
//! broker, so what the page shows is what the daemon does. It is pure: it knows no
//! socket, no clock and no disk. Every call gets the time (wall clock, milliseconds
//! since the Unix epoch, because deadlines are stored and must survive a restart) and
//! appends the changes it made to a list of [`StoreOp`]s, which the caller commits
//! before it answers. A refused call changes nothing and appends nothing.
//!
//! The lifecycle of a host PASID:
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
//! the rest of a round trip is a few), so the registry records host PASIDs to a lease
//! ahead of its requests: when a lease's spares run out, one commit records the grant
//! and up to [`Policy::spare`] more to the lease, and later grants take a spare
//! without a commit; a release puts the PASID back among the lease's spares (again
//! without a commit) while it has fewer than `spare` of them. In memory the registry
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
//! teardown is done), so ending a lease frees them at once; only after a restart,
//! when the store cannot tell them from grants, do they go through quarantine. They
//! count against the uid's cap, and the pool takes them back from every lease before it
//! answers [`LeaseError::Exhausted`], so spares never make a grant fail. What is given
//! up is the order across leases: a grant is the lowest of the lease's spares, not the
//! lowest free PASID of the machine.
//!
//! ```
//! use pasid_core::lease::{Cap, Peer, Policy, Registry, StoredState};
//! use pasid_core::PasidLayout;
//!
//! let policy = Policy {
//!     layout: PasidLayout::new(20, 1..4096, 4096..8192)?,
//!     reserved: vec![],
//!     quarantine_ms: 60_000,
//!     grace_ms: 30_000,
//!     spare: 2,
//!     default_cap: Cap { max_leases: 4, max_pasids: 100 },
//!     uid_caps: Default::default(),
//! };
//! let (mut ops, now) = (Vec::new(), 1_000);
//! let mut reg = Registry::load(policy, StoredState::default(), now, &mut ops).unwrap();
//! let qemu = Peer { uid: 107, gid: 107, pid: 4242, start: 1 };
//! let lease = reg.open(qemu, 1, [7; 32], &mut ops).unwrap();
//! assert_eq!(reg.alloc(lease, 1, 1, &mut ops).unwrap(), [4096]); // and 2 spares
//! ops.clear();
//! assert_eq!(reg.alloc(lease, 1, 1, &mut ops).unwrap(), [4097]);
//! assert!(ops.is_empty(), "a spare's grant is on record already");
//!
//! // The VMM dies: its spares free at once, its grants wait out the quarantine.
//! reg.disconnect(lease, 1, now, &mut ops);
//! assert_eq!(reg.totals().quarantined, 2);
//! reg.tick(now + 60_000, |_| false, &mut ops);
//! assert_eq!(reg.totals().quarantined, 0);
//! # Ok::<(), pasid_core::Error>(())
//! ```

use alloc::collections::BTreeMap;
use alloc::collections::BTreeSet;
use alloc::vec::Vec;
use core::ops::Range;

use crate::layout::PasidLayout;

mod error;
mod memory_store;
mod registry;

pub use error::{LeaseError, LoadError, ReclaimRefusal};
pub use memory_store::MemoryStore;
pub use registry::Registry;

/// A lease's number.
pub type LeaseId = u64;

/// Length of a lease's secret token in bytes.
pub const TOKEN_LEN: usize = 32;

/// A lease's secret: whoever shows it (with the lease's uid) may reclaim the lease.
pub type Token = [u8; TOKEN_LEN];

/// Who is at the other end of a connection (the daemon: from SO_PEERCRED), and when
/// its process started (0 if unknown), so a reused pid is not taken for it.
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
    pub token: Token,
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
        token: Token,
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The layout every client must share; the registry hands out its shared range.
    pub layout: PasidLayout,
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
    pub uid_caps: BTreeMap<u32, Cap>,
}

impl Policy {
    /// The cap of `uid`: its own, else the default.
    pub fn cap(&self, uid: u32) -> Cap {
        *self.uid_caps.get(&uid).unwrap_or(&self.default_cap)
    }
}

/// What a client shows to take back its lease (after a lost connection or a broker
/// restart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume<'a> {
    /// The lease's number.
    pub lease: LeaseId,
    /// The lease's secret.
    pub token: &'a Token,
    /// Every host PASID the client holds, exactly: the lease's PASIDs neither listed
    /// here nor in `released` go to quarantine (the client may have lost a grant's
    /// answer).
    pub held: &'a [u32],
    /// Host PASIDs the client gave back whose release may not have reached the broker
    /// (sent or queued when the connection broke, no answer read): those still the
    /// lease's are released as their `Release` would have been, not quarantined. Any
    /// other is ignored (it was released before, or never the lease's), as is one also
    /// in `held`.
    pub released: &'a [u32],
}

/// A lease as the store gives it back after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLease {
    /// Its number.
    pub id: LeaseId,
    /// Its secret.
    pub token: Token,
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

/// Totals over the shared range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
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

/// Where one host PASID is, for a status view that shows PASIDs one by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasidState {
    /// Outside the shared range: never the registry's.
    Outside,
    /// Reserved by configuration.
    Reserved,
    /// Free.
    Free,
    /// Granted to a connected or unconfirmed lease.
    Held {
        /// The lease.
        lease: LeaseId,
    },
    /// A spare of the lease: recorded to it, not granted.
    Spare {
        /// The lease.
        lease: LeaseId,
    },
    /// Held by an orphaned lease: quarantined until `until` unless the lease is
    /// reclaimed first.
    Orphaned {
        /// The lease.
        lease: LeaseId,
        /// End of its quarantine.
        until: u64,
    },
    /// Quarantined after its lease ended.
    Quarantined {
        /// End of the quarantine.
        until: u64,
        /// The uid whose cap it counts against.
        uid: u32,
    },
}
