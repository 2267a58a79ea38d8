//! The translation change stream ([`pasid_core::changes`]): what a VMM hands KVM, one
//! `{gpasid, hpasid}` pair at a time (`hpasid: null` clears the entry), in apply order.
//!
//! ```js
//! host.enableTranslationChanges(g, 64);        // starts with the guest's whole table
//! const p = host.allocPasid(g, 'shared');
//! host.drainTranslationChanges(g);             // [{ gpasid: p, hpasid: 4096 }]
//! host.freePasid(g, p);
//! host.drainTranslationChanges(g);             // [{ gpasid: p, hpasid: null }]
//! host.translationEntries(g);                  // the whole table, as changes: []
//! ```
//!
//! The other calls that change a guest's table report too: an import can start the
//! new guest's log (`importGuestWithChangeLog`), and `destroyGuestReportingChanges`
//! returns the pending log followed by an invalidation of every entry left.

use pasid_core::migrate::ImportOptions;
use pasid_core::{ProgrammedEntry, TranslationChange};
use wasm_bindgen::prelude::*;

use crate::args;
use crate::errors::{to_js, Out};
use crate::host::{guest_id, WasmHost};
use crate::migration::{rid_map_arg, Imported, RidMapEntry};

/// What `destroyGuestReportingChanges` returns.
#[derive(Debug, serde::Serialize)]
pub struct DestroyedWithChanges {
    /// The entries the VMM must clear, as `destroyGuest` returns them.
    pub entries: Vec<ProgrammedEntry>,
    /// The guest's table changes in apply order: its pending log (if on), then
    /// `{gpasid, hpasid: null}` for every entry still valid.
    pub changes: Vec<TranslationChange>,
}

impl WasmHost {
    /// `drainTranslationChanges` before the conversion to JS.
    pub fn drain_changes(&mut self, guest: f64) -> Out<Vec<TranslationChange>> {
        let mut out = Vec::new();
        self.host
            .drain_translation_changes(guest_id(guest)?, &mut out)?;
        Ok(out)
    }

    /// `translationEntries` before the conversion to JS.
    pub fn entries(&self, guest: f64) -> Out<Vec<TranslationChange>> {
        Ok(self.host.translation_entries(guest_id(guest)?)?.collect())
    }

    /// `destroyGuestReportingChanges` before the conversion to JS.
    pub fn destroy_reporting_changes(&mut self, guest: f64) -> Out<DestroyedWithChanges> {
        let mut changes = Vec::new();
        let entries = self
            .host
            .destroy_guest_reporting_changes(guest_id(guest)?, &mut changes)?;
        Ok(DestroyedWithChanges { entries, changes })
    }

    /// `importGuestWithChangeLog` after its RID map has been read from JS.
    pub fn import_with_change_log(
        &mut self,
        blob: &[u8],
        rid_map: &[RidMapEntry],
        capacity: f64,
    ) -> Out<Imported> {
        let opts = ImportOptions {
            change_log: Some(args::int("capacity", capacity, u32::MAX)?),
            ..ImportOptions::default()
        };
        self.import_with_options(blob, rid_map, &opts)
    }
}

#[wasm_bindgen(js_class = Host)]
impl WasmHost {
    /// Turns a guest's change log on with room for `capacity` pending changes (its
    /// first changes are the guest's whole current table). A full log refuses the call
    /// that would overflow it (`ChangeLogFull`, code 56) and changes nothing.
    #[wasm_bindgen(js_name = enableTranslationChanges)]
    pub fn enable_translation_changes(&mut self, guest: f64, capacity: f64) -> Out<()> {
        let capacity = args::int("capacity", capacity, u32::MAX)?;
        Ok(self
            .host
            .enable_translation_changes(guest_id(guest)?, capacity)?)
    }

    /// Turns a guest's change log off (pending changes are dropped).
    #[wasm_bindgen(js_name = disableTranslationChanges)]
    pub fn disable_translation_changes(&mut self, guest: f64) -> Out<()> {
        Ok(self.host.disable_translation_changes(guest_id(guest)?)?)
    }

    /// How many changes wait, or `undefined` when the log is off.
    #[wasm_bindgen(js_name = pendingTranslationChanges)]
    pub fn pending_translation_changes(&self, guest: f64) -> Out<Option<u32>> {
        let pending = self.host.pending_translation_changes(guest_id(guest)?)?;
        Ok(pending.map(|n| n as u32))
    }

    /// Takes every pending change, in apply order: `[{gpasid, hpasid}]`, `hpasid` null
    /// for an entry to clear.
    #[wasm_bindgen(js_name = drainTranslationChanges)]
    pub fn drain_translation_changes(&mut self, guest: f64) -> Out<JsValue> {
        to_js(&self.drain_changes(guest)?)
    }

