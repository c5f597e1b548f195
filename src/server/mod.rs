//! Listeners and client connections: binds the proxy ports once per worker, opens each
//! connection (PROXY protocol header, TLS handshake), serves it (cutover's own HTTP/1
//! server for plain requests, hyper behind the framing guard for the rest, idle parking
//! between, hyper for HTTP/2 with the limits it lacks), and drains them on shutdown.

mod connection;
mod guard;
mod h2;
mod inflight;
mod opening;
mod plain;
#[cfg(test)]
mod props;
mod response;
mod stream;
mod workers;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::state::Shared;
use opening::Edge;

/// The proxy listeners of a running cutover, and the workers serving them.
#[derive(Debug)]
pub(crate) struct Listening {
    /// One per configured `http` address (the port the kernel chose for port 0).
    pub addrs: Vec<SocketAddr>,
    /// One per configured `https` address.
    pub tls_addrs: Vec<SocketAddr>,
    /// Worker 0's accept loops, on the caller's runtime.
    accept_loops: Vec<JoinHandle<()>>,
    /// Workers 1.., each a thread with its own runtime.
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// Binds every proxy address once per worker and starts accepting. Worker 0 serves on
/// the calling runtime; the others get threads of their own.
pub(crate) fn listen(
    shared: &Arc<Shared>,
    workers: usize,
    stop: &watch::Receiver<Option<Duration>>,
) -> anyhow::Result<Listening> {
    let mut addrs = Vec::new();
    let mut tls_addrs = Vec::new();
    let mut per_worker: Vec<Vec<(TcpListener, Arc<Edge>)>> =
        (0..workers).map(|_| Vec::new()).collect();
    let listen = shared.live.load().config.listen.clone();
    let trusted: Arc<[ipnet::IpNet]> = listen.trusted_proxies.iter().copied().collect();
    let all = listen.http.iter().map(|a| (a, false));
    for (addr, tls) in all.chain(listen.https.iter().map(|a| (a, true))) {
        let listeners = workers::bind(*addr, workers)?;
        let local = listeners[0].local_addr()?;
        let scheme = if tls { "https" } else { "http" };
        tracing::info!(addr = %local, workers, proxy_protocol = listen.proxy_protocol, "listening ({scheme})");
        if tls { &mut tls_addrs } else { &mut addrs }.push(local);
        for (w, l) in listeners.into_iter().enumerate() {
            // One per worker: each connection clones it, and a count shared by every
            // worker's accepts would bounce between their cores.
            let edge = Arc::new(Edge {
                tls,
                proxy_protocol: listen.proxy_protocol,
                trusted: trusted.clone(),
            });
            per_worker[w].push((l, edge));
        }
    }
    let mut accept_loops = Vec::new();
    let mut threads = Vec::new();
    for (w, listeners) in per_worker.into_iter().enumerate() {
        if w == 0 {
            for (l, edge) in listeners {
                accept_loops.push(tokio::spawn(accept(l, edge, shared.clone(), stop.clone())));
            }
        } else {
            threads.push(workers::spawn(w, listeners, shared.clone(), stop.clone())?);
        }
    }
    Ok(Listening {
        addrs,
        tls_addrs,
        accept_loops,
        threads,
    })
}

impl Listening {
    /// Waits for the accept loops to stop (the stop signal has been sent), then for
    /// every connection to close or `grace` to pass, on every worker.
    pub(crate) async fn stop(self, shared: &Shared, grace: Duration) {
        for l in self.accept_loops {
            let _ = l.await;
        }
        drain(shared, grace).await;
        // The other workers drain in parallel, each for at most `grace`.
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

async fn accept(
    listener: TcpListener,
    edge: Arc<Edge>,
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
        connection::spawn(
            stream,
            peer,
            &edge,
            current_thread,
            shared.clone(),
            stop.clone(),
        );
    }
}

/// Waits until every client connection has closed, or `grace` has passed.
async fn drain(shared: &Shared, grace: Duration) {
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
