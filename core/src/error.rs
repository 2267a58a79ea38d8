//! The crate's one error type, with stable numeric codes shared by the C and JS layers.
//!
//! Each code is written once, in the table at the end of this file: its number, name,
//! short text and doc beside the [`Error`] variant with its fields and full message.
//! [`Error`], [`ErrorCode`] and [`ErrorCode::ALL`] are generated from it, and the other
//! faces read it rather than keep lists of their own: the C layer's `pasid_strerror`
//! and the `PASID_RESULT_*` constants of `include/pasid.h` (generated from
//! [`ErrorCode::ALL`] by the header test of `pasid-ffi`), and the JS layer's `code` and
//! `codeName`.

use crate::contract::GuestContract;
use crate::layout::RangeName;
use crate::migrate::MigrationIdentity;
use crate::source::SourceError;
use crate::types::{DeviceKind, GuestId, Rid};

/// Result of every fallible call in this crate.
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// Defines a table of stable codes: a `#[repr(u32)]` enum whose variants each carry a
/// doc comment, a short text (`#[text("...")]`) and an explicit number, in ascending
/// order (checked at compile time), with
///
/// * `ALL`, every code in that order;
/// * `number()`, `from_number(n)`, `name()` (the variant's name), `message()` (the
///   text), `c_message()` (the text NUL-terminated, for a C caller's static string)
///   and `doc()` (the doc comment, a line per line as written after `///`).
///
/// [`ErrorCode`] is one such table; the C layer (`pasid-ffi`) defines its own codes
/// (success, a NULL pointer, a bad handle, ...) with it, so that the C header's
/// constants come from the same kind of table as the core's.
///
/// ```
/// pasid_core::code_enum! {
///     /// Codes of a layer above the core.
///     pub enum LayerCode {
///         /// Nothing went wrong.
///         #[text("success")]
///         Ok = 0,
///         /// The layer lost its temper.
///         #[text("temper lost")]
///         Temper = 1000,
///     }
/// }
/// assert_eq!(LayerCode::ALL, [LayerCode::Ok, LayerCode::Temper]);
/// assert_eq!(LayerCode::from_number(1000), Some(LayerCode::Temper));
/// assert_eq!((LayerCode::Temper.name(), LayerCode::Temper.message()), ("Temper", "temper lost"));
/// assert_eq!(LayerCode::Temper.c_message(), c"temper lost");
/// assert_eq!(LayerCode::Ok.doc(), " Nothing went wrong.\n");
/// ```
#[macro_export]
macro_rules! code_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $Enum:ident {
            $(
                $(#[doc = $doc:literal])*
                #[text($text:literal)]
                $name:ident = $number:literal,
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u32)]
        $vis enum $Enum {
            $( $(#[doc = $doc])* $name = $number, )*
        }

        impl $Enum {
            /// Every code, in ascending order of number.
            pub const ALL: &'static [$Enum] = &[$($Enum::$name),*];

            /// The code's stable number.
            pub const fn number(self) -> u32 {
                self as u32
            }

            /// The code with this number, if there is one.
            pub const fn from_number(number: u32) -> ::core::option::Option<Self> {
                match number {
                    $( $number => ::core::option::Option::Some($Enum::$name), )*
                    _ => ::core::option::Option::None,
                }
            }

            /// The code's name, as its variant is called (`"QuotaExceeded"`).
            pub const fn name(self) -> &'static str {
                match self {
                    $( $Enum::$name => stringify!($name), )*
                }
            }

            /// A short static text of what the code means, without the details a
            /// particular failure has.
            pub const fn message(self) -> &'static str {
                match self {
                    $( $Enum::$name => $text, )*
                }
            }

            /// [`Self::message`] NUL-terminated: a C caller keeps a pointer to it for
            /// the life of the program, so the text is made at compile time, not per
            /// call.
            pub const fn c_message(self) -> &'static ::core::ffi::CStr {
                match self {
                    $(
                        $Enum::$name => const {
                            match ::core::ffi::CStr::from_bytes_with_nul(
                                concat!($text, "\0").as_bytes(),
                            ) {
                                ::core::result::Result::Ok(text) => text,
                                ::core::result::Result::Err(_) => {
                                    panic!(concat!("the text of ", stringify!($name), " holds a NUL"))
                                }
                            }
                        },
                    )*
                }
            }

            /// The code's doc comment, a line per line, each as written after `///`
            /// (so with its leading space).
            pub const fn doc(self) -> &'static str {
                match self {
                    $( $Enum::$name => concat!($($doc, "\n"),*), )*
                }
            }
        }

        // Ascending numbers: so no two codes share one, and `ALL` is in order.
        const _: () = {
            let all = $Enum::ALL;
            let mut i = 1;
            while i < all.len() {
                assert!(all[i - 1].number() < all[i].number(), "codes must ascend");
                i += 1;
            }
        };
    };
}

