//! A global allocator for tests that counts, per thread, the live heap bytes, and can be
//! armed to fail after a number of allocations. Per thread, so the tests of one binary
//! can run in parallel without seeing each other's allocations.
//!
//! A test binary installs it with
//! `#[global_allocator] static A: support::alloc::TestAlloc = support::alloc::TestAlloc;`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

pub struct TestAlloc;

thread_local! {
    /// Bytes this thread allocated minus bytes it freed.
    static LIVE: Cell<isize> = const { Cell::new(0) };
    /// Allocations this thread made.
    static COUNT: Cell<u64> = const { Cell::new(0) };
    /// Allocations still allowed before every further one fails; `u64::MAX` = disarmed.
    static ALLOWED: Cell<u64> = const { Cell::new(u64::MAX) };
    /// The largest single request this thread made.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

/// Whether an allocation of `size` bytes may go ahead (and counts it).
fn admit(size: usize) -> bool {
    COUNT.with(|c| c.set(c.get() + 1));
    LARGEST.with(|l| l.set(l.get().max(size)));
    ALLOWED.with(|a| match a.get() {
        u64::MAX => true,
        0 => false,
        n => {
            a.set(n - 1);
            true
        }
    })
}

fn add_live(bytes: isize) {
    LIVE.with(|l| l.set(l.get() + bytes));
}

// SAFETY: every call goes to `System` with the caller's layout unchanged; the counters
// are const-initialised thread locals without destructors, so using them never
// allocates nor touches a destroyed value.
unsafe impl GlobalAlloc for TestAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !admit(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            add_live(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !admit(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            add_live(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        add_live(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !admit(new_size) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            add_live(new_size as isize - layout.size() as isize);
        }
        p
    }
}

/// Live heap bytes of this thread (allocated minus freed since it started).
pub fn live_bytes() -> isize {
    LIVE.with(Cell::get)
}

/// Allocations this thread has made so far.
pub fn allocations() -> u64 {
    COUNT.with(Cell::get)
}

/// Runs `f` with at most `allowed` allocations succeeding on this thread; every one
/// after that fails (the allocator returns null). Disarms again afterwards, also when
/// `f` panics.
pub fn failing_after<R>(allowed: u64, f: impl FnOnce() -> R) -> R {
    struct Disarm;
    impl Drop for Disarm {
        fn drop(&mut self) {
            ALLOWED.with(|a| a.set(u64::MAX));
        }
    }
    ALLOWED.with(|a| a.set(allowed));
    let _disarm = Disarm;
    f()
}

/// How many allocations `f` makes on this thread.
pub fn count_allocations<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let before = allocations();
    let r = f();
    (r, allocations() - before)
}

/// The largest single allocation `f` asks for on this thread.
pub fn largest_allocation<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let saved = LARGEST.with(|l| l.replace(0));
    let r = f();
    let largest = LARGEST.with(|l| l.replace(saved.max(l.get())));
    (r, largest)
}
