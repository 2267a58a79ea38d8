//! The log hook: one process-wide callback with user data that the library calls for
//! every refusal (each error result a function returns) and for a few notable events
//! (a host made or freed, a guest imported). Off until `pasid_set_log_callback`.
//!
//! A VMM routes it to its own tracing (QEMU: a trace event, or `error_report` for
//! `PASID_LOG_LEVEL_ERROR`). Messages are built only while a callback is set, so the
//! hook costs one atomic load per failing call when it is off.

use core::ffi::{c_char, c_void};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::cell::Cell;
use std::ffi::CString;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;

/// How much a log message matters: the `level` argument of a `pasid_log_callback`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum pasid_log_level {
    /// A bug in the library (a caught panic, a poisoned host): report it.
    Error = 1,
    /// A call refused with an error result: the caller's mistake or the guest's, as
    /// the code says (QEMU: a trace event, or a guest-error log).
    Warn = 2,
    /// A notable event: a host made or freed, a guest imported.
    Info = 3,
    /// `PASID_RESULT_BUFFER_TOO_SMALL`: the answer to a size query, so routine.
    Debug = 4,
}

/// The log callback: `level` is a `PASID_LOG_LEVEL_*` value, `message` a
/// NUL-terminated UTF-8 line without a trailing newline, valid only during the call,
/// `user` the pointer given to `pasid_set_log_callback`.
///
/// It may be called from any thread that calls the library, and from several at once;
/// never with a lock of the library held, so calls into the library from inside it
/// work (they are not logged themselves). It must not wait for another thread that
/// is changing the callback (`pasid_set_log_callback` waits for running callbacks).
pub type pasid_log_callback =
    Option<unsafe extern "C" fn(level: u32, message: *const c_char, user: *mut c_void)>;

#[derive(Clone, Copy)]
struct Sink {
    callback: unsafe extern "C" fn(u32, *const c_char, *mut c_void),
    user: *mut c_void,
}

// SAFETY: the library never dereferences `user`; it only hands it back to the
// callback, on whichever thread logs, which the callback's documentation states.
unsafe impl Send for Sink {}

/// The callback and its user data. Held only to copy or replace it, never while the
/// callback runs, so a callback that calls back into the library cannot deadlock.
static SINK: Mutex<Option<Sink>> = Mutex::new(None);
/// Whether a callback is set: the fast path of every failing call when logging is off.
static ENABLED: AtomicBool = AtomicBool::new(false);
/// Callbacks running now, on any thread (see `pasid_set_log_callback`).
static RUNNING: AtomicUsize = AtomicUsize::new(0);

std::thread_local! {
    /// Whether this thread is inside the callback: calls it makes are not logged.
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

fn in_callback() -> bool {
    IN_CALLBACK.try_with(Cell::get).unwrap_or(true)
}

/// Whether a message at `level` would reach a callback now: callers build the text
/// only then.
pub(crate) fn enabled() -> bool {
    ENABLED.load(Ordering::Acquire) && !in_callback()
}

/// Sends one message to the callback, if one is set. Never panics, never unwinds.
pub(crate) fn log(level: pasid_log_level, message: &str) {
    if !enabled() {
        return;
    }
    // Counted before the sink is read, so a concurrent pasid_set_log_callback either
    // sees this call running or this call sees the new sink.
    RUNNING.fetch_add(1, Ordering::SeqCst);
    let sink = *SINK.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(sink) = sink {
        // An interior NUL (none of our messages has one) would truncate: replace it.
        let text = CString::new(message.replace('\0', " ")).unwrap_or_default();
        let _ = IN_CALLBACK.try_with(|f| f.set(true));
        // The callback is C (it cannot unwind into us) or a Rust `extern "C"` function,
        // which aborts rather than unwind; catch_unwind is the belt to those braces.
        let _ = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: the function pointer and user data are what the caller registered;
            // the message lives until the call returns.
            unsafe { (sink.callback)(level as u32, text.as_ptr(), sink.user) }
        }));
        let _ = IN_CALLBACK.try_with(|f| f.set(false));
    }
    RUNNING.fetch_sub(1, Ordering::SeqCst);
}

