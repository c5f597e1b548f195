//! `cutover demo`, the real binary, as an on-call engineer runs it: on the demo's fixed
//! ports (8080, 9900, 18081-18084). Every other test asks the kernel for its ports,
//! which hands them out of its ephemeral range (32768 and up on Linux), so only the
//! demos here can meet on these: they take turns.

mod support;

use std::time::{Duration, Instant};

use cutover::status::{Route, Status};
use support::get;
use support::process::Process;

/// The demo's ports, one demo at a time (held across awaits: tokio's, which a test
/// that failed does not poison; its `Process` was killed on the way out).
static PORTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long the autopilot tour may take to climb to its third step and roll back:
/// about 13 s when nothing else runs.
const PATIENCE: Duration = Duration::from_secs(45);

async fn demo_route(p: &Process) -> Route {
    let r = get(p.admin, "/status", &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let status: Status = serde_json::from_str(&r.body).expect("status json");
    assert!(
        status
            .config_path
            .contains(&format!("cutover-demo-{}", p.pid())),
        "the admin port answers for another process: {}",
        status.config_path
    );
    status
        .routes
        .into_iter()
        .find(|r| r.name == "demo")
        .expect("the demo route")
}

/// The tour's lines on stdout until one contains `until`, waiting at most `within`.
fn tour_until(p: &Process, until: &str, within: Duration) -> Vec<String> {
    let end = Instant::now() + within;
    let mut lines = Vec::new();
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match p.stdout.recv_timeout(left) {
            Ok(line) => {
                let found = line.contains(until);
                lines.push(line);
                if found {
                    return lines;
                }
            }
            Err(e) => panic!("no {until:?} in the tour ({e}):\n{}", lines.join("\n")),
        }
    }
}

/// Ctrl-C, as the reader stops it: the demo exits 0, its traffic and upstreams with it.
/// Then its config directory goes too (the demo leaves it for the reader).
async fn interrupt(mut p: Process) {
    let dir = std::env::temp_dir().join(format!("cutover-demo-{}", p.pid()));
    p.signal("INT");
    let status = tokio::task::spawn_blocking(move || {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = p.child.try_wait().expect("wait") {
                return s;
            }
            assert!(
                Instant::now() < end,
                "the demo still runs 10 s after Ctrl-C"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .expect("join");
    let _ = std::fs::remove_dir_all(dir);
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_serves_its_split_and_sends_no_traffic_of_its_own() {
    let _ports = PORTS.lock().await;
    let p = Process::demo(&[]);
    let tour = tour_until(&p, "Ctrl-C stops the demo", Duration::from_secs(10)).join("\n");
    assert!(tour.contains("cutover demo is running"), "{tour}");
    assert!(tour.contains("demo ecs=50 k8s=50"), "{tour}");
    for _ in 0..5 {
        let r = get(p.addr, "/", &[]).await;
        assert_eq!(r.status, 200);
        // k8s is still warming: ecs answers.
        assert!(r.body.starts_with("hello from ecs"), "{}", r.body);
    }
    let route = demo_route(&p).await;
    assert!(route.autopilot.is_none(), "{route:#?}");
    assert_eq!(route.split.get("k8s"), Some(&10));
    let sent: u64 = route.traffic.values().map(|w| w.requests).sum();
    assert_eq!(sent, 5, "only this test's requests: {route:#?}");
    interrupt(p).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_autopilot_demo_climbs_then_rolls_back_within_seconds_of_the_slow_down() {
    let _ports = PORTS.lock().await;
    let p = Process::demo(&["--autopilot"]);
    let began = Instant::now();
    // Each step as /status first showed it, until the rollback.
    let mut steps: Vec<(u32, Instant)> = Vec::new();
    let ap = loop {
        let route = demo_route(&p).await;
        let ap = route
            .autopilot
            .clone()
            .expect("the demo route has an autopilot");
        if ap.state == "rolled_back" {
            break ap;
        }
        if ap.state == "running" && steps.last().is_none_or(|(s, _)| *s != ap.step) {
            steps.push((ap.step, Instant::now()));
        }
        assert!(
            began.elapsed() < PATIENCE,
            "no rollback after {PATIENCE:?}: {route:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let rolled_back = Instant::now();
    let seen: Vec<u32> = steps.iter().map(|(s, _)| *s).collect();
    assert_eq!(seen, [1, 2, 3], "the ramp climbed step by step: {ap:#?}");
    let reason = ap.reason.clone().unwrap_or_default();
    assert!(
        reason.starts_with("latency_ratio:") || reason.starts_with("latency:"),
        "a latency check rolled it back: {ap:#?}"
    );
    assert!(reason.contains("at step 3 (50%)"), "{reason}");
    assert_eq!((ap.step, ap.share), (3, 0.0), "the file's split again");
    let at_50 = steps[2].1;
    let took = rolled_back.saturating_duration_since(at_50);
    assert!(
        took < Duration::from_secs(4),
        "rolled back {took:?} after 50 %"
    );

    // The tour told the same story, and timed the rollback from the slow-down.
    let tour = tour_until(&p, "rolled back after", Duration::from_secs(5));
    let order = [
        "step 1 of 4: k8s at 5 %",
        "step 2 of 4: k8s at 25 %",
        "step 3 of 4: k8s at 50 %",
        "the demo makes k8s slow",
        "rolled back after",
    ];
    let mut at = tour.iter();
    for want in order {
        assert!(
            at.any(|l| l.contains(want)),
            "{want:?} missing or out of order:\n{}",
            tour.join("\n")
        );
    }
    let last = tour.last().map_or("", String::as_str);
    let after: f64 = last
        .split("rolled back after ")
        .nth(1)
        .and_then(|rest| rest.split('s').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no time in {last:?}"));
    assert!(after < 3.0, "{last}");
    assert!(last.ends_with(&reason), "{last}");

    // Nobody sent a request but the demo itself.
    let route = demo_route(&p).await;
    let rate: f64 = route.traffic.values().map(|w| w.request_rate).sum();
    assert!(rate > 20.0, "the demo's own traffic: {rate} req/s");
    interrupt(p).await;
}
