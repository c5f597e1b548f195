//! The deployment kit's observability part: the Prometheus rules in `config/prometheus/`
//! and the Grafana dashboard in `config/grafana/`.
//!
//! - `promtool check rules` accepts every rules file, and `promtool test rules` passes
//!   every `*_test.yml`, which between them test every recording rule and every alert,
//!   both firing and not firing.
//! - The dashboard is JSON Grafana can import: a `datasource` variable that every panel
//!   and query uses, and the `job`, `route` and `pool` variables.
//! - Every PromQL expression of the rules and of the dashboard runs on a real Prometheus
//!   scraping two live cutover instances, one of them under traffic split 70/30 with the
//!   k8s pool 60 ms slower and failing 1 in 10, and answers what that traffic should
//!   give: series for both pools where the expression is per pool, and each alert
//!   firing exactly where the scene makes it fire.
//!
//! Needs `prometheus` and `promtool` (Debian package `prometheus`), installed by
//! `tests/deps/install` when missing, as tests/prometheus.rs does.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use support::prometheus::{http_get, Prometheus, Sample, Tools};
use support::upstream::closed_port;
use support::{Proxy, Upstream};

/// The split of the route under traffic, and how the new environment misbehaves.
const ECS_WEIGHT: u32 = 70;
const K8S_WEIGHT: u32 = 30;
const K8S_DELAY: Duration = Duration::from_millis(60);
const K8S_FAIL_ONE_IN: usize = 10;
const CLIENTS: usize = 8;
/// What the dashboard's variables stand for here. `$__rate_interval` is at least four
/// scrape intervals in Grafana; the traffic runs while the queries do, so the last
/// 5 s always hold some.
const VARIABLES: [(&str, &str); 4] = [
    ("__rate_interval", "5s"),
    ("job", "cutover"),
    ("route", "web"),
    ("pool", "ecs|k8s"),
];
/// How long the queries may take to give what the traffic should give, all together.
const PATIENCE: Duration = Duration::from_secs(45);

// === Static checks ===

#[test]
fn rules_files_pass_promtool_check() {
    let tools = Tools::find_or_install();
    let files = rules_files();
    assert!(!files.is_empty(), "no rules file in config/prometheus/");
    let out = promtool(&tools, "check", &files);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("SUCCESS"),
        "promtool check rules said:\n{text}"
    );
}

#[test]
fn rules_pass_their_unit_tests_which_cover_every_rule() {
    let tools = Tools::find_or_install();
    let tests = rules_tests();
    assert!(!tests.is_empty(), "no *_test.yml in config/prometheus/");
    promtool(&tools, "test", &tests);

    // What the tests cover, read line by line (no YAML parser among the dependencies):
    // the `expr:` of each promql_expr_test, and each `alertname:` of an
    // alert_rule_test with whether its `exp_alerts:` is `[]` (not firing) or a list.
    let mut exprs = Vec::new();
    let mut firing = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for path in &tests {
        let text = read(path);
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for (i, line) in lines.iter().enumerate() {
            if let Some(expr) = line
                .strip_prefix("- expr:")
                .or_else(|| line.strip_prefix("expr:"))
            {
                exprs.push(expr.trim().to_owned());
            }
            if let Some(name) = line
                .strip_prefix("alertname:")
                .or_else(|| line.strip_prefix("- alertname:"))
            {
                let exp = lines[i + 1..]
                    .iter()
                    .find_map(|l| l.strip_prefix("exp_alerts:"))
                    .unwrap_or_else(|| panic!("{}: {name} without exp_alerts", path.display()));
                let set = if exp.trim() == "[]" {
                    &mut quiet
                } else {
                    &mut firing
                };
                set.insert(name.trim().to_owned());
            }
        }
    }
    for rule in declared_rules() {
        match rule.kind {
            RuleKind::Recording => assert!(
                exprs.iter().any(|e| mentions(e, &rule.name)),
                "recording rule {} has no promql_expr_test in config/prometheus/*_test.yml",
                rule.name
            ),
            RuleKind::Alerting => {
                assert!(
                    firing.contains(&rule.name),
                    "alert {} is never tested firing in config/prometheus/*_test.yml",
                    rule.name
                );
                assert!(
                    quiet.contains(&rule.name),
                    "alert {} is never tested not firing in config/prometheus/*_test.yml",
                    rule.name
                );
            }
        }
    }
}

