//! A read-only, owned picture of a host, for the playground, debugging and tests.

use alloc::vec::Vec;
use core::ops::Range;

use crate::host::Host;
use crate::types::{DeviceKind, Draining, GuestConfig, GuestId, PasidKind, Platform, Rid};

/// Everything a host holds, in a stable order (guests by slot, the rest ascending).
/// Two hosts with equal snapshots behave the same.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct HostSnapshot {
    /// PASID width in bits.
    pub width: u8,
    /// The local (guest) range.
    pub local: Range<u32>,
    /// The shared (host-global) range.
    pub shared: Range<u32>,
    /// The host's platform.
    pub platform: Platform,
    /// Host PASIDs this host holds: held by guests or draining.
    pub shared_in_use: u32,
    /// The guests.
    pub guests: Vec<GuestSnapshot>,
    /// Draining host PASIDs of guests destroyed since, by guest id and gPASID.
    pub orphans: Vec<Draining>,
}

/// One guest in a [`HostSnapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct GuestSnapshot {
    /// The guest's id.
    pub id: GuestId,
    /// Its configuration (platform, quota).
    pub config: GuestConfig,
    /// The gPASIDs it holds (p2), ascending.
    pub pasids: Vec<PasidSnapshot>,
    /// Its freed gPASIDs whose teardown is not confirmed, ascending.
    pub draining: Vec<Draining>,
    /// Its uses of RIDs, by RID, dedicated before shared WQ.
    pub devices: Vec<DeviceSnapshot>,
}

/// One gPASID of a guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct PasidSnapshot {
    /// The guest PASID.
    pub gpasid: u32,
    /// Local or shared.
    pub kind: PasidKind,
    /// The host PASID of a shared gPASID.
    pub hpasid: Option<u32>,
}

/// One device of a guest.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct DeviceSnapshot {
    /// The device's RID.
    pub rid: Rid,
    /// The use: dedicated or shared WQ.
    pub kind: DeviceKind,
    /// Bound (p2) or recorded (p1) gPASIDs with the PASID programmed for each.
    pub programmed: Vec<ProgrammedPasid>,
}

/// A gPASID on a device and the PASID the host IOMMU is programmed with for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ProgrammedPasid {
    /// The guest's PASID.
    pub gpasid: u32,
    /// What the host IOMMU holds: the gPASID on a dedicated RID, the hPASID on a shared WQ.
    pub programmed: u32,
}

impl<S: crate::source::HostPasidSource> Host<S> {
    /// An owned picture of the whole host.
    pub fn snapshot(&self) -> HostSnapshot {
        HostSnapshot {
            width: self.layout.width(),
            local: self.layout.local(),
            shared: self.layout.shared(),
            platform: self.platform,
            shared_in_use: self.host_pasids,
            guests: self
                .guests()
                .map(|id| self.guest_snapshot(id).expect("live guest"))
                .collect(),
            orphans: self.orphans.iter().collect(),
        }
    }

    /// An owned picture of one guest.
    pub fn guest_snapshot(&self, id: GuestId) -> crate::Result<GuestSnapshot> {
        let g = self.guest(id)?;
        let pasids = g
            .pasids
            .iter_used()
            .filter(|&gpasid| !g.is_draining(gpasid))
            .map(|gpasid| {
                let hpasid = g.remap.get(gpasid);
                PasidSnapshot {
                    gpasid,
                    kind: if hpasid.is_some() {
                        PasidKind::Shared
                    } else {
                        PasidKind::Local
                    },
                    hpasid,
                }
            })
            .collect();
        let devices = g
            .devices
            .iter()
            .map(|(&(rid, kind), d)| DeviceSnapshot {
                rid,
                kind,
                programmed: d
                    .pasids
                    .keys()
                    .map(|&gpasid| ProgrammedPasid {
                        gpasid,
                        programmed: g.programmed(gpasid, kind),
                    })
                    .collect(),
            })
            .collect();
        Ok(GuestSnapshot {
            id,
            config: g.config,
            pasids,
            draining: self.draining_of(id)?,
            devices,
        })
    }
}
