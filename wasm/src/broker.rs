//! The machine's broker, simulated: the `Broker` class runs the core's lease state
//! machine ([`pasid_core::lease::Registry`], the very code of the `pasid-broker`
//! daemon) with a clock the page controls, a store replayed from the registry's own
//! [`StoreOp`]s, and one lease per VMM process.
//!
//! What the daemon gets from the operating system, the page says instead: a VMM
//! "crashes" (its connection closes without a goodbye and its process is gone), time
//! "passes" (`tick`), the broker "restarts" (a new registry loaded from the store, every
//! connection lost). A VMM whose connection was lost reclaims its lease on its next call
//! with the host PASIDs it holds, as `BrokerSource` does. Every decision (which PASID,
//! spare or not, quarantined until when, reclaimed or refused) is the core's; this file
//! only keeps the simulated processes and translates.
//!
//! ```js
//! const broker = new Broker({ shared: [4096, 4608], quarantineMs: 60000, graceMs: 30000, spare: 2 });
//! const qemu1 = broker.connect(), qemu2 = broker.connect();   // one lease each
//! const host1 = Host.onBroker(broker, qemu1, cfg);              // its host PASIDs come from the lease
//! broker.crash(qemu1);                                           // orphaned: quarantined until now + 60 s
//! broker.tick(60000);                                            // ... and now free
//! broker.restart();                                              // leases unconfirmed; the next call reclaims
//! broker.status();                                               // leases, PASIDs, totals, the clock
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::rc::Rc;

use pasid_core::lease::{
    Cap, LeaseError, LeaseId, LeaseState, MemoryStore, PasidState, Peer, Policy, Registry, Resume,
    StoreOp, StoredState, Token, Totals,
};
use pasid_core::{HostPasidSource, PasidLayout, SourceError};
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

use crate::args::{self, ArgError};
use crate::errors::{to_js, Out};
use crate::host::{HostConfig, WasmHost};
use crate::source::WasmSource;

/// What `new Broker(config)` takes; every field but `shared` has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BrokerConfig {
    /// PASID width in bits.
    pub width: u8,
    /// The local (guest) range every VMM's hosts use, `[start, end)`.
    pub local: [u32; 2],
    /// The machine's shared range the broker hands out, `[start, end)`.
    pub shared: [u32; 2],
    /// Host PASIDs never granted, `[[start, end], ...]`.
    pub reserved: Vec<[u32; 2]>,
    /// How long a dead VMM's host PASIDs stay out of the pool.
    pub quarantine_ms: u64,
    /// How long a lease waits for its VMM after a broker restart.
    pub grace_ms: u64,
    /// The most spares a lease keeps.
    pub spare: u32,
    /// Leases per uid (every simulated VMM runs as uid 107, as QEMU under libvirt).
    pub max_leases: u32,
    /// Host PASIDs per uid (held, spare or quarantined).
    pub max_pasids: u32,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            width: 20,
            local: [1, 4096],
            shared: [4096, 4096 + 512],
            reserved: Vec::new(),
            quarantine_ms: 60_000,
            grace_ms: 30_000,
            spare: 2,
            max_leases: 64,
            max_pasids: 1 << 20,
        }
    }
}

/// The uid every simulated VMM runs as.
const QEMU_UID: u32 = 107;

/// One simulated VMM process and its client end of the lease.
#[derive(Debug, Clone)]
struct Vmm {
    peer: Peer,
    lease: LeaseId,
    token: Token,
    /// The connection serving its lease; `None` once the broker restarted (the next
    /// call reclaims) or the VMM crashed or said goodbye.
    conn: Option<u64>,
    /// What the VMM holds, as its client knows it (what a reclaim lists).
    held: BTreeSet<u32>,
    /// The process is gone (crashed or exited).
    dead: bool,
}

