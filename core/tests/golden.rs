//! Golden blobs: one per format version, kept in `core/tests/golden/`, so that a change
//! that breaks an old blob (or changes what a writer produces for an old version) fails
//! CI. `PASID_BLESS=1 cargo test -p pasid-core --test golden` rewrites them; do that
//! only for a new version's file, never to make an old one pass.
//!
//! Also the version rule (unknown data fails unless marked optional) and the
//! back-migration path: a new writer writes 1.0 for an old reader, and a reader of the
//! 1.0 specification (written here from `docs/migration-format.md`, not from the crate)
//! reads it.

use std::path::PathBuf;

use pasid_core::migrate::{self, ExportOptions, FormatVersion, ImportOptions, QuotaRule};
use pasid_core::{
    DeviceKind, Error, GuestConfig, GuestContract, GuestId, Host, PasidKind, PasidLayout, Platform,
    Rid,
};

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// The guest every golden blob holds: on a host with id 0x5eed, gPASID 1 local, 2 and 3
/// shared; a VF with 1 and 2 bound, a shared WQ with 2 bound; quota 4.
fn source() -> (Host, GuestId) {
    let layout = PasidLayout::new(20, 1..4096, 4096..1 << 19).unwrap();
    let mut h = Host::new(layout, Platform::P2).unwrap();
    h.set_host_id(0x5eed);
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
    (h, g)
}

const EPOCH: u64 = 5;

