//! A guest's gPASID -> hPASID map, sparse, with the CPU's PASID-translation-table format
//! available on demand.
//!
//! # Shape
//!
//! The CPU walks 1024-entry PASID-translation tables (gPASID bits 9:0 index a table;
//! the bits above pick it; see [`crate::hwtable`]). Keeping one 4 KiB table per
//! 1024-gPASID stretch a guest touches costs a guest with 64 shared PASIDs 4 KiB, and
//! with thousands of guests those tables no longer fit in the caches, so every
//! translation and every update misses. So the map keeps **128-entry chunks** (512
//! bytes) instead, made on first use of a 128-gPASID stretch, under a directory with one slot
//! per chunk that grows only up to the highest chunk in use:
//!
//! * a lookup is two dependent loads, like the hardware walk: the directory slot (a
//!   pointer to the chunk), then the entry, with the chunk index masked so the second
//!   load needs no bounds check;
//! * entries hold the host PASID itself ([`EMPTY`] when unmapped), so the value a
//!   lookup returns needs no masking on the way out;
//! * the hardware tables are produced when the export asks for them:
//!   [`RemapTable::tables`] yields a [`TableView`] per 1024-entry table that has a chunk,
//!   which reads out the table's 1024 [`TableEntry`] values (invalid where no chunk is).
//!
//! Memory grows with use: nothing for a guest with no shared PASID, one chunk and a
//! few directory slots (about 550 bytes) for one with 64 (lowest-free allocation puts
//! them at gPASIDs 1..=64), 33 chunks (about 17 KiB) for 4096. Chunks stay until the
//! guest goes, so a churning guest stops allocating once warm. Every allocation is
//! fallible: an insert that cannot get memory returns [`Error::OutOfMemory`] and
//! changes nothing.
//!
//! A table "exists" (has a PASID-directory entry, [`PagesTouched::directory_changed`])
//! from the first chunk made in it, and stays, as before: the VMM's pages and the
//! directory agree without the map having to say when a table empties.
//!
//! [`Error::OutOfMemory`]: crate::Error::OutOfMemory

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::ops::Range;

use crate::error::Result;
use crate::hwtable::{TableEntry, ENTRIES_PER_TABLE};

/// One PASID-translation table: 1024 hardware entries (4 KiB), what
/// [`TableView::to_block`] gives.
pub type Block = [TableEntry; ENTRIES_PER_TABLE];

/// gPASIDs per chunk: 128 entries of 4 bytes, eight cache lines. Smaller chunks would
/// cost more in directory slots (8 bytes each) than they save for a dense guest, and
/// lowest-free allocation keeps a guest's gPASIDs dense.
const CHUNK: usize = 128;
/// log2 of [`CHUNK`].
const CHUNK_SHIFT: u32 = 7;
/// Chunks per 1024-entry hardware table.
const CHUNKS_PER_TABLE: usize = ENTRIES_PER_TABLE / CHUNK;

/// The entry of an unmapped gPASID. Host PASIDs have 20 bits, so it is never one.
pub const EMPTY: u32 = u32::MAX;

/// One 128-gPASID stretch: host PASIDs, or [`EMPTY`].
type Chunk = [u32; CHUNK];

/// The 4 KiB pages an update changed, so a VMM writes back only those.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PagesTouched {
    /// The PASID-translation table that changed: gPASID >> 10.
    pub table: u32,
    /// Whether the table is new, so its PASID-directory entry changed too.
    pub directory_changed: bool,
}

/// The translation map of one guest.
///
/// Two maps are equal when they cover the same range, map the same gPASIDs to the same
/// host PASIDs and have the same tables.
#[derive(Debug, Clone)]
pub struct RemapTable {
    /// Chunk number (gPASID >> 7) of the first directory slot: the guest range's start.
    first_chunk: u32,
    /// Directory slots the guest range needs in all; `dir` grows up to that.
    chunks: u32,
    /// One slot per chunk from `first_chunk` on, up to the highest chunk made.
    dir: Vec<Option<Box<Chunk>>>,
    mapped: u32,
}

