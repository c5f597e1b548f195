//! Listeners and connections: binds the proxy and admin ports, serves each client
//! connection through the [`guard`] and hyper, and drains everything on shutdown.

mod connection;
mod date;
pub mod framing;
pub mod guard;
mod inflight;
mod plain;
mod workers;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::health::Registry;
use crate::routing::Snapshot;

/// State shared by the listeners, the admin endpoints and reload.
///
/// `live` is written only by start-up and reload (one atomic swap each), read by every
/// request; `registry` keeps backend health across those swaps.
#[derive(Debug)]
pub struct Shared {
    pub live: Arc<ArcSwap<Snapshot>>,
    pub registry: Registry,
    /// True once a config is loaded and every listener is bound (`/readyz`).
    pub ready: AtomicBool,
    /// Requests inside the proxy service now, over all connections.
    pub in_flight: crate::worker::Count,
    /// Open client connections (parked ones included).
    pub connections: AtomicUsize,
    /// Woken when `connections` drops to zero, for draining.
    pub drained: tokio::sync::Notify,
}

/// A started cutover: where it listens and how to stop it.
#[derive(Debug)]
pub struct Running {
    pub http_addrs: Vec<SocketAddr>,
    pub admin_addr: SocketAddr,
    pub shared: Arc<Shared>,
    /// Carries the grace period once shutdown starts.
    stop: watch::Sender<Option<Duration>>,
    accept_loops: Vec<JoinHandle<()>>,
    /// Workers 1.. (worker 0 is the caller's runtime).
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// How a shutdown went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Requests still running when the grace period ended.
    pub cut: usize,
}

/// Binds the admin port, builds the first snapshot, binds the proxy ports and starts
/// serving. Must run inside a tokio runtime.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    if !config.listen.https.is_empty() {
        tracing::warn!(
            "https listeners are configured but TLS is not built yet; they are not bound"
        );
    }
    let admin_listener = TcpListener::bind(config.admin)
        .await
        .with_context(|| format!("binding admin listener {}", config.admin))?;
    let admin_addr = admin_listener.local_addr()?;
    let workers = match config.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    crate::worker::set_count(workers);
    let registry = Registry::new();
    let snapshot = Snapshot::build(config, &registry, None).await;
    let shared = Arc::new(Shared {
        live: Arc::new(ArcSwap::from_pointee(snapshot)),
        registry,
        ready: AtomicBool::new(false),
        in_flight: crate::worker::Count::default(),
        connections: AtomicUsize::new(0),
        drained: tokio::sync::Notify::new(),
    });
    let (stop, stopped) = watch::channel(None);
    let mut accept_loops = vec![tokio::spawn(crate::admin::serve(
        admin_listener,
        shared.clone(),
        stopped.clone(),
    ))];

    // Every address is bound once per worker; worker 0 serves on this runtime.
    let mut http_addrs = Vec::new();
    let mut per_worker: Vec<Vec<TcpListener>> = (0..workers).map(|_| Vec::new()).collect();
    let listen = shared.live.load().config.listen.http.clone();
    for addr in listen {
        let listeners = workers::bind(addr, workers)?;
        let local = listeners[0].local_addr()?;
        tracing::info!(addr = %local, workers, "listening (http)");
        http_addrs.push(local);
        for (w, l) in listeners.into_iter().enumerate() {
            per_worker[w].push(l);
        }
    }
    let mut threads = Vec::new();
    for (w, listeners) in per_worker.into_iter().enumerate() {
        if w == 0 {
            for l in listeners {
                accept_loops.push(tokio::spawn(accept(l, shared.clone(), stopped.clone())));
            }
        } else {
            threads.push(workers::spawn(
                w,
                listeners,
                shared.clone(),
                stopped.clone(),
            )?);
        }
    }
    // Every listener is bound (connections queue until accepted): ready before the log
    // line that tells the outside so.
    shared.ready.store(true, Ordering::Release);
    tracing::info!(addr = %admin_addr, "admin listening");
    Ok(Running {
        http_addrs,
        admin_addr,
        shared,
        stop,
        accept_loops,
        threads,
    })
}

impl Running {
    /// Stops accepting, lets in-flight requests finish for up to `grace`, and reports how
    /// many were cut.
    pub async fn shutdown(self, grace: Duration) -> Drained {
        self.shared.ready.store(false, Ordering::Release);
        let _ = self.stop.send(Some(grace));
        for l in self.accept_loops {
            let _ = l.await;
        }
        drain(&self.shared, grace).await;
        // The other workers drain in parallel, each for at most `grace`.
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
        let cut = self.shared.in_flight.get();
        if cut > 0 {
            tracing::warn!(
                cut,
                "shutdown grace period ended with requests still running"
            );
        }
        Drained { cut }
    }
}

async fn accept(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<Option<Duration>>,
) {
    let current_thread = tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::CurrentThread;
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.changed() => return,
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        connection::spawn(stream, peer, current_thread, shared.clone(), stop.clone());
    }
}

/// Waits until every client connection has closed, or `grace` has passed.
pub(crate) async fn drain(shared: &Shared, grace: Duration) {
    let deadline = tokio::time::Instant::now() + grace;
    loop {
        let woken = shared.drained.notified();
        tokio::pin!(woken);
        // Registered before the check, so a close in between is not missed.
        woken.as_mut().enable();
        if shared.connections.load(Ordering::Acquire) == 0 {
            return;
        }
        if tokio::time::timeout_at(deadline, woken).await.is_err() {
            return;
        }
    }
}
