//! The translation change stream and single-entry page updates.
//!
//! Property: random operation sequences run on a host whose guests all keep a change
//! log. After every step the test drains each log and applies it twice: to a plain map
//! (which must equal the guest's table), and to simulated pages through
//! `hwtable::plan_update`, one store at a time. Between any two stores, the CPU walk of
//! every gPASID gives either a fault or a host PASID the guest holds or drains; after
//! the last, every walk agrees with a fresh export of the guest's pages. The operations
//! are every call that can change a table or must not: create, alloc and free (also as
//! the guest's VCMD ALLOC/FREE, both VT-d revisions), attach, bind, unbind, detach,
//! teardown confirmation, destroy, and export + destroy + import.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use pasid_core::hwtable::{
    self, walk, Directory, PageBuf, Store, TableEntry, TablePage, PAGE_SIZE,
};
use pasid_core::vcmd::{VtdRevision, ALLOC_OPERAND_LOCAL, CMD_ALLOC, CMD_FREE};
use pasid_core::{
    DeviceKind, Error, GuestConfig, GuestId, Host, PasidKind, PasidLayout, Platform, Rid,
    TranslationChange,
};
use proptest::prelude::*;
use support::model::{guest_index, run, Op};

/// A page in the simulation, 8-byte aligned as the C layer's pages are.
#[derive(Clone)]
struct Page(Box<[u64; PAGE_SIZE / 8]>);

impl Page {
    fn zeroed() -> Self {
        Page(Box::new([0; PAGE_SIZE / 8]))
    }
    fn bytes(&self) -> &[u8] {
        // Safe view: u64 -> bytes through a copy would lose the aliasing; use the
        // little-endian layout of the words instead.
        bytemuck_view(&self.0)
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        bytemuck_view_mut(&mut self.0)
    }
}

fn bytemuck_view(words: &[u64; PAGE_SIZE / 8]) -> &[u8] {
    // A [u64; 512] is 4096 initialised bytes; tests may use unsafe (the crate may not).
    unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), PAGE_SIZE) }
}

fn bytemuck_view_mut(words: &mut [u64; PAGE_SIZE / 8]) -> &mut [u8] {
    unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), PAGE_SIZE) }
}

/// What a VMM keeps for one guest that runs: its pages (as the CPU sees them), the
/// tables it linked, and a plain replay of the change stream.
struct Vmm {
    low: u64,
    high: u64,
    pages: HashMap<u64, Page>,
    linked: BTreeMap<u32, u64>,
    next_phys: u64,
    replay: BTreeMap<u32, u32>,
}

impl Vmm {
    fn new(base: u64) -> Self {
        let mut pages = HashMap::new();
        pages.insert(base, Page::zeroed());
        pages.insert(base + 0x1000, Page::zeroed());
        Vmm {
            low: base,
            high: base + 0x1000,
            pages,
            linked: BTreeMap::new(),
            next_phys: base + 0x2000,
            replay: BTreeMap::new(),
        }
    }

    fn walk(&self, gpasid: u32) -> Option<u32> {
        walk(self.low, self.high, gpasid, |phys| {
            self.pages.get(&phys).map(|p| p.bytes())
        })
        .ok()
    }

    /// Applies one change store by store; `check` runs after every store.
    fn apply(
        &mut self,
        change: TranslationChange,
        mut check: impl FnMut(&Vmm) -> Result<(), String>,
    ) -> Result<(), String> {
        match change.hpasid {
            Some(h) => self.replay.insert(change.gpasid, h),
            None => self.replay.remove(&change.gpasid),
        };
        let table = change.gpasid >> 10;
        let (previous, link) = match self.linked.get(&table) {
            Some(&phys) => {
                let at = (change.gpasid & 0x3ff) as usize * 4;
                let b = &self.pages[&phys].bytes()[at..at + 4];
                (TableEntry(u32::from_le_bytes(b.try_into().unwrap())), None)
            }
            None => {
                let phys = self.next_phys;
                self.next_phys += 0x1000;
                self.pages.insert(phys, Page::zeroed());
                self.linked.insert(table, phys);
                (TableEntry::INVALID, Some(phys))
            }
        };
        let table_phys = self.linked[&table];
        let update = hwtable::plan_update(change, previous, link).map_err(|e| e.to_string())?;
        for store in update.stores() {
            let phys = match store {
                Store::Table { .. } => table_phys,
                Store::Directory {
                    directory: Directory::Low,
                    ..
                } => self.low,
                Store::Directory {
                    directory: Directory::High,
                    ..
                } => self.high,
            };
            store
                .write(self.pages.get_mut(&phys).unwrap().bytes_mut())
                .map_err(|e| e.to_string())?;
            check(self)?;
        }
        Ok(())
    }
}

