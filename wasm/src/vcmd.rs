//! The VT-d virtual command registers of a guest's vIOMMU (VCCAP, VCMD, VCRSP) as raw
//! register values, in both revisions.

use pasid_core::vcmd::{
    VtdRevision, ALLOC_OPERAND_LOCAL, CMD_ALLOC, CMD_FREE, ECAP_VCS, VCCAP_PAS,
};
use wasm_bindgen::prelude::*;

use crate::args;
use crate::errors::{to_js, Out};
use crate::host::{guest_id, WasmHost};

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
    /// ECAP bit that says the unit has virtual commands (VCS, 44).
    pub ecap_vcs_bit: u32,
    /// VCCAP bit that says PASID allocation is offered (PAS, 0).
    pub vccap_pas_bit: u32,
    /// Command code of ALLOC (1).
    pub cmd_alloc: u8,
    /// Command code of FREE (2).
    pub cmd_free: u8,
    /// This project's extension, not the spec's: ALLOC with this operand (1) asks for
    /// a local PASID; the spec's operand 0 gives a shared one.
    pub alloc_operand_local_extension: u64,
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
        ecap_vcs_bit: ECAP_VCS.trailing_zeros(),
        vccap_pas_bit: VCCAP_PAS.trailing_zeros(),
        cmd_alloc: CMD_ALLOC,
        cmd_free: CMD_FREE,
        alloc_operand_local_extension: ALLOC_OPERAND_LOCAL,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::Fail;
    use crate::test_support::p2_host;

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
}
