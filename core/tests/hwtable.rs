//! The CPU PASID-translation pages: byte-exact entries, the export's checks, and a
//! property test that the software walk over exported (and incrementally updated)
//! pages agrees with `Host::translate` for every 20-bit gPASID.

use std::collections::BTreeMap;
use std::mem::MaybeUninit;

use pasid_core::hwtable::{
    self, walk, Directory, DirectoryEntry, Fault, Instruction, PageBuf, TableEntry, TablePage,
    PAGE_SIZE,
};
use pasid_core::PagesTouched;
use pasid_core::{Error, GuestConfig, GuestId, Host, PasidKind, PasidLayout, Platform};
use proptest::prelude::*;

/// Where the test's "guest-physical memory" for these pages starts: above 4 GiB, so
/// the address bits above 31 are exercised.
const BASE: u64 = 0x1_2345_6000;

/// A VMM's view of the pages it handed to the CPU: page i lives at BASE + i * 4 KiB.
/// Page 0 is the low directory, page 1 the high one.
struct Mem {
    pages: Vec<Vec<u8>>,
    table_page: BTreeMap<u32, usize>,
}

impl Mem {
    fn phys(i: usize) -> u64 {
        BASE + (i as u64) * PAGE_SIZE as u64
    }

    fn read(&self, phys: u64) -> Option<&[u8]> {
        let off = phys.checked_sub(BASE)?;
        if off % PAGE_SIZE as u64 != 0 {
            return None;
        }
        self.pages
            .get((off / PAGE_SIZE as u64) as usize)
            .map(|p| &p[..])
    }

    fn walk(&self, gpasid: u32) -> Result<u32, Fault> {
        walk(Mem::phys(0), Mem::phys(1), gpasid, |a| self.read(a))
    }

    /// Exports the guest's translation, with pages for its tables plus `extra` tables.
    fn export(host: &Host, g: GuestId, extra: &[u32]) -> Result<Mem, Error> {
        let mut tables: Vec<u32> = host.translation_tables(g)?.collect();
        for t in extra {
            if !tables.contains(t) {
                tables.push(*t);
            }
        }
        let mut pages = vec![vec![0xAAu8; PAGE_SIZE]; tables.len() + 2];
        let (dirs, rest) = pages.split_at_mut(2);
        let (low, high) = dirs.split_at_mut(1);
        let mut table_pages: Vec<TablePage<'_>> = tables
            .iter()
            .zip(rest.iter_mut())
            .enumerate()
            .map(|(i, (&table, bytes))| TablePage {
                table,
                page: PageBuf {
                    phys: Mem::phys(i + 2),
                    bytes,
                },
            })
            .collect();
        host.export_translation(
            g,
            PageBuf {
                phys: Mem::phys(0),
                bytes: &mut low[0],
            },
            PageBuf {
                phys: Mem::phys(1),
                bytes: &mut high[0],
            },
            &mut table_pages,
        )?;
        let table_page = tables
            .iter()
            .enumerate()
            .map(|(i, &t)| (t, i + 2))
            .collect();
        Ok(Mem { pages, table_page })
    }

    /// What a VMM does with an update's report: rewrite the table page, and for a new
    /// table take a fresh page and link it from the directory.
    fn apply(&mut self, host: &Host, g: GuestId, touched: PagesTouched) {
        let index = match self.table_page.get(&touched.table) {
            Some(&i) => i,
            None => {
                self.pages.push(vec![0x55; PAGE_SIZE]);
                let i = self.pages.len() - 1;
                self.table_page.insert(touched.table, i);
                i
            }
        };
        let dir_index = match Directory::of_table(touched.table) {
            Directory::Low => 0,
            Directory::High => 1,
        };
        // Borrow the table page and the directory page at once.
        let (dirs, rest) = self.pages.split_at_mut(2);
        let table_bytes = &mut rest[index - 2][..];
        let dir = &mut dirs[dir_index][..];
        host.write_touched_pages(
            g,
            touched,
            PageBuf {
                phys: Mem::phys(index),
                bytes: table_bytes,
            },
            Some(dir),
        )
        .unwrap();
    }
}

