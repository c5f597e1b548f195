//! Turns the raw file into a [`Config`], or into every error it contains.
//!
//! This file holds the walk and the file-wide checks (admin, limits, unused pools);
//! listeners and TLS are in `edge`, one pool's checks in `pools`, the routes' in
//! `routes`.

mod autopilot;
mod edge;
mod pools;
mod routes;

use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::raw::{self, RawConfig};
use super::recover::{self, Deserialized};
use super::units::HumanDuration;
use super::{Config, ConfigError, Diagnostic, Limits, Loaded, PoolConfig};

/// Collects findings against one file's text.
struct Checker<'a> {
    path: &'a Path,
    text: &'a str,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    /// Entries blanked after a serde error (see `recover`).
    blanked: Vec<Range<usize>>,
}

pub(super) fn validate(path: &Path, text: &str) -> Result<Loaded, ConfigError> {
    let Deserialized {
        raw,
        mut errors,
        blanked,
    } = recover::deserialize(path, text);
    let Some(raw) = raw else {
        return Err(ConfigError::in_file_order(errors));
    };
    // `raw` may come from a blanked copy of `text`; its spans are the same offsets.
    let mut c = Checker {
        path,
        text,
        errors: Vec::new(),
        warnings: Vec::new(),
        blanked,
    };
    let config = c.config(raw);
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
        // What a blanked entry left behind (an empty split once its one weight was
        // blanked) is the serde error's echo, already reported.
        if self
            .blanked
            .iter()
            .any(|b| span.start < b.end && b.start < span.end)
        {
            return;
        }
        let d = Diagnostic::at(self.path, self.text, span, message);
        self.errors.push(d);
    }

    fn warn(&mut self, span: Range<usize>, message: impl Into<String>) {
        let d = Diagnostic::at(self.path, self.text, span, message);
        self.warnings.push(d);
    }

    fn config(&mut self, raw: RawConfig) -> Config {
        let listen = self.listen(&raw.listen);
        let tls = match &raw.tls {
            Some(t) => self.tls(t),
            None => edge::Tls::default(),
        };
        if !listen.https.is_empty() && tls.pairs.is_empty() {
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
            tls: tls.pairs,
            tls_server: tls.server,
            tls_files_hash: tls.files_hash,
            admin,
            limits,
            access_log: raw.access_log.enabled.unwrap_or(true),
            pools,
            routes,
            content_hash: 0,
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
