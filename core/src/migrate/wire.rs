//! The migration blob on the wire: framing, the private postcard structs, and the
//! writer. The reader's checks of untrusted blobs are in `validate.rs`. See
//! `docs/migration-format.md`.
//!
//! The structs here are private on purpose: renaming a public type never changes the
//! format. Enumerations travel as plain `u8` codes so the only custom serde error the
//! decoder can meet is the one [`TryVec`] raises when memory runs out.

use alloc::vec::Vec;
use core::fmt;
use core::marker::PhantomData;

use postcard::ser_flavors::Flavor;
use serde::de::{Deserialize, Deserializer, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeSeq, Serializer};

use super::{ExportOptions, FormatVersion};
use crate::contract::GuestContract;
use crate::error::{Error, Result};
use crate::host::{Device, Guest, Host};
use crate::sorted::{SortedMap, SortedSet};
use crate::source::HostPasidSource;
use crate::types::{DeviceKind, GuestId, Platform, Rid};

/// The first bytes of every blob.
pub(crate) const MAGIC: [u8; 8] = *b"PASIDMIG";
/// Major version written by default. Readers read this one and 1.
pub(crate) const MAJOR: u16 = 2;
/// Minor version written by default.
pub(crate) const MINOR: u16 = 0;
/// magic, major, minor, payload length.
pub(crate) const HEADER_LEN: usize = 8 + 2 + 2 + 4;
/// CRC-32 after the payload.
pub(crate) const TRAILER_LEN: usize = 4;

pub(crate) const PLATFORM_P1: u8 = 1;
pub(crate) const PLATFORM_P2: u8 = 2;
pub(crate) const DEVICE_DEDICATED: u8 = 0;
pub(crate) const DEVICE_SHARED_WQ: u8 = 1;

/// Record tag (2.0): the blob's identity, [`WireIdentity`]. Required.
pub(crate) const TAG_IDENTITY: u16 = 1;
/// Record tag (2.0): what the guest's vIOMMU advertised, [`WireContract`]. Required.
pub(crate) const TAG_CONTRACT: u16 = 2;
/// Record flag: a reader that does not know the tag may skip the record. Without it,
/// an unknown record fails the import (QEMU's rule for subsections).
pub(crate) const FLAG_OPTIONAL: u8 = 1;

/// Elements a sequence may reserve before its elements arrive: enough for the usual
/// guest in one step, small enough that a hostile count cannot ask for much.
const PREALLOC_LIMIT: usize = 8192;

// ---- the payload, version 1 ----
//
// Lists are columns of small numbers so postcard's varints keep them short: a guest of
// 4096 PASIDs takes about 10 KiB, which keeps the checksum and the decoder cheap.

/// Bit 31 of a decoded gPASID entry: the gPASID is shared. gPASIDs are below 2^20.
pub(crate) const SHARED_BIT: u32 = 1 << 31;

#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct WireLayout {
    pub(crate) width: u8,
    pub(crate) local_start: u32,
    pub(crate) local_end: u32,
    pub(crate) shared_start: u32,
    pub(crate) shared_end: u32,
}

/// One device; its PASIDs are the next `pasid_count` entries of `device_pasids`.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct WireDevice {
    pub(crate) segment: u16,
    pub(crate) bdf: u16,
    pub(crate) kind: u8,
    pub(crate) pasid_count: u32,
}

/// One record of the 2.0 record list: a tag, flags, and the record's own postcard
/// bytes (so a reader can skip a record it does not know).
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct WireRecord<'a> {
    pub(crate) tag: u16,
    pub(crate) flags: u8,
    #[serde(borrow)]
    pub(crate) data: &'a [u8],
}

/// Record [`TAG_IDENTITY`].
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct WireIdentity {
    pub(crate) source_host: u64,
    pub(crate) source_guest: u32,
    pub(crate) epoch: u64,
}

/// Record [`TAG_CONTRACT`].
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct WireContract {
    pub(crate) width: u8,
    pub(crate) local_start: u32,
    pub(crate) local_end: u32,
    pub(crate) capabilities: u32,
}

