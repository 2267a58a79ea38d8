//! The one place where C meets Rust: the panic boundary, the handle registry and the
//! checked conversions of raw pointers. Every exported function goes through
//! [`call`] (or [`call_or`]), and touches C memory only through the helpers here.
//!
//! # Handles
//!
//! A handle (`pasid_host *`, `pasid_import_report *`) is not a pointer to memory: it is
//! a token, a number unique for the life of the process, that names an entry of one
//! process-wide registry. The registry holds each object behind an `Arc`, tagged with
//! its type. So:
//!
//! * a handle of the wrong type, a freed handle and a made-up value are all detected,
//!   always, without reading freed memory ([`PASID_RESULT_INVALID_HANDLE`]); a token is
//!   never reused, so a stale handle can never alias a newer object;
//! * freeing a handle while another thread is inside a call on it is memory-safe: the
//!   running call keeps the object alive until it returns, later calls fail;
//! * looking a handle up costs a read lock of the registry and an `Arc` clone.
//!
//! [`PASID_RESULT_INVALID_HANDLE`]: crate::FfiCode::InvalidHandle

use core::any::Any;
use core::ffi::c_int;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicUsize, Ordering};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::string::String;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::vec::Vec;

use crate::source::FfiHost as Host;

use crate::error::{set_last_error, FfiError};
use crate::log::pasid_log_level;
use crate::migrate::ReportData;

/// Runs the body of an exported function that returns a result code: 0 on success,
/// the error's code otherwise (recorded as this thread's last error). A panic becomes
/// `PASID_RESULT_PANIC`.
/// Every error result is also sent to the log callback, if one is set (`log.rs`).
pub(crate) fn call<F: FnOnce() -> Result<(), FfiError>>(f: F) -> c_int {
    let function = crate::log::function_name(&f);
    let e = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => return 0,
        Ok(Err(e)) => e,
        Err(payload) => FfiError::Panic(panic_message(payload.as_ref())),
    };
    // Building the message allocates; a panic there must not escape either.
    let code = e.code();
    let _ = catch_unwind(AssertUnwindSafe(|| {
        set_last_error(&e);
        if crate::log::enabled() {
            let level = match e {
                FfiError::Panic(_) | FfiError::Poisoned => pasid_log_level::Error,
                FfiError::Core(pasid_core::Error::BufferTooSmall { .. }) => pasid_log_level::Debug,
                _ => pasid_log_level::Warn,
            };
            crate::log::log(
                level,
                &std::format!("{function}: error {code}: {}", e.message()),
            );
        }
    }));
    code
}

/// Sends a notable event to the log callback; the text is built only if one is set.
pub(crate) fn event(text: impl FnOnce() -> String) {
    if crate::log::enabled() {
        crate::log::log(pasid_log_level::Info, &text());
    }
}

/// Runs the body of an exported function that returns a value rather than a code: a
/// panic gives `default`.
pub(crate) fn call_or<T>(default: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(default)
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        String::from(*s)
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        String::from("(no message)")
    }
}

// ---- handles ----

/// One host behind its lock.
pub(crate) struct HostCell {
    host: Mutex<Host>,
}

impl HostCell {
    pub(crate) fn new(host: Host) -> Self {
        HostCell {
            host: Mutex::new(host),
        }
    }

    /// Locks the host. A lock poisoned by a panic is reported, never unwrapped.
    pub(crate) fn lock(&self) -> Result<MutexGuard<'_, Host>, FfiError> {
        self.host.lock().map_err(|_| FfiError::Poisoned)
    }
}

/// A registry entry: the object and so its type.
#[derive(Clone)]
enum Object {
    Host(Arc<HostCell>),
    Report(Arc<ReportData>),
}

/// Live handles by token.
static REGISTRY: RwLock<BTreeMap<usize, Object>> = RwLock::new(BTreeMap::new());
/// The next token number; tokens are `(n << TAG_BITS) | tag`, so never 0 and never
/// reused (on 64-bit targets; 32-bit ones wrap after 2^28 handles).
static NEXT: AtomicUsize = AtomicUsize::new(1);
const TAG_BITS: u32 = 4;
const TAG_HOST: usize = 0x1;
const TAG_REPORT: usize = 0x2;

