//! Turns the raw file into a [`Config`], or into every error it contains.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::HeaderName;
use toml::Spanned;

use super::raw::{self, RawConfig};
use super::recover::{self, Deserialized};
use super::units::HumanDuration;
use super::{
    BackendConfig, CertPair, Config, ConfigError, Diagnostic, Eject, HostPattern, KeySource,
    Limits, Listen, Loaded, PoolConfig, RouteConfig, SlowStart, Target, Warmup,
};

/// Collects findings against one file's text.
struct Checker<'a> {
    path: &'a Path,
    text: &'a str,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

pub(super) fn validate(path: &Path, text: &str) -> Result<Loaded, ConfigError> {
    let Deserialized { raw, mut errors } = recover::deserialize(path, text);
    let Some(raw) = raw else {
        return Err(ConfigError::in_file_order(errors));
    };
    // `raw` may come from a blanked copy of `text`; its spans are the same offsets.
    let mut c = Checker {
        path,
        text,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let config = c.config(raw, text);
    errors.append(&mut c.errors);
    if errors.is_empty() {
        Ok(Loaded {
            config,
            warnings: c.warnings,
        })
    } else {
        Err(ConfigError::in_file_order(errors))
    }
}

impl Checker<'_> {
    fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        let d = Diagnostic::at(self.path, self.text, span, message);
        self.errors.push(d);
    }

    fn warn(&mut self, span: Range<usize>, message: impl Into<String>) {
        let d = Diagnostic::at(self.path, self.text, span, message);
        self.warnings.push(d);
    }

    fn config(&mut self, raw: RawConfig, text: &str) -> Config {
        let listen = self.listen(&raw.listen);
        let tls = match &raw.tls {
            Some(t) => self.tls(t),
            None => Vec::new(),
        };
        if !listen.https.is_empty() && tls.is_empty() {
            let span = raw
                .listen
                .https
                .as_ref()
                .and_then(|v| v.first())
                .map_or(0..0, |s| s.span());
            self.error(
                span,
                "an https listener needs certificates: add [tls] certs = [{ cert = ..., key = ... }]",
            );
        }
        let admin = match &raw.admin.listen {
            Some(s) => self.socket_addr(s),
            None => Some(SocketAddr::from(([127, 0, 0, 1], 9900))),
        }
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9900)));
        // Port 0 asks the kernel for a free port, so it can never clash.
        if admin.port() != 0 && (listen.http.contains(&admin) || listen.https.contains(&admin)) {
            let span = raw.admin.listen.as_ref().map_or(0..0, |s| s.span());
            self.error(
                span,
                format!("admin listener {admin} is also a proxy listener; give it its own port"),
            );
        }
        let limits = self.limits(&raw.limits);
        let pools: Vec<PoolConfig> = raw
            .pools
            .iter()
            .map(|(name, pool)| self.pool(name, pool))
            .collect();
        let routes = self.routes(&raw.routes, &raw.pools);
        for (name, pool) in &raw.pools {
            let used = routes
                .iter()
                .any(|r| r.split.iter().any(|(p, _)| p == name));
            if !used {
                self.warn(
                    pool.span(),
                    format!("pool {name:?} is not used by any route"),
                );
            }
        }
        Config {
            path: self.path.to_path_buf(),
            workers: match &raw.runtime.workers {
                None => 0,
                Some(w) if *w.get_ref() > 1024 => {
                    self.error(
                        w.span(),
                        "workers must be at most 1024 (0 = one per CPU core)",
                    );
                    0
                }
                Some(w) => *w.get_ref() as usize,
            },
            listen,
            tls,
            admin,
            limits,
            access_log: raw.access_log.enabled.unwrap_or(true),
            pools,
            routes,
            content_hash: xxhash_rust::xxh3::xxh3_64(text.as_bytes()),
        }
    }

    fn socket_addr(&mut self, s: &Spanned<String>) -> Option<SocketAddr> {
        match s.get_ref().parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.error(
                    s.span(),
                    format!(
                        "bad listen address {:?}: expected ip:port, e.g. \"0.0.0.0:8080\"",
                        s.get_ref()
                    ),
                );
                None
            }
        }
    }

    fn listen(&mut self, raw: &raw::RawListen) -> Listen {
        let http = match &raw.http {
            Some(v) => v.iter().filter_map(|s| self.socket_addr(s)).collect(),
            None => vec![SocketAddr::from(([0, 0, 0, 0], 8080))],
        };
        let https = match &raw.https {
            Some(v) => v.iter().filter_map(|s| self.socket_addr(s)).collect(),
            None => Vec::new(),
        };
        Listen { http, https }
    }

    fn tls(&mut self, raw: &Spanned<raw::RawTls>) -> Vec<CertPair> {
        let certs = &raw.get_ref().certs;
        if certs.get_ref().is_empty() {
            self.error(certs.span(), "[tls] certs is empty");
        }
        let mut out = Vec::new();
        for pair in certs.get_ref() {
            let pair = pair.get_ref();
            let cert = self.readable_file(&pair.cert, "certificate");
            let key = self.readable_file(&pair.key, "key");
            if let (Some(cert), Some(key)) = (cert, key) {
                out.push(CertPair { cert, key });
            }
        }
        out
    }

    fn readable_file(&mut self, s: &Spanned<String>, what: &str) -> Option<PathBuf> {
        let path = super::resolve_relative(self.path, Path::new(s.get_ref()));
        match std::fs::File::open(&path) {
            Ok(_) => Some(path),
            Err(e) => {
                self.error(
                    s.span(),
                    format!("cannot read {what} file {}: {e}", path.display()),
                );
                None
            }
        }
    }

    fn nonzero(
        &mut self,
        d: &Option<Spanned<HumanDuration>>,
        name: &str,
        default: Duration,
    ) -> Duration {
        match d {
            None => default,
            Some(s) if s.get_ref().0.is_zero() => {
                self.error(s.span(), format!("{name} must be greater than zero"));
                default
            }
            Some(s) => s.get_ref().0,
        }
    }

    fn limits(&mut self, raw: &raw::RawLimits) -> Limits {
        let max_header_bytes = match &raw.max_header_bytes {
            None => 65536,
            Some(s) if s.get_ref().0 < 1024 => {
                self.error(s.span(), "max_header_bytes must be at least 1024");
                65536
            }
            Some(s) => usize::try_from(s.get_ref().0).unwrap_or(usize::MAX),
        };
        Limits {
            connect_timeout: self.nonzero(
                &raw.connect_timeout,
                "connect_timeout",
                Duration::from_secs(2),
            ),
            response_timeout: self.nonzero(
                &raw.response_timeout,
                "response_timeout",
                Duration::from_secs(30),
            ),
            client_header_timeout: self.nonzero(
                &raw.client_header_timeout,
                "client_header_timeout",
                Duration::from_secs(10),
            ),
            idle_timeout: self.nonzero(&raw.idle_timeout, "idle_timeout", Duration::from_secs(60)),
            max_header_bytes,
            max_body_bytes: raw
                .max_body_bytes
                .as_ref()
                .map(|s| s.get_ref().0)
                .filter(|&n| n > 0),
            shutdown_grace: raw
                .shutdown_grace
                .as_ref()
                .map_or(Duration::from_secs(30), |s| s.get_ref().0),
            retries: match &raw.retries {
                None => 2,
                Some(s) if *s.get_ref() > 100 => {
                    self.error(s.span(), "retries must be at most 100");
                    2
                }
                Some(s) => *s.get_ref(),
            },
        }
    }

    fn pool(&mut self, name: &str, raw: &Spanned<raw::RawPool>) -> PoolConfig {
        let span = raw.span();
        let raw = raw.get_ref();
        if name.is_empty() || name == "none" {
            self.error(span.clone(), format!("{name:?} cannot be a pool name"));
        }
        if raw.backends.get_ref().is_empty() {
            self.error(
                raw.backends.span(),
                format!("pool {name:?} has no backends"),
            );
        }
        let mut backends: Vec<BackendConfig> = Vec::new();
        for b in raw.backends.get_ref() {
            let Some(target) = self.target(b) else {
                continue;
            };
            if backends.iter().any(|x| x.target == target) {
                self.error(
                    b.span(),
                    format!(
                        "backend {:?} is listed twice in pool {name:?}",
                        b.get_ref().addr
                    ),
                );
                continue;
            }
            backends.push(BackendConfig {
                target,
                weight: b.get_ref().weight.unwrap_or(1),
            });
        }
        let warmup = raw.warmup.as_ref().map(|w| self.warmup(w));
        let slow_start = raw.slow_start.as_ref().map(|s| self.slow_start(s));
        let eject = self.eject(raw.eject.as_ref());
        PoolConfig {
            name: name.to_owned(),
            backends,
            resolve_every: self.nonzero(
                &raw.resolve_every,
                "resolve_every",
                Duration::from_secs(5),
            ),
            warmup,
            slow_start,
            eject,
        }
    }

    fn target(&mut self, b: &Spanned<raw::RawBackend>) -> Option<Target> {
        let addr = b.get_ref().addr.as_str();
        if let Ok(a) = addr.parse::<SocketAddr>() {
            return Some(Target::Addr(a));
        }
        let parsed = addr.rsplit_once(':').and_then(|(host, port)| {
            let port: u16 = port.parse().ok().filter(|&p| p != 0)?;
            is_hostname(host).then(|| Target::Host {
                name: host.to_ascii_lowercase(),
                port,
            })
        });
        if parsed.is_none() {
            self.error(
                b.span(),
                format!("bad backend address {addr:?}: expected ip:port or hostname:port"),
            );
        }
        parsed
    }

    fn warmup(&mut self, raw: &Spanned<raw::RawWarmup>) -> Warmup {
        let w = raw.get_ref();
        if !w.path.get_ref().starts_with('/') {
            self.error(w.path.span(), "warmup path must start with '/'");
        }
        let healthy = self.at_least_one(&w.healthy, "healthy", 2);
        let unhealthy = self.at_least_one(&w.unhealthy, "unhealthy", 3);
        Warmup {
            path: w.path.get_ref().clone(),
            interval: self.nonzero(&w.interval, "warmup interval", Duration::from_secs(1)),
            timeout: self.nonzero(&w.timeout, "warmup timeout", Duration::from_secs(1)),
            healthy,
            unhealthy,
        }
    }

    fn at_least_one(&mut self, v: &Option<Spanned<u32>>, name: &str, default: u32) -> u32 {
        match v {
            None => default,
            Some(s) if *s.get_ref() == 0 => {
                self.error(s.span(), format!("{name} must be at least 1"));
                default
            }
            Some(s) => *s.get_ref(),
        }
    }

    fn slow_start(&mut self, raw: &Spanned<raw::RawSlowStart>) -> SlowStart {
        let s = raw.get_ref();
        let aggression = s.aggression.unwrap_or(1.0);
        if !(aggression.is_finite() && aggression > 0.0) {
            self.error(
                raw.span(),
                "slow_start aggression must be a number greater than 0",
            );
        }
        let min_percent = s.min_percent.unwrap_or(10);
        if min_percent > 100 {
            self.error(
                raw.span(),
                "slow_start min_percent must be between 0 and 100",
            );
        }
        let window = s.window.map_or(Duration::from_secs(60), |w| w.0);
        if window.is_zero() {
            self.error(raw.span(), "slow_start window must be greater than zero");
        }
        SlowStart {
            window,
            aggression,
            min_percent: min_percent.min(100),
        }
    }

    fn eject(&mut self, raw: Option<&Spanned<raw::RawEject>>) -> Eject {
        let mut e = Eject {
            consecutive_failures: 5,
            base: Duration::from_secs(10),
            max: Duration::from_secs(300),
            max_percent: 50,
        };
        let Some(raw) = raw else { return e };
        let r = raw.get_ref();
        e.consecutive_failures = r.consecutive_failures.unwrap_or(e.consecutive_failures);
        e.base = r.base.map_or(e.base, |d| d.0);
        e.max = r.max.map_or(e.max, |d| d.0);
        e.max_percent = r.max_percent.unwrap_or(e.max_percent);
        if e.consecutive_failures == 0 {
            self.error(raw.span(), "eject consecutive_failures must be at least 1");
        }
        if e.base.is_zero() || e.max < e.base {
            self.error(raw.span(), "eject needs 0 < base <= max");
        }
        if e.max_percent > 100 {
            self.error(raw.span(), "eject max_percent must be between 0 and 100");
        }
        e
    }

    fn routes(
        &mut self,
        raw: &[Spanned<raw::RawRoute>],
        pools: &std::collections::BTreeMap<String, Spanned<raw::RawPool>>,
    ) -> Vec<RouteConfig> {
        let mut names: HashMap<String, ()> = HashMap::new();
        // (host pattern or None for any host, prefix) -> route name, to find overlaps.
        let mut claimed: HashMap<(Option<HostPattern>, String), String> = HashMap::new();
        let mut out = Vec::new();
        for route in raw {
            let r = route.get_ref();
            let name = r.name.get_ref().clone();
            if name.is_empty() {
                self.error(r.name.span(), "route name cannot be empty");
            } else if names.insert(name.clone(), ()).is_some() {
                self.error(r.name.span(), format!("duplicate route name {name:?}"));
            }
            let hosts: Vec<HostPattern> = r
                .hosts
                .iter()
                .flatten()
                .filter_map(|h| self.host_pattern(h))
                .collect();
            let path_prefix = match &r.path_prefix {
                None => String::new(),
                Some(p) if !p.get_ref().starts_with('/') => {
                    self.error(p.span(), "path_prefix must start with '/'");
                    String::new()
                }
                Some(p) => p.get_ref().trim_end_matches('/').to_owned(),
            };
            let keys: Vec<Option<HostPattern>> = if hosts.is_empty() {
                vec![None]
            } else {
                hosts.iter().cloned().map(Some).collect()
            };
            for key in keys {
                let shown = match &key {
                    None => "any host".to_owned(),
                    Some(HostPattern::Exact(h)) => format!("host {h:?}"),
                    Some(HostPattern::Suffix(s)) => format!("host \"*{s}\""),
                };
                if let Some(other) = claimed.insert((key, path_prefix.clone()), name.clone()) {
                    if other != name {
                        self.error(
                            route.span(),
                            format!(
                                "routes {other:?} and {name:?} both claim {shown} with path_prefix \"{}/\"",
                                path_prefix
                            ),
                        );
                    }
                }
            }
            let mut split = Vec::new();
            for (pool, weight) in r.split.get_ref() {
                if !pools.contains_key(pool) {
                    self.error(
                        weight.span(),
                        format!("route {name:?} splits to pool {pool:?}, which does not exist"),
                    );
                }
                split.push((pool.clone(), *weight.get_ref()));
            }
            if split.is_empty() {
                self.error(r.split.span(), format!("route {name:?} has an empty split"));
            } else if split.iter().all(|(_, w)| *w == 0) {
                self.error(
                    r.split.span(),
                    format!("route {name:?} has every split weight at 0"),
                );
            }
            let sticky = r.sticky.as_ref().and_then(|s| self.key_source(s, true));
            let override_ = r.override_.as_ref().and_then(|s| self.key_source(s, false));
            let ramp_up = r.ramp_up.as_ref().map_or(Duration::ZERO, |d| d.get_ref().0);
            out.push(RouteConfig {
                name,
                hosts,
                path_prefix,
                split,
                sticky,
                override_,
                fallback: r.fallback.unwrap_or(true),
                ramp_up,
            });
        }
        out
    }

    fn host_pattern(&mut self, h: &Spanned<String>) -> Option<HostPattern> {
        let text = h.get_ref().to_ascii_lowercase();
        let (pattern, name) = match text.strip_prefix("*.") {
            Some(rest) => (HostPattern::Suffix(format!(".{rest}")), rest.to_owned()),
            None => (HostPattern::Exact(text.clone()), text.clone()),
        };
        if is_hostname(&name) {
            Some(pattern)
        } else {
            self.error(
                h.span(),
                format!("bad host {:?}: expected a name like \"api.example.com\" or \"*.example.com\" (no port)", h.get_ref()),
            );
            None
        }
    }

    fn key_source(&mut self, s: &Spanned<String>, allow_ip: bool) -> Option<KeySource> {
        let text = s.get_ref().as_str();
        let parsed = match text.split_once(':') {
            _ if text == "ip" && allow_ip => Some(KeySource::ClientIp),
            Some(("cookie", name)) if !name.is_empty() => Some(KeySource::Cookie(name.to_owned())),
            Some(("header", name)) => HeaderName::from_bytes(name.as_bytes())
                .ok()
                .map(KeySource::Header),
            _ => None,
        };
        if parsed.is_none() {
            let expected = if allow_ip {
                "\"cookie:NAME\", \"header:NAME\" or \"ip\""
            } else {
                "\"cookie:NAME\" or \"header:NAME\""
            };
            self.error(
                s.span(),
                format!("bad key source {text:?}: expected {expected}"),
            );
        }
        parsed
    }
}

/// A DNS name or an IP literal, without a port.
fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}
