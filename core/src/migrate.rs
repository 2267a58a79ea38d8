//! Live migration of a guest's PASID state between hosts.
//!
//! The source exports a guest into a self-contained, versioned, checksummed blob
//! ([`Host::export_guest`]); the destination imports it ([`Host::import_guest`]). The
//! guest keeps every guest PASID: RID-local numbers are programmed unchanged on the
//! destination's dedicated RIDs, and each shared gPASID gets a new host PASID from the
//! destination's shared range, with the translation table rebuilt. Host PASIDs of the
//! source travel only as diagnostics ([`ImportReport::shared`]). The format is
//! described in `docs/migration-format.md`.
//!
//! Import is all-or-nothing: it checks everything first and then installs the guest in
//! one step, so a refused import leaves the destination exactly as it was.
//!
//! # The RID map
//!
//! The destination's VMM says where each device of the guest is attached there, one
//! [`RidMapping`] per device: source RID, destination RID and, optionally, what kind
//! of device the destination RID is (the VMM configured it, a VF or a shared work
//! queue; the host knows nothing of RIDs it has not attached). Plain
//! `(source, destination)` pairs, with no kind, are accepted too:
//!
//! ```
//! # use pasid_core::{DeviceKind, GuestConfig, Host, PasidLayout, Platform, Rid};
//! let layout = PasidLayout::new(20, 1..4096, 4096..1 << 19)?;
//! let mut source = Host::new(layout.clone(), Platform::P2)?;
//! let g = source.create_guest(GuestConfig::p2(8))?;
//! let (vf, wq) = (Rid::new(0, 0x0301), Rid::new(0, 0x0a00));
//! source.attach(g, vf, DeviceKind::Dedicated)?;
//! source.attach(g, wq, DeviceKind::SharedWq)?;
//! let blob = source.export_guest(g)?;
//!
//! let mut target = Host::new(layout, Platform::P2)?;
//! // The VF lands at another BDF; the map says both destinations' kinds.
//! let map = [
//!     (vf, Rid::new(0, 0x0402), DeviceKind::Dedicated),
//!     (wq, wq, DeviceKind::Dedicated), // wrong: the guest's device is a shared WQ
//! ];
//! let refused = target.check_import_mapped(&blob, &map).unwrap_err();
//! assert_eq!(refused.code(), pasid_core::ErrorCode::DeviceKindMismatch);
//! let map = [
//!     (vf, Rid::new(0, 0x0402), DeviceKind::Dedicated),
//!     (wq, wq, DeviceKind::SharedWq),
//! ];
//! let (_guest, report) = target.import_guest_mapped(&blob, &map)?;
//! assert_eq!(report.devices.len(), 2);
//! # Ok::<(), pasid_core::Error>(())
//! ```
//!
//! # Checks, in order
//!
//! The first one that fails names the conflict:
//!
//! 1. the blob (`validate.rs`): framing ([`Error::MalformedBlob`]), version
//!    ([`Error::UnsupportedVersion`]: 1.0 and 2.x are read), checksum
//!    ([`Error::ChecksumMismatch`]), the 2.x records (an unknown one not marked
//!    optional, a known one that does not decode: [`Error::MalformedBlob`]), then the
//!    payload must describe a guest that could exist on its source
//!    ([`Error::MalformedBlob`], or [`Error::QuotaExceeded`] when it holds more shared
//!    PASIDs than its quota);
//! 2. identity: a blob whose [`MigrationIdentity`] this host imported before is a
//!    replay ([`Error::Replayed`]);
//! 3. platform: a p2 guest needs a p2 destination ([`Error::NotSupported`]); a p1 guest
//!    goes to either and stays p1, because its vIOMMU's lack of PASID allocation is
//!    guest-visible ([`ImportReport::p1_guest_on_p2_host`]);
//! 4. the guest-visible contract: what the guest's vIOMMU advertised (its range, width
//!    and capabilities, [`GuestContract`]) must be honoured here, whatever the guest
//!    holds ([`Error::ContractNotHonoured`], naming both);
//! 5. quota: the destination's [`QuotaRule`] gives the guest's quota, which must cover
//!    the shared PASIDs it holds ([`Error::QuotaExceeded`]);
//! 6. layout: every gPASID (p2) or recorded PASID (p1) lies in the destination's local
//!    range ([`Error::PasidOutOfRange`] with the first one, ascending, by RID for p1;
//!    after check 4 only a p1 guest that recorded PASIDs beyond what it was told can
//!    fail here), and the destination's shared range is at least as large as the
//!    guest's shared PASIDs ([`Error::IncompatibleLayout`]);
//! 7. free shared PASIDs on the destination ([`Error::SharedRangeExhausted`]);
//! 8. devices, by source RID ascending: each is in `rid_map`
//!    ([`Error::RidNotMapped`]: an unmapped RID is an error, never identity, so a VF
//!    that moved is never silently attached to whatever sits at its old BDF), exactly
//!    once ([`Error::RidMappedTwice`]); if its mapping gives a
//!    [kind](RidMapping::kind), that is the device's kind
//!    ([`Error::DeviceKindMismatch`]); and its destination RID is attached to no guest
//!    ([`Error::RidInUse`]); then no two devices may share a destination RID
//!    ([`Error::RidInUse`] with the lowest such RID). Map entries for RIDs the guest
//!    lacks are ignored, so one map can serve several guests. Devices keep their kind;
//! 9. a free guest slot ([`Error::TooManyGuests`]) and memory ([`Error::OutOfMemory`],
//!    [`Error::ChangeLogFull`] when [`ImportOptions::change_log`] is smaller than the
//!    guest's table).
//!
//! # Versions
//!
//! [`Host::export_guest`] writes [`FormatVersion::CURRENT`];
//! [`Host::export_guest_with`] writes any of [`FormatVersion::SUPPORTED`] (1.0 for a
//! destination with an older library) with a migration epoch. The rule for what a
//! reader may skip, and the compatibility matrix, are in `docs/migration-format.md`.

