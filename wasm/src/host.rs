//! The `Host` class: guests, devices, PASIDs and snapshots, one core call each.

use pasid_core::IdBitmap;
use pasid_core::{DeviceKind, Draining, GuestConfig, GuestId, Host, PasidLayout, Platform};
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

use crate::args::{self, ArgError};
use crate::errors::{to_js, Out};
use crate::source::WasmSource;

/// What `new Host(config)` takes: `{ platform: 'p1' | 'p2', width, local: [start, end],
/// shared: [start, end] }`, ranges half-open.
#[derive(Debug, Clone, Deserialize)]
pub struct HostConfig {
    /// `p1` or `p2`.
    pub platform: String,
    /// PASID width in bits (1..=20).
    pub width: u8,
    /// The local (guest) range, `[start, end)`.
    pub local: [u32; 2],
    /// The shared range, `[start, end)`.
    pub shared: [u32; 2],
}

/// A host: `new Host({platform, width, local, shared})` in JS.
#[wasm_bindgen(js_name = Host)]
#[derive(Clone)]
pub struct WasmHost {
    pub(crate) host: Host<WasmSource>,
}

/// One user of a RID, as `ridUsers` lists it: `{ guest, kind: "Dedicated" | "SharedWq" }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RidUser {
    /// The guest.
    pub guest: GuestId,
    /// Its use of the RID.
    pub kind: DeviceKind,
}

const MAX_U32: u32 = u32::MAX;

pub(crate) fn guest_id(guest: f64) -> Out<GuestId> {
    Ok(GuestId(args::int("guest", guest, MAX_U32)?))
}

pub(crate) fn pasid(value: f64) -> Out<u32> {
    Ok(args::int("PASID", value, MAX_U32)?)
}

impl WasmHost {
    /// A host from an already-read config (what the JS constructor does after reading).
    pub fn from_config(config: &HostConfig) -> Out<WasmHost> {
        let layout = PasidLayout::new(
            config.width,
            config.local[0]..config.local[1],
            config.shared[0]..config.shared[1],
        )?;
        let source = WasmSource::Own(IdBitmap::new(layout.shared())?);
        WasmHost::with_source(layout, args::platform(&config.platform)?, source)
    }

    /// A host over a given source (its own bitmap, or a machine's).
    pub(crate) fn with_source(
        layout: PasidLayout,
        platform: Platform,
        source: WasmSource,
    ) -> Out<WasmHost> {
        Ok(WasmHost {
            host: Host::with_source(layout, platform, source)?,
        })
    }

    /// The core host, for Rust callers and tests.
    pub fn core(&self) -> &Host<WasmSource> {
        &self.host
    }
}

#[wasm_bindgen(js_class = Host)]
impl WasmHost {
    /// `new Host({ platform: 'p2', width: 20, local: [1, 4096], shared: [4096, 524288] })`.
    /// Throws the core's layout errors (`code` 1..=5).
    #[wasm_bindgen(constructor)]
    pub fn new(config: JsValue) -> Out<WasmHost> {
        let config: HostConfig = serde_wasm_bindgen::from_value(config)
            .map_err(|e| ArgError(format!("Host config: {e}")))?;
        WasmHost::from_config(&config)
    }

    /// A deep copy (for undo). Free it with `.free()` when it is no longer needed. A host
    /// on a `Broker` shares the broker with its copy (save the broker with
    /// `broker.save()` to undo both).
    #[wasm_bindgen(js_name = clone)]
    pub fn duplicate(&self) -> WasmHost {
        self.clone()
    }

    /// `"p1"` or `"p2"`.
    #[wasm_bindgen(getter)]
    pub fn platform(&self) -> String {
        match self.host.platform() {
            Platform::P1 => "p1".into(),
            Platform::P2 => "p2".into(),
        }
    }

    /// Shared (host-global) PASIDs in use.
    #[wasm_bindgen(getter, js_name = sharedInUse)]
    pub fn shared_in_use(&self) -> u32 {
        self.host.shared_in_use()
    }

