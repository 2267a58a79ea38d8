//! Model-based test: random sequences of every host operation run against `Host` and
//! against a plain reference model built from BTreeMaps. After each step the results
//! (errors included) and the whole state (via snapshots) must agree.
//!
//! The model and the step checker live in `support/model.rs`, shared with the hostile
//! guest tests and the `host_ops` fuzz target.

mod support;

use pasid_core::bitmap::IdBitmap;
use pasid_core::{DeviceKind, PasidKind, PasidLayout, Platform};
use proptest::prelude::*;
use support::model::{Checker, MinimalSource, Op};

fn op_strategy() -> impl Strategy<Value = Op> {
    let guest = 0usize..6;
    // Small ranges so exhaustion, quota and collisions happen often; PASIDs reach past
    // the local range (and 0) so range errors are exercised too.
    let pasid = 0u32..14;
    let rid = 0u16..5;
    let platform = prop_oneof![Just(Platform::P1), Just(Platform::P2)];
    let dkind = prop_oneof![Just(DeviceKind::Dedicated), Just(DeviceKind::SharedWq)];
    let hpasid = proptest::option::of(10u32..34);
    let pkind = prop_oneof![Just(PasidKind::Local), Just(PasidKind::Shared)];
    prop_oneof![
        2 => (platform, 0u32..6).prop_map(|(platform, quota)| Op::Create { platform, quota }),
        1 => guest.clone().prop_map(|guest| Op::Destroy { guest }),
        3 => (guest.clone(), rid.clone(), dkind.clone()).prop_map(|(guest, rid, kind)| Op::Attach { guest, rid, kind }),
        1 => (guest.clone(), rid.clone()).prop_map(|(guest, rid)| Op::Detach { guest, rid }),
        1 => (guest.clone(), rid.clone(), dkind.clone()).prop_map(|(guest, rid, kind)| Op::DetachUse { guest, rid, kind }),
        6 => (guest.clone(), pkind).prop_map(|(guest, kind)| Op::Alloc { guest, kind }),
        3 => (guest.clone(), pasid.clone()).prop_map(|(guest, pasid)| Op::Free { guest, pasid }),
        3 => (guest.clone(), pasid.clone()).prop_map(|(guest, pasid)| Op::Translate { guest, pasid }),
        4 => (guest.clone(), pasid.clone(), rid.clone()).prop_map(|(guest, pasid, rid)| Op::Bind { guest, pasid, rid }),
        2 => (guest.clone(), pasid.clone(), rid.clone(), dkind.clone()).prop_map(|(guest, pasid, rid, kind)| Op::BindUse { guest, pasid, rid, kind }),
        2 => (guest.clone(), pasid.clone(), rid.clone()).prop_map(|(guest, pasid, rid)| Op::Unbind { guest, pasid, rid }),
        3 => (0usize..64, proptest::bool::weighted(0.1)).prop_map(|(pick, twice)| Op::Complete { pick, twice }),
        1 => (guest.clone(), pasid.clone(), hpasid).prop_map(|(guest, pasid, hpasid)| Op::CompleteMadeUp { guest, pasid, hpasid }),
        1 => guest.clone().prop_map(|guest| Op::Reimport { guest }),
        3 => (guest.clone(), rid.clone(), pasid.clone()).prop_map(|(guest, rid, pasid)| Op::Record { guest, rid, pasid }),
        1 => (guest, rid, pasid).prop_map(|(guest, rid, pasid)| Op::Release { guest, rid, pasid }),
    ]
}

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
