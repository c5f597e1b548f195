//! What one request came to, in one place: the seam where Prometheus series and the
//! access log attach.
//!
//! The proxy fills an [`Outcome`] as the request goes and hands it to [`record`] once
//! the response head is ready to leave.

pub(crate) mod access_log;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The route/pool label for a request that matched nothing.
pub(crate) const NONE: &str = "none";

/// Everything known about one request when its response head leaves. Names are
/// borrowed from the request's snapshot: counting references to shared names on every
/// request would make the worker threads fight over their cache lines.
#[derive(Debug)]
pub struct Outcome<'s> {
    pub started: Instant,
    pub route: Option<&'s str>,
    pub pool: Option<&'s str>,
    /// The backend that answered (or the last one tried).
    pub backend: Option<SocketAddr>,
    pub status: u16,
    /// `x-cutover-error` kind when the proxy answered itself.
    pub error: Option<&'static str>,
    /// Request sent to the backend -> its response head.
    pub upstream: Option<Duration>,
    /// Backends tried, the successful one included.
    pub(crate) attempts: u32,
}

impl Outcome<'_> {
    pub fn new(started: Instant) -> Self {
        Outcome {
            started,
            route: None,
            pool: None,
            backend: None,
            status: 0,
            error: None,
            upstream: None,
            attempts: 0,
        }
    }
}

/// Records one finished request. Today it only traces; metrics and the access log
/// build on this call.
pub fn record(o: &Outcome) {
    tracing::trace!(
        route = o.route.unwrap_or(NONE),
        pool = o.pool.unwrap_or(NONE),
        status = o.status,
        error = o.error,
        elapsed_us = o.started.elapsed().as_micros() as u64,
        "request"
    );
}
