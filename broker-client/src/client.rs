//! The blocking client: a [`HostPasidSource`] whose PASIDs come from the broker.

use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::io::{BufReader, Write};
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
    /// How many host PASIDs the client keeps in reserve (default 0: none). With a
    /// reserve of `r`, an `alloc` that finds the reserve empty takes `1 + r` in one round
    /// trip, and a `release` puts the PASID back in the reserve while it has room: most
    /// grants and releases then need no round trip at all. The reserve's PASIDs are the
    /// lease's at the broker like any it holds (no other VMM can get them; a dead
    /// client's are quarantined), and a clean goodbye releases them first. The cost: up
    /// to `r` host PASIDs parked per lease, counted by the broker's per-uid cap.
    pub reserve: u32,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            reconnect_for: Duration::from_secs(5),
            reserve: 0,
        }
    }
}

struct Connection {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    /// Posted requests (releases) not sent yet: they go out in the same write as the
    /// next request, so a release costs no system call of its own.
    outbox: Vec<u8>,
    /// The PASIDs of the posted releases whose answers are not read yet (sent or in
    /// the outbox), oldest first: if the connection breaks, the reclaim names them.
    posted: VecDeque<u32>,
}

/// The most posted requests in flight: a client that releases a lot without asking
/// for anything still sends them and drains their answers now and then.
const MAX_POSTED: u32 = 64;

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
        Ok(Connection {
            reader,
            writer,
            outbox: Vec::new(),
            posted: VecDeque::new(),
        })
    }

    /// Sends the posted requests and `req` in one write and returns `req`'s answer,
    /// reading the posted ones' answers on the way.
    fn exchange(&mut self, req: &Request, buf: &mut Vec<u8>) -> Result<Response, FrameError> {
        self.outbox.extend_from_slice(&framing::encode(req)?);
        self.send_outbox()?;
        self.read_posted(buf)?;
        framing::read_message(&mut self.reader, buf)
    }

    /// Queues the release of `pasid` to go out with the next request; its answer is
    /// read then.
    fn post_release(&mut self, pasid: u32, buf: &mut Vec<u8>) -> Result<(), FrameError> {
        if self.posted.len() as u32 >= MAX_POSTED {
            self.flush(buf)?;
        }
        self.outbox
            .extend_from_slice(&framing::encode(&Request::Release { pasid })?);
        self.posted.push_back(pasid);
        Ok(())
    }

    /// Sends the posted requests now and reads their answers.
    fn flush(&mut self, buf: &mut Vec<u8>) -> Result<(), FrameError> {
        self.send_outbox()?;
        self.read_posted(buf)
    }

    fn send_outbox(&mut self) -> Result<(), FrameError> {
        let sent = self.writer.write_all(&self.outbox);
        self.outbox.clear();
        Ok(sent?)
    }

    fn read_posted(&mut self, buf: &mut Vec<u8>) -> Result<(), FrameError> {
        while !self.posted.is_empty() {
            // Only releases are posted, and a refused release changed nothing on
            // either side (the PASID had left our list first), so its answer,
            // whatever it is, needs no action; a broken stream is handled by the
            // caller like any lost connection.
            let _: Response = framing::read_message(&mut self.reader, buf)?;
            self.posted.pop_front();
        }
        Ok(())
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
    /// Held PASIDs not handed to the host: lowest first (`ClientOptions::reserve`).
    reserve: BTreeSet<u32>,
    /// Released PASIDs whose answers were never read (the connection broke): the next
    /// reclaim names them, so the broker frees them instead of quarantining them.
    unsettled: BTreeSet<u32>,
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
                reserve: BTreeSet::new(),
                unsettled: BTreeSet::new(),
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

    /// Sends the posted releases now and waits until the broker has them (a release
    /// otherwise goes out with the next request). For a VMM that releases and then
    /// stays quiet for long, and for tests that look at the broker from elsewhere.
    pub fn flush(&mut self) -> Result<(), SourceError> {
        self.on_connection(|conn, buf| conn.flush(buf))
    }

    /// Runs `op` on the connection; with none, or when it breaks, reconnects and
    /// reclaims instead: the reclaim's list then says what the posted releases said.
    fn on_connection(
        &mut self,
        op: impl FnOnce(&mut Connection, &mut Vec<u8>) -> Result<(), FrameError>,
    ) -> Result<(), SourceError> {
        if let Some(conn) = self.conn.as_mut() {
            if op(conn, &mut self.buf).is_ok() {
                return Ok(());
            }
            self.lose_connection();
        }
        self.reconnect(Instant::now() + self.options.reconnect_for)
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
        // The reserve was never handed out: free it now rather than leave it to the
        // quarantine a goodbye with PASIDs held means.
        while let Some(pasid) = self.reserve.pop_first() {
            if self.give_back(pasid).is_err() {
                break;
            }
        }
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
                    self.lose_connection();
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
                released: self.unsettled.iter().copied().collect(),
            }),
        };
        match conn.exchange(&hello, &mut self.buf)? {
            Response::Welcome { lease, free, .. } if lease == self.lease => {
                // The broker has settled them: released, or found not the lease's.
                self.unsettled.clear();
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
        if let Some(pasid) = self.reserve.pop_first() {
            return Ok(pasid);
        }
        let mut out = Vec::new();
        self.take(1 + self.options.reserve, &mut out)?;
        // The lowest goes to the host; the rest wait in the reserve.
        self.reserve.extend(out.iter().skip(1).copied());
        Ok(out[0])
    }

    fn alloc_many(&mut self, count: u32, out: &mut Vec<u32>) -> Result<(), SourceError> {
        let from_reserve = (count as usize).min(self.reserve.len());
        out.try_reserve(count as usize)
            .map_err(|_| SourceError::OutOfMemory)?;
        let rest = count - from_reserve as u32;
        if rest > 0 {
            self.take(rest, out)?;
        }
        for _ in 0..from_reserve {
            out.push(self.reserve.pop_first().expect("counted above"));
        }
        Ok(())
    }

    fn claim(&mut self, pasid: u32) -> Result<(), SourceError> {
        if self.reserve.remove(&pasid) {
            return Ok(());
        }
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
    /// reclaim names it as released and the broker frees it.
    fn release(&mut self, pasid: u32) -> Result<(), SourceError> {
        if !self.held.contains(&pasid) || self.reserve.contains(&pasid) {
            return Err(SourceError::Unavailable { pasid });
        }
        // Its teardown is confirmed, so this lease may hand it out again itself.
        if (self.reserve.len() as u32) < self.options.reserve {
            self.reserve.insert(pasid);
            return Ok(());
        }
        self.give_back(pasid)
    }

    fn free_count(&self) -> u32 {
        self.free + self.reserve.len() as u32
    }
}

impl BrokerSource {
    /// Releases a held PASID at the broker. The release is posted: it goes out with
    /// the next request (or [`BrokerSource::flush`], or the goodbye), and nothing
    /// waits for its answer. Nothing needs to: the PASID left this lease's list
    /// first, and whether the broker gets the release or the connection breaks first
    /// (the reclaim then names every release whose answer was not read, and the
    /// broker frees those it still gives this lease), it is never this lease's again.
    /// Until the broker has it, the PASID stays out of everyone's reach (this lease's
    /// at the broker, no longer the host's); if the VMM dies first, it goes through
    /// quarantine. So a release costs neither a round trip nor a system call.
    fn give_back(&mut self, pasid: u32) -> Result<(), SourceError> {
        self.held.remove(&pasid);
        // `free` stays as the last answer said until the next one.
        if let Some(conn) = self.conn.as_mut() {
            if conn.post_release(pasid, &mut self.buf).is_ok() {
                return Ok(());
            }
            self.lose_connection();
        }
        // Not queued on a live connection: the reclaim says it was released.
        self.unsettled.insert(pasid);
        self.reconnect(Instant::now() + self.options.reconnect_for)
    }

    /// Drops a broken connection. The releases it had not had answered may not have
    /// reached the broker: they are owed to the next reclaim.
    fn lose_connection(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.unsettled.extend(conn.posted);
        }
    }
}

// A VMM moves its host (and so its source) between threads.
const _: fn() = || {
    fn assert_send<T: Send>() {}
    assert_send::<BrokerSource>();
};
