//! Listeners and connections: binds the proxy and admin ports, serves each client
//! connection through the [`guard`] and hyper, and drains everything on shutdown.

pub mod framing;
pub mod guard;
mod inflight;
mod workers;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::health::Registry;
use crate::proxy::{Client, Proxy};
use crate::routing::Snapshot;
use guard::{ConnShared, GuardLimits, Guarded};

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
    pub in_flight: AtomicUsize,
    /// Open client connections.
    pub connections: AtomicUsize,
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
    graceful: Arc<GracefulShutdown>,
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
    crate::proxy::upstream::set_shards(workers);
    let registry = Registry::new();
    let snapshot = Snapshot::build(config, &registry, None).await;
    let shared = Arc::new(Shared {
        live: Arc::new(ArcSwap::from_pointee(snapshot)),
        registry,
        ready: AtomicBool::new(false),
        in_flight: AtomicUsize::new(0),
        connections: AtomicUsize::new(0),
    });
    let (stop, stopped) = watch::channel(None);
    let mut accept_loops = vec![tokio::spawn(crate::admin::serve(
        admin_listener,
        shared.clone(),
        stopped.clone(),
    ))];

    // Every address is bound once per worker; worker 0 serves on this runtime.
    let graceful = Arc::new(GracefulShutdown::new());
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
                accept_loops.push(tokio::spawn(accept(
                    l,
                    shared.clone(),
                    stopped.clone(),
                    graceful.clone(),
                )));
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
        graceful,
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
        // The accept loops have ended, so this is the last handle.
        if let Ok(g) = Arc::try_unwrap(self.graceful) {
            let _ = tokio::time::timeout(grace, g.shutdown()).await;
        }
        // The other workers drain in parallel, each for at most `grace`.
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
        let cut = self.shared.in_flight.load(Ordering::Acquire);
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
    graceful: Arc<GracefulShutdown>,
) {
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
        serve(stream, peer, shared.clone(), &graceful);
    }
}

/// hyper's per-connection buffer limit; its default (~400 KiB) multiplies badly with
/// many concurrent large responses.
const BUF_LIMIT: usize = 64 * 1024;

/// The client's IP as a header value, formatted once per connection for
/// `X-Forwarded-For`.
fn client_ip_header(peer: SocketAddr) -> http::HeaderValue {
    http::HeaderValue::try_from(peer.ip().to_string())
        .unwrap_or_else(|_| http::HeaderValue::from_static("unknown"))
}

/// Serves one client connection on its own task, watched by graceful shutdown.
fn serve(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>, graceful: &GracefulShutdown) {
    let _ = stream.set_nodelay(true);
    let limits = {
        let snap = shared.live.load();
        let l = &snap.config.limits;
        GuardLimits {
            max_head: l.max_header_bytes,
            header_timeout: l.client_header_timeout,
            idle_timeout: l.idle_timeout,
        }
    };
    let conn_shared = ConnShared::new();
    let io = TokioIo::new(Guarded::new(stream, limits, conn_shared.clone()));
    let proxy = Proxy::new(shared.live.clone());
    let counters = shared.clone();
    let client = Client {
        peer,
        tls: false,
        ip: client_ip_header(peer),
    };
    let svc = service_fn(move |req| {
        // Counted from the call, not the first poll: hyper may read on before it polls,
        // and the guard must already know a request is being served.
        let in_flight = inflight::InFlight::start(conn_shared.clone(), counters.clone());
        let proxy = proxy.clone();
        let client = client.clone();
        // Boxed once here: hyper moves the service future into place, and the unboxed
        // request state machine is kilobytes.
        Box::pin(async move {
            let resp = proxy.handle(req, &client).await;
            Ok::<_, Infallible>(resp.map(|body| inflight::CountedBody {
                body,
                _in_flight: in_flight,
            }))
        })
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_headers(framing::MAX_HEADERS)
        // A read EOF need not abort the response being written: the guard ends the
        // read side to stop a pipeline behind a bad request, and a client that only
        // shut down its sending side still gets its answer.
        .half_close(true)
        // Bounds what hyper buffers per connection (read and write): a fast backend
        // and a slow client must not park a whole large response in memory.
        .max_buf_size(BUF_LIMIT)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_head).unwrap_or(u32::MAX));
    let conn = builder.serve_connection_with_upgrades(io, svc).into_owned();
    let watched = graceful.watch(conn);
    shared.connections.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(async move {
        if let Err(e) = watched.await {
            tracing::debug!(client = %peer, error = %e, "client connection ended with an error");
        }
        shared.connections.fetch_sub(1, Ordering::Relaxed);
    });
}
