//! The crate's one error type, with stable numeric codes shared by the C and JS layers.

use crate::contract::GuestContract;
use crate::layout::RangeName;
use crate::migrate::MigrationIdentity;
use crate::source::SourceError;
use crate::types::{DeviceKind, GuestId, Rid};

/// Result of every fallible call in this crate.
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// Everything that can go wrong. A call that returns an error has changed nothing.
///
/// Each variant has a stable [`ErrorCode`] (see [`Error::code`]); the C and JS layers
/// hand that number and the [`Display`](core::fmt::Display) text to their callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The PASID width is outside 1..=20 bits.
    #[error("PASID width {width} is outside 1..=20 bits")]
    InvalidWidth {
        /// The width asked for.
        width: u8,
    },
    /// A range includes PASID 0, which stays reserved (RID_PASID on VT-d).
    #[error("the {range} range includes PASID 0, which is reserved")]
    IncludesPasidZero {
        /// Which range.
        range: RangeName,
    },
    /// A range has no PASIDs in it.
    #[error("the {range} range is empty")]
    EmptyRange {
        /// Which range.
        range: RangeName,
    },
    /// A range ends beyond what the PASID width can express.
    #[error("the {range} range ends at {end}, beyond the {limit} PASIDs of the width")]
    RangeBeyondWidth {
        /// Which range.
        range: RangeName,
        /// Its (exclusive) end.
        end: u32,
        /// 2^width.
        limit: u32,
    },
    /// The local and shared ranges overlap.
    #[error("the local and shared ranges overlap")]
    RangesOverlap,
    /// The operation does not exist on the guest's or host's platform.
    #[error("not supported: {what}")]
    NotSupported {
        /// What was asked for, and why it is not offered.
        what: &'static str,
    },
    /// No guest with this id lives on this host.
    #[error("no such guest: {guest}")]
    NoSuchGuest {
        /// The id given.
        guest: GuestId,
    },
    /// The host already has as many guests as it can name.
    #[error("too many guests on this host")]
    TooManyGuests,
    /// The RID's dedicated use belongs to a guest already, or the guest already has
    /// the use asked for.
    #[error("RID {rid} is already attached")]
    RidInUse {
        /// The RID.
        rid: Rid,
    },
    /// The RID is not attached to this guest.
    #[error("RID {rid} is not attached to this guest")]
    NoSuchDevice {
        /// The RID.
        rid: Rid,
    },
    /// The device (the guest's use of the RID) still has PASIDs bound or recorded.
    #[error("RID {rid} still has PASIDs bound to it")]
    DeviceBusy {
        /// The RID.
        rid: Rid,
    },
    /// The PASID lies outside the guest (local) range.
    #[error("PASID {pasid} is outside the guest range")]
    PasidOutOfRange {
        /// The PASID.
        pasid: u32,
    },
    /// The PASID is already in use where it must be free.
    #[error("PASID {pasid} is already in use")]
    PasidInUse {
        /// The PASID.
        pasid: u32,
    },
    /// The guest holds no such PASID.
    #[error("PASID {pasid} is not allocated to this guest")]
    NotAllocated {
        /// The PASID.
        pasid: u32,
    },
    /// The guest PASID is local, so it has no host PASID and cannot go to a shared WQ.
    #[error("PASID {pasid} is a local PASID, not a shared one")]
    NotShared {
        /// The PASID.
        pasid: u32,
    },
    /// The guest PASID is still bound to a device, so it cannot be freed.
    #[error("PASID {pasid} is still bound to a device")]
    StillBound {
        /// The PASID.
        pasid: u32,
    },
    /// The guest PASID is already bound to that device.
    #[error("PASID {pasid} is already bound to RID {rid}")]
    AlreadyBound {
        /// The PASID.
        pasid: u32,
        /// The RID.
        rid: Rid,
    },
    /// The guest PASID is not bound to that device.
    #[error("PASID {pasid} is not bound to RID {rid}")]
    NotBound {
        /// The PASID.
        pasid: u32,
        /// The RID.
        rid: Rid,
    },
    /// Every PASID of the guest range is taken in this guest.
    #[error("no free PASID in the guest range")]
    GuestRangeExhausted,
    /// Every PASID of the host's shared range is taken.
    #[error("no free PASID in the shared range")]
    SharedRangeExhausted,
    /// The guest holds as many shared PASIDs as its quota allows.
    #[error("shared PASID quota of {quota} reached")]
    QuotaExceeded {
        /// The guest's quota.
        quota: u32,
    },
    /// Memory could not be allocated.
    #[error("out of memory")]
    OutOfMemory,
    /// A caller-provided buffer or page set is too small or malformed.
    #[error("buffer too small: {needed} needed")]
    BufferTooSmall {
        /// How many units were needed.
        needed: usize,
    },
    /// A migration blob is not well formed.
    #[error("migration blob is malformed: {reason}")]
    MalformedBlob {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A migration blob's checksum does not match its contents.
    #[error("migration blob checksum mismatch")]
    ChecksumMismatch,
    /// A migration blob has a format version this build does not read.
    #[error("migration format version {found} is not supported (this build reads {supported})")]
    UnsupportedVersion {
        /// Version in the blob.
        found: u16,
        /// Highest version this build reads.
        supported: u16,
    },
    /// The destination's layout cannot hold the guest.
    #[error("incompatible layout: {reason}")]
    IncompatibleLayout {
        /// Which limit does not fit.
        reason: &'static str,
    },
    /// A source RID of the guest has no destination RID in the map.
    #[error("RID {rid} has no destination in the RID map")]
    RidNotMapped {
        /// The source RID.
        rid: Rid,
    },
    /// A source RID of the guest appears more than once in the RID map.
    #[error("RID {rid} appears more than once as a source in the RID map")]
    RidMappedTwice {
        /// The source RID.
        rid: Rid,
    },
    /// A caller-provided page buffer is not exactly 4096 bytes.
    #[error("a page buffer holds {len} bytes, not 4096")]
    PageSize {
        /// The buffer's length.
        len: usize,
    },
    /// A physical address given for a page is not 4 KiB aligned.
    #[error("physical address {phys:#x} is not 4 KiB aligned")]
    UnalignedPage {
        /// The address.
        phys: u64,
    },
    /// A PASID-translation table the guest uses has no page among those supplied.
    #[error("no page supplied for PASID-translation table {table}")]
    MissingTablePage {
        /// The table number (gPASID >> 10).
        table: u32,
    },
    /// A supplied table page names a table twice or one beyond the 1024 tables.
    #[error("page for PASID-translation table {table} is a duplicate or out of range")]
    BadTablePage {
        /// The table number given.
        table: u32,
    },
    /// Two caller-provided pages have the same physical address.
    #[error("two pages share physical address {phys:#x}")]
    DuplicatePage {
        /// The address.
        phys: u64,
    },
    /// The RID map says a destination RID is a device of another kind than the
    /// guest's device mapped to it.
    #[error(
        "RID kind mismatch: destination RID {rid} is a {destination_kind} device, \
         but the guest's device mapped to it is a {guest_kind} device"
    )]
    DeviceKindMismatch {
        /// The destination RID.
        rid: Rid,
        /// The kind of the guest's device (as it was on the source).
        guest_kind: DeviceKind,
        /// The kind the RID map gives the destination RID.
        destination_kind: DeviceKind,
    },
    /// The guest PASID was freed and waits for the VMM to confirm its teardown.
    #[error("PASID {pasid} is draining: its teardown is not confirmed yet")]
    Draining {
        /// The guest PASID.
        pasid: u32,
    },
    /// A teardown was confirmed for a PASID that is not draining (or not as given).
    #[error("PASID {pasid} is not waiting for teardown")]
    NotDraining {
        /// The guest PASID given.
        pasid: u32,
    },
    /// The guest uses the RID both ways, so the call must say which use it means.
    #[error("RID {rid} carries both a dedicated and a shared-WQ use of this guest: say which")]
    AmbiguousUse {
        /// The RID.
        rid: Rid,
    },
    /// The host-PASID source (a broker, a VMM's callbacks) refused or failed.
    #[error("host-PASID source: {error}")]
    Source {
        /// What the source said.
        error: SourceError,
    },
    /// The guest's translation-change log is full: the VMM has not drained it
    /// ([`crate::Host::drain_translation_changes`]). Nothing changed.
    #[error("the guest's translation-change log is full ({capacity} changes): drain it")]
    ChangeLogFull {
        /// The log's capacity.
        capacity: u32,
    },
    /// This host already imported a blob with this identity: a replayed (or retried
    /// without a new epoch) migration.
    #[error("{identity} was imported here already")]
    Replayed {
        /// The blob's identity.
        identity: MigrationIdentity,
    },
    /// What the guest's vIOMMU advertised (its PASID width, the range it may use, its
    /// capabilities) is more than this host can honour.
    #[error("the guest was told {told}, but this host offers {offered}")]
    ContractNotHonoured {
        /// What the guest was told.
        told: GuestContract,
        /// The most this host can offer a guest of that platform.
        offered: GuestContract,
    },
    /// A teardown was confirmed while the gPASID's invalid entry still waits in the
    /// guest's change log: the CPU may still translate it. Drain and apply the log
    /// first.
    #[error("PASID {pasid}'s invalidation is still in the change log: apply it before confirming the teardown")]
    ChangePending {
        /// The guest PASID.
        pasid: u32,
    },
}

