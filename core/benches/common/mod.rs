//! What the benches share: one face over every id allocator we compare, and host set-up.
//!
//! Each peer is used through its own public API, configured for the same id range.
#![allow(dead_code)]

mod old_bitmap;
pub mod old_remap;

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::ops::Range;

use bitmap_allocator::BitAlloc;
use hibitset::BitSetLike;
use pasid_core::IdBitmap;
use pasid_core::{GuestConfig, GuestId, Host, PasidKind, PasidLayout, Platform};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
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

/// Whether `scripts/bench.sh --quick` asked for a short run (`PASID_BENCH_QUICK=1`):
/// fewer fill levels, so that every bench still builds and runs in CI's time.
pub fn quick() -> bool {
    std::env::var("PASID_BENCH_QUICK").is_ok_and(|v| v == "1")
}

/// Fill levels (percent) for the workloads that take one: all of them in full runs.
pub fn fills() -> &'static [u32] {
    if quick() {
        &[0, 90]
    } else {
        &FILLS
    }
}

/// How a fill level was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum History {
    /// The lowest `fill`% of the range allocated in order, the rest never touched.
    InOrder,
    /// Everything allocated, then `100 - fill`% of the ids freed in a random order: the
    /// free ids scattered, as after a long uptime.
    Random,
}

impl History {
    /// Both, in report order.
    pub const ALL: [History; 2] = [History::InOrder, History::Random];

    /// The name in bench ids.
    pub fn name(self) -> &'static str {
        match self {
            History::InOrder => "in order",
            History::Random => "random",
        }
    }
}

/// An id allocator that hands out the lowest free id: each peer behind one face.
pub trait IdAlloc {
    /// The peer's name in reports.
    const NAME: &'static str;
    /// Whether it can mark an exact id used ([`IdAlloc::claim`]).
    const CLAIMS: bool = false;
    /// The most frees of scattered ids its set-up can take in reasonable time (id-pool
    /// keeps a sorted `Vec` of ranges: each free of a scattered id is an insert into it).
    const MAX_SCATTERED: usize = usize::MAX;
    /// Whether lowest-free is a scan from the first word (flat bitsets): filling a
    /// whole range is then quadratic.
    const LINEAR_SEARCH: bool = false;
    /// Every id of `range` free.
    fn with_range(range: Range<u32>) -> Self;
    /// The lowest free id, now used; `None` when none is free.
    fn alloc(&mut self) -> Option<u32>;
    /// Frees a used `id`; false if the peer refused.
    fn free(&mut self, id: u32) -> bool;
    /// Marks a free `id` used: true if it was free. Only called when [`IdAlloc::CLAIMS`].
    fn claim(&mut self, _id: u32) -> bool {
        unreachable!("{} cannot claim an exact id", Self::NAME)
    }
}

/// Ours.
impl IdAlloc for IdBitmap {
    const NAME: &'static str = "pasid IdBitmap";
    const CLAIMS: bool = true;
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
    #[inline]
    fn claim(&mut self, id: u32) -> bool {
        IdBitmap::claim(self, id)
    }
}

/// Ours before issue 14 (pasid-core 0.1), for same-run before/after figures.
pub struct OldIdBitmap(old_bitmap::IdBitmap);

impl IdAlloc for OldIdBitmap {
    const NAME: &'static str = "pasid 0.1 IdBitmap (before)";
    const CLAIMS: bool = true;
    fn with_range(range: Range<u32>) -> Self {
        OldIdBitmap(old_bitmap::IdBitmap::new(range).expect("memory"))
    }
    #[inline]
    fn alloc(&mut self) -> Option<u32> {
        self.0.alloc()
    }
    #[inline]
    fn free(&mut self, id: u32) -> bool {
        self.0.free(id)
    }
    #[inline]
    fn claim(&mut self, id: u32) -> bool {
        self.0.claim(id)
    }
}

/// rust-vmm's `IdAllocator`: a bump counter plus a `BTreeSet` of freed ids (it hands
/// out the lowest freed id first, so it is lowest-free).
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
    const CLAIMS: bool = true;
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
    #[inline]
    fn claim(&mut self, id: u32) -> bool {
        let id = id as usize;
        let free = self.0.test(id);
        if free {
            self.0.remove(id..id + 1);
        }
        free
    }
}

/// The textbook baseline: a `BTreeSet` holding every free id; take the first.
pub struct FreeSet(BTreeSet<u32>);

impl IdAlloc for FreeSet {
    const NAME: &'static str = "BTreeSet free list";
    const CLAIMS: bool = true;
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
    #[inline]
    fn claim(&mut self, id: u32) -> bool {
        self.0.remove(&id)
    }
}

/// The other std baseline: a binary min-heap of free ids (`BinaryHeap<Reverse<u32>>`).
/// It cannot tell a double free nor claim an exact id; the benches never ask it to.
pub struct FreeHeap(BinaryHeap<Reverse<u32>>);

