//! Result codes, `pasid_strerror` and the per-thread last-error message.
//!
//! The numbers a function returns are the core's own: `Error::code()` of
//! `pasid_core`, passed through unchanged, so they cannot drift from the core at run
//! time. The C constants ([`pasid_result`]) are checked against the core's
//! `ErrorCode` twice: by compile-time assertions below and by a test that reads
//! `core/src/error.rs` and fails when the core has a code this enum lacks.

use core::cell::RefCell;
use core::ffi::{c_char, c_int, CStr};
use std::string::String;

use pasid_core::{Error, ErrorCode};

/// What every fallible function returns: 0 (`PASID_RESULT_OK`) on success, otherwise
/// a code below. Codes 1..999 are the core's stable error codes (the same numbers the
/// wasm layer reports); codes from 1000 on come from the C layer itself.
///
/// Functions return these as `int`. A code this header does not list (from a newer
/// library) is still an error: `pasid_strerror` names it "unknown error".
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum pasid_result {
    /// Success.
    Ok = 0,
    /// The PASID width is outside 1..=20 bits.
    InvalidWidth = 1,
    /// A range includes PASID 0, which stays reserved (RID_PASID on VT-d).
    IncludesPasidZero = 2,
    /// A range has no PASIDs in it.
    EmptyRange = 3,
    /// A range ends beyond what the PASID width can express.
    RangeBeyondWidth = 4,
    /// The local and shared ranges overlap.
    RangesOverlap = 5,
    /// The operation does not exist on the guest's or host's platform.
    NotSupported = 6,
    /// No guest with this id lives on this host.
    NoSuchGuest = 7,
    /// The host already has as many guests as it can name.
    TooManyGuests = 8,
    /// The RID is attached to a guest already.
    RidInUse = 9,
    /// The RID is not attached to this guest.
    NoSuchDevice = 10,
    /// The device still has PASIDs bound or recorded.
    DeviceBusy = 12,
    /// The PASID lies outside the guest (local) range.
    PasidOutOfRange = 13,
    /// The PASID is already in use where it must be free.
    PasidInUse = 14,
    /// The guest holds no such PASID.
    NotAllocated = 15,
    /// The guest PASID is local, so it has no host PASID.
    NotShared = 16,
    /// The guest PASID is still bound to a device.
    StillBound = 17,
    /// The guest PASID is already bound to that device.
    AlreadyBound = 18,
    /// The guest PASID is not bound to that device.
    NotBound = 19,
    /// Every PASID of the guest range is taken in this guest.
    GuestRangeExhausted = 20,
    /// Every PASID of the host's shared range is taken.
    SharedRangeExhausted = 21,
    /// The guest holds as many shared PASIDs as its quota allows.
    QuotaExceeded = 22,
    /// Memory could not be allocated.
    OutOfMemory = 23,
    /// A caller-provided buffer is too small. Functions that fill a buffer also store
    /// the size they need in `*out_n` (see "Buffers" in the header's introduction).
    BufferTooSmall = 24,
    /// A migration blob is not well formed.
    MalformedBlob = 30,
    /// A migration blob's checksum does not match its contents.
    ChecksumMismatch = 31,
    /// A migration blob has a format version this build does not read.
    UnsupportedVersion = 32,
    /// The destination's layout cannot hold the guest.
    IncompatibleLayout = 33,
    /// A source RID of the guest has no destination RID in the map.
    RidNotMapped = 34,
    /// A page buffer is not exactly 4096 bytes.
    PageSize = 40,
    /// A physical address given for a page is not 4 KiB aligned.
    UnalignedPage = 41,
    /// A PASID-translation table the guest uses has no page among those supplied.
    MissingTablePage = 42,
    /// A supplied table page names a table twice or one beyond the 1024 tables.
    BadTablePage = 43,
    /// Two supplied pages share one physical address.
    DuplicatePage = 44,
    /// The RID map gives a source RID more than one destination.
    RidMappedTwice = 50,
    /// The RID map says a destination RID is a device of another kind than the
    /// guest's device mapped to it.
    DeviceKindMismatch = 51,
    /// The guest PASID was freed and waits for the VMM to confirm its teardown
    /// (`pasid_complete_teardown`).
    Draining = 52,
    /// A teardown was confirmed for a PASID that is not draining (or not as given).
    NotDraining = 53,
    /// The guest uses the RID both ways (dedicated and shared WQ): name the use.
    AmbiguousUse = 54,
    /// The host-PASID source (a broker, the VMM's callbacks) refused or failed.
    Source = 55,
    /// The guest's translation-change log is full: drain it
    /// (`pasid_drain_translation_changes`).
    ChangeLogFull = 56,
    /// This host already imported a blob with this identity (a replayed migration, or
    /// a retry that did not get a new epoch).
    Replayed = 57,
    /// What the guest's vIOMMU advertised is more than this host can honour.
    ContractNotHonoured = 58,
    /// A teardown was confirmed while the gPASID's invalidation still waits in the
    /// guest's change log: drain and apply it first.
    ChangePending = 59,
    /// A required pointer argument was NULL.
    NullParameter = 1000,
    /// A handle argument is not a live handle of the expected type (never created,
    /// already freed, or a handle of another type).
    InvalidHandle = 1001,
    /// An argument has a value outside what the function accepts (an enum value that
    /// is not one of its constants, a misaligned pointer, ...).
    InvalidArgument = 1002,
    /// The library panicked (a bug). Nothing crossed the boundary; the call failed.
    Panic = 1003,
    /// An earlier call panicked while it held this host's lock, so the host's state is
    /// not trusted any more. Free the host.
    HostPoisoned = 1004,
    /// A struct's `size` field (see "Struct sizes" in the header's introduction) is
    /// smaller than the smallest version of the struct this library knows, larger
    /// than 4096, or larger than this library's version with a non-zero byte in the
    /// part it does not know.
    BadStructSize = 1005,
}