/// Sets the log callback and its user data, or turns logging off with NULL (the
/// default). The library calls `callback(level, message, user)` for every call that
/// returns an error result (`PASID_LOG_LEVEL_WARN`; `PASID_LOG_LEVEL_ERROR` for a
/// caught panic or a poisoned host; `PASID_LOG_LEVEL_DEBUG` for
/// `PASID_RESULT_BUFFER_TOO_SMALL`, which a size query always gets) and for notable
/// events (`PASID_LOG_LEVEL_INFO`). The message names the function, the code and the
/// full text `pasid_last_error_message` gives, e.g. "pasid_alloc: error 22: shared
/// PASID quota of 64 reached".
/// See `pasid_log_callback` for what the callback may do.
///
/// Thread-safe. Process-wide: the last call wins. When it returns, no other thread is
/// still running the previous callback (it waits for such calls to finish), so the
/// previous `user` data may be freed; called from inside the callback it cannot wait
/// for itself, and returns at once.
#[no_mangle]
pub extern "C" fn pasid_set_log_callback(callback: pasid_log_callback, user: *mut c_void) {
    crate::boundary::call_or((), || {
        let sink = callback.map(|callback| Sink { callback, user });
        *SINK.lock().unwrap_or_else(|e| e.into_inner()) = sink;
        ENABLED.store(sink.is_some(), Ordering::Release);
        if !in_callback() {
            while RUNNING.load(Ordering::SeqCst) != 0 {
                std::thread::yield_now();
            }
        }
    })
}

/// A static name for a `PASID_LOG_LEVEL_*` value ("error", "warn", "info", "debug"),
/// or "unknown". Thread-safe.
#[no_mangle]
pub extern "C" fn pasid_log_level_name(level: u32) -> *const c_char {
    let name = match level {
        x if x == pasid_log_level::Error as u32 => c"error",
        x if x == pasid_log_level::Warn as u32 => c"warn",
        x if x == pasid_log_level::Info as u32 => c"info",
        x if x == pasid_log_level::Debug as u32 => c"debug",
        _ => c"unknown",
    };
    name.as_ptr()
}

/// The exported function a closure passed to `boundary::call` belongs to, from its
/// type name (`pasid::host::pasid_bind::{{closure}}` gives `pasid_bind`). Diagnostic
/// only: the format of type names is not guaranteed, so anything else gives "pasid".
pub(crate) fn function_name<F>(f: &F) -> &'static str {
    let full = core::any::type_name::<F>();
    let _ = f;
    full.split("::")
        .take_while(|seg| !seg.starts_with('{'))
        .filter(|seg| seg.starts_with("pasid_"))
        .last()
        .unwrap_or("pasid")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::String;
    use std::sync::Mutex as StdMutex;
    use std::vec::Vec;

    static SEEN: StdMutex<Vec<(u32, String)>> = StdMutex::new(Vec::new());

    unsafe extern "C" fn record(level: u32, message: *const c_char, user: *mut c_void) {
        assert_eq!(user as usize, 0x1234);
        // SAFETY: the library passes a NUL-terminated string.
        let text = unsafe { core::ffi::CStr::from_ptr(message) };
        SEEN.lock()
            .unwrap()
            .push((level, String::from(text.to_str().unwrap())));
    }

    #[test]
    fn names_and_the_callback() {
        fn pasid_example() -> &'static str {
            let f = || ();
            function_name(&f)
        }
        assert_eq!(pasid_example(), "pasid_example");
        // Off by default: nothing is built or sent.
        log(pasid_log_level::Warn, "dropped");
        pasid_set_log_callback(Some(record), core::ptr::without_provenance_mut(0x1234));
        log(pasid_log_level::Info, "one");
        pasid_set_log_callback(None, core::ptr::null_mut());
        log(pasid_log_level::Info, "dropped too");
        let seen = SEEN.lock().unwrap();
        assert!(seen.contains(&(3, String::from("one"))), "{seen:?}");
        assert!(!seen.iter().any(|(_, m)| m.starts_with("dropped")));
        // SAFETY: static strings.
        let name = unsafe { core::ffi::CStr::from_ptr(pasid_log_level_name(2)) };
        assert_eq!(name.to_str().unwrap(), "warn");
    }
}
