//! The CPU's PASID-translation pages for ENQCMD in VMX non-root operation: export into
//! caller pages, incremental updates, and a software walker over such pages.
//!
//! Pages are caller memory described by [`pasid_page`] (physical address as the CPU
//! will see it, plus the bytes). Two pages of one call must not overlap in memory: that
//! is checked here before any page is touched, as the core checks everything else.
//! A page the library only writes may be uninitialised memory: it is handed to the core
//! as `&mut [MaybeUninit<u8>]` (never as bytes), which checks everything before its
//! first write and then writes every byte; a directory changed in place is read, so
//! it must be initialised.

use core::ffi::c_int;
use core::mem::MaybeUninit;
use std::string::String;
use std::vec::Vec;

use pasid_core::hwtable::{self, Directory, Fault, PageBuf, TablePage};
use pasid_core::{GuestId, PagesTouched};

use crate::boundary::{
    call, input, input_slice, list, output_slice, reply, with_host, Out, OutOpt,
};
use crate::error::FfiError;
use crate::pasid_host;
use crate::types::*;

/// Size of every page: directories and PASID-translation tables.
pub const PASID_PAGE_SIZE: usize = 4096;
/// Number of PASID-translation tables (gPASID >> 10 is in 0..1024).
pub const PASID_TABLE_COUNT: u32 = 1024;
/// Bit 21 of the secondary processor-based VM-execution controls: PASID translation.
pub const PASID_SECONDARY_EXEC_PASID_TRANSLATION: u32 = 0x0020_0000;
/// VMCS field encoding of the low PASID directory address (gPASIDs with bit 19 clear).
pub const PASID_VMCS_LOW_PASID_DIRECTORY: u32 = 0x2038;
/// VMCS field encoding of the high PASID directory address (gPASIDs with bit 19 set).
pub const PASID_VMCS_HIGH_PASID_DIRECTORY: u32 = 0x203A;
/// Basic VM-exit reason of an ENQCMD whose PASID translation failed.
pub const PASID_EXIT_REASON_ENQCMD: u16 = 72;
/// Basic VM-exit reason of an ENQCMDS whose PASID translation failed.
pub const PASID_EXIT_REASON_ENQCMDS: u16 = 73;

const _: () = {
    assert!(PASID_PAGE_SIZE == hwtable::PAGE_SIZE);
    assert!(PASID_TABLE_COUNT == hwtable::TABLE_COUNT);
    assert!(PASID_SECONDARY_EXEC_PASID_TRANSLATION == hwtable::SECONDARY_EXEC_PASID_TRANSLATION);
    assert!(PASID_VMCS_LOW_PASID_DIRECTORY == hwtable::VMCS_LOW_PASID_DIRECTORY);
    assert!(PASID_VMCS_HIGH_PASID_DIRECTORY == hwtable::VMCS_HIGH_PASID_DIRECTORY);
    assert!(PASID_EXIT_REASON_ENQCMD == hwtable::EXIT_REASON_ENQCMD_PASID_TRANSLATION);
    assert!(PASID_EXIT_REASON_ENQCMDS == hwtable::EXIT_REASON_ENQCMDS_PASID_TRANSLATION);
};

/// Which PASID directory: the `directory` outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum pasid_directory {
    /// gPASIDs 0..2^19: the page at `PASID_VMCS_LOW_PASID_DIRECTORY`.
    Low = 1,
    /// gPASIDs 2^19..2^20: the page at `PASID_VMCS_HIGH_PASID_DIRECTORY`.
    High = 2,
}

/// Why the CPU would not translate a gPASID (`pasid_walk_result.fault`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum pasid_fault {
    /// No fault: the gPASID translates to `hpasid`.
    None = 0,
    /// The directory entry's present bit is clear (VM exit).
    DirectoryNotPresent = 1,
    /// The directory entry has a reserved bit set (VM exit).
    DirectoryReserved = 2,
    /// The table entry's valid bit is clear (VM exit).
    EntryInvalid = 3,
    /// The table entry has a reserved bit set (VM exit).
    EntryReserved = 4,
    /// The walk needed a page at `phys` that was not among those given (not a CPU
    /// fault: the CPU would read whatever memory is there).
    Unreadable = 5,
}

