//! `/metrics` after real traffic: the exposition read back with a real Prometheus text
//! parser, its counts held against what the upstreams counted.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;

use support::exposition::scrape;
use support::upstream::closed_port;
use support::{get, Proxy, RawUpstream, Upstream};

const BUCKETS: [f64; 15] = [
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    f64::INFINITY,
];

const FAMILIES: [(&str, &str); 13] = [
    ("cutover_requests_total", "counter"),
    ("cutover_request_duration_seconds", "histogram"),
    ("cutover_upstream_requests_total", "counter"),
    ("cutover_upstream_duration_seconds", "histogram"),
    ("cutover_backend_up", "gauge"),
    ("cutover_backend_effective_weight", "gauge"),
    ("cutover_route_split_weight", "gauge"),
    ("cutover_config_reloads_total", "counter"),
    ("cutover_config_generation", "gauge"),
    (
        "cutover_config_last_reload_success_timestamp_seconds",
        "gauge",
    ),
    ("cutover_pool_effective_weight", "gauge"),
    ("cutover_inflight_requests", "gauge"),
    ("cutover_client_connections", "gauge"),
];

fn config(ecs: &Upstream, k8s: &[SocketAddr]) -> String {
    let k8s: Vec<String> = k8s.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "[pools.ecs]\nbackends = [\"{}\"]\n\
         [pools.k8s]\nbackends = [{}]\n\
         [[routes]]\nname = \"app\"\npath_prefix = \"/app/\"\nsplit = {{ ecs = 70, k8s = 30 }}\n",
        ecs.addr,
        k8s.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn every_family_is_exported_and_counts_match_the_traffic() {
    let ecs = Upstream::start("ecs").await;
    let k8s = Upstream::start("k8s").await;
    let dead = closed_port().await;
    let proxy = Proxy::start(&config(&ecs, &[k8s.addr, dead])).await;

    let sent = 300;
    for _ in 0..sent {
        assert_eq!(get(proxy.addr, "/app/x", &[]).await.status, 200);
    }
    let unrouted = 7;
    for _ in 0..unrouted {
        assert_eq!(get(proxy.addr, "/elsewhere", &[]).await.status, 404);
    }
    // Refused by the framing rules before any routing: still an answer to count.
    let refused = support::raw(
        proxy.addr,
        b"GET /app/x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    )
    .await;
    assert!(refused.starts_with("HTTP/1.1 400"), "{refused}");
    let m = scrape(proxy.admin).await;

    for (name, kind) in FAMILIES {
        assert!(
            m.text.contains(&format!("# TYPE {name} {kind}\n")),
            "{name} ({kind}) missing from\n{}",
            m.text
        );
    }
    // Requests by route, pool and code; the unrouted ones on their own.
    let (to_ecs, to_k8s) = (ecs.hits() as f64, k8s.hits() as f64);
    assert_eq!(to_ecs + to_k8s, sent as f64);
    let app_ecs = [("route", "app"), ("pool", "ecs")];
    let app_k8s = [("route", "app"), ("pool", "k8s")];
    assert_eq!(
        m.value(
            "cutover_requests_total",
            &[("route", "app"), ("pool", "ecs"), ("code", "200")]
        ),
        to_ecs
    );
    assert_eq!(
        m.value(
            "cutover_requests_total",
            &[("route", "app"), ("pool", "k8s"), ("code", "200")]
        ),
        to_k8s
    );
    assert_eq!(
        m.value(
            "cutover_requests_total",
            &[("route", "none"), ("pool", "none"), ("code", "404")]
        ),
        unrouted as f64
    );
    assert_eq!(
        m.value(
            "cutover_requests_total",
            &[("route", "none"), ("pool", "none"), ("code", "400")]
        ),
        1.0
    );
    assert_eq!(
        m.count("cutover_request_duration_seconds", &app_ecs),
        to_ecs
    );
    assert_eq!(
        m.count("cutover_request_duration_seconds", &app_k8s),
        to_k8s
    );
    let buckets: Vec<f64> = m
        .histogram("cutover_request_duration_seconds", &app_ecs)
        .iter()
        .map(|b| b.0)
        .collect();
    assert_eq!(buckets, BUCKETS, "the buckets of DESIGN's table");

    // Attempts per backend: each live one counted what it answered; the dead one
    // only failed to connect (each of those retried elsewhere), with no latency.
    let ecs_b = ecs.addr.to_string();
    let k8s_b = k8s.addr.to_string();
    let dead_b = dead.to_string();
    for (pool, b, hits) in [("ecs", &ecs_b, to_ecs), ("k8s", &k8s_b, to_k8s)] {
        let labels = [("pool", pool), ("backend", b.as_str())];
        assert_eq!(m.count("cutover_upstream_duration_seconds", &labels), hits);
        let with = [labels[0], labels[1], ("outcome", "200")];
        assert_eq!(m.value("cutover_upstream_requests_total", &with), hits);
        assert_eq!(m.sum("cutover_upstream_requests_total", &labels), hits);
        assert_eq!(m.value("cutover_backend_up", &labels), 1.0);
        assert_eq!(m.value("cutover_backend_effective_weight", &labels), 1.0);
    }
    let dead_labels = [("pool", "k8s"), ("backend", dead_b.as_str())];
    let refused = m.value(
        "cutover_upstream_requests_total",
        &[
            ("pool", "k8s"),
            ("backend", &dead_b),
            ("outcome", "connect_error"),
        ],
    );
    assert!(
        refused >= 1.0,
        "the dead backend's connect errors: {refused}"
    );
    assert_eq!(
        m.sum("cutover_upstream_requests_total", &dead_labels),
        refused
    );
    assert_eq!(
        m.count("cutover_upstream_duration_seconds", &dead_labels),
        0.0
    );

    // The split and the config.
    assert_eq!(m.value("cutover_route_split_weight", &app_ecs), 70.0);
    assert_eq!(m.value("cutover_route_split_weight", &app_k8s), 30.0);
    assert_eq!(m.value("cutover_pool_effective_weight", &app_ecs), 70.0);
    assert_eq!(m.value("cutover_config_generation", &[]), 1.0);
    assert_eq!(
        m.value("cutover_config_reloads_total", &[("result", "success")]),
        0.0
    );
    assert_eq!(
        m.value("cutover_config_reloads_total", &[("result", "failure")]),
        0.0
    );
    let loaded = m.value("cutover_config_last_reload_success_timestamp_seconds", &[]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!(
        (now - 60.0..=now).contains(&loaded),
        "loaded at {loaded}, now {now}"
    );
    assert_eq!(m.value("cutover_inflight_requests", &[]), 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_attempts_are_labelled_by_outcome() {
    let good = Upstream::start("good").await;
    let (reset, reset_conns) = RawUpstream::Reset.start().await;
    let (garbage, _) = RawUpstream::Garbage.start().await;
    let (silent, _) = RawUpstream::Silent.start().await;
    let (failing, _) = RawUpstream::Script {
        answer: b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n",
        close: false,
    }
    .start()
    .await;
    // A reset is retried on the pool's other backend; the rest fail the request.
    let proxy = Proxy::start(&format!(
        "[limits]\nretries = 1\nresponse_timeout = \"300ms\"\n\
         [pools.retried]\nbackends = [\"{reset}\", \"{}\"]\neject = {{ consecutive_failures = 1000 }}\n\
         [pools.garbage]\nbackends = [\"{garbage}\"]\n\
         [pools.silent]\nbackends = [\"{silent}\"]\n\
         [pools.failing]\nbackends = [\"{failing}\"]\n\
         [[routes]]\nname = \"retried\"\npath_prefix = \"/retried\"\nsplit = {{ retried = 1 }}\n\
         [[routes]]\nname = \"garbage\"\npath_prefix = \"/garbage\"\nsplit = {{ garbage = 1 }}\n\
         [[routes]]\nname = \"silent\"\npath_prefix = \"/silent\"\nsplit = {{ silent = 1 }}\n\
         [[routes]]\nname = \"failing\"\npath_prefix = \"/failing\"\nsplit = {{ failing = 1 }}\n",
        good.addr
    ))
    .await;
    let n = 40;
    for _ in 0..n {
        assert_eq!(get(proxy.addr, "/retried", &[]).await.status, 200);
    }
    assert_eq!(get(proxy.addr, "/garbage", &[]).await.status, 502);
    assert_eq!(get(proxy.addr, "/silent", &[]).await.status, 504);
    assert_eq!(get(proxy.addr, "/failing", &[]).await.status, 500);

    let m = scrape(proxy.admin).await;
    let resets = reset_conns.load(std::sync::atomic::Ordering::SeqCst) as f64;
    assert!(
        resets >= 1.0,
        "some requests tried the resetting backend first"
    );
    let outcome = |pool: &str, backend: SocketAddr, outcome: &str| {
        m.value(
            "cutover_upstream_requests_total",
            &[
                ("pool", pool),
                ("backend", &backend.to_string()),
                ("outcome", outcome),
            ],
        )
    };
    // Every request that met the reset was tried again: both attempts are counted.
    assert_eq!(outcome("retried", reset, "reset"), resets);
    assert_eq!(outcome("retried", good.addr, "200"), n as f64);
    assert_eq!(
        m.value(
            "cutover_requests_total",
            &[("route", "retried"), ("pool", "retried"), ("code", "200")]
        ),
        n as f64
    );
    assert_eq!(outcome("garbage", garbage, "bad_response"), 1.0);
    assert_eq!(outcome("silent", silent, "timeout"), 1.0);
    let silent_buckets = m.histogram(
        "cutover_upstream_duration_seconds",
        &[("pool", "silent"), ("backend", &silent.to_string())],
    );
    let under = |bound: f64| {
        silent_buckets
            .iter()
            .find(|b| b.0 == bound)
            .map_or(0.0, |b| b.1)
    };
    let count = silent_buckets.last().map_or(0.0, |b| b.1);
    assert_eq!(
        (under(0.25), count),
        (0.0, 1.0),
        "the 300 ms timeout as its latency"
    );
    assert_eq!(outcome("failing", failing, "500"), 1.0);
    for (route, code) in [("garbage", "502"), ("silent", "504"), ("failing", "500")] {
        assert_eq!(
            m.value(
                "cutover_requests_total",
                &[("route", route), ("pool", route), ("code", code)]
            ),
            1.0,
            "{route}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_removed_backend_loses_its_series_and_a_kept_one_keeps_counting() {
    let ecs = Upstream::start("ecs").await;
    let k8s_a = Upstream::start("k8s").await;
    let k8s_b = Upstream::start("k8s").await;
    let proxy = Proxy::start(&config(&ecs, &[k8s_a.addr, k8s_b.addr])).await;
    for _ in 0..100 {
        get(proxy.addr, "/app/", &[]).await;
    }
    let before = scrape(proxy.admin).await;
    let backends = before.label_values("cutover_upstream_requests_total", "backend");
    assert!(backends.contains(&k8s_b.addr.to_string()), "{backends:?}");
    let a = k8s_a.addr.to_string();
    let kept = [("pool", "k8s"), ("backend", a.as_str())];
    let a_before = before.count("cutover_upstream_duration_seconds", &kept);
    let k8s_code = [("route", "app"), ("pool", "k8s"), ("code", "200")];
    let route_before = before.value("cutover_requests_total", &k8s_code);
    assert_eq!(route_before, (k8s_a.hits() + k8s_b.hits()) as f64);
    assert_eq!(a_before, k8s_a.hits() as f64);

    // k8s_b leaves the config, ecs leaves the route; a weight changes.
    let generation = proxy
        .try_reload(&format!(
            "[pools.k8s]\nbackends = [\"{}\"]\n\
             [[routes]]\nname = \"app\"\npath_prefix = \"/app/\"\nsplit = {{ k8s = 5 }}\n",
            k8s_a.addr
        ))
        .await
        .expect("valid");
    let after = scrape(proxy.admin).await;
    for family in [
        "cutover_upstream_requests_total",
        "cutover_upstream_duration_seconds",
        "cutover_backend_up",
    ] {
        let left = after.label_values(family, "backend");
        assert_eq!(left, BTreeSet::from([k8s_a.addr.to_string()]), "{family}");
    }
    assert_eq!(
        after.label_values("cutover_requests_total", "pool"),
        BTreeSet::from(["k8s".to_owned()])
    );
    // One reload, or two when the watcher saw the file before the explicit reload
    // was asked: every success is a generation.
    assert_eq!(
        after.value("cutover_config_generation", &[]),
        generation as f64
    );
    assert_eq!(
        after.value("cutover_config_reloads_total", &[("result", "success")]),
        (generation - 1) as f64
    );
    assert_eq!(
        after.count("cutover_upstream_duration_seconds", &kept),
        a_before,
        "kept across the reload"
    );

    for _ in 0..10 {
        assert_eq!(get(proxy.addr, "/app/", &[]).await.upstream(), "k8s");
    }
    let later = scrape(proxy.admin).await;
    assert_eq!(
        later.count("cutover_upstream_duration_seconds", &kept),
        a_before + 10.0
    );
    assert_eq!(
        later.value("cutover_requests_total", &k8s_code),
        route_before + 10.0,
        "the (route, pool) series went on from where it was"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_refused_before_routing_are_exported_on_their_own() {
    let ecs = Upstream::start("ecs").await;
    let proxy = Proxy::start(&config(&ecs, &[ecs.addr])).await;
    let refused = support::raw(proxy.addr, b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").await;
    assert!(refused.starts_with("HTTP/1.1 400"), "{refused}");
    let m = scrape(proxy.admin).await;
    let labels = [("route", "none"), ("pool", "none"), ("code", "400")];
    assert_eq!(
        m.value("cutover_requests_total", &labels),
        1.0,
        "{}",
        m.text
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_its_client_gave_up_counts_as_499() {
    use http_body_util::Full;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let ecs = Upstream::start("ecs").await;
    let proxy = Proxy::start(&format!(
        "[pools.ecs]\nbackends = [\"{}\"]\n[[routes]]\nname = \"r\"\nsplit = {{ ecs = 1 }}\n",
        ecs.addr
    ))
    .await;
    let stream = tokio::net::TcpStream::connect(proxy.addr)
        .await
        .expect("connect");
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    let conn = tokio::spawn(conn);
    let req = http::Request::get("http://example.test/slow/10000")
        .body(Full::new(bytes::Bytes::new()))
        .expect("request");
    let pending = tokio::spawn(async move { send.send_request(req).await });
    support::eventually("the backend has the request", async || ecs.hits() == 1).await;
    // The client goes away with its request unanswered.
    pending.abort();
    conn.abort();
    let gave_up = [("route", "r"), ("pool", "ecs"), ("code", "499")];
    support::eventually("the request counted as 499", async || {
        scrape(proxy.admin)
            .await
            .value("cutover_requests_total", &gave_up)
            == 1.0
    })
    .await;
    let m = scrape(proxy.admin).await;
    assert_eq!(
        m.count(
            "cutover_request_duration_seconds",
            &[("route", "r"), ("pool", "ecs")]
        ),
        1.0
    );
}
