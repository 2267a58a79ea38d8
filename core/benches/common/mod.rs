//! What the benches share: one face over every id allocator we compare, and host set-up.
//!
//! Each peer is used through its own public API, configured for the same id range.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::ops::Range;

use bitmap_allocator::BitAlloc;
use pasid_core::bitmap::IdBitmap;
use pasid_core::{GuestConfig, GuestId, Host, PasidKind, PasidLayout, Platform};
use rand::rngs::SmallRng;
use rand::SeedableRng;

/// The host shared range of the layout: 4096..2^19.
pub const SHARED: Range<u32> = 4096..1 << 19;
/// A whole 2^19 range, for the fill/drain, churn and memory workloads.
pub const FULL_2_19: Range<u32> = 0..1 << 19;
/// The fill levels of workload (a), in percent.
pub const FILLS: [u32; 4] = [0, 50, 90, 99];

/// A fixed seed, so every run and every peer sees the same "random" sequence.
pub fn rng() -> SmallRng {
    SmallRng::seed_from_u64(0x5A51D)
}

/// An id allocator: lowest free id, and free.
pub trait IdAlloc {
    /// The peer's name in reports.
    const NAME: &'static str;
    /// Every id of `range` free.
    fn with_range(range: Range<u32>) -> Self;
    /// An id, or `None` when none is free.
    fn alloc(&mut self) -> Option<u32>;
    /// Frees `id`; false if the peer refused.
    fn free(&mut self, id: u32) -> bool;
}

/// Ours.
impl IdAlloc for IdBitmap {
    const NAME: &'static str = "pasid IdBitmap";
    fn with_range(range: Range<u32>) -> Self {
        IdBitmap::new(range).expect("memory")
    }
    #[inline]
    fn alloc(&mut self) -> Option<u32> {
        IdBitmap::alloc(self)
    }
    #[inline]
    fn free(&mut self, id: u32) -> bool {
        IdBitmap::free(self, id)
    }
}

/// rust-vmm's `IdAllocator`: a bump counter plus a `BTreeSet` of freed ids.
pub struct VmIdAllocator(vm_allocator::IdAllocator);

impl IdAlloc for VmIdAllocator {
    const NAME: &'static str = "vm-allocator IdAllocator";
    fn with_range(range: Range<u32>) -> Self {
        // Its range end is inclusive.
        VmIdAllocator(vm_allocator::IdAllocator::new(range.start, range.end - 1).expect("range"))
    }
    #[inline]
    fn alloc(&mut self) -> Option<u32> {
        self.0.allocate_id().ok()
    }
    #[inline]
    fn free(&mut self, id: u32) -> bool {
        self.0.free_id(id).is_ok()
    }
}

/// `bitmap-allocator`'s 2^20-bit segment tree (16-ary, u16 words), with only our range
/// marked free. It is a fixed-size value, so it lives in a box.
pub struct BitAlloc1M(Box<bitmap_allocator::BitAlloc1M>);

impl IdAlloc for BitAlloc1M {
    const NAME: &'static str = "bitmap-allocator BitAlloc1M";
    fn with_range(range: Range<u32>) -> Self {
        let mut b = Box::new(bitmap_allocator::BitAlloc1M::DEFAULT);
        b.insert(range.start as usize..range.end as usize);
        BitAlloc1M(b)
    }
    #[inline]
    fn alloc(&mut self) -> Option<u32> {
        self.0.alloc().map(|id| id as u32)
    }
    #[inline]
    fn free(&mut self, id: u32) -> bool {
        self.0.dealloc(id as usize)
    }
}

/// The textbook baseline: a `BTreeSet` holding every free id; take the first.
pub struct FreeSet(BTreeSet<u32>);

impl IdAlloc for FreeSet {
    const NAME: &'static str = "BTreeSet free list";
    fn with_range(range: Range<u32>) -> Self {
        FreeSet(range.collect())
    }
    #[inline]
    fn alloc(&mut self) -> Option<u32> {
        self.0.pop_first()
    }
    #[inline]
    fn free(&mut self, id: u32) -> bool {
        self.0.insert(id)
    }
}

/// Allocates `n` ids in order from a fresh allocator.
pub fn filled<A: IdAlloc>(range: Range<u32>, n: u32) -> A {
    let mut a = A::with_range(range);
    for _ in 0..n {
        a.alloc().expect("fill within capacity");
    }
    a
}

