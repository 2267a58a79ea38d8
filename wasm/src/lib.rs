//! wasm-bindgen bindings over [`pasid_core`], for the browser playground and for Node.
//!
//! The layer only translates: JS numbers and strings in, one core call, plain JS objects
//! out. Everything is decided by the core.
//!
//! ```js
//! import init, { Host } from './pkg/pasid_wasm.js';
//! await init();
//! const host = new Host({ platform: 'p2', width: 20, local: [1, 4096], shared: [4096, 1 << 19] });
//! const g = host.createGuest('p2', 64);          // guest id (a number)
//! host.attach(g, '00:0a.0', 'shared-wq');        // RIDs as text: [ssss:]bb:dd.f
//! const gpasid = host.allocPasid(g, 'shared');   // in the local (guest) range
//! const hpasid = host.translate(g, gpasid);      // in the shared range
//! host.bind(g, gpasid, '00:0a.0') === hpasid;    // what the host IOMMU is programmed with
//! try { host.freePasid(g, 4000); } catch (e) { e.code === 15; e.message; } // NotAllocated
//!
//! // Migration: the blob is a Uint8Array; the RID map pairs source and destination RIDs,
//! // optionally with what the destination device is (checked against the guest's).
//! const target = new Host({ platform: 'p2', width: 20, local: [1, 4096], shared: [4096, 1 << 20] });
//! const blob = host.exportGuest(g);
//! const { guest, report } = target.importGuest(blob, [['00:0a.0', '00:0a.0', 'shared-wq']]);
//! host.destroyGuest(g);
//! ```
//!
//! The whole JS surface: `new Host(config)`, `clone`, `platform`, `sharedInUse`,
//! `sharedFree`, `createGuest`, `destroyGuest`, `guests`, `attach`, `detach`, `owner`,
//! `allocPasid`, `freePasid`, `translate`, `bind`, `unbind`, `record`, `release`,
//! `snapshot`, `summary`, `guestSnapshot`, `pasidPairs`, `exportGuest`, `importGuest`,
//! `checkImport`, `vcap`, `vcmd`, and the free functions `inspectBlob`, `vcmdLayout`,
//! `vcmdCommand`, `vcmdDecode`. VT-d register values are `BigInt`s. Every `Host` holds
//! wasm memory: call `.free()` on hosts (and clones) you drop.
//!
//! # Errors
//!
//! A call the core refuses throws a JS `Error` whose `message` is the core's message,
//! with `name` `"PasidError"`, `code` the core's stable [`ErrorCode`] number and
//! `codeName` its name (`"QuotaExceeded"`). The host is unchanged after such a call.
//! An argument the layer cannot read (a bad RID text, an unknown kind, a non-integer)
//! throws a `TypeError` without `code`.
//!
//! # Snapshots
//!
//! [`WasmHost::snapshot`] returns [`pasid_core::HostSnapshot`] as a plain object
//! (serde-wasm-bindgen, `json_compatible`, so `JSON.stringify` works on it):
//!
//! ```text
//! { width, local: {start, end}, shared: {start, end}, platform: "P1" | "P2", shared_in_use,
//!   guests: [ { id, config: { platform, shared_quota },
//!               pasids:  [ { gpasid, kind: "Local" | "Shared", hpasid: number | null } ],
//!               devices: [ { rid: { segment, bdf }, kind: "Dedicated" | "SharedWq",
//!                            programmed: [ { gpasid, programmed } ] } ] } ] }
//! ```
//!
//! `importGuest` returns `{ guest, report }` with the core's
//! [`ImportReport`]: `{ guest_platform, p1_guest_on_p2_host, shared: [ { gpasid,
//! source_hpasid, destination_hpasid } ], devices: [ { source, destination, kind } ] }`.
//!
//! Ranges are half-open. For maps of hundreds of thousands of PASIDs,
//! [`WasmHost::pasid_pairs`] gives one guest's PASIDs as a flat `Uint32Array`, and
//! [`WasmHost::summary`] the snapshot without them.

#![deny(missing_docs)]

mod args;

use pasid_core::migrate::{self, ImportReport, RidMapping};
use pasid_core::vcmd::VtdRevision;
use pasid_core::{ErrorCode, GuestConfig, GuestId, Host, PasidLayout, Platform};
use serde::Deserialize;
use wasm_bindgen::prelude::*;

