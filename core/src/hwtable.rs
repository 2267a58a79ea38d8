//! The CPU's PASID-translation structures for ENQCMD/ENQCMDS in VMX non-root operation,
//! in the exact in-memory format the processor walks.
//!
//! # Layout
//!
//! Source: Intel SDM Vol. 3C, "PASID Translation" (the VM-execution control and the
//! ENQCMD/ENQCMDS changes to instruction behavior in VMX non-root operation), as it is
//! also implemented by the out-of-tree KVM series "KVM: VMX: ENQCMD PASID translation".
//! See [the verification notes](#what-was-verified) for what was checked where.
//!
//! * **Enable:** bit 21 of the secondary processor-based VM-execution controls
//!   ([`SECONDARY_EXEC_PASID_TRANSLATION`]).
//! * **Roots:** two VMCS 64-bit control fields hold the physical addresses of the two
//!   PASID directories: [`VMCS_LOW_PASID_DIRECTORY`] (0x2038) and
//!   [`VMCS_HIGH_PASID_DIRECTORY`] (0x203A). Each directory is one 4 KiB page.
//! * **Walk** of a 20-bit guest PASID (from IA32_PASID\[19:0\] for ENQCMD, from the
//!   source operand for ENQCMDS):
//!   - bit 19 picks the directory: 0 the low one, 1 the high one ([`Directory`]);
//!   - bits 18:10 index the directory's 512 8-byte entries ([`DirectoryEntry`]):
//!     bit 0 present, bits 63:12 the physical address of a PASID-translation table,
//!     bits 11:1 reserved (must be 0);
//!   - bits 9:0 index the table's 1024 4-byte entries ([`TableEntry`]): bit 31 valid,
//!     bits 19:0 the host PASID, bits 30:20 reserved (must be 0).
//! * **Failure:** a clear present or valid bit, or a set reserved bit, makes the
//!   instruction cause a VM exit instead of translating: basic exit reason 72
//!   ([`EXIT_REASON_ENQCMD_PASID_TRANSLATION`]) for ENQCMD and 73
//!   ([`EXIT_REASON_ENQCMDS_PASID_TRANSLATION`]) for ENQCMDS.
//!
//! Entries are little-endian, as everything x86 reads from memory. All multi-byte
//! entries are naturally aligned in their page.
//!
//! # Using it
//!
//! The guest's map lives in a sparse table (`core/src/remap.rs`), in chunks from
//! which each table's [`TableEntry`] values are read out when a page is written. A VMM:
//!
//! 1. lists the tables the guest uses ([`Host::translation_tables`]) and gives one
//!    4 KiB page per table plus one per directory, each with the physical address it
//!    will hand to the CPU, to [`Host::export_translation`];
//! 2. writes the two directory addresses into the VMCS fields above and sets the control;
//! 3. after each update, changes only what changed, one entry at a time: the guest's
//!    change stream ([`crate::changes`]) gives each `(gPASID, host PASID or invalid)` in
//!    order and [`plan_update`] turns each into at most three single stores
//!    ([`EntryUpdate`]) in the safe order (below). Rewriting a whole page
//!    ([`Host::write_translation_table`], [`Host::write_touched_pages`]) is only safe for
//!    a page no vCPU can reach yet (not linked from a directory, or the VM not running).
//!
//! # Updating pages a vCPU walks
//!
//! While the guest runs, a vCPU may walk the pages at any moment (every ENQCMD). The
//! rules a VMM follows, which [`plan_update`] encodes and the C layer's
//! `pasid_apply_translation_update` performs:
//!
//! * **What may change while a vCPU runs:** one 4-byte table entry per store, and a
//!   directory entry going from not present to present (8 bytes, one store). Nothing
//!   else: a linked table page is never unlinked, moved or rewritten as a whole (the
//!   library never removes a table once made, so neither need the VMM).
//! * **Single stores.** Each entry is written with one naturally aligned store of its
//!   size (32 bits for a table entry, 64 for a directory entry), so the CPU reads
//!   either the old or the new entry, never a mix. In C: `__atomic_store_n(p, v,
//!   __ATOMIC_RELEASE)` or a `volatile uint32_t`/`uint64_t` store on an aligned
//!   pointer; the release order keeps the stores of one update in program order on
//!   x86 (TSO) and for the compiler. This crate has no `unsafe`: [`Store::write`]
//!   writes the entry's little-endian bytes into its aligned 4- or 8-byte window of a
//!   `&mut [u8]` page, which is the model, not a promise of one store; a page shared
//!   with a running vCPU must be written through the C layer or the VMM's own atomic
//!   store.
//! * **Order: invalidate first, re-point after.** A walker must never find a valid
//!   entry naming a host PASID the guest does not hold. So a change to a valid entry
//!   that names another host PASID is two stores, invalid then the new entry; a new
//!   table is filled (its page all invalid, then the entry) before the directory entry
//!   that links it is stored; an unmap is one store of the invalid entry.
//! * **Flush before teardown.** After storing an invalid entry the VMM makes sure no
//!   vCPU still uses the old translation before it confirms the teardown
//!   ([`Host::complete_teardown`]): it kicks every vCPU of the guest out of non-root
//!   operation once (a VM exit and re-entry), then invalidates the IOMMU's caches for
//!   the PASID and drains the work queue. Whether the processor caches PASID
//!   translations at all is not public (see [what was verified](#what-was-verified)),
//!   so the kick is the conservative rule. Valid entries being added need no flush: a
//!   cached "invalid" only costs one more VM exit, which the VMM handles by retrying.
//!
//! [`walk`] is a software model of the CPU's walk over such pages, for tests and for
//! VMMs that emulate ENQCMD themselves.
//!
//! ```
//! use pasid_core::hwtable::{walk, Fault, PageBuf, TablePage, PAGE_SIZE};
//! use pasid_core::{GuestConfig, Host, PasidKind, PasidLayout, Platform};
//!
//! let mut host = Host::new(PasidLayout::new(20, 1..4096, 4096..1 << 19)?, Platform::P2)?;
//! let g = host.create_guest(GuestConfig::p2(8))?;
//! let gpasid = host.alloc(g, PasidKind::Shared)?;
//! assert_eq!(host.translation_tables(g)?.collect::<Vec<_>>(), [0]);
//!
//! // Three pages the VMM will hand to the CPU, at these physical addresses.
//! let (mut low, mut high, mut table) = ([0u8; PAGE_SIZE], [0u8; PAGE_SIZE], [0u8; PAGE_SIZE]);
//! host.export_translation(
//!     g,
//!     PageBuf { phys: 0x10_0000, bytes: &mut low },
//!     PageBuf { phys: 0x10_1000, bytes: &mut high },
//!     &mut [TablePage { table: 0, page: PageBuf { phys: 0x10_2000, bytes: &mut table } }],
//! )?;
//! // VMCS 0x2038 = 0x10_0000, 0x203A = 0x10_1000. What the CPU would do:
//! let read = |phys| match phys {
//!     0x10_0000 => Some(&low[..]),
//!     0x10_1000 => Some(&high[..]),
//!     0x10_2000 => Some(&table[..]),
//!     _ => None,
//! };
//! assert_eq!(walk(0x10_0000, 0x10_1000, gpasid, read), Ok(host.translate(g, gpasid)?));
//! assert!(matches!(walk(0x10_0000, 0x10_1000, gpasid + 1, read), Err(Fault::EntryInvalid { .. })));
//! # Ok::<(), pasid_core::Error>(())
//! ```
//!
//! # What was verified
//!
//! Checked against public sources (searched when this module was written):
//!
//! * The VMCS encodings: SDM Vol. 3D, Appendix B, Table B-4 "Encodings for 64-Bit
//!   Control Fields" lists "Low PASID directory address (full)" 0000_2038H and "High
//!   PASID directory address (full)" 0000_203AH, with the footnote that they exist only
//!   on processors supporting the 1-setting of the "PASID translation" VM-execution
//!   control. Intel's own TDX module source agrees (`VMX_PASID_LOW_FULL_ENCODE 0x2038`,
//!   `VMX_PASID_HIGH_FULL_ENCODE 0x203A`, intel/tdx-module, `vmcs_defs.h`).
//! * The control: several VMX definition headers name secondary processor-based
//!   control bit 21 "PASID translation" (`SECONDARY_EXEC_PASID_TRANSLATION (1 << 21)`,
//!   between "enable XSAVES/XRSTORS", bit 20, and "mode-based execute control for
//!   EPT", bit 22).
//! * The exit reasons: intel/tdx-module's basic exit reasons list
//!   `ENQCMD_PASID_TRANSLATION_FAILURE = 72` and `ENQCMDS_PASID_TRANSLATION_FAILURE = 73`.
//!
//! **Not verified** (no public text of the SDM's walk description nor of the
//! out-of-tree KVM "ENQCMD PASID translation" series was found): the split of the gPASID
//! (bit 19 / bits 18:10 / bits 9:0), the entry formats (directory: bit 0 present,
//! 63:12 address; table: bit 31 valid, 19:0 host PASID) and which bits are reserved.
//! They follow the project's design brief, which takes them from the SDM; the reserved
//! ranges used here are simply "every bit that is not a defined field". Everything that
//! depends on them is in this module, so a correction is local.

