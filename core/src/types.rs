//! Small value types shared by every module.

use core::fmt;

/// Whether the platform has shared work queues, which decides the vIOMMU's interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Platform {
    /// No shared work queue: the vIOMMU offers no PASID allocation, the guest picks
    /// PASIDs per RID itself and the host records them ([`crate::Host::record`]).
    P1,
    /// Shared work queues present: the vIOMMU offers PASID allocation and every request
    /// says local or shared ([`crate::Host::alloc`]).
    P2,
}

/// What a guest PASID is for, chosen by the guest when it asks for one on p2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum PasidKind {
    /// Used only on dedicated RIDs: programmed as the guest's own number.
    Local,
    /// Usable on shared work queues too: backed by a host-global PASID.
    Shared,
}

/// How a guest uses a host RID. One RID may carry both uses at once (a DSA function
/// with a dedicated and a shared work queue), each for any guest the rules allow: one
/// guest at most may use a RID as [`DeviceKind::Dedicated`] (its local-range PASIDs are
/// programmed as they are), any number of p2 guests may use it as
/// [`DeviceKind::SharedWq`] (they program host PASIDs from the shared range, unique on
/// the machine). The ranges are disjoint, so the two uses never collide on one RID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum DeviceKind {
    /// An SR-IOV VF, a whole PF or a dedicated WQ of one guest: the guest's PASIDs
    /// are programmed unchanged, so at most one guest has this use of a RID.
    Dedicated,
    /// A shared work queue (ENQCMD) or a SIOV assignable interface on a shared RID:
    /// programmed with host PASIDs, so any number of guests can use it at once.
    SharedWq,
}

/// Prints `dedicated` or `shared WQ`, as error messages use them.
impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeviceKind::Dedicated => "dedicated",
            DeviceKind::SharedWq => "shared WQ",
        })
    }
}

/// A PCI requester ID: segment plus bus/device/function.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Rid {
    /// PCI segment (domain).
    pub segment: u16,
    /// Bus in bits 15:8, device in bits 7:3, function in bits 2:0.
    pub bdf: u16,
}

impl Rid {
    /// A RID from a segment and a packed bus/device/function.
    pub const fn new(segment: u16, bdf: u16) -> Self {
        Rid { segment, bdf }
    }

    /// The bus number.
    pub const fn bus(self) -> u8 {
        (self.bdf >> 8) as u8
    }

    /// The device number (0..32).
    pub const fn device(self) -> u8 {
        ((self.bdf >> 3) & 0x1f) as u8
    }

    /// The function number (0..8).
    pub const fn function(self) -> u8 {
        (self.bdf & 0x7) as u8
    }
}

/// Prints the usual `ssss:bb:dd.f` form.
impl fmt::Display for Rid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{}",
            self.segment,
            self.bus(),
            self.device(),
            self.function()
        )
    }
}

impl fmt::Debug for Rid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A guest on one host. Stale ids (of a destroyed guest) are refused, never aliased:
/// the low 16 bits pick a slot and the high 16 bits count its reuses. A slot whose
/// count would wrap is retired for the life of the host, so no id ever names two
/// guests (65,535 guests per slot, 2^16 slots).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct GuestId(pub u32);

impl fmt::Display for GuestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "guest {:#x}", self.0)
    }
}

/// How a guest is set up when it is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct GuestConfig {
    /// The interface the guest's vIOMMU offers. It is guest-visible state, so it
    /// stays what it was when the guest migrates: a p1 guest on a p2 host stays p1.
    pub platform: Platform,
    /// How many host (shared) PASIDs the guest may hold at once.
    pub shared_quota: u32,
}

impl GuestConfig {
    /// A guest whose vIOMMU offers PASID allocation, with a cap on shared PASIDs.
    pub const fn p2(shared_quota: u32) -> Self {
        GuestConfig {
            platform: Platform::P2,
            shared_quota,
        }
    }

    /// A guest that picks its PASIDs per RID itself (no shared PASIDs).
    pub const fn p1() -> Self {
        GuestConfig {
            platform: Platform::P1,
            shared_quota: 0,
        }
    }
}

/// A guest PASID that no longer translates but whose numbers the hardware may still
/// hold: its host PASID (and the gPASID itself) are not handed out again until the VMM
/// confirms the teardown with [`crate::Host::complete_teardown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Draining {
    /// The guest that held it (possibly destroyed since).
    pub guest: GuestId,
    /// The guest PASID.
    pub gpasid: u32,
    /// Its host PASID, for a shared gPASID.
    pub hpasid: Option<u32>,
}

/// A PASID-table entry the VMM programmed in the host IOMMU for a guest's binding,
/// which it must clear (and then flush the IOTLB and device TLB, and drain the WQ).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ProgrammedEntry {
    /// The host RID whose PASID table holds the entry.
    pub rid: Rid,
    /// The use of the RID the binding was for.
    pub kind: DeviceKind,
    /// The guest PASID that was bound (or recorded, on p1).
    pub gpasid: u32,
    /// The PASID in the entry: the gPASID on a dedicated use, its hPASID on a shared WQ.
    pub pasid: u32,
}
