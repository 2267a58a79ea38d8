//! What a guest's vIOMMU advertised: the guest-visible contract a migration must keep.
//!
//! A guest learns its PASID space from its vIOMMU once, at boot, and never asks again:
//!
//! * a **p1** guest (no PASID allocation) learns only a PASID width, from VT-d
//!   ECAP.PSS (PSS = width - 1), and may then pick any PASID in `1..2^width`. So the
//!   only local ranges a p1 guest can be told exactly are `1..2^w`: a layout whose local
//!   range is, say, `1..3000` cannot be advertised to a p1 guest as it is; advertise
//!   [`p1_exact_width`] (`1..2048` there) or change the layout;
//! * a **p2** guest gets its gPASIDs from the vIOMMU's allocation command, all inside
//!   the range its contract names ([`GuestContract::local`], the host allocates only
//!   there), and is told a width that covers that range.
//!
//! The contract travels in the migration blob, and a destination that cannot honour
//! it (a smaller local range, a narrower width, a capability it lacks) refuses the
//! import with [`Error::ContractNotHonoured`], whatever the guest holds at the time:
//! a p1 guest's next choice must work after the migration as it did before.

use core::fmt;
use core::ops::Range;

use crate::error::{Error, Result};
use crate::layout::{PasidLayout, MAX_PASID_WIDTH};
use crate::types::Platform;

/// Capability bit: the vIOMMU advertised virtual commands (VT-d ECAP bit 44, VCS).
pub const CAP_VCS: u32 = 1 << 0;
/// Capability bit: the vIOMMU advertised PASID allocation (VT-d VCCAP bit 0, PAS).
pub const CAP_PASID_ALLOC: u32 = 1 << 1;
/// Every capability bit this version knows.
pub const CAP_KNOWN: u32 = CAP_VCS | CAP_PASID_ALLOC;

/// What a guest's vIOMMU told it. Plain numbers (not a `Range`) so the type is `Copy`
/// and can sit in an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct GuestContract {
    /// The PASID width advertised (VT-d ECAP.PSS + 1), 1..=20.
    pub width: u8,
    /// Start of the PASID range the guest may use.
    pub local_start: u32,
    /// End (exclusive) of that range.
    pub local_end: u32,
    /// The capability bits advertised ([`CAP_VCS`], [`CAP_PASID_ALLOC`]).
    pub capabilities: u32,
}

/// The ECAP.PSS value that advertises a PASID width: `width - 1` (VT-d: "PASID size
/// supported", the number of PASID bits minus one). 0 for a width of 0.
pub const fn ecap_pss(width: u8) -> u8 {
    width.saturating_sub(1)
}

/// The smallest width whose PASIDs reach `end - 1` (at least 1).
const fn covering_width(end: u32) -> u8 {
    let top = end.saturating_sub(1);
    let bits = (u32::BITS - top.leading_zeros()) as u8;
    if bits == 0 {
        1
    } else {
        bits
    }
}

/// The widest PASID width a p1 guest can be told on this layout without being promised
/// a PASID outside the local range: the largest `w` with `1..2^w` inside it. `None`
/// when the local range does not start at 1 (then no width is exact).
pub fn p1_exact_width(layout: &PasidLayout) -> Option<u8> {
    let local = layout.local();
    if local.start > 1 {
        return None;
    }
    // 2^w <= local.end, and w >= 1 needs local.end >= 2 (always true: non-empty, no 0).
    let w = (u32::BITS - 1 - local.end.leading_zeros()) as u8;
    (w >= 1).then_some(w.min(MAX_PASID_WIDTH))
}

/// The capability bits a vIOMMU of `platform` advertises.
pub const fn capabilities_of(platform: Platform) -> u32 {
    match platform {
        Platform::P1 => 0,
        Platform::P2 => CAP_VCS | CAP_PASID_ALLOC,
    }
}

impl GuestContract {
    /// The contract of a p1 guest told `width`: the range `1..2^width`.
    pub const fn p1(width: u8) -> Self {
        GuestContract {
            width,
            local_start: 1,
            local_end: 1u32 << (if width > 20 { 20 } else { width }),
            capabilities: capabilities_of(Platform::P1),
        }
    }

    /// The contract of a p2 guest whose gPASIDs come from `local`, told the smallest
    /// width covering it.
    pub const fn p2(local: Range<u32>) -> Self {
        GuestContract {
            width: covering_width(local.end),
            local_start: local.start,
            local_end: local.end,
            capabilities: capabilities_of(Platform::P2),
        }
    }

    /// What [`crate::Host::create_guest`] assumes a guest on `layout` was told: for p2,
    /// the whole local range; for p1, `1..2^w` with [`p1_exact_width`], or (a layout
    /// whose local range does not start at 1) the local range with the width covering
    /// it, which over-promises and is better avoided.
    pub fn for_layout(layout: &PasidLayout, platform: Platform) -> Self {
        match platform {
            Platform::P2 => GuestContract::p2(layout.local()),
            Platform::P1 => match p1_exact_width(layout) {
                Some(w) => GuestContract::p1(w),
                None => GuestContract {
                    width: covering_width(layout.local().end),
                    local_start: layout.local().start,
                    local_end: layout.local().end,
                    capabilities: capabilities_of(Platform::P1),
                },
            },
        }
    }