use alloc::vec::Vec;
use core::mem::MaybeUninit;

use crate::changes::TranslationChange;
use crate::error::{Error, Result};
use crate::remap::{PagesTouched, TableView};
use crate::types::GuestId;
use crate::Host;

/// Entries in one PASID-translation table (gPASID bits 9:0).
pub const ENTRIES_PER_TABLE: usize = 1024;

/// Entries in one PASID directory (gPASID bits 18:10).
pub const ENTRIES_PER_DIRECTORY: usize = 512;

/// PASID-translation tables a guest can have in all (gPASID bits 19:10).
pub const TABLE_COUNT: u32 = 1024;

/// Size of every page of these structures.
pub const PAGE_SIZE: usize = 4096;

/// Secondary processor-based VM-execution control bit 21: "PASID translation".
pub const SECONDARY_EXEC_PASID_TRANSLATION: u32 = 1 << 21;

/// VMCS encoding of the 64-bit control field "low PASID directory address".
pub const VMCS_LOW_PASID_DIRECTORY: u32 = 0x2038;

/// VMCS encoding of the 64-bit control field "high PASID directory address".
pub const VMCS_HIGH_PASID_DIRECTORY: u32 = 0x203A;

/// Basic VM-exit reason for an ENQCMD whose PASID translation failed.
pub const EXIT_REASON_ENQCMD_PASID_TRANSLATION: u16 = 72;

