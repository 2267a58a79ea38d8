//! A hostile guest: everything a guest can write to its VCMD register, and every gPASID
//! it can name, while two bystander guests hold PASIDs, devices and bindings. The
//! bystanders' allocations, translations and quotas must not change, the attacker gets
//! only what its quota and range allow, and the host's memory stays under a bound that
//! does not depend on what the attacker sends.
//!
//! The guest range is the design's 1..4096 (4095 gPASIDs); under Miri it is 1..96 so the
//! sweeps finish, with the same code.

mod support;

use pasid_core::vcmd::{VtdRevision, CMD_ALLOC, CMD_FREE};
use pasid_core::{
    DeviceKind, Error, GuestConfig, GuestId, GuestSnapshot, Host, PasidKind, PasidLayout, Platform,
    Rid,
};
use support::alloc::{live_bytes, TestAlloc};
use support::model::vcrsp;

#[global_allocator]
static ALLOC: TestAlloc = TestAlloc;

const LOCAL_END: u32 = if cfg!(miri) { 96 } else { 4096 };
const SHARED: std::ops::Range<u32> = 4096..1 << 19;
const QUOTA: u32 = 16;
const REVS: [VtdRevision; 2] = [VtdRevision::V3_0, VtdRevision::V3_3];

const VF_A: Rid = Rid::new(0, 0x0301);
const WQ_A: Rid = Rid::new(0, 0x0a00);
const VF_B: Rid = Rid::new(0, 0x0302);
const VF_P1: Rid = Rid::new(0, 0x0401);
const VF_X: Rid = Rid::new(0, 0x0501);
const WQ_X: Rid = Rid::new(0, 0x0a01);

/// A bystander's snapshot, its translation of every gPASID, and its shared count.
type Bystander = (GuestSnapshot, Vec<Result<u32, Error>>, u32);

struct World {
    host: Host,
    /// Bystanders: a p2 guest with shared and local PASIDs bound to a VF and a shared
    /// WQ, and a p1 guest with recorded PASIDs.
    bystanders: Vec<GuestId>,
    attacker: GuestId,
}

impl World {
    fn new() -> Self {
        let layout = PasidLayout::new(20, 1..LOCAL_END, SHARED).unwrap();
        let mut host = Host::new(layout, Platform::P2).unwrap();
        let a = host.create_guest(GuestConfig::p2(QUOTA)).unwrap();
        host.attach(a, VF_A, DeviceKind::Dedicated).unwrap();
        host.attach(a, WQ_A, DeviceKind::SharedWq).unwrap();
        for i in 0..12 {
            let kind = if i % 3 == 0 {
                PasidKind::Local
            } else {
                PasidKind::Shared
            };
            let p = host.alloc(a, kind).unwrap();
            host.bind(a, p, VF_A).unwrap();
            if kind == PasidKind::Shared {
                host.bind(a, p, WQ_A).unwrap();
            }
        }
        let b = host.create_guest(GuestConfig::p1()).unwrap();
        host.attach(b, VF_B, DeviceKind::Dedicated).unwrap();
        host.attach(b, VF_P1, DeviceKind::Dedicated).unwrap();
        for p in [1, 2, 7, LOCAL_END - 1] {
            host.record(b, VF_B, p).unwrap();
            host.record(b, VF_P1, p).unwrap();
        }
        let x = host.create_guest(GuestConfig::p2(QUOTA)).unwrap();
        host.attach(x, VF_X, DeviceKind::Dedicated).unwrap();
        host.attach(x, WQ_X, DeviceKind::SharedWq).unwrap();
        World {
            host,
            bystanders: vec![a, b],
            attacker: x,
        }
    }

    /// What must not change: the bystanders' snapshots (allocations, kinds, host
    /// PASIDs, devices, bindings, config with quota) and their translations.
    fn bystander_state(&self) -> Vec<Bystander> {
        self.bystanders
            .iter()
            .map(|&g| {
                let translations = (0..LOCAL_END + 2)
                    .map(|p| self.host.translate(g, p))
                    .collect();
                (
                    self.host.guest_snapshot(g).unwrap(),
                    translations,
                    self.host.shared_held(g).unwrap(),
                )
            })
            .collect()
    }

