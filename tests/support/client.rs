//! Clients: hyper over a fresh connection, and raw bytes over TCP.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The upstream that answered (first line of an echo body).
    pub fn upstream(&self) -> &str {
        self.header("x-upstream").unwrap_or("")
    }
}

/// GET `path` with `headers`, over a new HTTP/1.1 connection.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut b = Request::get(path);
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        b = b.header("host", "example.test");
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    request(addr, b.body(Full::new(Bytes::new())).expect("request")).await
}

/// Sends one request over a new HTTP/1.1 connection and reads the whole reply.
pub async fn request(addr: SocketAddr, req: Request<Full<Bytes>>) -> Reply {
    let stream = TcpStream::connect(addr).await.expect("connect to proxy");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    send_on(&mut send, req).await
}

/// One request on an open HTTP/1.1 connection, read whole.
pub async fn send_on(
    send: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> Reply {
    // The connection is ready again only once the last answer's end has been read.
    tokio::time::timeout(Duration::from_secs(20), send.ready())
        .await
        .expect("ready in time")
        .expect("the connection is still open");
    let resp = tokio::time::timeout(Duration::from_secs(20), send.send_request(req))
        .await
        .expect("reply in time")
        .expect("reply");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Writes `bytes` and reads one response (by its Content-Length), or until the peer
/// closes, or 5 s pass.
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    raw_after(addr, Duration::ZERO, bytes).await
}

/// As [`raw`], with `pause` between connecting and sending.
pub async fn raw_after(addr: SocketAddr, pause: Duration, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    if !pause.is_zero() {
        tokio::time::sleep(pause).await;
    }
    s.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let read = async {
        let mut buf = [0u8; 16384];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
            if response_complete(&out) {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn response_complete(out: &[u8]) -> bool {
    let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&out[..end]).to_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    matches!(len, Some(n) if out.len() >= end + 4 + n)
}
