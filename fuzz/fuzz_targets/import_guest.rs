//! `Host::import_guest` on arbitrary bytes, against a destination that already holds
//! guests, devices and shared PASIDs (so collisions and exhaustion are reachable).
//!
//! * On error the destination is unchanged (snapshot and heap bytes), and
//!   `check_import` reports the same error.
//! * On success the new guest holds exactly the gPASIDs, kinds, devices and bindings
//!   the blob describes (`migrate::inspect`), its host PASIDs are fresh ones of the
//!   destination's shared range, the other guests are unchanged, and exporting it
//!   again gives a blob that describes the same guest.
//!
//! * A blob with an identity (format 2.0) imports once: the same blob again is refused
//!   as a replay, with the destination unchanged. The guest keeps the contract the
//!   blob carries.
//!
//! The first input byte is a set of flags; the rest is the blob. Flag bit 0 re-seals
//! the blob (magic, a major version this build reads, payload length and CRC-32 made
//! right), so mutations reach the payload checks instead of dying at the checksum.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pasid_core::migrate::{inspect, RidMapping, FORMAT_MAGIC, FORMAT_MAJOR};
use pasid_core::{DeviceKind, Error, GuestConfig, Host, PasidKind, PasidLayout, Platform, Rid};

const RESEAL: u8 = 1 << 0;
const DEST_P1: u8 = 1 << 1;
const SMALL_LAYOUT: u8 = 1 << 2;
const BUSY_DEST: u8 = 1 << 3;
const SHIFT_RIDS: u8 = 1 << 4;
const DROP_A_RID: u8 = 1 << 5;
const MAP_TWICE: u8 = 1 << 6;
/// The map says each destination's device kind (`import_guest_mapped`): right for
/// even-numbered devices, wrong for odd ones.
const KINDS: u8 = 1 << 7;

const HEADER_LEN: usize = 16;
const TRAILER_LEN: usize = 4;

fn reseal(blob: &mut Vec<u8>) {
    if blob.len() < HEADER_LEN + TRAILER_LEN {
        return;
    }
    blob[..8].copy_from_slice(&FORMAT_MAGIC);
    // Keep a 1.0 blob 1.0 (both versions' payload checks stay reachable).
    if blob[8..12] != [1, 0, 0, 0] {
        blob[8..10].copy_from_slice(&FORMAT_MAJOR.to_le_bytes());
    }
    let payload_len = (blob.len() - HEADER_LEN - TRAILER_LEN) as u32;
    blob[12..16].copy_from_slice(&payload_len.to_le_bytes());
    let crc_at = blob.len() - TRAILER_LEN;
    let crc = crc32fast::hash(&blob[..crc_at]);
    blob[crc_at..].copy_from_slice(&crc.to_le_bytes());
}

fn destination(flags: u8) -> Host {
    let layout = if flags & SMALL_LAYOUT != 0 {
        PasidLayout::new(6, 1..16, 16..24).unwrap()
    } else {
        PasidLayout::new(20, 1..4096, 4096..1 << 19).unwrap()
    };
    let platform = if flags & DEST_P1 != 0 {
        Platform::P1
    } else {
        Platform::P2
    };
    let mut host = Host::new(layout, platform).unwrap();
    if flags & BUSY_DEST != 0 {
        // RIDs the export seeds use too, so RidInUse happens; shared PASIDs in use.
        let p1 = host.create_guest(GuestConfig::p1()).unwrap();
        host.attach(p1, Rid::new(0, 0x0300), DeviceKind::Dedicated)
            .unwrap();
        host.record(p1, Rid::new(0, 0x0300), 5).unwrap();
        if platform == Platform::P2 {
            let p2 = host.create_guest(GuestConfig::p2(8)).unwrap();
            host.attach(p2, Rid::new(0, 0x0a00), DeviceKind::SharedWq)
                .unwrap();
            for _ in 0..6 {
                host.alloc(p2, PasidKind::Shared).unwrap();
            }
            let p = host.alloc(p2, PasidKind::Shared).unwrap();
            host.bind(p2, p, Rid::new(0, 0x0a00)).unwrap();
        }
    }
    host
}

fn rid_map(blob: &[u8], flags: u8) -> Vec<RidMapping> {
    let Ok(guest) = inspect(blob) else {
        return vec![(Rid::new(0, 1), Rid::new(0, 2)).into()];
    };
    let shift = if flags & SHIFT_RIDS != 0 { 0x100 } else { 0 };
    let mut map: Vec<RidMapping> = guest
        .devices
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let dst = Rid::new(d.rid.segment, d.rid.bdf.wrapping_add(shift));
            if flags & KINDS == 0 {
                (d.rid, dst).into()
            } else {
                let kind = match (d.kind, i % 2) {
                    (k, 0) => k,
                    (DeviceKind::Dedicated, _) => DeviceKind::SharedWq,
                    (DeviceKind::SharedWq, _) => DeviceKind::Dedicated,
                };
                (d.rid, dst, kind).into()
            }
        })
        .collect();
    if flags & DROP_A_RID != 0 {
        map.pop();
    }
    if flags & MAP_TWICE != 0 {
        if let Some(&m) = map.first() {
            let dst = Rid::new(m.destination.segment ^ 1, m.destination.bdf);
            map.push(RidMapping {
                destination: dst,
                ..m
            });
        }
    }
    map
}