    /// The attacker writes VCMD; its VMM handles a FREE the way a careful one does:
    /// it clears the entries, flushes, and confirms the teardown before the next
    /// command, so the guest's next ALLOC may see the number again.
    fn vcmd(&mut self, rev: VtdRevision, command: u64) -> u64 {
        // A guest can cause no `Err`: only an unknown guest id or host OOM can.
        let r = self
            .host
            .vcmd(self.attacker, rev, command)
            .unwrap_or_else(|e| panic!("VCMD {command:#x} ({rev:?}): {e}"));
        // Only a FREE makes anything drain (and Miri runs these sweeps: skip the rest).
        if command & 0xff == u64::from(CMD_FREE) {
            self.confirm_teardown();
        }
        r
    }

    /// The VMM confirms the teardown of whatever the attacker freed.
    fn confirm_teardown(&mut self) {
        let done = self.host.draining_of(self.attacker).unwrap();
        self.host.complete_teardown(&done).unwrap();
    }
}

fn alloc_cmd(rev: VtdRevision, local: bool) -> u64 {
    rev.command(CMD_ALLOC, local as u64)
}

fn free_cmd(rev: VtdRevision, pasid: u64) -> u64 {
    rev.command(CMD_FREE, pasid)
}

/// The most a guest's own state may take, whatever it sends: its gPASID bitmap (one bit
/// per gPASID plus summaries, at most 1/4 more), one 4 KiB translation table per 1024
/// gPASIDs, a table index of 8 bytes per table, its slot in the host's guest table
/// (under 1 KiB with the translation map's inline first 128 entries; twice that, room
/// for the host's `Vec` doubling) and 512 bytes for each device.
/// For the 1..4096 range and no device: 19,168 bytes.
fn guest_bound(devices: usize) -> usize {
    let len = LOCAL_END as usize;
    let tables = len.div_ceil(1024);
    (len / 8) * 5 / 4 + 64 + tables * (4096 + 8) + 2 * 1024 + devices * 512
}

/// What a guest's draining list can add while its VMM does not confirm teardowns:
/// one entry per gPASID of the range at most, in a `Vec` that may have doubled.
fn draining_bound() -> usize {
    2 * LOCAL_END as usize * std::mem::size_of::<(u32, Option<u32>)>()
}

#[test]
fn alloc_flood_stops_at_the_quota_and_the_range() {
    for rev in REVS {
        let mut w = World::new();
        let before = w.bystander_state();
        let heap_before = w.host.heap_bytes();
        let no_pasid = vcrsp::no_pasid(rev);
        // Shared ALLOC: exactly QUOTA succeed, then "no PASID available", many times.
        let mut shared = Vec::new();
        for i in 0..QUOTA * 4 {
            let r = w.vcmd(rev, alloc_cmd(rev, false));
            if i < QUOTA {
                let resp = rev.decode_response(r);
                assert_eq!((resp.in_progress, resp.status), (false, 0), "{r:#x}");
                shared.push(resp.pasid);
            } else {
                assert_eq!(r, no_pasid, "shared ALLOC {i} past the quota");
            }
        }
        assert_eq!(w.host.shared_held(w.attacker), Ok(QUOTA));
        // Local ALLOC fills the rest of the guest range, then fails, many times.
        let range = LOCAL_END - 1;
        for i in 0..range + 64 {
            let r = w.vcmd(rev, alloc_cmd(rev, true));
            if i < range - QUOTA {
                assert_eq!(rev.decode_response(r).status, 0);
            } else {
                assert_eq!(r, no_pasid, "local ALLOC {i} past the range");
            }
        }
        // Shared ALLOC stays refused with the range full too.
        assert_eq!(w.vcmd(rev, alloc_cmd(rev, false)), no_pasid);
        assert_eq!(w.bystander_state(), before);
        // Every shared gPASID of the attacker maps to its own host PASID.
        for &g in &shared {
            let h = w.host.translate(w.attacker, g).unwrap();
            assert!(SHARED.contains(&h));
        }
        let grown = w.host.heap_bytes() - heap_before;
        assert!(grown <= guest_bound(0), "{grown} > {}", guest_bound(0));
        // Free everything and flood again: memory does not grow with repetitions. (The
        // first FREE makes the guest's draining list, which keeps its small capacity
        // from then on: measure after one round.)
        let mut full = 0;
        for round in 0..4 {
            for p in 1..LOCAL_END {
                assert_eq!(w.vcmd(rev, free_cmd(rev, p.into())), 0, "round {round}");
            }
            assert_eq!(w.host.shared_held(w.attacker), Ok(0));
            for _ in 0..QUOTA + 1 {
                w.vcmd(rev, alloc_cmd(rev, false));
            }
            for _ in 0..LOCAL_END {
                w.vcmd(rev, alloc_cmd(rev, true));
            }
            if round == 0 {
                full = w.host.heap_bytes();
                assert!(full - heap_before <= guest_bound(0) + draining_bound());
            }
            assert_eq!(w.host.heap_bytes(), full, "round {round}");
        }
        assert_eq!(w.bystander_state(), before);
    }
}

