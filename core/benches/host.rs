//! Whole-host workloads, ours only (no peer offers a host of guests):
//!
//! * (e) `e_migrate`: export a guest with 4096 PASIDs, half of them shared, and import it
//!   on a second host (guest range 1..8192);
//! * (f) `f_1000_guests`: a host with 1,000 guests of 64 shared PASIDs each: create them
//!   and fill them, churn (free a random guest's random shared PASID, allocate one
//!   again), destroy them all;
//! * (g) `g_many_guests`: the same churn, and a translate of a random guest's random
//!   shared gPASID, with 10, 100, 1,000 and 8,000 guests of 64 shared PASIDs each (8,000
//!   fill 98% of the shared range): what a guest's footprint costs once the guests no
//!   longer fit in the caches. Same calls as (f)'s churn; per element = per free+alloc
//!   or per translate.

mod common;

use std::hint::black_box;

use criterion::measurement::Measurement;
use criterion::{BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput};
use pasid_core::{GuestConfig, GuestId, Host, PasidKind};
use rand::Rng;

const GUESTS: u32 = 1000;
const PER_GUEST: u32 = 64;

fn e_migrate<M: Measurement>(c: &mut Criterion<M>) {
    let mut source = common::host_with(1..8192);
    let g = source.create_guest(GuestConfig::p2(2048)).expect("guest");
    for i in 0..4096 {
        let kind = if i % 2 == 0 {
            PasidKind::Shared
        } else {
            PasidKind::Local
        };
        source.alloc(g, kind).expect("alloc");
    }
    let target = common::host_with(1..8192);
    let blob = source.export_guest(g).expect("export");

    let mut group = c.benchmark_group("e_migrate");
    group.throughput(Throughput::Elements(4096));
    group.bench_function("export", |b| {
        b.iter(|| source.export_guest(black_box(g)).expect("export"))
    });
    group.bench_function("import", |b| {
        b.iter_batched_ref(
            || target.clone(),
            |t| t.import_guest(black_box(&blob), &[]).expect("import"),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("export+import", |b| {
        b.iter_batched_ref(
            || target.clone(),
            |t| {
                let blob = source.export_guest(black_box(g)).expect("export");
                t.import_guest(&blob, &[]).expect("import")
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// A host with `GUESTS` guests, each holding `PER_GUEST` shared PASIDs.
fn populated() -> (Host, Vec<(GuestId, Vec<u32>)>) {
    populated_with(GUESTS)
}

/// A host with `guests` guests, each holding `PER_GUEST` shared PASIDs.
fn populated_with(guests: u32) -> (Host, Vec<(GuestId, Vec<u32>)>) {
    let mut host = common::host();
    let guests = (0..guests)
        .map(|_| {
            let g = host
                .create_guest(GuestConfig::p2(PER_GUEST))
                .expect("guest");
            let ps = (0..PER_GUEST)
                .map(|_| host.alloc(g, PasidKind::Shared).expect("alloc"))
                .collect();
            (g, ps)
        })
        .collect();
    (host, guests)
}

fn f_1000_guests<M: Measurement>(c: &mut Criterion<M>) {
    let mut group = c.benchmark_group("f_1000_guests");
    group.sample_size(20);
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements((GUESTS * PER_GUEST) as u64));
    group.bench_function("create+fill", |b| b.iter(populated));

    let (host, guests) = populated();
    group.bench_function("destroy", |b| {
        b.iter_batched_ref(
            || host.clone(),
            |h| {
                for (g, _) in &guests {
                    h.destroy_guest(*g).expect("destroy");
                }
            },
            BatchSize::PerIteration,
        )
    });

    // Churn: one free and one alloc per element, on random guests.
    let (mut host, mut guests) = (host, guests);
    let mut rng = common::rng();
    group.throughput(Throughput::Elements(1));
    group.sample_size(100);
    group.sampling_mode(SamplingMode::Auto);
    group.bench_function("churn (free+alloc)", |b| {
        b.iter(|| {
            let (g, ps) = &mut guests[rng.random_range(0..GUESTS as usize)];
            let slot = &mut ps[rng.random_range(0..PER_GUEST as usize)];
            let freed = host.free(*g, black_box(*slot)).expect("free");
            host.complete_teardown(&[freed]).expect("teardown");
            *slot = host.alloc(*g, PasidKind::Shared).expect("alloc");
        })
    });
    group.finish();
}

fn g_many_guests<M: Measurement>(c: &mut Criterion<M>) {
    let mut group = c.benchmark_group("g_many_guests");
    group.throughput(Throughput::Elements(1));
    let counts: &[u32] = if common::quick() {
        &[10, 1000]
    } else {
        &[10, 100, 1000, 8000]
    };
    for &n in counts {
        let (mut host, mut guests) = populated_with(n);
        let mut rng = common::rng();
        group.bench_with_input(BenchmarkId::new("churn (free+alloc)", n), &n, |b, _| {
            b.iter(|| {
                let (g, ps) = &mut guests[rng.random_range(0..n as usize)];
                let slot = &mut ps[rng.random_range(0..PER_GUEST as usize)];
                let freed = host.free(*g, black_box(*slot)).expect("free");
                host.complete_teardown(&[freed]).expect("teardown");
                *slot = host.alloc(*g, PasidKind::Shared).expect("alloc");
            })
        });
        group.bench_with_input(BenchmarkId::new("translate", n), &n, |b, _| {
            b.iter(|| {
                let (g, ps) = &guests[rng.random_range(0..n as usize)];
                let gpasid = ps[rng.random_range(0..PER_GUEST as usize)];
                host.translate(*g, black_box(gpasid)).expect("mapped")
            })
        });
    }
    group.finish();
}

bench_main!(e_migrate, f_1000_guests, g_many_guests);