    /// Shared PASIDs still free.
    #[wasm_bindgen(getter, js_name = sharedFree)]
    pub fn shared_free(&self) -> u32 {
        self.host.shared_free()
    }

    /// Creates a guest (`'p1'`, or `'p2'` with a cap on shared PASIDs) and returns its id.
    #[wasm_bindgen(js_name = createGuest)]
    pub fn create_guest(&mut self, platform: &str, shared_quota: f64) -> Out<u32> {
        let config = match args::platform(platform)? {
            Platform::P1 => GuestConfig::p1(),
            Platform::P2 => GuestConfig::p2(args::int("shared quota", shared_quota, MAX_U32)?),
        };
        Ok(self.host.create_guest(config)?.0)
    }

    /// Destroys a guest, whatever it holds: its uses of RIDs go, its host PASIDs drain
    /// (see `draining`). Returns the entries the VMM must clear, as
    /// `[{rid, kind, gpasid, pasid}]`.
    #[wasm_bindgen(js_name = destroyGuest)]
    pub fn destroy_guest(&mut self, guest: f64) -> Out<JsValue> {
        to_js(&self.host.destroy_guest(guest_id(guest)?)?)
    }

    /// The live guests' ids.
    pub fn guests(&self) -> Vec<u32> {
        self.host.guests().map(|g| g.0).collect()
    }

    /// Attaches the device at `rid` (`'0000:03:00.1'` or `'03:00.1'`) as
    /// `'dedicated'` (SR-IOV VF, PF) or `'shared-wq'`.
    pub fn attach(&mut self, guest: f64, rid: &str, kind: &str) -> Out<()> {
        let (guest, rid, kind) = (guest_id(guest)?, args::rid(rid)?, args::device_kind(kind)?);
        Ok(self.host.attach(guest, rid, kind)?)
    }

    /// Takes all of a guest's uses of a RID away (refused, with nothing changed, while
    /// PASIDs are bound or recorded on any of them). Other guests' uses stay.
    pub fn detach(&mut self, guest: f64, rid: &str) -> Out<()> {
        Ok(self.host.detach(guest_id(guest)?, args::rid(rid)?)?)
    }

    /// Takes one use (`'dedicated'` or `'shared-wq'`) of a RID away from a guest.
    #[wasm_bindgen(js_name = detachUse)]
    pub fn detach_use(&mut self, guest: f64, rid: &str, kind: &str) -> Out<()> {
        let (guest, rid, kind) = (guest_id(guest)?, args::rid(rid)?, args::device_kind(kind)?);
        Ok(self.host.detach_use(guest, rid, kind)?)
    }

    /// The guest with the dedicated use of a RID, or `undefined` (shared-WQ users are
    /// not owners: see `ridUsers`).
    pub fn owner(&self, rid: &str) -> Out<Option<u32>> {
        Ok(self.host.owner(args::rid(rid)?).map(|g| g.0))
    }

    /// Every guest using a RID: `[{ guest, kind }]`, the dedicated user first, then the
    /// shared-WQ users by id (`kind` `"Dedicated"` or `"SharedWq"`).
    #[wasm_bindgen(js_name = ridUsers)]
    pub fn rid_users(&self, rid: &str) -> Out<JsValue> {
        let users: Vec<RidUser> = self
            .host
            .rid_users(args::rid(rid)?)
            .map(|(guest, kind)| RidUser { guest, kind })
            .collect();
        to_js(&users)
    }

    /// p2: allocates a gPASID of kind `'local'` or `'shared'` and returns it.
    #[wasm_bindgen(js_name = allocPasid)]
    pub fn alloc_pasid(&mut self, guest: f64, kind: &str) -> Out<u32> {
        let (guest, kind) = (guest_id(guest)?, args::pasid_kind(kind)?);
        Ok(self.host.alloc(guest, kind)?)
    }

