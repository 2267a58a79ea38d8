//! The CPU's PASID-translation pages for ENQCMD/ENQCMDS ([`pasid_core::hwtable`]): which
//! tables a guest uses, the pages exported in the processor's format, and the walk the
//! CPU does over them, step by step, for the playground's hardware view.
//!
//! ```js
//! const tables = host.translationTables(g);                 // Uint32Array [0, ...]
//! const pages = host.exportTranslation(g, {
//!   low: 0x100000, high: 0x101000,                          // the two VMCS fields
//!   tables: [...tables].map((table, i) => ({ table, phys: 0x102000 + i * 0x1000 })),
//! });                                                       // { low, high, tables }
//! const all = [pages.low, pages.high, ...pages.tables];     // each { phys, bytes }
//! const step = walk(0x100000, 0x101000, gpasid, all);
//! step.host_pasid === host.translate(g, gpasid);            // or step.fault, exit 72/73
//! ```
//!
//! Physical addresses are JS numbers (integers below 2^53); page bytes are arrays of
//! 4096 numbers in what this returns, and arrays or `Uint8Array`s in what it takes.
//! The walk itself is the core's [`hwtable::walk`]; this module only records which
//! pages that walk read and decodes the two entries with the core's entry types.

use core::mem::size_of;

use pasid_core::hwtable::{
    self, directory_slot, Directory, DirectoryEntry, Fault, Instruction, PageBuf, TableEntry,
    TablePage, ENTRIES_PER_TABLE, PAGE_SIZE, VMCS_HIGH_PASID_DIRECTORY, VMCS_LOW_PASID_DIRECTORY,
};
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

use crate::args::ArgError;
use crate::errors::{to_js, Fail, Out};
use crate::host::{guest_id, WasmHost};

/// Where the VMM puts the pages: what `exportTranslation` takes as its second argument.
#[derive(Debug, Clone, Deserialize)]
pub struct PagePlacement {
    /// Physical address of the low PASID directory (VMCS 0x2038).
    pub low: u64,
    /// Physical address of the high PASID directory (VMCS 0x203A).
    pub high: u64,
    /// One page per translation table: `{ table, phys }`.
    pub tables: Vec<TablePlacement>,
}

/// One translation table's page address.
#[derive(Debug, Clone, Deserialize)]
pub struct TablePlacement {
    /// Table number: gPASID >> 10.
    pub table: u32,
    /// Physical address of its page.
    pub phys: u64,
}

/// One page with its address, as exported and as `walk` takes it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Page {
    /// Physical address the CPU sees the page at.
    pub phys: u64,
    /// Its bytes ([`PAGE_SIZE`] of them).
    #[serde(with = "page_bytes")]
    pub bytes: Vec<u8>,
}

/// A guest's translation as the CPU reads it: what `exportTranslation` returns.
#[derive(Debug, Clone, Serialize)]
pub struct ExportedTranslation {
    /// The low directory page (gPASID bit 19 clear).
    pub low: Page,
    /// The high directory page (gPASID bit 19 set).
    pub high: Page,
    /// The table pages, in the order they were asked for.
    pub tables: Vec<ExportedTable>,
}

/// One exported table page.
#[derive(Debug, Clone, Serialize)]
pub struct ExportedTable {
    /// Table number: gPASID >> 10.
    pub table: u32,
    /// Physical address of its page.
    pub phys: u64,
    /// Its bytes.
    #[serde(with = "page_bytes")]
    pub bytes: Vec<u8>,
}

/// The 8-byte directory entry the walk read.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DirectoryEntryView {
    /// Where the entry is: its page plus 8 × index.
    pub phys: u64,
    /// The raw 64-bit value as hex text (`"0x0000000000102001"`): exact at any size.
    pub value: String,
    /// Bit 0.
    pub present: bool,
    /// Bits 11:1 hold a 1 (the CPU faults).
    pub reserved_bits: bool,
    /// Bits 63:12: the table page's address, when present.
    pub table_phys: Option<u64>,
}

/// The 4-byte table entry the walk read.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TableEntryView {
    /// Where the entry is: its page plus 4 × index.
    pub phys: u64,
    /// The raw 32-bit value as hex text (`"0x80001000"`).
    pub value: String,
    /// Bit 31.
    pub valid: bool,
    /// Bits 30:20 hold a 1 (the CPU faults).
    pub reserved_bits: bool,
    /// Bits 19:0, when valid.
    pub host_pasid: Option<u32>,
}

