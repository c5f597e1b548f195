//! How the proxy reads backends' answers: every way a response body can be delimited
//! (RFC 9112 section 6.3), interim answers, and when a backend connection is reused.
//! The backends here write exact bytes, so each framing is what the test says it is.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use support::{get, raw, request, Proxy, RawUpstream};

/// A proxy in front of one backend that answers every request with `answer`, and the
/// count of connections that backend accepted. One worker: each worker has its own
/// backend connections, and these tests count them.
async fn behind(answer: &'static [u8], close: bool) -> (Proxy, Arc<AtomicUsize>) {
    let (backend, conns) = RawUpstream::Script { answer, close }.start().await;
    (in_front_of(backend, "5s").await, conns)
}

/// A proxy with one worker and no retries in front of `backend`.
async fn in_front_of(backend: std::net::SocketAddr, response_timeout: &str) -> Proxy {
    Proxy::start(&format!(
        "[runtime]\nworkers = 1\n[limits]\nretries = 0\nresponse_timeout = \"{response_timeout}\"\n\
         [pools.p]\nbackends = [\"{backend}\"]\n[[routes]]\nname = \"r\"\nsplit = {{ p = 1 }}\n"
    ))
    .await
}

async fn send(proxy: &Proxy, method: Method) -> support::Reply {
    let req = Request::builder()
        .method(method)
        .uri("/")
        .header("host", "example.test")
        .body(Full::new(Bytes::new()))
        .expect("request");
    request(proxy.addr, req).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chunked_answer_after_an_interim_one_is_decoded_and_its_connection_reused() {
    let (proxy, conns) = behind(
        b"HTTP/1.1 100 Continue\r\n\r\n\
                  HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 99\r\n\r\n\
                  5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: t\r\n\r\n",
        false,
    )
    .await;
    for _ in 0..2 {
        let r = get(proxy.addr, "/", &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, "hello world");
        assert_eq!(
            r.header("content-length"),
            None,
            "a wrong length must not travel on"
        );
    }
    assert_eq!(conns.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_that_runs_until_close_is_whole_and_its_connection_not_reused() {
    let (proxy, conns) = behind(
        b"HTTP/1.1 200 OK\r\nx-kind: until-close\r\n\r\nall of this, then FIN",
        true,
    )
    .await;
    for _ in 0..2 {
        let r = get(proxy.addr, "/", &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, "all of this, then FIN");
    }
    assert_eq!(conns.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_to_head_has_no_body_whatever_its_length_says() {
    let (proxy, conns) = behind(b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n", false).await;
    for _ in 0..2 {
        let r = send(&proxy, Method::HEAD).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-length"), Some("11"));
    }
    // Had the proxy waited for 11 bytes, the connection would not have gone back.
    assert_eq!(conns.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pooled_connection_the_backend_closed_is_not_used_again() {
    // Keep-alive framing, but the backend closes right after each answer: the next
    // request (a POST, never retried) must go on a new connection, not the dead one.
    let (proxy, conns) = behind(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", true).await;
    for _ in 0..3 {
        let r = send(&proxy, Method::POST).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body, "ok");
    }
    assert_eq!(conns.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_cut_off_mid_body_aborts_the_answer() {
    let (proxy, _) = behind(
        b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part",
        true,
    )
    .await;
    let stream = tokio::net::TcpStream::connect(proxy.addr)
        .await
        .expect("connect");
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let req = Request::get("/")
        .header("host", "example.test")
        .body(Full::new(Bytes::new()))
        .expect("request");
    // Whether the head got out before the cut is a matter of timing; a response that
    // looks complete is what must never happen.
    let whole = match send.send_request(req).await {
        Ok(resp) => http_body_util::BodyExt::collect(resp.into_body())
            .await
            .is_ok(),
        Err(_) => false,
    };
    assert!(!whole, "a short body must not look complete to the client");
}

#[tokio::test(flavor = "multi_thread")]
async fn hop_by_hop_fields_of_an_answer_stay_behind() {
    let (proxy, _) = behind(
        b"HTTP/1.1 200 OK\r\nConnection: x-secret\r\nx-secret: 1\r\nKeep-Alive: timeout=9\r\n\
          Proxy-Note: y\r\nTrailer: x-t\r\nx-kept: 2\r\ncontent-length: 2\r\n\r\nok",
        false,
    )
    .await;
    let r = get(proxy.addr, "/", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-kept"), Some("2"));
    for gone in ["x-secret", "keep-alive", "proxy-note", "trailer"] {
        assert_eq!(r.header(gone), None, "{gone} reached the client");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repeated_length_travels_once_and_the_request_id_is_the_proxys() {
    let (proxy, _) = behind(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\ncontent-length: 2\r\n\
          X-Request-Id: made-by-backend\r\n\r\nok",
        false,
    )
    .await;
    let out = raw(
        proxy.addr,
        b"GET / HTTP/1.1\r\nHost: example.test\r\nX-Request-Id: client-1\r\nConnection: close\r\n\r\n",
    )
    .await
    .to_ascii_lowercase();
    assert!(out.starts_with("http/1.1 200"), "{out}");
    assert_eq!(out.matches("content-length:").count(), 1, "{out}");
    assert!(out.ends_with("\r\n\r\nok"), "{out}");
    assert_eq!(out.matches("x-request-id:").count(), 1, "{out}");
    assert!(out.contains("x-request-id: client-1\r\n"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn kept_fields_reach_the_client_line_by_line_with_crlf() {
    // Bare LF line ends, a tab, empty values and trailing blanks, as httparse takes
    // them: each kept line goes on from its name to its value's end, then CRLF.
    let (proxy, _) = behind(
        b"HTTP/1.1 200 OK\nX-Tab:\tv\nX-Empty:\nX-Spaces:   \r\nX-Trail: v  \n\
          content-length: 2\n\nok",
        false,
    )
    .await;
    let out = raw(
        proxy.addr,
        b"GET / HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    let head = &out[..out.find("\r\n\r\n").expect("head end") + 4];
    for line in [
        "X-Tab:\tv\r\n",
        "X-Empty:\r\n",
        "X-Spaces:   \r\n",
        "X-Trail: v\r\n",
    ] {
        assert!(head.contains(line), "{line:?} in {head:?}");
    }
    assert_eq!(
        head.matches('\n').count(),
        head.matches("\r\n").count(),
        "{head:?}"
    );
    assert!(out.ends_with("\r\n\r\nok"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_keep_alive_timeout_bounds_reuse() {
    // A second less than the backend says, counted from the answer: with timeout=1 the
    // connection is never reused; with timeout=2 it is at once, and not after 1.2 s.
    let (proxy, conns) = behind(
        b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=1\r\ncontent-length: 2\r\n\r\nok",
        false,
    )
    .await;
    for _ in 0..2 {
        assert_eq!(get(proxy.addr, "/", &[]).await.status, 200);
    }
    assert_eq!(conns.load(Ordering::SeqCst), 2);

    let (proxy, conns) = behind(
        b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=2\r\ncontent-length: 2\r\n\r\nok",
        false,
    )
    .await;
    for _ in 0..2 {
        assert_eq!(get(proxy.addr, "/", &[]).await.status, 200);
    }
    assert_eq!(conns.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(get(proxy.addr, "/", &[]).await.status, 200);
    assert_eq!(conns.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_switch_nobody_asked_for_is_a_bad_answer_and_its_connection_dropped() {
    let (proxy, conns) = behind(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        false,
    )
    .await;
    for _ in 0..2 {
        let r = get(proxy.addr, "/", &[]).await;
        assert_eq!(r.status, 502);
        assert_eq!(r.header("x-cutover-error"), Some("bad_upstream_response"));
        assert!(r.header("date").is_some(), "every answer carries a Date");
    }
    // A switched connection speaks something else: never reused for a request.
    assert_eq!(conns.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_response_clock_runs_anew_for_each_request_on_a_kept_connection() {
    // Right behind the first answer, or half a timeout later, the connection's clock is
    // still set for the first request and rings early for the second, which must wait
    // on; after a pause longer than the timeout, the first one has rung while the
    // connection sat in its pool. Either way the second must ring on time.
    for pause in [
        Duration::ZERO,
        Duration::from_millis(150),
        Duration::from_millis(400),
    ] {
        second_answer_never_comes(pause).await;
    }
}

/// A backend that answers the first request on each connection, and no other.
async fn second_answer_never_comes(pause: Duration) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let backend = listener.local_addr().expect("addr");
    let conns = Arc::new(AtomicUsize::new(0));
    let accepted = conns.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut answered = false;
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    if !answered {
                        answered = true;
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                            .await;
                    }
                }
            });
        }
    });
    let proxy = in_front_of(backend, "300ms").await;
    assert_eq!(get(proxy.addr, "/", &[]).await.status, 200);
    tokio::time::sleep(pause).await;
    let started = std::time::Instant::now();
    let r = get(proxy.addr, "/", &[]).await;
    assert_eq!(r.status, 504, "after {pause:?}");
    assert_eq!(r.header("x-cutover-error"), Some("upstream_timeout"));
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        conns.load(Ordering::SeqCst),
        1,
        "the second request reused the connection"
    );
}
