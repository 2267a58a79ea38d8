//! Live migration: round trips of random guests between hosts in random fill states,
//! every refusal (with the destination unchanged), and corrupt or hostile blobs.

use pasid_core::migrate::{self, ImportReport, RidMapping, FORMAT_MAGIC, FORMAT_MAJOR};
use pasid_core::{
    DeviceKind, Error, GuestConfig, GuestContract, GuestId, Host, PasidKind, PasidLayout, Platform,
    Rid,
};
use proptest::prelude::*;

fn layout(local: std::ops::Range<u32>, shared: std::ops::Range<u32>) -> PasidLayout {
    PasidLayout::new(20, local, shared).unwrap()
}

fn host(local: std::ops::Range<u32>, shared: std::ops::Range<u32>, platform: Platform) -> Host {
    Host::new(layout(local, shared), platform).unwrap()
}

fn rid(bus: u8, devfn: u8) -> Rid {
    Rid::new(0, (bus as u16) << 8 | devfn as u16)
}

/// Identity map for every device of a guest.
fn identity(host: &Host, g: GuestId) -> Vec<(Rid, Rid)> {
    host.guest_snapshot(g)
        .unwrap()
        .devices
        .iter()
        .map(|d| (d.rid, d.rid))
        .collect()
}

/// Frames a payload the way docs/migration-format.md says: magic, major, minor,
/// payload length (all little-endian), payload, CRC-32 of everything before it.
fn frame(major: u16, minor: u16, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"PASIDMIG");
    b.extend_from_slice(&major.to_le_bytes());
    b.extend_from_slice(&minor.to_le_bytes());
    b.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    b.extend_from_slice(payload);
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

/// The payload of version 1 as a tuple, written independently of the crate's structs:
/// (width, local start, local end, shared start, shared end, source platform,
///  guest platform, quota, [gPASID gap << 1 | shared], [source hPASID zigzag deltas],
///  [(segment, bdf, kind, PASID count)], [device PASID gaps]).
type Payload = (
    u8,
    u32,
    u32,
    u32,
    u32,
    u8,
    u8,
    u32,
    Vec<u32>,
    Vec<u32>,
    Vec<(u16, u16, u8, u32)>,
    Vec<u32>,
);

fn zigzag(v: i32) -> u32 {
    ((v << 1) ^ (v >> 31)) as u32
}

/// gPASID 1 local, 2 and 3 shared (source hPASIDs 4096, 4097); a VF with 1 and 2
/// bound, a shared WQ with 2 bound.
fn good_payload() -> Payload {
    (
        20,
        1,
        4096,
        4096,
        1 << 19,
        2,
        2,
        4,
        vec![1 << 1, 1 << 1 | 1, 1 << 1 | 1],
        vec![zigzag(4096), zigzag(1)],
        vec![(0, 0x0100, 0, 2), (0, 0x0a00, 1, 1)],
        vec![1, 1, 2],
    )
}

fn blob_of(p: &Payload) -> Vec<u8> {
    frame(1, 0, &postcard::to_allocvec(p).unwrap())
}

/// A small p2 guest with both kinds of PASID and both kinds of device, bound.
fn small_p2(host: &mut Host) -> GuestId {
    let g = host.create_guest(GuestConfig::p2(8)).unwrap();
    host.attach(g, rid(1, 0x08), DeviceKind::Dedicated).unwrap();
    host.attach(g, rid(1, 0x10), DeviceKind::SharedWq).unwrap();
    let l = host.alloc(g, PasidKind::Local).unwrap();
    let s = host.alloc(g, PasidKind::Shared).unwrap();
    host.bind(g, l, rid(1, 0x08)).unwrap();
    host.bind(g, s, rid(1, 0x08)).unwrap();
    host.bind(g, s, rid(1, 0x10)).unwrap();
    g
}

/// Checks that `dg` on `dst` is `sg` on `src` as the guest sees it.
fn assert_same_guest(
    src: &Host,
    sg: GuestId,
    dst: &Host,
    dg: GuestId,
    map: &[(Rid, Rid)],
    report: &ImportReport,
) {
    let s = src.guest_snapshot(sg).unwrap();
    let d = dst.guest_snapshot(dg).unwrap();
    assert_eq!(s.config, d.config);
    assert_eq!(report.guest_platform, s.config.platform);
    assert_eq!(
        report.p1_guest_on_p2_host,
        s.config.platform == Platform::P1 && dst.platform() == Platform::P2
    );
    // Every gPASID and kind kept; shared ones have new hPASIDs in the destination's
    // shared range, which translate returns.
    assert_eq!(s.pasids.len(), d.pasids.len());
    let mut shared = report.shared.iter();
    for (a, b) in s.pasids.iter().zip(&d.pasids) {
        assert_eq!((a.gpasid, a.kind), (b.gpasid, b.kind));
        if b.kind == PasidKind::Shared {
            let h = b.hpasid.unwrap();
            assert!(dst.layout().shared().contains(&h));
            assert_eq!(dst.translate(dg, b.gpasid).unwrap(), h);
            let r = shared.next().unwrap();
            assert_eq!(
                (r.gpasid, r.source_hpasid, r.destination_hpasid),
                (a.gpasid, a.hpasid, h)
            );
        }
    }
    assert!(shared.next().is_none());
    // Devices at their mapped RIDs, same kind, same gPASIDs; dedicated RIDs programmed
    // with the same numbers, shared WQs with the new hPASIDs.
    assert_eq!(s.devices.len(), d.devices.len());
    assert_eq!(report.devices.len(), s.devices.len());
    for (sd, r) in s.devices.iter().zip(&report.devices) {
        let to = map.iter().find(|m| m.0 == sd.rid).unwrap().1;
        assert_eq!((r.source, r.destination, r.kind), (sd.rid, to, sd.kind));
        let dd = d
            .devices
            .iter()
            .find(|x| x.rid == to && x.kind == sd.kind)
            .unwrap();
        assert!(dst.rid_users(to).any(|u| u == (dg, sd.kind)));
        assert_eq!(sd.kind, dd.kind);
        assert_eq!(sd.programmed.len(), dd.programmed.len());
        for (a, b) in sd.programmed.iter().zip(&dd.programmed) {
            assert_eq!(a.gpasid, b.gpasid);
            match dd.kind {
                DeviceKind::Dedicated => {
                    assert_eq!((a.programmed, b.programmed), (a.gpasid, b.gpasid))
                }
                DeviceKind::SharedWq => {
                    assert_eq!(b.programmed, dst.translate(dg, b.gpasid).unwrap())
                }
            }
        }
    }
}