fn registry_read() -> std::sync::RwLockReadGuard<'static, BTreeMap<usize, Object>> {
    // Nothing panics while holding the registry lock (map operations only), and every
    // map operation is atomic, so a poisoned lock still guards a consistent map.
    REGISTRY.read().unwrap_or_else(|e| e.into_inner())
}

fn registry_write() -> std::sync::RwLockWriteGuard<'static, BTreeMap<usize, Object>> {
    REGISTRY.write().unwrap_or_else(|e| e.into_inner())
}

fn register(object: Object, tag: usize) -> Result<usize, FfiError> {
    let mut map = registry_write();
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let token = n.wrapping_shl(TAG_BITS) | tag;
        if n != 0 && !map.contains_key(&token) {
            map.insert(token, object);
            return Ok(token);
        }
    }
}

/// Registers a host; returns its handle.
pub(crate) fn register_host(cell: HostCell) -> Result<*mut crate::pasid_host, FfiError> {
    let what = if crate::log::enabled() {
        cell.lock().map(|h| {
            let l = h.layout();
            let (local, shared) = (l.local(), l.shared());
            std::format!(
                "width {}, local {}..{}, shared {}..{}, {:?}",
                l.width(),
                local.start,
                local.end,
                shared.start,
                shared.end,
                h.platform()
            )
        })
    } else {
        Ok(String::new())
    };
    let token = register(Object::Host(Arc::new(cell)), TAG_HOST)?;
    event(|| std::format!("host {token:#x} created: {}", what.unwrap_or_default()));
    Ok(core::ptr::without_provenance_mut(token))
}

/// Registers an import report; returns its handle.
pub(crate) fn register_report(
    report: ReportData,
) -> Result<*mut crate::pasid_import_report, FfiError> {
    let token = register(Object::Report(Arc::new(report)), TAG_REPORT)?;
    Ok(core::ptr::without_provenance_mut(token))
}

/// The host behind a handle.
pub(crate) fn host(
    handle: *const crate::pasid_host,
    name: &'static str,
) -> Result<Arc<HostCell>, FfiError> {
    if handle.is_null() {
        return Err(FfiError::Null(name));
    }
    match registry_read().get(&(handle as usize)) {
        Some(Object::Host(cell)) => Ok(Arc::clone(cell)),
        _ => Err(FfiError::InvalidHandle(name)),
    }
}

/// The report behind a handle.
pub(crate) fn report(
    handle: *const crate::pasid_import_report,
    name: &'static str,
) -> Result<Arc<ReportData>, FfiError> {
    if handle.is_null() {
        return Err(FfiError::Null(name));
    }
    match registry_read().get(&(handle as usize)) {
        Some(Object::Report(r)) => Ok(Arc::clone(r)),
        _ => Err(FfiError::InvalidHandle(name)),
    }
}

/// Runs `f` on the locked host behind `handle`.
pub(crate) fn with_host<R>(
    handle: *const crate::pasid_host,
    f: impl FnOnce(&mut Host) -> Result<R, FfiError>,
) -> Result<R, FfiError> {
    let cell = host(handle, "host")?;
    let mut guard = cell.lock()?;
    f(&mut guard)
}

/// Removes a handle of the given type from the registry. NULL is a no-op; a value that
/// is not a live handle of that type is ignored too (freeing twice is harmless).
/// Returns whether something was freed.
fn unregister(token: usize, is_host: bool) -> bool {
    if token == 0 {
        return false;
    }
    let removed = {
        let mut map = registry_write();
        let removed = match map.get(&token) {
            Some(Object::Host(_)) if is_host => map.remove(&token),
            Some(Object::Report(_)) if !is_host => map.remove(&token),
            _ => None,
        };
        if map.is_empty() {
            // No handle is live: free the map's last (empty) node too, so a leak
            // checker sees nothing left at exit (scripts/harden.sh runs valgrind).
            *map = BTreeMap::new();
        }
        removed
    };
    // The object is dropped here, outside the registry lock (it may be big).
    if removed.is_some() && is_host {
        event(|| std::format!("host {token:#x} freed"));
    }
    removed.is_some()
}