    /// The guest's whole current table as changes, `[{gpasid, hpasid}]` by gPASID: what
    /// a consumer starting from an empty table applies to catch up.
    #[wasm_bindgen(js_name = translationEntries)]
    pub fn translation_entries(&self, guest: f64) -> Out<JsValue> {
        to_js(&self.entries(guest)?)
    }

    /// `destroyGuest`, also reporting the guest's table changes in apply order:
    /// `{ entries, changes }`, `entries` as `destroyGuest` returns them, `changes` the
    /// pending log (if on) and then `{gpasid, hpasid: null}` for every entry left. On a
    /// thrown error nothing changed.
    #[wasm_bindgen(js_name = destroyGuestReportingChanges)]
    pub fn destroy_guest_reporting_changes(&mut self, guest: f64) -> Out<JsValue> {
        to_js(&self.destroy_reporting_changes(guest)?)
    }

    /// `importGuest`, starting the new guest's change log with room for `capacity`
    /// changes: its first changes are the whole new table (`{gpasid, hpasid}` for each
    /// shared gPASID on its new host PASID). Returns `{ guest, report }`; all or
    /// nothing, as `importGuest`.
    #[wasm_bindgen(js_name = importGuestWithChangeLog)]
    pub fn import_guest_with_change_log(
        &mut self,
        blob: &[u8],
        rid_map: JsValue,
        capacity: f64,
    ) -> Out<JsValue> {
        let map = rid_map_arg(rid_map)?;
        to_js(&self.import_with_change_log(blob, &map, capacity)?)
    }
}

#[cfg(test)]
mod tests {
    use crate::test_support::p2_host;
    use pasid_core::{GuestId, TranslationChange};

    fn change(gpasid: u32, hpasid: Option<u32>) -> TranslationChange {
        TranslationChange { gpasid, hpasid }
    }

    #[test]
    fn the_change_stream_follows_allocations_and_frees() {
        let mut h = p2_host();
        let g = f64::from(h.create_guest("p2", 4.0).unwrap());
        assert_eq!(h.pending_translation_changes(g).unwrap(), None);
        let first = h.alloc_pasid(g, "shared").unwrap();
        h.enable_translation_changes(g, 8.0).unwrap();
        let p = h.alloc_pasid(g, "shared").unwrap();
        assert_eq!(h.pending_translation_changes(g).unwrap(), Some(2));
        h.host.free(GuestId(g as u32), p).unwrap();
        assert_eq!(
            h.drain_changes(g).unwrap(),
            [
                change(first, Some(4096)),
                change(p, Some(4097)),
                change(p, None)
            ]
        );
        assert_eq!(h.entries(g).unwrap(), [change(first, Some(4096))]);
        assert!(h.enable_translation_changes(g, -1.0).is_err());
        assert!(h.enable_translation_changes(12345.0, 8.0).is_err());
        assert!(h.drain_changes(12345.0).is_err());
    }

    #[test]
    fn destroy_and_import_report_their_changes() {
        let mut a = p2_host();
        let g = f64::from(a.create_guest("p2", 4.0).unwrap());
        a.attach(g, "00:0a.0", "shared-wq").unwrap();
        let p = a.alloc_pasid(g, "shared").unwrap();
        let q = a.alloc_pasid(g, "shared").unwrap();
        a.bind(g, p.into(), "00:0a.0").unwrap();
        let blob = a.export_guest(g).unwrap();

        // Destroy: the pending log first, then every entry left invalid.
        a.enable_translation_changes(g, 8.0).unwrap();
        a.host.free(GuestId(g as u32), q).unwrap();
        let before = a.core().snapshot();
        assert!(a.destroy_reporting_changes(12345.0).is_err());
        assert_eq!(a.core().snapshot(), before);
        let d = a.destroy_reporting_changes(g).unwrap();
        assert_eq!(
            d.changes,
            [
                change(p, Some(4096)),
                change(q, Some(4097)),
                change(q, None),
                change(p, None)
            ]
        );
        assert_eq!(d.entries.len(), 1);
        assert!(a.core().guests().next().is_none());

        // Import: the new guest's log starts with its whole table.
        let mut b = p2_host();
        let map = vec![vec!["00:0a.0".to_string(), "00:0a.0".to_string()]];
        let before = b.core().snapshot();
        assert!(b.import_with_change_log(&blob, &map, -1.0).is_err());
        assert!(b.import_with_change_log(&blob[1..], &map, 8.0).is_err());
        assert_eq!(b.core().snapshot(), before);
        let imported = b.import_with_change_log(&blob, &map, 8.0).unwrap();
        let g2 = f64::from(imported.guest);
        assert_eq!(
            b.drain_changes(g2).unwrap(),
            [change(p, Some(4096)), change(q, Some(4097))]
        );
        assert_eq!(b.pending_translation_changes(g2).unwrap(), Some(0));
    }
}
