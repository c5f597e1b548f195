use std::collections::BTreeMap;

use super::*;
use crate::cli::status::table::{visible_width, WIDTH};

fn window(rate: f64, err: f64, q: Option<(f64, f64, f64)>) -> Window {
    Window {
        requests: (rate * 60.0) as u64,
        request_rate: rate,
        error_ratio: err,
        p50: q.map(|q| q.0),
        p95: q.map(|q| q.1),
        p99: q.map(|q| q.2),
    }
}

fn backend(addr: &str, state: &str, w: Window) -> Backend {
    Backend {
        addr: addr.to_owned(),
        state: state.to_owned(),
        weight: 1,
        effective_weight: 0.35,
        in_flight: 2,
        window: w,
    }
}

/// Two pools: a fast one, and one with a long name, an IPv6 backend and no traffic.
fn doc() -> Status {
    let long = "kubernetes-production-eu-central-1-availability-zone-b-headless";
    let busy = window(12.25, 0.0, Some((0.0012, 0.0034, 0.35)));
    let idle = Window::default();
    Status {
        generation: 3,
        config_path:
            "/etc/cutover/a/very/long/directory/name/that/goes/on/and/on/and/on/cutover.toml"
                .to_owned(),
        loaded_at: "2025-06-01T12:00:00Z".to_owned(),
        last_reload_error: Some("cutover.toml:3:1: error: unknown key `x`\nand another".to_owned()),
        window_seconds: 60,
        routes: vec![Route {
            name: "ad-api".to_owned(),
            hosts: vec!["api.example.com".to_owned(), "*.ads.example.com".to_owned()],
            path_prefix: "/ad/".to_owned(),
            split: BTreeMap::from([("ecs".to_owned(), 90), (long.to_owned(), 10)]),
            effective_split: BTreeMap::from([("ecs".to_owned(), 90.0), (long.to_owned(), 3.5)]),
            traffic: BTreeMap::from([
                ("ecs".to_owned(), busy.clone()),
                (long.to_owned(), idle.clone()),
                ("none".to_owned(), window(0.1, 1.0, Some((0.0, 0.0, 0.0)))),
            ]),
            autopilot: None,
        }],
        pools: vec![
            Pool {
                name: "ecs".to_owned(),
                window: busy.clone(),
                backends: vec![
                    backend("255.255.255.255:65535", "ready", busy.clone()),
                    backend(
                        "10.0.1.12:8080",
                        "ejected",
                        window(0.5, 0.5, Some((2.1, 9.0, 30.0))),
                    ),
                ],
            },
            Pool {
                name: long.to_owned(),
                window: idle.clone(),
                backends: vec![backend(
                    "[2001:db8:1234:5678:9abc:def0:1234:5678]:65535",
                    "warming",
                    idle,
                )],
            },
        ],
    }
}

#[test]
fn every_line_fits_80_columns_with_long_names_and_ipv6() {
    for colour in [false, true] {
        let text = render(&doc(), colour);
        for line in text.lines() {
            assert!(
                visible_width(line) <= WIDTH,
                "{} columns: {line}",
                visible_width(line)
            );
        }
    }
    let text = render(&doc(), false);
    // Cut in the middle: both ends tell names apart.
    assert!(text.contains("kubernetes-produ…zone-b-headless"), "{text}");
    assert!(text.contains("  [2001:db8:…678]:65535  warming"), "{text}");
    assert!(
        text.contains("255.255.255.255:65535"),
        "IPv4 is never cut:\n{text}"
    );
    let config = text.lines().nth(1).unwrap_or_default();
    assert!(config.starts_with("config …") && config.ends_with("/and/on/cutover.toml"));
}

#[test]
fn a_backend_line_has_every_figure() {
    let text = render(&doc(), false);
    let line = text
        .lines()
        .find(|l| l.contains("255.255.255.255:65535"))
        .expect("backend line");
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        fields,
        [
            "255.255.255.255:65535",
            "ready",
            "1",
            "0.35",
            "2",
            "12.2",
            "0.0%",
            "1.2ms",
            "3.4ms",
            "350ms"
        ],
    );
}

#[test]
fn a_route_line_has_split_share_and_effective_share() {
    let text = render(&doc(), false);
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("ecs "))
        .expect("route's ecs line");
    let fields: Vec<&str> = line.split_whitespace().collect();
    // 90 of 100 configured; 90 of 93.5 effective.
    assert_eq!(fields[..4], ["ecs", "90", "90.0%", "96.3%"]);
    assert!(
        text.contains("(none)"),
        "the requests that got no pool:\n{text}"
    );
}

#[test]
fn null_quantiles_are_dashes() {
    let text = render(&doc(), false);
    let line = text
        .lines()
        .find(|l| l.contains("[2001:db8"))
        .expect("idle backend line");
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[fields.len() - 3..], ["-", "-", "-"], "{line}");
}

