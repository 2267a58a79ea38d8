//! Allocator workloads (issues 2, 7 and 14), ours next to every peer in the same run,
//! each peer first checked against a model of lowest-free semantics
//! ([`common::check_against_model`]). All bare allocators cover the host's shared range
//! 4096..2^19 (520,192 ids). Fill levels 0/50/90/99% are reached two ways
//! ([`common::History`]): the lowest ids allocated in order, or everything allocated
//! and a random share freed in a random order (free ids scattered, as after an uptime).
//!
//! * `a_alloc_free`: allocate the lowest free id and free it again; "host shared" is
//!   the same through `Host` (gPASID + hPASID + translation entry) with the teardown
//!   confirmed at once, "teardown per 32" in batches, and "alloc+free only" times the
//!   two calls a guest's ALLOC and FREE make, the teardowns confirmed untimed;
//! * `a_claim_free`: claim a free id chosen at random (of 1024 picked up front) and
//!   free it (peers that can claim an exact id);
//! * `a_refill_full`: on a full allocator, free two random ids and allocate twice (the
//!   lowest-free search has to find them again), full in order or after random churn;
//! * `a_churn`: at 50/90/99%, free a random used id and allocate the lowest free one;
//! * `a_fill_drain`: allocate a whole 2^19 range from empty, free it in random order.

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::Measurement;
use criterion::{BatchSize, BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput};
use pasid_core::{GuestConfig, PasidKind};
use rand::seq::SliceRandom;
use rand::Rng;

use common::{History, IdAlloc, FULL_2_19, SHARED};

/// Ids picked up front per bench, cycled through by the timed loop.
const PICKS: usize = 1024;

/// How many alloc+free pairs "alloc+free only" times between two untimed teardowns:
/// the clock is read once per round of this many, so its cost (two reads of the
/// thread's CPU clock, well under 100 ns) is at most a few tenths of a nanosecond per
/// pair.
const UNTIMED_TEARDOWN: usize = 256;

fn param(history: History, fill: u32) -> String {
    format!("{} {fill:02}%", history.name())
}

fn check_peers<M: Measurement>(_c: &mut Criterion<M>) {
    fn check<A: IdAlloc, T>(_: T) {
        common::check_against_model::<A>();
    }
    for_each_alloc!(check(()));
    eprintln!("every peer's adapter agrees with the lowest-free model");
}

