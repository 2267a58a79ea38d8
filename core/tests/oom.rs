//! Out of memory: with the allocator failing after N allocations (every N up to what the
//! call needs), the calls whose allocations all go through `try_reserve` return
//! `Error::OutOfMemory` and leave the host exactly as it was (snapshot and heap bytes).
//!
//! Covered: every call a guest or a migration blob can drive that allocates:
//! `Host::new`, `Host::create_guest`, `Host::export_guest`, a shared `Host::alloc` /
//! VCMD ALLOC that needs a new translation table, `Host::free` / VCMD FREE of a local
//! PASID (the local draining list; a shared one drains in its table entry and needs no
//! memory), `Host::attach` (a first, a shared and a mixed use), `Host::bind`,
//! `Host::record`, `Host::destroy_guest`, `Host::check_import`, and `Host::import_guest`
//! with and without devices (the device maps, PASID sets, bind counts and the host's
//! RID registry after the guest is installed), `Host::enable_translation_changes`,
//! `Host::destroy_guest_reporting_changes` and `Host::import_guest_with` starting a
//! change log. Every map grows through `try_reserve`.

mod support;

use pasid_core::vcmd::{VtdRevision, CMD_ALLOC};
use pasid_core::{
    DeviceKind, Error, GuestConfig, GuestId, Host, PasidKind, PasidLayout, Platform, Rid,
};
use support::alloc::{count_allocations, failing_after, largest_allocation, TestAlloc};

#[global_allocator]
static ALLOC: TestAlloc = TestAlloc;

fn layout() -> PasidLayout {
    // Under Miri a small shared range: every failing run clones and compares the host,
    // and a 2^19-id shared bitmap makes that slow there. Natively, the design's layout.
    let shared_end = if cfg!(miri) { 8192 } else { 1 << 19 };
    PasidLayout::new(20, 1..4096, 4096..shared_end).unwrap()
}

/// A host with guests, devices, PASIDs and a free (destroyed) slot when `free_slot`.
fn busy_host(free_slot: bool) -> Host {
    let mut host = Host::new(layout(), Platform::P2).unwrap();
    let a = host.create_guest(GuestConfig::p2(8)).unwrap();
    host.attach(a, Rid::new(0, 0x0a00), DeviceKind::SharedWq)
        .unwrap();
    let p = host.alloc(a, PasidKind::Shared).unwrap();
    host.bind(a, p, Rid::new(0, 0x0a00)).unwrap();
    host.alloc(a, PasidKind::Local).unwrap();
    let b = host.create_guest(GuestConfig::p1()).unwrap();
    host.attach(b, Rid::new(0, 0x0300), DeviceKind::Dedicated)
        .unwrap();
    host.record(b, Rid::new(0, 0x0300), 9).unwrap();
    if free_slot {
        let c = host.create_guest(GuestConfig::p2(1)).unwrap();
        host.destroy_guest(c).unwrap();
    }
    host
}

/// Runs `f` on a copy of `host` with the allocator failing after each k allocations
/// for every k below what `f` needs (or below `limit`), and checks that each run fails
/// with OutOfMemory and leaves the copy's state unchanged; that running `f` again on
/// the failed copy ends exactly where an unhindered run ends (same state, same heap
/// bytes: whatever a failed call reserved is reused, not leaked). Returns how many
/// allocations `f` makes.
fn all_or_nothing<T: PartialEq + std::fmt::Debug>(
    what: &str,
    host: &Host,
    limit: Option<u64>,
    mut f: impl FnMut(&mut Host) -> Result<T, Error>,
) -> u64 {
    let before = host.snapshot();
    let mut done = host.clone();
    let (r, needed) = count_allocations(|| f(&mut done));
    let want = r.unwrap_or_else(|e| panic!("{what} fails without memory pressure: {e}"));
    for k in 0..limit.unwrap_or(needed).min(needed) {
        let mut h = host.clone();
        let r = failing_after(k, || f(&mut h));
        assert_eq!(
            r.as_ref().err(),
            Some(&Error::OutOfMemory),
            "{what}, allocation {k} of {needed} failing: {r:?}"
        );
        assert_eq!(h.snapshot(), before, "{what}, allocation {k}: host changed");
        assert_eq!(
            f(&mut h).as_ref(),
            Ok(&want),
            "{what} after allocation {k} failed"
        );
        assert_eq!(h.snapshot(), done.snapshot(), "{what}, allocation {k}");
        assert_eq!(
            h.heap_bytes(),
            done.heap_bytes(),
            "{what}, allocation {k}: memory kept"
        );
    }
    needed
}