/// What a reader decodes: the fields of version 1.0, which 2.0 keeps as they are and
/// follows with its record list.
#[derive(serde::Deserialize)]
pub(crate) struct Payload {
    pub(crate) source: WireLayout,
    pub(crate) source_platform: u8,
    pub(crate) guest_platform: u8,
    pub(crate) shared_quota: u32,
    /// Per gPASID, ascending: `(gpasid - previous gpasid) << 1 | shared`, the first
    /// one relative to 0. A gap of 0 is a repeat.
    pub(crate) pasids: TryVec<u32>,
    /// Empty, or per shared gPASID in order: the source host PASID as a zigzag delta
    /// from the previous one (the first from 0). Diagnostics only.
    pub(crate) source_hpasids: TryVec<u32>,
    pub(crate) devices: TryVec<WireDevice>,
    /// Per device in order, its PASIDs ascending as gaps from the previous one (each
    /// device's first from 0).
    pub(crate) device_pasids: TryVec<u32>,
}

/// What a writer encodes: the same fields, borrowed from the guest.
#[derive(serde::Serialize)]
struct PayloadRef<'a> {
    source: WireLayout,
    source_platform: u8,
    guest_platform: u8,
    shared_quota: u32,
    pasids: PasidsRef<'a>,
    source_hpasids: HpasidsRef<'a>,
    devices: DevicesRef<'a>,
    device_pasids: DevicePasidsRef<'a>,
}

struct PasidsRef<'a>(&'a Guest);

impl Serialize for PasidsRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
        let g = self.0;
        // Draining gPASIDs do not travel: they are the source's hardware state.
        let held = g.pasids.used() as usize - g.draining_len();
        let mut seq = s.serialize_seq(Some(held))?;
        let mut prev = 0;
        for gpasid in g.pasids.iter_used() {
            if g.is_draining(gpasid) {
                continue;
            }
            let shared = g.remap.get(gpasid).is_some() as u32;
            put(&mut seq, (gpasid - prev) << 1 | shared)?;
            prev = gpasid;
        }
        seq.end()
    }
}

struct HpasidsRef<'a>(&'a Guest);

impl Serialize for HpasidsRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
        let g = self.0;
        let mut seq = s.serialize_seq(Some(g.remap.len() as usize))?;
        let mut prev = 0u32;
        for (_, hpasid) in g.remap.iter() {
            put(&mut seq, zigzag(hpasid.wrapping_sub(prev) as i32))?;
            prev = hpasid;
        }
        seq.end()
    }
}

struct DevicesRef<'a>(&'a SortedMap<(Rid, DeviceKind), Device>);

impl Serialize for DevicesRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for (&(rid, kind), d) in self.0.iter() {
            seq.serialize_element(&WireDevice {
                segment: rid.segment,
                bdf: rid.bdf,
                kind: match kind {
                    DeviceKind::Dedicated => DEVICE_DEDICATED,
                    DeviceKind::SharedWq => DEVICE_SHARED_WQ,
                },
                pasid_count: d.pasids.len() as u32,
            })?;
        }
        seq.end()
    }
}

struct DevicePasidsRef<'a>(&'a SortedMap<(Rid, DeviceKind), Device>, usize);

impl Serialize for DevicePasidsRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.1))?;
        for d in self.0.values() {
            let mut prev = 0;
            for &p in d.pasids.keys() {
                put(&mut seq, p - prev)?;
                prev = p;
            }
        }
        seq.end()
    }
}

/// Writes one `u32` list element. Postcard encodes a `u32` below 128 as one byte equal
/// to its value, exactly as it encodes a `u8`, so those go out as `u8`: the same bytes,
/// without the detour through a varint buffer on the stack (which costs a
/// store-forwarding stall per element).
#[inline(always)]
fn put<S: SerializeSeq>(seq: &mut S, v: u32) -> core::result::Result<(), S::Error> {
    if v < 0x80 {
        seq.serialize_element(&(v as u8))
    } else {
        seq.serialize_element(&v)
    }
}

fn zigzag(v: i32) -> u32 {
    ((v << 1) ^ (v >> 31)) as u32
}

pub(crate) fn unzigzag(v: u32) -> i32 {
    ((v >> 1) as i32) ^ -((v & 1) as i32)
}

/// A `Vec` that grows with `try_reserve`, so decoding reports memory failure instead of
/// aborting, and that reserves at most [`PREALLOC_LIMIT`] elements on a count's word.
pub(crate) struct TryVec<T>(pub(crate) Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for TryVec<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> core::result::Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = TryVec<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence")
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> core::result::Result<Self::Value, A::Error> {
                use serde::de::Error as _;
                let oom = |_| A::Error::custom("out of memory");
                let mut v = Vec::new();
                let hint = seq.size_hint().unwrap_or(0).min(PREALLOC_LIMIT);
                v.try_reserve_exact(hint).map_err(oom)?;
                while let Some(x) = seq.next_element()? {
                    if v.len() == v.capacity() {
                        v.try_reserve(1).map_err(oom)?;
                    }
                    v.push(x);
                }
                Ok(TryVec(v))
            }
        }
        d.deserialize_seq(V(PhantomData))
    }
}

