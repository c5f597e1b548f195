//! The small Prometheus HTTP API client the fleet source runs its queries through:
//! one GET of `/api/v1/query` per query, its JSON read into one sample.

use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;

use super::Endpoint;
use crate::api_client::GetError;

/// An answer to one of these queries is a few hundred bytes; a URL that points at
/// something else must not be read into memory whole.
pub(super) const MAX_BODY: usize = 1 << 20;

/// One instant query: its single sample, or None for an empty vector.
pub(super) async fn instant(endpoint: &Endpoint, query: &str) -> Result<Option<f64>, String> {
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
    let target = format!("/api/v1/query?query={}", percent_encode(query));
    endpoint
        .base
        .get(&target, MAX_BODY)
        .await
        .map_err(|e| match e {
            GetError::Unreachable(why) => format!("prometheus {endpoint} unreachable: {why}"),
            GetError::TooLarge => format!(
                "prometheus {endpoint} answered more than {} KiB: not its query API",
                MAX_BODY >> 10
            ),
            GetError::Broken(why) => format!("prometheus {endpoint} broke off its answer: {why}"),
        })
}

/// The query value of a URL: everything but RFC 3986's unreserved characters as
/// `%XX` (a `+` left as is would reach Prometheus as a space).
pub(super) fn percent_encode(value: &str) -> String {
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

// === the answer ===

/// `/api/v1/query`'s envelope (<https://prometheus.io/docs/prometheus/latest/querying/api/>).
#[derive(Debug, Deserialize)]
pub(super) struct Answer {
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
pub(super) fn sample(answer: Answer) -> Result<Option<f64>, String> {
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
