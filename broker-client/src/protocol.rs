//! The messages a VMM and the broker exchange, and the protocol version.
//!
//! The conversation is strict request and answer: the client sends one [`Request`],
//! the broker answers it with one [`Response`] before it reads the next. The first
//! request on a connection must be [`Request::Hello`]; anything else first is a
//! protocol error and the broker closes the connection.

use core::fmt;
use core::ops::Range;

use pasid_core::PasidLayout;
use serde::{Deserialize, Serialize};

/// The protocol version this crate speaks. A broker refuses a [`Request::Hello`] with
/// another version (with [`ErrorKind::Version`]); bump it on any change of the messages.
pub const PROTOCOL_VERSION: u16 = 3;

/// Length of a lease's secret token in bytes.
pub const TOKEN_LEN: usize = 32;

/// A PASID layout as it travels: the width and the two half-open ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireLayout {
    /// PASID width in bits.
    pub width: u8,
    /// Start of the local (guest) range.
    pub local_start: u32,
    /// End (exclusive) of the local range.
    pub local_end: u32,
    /// Start of the shared (host-global) range.
    pub shared_start: u32,
    /// End (exclusive) of the shared range.
    pub shared_end: u32,
}

impl WireLayout {
    /// The shared range.
    pub fn shared(&self) -> Range<u32> {
        self.shared_start..self.shared_end
    }

    /// The local range.
    pub fn local(&self) -> Range<u32> {
        self.local_start..self.local_end
    }
}

impl From<&PasidLayout> for WireLayout {
    fn from(l: &PasidLayout) -> Self {
        WireLayout {
            width: l.width(),
            local_start: l.local().start,
            local_end: l.local().end,
            shared_start: l.shared().start,
            shared_end: l.shared().end,
        }
    }
}

impl fmt::Display for WireLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "width {}, local {}..{}, shared {}..{}",
            self.width, self.local_start, self.local_end, self.shared_start, self.shared_end
        )
    }
}

/// What a client asks to take back after it lost its connection (the broker
/// restarted, or the connection broke while the client lived).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    /// The lease's number, from the first [`Response::Welcome`].
    pub lease: u64,
    /// The lease's secret, from the first [`Response::Welcome`].
    pub token: [u8; TOKEN_LEN],
    /// Every host PASID the client holds, exactly. The broker refuses the reclaim if
    /// one of them is not the lease's; the lease's PASIDs missing from this list and
    /// from `released` go to quarantine (the client may have lost a grant's answer).
    pub held: Vec<u32>,
    /// Host PASIDs the client released whose answers it had not read when the
    /// connection broke: the broker releases those still the lease's instead of
    /// quarantining them, and ignores the rest.
    pub released: Vec<u32>,
}

impl fmt::Debug for Resume {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token is a secret: never in logs.
        f.debug_struct("Resume")
            .field("lease", &self.lease)
            .field("token", &"<secret>")
            .field("held", &self.held)
            .field("released", &self.released)
            .finish()
    }
}

/// A client's request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Opens the conversation: a new lease (`resume: None`) or a reclaim.
    Hello {
        /// [`PROTOCOL_VERSION`] of the client.
        version: u16,
        /// The client's layout; it must equal the broker's.
        layout: WireLayout,
        /// The lease to take back, if any.
        resume: Option<Resume>,
    },
    /// Takes `count` free host PASIDs (lowest free first), all or none.
    Alloc {
        /// How many.
        count: u32,
    },
    /// Takes exactly `pasid`, which must be free.
    Claim {
        /// The PASID.
        pasid: u32,
    },
    /// Gives back a PASID of this lease, after its teardown was confirmed: it is free
    /// at once.
    Release {
        /// The PASID.
        pasid: u32,
    },
    /// Asks for the broker's state (all leases for an admin, else only the caller's).
    Status,
    /// Ends the lease. PASIDs still held go to quarantine; with none held the lease
    /// ends at once.
    Goodbye,
}

