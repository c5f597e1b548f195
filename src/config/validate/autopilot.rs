//! The checks of a route's `[routes.autopilot]` table: which pools it ramps, its steps,
//! its limits and where it reads its numbers.

use std::collections::BTreeMap;
use std::time::Duration;

use toml::Spanned;

use super::Checker;
use crate::config::raw;
use crate::config::{Autopilot, Source};

/// What the file leaves out: the values of DESIGN's example. The error and latency
/// ratio checks always run; only `max_latency` has no default, as a ceiling is the
/// operator's to know.
const STEPS: [u32; 5] = [1, 10, 50, 90, 100];
const HOLD: Duration = Duration::from_secs(600);
const MIN_REQUESTS: u64 = 500;
const WINDOW: Duration = Duration::from_secs(60);
const MAX_ERROR_RATIO: f64 = 0.01;
const MAX_LATENCY_RATIO: f64 = 1.5;
const QUANTILE: f64 = 0.99;
/// Checks run four times a second: a window shorter than that holds nothing.
const MIN_WINDOW: Duration = Duration::from_millis(250);
/// A local ramp keeps four samples a second of its window.
const MAX_WINDOW: Duration = Duration::from_secs(3600);

impl Checker<'_> {
    /// `split` is the route's, to check that it names exactly `pool` and `baseline`.
    pub(super) fn autopilot(
        &mut self,
        route: &str,
        raw: &Spanned<raw::RawAutopilot>,
        split: &Spanned<BTreeMap<String, Spanned<u32>>>,
        pools: &BTreeMap<String, Spanned<raw::RawPool>>,
    ) -> Autopilot {
        let a = raw.get_ref();
        for (key, name) in [("pool", &a.pool), ("baseline", &a.baseline)] {
            if !pools.contains_key(name.get_ref()) {
                self.error(
                    name.span(),
                    format!(
                        "autopilot {key} {:?} of route {route:?} does not exist",
                        name.get_ref()
                    ),
                );
            }
        }
        if a.pool.get_ref() == a.baseline.get_ref() {
            self.error(
                a.baseline.span(),
                "autopilot baseline must be another pool than the one it raises",
            );
        }
        let named: Vec<&String> = split.get_ref().keys().collect();
        let wanted = [a.pool.get_ref(), a.baseline.get_ref()];
        if named.len() != 2 || !wanted.iter().all(|w| named.contains(w)) {
            self.error(
                split.span(),
                format!(
                    "route {route:?} has an autopilot, so its split must name exactly its pool {:?} and baseline {:?}, not {}",
                    a.pool.get_ref(),
                    a.baseline.get_ref(),
                    named.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
                ),
            );
        }
        let window = self.at_least(&a.window, "window", WINDOW);
        if let Some(w) = a.window.as_ref().filter(|_| window > MAX_WINDOW) {
            self.error(
                w.span(),
                "window must be at most 1h: a check reads the last minutes, not the day",
            );
        }
        if let Some(weight) = split
            .get_ref()
            .get(a.pool.get_ref())
            .filter(|w| *w.get_ref() > 0)
        {
            self.warn(
                weight.span(),
                format!(
                    "the split gives {:?} weight {} outside its autopilot's steps: a rollback returns it there, not to 0",
                    a.pool.get_ref(),
                    weight.get_ref()
                ),
            );
        }
        Autopilot {
            run: a.run.unwrap_or(0),
            pool: a.pool.get_ref().clone(),
            baseline: a.baseline.get_ref().clone(),
            steps: self.steps(a.steps.as_ref()),
            hold: a.hold.as_ref().map_or(HOLD, |h| h.get_ref().0),
            min_requests: a.min_requests.unwrap_or(MIN_REQUESTS),
            window,
            max_error_ratio: self.ratio(
                &a.max_error_ratio,
                "max_error_ratio",
                MAX_ERROR_RATIO,
                Some(1.0),
            ),
            max_latency_ratio: self.ratio(
                &a.max_latency_ratio,
                "max_latency_ratio",
                MAX_LATENCY_RATIO,
                None,
            ),
            max_latency: a.max_latency.as_ref().map(|d| {
                if d.get_ref().0.is_zero() {
                    self.error(d.span(), "max_latency must be above 0");
                }
                d.get_ref().0
            }),
            quantile: self.quantile(&a.quantile),
            source: self.source(a),
        }
    }

    fn steps(&mut self, raw: Option<&Spanned<Vec<Spanned<i64>>>>) -> Vec<u32> {
        let Some(raw) = raw else {
            return STEPS.to_vec();
        };
        if raw.get_ref().is_empty() {
            self.error(raw.span(), "autopilot steps cannot be empty");
        }
        let mut steps = Vec::new();
        let mut last = 0;
        for s in raw.get_ref() {
            let v = *s.get_ref();
            if !(1..=100).contains(&v) {
                self.error(
                    s.span(),
                    format!("step {v} is outside 1..100 (a step is the pool's share in percent)"),
                );
                continue;
            }
            if v <= last {
                self.error(
                    s.span(),
                    format!("step {v} does not increase on the one before ({last}): steps go up, in order"),
                );
            }
            last = v;
            steps.push(v as u32);
        }
        steps
    }

    fn ratio(
        &mut self,
        raw: &Option<Spanned<f64>>,
        name: &str,
        default: f64,
        max: Option<f64>,
    ) -> f64 {
        let Some(r) = raw else {
            return default;
        };
        let v = *r.get_ref();
        if !(v > 0.0 && v.is_finite()) {
            self.error(r.span(), format!("{name} must be above 0, not {v}"));
        } else if let Some(max) = max.filter(|m| v > *m) {
            self.error(r.span(), format!("{name} must be at most {max}, not {v}"));
        }
        v
    }

    fn quantile(&mut self, raw: &Option<Spanned<f64>>) -> f64 {
        let Some(q) = raw else {
            return QUANTILE;
        };
        let v = *q.get_ref();
        if !(v > 0.0 && v < 1.0) {
            self.error(
                q.span(),
                format!("quantile must be between 0 and 1 (0.99 is the 99th percentile), not {v}"),
            );
        }
        v
    }

    fn at_least(
        &mut self,
        raw: &Option<Spanned<crate::config::units::HumanDuration>>,
        name: &str,
        default: Duration,
    ) -> Duration {
        let Some(d) = raw else {
            return default;
        };
        let v = d.get_ref().0;
        if v < MIN_WINDOW {
            self.error(
                d.span(),
                format!("{name} must be at least 250ms, how often checks run"),
            );
        }
        v
    }

    fn source(&mut self, a: &raw::RawAutopilot) -> Source {
        let url = a.prometheus.as_ref();
        match a.source.as_ref().map(|s| (s.get_ref().as_str(), s.span())) {
            None | Some(("local", _)) => {
                for given in [url, a.prometheus_selector.as_ref()].into_iter().flatten() {
                    self.warn(
                        given.span(),
                        "only read with source = \"prometheus\"; this ramp reads its own numbers",
                    );
                }
                Source::Local
            }
            Some(("prometheus", span)) => {
                let Some(url) = url else {
                    self.error(
                        span,
                        "source = \"prometheus\" needs the server's address: prometheus = \"http://prometheus:9090\"",
                    );
                    return Source::Local;
                };
                if let Err(e) = crate::autopilot::Endpoint::parse(url.get_ref()) {
                    self.error(url.span(), e);
                }
                Source::Prometheus {
                    url: url.get_ref().clone(),
                    selector: a
                        .prometheus_selector
                        .as_ref()
                        .and_then(|s| self.selector(s)),
                }
            }
            Some((other, span)) => {
                self.error(
                    span,
                    format!("source {other:?}: expected \"local\" or \"prometheus\""),
                );
                Source::Local
            }
        }
    }

    /// Label matchers to add inside every selector's braces: `job="cutover-ad"`.
    /// Prometheus checks them whole; this catches what would break the braces.
    fn selector(&mut self, s: &Spanned<String>) -> Option<String> {
        let text = s.get_ref().trim().trim_matches(',').trim();
        if text.is_empty() || text.contains(['{', '}']) || !text.contains('=') {
            self.error(
                s.span(),
                format!(
                    "prometheus_selector {:?}: expected label matchers without braces, such as 'job=\"cutover-ad\"'",
                    s.get_ref()
                ),
            );
            return None;
        }
        Some(text.to_owned())
    }
}