pub(crate) fn free_host(handle: *mut crate::pasid_host) -> bool {
    unregister(handle as usize, true)
}

pub(crate) fn free_report(handle: *mut crate::pasid_import_report) -> bool {
    unregister(handle as usize, false)
}

// ---- pointers ----

/// A caller's input struct.
///
/// # Safety
/// `p` is NULL or points to a valid, initialized `T` for the duration of the call.
pub(crate) unsafe fn input<'a, T>(p: *const T, name: &'static str) -> Result<&'a T, FfiError> {
    if p.is_null() {
        return Err(FfiError::Null(name));
    }
    check_aligned(p, name)?;
    // SAFETY: non-NULL and aligned; validity is the caller's promise.
    Ok(unsafe { &*p })
}

/// An out-parameter: checked before the operation runs, so a NULL out-pointer never
/// leaves a change behind that the caller cannot see.
///
/// # Safety
/// `p` is NULL or points to writable memory for one `T` for the duration of the call.
pub(crate) unsafe fn output<'a, T>(
    p: *mut T,
    name: &'static str,
) -> Result<&'a mut MaybeUninit<T>, FfiError> {
    if p.is_null() {
        return Err(FfiError::Null(name));
    }
    check_aligned(p, name)?;
    // SAFETY: non-NULL, aligned, writable by the caller's promise; MaybeUninit makes
    // no claim about the current contents.
    Ok(unsafe { &mut *(p as *mut MaybeUninit<T>) })
}

/// An optional out-parameter (NULL allowed).
///
/// # Safety
/// As [`output`].
pub(crate) unsafe fn output_opt<'a, T>(
    p: *mut T,
    name: &'static str,
) -> Result<Option<&'a mut MaybeUninit<T>>, FfiError> {
    if p.is_null() {
        Ok(None)
    } else {
        // SAFETY: forwarded.
        unsafe { output(p, name) }.map(Some)
    }
}

/// An input array of `len` elements; NULL is accepted when `len` is 0.
///
/// # Safety
/// `p` is NULL or points to `len` valid, initialized `T`s for the duration of the call.
pub(crate) unsafe fn input_slice<'a, T>(
    p: *const T,
    len: usize,
    name: &'static str,
) -> Result<&'a [T], FfiError> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(FfiError::Null(name));
    }
    check_aligned(p, name)?;
    check_len::<T>(len, name)?;
    // SAFETY: non-NULL, aligned, size fits isize; contents are the caller's promise.
    Ok(unsafe { core::slice::from_raw_parts(p, len) })
}

/// An output array of `len` elements; NULL is accepted when `len` is 0 (a size query).
///
/// # Safety
/// `p` is NULL or points to writable memory for `len` `T`s for the duration of the call.
pub(crate) unsafe fn output_slice<'a, T>(
    p: *mut T,
    len: usize,
    name: &'static str,
) -> Result<&'a mut [MaybeUninit<T>], FfiError> {
    if len == 0 {
        return Ok(&mut []);
    }
    if p.is_null() {
        return Err(FfiError::Null(name));
    }
    check_aligned(p, name)?;
    check_len::<T>(len, name)?;
    // SAFETY: as input_slice, and writable by the caller's promise.
    Ok(unsafe { core::slice::from_raw_parts_mut(p as *mut MaybeUninit<T>, len) })
}

fn check_aligned<T>(p: *const T, name: &'static str) -> Result<(), FfiError> {
    if p.is_aligned() {
        Ok(())
    } else {
        Err(FfiError::InvalidArgument(std::format!(
            "{name} is not aligned for its type"
        )))
    }
}

fn check_len<T>(len: usize, name: &'static str) -> Result<(), FfiError> {
    match len.checked_mul(core::mem::size_of::<T>()) {
        Some(bytes) if bytes <= isize::MAX as usize => Ok(()),
        _ => Err(FfiError::InvalidArgument(std::format!(
            "{name}: length {len} is too large"
        ))),
    }
}

// ---- structs that may grow: a `size` field first, as VFIO's `argsz` ----

/// The largest `size` accepted: a bound on how much caller memory a garbage `size`
/// makes the library read (Linux bounds `copy_struct_from_user` callers likewise).
const MAX_STRUCT_SIZE: usize = 4096;