/// The CPU's walk of one gPASID, step by step: what `walk` returns.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct WalkTrace {
    /// The gPASID as the CPU takes it (bits 19:0).
    pub gpasid: u32,
    /// Bit 19: `"low"` (0) or `"high"` (1).
    pub directory: &'static str,
    /// The VMCS field that holds that directory's address (0x2038 or 0x203A).
    pub vmcs_field: u32,
    /// The directory page's address.
    pub directory_phys: u64,
    /// Bits 18:10: the directory entry's index (0..512).
    pub directory_index: u32,
    /// The directory entry, or `null` if the walk could not read the directory page.
    pub directory_entry: Option<DirectoryEntryView>,
    /// Bits 9:0: the table entry's index (0..1024).
    pub table_index: u32,
    /// The table entry, or `null` if the walk stopped before it (or could not read it).
    pub table_entry: Option<TableEntryView>,
    /// The host PASID the instruction carries, when the walk translated.
    pub host_pasid: Option<u32>,
    /// Why it did not: `"DirectoryNotPresent"`, `"DirectoryReserved"`, `"EntryInvalid"`,
    /// `"EntryReserved"` (VM exits) or `"Unreadable"` (no page given at an address).
    pub fault: Option<&'static str>,
    /// The basic exit reason of that fault for ENQCMD (72), if it is a VM exit.
    pub exit_reason_enqcmd: Option<u16>,
    /// The same for ENQCMDS (73).
    pub exit_reason_enqcmds: Option<u16>,
}

/// Bytes in and out: `serialize_bytes` (an array under `json_compatible`), and either an
/// array of numbers or a `Uint8Array` in.
mod page_bytes {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Bytes;
        impl<'de> serde::de::Visitor<'de> for Bytes {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
                f.write_str("a Uint8Array or an array of bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_byte_buf(Bytes)
    }
}

fn fault_name(fault: Fault) -> &'static str {
    match fault {
        Fault::DirectoryNotPresent { .. } => "DirectoryNotPresent",
        Fault::DirectoryReserved { .. } => "DirectoryReserved",
        Fault::EntryInvalid { .. } => "EntryInvalid",
        Fault::EntryReserved { .. } => "EntryReserved",
        Fault::Unreadable { .. } => "Unreadable",
    }
}

fn read_entry<const N: usize>(page: &[u8], offset: usize) -> Option<[u8; N]> {
    page.get(offset..offset + N)?.try_into().ok()
}

/// The walk of `gpasid` over `pages`, as the core does it, with the two entries it read.
pub fn trace(low_directory: u64, high_directory: u64, gpasid: u32, pages: &[Page]) -> WalkTrace {
    let find = |phys: u64| {
        pages
            .iter()
            .find(|p| p.phys == phys)
            .map(|p| p.bytes.as_slice())
    };
    // The addresses the core's walk asked for: the directory page, then the table page.
    let mut read_at: Vec<u64> = Vec::with_capacity(2);
    let result = hwtable::walk(low_directory, high_directory, gpasid, |phys| {
        read_at.push(phys);
        find(phys)
    });
    let gpasid = gpasid % (1 << 20);
    let table = gpasid / ENTRIES_PER_TABLE as u32;
    let (directory, dir_offset) = directory_slot(table);
    let table_index = gpasid % ENTRIES_PER_TABLE as u32;
    let readable = |phys: u64| find(phys).filter(|b| b.len() == PAGE_SIZE);
    let directory_phys = read_at.first().copied().unwrap_or(0);
    let directory_entry = readable(directory_phys)
        .and_then(|page| read_entry::<8>(page, dir_offset))
        .map(|raw| {
            let entry = DirectoryEntry(u64::from_le_bytes(raw));
            DirectoryEntryView {
                phys: directory_phys + dir_offset as u64,
                value: format!("{:#018x}", entry.0),
                present: entry.is_present(),
                reserved_bits: entry.has_reserved_bits(),
                table_phys: entry.table_address(),
            }
        });
    let table_entry = read_at.get(1).and_then(|&phys| {
        let offset = table_index as usize * size_of::<TableEntry>();
        let raw = read_entry::<4>(readable(phys)?, offset)?;
        let entry = TableEntry(u32::from_le_bytes(raw));
        Some(TableEntryView {
            phys: phys + offset as u64,
            value: format!("{:#010x}", entry.0),
            valid: entry.is_valid(),
            reserved_bits: entry.has_reserved_bits(),
            host_pasid: entry.host_pasid(),
        })
    });
    let (directory, vmcs_field) = match directory {
        Directory::Low => ("low", VMCS_LOW_PASID_DIRECTORY),
        Directory::High => ("high", VMCS_HIGH_PASID_DIRECTORY),
    };
    let fault = result.err();
    WalkTrace {
        gpasid,
        directory,
        vmcs_field,
        directory_phys,
        directory_index: (dir_offset / size_of::<DirectoryEntry>()) as u32,
        directory_entry,
        table_index,
        table_entry,
        host_pasid: result.ok(),
        fault: fault.map(fault_name),
        exit_reason_enqcmd: fault.and_then(|f| f.exit_reason(Instruction::Enqcmd)),
        exit_reason_enqcmds: fault.and_then(|f| f.exit_reason(Instruction::Enqcmds)),
    }
}

