use std::time::{Duration, Instant};

use super::*;
use crate::config::{Autopilot, Source};

fn cfg() -> Autopilot {
    Autopilot {
        run: 1,
        pool: "k8s".into(),
        baseline: "ecs".into(),
        steps: vec![10, 50, 100],
        hold: Duration::from_secs(10),
        min_requests: 100,
        window: Duration::from_secs(60),
        max_error_ratio: 0.01,
        max_latency_ratio: 1.5,
        max_latency: Some(Duration::from_secs(1)),
        quantile: 0.99,
        source: Source::Local,
    }
}

/// A pool and a baseline answering `requests` each in the window, fast and clean.
fn healthy(requests: f64) -> Measurements {
    let side = Side {
        requests,
        errors: 0.0,
        observations: requests,
        latency: Some(0.1),
    };
    Measurements {
        pool: side,
        baseline: side,
        step_requests: requests,
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A ramp already at step `i`, since `t0`.
fn at_step(i: usize, t0: Instant) -> State {
    State {
        phase: Phase::Step(i),
        since: t0,
        baseline_latency: None,
    }
}

fn verdicts(e: &Evaluation) -> Vec<(&'static str, Verdict)> {
    e.checks.iter().map(|c| (c.name, c.verdict)).collect()
}

#[test]
fn pending_starts_at_the_first_step_once_there_are_numbers() {
    let c = cfg();
    let t0 = Instant::now();
    let s = State::new(t0);
    assert_eq!((s.share(&c), s.step(&c), s.name()), (None, 0, "pending"));
    let held = evaluate(&c, &s, t0, Err("prometheus unreachable"));
    assert_eq!(held.state.phase, Phase::Pending, "no numbers: no start");
    let t1 = t0 + secs(1);
    let e = evaluate(&c, &s, t1, Ok(&Measurements::default()));
    assert_eq!(e.state.phase, Phase::Step(0));
    assert_eq!(e.state.since, t1);
    assert_eq!(e.event, Some(Event::Started));
    assert_eq!((e.state.share(&c), e.state.step(&c)), (Some(10), 1));
}

#[test]
fn a_step_advances_only_when_hold_volume_and_every_check_pass() {
    let c = cfg();
    let t0 = Instant::now();
    let s = at_step(0, t0);
    // Everything but the hold.
    let early = evaluate(&c, &s, t0 + secs(9), Ok(&healthy(1000.0)));
    assert_eq!((&early.state.phase, early.state.since), (&s.phase, t0));
    // Everything but the volume: the window is full, the step's own count is not.
    let mut few = healthy(1000.0);
    few.step_requests = 99.0;
    assert_eq!(
        evaluate(&c, &s, t0 + secs(10), Ok(&few)).state.phase,
        s.phase
    );
    // Everything but a judgeable baseline: its latency check waits.
    let mut thin = healthy(1000.0);
    thin.baseline.observations = 3.0;
    let e = evaluate(&c, &s, t0 + secs(10), Ok(&thin));
    assert_eq!(e.state.phase, s.phase);
    assert_eq!(
        verdicts(&e),
        [
            ("error_ratio", Verdict::Pass),
            ("latency_ratio", Verdict::Wait),
            ("latency", Verdict::Pass)
        ]
    );
    // All of it.
    let t = t0 + secs(10);
    let e = evaluate(&c, &s, t, Ok(&healthy(1000.0)));
    assert_eq!(e.state.phase, Phase::Step(1));
    assert_eq!(e.state.since, t, "the next step's hold starts now");
    assert_eq!(e.event, Some(Event::Advanced { step: 1 }));
}

#[test]
fn the_last_step_held_is_done_and_keeps_its_share() {
    let c = cfg();
    let t0 = Instant::now();
    let e = evaluate(&c, &at_step(2, t0), t0 + secs(10), Ok(&healthy(500.0)));
    assert_eq!(e.state.phase, Phase::Done);
    assert_eq!(e.event, Some(Event::Finished));
    assert_eq!((e.state.share(&c), e.state.step(&c)), (Some(100), 3));
    let later = evaluate(&c, &e.state, t0 + secs(100), Ok(&healthy(500.0)));
    assert_eq!(later.state, e.state, "done holds");
}

#[test]
fn a_check_with_too_few_requests_waits_rather_than_passes() {
    let c = cfg();
    let t0 = Instant::now();
    // Nine requests, all failed: at a limit of 0.01 a hundred are needed to judge.
    let mut m = healthy(9.0);
    m.pool.errors = 9.0;
    m.step_requests = 1000.0;
    let e = evaluate(&c, &at_step(0, t0), t0 + secs(60), Ok(&m));
    assert_eq!(e.state.phase, Phase::Step(0));
    assert!(e.checks.iter().all(|ch| ch.verdict == Verdict::Wait));
    assert!(e.checks.iter().all(|ch| ch.value.is_none()));
    // A smaller min_requests judges on fewer.
    let small = Autopilot {
        min_requests: 5,
        ..cfg()
    };
    let e = evaluate(&small, &at_step(0, t0), t0 + secs(1), Ok(&m));
    assert!(matches!(e.state.phase, Phase::RolledBack { at: 0, .. }));
}

#[test]
fn any_failing_check_rolls_back_at_once_with_its_reason() {
    let c = cfg();
    let t0 = Instant::now();
    // One second into the step: no hold protects a failing pool.
    let now = t0 + secs(1);
    let mut errors = healthy(200.0);
    errors.pool.errors = 10.0;
    let e = evaluate(&c, &at_step(1, t0), now, Ok(&errors));
    let Phase::RolledBack { at, reason } = &e.state.phase else {
        panic!("not rolled back: {:?}", e.state.phase);
    };
    assert_eq!(*at, 1);
    assert_eq!(
        reason,
        "error_ratio: 0.0500 above limit 0.01 at step 2 (50%)"
    );
    assert_eq!(e.state.share(&c), None, "the file's split again");
    assert_eq!((e.state.step(&c), e.state.name()), (2, "rolled_back"));
    assert_eq!(e.state.since, now);
    assert!(matches!(
        e.event,
        Some(Event::RolledBack {
            check: "error_ratio",
            ..
        })
    ));

    let mut slow = healthy(200.0);
    slow.pool.latency = Some(0.2);
    slow.baseline.latency = Some(0.1);
    let e = evaluate(&c, &at_step(0, t0), now, Ok(&slow));
    assert_eq!(
        e.state.phase,
        Phase::RolledBack {
            at: 0,
            reason: "latency_ratio: p99 2.00 x ecs above limit 1.5 at step 1 (10%)".into()
        }
    );

    let mut ceiling = healthy(200.0);
    ceiling.pool.latency = Some(1.2);
    ceiling.baseline.latency = Some(1.0);
    let e = evaluate(&c, &at_step(0, t0), now, Ok(&ceiling));
    assert_eq!(
        verdicts(&e),
        [
            ("error_ratio", Verdict::Pass),
            ("latency_ratio", Verdict::Pass),
            ("latency", Verdict::Fail)
        ]
    );
    assert!(matches!(
        &e.state.phase,
        Phase::RolledBack { reason, .. } if reason == "latency: p99 1.20s above limit 1s at step 1 (10%)"
    ));
}

#[test]
fn rolled_back_stays_rolled_back_whatever_the_numbers() {
    let c = cfg();
    let t0 = Instant::now();
    let s = State {
        phase: Phase::RolledBack {
            at: 0,
            reason: "x".into(),
        },
        since: t0,
        baseline_latency: None,
    };
    let e = evaluate(&c, &s, t0 + secs(3600), Ok(&healthy(10_000.0)));
    assert_eq!((&e.state.phase, e.state.since), (&s.phase, t0));
    assert_eq!(e.event, None);
}

#[test]
fn done_still_rolls_back_when_the_pool_goes_bad() {
    let c = cfg();
    let t0 = Instant::now();
    let done = State {
        phase: Phase::Done,
        since: t0,
        baseline_latency: Some(0.1),
    };
    let mut m = healthy(200.0);
    m.pool.errors = 100.0;
    let e = evaluate(&c, &done, t0 + secs(5), Ok(&m));
    assert!(matches!(e.state.phase, Phase::RolledBack { at: 2, .. }));
}

#[test]
fn an_unreachable_source_holds_the_step_and_never_advances() {
    let c = cfg();
    let t0 = Instant::now();
    let s = at_step(0, t0);
    let e = evaluate(&c, &s, t0 + secs(3600), Err("connection refused"));
    assert_eq!(e.state, s);
    assert!(e.checks.is_empty());
    assert_eq!(e.event, None);
}

#[test]
fn fast_pools_compare_above_the_ratio_floor() {
    let c = cfg();
    let t0 = Instant::now();
    // 2.4 ms against 0.9 ms: both under the floor, a ratio of 1.
    let mut m = healthy(500.0);
    m.pool.latency = Some(0.0024);
    m.baseline.latency = Some(0.0009);
    let e = evaluate(&c, &at_step(0, t0), t0 + secs(10), Ok(&m));
    assert_eq!(e.checks[1].value, Some(1.0));
    assert_eq!(e.state.phase, Phase::Step(1));
    // 50 ms against 1 ms is a regression: 50 ms over the floor of 25 ms.
    m.pool.latency = Some(0.05);
    let e = evaluate(&c, &at_step(0, t0), t0 + secs(10), Ok(&m));
    assert_eq!(e.checks[1].value, Some(2.0));
    assert!(matches!(e.state.phase, Phase::RolledBack { .. }));
}

#[test]
fn at_full_share_the_pool_is_compared_with_the_baseline_last_measured() {
    let c = cfg();
    let t0 = Instant::now();
    // Step 2 (50 %) measures the baseline at 100 ms.
    let e = evaluate(&c, &at_step(1, t0), t0 + secs(10), Ok(&healthy(500.0)));
    assert_eq!(e.state.phase, Phase::Step(2));
    assert_eq!(e.state.baseline_latency, Some(0.1));
    // At 100 % the baseline gets nothing; the pool, at 400 ms, is judged against 100.
    let mut m = healthy(500.0);
    m.baseline = Side::default();
    m.pool.latency = Some(0.4);
    let e = evaluate(&c, &e.state, t0 + secs(11), Ok(&m));
    assert_eq!(e.checks[1].value, Some(4.0));
    assert!(matches!(e.state.phase, Phase::RolledBack { at: 2, .. }));
    // Below 100 % an empty baseline is no baseline: the check waits.
    let e = evaluate(&c, &at_step(1, t0), t0 + secs(10), Ok(&m));
    assert_eq!(e.checks[1].verdict, Verdict::Wait);
}

#[test]
fn no_ceiling_configured_is_no_latency_check() {
    let c = Autopilot {
        max_latency: None,
        ..cfg()
    };
    let e = evaluate(
        &c,
        &at_step(0, Instant::now()),
        Instant::now(),
        Ok(&healthy(1.0)),
    );
    let names: Vec<_> = e.checks.iter().map(|c| c.name).collect();
    assert_eq!(names, ["error_ratio", "latency_ratio"]);
}

#[test]
fn a_ramp_joining_the_fleet_resumes_at_its_step() {
    let c = cfg();
    let t0 = Instant::now();
    assert_eq!(State::resumed(&c, 2, t0).phase, Phase::Step(1));
    assert_eq!(State::resumed(&c, 0, t0).phase, Phase::Pending);
    assert_eq!(State::resumed(&c, 9, t0).phase, Phase::Done);
    assert_eq!(
        hold_left(&c, &State::resumed(&c, 2, t0), t0 + secs(4)),
        secs(6)
    );
}

#[test]
fn a_check_waits_until_one_request_cannot_decide_it_alone() {
    let c = Autopilot {
        min_requests: 500,
        ..cfg()
    };
    let t0 = Instant::now();
    // At a limit of 0.01 one 5xx among 99 would be a ratio over it: not judged yet.
    let mut m = healthy(99.0);
    m.pool.errors = 1.0;
    m.pool.observations = 1000.0;
    let e = evaluate(&c, &at_step(0, t0), t0 + secs(1), Ok(&m));
    assert_eq!(e.checks[0].verdict, Verdict::Wait);
    // Among 100 it is within the limit; a second one is over it.
    m.pool.requests = 100.0;
    let e = evaluate(&c, &at_step(0, t0), t0 + secs(1), Ok(&m));
    assert_eq!(e.checks[0].verdict, Verdict::Pass);
    m.pool.errors = 2.0;
    let e = evaluate(&c, &at_step(0, t0), t0 + secs(1), Ok(&m));
    assert_eq!(e.checks[0].verdict, Verdict::Fail);
    // A p99 needs a hundred answers too; a loose limit still needs ten.
    let mut few = healthy(1000.0);
    few.pool.observations = 99.0;
    let e = evaluate(&c, &at_step(0, t0), t0 + secs(1), Ok(&few));
    assert_eq!(e.checks[1].verdict, Verdict::Wait);
    let loose = Autopilot {
        max_error_ratio: 0.5,
        ..c
    };
    let mut nine = healthy(1000.0);
    nine.pool.requests = 9.0;
    let e = evaluate(&loose, &at_step(0, t0), t0 + secs(1), Ok(&nine));
    assert_eq!(e.checks[0].verdict, Verdict::Wait);
}

#[test]
fn at_full_share_with_no_baseline_ever_measured_there_is_no_ratio_to_judge() {
    let c = cfg();
    let t0 = Instant::now();
    // An instance that joined its fleet at the last step (100 %): nothing to compare.
    let joined = State::resumed(&c, 3, t0);
    let mut m = healthy(500.0);
    m.baseline = Side::default();
    let e = evaluate(&c, &joined, t0 + secs(10), Ok(&m));
    let names: Vec<_> = e.checks.iter().map(|c| c.name).collect();
    assert_eq!(names, ["error_ratio", "latency"]);
    assert_eq!(e.state.phase, Phase::Done, "it can finish");
}

#[test]
fn a_window_shorter_than_the_hold_asks_for_its_part_of_the_steps_volume() {
    // 100 requests a 10 s step; a 2 s window is asked for a fifth of them: 20.
    let c = Autopilot {
        window: secs(2),
        ..cfg()
    };
    let t0 = Instant::now();
    let mut m = healthy(19.0);
    let e = evaluate(&c, &at_step(0, t0), t0 + secs(1), Ok(&m));
    assert!(e.checks.iter().all(|c| c.verdict == Verdict::Wait), "{e:?}");
    m = healthy(20.0);
    let e = evaluate(&c, &at_step(0, t0), t0 + secs(1), Ok(&m));
    assert!(e.checks.iter().all(|c| c.verdict == Verdict::Pass), "{e:?}");
}
