//! The migration blob on the wire: framing, the private postcard structs, and the
//! structural checks every reader applies. See `docs/migration-format.md`.
//!
//! The structs here are private on purpose: renaming a public type never changes the
//! format. Enumerations travel as plain `u8` codes so the only custom serde error the
//! decoder can meet is the one [`TryVec`] raises when memory runs out.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;
use core::fmt;
use core::marker::PhantomData;
use core::ops::Range;

use postcard::ser_flavors::Flavor;
use serde::de::{Deserialize, Deserializer, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeSeq, Serializer};

use crate::error::{Error, Result};
use crate::host::{Device, Guest, Host};
use crate::layout::PasidLayout;
use crate::types::{DeviceKind, GuestConfig, PasidKind, Platform, Rid};

/// The first bytes of every blob.
pub(crate) const MAGIC: [u8; 8] = *b"PASIDMIG";
/// Major version written and the only one read.
pub(crate) const MAJOR: u16 = 1;
/// Minor version written. Readers accept any minor of their major.
pub(crate) const MINOR: u16 = 0;
/// magic, major, minor, payload length.
pub(crate) const HEADER_LEN: usize = 8 + 2 + 2 + 4;
/// CRC-32 after the payload.
pub(crate) const TRAILER_LEN: usize = 4;

const PLATFORM_P1: u8 = 1;
const PLATFORM_P2: u8 = 2;
const PASID_LOCAL: u8 = 0;
const PASID_SHARED: u8 = 1;
const DEVICE_DEDICATED: u8 = 0;
const DEVICE_SHARED_WQ: u8 = 1;

/// Elements a sequence may reserve before its elements arrive: enough for the usual
/// guest in one step, small enough that a hostile count cannot ask for much.
const PREALLOC_LIMIT: usize = 8192;

fn malformed(reason: &'static str) -> Error {
    Error::MalformedBlob { reason }
}

// ---- the payload, version 1 ----

#[derive(serde::Serialize, serde::Deserialize)]
struct WireLayout {
    width: u8,
    local_start: u32,
    local_end: u32,
    shared_start: u32,
    shared_end: u32,
}

/// One gPASID. `source_hpasid` is 0 when absent (PASID 0 is never a shared PASID).
#[derive(serde::Serialize, serde::Deserialize, Clone, Copy)]
pub(crate) struct WirePasid {
    pub(crate) gpasid: u32,
    kind: u8,
    source_hpasid: u32,
}

impl WirePasid {
    /// Whether the gPASID is shared (valid after [`validate`]).
    pub(crate) fn is_shared(&self) -> bool {
        self.kind == PASID_SHARED
    }

    /// The source host PASID, if it travelled.
    pub(crate) fn source_hpasid(&self) -> Option<u32> {
        (self.source_hpasid != 0).then_some(self.source_hpasid)
    }

    pub(crate) fn kind(&self) -> PasidKind {
        if self.is_shared() {
            PasidKind::Shared
        } else {
            PasidKind::Local
        }
    }
}

/// One device; its PASIDs are the next `pasid_count` entries of `device_pasids`.
#[derive(serde::Serialize, serde::Deserialize)]
struct WireDevice {
    segment: u16,
    bdf: u16,
    kind: u8,
    pasid_count: u32,
}

/// What a reader decodes.
#[derive(serde::Deserialize)]
struct Payload {
    source: WireLayout,
    source_platform: u8,
    guest_platform: u8,
    shared_quota: u32,
    pasids: TryVec<WirePasid>,
    devices: TryVec<WireDevice>,
    device_pasids: TryVec<u32>,
}

/// What a writer encodes: the same fields, borrowed from the guest.
#[derive(serde::Serialize)]
struct PayloadRef<'a> {
    source: WireLayout,
    source_platform: u8,
    guest_platform: u8,
    shared_quota: u32,
    pasids: PasidsRef<'a>,
    devices: DevicesRef<'a>,
    device_pasids: DevicePasidsRef<'a>,
}

struct PasidsRef<'a>(&'a Guest);

impl Serialize for PasidsRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
        let g = self.0;
        let mut seq = s.serialize_seq(Some(g.pasids.used() as usize))?;
        for gpasid in g.pasids.iter_used() {
            let (kind, source_hpasid) = match g.remap.get(gpasid) {
                Some(h) => (PASID_SHARED, h),
                None => (PASID_LOCAL, 0),
            };
            seq.serialize_element(&WirePasid {
                gpasid,
                kind,
                source_hpasid,
            })?;
        }
        seq.end()
    }
}

