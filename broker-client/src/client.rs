//! The blocking client: a [`HostPasidSource`] whose PASIDs come from the broker.

use std::collections::BTreeSet;
use std::fmt;
use std::io::BufReader;
use std::ops::Range;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use pasid_core::{HostPasidSource, PasidLayout, SourceError};

use crate::framing::{self, FrameError};
use crate::protocol::{
    ErrorKind, Request, Response, Resume, StatusReport, WireError, WireLayout, PROTOCOL_VERSION,
    TOKEN_LEN,
};

/// Why [`BrokerSource::connect`] (or [`query_status`]) did not get a lease.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The socket could not be reached.
    #[error("cannot connect to the broker at {path}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The broker refused (layout, version, credentials, caps): its message says why.
    #[error("the broker refused: {0}")]
    Refused(WireError),
    /// The conversation broke.
    #[error("broker conversation failed: {0}")]
    Frame(#[from] FrameError),
    /// The broker answered something that does not fit the request.
    #[error("the broker answered out of protocol: {0}")]
    Unexpected(String),
}

/// How a [`BrokerSource`] behaves when it loses its connection.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// How long a call keeps trying to reconnect and reclaim its lease before it
    /// answers [`SourceError::Disconnected`] (default 5 s); also how long it waits for
    /// an answer before it takes the connection for lost.
    pub reconnect_for: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            reconnect_for: Duration::from_secs(5),
        }
    }
}

struct Connection {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Connection {
    fn open(path: &Path, timeout: Duration) -> Result<Self, ConnectError> {
        let writer = UnixStream::connect(path).map_err(|source| ConnectError::Io {
            path: path.to_owned(),
            source,
        })?;
        // A broker that stops answering (stopped, stalled on its disk) counts as a
        // lost connection: the VMM reconnects and reclaims instead of hanging.
        writer
            .set_read_timeout(Some(timeout))
            .map_err(|source| ConnectError::Io {
                path: path.to_owned(),
                source,
            })?;
        let reader = BufReader::new(writer.try_clone().map_err(|source| ConnectError::Io {
            path: path.to_owned(),
            source,
        })?);
        Ok(Connection { reader, writer })
    }

    fn exchange(&mut self, req: &Request, buf: &mut Vec<u8>) -> Result<Response, FrameError> {
        framing::write_message(&mut self.writer, req)?;
        framing::read_message(&mut self.reader, buf)
    }
}

/// A lease at the machine's broker, used as the [`HostPasidSource`] of a `Host`.
///
/// Every host PASID it hands out was granted by the broker to this lease alone. If
/// the connection is lost (the broker restarted), the next call reconnects and
/// reclaims the lease with its token and the exact list of PASIDs it holds, trying
/// for [`ClientOptions::reconnect_for`] before it answers
/// [`SourceError::Disconnected`]; a later call tries again.
///
/// Dropping it ends the lease with a goodbye: PASIDs it still holds go to the
/// broker's quarantine (release them first to free them at once).
pub struct BrokerSource {
    socket: PathBuf,
    layout: WireLayout,
    options: ClientOptions,
    conn: Option<Connection>,
    lease: u64,
    token: [u8; TOKEN_LEN],
    held: BTreeSet<u32>,
    free: u32,
    buf: Vec<u8>,
}

impl fmt::Debug for BrokerSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerSource")
            .field("socket", &self.socket)
            .field("layout", &self.layout)
            .field("lease", &self.lease)
            .field("connected", &self.conn.is_some())
            .field("held", &self.held.len())
            .field("free", &self.free)
            .finish_non_exhaustive()
    }
}

fn wire_error(resp: Response) -> ConnectError {
    match resp {
        Response::Error(e) => ConnectError::Refused(e),
        other => ConnectError::Unexpected(format!("{other:?}")),
    }
}

/// Maps a broker's refusal to what the host understands.
fn source_error(e: &WireError) -> SourceError {
    match e.kind {
        ErrorKind::Exhausted | ErrorKind::CapReached => SourceError::Exhausted,
        ErrorKind::Unavailable { pasid } => SourceError::Unavailable { pasid },
        ErrorKind::Denied | ErrorKind::LayoutMismatch | ErrorKind::ReclaimRefused => {
            SourceError::Denied
        }
        ErrorKind::Version | ErrorKind::Protocol => SourceError::Protocol,
        ErrorKind::Store => SourceError::Disconnected,
    }
}

