//! PCIe PASID allocation and guest-to-host PASID remapping for virtual machines.
//!
//! A host splits its 20-bit PASID space in two (see [`PasidLayout`]):
//!
//! * the **local range** is every guest's PASID range. RID-local PASIDs of devices
//!   dedicated to one guest (SR-IOV VFs) are programmed exactly as the guest chose them,
//!   so a guest migrates without renumbering;
//! * the **shared range** holds host-global PASIDs for shared work queues (ENQCMD).
//!   A guest asking for a shared PASID still gets a guest PASID (gPASID) in its local
//!   range, and the guest's translation table maps it to the host PASID (hPASID).
//!
//! On platform [`Platform::P1`] (no shared work queues) the guest picks PASIDs per RID
//! itself and the host only records them; on [`Platform::P2`] the vIOMMU offers an
//! allocation interface and every request says [`PasidKind::Local`] or
//! [`PasidKind::Shared`].
//!
//! ```
//! use pasid_core::{DeviceKind, GuestConfig, Host, PasidKind, PasidLayout, Platform, Rid};
//!
//! let layout = PasidLayout::new(20, 1..4096, 4096..1 << 19)?;
//! let mut host = Host::new(layout.clone(), Platform::P2)?;
//! let guest = host.create_guest(GuestConfig::p2(64))?;
//! let vf = Rid::new(0, 0x0301);
//! let dsa_wq = Rid::new(0, 0x0a00);
//! host.attach(guest, vf, DeviceKind::Dedicated)?;
//! host.attach(guest, dsa_wq, DeviceKind::SharedWq)?;
//!
//! let local = host.alloc(guest, PasidKind::Local)?;
//! let shared = host.alloc(guest, PasidKind::Shared)?;
//! assert!(layout.local().contains(&local) && layout.local().contains(&shared));
//!
//! // ENQCMD in the guest writes `shared`; the CPU turns it into the host PASID.
//! let hpasid = host.translate(guest, shared)?;
//! assert!(layout.shared().contains(&hpasid));
//!
//! // What to program into the host IOMMU for each device:
//! assert_eq!(host.bind(guest, shared, dsa_wq)?, hpasid); // shared WQ: the host PASID
//! assert_eq!(host.bind(guest, shared, vf)?, shared); // dedicated VF: the guest's number
//! # Ok::<(), pasid_core::Error>(())
//! ```
#![no_std]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

extern crate alloc;

mod bitmap;
pub mod changes;
pub mod contract;
mod error;
pub mod host;
pub mod hwtable;
mod layout;
pub mod lease;
pub mod migrate;
mod remap;
mod snapshot;
mod sorted;
pub mod source;
mod types;
pub mod vcmd;

/// Helpers shared by the unit tests.
#[cfg(test)]
mod test_support {
    extern crate std;

    /// Property-test cases: `PROPTEST_CASES` when set (what `scripts/harden.sh` sets
    /// for Miri), else `default`.
    pub(crate) fn proptest_cases(default: u32) -> u32 {
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(default)
    }
}

pub use bitmap::IdBitmap;
pub use changes::TranslationChange;
pub use contract::GuestContract;
pub use error::{Error, ErrorCode, Result};
pub use host::Host;
pub use layout::{PasidLayout, RangeName, MAX_PASID_WIDTH};
pub use remap::PagesTouched;
pub use snapshot::{DeviceSnapshot, GuestSnapshot, HostSnapshot, PasidSnapshot, ProgrammedPasid};
pub use source::{HostPasidSource, SourceError};
pub use types::{
    DeviceKind, Draining, GuestConfig, GuestId, PasidKind, Platform, ProgrammedEntry, Rid,
};

/// What the crate's own benchmarks (`core/benches`) time beyond the API: the
/// translation map alone, beside `Host::translate`. Not part of the API (hidden from
/// the docs, no semver promise).
#[doc(hidden)]
pub mod bench_internals {
    pub use crate::remap::RemapTable;
}
