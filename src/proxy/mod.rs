//! The hyper service that forwards one request.
//!
//! [`Proxy::handle`] reads like the request's path through cutover:
//! 1. check the request itself (method, host, declared body size);
//! 2. find its route in the live snapshot;
//! 3. pick a pool (override, then sticky key, then weight);
//! 4. rewrite the head for the backend;
//! 5. forward it, trying another backend when the first attempt failed retryably;
//! 6. send the backend's response back (or tunnel an upgrade), and record the outcome.

mod body;
mod error;
pub mod fields;
mod forward;
pub mod headers;
mod reply;
mod upgrade;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use http::{HeaderValue, Method, Request, Version};

pub use body::{ClientBody, ProxyBody, UpstreamRequestBody};
pub use error::ProxyError;
pub use reply::Reply;
pub use upstream::ConnPool;

use crate::config::KeySource;
use crate::metrics::{self, access_log, Outcome};
use crate::routing::{PickKeys, Snapshot};

/// The request path's view of the world: the live snapshot, swapped whole on reload.
#[derive(Debug, Clone)]
pub struct Proxy {
    live: Arc<ArcSwap<Snapshot>>,
}

/// What the proxy knows about the client connection a request came on.
#[derive(Debug, Clone)]
pub struct Client {
    pub peer: SocketAddr,
    pub tls: bool,
    /// `peer`'s IP, formatted once per connection (for `X-Forwarded-For`).
    pub ip: HeaderValue,
}

impl Proxy {
    pub fn new(live: Arc<ArcSwap<Snapshot>>) -> Self {
        Proxy { live }
    }

    /// Answers one client request; never fails: errors become proxy-made responses.
    pub async fn handle(&self, req: Request<ClientBody>, client: &Client) -> Reply {
        // One snapshot for the whole request, however long it runs.
        let snapshot = self.live.load_full();
        self.handle_on(&snapshot, req, client).await
    }

    /// The live snapshot, for a connection to hold between its requests: replaced only
    /// when a reload swapped it. Counting a reference to the shared snapshot on every
    /// request would make the worker threads fight over its cache line.
    pub fn refresh(&self, held: &mut Arc<Snapshot>) {
        if !Arc::ptr_eq(held, &self.live.load()) {
            *held = self.live.load_full();
        }
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.live.load_full()
    }

