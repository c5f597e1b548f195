//! `https` listeners: TLS 1.2 and 1.3 with ALPN `h2` and `http/1.1`, the certificate
//! picked by SNI among the `[tls] certs` pairs (the first is the default), certificate
//! files reloaded with the config and when they change on disk, and a handshake that
//! cannot hold a connection hostage.
//!
//! Every test writes its own CA and leaf certificates (tests/support/tls.rs) next to the
//! config, and checks them from the client side: which certificate was served (by its
//! DER bytes, and verified against the test CA for the expected name), which version and
//! ALPN protocol were negotiated, and what the upstream received. `curl` and `openssl
//! s_client` check the same from outside, as an operator would.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustls::ProtocolVersion;
use support::tls::{curl, read_until_closed, replace_file, s_client, Ca, Leaf, TlsClient};
use support::{eventually, get, tempdir, Proxy, Upstream};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

// === Setup ===

/// A cutover with one `https` listener and three certificate pairs, in this order:
/// `a` (`a.test`, `www.a.test`: the default), `b` (`*.b.test`), `c` (`c.test`), under
/// `certs/` next to the config; one upstream behind a catch-all route.
struct Edge {
    proxy: Proxy,
    https: SocketAddr,
    up: Upstream,
    ca: Ca,
    /// The test CA's certificate, for `curl --cacert` and `openssl -CAfile`.
    ca_file: PathBuf,
    a: Leaf,
    b: Leaf,
    c: Leaf,
    header_timeout: &'static str,
}

const PAIRS: &str = "[tls]\ncerts = [\n\
    { cert = \"certs/a.pem\", key = \"certs/a.key\" },\n\
    { cert = \"certs/b.pem\", key = \"certs/b.key\" },\n\
    { cert = \"certs/c.pem\", key = \"certs/c.key\" },\n]\n";

impl Edge {
    /// With `client_header_timeout = header_timeout`, which also bounds the handshake.
    async fn start(header_timeout: &'static str) -> Edge {
        let up = Upstream::start("app").await;
        let ca = Ca::new("cutover test CA");
        let (a, b, c) = (
            ca.leaf(&["a.test", "www.a.test"]),
            ca.leaf(&["*.b.test"]),
            ca.leaf(&["c.test"]),
        );
        let dir = tempdir::Dir::new();
        a.write(&dir.path, "certs/a");
        b.write(&dir.path, "certs/b");
        c.write(&dir.path, "certs/c");
        let ca_file = ca.write(&dir.path);
        let proxy = Proxy::start_in(
            dir,
            "https = [\"127.0.0.1:0\"]",
            &config(&up, header_timeout, PAIRS),
        )
        .await;
        let https = proxy.https.expect("the https listener is bound");
        Edge {
            proxy,
            https,
            up,
            ca,
            ca_file,
            a,
            b,
            c,
            header_timeout,
        }
    }

    /// A client trusting the test CA, sending `name` as SNI and requiring a certificate
    /// valid for it.
    fn client(&self, name: &str) -> TlsClient {
        TlsClient::new(&self.ca).sni(name)
    }

    fn leaves(&self) -> [&Leaf; 3] {
        [&self.a, &self.b, &self.c]
    }

    /// Writes `leaf` over the files of pair `stem` ("a", "b", "c"), as a certificate
    /// manager does: new files renamed over the old.
    fn install(&self, leaf: &Leaf, stem: &str) {
        leaf.write(&self.proxy.dir.path, &format!("certs/{stem}"));
    }

    /// One GET over a new TLS connection for `name`, HTTP/1.1; its status.
    async fn status_for(&self, name: &str) -> u16 {
        let conn = self
            .client(name)
            .connect(self.https)
            .await
            .expect("handshake");
        let mut session = conn.session().await;
        let reply = session.get(name, "/", &[]).await.expect("reply");
        reply.status.as_u16()
    }
}

fn config(up: &Upstream, header_timeout: &str, tls: &str) -> String {
    format!(
        "[limits]\nclient_header_timeout = \"{header_timeout}\"\n{tls}\
         [pools.app]\nbackends = [\"{}\"]\n[[routes]]\nname = \"r\"\nsplit = {{ app = 1 }}\n",
        up.addr
    )
}