/// Imports and expects `want`, with the destination unchanged.
fn refused(dst: &mut Host, blob: &[u8], map: &[(Rid, Rid)], want: Error) {
    let before = dst.snapshot();
    assert_eq!(dst.check_import(blob, map), Err(want));
    assert_eq!(dst.import_guest(blob, map).map(|_| ()), Err(want));
    assert_eq!(dst.snapshot(), before);
}

// ---- happy paths ----

#[test]
fn a_p2_guest_moves_and_comes_back() {
    let mut src = host(1..4096, 4096..1 << 19, Platform::P2);
    let mut dst = host(1..4096, 1 << 19..1 << 20, Platform::P2);
    // Make the destination's lowest shared PASIDs busy so new numbers differ.
    let other = dst.create_guest(GuestConfig::p2(4)).unwrap();
    dst.alloc(other, PasidKind::Shared).unwrap();
    let g = small_p2(&mut src);
    let blob = src.export_guest(g).unwrap();
    let map = [(rid(1, 0x08), rid(7, 0x08)), (rid(1, 0x10), rid(7, 0x10))];
    let (g2, report) = dst.import_guest(&blob, &map).unwrap();
    assert_same_guest(&src, g, &dst, g2, &map, &report);
    assert_eq!(report.shared[0].source_hpasid, Some(4096));
    assert_eq!(report.shared[0].destination_hpasid, (1 << 19) + 1);
    // The migrated guest keeps working on the destination.
    let s2 = dst.alloc(g2, PasidKind::Shared).unwrap();
    assert!(dst.translate(g2, s2).unwrap() >= (1 << 19) + 2);
    dst.free(g2, s2).unwrap();
    assert_eq!(dst.free(g2, 2), Err(Error::StillBound { pasid: 2 }));

    // The source lets go; once the VMM confirms the teardown, the shared PASIDs
    // return to it.
    src.destroy_guest(g).unwrap();
    assert_eq!(src.shared_in_use(), 1);
    let gone: Vec<_> = src.draining().collect();
    src.complete_teardown(&gone).unwrap();
    assert_eq!(src.shared_in_use(), 0);
    // Rollback: the destination's export goes back into the source.
    let back: Vec<_> = map.iter().map(|&(a, b)| (b, a)).collect();
    let blob2 = dst.export_guest(g2).unwrap();
    let (g3, report2) = src.import_guest(&blob2, &back).unwrap();
    assert_same_guest(&dst, g2, &src, g3, &back, &report2);
    dst.destroy_guest(g2).unwrap();
    // Its held PASID and the one it freed drain, beside the other guest's.
    assert_eq!(dst.shared_in_use(), 3);
    let gone: Vec<_> = dst.draining().collect();
    dst.complete_teardown(&gone).unwrap();
    assert_eq!(dst.shared_in_use(), 1);
}

#[test]
fn a_p1_guest_stays_p1_on_a_p2_host() {
    let mut src = host(1..4096, 4096..8192, Platform::P1);
    let g = src.create_guest(GuestConfig::p1()).unwrap();
    src.attach(g, rid(2, 0), DeviceKind::Dedicated).unwrap();
    src.attach(g, rid(2, 1), DeviceKind::Dedicated).unwrap();
    for p in [5, 4095, 77] {
        src.record(g, rid(2, 0), p).unwrap();
    }
    src.record(g, rid(2, 1), 5).unwrap();
    let blob = src.export_guest(g).unwrap();
    for platform in [Platform::P1, Platform::P2] {
        let mut dst = host(1..4096, 8192..16384, platform);
        let map = identity(&src, g);
        let (g2, report) = dst.import_guest(&blob, &map).unwrap();
        assert_same_guest(&src, g, &dst, g2, &map, &report);
        assert_eq!(report.p1_guest_on_p2_host, platform == Platform::P2);
        assert_eq!(dst.guest_config(g2).unwrap().platform, Platform::P1);
        assert!(matches!(
            dst.alloc(g2, PasidKind::Local),
            Err(Error::NotSupported { .. })
        ));
        assert_eq!(
            dst.record(g2, rid(2, 0), 5),
            Err(Error::PasidInUse { pasid: 5 })
        );
    }
}

