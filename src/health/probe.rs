//! Probe tasks: one per backend, feeding its state machine with what the warm-up path
//! answers, and ticking slow start and ejection along.

use std::sync::{Arc, Weak};
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

use super::{Backend, Event};
use crate::config::Warmup;

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
    match timeout(w.timeout, probe_once(b, &w.path)).await {
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
) -> Result<Event, Box<dyn std::error::Error + Send + Sync>> {
    let stream = TcpStream::connect(b.addr).await?;
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut send, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(io).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let host = b.host.clone().unwrap_or_else(|| b.addr.to_string());
    let req = http::Request::get(path)
        .header(http::header::HOST, host)
        .header(http::header::CONNECTION, "close")
        .header(http::header::USER_AGENT, "cutover-probe")
        .body(Empty::new())?;
    let resp = send.send_request(req).await?;
    if !resp.status().is_success() {
        return Ok(Event::ProbeFailed);
    }
    let warmup_percent = resp
        .headers()
        .get("x-cutover-warmup")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u8>().ok())
        .map(|p| p.min(100));
    Ok(Event::ProbePassed { warmup_percent })
}
