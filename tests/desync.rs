//! Request desync: what crosses the hop to the backend, byte for byte, on both of the
//! proxy's paths (a GET without a body is served by cutover's own HTTP/1 server, a POST
//! with one by hyper) and over HTTP/2. The backend here is a raw socket that keeps the
//! exact head it received.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{raw, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A backend that records every request head exactly as it arrived and answers 200.
#[derive(Clone)]
struct Recorder {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let me = Recorder {
            addr: listener.local_addr().expect("addr"),
            heads: Arc::default(),
        };
        let heads = me.heads.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(serve(s, heads.clone()));
            }
        });
        me
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().expect("lock").clone()
    }

    fn last(&self) -> String {
        self.heads().last().cloned().unwrap_or_default()
    }
}

/// Reads heads and their bodies (Content-Length or chunked) off one connection.
async fn serve(mut s: TcpStream, heads: Arc<Mutex<Vec<String>>>) {
    let mut buf = Vec::new();
    loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let lower = head.to_ascii_lowercase();
        let body_end = |buf: &[u8]| -> Option<usize> {
            if lower.contains("transfer-encoding: chunked") {
                buf.windows(5)
                    .position(|w| w == b"0\r\n\r\n")
                    .map(|i| i + 5)
            } else {
                let n = lower
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                (buf.len() >= n).then_some(n)
            }
        };
        let n = loop {
            if let Some(n) = body_end(&buf) {
                break n;
            }
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(k) => buf.extend_from_slice(&chunk[..k]),
            }
        };
        buf.drain(..n);
        heads.lock().expect("lock").push(head);
        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        if s.write_all(answer).await.is_err() {
            return;
        }
    }
}

async fn proxy_for(up: &Recorder, limits: &str) -> Proxy {
    Proxy::start(&format!(
        "{limits}\n[pools.p]\nbackends = [\"{}\"]\n[[routes]]\nname = \"r\"\nsplit = {{ p = 1 }}\n",
        up.addr
    ))
    .await
}

/// A GET (cutover's own server) and a POST with a body (hyper), with the same fields.
fn both_paths(fields: &str) -> [String; 2] {
    [
        format!("GET /plain HTTP/1.1\r\n{fields}Connection: close\r\n\r\n"),
        format!(
            "POST /hyper HTTP/1.1\r\n{fields}Content-Length: 04\r\nConnection: close\r\n\r\nbody"
        ),
    ]
}

