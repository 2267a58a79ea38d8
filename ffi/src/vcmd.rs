//! VT-d virtual command (VCMD) emulation for a vIOMMU: register values in and out.
//!
//! A vIOMMU's MMIO handler asks `pasid_vcmd_register_at` which register an offset is,
//! answers VCCAP reads with `pasid_vcap`, forwards VCMD writes to `pasid_vcmd`, keeps
//! the returned VCRSP value and returns it on VCRSP reads. ECAP must also advertise
//! `PASID_ECAP_VCS`.

use core::ffi::c_int;

use pasid_core::vcmd::{self, VcmdRegister, VtdRevision};
use pasid_core::GuestId;

use crate::boundary::{call, reply, with_host, Out, OutOpt};
use crate::pasid_host;
use crate::types::*;

/// ECAP_REG bit 44 (VCS): the remapping unit supports virtual commands.
pub const PASID_ECAP_VCS: u64 = 0x0000_1000_0000_0000;
/// VCCAP_REG bit 0 (PAS): PASID allocation is offered (p2 guests).
pub const PASID_VCCAP_PAS: u64 = 0x1;
/// VCMD command code (bits 7:0): allocate a PASID.
pub const PASID_VCMD_ALLOC: u8 = 1;
/// VCMD command code (bits 7:0): free the PASID in the operand.
pub const PASID_VCMD_FREE: u8 = 2;
/// Our extension: ALLOC with this operand allocates a local PASID; operand 0 (the
/// spec's ALLOC) allocates a shared one.
pub const PASID_VCMD_ALLOC_OPERAND_LOCAL: u64 = 1;
/// VCRSP bit 0 (IP): command in progress. Never set: commands complete at once.
pub const PASID_VCRSP_IP: u64 = 0x1;
/// VCRSP status code: success.
pub const PASID_VCMD_SC_SUCCESS: u8 = 0;
/// VCRSP status code: undefined command (also: any command from a p1 guest, a
/// reserved bit set, an ALLOC operand other than 0 or 1).
pub const PASID_VCMD_SC_UNDEFINED_COMMAND: u8 = 1;
/// VCRSP status code on VT-d 3.0/3.1: no PASID available (ALLOC) / invalid PASID (FREE).
pub const PASID_VCMD_SC_NO_PASID_V3_0: u8 = 2;
/// VCRSP status code on VT-d 3.3: no PASID available (ALLOC) / invalid PASID (FREE).
pub const PASID_VCMD_SC_NO_PASID_V3_3: u8 = 16;

const _: () = {
    assert!(PASID_ECAP_VCS == vcmd::ECAP_VCS);
    assert!(PASID_VCCAP_PAS == vcmd::VCCAP_PAS);
    assert!(PASID_VCMD_ALLOC == vcmd::CMD_ALLOC);
    assert!(PASID_VCMD_FREE == vcmd::CMD_FREE);
    assert!(PASID_VCMD_ALLOC_OPERAND_LOCAL == vcmd::ALLOC_OPERAND_LOCAL);
    assert!(PASID_VCRSP_IP == vcmd::VCRSP_IP);
    assert!(PASID_VCMD_SC_SUCCESS == VtdRevision::SC_SUCCESS);
    assert!(PASID_VCMD_SC_UNDEFINED_COMMAND == VtdRevision::SC_UNDEFINED_COMMAND);
    assert!(PASID_VCMD_SC_NO_PASID_V3_0 == VtdRevision::V3_0.sc_no_pasid_available());
    assert!(PASID_VCMD_SC_NO_PASID_V3_3 == VtdRevision::V3_3.sc_no_pasid_available());
};

/// Which revision of the VT-d virtual command registers a vIOMMU exposes: the
/// `revision` arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum pasid_vtd_revision {
    /// VT-d 3.0/3.1: VCCAP 0xE00, VCMD 0xE10, VCRSP 0xE20; operand and result PASID
    /// in bits 27:8; status in bits 2:1.
    V30 = 30,
    /// VT-d 3.3 and later (the default choice): VCMD 0xE00, VCRSP 0xE10, VCCAP 0xE30;
    /// operand and result PASID in bits 35:16; status in bits 7:1.
    V33 = 33,
}

/// One of the three virtual command registers (`pasid_vcmd_register_at`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum pasid_vcmd_register {
    /// Not a virtual command register.
    None = 0,
    /// Virtual Command Capability register (read only): answer with `pasid_vcap`.
    Vccap = 1,
    /// Virtual Command register: forward writes to `pasid_vcmd`.
    Vcmd = 2,
    /// Virtual Command Response register (read only): the last `pasid_vcmd` result.
    Vcrsp = 3,
}

/// The MMIO offsets of the three registers in one revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct pasid_vcmd_offsets {
    /// VCCAP_REG.
    pub vccap: u32,
    /// VCMD_REG.
    pub vcmd: u32,
    /// VCRSP_REG.
    pub vcrsp: u32,
    /// Bit position of the operand in VCMD and of the result PASID in VCRSP.
    pub operand_shift: u32,
}

