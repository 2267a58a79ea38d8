//! The property tests' strategy: random operations on a host, with small ranges of
//! guests, PASIDs and RIDs so that exhaustion, quotas and collisions happen often.
//! Shared by `core/tests/model.rs` and the broker's `tests/host_model.rs`.

use pasid_core::{DeviceKind, PasidKind, Platform};
use proptest::prelude::*;

use super::model::Op;

/// One random operation (guest, PASID and RID operands are indices the checker maps).
pub fn op_strategy() -> impl Strategy<Value = Op> {
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