#[test]
fn dashboard_is_importable_with_a_datasource_variable() {
    let doc = dashboard();
    assert!(
        doc["title"].as_str().is_some_and(|t| !t.is_empty()),
        "title"
    );
    assert!(doc["uid"].as_str().is_some_and(|t| !t.is_empty()), "uid");
    assert!(doc["id"].is_null(), "an exported dashboard has id null");
    assert!(doc["schemaVersion"].as_u64().is_some(), "schemaVersion");

    let vars = doc["templating"]["list"]
        .as_array()
        .expect("templating.list");
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no `{name}` variable"))
    };
    let ds = var("datasource");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    for name in ["job", "route", "pool"] {
        let v = var(name);
        assert_eq!(v["type"], "query", "{name}");
        assert_datasource(&v["datasource"], &format!("variable {name}"));
        assert!(
            v["query"].as_str().is_some_and(|q| q.contains(name)),
            "variable {name} asks for its values"
        );
    }
    assert_eq!(
        var("pool")["multi"],
        true,
        "pools are compared side by side"
    );

    let mut ids = BTreeSet::new();
    let mut titles = Vec::new();
    for panel in panels(&doc) {
        let title = panel["title"].as_str().unwrap_or_default().to_owned();
        assert!(!title.is_empty(), "a panel without a title: {panel}");
        assert!(
            ids.insert(panel["id"].as_u64().expect("panel id")),
            "id twice: {title}"
        );
        for key in ["h", "w", "x", "y"] {
            assert!(
                panel["gridPos"][key].as_u64().is_some(),
                "{title}: gridPos.{key}"
            );
        }
        if panel["type"] == "row" {
            continue;
        }
        assert_datasource(&panel["datasource"], &title);
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            assert_datasource(&t["datasource"], &title);
            assert!(
                t["expr"].as_str().is_some_and(|e| !e.is_empty()),
                "{title}: expr"
            );
        }
        titles.push(title);
    }
    // The panels the issue asks for, by the metric they read.
    let exprs: Vec<String> = dashboard_exprs(&doc).into_iter().map(|(_, e)| e).collect();
    for metric in [
        "cutover_route_split_weight",
        "cutover_pool_effective_weight",
        "cutover_requests_total",
        "cutover_request_duration_seconds_bucket",
        "cutover_upstream_duration_seconds_bucket",
        "cutover_upstream_requests_total",
        "cutover_backend_up",
        "cutover_backend_effective_weight",
        "cutover_config_reloads_total",
        "cutover_config_generation",
    ] {
        assert!(
            exprs.iter().any(|e| mentions(e, metric)),
            "no panel reads {metric}; panels: {titles:?}"
        );
    }
    for q in ["0.5", "0.95", "0.99"] {
        assert!(
            exprs
                .iter()
                .any(|e| e.contains(&format!("histogram_quantile({q},"))),
            "no p{q} panel"
        );
    }
}

// === Every expression on a real Prometheus ===

#[tokio::test(flavor = "multi_thread")]
async fn every_rule_and_panel_query_answers_from_a_real_prometheus() {
    let mut live = Live::start().await;
    live.fail_a_reload_on_b().await;
    live.flap().await;
    live.check_rules().await;
    live.check_dashboard().await;
    let sent = live.stop().await;
    println!("{sent} requests through the proxy");
}