mod validate;
mod wire;

use alloc::vec::Vec;
use core::fmt;

use crate::changes::TranslationChange;
use crate::contract::GuestContract;
use crate::error::{Error, Result};
use crate::host::{Device, Guest, Host};
use crate::layout::PasidLayout;
use crate::sorted::SortedMap;
use crate::types::{DeviceKind, GuestConfig, GuestId, PasidKind, Platform, Rid};

use validate::{gpasid, Decoded};
use wire::SHARED_BIT;

/// The format's major version this build writes by default. It reads this major and
/// 1 (1.0); any other is refused with [`Error::UnsupportedVersion`].
pub const FORMAT_MAJOR: u16 = wire::MAJOR;
/// The format's minor version this build writes by default.
pub const FORMAT_MINOR: u16 = wire::MINOR;
/// The 8 bytes every blob starts with.
pub const FORMAT_MAGIC: [u8; 8] = wire::MAGIC;

/// How many imported identities a host remembers to refuse replays: the oldest is
/// forgotten when a new one comes. Bounded so a host's memory does not grow with its
/// uptime; a VMM feeds blobs of its own guests only, so it cannot flush the set to
/// replay another VMM's blob without importing that many of its own.
pub const REMEMBERED_IMPORTS: usize = 256;

/// A blob format version, major.minor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct FormatVersion {
    /// Changes when an older reader could misread a blob: older readers refuse it.
    pub major: u16,
    /// Changes when records are added; what a reader may skip is marked per record.
    pub minor: u16,
}