/// Defines [`Error`] with thiserror and, from the same entries, [`ErrorCode`] with
/// [`code_enum!`] and [`Error::code`]: an entry is a variant of [`Error`] with its doc,
/// full message (`#[error]`), short text (`#[text]`) and number.
macro_rules! errors {
    ($(
        $(#[doc = $doc:literal])*
        #[error($display:literal)]
        #[text($text:literal)]
        $name:ident $({
            $( $(#[doc = $field_doc:literal])* $field:ident: $field_ty:ty, )+
        })? = $number:literal,
    )*) => {
        /// Everything that can go wrong. A call that returns an error has changed nothing.
        ///
        /// Each variant has a stable [`ErrorCode`] (see [`Error::code`]); the C and JS layers
        /// hand that number and the [`Display`](core::fmt::Display) text to their callers.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
        #[non_exhaustive]
        pub enum Error {
            $(
                $(#[doc = $doc])*
                #[error($display)]
                $name $({ $( $(#[doc = $field_doc])* $field: $field_ty, )+ })?,
            )*
        }

        code_enum! {
            /// The stable number of each [`Error`] variant (0 is success in the C API, and
            /// the C layer's own codes start at 1000).
            #[non_exhaustive]
            pub enum ErrorCode {
                $( $(#[doc = $doc])* #[text($text)] $name = $number, )*
            }
        }

        impl Error {
            /// The variant's stable number.
            pub const fn code(&self) -> ErrorCode {
                match self {
                    $( Error::$name { .. } => ErrorCode::$name, )*
                }
            }
        }
    };
}

// 0 is success and 1000 up belong to the C layer (`pasid-ffi`): the core's codes sit
// between.
const _: () = {
    let all = ErrorCode::ALL;
    assert!(all[0].number() > 0 && all[all.len() - 1].number() < 1000);
};

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

impl From<alloc::collections::TryReserveError> for Error {
    fn from(_: alloc::collections::TryReserveError) -> Self {
        Error::OutOfMemory
    }
}

// The table. A new code takes the next free number; numbers never change or return
// (C programs and JS code compare them), and the entries stay in ascending order.
errors! {
    /// The PASID width is outside 1..=20 bits.
    #[error("PASID width {width} is outside 1..=20 bits")]
    #[text("PASID width is outside 1..=20 bits")]
    InvalidWidth {
        /// The width asked for.
        width: u8,
    } = 1,
    /// A range includes PASID 0, which stays reserved (RID_PASID on VT-d).
    #[error("the {range} range includes PASID 0, which is reserved")]
    #[text("a range includes PASID 0, which is reserved")]
    IncludesPasidZero {
        /// Which range.
        range: RangeName,
    } = 2,
    /// A range has no PASIDs in it.
    #[error("the {range} range is empty")]
    #[text("a range is empty")]
    EmptyRange {
        /// Which range.
        range: RangeName,
    } = 3,
    /// A range ends beyond what the PASID width can express.
    #[error("the {range} range ends at {end}, beyond the {limit} PASIDs of the width")]
    #[text("a range ends beyond the PASID width")]
    RangeBeyondWidth {
        /// Which range.
        range: RangeName,
        /// Its (exclusive) end.
        end: u32,
        /// 2^width.
        limit: u32,
    } = 4,
    /// The local and shared ranges overlap.
    #[error("the local and shared ranges overlap")]
    #[text("the local and shared ranges overlap")]
    RangesOverlap = 5,
    /// The operation does not exist on the guest's or host's platform.
    #[error("not supported: {what}")]
    #[text("not supported on this platform")]
    NotSupported {
        /// What was asked for, and why it is not offered.
        what: &'static str,
    } = 6,
    /// No guest with this id lives on this host.
    #[error("no such guest: {guest}")]
    #[text("no such guest")]
    NoSuchGuest {
        /// The id given.
        guest: GuestId,
    } = 7,
    /// The host already has as many guests as it can name.
    #[error("too many guests on this host")]
    #[text("too many guests on this host")]
    TooManyGuests = 8,
    /// The RID's dedicated use belongs to a guest already, or the guest already has
    /// the use asked for.
    #[error("RID {rid} is already attached")]
    #[text("RID is already attached")]
    RidInUse {
        /// The RID.
        rid: Rid,
    } = 9,
    /// The RID is not attached to this guest.
    #[error("RID {rid} is not attached to this guest")]
    #[text("RID is not attached to this guest")]
    NoSuchDevice {
        /// The RID.
        rid: Rid,
    } = 10,
    /// The device (the guest's use of the RID) still has PASIDs bound or recorded.
    #[error("RID {rid} still has PASIDs bound to it")]
    #[text("device still has PASIDs bound to it")]
    DeviceBusy {
        /// The RID.
        rid: Rid,
    } = 12,
    /// The PASID lies outside the guest (local) range.
    #[error("PASID {pasid} is outside the guest range")]
    #[text("PASID is outside the guest range")]
    PasidOutOfRange {
        /// The PASID.
        pasid: u32,
    } = 13,
    /// The PASID is already in use where it must be free.
    #[error("PASID {pasid} is already in use")]
    #[text("PASID is already in use")]
    PasidInUse {
        /// The PASID.
        pasid: u32,
    } = 14,
    /// The guest holds no such PASID.
    #[error("PASID {pasid} is not allocated to this guest")]
    #[text("PASID is not allocated to this guest")]
    NotAllocated {
        /// The PASID.
        pasid: u32,
    } = 15,
    /// The guest PASID is local, so it has no host PASID and cannot go to a shared WQ.
    #[error("PASID {pasid} is a local PASID, not a shared one")]
    #[text("PASID is a local PASID, not a shared one")]
    NotShared {
        /// The PASID.
        pasid: u32,
    } = 16,
    /// The guest PASID is still bound to a device, so it cannot be freed.
    #[error("PASID {pasid} is still bound to a device")]
    #[text("PASID is still bound to a device")]
    StillBound {
        /// The PASID.
        pasid: u32,
    } = 17,
    /// The guest PASID is already bound to that device.
    #[error("PASID {pasid} is already bound to RID {rid}")]
    #[text("PASID is already bound to the device")]
    AlreadyBound {
        /// The PASID.
        pasid: u32,
        /// The RID.
        rid: Rid,
    } = 18,
    /// The guest PASID is not bound to that device.
    #[error("PASID {pasid} is not bound to RID {rid}")]
    #[text("PASID is not bound to the device")]
    NotBound {
        /// The PASID.
        pasid: u32,
        /// The RID.
        rid: Rid,
    } = 19,
    /// Every PASID of the guest range is taken in this guest.
    #[error("no free PASID in the guest range")]
    #[text("no free PASID in the guest range")]
    GuestRangeExhausted = 20,
    /// Every PASID of the host's shared range is taken.
    #[error("no free PASID in the shared range")]
    #[text("no free PASID in the shared range")]
    SharedRangeExhausted = 21,
    /// The guest holds as many shared PASIDs as its quota allows.
    #[error("shared PASID quota of {quota} reached")]
    #[text("shared PASID quota reached")]
    QuotaExceeded {
        /// The guest's quota.
        quota: u32,
    } = 22,
    /// Memory could not be allocated.
    #[error("out of memory")]
    #[text("out of memory")]
    OutOfMemory = 23,
    /// A caller-provided buffer or page set is too small or malformed.
    #[error("buffer too small: {needed} needed")]
    #[text("buffer too small")]
    BufferTooSmall {
        /// How many units were needed.
        needed: usize,
    } = 24,
    /// A migration blob is not well formed.
    #[error("migration blob is malformed: {reason}")]
    #[text("migration blob is malformed")]
    MalformedBlob {
        /// What is wrong with it.
        reason: &'static str,
    } = 30,
    /// A migration blob's checksum does not match its contents.
    #[error("migration blob checksum mismatch")]
    #[text("migration blob checksum mismatch")]
    ChecksumMismatch = 31,
    /// A migration blob has a format version this build does not read.
    #[error("migration format version {found} is not supported (this build reads {supported})")]
    #[text("migration format version is not supported")]
    UnsupportedVersion {
        /// Version in the blob.
        found: u16,
        /// Highest version this build reads.
        supported: u16,
    } = 32,
    /// The destination's layout cannot hold the guest.
    #[error("incompatible layout: {reason}")]
    #[text("incompatible layout")]
    IncompatibleLayout {
        /// Which limit does not fit.
        reason: &'static str,
    } = 33,
    /// A source RID of the guest has no destination RID in the map.
    #[error("RID {rid} has no destination in the RID map")]
    #[text("RID has no destination in the RID map")]
    RidNotMapped {
        /// The source RID.
        rid: Rid,
    } = 34,
    /// A caller-provided page buffer is not exactly 4096 bytes.
    #[error("a page buffer holds {len} bytes, not 4096")]
    #[text("page buffer is not 4096 bytes")]
    PageSize {
        /// The buffer's length.
        len: usize,
    } = 40,
    /// A physical address given for a page is not 4 KiB aligned.
    #[error("physical address {phys:#x} is not 4 KiB aligned")]
    #[text("physical address is not 4 KiB aligned")]
    UnalignedPage {
        /// The address.
        phys: u64,
    } = 41,
    /// A PASID-translation table the guest uses has no page among those supplied.
    #[error("no page supplied for PASID-translation table {table}")]
    #[text("no page supplied for a translation table in use")]
    MissingTablePage {
        /// The table number (gPASID >> 10).
        table: u32,
    } = 42,
    /// A supplied table page names a table twice or one beyond the 1024 tables.
    #[error("page for PASID-translation table {table} is a duplicate or out of range")]
    #[text("table page duplicated or out of range")]
    BadTablePage {
        /// The table number given.
        table: u32,
    } = 43,
    /// Two caller-provided pages have the same physical address.
    #[error("two pages share physical address {phys:#x}")]
    #[text("two pages share one physical address")]
    DuplicatePage {
        /// The address.
        phys: u64,
    } = 44,
    /// A source RID of the guest appears more than once in the RID map.
    #[error("RID {rid} appears more than once as a source in the RID map")]
    #[text("RID map gives a source RID twice")]
    RidMappedTwice {
        /// The source RID.
        rid: Rid,
    } = 50,
    /// The RID map says a destination RID is a device of another kind than the
    /// guest's device mapped to it.
    #[error(
        "RID kind mismatch: destination RID {rid} is a {destination_kind} device, \
         but the guest's device mapped to it is a {guest_kind} device"
    )]
    #[text("RID kind mismatch: the destination device is of another kind")]
    DeviceKindMismatch {
        /// The destination RID.
        rid: Rid,
        /// The kind of the guest's device (as it was on the source).
        guest_kind: DeviceKind,
        /// The kind the RID map gives the destination RID.
        destination_kind: DeviceKind,
    } = 51,
    /// The guest PASID was freed and waits for the VMM to confirm its teardown.
    #[error("PASID {pasid} is draining: its teardown is not confirmed yet")]
    #[text("PASID is draining: its teardown is not confirmed yet")]
    Draining {
        /// The guest PASID.
        pasid: u32,
    } = 52,
    /// A teardown was confirmed for a PASID that is not draining (or not as given).
    #[error("PASID {pasid} is not waiting for teardown")]
    #[text("PASID is not waiting for teardown")]
    NotDraining {
        /// The guest PASID given.
        pasid: u32,
    } = 53,
    /// The guest uses the RID both ways, so the call must say which use it means.
    #[error("RID {rid} carries both a dedicated and a shared-WQ use of this guest: say which")]
    #[text("RID has both uses in this guest: name one")]
    AmbiguousUse {
        /// The RID.
        rid: Rid,
    } = 54,
    /// The host-PASID source (a broker, a VMM's callbacks) refused or failed.
    #[error("host-PASID source: {error}")]
    #[text("the host-PASID source refused or failed")]
    Source {
        /// What the source said.
        error: SourceError,
    } = 55,
    /// The guest's translation-change log is full: the VMM has not drained it.
    /// Nothing changed.
    #[error("the guest's translation-change log is full ({capacity} changes): drain it")]
    #[text("the guest's translation-change log is full: drain it")]
    ChangeLogFull {
        /// The log's capacity.
        capacity: u32,
    } = 56,
    /// This host already imported a blob with this identity: a replayed (or retried
    /// without a new epoch) migration.
    #[error("{identity} was imported here already")]
    #[text("a blob with this identity was imported here already")]
    Replayed {
        /// The blob's identity.
        identity: MigrationIdentity,
    } = 57,
    /// What the guest's vIOMMU advertised (its PASID width, the range it may use, its
    /// capabilities) is more than this host can honour.
    #[error("the guest was told {told}, but this host offers {offered}")]
    #[text("the guest's vIOMMU advertised more than this host can honour")]
    ContractNotHonoured {
        /// What the guest was told.
        told: GuestContract,
        /// The most this host can offer a guest of that platform.
        offered: GuestContract,
    } = 58,
    /// A teardown was confirmed while the gPASID's invalid entry still waits in the
    /// guest's change log: the CPU may still translate it. Drain and apply the log
    /// first.
    #[error("PASID {pasid}'s invalidation is still in the change log: apply it before confirming the teardown")]
    #[text("the PASID's invalidation is still in the change log: apply it first")]
    ChangePending {
        /// The guest PASID.
        pasid: u32,
    } = 59,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_number_name_text_and_doc() {
        assert_eq!(ErrorCode::ALL.len(), 43);
        for &code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_number(code.number()), Some(code));
            assert_eq!(code.c_message().to_str(), Ok(code.message()));
            assert!(!code.message().is_empty() && !code.doc().trim().is_empty());
            assert_eq!(alloc::format!("{code:?}"), code.name());
        }
        assert_eq!(ErrorCode::from_number(11), None);
        let quota = Error::QuotaExceeded { quota: 3 }.code();
        assert_eq!((quota.number(), quota.name()), (22, "QuotaExceeded"));
        assert_eq!(quota.message(), "shared PASID quota reached");
        assert_eq!(
            quota.doc(),
            " The guest holds as many shared PASIDs as its quota allows.\n"
        );
    }
}
