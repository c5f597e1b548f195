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