#[test]
fn inspect_shows_the_contents() {
    let mut src = host(1..4096, 4096..8192, Platform::P2);
    let g = small_p2(&mut src);
    let m = migrate::inspect(&src.export_guest(g).unwrap()).unwrap();
    assert_eq!((m.format_major, m.format_minor), (2, 0));
    assert_eq!(&m.source_layout, src.layout());
    assert_eq!(m.source_platform, Platform::P2);
    assert_eq!(m.config, GuestConfig::p2(8));
    let p: Vec<_> = m
        .pasids
        .iter()
        .map(|p| (p.gpasid, p.kind, p.source_hpasid))
        .collect();
    assert_eq!(
        p,
        [
            (1, PasidKind::Local, None),
            (2, PasidKind::Shared, Some(4096))
        ]
    );
    let d: Vec<_> = m
        .devices
        .iter()
        .map(|d| (d.rid, d.kind, d.pasids.clone()))
        .collect();
    assert_eq!(
        d,
        [
            (rid(1, 0x08), DeviceKind::Dedicated, vec![1, 2]),
            (rid(1, 0x10), DeviceKind::SharedWq, vec![2])
        ]
    );
    // The independently written payload decodes to the same guest shape.
    let m2 = migrate::inspect(&blob_of(&good_payload())).unwrap();
    let p: Vec<_> = m2
        .pasids
        .iter()
        .map(|p| (p.gpasid, p.kind, p.source_hpasid))
        .collect();
    assert_eq!(
        p,
        [
            (1, PasidKind::Local, None),
            (2, PasidKind::Shared, Some(4096)),
            (3, PasidKind::Shared, Some(4097))
        ]
    );
    assert_eq!(m2.devices[0].pasids, [1, 2]);
    assert_eq!(m2.devices[1].pasids, [2]);
    // Source host PASIDs are optional.
    let mut bare = good_payload();
    bare.9.clear();
    let m3 = migrate::inspect(&blob_of(&bare)).unwrap();
    assert!(m3.pasids.iter().all(|p| p.source_hpasid.is_none()));
    // And the export of the same guest is byte for byte what the format doc says.
    let mut h = host(1..4096, 4096..1 << 19, Platform::P2);
    let g = h.create_guest(GuestConfig::p2(4)).unwrap();
    h.attach(g, Rid::new(0, 0x0100), DeviceKind::Dedicated)
        .unwrap();
    h.attach(g, Rid::new(0, 0x0a00), DeviceKind::SharedWq)
        .unwrap();
    h.alloc(g, PasidKind::Local).unwrap();
    h.alloc(g, PasidKind::Shared).unwrap();
    h.alloc(g, PasidKind::Shared).unwrap();
    h.bind(g, 1, Rid::new(0, 0x0100)).unwrap();
    h.bind(g, 2, Rid::new(0, 0x0100)).unwrap();
    h.bind(g, 2, Rid::new(0, 0x0a00)).unwrap();
    let v1 = migrate::ExportOptions {
        version: migrate::FormatVersion::V1_0,
        epoch: 0,
    };
    assert_eq!(
        h.export_guest_with(g, &v1).unwrap(),
        blob_of(&good_payload())
    );
}

#[test]
fn export_into_a_caller_buffer() {
    let mut src = host(1..4096, 4096..8192, Platform::P2);
    let g = small_p2(&mut src);
    let blob = src.export_guest(g).unwrap();
    let mut small = vec![0; blob.len() - 1];
    assert_eq!(
        src.export_guest_into(g, &mut small),
        Err(Error::BufferTooSmall { needed: blob.len() })
    );
    assert_eq!(
        src.export_guest_into(g, &mut []),
        Err(Error::BufferTooSmall { needed: blob.len() })
    );
    let mut big = vec![0xee; blob.len() + 10];
    assert_eq!(src.export_guest_into(g, &mut big), Ok(blob.len()));
    assert_eq!(&big[..blob.len()], &blob[..]);
    assert!(blob[..8] == FORMAT_MAGIC && blob[8..10] == FORMAT_MAJOR.to_le_bytes());
    let stale = GuestId(g.0 ^ 0x10000);
    assert_eq!(
        src.export_guest(stale),
        Err(Error::NoSuchGuest { guest: stale })
    );
}

#[test]
fn an_empty_guest_and_a_big_one_migrate() {
    let mut src = host(1..4096, 4096..1 << 19, Platform::P2);
    let empty = src.create_guest(GuestConfig::p2(0)).unwrap();
    let mut dst = host(1..4096, 4096..1 << 19, Platform::P2);
    let (e2, r) = dst
        .import_guest(&src.export_guest(empty).unwrap(), &[])
        .unwrap();
    assert_same_guest(&src, empty, &dst, e2, &[], &r);

    let g = src.create_guest(GuestConfig::p2(4096)).unwrap();
    src.attach(g, rid(3, 0), DeviceKind::Dedicated).unwrap();
    src.attach(g, rid(3, 1), DeviceKind::SharedWq).unwrap();
    for i in 0..4095 {
        let kind = if i % 2 == 0 {
            PasidKind::Shared
        } else {
            PasidKind::Local
        };
        let p = src.alloc(g, kind).unwrap();
        src.bind(g, p, rid(3, 0)).unwrap();
        if kind == PasidKind::Shared {
            src.bind(g, p, rid(3, 1)).unwrap();
        }
    }
    let map = identity(&src, g);
    let (g2, r) = dst
        .import_guest(&src.export_guest(g).unwrap(), &map)
        .unwrap();
    assert_same_guest(&src, g, &dst, g2, &map, &r);
    assert_eq!(dst.shared_held(g2).unwrap(), 2048);
}

// ---- refusals: the destination stays unchanged ----

#[test]
fn refuses_a_p2_guest_on_a_p1_host() {
    let mut src = host(1..4096, 4096..8192, Platform::P2);
    let g = small_p2(&mut src);
    let mut dst = host(1..4096, 4096..8192, Platform::P1);
    let blob = src.export_guest(g).unwrap();
    let before = dst.snapshot();
    let e = dst.import_guest(&blob, &identity(&src, g)).unwrap_err();
    assert!(matches!(e, Error::NotSupported { .. }), "{e}");
    assert_eq!(dst.snapshot(), before);
    // Even a p2 guest without shared PASIDs or shared WQs: its vIOMMU allocates.
    let bare = src.create_guest(GuestConfig::p2(0)).unwrap();
    let e = dst
        .import_guest(&src.export_guest(bare).unwrap(), &[])
        .unwrap_err();
    assert_eq!(e.code(), pasid_core::ErrorCode::NotSupported);
}

