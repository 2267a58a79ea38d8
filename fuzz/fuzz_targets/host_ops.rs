//! Arbitrary sequences of host operations, VCMD register writes included, checked step
//! by step against the reference model of the core's property test: equal results and
//! errors, an unchanged host after every error, equal snapshots after every step. Every
//! guest keeps a translation change log, replayed after every step into a table that
//! must equal the guest's.
#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use pasid_core::vcmd::VtdRevision;
use pasid_core::{DeviceKind, GuestId, PasidKind, PasidLayout, Platform};

#[path = "../../core/tests/support/model.rs"]
#[allow(dead_code)]
mod model;

use model::{Checker, Op};

/// Long enough to fill small ranges and quotas, short enough for thousands of runs/s.
const MAX_OPS: usize = 300;

#[derive(Arbitrary, Debug)]
enum LayoutChoice {
    /// The property test's small layouts (exhaustion and collisions happen often).
    Small(u8),
    /// The design's layout: 1..4096 local, 4096..2^19 shared.
    Design,
    /// Any layout the host accepts, with ranges of at most 4096 PASIDs (the model is
    /// linear in the range size).
    Custom {
        width: u8,
        local_start: u32,
        local_len: u16,
        shared_start: u32,
        shared_len: u16,
    },
}

/// A PASID operand: mostly near the guest range (in, just outside, and 0), or any u32.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Pasid {
    Near(u8),
    Raw(u32),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Command {
    Alloc {
        local: bool,
    },
    Free(Pasid),
    /// Any register value: undefined codes, reserved bits, bad operands.
    Raw(u64),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum FuzzOp {
    Create {
        p2: bool,
        quota: u8,
    },
    Destroy {
        guest: u8,
    },
    Attach {
        guest: u8,
        rid: u8,
        shared_wq: bool,
    },
    Detach {
        guest: u8,
        rid: u8,
    },
    Alloc {
        guest: u8,
        shared: bool,
    },
    Free {
        guest: u8,
        pasid: Pasid,
    },
    Translate {
        guest: u8,
        pasid: Pasid,
    },
    Bind {
        guest: u8,
        pasid: Pasid,
        rid: u8,
    },
    Unbind {
        guest: u8,
        pasid: Pasid,
        rid: u8,
    },
    Record {
        guest: u8,
        rid: u8,
        pasid: Pasid,
    },
    Release {
        guest: u8,
        rid: u8,
        pasid: Pasid,
    },
    Vcap {
        guest: u8,
        v3_0: bool,
    },
    Vcmd {
        guest: u8,
        v3_0: bool,
        command: Command,
    },
    Reimport {
        guest: u8,
    },
    DetachUse {
        guest: u8,
        rid: u8,
        shared_wq: bool,
    },
    BindUse {
        guest: u8,
        pasid: Pasid,
        rid: u8,
        shared_wq: bool,
    },
    /// Confirms the teardown of one draining PASID (or hands it in twice).
    Complete {
        pick: u8,
        twice: bool,
    },
    CompleteMadeUp {
        guest: u8,
        pasid: Pasid,
        hpasid: Option<u16>,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    layout: LayoutChoice,
    host_p2: bool,
    ops: Vec<FuzzOp>,
}

fn layout(choice: &LayoutChoice) -> Option<PasidLayout> {
    match *choice {
        LayoutChoice::Small(i) => Some(match i % 3 {
            0 => PasidLayout::new(5, 1..9, 16..24).unwrap(),
            1 => PasidLayout::new(5, 1..12, 12..15).unwrap(),
            _ => PasidLayout::new(5, 3..7, 20..32).unwrap(),
        }),
        LayoutChoice::Design => Some(PasidLayout::new(20, 1..4096, 4096..1 << 19).unwrap()),
        LayoutChoice::Custom {
            width,
            local_start,
            local_len,
            shared_start,
            shared_len,
        } => {
            let span = |start: u32, len: u16| {
                let start = start % (1 << 20);
                start..start.saturating_add(u32::from(len % 4097))
            };
            // Invalid layouts are refused with an error (checked by the unit tests);
            // here they only must not panic.
            PasidLayout::new(
                width % 24,
                span(local_start, local_len),
                span(shared_start, shared_len),
            )
            .ok()
        }
    }
}

fn pasid(p: Pasid, layout: &PasidLayout) -> u32 {
    match p {
        Pasid::Near(x) => {
            let local = layout.local();
            let len = local.end - local.start;
            // local.start - 2 ..= local.end + 1, plus 0 now and then.
            if x == 255 {
                0
            } else {
                (local.start + u32::from(x) % (len + 4)).saturating_sub(2)
            }
        }
        Pasid::Raw(x) => x,
    }
}

fn rev(v3_0: bool) -> VtdRevision {
    if v3_0 {
        VtdRevision::V3_0
    } else {
        VtdRevision::V3_3
    }
}

fn op(f: FuzzOp, l: &PasidLayout) -> Op {
    let g = |x: u8| usize::from(x);
    let r = |x: u8| u16::from(x % 8);
    let dkind = |wq: bool| {
        if wq {
            DeviceKind::SharedWq
        } else {
            DeviceKind::Dedicated
        }
    };
    match f {
        FuzzOp::Create { p2, quota } => Op::Create {
            platform: if p2 { Platform::P2 } else { Platform::P1 },
            quota: u32::from(quota % 16),
        },
        FuzzOp::Destroy { guest } => Op::Destroy { guest: g(guest) },
        FuzzOp::Attach {
            guest,
            rid,
            shared_wq,
        } => Op::Attach {
            guest: g(guest),
            rid: r(rid),
            kind: dkind(shared_wq),
        },
        FuzzOp::Detach { guest, rid } => Op::Detach {
            guest: g(guest),
            rid: r(rid),
        },
        FuzzOp::Alloc { guest, shared } => Op::Alloc {
            guest: g(guest),
            kind: if shared {
                PasidKind::Shared
            } else {
                PasidKind::Local
            },
        },
        FuzzOp::Free { guest, pasid: p } => Op::Free {
            guest: g(guest),
            pasid: pasid(p, l),
        },
        FuzzOp::Translate { guest, pasid: p } => Op::Translate {
            guest: g(guest),
            pasid: pasid(p, l),
        },
        FuzzOp::Bind {
            guest,
            pasid: p,
            rid,
        } => Op::Bind {
            guest: g(guest),
            pasid: pasid(p, l),
            rid: r(rid),
        },
        FuzzOp::Unbind {
            guest,
            pasid: p,
            rid,
        } => Op::Unbind {
            guest: g(guest),
            pasid: pasid(p, l),
            rid: r(rid),
        },
        FuzzOp::Record {
            guest,
            rid,
            pasid: p,
        } => Op::Record {
            guest: g(guest),
            rid: r(rid),
            pasid: pasid(p, l),
        },
        FuzzOp::Release {
            guest,
            rid,
            pasid: p,
        } => Op::Release {
            guest: g(guest),
            rid: r(rid),
            pasid: pasid(p, l),
        },
        FuzzOp::Vcap { guest, v3_0 } => Op::Vcap {
            guest: g(guest),
            rev: rev(v3_0),
        },
        FuzzOp::Vcmd {
            guest,
            v3_0,
            command,
        } => {
            let rev = rev(v3_0);
            let shift = if v3_0 { 8 } else { 16 };
            Op::Vcmd {
                guest: g(guest),
                rev,
                command: match command {
                    Command::Alloc { local } => 1 | (u64::from(local) << shift),
                    Command::Free(p) => 2 | (u64::from(pasid(p, l)) << shift),
                    Command::Raw(x) => x,
                },
            }
        }
        FuzzOp::Reimport { guest } => Op::Reimport { guest: g(guest) },
        FuzzOp::DetachUse {
            guest,
            rid,
            shared_wq,
        } => Op::DetachUse {
            guest: g(guest),
            rid: r(rid),
            kind: dkind(shared_wq),
        },
        FuzzOp::BindUse {
            guest,
            pasid: p,
            rid,
            shared_wq,
        } => Op::BindUse {
            guest: g(guest),
            pasid: pasid(p, l),
            rid: r(rid),
            kind: dkind(shared_wq),
        },
        FuzzOp::Complete { pick, twice } => Op::Complete {
            pick: usize::from(pick),
            twice,
        },
        FuzzOp::CompleteMadeUp {
            guest,
            pasid: p,
            hpasid,
        } => Op::CompleteMadeUp {
            guest: g(guest),
            pasid: pasid(p, l),
            // Near the shared range's start, where real host PASIDs are.
            hpasid: hpasid.map(|h| l.shared().start + u32::from(h % 64)),
        },
    }
}

fuzz_target!(|input: Input| {
    let Some(layout) = layout(&input.layout) else {
        return;
    };
    let platform = if input.host_p2 {
        Platform::P2
    } else {
        Platform::P1
    };
    let mut checker = Checker::new(layout.clone(), platform);
    let mut kvm: BTreeMap<GuestId, BTreeMap<u32, u32>> = BTreeMap::new();
    for &f in input.ops.iter().take(MAX_OPS) {
        let o = op(f, &layout);
        if let Err(disagreement) = checker.step(&o) {
            panic!("{disagreement}");
        }
        replay_changes(&mut checker.host, &mut kvm, &o);
    }
});

/// Every guest keeps a change log (the model's results, checked above, show it changes
/// no call's outcome); after every step the log is drained into that guest's replayed
/// table, which must equal the guest's table.
fn replay_changes(
    host: &mut pasid_core::Host,
    kvm: &mut BTreeMap<GuestId, BTreeMap<u32, u32>>,
    op: &Op,
) {
    let live: Vec<GuestId> = host.guests().collect();
    kvm.retain(|g, _| live.contains(g));
    for g in live {
        if host.pending_translation_changes(g).unwrap().is_none() {
            // One step changes at most one entry of a guest, and the log is drained
            // after each: room for the seed and a few more.
            let seed = host.translation_entries(g).unwrap().count() as u32;
            host.enable_translation_changes(g, seed + 4).unwrap();
            kvm.insert(g, BTreeMap::new());
        }
        let mut out = Vec::new();
        host.drain_translation_changes(g, &mut out).unwrap();
        let table = kvm.get_mut(&g).unwrap();
        for c in out {
            match c.hpasid {
                Some(h) => table.insert(c.gpasid, h),
                None => table.remove(&c.gpasid),
            };
        }
        let want: BTreeMap<u32, u32> = host
            .translation_entries(g)
            .unwrap()
            .map(|c| (c.gpasid, c.hpasid.unwrap()))
            .collect();
        assert_eq!(
            *table, want,
            "after {op:?}: the replayed change log of {g:?}"
        );
    }
}