/// The simulated broker (pure Rust, so it is tested on the host).
#[derive(Debug, Clone)]
pub struct SimBroker {
    policy: Policy,
    reg: Registry,
    store: MemoryStore,
    now: u64,
    next_conn: u64,
    vmms: Vec<Vmm>,
    /// Store ops recorded since the broker first started (a restart keeps counting).
    ops_total: u64,
    /// Calls that changed or could have changed the broker (connect, grants, releases,
    /// a crash, a goodbye, a reclaim, a tick, a restart), since it first started.
    calls: u64,
}

impl SimBroker {
    /// A broker with an empty store at time 0.
    pub fn new(config: &BrokerConfig) -> Out<SimBroker> {
        let layout = PasidLayout::new(
            config.width,
            config.local[0]..config.local[1],
            config.shared[0]..config.shared[1],
        )?;
        let policy = Policy {
            layout,
            reserved: config.reserved.iter().map(|[a, b]| *a..*b).collect(),
            quarantine_ms: config.quarantine_ms,
            grace_ms: config.grace_ms,
            spare: config.spare,
            default_cap: Cap {
                max_leases: config.max_leases,
                max_pasids: config.max_pasids,
            },
            uid_caps: BTreeMap::new(),
        };
        let mut ops = Vec::new();
        let reg = Registry::load(policy.clone(), StoredState::default(), 0, &mut ops)?;
        let mut store = MemoryStore::new();
        store.apply(&ops);
        Ok(SimBroker {
            policy,
            reg,
            store,
            now: 0,
            next_conn: 1,
            vmms: Vec::new(),
            ops_total: ops.len() as u64,
            calls: 0,
        })
    }

    /// Ends a call that succeeded: its store ops go to the store, and it is counted.
    fn record(&mut self, ops: Vec<StoreOp>) {
        self.store.apply(&ops);
        self.ops_total += ops.len() as u64;
        self.calls += 1;
    }

    /// The registry, for views and tests.
    pub fn registry(&self) -> &Registry {
        &self.reg
    }

    fn vmm(&self, vmm: u32) -> Out<&Vmm> {
        self.vmms
            .get(vmm as usize)
            .ok_or_else(|| ArgError(format!("no VMM {vmm} on this broker")).into())
    }

    /// A new VMM process connects and opens its lease; returns its number.
    pub fn connect(&mut self) -> Out<u32> {
        let n = self.vmms.len() as u32;
        let peer = Peer {
            uid: QEMU_UID,
            gid: QEMU_UID,
            pid: 1000 + n,
            start: 1,
        };
        // A simulation's token: distinct per VMM is all it needs to be.
        let token = [n as u8 + 1; 32];
        let conn = self.next_conn;
        let mut ops = Vec::new();
        let lease = self.reg.open(peer, conn, token, &mut ops)?;
        self.next_conn += 1;
        self.record(ops);
        self.vmms.push(Vmm {
            peer,
            lease,
            token,
            conn: Some(conn),
            held: BTreeSet::new(),
            dead: false,
        });
        Ok(n)
    }

    /// The VMM's connection, reclaiming its lease first if the connection was lost (a
    /// broker restart), as the real client does on its next call.
    fn serving(&mut self, vmm: u32) -> Out<(LeaseId, u64)> {
        let v = self.vmm(vmm)?;
        if v.dead {
            return Err(LeaseError::NotServing { lease: v.lease }.into());
        }
        if let Some(conn) = v.conn {
            return Ok((v.lease, conn));
        }
        self.reclaim(vmm)?;
        let v = &self.vmms[vmm as usize];
        Ok((v.lease, v.conn.expect("reclaimed")))
    }

