//! Memory, no timing: the heap bytes each allocator holds for a 2^19-id range, and what
//! one guest with 4096 gPASID -> hPASID mappings costs, printed as Markdown tables.
//!
//! Bytes are counted by a counting global allocator (the `cap` crate) around the
//! construction and the operations: the live heap bytes requested, without malloc's own
//! per-block overhead. Ours is also given by its `heap_bytes()`, which must agree.

mod common;

use std::alloc::System;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use cap::Cap;
use pasid_core::IdBitmap;
use pasid_core::{GuestConfig, PasidKind};

use common::{IdAlloc, FULL_2_19};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// Live heap bytes that building and running `f` leaves behind in what it returns.
fn held<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = ALLOCATOR.allocated();
    let value = f();
    (value, ALLOCATOR.allocated() - before)
}

/// Bytes held by allocator `A` over `range`: all free, all used, and half used with the
/// free ids scattered (everything allocated, then every other id freed).
fn states<A: IdAlloc>(range: Range<u32>) -> [Option<usize>; 3] {
    // Flat bitsets search from the first word: fill them by claims (same end state).
    let fill = |a: &mut A| {
        if A::LINEAR_SEARCH {
            for id in range.clone() {
                a.claim(id);
            }
        } else {
            while a.alloc().is_some() {}
        }
    };
    let (_a, empty) = held(|| A::with_range(range.clone()));
    let (_a, full) = held(|| {
        let mut a = A::with_range(range.clone());
        fill(&mut a);
        a
    });
    // id-pool's frees of scattered ids are inserts into a sorted Vec: too slow here.
    let half = (A::MAX_SCATTERED >= range.len() / 2).then(|| {
        held(|| {
            let mut a = A::with_range(range.clone());
            fill(&mut a);
            for id in range.clone().step_by(2) {
                a.free(id);
            }
            a
        })
        .1
    });
    [Some(empty), Some(full), half]
}

fn kib(bytes: usize) -> String {
    format!("{:.1} KiB", bytes as f64 / 1024.0)
}

fn cell(bytes: Option<usize>) -> String {
    bytes.map_or_else(|| "not run (quadratic set-up)".into(), kib)
}

fn row<A: IdAlloc, T>(range: Range<u32>, _: T) {
    let [empty, full, half] = states::<A>(range).map(cell);
    println!("| {} | {} | {} | {} |", A::NAME, empty, full, half);
}

fn main() {
    println!("## Id allocators over 0..2^19 (524,288 ids)\n");
    println!("| allocator | all free | all used | half used, scattered |");
    println!("|---|---|---|---|");
    for_each_alloc!(row(FULL_2_19, ()));
    let big = IdBitmap::new(0..1 << 20).expect("memory");
    println!(
        "\nOur bitmap for all 2^20 PASIDs: {} ({} bytes; `heap_bytes()` says {}).",
        kib(held(|| IdBitmap::new(0..1 << 20).expect("memory")).1),
        held(|| IdBitmap::new(0..1 << 20).expect("memory")).1,
        big.heap_bytes()
    );

    println!("\n## One guest with 4096 shared mappings (guest range 1..8192)\n");
    let mut host = common::host_with(1..8192);
    let before = host.heap_bytes();
    let ((g, gpasids), ours) = held(|| {
        let g = host.create_guest(GuestConfig::p2(4096)).expect("guest");
        let ps: Vec<u32> = (0..4096)
            .map(|_| host.alloc(g, PasidKind::Shared).expect("alloc"))
            .collect();
        (g, ps)
    });
    let ours_vec = gpasids.capacity() * 4; // the bench's own list of gPASIDs
    let pairs: Vec<(u32, u32)> = gpasids
        .iter()
        .map(|&gp| (gp, host.translate(g, gp).expect("mapped")))
        .collect();
    let (_flat, flat) = held(|| {
        let mut v = vec![0u32; 8192];
        for &(gp, hp) in &pairs {
            v[gp as usize] = hp;
        }
        v
    });
    let (_bt, btree) = held(|| pairs.iter().copied().collect::<BTreeMap<u32, u32>>());
    let (_hm, hash) = held(|| pairs.iter().copied().collect::<HashMap<u32, u32>>());
    println!("| structure | bytes |");
    println!("|---|---|");
    println!(
        "| pasid guest (gPASID bitmap + translation tables + slot) | {} (`heap_bytes()` delta: {}) |",
        kib(ours - ours_vec),
        kib(host.heap_bytes() - before)
    );
    println!("| flat `Vec<u32>` over 0..8192 | {} |", kib(flat));
    println!("| `BTreeMap<u32, u32>` | {} |", kib(btree));
    println!("| `HashMap<u32, u32>` | {} |", kib(hash));

    // Averaged over many guests, so that the host's slot table (which grows by
    // doubling) is spread over them as it is in use.
    println!("\n## Bytes per guest, by shared PASIDs held (mean over many guests)\n");
    println!(
        "| guest range | shared PASIDs | guests | `heap_bytes()` per guest | allocator per guest |"
    );
    println!("|---|---|---|---|---|");
    for (local, n, guests) in [
        (1..4096, 0, 1000),
        (1..4096, 64, 1000),
        (1..8192, 0, 100),
        (1..8192, 64, 100),
        (1..8192, 4096, 100),
    ] {
        let mut host = common::host_with(local.clone());
        let before = host.heap_bytes();
        let (_g, bytes) = held(|| {
            (0..guests)
                .map(|_| {
                    let g = host.create_guest(GuestConfig::p2(n.max(1))).expect("guest");
                    for _ in 0..n {
                        host.alloc(g, PasidKind::Shared).expect("alloc");
                    }
                    g
                })
                .collect::<Vec<_>>()
        });
        let ids = guests * std::mem::size_of::<pasid_core::GuestId>();
        println!(
            "| {}..{} | {n} | {guests} | {} B | {} B |",
            local.start,
            local.end,
            (host.heap_bytes() - before) / guests,
            (bytes - ids) / guests
        );
    }

    // The translation map alone, now and in 0.1 (one 4 KiB table per 1024-gPASID
    // stretch), with n gPASIDs mapped from the bottom of the guest range as
    // lowest-free allocation maps them. Heap bytes, and the struct's own size: the map
    // keeps its lowest 128 entries inline (in the guest's slot, in a host).
    println!("\n## The translation map alone (`RemapTable`), guest range 1..8192\n");
    let inline_now = std::mem::size_of::<pasid_core::bench_internals::RemapTable>();
    let inline_before = std::mem::size_of::<common::old_remap::RemapTable>();
    println!(
        "| gPASIDs mapped | pasid RemapTable, heap + inline {inline_now} B | \
         pasid 0.1 RemapTable (before), heap + inline {inline_before} B |"
    );
    println!("|---|---|---|");
    for n in [0u32, 64, 4096] {
        let (_t, now) = held(|| {
            let mut t = pasid_core::bench_internals::RemapTable::new(1..8192).expect("map");
            for g in 1..=n {
                t.insert(g, g + 8192).expect("insert");
            }
            t
        });
        let (_t, before) = held(|| {
            let mut t = common::old_remap::RemapTable::new(1..8192).expect("map");
            for g in 1..=n {
                t.insert(g, g + 8192).expect("insert");
            }
            t
        });
        println!("| {n} | {now} B | {before} B |");
    }
}
