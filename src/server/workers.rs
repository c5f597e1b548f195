//! Thread-per-core serving, as nginx does it: each extra worker is a thread with its own
//! current-thread runtime and its own `SO_REUSEPORT` listener on every proxy address, so
//! the kernel spreads connections and a connection's requests, its upstream
//! connections and their wake-ups all stay on one thread.
//!
//! Worker 0 is the runtime that called [`crate::app::start`]; it also runs the admin
//! listener, health probes and reloads.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;

use super::opening::Edge;
use crate::state::Shared;

/// Binds `addr` once per worker with `SO_REUSEPORT`. The first bind fixes the port, so
/// port 0 gives every worker the same kernel-chosen port.
pub(super) fn bind(addr: SocketAddr, workers: usize) -> anyhow::Result<Vec<TcpListener>> {
    let first = bind_one(addr).with_context(|| format!("binding proxy listener {addr}"))?;
    let local = first.local_addr()?;
    let mut all = vec![first];
    for _ in 1..workers {
        all.push(bind_one(local).with_context(|| format!("binding proxy listener {local}"))?);
    }
    Ok(all)
}

fn bind_one(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        let socket = TcpSocket::new_v6()?;
        // IPv6 only, as nginx binds it: `[::]:80` beside `0.0.0.0:80` must not clash.
        socket2::SockRef::from(&socket).set_only_v6(true)?;
        socket
    };
    socket.set_reuseaddr(true)?;
    #[cfg(unix)]
    socket.set_reuseport(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// Starts worker `index` on its own thread, serving `listeners` until `stop` carries a
/// grace period, then draining for up to that long.
pub(super) fn spawn(
    index: usize,
    listeners: Vec<(TcpListener, Arc<Edge>)>,
    shared: Arc<Shared>,
    stop: watch::Receiver<Option<Duration>>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    // A listener belongs to the reactor that created it: hand it over as a std socket.
    let listeners = listeners
        .into_iter()
        .map(|(l, edge)| Ok((l.into_std()?, edge)))
        .collect::<std::io::Result<Vec<_>>>()?;
    let thread = std::thread::Builder::new()
        .name(format!("cutover-worker-{index}"))
        .spawn(move || {
            crate::worker::set_current(index);
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(worker = index, error = %e, "cannot start worker runtime");
                    return;
                }
            };
            rt.block_on(serve(listeners, shared, stop));
        })?;
    Ok(thread)
}

async fn serve(
    listeners: Vec<(std::net::TcpListener, Arc<Edge>)>,
    shared: Arc<Shared>,
    stop: watch::Receiver<Option<Duration>>,
) {
    let mut loops = Vec::new();
    for (l, edge) in listeners {
        match TcpListener::from_std(l) {
            Ok(l) => loops.push(tokio::spawn(super::accept(
                l,
                edge,
                shared.clone(),
                stop.clone(),
            ))),
            Err(e) => tracing::error!(error = %e, "worker cannot use its listener"),
        }
    }
    for l in loops {
        let _ = l.await;
    }
    let grace = stop.borrow().unwrap_or_default();
    super::drain(&shared, grace).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `connection::spawn` leaves TCP_NODELAY to this inheritance on Linux: without it,
    /// a response written in pieces would wait on Nagle's algorithm.
    #[tokio::test]
    async fn an_ipv6_wildcard_binds_beside_the_ipv4_one() {
        let v4 = bind("0.0.0.0:0".parse().expect("addr"), 1).expect("bind v4");
        let port = v4[0].local_addr().expect("local").port();
        match bind(std::net::SocketAddr::from(([0u16; 8], port)), 1) {
            Ok(_) => {}
            // A machine without IPv6 cannot tell.
            Err(e) if format!("{e:#}").contains("Address family not supported") => {}
            Err(e) => panic!("[::]:{port} beside 0.0.0.0:{port}: {e:#}"),
        }
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn accepted_connections_have_nodelay() {
        let listeners = bind("127.0.0.1:0".parse().expect("addr"), 1).expect("bind");
        let addr = listeners[0].local_addr().expect("local addr");
        let _client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (accepted, _) = listeners[0].accept().await.expect("accept");
        assert!(accepted.nodelay().expect("nodelay"));
    }
}
