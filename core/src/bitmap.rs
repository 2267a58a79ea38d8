//! A hierarchical bitmap id allocator: lowest free id, claim an exact id, free, in fixed
//! memory and in a time that depends neither on how full it is nor on how it got there.
//!
//! # Why this shape
//!
//! Allocating and freeing PASIDs sits on VM-exit paths (a vIOMMU's virtual command
//! handler), so the cost must stay flat whether the host has 10 or 500,000 PASIDs out,
//! and whether they were handed out in order or freed at random over a long uptime.
//! A flat bitmap scan grows with the fill level; a free list (`BTreeSet`, or a bump
//! counter plus a set of freed ids like rust-vmm's `IdAllocator`) grows its memory with
//! frees and cannot hand out a chosen id cheaply, which migration and p1 recording need.
//!
//! So ids live in 64-bit leaf words with 64-ary summary levels above them, up to a single
//! top word: the shape of jemalloc's bitmap and of the marks in Linux's IDA, which Linux
//! uses for global PASIDs. A bit is **1 when free**, at every level: a summary bit is set
//! when its child word is non-zero, i.e. "somewhere below there is a free id".
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
//! # The hint, the resume points and the dirty word
//!
//! Four small pieces of state keep the common pairs at one leaf word, on every
//! history:
//!
//! * **`hint`**, a leaf word number with every word below it full. Lowest-free
//!   allocation loads that word first; a free below it lowers it. It is a word, not a
//!   bit: the lowest set bit of the hint word *is* the lowest free id. The hint word
//!   itself lives in the struct, not in the leaves (whose entry for it is written back
//!   when the hint moves): an allocation, and a free or claim beside the lowest free
//!   id, read no leaf at all. A guest's bitmap sits in its slot, so with thousands of
//!   guests a guest's churn step then misses on the slot alone, not on the slot and
//!   then, waiting for the pointer, on the leaf it names.
//! * **`resume`** and **`resume_next`**, above the hint and above each other, with every
//!   word strictly between two of them full: where the search for a free word goes on
//!   when the hint word is full, before it ever reads a summary. A free below the hint
//!   pushes the old hint onto them, so once the freed id is handed out again the hint
//!   goes straight back instead of climbing over the full stretch in between; a free
//!   between them takes its place in the order. Two points, not one, so that two frees
//!   into a full stretch (a full allocator giving back two ids and handing them out
//!   again) are found again with no search at all. And while the hint word is full
//!   (an allocation emptied it), a free into any word before `resume`, left or right of
//!   the hint, makes that word the hint without moving the others: everything below
//!   it is full. Churn (free a random used id, allocate the lowest) then never searches
//!   and never touches a summary, at any fill, in order or after random frees.
//! * **A free into a word that had a free id moves nothing**: such a word is the hint
//!   word, a resume point or right of them all, and its summaries already say "free".
//!   So a claim's undo and a free beside the lowest free id are a load, a store and a
//!   count, like a flat bitset's.
//! * **The dirty word** (at most one). No search ever reads a summary bit that covers
//!   the hint word or anything left of it: every search starts at the hint or to its
//!   right, checks that leaf word itself, and at each level climbs only to the right of
//!   its own path. So the one word a free has just made the hint (the usual next step:
//!   the next allocation takes the id back) is left *dirty*: its summary bits are not
//!   set; when the allocation empties it again they are right as they stand and the
//!   word is clean. Likewise the hint word an allocation empties keeps its summary
//!   bits set, and the hint stays on it until the next allocation moves past it: the
//!   usual next step (the id freed again) finds everything in place. Summaries are
//!   exact for the leaves with the dirty word counted as what its bits say. It is
//!   cleaned for real (its summaries set or cleared, a cold path) only when another
//!   word would become dirty or the hint moves below it.
//! * **A claim's dirty word.** A claim that empties a word makes it the dirty word
//!   (cleaning the one before, if any), its summary bits left saying "free", so the usual
//!   next step, the claim undone by a free, touches no summary either (on a nearly
//!   full bitmap nearly every claim empties its word). That word may be right of the
//!   hint, the one case where a search can read a stale bit: it can only say "free"
//!   over a full word, so a search that lands on a full leaf word goes on past it, at
//!   most once. Otherwise the dirty word is at or left of the hint.
//! * **`resume`'s summaries can wait.** Every search that could reach `resume` (one
//!   that starts right of the hint and at or before it) reads `resume`'s leaf word
//!   first, since every word between the hint and `resume` is full. So a free that
//!   gives `resume` its first free id (or makes such a word `resume`) leaves its
//!   summary bits clear and says so in a flag. When the hint moves onto it (the next
//!   allocation but one) it becomes the dirty word, bits clear, and the allocation
//!   that empties it finds them right; when it turns into `resume_next` its bits are
//!   set for real. A full allocator given back two ids then hands them out again
//!   with no summary walk at all, where it took two (a set for the higher id, a
//!   clear once it was taken again).
//!
//! A summary update may stop at level 1 (a branch that goes the same way call after
//! call) and otherwise visits every level above with no branch on the data (setting a
//! bit that is set is harmless; whether a word emptied is carried up as a mask): a loop
//! that stops at the first level left unchanged mispredicts its exit on random ids.
//!
//! Unlike 0.1's "pending summaries" (which could leave a refilled word pending for good
//! after random frees, sending every later operation down two out-of-line calls),
//! nothing here outlives the next step that moves the hint, so no history leaves the
//! allocator on a slower path. The worst case is still `2 * depth` loads plus one
//! clean-up of `depth` words.
//!
//! Leaves and summaries are two boxed slices, allocated once in [`IdBitmap::new`]:
//! nothing grows afterwards, and 2^20 ids take 16,384 + 256 + 4 + 1 words (130 KiB).
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

