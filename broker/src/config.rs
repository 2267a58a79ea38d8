//! The broker's configuration file (TOML) and its defaults.
//!
//! ```toml
//! # The machine's PASID layout; every VMM must use the same.
//! [layout]
//! width = 20
//! local = [1, 4096]          # half-open: 1..4096
//! shared = [4096, 524288]    # half-open: 4096..2^19
//! # Host PASIDs never granted (the host kernel's own), half-open ranges.
//! reserved = [[4096, 4160]]
//!
//! [timers]
//! quarantine_secs = 30
//! grace_secs = 30
//!
//! [socket]
//! mode = "0660"   # octal
//! gid = 36        # optional: the socket's group (numeric)
//! allowed_uids = []  # optional: only these uids may connect (empty: any that can open the socket)
//!
//! [caps]
//! max_leases = 64
//! max_pasids = 4096
//! spare = 32      # host PASIDs recorded to a lease ahead of its requests
//! [[caps.uid]]
//! uid = 107
//! max_leases = 256
//! max_pasids = 32768
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use pasid_broker_client::protocol::WireLayout;
use pasid_core::PasidLayout;
use serde::Deserialize;

use crate::registry::{Cap, Policy};

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("bad configuration: {0}")]
    Parse(#[from] toml::de::Error),
    /// A value is out of range.
    #[error("bad configuration: {0}")]
    Invalid(String),
}

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[layout]`.
    pub layout: LayoutConfig,
    /// `[timers]`.
    pub timers: TimerConfig,
    /// `[socket]`.
    pub socket: SocketConfig,
    /// `[caps]`.
    pub caps: CapsConfig,
}

/// `[layout]`: the machine's PASID layout and reserved host PASIDs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LayoutConfig {
    /// PASID width in bits (default 20).
    pub width: u8,
    /// The local range, `[start, end)` (default `[1, 4096]`).
    pub local: [u32; 2],
    /// The shared range, `[start, end)` (default `[4096, 524288]`).
    pub shared: [u32; 2],
    /// Host PASIDs never granted, `[start, end)` each (default none).
    pub reserved: Vec<[u32; 2]>,
}

impl Default for LayoutConfig {
    fn default() -> Self {
        LayoutConfig {
            width: 20,
            local: [1, 4096],
            shared: [4096, 1 << 19],
            reserved: Vec::new(),
        }
    }
}

/// `[timers]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimerConfig {
    /// How long a dead client's PASIDs stay quarantined (default 30; fractions allowed).
    pub quarantine_secs: f64,
    /// How long after a restart a lease waits for its client (default 30).
    pub grace_secs: f64,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            quarantine_secs: 30.0,
            grace_secs: 30.0,
        }
    }
}

/// `[socket]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SocketConfig {
    /// The socket file's mode, octal (default `"0660"`).
    pub mode: String,
    /// The socket file's group id (default: the broker's).
    pub gid: Option<u32>,
    /// Only these uids may connect (default: any that can open the socket).
    pub allowed_uids: Vec<u32>,
}

impl Default for SocketConfig {
    fn default() -> Self {
        SocketConfig {
            mode: "0660".into(),
            gid: None,
            allowed_uids: Vec::new(),
        }
    }
}

/// `[caps]`: the default cap and per-uid ones.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CapsConfig {
    /// Leases per uid (default 64).
    pub max_leases: u32,
    /// Host PASIDs per uid, held plus quarantined (default 4096).
    pub max_pasids: u32,
    /// Host PASIDs the broker records to a lease ahead of its requests, so that most
    /// grants need no store commit (default 32; 0: every grant is a commit). They
    /// count against `max_pasids`. See docs/broker.md.
    pub spare: u32,
    /// `[[caps.uid]]` entries.
    pub uid: Vec<UidCap>,
}

impl Default for CapsConfig {
    fn default() -> Self {
        CapsConfig {
            max_leases: 64,
            max_pasids: 4096,
            spare: 32,
            uid: Vec::new(),
        }
    }
}