    /// The VMM reconnects and takes back its lease, listing what it holds; the lease's
    /// PASIDs it does not list (its spares before a restart) go to quarantine.
    pub fn reclaim(&mut self, vmm: u32) -> Out<()> {
        let v = self.vmm(vmm)?.clone();
        if v.dead {
            return Err(LeaseError::NotServing { lease: v.lease }.into());
        }
        let conn = self.next_conn;
        self.next_conn += 1;
        let held: Vec<u32> = v.held.iter().copied().collect();
        let mut ops = Vec::new();
        let resume = Resume {
            lease: v.lease,
            token: &v.token,
            held: &held,
            // The playground's VMMs release synchronously: nothing is ever in flight.
            released: &[],
        };
        self.reg.reclaim(v.peer, conn, resume, self.now, &mut ops)?;
        self.record(ops);
        self.vmms[vmm as usize].conn = Some(conn);
        Ok(())
    }

    /// Grants `count` host PASIDs to the VMM.
    pub fn alloc(&mut self, vmm: u32, count: u32) -> Out<Vec<u32>> {
        let (lease, conn) = self.serving(vmm)?;
        let mut ops = Vec::new();
        let got = self.reg.alloc(lease, conn, count, &mut ops)?;
        self.record(ops);
        self.vmms[vmm as usize].held.extend(&got);
        Ok(got)
    }

    /// Grants exactly `pasid` to the VMM.
    pub fn claim(&mut self, vmm: u32, pasid: u32) -> Out<()> {
        let (lease, conn) = self.serving(vmm)?;
        let mut ops = Vec::new();
        self.reg.claim(lease, conn, pasid, &mut ops)?;
        self.record(ops);
        self.vmms[vmm as usize].held.insert(pasid);
        Ok(())
    }

    /// The VMM gives back `pasid` (its teardown is done).
    pub fn release(&mut self, vmm: u32, pasid: u32) -> Out<()> {
        let (lease, conn) = self.serving(vmm)?;
        let mut ops = Vec::new();
        self.reg.release(lease, conn, pasid, &mut ops)?;
        self.record(ops);
        self.vmms[vmm as usize].held.remove(&pasid);
        Ok(())
    }

    /// The VMM process dies: the kernel closes its connection, no goodbye.
    pub fn crash(&mut self, vmm: u32) -> Out<()> {
        self.vmm(vmm)?;
        let now = self.now;
        let v = &mut self.vmms[vmm as usize];
        let conn = v.conn.take();
        v.dead = true;
        let lease = v.lease;
        let mut ops = Vec::new();
        if let Some(conn) = conn {
            self.reg.disconnect(lease, conn, now, &mut ops);
        }
        self.record(ops);
        Ok(())
    }

    /// The VMM says goodbye and exits: its lease ends; what it still held is
    /// quarantined.
    pub fn goodbye(&mut self, vmm: u32) -> Out<()> {
        let (lease, conn) = self.serving(vmm)?;
        let mut ops = Vec::new();
        self.reg.goodbye(lease, conn, self.now, &mut ops);
        self.record(ops);
        let v = &mut self.vmms[vmm as usize];
        v.conn = None;
        v.dead = true;
        v.held.clear();
        Ok(())
    }

    /// Time passes: the clock moves `ms` on and the registry ends what is due (a VMM
    /// still running keeps its lease, as the daemon checks `/proc`).
    pub fn tick(&mut self, ms: u64) {
        self.now += ms;
        let dead: BTreeSet<u32> = self
            .vmms
            .iter()
            .filter(|v| v.dead)
            .map(|v| v.peer.pid)
            .collect();
        let mut ops = Vec::new();
        self.reg
            .tick(self.now, |p| !dead.contains(&p.pid), &mut ops);
        self.record(ops);
    }

    /// The broker restarts: a new registry from what the store recorded; every
    /// connection is lost, and the leases wait (unconfirmed) for their VMMs.
    pub fn restart(&mut self) -> Out<()> {
        let mut ops = Vec::new();
        let reg = Registry::load(self.policy.clone(), self.store.stored(), self.now, &mut ops)?;
        self.reg = reg;
        self.record(ops);
        for v in &mut self.vmms {
            v.conn = None;
        }
        Ok(())
    }

