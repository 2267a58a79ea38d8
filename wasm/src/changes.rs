//! The translation change stream ([`pasid_core::changes`]): what a VMM hands KVM, one
//! `{gpasid, hpasid}` pair at a time (`hpasid: null` clears the entry), in apply order.
//!
//! ```js
//! host.enableTranslationChanges(g, 64);        // starts with the guest's whole table
//! const p = host.allocPasid(g, 'shared');
//! host.drainTranslationChanges(g);             // [{ gpasid: p, hpasid: 4096 }]
//! host.freePasid(g, p);
//! host.drainTranslationChanges(g);             // [{ gpasid: p, hpasid: null }]
//! ```

use pasid_core::TranslationChange;
use wasm_bindgen::prelude::*;

use crate::args;
use crate::errors::{to_js, Out};
use crate::host::{guest_id, WasmHost};

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
        let mut out: Vec<TranslationChange> = Vec::new();
        self.host
            .drain_translation_changes(guest_id(guest)?, &mut out)?;
        to_js(&out)
    }
}

#[cfg(test)]
mod tests {
    use crate::test_support::p2_host;

    #[test]
    fn the_change_stream_follows_allocations_and_frees() {
        let mut h = p2_host();
        let g = f64::from(h.create_guest("p2", 4.0).unwrap());
        assert_eq!(h.pending_translation_changes(g).unwrap(), None);
        h.enable_translation_changes(g, 8.0).unwrap();
        let p = h.alloc_pasid(g, "shared").unwrap();
        let core = h.core().guests().next().unwrap();
        let mut out = Vec::new();
        assert_eq!(h.pending_translation_changes(g).unwrap(), Some(1));
        let mut host = h.core().clone();
        host.drain_translation_changes(core, &mut out).unwrap();
        assert_eq!((out[0].gpasid, out[0].hpasid.is_some()), (p, true));
        assert!(h.enable_translation_changes(g, -1.0).is_err());
        assert!(h.enable_translation_changes(12345.0, 8.0).is_err());
    }
}