impl FormatVersion {
    /// Version 1.0: no records, so no identity and no contract.
    pub const V1_0: FormatVersion = FormatVersion { major: 1, minor: 0 };
    /// Version 2.0: 1.0's fields, then records (identity and contract, both required).
    pub const V2_0: FormatVersion = FormatVersion { major: 2, minor: 0 };
    /// What this build writes by default.
    pub const CURRENT: FormatVersion = FormatVersion::V2_0;
    /// Every version this build writes and reads, oldest first.
    pub const SUPPORTED: [FormatVersion; 2] = [FormatVersion::V1_0, FormatVersion::V2_0];
}

impl fmt::Display for FormatVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Who wrote a blob, for which guest, in which migration attempt: a destination
/// refuses a second blob with the same identity ([`Error::Replayed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct MigrationIdentity {
    /// The source host's id ([`Host::set_host_id`]).
    pub source_host: u64,
    /// The guest's id on the source (never reused there for another guest).
    pub source_guest: GuestId,
    /// The migration attempt, as the source's VMM numbers them
    /// ([`ExportOptions::epoch`]): a retry after a failed attempt takes a new one.
    pub epoch: u64,
}

impl fmt::Display for MigrationIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the migration of {} from host {:#x}, epoch {}",
            self.source_guest, self.source_host, self.epoch
        )
    }
}

/// How [`Host::export_guest_with`] writes a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportOptions {
    /// The format version to write: [`FormatVersion::CURRENT`], or an older one the
    /// destination reads (migrating back to an older host). 1.0 carries no identity
    /// and no contract, and is refused for a guest whose contract 1.0 cannot express.
    pub version: FormatVersion,
    /// The migration attempt: a new number for every attempt (a counter the VMM keeps,
    /// a timestamp), so that a retry is not taken for a replay.
    pub epoch: u64,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            version: FormatVersion::CURRENT,
            epoch: 0,
        }
    }
}

/// The imported guest's quota: the blob's quota is a request, and the destination
/// decides (the blob is integrity-checked, not authenticated).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QuotaRule {
    /// The blob's quota, as it says (a destination that trusts its source).
    #[default]
    Request,
    /// The blob's quota, but at most this.
    Cap(u32),
    /// This quota, whatever the blob says.
    Set(u32),
}

/// How [`Host::import_guest_with`] imports a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImportOptions {
    /// The imported guest's quota. A quota below the shared PASIDs the guest holds is
    /// refused with [`Error::QuotaExceeded`].
    pub quota: QuotaRule,
    /// Start the imported guest's translation-change log with this capacity (see
    /// [`Host::enable_translation_changes`]): its first changes are the whole new
    /// table.
    pub change_log: Option<u32>,
}

/// One entry of an import's RID map: where the guest's device at `source` is attached
/// on the destination host, and optionally what kind of device that is.
///
/// Converts from `(source, destination)` (kind `None`) and from
/// `(source, destination, kind)`, so a map can be written as an array of tuples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RidMapping {
    /// The device's RID on the source host (the RID in the blob).
    pub source: Rid,
    /// The RID to attach it at on the destination host.
    pub destination: Rid,
    /// What the destination device is, as its VMM configured it: a mapping whose kind
    /// differs from the guest's device is refused with [`Error::DeviceKindMismatch`].
    /// `None`: the caller does not say, and the kind is not checked (the device is
    /// attached with the kind it had on the source).
    pub kind: Option<DeviceKind>,
}

impl From<(Rid, Rid)> for RidMapping {
    /// A mapping that does not say the destination's kind (not checked).
    fn from((source, destination): (Rid, Rid)) -> Self {
        RidMapping {
            source,
            destination,
            kind: None,
        }
    }
}

impl From<(Rid, Rid, DeviceKind)> for RidMapping {
    /// A mapping whose destination is a device of `kind` (checked).
    fn from((source, destination, kind): (Rid, Rid, DeviceKind)) -> Self {
        RidMapping {
            source,
            destination,
            kind: Some(kind),
        }
    }
}