#[test]
fn host_new() {
    for k in 0..count_allocations(|| Host::new(layout(), Platform::P2)).1 {
        let r = failing_after(k, || Host::new(layout(), Platform::P2));
        assert_eq!(r.err(), Some(Error::OutOfMemory), "allocation {k}");
    }
}

#[test]
fn create_guest() {
    // The first guest (slot vectors grow), a later one, and one reusing a free slot.
    let empty = Host::new(layout(), Platform::P2).unwrap();
    for (name, host) in [
        ("first guest", empty),
        ("guest on a busy host", busy_host(false)),
        ("guest in a free slot", busy_host(true)),
    ] {
        for config in [GuestConfig::p2(4), GuestConfig::p1()] {
            let n = all_or_nothing(name, &host, None, |h| h.create_guest(config));
            assert!(
                n >= 2,
                "{name}: the gPASID bitmap and the table index at least"
            );
        }
    }
}

#[test]
fn shared_alloc_needing_a_new_table() {
    let host = busy_host(false);
    let g = host.guests().next().unwrap();
    // gPASIDs 1 and 2 are taken; fill table 0 so the next shared one needs table 1.
    let mut full = host.clone();
    for _ in 3..1024 {
        full.alloc(g, PasidKind::Local).unwrap();
    }
    all_or_nothing("alloc shared", &full, None, |h| {
        h.alloc(g, PasidKind::Shared)
    });
    // Through VCMD the guest sees no response: the VMM gets the error (the host is out
    // of memory, not the guest out of PASIDs).
    for rev in [VtdRevision::V3_0, VtdRevision::V3_3] {
        all_or_nothing("VCMD ALLOC", &full, None, |h| {
            h.vcmd(g, rev, rev.command(CMD_ALLOC, 0))
        });
    }
}

#[test]
fn export_guest() {
    let host = busy_host(false);
    for g in host.guests().collect::<Vec<GuestId>>() {
        all_or_nothing("export", &host, None, |h| h.export_guest(g));
    }
}

fn p2_blob(devices: bool) -> Vec<u8> {
    let mut src = Host::new(layout(), Platform::P2).unwrap();
    let g = src.create_guest(GuestConfig::p2(8)).unwrap();
    let wq = Rid::new(0, 0x0a01);
    let vf = Rid::new(0, 0x0301);
    // Shared gPASIDs 1, 2 and 1025 (two translation tables) and local 3, 4: fill the
    // first table with locals to get to 1025, then free those again.
    src.alloc(g, PasidKind::Shared).unwrap();
    src.alloc(g, PasidKind::Shared).unwrap();
    for _ in 3..1025 {
        src.alloc(g, PasidKind::Local).unwrap();
    }
    assert_eq!(src.alloc(g, PasidKind::Shared), Ok(1025));
    for p in 5..1025 {
        src.free(g, p).unwrap();
    }
    if devices {
        src.attach(g, wq, DeviceKind::SharedWq).unwrap();
        src.attach(g, vf, DeviceKind::Dedicated).unwrap();
        src.bind(g, 1, wq).unwrap();
        src.bind(g, 1, vf).unwrap();
        src.bind(g, 2, vf).unwrap();
    }
    src.export_guest(g).unwrap()
}