    /// The most a host with `layout` and `platform` offers: its width, its local
    /// range, the capabilities of its platform.
    pub fn offered_by(layout: &PasidLayout, platform: Platform) -> Self {
        GuestContract {
            width: layout.width(),
            local_start: layout.local().start,
            local_end: layout.local().end,
            capabilities: capabilities_of(platform),
        }
    }

    /// The range the guest may use.
    pub const fn local(&self) -> Range<u32> {
        self.local_start..self.local_end
    }

    /// The ECAP.PSS value to advertise: `width - 1`.
    pub const fn ecap_pss(&self) -> u8 {
        ecap_pss(self.width)
    }

    /// The contract is one a vIOMMU of `platform` can state: a width of 1..=20, a
    /// non-empty range without PASID 0 inside `1..2^width`, known capability bits,
    /// allocation only on p2. (A p1 guest can be told exactly only `1..2^width`, see
    /// [`GuestContract::is_exact`]; the range of [`GuestContract::for_layout`] on a
    /// layout that does not allow that is accepted too, since such guests exist.)
    pub fn validate(&self, platform: Platform) -> Result<()> {
        let bad = |reason| Err(Error::IncompatibleLayout { reason });
        if self.width == 0 || self.width > MAX_PASID_WIDTH {
            return Err(Error::InvalidWidth { width: self.width });
        }
        if self.local_start == 0 || self.local_start >= self.local_end {
            return bad("the advertised range is empty or includes PASID 0");
        }
        if self.local_end > 1 << self.width {
            return bad("the advertised range does not fit the advertised width");
        }
        if self.capabilities & !CAP_KNOWN != 0 {
            return bad("unknown capability bits in the advertised contract");
        }
        if self.capabilities & !capabilities_of(platform) != 0 {
            return bad("a p1 vIOMMU does not advertise PASID allocation");
        }
        Ok(())
    }

    /// Whether a guest of `platform` can be told this contract exactly: always for p2
    /// (its range is where its allocations come from), only `1..2^width` for p1 (it
    /// learns only the width).
    pub const fn is_exact(&self, platform: Platform) -> bool {
        match platform {
            Platform::P2 => true,
            Platform::P1 => {
                self.width <= MAX_PASID_WIDTH
                    && self.local_start == 1
                    && self.local_end == 1 << self.width
            }
        }
    }

    /// Whether a host with `layout` and `platform` can keep this contract: the range
    /// inside its local range, the width at most its own, every capability offered.
    pub fn check_honoured(&self, layout: &PasidLayout, platform: Platform) -> Result<()> {
        let offered = GuestContract::offered_by(layout, platform);
        let fits = self.local_start >= offered.local_start
            && self.local_end <= offered.local_end
            && self.width <= offered.width
            && self.capabilities & !offered.capabilities == 0;
        if fits {
            Ok(())
        } else {
            Err(Error::ContractNotHonoured {
                told: *self,
                offered,
            })
        }
    }
}

/// Prints `width 12 (PSS 11), PASIDs 1..4096, capabilities 0x3`.
impl fmt::Display for GuestContract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "width {} (PSS {}), PASIDs {}..{}, capabilities {:#x}",
            self.width,
            self.ecap_pss(),
            self.local_start,
            self.local_end,
            self.capabilities
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pss_and_exact_widths() {
        assert_eq!(ecap_pss(20), 19);
        assert_eq!(ecap_pss(1), 0);
        let l = |local: Range<u32>| PasidLayout::new(20, local, 1 << 19..1 << 20).unwrap();
        assert_eq!(p1_exact_width(&l(1..4096)), Some(12));
        assert_eq!(p1_exact_width(&l(1..3000)), Some(11));
        assert_eq!(p1_exact_width(&l(1..4097)), Some(12));
        assert_eq!(p1_exact_width(&l(2..4096)), None);
        assert_eq!(GuestContract::p1(12).local(), 1..4096);
        assert_eq!(GuestContract::p2(1..3000).width, 12);
        assert_eq!(GuestContract::p2(1..4096).width, 12);
        assert_eq!(GuestContract::p2(1..4097).width, 13);
    }

    #[test]
    fn honour_needs_range_width_and_capabilities() {
        let big = PasidLayout::new(20, 1..8192, 8192..1 << 19).unwrap();
        let small = PasidLayout::new(20, 1..4096, 4096..1 << 19).unwrap();
        let told = GuestContract::for_layout(&big, Platform::P1);
        assert_eq!(told, GuestContract::p1(13));
        told.validate(Platform::P1).unwrap();
        told.check_honoured(&big, Platform::P1).unwrap();
        let e = told.check_honoured(&small, Platform::P2).unwrap_err();
        assert!(
            matches!(e, Error::ContractNotHonoured { told: t, offered } if t == told && offered.local_end == 4096)
        );
        let p2 = GuestContract::for_layout(&small, Platform::P2);
        assert!(p2.check_honoured(&small, Platform::P1).is_err());
        assert!(GuestContract::p2(1..3000).validate(Platform::P1).is_err());
        assert!(GuestContract::p1(12).is_exact(Platform::P1));
        let mut odd = GuestContract::p1(12);
        odd.local_end = 3000;
        assert!(!odd.is_exact(Platform::P1) && odd.is_exact(Platform::P2));
    }
}
