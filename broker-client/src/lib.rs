//! Client side of the pasid broker: the wire protocol, its frame format, and
//! [`BrokerSource`], a [`pasid_core::HostPasidSource`] whose host PASIDs come from the
//! machine's broker daemon (`pasid-broker`), so that every VMM process on a machine
//! draws from one shared range.
//!
//! It is blocking and light (std, serde, postcard; no async runtime), because it links
//! into the C library that VMMs load.
//!
//! ```no_run
//! use pasid_broker_client::BrokerSource;
//! use pasid_core::{HostPasidSource, PasidLayout};
//!
//! let layout = PasidLayout::new(20, 1..4096, 4096..1 << 19).unwrap();
//! let mut source = BrokerSource::connect("/run/pasid-broker.sock", &layout).unwrap();
//! let hpasid = source.alloc().unwrap(); // unique on this machine
//! // ... program it, use it, tear it down ...
//! source.release(hpasid).unwrap();
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod client;
pub mod framing;
pub mod protocol;

pub use client::{query_status, BrokerSource, ClientOptions, ConnectError};
