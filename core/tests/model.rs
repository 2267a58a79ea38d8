//! Model-based test: random sequences of every host operation run against `Host` and
//! against a plain reference model built from BTreeMaps. After each step the results
//! (errors included) and the whole state (via snapshots) must agree.
//!
//! The model and the step checker live in `support/model.rs`, shared with the hostile
//! guest tests and the `host_ops` fuzz target.

mod support;

use pasid_core::IdBitmap;
use pasid_core::{PasidLayout, Platform};
use proptest::prelude::*;
use support::model::{Checker, MinimalSource};
use support::strategy::op_strategy;

fn layouts() -> impl Strategy<Value = (PasidLayout, Platform)> {
    let layout = prop_oneof![
        Just(PasidLayout::new(5, 1..9, 16..24).unwrap()),
        Just(PasidLayout::new(5, 1..12, 12..15).unwrap()),
        Just(PasidLayout::new(5, 3..7, 20..32).unwrap()),
    ];
    let platform = prop_oneof![Just(Platform::P1), Just(Platform::P2)];
    (layout, platform)
}

/// Under Miri (about a thousand times slower) two cases still walk every operation
/// (about a minute); the full count runs natively.
const CASES: u32 = if cfg!(miri) { 2 } else { 256 };
/// Sequences up to 80 operations long (40 under Miri).
const MAX_OPS: usize = if cfg!(miri) { 40 } else { 80 };

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn host_agrees_with_the_model(
        (layout, platform) in layouts(),
        ops in proptest::collection::vec(op_strategy(), 1..MAX_OPS),
    ) {
        let mut checker = Checker::new(layout, platform);
        for op in &ops {
            if let Err(disagreement) = checker.step(op) {
                prop_assert!(false, "{}", disagreement);
            }
        }
    }

    /// The same, with the host's PASIDs from a source that offers only the trait's
    /// required methods (the path a broker or a VMM's callbacks take).
    #[test]
    fn host_agrees_with_the_model_through_a_minimal_source(
        (layout, platform) in layouts(),
        ops in proptest::collection::vec(op_strategy(), 1..MAX_OPS),
    ) {
        let source = MinimalSource(IdBitmap::new(layout.shared()).unwrap());
        let mut checker = Checker::with_source(layout, platform, source);
        for op in &ops {
            if let Err(disagreement) = checker.step(op) {
                prop_assert!(false, "{}", disagreement);
            }
        }
    }
}
