//! TLS for tests: a throwaway CA and the leaf certificates it signs (rcgen), a rustls
//! client that reports what it negotiated and which certificate it was served, HTTP/1.1
//! and HTTP/2 over that client, and the two command-line checkers an operator would
//! reach for (`curl`, `openssl s_client`).
//!
//! Nothing here knows about cutover: the same helpers were first pointed at nginx, to
//! know that the client side is right before the server side existed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, ProtocolVersion, SignatureScheme};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::client::Reply;

/// Every network wait in this module gives up after this long.
const WAIT: Duration = Duration::from_secs(10);

static TLS12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
static TLS13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

// === impl Ca ===

/// A certificate authority that exists for one test.
pub struct Ca {
    name: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    /// A new self-signed CA whose subject is `CN=<name>`.
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.distinguished_name = subject(name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("ca key");
        Ca {
            name: name.to_owned(),
            issuer: CertifiedIssuer::self_signed(params, key).expect("self-sign ca"),
        }
    }

    /// A server certificate for `names` (DNS SANs, `*.x` wildcards allowed), with
    /// `CN=<first name>`, signed by this CA, and its own new key.
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("leaf params");
        params.distinguished_name = subject(&names[0]);
        params.is_ca = IsCa::NoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &*self.issuer).expect("sign leaf");
        Leaf {
            label: format!("{} from {}", names.join(","), self.name),
            names,
            der: cert.der().clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes the CA certificate to `dir/ca.pem` (for `curl --cacert`, `openssl
    /// -CAfile`) and returns that path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, self.pem()).expect("write ca.pem");
        path
    }
}

fn subject(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

// === impl Leaf ===

/// A server certificate and its private key, both PEM.
#[derive(Clone)]
pub struct Leaf {
    /// "NAMES from CA", for assertion messages.
    pub label: String,
    /// The DNS names in its SAN, in order; the first is also its CN.
    pub names: Vec<String>,
    /// What a client is served: compare with [`TlsConn::leaf`].
    pub der: CertificateDer<'static>,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Leaf {
    /// This certificate with the key of `other`: a pair that does not belong together.
    pub fn with_key_of(&self, other: &Leaf) -> Leaf {
        Leaf {
            key_pem: other.key_pem.clone(),
            ..self.clone()
        }
    }

    /// Writes `<stem>.pem` and `<stem>.key` under `dir` (creating parent directories),
    /// each as a new file renamed over the old, as a certificate manager does. Returns
    /// the two paths. A file watcher sees two complete files, never a half-written one.
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{stem}.pem"));
        let key = dir.join(format!("{stem}.key"));
        replace_file(&cert, self.cert_pem.as_bytes());
        replace_file(&key, self.key_pem.as_bytes());
        (cert, key)
    }
}

/// Writes `bytes` to a new file next to `path` and renames it over `path`.
pub fn replace_file(path: &Path, bytes: &[u8]) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create cert dir");
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, bytes).expect("write temp file");
    std::fs::rename(&tmp, path).expect("rename over");
}

// === impl TlsClient ===

/// How to connect: which CAs to trust, what SNI to send, which name the served
/// certificate must carry, which ALPN protocols to offer and which TLS versions.
#[derive(Clone)]
pub struct TlsClient {
    roots: Vec<CertificateDer<'static>>,
    sni: Option<String>,
    verify_as: Option<String>,
    alpn: Vec<Vec<u8>>,
    versions: &'static [&'static rustls::SupportedProtocolVersion],
}

impl TlsClient {
    /// Trusts `ca` only; sends no SNI, offers no ALPN, TLS 1.2 and 1.3, until told.
    pub fn new(ca: &Ca) -> TlsClient {
        TlsClient {
            roots: vec![ca.der()],
            sni: None,
            verify_as: None,
            alpn: Vec::new(),
            versions: rustls::ALL_VERSIONS,
        }
    }

    /// Trusts `ca` as well.
    pub fn trust(mut self, ca: &Ca) -> TlsClient {
        self.roots.push(ca.der());
        self
    }

    /// Sends `name` as SNI (and, unless [`TlsClient::verify_as`] says otherwise,
    /// requires the served certificate to be valid for it).
    pub fn sni(mut self, name: &str) -> TlsClient {
        self.sni = Some(name.to_owned());
        self
    }

    /// Requires the served certificate to chain to a trusted CA *and* be valid for
    /// `name`, whatever SNI was sent (or none): how a test asks "was I given the
    /// default certificate?".
    pub fn verify_as(mut self, name: &str) -> TlsClient {
        self.verify_as = Some(name.to_owned());
        self
    }

    /// Offers these ALPN protocols, in this order.
    pub fn alpn(mut self, protocols: &[&str]) -> TlsClient {
        self.alpn = protocols.iter().map(|p| p.as_bytes().to_vec()).collect();
        self
    }