/// Basic VM-exit reason for an ENQCMDS whose PASID translation failed.
pub const EXIT_REASON_ENQCMDS_PASID_TRANSLATION: u16 = 73;

const VALID: u32 = 1 << 31;
const HOST_PASID_MASK: u32 = (1 << 20) - 1;
const TABLE_ENTRY_RESERVED: u32 = !(VALID | HOST_PASID_MASK);

const PRESENT: u64 = 1;
const ADDRESS_MASK: u64 = !0xfff;
const DIRECTORY_ENTRY_RESERVED: u64 = 0xffe;
const PAGE_MASK: u64 = PAGE_SIZE as u64 - 1;

/// One 4-byte PASID-translation-table entry: bit 31 valid, bits 19:0 the host PASID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(transparent)]
pub struct TableEntry(pub u32);

impl TableEntry {
    /// The entry of an unmapped gPASID.
    pub const INVALID: TableEntry = TableEntry(0);

    /// A valid entry for `host_pasid` (only its low 20 bits are kept).
    #[inline]
    pub const fn valid(host_pasid: u32) -> Self {
        TableEntry(VALID | (host_pasid & HOST_PASID_MASK))
    }

    /// Whether the valid bit is set.
    #[inline]
    pub const fn is_valid(self) -> bool {
        self.0 & VALID != 0
    }

    /// The host PASID of a valid entry.
    #[inline]
    pub const fn host_pasid(self) -> Option<u32> {
        if self.is_valid() {
            Some(self.0 & HOST_PASID_MASK)
        } else {
            None
        }
    }

    /// Whether any reserved bit (30:20) is set, which the CPU treats as a fault.
    #[inline]
    pub const fn has_reserved_bits(self) -> bool {
        self.0 & TABLE_ENTRY_RESERVED != 0
    }
}

/// One 8-byte PASID-directory entry: bit 0 present, bits 63:12 the physical address of
/// a PASID-translation table, bits 11:1 reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(transparent)]
pub struct DirectoryEntry(pub u64);

impl DirectoryEntry {
    /// The entry of a directory slot with no table.
    pub const NOT_PRESENT: DirectoryEntry = DirectoryEntry(0);

    /// A present entry pointing at the table page at `table_phys`, which must be
    /// 4 KiB aligned.
    pub const fn present(table_phys: u64) -> Result<Self> {
        if table_phys & PAGE_MASK != 0 {
            return Err(Error::UnalignedPage { phys: table_phys });
        }
        Ok(DirectoryEntry(table_phys | PRESENT))
    }

    /// Whether the present bit is set.
    #[inline]
    pub const fn is_present(self) -> bool {
        self.0 & PRESENT != 0
    }

    /// The table's physical address, if the entry is present.
    #[inline]
    pub const fn table_address(self) -> Option<u64> {
        if self.is_present() {
            Some(self.0 & ADDRESS_MASK)
        } else {
            None
        }
    }

