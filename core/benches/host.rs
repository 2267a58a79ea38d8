//! Whole-host workloads, ours only (no peer offers a host of guests):
//!
//! * (e) `e_migrate`: export a guest with 4096 PASIDs, half of them shared, and import it
//!   on a second host (guest range 1..8192);
//! * (f) `f_1000_guests`: a host with 1,000 guests of 64 shared PASIDs each: create them
//!   and fill them, churn (free a random guest's random shared PASID, allocate one
//!   again), destroy them all, and confirm the 64,000 orphaned PASIDs' teardowns one
//!   call each, in the order `Host::draining` lists them;
//! * (g) `g_many_guests`: the same churn, and a translate of a random guest's random
//!   shared gPASID, with 10, 100, 1,000 and 8,000 guests of 64 shared PASIDs each (8,000
//!   fill 98% of the shared range): what a guest's footprint costs once the guests no
//!   longer fit in the caches. Same calls as (f)'s churn; per element = per free+alloc
//!   or per translate.

mod common;

use std::hint::black_box;

use criterion::measurement::Measurement;
use criterion::{BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput};
use pasid_core::{Draining, GuestConfig, GuestId, Host, PasidKind};
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

/// A host of many guests, each holding the same `PER_GUEST` shared gPASIDs.
struct Populated {
    host: Host,
    guests: Vec<GuestId>,
    /// The gPASIDs every guest holds (lowest-free allocation gives each the same ones).
    gpasids: Vec<u32>,
}

impl Populated {
    /// `guests` guests, each holding `PER_GUEST` shared PASIDs.
    fn new(guests: u32) -> Self {
        let mut host = common::host();
        let gpasids: Vec<u32> = (1..=PER_GUEST).collect();
        let guests = (0..guests)
            .map(|_| {
                let g = host
                    .create_guest(GuestConfig::p2(PER_GUEST))
                    .expect("guest");
                for &want in &gpasids {
                    let got = host.alloc(g, PasidKind::Shared).expect("alloc");
                    assert_eq!(got, want, "lowest free gPASID");
                }
                g
            })
            .collect();
        Populated {
            host,
            guests,
            gpasids,
        }
    }

    /// A random guest and one of its shared gPASIDs.
    #[inline(always)]
    fn pick(&self, rng: &mut impl Rng) -> (GuestId, u32) {
        let g = self.guests[rng.random_range(0..self.guests.len())];
        (g, self.gpasids[rng.random_range(0..self.gpasids.len())])
    }

    /// One churn step on a random guest: free one of its shared gPASIDs, confirm the
    /// teardown, allocate again. The freed gPASID is the guest's only free one, so the
    /// alloc gives it back and the bench needs no per-guest list of its own (whose
    /// cache misses would be counted as ours).
    #[inline(always)]
    fn churn(&mut self, rng: &mut impl Rng) {
        let (g, gpasid) = self.pick(rng);
        let freed = self.host.free(g, black_box(gpasid)).expect("free");
        self.host.complete_teardown(&[freed]).expect("teardown");
        let again = self.host.alloc(g, PasidKind::Shared).expect("alloc");
        assert_eq!(
            again, gpasid,
            "the lowest free gPASID is the one just freed"
        );
    }

    /// A translate of a random guest's random shared gPASID.
    #[inline(always)]
    fn translate(&self, rng: &mut impl Rng) -> u32 {
        let (g, gpasid) = self.pick(rng);
        self.host.translate(g, black_box(gpasid)).expect("mapped")
    }
}

fn f_1000_guests<M: Measurement>(c: &mut Criterion<M>) {
    let mut group = c.benchmark_group("f_1000_guests");
    group.sample_size(20);
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements((GUESTS * PER_GUEST) as u64));
    group.bench_function("create+fill", |b| b.iter(|| Populated::new(GUESTS)));

    let mut p = Populated::new(GUESTS);
    group.bench_function("destroy", |b| {
        b.iter_batched_ref(
            || p.host.clone(),
            |h| {
                for &g in &p.guests {
                    h.destroy_guest(g).expect("destroy");
                }
            },
            BatchSize::PerIteration,
        )
    });

    // What a VMM does after destroying guests and invalidating, one confirmation at a
    // time: until the orphan list kept holes, each took the rest of the list along.
    let mut orphaned = p.host.clone();
    for &g in &p.guests {
        orphaned.destroy_guest(g).expect("destroy");
    }
    let items: Vec<Draining> = orphaned.draining().collect();
    assert_eq!(items.len(), (GUESTS * PER_GUEST) as usize);
    group.bench_function("confirm orphans one by one", |b| {
        b.iter_batched_ref(
            || orphaned.clone(),
            |h| {
                for item in &items {
                    h.complete_teardown(std::slice::from_ref(item))
                        .expect("teardown");
                }
            },
            BatchSize::PerIteration,
        )
    });

    // Churn: one free and one alloc per element, on random guests.
    let mut rng = common::rng();
    group.throughput(Throughput::Elements(1));
    group.sample_size(100);
    group.sampling_mode(SamplingMode::Auto);
    group.bench_function("churn (free+alloc)", |b| b.iter(|| p.churn(&mut rng)));
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
        let mut p = Populated::new(n);
        let mut rng = common::rng();
        group.bench_with_input(BenchmarkId::new("churn (free+alloc)", n), &n, |b, _| {
            b.iter(|| p.churn(&mut rng))
        });
        group.bench_with_input(BenchmarkId::new("translate", n), &n, |b, _| {
            b.iter(|| p.translate(&mut rng))
        });
    }
    group.finish();
}

bench_main!(e_migrate, f_1000_guests, g_many_guests);
