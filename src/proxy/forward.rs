//! Step 5 of a request: pick a backend, send, and retry elsewhere when the rules allow.
//!
//! Retry rules (DESIGN "Precise rules"): any request is tried again when the connection
//! failed before a byte of it was written; an idempotent request without a body also
//! when the connection failed before a byte of the response arrived. A request whose
//! body reached a backend is never replayed.

use std::future::poll_fn;
use std::task::Poll;
use std::time::Duration;

use smallvec::SmallVec;
use tokio::time::Instant;

use http::Method;

use super::body::ProxyBody;
use super::error::ProxyError;
use super::reply::Reply;
use crate::http1::hop;
use crate::metrics::{Failure, Outcome};
use crate::routing::{Route, Snapshot};
use crate::upstream::{
    self, Exchange, Head, InFlight, Outgoing, UpstreamBody, UpstreamError, UpstreamRequestBody,
};

/// A backend's response head, with the exchange its body comes from.
#[derive(Debug)]
pub(super) struct Answer {
    pub head: Head,
    pub exchange: Exchange,
    pub in_flight: InFlight,
    /// When the head arrived.
    pub head_at: Instant,
}

pub(super) async fn forward<'s>(
    snapshot: &Snapshot,
    route: &'s Route,
    first_pool: usize,
    overridden: bool,
    head: Outgoing,
    body: UpstreamRequestBody,
    outcome: &mut Outcome<'s>,
) -> Result<Answer, ProxyError> {
    let limits = &snapshot.config.limits;
    let replayable = limits.retries > 0 && is_idempotent(&head.method) && body.is_empty();
    let mut request_body = Some(body);

    let mut pool_i = first_pool;
    let mut tried_pools: Vec<usize> = Vec::new();
    // Inline for the few backends one request tries: no allocation per request.
    let mut tried: SmallVec<[usize; 4]> = SmallVec::new();
    let mut attempts_left = limits.retries.saturating_add(1);
    let mut last_error = ProxyError::NoReadyBackend;
    loop {
        let Some(body) = request_body.take() else {
            return Err(last_error);
        };
        if attempts_left == 0 {
            return Err(last_error);
        }
        let (pool, _) = &route.split[pool_i];
        let Some(member) = pool.backends.pick(rand::random::<f64>(), &tried) else {
            // This pool has nothing left to try: move on by fallback, if allowed.
            tried_pools.push(pool_i);
            // A tester who named a pool must see that pool's truth, never another's.
            let next = if overridden {
                None
            } else {
                route.fallback_pool(&tried_pools, &mut rand::rng())
            };
            match next {
                Some(next) => {
                    pool_i = next;
                    tried.clear();
                    request_body = Some(body);
                    continue;
                }
                None => return Err(last_error),
            }
        };
        // The first attempt goes out at the request's start: one clock reading less
        // per request. A retry may come seconds later, and reads the clock again.
        let now = if outcome.attempts == 0 {
            Instant::from_std(outcome.started)
        } else {
            Instant::now()
        };
        attempts_left -= 1;
        tried.push(member);
        outcome.attempts += 1;
        let backend = &pool.backends.members()[member].backend;
        outcome.pool = Some(&pool.name);
        outcome.series = Some(route.series(Some(pool_i)));
        outcome.backend = Some(backend.addr);
        let in_flight = backend.conns.start();

        // A request that cannot be replayed has one chance: its connection must not be
        // one the backend closed a moment ago.
        let (conn, now) = match in_flight.idle(now, !replayable) {
            Some(conn) => (Ok(conn), now),
            None => {
                let conn = backend.conns.connect(backend.addr, limits.connect_timeout);
                // The backend's time starts once connected.
                (conn.await, Instant::now())
            }
        };
        let conn = match conn {
            Ok(conn) => conn,
            Err(e) => {
                backend.stats.count(Failure::ConnectError as u16);
                tracing::warn!(pool = %pool.name, backend = %backend.addr, error = %e, "connect failed");
                backend.report_failure(pool.backends.may_eject(pool.config.eject.max_percent));
                last_error = ProxyError::ConnectFailed(e);
                request_body = Some(body);
                continue;
            }
        };
        let has_body = !body.is_empty();
        let mut exchange = Exchange::new(conn, &head, backend.authority.as_str(), body);
        // Without a body the request is sent as soon as it is written: its response
        // clock can start now.
        let sent = (!has_body).then_some(now);
        // A request whose clock starts here is counted as waiting for its head, so that
        // autopilot sees a backend turn slow before its slow answers come. One with a
        // body is not: its upload is the client's time.
        let awaiting = (!has_body).then(|| in_flight.awaiting_head());
        let (result, sent) = head_within(limits.response_timeout, sent, &mut exchange).await;
        drop(awaiting);
        let head_at = Instant::now();
        // The backend's time: from the request sent whole, as its deadline counts it (a
        // slow upload is the client's time, not the backend's).
        let took = head_at.saturating_duration_since(sent.unwrap_or(now));
        outcome.upstream = Some(took);
        let e = match result {
            Some(Ok(head)) => {
                backend.stats.observe(head.status.as_u16(), took);
                outcome.answered = Some(head_at.into_std());
                backend.report_success();
                return Ok(Answer {
                    head,
                    exchange,
                    in_flight,
                    head_at,
                });
            }
            None => {
                backend.stats.observe(Failure::Timeout as u16, took);
                backend.report_failure(pool.backends.may_eject(pool.config.eject.max_percent));
                return Err(ProxyError::UpstreamTimeout);
            }
            Some(Err(UpstreamError::Body(e))) => return Err(ProxyError::from_body(e)),
            Some(Err(e)) => e,
        };
        if let UpstreamError::NotSent(error) = &e {
            // Not a byte of the request went out: safe anywhere.
            tracing::debug!(backend = %backend.addr, %error, "request not sent, retrying");
            request_body = exchange.into_unsent_body();
            last_error = ProxyError::UpstreamReset(e);
            continue;
        }
        let answered = e.answered();
        let failure = match e {
            UpstreamError::Malformed(_) => Failure::BadResponse,
            _ => Failure::Reset,
        };
        backend.stats.observe(failure as u16, took);
        let err = ProxyError::from_upstream(e);
        tracing::warn!(pool = %pool.name, backend = %backend.addr, error = %err, "upstream failed");
        backend.report_failure(pool.backends.may_eject(pool.config.eject.max_percent));
        if replayable && !answered && matches!(err, ProxyError::UpstreamReset(_)) {
            request_body = Some(UpstreamRequestBody::Empty);
            last_error = err;
            continue;
        }
        return Err(err);
    }
}

