//! Probe tasks: one per backend, feeding its state machine with what the warm-up path
//! answers, and ticking slow start and ejection along. A probe is a GET on the
//! project's own backend client, over a connection of its own.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::{timeout, Instant};

use super::{Backend, Event};
use crate::config::Warmup;
use crate::upstream::{Exchange, Outgoing, UpstreamRequestBody};

/// How often a backend without a probe re-checks slow start and ejection expiry.
const TICK: Duration = Duration::from_millis(250);

/// Starts the health task of a backend. It ends by itself once no snapshot holds the
/// backend any more.
pub(crate) fn spawn_probes(backend: &Arc<Backend>) {
    let weak = Arc::downgrade(backend);
    tokio::spawn(run(weak));
}

async fn run(backend: Weak<Backend>) {
    let mut next_probe = Instant::now();
    loop {
        let now = Instant::now();
        let warmup = {
            let Some(b) = backend.upgrade() else { return };
            // Read afresh each round: a reload may have changed the pool's probe.
            let warmup = b.warmup();
            if let Some(w) = &warmup {
                if now >= next_probe {
                    let event = probe(&b, w).await;
                    let t = Instant::now().into_std();
                    if let Some(state) = b.observe(event, t) {
                        tracing::info!(pool = %b.pool, backend = %b.addr, state = state.as_str(), "backend state changed");
                    }
                    next_probe = now + w.interval;
                }
            }
            let t = Instant::now().into_std();
            if let Some(state) = b.expire_ejection(t) {
                tracing::info!(pool = %b.pool, backend = %b.addr, state = state.as_str(), "ejection ended");
            }
            b.tick(t);
            warmup
        };
        let wake = match &warmup {
            Some(_) => next_probe.min(Instant::now() + TICK),
            None => Instant::now() + TICK,
        };
        tokio::time::sleep_until(wake).await;
    }
}

/// One GET of the warm-up path on a fresh connection: 2xx within the timeout passes.
async fn probe(b: &Backend, w: &Warmup) -> Event {
    match timeout(w.timeout, probe_once(b, &w.path, w.timeout)).await {
        Ok(Ok(event)) => event,
        Ok(Err(e)) => {
            tracing::debug!(pool = %b.pool, backend = %b.addr, error = %e, "probe failed");
            Event::ProbeFailed
        }
        Err(_) => Event::ProbeFailed,
    }
}

async fn probe_once(
    b: &Backend,
    path: &str,
    connect_within: Duration,
) -> Result<Event, Box<dyn std::error::Error + Send + Sync>> {
    // A connection of its own, never a pooled one: the probe sees the backend as a new
    // client would, and a request never waits behind a probe.
    let conn = b.conns.connect(b.addr, connect_within).await?;
    let host = b.host.as_deref().unwrap_or(b.authority.as_str());
    let mut head = bytes::BytesMut::with_capacity(128 + path.len());
    head.extend_from_slice(b"GET ");
    head.extend_from_slice(path.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    head.extend_from_slice(host.as_bytes());
    head.extend_from_slice(b"\r\nconnection: close\r\nuser-agent: cutover-probe\r\n\r\n");
    let request = Outgoing {
        method: http::Method::GET,
        head,
        chunked: false,
        host_at: None,
    };
    let mut exchange = Exchange::new(
        conn,
        &request,
        b.authority.as_str(),
        UpstreamRequestBody::Empty,
    );
    let answer = std::future::poll_fn(|cx| exchange.poll_head(cx)).await?;
    if !answer.status.is_success() {
        return Ok(Event::ProbeFailed);
    }
    let warmup_percent = answer
        .fields
        .get("x-cutover-warmup")
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse::<u8>().ok())
        .map(|p| p.min(100));
    Ok(Event::ProbePassed { warmup_percent })
}
