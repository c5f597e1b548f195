//! The fleet source: the PromQL autopilot runs over every instance's series, and the
//! small Prometheus HTTP API client that runs it.
//!
//! The queries are built once as text ([`Queries`]) so that `/status` shows exactly what
//! is run, and an operator can paste it into Prometheus.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, HOST};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpStream;

use super::{Measurements, Side};

/// An answer to one of these queries is a few hundred bytes; a URL that points at
/// something else must not be read into memory whole.
const MAX_BODY: usize = 1 << 20;

// === impl Endpoint ===

/// Where Prometheus's HTTP API is: `http://HOST[:PORT][/PREFIX]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// As messages name it: `http://HOST:PORT[/PREFIX]`.
    url: String,
    /// What to connect to: a name (resolved on every connect, so a moved Service is
    /// followed) or an IP address (IPv6 without brackets).
    host: String,
    port: u16,
    /// `HOST:PORT` for the Host field (IPv6 in brackets).
    authority: String,
    /// `{PREFIX}/api/v1/query`: a Prometheus behind a reverse proxy under a path keeps it.
    query_path: String,
}

impl Endpoint {
    /// Parses the config's `prometheus` value. Only plain `http` is spoken; the port
    /// defaults to 80 as in any http URL; credentials, a query or a fragment are refused.
    pub(crate) fn parse(s: &str) -> Result<Endpoint, String> {
        let s = s.trim();
        let bad = |why: &str| format!("{s:?}: {why}");
        let shape = "expected http://HOST[:PORT][/PREFIX]";
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(bad(shape));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "http" => {}
            "https" => return Err(bad("https is not supported, only plain http")),
            _ => return Err(bad(&format!("{scheme} is not supported, {shape}"))),
        }
        // Prometheus's own parameters are cutover's to set; `#` would silently drop them.
        if rest.contains(['?', '#']) {
            return Err(bad("no query string or fragment: give the base URL"));
        }
        let uri: Uri = s
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
        let Some(auth) = uri.authority() else {
            return Err(bad("no host"));
        };
        if auth.as_str().contains('@') {
            return Err(bad("credentials in the URL are not supported"));
        }
        let host = auth.host();
        if host.is_empty() {
            return Err(bad("no host"));
        }
        // `Authority::port` is None for a port that is not a number; that must not
        // quietly become 80, so read what follows the host.
        let port = match auth.as_str()[host.len()..].strip_prefix(':') {
            None => 80,
            Some(p) => match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(bad(&format!("bad port {p:?}"))),
                Ok(n) => n,
            },
        };
        let authority = format!("{host}:{port}");
        let prefix = uri.path().trim_end_matches('/');
        Ok(Endpoint {
            url: format!("http://{authority}{prefix}"),
            host: host.trim_matches(['[', ']']).to_owned(),
            port,
            query_path: format!("{prefix}/api/v1/query"),
            authority,
        })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

// === impl Queries ===

/// The PromQL one evaluation runs, each summed over the fleet's instances.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Queries {
    pub(crate) pool: SideQueries,
    pub(crate) baseline: SideQueries,
    /// The pool's requests on the route over the step's elapsed time.
    pub(crate) step_requests: String,
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
        route: &str,
        pool: &str,
        baseline: &str,
        window: Duration,
        quantile: f64,
        step_elapsed: Duration,
    ) -> Queries {
        let (r, w) = (escape(route), range(window));
        Queries {
            pool: SideQueries::new(&r, &escape(pool), &w, quantile),
            baseline: SideQueries::new(&r, &escape(baseline), &w, quantile),
            step_requests: requests(&r, &escape(pool), "", &range(step_elapsed)),
        }
    }

    /// Each check's expression by its name in `/status`: what an operator pastes into
    /// Prometheus to see what autopilot sees.
    pub(crate) fn shown(&self) -> [(&'static str, String); 3] {
        let p = &self.pool;
        [
            ("error_ratio", format!("{} / {}", p.errors, p.requests)),
            (
                "latency_ratio",
                format!("{} / {}", p.latency, self.baseline.latency),
            ),
            ("latency", p.latency.clone()),
        ]
    }
}