    /// Whether any reserved bit (11:1) is set, which the CPU treats as a fault. Bits
    /// of the address above the CPU's MAXPHYADDR are reserved too; this type does not
    /// know MAXPHYADDR, so the caller keeps its addresses below it.
    #[inline]
    pub const fn has_reserved_bits(self) -> bool {
        self.0 & DIRECTORY_ENTRY_RESERVED != 0
    }
}

/// Which of the two PASID directories a gPASID or table belongs to (gPASID bit 19).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Directory {
    /// gPASIDs 0..2^19: the directory at [`VMCS_LOW_PASID_DIRECTORY`].
    Low,
    /// gPASIDs 2^19..2^20: the directory at [`VMCS_HIGH_PASID_DIRECTORY`].
    High,
}

impl Directory {
    /// The directory that holds table `table` (gPASID >> 10, only its low 10 bits used).
    #[inline]
    pub const fn of_table(table: u32) -> Self {
        if table & 0x200 == 0 {
            Directory::Low
        } else {
            Directory::High
        }
    }

    /// The directory the CPU uses for `gpasid` (only its low 20 bits used).
    #[inline]
    pub const fn of_pasid(gpasid: u32) -> Self {
        Directory::of_table(gpasid >> 10)
    }
}

/// Where the directory entry of table `table` lives: which directory, and the byte
/// offset of its 8-byte entry in that directory's page.
#[inline]
pub const fn directory_slot(table: u32) -> (Directory, usize) {
    (Directory::of_table(table), (table as usize & 0x1ff) * 8)
}

/// A byte of a page the library only writes (whole pages: [`Host::export_translation`],
/// [`Host::write_translation_table`], the table page of [`Host::write_touched_pages`]).
///
/// `u8` is a page of initialised bytes, the usual Rust buffer. [`MaybeUninit<u8>`] is
/// memory that may be uninitialised, such as a fresh page a C caller hands over: such a
/// page is never read, and every byte of it is written on success. This crate has no
/// `unsafe`, and needs none for either. Sealed: these two types only.
pub trait PageByte: Copy + sealed::Sealed {
    /// The byte `b` as a byte of this page.
    fn from_byte(b: u8) -> Self;
}

impl PageByte for u8 {
    #[inline]
    fn from_byte(b: u8) -> Self {
        b
    }
}

impl PageByte for MaybeUninit<u8> {
    #[inline]
    fn from_byte(b: u8) -> Self {
        MaybeUninit::new(b)
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for u8 {}
    impl Sealed for core::mem::MaybeUninit<u8> {}
}

/// A caller-provided page: the physical address the CPU will see it at, and its bytes
/// (which must be exactly [`PAGE_SIZE`] long). The page is only written, so its bytes
/// may be `u8` or, for memory that may be uninitialised, `MaybeUninit<u8>` (see
/// [`PageByte`]); `PageBuf<'a>` is a page of `u8`.
#[derive(Debug)]
pub struct PageBuf<'a, B = u8> {
    /// Physical address of the page, 4 KiB aligned.
    pub phys: u64,
    /// The page's contents, written by the export.
    pub bytes: &'a mut [B],
}

/// A caller-provided page for one PASID-translation table.
#[derive(Debug)]
pub struct TablePage<'a, B = u8> {
    /// The table number: gPASID >> 10, in 0..[`TABLE_COUNT`].
    pub table: u32,
    /// Its page.
    pub page: PageBuf<'a, B>,
}

fn check_page(phys: u64, len: usize) -> Result<()> {
    if len != PAGE_SIZE {
        return Err(Error::PageSize { len });
    }
    if phys & PAGE_MASK != 0 {
        return Err(Error::UnalignedPage { phys });
    }
    Ok(())
}

fn check_table(table: u32) -> Result<()> {
    if table >= TABLE_COUNT {
        return Err(Error::BadTablePage { table });
    }
    Ok(())
}

/// Writes `bytes` at `offset` of a page (in bounds: callers' offsets are entry slots).
#[inline]
fn put<B: PageByte, const N: usize>(page: &mut [B], offset: usize, bytes: [u8; N]) {
    page[offset..offset + N].copy_from_slice(&bytes.map(B::from_byte));
}

/// Writes every byte of a table page (`PAGE_SIZE` long): the table's entries, or all
/// invalid for a table the guest does not use.
fn fill_table<B: PageByte>(block: Option<TableView<'_>>, bytes: &mut [B]) {
    match block {
        Some(block) => {
            for (chunk, entry) in bytes.chunks_exact_mut(4).zip(block.entries()) {
                chunk.copy_from_slice(&entry.0.to_le_bytes().map(B::from_byte));
            }
        }
        None => bytes.fill(B::from_byte(0)),
    }
}