/// A public struct that may grow in later versions. Its first field is `size: u32`,
/// which the caller sets to the `sizeof` it was compiled with; the library accepts any
/// size from the struct's first version ([`SizedStruct::MIN_SIZE`]) up, reads or
/// writes the part both know, and treats the rest as described at [`input_struct`] and
/// [`OutStruct::write`].
///
/// # Safety
/// Implementors are `#[repr(C)]` with a `u32` first field, and (for the ones read as
/// input) every field is an integer or a struct of integers, so any bytes are a valid
/// value.
pub(crate) unsafe trait SizedStruct: Copy {
    /// `sizeof` of the struct's first version. Every struct is at its first version.
    const MIN_SIZE: usize = core::mem::size_of::<Self>();
    /// Sets the `size` field.
    fn set_size(&mut self, size: u32);
}

/// The `size` field of the struct at `p`, checked against `T`'s versions.
///
/// # Safety
/// `p` is non-NULL, aligned, and valid for reads of at least its first 4 bytes.
unsafe fn struct_size<T: SizedStruct>(p: *const T, name: &'static str) -> Result<usize, FfiError> {
    // SAFETY: the first field is a u32 (SizedStruct), readable by the caller's promise.
    let size = unsafe { (p as *const u32).read() } as usize;
    if size < T::MIN_SIZE || size > MAX_STRUCT_SIZE || size % core::mem::align_of::<T>() != 0 {
        return Err(FfiError::BadStructSize(std::format!(
            "{name}.size is {size}; this library accepts {} to {MAX_STRUCT_SIZE}, a multiple of {} (set it to sizeof the struct)",
            T::MIN_SIZE,
            core::mem::align_of::<T>()
        )));
    }
    Ok(size)
}

/// Reads a versioned struct of `size` bytes: a shorter (older) one gets zeros for the
/// fields it lacks; a longer (newer) one is accepted if every byte this library does
/// not know is zero (the newer fields' "not used"), as Linux's `copy_struct_from_user`.
///
/// # Safety
/// `p` is non-NULL, aligned, and valid for reads of `size` bytes.
unsafe fn read_sized<T: SizedStruct>(
    p: *const T,
    size: usize,
    name: &'static str,
) -> Result<T, FfiError> {
    let known = core::mem::size_of::<T>();
    // SAFETY: valid for `size` bytes by the caller's promise.
    let bytes = unsafe { core::slice::from_raw_parts(p as *const u8, size) };
    if size > known && bytes[known..].iter().any(|&b| b != 0) {
        return Err(FfiError::BadStructSize(std::format!(
            "{name} is {size} bytes with fields this library ({known} bytes) does not know set"
        )));
    }
    let mut value = MaybeUninit::<T>::zeroed();
    // SAFETY: copies at most `known` bytes into a zeroed T; every bit pattern of an
    // all-integer T is valid (SizedStruct).
    unsafe {
        core::ptr::copy_nonoverlapping(
            bytes.as_ptr(),
            value.as_mut_ptr() as *mut u8,
            size.min(known),
        );
        Ok(value.assume_init())
    }
}

/// A caller's versioned input struct (see [`SizedStruct`]).
///
/// # Safety
/// `p` is NULL or valid for reads of the `size` bytes its `size` field says.
pub(crate) unsafe fn input_struct<T: SizedStruct>(
    p: *const T,
    name: &'static str,
) -> Result<T, FfiError> {
    if p.is_null() {
        return Err(FfiError::Null(name));
    }
    check_aligned(p, name)?;
    // SAFETY: forwarded to the caller's promise.
    unsafe {
        let size = struct_size(p, name)?;
        read_sized(p, size, name)
    }
}