// ---- writing ----

/// A postcard sink that writes into a slice as far as it fits and counts every byte,
/// so one pass tells the size a too-small buffer needed. The cursor lives in the sink
/// itself (not behind a reference), which lets the compiler keep it in a register.
struct SliceSink<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl Flavor for SliceSink<'_> {
    type Output = usize;
    #[inline(always)]
    fn try_push(&mut self, b: u8) -> postcard::Result<()> {
        if let Some(dst) = self.buf.get_mut(self.pos) {
            *dst = b;
        }
        self.pos += 1;
        Ok(())
    }
    #[inline(always)]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        // Varints of a few bytes: a byte loop beats a memcpy call.
        for &b in data {
            self.try_push(b)?;
        }
        Ok(())
    }
    fn finalize(self) -> postcard::Result<usize> {
        Ok(self.pos)
    }
}

fn platform_code(p: Platform) -> u8 {
    match p {
        Platform::P1 => PLATFORM_P1,
        Platform::P2 => PLATFORM_P2,
    }
}

fn payload_of<'a, S: HostPasidSource>(host: &Host<S>, g: &'a Guest) -> PayloadRef<'a> {
    let l = &host.layout;
    let bound: usize = g.devices.values().map(|d| d.pasids.len()).sum();
    PayloadRef {
        source: WireLayout {
            width: l.width(),
            local_start: l.local().start,
            local_end: l.local().end,
            shared_start: l.shared().start,
            shared_end: l.shared().end,
        },
        source_platform: platform_code(host.platform),
        guest_platform: platform_code(g.config.platform),
        shared_quota: g.config.shared_quota,
        pasids: PasidsRef(g),
        source_hpasids: HpasidsRef(g),
        devices: DevicesRef(&g.devices),
        device_pasids: DevicePasidsRef(&g.devices, bound),
    }
}

/// The records a 2.0 writer appends: identity, then contract (ascending tags).
struct RecordsRef {
    identity: [u8; 32],
    identity_len: usize,
    contract: [u8; 32],
    contract_len: usize,
}

impl RecordsRef {
    fn new(identity: &WireIdentity, contract: &WireContract) -> Self {
        let mut r = RecordsRef {
            identity: [0; 32],
            identity_len: 0,
            contract: [0; 32],
            contract_len: 0,
        };
        // At most 10 + 5 + 10 and 1 + 5 + 5 + 5 bytes: always fit.
        r.identity_len = postcard::to_slice(identity, &mut r.identity).map_or(0, |b| b.len());
        r.contract_len = postcard::to_slice(contract, &mut r.contract).map_or(0, |b| b.len());
        r
    }
}

impl Serialize for RecordsRef {
    fn serialize<S: Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(2))?;
        seq.serialize_element(&WireRecord {
            tag: TAG_IDENTITY,
            flags: 0,
            data: &self.identity[..self.identity_len],
        })?;
        seq.serialize_element(&WireRecord {
            tag: TAG_CONTRACT,
            flags: 0,
            data: &self.contract[..self.contract_len],
        })?;
        seq.end()
    }
}

/// A 2.0 payload: the 1.0 fields, then the record list (postcard writes a struct as
/// its fields one after the other, so this is the concatenation).
#[derive(serde::Serialize)]
struct PayloadV2Ref<'a> {
    fixed: PayloadRef<'a>,
    records: RecordsRef,
}

fn header(version: FormatVersion, payload_len: u32) -> [u8; HEADER_LEN] {
    let mut h = [0; HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..10].copy_from_slice(&version.major.to_le_bytes());
    h[10..12].copy_from_slice(&version.minor.to_le_bytes());
    h[12..16].copy_from_slice(&payload_len.to_le_bytes());
    h
}

