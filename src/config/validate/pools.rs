//! The checks of one `[pools.NAME]` table: its backends, warm-up probe, slow start
//! and ejection.

use std::net::SocketAddr;
use std::time::Duration;

use toml::Spanned;

use super::{is_hostname, Checker};
use crate::config::raw;
use crate::config::{BackendConfig, Eject, PoolConfig, SlowStart, Target, Warmup};

impl Checker<'_> {
    pub(super) fn pool(&mut self, name: &str, raw: &Spanned<raw::RawPool>) -> PoolConfig {
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
        let path = w.path.get_ref();
        if !path.starts_with('/') {
            self.error(w.path.span(), "warmup path must start with '/'");
        } else if path.parse::<http::uri::PathAndQuery>().is_err() || path.contains(' ') {
            // It goes on the probe's request line as it is.
            self.error(w.path.span(), "warmup path is not a valid request target");
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
}
