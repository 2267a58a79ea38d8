//! The migration blob on the wire: framing, the private postcard structs, and the
//! structural checks every reader applies. See `docs/migration-format.md`.
//!
//! The structs here are private on purpose: renaming a public type never changes the
//! format. Enumerations travel as plain `u8` codes so the only custom serde error the
//! decoder can meet is the one [`TryVec`] raises when memory runs out.

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
use crate::sorted::{SortedMap, SortedSet};
use crate::source::HostPasidSource;
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
const DEVICE_DEDICATED: u8 = 0;
const DEVICE_SHARED_WQ: u8 = 1;

/// Elements a sequence may reserve before its elements arrive: enough for the usual
/// guest in one step, small enough that a hostile count cannot ask for much.
const PREALLOC_LIMIT: usize = 8192;

fn malformed(reason: &'static str) -> Error {
    Error::MalformedBlob { reason }
}

// ---- the payload, version 1 ----
//
// Lists are columns of small numbers so postcard's varints keep them short: a guest of
// 4096 PASIDs takes about 10 KiB, which keeps the checksum and the decoder cheap.

/// Bit 31 of a decoded gPASID entry: the gPASID is shared. gPASIDs are below 2^20.
pub(crate) const SHARED_BIT: u32 = 1 << 31;
const GPASID_MASK: u32 = SHARED_BIT - 1;

#[derive(serde::Serialize, serde::Deserialize)]
struct WireLayout {
    width: u8,
    local_start: u32,
    local_end: u32,
    shared_start: u32,
    shared_end: u32,
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
    /// Per gPASID, ascending: `(gpasid - previous gpasid) << 1 | shared`, the first
    /// one relative to 0. A gap of 0 is a repeat.
    pasids: TryVec<u32>,
    /// Empty, or per shared gPASID in order: the source host PASID as a zigzag delta
    /// from the previous one (the first from 0). Diagnostics only.
    source_hpasids: TryVec<u32>,
    devices: TryVec<WireDevice>,
    /// Per device in order, its PASIDs ascending as gaps from the previous one (each
    /// device's first from 0).
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
    source_hpasids: HpasidsRef<'a>,
    devices: DevicesRef<'a>,
    device_pasids: DevicePasidsRef<'a>,
}

struct PasidsRef<'a>(&'a Guest);

