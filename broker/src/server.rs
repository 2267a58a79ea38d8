//! The daemon: accepts connections on the Unix socket, serves each on its own thread,
//! commits every change to the store (grouped) before it answers a grant, and ends
//! due quarantines and grace periods on a timer thread (which also commits changes
//! nobody waits for: releases, disconnects).

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pasid_broker_client::framing::{self, FrameError};
use pasid_broker_client::protocol::{
    ErrorKind, Request, Response, WireError, WireLayout, PROTOCOL_VERSION, TOKEN_LEN,
};

use crate::config::{Config, ConfigError};
use crate::liveness;
use crate::metrics::{self, Metrics};
use crate::registry::{self, wire_error, LeaseId, LoadError, Peer, Registry, StoreOp, Totals};
use crate::store::{Store, StoreError};

/// The most PASIDs one request may ask for (keeps every answer far below a frame).
pub const MAX_ALLOC_BATCH: u32 = 8192;

/// The most connections served at once (each has a thread); more are closed at once,
/// so a flood of connections cannot exhaust the broker's threads or memory.
pub const MAX_CONNECTIONS: usize = 4096;

/// How long a connection may stay silent before its hello (a slow-loris guard).
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the timer thread looks for due quarantines and grace periods.
const TICK: Duration = Duration::from_millis(50);

/// Why the broker did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store failed to open or load.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored state does not fit the configuration.
    #[error("state store: {0}")]
    Load(#[from] LoadError),
    /// Another broker serves this state file or socket.
    #[error("{0}")]
    Busy(String),
    /// A socket or file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StartError {
    let what = what.into();
    move |source| StartError::Io { what, source }
}

/// How to start a broker.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    /// The socket to bind (ignored when systemd passes a listening socket).
    pub socket: Option<PathBuf>,
    /// The state store (an SQLite file; made if missing).
    pub state: PathBuf,
    /// The configuration.
    pub config: Config,
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics: Option<SocketAddr>,
}

/// The time as the registry counts it: wall-clock milliseconds since the epoch.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

struct State {
    registry: Registry,
    /// Changes not yet committed, and the number of the last change set queued.
    pending: Vec<StoreOp>,
    queued: u64,
}

struct Shared {
    state: Mutex<State>,
    /// The store, used by the one thread that is committing.
    store: Mutex<Store>,
    /// Whether a thread is committing; `committed_cv` wakes the waiters when it ends.
    committing: Mutex<bool>,
    committed_cv: Condvar,
    /// The number of the last committed change set.
    committed: AtomicU64,
    metrics: Arc<Metrics>,
    next_conn: AtomicU64,
    /// Connections being served now.
    connections: std::sync::atomic::AtomicUsize,
    allowed_uids: Vec<u32>,
    broker_uid: u32,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic on another thread is a bug, but the registry's every call leaves it
        // consistent before it can panic, so serving on is safe.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `ops` for the store; returns the number to commit through, or `None`
    /// when there is nothing to record (a grant from the lease's spares, which are on
    /// record already): its answer waits for no commit, not even others'.
    fn queue_grant(&self, state: &mut State, ops: Vec<StoreOp>) -> Option<u64> {
        (!ops.is_empty()).then(|| self.queue(state, ops))
    }

    /// Queues `ops` for the store; returns the number to commit through.
    fn queue(&self, state: &mut State, ops: Vec<StoreOp>) -> u64 {
        if !ops.is_empty() {
            state.pending.extend(ops);
            state.queued += 1;
        }
        state.queued
    }