fn files() -> [(FormatVersion, &'static str); 2] {
    [
        (FormatVersion::V1_0, "v1.0.bin"),
        (FormatVersion::V2_0, "v2.0.bin"),
    ]
}

fn map() -> [(Rid, Rid); 2] {
    [
        (Rid::new(0, 0x0100), Rid::new(0, 0x0200)),
        (Rid::new(0, 0x0a00), Rid::new(0, 0x0a00)),
    ]
}

fn target() -> Host {
    Host::new(
        PasidLayout::new(20, 1..4096, 1 << 19..1 << 20).unwrap(),
        Platform::P2,
    )
    .unwrap()
}

#[test]
fn every_supported_version_has_a_golden_blob_and_the_writer_still_makes_it() {
    assert_eq!(
        FormatVersion::SUPPORTED.to_vec(),
        files().iter().map(|f| f.0).collect::<Vec<_>>(),
        "a new format version needs its golden file here"
    );
    let (h, g) = source();
    for (version, name) in files() {
        let blob = h
            .export_guest_with(
                g,
                &ExportOptions {
                    version,
                    epoch: EPOCH,
                },
            )
            .unwrap();
        if std::env::var_os("PASID_BLESS").is_some_and(|v| v == "1") {
            std::fs::create_dir_all(golden("")).unwrap();
            std::fs::write(golden(name), &blob).unwrap();
        }
        let kept = std::fs::read(golden(name)).expect("golden file (PASID_BLESS=1 writes it)");
        assert_eq!(blob, kept, "{version}: the writer no longer makes {name}");
    }
}

#[test]
fn golden_blobs_decode_and_import() {
    for (version, name) in files() {
        let blob = std::fs::read(golden(name)).unwrap();
        let m = migrate::inspect(&blob).unwrap();
        assert_eq!(
            (m.format_major, m.format_minor),
            (version.major, version.minor)
        );
        assert_eq!(m.config, GuestConfig::p2(4));
        assert_eq!(
            m.pasids
                .iter()
                .map(|p| (p.gpasid, p.kind))
                .collect::<Vec<_>>(),
            [
                (1, PasidKind::Local),
                (2, PasidKind::Shared),
                (3, PasidKind::Shared)
            ]
        );
        assert_eq!(m.devices.len(), 2);
        assert_eq!(m.contract, GuestContract::p2(1..4096));
        let (_, g) = source();
        let identity = m.identity;
        if version == FormatVersion::V1_0 {
            assert_eq!(identity, None);
        } else {
            let i = identity.unwrap();
            assert_eq!((i.source_host, i.source_guest, i.epoch), (0x5eed, g, EPOCH));
        }
        let mut dst = target();
        let (g2, r) = dst.import_guest(&blob, &map()).unwrap();
        assert_eq!(r.version, version);
        assert_eq!(r.identity, identity);
        assert_eq!(dst.translate(g2, 2).unwrap(), 1 << 19);
        assert_eq!(dst.bind(g2, 3, Rid::new(0, 0x0a00)).unwrap(), (1 << 19) + 1);
    }
}

/// Reads a blob as a reader of the 1.0 specification does (framing, major 1, the
/// twelve fields, nothing after them at minor 0), returning (quota, gPASID entries).
fn spec_1_0_reader(blob: &[u8]) -> Result<(u32, Vec<u32>), &'static str> {
    type V1 = (
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
    if blob.len() < 20 || &blob[..8] != b"PASIDMIG" {
        return Err("framing");
    }
    let major = u16::from_le_bytes([blob[8], blob[9]]);
    let minor = u16::from_le_bytes([blob[10], blob[11]]);
    if major != 1 {
        return Err("unsupported version");
    }
    let n = u32::from_le_bytes(blob[12..16].try_into().unwrap()) as usize;
    if blob.len() != 20 + n {
        return Err("length");
    }
    let crc = u32::from_le_bytes(blob[16 + n..].try_into().unwrap());
    if crc32fast::hash(&blob[..16 + n]) != crc {
        return Err("checksum");
    }
    let (p, rest): (V1, _) = postcard::take_from_bytes(&blob[16..16 + n]).map_err(|_| "payload")?;
    if !rest.is_empty() && minor == 0 {
        return Err("bytes after the payload");
    }
    Ok((p.7, p.8))
}

#[test]
fn back_migration_new_writer_old_version_old_reader() {
    // A guest that came to a new host, going back to an old one.
    let (src, g) = source();
    let mut new_host = target();
    let blob = src
        .export_guest_with(
            g,
            &ExportOptions {
                version: FormatVersion::V2_0,
                epoch: 1,
            },
        )
        .unwrap();
    let (g2, _) = new_host.import_guest(&blob, &map()).unwrap();
    let back = map().map(|(a, b)| (b, a));
    // The old reader refuses the current format outright (fail closed) ...
    let current = new_host.export_guest(g2).unwrap();
    assert_eq!(spec_1_0_reader(&current), Err("unsupported version"));
    // ... and reads what the new writer writes as 1.0, the same guest.
    let v1 = ExportOptions {
        version: FormatVersion::V1_0,
        epoch: 2,
    };
    let old = new_host.export_guest_with(g2, &v1).unwrap();
    let (quota, pasids) = spec_1_0_reader(&old).unwrap();
    assert_eq!(quota, 4);
    assert_eq!(pasids, [1 << 1, 1 << 1 | 1, 1 << 1 | 1]);
    // The 1.0 golden blob reads the same way (an old writer made the same bytes:
    // `inspect_shows_the_contents` in migrate.rs builds them by hand).
    let kept = std::fs::read(golden("v1.0.bin")).unwrap();
    assert_eq!(spec_1_0_reader(&kept).unwrap(), (quota, pasids));
    // And this library, as the old host's reader, imports it.
    let mut old_host = Host::new(
        PasidLayout::new(20, 1..4096, 4096..1 << 19).unwrap(),
        Platform::P2,
    )
    .unwrap();
    let (g3, r) = old_host.import_guest(&old, &back).unwrap();
    assert_eq!(r.identity, None);
    assert_eq!(old_host.translate(g3, 3).unwrap(), 4097);
}

#[test]
fn writing_1_0_is_refused_for_a_contract_it_cannot_carry() {
    let layout = PasidLayout::new(20, 1..4096, 4096..1 << 19).unwrap();
    let mut h = Host::new(layout, Platform::P2).unwrap();
    let g = h
        .create_guest_advertising(GuestConfig::p2(4), GuestContract::p2(1..1024))
        .unwrap();
    let v1 = ExportOptions {
        version: FormatVersion::V1_0,
        epoch: 0,
    };
    assert!(matches!(
        h.export_guest_with(g, &v1),
        Err(Error::NotSupported { .. })
    ));
    let v9 = ExportOptions {
        version: FormatVersion { major: 9, minor: 0 },
        epoch: 0,
    };
    assert_eq!(
        h.export_guest_with(g, &v9),
        Err(Error::UnsupportedVersion {
            found: 9,
            supported: 2
        })
    );
    // The narrower range holds: the guest's allocations stay inside what it was told.
    for _ in 0..1023 {
        h.alloc(g, PasidKind::Local).unwrap();
    }
    assert_eq!(
        h.alloc(g, PasidKind::Local),
        Err(Error::GuestRangeExhausted)
    );
}

/// The 2.0 golden blob with its record list replaced by `records` (tag, flags, data).
fn with_records(records: &[(u16, u8, Vec<u8>)]) -> Vec<u8> {
    let v1 = std::fs::read(golden("v1.0.bin")).unwrap();
    let v2 = std::fs::read(golden("v2.0.bin")).unwrap();
    let fixed = &v1[16..v1.len() - 4];
    let mut payload = fixed.to_vec();
    payload.extend(postcard::to_allocvec(&records).unwrap());
    let mut b = v2[..12].to_vec();
    b.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    b.extend_from_slice(&payload);
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

/// The records of the 2.0 golden blob.
fn golden_records() -> Vec<(u16, u8, Vec<u8>)> {
    let v1 = std::fs::read(golden("v1.0.bin")).unwrap();
    let v2 = std::fs::read(golden("v2.0.bin")).unwrap();
    let start = 16 + (v1.len() - 20);
    postcard::from_bytes(&v2[start..v2.len() - 4]).unwrap()
}

#[test]
fn unknown_data_fails_unless_the_writer_marked_it_optional() {
    let recs = golden_records();
    assert_eq!(
        recs.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>(),
        [(1, 0), (2, 0)]
    );
    // Rebuilt unchanged: the same bytes.
    assert_eq!(
        with_records(&recs),
        std::fs::read(golden("v2.0.bin")).unwrap()
    );
    let mut dst = target();
    let before = dst.snapshot();
    let malformed = |b: &[u8], dst: &mut Host| match dst.import_guest(b, &map()) {
        Err(Error::MalformedBlob { reason }) => reason,
        other => panic!("{other:?}"),
    };
    // A record of a newer minor, marked optional: skipped.
    let mut optional = recs.clone();
    optional.push((100, 1, vec![1, 2, 3]));
    dst.clone()
        .import_guest(&with_records(&optional), &map())
        .unwrap();
    // The same, not marked optional: refused, the destination unchanged.
    let mut required = recs.clone();
    required.push((100, 0, vec![1, 2, 3]));
    assert!(malformed(&with_records(&required), &mut dst).contains("does not know"));
    // Unknown flags, out of order, repeated, missing, a record that does not decode.
    let mut flags = recs.clone();
    flags[0].1 = 2;
    assert!(malformed(&with_records(&flags), &mut dst).contains("flags"));
    let swapped = vec![recs[1].clone(), recs[0].clone()];
    assert!(malformed(&with_records(&swapped), &mut dst).contains("order"));
    let twice = vec![recs[0].clone(), recs[0].clone(), recs[1].clone()];
    assert!(malformed(&with_records(&twice), &mut dst).contains("order"));
    assert!(malformed(&with_records(&recs[..1]), &mut dst).contains("without"));
    let mut short = recs.clone();
    short[1].2.pop();
    assert!(malformed(&with_records(&short), &mut dst).contains("does not decode"));
    let mut long = recs.clone();
    long[0].2.push(0);
    assert!(malformed(&with_records(&long), &mut dst).contains("does not decode"));
    // A contract the source could not have kept (wider than its layout).
    let mut wide = recs.clone();
    wide[1].2 = postcard::to_allocvec(&(20u8, 1u32, 1u32 << 20, 3u32)).unwrap();
    assert!(malformed(&with_records(&wide), &mut dst).contains("contract"));
    // gPASIDs outside what the guest was told.
    let mut narrow = recs;
    narrow[1].2 = postcard::to_allocvec(&(1u8, 1u32, 2u32, 3u32)).unwrap();
    assert!(malformed(&with_records(&narrow), &mut dst).contains("outside"));
    assert_eq!(dst.snapshot(), before);
}

#[test]
fn a_replayed_blob_is_refused_and_a_new_epoch_is_not() {
    // A device-less guest: nothing on the destination would collide with a second copy.
    let layout = PasidLayout::new(20, 1..4096, 4096..1 << 19).unwrap();
    let mut src = Host::new(layout.clone(), Platform::P2).unwrap();
    src.set_host_id(7);
    let g = src.create_guest(GuestConfig::p2(4)).unwrap();
    src.alloc(g, PasidKind::Shared).unwrap();
    let blob = src.export_guest(g).unwrap();
    let mut dst = Host::new(layout, Platform::P2).unwrap();
    let (_, r) = dst.import_guest(&blob, &[]).unwrap();
    let identity = r.identity.unwrap();
    assert_eq!(
        (identity.source_host, identity.source_guest, identity.epoch),
        (7, g, 0)
    );
    let before = dst.snapshot();
    assert_eq!(
        dst.check_import(&blob, &[]),
        Err(Error::Replayed { identity })
    );
    assert_eq!(
        dst.import_guest(&blob, &[]).map(|_| ()),
        Err(Error::Replayed { identity })
    );
    assert_eq!(dst.snapshot(), before);
    assert!(Error::Replayed { identity }
        .to_string()
        .contains("from host 0x7, epoch 0"));
    // A retry is a new attempt with a new epoch.
    let retry = src
        .export_guest_with(
            g,
            &ExportOptions {
                epoch: 1,
                ..Default::default()
            },
        )
        .unwrap();
    dst.import_guest(&retry, &[]).unwrap();
    // The memory is bounded: the oldest identity is forgotten.
    for epoch in 2..2 + migrate::REMEMBERED_IMPORTS as u64 {
        let b = src
            .export_guest_with(
                g,
                &ExportOptions {
                    epoch,
                    ..Default::default()
                },
            )
            .unwrap();
        let (id, _) = dst.import_guest(&b, &[]).unwrap();
        dst.destroy_guest(id).unwrap();
        let gone: Vec<_> = dst.draining().collect();
        dst.complete_teardown(&gone).unwrap();
    }
    dst.import_guest(&blob, &[]).unwrap();
}

#[test]
fn the_destination_sets_or_caps_the_quota() {
    let (src, g) = source();
    let blob = src.export_guest(g).unwrap();
    let dst = target();
    let import = |rule| {
        let mut d = dst.clone();
        let opts = ImportOptions {
            quota: rule,
            change_log: None,
        };
        let before = d.snapshot();
        let r = d.import_guest_with(&blob, &map(), &opts);
        if r.is_err() {
            assert_eq!(d.snapshot(), before);
        }
        r.map(|(id, r)| (d.guest_config(id).unwrap().shared_quota, r.quota))
    };
    assert_eq!(import(QuotaRule::Request), Ok((4, 4)));
    assert_eq!(import(QuotaRule::Cap(3)), Ok((3, 3)));
    assert_eq!(import(QuotaRule::Cap(100)), Ok((4, 4)));
    assert_eq!(import(QuotaRule::Set(100)), Ok((100, 100)));
    // The guest holds two shared PASIDs: a quota of one cannot be.
    assert_eq!(
        import(QuotaRule::Cap(1)),
        Err(Error::QuotaExceeded { quota: 1 })
    );
    assert_eq!(
        import(QuotaRule::Set(0)),
        Err(Error::QuotaExceeded { quota: 0 })
    );
}

#[test]
fn the_contract_travels_and_a_destination_that_cannot_honour_it_refuses() {
    // A p1 guest told width 13 (1..8192) holds only PASID 5: the destination's
    // 1..4096 fits what it holds, but not what it was told.
    let big = PasidLayout::new(20, 1..8192, 8192..1 << 19).unwrap();
    let mut src = Host::new(big.clone(), Platform::P1).unwrap();
    let g = src.create_guest(GuestConfig::p1()).unwrap();
    let told = src.guest_contract(g).unwrap();
    assert_eq!(told, GuestContract::p1(13));
    assert_eq!(told.ecap_pss(), 12);
    src.attach(g, Rid::new(0, 1), DeviceKind::Dedicated)
        .unwrap();
    src.record(g, Rid::new(0, 1), 5).unwrap();
    let blob = src.export_guest(g).unwrap();
    assert_eq!(migrate::inspect(&blob).unwrap().contract, told);
    let small = PasidLayout::new(20, 1..4096, 4096..1 << 19).unwrap();
    let mut dst = Host::new(small.clone(), Platform::P1).unwrap();
    let before = dst.snapshot();
    let offered = GuestContract::offered_by(&small, Platform::P1);
    let want = Error::ContractNotHonoured { told, offered };
    let one = [(Rid::new(0, 1), Rid::new(0, 1))];
    assert_eq!(dst.import_guest(&blob, &one).map(|_| ()), Err(want));
    assert_eq!(dst.snapshot(), before);
    let text = want.to_string();
    assert!(
        text.contains("1..8192") && text.contains("1..4096"),
        "{text}"
    );
    // The same layout honours it, and the contract stays the guest's.
    let mut same = Host::new(big, Platform::P2).unwrap();
    let (g2, r) = same.import_guest(&blob, &one).unwrap();
    assert_eq!((r.contract, same.guest_contract(g2).unwrap()), (told, told));
    // A p2 guest's capabilities need a p2 destination.
    let (src, g) = source();
    let mut p1 = Host::new(small, Platform::P1).unwrap();
    assert!(matches!(
        p1.import_guest(&src.export_guest(g).unwrap(), &map()),
        Err(Error::NotSupported { .. })
    ));
    // What a p1 guest can be told exactly.
    let odd = PasidLayout::new(20, 1..3000, 4096..8192).unwrap();
    assert_eq!(pasid_core::contract::p1_exact_width(&odd), Some(11));
    let mut h = Host::new(odd, Platform::P1).unwrap();
    let mut c = GuestContract::p1(11);
    h.create_guest_advertising(GuestConfig::p1(), c).unwrap();
    c.local_end = 3000;
    assert!(matches!(
        h.create_guest_advertising(GuestConfig::p1(), c),
        Err(Error::IncompatibleLayout { .. })
    ));
    assert!(matches!(
        h.create_guest_advertising(GuestConfig::p1(), GuestContract::p1(12)),
        Err(Error::ContractNotHonoured { .. })
    ));
}