/// One `[[caps.uid]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UidCap {
    /// The uid.
    pub uid: u32,
    /// Its lease cap.
    pub max_leases: u32,
    /// Its host-PASID cap.
    pub max_pasids: u32,
}

/// The most spares a lease may keep, whatever the file says: a spare is a PASID
/// nobody else can have until the lease ends or the pool runs short.
const MAX_SPARE: u32 = 1024;

fn millis(secs: f64, what: &str) -> Result<u64, ConfigError> {
    if !(0.0..=1e9).contains(&secs) {
        return Err(ConfigError::Invalid(format!("{what} = {secs}")));
    }
    Ok((secs * 1000.0) as u64)
}

impl Config {
    /// Reads and checks a file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text)
    }

    /// Parses and checks TOML text.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let c: Config = toml::from_str(text)?;
        c.policy()?;
        c.socket_mode()?;
        Ok(c)
    }

    /// The socket file's mode.
    pub fn socket_mode(&self) -> Result<u32, ConfigError> {
        u32::from_str_radix(self.socket.mode.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| ConfigError::Invalid(format!("socket mode {:?}", self.socket.mode)))
    }

    /// The layout, checked by the core's rules, as it travels.
    pub fn layout(&self) -> Result<WireLayout, ConfigError> {
        Ok(WireLayout::from(&self.pasid_layout()?))
    }

    /// The layout, checked by the core's rules.
    pub fn pasid_layout(&self) -> Result<PasidLayout, ConfigError> {
        let l = &self.layout;
        PasidLayout::new(l.width, l.local[0]..l.local[1], l.shared[0]..l.shared[1])
            .map_err(|e| ConfigError::Invalid(format!("layout: {e}")))
    }

    /// The registry's policy.
    pub fn policy(&self) -> Result<Policy, ConfigError> {
        let layout = self.pasid_layout()?;
        let reserved = self
            .layout
            .reserved
            .iter()
            .map(|[a, b]| *a..*b)
            .collect::<Vec<_>>();
        if let Some(r) = reserved.iter().find(|r| r.start >= r.end) {
            return Err(ConfigError::Invalid(format!("empty reserved range {r:?}")));
        }
        if self.caps.spare > MAX_SPARE {
            return Err(ConfigError::Invalid(format!(
                "caps.spare = {}, at most {MAX_SPARE}",
                self.caps.spare
            )));
        }
        let uid_caps: BTreeMap<u32, Cap> = self
            .caps
            .uid
            .iter()
            .map(|c| {
                (
                    c.uid,
                    Cap {
                        max_leases: c.max_leases,
                        max_pasids: c.max_pasids,
                    },
                )
            })
            .collect();
        Ok(Policy {
            layout,
            reserved,
            quarantine_ms: millis(self.timers.quarantine_secs, "quarantine_secs")?,
            grace_ms: millis(self.timers.grace_secs, "grace_secs")?,
            spare: self.caps.spare,
            default_cap: Cap {
                max_leases: self.caps.max_leases,
                max_pasids: self.caps.max_pasids,
            },
            uid_caps,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_parses_and_bad_values_are_refused() {
        let doc = include_str!("config.rs");
        let example: String = doc
            .lines()
            .skip_while(|l| !l.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| l.trim_start_matches("//!").trim_start().to_owned() + "\n")
            .collect();
        let c = Config::from_toml(&example).unwrap();
        let p = c.policy().unwrap();
        assert_eq!(p.reserved, vec![4096..4160]);
        assert_eq!(p.uid_caps[&107].max_pasids, 32768);
        assert_eq!(c.socket_mode().unwrap(), 0o660);
        assert!(Config::from_toml("[layout]\nshared = [100, 5000]\n").is_err());
        assert!(Config::from_toml("[socket]\nmode = \"999\"\n").is_err());
        assert!(Config::from_toml("bogus = 1\n").is_err());
        assert_eq!(p.spare, 32);
        assert!(Config::from_toml("[caps]\nspare = 1025\n").is_err());
        assert!(Config::from_toml("").is_ok());
    }
}
