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

/// How a device function is given to a guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum DeviceKind {
    /// An SR-IOV VF or a whole PF owned by one guest: its PASID space is RID-local.
    Dedicated,
    /// A shared work queue (ENQCMD): needs host-global PASIDs.
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
/// the low 16 bits pick a slot and the high 16 bits count its reuses.
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