struct DevicesRef<'a>(&'a BTreeMap<Rid, Device>);

impl Serialize for DevicesRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for (rid, d) in self.0 {
            seq.serialize_element(&WireDevice {
                segment: rid.segment,
                bdf: rid.bdf,
                kind: match d.kind {
                    DeviceKind::Dedicated => DEVICE_DEDICATED,
                    DeviceKind::SharedWq => DEVICE_SHARED_WQ,
                },
                pasid_count: d.pasids.len() as u32,
            })?;
        }
        seq.end()
    }
}

struct DevicePasidsRef<'a>(&'a BTreeMap<Rid, Device>, usize);

impl Serialize for DevicePasidsRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.1))?;
        for d in self.0.values() {
            for p in &d.pasids {
                seq.serialize_element(p)?;
            }
        }
        seq.end()
    }
}

/// A `Vec` that grows with `try_reserve`, so decoding reports memory failure instead of
/// aborting, and that reserves at most [`PREALLOC_LIMIT`] elements on a count's word.
struct TryVec<T>(Vec<T>);

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
                    v.try_reserve(1).map_err(oom)?;
                    v.push(x);
                }
                Ok(TryVec(v))
            }
        }
        d.deserialize_seq(V(PhantomData))
    }
}

// ---- writing ----

/// A postcard sink that appends to a `Vec` with `try_reserve`.
struct VecSink<'a>(&'a mut Vec<u8>);

impl Flavor for VecSink<'_> {
    type Output = ();
    #[inline]
    fn try_push(&mut self, b: u8) -> postcard::Result<()> {
        self.try_extend(&[b])
    }
    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0
            .try_reserve(data.len())
            .map_err(|_| postcard::Error::SerializeBufferFull)?;
        self.0.extend_from_slice(data);
        Ok(())
    }
    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// A postcard sink that writes into a caller's slice as far as it fits and counts every
/// byte, so one pass tells the size a too-small buffer needed.
struct SliceSink<'a> {
    buf: &'a mut [u8],
    pos: &'a mut usize,
}

impl Flavor for SliceSink<'_> {
    type Output = ();
    #[inline]
    fn try_push(&mut self, b: u8) -> postcard::Result<()> {
        self.try_extend(&[b])
    }
    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        let end = *self.pos + data.len();
        if let Some(dst) = self.buf.get_mut(*self.pos..end) {
            dst.copy_from_slice(data);
        }
        *self.pos = end;
        Ok(())
    }
    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

fn platform_code(p: Platform) -> u8 {
    match p {
        Platform::P1 => PLATFORM_P1,
        Platform::P2 => PLATFORM_P2,
    }
}

fn payload_of<'a>(host: &Host, g: &'a Guest) -> PayloadRef<'a> {
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
        devices: DevicesRef(&g.devices),
        device_pasids: DevicePasidsRef(&g.devices, bound),
    }
}

fn header(payload_len: u32) -> [u8; HEADER_LEN] {
    let mut h = [0; HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..10].copy_from_slice(&MAJOR.to_le_bytes());
    h[10..12].copy_from_slice(&MINOR.to_le_bytes());
    h[12..16].copy_from_slice(&payload_len.to_le_bytes());
    h
}

/// An upper bound of the encoded size, so the output is reserved once.
fn size_bound(g: &Guest) -> usize {
    // Varints: u16 <= 3 bytes, u32 <= 5 bytes; PASIDs < 2^20 take <= 3.
    let bound: usize = g.devices.values().map(|d| d.pasids.len()).sum();
    HEADER_LEN
        + TRAILER_LEN
        + 1 + 4 * 5 // layout
        + 2 + 5 // platforms, quota
        + 3 * 5 // sequence lengths
        + g.pasids.used() as usize * (3 + 1 + 3)
        + g.devices.len() * (3 + 3 + 1 + 5)
        + bound * 3
}

