//! VT-d virtual command (VCMD) emulation: register value in, register value out.
//!
//! A guest on platform p2 asks its vIOMMU for PASIDs through three 64-bit registers in
//! the remapping unit's MMIO page. Linux used them as a guest from v5.8 ("Enlightened
//! PASID allocation", `vcmd_alloc_pasid` / `vcmd_free_pasid` in
//! drivers/iommu/intel/pasid.c) until 6.4. Two layouts exist ([`VtdRevision`]):
//!
//! | | VT-d 3.0/3.1 (§10.4.42-45) | VT-d 3.3 (§10.4.43-46) |
//! |---|---|---|
//! | VCCAP | 0xE00 | 0xE30 |
//! | VCMD | 0xE10 | 0xE00 |
//! | VCRSP | 0xE20 | 0xE10 |
//! | command | bits 7:0: 1 = ALLOC, 2 = FREE | same |
//! | operand (FREE's PASID) | bits 63:8 (PASID in 27:8) | bits 63:16 (PASID in 35:16) |
//! | response | IP bit 0, SC bits 2:1, PASID 27:8 | IP bit 0, SC bits 7:1, PASID 35:16 |
//! | SC "no PASID available" / "invalid PASID" | 2 | 16 |
//!
//! * ECAP bit 44 ([`ECAP_VCS`]) says the unit has virtual commands;
//!   VCCAP bit 0 ([`VCCAP_PAS`]) says PASID allocation is among them.
//! * [`Host::vcap`] gives the guest's VCCAP: PAS set for a p2 guest, clear for p1.
//! * [`Host::vcmd`] runs one command written to VCMD and returns the VCRSP value the
//!   guest then reads. Commands complete at once, so IP (bit 0) is always clear; the
//!   VMM keeps the value and returns it on every VCRSP read until the next command.
//!
//! ```
//! use pasid_core::vcmd::{VtdRevision, VCCAP_PAS};
//! use pasid_core::{GuestConfig, Host, PasidLayout, Platform};
//!
//! let mut host = Host::new(PasidLayout::new(20, 1..4096, 4096..1 << 19)?, Platform::P2)?;
//! let g = host.create_guest(GuestConfig::p2(8))?;
//! let rev = VtdRevision::V3_3;
//! assert_eq!(host.vcap(g, rev)?, VCCAP_PAS);
//! // The guest writes ALLOC (1) to VCMD and reads VCRSP: gPASID 1 in bits 35:16.
//! let vcrsp = host.vcmd(g, rev, 0x1)?;
//! assert_eq!(vcrsp, 0x1_0000);
//! assert!(host.translate(g, 1).is_ok()); // shared: backed by a host PASID
//! // FREE (2) of gPASID 1, then again: "invalid PASID", SC 16 in bits 7:1.
//! assert_eq!(host.vcmd(g, rev, 0x1_0002)?, 0);
//! assert_eq!(host.vcmd(g, rev, 0x1_0002)?, 16 << 1);
//! # Ok::<(), pasid_core::Error>(())
//! ```
//!
//! # Sources
//!
//! * Offsets, bit fields and status codes: Linux `include/linux/intel-iommu.h` and
//!   `drivers/iommu/intel/pasid.h` (`DMAR_VCCAP_REG`, `DMAR_VCMD_REG`, `DMAR_VCRSP_REG`,
//!   `VCMD_CMD_ALLOC` 1, `VCMD_CMD_FREE` 2, `VCMD_VRSP_IP` 1, `VCMD_VRSP_SC`,
//!   `VCMD_VRSP_RESULT_PASID`, `VCMD_CMD_OPERAND`). The 3.0 values are those of v5.8
//!   ("iommu/vt-d: Enlightened PASID allocation") with the fix "iommu/vt-d: Fix status
//!   code for Allocate/Free PASID command" (2021: "as per VT-d spec Rev 3.0 section
//!   10.4.45 ... the status code of 'No PASID available' ... is 2, not 1"); the 3.3
//!   values are from "iommu/vt-d: Update the virtual command related registers"
//!   (upstream 4d99efb229e6, 2021: "The VT-d spec Revision 3.3 updated the virtual
//!   command registers ... (Section 10.4.43, 10.4.44, 10.4.45, 10.4.46)"), which moved
//!   the registers to 0xE00/0xE10/0xE30, the SC field to bits 7:1 with value 16, and the
//!   operand/result to bit 16. Linux removed the guest side in "iommu/vt-d: Remove unused
//!   vcmd interfaces" (2023) after the ioasid infrastructure went in 6.4.
//! * ECAP.VCS bit 44 (`ecap_vcs`) and VCCAP.PAS bit 0 (`DMA_VCS_PAS`): same headers.
//! * Linux as a guest writes ALLOC with operand 0, polls IP, and treats any status
//!   other than success and 16 (2 on 3.0) as an unexpected error.
//!
//! Not verified: the spec's own text for a status code meaning "undefined command"
//! (the table in the design brief gives 1 for 3.0); we use 1 in both revisions.
//!
//! # Our choices where the spec leaves room
//!
//! * **Local/shared extension.** ALLOC's operand is unused by the spec (it must be 0):
//!   operand 0 allocates a **shared** PASID, as the spec's ALLOC does (the guest gets
//!   its gPASID; the host maps it to a host PASID). Operand 1
//!   ([`ALLOC_OPERAND_LOCAL`]) allocates a **local** PASID (no host PASID).
//! * **Undefined command** ([`VtdRevision::SC_UNDEFINED_COMMAND`], status 1): command
//!   codes other than 1 and 2; ALLOC with an operand other than 0 or 1; on 3.3, a set
//!   reserved bit 15:8; and any command from a p1 guest, whose VCCAP.PAS is clear.
//! * **No PASID available** for ALLOC when the guest's quota is reached, the guest range
//!   is full or the host's shared range is full.
//! * **Invalid PASID** for FREE of a PASID the guest does not hold, outside the guest
//!   range, with operand bits above the 20-bit PASID set, or still bound to a device.
//! * A failed command changes nothing, in this guest or any other. `Err` is returned only
//!   for what the guest cannot cause: an unknown guest id, or the host out of memory.

