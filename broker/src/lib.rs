//! The pasid broker: one owner per machine for host-global PASIDs.
//!
//! A shared work queue tells its submitters apart by the host PASID alone, so every
//! VMM process on a machine must draw host PASIDs from one pool. The broker owns the
//! machine's shared range and leases host PASIDs to VMMs over a Unix socket; a VMM uses
//! [`pasid_broker_client::BrokerSource`] as its host's source. See `docs/broker.md`.
//!
//! A broker and a VMM in one process, as a test would run them:
//!
//! ```
//! use pasid_broker::{Broker, BrokerOptions, Config};
//! use pasid_broker_client::BrokerSource;
//! use pasid_core::{HostPasidSource, PasidLayout};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let socket = dir.path().join("broker.sock");
//! let broker = Broker::bind(BrokerOptions {
//!     socket: Some(socket.clone()),
//!     state: dir.path().join("state.db"),
//!     config: Config::default(), // layout 20 bits, local 1..4096, shared 4096..2^19
//!     metrics: None,
//! })
//! .unwrap();
//! std::thread::spawn(move || broker.serve());
//!
//! // In the VMM:
//! let layout = PasidLayout::new(20, 1..4096, 4096..1 << 19).unwrap();
//! let mut source = BrokerSource::connect(&socket, &layout).unwrap();
//! let hpasid = source.alloc().unwrap();
//! assert_eq!(hpasid, 4096); // the lowest free host PASID of the machine
//! source.release(hpasid).unwrap();
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod config;
pub mod liveness;
pub mod metrics;
pub mod registry;
pub mod server;
pub mod status;
pub mod store;

pub use config::Config;
pub use server::{Broker, BrokerOptions, StartError};
