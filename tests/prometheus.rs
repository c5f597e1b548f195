//! cutover scraped by a real Prometheus: every ```promql block of README.md runs as
//! written and gives the per-pool numbers the traffic was made to have, and
//! `promtool check metrics` accepts the exposition.
//!
//! Needs `prometheus` and `promtool` (Debian package `prometheus`). When they are not on
//! PATH the test installs them with `tests/deps/install`, as CI does, so a plain
//! `cargo test` works on a fresh machine. The Prometheus started here has its own port
//! and its own storage in a temp dir: a system one on :9090 is neither used nor in the way.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;

use support::prometheus::{Prometheus, Sample, Tools};
use support::{get, Proxy, Upstream};

/// The configured split: ecs 70, k8s 30.
const ECS_WEIGHT: u32 = 70;
const K8S_WEIGHT: u32 = 30;
/// The new environment answers this much later...
const K8S_DELAY: Duration = Duration::from_millis(60);
/// ...and every 10th of its answers is a 500.
const K8S_FAIL_ONE_IN: usize = 10;
/// How long the clients drive traffic, and how many at once.
const TRAFFIC: Duration = Duration::from_secs(6);
const CLIENTS: usize = 8;

#[tokio::test(flavor = "multi_thread")]
async fn readme_promql_answers_per_pool_from_a_real_prometheus() {
    let tools = Tools::find_or_install();
    let queries = promql_blocks(&readme());
    assert!(!queries.is_empty(), "README.md has no ```promql block");

    let ecs = Upstream::start("ecs").await;
    let k8s = Upstream::start("k8s")
        .await
        .with_delay(K8S_DELAY)
        .failing_one_in(K8S_FAIL_ONE_IN);
    let proxy = Proxy::start(&format!(
        "[pools.ecs]\nbackends = [\"{}\"]\n[pools.k8s]\nbackends = [\"{}\"]\n\
         [[routes]]\nname = \"web\"\nsplit = {{ ecs = {ECS_WEIGHT}, k8s = {K8S_WEIGHT} }}\n",
        ecs.addr, k8s.addr
    ))
    .await;

    // Every series the queries read exists before Prometheus's first scrape, a k8s 500
    // included, so that each rate() starts from a sample of its own: all series then
    // share their sample times and the ratios between them are the traffic's own.
    let mut sent = 0usize;
    let warm_deadline = Instant::now() + Duration::from_secs(10);
    while ecs.hits() == 0 || k8s.hits() < K8S_FAIL_ONE_IN {
        assert!(
            Instant::now() < warm_deadline,
            "warm-up did not reach both pools"
        );
        get(proxy.addr, "/", &[]).await;
        sent += 1;
    }

    let mut prom = Prometheus::start(&tools.prometheus, proxy.admin);
    prom.wait_ready().await;
    prom.wait_for_total(sent).await;

    sent += drive(proxy.addr).await;
    prom.wait_for_total(sent).await;
    println!("{sent} requests through the proxy");

    let mut seen = BTreeSet::new();
    for q in &queries {
        let kind = Kind::of(q);
        let result = prom.query(q).await;
        assert!(!result.is_empty(), "no series for README query:\n{q}");
        for s in &result {
            assert!(
                s.value.is_finite(),
                "README query gave {} for {:?}:\n{q}",
                s.value,
                s.labels
            );
        }
        println!("{kind:?}:\n{q}\n-> {result:?}\n");
        kind.check(&result, &k8s, q);
        seen.insert(kind);
    }
    for kind in Kind::ALL {
        assert!(
            seen.contains(&kind),
            "README.md lost its ```promql block for {kind:?}"
        );
    }

    let exposition = get(proxy.admin, "/metrics", &[]).await;
    assert_eq!(exposition.status, 200);
    tools.check_metrics(&exposition.body);
}

/// Clients in parallel until [`TRAFFIC`] has passed; the number of answers.
async fn drive(proxy: SocketAddr) -> usize {
    let end = tokio::time::Instant::now() + TRAFFIC;
    support::prometheus::drive(proxy, CLIENTS, end, Default::default()).await
}

// === The README's queries ===

fn readme() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The text of every ```promql fenced block, indented or not.
fn promql_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut open: Option<Vec<&str>> = None;
    for line in markdown.lines() {
        let fence = line.trim();
        match &mut open {
            None if fence == "```promql" => open = Some(Vec::new()),
            None => {}
            Some(lines) if fence == "```" => {
                blocks.push(lines.join("\n"));
                open = None;
            }
            Some(lines) => lines.push(line),
        }
    }
    assert!(open.is_none(), "README.md: a ```promql block is not closed");
    blocks
}

