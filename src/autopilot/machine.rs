//! The ramp's state machine, free of I/O: the route's autopilot, the state, the clock
//! and a window of measurements in; the next state and each check's verdict out.

use std::time::{Duration, Instant};

use super::{Measurements, Side};
use crate::config::Autopilot;

/// The fewest requests a check judges on, however loose its limit.
const JUDGE_MIN: f64 = 10.0;

/// Latencies under this compare as this in the latency ratio: below it, a ratio
/// between two fast pools measures the scheduler and the histogram's bucket edges, not
/// the service (a p99 of 0.9 ms against 2.4 ms is no regression).
pub(crate) const RATIO_FLOOR: f64 = 0.025;

/// The state names, as [`State::name`] gives them.
pub(crate) const STATES: [&str; 4] = ["pending", "running", "done", "rolled_back"];

/// Where a ramp stands.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Phase {
    /// Not started: the file's split applies. A fleet ramp stays here until Prometheus
    /// has said at which step the fleet is.
    Pending,
    /// At `steps[i]`.
    Step(usize),
    /// The last step reached and held: it keeps that share, and its checks.
    Done,
    /// A check failed at `steps[at]`: the file's split applies until `run` changes.
    RolledBack { at: usize, reason: String },
}

/// A ramp's state: its phase and when it began.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct State {
    pub phase: Phase,
    pub since: Instant,
    /// The baseline's latency quantile when last measured: what the pool is compared
    /// with once the baseline gets no traffic (a last step of 100 %).
    pub baseline_latency: Option<f64>,
}

/// What a check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Pass,
    Fail,
    /// Too few requests in the window to judge.
    Wait,
}

/// One check over the window: `error_ratio`, `latency_ratio` or `latency`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Check {
    pub name: &'static str,
    /// What was measured; `None` while waiting for requests.
    pub value: Option<f64>,
    pub limit: f64,
    pub verdict: Verdict,
}

/// What changed in one evaluation, for the log and the counters.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Event {
    Started,
    Advanced { step: usize },
    Finished,
    RolledBack { check: &'static str, reason: String },
}

/// The outcome of one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Evaluation {
    pub state: State,
    pub checks: Vec<Check>,
    pub event: Option<Event>,
}

// === impl State ===

impl State {
    pub(crate) fn new(now: Instant) -> State {
        State {
            phase: Phase::Pending,
            since: now,
            baseline_latency: None,
        }
    }

    /// A ramp that joins a fleet already at step `step` (1-based).
    pub(crate) fn resumed(cfg: &Autopilot, step: usize, now: Instant) -> State {
        let phase = match step {
            0 => Phase::Pending,
            k if k > cfg.steps.len() => Phase::Done,
            k => Phase::Step(k - 1),
        };
        State {
            phase,
            since: now,
            baseline_latency: None,
        }
    }

    /// The pool's share in percent while this phase lasts; `None`: the file's split.
    pub(crate) fn share(&self, cfg: &Autopilot) -> Option<u32> {
        match self.phase {
            Phase::Pending | Phase::RolledBack { .. } => None,
            Phase::Step(i) => cfg.steps.get(i).copied(),
            Phase::Done => cfg.steps.last().copied(),
        }
    }

    /// The 1-based step: 0 while pending; the step it failed at once rolled back.
    pub(crate) fn step(&self, cfg: &Autopilot) -> usize {
        match self.phase {
            Phase::Pending => 0,
            Phase::Step(i) | Phase::RolledBack { at: i, .. } => i + 1,
            Phase::Done => cfg.steps.len(),
        }
    }

    /// The name `/status` and the state gauge use.
    pub(crate) fn name(&self) -> &'static str {
        match self.phase {
            Phase::Pending => "pending",
            Phase::Step(_) => "running",
            Phase::Done => "done",
            Phase::RolledBack { .. } => "rolled_back",
        }
    }

    /// This ramp rolled back at `steps[at]` for `reason`, at `now`.
    pub(crate) fn rolled_back(&self, at: usize, reason: String, now: Instant) -> State {
        self.at(Phase::RolledBack { at, reason }, now)
    }

    fn at(&self, phase: Phase, now: Instant) -> State {
        State {
            phase,
            since: now,
            baseline_latency: self.baseline_latency,
        }
    }
}

/// Evaluates a ramp at `now`. `measured` is the window's figures, or why there are
/// none (the source unreachable): then the ramp holds, never advancing blind.
pub(crate) fn evaluate(
    cfg: &Autopilot,
    state: &State,
    now: Instant,
    measured: Result<&Measurements, &str>,
) -> Evaluation {
    let mut state = state.clone();
    let Ok(m) = measured else {
        return Evaluation {
            state,
            checks: Vec::new(),
            event: None,
        };
    };
    let judge = Judge::of(cfg);
    if m.baseline.observations >= judge.latency {
        state.baseline_latency = m.baseline.latency.or(state.baseline_latency);
    }
    let checks = checks(cfg, &state, m, &judge);
    let failed = checks.iter().find(|c| c.verdict == Verdict::Fail);
    let last = cfg.steps.len().saturating_sub(1);
    let (phase, event) = match (&state.phase, failed) {
        (Phase::Pending, _) => (Phase::Step(0), Some(Event::Started)),
        (Phase::RolledBack { .. }, _) | (Phase::Done, None) => (state.phase.clone(), None),
        (Phase::Step(i), Some(failed)) => rollback(cfg, failed, *i),
        (Phase::Done, Some(failed)) => rollback(cfg, failed, last),
        (Phase::Step(i), None) => {
            let held = now.saturating_duration_since(state.since) >= cfg.hold;
            let volume = m.step_requests >= cfg.min_requests as f64;
            let passing = checks.iter().all(|c| c.verdict == Verdict::Pass);
            if !(held && volume && passing) {
                (Phase::Step(*i), None)
            } else if *i < last {
                (Phase::Step(i + 1), Some(Event::Advanced { step: i + 1 }))
            } else {
                (Phase::Done, Some(Event::Finished))
            }
        }
    };
    if phase != state.phase {
        state = state.at(phase, now);
    }
    Evaluation {
        state,
        checks,
        event,
    }
}