/// A caller's array of versioned structs: element 0's `size` is the stride, and every
/// element must say the same size. NULL is accepted when `len` is 0.
///
/// # Safety
/// `p` is NULL or valid for reads of `len` elements of the size they say.
pub(crate) unsafe fn input_struct_slice<T: SizedStruct>(
    p: *const T,
    len: usize,
    name: &'static str,
) -> Result<Vec<T>, FfiError> {
    let mut out = Vec::new();
    if len == 0 {
        return Ok(out);
    }
    if p.is_null() {
        return Err(FfiError::Null(name));
    }
    check_aligned(p, name)?;
    // SAFETY: element 0 exists (len > 0) by the caller's promise.
    let stride = unsafe { struct_size(p, name) }?;
    check_len::<u8>(len.saturating_mul(stride), name)?;
    out.try_reserve_exact(len)
        .map_err(|_| pasid_core::Error::OutOfMemory)?;
    for i in 0..len {
        // SAFETY: element i starts i * stride bytes in, within the caller's array
        // (total size checked above); the stride is a multiple of T's alignment.
        let e = unsafe { (p as *const u8).add(i * stride) as *const T };
        let size = unsafe { struct_size(e, name) }?;
        if size != stride {
            return Err(FfiError::BadStructSize(std::format!(
                "{name}[{i}].size is {size}, {name}[0].size {stride}: all entries must say the same size"
            )));
        }
        // SAFETY: as above.
        out.push(unsafe { read_sized(e, size, name) }?);
    }
    Ok(out)
}

/// A versioned out-parameter, checked (non-NULL, aligned, valid `size`) before the
/// operation runs.
pub(crate) struct OutStruct<'a, T> {
    p: *mut T,
    size: usize,
    _caller: core::marker::PhantomData<&'a mut T>,
}

/// A caller's versioned output struct: the caller sets its `size` field first.
///
/// # Safety
/// `p` is NULL or valid for reads and writes of the `size` bytes its `size` field says.
pub(crate) unsafe fn output_struct<'a, T: SizedStruct>(
    p: *mut T,
    name: &'static str,
) -> Result<OutStruct<'a, T>, FfiError> {
    if p.is_null() {
        return Err(FfiError::Null(name));
    }
    check_aligned(p, name)?;
    // SAFETY: forwarded to the caller's promise.
    let size = unsafe { struct_size(p, name) }?;
    Ok(OutStruct {
        p,
        size,
        _caller: core::marker::PhantomData,
    })
}

impl<T: SizedStruct> OutStruct<'_, T> {
    /// Writes the part of `value` the caller's struct has room for, sets its `size` to
    /// the bytes written, and zeroes what lies beyond (fields of a newer version this
    /// library does not fill).
    pub(crate) fn write(self, mut value: T) {
        let n = self.size.min(core::mem::size_of::<T>());
        value.set_size(n as u32);
        // SAFETY: the caller's struct is valid for `self.size` bytes (output_struct);
        // an untyped copy may carry the value's padding bytes.
        unsafe {
            core::ptr::copy_nonoverlapping(&value as *const T as *const u8, self.p as *mut u8, n);
            core::ptr::write_bytes((self.p as *mut u8).add(n), 0, self.size - n);
        }
    }
}

// ---- the shapes of an exported function ----
//
// An exported function checks its out-parameters, does its work and writes its answer
// ([`reply`]), or lists items into a caller's array by the size-query rule
// ([`list_into`]); [`answer`] and [`list`] are the same on a locked host. These helpers
// are those bodies, and the one place where the pointer rules meet them, so each
// exported function says only what it computes. They run inside `call`, whose closure
// is the exported function's own (the log names the function from it).

/// The out-parameters an exported function answers through: [`Out`], [`OutOpt`],
/// [`OutSized`], [`NewReport`], or a pair or triple of them. [`reply`] checks them in
/// order before the function does anything, so a bad out-pointer never leaves a change
/// behind that the caller cannot see, and writes them only when the function succeeds.
pub(crate) trait Dest<'a> {
    /// What the function computes for them.
    type Value;
    /// The out-parameters, checked.
    type Checked;
    /// Checks the pointers (NULL where it is not allowed, alignment, struct sizes).
    ///
    /// # Safety
    /// Each pointer is NULL or valid for a write of its type (the header's pointer rule).
    unsafe fn check(self) -> Result<Self::Checked, FfiError>;
    /// Writes `value` through the checked out-parameters.
    fn put(checked: Self::Checked, value: Self::Value) -> Result<(), FfiError>;
}