/// The broker's answer to one [`Request`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Answer to [`Request::Hello`]: the lease is the caller's.
    Welcome {
        /// The lease's number.
        lease: u64,
        /// The lease's secret, needed to reclaim it.
        token: [u8; TOKEN_LEN],
        /// Free host PASIDs in the broker right now.
        free: u32,
    },
    /// Answer to [`Request::Alloc`].
    Granted {
        /// The PASIDs, now the lease's.
        pasids: Vec<u32>,
        /// Free host PASIDs after the grant.
        free: u32,
    },
    /// Answer to [`Request::Claim`] and [`Request::Release`].
    Done {
        /// Free host PASIDs after the change.
        free: u32,
    },
    /// Answer to [`Request::Status`].
    Status(StatusReport),
    /// Answer to [`Request::Goodbye`]; the broker closes the connection next.
    Bye,
    /// The request was refused; nothing changed.
    Error(WireError),
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Response::Welcome { lease, free, .. } => f
                .debug_struct("Welcome")
                .field("lease", lease)
                .field("token", &"<secret>")
                .field("free", free)
                .finish(),
            Response::Granted { pasids, free } => f
                .debug_struct("Granted")
                .field("pasids", pasids)
                .field("free", free)
                .finish(),
            Response::Done { free } => f.debug_struct("Done").field("free", free).finish(),
            Response::Status(s) => f.debug_tuple("Status").field(s).finish(),
            Response::Bye => f.write_str("Bye"),
            Response::Error(e) => f.debug_tuple("Error").field(e).finish(),
        }
    }
}

/// Why the broker refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The client speaks another protocol version.
    Version,
    /// The client's layout is not the broker's (the message states both).
    LayoutMismatch,
    /// The peer's credentials are not allowed to connect.
    Denied,
    /// The caller's uid reached its cap (leases or host PASIDs).
    CapReached,
    /// No free host PASID is left.
    Exhausted,
    /// The PASID is not free (claim) or not this lease's (release).
    Unavailable {
        /// The PASID.
        pasid: u32,
    },
    /// The lease to reclaim does not exist, the token is wrong, or the list of held
    /// PASIDs names one that is not the lease's.
    ReclaimRefused,
    /// A request out of order (before [`Request::Hello`], or a second hello) or a
    /// frame that does not decode. The broker closes the connection after it.
    Protocol,
    /// The broker could not record the change (its store failed); nothing changed.
    Store,
}

/// A refusal: its kind and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    /// What went wrong, for programs.
    pub kind: ErrorKind,
    /// What went wrong, for people.
    pub message: String,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The broker's state as [`Request::Status`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The broker's layout.
    pub layout: WireLayout,
    /// How many host PASIDs the broker keeps out of every grant (configured).
    pub reserved: u32,
    /// Free host PASIDs.
    pub free: u32,
    /// Host PASIDs held by a lease (connected or waiting to be reclaimed).
    pub held: u32,
    /// Host PASIDs recorded to a connected lease ahead of its requests (its spares:
    /// granted to it without a store commit, freed when it ends).
    pub spare: u32,
    /// Host PASIDs in quarantine (whose lease died), not yet free.
    pub quarantined: u32,
    /// Whether `leases` lists every lease (an admin asked) or only the caller's.
    pub all_leases: bool,
    /// The leases shown.
    pub leases: Vec<LeaseReport>,
}

/// One lease in a [`StatusReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseReport {
    /// The lease's number.
    pub lease: u64,
    /// The peer's uid when the lease was made (SO_PEERCRED).
    pub uid: u32,
    /// The peer's pid when the lease was made (SO_PEERCRED).
    pub pid: u32,
    /// Its state: `connected`, `orphaned` (connection lost, reclaimable until its
    /// quarantine ends) or `unconfirmed` (loaded after a broker restart).
    pub state: String,
    /// Host PASIDs the lease holds (connected or unconfirmed lease).
    pub held: u32,
    /// The lease's spares (see [`StatusReport::spare`]).
    pub spare: u32,
    /// Host PASIDs of the lease in quarantine (an orphaned lease: they free when its
    /// quarantine ends, unless the client reclaims them first).
    pub quarantined: u32,
}