/// What a successful [`Host::import_guest`] did, for the VMM's log and for programming
/// the destination's devices.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ImportReport {
    /// The guest's platform, as it was on the source.
    pub guest_platform: Platform,
    /// True when a p1 guest landed on a p2 host: it stays p1 (its vIOMMU offers no PASID
    /// allocation and may not start to), so it cannot use shared work queues there.
    pub p1_guest_on_p2_host: bool,
    /// Every shared gPASID with its host PASID on the source (if it travelled) and on
    /// the destination, ascending by gPASID.
    pub shared: Vec<SharedRemap>,
    /// Every device: its source RID, the destination RID it was attached at, its kind;
    /// ascending by source RID.
    pub devices: Vec<RidRemap>,
    /// The blob's identity (a 1.0 blob has none), now remembered by this host.
    pub identity: Option<MigrationIdentity>,
    /// The blob's format version.
    pub version: FormatVersion,
    /// What the guest's vIOMMU advertised, which this host honours.
    pub contract: GuestContract,
    /// The guest's quota here, after the [`QuotaRule`].
    pub quota: u32,
}

/// A shared gPASID's host PASIDs before and after migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SharedRemap {
    /// The guest PASID; unchanged by migration.
    pub gpasid: u32,
    /// Its host PASID on the source, if the blob carried it (diagnostic only).
    pub source_hpasid: Option<u32>,
    /// Its new host PASID on the destination (what [`Host::translate`] now returns).
    pub destination_hpasid: u32,
}

/// A device's RID before and after migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct RidRemap {
    /// The RID on the source.
    pub source: Rid,
    /// The RID on the destination.
    pub destination: Rid,
    /// The device's kind, the same on both.
    pub kind: DeviceKind,
}

/// The contents of a migration blob, decoded for diagnostics by [`inspect`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct MigratedGuest {
    /// The blob's format version, major.
    pub format_major: u16,
    /// The blob's format version, minor.
    pub format_minor: u16,
    /// The source host's layout.
    pub source_layout: PasidLayout,
    /// The source host's platform.
    pub source_platform: Platform,
    /// The guest's configuration (platform and quota).
    pub config: GuestConfig,
    /// What the guest's vIOMMU advertised (for a 1.0 blob: what its source layout
    /// gave, as 1.0 readers assume).
    pub contract: GuestContract,
    /// The blob's identity (2.0 and later).
    pub identity: Option<MigrationIdentity>,
    /// The guest's gPASIDs (p2), ascending.
    pub pasids: Vec<MigratedPasid>,
    /// The guest's devices, ascending by source RID.
    pub devices: Vec<MigratedDevice>,
}

/// A gPASID in a [`MigratedGuest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct MigratedPasid {
    /// The guest PASID.
    pub gpasid: u32,
    /// Local or shared.
    pub kind: PasidKind,
    /// For a shared gPASID, its host PASID on the source, if it travelled.
    pub source_hpasid: Option<u32>,
}

/// A device in a [`MigratedGuest`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct MigratedDevice {
    /// The RID on the source.
    pub rid: Rid,
    /// Dedicated or shared WQ.
    pub kind: DeviceKind,
    /// The gPASIDs bound to it (p2) or recorded on it (p1), ascending.
    pub pasids: Vec<u32>,
}

/// Decodes and checks a blob without a host: what it holds, or why it is refused.
/// Succeeds exactly when the blob passes check 1 of the [module's list](self).
pub fn inspect(blob: &[u8]) -> Result<MigratedGuest> {
    let d = validate::decode(blob)?;
    let mut pasids = Vec::new();
    pasids.try_reserve_exact(d.pasids.len())?;
    pasids.extend(
        d.pasids()
            .map(|(gpasid, kind, source_hpasid)| MigratedPasid {
                gpasid,
                kind,
                source_hpasid,
            }),
    );
    let mut devices = Vec::new();
    devices.try_reserve_exact(d.devices.len())?;
    for dev in &d.devices {
        let src = d.pasids_of(dev);
        let mut list = Vec::new();
        list.try_reserve_exact(src.len())?;
        list.extend_from_slice(src);
        devices.push(MigratedDevice {
            rid: dev.rid,
            kind: dev.kind,
            pasids: list,
        });
    }
    Ok(MigratedGuest {
        format_major: d.major,
        format_minor: d.minor,
        source_layout: d.source_layout,
        source_platform: d.source_platform,
        config: d.config,
        contract: d.contract,
        identity: d.identity,
        pasids,
        devices,
    })
}