/// A writable 4 KiB page: where the CPU will see it, and its bytes.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct pasid_page {
    /// Physical address of the page, 4 KiB aligned.
    pub phys: u64,
    /// The page's bytes (`len` of them), written by the library.
    pub bytes: *mut u8,
    /// Must be `PASID_PAGE_SIZE` (else `PASID_RESULT_PAGE_SIZE`).
    pub len: usize,
}

/// A writable page for one PASID-translation table.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct pasid_table_page {
    /// The table number: gPASID >> 10, in 0..`PASID_TABLE_COUNT`.
    pub table: u32,
    /// Its page.
    pub page: pasid_page,
}

/// A readable page for `pasid_walk`.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct pasid_page_ref {
    /// Physical address of the page.
    pub phys: u64,
    /// The page's bytes (`len` of them).
    pub bytes: *const u8,
    /// `PASID_PAGE_SIZE` for a page the walk can read.
    pub len: usize,
}

/// The outcome of `pasid_walk`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct pasid_walk_result {
    /// `PASID_FAULT_NONE` or why the CPU would exit (`PASID_FAULT_*`).
    pub fault: u32,
    /// The host PASID, when `fault` is `PASID_FAULT_NONE`; else 0.
    pub hpasid: u32,
    /// For directory faults, the directory (`PASID_DIRECTORY_*`); else 0.
    pub directory: u32,
    /// The faulting entry's index: gPASID bits 18:10 (directory) or 9:0 (table).
    pub index: u32,
    /// The raw faulting entry, for the reserved-bit faults; else 0.
    pub entry: u64,
    /// The table's physical address for table faults, the unreadable page's for
    /// `PASID_FAULT_UNREADABLE`; else 0.
    pub phys: u64,
}

c_enum!(Directory, pasid_directory, "directory", "PASID_DIRECTORY_*": Low = Low, High = High);

/// [`pasid_pages_touched`] as C may fill it: flags as plain bytes.
#[derive(Clone, Copy)]
#[repr(C)]
struct RawPagesTouched {
    changed: u8,
    directory_changed: u8,
    table: u32,
}

const _: () = {
    assert!(core::mem::size_of::<RawPagesTouched>() == core::mem::size_of::<pasid_pages_touched>());
    assert!(
        core::mem::align_of::<RawPagesTouched>() == core::mem::align_of::<pasid_pages_touched>()
    );
    assert!(
        core::mem::offset_of!(RawPagesTouched, directory_changed)
            == core::mem::offset_of!(pasid_pages_touched, directory_changed)
    );
    assert!(
        core::mem::offset_of!(RawPagesTouched, table)
            == core::mem::offset_of!(pasid_pages_touched, table)
    );
};

/// Checks that byte ranges of caller memory are pairwise disjoint, so the mutable
/// slices made from them never alias.
fn check_disjoint(ranges: &mut [(usize, usize)]) -> Result<(), FfiError> {
    ranges.sort_unstable();
    for w in ranges.windows(2) {
        if w[0].0.saturating_add(w[0].1) > w[1].0 {
            return Err(FfiError::InvalidArgument(String::from(
                "two page buffers overlap in memory",
            )));
        }
    }
    Ok(())
}

/// A caller page the library reads as well as writes (a directory it changes one entry
/// of), as a mutable byte slice.
///
/// # Safety
/// `p.bytes` is NULL or valid for `p.len` writable, **initialised** bytes (the header
/// says so for these pages), and no other slice made in this call overlaps it (checked
/// by [`check_disjoint`] before).
unsafe fn initialised_page<'a>(
    p: &pasid_page,
    name: &'static str,
) -> Result<&'a mut [u8], FfiError> {
    // SAFETY: forwarded to the caller's promise.
    let s = unsafe { output_slice(p.bytes, p.len, name) }?;
    // SAFETY: initialised bytes by the caller's promise; u8 has no invalid values.
    Ok(unsafe { &mut *(s as *mut [MaybeUninit<u8>] as *mut [u8]) })
}

