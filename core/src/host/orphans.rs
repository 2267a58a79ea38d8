//! The draining PASIDs of destroyed guests: a sorted list that one confirmation at a
//! time empties in linear time overall.
//!
//! Items are kept sorted (guest id, then gPASID), so a confirmation finds its item by
//! binary search. Taking one out of the middle of a `Vec` moves everything after it:
//! a VMM that confirms a destroyed guest's thousands of PASIDs one by one would pay a
//! quadratic cost. So a confirmed item is marked gone in place (a *hole*: its host
//! PASID cleared, which no orphan has, every one being a shared PASID), and the list is
//! compacted once holes make up half of it: each removal costs O(log n) plus an
//! amortized O(1) share of a compaction. A hole sorts where its item did (no two
//! orphans share a guest and a gPASID: guest ids are never reused), so searches,
//! merges and insertions work across holes unchanged.

use alloc::vec::Vec;

use crate::error::Result;
use crate::types::Draining;

/// The draining PASIDs of destroyed guests, sorted, with holes (see the module docs).
#[derive(Debug, Clone, Default)]
pub(crate) struct Orphans {
    /// Sorted; an item whose `hpasid` is `None` is a hole.
    items: Vec<Draining>,
    /// How many of `items` are holes.
    holes: usize,
}

impl Orphans {
    /// How many orphans drain.
    pub(crate) fn len(&self) -> usize {
        self.items.len() - self.holes
    }

    /// The orphans, sorted.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Draining> + '_ {
        self.items.iter().copied().filter(|d| d.hpasid.is_some())
    }

    /// Whether `item` drains as an orphan, exactly as given.
    pub(crate) fn contains(&self, item: &Draining) -> bool {
        self.position(item).is_some()
    }

    /// Takes `item` off the list; false (and nothing changes) if it is not an orphan.
    pub(crate) fn remove(&mut self, item: &Draining) -> bool {
        let Some(at) = self.position(item) else {
            return false;
        };
        self.items[at].hpasid = None;
        self.holes += 1;
        if self.holes * 2 > self.items.len() {
            self.compact();
        }
        true
    }

    /// Takes every orphan in `sorted` off the list, in one merging walk. Items of
    /// `sorted` that are not orphans are passed over.
    pub(crate) fn remove_sorted(&mut self, sorted: &[Draining]) {
        let mut items = sorted.iter().peekable();
        self.items.retain(|o| {
            while items.next_if(|d| *d < o).is_some() {}
            let confirmed = items.next_if(|d| *d == o).is_some();
            !confirmed && o.hpasid.is_some()
        });
        self.holes = 0;
        self.release_if_empty();
    }

    /// Room for `additional` more orphans, so that [`Orphans::add_guest`] cannot fail.
    pub(crate) fn try_reserve(&mut self, additional: usize) -> Result<()> {
        Ok(self.items.try_reserve(additional)?)
    }

    /// Adds the draining PASIDs of one destroyed guest (`guest_items`, each with its
    /// host PASID, all of one guest id that no orphan has yet). Allocates nothing when
    /// [`Orphans::try_reserve`] made room for them.
    pub(crate) fn add_guest(&mut self, guest_items: impl Iterator<Item = Draining>) {
        let before = self.items.len();
        self.items.extend(guest_items);
        // This guest's items are sorted among themselves, then moved as one block to
        // where its id belongs. Guests are mostly destroyed in id order, so the block
        // is usually in place already; sorting the whole list instead made destroying
        // many guests quadratic.
        self.items[before..].sort_unstable();
        if let Some(&first) = self.items.get(before) {
            let at = self.items[..before].partition_point(|o| *o < first);
            if at < before {
                let block = self.items.len() - before;
                self.items[at..].rotate_right(block);
            }
        }
    }

    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.items.capacity() * core::mem::size_of::<Draining>()
    }

    /// Where `item` is, if it drains as an orphan exactly as given. A hole never equals
    /// an item with a host PASID, and an item without one is no orphan.
    fn position(&self, item: &Draining) -> Option<usize> {
        item.hpasid?;
        self.items.binary_search(item).ok()
    }

    /// Drops the holes, and the memory once nothing is left.
    fn compact(&mut self) {
        self.items.retain(|d| d.hpasid.is_some());
        self.holes = 0;
        self.release_if_empty();
    }

    /// Gives the list's memory back once no orphan is left (a host whose destroyed
    /// guests are all torn down holds nothing for them).
    fn release_if_empty(&mut self) {
        if self.items.is_empty() && self.items.capacity() > 0 {
            self.items = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::GuestId;

    fn orphan(guest: u32, gpasid: u32) -> Draining {
        Draining {
            guest: GuestId(guest),
            gpasid,
            hpasid: Some(gpasid + 4096),
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(
            crate::test_support::proptest_cases(64)
        ))]

        /// Against a `BTreeSet`: guests added in any order, their items removed one at
        /// a time (present, absent, or without a host PASID) or in sorted batches.
        #[test]
        fn behaves_like_a_btreeset(
            guests in proptest::collection::vec((1..40u32, 1..30u32), 1..12),
            ops in proptest::collection::vec((0..3u8, 1..40u32, 0..32u32, 1..8usize), 0..120),
        ) {
            use alloc::collections::BTreeSet;
            let mut list = Orphans::default();
            let mut model = BTreeSet::new();
            let mut seen = BTreeSet::new();
            for (guest, count) in guests {
                // Guest ids are never reused.
                if !seen.insert(guest) {
                    continue;
                }
                let items: Vec<Draining> = (1..=count).rev().map(|p| orphan(guest, p)).collect();
                list.try_reserve(items.len()).unwrap();
                list.add_guest(items.iter().copied());
                model.extend(items);
            }
            for (op, guest, gpasid, span) in ops {
                let item = orphan(guest, gpasid);
                match op {
                    0 => {
                        let removed = list.remove(&item);
                        proptest::prop_assert_eq!(removed, model.remove(&item));
                    }
                    1 => {
                        let local = Draining { hpasid: None, ..item };
                        proptest::prop_assert!(!list.remove(&local));
                        proptest::prop_assert!(!list.contains(&local));
                    }
                    _ => {
                        let batch: Vec<Draining> =
                            (gpasid..gpasid + span as u32).map(|p| orphan(guest, p)).collect();
                        list.remove_sorted(&batch);
                        for d in &batch {
                            model.remove(d);
                        }
                    }
                }
                proptest::prop_assert_eq!(list.len(), model.len());
                proptest::prop_assert!(list.iter().eq(model.iter().copied()));
                proptest::prop_assert_eq!(list.contains(&item), model.contains(&item));
                proptest::prop_assert!(list.holes * 2 <= list.items.len());
                if model.is_empty() {
                    proptest::prop_assert_eq!(list.heap_bytes(), 0);
                }
            }
        }
    }
}
