//! One client connection, from accept to close.
//!
//! An HTTP/1 connection moves between three states. *Plain*: cutover's own server
//! ([`plain`]) answers requests without a body, the bulk of traffic, at a fraction of
//! hyper's cost. *Serving*: the first request that is not plain (a body, an upgrade, a
//! head to refuse) is handed, with the bytes read so far, to hyper behind the framing
//! guard, which keeps the connection until it idles. *Parked*: after a short idle
//! spell either server lets go (hyper's read and write buffers, about 16 KiB, are
//! freed) and only the socket is kept until the client sends again or `idle_timeout`
//! passes. So thousands of idle keep-alive clients cost little more than their
//! sockets. HTTP/2 connections (prior knowledge, or `h2` by ALPN) are served by hyper
//! throughout ([`h2`]).
//!
//! TLS goes through the same states: both servers and the guard run over any
//! [`ClientStream`], and a TLS connection is one once its handshake is done
//! ([`opening`]). Parking keeps the TLS session (its keys cannot be rebuilt) and drops
//! the HTTP buffers, as for TCP; the plain server's one-write answers matter more under
//! TLS, where every write is a record.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::guard::{ConnShared, GuardLimits, Guarded};
use super::opening::{self, Edge, Opened};
use super::stream::ClientStream;
use super::{h2, inflight, plain};
use crate::http1::framing;
use crate::proxy::{Client, Proxy};
use crate::state::Shared;

/// hyper's per-connection buffer limit; its default (~400 KiB) multiplies badly with
/// many concurrent large responses.
const BUF_LIMIT: usize = 64 * 1024;

/// Serves one client connection on its own task; counted in `shared.connections`.
/// Called in the poll that accepted `stream`; `current_thread` is whether that runs on
/// a current-thread runtime (see [`forget_assumed_readability`]).
pub(super) fn spawn(
    stream: TcpStream,
    peer: SocketAddr,
    edge: &Arc<Edge>,
    current_thread: bool,
    shared: Arc<Shared>,
    stop: watch::Receiver<Option<Duration>>,
) {
    // Linux hands the listener's TCP_NODELAY (`workers::bind`) down to every accepted
    // socket, which spares a syscall per connection; elsewhere it is set here.
    #[cfg(target_os = "linux")]
    debug_assert!(
        stream.nodelay().unwrap_or(true),
        "a proxy listener not made by workers::bind"
    );
    #[cfg(not(target_os = "linux"))]
    let _ = stream.set_nodelay(true);
    if current_thread {
        forget_assumed_readability(&stream);
    }
    shared.connections.fetch_add(1, Ordering::AcqRel);
    let edge = edge.clone();
    tokio::spawn(async move {
        if edge.tls || edge.proxy_protocol {
            Box::pin(open_and_serve(stream, peer, &edge, &shared, stop)).await;
        } else {
            let client = Client::new(peer, false, &edge.trusted);
            serve(stream, client, BytesMut::new(), true, &shared, stop).await;
        }
        if shared.connections.fetch_sub(1, Ordering::AcqRel) == 1 {
            shared.drained.notify_waiters();
        }
    });
}

/// tokio takes a socket it accepted as readable, so the first read is a syscall. Under
/// load that read mostly comes before the request (a client sends it a moment after the
/// handshake) and fails with EAGAIN: one syscall more per connection than nginx, whose
/// first read waits for the socket's first event. Forgetting the guess does the same;
/// a request that is already there reports itself at once.
///
/// Safe only before the reactor can have taken an event for the socket, or forgetting
/// would drop the one wake-up a request already there gets. On a current-thread
/// runtime, the only kind cutover's workers run, that is the poll that accepted it: no
/// reactor turn comes in between. On a multi-thread one, another thread may turn the
/// reactor at any time, so there the guess is kept.
fn forget_assumed_readability(stream: &TcpStream) {
    let _ = stream.try_io(tokio::io::Interest::READABLE, || {
        Err::<(), _>(std::io::ErrorKind::WouldBlock.into())
    });
}