impl PartialEq for RemapTable {
    fn eq(&self, other: &Self) -> bool {
        self.first_chunk == other.first_chunk
            && self.chunks == other.chunks
            && self.mapped == other.mapped
            && self.iter().eq(other.iter())
            && self.tables().map(|(t, _)| t).eq(other.tables().map(|(t, _)| t))
    }
}

impl Eq for RemapTable {}

impl RemapTable {
    /// An empty map able to hold the gPASIDs of `guest_range`. Allocates nothing.
    pub fn new(guest_range: Range<u32>) -> Result<Self> {
        let first_chunk = guest_range.start >> CHUNK_SHIFT;
        let chunks = if guest_range.is_empty() {
            0
        } else {
            ((guest_range.end - 1) >> CHUNK_SHIFT) - first_chunk + 1
        };
        Ok(RemapTable {
            first_chunk,
            chunks,
            dir: Vec::new(),
            mapped: 0,
        })
    }

    /// The host PASID `gpasid` maps to, if it is mapped.
    #[inline(always)]
    pub fn get(&self, gpasid: u32) -> Option<u32> {
        let slot = (gpasid >> CHUNK_SHIFT).wrapping_sub(self.first_chunk) as usize;
        let chunk = self.dir.get(slot)?.as_deref()?;
        let hpasid = chunk[gpasid as usize % CHUNK];
        (hpasid != EMPTY).then_some(hpasid)
    }

    /// Maps `gpasid` to `hpasid` (its low 20 bits, as the hardware entry keeps). The
    /// gPASID must be in the guest range given to [`RemapTable::new`]; the caller keeps
    /// that promise (the host checks it). Fails with `OutOfMemory`, changing nothing,
    /// when a new chunk or directory slot cannot be had.
    #[inline(always)]
    pub fn insert(&mut self, gpasid: u32, hpasid: u32) -> Result<PagesTouched> {
        let slot = (gpasid >> CHUNK_SHIFT).wrapping_sub(self.first_chunk) as usize;
        let table = gpasid >> 10;
        let directory_changed = match self.dir.get(slot) {
            Some(Some(_)) => false,
            _ => self.new_chunk(slot, table)?,
        };
        let Some(chunk) = self.dir[slot].as_deref_mut() else {
            unreachable!("made above")
        };
        let entry = &mut chunk[gpasid as usize % CHUNK];
        if *entry == EMPTY {
            self.mapped += 1;
        }
        *entry = TableEntry::valid(hpasid).host_pasid().unwrap_or(EMPTY);
        Ok(PagesTouched {
            table,
            directory_changed,
        })
    }