/// A decoded VCRSP value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct pasid_vcmd_response {
    /// IP, bit 0.
    pub in_progress: bool,
    /// SC: bits 2:1 (3.0) or 7:1 (3.3); `PASID_VCMD_SC_*`.
    pub status: u8,
    /// The result PASID field: bits 27:8 (3.0) or 35:16 (3.3).
    pub pasid: u32,
}

c_enum!(VtdRevision, pasid_vtd_revision, "revision", "PASID_VTD_REVISION_*": V3_0 = V30, V3_3 = V33);

/// The register offsets and operand position of a revision. Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_vcmd_get_offsets(
    revision: u32,
    out_offsets: *mut pasid_vcmd_offsets,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        reply(Out(out_offsets, "out_offsets"), || {
            let rev = VtdRevision::from_c(revision)?;
            Ok(pasid_vcmd_offsets {
                vccap: rev.vccap_offset(),
                vcmd: rev.vcmd_offset(),
                vcrsp: rev.vcrsp_offset(),
                operand_shift: rev.operand_shift(),
            })
        })
    })
}

/// Which virtual command register (`PASID_VCMD_REGISTER_*`) lives at an MMIO offset of
/// the remapping unit: `PASID_VCMD_REGISTER_NONE` for any other offset. Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_vcmd_register_at(
    revision: u32,
    offset: u32,
    out_register: *mut u32,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        reply(Out(out_register, "out_register"), || {
            Ok(match VtdRevision::from_c(revision)?.register_at(offset) {
                None => pasid_vcmd_register::None,
                Some(VcmdRegister::Vccap) => pasid_vcmd_register::Vccap,
                Some(VcmdRegister::Vcmd) => pasid_vcmd_register::Vcmd,
                Some(VcmdRegister::Vcrsp) => pasid_vcmd_register::Vcrsp,
            } as u32)
        })
    })
}

/// The VCMD value a guest writes for a command code (`PASID_VCMD_ALLOC`, ...) and
/// operand, in a revision's layout: what a guest driver does, for tests and tools.
/// Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_vcmd_encode(
    revision: u32,
    code: u8,
    operand: u64,
    out_command: *mut u64,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        reply(Out(out_command, "out_command"), || {
            Ok(VtdRevision::from_c(revision)?.command(code, operand))
        })
    })
}

/// Decodes a VCRSP value in a revision's layout. Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_vcmd_decode_response(
    revision: u32,
    vcrsp: u64,
    out_response: *mut pasid_vcmd_response,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        reply(Out(out_response, "out_response"), || {
            let r = VtdRevision::from_c(revision)?.decode_response(vcrsp);
            Ok(pasid_vcmd_response {
                in_progress: r.in_progress,
                status: r.status,
                pasid: r.pasid,
            })
        })
    })
}

/// The guest's VCCAP_REG value: `PASID_VCCAP_PAS` for a p2 guest, 0 for a p1 guest.
/// Thread-safe.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_vcap(
    host: *const pasid_host,
    guest: pasid_guest_id,
    revision: u32,
    out_vccap: *mut u64,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        reply(Out(out_vccap, "out_vccap"), || {
            let rev = VtdRevision::from_c(revision)?;
            with_host(host, |h| Ok(h.vcap(GuestId(guest), rev)?))
        })
    })
}

/// Runs the command a guest wrote to VCMD_REG and stores in `*out_vcrsp` the
/// VCRSP_REG value the guest reads back: status and result PASID exactly as the
/// revision lays them out.
///
/// Whatever the guest wrote, the call returns OK with a VCRSP value (a refused command
/// is a status code in VCRSP, see `PASID_VCMD_SC_*`); an error code means the VMM's
/// own mistake (unknown guest, bad revision, NULL) or no memory. `out_pages` may be
/// NULL; else it says which translation-table page changed (an ALLOC or FREE of a
/// shared PASID), for `pasid_write_touched_pages`. Thread-safe: call it straight from
/// a vCPU thread's MMIO handler.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn pasid_vcmd(
    host: *mut pasid_host,
    guest: pasid_guest_id,
    revision: u32,
    command: u64,
    out_vcrsp: *mut u64,
    out_pages: *mut pasid_pages_touched,
) -> c_int {
    // SAFETY: the header's pointer rule.
    call(|| unsafe {
        reply(
            (Out(out_vcrsp, "out_vcrsp"), OutOpt(out_pages, "out_pages")),
            || {
                let rev = VtdRevision::from_c(revision)?;
                with_host(host, |h| {
                    let (vcrsp, pages) = h.vcmd_reporting_pages(GuestId(guest), rev, command)?;
                    Ok((vcrsp, pages_to_c(pages)))
                })
            },
        )
    })
}