    pub fn tls12_only(mut self) -> TlsClient {
        self.versions = TLS12;
        self
    }

    pub fn tls13_only(mut self) -> TlsClient {
        self.versions = TLS13;
        self
    }

    fn config(&self) -> Arc<rustls::ClientConfig> {
        // aws-lc-rs, as cutover itself is built (Cargo.toml).
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for ca in &self.roots {
            roots.add(ca.clone()).expect("trust test ca");
        }
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .expect("verifier");
        let name = self
            .verify_as
            .clone()
            .or_else(|| self.sni.clone())
            .expect("a name to verify the certificate against: sni() or verify_as()");
        let verifier = VerifyAs {
            inner,
            name: ServerName::try_from(name).expect("dns name"),
        };
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(self.versions)
            .expect("versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        config.alpn_protocols = self.alpn.clone();
        config.enable_sni = self.sni.is_some();
        Arc::new(config)
    }

    fn server_name(&self) -> ServerName<'static> {
        // Without SNI the name only feeds the verifier, which uses its own.
        let name = self.sni.clone().unwrap_or_else(|| "no-sni.invalid".into());
        ServerName::try_from(name).expect("dns name")
    }

    /// Connects and completes a handshake, within 10 s.
    pub async fn connect(&self, addr: SocketAddr) -> std::io::Result<TlsConn> {
        let connector = TlsConnector::from(self.config());
        let name = self.server_name();
        let handshake = async move {
            let tcp = TcpStream::connect(addr).await?;
            connector.connect(name, tcp).await
        };
        let stream = tokio::time::timeout(WAIT, handshake)
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "tls handshake"))??;
        Ok(TlsConn { stream })
    }

    /// The first flight this client would send: one ClientHello record, as bytes.
    pub fn client_hello(&self) -> Vec<u8> {
        let mut conn = rustls::ClientConnection::new(self.config(), self.server_name())
            .expect("client connection");
        let mut out = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut out).expect("write client hello");
        }
        out
    }
}

/// The standard WebPKI verifier, checking the chain against the trusted CAs and the
/// certificate against a name chosen by the test rather than the SNI sent.
#[derive(Debug)]
struct VerifyAs {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for VerifyAs {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _sni: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

// === impl TlsConn ===

/// A completed client handshake.
pub struct TlsConn {
    pub stream: TlsStream<TcpStream>,
}

impl TlsConn {
    pub fn version(&self) -> ProtocolVersion {
        self.stream
            .get_ref()
            .1
            .protocol_version()
            .expect("handshake done")
    }

    /// The ALPN protocol the server chose, if any.
    pub fn alpn(&self) -> Option<String> {
        self.stream
            .get_ref()
            .1
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned())
    }

    /// The certificate the server presented for itself.
    pub fn leaf(&self) -> CertificateDer<'static> {
        self.stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .expect("server certificate")
            .clone()
            .into_owned()
    }

    /// Which of `leaves` the server presented (its label), or a description of the
    /// stranger, for assertion messages.
    pub fn served(&self, leaves: &[&Leaf]) -> String {
        let der = self.leaf();
        leaves
            .iter()
            .find(|l| l.der == der)
            .map(|l| l.label.clone())
            .unwrap_or_else(|| format!("an unknown certificate of {} bytes", der.len()))
    }

    /// HTTP over this connection: HTTP/2 when ALPN chose `h2`, else HTTP/1.1.
    pub async fn session(self) -> Session {
        if self.alpn().as_deref() == Some("h2") {
            self.http2().await
        } else {
            self.http1().await
        }
    }

    pub async fn http1(self) -> Session {
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(self.stream))
            .await
            .expect("http/1.1 handshake");
        tokio::spawn(conn);
        Session {
            sender: Sender::H1(send),
        }
    }

    pub async fn http2(self) -> Session {
        let (send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(self.stream))
                .await
                .expect("h2 handshake");
        tokio::spawn(conn);
        Session {
            sender: Sender::H2(send),
        }
    }
}

// === impl Session ===