    /// Returns once change set `seq` is committed. Group commit without a writer
    /// thread: a waiter that finds nobody committing becomes the committer and
    /// commits everything pending in one transaction; the others sleep until it is
    /// done and are woken all at once (not one by one through a lock), then either
    /// find theirs committed or one of them commits the next group. A lone client's
    /// grant needs no thread hand-off.
    fn commit_through(&self, seq: u64) {
        let mut committing = self.committing.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if self.committed.load(Ordering::Acquire) >= seq {
                return;
            }
            if !*committing {
                break;
            }
            committing = self
                .committed_cv
                .wait(committing)
                .unwrap_or_else(|e| e.into_inner());
        }
        *committing = true;
        drop(committing);
        let (ops, upto) = {
            let mut st = self.lock();
            (std::mem::take(&mut st.pending), st.queued)
        };
        // Only the committer touches the store: this lock is never contended.
        let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = store.commit(&ops) {
            // The memory state is ahead of the store and no answer waiting on it may
            // go out. Exiting is the safe way back: the store holds exactly what was
            // answered, and clients reclaim from the restarted broker.
            eprintln!("pasid-broker: cannot record changes, exiting: {e}");
            std::process::exit(70);
        }
        drop(store);
        self.committed.store(upto, Ordering::Release);
        *self.committing.lock().unwrap_or_else(|e| e.into_inner()) = false;
        self.committed_cv.notify_all();
    }

    fn totals(&self) -> Totals {
        self.lock().registry.totals()
    }
}

/// A broker ready to serve: its store is open and loaded, its socket bound.
pub struct Broker {
    shared: Arc<Shared>,
    listener: UnixListener,
    socket: Option<PathBuf>,
    metrics_addr: Option<SocketAddr>,
    // Held for the broker's life: one broker per state file.
    _lock: File,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("socket", &self.socket)
            .field("metrics", &self.metrics_addr)
            .finish_non_exhaustive()
    }
}

fn lock_state_file(state: &Path) -> Result<File, StartError> {
    let mut lock_path = state.as_os_str().to_owned();
    lock_path.push(".lock");
    let file = File::create(&lock_path).map_err(io_err(format!(
        "cannot open {}",
        Path::new(&lock_path).display()
    )))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
        |_| {
            StartError::Busy(format!(
                "another broker uses the state store {}",
                state.display()
            ))
        },
    )?;
    Ok(file)
}

fn bind_socket(path: &Path, config: &Config) -> Result<UnixListener, StartError> {
    if path.exists() {
        // A live broker answers: never steal its socket. A dead one's file is stale.
        if UnixStream::connect(path).is_ok() {
            return Err(StartError::Busy(format!(
                "another broker serves {}",
                path.display()
            )));
        }
        std::fs::remove_file(path)
            .map_err(io_err(format!("cannot remove stale {}", path.display())))?;
    }
    // Bind a sibling name, set owner and mode, and only then rename it into place: the
    // socket path appears when the broker already listens on it with its final mode
    // (a script that waits for the file never meets a stale one or a refused connect),
    // and with the umask there is no moment when it is wider open than configured.
    let mut staging = path.as_os_str().to_owned();
    staging.push(format!(".{}.new", std::process::id()));
    let staging = PathBuf::from(staging);
    let _ = std::fs::remove_file(&staging);
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
    let bound = UnixListener::bind(&staging);
    rustix::process::umask(old);
    let listener = bound.map_err(io_err(format!("cannot bind {}", path.display())))?;
    let placed = (|| {
        if let Some(gid) = config.socket.gid {
            std::os::unix::fs::chown(&staging, None, Some(gid)).map_err(io_err(format!(
                "cannot chown {} to gid {gid}",
                path.display()
            )))?;
        }
        std::fs::set_permissions(
            &staging,
            std::fs::Permissions::from_mode(config.socket_mode()?),
        )
        .map_err(io_err(format!("cannot chmod {}", path.display())))?;
        std::fs::rename(&staging, path).map_err(io_err(format!("cannot bind {}", path.display())))
    })();
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&staging);
        return Err(e);
    }
    Ok(listener)
}