fn layout() -> PasidLayout {
    PasidLayout::new(20, 1..4096, 4096..1 << 19).unwrap()
}

/// A guest range straddling the low/high directory boundary (gPASID bit 19).
fn straddling_layout() -> PasidLayout {
    PasidLayout::new(20, (1 << 19) - 1500..(1 << 19) + 1500, 1..(1 << 19) - 1500).unwrap()
}

fn le32(page: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(page[off..off + 4].try_into().unwrap())
}

fn le64(page: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(page[off..off + 8].try_into().unwrap())
}

#[test]
fn layout_constants_are_the_sdm_values() {
    assert_eq!(hwtable::SECONDARY_EXEC_PASID_TRANSLATION, 0x0020_0000);
    assert_eq!(hwtable::VMCS_LOW_PASID_DIRECTORY, 0x2038);
    assert_eq!(hwtable::VMCS_HIGH_PASID_DIRECTORY, 0x203a);
    assert_eq!(hwtable::EXIT_REASON_ENQCMD_PASID_TRANSLATION, 72);
    assert_eq!(hwtable::EXIT_REASON_ENQCMDS_PASID_TRANSLATION, 73);
    assert_eq!(hwtable::ENTRIES_PER_DIRECTORY * 8, PAGE_SIZE);
    assert_eq!(hwtable::ENTRIES_PER_TABLE * 4, PAGE_SIZE);
}

#[test]
fn entries_have_the_hardware_bit_layout() {
    assert_eq!(TableEntry::valid(0x1000).0, 0x8000_1000);
    assert_eq!(TableEntry::valid(0xfffff).0, 0x800f_ffff);
    // Only 20 bits of host PASID exist.
    assert_eq!(TableEntry::valid(0x12_3456).0, 0x8002_3456);
    assert_eq!(TableEntry(0x8010_0001).host_pasid(), Some(1));
    assert!(TableEntry(0x8010_0001).has_reserved_bits());
    assert!(TableEntry(0x4000_0000).has_reserved_bits());
    assert!(!TableEntry(0x800f_ffff).has_reserved_bits());
    assert_eq!(TableEntry(0x000f_ffff).host_pasid(), None);

    assert_eq!(
        DirectoryEntry::present(0x1_2345_6000).unwrap().0,
        0x1_2345_6001
    );
    assert_eq!(
        DirectoryEntry::present(0x1_2345_6800),
        Err(Error::UnalignedPage {
            phys: 0x1_2345_6800
        })
    );
    assert!(DirectoryEntry(0x1000 | 0x2 | 1).has_reserved_bits());
    assert!(DirectoryEntry(0x1000 | 0x800 | 1).has_reserved_bits());
    assert!(!DirectoryEntry(0xffff_ffff_ffff_f001).has_reserved_bits());
    assert_eq!(DirectoryEntry(0x5000).table_address(), None);
    assert_eq!(DirectoryEntry(0x5001).table_address(), Some(0x5000));

    assert_eq!(Directory::of_pasid(0x7ffff), Directory::Low);
    assert_eq!(Directory::of_pasid(0x80000), Directory::High);
    assert_eq!(hwtable::directory_slot(0), (Directory::Low, 0));
    assert_eq!(hwtable::directory_slot(3), (Directory::Low, 24));
    assert_eq!(hwtable::directory_slot(0x200), (Directory::High, 0));
    assert_eq!(hwtable::directory_slot(0x3ff), (Directory::High, 4088));
}