impl WasmHost {
    /// `exportTranslation` after its placement has been read from JS.
    pub fn export_pages(&self, guest: f64, at: &PagePlacement) -> Out<ExportedTranslation> {
        let guest = guest_id(guest)?;
        let (mut low, mut high) = (vec![0u8; PAGE_SIZE], vec![0u8; PAGE_SIZE]);
        let mut table_bytes: Vec<Vec<u8>> =
            at.tables.iter().map(|_| vec![0u8; PAGE_SIZE]).collect();
        let mut pages: Vec<TablePage<'_>> = at
            .tables
            .iter()
            .zip(table_bytes.iter_mut())
            .map(|(t, bytes)| TablePage {
                table: t.table,
                page: PageBuf {
                    phys: t.phys,
                    bytes,
                },
            })
            .collect();
        self.host.export_translation(
            guest,
            PageBuf {
                phys: at.low,
                bytes: &mut low,
            },
            PageBuf {
                phys: at.high,
                bytes: &mut high,
            },
            &mut pages,
        )?;
        drop(pages);
        Ok(ExportedTranslation {
            low: Page {
                phys: at.low,
                bytes: low,
            },
            high: Page {
                phys: at.high,
                bytes: high,
            },
            tables: at
                .tables
                .iter()
                .zip(table_bytes)
                .map(|(t, bytes)| ExportedTable {
                    table: t.table,
                    phys: t.phys,
                    bytes,
                })
                .collect(),
        })
    }
}

#[wasm_bindgen(js_class = Host)]
impl WasmHost {
    /// The PASID-translation tables a guest uses, as table numbers (gPASID >> 10),
    /// ascending (`Uint32Array`): the tables `exportTranslation` needs pages for.
    #[wasm_bindgen(js_name = translationTables)]
    pub fn translation_tables(&self, guest: f64) -> Out<Vec<u32>> {
        Ok(self.host.translation_tables(guest_id(guest)?)?.collect())
    }

    /// The guest's whole PASID translation in the CPU's format, at the addresses of
    /// `{ low, high, tables: [{ table, phys }] }`: `{ low: { phys, bytes }, high: { phys,
    /// bytes }, tables: [{ table, phys, bytes }] }`. `tables` must cover every table of
    /// `translationTables`; every address is 4 KiB aligned and distinct. Throws the
    /// core's error (`MissingTablePage`, `UnalignedPage`, `DuplicatePage`,
    /// `BadTablePage`, `NoSuchGuest`); the host is never changed.
    #[wasm_bindgen(js_name = exportTranslation)]
    pub fn export_translation(&self, guest: f64, placement: JsValue) -> Out<JsValue> {
        let at: PagePlacement = serde_wasm_bindgen::from_value(placement).map_err(|e| {
            ArgError(format!(
                "page placement must be {{ low, high, tables: [{{ table, phys }}] }} with \
                 integer addresses: {e}"
            ))
        })?;
        to_js(&self.export_pages(guest, &at)?)
    }
}

fn address(what: &str, value: f64) -> Result<u64, ArgError> {
    const MAX_SAFE: f64 = 9_007_199_254_740_991.0;
    if value.fract() == 0.0 && (0.0..=MAX_SAFE).contains(&value) {
        Ok(value as u64)
    } else {
        Err(ArgError(format!(
            "{what} must be an integer address in 0..2^53, got {value}"
        )))
    }
}

