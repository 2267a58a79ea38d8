//! Migration: export a guest as a blob, check and import it on another host with a
//! RID map, and decode a blob without a host.

use pasid_core::migrate::{self, ImportOptions, ImportReport, RidMapping};
use wasm_bindgen::prelude::*;

use crate::args::{self, ArgError};
use crate::errors::{to_js, Fail, Out};
use crate::host::{guest_id, WasmHost};

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
        self.import_with_options(blob, rid_map, &ImportOptions::default())
    }

    /// Every import of a blob: its RID map read from JS, then the core's import with
    /// the destination's `opts`.
    pub(crate) fn import_with_options(
        &mut self,
        blob: &[u8],
        rid_map: &[RidMapEntry],
        opts: &ImportOptions,
    ) -> Out<Imported> {
        let map = read_rid_map(rid_map)?;
        let (id, report) = self.host.import_guest_with(blob, &map, opts)?;
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

pub(crate) fn rid_map_arg(rid_map: JsValue) -> Out<Vec<RidMapEntry>> {
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

/// Decodes a migration blob without a host: `{ format_major, format_minor,
/// source_layout, source_platform, config, pasids, devices }`, or the core's error.
#[wasm_bindgen(js_name = inspectBlob)]
pub fn inspect_blob(blob: &[u8]) -> Out<JsValue> {
    to_js(&migrate::inspect(blob)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::p2_host;

    fn rid(text: &str) -> pasid_core::Rid {
        crate::args::rid(text).unwrap()
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
        // A shared WQ has users, not an owner.
        assert_eq!(b.owner("00:0b.0").unwrap(), None);
        assert_eq!(b.core().rid_users(rid("00:0b.0")).count(), 1);
        // The same blob again is a replay of one migration: refused, nothing changes
        // (the shared WQ itself would take a second guest).
        let before = b.core().snapshot();
        assert!(matches!(
            b.import_with_map(&blob, &map),
            Err(Fail::Core(pasid_core::Error::Replayed { .. }))
        ));
        assert_eq!(b.core().snapshot(), before);
        // A dedicated use is one guest's: a second guest's blob onto it is refused, and
        // nothing changes.
        let blobs: Vec<Vec<u8>> = ["03:00.1", "03:00.2"]
            .into_iter()
            .map(|vf| {
                let d = f64::from(a.create_guest("p2", 1.0).unwrap());
                a.attach(d, vf, "dedicated").unwrap();
                a.export_guest(d).unwrap()
            })
            .collect();
        let onto = |vf: &str| [entry(&[vf, "04:00.1"])];
        b.import_with_map(&blobs[0], &onto("03:00.1")).unwrap();
        let before = b.core().snapshot();
        assert!(matches!(
            b.import_with_map(&blobs[1], &onto("03:00.2")),
            Err(Fail::Core(pasid_core::Error::RidInUse { .. }))
        ));
        assert_eq!(b.core().snapshot(), before);
        let bad = [entry(&["zz", "00:0b.0"])];
        assert!(matches!(b.import_with_map(&blob, &bad), Err(Fail::Arg(_))));
    }
}
