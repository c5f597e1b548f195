//! Autopilot: a route's ramp that raises its new pool step by step and rolls it back
//! the moment the pool's own numbers fail a check (DESIGN "Autopilot").
//!
//! - [`machine`]: the pure state machine (phase, checks, verdicts), clock passed in.
//! - [`Pilot`] (`pilot.rs`): one route's ramp as it runs. The snapshot's route holds
//!   it in an `Arc` that a reload carries over while the ramp stays the same, as it
//!   carries the route's series; the request path reads only its share, one atomic.
//! - `local.rs`: this instance's windows, sampled from the series the requests already
//!   count in, so the request path pays nothing for them.
//! - `prometheus.rs`: the fleet's windows, as PromQL over every instance's series.
//! - `run` (below): the task that evaluates every ramp of the live snapshot.
//!
//! Autopilot never writes the config file: the file's split is where a rollback
//! returns to, and `done` holds the last step until the operator writes it there.

mod local;
pub(crate) mod machine;
mod pilot;
mod prometheus;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

pub(crate) use machine::{RATIO_FLOOR, STATES};
pub(crate) use pilot::{Pilot, Report, CHECKS};
pub(crate) use prometheus::Endpoint;

use crate::state::Shared;

/// One pool's figures over the check window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Side {
    /// Requests of the route that this pool answered (`cutover_requests_total{route,pool}`).
    pub requests: f64,
    /// Of those, the ones answered 5xx (proxy-made 5xx included).
    pub errors: f64,
    /// Backend attempts in the pool's upstream latency histogram (all routes).
    pub observations: f64,
    /// The configured quantile of the pool's upstream latency, in seconds; `None`
    /// without observations.
    pub latency: Option<f64>,
}

/// What one evaluation reads.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Measurements {
    pub pool: Side,
    pub baseline: Side,
    /// The pool's requests on the route since the current step began.
    pub step_requests: f64,
}

/// How often local ramps are evaluated: checks run continuously, and a pool that turns
/// bad must be out within a couple of seconds, so a fraction of one.
const LOCAL_TICK: Duration = Duration::from_millis(250);
/// How often a fleet ramp asks Prometheus: its series move once a scrape anyway.
const FLEET_TICK: Duration = Duration::from_secs(1);

/// Evaluates every ramp of the live snapshot until shutdown. Runs on worker 0 beside
/// the admin listener; a fleet ramp's queries run as tasks of their own, so a slow
/// Prometheus never delays a local ramp's rollback.
pub(crate) async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<Option<Duration>>) {
    let mut tick = tokio::time::interval(LOCAL_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {}
        }
        let snapshot = shared.live.load_full();
        let now = std::time::Instant::now();
        for route in &snapshot.routes {
            let Some(pilot) = route.pilot() else { continue };
            if pilot.is_fleet() {
                if let Some(ask) = pilot.fleet_due(now, FLEET_TICK) {
                    let pilot = pilot.clone();
                    tokio::spawn(async move { pilot.evaluate_fleet(ask).await });
                }
            } else {
                pilot.evaluate_local(route, now);
            }
        }
    }
}