/// The scene: two cutover instances of one fleet scraped by one Prometheus that loads
/// the shipped rules. Instance `a` takes the traffic (route `web`, ecs 70 / k8s 30, k8s
/// slower and failing) and has applied one reload (generation 2); `b` stays idle. Route
/// `standby` has no traffic: pool `dead` never gets ready (its backend refuses
/// connections) and pool `flappy` has a probe the test turns off and on.
struct Live {
    prom: Prometheus,
    a: Proxy,
    b: Proxy,
    flappy: Upstream,
    stop: Arc<AtomicBool>,
    traffic: tokio::task::JoinHandle<usize>,
    /// Every wait of the scene ends by then.
    deadline: Instant,
}

impl Live {
    async fn start() -> Live {
        let tools = Tools::find_or_install();
        let ecs = Upstream::start("ecs").await;
        let k8s = Upstream::start("k8s")
            .await
            .with_delay(K8S_DELAY)
            .failing_one_in(K8S_FAIL_ONE_IN);
        let flappy = Upstream::start("flappy").await;
        let dead = closed_port().await;
        let config = format!(
            "[pools.ecs]\nbackends = [\"{}\"]\n\
             [pools.k8s]\nbackends = [\"{}\"]\n\
             [pools.flappy]\nbackends = [\"{}\"]\n\
             warmup = {{ path = \"/ready\", interval = \"100ms\", healthy = 1, unhealthy = 1 }}\n\
             [pools.dead]\nbackends = [\"{dead}\"]\nwarmup = {{ path = \"/ready\", interval = \"100ms\" }}\n\
             [[routes]]\nname = \"web\"\nsplit = {{ ecs = {ECS_WEIGHT}, k8s = {K8S_WEIGHT} }}\n\
             [[routes]]\nname = \"standby\"\nhosts = [\"standby.test\"]\nsplit = {{ flappy = 1, dead = 1 }}\n",
            ecs.addr, k8s.addr, flappy.addr
        );
        let a = Proxy::start(&config).await;
        let b = Proxy::start(&config).await;
        assert_eq!(a.running().reload().await.expect("reload a"), 2);

        let stop = Arc::new(AtomicBool::new(false));
        let traffic = drive(a.addr, stop.clone());
        let mut prom =
            Prometheus::start_with(&tools.prometheus, &[a.admin, b.admin], &rules_files());
        prom.wait_ready().await;
        Live {
            prom,
            a,
            b,
            flappy,
            stop,
            traffic,
            deadline: Instant::now() + PATIENCE,
        }
    }