#[test]
fn export_writes_hand_computed_bytes() {
    let mut host = Host::new(layout(), Platform::P2).unwrap();
    let g = host.create_guest(GuestConfig::p2(8)).unwrap();
    let local = host.alloc(g, PasidKind::Local).unwrap(); // gPASID 1
    let shared = host.alloc(g, PasidKind::Shared).unwrap(); // gPASID 2 -> hPASID 4096
    assert_eq!((local, shared), (1, 2));
    assert_eq!(host.translation_tables(g).unwrap().collect::<Vec<_>>(), [0]);

    let mem = Mem::export(&host, g, &[]).unwrap();
    // Low directory: entry 0 points at page 2 (BASE + 0x2000), present.
    let low = &mem.pages[0];
    assert_eq!(&low[0..8], &[0x01, 0x80, 0x45, 0x23, 0x01, 0, 0, 0]);
    assert_eq!(le64(low, 0), 0x1_2345_8001);
    assert!(low[8..].iter().all(|&b| b == 0));
    // High directory: nothing present.
    assert!(mem.pages[1].iter().all(|&b| b == 0));
    // Table 0: entry 2 valid with host PASID 4096 = 0x1000; 0 and 1 (local) invalid.
    let table = &mem.pages[2];
    assert_eq!(&table[8..12], &[0x00, 0x10, 0x00, 0x80]);
    assert_eq!(le32(table, 0), 0);
    assert_eq!(le32(table, 4), 0);
    assert_eq!(table.iter().filter(|&&b| b != 0).count(), 2);

    assert_eq!(mem.walk(2), Ok(4096));
    assert_eq!(
        mem.walk(1),
        Err(Fault::EntryInvalid {
            table_phys: BASE + 0x2000,
            index: 1
        })
    );
    assert_eq!(
        mem.walk(5000),
        Err(Fault::DirectoryNotPresent {
            directory: Directory::Low,
            index: 4
        })
    );
    assert_eq!(
        mem.walk(0x80002),
        Err(Fault::DirectoryNotPresent {
            directory: Directory::High,
            index: 0
        })
    );
    assert_eq!(
        mem.walk(1).unwrap_err().exit_reason(Instruction::Enqcmd),
        Some(72)
    );
    assert_eq!(
        mem.walk(1).unwrap_err().exit_reason(Instruction::Enqcmds),
        Some(73)
    );
}

#[test]
fn high_directory_entries_are_written_and_walked() {
    let mut host = Host::new(straddling_layout(), Platform::P2).unwrap();
    let g = host.create_guest(GuestConfig::p2(4000)).unwrap();
    let mut last = 0;
    // Guest range starts at 2^19 - 1500: the 1501st shared PASID is gPASID 2^19.
    for _ in 0..1501 {
        last = host.alloc(g, PasidKind::Shared).unwrap();
    }
    assert_eq!(last, 1 << 19);
    let h = host.translate(g, last).unwrap();
    let tables: Vec<u32> = host.translation_tables(g).unwrap().collect();
    assert_eq!(tables, [0x1fe, 0x1ff, 0x200]);
    let mem = Mem::export(&host, g, &[]).unwrap();
    // Table 0x200 is the high directory's entry 0, and is page 4.
    assert_eq!(le64(&mem.pages[1], 0), Mem::phys(4) | 1);
    assert!(mem.pages[1][8..].iter().all(|&b| b == 0));
    assert_eq!(le64(&mem.pages[0], 0x1fe * 8), Mem::phys(2) | 1);
    assert_eq!(le64(&mem.pages[0], 0x1ff * 8), Mem::phys(3) | 1);
    assert_eq!(le32(&mem.pages[4], 0), 0x8000_0000 | h);
    assert_eq!(mem.walk(1 << 19), Ok(h));
}

