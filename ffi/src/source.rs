//! Where a C host's host PASIDs come from: in process (`pasid_host_new`), from the
//! machine's broker (`pasid_host_new_brokered`), or from the VMM's own callbacks
//! (`pasid_host_new_with_source`), e.g. the host kernel's allocator the day a uAPI for
//! host-global PASIDs exists.

use core::ffi::{c_int, c_void};
use core::ops::Range;

use pasid_broker_client::BrokerSource;
use pasid_core::IdBitmap;
use pasid_core::{Error, Host, HostPasidSource, PasidLayout, Platform, SourceError};

use crate::boundary::{call, input_struct, register_host, reply, HostCell, Out};
use crate::error::FfiError;
use crate::pasid_host;
use crate::types::{layout_from_c, pasid_layout, CEnum};

/// The host type behind every `pasid_host` handle.
pub(crate) type FfiHost = Host<FfiSource>;

/// A C host's source of host PASIDs.
#[derive(Debug)]
pub(crate) enum FfiSource {
    /// The host owns its shared range in process.
    InProcess(IdBitmap),
    /// A lease at the machine's broker.
    Broker(BrokerSource),
    /// The VMM's callbacks.
    Callbacks(CallbackSource),
}

/// A host that owns its whole shared range in process.
pub(crate) fn in_process_host(layout: PasidLayout, platform: Platform) -> Result<FfiHost, Error> {
    let source = FfiSource::InProcess(IdBitmap::new(layout.shared())?);
    Host::with_source(layout, platform, source)
}

/// Heap bytes of a C host, its in-process source included.
pub(crate) fn heap_bytes(host: &FfiHost) -> usize {
    host.heap_bytes_excluding_source()
        + match host.source() {
            FfiSource::InProcess(b) => b.heap_bytes(),
            FfiSource::Broker(_) | FfiSource::Callbacks(_) => 0,
        }
}

impl HostPasidSource for FfiSource {
    fn range(&self) -> Range<u32> {
        match self {
            FfiSource::InProcess(b) => b.range(),
            FfiSource::Broker(b) => b.range(),
            FfiSource::Callbacks(c) => c.range(),
        }
    }
    #[inline]
    fn alloc(&mut self) -> Result<u32, SourceError> {
        match self {
            FfiSource::InProcess(b) => HostPasidSource::alloc(b),
            FfiSource::Broker(b) => b.alloc(),
            FfiSource::Callbacks(c) => c.alloc(),
        }
    }
    fn alloc_many(&mut self, count: u32, out: &mut Vec<u32>) -> Result<(), SourceError> {
        match self {
            FfiSource::InProcess(b) => b.alloc_many(count, out),
            FfiSource::Broker(b) => b.alloc_many(count, out),
            // The trait's own: one callback per PASID, all given back on a refusal.
            FfiSource::Callbacks(c) => c.alloc_many(count, out),
        }
    }
    fn claim(&mut self, pasid: u32) -> Result<(), SourceError> {
        match self {
            FfiSource::InProcess(b) => HostPasidSource::claim(b, pasid),
            FfiSource::Broker(b) => b.claim(pasid),
            FfiSource::Callbacks(c) => c.claim(pasid),
        }
    }
    #[inline]
    fn release(&mut self, pasid: u32) -> Result<(), SourceError> {
        match self {
            FfiSource::InProcess(b) => HostPasidSource::release(b, pasid),
            FfiSource::Broker(b) => b.release(pasid),
            FfiSource::Callbacks(c) => c.release(pasid),
        }
    }
    fn free_count(&self) -> u32 {
        match self {
            FfiSource::InProcess(b) => b.free_count(),
            FfiSource::Broker(b) => b.free_count(),
            FfiSource::Callbacks(c) => c.free_count(),
        }
    }
}