    /// `b` refuses a broken config, once Prometheus has seen its failure counter at 0.
    async fn fail_a_reload_on_b(&mut self) {
        self.poll("both instances scraped", async |p: &Prometheus| {
            let r = p
                .try_query(r#"cutover_config_reloads_total{result="failure"}"#)
                .await?;
            check(r.len() == 2, "a series per instance", &r)
        })
        .await;
        let refused = self.b.try_reload("not_a_cutover_key = true\n").await;
        assert!(refused.is_err(), "b took a broken config");
    }

    /// flappy's probe fails and passes twice: four changes of `cutover_backend_up`, each
    /// seen by a scrape of both instances before the next.
    async fn flap(&mut self) {
        for up in [false, true, false, true] {
            let (status, want) = if up { (200, 1.0) } else { (503, 0.0) };
            self.flappy.ready_status.store(status, Ordering::SeqCst);
            self.poll("flappy's state scraped", async |p: &Prometheus| {
                let r = p.try_query(r#"cutover_backend_up{pool="flappy"}"#).await?;
                let ok = r.len() == 2 && r.iter().all(|s| s.value == want);
                check(ok, &format!("{want} on both instances"), &r)
            })
            .await;
        }
    }

    /// Prometheus loaded exactly the rules the files declare and evaluates each without
    /// error; each one's expression gives what the scene should give; its alert states
    /// agree.
    async fn check_rules(&mut self) {
        let declared = declared_rules();
        let loaded = self
            .poll("every rule evaluated", async |p: &Prometheus| {
                let loaded = loaded_rules(p).await?;
                let names: BTreeSet<&str> = loaded.iter().map(|r| r.name.as_str()).collect();
                let want: BTreeSet<&str> = declared.iter().map(|r| r.name.as_str()).collect();
                if names != want || loaded.len() != declared.len() {
                    return Err(format!("loaded {names:?}, declared {want:?}"));
                }
                match loaded.iter().find(|r| r.health != "ok") {
                    Some(r) => Err(format!("{}: {} {}", r.name, r.health, r.last_error)),
                    None => Ok(loaded),
                }
            })
            .await;

        let expected = self.expectations();
        for rule in &loaded {
            let what = format!("{:?} rule {}:\n{}", rule.kind, rule.name, rule.expr);
            let result = self
                .poll(&what, async |p: &Prometheus| {
                    let r = p.try_query(&rule.expr).await?;
                    match rule.kind {
                        RuleKind::Recording => {
                            per_pool(&r).and_then(|()| expected.recorded(&rule.name, &r))
                        }
                        RuleKind::Alerting => expected.alert(&rule.name, &r),
                    }
                    .map(|()| r)
                })
                .await;
            println!("{what}\n-> {result:?}\n");
        }

        // The alerts the scene fires are pending or firing (by their `for:`) in
        // Prometheus's own rule engine, the others inactive.
        self.poll("alert states", async |p: &Prometheus| {
            for r in loaded_rules(p).await? {
                if r.kind == RuleKind::Alerting {
                    let quiet = expected.alert(&r.name, &[]).is_ok();
                    if quiet != (r.state == "inactive") {
                        return Err(format!("{} is {}", r.name, r.state));
                    }
                }
            }
            Ok(())
        })
        .await;
    }

    /// Every panel query and variable query of the dashboard, its variables substituted.
    async fn check_dashboard(&mut self) {
        let board = dashboard();
        for (title, expr) in dashboard_exprs(&board) {
            let q = substitute(&expr);
            let what = format!("dashboard panel {title:?}:\n{q}");
            let result = self
                .poll(&what, async |p: &Prometheus| {
                    let r = p.try_query(&q).await?;
                    per_pool(&r).map(|()| r)
                })
                .await;
            println!("{what}\n-> {result:?}\n");
        }
        for (name, query) in variable_queries(&board) {
            let want: &[&str] = match name.as_str() {
                "job" => &["cutover"],
                "route" => &["web"],
                "pool" => &["ecs", "k8s"],
                other => panic!("variable {other} has no expectation here; add one"),
            };
            let (promql, label_name) = label_values(&substitute(&query));
            let what = format!("dashboard variable {name}: {query}");
            let values = self
                .poll(&what, async |p: &Prometheus| {
                    let r = p.try_query(&promql).await?;
                    let values: BTreeSet<String> =
                        r.iter().map(|s| label(s, &label_name).to_owned()).collect();
                    let ok = want.iter().all(|w| values.contains(*w));
                    check(ok, &format!("{want:?} among the values"), &r).map(|()| values)
                })
                .await;
            println!("{what}\n-> {values:?}\n");
        }
    }

    async fn stop(self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        self.traffic.await.expect("traffic")
    }

    fn expectations(&self) -> Expected {
        Expected {
            a: self.a.admin.to_string(),
            b: self.b.admin.to_string(),
        }
    }

    /// Polls `attempt` until it gives a value or the scene's deadline passes; then fails
    /// the test with the last answer and Prometheus's log.
    async fn poll<T>(
        &mut self,
        what: &str,
        mut attempt: impl AsyncFnMut(&Prometheus) -> Result<T, String>,
    ) -> T {
        loop {
            self.prom.assert_alive();
            let last = match attempt(&self.prom).await {
                Ok(v) => return v,
                Err(e) => e,
            };
            assert!(
                Instant::now() < self.deadline,
                "{what}\nnot so within {PATIENCE:?}; last: {last}\n{}",
                self.prom.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// What the live scene must give for each rule beyond a series per pool.
struct Expected {
    /// The `instance` labels of the two proxies.
    a: String,
    b: String,
}

impl Expected {
    fn recorded(&self, name: &str, r: &[Sample]) -> Result<(), String> {
        let web = |pool: &str| {
            r.iter()
                .find(|s| label(s, "route") == "web" && label(s, "pool") == pool)
                .map(|s| s.value)
                .ok_or(format!("no web/{pool} series"))
        };
        match name {
            "route_pool:cutover_requests:error_ratio_rate5m" => {
                let (ecs, k8s) = (web("ecs")?, web("k8s")?);
                let injected = 1.0 / K8S_FAIL_ONE_IN as f64;
                check(
                    ecs == 0.0 && (k8s - injected).abs() < 0.03,
                    "ecs 0, k8s 0.1",
                    r,
                )
            }
            "route_pool:cutover_requests:share_rate5m"
            | "route_pool:cutover_route_split_weight:share" => {
                let ecs = web("ecs")?;
                let k8s = web("k8s")?;
                let want = f64::from(ECS_WEIGHT) / f64::from(ECS_WEIGHT + K8S_WEIGHT);
                check(
                    (ecs - want).abs() < 0.05 && (ecs + k8s - 1.0).abs() < 1e-9,
                    "ecs 0.7, k8s 0.3",
                    r,
                )
            }
            "route_pool:cutover_request_duration_seconds:p99_rate5m" => {
                let (ecs, k8s) = (web("ecs")?, web("k8s")?);
                check(
                    ecs < k8s && k8s >= K8S_DELAY.as_secs_f64(),
                    "k8s slower, over 60 ms",
                    r,
                )
            }
            // b loaded its config a moment before a reloaded: behind, but by seconds.
            "instance:cutover_config_load:seconds_behind_fleet" => {
                let of = |i: &str| {
                    r.iter()
                        .find(|s| label(s, "instance") == i)
                        .map(|s| s.value)
                };
                match (of(&self.a), of(&self.b)) {
                    (Some(a), Some(b)) if r.len() == 2 && a == 0.0 && (0.0..60.0).contains(&b) => {
                        Ok(())
                    }
                    _ => Err(format!("want a 0 and b a few seconds: {r:?}")),
                }
            }
            _ => Ok(()),
        }
    }

    /// Which series each alert's expression gives in this scene; every alert of the
    /// rules must be listed here.
    fn alert(&self, name: &str, r: &[Sample]) -> Result<(), String> {
        let pools: BTreeSet<&str> = r.iter().map(|s| label(s, "pool")).collect();
        let only = |want: &[(&str, &str)]| {
            let ok = r.len() == 1 && want.iter().all(|(k, v)| label(&r[0], k) == *v);
            check(ok, &format!("exactly one series {want:?}"), r)
        };
        match name {
            // k8s's p99 is about 100 ms, ecs's a few: far over 1.5x and the 50 ms floor.
            "CutoverNewPoolSlowerThanBaseline" => only(&[("route", "web"), ("pool", "k8s")]),
            // 1 in 10 of k8s's answers is a 500; ecs has none; standby has no traffic.
            "CutoverErrorRatioHigh" => only(&[("route", "web"), ("pool", "k8s")]),
            // dead never gets ready, on either instance (flappy may be down for a moment).
            "CutoverPoolNoReadyBackend" => check(
                r.iter().filter(|s| label(s, "pool") == "dead").count() == 2
                    && !pools.contains("ecs")
                    && !pools.contains("k8s"),
                "dead on both instances, not ecs or k8s",
                r,
            ),
            // flappy went down and up twice; nothing else moved.
            "CutoverBackendFlapping" => check(
                r.len() == 2 && pools == BTreeSet::from(["flappy"]),
                "flappy on both instances",
                r,
            ),
            "CutoverConfigReloadFailed" => only(&[("instance", self.b.as_str())]),
            // No route of this scene has an autopilot; cutover_test.yml has it firing.
            "CutoverAutopilotRolledBack" => check(r.is_empty(), "nothing", r),
            // b is behind a's reload by seconds, not the 5 minutes allowed for a
            // ConfigMap to reach every pod; cutover_test.yml has it firing.
            "CutoverConfigGenerationBehind" => check(r.is_empty(), "nothing", r),
            other => {
                panic!("alert {other} has no expectation in this test; add one to Expected::alert")
            }
        }
    }
}

fn check(ok: bool, want: &str, r: &[Sample]) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!("want {want}, got {r:?}"))
    }
}

fn label<'a>(s: &'a Sample, name: &str) -> &'a str {
    s.labels.get(name).map_or("", String::as_str)
}

/// Some series; when they carry a `pool`, ecs and k8s are among them with finite values
/// (an idle pool of the scene may give NaN: a quantile or a ratio of nothing).
fn per_pool(r: &[Sample]) -> Result<(), String> {
    if r.is_empty() {
        return Err("no series".into());
    }
    if r.iter().any(|s| s.labels.contains_key("pool")) {
        for pool in ["ecs", "k8s"] {
            let mine: Vec<&Sample> = r.iter().filter(|s| label(s, "pool") == pool).collect();
            if mine.is_empty() || mine.iter().any(|s| !s.value.is_finite()) {
                return Err(format!("{pool}: {mine:?}"));
            }
        }
    } else if r.iter().any(|s| !s.value.is_finite()) {
        return Err(format!("not finite: {r:?}"));
    }
    Ok(())
}

/// Clients in parallel until `stop` (or well past [`PATIENCE`], whichever is first);
/// the number of answers.
fn drive(proxy: SocketAddr, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<usize> {
    let end = tokio::time::Instant::now() + 2 * PATIENCE;
    tokio::spawn(support::prometheus::drive(proxy, CLIENTS, end, stop))
}

// === The files ===

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `*.yml` files of config/prometheus/, sorted; `_test.yml` ones when `tests`.
fn prometheus_files(tests: bool) -> Vec<PathBuf> {
    let dir = root().join("config/prometheus");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name.ends_with(".yml") && name.ends_with("_test.yml") == tests
        })
        .collect();
    files.sort();
    files
}