impl Broker {
    /// Opens the store, loads the state (every lease that was connected waits for its
    /// client for the grace period) and binds the socket, or takes the socket systemd
    /// passed (`LISTEN_FDS`).
    pub fn bind(options: BrokerOptions) -> Result<Broker, StartError> {
        let policy = options.config.policy()?;
        let lock = lock_state_file(&options.state)?;
        let mut store = Store::open(&options.state, &WireLayout::from(&policy.layout))?;
        let stored = store.load()?;
        let mut ops = Vec::new();
        let registry = Registry::load(policy, stored, now_ms(), &mut ops)?;
        store.commit(&ops)?;

        let mut fds = listenfd::ListenFd::from_env();
        let listener = match fds.take_unix_listener(0).ok().flatten() {
            Some(l) => l,
            None => {
                let path = options.socket.as_deref().ok_or_else(|| {
                    StartError::Busy("no --socket given and no socket from systemd".into())
                })?;
                bind_socket(path, &options.config)?
            }
        };
        let metrics = Arc::new(Metrics::new());
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                registry,
                pending: Vec::new(),
                queued: 0,
            }),
            store: Mutex::new(store),
            committing: Mutex::new(false),
            committed_cv: Condvar::new(),
            committed: AtomicU64::new(0),
            metrics: metrics.clone(),
            next_conn: AtomicU64::new(1),
            connections: std::sync::atomic::AtomicUsize::new(0),
            allowed_uids: options.config.socket.allowed_uids.clone(),
            broker_uid: rustix::process::geteuid().as_raw(),
        });
        let metrics_addr = match options.metrics {
            Some(addr) => {
                let s = shared.clone();
                Some(
                    metrics::serve(addr, metrics, move || s.totals())
                        .map_err(io_err(format!("cannot serve metrics on {addr}")))?,
                )
            }
            None => None,
        };
        Ok(Broker {
            shared,
            listener,
            socket: options.socket,
            metrics_addr,
            _lock: lock,
        })
    }

    /// Where the metrics endpoint listens, if it does.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Serves until the process ends. Stopping is killing: the store is consistent at
    /// every instant, and clients reclaim their leases from the next broker.
    pub fn serve(self) -> Result<(), StartError> {
        let Broker {
            shared, listener, ..
        } = self;
        let s = shared.clone();
        thread::Builder::new()
            .name("timers".into())
            .spawn(move || tick_loop(&s))
            .map_err(io_err("cannot start the timers"))?;
        for stream in listener.incoming() {
            let Ok(stream) = stream else {
                // Out of fds or similar: keep serving the connections we have.
                thread::sleep(Duration::from_millis(10));
                continue;
            };
            if shared.connections.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                // Too many: close this one (the client sees a close), keep the rest.
                shared.connections.fetch_sub(1, Ordering::AcqRel);
                continue;
            }
            let s = shared.clone();
            let spawned = thread::Builder::new().name("conn".into()).spawn(move || {
                // Counted out however the thread ends, a panic included.
                struct Leaving<'a>(&'a Shared);
                impl Drop for Leaving<'_> {
                    fn drop(&mut self) {
                        self.0.connections.fetch_sub(1, Ordering::AcqRel);
                    }
                }
                let _leaving = Leaving(&s);
                serve_connection(&s, stream);
            });
            if spawned.is_err() {
                // No thread for it: the stream was dropped, the client sees a close.
                shared.connections.fetch_sub(1, Ordering::AcqRel);
                thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(())
    }
}

fn tick_loop(shared: &Shared) {
    loop {
        thread::sleep(TICK);
        let seq = {
            let mut st = shared.lock();
            let now = now_ms();
            if st.registry.next_deadline().is_some_and(|d| d <= now) {
                let mut ops = Vec::new();
                st.registry.tick(now, liveness::alive, &mut ops);
                shared.queue(&mut st, ops);
            }
            st.queued
        };
        // Also records releases and disconnects, which nobody waits for.
        shared.commit_through(seq);
    }
}

