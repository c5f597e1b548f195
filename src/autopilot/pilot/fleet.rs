//! A fleet ramp's evaluation: the question asked of Prometheus, and what the answer
//! does to the ramp (join the fleet, keep up with it, or hold without numbers).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Inner, Pilot, FILE_SPLIT, FLEET_TIMEOUT};
use crate::autopilot::machine::{Phase, State};
use crate::autopilot::prometheus::{self, Endpoint, Fleet, Queries, Scope};
use crate::config::{Autopilot, Source};
use crate::sync::lock;

/// A fleet evaluation's question, taken under the lock and asked without it.
#[derive(Debug)]
pub(crate) struct Ask {
    endpoint: Endpoint,
    scope: Scope,
    queries: Queries,
    /// Unless rolled back: ask first where the fleet's ramp of this run is, to join it
    /// or keep up with it.
    follow: bool,
}

impl Pilot {
    /// The fleet evaluation's question when one is due at `now` and none is running.
    pub(crate) fn fleet_due(&self, now: Instant, every: Duration) -> Option<Ask> {
        let mut inner = lock(&self.inner);
        let Source::Prometheus { url, selector } = &inner.cfg.source else {
            return None;
        };
        let due = inner
            .asked
            .is_none_or(|at| now.saturating_duration_since(at) >= every);
        if inner.asking || !due {
            return None;
        }
        let scope = Scope::new(&self.route, inner.cfg.run, selector.as_deref());
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
        let volume_met = inner.step_requests >= inner.cfg.min_requests as f64;
        Some(Ask {
            endpoint,
            queries: queries(&scope, &inner.cfg, &inner.state, now, volume_met),
            scope,
            follow: !matches!(inner.state.phase, Phase::RolledBack { .. }),
        })
    }

    /// Asks the fleet's Prometheus, then evaluates the ramp on its answer (holding
    /// when it has none).
    pub(crate) async fn evaluate_fleet(&self, ask: Ask) {
        let fleet = match ask.follow {
            true => Some(prometheus::fleet(&ask.endpoint, &ask.scope, FLEET_TIMEOUT).await),
            false => None,
        };
        let measured = prometheus::measure(&ask.endpoint, &ask.queries, FLEET_TIMEOUT).await;
        let now = Instant::now();
        let mut inner = lock(&self.inner);
        inner.asking = false;
        let fleet = match fleet {
            Some(Err(e)) => return self.hold(&mut inner, e),
            Some(Ok(fleet)) => Some(fleet),
            None => None,
        };
        // A reload may have made the ramp local, and moved it, while the question was
        // out: the phase is read again here.
        let joining = inner.state.phase == Phase::Pending;
        if let Some(fleet) = fleet.filter(|_| joining) {
            self.join(&mut inner, fleet, now);
        }
        match measured {
            Ok(mut m) => {
                // The step's volume, once met, is not asked again: it stays met.
                match ask.queries.step_requests {
                    Some(_) => inner.step_requests = m.step_requests,
                    None => m.step_requests = inner.step_requests,
                }
                self.apply(&mut inner, Ok(&m), now);
            }
            Err(e) => return self.hold(&mut inner, e),
        }
        // After its own checks: a rollback they make is this instance's, with its
        // reason and its count, not a copy of another's.
        if let Some(fleet) = fleet.filter(|_| !joining) {
            self.keep_up(&mut inner, fleet, now);
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
                "fleet: another instance of run {} rolled back at step {}; change run to start over",
                inner.cfg.run,
                at + 1
            );
            tracing::warn!(route, %reason, "autopilot joins the fleet rolled back");
            inner.state = inner.state.rolled_back(at, reason, now);
        } else if step > 0 {
            tracing::info!(route, step, "autopilot joins the fleet's ramp");
            inner.state = State::resumed(&inner.cfg, step, now);
        }
        let share = inner.state.share(&inner.cfg).unwrap_or(FILE_SPLIT);
        self.share.store(share, Ordering::Relaxed);
        inner.step_requests = 0.0;
    }

    /// A running ramp keeps with the fleet: it moves up to a higher step of its run,
    /// and rolls back when an instance of its run rolled back. Its hold began later
    /// than the fleet's (it joined later, or its evaluations fall later in the second),
    /// so it would otherwise stay behind by that much at every step: up to a whole hold
    /// for an instance restarted mid-step. The instance that advanced saw the same
    /// checks pass; the one that rolled back saw one fail, and every instance reads the
    /// same numbers, so its own checks nearly always say so first: following is for the
    /// check that failed on one evaluation and not on the next.
    fn keep_up(&self, inner: &mut Inner, fleet: Fleet, now: Instant) {
        let route = self.route.as_str();
        let at = match inner.state.phase {
            Phase::Step(i) => i,
            Phase::Done => inner.cfg.steps.len().saturating_sub(1),
            _ => return,
        };
        if fleet.rolled_back {
            let reason = format!(
                "fleet: another instance of run {} rolled back at step {}",
                inner.cfg.run,
                at + 1
            );
            tracing::warn!(route, %reason, "autopilot rolled back with its fleet");
            self.share.store(FILE_SPLIT, Ordering::Relaxed);
            inner.state = inner.state.rolled_back(at, reason, now);
            return;
        }
        let step = fleet.step.unwrap_or(0) as usize;
        if inner.state.phase == Phase::Done || step <= at + 1 {
            return;
        }
        tracing::info!(route, step, "autopilot keeps up with the fleet's ramp");
        inner.state = State {
            baseline_latency: inner.state.baseline_latency,
            ..State::resumed(&inner.cfg, step, now)
        };
        let share = inner.state.share(&inner.cfg).unwrap_or(FILE_SPLIT);
        self.share.store(share, Ordering::Relaxed);
        inner.step_requests = 0.0;
    }

    fn hold(&self, inner: &mut Inner, why: String) {
        // Checks of an earlier answer would read as today's.
        inner.checks.clear();
        if inner.holding.is_none() {
            tracing::warn!(route = self.route, error = %why, "autopilot holds its step: no numbers to judge by");
        }
        inner.holding = Some(why);
    }
}

/// The fleet's queries for a ramp in `state` at `now`; without the step's volume
/// once it is met.
pub(super) fn queries(
    scope: &Scope,
    cfg: &Autopilot,
    state: &State,
    now: Instant,
    volume_met: bool,
) -> Queries {
    let elapsed = now.saturating_duration_since(state.since);
    Queries::new(
        scope,
        &cfg.pool,
        &cfg.baseline,
        cfg.window,
        cfg.quantile,
        (!volume_met).then_some(elapsed),
    )
}