impl Serialize for PasidsRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
        let g = self.0;
        // Draining gPASIDs do not travel: they are the source's hardware state.
        let held = g.pasids.used() as usize - g.draining.len();
        let mut seq = s.serialize_seq(Some(held))?;
        let mut prev = 0;
        for gpasid in g.pasids.iter_used() {
            if !g.draining.is_empty() && g.draining.contains_key(&gpasid) {
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

fn unzigzag(v: u32) -> i32 {
    ((v >> 1) as i32) ^ -((v & 1) as i32)
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
    // Varints: u16 <= 3 bytes, u32 <= 5 bytes, numbers below 2^21 <= 3 bytes.
    let bound: usize = g.devices.values().map(|d| d.pasids.len()).sum();
    HEADER_LEN
        + TRAILER_LEN
        + 1 + 4 * 5 // layout
        + 2 + 5 // platforms, quota
        + 4 * 5 // sequence lengths
        + g.pasids.used() as usize * 3
        + g.remap.len() as usize * 3
        + g.devices.len() * (3 + 3 + 1 + 5)
        + bound * 3
}

/// The blob of `g` in a new `Vec`, sized once from [`size_bound`].
pub(crate) fn encode_vec<S: HostPasidSource>(host: &Host<S>, g: &Guest) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut len = size_bound(g);
    loop {
        out.try_reserve_exact(len.saturating_sub(out.len()))?;
        out.resize(len, 0);
        match encode_slice(host, g, &mut out) {
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

/// Writes the blob of `g` into `buf`; returns its length, or how long `buf` must be.
pub(crate) fn encode_slice<S: HostPasidSource>(
    host: &Host<S>,
    g: &Guest,
    buf: &mut [u8],
) -> Result<usize> {
    let sink = SliceSink {
        buf: &mut *buf,
        pos: HEADER_LEN,
    };
    // SliceSink never fails; Serialize impls here raise no custom errors.
    let end = postcard::serialize_with_flavor(&payload_of(host, g), sink).map_err(|_| {
        Error::MalformedBlob {
            reason: "the guest could not be encoded",
        }
    })?;
    let payload_len = end - HEADER_LEN;
    let needed = end + TRAILER_LEN;
    if needed > buf.len() {
        return Err(Error::BufferTooSmall { needed });
    }
    buf[..HEADER_LEN].copy_from_slice(&header(payload_len as u32));
    let crc = crc32fast::hash(&buf[..end]);
    buf[end..needed].copy_from_slice(&crc.to_le_bytes());
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
    /// gPASIDs, strictly ascending, in the source's local range, each with
    /// [`SHARED_BIT`] set when shared.
    pub(crate) pasids: Vec<u32>,
    pub(crate) shared_count: u32,
    /// The source host PASID of each shared gPASID, in order; empty if none travelled.
    pub(crate) source_hpasids: Vec<u32>,
    /// Devices, strictly ascending by RID.
    pub(crate) devices: Vec<DecodedDevice>,
    /// Every device's PASIDs, concatenated in device order.
    pub(crate) device_pasids: Vec<u32>,
    /// p2: how many devices each gPASID (same index as `pasids`) is bound to.
    pub(crate) bind_counts: Vec<u32>,
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

    /// The gPASIDs with their kind, and the source host PASID of shared ones.
    pub(crate) fn pasids(&self) -> impl Iterator<Item = (u32, PasidKind, Option<u32>)> + '_ {
        let mut hpasids = self.source_hpasids.iter();
        self.pasids.iter().map(move |&e| {
            if e & SHARED_BIT != 0 {
                (e & GPASID_MASK, PasidKind::Shared, hpasids.next().copied())
            } else {
                (e, PasidKind::Local, None)
            }
        })
    }
}

/// The gPASID of a [`Decoded::pasids`] entry.
#[inline]
pub(crate) fn gpasid(entry: u32) -> u32 {
    entry & GPASID_MASK
}

/// The first index at or after `from` whose gPASID is at least `key`: a galloping
/// search, so walking a sorted list of keys through `hay` costs about one step per key
/// when they are dense and a logarithm of the gap when they are sparse.
#[inline]
fn gallop(hay: &[u32], from: usize, key: u32) -> usize {
    // Dense bindings: the key is usually right here.
    match hay.get(from) {
        Some(&e) if gpasid(e) >= key => return from,
        None => return from,
        Some(_) => {}
    }
    let n = hay.len();
    let (mut lo, mut probe, mut step) = (from + 1, from + 1, 1usize);
    // Every index in from..lo holds a smaller gPASID.
    while probe < n && gpasid(hay[probe]) < key {
        lo = probe + 1;
        probe = probe.saturating_add(step);
        step = step.saturating_mul(2);
    }
    let end = probe.min(n);
    lo + hay[lo..end].partition_point(|&e| gpasid(e) < key)
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

    // gPASIDs: gaps to absolute numbers, in place.
    let mut pasids = p.pasids.0;
    if guest_platform == Platform::P1 && !pasids.is_empty() {
        return Err(malformed("a p1 guest with allocated PASIDs"));
    }
    let mut shared_count = 0u32;
    let mut prev = 0u32;
    for e in &mut pasids {
        let gap = *e >> 1;
        if gap == 0 {
            return Err(malformed("guest PASIDs repeated (or PASID 0)"));
        }
        // Cannot overflow: prev < 2^20 and gap < 2^31.
        let gpasid = prev + gap;
        if !local.contains(&gpasid) {
            return Err(malformed("a guest PASID outside the source's guest range"));
        }
        prev = gpasid;
        let is_shared = *e & 1;
        shared_count += is_shared;
        *e = gpasid | is_shared << 31;
    }
    if shared_count > p.shared_quota {
        return Err(Error::QuotaExceeded {
            quota: p.shared_quota,
        });
    }

    // Source host PASIDs: none, or one per shared gPASID, in the shared range.
    let mut source_hpasids = p.source_hpasids.0;
    if !source_hpasids.is_empty() && source_hpasids.len() != shared_count as usize {
        return Err(malformed(
            "source host PASIDs do not match the shared PASIDs",
        ));
    }
    let mut prev = 0u32;
    for h in &mut source_hpasids {
        let hpasid = prev.wrapping_add(unzigzag(*h) as u32);
        if !shared.contains(&hpasid) {
            return Err(malformed("a source host PASID outside the shared range"));
        }
        prev = hpasid;
        *h = hpasid;
    }

    // Devices and their PASIDs.
    let wire_devices = p.devices.0;
    let mut device_pasids = p.device_pasids.0;
    let mut devices = Vec::new();
    devices.try_reserve_exact(wire_devices.len())?;
    let mut bind_counts = Vec::new();
    if guest_platform == Platform::P2 {
        bind_counts.try_reserve_exact(pasids.len())?;
        bind_counts.resize(pasids.len(), 0u32);
    }
    let mut next = 0usize;
    let mut prev_rid = None;
    for d in &wire_devices {
        let rid = Rid::new(d.segment, d.bdf);
        let kind = match d.kind {
            DEVICE_DEDICATED => DeviceKind::Dedicated,
            DEVICE_SHARED_WQ if guest_platform == Platform::P2 => DeviceKind::SharedWq,
            DEVICE_SHARED_WQ => return Err(malformed("a p1 guest with a shared work queue")),
            _ => return Err(malformed("unknown device kind")),
        };
        // One RID may carry both uses (dedicated first), each at most once.
        if prev_rid.is_some_and(|p| p >= (rid, kind)) {
            return Err(malformed("devices repeated or out of order"));
        }
        prev_rid = Some((rid, kind));
        let end = next
            .checked_add(d.pasid_count as usize)
            .filter(|&end| end <= device_pasids.len())
            .ok_or(malformed("device PASID counts exceed the PASID list"))?;
        let mut prev = 0u32;
        let mut at = 0usize;
        for e in &mut device_pasids[next..end] {
            if *e == 0 {
                return Err(malformed("a device's PASIDs repeated (or PASID 0)"));
            }
            let pasid = prev.saturating_add(*e);
            prev = pasid;
            *e = pasid;
            if guest_platform == Platform::P1 {
                if !local.contains(&pasid) {
                    return Err(malformed(
                        "a recorded PASID outside the source's guest range",
                    ));
                }
                continue;
            }
            at = gallop(&pasids, at, pasid);
            match pasids.get(at) {
                Some(&e) if gpasid(e) == pasid => {
                    if kind == DeviceKind::SharedWq && e & SHARED_BIT == 0 {
                        return Err(malformed("a local PASID bound to a shared work queue"));
                    }
                    bind_counts[at] += 1;
                    at += 1;
                }
                _ => return Err(malformed("a device bound to a PASID the guest lacks")),
            }
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
        source_hpasids,
        devices,
        device_pasids,
        bind_counts,
    })
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

    #[test]
    fn gallop_finds_the_first_not_smaller() {
        // gPASIDs 2, 4, ..., 200, half of them flagged shared: the flag must not matter.
        let hay: Vec<u32> = (1..=100u32)
            .map(|i| (2 * i) | if i % 2 == 0 { SHARED_BIT } else { 0 })
            .collect();
        for from in 0..=hay.len() {
            for key in 0..205 {
                let want = from + hay[from..].partition_point(|&e| gpasid(e) < key);
                assert_eq!(gallop(&hay, from, key), want, "from {from} key {key}");
            }
        }
        assert_eq!(gallop(&[], 0, 5), 0);
    }
}