/// Walks the CPU's PASID translation of `gpasid` (bits 19:0 used, as the CPU does) from
/// the two VMCS directory values over `pages` (`[{ phys, bytes }]`), and returns every
/// step (shape: [`WalkTrace`]). A fault is a result, not a throw: `fault` names it and
/// `exit_reason_enqcmd` / `exit_reason_enqcmds` give the VM exit (72 / 73).
#[wasm_bindgen(js_name = walk)]
pub fn walk_pages(
    low_directory: f64,
    high_directory: f64,
    gpasid: f64,
    pages: JsValue,
) -> Out<JsValue> {
    let low = address("low directory", low_directory)?;
    let high = address("high directory", high_directory)?;
    let gpasid = crate::host::pasid(gpasid)?;
    let pages: Vec<Page> = serde_wasm_bindgen::from_value(pages).map_err(|e| {
        Fail::Arg(ArgError(format!(
            "pages must be an array of {{ phys, bytes }}: {e}"
        )))
    })?;
    to_js(&trace(low, high, gpasid, &pages))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::p2_host;

    const LOW: u64 = 0x10_0000;
    const HIGH: u64 = 0x10_1000;

    fn exported(h: &WasmHost, g: f64) -> Vec<Page> {
        let tables = h.translation_tables(g).unwrap();
        let at = PagePlacement {
            low: LOW,
            high: HIGH,
            tables: tables
                .iter()
                .enumerate()
                .map(|(i, &table)| TablePlacement {
                    table,
                    phys: 0x10_2000 + 0x1000 * i as u64,
                })
                .collect(),
        };
        let out = h.export_pages(g, &at).unwrap();
        let mut pages = vec![out.low, out.high];
        pages.extend(out.tables.into_iter().map(|t| Page {
            phys: t.phys,
            bytes: t.bytes,
        }));
        pages
    }

    #[test]
    fn a_shared_gpasid_walks_to_its_hpasid() {
        let mut h = p2_host();
        let g = f64::from(h.create_guest("p2", 8.0).unwrap());
        let gp = h.alloc_pasid(g, "shared").unwrap();
        let hp = h.translate(g, f64::from(gp)).unwrap();
        let pages = exported(&h, g);
        let t = trace(LOW, HIGH, gp, &pages);
        assert_eq!(t.directory, "low");
        assert_eq!(t.vmcs_field, 0x2038);
        assert_eq!(t.directory_phys, LOW);
        assert_eq!(t.directory_index, 0);
        let d = t.directory_entry.unwrap();
        assert_eq!(d.value, "0x0000000000102001");
        assert!(d.present && !d.reserved_bits);
        assert_eq!(d.table_phys, Some(0x10_2000));
        let e = t.table_entry.unwrap();
        assert_eq!(e.phys, 0x10_2000 + 4 * u64::from(gp));
        assert_eq!(e.value, format!("{:#010x}", 0x8000_0000u32 | hp));
        assert_eq!(e.host_pasid, Some(hp));
        assert_eq!(
            (t.host_pasid, t.fault, t.exit_reason_enqcmd),
            (Some(hp), None, None)
        );
    }

    #[test]
    fn an_unmapped_gpasid_is_a_vm_exit() {
        let mut h = p2_host();
        let g = f64::from(h.create_guest("p2", 8.0).unwrap());
        let gp = h.alloc_pasid(g, "local").unwrap();
        h.alloc_pasid(g, "shared").unwrap();
        let pages = exported(&h, g);
        let t = trace(LOW, HIGH, gp, &pages);
        assert_eq!(t.fault, Some("EntryInvalid"));
        assert!(!t.table_entry.unwrap().valid);
        assert_eq!(
            (t.exit_reason_enqcmd, t.exit_reason_enqcmds),
            (Some(72), Some(73))
        );
        // Bit 19 set: the high directory, which has no table.
        let t = trace(LOW, HIGH, (1 << 19) | 5, &pages);
        assert_eq!((t.directory, t.vmcs_field), ("high", 0x203A));
        assert_eq!(t.fault, Some("DirectoryNotPresent"));
        assert!(!t.directory_entry.unwrap().present);
        assert_eq!(t.table_entry, None);
        // No pages at all: not a CPU fault, and no exit reason.
        let t = trace(LOW, HIGH, gp, &[]);
        assert_eq!(
            (t.fault, t.exit_reason_enqcmd, t.directory_entry),
            (Some("Unreadable"), None, None)
        );
    }

    #[test]
    fn export_refusals_are_core_errors() {
        let mut h = p2_host();
        let g = f64::from(h.create_guest("p2", 8.0).unwrap());
        h.alloc_pasid(g, "shared").unwrap();
        let missing = PagePlacement {
            low: LOW,
            high: HIGH,
            tables: vec![],
        };
        assert!(matches!(
            h.export_pages(g, &missing),
            Err(Fail::Core(pasid_core::Error::MissingTablePage { table: 0 }))
        ));
        let unaligned = PagePlacement {
            low: LOW + 8,
            ..missing.clone()
        };
        assert!(matches!(
            h.export_pages(g, &unaligned),
            Err(Fail::Core(pasid_core::Error::UnalignedPage { .. }))
        ));
        assert!(matches!(h.export_pages(99.0, &missing), Err(Fail::Core(_))));
        assert!(address("x", 1.5).is_err() && address("x", -1.0).is_err());
    }
}