/// Waits for the response head, giving the backend `limit` from the moment the request
/// has been sent whole (`sent`, when already known): the time a client takes to upload
/// its body is not the backend's. (A stalled upload is cut by the body's own idle
/// clock.) `None` when time ran out; beside it, when the request had been sent whole
/// (unknown when the head came before the body was all out).
async fn head_within(
    limit: Duration,
    mut sent: Option<Instant>,
    exchange: &mut Exchange,
) -> (Option<Result<Head, UpstreamError>>, Option<Instant>) {
    let mut armed = false;
    let result = poll_fn(|cx| {
        if let Poll::Ready(head) = exchange.poll_head(cx) {
            return Poll::Ready(Some(head));
        }
        if !armed {
            if !exchange.request_sent() {
                return Poll::Pending;
            }
            let at = *sent.get_or_insert_with(Instant::now);
            exchange.set_response_deadline(at + limit);
            armed = true;
        }
        exchange.poll_response_clock(cx).map(|()| None)
    })
    .await;
    (result, sent)
}

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    )
}

impl Answer {
    /// The answer as the client gets it: hop-by-hop fields gone, body streaming.
    pub(super) fn into_reply(self) -> Reply {
        let Head {
            status,
            mut fields,
            idle_for,
            names_more,
            ..
        } = self.head;
        let keep_for = idle_for.map_or(upstream::DEFAULT_IDLE, |t| {
            t.saturating_sub(Duration::from_secs(1))
                .min(upstream::MAX_IDLE)
        });
        // Counted from the head's arrival rather than the body's end: a little early
        // for a long body, which is the safe side, and no clock reading per request.
        let reusable_until = (!keep_for.is_zero()).then(|| self.head_at + keep_for);
        if names_more {
            hop::strip_connection_named(&mut fields);
        }
        let body = UpstreamBody::new(self.exchange, self.in_flight, reusable_until);
        Reply::new(status, fields, ProxyBody::Upstream(body))
    }
}