fn a_alloc_free<M: Measurement<Value = Duration>>(c: &mut Criterion<M>) {
    let mut group = c.benchmark_group("a_alloc_free");
    for &history in &History::ALL {
        for &fill in common::fills() {
            let mut host = common::host();
            let guests = common::fill_shared(&mut host, 100);
            let mut held: Vec<_> = guests
                .iter()
                .flat_map(|(g, ps)| ps.iter().map(move |&p| (*g, p)))
                .collect();
            // Back down to `fill`: the last-allocated shared PASIDs first (in order), or
            // a random share (scattered).
            if history == History::Random {
                held.shuffle(&mut common::rng());
            }
            let keep = (held.len() as u64 * fill as u64 / 100) as usize;
            for (g, p) in held.drain(keep..).rev() {
                let freed = host.free(g, p).expect("free");
                host.complete_teardown(&[freed]).expect("teardown");
            }
            let g = host.create_guest(GuestConfig::p2(64)).expect("guest");
            group.bench_function(BenchmarkId::new("host shared", param(history, fill)), |b| {
                b.iter(|| {
                    let gpasid = host.alloc(black_box(g), PasidKind::Shared).expect("alloc");
                    let freed = host.free(g, black_box(gpasid)).expect("free");
                    host.complete_teardown(&[freed]).expect("teardown");
                })
            });
            // The same, with the VMM confirming teardowns in batches of 32 (one IOTLB
            // and device-TLB invalidation for all of them), as a VMM would.
            let mut batch = Vec::with_capacity(32);
            group.bench_function(
                BenchmarkId::new("host shared, teardown per 32", param(history, fill)),
                |b| {
                    b.iter(|| {
                        let gpasid = host.alloc(black_box(g), PasidKind::Shared).expect("alloc");
                        batch.push(host.free(g, black_box(gpasid)).expect("free"));
                        if batch.len() == 32 {
                            host.complete_teardown(&batch).expect("teardown");
                            batch.clear();
                        }
                    })
                },
            );
            host.complete_teardown(&batch).expect("teardown");
            // The two VM-exit calls alone (a guest's ALLOC and FREE), with up to 256
            // teardowns outstanding: they are confirmed outside the timed part, 256 at
            // a time, as a VMM does after an invalidation round. A second guest, whose
            // quota holds them.
            let g = host.create_guest(GuestConfig::p2(1024)).expect("guest");
            let mut pending = Vec::with_capacity(UNTIMED_TEARDOWN);
            group.bench_function(
                BenchmarkId::new("host shared, alloc+free only", param(history, fill)),
                |b| {
                    b.iter_custom(|iters| {
                        let mut total = Duration::ZERO;
                        let mut left = iters;
                        while left > 0 {
                            let round = left.min(UNTIMED_TEARDOWN as u64);
                            total += common::timed(|| {
                                for _ in 0..round {
                                    let gpasid =
                                        host.alloc(black_box(g), PasidKind::Shared).expect("alloc");
                                    pending.push(host.free(g, black_box(gpasid)).expect("free"));
                                }
                            });
                            host.complete_teardown(&pending).expect("teardown");
                            pending.clear();
                            left -= round;
                        }
                        total
                    })
                },
            );
        }
    }
    for_each_alloc!(bare(&mut group));
    group.finish();

    fn bare<A: IdAlloc, M: Measurement>(group: &mut BenchmarkGroup<'_, M>) {
        for &history in &History::ALL {
            for &fill in common::fills() {
                let Some((mut a, _, _)) = common::at_fill::<A>(SHARED, fill, history) else {
                    continue;
                };
                group.bench_function(BenchmarkId::new(A::NAME, param(history, fill)), |b| {
                    b.iter(|| {
                        let id = a.alloc().expect("alloc");
                        a.free(black_box(id));
                    })
                });
            }
        }
    }
}

fn a_claim_free<M: Measurement>(c: &mut Criterion<M>) {
    let mut group = c.benchmark_group("a_claim_free");
    for_each_alloc!(run(&mut group));
    group.finish();

    fn run<A: IdAlloc, M: Measurement>(group: &mut BenchmarkGroup<'_, M>) {
        if !A::CLAIMS {
            return;
        }
        let fills: &[u32] = if common::quick() {
            &[90]
        } else {
            &common::FILLS
        };
        for &history in &History::ALL {
            for &fill in fills {
                let Some((mut a, _, free)) = common::at_fill::<A>(SHARED, fill, history) else {
                    continue;
                };
                let mut rng = common::rng();
                let picks: Vec<u32> = (0..PICKS)
                    .map(|_| free[rng.random_range(0..free.len())])
                    .collect();
                let mut i = 0;
                group.bench_function(BenchmarkId::new(A::NAME, param(history, fill)), |b| {
                    b.iter(|| {
                        let id = picks[i % PICKS];
                        i += 1;
                        a.claim(black_box(id));
                        a.free(black_box(id));
                    })
                });
            }
        }
    }
}

