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