    /// Removes the mapping of `gpasid`; returns the host PASID it had, and the page.
    #[inline(always)]
    pub fn remove(&mut self, gpasid: u32) -> Option<(u32, PagesTouched)> {
        let slot = (gpasid >> CHUNK_SHIFT).wrapping_sub(self.first_chunk) as usize;
        let chunk = self.dir.get_mut(slot)?.as_deref_mut()?;
        let entry = &mut chunk[gpasid as usize % CHUNK];
        let hpasid = core::mem::replace(entry, EMPTY);
        if hpasid == EMPTY {
            return None;
        }
        self.mapped -= 1;
        Some((
            hpasid,
            PagesTouched {
                table: gpasid >> 10,
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
        self.dir.iter().enumerate().flat_map(move |(slot, chunk)| {
            let base = (self.first_chunk + slot as u32) << CHUNK_SHIFT;
            chunk.iter().flat_map(move |c| {
                c.iter()
                    .enumerate()
                    .filter(|(_, &h)| h != EMPTY)
                    .map(move |(i, &h)| (base | i as u32, h))
            })
        })
    }

    /// The hardware tables that exist (a table exists once any chunk in it was made),
    /// in increasing order, as (table number = gPASID >> 10, view of its entries).
    pub fn tables(&self) -> impl Iterator<Item = (u32, TableView<'_>)> + '_ {
        let first = self.first_chunk as usize / CHUNKS_PER_TABLE;
        let last = (self.first_chunk as usize + self.dir.len()).div_ceil(CHUNKS_PER_TABLE);
        (first..last).filter_map(move |t| self.table(t as u32).map(|v| (t as u32, v)))
    }

    /// The hardware table `table` (gPASID >> 10), if it exists.
    pub fn table(&self, table: u32) -> Option<TableView<'_>> {
        let slots = self.table_slots(table);
        self.dir
            .get(slots)?
            .iter()
            .any(Option::is_some)
            .then_some(TableView { map: self, table })
    }

    /// Heap bytes held: the directory's slots and the chunks.
    pub fn heap_bytes(&self) -> usize {
        self.dir.capacity() * core::mem::size_of::<Option<Box<Chunk>>>()
            + self.dir.iter().flatten().count() * core::mem::size_of::<Chunk>()
    }

    // ---- internals ----

    /// The directory slots of table `table`, clipped to the slots that exist.
    fn table_slots(&self, table: u32) -> Range<usize> {
        let start = (table as usize * CHUNKS_PER_TABLE).saturating_sub(self.first_chunk as usize);
        let end = ((table as usize + 1) * CHUNKS_PER_TABLE)
            .saturating_sub(self.first_chunk as usize)
            .min(self.dir.len());
        start.min(end)..end
    }

    /// Makes the chunk of directory slot `slot` (in table `table`): the slow path of
    /// [`RemapTable::insert`], taken once per 128-gPASID stretch. Says whether the table
    /// is new. All memory is had before anything changes.
    #[cold]
    #[inline(never)]
    fn new_chunk(&mut self, slot: usize, table: u32) -> Result<bool> {
        assert!(slot < self.chunks as usize, "gPASID outside the guest range");
        let mut v = Vec::new();
        v.try_reserve_exact(CHUNK)?;
        v.resize(CHUNK, EMPTY);
        let chunk: Box<Chunk> = v
            .into_boxed_slice()
            .try_into()
            .expect("exactly CHUNK entries");
        if slot >= self.dir.len() {
            // Grow by half again (at least to `slot`), never past the range.
            let want = (slot + 1).max(self.dir.len() + self.dir.len() / 2);
            let want = want.min(self.chunks as usize);
            self.dir.try_reserve_exact(want - self.dir.len())?;
            self.dir.resize_with(slot + 1, || None);
        }
        let new_table = self.table(table).is_none();
        self.dir[slot] = Some(chunk);
        Ok(new_table)
    }
}

/// One 1024-entry hardware table of a [`RemapTable`], read out of its chunks.
#[derive(Debug, Clone, Copy)]
pub struct TableView<'a> {
    map: &'a RemapTable,
    table: u32,
}

impl TableView<'_> {
    /// The table number: gPASID >> 10.
    pub fn number(&self) -> u32 {
        self.table
    }

    /// The table's 1024 hardware entries in order (invalid where nothing is mapped).
    pub fn entries(&self) -> impl Iterator<Item = TableEntry> + '_ {
        let first = self.table as usize * CHUNKS_PER_TABLE;
        (first..first + CHUNKS_PER_TABLE).flat_map(move |c| {
            let chunk = (c as u32)
                .checked_sub(self.map.first_chunk)
                .and_then(|slot| self.map.dir.get(slot as usize))
                .and_then(Option::as_deref);
            (0..CHUNK).map(move |i| match chunk {
                Some(chunk) if chunk[i] != EMPTY => TableEntry::valid(chunk[i]),
                _ => TableEntry::INVALID,
            })
        })
    }

