//! Devices as hardware has them, PASIDs that wait for the hardware, ids that never
//! alias, and host PASIDs from a source other than the in-process bitmap.

use pasid_core::IdBitmap;
use pasid_core::{
    DeviceKind, Draining, Error, GuestConfig, GuestId, Host, HostPasidSource, PasidKind,
    PasidLayout, Platform, ProgrammedEntry, Rid, SourceError,
};

const DSA: Rid = Rid::new(0, 0x0a00);
const VF: Rid = Rid::new(0, 0x0301);

fn layout() -> PasidLayout {
    PasidLayout::new(20, 1..4096, 4096..1 << 19).unwrap()
}

fn p2_host() -> Host {
    Host::new(layout(), Platform::P2).unwrap()
}

#[test]
fn a_shared_wq_serves_several_guests_with_their_own_host_pasids() {
    let mut host = p2_host();
    let guests: Vec<GuestId> = (0..3)
        .map(|_| host.create_guest(GuestConfig::p2(4)).unwrap())
        .collect();
    let mut programmed = Vec::new();
    for &g in &guests {
        host.attach(g, DSA, DeviceKind::SharedWq).unwrap();
        let p = host.alloc(g, PasidKind::Shared).unwrap();
        assert_eq!(p, 1, "every guest numbers its own PASIDs");
        programmed.push(host.bind(g, p, DSA).unwrap());
    }
    // One RID, three guests, three different host PASIDs in the descriptors.
    assert_eq!(programmed, [4096, 4097, 4098]);
    assert_eq!(
        host.rid_users(DSA).collect::<Vec<_>>(),
        guests
            .iter()
            .map(|&g| (g, DeviceKind::SharedWq))
            .collect::<Vec<_>>()
    );
    assert_eq!(host.owner(DSA), None, "nobody owns a shared WQ");
    // Detach and destroy work per guest and never touch the others.
    assert_eq!(host.unbind(guests[0], 1, DSA), Ok(4096));
    host.detach(guests[0], DSA).unwrap();
    let entries = host.destroy_guest(guests[1]).unwrap();
    assert_eq!(
        entries,
        [ProgrammedEntry {
            rid: DSA,
            kind: DeviceKind::SharedWq,
            gpasid: 1,
            pasid: 4097
        }]
    );
    assert_eq!(
        host.rid_users(DSA).collect::<Vec<_>>(),
        [(guests[2], DeviceKind::SharedWq)]
    );
    assert_eq!(host.translate(guests[2], 1), Ok(4098));
    assert_eq!(host.translate(guests[0], 1), Ok(4096));
}

#[test]
fn one_rid_can_carry_a_dedicated_and_a_shared_wq() {
    let mut host = p2_host();
    let g = host.create_guest(GuestConfig::p2(4)).unwrap();
    let other = host.create_guest(GuestConfig::p2(4)).unwrap();
    host.attach(g, DSA, DeviceKind::Dedicated).unwrap();
    host.attach(g, DSA, DeviceKind::SharedWq).unwrap();
    assert_eq!(
        host.attach(g, DSA, DeviceKind::SharedWq),
        Err(Error::RidInUse { rid: DSA })
    );
    // Another guest may share the WQ, never take the dedicated use.
    assert_eq!(
        host.attach(other, DSA, DeviceKind::Dedicated),
        Err(Error::RidInUse { rid: DSA })
    );
    host.attach(other, DSA, DeviceKind::SharedWq).unwrap();
    let s = host.alloc(g, PasidKind::Shared).unwrap();
    let h = host.translate(g, s).unwrap();
    // Naming no use is ambiguous; each use programs its own number.
    assert_eq!(host.bind(g, s, DSA), Err(Error::AmbiguousUse { rid: DSA }));
    assert_eq!(host.bind_use(g, s, DSA, DeviceKind::Dedicated), Ok(s));
    assert_eq!(host.bind_use(g, s, DSA, DeviceKind::SharedWq), Ok(h));
    assert_eq!(
        host.unbind(g, s, DSA),
        Err(Error::AmbiguousUse { rid: DSA })
    );
    assert_eq!(host.unbind_use(g, s, DSA, DeviceKind::SharedWq), Ok(h));
    // Bound on one use only: unbind finds it.
    assert_eq!(host.unbind(g, s, DSA), Ok(s));
    assert_eq!(host.detach_use(g, DSA, DeviceKind::Dedicated), Ok(()));
    assert_eq!(host.owner(DSA), None);
    assert_eq!(
        host.rid_users(DSA).collect::<Vec<_>>(),
        [(g, DeviceKind::SharedWq), (other, DeviceKind::SharedWq)]
    );
}

