//! The config file: schema (`raw`), checked domain types (this file), and the one
//! function that turns the first into the second (`validate`).
//!
//! Nothing outside this module sees the raw TOML: a [`Config`] that exists is valid.

mod blank;
mod error;
mod raw;
mod recover;
pub mod units;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;

pub use error::{ConfigError, Diagnostic};

/// A loaded, fully validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from; relative paths inside resolve against its directory.
    pub path: PathBuf,
    /// Tokio worker threads; 0 means one per CPU core.
    pub workers: usize,
    pub listen: Listen,
    pub tls: Vec<CertPair>,
    /// The pairs of `tls` loaded, for the `https` listeners' handshakes.
    pub(crate) tls_server: Option<Arc<rustls::ServerConfig>>,
    /// The hash of the certificate and key bytes `tls_server` was built from
    /// ([`crate::tls::files_hash`] of `tls`'s files, in order, when they are unchanged).
    pub(crate) tls_files_hash: u64,
    pub admin: SocketAddr,
    pub limits: Limits,
    pub access_log: bool,
    /// Sorted by name.
    pub pools: Vec<PoolConfig>,
    /// In file order; matching does not depend on it.
    pub routes: Vec<RouteConfig>,
    /// [`content_hash`] of the text it was read from.
    pub content_hash: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    pub http: Vec<SocketAddr>,
    pub https: Vec<SocketAddr>,
    /// Every connection starts with a PROXY protocol header naming the client.
    pub proxy_protocol: bool,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub client_header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
    /// `None` is unlimited (the file's `"0"`).
    pub max_body_bytes: Option<u64>,
    pub(crate) shutdown_grace: Duration,
    pub retries: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    pub name: String,
    pub backends: Vec<BackendConfig>,
    pub(crate) resolve_every: Duration,
    pub warmup: Option<Warmup>,
    pub slow_start: Option<SlowStart>,
    pub eject: Eject,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    pub target: Target,
    pub weight: u32,
}

/// Where a backend lives: a fixed socket address, or a name that is resolved (and, in a
/// later step, re-resolved) into one backend per address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    Addr(SocketAddr),
    Host { name: String, port: u16 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warmup {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy: u32,
    pub(crate) unhealthy: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SlowStart {
    pub window: Duration,
    pub(crate) aggression: f64,
    pub min_percent: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eject {
    pub consecutive_failures: u32,
    pub base: Duration,
    pub max: Duration,
    pub(crate) max_percent: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RouteConfig {
    pub name: String,
    /// Empty: any host.
    pub hosts: Vec<HostPattern>,
    /// Normalised without a trailing slash: `/ad/` and `/ad` are both `/ad`, `/` is ``.
    pub path_prefix: String,
    /// (pool name, weight), sorted by pool name.
    pub split: Vec<(String, u32)>,
    pub sticky: Option<KeySource>,
    pub(crate) override_: Option<KeySource>,
    pub fallback: bool,
    pub(crate) ramp_up: Duration,
    pub autopilot: Option<Autopilot>,
}

/// A route's `[routes.autopilot]`: the ramp that raises `pool` step by step against
/// `baseline` (DESIGN "Autopilot").
#[derive(Debug, Clone, PartialEq)]
pub struct Autopilot {
    pub run: i64,
    pub pool: String,
    pub baseline: String,
    /// The pool's share at each step, in percent: increasing, within 1..=100.
    pub steps: Vec<u32>,
    pub hold: Duration,
    pub min_requests: u64,
    pub window: Duration,
    pub max_error_ratio: f64,
    pub max_latency_ratio: f64,
    pub max_latency: Option<Duration>,
    pub quantile: f64,
    pub source: Source,
}

/// Where autopilot's checks read their numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// This instance's own series.
    Local,
    /// The fleet's series, through the Prometheus at `url`; `selector` (label
    /// matchers such as `job="cutover-ad"`) narrows every query to this fleet's.
    Prometheus {
        url: String,
        selector: Option<String>,
    },
}

impl Autopilot {
    /// Whether `other` is the same ramp, which a reload continues rather than starts
    /// over: the same run, pools and steps. Limits, hold, window and source may change
    /// under a running ramp.
    pub fn same_ramp(&self, other: &Autopilot) -> bool {
        self.run == other.run
            && self.pool == other.pool
            && self.baseline == other.baseline
            && self.steps == other.steps
    }
}

/// A lower-cased host pattern from a route's `hosts`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    Exact(String),
    /// `*.example.com` is kept as `.example.com`.
    Suffix(String),
}

/// Where a request carries a key: for `sticky` (any) and `override` (cookie or header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Cookie(String),
    Header(HeaderName),
    ClientIp,
}

/// What a successful load yields besides the config itself.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Diagnostic>,
}

/// Reads and validates a config file. Every problem found is returned, each with its
/// `file:line:column`.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::unreadable(path, &e))?;
    parse(path, &text)
}

/// Validates config text as if it had been read from `path`.
pub fn parse(path: &Path, text: &str) -> Result<Loaded, ConfigError> {
    let mut loaded = validate::validate(path, text)?;
    loaded.config.content_hash = content_hash(text);
    Ok(loaded)
}

/// What tells one version of a config file from another: the reload task compares it
/// so that a rewrite with the same bytes is no reload.
pub fn content_hash(text: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(text.as_bytes())
}

impl Config {
    pub fn pool(&self, name: &str) -> Option<&PoolConfig> {
        self.pools.iter().find(|p| p.name == name)
    }
}

pub(crate) fn resolve_relative(config_path: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_path_buf();
    }
    match config_path.parent() {
        Some(dir) => dir.join(p),
        None => p.to_path_buf(),
    }
}