fn peer_of(stream: &UnixStream) -> Option<Peer> {
    let cred = rustix::net::sockopt::socket_peercred(stream).ok()?;
    let pid = cred.pid.as_raw_pid() as u32;
    Some(Peer {
        uid: cred.uid.as_raw(),
        gid: cred.gid.as_raw(),
        pid,
        start: liveness::start_time(pid),
    })
}

fn protocol_error(message: impl Into<String>) -> Response {
    Response::Error(WireError {
        kind: ErrorKind::Protocol,
        message: message.into(),
    })
}

/// One connection: hello first, then requests, strictly one answer per request.
fn serve_connection(shared: &Shared, stream: UnixStream) {
    let Some(peer) = peer_of(&stream) else {
        return;
    };
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let conn = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let mut reader = BufReader::new(read_half);
    let mut writer = BufWriter::new(&stream);
    let mut buf = Vec::new();
    let mut lease: Option<LeaseId> = None;
    let _ = stream.set_read_timeout(Some(HELLO_TIMEOUT));
    loop {
        let req: Request = match framing::read_message(&mut reader, &mut buf) {
            Ok(r) => r,
            Err(FrameError::Closed | FrameError::Io(_)) => break,
            Err(e) => {
                let _ = framing::write_message(&mut writer, &protocol_error(e.to_string()));
                break;
            }
        };
        let had_lease = lease.is_some();
        let (resp, close) = handle(shared, peer, conn, &mut lease, req);
        if !had_lease && lease.is_some() {
            let _ = stream.set_read_timeout(None);
        }
        // A client may send its next request before it reads this answer (a release
        // is posted that way): while a whole request already waits in the buffer, the
        // answer waits with it, so one write carries both answers.
        let more_waiting = reader.buffer().contains(&0);
        if write_answer(&mut writer, &resp, !more_waiting || close).is_err() || close {
            break;
        }
    }
    if let Some(id) = lease {
        let mut st = shared.lock();
        let mut ops = Vec::new();
        st.registry.disconnect(id, conn, now_ms(), &mut ops);
        shared.queue(&mut st, ops);
    }
}

fn write_answer(
    writer: &mut BufWriter<&UnixStream>,
    resp: &Response,
    flush: bool,
) -> Result<(), FrameError> {
    use std::io::Write;
    writer.write_all(&framing::encode(resp)?)?;
    if flush {
        writer.flush()?;
    }
    Ok(())
}