/// "Every id is used", as `alloc_past_hint` answers it: never an id, as a range ends at
/// `u32::MAX` at most.
const NO_ID: u32 = u32::MAX;

/// A fixed-size set of ids in `range`, each free or used: the default source of a
/// host's shared PASIDs ([`HostPasidSource`](crate::HostPasidSource)) and every guest's
/// gPASID allocator.
///
/// A hierarchical bitmap (64-bit leaf words under 64-ary summary words, the shape of
/// jemalloc's bitmap and of Linux's IDA): the lowest free id, the lowest at or after an
/// id, a claim of a chosen id and a free each take at most two walks of `depth`
/// dependent loads (4 for 2^20 ids), however full it is and whatever the order of past
/// frees; 2^20 ids take 130 KiB. `core/src/bitmap.rs` gives the design.
///
/// Memory is allocated once by [`IdBitmap::new`]; no operation allocates afterwards.
/// Ids outside the range are never used: asking about them gives `false` or `None`.
///
/// Two bitmaps are equal when they cover the same range with the same ids used.
// `repr(C)`, hot fields first: what an alloc or a free reads sits in the struct's first
// cache line (a guest's bitmap lives inside its slot; with thousands of guests every
// line of the slot that an operation touches is a likely cache miss).
#[derive(Debug, Clone)]
#[repr(C)]
pub struct IdBitmap {
    /// Leaf words, one bit per id. Bit set = free (see the module doc).
    leaves: Box<[u64]>,
    /// Leaf word `hint` itself (0 when there are no leaves), kept in the struct and not
    /// in `leaves`, whose entry for it is stale until the hint moves on and writes it
    /// back: an allocation, and a free or a claim in the hint word, then touch no leaf.
    /// With thousands of guests a guest's leaves are a cache miss, and one that waits
    /// for the load of `leaves` itself.
    hint_word: u64,
    /// Every leaf word below this one is full: where lowest-free allocation looks first.
    /// At most `leaves.len()`. Not part of the bitmap's value; equality ignores it.
    /// Word numbers are `u32` (there are at most 2^26 leaf words), which keeps the hot
    /// head of the struct in one cache line.
    hint: u32,
    /// Every leaf word strictly between `hint` and this one is full; `> hint`.
    resume: u32,
    /// Every leaf word strictly between `resume` and this one is full; `> resume`.
    resume_next: u32,
    /// One more than the dirty leaf word (0: none), whose summary bits say `dirty_set`
    /// ("has a free id") whatever the word holds: at or left of `hint`, or right of it
    /// full with `dirty_set` (a claim's). Ignored by equality, as are `hint` and the
    /// resume points.
    dirty: u32,
    /// The first id.
    start: u32,
    /// How many ids (the range's length), kept rather than the range's end so that the
    /// range test of an id is one subtraction and one compare.
    capacity: u32,
    /// Ids ever marked used and ever freed (both wrapping): `used` is their difference.
    /// Two counters, not one, so that a claim followed by a free (or an alloc by a free)
    /// does not chain two read-modify-writes of one word through memory.
    taken: u32,
    returned: u32,
    dirty_set: bool,
    /// `resume`'s summary bits are clear whatever the word holds: a free gave it its
    /// first free id and left them (see the module doc). Never set for the dirty word.
    resume_unsummarised: bool,
    /// Summary levels 1.., each after the one below, the top word last.
    summary: Box<[u64]>,
    /// Word offset in `summary` of each level `l >= 1` (entry 0 unused).
    offsets: [u32; MAX_LEVELS],
    /// Words at each level (level 0: the leaves).
    lens: [u32; MAX_LEVELS],
    /// How many levels there are, leaves included (0 when the capacity is 0).
    depth: u8,
}

impl IdBitmap {
    /// How many of the struct's first bytes an alloc or a free of the fast path reads:
    /// through `resume_unsummarised`. The guest slot's layout keeps them in one cache
    /// line.
    #[cfg(test)]
    pub(crate) const HOT_BYTES: usize =
        core::mem::offset_of!(IdBitmap, resume_unsummarised) + core::mem::size_of::<bool>();
}

