//! Where a host's shared (host-global) PASIDs come from.
//!
//! A shared work queue tells its submitters apart only by the host PASID in each
//! descriptor, so a host PASID must be unique across the whole machine, not only inside
//! one [`Host`](crate::Host). With one VMM process per VM (QEMU), that takes one owner of
//! the shared range per machine. [`Host`](crate::Host) therefore asks a
//! [`HostPasidSource`] for host PASIDs instead of owning them:
//!
//! * [`IdBitmap`] is the in-process source (tests, the playground, a one-process VMM):
//!   the host is the only owner of its shared range;
//! * a broker client (the `pasid-broker` crate) asks the machine's broker daemon;
//! * the C layer's callback source lets a VMM plug in any other allocator (the host
//!   kernel's, the day a uAPI for host-global PASIDs exists).
//!
//! The host calls [`HostPasidSource::release`] only once the VMM has confirmed that the
//! hardware let go of the PASID (see the lifecycle in the `Host` docs), so a source never
//! needs its own quarantine for PASIDs a live host gives back.

use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use crate::bitmap::IdBitmap;

/// Why a source did not hand out or take back a host PASID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SourceError {
    /// No free host PASID is left (for this client: its cap may be what ran out).
    Exhausted,
    /// The exact PASID asked for is not free, or is not this client's to give back.
    Unavailable {
        /// The PASID.
        pasid: u32,
    },
    /// The source cannot be reached (a broker that is gone, a closed connection).
    Disconnected,
    /// The source refuses this client (credentials, caps, or a layout that disagrees).
    Denied,
    /// The source failed to get memory.
    OutOfMemory,
    /// The source answered something that makes no sense (a broken protocol).
    Protocol,
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceError::Exhausted => f.write_str("no free host PASID"),
            SourceError::Unavailable { pasid } => {
                write!(f, "host PASID {pasid} is not free or not ours")
            }
            SourceError::Disconnected => f.write_str("the host-PASID source is unreachable"),
            SourceError::Denied => f.write_str("the host-PASID source refused this client"),
            SourceError::OutOfMemory => f.write_str("the host-PASID source is out of memory"),
            SourceError::Protocol => f.write_str("the host-PASID source answered nonsense"),
        }
    }
}

/// A supplier of host-global PASIDs from one shared range.
///
/// Every method either does all it says or nothing: a failed call leaves the source as
/// it was, so the host can promise the same for its own calls. A source hands out only
/// PASIDs inside [`HostPasidSource::range`]; the host checks that range against its
/// layout when it is made.
pub trait HostPasidSource {
    /// The shared range the source hands out PASIDs from.
    fn range(&self) -> Range<u32>;

    /// Takes a free host PASID (the in-process source: the lowest free one).
    fn alloc(&mut self) -> Result<u32, SourceError>;

    /// Takes `count` free host PASIDs at once and appends them to `out`, or takes none.
    /// Migration import uses it so that the whole guest's host PASIDs come in one
    /// step (one round trip to a broker). The default calls
    /// [`HostPasidSource::alloc`] and gives back what it took if one fails.
    fn alloc_many(&mut self, count: u32, out: &mut Vec<u32>) -> Result<(), SourceError> {
        out.try_reserve(count as usize)
            .map_err(|_| SourceError::OutOfMemory)?;
        let start = out.len();
        for _ in 0..count {
            match self.alloc() {
                Ok(p) => out.push(p),
                Err(e) => {
                    for p in out.drain(start..) {
                        let _ = self.release(p);
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Takes exactly `pasid`, which must be free.
    fn claim(&mut self, pasid: u32) -> Result<(), SourceError>;

    /// Gives back a PASID this source handed out. The host calls it only after the
    /// hardware has let go of the PASID (teardown confirmed).
    fn release(&mut self, pasid: u32) -> Result<(), SourceError>;

    /// How many PASIDs are free as far as this source knows (a broker client: the
    /// figure of its last answer, which other VMMs may have changed since).
    fn free_count(&self) -> u32;
}

/// [`SourceError::Exhausted`], out of line: kept off the allocation's path, the compiler
/// branches to it instead of packing both outcomes into one value and testing that.
#[cold]
#[inline(never)]
fn exhausted() -> SourceError {
    SourceError::Exhausted
}

/// The in-process source: the host owns its whole shared range.
impl HostPasidSource for IdBitmap {
    fn range(&self) -> Range<u32> {
        IdBitmap::range(self)
    }

    #[inline(always)]
    fn alloc(&mut self) -> Result<u32, SourceError> {
        match IdBitmap::alloc(self) {
            Some(pasid) => Ok(pasid),
            None => Err(exhausted()),
        }
    }

    fn alloc_many(&mut self, count: u32, out: &mut Vec<u32>) -> Result<(), SourceError> {
        // Check first, so nothing is taken and given back on the way to a refusal.
        if count > self.free_count() {
            return Err(SourceError::Exhausted);
        }
        out.try_reserve(count as usize)
            .map_err(|_| SourceError::OutOfMemory)?;
        for _ in 0..count {
            out.push(IdBitmap::alloc(self).expect("counted above"));
        }
        Ok(())
    }

    fn claim(&mut self, pasid: u32) -> Result<(), SourceError> {
        if IdBitmap::range(self).contains(&pasid) && IdBitmap::claim(self, pasid) {
            Ok(())
        } else {
            Err(SourceError::Unavailable { pasid })
        }
    }

    #[inline(always)]
    fn release(&mut self, pasid: u32) -> Result<(), SourceError> {
        if IdBitmap::free(self, pasid) {
            Ok(())
        } else {
            Err(SourceError::Unavailable { pasid })
        }
    }

    fn free_count(&self) -> u32 {
        self.capacity() - self.used()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bitmap_source_hands_out_lowest_first_and_refuses_what_it_cannot() {
        let mut s = IdBitmap::new(4096..4100).unwrap();
        assert_eq!(HostPasidSource::alloc(&mut s), Ok(4096));
        assert_eq!(
            HostPasidSource::claim(&mut s, 4096),
            Err(SourceError::Unavailable { pasid: 4096 })
        );
        assert_eq!(
            HostPasidSource::claim(&mut s, 1),
            Err(SourceError::Unavailable { pasid: 1 })
        );
        let mut out = Vec::new();
        assert_eq!(s.alloc_many(4, &mut out), Err(SourceError::Exhausted));
        assert!(out.is_empty());
        assert_eq!(s.alloc_many(3, &mut out), Ok(()));
        assert_eq!(out, [4097, 4098, 4099]);
        assert_eq!(s.free_count(), 0);
        assert_eq!(HostPasidSource::release(&mut s, 4097), Ok(()));
        assert_eq!(
            HostPasidSource::release(&mut s, 4097),
            Err(SourceError::Unavailable { pasid: 4097 })
        );
    }
}
