//! Client side of the pasid broker: the wire protocol, its frame format, and
//! [`BrokerSource`], a [`pasid_core::HostPasidSource`] whose host PASIDs come from the
//! machine's broker daemon (`pasid-broker`), so that every VMM process on a machine
//! draws from one shared range.
//!
//! It is blocking and light (std, serde, postcard; no async runtime), because it links
//! into the C library that VMMs load.
//!
//! ```rust,no_run
//! use pasid_broker_client::BrokerSource;
//! use pasid_core::{HostPasidSource, PasidLayout};
//!
//! let layout = PasidLayout::new(20, 1..4096, 4096..1 << 19).unwrap();
//! let mut source = BrokerSource::connect("/tmp/pasid-broker.sock", &layout).unwrap();
//! let hpasid = source.alloc().unwrap(); // unique on this machine, not only in this process
//! // ... program it on the shared work queue, use it, tear it down ...
//! source.release(hpasid).unwrap();
//! ```
//!
//! The README's section "One machine, many VMMs" shows this same block (a test keeps
//! them equal); `pasid-broker`'s crate doc runs it against a broker in the same process.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod client;
pub mod framing;
pub mod protocol;

pub use client::{query_status, BrokerSource, ClientOptions, ConnectError};