/// Asks the broker at `socket` for its state without opening a lease (what
/// `pasid-broker status` does). An admin (root or the broker's uid) sees every lease.
pub fn query_status(socket: &Path) -> Result<StatusReport, ConnectError> {
    let mut conn = Connection::open(socket, ClientOptions::default().reconnect_for)?;
    let mut buf = Vec::new();
    match conn.exchange(&Request::Status, &mut buf)? {
        Response::Status(s) => Ok(s),
        other => Err(wire_error(other)),
    }
}

impl BrokerSource {
    /// Opens a new lease at the broker listening on `socket`. The broker refuses a
    /// `layout` other than its own, with a message that states both.
    pub fn connect(socket: impl AsRef<Path>, layout: &PasidLayout) -> Result<Self, ConnectError> {
        Self::connect_with(socket, layout, ClientOptions::default())
    }

    /// [`BrokerSource::connect`] with options.
    pub fn connect_with(
        socket: impl AsRef<Path>,
        layout: &PasidLayout,
        options: ClientOptions,
    ) -> Result<Self, ConnectError> {
        let socket = socket.as_ref().to_owned();
        let layout = WireLayout::from(layout);
        let mut conn = Connection::open(&socket, options.reconnect_for)?;
        let mut buf = Vec::new();
        let hello = Request::Hello {
            version: PROTOCOL_VERSION,
            layout,
            resume: None,
        };
        match conn.exchange(&hello, &mut buf)? {
            Response::Welcome { lease, token, free } => Ok(BrokerSource {
                socket,
                layout,
                options,
                conn: Some(conn),
                lease,
                token,
                held: BTreeSet::new(),
                free,
                buf,
            }),
            other => Err(wire_error(other)),
        }
    }

    /// The lease's number at the broker (what `pasid-broker status` lists).
    pub fn lease(&self) -> u64 {
        self.lease
    }

