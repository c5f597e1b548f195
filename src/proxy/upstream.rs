//! Keep-alive HTTP/1.1 connections to backends.
//!
//! Each backend keeps its own idle list. A connection is checked out before the request
//! is handed over, so a failed connect leaves the request (and its body) in the
//! caller's hands for a retry elsewhere; it goes back to the list only once its
//! response body has been read to the end, so a checked-out sender is always free.

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::body::UpstreamRequestBody;

/// Idle connections kept per backend; enough for a busy backend without hoarding fds.
const MAX_IDLE_CONNS: usize = 256;
/// How long an idle connection is reused when the backend does not say (with
/// `Keep-Alive: timeout=N`): below common server defaults (Node.js closes after 5 s),
/// because a request sent on a connection the backend is closing fails, and a POST
/// cannot be retried.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(4);
/// The longest an idle connection is kept, whatever the backend says.
pub const MAX_IDLE: Duration = Duration::from_secs(50);

pub type Sender = SendRequest<UpstreamRequestBody>;

/// Idle connections with the time each stops being reusable.
type IdleList = Mutex<Vec<(Sender, Instant)>>;

/// How many shards a new pool gets: one per worker thread.
static SHARDS: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    /// The worker this thread serves for; picks its shard of every pool.
    static SHARD: Cell<usize> = const { Cell::new(0) };
}

/// Sets the number of worker threads, before any backend is created.
pub fn set_shards(workers: usize) {
    SHARDS.store(workers.max(1), Ordering::Relaxed);
}

/// Marks the calling thread as worker `index`.
pub fn set_current_shard(index: usize) {
    SHARD.with(|s| s.set(index));
}

/// The idle connections of one backend, one list per worker thread: a connection is
/// driven by a task on the worker that opened it, so reusing it from that worker keeps
/// its wake-ups on one thread.
#[derive(Debug)]
pub struct ConnPool {
    idle: Box<[IdleList]>,
}

impl Default for ConnPool {
    fn default() -> Self {
        let n = SHARDS.load(Ordering::Relaxed);
        ConnPool {
            idle: (0..n).map(|_| Mutex::new(Vec::new())).collect(),
        }
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
        source: std::io::Error,
    },
    #[error("handshake with {addr}: {source}")]
    Handshake {
        addr: SocketAddr,
        #[source]
        source: hyper::Error,
    },
}

impl ConnPool {
    /// An idle connection that is still open, or a new one. The flag says whether it
    /// was reused.
    pub async fn checkout(
        &self,
        addr: SocketAddr,
        connect_timeout: Duration,
    ) -> Result<(Sender, bool), ConnectError> {
        while let Some((mut sender, expires)) = self.pop() {
            if sender.is_closed() || Instant::now() >= expires {
                continue;
            }
            // Only connections whose exchange is complete are pooled, so this wait is
            // for the driver task to notice; the bound is a safety net, not a wait.
            if sender.is_ready() {
                return Ok((sender, true));
            }
            if let Ok(Ok(())) = tokio::time::timeout(connect_timeout, sender.ready()).await {
                return Ok((sender, true));
            }
        }
        // Boxed: connecting is the rare path, and its futures would otherwise make every
        // request's state machine (moved several times per request) much larger.
        let sender = Box::pin(connect(addr, connect_timeout)).await?;
        Ok((sender, false))
    }

    /// Returns a connection whose last response is complete, reusable for `keep_for`.
    pub fn checkin(&self, sender: Sender, keep_for: Duration) {
        if sender.is_closed() || keep_for.is_zero() {
            return;
        }
        if let Ok(mut idle) = self.shard().lock() {
            if idle.len() < MAX_IDLE_CONNS {
                idle.push((sender, Instant::now() + keep_for));
            }
        }
    }

    fn pop(&self) -> Option<(Sender, Instant)> {
        self.shard().lock().ok()?.pop()
    }

    fn shard(&self) -> &IdleList {
        let i = SHARD.with(Cell::get) % self.idle.len();
        &self.idle[i]
    }
}

/// A new keep-alive connection, its driver task spawned.
async fn connect(addr: SocketAddr, connect_timeout: Duration) -> Result<Sender, ConnectError> {
    let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
        Err(_) => return Err(ConnectError::Timeout(addr)),
        Ok(Err(source)) => return Err(ConnectError::Io { addr, source }),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::Builder::new()
        // Read-ahead from a backend is bounded as on the client side (see server).
        .max_buf_size(64 * 1024)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|source| ConnectError::Handshake { addr, source })?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(backend = %addr, error = %e, "upstream connection ended");
        }
    });
    Ok(sender)
}