use crate::error::{Error, Result};
use crate::remap::PagesTouched;
use crate::types::{GuestId, PasidKind, Platform};
use crate::Host;

/// ECAP_REG bit 44, VCS: the remapping unit supports virtual commands.
pub const ECAP_VCS: u64 = 1 << 44;

/// VCCAP_REG bit 0, PAS: PASID allocation (ALLOC/FREE) is supported.
pub const VCCAP_PAS: u64 = 1 << 0;

/// Command code of "allocate PASID" (VCMD bits 7:0).
pub const CMD_ALLOC: u8 = 1;

/// Command code of "free PASID" (VCMD bits 7:0).
pub const CMD_FREE: u8 = 2;

/// Our extension: ALLOC with this operand allocates a local PASID (0 means shared).
pub const ALLOC_OPERAND_LOCAL: u64 = 1;

/// VCRSP bit 0, IP: command in progress. Never set by this emulation.
pub const VCRSP_IP: u64 = 1 << 0;

const PASID_MASK: u64 = (1 << 20) - 1;

/// Which revision of the VT-d virtual command registers a vIOMMU exposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum VtdRevision {
    /// VT-d 3.0 and 3.1 (spec sections 10.4.42-45).
    V3_0,
    /// VT-d 3.3 and later (spec sections 10.4.43-46). The default.
    #[default]
    V3_3,
}

/// One of the three virtual command registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VcmdRegister {
    /// Virtual Command Capability register (read only).
    Vccap,
    /// Virtual Command register (written by the guest).
    Vcmd,
    /// Virtual Command Response register (read only).
    Vcrsp,
}

/// A decoded VCRSP value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    /// IP, bit 0.
    pub in_progress: bool,
    /// SC: bits 2:1 (3.0) or 7:1 (3.3).
    pub status: u8,
    /// The result PASID field: bits 27:8 (3.0) or 35:16 (3.3).
    pub pasid: u32,
}

impl VtdRevision {
    /// Status code: success.
    pub const SC_SUCCESS: u8 = 0;
    /// Status code: undefined command (our use of it is described in the module docs).
    pub const SC_UNDEFINED_COMMAND: u8 = 1;

    /// MMIO offset of VCCAP_REG.
    pub const fn vccap_offset(self) -> u32 {
        match self {
            VtdRevision::V3_0 => 0xE00,
            VtdRevision::V3_3 => 0xE30,
        }
    }

    /// MMIO offset of VCMD_REG.
    pub const fn vcmd_offset(self) -> u32 {
        match self {
            VtdRevision::V3_0 => 0xE10,
            VtdRevision::V3_3 => 0xE00,
        }
    }

    /// MMIO offset of VCRSP_REG.
    pub const fn vcrsp_offset(self) -> u32 {
        match self {
            VtdRevision::V3_0 => 0xE20,
            VtdRevision::V3_3 => 0xE10,
        }
    }

    /// Which register lives at an MMIO offset (8-byte aligned offsets only).
    pub const fn register_at(self, offset: u32) -> Option<VcmdRegister> {
        if offset == self.vccap_offset() {
            Some(VcmdRegister::Vccap)
        } else if offset == self.vcmd_offset() {
            Some(VcmdRegister::Vcmd)
        } else if offset == self.vcrsp_offset() {
            Some(VcmdRegister::Vcrsp)
        } else {
            None
        }
    }