const P2_GUEST_P1_HOST: &str =
    "a p2 guest needs a p2 destination: its vIOMMU offers PASID allocation";
const SHARED_RANGE_TOO_SMALL: &str =
    "the destination's shared range is smaller than the guest's shared PASIDs";

impl<S: crate::source::HostPasidSource> Host<S> {
    /// Exports a guest's PASID state as a migration blob of the current format, with
    /// epoch 0 ([`Host::export_guest_with`] chooses both). The guest stays as it is;
    /// once the destination has imported the blob, [`Host::destroy_guest`] releases it.
    pub fn export_guest(&self, guest: GuestId) -> Result<Vec<u8>> {
        self.export_guest_with(guest, &ExportOptions::default())
    }

    /// Exports a guest as [`Host::export_guest`] does, in the format version and with
    /// the migration epoch `opts` gives.
    pub fn export_guest_with(&self, guest: GuestId, opts: &ExportOptions) -> Result<Vec<u8>> {
        wire::encode_vec(self, guest, self.guest(guest)?, opts)
    }

    /// [`Host::export_guest`] into a caller's buffer (for C callers that own their
    /// memory): returns the blob's length, or [`Error::BufferTooSmall`] with the length
    /// needed, in which case `buf`'s contents are unspecified.
    pub fn export_guest_into(&self, guest: GuestId, buf: &mut [u8]) -> Result<usize> {
        self.export_guest_with_into(guest, &ExportOptions::default(), buf)
    }

    /// [`Host::export_guest_with`] into a caller's buffer (see
    /// [`Host::export_guest_into`]).
    pub fn export_guest_with_into(
        &self,
        guest: GuestId,
        opts: &ExportOptions,
        buf: &mut [u8],
    ) -> Result<usize> {
        let g = self.guest(guest)?;
        wire::encode_slice(self, guest, g, opts, buf)
    }

    /// Runs every check of [`Host::import_guest`] without changing anything: `Ok` means
    /// the import would succeed now, short of memory or a free guest slot.
    ///
    /// The map's pairs say no device kinds; [`Host::check_import_mapped`] takes
    /// mappings that do.
    pub fn check_import(&self, blob: &[u8], rid_map: &[(Rid, Rid)]) -> Result<()> {
        self.check_import_mapped(blob, rid_map)
    }

    /// Runs every check of [`Host::import_guest_mapped`] without changing anything:
    /// `Ok` means the import would succeed now, short of memory or a free guest slot.
    pub fn check_import_mapped<M>(&self, blob: &[u8], rid_map: &[M]) -> Result<()>
    where
        M: Copy + Into<RidMapping>,
    {
        self.check_import_with(blob, rid_map, &ImportOptions::default())
    }

    /// Runs every check of [`Host::import_guest_with`] without changing anything.
    pub fn check_import_with<M>(
        &self,
        blob: &[u8],
        rid_map: &[M],
        opts: &ImportOptions,
    ) -> Result<()>
    where
        M: Copy + Into<RidMapping>,
    {
        let d = validate::decode(blob)?;
        self.plan_import(&d, &rid_mappings(rid_map)?, opts)
            .map(|_| ())
    }

    /// Imports a guest exported by [`Host::export_guest`] on another host (or this one),
    /// attaching its devices at the RIDs `rid_map` gives as (source RID, destination
    /// RID) pairs. Returns the new guest's id and what moved where.
    ///
    /// The same as [`Host::import_guest_mapped`] with mappings that say no device kind.
    /// (Not generic, so an empty map `&[]` needs no type annotation.)
    pub fn import_guest(
        &mut self,
        blob: &[u8],
        rid_map: &[(Rid, Rid)],
    ) -> Result<(GuestId, ImportReport)> {
        self.import_guest_mapped(blob, rid_map)
    }

