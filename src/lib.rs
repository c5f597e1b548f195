//! cutover: an HTTP reverse proxy that moves traffic between two environments by
//! weight, live, keeping cold backends out of rotation until they are warm.
//!
//! Modules: [`config`] (schema, validation, loading) · [`routing`] (the snapshot a
//! reload swaps) · [`balance`] (pool and backend picks) · [`health`] (warm-up, slow
//! start, ejection) · [`proxy`] (the service that forwards one request, and the
//! HTTP/1.1 client for backends) · [`server`] (listeners, cutover's own HTTP/1 server
//! for plain requests, hyper behind the framing guard for the rest, idle parking,
//! shutdown) · [`worker`] (which worker thread runs, counts kept per worker) ·
//! [`reload`] (SIGHUP) · [`admin`] (health endpoints) · [`metrics`] (the
//! per-request outcome seam) · [`cli`].
//!
//! The path of one request:
//! 1. [`server`] accepts the connection. A head without a body is parsed once, under
//!    the framing guard's rules, by cutover's own HTTP/1 server; anything else (a
//!    body, an upgrade, HTTP/2, a head to refuse) goes to hyper, behind the guard
//!    that checks each head (framing, size, slow-loris) before hyper parses it.
//! 2. [`proxy::Proxy::handle`] loads the live [`routing::Snapshot`] once. Either
//!    server's request is read through [`proxy::Incoming`]: the plain server's stays
//!    the head's bytes ([`proxy::RawRequest`]), hyper's is its `Request`.
//! 3. The snapshot's route table finds the route by host, then path prefix.
//! 4. The route picks a pool ([`balance`]: override, sticky rendezvous, or weight).
//! 5. The pool picks a backend by effective weight, which [`health`] keeps current.
//! 6. [`proxy`] forwards over a pooled keep-alive connection, driven from the request's
//!    own task, retrying elsewhere when allowed; hands back a [`proxy::Reply`] whose
//!    fields stay as the backend sent them until a server writes them; records the
//!    outcome ([`metrics`]).

#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod balance;
pub mod cli;
pub mod config;
pub mod health;
pub mod http1;
pub mod metrics;
pub mod proxy;
pub mod reload;
pub mod routing;
pub mod server;
pub mod upstream;
pub mod worker;
