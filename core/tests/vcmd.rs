//! VT-d virtual command emulation, checked against register values written out by
//! hand from the spec's bit layout (not built from the crate's constants):
//!
//! * VT-d 3.0/3.1: VCMD bits 7:0 command (1 ALLOC, 2 FREE), operand from bit 8;
//!   VCRSP bit 0 IP, bits 2:1 SC (2 = no PASID / invalid PASID), PASID in 27:8.
//! * VT-d 3.3: operand from bit 16; VCRSP bits 7:1 SC (16 = no PASID / invalid PASID),
//!   PASID in 35:16.
//! * Our documented choices: SC 1 ("undefined command") for unknown codes, malformed
//!   ALLOC operands, 3.3's reserved bits 15:8 and any command from a p1 guest;
//!   ALLOC operand 1 allocates a local PASID.

use pasid_core::vcmd::{self, VcmdRegister, VtdRevision};
use pasid_core::{
    DeviceKind, Error, GuestConfig, GuestId, Host, PasidKind, PasidLayout, Platform, Rid,
};
use proptest::prelude::*;

fn host() -> Host {
    Host::new(
        PasidLayout::new(20, 1..4096, 4096..1 << 19).unwrap(),
        Platform::P2,
    )
    .unwrap()
}

/// One held gPASID: its kind and its translation.
type Held = (u32, Result<PasidKind, Error>, Result<u32, Error>);

/// Everything about a guest that a command could change.
fn state(host: &Host, g: GuestId) -> Vec<Held> {
    (0..4097)
        .map(|p| (p, host.kind_of(g, p), host.translate(g, p)))
        .filter(|(_, k, _)| k.is_ok())
        .collect()
}

/// The VMM confirms the teardown of everything `g` freed, as one that clears the
/// entries and flushes synchronously on FREE does before the guest's next command.
fn confirm(host: &mut Host, g: GuestId) {
    let done = host.draining_of(g).unwrap();
    host.complete_teardown(&done).unwrap();
}

/// Runs (command, expected response) rows in order on one fresh p2 guest (quota 2),
/// with a VMM that confirms each FREE's teardown at once.
fn run_table(rev: VtdRevision, rows: &[(u64, u64)]) {
    let mut host = host();
    let g = host.create_guest(GuestConfig::p2(2)).unwrap();
    for (i, &(command, response)) in rows.iter().enumerate() {
        assert_eq!(
            host.vcmd(g, rev, command),
            Ok(response),
            "{rev:?} row {i}: command {command:#x}"
        );
        confirm(&mut host, g);
    }
}

#[test]
fn a_free_answers_at_once_but_its_numbers_wait_for_the_teardown() {
    let rev = VtdRevision::V3_3;
    let mut host = host();
    let g = host.create_guest(GuestConfig::p2(2)).unwrap();
    assert_eq!(host.vcmd(g, rev, 0x1), Ok(0x1_0000));
    assert_eq!(host.vcmd(g, rev, 0x1), Ok(0x2_0000));
    let h1 = host.translate(g, 1).unwrap();
    // FREE succeeds at once; gPASID 1 no longer translates.
    assert_eq!(host.vcmd(g, rev, 0x1_0002), Ok(0x0));
    assert_eq!(host.translate(g, 1), Err(Error::Draining { pasid: 1 }));
    // Freeing it again is an invalid PASID, not a double free.
    assert_eq!(host.vcmd(g, rev, 0x1_0002), Ok(0x20));
    // The quota counts the draining one; a local ALLOC gets a new number, not 1.
    assert_eq!(host.vcmd(g, rev, 0x1), Ok(0x20));
    assert_eq!(host.vcmd(g, rev, 0x1_0001), Ok(0x3_0000));
    assert_eq!(
        host.draining().collect::<Vec<_>>(),
        [pasid_core::Draining {
            guest: g,
            gpasid: 1,
            hpasid: Some(h1)
        }]
    );
    // Once the VMM confirms, both numbers are free again.
    confirm(&mut host, g);
    assert_eq!(host.vcmd(g, rev, 0x1), Ok(0x1_0000));
    assert_eq!(host.translate(g, 1), Ok(h1));
}

