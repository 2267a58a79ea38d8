//! (d) gPASID -> hPASID translation for random gPASIDs of a guest with 4096 shared
//! mappings (guest range 1..8192), next to the lookups a VMM could write instead: a flat
//! `Vec<u32>` indexed by gPASID (the floor: one load), a `BTreeMap` and a `HashMap`.
//! "pasid RemapTable get" is the guest's map alone (issue 14's target), "host translate"
//! the whole `Host::translate` (guest handle check included), "pasid 0.1 RemapTable"
//! the map before issue 14 (4 KiB tables), filled with the same mappings.
//!
//! `d_translate`: each iteration translates the same 1024 random gPASIDs, independent of
//! each other (throughput; per lookup). `d_translate_latency`: 1024 lookups where each
//! gPASID is picked using the previous result, so they cannot overlap (latency).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;

use criterion::measurement::Measurement;
use criterion::{Criterion, Throughput};
use pasid_core::bench_internals::RemapTable;
use pasid_core::{GuestConfig, PasidKind};
use rand::seq::IndexedRandom;

const MAPPINGS: u32 = 4096;
const LOOKUPS: usize = 1024;

fn d_translate<M: Measurement>(c: &mut Criterion<M>) {
    let mut host = common::host_with(1..8192);
    let g = host.create_guest(GuestConfig::p2(MAPPINGS)).expect("guest");
    let gpasids: Vec<u32> = (0..MAPPINGS)
        .map(|_| host.alloc(g, PasidKind::Shared).expect("alloc"))
        .collect();
    let pairs: Vec<(u32, u32)> = gpasids
        .iter()
        .map(|&gp| (gp, host.translate(g, gp).expect("mapped")))
        .collect();
    let mut rng = common::rng();
    let queries: Vec<u32> = (0..LOOKUPS)
        .map(|_| *gpasids.choose(&mut rng).expect("non-empty"))
        .collect();

    let mut flat = vec![0u32; 8192];
    for &(gp, hp) in &pairs {
        flat[gp as usize] = hp;
    }
    let mut remap = RemapTable::new(1..8192).expect("map");
    let mut old = common::old_remap::RemapTable::new(1..8192).expect("map");
    for &(gp, hp) in &pairs {
        remap.insert(gp, hp).expect("insert");
        old.insert(gp, hp).expect("insert");
    }
    let btree: BTreeMap<u32, u32> = pairs.iter().copied().collect();
    let hash: HashMap<u32, u32> = pairs.iter().copied().collect();

    let mut group = c.benchmark_group("d_translate");
    group.throughput(Throughput::Elements(LOOKUPS as u64));
    group.bench_function("host translate", |b| {
        b.iter(|| {
            let mut sum = 0u32;
            for &gp in black_box(&queries) {
                sum = sum.wrapping_add(host.translate(g, gp).expect("mapped"));
            }
            sum
        })
    });
    group.bench_function("pasid RemapTable get", |b| {
        b.iter(|| {
            let mut sum = 0u32;
            for &gp in black_box(&queries) {
                sum = sum.wrapping_add(remap.get(gp).expect("mapped"));
            }
            sum
        })
    });
    group.bench_function("pasid 0.1 RemapTable (before)", |b| {
        b.iter(|| {
            let mut sum = 0u32;
            for &gp in black_box(&queries) {
                sum = sum.wrapping_add(old.get(gp).expect("mapped"));
            }
            sum
        })
    });
    group.bench_function("flat Vec<u32> (floor)", |b| {
        b.iter(|| {
            let mut sum = 0u32;
            for &gp in black_box(&queries) {
                sum = sum.wrapping_add(*flat.get(gp as usize).expect("mapped"));
            }
            sum
        })
    });
    group.bench_function("BTreeMap<u32, u32>", |b| {
        b.iter(|| {
            let mut sum = 0u32;
            for &gp in black_box(&queries) {
                sum = sum.wrapping_add(*btree.get(&gp).expect("mapped"));
            }
            sum
        })
    });
    group.bench_function("HashMap<u32, u32>", |b| {
        b.iter(|| {
            let mut sum = 0u32;
            for &gp in black_box(&queries) {
                sum = sum.wrapping_add(*hash.get(&gp).expect("mapped"));
            }
            sum
        })
    });
    group.finish();

    // Latency: each lookup's gPASID depends on the previous result, so lookups cannot
    // overlap: the cost of one translation on a VM exit, not the throughput of a batch.
    let mut group = c.benchmark_group("d_translate_latency");
    group.throughput(Throughput::Elements(LOOKUPS as u64));
    let next = |h: u32, i: usize| queries[(h as usize ^ i) % LOOKUPS];
    group.bench_function("host translate", |b| {
        b.iter(|| {
            let mut h = 0u32;
            for i in 0..LOOKUPS {
                h = host.translate(g, next(h, i)).expect("mapped");
            }
            h
        })
    });
    group.bench_function("pasid RemapTable get", |b| {
        b.iter(|| {
            let mut h = 0u32;
            for i in 0..LOOKUPS {
                h = remap.get(next(h, i)).expect("mapped");
            }
            h
        })
    });
    group.bench_function("pasid 0.1 RemapTable (before)", |b| {
        b.iter(|| {
            let mut h = 0u32;
            for i in 0..LOOKUPS {
                h = old.get(next(h, i)).expect("mapped");
            }
            h
        })
    });
    group.bench_function("flat Vec<u32> (floor)", |b| {
        b.iter(|| {
            let mut h = 0u32;
            for i in 0..LOOKUPS {
                h = *flat.get(next(h, i) as usize).expect("mapped");
            }
            h
        })
    });
    group.bench_function("BTreeMap<u32, u32>", |b| {
        b.iter(|| {
            let mut h = 0u32;
            for i in 0..LOOKUPS {
                h = *btree.get(&next(h, i)).expect("mapped");
            }
            h
        })
    });
    group.bench_function("HashMap<u32, u32>", |b| {
        b.iter(|| {
            let mut h = 0u32;
            for i in 0..LOOKUPS {
                h = *hash.get(&next(h, i)).expect("mapped");
            }
            h
        })
    });
    group.finish();
}

bench_main!(d_translate);