    /// Imports a guest exported by [`Host::export_guest`] on another host (or this one),
    /// attaching its devices where `rid_map` says: [`RidMapping`]s, or tuples
    /// `(source, destination)` and `(source, destination, kind)` that convert into
    /// them. A mapping with a kind is checked against the guest's device; see
    /// [the RID map](self#the-rid-map). Returns the new guest's id and what moved where.
    ///
    /// Every gPASID keeps its number and kind, bindings (p2) and recorded PASIDs (p1)
    /// are restored, and each shared gPASID gets the lowest free host PASIDs of this
    /// host's shared range. See the [module's list](self) for the checks, which all run
    /// before anything changes: on error this host is unchanged.
    pub fn import_guest_mapped<M>(
        &mut self,
        blob: &[u8],
        rid_map: &[M],
    ) -> Result<(GuestId, ImportReport)>
    where
        M: Copy + Into<RidMapping>,
    {
        self.import_guest_with(blob, rid_map, &ImportOptions::default())
    }

    /// [`Host::import_guest_mapped`] with the destination's own choices: the guest's
    /// quota ([`QuotaRule`]) and whether its translation-change log starts at once.
    pub fn import_guest_with<M>(
        &mut self,
        blob: &[u8],
        rid_map: &[M],
        opts: &ImportOptions,
    ) -> Result<(GuestId, ImportReport)>
    where
        M: Copy + Into<RidMapping>,
    {
        let d = validate::decode(blob)?;
        let (destinations, quota) = self.plan_import(&d, &rid_mappings(rid_map)?, opts)?;

        // Build the guest and the report off to the side; only memory can fail here.
        let mut report = ImportReport {
            guest_platform: d.config.platform,
            p1_guest_on_p2_host: d.config.platform == Platform::P1 && self.platform == Platform::P2,
            shared: Vec::new(),
            devices: Vec::new(),
            identity: d.identity,
            version: FormatVersion {
                major: d.major,
                minor: d.minor,
            },
            contract: d.contract,
            quota,
        };
        report.shared.try_reserve_exact(d.shared_count as usize)?;
        report.devices.try_reserve_exact(d.devices.len())?;
        if d.identity.is_some() && self.imported.capacity() < REMEMBERED_IMPORTS {
            // Once, for good: the set never grows past this, so later imports never
            // allocate for it and the oldest-first replacement below never moves it.
            self.imported
                .try_reserve_exact(REMEMBERED_IMPORTS - self.imported.len())?;
        }
        let config = GuestConfig {
            shared_quota: quota,
            ..d.config
        };
        let mut g = Guest::new(config, d.contract, &self.layout)?;
        let mut devices = Vec::new();
        devices.try_reserve_exact(d.devices.len())?;
        for (dev, &destination) in d.devices.iter().zip(&destinations) {
            let device = Device {
                pasids: wire::pasid_set(d.pasids_of(dev))?,
            };
            devices.push(((destination, dev.kind), device));
            report.devices.push(RidRemap {
                source: dev.rid,
                destination,
                kind: dev.kind,
            });
        }
        devices.sort_unstable_by_key(|(key, _)| *key);
        g.devices = SortedMap::from_sorted(devices);
        let bound = d.bind_counts.iter().filter(|&&n| n > 0).count();
        let mut counts = Vec::new();
        counts.try_reserve_exact(bound)?;
        counts.extend(
            d.pasids
                .iter()
                .zip(&d.bind_counts)
                .filter(|(_, &n)| n > 0)
                .map(|(&e, &n)| (gpasid(e), n)),
        );
        g.bind_counts = SortedMap::from_sorted(counts);

        // The host PASIDs, all at once (one round trip to a broker); from here on a
        // failure gives them back.
        let mut hpasids = Vec::new();
        self.source.alloc_many(d.shared_count, &mut hpasids)?;
        let installed = fill_pasids(&mut g, &d, &hpasids, &mut report.shared)
            .and_then(|()| start_log(&mut g, opts.change_log, &report.shared))
            .and_then(|()| self.install_guest(g))
            .and_then(|id| self.register_devices(id, &report.devices).map(|()| id));
        match installed {
            Ok(id) => {
                self.host_pasids += d.shared_count;
                if let Some(identity) = d.identity {
                    if self.imported.len() >= REMEMBERED_IMPORTS {
                        self.imported.remove(0);
                    }
                    // Reserved above.
                    self.imported.push(identity);
                }
                Ok((id, report))
            }
            Err(e) => {
                // Never seen by any hardware: straight back to the source.
                for h in hpasids {
                    let _ = self.source.release(h);
                }
                Err(e)
            }
        }
    }