/// The layout: 20 bits, guest range 1..4096, shared range 4096..2^19, p2.
pub fn host() -> Host {
    host_with(1..4096)
}

/// A p2 host with the given guest range and the shared range [`SHARED`] (or, when the
/// guest range reaches past 4096, from its end to 2^19).
pub fn host_with(local: Range<u32>) -> Host {
    let shared = local.end.max(SHARED.start)..SHARED.end;
    let layout = PasidLayout::new(20, local, shared).expect("layout");
    Host::new(layout, Platform::P2).expect("host")
}

/// Fills `percent` of the host's shared range through guests that each take as many
/// shared PASIDs as their guest range holds. Returns the filler guests and their gPASIDs.
pub fn fill_shared(host: &mut Host, percent: u32) -> Vec<(GuestId, Vec<u32>)> {
    let local = host.layout().local();
    let per_guest = local.end - local.start;
    let mut want = (host.shared_free() as u64 * percent as u64 / 100) as u32;
    let mut guests = Vec::new();
    while want > 0 {
        let n = want.min(per_guest);
        let g = host.create_guest(GuestConfig::p2(n)).expect("guest");
        let gpasids = (0..n)
            .map(|_| host.alloc(g, PasidKind::Shared).expect("fill"))
            .collect();
        guests.push((g, gpasids));
        want -= n;
    }
    guests
}

/// Whether to measure the bench thread's CPU time instead of wall time
/// (`PASID_BENCH_CLOCK=cpu`, what `scripts/bench.sh --cpu-time` sets).
///
/// On a shared machine, wall time also counts the time other processes hold the core;
/// the thread's CPU time counts only ours, and equals wall time on an idle machine.
pub fn cpu_clock() -> bool {
    std::env::var("PASID_BENCH_CLOCK").is_ok_and(|v| v == "cpu")
}

/// Criterion measurement: CPU time of the measuring thread, in nanoseconds.
pub struct ThreadCpu;

impl criterion::measurement::Measurement for ThreadCpu {
    type Intermediate = cpu_time::ThreadTime;
    type Value = std::time::Duration;

    fn start(&self) -> Self::Intermediate {
        cpu_time::ThreadTime::now()
    }
    fn end(&self, start: Self::Intermediate) -> Self::Value {
        start.elapsed()
    }
    fn add(&self, a: &Self::Value, b: &Self::Value) -> Self::Value {
        *a + *b
    }
    fn zero(&self) -> Self::Value {
        std::time::Duration::ZERO
    }
    fn to_f64(&self, value: &Self::Value) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn criterion::measurement::ValueFormatter {
        &NanosFormatter
    }
}

/// Formats nanoseconds of CPU time like criterion formats wall time.
struct NanosFormatter;

impl criterion::measurement::ValueFormatter for NanosFormatter {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = match typical {
            t if t < 1e3 => (1.0, "ns"),
            t if t < 1e6 => (1e-3, "µs"),
            t if t < 1e9 => (1e-6, "ms"),
            _ => (1e-9, "s"),
        };
        values.iter_mut().for_each(|v| *v *= factor);
        unit
    }
    fn scale_throughputs(
        &self,
        _typical: f64,
        throughput: &criterion::Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let per = match *throughput {
            criterion::Throughput::Elements(n)
            | criterion::Throughput::Bytes(n)
            | criterion::Throughput::BytesDecimal(n)
            | criterion::Throughput::Bits(n)
            | criterion::Throughput::ElementsAndBytes { elements: n, .. } => n as f64,
        };
        values.iter_mut().for_each(|v| *v = per * 1e9 / *v);
        "elem/s (CPU)"
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

/// `main` for a bench file: runs the given bench functions (each generic over the
/// criterion measurement) with wall time, or with [`ThreadCpu`] when [`cpu_clock`].
#[macro_export]
macro_rules! bench_main {
    ($($bench:path),+ $(,)?) => {
        fn main() {
            let warm_up = std::time::Duration::from_millis(500);
            if common::cpu_clock() {
                let mut c = criterion::Criterion::default()
                    .with_measurement(common::ThreadCpu)
                    .warm_up_time(warm_up)
                    .configure_from_args();
                $($bench(&mut c);)+
                c.final_summary();
            } else {
                let mut c = criterion::Criterion::default()
                    .warm_up_time(warm_up)
                    .configure_from_args();
                $($bench(&mut c);)+
                c.final_summary();
            }
        }
    };
}
