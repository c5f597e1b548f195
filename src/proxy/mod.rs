//! The service that forwards one request, whichever server parsed it.
//!
//! [`Proxy::handle`] reads like the request's path through cutover:
//! 1. check the request itself (method, host, declared body size);
//! 2. find its route in the live snapshot;
//! 3. pick a pool (override, then sticky key, then weight);
//! 4. rewrite the head for the backend;
//! 5. forward it, trying another backend when the first attempt failed retryably;
//! 6. send the backend's response back (or tunnel an upgrade), and record the outcome.

mod body;
mod client;
mod error;
mod forward;
mod head;
mod headers;
mod incoming;
mod reply;
mod upgrade;

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use http::{HeaderValue, Method, Request, Version};

pub(crate) use body::ProxyBody;
pub(crate) use client::Client;
pub(crate) use error::ProxyError;
pub(crate) use incoming::{Incoming, RawRequest, Sent};
pub(crate) use reply::Reply;

use crate::config::{KeySource, Limits};
use crate::http1::{fields, host};
use crate::metrics::{self, access_log, Outcome};
use crate::routing::{PickKeys, Snapshot};
use headers::RequestId;

/// The request path's view of the world: the live snapshot, swapped whole on reload.
#[derive(Debug, Clone)]
pub(crate) struct Proxy {
    live: Arc<ArcSwap<Snapshot>>,
}

impl Proxy {
    pub(crate) fn new(live: Arc<ArcSwap<Snapshot>>) -> Self {
        Proxy { live }
    }

    /// Answers one client request; never fails: errors become proxy-made responses.
    pub(crate) async fn handle(
        &self,
        req: Request<hyper::body::Incoming>,
        client: &Client,
    ) -> Reply {
        // One snapshot for the whole request, however long it runs.
        let snapshot = self.live.load_full();
        self.handle_on(&snapshot, req, client).await
    }

    /// The live snapshot, for a connection to hold between its requests: replaced only
    /// when a reload swapped it. Counting a reference to the shared snapshot on every
    /// request would make the worker threads fight over its cache line.
    pub(crate) fn refresh(&self, held: &mut Arc<Snapshot>) {
        if !Arc::ptr_eq(held, &self.live.load()) {
            *held = self.live.load_full();
        }
    }

    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.live.load_full()
    }

    /// [`Proxy::handle`] on a snapshot the caller holds, for a request either server
    /// parsed.
    pub(crate) async fn handle_on(
        &self,
        snapshot: &Snapshot,
        req: impl Incoming,
        client: &Client,
    ) -> Reply {
        let mut outcome = Outcome::new(Instant::now());
        outcome.series = Some(&snapshot.unrouted);
        let request_id = req.request_id();
        let upgrade = req.wants_upgrade();
        let forwarded_for = client.forwarded_for(&req);
        let log_line = snapshot.config.access_log.then(|| access_log::RequestLine {
            client: forwarded_for.unwrap_or(client.peer.ip()),
            method: req.method().clone(),
            host: req.host().and_then(|h| HeaderValue::from_bytes(h).ok()),
            path: req
                .uri()
                .path_and_query()
                .map_or("/", |pq| pq.as_str())
                .to_owned(),
        });
        // The sticky key of `sticky = "ip"`, when the request names its client.
        let believed = forwarded_for.map(|ip| ip.to_string());
        let from = Who {
            client,
            ip: believed.as_deref(),
        };
        let result = route_and_forward(snapshot, req, &from, &request_id, &mut outcome).await;
        let mut reply = match result {
            Ok(reply) => reply,
            Err(e) => {
                outcome.error = Some(e.kind());
                e.reply()
            }
        };
        outcome.status = reply.status.as_u16();
        if upgrade && reply.status != http::StatusCode::SWITCHING_PROTOCOLS {
            // A refused switch: close after this answer, so that the framing guard (which
            // stopped checking at the upgrade request) never sees another request here.
            reply.close = true;
        }
        metrics::record(&mut outcome);
        if let Some(line) = &log_line {
            let length = http_body::Body::size_hint(&reply.body).exact();
            access_log::write(&outcome, line, length, Some(request_id.as_str()));
        }
        reply.request_id = Some(request_id);
        reply
    }
}

/// The client of one request: its connection's, and the address a trusted proxy named.
struct Who<'a> {
    client: &'a Client,
    ip: Option<&'a str>,
}