/// What a source callback returns.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum pasid_source_status {
    /// Done.
    Ok = 0,
    /// No free host PASID (alloc).
    Exhausted = 1,
    /// The PASID is not free (claim) or not the VMM's (release).
    Unavailable = 2,
    /// The allocator behind the callbacks cannot be reached.
    Disconnected = 3,
    /// The allocator refuses this VMM.
    Denied = 4,
}

/// The callbacks of a VMM-supplied host-PASID source. Each receives the `opaque`
/// pointer given to `pasid_host_new_with_source`.
///
/// They are called with the host's lock held, from whichever thread is calling into
/// the library for that host, one at a time per host; they must not call back into
/// the same host. A callback hands out only PASIDs of the layout's shared range;
/// `release` is called only for PASIDs `alloc` or `claim` handed out, and only once
/// the VMM has confirmed their teardown (`pasid_complete_teardown`). A status other
/// than the ones listed is treated as `PASID_SOURCE_STATUS_DENIED`.
///
/// `size` is `sizeof(pasid_source_ops)` as the caller was compiled (see the header's
/// struct-size rule), so the table can grow.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct pasid_source_ops {
    /// `sizeof(pasid_source_ops)`.
    pub size: u32,
    /// Takes a free host PASID into `*out_pasid`.
    pub alloc: Option<unsafe extern "C" fn(opaque: *mut c_void, out_pasid: *mut u32) -> u32>,
    /// Takes exactly `pasid`, which must be free.
    pub claim: Option<unsafe extern "C" fn(opaque: *mut c_void, pasid: u32) -> u32>,
    /// Gives `pasid` back.
    pub release: Option<unsafe extern "C" fn(opaque: *mut c_void, pasid: u32) -> u32>,
    /// How many host PASIDs are free, as far as the allocator knows.
    pub free_count: Option<unsafe extern "C" fn(opaque: *mut c_void) -> u32>,
}

// SAFETY: #[repr(C)] with `size: u32` first; the other fields are `Option` of function
// pointers, for which every bit pattern is a valid value (zero is `None`), so a
// zero-extended copy of a caller's smaller or equal struct is a valid value.
unsafe impl crate::boundary::SizedStruct for pasid_source_ops {
    fn set_size(&mut self, size: u32) {
        self.size = size;
    }
}

/// The VMM's callbacks with their opaque pointer.
pub(crate) struct CallbackSource {
    ops: pasid_source_ops,
    opaque: *mut c_void,
    range: Range<u32>,
}

// SAFETY: the source lives inside a host behind its Mutex, so the callbacks are called
// one at a time per host; the header documents that they run on the calling thread
// with the lock held, and `opaque` is only ever passed back to them.
unsafe impl Send for CallbackSource {}

impl core::fmt::Debug for CallbackSource {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CallbackSource")
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

fn status(code: u32, pasid: u32) -> Result<(), SourceError> {
    match code {
        0 => Ok(()),
        1 => Err(SourceError::Exhausted),
        2 => Err(SourceError::Unavailable { pasid }),
        3 => Err(SourceError::Disconnected),
        _ => Err(SourceError::Denied),
    }
}

impl HostPasidSource for CallbackSource {
    fn range(&self) -> Range<u32> {
        self.range.clone()
    }

    fn alloc(&mut self) -> Result<u32, SourceError> {
        let f = self.ops.alloc.ok_or(SourceError::Denied)?;
        let mut pasid = 0u32;
        // SAFETY: the VMM supplied `f` and `opaque` for exactly this call; `&mut pasid`
        // is a valid, aligned u32 for the duration of the call.
        status(unsafe { f(self.opaque, &mut pasid) }, 0)?;
        if !self.range.contains(&pasid) {
            // A callback that hands out a PASID outside the shared range would let
            // two guests collide with the local range: refuse it, give it back.
            let _ = self.release(pasid);
            return Err(SourceError::Protocol);
        }
        Ok(pasid)
    }

