//! Regenerates `fuzz/corpus/import_guest/*`: real export blobs of a few typical guests,
//! each behind the target's flag byte.
//!
//! cargo run --manifest-path fuzz/seeds/Cargo.toml --target-dir fuzz/target/seeds

use std::path::Path;

use pasid_core::migrate::{ExportOptions, FormatVersion};
use pasid_core::{
    DeviceKind, GuestConfig, GuestContract, Host, PasidKind, PasidLayout, Platform, Rid,
};

fn p2_guest(layout: PasidLayout) -> Vec<u8> {
    let mut host = Host::new(layout, Platform::P2).unwrap();
    // Use some host PASIDs first so the source ones are not simply the lowest.
    let other = host.create_guest(GuestConfig::p2(4)).unwrap();
    host.alloc(other, PasidKind::Shared).unwrap();
    let g = host.create_guest(GuestConfig::p2(8)).unwrap();
    let vf = Rid::new(0, 0x0300);
    let wq = Rid::new(0, 0x0a00);
    host.attach(g, vf, DeviceKind::Dedicated).unwrap();
    host.attach(g, wq, DeviceKind::SharedWq).unwrap();
    host.attach(g, Rid::new(1, 0x0301), DeviceKind::Dedicated)
        .unwrap();
    let local = host.alloc(g, PasidKind::Local).unwrap();
    let shared = host.alloc(g, PasidKind::Shared).unwrap();
    let shared2 = host.alloc(g, PasidKind::Shared).unwrap();
    host.bind(g, local, vf).unwrap();
    host.bind(g, shared, vf).unwrap();
    host.bind(g, shared, wq).unwrap();
    host.bind(g, shared2, wq).unwrap();
    host.alloc(g, PasidKind::Local).unwrap();
    host.export_guest(g).unwrap()
}

fn p1_guest() -> Vec<u8> {
    let layout = PasidLayout::new(20, 1..4096, 4096..1 << 19).unwrap();
    let mut host = Host::new(layout, Platform::P1).unwrap();
    let g = host.create_guest(GuestConfig::p1()).unwrap();
    for (rid, pasids) in [(0x0300, &[1, 5, 4095][..]), (0x0410, &[5, 6][..])] {
        let rid = Rid::new(0, rid);
        host.attach(g, rid, DeviceKind::Dedicated).unwrap();
        for &p in pasids {
            host.record(g, rid, p).unwrap();
        }
    }
    host.export_guest(g).unwrap()
}

/// The p2 guest written as format 1.0 (what a new host sends an old one).
fn p2_guest_v1() -> Vec<u8> {
    let layout = PasidLayout::new(20, 1..4096, 4096..1 << 19).unwrap();
    let mut host = Host::new(layout, Platform::P2).unwrap();
    let g = host.create_guest(GuestConfig::p2(8)).unwrap();
    let wq = Rid::new(0, 0x0a00);
    host.attach(g, wq, DeviceKind::SharedWq).unwrap();
    let shared = host.alloc(g, PasidKind::Shared).unwrap();
    host.bind(g, shared, wq).unwrap();
    host.alloc(g, PasidKind::Local).unwrap();
    let v1 = ExportOptions {
        version: FormatVersion::V1_0,
        epoch: 0,
    };
    host.export_guest_with(g, &v1).unwrap()
}

/// A p2 guest told a narrower range than the layout's, with a host id and an epoch.
fn narrow_contract_guest() -> Vec<u8> {
    let layout = PasidLayout::new(20, 1..4096, 4096..1 << 19).unwrap();
    let mut host = Host::new(layout, Platform::P2).unwrap();
    host.set_host_id(0x1234_5678_9abc);
    let g = host
        .create_guest_advertising(GuestConfig::p2(8), GuestContract::p2(1..64))
        .unwrap();
    host.alloc(g, PasidKind::Shared).unwrap();
    host.alloc(g, PasidKind::Local).unwrap();
    let opts = ExportOptions {
        version: FormatVersion::CURRENT,
        epoch: 42,
    };
    host.export_guest_with(g, &opts).unwrap()
}

fn empty_guest() -> Vec<u8> {
    let layout = PasidLayout::new(20, 1..4096, 4096..1 << 19).unwrap();
    let mut host = Host::new(layout, Platform::P2).unwrap();
    let g = host.create_guest(GuestConfig::p2(64)).unwrap();
    host.export_guest(g).unwrap()
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/import_guest");
    std::fs::create_dir_all(&dir).unwrap();
    let design = PasidLayout::new(20, 1..4096, 4096..1 << 19).unwrap();
    let small = PasidLayout::new(6, 1..16, 16..24).unwrap();
    // Flag bits as in fuzz_targets/import_guest.rs: 1 re-seal, 2 p1 destination,
    // 4 small destination layout, 8 busy destination, 16 shifted RIDs.
    let seeds: [(&str, u8, Vec<u8>); 8] = [
        ("p2-guest", 0, p2_guest(design.clone())),
        ("p2-guest-busy-destination", 8, p2_guest(design)),
        ("p2-small-guest-small-destination", 4, p2_guest(small)),
        ("p1-guest-p2-destination-shifted-rids", 16, p1_guest()),
        ("p1-guest-p1-destination", 2, p1_guest()),
        ("empty-p2-guest-resealed", 1, empty_guest()),
        ("p2-guest-format-1.0", 0, p2_guest_v1()),
        ("p2-guest-narrow-contract-busy-destination", 8, narrow_contract_guest()),
    ];
    for (name, flags, blob) in seeds {
        let mut data = vec![flags];
        data.extend_from_slice(&blob);
        std::fs::write(dir.join(name), data).unwrap();
    }
}
