//! One machine, several VMM processes: the `Machine` class and the host-PASID source a
//! `Host` takes its host PASIDs from.
//!
//! On a real machine each VM has its own VMM process, and host PASIDs must be unique
//! across all of them (a shared work queue tells submitters apart by host PASID only),
//! so one owner per machine hands them out: the broker daemon (`broker/`, see
//! `docs/broker.md`). The playground cannot run the daemon; a `Machine` stands for the
//! one shared range it serves: one [`IdBitmap`] that every `Host` made with
//! `Host.onMachine(machine, config)` takes its host PASIDs from. The source only
//! delegates to that bitmap; every decision (who gets which PASID, when one may be
//! reused) stays the core's. What the real broker adds (leases tied to a client's
//! connection, spares, a quarantine for a dead client's PASIDs, reclaim after a restart)
//! is the `Broker` class (the `broker` module), which runs the daemon's own state
//! machine.
//!
//! ```js
//! const machine = new Machine([4096, 8192]);           // the machine-wide shared range
//! const cfg = { platform: 'p2', width: 20, local: [1, 4096], shared: [4096, 8192] };
//! const qemu1 = Host.onMachine(machine, cfg), qemu2 = Host.onMachine(machine, cfg);
//! // Their guests' host PASIDs never collide; machine.used() counts both.
//! ```

use std::cell::RefCell;
use std::ops::Range;
use std::rc::Rc;

use pasid_core::IdBitmap;
use pasid_core::{HostPasidSource, PasidLayout, SourceError};
use wasm_bindgen::prelude::*;

use crate::args::{self, ArgError};
use crate::broker::BrokerLink;
use crate::errors::Out;
use crate::host::{HostConfig, WasmHost};

/// Where a `Host`'s host PASIDs come from: its own bitmap (`new Host(config)`), the
/// bitmap of a [`WasmMachine`] it shares with the machine's other VMM processes, or a
/// VMM's lease at the simulated broker (`Host.onBroker`, see the `broker` module).
/// Every method delegates.
#[derive(Debug, Clone)]
pub enum WasmSource {
    /// The host owns its shared range (one VMM on the machine).
    Own(IdBitmap),
    /// The machine's shared range, shared with other hosts. Cloning the host shares it.
    Machine(Rc<RefCell<IdBitmap>>),
    /// A VMM's lease at the simulated broker. Cloning the host shares the broker.
    Broker(BrokerLink),
}

/// Calls the same [`HostPasidSource`] method on whichever source it is.
macro_rules! delegate {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            WasmSource::Own($s) => $call,
            WasmSource::Machine(m) => {
                #[allow(unused_mut)]
                let mut $s = m.borrow_mut();
                let $s = &mut *$s;
                $call
            }
            WasmSource::Broker($s) => $call,
        }
    };
}

impl HostPasidSource for WasmSource {
    fn range(&self) -> Range<u32> {
        match self {
            WasmSource::Own(b) => HostPasidSource::range(b),
            WasmSource::Machine(m) => HostPasidSource::range(&*m.borrow()),
            WasmSource::Broker(l) => l.range(),
        }
    }

    fn alloc(&mut self) -> Result<u32, SourceError> {
        delegate!(self, s => HostPasidSource::alloc(s))
    }

    fn alloc_many(&mut self, count: u32, out: &mut Vec<u32>) -> Result<(), SourceError> {
        delegate!(self, s => HostPasidSource::alloc_many(s, count, out))
    }

    fn claim(&mut self, pasid: u32) -> Result<(), SourceError> {
        delegate!(self, s => HostPasidSource::claim(s, pasid))
    }

    fn release(&mut self, pasid: u32) -> Result<(), SourceError> {
        delegate!(self, s => HostPasidSource::release(s, pasid))
    }

    fn free_count(&self) -> u32 {
        match self {
            WasmSource::Own(b) => HostPasidSource::free_count(b),
            WasmSource::Machine(m) => HostPasidSource::free_count(&*m.borrow()),
            WasmSource::Broker(l) => l.free_count(),
        }
    }
}

/// The machine-wide shared range several VMM processes take host PASIDs from:
/// `new Machine([start, end])` in JS.
#[wasm_bindgen(js_name = Machine)]
pub struct WasmMachine {
    shared: Rc<RefCell<IdBitmap>>,
}

#[wasm_bindgen(js_class = Machine)]
impl WasmMachine {
    /// `new Machine([4096, 8192])`: an empty machine-wide shared range, half-open.
    /// Throws the core's error for an empty or too wide range.
    #[wasm_bindgen(constructor)]
    pub fn new(shared: Vec<u32>) -> Out<WasmMachine> {
        let [start, end] = shared[..] else {
            return Err(ArgError("Machine takes a shared range [start, end]".into()).into());
        };
        Ok(WasmMachine {
            shared: Rc::new(RefCell::new(IdBitmap::new(start..end)?)),
        })
    }