#[test]
fn walker_reports_reserved_bits_and_unreadable_pages() {
    let mut host = Host::new(layout(), Platform::P2).unwrap();
    let g = host.create_guest(GuestConfig::p2(8)).unwrap();
    host.alloc(g, PasidKind::Shared).unwrap(); // gPASID 1
    let mut mem = Mem::export(&host, g, &[]).unwrap();
    assert_eq!(mem.walk(1), Ok(4096));

    // A reserved bit (bit 20) in the table entry.
    mem.pages[2][4 + 2] |= 0x10;
    assert_eq!(
        mem.walk(1),
        Err(Fault::EntryReserved {
            table_phys: Mem::phys(2),
            index: 1,
            entry: TableEntry(0x8010_1000)
        })
    );
    mem.pages[2][4 + 2] &= !0x10;
    // A reserved bit (bit 1) in the directory entry.
    mem.pages[0][0] |= 0x2;
    assert!(matches!(
        mem.walk(1),
        Err(Fault::DirectoryReserved {
            directory: Directory::Low,
            index: 0,
            ..
        })
    ));
    mem.pages[0][0] &= !0x2;
    assert_eq!(mem.walk(1), Ok(4096));
    // A directory entry pointing nowhere the reader knows.
    mem.pages[0][8..16].copy_from_slice(&0x7000_0001u64.to_le_bytes());
    assert_eq!(mem.walk(1024), Err(Fault::Unreadable { phys: 0x7000_0000 }));
    assert_eq!(
        Fault::Unreadable { phys: 0 }.exit_reason(Instruction::Enqcmd),
        None
    );
    // Bits above 19 of the gPASID are not used.
    assert_eq!(mem.walk(1 | 0xfff0_0000), Ok(4096));
}

fn tp(phys: u64, bytes: &mut [u8]) -> TablePage<'_> {
    TablePage {
        table: 0,
        page: PageBuf { phys, bytes },
    }
}

#[test]
fn export_checks_everything_before_writing() {
    let mut host = Host::new(layout(), Platform::P2).unwrap();
    let g = host.create_guest(GuestConfig::p2(8)).unwrap();
    host.alloc(g, PasidKind::Shared).unwrap();
    let mut low = vec![0xAA; PAGE_SIZE];
    let mut high = vec![0xAA; PAGE_SIZE];
    let mut t0 = vec![0xAA; PAGE_SIZE];
    let mut short = vec![0xAA; PAGE_SIZE - 1];

    let mut run = |low_phys: u64, tables: &mut [TablePage<'_>], low: &mut [u8]| {
        host.export_translation(
            g,
            PageBuf {
                phys: low_phys,
                bytes: low,
            },
            PageBuf {
                phys: 0x2000,
                bytes: &mut high,
            },
            tables,
        )
    };
    // Missing the guest's table 0.
    assert_eq!(
        run(0x1000, &mut [], &mut low),
        Err(Error::MissingTablePage { table: 0 })
    );
    // Unaligned directory.
    assert_eq!(
        run(0x1010, &mut [tp(0x3000, &mut t0)], &mut low),
        Err(Error::UnalignedPage { phys: 0x1010 })
    );
    // Short table page.
    assert_eq!(
        run(0x1000, &mut [tp(0x3000, &mut short)], &mut low),
        Err(Error::PageSize { len: PAGE_SIZE - 1 })
    );
    // Two pages at one address.
    assert_eq!(
        run(0x1000, &mut [tp(0x2000, &mut t0)], &mut low),
        Err(Error::DuplicatePage { phys: 0x2000 })
    );
    // Table number out of range, and a table given twice.
    let mut t1 = vec![0xAA; PAGE_SIZE];
    assert_eq!(
        run(
            0x1000,
            &mut [TablePage {
                table: 1024,
                page: PageBuf {
                    phys: 0x3000,
                    bytes: &mut t0
                }
            }],
            &mut low
        ),
        Err(Error::BadTablePage { table: 1024 })
    );
    assert_eq!(
        run(
            0x1000,
            &mut [tp(0x3000, &mut t0), tp(0x4000, &mut t1)],
            &mut low
        ),
        Err(Error::BadTablePage { table: 0 })
    );
    // Nothing was written by any failed call.
    for page in [&low, &t0, &t1, &short] {
        assert!(page.iter().all(|&b| b == 0xAA));
    }
    // Unknown guest.
    assert!(matches!(
        Host::new(layout(), Platform::P2)
            .unwrap()
            .export_translation(
                GuestId(7),
                PageBuf {
                    phys: 0,
                    bytes: &mut low
                },
                PageBuf {
                    phys: 0x1000,
                    bytes: &mut t0
                },
                &mut []
            ),
        Err(Error::NoSuchGuest { .. })
    ));
}

