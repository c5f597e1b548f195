//! Autopilot with `source = "prometheus"`: a fleet of cutovers sharing one config and
//! two real upstreams, scraped every second by a real Prometheus, each instance judging
//! the ramp by the same PromQL without talking to the others.
//!
//! Needs `prometheus` (Debian package `prometheus`); when it is not on PATH the test
//! installs it with `tests/deps/install`, as CI does.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use cutover::status::Autopilot;
use support::autopilot::{autopilot, metrics, Traffic};
use support::prometheus::{free_port, Prometheus, Tools};
use support::{get, tempdir, Proxy, Upstream};

/// How long any ramp in these tests may take to get where it is going.
const PATIENCE: Duration = Duration::from_secs(40);
/// Each step's hold. With a 1 s scrape, a 5 s window holds four or five samples of
/// every series, which `increase()` needs at least two of.
const HOLD: Duration = Duration::from_secs(3);
/// How far apart two instances may take the same decision: one scrape (1 s) for the
/// first one's step to reach Prometheus, one fleet evaluation (every 1 s, on a 250 ms
/// tick) for the other to read it, and some slack for a small, loaded machine.
const SKEW: Duration = Duration::from_secs(3);

/// Two cutovers of one config, the upstreams they share, and the Prometheus that
/// scrapes them and a third admin port, for an instance started later.
struct Fleet {
    ecs: Upstream,
    k8s: Upstream,
    text: String,
    proxies: Vec<Proxy>,
    prom: Prometheus,
    spare_admin: SocketAddr,
    spare: Option<std::net::TcpListener>,
}

impl Fleet {
    async fn start(hold: Duration, autopilot: &str) -> Fleet {
        let tools = Tools::find_or_install();
        let (ecs, k8s) = (Upstream::start("ecs").await, Upstream::start("k8s").await);
        // Held until the third instance starts, so that no listener of this or another
        // test takes the port meanwhile.
        let spare = std::net::TcpListener::bind("127.0.0.1:0").expect("bind spare admin");
        let spare_admin = spare.local_addr().expect("spare admin addr");
        let config = |prom: SocketAddr| {
            format!(
                "[pools.ecs]\nbackends = [\"{}\"]\n[pools.k8s]\nbackends = [\"{}\"]\n\
                 [[routes]]\nname = \"r\"\nsplit = {{ ecs = 100, k8s = 0 }}\n\
                 [routes.autopilot]\nrun = 1\npool = \"k8s\"\nbaseline = \"ecs\"\n\
                 source = \"prometheus\"\nprometheus = \"http://{prom}\"\n\
                 hold = \"{}s\"\nwindow = \"5s\"\nmin_requests = 20\n{autopilot}\n",
                ecs.addr,
                k8s.addr,
                hold.as_secs()
            )
        };
        let mut prom_addr = free_port();
        let mut text = config(prom_addr);
        let proxies = vec![Proxy::start(&text).await, Proxy::start(&text).await];
        let targets = [proxies[0].admin, proxies[1].admin, spare_admin];
        // Prometheus's port was free when picked; a listener started since may have
        // taken it. Then another, and the instances are told (a reload keeps the ramp).
        let mut tries = 0;
        let prom = loop {
            let mut prom = Prometheus::start_at(&tools.prometheus, prom_addr, &targets, &[]);
            if prom.ready().await {
                break prom;
            }
            tries += 1;
            assert!(tries < 5, "prometheus does not start:\n{}", prom.log());
            prom_addr = free_port();
            text = config(prom_addr);
            for p in &proxies {
                p.reload(&text).await;
            }
        };
        Fleet {
            ecs,
            k8s,
            text,
            proxies,
            prom,
            spare_admin,
            spare: Some(spare),
        }
    }

    /// Starts one more instance of the same config, on the admin port Prometheus has
    /// been scraping (in vain) from the start.
    async fn grow(&mut self) {
        let dir = tempdir::Dir::new();
        let path = dir.path.join("cutover.toml");
        let text = format!(
            "[listen]\nhttp = [\"127.0.0.1:0\"]\n[admin]\nlisten = \"{}\"\n\
             [access_log]\nenabled = false\n{}",
            self.spare_admin, self.text
        );
        std::fs::write(&path, text).expect("write config");
        drop(self.spare.take());
        self.proxies.push(Proxy::start_file(&path, dir).await);
    }

