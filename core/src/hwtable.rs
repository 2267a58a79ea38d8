//! The CPU's PASID-translation structures for ENQCMD in VMX non-root operation.
//!
//! TODO(issue 3): directory/page export and the software walker.

/// Entries in one PASID-translation table (gPASID bits 9:0).
pub const ENTRIES_PER_TABLE: usize = 1024;

const VALID: u32 = 1 << 31;
const HOST_PASID_MASK: u32 = (1 << 20) - 1;

/// One 4-byte PASID-translation-table entry: bit 31 valid, bits 19:0 the host PASID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(transparent)]
pub struct TableEntry(pub u32);

impl TableEntry {
    /// The entry of an unmapped gPASID.
    pub const INVALID: TableEntry = TableEntry(0);

    /// A valid entry for `host_pasid` (only its low 20 bits are kept).
    #[inline]
    pub const fn valid(host_pasid: u32) -> Self {
        TableEntry(VALID | (host_pasid & HOST_PASID_MASK))
    }

    /// Whether the valid bit is set.
    #[inline]
    pub const fn is_valid(self) -> bool {
        self.0 & VALID != 0
    }

    /// The host PASID of a valid entry.
    #[inline]
    pub const fn host_pasid(self) -> Option<u32> {
        if self.is_valid() {
            Some(self.0 & HOST_PASID_MASK)
        } else {
            None
        }
    }
}
