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
use std::fs::File;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use support::{get, tempdir, Proxy, Upstream};

/// The configured split: ecs 70, k8s 30.
const ECS_WEIGHT: u32 = 70;
const K8S_WEIGHT: u32 = 30;
/// The new environment answers this much later...
const K8S_DELAY: Duration = Duration::from_millis(20);
/// ...and every 10th of its answers is a 500.
const K8S_FAIL_ONE_IN: usize = 10;
/// How long the clients drive traffic, and how many at once.
const TRAFFIC: Duration = Duration::from_secs(6);
const CLIENTS: usize = 8;
/// How long any one wait on Prometheus may take.
const PATIENCE: Duration = Duration::from_secs(15);

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

/// Clients in parallel, each sending one request after the other until [`TRAFFIC`] has
/// passed; the number of answers.
async fn drive(proxy: SocketAddr) -> usize {
    let end = Instant::now() + TRAFFIC;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            tokio::spawn(async move {
                let mut n = 0;
                while Instant::now() < end {
                    let r = get(proxy, "/", &[]).await;
                    assert!(
                        r.status == 200 || r.status == 500,
                        "{} {}",
                        r.status,
                        r.body
                    );
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for c in clients {
        total += c.await.expect("client task");
    }
    total
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
                // Every k8s answer takes at least K8S_DELAY, which puts all of them at
                // or above the 0.01-0.025 bucket: interpolated, their p99 is 24.85 ms at
                // the least. ecs answers at once, but on a busy machine its tail can be
                // anything short of k8s's (which has the same stalls on top of its delay).
                assert!(
                    (0.02..0.5).contains(&k8s),
                    "k8s p99 {k8s}s, expected 25 ms or a bit more:\n{q}"
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
                assert!(*value >= 0.02, "k8s backend p99 {value}s:\n{q}");
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

// === The Prometheus server ===

/// One series of an instant query's answer.
#[derive(Debug)]
struct Sample {
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A Prometheus scraping cutover's admin listener every second, on a port and in a
/// storage directory of its own; killed on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: tempdir::Dir,
}

impl Prometheus {
    fn start(bin: &Path, target: SocketAddr) -> Prometheus {
        let dir = tempdir::Dir::new();
        let addr = free_port();
        let config = dir.path.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: cutover\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("write prometheus.yml");
        let log = File::create(dir.path.join("prometheus.log")).expect("prometheus.log");
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        Prometheus { child, addr, dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path.join("prometheus.log")).unwrap_or_default()
    }

    /// Fails the test, with Prometheus's log, when it has exited.
    fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("prometheus exited ({status}):\n{}", self.log());
        }
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            self.assert_alive();
            if let Some((200, _)) = http_get(self.addr, "/-/ready").await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready within {PATIENCE:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until a scrape has seen exactly `n` requests answered.
    async fn wait_for_total(&mut self, n: usize) {
        let deadline = Instant::now() + PATIENCE;
        let mut last = Vec::new();
        loop {
            self.assert_alive();
            last = self
                .try_query("sum(cutover_requests_total)")
                .await
                .unwrap_or(last);
            if matches!(&last[..], [s] if s.value == n as f64) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus did not see {n} requests within {PATIENCE:?}, last {last:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// An instant query at the current time; fails the test on an error answer.
    async fn query(&self, q: &str) -> Vec<Sample> {
        match self.try_query(q).await {
            Ok(samples) => samples,
            Err(e) => panic!("query failed: {e}\n{q}"),
        }
    }

    async fn try_query(&self, q: &str) -> Result<Vec<Sample>, String> {
        let path = format!("/api/v1/query?query={}", url_encode(q));
        let (status, body) = http_get(self.addr, &path)
            .await
            .ok_or("no answer from prometheus")?;
        let doc: Value =
            serde_json::from_str(&body).map_err(|e| format!("{status} {e}: {body}"))?;
        if status != 200 || doc["status"] != "success" {
            return Err(format!("{status}: {body}"));
        }
        if doc["data"]["resultType"] != "vector" {
            return Err(format!("not an instant vector: {body}"));
        }
        let series = doc["data"]["result"].as_array().ok_or(body.clone())?;
        series
            .iter()
            .map(|s| {
                let labels = s["metric"]
                    .as_object()
                    .ok_or("no metric")?
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect();
                let value = s["value"][1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .ok_or(format!("no value in {s}"))?;
                Ok(Sample { labels, value })
            })
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback address that was free a moment ago (Prometheus takes no port 0).
fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// GET over HTTP/1.0, so that the answer is neither chunked nor kept alive: the status
/// and the body, or None when nothing answers (yet).
async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let exchange = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.ok()?;
        let text = String::from_utf8_lossy(&out);
        let (head, body) = text.split_once("\r\n\r\n")?;
        let status = head.split(' ').nth(1)?.parse().ok()?;
        Some((status, body.to_owned()))
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
}

/// Percent-encodes a query parameter value.
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// === The tools ===

/// `prometheus` and `promtool`, found on PATH or installed.
struct Tools {
    prometheus: PathBuf,
    promtool: PathBuf,
}

impl Tools {
    fn find_or_install() -> Tools {
        if let Some(tools) = Tools::find() {
            return tools;
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/deps/install");
        let status = Command::new("bash")
            .arg(&script)
            .stdin(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
        assert!(status.success(), "{} failed: {status}", script.display());
        Tools::find().expect("prometheus and promtool on PATH after tests/deps/install")
    }

    fn find() -> Option<Tools> {
        Some(Tools {
            prometheus: on_path("prometheus")?,
            promtool: on_path("promtool")?,
        })
    }

    /// `promtool check metrics` on `exposition`; fails the test, with promtool's words,
    /// unless it exits 0.
    fn check_metrics(&self, exposition: &str) {
        let mut child = Command::new(&self.promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start promtool");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(exposition.as_bytes())
            .expect("write to promtool");
        let out = child.wait_with_output().expect("promtool");
        assert!(
            out.status.success(),
            "promtool check metrics: {}\n{}{}\nexposition:\n{exposition}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}