    /// The fleet's step as the `step` query answers it, once it is at least `min`.
    async fn fleet_step(&self, query: &str, min: u32) -> u32 {
        let end = Instant::now() + PATIENCE;
        loop {
            let answer = self.prom.query(query).await;
            if let [s] = &answer[..] {
                if s.value >= f64::from(min) {
                    return s.value as u32;
                }
            }
            assert!(Instant::now() < end, "the fleet's step: {answer:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn addrs(&self) -> Vec<SocketAddr> {
        self.proxies.iter().map(|p| p.addr).collect()
    }

    /// Polls every instance until `done` holds, calling `seen` with every look.
    async fn until(
        &self,
        what: &str,
        mut seen: impl FnMut(&[Autopilot]),
        done: impl Fn(&[Autopilot]) -> bool,
    ) -> Vec<Autopilot> {
        let end = Instant::now() + PATIENCE;
        loop {
            let mut aps = Vec::new();
            for p in &self.proxies {
                aps.push(autopilot(p).await);
            }
            seen(&aps);
            if done(&aps) {
                return aps;
            }
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}: {aps:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The time between the first and the last instance's entry in `first`.
fn spread(first: &[Option<Instant>]) -> Duration {
    let at: Vec<Instant> = first
        .iter()
        .map(|f| f.expect("seen on every instance"))
        .collect();
    let (min, max) = (at.iter().min(), at.iter().max());
    max.zip(min).map_or(Duration::ZERO, |(a, b)| *a - *b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_climbs_every_step_together_and_finishes_together() {
    let fleet = Fleet::start(HOLD, "steps = [20, 50, 80]").await;
    let traffic = Traffic::start(&fleet.addrs(), 4, Duration::from_millis(5), PATIENCE * 2);
    // When each instance was first seen at each step (they may show it apart by the
    // time it takes the step to reach Prometheus and the other to read it).
    let mut first: BTreeMap<u32, [Option<Instant>; 2]> = BTreeMap::new();
    let mut last = [0; 2];
    let done = fleet
        .until(
            "both instances done",
            |aps| {
                for (i, ap) in aps.iter().enumerate() {
                    assert_ne!(ap.state, "rolled_back", "{ap:#?}");
                    assert!(ap.step >= last[i], "instance {i} went back: {ap:#?}");
                    last[i] = ap.step;
                    first.entry(ap.step).or_default()[i].get_or_insert_with(Instant::now);
                }
            },
            |aps| aps.iter().all(|ap| ap.state == "done"),
        )
        .await;
    let sent = traffic.stop().await;
    let steps: Vec<u32> = first.keys().copied().filter(|s| *s > 0).collect();
    assert_eq!(steps, [1, 2, 3], "every step, in order, on both");
    for (step, at) in first.iter().filter(|(s, _)| **s > 0) {
        let apart = spread(at);
        println!("step {step}: instances {apart:?} apart");
        assert!(apart <= SKEW, "step {step}: instances {apart:?} apart");
    }
    println!("{sent} requests");
    for (ap, proxy) in done.iter().zip(&fleet.proxies) {
        assert_eq!((ap.step, ap.share), (3, 80.0), "{ap:#?}");
        assert!(ap.holding.is_none(), "{ap:#?}");
        let m = metrics(proxy).await;
        assert!(m.contains("cutover_autopilot_step{route=\"r\"} 3"), "{m}");
        assert!(m.contains("cutover_autopilot_state{route=\"r\",state=\"done\"} 1"));
    }
    // What each instance runs, shown for an operator to paste into Prometheus.
    let queries = &done[0].queries;
    let names: Vec<&str> = queries.keys().map(String::as_str).collect();
    assert_eq!(names, ["error_ratio", "latency", "latency_ratio", "step"]);
    assert_eq!(queries, &done[1].queries, "one fleet, one set of queries");
    assert!(
        queries["error_ratio"].contains(r#"cutover_requests_total{route="r",pool="k8s""#),
        "{queries:#?}"
    );
    let step = fleet.prom.query(&queries["step"]).await;
    assert!(matches!(&step[..], [s] if s.value == 3.0), "{step:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_pool_rolls_back_every_instance_and_gets_nothing_more() {
    let fleet = Fleet::start(HOLD, "steps = [20, 50, 80]\nmax_error_ratio = 0.05").await;
    let traffic = Traffic::start(&fleet.addrs(), 4, Duration::from_millis(5), PATIENCE * 2);
    fleet
        .until(
            "both at step 2",
            |_| {},
            |aps| aps.iter().all(|a| a.step >= 2),
        )
        .await;
    fleet.k8s.fail_one_in.store(1, Ordering::SeqCst);
    let bad_at = Instant::now();
    let mut rolled = [None; 2];
    let aps = fleet
        .until(
            "both rolled back",
            |aps| {
                for (ap, at) in aps.iter().zip(&mut rolled) {
                    if ap.state == "rolled_back" {
                        at.get_or_insert_with(Instant::now);
                    }
                }
            },
            |aps| aps.iter().all(|a| a.state == "rolled_back"),
        )
        .await;
    let (took, apart) = (bad_at.elapsed(), spread(&rolled));
    println!("rolled back {took:?} after the pool failed, instances {apart:?} apart");
    assert!(apart <= SKEW, "instances rolled back {apart:?} apart");
    // Scrape (1 s), two samples for increase() (1 s more), one evaluation (1 s).
    assert!(took < Duration::from_secs(5), "rolled back after {took:?}");
    // The check's own PromQL, pasted into Prometheus, sees what failed it.
    let pasted = fleet.prom.query(&aps[0].queries["error_ratio"]).await;
    assert!(matches!(&pasted[..], [s] if s.value > 0.05), "{pasted:?}");
    traffic.stop().await;
    for (ap, proxy) in aps.iter().zip(&fleet.proxies) {
        let reason = ap.reason.clone().unwrap_or_default();
        assert!(reason.starts_with("error_ratio:"), "{ap:#?}");
        assert!(ap.step >= 2 && ap.share == 0.0, "{ap:#?}");
        let m = metrics(proxy).await;
        let counted = "cutover_autopilot_rollbacks_total{route=\"r\",check=\"error_ratio\"} 1";
        assert!(m.contains(counted), "{m}");
        assert!(m.contains("cutover_autopilot_state{route=\"r\",state=\"rolled_back\"} 1"));
    }
    let (k8s_before, ecs_before) = (fleet.k8s.hits(), fleet.ecs.hits());
    for i in 0..100 {
        let r = get(fleet.proxies[i % 2].addr, "/", &[]).await;
        assert_eq!(r.upstream(), "ecs", "request {i} after the rollback");
    }
    assert_eq!(
        fleet.k8s.hits(),
        k8s_before,
        "k8s got requests after the rollback"
    );
    assert_eq!(fleet.ecs.hits(), ecs_before + 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_started_mid_ramp_resumes_at_the_fleets_step_and_keeps_up() {
    // A longer hold, and a start late in it: behind the fleet by most of a hold.
    let mut fleet = Fleet::start(2 * HOLD, "steps = [10, 20, 30, 40, 50]").await;
    let traffic = Traffic::start(&fleet.addrs(), 4, Duration::from_millis(5), PATIENCE * 2);
    let late = |aps: &[Autopilot]| {
        aps.iter()
            .all(|a| a.step == 2 && a.hold_left_seconds <= 1.0)
    };
    let aps = fleet.until("the fleet late in step 2", |_| {}, late).await;
    // The fleet's step is what Prometheus has scraped, up to a scrape after /status.
    let at = fleet.fleet_step(&aps[0].queries["step"], 2).await;
    let started = Instant::now();
    fleet.grow().await;
    let aps = fleet
        .until(
            "the new instance at a step",
            |aps| {
                let new = &aps[2];
                assert!(new.step == 0 || new.step >= at, "not step {at}: {new:#?}");
            },
            |aps| aps[2].step > 0,
        )
        .await;
    let took = started.elapsed();
    println!("joined at step {} {took:?} after it started", aps[2].step);
    let fleet_step = aps[..2].iter().map(|a| a.step).max().unwrap_or(0);
    assert!(aps[2].step <= fleet_step, "ahead of the fleet: {aps:#?}");
    assert_eq!(aps[2].state, "running", "{:#?}", aps[2]);
    assert!(took < SKEW, "joined {took:?} after it started");
    // Its hold began late, yet it takes the fleet's next step with the fleet.
    let next = at + 1;
    let mut first = [None; 3];
    fleet
        .until(
            "all three at the next step",
            |aps| {
                for (ap, seen) in aps.iter().zip(&mut first) {
                    if ap.step >= next {
                        seen.get_or_insert_with(Instant::now);
                    }
                }
            },
            |aps| aps.iter().all(|a| a.step >= next),
        )
        .await;
    let sent = traffic.stop().await;
    let apart = spread(&first);
    println!("step {next}: instances {apart:?} apart; {sent} requests");
    assert!(apart <= SKEW, "step {next}: instances {apart:?} apart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_prometheus_the_fleet_holds_its_step_and_says_so() {
    let mut fleet = Fleet::start(HOLD, "steps = [20, 50, 80]").await;
    let traffic = Traffic::start(&fleet.addrs(), 4, Duration::from_millis(5), PATIENCE * 2);
    // Just reached by both: neither can advance before its hold has passed.
    fleet
        .until(
            "both at step 2",
            |_| {},
            |aps| aps.iter().all(|a| a.step == 2),
        )
        .await;
    fleet.prom.child.kill().expect("kill prometheus");
    fleet.prom.child.wait().expect("prometheus exits");
    let killed = Instant::now();
    let same = |aps: &[Autopilot]| {
        for ap in aps {
            let held = (ap.step, ap.state.as_str(), ap.share);
            assert_eq!(held, (2, "running", 50.0), "{ap:#?}");
        }
    };
    let aps = fleet
        .until("both holding", same, |aps| {
            aps.iter().all(|a| a.holding.is_some())
        })
        .await;
    println!("holding after {:?}: {:?}", killed.elapsed(), aps[0].holding);
    assert!(
        killed.elapsed() < SKEW,
        "noticed after {:?}",
        killed.elapsed()
    );
    // Long past the hold, at every look: the same step, and why.
    let end = Instant::now() + 2 * HOLD;
    fleet
        .until(
            "two holds without Prometheus",
            |aps| {
                same(aps);
                for ap in aps {
                    assert!(ap.holding.is_some(), "{ap:#?}");
                }
            },
            |_| Instant::now() >= end,
        )
        .await;
    traffic.stop().await;
    let holding = aps[0].holding.clone().unwrap_or_default();
    assert!(holding.contains("unreachable"), "{holding}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_run_starts_the_fleet_over_at_the_first_step() {
    // Narrowed to the harness's scrape job, as a Prometheus shared by fleets needs.
    let ramp = "steps = [10, 20, 30, 40, 50]\nprometheus_selector = 'job=\"cutover\"'";
    let fleet = Fleet::start(HOLD, ramp).await;
    let traffic = Traffic::start(&fleet.addrs(), 4, Duration::from_millis(5), PATIENCE * 2);
    fleet
        .until(
            "the fleet at step 3",
            |_| {},
            |aps| aps.iter().all(|a| a.step >= 3),
        )
        .await;
    let again = fleet.text.replace("run = 1", "run = 2");
    for p in &fleet.proxies {
        p.reload(&again).await;
    }
    // Prometheus still has run 1's step 3 from every instance, from the last minute:
    // the new run must not take it up. Within the first step's hold, at every look,
    // no instance is past step 1.
    let end = Instant::now() + HOLD - Duration::from_millis(500);
    fleet
        .until(
            "the new run's first step's hold",
            |aps| {
                for ap in aps {
                    assert!(ap.step <= 1, "run 2 took up run 1's step: {ap:#?}");
                }
            },
            |_| Instant::now() >= end,
        )
        .await;
    let aps = fleet
        .until(
            "both at step 1",
            |_| {},
            |aps| aps.iter().all(|a| a.step >= 1),
        )
        .await;
    traffic.stop().await;
    assert!(aps.iter().all(|a| a.state == "running"), "{aps:#?}");
    assert!(
        aps[0].queries["step"].contains(r#"job="cutover"} =="#),
        "{aps:#?}"
    );
}
