//! wasm-bindgen bindings over [`pasid_core`], for the browser playground and for Node.
//!
//! The layer only translates: JS numbers and strings in, one core call, plain JS objects
//! out. Everything is decided by the core.
//!
//! ```js
//! import init, { Host } from './pkg/pasid_wasm.js';
//! await init();
//! const host = new Host({ platform: 'p2', width: 20, local: [1, 4096], shared: [4096, 1 << 19] });
//! const g = host.createGuest('p2', 64);          // guest id (a number)
//! host.attach(g, '00:0a.0', 'shared-wq');        // RIDs as text: [ssss:]bb:dd.f
//! const gpasid = host.allocPasid(g, 'shared');   // in the local (guest) range
//! const hpasid = host.translate(g, gpasid);      // in the shared range
//! host.bind(g, gpasid, '00:0a.0') === hpasid;    // what the host IOMMU is programmed with
//! try { host.freePasid(g, 4000); } catch (e) { e.code === 15; e.message; } // NotAllocated
//!
//! // Migration: the blob is a Uint8Array; the RID map pairs source and destination RIDs,
//! // optionally with what the destination device is (checked against the guest's).
//! const target = new Host({ platform: 'p2', width: 20, local: [1, 4096], shared: [4096, 1 << 20] });
//! const blob = host.exportGuest(g);
//! const { guest, report } = target.importGuest(blob, [['00:0a.0', '00:0a.0', 'shared-wq']]);
//! host.destroyGuest(g);
//! ```
//!
//! The whole JS surface: `new Host(config)`, `clone`, `platform`, `sharedInUse`,
//! `sharedFree`, `createGuest`, `destroyGuest`, `guests`, `attach`, `detach`,
//! `detachUse`, `owner`, `ridUsers`, `allocPasid`, `freePasid`, `translate`, `bind`,
//! `bindUse`, `unbind`, `unbindUse`, `programmedEntries`, `sharedHeld`, `draining`,
//! `completeTeardown`, `record`, `release`, `snapshot`, `summary`, `guestSnapshot`,
//! `pasidPairs`, `exportGuest`, `importGuest`, `checkImport`, `vcap`, `vcmd`,
//! `translationTables`, `exportTranslation`; the `Broker` class and
//! `Host.onBroker(broker, vmm, config)` (one machine, several VMM processes: the
//! machine's broker simulated with the core's lease state machine and a clock the page
//! moves: `connect`, `alloc`, `claim`, `release`, `crash`, `goodbye`, `reclaim`, `tick`,
//! `restart`, `status`, `opsTotal`, `calls`, `stateOf`, `save`, `restore`; see the
//! `broker` module); and the free functions `inspectBlob`, `vcmdLayout`, `vcmdCommand`, `vcmdDecode`, `walk`
//! (the CPU's PASID-translation walk over exported pages: see the `hwtable` module).
//! VT-d register values are `BigInt`s. Every `Host` and `Broker` holds wasm memory:
//! call `.free()` on the ones (and clones) you drop.
//!
//! # Devices and the lifecycle
//!
//! A RID has a dedicated use (one guest at most) and a shared-WQ use (any number of p2
//! guests), or both (`ridUsers` lists them). `bind`, `unbind` and `detach` take the
//! guest's only use of the RID; with both, `bindUse`/`unbindUse`/`detachUse` name it
//! (`'dedicated'` or `'shared-wq'`), else `AmbiguousUse` (code 54). A freed gPASID
//! stops translating at once (`Draining`, code 52) but it and its hPASID stay out of
//! every allocation, and in the quota, until `completeTeardown(records)` with the
//! `{guest, gpasid, hpasid}` records `freePasid` and `draining()` return (all or
//! nothing; `NotDraining`, code 53). `destroyGuest` returns the `[{rid, kind, gpasid,
//! pasid}]` entries the VMM must clear; the guest's hPASIDs drain as orphans.
//!
//! # Errors
//!
//! A call the core refuses throws a JS `Error` whose `message` is the core's message,
//! with `name` `"PasidError"`, `code` the core's stable [`ErrorCode`](pasid_core::ErrorCode) number and
//! `codeName` its name (`"QuotaExceeded"`). The host is unchanged after such a call.
//! An argument the layer cannot read (a bad RID text, an unknown kind, a non-integer)
//! throws a `TypeError` without `code`.
//!
//! # Snapshots
//!
//! [`WasmHost::snapshot`] returns [`pasid_core::HostSnapshot`] as a plain object
//! (serde-wasm-bindgen, `json_compatible`, so `JSON.stringify` works on it):
//!
//! ```text
//! { width, local: {start, end}, shared: {start, end}, platform: "P1" | "P2", shared_in_use,
//!   guests: [ { id, config: { platform, shared_quota },
//!               pasids:  [ { gpasid, kind: "Local" | "Shared", hpasid: number | null } ],
//!               devices: [ { rid: { segment, bdf }, kind: "Dedicated" | "SharedWq",
//!                            programmed: [ { gpasid, programmed } ] } ],
//!               draining: [ { guest, gpasid, hpasid: number | null } ] } ],
//!   orphans: [ { guest, gpasid, hpasid } ] }
//! ```
//!
//! `importGuest` returns `{ guest, report }` with the core's
//! [`ImportReport`](pasid_core::migrate::ImportReport): `{ guest_platform, p1_guest_on_p2_host, shared: [ { gpasid,
//! source_hpasid, destination_hpasid } ], devices: [ { source, destination, kind } ], identity:
//! { source_host, source_guest, epoch }, version: { major, minor }, contract: { width,
//! local_start, local_end, capabilities }, quota }` (format 2.0: a second import of one
//! identity is refused as `Replayed`).
//!
//! Ranges are half-open. For maps of hundreds of thousands of PASIDs,
//! [`WasmHost::pasid_pairs`] gives one guest's PASIDs as a flat `Uint32Array`, and
//! [`WasmHost::summary`] the snapshot without them.
//!
//! # Modules
//!
//! As in `ffi/src`: `errors` (what a refusal becomes in JS), `host` (the `Host` class),
//! `source` ([`WasmSource`], where a host's host PASIDs come from), `broker` (the `Broker` class),
//! `migration`, `vcmd` (vIOMMU registers), `hwtable` (the CPU's translation pages and
//! walk, [`WalkTrace`]), and `args` (reading JS arguments).

#![deny(missing_docs)]

// One module per face of the API, as in `ffi/src`.
mod args;
mod broker;
mod changes;
mod errors;
mod host;
mod hwtable;
mod migration;
mod source;
mod vcmd;

pub use args::ArgError;
pub use broker::{BrokerConfig, BrokerLink, SimBroker, Status, WasmBroker};
pub use errors::{Fail, Out};
pub use host::{HostConfig, RidUser, WasmHost};
pub use hwtable::*;
pub use migration::*;
pub use source::WasmSource;
pub use vcmd::*;

#[cfg(test)]
pub(crate) mod test_support {
    use crate::{HostConfig, WasmHost};

    /// A p2 host with the default split: local 1..4096, shared 4096..2^19.
    pub fn p2_host() -> WasmHost {
        WasmHost::from_config(&HostConfig {
            platform: "p2".into(),
            width: 20,
            local: [1, 4096],
            shared: [4096, 1 << 19],
        })
        .unwrap()
    }
}