#[test]
fn no_escapes_without_colour_and_colours_with_it() {
    let plain = render(&doc(), false);
    assert!(!plain.contains('\x1b'), "{plain}");
    let coloured = render(&doc(), true);
    assert!(coloured.contains("\x1b[32mready"), "{coloured}");
    assert!(coloured.contains("\x1b[33mwarming"), "{coloured}");
    assert!(coloured.contains("\x1b[31mejected"), "{coloured}");
    assert!(
        coloured.contains("\x1b[31m50.0%"),
        "error % over 1 % is red"
    );
}

#[test]
fn the_header_says_generation_load_time_and_the_reload_error() {
    let text = render(&doc(), false);
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default();
    assert!(first.contains("generation 3") && first.contains("2025-06-01T12:00:00Z"));
    let error = text
        .lines()
        .find(|l| l.starts_with("last reload failed"))
        .expect("error line");
    assert!(error.contains("unknown key `x`; and another"), "{error}");
}

#[test]
fn control_characters_in_names_do_not_reach_the_terminal() {
    let mut d = doc();
    d.routes[0].name = "evil\x1b[2Jname".to_owned();
    let text = render(&d, false);
    assert!(!text.contains('\x1b'));
    assert!(text.contains("evil?[2Jname"));
}

#[test]
fn latencies_are_compact() {
    let cases = [
        (None, "-"),
        (Some(0.0), "0us"),
        (Some(0.000_35), "350us"),
        (Some(0.000_999_6), "1.0ms"),
        (Some(0.0012), "1.2ms"),
        (Some(0.035), "35ms"),
        (Some(0.9996), "1.0s"),
        (Some(2.1), "2.1s"),
        (Some(30.0), "30s"),
        (Some(f64::NAN), "-"),
    ];
    for (s, want) in cases {
        assert_eq!(latency(s), want, "{s:?}");
    }
}

fn ramp(state: &str, step: u32, share: f64) -> crate::status::Autopilot {
    crate::status::Autopilot {
        state: state.to_owned(),
        step,
        share,
        since: "2026-12-05T19:04:31Z".to_owned(),
        reason: None,
        checks: vec![
            crate::status::Check {
                name: "error_ratio".to_owned(),
                value: Some(0.0),
                limit: 0.01,
                verdict: "pass".to_owned(),
            },
            crate::status::Check {
                name: "latency_ratio".to_owned(),
                value: None,
                limit: 1.5,
                verdict: "wait".to_owned(),
            },
        ],
        pool: "k8s".to_owned(),
        baseline: "ecs".to_owned(),
        steps: vec![1, 10, 50, 90, 100],
        source: "local".to_owned(),
        hold_left_seconds: 48.0,
        hold_seconds: 600.0,
        step_requests: 120.0,
        min_requests: 500,
        holding: None,
        queries: BTreeMap::new(),
    }
}

/// The lines `cutover status` gives a route with `ramp`.
fn ramp_lines(ramp: crate::status::Autopilot) -> Vec<String> {
    let mut s = doc();
    s.routes[0].autopilot = Some(ramp);
    let text = render(&s, false);
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("autopilot "))
        .expect("an autopilot line");
    assert!(lines.iter().all(|l| visible_width(l) <= WIDTH), "{text}");
    lines[at..]
        .iter()
        .take_while(|l| !l.is_empty())
        .cloned()
        .collect()
}

#[test]
fn a_running_ramp_says_its_step_and_what_the_next_gate_waits_for() {
    assert_eq!(
        ramp_lines(ramp("running", 2, 10.0)),
        [
            "autopilot running  step 2/5  k8s at 10%  since 19:04:31Z  (local source)",
            "  next: 50% after 48s of hold, 380 more requests, latency_ratio (wait)",
        ]
    );
    let mut ready = ramp("running", 5, 100.0);
    ready.checks.truncate(1);
    (ready.hold_left_seconds, ready.step_requests) = (0.0, 500.0);
    assert_eq!(ramp_lines(ready)[1], "  next: done at the next evaluation");
}

#[test]
fn a_rolled_back_ramp_says_why_and_a_done_one_what_to_write() {
    let mut back = ramp("rolled_back", 3, 0.0);
    back.reason = Some("latency: p99 480ms above limit 200ms at step 3 (50%)".into());
    let lines = ramp_lines(back);
    assert!(
        lines[0].starts_with("autopilot rolled_back  step 3/5  k8s at 0%"),
        "{lines:?}"
    );
    assert_eq!(
        lines[1..],
        [
            "  rolled back: latency: p99 480ms above limit 200ms at step 3 (50%)",
            "  the file's split applies again; change run to start over"
        ]
    );
    let lines = ramp_lines(ramp("done", 5, 100.0));
    assert_eq!(
        lines[1],
        "  done: write split = { ecs = 0, k8s = 100 } into the config file"
    );
    let mut held = ramp("pending", 0, 0.0);
    held.source = "prometheus".into();
    held.holding = Some("prometheus http://127.0.0.1:9090 unreachable: connection refused".into());
    let lines = ramp_lines(held);
    assert_eq!(
        lines[2],
        "  holding: prometheus http://127.0.0.1:9090 unreachable: connection refused"
    );
}
