//! A hierarchical bitmap id allocator: lowest free id, claim an exact id, free, in fixed
//! memory and in a time that does not grow with how full it is.
//!
//! # Why this shape
//!
//! Allocating and freeing PASIDs sits on VM-exit paths (a vIOMMU's virtual command
//! handler), so the cost must stay flat whether the host has 10 or 500,000 PASIDs out.
//! A flat bitmap scan grows with the fill level; a free list (`BTreeSet`, or a bump
//! counter plus a set of freed ids like rust-vmm's `IdAllocator`) grows its memory with
//! frees and cannot hand out a chosen id cheaply, which migration and p1 recording need.
//!
//! So ids live in 64-bit leaf words with 64-ary summary levels above them, up to a single
//! top word: the shape of jemalloc's bitmap and of the marks in Linux's IDA, which Linux
//! uses for global PASIDs. A bit is **1 when free**, at every level: a summary bit is set
//! exactly when its child word is non-zero, i.e. "somewhere below there is a free id".
//! With that encoding
//!
//! * the lowest free id is one `trailing_zeros` per level on the way down from the top;
//! * "the lowest free id at or after N" (what a range-bounded allocation needs) masks the
//!   word holding N, climbs only while the masked word is empty, then walks down again;
//! * a claim or a free touches the parent only when a word turns zero or stops being
//!   zero, so most updates write one word.
//!
//! Every path is therefore at most `depth` dependent loads up and `depth` down, with
//! `depth = ceil(log64(capacity))`: 4 for 2^20 ids, 2 for a 4096-id guest range.
//!
//! On top of that the bitmap keeps a floor: an index below which every id is used.
//! Lowest-free allocation starts its search there, and a free lowers it, so the common
//! alloc/free pair touches one leaf word and no summary word. A free below the floor
//! also remembers the old floor as `next` (nothing else is free between the two), so
//! once the freed id is handed out again the search resumes at the old floor instead of
//! climbing over the full stretch in between: that keeps churn with random frees cheap.
//! Both are only bounds: when they are stale the search climbs as above, so the worst
//! case stays `2 * depth` loads whatever the fill level.
//!
//! A free below the floor into a full leaf word would set that word's summary bits, and
//! the next alloc, which takes the same id back, would clear them again: with random
//! frees at high fill that pair of climbs is most of the work. So that word is left
//! *pending*: its summary bits stay "full" while it is the floor's word. No search needs
//! them then, since every search starts at or above the floor, in that word, and only
//! climbs to the right of it. The bits are set when the floor moves to another word with
//! the word still holding a free id, and never if the word fills up again first.
//! Summaries are thus exact for the leaves with the pending word counted as full.
//!
//! All levels sit in one boxed slice, leaves first (so a leaf word is found at index / 64
//! with no level offset to load on the hot path) and each summary level after the one
//! below it. The whole structure is one allocation made up front: nothing grows after
//! [`IdBitmap::new`], and 2^20 ids take 16,384 + 256 + 4 + 1 words (130 KiB).
//! Padding bits past the capacity stay 0 ("not free") at every level, so no search needs
//! a bounds test against the capacity.
//!
//! Lowest-free (rather than next-fit) keeps allocation deterministic, which keeps tests,
//! snapshots and the numbers a guest sees reproducible.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::ops::Range;

use crate::error::Result;

/// Enough levels for any `u32` capacity: 2^26 leaf words, then 2^20, 2^14, 2^8, 4, 1.
const MAX_LEVELS: usize = 6;

/// A fixed-size set of ids in `range`, each free or used.
///
/// Memory is allocated once by [`IdBitmap::new`]; no operation allocates afterwards.
/// Ids outside the range are never used: asking about them gives `false` or `None`.
///
/// Two bitmaps are equal when they cover the same range with the same ids used.
#[derive(Debug, Clone)]
pub struct IdBitmap {
    range: Range<u32>,
    /// All levels, leaves first, the top word last. Bit set = free (see the module doc).
    words: Box<[u64]>,
    /// Word offset in `words` of each level; level 0 holds the leaves, at offset 0.
    offsets: [usize; MAX_LEVELS],
    /// How many levels there are (0 when the capacity is 0).
    depth: usize,
    used: u32,
    /// Every index below this is used: where a lowest-free search may start. Not part
    /// of the bitmap's value, so equality ignores it.
    floor: usize,
    /// Above `floor`: every index in `floor + 1..next` is used, so once `floor` itself
    /// is taken the search may start at `next`. Always `> floor`; ignored by equality.
    next: usize,
    /// A leaf word with free ids whose summary bits are not set yet ([`NONE`] if none).
    /// Only the floor's own word is ever pending; see the module doc.
    pending: usize,
}