#[test]
fn vt_d_3_3_command_table() {
    run_table(
        VtdRevision::V3_3,
        &[
            // ALLOC (shared): gPASID 1 in bits 35:16, SC 0, IP 0.
            (0x0000_0000_0000_0001, 0x0000_0000_0001_0000),
            // ALLOC local (operand 1 at bit 16): gPASID 2, no host PASID, no quota.
            (0x0000_0000_0001_0001, 0x0000_0000_0002_0000),
            // ALLOC: gPASID 3, second shared PASID (quota 2 reached).
            (0x0000_0000_0000_0001, 0x0000_0000_0003_0000),
            // ALLOC beyond quota: SC 16 (bits 7:1) = 0x20.
            (0x0000_0000_0000_0001, 0x0000_0000_0000_0020),
            // ALLOC local still works.
            (0x0000_0000_0001_0001, 0x0000_0000_0004_0000),
            // FREE gPASID 1: success.
            (0x0000_0000_0001_0002, 0x0000_0000_0000_0000),
            // FREE gPASID 1 again: invalid PASID, SC 16.
            (0x0000_0000_0001_0002, 0x0000_0000_0000_0020),
            // FREE gPASID 5000 (outside the guest range 1..4096): SC 16.
            (0x0000_0000_1388_0002, 0x0000_0000_0000_0020),
            // FREE gPASID 0: SC 16.
            (0x0000_0000_0000_0002, 0x0000_0000_0000_0020),
            // FREE with a bit above the 20-bit PASID (bit 36) set: SC 16.
            (0x0000_0010_0002_0002, 0x0000_0000_0000_0020),
            // ALLOC takes the lowest free gPASID again: 1.
            (0x0000_0000_0000_0001, 0x0000_0000_0001_0000),
            // Command 0 and 3..=255: undefined, SC 1 = 0x2.
            (0x0000_0000_0000_0000, 0x0000_0000_0000_0002),
            (0x0000_0000_0000_0003, 0x0000_0000_0000_0002),
            (0x0000_0000_0000_00ff, 0x0000_0000_0000_0002),
            // Reserved bits 15:8 set: undefined.
            (0x0000_0000_0000_0101, 0x0000_0000_0000_0002),
            (0x0000_0000_0000_8002, 0x0000_0000_0000_0002),
            // ALLOC with operand 2 or a high operand bit: undefined.
            (0x0000_0000_0002_0001, 0x0000_0000_0000_0002),
            (0x8000_0000_0000_0001, 0x0000_0000_0000_0002),
            // FREE of the local gPASID 2: success.
            (0x0000_0000_0002_0002, 0x0000_0000_0000_0000),
        ],
    );
}

#[test]
fn vt_d_3_0_command_table() {
    run_table(
        VtdRevision::V3_0,
        &[
            // ALLOC: gPASID 1 in bits 27:8.
            (0x0000_0000_0000_0001, 0x0000_0000_0000_0100),
            // ALLOC local (operand 1 at bit 8): gPASID 2.
            (0x0000_0000_0000_0101, 0x0000_0000_0000_0200),
            // ALLOC: gPASID 3.
            (0x0000_0000_0000_0001, 0x0000_0000_0000_0300),
            // ALLOC beyond quota: SC 2 in bits 2:1 = 0x4.
            (0x0000_0000_0000_0001, 0x0000_0000_0000_0004),
            // FREE gPASID 3 (operand at bit 8): success.
            (0x0000_0000_0000_0302, 0x0000_0000_0000_0000),
            // FREE gPASID 3 again: invalid PASID, SC 2.
            (0x0000_0000_0000_0302, 0x0000_0000_0000_0004),
            // FREE gPASID 0xfff (held by nobody): SC 2.
            (0x0000_0000_000f_ff02, 0x0000_0000_0000_0004),
            // FREE with bit 28 (above the 20-bit PASID) set: SC 2.
            (0x0000_0000_1000_0302, 0x0000_0000_0000_0004),
            // Undefined commands: SC 1 = 0x2.
            (0x0000_0000_0000_0000, 0x0000_0000_0000_0002),
            (0x0000_0000_0000_0004, 0x0000_0000_0000_0002),
            // ALLOC with operand 2: undefined.
            (0x0000_0000_0000_0201, 0x0000_0000_0000_0002),
            // ALLOC: gPASID 3 again.
            (0x0000_0000_0000_0001, 0x0000_0000_0000_0300),
        ],
    );
}

#[test]
fn large_gpasids_fill_the_whole_result_field() {
    // A guest range near the top of the 20-bit space: gPASID 0xffff0.
    let layout = PasidLayout::new(20, 0xffff0..0x100000, 1..0x1000).unwrap();
    let mut host = Host::new(layout, Platform::P2).unwrap();
    let g = host.create_guest(GuestConfig::p2(4)).unwrap();
    assert_eq!(
        host.vcmd(g, VtdRevision::V3_3, 0x1),
        Ok(0x0000_000f_fff0_0000)
    );
    assert_eq!(
        host.vcmd(g, VtdRevision::V3_0, 0x1),
        Ok(0x0000_0000_0fff_f100)
    );
    assert_eq!(
        host.vcmd(g, VtdRevision::V3_3, 0x0000_000f_fff0_0002),
        Ok(0)
    );
    assert_eq!(host.vcmd(g, VtdRevision::V3_0, 0x0fff_f102), Ok(0));
}