/// A directory entry checked and ready to store: where it goes and what it is.
struct DirectorySlot {
    directory: Directory,
    offset: usize,
    entry: DirectoryEntry,
}

impl DirectorySlot {
    /// Checks a directory page's length, the table number and the table page's
    /// alignment, in that order.
    fn new(directory_page: &[u8], table: u32, table_phys: u64) -> Result<Self> {
        if directory_page.len() != PAGE_SIZE {
            return Err(Error::PageSize {
                len: directory_page.len(),
            });
        }
        check_table(table)?;
        let entry = DirectoryEntry::present(table_phys)?;
        let (directory, offset) = directory_slot(table);
        Ok(DirectorySlot {
            directory,
            offset,
            entry,
        })
    }

    /// Stores the entry: only its 8 bytes of the page change.
    fn write(&self, directory_page: &mut [u8]) -> Directory {
        put(directory_page, self.offset, self.entry.0.to_le_bytes());
        self.directory
    }
}

/// Writes the directory entry for table `table` (pointing at `table_phys`) into a
/// directory page, and returns which directory that page must be. Only the 8 bytes of
/// that entry change; the page is changed in place, so it is a page of initialised
/// bytes (the rest of it is the directory). Everything is checked before the write.
pub fn write_directory_entry(
    directory_page: &mut [u8],
    table: u32,
    table_phys: u64,
) -> Result<Directory> {
    Ok(DirectorySlot::new(directory_page, table, table_phys)?.write(directory_page))
}

/// Why the CPU would not translate a gPASID: each of these (but
/// [`Fault::Unreadable`]) is the VM exit of the instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The directory entry's present bit is clear.
    DirectoryNotPresent {
        /// The directory.
        directory: Directory,
        /// The entry's index (gPASID bits 18:10).
        index: u16,
    },
    /// The directory entry has a reserved bit set.
    DirectoryReserved {
        /// The directory.
        directory: Directory,
        /// The entry's index (gPASID bits 18:10).
        index: u16,
        /// The raw entry.
        entry: DirectoryEntry,
    },
    /// The table entry's valid bit is clear.
    EntryInvalid {
        /// The table's physical address.
        table_phys: u64,
        /// The entry's index (gPASID bits 9:0).
        index: u16,
    },
    /// The table entry has a reserved bit set.
    EntryReserved {
        /// The table's physical address.
        table_phys: u64,
        /// The entry's index (gPASID bits 9:0).
        index: u16,
        /// The raw entry.
        entry: TableEntry,
    },
    /// The page reader had no page at this address (not a CPU fault: the CPU would read
    /// whatever memory is there; a model walk cannot).
    Unreadable {
        /// The address asked for.
        phys: u64,
    },
}

/// Which instruction is being translated, for [`Fault::exit_reason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instruction {
    /// ENQCMD: the PASID comes from IA32_PASID.
    Enqcmd,
    /// ENQCMDS: the PASID comes from the source operand.
    Enqcmds,
}

impl Fault {
    /// The basic VM-exit reason this fault gives for `instruction`, or `None` for
    /// [`Fault::Unreadable`].
    pub const fn exit_reason(self, instruction: Instruction) -> Option<u16> {
        match (self, instruction) {
            (Fault::Unreadable { .. }, _) => None,
            (_, Instruction::Enqcmd) => Some(EXIT_REASON_ENQCMD_PASID_TRANSLATION),
            (_, Instruction::Enqcmds) => Some(EXIT_REASON_ENQCMDS_PASID_TRANSLATION),
        }
    }
}

