//! The access log: one JSON object per request on stdout.
//!
//! Request handling only formats the line and hands it to a channel; one task writes
//! batches to stdout. When stdout cannot keep up the channel fills and lines are dropped
//! (and counted) rather than slowing requests down.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::SystemTime;

use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::Outcome;

/// Lines waiting for stdout before new ones are dropped.
const QUEUE: usize = 16 * 1024;

static WRITER: OnceLock<mpsc::Sender<Vec<u8>>> = OnceLock::new();
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// What the access log needs beyond the [`Outcome`], captured before the request is
/// taken apart.
#[derive(Debug)]
pub(crate) struct RequestLine {
    pub client: IpAddr,
    pub method: http::Method,
    pub host: Option<http::HeaderValue>,
    pub path: String,
}

#[derive(Serialize)]
struct Entry<'a> {
    ts: String,
    client: String,
    method: &'a str,
    host: Option<&'a str>,
    path: &'a str,
    status: u16,
    /// The response's declared length; `null` for a streamed body of unknown length.
    bytes_sent: Option<u64>,
    duration_ms: f64,
    route: Option<&'a str>,
    pool: Option<&'a str>,
    backend: Option<String>,
    upstream_ms: Option<f64>,
    request_id: Option<&'a str>,
    error: Option<&'a str>,
}

/// Queues the line for one request. Must be called inside the tokio runtime.
pub(crate) fn write(
    o: &Outcome,
    req: &RequestLine,
    bytes_sent: Option<u64>,
    request_id: Option<&str>,
) {
    let entry = Entry {
        ts: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        client: req.client.to_string(),
        method: req.method.as_str(),
        host: req.host.as_ref().and_then(|h| h.to_str().ok()),
        path: &req.path,
        status: o.status,
        bytes_sent,
        duration_ms: millis(o.started.elapsed()),
        route: o.route,
        pool: o.pool,
        backend: o.backend.map(|b| b.to_string()),
        upstream_ms: o.upstream.map(millis),
        request_id,
        error: o.error,
    };
    let Ok(mut line) = serde_json::to_vec(&entry) else {
        return;
    };
    line.push(b'\n');
    let tx = WRITER.get_or_init(spawn_writer);
    if tx.try_send(line).is_err() {
        let n = DROPPED.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_power_of_two() {
            tracing::warn!(
                dropped = n,
                "access log cannot keep up with stdout; lines dropped"
            );
        }
    }
}

fn millis(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn spawn_writer() -> mpsc::Sender<Vec<u8>> {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(QUEUE);
    tokio::spawn(async move {
        let mut out = tokio::io::stdout();
        let mut batch = Vec::with_capacity(64 * 1024);
        while let Some(line) = rx.recv().await {
            batch.extend_from_slice(&line);
            while batch.len() < 256 * 1024 {
                match rx.try_recv() {
                    Ok(more) => batch.extend_from_slice(&more),
                    Err(_) => break,
                }
            }
            if out.write_all(&batch).await.is_err() || out.flush().await.is_err() {
                return;
            }
            batch.clear();
        }
    });
    tx
}
