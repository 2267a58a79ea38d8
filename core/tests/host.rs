//! Unit tests of the host's rules: p1/p2 policy, isolation between guests, exhaustion.

use pasid_core::{
    DeviceKind, Error, ErrorCode, GuestConfig, GuestId, Host, PasidKind, PasidLayout, Platform, Rid,
};

const VF: Rid = Rid::new(0, 0x0301);
const VF2: Rid = Rid::new(0, 0x0302);
const WQ: Rid = Rid::new(0, 0x0a00);

fn p2_host() -> Host {
    Host::new(
        PasidLayout::new(20, 1..4096, 4096..1 << 19).unwrap(),
        Platform::P2,
    )
    .unwrap()
}

fn code<T: std::fmt::Debug>(r: Result<T, Error>) -> ErrorCode {
    r.unwrap_err().code()
}

#[test]
fn shared_and_local_share_one_guest_namespace() {
    let mut host = p2_host();
    let g = host.create_guest(GuestConfig::p2(8)).unwrap();
    host.attach(g, VF, DeviceKind::Dedicated).unwrap();
    host.attach(g, WQ, DeviceKind::SharedWq).unwrap();
    let local = host.alloc(g, PasidKind::Local).unwrap();
    let shared = host.alloc(g, PasidKind::Shared).unwrap();
    assert_eq!((local, shared), (1, 2));
    let hpasid = host.translate(g, shared).unwrap();
    assert_eq!(hpasid, 4096);
    assert_eq!(host.kind_of(g, local), Ok(PasidKind::Local));
    assert_eq!(host.kind_of(g, shared), Ok(PasidKind::Shared));
    // The mix the 2021 proposal gave up on: one gPASID on a VF and on a shared WQ.
    assert_eq!(host.bind(g, shared, VF), Ok(shared));
    assert_eq!(host.bind(g, shared, WQ), Ok(hpasid));
    assert_eq!(host.bind(g, local, VF), Ok(local));
    assert_eq!(
        host.bind(g, local, WQ),
        Err(Error::NotShared { pasid: local })
    );
    assert_eq!(
        host.translate(g, local),
        Err(Error::NotShared { pasid: local })
    );
}

#[test]
fn freeing_a_bound_pasid_is_refused_until_the_last_unbind() {
    let mut host = p2_host();
    let g = host.create_guest(GuestConfig::p2(8)).unwrap();
    host.attach(g, VF, DeviceKind::Dedicated).unwrap();
    host.attach(g, WQ, DeviceKind::SharedWq).unwrap();
    let p = host.alloc(g, PasidKind::Shared).unwrap();
    host.bind(g, p, VF).unwrap();
    host.bind(g, p, WQ).unwrap();
    assert_eq!(
        host.bind(g, p, WQ),
        Err(Error::AlreadyBound { pasid: p, rid: WQ })
    );
    assert_eq!(host.free(g, p), Err(Error::StillBound { pasid: p }));
    assert_eq!(host.detach(g, WQ), Err(Error::DeviceBusy { rid: WQ }));
    host.unbind(g, p, WQ).unwrap();
    assert_eq!(host.free(g, p), Err(Error::StillBound { pasid: p }));
    host.unbind(g, p, VF).unwrap();
    assert_eq!(
        host.unbind(g, p, VF),
        Err(Error::NotBound { pasid: p, rid: VF })
    );
    host.free(g, p).unwrap();
    // Freed: no longer translating, but draining until the VMM confirms teardown.
    assert_eq!(host.translate(g, p), Err(Error::Draining { pasid: p }));
    assert_eq!(host.shared_in_use(), 1);
    let draining: Vec<_> = host.draining().collect();
    assert_eq!(draining.len(), 1);
    host.complete_teardown(&draining).unwrap();
    assert_eq!(host.shared_in_use(), 0);
    assert_eq!(host.translate(g, p), Err(Error::NotAllocated { pasid: p }));
}

