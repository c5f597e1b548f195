//! cutover's HTTP/1.1 client for backends: keep-alive connections, and the exchange
//! of one request on one of them, driven from the request's own task.
//!
//! Each backend keeps an idle list per worker. A connection is checked out before the
//! request is written, so a failed connect leaves the request (and its body) in the
//! caller's hands for a retry elsewhere; it goes back to the list only once both the
//! request and the response have been carried whole.

mod body;
mod exchange;
mod response;

use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

pub(crate) use body::{RequestBodyError, UpstreamBody, UpstreamRequestBody};
pub(crate) use exchange::{Exchange, Outgoing};
pub(crate) use response::Head;

use crate::worker;

/// Idle connections kept per backend; enough for a busy backend without hoarding fds.
const MAX_IDLE_CONNS: usize = 256;
/// How long an idle connection is reused when the backend does not say (with
/// `Keep-Alive: timeout=N`): below common server defaults (Node.js closes after 5 s),
/// because a request sent on a connection the backend is closing fails, and a POST
/// cannot be retried.
pub(crate) const DEFAULT_IDLE: Duration = Duration::from_secs(4);
/// The longest an idle connection is kept, whatever the backend says.
pub(crate) const MAX_IDLE: Duration = Duration::from_secs(50);

/// Idle connections with the time each stops being reusable.
type IdleList = Mutex<Vec<(Box<Conn>, Instant)>>;

/// One worker's share of a backend, alone on its cache lines: its idle connections and
/// its requests in flight there. Each request writes both; shared between workers,
/// those lines would move between cores on every request.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard {
    idle: IdleList,
    in_flight: AtomicUsize,
    /// Requests sent whole and those whose response head (or failure) came since:
    /// what autopilot reads to see answers that are late before they arrive.
    sent: AtomicU64,
    headed: AtomicU64,
}

/// A connection to a backend with its buffers, which live as long as it does. Always
/// boxed: it moves from the pool into a request's exchange and on into its reply, and
/// a box made once per connection spares copying it whole at every step.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// How much the next read asks for: grows while reads come back full.
    read_size: usize,
    /// The response clock, one per connection. A timer made per request took the
    /// timer wheel's lock twice, to go in and to come out; moving one on for each
    /// request still cost a trip to the wheel. So it is moved only to an earlier
    /// deadline: set for an earlier request, it rings before `response_due`, and is
    /// then moved on to it (about once per response timeout on a busy connection).
    /// It stays armed between requests and may wake the last one's task once, for
    /// nothing: cheaper than disarming it, which would cost the next request a
    /// registration.
    response_clock: Pin<Box<Sleep>>,
    /// When the current request's response head is due.
    response_due: Instant,
}

/// The first read of a connection asks for this much; enough for a typical head and
/// small body in one go.
const FIRST_READ: usize = 8 * 1024;
/// The most one read asks for (the same bound hyper had: read-ahead stays bounded).
const MAX_READ: usize = 64 * 1024;
/// Below this much room left in the read buffer, a new one is made.
const MIN_ROOM: usize = 1024;

impl Conn {
    fn new(stream: TcpStream) -> Self {
        Conn {
            stream,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            read_size: FIRST_READ,
            // Always given a deadline before it is polled.
            response_clock: Box::pin(tokio::time::sleep(MAX_IDLE)),
            response_due: Instant::now() + MAX_IDLE,
        }
    }

    /// Sets when the response clock runs out.
    fn set_response_deadline(&mut self, deadline: Instant) {
        self.response_due = deadline;
        if deadline < self.response_clock.deadline() {
            self.response_clock.as_mut().reset(deadline);
        }
    }

    /// Ready once `response_due` has passed.
    fn poll_response_clock(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            std::task::ready!(self.response_clock.as_mut().poll(cx));
            if Instant::now() >= self.response_due {
                return Poll::Ready(());
            }
            // Set for an earlier request: on to this one's deadline.
            let due = self.response_due;
            self.response_clock.as_mut().reset(due);
        }
    }

    /// Reads what the backend has sent into the read buffer.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let room = self.rbuf.capacity() - self.rbuf.len();
        if room < MIN_ROOM {
            self.rbuf.reserve(self.read_size);
        }
        let room = self.rbuf.capacity() - self.rbuf.len();
        let n = std::task::ready!(pin!(self.stream.read_buf(&mut self.rbuf)).poll(cx))?;
        if n == room {
            self.read_size = (self.read_size * 2).min(MAX_READ);
        }
        Poll::Ready(Ok(n))
    }

    /// Whether an idle connection still looks usable: nothing has happened on it since
    /// it was pooled. Any readiness (the backend's FIN or RST, or stray bytes) makes it
    /// unusable; no readiness costs no syscall to find out. But readiness is only as
    /// fresh as the reactor's last look, so a FIN that came since goes unseen; `sure`
    /// asks the socket itself, for a request that could not be retried elsewhere.
    fn looks_open(&self, sure: bool) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            // tokio's own reads would answer from the same stale readiness without
            // asking the socket: peek at it directly.
            Poll::Pending if sure => matches!(
                socket2::SockRef::from(&self.stream).peek(&mut [MaybeUninit::uninit(); 1]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock
            ),
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            // Readiness can be stale; a read tells.
            Poll::Ready(Ok(())) => matches!(
                self.stream.try_read(&mut [0u8; 1]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock
            ),
        }
    }
}