    /// The host PASIDs this lease holds, ascending.
    pub fn held(&self) -> impl Iterator<Item = u32> + '_ {
        self.held.iter().copied()
    }

    /// The broker's state as this client may see it (only its own lease).
    pub fn status(&mut self) -> Result<StatusReport, SourceError> {
        match self.call(&Request::Status)? {
            Response::Status(s) => Ok(s),
            Response::Error(e) => Err(source_error(&e)),
            _ => Err(SourceError::Protocol),
        }
    }

    /// Ends the lease now (what dropping does), and says whether the broker confirmed.
    pub fn close(mut self) -> Result<(), SourceError> {
        self.goodbye()
    }

    fn goodbye(&mut self) -> Result<(), SourceError> {
        let Some(mut conn) = self.conn.take() else {
            return Err(SourceError::Disconnected);
        };
        // A broker that hangs must not hang the VMM's exit.
        let _ = conn.writer.set_read_timeout(Some(Duration::from_secs(1)));
        match conn.exchange(&Request::Goodbye, &mut self.buf) {
            Ok(Response::Bye) => Ok(()),
            Ok(_) => Err(SourceError::Protocol),
            Err(_) => Err(SourceError::Disconnected),
        }
    }

    /// One request and its answer. On a broken connection it reconnects (reclaiming
    /// the lease) and, when `resend` allows, sends the request again.
    fn call(&mut self, req: &Request) -> Result<Response, SourceError> {
        let deadline = Instant::now() + self.options.reconnect_for;
        loop {
            if self.conn.is_none() {
                self.reconnect(deadline)?;
            }
            let conn = self.conn.as_mut().expect("connected above");
            match conn.exchange(req, &mut self.buf) {
                Ok(resp) => return Ok(resp),
                Err(_) => {
                    // Whatever the broker did with the request, the reclaim settles
                    // it: a grant whose answer was lost is not in our list, so it goes
                    // to quarantine, never to another lease.
                    self.conn = None;
                    if let Request::Release { .. } = req {
                        // Already out of our list: the reclaim gives it up.
                        self.reconnect(deadline)?;
                        return Ok(Response::Done { free: self.free });
                    }
                    // A broker that reclaims fine but drops this request every time
                    // must not keep the call looping.
                    if Instant::now() >= deadline {
                        return Err(SourceError::Disconnected);
                    }
                }
            }
        }
    }

    fn reconnect(&mut self, deadline: Instant) -> Result<(), SourceError> {
        let mut pause = Duration::from_millis(5);
        loop {
            match self.try_reclaim() {
                Ok(()) => return Ok(()),
                Err(ConnectError::Refused(e)) => return Err(source_error(&e)),
                Err(_) if Instant::now() < deadline => {
                    thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                Err(_) => return Err(SourceError::Disconnected),
            }
        }
    }

    fn try_reclaim(&mut self) -> Result<(), ConnectError> {
        let mut conn = Connection::open(&self.socket, self.options.reconnect_for)?;
        let hello = Request::Hello {
            version: PROTOCOL_VERSION,
            layout: self.layout,
            resume: Some(Resume {
                lease: self.lease,
                token: self.token,
                held: self.held.iter().copied().collect(),
            }),
        };
        match conn.exchange(&hello, &mut self.buf)? {
            Response::Welcome { lease, free, .. } if lease == self.lease => {
                self.free = free;
                self.conn = Some(conn);
                Ok(())
            }
            other => Err(wire_error(other)),
        }
    }

    fn take(&mut self, count: u32, out: &mut Vec<u32>) -> Result<(), SourceError> {
        match self.call(&Request::Alloc { count })? {
            Response::Granted { pasids, free } => {
                let range = self.layout.shared();
                if pasids.len() != count as usize || pasids.iter().any(|p| !range.contains(p)) {
                    return Err(SourceError::Protocol);
                }
                out.try_reserve(pasids.len())
                    .map_err(|_| SourceError::OutOfMemory)?;
                self.held.extend(pasids.iter().copied());
                out.extend_from_slice(&pasids);
                self.free = free;
                Ok(())
            }
            Response::Error(e) => Err(source_error(&e)),
            _ => Err(SourceError::Protocol),
        }
    }
}

impl Drop for BrokerSource {
    fn drop(&mut self) {
        let _ = self.goodbye();
    }
}

impl HostPasidSource for BrokerSource {
    fn range(&self) -> Range<u32> {
        self.layout.shared()
    }

    fn alloc(&mut self) -> Result<u32, SourceError> {
        let mut out = Vec::with_capacity(1);
        self.take(1, &mut out)?;
        Ok(out[0])
    }

    fn alloc_many(&mut self, count: u32, out: &mut Vec<u32>) -> Result<(), SourceError> {
        if count == 0 {
            return Ok(());
        }
        self.take(count, out)
    }

    fn claim(&mut self, pasid: u32) -> Result<(), SourceError> {
        match self.call(&Request::Claim { pasid })? {
            Response::Done { free } => {
                self.held.insert(pasid);
                self.free = free;
                Ok(())
            }
            Response::Error(e) => Err(source_error(&e)),
            _ => Err(SourceError::Protocol),
        }
    }

    /// Gives `pasid` back. It leaves this lease's list before the request is sent, so
    /// even a release that ends in [`SourceError::Disconnected`] gives it up: the next
    /// reclaim leaves it out and the broker quarantines it.
    fn release(&mut self, pasid: u32) -> Result<(), SourceError> {
        if !self.held.remove(&pasid) {
            return Err(SourceError::Unavailable { pasid });
        }
        match self.call(&Request::Release { pasid })? {
            Response::Done { free } => {
                self.free = free;
                Ok(())
            }
            Response::Error(e) => Err(source_error(&e)),
            _ => Err(SourceError::Protocol),
        }
    }

    fn free_count(&self) -> u32 {
        self.free
    }
}

// A VMM moves its host (and so its source) between threads.
const _: fn() = || {
    fn assert_send<T: Send>() {}
    assert_send::<BrokerSource>();
};