#[test]
fn freeing_what_it_does_not_hold_changes_nothing() {
    for rev in REVS {
        let mut w = World::new();
        let invalid = vcrsp::no_pasid(rev);
        // The attacker holds one PASID, bound so it cannot be freed either.
        let mine = rev
            .decode_response(w.vcmd(rev, alloc_cmd(rev, false)))
            .pasid;
        w.host.bind(w.attacker, mine, WQ_X).unwrap();
        let before = w.host.snapshot();
        // Every gPASID of the range (the bystanders hold many of them), 0, just past
        // the range, the bystanders' host PASIDs, and the top of the 20-bit space.
        let mut targets: Vec<u64> = (0..LOCAL_END as u64 + 2).collect();
        for g in &before.guests {
            targets.extend(g.pasids.iter().filter_map(|p| p.hpasid).map(u64::from));
        }
        targets.extend([(1 << 20) - 1, SHARED.start.into(), (SHARED.end - 1).into()]);
        for &p in &targets {
            assert_eq!(w.vcmd(rev, free_cmd(rev, p)), invalid, "FREE {p}");
        }
        // Operands wider than the 20-bit PASID field: every higher bit, on a PASID the
        // attacker holds (the field alone would name it) and on others.
        let shift = rev.operand_shift();
        for bit in 20..64 - shift {
            for low in [mine as u64, 1, 0] {
                let r = w.vcmd(rev, free_cmd(rev, low | 1 << bit));
                assert_eq!(r, invalid, "FREE {low} | 1 << {bit}");
            }
        }
        assert_eq!(w.host.snapshot(), before);
        // The host API refuses the same frees with the guest's own id, typed errors.
        for p in 0..LOCAL_END + 2 {
            assert!(w.host.free(w.attacker, p).is_err(), "free {p}");
        }
        assert_eq!(w.host.snapshot(), before);
    }
}

