//! HTTP/2 limits on the client side: an idle connection is sent away after
//! `idle_timeout`; a stream the client resets cancels its backend exchange; a connection
//! that keeps opening and resetting streams (rapid reset, CVE-2023-44487, in the slow
//! form that resets each stream only after the server accepted it) is sent away before
//! it can put them all on the backends; a connection's requests are capped.
//!
//! The clients are the `h2` crate over h2c (prior knowledge), on a socket that shows
//! the test every frame the proxy sends, so that its GOAWAYs can be checked whatever
//! the client library makes of them.

mod support;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::SendRequest;
use h2::Reason;
use http::Request;
use support::{eventually, Proxy, Upstream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const NO_ERROR: u32 = 0x0;
const ENHANCE_YOUR_CALM: u32 = 0xb;

fn one_pool(backend: SocketAddr, extra: &str) -> String {
    format!(
        "{extra}\n[pools.p]\nbackends = [\"{backend}\"]\n[[routes]]\nname = \"r\"\nsplit = {{ p = 1 }}\n"
    )
}

fn request(path: &str) -> Request<()> {
    Request::get(format!("http://example.test{path}"))
        .body(())
        .expect("request")
}

// === The client ===

/// What the proxy sent on one connection, frame by frame.
#[derive(Default)]
struct Frames {
    /// The start of a frame not yet read whole.
    partial: Vec<u8>,
    /// Each GOAWAY as (last stream id, error code), in order.
    goaways: Vec<(u32, u32)>,
}

impl Frames {
    fn feed(&mut self, bytes: &[u8]) {
        self.partial.extend_from_slice(bytes);
        let mut at = 0;
        while self.partial.len() - at >= 9 {
            let f = &self.partial[at..];
            let len = u32::from_be_bytes([0, f[0], f[1], f[2]]) as usize;
            if f.len() < 9 + len {
                break;
            }
            if f[3] == 0x7 && len >= 8 {
                let p = &f[9..];
                let last = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff;
                let code = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
                self.goaways.push((last, code));
            }
            at += 9 + len;
        }
        self.partial.drain(..at);
    }
}

/// The client's socket, showing the test what it reads.
struct Tap {
    io: TcpStream,
    frames: Arc<Mutex<Frames>>,
}

impl AsyncRead for Tap {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            self.frames
                .lock()
                .expect("lock")
                .feed(&buf.filled()[before..]);
        }
        polled
    }
}

impl AsyncWrite for Tap {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        // A client that gives up on a failed write leaves the proxy's last frames (its
        // GOAWAY) unread in the socket: read what is there.
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n @ 1..) = self.io.try_read(&mut buf) {
            if let Ok(mut frames) = self.frames.lock() {
                frames.feed(&buf[..n]);
            }
        }
    }
}

/// An HTTP/2 connection to the proxy, with prior knowledge.
struct H2 {
    send: SendRequest<Bytes>,
    frames: Arc<Mutex<Frames>>,
    /// The connection's task; it ends when the connection does.
    conn: JoinHandle<Result<(), h2::Error>>,
}

impl H2 {
    async fn connect(addr: SocketAddr) -> H2 {
        let io = TcpStream::connect(addr).await.expect("connect to proxy");
        io.set_nodelay(true).expect("nodelay");
        let frames = Arc::new(Mutex::new(Frames::default()));
        let tap = Tap {
            io,
            frames: frames.clone(),
        };
        let (send, conn) = h2::client::Builder::new()
            // Every stream the attack resets is remembered; none may be forgotten and
            // then taken for a protocol error when the proxy's answer to it comes in.
            .max_concurrent_reset_streams(10_000)
            .handshake::<_, Bytes>(tap)
            .await
            .expect("h2 handshake");
        H2 {
            send,
            frames,
            conn: tokio::spawn(conn),
        }
    }

    /// Whether the connection has ended (the proxy closed it).
    fn ended(&self) -> bool {
        self.conn.is_finished()
    }

    /// Every GOAWAY the proxy sent, as (last stream id, error code).
    fn goaways(&self) -> Vec<(u32, u32)> {
        self.frames.lock().expect("lock").goaways.clone()
    }

    /// Waits until a new stream may be opened; an error once the connection is going
    /// away.
    async fn ready(&mut self) -> Result<(), h2::Error> {
        std::future::poll_fn(|cx| self.send.poll_ready(cx)).await
    }