async fn route_and_forward<'s>(
    snapshot: &'s Snapshot,
    req: impl Incoming,
    who: &Who<'_>,
    request_id: &RequestId,
    outcome: &mut Outcome<'s>,
) -> Result<Reply, ProxyError> {
    let limits = &snapshot.config.limits;
    // 1. The request itself.
    check_request(&req, limits)?;
    // 2. Route.
    let host = if snapshot.routes_by_host() {
        req.host().and_then(fields::visible_str)
    } else {
        None
    };
    let route = snapshot
        .route(host, req.uri().path())
        .ok_or(ProxyError::NoRoute)?;
    outcome.route = Some(&route.name);
    outcome.series = Some(route.series(None));
    // 3. Pool.
    let keys = PickKeys {
        override_pool: route
            .override_source()
            .and_then(|s| key_value(s, &req, who)),
        sticky: route
            .sticky()
            .and_then(|s| key_value(s, &req, who))
            .map(str::as_bytes),
    };
    let overridden = keys
        .override_pool
        .is_some_and(|name| route.split.iter().any(|(p, _)| &*p.name == name));
    let pool = route.pick_pool(&keys, &mut rand::rng());
    let pool = match pool {
        Ok(i) => i,
        Err(none) => {
            outcome.pool = none.pool.map(|i| &*route.split[i].0.name);
            outcome.series = Some(route.series(none.pool));
            return Err(ProxyError::NoReadyBackend);
        }
    };
    // 4. The head the backend gets.
    let up = incoming::into_upstream(req, who.client, request_id, limits)?;
    // 5. Forward.
    let answer =
        forward::forward(snapshot, route, pool, overridden, up.head, up.body, outcome).await?;
    // 6. Respond.
    let reply = match up.on_upgrade {
        Some(on_client) if answer.head.status == http::StatusCode::SWITCHING_PROTOCOLS => {
            upgrade::tunnel(on_client, answer)
        }
        // A switch nobody asked for: the backend connection now speaks something else,
        // and the client must not take a 101 as an answer.
        _ if answer.head.status == http::StatusCode::SWITCHING_PROTOCOLS => {
            return Err(ProxyError::BadUpstreamResponse(
                crate::upstream::UpstreamError::Malformed(
                    "101 to a request that asked for no switch",
                ),
            ));
        }
        _ => answer.into_reply(),
    };
    Ok(reply)
}

/// Refuses what must never be forwarded, before any routing work.
fn check_request(req: &impl Incoming, limits: &Limits) -> Result<(), ProxyError> {
    if req.method() == Method::CONNECT {
        return Err(ProxyError::BadRequest(
            "CONNECT is not supported: cutover is not a forward proxy",
        ));
    }
    // Origin form, or `*` for OPTIONS: an absolute-form target with a bare query
    // (`http://h?q`) or an HTTP/2 `:path` without its slash has no form a backend
    // could take.
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    if !(target.starts_with('/') || target == "*" && req.method() == Method::OPTIONS) {
        return Err(ProxyError::BadRequest("invalid request target"));
    }
    if req.version() == Version::HTTP_11
        && req.uri().authority().is_none()
        && req.field(&http::header::HOST).is_none()
    {
        return Err(ProxyError::BadRequest("HTTP/1.1 request without Host"));
    }
    // Routed on and sent on, so read the same by every server behind: one host, no
    // userinfo (RFC 9110 4.2.4 and RFC 9113 8.3.1 call it an error), no blanks, slashes
    // or commas.
    if req.host().is_some_and(|h| !host::is_valid(h)) {
        return Err(ProxyError::BadRequest("invalid Host"));
    }
    // HTTP/1 heads were measured whole by the framing guard; an HTTP/2 client's header
    // list is measured here, so that its answer carries the same `x-cutover-error`.
    if req.version() == Version::HTTP_2 && h2_head_size(req) > limits.max_header_bytes {
        return Err(ProxyError::HeadersTooLarge);
    }
    let declared = req
        .field(&http::header::CONTENT_LENGTH)
        .and_then(fields::content_length);
    if let (Some(limit), Some(len)) = (limits.max_body_bytes, declared) {
        if len > limit {
            return Err(ProxyError::BodyTooLarge);
        }
    }
    Ok(())
}

/// What an HTTP/2 request's header list would take as an HTTP/1 head: its fields, and
/// the method and target its pseudo-headers carry, as the request line would.
fn h2_head_size(req: &impl Incoming) -> usize {
    let uri = req.uri();
    let target = uri.path_and_query().map_or(1, |pq| pq.as_str().len());
    let authority = uri.authority().map_or(0, |a| a.as_str().len());
    req.shape().1 + req.method().as_str().len() + target + authority + 16
}

/// The value a route reads from the request for `sticky` or `override`.
fn key_value<'r>(source: &KeySource, req: &'r impl Incoming, who: &'r Who<'_>) -> Option<&'r str> {
    let v = match source {
        KeySource::Header(name) => fields::visible_str(req.field(name)?)?,
        KeySource::Cookie(name) => headers::cookie(req.cookies(), name)?,
        KeySource::ClientIp => match who.ip {
            Some(ip) => ip,
            None => who.client.ip.to_str().ok()?,
        },
    };
    (!v.is_empty()).then_some(v)
}