fn p1_blob() -> Vec<u8> {
    let mut src = Host::new(layout(), Platform::P1).unwrap();
    let g = src.create_guest(GuestConfig::p1()).unwrap();
    src.attach(g, Rid::new(0, 0x0302), DeviceKind::Dedicated)
        .unwrap();
    src.record(g, Rid::new(0, 0x0302), 3).unwrap();
    src.export_guest(g).unwrap()
}

const MAP: [(Rid, Rid); 3] = [
    (Rid::new(0, 0x0a01), Rid::new(0, 0x0a01)),
    (Rid::new(0, 0x0301), Rid::new(0, 0x0301)),
    (Rid::new(0, 0x0302), Rid::new(0, 0x0302)),
];

#[test]
fn import_guest_without_devices() {
    let blob = p2_blob(false);
    for free_slot in [false, true] {
        let host = busy_host(free_slot);
        let n = all_or_nothing("import", &host, None, |h| h.import_guest(&blob, &MAP));
        assert!(
            n >= 6,
            "decode, plan, report, bitmap, table index, two tables"
        );
    }
}

#[test]
fn import_guest_with_devices_while_decoding_and_checking() {
    for blob in [p2_blob(true), p1_blob()] {
        let host = busy_host(true);
        let checked = all_or_nothing("check_import", &host, None, |h| h.check_import(&blob, &MAP));
        // import_guest decodes and checks first, the same way: every allocation of
        // that part fails cleanly. (The device maps built after it cannot: see top.)
        all_or_nothing("import", &host, Some(checked), |h| {
            h.import_guest(&blob, &MAP)
        });
    }
}

/// postcard's (LEB128) encoding of a length.
fn varint(mut v: u32) -> Vec<u8> {
    let mut out = Vec::new();
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out
}

/// A blob, sealed like a real one, whose payload is `payload`.
fn sealed(payload: &[u8]) -> Vec<u8> {
    let mut blob = pasid_core::migrate::FORMAT_MAGIC.to_vec();
    blob.extend_from_slice(&pasid_core::migrate::FORMAT_MAJOR.to_le_bytes());
    blob.extend_from_slice(&0u16.to_le_bytes());
    blob.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    blob.extend_from_slice(payload);
    let crc = crc32fast::hash(&blob);
    blob.extend_from_slice(&crc.to_le_bytes());
    blob
}

#[test]
fn hostile_counts_in_a_blob_ask_for_little() {
    // Well-sealed blobs whose sequence lengths lie: 2^32 - 1 elements, then the end; or
    // 20,000 all-zero elements that do decode (then fail validation). The decoder must size allocations by the
    // bytes it has, never by the claim (4 G elements would abort, or fail with
    // OutOfMemory on a host that could hold the real guest).
    let huge = [0xff, 0xff, 0xff, 0xff, 0x0f];
    // Under Miri a tenth as many, so the test stays quick there.
    let count: u32 = if cfg!(miri) { 2_000 } else { 20_000 };
    let many = varint(count);
    // Layout (width 20, local 1..4096, shared 4096..8192), platforms p2/p2, quota 8.
    let head = [20, 1, 0x80, 0x20, 0x80, 0x20, 0x80, 0x40, 2, 2, 8];
    let host = busy_host(false);
    for at in 0..3 {
        // Empty sequences before the lying one, so each of the three lies once.
        let mut payload = head.to_vec();
        payload.extend(std::iter::repeat_n(0u8, at));
        payload.extend_from_slice(&huge);
        let blob = sealed(&payload);
        let (r, largest) = largest_allocation(|| host.check_import(&blob, &MAP));
        assert!(matches!(r, Err(Error::MalformedBlob { .. })), "{at}: {r:?}");
        assert!(
            largest <= 256,
            "sequence {at}: {largest} bytes asked at once"
        );

        let mut payload = head.to_vec();
        payload.extend(std::iter::repeat_n(0u8, at));
        payload.extend_from_slice(&many);
        payload.extend(std::iter::repeat_n(0u8, 3 * count as usize));
        let blob = sealed(&payload);
        let (r, largest) = largest_allocation(|| host.check_import(&blob, &MAP));
        assert!(matches!(r, Err(Error::MalformedBlob { .. })), "{at}: {r:?}");
        // Elements of at most 12 bytes from at least 1 byte each, doubling as they come.
        assert!(
            largest <= 24 * blob.len(),
            "sequence {at}: {largest} bytes asked at once for a {}-byte blob",
            blob.len()
        );
    }
}