#[test]
fn pre_provisioned_tables_need_no_directory_change_later() {
    let mut host = Host::new(layout(), Platform::P2).unwrap();
    let g = host.create_guest(GuestConfig::p2(2000)).unwrap();
    // Every table of the guest range 1..4096, before any allocation.
    let mut mem = Mem::export(&host, g, &[0, 1, 2, 3]).unwrap();
    for t in 0..4u64 {
        assert_eq!(
            le64(&mem.pages[0], t as usize * 8),
            Mem::phys(t as usize + 2) | 1
        );
    }
    for gpasid in 0..5000 {
        assert!(matches!(
            mem.walk(gpasid),
            Err(Fault::EntryInvalid { .. } | Fault::DirectoryNotPresent { .. })
        ));
    }
    let before = mem.pages[0].clone();
    for _ in 0..1100 {
        let (gpasid, touched) = host.alloc_reporting_pages(g, PasidKind::Shared).unwrap();
        let touched = touched.unwrap();
        assert_eq!(touched.table, gpasid >> 10);
        // The host's map is new, so it says "directory changed"; the VMM already has it.
        let idx = mem.table_page[&touched.table];
        host.write_translation_table(g, touched.table, &mut mem.pages[idx])
            .unwrap();
        assert_eq!(mem.walk(gpasid), Ok(host.translate(g, gpasid).unwrap()));
    }
    assert_eq!(mem.pages[0], before);
    assert_eq!(
        host.write_translation_table(g, 1024, &mut mem.pages[2]),
        Err(Error::BadTablePage { table: 1024 })
    );
    assert_eq!(
        host.write_translation_table(g, 0, &mut [0u8; 16]),
        Err(Error::PageSize { len: 16 })
    );
}

#[test]
fn write_directory_entry_writes_eight_bytes() {
    let mut page = vec![0xAAu8; PAGE_SIZE];
    assert_eq!(
        hwtable::write_directory_entry(&mut page, 0x201, 0xdead_b000),
        Ok(Directory::High)
    );
    assert_eq!(le64(&page, 8), 0xdead_b001);
    assert!(page[..8].iter().chain(&page[16..]).all(|&b| b == 0xAA));
    assert_eq!(
        hwtable::write_directory_entry(&mut page, 5, 0xdead_b008),
        Err(Error::UnalignedPage { phys: 0xdead_b008 })
    );
    assert_eq!(
        hwtable::write_directory_entry(&mut page[..8], 5, 0),
        Err(Error::PageSize { len: 8 })
    );
}

/// A page of possibly uninitialised memory, as the C layer hands one to the core.
fn uninit_page() -> Vec<MaybeUninit<u8>> {
    vec![MaybeUninit::uninit(); PAGE_SIZE]
}

/// The bytes of a `MaybeUninit` page the core wrote whole.
fn written(page: &[MaybeUninit<u8>]) -> Vec<u8> {
    // SAFETY: only called on pages a successful call wrote every byte of (tests may use
    // unsafe; the crate may not). Miri checks it under scripts/harden.sh.
    page.iter().map(|b| unsafe { b.assume_init() }).collect()
}

