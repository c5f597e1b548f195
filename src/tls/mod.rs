//! TLS termination: the `[tls]` certificates, loaded and checked with the config, picked
//! by SNI, in one rustls server config per loaded config.
//!
//! The crypto provider is aws-lc-rs, rustls' default: TLS 1.2 and 1.3 with rustls'
//! default suites (AES-GCM and ChaCha20-Poly1305 only, forward secrecy only), and the
//! hybrid post-quantum key exchange X25519MLKEM768 preferred for clients that offer it
//! (current browsers do) before X25519 and the NIST curves. ring builds faster but has
//! no post-quantum key exchange (rustls marks its provider deprecated for that), and
//! traffic recorded at the edge today should not be readable later. AWS-LC also has the
//! faster P-256 and RSA signing, which is what a new connection costs the server.
//!
//! A reload builds a new server config; a handshake takes whichever is live when it
//! starts, so an open connection keeps the certificate it was served. The session
//! ticket keys and the session cache outlive reloads: a client resuming after a
//! certificate rotation still resumes.

mod certs;

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};
use rustls::ServerConfig;

pub(crate) use certs::{load_pair, Certs, PairError};

/// The protocols offered by ALPN, in the server's order of preference.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];
/// TLS 1.2 sessions remembered for resumption by session id (TLS 1.3 uses tickets).
const SESSION_CACHE: usize = 4096;

/// The rustls server config for `certs`, which holds at least one pair.
pub(crate) fn server_config(certs: Certs) -> Result<Arc<ServerConfig>, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(certs));
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    config.session_storage = session_cache();
    if let Some(ticketer) = ticketer() {
        config.ticketer = ticketer;
    }
    Ok(Arc::new(config))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .clone()
}

fn session_cache() -> Arc<dyn StoresServerSessions + Send + Sync> {
    static CACHE: OnceLock<Arc<ServerSessionMemoryCache>> = OnceLock::new();
    CACHE
        .get_or_init(|| ServerSessionMemoryCache::new(SESSION_CACHE))
        .clone()
}

/// Stateless resumption tickets, with keys that rotate every 6 hours; the same for the
/// whole process, so tickets survive reloads. None (no tickets, resumption by session
/// id only) if the system's random source failed.
fn ticketer() -> Option<Arc<dyn ProducesTickets>> {
    static TICKETER: OnceLock<Option<Arc<dyn ProducesTickets>>> = OnceLock::new();
    TICKETER
        .get_or_init(|| match rustls::crypto::aws_lc_rs::Ticketer::new() {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(error = %e, "cannot make TLS session ticket keys; resumption by session id only");
                None
            }
        })
        .clone()
}

/// A hash of files' names and contents, in order: what the reload task compares to see
/// a certificate change on disk.
#[derive(Default)]
pub(crate) struct FilesDigest(xxhash_rust::xxh3::Xxh3);

impl FilesDigest {
    pub(crate) fn add(&mut self, path: &Path, bytes: &[u8]) {
        self.0.update(path.as_os_str().as_encoded_bytes());
        self.0.update(&(bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }

    pub(crate) fn finish(&self) -> u64 {
        self.0.digest()
    }
}

/// [`FilesDigest`] of the files at `paths` as they are now; one that cannot be read
/// counts as empty.
pub(crate) fn files_hash<'a>(paths: impl IntoIterator<Item = &'a Path>) -> u64 {
    let mut digest = FilesDigest::default();
    for path in paths {
        digest.add(path, &std::fs::read(path).unwrap_or_default());
    }
    digest.finish()
}