#[test]
fn refuses_pasids_outside_the_destination_range() {
    // p2: the guest was told 4096..8192, beyond the destination's 1..4096: refused by
    // the contract, whatever the guest holds.
    let mut src = host(4096..8192, 1..4096, Platform::P2);
    let g = small_p2(&mut src);
    let blob = src.export_guest(g).unwrap();
    let told = src.guest_contract(g).unwrap();
    let mut dst = host(1..4096, 4096..8192, Platform::P2);
    let offered = GuestContract::offered_by(dst.layout(), Platform::P2);
    refused(
        &mut dst,
        &blob,
        &identity(&src, g),
        Error::ContractNotHonoured { told, offered },
    );
    let mut dst = host(4096..4097, 1..4096, Platform::P2);
    let offered = GuestContract::offered_by(dst.layout(), Platform::P2);
    refused(
        &mut dst,
        &blob,
        &identity(&src, g),
        Error::ContractNotHonoured { told, offered },
    );

    // p1: a guest told 1..8192 (width 13) that recorded PASIDs beyond what it was told
    // (the layout let it): the first recorded PASID outside, by RID then PASID.
    let mut src = host(1..9000, 9000..9100, Platform::P1);
    let g = src.create_guest(GuestConfig::p1()).unwrap();
    src.attach(g, rid(1, 0), DeviceKind::Dedicated).unwrap();
    src.attach(g, rid(1, 1), DeviceKind::Dedicated).unwrap();
    src.record(g, rid(1, 0), 10).unwrap();
    src.record(g, rid(1, 1), 8500).unwrap();
    src.record(g, rid(1, 1), 8600).unwrap();
    let mut dst = host(1..8192, 8192..9000, Platform::P1);
    refused(
        &mut dst,
        &src.export_guest(g).unwrap(),
        &identity(&src, g),
        Error::PasidOutOfRange { pasid: 8500 },
    );
}

#[test]
fn refuses_when_shared_pasids_do_not_fit() {
    let mut src = host(1..4096, 4096..8192, Platform::P2);
    let g = src.create_guest(GuestConfig::p2(8)).unwrap();
    for _ in 0..3 {
        src.alloc(g, PasidKind::Shared).unwrap();
    }
    let blob = src.export_guest(g).unwrap();
    // A shared range of 2 can never hold 3.
    let mut dst = host(1..4096, 4096..4098, Platform::P2);
    let before = dst.snapshot();
    let e = dst.import_guest(&blob, &[]).unwrap_err();
    assert!(matches!(e, Error::IncompatibleLayout { .. }), "{e}");
    assert_eq!(dst.snapshot(), before);
    // A range of 4 with 2 in use holds only 2 more.
    let mut dst = host(1..4096, 4096..4100, Platform::P2);
    let other = dst.create_guest(GuestConfig::p2(8)).unwrap();
    dst.alloc(other, PasidKind::Shared).unwrap();
    dst.alloc(other, PasidKind::Shared).unwrap();
    refused(&mut dst, &blob, &[], Error::SharedRangeExhausted);
    // Free one, confirm its teardown, and it fits.
    dst.free(other, 1).unwrap();
    let freed: Vec<_> = dst.draining().collect();
    dst.complete_teardown(&freed).unwrap();
    let (g2, r) = dst.import_guest(&blob, &[]).unwrap();
    assert_same_guest(&src, g, &dst, g2, &[], &r);
    assert_eq!(dst.shared_free(), 0);
}

#[test]
fn refuses_bad_rid_maps() {
    let mut src = host(1..4096, 4096..8192, Platform::P2);
    let g = small_p2(&mut src);
    let blob = src.export_guest(g).unwrap();
    let mut dst = host(1..4096, 4096..8192, Platform::P2);
    let (a, b) = (rid(1, 0x08), rid(1, 0x10));
    // Unmapped: an error, never identity.
    refused(&mut dst, &blob, &[], Error::RidNotMapped { rid: a });
    refused(&mut dst, &blob, &[(a, a)], Error::RidNotMapped { rid: b });
    // Ambiguous.
    refused(
        &mut dst,
        &blob,
        &[(a, rid(9, 0)), (b, b), (a, rid(9, 1))],
        Error::RidMappedTwice { rid: a },
    );
    // A dedicated and a shared-WQ device onto one RID: one RID with both uses.
    let mixed = [(a, rid(9, 0)), (b, rid(9, 0))];
    assert_eq!(dst.check_import(&blob, &mixed), Ok(()));
    // Two devices of one use onto one RID collide.
    let g_two = src.create_guest(GuestConfig::p2(1)).unwrap();
    src.attach(g_two, rid(2, 1), DeviceKind::Dedicated).unwrap();
    src.attach(g_two, rid(2, 2), DeviceKind::Dedicated).unwrap();
    let two = src.export_guest(g_two).unwrap();
    refused(
        &mut dst,
        &two,
        &[(rid(2, 1), rid(9, 0)), (rid(2, 2), rid(9, 0))],
        Error::RidInUse { rid: rid(9, 0) },
    );
    // Destination RID owned by another guest.
    let other = dst.create_guest(GuestConfig::p2(1)).unwrap();
    dst.attach(other, rid(9, 1), DeviceKind::Dedicated).unwrap();
    refused(
        &mut dst,
        &blob,
        &[(a, rid(9, 1)), (b, rid(9, 0))],
        Error::RidInUse { rid: rid(9, 1) },
    );
    // ... but its shared WQ takes any number of guests.
    assert_eq!(
        dst.check_import(&blob, &[(a, rid(9, 0)), (b, rid(9, 1))]),
        Ok(())
    );
    // Extra entries for RIDs the guest lacks are fine.
    let map = [(rid(5, 5), rid(9, 1)), (a, rid(9, 2)), (b, rid(9, 3))];
    let (g2, r) = dst.import_guest(&blob, &map).unwrap();
    assert_same_guest(&src, g, &dst, g2, &map, &r);
    // Importing the same blob again is a replay, refused before anything else...
    let identity = r.identity.unwrap();
    refused(&mut dst, &blob, &map, Error::Replayed { identity });
    // ... and a new migration attempt of it collides with the guest just made.
    let retry = src
        .export_guest_with(
            g,
            &migrate::ExportOptions {
                epoch: 1,
                ..Default::default()
            },
        )
        .unwrap();
    refused(&mut dst, &retry, &map, Error::RidInUse { rid: rid(9, 2) });
}

