//! cutover: an HTTP reverse proxy that moves traffic between two environments by
//! weight, live, keeping cold backends out of rotation until they are warm.
//!
//! Modules, each owning one thing:
//! [`app`] (start-up and shutdown) · [`state`] (what the running parts share) ·
//! [`config`] (schema, validation, loading) ·
//! [`routing`] (the snapshot a reload swaps: routes, pools, pickers) ·
//! [`balance`] (pool and backend picks) ·
//! [`health`] (warm-up, slow start, ejection; the registry that outlives reloads) ·
//! [`discovery`] (backend names looked up again; a changed answer rebuilds the snapshot) ·
//! [`autopilot`] (a route's ramp: its state machine, its windows, local or from the
//! fleet's Prometheus, and the task that raises or rolls back the pool's share) ·
//! [`server`] (listeners and client connections: PROXY protocol, TLS handshakes,
//! cutover's own HTTP/1 server, hyper behind the framing guard, idle parking, HTTP/2
//! limits, draining) · [`tls`] (certificates, the SNI pick, the rustls config) ·
//! [`http1`] (the HTTP/1 wire format both ends share: fields, framing, hop-by-hop,
//! Host) ·
//! [`proxy`] (the service that forwards one request: checks, route, pool, the head the
//! backend gets, retries, the answer) ·
//! [`upstream`] (the HTTP/1.1 client for backends: pooled connections, one exchange,
//! the bodies it carries) ·
//! [`reload`] (the one task that swaps configs, and the file watcher that asks it) ·
//! [`admin`] (`/metrics`, `/status`, health endpoints; the sampler of the last minute) ·
//! [`metrics`] (the per-request outcome seam, the lock-free series, the exposition's
//! families, the access log) · [`status`] (the `/status` document, for both ends) ·
//! [`worker`] (which worker thread runs; per-worker counts) ·
//! [`api_client`] (a plain-HTTP GET of a small API: the admin's `/status`,
//! Prometheus) ·
//! [`cli`] (`run`, `check`, `demo`; `status` reads `/status` back as a table; `shift`
//! edits a split in the file; `import nginx`) · [`import`] (an nginx config read and
//! mapped onto cutover's).
//!
//! The path of one request:
//! 1. [`server`] accepts the connection. A head without a body is parsed once, under
//!    [`http1::framing`]'s rules, by cutover's own HTTP/1 server; anything else (a
//!    body, an upgrade, HTTP/2, a head to refuse) goes to hyper, behind the guard that
//!    checks each head (framing, size, slow-loris) before hyper parses it.
//! 2. The proxy service loads the live [`routing::Snapshot`] once and reads the request
//!    the same way whichever server parsed it: the plain server's stays the head's
//!    bytes, hyper's is its `Request`.
//! 3. It refuses what must never be forwarded (an invalid Host, CONNECT, a body over
//!    the limit), then the snapshot's route table finds the route by host, then path.
//! 4. The route picks a pool ([`balance`]: override, sticky rendezvous, or weight).
//! 5. The proxy's one head writer turns the request into the head the backend gets.
//! 6. The pool picks a backend by effective weight, which [`health`] keeps current;
//!    [`upstream`] sends the request over a pooled keep-alive connection from the
//!    request's own task, and the proxy retries elsewhere when the rules allow.
//! 7. The answer goes back through the server that has the client (its fields by one
//!    rule, [`proxy::Reply::fields_out`]), and the outcome is recorded in the
//!    route and pool's series ([`metrics`]), which `/metrics` and `/status` read.
//!
//! Where to change what:
//! - a header rule toward the backend: `proxy/head.rs` (the one writer); toward the
//!   client: [`proxy::Reply::fields_out`]; what counts as hop-by-hop:
//!   [`http1::hop`]; what a Host may be: [`http1::host`].
//! - what the proxy answers itself, and with which status: `proxy/error.rs`.
//! - HTTP/1 parsing and framing: [`http1::framing`] (the guard and the plain server
//!   both follow it), and its smuggling tests in `tests/smuggling.rs`,
//!   `tests/desync.rs` and `server/props.rs`.
//! - a metric: [`metrics::record`] is handed every request's outcome, and each backend
//!   attempt is counted in `proxy/forward.rs`; which series a request counts in is
//!   fixed when [`routing::Snapshot::build`] runs; a family's name, type and help are
//!   in `metrics/exposition.rs`, and `admin/metrics.rs` walks the snapshot to fill it.
//! - an admin endpoint: [`admin`].
//! - a config key: `config/raw.rs` (the file's shape), `config/validate.rs` (its
//!   checks and defaults), then the domain type in [`config`].
//! - what a reload does: [`reload`]; when the file counts as changed: `reload/watch.rs`
//!   and the content hash in [`reload`]; what is kept across one: [`health::Registry`]
//!   (a kept backend takes its pool's new settings in [`routing::Snapshot::build`]).
//! - how a ramp advances or rolls back: `autopilot/machine.rs` (pure, unit-tested);
//!   what it reads: `autopilot/local.rs` and `autopilot/prometheus.rs`; where its share
//!   enters the pool pick: [`routing`]'s `effective_split`.
//! - start-up and shutdown order: [`app`].

#![forbid(unsafe_code)]

// The library's surface is what `main.rs`, `tests/` and `bench/` use: start-up, the
// config, the routing snapshot and its picks, health, metrics and reload. The rest is
// the proxy's insides.
mod admin;
mod api_client;
pub mod app;
mod autopilot;
pub mod balance;
pub mod cli;
pub mod config;
mod discovery;
pub mod health;
mod http1;
pub mod import;
pub mod metrics;
mod proxy;
pub mod reload;
pub mod routing;
mod server;
mod state;
pub mod status;
mod sync;
mod tls;
mod upstream;
mod worker;
