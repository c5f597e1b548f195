//! HTTP/2 client connections, served by hyper, with the limits hyper leaves to us.
//!
//! - **Idle**: a connection with no request in flight for `idle_timeout` gets a GOAWAY
//!   and is closed, as an idle HTTP/1 connection is; before its first request, for
//!   `client_header_timeout` if that is shorter.
//! - **Resets**: a client that opens streams and resets them before their answer
//!   (the slow form of "rapid reset", CVE-2023-44487) makes the proxy start backend
//!   work that nobody reads. hyper stops only resets that come before it accepts the
//!   stream; here every request the client abandons is counted, and past
//!   [`RESET_BUDGET`] abandoned requests, when they are at least half of all, the
//!   connection gets a GOAWAY, as Envoy does. The abandoned request's backend
//!   exchange is dropped with it, so its backend connection closes at once.
//! - **Requests**: after [`MAX_REQUESTS`] requests a connection gets a GOAWAY and the
//!   client opens a new one, as nginx's `keepalive_requests` does: no single
//!   connection lives on the budget forever.
//!
//! The GOAWAY is hyper's graceful one (NO_ERROR; hyper has no way to send
//! ENHANCE_YOUR_CALM): streams above its last stream id are refused. After the
//! request cap those below it finish as they would; after idleness or resets they get
//! [`GOAWAY_GRACE`], then the connection is closed.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::time::Instant;

use super::connection::service;
use super::guard::{ConnShared, GuardLimits};
use crate::proxy::Client;
use crate::state::Shared;

/// Requests one connection may abandon before the proxy looks at the share they are.
pub(super) const RESET_BUDGET: u32 = 100;
/// Requests served on one connection before it is asked to go away (nginx's default).
pub(super) const MAX_REQUESTS: u32 = 1000;
/// How long the streams below the last stream id of a GOAWAY sent for idleness,
/// resets or the request cap may run on.
const GOAWAY_GRACE: Duration = Duration::from_secs(1);

/// Serves an HTTP/2 connection whose protocol ALPN chose.
pub(super) async fn serve<IO>(
    io: IO,
    shared: &Arc<Shared>,
    client: Client,
    limits: GuardLimits,
    stop: watch::Receiver<Option<Duration>>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn_shared = ConnShared::new(shared.live.load().unrouted.clone());
    serve_on(io, conn_shared, shared, client, limits, stop).await;
}

/// Serves HTTP/2 on `io`, whose requests count in `conn_shared`.
pub(super) async fn serve_on<IO>(
    io: IO,
    conn_shared: Arc<ConnShared>,
    shared: &Arc<Shared>,
    client: Client,
    limits: GuardLimits,
    mut stop: watch::Receiver<Option<Duration>>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    // The proxy measures each header list against `max_header_bytes` itself, so that
    // its 431 carries `x-cutover-error`; h2 only refuses one twice that size (HPACK
    // counts 32 bytes more per field than HTTP/1 does) before it is decoded whole.
    let hard_limit = limits
        .max_head
        .saturating_mul(2)
        .max(limits.max_head + 16 * 1024);
    builder
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(hard_limit).unwrap_or(u32::MAX));
    let mut conn =
        builder.serve_connection(TokioIo::new(io), service(shared, &client, &conn_shared));
    // Before its first request a connection has the client header timeout (if the
    // shorter), as on HTTP/1: a client that opens one and sends nothing holds it no
    // longer.
    let quiet_for = |c: &ConnShared| {
        if c.requests.load(Ordering::Acquire) == 0 {
            limits.header_timeout.min(limits.idle_timeout)
        } else {
            limits.idle_timeout
        }
    };
    let idle = tokio::time::sleep_until(conn_shared.idle_since() + quiet_for(&conn_shared));
    tokio::pin!(idle);
    // Once a GOAWAY is sent for idleness or resets: closed by then at the latest.
    let mut closing: Option<Instant> = None;
    let mut going_away = false;
    let mut draining = false;
    loop {
        let close_by = closing.unwrap_or_else(far_future);
        tokio::select! {
            r = &mut conn => {
                if let Err(e) = r {
                    tracing::debug!(client = %client.peer, error = %e, "h2 connection ended with an error");
                }
                return;
            }
            _ = stop.changed(), if !draining => {
                // The drain's own grace period bounds this one.
                draining = true;
                std::pin::Pin::new(&mut conn).graceful_shutdown();
            }
            () = &mut idle, if !going_away => {
                let busy = conn_shared.in_flight.load(Ordering::Acquire) > 0;
                let due = conn_shared.idle_since() + quiet_for(&conn_shared);
                if busy || due > Instant::now() {
                    let next = if busy { Instant::now() + limits.idle_timeout } else { due };
                    idle.as_mut().reset(next);
                    continue;
                }
                tracing::debug!(client = %client.peer, "h2 connection idle; going away");
                going_away = true;
                closing = Some(Instant::now() + GOAWAY_GRACE);
                std::pin::Pin::new(&mut conn).graceful_shutdown();
            }
            () = conn_shared.goaway.notified(), if !going_away => {
                let abandoned = conn_shared.abandoned.load(Ordering::Acquire);
                let requests = conn_shared.requests.load(Ordering::Acquire);
                going_away = true;
                if requests < MAX_REQUESTS {
                    tracing::warn!(client = %client.peer, requests, abandoned, "h2 client abandons most of its requests; connection asked to go away");
                    closing = Some(Instant::now() + GOAWAY_GRACE);
                } else {
                    tracing::debug!(client = %client.peer, requests, "h2 connection reached its request cap; going away");
                }
                std::pin::Pin::new(&mut conn).graceful_shutdown();
            }
            () = tokio::time::sleep_until(close_by), if closing.is_some() => {
                tracing::debug!(client = %client.peer, "h2 connection closed after its GOAWAY grace");
                return;
            }
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86400 * 365)
}

/// Whether a connection that made `requests` requests and abandoned `abandoned` of
/// them before their answer has had enough.
pub(super) fn should_go_away(requests: u32, abandoned: u32) -> bool {
    requests >= MAX_REQUESTS || (abandoned > RESET_BUDGET && abandoned * 2 >= requests)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abandoning_most_requests_past_the_budget_ends_a_connection() {
        assert!(!should_go_away(10, 10));
        assert!(!should_go_away(RESET_BUDGET, RESET_BUDGET));
        assert!(should_go_away(RESET_BUDGET + 1, RESET_BUDGET + 1));
        // A client that cancels some of many requests (a browser leaving pages) is fine.
        assert!(!should_go_away(900, 300));
        assert!(should_go_away(MAX_REQUESTS, 0));
    }
}