    /// p2: frees a gPASID. Refused while it is bound. It stops translating at once and
    /// drains, with its hPASID, until `completeTeardown`; returns the draining record
    /// `{guest, gpasid, hpasid}` (hpasid `null` for a local one).
    #[wasm_bindgen(js_name = freePasid)]
    pub fn free_pasid(&mut self, guest: f64, gpasid: f64) -> Out<JsValue> {
        to_js(&self.host.free(guest_id(guest)?, pasid(gpasid)?)?)
    }

    /// The hPASID behind a shared gPASID (what ENQCMD's PASID becomes).
    pub fn translate(&self, guest: f64, gpasid: f64) -> Out<u32> {
        Ok(self.host.translate(guest_id(guest)?, pasid(gpasid)?)?)
    }

    /// p2: binds a gPASID to the guest's only use of a RID and returns the PASID
    /// programmed into the IOMMU (the gPASID on a dedicated use, the hPASID on a shared
    /// WQ). A guest with both uses of the RID must say which (`AmbiguousUse`, code 54):
    /// `bindUse`.
    pub fn bind(&mut self, guest: f64, gpasid: f64, rid: &str) -> Out<u32> {
        let (guest, gpasid, rid) = (guest_id(guest)?, pasid(gpasid)?, args::rid(rid)?);
        Ok(self.host.bind(guest, gpasid, rid)?)
    }

    /// p2: binds a gPASID to one use (`'dedicated'` or `'shared-wq'`) of a RID; returns
    /// the PASID to program there.
    #[wasm_bindgen(js_name = bindUse)]
    pub fn bind_use(&mut self, guest: f64, gpasid: f64, rid: &str, kind: &str) -> Out<u32> {
        let (guest, gpasid) = (guest_id(guest)?, pasid(gpasid)?);
        let (rid, kind) = (args::rid(rid)?, args::device_kind(kind)?);
        Ok(self.host.bind_use(guest, gpasid, rid, kind)?)
    }

    /// p2: undoes `bind`; returns the PASID that was programmed (the entry to clear).
    pub fn unbind(&mut self, guest: f64, gpasid: f64, rid: &str) -> Out<u32> {
        let (guest, gpasid, rid) = (guest_id(guest)?, pasid(gpasid)?, args::rid(rid)?);
        Ok(self.host.unbind(guest, gpasid, rid)?)
    }

    /// p2: undoes `bindUse`; returns the PASID to clear on that use of the RID.
    #[wasm_bindgen(js_name = unbindUse)]
    pub fn unbind_use(&mut self, guest: f64, gpasid: f64, rid: &str, kind: &str) -> Out<u32> {
        let (guest, gpasid) = (guest_id(guest)?, pasid(gpasid)?);
        let (rid, kind) = (args::rid(rid)?, args::device_kind(kind)?);
        Ok(self.host.unbind_use(guest, gpasid, rid, kind)?)
    }

    /// Every entry the VMM programmed for a guest, `[{rid, kind, gpasid, pasid}]`
    /// (`rid` as `{segment, bdf}`): what `destroyGuest` would return.
    #[wasm_bindgen(js_name = programmedEntries)]
    pub fn programmed_entries(&self, guest: f64) -> Out<JsValue> {
        let entries: Vec<_> = self.host.programmed_entries(guest_id(guest)?)?.collect();
        to_js(&entries)
    }

    /// Shared PASIDs a guest's quota counts: held and draining.
    #[wasm_bindgen(js_name = sharedHeld)]
    pub fn shared_held(&self, guest: f64) -> Out<u32> {
        Ok(self.host.shared_held(guest_id(guest)?)?)
    }

    /// Every draining PASID, `[{guest, gpasid, hpasid}]` (hpasid `null` for a local
    /// one): live guests' first, then destroyed guests' (orphans).
    pub fn draining(&self) -> Out<JsValue> {
        let all: Vec<Draining> = self.host.draining().collect();
        to_js(&all)
    }

