//! Hostname backends followed as their answer changes: a name pointed through
//! `/etc/hosts` (restored afterwards, even on failure) moves from one loopback address
//! to two, to another, and to none at all.

mod support;

use std::net::SocketAddr;

use support::exposition::scrape;
use support::{get, Proxy, Upstream};

/// Lines of `/etc/hosts` this test adds, taken out again on drop.
struct Hosts {
    name: String,
    original: String,
}

const HOSTS: &str = "/etc/hosts";

impl Hosts {
    fn new(name: &str) -> Hosts {
        let original = std::fs::read_to_string(HOSTS).expect("read /etc/hosts");
        Hosts {
            name: name.to_owned(),
            original,
        }
    }

    /// Points the name at `ips` (none: the name is gone).
    fn point(&self, ips: &[&str]) {
        let mut text = self.original.clone();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        for ip in ips {
            text.push_str(&format!("{ip} {}\n", self.name));
        }
        // In place: /etc/hosts is often a bind mount that a rename cannot replace.
        std::fs::write(HOSTS, text).expect("write /etc/hosts");
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        let _ = std::fs::write(HOSTS, &self.original);
    }
}

/// Two upstreams on 127.0.0.2 and 127.0.0.3 with the same port.
async fn two_upstreams() -> (Upstream, Upstream, u16) {
    for _ in 0..20 {
        let a = Upstream::start_at("a", "127.0.0.2:0".parse().expect("addr"))
            .await
            .expect("bind 127.0.0.2");
        let port = a.addr.port();
        let at_b = SocketAddr::from(([127, 0, 0, 3], port));
        if let Some(b) = Upstream::start_at("b", at_b).await {
            return (a, b, port);
        }
    }
    panic!("no port free on both 127.0.0.2 and 127.0.0.3");
}

async fn backends(proxy: &Proxy) -> Vec<String> {
    let s: cutover::status::Status =
        serde_json::from_str(&get(proxy.admin, "/status", &[]).await.body).expect("status");
    s.pools[0].backends.iter().map(|b| b.addr.clone()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_name_is_followed_from_address_to_address() {
    let (a, b, port) = two_upstreams().await;
    let name = format!("cutover-discovery-{}.test", std::process::id());
    let hosts = Hosts::new(&name);
    hosts.point(&["127.0.0.2"]);
    let proxy = Proxy::start(&format!(
        "[pools.k8s]\nbackends = [\"{name}:{port}\"]\nresolve_every = \"200ms\"\n\
         warmup = {{ path = \"/ready\", interval = \"100ms\" }}\n\
         [[routes]]\nname = \"r\"\nsplit = {{ k8s = 1 }}\n"
    ))
    .await;
    support::eventually("a is ready", async || {
        get(proxy.addr, "/", &[]).await.upstream() == "a"
    })
    .await;

    // Scaled up: two addresses, two backends; the new pod gets nothing while its
    // probe fails, then its share.
    b.ready_status
        .store(503, std::sync::atomic::Ordering::SeqCst);
    hosts.point(&["127.0.0.2", "127.0.0.3"]);
    let (a_addr, b_addr) = (a.addr.to_string(), b.addr.to_string());
    support::eventually("two backends", async || {
        backends(&proxy).await == [a_addr.clone(), b_addr.clone()]
    })
    .await;
    for _ in 0..20 {
        assert_eq!(get(proxy.addr, "/", &[]).await.upstream(), "a");
    }
    assert_eq!(b.hits(), 0, "a warming pod takes no request");
    b.ready_status
        .store(200, std::sync::atomic::Ordering::SeqCst);
    support::eventually("b gets requests", async || {
        get(proxy.addr, "/", &[]).await.upstream() == "b"
    })
    .await;

    // The first pod is gone: its backend leaves /status and /metrics, and takes no
    // request any more.
    hosts.point(&["127.0.0.3"]);
    support::eventually("only b left", async || {
        backends(&proxy).await == [b_addr.clone()]
    })
    .await;
    let m = scrape(proxy.admin).await;
    assert!(
        !m.text.contains(&a_addr),
        "a's series are gone:\n{}",
        m.text
    );
    let a_hits = a.hits();
    for _ in 0..20 {
        assert_eq!(get(proxy.addr, "/", &[]).await.upstream(), "b");
    }
    assert_eq!(a.hits(), a_hits);

    // The name stops resolving: the last good answer keeps serving.
    hosts.point(&[]);
    support::eventually("a failed lookup counted", async || {
        let m = scrape(proxy.admin).await;
        m.value(
            "cutover_dns_resolutions_total",
            &[("pool", "k8s"), ("result", "failure")],
        ) >= 2.0
    })
    .await;
    assert_eq!(backends(&proxy).await, [b_addr]);
    for _ in 0..10 {
        assert_eq!(get(proxy.addr, "/", &[]).await.upstream(), "b");
    }
    let m = scrape(proxy.admin).await;
    assert!(
        m.value(
            "cutover_dns_resolutions_total",
            &[("pool", "k8s"), ("result", "success")]
        ) >= 3.0
    );
    assert_eq!(
        proxy.generation(),
        1,
        "address changes are no config reload"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_probe_reads_the_applications_own_warm_up_figure() {
    let ecs = Upstream::start("ecs").await;
    let k8s = Upstream::start("k8s").await;
    k8s.warmup_percent
        .store(30, std::sync::atomic::Ordering::SeqCst);
    let config = |with_k8s: bool| {
        let mut c = format!(
            "[pools.ecs]\nbackends = [\"{}\"]\n[[routes]]\nname = \"r\"\nsplit = {{ ecs = 1 }}\n",
            ecs.addr
        );
        if with_k8s {
            c.push_str(&format!(
                "[pools.k8s]\nbackends = [\"{}\"]\nwarmup = {{ path = \"/ready\", interval = \"100ms\", healthy = 1 }}\n",
                k8s.addr
            ));
        }
        c
    };
    let proxy = Proxy::start(&config(false)).await;
    // A pod that comes later, as a new one would: warming, then at the figure it
    // reports, read by the probe off the probe's own answer.
    proxy.reload(&config(true)).await;
    let weight = async || -> Option<f64> {
        let s: cutover::status::Status =
            serde_json::from_str(&get(proxy.admin, "/status", &[]).await.body).ok()?;
        Some(s.pools.iter().find(|p| p.name == "k8s")?.backends[0].effective_weight)
    };
    support::eventually("k8s at its own 30 %", async || weight().await == Some(0.3)).await;
    k8s.warmup_percent
        .store(100, std::sync::atomic::Ordering::SeqCst);
    support::eventually("k8s warm", async || weight().await == Some(1.0)).await;
}
