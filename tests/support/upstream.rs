//! Upstream servers for tests: a well-behaved echo server and raw misbehaving ones.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A real HTTP server answering as `name`.
///
/// - any path: 200, header `x-upstream: NAME`, body = the request head as received;
///   after [`Upstream::with_delay`], that much later; after [`Upstream::failing_one_in`],
///   a 500 instead for every Nth request counted in `hits`
/// - `/ready`: the status in `ready_status` (200 by default), with
///   `x-cutover-warmup: N` when `warmup_percent` holds N (0-100)
/// - `/slow/MS`: answers after MS milliseconds
/// - `/bytes/N`: streams N bytes
/// - `/echo`: streams the request body back
/// - an Upgrade request: 101, then echoes bytes on the upgraded stream
#[derive(Clone)]
pub struct Upstream {
    pub name: &'static str,
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    pub ready_status: Arc<AtomicU16>,
    /// The warm-up percent `/ready` reports; above 100: none.
    pub warmup_percent: Arc<AtomicU16>,
    /// Request heads as received, most recent last.
    pub seen: Arc<Mutex<Vec<String>>>,
    /// Milliseconds to wait before answering on the catch-all path.
    pub delay_ms: Arc<AtomicU64>,
    /// Every Nth request counted in `hits` gets a 500 on the catch-all path; 0 = never.
    pub fail_one_in: Arc<AtomicUsize>,
}

type Body = BoxBody<Bytes, hyper::Error>;

impl Upstream {
    pub async fn start(name: &'static str) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        Upstream::serve(name, listener)
    }

    /// An upstream on `addr`; `None` when it cannot be bound (the port is taken).
    pub async fn start_at(name: &'static str, addr: SocketAddr) -> Option<Upstream> {
        let listener = TcpListener::bind(addr).await.ok()?;
        Some(Upstream::serve(name, listener))
    }