pub use args::ArgError;

#[wasm_bindgen]
extern "C" {
    /// The JS `Error` class, to throw core errors as real `Error`s with extra fields.
    #[wasm_bindgen(js_name = Error)]
    type JsErrorObject;
    #[wasm_bindgen(constructor, js_class = "Error")]
    fn new(message: &str) -> JsErrorObject;
    #[wasm_bindgen(method, setter = name)]
    fn set_name(this: &JsErrorObject, name: &str);
    #[wasm_bindgen(method, setter = code)]
    fn set_code(this: &JsErrorObject, code: u32);
    #[wasm_bindgen(method, setter = codeName)]
    fn set_code_name(this: &JsErrorObject, name: &str);

    /// The JS `TypeError` class, for arguments the layer cannot read.
    #[wasm_bindgen(js_name = TypeError)]
    type JsTypeError;
    #[wasm_bindgen(constructor, js_class = "TypeError")]
    fn new(message: &str) -> JsTypeError;
}

/// Why a call failed, before it becomes a thrown JS value at the boundary.
#[derive(Debug)]
pub enum Fail {
    /// The core refused: thrown as `Error` with `code`.
    Core(pasid_core::Error),
    /// An argument could not be read: thrown as `TypeError`.
    Arg(ArgError),
    /// A value could not be converted (serde-wasm-bindgen); thrown as is.
    Js(JsValue),
}

impl From<pasid_core::Error> for Fail {
    fn from(e: pasid_core::Error) -> Self {
        Fail::Core(e)
    }
}

impl From<ArgError> for Fail {
    fn from(e: ArgError) -> Self {
        Fail::Arg(e)
    }
}

impl From<serde_wasm_bindgen::Error> for Fail {
    fn from(e: serde_wasm_bindgen::Error) -> Self {
        Fail::Js(e.into())
    }
}

impl From<Fail> for JsValue {
    fn from(fail: Fail) -> JsValue {
        match fail {
            Fail::Core(e) => {
                let err = JsErrorObject::new(&e.to_string());
                err.set_name("PasidError");
                err.set_code(code_number(e.code()));
                err.set_code_name(&format!("{:?}", e.code()));
                err.into()
            }
            Fail::Arg(ArgError(message)) => JsTypeError::new(&message).into(),
            Fail::Js(value) => value,
        }
    }
}

/// The stable number of an error code (the same one the C API returns).
pub fn code_number(code: ErrorCode) -> u32 {
    code as u32
}

type Out<T> = Result<T, Fail>;

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
    host: Host,
}

const MAX_U32: u32 = u32::MAX;

fn guest_id(guest: f64) -> Out<GuestId> {
    Ok(GuestId(args::int("guest", guest, MAX_U32)?))
}

