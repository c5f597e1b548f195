//! The machine's transitions, fed events and a clock the test holds.

use std::time::Duration;

use super::*;
use crate::config::{Eject, SlowStart};
use crate::health::settings::ProbeCounts;

fn eject() -> Eject {
    Eject {
        consecutive_failures: 2,
        base: Duration::from_secs(10),
        max: Duration::from_secs(25),
        max_percent: 50,
    }
}

/// Linear over `secs`, from a 10% floor.
fn slow_start(secs: u64) -> SlowStart {
    SlowStart {
        window: Duration::from_secs(secs),
        aggression: 1.0,
        min_percent: 10,
    }
}

fn probed(healthy: u32, unhealthy: u32, slow_start: Option<SlowStart>) -> Settings {
    Settings {
        probe: Some(ProbeCounts { healthy, unhealthy }),
        slow_start,
        eject: eject(),
    }
}

fn unprobed() -> Settings {
    Settings {
        probe: None,
        slow_start: None,
        eject: eject(),
    }
}

const PASS: Event = Event::ProbePassed {
    warmup_percent: None,
};
const FAIL: Event = Event::RequestFailed { may_eject: true };

#[test]
fn warming_needs_healthy_passes_then_slow_starts() {
    let t0 = Instant::now();
    let mut m = Machine::new(probed(2, 3, Some(slow_start(100))), false, t0);
    assert_eq!(m.state(), State::Warming);
    assert_eq!(m.factor(t0), 0.0);
    assert_eq!(m.observe(PASS, t0), None);
    assert_eq!(m.observe(PASS, t0), Some(State::Ready));
    assert_eq!(m.factor(t0), 0.1, "min_percent floor");
    let half = m.factor(t0 + Duration::from_secs(50));
    assert!((half - 0.5).abs() < 1e-9, "{half}");
    assert_eq!(m.factor(t0 + Duration::from_secs(200)), 1.0);
}

#[test]
fn present_at_start_and_passing_first_probe_is_warm() {
    let t0 = Instant::now();
    let mut m = Machine::new(probed(2, 3, Some(slow_start(100))), true, t0);
    assert_eq!(m.observe(PASS, t0), Some(State::Ready));
    assert_eq!(m.factor(t0), 1.0);
}

#[test]
fn down_after_unhealthy_fails_and_back() {
    let t0 = Instant::now();
    let mut m = Machine::new(probed(1, 2, None), false, t0);
    m.observe(PASS, t0);
    assert_eq!(m.observe(Event::ProbeFailed, t0), None);
    assert_eq!(m.observe(Event::ProbeFailed, t0), Some(State::Down));
    assert_eq!(m.factor(t0), 0.0);
    assert_eq!(m.observe(PASS, t0), Some(State::Ready));
}

#[test]
fn application_reported_warmup_sets_factor() {
    let t0 = Instant::now();
    let mut m = Machine::new(probed(1, 2, None), false, t0);
    m.observe(
        Event::ProbePassed {
            warmup_percent: Some(30),
        },
        t0,
    );
    assert_eq!(m.factor(t0), 0.3);
    m.observe(PASS, t0);
    assert_eq!(m.factor(t0), 1.0);
}

#[test]
fn ejection_doubles_and_caps() {
    let t0 = Instant::now();
    let mut m = Machine::new(unprobed(), true, t0);
    m.observe(FAIL, t0);
    assert_eq!(m.observe(FAIL, t0), Some(State::Ejected));
    assert_eq!(m.ejected_for(t0), Some(Duration::from_secs(10)));
    assert_eq!(
        m.expire_ejection(t0 + Duration::from_secs(10)),
        Some(State::Ready)
    );
    let t1 = t0 + Duration::from_secs(10);
    m.observe(FAIL, t1);
    m.observe(FAIL, t1);
    assert_eq!(m.ejected_for(t1), Some(Duration::from_secs(20)));
    m.expire_ejection(t1 + Duration::from_secs(20));
    let t2 = t1 + Duration::from_secs(20);
    m.observe(FAIL, t2);
    m.observe(FAIL, t2);
    assert_eq!(
        m.ejected_for(t2),
        Some(Duration::from_secs(25)),
        "capped at max"
    );
}

#[test]
fn ejection_respects_pool_budget() {
    let t0 = Instant::now();
    let mut m = Machine::new(unprobed(), true, t0);
    let fail = Event::RequestFailed { may_eject: false };
    for _ in 0..10 {
        assert_eq!(m.observe(fail, t0), None);
    }
    assert_eq!(m.state(), State::Ready);
}

