//! The C ABI of pasid: PCIe PASID allocation and guest-to-host PASID remapping for
//! VMMs written in C (QEMU's vIOMMUs first).
//!
//! This crate only translates: every decision is `pasid-core`'s. It builds
//! `libpasid.a` and `libpasid.so`; `include/pasid.h` is generated from it by cbindgen
//! (`ffi/cbindgen.toml`, checked by `tests/header.rs`). The conventions (results,
//! buffers, handles, threads) are stated once in the header's introduction, which is
//! `header` in `ffi/cbindgen.toml`.
//!
//! Module map: `boundary` holds the panic boundary, the handle registry and the
//! checked pointer conversions that every function goes through; the other modules
//! hold the exported functions.
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
// Every function taking pointers is `unsafe extern "C"`; the one safety contract (each
// pointer NULL or valid for what its documentation says) is stated in the header
// introduction instead of a `# Safety` section on each of them.
#![allow(clippy::missing_safety_doc)]
// C names (`pasid_host`, `pasid_layout`, ...) are the names the header shows.
#![allow(non_camel_case_types)]

use core::ffi::{c_char, c_int};

mod boundary;
mod changes;
mod error;
mod host;
mod hwtable;
mod lifecycle;
mod log;
mod migrate;
mod source;
mod types;
mod vcmd;

pub use changes::*;
pub use error::FfiCode;
pub use host::*;
pub use hwtable::*;
pub use lifecycle::*;
pub use log::*;
pub use migrate::*;
pub use source::{
    pasid_host_new_brokered, pasid_host_new_with_source, pasid_source_ops, pasid_source_status,
};
pub use types::*;
pub use vcmd::*;

/// A host: its layout, shared PASID allocator, guests and their devices.
///
/// Opaque. Made by `pasid_host_new`, released by `pasid_host_free`. The value is a
/// token, not a pointer to memory: never dereference it.
pub struct pasid_host {
    _opaque: [u8; 0],
}

/// The report of one guest import: each shared gPASID with its source and new
/// destination host PASID, and each device's source and destination RID.
///
/// Opaque and immutable. Made by `pasid_import_guest`, released by
/// `pasid_import_report_free`.
pub struct pasid_import_report {
    _opaque: [u8; 0],
}

/// A static, NUL-terminated English description of a result code. Never NULL; an
/// unknown code gives "unknown error code". For the details of the last failure on
/// this thread, see `pasid_last_error_message`. Thread-safe.
#[no_mangle]
pub extern "C" fn pasid_strerror(code: c_int) -> *const c_char {
    boundary::call_or(c"internal error".as_ptr(), || error::strerror(code))
}

/// The code of the last call that failed on this thread, or `PASID_RESULT_OK` if none
/// has. Calls that succeed leave it unchanged (like `errno`). Thread-safe (per thread).
// Not PASID_MUST_USE: it reports, it does not act (like errno).
#[no_mangle]
pub extern "C" fn pasid_last_error_code() -> c_int {
    boundary::call_or(FfiCode::Panic as c_int, || {
        error::with_last_error(|last| last.map_or(0, |(code, _)| *code))
    })
}

/// Copies the full message of the last call that failed on this thread (the core's
/// text, with the numbers involved, e.g. "shared PASID quota of 64 reached") into `buf`
/// as a NUL-terminated string.
///
/// `*out_n` receives the message's length in bytes without the NUL, so `*out_n + 1`
/// bytes hold it whole. If `len` is smaller than that, as much as fits is written
/// (still NUL-terminated when `len` > 0) and `PASID_RESULT_BUFFER_TOO_SMALL` is
/// returned; `buf` may be NULL when `len` is 0. With no failure on this thread so far
/// the message is empty. This function never changes the last error itself.
/// Thread-safe (per thread).
// Not PASID_MUST_USE, the one function returning a code without it: every result
// leaves a usable NUL-terminated (maybe truncated) message, and GCC's
// warn_unused_result cannot be silenced with a (void) cast, so error paths that just
// print the message would each need a dummy variable.
#[no_mangle]
pub unsafe extern "C" fn pasid_last_error_message(
    buf: *mut c_char,
    len: usize,
    out_n: *mut usize,
) -> c_int {
    boundary::call_or(FfiCode::Panic as c_int, || {
        // SAFETY: the caller passes NULL or valid pointers for the given lengths.
        let out_n = match unsafe { boundary::output(out_n, "out_n") } {
            Ok(o) => o,
            Err(e) => return e.code(),
        };
        let buf = match unsafe { boundary::output_slice(buf, len, "buf") } {
            Ok(b) => b,
            Err(e) => return e.code(),
        };
        error::with_last_error(|last| {
            let msg = last.map_or("", |(_, m)| m.as_str()).as_bytes();
            out_n.write(msg.len());
            if buf.is_empty() {
                return if msg.is_empty() {
                    0
                } else {
                    pasid_core::ErrorCode::BufferTooSmall as c_int
                };
            }
            let n = msg.len().min(buf.len() - 1);
            for (slot, &b) in buf.iter_mut().zip(&msg[..n]) {
                slot.write(b as c_char);
            }
            buf[n].write(0);
            if n < msg.len() {
                pasid_core::ErrorCode::BufferTooSmall as c_int
            } else {
                0
            }
        })
    })
}

/// The library's version, e.g. "0.1.0": a static NUL-terminated string. Thread-safe.
#[no_mangle]
pub extern "C" fn pasid_version() -> *const c_char {
    const VERSION: &core::ffi::CStr = match core::ffi::CStr::from_bytes_with_nul(
        concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes(),
    ) {
        Ok(v) => v,
        Err(_) => panic!("version has a NUL"),
    };
    VERSION.as_ptr()
}

/// README.md, so its Rust code blocks run as doctests (`cargo test -p pasid-ffi
/// --doc readme`; scripts/test-readme.sh runs every other block by its language).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
mod readme {}