/// No pending leaf word.
const NONE: usize = usize::MAX;

impl PartialEq for IdBitmap {
    fn eq(&self, other: &Self) -> bool {
        // The leaves are the set; summary words may differ by a pending word.
        self.range == other.range && self.used == other.used && self.leaves() == other.leaves()
    }
}

impl Eq for IdBitmap {}

/// A word whose lowest `bits` bits are set (all of it from 64 on).
#[inline]
fn low_bits(bits: usize) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

impl IdBitmap {
    /// All ids of `range` free. An empty or reversed range gives a bitmap of capacity 0.
    /// Fails only when memory cannot be had ([`Error::OutOfMemory`](crate::Error)).
    pub fn new(range: Range<u32>) -> Result<Self> {
        let range = range.start..range.end.max(range.start);
        let capacity = (range.end - range.start) as usize;

        // Bits per level, leaves first: level l has one bit per word of level l-1.
        let mut bits = [0usize; MAX_LEVELS];
        let mut depth = 0;
        let mut n = capacity;
        while n > 0 {
            bits[depth] = n;
            depth += 1;
            if n <= 64 {
                break;
            }
            n = n.div_ceil(64);
        }
        let words_at = |l: usize| bits[l].div_ceil(64);
        let total: usize = (0..depth).map(words_at).sum();

        let mut words = Vec::new();
        words.try_reserve_exact(total)?;
        let mut offsets = [0usize; MAX_LEVELS];
        for l in 0..depth {
            offsets[l] = words.len();
            // Every id is free, so every child word is non-zero: each level is `bits[l]`
            // ones followed by zero padding.
            let full = bits[l] / 64;
            words.extend(core::iter::repeat_n(u64::MAX, full));
            if bits[l] % 64 != 0 {
                words.push(low_bits(bits[l] % 64));
            }
        }
        Ok(IdBitmap {
            range,
            words: words.into_boxed_slice(),
            offsets,
            depth,
            used: 0,
            floor: 0,
            next: 1,
            pending: NONE,
        })
    }

    /// The ids this bitmap covers (a reversed range given to [`IdBitmap::new`] comes
    /// back empty).
    pub fn range(&self) -> Range<u32> {
        self.range.clone()
    }

    /// Marks the lowest free id used and returns it; `None` when every id is used.
    #[inline(always)]
    pub fn alloc(&mut self) -> Option<u32> {
        // Fast path: a free id in the floor's own leaf word. Load the word once and
        // store the new value, so the next operation waits on one load, not two.
        let floor = self.floor;
        if floor < self.capacity() as usize {
            let slot = floor / 64;
            let word = self.words[slot];
            let masked = word & (u64::MAX << (floor % 64));
            if masked != 0 {
                let index = (floor & !63) + masked.trailing_zeros() as usize;
                let left = word & !(masked & masked.wrapping_neg());
                self.words[slot] = left;
                self.used += 1;
                if left == 0 {
                    self.word_now_full(slot);
                }
                self.raise_floor(index);
                return Some(self.range.start + index as u32);
            }
        }
        let index = self.free_index_at_or_after(floor)?;
        self.mark_used(index);
        self.raise_floor(index);
        Some(self.range.start + index as u32)
    }

    /// Marks the lowest free id at or after `start` used and returns it.
    #[inline]
    pub fn alloc_from(&mut self, start: u32) -> Option<u32> {
        let from = start.saturating_sub(self.range.start) as usize;
        let index = self.free_index_at_or_after(from.max(self.floor))?;
        self.mark_used(index);
        if from <= self.floor {
            self.raise_floor(index);
        }
        Some(self.range.start + index as u32)
    }