fn a_refill_full<M: Measurement>(c: &mut Criterion<M>) {
    let mut group = c.benchmark_group("a_refill_full");
    for_each_alloc!(run(&mut group));
    group.finish();

    fn run<A: IdAlloc, M: Measurement>(group: &mut BenchmarkGroup<'_, M>) {
        for &history in &History::ALL {
            // Full, either straight away or after a random 10% was freed and allocated
            // back (lowest first).
            let Some((mut a, mut used, _)) = common::at_fill::<A>(SHARED, 90, history) else {
                continue;
            };
            while let Some(id) = a.alloc() {
                used.push(id);
            }
            let mut rng = common::rng();
            let pairs: Vec<(u32, u32)> = (0..PICKS)
                .map(|_| {
                    let x = used[rng.random_range(0..used.len())];
                    let mut y = x;
                    while y == x {
                        y = used[rng.random_range(0..used.len())];
                    }
                    (x, y)
                })
                .collect();
            let mut i = 0;
            let name = if history == History::InOrder {
                "full in order"
            } else {
                "full after random churn"
            };
            group.bench_function(BenchmarkId::new(A::NAME, name), |b| {
                b.iter(|| {
                    let (x, y) = pairs[i % PICKS];
                    i += 1;
                    a.free(black_box(x));
                    a.free(black_box(y));
                    black_box(a.alloc());
                    black_box(a.alloc());
                })
            });
        }
    }
}

fn a_churn<M: Measurement>(c: &mut Criterion<M>) {
    let mut group = c.benchmark_group("a_churn");
    for_each_alloc!(run(&mut group));

    // The same through the host at 90%, reached by random frees across ~128 guests.
    let mut host = common::host();
    let mut held: Vec<(pasid_core::GuestId, u32)> = common::fill_shared(&mut host, 100)
        .into_iter()
        .flat_map(|(g, ps)| ps.into_iter().map(move |p| (g, p)))
        .collect();
    let mut rng = common::rng();
    held.shuffle(&mut rng);
    for (g, p) in held.drain(held.len() * 9 / 10..) {
        let freed = host.free(g, p).expect("free");
        host.complete_teardown(&[freed]).expect("teardown");
    }
    group.bench_function(
        BenchmarkId::new("host shared", param(History::Random, 90)),
        |b| {
            b.iter(|| {
                let i = rng.random_range(0..held.len());
                let (g, p) = held[i];
                let freed = host.free(g, black_box(p)).expect("free");
                host.complete_teardown(&[freed]).expect("teardown");
                held[i].1 = host.alloc(g, PasidKind::Shared).expect("alloc");
            })
        },
    );
    group.finish();

    fn run<A: IdAlloc, M: Measurement>(group: &mut BenchmarkGroup<'_, M>) {
        let fills: &[u32] = if common::quick() {
            &[90]
        } else {
            &[50, 90, 99]
        };
        for &history in &History::ALL {
            for &fill in fills {
                let Some((mut a, mut held, _)) = common::at_fill::<A>(SHARED, fill, history) else {
                    continue;
                };
                let mut rng = common::rng();
                group.bench_function(BenchmarkId::new(A::NAME, param(history, fill)), |b| {
                    b.iter(|| {
                        let i = rng.random_range(0..held.len());
                        a.free(black_box(held[i]));
                        held[i] = a.alloc().expect("alloc");
                    })
                });
            }
        }
    }
}

fn a_fill_drain<M: Measurement>(c: &mut Criterion<M>) {
    let mut group = c.benchmark_group("a_fill_drain");
    let n = FULL_2_19.end - FULL_2_19.start;
    group.throughput(Throughput::Elements(2 * n as u64));
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    let mut order: Vec<u32> = FULL_2_19.collect();
    order.shuffle(&mut common::rng());
    for_each_alloc!(run(&mut group, &order));
    group.finish();

    fn run<A: IdAlloc, M: Measurement>(group: &mut BenchmarkGroup<'_, M>, order: &[u32]) {
        // Flat bitsets search from the first word (a fill is quadratic: seconds per
        // run), and id-pool's frees of scattered ids are inserts into a sorted Vec.
        if A::LINEAR_SEARCH || A::MAX_SCATTERED < order.len() {
            return;
        }
        group.bench_function(A::NAME, |b| {
            b.iter_batched(
                || A::with_range(FULL_2_19),
                |mut a| {
                    while a.alloc().is_some() {}
                    for &id in order {
                        a.free(id);
                    }
                    a
                },
                BatchSize::PerIteration,
            )
        });
    }
}

bench_main!(
    check_peers,
    a_alloc_free,
    a_claim_free,
    a_refill_full,
    a_churn,
    a_fill_drain
);
