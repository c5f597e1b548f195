//! One route's ramp as it runs: its state, its window, and the share the route's pool
//! pick reads.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

mod fleet;

use super::local::Window;
use super::machine::{self, Check, Event, Phase, State};
use super::prometheus::{self, Scope};
use super::Measurements;
use crate::config::{Autopilot, Source};
use crate::routing::Route;
use crate::sync::lock;

/// The share's value while the file's split applies.
const FILE_SPLIT: u32 = u32::MAX;

/// The check names, in the order of the rollback counters.
pub(crate) const CHECKS: [&str; 3] = ["error_ratio", "latency_ratio", "latency"];

/// How long one evaluation's Prometheus queries may take.
const FLEET_TIMEOUT: Duration = Duration::from_secs(2);

/// One route's ramp. The route of each snapshot holds it; a reload that keeps the
/// ramp (same `run`, pools and steps: [`Autopilot::same_ramp`]) hands the same one on.
#[derive(Debug)]
pub(crate) struct Pilot {
    route: String,
    /// One moment on both clocks, to show the state's `since` (an `Instant`) as a wall
    /// time that does not drift from one look to the next.
    born: (Instant, SystemTime),
    /// The pool's share in percent, or [`FILE_SPLIT`]. Written by the evaluation, read
    /// by every request of the route: the one thing the request path touches.
    share: AtomicU32,
    /// Taken by the evaluations, `/status` and `/metrics`; never by a request.
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    cfg: Autopilot,
    state: State,
    checks: Vec<Check>,
    /// Why the ramp cannot judge now (its Prometheus unreachable): it holds its step.
    holding: Option<String>,
    window: Window,
    /// The pool's requests since the step began.
    step_requests: f64,
    /// Rollbacks by check, in the order of [`CHECKS`]; carried to the ramp that
    /// replaces this one on the route, so the counter never goes back.
    rollbacks: [u64; 3],
    /// A fleet evaluation is running, and when the last began.
    asking: bool,
    asked: Option<Instant>,
}

/// A ramp as `/status` and `/metrics` show it.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    pub cfg: Autopilot,
    pub state: &'static str,
    pub step: usize,
    /// The pool's percent now; `None`: the file's split.
    pub share: Option<u32>,
    pub since: SystemTime,
    pub reason: Option<String>,
    pub checks: Vec<Check>,
    pub holding: Option<String>,
    pub step_requests: f64,
    pub hold_left: Duration,
    /// (name, PromQL) for a fleet ramp.
    pub queries: Vec<(&'static str, String)>,
    pub rollbacks: [u64; 3],
}

impl Pilot {
    /// The ramp for a route of a new snapshot: `before`'s when it is the same ramp
    /// (taking the new limits), else a new one that starts pending.
    pub(crate) fn carry(route: &str, cfg: &Autopilot, before: Option<&Arc<Pilot>>) -> Arc<Pilot> {
        let now = Instant::now();
        if let Some(before) = before {
            let mut inner = lock(&before.inner);
            if inner.cfg.same_ramp(cfg) {
                inner.cfg = cfg.clone();
                drop(inner);
                return before.clone();
            }
            tracing::info!(route, run = cfg.run, "autopilot starts over");
        }
        let rollbacks = before.map_or([0; 3], |b| lock(&b.inner).rollbacks);
        Arc::new(Pilot {
            route: route.to_owned(),
            born: (now, SystemTime::now()),
            share: AtomicU32::new(FILE_SPLIT),
            inner: Mutex::new(Inner {
                cfg: cfg.clone(),
                state: State::new(now),
                checks: Vec::new(),
                holding: None,
                window: Window::default(),
                step_requests: 0.0,
                rollbacks,
                asking: false,
                asked: None,
            }),
        })
    }

    /// The pool's share in percent now, or `None` for the file's split.
    #[inline]
    pub(crate) fn share(&self) -> Option<u32> {
        match self.share.load(Ordering::Relaxed) {
            FILE_SPLIT => None,
            s => Some(s),
        }
    }