/// [`refused`] for mappings that may say the destination's kind.
fn refused_mapped<M: Copy + Into<RidMapping>>(dst: &mut Host, blob: &[u8], map: &[M], want: Error) {
    let before = dst.snapshot();
    assert_eq!(dst.check_import_mapped(blob, map), Err(want));
    assert_eq!(dst.import_guest_mapped(blob, map).map(|_| ()), Err(want));
    assert_eq!(dst.snapshot(), before);
}

#[test]
fn rid_mappings_convert_from_tuples() {
    let (a, b) = (rid(1, 0x08), rid(2, 0x08));
    assert_eq!(
        RidMapping::from((a, b)),
        RidMapping {
            source: a,
            destination: b,
            kind: None
        }
    );
    assert_eq!(
        RidMapping::from((a, b, DeviceKind::SharedWq)).kind,
        Some(DeviceKind::SharedWq)
    );
}

#[test]
fn refuses_a_rid_kind_mismatch() {
    let mut src = host(1..4096, 4096..8192, Platform::P2);
    let g = small_p2(&mut src);
    let blob = src.export_guest(g).unwrap();
    let mut dst = host(1..4096, 4096..8192, Platform::P2);
    // A busy destination, so "unchanged" means something.
    let o = small_p2(&mut dst);
    dst.alloc(o, PasidKind::Shared).unwrap();
    let (vf, wq) = (rid(1, 0x08), rid(1, 0x10));
    let (vf2, wq2) = (rid(2, 0x08), rid(2, 0x10));
    use DeviceKind::{Dedicated, SharedWq};
    // The VF mapped onto a shared WQ: named by the destination RID, both kinds given.
    refused_mapped(
        &mut dst,
        &blob,
        &[(vf, vf2, SharedWq), (wq, wq2, SharedWq)],
        Error::DeviceKindMismatch {
            rid: vf2,
            guest_kind: Dedicated,
            destination_kind: SharedWq,
        },
    );
    // The shared WQ onto a VF; the first conflict by source RID is the one reported.
    let swapped = Error::DeviceKindMismatch {
        rid: wq2,
        guest_kind: SharedWq,
        destination_kind: Dedicated,
    };
    refused_mapped(
        &mut dst,
        &blob,
        &[(vf, vf2, Dedicated), (wq, wq2, Dedicated)],
        swapped,
    );
    // Mappings mixed with and without kinds, as RidMapping values.
    let map = [
        RidMapping::from((vf, vf2)),
        RidMapping::from((wq, wq2, Dedicated)),
    ];
    refused_mapped(&mut dst, &blob, &map, swapped);
    assert_eq!(swapped.code() as u32, 51);
    assert!(
        swapped.to_string().contains("RID kind mismatch"),
        "{swapped}"
    );
    // The kind is checked before the destination RID's owner: a busy RID of the wrong
    // kind is a kind mismatch (the map itself is wrong).
    refused_mapped(
        &mut dst,
        &blob,
        &[(vf, vf2, Dedicated), (wq, vf, Dedicated)],
        Error::DeviceKindMismatch {
            rid: vf,
            guest_kind: SharedWq,
            destination_kind: Dedicated,
        },
    );
    // ...and after the map's own errors.
    refused_mapped(
        &mut dst,
        &blob,
        &[(wq, wq2, Dedicated)],
        Error::RidNotMapped { rid: vf },
    );

    // Matching kinds are accepted, and the report lists every device.
    let mut ok = dst.clone();
    let (g2, r) = ok
        .import_guest_mapped(&blob, &[(vf, vf2, Dedicated), (wq, wq2, SharedWq)])
        .unwrap();
    assert_same_guest(&src, g, &ok, g2, &[(vf, vf2), (wq, wq2)], &r);
    assert_eq!(r.devices.len(), 2);
    assert_eq!(
        r.devices.iter().map(|d| d.kind).collect::<Vec<_>>(),
        [Dedicated, SharedWq]
    );

    // No kind: not checked, the devices keep the kinds they had.
    let mut ok = dst.clone();
    let map = [RidMapping::from((vf, vf2)), RidMapping::from((wq, wq2))];
    ok.check_import_mapped(&blob, &map).unwrap();
    let (g2, r) = ok.import_guest_mapped(&blob, &map).unwrap();
    assert_same_guest(&src, g, &ok, g2, &[(vf, vf2), (wq, wq2)], &r);
}