fn lines(head: &str) -> Vec<String> {
    head.lines().map(str::to_ascii_lowercase).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_header_rules_on_both_paths() {
    let up = Recorder::start().await;
    let proxy = proxy_for(&up, "").await;
    let fields = "Host: app.example.com\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n\
                  Keep-Alive: timeout=5\r\nProxy-Authorization: basic x\r\nTE: trailers\r\n\
                  X-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Proto: https\r\n\
                  X-Forwarded-Host: evil.example\r\nX-Request-Id: good-id.1\r\n\
                  Content_Length: 5\r\nTransfer_Encoding: chunked\r\nX_User: u\r\nX-Kept: 1\r\n";
    for req in both_paths(fields) {
        let out = raw(proxy.addr, req.as_bytes()).await;
        assert!(out.starts_with("HTTP/1.1 200"), "{req}\n->\n{out}");
        assert!(
            out.to_ascii_lowercase()
                .contains("x-request-id: good-id.1\r\n"),
            "{out}"
        );
        let head = up.last();
        let got = lines(&head);
        assert!(got[0].ends_with(" http/1.1"), "{head}");
        for want in [
            "host: app.example.com",
            "x-forwarded-for: 1.2.3.4, 127.0.0.1",
            "x-forwarded-proto: http",
            "x-forwarded-host: app.example.com",
            "x-request-id: good-id.1",
            "x-kept: 1",
        ] {
            assert_eq!(
                got.iter().filter(|l| *l == want).count(),
                1,
                "{want} in\n{head}"
            );
        }
        for gone in [
            "connection",
            "x-secret",
            "keep-alive",
            "proxy-authorization",
            "te",
            "content_length",
            "transfer_encoding",
            "x_user",
            "transfer-encoding",
        ] {
            assert!(
                !got.iter().any(|l| l.starts_with(&format!("{gone}:"))),
                "{gone} reached the backend:\n{head}"
            );
        }
        for field in [
            "host",
            "x-forwarded-for",
            "x-forwarded-host",
            "x-request-id",
        ] {
            let n = got
                .iter()
                .filter(|l| l.starts_with(&format!("{field}:")))
                .count();
            assert_eq!(n, 1, "{field} in\n{head}");
        }
        if head.starts_with("POST") {
            // Sent normalised, once.
            assert!(got.iter().any(|l| l == "content-length: 4"), "{head}");
        }
    }
    assert_eq!(up.heads().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_hosts_get_400_and_never_reach_a_backend() {
    let up = Recorder::start().await;
    let proxy = proxy_for(&up, "").await;
    for host in [
        "app example.com",
        "evil.example/x",
        "a.example, b.example",
        "app.example.com:80x",
        "app.example.com@evil.example",
    ] {
        for req in both_paths(&format!("Host: {host}\r\n")) {
            let out = raw(proxy.addr, req.as_bytes()).await;
            assert!(out.starts_with("HTTP/1.1 400"), "{host:?}: {out}");
            assert!(out.contains("x-cutover-error: bad_request"), "{out}");
        }
    }
    assert!(up.heads().is_empty(), "{:?}", up.heads());
}

#[tokio::test(flavor = "multi_thread")]
async fn userinfo_in_an_absolute_target_is_refused() {
    let up = Recorder::start().await;
    let proxy = proxy_for(&up, "").await;
    for target in [
        "http://evil@app.example.com/",
        "http://app.example.com@evil.example/",
    ] {
        let req =
            format!("GET {target} HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n");
        let out = raw(proxy.addr, req.as_bytes()).await;
        assert!(out.starts_with("HTTP/1.1 400"), "{target}: {out}");
    }
    // Without userinfo the authority is the host, sent alone.
    let req =
        "GET http://app.example.com:8080/x HTTP/1.1\r\nHost: other\r\nConnection: close\r\n\r\n";
    let out = raw(proxy.addr, req.as_bytes()).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let got = lines(&up.last());
    assert_eq!(got[0], "get /x http/1.1");
    assert!(
        got.iter().any(|l| l == "host: app.example.com:8080"),
        "{got:?}"
    );
    assert_eq!(up.heads().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_preface_is_a_preface_only_where_a_connection_starts() {
    let up = Recorder::start().await;
    let proxy = proxy_for(&up, "").await;
    let preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
    for first in [
        "GET /first HTTP/1.1\r\nHost: a\r\n\r\n",
        "POST /first HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx",
    ] {
        let mut s = TcpStream::connect(proxy.addr).await.expect("connect");
        s.write_all(format!("{first}{preface}{smuggled}").as_bytes())
            .await
            .expect("write");
        // The connection must end: the first answer, then nothing more proxied.
        let mut all = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut all)).await;
        assert!(read.is_ok(), "the connection stayed open");
        let out = String::from_utf8_lossy(&all);
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert_eq!(out.matches("HTTP/1.1 200").count(), 1, "{out}");
        if first.starts_with("GET") {
            // The preface read as what it is there: a request line HTTP/1 refuses. (Behind
            // the POST, served by hyper, the refusal closes quietly, so that no answer of
            // the proxy's can overtake the POST's.)
            assert!(out.contains("HTTP/1.1 400"), "{out}");
            assert!(out.contains("x-cutover-error: bad_request"), "{out}");
        }
    }
    let heads = up.heads();
    assert_eq!(heads.len(), 2, "{heads:?}");
    assert!(heads.iter().all(|h| !h.contains("/smuggled")), "{heads:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http10_request_without_host_reaches_the_backend_with_one() {
    let up = Recorder::start().await;
    let proxy = proxy_for(&up, "").await;
    for req in [
        "GET /ten HTTP/1.0\r\n\r\n",
        "POST /ten HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi",
    ] {
        let out = raw(proxy.addr, req.as_bytes()).await;
        // hyper answers in the client's version, cutover's own server in 1.1: both
        // are what RFC 9110 2.5 allows.
        assert!(
            out.starts_with("HTTP/1.1 200") || out.starts_with("HTTP/1.0 200"),
            "{out}"
        );
        let got = lines(&up.last());
        assert!(got[0].ends_with("/ten http/1.1"), "{got:?}");
        let want = format!("host: {}", up.addr);
        assert_eq!(got.iter().filter(|l| **l == want).count(), 1, "{got:?}");
        assert!(
            !got.iter().any(|l| l.starts_with("x-forwarded-host")),
            "{got:?}"
        );
    }
}

/// An HTTP/2 connection to the proxy.
async fn h2(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    send
}

/// The status of one HTTP/2 request, or `None` when it was refused as a stream error.
async fn h2_status(
    send: &mut hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> Option<(u16, Option<String>)> {
    let resp = tokio::time::timeout(Duration::from_secs(5), send.send_request(req))
        .await
        .expect("answer in time")
        .ok()?;
    let kind = resp
        .headers()
        .get("x-cutover-error")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    Some((status, kind))
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_content_lengths_travel_once_or_not_at_all() {
    let up = Recorder::start().await;
    let proxy = proxy_for(&up, "").await;
    let mut send = h2(proxy.addr).await;
    let post = |lengths: &[&str]| {
        let mut b = Request::post("http://app.example.com/h2");
        for l in lengths {
            b = b.header("content-length", *l);
        }
        b.body(Full::new(Bytes::from_static(b"abc")))
            .expect("request")
    };
    let answer = h2_status(&mut send, post(&["3", "3"])).await;
    assert_eq!(answer.map(|a| a.0), Some(200));
    let got = lines(&up.last());
    assert_eq!(
        got.iter()
            .filter(|l| l.starts_with("content-length:"))
            .count(),
        1,
        "{got:?}"
    );
    assert!(got.iter().any(|l| l == "content-length: 3"), "{got:?}");
    let before = up.heads().len();
    let mut send = h2(proxy.addr).await;
    let answer = h2_status(&mut send, post(&["3", "4"])).await;
    // Either our 400 or the h2 layer's stream error: never forwarded.
    assert!(matches!(answer, None | Some((400, _))), "{answer:?}");
    assert_eq!(up.heads().len(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_hosts_follow_the_same_rules() {
    let up = Recorder::start().await;
    let proxy = proxy_for(&up, "[limits]\nmax_header_bytes = 1024\n").await;
    let mut send = h2(proxy.addr).await;
    let get = |uri: &str| {
        Request::get(uri)
            .body(Full::new(Bytes::new()))
            .expect("request")
    };
    let answer = h2_status(&mut send, get("http://evil@app.example.com/")).await;
    assert!(matches!(answer, None | Some((400, _))), "{answer:?}");
    // A header list over max_header_bytes: the proxy's own 431, with its kind.
    let big = Request::get("http://app.example.com/")
        .header("x-big", "b".repeat(2000))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let mut send = h2(proxy.addr).await;
    let answer = h2_status(&mut send, big).await;
    assert_eq!(answer, Some((431, Some("headers_too_large".to_owned()))));
    assert!(up.heads().is_empty(), "{:?}", up.heads());
}