#[test]
fn uninitialised_pages_are_written_whole_with_the_same_bytes() {
    let mut host = Host::new(layout(), Platform::P2).unwrap();
    let g = host.create_guest(GuestConfig::p2(2000)).unwrap();
    let (a, touched) = host.alloc_reporting_pages(g, PasidKind::Shared).unwrap();
    let touched = touched.unwrap();
    assert!(touched.directory_changed && touched.table == a >> 10 && touched.table == 0);
    host.alloc(g, PasidKind::Shared).unwrap();
    let mem = Mem::export(&host, g, &[1]).unwrap();

    // The export: the same bytes as into initialised pages.
    let (mut low, mut high, mut t0, mut t1) =
        (uninit_page(), uninit_page(), uninit_page(), uninit_page());
    host.export_translation(
        g,
        PageBuf {
            phys: Mem::phys(0),
            bytes: &mut low,
        },
        PageBuf {
            phys: Mem::phys(1),
            bytes: &mut high,
        },
        &mut [
            TablePage {
                table: 0,
                page: PageBuf {
                    phys: Mem::phys(2),
                    bytes: &mut t0,
                },
            },
            TablePage {
                table: 1,
                page: PageBuf {
                    phys: Mem::phys(3),
                    bytes: &mut t1,
                },
            },
        ],
    )
    .unwrap();
    for (page, expected) in [&low, &high, &t0, &t1].into_iter().zip(&mem.pages) {
        assert_eq!(&written(page), expected);
    }

    // One table, and the table page of an update (linked in an initialised directory).
    let mut one = uninit_page();
    host.write_translation_table(g, a >> 10, &mut one).unwrap();
    assert_eq!(written(&one), mem.pages[2]);
    let mut table = uninit_page();
    let mut dir = vec![0u8; PAGE_SIZE];
    host.write_touched_pages(
        g,
        touched,
        PageBuf {
            phys: 0x7000,
            bytes: &mut table,
        },
        Some(&mut dir),
    )
    .unwrap();
    assert_eq!(written(&table), mem.pages[2]);
    assert_eq!(le64(&dir, 0), 0x7000 | 1);
    assert!(dir[8..].iter().all(|&b| b == 0));
}

#[test]
fn write_touched_pages_checks_everything_before_writing() {
    let mut host = Host::new(layout(), Platform::P2).unwrap();
    let g = host.create_guest(GuestConfig::p2(8)).unwrap();
    host.alloc(g, PasidKind::Shared).unwrap();
    let mut dir = vec![0xAAu8; PAGE_SIZE];
    let mut short_dir = vec![0xAAu8; PAGE_SIZE - 1];
    let linking = PagesTouched {
        table: 0,
        directory_changed: true,
    };
    let mut table = vec![0xAAu8; PAGE_SIZE];
    let mut run = |guest, touched, phys, len, dir: &mut [u8]| {
        let result = host.write_touched_pages(
            guest,
            touched,
            PageBuf {
                phys,
                bytes: &mut table[..len],
            },
            Some(dir),
        );
        // A refused call leaves the table page as it was.
        assert!(result.is_ok() || table.iter().all(|&b| b == 0xAA));
        result
    };
    // The order: guest, table number, table page (length, address), directory length.
    assert!(matches!(
        run(GuestId(g.0 + 1), linking, 0x1001, 1, &mut short_dir),
        Err(Error::NoSuchGuest { .. })
    ));
    let bad_table = PagesTouched {
        table: 1024,
        ..linking
    };
    assert_eq!(
        run(g, bad_table, 0x1001, 1, &mut short_dir),
        Err(Error::BadTablePage { table: 1024 })
    );
    assert_eq!(
        run(g, linking, 0x1001, 1, &mut short_dir),
        Err(Error::PageSize { len: 1 })
    );
    assert_eq!(
        run(g, linking, 0x1001, PAGE_SIZE, &mut short_dir),
        Err(Error::UnalignedPage { phys: 0x1001 })
    );
    assert_eq!(
        run(g, linking, 0x1000, PAGE_SIZE, &mut short_dir),
        Err(Error::PageSize { len: PAGE_SIZE - 1 })
    );
    // Nothing was written to a directory by any failed call.
    for page in [&dir, &short_dir] {
        assert!(page.iter().all(|&b| b == 0xAA));
    }
    // A directory is only looked at when the directory changed.
    let unlinked = PagesTouched {
        directory_changed: false,
        ..linking
    };
    assert_eq!(run(g, unlinked, 0x1000, PAGE_SIZE, &mut short_dir), Ok(()));
    assert!(short_dir.iter().all(|&b| b == 0xAA));
    assert_eq!(run(g, linking, 0x1000, PAGE_SIZE, &mut dir), Ok(()));
    assert_eq!(le64(&dir, 0), 0x1000 | 1);
    assert!(dir[8..].iter().all(|&b| b == 0xAA));
}

