//! `GET /status`: the live snapshot, the backends' state and the last minute of
//! traffic, as the [`crate::status::Status`] document.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::autopilot::Report;
use crate::config::Source;

use crate::metrics::{self, Stats, WINDOW};
use crate::routing::{Route, Snapshot};
use crate::state::Shared;
use crate::status::{self, Status, Window};

pub(super) fn document(shared: &Shared) -> Status {
    let snapshot = shared.live.load_full();
    let now = Instant::now();
    let routes: Vec<(status::Route, Vec<(String, Stats)>)> =
        snapshot.routes.iter().map(|r| route(r, now)).collect();
    let pools = pools(&snapshot, &routes, now);
    Status {
        generation: snapshot.generation,
        config_path: snapshot.config.path.display().to_string(),
        loaded_at: humantime::format_rfc3339_seconds(snapshot.loaded_at).to_string(),
        last_reload_error: shared.reloads.last_error(),
        window_seconds: WINDOW.as_secs(),
        routes: routes.into_iter().map(|(r, _)| r).collect(),
        pools,
    }
}

/// A route's document, and its window per pool name for the pools' sums.
fn route(r: &Route, now: Instant) -> (status::Route, Vec<(String, Stats)>) {
    let c = &r.config;
    let hosts = c
        .hosts
        .iter()
        .map(|h| match h {
            crate::config::HostPattern::Exact(h) => h.clone(),
            crate::config::HostPattern::Suffix(s) => format!("*{s}"),
        })
        .collect();
    let split = r
        .split
        .iter()
        .map(|(p, w)| (p.name.to_string(), *w))
        .collect();
    let effective_split = r
        .effective_split()
        .map(|(p, w)| (p.name.to_string(), metrics::tidy(w)))
        .collect();
    let mut by_pool = Vec::new();
    for (pool, series, in_split) in r.pool_series() {
        let stats = series.last_minute(now);
        // Requests that got no pool are listed only when there were some.
        if in_split || stats.requests > 0 {
            by_pool.push((pool.to_owned(), stats));
        }
    }
    let traffic = by_pool
        .iter()
        .map(|(name, st)| (name.clone(), figures(st)))
        .collect();
    let doc = status::Route {
        name: r.name.to_string(),
        hosts,
        path_prefix: if c.path_prefix.is_empty() {
            "/".to_owned()
        } else {
            c.path_prefix.clone()
        },
        split,
        effective_split,
        traffic,
        autopilot: r.pilot().map(|p| autopilot(r, &p.report(now))),
    };
    (doc, by_pool)
}

fn autopilot(r: &Route, ap: &Report) -> status::Autopilot {
    let share = ap.share.map_or_else(
        || {
            let total: u32 = r.split.iter().map(|(_, w)| w).sum();
            let pool = r
                .split
                .iter()
                .find(|(p, _)| *p.name == *ap.cfg.pool)
                .map_or(0, |(_, w)| *w);
            f64::from(pool) * 100.0 / f64::from(total.max(1))
        },
        f64::from,
    );
    status::Autopilot {
        state: ap.state.to_owned(),
        step: ap.step as u32,
        share: metrics::tidy(share),
        since: humantime::format_rfc3339_seconds(ap.since).to_string(),
        reason: ap.reason.clone(),
        checks: ap
            .checks
            .iter()
            .map(|c| status::Check {
                name: c.name.to_owned(),
                value: c.value.map(metrics::tidy),
                limit: c.limit,
                verdict: c.verdict.as_str().to_owned(),
            })
            .collect(),
        pool: ap.cfg.pool.clone(),
        baseline: ap.cfg.baseline.clone(),
        steps: ap.cfg.steps.clone(),
        source: match ap.cfg.source {
            Source::Local => "local",
            Source::Prometheus { .. } => "prometheus",
        }
        .to_owned(),
        hold_left_seconds: ap.hold_left.as_secs_f64().ceil(),
        hold_seconds: ap.cfg.hold.as_secs_f64(),
        step_requests: ap.step_requests.round(),
        min_requests: ap.cfg.min_requests,
        holding: ap.holding.clone(),
        queries: ap
            .queries
            .iter()
            .map(|(n, q)| ((*n).to_owned(), q.clone()))
            .collect(),
    }
}

fn pools(
    snapshot: &Snapshot,
    routes: &[(status::Route, Vec<(String, Stats)>)],
    now: Instant,
) -> Vec<status::Pool> {
    let mut sums: BTreeMap<&str, Stats> = BTreeMap::new();
    for (name, st) in routes.iter().flat_map(|(_, by_pool)| by_pool) {
        sums.entry(name).or_default().add(st);
    }
    snapshot
        .pools
        .iter()
        .map(|p| status::Pool {
            name: p.name.to_string(),
            window: figures(&sums.get(&*p.name).copied().unwrap_or_default()),
            backends: p
                .backends
                .members()
                .iter()
                .map(|m| {
                    let b = &m.backend;
                    status::Backend {
                        addr: b.addr.to_string(),
                        state: b.state().as_str().to_owned(),
                        weight: m.weight,
                        effective_weight: metrics::tidy(m.effective_weight()),
                        in_flight: b.conns.in_flight() as u64,
                        window: figures(&b.stats.last_minute(now)),
                    }
                })
                .collect(),
        })
        .collect()
}

fn figures(st: &Stats) -> Window {
    Window {
        requests: st.requests,
        request_rate: st.rate,
        error_ratio: st.error_ratio().unwrap_or(0.0),
        p50: st.quantile(0.5),
        p95: st.quantile(0.95),
        p99: st.quantile(0.99),
    }
}
