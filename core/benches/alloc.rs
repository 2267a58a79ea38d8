//! Allocator workloads (issues 2 and 7), ours next to the peers in the same run:
//!
//! * (a) `a_alloc_free`: alloc then free one id with the range 0/50/90/99% full, through
//!   the host (a shared PASID: gPASID + hPASID + translation entry) and on each bare
//!   allocator over the host's shared range 4096..2^19;
//! * (b) `b_fill_drain`: allocate a whole 2^19 range from empty, free it in random order;
//! * (c) `c_churn_90`: at a steady 90% fill, free a random used id and allocate one.

mod common;

use std::hint::black_box;

use criterion::measurement::Measurement;
use criterion::{BatchSize, BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput};
use pasid_core::bitmap::IdBitmap;
use pasid_core::{GuestConfig, PasidKind};
use rand::seq::SliceRandom;
use rand::Rng;

use common::{BitAlloc1M, FreeSet, IdAlloc, VmIdAllocator, FILLS, FULL_2_19, SHARED};

fn a_alloc_free<M: Measurement>(c: &mut Criterion<M>) {
    let mut group = c.benchmark_group("a_alloc_free");
    for fill in FILLS {
        let mut host = common::host();
        common::fill_shared(&mut host, fill);
        let g = host.create_guest(GuestConfig::p2(64)).expect("guest");
        group.bench_with_input(BenchmarkId::new("host shared", fill), &fill, |b, _| {
            b.iter(|| {
                let gpasid = host.alloc(black_box(g), PasidKind::Shared).expect("alloc");
                let freed = host.free(g, black_box(gpasid)).expect("free");
                host.complete_teardown(&[freed]).expect("teardown");
            })
        });
    }
    let cap = SHARED.end - SHARED.start;
    bare::<IdBitmap, M>(&mut group, cap);
    bare::<VmIdAllocator, M>(&mut group, cap);
    bare::<BitAlloc1M, M>(&mut group, cap);
    bare::<FreeSet, M>(&mut group, cap);
    group.finish();

    fn bare<A: IdAlloc, M: Measurement>(group: &mut BenchmarkGroup<'_, M>, cap: u32) {
        for fill in FILLS {
            let mut a: A = common::filled(SHARED, (cap as u64 * fill as u64 / 100) as u32);
            group.bench_with_input(BenchmarkId::new(A::NAME, fill), &fill, |b, _| {
                b.iter(|| {
                    let id = a.alloc().expect("alloc");
                    a.free(black_box(id));
                })
            });
        }
    }
}

fn b_fill_drain<M: Measurement>(c: &mut Criterion<M>) {
    let mut group = c.benchmark_group("b_fill_drain");
    let n = FULL_2_19.end - FULL_2_19.start;
    group.throughput(Throughput::Elements(2 * n as u64));
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    let mut order: Vec<u32> = FULL_2_19.collect();
    order.shuffle(&mut common::rng());
    run::<IdBitmap, M>(&mut group, &order);
    run::<VmIdAllocator, M>(&mut group, &order);
    run::<BitAlloc1M, M>(&mut group, &order);
    run::<FreeSet, M>(&mut group, &order);
    group.finish();

    fn run<A: IdAlloc, M: Measurement>(group: &mut BenchmarkGroup<'_, M>, order: &[u32]) {
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

fn c_churn_90<M: Measurement>(c: &mut Criterion<M>) {
    let mut group = c.benchmark_group("c_churn_90");
    run::<IdBitmap, M>(&mut group);
    run::<VmIdAllocator, M>(&mut group);
    run::<BitAlloc1M, M>(&mut group);
    run::<FreeSet, M>(&mut group);

    // The same through the host: random frees of shared PASIDs across ~115 guests.
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
    group.bench_function("host shared", |b| {
        b.iter(|| {
            let i = rng.random_range(0..held.len());
            let (g, p) = held[i];
            let freed = host.free(g, black_box(p)).expect("free");
            host.complete_teardown(&[freed]).expect("teardown");
            held[i].1 = host.alloc(g, PasidKind::Shared).expect("alloc");
        })
    });
    group.finish();

    fn run<A: IdAlloc, M: Measurement>(group: &mut BenchmarkGroup<'_, M>) {
        // Everything allocated, then a random 10% freed: free ids scattered, as after
        // a long uptime.
        let mut a = A::with_range(FULL_2_19);
        let mut held: Vec<u32> = std::iter::from_fn(|| a.alloc()).collect();
        let mut rng = common::rng();
        held.shuffle(&mut rng);
        for id in held.drain(held.len() * 9 / 10..) {
            a.free(id);
        }
        group.bench_function(A::NAME, |b| {
            b.iter(|| {
                let i = rng.random_range(0..held.len());
                a.free(black_box(held[i]));
                held[i] = a.alloc().expect("alloc");
            })
        });
    }
}

bench_main!(a_alloc_free, b_fill_drain, c_churn_90);