    fn serve(name: &'static str, listener: TcpListener) -> Upstream {
        let up = Upstream {
            name,
            addr: listener.local_addr().expect("addr"),
            hits: Arc::new(AtomicUsize::new(0)),
            ready_status: Arc::new(AtomicU16::new(200)),
            warmup_percent: Arc::new(AtomicU16::new(u16::MAX)),
            seen: Arc::new(Mutex::new(Vec::new())),
            delay_ms: Arc::new(AtomicU64::new(0)),
            fail_one_in: Arc::new(AtomicUsize::new(0)),
        };
        let me = up.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let me = me.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let me = me.clone();
                        async move { Ok::<_, Infallible>(me.answer(req).await) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        up
    }

    /// Answers the catch-all path `delay` late: a slower environment.
    pub fn with_delay(self, delay: Duration) -> Upstream {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
        self
    }

    /// Answers every `n`th request counted in `hits` with a 500 on the catch-all path: a
    /// known error ratio.
    pub fn failing_one_in(self, n: usize) -> Upstream {
        self.fail_one_in.store(n, Ordering::SeqCst);
        self
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn last_seen(&self) -> String {
        self.seen
            .lock()
            .expect("lock")
            .last()
            .cloned()
            .unwrap_or_default()
    }

    async fn answer(&self, mut req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_owned();
        if path == "/ready" {
            let status = StatusCode::from_u16(self.ready_status.load(Ordering::SeqCst))
                .unwrap_or(StatusCode::OK);
            let mut r = self.reply(status, full("ready"));
            let percent = self.warmup_percent.load(Ordering::SeqCst);
            if percent <= 100 {
                r.headers_mut()
                    .insert("x-cutover-warmup", http::HeaderValue::from(percent));
            }
            return r;
        }
        let hit = self.hits.fetch_add(1, Ordering::SeqCst) + 1;
        let mut head = format!("{} {} {:?}\n", req.method(), req.uri(), req.version());
        for (k, v) in req.headers() {
            head.push_str(&format!("{}: {}\n", k, v.to_str().unwrap_or("?")));
        }
        self.seen.lock().expect("lock").push(head.clone());
        if req.headers().contains_key(http::header::UPGRADE) {
            let on = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(up) = on.await {
                    let mut io = TokioIo::new(up);
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = io.read(&mut buf).await {
                        if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            });
            let mut r = Response::new(full(""));
            *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            r.headers_mut()
                .insert("connection", http::HeaderValue::from_static("upgrade"));
            r.headers_mut()
                .insert("upgrade", http::HeaderValue::from_static("websocket"));
            return r;
        }
        if let Some(ms) = path.strip_prefix("/slow/") {
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
        }
        if let Some(n) = path.strip_prefix("/bytes/") {
            let n: usize = n.parse().unwrap_or(0);
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let stream = futures_stream(n, chunk);
            return self.reply(
                StatusCode::OK,
                StreamBody::new(stream).map_err(|e| match e {}).boxed(),
            );
        }
        if let Some(n) = path.strip_prefix("/drip/") {
            // N small chunks, 100 ms apart: a slow streaming response.
            let n: usize = n.parse().unwrap_or(0);
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
            tokio::spawn(async move {
                for _ in 0..n {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if tx
                        .send(Ok(Frame::data(Bytes::from_static(b"drip\n"))))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
            return self.reply(
                StatusCode::OK,
                StreamBody::new(ReceiverStream(rx))
                    .map_err(|e| match e {})
                    .boxed(),
            );
        }
        if path == "/collect" {
            // Reads the whole body before answering with its length.
            let n = match req.into_body().collect().await {
                Ok(b) => b.to_bytes().len(),
                Err(_) => return self.reply(StatusCode::BAD_REQUEST, full("body failed")),
            };
            return self.reply(StatusCode::OK, full(&n.to_string()));
        }
        if path == "/echo" {
            let body = req.into_body().boxed();
            return self.reply(StatusCode::OK, body);
        }
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let fail_one_in = self.fail_one_in.load(Ordering::SeqCst);
        if fail_one_in > 0 && hit.is_multiple_of(fail_one_in) {
            return self.reply(StatusCode::INTERNAL_SERVER_ERROR, full("injected failure"));
        }
        self.reply(StatusCode::OK, full(&head))
    }

    fn reply(&self, status: StatusCode, body: Body) -> Response<Body> {
        let mut r = Response::new(body);
        *r.status_mut() = status;
        r.headers_mut()
            .insert("x-upstream", http::HeaderValue::from_static(self.name));
        r.headers_mut()
            .insert("keep-alive", http::HeaderValue::from_static("timeout=5"));
        r
    }
}

fn full(s: &str) -> Body {
    Full::new(Bytes::from(s.to_owned()))
        .map_err(|e| match e {})
        .boxed()
}

fn futures_stream(
    mut left: usize,
    chunk: Bytes,
) -> impl futures_core::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send + Sync + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(2);
    tokio::spawn(async move {
        while left > 0 {
            let n = left.min(chunk.len());
            if tx.send(Ok(Frame::data(chunk.slice(..n)))).await.is_err() {
                return;
            }
            left -= n;
        }
    });
    ReceiverStream(rx)
}

/// A body stream fed from a channel.
pub fn channel_stream<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_core::Stream<Item = T> + Send + 'static {
    ReceiverStream(rx)
}

struct ReceiverStream<T>(tokio::sync::mpsc::Receiver<T>);

impl<T> futures_core::Stream for ReceiverStream<T> {
    type Item = T;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

/// A TCP server that misbehaves in one fixed way.
pub enum RawUpstream {
    /// Reads the request, then closes without a byte.
    Reset,
    /// Reads the request, then answers with bytes that are not HTTP.
    Garbage,
    /// Reads the request and never answers.
    Silent,
    /// Answers every request on a connection with these exact bytes; closes the
    /// connection after the first answer when `close`. The counter counts connections.
    Script { answer: &'static [u8], close: bool },
}

impl RawUpstream {
    pub async fn start(self) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let kind = Arc::new(self);
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    continue;
                };
                let kind = kind.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let Ok(n) = s.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    if let RawUpstream::Script { answer, close } = *kind {
                        // One read per request: the proxy writes each head whole.
                        while s.write_all(answer).await.is_ok() && !close {
                            if !matches!(s.read(&mut buf).await, Ok(n) if n > 0) {
                                break;
                            }
                        }
                        return;
                    }
                    match *kind {
                        RawUpstream::Reset => drop(s),
                        RawUpstream::Garbage => {
                            let _ = s.write_all(b"this is not http\r\n\r\n").await;
                        }
                        RawUpstream::Silent => {
                            tokio::time::sleep(Duration::from_secs(60)).await;
                        }
                        RawUpstream::Script { .. } => {}
                    }
                });
            }
        });
        (addr, hits)
    }
}

/// A loopback port with nothing listening on it.
pub async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    l.local_addr().expect("addr")
}
