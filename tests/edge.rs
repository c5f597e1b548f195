//! The edge of the proxy: who the client is. A PROXY protocol header (v1 text or v2
//! binary) from a cloud L4 balancer names it on `proxy_protocol` listeners, and
//! `trusted_proxies` decides whose `X-Forwarded-For` is believed. That client is what
//! `sticky = "ip"` hashes, what `X-Forwarded-For` carries upstream and what the access
//! log prints.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::client::send_on;
use support::process::Process;
use support::tempdir::Dir;
use support::{get, Proxy, Reply, Upstream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The header an L4 balancer sends for client 203.0.113.7.
const V1: &[u8] = b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\r\n";

const PP: &str = "proxy_protocol = true";

fn one_pool(up: &Upstream) -> String {
    format!(
        "[pools.p]\nbackends = [\"{}\"]\n[[routes]]\nname = \"r\"\nsplit = {{ p = 1 }}\n",
        up.addr
    )
}

/// Two pools at 50/50, sticky by client IP: which pool a request lands on tells which
/// client the proxy saw.
fn sticky_ip(ecs: &Upstream, k8s: &Upstream) -> String {
    format!(
        "[pools.ecs]\nbackends = [\"{}\"]\n[pools.k8s]\nbackends = [\"{}\"]\n\
         [[routes]]\nname = \"r\"\nsplit = {{ ecs = 50, k8s = 50 }}\nsticky = \"ip\"\n",
        ecs.addr, k8s.addr
    )
}

async fn pools() -> (Upstream, Upstream) {
    (Upstream::start("ecs").await, Upstream::start("k8s").await)
}

fn v1(source: &str) -> Vec<u8> {
    let family = if source.contains(':') { "TCP6" } else { "TCP4" };
    let dest = if source.contains(':') {
        "2001:db8::1"
    } else {
        "10.0.0.1"
    };
    format!("PROXY {family} {source} {dest} 56324 443\r\n").into_bytes()
}

fn v2(source: &str) -> Vec<u8> {
    use ppp::v2::{Builder, Command, Protocol, Version};
    let ip: std::net::IpAddr = source.parse().expect("source address");
    let src = SocketAddr::new(ip, 56324);
    let dst: SocketAddr = if src.is_ipv4() {
        "10.0.0.1:443".parse().expect("addr")
    } else {
        "[2001:db8::1]:443".parse().expect("addr")
    };
    Builder::with_addresses(Version::Two | Command::Proxy, Protocol::Stream, (src, dst))
        .build()
        .expect("v2 header")
}

/// A connection to `addr` that has sent `header` (and nothing else yet).
async fn connect_with(addr: SocketAddr, header: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect to proxy");
    s.set_nodelay(true).expect("nodelay");
    s.write_all(header).await.expect("write header");
    s
}

/// An HTTP/1.1 client on `io`, whatever came before on it.
async fn h1<T>(io: T) -> SendRequest<Full<Bytes>>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    send
}

fn get_req(path: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut b = Request::get(path).header("host", "example.test");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::new())).expect("request")
}

/// GET `/` with `headers` over a new connection that starts with `header`.
async fn get_via(addr: SocketAddr, header: &[u8], headers: &[(&str, &str)]) -> Reply {
    let mut send = h1(connect_with(addr, header).await).await;
    send_on(&mut send, get_req("/", headers)).await
}

/// The `x-forwarded-for` line of an echoed request head.
fn forwarded_for(head: &str) -> Option<String> {
    head.lines()
        .find_map(|l| l.strip_prefix("x-forwarded-for: "))
        .map(str::to_owned)
}