/// A caller page the library only writes, possibly uninitialised memory: its bytes as
/// `MaybeUninit<u8>` (no `&[u8]` of it is ever made), for the core's page writers,
/// which check the page's length, and everything else, before their first write.
///
/// # Safety
/// `p.bytes` is NULL or valid for `p.len` writable bytes, and no other slice made in
/// this call overlaps it (checked by [`check_disjoint`] before).
unsafe fn out_page<'a>(
    p: &pasid_page,
    name: &'static str,
) -> Result<&'a mut [MaybeUninit<u8>], FfiError> {
    // SAFETY: forwarded to the caller's promise: `p.len` writable bytes at `p.bytes`
    // (`PASID_PAGE_SIZE` of them for a page the core accepts), checked non-NULL here.
    // As `MaybeUninit<u8>` they may be uninitialised, and only ever get written.
    unsafe { output_slice(p.bytes, p.len, name) }
}

/// Lists the PASID-translation tables a guest uses, as table numbers (gPASID >> 10),
/// ascending: the tables `pasid_export_translation` needs pages for. Buffer rule as
/// `pasid_host_guests`. Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_translation_tables(
    host: *const pasid_host,
    guest: pasid_guest_id,
    buf: *mut u32,
    len: usize,
    out_n: *mut usize,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        list(host, buf, len, out_n, |h, out| {
            out.fill_counted(h.translation_tables(GuestId(guest))?)
        })
    })
}

/// Writes a guest's whole PASID translation, in the CPU's format, into caller pages:
/// the low and high directory pages and one page per table. Then write `low.phys` and
/// `high.phys` to the VMCS fields `PASID_VMCS_LOW_PASID_DIRECTORY` /
/// `PASID_VMCS_HIGH_PASID_DIRECTORY` and set `PASID_SECONDARY_EXEC_PASID_TRANSLATION`.
///
/// `tables` (`n_tables` entries) must hold a page for every table of
/// `pasid_translation_tables` (`PASID_RESULT_MISSING_TABLE_PAGE`); it may hold pages
/// for other tables, written all invalid and linked from the directory. Every page is
/// `PASID_PAGE_SIZE` bytes at a 4 KiB-aligned, distinct physical address, and no two
/// pages overlap in memory. Everything is checked before anything is written: on error
/// no page has changed. The pages are only written, so they may be uninitialised
/// memory. Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_export_translation(
    host: *const pasid_host,
    guest: pasid_guest_id,
    low: pasid_page,
    high: pasid_page,
    tables: *const pasid_table_page,
    n_tables: usize,
) -> c_int {
    call(|| {
        // SAFETY: the caller passes NULL or valid pointers for the given lengths.
        let tables = unsafe { input_slice(tables, n_tables, "tables") }?;
        let mut ranges: Vec<(usize, usize)> = [&low, &high]
            .into_iter()
            .chain(tables.iter().map(|t| &t.page))
            .filter(|p| p.len > 0)
            .map(|p| (p.bytes as usize, p.len))
            .collect();
        check_disjoint(&mut ranges)?;
        // SAFETY: valid by the caller's promise, disjoint as checked above.
        let low_bytes = unsafe { out_page(&low, "low.bytes") }?;
        // SAFETY: as above.
        let high_bytes = unsafe { out_page(&high, "high.bytes") }?;
        let mut pages = Vec::with_capacity(tables.len());
        for t in tables {
            pages.push(TablePage {
                table: t.table,
                page: PageBuf {
                    phys: t.page.phys,
                    // SAFETY: as above.
                    bytes: unsafe { out_page(&t.page, "tables[].page.bytes") }?,
                },
            });
        }
        with_host(host, |h| {
            // The core checks everything before its first write: on error no page
            // has changed.
            Ok(h.export_translation(
                GuestId(guest),
                PageBuf {
                    phys: low.phys,
                    bytes: low_bytes,
                },
                PageBuf {
                    phys: high.phys,
                    bytes: high_bytes,
                },
                &mut pages,
            )?)
        })
    })
}

