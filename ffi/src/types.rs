//! The plain C types: structs passed by value or through pointers, and the constants
//! of the core's small enums. Conversions from C values are checked here, once.

#![allow(non_camel_case_types)]

use pasid_core::{DeviceKind, GuestConfig, PasidKind, PasidLayout, Platform, Rid};

use crate::error::FfiError;

/// A guest on one host: the number `pasid_guest_create` gave. Stale ids (of a
/// destroyed guest) are refused with `PASID_RESULT_NO_SUCH_GUEST`, never aliased.
pub type pasid_guest_id = u32;

/// Whether the platform has shared work queues: the `platform` arguments and fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum pasid_platform {
    /// No shared work queue: the vIOMMU offers no PASID allocation; the guest picks
    /// PASIDs per RID and the host records them (`pasid_record`).
    P1 = 1,
    /// Shared work queues present: the vIOMMU offers PASID allocation (`pasid_alloc`,
    /// VCMD) and every request says local or shared.
    P2 = 2,
}

/// What a guest PASID is for: the `kind` arguments of `pasid_alloc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum pasid_kind {
    /// Used only on dedicated RIDs: programmed as the guest's own number.
    Local = 1,
    /// Usable on shared work queues too: backed by a host-global PASID.
    Shared = 2,
}

/// How a device function is given to a guest: the `kind` argument of `pasid_attach`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum pasid_device_kind {
    /// An SR-IOV VF or a whole PF owned by one guest: its PASID space is RID-local.
    Dedicated = 1,
    /// A shared work queue (ENQCMD): needs host-global PASIDs.
    SharedWq = 2,
}

/// The `kind` of a `pasid_rid_mapping` that asks for no check of the destination
/// device: it takes the kind the guest's device had on the source. It must be said: a
/// zero `kind` (a zero-initialised entry) is refused, so a forgotten field never turns
/// the check off. Not a `PASID_DEVICE_KIND_*` value `pasid_attach` accepts.
pub const PASID_DEVICE_KIND_SAME_AS_SOURCE: u32 = 3;

/// A PASID layout: the PASID width and the two half-open ranges `[start, end)`.
///
/// The local range is every guest's PASID range (and the range of RID-local PASIDs);
/// the shared range holds host-global PASIDs. They must not overlap, must not include
/// PASID 0, and must end at or below 2^width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct pasid_layout {
    /// `sizeof` this struct, set by the caller (see "Struct sizes" in the header's
    /// introduction); the library sets it in structs it fills.
    pub size: u32,
    /// PASID width in bits, 1..=20 (VT-d ECAP.PSS + 1).
    pub width: u8,
    /// First PASID of the local (guest) range.
    pub local_start: u32,
    /// One past the last PASID of the local range.
    pub local_end: u32,
    /// First PASID of the shared (host-global) range.
    pub shared_start: u32,
    /// One past the last PASID of the shared range.
    pub shared_end: u32,
}

/// A PCI requester ID: segment plus packed bus/device/function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct pasid_rid {
    /// PCI segment (domain).
    pub segment: u16,
    /// Bus in bits 15:8, device in bits 7:3, function in bits 2:0.
    pub bdf: u16,
}

/// How a guest is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct pasid_guest_config {
    /// `sizeof` this struct, set by the caller (see "Struct sizes" in the header's
    /// introduction); the library sets it in structs it fills.
    pub size: u32,
    /// The interface of the guest's vIOMMU: a `PASID_PLATFORM_*` value. It is
    /// guest-visible and stays the same when the guest migrates.
    pub platform: u32,
    /// How many host (shared) PASIDs the guest may hold at once (0 for p1 guests).
    pub shared_quota: u32,
}

/// Which 4 KiB pages of a guest's PASID translation an update changed, so a VMM
/// rewrites only those (see `pasid_write_translation_table`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct pasid_pages_touched {
    /// Whether any page changed (false: a local PASID, nothing to write back).
    pub changed: bool,
    /// Whether the table is new, so its PASID-directory entry changed too.
    pub directory_changed: bool,
    /// The PASID-translation table that changed: gPASID >> 10.
    pub table: u32,
}

/// A summary of a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct pasid_host_info {
    /// `sizeof` this struct, set by the caller (see "Struct sizes" in the header's
    /// introduction); the library sets it in structs it fills.
    pub size: u32,
    /// The host's layout.
    pub layout: pasid_layout,
    /// The host's platform: a `PASID_PLATFORM_*` value.
    pub platform: u32,
    /// Shared (host-global) PASIDs in use.
    pub shared_in_use: u32,
    /// Shared PASIDs free.
    pub shared_free: u32,
    /// Live guests.
    pub guests: u32,
    /// Heap bytes the host holds.
    pub heap_bytes: usize,
}

/// A summary of one guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct pasid_guest_info {
    /// `sizeof` this struct, set by the caller (see "Struct sizes" in the header's
    /// introduction); the library sets it in structs it fills.
    pub size: u32,
    /// The guest's configuration.
    pub config: pasid_guest_config,
    /// Shared PASIDs it holds (what its quota limits).
    pub shared_held: u32,
    /// gPASIDs it holds, of both kinds (p2 guests).
    pub pasids: u32,
    /// Devices attached to it.
    pub devices: u32,
}

/// One gPASID a guest holds (`pasid_guest_pasids`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct pasid_guest_pasid {
    /// The guest PASID.
    pub gpasid: u32,
    /// A `PASID_KIND_*` value.
    pub kind: u32,
    /// The host PASID of a shared gPASID; 0 (never a valid PASID) for a local one.
    pub hpasid: u32,
}