    /// The shared range.
    pub fn range(&self) -> Range<u32> {
        self.policy.layout.shared()
    }

    /// The status as the page reads it.
    pub fn status(&self) -> Status {
        let t = self.reg.totals();
        let vmm_of = |lease: LeaseId| {
            self.vmms
                .iter()
                .position(|v| v.lease == lease)
                .map(|i| i as u32)
        };
        let leases = self
            .reg
            .leases()
            .map(|(id, l)| {
                let (state, until) = match l.state {
                    LeaseState::Connected { .. } => ("connected", None),
                    LeaseState::Orphaned { until } => ("orphaned", Some(until)),
                    LeaseState::Unconfirmed { until } => ("unconfirmed", Some(until)),
                };
                LeaseView {
                    lease: id,
                    vmm: vmm_of(id),
                    pid: l.peer.pid,
                    uid: l.peer.uid,
                    state,
                    until,
                    held: l.held.iter().copied().collect(),
                    spare: l.spare.iter().copied().collect(),
                }
            })
            .collect();
        let mut pasids = Vec::new();
        for (id, l) in self.reg.leases() {
            for &p in l.held.iter().chain(&l.spare) {
                pasids.push(self.pasid_view(p, vmm_of(id)));
            }
        }
        for (p, _, _) in self.reg.quarantined() {
            pasids.push(self.pasid_view(p, None));
        }
        pasids.sort_unstable_by_key(|v| v.pasid);
        Status {
            now: self.now,
            next_deadline: self.reg.next_deadline(),
            quarantine_ms: self.policy.quarantine_ms,
            grace_ms: self.policy.grace_ms,
            spare_max: self.policy.spare,
            shared: [self.range().start, self.range().end],
            totals: t,
            leases,
            pasids,
            vmms: self
                .vmms
                .iter()
                .enumerate()
                .map(|(i, v)| VmmView {
                    vmm: i as u32,
                    lease: v.lease,
                    pid: v.peer.pid,
                    connected: v.conn.is_some(),
                    dead: v.dead,
                    held: v.held.iter().copied().collect(),
                })
                .collect(),
        }
    }

    fn pasid_view(&self, pasid: u32, vmm: Option<u32>) -> PasidView {
        let (state, lease, until) = match self.reg.state_of(pasid) {
            PasidState::Outside => ("outside", None, None),
            PasidState::Reserved => ("reserved", None, None),
            PasidState::Free => ("free", None, None),
            PasidState::Held { lease } => ("held", Some(lease), None),
            PasidState::Spare { lease } => ("spare", Some(lease), None),
            PasidState::Orphaned { lease, until } => ("orphaned", Some(lease), Some(until)),
            PasidState::Quarantined { until, .. } => ("quarantined", None, Some(until)),
        };
        PasidView {
            pasid,
            state,
            lease,
            vmm,
            until,
        }
    }
}

/// The broker's status, as `status()` returns it (camelCase keys).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// The simulated clock (ms since the broker first started).
    pub now: u64,
    /// When the next quarantine or grace period ends, if any.
    pub next_deadline: Option<u64>,
    /// The configured quarantine.
    pub quarantine_ms: u64,
    /// The configured grace period after a restart.
    pub grace_ms: u64,
    /// The most spares a lease keeps.
    pub spare_max: u32,
    /// The shared range, `[start, end)`.
    pub shared: [u32; 2],
    /// Totals over the range.
    pub totals: Totals,
    /// Every lease.
    pub leases: Vec<LeaseView>,
    /// Every host PASID that is not free or reserved, by PASID.
    pub pasids: Vec<PasidView>,
    /// Every VMM process, as its client sees itself.
    pub vmms: Vec<VmmView>,
}

