//! The `/status` document: what the admin listener serves and `cutover status` reads,
//! one set of types for both ends.
//!
//! Latencies are in seconds, as in the metrics; the window figures cover the last
//! `window_seconds` (60) of traffic.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    /// 1 at start, one more per applied reload.
    pub generation: u64,
    pub config_path: String,
    /// When the live config was loaded (RFC 3339, UTC).
    pub loaded_at: String,
    /// The errors of the last reload when it failed (the old config kept serving);
    /// null once a reload succeeds.
    pub last_reload_error: Option<String>,
    /// The span the window figures cover.
    pub window_seconds: u64,
    pub routes: Vec<Route>,
    pub pools: Vec<Pool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Route {
    pub name: String,
    /// Empty: any host.
    pub hosts: Vec<String>,
    pub path_prefix: String,
    /// The configured weight of each pool.
    pub split: BTreeMap<String, u32>,
    /// The weight each pool's pick uses now: the split weight (on its way, during a
    /// `ramp_up`) times the pool's ready capacity.
    pub effective_split: BTreeMap<String, f64>,
    /// This route's requests by the pool that answered them over the window; `none`
    /// holds those that got no pool.
    pub traffic: BTreeMap<String, Window>,
    /// The route's ramp, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autopilot: Option<Autopilot>,
}

/// A route's ramp (DESIGN "Autopilot"): the contract's fields, then what `cutover
/// status` needs to say what the ramp waits for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Autopilot {
    /// `pending`, `running`, `done` or `rolled_back`.
    pub state: String,
    /// 1-based; 0 while pending; the step it failed at once rolled back.
    pub step: u32,
    /// The pool's target percent now (the file's split while pending or rolled back).
    pub share: f64,
    /// When this state or step began (RFC 3339, UTC).
    pub since: String,
    /// Why it rolled back, in words; null otherwise.
    pub reason: Option<String>,
    pub checks: Vec<Check>,
    pub pool: String,
    pub baseline: String,
    pub steps: Vec<u32>,
    /// `local` or `prometheus`.
    pub source: String,
    /// What is left of the step's hold.
    pub hold_left_seconds: f64,
    pub hold_seconds: f64,
    /// The pool's requests in this step, and how many it needs.
    pub step_requests: f64,
    pub min_requests: u64,
    /// Why the ramp holds with no numbers to judge by (its Prometheus unreachable).
    pub holding: Option<String>,
    /// The PromQL of each check, for a fleet ramp: paste it into Prometheus.
    #[serde(default)]
    pub queries: BTreeMap<String, String>,
}

/// One of a ramp's checks over its window.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Check {
    /// `error_ratio`, `latency_ratio` or `latency`.
    pub name: String,
    /// What was measured; null while too few requests came to judge.
    pub value: Option<f64>,
    pub limit: f64,
    /// `pass`, `fail` or `wait`.
    pub verdict: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Pool {
    pub name: String,
    /// Requests this pool answered over the window, on every route.
    #[serde(flatten)]
    pub window: Window,
    pub backends: Vec<Backend>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Backend {
    /// `ip:port`.
    pub addr: String,
    /// `warming`, `ready`, `down` or `ejected`.
    pub state: String,
    /// The configured weight.
    pub weight: u32,
    /// The weight times its warm-up/slow-start factor: what its picks use now.
    pub effective_weight: f64,
    /// Requests running on it now.
    pub in_flight: u64,
    /// Attempts sent to it over the window; errors are connect errors, timeouts,
    /// resets, unreadable answers and 5xx.
    #[serde(flatten)]
    pub window: Window,
}

/// Traffic over the window.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Window {
    pub requests: u64,
    /// Requests per second.
    pub request_rate: f64,
    /// Share of requests that failed (5xx, or no answer): 0 without requests.
    pub error_ratio: f64,
    /// Latency quantiles in seconds; null without requests.
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}
