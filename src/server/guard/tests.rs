//! The guard's state machine over an in-memory stream, with the clock paused: a
//! client's bytes in, what hyper would read and what the client gets back out.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::Instant;

use super::*;

const LIMITS: GuardLimits = GuardLimits {
    max_head: 8192,
    header_timeout: Duration::from_secs(10),
    idle_timeout: Duration::from_secs(60),
};

fn guarded() -> (DuplexStream, Guarded<DuplexStream>, Arc<ConnShared>) {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let shared = ConnShared::new(Default::default());
    (client, Guarded::new(server, LIMITS, shared.clone()), shared)
}

/// What the client has been sent, up to its end.
async fn answer(client: &mut DuplexStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(1), client.read(&mut buf)).await
    {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(start_paused = true)]
async fn a_head_that_never_completes_gets_408_at_the_header_timeout() {
    let (mut client, mut g, _) = guarded();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n")
        .await
        .expect("write");
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    // Nothing for hyper until the clock runs out; then the end of the stream.
    assert_eq!(g.read(&mut buf).await.expect("read"), 0);
    assert_eq!(started.elapsed(), LIMITS.header_timeout);
    drop(g);
    let out = answer(&mut client).await;
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    assert!(out.contains("x-cutover-error: client_timeout\r\n"), "{out}");
    assert!(out.contains("connection: close\r\n"), "{out}");
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_asks_to_be_parked() {
    let (_client, mut g, shared) = guarded();
    let started = Instant::now();
    let reading = tokio::spawn(async move {
        let mut buf = [0u8; 64];
        let _ = g.read(&mut buf).await;
    });
    shared.park.notified().await;
    assert!(shared.parking());
    assert_eq!(started.elapsed(), park_after(LIMITS.idle_timeout));
    reading.abort();
}

#[tokio::test(start_paused = true)]
async fn a_busy_connection_is_not_parked() {
    let (_client, mut g, shared) = guarded();
    shared.request_started();
    let reading = tokio::spawn(async move {
        let mut buf = [0u8; 64];
        let _ = g.read(&mut buf).await;
    });
    let parked = tokio::time::timeout(Duration::from_secs(30), shared.park.notified()).await;
    assert!(
        parked.is_err() && !shared.parking(),
        "parked with a request in flight"
    );
    reading.abort();
}

#[tokio::test(start_paused = true)]
async fn a_bad_head_is_answered_and_never_handed_over() {
    let (mut client, mut g, _) = guarded();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 1024];
    assert_eq!(g.read(&mut buf).await.expect("read"), 0);
    drop(g);
    let out = answer(&mut client).await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(out.contains("x-cutover-error: bad_request\r\n"), "{out}");
}

#[tokio::test(start_paused = true)]
async fn requests_before_a_bad_one_go_first_and_its_answer_never_overtakes_theirs() {
    let (mut client, mut g, shared) = guarded();
    let good = b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n";
    let mut both = good.to_vec();
    both.extend_from_slice(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    client.write_all(&both).await.expect("write");
    let mut buf = [0u8; 1024];
    let n = g.read(&mut buf).await.expect("read");
    assert_eq!(&buf[..n], good);
    // hyper took the good request and is serving it: the guard ends the stream
    // without an answer of its own, which would overtake the good one's.
    shared.request_started();
    assert_eq!(g.read(&mut buf).await.expect("read"), 0);
    drop(g);
    assert_eq!(answer(&mut client).await, "");
}

#[tokio::test(start_paused = true)]
async fn a_body_passes_whole_whatever_it_looks_like() {
    let (mut client, mut g, _) = guarded();
    let req = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 30\r\n\r\nGET /x HTTP/1.1\r\nHost: b\r\n\r\n!!GET /y HTTP/1.1\r\nHost: a\r\n\r\n";
    client.write_all(req).await.expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while got.len() < req.len() {
        let n = g.read(&mut buf).await.expect("read");
        assert!(n > 0, "ended after {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, req);
}