#[test]
fn attach_bind_record_free_and_destroy() {
    let host = busy_host(true);
    let a = host.guests().next().unwrap();
    let b = host.guests().nth(1).unwrap();
    let wq = Rid::new(0, 0x0a00);
    let vf = Rid::new(0, 0x0301);
    // A new RID, a second guest on a shared WQ, and a second use of one RID.
    all_or_nothing("attach dedicated", &host, None, |h| {
        h.attach(a, vf, DeviceKind::Dedicated)
    });
    let mut two = host.clone();
    let c = two.create_guest(GuestConfig::p2(4)).unwrap();
    all_or_nothing("attach a shared WQ's second guest", &two, None, |h| {
        h.attach(c, wq, DeviceKind::SharedWq)
    });
    all_or_nothing("attach the other use of a RID", &host, None, |h| {
        h.attach(a, wq, DeviceKind::Dedicated)
    });
    // Bind: a new gPASID on a device (set and counts grow); p1 record.
    let mut bound = host.clone();
    bound.attach(a, vf, DeviceKind::Dedicated).unwrap();
    let p = bound.alloc(a, PasidKind::Shared).unwrap();
    all_or_nothing("bind", &bound, None, |h| h.bind(a, p, vf));
    all_or_nothing("record", &host, None, |h| {
        h.record(b, Rid::new(0, 0x0300), 10)
    });
    // Free of a local PASID: the draining list grows; VCMD FREE the same way.
    let local = bound.alloc(a, PasidKind::Local).unwrap();
    all_or_nothing("free", &bound, None, |h| h.free(a, local));
    for rev in [VtdRevision::V3_0, VtdRevision::V3_3] {
        all_or_nothing("VCMD FREE", &bound, None, |h| {
            h.vcmd(
                a,
                rev,
                rev.command(pasid_core::vcmd::CMD_FREE, local.into()),
            )
        });
    }
    // Destroy: the entries it returns and the orphaned host PASIDs.
    bound.bind(a, p, vf).unwrap();
    all_or_nothing("destroy", &bound, None, |h| {
        h.destroy_guest(a).map(|e| e.len())
    });
}

#[test]
fn import_with_devices_fails_cleanly_at_every_allocation() {
    for blob in [p2_blob(true), p1_blob()] {
        for free_slot in [false, true] {
            let host = busy_host(free_slot);
            all_or_nothing("import with devices", &host, None, |h| {
                h.import_guest(&blob, &MAP).map(|(g, _)| g)
            });
        }
    }
}

#[test]
fn change_log_enable_import_and_destroy_reporting() {
    let host = busy_host(true);
    let g = host.guests().next().unwrap();
    all_or_nothing("enable_translation_changes", &host, None, |h| {
        h.enable_translation_changes(g, 16)
    });
    let mut logged = host.clone();
    logged.enable_translation_changes(g, 16).unwrap();
    logged.alloc(g, PasidKind::Shared).unwrap();
    all_or_nothing("destroy_guest_reporting_changes", &logged, None, |h| {
        let mut out = Vec::new();
        h.destroy_guest_reporting_changes(g, &mut out)
            .map(|entries| (entries, out))
    });
    let blob = p2_blob(false);
    let opts = pasid_core::migrate::ImportOptions {
        change_log: Some(8),
        ..Default::default()
    };
    all_or_nothing("import_guest_with a change log", &host, None, |h| {
        h.import_guest_with(&blob, &MAP, &opts)
    });
}