    /// [`Proxy::handle`] on a snapshot the caller holds.
    pub async fn handle_on(
        &self,
        snapshot: &Snapshot,
        req: Request<ClientBody>,
        client: &Client,
    ) -> Reply {
        let mut outcome = Outcome::new(Instant::now());
        let mut req = req;
        let request_id = headers::request_id(req.headers_mut());
        let upgrade = req.version() == Version::HTTP_11 && headers::wants_upgrade(req.headers());
        let log_line = snapshot.config.access_log.then(|| access_log::RequestLine {
            client: client.peer,
            method: req.method().clone(),
            host: request_host(&req),
            path: req
                .uri()
                .path_and_query()
                .map_or("/", |pq| pq.as_str())
                .to_owned(),
        });
        let mut reply = match route_and_forward(snapshot, req, client, &mut outcome).await {
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
        metrics::record(&outcome);
        if let Some(line) = &log_line {
            let length = http_body::Body::size_hint(&reply.body).exact();
            access_log::write(&outcome, line, length, request_id.to_str().ok());
        }
        reply.request_id = Some(request_id);
        reply
    }
}

async fn route_and_forward<'s>(
    snapshot: &'s Snapshot,
    req: Request<ClientBody>,
    client: &Client,
    outcome: &mut Outcome<'s>,
) -> Result<Reply, ProxyError> {
    let limits = &snapshot.config.limits;
    // 1. The request itself.
    check_request(&req, limits.max_body_bytes)?;
    let host = request_host(&req);
    // 2. Route.
    let route = snapshot
        .route(
            host.as_ref().and_then(|h| h.to_str().ok()),
            req.uri().path(),
        )
        .ok_or(ProxyError::NoRoute)?;
    outcome.route = Some(&route.name);
    // 3. Pool.
    let keys = PickKeys {
        override_pool: route
            .override_source()
            .and_then(|s| key_value(s, &req, client)),
        sticky: route
            .sticky()
            .and_then(|s| key_value(s, &req, client))
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
            return Err(ProxyError::NoReadyBackend);
        }
    };
    // 4. The head the backend gets.
    let (mut parts, body) = req.into_parts();
    let upgrade = parts.version == Version::HTTP_11 && headers::wants_upgrade(&parts.headers);
    let client_upgrade = upgrade
        .then(|| parts.extensions.remove::<hyper::upgrade::OnUpgrade>())
        .flatten();
    headers::strip_hop_by_hop(&mut parts.headers, upgrade);
    if upgrade {
        headers::drop_h2c(&mut parts.headers);
    }
    if parts.version == Version::HTTP_2 {
        // HTTP/2 may split cookies into several fields; HTTP/1.1 wants one (RFC 9113 8.2.3).
        headers::join_cookies(&mut parts.headers);
    }
    headers::set_forwarded(
        &mut parts.headers,
        &client.ip,
        if client.tls { "https" } else { "http" },
        host.clone(),
    );
    if !parts.headers.contains_key(http::header::HOST) {
        if let Some(h) = host {
            parts.headers.insert(http::header::HOST, h);
        }
    } else if parts.uri.authority().is_some() {
        // Absolute form: the authority is the host (RFC 9112 3.2.2).
        if let Some(h) = host {
            parts.headers.insert(http::header::HOST, h);
        }
    }
    let body = UpstreamRequestBody::new(body, limits.max_body_bytes, limits.idle_timeout);
    // 5. Forward.
    let answer = forward::forward(snapshot, route, pool, overridden, parts, body, outcome).await?;
    // 6. Respond.
    let reply = match client_upgrade {
        Some(on_client) if answer.head.status == http::StatusCode::SWITCHING_PROTOCOLS => {
            upgrade::tunnel(on_client, answer)
        }
        // A switch nobody asked for: the backend connection now speaks something else,
        // and the client must not take a 101 as an answer.
        _ if answer.head.status == http::StatusCode::SWITCHING_PROTOCOLS => {
            return Err(ProxyError::BadUpstreamResponse(
                upstream::UpstreamError::Malformed("101 to a request that asked for no switch"),
            ));
        }
        _ => answer.into_reply(),
    };
    Ok(reply)
}

/// Refuses what must never be forwarded, before any routing work.
fn check_request(req: &Request<ClientBody>, max_body: Option<u64>) -> Result<(), ProxyError> {
    if req.method() == Method::CONNECT {
        return Err(ProxyError::BadRequest(
            "CONNECT is not supported: cutover is not a forward proxy",
        ));
    }
    if req.version() == Version::HTTP_11
        && req.uri().authority().is_none()
        && !req.headers().contains_key(http::header::HOST)
    {
        return Err(ProxyError::BadRequest("HTTP/1.1 request without Host"));
    }
    if let (Some(limit), Some(len)) = (max_body, declared_length(req)) {
        if len > limit {
            return Err(ProxyError::BodyTooLarge);
        }
    }
    Ok(())
}

fn declared_length(req: &Request<ClientBody>) -> Option<u64> {
    req.headers()
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The host the client asked for: the authority of an absolute-form (or HTTP/2)
/// request, else the Host header. Kept as sent, port included.
fn request_host(req: &Request<ClientBody>) -> Option<HeaderValue> {
    if let Some(a) = req.uri().authority() {
        return HeaderValue::from_str(a.as_str()).ok();
    }
    req.headers().get(http::header::HOST).cloned()
}

/// The value a route reads from the request for `sticky` or `override`.
fn key_value<'r>(
    source: &KeySource,
    req: &'r Request<ClientBody>,
    client: &'r Client,
) -> Option<&'r str> {
    let v = match source {
        KeySource::Header(name) => req.headers().get(name)?.to_str().ok()?,
        KeySource::Cookie(name) => headers::cookie(req.headers(), name)?,
        KeySource::ClientIp => client.ip.to_str().ok()?,
    };
    (!v.is_empty()).then_some(v)
}