/// A required out-parameter, with its name for the error a NULL gives.
pub(crate) struct Out<T>(pub(crate) *mut T, pub(crate) &'static str);

/// An out-parameter that may be NULL: then the value is dropped.
pub(crate) struct OutOpt<T>(pub(crate) *mut T, pub(crate) &'static str);

/// A versioned output struct (see [`SizedStruct`] and [`OutStruct::write`]).
pub(crate) struct OutSized<T>(pub(crate) *mut T, pub(crate) &'static str);

/// An out-parameter, which may be NULL, for the handle of a new import report: the
/// report is registered only when the caller asks for it, so no handle is made that
/// nobody can free.
pub(crate) struct NewReport(pub(crate) *mut *mut crate::pasid_import_report);

impl<'a, T: 'a> Dest<'a> for Out<T> {
    type Value = T;
    type Checked = &'a mut MaybeUninit<T>;
    unsafe fn check(self) -> Result<Self::Checked, FfiError> {
        // SAFETY: forwarded to the caller's promise.
        unsafe { output(self.0, self.1) }
    }
    fn put(checked: Self::Checked, value: T) -> Result<(), FfiError> {
        checked.write(value);
        Ok(())
    }
}

impl<'a, T: 'a> Dest<'a> for OutOpt<T> {
    type Value = T;
    type Checked = Option<&'a mut MaybeUninit<T>>;
    unsafe fn check(self) -> Result<Self::Checked, FfiError> {
        // SAFETY: forwarded to the caller's promise.
        unsafe { output_opt(self.0, self.1) }
    }
    fn put(checked: Self::Checked, value: T) -> Result<(), FfiError> {
        if let Some(out) = checked {
            out.write(value);
        }
        Ok(())
    }
}

impl<'a, T: SizedStruct + 'a> Dest<'a> for OutSized<T> {
    type Value = T;
    type Checked = OutStruct<'a, T>;
    unsafe fn check(self) -> Result<Self::Checked, FfiError> {
        // SAFETY: forwarded to the caller's promise.
        unsafe { output_struct(self.0, self.1) }
    }
    fn put(checked: Self::Checked, value: T) -> Result<(), FfiError> {
        checked.write(value);
        Ok(())
    }
}

impl<'a> Dest<'a> for NewReport {
    type Value = pasid_core::migrate::ImportReport;
    type Checked = Option<&'a mut MaybeUninit<*mut crate::pasid_import_report>>;
    unsafe fn check(self) -> Result<Self::Checked, FfiError> {
        // SAFETY: forwarded to the caller's promise.
        unsafe { output_opt(self.0, "out_report") }
    }
    fn put(checked: Self::Checked, report: Self::Value) -> Result<(), FfiError> {
        if let Some(out) = checked {
            out.write(register_report(ReportData { report })?);
        }
        Ok(())
    }
}

impl<'a, A: Dest<'a>, B: Dest<'a>> Dest<'a> for (A, B) {
    type Value = (A::Value, B::Value);
    type Checked = (A::Checked, B::Checked);
    unsafe fn check(self) -> Result<Self::Checked, FfiError> {
        // SAFETY: forwarded to the caller's promise.
        unsafe { Ok((self.0.check()?, self.1.check()?)) }
    }
    fn put((a, b): Self::Checked, (va, vb): Self::Value) -> Result<(), FfiError> {
        A::put(a, va)?;
        B::put(b, vb)
    }
}

impl<'a, A: Dest<'a>, B: Dest<'a>, C: Dest<'a>> Dest<'a> for (A, B, C) {
    type Value = (A::Value, B::Value, C::Value);
    type Checked = (A::Checked, B::Checked, C::Checked);
    unsafe fn check(self) -> Result<Self::Checked, FfiError> {
        // SAFETY: forwarded to the caller's promise.
        unsafe { Ok((self.0.check()?, self.1.check()?, self.2.check()?)) }
    }
    fn put((a, b, c): Self::Checked, (va, vb, vc): Self::Value) -> Result<(), FfiError> {
        A::put(a, va)?;
        B::put(b, vb)?;
        C::put(c, vc)
    }
}