    /// The table as the CPU reads it (4 KiB, on the stack).
    pub fn to_block(&self) -> Block {
        let mut block = [TableEntry::INVALID; ENTRIES_PER_TABLE];
        for (slot, entry) in block.iter_mut().zip(self.entries()) {
            *slot = entry;
        }
        block
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_and_unmaps() {
        let mut t = RemapTable::new(1..4096).unwrap();
        assert_eq!(t.heap_bytes(), 0, "an empty map holds nothing");
        assert_eq!(t.get(5), None);
        assert_eq!(
            t.insert(5, 0x12345).unwrap(),
            PagesTouched {
                table: 0,
                directory_changed: true
            }
        );
        assert_eq!(t.get(5), Some(0x12345));
        assert_eq!(
            t.insert(1030, 7).unwrap(),
            PagesTouched {
                table: 1,
                directory_changed: true
            }
        );
        assert!(!t.insert(6, 8).unwrap().directory_changed);
        // A new chunk in a table that exists changes no directory entry.
        assert!(!t.insert(700, 9).unwrap().directory_changed);
        assert_eq!(t.len(), 4);
        assert_eq!(
            t.iter().collect::<Vec<_>>(),
            [(5, 0x12345), (6, 8), (700, 9), (1030, 7)]
        );
        assert_eq!(t.remove(5).map(|(h, _)| h), Some(0x12345));
        assert_eq!(t.remove(5), None);
        assert_eq!(t.get(5), None);
        // Outside the range: never a panic, just nothing.
        assert_eq!(t.get(0xfffff), None);
        assert_eq!(t.remove(0xfffff), None);
        assert_eq!(t.get(0), None);
        assert_eq!(t.len(), 3);
        // Tables stay once made, even when emptied.
        assert_eq!(t.remove(1030).map(|(h, _)| h), Some(7));
        assert_eq!(t.tables().map(|(n, _)| n).collect::<Vec<_>>(), [0, 1]);
    }

    #[test]
    fn covers_a_range_that_does_not_start_at_a_table() {
        let mut t = RemapTable::new(3000..5000).unwrap();
        t.insert(4999, 1).unwrap();
        t.insert(3000, 2).unwrap();
        assert_eq!(t.get(4999), Some(1));
        assert_eq!(t.get(3000), Some(2));
        assert_eq!(t.get(1), None);
        assert_eq!(t.tables().map(|(n, _)| n).collect::<Vec<_>>(), [2, 4]);
        let block = t.table(4).unwrap().to_block();
        assert_eq!(block[4999 & 0x3ff], TableEntry::valid(1));
        assert_eq!(block.iter().filter(|e| e.is_valid()).count(), 1);
        assert!(t.table(3).is_none());
    }

    #[test]
    fn views_are_the_hardware_tables() {
        let mut t = RemapTable::new(1..8192).unwrap();
        let mut model = alloc::collections::BTreeMap::new();
        for (i, g) in (1..8192u32).step_by(37).enumerate() {
            let h = 4096 + i as u32 * 3;
            t.insert(g, h).unwrap();
            model.insert(g, h);
        }
        assert!(t.iter().eq(model.iter().map(|(&g, &h)| (g, h))));
        for (n, view) in t.tables() {
            assert_eq!(view.number(), n);
            for (i, e) in view.entries().enumerate() {
                let g = (n << 10) | i as u32;
                assert_eq!(e.host_pasid(), model.get(&g).copied(), "gPASID {g}");
            }
        }
        // Host PASIDs keep their low 20 bits, as the hardware entry does.
        t.insert(1, 0xfff0_0001).unwrap();
        assert_eq!(t.get(1), Some(1));
        assert_eq!(t.clone(), t);
    }

    #[test]
    fn memory_grows_with_use() {
        let mut t = RemapTable::new(1..4096).unwrap();
        for g in 1..=64 {
            t.insert(g, g + 4096).unwrap();
        }
        // One chunk (0..128) and a few directory slots.
        assert!(t.heap_bytes() <= 512 + 4 * 8, "{}", t.heap_bytes());
        for g in 65..4096 {
            t.insert(g, g + 4096).unwrap();
        }
        assert_eq!(t.len(), 4095);
        // No more than the four 4 KiB tables it replaces, and 32 directory slots.
        assert!(t.heap_bytes() <= 4 * 4096 + 32 * 8, "{}", t.heap_bytes());
    }
}