    pub(crate) fn is_fleet(&self) -> bool {
        matches!(lock(&self.inner).cfg.source, Source::Prometheus { .. })
    }

    /// Samples this instance's window and evaluates the ramp.
    pub(crate) fn evaluate_local(&self, route: &Route, now: Instant) {
        let mut inner = lock(&self.inner);
        let Some(sides) = route.autopilot_sides() else {
            return;
        };
        let keep = inner.cfg.window;
        let delta = inner.window.sample(route, sides, now, keep);
        inner.step_requests += delta.requests as f64;
        let [pool, baseline] = inner.window.measure(now, keep, inner.cfg.quantile);
        let m = Measurements {
            pool,
            baseline,
            step_requests: inner.step_requests,
        };
        self.apply(&mut inner, Ok(&m), now);
    }

    /// Evaluates the ramp on `measured` and puts the result in force.
    fn apply(&self, inner: &mut Inner, measured: Result<&Measurements, &str>, now: Instant) {
        if measured.is_ok() && inner.holding.take().is_some() {
            tracing::info!(route = self.route, "autopilot has numbers again");
        }
        let eval = machine::evaluate(&inner.cfg, &inner.state, now, measured);
        // The share first: a rollback takes effect before anything is said of it.
        let share = eval.state.share(&inner.cfg).unwrap_or(FILE_SPLIT);
        self.share.store(share, Ordering::Relaxed);
        if eval.state.phase != inner.state.phase {
            inner.step_requests = 0.0;
        }
        inner.state = eval.state;
        inner.checks = eval.checks;
        let route = self.route.as_str();
        let share = inner.state.share(&inner.cfg);
        match eval.event {
            None => {}
            Some(Event::Started) => tracing::info!(route, share, "autopilot starts its ramp"),
            Some(Event::Advanced { step }) => {
                tracing::info!(route, step = step + 1, share, "autopilot raises the pool")
            }
            Some(Event::Finished) => tracing::info!(
                route,
                share,
                "autopilot is done: write this split into the config file"
            ),
            Some(Event::RolledBack { check, reason }) => {
                tracing::warn!(route, check, %reason, "autopilot rolled back");
                if let Some(i) = CHECKS.iter().position(|c| *c == check) {
                    inner.rollbacks[i] += 1;
                }
            }
        }
    }

    /// The ramp as it stands at `now`.
    pub(crate) fn report(&self, now: Instant) -> Report {
        let inner = lock(&self.inner);
        let s = &inner.state;
        let queries = match &inner.cfg.source {
            Source::Prometheus { selector, .. } => {
                let scope = Scope::new(&self.route, inner.cfg.run, selector.as_deref());
                let mut shown = fleet::queries(&scope, &inner.cfg, s, now, false)
                    .shown()
                    .to_vec();
                shown.push(("step", prometheus::step_query(&scope)));
                shown
            }
            Source::Local => Vec::new(),
        };
        Report {
            cfg: inner.cfg.clone(),
            state: s.name(),
            step: s.step(&inner.cfg),
            share: s.share(&inner.cfg),
            since: self.wall(s.since),
            reason: match &s.phase {
                Phase::RolledBack { reason, .. } => Some(reason.clone()),
                _ => None,
            },
            checks: inner.checks.clone(),
            holding: inner.holding.clone(),
            step_requests: inner.step_requests,
            hold_left: machine::hold_left(&inner.cfg, s, now),
            queries,
            rollbacks: inner.rollbacks,
        }
    }
}

impl Pilot {
    fn wall(&self, at: Instant) -> SystemTime {
        let (instant, wall) = self.born;
        match at.checked_duration_since(instant) {
            Some(after) => wall.checked_add(after),
            None => wall.checked_sub(instant.saturating_duration_since(at)),
        }
        .unwrap_or(wall)
    }
}

#[cfg(test)]
mod tests;
