//! What one connection's service and its guard share: the requests in flight and when
//! the last one ended (the idle clock), and the guard's request to park.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::metrics::Series;

/// Per-connection facts the service writes and the guard reads.
#[derive(Debug)]
pub(crate) struct ConnShared {
    /// Requests of this connection inside the service now.
    pub(crate) in_flight: AtomicUsize,
    /// When the last response left the service, as milliseconds since `opened`.
    last_done_ms: AtomicU64,
    opened: Instant,
    /// Set by the guard when the connection has been idle long enough to be parked:
    /// the connection task then ends hyper's part and keeps only the socket.
    pub(super) parking: AtomicBool,
    pub(crate) park: tokio::sync::Notify,
    /// Where the guard counts the requests it refuses itself.
    pub(crate) unrouted: Arc<Series>,
    /// Requests the service was called for, and those dropped before their answer
    /// (the client reset the stream or went away): the HTTP/2 limits read them.
    pub(crate) requests: AtomicU32,
    pub(crate) abandoned: AtomicU32,
    /// Rung when those say the connection should go away.
    pub(crate) goaway: tokio::sync::Notify,
}

impl ConnShared {
    pub(crate) fn new(unrouted: Arc<Series>) -> Arc<Self> {
        Arc::new(ConnShared {
            in_flight: AtomicUsize::new(0),
            last_done_ms: AtomicU64::new(0),
            opened: Instant::now(),
            parking: AtomicBool::new(false),
            park: tokio::sync::Notify::new(),
            unrouted,
            requests: AtomicU32::new(0),
            abandoned: AtomicU32::new(0),
            goaway: tokio::sync::Notify::new(),
        })
    }

    /// Whether the guard asked for the connection to be parked.
    pub(crate) fn parking(&self) -> bool {
        self.parking.load(Ordering::Acquire)
    }

    pub(crate) fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    /// Counts a request the service was called for; `abandoned`: one dropped before
    /// its answer. Rings `goaway` when the connection has had enough.
    pub(crate) fn count(&self, abandoned: bool, enough: impl Fn(u32, u32) -> bool) {
        let (requests, dropped) = if abandoned {
            let a = self.abandoned.fetch_add(1, Ordering::AcqRel) + 1;
            (self.requests.load(Ordering::Acquire), a)
        } else {
            let r = self.requests.fetch_add(1, Ordering::AcqRel) + 1;
            (r, self.abandoned.load(Ordering::Acquire))
        };
        if enough(requests, dropped) {
            self.goaway.notify_one();
        }
    }

    pub(crate) fn request_done(&self) {
        let ms = self.opened.elapsed().as_millis() as u64;
        self.last_done_ms.store(ms, Ordering::Release);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    pub(crate) fn idle_since(&self) -> Instant {
        self.opened + Duration::from_millis(self.last_done_ms.load(Ordering::Acquire))
    }
}
