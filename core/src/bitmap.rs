//! PLACEHOLDER: a naive id bitmap with the final API; replaced by the hierarchical one.

use alloc::vec::Vec;
use core::ops::Range;

use crate::error::Result;

/// A fixed-size set of ids in `range`, each free or used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdBitmap {
    range: Range<u32>,
    used_bits: Vec<u64>,
    used: u32,
}

impl IdBitmap {
    /// All ids of `range` free. Fails only when memory cannot be had.
    pub fn new(range: Range<u32>) -> Result<Self> {
        let len = range.end.saturating_sub(range.start) as usize;
        let mut used_bits = Vec::new();
        used_bits.try_reserve_exact(len.div_ceil(64))?;
        used_bits.resize(len.div_ceil(64), 0);
        Ok(IdBitmap {
            range,
            used_bits,
            used: 0,
        })
    }

    /// The ids this bitmap covers.
    pub fn range(&self) -> Range<u32> {
        self.range.clone()
    }

    /// Marks the lowest free id used and returns it.
    pub fn alloc(&mut self) -> Option<u32> {
        self.alloc_from(self.range.start)
    }

    /// Marks the lowest free id at or after `start` used and returns it.
    pub fn alloc_from(&mut self, start: u32) -> Option<u32> {
        let id = self.first_free_from(start)?;
        self.claim(id);
        Some(id)
    }

    /// The lowest free id at or after `start`.
    pub fn first_free_from(&self, start: u32) -> Option<u32> {
        (start.max(self.range.start)..self.range.end).find(|&id| !self.is_used(id))
    }

    /// Marks `id` used. False if it is out of range or used already.
    pub fn claim(&mut self, id: u32) -> bool {
        if !self.range.contains(&id) || self.is_used(id) {
            return false;
        }
        let i = (id - self.range.start) as usize;
        self.used_bits[i / 64] |= 1 << (i % 64);
        self.used += 1;
        true
    }

    /// Marks `id` free. False if it is out of range or free already.
    pub fn free(&mut self, id: u32) -> bool {
        if !self.is_used(id) {
            return false;
        }
        let i = (id - self.range.start) as usize;
        self.used_bits[i / 64] &= !(1 << (i % 64));
        self.used -= 1;
        true
    }

    /// Whether `id` is used (false outside the range).
    pub fn is_used(&self, id: u32) -> bool {
        if !self.range.contains(&id) {
            return false;
        }
        let i = (id - self.range.start) as usize;
        self.used_bits[i / 64] & (1 << (i % 64)) != 0
    }

    /// How many ids are used.
    pub fn used(&self) -> u32 {
        self.used
    }

    /// How many ids the bitmap covers.
    pub fn capacity(&self) -> u32 {
        self.range.end - self.range.start
    }

    /// The used ids in increasing order.
    pub fn iter_used(&self) -> impl Iterator<Item = u32> + '_ {
        self.range.clone().filter(|&id| self.is_used(id))
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.used_bits.capacity() * 8
    }
}