/// Walks the CPU's PASID translation for `gpasid` over pages given by `read_page`,
/// exactly as the processor does: returns the host PASID, or the fault that would make
/// the VM exit.
///
/// `low_directory` and `high_directory` are the values of the two VMCS fields;
/// `read_page` returns the 4 KiB page at a 4 KiB-aligned physical address (`None` if
/// it has none, or a slice that is not [`PAGE_SIZE`] long, gives [`Fault::Unreadable`]).
/// Only bits 19:0 of `gpasid` are used, as the CPU takes only those.
pub fn walk<'a, R>(
    low_directory: u64,
    high_directory: u64,
    gpasid: u32,
    mut read_page: R,
) -> core::result::Result<u32, Fault>
where
    R: FnMut(u64) -> Option<&'a [u8]>,
{
    let gpasid = gpasid & HOST_PASID_MASK;
    let directory = Directory::of_pasid(gpasid);
    let dir_phys = match directory {
        Directory::Low => low_directory,
        Directory::High => high_directory,
    } & ADDRESS_MASK;
    let dir_index = ((gpasid >> 10) & 0x1ff) as u16;
    let dir_page = read(&mut read_page, dir_phys)?;
    let offset = dir_index as usize * 8;
    let dir_entry = DirectoryEntry(u64::from_le_bytes(le_bytes(dir_page, offset)));
    if !dir_entry.is_present() {
        return Err(Fault::DirectoryNotPresent {
            directory,
            index: dir_index,
        });
    }
    if dir_entry.has_reserved_bits() {
        return Err(Fault::DirectoryReserved {
            directory,
            index: dir_index,
            entry: dir_entry,
        });
    }
    let table_phys = dir_entry.0 & ADDRESS_MASK;
    let index = (gpasid & 0x3ff) as u16;
    let table_page = read(&mut read_page, table_phys)?;
    let entry = TableEntry(u32::from_le_bytes(le_bytes(table_page, index as usize * 4)));
    if !entry.is_valid() {
        return Err(Fault::EntryInvalid { table_phys, index });
    }
    if entry.has_reserved_bits() {
        return Err(Fault::EntryReserved {
            table_phys,
            index,
            entry,
        });
    }
    Ok(entry.0 & HOST_PASID_MASK)
}

fn read<'a, R>(read_page: &mut R, phys: u64) -> core::result::Result<&'a [u8], Fault>
where
    R: FnMut(u64) -> Option<&'a [u8]>,
{
    match read_page(phys) {
        Some(page) if page.len() == PAGE_SIZE => Ok(page),
        _ => Err(Fault::Unreadable { phys }),
    }
}

fn le_bytes<const N: usize>(page: &[u8], offset: usize) -> [u8; N] {
    let mut out = [0u8; N];
    // `page` is PAGE_SIZE long and `offset + N` stays within it (checked by callers'
    // index ranges); fall back to zeros rather than panic.
    if let Some(src) = page.get(offset..offset + N) {
        out.copy_from_slice(src);
    }
    out
}

/// One store of a single-entry update: the entry and where it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// A 4-byte entry of table `table`'s page, at byte `offset` (a multiple of 4).
    Table {
        /// The table number (gPASID >> 10).
        table: u32,
        /// Byte offset in the table page.
        offset: usize,
        /// The entry to store.
        entry: TableEntry,
    },
    /// An 8-byte entry of a directory page, at byte `offset` (a multiple of 8).
    Directory {
        /// Which directory page.
        directory: Directory,
        /// Byte offset in the directory page.
        offset: usize,
        /// The entry to store.
        entry: DirectoryEntry,
    },
}

impl Store {
    /// Writes this store's entry into `page` (the page it names), through its aligned
    /// window only: 4 or 8 bytes change. `page` must be [`PAGE_SIZE`] long and start 8-
    /// byte aligned in memory (so each entry's window is naturally aligned, as the single
    /// store of the C layer needs). See [the rules](self#updating-pages-a-vcpu-walks):
    /// this is the model of one store, not an atomic one.
    pub fn write(&self, page: &mut [u8]) -> Result<()> {
        check_window_page(page)?;
        match *self {
            Store::Table { offset, entry, .. } => {
                page[offset..offset + 4].copy_from_slice(&entry.0.to_le_bytes())
            }
            Store::Directory { offset, entry, .. } => {
                page[offset..offset + 8].copy_from_slice(&entry.0.to_le_bytes())
            }
        }
        Ok(())
    }
}

/// A page a store goes to must be a whole page whose entries are naturally aligned in
/// memory. (Reading a slice's address is safe; only the C layer dereferences one.)
fn check_window_page(page: &[u8]) -> Result<()> {
    if page.len() != PAGE_SIZE {
        return Err(Error::PageSize { len: page.len() });
    }
    let addr = page.as_ptr() as usize;
    if addr % 8 != 0 {
        return Err(Error::UnalignedPage { phys: addr as u64 });
    }
    Ok(())
}

/// The stores of one translation change, in the order to make them (at most three:
/// invalidate, the new entry, the directory entry that links a new table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryUpdate {
    stores: [Option<Store>; 3],
    table: u32,
}

