//! `GET /metrics`: walks the live snapshot and writes every series with its labels.
//! Runs off the workers (see [`super::serve`]): with thousands of backends it takes
//! milliseconds.

use std::sync::atomic::Ordering;
use std::time::UNIX_EPOCH;

use crate::autopilot::{Report, CHECKS, STATES};
use crate::metrics::exposition::{Exposition, Family};
use crate::metrics::{tidy, NONE};
use crate::state::Shared;

pub(super) fn render(shared: &Shared) -> String {
    let snapshot = shared.live.load_full();
    let mut e = Exposition::new();
    let now = std::time::Instant::now();
    for route in &snapshot.routes {
        for (pool, series, in_split) in route.pool_series() {
            let labels = [("route", &*route.name), ("pool", pool)];
            let totals = series.totals();
            e.codes(Family::Requests, &labels, "code", &totals);
            // Every pool of the split has its histogram from the start, so that a
            // rate over it has a zero to start from; `pool="none"` once it counts.
            if in_split || totals.observations() > 0 {
                e.histogram(Family::RequestDuration, &labels, &totals);
            }
        }
        if let Some(pilot) = route.pilot() {
            autopilot(&mut e, &route.name, &pilot.report(now));
        }
        for ((pool, weight), (_, effective)) in route.split.iter().zip(route.effective_split()) {
            let labels = [("route", &*route.name), ("pool", &*pool.name)];
            e.gauge(Family::RouteSplitWeight, &labels, f64::from(*weight));
            e.gauge(Family::PoolEffectiveWeight, &labels, tidy(effective));
        }
    }
    // Requests refused before routing are counted with no latency: their counter may
    // come before any histogram observation.
    let unrouted = snapshot.unrouted.totals();
    let labels = [("route", NONE), ("pool", NONE)];
    e.codes(Family::Requests, &labels, "code", &unrouted);
    if unrouted.observations() > 0 {
        e.histogram(Family::RequestDuration, &labels, &unrouted);
    }
    for pool in &snapshot.pools {
        for m in pool.backends.members() {
            let b = &m.backend;
            let labels = [("pool", &*pool.name), ("backend", b.authority.as_str())];
            let totals = b.stats.totals();
            e.codes(Family::UpstreamRequests, &labels, "outcome", &totals);
            e.histogram(Family::UpstreamDuration, &labels, &totals);
            let effective = tidy(m.effective_weight());
            e.gauge(
                Family::BackendUp,
                &labels,
                f64::from(u8::from(effective > 0.0)),
            );
            e.gauge(Family::BackendEffectiveWeight, &labels, effective);
        }
    }
    let (succeeded, failed) = shared.reloads.counts();
    e.counter(
        Family::ConfigReloads,
        &[("result", "success")],
        succeeded as f64,
    );
    e.counter(
        Family::ConfigReloads,
        &[("result", "failure")],
        failed as f64,
    );
    e.gauge(Family::ConfigGeneration, &[], snapshot.generation as f64);
    let loaded = snapshot
        .loaded_at
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    e.gauge(Family::ConfigLastReloadSuccess, &[], loaded);
    e.gauge(Family::Inflight, &[], shared.in_flight.get() as f64);
    let connections = shared.connections.load(Ordering::Relaxed);
    e.gauge(Family::ClientConnections, &[], connections as f64);
    for (pool, result, n) in shared.registry.dns.results() {
        e.counter(
            Family::DnsResolutions,
            &[("pool", &pool), ("result", result)],
            n as f64,
        );
    }
    e.encode()
}

/// A ramp's families. Every state and check is written, 0 or not, so that a
/// rule over them has a series from the start.
fn autopilot(e: &mut Exposition, route: &str, ap: &Report) {
    e.gauge(Family::AutopilotStep, &[("route", route)], ap.step as f64);
    e.gauge(Family::AutopilotRun, &[("route", route)], ap.cfg.run as f64);
    for state in STATES {
        let on = f64::from(u8::from(state == ap.state));
        e.gauge(
            Family::AutopilotState,
            &[("route", route), ("state", state)],
            on,
        );
    }
    for (check, n) in CHECKS.iter().zip(ap.rollbacks) {
        e.counter(
            Family::AutopilotRollbacks,
            &[("route", route), ("check", check)],
            n as f64,
        );
    }
}