/// Checks the out-parameters `dest`, runs `f` and writes its value to them.
///
/// # Safety
/// Each pointer of `dest` is NULL or valid for a write of its type (the header's
/// pointer rule).
pub(crate) unsafe fn reply<'a, D: Dest<'a>>(
    dest: D,
    f: impl FnOnce() -> Result<D::Value, FfiError>,
) -> Result<(), FfiError> {
    // SAFETY: forwarded to the caller's promise.
    let checked = unsafe { dest.check() }?;
    D::put(checked, f()?)
}

/// [`reply`] with `f` run on the locked host behind `host`.
///
/// # Safety
/// As [`reply`].
pub(crate) unsafe fn answer<'a, D: Dest<'a>>(
    host: *const crate::pasid_host,
    dest: D,
    f: impl FnOnce(&mut Host) -> Result<D::Value, FfiError>,
) -> Result<(), FfiError> {
    // SAFETY: forwarded to the caller's promise.
    unsafe { reply(dest, || with_host(host, f)) }
}

/// Where a list query puts its items: the caller's array and count.
pub(crate) struct ListOut<'a, T> {
    buf: &'a mut [MaybeUninit<T>],
    out_n: &'a mut MaybeUninit<usize>,
}

impl<T> ListOut<'_, T> {
    /// How many items the caller's array holds.
    pub(crate) fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Stores the number of `items` in `*out_n`, and the items when they fit;
    /// otherwise writes no item and returns `PASID_RESULT_BUFFER_TOO_SMALL` (the
    /// size-query rule of the header).
    pub(crate) fn fill(self, items: impl ExactSizeIterator<Item = T>) -> Result<(), FfiError> {
        let needed = items.len();
        self.out_n.write(needed);
        if needed > self.buf.len() {
            return Err(pasid_core::Error::BufferTooSmall { needed }.into());
        }
        for (slot, item) in self.buf.iter_mut().zip(items) {
            slot.write(item);
        }
        Ok(())
    }

    /// [`ListOut::fill`] for items whose count is not known ahead: collected first,
    /// in a `Vec` grown without aborting.
    pub(crate) fn fill_counted(self, items: impl Iterator<Item = T>) -> Result<(), FfiError> {
        let mut v = Vec::new();
        for item in items {
            v.try_reserve(1)
                .map_err(|_| pasid_core::Error::OutOfMemory)?;
            v.push(item);
        }
        self.fill(v.into_iter())
    }

    /// Stores as many of `items` as fit, and in `*out_n` how many that was: for a call
    /// that moves items out (a drain), where what does not fit waits for the next call.
    pub(crate) fn fill_some(self, items: impl Iterator<Item = T>) -> Result<(), FfiError> {
        let mut n = 0;
        for (slot, item) in self.buf.iter_mut().zip(items) {
            slot.write(item);
            n += 1;
        }
        self.out_n.write(n);
        Ok(())
    }
}