/// One lease.
#[derive(Debug, Clone, Serialize)]
pub struct LeaseView {
    /// Its number.
    pub lease: LeaseId,
    /// The VMM it is (`null` for none of this page's).
    pub vmm: Option<u32>,
    /// The VMM's pid.
    pub pid: u32,
    /// The VMM's uid.
    pub uid: u32,
    /// `connected`, `orphaned` or `unconfirmed`.
    pub state: &'static str,
    /// End of an orphaned lease's quarantine or an unconfirmed lease's grace.
    pub until: Option<u64>,
    /// Its granted host PASIDs.
    pub held: Vec<u32>,
    /// Its spares.
    pub spare: Vec<u32>,
}

/// One host PASID that is not free.
#[derive(Debug, Clone, Serialize)]
pub struct PasidView {
    /// The PASID.
    pub pasid: u32,
    /// `held`, `spare`, `orphaned` or `quarantined`.
    pub state: &'static str,
    /// Its lease, if it has one.
    pub lease: Option<LeaseId>,
    /// Its lease's VMM, if it has one.
    pub vmm: Option<u32>,
    /// When its quarantine ends (orphaned or quarantined).
    pub until: Option<u64>,
}

/// One VMM process.
#[derive(Debug, Clone, Serialize)]
pub struct VmmView {
    /// Its number.
    pub vmm: u32,
    /// Its lease.
    pub lease: LeaseId,
    /// Its pid.
    pub pid: u32,
    /// Whether a connection serves its lease now (false after a restart until it
    /// reclaims, and once it is dead).
    pub connected: bool,
    /// Whether its process is gone.
    pub dead: bool,
    /// The host PASIDs it holds, as its client knows them.
    pub held: Vec<u32>,
}

/// A VMM's lease as a `Host`'s source of host PASIDs (`Host.onBroker`).
#[derive(Debug, Clone)]
pub struct BrokerLink {
    broker: Rc<RefCell<SimBroker>>,
    vmm: u32,
}

/// What a refusal of the broker means to a host, as `BrokerSource` maps the wire's.
fn source_error(e: crate::Fail) -> SourceError {
    match e {
        crate::Fail::Lease(e) => match e {
            LeaseError::Exhausted { .. }
            | LeaseError::CapReached { .. }
            | LeaseError::TooManyLeases { .. } => SourceError::Exhausted,
            LeaseError::Unavailable { pasid } | LeaseError::NotHeld { pasid } => {
                SourceError::Unavailable { pasid }
            }
            LeaseError::NotServing { .. } => SourceError::Disconnected,
            _ => SourceError::Denied,
        },
        _ => SourceError::Protocol,
    }
}

impl HostPasidSource for BrokerLink {
    fn range(&self) -> Range<u32> {
        self.broker.borrow().range()
    }

    fn alloc(&mut self) -> Result<u32, SourceError> {
        let got = self.broker.borrow_mut().alloc(self.vmm, 1);
        got.map(|v| v[0]).map_err(source_error)
    }

    fn alloc_many(&mut self, count: u32, out: &mut Vec<u32>) -> Result<(), SourceError> {
        // One request for the batch, as the real client sends it.
        let got = self.broker.borrow_mut().alloc(self.vmm, count);
        out.extend(got.map_err(source_error)?);
        Ok(())
    }

    fn claim(&mut self, pasid: u32) -> Result<(), SourceError> {
        let r = self.broker.borrow_mut().claim(self.vmm, pasid);
        r.map_err(source_error)
    }

    fn release(&mut self, pasid: u32) -> Result<(), SourceError> {
        let r = self.broker.borrow_mut().release(self.vmm, pasid);
        r.map_err(source_error)
    }

    fn free_count(&self) -> u32 {
        self.broker.borrow().registry().free()
    }
}

/// The simulated broker: `new Broker(config)` in JS.
#[wasm_bindgen(js_name = Broker)]
pub struct WasmBroker {
    inner: Rc<RefCell<SimBroker>>,
}