/// Appends the blob of `g` to `out`. On error `out` may hold a partial blob.
pub(crate) fn encode_vec(host: &Host, g: &Guest, out: &mut Vec<u8>) -> Result<()> {
    out.try_reserve_exact(size_bound(g))?;
    let start = out.len();
    out.extend_from_slice(&header(0));
    postcard::serialize_with_flavor(&payload_of(host, g), VecSink(out))
        .map_err(|_| Error::OutOfMemory)?;
    let payload_len = out.len() - start - HEADER_LEN;
    out[start + 12..start + 16].copy_from_slice(&(payload_len as u32).to_le_bytes());
    let crc = crc32fast::hash(&out[start..]);
    out.try_reserve(TRAILER_LEN)?;
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Writes the blob of `g` into `buf`; returns its length, or how long `buf` must be.
pub(crate) fn encode_slice(host: &Host, g: &Guest, buf: &mut [u8]) -> Result<usize> {
    let mut pos = HEADER_LEN;
    postcard::serialize_with_flavor(
        &payload_of(host, g),
        SliceSink {
            buf: &mut *buf,
            pos: &mut pos,
        },
    )
    .map_err(|_| Error::OutOfMemory)?;
    let payload_len = pos - HEADER_LEN;
    let needed = pos + TRAILER_LEN;
    if needed > buf.len() {
        return Err(Error::BufferTooSmall { needed });
    }
    buf[..HEADER_LEN].copy_from_slice(&header(payload_len as u32));
    let crc = crc32fast::hash(&buf[..pos]);
    buf[pos..needed].copy_from_slice(&crc.to_le_bytes());
    Ok(needed)
}

// ---- reading ----

/// A blob that passed every structural check: the guest it describes could exist on
/// its source host. Nothing here says whether it fits a destination.
pub(crate) struct Decoded {
    pub(crate) major: u16,
    pub(crate) minor: u16,
    pub(crate) source_layout: PasidLayout,
    pub(crate) source_platform: Platform,
    pub(crate) config: GuestConfig,
    /// gPASIDs, strictly ascending, in the source's local range.
    pub(crate) pasids: Vec<WirePasid>,
    pub(crate) shared_count: u32,
    /// Devices, strictly ascending by RID.
    pub(crate) devices: Vec<DecodedDevice>,
    /// Every device's PASIDs, concatenated in device order.
    pub(crate) device_pasids: Vec<u32>,
}

/// A device of a [`Decoded`] guest.
pub(crate) struct DecodedDevice {
    pub(crate) rid: Rid,
    pub(crate) kind: DeviceKind,
    /// Its PASIDs (strictly ascending) in [`Decoded::device_pasids`].
    pub(crate) pasids: Range<usize>,
}

impl Decoded {
    /// The PASIDs bound (p2) or recorded (p1) on a device.
    pub(crate) fn pasids_of(&self, d: &DecodedDevice) -> &[u32] {
        &self.device_pasids[d.pasids.clone()]
    }
}

/// Checks the framing and checksum, decodes the payload and checks that it describes a
/// guest that could exist.
pub(crate) fn decode(blob: &[u8]) -> Result<Decoded> {
    if blob.is_empty() {
        return Err(malformed("the blob is empty"));
    }
    let magic_len = blob.len().min(MAGIC.len());
    if blob[..magic_len] != MAGIC[..magic_len] {
        return Err(malformed("not a PASID migration blob (wrong magic)"));
    }
    if blob.len() < HEADER_LEN + TRAILER_LEN {
        return Err(malformed("truncated: shorter than header and checksum"));
    }
    let major = u16::from_le_bytes([blob[8], blob[9]]);
    let minor = u16::from_le_bytes([blob[10], blob[11]]);
    if major != MAJOR {
        return Err(Error::UnsupportedVersion {
            found: major,
            supported: MAJOR,
        });
    }
    let payload_len = u32::from_le_bytes([blob[12], blob[13], blob[14], blob[15]]) as usize;
    let body = blob.len() - HEADER_LEN - TRAILER_LEN;
    if payload_len > body {
        return Err(malformed("truncated: shorter than its declared length"));
    }
    if payload_len < body {
        return Err(malformed("longer than its declared length"));
    }
    let crc_at = HEADER_LEN + payload_len;
    let crc = u32::from_le_bytes([
        blob[crc_at],
        blob[crc_at + 1],
        blob[crc_at + 2],
        blob[crc_at + 3],
    ]);
    if crc32fast::hash(&blob[..crc_at]) != crc {
        return Err(Error::ChecksumMismatch);
    }
    let (payload, rest) =
        postcard::take_from_bytes::<Payload>(&blob[HEADER_LEN..crc_at]).map_err(|e| match e {
            // Only TryVec raises a custom error (enumerations travel as u8 codes).
            postcard::Error::SerdeDeCustom => Error::OutOfMemory,
            postcard::Error::DeserializeUnexpectedEnd => malformed("the payload ends early"),
            _ => malformed("the payload does not decode"),
        })?;
    // A newer minor version may append fields; this version's writer appends none.
    let newer_minor = minor > MINOR;
    if !rest.is_empty() && !newer_minor {
        return Err(malformed("bytes after the payload"));
    }
    validate(payload, major, minor)
}

fn platform_of(code: u8) -> Result<Platform> {
    match code {
        PLATFORM_P1 => Ok(Platform::P1),
        PLATFORM_P2 => Ok(Platform::P2),
        _ => Err(malformed("unknown platform code")),
    }
}

fn validate(p: Payload, major: u16, minor: u16) -> Result<Decoded> {
    let l = &p.source;
    let source_layout = PasidLayout::new(
        l.width,
        l.local_start..l.local_end,
        l.shared_start..l.shared_end,
    )
    .map_err(|_| malformed("the source layout is not valid"))?;
    let source_platform = platform_of(p.source_platform)?;
    let guest_platform = platform_of(p.guest_platform)?;
    if guest_platform == Platform::P2 && source_platform == Platform::P1 {
        return Err(malformed("a p2 guest on a p1 source host"));
    }
    let local = source_layout.local();
    let shared = source_layout.shared();

    let pasids = p.pasids.0;
    if guest_platform == Platform::P1 && !pasids.is_empty() {
        return Err(malformed("a p1 guest with allocated PASIDs"));
    }
    let mut shared_count = 0u32;
    let mut prev = 0;
    for x in &pasids {
        if !local.contains(&x.gpasid) {
            return Err(malformed("a guest PASID outside the source's guest range"));
        }
        if x.gpasid <= prev {
            return Err(malformed("guest PASIDs repeated or out of order"));
        }
        prev = x.gpasid;
        match x.kind {
            PASID_LOCAL if x.source_hpasid != 0 => {
                return Err(malformed("a local guest PASID with a host PASID"));
            }
            PASID_LOCAL => {}
            PASID_SHARED => {
                if x.source_hpasid != 0 && !shared.contains(&x.source_hpasid) {
                    return Err(malformed("a source host PASID outside the shared range"));
                }
                shared_count += 1;
            }
            _ => return Err(malformed("unknown PASID kind")),
        }
    }
    if shared_count > p.shared_quota {
        return Err(Error::QuotaExceeded {
            quota: p.shared_quota,
        });
    }

    let wire_devices = p.devices.0;
    let device_pasids = p.device_pasids.0;
    let mut devices = Vec::new();
    devices.try_reserve_exact(wire_devices.len())?;
    let mut next = 0usize;
    let mut prev_rid = None;
    for d in &wire_devices {
        let rid = Rid::new(d.segment, d.bdf);
        if prev_rid.is_some_and(|p| p >= rid) {
            return Err(malformed("devices repeated or out of order"));
        }
        prev_rid = Some(rid);
        let kind = match d.kind {
            DEVICE_DEDICATED => DeviceKind::Dedicated,
            DEVICE_SHARED_WQ if guest_platform == Platform::P2 => DeviceKind::SharedWq,
            DEVICE_SHARED_WQ => return Err(malformed("a p1 guest with a shared work queue")),
            _ => return Err(malformed("unknown device kind")),
        };
        let end = next
            .checked_add(d.pasid_count as usize)
            .filter(|&end| end <= device_pasids.len())
            .ok_or(malformed("device PASID counts exceed the PASID list"))?;
        let mut prev = 0;
        for &pasid in &device_pasids[next..end] {
            if guest_platform == Platform::P1 {
                if !local.contains(&pasid) {
                    return Err(malformed(
                        "a recorded PASID outside the source's guest range",
                    ));
                }
            } else {
                match pasids.binary_search_by_key(&pasid, |x| x.gpasid) {
                    Err(_) => return Err(malformed("a device bound to a PASID the guest lacks")),
                    Ok(i) if kind == DeviceKind::SharedWq && !pasids[i].is_shared() => {
                        return Err(malformed("a local PASID bound to a shared work queue"));
                    }
                    Ok(_) => {}
                }
            }
            if pasid <= prev {
                return Err(malformed("a device's PASIDs repeated or out of order"));
            }
            prev = pasid;
        }
        devices.push(DecodedDevice {
            rid,
            kind,
            pasids: next..end,
        });
        next = end;
    }
    if next != device_pasids.len() {
        return Err(malformed("device PASID counts do not match the PASID list"));
    }

    Ok(Decoded {
        major,
        minor,
        source_layout,
        source_platform,
        config: GuestConfig {
            platform: guest_platform,
            shared_quota: p.shared_quota,
        },
        pasids,
        shared_count,
        devices,
        device_pasids,
    })
}

/// Builds the set of a device's PASIDs from a strictly ascending slice.
pub(crate) fn pasid_set(pasids: &[u32]) -> BTreeSet<u32> {
    pasids.iter().copied().collect()
}
