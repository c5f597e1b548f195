//! Hostile clients: ambiguous framing is refused and never forwarded; slow-loris
//! clients are cut off while others are served.

mod support;

use std::time::Duration;

use support::{get, raw, Proxy, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn proxy_with(up: &Upstream, limits: &str) -> Proxy {
    Proxy::start(&format!(
        "{limits}\n[pools.p]\nbackends = [\"{}\"]\n[[routes]]\nname = \"r\"\nsplit = {{ p = 1 }}\n",
        up.addr
    ))
    .await
}

const VECTORS: &[(&str, &[u8])] = &[
    (
        "CL then TE",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    ),
    (
        "TE then CL",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    ),
    (
        "two Content-Lengths",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabcGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    ),
    (
        "obs-fold",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n",
    ),
    (
        "obfuscated TE",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "bad chunk size",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    ),
    (
        "negative Content-Length",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
    ),
    (
        "two Hosts",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    ),
];

#[tokio::test(flavor = "multi_thread")]
async fn ambiguous_framing_is_refused_and_never_forwarded() {
    let up = Upstream::start("u").await;
    let proxy = proxy_with(&up, "").await;
    for (name, bytes) in VECTORS {
        let out = raw(proxy.addr, bytes).await;
        assert!(out.starts_with("HTTP/1.1 400"), "{name}: {out}");
        assert!(
            out.contains("x-cutover-error: bad_request"),
            "{name}: {out}"
        );
        assert!(
            !out.contains("HTTP/1.1 200"),
            "{name}: a request got through: {out}"
        );
    }
    // The bad chunk case may have sent its head before the body was seen; no other
    // vector may reach the backend at all, and nothing was ever smuggled.
    assert!(up.hits() <= 1, "backend saw {} requests", up.hits());
    assert!(!up
        .seen
        .lock()
        .expect("lock")
        .iter()
        .any(|h| h.contains("/smuggled")));
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_loris_is_cut_off_while_others_are_served() {
    let up = Upstream::start("u").await;
    let proxy = proxy_with(&up, "[limits]\nclient_header_timeout = \"500ms\"").await;
    let mut loris = TcpStream::connect(proxy.addr).await.expect("connect");
    loris
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n")
        .await
        .expect("write");
    let started = std::time::Instant::now();
    let mut cut = false;
    // Keep trickling a header byte at a time; meanwhile others must be served.
    for i in 0..40 {
        let r = get(proxy.addr, "/", &[]).await;
        assert_eq!(r.status, 200);
        if loris.write_all(b"X").await.is_err() {
            cut = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = i;
        let mut buf = [0u8; 512];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(1), loris.read(&mut buf)).await
        {
            let got = String::from_utf8_lossy(&buf[..n]).to_string();
            assert!(n == 0 || got.starts_with("HTTP/1.1 408"), "{got}");
            cut = true;
            break;
        }
    }
    assert!(
        cut,
        "slow client still connected after {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_keep_alive_connections_are_closed() {
    let up = Upstream::start("u").await;
    let proxy = proxy_with(&up, "[limits]\nidle_timeout = \"300ms\"").await;
    let mut s = TcpStream::connect(proxy.addr).await.expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .expect("write");
    let mut buf = vec![0u8; 65536];
    let n = s.read(&mut buf).await.expect("response");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let closed = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "idle connection not closed");
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_gets_400_and_the_proxy_keeps_serving() {
    let up = Upstream::start("u").await;
    let proxy = proxy_with(&up, "").await;
    for junk in [
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"\0\0\0\0\r\n\r\n",
    ] {
        let out = raw(proxy.addr, junk).await;
        assert!(out.starts_with("HTTP/1.1 400") || out.is_empty(), "{out}");
    }
    assert_eq!(get(proxy.addr, "/", &[]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_streaming_response_outlives_idle_timeout() {
    let up = Upstream::start("u").await;
    let proxy = proxy_with(&up, "[limits]\nidle_timeout = \"300ms\"").await;
    let r = get(proxy.addr, "/drip/10", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "drip\n".repeat(10), "the body was cut");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_upgrade_closes_so_nothing_unchecked_follows() {
    let up = Upstream::start("u").await;
    let proxy = Proxy::start(&format!(
        "[pools.p]\nbackends = [\"{}\"]\n[[routes]]\nname = \"r\"\npath_prefix = \"/only\"\nsplit = {{ p = 1 }}\n",
        up.addr
    ))
    .await;
    // An upgrade request nobody accepts (no route), then a smuggling attempt on the
    // same connection.
    let out = raw(
        proxy.addr,
        b"GET /elsewhere HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\
          POST /only HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 404"), "{out}");
    assert!(out.to_lowercase().contains("connection: close"), "{out}");
    assert_eq!(up.hits(), 0, "nothing may follow a refused upgrade");
    // Upgrade without `Connection: upgrade` does not switch the guard off.
    let out = raw(
        proxy.addr,
        b"GET /only HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n\
          POST /only HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    .await;
    assert!(!out.contains("HTTP/1.1 200") || up.hits() == 1, "{out}");
    assert!(
        up.seen
            .lock()
            .expect("lock")
            .iter()
            .all(|h| !h.starts_with("POST")),
        "the CL+TE request was forwarded"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_pipelined_request_never_overtakes_the_answer_before_it() {
    let up = Upstream::start("u").await;
    let proxy = proxy_with(&up, "").await;
    let out = raw(
        proxy.addr,
        b"GET /slow/300 HTTP/1.1\r\nHost: a\r\n\r\n\
          POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    .await;
    assert!(
        out.starts_with("HTTP/1.1 200"),
        "the first request's answer must come first: {out}"
    );
    assert_eq!(up.hits(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_upload_is_not_a_backend_timeout_but_a_stalled_one_is_cut() {
    let up = Upstream::start("u").await;
    let proxy = proxy_with(
        &up,
        "[limits]\nresponse_timeout = \"400ms\"\nidle_timeout = \"700ms\"",
    )
    .await;
    // 6 chunks 250 ms apart: 1.5 s of upload, longer than response_timeout.
    let mut s = TcpStream::connect(proxy.addr).await.expect("connect");
    s.write_all(b"POST /collect HTTP/1.1\r\nHost: a\r\nContent-Length: 30\r\n\r\n")
        .await
        .expect("head");
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        s.write_all(b"chunk").await.expect("body");
    }
    let mut out = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut out))
        .await
        .expect("answer")
        .expect("read");
    let text = String::from_utf8_lossy(&out[..n]).to_string();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.ends_with("\r\n\r\n30"),
        "the whole body reached the backend: {text}"
    );
    // A client that stops sending its body is cut after idle_timeout with 408.
    let mut s = TcpStream::connect(proxy.addr).await.expect("connect");
    s.write_all(b"POST /collect HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\npartial")
        .await
        .expect("write");
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut out))
        .await
        .expect("answer")
        .expect("read");
    let text = String::from_utf8_lossy(&out[..n]).to_string();
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("x-cutover-error: client_timeout"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_parked_keep_alive_connection_serves_its_next_request() {
    let up = Upstream::start("u").await;
    let proxy = proxy_with(&up, "[limits]\nidle_timeout = \"3s\"").await;
    let mut s = TcpStream::connect(proxy.addr).await.expect("connect");
    let mut buf = vec![0u8; 65536];
    for i in 0..3 {
        s.write_all(format!("GET /n{i} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
            .await
            .expect("write");
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("in time")
            .expect("read");
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(text.starts_with("HTTP/1.1 200"), "request {i}: {text}");
        assert!(
            text.contains(&format!("GET /n{i} HTTP/1.1")),
            "request {i}: {text}"
        );
        // Idle past the park point (250 ms), well within idle_timeout: the client's
        // think time, not a wait for the proxy.
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    assert_eq!(up.hits(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn guard_and_proxy_read_an_upgrade_alike() {
    // A Connection field with a byte beyond ASCII: if the guard saw a switch (and
    // stopped checking) where the proxy saw a plain request (and kept the connection),
    // the request behind it, with two Host fields, would reach the backend.
    let (backend, _) = support::RawUpstream::Script {
        answer: b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        close: false,
    }
    .start()
    .await;
    let proxy = Proxy::start(&format!(
        "[pools.p]\nbackends = [\"{backend}\"]\n[[routes]]\nname = \"r\"\nsplit = {{ p = 1 }}\n"
    ))
    .await;
    let mut s = TcpStream::connect(proxy.addr).await.expect("connect");
    s.write_all(
        b"GET /first HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade, \xff\r\n\r\n\
          GET /second HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    )
    .await
    .expect("write");
    let mut all = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut all)).await;
    let text = String::from_utf8_lossy(&all).to_lowercase();
    assert_eq!(text.matches("http/1.1 200").count(), 1, "{text}");
    assert!(
        text.contains("connection: close"),
        "a refused switch closes: {text}"
    );
}