// Every core code listed above has the core's number (checked at compile time).
const _: () = {
    macro_rules! same {
        ($($name:ident)*) => {
            $( assert!(pasid_result::$name as u32 == ErrorCode::$name as u32); )*
        };
    }
    same!(
        InvalidWidth IncludesPasidZero EmptyRange RangeBeyondWidth RangesOverlap NotSupported
        NoSuchGuest TooManyGuests RidInUse NoSuchDevice DeviceBusy
        PasidOutOfRange PasidInUse NotAllocated NotShared StillBound AlreadyBound NotBound
        GuestRangeExhausted SharedRangeExhausted QuotaExceeded OutOfMemory BufferTooSmall
        MalformedBlob ChecksumMismatch UnsupportedVersion IncompatibleLayout RidNotMapped
        PageSize UnalignedPage MissingTablePage BadTablePage DuplicatePage RidMappedTwice
        DeviceKindMismatch Draining NotDraining AmbiguousUse Source ChangeLogFull Replayed
        ContractNotHonoured ChangePending
    );
};

/// First code of the C layer's own range.
#[cfg(test)]
pub(crate) const FFI_CODES_START: u32 = 1000;

/// The static text of a code (NUL-terminated), or `None` for a code this build does not
/// know.
pub(crate) fn code_text(code: c_int) -> Option<&'static CStr> {
    use pasid_result as R;
    let known = [
        (R::Ok, c"success"),
        (R::InvalidWidth, c"PASID width is outside 1..=20 bits"),
        (
            R::IncludesPasidZero,
            c"a range includes PASID 0, which is reserved",
        ),
        (R::EmptyRange, c"a range is empty"),
        (R::RangeBeyondWidth, c"a range ends beyond the PASID width"),
        (R::RangesOverlap, c"the local and shared ranges overlap"),
        (R::NotSupported, c"not supported on this platform"),
        (R::NoSuchGuest, c"no such guest"),
        (R::TooManyGuests, c"too many guests on this host"),
        (R::RidInUse, c"RID is already attached"),
        (R::NoSuchDevice, c"RID is not attached to this guest"),
        (R::DeviceBusy, c"device still has PASIDs bound to it"),
        (R::PasidOutOfRange, c"PASID is outside the guest range"),
        (R::PasidInUse, c"PASID is already in use"),
        (R::NotAllocated, c"PASID is not allocated to this guest"),
        (R::NotShared, c"PASID is a local PASID, not a shared one"),
        (R::StillBound, c"PASID is still bound to a device"),
        (R::AlreadyBound, c"PASID is already bound to the device"),
        (R::NotBound, c"PASID is not bound to the device"),
        (R::GuestRangeExhausted, c"no free PASID in the guest range"),
        (
            R::SharedRangeExhausted,
            c"no free PASID in the shared range",
        ),
        (R::QuotaExceeded, c"shared PASID quota reached"),
        (R::OutOfMemory, c"out of memory"),
        (R::BufferTooSmall, c"buffer too small"),
        (R::MalformedBlob, c"migration blob is malformed"),
        (R::ChecksumMismatch, c"migration blob checksum mismatch"),
        (
            R::UnsupportedVersion,
            c"migration format version is not supported",
        ),
        (R::IncompatibleLayout, c"incompatible layout"),
        (R::RidNotMapped, c"RID has no destination in the RID map"),
        (R::PageSize, c"page buffer is not 4096 bytes"),
        (R::UnalignedPage, c"physical address is not 4 KiB aligned"),
        (
            R::MissingTablePage,
            c"no page supplied for a translation table in use",
        ),
        (R::BadTablePage, c"table page duplicated or out of range"),
        (R::DuplicatePage, c"two pages share one physical address"),
        (R::RidMappedTwice, c"RID map gives a source RID twice"),
        (
            R::DeviceKindMismatch,
            c"RID kind mismatch: the destination device is of another kind",
        ),
        (
            R::Draining,
            c"PASID is draining: its teardown is not confirmed yet",
        ),
        (R::NotDraining, c"PASID is not waiting for teardown"),
        (
            R::AmbiguousUse,
            c"RID has both uses in this guest: name one",
        ),
        (R::Source, c"the host-PASID source refused or failed"),
        (
            R::ChangeLogFull,
            c"the guest's translation-change log is full: drain it",
        ),
        (
            R::Replayed,
            c"a blob with this identity was imported here already",
        ),
        (
            R::ContractNotHonoured,
            c"the guest's vIOMMU advertised more than this host can honour",
        ),
        (
            R::ChangePending,
            c"the PASID's invalidation is still in the change log: apply it first",
        ),
        (R::NullParameter, c"a required pointer argument is NULL"),
        (R::InvalidHandle, c"not a live handle of the expected type"),
        (R::InvalidArgument, c"invalid argument"),
        (R::Panic, c"internal error (panic) in the library"),
        (R::HostPoisoned, c"host unusable after an internal error"),
        (
            R::BadStructSize,
            c"struct size field is too small, too large, or has unknown fields set",
        ),
    ];
    known
        .iter()
        .find(|(r, _)| *r as u32 as c_int == code)
        .map(|(_, text)| *text)
}

