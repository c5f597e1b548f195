//! What requests came to: the per-request [`Outcome`] and its [`record`] seam, the
//! lock-free series that Prometheus and `/status` read, the last-minute windows, and
//! the access log.
//!
//! The proxy fills an [`Outcome`] as the request goes and hands it to [`record`] once
//! the response head is ready to leave; each backend attempt is counted on the
//! backend's own [`Series`] as it ends. Which series a request counts in is settled
//! when the snapshot is built (one per route and pool, one per backend), so recording
//! neither locks nor hashes a label. The admin listener reads them
//! ([`exposition`] for `/metrics`).

pub(crate) mod access_log;
pub(crate) mod exposition;
mod series;
mod window;

pub(crate) use series::{Failure, Series, BUCKETS, SLOTS};
pub use window::WINDOW;
pub(crate) use window::{Stats, TICK};

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The route/pool label for a request that matched nothing.
pub(crate) const NONE: &str = "none";

/// A weight as the outside sees it: pool capacities are kept as `f32`, whose
/// `8.899999856948853` helps nobody reading a dashboard.
pub(crate) fn tidy(weight: f64) -> f64 {
    (weight * 1e6).round() / 1e6
}

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
    /// Where the request counts: its route and pool's series, or the unrouted one.
    pub(crate) series: Option<&'s Series>,
    /// When the backend's response head arrived: the answer leaves microseconds later,
    /// so [`record`] takes this instead of reading the clock once more.
    pub(crate) answered: Option<Instant>,
    /// Set by [`record`]; an outcome dropped unrecorded was a request its client gave up.
    recorded: bool,
}

/// The code a request counts under when its client went away before the answer (a
/// connection closed, an HTTP/2 stream reset): nginx's 499, which operators know.
pub(crate) const CLIENT_CLOSED: u16 = 499;

impl Drop for Outcome<'_> {
    fn drop(&mut self) {
        if !self.recorded {
            // The request's future was dropped mid-way: still a request, and one whose
            // wait (a slow backend, often) the latency must not lose.
            self.status = CLIENT_CLOSED;
            record(self);
        }
    }
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
            series: None,
            answered: None,
            recorded: false,
        }
    }
}

/// Records one finished request in its series: its status, and the time from its
/// arrival to its response head (the backend's, or now for the proxy's own answer).
pub fn record(o: &mut Outcome) {
    o.recorded = true;
    if let Some(series) = o.series {
        let end = o.answered.unwrap_or_else(Instant::now);
        series.observe(o.status, end.saturating_duration_since(o.started));
    }
    tracing::trace!(
        route = o.route.unwrap_or(NONE),
        pool = o.pool.unwrap_or(NONE),
        status = o.status,
        error = o.error,
        elapsed_us = o.started.elapsed().as_micros() as u64,
        "request"
    );
}