#[test]
fn guessing_gpasids_reaches_only_its_own() {
    let mut w = World::new();
    let before = w.bystander_state();
    let host_before = w.host.snapshot();
    let attacker = w.attacker;
    // Every gPASID (and a margin): translate, bind to its devices, unbind, kind_of and
    // free with its own id; and bind to the bystanders' RIDs.
    for p in 0..LOCAL_END + 2 {
        assert!(w.host.translate(attacker, p).is_err(), "translate {p}");
        assert!(w.host.kind_of(attacker, p).is_err());
        for rid in [VF_X, WQ_X, VF_A, WQ_A, VF_B, VF_P1] {
            assert!(w.host.bind(attacker, p, rid).is_err(), "bind {p} {rid}");
            assert!(w.host.unbind(attacker, p, rid).is_err(), "unbind {p} {rid}");
        }
        assert!(w.host.free(attacker, p).is_err());
    }
    // Its PASIDs are translated by its own table only: the same gPASID number held by
    // a bystander maps elsewhere, and the attacker's table has no bystander entry.
    // (Bystander A's gPASID 2 is shared; the attacker's 1 is local, its 2 shared.)
    let local = w.host.alloc(attacker, PasidKind::Local).unwrap();
    let mine = w.host.alloc(attacker, PasidKind::Shared).unwrap();
    assert_eq!((local, mine), (1, 2));
    let theirs = w.host.translate(w.bystanders[0], mine).unwrap();
    assert_ne!(w.host.translate(attacker, mine).unwrap(), theirs);
    // The bystanders' dedicated devices cannot be taken, detached or recorded on.
    for rid in [VF_A, VF_B, VF_P1] {
        assert_eq!(
            w.host.attach(attacker, rid, DeviceKind::Dedicated),
            Err(Error::RidInUse { rid })
        );
        assert_eq!(
            w.host.detach(attacker, rid),
            Err(Error::NoSuchDevice { rid })
        );
        assert!(w.host.record(attacker, rid, 5).is_err());
    }
    // A shared WQ is shared: the attacker may submit to A's WQ too, and what it
    // programs there is its own host PASID, never A's; A's bindings stay as they were.
    w.host.attach(attacker, WQ_A, DeviceKind::SharedWq).unwrap();
    let programmed = w.host.bind(attacker, mine, WQ_A).unwrap();
    assert_eq!(programmed, w.host.translate(attacker, mine).unwrap());
    assert_ne!(programmed, theirs);
    assert_eq!(
        w.host.detach(attacker, WQ_A),
        Err(Error::DeviceBusy { rid: WQ_A })
    );
    assert_eq!(w.host.unbind(attacker, mine, WQ_A), Ok(programmed));
    w.host.detach(attacker, WQ_A).unwrap();
    assert_eq!(w.bystander_state(), before);
    // Stale and forged guest ids reach nobody.
    for forged in [
        GuestId(0),
        GuestId(u32::MAX),
        GuestId(w.bystanders[0].0 ^ 0x1_0000),
        GuestId(w.bystanders[0].0 + 7),
    ] {
        assert_eq!(
            w.host.translate(forged, 1),
            Err(Error::NoSuchGuest { guest: forged })
        );
        assert!(w.host.vcmd(forged, VtdRevision::V3_3, 1).is_err());
    }
    w.host.free(attacker, mine).unwrap();
    w.host.free(attacker, local).unwrap();
    w.confirm_teardown();
    assert_eq!(w.bystander_state(), before);
    assert_eq!(w.host.snapshot(), host_before);
}