impl SideQueries {
    fn new(route: &str, pool: &str, w: &str, quantile: f64) -> SideQueries {
        let histogram = "cutover_upstream_duration_seconds";
        SideQueries {
            requests: requests(route, pool, "", w),
            errors: requests(route, pool, r#",code=~"5..""#, w),
            observations: format!(r#"sum(increase({histogram}_count{{pool="{pool}"}}[{w}]))"#),
            latency: format!(
                r#"histogram_quantile({quantile}, sum by (le) (increase({histogram}_bucket{{pool="{pool}"}}[{w}])))"#
            ),
        }
    }
}

/// The fleet's current step of a route's `run`: the highest any instance of that run
/// exported over the last minute, so an instance that was scraped before it restarted
/// still counts, and one still on the run before a `run` change does not.
pub(crate) fn step_query(route: &str, run: i64) -> String {
    let route = escape(route);
    format!(
        r#"max(max_over_time(cutover_autopilot_step{{route="{route}"}}[1m]) and (last_over_time(cutover_autopilot_run{{route="{route}"}}[1m]) == {run}))"#
    )
}

/// 1 when an instance of the route's `run` is rolled back, by its latest state.
pub(crate) fn rolled_back_query(route: &str, run: i64) -> String {
    let route = escape(route);
    format!(
        r#"max(last_over_time(cutover_autopilot_state{{route="{route}",state="rolled_back"}}[1m]) and ignoring(state) (last_over_time(cutover_autopilot_run{{route="{route}"}}[1m]) == {run}))"#
    )
}

/// `sum(increase(cutover_requests_total{...}[w]))`, with labels already escaped.
fn requests(route: &str, pool: &str, more: &str, w: &str) -> String {
    format!(r#"sum(increase(cutover_requests_total{{route="{route}",pool="{pool}"{more}}}[{w}]))"#)
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
/// answer is 0 for a count and None for a latency; so is a latency of NaN or ±Inf.
pub(crate) async fn measure(
    endpoint: &Endpoint,
    q: &Queries,
    timeout: Duration,
) -> Result<Measurements, String> {
    let all = async {
        let (pool, baseline, step_requests) = tokio::try_join!(
            side(endpoint, &q.pool),
            side(endpoint, &q.baseline),
            count(endpoint, &q.step_requests),
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

/// Asks where the fleet's ramp of `route` and `run` is.
pub(crate) async fn fleet(
    endpoint: &Endpoint,
    route: &str,
    run: i64,
    timeout: Duration,
) -> Result<Fleet, String> {
    let (step_q, rolled_q) = (step_query(route, run), rolled_back_query(route, run));
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

/// One instant query: its single sample, or None for an empty vector.
async fn instant(endpoint: &Endpoint, query: &str) -> Result<Option<f64>, String> {
    let (status, body) = get(endpoint, query).await?;
    let answer = serde_json::from_slice::<Answer>(&body);
    if !status.is_success() {
        // Prometheus explains a refusal (400 bad_data, 422, 503) in the same JSON shape.
        let why = answer.ok().and_then(Answer::refusal);
        let why = why.map(|w| format!(": {w}")).unwrap_or_default();
        return Err(format!("prometheus {endpoint} answered {status}{why}"));
    }
    let answer = answer
        .map_err(|e| format!("prometheus {endpoint} answered something else than its API: {e}"))?;
    sample(answer).map_err(|why| format!("prometheus {endpoint} {why}"))
}

/// GET, not POST: each query is a few hundred bytes, far below any URL limit, and a
/// GET is what read-only proxies in front of Prometheus let through and log in full.
async fn get(endpoint: &Endpoint, query: &str) -> Result<(StatusCode, Bytes), String> {
    let unreachable = |why: String| format!("prometheus {endpoint} unreachable: {why}");
    let stream = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(|e| unreachable(io_reason(&e)))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let target = format!("{}?query={}", endpoint.query_path, percent_encode(query));
    let req = Request::get(target)
        .header(HOST, &endpoint.authority)
        .header(ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|e| unreachable(e.to_string()))?;
    let exchange = async move {
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let status = resp.status();
        match Limited::new(resp.into_body(), MAX_BODY).collect().await {
            Ok(body) => Ok((status, body.to_bytes())),
            Err(e) if e.is::<LengthLimitError>() => Err(format!(
                "prometheus {endpoint} answered more than {} KiB: not its query API",
                MAX_BODY >> 10
            )),
            Err(e) => Err(format!("prometheus {endpoint} broke off its answer: {e}")),
        }
        // `send` drops here, which lets the connection below finish.
    };
    // The connection is driven here rather than spawned, so the timeout that drops
    // this future closes the socket too: no task outlives an evaluation.
    let (result, _closed) = tokio::join!(exchange, conn);
    result
}

/// The query value of a URL: everything but RFC 3986's unreserved characters as
/// `%XX` (a `+` left as is would reach Prometheus as a space).
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An I/O error in a few words, without the OS's error number.
fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        ErrorKind::TimedOut => "timed out".to_owned(),
        ErrorKind::HostUnreachable => "host unreachable".to_owned(),
        ErrorKind::NetworkUnreachable => "network unreachable".to_owned(),
        _ => e.to_string(),
    }
}

// === the answer ===

/// `/api/v1/query`'s envelope (<https://prometheus.io/docs/prometheus/latest/querying/api/>).
#[derive(Debug, Deserialize)]
struct Answer {
    status: String,
    data: Option<Data>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    /// Its shape depends on `resultType`, so it is read once that is known.
    result: serde_json::Value,
}

impl Answer {
    /// Prometheus's own words for an error: `bad_data: parse error at char 4`.
    fn refusal(self) -> Option<String> {
        let kind = self.error_type.unwrap_or(self.status);
        self.error.map(|e| format!("{kind}: {e}"))
    }
}

/// One series of a vector: `{"metric": {...}, "value": [time, "1.5"]}`.
#[derive(Debug, Deserialize)]
struct Series {
    value: (serde_json::Value, String),
}

/// The one sample of an instant vector, None when it is empty. Values are strings
/// because JSON has no NaN or ±Inf, which Prometheus writes as `"NaN"`, `"+Inf"`.
fn sample(answer: Answer) -> Result<Option<f64>, String> {
    if answer.status != "success" {
        let why = answer.refusal().unwrap_or_default();
        return Err(format!("refused the query: {why}"));
    }
    let Some(data) = answer.data else {
        return Err("answered success without data".to_owned());
    };
    if data.result_type != "vector" {
        return Err(format!("answered a {}, not a vector", data.result_type));
    }
    let series: Vec<Series> = serde_json::from_value(data.result)
        .map_err(|e| format!("answered a vector it could not be read: {e}"))?;
    // Each query aggregates to at most one series; more means it is not what was run.
    match series.as_slice() {
        [] => Ok(None),
        [one] => (one.value.1.parse::<f64>().map(Some))
            .map_err(|_| format!("answered the value {:?}, not a number", one.value.1)),
        more => Err(format!("answered {} series, not one", more.len())),
    }
}

#[cfg(test)]
mod tests;