    /// Bit position of the operand in VCMD and of the result PASID in VCRSP.
    pub const fn operand_shift(self) -> u32 {
        match self {
            VtdRevision::V3_0 => 8,
            VtdRevision::V3_3 => 16,
        }
    }

    /// Width of the SC field (bits 2:1 or 7:1).
    const fn status_bits(self) -> u32 {
        match self {
            VtdRevision::V3_0 => 2,
            VtdRevision::V3_3 => 7,
        }
    }

    /// Status code: ALLOC found no PASID available.
    pub const fn sc_no_pasid_available(self) -> u8 {
        match self {
            VtdRevision::V3_0 => 2,
            VtdRevision::V3_3 => 16,
        }
    }

    /// Status code: FREE was given an invalid PASID.
    pub const fn sc_invalid_pasid(self) -> u8 {
        self.sc_no_pasid_available()
    }

    /// The VCMD value for a command code and operand.
    pub const fn command(self, code: u8, operand: u64) -> u64 {
        (operand << self.operand_shift()) | code as u64
    }

    /// Decodes a VCRSP value.
    pub const fn decode_response(self, vcrsp: u64) -> Response {
        Response {
            in_progress: vcrsp & VCRSP_IP != 0,
            status: ((vcrsp >> 1) & ((1 << self.status_bits()) - 1)) as u8,
            pasid: ((vcrsp >> self.operand_shift()) & PASID_MASK) as u32,
        }
    }

    const fn status(self, sc: u8) -> u64 {
        ((sc as u64) & ((1 << self.status_bits()) - 1)) << 1
    }

    const fn success(self, pasid: u32) -> u64 {
        ((pasid as u64) & PASID_MASK) << self.operand_shift()
    }
}

impl<S: crate::source::HostPasidSource> Host<S> {
    /// The guest's VCCAP_REG value: [`VCCAP_PAS`] for a p2 guest, 0 for a p1 guest.
    /// The same in both revisions (only the register's offset differs).
    pub fn vcap(&self, guest: GuestId, rev: VtdRevision) -> Result<u64> {
        let _ = rev;
        Ok(match self.guest(guest)?.config.platform {
            Platform::P1 => 0,
            Platform::P2 => VCCAP_PAS,
        })
    }

    /// Runs the command the guest wrote to VCMD_REG and returns the VCRSP_REG value it
    /// reads back (see the module docs for every case).
    pub fn vcmd(&mut self, guest: GuestId, rev: VtdRevision, command: u64) -> Result<u64> {
        self.vcmd_reporting_pages(guest, rev, command)
            .map(|(response, _)| response)
    }

    /// [`Host::vcmd`], also telling which translation-table pages changed (an ALLOC of a
    /// shared PASID or a FREE of one), so the VMM rewrites only those.
    pub fn vcmd_reporting_pages(
        &mut self,
        guest: GuestId,
        rev: VtdRevision,
        command: u64,
    ) -> Result<(u64, Option<PagesTouched>)> {
        let platform = self.guest(guest)?.config.platform;
        let undefined = Ok((rev.status(VtdRevision::SC_UNDEFINED_COMMAND), None));
        if platform != Platform::P2 {
            return undefined;
        }
        let shift = rev.operand_shift();
        // 3.3 leaves bits 15:8 reserved between the command code and the operand.
        let reserved = command & ((1u64 << shift) - 1) & !0xff;
        if reserved != 0 {
            return undefined;
        }
        let operand = command >> shift;
        match (command & 0xff) as u8 {
            CMD_ALLOC => {
                let kind = match operand {
                    0 => PasidKind::Shared,
                    ALLOC_OPERAND_LOCAL => PasidKind::Local,
                    _ => return undefined,
                };
                match self.alloc_reporting_pages(guest, kind) {
                    Ok((gpasid, pages)) => Ok((rev.success(gpasid), pages)),
                    Err(
                        Error::QuotaExceeded { .. }
                        | Error::GuestRangeExhausted
                        | Error::SharedRangeExhausted
                        | Error::Source { .. },
                    ) => Ok((rev.status(rev.sc_no_pasid_available()), None)),
                    Err(e) => Err(e),
                }
            }
            CMD_FREE => {
                let invalid = Ok((rev.status(rev.sc_invalid_pasid()), None));
                if operand & !PASID_MASK != 0 {
                    return invalid;
                }
                match self.free_reporting_pages(guest, operand as u32) {
                    Ok(pages) => Ok((rev.status(VtdRevision::SC_SUCCESS), pages)),
                    Err(
                        Error::PasidOutOfRange { .. }
                        | Error::NotAllocated { .. }
                        | Error::Draining { .. }
                        | Error::StillBound { .. },
                    ) => invalid,
                    Err(e) => Err(e),
                }
            }
            _ => undefined,
        }
    }
}
