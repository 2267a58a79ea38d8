//! pasid-core 0.1's `IdBitmap` (commit 892b698, the floor/next hint and "pending
//! summaries"), kept verbatim but for its doc and tests so that every bench run
//! measures the old allocator next to the new one on the same machine state: the
//! "before" column of BENCHMARKS.md. Not used by the library.
#![allow(dead_code, clippy::all)]

use std::ops::Range;

type Result<T> = std::result::Result<T, std::collections::TryReserveError>;

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
