//! One route's ramp as it runs: its state, its window, and the share the route's pool
//! pick reads.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::local::Window;
use super::machine::{self, Check, Event, Phase, State};
use super::prometheus::{self, Endpoint, Fleet, Queries};
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

/// A fleet evaluation's question, taken under the lock and asked without it.
#[derive(Debug)]
pub(crate) struct Ask {
    endpoint: Endpoint,
    queries: Queries,
    /// Pending or running: ask first where the fleet's ramp of this run is, to join it
    /// or keep up with it.
    fleet_run: Option<i64>,
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
        matches!(lock(&self.inner).cfg.source, Source::Prometheus(_))
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

    /// The fleet evaluation's question when one is due at `now` and none is running.
    pub(crate) fn fleet_due(&self, now: Instant, every: Duration) -> Option<Ask> {
        let mut inner = lock(&self.inner);
        let Source::Prometheus(url) = &inner.cfg.source else {
            return None;
        };
        let due = inner
            .asked
            .is_none_or(|at| now.saturating_duration_since(at) >= every);
        if inner.asking || !due {
            return None;
        }
        let endpoint = match Endpoint::parse(url) {
            Ok(e) => e,
            Err(e) => {
                // Validation refuses such a file; kept for the type's sake.
                inner.holding = Some(e);
                return None;
            }
        };
        inner.asking = true;
        inner.asked = Some(now);
        Some(Ask {
            endpoint,
            queries: queries(&self.route, &inner.cfg, &inner.state, now),
            fleet_run: matches!(inner.state.phase, Phase::Pending | Phase::Step(_))
                .then_some(inner.cfg.run),
        })
    }

    /// Asks the fleet's Prometheus, then evaluates the ramp on its answer (holding
    /// when it has none).
    pub(crate) async fn evaluate_fleet(&self, ask: Ask) {
        let joined = match ask.fleet_run {
            Some(run) => {
                Some(prometheus::fleet(&ask.endpoint, &self.route, run, FLEET_TIMEOUT).await)
            }
            None => None,
        };
        let measured = prometheus::measure(&ask.endpoint, &ask.queries, FLEET_TIMEOUT).await;
        let now = Instant::now();
        let mut inner = lock(&self.inner);
        inner.asking = false;
        match joined {
            // A reload may have started the ramp over while the question was out.
            Some(Ok(fleet)) if inner.state.phase == Phase::Pending => {
                self.join(&mut inner, fleet, now);
            }
            Some(Ok(fleet)) => self.keep_up(&mut inner, fleet, now),
            Some(Err(e)) => {
                self.hold(&mut inner, e);
                return;
            }
            _ => {}
        }
        match measured {
            Ok(m) => {
                inner.step_requests = m.step_requests;
                self.apply(&mut inner, Ok(&m), now);
            }
            Err(e) => self.hold(&mut inner, e),
        }
    }

    /// Takes up the fleet's ramp where it is: rolled back when an instance of this run
    /// is, else at the fleet's step, else from the first step (`None`, or 0: pending).
    fn join(&self, inner: &mut Inner, fleet: Fleet, now: Instant) {
        let route = self.route.as_str();
        let step = fleet.step.unwrap_or(0) as usize;
        if fleet.rolled_back {
            let at = step.clamp(1, inner.cfg.steps.len()) - 1;
            let reason = format!(
                "the fleet rolled back run {} at step {}; change run to start over",
                inner.cfg.run,
                at + 1
            );
            tracing::warn!(route, %reason, "autopilot joins the fleet rolled back");
            inner.state = State {
                phase: Phase::RolledBack { at, reason },
                since: now,
                baseline_latency: None,
            };
            self.share.store(FILE_SPLIT, Ordering::Relaxed);
        } else if step > 0 {
            tracing::info!(route, step, "autopilot joins the fleet's ramp");
            inner.state = State::resumed(&inner.cfg, step, now);
        }
        inner.step_requests = 0.0;
    }