fn pasid(value: f64) -> Out<u32> {
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
        let host = Host::new(layout, args::platform(&config.platform)?)?;
        Ok(WasmHost { host })
    }

    /// The core host, for Rust callers and tests.
    pub fn core(&self) -> &Host {
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

    /// A deep copy (for undo). Free it with `.free()` when it is no longer needed.
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

    /// Destroys a guest: its shared PASIDs return to the host, its devices are detached.
    #[wasm_bindgen(js_name = destroyGuest)]
    pub fn destroy_guest(&mut self, guest: f64) -> Out<()> {
        self.host.destroy_guest(guest_id(guest)?)?;
        Ok(())
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

    /// Detaches a device (refused while PASIDs are bound or recorded on it).
    pub fn detach(&mut self, guest: f64, rid: &str) -> Out<()> {
        Ok(self.host.detach(guest_id(guest)?, args::rid(rid)?)?)
    }

    /// The guest a RID is attached to, or `undefined`.
    pub fn owner(&self, rid: &str) -> Out<Option<u32>> {
        Ok(self.host.owner(args::rid(rid)?).map(|g| g.0))
    }

    /// p2: allocates a gPASID of kind `'local'` or `'shared'` and returns it.
    #[wasm_bindgen(js_name = allocPasid)]
    pub fn alloc_pasid(&mut self, guest: f64, kind: &str) -> Out<u32> {
        let (guest, kind) = (guest_id(guest)?, args::pasid_kind(kind)?);
        Ok(self.host.alloc(guest, kind)?)
    }

    /// p2: frees a gPASID (and its hPASID). Refused while it is bound.
    #[wasm_bindgen(js_name = freePasid)]
    pub fn free_pasid(&mut self, guest: f64, gpasid: f64) -> Out<()> {
        self.host.free(guest_id(guest)?, pasid(gpasid)?)?;
        Ok(())
    }

    /// The hPASID behind a shared gPASID (what ENQCMD's PASID becomes).
    pub fn translate(&self, guest: f64, gpasid: f64) -> Out<u32> {
        Ok(self.host.translate(guest_id(guest)?, pasid(gpasid)?)?)
    }

    /// p2: binds a gPASID to a device and returns the PASID programmed into the IOMMU.
    pub fn bind(&mut self, guest: f64, gpasid: f64, rid: &str) -> Out<u32> {
        let (guest, gpasid, rid) = (guest_id(guest)?, pasid(gpasid)?, args::rid(rid)?);
        Ok(self.host.bind(guest, gpasid, rid)?)
    }

    /// p2: undoes `bind`.
    pub fn unbind(&mut self, guest: f64, gpasid: f64, rid: &str) -> Out<()> {
        let (guest, gpasid, rid) = (guest_id(guest)?, pasid(gpasid)?, args::rid(rid)?);
        self.host.unbind(guest, gpasid, rid)?;
        Ok(())
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

/// What `importGuest` returns: the new guest's id and the core's import report.
#[derive(serde::Serialize)]
pub struct Imported {
    /// The guest's id on this host.
    pub guest: u32,
    /// What moved where (gPASIDs kept, new hPASIDs, RIDs).
    pub report: ImportReport,
}

/// One RID map entry as JS gives it: `[source, destination]` or
/// `[source, destination, kind]`, RIDs as text and kind `'dedicated'` or `'shared-wq'`.
pub type RidMapEntry = Vec<String>;

impl WasmHost {
    /// `importGuest` after its RID map has been read from JS.
    pub fn import_with_map(&mut self, blob: &[u8], rid_map: &[RidMapEntry]) -> Out<Imported> {
        let map = read_rid_map(rid_map)?;
        let (id, report) = self.host.import_guest_mapped(blob, &map)?;
        Ok(Imported {
            guest: id.0,
            report,
        })
    }

    /// `checkImport` after its RID map has been read from JS.
    pub fn check_with_map(&self, blob: &[u8], rid_map: &[RidMapEntry]) -> Out<()> {
        Ok(self
            .host
            .check_import_mapped(blob, &read_rid_map(rid_map)?)?)
    }
}

fn read_rid_map(entries: &[RidMapEntry]) -> Out<Vec<RidMapping>> {
    entries
        .iter()
        .map(|entry| {
            let (from, to, kind) = match entry.as_slice() {
                [from, to] => (from, to, None),
                [from, to, kind] => (from, to, Some(args::device_kind(kind)?)),
                _ => {
                    return Err(ArgError(format!(
                        "a RID map entry is [source, destination] or [source, destination, kind], \
                         got {} items",
                        entry.len()
                    ))
                    .into())
                }
            };
            Ok(RidMapping {
                source: args::rid(from)?,
                destination: args::rid(to)?,
                kind,
            })
        })
        .collect()
}

fn rid_map_arg(rid_map: JsValue) -> Out<Vec<RidMapEntry>> {
    serde_wasm_bindgen::from_value(rid_map).map_err(|e| {
        Fail::Arg(ArgError(format!(
            "RID map must be an array of [source RID, destination RID] or \
             [source RID, destination RID, kind] entries: {e}"
        )))
    })
}

#[wasm_bindgen(js_class = Host)]
impl WasmHost {
    /// Exports a guest's PASID state as a migration blob (`Uint8Array`). The guest stays;
    /// destroy it once the destination has imported the blob.
    #[wasm_bindgen(js_name = exportGuest)]
    pub fn export_guest(&self, guest: f64) -> Out<Vec<u8>> {
        Ok(self.host.export_guest(guest_id(guest)?)?)
    }

    /// Imports a blob from `exportGuest`, attaching its devices where `ridMap`
    /// (`[[sourceRid, destinationRid], ...]`) says. An entry may add what the
    /// destination device is, `[sourceRid, destinationRid, 'dedicated' | 'shared-wq']`:
    /// a guest device of another kind is refused (`DeviceKindMismatch`, code 51);
    /// without it the kind is not checked. Returns `{ guest, report }`; all or nothing:
    /// on a thrown error this host is unchanged.
    #[wasm_bindgen(js_name = importGuest)]
    pub fn import_guest(&mut self, blob: &[u8], rid_map: JsValue) -> Out<JsValue> {
        let map = rid_map_arg(rid_map)?;
        to_js(&self.import_with_map(blob, &map)?)
    }

    /// Runs every check of `importGuest` without changing anything; throws its error.
    #[wasm_bindgen(js_name = checkImport)]
    pub fn check_import(&self, blob: &[u8], rid_map: JsValue) -> Out<()> {
        let map = rid_map_arg(rid_map)?;
        self.check_with_map(blob, &map)
    }
}

#[wasm_bindgen(js_class = Host)]
impl WasmHost {
    /// The guest's VCCAP register (`BigInt`): PAS (bit 0) set for a p2 guest, clear for p1.
    /// `revision` is `'3.0'`, `'3.1'` or `'3.3'`.
    pub fn vcap(&self, guest: f64, revision: &str) -> Out<u64> {
        Ok(self
            .host
            .vcap(guest_id(guest)?, args::revision(revision)?)?)
    }

    /// Runs the command a guest wrote to VCMD (`BigInt`) and returns the VCRSP value it
    /// reads back (`BigInt`). Guest-caused failures are status codes in VCRSP, not throws.
    pub fn vcmd(&mut self, guest: f64, revision: &str, command: u64) -> Out<u64> {
        let (guest, rev) = (guest_id(guest)?, args::revision(revision)?);
        Ok(self.host.vcmd(guest, rev, command)?)
    }
}

/// The virtual command registers of one VT-d revision, for showing raw values.
#[derive(serde::Serialize)]
pub struct VcmdLayout {
    /// MMIO offsets of VCCAP, VCMD and VCRSP.
    pub vccap: u32,
    /// VCMD's offset.
    pub vcmd: u32,
    /// VCRSP's offset.
    pub vcrsp: u32,
    /// Bit of the operand in VCMD and of the PASID in VCRSP.
    pub operand_shift: u32,
    /// SC of "no PASID available" / "invalid PASID".
    pub sc_no_pasid: u8,
    /// SC of an undefined command.
    pub sc_undefined: u8,
}

/// Register offsets and field positions of a VT-d revision (`'3.0'` or `'3.3'`).
#[wasm_bindgen(js_name = vcmdLayout)]
pub fn vcmd_layout(revision: &str) -> Out<JsValue> {
    let rev = args::revision(revision)?;
    to_js(&VcmdLayout {
        vccap: rev.vccap_offset(),
        vcmd: rev.vcmd_offset(),
        vcrsp: rev.vcrsp_offset(),
        operand_shift: rev.operand_shift(),
        sc_no_pasid: rev.sc_no_pasid_available(),
        sc_undefined: VtdRevision::SC_UNDEFINED_COMMAND,
    })
}

/// The VCMD value (`BigInt`) for a command code (1 ALLOC, 2 FREE) and operand.
#[wasm_bindgen(js_name = vcmdCommand)]
pub fn vcmd_command(revision: &str, code: u8, operand: u64) -> Out<u64> {
    Ok(args::revision(revision)?.command(code, operand))
}

/// A decoded VCRSP value.
#[derive(serde::Serialize)]
pub struct VcmdResponse {
    /// IP, bit 0.
    pub in_progress: bool,
    /// SC.
    pub status: u8,
    /// The result PASID field.
    pub pasid: u32,
}

/// Decodes a VCRSP value (`BigInt`): `{ in_progress, status, pasid }`.
#[wasm_bindgen(js_name = vcmdDecode)]
pub fn vcmd_decode(revision: &str, vcrsp: u64) -> Out<JsValue> {
    let r = args::revision(revision)?.decode_response(vcrsp);
    to_js(&VcmdResponse {
        in_progress: r.in_progress,
        status: r.status,
        pasid: r.pasid,
    })
}

/// Decodes a migration blob without a host: `{ format_major, format_minor,
/// source_layout, source_platform, config, pasids, devices }`, or the core's error.
#[wasm_bindgen(js_name = inspectBlob)]
pub fn inspect_blob(blob: &[u8]) -> Out<JsValue> {
    to_js(&migrate::inspect(blob)?)
}

fn to_js<T: serde::Serialize>(value: &T) -> Out<JsValue> {
    let serializer = serde_wasm_bindgen::Serializer::json_compatible();
    Ok(value.serialize(&serializer)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p2_host() -> WasmHost {
        WasmHost::from_config(&HostConfig {
            platform: "p2".into(),
            width: 20,
            local: [1, 4096],
            shared: [4096, 1 << 19],
        })
        .unwrap()
    }

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
                assert_eq!(code_number(e.code()), 22);
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
    fn a_clone_is_independent() {
        let mut h = p2_host();
        let g = f64::from(h.create_guest("p2", 4.0).unwrap());
        let before = h.duplicate();
        h.alloc_pasid(g, "local").unwrap();
        assert_eq!(before.core().snapshot().guests[0].pasids.len(), 0);
        assert_eq!(h.core().snapshot().guests[0].pasids.len(), 1);
    }

    #[test]
    fn a_guest_migrates_with_its_gpasids() {
        let mut a = p2_host();
        let mut b = p2_host();
        let resident = f64::from(b.create_guest("p2", 8.0).unwrap());
        b.alloc_pasid(resident, "shared").unwrap();
        let g = f64::from(a.create_guest("p2", 8.0).unwrap());
        a.attach(g, "00:0a.0", "shared-wq").unwrap();
        let gp = a.alloc_pasid(g, "shared").unwrap();
        a.bind(g, f64::from(gp), "00:0a.0").unwrap();
        let blob = a.export_guest(g).unwrap();
        let entry = |e: &[&str]| e.iter().map(|s| s.to_string()).collect::<RidMapEntry>();
        // The destination said to be a VF: refused, nothing changes.
        let before = b.core().snapshot();
        let wrong = [entry(&["00:0a.0", "0000:00:0b.0", "dedicated"])];
        assert!(matches!(
            b.import_with_map(&blob, &wrong),
            Err(Fail::Core(pasid_core::Error::DeviceKindMismatch { .. }))
        ));
        assert_eq!(b.core().snapshot(), before);
        for bad in [
            entry(&["00:0a.0"]),
            entry(&["00:0a.0", "00:0b.0", "vf"]),
            entry(&["00:0a.0", "00:0b.0", "dedicated", "x"]),
        ] {
            assert!(matches!(b.check_with_map(&blob, &[bad]), Err(Fail::Arg(_))));
        }
        b.check_with_map(&blob, &[entry(&["00:0a.0", "0000:00:0b.0", "shared-wq"])])
            .unwrap();
        let map = [entry(&["00:0a.0", "0000:00:0b.0"])];
        b.check_with_map(&blob, &map).unwrap();
        let imported = b.import_with_map(&blob, &map).unwrap();
        let moved = f64::from(imported.guest);
        assert_eq!(imported.report.shared[0].gpasid, gp);
        assert_eq!(b.translate(moved, f64::from(gp)).unwrap(), 4097);
        assert_eq!(b.owner("00:0b.0").unwrap(), Some(imported.guest));
        // The same blob again: the RID is now taken, and nothing changes.
        let before = b.core().snapshot();
        assert!(matches!(
            b.import_with_map(&blob, &map),
            Err(Fail::Core(pasid_core::Error::RidInUse { .. }))
        ));
        assert_eq!(b.core().snapshot(), before);
        let bad = [entry(&["zz", "00:0b.0"])];
        assert!(matches!(b.import_with_map(&blob, &bad), Err(Fail::Arg(_))));
    }

    #[test]
    fn vcmd_alloc_goes_through_the_layer() {
        let mut h = p2_host();
        let g = f64::from(h.create_guest("p2", 4.0).unwrap());
        assert_eq!(h.vcap(g, "3.3").unwrap(), 1);
        let rev = args::revision("3.3").unwrap();
        let vcrsp = h.vcmd(g, "3.3", rev.command(1, 0)).unwrap();
        assert_eq!(rev.decode_response(vcrsp).pasid, 1);
        assert!((4096..1 << 19).contains(&h.translate(g, 1.0).unwrap()));
        assert!(matches!(h.vcmd(g, "2.0", 1), Err(Fail::Arg(_))));
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
