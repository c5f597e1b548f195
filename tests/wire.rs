//! Behaviour on the wire: header rules, every proxy-made error, retries, WebSocket, h2c.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::upstream::closed_port;
use support::{get, raw, request, Proxy, RawUpstream, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn one_pool(backends: &[String], extra: &str) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        "{extra}\n[pools.p]\nbackends = [{}]\n[[routes]]\nname = \"r\"\nsplit = {{ p = 1 }}\n",
        list.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn request_headers_follow_the_rules() {
    let up = Upstream::start("u").await;
    let proxy = Proxy::start(&one_pool(&[up.addr.to_string()], "")).await;
    let r = get(
        proxy.addr,
        "/path?q=1",
        &[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
            ("x-request-id", "abc-123"),
            ("connection", "x-private"),
            ("x-private", "secret"),
            ("keep-alive", "timeout=3"),
            ("te", "trailers"),
            ("proxy-authorization", "Basic x"),
            ("x-custom", "kept"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = up.last_seen().to_lowercase();
    assert!(seen.starts_with("get /path?q=1 http/1.1"), "{seen}");
    assert!(
        seen.contains("host: example.test\n"),
        "Host preserved: {seen}"
    );
    assert!(
        seen.contains("x-forwarded-for: 203.0.113.9, 127.0.0.1\n"),
        "{seen}"
    );
    assert!(seen.contains("x-forwarded-proto: http\n"), "{seen}");
    assert!(seen.contains("x-forwarded-host: example.test\n"), "{seen}");
    assert!(seen.contains("x-request-id: abc-123\n"), "{seen}");
    assert!(seen.contains("x-custom: kept\n"), "{seen}");
    for gone in [
        "x-private",
        "keep-alive",
        "te:",
        "proxy-authorization",
        "connection",
    ] {
        assert!(!seen.contains(gone), "{gone} reached the backend: {seen}");
    }
    assert_eq!(r.header("x-request-id"), Some("abc-123"));
    assert_eq!(
        r.header("keep-alive"),
        None,
        "hop-by-hop response header removed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_or_insane_request_id_is_replaced_and_returned() {
    let up = Upstream::start("u").await;
    let proxy = Proxy::start(&one_pool(&[up.addr.to_string()], "")).await;
    let long = "a".repeat(129);
    for sent in [None, Some("bad id!"), Some(long.as_str())] {
        let headers: Vec<(&str, &str)> = sent.iter().map(|v| ("x-request-id", *v)).collect();
        let r = get(proxy.addr, "/", &headers).await;
        let id = r.header("x-request-id").expect("id returned").to_owned();
        assert!(Some(id.as_str()) != sent && !id.is_empty());
        assert!(up.last_seen().contains(&format!("x-request-id: {id}\n")));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn backend_status_passes_through_untouched() {
    let up = Upstream::start("u").await;
    let proxy = Proxy::start(&one_pool(&[up.addr.to_string()], "")).await;
    up.ready_status
        .store(418, std::sync::atomic::Ordering::SeqCst);
    let r = get(proxy.addr, "/ready", &[]).await;
    assert_eq!(r.status, 418);
    assert_eq!(r.header("x-cutover-error"), None);
}

async fn expect_error(proxy: &Proxy, path: &str, status: u16, kind: &str) {
    let r = get(proxy.addr, path, &[]).await;
    assert_eq!(r.status, status, "{path}: {}", r.body);
    assert_eq!(r.header("x-cutover-error"), Some(kind), "{path}");
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert!(!r.body.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_failures_map_to_their_kinds() {
    let refused = closed_port().await;
    let (reset, _) = RawUpstream::Reset.start().await;
    let (garbage, _) = RawUpstream::Garbage.start().await;
    let (silent, _) = RawUpstream::Silent.start().await;
    let text = format!(
        "[limits]\nresponse_timeout = \"300ms\"\nretries = 0\n\
         [pools.refused]\nbackends = [\"{refused}\"]\n[pools.reset]\nbackends = [\"{reset}\"]\n\
         [pools.garbage]\nbackends = [\"{garbage}\"]\n[pools.silent]\nbackends = [\"{silent}\"]\n\
         [[routes]]\nname = \"a\"\npath_prefix = \"/refused\"\nsplit = {{ refused = 1 }}\n\
         [[routes]]\nname = \"b\"\npath_prefix = \"/reset\"\nsplit = {{ reset = 1 }}\n\
         [[routes]]\nname = \"c\"\npath_prefix = \"/garbage\"\nsplit = {{ garbage = 1 }}\n\
         [[routes]]\nname = \"d\"\npath_prefix = \"/silent\"\nsplit = {{ silent = 1 }}\n"
    );
    let proxy = Proxy::start(&text).await;
    expect_error(&proxy, "/refused", 502, "connect_failed").await;
    expect_error(&proxy, "/reset", 502, "upstream_reset").await;
    expect_error(&proxy, "/garbage", 502, "bad_upstream_response").await;
    expect_error(&proxy, "/silent", 504, "upstream_timeout").await;
    expect_error(&proxy, "/nowhere", 404, "no_route").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_go_to_another_backend_when_allowed() {
    let good = Upstream::start("good").await;
    let refused = closed_port().await;
    let (reset, reset_hits) = RawUpstream::Reset.start().await;
    let proxy = Proxy::start(&one_pool(
        &[
            good.addr.to_string(),
            refused.to_string(),
            reset.to_string(),
        ],
        "[limits]\nretries = 2\n[pools.p.eject]\nconsecutive_failures = 1000\n",
    ))
    .await;
    // Refused connects and resets before any response byte: a GET always succeeds.
    for _ in 0..30 {
        let r = get(proxy.addr, "/", &[]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.upstream(), "good");
    }
    // A POST whose bytes reached the resetting backend is never replayed.
    let before = reset_hits.load(std::sync::atomic::Ordering::SeqCst);
    let mut saw_reset = false;
    for _ in 0..30 {
        let req = Request::post("/")
            .header("host", "example.test")
            .body(Full::new(Bytes::from_static(b"payload")))
            .expect("req");
        let r = request(proxy.addr, req).await;
        if r.status == 502 {
            assert_eq!(r.header("x-cutover-error"), Some("upstream_reset"));
            saw_reset = true;
        } else {
            assert_eq!(r.upstream(), "good");
        }
    }
    let after = reset_hits.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        saw_reset && after > before,
        "some POSTs should have hit the resetting backend"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn body_limits_413() {
    let up = Upstream::start("u").await;
    let proxy = Proxy::start(&one_pool(
        &[up.addr.to_string()],
        "[limits]\nmax_body_bytes = \"1KiB\"\n",
    ))
    .await;
    // Declared too large: refused without reading the body.
    let out = raw(
        proxy.addr,
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
    assert!(
        out.to_lowercase()
            .contains("x-cutover-error: body_too_large"),
        "{out}"
    );
    // Chunked crossing the limit is cut off.
    let mut req = b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..4 {
        req.extend_from_slice(b"200\r\n");
        req.extend_from_slice(&[b'x'; 512]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let out = raw(proxy.addr, &req).await;
    assert!(
        out.starts_with("HTTP/1.1 413") || !out.contains(&"x".repeat(2048)),
        "a body over the limit must not pass whole: {out}"
    );
    // Within the limit passes.
    let req = Request::post("/echo")
        .header("host", "a")
        .body(Full::new(Bytes::from(vec![b'y'; 1000])))
        .expect("req");
    let r = request(proxy.addr, req).await;
    assert_eq!((r.status.as_u16(), r.body.len()), (200, 1000));
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_head_is_431() {
    let up = Upstream::start("u").await;
    let proxy = Proxy::start(&one_pool(
        &[up.addr.to_string()],
        "[limits]\nmax_header_bytes = 2048\n",
    ))
    .await;
    let big = "v".repeat(3000);
    let out = raw(
        proxy.addr,
        format!("GET / HTTP/1.1\r\nHost: a\r\nX-Big: {big}\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");
    assert!(out.contains("x-cutover-error: headers_too_large"), "{out}");
    assert_eq!(up.hits(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn absolute_form_is_routed_by_authority_and_never_an_open_proxy() {
    let a = Upstream::start("a").await;
    let text = format!(
        "[pools.p]\nbackends = [\"{}\"]\n[[routes]]\nname = \"r\"\nhosts = [\"app.example.com\"]\nsplit = {{ p = 1 }}\n",
        a.addr
    );
    let proxy = Proxy::start(&text).await;
    let out = raw(
        proxy.addr,
        b"GET http://app.example.com/x HTTP/1.1\r\nHost: other.example.org\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(
        a.last_seen().starts_with("GET /x HTTP/1.1"),
        "origin-form upstream: {}",
        a.last_seen()
    );
    let out = raw(
        proxy.addr,
        b"GET http://evil.example.net/ HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 404"), "{out}");
    let out = raw(
        proxy.addr,
        b"CONNECT evil.example.net:443 HTTP/1.1\r\nHost: evil.example.net:443\r\n\r\n",
    )
    .await;
    assert!(
        out.starts_with("HTTP/1.1 400") || out.starts_with("HTTP/1.1 404"),
        "{out}"
    );
    // No path at all, only a query: there is no origin form to send on.
    let out = raw(
        proxy.addr,
        b"GET http://app.example.com?q HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(out.contains("bad_request"), "{out}");
    assert_eq!(a.hits(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn fields_named_by_connection_go_whichever_server_reads_the_request() {
    let up = Upstream::start("u").await;
    let proxy = Proxy::start(&one_pool(&[up.addr.to_string()], "")).await;
    // Without a body cutover's own server reads the request, with one hyper does; a
    // byte beyond ASCII in Connection must not make either keep what it names.
    for req in [
        &b"GET / HTTP/1.1\r\nHost: example.test\r\nConnection: x-secret, \xff\r\nx-secret: 1\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nHost: example.test\r\nConnection: x-secret, \xff\r\nx-secret: 1\r\n\
          Content-Length: 2\r\n\r\nok",
    ] {
        let out = raw(proxy.addr, req).await;
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        let seen = up.last_seen().to_lowercase();
        assert!(!seen.contains("x-secret"), "{seen}");
    }
    assert_eq!(up.hits(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_upgrade_is_tunnelled_both_ways() {
    let up = Upstream::start("ws").await;
    let proxy = Proxy::start(&one_pool(&[up.addr.to_string()], "")).await;
    // The second form hides the switch behind an h2c offer: the proxy and its framing
    // guard must both see the switch, or the guard would check tunnelled bytes (or
    // stop checking HTTP ones).
    for upgrade in [
        &b"Upgrade: websocket\r\n"[..],
        b"Upgrade: websocket\r\nUpgrade: h2c\r\n",
    ] {
        let mut s = TcpStream::connect(proxy.addr).await.expect("connect");
        let mut req = b"GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n".to_vec();
        req.extend_from_slice(upgrade);
        req.extend_from_slice(
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        );
        s.write_all(&req).await.expect("write");
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            s.read_exact(&mut b).await.expect("read head");
            head.push(b[0]);
        }
        let head = String::from_utf8_lossy(&head).to_lowercase();
        assert!(head.starts_with("http/1.1 101"), "{head}");
        assert!(head.contains("upgrade: websocket"), "{head}");
        // Without it a browser fails the handshake (RFC 6455 4.1).
        assert!(head.contains("connection: upgrade"), "{head}");
        assert!(up.last_seen().to_lowercase().contains("upgrade: websocket"));
        for msg in [&b"\x81\x05hello"[..], b"second message"] {
            s.write_all(msg).await.expect("write frame");
            let mut back = vec![0u8; msg.len()];
            tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back))
                .await
                .expect("echo in time")
                .expect("echo");
            assert_eq!(back, msg);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn h2c_prior_knowledge() {
    let up = Upstream::start("u").await;
    let proxy = Proxy::start(&one_pool(&[up.addr.to_string()], "")).await;
    let stream = TcpStream::connect(proxy.addr).await.expect("connect");
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    for i in 0..3 {
        let req = Request::get(format!("http://app.example.com/h2/{i}"))
            .body(Full::new(Bytes::new()))
            .expect("req");
        let resp = send.send_request(req).await.expect("h2 response");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), http::Version::HTTP_2);
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        let body = String::from_utf8_lossy(&body).to_lowercase();
        assert!(body.starts_with(&format!("get /h2/{i} http/1.1")), "{body}");
        assert!(body.contains("host: app.example.com\n"), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closing_answer_survives_requests_pipelined_behind_it() {
    // The client asks to close, but has already sent another request: the proxy must
    // not reset the connection under the answer it owes.
    let up = Upstream::start("u").await;
    let proxy = Proxy::start(&one_pool(&[up.addr.to_string()], "")).await;
    for _ in 0..20 {
        let mut s = TcpStream::connect(proxy.addr).await.expect("connect");
        s.set_nodelay(true).expect("nodelay");
        // Two writes, the second a moment later: it lands while the first (slow) one
        // is being answered, in the proxy's socket, unread. (The pause shapes the
        // traffic; the test passes or fails on the answer alone.)
        s.write_all(b"GET /slow/20 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        tokio::time::sleep(Duration::from_millis(5)).await;
        s.write_all(b"GET /second HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .expect("write");
        let mut all = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut all)).await;
        assert!(
            matches!(read, Ok(Ok(_))),
            "the answer must end in a clean close: {read:?}"
        );
        let text = String::from_utf8_lossy(&all);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.contains("connection: close"), "{text}");
        assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{text}");
    }
}