#[test]
fn every_reserved_command_value_is_refused_without_effect() {
    for rev in REVS {
        let mut w = World::new();
        // A translation table, once made, stays until the guest goes (by design): make
        // the attacker's first one now, so a valid ALLOC in the sweep adds nothing.
        let p = w.host.alloc(w.attacker, PasidKind::Shared).unwrap();
        w.host.free(w.attacker, p).unwrap();
        w.confirm_teardown();
        let before = w.host.snapshot();
        let heap_before = w.host.heap_bytes();
        let live_before = live_bytes();
        let undefined = vcrsp::undefined_command(rev);
        let shift = rev.operand_shift();
        let mut sent = 0u64;
        // Every command byte with a spread of operands; ALLOC (1) and FREE (2) only
        // with operands the spec leaves undefined (ALLOC: anything but 0 and 1).
        let operands: Vec<u64> = [0u64, 1, 2, 3, 0xff, 0xfffff, 1 << 19]
            .into_iter()
            .chain((0..64 - shift).map(|b| 1u64 << b))
            .chain([u64::MAX >> shift])
            .collect();
        for code in 0..=255u64 {
            for &operand in &operands {
                let command = code | operand << shift;
                let expected = match code {
                    1 if operand > 1 => undefined,
                    1 | 2 => continue, // defined commands: the other tests
                    _ => undefined,
                };
                assert_eq!(w.vcmd(rev, command), expected, "{command:#x}");
                sent += 1;
            }
        }
        // Every single set bit and every all-but-one value, whatever it decodes to,
        // must leave the host as it was unless it is a valid ALLOC/FREE.
        for bit in 0..64 {
            for command in [1u64 << bit, !(1u64 << bit)] {
                let r = w.vcmd(rev, command);
                if r == 0 || rev.decode_response(r).status == 0 {
                    // A valid FREE of nothing held cannot succeed; a valid ALLOC can:
                    // undo it so the comparison below still holds.
                    let p = rev.decode_response(r).pasid;
                    w.host.free(w.attacker, p).unwrap();
                    w.confirm_teardown();
                }
                sent += 1;
            }
        }
        // On 3.3 bits 15:8 are reserved: any of them set makes even ALLOC undefined.
        if rev == VtdRevision::V3_3 {
            for bit in 8..16 {
                for code in [CMD_ALLOC, CMD_FREE] {
                    assert_eq!(w.vcmd(rev, code as u64 | 1 << bit), undefined);
                }
            }
        }
        assert!(sent > 10_000);
        drop(operands);
        assert_eq!(w.host.heap_bytes(), heap_before);
        // The real allocator agrees: not one byte is kept from all those commands.
        assert_eq!(live_bytes(), live_before);
        assert_eq!(w.host.snapshot(), before);
    }
}

#[test]
fn a_p1_guest_has_no_commands_at_all() {
    let mut w = World::new();
    let p1 = w.bystanders[1];
    let before = w.host.snapshot();
    for rev in REVS {
        assert_eq!(w.host.vcap(p1, rev), Ok(0));
        for command in [
            alloc_cmd(rev, false),
            alloc_cmd(rev, true),
            free_cmd(rev, 1),
            free_cmd(rev, 7),
            0,
            u64::MAX,
        ] {
            assert_eq!(
                w.host.vcmd(p1, rev, command),
                Ok(vcrsp::undefined_command(rev))
            );
        }
    }
    assert_eq!(w.host.snapshot(), before);
}

#[test]
fn host_memory_stays_under_the_bound_whatever_guests_send() {
    // Many attackers, each flooding ALLOC and FREE: the host's heap is its fixed part
    // plus at most guest_bound() per guest, measured by the host and by the allocator.
    let layout = PasidLayout::new(20, 1..LOCAL_END, SHARED).unwrap();
    let live_start = live_bytes();
    let mut host = Host::new(layout, Platform::P2).unwrap();
    let fixed = host.heap_bytes();
    let guests = if cfg!(miri) { 2 } else { 16 };
    let ids: Vec<GuestId> = (0..guests)
        .map(|_| host.create_guest(GuestConfig::p2(u32::MAX)).unwrap())
        .collect();
    let rev = VtdRevision::V3_3;
    for round in 0..2 {
        for &g in &ids {
            for i in 0..LOCAL_END + 8 {
                let _ = host.vcmd(g, rev, alloc_cmd(rev, i % 2 == 0));
            }
            for p in (0..LOCAL_END).step_by(3) {
                let _ = host.vcmd(g, rev, free_cmd(rev, p.into()));
            }
        }
        // Nobody confirms teardowns here: the draining lists fill up to the range.
        let bound = fixed + guests * (guest_bound(0) + draining_bound());
        let heap = host.heap_bytes();
        assert!(heap <= bound, "round {round}: {heap} > {bound}");
        let live = (live_bytes() - live_start) as usize;
        // The allocator also sees Vec headers and slot bookkeeping: allow 2x.
        assert!(
            live <= 2 * bound,
            "round {round}: allocator {live} > {}",
            2 * bound
        );
    }
    drop((host, ids));
    assert_eq!(live_bytes(), live_start, "a dropped host frees everything");
}
