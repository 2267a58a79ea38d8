//! The split of a host's PASID space into a local (guest) range and a shared range.

use core::fmt;
use core::ops::Range;

use crate::error::{Error, Result};

/// The widest PASID PCIe defines (bits), so PASIDs are below 2^20.
pub const MAX_PASID_WIDTH: u8 = 20;

/// Names a range in layout errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum RangeName {
    /// The local (guest, RID-local) range.
    Local,
    /// The shared (host-global) range.
    Shared,
}

impl fmt::Display for RangeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RangeName::Local => "local",
            RangeName::Shared => "shared",
        })
    }
}

/// A validated PASID layout: width, local range and shared range.
///
/// The local range is every guest's PASID range and the range of RID-local PASIDs; the
/// shared range holds host-global PASIDs. They never overlap, never include PASID 0
/// (reserved: RID_PASID on VT-d) and fit below 2^width. A fleet that migrates guests
/// uses one local range on every host, so a host never hands out a global PASID that a
/// guest could already use as a RID-local one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PasidLayout {
    width: u8,
    local: Range<u32>,
    shared: Range<u32>,
}

impl PasidLayout {
    /// Checks and builds a layout. Ranges are half-open, `start..end`.
    pub fn new(width: u8, local: Range<u32>, shared: Range<u32>) -> Result<Self> {
        if width == 0 || width > MAX_PASID_WIDTH {
            return Err(Error::InvalidWidth { width });
        }
        let limit = 1u32 << width;
        for (range, name) in [(&local, RangeName::Local), (&shared, RangeName::Shared)] {
            if range.is_empty() {
                return Err(Error::EmptyRange { range: name });
            }
            if range.start == 0 {
                return Err(Error::IncludesPasidZero { range: name });
            }
            if range.end > limit {
                return Err(Error::RangeBeyondWidth {
                    range: name,
                    end: range.end,
                    limit,
                });
            }
        }
        if local.start < shared.end && shared.start < local.end {
            return Err(Error::RangesOverlap);
        }
        Ok(PasidLayout {
            width,
            local,
            shared,
        })
    }

    /// PASID width in bits.
    pub fn width(&self) -> u8 {
        self.width
    }

    /// The local (guest) range.
    #[inline]
    pub fn local(&self) -> Range<u32> {
        self.local.clone()
    }

    /// The shared (host-global) range.
    #[inline]
    pub fn shared(&self) -> Range<u32> {
        self.shared.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_design_layout() {
        let l = PasidLayout::new(20, 1..4096, 4096..1 << 19).unwrap();
        assert_eq!(l.width(), 20);
        assert_eq!(l.local(), 1..4096);
        assert_eq!(l.shared(), 4096..1 << 19);
        // Shared below local is fine too, and so is the full 20-bit space.
        PasidLayout::new(20, 1 << 19..1 << 20, 1..4096).unwrap();
        PasidLayout::new(1, 1..2, 1..1).unwrap_err();
    }

    #[test]
    fn rejects_bad_widths() {
        for width in [0, 21, 32, 255] {
            assert_eq!(
                PasidLayout::new(width, 1..2, 2..3),
                Err(Error::InvalidWidth { width })
            );
        }
    }

    #[test]
    fn rejects_pasid_zero() {
        assert_eq!(
            PasidLayout::new(20, 0..4096, 4096..8192),
            Err(Error::IncludesPasidZero {
                range: RangeName::Local
            })
        );
        assert_eq!(
            PasidLayout::new(20, 4096..8192, 0..4096),
            Err(Error::IncludesPasidZero {
                range: RangeName::Shared
            })
        );
    }

    #[test]
    fn rejects_empty_ranges() {
        assert_eq!(
            PasidLayout::new(20, 5..5, 10..20),
            Err(Error::EmptyRange {
                range: RangeName::Local
            })
        );
        #[allow(clippy::reversed_empty_ranges)]
        let backwards = 20..10;
        assert_eq!(
            PasidLayout::new(20, 1..5, backwards),
            Err(Error::EmptyRange {
                range: RangeName::Shared
            })
        );
    }

    #[test]
    fn rejects_ranges_beyond_the_width() {
        assert_eq!(
            PasidLayout::new(12, 1..4096, 4096..4097),
            Err(Error::RangeBeyondWidth {
                range: RangeName::Shared,
                end: 4097,
                limit: 4096
            })
        );
        assert_eq!(
            PasidLayout::new(4, 1..17, 20..30),
            Err(Error::RangeBeyondWidth {
                range: RangeName::Local,
                end: 17,
                limit: 16
            })
        );
    }

    #[test]
    fn rejects_overlap_in_either_order() {
        assert_eq!(
            PasidLayout::new(20, 1..4097, 4096..8192),
            Err(Error::RangesOverlap)
        );
        assert_eq!(
            PasidLayout::new(20, 4096..8192, 1..4097),
            Err(Error::RangesOverlap)
        );
        assert_eq!(
            PasidLayout::new(20, 10..20, 1..100),
            Err(Error::RangesOverlap)
        );
        // Touching is not overlapping.
        PasidLayout::new(20, 1..4096, 4096..8192).unwrap();
    }

    #[test]
    fn error_messages_say_what_is_wrong() {
        let e = PasidLayout::new(20, 1..4097, 4096..8192).unwrap_err();
        assert_eq!(alloc::format!("{e}"), "the local and shared ranges overlap");
    }
}