impl EntryUpdate {
    /// The stores, in order.
    pub fn stores(&self) -> impl Iterator<Item = Store> + '_ {
        self.stores.iter().flatten().copied()
    }

    /// The table the change is in (gPASID >> 10): the page the table stores go to.
    pub fn table(&self) -> u32 {
        self.table
    }

    /// Whether a directory entry is stored (the table is linked by this update).
    pub fn links_table(&self) -> bool {
        self.stores().any(|s| matches!(s, Store::Directory { .. }))
    }

    /// Makes the stores in order on pages a VMM keeps: `table_page` is the page of
    /// [`EntryUpdate::table`], `directory_page` the page of
    /// [`Directory::of_table`]`(table)` (needed only when the update links the table).
    /// Everything is checked before the first store. See [`Store::write`].
    pub fn apply(&self, table_page: &mut [u8], directory_page: Option<&mut [u8]>) -> Result<()> {
        check_window_page(table_page)?;
        let directory_page = match directory_page {
            Some(d) if self.links_table() => {
                check_window_page(d)?;
                Some(d)
            }
            None if self.links_table() => {
                return Err(Error::MissingTablePage { table: self.table })
            }
            _ => None,
        };
        let mut directory_page = directory_page;
        for store in self.stores() {
            match store {
                Store::Table { .. } => store.write(table_page)?,
                Store::Directory { .. } => {
                    if let Some(d) = directory_page.as_deref_mut() {
                        store.write(d)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Plans the stores that apply one [`TranslationChange`] to pages a vCPU may be
/// walking, in the order that never shows a valid entry naming a host PASID the guest
/// does not hold (see [the rules](self#updating-pages-a-vcpu-walks)):
///
/// * `previous` is the entry there now, as the VMM last stored it
///   ([`TableEntry::INVALID`] when the table is new or the entry was never set). A
///   valid entry naming another host PASID is invalidated first;
/// * `link`: `Some(table_phys)` when the change's table is not linked yet: the page at
///   `table_phys` must be all invalid (zeroed, or [`Host::write_translation_table`]),
///   the entry goes in first and the directory entry after it. `None` when linked.
///
/// Nothing is read from any page, so the pages may be memory the library may not read
/// (the C layer's pages may be uninitialised until linked).
pub fn plan_update(
    change: TranslationChange,
    previous: TableEntry,
    link: Option<u64>,
) -> Result<EntryUpdate> {
    if change.gpasid > HOST_PASID_MASK {
        return Err(Error::PasidOutOfRange {
            pasid: change.gpasid,
        });
    }
    if let Some(h) = change.hpasid.filter(|&h| h > HOST_PASID_MASK) {
        return Err(Error::PasidOutOfRange { pasid: h });
    }
    let table = change.gpasid >> 10;
    let offset = (change.gpasid & 0x3ff) as usize * 4;
    let directory = match link {
        Some(phys) => {
            let (directory, dir_offset) = directory_slot(table);
            Some(Store::Directory {
                directory,
                offset: dir_offset,
                entry: DirectoryEntry::present(phys)?,
            })
        }
        None => None,
    };
    let store = |entry| {
        Some(Store::Table {
            table,
            offset,
            entry,
        })
    };
    let new = match change.hpasid {
        Some(h) => TableEntry::valid(h),
        None => TableEntry::INVALID,
    };
    // A linked-now table is unreachable until its directory entry: no invalidation.
    let repoint = link.is_none() && previous.is_valid() && new.is_valid() && previous != new;
    let stores = if repoint {
        [store(TableEntry::INVALID), store(new), directory]
    } else {
        [store(new), directory, None]
    };
    Ok(EntryUpdate { stores, table })
}

/// A set of table numbers (0..1024), on the stack.
struct TableSet([u64; (TABLE_COUNT / 64) as usize]);

impl TableSet {
    fn new() -> Self {
        TableSet([0; (TABLE_COUNT / 64) as usize])
    }
    /// Inserts; false if already there or out of range.
    fn insert(&mut self, table: u32) -> bool {
        let Some(word) = self.0.get_mut((table / 64) as usize) else {
            return false;
        };
        let bit = 1 << (table % 64);
        let new = *word & bit == 0;
        *word |= bit;
        new
    }
    fn contains(&self, table: u32) -> bool {
        self.0
            .get((table / 64) as usize)
            .is_some_and(|w| w & (1 << (table % 64)) != 0)
    }
}

impl<S: crate::source::HostPasidSource> Host<S> {
    /// The PASID-translation tables a guest uses, as table numbers (gPASID >> 10), in
    /// increasing order: the tables [`Host::export_translation`] needs pages for.
    pub fn translation_tables(&self, guest: GuestId) -> Result<impl Iterator<Item = u32> + '_> {
        Ok(self.guest(guest)?.remap.tables().map(|(table, _)| table))
    }

    /// Writes a guest's whole PASID translation, in the CPU's format, into
    /// caller-provided pages: the low and high directory pages and one page per table.
    ///
    /// `tables` must hold a page for every table of [`Host::translation_tables`]; it may
    /// hold pages for other tables too (0..[`TABLE_COUNT`]), which are written all
    /// invalid and linked from the directory, so later allocations there need no
    /// directory change. Directory slots without a page are written not present.
    ///
    /// Every page must be [`PAGE_SIZE`] bytes at a 4 KiB-aligned address, and no two
    /// pages may share an address. Everything is checked before anything is written:
    /// on error no page has changed. The pages are only written, every byte of them, so
    /// they may be `MaybeUninit<u8>` memory ([`PageByte`]).
    pub fn export_translation<B: PageByte>(
        &self,
        guest: GuestId,
        low: PageBuf<'_, B>,
        high: PageBuf<'_, B>,
        tables: &mut [TablePage<'_, B>],
    ) -> Result<()> {
        let g = self.guest(guest)?;
        check_page(low.phys, low.bytes.len())?;
        check_page(high.phys, high.bytes.len())?;
        let mut supplied = TableSet::new();
        for t in tables.iter() {
            check_table(t.table)?;
            if !supplied.insert(t.table) {
                return Err(Error::BadTablePage { table: t.table });
            }
            check_page(t.page.phys, t.page.bytes.len())?;
        }
        if let Some((table, _)) = g.remap.tables().find(|(t, _)| !supplied.contains(*t)) {
            return Err(Error::MissingTablePage { table });
        }
        let mut addresses = Vec::new();
        addresses.try_reserve_exact(tables.len() + 2)?;
        addresses.push(low.phys);
        addresses.push(high.phys);
        addresses.extend(tables.iter().map(|t| t.page.phys));
        addresses.sort_unstable();
        if let Some(w) = addresses.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::DuplicatePage { phys: w[0] });
        }

        // All checked: write.
        low.bytes.fill(B::from_byte(0));
        high.bytes.fill(B::from_byte(0));
        for t in tables.iter_mut() {
            fill_table(g.remap.table(t.table), t.page.bytes);
            let (directory, offset) = directory_slot(t.table);
            let dir = match directory {
                Directory::Low => &mut *low.bytes,
                Directory::High => &mut *high.bytes,
            };
            put(dir, offset, (t.page.phys | PRESENT).to_le_bytes());
        }
        Ok(())
    }

    /// Writes one PASID-translation table of a guest (table number = gPASID >> 10) into
    /// a [`PAGE_SIZE`]-byte page: the page [`PagesTouched::table`] names after an update.
    /// A table the guest does not use is written all invalid. Checked (the guest, the
    /// table number, the page's length, in that order) before written: on error the
    /// page is unchanged. The page is only written, every byte of it, so it may be
    /// `MaybeUninit<u8>` memory ([`PageByte`]).
    pub fn write_translation_table<B: PageByte>(
        &self,
        guest: GuestId,
        table: u32,
        page: &mut [B],
    ) -> Result<()> {
        let g = self.guest(guest)?;
        check_table(table)?;
        if page.len() != PAGE_SIZE {
            return Err(Error::PageSize { len: page.len() });
        }
        fill_table(g.remap.table(table), page);
        Ok(())
    }

    /// Applies one update's [`PagesTouched`] to pages a VMM keeps: rewrites the table's
    /// page and, if the directory changed, the table's entry in `directory` (which must
    /// be the page of [`Directory::of_table`]`(touched.table)`). Pass `None` for
    /// `directory` when every table was linked up front (see
    /// [`Host::export_translation`]).
    ///
    /// Everything is checked before anything is written (the guest, the table number,
    /// the table page's length and address, then the directory's length): on error no
    /// page has changed. The table's page is written first and linked after. It is only
    /// written, every byte of it, so it may be `MaybeUninit<u8>` memory ([`PageByte`]);
    /// `directory` is changed in place, so it is initialised bytes.
    pub fn write_touched_pages<B: PageByte>(
        &self,
        guest: GuestId,
        touched: PagesTouched,
        table_page: PageBuf<'_, B>,
        directory: Option<&mut [u8]>,
    ) -> Result<()> {
        let g = self.guest(guest)?;
        check_table(touched.table)?;
        check_page(table_page.phys, table_page.bytes.len())?;
        let link = match directory {
            Some(dir) if touched.directory_changed => {
                let slot = DirectorySlot::new(dir, touched.table, table_page.phys)?;
                Some((slot, dir))
            }
            _ => None,
        };

        // All checked: write, the table first and its link after.
        fill_table(g.remap.table(touched.table), table_page.bytes);
        if let Some((slot, dir)) = link {
            slot.write(dir);
        }
        Ok(())
    }
}