/// One device of a guest (`pasid_guest_devices`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct pasid_device_info {
    /// The device's RID.
    pub rid: pasid_rid,
    /// A `PASID_DEVICE_KIND_*` value.
    pub kind: u32,
    /// How many PASIDs are bound (p2) or recorded (p1) on it.
    pub programmed: u32,
}

/// A gPASID on a device and the PASID the host IOMMU is programmed with for it
/// (`pasid_device_programmed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct pasid_programmed {
    /// The guest's PASID.
    pub gpasid: u32,
    /// What the host IOMMU holds: the gPASID on a dedicated RID, the hPASID on a
    /// shared work queue.
    pub programmed: u32,
}

// ---- conversions, checked once ----

/// A core enum and the constants of its C enum, converted both ways.
pub(crate) trait CEnum: Sized {
    /// The core value of a C constant; any other value is refused
    /// (`PASID_RESULT_INVALID_ARGUMENT`, naming the constants it may be).
    fn from_c(v: u32) -> Result<Self, FfiError>;
    /// The C constant of a core value.
    fn to_c(self) -> u32;
}

/// [`CEnum`] for a core enum from the pairs of its variants and its C enum's variants:
/// `c_enum!(CoreEnum, c_enum, "what", "PASID_CONSTANTS_*": CoreVariant = CVariant, ...)`.
macro_rules! c_enum {
    ($core:ident, $c:ident, $what:literal, $constants:literal: $($core_v:ident = $c_v:ident),+) => {
        impl crate::types::CEnum for $core {
            fn from_c(v: u32) -> Result<Self, crate::error::FfiError> {
                $( if v == $c::$c_v as u32 { return Ok($core::$core_v); } )+
                Err(crate::error::FfiError::InvalidArgument(std::format!(
                    concat!($what, " {} is not a ", $constants, " value"),
                    v
                )))
            }
            fn to_c(self) -> u32 {
                match self {
                    $( $core::$core_v => $c::$c_v as u32, )+
                }
            }
        }
    };
}
pub(crate) use c_enum;

c_enum!(Platform, pasid_platform, "platform", "PASID_PLATFORM_*": P1 = P1, P2 = P2);
c_enum!(PasidKind, pasid_kind, "kind", "PASID_KIND_*": Local = Local, Shared = Shared);
c_enum!(DeviceKind, pasid_device_kind, "device kind", "PASID_DEVICE_KIND_*":
    Dedicated = Dedicated, SharedWq = SharedWq);

/// The kind of a RID mapping: `PASID_DEVICE_KIND_SAME_AS_SOURCE` (not checked) or a
/// device kind; 0 (unset) is refused: the map fails closed.
pub(crate) fn mapping_kind_from_c(v: u32) -> Result<Option<DeviceKind>, FfiError> {
    match v {
        PASID_DEVICE_KIND_SAME_AS_SOURCE => Ok(None),
        v => DeviceKind::from_c(v).map(Some).map_err(|_| FfiError::InvalidArgument(std::format!(
            "RID map kind {v} is not a PASID_DEVICE_KIND_* value or PASID_DEVICE_KIND_SAME_AS_SOURCE (0 is refused: say what the destination device is)"
        ))),
    }
}

impl From<pasid_rid> for Rid {
    fn from(r: pasid_rid) -> Self {
        Rid::new(r.segment, r.bdf)
    }
}

impl From<Rid> for pasid_rid {
    fn from(r: Rid) -> Self {
        pasid_rid {
            segment: r.segment,
            bdf: r.bdf,
        }
    }
}

/// `SizedStruct` for the structs that may grow; each starts with `size: u32`.
macro_rules! sized_structs {
    ($($t:ty)*) => {$(
        // SAFETY: #[repr(C)], `size: u32` first, all fields integers (or structs of
        // them) except in output-only structs, which are never read as input.
        unsafe impl crate::boundary::SizedStruct for $t {
            fn set_size(&mut self, size: u32) {
                self.size = size;
            }
        }
    )*};
}
pub(crate) use sized_structs;

sized_structs!(pasid_layout pasid_guest_config pasid_host_info pasid_guest_info);

/// `sizeof` a struct, as its `size` field says it.
pub(crate) const fn size_of<T>() -> u32 {
    core::mem::size_of::<T>() as u32
}

pub(crate) fn layout_from_c(l: &pasid_layout) -> Result<PasidLayout, FfiError> {
    Ok(PasidLayout::new(
        l.width,
        l.local_start..l.local_end,
        l.shared_start..l.shared_end,
    )?)
}

pub(crate) fn layout_to_c(l: &PasidLayout) -> pasid_layout {
    pasid_layout {
        size: size_of::<pasid_layout>(),
        width: l.width(),
        local_start: l.local().start,
        local_end: l.local().end,
        shared_start: l.shared().start,
        shared_end: l.shared().end,
    }
}

pub(crate) fn config_from_c(c: &pasid_guest_config) -> Result<GuestConfig, FfiError> {
    Ok(GuestConfig {
        platform: Platform::from_c(c.platform)?,
        shared_quota: c.shared_quota,
    })
}

pub(crate) fn config_to_c(c: &GuestConfig) -> pasid_guest_config {
    pasid_guest_config {
        size: size_of::<pasid_guest_config>(),
        platform: c.platform.to_c(),
        shared_quota: c.shared_quota,
    }
}

pub(crate) fn pages_to_c(p: Option<pasid_core::PagesTouched>) -> pasid_pages_touched {
    match p {
        Some(p) => pasid_pages_touched {
            changed: true,
            directory_changed: p.directory_changed,
            table: p.table,
        },
        None => pasid_pages_touched {
            changed: false,
            directory_changed: false,
            table: 0,
        },
    }
}