/// An upper bound of the encoded size, so the output is reserved once.
fn size_bound(g: &Guest) -> usize {
    // Varints: u16 <= 3 bytes, u32 <= 5 bytes, numbers below 2^21 <= 3 bytes.
    let bound: usize = g.devices.values().map(|d| d.pasids.len()).sum();
    HEADER_LEN
        + TRAILER_LEN
        + 1 + 4 * 5 // layout
        + 2 + 5 // platforms, quota
        + 4 * 5 // sequence lengths
        + 1 + 2 * (3 + 1 + 1 + 32) // records
        + g.pasids.used() as usize * 3
        + g.remap.len() as usize * 3
        + g.devices.len() * (3 + 3 + 1 + 5)
        + bound * 3
}

/// The blob of `g` in a new `Vec`, sized once from [`size_bound`].
pub(crate) fn encode_vec<S: HostPasidSource>(
    host: &Host<S>,
    id: GuestId,
    g: &Guest,
    opts: &ExportOptions,
) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut len = size_bound(g);
    loop {
        out.try_reserve_exact(len.saturating_sub(out.len()))?;
        out.resize(len, 0);
        match encode_slice(host, id, g, opts, &mut out) {
            Ok(n) => {
                out.truncate(n);
                return Ok(out);
            }
            // Only if size_bound were wrong; never loops twice.
            Err(Error::BufferTooSmall { needed }) if needed > len => len = needed,
            Err(e) => return Err(e),
        }
    }
}

/// What a 1.0 reader assumes a guest was told (1.0 carries no contract): writing 1.0
/// is refused for a guest told anything else, which 1.0 would silently drop.
pub(crate) fn contract_of_v1(
    layout: &crate::layout::PasidLayout,
    platform: Platform,
) -> GuestContract {
    GuestContract::for_layout(layout, platform)
}

const CONTRACT_NOT_IN_V1: &str =
    "format 1.0 cannot carry this guest's advertised contract (it differs from the layout's)";

/// Writes the blob of `g` into `buf`; returns its length, or how long `buf` must be.
pub(crate) fn encode_slice<S: HostPasidSource>(
    host: &Host<S>,
    id: GuestId,
    g: &Guest,
    opts: &ExportOptions,
    buf: &mut [u8],
) -> Result<usize> {
    let version = opts.version;
    let sink = SliceSink {
        buf: &mut *buf,
        pos: HEADER_LEN,
    };
    let fixed = payload_of(host, g);
    // SliceSink never fails; Serialize impls here raise no custom errors.
    let encoded = match (version.major, version.minor) {
        (1, 0) => {
            if g.contract != contract_of_v1(&host.layout, g.config.platform) {
                return Err(Error::NotSupported {
                    what: CONTRACT_NOT_IN_V1,
                });
            }
            postcard::serialize_with_flavor(&fixed, sink)
        }
        (MAJOR, MINOR) => {
            let identity = WireIdentity {
                source_host: host.host_id,
                source_guest: id.0,
                epoch: opts.epoch,
            };
            let c = &g.contract;
            let contract = WireContract {
                width: c.width,
                local_start: c.local_start,
                local_end: c.local_end,
                capabilities: c.capabilities,
            };
            let records = RecordsRef::new(&identity, &contract);
            postcard::serialize_with_flavor(&PayloadV2Ref { fixed, records }, sink)
        }
        _ => {
            return Err(Error::UnsupportedVersion {
                found: version.major,
                supported: MAJOR,
            })
        }
    };
    let end = encoded.map_err(|_| Error::MalformedBlob {
        reason: "the guest could not be encoded",
    })?;
    let payload_len = end - HEADER_LEN;
    let needed = end + TRAILER_LEN;
    if needed > buf.len() {
        return Err(Error::BufferTooSmall { needed });
    }
    buf[..HEADER_LEN].copy_from_slice(&header(version, payload_len as u32));
    let crc = crc32fast::hash(&buf[..end]);
    buf[end..needed].copy_from_slice(&crc.to_le_bytes());
    Ok(needed)
}

/// Builds the set of a device's PASIDs from a strictly ascending slice.
pub(crate) fn pasid_set(pasids: &[u32]) -> Result<SortedSet<u32>> {
    let mut v = Vec::new();
    v.try_reserve_exact(pasids.len())?;
    v.extend(pasids.iter().map(|&p| (p, ())));
    Ok(SortedSet::from_sorted(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_round_trips() {
        for v in [0, 1, -1, 2, -2, 4096, -4097, i32::MAX, i32::MIN] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        assert_eq!([zigzag(0), zigzag(-1), zigzag(1), zigzag(-2)], [0, 1, 2, 3]);
    }
}