    /// A running ramp behind the fleet's step moves up to it. Its hold began later than
    /// the fleet's (it joined later, or its evaluations fall later in the second), so
    /// it would otherwise stay behind by that much at every step: up to a whole hold
    /// for an instance restarted mid-step. The instance that advanced saw the same
    /// checks pass. Not while an instance of the run is rolled back: this one's own
    /// checks judge that, now.
    fn keep_up(&self, inner: &mut Inner, fleet: Fleet, now: Instant) {
        let Phase::Step(i) = inner.state.phase else {
            return;
        };
        let step = fleet.step.unwrap_or(0) as usize;
        if fleet.rolled_back || step <= i + 1 {
            return;
        }
        tracing::info!(
            route = self.route,
            step,
            "autopilot keeps up with the fleet's ramp"
        );
        inner.state = State {
            baseline_latency: inner.state.baseline_latency,
            ..State::resumed(&inner.cfg, step, now)
        };
        let share = inner.state.share(&inner.cfg).unwrap_or(FILE_SPLIT);
        self.share.store(share, Ordering::Relaxed);
        inner.step_requests = 0.0;
    }

    fn hold(&self, inner: &mut Inner, why: String) {
        if inner.holding.is_none() {
            tracing::warn!(route = self.route, error = %why, "autopilot holds its step: no numbers to judge by");
        }
        inner.holding = Some(why);
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
            Source::Prometheus(_) => {
                let mut shown = queries(&self.route, &inner.cfg, s, now).shown().to_vec();
                shown.push(("step", prometheus::step_query(&self.route, inner.cfg.run)));
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

/// The fleet's queries for a ramp in `state` at `now`.
fn queries(route: &str, cfg: &Autopilot, state: &State, now: Instant) -> Queries {
    Queries::new(
        route,
        &cfg.pool,
        &cfg.baseline,
        cfg.window,
        cfg.quantile,
        now.saturating_duration_since(state.since),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Autopilot {
        Autopilot {
            run: 1,
            pool: "k8s".into(),
            baseline: "ecs".into(),
            steps: vec![10, 100],
            hold: Duration::from_secs(1),
            min_requests: 1,
            window: Duration::from_secs(1),
            max_error_ratio: 0.01,
            max_latency_ratio: 1.5,
            max_latency: None,
            quantile: 0.99,
            source: Source::Local,
        }
    }

    /// A pilot rolled back by `n` error_ratio failures.
    fn rolled_back(n: u64) -> Arc<Pilot> {
        let p = Pilot::carry("r", &cfg(), None);
        let mut inner = lock(&p.inner);
        inner.state.phase = Phase::RolledBack {
            at: 0,
            reason: "x".into(),
        };
        inner.rollbacks[0] = n;
        drop(inner);
        p
    }

    #[test]
    fn a_reload_of_the_same_ramp_keeps_it_and_takes_its_new_limits() {
        let before = rolled_back(1);
        let looser = Autopilot {
            max_error_ratio: 0.5,
            hold: Duration::from_secs(60),
            ..cfg()
        };
        let after = Pilot::carry("r", &looser, Some(&before));
        assert!(Arc::ptr_eq(&before, &after));
        let report = after.report(Instant::now());
        assert_eq!(report.state, "rolled_back", "a rollback outlives a reload");
        assert_eq!(report.cfg.max_error_ratio, 0.5);
    }

    #[test]
    fn a_new_run_starts_over_and_keeps_counting_rollbacks() {
        let before = rolled_back(2);
        let again = Autopilot { run: 2, ..cfg() };
        let after = Pilot::carry("r", &again, Some(&before));
        assert!(!Arc::ptr_eq(&before, &after));
        let report = after.report(Instant::now());
        assert_eq!((report.state, report.step), ("pending", 0));
        assert_eq!(report.rollbacks, [2, 0, 0]);
        assert_eq!(after.share(), None);
        // Other steps are another ramp too.
        let steps = Autopilot {
            steps: vec![50, 100],
            ..cfg()
        };
        assert!(!Arc::ptr_eq(
            &before,
            &Pilot::carry("r", &steps, Some(&before))
        ));
    }
}
