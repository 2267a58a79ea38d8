//! The crash-safe record of leases and host PASIDs: SQLite (bundled) in WAL mode.
//!
//! Why this is enough: with `journal_mode=WAL` and `synchronous=NORMAL`, a commit is
//! in the WAL file (handed to the OS) when it returns, and SQLite's recovery replays
//! whole transactions only. So a kill -9 of the broker loses nothing it answered, with
//! no fsync per grant. A power loss or kernel crash may lose the last commits; that is
//! fine because it also kills every VMM and resets every device, so no PASID it
//! handed out is still in use. The server commits every change before it answers a
//! grant, and groups the changes pending at once into one transaction.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use crate::registry::{LeaseId, LeaseState, Peer, StoreOp, StoredLease, StoredState};
use pasid_broker_client::protocol::{WireLayout, TOKEN_LEN};

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed (a full disk, a broken file).
    #[error("state store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The store was made for another layout.
    #[error("the state store was made for layout {stored}, the configuration says {configured}; move it away to start afresh")]
    LayoutChanged {
        /// The store's layout.
        stored: String,
        /// The configured one.
        configured: String,
    },
    /// A row that makes no sense.
    #[error("state store holds a bad row: {0}")]
    Corrupt(String),
}

/// The open store.
#[derive(Debug)]
pub struct Store {
    db: Connection,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS leases (
    id INTEGER PRIMARY KEY, token BLOB NOT NULL,
    uid INTEGER NOT NULL, gid INTEGER NOT NULL, pid INTEGER NOT NULL, start INTEGER NOT NULL,
    state INTEGER NOT NULL, until INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS pasids (
    pasid INTEGER PRIMARY KEY, lease INTEGER, until INTEGER, uid INTEGER);
";

fn state_code(s: LeaseState) -> (i64, i64) {
    match s {
        LeaseState::Connected { conn } => (0, conn as i64),
        LeaseState::Orphaned { until } => (1, until as i64),
        LeaseState::Unconfirmed { until } => (2, until as i64),
    }
}

impl Store {
    /// Opens (or makes) the store at `path` for `layout`.
    pub fn open(path: &Path, layout: &WireLayout) -> Result<Self, StoreError> {
        let db = Connection::open(path)?;
        // One process owns the file (the broker's flock): exclusive locking spares
        // the WAL's shared-memory index and a lock round per transaction.
        db.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        db.execute_batch(SCHEMA)?;
        let want = layout.to_string();
        let have: Option<String> = db
            .query_row("SELECT value FROM meta WHERE key = 'layout'", [], |r| {
                r.get(0)
            })
            .optional()?;
        match have {
            Some(stored) if stored != want => {
                return Err(StoreError::LayoutChanged {
                    stored,
                    configured: want,
                })
            }
            Some(_) => {}
            None => {
                db.execute(
                    "INSERT INTO meta (key, value) VALUES ('layout', ?1)",
                    params![want],
                )?;
            }
        }
        Ok(Store { db })
    }

    /// Everything stored.
    pub fn load(&self) -> Result<StoredState, StoreError> {
        let mut out = StoredState::default();
        let mut leases = self.db.prepare(
            "SELECT id, token, uid, gid, pid, start, state, until FROM leases ORDER BY id",
        )?;
        let rows = leases.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, u32>(2)?,
                r.get::<_, u32>(3)?,
                r.get::<_, u32>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, i64>(7)?,
            ))
        })?;
        for row in rows {
            let (id, token, uid, gid, pid, start, state, until) = row?;
            let token: [u8; TOKEN_LEN] = token
                .try_into()
                .map_err(|_| StoreError::Corrupt(format!("lease {id}: token length")))?;
            let state = match state {
                0 => LeaseState::Connected { conn: until as u64 },
                1 => LeaseState::Orphaned {
                    until: until as u64,
                },
                2 => LeaseState::Unconfirmed {
                    until: until as u64,
                },
                s => return Err(StoreError::Corrupt(format!("lease {id}: state {s}"))),
            };
            out.leases.push(StoredLease {
                id: id as LeaseId,
                token,
                peer: Peer {
                    uid,
                    gid,
                    pid,
                    start: start as u64,
                },
                state,
                held: Vec::new(),
            });
        }
        let mut pasids = self
            .db
            .prepare("SELECT pasid, lease, until, uid FROM pasids ORDER BY pasid")?;
        let rows = pasids.query_map([], |r| {
            Ok((
                r.get::<_, u32>(0)?,
                r.get::<_, Option<i64>>(1)?,
                r.get::<_, Option<i64>>(2)?,
                r.get::<_, Option<u32>>(3)?,
            ))
        })?;
        for row in rows {
            match row? {
                (pasid, Some(lease), _, _) => {
                    let l = out
                        .leases
                        .iter_mut()
                        .find(|l| l.id == lease as LeaseId)
                        .ok_or_else(|| {
                            StoreError::Corrupt(format!("PASID {pasid} of missing lease {lease}"))
                        })?;
                    l.held.push(pasid);
                }
                (pasid, None, Some(until), Some(uid)) => {
                    out.quarantine.push((pasid, until as u64, uid))
                }
                (pasid, ..) => return Err(StoreError::Corrupt(format!("PASID {pasid}"))),
            }
        }
        out.last_lease = self
            .db
            .query_row("SELECT value FROM meta WHERE key = 'last_lease'", [], |r| {
                r.get::<_, String>(0)
            })
            .optional()?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok(out)
    }

    /// Records `ops` in one transaction (group commit).
    pub fn commit(&mut self, ops: &[StoreOp]) -> Result<(), StoreError> {
        let tx = self.db.transaction()?;
        {
            let mut put_lease = tx.prepare_cached(
                "INSERT OR REPLACE INTO leases (id, token, uid, gid, pid, start, state, until)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            let mut del_lease = tx.prepare_cached("DELETE FROM leases WHERE id = ?1")?;
            let mut put_pasid = tx.prepare_cached(
                "INSERT OR REPLACE INTO pasids (pasid, lease, until, uid) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut del_pasid = tx.prepare_cached("DELETE FROM pasids WHERE pasid = ?1")?;
            let mut last: Option<LeaseId> = None;
            for op in ops {
                match op {
                    StoreOp::PutLease {
                        id,
                        token,
                        peer,
                        state,
                    } => {
                        let (code, until) = state_code(*state);
                        put_lease.execute(params![
                            *id as i64,
                            &token[..],
                            peer.uid,
                            peer.gid,
                            peer.pid,
                            peer.start as i64,
                            code,
                            until
                        ])?;
                        last = Some(last.map_or(*id, |l| l.max(*id)));
                    }
                    StoreOp::DeleteLease { id } => {
                        del_lease.execute(params![*id as i64])?;
                    }
                    StoreOp::Hold { pasid, lease } => {
                        put_pasid.execute(params![
                            pasid,
                            *lease as i64,
                            None::<i64>,
                            None::<u32>
                        ])?;
                    }
                    StoreOp::Quarantine { pasid, until, uid } => {
                        put_pasid.execute(params![pasid, None::<i64>, *until as i64, uid])?;
                    }
                    StoreOp::Free { pasid } => {
                        del_pasid.execute(params![pasid])?;
                    }
                }
            }
            if let Some(last) = last {
                // Lease numbers are never reused, even after the lease is deleted.
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('last_lease', ?1)
                     ON CONFLICT(key) DO UPDATE SET value = max(CAST(value AS INTEGER), ?1)",
                    params![last as i64],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}