/// Host PASIDs a walk of `guest`'s pages may give: held or draining, of this guest.
fn allowed(host: &Host, guest: GuestId) -> BTreeSet<u32> {
    let held = host
        .translation_entries(guest)
        .map(|it| it.filter_map(|c| c.hpasid).collect::<Vec<_>>())
        .unwrap_or_default();
    held.into_iter()
        .chain(
            host.draining()
                .filter(|d| d.guest == guest)
                .filter_map(|d| d.hpasid),
        )
        .collect()
}

/// Walks of a fresh export of the guest's pages.
fn exported_walks(host: &Host, guest: GuestId, gpasids: &[u32]) -> Vec<Option<u32>> {
    let tables: Vec<u32> = host.translation_tables(guest).unwrap().collect();
    let (mut low, mut high) = (Page::zeroed(), Page::zeroed());
    let mut pages: Vec<Page> = tables.iter().map(|_| Page::zeroed()).collect();
    {
        let mut tp: Vec<TablePage> = tables
            .iter()
            .zip(pages.iter_mut())
            .enumerate()
            .map(|(i, (&table, p))| TablePage {
                table,
                page: PageBuf {
                    phys: 0x100_0000 + 0x1000 * i as u64,
                    bytes: p.bytes_mut(),
                },
            })
            .collect();
        host.export_translation(
            guest,
            PageBuf {
                phys: 0x10_0000,
                bytes: low.bytes_mut(),
            },
            PageBuf {
                phys: 0x10_1000,
                bytes: high.bytes_mut(),
            },
            &mut tp,
        )
        .unwrap();
    }
    gpasids
        .iter()
        .map(|&g| {
            walk(0x10_0000, 0x10_1000, g, |phys| match phys {
                0x10_0000 => Some(low.bytes()),
                0x10_1000 => Some(high.bytes()),
                p => pages
                    .get(((p - 0x100_0000) / 0x1000) as usize)
                    .map(|p| p.bytes()),
            })
            .ok()
        })
        .collect()
}

const LOG: u32 = 64;

struct Harness {
    host: Host,
    ids: Vec<GuestId>,
    vmms: BTreeMap<GuestId, Vmm>,
    gpasids: Vec<u32>,
}

impl Harness {
    fn new(layout: PasidLayout, platform: Platform) -> Self {
        let l = layout.local();
        // The guest range, its neighbours and PASID 0.
        let mut gpasids: Vec<u32> = (l.start.saturating_sub(1)..=l.end).collect();
        gpasids.push(0);
        Harness {
            host: Host::new(layout, platform).unwrap(),
            ids: vec![GuestId(0xdead_0000)],
            vmms: BTreeMap::new(),
            gpasids,
        }
    }