/// Writes one PASID-translation table of a guest (table number = gPASID >> 10) into a
/// `PASID_PAGE_SIZE`-byte page: the page `pasid_pages_touched.table` names after an
/// update. A table the guest does not use is written all invalid. The page is only
/// written (it may be uninitialised memory); on error it is unchanged. Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_write_translation_table(
    host: *const pasid_host,
    guest: pasid_guest_id,
    table: u32,
    page: *mut u8,
    len: usize,
) -> c_int {
    call(|| {
        let p = pasid_page {
            phys: 0,
            bytes: page,
            len,
        };
        // SAFETY: the caller passes NULL or `len` writable bytes.
        let bytes = unsafe { out_page(&p, "page") }?;
        // Checked whole before written (the page unchanged on error).
        with_host(host, |h| {
            Ok(h.write_translation_table(GuestId(guest), table, bytes)?)
        })
    })
}

/// Applies one update's `pasid_pages_touched` (from `pasid_alloc`, `pasid_free` or
/// `pasid_vcmd`) to pages a VMM keeps: rewrites the table's page and, when
/// `touched->directory_changed`, the table's entry in `directory` (the page of the
/// directory `pasid_directory_of_table` names; may be NULL otherwise). A `touched`
/// with `changed` false writes nothing. Checked before written; the table's page is
/// written first and linked after. The table's page is only written (it may be
/// uninitialised memory); `directory` is changed in place, so it must be initialised
/// (the directory page of an earlier export). Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_write_touched_pages(
    host: *const pasid_host,
    guest: pasid_guest_id,
    touched: *const pasid_pages_touched,
    table_page: pasid_page,
    directory: *mut u8,
    directory_len: usize,
) -> c_int {
    call(|| {
        // SAFETY: the caller passes NULL or valid pointers for the given lengths.
        // Read through a mirror with u8 flags: C may hand any byte value in a `bool`,
        // and a Rust `bool` that is not 0 or 1 would be undefined behaviour.
        let touched = *unsafe { input(touched as *const RawPagesTouched, "touched") }?;
        let touched = pasid_pages_touched {
            changed: touched.changed != 0,
            directory_changed: touched.directory_changed != 0,
            table: touched.table,
        };
        if !touched.changed {
            return with_host(host, |h| Ok(h.guest_config(GuestId(guest)).map(|_| ())?));
        }
        let dir = pasid_page {
            phys: 0,
            bytes: directory,
            len: directory_len,
        };
        let mut ranges: Vec<(usize, usize)> = [&table_page, &dir]
            .into_iter()
            .filter(|p| p.len > 0)
            .map(|p| (p.bytes as usize, p.len))
            .collect();
        check_disjoint(&mut ranges)?;
        if touched.directory_changed && directory.is_null() {
            return Err(FfiError::Null("directory"));
        }
        // SAFETY: valid by the caller's promise, disjoint as checked above.
        let table_bytes = unsafe { out_page(&table_page, "table_page.bytes") }?;
        let dir_bytes = if directory.is_null() {
            None
        } else {
            // SAFETY: as above; the directory is initialised (the header's rule: one
            // entry of it is rewritten in place).
            Some(unsafe { initialised_page(&dir, "directory") }?)
        };
        let core_touched = PagesTouched {
            table: touched.table,
            directory_changed: touched.directory_changed,
        };
        // The core checks everything before its first write, writes the table's page
        // and links it after.
        with_host(host, |h| {
            Ok(h.write_touched_pages(
                GuestId(guest),
                core_touched,
                PageBuf {
                    phys: table_page.phys,
                    bytes: table_bytes,
                },
                dir_bytes,
            )?)
        })
    })
}

/// Which directory (`PASID_DIRECTORY_*`) holds table `table` (gPASID >> 10; only its
/// low 10 bits are used), and in `*out_offset` the byte offset of its 8-byte entry in
/// that directory's page. Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_directory_of_table(
    table: u32,
    out_directory: *mut u32,
    out_offset: *mut usize,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        let outs = (
            Out(out_directory, "out_directory"),
            OutOpt(out_offset, "out_offset"),
        );
        reply(outs, || {
            let (dir, offset) = hwtable::directory_slot(table);
            Ok((dir.to_c(), offset))
        })
    })
}