/// Checks `buf` (`len` elements; NULL when `len` is 0) and `out_n`, then lets `f` list
/// items into them.
///
/// # Safety
/// `buf` is NULL or valid for writes of `len` `T`s, `out_n` NULL or valid for one
/// write (the header's pointer rule).
pub(crate) unsafe fn list_into<'a, T: 'a>(
    buf: *mut T,
    len: usize,
    out_n: *mut usize,
    f: impl FnOnce(ListOut<'a, T>) -> Result<(), FfiError>,
) -> Result<(), FfiError> {
    // SAFETY: forwarded to the caller's promise.
    let out_n = unsafe { output(out_n, "out_n") }?;
    // SAFETY: as above.
    let buf = unsafe { output_slice(buf, len, "buf") }?;
    f(ListOut { buf, out_n })
}

/// [`list_into`] with `f` run on the locked host behind `host`.
///
/// # Safety
/// As [`list_into`].
pub(crate) unsafe fn list<T>(
    host: *const crate::pasid_host,
    buf: *mut T,
    len: usize,
    out_n: *mut usize,
    f: impl FnOnce(&mut Host, ListOut<'_, T>) -> Result<(), FfiError>,
) -> Result<(), FfiError> {
    // SAFETY: forwarded to the caller's promise.
    unsafe { list_into(buf, len, out_n, |out| with_host(host, |h| f(h, out))) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FfiCode;
    use core::mem::size_of;

    #[test]
    fn a_panic_becomes_a_code_and_a_message() {
        let code = call(|| panic!("boom"));
        assert_eq!(code, FfiCode::Panic as c_int);
        crate::error::with_last_error(|last| {
            let (c, msg) = last.unwrap();
            assert_eq!(*c, FfiCode::Panic as c_int);
            assert!(msg.contains("boom"), "{msg}");
        });
        assert_eq!(call_or(7, || panic!("again")), 7);
    }

    /// A newer caller's struct: ours plus a field we do not know.
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Newer<T> {
        known: T,
        future: u32,
        pad: u32,
    }

    /// A pointer to the known part with the provenance of the whole struct, as C's.
    fn whole<T>(n: &Newer<T>) -> *const T {
        n as *const Newer<T> as *const T
    }

    #[test]
    fn sized_structs_follow_the_argsz_rules() {
        use crate::types::{pasid_host_info, pasid_layout};
        let layout = pasid_layout {
            size: size_of::<pasid_layout>() as u32,
            width: 20,
            local_start: 1,
            local_end: 4096,
            shared_start: 4096,
            shared_end: 8192,
        };
        fn bad<T>(r: Result<T, FfiError>) -> bool {
            matches!(r, Err(FfiError::BadStructSize(_)))
        }
        // SAFETY (all calls below): each pointer is valid for the size it says.
        assert_eq!(unsafe { input_struct(&layout, "l") }.unwrap(), layout);
        let mut short = layout;
        short.size -= 4;
        assert!(bad(unsafe { input_struct(&short, "l") }));
        let mut newer = Newer {
            known: layout,
            future: 0,
            pad: 0,
        };
        newer.known.size = size_of::<Newer<pasid_layout>>() as u32;
        let read = unsafe { input_struct(whole(&newer), "l") }.unwrap();
        assert_eq!(read.local_end, 4096);
        newer.future = 1;
        assert!(bad(unsafe { input_struct(whole(&newer), "l") }));

        // Arrays: entry 0's size is the stride; entries must agree.
        newer.future = 0;
        let arr = [newer, newer];
        let v = unsafe { input_struct_slice(arr.as_ptr() as *const pasid_layout, 2, "a") }.unwrap();
        assert_eq!(v.len(), 2);
        let mut arr2 = arr;
        arr2[1].known.size = size_of::<pasid_layout>() as u32;
        assert!(bad(unsafe {
            input_struct_slice(arr2.as_ptr() as *const pasid_layout, 2, "a")
        }));

        // Output into a newer caller's struct: tail zeroed, size = what was written.
        let mut out: Newer<pasid_host_info> = unsafe { core::mem::zeroed() };
        out.known.size = size_of::<Newer<pasid_host_info>>() as u32;
        out.future = 0xa5a5_a5a5;
        let info = pasid_host_info {
            guests: 3,
            ..unsafe { core::mem::zeroed() }
        };
        unsafe { output_struct(&mut out as *mut Newer<_> as *mut pasid_host_info, "o") }
            .unwrap()
            .write(info);
        assert_eq!(out.known.size as usize, size_of::<pasid_host_info>());
        assert_eq!((out.known.guests, out.future), (3, 0));
        out.known.size = 0;
        assert!(bad(unsafe {
            output_struct(&mut out as *mut Newer<_> as *mut pasid_host_info, "o")
        }));
    }

    #[test]
    fn a_poisoned_host_is_reported_not_unwrapped() {
        let layout = pasid_core::PasidLayout::new(20, 1..4096, 4096..8192).unwrap();
        let host = crate::source::in_process_host(layout, pasid_core::Platform::P2).unwrap();
        let handle = register_host(HostCell::new(host)).unwrap();
        let code = call(|| {
            with_host(handle, |_| -> Result<(), FfiError> {
                panic!("inside the lock")
            })
        });
        assert_eq!(code, FfiCode::Panic as c_int);
        let code = call(|| with_host(handle, |_| Ok(())));
        assert_eq!(code, FfiCode::HostPoisoned as c_int);
        assert!(free_host(handle));
        assert!(!free_host(handle));
        let code = call(|| with_host(handle, |_| Ok(())));
        assert_eq!(code, FfiCode::InvalidHandle as c_int);
    }
}