#[test]
fn refused_imports_change_nothing_in_a_busy_host() {
    // The refusal checks run on a destination with guests, devices and holes.
    let mut dst = host(1..4096, 4096..4200, Platform::P2);
    let o = small_p2(&mut dst);
    for _ in 0..5 {
        dst.alloc(o, PasidKind::Shared).unwrap();
    }
    dst.free(o, 4).unwrap();
    let freed: Vec<_> = dst.draining().collect();
    dst.complete_teardown(&freed).unwrap();
    let mut src = host(1..4096, 4096..8192, Platform::P2);
    let g = small_p2(&mut src);
    let blob = src.export_guest(g).unwrap();
    refused(
        &mut dst,
        &blob,
        &identity(&src, g),
        Error::RidInUse { rid: rid(1, 0x08) },
    );
    let map = [(rid(1, 0x08), rid(4, 0)), (rid(1, 0x10), rid(4, 1))];
    let (g2, r) = dst.import_guest(&blob, &map).unwrap();
    assert_same_guest(&src, g, &dst, g2, &map, &r);
    // Lowest free host PASID: the hole the free left.
    assert_eq!(
        r.shared[0].destination_hpasid,
        dst.translate(o, 5).unwrap() - 1
    );
}

// ---- corrupt blobs ----

fn corrupt(blob: &[u8]) -> Error {
    let mut dst = host(1..4096, 4096..8192, Platform::P2);
    let before = dst.snapshot();
    let map = [(rid(1, 0x08), rid(1, 0x08)), (rid(1, 0x10), rid(1, 0x10))];
    let e = dst.import_guest(blob, &map).map(|_| ()).unwrap_err();
    assert_eq!(migrate::inspect(blob).map(|_| ()), Err(e));
    assert_eq!(dst.snapshot(), before);
    e
}

fn reason(e: Error) -> &'static str {
    match e {
        Error::MalformedBlob { reason } => reason,
        other => panic!("expected MalformedBlob, got {other:?}"),
    }
}

#[test]
fn every_truncation_and_every_flipped_bit_is_refused() {
    let mut src = host(1..4096, 4096..8192, Platform::P2);
    let g = small_p2(&mut src);
    let blob = src.export_guest(g).unwrap();
    assert!(blob.len() < 96, "keep this blob small: {}", blob.len());
    for len in 0..blob.len() {
        let e = corrupt(&blob[..len]);
        assert_eq!(e.code(), pasid_core::ErrorCode::MalformedBlob, "len {len}");
    }
    for bit in 0..blob.len() * 8 {
        let mut b = blob.clone();
        b[bit / 8] ^= 1 << (bit % 8);
        let e = corrupt(&b);
        match bit / 8 {
            0..8 | 12..16 => assert!(matches!(e, Error::MalformedBlob { .. }), "{bit}: {e}"),
            8..10 => assert!(matches!(e, Error::UnsupportedVersion { .. }), "{bit}: {e}"),
            // A flipped minor version only says "newer"; the checksum still catches it.
            _ => assert_eq!(e, Error::ChecksumMismatch, "bit {bit}"),
        }
    }
}

#[test]
fn wrong_magic_versions_garbage_and_empty() {
    assert_eq!(reason(corrupt(&[])), "the blob is empty");
    assert!(reason(corrupt(b"hello, world, this is not a blob")).contains("magic"));
    assert!(reason(corrupt(&[0xff; 100])).contains("magic"));
    assert!(reason(corrupt(b"PASID")).contains("truncated"));
    let p = postcard::to_allocvec(&good_payload()).unwrap();
    assert_eq!(
        corrupt(&frame(3, 0, &p)),
        Error::UnsupportedVersion {
            found: 3,
            supported: 2
        }
    );
    // A 2.x blob must have its records after the 1.0 fields.
    assert!(reason(corrupt(&frame(2, 0, &p))).contains("record list"));
    assert_eq!(
        corrupt(&frame(0, 0, &p)),
        Error::UnsupportedVersion {
            found: 0,
            supported: 2
        }
    );
    // Trailing bytes after the checksum.
    let mut long = frame(1, 0, &p);
    long.push(0);
    assert!(reason(corrupt(&long)).contains("longer"));
    // Bytes after the payload: refused. 1.0 is the only 1.x: the old rule let a 1.x
    // reader skip appended bytes, so a "1.7" is refused rather than half read.
    let mut more = p.clone();
    more.extend_from_slice(&[1, 2, 3]);
    assert!(reason(corrupt(&frame(1, 0, &more))).contains("after the payload"));
    assert_eq!(
        migrate::inspect(&frame(1, 7, &more)).map(|_| ()),
        Err(Error::UnsupportedVersion {
            found: 1,
            supported: 2
        })
    );
    // A payload cut short inside its framing.
    assert!(reason(corrupt(&frame(1, 0, &p[..p.len() - 1]))).contains("ends early"));
    // Random garbage behind a correct header and checksum.
    let mut seed = 0x1234_5678u32;
    for len in 0..200 {
        let junk: Vec<u8> = (0..len)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 24) as u8
            })
            .collect();
        let e = corrupt(&frame(1, 0, &junk));
        assert!(
            matches!(e, Error::MalformedBlob { .. } | Error::QuotaExceeded { .. }),
            "{e}"
        );
    }
}