/// Writes `chunks` (with a pause between them, so that they arrive as separate reads),
/// then reads until the proxy closes or 5 s pass: what came back, and whether the
/// connection was closed (a FIN or a reset) within the 5 s.
async fn answer_to(addr: SocketAddr, chunks: &[&[u8]]) -> (Vec<u8>, bool) {
    let mut s = TcpStream::connect(addr).await.expect("connect to proxy");
    s.set_nodelay(true).expect("nodelay");
    for (i, chunk) in chunks.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if s.write_all(chunk).await.is_err() {
            break;
        }
    }
    let mut out = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    let closed = tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .is_ok();
    (out, closed)
}

// === PROXY protocol ===

#[tokio::test(flavor = "multi_thread")]
async fn a_v1_header_names_the_client_for_every_request_of_its_connection() {
    let up = Upstream::start("u").await;
    let proxy = Proxy::start_with(PP, &one_pool(&up)).await;
    let mut send = h1(connect_with(proxy.addr, V1).await).await;
    // A GET without a body and a POST with one take different paths through the
    // proxy; the header is read once, before either, and names the client for both.
    let r = send_on(&mut send, get_req("/first", &[])).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        forwarded_for(&r.body).as_deref(),
        Some("203.0.113.7"),
        "{}",
        r.body
    );
    let post = Request::post("/second")
        .header("host", "example.test")
        .header("x-forwarded-for", "192.0.2.1")
        .body(Full::new(Bytes::from_static(b"payload")))
        .expect("request");
    let r = send_on(&mut send, post).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        forwarded_for(&r.body).as_deref(),
        Some("192.0.2.1, 203.0.113.7"),
        "the PROXY address is appended to the client's list: {}",
        r.body
    );
    // An IPv6 client, in TCP6 form.
    let r = get_via(proxy.addr, &v1("2001:db8::7"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        forwarded_for(&r.body).as_deref(),
        Some("2001:db8::7"),
        "{}",
        r.body
    );
    assert_eq!(up.hits(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_v2_header_names_the_client() {
    use ppp::v2::{Builder, Command, Protocol, Type, Version};
    let up = Upstream::start("u").await;
    let proxy = Proxy::start_with(PP, &one_pool(&up)).await;
    for (source, header) in [
        ("203.0.113.7", v2("203.0.113.7")),
        ("2001:db8::7", v2("2001:db8::7")),
    ] {
        let r = get_via(proxy.addr, &header, &[]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(
            forwarded_for(&r.body).as_deref(),
            Some(source),
            "{}",
            r.body
        );
    }
    // TLVs after the addresses (AWS and GCP send some) are skipped, not taken for
    // the request.
    let src: SocketAddr = "198.51.100.23:40000".parse().expect("addr");
    let dst: SocketAddr = "10.0.0.1:443".parse().expect("addr");
    let header =
        Builder::with_addresses(Version::Two | Command::Proxy, Protocol::Stream, (src, dst))
            .write_tlv(Type::Authority, b"api.example.com".as_slice())
            .expect("tlv")
            .write_tlv(Type::NoOp, [0u8; 7].as_slice())
            .expect("tlv")
            .build()
            .expect("v2 header");
    let r = get_via(proxy.addr, &header, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        forwarded_for(&r.body).as_deref(),
        Some("198.51.100.23"),
        "{}",
        r.body
    );
    assert!(r.body.starts_with("GET / HTTP/1.1\n"), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_and_local_headers_leave_the_tcp_peer_as_the_client() {
    use ppp::v2::{AddressFamily, Builder, Command, Protocol, Version};
    let up = Upstream::start("u").await;
    let proxy = Proxy::start_with(PP, &one_pool(&up)).await;
    let src: SocketAddr = "203.0.113.7:56324".parse().expect("addr");
    let dst: SocketAddr = "10.0.0.1:443".parse().expect("addr");
    let headers: Vec<(&str, Vec<u8>)> = vec![
        ("v1 UNKNOWN", b"PROXY UNKNOWN\r\n".to_vec()),
        (
            // The rest of an UNKNOWN line is ignored, addresses or not.
            "v1 UNKNOWN with addresses",
            b"PROXY UNKNOWN 203.0.113.7 10.0.0.1 56324 443\r\n".to_vec(),
        ),
        (
            // What a balancer's own health check sends.
            "v2 LOCAL",
            Builder::new(
                Version::Two | Command::Local,
                AddressFamily::Unspecified | Protocol::Unspecified,
            )
            .build()
            .expect("v2 LOCAL"),
        ),
        (
            // LOCAL says: ignore the address block, whatever it holds.
            "v2 LOCAL with addresses",
            Builder::with_addresses(Version::Two | Command::Local, Protocol::Stream, (src, dst))
                .build()
                .expect("v2 LOCAL"),
        ),
    ];
    for (what, header) in headers {
        let r = get_via(proxy.addr, &header, &[]).await;
        assert_eq!(r.status, 200, "{what}: {}", r.body);
        assert_eq!(
            forwarded_for(&r.body).as_deref(),
            Some("127.0.0.1"),
            "{what}: the TCP peer is the client: {}",
            r.body
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_without_a_valid_header_is_closed_without_an_answer() {
    let up = Upstream::start("u").await;
    let proxy = Proxy::start_with(PP, &one_pool(&up)).await;
    let long = format!("PROXY TCP4 {} 10.0.0.1 1 2\r\n", "1".repeat(120));
    let mut bad_version = v2("203.0.113.7");
    bad_version[12] = 0x31; // version 3, command PROXY
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "a plain request",
            b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n".to_vec(),
        ),
        (
            "an h2c preface",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
        ),
        (
            "a bad address",
            b"PROXY TCP4 203.0.113.999 10.0.0.1 56324 443\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"
                .to_vec(),
        ),
        (
            "missing fields",
            b"PROXY TCP4 203.0.113.7\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
        ),
        (
            "an IPv6 address announced as TCP4",
            b"PROXY TCP4 2001:db8::7 10.0.0.1 56324 443\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"
                .to_vec(),
        ),
        (
            // v1 lines are at most 107 bytes.
            "an overlong v1 line",
            format!("{long}GET / HTTP/1.1\r\nHost: a\r\n\r\n").into_bytes(),
        ),
        ("a v2 header of an unknown version", {
            bad_version.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
            bad_version
        }),
    ];
    for (what, bytes) in cases {
        let (out, closed) = answer_to(proxy.addr, &[&bytes]).await;
        assert!(closed, "{what}: the connection must be closed");
        assert!(
            out.is_empty(),
            "{what}: no answer, got {:?}",
            String::from_utf8_lossy(&out)
        );
    }
    assert_eq!(up.hits(), 0, "nothing reached the upstream");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_header_may_arrive_in_pieces() {
    let up = Upstream::start("u").await;
    let proxy = Proxy::start_with(PP, &one_pool(&up)).await;
    let request = b"GET /pieces HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n";
    // v1 byte by byte; v2 cut inside its 12-byte signature, inside its fixed part
    // and inside the addresses.
    let bytewise: Vec<&[u8]> = V1.chunks(1).collect();
    let header = v2("198.51.100.4");
    let cut: Vec<&[u8]> = vec![&header[..5], &header[5..14], &header[14..20], &header[20..]];
    for (what, source, mut chunks) in [("v1", "203.0.113.7", bytewise), ("v2", "198.51.100.4", cut)]
    {
        chunks.push(request);
        let (out, closed) = answer_to(proxy.addr, &chunks).await;
        let out = String::from_utf8_lossy(&out);
        assert!(closed, "{what}: Connection: close is honoured");
        assert!(out.starts_with("HTTP/1.1 200"), "{what}: {out}");
        assert_eq!(
            forwarded_for(&up.last_seen()).as_deref(),
            Some(source),
            "{what}: {}",
            up.last_seen()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_sends_no_header_is_closed_after_client_header_timeout() {
    let up = Upstream::start("u").await;
    let proxy = Proxy::start_with(
        PP,
        &format!(
            "[limits]\nclient_header_timeout = \"1s\"\n{}",
            one_pool(&up)
        ),
    )
    .await;
    for (what, sent) in [
        ("nothing", &b""[..]),
        ("half a v1 header", b"PROXY TCP4 203.0."),
        ("half a v2 signature", &v2("203.0.113.7")[..6]),
    ] {
        let started = Instant::now();
        let (out, closed) = answer_to(proxy.addr, &[sent]).await;
        let took = started.elapsed();
        assert!(closed, "{what}: still open after 5 s");
        assert!(
            took >= Duration::from_millis(900),
            "{what}: closed after {took:?}, before client_header_timeout"
        );
        assert!(
            out.is_empty(),
            "{what}: {:?}",
            String::from_utf8_lossy(&out)
        );
    }
    assert_eq!(up.hits(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn sticky_ip_hashes_the_proxy_protocol_address() {
    let (ecs, k8s) = pools().await;
    let proxy = Proxy::start_with(PP, &sticky_ip(&ecs, &k8s)).await;
    let mut seen = std::collections::BTreeSet::new();
    for i in 1..=40 {
        let source = format!("198.51.100.{i}");
        // The TCP peer is 127.0.0.1 every time: only the header tells them apart.
        let first = get_via(proxy.addr, &v1(&source), &[]).await;
        assert_eq!(first.status, 200, "{}", first.body);
        let again = get_via(proxy.addr, &v2(&source), &[]).await;
        assert_eq!(
            again.upstream(),
            first.upstream(),
            "{source} moved between connections"
        );
        seen.insert(first.upstream().to_owned());
    }
    assert_eq!(
        seen.len(),
        2,
        "40 clients at 50/50 must land on both pools, got {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn h2c_follows_the_header() {
    let up = Upstream::start("u").await;
    let proxy = Proxy::start_with(PP, &one_pool(&up)).await;
    let stream = connect_with(proxy.addr, V1).await;
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    for i in 0..2 {
        let req = Request::get(format!("http://example.test/h2/{i}"))
            .body(Full::new(Bytes::new()))
            .expect("req");
        let resp = tokio::time::timeout(Duration::from_secs(20), send.send_request(req))
            .await
            .expect("reply in time")
            .expect("h2 response");
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        let body = String::from_utf8_lossy(&body).into_owned();
        assert_eq!(
            forwarded_for(&body).as_deref(),
            Some("203.0.113.7"),
            "{body}"
        );
    }
}

/// A self-signed certificate for `localhost`, written as `cert.pem` and `key.pem` in a
/// new directory, and a client config that trusts it.
fn tls_files() -> (Dir, Arc<rustls::ClientConfig>) {
    let dir = Dir::new();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    std::fs::write(dir.path.join("cert.pem"), ck.cert.pem()).expect("write cert");
    std::fs::write(dir.path.join("key.pem"), ck.signing_key.serialize_pem()).expect("write key");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).expect("root");
    // The process default provider: the one the crate features name (ring).
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    (dir, Arc::new(config))
}

async fn tls_over(
    stream: TcpStream,
    config: &Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let connect = tokio_rustls::TlsConnector::from(config.clone()).connect(name, stream);
    tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .expect("TLS handshake ends in time")
}

#[tokio::test(flavor = "multi_thread")]
async fn on_https_the_header_comes_before_the_tls_handshake() {
    let up = Upstream::start("u").await;
    let (dir, client) = tls_files();
    let proxy = Proxy::start_in(
        dir,
        &format!("https = [\"127.0.0.1:0\"]\n{PP}"),
        &format!(
            "[tls]\ncerts = [{{ cert = \"cert.pem\", key = \"key.pem\" }}]\n{}",
            one_pool(&up)
        ),
    )
    .await;
    let https = proxy.https.expect("an https listener");
    let tls = tls_over(connect_with(https, &v2("203.0.113.7")).await, &client)
        .await
        .expect("TLS after the PROXY header");
    let mut send = h1(tls).await;
    let r = send_on(&mut send, get_req("/tls", &[])).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        forwarded_for(&r.body).as_deref(),
        Some("203.0.113.7"),
        "{}",
        r.body
    );
    // A ClientHello where the header should be: no handshake, no answer.
    let plain = TcpStream::connect(https).await.expect("connect");
    assert!(
        tls_over(plain, &client).await.is_err(),
        "TLS without a PROXY header must fail"
    );
    assert_eq!(up.hits(), 1);
}

// === Trusted proxies ===

/// The pool each of 40 client addresses lands on through `send`, which sends one
/// request for address `i`.
async fn placements<F, Fut>(mut send: F) -> Vec<String>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    let mut out = Vec::new();
    for i in 1..=40 {
        let r = send(i).await;
        assert_eq!(r.status, 200, "{}", r.body);
        out.push(r.upstream().to_owned());
    }
    out
}

fn both_pools(placed: &[String]) -> bool {
    placed.iter().any(|p| p == "ecs") && placed.iter().any(|p| p == "k8s")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trusted_peers_forwarded_for_names_the_sticky_client() {
    let (ecs, k8s) = pools().await;
    let proxy = Proxy::start_with(
        "trusted_proxies = [\"127.0.0.0/8\"]",
        &sticky_ip(&ecs, &k8s),
    )
    .await;
    let xff = |i: usize| format!("198.51.100.{i}");
    let first = placements(|i| {
        let v = xff(i);
        async move { get(proxy.addr, "/", &[("x-forwarded-for", v.as_str())]).await }
    })
    .await;
    assert!(
        both_pools(&first),
        "40 believed clients at 50/50 must land on both pools: {first:?}"
    );
    let again = placements(|i| {
        let v = xff(i);
        async move { get(proxy.addr, "/", &[("x-forwarded-for", v.as_str())]).await }
    })
    .await;
    assert_eq!(first, again, "the same client must stay on its pool");
    // The list upstream is the client's with the immediate peer appended.
    let r = get(proxy.addr, "/", &[("x-forwarded-for", "198.51.100.9")]).await;
    assert_eq!(
        forwarded_for(&r.body).as_deref(),
        Some("198.51.100.9, 127.0.0.1"),
        "{}",
        r.body
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_untrusted_peers_forwarded_for_is_not_believed() {
    let (ecs, k8s) = pools().await;
    let proxy =
        Proxy::start_with("trusted_proxies = [\"10.0.0.0/8\"]", &sticky_ip(&ecs, &k8s)).await;
    let placed = placements(|i| {
        let v = format!("198.51.100.{i}");
        async move { get(proxy.addr, "/", &[("x-forwarded-for", v.as_str())]).await }
    })
    .await;
    assert!(
        placed.iter().all(|p| *p == placed[0]),
        "peer 127.0.0.1 is not trusted: every request is the same client, got {placed:?}"
    );
    let r = get(proxy.addr, "/", &[("x-forwarded-for", "198.51.100.9")]).await;
    assert_eq!(
        forwarded_for(&r.body).as_deref(),
        Some("198.51.100.9, 127.0.0.1"),
        "the list is still passed on, appended: {}",
        r.body
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_client_is_the_rightmost_untrusted_address() {
    let (ecs, k8s) = pools().await;
    // A bare address is a /32; both families may be listed.
    let proxy = Proxy::start_with(
        "trusted_proxies = [\"127.0.0.1\", \"127.0.0.0/8\", \"::1/128\"]",
        &sticky_ip(&ecs, &k8s),
    )
    .await;
    let alone = placements(|i| {
        let v = format!("198.51.100.{i}");
        async move { get(proxy.addr, "/", &[("x-forwarded-for", v.as_str())]).await }
    })
    .await;
    assert!(both_pools(&alone), "{alone:?}");
    // Trusted hops to the right are walked past; anything left of the client (which
    // it may have forged) is not looked at.
    let chained = placements(|i| {
        let v = format!("203.0.113.66, 198.51.100.{i}, 127.0.0.5");
        async move { get(proxy.addr, "/", &[("x-forwarded-for", v.as_str())]).await }
    })
    .await;
    assert_eq!(alone, chained, "client behind a trusted hop");
    // The same chain over several header fields.
    let split = placements(|i| {
        let v = format!("203.0.113.66, 198.51.100.{i}");
        async move {
            get(
                proxy.addr,
                "/",
                &[
                    ("x-forwarded-for", v.as_str()),
                    ("x-forwarded-for", "127.0.0.5, 127.0.0.9"),
                ],
            )
            .await
        }
    })
    .await;
    assert_eq!(alone, split, "client in the first of several fields");
    // A body takes the other path through the proxy; same rule.
    let mut send = h1(TcpStream::connect(proxy.addr).await.expect("connect")).await;
    let post = |i: usize| {
        Request::post("/")
            .header("host", "example.test")
            .header("x-forwarded-for", format!("198.51.100.{i}, 127.0.0.5"))
            .body(Full::new(Bytes::from_static(b"payload")))
            .expect("request")
    };
    for (i, pool) in alone.iter().enumerate() {
        let r = send_on(&mut send, post(i + 1)).await;
        assert_eq!(r.upstream(), pool, "POST from 198.51.100.{}", i + 1);
    }
    let r = get(
        proxy.addr,
        "/",
        &[("x-forwarded-for", "198.51.100.9, 127.0.0.5")],
    )
    .await;
    assert_eq!(
        forwarded_for(&r.body).as_deref(),
        Some("198.51.100.9, 127.0.0.5, 127.0.0.1"),
        "{}",
        r.body
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trusted_proxy_protocol_peer_passes_its_forwarded_for() {
    let (ecs, k8s) = pools().await;
    let proxy = Proxy::start_with(
        &format!("{PP}\ntrusted_proxies = [\"10.0.0.0/8\"]"),
        &sticky_ip(&ecs, &k8s),
    )
    .await;
    let direct = placements(|i| {
        let h = v1(&format!("198.51.100.{i}"));
        async move { get_via(proxy.addr, &h, &[]).await }
    })
    .await;
    assert!(both_pools(&direct), "{direct:?}");
    // An L7 proxy at 10.1.2.3 (trusted) behind the L4 balancer, forwarding the client.
    let via_trusted = placements(|i| {
        let v = format!("198.51.100.{i}");
        async move {
            get_via(
                proxy.addr,
                &v1("10.1.2.3"),
                &[("x-forwarded-for", v.as_str())],
            )
            .await
        }
    })
    .await;
    assert_eq!(
        direct, via_trusted,
        "the trusted PROXY peer's list is believed"
    );
    // The TCP peer (127.0.0.1) is not what is checked, and 203.0.113.7 is not trusted.
    let spoofed = placements(|i| {
        let v = format!("198.51.100.{i}");
        async move { get_via(proxy.addr, V1, &[("x-forwarded-for", v.as_str())]).await }
    })
    .await;
    assert!(
        spoofed.iter().all(|p| *p == spoofed[0]),
        "an untrusted PROXY peer's list is not believed: {spoofed:?}"
    );
    let r = get_via(
        proxy.addr,
        &v1("10.1.2.3"),
        &[("x-forwarded-for", "198.51.100.9")],
    )
    .await;
    assert_eq!(
        forwarded_for(&r.body).as_deref(),
        Some("198.51.100.9, 10.1.2.3"),
        "{}",
        r.body
    );
}

#[test]
fn trusted_proxies_take_addresses_and_cidrs_only() {
    let pool =
        "[pools.p]\nbackends = [\"127.0.0.1:1\"]\n[[routes]]\nname = \"r\"\nsplit = { p = 1 }\n";
    let good = format!(
        "[listen]\nproxy_protocol = true\ntrusted_proxies = [\"10.0.0.0/8\", \"192.0.2.1\", \"fd00::/8\", \"::1\"]\n{pool}"
    );
    if let Err(e) = cutover::config::parse(Path::new("t.toml"), &good) {
        panic!("valid [listen] refused:\n{e}");
    }
    for bad in ["not-an-ip", "10.0.0.0/33", "10.0.0.0/", "10.0.0.300"] {
        let text = format!("[listen]\ntrusted_proxies = [\"10.0.0.0/8\", \"{bad}\"]\n{pool}");
        match cutover::config::parse(Path::new("t.toml"), &text) {
            Ok(_) => panic!("{bad:?} accepted as a trusted proxy"),
            Err(e) => assert!(
                e.errors.iter().any(|d| d.line == 2),
                "{bad:?}: the error must point at line 2: {e}"
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_access_log_prints_the_client_it_believed() {
    let up = Upstream::start("u").await;
    let dir = Dir::new();
    let path = dir.path.join("cutover.toml");
    std::fs::write(
        &path,
        format!(
            "[listen]\nhttp = [\"127.0.0.1:0\"]\n{PP}\ntrusted_proxies = [\"127.0.0.0/8\"]\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n[access_log]\nenabled = true\n{}",
            one_pool(&up)
        ),
    )
    .expect("write config");
    let p = Process::start(&path);
    let client_of = |p: &Process| {
        let line = p
            .stdout
            .recv_timeout(Duration::from_secs(10))
            .expect("an access log line");
        let v: serde_json::Value = serde_json::from_str(&line).expect("json");
        v["client"].as_str().unwrap_or_default().to_owned()
    };
    // A trusted PROXY peer: its list is walked.
    let r = get_via(
        p.addr,
        &v1("127.0.0.3"),
        &[("x-forwarded-for", "198.51.100.9, 127.0.0.5")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(client_of(&p), "198.51.100.9");
    // An untrusted one: it is the client, whatever its list says.
    let r = get_via(p.addr, V1, &[("x-forwarded-for", "198.51.100.9")]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(client_of(&p), "203.0.113.7");
    // UNKNOWN: the TCP peer.
    let r = get_via(p.addr, b"PROXY UNKNOWN\r\n", &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(client_of(&p), "127.0.0.1");
}

/// nginx's rule for any listener: the first request of a connection must start within
/// the client header timeout; `idle_timeout` is for the time between requests.
#[tokio::test(flavor = "multi_thread")]
async fn a_silent_new_connection_is_closed_after_client_header_timeout() {
    let up = Upstream::start("u").await;
    let proxy = Proxy::start(&format!(
        "[limits]\nclient_header_timeout = \"1s\"\nidle_timeout = \"30s\"\n{}",
        one_pool(&up)
    ))
    .await;
    let started = Instant::now();
    let (out, closed) = answer_to(proxy.addr, &[b""]).await;
    let took = started.elapsed();
    assert!(closed, "a silent connection is still open after 5 s");
    assert!(took >= Duration::from_millis(900), "closed after {took:?}");
    assert!(out.is_empty(), "{:?}", String::from_utf8_lossy(&out));
    // After a request, the wait for the next one is `idle_timeout`, not the header's.
    let mut s = TcpStream::connect(proxy.addr).await.expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).await.expect("answer");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // The rest of the answer may still come; the connection must stay open after it.
    let until = tokio::time::Instant::now() + Duration::from_millis(2500);
    while let Ok(read) = tokio::time::timeout_at(until, s.read(&mut buf)).await {
        assert!(
            matches!(read, Ok(n) if n > 0),
            "closed between requests before idle_timeout"
        );
    }
}