#[test]
fn exhaustion_of_each_range_is_no_pasid_available() {
    // Guest range of 2 gPASIDs; shared range of 1 host PASID.
    let layout = PasidLayout::new(20, 1..3, 3..4).unwrap();
    let mut host = Host::new(layout, Platform::P2).unwrap();
    let g = host.create_guest(GuestConfig::p2(100)).unwrap();
    let rev = VtdRevision::V3_3;
    assert_eq!(host.vcmd(g, rev, 0x1), Ok(0x1_0000));
    assert_eq!(host.translate(g, 1), Ok(3));
    // Shared range full: SC 16, and the guest range is untouched by the failed try.
    assert_eq!(host.vcmd(g, rev, 0x1), Ok(0x20));
    assert_eq!(host.vcmd(g, rev, 0x1_0001), Ok(0x2_0000));
    // Guest range full: SC 16 for either kind.
    assert_eq!(host.vcmd(g, rev, 0x1_0001), Ok(0x20));
    assert_eq!(host.vcmd(g, VtdRevision::V3_0, 0x1), Ok(0x4));
    assert_eq!(host.shared_in_use(), 1);
}

#[test]
fn capability_and_offsets() {
    let mut host = host();
    let p2 = host.create_guest(GuestConfig::p2(4)).unwrap();
    let p1 = host.create_guest(GuestConfig::p1()).unwrap();
    for rev in [VtdRevision::V3_0, VtdRevision::V3_3] {
        assert_eq!(host.vcap(p2, rev), Ok(0x1));
        assert_eq!(host.vcap(p1, rev), Ok(0x0));
    }
    assert_eq!(VtdRevision::default(), VtdRevision::V3_3);
    assert_eq!(vcmd::ECAP_VCS, 0x0000_1000_0000_0000);
    assert_eq!(vcmd::VCCAP_PAS, 1);

    let v30 = VtdRevision::V3_0;
    assert_eq!(
        (v30.vccap_offset(), v30.vcmd_offset(), v30.vcrsp_offset()),
        (0xe00, 0xe10, 0xe20)
    );
    let v33 = VtdRevision::V3_3;
    assert_eq!(
        (v33.vcmd_offset(), v33.vcrsp_offset(), v33.vccap_offset()),
        (0xe00, 0xe10, 0xe30)
    );
    assert_eq!(v33.register_at(0xe00), Some(VcmdRegister::Vcmd));
    assert_eq!(v30.register_at(0xe00), Some(VcmdRegister::Vccap));
    assert_eq!(v33.register_at(0xe30), Some(VcmdRegister::Vccap));
    assert_eq!(v30.register_at(0xe30), None);

    // The helpers agree with the hand-written layout.
    assert_eq!(v33.command(2, 0x12345), 0x0000_0001_2345_0002);
    assert_eq!(v30.command(2, 0x12345), 0x0000_0000_0123_4502);
    let r = v33.decode_response(0x0000_000a_bcde_0020);
    assert_eq!((r.in_progress, r.status, r.pasid), (false, 16, 0xabcde));
    let r = v30.decode_response(0x0000_0000_0abc_de05);
    assert_eq!((r.in_progress, r.status, r.pasid), (true, 2, 0xabcde));
}

#[test]
fn a_p1_guest_gets_undefined_command_and_nothing_changes() {
    let mut host = host();
    let p1 = host.create_guest(GuestConfig::p1()).unwrap();
    let rid = Rid::new(0, 0x0301);
    host.attach(p1, rid, DeviceKind::Dedicated).unwrap();
    host.record(p1, rid, 7).unwrap();
    for (rev, command) in [
        (VtdRevision::V3_3, 0x1),
        (VtdRevision::V3_3, 0x7_0002),
        (VtdRevision::V3_0, 0x1),
        (VtdRevision::V3_0, 0x702),
    ] {
        assert_eq!(host.vcmd(p1, rev, command), Ok(0x2));
    }
    assert_eq!(host.shared_in_use(), 0);
    // The recorded PASID is still there (recording it again is refused).
    assert_eq!(host.record(p1, rid, 7), Err(Error::PasidInUse { pasid: 7 }));
}

#[test]
fn unknown_guest_is_a_host_side_error() {
    let mut host = host();
    let g = host.create_guest(GuestConfig::p2(4)).unwrap();
    host.destroy_guest(g).unwrap();
    assert_eq!(
        host.vcmd(g, VtdRevision::V3_3, 1),
        Err(Error::NoSuchGuest { guest: g })
    );
    assert_eq!(
        host.vcap(g, VtdRevision::V3_3),
        Err(Error::NoSuchGuest { guest: g })
    );
}

