//! The fleet source: the PromQL autopilot runs over every instance's series, and the
//! small Prometheus HTTP API client that runs it.
//!
//! The queries are built once as text ([`Queries`]) so that `/status` shows exactly what
//! is run, and an operator can paste it into Prometheus.

use std::fmt;
use std::future::Future;
use std::time::Duration;

mod client;

use client::instant;

use super::{Measurements, Side};
use crate::api_client::BaseUrl;

// === impl Endpoint ===

/// Where Prometheus's HTTP API is: `http://HOST[:PORT][/PREFIX]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub(crate) base: BaseUrl,
}

impl Endpoint {
    /// Parses the config's `prometheus` value (see [`BaseUrl::parse`]).
    pub(crate) fn parse(s: &str) -> Result<Endpoint, String> {
        BaseUrl::parse(s)
            .map(|base| Endpoint { base })
            .map_err(|why| format!("{:?}: {why}", s.trim()))
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.base.fmt(f)
    }
}

// === impl Scope ===

/// Which series are this ramp's: its route's, of its `run`, narrowed by the operator's
/// own label matchers where one Prometheus scrapes several fleets (staging and
/// production with the same route names must not judge, or follow, each other).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scope {
    /// Escaped, as it goes inside a string.
    route: String,
    run: i64,
    /// `` or `,MATCHERS`: what follows the other matchers of every selector.
    more: String,
}

impl Scope {
    pub(crate) fn new(route: &str, run: i64, selector: Option<&str>) -> Scope {
        Scope {
            route: escape(route),
            run,
            more: selector.map_or_else(String::new, |s| format!(",{s}")),
        }
    }
}

// === impl Queries ===

/// The PromQL one evaluation runs, each summed over the fleet's instances.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Queries {
    pub(crate) pool: SideQueries,
    pub(crate) baseline: SideQueries,
    /// The pool's requests on the route over the step's elapsed time; `None` once the
    /// step has had its volume (a step held a week must not reread a week of samples
    /// every second).
    pub(crate) step_requests: Option<String>,
}

/// The queries of one pool.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SideQueries {
    pub(crate) requests: String,
    pub(crate) errors: String,
    pub(crate) observations: String,
    pub(crate) latency: String,
}

impl Queries {
    /// The queries of one route's evaluation. The window and the step's elapsed time
    /// are taken in whole seconds, at least one; rounding down errs toward a step
    /// counting too few requests (waiting longer), not the step before's.
    pub(crate) fn new(
        scope: &Scope,
        pool: &str,
        baseline: &str,
        window: Duration,
        quantile: f64,
        step_elapsed: Option<Duration>,
    ) -> Queries {
        let w = range(window);
        Queries {
            pool: SideQueries::new(scope, &escape(pool), &w, quantile),
            baseline: SideQueries::new(scope, &escape(baseline), &w, quantile),
            step_requests: step_elapsed.map(|e| requests(scope, &escape(pool), "", &range(e))),
        }
    }

    /// Each check's expression by its name in `/status`: what an operator pastes into
    /// Prometheus to see what autopilot sees.
    pub(crate) fn shown(&self) -> [(&'static str, String); 3] {
        let p = &self.pool;
        let floor = super::RATIO_FLOOR;
        [
            // A pool without a 5xx has no such series: 0, not "no data", when pasted.
            (
                "error_ratio",
                format!("({} or vector(0)) / {}", p.errors, p.requests),
            ),
            // The floor the check applies (see `machine::RATIO_FLOOR`), so that the
            // pasted ratio is the judged one.
            (
                "latency_ratio",
                format!(
                    "clamp_min({}, {floor}) / clamp_min({}, {floor})",
                    p.latency, self.baseline.latency
                ),
            ),
            ("latency", p.latency.clone()),
        ]
    }
}

impl SideQueries {
    fn new(scope: &Scope, pool: &str, w: &str, quantile: f64) -> SideQueries {
        let histogram = "cutover_upstream_duration_seconds";
        let more = &scope.more;
        SideQueries {
            requests: requests(scope, pool, "", w),
            errors: requests(scope, pool, r#",code=~"5..""#, w),
            observations: format!(
                r#"sum(increase({histogram}_count{{pool="{pool}"{more}}}[{w}]))"#
            ),
            latency: format!(
                r#"histogram_quantile({quantile}, sum by (le) (increase({histogram}_bucket{{pool="{pool}"{more}}}[{w}])))"#
            ),
        }
    }
}

/// The fleet's current step of a route's `run`: the highest any instance exported
/// over the last minute while on that run, so an instance that was scraped before it
/// restarted still counts, and a step of the run before a `run` change does not. The
/// run is matched sample by sample (a subquery): the run of an instance now says
/// nothing of the step it exported a minute ago.
pub(crate) fn step_query(scope: &Scope) -> String {
    let Scope { route, run, more } = scope;
    format!(
        r#"max(max_over_time((cutover_autopilot_step{{route="{route}"{more}}} and cutover_autopilot_run{{route="{route}"{more}}} == {run})[1m:1s]))"#
    )
}

/// 1 when an instance of the route's `run` is rolled back, by its latest state.
pub(crate) fn rolled_back_query(scope: &Scope) -> String {
    let Scope { route, run, more } = scope;
    format!(
        r#"max(last_over_time(cutover_autopilot_state{{route="{route}",state="rolled_back"{more}}}[1m]) and ignoring(state) (last_over_time(cutover_autopilot_run{{route="{route}"{more}}}[1m]) == {run}))"#
    )
}

/// `sum(increase(cutover_requests_total{...}[w]))`, with labels already escaped.
fn requests(scope: &Scope, pool: &str, code: &str, w: &str) -> String {
    let Scope { route, more, .. } = scope;
    format!(
        r#"sum(increase(cutover_requests_total{{route="{route}",pool="{pool}"{code}{more}}}[{w}]))"#
    )
}

/// A Prometheus range: whole seconds, at least one (`[0s]` is a parse error).
fn range(d: Duration) -> String {
    format!("{}s", d.as_secs().max(1))
}

/// A label value as the inside of a PromQL double-quoted string (Go's escapes): a
/// route named `a"b` must match that route, not end the string.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str(r"\\"),
            '"' => out.push_str(r#"\""#),
            '\n' => out.push_str(r"\n"),
            '\r' => out.push_str(r"\r"),
            '\t' => out.push_str(r"\t"),
            c => out.push(c),
        }
    }
    out
}