impl From<SourceError> for Error {
    /// Exhaustion and memory keep their own errors (a guest sees "no PASID available"
    /// for both a full range and a broker's cap); the rest name the source.
    fn from(error: SourceError) -> Self {
        match error {
            SourceError::Exhausted => Error::SharedRangeExhausted,
            SourceError::OutOfMemory => Error::OutOfMemory,
            error => Error::Source { error },
        }
    }
}

/// The stable number of each [`Error`] variant. 0 is success in the C API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
#[non_exhaustive]
pub enum ErrorCode {
    /// [`Error::InvalidWidth`].
    InvalidWidth = 1,
    /// [`Error::IncludesPasidZero`].
    IncludesPasidZero = 2,
    /// [`Error::EmptyRange`].
    EmptyRange = 3,
    /// [`Error::RangeBeyondWidth`].
    RangeBeyondWidth = 4,
    /// [`Error::RangesOverlap`].
    RangesOverlap = 5,
    /// [`Error::NotSupported`].
    NotSupported = 6,
    /// [`Error::NoSuchGuest`].
    NoSuchGuest = 7,
    /// [`Error::TooManyGuests`].
    TooManyGuests = 8,
    /// [`Error::RidInUse`].
    RidInUse = 9,
    /// [`Error::NoSuchDevice`].
    NoSuchDevice = 10,
    /// [`Error::DeviceBusy`].
    DeviceBusy = 12,
    /// [`Error::PasidOutOfRange`].
    PasidOutOfRange = 13,
    /// [`Error::PasidInUse`].
    PasidInUse = 14,
    /// [`Error::NotAllocated`].
    NotAllocated = 15,
    /// [`Error::NotShared`].
    NotShared = 16,
    /// [`Error::StillBound`].
    StillBound = 17,
    /// [`Error::AlreadyBound`].
    AlreadyBound = 18,
    /// [`Error::NotBound`].
    NotBound = 19,
    /// [`Error::GuestRangeExhausted`].
    GuestRangeExhausted = 20,
    /// [`Error::SharedRangeExhausted`].
    SharedRangeExhausted = 21,
    /// [`Error::QuotaExceeded`].
    QuotaExceeded = 22,
    /// [`Error::OutOfMemory`].
    OutOfMemory = 23,
    /// [`Error::BufferTooSmall`].
    BufferTooSmall = 24,
    /// [`Error::MalformedBlob`].
    MalformedBlob = 30,
    /// [`Error::ChecksumMismatch`].
    ChecksumMismatch = 31,
    /// [`Error::UnsupportedVersion`].
    UnsupportedVersion = 32,
    /// [`Error::IncompatibleLayout`].
    IncompatibleLayout = 33,
    /// [`Error::RidNotMapped`].
    RidNotMapped = 34,
    /// [`Error::RidMappedTwice`].
    RidMappedTwice = 50,
    /// [`Error::PageSize`].
    PageSize = 40,
    /// [`Error::UnalignedPage`].
    UnalignedPage = 41,
    /// [`Error::MissingTablePage`].
    MissingTablePage = 42,
    /// [`Error::BadTablePage`].
    BadTablePage = 43,
    /// [`Error::DuplicatePage`].
    DuplicatePage = 44,
    /// [`Error::DeviceKindMismatch`].
    DeviceKindMismatch = 51,
    /// [`Error::Draining`].
    Draining = 52,
    /// [`Error::NotDraining`].
    NotDraining = 53,
    /// [`Error::AmbiguousUse`].
    AmbiguousUse = 54,
    /// [`Error::Source`].
    Source = 55,
    /// [`Error::ChangeLogFull`].
    ChangeLogFull = 56,
    /// [`Error::Replayed`].
    Replayed = 57,
    /// [`Error::ContractNotHonoured`].
    ContractNotHonoured = 58,
    /// [`Error::ChangePending`].
    ChangePending = 59,
}