#[test]
fn freed_pasids_drain_until_the_vmm_confirms_the_teardown() {
    let mut host = p2_host();
    let g = host.create_guest(GuestConfig::p2(2)).unwrap();
    host.attach(g, VF, DeviceKind::Dedicated).unwrap();
    let a = host.alloc(g, PasidKind::Shared).unwrap();
    let b = host.alloc(g, PasidKind::Shared).unwrap();
    let ha = host.translate(g, a).unwrap();
    host.free(g, a).unwrap();
    // It stops translating at once, is not the guest's any more, counts to the quota.
    assert_eq!(host.translate(g, a), Err(Error::Draining { pasid: a }));
    assert_eq!(host.bind(g, a, VF), Err(Error::Draining { pasid: a }));
    assert_eq!(host.free(g, a), Err(Error::Draining { pasid: a }));
    assert_eq!(host.shared_held(g), Ok(2));
    assert_eq!(
        host.alloc(g, PasidKind::Shared),
        Err(Error::QuotaExceeded { quota: 2 })
    );
    // The next local gPASID is a new number, not the draining one.
    assert_eq!(host.alloc(g, PasidKind::Local), Ok(3));
    // A wrong or repeated confirmation changes nothing.
    let item = Draining {
        guest: g,
        gpasid: a,
        hpasid: Some(ha),
    };
    let before = host.snapshot();
    for bad in [
        vec![Draining {
            hpasid: Some(ha + 1),
            ..item
        }],
        vec![Draining { gpasid: b, ..item }],
        vec![item, item],
    ] {
        assert!(matches!(
            host.complete_teardown(&bad),
            Err(Error::NotDraining { .. })
        ));
        assert_eq!(host.snapshot(), before);
    }
    host.complete_teardown(&[item]).unwrap();
    assert_eq!(host.shared_held(g), Ok(1));
    assert_eq!(host.alloc(g, PasidKind::Shared), Ok(a));
    assert_eq!(host.translate(g, a), Ok(ha));
}

#[test]
fn destroy_goes_through_bindings_and_busy_devices() {
    let mut host = p2_host();
    let g = host.create_guest(GuestConfig::p2(4)).unwrap();
    host.attach(g, VF, DeviceKind::Dedicated).unwrap();
    host.attach(g, DSA, DeviceKind::SharedWq).unwrap();
    let s = host.alloc(g, PasidKind::Shared).unwrap();
    let l = host.alloc(g, PasidKind::Local).unwrap();
    let h = host.translate(g, s).unwrap();
    host.bind(g, s, VF).unwrap();
    host.bind(g, s, DSA).unwrap();
    host.bind(g, l, VF).unwrap();
    let expected: Vec<ProgrammedEntry> = host.programmed_entries(g).unwrap().collect();
    let entries = host.destroy_guest(g).unwrap();
    assert_eq!(entries, expected);
    assert_eq!(entries.len(), 3);
    assert!(entries.contains(&ProgrammedEntry {
        rid: DSA,
        kind: DeviceKind::SharedWq,
        gpasid: s,
        pasid: h
    }));
    // The RIDs are free for others at once; the host PASID only after the teardown.
    let g2 = host.create_guest(GuestConfig::p2(4)).unwrap();
    host.attach(g2, VF, DeviceKind::Dedicated).unwrap();
    let s2 = host.alloc(g2, PasidKind::Shared).unwrap();
    assert_ne!(
        host.translate(g2, s2),
        Ok(h),
        "a draining host PASID is not regranted"
    );
    assert_eq!(
        host.draining().collect::<Vec<_>>(),
        [Draining {
            guest: g,
            gpasid: s,
            hpasid: Some(h)
        }]
    );
}

#[test]
fn guest_ids_never_alias_over_the_life_of_a_host() {
    // One slot, more create/destroy cycles than its 16-bit generation can count.
    let mut host = Host::new(PasidLayout::new(8, 1..8, 8..16).unwrap(), Platform::P2).unwrap();
    let cycles = if cfg!(miri) { 70 } else { 65_600 };
    let mut seen = std::collections::HashSet::new();
    let mut stale = Vec::new();
    for _ in 0..cycles {
        let g = host.create_guest(GuestConfig::p2(1)).unwrap();
        assert!(seen.insert(g), "{g} handed out twice");
        host.destroy_guest(g).unwrap();
        if stale.len() < 64 || g.0 >> 16 == 0xffff {
            stale.push(g);
        }
    }
    // The first slot retired at generation 0xffff; the next id lives in slot 1.
    if !cfg!(miri) {
        assert!(stale.iter().any(|g| g.0 == 0xffff_0000));
        let next = host.create_guest(GuestConfig::p2(1)).unwrap();
        assert_eq!(next.0 & 0xffff, 1);
    }
    for g in seen.iter().copied().chain(stale) {
        assert_eq!(host.guest_config(g), Err(Error::NoSuchGuest { guest: g }));
    }
}

/// A source that refuses when told to, around a bitmap: a broker that ran dry, went
/// away, or cannot take a PASID back.
#[derive(Debug, Clone)]
struct Flaky {
    bitmap: IdBitmap,
    grants_left: u32,
    refuse_release: std::rc::Rc<std::cell::Cell<bool>>,
}