// === the client ===

/// Runs every query of one evaluation, concurrently, within `timeout` in all. An empty
/// answer is 0 for a count and None for a latency; so is a latency of NaN or ±Inf. The
/// step's requests are 0 when not asked.
pub(crate) async fn measure(
    endpoint: &Endpoint,
    q: &Queries,
    timeout: Duration,
) -> Result<Measurements, String> {
    let all = async {
        let step_requests = async {
            match &q.step_requests {
                Some(query) => count(endpoint, query).await,
                None => Ok(0.0),
            }
        };
        let (pool, baseline, step_requests) = tokio::try_join!(
            side(endpoint, &q.pool),
            side(endpoint, &q.baseline),
            step_requests,
        )?;
        Ok(Measurements {
            pool,
            baseline,
            step_requests,
        })
    };
    within(endpoint, timeout, all).await
}

/// Where the fleet's instances of this `run` are on `route`, for an instance that
/// starts mid-ramp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fleet {
    /// The highest step any instance exported over the last minute; None when none did.
    pub step: Option<u32>,
    /// Whether an instance's latest state is `rolled_back`.
    pub rolled_back: bool,
}

/// Asks where the fleet's ramp of `scope` is.
pub(crate) async fn fleet(
    endpoint: &Endpoint,
    scope: &Scope,
    timeout: Duration,
) -> Result<Fleet, String> {
    let (step_q, rolled_q) = (step_query(scope), rolled_back_query(scope));
    let asked =
        async { tokio::try_join!(instant(endpoint, &step_q), instant(endpoint, &rolled_q)) };
    let (step, rolled_back) = within(endpoint, timeout, asked).await?;
    let step = match step {
        None => None,
        Some(v) if v.is_finite() && (0.0..=f64::from(u32::MAX)).contains(&v) => {
            Some(v.round() as u32)
        }
        Some(v) => {
            return Err(format!(
                "prometheus {endpoint} answered step {v} to {step_q}"
            ))
        }
    };
    Ok(Fleet {
        step,
        rolled_back: rolled_back.is_some_and(|v| v >= 1.0),
    })
}

async fn within<T>(
    endpoint: &Endpoint,
    timeout: Duration,
    work: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "prometheus {endpoint} did not answer within {timeout:?}"
        )),
    }
}

async fn side(endpoint: &Endpoint, q: &SideQueries) -> Result<Side, String> {
    let (requests, errors, observations, latency) = tokio::try_join!(
        count(endpoint, &q.requests),
        count(endpoint, &q.errors),
        count(endpoint, &q.observations),
        instant(endpoint, &q.latency),
    )?;
    Ok(Side {
        requests,
        errors,
        observations,
        latency: latency.filter(|v| v.is_finite()),
    })
}

/// A count: an empty answer (no series yet) is zero. A NaN is not a count: it is an
/// error, which holds the step rather than judging on it.
async fn count(endpoint: &Endpoint, query: &str) -> Result<f64, String> {
    match instant(endpoint, query).await? {
        None => Ok(0.0),
        Some(v) if v.is_finite() => Ok(v),
        Some(v) => Err(format!("prometheus {endpoint} answered {v} to {query}")),
    }
}

#[cfg(test)]
mod tests;
