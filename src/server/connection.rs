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
//! sockets. HTTP/2 connections (prior knowledge) are served by hyper throughout.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::guard::{ConnShared, GuardLimits, Guarded};
use super::{inflight, plain};
use crate::http1::{fields, framing};
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
    tokio::spawn(async move {
        serve(stream, peer, &shared, stop).await;
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

async fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    mut stop: watch::Receiver<Option<Duration>>,
) {
    let client = Client {
        peer,
        tls: false,
        ip: client_ip_header(peer),
    };
    let proxy = Proxy::new(shared.live.clone());
    let mut idle_since = None;
    let mut carried = BytesMut::new();
    let mut fresh = true;
    loop {
        let limits = limits(shared);
        // Parked: wait for the client's next bytes with nothing but the socket (unless
        // some arrived while parking).
        if let Some(since) = idle_since.filter(|_| carried.is_empty()) {
            let deadline = since + limits.idle_timeout;
            tokio::select! {
                r = stream.readable() => if r.is_err() { return },
                () = tokio::time::sleep_until(deadline) => return,
                _ = stop.changed() => return,
            }
        }
        // Boxed for the same reason as hyper's part below.
        let plain = plain::serve(
            &mut stream,
            &mut carried,
            &mut fresh,
            &client,
            &proxy,
            shared,
            limits,
            &mut stop,
        );
        match Box::pin(plain).await {
            plain::Next::Close => return,
            plain::Next::Parked(since) => {
                idle_since = Some(since);
                continue;
            }
            plain::Next::Hyper => {}
            plain::Next::H2 => {
                Box::pin(serve_h2(stream, carried, shared, client, limits, stop)).await;
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
async fn serve_h1(
    stream: TcpStream,
    carried: BytesMut,
    client: &Client,
    shared: &Arc<Shared>,
    limits: GuardLimits,
    stop: &mut watch::Receiver<Option<Duration>>,
) -> Option<(TcpStream, BytesMut, Instant)> {
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

fn limits(shared: &Shared) -> GuardLimits {
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

async fn serve_h2(
    stream: TcpStream,
    preface: BytesMut,
    shared: &Arc<Shared>,
    client: Client,
    limits: GuardLimits,
    mut stop: watch::Receiver<Option<Duration>>,
) {
    let conn_shared = ConnShared::new(shared.live.load().unrouted.clone());
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    // The proxy measures each header list against `max_header_bytes` itself, so that
    // its 431 carries `x-cutover-error`; h2 only refuses one twice that size (HPACK
    // counts 32 bytes more per field than HTTP/1 does) before it is decoded whole.
    let hard_limit = limits
        .max_head
        .saturating_mul(2)
        .max(limits.max_head + 16 * 1024);
    builder
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(hard_limit).unwrap_or(u32::MAX));
    // The guard hands hyper the preface already read, then steps aside.
    let io = Guarded::resume(stream, preface, limits, conn_shared.clone(), true);
    let mut conn =
        builder.serve_connection(TokioIo::new(io), service(shared, &client, &conn_shared));
    let mut stopping = false;
    loop {
        tokio::select! {
            r = &mut conn => {
                if let Err(e) = r {
                    tracing::debug!(client = %client.peer, error = %e, "h2 connection ended with an error");
                }
                return;
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                std::pin::Pin::new(&mut conn).graceful_shutdown();
            }
        }
    }
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
fn service(
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
        let proxy = proxy.clone();
        let client = client.clone();
        // Boxed once here: hyper moves the service future into place, and the unboxed
        // request state machine is kilobytes.
        Box::pin(async move {
            let resp = proxy.handle(req, &client).await.into_response();
            Ok::<_, Infallible>(resp.map(|body| inflight::CountedBody {
                body,
                _in_flight: in_flight,
            }))
        }) as ResponseFuture
    })
}

/// The client's IP as a header value, formatted once per connection for
/// `X-Forwarded-For`.
fn client_ip_header(peer: SocketAddr) -> http::HeaderValue {
    let value = match peer.ip() {
        // The common case, without the formatting machinery (a visible share of a
        // short connection's cost).
        std::net::IpAddr::V4(v4) => {
            let mut text = Vec::with_capacity(15);
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text.push(b'.');
                }
                text.extend_from_slice(fields::decimal(octet.into(), &mut [0u8; 20]));
            }
            http::HeaderValue::from_maybe_shared(bytes::Bytes::from(text))
        }
        ip => http::HeaderValue::try_from(ip.to_string()),
    };
    value.unwrap_or_else(|_| http::HeaderValue::from_static("unknown"))
}

#[cfg(test)]
mod tests {
    use super::{client_ip_header, forget_assumed_readability};
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

    #[test]
    fn client_ips_read_as_std_writes_them() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.255.9",
            "255.255.255.255",
            "::1",
            "2001:db8::7",
        ] {
            let peer = std::net::SocketAddr::new(ip.parse().expect("ip"), 1);
            assert_eq!(client_ip_header(peer), ip);
        }
    }
}