    /// GET `path` and read the answer whole: its status and body, or why it failed.
    async fn get(&mut self, path: &str) -> Result<(u16, String), h2::Error> {
        let exchange = async {
            self.ready().await?;
            let (response, _) = self.send.send_request(request(path), true)?;
            let response = response.await?;
            let status = response.status().as_u16();
            let mut body = response.into_body();
            let mut out = Vec::new();
            while let Some(chunk) = body.data().await {
                let chunk = chunk?;
                let _ = body.flow_control().release_capacity(chunk.len());
                out.extend_from_slice(&chunk);
            }
            Ok((status, String::from_utf8_lossy(&out).into_owned()))
        };
        tokio::time::timeout(Duration::from_secs(20), exchange)
            .await
            .expect("an answer or an error within 20 s")
    }
}

// === Idle timeout ===

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_h2c_connection_is_sent_away_after_idle_timeout() {
    let up = Upstream::start("u").await;
    let proxy = Proxy::start(&one_pool(up.addr, "[limits]\nidle_timeout = \"1s\"")).await;
    let started = Instant::now();
    // No stream at all: a connection opened and left.
    let c = H2::connect(proxy.addr).await;
    eventually("the idle h2c connection is closed", async || c.ended()).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "closed after {took:?}, before idle_timeout"
    );
    let goaways = c.goaways();
    assert!(!goaways.is_empty(), "closed without a GOAWAY");
    assert!(
        goaways.iter().all(|&(_, code)| code == NO_ERROR),
        "an idle close is graceful: {goaways:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_request_keeps_its_h2c_connection_and_idleness_starts_after_it() {
    let up = Upstream::start("u").await;
    let proxy = Proxy::start(&one_pool(up.addr, "[limits]\nidle_timeout = \"1s\"")).await;
    let mut c = H2::connect(proxy.addr).await;
    let (status, body) = c.get("/slow/3000").await.expect("the long request");
    assert_eq!(status, 200, "{body}");
    assert!(
        c.goaways().is_empty() && !c.ended(),
        "sent away with a stream open for 3 s: {:?}",
        c.goaways()
    );
    // Still open right after: the next request on it is answered.
    let (status, _) = c.get("/next").await.expect("a request after the long one");
    assert_eq!(status, 200);
    let idle_from = Instant::now();
    eventually("the connection is closed once idle", async || c.ended()).await;
    // The proxy's idle clock starts a little before this client has read the answer:
    // a loose bound, still far from counting the 3 s request as idle time.
    let idle = idle_from.elapsed();
    assert!(
        idle >= Duration::from_millis(500),
        "closed {idle:?} after its last answer, before idle_timeout"
    );
    let goaways = c.goaways();
    assert!(
        goaways.iter().all(|&(_, code)| code == NO_ERROR),
        "{goaways:?}"
    );
    assert!(
        goaways.last().is_some_and(|&(last, _)| last >= 3),
        "the GOAWAY must cover the two streams served (1 and 3): {goaways:?}"
    );
}

// === Resets ===

/// An upstream that answers each request 2 s late, and notes when the proxy closes a
/// connection.
struct LateUpstream {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    closed: Arc<Mutex<Vec<Instant>>>,
}