impl IdAlloc for FreeHeap {
    const NAME: &'static str = "std BinaryHeap free list";
    fn with_range(range: Range<u32>) -> Self {
        // In increasing order, a valid min-heap as it stands.
        FreeHeap(range.map(Reverse).collect())
    }
    #[inline]
    fn alloc(&mut self) -> Option<u32> {
        self.0.pop().map(|Reverse(id)| id)
    }
    #[inline]
    fn free(&mut self, id: u32) -> bool {
        self.0.push(Reverse(id));
        true
    }
}

/// `fixedbitset` (petgraph's flat bitset) holding the free ids; lowest free is its
/// `minimum()`, a scan from the first word.
pub struct FixedBits(fixedbitset::FixedBitSet);

impl IdAlloc for FixedBits {
    const NAME: &'static str = "fixedbitset (flat)";
    const CLAIMS: bool = true;
    const LINEAR_SEARCH: bool = true;
    fn with_range(range: Range<u32>) -> Self {
        let mut b = fixedbitset::FixedBitSet::with_capacity(range.end as usize);
        b.insert_range(range.start as usize..range.end as usize);
        FixedBits(b)
    }
    #[inline]
    fn alloc(&mut self) -> Option<u32> {
        let id = self.0.minimum()?;
        self.0.remove(id);
        Some(id as u32)
    }
    #[inline]
    fn free(&mut self, id: u32) -> bool {
        !self.0.put(id as usize)
    }
    #[inline]
    fn claim(&mut self, id: u32) -> bool {
        let was = self.0.contains(id as usize);
        self.0.remove(id as usize);
        was
    }
}

/// `bit-set` (contain-rs's flat bitset over `bit-vec`) holding the free ids; lowest
/// free is the first item of its iterator, a scan from the first word.
pub struct BitSetFlat(bit_set::BitSet);

impl IdAlloc for BitSetFlat {
    const NAME: &'static str = "bit-set (flat)";
    const CLAIMS: bool = true;
    const LINEAR_SEARCH: bool = true;
    fn with_range(range: Range<u32>) -> Self {
        let mut b = bit_set::BitSet::with_capacity(range.end as usize);
        for id in range {
            b.insert(id as usize);
        }
        BitSetFlat(b)
    }
    #[inline]
    fn alloc(&mut self) -> Option<u32> {
        let id = self.0.iter().next()?;
        self.0.remove(id);
        Some(id as u32)
    }
    #[inline]
    fn free(&mut self, id: u32) -> bool {
        self.0.insert(id as usize)
    }
    #[inline]
    fn claim(&mut self, id: u32) -> bool {
        self.0.remove(id as usize)
    }
}

/// `hibitset` (the hierarchical bitset of specs/amethyst: 64-ary layers over the bits)
/// holding the free ids; lowest free is the first item of its layered iterator.
pub struct HiBits(hibitset::BitSet);

impl IdAlloc for HiBits {
    const NAME: &'static str = "hibitset (hierarchical)";
    const CLAIMS: bool = true;
    fn with_range(range: Range<u32>) -> Self {
        let mut b = hibitset::BitSet::with_capacity(range.end);
        for id in range {
            b.add(id);
        }
        HiBits(b)
    }
    #[inline]
    fn alloc(&mut self) -> Option<u32> {
        let id = (&self.0).iter().next()?;
        self.0.remove(id);
        Some(id)
    }
    #[inline]
    fn free(&mut self, id: u32) -> bool {
        // `add` says whether it was there already.
        !self.0.add(id)
    }
    #[inline]
    fn claim(&mut self, id: u32) -> bool {
        self.0.remove(id)
    }
}

/// `id-pool`: a sorted `Vec` of free ranges; lowest free is the first range's start.
pub struct IdPoolRanges(id_pool::IdPool);

impl IdAlloc for IdPoolRanges {
    const NAME: &'static str = "id-pool (range list)";
    const MAX_SCATTERED: usize = 6_000;
    fn with_range(range: Range<u32>) -> Self {
        IdPoolRanges(id_pool::IdPool::new_ranged(range))
    }
    #[inline]
    fn alloc(&mut self) -> Option<u32> {
        self.0.request_id()
    }
    #[inline]
    fn free(&mut self, id: u32) -> bool {
        self.0.return_id(id).is_ok()
    }
}

/// `roaring` (compressed bitmap: 2^16-id containers, arrays or bitmaps or runs)
/// holding the free ids; lowest free is its `min()`.
pub struct Roaring(roaring::RoaringBitmap);