fn vmm_arg(vmm: f64) -> Out<u32> {
    Ok(args::int("VMM", vmm, u32::MAX)?)
}

#[wasm_bindgen(js_class = Broker)]
impl WasmBroker {
    /// `new Broker({ shared: [start, end], quarantineMs, graceMs, spare, reserved,
    /// maxLeases, maxPasids, width, local })`, every key optional.
    #[wasm_bindgen(constructor)]
    pub fn new(config: JsValue) -> Out<WasmBroker> {
        let config: BrokerConfig = if config.is_undefined() {
            BrokerConfig::default()
        } else {
            serde_wasm_bindgen::from_value(config)
                .map_err(|e| ArgError(format!("Broker config: {e}")))?
        };
        Ok(WasmBroker::from_sim(SimBroker::new(&config)?))
    }

    /// A VMM process connects: a new lease; returns the VMM's number.
    pub fn connect(&self) -> Out<u32> {
        self.inner.borrow_mut().connect()
    }

    /// Grants `count` host PASIDs to a VMM (spares first); a `Uint32Array`.
    pub fn alloc(&self, vmm: f64, count: f64) -> Out<Vec<u32>> {
        let count = args::int("count", count, u32::MAX)?;
        self.inner.borrow_mut().alloc(vmm_arg(vmm)?, count)
    }

    /// Grants exactly host PASID `pasid` to a VMM.
    pub fn claim(&self, vmm: f64, pasid: f64) -> Out<()> {
        let pasid = args::int("PASID", pasid, u32::MAX)?;
        self.inner.borrow_mut().claim(vmm_arg(vmm)?, pasid)
    }

    /// A VMM gives back host PASID `pasid` (teardown done).
    pub fn release(&self, vmm: f64, pasid: f64) -> Out<()> {
        let pasid = args::int("PASID", pasid, u32::MAX)?;
        self.inner.borrow_mut().release(vmm_arg(vmm)?, pasid)
    }

    /// A VMM process crashes: its connection closes without a goodbye.
    pub fn crash(&self, vmm: f64) -> Out<()> {
        self.inner.borrow_mut().crash(vmm_arg(vmm)?)
    }

    /// A VMM says goodbye and exits.
    pub fn goodbye(&self, vmm: f64) -> Out<()> {
        self.inner.borrow_mut().goodbye(vmm_arg(vmm)?)
    }

    /// A VMM reconnects and reclaims its lease now (a call after a restart does it
    /// by itself).
    pub fn reclaim(&self, vmm: f64) -> Out<()> {
        self.inner.borrow_mut().reclaim(vmm_arg(vmm)?)
    }

    /// Moves the clock `ms` on and ends what is due.
    pub fn tick(&self, ms: f64) -> Out<()> {
        let ms = args::int("ms", ms, u32::MAX)?;
        self.inner.borrow_mut().tick(u64::from(ms));
        Ok(())
    }

    /// Restarts the broker from its store.
    pub fn restart(&self) -> Out<()> {
        self.inner.borrow_mut().restart()
    }

    /// The simulated clock in ms.
    #[wasm_bindgen(getter)]
    pub fn now(&self) -> f64 {
        self.inner.borrow().now as f64
    }

    /// Store records the broker has written since it first started (a restart keeps
    /// counting): what a step wrote is the difference across it, every call counted.
    #[wasm_bindgen(getter, js_name = opsTotal)]
    pub fn ops_total(&self) -> f64 {
        self.inner.borrow().ops_total as f64
    }

    /// Calls the broker has served since it first started: a VMM's connect, grants,
    /// releases, crash, goodbye or reclaim, and the page's ticks and restarts (reads
    /// such as `status` are not counted, nor refused calls).
    #[wasm_bindgen(getter)]
    pub fn calls(&self) -> f64 {
        self.inner.borrow().calls as f64
    }

    /// The status snapshot (see [`Status`]).
    pub fn status(&self) -> Out<JsValue> {
        to_js(&self.inner.borrow().status())
    }