impl PartialEq for IdBitmap {
    fn eq(&self, other: &Self) -> bool {
        // The leaves are the set; summaries may differ by a dirty word.
        self.range() == other.range()
            && self.used() == other.used()
            && self.leaf_words().eq(other.leaf_words())
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

/// `bits` ones followed by zero padding, in whole words.
fn try_ones(bits: usize) -> Result<Vec<u64>> {
    let mut words = Vec::new();
    words.try_reserve_exact(bits.div_ceil(64))?;
    words.extend(core::iter::repeat_n(u64::MAX, bits / 64));
    if bits % 64 != 0 {
        words.push(low_bits(bits % 64));
    }
    Ok(words)
}

impl IdBitmap {
    /// A bitmap of no ids, holding no memory: what an empty guest slot keeps.
    pub(crate) fn empty() -> Self {
        let none = [0; MAX_LEVELS];
        Self::assembled(Box::default(), Box::default(), 0..0, none, none, 0)
    }

    /// A bitmap of the given words with every id free, its hints at the start.
    fn assembled(
        leaves: Box<[u64]>,
        summary: Box<[u64]>,
        range: Range<u32>,
        offsets: [u32; MAX_LEVELS],
        lens: [u32; MAX_LEVELS],
        depth: u8,
    ) -> Self {
        IdBitmap {
            hint_word: leaves.first().copied().unwrap_or(0),
            leaves,
            hint: 0,
            resume: 1,
            resume_next: 2,
            dirty: 0,
            dirty_set: false,
            resume_unsummarised: false,
            taken: 0,
            returned: 0,
            start: range.start,
            capacity: range.end - range.start,
            summary,
            offsets,
            lens,
            depth,
        }
    }

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
        let mut lens = [0u32; MAX_LEVELS];
        for l in 0..depth {
            lens[l] = bits[l].div_ceil(64) as u32;
        }

        // Every id is free, so every child word is non-zero: each level is `bits[l]`
        // ones followed by zero padding.
        let leaves = try_ones(bits[0])?;
        let mut summary = Vec::new();
        summary.try_reserve_exact((1..depth).map(|l| lens[l] as usize).sum())?;
        let mut offsets = [0u32; MAX_LEVELS];
        for l in 1..depth {
            offsets[l] = summary.len() as u32;
            summary.extend(try_ones(bits[l])?);
        }
        Ok(Self::assembled(
            leaves.into_boxed_slice(),
            summary.into_boxed_slice(),
            range,
            offsets,
            lens,
            depth as u8,
        ))
    }

    /// The ids this bitmap covers (a reversed range given to [`IdBitmap::new`] comes
    /// back empty).
    pub fn range(&self) -> Range<u32> {
        self.start..self.start + self.capacity
    }

    /// Marks the lowest free id used and returns it; `None` when every id is used.
    #[inline(always)]
    pub fn alloc(&mut self) -> Option<u32> {
        // Fast path: the hint word has a free id, and its lowest one is the answer.
        let w = self.hint as usize;
        let word = self.hint_word;
        let id = if word != 0 {
            self.take_lowest(w, word)
        } else {
            self.alloc_past_hint()
        };
        // One value out of both paths, tested once, rather than a tag merged and
        // tested again.
        (id != NO_ID).then_some(id)
    }

    /// Marks the lowest free id at or after `start` used and returns it.
    #[inline]
    pub fn alloc_from(&mut self, start: u32) -> Option<u32> {
        let from = start.saturating_sub(self.start) as usize;
        let index = self.free_index_at_or_after(from.max(self.hint as usize * 64))?;
        let w = index / 64;
        if from <= self.hint as usize * 64 {
            // Everything between the hint and this word is used.
            if w >= self.resume as usize {
                self.leave_resume(w as u32);
                self.resume = w as u32 + 1;
                self.resume_next = w as u32 + 2;
            }
            self.move_hint(w, self.leaf(w));
        }
        self.take(w, 1 << (index % 64));
        Some(self.start + index as u32)
    }

    /// The lowest free id at or after `start` (ids below the range count as its start).
    #[inline]
    pub fn first_free_from(&self, start: u32) -> Option<u32> {
        let from = start.saturating_sub(self.start) as usize;
        self.free_index_at_or_after(from.max(self.hint as usize * 64))
            .map(|index| self.start + index as u32)
    }

    /// Marks `id` used. False if it is out of range or used already.
    #[inline(always)]
    pub fn claim(&mut self, id: u32) -> bool {
        let Some(index) = self.index_of(id) else {
            return false;
        };
        let w = index / 64;
        let bit = 1 << (index % 64);
        if w == self.hint as usize {
            return self.claim_in_hint_word(bit);
        }
        if self.leaves[w] & bit == 0 {
            return false;
        }
        self.take(w, bit);
        true
    }

    /// [`IdBitmap::claim`] in the hint word, held in the struct: out of line, as a
    /// claim of an id beside the lowest free one is rare.
    #[inline(never)]
    fn claim_in_hint_word(&mut self, bit: u64) -> bool {
        if self.hint_word & bit == 0 {
            return false;
        }
        self.take(self.hint as usize, bit);
        true
    }

    /// Marks `id` free. False if it is out of range or free already.
    #[inline(always)]
    pub fn free(&mut self, id: u32) -> bool {
        let Some(index) = self.index_of(id) else {
            return false;
        };
        let w = index / 64;
        let bit = 1 << (index % 64);
        if w == self.hint as usize {
            // Into the hint word, held in the struct: no leaf is touched.
            let word = self.hint_word;
            if word & bit != 0 {
                return false;
            }
            self.hint_word = word | bit;
            self.returned = self.returned.wrapping_add(1);
            if word == 0 {
                // The lowest free id given back into the emptied hint word: its dirty
                // state to settle.
                self.hint_word_refilled(w);
            }
            return true;
        }
        // One load of the leaf word for the test and the update.
        let leaf = &mut self.leaves[w];
        let word = *leaf;
        if word & bit != 0 {
            return false;
        }
        *leaf = word | bit;
        self.returned = self.returned.wrapping_add(1);
        if word != 0 {
            // The word had a free id already, so it is `resume`, `resume_next` or right
            // of them all (every word strictly between them is full), and its
            // summaries say so (or it is the dirty word, whose bits stand): nothing
            // moves. A claim's undo.
            return true;
        }
        // Every word below `floor` is full: the hint word too when an allocation has
        // emptied it (and left the hint on it), and then everything up to `resume`.
        let hint_full = self.hint_word == 0;
        let floor = if hint_full { self.resume } else { self.hint };
        if w < floor as usize {
            // Full until now: the lowest word with a free id. Every word strictly
            // between it and `floor` is full, so the bounds above stay true with
            // `floor` as the first, and the next allocation takes the id from the new
            // hint word, with no search and no summary update (see the module doc on
            // the dirty word). Churn's usual case, left or right of an emptied hint.
            if !hint_full {
                self.settle_resume();
                self.resume_next = self.resume;
                self.resume = self.hint;
                if self.dirty == self.hint + 1 {
                    // The old hint was made the hint by a free, its summaries left
                    // clear: as `resume` they can stay so.
                    self.dirty = 0;
                    self.resume_unsummarised = true;
                }
            }
            self.move_hint(w, word | bit);
            self.word_now_dirty(w);
        } else if self.dirty as usize == w + 1 && w > self.resume as usize {
            // A claim emptied it and left its summaries saying "free" (see
            // `word_now_full`): they are right again. A claim's undo; the word had a
            // free id, so it is not strictly between two resume points either.
            self.dirty = 0;
        } else {
            self.refilled_right_of_hint(w);
        }
        true
    }

    /// Whether `id` is used (false outside the range).
    #[inline(always)]
    pub fn is_used(&self, id: u32) -> bool {
        self.index_of(id)
            .is_some_and(|index| self.leaf(index / 64) & (1 << (index % 64)) == 0)
    }

    /// How many ids are used.
    #[inline]
    pub fn used(&self) -> u32 {
        self.taken.wrapping_sub(self.returned)
    }

    /// How many ids the bitmap covers.
    #[inline]
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// The used ids in increasing order. Leaf words with no used id are skipped whole.
    pub fn iter_used(&self) -> impl Iterator<Item = u32> + '_ {
        let capacity = self.capacity() as usize;
        let base = self.start;
        self.leaf_words().enumerate().flat_map(move |(w, free)| {
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
        core::mem::size_of_val::<[u64]>(&self.leaves)
            + core::mem::size_of_val::<[u64]>(&self.summary)
    }

    // ---- internals; `index` is an id's offset from the range start ----

    /// Leaf word `w` as it stands: the struct's `hint_word` when it is the hint word.
    #[inline(always)]
    fn leaf(&self, w: usize) -> u64 {
        if w == self.hint as usize {
            self.hint_word
        } else {
            self.leaves[w]
        }
    }

    /// Every leaf word as it stands, in order.
    fn leaf_words(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.leaves.len()).map(|w| self.leaf(w))
    }

    /// Moves the hint to leaf word `w`, which holds `word`: the old hint word goes back
    /// into the leaves, and `w`'s comes out of them into the struct.
    #[inline(always)]
    fn move_hint(&mut self, w: usize, word: u64) {
        let old = core::mem::replace(&mut self.hint, w as u32) as usize;
        if let Some(leaf) = self.leaves.get_mut(old) {
            *leaf = self.hint_word;
        }
        self.hint_word = word;
    }

    #[inline(always)]
    fn index_of(&self, id: u32) -> Option<usize> {
        let index = id.wrapping_sub(self.start);
        (index < self.capacity()).then_some(index as usize)
    }

    /// Takes the lowest free id of leaf word `w` (= `hint`), which holds `word != 0`.
    #[inline(always)]
    fn take_lowest(&mut self, w: usize, word: u64) -> u32 {
        let left = word & (word - 1);
        self.hint_word = left;
        self.taken = self.taken.wrapping_add(1);
        if left == 0 {
            self.hint_word_emptied(w);
        }
        self.start + (w * 64) as u32 + word.trailing_zeros()
    }

    /// Marks the free bit `bit` of leaf word `w` used (`w >= hint`).
    #[inline(always)]
    fn take(&mut self, w: usize, bit: u64) {
        let left = if w == self.hint as usize {
            self.hint_word &= !bit;
            self.hint_word
        } else {
            self.leaves[w] &= !bit;
            self.leaves[w]
        };
        self.taken = self.taken.wrapping_add(1);
        if left == 0 {
            self.word_now_full(w);
        }
    }

    /// The hint word `w` just lost its last free id. The hint stays on it (every word
    /// below is still full): the next allocation moves on from `resume`, and the usual
    /// next step, a free of that id, finds it in place. The word keeps its summary
    /// bits: it becomes, or stays, the dirty word.
    #[inline(always)]
    fn hint_word_emptied(&mut self, w: usize) {
        if self.dirty as usize == w + 1 {
            // Bits clear (it was made the hint by a free): right again. Bits set: it
            // stays dirty.
            if !self.dirty_set {
                self.dirty = 0;
            }
        } else {
            if self.dirty != 0 {
                self.clean_dirty();
            }
            self.dirty = w as u32 + 1;
            self.dirty_set = true;
        }
    }

    /// A free put the first free id back into the hint word `w`: if it is the dirty
    /// word with its bits set (emptied by an allocation), they are right again; with
    /// its bits clear it stays dirty; any other empty hint word becomes dirty, its
    /// bits clear.
    #[inline(always)]
    fn hint_word_refilled(&mut self, w: usize) {
        if self.dirty as usize == w + 1 {
            if self.dirty_set {
                self.dirty = 0;
            }
        } else {
            self.word_now_dirty(w);
        }
    }

    /// A free made the empty leaf word `w` the hint word: it becomes the dirty word with
    /// its summary bits still clear, unless it is the dirty word already (then its
    /// bits say "free" and are right again).
    #[inline(always)]
    fn word_now_dirty(&mut self, w: usize) {
        if self.dirty as usize == w + 1 {
            self.dirty = 0;
        } else {
            if self.dirty != 0 {
                self.clean_dirty();
            }
            self.dirty = w as u32 + 1;
            self.dirty_set = false;
        }
    }

    /// A free gave leaf word `w`, right of the hint (and at or right of `resume` when the
    /// hint word is full), its first free id: the resume points and the summaries to
    /// bring up to date. Out of line, so the free the churn loop runs stays small.
    #[inline(never)]
    fn refilled_right_of_hint(&mut self, w: usize) {
        let summarised = self.dirty as usize == w + 1;
        if summarised {
            // A claim emptied it and left its summaries saying "free" (see
            // `word_now_full`): they are right again. A claim's undo.
            self.dirty = 0;
        }
        let w = w as u32;
        if w <= self.resume {
            // It is, or becomes, `resume`, which every search reads as a leaf word
            // before any summary: its summaries can wait (see the module doc). A
            // full allocator given back two ids: the higher one.
            if w < self.resume {
                self.settle_resume();
                self.resume_next = self.resume;
                self.resume = w;
            }
            self.resume_unsummarised = !summarised;
        } else {
            if !summarised {
                self.refilled_past_hint(w as usize);
            }
            if w < self.resume_next {
                self.resume_next = w;
            }
        }
    }

    /// A free put the first free id into leaf word `w > hint`, not the dirty word: its
    /// summaries say so now.
    #[cold]
    #[inline(never)]
    fn refilled_past_hint(&mut self, w: usize) {
        debug_assert!(
            self.dirty as usize != w + 1,
            "the dirty word is settled by the caller"
        );
        self.set_summaries(w);
    }

    /// Leaf word `w >= hint` just lost its last free id by a claim or `alloc_from`. It
    /// becomes the dirty word, its summary bits left saying "free": the usual next
    /// step, the claim undone by a free, then finds them right again and touches no
    /// summary. That is the one dirty word allowed right of the hint, and only with
    /// its bits set: a search that lands on it finds the word full and goes on past it
    /// (see `free_word_from`).
    // Out of line, so a claim stays as small as a flat bitset's; where claims do
    // empty words (99% reached by random frees) the call costs 3 instructions a pair.
    #[cold]
    #[inline(never)]
    fn word_now_full(&mut self, w: usize) {
        if self.resume_unsummarised && w == self.resume as usize {
            // Its summary bits are clear, as it now is.
            self.resume_unsummarised = false;
            return;
        }
        if self.dirty as usize == w + 1 {
            // Bits clear (a free made it the hint): right again.
            if !self.dirty_set {
                self.dirty = 0;
            }
            return;
        }
        if self.dirty != 0 {
            // What a summary walk costs, paid for the word that was dirty instead of
            // for this one; in a run of claims and their frees, once.
            self.clean_dirty();
        }
        self.dirty = w as u32 + 1;
        self.dirty_set = true;
    }

    /// Lowest-free allocation when the hint word is full (an allocation emptied it and
    /// left the hint on it): find the next word with a free id, at `resume`, at
    /// `resume_next` or through the summaries, and move the hint there.
    #[cold]
    #[inline(never)]
    fn alloc_past_hint(&mut self) -> u32 {
        // The hint word is full and so is every word before `resume`, and between it
        // and `resume_next`.
        let has_free = |w: u32| self.leaves.get(w as usize).is_some_and(|&word| word != 0);
        let w = if has_free(self.resume) {
            self.resume
        } else if has_free(self.resume_next) {
            self.resume_next
        } else {
            match self.free_word_from(self.resume_next as usize + 1) {
                Some(w) => w as u32,
                None => return NO_ID,
            }
        };
        self.leave_resume(w);
        if w == self.resume {
            self.resume = self.resume_next;
            self.resume_next += 1;
        } else {
            self.resume = w + 1;
            self.resume_next = w + 2;
        }
        let w = w as usize;
        let word = self.leaves[w];
        self.move_hint(w, word);
        self.take_lowest(w, word)
    }

    /// `resume` stops being a resume point because the hint moves to word `w >=
    /// resume`, every word before `w` full: when `w` is `resume` with its summaries
    /// left clear, it becomes the dirty word (bits clear, at the hint, as a free would
    /// have left it); otherwise `resume` is full and its clear bits are right.
    #[inline(always)]
    fn leave_resume(&mut self, w: u32) {
        if core::mem::take(&mut self.resume_unsummarised) && w == self.resume {
            if self.dirty != 0 {
                self.clean_dirty();
            }
            self.dirty = w + 1;
            self.dirty_set = false;
        }
    }

    /// `resume` becomes `resume_next`, which a search may read through the summaries:
    /// if they were left clear, they say what it holds now.
    #[inline(always)]
    fn settle_resume(&mut self) {
        if core::mem::take(&mut self.resume_unsummarised) {
            self.summarise_old_resume();
        }
    }

    /// [`IdBitmap::settle_resume`]'s walk, when `resume` holds a free id.
    #[cold]
    #[inline(never)]
    fn summarise_old_resume(&mut self) {
        let w = self.resume as usize;
        if self.leaves[w] != 0 {
            self.set_summaries(w);
        }
    }

    /// The lowest free index at or after `bit`: mask the leaf word holding it and, only
    /// if nothing is free there, climb.
    #[inline(always)]
    fn free_index_at_or_after(&self, bit: usize) -> Option<usize> {
        if bit >= self.capacity() as usize {
            return None;
        }
        let w = bit / 64;
        let masked = self.leaf(w) & (u64::MAX << (bit % 64));
        if masked != 0 {
            return Some(w * 64 + masked.trailing_zeros() as usize);
        }
        let w = self.free_word_from(w + 1)?;
        Some(w * 64 + self.leaves[w].trailing_zeros() as usize)
    }

    /// The lowest non-zero leaf word at or after leaf word `bit` (a bit of level 1),
    /// where `bit` is right of the hint.
    #[inline(never)]
    fn free_word_from(&self, bit: usize) -> Option<usize> {
        let resume = self.resume as usize;
        if self.resume_unsummarised && bit <= resume && self.leaves[resume] != 0 {
            // Every word from `bit` (right of the hint) to `resume` is full, and
            // `resume`'s summaries may not say it has a free id.
            return Some(resume);
        }
        let w = self.summarised_free_word_from(bit)?;
        if self.leaves[w] != 0 {
            return Some(w);
        }
        // The only word right of the hint whose summaries can say "free" while it is
        // full is the dirty word a claim emptied, and there is one: past it, the
        // summaries are exact.
        self.summarised_free_word_from(w + 1)
    }

    /// The lowest leaf word at or after leaf word `bit` that the summaries say has a
    /// free id: climb while the masked word is empty, then walk down.
    #[inline(always)]
    fn summarised_free_word_from(&self, mut bit: usize) -> Option<usize> {
        for l in 1..self.depth as usize {
            // Past the last word of the level below: nothing further right.
            if bit >= self.lens[l - 1] as usize {
                return None;
            }
            let word = bit / 64;
            let masked = self.summary[self.offsets[l] as usize + word] & (u64::MAX << (bit % 64));
            if masked != 0 {
                return Some(self.descend(l - 1, word * 64 + masked.trailing_zeros() as usize));
            }
            // Nothing free in the rest of this word: on to the parent, one bit to the
            // right of this word's own bit.
            bit = word + 1;
        }
        None
    }

    /// From word `word` of `level`, known to hold a free id, down to the lowest
    /// non-zero leaf word under it.
    #[inline]
    fn descend(&self, level: usize, mut word: usize) -> usize {
        for l in (1..=level).rev() {
            let w = self.summary[self.offsets[l] as usize + word];
            word = word * 64 + w.trailing_zeros() as usize;
        }
        word
    }

    /// Makes the dirty word's summaries say what it holds, and forgets it.
    #[cold]
    #[inline(never)]
    fn clean_dirty(&mut self) {
        let w = core::mem::replace(&mut self.dirty, 0) as usize - 1;
        match (self.dirty_set, self.leaf(w) != 0) {
            (true, false) => self.clear_summaries(w),
            (false, true) => self.set_summaries(w),
            _ => {}
        }
    }

    /// Leaf word `word` turned all-used: clear its bit above, and each ancestor's bit
    /// whose word that empties. Where the walk stops is the data's: at level 1 when
    /// the word's 63 neighbours are not all full (nearly always, unless the bitmap is
    /// nearly full), anywhere above when it is. So level 1 alone may end the walk, a
    /// branch that goes the same way call after call; above it every level is visited
    /// with no branch on the data, whether the word below emptied carried as a 0/1
    /// mask (a loop that stopped at the first word left non-empty mispredicted its exit
    /// about every other time when a full bitmap gave back random ids). Each level's
    /// word is known from `word` alone, so its load does not wait for the level below.
    #[cold]
    #[inline(never)]
    fn clear_summaries(&mut self, word: usize) {
        let Some(first) = self.level_one_word_mut(word) else {
            return;
        };
        *first &= !(1 << (word % 64));
        if *first != 0 {
            return;
        }
        let mut emptied = 1u64;
        let mut child = word / 64;
        for l in 2..self.depth as usize {
            let at = self.offsets[l] as usize + child / 64;
            let left = self.summary[at] & !(emptied << (child % 64));
            self.summary[at] = left;
            emptied &= u64::from(left == 0);
            child /= 64;
        }
    }

    /// Leaf word `word` got its first free id: set its bit above, and so on up. As in
    /// [`IdBitmap::clear_summaries`], level 1 alone may end the walk (its word had a
    /// free id already); above it every level is visited with no branch on the data,
    /// since setting a bit that is set already is harmless (every ancestor's child now
    /// has a free id).
    #[cold]
    #[inline(never)]
    fn set_summaries(&mut self, word: usize) {
        let Some(first) = self.level_one_word_mut(word) else {
            return;
        };
        let was = *first;
        *first = was | (1 << (word % 64));
        if was != 0 {
            return;
        }
        let mut child = word / 64;
        for l in 2..self.depth as usize {
            self.summary[self.offsets[l] as usize + child / 64] |= 1 << (child % 64);
            child /= 64;
        }
    }

    /// The level-1 summary word that holds leaf word `word`'s bit; `None` when the
    /// leaves are the top level.
    #[inline(always)]
    fn level_one_word_mut(&mut self, word: usize) -> Option<&mut u64> {
        if self.depth < 2 {
            return None;
        }
        self.summary.get_mut(self.offsets[1] as usize + word / 64)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use alloc::collections::BTreeSet;
    use alloc::vec;
    use proptest::prelude::*;

    /// Checks every summary bit against its child word, the hint and the dirty word,
    /// the padding and `used` against the leaves.
    fn check_invariants(b: &IdBitmap) {
        // Summaries are exact with the dirty word counted as its bits say.
        let depth = b.depth as usize;
        let child_word = |l: usize, i: usize| -> u64 {
            if l == 0 {
                if i + 1 == b.dirty as usize {
                    u64::from(b.dirty_set)
                } else if b.resume_unsummarised && i == b.resume as usize {
                    0
                } else {
                    b.leaf(i)
                }
            } else {
                b.summary[b.offsets[l] as usize + i]
            }
        };
        for l in 1..depth {
            for w in 0..b.lens[l] as usize {
                let word = b.summary[b.offsets[l] as usize + w];
                for bit in 0..64 {
                    let child = w * 64 + bit;
                    let expect = child < b.lens[l - 1] as usize && child_word(l - 1, child) != 0;
                    assert_eq!(
                        word & (1 << bit) != 0,
                        expect,
                        "level {l} word {w} bit {bit}"
                    );
                }
            }
        }
        if depth > 0 {
            let last = b.leaves.len() - 1;
            let pad = !low_bits(b.capacity() as usize - last * 64);
            assert_eq!(b.leaf(last) & pad, 0, "padding must stay used");
        }
        assert_eq!(b.iter_used().count(), b.used() as usize);
        if b.leaves.is_empty() {
            assert_eq!(b.hint_word, 0, "no leaves, no hint word");
        }
        check_bounds(b);
    }

    /// Checks the search bounds: every leaf word below the hint full, and strictly
    /// between the hint and `resume` and between `resume` and `resume_next`, and the
    /// dirty word (if any) at or left of the hint, or full with its bits set.
    fn check_bounds(b: &IdBitmap) {
        let len = b.leaves.len();
        let [hint, resume, next, dirty] =
            [b.hint, b.resume, b.resume_next, b.dirty].map(|w| w as usize);
        assert!(hint <= len, "hint {hint}");
        assert!(resume > hint, "hint {hint} resume {resume}");
        assert!(next > resume, "resume {resume} next {next}");
        let all_full = |words: Range<usize>| {
            (words.start.min(len)..words.end.min(len)).all(|w| b.leaf(w) == 0)
        };
        assert!(all_full(0..hint), "a free id below hint {hint}");
        assert!(
            all_full(hint + 1..resume),
            "a free id between hint {hint} and resume {resume}"
        );
        assert!(
            all_full(resume + 1..next),
            "a free id between resume {resume} and resume_next {next}"
        );
        if b.resume_unsummarised {
            assert!(resume < len, "unsummarised resume {resume} past the end");
            assert_ne!(dirty, resume + 1, "resume {resume} unsummarised and dirty");
        }
        if dirty != 0 {
            // Right of the hint only as a claim leaves it: full, its bits set.
            assert!(
                dirty - 1 <= hint || (b.dirty_set && b.leaf(dirty - 1) == 0),
                "dirty {} hint {hint}",
                dirty - 1
            );
        }
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

    #[test]
    fn a_claim_leaves_its_emptied_word_dirty_and_searches_skip_it() {
        // 2^14 ids: three levels, so a search climbs and walks down onto the word.
        let mut b = IdBitmap::new(0..1 << 14).unwrap();
        // Words 0..=20 used by claims but for the last id of word 20.
        for id in 0..1343 {
            assert!(b.claim(id));
        }
        check_invariants(&b);
        assert!(b.claim(1343));
        assert_eq!(
            (b.dirty, b.dirty_set),
            (21, true),
            "the claim's word is dirty"
        );
        assert!(b.dirty > b.hint + 1, "and right of the hint");
        check_invariants(&b);
        // Word 20's summary bit still says "free": searches land on it and go on.
        assert_eq!(b.first_free_from(0), Some(1344));
        assert_eq!(b.first_free_from(700), Some(1344));
        let before = b.clone();
        assert_eq!(b.alloc(), Some(1344));
        assert_eq!(b.summary, before.summary, "word 21 keeps a free id");
        check_invariants(&b);
        // The claim undone: word 20's bits are right again as they stand.
        assert!(b.free(1343));
        assert_eq!(b.summary, before.summary);
        assert_eq!(b.dirty, 0);
        check_invariants(&b);
        assert_eq!(b.alloc(), Some(1343));
        assert_eq!(b.alloc(), Some(1345));
    }

    #[test]
    fn a_full_bitmap_refilled_twice_walks_no_summary() {
        let mut b = IdBitmap::new(4096..1 << 19).unwrap();
        while b.alloc().is_some() {}
        // Both orders of the two frees: the higher id's word becomes `resume`. The
        // first round also cleans the dirty word the fill left (the last word's bits).
        for (x, y) in [
            (5_000, 6_000),
            (70_000, 300_001),
            (400_000, 9_000),
            (200_000, 200_070),
        ] {
            let summary = b.summary.clone();
            assert!(b.free(x));
            assert!(b.free(y));
            assert!(b.resume_unsummarised, "{x} {y}: resume's bits wait");
            check_invariants(&b);
            assert_eq!(b.first_free_from(0), Some(x.min(y)));
            assert_eq!(b.first_free_from(x.min(y) + 1), Some(x.max(y)));
            assert_eq!(b.alloc(), Some(x.min(y)));
            check_invariants(&b);
            assert_eq!(b.first_free_from(0), Some(x.max(y)));
            assert_eq!(b.alloc(), Some(x.max(y)));
            assert_eq!(b.alloc(), None);
            check_invariants(&b);
            if x != 5_000 {
                assert_eq!(b.summary, summary, "{x} {y}: no summary word written");
            }
        }
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
        crate::test_support::proptest_cases(48)
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

        /// The same model check after a random history: the range filled (in order, or
        /// by claims in a random order), a random subset freed in a random order, then
        /// random operations. This is the state a long uptime leaves, and the one the
        /// hint, the resume point and the dirty word must stay right in.
        #[test]
        fn random_history_behaves_like_a_btreeset(
            (range, by_claims, order, keep, ops) in prop_oneof![
                    3 => (0..200u32, 1..300u32).prop_map(|(s, l)| s..s + l),
                    2 => (0..100u32, 4000..4300u32).prop_map(|(s, l)| s..s + l),
                    1 => (0..3u32, 20_000..20_100u32).prop_map(|(s, l)| s..s + l),
                ]
                .prop_flat_map(|r| {
                    let len = (r.end - r.start) as usize;
                    (
                        Just(r.clone()),
                        any::<bool>(),
                        Just((r.start..r.end).collect::<Vec<u32>>()).prop_shuffle(),
                        proptest::collection::vec(0..100u8, len),
                        proptest::collection::vec(op_in(r), 1..40),
                    )
                })
        ) {
            let mut b = IdBitmap::new(range.clone()).unwrap();
            let mut model = BTreeSet::new();
            if by_claims {
                for &id in &order {
                    prop_assert!(b.claim(id));
                }
            } else {
                while b.alloc().is_some() {}
            }
            model.extend(range.clone());
            // Free a share of the ids that varies per id (0-99% of them), in the
            // shuffled order, checking the bounds as we go.
            let level = keep.first().copied().unwrap_or(0);
            for (&id, &k) in order.iter().zip(&keep) {
                if k < level {
                    prop_assert!(b.free(id));
                    model.remove(&id);
                }
            }
            check_invariants(&b);
            prop_assert!(b.iter_used().eq(model.iter().copied()));
            for op in ops {
                match op {
                    Op::Alloc | Op::AllocMany(_) => {
                        let n = if let Op::AllocMany(n) = op { n } else { 1 };
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
            }
            check_invariants(&b);
            prop_assert!(b.iter_used().eq(model.iter().copied()));
        }

        /// Churn at high fill, the bench's history: everything used, a few ids freed,
        /// then "free a random used id, allocate the lowest" over and over, and pairs of
        /// frees and re-allocations on a full bitmap.
        #[test]
        fn churn_keeps_lowest_free(
            (range, picks) in (1..3u32, 1..9000u32)
                .prop_map(|(s, l)| s..s + l)
                .prop_flat_map(|r| (Just(r), proptest::collection::vec(any::<u32>(), 1..300)))
        ) {
            let mut b = IdBitmap::new(range.clone()).unwrap();
            while b.alloc().is_some() {}
            // The model here is the set of free ids: lowest free is its first.
            let mut free = BTreeSet::new();
            let len = range.end - range.start;
            for (i, &p) in picks.iter().enumerate() {
                // Every third step frees two ids before allocating twice.
                let frees = if i % 3 == 0 { 2 } else { 1 };
                for k in 0..frees {
                    let id = range.start + (p % len + k * 7919) % len;
                    prop_assert_eq!(b.free(id), free.insert(id));
                }
                for _ in 0..frees {
                    prop_assert_eq!(b.alloc(), free.pop_first());
                }
                prop_assert_eq!(b.used(), len - free.len() as u32);
                check_bounds(&b);
            }
            check_invariants(&b);
        }
    }
}