/// Every 20-bit gPASID: the walk over the pages gives exactly what `translate` gives,
/// and a gPASID without a shared mapping reads as not present or invalid.
fn check_agreement(host: &Host, g: GuestId, mem: &Mem) -> Result<(), TestCaseError> {
    let mut translated = 0;
    for gpasid in 0..1u32 << 20 {
        let walked = mem.walk(gpasid);
        match host.translate(g, gpasid) {
            Ok(h) => {
                translated += 1;
                prop_assert_eq!(walked, Ok(h), "gPASID {:#x}", gpasid)
            }
            Err(_) => prop_assert!(
                matches!(
                    walked,
                    Err(Fault::EntryInvalid { .. } | Fault::DirectoryNotPresent { .. })
                ),
                "gPASID {:#x} walked to {:?}",
                gpasid,
                walked
            ),
        }
    }
    // Held shared gPASIDs translate; draining ones (counted by the quota) do not.
    let held = host
        .guest_snapshot(g)
        .unwrap()
        .pasids
        .iter()
        .filter(|p| p.hpasid.is_some())
        .count();
    prop_assert_eq!(translated, held as u32);
    Ok(())
}

#[derive(Debug, Clone)]
enum Op {
    Shared,
    Local,
    /// Free the n-th (mod count) PASID the guest holds.
    Free(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Shared),
        1 => Just(Op::Local),
        2 => any::<usize>().prop_map(Op::Free),
    ]
}

fn layouts() -> impl Strategy<Value = PasidLayout> {
    prop_oneof![
        Just(PasidLayout::new(20, 1..4096, 4096..1 << 19).unwrap()),
        Just(PasidLayout::new(20, 1..300, 300..400).unwrap()),
        Just(straddling_layout()),
        Just(PasidLayout::new(20, (1 << 20) - 2100..1 << 20, 1..1 << 19).unwrap()),
    ]
}

/// Applies `op`; returns the pages it touched.
fn apply(host: &mut Host, g: GuestId, held: &mut Vec<u32>, op: &Op) -> Option<PagesTouched> {
    match op {
        Op::Shared | Op::Local => {
            let kind = if matches!(op, Op::Shared) {
                PasidKind::Shared
            } else {
                PasidKind::Local
            };
            let (gpasid, touched) = host.alloc_reporting_pages(g, kind).ok()?;
            held.push(gpasid);
            touched
        }
        Op::Free(n) => {
            if held.is_empty() {
                return None;
            }
            let gpasid = held.swap_remove(n % held.len());
            host.free_reporting_pages(g, gpasid).unwrap()
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn walk_agrees_with_translate(
        layout in layouts(),
        quota in 0u32..2000,
        skip in 0usize..1500,
        before in prop::collection::vec(op(), 0..400),
        after in prop::collection::vec(op(), 0..400),
    ) {
        let mut host = Host::new(layout, Platform::P2).unwrap();
        // A first guest moves the shared allocator, so hPASIDs differ from gPASIDs.
        let other = host.create_guest(GuestConfig::p2(2000)).unwrap();
        for _ in 0..skip {
            let _ = host.alloc(other, PasidKind::Shared);
        }
        let g = host.create_guest(GuestConfig::p2(quota)).unwrap();
        let mut held = Vec::new();
        // Fill a stretch so that later tables appear too.
        for _ in 0..skip {
            let _ = apply(&mut host, g, &mut held, &Op::Local);
        }
        for op in &before {
            apply(&mut host, g, &mut held, op);
        }
        let mut mem = Mem::export(&host, g, &[]).unwrap();
        check_agreement(&host, g, &mem)?;

        // Incremental updates, written back page by page as the reports say.
        for op in &after {
            if let Some(touched) = apply(&mut host, g, &mut held, op) {
                mem.apply(&host, g, touched);
            }
        }
        check_agreement(&host, g, &mem)?;
        // And a fresh export gives the same translation.
        let fresh = Mem::export(&host, g, &[]).unwrap();
        for gpasid in held.iter().copied() {
            prop_assert_eq!(fresh.walk(gpasid).ok(), mem.walk(gpasid).ok());
        }
    }
}