#[test]
fn new_settings_keep_probe_counts_and_slow_start_clock() {
    let t0 = Instant::now();
    let mut m = Machine::new(probed(2, 3, Some(slow_start(100))), false, t0);
    m.observe(PASS, t0);
    // The pass already seen counts toward the new threshold.
    assert_eq!(
        m.set_settings(probed(3, 3, Some(slow_start(100))), t0),
        None
    );
    assert_eq!(m.observe(PASS, t0), None, "2 of 3");
    assert_eq!(m.observe(PASS, t0), Some(State::Ready));
    // A longer window stretches the ramp already under way; it does not restart it.
    let t1 = t0 + Duration::from_secs(50);
    assert_eq!(
        m.set_settings(probed(3, 3, Some(slow_start(200))), t1),
        None
    );
    assert_eq!(m.factor(t1), 0.25);
    assert_eq!(m.factor(t0 + Duration::from_secs(200)), 1.0);
}

#[test]
fn new_settings_keep_a_running_ejection_and_its_doubling() {
    let t0 = Instant::now();
    let mut m = Machine::new(unprobed(), true, t0);
    m.observe(FAIL, t0);
    m.observe(FAIL, t0);
    let shorter = Eject {
        consecutive_failures: 1,
        base: Duration::from_secs(1),
        max: Duration::from_secs(60),
        max_percent: 50,
    };
    let settings = Settings {
        eject: shorter,
        ..unprobed()
    };
    assert_eq!(m.set_settings(settings, t0), None);
    assert_eq!(m.ejected_for(t0), Some(Duration::from_secs(10)));
    let t1 = t0 + Duration::from_secs(10);
    assert_eq!(m.expire_ejection(t1), Some(State::Ready));
    assert_eq!(m.observe(FAIL, t1), Some(State::Ejected), "one failure now");
    assert_eq!(
        m.ejected_for(t1),
        Some(Duration::from_secs(2)),
        "the second ejection"
    );
}

#[test]
fn dropping_the_probe_readmits_only_backends_waiting_for_one() {
    let t0 = Instant::now();
    let mut warming = Machine::new(probed(2, 3, Some(slow_start(100))), false, t0);
    let no_probe = Settings {
        slow_start: Some(slow_start(100)),
        ..unprobed()
    };
    assert_eq!(
        warming.set_settings(no_probe.clone(), t0),
        Some(State::Ready)
    );
    assert_eq!(warming.factor(t0), 0.1, "slow-starts: it never proved warm");

    let mut down = Machine::new(probed(1, 1, None), false, t0);
    down.observe(PASS, t0);
    down.observe(Event::ProbeFailed, t0);
    assert_eq!(down.set_settings(no_probe.clone(), t0), Some(State::Ready));

    let mut ready = Machine::new(probed(1, 1, None), true, t0);
    ready.observe(PASS, t0);
    assert_eq!(ready.set_settings(no_probe.clone(), t0), None);
    assert_eq!(ready.factor(t0), 1.0, "still warm");

    let mut ejected = Machine::new(probed(1, 1, None), true, t0);
    ejected.observe(PASS, t0);
    ejected.observe(FAIL, t0);
    ejected.observe(FAIL, t0);
    assert_eq!(ejected.set_settings(no_probe, t0), None, "serving its time");
    let t1 = t0 + Duration::from_secs(10);
    assert_eq!(ejected.expire_ejection(t1), Some(State::Ready));
}

#[test]
fn a_probe_result_that_outlived_its_probe_changes_nothing() {
    let t0 = Instant::now();
    let mut m = Machine::new(probed(1, 1, None), false, t0);
    m.observe(
        Event::ProbePassed {
            warmup_percent: Some(40),
        },
        t0,
    );
    assert_eq!((m.state(), m.factor(t0)), (State::Ready, 0.4));
    // A reload takes the probe away while one more probe is on its way.
    assert_eq!(m.set_settings(unprobed(), t0), None);
    assert_eq!(
        m.factor(t0),
        1.0,
        "the application's figure went with the probe"
    );
    assert_eq!(m.observe(Event::ProbeFailed, t0), None);
    assert_eq!(
        (m.state(), m.factor(t0)),
        (State::Ready, 1.0),
        "no probe to undo a down"
    );
}