    /// Enters an installed guest's devices in the host's RID registry; on failure
    /// (memory) undoes that and removes the guest again, so the host is unchanged.
    fn register_devices(&mut self, id: GuestId, devices: &[RidRemap]) -> Result<()> {
        for (done, dev) in devices.iter().enumerate() {
            let users = self
                .rids
                .get_or_try_insert_with(dev.destination, Default::default);
            let added = users.and_then(|users| match dev.kind {
                DeviceKind::Dedicated => {
                    users.dedicated = Some(id);
                    Ok(true)
                }
                DeviceKind::SharedWq => users.shared_wq.try_insert_key(id),
            });
            if let Err(e) = added {
                for dev in &devices[..=done] {
                    self.remove_user(dev.destination, dev.kind, id);
                }
                self.uninstall_guest(id);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Checks 2-7 of the module's list; returns the destination RID of each device and
    /// the guest's quota here. `map` is sorted by source RID.
    fn plan_import(
        &self,
        d: &Decoded,
        map: &[RidMapping],
        opts: &ImportOptions,
    ) -> Result<(Vec<Rid>, u32)> {
        // Identity: never the same migration twice.
        if let Some(identity) = d.identity.filter(|i| self.imported.contains(i)) {
            return Err(Error::Replayed { identity });
        }
        // Platform.
        if d.config.platform == Platform::P2 && self.platform == Platform::P1 {
            return Err(Error::NotSupported {
                what: P2_GUEST_P1_HOST,
            });
        }
        // The guest-visible contract, whatever the guest holds now.
        d.contract.check_honoured(&self.layout, self.platform)?;
        // Quota: the destination's word against the blob's request.
        let quota = match opts.quota {
            QuotaRule::Request => d.config.shared_quota,
            QuotaRule::Cap(cap) => d.config.shared_quota.min(cap),
            QuotaRule::Set(q) => q,
        };
        if d.shared_count > quota {
            return Err(Error::QuotaExceeded { quota });
        }
        // Layout: every PASID the guest holds fits the destination's local range.
        let local = self.layout.local();
        if d.config.platform == Platform::P2 {
            first_outside(&d.pasids, |&e| gpasid(e), &local)?;
        } else {
            for dev in &d.devices {
                first_outside(d.pasids_of(dev), |&p| p, &local)?;
            }
        }
        if d.shared_count > self.layout.shared().len() as u32 {
            return Err(Error::IncompatibleLayout {
                reason: SHARED_RANGE_TOO_SMALL,
            });
        }
        // Free shared PASIDs, as far as the source knows (it may still refuse).
        if d.shared_count > self.source.free_count() {
            return Err(Error::SharedRangeExhausted);
        }
        // Devices.
        let mut destinations = Vec::new();
        destinations.try_reserve_exact(d.devices.len())?;
        for dev in &d.devices {
            let at = map.partition_point(|m| m.source < dev.rid);
            let mapping = match map.get(at) {
                Some(m) if m.source == dev.rid => m,
                _ => return Err(Error::RidNotMapped { rid: dev.rid }),
            };
            if map.get(at + 1).is_some_and(|m| m.source == dev.rid) {
                return Err(Error::RidMappedTwice { rid: dev.rid });
            }
            let destination = mapping.destination;
            if let Some(kind) = mapping.kind.filter(|&k| k != dev.kind) {
                return Err(Error::DeviceKindMismatch {
                    rid: destination,
                    guest_kind: dev.kind,
                    destination_kind: kind,
                });
            }
            // Only the dedicated use is one guest's; a shared WQ takes any number.
            if dev.kind == DeviceKind::Dedicated && self.owner(destination).is_some() {
                return Err(Error::RidInUse { rid: destination });
            }
            destinations.push(destination);
        }
        // Two devices of the guest sent to one use of one destination RID.
        let mut sorted = Vec::new();
        sorted.try_reserve_exact(destinations.len())?;
        sorted.extend(
            destinations
                .iter()
                .zip(&d.devices)
                .map(|(&r, dev)| (r, dev.kind)),
        );
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::RidInUse { rid: w[0].0 });
        }
        Ok((destinations, quota))
    }
}

/// Claims every gPASID in `g` and maps each shared one to the next of `hpasids`.
fn fill_pasids(
    g: &mut Guest,
    d: &Decoded,
    hpasids: &[u32],
    shared: &mut Vec<SharedRemap>,
) -> Result<()> {
    let mut source = d.source_hpasids.iter();
    let mut destination = hpasids.iter();
    for &e in &d.pasids {
        let gpasid = gpasid(e);
        g.pasids.claim(gpasid);
        if e & SHARED_BIT != 0 {
            let hpasid = *destination.next().ok_or(Error::SharedRangeExhausted)?;
            g.remap.insert(gpasid, hpasid)?;
            shared.push(SharedRemap {
                gpasid,
                source_hpasid: source.next().copied(),
                destination_hpasid: hpasid,
            });
        }
    }
    Ok(())
}

/// Starts the imported guest's change log, if asked, with its whole new table.
fn start_log(g: &mut Guest, capacity: Option<u32>, shared: &[SharedRemap]) -> Result<()> {
    let Some(capacity) = capacity else {
        return Ok(());
    };
    let capacity = capacity.min(crate::changes::MAX_CHANGE_LOG);
    if shared.len() > capacity as usize {
        return Err(Error::ChangeLogFull { capacity });
    }
    let mut entries = Vec::new();
    entries.try_reserve_exact(capacity as usize)?;
    entries.extend(shared.iter().map(|s| TranslationChange {
        gpasid: s.gpasid,
        hpasid: Some(s.destination_hpasid),
    }));
    g.changes = Some(crate::changes::ChangeLog::new(entries, capacity));
    Ok(())
}

/// The caller's RID map as [`RidMapping`]s, sorted by source RID.
fn rid_mappings<M: Copy + Into<RidMapping>>(rid_map: &[M]) -> Result<Vec<RidMapping>> {
    let mut map = Vec::new();
    map.try_reserve_exact(rid_map.len())?;
    map.extend(rid_map.iter().map(|&m| m.into()));
    map.sort_unstable_by_key(|m| m.source);
    Ok(map)
}

/// The first element (in order) whose PASID is outside `range`, as an error. `items`
/// is sorted by PASID, so only its ends need looking at.
fn first_outside<T>(
    items: &[T],
    pasid: impl Fn(&T) -> u32,
    range: &core::ops::Range<u32>,
) -> Result<()> {
    if let Some(first) = items.first().map(&pasid) {
        if first < range.start {
            return Err(Error::PasidOutOfRange { pasid: first });
        }
    }
    let at = items.partition_point(|x| pasid(x) < range.end);
    match items.get(at) {
        Some(x) => Err(Error::PasidOutOfRange { pasid: pasid(x) }),
        None => Ok(()),
    }
}
