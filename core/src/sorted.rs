//! A sorted-`Vec` map whose every growth is fallible.
//!
//! `BTreeMap::insert` aborts the process when memory runs out. The maps a guest or a
//! migration blob can grow (devices, bindings, recorded PASIDs) use this one instead:
//! [`SortedMap::try_insert`] reserves first and returns [`Error::OutOfMemory`] with the
//! map unchanged. The maps stay small (a guest's devices, one device's PASIDs: at most
//! the guest range), so a binary search and a `memmove` beat a tree's pointer chasing.

use alloc::vec::Vec;

use crate::error::{Error, Result};

/// A map from `K` to `V`, kept sorted by key in one `Vec`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SortedMap<K, V> {
    entries: Vec<(K, V)>,
}

impl<K, V> Default for SortedMap<K, V> {
    fn default() -> Self {
        SortedMap {
            entries: Vec::new(),
        }
    }
}

impl<K: Ord + Copy, V> SortedMap<K, V> {
    /// An empty map (no allocation).
    pub(crate) const fn new() -> Self {
        SortedMap {
            entries: Vec::new(),
        }
    }

    /// A map from entries already sorted by strictly ascending key.
    pub(crate) fn from_sorted(entries: Vec<(K, V)>) -> Self {
        debug_assert!(entries.windows(2).all(|w| w[0].0 < w[1].0));
        SortedMap { entries }
    }

    #[inline]
    fn find(&self, key: &K) -> core::result::Result<usize, usize> {
        self.entries.binary_search_by(|(k, _)| k.cmp(key))
    }

    #[inline]
    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        self.find(key).ok().map(|i| &self.entries[i].1)
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.find(key).ok().map(|i| &mut self.entries[i].1)
    }

    #[inline]
    pub(crate) fn contains_key(&self, key: &K) -> bool {
        self.find(key).is_ok()
    }

    /// Inserts a new key; `Ok(false)` (and nothing changed) if the key is there already.
    pub(crate) fn try_insert(&mut self, key: K, value: V) -> Result<bool> {
        match self.find(&key) {
            Ok(_) => Ok(false),
            Err(at) => {
                self.entries
                    .try_reserve(1)
                    .map_err(|_| Error::OutOfMemory)?;
                self.entries.insert(at, (key, value));
                Ok(true)
            }
        }
    }

    /// The value at `key`, inserted with `make` first if missing.
    pub(crate) fn get_or_try_insert_with(
        &mut self,
        key: K,
        make: impl FnOnce() -> V,
    ) -> Result<&mut V> {
        let at = match self.find(&key) {
            Ok(at) => at,
            Err(at) => {
                self.entries
                    .try_reserve(1)
                    .map_err(|_| Error::OutOfMemory)?;
                self.entries.insert(at, (key, make()));
                at
            }
        };
        Ok(&mut self.entries[at].1)
    }

    /// The last entry (the newest of an ascending list, as a drain list mostly is)
    /// comes off without a call to `Vec::remove` and its `memmove`.
    #[inline]
    fn remove_at(&mut self, at: usize) -> V {
        if at + 1 == self.entries.len() {
            self.entries.pop().expect("at is in bounds").1
        } else {
            self.entries.remove(at).1
        }
    }

    /// Removes `key`; its value if it was there.
    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        self.find(key).ok().map(|i| self.remove_at(i))
    }

    /// Keeps only the entries `keep` says yes to (one pass, order kept).
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        self.entries.retain_mut(|(k, v)| keep(k, v));
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries in key order.
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = (&K, &V)> + ExactSizeIterator {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// Keys in order.
    pub(crate) fn keys(&self) -> impl DoubleEndedIterator<Item = &K> + ExactSizeIterator {
        self.entries.iter().map(|(k, _)| k)
    }

    /// Values in key order.
    pub(crate) fn values(&self) -> impl DoubleEndedIterator<Item = &V> + ExactSizeIterator {
        self.entries.iter().map(|(_, v)| v)
    }

    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.entries.capacity() * core::mem::size_of::<(K, V)>()
    }
}

/// A set of `T`, kept sorted in one `Vec`.
pub(crate) type SortedSet<T> = SortedMap<T, ()>;

impl<T: Ord + Copy> SortedSet<T> {
    /// Inserts `value`; `Ok(false)` if it was there already.
    pub(crate) fn try_insert_key(&mut self, value: T) -> Result<bool> {
        self.try_insert(value, ())
    }

    /// Whether `value` is in the set.
    #[inline]
    pub(crate) fn contains(&self, value: &T) -> bool {
        self.contains_key(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_keys_sorted_and_refuses_repeats() {
        let mut m = SortedMap::new();
        assert_eq!(m.try_insert(5, 'a'), Ok(true));
        assert_eq!(m.try_insert(1, 'b'), Ok(true));
        assert_eq!(m.try_insert(5, 'c'), Ok(false));
        assert_eq!(m.get(&5), Some(&'a'));
        assert_eq!(m.keys().copied().collect::<Vec<_>>(), [1, 5]);
        *m.get_or_try_insert_with(3, || 'd').unwrap() = 'e';
        assert_eq!(m.iter().map(|(k, _)| *k).collect::<Vec<_>>(), [1, 3, 5]);
        assert_eq!(m.remove(&1), Some('b'));
        assert_eq!(m.remove(&1), None);
        assert_eq!(m.len(), 2);
        let mut s: SortedSet<u32> = SortedSet::new();
        assert!(s.try_insert_key(7).unwrap());
        assert!(s.contains(&7) && !s.contains(&8));
    }
}