impl IdAlloc for Roaring {
    const NAME: &'static str = "roaring (compressed)";
    const CLAIMS: bool = true;
    fn with_range(range: Range<u32>) -> Self {
        let mut b = roaring::RoaringBitmap::new();
        b.insert_range(range);
        Roaring(b)
    }
    #[inline]
    fn alloc(&mut self) -> Option<u32> {
        let id = self.0.min()?;
        self.0.remove(id);
        Some(id)
    }
    #[inline]
    fn free(&mut self, id: u32) -> bool {
        self.0.insert(id)
    }
    #[inline]
    fn claim(&mut self, id: u32) -> bool {
        self.0.remove(id)
    }
}

/// Calls the generic function `$f::<A, _>(args)` once per allocator type `A`, ours
/// first, then ours before issue 14, then the peers.
#[macro_export]
macro_rules! for_each_alloc {
    ($f:ident ( $($arg:expr),* )) => {{
        $f::<pasid_core::IdBitmap, _>($($arg),*);
        $f::<common::OldIdBitmap, _>($($arg),*);
        $f::<common::VmIdAllocator, _>($($arg),*);
        $f::<common::BitAlloc1M, _>($($arg),*);
        $f::<common::FreeSet, _>($($arg),*);
        $f::<common::FreeHeap, _>($($arg),*);
        $f::<common::FixedBits, _>($($arg),*);
        $f::<common::BitSetFlat, _>($($arg),*);
        $f::<common::HiBits, _>($($arg),*);
        $f::<common::IdPoolRanges, _>($($arg),*);
        $f::<common::Roaring, _>($($arg),*);
    }};
}

/// Checks an adapter against a model of lowest-free semantics (a `BTreeSet` of free
/// ids) before anything of it is timed: a seeded random mix of allocations, frees of
/// held ids and (where offered) claims of any id of the range, on a small range that
/// does not start at 0, ending in exhaustion. Panics on the first difference.
pub fn check_against_model<A: IdAlloc>() {
    use rand::Rng;
    let range = 4000..4000 + 3000;
    let mut a = A::with_range(range.clone());
    let mut free: BTreeSet<u32> = range.clone().collect();
    let mut held: Vec<u32> = Vec::new();
    let mut rng = rng();
    for step in 0..20_000 {
        match rng.random_range(0..10) {
            0..=4 => {
                let got = a.alloc();
                assert_eq!(got, free.pop_first(), "{}: alloc at step {step}", A::NAME);
                held.extend(got);
            }
            5..=7 if !held.is_empty() => {
                let id = held.swap_remove(rng.random_range(0..held.len()));
                assert!(a.free(id), "{}: free({id}) at step {step}", A::NAME);
                free.insert(id);
            }
            8 | 9 if A::CLAIMS => {
                let id = rng.random_range(range.clone());
                let want = free.remove(&id);
                assert_eq!(a.claim(id), want, "{}: claim({id}) at step {step}", A::NAME);
                if want {
                    held.push(id);
                }
            }
            _ => {}
        }
    }
    while let Some(want) = free.pop_first() {
        assert_eq!(a.alloc(), Some(want), "{}: draining", A::NAME);
    }
    assert_eq!(a.alloc(), None, "{}: exhausted", A::NAME);
}

/// Allocates `n` ids in order from a fresh allocator.
pub fn filled<A: IdAlloc>(range: Range<u32>, n: u32) -> A {
    let mut a = A::with_range(range);
    for _ in 0..n {
        a.alloc().expect("fill within capacity");
    }
    a
}

/// An allocator over `range` at `fill`% reached by `history`, with its used and its
/// free ids (the used ones in a random order). `None` when the peer's set-up cannot
/// take that many scattered frees ([`IdAlloc::MAX_SCATTERED`]).
pub fn at_fill<A: IdAlloc>(
    range: Range<u32>,
    fill: u32,
    history: History,
) -> Option<(A, Vec<u32>, Vec<u32>)> {
    let cap = range.end - range.start;
    let n = (cap as u64 * fill as u64 / 100) as u32;
    let mut rng = rng();
    match history {
        History::InOrder => {
            let a = filled(range.clone(), n);
            let mut used: Vec<u32> = (range.start..range.start + n).collect();
            used.shuffle(&mut rng);
            Some((a, used, (range.start + n..range.end).collect()))
        }
        History::Random => {
            if (cap - n) as usize > A::MAX_SCATTERED {
                return None;
            }
            let mut a: A = filled(range.clone(), cap);
            let mut ids: Vec<u32> = range.collect();
            ids.shuffle(&mut rng);
            let free = ids.split_off(n as usize);
            for &id in &free {
                assert!(a.free(id));
            }
            Some((a, ids, free))
        }
    }
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

/// How long `f` takes on the clock the bench measures ([`cpu_clock`] or wall time): for
/// `iter_custom` benches that time only part of each round.
pub fn timed(f: impl FnOnce()) -> std::time::Duration {
    if cpu_clock() {
        let start = cpu_time::ThreadTime::now();
        f();
        start.elapsed()
    } else {
        let start = std::time::Instant::now();
        f();
        start.elapsed()
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
