//! Result codes, `pasid_strerror` and the per-thread last-error message.
//!
//! A function returns the core's own number for a core error (`Error::code()` of
//! `pasid_core`, passed through unchanged), or one of the C layer's codes below
//! ([`FfiCode`]: success, and 1000 up). Both tables are written once, with
//! `pasid_core::code_enum!`; `tests/header.rs` makes the header's `PASID_RESULT_*`
//! constants from them, and `pasid_strerror` gives their texts.

use core::cell::RefCell;
use core::ffi::{c_char, c_int, CStr};
use std::string::String;

use pasid_core::{Error, ErrorCode};

pasid_core::code_enum! {
    /// The C layer's own result codes: success, and the failures only the C boundary
    /// has (1000 and up). The core's codes (1..999) are [`ErrorCode`]'s; the header's
    /// `pasid_result` lists both.
    pub enum FfiCode {
        /// Success.
        #[text("success")]
        Ok = 0,
        /// A required pointer argument was NULL.
        #[text("a required pointer argument is NULL")]
        NullParameter = 1000,
        /// A handle argument is not a live handle of the expected type (never created,
        /// already freed, or a handle of another type).
        #[text("not a live handle of the expected type")]
        InvalidHandle = 1001,
        /// An argument has a value outside what the function accepts (an enum value that
        /// is not one of its constants, a misaligned pointer, ...).
        #[text("invalid argument")]
        InvalidArgument = 1002,
        /// The library panicked (a bug). Nothing crossed the boundary; the call failed.
        #[text("internal error (panic) in the library")]
        Panic = 1003,
        /// An earlier call panicked while it held this host's lock, so the host's state is
        /// not trusted any more. Free the host.
        #[text("host unusable after an internal error")]
        HostPoisoned = 1004,
        /// A struct's `size` field (see "Struct sizes" in the header's introduction) is
        /// smaller than the smallest version of the struct this library knows, larger
        /// than 4096, or larger than this library's version with a non-zero byte in the
        /// part it does not know.
        #[text("struct size field is too small, too large, or has unknown fields set")]
        BadStructSize = 1005,
    }
}

// Success stays 0 and the layer's failures above the core's range, so a number names
// one code of one table.
const _: () = {
    let all = FfiCode::ALL;
    assert!(all[0].number() == 0 && all[1].number() >= 1000);
};

/// The static text of a code (NUL-terminated), or `None` for a code this build does not
/// know.
pub(crate) fn code_text(code: c_int) -> Option<&'static CStr> {
    let number = u32::try_from(code).ok()?;
    ErrorCode::from_number(number)
        .map(ErrorCode::c_message)
        .or_else(|| FfiCode::from_number(number).map(FfiCode::c_message))
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
        let number = match self {
            FfiError::Core(e) => e.code().number(),
            FfiError::Null(_) => FfiCode::NullParameter.number(),
            FfiError::InvalidHandle(_) => FfiCode::InvalidHandle.number(),
            FfiError::InvalidArgument(_) => FfiCode::InvalidArgument.number(),
            FfiError::Panic(_) => FfiCode::Panic.number(),
            FfiError::Poisoned => FfiCode::HostPoisoned.number(),
            FfiError::BadStructSize(_) => FfiCode::BadStructSize.number(),
            FfiError::SourceRefused(_) => ErrorCode::Source.number(),
        };
        number as c_int
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

    #[test]
    fn every_code_has_its_text() {
        let core = ErrorCode::ALL.iter().map(|c| (c.number(), c.message()));
        let ours = FfiCode::ALL.iter().map(|c| (c.number(), c.message()));
        for (number, message) in core.chain(ours) {
            let text = code_text(number as c_int).expect("a known code has a text");
            assert_eq!(text.to_str(), Ok(message));
        }
        assert_eq!(code_text(11), None, "11 was never a code");
    }
}