#[test]
fn guests_are_isolated() {
    let mut host = p2_host();
    let a = host.create_guest(GuestConfig::p2(4)).unwrap();
    let b = host.create_guest(GuestConfig::p2(4)).unwrap();
    host.attach(a, WQ, DeviceKind::SharedWq).unwrap();
    host.attach(b, VF, DeviceKind::Dedicated).unwrap();
    let pa = host.alloc(a, PasidKind::Shared).unwrap();
    let before = host.guest_snapshot(a).unwrap();

    // b cannot see, translate, bind or free a's PASID: its own namespace has no `pa`.
    assert_eq!(
        host.translate(b, pa),
        Err(Error::NotAllocated { pasid: pa })
    );
    assert_eq!(host.free(b, pa), Err(Error::NotAllocated { pasid: pa }));
    assert_eq!(host.kind_of(b, pa), Err(Error::NotAllocated { pasid: pa }));
    // nor use a's device, nor take its RID.
    let pb = host.alloc(b, PasidKind::Local).unwrap();
    assert_eq!(pb, pa, "each guest numbers its PASIDs on its own");
    assert_eq!(host.bind(b, pb, WQ), Err(Error::NoSuchDevice { rid: WQ }));
    assert_eq!(host.detach(b, WQ), Err(Error::NoSuchDevice { rid: WQ }));
    // nor take a's dedicated use of a RID.
    host.attach(a, Rid::new(0, 0x0302), DeviceKind::Dedicated)
        .unwrap();
    assert_eq!(
        host.attach(b, Rid::new(0, 0x0302), DeviceKind::Dedicated),
        Err(Error::RidInUse {
            rid: Rid::new(0, 0x0302)
        })
    );
    host.detach(a, Rid::new(0, 0x0302)).unwrap();
    host.free(b, pb).unwrap();
    assert_eq!(host.guest_snapshot(a).unwrap(), before);
    assert_eq!(host.translate(a, pa), Ok(4096));

    // A destroyed guest's id stays dead even when its slot is reused.
    host.destroy_guest(a).unwrap();
    let c = host.create_guest(GuestConfig::p2(4)).unwrap();
    assert_ne!(a, c);
    assert_eq!(host.translate(a, pa), Err(Error::NoSuchGuest { guest: a }));
    assert_eq!(
        host.destroy_guest(GuestId(12345)),
        Err(Error::NoSuchGuest {
            guest: GuestId(12345)
        })
    );
    assert_eq!(host.owner(WQ), None);
    assert_eq!(host.rid_users(WQ).count(), 0);
    // a's host PASID drains after its guest is gone, then goes back.
    assert_eq!(host.shared_in_use(), 1);
    // (after b's own freed local gPASID, which drains too)
    let draining: Vec<_> = host.draining().collect();
    assert_eq!(draining.len(), 2);
    assert_eq!((draining[0].guest, draining[0].hpasid), (b, None));
    assert_eq!((draining[1].guest, draining[1].hpasid), (a, Some(4096)));
    host.complete_teardown(&draining).unwrap();
    assert_eq!(host.shared_in_use(), 0);
}

#[test]
fn quota_caps_shared_pasids_only() {
    let mut host = p2_host();
    let g = host.create_guest(GuestConfig::p2(2)).unwrap();
    host.alloc(g, PasidKind::Shared).unwrap();
    host.alloc(g, PasidKind::Shared).unwrap();
    assert_eq!(
        host.alloc(g, PasidKind::Shared),
        Err(Error::QuotaExceeded { quota: 2 })
    );
    host.alloc(g, PasidKind::Local).unwrap();
    assert_eq!(host.shared_held(g), Ok(2));
}

#[test]
fn a_full_shared_range_frees_exactly_one() {
    let layout = PasidLayout::new(20, 1..4096, 4096..4096 + 300).unwrap();
    let mut host = Host::new(layout, Platform::P2).unwrap();
    let a = host.create_guest(GuestConfig::p2(200)).unwrap();
    let b = host.create_guest(GuestConfig::p2(200)).unwrap();
    let mut held = Vec::new();
    for i in 0..300 {
        let g = if i % 2 == 0 { a } else { b };
        let gp = host.alloc(g, PasidKind::Shared).unwrap();
        held.push((g, gp, host.translate(g, gp).unwrap()));
    }
    assert_eq!(host.shared_free(), 0);
    let before = host.snapshot();
    assert_eq!(
        host.alloc(a, PasidKind::Shared),
        Err(Error::SharedRangeExhausted)
    );
    assert_eq!(host.snapshot(), before, "a refused alloc changes nothing");
    // Local PASIDs do not need the shared range.
    let local = host.alloc(a, PasidKind::Local).unwrap();
    host.free(a, local).unwrap();

    let (g, gp, hp) = held[137];
    host.free(g, gp).unwrap();
    // Draining: not handed out again until its teardown is confirmed.
    assert_eq!(
        host.alloc(b, PasidKind::Shared),
        Err(Error::SharedRangeExhausted)
    );
    host.complete_teardown(&[pasid_core::Draining {
        guest: g,
        gpasid: gp,
        hpasid: Some(hp),
    }])
    .unwrap();
    let again = host.alloc(b, PasidKind::Shared).unwrap();
    assert_eq!(host.translate(b, again), Ok(hp));
    assert_eq!(
        host.alloc(a, PasidKind::Shared),
        Err(Error::SharedRangeExhausted)
    );
}