/// What a README query asks, told by the series it reads; each has its expectations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    P99PerPool,
    ErrorRatioPerPool,
    TrafficSharePerPool,
    SlowestBackends,
}

impl Kind {
    const ALL: [Kind; 4] = [
        Kind::P99PerPool,
        Kind::ErrorRatioPerPool,
        Kind::TrafficSharePerPool,
        Kind::SlowestBackends,
    ];

    fn of(q: &str) -> Kind {
        if q.contains("cutover_upstream_duration_seconds_bucket") && q.contains("topk") {
            Kind::SlowestBackends
        } else if q.contains("cutover_request_duration_seconds_bucket")
            && q.contains("histogram_quantile")
        {
            Kind::P99PerPool
        } else if q.contains("cutover_requests_total") && q.contains(r#"code=~"5.."#) {
            Kind::ErrorRatioPerPool
        } else if q.contains("cutover_requests_total") {
            Kind::TrafficSharePerPool
        } else {
            panic!("README.md has a ```promql block this test has no expectations for; add them here:\n{q}")
        }
    }

    fn check(self, result: &[Sample], k8s: &Upstream, q: &str) {
        match self {
            Kind::P99PerPool => {
                let p99 = by(result, &["pool"], q);
                let (ecs, k8s) = (p99["ecs"], p99["k8s"]);
                // Every k8s answer takes at least K8S_DELAY (60 ms), which puts all of
                // them in the 0.05-0.1 bucket or above: interpolated, their p99 is
                // 99.5 ms at the least. ecs answers at once; on a busy machine its tail
                // can stretch, but not past a delay that long.
                assert!(
                    (0.05..1.0).contains(&k8s),
                    "k8s p99 {k8s}s, expected 100 ms or a bit more:\n{q}"
                );
                assert!(
                    ecs < k8s,
                    "ecs p99 {ecs}s, expected under k8s's {k8s}s:\n{q}"
                );
            }
            Kind::ErrorRatioPerPool => {
                let ratio = by(result, &["pool"], q);
                let expected = 1.0 / K8S_FAIL_ONE_IN as f64;
                assert_eq!(ratio["ecs"], 0.0, "ecs had no error:\n{q}");
                assert!(
                    (ratio["k8s"] - expected).abs() < 0.02,
                    "k8s error ratio {}, injected {expected}:\n{q}",
                    ratio["k8s"]
                );
            }
            Kind::TrafficSharePerPool => {
                let share = by(result, &["route", "pool"], q);
                let total = f64::from(ECS_WEIGHT + K8S_WEIGHT);
                for (pool, weight) in [("ecs", ECS_WEIGHT), ("k8s", K8S_WEIGHT)] {
                    let key = format!("web/{pool}");
                    let expected = f64::from(weight) / total;
                    assert!(
                        (share[&key] - expected).abs() < 0.05,
                        "{key} share {}, configured {expected}:\n{q}",
                        share[&key]
                    );
                }
                let sum: f64 = share.values().sum();
                assert!((sum - 1.0).abs() < 1e-9, "shares sum to {sum}:\n{q}");
            }
            Kind::SlowestBackends => {
                let p99 = by(result, &["pool", "backend"], q);
                let k8s_key = format!("k8s/{}", k8s.addr);
                let (slowest, value) = p99
                    .iter()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .expect("a series");
                assert_eq!(*slowest, k8s_key, "slowest backend:\n{q}\n{p99:?}");
                assert!(*value >= 0.05, "k8s backend p99 {value}s:\n{q}");
            }
        }
    }
}

/// The result keyed by the values of `labels` joined with `/`; the series must carry
/// exactly those labels, once each.
fn by(result: &[Sample], labels: &[&str], q: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for s in result {
        let names: Vec<&str> = s.labels.keys().map(String::as_str).collect();
        let mut want = labels.to_vec();
        want.sort_unstable();
        assert_eq!(names, want, "labels of a series of:\n{q}");
        let key = labels
            .iter()
            .map(|l| s.labels[*l].as_str())
            .collect::<Vec<_>>()
            .join("/");
        assert!(out.insert(key, s.value).is_none(), "a series twice:\n{q}");
    }
    out
}