    /// The lowest free id at or after `start` (ids below the range count as its start).
    #[inline]
    pub fn first_free_from(&self, start: u32) -> Option<u32> {
        let from = start.saturating_sub(self.range.start) as usize;
        self.free_index_at_or_after(from.max(self.floor))
            .map(|index| self.range.start + index as u32)
    }

    /// Marks `id` used. False if it is out of range or used already.
    #[inline(always)]
    pub fn claim(&mut self, id: u32) -> bool {
        match self.index_of(id) {
            Some(index) if self.leaf_bit(index) => {
                self.mark_used(index);
                true
            }
            _ => false,
        }
    }

    /// Marks `id` free. False if it is out of range or free already.
    #[inline(always)]
    pub fn free(&mut self, id: u32) -> bool {
        let Some(index) = self.index_of(id) else {
            return false;
        };
        // One load of the leaf word for the test and the update.
        let slot = index / 64;
        let word = self.words[slot];
        let bit = 1 << (index % 64);
        if word & bit != 0 {
            return false;
        }
        self.words[slot] = word | bit;
        self.used -= 1;
        // Branches, not min/max: the next alloc's search start then does not wait on
        // the old bounds' values.
        if index < self.floor {
            self.next = self.floor;
            self.floor = index;
            // One branch on the common path (a word with other free ids, none pending).
            if (word == 0) | (self.pending != NONE) {
                self.floor_moved_down(slot, word == 0);
            }
        } else {
            if word == 0 {
                self.set_summaries(slot);
            }
            if index > self.floor && index < self.next {
                self.next = index;
            }
        }
        true
    }

    /// Whether `id` is used (false outside the range).
    #[inline(always)]
    pub fn is_used(&self, id: u32) -> bool {
        self.index_of(id).is_some_and(|index| !self.leaf_bit(index))
    }

    /// How many ids are used.
    #[inline]
    pub fn used(&self) -> u32 {
        self.used
    }

    /// How many ids the bitmap covers.
    #[inline]
    pub fn capacity(&self) -> u32 {
        self.range.end - self.range.start
    }