    /// The VMM says the hardware let go of `items` (records as `draining()` or
    /// `freePasid` return them): their gPASIDs and hPASIDs are free again. All or
    /// nothing: an item that is not draining exactly as given, or given twice, is
    /// refused (`NotDraining`, code 53) and nothing changes. Items that are not
    /// `{guest, gpasid, hpasid}` records throw a `TypeError`.
    #[wasm_bindgen(js_name = completeTeardown)]
    pub fn complete_teardown(&mut self, items: JsValue) -> Out<()> {
        let items: Vec<Draining> = serde_wasm_bindgen::from_value(items).map_err(|e| {
            ArgError(format!(
                "completeTeardown takes [{{guest, gpasid, hpasid}}] records: {e}"
            ))
        })?;
        Ok(self.host.complete_teardown(&items)?)
    }

    /// p1: records the PASID the guest chose on a device; returns what is programmed.
    pub fn record(&mut self, guest: f64, rid: &str, value: f64) -> Out<u32> {
        let (guest, rid, value) = (guest_id(guest)?, args::rid(rid)?, pasid(value)?);
        Ok(self.host.record(guest, rid, value)?)
    }

    /// p1: forgets a recorded PASID.
    pub fn release(&mut self, guest: f64, rid: &str, value: f64) -> Out<()> {
        let (guest, rid, value) = (guest_id(guest)?, args::rid(rid)?, pasid(value)?);
        Ok(self.host.release(guest, rid, value)?)
    }

    /// The whole host as a plain object (shape in the crate docs).
    pub fn snapshot(&self) -> Out<JsValue> {
        to_js(&self.host.snapshot())
    }

    /// `snapshot()` with every guest's `pasids` left empty: the same shape, cheap at any
    /// size. Pair it with `pasidPairs` for the PASIDs themselves.
    pub fn summary(&self) -> Out<JsValue> {
        let mut snap = self.host.snapshot();
        for g in &mut snap.guests {
            g.pasids = Vec::new();
        }
        to_js(&snap)
    }

    /// One guest as a plain object (a `guests[i]` of `snapshot()`).
    #[wasm_bindgen(js_name = guestSnapshot)]
    pub fn guest_snapshot(&self, guest: f64) -> Out<JsValue> {
        to_js(&self.host.guest_snapshot(guest_id(guest)?)?)
    }