fn same_error(a: &Error, b: &Error) -> bool {
    a.code() == b.code()
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, blob)) = data.split_first() else {
        return;
    };
    let mut blob = blob.to_vec();
    if flags & RESEAL != 0 {
        reseal(&mut blob);
    }
    let map = rid_map(&blob, flags);
    let mut host = destination(flags);
    let before = host.snapshot();
    let heap_before = host.heap_bytes();
    let checked = host.check_import_mapped(&blob, &map);
    assert_eq!(host.snapshot(), before, "check_import changed the host");

    match host.import_guest_mapped(&blob, &map) {
        Err(e) => {
            assert_eq!(
                host.snapshot(),
                before,
                "failed import ({e:?}) changed the host"
            );
            assert_eq!(
                host.heap_bytes(),
                heap_before,
                "failed import ({e:?}) kept memory"
            );
            match checked {
                Err(c) => assert!(same_error(&c, &e), "check_import said {c:?}, import {e:?}"),
                Ok(()) => panic!("check_import accepted what import refused with {e:?}"),
            }
        }
        Ok((id, report)) => {
            assert!(
                checked.is_ok(),
                "check_import refused ({checked:?}) an import that worked"
            );
            let want = inspect(&blob).expect("an imported blob inspects");
            let after = host.snapshot();
            // The other guests are untouched.
            let others: Vec<_> = after
                .guests
                .iter()
                .filter(|g| g.id != id)
                .cloned()
                .collect();
            assert_eq!(others, before.guests, "import changed another guest");
            let g = host.guest_snapshot(id).unwrap();
            assert_eq!(g.config, want.config);
            let got: Vec<(u32, PasidKind)> = g.pasids.iter().map(|p| (p.gpasid, p.kind)).collect();
            let wanted: Vec<(u32, PasidKind)> =
                want.pasids.iter().map(|p| (p.gpasid, p.kind)).collect();
            assert_eq!(got, wanted, "gPASIDs not kept");
            let shared = host.layout().shared();
            let mut hpasids = Vec::new();
            for p in &g.pasids {
                match (p.kind, p.hpasid) {
                    (PasidKind::Shared, Some(h)) => {
                        assert!(shared.contains(&h), "hPASID {h} outside the shared range");
                        hpasids.push(h);
                    }
                    (PasidKind::Local, None) => {}
                    other => panic!("gPASID {} has {other:?}", p.gpasid),
                }
            }
            for other in &before.guests {
                for p in &other.pasids {
                    if let Some(h) = p.hpasid {
                        assert!(!hpasids.contains(&h), "hPASID {h} handed out twice");
                    }
                }
            }
            assert_eq!(
                after.shared_in_use,
                before.shared_in_use + hpasids.len() as u32,
                "shared PASID count"
            );
            assert_eq!(report.shared.len(), hpasids.len());
            // Devices: each source RID mapped, kind and PASIDs kept.
            assert_eq!(g.devices.len(), want.devices.len());
            for d in &want.devices {
                let dst = map.iter().find(|m| m.source == d.rid).unwrap().destination;
                let got = g
                    .devices
                    .iter()
                    .find(|x| x.rid == dst)
                    .expect("device attached");
                assert_eq!(got.kind, d.kind);
                let pasids: Vec<u32> = got.programmed.iter().map(|p| p.gpasid).collect();
                assert_eq!(pasids, d.pasids, "device {dst} PASIDs");
                if d.kind == DeviceKind::Dedicated {
                    assert_eq!(host.owner(dst), Some(id));
                }
            }
            assert_eq!(report.identity, want.identity);
            assert_eq!(host.guest_contract(id).unwrap(), want.contract);
            // The same blob again: a replay, refused without a change.
            if let Some(identity) = want.identity {
                let now = host.snapshot();
                assert_eq!(
                    host.import_guest_mapped(&blob, &map).map(|_| ()),
                    Err(Error::Replayed { identity })
                );
                assert_eq!(host.snapshot(), now, "a refused replay changed the host");
            }
            // A second export describes the same guest.
            let again = inspect(&host.export_guest(id).unwrap()).unwrap();
            assert_eq!(again.config, want.config);
            assert_eq!(again.pasids.len(), want.pasids.len());
            for (a, w) in again.pasids.iter().zip(&want.pasids) {
                assert_eq!((a.gpasid, a.kind), (w.gpasid, w.kind));
            }
            // And the guest can go again, returning everything once its host PASIDs'
            // teardown is confirmed (they drain until then).
            host.destroy_guest(id).unwrap();
            let gone: Vec<_> = host.draining().filter(|d| d.guest == id).collect();
            host.complete_teardown(&gone).unwrap();
            let mut cleaned = host.snapshot();
            cleaned.guests.retain(|g| g.id != id);
            assert_eq!(cleaned.shared_in_use, before.shared_in_use);
        }
    }
});