    /// Where one host PASID is: `{ pasid, state, lease, vmm, until }`.
    #[wasm_bindgen(js_name = stateOf)]
    pub fn state_of(&self, pasid: f64) -> Out<JsValue> {
        let pasid = args::int("PASID", pasid, u32::MAX)?;
        let b = self.inner.borrow();
        let lease = match b.reg.state_of(pasid) {
            PasidState::Held { lease }
            | PasidState::Spare { lease }
            | PasidState::Orphaned { lease, .. } => Some(lease),
            _ => None,
        };
        let vmm = lease.and_then(|l| b.vmms.iter().position(|v| v.lease == l).map(|i| i as u32));
        to_js(&b.pasid_view(pasid, vmm))
    }

    /// A copy of the broker's whole state, for undo: give it back with `restore`.
    pub fn save(&self) -> WasmBroker {
        WasmBroker::from_sim(self.inner.borrow().clone())
    }

    /// Puts back a state taken with `save` (hosts cloned at the same moment then agree
    /// with the broker again). A state of another range is refused (`TypeError`).
    pub fn restore(&self, saved: &WasmBroker) -> Out<()> {
        let copy = saved.inner.borrow().clone();
        if copy.range() != self.inner.borrow().range() {
            return Err(ArgError(
                "Broker.restore takes a state saved from a broker of the same range".into(),
            )
            .into());
        }
        *self.inner.borrow_mut() = copy;
        Ok(())
    }
}

impl WasmBroker {
    /// A JS broker over a simulated one.
    pub fn from_sim(sim: SimBroker) -> WasmBroker {
        WasmBroker {
            inner: Rc::new(RefCell::new(sim)),
        }
    }

    /// The simulated broker, for Rust callers and tests.
    pub fn sim(&self) -> std::cell::Ref<'_, SimBroker> {
        self.inner.borrow()
    }
}

#[wasm_bindgen(js_class = Host)]
impl WasmHost {
    /// `Host.onBroker(broker, vmm, config)`: the host of VMM `vmm` (from
    /// `broker.connect()`), whose host PASIDs come from its lease; `config.shared` must
    /// equal the broker's range (else the core's `IncompatibleLayout`, code 33).
    #[wasm_bindgen(js_name = onBroker)]
    pub fn on_broker(broker: &WasmBroker, vmm: f64, config: JsValue) -> Out<WasmHost> {
        let config: HostConfig = serde_wasm_bindgen::from_value(config)
            .map_err(|e| ArgError(format!("Host config: {e}")))?;
        WasmHost::on_broker_config(broker, vmm_arg(vmm)?, &config)
    }
}