    /// The used ids in increasing order. Leaf words with no used id are skipped whole.
    pub fn iter_used(&self) -> impl Iterator<Item = u32> + '_ {
        let leaves = self.leaves();
        let capacity = self.capacity() as usize;
        let base = self.range.start;
        leaves.iter().enumerate().flat_map(move |(w, &free)| {
            // Valid bits of this word: all but the padding of the last word.
            let valid = low_bits(capacity - w * 64);
            let mut used = !free & valid;
            core::iter::from_fn(move || {
                if used == 0 {
                    return None;
                }
                let bit = used.trailing_zeros();
                used &= used - 1;
                Some(base + (w * 64) as u32 + bit)
            })
        })
    }

    /// Heap bytes held (fixed at construction).
    pub fn heap_bytes(&self) -> usize {
        core::mem::size_of_val::<[u64]>(&self.words)
    }

    // ---- internals; `index` is an id's offset from the range start ----

    #[inline(always)]
    fn index_of(&self, id: u32) -> Option<usize> {
        let index = id.wrapping_sub(self.range.start);
        (index < self.capacity()).then_some(index as usize)
    }

    /// The leaf bit of `index`: true when free.
    #[inline(always)]
    fn leaf_bit(&self, index: usize) -> bool {
        self.words[index / 64] & (1 << (index % 64)) != 0
    }

    /// From word `word` of `level`, known to be non-zero, down to the lowest free leaf.
    #[inline]
    fn descend(&self, level: usize, mut word: usize) -> usize {
        for l in (0..=level).rev() {
            let w = self.words[self.offsets[l] + word];
            word = word * 64 + w.trailing_zeros() as usize;
        }
        word
    }

    /// The lowest free index at or after `bit`: mask the leaf word holding it and, only
    /// if nothing is free there, climb.
    #[inline(always)]
    fn free_index_at_or_after(&self, bit: usize) -> Option<usize> {
        if bit >= self.capacity() as usize {
            return None;
        }
        let word = bit / 64;
        let masked = self.words[word] & (u64::MAX << (bit % 64));
        if masked != 0 {
            return Some(word * 64 + masked.trailing_zeros() as usize);
        }
        self.climb_for_free(word + 1)
    }

    /// Nothing is free in the leaf word before `bit` (a bit of level 1, i.e. a leaf word
    /// number): climb while the masked word is empty, then walk down.
    #[cold]
    #[inline(never)]
    fn climb_for_free(&self, mut bit: usize) -> Option<usize> {
        for l in 1..self.depth {
            // Past the last word of the level below: nothing further right.
            if bit >= self.words_at(l - 1) {
                return None;
            }
            let word = bit / 64;
            let masked = self.words[self.offsets[l] + word] & (u64::MAX << (bit % 64));
            if masked != 0 {
                return Some(self.descend(l - 1, word * 64 + masked.trailing_zeros() as usize));
            }
            // Nothing free in the rest of this word: on to the parent, one bit to the
            // right of this word's own bit.
            bit = word + 1;
        }
        None
    }

    /// The leaf words.
    fn leaves(&self) -> &[u64] {
        if self.depth == 0 {
            &[]
        } else {
            &self.words[..self.words_at(0)]
        }
    }

    /// Number of words at level `l`.
    #[inline]
    fn words_at(&self, l: usize) -> usize {
        let end = if l + 1 == self.depth {
            self.words.len()
        } else {
            self.offsets[l + 1]
        };
        end - self.offsets[l]
    }

    /// `index`, the lowest free index at or after the floor, was just taken.
    #[inline(always)]
    fn raise_floor(&mut self, index: usize) {
        // If it was the floor itself, everything up to `next` is used; otherwise the
        // ids between the floor and `index` were used already.
        self.floor = if index == self.floor {
            self.next
        } else {
            index + 1
        };
        self.next = self.floor + 1;
        if self.pending != NONE {
            self.floor_moved_up();
        }
    }

    /// A free moved the floor down into leaf word `word`, which was full if `was_full`.
    #[cold]
    #[inline(never)]
    fn floor_moved_down(&mut self, word: usize, was_full: bool) {
        if self.pending != NONE && self.pending != word {
            self.flush_pending();
        }
        if was_full {
            // The new floor's word: the next alloc most likely takes this id back, so
            // leave its summaries alone while the floor stays in this word.
            self.pending = word;
        }
    }

    /// The floor went up while a word is pending: flush it if the floor left it.
    #[cold]
    #[inline(never)]
    fn floor_moved_up(&mut self) {
        if self.floor / 64 != self.pending {
            self.flush_pending();
        }
    }

    /// Sets the summary bits of the pending word, if it still has a free id.
    #[cold]
    #[inline(never)]
    fn flush_pending(&mut self) {
        let word = core::mem::replace(&mut self.pending, NONE);
        if self.words[word] != 0 {
            self.set_summaries(word);
        }
    }

    /// Leaf word `word` has just lost its last free id.
    #[inline(always)]
    fn word_now_full(&mut self, word: usize) {
        if word == self.pending {
            // Its summary bits were never set: they already say "full".
            self.pending = NONE;
        } else {
            self.clear_summaries(word);
        }
    }

    /// Clears the free bit of `index`; a word that turns zero clears its bit above.
    #[inline(always)]
    fn mark_used(&mut self, index: usize) {
        self.used += 1;
        let slot = &mut self.words[index / 64];
        *slot &= !(1 << (index % 64));
        if *slot == 0 {
            self.word_now_full(index / 64);
        }
    }

    /// Leaf word `word` turned all-used: clear its bit above, and so on up.
    #[cold]
    #[inline(never)]
    fn clear_summaries(&mut self, mut word: usize) {
        for l in 1..self.depth {
            let slot = &mut self.words[self.offsets[l] + word / 64];
            *slot &= !(1 << (word % 64));
            if *slot != 0 {
                break;
            }
            word /= 64;
        }
    }

    /// Leaf word `word` got its first free id: set its bit above, and so on up.
    #[cold]
    #[inline(never)]
    fn set_summaries(&mut self, mut word: usize) {
        for l in 1..self.depth {
            let slot = &mut self.words[self.offsets[l] + word / 64];
            let was = *slot;
            *slot = was | (1 << (word % 64));
            if was != 0 {
                break;
            }
            word /= 64;
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use alloc::collections::BTreeSet;
    use alloc::vec;
    use proptest::prelude::*;

    /// Checks every summary bit against its child word and `used` against the leaves.
    fn check_invariants(b: &IdBitmap) {
        // Summaries are exact with the pending word counted as full.
        let mut exact = b.words.clone();
        if b.pending != NONE {
            assert_ne!(b.words[b.pending], 0, "a pending word has a free id");
            assert_eq!(b.floor / 64, b.pending, "only the floor's word is pending");
            exact[b.pending] = 0;
        }
        for l in 1..b.depth {
            for w in 0..b.words_at(l) {
                let word = b.words[b.offsets[l] + w];
                for bit in 0..64 {
                    let child = w * 64 + bit;
                    let expect = child < b.words_at(l - 1) && exact[b.offsets[l - 1] + child] != 0;
                    assert_eq!(
                        word & (1 << bit) != 0,
                        expect,
                        "level {l} word {w} bit {bit}"
                    );
                }
            }
        }
        if b.depth > 0 {
            let last = b.words_at(0) - 1;
            let pad = !low_bits(b.capacity() as usize - last * 64);
            assert_eq!(b.words[last] & pad, 0, "padding must stay used");
        }
        assert_eq!(b.iter_used().count(), b.used() as usize);
        check_bounds(b);
    }

    /// Checks the search bounds: nothing free below `floor`, nor in `floor + 1..next`.
    fn check_bounds(b: &IdBitmap) {
        let cap = b.capacity() as usize;
        assert!(b.next > b.floor, "floor {} next {}", b.floor, b.next);
        assert!(
            (0..b.floor.min(cap)).all(|i| !b.leaf_bit(i)),
            "floor {}",
            b.floor
        );
        assert!(
            (b.floor + 1..b.next.min(cap)).all(|i| !b.leaf_bit(i)),
            "floor {} next {}",
            b.floor,
            b.next
        );
    }

    fn fill(b: &mut IdBitmap) -> Vec<u32> {
        core::iter::from_fn(|| b.alloc()).collect()
    }

    #[test]
    fn sizes_of_the_levels() {
        let b = IdBitmap::new(0..1 << 20).unwrap();
        assert_eq!(b.depth, 4);
        assert_eq!(b.heap_bytes(), (16384 + 256 + 4 + 1) * 8);
        assert!(b.heap_bytes() <= 160 * 1024);
        assert_eq!(IdBitmap::new(1..4096).unwrap().heap_bytes(), (64 + 1) * 8);
        assert_eq!(IdBitmap::new(0..64).unwrap().heap_bytes(), 8);
        assert_eq!(IdBitmap::new(0..65).unwrap().heap_bytes(), 3 * 8);
    }

    #[test]
    fn empty_and_reversed_ranges_hold_nothing() {
        #[allow(clippy::reversed_empty_ranges)]
        for range in [5..5, 9..3, 0..0, u32::MAX..u32::MAX, u32::MAX..0] {
            let mut b = IdBitmap::new(range).unwrap();
            assert_eq!(b.capacity(), 0);
            assert!(b.range().is_empty());
            assert_eq!(b.alloc(), None);
            assert_eq!(b.alloc_from(0), None);
            assert_eq!(b.first_free_from(u32::MAX), None);
            for id in [0, 3, 5, 9, u32::MAX] {
                assert!(!b.claim(id));
                assert!(!b.free(id));
                assert!(!b.is_used(id));
            }
            assert_eq!(b.iter_used().count(), 0);
            assert_eq!(b.heap_bytes(), 0);
        }
    }

    #[test]
    fn fills_in_order_and_reports_full() {
        for (start, cap) in [
            (0, 1),
            (7, 1),
            (0, 64),
            (100, 64),
            (0, 65),
            (3, 65),
            (0, 4096),
            (1, 4095),
            (4096, 4097),
            (0, 1 << 20),
            (4096, (1 << 19) - 4096),
        ] {
            let mut b = IdBitmap::new(start..start + cap).unwrap();
            let got = fill(&mut b);
            assert_eq!(got.len(), cap as usize);
            assert!(got.iter().copied().eq(start..start + cap), "{start}+{cap}");
            assert_eq!(b.used(), cap);
            assert_eq!(b.alloc(), None);
            assert_eq!(b.alloc_from(start), None);
            assert_eq!(b.first_free_from(0), None);
            check_invariants(&b);
            assert!(b.iter_used().eq(start..start + cap));

            // Freeing one id makes exactly that id allocatable again.
            for id in [start, start + cap / 2, start + cap - 1] {
                assert!(b.free(id));
                assert!(!b.free(id));
                assert_eq!(b.first_free_from(0), Some(id));
                assert_eq!(b.alloc(), Some(id));
                assert_eq!(b.alloc(), None);
            }
            check_invariants(&b);
        }
    }

    #[test]
    fn out_of_range_ids_are_refused() {
        let mut b = IdBitmap::new(100..200).unwrap();
        for id in [0, 99, 200, 201, u32::MAX] {
            assert!(!b.claim(id));
            assert!(!b.free(id));
            assert!(!b.is_used(id));
        }
        assert_eq!(b.first_free_from(200), None);
        assert_eq!(b.first_free_from(u32::MAX), None);
        assert_eq!(b.alloc_from(u32::MAX), None);
        assert_eq!(b.first_free_from(0), Some(100));
        assert_eq!(b.used(), 0);
        assert!(b.claim(199));
        assert_eq!(b.alloc_from(199), None);
        assert_eq!(b.alloc_from(150), Some(150));
        check_invariants(&b);
    }

    #[test]
    fn first_free_from_crosses_words_and_levels() {
        let mut b = IdBitmap::new(0..1 << 20).unwrap();
        // Use everything below 300_000 and a stretch around a 4096 boundary.
        for id in 0..300_000 {
            assert!(b.claim(id));
        }
        assert_eq!(b.first_free_from(0), Some(300_000));
        assert_eq!(b.first_free_from(123_456), Some(300_000));
        for id in 300_000..(1 << 20) - 1 {
            assert!(b.claim(id));
        }
        assert_eq!(b.first_free_from(5), Some((1 << 20) - 1));
        assert_eq!(b.alloc(), Some((1 << 20) - 1));
        assert_eq!(b.alloc(), None);
        assert!(b.free(4095));
        assert!(b.free(4096 * 200 + 17));
        assert_eq!(b.first_free_from(4096), Some(4096 * 200 + 17));
        assert_eq!(b.first_free_from(4096 * 200 + 18), None);
        assert_eq!(b.first_free_from(4095), Some(4095));
        check_invariants(&b);
    }

    #[test]
    fn claim_and_free_exact_ids() {
        let mut b = IdBitmap::new(10..140).unwrap();
        assert!(b.claim(10));
        assert!(!b.claim(10));
        assert!(b.claim(73));
        assert!(b.claim(139));
        assert_eq!(b.iter_used().collect::<Vec<_>>(), vec![10, 73, 139]);
        assert_eq!(b.alloc(), Some(11));
        assert_eq!(b.alloc_from(73), Some(74));
        assert!(b.free(73));
        assert_eq!(b.alloc_from(70), Some(70));
        assert_eq!(b.alloc_from(71), Some(71));
        assert_eq!(b.alloc_from(72), Some(72));
        assert_eq!(b.alloc_from(72), Some(73));
        assert_eq!(b.used(), 8);
        check_invariants(&b);
        let copy = b.clone();
        assert_eq!(copy, b);
        assert!(b.free(11));
        assert_ne!(copy, b);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Alloc,
        AllocMany(u16),
        AllocFrom(u32),
        FirstFreeFrom(u32),
        Claim(u32),
        Free(u32),
        FreeNth(usize),
        IsUsed(u32),
    }

    /// Ids near the range, its ends and its word and summary boundaries, so that
    /// collisions happen even in big ranges.
    fn id_in(range: Range<u32>) -> impl Strategy<Value = u32> + Clone {
        let (s, e) = (range.start, range.end);
        let len = e.saturating_sub(s);
        prop_oneof![
            2 => (0..len.max(1) + 20).prop_map(move |o| s.saturating_sub(10).saturating_add(o)),
            1 => (0..len.clamp(1, 300)).prop_map(move |o| s + o),
            1 => (0..40u32).prop_map(move |o| e.saturating_add(20).saturating_sub(o)),
            1 => (0..8u32, 0..4u32).prop_map(move |(k, d)| s + (k * 64 + d * 4096).min(len)),
        ]
    }

    fn op_in(range: Range<u32>) -> impl Strategy<Value = Op> {
        let id = id_in(range);
        prop_oneof![
            3 => Just(Op::Alloc),
            1 => (1..300u16).prop_map(Op::AllocMany),
            2 => id.clone().prop_map(Op::AllocFrom),
            1 => id.clone().prop_map(Op::FirstFreeFrom),
            2 => id.clone().prop_map(Op::Claim),
            2 => id.clone().prop_map(Op::Free),
            3 => any::<usize>().prop_map(Op::FreeNth),
            1 => id.prop_map(Op::IsUsed),
        ]
    }

    fn range_strategy() -> impl Strategy<Value = Range<u32>> {
        prop_oneof![
            3 => (0..200u32, 0..300u32).prop_map(|(s, l)| s..s + l),
            2 => (0..100u32, 4000..4300u32).prop_map(|(s, l)| s..s + l),
            1 => (0..3u32, 262_100..262_200u32).prop_map(|(s, l)| s..s + l),
            1 => (0..3u32).prop_map(|d| u32::MAX - 70 - d..u32::MAX - d),
            1 => (0..300u32, 0..300u32).prop_map(|(a, b)| a..b),
        ]
    }

    /// The model's answer to "lowest free id at or after `start`".
    fn model_first_free(range: &Range<u32>, used: &BTreeSet<u32>, start: u32) -> Option<u32> {
        (start.max(range.start)..range.end.max(range.start)).find(|id| !used.contains(id))
    }

    fn cases() -> u32 {
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(48)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

        #[test]
        fn behaves_like_a_btreeset(
            (range, ops) in range_strategy()
                .prop_flat_map(|r| (Just(r.clone()), proptest::collection::vec(op_in(r), 1..60)))
        ) {
            let mut b = IdBitmap::new(range.clone()).unwrap();
            let mut model = BTreeSet::new();
            for op in ops {
                match op {
                    Op::Alloc => {
                        let want = model_first_free(&range, &model, 0);
                        prop_assert_eq!(b.alloc(), want);
                        model.extend(want);
                    }
                    Op::AllocMany(n) => {
                        for _ in 0..n {
                            let want = model_first_free(&range, &model, 0);
                            prop_assert_eq!(b.alloc(), want);
                            model.extend(want);
                        }
                    }
                    Op::AllocFrom(start) => {
                        let want = model_first_free(&range, &model, start);
                        prop_assert_eq!(b.alloc_from(start), want);
                        model.extend(want);
                    }
                    Op::FirstFreeFrom(start) => {
                        prop_assert_eq!(b.first_free_from(start), model_first_free(&range, &model, start));
                    }
                    Op::Claim(id) => {
                        let want = range.contains(&id) && !model.contains(&id);
                        prop_assert_eq!(b.claim(id), want);
                        if want {
                            model.insert(id);
                        }
                    }
                    Op::Free(id) => prop_assert_eq!(b.free(id), model.remove(&id)),
                    Op::FreeNth(n) => {
                        if let Some(&id) = model.iter().nth(n % model.len().max(1)) {
                            prop_assert!(b.free(id));
                            model.remove(&id);
                        }
                    }
                    Op::IsUsed(id) => prop_assert_eq!(b.is_used(id), model.contains(&id)),
                }
                if b.capacity() < 10_000 {
                    check_invariants(&b);
                } else {
                    check_bounds(&b);
                }
                prop_assert_eq!(b.used() as usize, model.len());
                prop_assert!(b.iter_used().eq(model.iter().copied()));
            }
            check_invariants(&b);
        }
    }
}
