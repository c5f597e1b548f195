//! Step 5 of a request: pick a backend, send, and retry elsewhere when the rules allow.
//!
//! Retry rules (DESIGN "Precise rules"): any request is tried again when the connection
//! failed before a byte of it was written; an idempotent request without a body also
//! when the connection failed before a byte of the response arrived. A request whose
//! body reached a backend is never replayed.

use std::time::Instant;

use http::request::Parts;
use http::{HeaderMap, Method, Request, Response, Uri, Version};
use hyper::body::Incoming;

use super::body::{InFlight, ProxyBody, Sent, UpstreamBody, UpstreamRequestBody};
use super::error::ProxyError;
use super::headers;
use super::upstream::{self, Sender};
use crate::metrics::Outcome;
use crate::routing::{Route, Snapshot};

/// A backend's response head, with what must live as long as its body.
#[derive(Debug)]
pub struct Answer {
    pub response: Response<Incoming>,
    pub sender: Sender,
    pub in_flight: InFlight,
    pub request_sent: Option<std::sync::Arc<Sent>>,
}

/// Enough of a bodiless request to send it again.
struct Replay {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

pub async fn forward(
    snapshot: &Snapshot,
    route: &Route,
    first_pool: usize,
    overridden: bool,
    mut parts: Parts,
    body: UpstreamRequestBody,
    outcome: &mut Outcome,
) -> Result<Answer, ProxyError> {
    let limits = &snapshot.config.limits;
    // Backends speak origin-form HTTP/1.1 whatever the client spoke.
    parts.version = Version::HTTP_11;
    if parts.uri.authority().is_some() || parts.uri.scheme().is_some() {
        let pq = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        parts.uri =
            Uri::try_from(pq).map_err(|_| ProxyError::BadRequest("invalid request target"))?;
    }
    let replayable = limits.retries > 0 && is_idempotent(&parts.method) && body.is_empty();
    let request_sent = body.completion();
    let mut request = Some(Request::from_parts(parts, body));

    let mut pool_i = first_pool;
    let mut tried_pools: Vec<usize> = Vec::new();
    let mut tried: Vec<usize> = Vec::new();
    let mut attempts_left = limits.retries.saturating_add(1);
    let mut last_error = ProxyError::NoReadyBackend;
    loop {
        let Some(req) = request.take() else {
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
                    request = Some(req);
                    continue;
                }
                None => return Err(last_error),
            }
        };
        attempts_left -= 1;
        tried.push(member);
        outcome.attempts += 1;
        let backend = pool.backends.members()[member].backend.clone();
        outcome.pool = Some(pool.name.clone());
        outcome.backend = Some(backend.addr);
        let in_flight = InFlight::new(backend.clone());

        let mut sender = match backend
            .conns
            .checkout(backend.addr, limits.connect_timeout)
            .await
        {
            Ok((sender, _reused)) => sender,
            Err(e) => {
                tracing::warn!(pool = %pool.name, backend = %backend.addr, error = %e, "connect failed");
                backend.report_failure(pool.backends.may_eject(pool.config.eject.max_percent));
                last_error = ProxyError::ConnectFailed(e);
                request = Some(req);
                continue;
            }
        };
        let replay = replayable.then(|| Replay {
            method: req.method().clone(),
            uri: req.uri().clone(),
            headers: req.headers().clone(),
        });
        let sent = Instant::now();
        let result = respond_within(
            limits.response_timeout,
            sender.try_send_request(req),
            request_sent.as_deref(),
        )
        .await;
        outcome.upstream = Some(sent.elapsed());
        match result {
            Ok(Ok(response)) => {
                backend.report_success();
                return Ok(Answer {
                    response,
                    sender,
                    in_flight,
                    request_sent,
                });
            }
            Err(_elapsed) => {
                backend.report_failure(pool.backends.may_eject(pool.config.eject.max_percent));
                return Err(ProxyError::UpstreamTimeout);
            }
            Ok(Err(mut e)) => {
                if let Some(unsent) = e.take_message() {
                    // The connection closed before the request went out: safe anywhere.
                    tracing::debug!(backend = %backend.addr, error = %e.error(), "request not sent, retrying");
                    last_error = ProxyError::from_upstream(e.into_error());
                    request = Some(unsent);
                    continue;
                }
                let err = ProxyError::from_upstream(e.into_error());
                if matches!(err, ProxyError::BodyTooLarge | ProxyError::BadRequest(_)) {
                    // The client's fault, not the backend's.
                    return Err(err);
                }
                tracing::warn!(pool = %pool.name, backend = %backend.addr, error = %err, "upstream failed");
                backend.report_failure(pool.backends.may_eject(pool.config.eject.max_percent));
                match (replay, &err) {
                    (Some(r), ProxyError::UpstreamReset(_)) => {
                        let mut again = Request::new(UpstreamRequestBody::Empty);
                        *again.method_mut() = r.method;
                        *again.uri_mut() = r.uri;
                        *again.headers_mut() = r.headers;
                        request = Some(again);
                        last_error = err;
                    }
                    _ => return Err(err),
                }
            }
        }
    }
}

/// Waits for the response head, giving the backend `limit` from the moment the request
/// has been sent whole: the time a client takes to upload its body is not the backend's.
/// (A stalled upload is cut by the body's own idle clock.)
async fn respond_within<F: std::future::Future>(
    limit: std::time::Duration,
    exchange: F,
    body: Option<&Sent>,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    let Some(body) = body else {
        return tokio::time::timeout(limit, exchange).await;
    };
    tokio::pin!(exchange);
    tokio::select! {
        done = &mut exchange => return Ok(done),
        () = body.wait() => {}
    }
    tokio::time::timeout(limit, exchange).await
}

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    )
}

impl Answer {
    /// The response as the client gets it: hop-by-hop headers gone, body streaming.
    pub fn into_client_response(self) -> Response<ProxyBody> {
        let (mut parts, body) = self.response.into_parts();
        // Read before the hop-by-hop headers go: how long the backend keeps it open.
        let keep_for =
            headers::keep_alive_timeout(&parts.headers).map_or(upstream::DEFAULT_IDLE, |t| {
                t.saturating_sub(std::time::Duration::from_secs(1))
                    .min(upstream::MAX_IDLE)
            });
        headers::strip_hop_by_hop(&mut parts.headers, false);
        let body = ProxyBody::Upstream(UpstreamBody::new(
            body,
            self.sender,
            self.in_flight,
            self.request_sent,
            keep_for,
        ));
        Response::from_parts(parts, body)
    }
}
