//! The reader's side: every check of an untrusted blob, from its framing to the guest
//! it describes. Nothing here looks at the destination; what comes out is a guest that
//! could exist on its source host. Reviewed on its own, as the one place hostile bytes
//! are parsed (see `docs/migration-format.md`, "What a reader checks").

use alloc::vec::Vec;
use core::ops::Range;

use super::wire::{
    self, unzigzag, Payload, TryVec, WireContract, WireIdentity, WireRecord, DEVICE_DEDICATED,
    DEVICE_SHARED_WQ, FLAG_OPTIONAL, HEADER_LEN, MAGIC, MAJOR, PLATFORM_P1, PLATFORM_P2,
    SHARED_BIT, TAG_CONTRACT, TAG_IDENTITY, TRAILER_LEN,
};
use super::MigrationIdentity;
use crate::contract::GuestContract;
use crate::error::{Error, Result};
use crate::layout::PasidLayout;
use crate::types::{DeviceKind, GuestConfig, GuestId, PasidKind, Platform, Rid};

const GPASID_MASK: u32 = SHARED_BIT - 1;

fn malformed(reason: &'static str) -> Error {
    Error::MalformedBlob { reason }
}

/// A blob that passed every structural check: the guest it describes could exist on
/// its source host. Nothing here says whether it fits a destination.
pub(crate) struct Decoded {
    pub(crate) major: u16,
    pub(crate) minor: u16,
    pub(crate) source_layout: PasidLayout,
    pub(crate) source_platform: Platform,
    pub(crate) config: GuestConfig,
    /// What the guest was told (2.0: from the blob; 1.0: what the source layout gave).
    pub(crate) contract: GuestContract,
    /// Who wrote the blob, for which guest and migration (2.0 only).
    pub(crate) identity: Option<MigrationIdentity>,
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
    // 1.0 is the only 1.x there is; its rule let a reader skip bytes it did not know,
    // so 1.x > 0 is refused rather than trusted. Any 2.x reads: its records carry the
    // rule for what this reader may skip.
    if !(major == MAJOR || (major == 1 && minor == 0)) {
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
    let (contract, identity) = if major == 1 {
        if !rest.is_empty() {
            return Err(malformed("bytes after the payload"));
        }
        (None, None)
    } else {
        records(rest)?
    };
    validate(payload, major, minor, contract, identity)
}

/// The 2.0 record list, which must end the payload: known records decoded, unknown
/// optional ones skipped, unknown required ones refused; identity and contract must
/// both be there.
fn records(bytes: &[u8]) -> Result<(Option<GuestContract>, Option<MigrationIdentity>)> {
    let (list, rest) =
        postcard::take_from_bytes::<TryVec<WireRecord<'_>>>(bytes).map_err(|e| match e {
            postcard::Error::SerdeDeCustom => Error::OutOfMemory,
            _ => malformed("the record list does not decode"),
        })?;
    if !rest.is_empty() {
        return Err(malformed("bytes after the record list"));
    }
    let (mut contract, mut identity) = (None, None);
    let mut prev_tag = None;
    for rec in &list.0 {
        if prev_tag.is_some_and(|p| p >= rec.tag) {
            return Err(malformed("records repeated or out of order"));
        }
        prev_tag = Some(rec.tag);
        if rec.flags & !FLAG_OPTIONAL != 0 {
            return Err(malformed("a record with unknown flags"));
        }
        match rec.tag {
            TAG_IDENTITY => {
                let w: WireIdentity = exact(rec.data)?;
                identity = Some(MigrationIdentity {
                    source_host: w.source_host,
                    source_guest: GuestId(w.source_guest),
                    epoch: w.epoch,
                });
            }
            TAG_CONTRACT => {
                let w: WireContract = exact(rec.data)?;
                contract = Some(GuestContract {
                    width: w.width,
                    local_start: w.local_start,
                    local_end: w.local_end,
                    capabilities: w.capabilities,
                });
            }
            _ if rec.flags & FLAG_OPTIONAL != 0 => {}
            _ => return Err(malformed(UNKNOWN_REQUIRED)),
        }
    }
    match (contract, identity) {
        (Some(c), Some(i)) => Ok((Some(c), Some(i))),
        _ => Err(malformed(
            "a 2.x blob without its identity or contract record",
        )),
    }
}

const UNKNOWN_REQUIRED: &str =
    "a record this reader does not know, which the writer did not mark optional (a newer format)";

/// A record's bytes as exactly one `T`.
fn exact<'a, T: serde::Deserialize<'a>>(data: &'a [u8]) -> Result<T> {
    match postcard::take_from_bytes::<T>(data) {
        Ok((v, [])) => Ok(v),
        _ => Err(malformed("a record does not decode")),
    }
}

fn platform_of(code: u8) -> Result<Platform> {
    match code {
        PLATFORM_P1 => Ok(Platform::P1),
        PLATFORM_P2 => Ok(Platform::P2),
        _ => Err(malformed("unknown platform code")),
    }
}

fn validate(
    p: Payload,
    major: u16,
    minor: u16,
    contract: Option<GuestContract>,
    identity: Option<MigrationIdentity>,
) -> Result<Decoded> {
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
    // What the guest was told: it must be statable and honoured by its own source.
    let contract = contract.unwrap_or_else(|| wire::contract_of_v1(&source_layout, guest_platform));
    if contract.validate(guest_platform).is_err()
        || contract
            .check_honoured(&source_layout, source_platform)
            .is_err()
    {
        return Err(malformed(
            "the guest's advertised contract is not one its source could keep",
        ));
    }
    // A p2 guest's gPASIDs come from its advertised range.
    let told = contract.local();

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
        if !local.contains(&gpasid) || !told.contains(&gpasid) {
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
        contract,
        identity,
        pasids,
        shared_count,
        source_hpasids,
        devices,
        device_pasids,
        bind_counts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
