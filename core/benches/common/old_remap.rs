//! pasid-core 0.1's `RemapTable` (commit 892b698: one boxed 4 KiB hardware table per
//! 1024-gPASID stretch), kept verbatim but for its doc and tests so that the translate
//! bench measures the old lookup next to the new one in the same run ("before").
#![allow(dead_code, clippy::all)]

use std::ops::Range;

use pasid_core::hwtable::{TableEntry, ENTRIES_PER_TABLE};

type Result<T> = std::result::Result<T, std::collections::TryReserveError>;

/// One PASID-translation table: 1024 hardware entries (4 KiB).
pub type Block = [TableEntry; ENTRIES_PER_TABLE];

/// The 4 KiB pages an update changed, so a VMM writes back only those.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PagesTouched {
    /// The PASID-translation table that changed: gPASID >> 10.
    pub table: u32,
    /// Whether the table is new, so its PASID-directory entry changed too.
    pub directory_changed: bool,
}

/// The translation map of one guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemapTable {
    first_table: u32,
    tables: Vec<Option<Box<Block>>>,
    mapped: u32,
}

impl RemapTable {
    /// An empty map able to hold the gPASIDs of `guest_range`.
    pub fn new(guest_range: Range<u32>) -> Result<Self> {
        let first_table = guest_range.start >> 10;
        let count = if guest_range.is_empty() {
            0
        } else {
            ((guest_range.end - 1) >> 10) - first_table + 1
        };
        let mut tables = Vec::new();
        tables.try_reserve_exact(count as usize)?;
        tables.resize_with(count as usize, || None);
        Ok(RemapTable {
            first_table,
            tables,
            mapped: 0,
        })
    }

    /// The host PASID `gpasid` maps to, if it has a valid entry.
    #[inline]
    pub fn get(&self, gpasid: u32) -> Option<u32> {
        let slot = (gpasid >> 10).wrapping_sub(self.first_table) as usize;
        let table = self.tables.get(slot)?.as_deref()?;
        table[(gpasid & 0x3ff) as usize].host_pasid()
    }

    /// Maps `gpasid` to `hpasid`. The gPASID must be in the guest range given to
    /// [`RemapTable::new`]; the caller keeps that promise (the host checks it).
    #[inline(always)]
    pub fn insert(&mut self, gpasid: u32, hpasid: u32) -> Result<PagesTouched> {
        let table_no = gpasid >> 10;
        let slot = &mut self.tables[(table_no - self.first_table) as usize];
        let directory_changed = slot.is_none();
        if directory_changed {
            *slot = Some(try_new_block()?);
        }
        let entry = &mut slot.as_mut().expect("made above")[(gpasid & 0x3ff) as usize];
        if !entry.is_valid() {
            self.mapped += 1;
        }
        *entry = TableEntry::valid(hpasid);
        Ok(PagesTouched {
            table: table_no,
            directory_changed,
        })
    }

    /// Removes the mapping of `gpasid`; returns the host PASID it had, and the page.
    #[inline(always)]
    pub fn remove(&mut self, gpasid: u32) -> Option<(u32, PagesTouched)> {
        let table_no = gpasid >> 10;
        let slot = (table_no.wrapping_sub(self.first_table)) as usize;
        let table = self.tables.get_mut(slot)?.as_deref_mut()?;
        let entry = &mut table[(gpasid & 0x3ff) as usize];
        let hpasid = entry.host_pasid()?;
        *entry = TableEntry::INVALID;
        self.mapped -= 1;
        Some((
            hpasid,
            PagesTouched {
                table: table_no,
                directory_changed: false,
            },
        ))
    }

    /// How many gPASIDs are mapped.
    pub fn len(&self) -> u32 {
        self.mapped
    }

    /// Whether nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.mapped == 0
    }

    /// Every mapping as (gPASID, hPASID), in gPASID order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.tables().flat_map(|(table_no, table)| {
            table.iter().enumerate().filter_map(move |(i, entry)| {
                entry.host_pasid().map(|h| ((table_no << 10) | i as u32, h))
            })
        })
    }

    /// The tables that exist, as (table number = gPASID >> 10, entries).
    pub fn tables(&self) -> impl Iterator<Item = (u32, &Block)> + '_ {
        self.tables
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.as_deref().map(|t| (self.first_table + i as u32, t)))
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.tables.capacity() * core::mem::size_of::<Option<Box<Block>>>()
            + self.tables().count() * core::mem::size_of::<Block>()
    }
}

fn try_new_block() -> Result<Box<Block>> {
    // Box::new would abort on allocation failure; go through a fallible Vec instead.
    let mut v = Vec::new();
    v.try_reserve_exact(ENTRIES_PER_TABLE)?;
    v.resize(ENTRIES_PER_TABLE, TableEntry::INVALID);
    Ok(v.into_boxed_slice()
        .try_into()
        .expect("exactly ENTRIES_PER_TABLE entries"))
}