#[test]
fn hostile_payloads_are_refused() {
    let ok = good_payload();
    assert!(migrate::inspect(&blob_of(&ok)).is_ok());
    type Edit = Box<dyn Fn(&mut Payload)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("layout is not valid", Box::new(|p| p.2 = 5000)), // ranges overlap
        ("layout is not valid", Box::new(|p| p.0 = 21)),
        ("unknown platform", Box::new(|p| p.5 = 3)),
        ("unknown platform", Box::new(|p| p.6 = 0)),
        ("p2 guest on a p1 source", Box::new(|p| p.5 = 1)),
        ("p1 guest with allocated", Box::new(|p| p.6 = 1)),
        (
            "guest PASIDs repeated (or PASID 0)",
            Box::new(|p| p.8[0] = 0),
        ),
        (
            "guest PASIDs repeated (or PASID 0)",
            Box::new(|p| p.8[1] = 1),
        ),
        (
            "outside the source's guest range",
            Box::new(|p| p.8[2] = 4094 << 1 | 1),
        ),
        (
            "outside the source's guest range",
            Box::new(|p| p.8[0] = u32::MAX),
        ),
        ("do not match the shared PASIDs", Box::new(|p| p.9.push(2))),
        (
            "do not match the shared PASIDs",
            Box::new(|p| {
                p.9.pop();
            }),
        ),
        (
            "host PASID outside the shared range",
            Box::new(|p| p.9[0] = zigzag(1)),
        ),
        (
            "host PASID outside the shared range",
            Box::new(|p| p.9[1] = zigzag(-4097)),
        ),
        // The same RID twice with the same use (with two uses it is a mixed RID).
        (
            "devices repeated",
            Box::new(|p| p.10[1] = (0, 0x0100, 0, 1)),
        ),
        (
            "devices repeated",
            Box::new(|p| {
                p.10.swap(0, 1);
                p.11 = vec![2, 1, 1];
            }),
        ),
        ("unknown device kind", Box::new(|p| p.10[0].2 = 9)),
        ("exceed the PASID list", Box::new(|p| p.10[1].3 = 2)),
        ("exceed the PASID list", Box::new(|p| p.10[0].3 = u32::MAX)),
        ("do not match the PASID list", Box::new(|p| p.11.push(1))),
        ("PASID the guest lacks", Box::new(|p| p.11[0] = 7)),
        ("PASID the guest lacks", Box::new(|p| p.11[1] = u32::MAX)),
        (
            "device's PASIDs repeated (or PASID 0)",
            Box::new(|p| p.11[0] = 0),
        ),
        (
            "device's PASIDs repeated (or PASID 0)",
            Box::new(|p| p.11[1] = 0),
        ),
        (
            "local PASID bound to a shared work queue",
            Box::new(|p| p.11[2] = 1),
        ),
        (
            "p1 guest with a shared work queue",
            Box::new(|p| {
                p.6 = 1;
                p.8.clear();
                p.9.clear();
            }),
        ),
        (
            "recorded PASID outside",
            Box::new(|p| {
                p.6 = 1;
                p.8.clear();
                p.9.clear();
                p.10[1].2 = 0;
                p.11 = vec![1, 4095, 2];
            }),
        ),
    ];
    for (want, edit) in cases {
        let mut p = good_payload();
        edit(&mut p);
        let got = reason(corrupt(&blob_of(&p)));
        assert!(got.contains(want), "want {want:?}, got {got:?}");
    }
    // More shared PASIDs than the quota allows.
    let mut p = good_payload();
    p.7 = 1;
    assert_eq!(corrupt(&blob_of(&p)), Error::QuotaExceeded { quota: 1 });
}

#[test]
fn huge_counts_do_not_allocate_or_panic() {
    // A sequence claiming 2^32 - 1 elements with only a few bytes behind it.
    let mut payload =
        postcard::to_allocvec(&(20u8, 1u32, 4096u32, 4096u32, 8192u32, 2u8, 2u8, 0u32)).unwrap();
    payload.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f, 1, 0, 0]);
    assert!(reason(corrupt(&frame(1, 0, &payload))).contains("ends early"));
    // A varint too long for its type.
    let mut payload = postcard::to_allocvec(&(20u8,)).unwrap();
    payload.extend_from_slice(&[0xff; 12]);
    assert!(reason(corrupt(&frame(1, 0, &payload))).contains("does not decode"));
    // A declared payload length of 4 GiB.
    let mut b = frame(1, 0, &[]);
    b[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(reason(corrupt(&b)).contains("truncated"));
}

// ---- property: random guests between random hosts ----

#[derive(Debug, Clone)]
enum Op {
    Alloc(bool),
    Free(usize),
    Bind(usize, usize),
    Unbind(usize, usize),
    Record(usize, u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<bool>().prop_map(Op::Alloc),
        1 => any::<usize>().prop_map(Op::Free),
        3 => (any::<usize>(), any::<usize>()).prop_map(|(p, d)| Op::Bind(p, d)),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(p, d)| Op::Unbind(p, d)),
        2 => (any::<usize>(), 1u32..300).prop_map(|(d, p)| Op::Record(d, p)),
    ]
}