    fn drain_and_check(
        &mut self,
        guest: GuestId,
        changes: Vec<TranslationChange>,
    ) -> Result<(), String> {
        let allow = allowed(&self.host, guest);
        let gpasids = self.gpasids.clone();
        let vmm = self.vmms.get_mut(&guest).unwrap();
        for c in changes {
            vmm.apply(c, |v| {
                for &g in &gpasids {
                    if let Some(h) = v.walk(g) {
                        if !allow.contains(&h) {
                            return Err(format!(
                                "between stores of {c:?}: {g} walks to {h}, not the guest's"
                            ));
                        }
                    }
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    fn step(&mut self, op: &Op) -> Result<(), String> {
        let id = self.ids[guest_index(op) % self.ids.len()];
        let mut created = None;
        match op {
            Op::Destroy { .. } | Op::Reimport { .. } => {
                let mut out = Vec::new();
                let blob = self.host.export_guest(id);
                let map: Vec<_> = self
                    .host
                    .guest_snapshot(id)
                    .map(|s| s.devices.iter().map(|d| (d.rid, d.rid)).collect())
                    .unwrap_or_default();
                if self
                    .host
                    .destroy_guest_reporting_changes(id, &mut out)
                    .is_err()
                {
                    return Ok(());
                }
                self.drain_and_check(id, out)?;
                let vmm = self.vmms.remove(&id).unwrap();
                if !vmm.replay.is_empty() || self.gpasids.iter().any(|&g| vmm.walk(g).is_some()) {
                    return Err(format!("destroyed {id:?} still translates"));
                }
                if matches!(op, Op::Reimport { .. }) {
                    let mut map: Vec<_> = map;
                    map.dedup();
                    let gone: Vec<_> = self.host.draining().filter(|d| d.guest == id).collect();
                    self.host.complete_teardown(&gone).unwrap();
                    let opts = pasid_core::migrate::ImportOptions {
                        change_log: Some(LOG),
                        ..Default::default()
                    };
                    let (new, _) = self
                        .host
                        .import_guest_with(&blob.unwrap(), &map, &opts)
                        .unwrap();
                    created = Some(new);
                }
            }
            _ => {
                if let Ok((_, Some(new))) = run(&mut self.host, op, id) {
                    self.host.enable_translation_changes(new, LOG).unwrap();
                    created = Some(new);
                }
            }
        }
        if let Some(new) = created {
            self.ids.push(new);
            self.vmms
                .insert(new, Vmm::new(0x1_0000_0000 * self.ids.len() as u64));
        }
        let live: Vec<GuestId> = self.host.guests().collect();
        for g in live {
            let mut out = Vec::new();
            self.host.drain_translation_changes(g, &mut out).unwrap();
            self.drain_and_check(g, out)?;
            let vmm = &self.vmms[&g];
            let want: BTreeMap<u32, u32> = self
                .host
                .translation_entries(g)
                .unwrap()
                .map(|c| (c.gpasid, c.hpasid.unwrap()))
                .collect();
            if vmm.replay != want {
                return Err(format!(
                    "after {op:?}: replay {:?}, table {want:?}",
                    vmm.replay
                ));
            }
            let walks: Vec<_> = self.gpasids.iter().map(|&p| vmm.walk(p)).collect();
            if walks != exported_walks(&self.host, g, &self.gpasids) {
                return Err(format!(
                    "after {op:?}: pages of {g:?} differ from a fresh export"
                ));
            }
        }
        Ok(())
    }
}

fn layouts() -> impl Strategy<Value = PasidLayout> {
    prop_oneof![
        Just(PasidLayout::new(5, 1..9, 16..24).unwrap()),
        Just(PasidLayout::new(5, 3..7, 20..32).unwrap()),
        // Across two tables.
        Just(PasidLayout::new(12, 1018..1030, 2048..2060).unwrap()),
        // Across the two directories.
        Just(PasidLayout::new(20, (1 << 19) - 6..(1 << 19) + 6, 1..12).unwrap()),
    ]
}

fn ops(layout: &PasidLayout) -> impl Strategy<Value = Vec<Op>> {
    let base = layout.local().start.saturating_sub(1);
    let guest = 0usize..5;
    let pasid = (0u32..16).prop_map(move |p| base + p);
    let rid = 0u16..3;
    let dkind = prop_oneof![Just(DeviceKind::Dedicated), Just(DeviceKind::SharedWq)];
    let pkind = prop_oneof![Just(PasidKind::Local), Just(PasidKind::Shared)];
    let platform = prop_oneof![Just(Platform::P1), Just(Platform::P2)];
    let rev = prop_oneof![Just(VtdRevision::V3_0), Just(VtdRevision::V3_3)];
    let op = prop_oneof![
        2 => (platform, 0u32..8).prop_map(|(platform, quota)| Op::Create { platform, quota }),
        1 => guest.clone().prop_map(|guest| Op::Destroy { guest }),
        2 => (guest.clone(), rid.clone(), dkind.clone()).prop_map(|(guest, rid, kind)| Op::Attach { guest, rid, kind }),
        8 => (guest.clone(), pkind).prop_map(|(guest, kind)| Op::Alloc { guest, kind }),
        4 => (guest.clone(), pasid.clone()).prop_map(|(guest, pasid)| Op::Free { guest, pasid }),
        2 => (guest.clone(), pasid.clone(), rid.clone()).prop_map(|(guest, pasid, rid)| Op::Bind { guest, pasid, rid }),
        1 => (guest.clone(), pasid.clone(), rid.clone(), dkind.clone()).prop_map(|(guest, pasid, rid, kind)| Op::BindUse { guest, pasid, rid, kind }),
        1 => (guest.clone(), pasid.clone(), rid.clone()).prop_map(|(guest, pasid, rid)| Op::Unbind { guest, pasid, rid }),
        1 => (guest.clone(), rid.clone()).prop_map(|(guest, rid)| Op::Detach { guest, rid }),
        1 => (guest.clone(), rid, dkind).prop_map(|(guest, rid, kind)| Op::DetachUse { guest, rid, kind }),
        4 => (0usize..64, Just(false)).prop_map(|(pick, twice)| Op::Complete { pick, twice }),
        1 => guest.clone().prop_map(|guest| Op::Reimport { guest }),
        // The guest's own ALLOC (shared or local) and FREE through VCMD, both layouts.
        3 => (guest, rev, prop_oneof![
            Just((CMD_ALLOC, 0)),
            Just((CMD_ALLOC, ALLOC_OPERAND_LOCAL)),
            pasid.prop_map(|p| (CMD_FREE, u64::from(p))),
        ])
            .prop_map(|(guest, rev, (code, operand))| Op::Vcmd { guest, rev, command: rev.command(code, operand) }),
    ];
    prop::collection::vec(op, 1..if cfg!(miri) { 20 } else { 80 })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: if cfg!(miri) { 2 } else { 128 }, ..ProptestConfig::default() })]

    #[test]
    fn replayed_changes_equal_a_fresh_export_and_no_store_exposes_a_foreign_pasid(
        (layout, ops) in layouts().prop_flat_map(|l| (Just(l.clone()), ops(&l))),
    ) {
        let mut h = Harness::new(layout, Platform::P2);
        for op in &ops {
            if let Err(e) = h.step(op) {
                prop_assert!(false, "{}", e);
            }
        }
    }
}

#[test]
fn a_full_log_refuses_the_change_and_changes_nothing() {
    let mut host = Host::new(
        PasidLayout::new(20, 1..4096, 4096..8192).unwrap(),
        Platform::P2,
    )
    .unwrap();
    let g = host.create_guest(GuestConfig::p2(8)).unwrap();
    let first = host.alloc(g, PasidKind::Shared).unwrap();
    // The seed (one entry) fills a log of one.
    host.enable_translation_changes(g, 1).unwrap();
    assert_eq!(host.pending_translation_changes(g), Ok(Some(1)));
    let before = host.snapshot();
    assert_eq!(
        host.alloc(g, PasidKind::Shared),
        Err(Error::ChangeLogFull { capacity: 1 })
    );
    assert_eq!(
        host.free(g, first).map(|_| ()),
        Err(Error::ChangeLogFull { capacity: 1 })
    );
    assert_eq!(host.snapshot(), before);
    // Local PASIDs change no translation, so they are not held back.
    let local = host.alloc(g, PasidKind::Local).unwrap();
    host.free(g, local).unwrap();
    // A seed larger than the capacity is refused.
    assert_eq!(
        host.enable_translation_changes(g, 0),
        Err(Error::ChangeLogFull { capacity: 0 })
    );
    // Drained into a small buffer, in order, the rest stays.
    let mut buf = [TranslationChange {
        gpasid: 0,
        hpasid: None,
    }; 4];
    assert_eq!(host.drain_translation_changes_into(g, &mut buf), Ok(1));
    assert_eq!(
        buf[0],
        TranslationChange {
            gpasid: first,
            hpasid: Some(4096)
        }
    );
    host.free(g, first).unwrap();
    let mut out = Vec::new();
    assert_eq!(host.drain_translation_changes(g, &mut out), Ok(1));
    assert_eq!(
        out,
        [TranslationChange {
            gpasid: first,
            hpasid: None
        }]
    );
    // Off: draining is refused, allocation unaffected.
    host.disable_translation_changes(g).unwrap();
    assert_eq!(host.pending_translation_changes(g), Ok(None));
    assert!(matches!(
        host.drain_translation_changes(g, &mut out),
        Err(Error::NotSupported { .. })
    ));
    host.alloc(g, PasidKind::Shared).unwrap();
}

#[test]
fn a_repoint_invalidates_first_and_a_new_table_is_linked_last() {
    use hwtable::plan_update;
    let change = TranslationChange {
        gpasid: 0x405,
        hpasid: Some(0x9000),
    };
    // Re-pointing a valid entry: invalid, then the new one.
    let u = plan_update(change, TableEntry::valid(0x8000), None).unwrap();
    let s: Vec<Store> = u.stores().collect();
    assert_eq!(
        s,
        [
            Store::Table {
                table: 1,
                offset: 0x14,
                entry: TableEntry::INVALID
            },
            Store::Table {
                table: 1,
                offset: 0x14,
                entry: TableEntry::valid(0x9000)
            },
        ]
    );
    // A new table: the entry, then the directory entry (table 1 is entry 1 of low).
    let u = plan_update(change, TableEntry::INVALID, Some(0x5000)).unwrap();
    let s: Vec<Store> = u.stores().collect();
    assert!(u.links_table());
    assert_eq!(s.len(), 2);
    assert!(matches!(
        s[1],
        Store::Directory {
            directory: Directory::Low,
            offset: 8,
            ..
        }
    ));
    // An unmap is one store; so is a map over an invalid entry.
    let unmap = TranslationChange {
        gpasid: 0x405,
        hpasid: None,
    };
    assert_eq!(
        plan_update(unmap, TableEntry::valid(1), None)
            .unwrap()
            .stores()
            .count(),
        1
    );
    assert_eq!(
        plan_update(change, TableEntry::INVALID, None)
            .unwrap()
            .stores()
            .count(),
        1
    );
    // Bad input is refused.
    let big = TranslationChange {
        gpasid: 1 << 20,
        hpasid: None,
    };
    assert!(plan_update(big, TableEntry::INVALID, None).is_err());
    assert_eq!(
        plan_update(change, TableEntry::INVALID, Some(0x5001)),
        Err(Error::UnalignedPage { phys: 0x5001 })
    );
    // Only the entry's window changes; a short page is refused.
    let mut page = Page::zeroed();
    let u = plan_update(change, TableEntry::INVALID, None).unwrap();
    u.apply(page.bytes_mut(), None).unwrap();
    let changed: Vec<usize> = page
        .bytes()
        .iter()
        .enumerate()
        .filter(|(_, &b)| b != 0)
        .map(|(i, _)| i)
        .collect();
    assert!(
        changed.iter().all(|&i| (0x14..0x18).contains(&i)),
        "{changed:?}"
    );
    assert_eq!(
        u.apply(&mut [0u8; 16], None),
        Err(Error::PageSize { len: 16 })
    );
    let linking = plan_update(change, TableEntry::INVALID, Some(0x5000)).unwrap();
    assert_eq!(
        linking.apply(page.bytes_mut(), None),
        Err(Error::MissingTablePage { table: 1 })
    );
}

/// Rough timing of the VM-exit path with the log off and on: shared alloc + free,
/// timed in batches of 32 with the teardowns confirmed between batches (untimed); the
/// criterion benches are the real measure. Run with
/// `cargo test --release -p pasid-core --test changes -- --ignored --nocapture`.
#[test]
#[ignore]
fn timing_alloc_free_with_and_without_the_log() {
    for log in [false, true, false, true] {
        let layout = PasidLayout::new(20, 1..4096, 4096..1 << 19).unwrap();
        let mut host = Host::new(layout, Platform::P2).unwrap();
        let g = host.create_guest(GuestConfig::p2(64)).unwrap();
        if log {
            host.enable_translation_changes(g, 64).unwrap();
        }
        let (mut out, mut done, mut ps) = (Vec::with_capacity(64), Vec::with_capacity(32), [0; 32]);
        let mut best = std::time::Duration::MAX;
        for _ in 0..20_000 {
            let t = std::time::Instant::now();
            for p in ps.iter_mut() {
                *p = host.alloc(g, PasidKind::Shared).unwrap();
            }
            for &p in &ps {
                done.push(host.free(g, p).unwrap());
            }
            best = best.min(t.elapsed());
            host.complete_teardown(&done).unwrap();
            done.clear();
            if log {
                out.clear();
                host.drain_translation_changes(g, &mut out).unwrap();
            }
        }
        let state = if log { "on" } else { "off" };
        eprintln!(
            "log {state}: {:?} per shared alloc+free (best batch)",
            best / 32
        );
    }
}

#[test]
fn an_import_can_start_the_log_with_the_new_table() {
    let layout = PasidLayout::new(20, 1..4096, 4096..8192).unwrap();
    let mut src = Host::new(layout.clone(), Platform::P2).unwrap();
    let g = src.create_guest(GuestConfig::p2(8)).unwrap();
    for _ in 0..3 {
        src.alloc(g, PasidKind::Shared).unwrap();
    }
    src.alloc(g, PasidKind::Local).unwrap();
    let blob = src.export_guest(g).unwrap();
    let mut dst = Host::new(layout, Platform::P2).unwrap();
    let opts = |n| pasid_core::migrate::ImportOptions {
        change_log: Some(n),
        ..Default::default()
    };
    // Too small for the table: refused, the destination unchanged.
    let before = dst.snapshot();
    assert_eq!(
        dst.import_guest_with::<(Rid, Rid)>(&blob, &[], &opts(2))
            .map(|_| ()),
        Err(Error::ChangeLogFull { capacity: 2 })
    );
    assert_eq!(dst.snapshot(), before);
    assert_eq!(dst.shared_in_use(), 0);
    // Big enough: the first changes are the new table, in gPASID order.
    let (g2, report) = dst
        .import_guest_with::<(Rid, Rid)>(&blob, &[], &opts(8))
        .unwrap();
    let mut out = Vec::new();
    dst.drain_translation_changes(g2, &mut out).unwrap();
    let want: Vec<TranslationChange> = report
        .shared
        .iter()
        .map(|s| TranslationChange {
            gpasid: s.gpasid,
            hpasid: Some(s.destination_hpasid),
        })
        .collect();
    assert_eq!(out, want);
    assert_eq!(out.len(), 3);
    // Destroying it reports every entry going invalid.
    let mut gone = Vec::new();
    dst.destroy_guest_reporting_changes(g2, &mut gone).unwrap();
    assert!(gone.iter().all(|c| c.hpasid.is_none()) && gone.len() == 3);
    // A guest that is not there: refused, `out` untouched.
    assert_eq!(
        dst.destroy_guest_reporting_changes(g2, &mut gone)
            .map(|_| ()),
        Err(Error::NoSuchGuest { guest: g2 })
    );
    assert_eq!(gone.len(), 3);
}

#[test]
fn a_teardown_is_refused_while_its_invalidation_waits_in_the_log() {
    let layout = PasidLayout::new(20, 1..4096, 4096..8192).unwrap();
    let mut host = Host::new(layout, Platform::P2).unwrap();
    let g = host.create_guest(GuestConfig::p2(8)).unwrap();
    host.enable_translation_changes(g, 8).unwrap();
    let p = host.alloc(g, PasidKind::Shared).unwrap();
    let local = host.alloc(g, PasidKind::Local).unwrap();
    let d = host.free(g, p).unwrap();
    let l = host.free(g, local).unwrap();
    let before = host.snapshot();
    assert_eq!(
        host.complete_teardown(&[l, d]),
        Err(Error::ChangePending { pasid: p })
    );
    assert_eq!(host.snapshot(), before);
    // A local gPASID has no entry: nothing to wait for.
    host.complete_teardown(&[l]).unwrap();
    let mut out = Vec::new();
    host.drain_translation_changes(g, &mut out).unwrap();
    assert_eq!(
        out.last(),
        Some(&TranslationChange {
            gpasid: p,
            hpasid: None
        })
    );
    host.complete_teardown(&[d]).unwrap();
    assert_eq!(pasid_core::ErrorCode::ChangePending as u32, 59);
}