/// A connection whose listener reads a PROXY header or does TLS first.
async fn open_and_serve(
    stream: TcpStream,
    peer: SocketAddr,
    edge: &Edge,
    shared: &Arc<Shared>,
    stop: watch::Receiver<Option<Duration>>,
) {
    let opened = tokio::select! {
        opened = opening::open(stream, peer, edge, shared) => opened,
        // A drain does not wait for handshakes.
        _ = wait_for_stop(stop.clone()) => None,
    };
    match opened {
        None => {}
        Some(Opened::Plain(stream, from, carried)) => {
            let client = Client::new(from, false, &edge.trusted);
            serve(stream, client, carried, true, shared, stop).await;
        }
        Some(Opened::Tls(stream, from, true)) => {
            let client = Client::new(from, true, &edge.trusted);
            let limits = limits(shared);
            h2::serve(*stream, shared, client, limits, stop).await;
        }
        Some(Opened::Tls(stream, from, false)) => {
            let client = Client::new(from, true, &edge.trusted);
            // HTTP/2 over TLS is chosen by ALPN only (RFC 9113 3.3): no h2c.
            serve(*stream, client, BytesMut::new(), false, shared, stop).await;
        }
    }
}

async fn wait_for_stop(mut stop: watch::Receiver<Option<Duration>>) {
    while stop.borrow_and_update().is_none() {
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Serves HTTP/1 (or h2c, where `h2c` allows and the first request is its preface) on
/// `stream`, starting with the bytes `carried` already read off it.
async fn serve<S: ClientStream>(
    mut stream: S,
    client: Client,
    mut carried: BytesMut,
    h2c: bool,
    shared: &Arc<Shared>,
    mut stop: watch::Receiver<Option<Duration>>,
) {
    let proxy = Proxy::new(shared.live.clone());
    let mut idle_since = None;
    // No request served yet: the first one must come within the client header timeout
    // (or the idle timeout, if shorter), as nginx has it; a connection that never says
    // anything is a slow-loris too.
    let mut fresh = true;
    loop {
        let limits = limits(shared);
        // Parked: wait for the client's next bytes with nothing but the socket (unless
        // some arrived while parking).
        if let Some(since) = idle_since.filter(|_| carried.is_empty()) {
            let wait = if fresh {
                limits.header_timeout.min(limits.idle_timeout)
            } else {
                limits.idle_timeout
            };
            let deadline = since + wait;
            tokio::select! {
                r = stream.readable() => if r.is_err() { return },
                () = tokio::time::sleep_until(deadline) => return stream.goodbye().await,
                _ = stop.changed() => return stream.goodbye().await,
            }
        }
        // Boxed for the same reason as hyper's part below.
        let plain = plain::serve(
            &mut stream,
            &mut carried,
            &mut fresh,
            h2c,
            idle_since,
            &client,
            &proxy,
            shared,
            limits,
            &mut stop,
        );
        match Box::pin(plain).await {
            plain::Next::Close => return stream.goodbye().await,
            plain::Next::Parked(since) => {
                idle_since = Some(since);
                continue;
            }
            plain::Next::Hyper => {}
            plain::Next::H2 => {
                // The guard hands hyper the preface already read, then steps aside.
                let conn_shared = ConnShared::new(shared.live.load().unrouted.clone());
                let io = Guarded::resume(stream, carried, limits, conn_shared.clone(), true);
                Box::pin(h2::serve_on(io, conn_shared, shared, client, limits, stop)).await;
                return;
            }
        }
        fresh = false;
        // Boxed: hyper's connection state is kilobytes, and an unboxed future would
        // keep that much allocated in this task while it is parked.
        match Box::pin(serve_h1(
            stream, carried, &client, shared, limits, &mut stop,
        ))
        .await
        {
            Some((s, rest, since)) => {
                stream = s;
                carried = rest;
                idle_since = Some(since);
            }
            None => return,
        }
    }
}

/// Serves HTTP/1 until the connection ends, or until the guard asks to park it: then
/// returns the socket, the start of a request head that arrived meanwhile (if any),
/// and when it went idle.
async fn serve_h1<S: ClientStream>(
    stream: S,
    carried: BytesMut,
    client: &Client,
    shared: &Arc<Shared>,
    limits: GuardLimits,
    stop: &mut watch::Receiver<Option<Duration>>,
) -> Option<(S, BytesMut, Instant)> {
    let conn_shared = ConnShared::new(shared.live.load().unrouted.clone());
    let io = TokioIo::new(Guarded::resume(
        stream,
        carried,
        limits,
        conn_shared.clone(),
        false,
    ));
    let mut conn = http1()
        .serve_connection(io, service(shared, client, &conn_shared))
        .with_upgrades();
    let mut stopping = false;
    let result = loop {
        tokio::select! {
            r = &mut conn => break r,
            () = conn_shared.park.notified() => std::pin::Pin::new(&mut conn).graceful_shutdown(),
            _ = stop.changed(), if !stopping => {
                stopping = true;
                std::pin::Pin::new(&mut conn).graceful_shutdown();
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(client = %client.peer, error = %e, "client connection ended with an error");
        return None;
    }
    if stopping || !conn_shared.parking() {
        return None;
    }
    // Take the socket back from hyper, unless it holds bytes not yet read.
    let parts = conn.into_parts()?;
    if !parts.read_buf.is_empty() {
        return None;
    }
    let (stream, rest) = parts.io.into_inner().into_parts();
    tracing::trace!(client = %client.peer, "connection parked");
    Some((stream, rest, conn_shared.idle_since()))
}

pub(super) fn limits(shared: &Shared) -> GuardLimits {
    let snap = shared.live.load();
    let l = &snap.config.limits;
    GuardLimits {
        max_head: l.max_header_bytes,
        header_timeout: l.client_header_timeout,
        idle_timeout: l.idle_timeout,
    }
}

fn http1() -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
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
    b
}

/// What the service returns for one request: boxed, see `service`.
type ResponseFuture = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<http::Response<inflight::CountedBody>, Infallible>>
            + Send,
    >,
>;

/// The hyper service of one connection: counts each request in flight from the call
/// until its response body is gone, and forwards it.
pub(super) fn service(
    shared: &Arc<Shared>,
    client: &Client,
    conn_shared: &Arc<ConnShared>,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = http::Response<inflight::CountedBody>,
    Error = Infallible,
    Future = ResponseFuture,
> + Clone {
    let proxy = Proxy::new(shared.live.clone());
    let counters = shared.clone();
    let client = client.clone();
    let conn_shared = conn_shared.clone();
    service_fn(move |req| {
        // Counted from the call, not the first poll: hyper may read on before it polls,
        // and the guard must already know a request is being served.
        let in_flight = inflight::InFlight::start(conn_shared.clone(), counters.clone());
        conn_shared.count(false, h2::should_go_away);
        let abandoned = Abandoned(Some(conn_shared.clone()));
        let proxy = proxy.clone();
        let client = client.clone();
        // Boxed once here: hyper moves the service future into place, and the unboxed
        // request state machine is kilobytes.
        Box::pin(async move {
            let resp = proxy.handle(req, &client).await.into_response();
            abandoned.answered();
            Ok::<_, Infallible>(resp.map(|body| inflight::CountedBody {
                body,
                _in_flight: in_flight,
            }))
        }) as ResponseFuture
    })
}

/// Counts a request whose service future is dropped before its answer: the client
/// reset the stream, or closed the connection, while the proxy was still at work.
struct Abandoned(Option<Arc<ConnShared>>);

impl Abandoned {
    fn answered(mut self) {
        self.0 = None;
    }
}

impl Drop for Abandoned {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            conn.count(true, h2::should_go_away);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::forget_assumed_readability;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_forgotten_guess_waits_for_the_request() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (stream, _) = listener.accept().await.expect("accept");
        forget_assumed_readability(&stream);
        // Nothing sent yet: a read now would only fail with EAGAIN.
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(stream.poll_read_ready(&mut cx).is_pending());
        // The request's arrival is the event the first read waits for.
        client
            .write_all(b"GET / HTTP/1.1\r\n")
            .await
            .expect("write");
        tokio::time::timeout(Duration::from_secs(5), stream.readable())
            .await
            .expect("woken by the request")
            .expect("readable");
    }
}