/// Answers one request; the flag says to close the connection after the answer.
fn handle(
    shared: &Shared,
    peer: Peer,
    conn: u64,
    lease: &mut Option<LeaseId>,
    req: Request,
) -> (Response, bool) {
    let started = Instant::now();
    match (req, *lease) {
        (Request::Status, own) => {
            let admin = peer.uid == 0 || peer.uid == shared.broker_uid;
            let report = registry::status(&shared.lock().registry, admin, own);
            (Response::Status(report), false)
        }
        (
            Request::Hello {
                version,
                layout,
                resume,
            },
            None,
        ) => {
            if version != PROTOCOL_VERSION {
                return (
                    Response::Error(WireError {
                        kind: ErrorKind::Version,
                        message: format!(
                            "protocol version {version} not spoken; this broker speaks {PROTOCOL_VERSION}"
                        ),
                    }),
                    true,
                );
            }
            if !shared.allowed_uids.is_empty() && !shared.allowed_uids.contains(&peer.uid) {
                return (
                    Response::Error(WireError {
                        kind: ErrorKind::Denied,
                        message: format!("uid {} may not use this broker", peer.uid),
                    }),
                    true,
                );
            }
            let mut token = [0u8; TOKEN_LEN];
            if getrandom::fill(&mut token).is_err() {
                return (
                    Response::Error(WireError {
                        kind: ErrorKind::Store,
                        message: "no randomness for a lease token".into(),
                    }),
                    true,
                );
            }
            let mut ops = Vec::new();
            let (result, seq, free) = {
                let mut st = shared.lock();
                let result = registry::check_layout(&st.registry, &layout).and_then(|()| {
                    match &resume {
                        None => st.registry.open(peer, conn, token, &mut ops),
                        Some(r) => {
                            st.registry
                                .reclaim(peer, conn, registry::resume(r), now_ms(), &mut ops)
                        }
                    }
                    .map_err(wire_error)
                });
                let seq = shared.queue(&mut st, ops);
                let token = result
                    .as_ref()
                    .ok()
                    .and_then(|id| st.registry.lease(*id))
                    .map(|l| l.token);
                (result.map(|id| (id, token)), seq, st.registry.free())
            };
            match result {
                Ok((id, Some(token))) => {
                    shared.commit_through(seq);
                    *lease = Some(id);
                    (
                        Response::Welcome {
                            lease: id,
                            token,
                            free,
                        },
                        false,
                    )
                }
                Ok((_, None)) => (protocol_error("lease vanished"), true),
                Err(e) => (Response::Error(e), true),
            }
        }
        (Request::Hello { .. }, Some(_)) => (protocol_error("a second hello"), true),
        (_, None) => (protocol_error("the first request must be a hello"), true),
        (Request::Alloc { count }, Some(id)) => {
            if count == 0 || count > MAX_ALLOC_BATCH {
                return (
                    Response::Error(WireError {
                        kind: ErrorKind::CapReached,
                        message: format!(
                            "asks for {count}; one request takes 1..={MAX_ALLOC_BATCH}"
                        ),
                    }),
                    false,
                );
            }
            let mut ops = Vec::new();
            let (result, seq, free) = {
                let mut st = shared.lock();
                let r = st.registry.alloc(id, conn, count, &mut ops);
                let seq = shared.queue_grant(&mut st, ops);
                (r, seq, st.registry.free())
            };
            match result {
                Ok(pasids) => {
                    // Answer a grant only once it is on record.
                    if let Some(seq) = seq {
                        shared.commit_through(seq);
                    }
                    shared.metrics.granted(count, started.elapsed());
                    (Response::Granted { pasids, free }, false)
                }
                Err(e) => (Response::Error(wire_error(e)), false),
            }
        }
        (Request::Claim { pasid }, Some(id)) => {
            let mut ops = Vec::new();
            let (result, seq, free) = {
                let mut st = shared.lock();
                let r = st.registry.claim(id, conn, pasid, &mut ops);
                let seq = shared.queue_grant(&mut st, ops);
                (r, seq, st.registry.free())
            };
            match result {
                Ok(()) => {
                    if let Some(seq) = seq {
                        shared.commit_through(seq);
                    }
                    shared.metrics.granted(1, started.elapsed());
                    (Response::Done { free }, false)
                }
                Err(e) => (Response::Error(wire_error(e)), false),
            }
        }
        (Request::Release { pasid }, Some(id)) => {
            let mut ops = Vec::new();
            let mut st = shared.lock();
            let r = st.registry.release(id, conn, pasid, &mut ops);
            shared.queue(&mut st, ops);
            let free = st.registry.free();
            drop(st);
            // No wait for the commit: if the broker dies first, the store still gives
            // the PASID to the lease, the reclaim leaves it out, and it goes to
            // quarantine. Later grants of it are queued after this release.
            match r {
                Ok(()) => (Response::Done { free }, false),
                Err(e) => (Response::Error(wire_error(e)), false),
            }
        }
        (Request::Goodbye, Some(id)) => {
            let mut ops = Vec::new();
            let seq = {
                let mut st = shared.lock();
                st.registry.goodbye(id, conn, now_ms(), &mut ops);
                shared.queue(&mut st, ops)
            };
            shared.commit_through(seq);
            *lease = None;
            (Response::Bye, true)
        }
    }
}