impl Error {
    /// The variant's stable number.
    pub const fn code(&self) -> ErrorCode {
        match self {
            Error::InvalidWidth { .. } => ErrorCode::InvalidWidth,
            Error::IncludesPasidZero { .. } => ErrorCode::IncludesPasidZero,
            Error::EmptyRange { .. } => ErrorCode::EmptyRange,
            Error::RangeBeyondWidth { .. } => ErrorCode::RangeBeyondWidth,
            Error::RangesOverlap => ErrorCode::RangesOverlap,
            Error::NotSupported { .. } => ErrorCode::NotSupported,
            Error::NoSuchGuest { .. } => ErrorCode::NoSuchGuest,
            Error::TooManyGuests => ErrorCode::TooManyGuests,
            Error::RidInUse { .. } => ErrorCode::RidInUse,
            Error::NoSuchDevice { .. } => ErrorCode::NoSuchDevice,
            Error::DeviceBusy { .. } => ErrorCode::DeviceBusy,
            Error::PasidOutOfRange { .. } => ErrorCode::PasidOutOfRange,
            Error::PasidInUse { .. } => ErrorCode::PasidInUse,
            Error::NotAllocated { .. } => ErrorCode::NotAllocated,
            Error::NotShared { .. } => ErrorCode::NotShared,
            Error::StillBound { .. } => ErrorCode::StillBound,
            Error::AlreadyBound { .. } => ErrorCode::AlreadyBound,
            Error::NotBound { .. } => ErrorCode::NotBound,
            Error::GuestRangeExhausted => ErrorCode::GuestRangeExhausted,
            Error::SharedRangeExhausted => ErrorCode::SharedRangeExhausted,
            Error::QuotaExceeded { .. } => ErrorCode::QuotaExceeded,
            Error::OutOfMemory => ErrorCode::OutOfMemory,
            Error::BufferTooSmall { .. } => ErrorCode::BufferTooSmall,
            Error::MalformedBlob { .. } => ErrorCode::MalformedBlob,
            Error::ChecksumMismatch => ErrorCode::ChecksumMismatch,
            Error::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            Error::IncompatibleLayout { .. } => ErrorCode::IncompatibleLayout,
            Error::RidNotMapped { .. } => ErrorCode::RidNotMapped,
            Error::RidMappedTwice { .. } => ErrorCode::RidMappedTwice,
            Error::PageSize { .. } => ErrorCode::PageSize,
            Error::UnalignedPage { .. } => ErrorCode::UnalignedPage,
            Error::MissingTablePage { .. } => ErrorCode::MissingTablePage,
            Error::BadTablePage { .. } => ErrorCode::BadTablePage,
            Error::DuplicatePage { .. } => ErrorCode::DuplicatePage,
            Error::DeviceKindMismatch { .. } => ErrorCode::DeviceKindMismatch,
            Error::Draining { .. } => ErrorCode::Draining,
            Error::NotDraining { .. } => ErrorCode::NotDraining,
            Error::AmbiguousUse { .. } => ErrorCode::AmbiguousUse,
            Error::Source { .. } => ErrorCode::Source,
            Error::ChangeLogFull { .. } => ErrorCode::ChangeLogFull,
            Error::Replayed { .. } => ErrorCode::Replayed,
            Error::ContractNotHonoured { .. } => ErrorCode::ContractNotHonoured,
            Error::ChangePending { .. } => ErrorCode::ChangePending,
        }
    }
}

impl From<alloc::collections::TryReserveError> for Error {
    fn from(_: alloc::collections::TryReserveError) -> Self {
        Error::OutOfMemory
    }
}