/// Writes the directory entry for table `table` (pointing at the table page at
/// `table_phys`, 4 KiB aligned) into a directory page (`len` must be
/// `PASID_PAGE_SIZE`); only those 8 bytes change. `*out_directory` (may be NULL) tells
/// which directory (`PASID_DIRECTORY_*`) that page must be. The page is changed in
/// place, so it must be initialised. Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_write_directory_entry(
    directory_page: *mut u8,
    len: usize,
    table: u32,
    table_phys: u64,
    out_directory: *mut u32,
) -> c_int {
    // SAFETY: the header's pointer rule. The page is read-modify-written, so it must
    // be initialized: it is the caller's directory page.
    call(|| unsafe {
        reply(OutOpt(out_directory, "out_directory"), || {
            let p = pasid_page {
                phys: 0,
                bytes: directory_page,
                len,
            };
            let bytes = initialised_page(&p, "directory_page")?;
            Ok(hwtable::write_directory_entry(bytes, table, table_phys)?.to_c())
        })
    })
}

/// Walks the CPU's PASID translation of `gpasid` (bits 19:0 used) over the pages in
/// `pages` (`n_pages` of them), exactly as the processor does, starting from the two
/// VMCS directory values. `*out_result` tells the host PASID, or the fault that would
/// make the VM exit (exit reason `PASID_EXIT_REASON_ENQCMD` / `_ENQCMDS`). A fault is
/// not an error of the call: the call returns OK. Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_walk(
    low_directory: u64,
    high_directory: u64,
    gpasid: u32,
    pages: *const pasid_page_ref,
    n_pages: usize,
    out_result: *mut pasid_walk_result,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        let pages = input_slice(pages, n_pages, "pages")?;
        reply(Out(out_result, "out_result"), || {
            let mut readable: Vec<(u64, &[u8])> = Vec::with_capacity(pages.len());
            for p in pages {
                // Each page is NULL or `len` readable bytes (the pointer rule).
                readable.push((p.phys, input_slice(p.bytes, p.len, "pages[].bytes")?));
            }
            let result = hwtable::walk(low_directory, high_directory, gpasid, |phys| {
                readable
                    .iter()
                    .find(|(at, _)| *at == phys)
                    .map(|(_, bytes)| *bytes)
            });
            Ok(walk_result_to_c(result))
        })
    })
}

/// The outcome of a walk as C reads it.
fn walk_result_to_c(result: Result<u32, Fault>) -> pasid_walk_result {
    let zero = pasid_walk_result {
        fault: pasid_fault::None as u32,
        hpasid: 0,
        directory: 0,
        index: 0,
        entry: 0,
        phys: 0,
    };
    match result {
        Ok(hpasid) => pasid_walk_result { hpasid, ..zero },
        Err(Fault::DirectoryNotPresent { directory, index }) => pasid_walk_result {
            fault: pasid_fault::DirectoryNotPresent as u32,
            directory: directory.to_c(),
            index: index.into(),
            ..zero
        },
        Err(Fault::DirectoryReserved {
            directory,
            index,
            entry,
        }) => pasid_walk_result {
            fault: pasid_fault::DirectoryReserved as u32,
            directory: directory.to_c(),
            index: index.into(),
            entry: entry.0,
            ..zero
        },
        Err(Fault::EntryInvalid { table_phys, index }) => pasid_walk_result {
            fault: pasid_fault::EntryInvalid as u32,
            index: index.into(),
            phys: table_phys,
            ..zero
        },
        Err(Fault::EntryReserved {
            table_phys,
            index,
            entry,
        }) => pasid_walk_result {
            fault: pasid_fault::EntryReserved as u32,
            index: index.into(),
            entry: entry.0.into(),
            phys: table_phys,
            ..zero
        },
        Err(Fault::Unreadable { phys }) => pasid_walk_result {
            fault: pasid_fault::Unreadable as u32,
            phys,
            ..zero
        },
    }
}
