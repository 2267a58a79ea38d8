//! Batches of teardown confirmations against a model: whatever their size (the
//! item-by-item, in-order, stack-sorted and heap-sorted paths), order, mix of live and
//! destroyed guests and local and shared PASIDs, a batch is applied whole or not at all.

use std::collections::BTreeSet;

use pasid_core::{Draining, Error, GuestConfig, Host, PasidKind, PasidLayout, Platform};
use proptest::prelude::*;

/// What to do to a batch before it is confirmed.
#[derive(Debug, Clone)]
enum Spoil {
    Nothing,
    /// One item given twice.
    Repeat(usize),
    /// One item with a host PASID that is not its own.
    Stranger(usize),
    /// One item given twice, the second time with another host PASID.
    Twin(usize),
}

fn spoil() -> impl Strategy<Value = Spoil> {
    prop_oneof![
        2 => Just(Spoil::Nothing),
        1 => any::<usize>().prop_map(Spoil::Repeat),
        1 => any::<usize>().prop_map(Spoil::Stranger),
        1 => any::<usize>().prop_map(Spoil::Twin),
    ]
}

/// A host with three guests that each freed `frees[i]` PASIDs (every third local),
/// the last destroyed so that its shared ones drain as orphans.
fn draining_host(frees: [usize; 3]) -> Host {
    let layout = PasidLayout::new(20, 1..1024, 1024..1 << 19).unwrap();
    let mut host = Host::new(layout, Platform::P2).unwrap();
    let guests: Vec<_> = (0..3)
        .map(|_| host.create_guest(GuestConfig::p2(1000)).unwrap())
        .collect();
    for (g, n) in guests.iter().zip(frees) {
        for i in 0..n {
            let kind = if i % 3 == 2 {
                PasidKind::Local
            } else {
                PasidKind::Shared
            };
            let p = host.alloc(*g, kind).unwrap();
            // Every other one freed: the drain lists have gaps.
            host.alloc(*g, PasidKind::Shared).unwrap();
            host.free(*g, p).unwrap();
        }
    }
    host.destroy_guest(guests[2]).unwrap();
    host
}

proptest! {
    #![proptest_config(ProptestConfig { cases: if cfg!(miri) { 2 } else { 128 }, ..ProptestConfig::default() })]

    #[test]
    fn a_batch_is_applied_whole_or_not_at_all(
        frees in [0usize..80, 0usize..80, 0usize..80],
        keep in proptest::collection::vec(any::<bool>(), 240),
        shuffle in any::<bool>(),
        seed in any::<u64>(),
        spoil in spoil(),
    ) {
        let mut host = draining_host(frees);
        let listed: Vec<Draining> = host.draining().collect();
        let mut batch: Vec<Draining> = listed
            .iter()
            .zip(keep.iter().cycle())
            .filter(|(_, &k)| k)
            .map(|(d, _)| *d)
            .collect();
        if shuffle {
            // A cheap deterministic shuffle (the seed is proptest's).
            let mut x = seed | 1;
            for i in (1..batch.len()).rev() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                batch.swap(i, (x % (i as u64 + 1)) as usize);
            }
        }
        let spoiled = match spoil {
            Spoil::Repeat(at) if !batch.is_empty() => {
                let item = batch[at % batch.len()];
                batch.insert(seed as usize % (batch.len() + 1), item);
                true
            }
            Spoil::Stranger(at) if !batch.is_empty() => {
                let at = at % batch.len();
                // Local items have no host PASID: giving one makes it a stranger too.
                batch[at].hpasid = Some(batch[at].hpasid.map_or(5, |h| h ^ 1));
                true
            }
            Spoil::Twin(at) if !batch.is_empty() => {
                let mut twin = batch[at % batch.len()];
                twin.hpasid = Some(twin.hpasid.map_or(5, |h| h ^ 1));
                batch.insert(seed as usize % (batch.len() + 1), twin);
                true
            }
            _ => false,
        };
        let before = host.snapshot();
        let in_use = host.shared_in_use();
        match host.complete_teardown(&batch) {
            Ok(()) => {
                prop_assert!(!spoiled);
                let gone: BTreeSet<Draining> = batch.iter().copied().collect();
                let left: Vec<Draining> = listed.iter().filter(|d| !gone.contains(d)).copied().collect();
                prop_assert_eq!(host.draining().collect::<Vec<_>>(), left);
                let shared = batch.iter().filter(|d| d.hpasid.is_some()).count() as u32;
                prop_assert_eq!(host.shared_in_use(), in_use - shared);
            }
            Err(e) => {
                prop_assert!(spoiled, "refused a good batch of {}: {e:?}", batch.len());
                prop_assert!(matches!(e, Error::NotDraining { .. }), "{e:?}");
                prop_assert_eq!(host.snapshot(), before);
            }
        }
    }
}

/// Guests destroyed out of id order leave the orphans sorted by guest and gPASID (each
/// destroy moves its own block into place), so each one's teardown is found, one at a
/// time or in a batch over several destroyed guests and a live one.
#[test]
fn orphans_stay_sorted_whatever_the_destroy_order() {
    let layout = PasidLayout::new(20, 1..1024, 1024..1 << 19).unwrap();
    let mut host = Host::new(layout, Platform::P2).unwrap();
    let guests: Vec<_> = (0..7)
        .map(|_| host.create_guest(GuestConfig::p2(8)).unwrap())
        .collect();
    for g in &guests {
        for _ in 0..4 {
            host.alloc(*g, PasidKind::Shared).unwrap();
        }
    }
    for i in [3, 0, 5, 4, 1, 2] {
        host.destroy_guest(guests[i]).unwrap();
        let listed: Vec<Draining> = host.draining().collect();
        let mut sorted = listed.clone();
        sorted.sort();
        assert_eq!(listed, sorted);
    }
    // The live guest's frees drain too.
    let live = guests[6];
    for gpasid in [1, 3] {
        host.free(live, gpasid).unwrap();
    }
    let listed: Vec<Draining> = host.draining().collect();
    assert_eq!(listed.len(), 6 * 4 + 2);
    // Three one at a time, from the back; then the rest in one sorted batch (over the
    // small-batch size, so the batch path's merging walk takes them off).
    let (rest, singles) = listed.split_at(listed.len() - 3);
    for item in singles.iter().rev() {
        host.complete_teardown(core::slice::from_ref(item)).unwrap();
    }
    let orphans_left = rest.iter().filter(|d| d.guest != live).count();
    assert!(rest.len() > 16 && orphans_left > 0);
    host.complete_teardown(rest).unwrap();
    assert_eq!(host.draining_count(), 0);
    // Each was released once: confirming any again is refused.
    for item in &listed {
        assert!(host.complete_teardown(core::slice::from_ref(item)).is_err());
    }
}