#[test]
fn a_full_guest_range_is_reported() {
    let layout = PasidLayout::new(8, 1..5, 128..256).unwrap();
    let mut host = Host::new(layout, Platform::P2).unwrap();
    let g = host.create_guest(GuestConfig::p2(100)).unwrap();
    for _ in 0..4 {
        host.alloc(g, PasidKind::Local).unwrap();
    }
    assert_eq!(
        host.alloc(g, PasidKind::Local),
        Err(Error::GuestRangeExhausted)
    );
    assert_eq!(
        host.alloc(g, PasidKind::Shared),
        Err(Error::GuestRangeExhausted)
    );
    assert_eq!(
        host.shared_in_use(),
        0,
        "a refused shared alloc gives back its hPASID"
    );
}

#[test]
fn p1_guests_record_their_own_choices() {
    let layout = PasidLayout::new(20, 1..4096, 4096..1 << 19).unwrap();
    let mut host = Host::new(layout, Platform::P1).unwrap();
    assert_eq!(
        code(host.create_guest(GuestConfig::p2(4))),
        ErrorCode::NotSupported
    );
    let g = host.create_guest(GuestConfig::p1()).unwrap();
    host.attach(g, VF, DeviceKind::Dedicated).unwrap();
    host.attach(g, VF2, DeviceKind::Dedicated).unwrap();
    assert_eq!(
        code(host.attach(g, WQ, DeviceKind::SharedWq)),
        ErrorCode::NotSupported
    );
    assert_eq!(
        code(host.alloc(g, PasidKind::Local)),
        ErrorCode::NotSupported
    );
    assert_eq!(code(host.bind(g, 7, VF)), ErrorCode::NotSupported);
    assert_eq!(host.record(g, VF, 7), Ok(7));
    assert_eq!(
        host.record(g, VF2, 7),
        Ok(7),
        "same number on another RID is fine"
    );
    assert_eq!(host.record(g, VF, 7), Err(Error::PasidInUse { pasid: 7 }));
    assert_eq!(
        host.record(g, VF, 0),
        Err(Error::PasidOutOfRange { pasid: 0 })
    );
    assert_eq!(
        host.record(g, VF, 4096),
        Err(Error::PasidOutOfRange { pasid: 4096 })
    );
    assert_eq!(host.record(g, WQ, 7), Err(Error::NoSuchDevice { rid: WQ }));
    assert_eq!(host.translate(g, 7), Err(Error::NotAllocated { pasid: 7 }));
    host.release(g, VF, 7).unwrap();
    assert_eq!(
        host.release(g, VF, 7),
        Err(Error::NotAllocated { pasid: 7 })
    );
    assert_eq!(host.shared_in_use(), 0);
}

#[test]
fn p2_hosts_keep_p1_guests_p1() {
    let mut host = p2_host();
    let g = host.create_guest(GuestConfig::p1()).unwrap();
    host.attach(g, VF, DeviceKind::Dedicated).unwrap();
    assert_eq!(host.record(g, VF, 9), Ok(9));
    assert_eq!(
        code(host.alloc(g, PasidKind::Shared)),
        ErrorCode::NotSupported
    );
    let p2 = host.create_guest(GuestConfig::p2(1)).unwrap();
    assert_eq!(code(host.record(p2, VF, 9)), ErrorCode::NotSupported);
}

#[test]
fn destroy_releases_everything() {
    let mut host = p2_host();
    let empty = host.snapshot();
    let g = host.create_guest(GuestConfig::p2(100)).unwrap();
    host.attach(g, VF, DeviceKind::Dedicated).unwrap();
    host.attach(g, WQ, DeviceKind::SharedWq).unwrap();
    for i in 0..100 {
        let kind = if i % 3 == 0 {
            PasidKind::Local
        } else {
            PasidKind::Shared
        };
        let p = host.alloc(g, kind).unwrap();
        host.bind(g, p, VF).unwrap();
    }
    // Destroy goes through whatever the guest holds, and lists what to clear.
    let entries = host.destroy_guest(g).unwrap();
    assert_eq!(entries.len(), 100);
    assert!(entries.iter().all(|e| e.rid == VF && e.pasid == e.gpasid));
    // Its host PASIDs drain until the VMM confirms the teardown.
    let draining: Vec<_> = host.draining().collect();
    assert_eq!(draining.len(), 66);
    assert_eq!(host.shared_in_use(), 66);
    host.complete_teardown(&draining).unwrap();
    assert_eq!(host.snapshot(), empty);
    assert_eq!(host.owner(VF), None);
    // Its RIDs can be attached again.
    let g2 = host.create_guest(GuestConfig::p2(1)).unwrap();
    host.attach(g2, WQ, DeviceKind::SharedWq).unwrap();
}

#[test]
fn rids_print_as_bdf() {
    assert_eq!(Rid::new(0, 0x0301).to_string(), "0000:03:00.1");
    assert_eq!(Rid::new(1, 0xff_ff).to_string(), "0001:ff:1f.7");
}
