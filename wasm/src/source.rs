//! Where a `Host`'s host PASIDs come from: its own shared range, or a VMM's lease at
//! the simulated broker (`Host.onBroker`, see the `broker` module).

use std::ops::Range;

use pasid_core::IdBitmap;
use pasid_core::{HostPasidSource, SourceError};

use crate::broker::BrokerLink;

/// A `Host`'s source of host PASIDs: its own bitmap (`new Host(config)`) or a VMM's
/// lease at the simulated broker (`Host.onBroker`). Every method delegates.
#[derive(Debug, Clone)]
pub enum WasmSource {
    /// The host owns its shared range (one VMM on the machine).
    Own(IdBitmap),
    /// A VMM's lease at the simulated broker. Cloning the host shares the broker.
    Broker(BrokerLink),
}

/// Calls the same [`HostPasidSource`] method on whichever source it is.
macro_rules! delegate {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            WasmSource::Own($s) => $call,
            WasmSource::Broker($s) => $call,
        }
    };
}

impl HostPasidSource for WasmSource {
    fn range(&self) -> Range<u32> {
        delegate!(self, s => HostPasidSource::range(s))
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
        delegate!(self, s => HostPasidSource::free_count(s))
    }
}