impl WasmHost {
    /// [`WasmHost::on_broker`] after the config is read.
    pub fn on_broker_config(broker: &WasmBroker, vmm: u32, config: &HostConfig) -> Out<WasmHost> {
        broker.inner.borrow().vmm(vmm)?;
        let layout = PasidLayout::new(
            config.width,
            config.local[0]..config.local[1],
            config.shared[0]..config.shared[1],
        )?;
        let source = WasmSource::Broker(BrokerLink {
            broker: Rc::clone(&broker.inner),
            vmm,
        });
        WasmHost::with_source(layout, args::platform(&config.platform)?, source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker() -> SimBroker {
        SimBroker::new(&BrokerConfig {
            shared: [4096, 4110],
            quarantine_ms: 1000,
            grace_ms: 500,
            spare: 2,
            ..BrokerConfig::default()
        })
        .unwrap()
    }

    fn state(b: &SimBroker, p: u32) -> &'static str {
        b.pasid_view(p, None).state
    }

    #[test]
    fn a_crashed_vmm_s_pasids_wait_out_the_quarantine_and_nobody_else_gets_them() {
        let mut b = broker();
        let (q1, q2) = (b.connect().unwrap(), b.connect().unwrap());
        assert_eq!(b.alloc(q1, 1).unwrap(), [4096]);
        assert_eq!(state(&b, 4097), "spare");
        let (before, calls) = (b.ops_total, b.calls);
        assert_eq!(b.alloc(q1, 1).unwrap(), [4097]);
        assert_eq!(b.ops_total, before, "a spare's grant needs no commit");
        assert_eq!(b.calls, calls + 1);
        assert!(b.alloc(q1, 1000).is_err());
        assert_eq!(b.calls, calls + 1, "a refused call is not counted");
        b.crash(q1).unwrap();
        assert_eq!(state(&b, 4096), "orphaned");
        assert_eq!(state(&b, 4098), "free", "spares free at once");
        assert_eq!(b.alloc(q2, 3).unwrap(), [4098, 4099, 4100]);
        assert!(b.alloc(q1, 1).is_err(), "a dead VMM asks nothing");
        b.tick(999);
        assert_eq!(state(&b, 4096), "orphaned");
        b.tick(1);
        assert_eq!(state(&b, 4096), "free");
        assert_eq!(b.status().leases.len(), 1);
    }

    #[test]
    fn after_a_restart_the_next_call_reclaims_and_the_former_spares_go_to_quarantine() {
        let mut b = broker();
        let q1 = b.connect().unwrap();
        assert_eq!(b.alloc(q1, 1).unwrap(), [4096]);
        b.restart().unwrap();
        let s = b.status();
        assert_eq!(s.leases[0].state, "unconfirmed");
        assert_eq!(s.leases[0].until, Some(500));
        assert_eq!(
            s.leases[0].held,
            [4096, 4097, 4098],
            "the store cannot tell spares"
        );
        assert_eq!(b.alloc(q1, 1).unwrap(), [4099]);
        let s = b.status();
        assert_eq!(s.leases[0].state, "connected");
        assert_eq!(s.leases[0].held, [4096, 4099]);
        assert_eq!(state(&b, 4097), "quarantined");
        b.tick(1000);
        assert_eq!(state(&b, 4097), "free");
        // A lease nobody reclaims (its VMM died meanwhile) is quarantined after the grace.
        b.restart().unwrap();
        b.crash(q1).unwrap();
        b.tick(499);
        assert_eq!(state(&b, 4096), "held");
        b.tick(1);
        assert_eq!(state(&b, 4096), "quarantined");
        b.goodbye(q1).unwrap_err();
    }

    #[test]
    fn a_host_on_the_broker_takes_its_host_pasids_from_its_lease() {
        let b = WasmBroker::from_sim(broker());
        let (q1, q2) = (b.connect().unwrap(), b.connect().unwrap());
        let cfg = HostConfig {
            platform: "p2".into(),
            width: 20,
            local: [1, 4096],
            shared: [4096, 4110],
        };
        let mut h1 = WasmHost::on_broker_config(&b, q1, &cfg).unwrap();
        let mut h2 = WasmHost::on_broker_config(&b, q2, &cfg).unwrap();
        let g1 = f64::from(h1.create_guest("p2", 8.0).unwrap());
        let g2 = f64::from(h2.create_guest("p2", 8.0).unwrap());
        let p1 = h1.alloc_pasid(g1, "shared").unwrap();
        let p2 = h2.alloc_pasid(g2, "shared").unwrap();
        assert_eq!(h1.translate(g1, f64::from(p1)).unwrap(), 4096);
        assert_eq!(h2.translate(g2, f64::from(p2)).unwrap(), 4099);
        assert_eq!(b.sim().status().vmms[0].held, [4096]);
        assert!(WasmHost::on_broker_config(&b, 9, &cfg).is_err());
        let bad = HostConfig {
            shared: [4096, 8192],
            ..cfg
        };
        assert!(WasmHost::on_broker_config(&b, q1, &bad).is_err());
    }
}