    fn claim(&mut self, pasid: u32) -> Result<(), SourceError> {
        let f = self.ops.claim.ok_or(SourceError::Denied)?;
        // SAFETY: as in `alloc`.
        status(unsafe { f(self.opaque, pasid) }, pasid)
    }

    fn release(&mut self, pasid: u32) -> Result<(), SourceError> {
        let f = self.ops.release.ok_or(SourceError::Denied)?;
        // SAFETY: as in `alloc`.
        status(unsafe { f(self.opaque, pasid) }, pasid)
    }

    fn free_count(&self) -> u32 {
        match self.ops.free_count {
            // SAFETY: as in `alloc`.
            Some(f) => unsafe { f(self.opaque) },
            None => 0,
        }
    }
}

/// Creates a host whose host PASIDs come from the VMM's callbacks `*ops` (copied),
/// each called with `opaque`; otherwise as `pasid_host_new`. `alloc`, `claim` and
/// `release` must be set (`PASID_RESULT_NULL_PARAMETER`); `free_count` may be NULL
/// (then 0: an import then always reports `PASID_RESULT_SHARED_RANGE_EXHAUSTED`).
/// A refusal of a callback reaches the caller as the core's error: exhaustion as
/// `PASID_RESULT_SHARED_RANGE_EXHAUSTED`, anything else as `PASID_RESULT_SOURCE`, with
/// the host unchanged. Thread-safe (see `pasid_source_ops` for the callbacks' side).
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_host_new_with_source(
    layout: *const pasid_layout,
    platform: u32,
    ops: *const pasid_source_ops,
    opaque: *mut c_void,
    out_host: *mut *mut pasid_host,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        let layout = input_struct(layout, "layout")?;
        let ops = input_struct(ops, "ops")?;
        reply(Out(out_host, "out_host"), || {
            if ops.alloc.is_none() || ops.claim.is_none() || ops.release.is_none() {
                return Err(FfiError::Null("ops->alloc, ->claim or ->release"));
            }
            let layout = layout_from_c(&layout)?;
            let source = FfiSource::Callbacks(CallbackSource {
                ops,
                opaque,
                range: layout.shared(),
            });
            let host = Host::with_source(layout, Platform::from_c(platform)?, source)?;
            register_host(HostCell::new(host))
        })
    })
}

/// Creates a host whose host PASIDs come from the machine's broker (`pasid-broker`)
/// listening on the Unix socket at `socket_path` (a NUL-terminated path): a lease
/// that holds its host PASIDs alone, reconnected and reclaimed on its own if the broker
/// restarts. Otherwise as `pasid_host_new`.
///
/// The broker refuses a layout other than its own, credentials it does not allow, or a
/// uid past its caps: `PASID_RESULT_SOURCE`, with the broker's words (both layouts, for
/// a mismatch) in `pasid_last_error_message`; an unreachable socket gives the same code.
/// `pasid_host_free` ends the lease: host PASIDs still held (not confirmed torn down)
/// go to the broker's quarantine, never straight to another VMM. Thread-safe; the calls
/// of this host that need a host PASID do a round trip to the broker under its lock.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_host_new_brokered(
    layout: *const pasid_layout,
    platform: u32,
    socket_path: *const core::ffi::c_char,
    out_host: *mut *mut pasid_host,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        let layout = layout_from_c(&input_struct(layout, "layout")?)?;
        reply(Out(out_host, "out_host"), || {
            if socket_path.is_null() {
                return Err(FfiError::Null("socket_path"));
            }
            // Non-NULL, and NUL-terminated by the caller's promise.
            let path = core::ffi::CStr::from_ptr(socket_path);
            let path = std::path::Path::new(
                <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(path.to_bytes()),
            );
            let platform = Platform::from_c(platform)?;
            let source = BrokerSource::connect(path, &layout)
                .map_err(|e| FfiError::SourceRefused(std::format!("{e}")))?;
            let host = Host::with_source(layout, platform, FfiSource::Broker(source))?;
            register_host(HostCell::new(host))
        })
    })
}
