//! The hierarchical bitmap allocator (`pasid_core::IdBitmap`, under every PASID
//! allocation) against a `BTreeSet` model: arbitrary ranges (up to 2^20 ids, anywhere
//! in u32, empty and reversed ones too) and arbitrary claim/free/alloc sequences,
//! including dense runs that fill and empty whole words and summary words.
#![no_main]

use std::collections::BTreeSet;
use std::ops::Range;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use pasid_core::IdBitmap;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Id {
    /// Offset from the range's start (wrapping), mostly small.
    Near(u16),
    /// Offset from the range's end, backwards.
    FromEnd(u8),
    Raw(u32),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    Alloc,
    AllocFrom(Id),
    FirstFreeFrom(Id),
    Claim(Id),
    Free(Id),
    IsUsed(Id),
    /// Claims up to 64 consecutive ids from `Id` (fills a word).
    ClaimRun(Id, u8),
    /// Frees up to 64 consecutive ids from `Id`.
    FreeRun(Id, u8),
    /// Allocates up to 64 times.
    AllocMany(u8),
}

#[derive(Arbitrary, Debug)]
struct Input {
    start: u32,
    len: u32,
    ops: Vec<Op>,
}

fn id(i: Id, r: &Range<u32>) -> u32 {
    match i {
        Id::Near(x) => r.start.wrapping_add(u32::from(x)),
        Id::FromEnd(x) => r.end.wrapping_sub(1 + u32::from(x)),
        Id::Raw(x) => x,
    }
}

struct Model {
    range: Range<u32>,
    used: BTreeSet<u32>,
}

impl Model {
    fn first_free_from(&self, start: u32) -> Option<u32> {
        let mut c = start.max(self.range.start);
        while c < self.range.end {
            if !self.used.contains(&c) {
                return Some(c);
            }
            c += 1;
        }
        None
    }
    fn claim(&mut self, id: u32) -> bool {
        self.range.contains(&id) && self.used.insert(id)
    }
    fn free(&mut self, id: u32) -> bool {
        self.used.remove(&id)
    }
}

fuzz_target!(|input: Input| {
    // Up to 2^20 ids (the PASID space), and often small ones.
    let len = if input.len & 1 == 0 {
        (input.len >> 1) % 300
    } else {
        (input.len >> 1) % (1 << 20)
    };
    let range = input.start..input.start.saturating_add(len);
    // Reversed ranges are accepted as empty.
    let reversed = input.len % 7 == 3 && input.start > 0;
    let given = if reversed {
        input.start..input.start / 2
    } else {
        range.clone()
    };
    let mut b = IdBitmap::new(given).expect("memory");
    let range = if reversed {
        input.start..input.start
    } else {
        range
    };
    assert_eq!(b.capacity(), range.end - range.start);
    let mut m = Model {
        range: range.clone(),
        used: BTreeSet::new(),
    };
    let mut steps = 0usize;
    for &op in input.ops.iter().take(150) {
        match op {
            Op::Alloc => {
                let want = m.first_free_from(0);
                assert_eq!(b.alloc(), want, "alloc");
                if let Some(x) = want {
                    m.used.insert(x);
                }
            }
            Op::AllocFrom(i) => {
                let s = id(i, &range);
                let want = m.first_free_from(s);
                assert_eq!(b.alloc_from(s), want, "alloc_from {s}");
                if let Some(x) = want {
                    m.used.insert(x);
                }
            }
            Op::FirstFreeFrom(i) => {
                let s = id(i, &range);
                assert_eq!(
                    b.first_free_from(s),
                    m.first_free_from(s),
                    "first_free_from {s}"
                );
            }
            Op::Claim(i) => {
                let x = id(i, &range);
                assert_eq!(b.claim(x), m.claim(x), "claim {x}");
            }
            Op::Free(i) => {
                let x = id(i, &range);
                assert_eq!(b.free(x), m.free(x), "free {x}");
            }
            Op::IsUsed(i) => {
                let x = id(i, &range);
                assert_eq!(b.is_used(x), m.used.contains(&x), "is_used {x}");
            }
            Op::ClaimRun(i, n) => {
                let s = id(i, &range);
                for x in (0..=u32::from(n % 64)).map_while(|k| s.checked_add(k)) {
                    assert_eq!(b.claim(x), m.claim(x), "claim {x} (run)");
                }
            }
            Op::FreeRun(i, n) => {
                let s = id(i, &range);
                for x in (0..=u32::from(n % 64)).map_while(|k| s.checked_add(k)) {
                    assert_eq!(b.free(x), m.free(x), "free {x} (run)");
                }
            }
            Op::AllocMany(n) => {
                for _ in 0..=n % 64 {
                    let want = m.first_free_from(0);
                    assert_eq!(b.alloc(), want, "alloc (many)");
                    match want {
                        Some(x) => m.used.insert(x),
                        None => break,
                    };
                }
            }
        }
        assert_eq!(b.used() as usize, m.used.len(), "used count after {op:?}");
        steps += 1;
    }
    if steps > 0 && (range.end - range.start) <= 1 << 16 {
        assert!(b.iter_used().eq(m.used.iter().copied()), "iter_used");
        // Equality ignores the search hints: a bitmap built by claims alone is equal.
        let mut fresh = IdBitmap::new(range.clone()).unwrap();
        for &x in &m.used {
            fresh.claim(x);
        }
        assert!(fresh == b, "equal to a bitmap with the same ids used");
    }
});