impl LateUpstream {
    async fn start() -> LateUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let me = LateUpstream {
            addr: listener.local_addr().expect("addr"),
            requests: Arc::default(),
            closed: Arc::default(),
        };
        let (requests, closed) = (me.requests.clone(), me.closed.clone());
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(LateUpstream::serve(s, requests.clone(), closed.clone()));
            }
        });
        me
    }

    async fn serve(mut s: TcpStream, requests: Arc<AtomicUsize>, closed: Arc<Mutex<Vec<Instant>>>) {
        let mut buf = [0u8; 8192];
        let mut head = Vec::new();
        let gone = |closed: &Mutex<Vec<Instant>>| {
            closed.lock().expect("lock").push(Instant::now());
        };
        loop {
            // One request head (GETs here: no body).
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return gone(&closed),
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            head.clear();
            requests.fetch_add(1, Ordering::SeqCst);
            tokio::select! {
                read = s.read(&mut buf) => match read {
                    Ok(0) | Err(_) => return gone(&closed),
                    Ok(_) => return, // nothing is pipelined here
                },
                _ = tokio::time::sleep(Duration::from_secs(2)) => {
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nlate";
                    if s.write_all(answer).await.is_err() {
                        return gone(&closed);
                    }
                }
            }
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn closed(&self) -> Vec<Instant> {
        self.closed.lock().expect("lock").clone()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reset_stream_cancels_its_backend_exchange() {
    let late = LateUpstream::start().await;
    let proxy = Proxy::start(&one_pool(late.addr, "")).await;
    let mut c = H2::connect(proxy.addr).await;
    c.ready().await.expect("ready");
    let (response, mut stream) = c
        .send
        .send_request(request("/slow/2000"), true)
        .expect("send");
    eventually("the request reaches the upstream", async || {
        late.requests() == 1
    })
    .await;
    let reset_at = Instant::now();
    stream.send_reset(Reason::CANCEL);
    eventually("the upstream's connection is closed", async || {
        !late.closed().is_empty()
    })
    .await;
    let after = late.closed()[0].saturating_duration_since(reset_at);
    assert!(
        after < Duration::from_secs(1),
        "closed {after:?} after the reset: the exchange was left to run to its end"
    );
    drop((response, stream));
    // One reset is a client changing its mind, not an attack: the connection serves on.
    let (status, body) = c.get("/next").await.expect("a request after the reset");
    assert_eq!((status, body.as_str()), (200, "late"));
    assert!(c.goaways().is_empty(), "{:?}", c.goaways());
}

#[tokio::test(flavor = "multi_thread")]
async fn rapid_reset_gets_the_connection_sent_away() {
    const STREAMS: usize = 5_000;
    let up = Upstream::start("u").await;
    let proxy = Proxy::start(&one_pool(up.addr, "")).await;
    // A well-behaved client on another connection, all along.
    let stop = Arc::new(AtomicBool::new(false));
    let mut neighbour = H2::connect(proxy.addr).await;
    let neighbour_task = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut served = 0;
            // At most 500: far from any per-connection request cap.
            while !stop.load(Ordering::SeqCst) && served < 500 {
                let (status, _) = neighbour
                    .get("/neighbour")
                    .await
                    .expect("the neighbour is served during the attack");
                assert_eq!(status, 200);
                served += 1;
                // Paced to last the attack, not to synchronise anything.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (neighbour, served)
        }
    });

    let mut attacker = H2::connect(proxy.addr).await;
    let mut sent = 0;
    let attack = async {
        while sent < STREAMS {
            if attacker.ready().await.is_err() {
                break;
            }
            let Ok((response, mut stream)) = attacker.send.send_request(request("/attack"), true)
            else {
                break;
            };
            sent += 1;
            // Late enough for the proxy to have accepted the stream and sent it on.
            tokio::time::sleep(Duration::from_millis(1)).await;
            stream.send_reset(Reason::CANCEL);
            drop(response);
        }
    };
    // A proxy that stops reading instead of closing would hang the loop: bound it.
    let _ = tokio::time::timeout(Duration::from_secs(60), attack).await;
    let reached = || {
        up.seen
            .lock()
            .expect("lock")
            .iter()
            .filter(|head| head.starts_with("GET /attack "))
            .count()
    };
    eprintln!(
        "attack: {sent} streams sent and reset, {} reached the upstream, GOAWAYs {:?}",
        reached(),
        attacker.goaways()
    );
    assert!(
        reached() <= 1_000,
        "{} of {sent} reset requests reached the upstream",
        reached()
    );
    assert!(
        sent < STREAMS,
        "the connection stayed open for all {STREAMS} resets"
    );
    eventually("the attacker's connection is closed", async || {
        attacker.ended()
    })
    .await;
    let goaways = attacker.goaways();
    assert!(!goaways.is_empty(), "closed without a GOAWAY");
    assert!(
        goaways
            .iter()
            .all(|&(_, code)| code == NO_ERROR || code == ENHANCE_YOUR_CALM),
        "GOAWAY codes: {goaways:?}"
    );

    stop.store(true, Ordering::SeqCst);
    let (mut neighbour, served) = neighbour_task.await.expect("neighbour task");
    assert!(served > 0, "the neighbour was never served");
    let (status, _) = neighbour
        .get("/after")
        .await
        .expect("the neighbour's connection outlives the attack");
    assert_eq!(status, 200);
    assert!(neighbour.goaways().is_empty(), "{:?}", neighbour.goaways());
}

// === Requests cap ===

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_is_sent_away_after_1000_requests_and_its_client_reconnects() {
    let up = Upstream::start("u").await;
    let proxy = Proxy::start(&one_pool(up.addr, "")).await;
    let mut busy = H2::connect(proxy.addr).await;
    let mut neighbour = H2::connect(proxy.addr).await;
    let mut served = 0;
    let mut neighbour_served = 0;
    let mut stopped_by = None;
    let run = async {
        for i in 0..1_100 {
            match busy.get("/busy").await {
                Ok((200, _)) => served += 1,
                Ok((status, body)) => panic!("request {i}: {status} {body}"),
                Err(e) => {
                    stopped_by = Some(e);
                    break;
                }
            }
            // The neighbour's requests, interleaved, never count against the busy one.
            if i % 4 == 0 {
                let (status, _) = neighbour
                    .get("/neighbour")
                    .await
                    .expect("the neighbour is unaffected");
                assert_eq!(status, 200);
                neighbour_served += 1;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("1100 requests within 120 s");
    assert!(
        (1_000..=1_005).contains(&served),
        "{served} requests served on one connection, then {stopped_by:?}; the cap is 1000"
    );
    eventually("the busy connection is closed", async || busy.ended()).await;
    let goaways = busy.goaways();
    assert!(!goaways.is_empty(), "closed without a GOAWAY");
    assert!(
        goaways.iter().all(|&(_, code)| code == NO_ERROR),
        "the cap is graceful: {goaways:?}"
    );
    // The client opens a new connection and goes on.
    let mut again = H2::connect(proxy.addr).await;
    let (status, _) = again.get("/again").await.expect("a new connection");
    assert_eq!(status, 200);
    let (status, _) = neighbour
        .get("/neighbour")
        .await
        .expect("the neighbour's connection is still open");
    assert_eq!(status, 200);
    assert!(
        neighbour.goaways().is_empty() && neighbour_served > 200,
        "{:?}",
        neighbour.goaways()
    );
}

/// As on HTTP/1, a connection that never makes a request has `client_header_timeout`,
/// not the (longer) `idle_timeout`: opening one and saying nothing holds it no longer.
#[tokio::test(flavor = "multi_thread")]
async fn an_h2c_connection_without_a_request_has_the_client_header_timeout() {
    let up = Upstream::start("u").await;
    let limits = "[limits]\nidle_timeout = \"60s\"\nclient_header_timeout = \"1s\"";
    let proxy = Proxy::start(&one_pool(up.addr, limits)).await;
    let started = Instant::now();
    let c = H2::connect(proxy.addr).await;
    eventually("the silent h2c connection is closed", async || c.ended()).await;
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900), "closed after {took:?}");
    assert!(!c.goaways().is_empty(), "closed without a GOAWAY");
}

/// The attack against a backend that takes a moment to answer, so that every
/// reset abandons a request still at work: the reset budget, not the request cap, ends
/// the connection.
#[tokio::test(flavor = "multi_thread")]
async fn abandoning_requests_past_the_budget_gets_the_connection_sent_away() {
    let up = Upstream::start("u").await;
    let proxy = Proxy::start(&one_pool(up.addr, "")).await;
    let mut attacker = H2::connect(proxy.addr).await;
    let mut sent = 0;
    let attack = async {
        while sent < 1_000 {
            if attacker.ready().await.is_err() {
                break;
            }
            let Ok((response, mut stream)) = attacker.send.send_request(request("/slow/200"), true)
            else {
                break;
            };
            sent += 1;
            tokio::time::sleep(Duration::from_millis(1)).await;
            stream.send_reset(Reason::CANCEL);
            drop(response);
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(60), attack).await;
    eprintln!(
        "slow attack: {sent} streams sent and reset, {} reached the upstream, GOAWAYs {:?}",
        up.hits(),
        attacker.goaways()
    );
    // The budget is 100 abandoned requests; a few more are in flight when it trips.
    assert!(
        sent < 300,
        "{sent} abandoned requests before the connection ended"
    );
    assert!(up.hits() < 300, "{} reached the upstream", up.hits());
    eventually("the attacker's connection is closed", async || {
        attacker.ended()
    })
    .await;
    assert!(!attacker.goaways().is_empty(), "closed without a GOAWAY");
}