fn rules_files() -> Vec<PathBuf> {
    prometheus_files(false)
}

fn rules_tests() -> Vec<PathBuf> {
    prometheus_files(true)
}

/// `promtool check rules FILES` or `promtool test rules FILES`, run in
/// config/prometheus/ (test files name their rules files relative to it); fails the
/// test with promtool's words unless it exits 0.
fn promtool(tools: &Tools, verb: &str, files: &[PathBuf]) -> Output {
    let out = Command::new(&tools.promtool)
        .args([verb, "rules"])
        .args(files)
        .current_dir(root().join("config/prometheus"))
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool {verb} rules: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RuleKind {
    Recording,
    Alerting,
}

/// A rule as the files declare it: Prometheus parses the files, this test only needs
/// the names.
#[derive(Debug)]
struct Declared {
    name: String,
    kind: RuleKind,
}

/// A rule as Prometheus loaded it, with its expression and evaluation state.
#[derive(Debug)]
struct Rule {
    name: String,
    kind: RuleKind,
    expr: String,
    health: String,
    last_error: String,
    state: String,
}

/// Every `- record:` and `- alert:` of the rules files.
fn declared_rules() -> Vec<Declared> {
    let mut rules = Vec::new();
    for path in rules_files() {
        for line in read(&path).lines().map(str::trim) {
            let (kind, name) = if let Some(n) = line.strip_prefix("- record:") {
                (RuleKind::Recording, n)
            } else if let Some(n) = line.strip_prefix("- alert:") {
                (RuleKind::Alerting, n)
            } else {
                continue;
            };
            rules.push(Declared {
                name: name.trim().to_owned(),
                kind,
            });
        }
    }
    assert!(!rules.is_empty(), "no rule in config/prometheus/");
    rules
}

/// The rules as Prometheus loaded them (`/api/v1/rules`), in file order.
async fn loaded_rules(p: &Prometheus) -> Result<Vec<Rule>, String> {
    let (status, body) = http_get(p.addr, "/api/v1/rules")
        .await
        .ok_or("no answer from prometheus")?;
    let doc: Value = serde_json::from_str(&body).map_err(|e| format!("{status} {e}: {body}"))?;
    let groups = doc["data"]["groups"].as_array().ok_or(body.clone())?;
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    Ok(groups
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .map(|r| Rule {
            name: text(&r["name"]),
            kind: if r["type"] == "alerting" {
                RuleKind::Alerting
            } else {
                RuleKind::Recording
            },
            expr: text(&r["query"]),
            health: text(&r["health"]),
            last_error: text(&r["lastError"]),
            state: text(&r["state"]),
        })
        .collect())
}

fn dashboard() -> Value {
    let path = root().join("config/grafana/cutover-dashboard.json");
    serde_json::from_str(&read(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every panel, those inside collapsed rows included.
fn panels(doc: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in doc["panels"].as_array().expect("panels") {
        out.push(p);
        if let Some(inner) = p["panels"].as_array() {
            out.extend(inner);
        }
    }
    out
}

/// (panel title, expr) of every query of every panel.
fn dashboard_exprs(doc: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in panels(doc) {
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(e) = t["expr"].as_str() {
                out.push((
                    p["title"].as_str().unwrap_or_default().to_owned(),
                    e.to_owned(),
                ));
            }
        }
    }
    out
}

/// (name, query) of every query variable.
fn variable_queries(doc: &Value) -> Vec<(String, String)> {
    doc["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .filter(|v| v["type"] == "query")
        .map(|v| {
            let q = v["query"]
                .as_str()
                .or_else(|| v["query"]["query"].as_str())
                .expect("variable query");
            (v["name"].as_str().expect("name").to_owned(), q.to_owned())
        })
        .collect()
}

/// The dashboard's variables replaced by what they stand for here ([`VARIABLES`]), in
/// both `$name` and `${name}` forms; no `$` may be left.
fn substitute(expr: &str) -> String {
    let mut q = expr.to_owned();
    for (name, value) in VARIABLES {
        q = q.replace(&format!("${{{name}}}"), value);
        q = q.replace(&format!("${name}"), value);
    }
    assert!(
        !q.contains('$'),
        "a dashboard variable this test does not know:\n{expr}"
    );
    q
}

/// Grafana's `label_values(SELECTOR, LABEL)` as PromQL: the label's values are those of
/// `count by (LABEL) (SELECTOR)`.
fn label_values(query: &str) -> (String, String) {
    let inner = query
        .trim()
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not label_values(...): {query}"));
    let (selector, label) = inner
        .rsplit_once(',')
        .expect("label_values(selector, label)");
    let label = label.trim().to_owned();
    (format!("count by ({label}) ({})", selector.trim()), label)
}

fn assert_datasource(ds: &Value, what: &str) {
    assert_eq!(ds["type"], "prometheus", "{what}: datasource type");
    assert_eq!(
        ds["uid"], "${datasource}",
        "{what}: datasource is the variable"
    );
}

/// Whether `text` names `name` as a whole metric or rule name.
fn mentions(text: &str, name: &str) -> bool {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    text.match_indices(name).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + name.len()..].chars().next();
        !before.is_some_and(is_name) && !after.is_some_and(is_name)
    })
}