fn rollback(cfg: &Autopilot, failed: &Check, at: usize) -> (Phase, Option<Event>) {
    let reason = reason(cfg, failed, at);
    let event = Event::RolledBack {
        check: failed.name,
        reason: reason.clone(),
    };
    (Phase::RolledBack { at, reason }, Some(event))
}

/// How many requests in the window each kind of check needs before it judges.
///
/// Enough that one request cannot decide it alone: one 5xx in 10 is an error ratio of
/// 0.1, but at a limit of 0.01 it takes 100 for one error to be within it; the p99 of
/// 10 answers is their slowest. So a check would wait for `1 / limit` requests (for a
/// quantile `q`, `1 / (1 - q)`), at least [`JUDGE_MIN`]. But never for more than the
/// step's volume asks of a window: `min_requests` (the operator's own word for how
/// much a step is judged on), in the part of the hold the window covers. A window
/// shorter than the hold must not ask for the whole step's volume in it, or a ramp
/// whose steps have their volume would wait for ever.
#[derive(Debug)]
struct Judge {
    errors: f64,
    latency: f64,
}

impl Judge {
    fn of(cfg: &Autopilot) -> Judge {
        let volume = cfg.min_requests as f64;
        let covered = match cfg.hold.as_secs_f64() {
            h if h > 0.0 => (cfg.window.as_secs_f64() / h).min(1.0),
            _ => 1.0,
        };
        let most = (volume * covered)
            .ceil()
            .max(JUDGE_MIN)
            .min(volume)
            .max(1.0);
        let need = |per: f64| (1.0 / per).ceil().max(JUDGE_MIN).min(most);
        Judge {
            errors: need(cfg.max_error_ratio),
            latency: need(1.0 - cfg.quantile),
        }
    }
}

/// The checks over the window. Each waits until its pools have the requests `judge`
/// asks for in it.
fn checks(cfg: &Autopilot, state: &State, m: &Measurements, judge: &Judge) -> Vec<Check> {
    let pool = &m.pool;
    let mut out = vec![Check::judged(
        "error_ratio",
        (pool.requests >= judge.errors).then(|| pool.errors / pool.requests),
        cfg.max_error_ratio,
    )];
    let latency = |side: &Side| {
        (side.observations >= judge.latency)
            .then_some(side.latency)
            .flatten()
    };
    let full = state.share(cfg) == Some(100);
    // With no traffic of its own at a full share, the baseline's last measure stands.
    let baseline = latency(&m.baseline).or(state.baseline_latency.filter(|_| full));
    let ratio = latency(pool)
        .zip(baseline)
        .map(|(p, b)| p.max(RATIO_FLOOR) / b.max(RATIO_FLOOR));
    // At a full share with no baseline ever measured (an instance that joined its fleet
    // there) there is nothing to compare with: no ratio check, rather than one that
    // waits for ever.
    if !(full && baseline.is_none()) {
        out.push(Check::judged("latency_ratio", ratio, cfg.max_latency_ratio));
    }
    if let Some(max) = cfg.max_latency {
        out.push(Check::judged("latency", latency(pool), max.as_secs_f64()));
    }
    out
}

/// The rollback's reason, in words: the check, its value, its limit and where.
fn reason(cfg: &Autopilot, c: &Check, at: usize) -> String {
    let value = c.value.unwrap_or(f64::NAN);
    let share = cfg.steps.get(at).copied().unwrap_or(0);
    let p = percentile(cfg.quantile);
    let (shown, limit) = match c.name {
        "latency" => (format!("p{p} {}", seconds(value)), seconds(c.limit)),
        "latency_ratio" => (
            format!("p{p} {value:.2} x {}", cfg.baseline),
            format!("{}", c.limit),
        ),
        _ => (format!("{value:.4}"), format!("{}", c.limit)),
    };
    format!(
        "{}: {shown} above limit {limit} at step {} ({share}%)",
        c.name,
        at + 1
    )
}

fn percentile(q: f64) -> String {
    let p = q * 100.0;
    if (p - p.round()).abs() < 1e-9 {
        format!("{}", p.round())
    } else {
        format!("{p}")
    }
}

fn seconds(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0}ms", s * 1000.0)
    } else if s.fract() == 0.0 {
        format!("{s}s")
    } else {
        format!("{s:.2}s")
    }
}

// === impl Check ===

impl Check {
    fn judged(name: &'static str, value: Option<f64>, limit: f64) -> Check {
        let verdict = match value {
            None => Verdict::Wait,
            Some(v) if v > limit => Verdict::Fail,
            Some(_) => Verdict::Pass,
        };
        Check {
            name,
            value,
            limit,
            verdict,
        }
    }
}

impl Verdict {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Wait => "wait",
        }
    }
}

/// How long a step has left of its hold at `now`.
pub(crate) fn hold_left(cfg: &Autopilot, state: &State, now: Instant) -> Duration {
    cfg.hold
        .saturating_sub(now.saturating_duration_since(state.since))
}

#[cfg(test)]
mod tests;