/// Runs ops on a guest, ignoring refusals (they change nothing).
fn build(host: &mut Host, g: GuestId, devices: &[Rid], ops: &[Op]) {
    let mut held: Vec<u32> = Vec::new();
    for op in ops {
        match *op {
            Op::Alloc(shared) => {
                let kind = if shared {
                    PasidKind::Shared
                } else {
                    PasidKind::Local
                };
                if let Ok(p) = host.alloc(g, kind) {
                    held.push(p);
                }
            }
            Op::Free(i) if !held.is_empty() => {
                let p = held[i % held.len()];
                if host.free(g, p).is_ok() {
                    held.retain(|&x| x != p);
                }
            }
            Op::Bind(i, d) if !held.is_empty() && !devices.is_empty() => {
                let _ = host.bind(g, held[i % held.len()], devices[d % devices.len()]);
            }
            Op::Unbind(i, d) if !held.is_empty() && !devices.is_empty() => {
                let _ = host.unbind(g, held[i % held.len()], devices[d % devices.len()]);
            }
            Op::Record(d, p) if !devices.is_empty() => {
                let _ = host.record(g, devices[d % devices.len()], p);
            }
            _ => {}
        }
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(48)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn random_guests_round_trip(
        p2_guest in any::<bool>(),
        quota in 0u32..40,
        kinds in prop::collection::vec(any::<bool>(), 0..5),
        ops in prop::collection::vec(op(), 0..120),
        src_fill in prop::collection::vec(any::<bool>(), 0..40),
        dst_fill in prop::collection::vec(any::<bool>(), 0..40),
        dst_p2 in any::<bool>(),
        dst_shared_low in prop::bool::weighted(0.2),
    ) {
        let mut src = host(1..300, 4096..8192, Platform::P2);
        let mut dst = if dst_shared_low {
            host(600..1024, 1..600, if dst_p2 || p2_guest { Platform::P2 } else { Platform::P1 })
        } else {
            host(1..1024, 1 << 19..1 << 20, if dst_p2 || p2_guest { Platform::P2 } else { Platform::P1 })
        };
        // Prior allocations on both hosts, with holes.
        for (h, fill) in [(&mut src, &src_fill), (&mut dst, &dst_fill)] {
            if h.platform() == Platform::P2 {
                let o = h.create_guest(GuestConfig::p2(64)).unwrap();
                for &keep in fill {
                    let p = h.alloc(o, PasidKind::Shared).unwrap();
                    if !keep {
                        h.free(o, p).unwrap();
                        h.alloc(o, PasidKind::Local).unwrap();
                    }
                }
            }
        }
        let config = if p2_guest { GuestConfig::p2(quota) } else { GuestConfig::p1() };
        let g = src.create_guest(config).unwrap();
        let mut devices = Vec::new();
        for (i, &wq) in kinds.iter().enumerate() {
            let kind = if wq && p2_guest { DeviceKind::SharedWq } else { DeviceKind::Dedicated };
            let r = rid(1, i as u8);
            src.attach(g, r, kind).unwrap();
            devices.push(r);
        }
        build(&mut src, g, &devices, &ops);
        // What the guest was told must fit the destination's local range, whatever it
        // holds: a destination range starting at 600 honours no guest of 1..300.
        let fits = !dst_shared_low;
        let map: Vec<_> = devices.iter().map(|&r| (r, Rid::new(1, r.bdf ^ 0x8000))).collect();
        let blob = src.export_guest(g).unwrap();
        let before = dst.snapshot();
        match dst.import_guest(&blob, &map) {
            Ok((g2, report)) => {
                prop_assert!(fits);
                assert_same_guest(&src, g, &dst, g2, &map, &report);
                // The other guests are untouched.
                let mut after = dst.snapshot();
                after.guests.retain(|x| x.id != g2);
                prop_assert_eq!(&after.guests, &before.guests);
                prop_assert_eq!(after.shared_in_use, before.shared_in_use + report.shared.len() as u32);
                // Rollback after the source let go.
                src.destroy_guest(g).unwrap();
                let back: Vec<_> = map.iter().map(|&(a, b)| (b, a)).collect();
                let (g3, r3) = src.import_guest(&dst.export_guest(g2).unwrap(), &back).unwrap();
                assert_same_guest(&dst, g2, &src, g3, &back, &r3);
            }
            Err(e) => {
                prop_assert!(!fits, "refused: {e}");
                prop_assert!(matches!(e, Error::ContractNotHonoured { .. }), "{e}");
                prop_assert_eq!(dst.snapshot(), before);
            }
        }
    }
}

/// Rough timing of the target (export + import of 4096 PASIDs, half shared, in
/// at most 100 us); the criterion bench is the real measure. Run with
/// `cargo test --release -p pasid-core --test migrate -- --ignored --nocapture`
/// (set `MIG_NO_BIND=1` for a guest without device bindings).
#[test]
#[ignore]
fn timing_4096_pasids() {
    let mut src = host(1..4097, 4096 * 2..1 << 19, Platform::P2);
    let g = src.create_guest(GuestConfig::p2(4096)).unwrap();
    src.attach(g, rid(3, 0), DeviceKind::Dedicated).unwrap();
    src.attach(g, rid(3, 1), DeviceKind::SharedWq).unwrap();
    for i in 0..4096 {
        let shared = i % 2 == 0;
        let kind = if shared {
            PasidKind::Shared
        } else {
            PasidKind::Local
        };
        let p = src.alloc(g, kind).unwrap();
        if std::env::var_os("MIG_NO_BIND").is_none() {
            src.bind(g, p, rid(3, if shared { 1 } else { 0 })).unwrap();
        }
    }
    let map = identity(&src, g);
    let dst = host(1..4097, 4096 * 2..1 << 19, Platform::P2);
    // Minimum over many runs: the least disturbed by other work on the machine.
    let min = |f: &mut dyn FnMut()| {
        (0..300)
            .map(|_| {
                let t = std::time::Instant::now();
                f();
                t.elapsed()
            })
            .min()
            .unwrap()
    };
    let blob = src.export_guest(g).unwrap();
    let crc = min(&mut || {
        std::hint::black_box(crc32fast::hash(std::hint::black_box(&blob)));
    });
    let inspect = min(&mut || {
        std::hint::black_box(migrate::inspect(std::hint::black_box(&blob)).unwrap());
    });
    let check = min(&mut || dst.check_import(&blob, &map).unwrap());
    let export = min(&mut || {
        std::hint::black_box(src.export_guest(g).unwrap());
    });
    let (mut import, mut destroy) = (std::time::Duration::MAX, std::time::Duration::MAX);
    for _ in 0..300 {
        // A fresh destination each time: the same blob twice is a replay.
        let mut d = dst.clone();
        let t = std::time::Instant::now();
        let (g2, _) = d.import_guest(&blob, &map).unwrap();
        let t2 = std::time::Instant::now();
        d.destroy_guest(g2).unwrap();
        import = import.min(t2 - t);
        destroy = destroy.min(t2.elapsed());
    }
    eprintln!("destroy {destroy:?}");
    eprintln!(
        "{} bytes: crc {crc:?}, inspect {inspect:?}, check_import {check:?}, \
         export {export:?}, import {import:?}",
        blob.len()
    );
}