#[test]
fn freeing_a_bound_pasid_is_refused_as_invalid() {
    let mut host = host();
    let g = host.create_guest(GuestConfig::p2(4)).unwrap();
    let wq = Rid::new(0, 0x0a00);
    host.attach(g, wq, DeviceKind::SharedWq).unwrap();
    assert_eq!(host.vcmd(g, VtdRevision::V3_3, 0x1), Ok(0x1_0000));
    host.bind(g, 1, wq).unwrap();
    assert_eq!(host.vcmd(g, VtdRevision::V3_3, 0x1_0002), Ok(0x20));
    assert_eq!(host.translate(g, 1), Ok(4096));
    host.unbind(g, 1, wq).unwrap();
    assert_eq!(host.vcmd(g, VtdRevision::V3_3, 0x1_0002), Ok(0x0));
}

#[test]
fn reporting_pages_follow_the_translation_table() {
    let mut host = host();
    let g = host.create_guest(GuestConfig::p2(4)).unwrap();
    let rev = VtdRevision::V3_3;
    let (resp, pages) = host.vcmd_reporting_pages(g, rev, 0x1).unwrap();
    assert_eq!(resp, 0x1_0000);
    let pages = pages.unwrap();
    assert_eq!((pages.table, pages.directory_changed), (0, true));
    // Local: no page changes.
    assert_eq!(
        host.vcmd_reporting_pages(g, rev, 0x1_0001),
        Ok((0x2_0000, None))
    );
    // Failure: no page changes.
    assert_eq!(host.vcmd_reporting_pages(g, rev, 0x3), Ok((0x2, None)));
    let (resp, pages) = host.vcmd_reporting_pages(g, rev, 0x1_0002).unwrap();
    assert_eq!(resp, 0);
    assert_eq!(
        pages.map(|p| (p.table, p.directory_changed)),
        Some((0, false))
    );
}

#[test]
fn two_guests_are_isolated() {
    let mut host = host();
    let a = host.create_guest(GuestConfig::p2(2)).unwrap();
    let b = host.create_guest(GuestConfig::p2(2)).unwrap();
    let rev = VtdRevision::V3_3;
    // Both guests get gPASID 1: numbers are per guest; host PASIDs differ.
    assert_eq!(host.vcmd(a, rev, 0x1), Ok(0x1_0000));
    assert_eq!(host.vcmd(b, rev, 0x1), Ok(0x1_0000));
    assert_eq!(host.vcmd(b, rev, 0x1_0001), Ok(0x2_0000));
    assert_ne!(host.translate(a, 1), host.translate(b, 1));
    let b_before = state(&host, b);

    // A frees its own 1, then tries B's 2, then exhausts its quota: B never changes.
    assert_eq!(host.vcmd(a, rev, 0x1_0002), Ok(0x0));
    confirm(&mut host, a);
    assert_eq!(host.vcmd(a, rev, 0x1_0002), Ok(0x20));
    assert_eq!(host.vcmd(a, rev, 0x2_0002), Ok(0x20));
    assert_eq!(host.vcmd(a, rev, 0x1), Ok(0x1_0000));
    assert_eq!(host.vcmd(a, rev, 0x1), Ok(0x2_0000));
    assert_eq!(host.vcmd(a, rev, 0x1), Ok(0x20));
    assert_eq!(state(&host, b), b_before);
    // B's quota is its own.
    assert_eq!(host.vcmd(b, rev, 0x1), Ok(0x3_0000));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Any register value from guest A, in either revision, never panics, gives a
    /// response with IP clear, and never changes guest B; a failed command changes
    /// nothing in A either.
    #[test]
    fn arbitrary_commands_never_touch_another_guest(
        commands in prop::collection::vec(
            (any::<bool>(), prop_oneof![
                any::<u64>(),
                (0u64..4, 0u64..0x1000).prop_map(|(c, p)| c | (p << 16)),
                (0u64..4, 0u64..0x1000).prop_map(|(c, p)| c | (p << 8)),
            ]),
            1..60,
        )
    ) {
        let mut host = host();
        let a = host.create_guest(GuestConfig::p2(5)).unwrap();
        let b = host.create_guest(GuestConfig::p2(5)).unwrap();
        for _ in 0..3 {
            host.vcmd(b, VtdRevision::V3_3, 0x1).unwrap();
        }
        let b_before = state(&host, b);
        for (v30, command) in commands {
            let rev = if v30 { VtdRevision::V3_0 } else { VtdRevision::V3_3 };
            let a_before = state(&host, a);
            let in_use = host.shared_in_use();
            let response = host.vcmd(a, rev, command).unwrap();
            prop_assert_eq!(response & 1, 0);
            if rev.decode_response(response).status != 0 {
                prop_assert_eq!(state(&host, a), a_before);
                prop_assert_eq!(host.shared_in_use(), in_use);
            }
            prop_assert_eq!(state(&host, b), b_before.clone());
        }
    }
}