/// One client connection speaking HTTP/1.1 (keep-alive) or HTTP/2.
pub struct Session {
    sender: Sender,
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Session {
    pub fn version(&self) -> http::Version {
        match self.sender {
            Sender::H1(_) => http::Version::HTTP_11,
            Sender::H2(_) => http::Version::HTTP_2,
        }
    }

    /// GET `path` for `host`, with `headers`; the whole reply, or the error that ended
    /// the connection, within 10 s.
    pub async fn get(
        &mut self,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Reply, String> {
        let builder = match self.sender {
            // HTTP/1.1 in origin form with a Host header; HTTP/2 with :authority.
            Sender::H1(_) => Request::get(path).header("host", host),
            Sender::H2(_) => Request::get(format!("https://{host}{path}")),
        };
        let req = headers
            .iter()
            .fold(builder, |b, (k, v)| b.header(*k, *v))
            .body(Full::new(Bytes::new()))
            .expect("request");
        let expected = self.version();
        let exchange = async {
            let resp = match &mut self.sender {
                Sender::H1(send) => {
                    send.ready().await.map_err(|e| e.to_string())?;
                    send.send_request(req).await
                }
                Sender::H2(send) => {
                    send.ready().await.map_err(|e| e.to_string())?;
                    send.send_request(req).await
                }
            }
            .map_err(|e| e.to_string())?;
            let version = resp.version();
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
            assert_eq!(version, expected, "response version");
            Ok(Reply {
                status: parts.status,
                headers: parts.headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            })
        };
        tokio::time::timeout(WAIT, exchange)
            .await
            .map_err(|_| "no reply within 10 s".to_owned())?
    }
}

// === Raw sockets ===

/// Reads from `stream` (discarding nothing: the bytes are returned) until the peer
/// closes it or resets it, for at most `limit`. `closed_after` is how long that took,
/// or `None` when the connection was still open at `limit`.
pub async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Closed {
    let start = Instant::now();
    let mut bytes = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
            }
        }
    };
    let closed = tokio::time::timeout(limit, read).await.is_ok();
    Closed {
        bytes,
        closed_after: closed.then(|| start.elapsed()),
    }
}

/// What [`read_until_closed`] saw.
#[derive(Debug)]
pub struct Closed {
    pub bytes: Vec<u8>,
    pub closed_after: Option<Duration>,
}

impl Closed {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

// === External checkers ===

/// What `curl` made of one request.
#[derive(Debug)]
pub struct Curl {
    /// curl's exit status: 0 when the chain verified and a response arrived.
    pub exit: Option<i32>,
    /// `%{http_version}`: "1.1" or "2".
    pub http_version: String,
    /// `%{response_code}`.
    pub status: u16,
    pub body: String,
    /// The `-v` trace: "SSL connection using TLSv1.3 / ...", "ALPN: server accepted h2".
    pub trace: String,
}

/// `curl -v https://<name>:<port><path>` resolved to `addr`, verifying the chain
/// against `ca_file`, with `args` added (`--http1.1`, `--http2`, `--tlsv1.3`, ...).
pub async fn curl(addr: SocketAddr, name: &str, path: &str, ca_file: &Path, args: &[&str]) -> Curl {
    const MARK: &str = "\n--curl--";
    ensure_clients();
    let out = tokio::process::Command::new("curl")
        .arg("-sSv")
        .args(["--max-time", "10", "--cacert"])
        .arg(ca_file)
        .arg("--resolve")
        .arg(format!("{name}:{}:{}", addr.port(), addr.ip()))
        .arg("-w")
        .arg(format!("{MARK}%{{http_version}} %{{response_code}}"))
        .args(args)
        .arg(format!("https://{name}:{}{path}", addr.port()))
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(20), out)
        .await
        .expect("curl finished")
        .expect("run curl");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = stdout.rsplit_once(MARK).unwrap_or((&stdout, ""));
    let (http_version, status) = tail.split_once(' ').unwrap_or((tail, "0"));
    Curl {
        exit: out.status.code(),
        http_version: http_version.to_owned(),
        status: status.trim().parse().unwrap_or(0),
        body: body.to_owned(),
        trace: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `openssl s_client` against `addr`, verifying against `ca_file` and failing on a bad
/// chain, with `servername` as SNI (none when `None`) and `args` added (`-alpn h2`,
/// `-tls1_2`, `-verify_hostname NAME`). Returns its exit status and everything it
/// printed, among which (OpenSSL 3.0) "subject=CN = a.test", "New, TLSv1.3, Cipher is
/// ...", "ALPN protocol: h2" and "Verify return code: 0 (ok)".
pub async fn s_client(
    addr: SocketAddr,
    servername: Option<&str>,
    ca_file: &Path,
    args: &[&str],
) -> (Option<i32>, String) {
    ensure_clients();
    let mut cmd = tokio::process::Command::new("openssl");
    cmd.arg("s_client")
        .arg("-connect")
        .arg(addr.to_string())
        .arg("-CAfile")
        .arg(ca_file)
        .arg("-verify_return_error");
    match servername {
        Some(name) => cmd.args(["-servername", name]),
        None => cmd.arg("-noservername"),
    };
    // stdin at EOF: it says what it negotiated and hangs up.
    let out = cmd
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(20), out)
        .await
        .expect("openssl finished")
        .expect("run openssl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// curl and openssl on PATH: `tests/deps/install` adds them when missing, so that a
/// plain `cargo test` works on a fresh machine.
fn ensure_clients() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let on_path = super::prometheus::on_path;
        if on_path("curl").is_some() && on_path("openssl").is_some() {
            return;
        }
        super::install_deps();
    });
}