    /// One guest's PASIDs as a flat `Uint32Array` `[gpasid, hpasid, ...]`, ascending by
    /// gPASID, with hpasid 0 for a local one (PASID 0 is never handed out). The same
    /// data as `guestSnapshot(g).pasids`, cheap enough for hundreds of thousands.
    #[wasm_bindgen(js_name = pasidPairs)]
    pub fn pasid_pairs(&self, guest: f64) -> Out<Vec<u32>> {
        let snap = self.host.guest_snapshot(guest_id(guest)?)?;
        let mut out = Vec::with_capacity(snap.pasids.len() * 2);
        for p in &snap.pasids {
            out.push(p.gpasid);
            out.push(p.hpasid.unwrap_or(0));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::Fail;
    use crate::test_support::p2_host;

    #[test]
    fn a_shared_pasid_goes_through_the_layer() {
        let mut h = p2_host();
        let g = f64::from(h.create_guest("p2", 4.0).unwrap());
        h.attach(g, "00:0a.0", "shared-wq").unwrap();
        h.attach(g, "03:00.1", "dedicated").unwrap();
        let gp = h.alloc_pasid(g, "shared").unwrap();
        let hp = h.translate(g, f64::from(gp)).unwrap();
        assert!((1..4096).contains(&gp));
        assert!((4096..1 << 19).contains(&hp));
        assert_eq!(h.bind(g, f64::from(gp), "00:0a.0").unwrap(), hp);
        assert_eq!(h.bind(g, f64::from(gp), "0000:03:00.1").unwrap(), gp);
        assert_eq!(h.pasid_pairs(g).unwrap(), vec![gp, hp]);
        assert_eq!(h.owner("03:00.1").unwrap(), Some(g as u32));
        assert_eq!(h.shared_in_use(), 1);
    }

    #[test]
    fn core_errors_keep_their_code_and_message() {
        let mut h = p2_host();
        let g = f64::from(h.create_guest("p2", 1.0).unwrap());
        h.alloc_pasid(g, "shared").unwrap();
        match h.alloc_pasid(g, "shared") {
            Err(Fail::Core(e)) => {
                assert_eq!((e.code().number(), e.code().name()), (22, "QuotaExceeded"));
                assert_eq!(e.to_string(), "shared PASID quota of 1 reached");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(h.free_pasid(g, 1.5), Err(Fail::Arg(_))));
        assert!(matches!(h.attach(g, "zz", "dedicated"), Err(Fail::Arg(_))));
        assert!(matches!(
            WasmHost::from_config(&HostConfig {
                platform: "p2".into(),
                width: 20,
                local: [1, 4097],
                shared: [4096, 8192],
            }),
            Err(Fail::Core(pasid_core::Error::RangesOverlap))
        ));
    }

    #[test]
    fn a_mixed_rid_names_its_use() {
        let mut h = p2_host();
        let g = f64::from(h.create_guest("p2", 4.0).unwrap());
        h.attach(g, "6a:01.0", "dedicated").unwrap();
        h.attach(g, "6a:01.0", "shared-wq").unwrap();
        let gp = h.alloc_pasid(g, "shared").unwrap();
        let hp = h.translate(g, f64::from(gp)).unwrap();
        assert!(matches!(
            h.bind(g, f64::from(gp), "6a:01.0"),
            Err(Fail::Core(pasid_core::Error::AmbiguousUse { .. }))
        ));
        assert_eq!(
            h.bind_use(g, f64::from(gp), "6a:01.0", "shared-wq")
                .unwrap(),
            hp
        );
        assert!(matches!(
            h.bind_use(g, 1.0, "6a:01.0", "vf"),
            Err(Fail::Arg(_))
        ));
        assert_eq!(
            h.unbind_use(g, f64::from(gp), "6a:01.0", "shared-wq")
                .unwrap(),
            hp
        );
        h.detach_use(g, "6a:01.0", "shared-wq").unwrap();
        assert_eq!(h.core().rid_users(args::rid("6a:01.0").unwrap()).count(), 1);
        assert_eq!(h.shared_held(g).unwrap(), 1);
        let entries = h.core().programmed_entries(guest_id(g).unwrap()).unwrap();
        assert_eq!(entries.count(), 0, "nothing bound any more");
    }

    #[test]
    fn a_clone_is_independent() {
        let mut h = p2_host();
        let g = f64::from(h.create_guest("p2", 4.0).unwrap());
        let before = h.duplicate();
        h.alloc_pasid(g, "local").unwrap();
        assert_eq!(before.core().snapshot().guests[0].pasids.len(), 0);
        assert_eq!(h.core().snapshot().guests[0].pasids.len(), 1);
    }

    #[test]
    fn p1_records_and_refuses_alloc() {
        let mut h = WasmHost::from_config(&HostConfig {
            platform: "p1".into(),
            width: 20,
            local: [1, 4096],
            shared: [4096, 1 << 19],
        })
        .unwrap();
        assert!(matches!(h.create_guest("p2", 4.0), Err(Fail::Core(_))));
        let g = f64::from(h.create_guest("p1", 0.0).unwrap());
        h.attach(g, "03:00.1", "dedicated").unwrap();
        assert_eq!(h.record(g, "03:00.1", 7.0).unwrap(), 7);
        assert!(matches!(h.alloc_pasid(g, "local"), Err(Fail::Core(_))));
        h.release(g, "03:00.1", 7.0).unwrap();
        h.detach(g, "03:00.1").unwrap();
    }
}