impl HostPasidSource for Flaky {
    fn range(&self) -> std::ops::Range<u32> {
        self.bitmap.range()
    }
    fn alloc(&mut self) -> Result<u32, SourceError> {
        if self.grants_left == 0 {
            return Err(SourceError::Disconnected);
        }
        self.grants_left -= 1;
        self.bitmap.alloc().ok_or(SourceError::Exhausted)
    }
    fn claim(&mut self, pasid: u32) -> Result<(), SourceError> {
        HostPasidSource::claim(&mut self.bitmap, pasid)
    }
    fn release(&mut self, pasid: u32) -> Result<(), SourceError> {
        if self.refuse_release.get() {
            return Err(SourceError::Disconnected);
        }
        HostPasidSource::release(&mut self.bitmap, pasid)
    }
    fn free_count(&self) -> u32 {
        self.bitmap.capacity() - self.bitmap.used()
    }
}

fn flaky(grants: u32) -> Host<Flaky> {
    let source = Flaky {
        bitmap: IdBitmap::new(layout().shared()).unwrap(),
        grants_left: grants,
        refuse_release: Default::default(),
    };
    Host::with_source(layout(), Platform::P2, source).unwrap()
}

#[test]
fn a_source_must_serve_the_layouts_shared_range() {
    let source = IdBitmap::new(4096..8192).unwrap();
    assert!(matches!(
        Host::with_source(layout(), Platform::P2, source),
        Err(Error::IncompatibleLayout { .. })
    ));
}

#[test]
fn a_refusing_source_leaves_the_host_unchanged() {
    let mut host = flaky(1);
    let g = host.create_guest(GuestConfig::p2(8)).unwrap();
    host.alloc(g, PasidKind::Shared).unwrap();
    let before = host.snapshot();
    assert_eq!(
        host.alloc(g, PasidKind::Shared),
        Err(Error::Source {
            error: SourceError::Disconnected
        })
    );
    assert_eq!(host.snapshot(), before);
}

#[test]
fn an_import_the_source_refuses_part_way_gives_everything_back() {
    let mut src = p2_host();
    let g = src.create_guest(GuestConfig::p2(8)).unwrap();
    for _ in 0..5 {
        src.alloc(g, PasidKind::Shared).unwrap();
    }
    let blob = src.export_guest(g).unwrap();
    // The destination's source grants three, then goes away.
    let mut dst = flaky(3);
    let before = dst.snapshot();
    let free_before = dst.source().free_count();
    assert_eq!(
        dst.import_guest(&blob, &[]).map(|_| ()),
        Err(Error::Source {
            error: SourceError::Disconnected
        })
    );
    assert_eq!(dst.snapshot(), before);
    assert_eq!(dst.source().free_count(), free_before, "all given back");
}

#[test]
fn a_source_that_cannot_take_a_pasid_back_keeps_it_ours() {
    let mut host = flaky(10);
    let refuse = host.source().refuse_release.clone();
    let g = host.create_guest(GuestConfig::p2(8)).unwrap();
    let p = host.alloc(g, PasidKind::Shared).unwrap();
    host.free(g, p).unwrap();
    refuse.set(true);
    let done: Vec<Draining> = host.draining().collect();
    host.complete_teardown(&done).unwrap();
    // Confirmed, but not taken back: still counted as this host's, never regranted.
    assert_eq!(host.pending_releases(), 1);
    assert_eq!(host.shared_in_use(), 1);
    assert!(host.source().bitmap.is_used(4096));
    assert_eq!(host.retry_releases(), 1);
    // The source recovers: the next retry hands it back.
    refuse.set(false);
    assert_eq!(host.retry_releases(), 0);
    assert_eq!(host.shared_in_use(), 0);
    assert!(!host.source().bitmap.is_used(4096));
}

#[test]
fn a_big_batch_of_confirmations_is_all_or_nothing_across_live_and_destroyed_guests() {
    let mut host = p2_host();
    let live = host.create_guest(GuestConfig::p2(4096)).unwrap();
    let gone = host.create_guest(GuestConfig::p2(4096)).unwrap();
    let mut items = Vec::new();
    for i in 0..3000u32 {
        let kind = if i % 3 == 0 {
            PasidKind::Local
        } else {
            PasidKind::Shared
        };
        let p = host.alloc(live, kind).unwrap();
        items.push(host.free(live, p).unwrap());
        host.alloc(gone, PasidKind::Shared).unwrap();
    }
    host.destroy_guest(gone).unwrap();
    items.extend(host.draining().filter(|d| d.guest == gone));
    assert_eq!(items.len(), 6000);
    // In any order; one repeat or one stranger anywhere refuses the whole batch.
    items.reverse();
    let before = host.snapshot();
    let mut repeated = items.clone();
    repeated.push(items[4321]);
    assert!(matches!(
        host.complete_teardown(&repeated),
        Err(Error::NotDraining { .. })
    ));
    let mut stranger = items.clone();
    stranger[17].hpasid = stranger[17].hpasid.map(|h| h + 1).or(Some(1));
    assert!(matches!(
        host.complete_teardown(&stranger),
        Err(Error::NotDraining { .. })
    ));
    assert_eq!(host.snapshot(), before);
    host.complete_teardown(&items).unwrap();
    assert_eq!(host.draining_count(), 0);
    assert_eq!(host.shared_in_use(), 0);
    assert_eq!(host.shared_held(live), Ok(0));
    assert_eq!(host.alloc(live, PasidKind::Shared), Ok(1));
}
