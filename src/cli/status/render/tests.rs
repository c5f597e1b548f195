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