/// The name a client asks for to be served `leaf` (a wildcard's one-label instance).
fn name_of(leaf: &Leaf) -> String {
    leaf.names[0].replace("*.", "x.")
}

// === Protocols ===

#[tokio::test(flavor = "multi_thread")]
async fn http1_over_tls_reaches_the_upstream_as_https() {
    let edge = Edge::start("10s").await;
    let conn = edge
        .client("a.test")
        .alpn(&["http/1.1"])
        .connect(edge.https)
        .await
        .expect("handshake");
    assert_eq!(conn.alpn().as_deref(), Some("http/1.1"));
    assert_eq!(conn.served(&edge.leaves()), edge.a.label);
    let mut session = conn.session().await;
    assert_eq!(session.version(), http::Version::HTTP_11);
    // Two requests on one connection: keep-alive works over TLS. The client's own
    // X-Forwarded-Proto is overwritten, not believed.
    for path in ["/one", "/two"] {
        let r = session
            .get("a.test", path, &[("x-forwarded-proto", "http")])
            .await
            .expect("reply over the same connection");
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.upstream(), "app");
        assert!(r.body.starts_with(&format!("GET {path} ")), "{}", r.body);
        assert!(r.body.contains("host: a.test\n"), "{}", r.body);
        assert!(r.body.contains("x-forwarded-proto: https\n"), "{}", r.body);
        assert!(!r.body.contains("x-forwarded-proto: http\n"), "{}", r.body);
    }
    assert_eq!(edge.up.hits(), 2);
    // The plain listener of the same proxy still says http.
    let plain = get(edge.proxy.addr, "/plain", &[]).await;
    assert!(
        plain.body.contains("x-forwarded-proto: http\n"),
        "{}",
        plain.body
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn h2_is_chosen_by_alpn() {
    let edge = Edge::start("10s").await;
    let conn = edge
        .client("www.a.test")
        .alpn(&["h2", "http/1.1"])
        .connect(edge.https)
        .await
        .expect("handshake");
    assert_eq!(conn.alpn().as_deref(), Some("h2"));
    let mut session = conn.session().await;
    assert_eq!(session.version(), http::Version::HTTP_2);
    for i in 0..3 {
        let r = session
            .get("www.a.test", &format!("/h2/{i}"), &[])
            .await
            .expect("h2 reply");
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.body.starts_with(&format!("GET /h2/{i} ")), "{}", r.body);
        assert!(r.body.contains("host: www.a.test\n"), "{}", r.body);
        assert!(r.body.contains("x-forwarded-proto: https\n"), "{}", r.body);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_offering_no_alpn_gets_http1() {
    let edge = Edge::start("10s").await;
    let conn = edge
        .client("a.test")
        .connect(edge.https)
        .await
        .expect("handshake");
    assert_eq!(conn.alpn(), None);
    let r = conn
        .http1()
        .await
        .get("a.test", "/", &[])
        .await
        .expect("reply");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("x-forwarded-proto: https\n"), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn tls12_and_tls13_each_carry_http1_and_h2() {
    let edge = Edge::start("10s").await;
    for (version, client) in [
        (ProtocolVersion::TLSv1_2, edge.client("c.test").tls12_only()),
        (ProtocolVersion::TLSv1_3, edge.client("c.test").tls13_only()),
    ] {
        for alpn in ["h2", "http/1.1"] {
            let conn = client
                .clone()
                .alpn(&[alpn])
                .connect(edge.https)
                .await
                .unwrap_or_else(|e| panic!("{version:?} with {alpn}: {e}"));
            assert_eq!(conn.version(), version);
            assert_eq!(conn.alpn().as_deref(), Some(alpn), "{version:?}");
            assert_eq!(conn.served(&edge.leaves()), edge.c.label);
            let r = conn
                .session()
                .await
                .get("c.test", "/", &[])
                .await
                .expect("reply");
            assert_eq!(r.status, 200, "{version:?} {alpn}: {}", r.body);
            assert!(r.body.contains("x-forwarded-proto: https\n"), "{}", r.body);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_verifies_the_chain_over_tls12_and_tls13_with_http1_and_h2() {
    let edge = Edge::start("10s").await;
    for (args, tls, alpn, http) in [
        (
            &["--http1.1", "--tlsv1.2", "--tls-max", "1.2"][..],
            "TLSv1.2",
            "http/1.1",
            "1.1",
        ),
        (
            &["--http2", "--tlsv1.2", "--tls-max", "1.2"][..],
            "TLSv1.2",
            "h2",
            "2",
        ),
        (
            &["--http1.1", "--tlsv1.3"][..],
            "TLSv1.3",
            "http/1.1",
            "1.1",
        ),
        (&["--http2", "--tlsv1.3"][..], "TLSv1.3", "h2", "2"),
    ] {
        let out = curl(edge.https, "x.b.test", "/curl", &edge.ca_file, args).await;
        assert_eq!(out.exit, Some(0), "curl {args:?}:\n{}", out.trace);
        assert_eq!(out.status, 200, "curl {args:?}: {}", out.body);
        assert_eq!(out.http_version, http, "curl {args:?}");
        assert!(
            out.trace.contains(&format!("SSL connection using {tls}")),
            "curl {args:?}:\n{}",
            out.trace
        );
        assert!(
            out.trace.contains(&format!("ALPN: server accepted {alpn}")),
            "curl {args:?}:\n{}",
            out.trace
        );
        assert!(out.body.contains("host: x.b.test:"), "{}", out.body);
        assert!(
            out.body.contains("x-forwarded-proto: https\n"),
            "{}",
            out.body
        );
    }
}

// === Certificate selection ===

#[tokio::test(flavor = "multi_thread")]
async fn sni_picks_the_certificate_by_the_names_it_carries() {
    let edge = Edge::start("10s").await;
    let (a, b, c) = (&edge.a, &edge.b, &edge.c);
    for (sni, expected) in [
        (Some("a.test"), a),
        // Any SAN name of a pair, not only the first.
        (Some("www.a.test"), a),
        // DNS names compare without regard to case.
        (Some("WWW.A.Test"), a),
        (Some("c.test"), c),
        (Some("x.b.test"), b),
        (Some("other.b.test"), b),
        // A wildcard covers exactly one label: neither deeper names nor the bare name.
        (Some("y.x.b.test"), a),
        (Some("b.test"), a),
        // Unknown, and none at all: the first pair.
        (Some("unknown.test"), a),
        (None, a),
    ] {
        let mut client = TlsClient::new(&edge.ca).verify_as(&name_of(expected));
        if let Some(name) = sni {
            client = client.sni(name);
        }
        let conn = client
            .connect(edge.https)
            .await
            .unwrap_or_else(|e| panic!("SNI {sni:?}: expected {}: {e}", expected.label));
        assert_eq!(conn.served(&edge.leaves()), expected.label, "SNI {sni:?}");
    }
    // Without SNI the connection still carries requests.
    let conn = TlsClient::new(&edge.ca)
        .verify_as("a.test")
        .connect(edge.https)
        .await
        .expect("handshake without SNI");
    let r = conn
        .session()
        .await
        .get("a.test", "/", &[])
        .await
        .expect("reply");
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn openssl_s_client_sees_the_version_alpn_and_certificate_for_its_servername() {
    let edge = Edge::start("10s").await;
    for (servername, args, subject, version, alpn) in [
        (
            Some("x.b.test"),
            &["-alpn", "h2,http/1.1", "-verify_hostname", "x.b.test"][..],
            "CN = *.b.test",
            "TLSv1.3",
            "h2",
        ),
        (
            Some("c.test"),
            &["-tls1_2", "-alpn", "http/1.1", "-verify_hostname", "c.test"][..],
            "CN = c.test",
            "TLSv1.2",
            "http/1.1",
        ),
        (
            Some("unknown.test"),
            &["-alpn", "h2"][..],
            "CN = a.test",
            "TLSv1.3",
            "h2",
        ),
        (
            None,
            &["-alpn", "http/1.1"][..],
            "CN = a.test",
            "TLSv1.3",
            "http/1.1",
        ),
    ] {
        let (exit, out) = s_client(edge.https, servername, &edge.ca_file, args).await;
        let what = format!("s_client {servername:?} {args:?}:\n{out}");
        assert_eq!(exit, Some(0), "{what}");
        assert!(out.contains(&format!("subject={subject}\n")), "{what}");
        assert!(
            out.contains(&format!("New, {version}, Cipher is")),
            "{what}"
        );
        assert!(out.contains(&format!("ALPN protocol: {alpn}\n")), "{what}");
        assert!(out.contains("Verify return code: 0 (ok)"), "{what}");
    }
}

// === Reload ===

#[tokio::test(flavor = "multi_thread")]
async fn files_replaced_on_disk_are_served_to_new_handshakes_and_open_connections_live_on() {
    let edge = Edge::start("10s").await;
    // Connections opened before the change, one of each protocol.
    let mut h1 = edge
        .client("a.test")
        .alpn(&["http/1.1"])
        .connect(edge.https)
        .await
        .expect("handshake")
        .session()
        .await;
    let mut h2 = edge
        .client("a.test")
        .alpn(&["h2"])
        .connect(edge.https)
        .await
        .expect("handshake")
        .session()
        .await;
    for s in [&mut h1, &mut h2] {
        assert_eq!(s.get("a.test", "/", &[]).await.expect("reply").status, 200);
    }
    // A certificate from another CA under the same names, renamed over the files; the
    // config file is not touched and no reload is asked for.
    let ca2 = Ca::new("rotated CA");
    let a2 = ca2.leaf(&["a.test", "www.a.test"]);
    edge.install(&a2, "a");
    let both = edge.client("a.test").trust(&ca2);
    let known = [&edge.a, &a2, &edge.b, &edge.c];
    eventually(
        "a new handshake gets the new certificate",
        async || match both.connect(edge.https).await {
            Ok(conn) => conn.leaf() == a2.der,
            Err(_) => false,
        },
    )
    .await;
    // The other pairs are as they were.
    let conn = edge.client("c.test").connect(edge.https).await.expect("c");
    assert_eq!(conn.served(&known), edge.c.label);
    // A new connection on the new certificate works, and so do the ones opened before,
    // for more than one request.
    let conn = both.connect(edge.https).await.expect("handshake");
    assert_eq!(conn.served(&known), a2.label);
    let r = conn.session().await.get("a.test", "/", &[]).await;
    assert_eq!(r.expect("reply").status, 200);
    for (name, s) in [("http/1.1", &mut h1), ("h2", &mut h2)] {
        for _ in 0..2 {
            let r = s
                .get("a.test", "/after", &[])
                .await
                .unwrap_or_else(|e| panic!("{name} connection opened before: {e}"));
            assert_eq!(r.status, 200, "{name}: {}", r.body);
        }
    }
}

/// Lays `leaf` out in `dir` as the kubelet mounts a `kubernetes.io/tls` Secret, and
/// updates it the same way: `tls.crt` and `tls.key` are symlinks into `..data`, itself a
/// symlink to a directory holding this version, swapped in by a rename; the previous
/// version's directory is then removed. No file the config names is written.
fn mount_secret(dir: &Path, leaf: &Leaf, version: u32) {
    use std::os::unix::fs::symlink;
    let data = format!("..{version}");
    std::fs::create_dir_all(dir.join(&data)).expect("secret version dir");
    std::fs::write(dir.join(&data).join("tls.crt"), &leaf.cert_pem).expect("write tls.crt");
    std::fs::write(dir.join(&data).join("tls.key"), &leaf.key_pem).expect("write tls.key");
    symlink(&data, dir.join("..data_tmp")).expect("symlink ..data_tmp");
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).expect("swap ..data");
    for file in ["tls.crt", "tls.key"] {
        if std::fs::symlink_metadata(dir.join(file)).is_err() {
            symlink(format!("..data/{file}"), dir.join(file)).expect("symlink file");
        }
    }
    if version > 1 {
        std::fs::remove_dir_all(dir.join(format!("..{}", version - 1))).expect("remove old");
    }
    let served = std::fs::read_to_string(dir.join("tls.crt")).expect("read through links");
    assert_eq!(served, leaf.cert_pem, "the mount shows version {version}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_from_a_kubernetes_secret_rotates_when_its_data_link_is_swapped() {
    let up = Upstream::start("app").await;
    let ca = Ca::new("cutover test CA");
    let ca2 = Ca::new("rotated CA");
    let (v1, v2) = (ca.leaf(&["a.test"]), ca2.leaf(&["a.test"]));
    let dir = tempdir::Dir::new();
    let secret = dir.path.join("secret");
    mount_secret(&secret, &v1, 1);
    let pair = "[tls]\ncerts = [{ cert = \"secret/tls.crt\", key = \"secret/tls.key\" }]\n";
    let proxy = Proxy::start_in(dir, "https = [\"127.0.0.1:0\"]", &config(&up, "10s", pair)).await;
    let https = proxy.https.expect("the https listener is bound");
    let client = TlsClient::new(&ca).trust(&ca2).sni("a.test");
    let conn = client.connect(https).await.expect("handshake");
    assert_eq!(conn.served(&[&v1, &v2]), v1.label);
    let mut open = conn.session().await;
    mount_secret(&secret, &v2, 2);
    eventually(
        "a new handshake gets the swapped-in certificate",
        async || match client.connect(https).await {
            Ok(conn) => conn.leaf() == v2.der,
            Err(_) => false,
        },
    )
    .await;
    let r = open
        .get("a.test", "/", &[])
        .await
        .expect("the old connection serves");
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_rereads_changed_files_and_takes_new_pairs() {
    let edge = Edge::start("10s").await;
    let mut open = edge
        .client("c.test")
        .alpn(&["http/1.1"])
        .connect(edge.https)
        .await
        .expect("handshake")
        .session()
        .await;
    assert_eq!(
        open.get("c.test", "/", &[]).await.expect("reply").status,
        200
    );
    let ca2 = Ca::new("rotated CA");
    let both = |name: &str| edge.client(name).trust(&ca2);
    // Only the certificate files change; the config is the same text. A reload (as
    // SIGHUP) must still read them again, and applies them by the time it returns.
    let c2 = ca2.leaf(&["c.test"]);
    edge.install(&c2, "c");
    edge.proxy.running().reload().await.expect("reload");
    let conn = both("c.test").connect(edge.https).await.expect("handshake");
    assert_eq!(conn.served(&[&edge.c, &c2]), c2.label);
    // A config that adds a pair: served at once after its reload.
    let d = ca2.leaf(&["d.test"]);
    d.write(&edge.proxy.dir.path, "certs/d");
    let pairs = PAIRS.replace(
        "},\n]\n",
        "},\n{ cert = \"certs/d.pem\", key = \"certs/d.key\" },\n]\n",
    );
    edge.proxy
        .try_reload(&config(&edge.up, edge.header_timeout, &pairs))
        .await
        .expect("reload with a fourth pair");
    let conn = both("d.test").connect(edge.https).await.expect("handshake");
    assert_eq!(conn.served(&[&edge.a, &d]), d.label);
    // The first pair is still the default.
    let conn = both("unknown.test")
        .verify_as("a.test")
        .connect(edge.https)
        .await
        .expect("handshake");
    assert_eq!(conn.served(&[&edge.a, &d]), edge.a.label);
    // The connection opened before both reloads still serves.
    for _ in 0..2 {
        let r = open.get("c.test", "/after", &[]).await.expect("reply");
        assert_eq!(r.status, 200, "{}", r.body);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mismatched_pair_fails_the_reload_and_the_old_certificate_stays() {
    let edge = Edge::start("10s").await;
    let generation = edge.proxy.generation();
    // The new certificate of `a` with the key of `c`: each file parses, together they
    // are not a pair.
    let ca2 = Ca::new("rotated CA");
    let a2 = ca2.leaf(&["a.test", "www.a.test"]);
    edge.install(&a2.with_key_of(&edge.c), "a");
    let err = edge
        .proxy
        .running()
        .reload()
        .await
        .expect_err("a certificate with the wrong key");
    // Named as the config writes it or in full: the one contains the other.
    let message = err.to_string();
    assert!(
        message.contains("certs/a.pem") || message.contains("certs/a.key"),
        "the error names certs/a.pem or certs/a.key: {message}"
    );
    assert_eq!(edge.proxy.generation(), generation);
    let known = [&edge.a, &a2, &edge.b, &edge.c];
    let both = edge.client("a.test").trust(&ca2);
    let conn = both.connect(edge.https).await.expect("handshake");
    assert_eq!(
        conn.served(&known),
        edge.a.label,
        "the old certificate stays"
    );
    assert_eq!(edge.status_for("a.test").await, 200);
    // The right key next to it: the watcher applies the pair. Only the key file's
    // content changes; the certificate file gets the same bytes again.
    edge.install(&a2, "a");
    eventually("the repaired pair is served", async || {
        match both.connect(edge.https).await {
            Ok(conn) => conn.leaf() == a2.der,
            Err(_) => false,
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_garbage_certificate_or_key_fails_the_reload_naming_the_file() {
    let edge = Edge::start("10s").await;
    let garbage = b"-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n";
    for (file, what) in [("certs/c.pem", "certificate"), ("certs/c.key", "key")] {
        let generation = edge.proxy.generation();
        replace_file(&edge.proxy.dir.path.join(file), garbage);
        let err = edge
            .proxy
            .running()
            .reload()
            .await
            .expect_err("a file that is not PEM");
        // Named as the config writes it or in full: the one contains the other.
        let message = err.to_string();
        assert!(
            message.contains(file),
            "the {what} error names {file}: {message}"
        );
        assert_eq!(edge.proxy.generation(), generation);
        let conn = edge.client("c.test").connect(edge.https).await.expect("c");
        assert_eq!(
            conn.served(&edge.leaves()),
            edge.c.label,
            "after a bad {what}"
        );
        assert_eq!(edge.status_for("c.test").await, 200);
        // Put the good pair back for the next case.
        edge.install(&edge.c, "c");
        edge.proxy
            .running()
            .reload()
            .await
            .expect("the good pair reloads");
    }
    // An empty file is no certificate either.
    replace_file(&edge.proxy.dir.path.join("certs/b.pem"), b"");
    let err = edge
        .proxy
        .running()
        .reload()
        .await
        .expect_err("an empty file");
    assert!(
        err.to_string().contains("certs/b.pem"),
        "names certs/b.pem: {err}"
    );
    let conn = edge
        .client("x.b.test")
        .connect(edge.https)
        .await
        .expect("b");
    assert_eq!(conn.served(&edge.leaves()), edge.b.label);
}

// === Handshakes that go wrong ===

/// How long the test waits for a connection to be closed: well past the handshake
/// timeout of the stalled-handshake tests.
const CLOSE_WITHIN: Duration = Duration::from_secs(8);

/// The handshake timeout of the stalled-handshake tests: long enough for the other
/// clients' handshakes and requests to finish well inside it on a loaded machine.
const STALL: Duration = Duration::from_secs(3);

/// Asserts that `stalled`, opened at `opened`, is closed after [`STALL`] and not before.
async fn closed_after_the_timeout(stalled: &mut TcpStream, opened: Instant) {
    let out = read_until_closed(stalled, CLOSE_WITHIN).await;
    assert!(
        out.closed_after.is_some(),
        "still open after {CLOSE_WITHIN:?}"
    );
    let lived = opened.elapsed();
    assert!(
        lived >= STALL - Duration::from_millis(100),
        "closed after {lived:?}, before the {STALL:?} handshake timeout"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_clients_are_closed_after_the_timeout_and_others_are_served_meanwhile() {
    let edge = Edge::start("3s").await;
    let opened = Instant::now();
    // Several: a listener that handshakes one connection at a time, or a few, is stuck.
    let mut silent = Vec::new();
    for _ in 0..8 {
        silent.push(TcpStream::connect(edge.https).await.expect("connect"));
    }
    // While they hold their connections, others complete handshakes and requests.
    for name in ["a.test", "x.b.test", "c.test"] {
        assert_eq!(edge.status_for(name).await, 200);
    }
    let served_by = opened.elapsed();
    assert!(
        served_by < STALL,
        "the others took {served_by:?}, as long as the stalled handshakes"
    );
    for s in &mut silent {
        closed_after_the_timeout(s, opened).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn half_a_client_hello_is_closed_after_the_timeout_and_others_are_served_meanwhile() {
    let edge = Edge::start("3s").await;
    let hello = edge.client("a.test").alpn(&["h2"]).client_hello();
    assert_eq!(hello[0], 0x16, "a handshake record");
    let opened = Instant::now();
    let mut half = TcpStream::connect(edge.https).await.expect("connect");
    half.write_all(&hello[..hello.len() / 2])
        .await
        .expect("write half a hello");
    for name in ["a.test", "c.test"] {
        assert_eq!(edge.status_for(name).await, 200);
    }
    let served_by = opened.elapsed();
    assert!(
        served_by < STALL,
        "the others took {served_by:?}, as long as the stalled handshake"
    );
    closed_after_the_timeout(&mut half, opened).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_gets_the_connection_closed_at_once() {
    // A long handshake timeout: a close within seconds is the garbage's doing.
    let edge = Edge::start("30s").await;
    for garbage in [
        // Neither TLS nor HTTP.
        &b"\x00\x01\x02 garbage garbage garbage \xff\xfe\r\n\r\n"[..],
        // A handshake record whose content is not a handshake message.
        &b"\x16\x03\x01\x00\x10this is not tls!"[..],
        // A record header announcing more than any record may hold.
        &b"\x16\x03\x01\xff\xffxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"[..],
    ] {
        let mut s = TcpStream::connect(edge.https).await.expect("connect");
        s.write_all(garbage).await.expect("write garbage");
        let out = read_until_closed(&mut s, CLOSE_WITHIN).await;
        assert!(
            out.closed_after.is_some(),
            "still open {CLOSE_WITHIN:?} after {garbage:x?}"
        );
        assert_eq!(edge.status_for("a.test").await, 200);
    }
    assert_eq!(
        edge.up.hits(),
        3,
        "only the good requests reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_on_the_tls_port_gets_a_400_and_the_connection_closed() {
    let edge = Edge::start("30s").await;
    let mut s = TcpStream::connect(edge.https).await.expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await
        .expect("write");
    // The client keeps its side open: closing is the proxy's to do.
    let out = read_until_closed(&mut s, CLOSE_WITHIN).await;
    let text = out.text();
    assert!(text.starts_with("HTTP/1.1 400"), "{text:?}");
    let head = text.to_ascii_lowercase();
    assert!(
        head.contains("\r\nx-cutover-error: bad_request\r\n"),
        "{text:?}"
    );
    assert!(
        out.closed_after.is_some(),
        "still open {CLOSE_WITHIN:?} after answering: {text:?}"
    );
    assert_eq!(edge.up.hits(), 0, "nothing was forwarded");
    assert_eq!(edge.status_for("a.test").await, 200);
}

/// Listeners need a restart to change, so a reload that drops `https` and `[tls]`
/// together would leave the bound https port without certificates: it is refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_reload_cannot_take_the_certificates_from_a_bound_https_listener() {
    let edge = Edge::start("10s").await;
    let generation = edge.proxy.generation();
    let without = format!(
        "[listen]\nhttp = [\"127.0.0.1:0\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n{}",
        config(&edge.up, "10s", "")
    );
    replace_file(&edge.proxy.config_path, without.as_bytes());
    let err = edge
        .proxy
        .running()
        .reload()
        .await
        .expect_err("certificates removed under a bound https listener");
    assert!(err.to_string().contains("[tls]"), "{err}");
    assert_eq!(edge.proxy.generation(), generation);
    assert_eq!(edge.status_for("a.test").await, 200);
}