    /// The machine-wide shared range as `[start, end]`.
    pub fn range(&self) -> Vec<u32> {
        let r = self.shared.borrow().range();
        vec![r.start, r.end]
    }

    /// Host PASIDs of the range taken by any VMM on the machine (held or draining).
    pub fn used(&self) -> u32 {
        self.shared.borrow().used()
    }

    /// Host PASIDs of the range no VMM has (not `free`: that name drops the object).
    pub fn available(&self) -> u32 {
        let b = self.shared.borrow();
        b.capacity() - b.used()
    }

    /// Whether some VMM on the machine has host PASID `pasid`.
    #[wasm_bindgen(js_name = isUsed)]
    pub fn is_used(&self, pasid: f64) -> Out<bool> {
        Ok(self
            .shared
            .borrow()
            .is_used(args::int("PASID", pasid, u32::MAX)?))
    }

    /// A copy of the range's state, for undo: give it back with `restore`.
    pub fn save(&self) -> WasmMachine {
        WasmMachine {
            shared: Rc::new(RefCell::new(self.shared.borrow().clone())),
        }
    }

    /// Puts back a state taken with `save` (hosts cloned at the same moment then agree
    /// with the range again). A state of another range is refused (`TypeError`): the
    /// hosts on this machine were checked against this range only.
    pub fn restore(&self, saved: &WasmMachine) -> Out<()> {
        let copy = saved.shared.borrow().clone();
        if copy.range() != self.shared.borrow().range() {
            return Err(ArgError(
                "Machine.restore takes a state saved from a machine of the same range".into(),
            )
            .into());
        }
        *self.shared.borrow_mut() = copy;
        Ok(())
    }
}

#[wasm_bindgen(js_class = Host)]
impl WasmHost {
    /// `Host.onMachine(machine, config)`: a host (one VMM process) whose host PASIDs come
    /// from the machine's shared range, which `config.shared` must equal (else the
    /// core's `IncompatibleLayout`, code 33). Its `clone()` shares the range too.
    #[wasm_bindgen(js_name = onMachine)]
    pub fn on_machine(machine: &WasmMachine, config: JsValue) -> Out<WasmHost> {
        let config: HostConfig = serde_wasm_bindgen::from_value(config)
            .map_err(|e| ArgError(format!("Host config: {e}")))?;
        WasmHost::on_machine_config(machine, &config)
    }
}

impl WasmHost {
    /// [`WasmHost::on_machine`] after the config is read.
    pub fn on_machine_config(machine: &WasmMachine, config: &HostConfig) -> Out<WasmHost> {
        let layout = PasidLayout::new(
            config.width,
            config.local[0]..config.local[1],
            config.shared[0]..config.shared[1],
        )?;
        let source = WasmSource::Machine(Rc::clone(&machine.shared));
        WasmHost::with_source(layout, args::platform(&config.platform)?, source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> HostConfig {
        HostConfig {
            platform: "p2".into(),
            width: 20,
            local: [1, 4096],
            shared: [4096, 4100],
        }
    }

    #[test]
    fn two_hosts_on_one_machine_never_share_a_host_pasid() {
        let m = WasmMachine::new(vec![4096, 4100]).unwrap();
        let mut a = WasmHost::on_machine_config(&m, &cfg()).unwrap();
        let mut b = WasmHost::on_machine_config(&m, &cfg()).unwrap();
        let ga = f64::from(a.create_guest("p2", 4.0).unwrap());
        let gb = f64::from(b.create_guest("p2", 4.0).unwrap());
        let pa = a.alloc_pasid(ga, "shared").unwrap();
        let pb = b.alloc_pasid(gb, "shared").unwrap();
        assert_eq!(pa, pb, "each host numbers its own guest's gPASIDs");
        let (ha, hb) = (
            a.translate(ga, f64::from(pa)).unwrap(),
            b.translate(gb, f64::from(pb)).unwrap(),
        );
        assert_ne!(ha, hb);
        assert_eq!(m.used(), 2);
        // A saved range and host clones taken together restore together.
        let (saved, a_before) = (m.save(), a.duplicate());
        a.alloc_pasid(ga, "shared").unwrap();
        assert_eq!(m.used(), 3);
        m.restore(&saved).unwrap();
        drop(a);
        let mut a = a_before;
        assert_eq!(m.used(), 2);
        assert_eq!(a.alloc_pasid(ga, "shared").unwrap(), 2);
        assert_eq!(m.available(), 1);
    }

    #[test]
    fn a_host_must_use_the_machine_range() {
        let m = WasmMachine::new(vec![4096, 8192]).unwrap();
        assert!(WasmHost::on_machine_config(&m, &cfg()).is_err());
        assert!(WasmMachine::new(vec![4096]).is_err());
        let other = WasmMachine::new(vec![4096, 4100]).unwrap();
        assert!(m.restore(&other.save()).is_err());
        m.restore(&m.save()).unwrap();
        m.restore(&m).unwrap();
    }
}