/// The connections of one backend and the requests on them, one shard per worker
/// thread: a connection is driven by a task on the worker that used it last, so
/// reusing it from that worker keeps its wake-ups on one thread.
#[derive(Debug)]
pub struct ConnPool {
    shards: Box<[Arc<Shard>]>,
}

impl Default for ConnPool {
    fn default() -> Self {
        ConnPool {
            shards: (0..worker::count()).map(|_| Arc::default()).collect(),
        }
    }
}

/// A request on its way to a backend, counted in the backend's in-flight number until
/// dropped; its connection comes from, and goes back to, the calling worker's shard.
#[derive(Debug)]
pub struct InFlight(Arc<Shard>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why no connection could be had.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect to {0} timed out")]
    Timeout(SocketAddr),
    #[error("connect to {addr}: {source}")]
    Io {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}

/// Why an exchange with a backend failed before its response head was complete.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    #[error("the connection failed before any of the request was written: {0}")]
    NotSent(#[source] io::Error),
    #[error("the backend closed the connection")]
    Closed { answered: bool },
    #[error("{error}")]
    Io {
        #[source]
        error: io::Error,
        answered: bool,
    },
    #[error("malformed response: {0}")]
    Malformed(&'static str),
    #[error(transparent)]
    Body(RequestBodyError),
}

impl UpstreamError {
    /// Whether a byte of a response had arrived when the exchange failed.
    pub(crate) fn answered(&self) -> bool {
        match self {
            UpstreamError::Closed { answered } | UpstreamError::Io { answered, .. } => *answered,
            UpstreamError::Malformed(_) => true,
            UpstreamError::NotSent(_) | UpstreamError::Body(_) => false,
        }
    }
}

impl ConnPool {
    /// Starts a request on this backend from the calling worker.
    pub fn start(&self) -> InFlight {
        let shard = &self.shards[worker::slot(self.shards.len())];
        shard.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(shard))
    }

    /// (sent whole, answered or failed since), over all workers, since the start.
    pub(crate) fn heads(&self) -> (u64, u64) {
        self.shards.iter().fold((0, 0), |(s, h), shard| {
            (
                s.wrapping_add(shard.sent.load(Ordering::Relaxed)),
                h.wrapping_add(shard.headed.load(Ordering::Relaxed)),
            )
        })
    }

    /// Requests in flight to this backend, over all workers.
    pub fn in_flight(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.in_flight.load(Ordering::Relaxed))
            .fold(0, usize::wrapping_add)
    }

    /// A new connection.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        connect_timeout: Duration,
    ) -> Result<Box<Conn>, ConnectError> {
        // Boxed: connecting is the rare path, and its futures would otherwise make every
        // request's state machine (moved several times per request) much larger.
        Box::pin(connect(addr, connect_timeout)).await
    }
}

/// A request sent whole to a backend, until its response head, or its failure, comes.
#[derive(Debug)]
pub(crate) struct AwaitingHead<'a>(&'a Shard);

impl Drop for AwaitingHead<'_> {
    fn drop(&mut self) {
        self.0.headed.fetch_add(1, Ordering::Relaxed);
    }
}

impl InFlight {
    /// Counts the request as sent whole, waiting for its head until the guard drops.
    pub(crate) fn awaiting_head(&self) -> AwaitingHead<'_> {
        self.0.sent.fetch_add(1, Ordering::Relaxed);
        AwaitingHead(&self.0)
    }

    /// An idle connection that is still open at `now`; `sure` for a request that must
    /// not fail (it could not be retried), at the cost of a syscall. Not async: the
    /// common case, a pooled connection, then costs the request's state machine nothing.
    pub fn idle(&self, now: Instant, sure: bool) -> Option<Box<Conn>> {
        while let Some((conn, expires)) = self.pop() {
            if now < expires && conn.looks_open(sure) {
                return Some(conn);
            }
        }
        None
    }

    /// Returns a connection whose last response is complete, reusable until `expires`.
    pub fn checkin(&self, mut conn: Box<Conn>, expires: Instant) {
        // Buffers grown by a big exchange are not kept for the connection's idle life.
        if conn.wbuf.capacity() > FIRST_READ {
            conn.wbuf = BytesMut::new();
        }
        if conn.rbuf.capacity() > FIRST_READ {
            conn.rbuf = BytesMut::new();
        }
        if let Ok(mut idle) = self.0.idle.lock() {
            if idle.len() < MAX_IDLE_CONNS {
                idle.push((conn, expires));
            }
        }
    }

    fn pop(&self) -> Option<(Box<Conn>, Instant)> {
        self.0.idle.lock().ok()?.pop()
    }
}

/// A new keep-alive connection.
async fn connect(addr: SocketAddr, connect_timeout: Duration) -> Result<Box<Conn>, ConnectError> {
    let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
        Err(_) => return Err(ConnectError::Timeout(addr)),
        Ok(Err(source)) => return Err(ConnectError::Io { addr, source }),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    Ok(Box::new(Conn::new(stream)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_in_flight_until_it_is_dropped() {
        let pool = ConnPool::default();
        let first = pool.start();
        let second = pool.start();
        assert_eq!(pool.in_flight(), 2);
        drop(first);
        assert_eq!(pool.in_flight(), 1);
        drop(second);
        assert_eq!(pool.in_flight(), 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_sure_look_sees_a_close_the_reactor_has_not() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let stream = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (peer, _) = listener.accept().expect("accept");
        let conn = Conn::new(stream);
        assert!(conn.looks_open(true));
        // On loopback the FIN is in our socket once close() returns; with no await
        // since, the reactor has not seen it.
        drop(peer);
        assert!(!conn.looks_open(true));
    }
}
