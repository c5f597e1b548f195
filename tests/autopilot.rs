//! Autopilot with `source = "local"`: real upstreams counting requests, real traffic,
//! the ramp read back from `/status` and `/metrics`.

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use cutover::status::Autopilot;
use support::autopilot::{autopilot, metrics, Traffic, USERS};
use support::{get, Proxy, Upstream};

/// How long any ramp in these tests may take to get where it is going.
const PATIENCE: Duration = Duration::from_secs(30);

fn config(ecs: &Upstream, k8s: &Upstream, route_extra: &str, autopilot: &str) -> String {
    format!(
        "[pools.ecs]\nbackends = [\"{}\"]\n[pools.k8s]\nbackends = [\"{}\"]\n\
         [[routes]]\nname = \"r\"\nsplit = {{ ecs = 100, k8s = 0 }}\n{route_extra}\n\
         [routes.autopilot]\nrun = 1\npool = \"k8s\"\nbaseline = \"ecs\"\n{autopilot}\n",
        ecs.addr, k8s.addr
    )
}

/// Polls `/status` until `done` holds for the ramp, calling `seen` with every answer.
async fn until(
    proxy: &Proxy,
    what: &str,
    mut seen: impl FnMut(&Autopilot),
    done: impl Fn(&Autopilot) -> bool,
) -> Autopilot {
    let end = Instant::now() + PATIENCE;
    loop {
        let ap = autopilot(proxy).await;
        seen(&ap);
        if done(&ap) {
            return ap;
        }
        assert!(
            Instant::now() < end,
            "timed out waiting for {what}: {ap:#?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_pool_climbs_every_step_in_order_at_each_steps_share() {
    let (ecs, k8s) = (Upstream::start("ecs").await, Upstream::start("k8s").await);
    let proxy = Proxy::start(&config(
        &ecs,
        &k8s,
        "",
        "steps = [10, 50, 90]\nhold = \"2s\"\nmin_requests = 20\nwindow = \"2s\"",
    ))
    .await;
    let traffic = Traffic::start(&[proxy.addr], 4, Duration::ZERO, PATIENCE * 2);
    // (step, hits of ecs and k8s when the step was first seen), in order.
    let mut marks: Vec<(u32, usize, usize)> = Vec::new();
    let done = until(
        &proxy,
        "the ramp to finish",
        |ap| {
            assert_ne!(ap.state, "rolled_back", "{ap:#?}");
            if marks.last().is_none_or(|(s, _, _)| *s != ap.step) {
                marks.push((ap.step, ecs.hits(), k8s.hits()));
            }
        },
        |ap| ap.state == "done",
    )
    .await;
    traffic.stop().await;
    assert_eq!((done.step, done.share), (3, 90.0));
    let steps: Vec<u32> = marks.iter().map(|m| m.0).filter(|s| *s > 0).collect();
    assert_eq!(steps, [1, 2, 3], "every step, in order");
    for (w, want) in marks.windows(2).filter(|w| w[0].0 > 0).zip([10.0, 50.0]) {
        let (ecs_n, k8s_n) = (w[1].1 - w[0].1, w[1].2 - w[0].2);
        let share = 100.0 * k8s_n as f64 / (ecs_n + k8s_n) as f64;
        assert!(
            (share - want).abs() < 6.0,
            "step {} at {want}%: k8s got {share:.1}% of {} requests",
            w[0].0,
            ecs_n + k8s_n
        );
    }
    let m = metrics(&proxy).await;
    assert!(m.contains("cutover_autopilot_step{route=\"r\"} 3"), "{m}");
    assert!(m.contains("cutover_autopilot_state{route=\"r\",state=\"done\"} 1"));
    assert!(m.contains("cutover_autopilot_state{route=\"r\",state=\"running\"} 0"));
}

/// Ramps to step 2, turns the pool bad with `spoil`, and checks that the ramp rolls
/// back within two seconds, by `check`, and that the pool gets nothing afterwards, not
/// even from its sticky users.
async fn rolled_back_when_bad(autopilot_extra: &str, check: &str, spoil: impl FnOnce(&Upstream)) {
    let (ecs, k8s) = (Upstream::start("ecs").await, Upstream::start("k8s").await);
    let proxy = Proxy::start(&config(
        &ecs,
        &k8s,
        "sticky = \"header:x-user\"",
        &format!("steps = [20, 50, 100]\nhold = \"1s\"\nmin_requests = 20\nwindow = \"2s\"\n{autopilot_extra}"),
    ))
    .await;
    let traffic = Traffic::start(&[proxy.addr], 4, Duration::ZERO, PATIENCE * 2);
    until(&proxy, "step 2", |_| {}, |ap| ap.step == 2).await;
    spoil(&k8s);
    let bad_at = Instant::now();
    let ap = until(
        &proxy,
        "the rollback",
        |_| {},
        |ap| ap.state == "rolled_back",
    )
    .await;
    let took = bad_at.elapsed();
    traffic.stop().await;
    assert!(took < Duration::from_secs(2), "rolled back after {took:?}");
    let reason = ap.reason.clone().unwrap_or_default();
    assert!(reason.starts_with(&format!("{check}:")), "{ap:#?}");
    assert_eq!((ap.step, ap.share), (2, 0.0));
    let failed = ap
        .checks
        .iter()
        .find(|c| c.name == check)
        .expect("the check");
    assert_eq!(failed.verdict, "fail");
    assert!(failed.value.is_some_and(|v| v > failed.limit), "{failed:?}");

    let before = k8s.hits();
    for i in 0..2 * USERS {
        let user = format!("user-{}", i % USERS);
        let r = get(proxy.addr, "/", &[("x-user", &user)]).await;
        assert_eq!(r.upstream(), "ecs", "{user} after the rollback");
    }
    assert_eq!(
        k8s.hits(),
        before,
        "no request reached the pool after the rollback"
    );
    let m = metrics(&proxy).await;
    let counted = format!("cutover_autopilot_rollbacks_total{{route=\"r\",check=\"{check}\"}} 1");
    assert!(m.contains(&counted), "{m}");
    assert!(m.contains("cutover_autopilot_state{route=\"r\",state=\"rolled_back\"} 1"));
    // And `cutover status`, the real binary, says so with the reason.
    let out = tokio::process::Command::new(support::process::BIN)
        .args(["status", "--admin", &proxy.admin.to_string()])
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("run cutover status");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("autopilot rolled_back  step 2/3  k8s at 0%"),
        "{table}"
    );
    assert!(
        table.contains(&format!("  rolled back: {check}:")),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erroring_pool_is_rolled_back_within_two_seconds() {
    rolled_back_when_bad("max_error_ratio = 0.05", "error_ratio", |k8s| {
        k8s.fail_one_in.store(2, Ordering::SeqCst)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_slower_than_the_ceiling_is_rolled_back_within_two_seconds() {
    rolled_back_when_bad(
        "max_latency = \"100ms\"\nmax_latency_ratio = 1000.0",
        "latency",
        |k8s| k8s.delay_ms.store(300, Ordering::SeqCst),
    )
    .await;
}

/// A pool that stops answering: its answers would come in 5 s, but the requests
/// waiting for them are evidence already.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_that_stops_answering_is_rolled_back_before_its_answers_come() {
    rolled_back_when_bad(
        "max_latency = \"500ms\"\nmax_latency_ratio = 1000.0",
        "latency",
        |k8s| k8s.delay_ms.store(5000, Ordering::SeqCst),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_slower_than_the_baseline_is_rolled_back_within_two_seconds() {
    rolled_back_when_bad("max_latency_ratio = 2.0", "latency_ratio", |k8s| {
        k8s.delay_ms.store(200, Ordering::SeqCst)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_few_requests_hold_a_step() {
    let (ecs, k8s) = (Upstream::start("ecs").await, Upstream::start("k8s").await);
    let proxy = Proxy::start(&config(
        &ecs,
        &k8s,
        "",
        "steps = [50, 100]\nhold = \"1s\"\nmin_requests = 200\nwindow = \"5s\"",
    ))
    .await;
    // Fifty requests and well past the hold: still the first step, waiting for volume.
    for _ in 0..50 {
        get(proxy.addr, "/", &[]).await;
    }
    until(
        &proxy,
        "the hold to pass",
        |_| {},
        |ap| ap.hold_left_seconds == 0.0,
    )
    .await;
    // Past the hold, for a second of evaluations, at every look: still the first step.
    let end = Instant::now() + Duration::from_secs(1);
    let ap = until(
        &proxy,
        "a second past the hold",
        |ap| assert_eq!((ap.step, ap.state.as_str()), (1, "running"), "{ap:#?}"),
        |_| Instant::now() >= end,
    )
    .await;
    assert!(ap.step_requests < 200.0, "{ap:#?}");
    // The volume it waited for: it moves on.
    let traffic = Traffic::start(&[proxy.addr], 4, Duration::ZERO, PATIENCE * 2);
    let ap = until(&proxy, "step 2", |_| {}, |ap| ap.step == 2).await;
    traffic.stop().await;
    assert_eq!(ap.share, 100.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_the_ramp_and_a_new_run_starts_it_over() {
    let (ecs, k8s) = (Upstream::start("ecs").await, Upstream::start("k8s").await);
    let ramp = "steps = [10, 20, 30, 40]\nhold = \"1s\"\nmin_requests = 10\nwindow = \"2s\"";
    let proxy = Proxy::start(&config(&ecs, &k8s, "", ramp)).await;
    let traffic = Traffic::start(&[proxy.addr], 2, Duration::ZERO, PATIENCE * 2);
    until(&proxy, "step 3", |_| {}, |ap| ap.step >= 3).await;
    traffic.stop().await;
    let before = autopilot(&proxy).await;
    // Another timeout and a tighter limit: the same ramp, which goes on where it was.
    let same = config(&ecs, &k8s, "", &format!("{ramp}\nmax_error_ratio = 0.02")).replace(
        "[[routes]]",
        "[limits]\nresponse_timeout = \"20s\"\n[[routes]]",
    );
    proxy.reload(&same).await;
    let limit = |ap: &Autopilot| {
        ap.checks
            .iter()
            .find(|c| c.name == "error_ratio")
            .map(|c| c.limit)
    };
    let kept = until(
        &proxy,
        "the new limit",
        |_| {},
        |ap| limit(ap) == Some(0.02),
    )
    .await;
    assert_eq!((kept.step, &kept.since), (before.step, &before.since));
    // A new run: back to the first step.
    proxy.reload(&same.replace("run = 1", "run = 2")).await;
    let again = until(&proxy, "the first step", |_| {}, |ap| ap.step > 0).await;
    assert_eq!((again.step, again.share), (1, 10.0), "{again:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_local_mode_starts_at_the_first_step() {
    let (ecs, k8s) = (Upstream::start("ecs").await, Upstream::start("k8s").await);
    let text = config(
        &ecs,
        &k8s,
        "",
        "steps = [10, 20, 30]\nhold = \"1s\"\nmin_requests = 10\nwindow = \"2s\"",
    );
    let mut proxy = Proxy::start(&text).await;
    let traffic = Traffic::start(&[proxy.addr], 2, Duration::ZERO, PATIENCE * 2);
    until(&proxy, "step 2", |_| {}, |ap| ap.step >= 2).await;
    traffic.stop().await;
    let running = proxy.running.take().expect("running");
    running.shutdown(Duration::from_secs(1)).await;
    let restarted = Proxy::start(&text).await;
    let ap = until(&restarted, "a step", |_| {}, |ap| ap.step > 0).await;
    assert_eq!((ap.step, ap.share), (1, 10.0));
}