/// An error of one C call: the core's, or the C layer's own.
#[derive(Debug)]
pub(crate) enum FfiError {
    Core(Error),
    Null(&'static str),
    InvalidHandle(&'static str),
    InvalidArgument(String),
    Panic(String),
    Poisoned,
    BadStructSize(String),
    /// The host-PASID source refused, with its own words (a broker's refusal names
    /// both layouts when they disagree).
    SourceRefused(String),
}

impl From<Error> for FfiError {
    fn from(e: Error) -> Self {
        FfiError::Core(e)
    }
}

impl FfiError {
    /// The number returned to C: for a core error, the core's own code.
    pub(crate) fn code(&self) -> c_int {
        let code = match self {
            FfiError::Core(e) => code_of(e.code()),
            FfiError::Null(_) => pasid_result::NullParameter as u32,
            FfiError::InvalidHandle(_) => pasid_result::InvalidHandle as u32,
            FfiError::InvalidArgument(_) => pasid_result::InvalidArgument as u32,
            FfiError::Panic(_) => pasid_result::Panic as u32,
            FfiError::Poisoned => pasid_result::HostPoisoned as u32,
            FfiError::BadStructSize(_) => pasid_result::BadStructSize as u32,
            FfiError::SourceRefused(_) => pasid_result::Source as u32,
        };
        code as c_int
    }

    /// The full message for `pasid_last_error`.
    pub(crate) fn message(&self) -> String {
        match self {
            FfiError::Core(e) => std::format!("{e}"),
            FfiError::Null(name) => std::format!("{name} is NULL"),
            FfiError::InvalidHandle(name) => {
                std::format!("{name} is not a live handle of its type (freed, never created, or another type)")
            }
            FfiError::InvalidArgument(msg)
            | FfiError::BadStructSize(msg)
            | FfiError::SourceRefused(msg) => msg.clone(),
            FfiError::Panic(msg) => std::format!("internal error (panic): {msg}"),
            FfiError::Poisoned => {
                String::from("host unusable: an earlier call panicked while holding it; free it")
            }
        }
    }
}

/// The core's number for a code. `ErrorCode` is `#[repr(u32)]` with explicit
/// discriminants, so this is the stable number itself, whatever the variant.
fn code_of(code: ErrorCode) -> u32 {
    code as u32
}

std::thread_local! {
    static LAST_ERROR: RefCell<Option<(c_int, String)>> = const { RefCell::new(None) };
}

/// Records the error of the call that is failing on this thread.
pub(crate) fn set_last_error(e: &FfiError) {
    let entry = (e.code(), e.message());
    // During thread teardown the slot may be gone: then there is nobody to read it.
    let _ = LAST_ERROR.try_with(|slot| {
        if let Ok(mut slot) = slot.try_borrow_mut() {
            *slot = Some(entry);
        }
    });
}

/// Runs `f` on this thread's last error, if any.
pub(crate) fn with_last_error<R>(f: impl FnOnce(Option<&(c_int, String)>) -> R) -> R {
    let mut f = Some(f);
    let out = LAST_ERROR.try_with(|slot| match slot.try_borrow() {
        Ok(last) => (f.take().expect("called once"))(last.as_ref()),
        Err(_) => (f.take().expect("called once"))(None),
    });
    match out {
        Ok(r) => r,
        Err(_) => (f.take().expect("not called yet"))(None),
    }
}

/// Text for `pasid_strerror`: the code's static text, or a fixed one for unknown codes.
pub(crate) fn strerror(code: c_int) -> *const c_char {
    code_text(code).unwrap_or(c"unknown error code").as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// `Name = number` lines of the enum `enum_name` in a Rust source file.
    fn enum_codes(source: &str, enum_name: &str) -> Vec<(String, u32)> {
        let start = source
            .find(&std::format!("pub enum {enum_name} {{"))
            .unwrap_or_else(|| panic!("enum {enum_name} not found"));
        let body = &source[start..];
        let body = &body[..body.find("\n}").expect("end of enum")];
        body.lines()
            .filter_map(|line| {
                let line = line.trim();
                let (name, value) = line.strip_suffix(',')?.split_once(" = ")?;
                Some((String::from(name), value.parse().ok()?))
            })
            .collect()
    }

    #[test]
    fn every_core_code_has_a_c_constant_with_the_same_number() {
        let core = enum_codes(include_str!("../../core/src/error.rs"), "ErrorCode");
        let ours = enum_codes(include_str!("error.rs"), "pasid_result");
        assert!(core.len() >= 29, "parsed too few core codes: {core:?}");
        for (name, value) in &core {
            assert!(
                ours.contains(&(name.clone(), *value)),
                "core ErrorCode::{name} = {value} is missing from pasid_result (ffi/src/error.rs): add it, its text in code_text, and to the same! list"
            );
            assert!(*value > 0 && *value < FFI_CODES_START);
        }
        for (name, value) in &ours {
            if *value > 0 && *value < FFI_CODES_START {
                assert!(
                    core.contains(&(name.clone(), *value)),
                    "pasid_result::{name} = {value} is not a core code"
                );
            }
        }
        // Every constant has its own text.
        for (name, value) in &ours {
            assert!(code_text(*value as c_int).is_some(), "no text for {name}");
        }
    }

    #[test]
    fn core_errors_keep_their_numbers() {
        let e = FfiError::from(Error::QuotaExceeded { quota: 3 });
        assert_eq!(e.code(), 22);
        assert_eq!(e.message(), "shared PASID quota of 3 reached");
        let text = unsafe { CStr::from_ptr(strerror(22)) };
        assert_eq!(text.to_str().unwrap(), "shared PASID quota reached");
        let text = unsafe { CStr::from_ptr(strerror(-5)) };
        assert_eq!(text.to_str().unwrap(), "unknown error code");
    }
}
