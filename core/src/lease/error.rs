//! Why the registry refused a call, and why stored state did not load.
//!
//! Plain enums with their own `Display`, as [`SourceError`](crate::SourceError): the
//! registry's refusals are not [`Error`](crate::Error)s (a host never meets them), and
//! the daemon maps each to its wire kind in one place. Every message says enough to
//! act on (the numbers that refused), since it reaches an operator's log unchanged.

use core::fmt;

use super::LeaseId;

/// A refused registry call. A call that returns one has changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LeaseError {
    /// The client's layout is not the registry's (the daemon's message states both).
    LayoutMismatch,
    /// The uid has as many leases as its cap allows.
    TooManyLeases {
        /// The uid.
        uid: u32,
        /// Its leases now.
        leases: u32,
        /// Its cap.
        cap: u32,
    },
    /// The grant would take the uid past its cap of host PASIDs (held, spare or
    /// quarantined).
    CapReached {
        /// The uid.
        uid: u32,
        /// Its host PASIDs now.
        used: u32,
        /// Its cap.
        cap: u32,
    },
    /// The shared range has fewer free PASIDs (spares of other leases included) than
    /// asked for.
    Exhausted {
        /// PASIDs asked for.
        asked: u32,
        /// PASIDs that could be had.
        free: u32,
    },
    /// The PASID asked for is not free (or outside the shared range).
    Unavailable {
        /// The PASID.
        pasid: u32,
    },
    /// The PASID given back is not held by this lease. The same answer whether it is
    /// free or another lease's: a client learns nothing about other leases.
    NotHeld {
        /// The PASID.
        pasid: u32,
    },
    /// The connection no longer serves the lease: a reclaim took it over, or the lease
    /// ended.
    NotServing {
        /// The lease.
        lease: LeaseId,
    },
    /// A reclaim was refused.
    ReclaimRefused {
        /// The lease asked for.
        lease: LeaseId,
        /// Why.
        why: ReclaimRefusal,
    },
}

/// Why a reclaim was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReclaimRefusal {
    /// No such lease (it ended, or never was).
    NoSuchLease,
    /// The token or the uid is not the lease's.
    NotThisClients,
    /// A listed PASID is not the lease's.
    DoesNotHold {
        /// The PASID.
        pasid: u32,
    },
}

impl fmt::Display for LeaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LeaseError::LayoutMismatch => f.write_str("layout mismatch"),
            LeaseError::TooManyLeases { uid, leases, cap } => {
                write!(f, "uid {uid} has {leases} leases, its cap is {cap}")
            }
            LeaseError::CapReached { uid, used, cap } => write!(
                f,
                "uid {uid} has {used} host PASIDs (held or quarantined), its cap is {cap}"
            ),
            LeaseError::Exhausted { asked, free } => {
                write!(f, "{asked} host PASIDs asked, {free} free")
            }
            LeaseError::Unavailable { pasid } => write!(f, "host PASID {pasid} is not free"),
            LeaseError::NotHeld { pasid } => {
                write!(f, "host PASID {pasid} is not held by this lease")
            }
            LeaseError::NotServing { lease } => {
                write!(f, "connection no longer serves lease {lease}")
            }
            LeaseError::ReclaimRefused { lease, why } => match why {
                ReclaimRefusal::NoSuchLease => write!(f, "no lease {lease}"),
                ReclaimRefusal::NotThisClients => write!(f, "lease {lease} is not this client's"),
                ReclaimRefusal::DoesNotHold { pasid } => {
                    write!(f, "lease {lease} does not hold host PASID {pasid}")
                }
            },
        }
    }
}

impl core::error::Error for LeaseError {}

/// Why stored state cannot be loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LoadError {
    /// A stored PASID is outside the configured shared range.
    OutOfRange(u32),
    /// A stored PASID appears twice.
    Duplicate(u32),
    /// Memory for the bitmap could not be had.
    OutOfMemory,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LoadError::OutOfRange(p) => {
                write!(
                    f,
                    "stored host PASID {p} is outside the configured shared range"
                )
            }
            LoadError::Duplicate(p) => write!(f, "stored host PASID {p} appears twice"),
            LoadError::OutOfMemory => f.write_str("out of memory"),
        }
    }
}

impl core::error::Error for LoadError {}
