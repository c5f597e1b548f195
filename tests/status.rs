//! `/status` after real traffic and reloads: the document against the config it was
//! built from and the requests sent.

mod support;

use std::collections::BTreeMap;

use support::{get, Proxy, RawUpstream, Upstream};

#[tokio::test(flavor = "multi_thread")]
async fn status_matches_the_config_and_the_traffic() {
    let ecs = Upstream::start("ecs").await;
    let (failing, _) = RawUpstream::Script {
        answer: b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
        close: false,
    }
    .start()
    .await;
    let toml = format!(
        "[pools.ecs]\nbackends = [{{ addr = \"{}\", weight = 3 }}]\n\
         [pools.k8s]\nbackends = [\"{failing}\"]\n\
         [[routes]]\nname = \"app\"\nhosts = [\"api.example.test\", \"*.example.test\"]\n\
         path_prefix = \"/app/\"\nsplit = {{ ecs = 60, k8s = 40 }}\noverride = \"header:x-pool\"\n",
        ecs.addr
    );
    let proxy = Proxy::start(&toml).await;
    let host = ("host", "api.example.test");
    for _ in 0..30 {
        assert_eq!(
            get(proxy.addr, "/app/", &[host, ("x-pool", "ecs")])
                .await
                .status,
            200
        );
    }
    for _ in 0..10 {
        assert_eq!(
            get(proxy.addr, "/app/", &[host, ("x-pool", "k8s")])
                .await
                .status,
            503
        );
    }

    let s = status(&proxy).await;
    assert_eq!(s.generation, 1);
    assert_eq!(s.config_path, proxy.config_path.display().to_string());
    assert!(s.loaded_at.ends_with('Z'), "{}", s.loaded_at);
    assert_eq!(s.last_reload_error, None);
    assert_eq!(s.window_seconds, 60);
    let [route] = &s.routes[..] else {
        panic!("one route: {:?}", s.routes)
    };
    assert_eq!(route.name, "app");
    assert_eq!(route.hosts, ["api.example.test", "*.example.test"]);
    assert_eq!(route.path_prefix, "/app");
    assert_eq!(
        route.split,
        BTreeMap::from([("ecs".into(), 60), ("k8s".into(), 40)])
    );
    assert_eq!(
        route.effective_split,
        BTreeMap::from([("ecs".into(), 60.0), ("k8s".into(), 40.0)])
    );
    assert_eq!(route.traffic["ecs"].requests, 30);
    assert_eq!(route.traffic["k8s"].requests, 10);
    assert_eq!(route.traffic["k8s"].error_ratio, 1.0);

    let pools: Vec<&str> = s.pools.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(pools, ["ecs", "k8s"]);
    let (ecs_pool, k8s_pool) = (&s.pools[0], &s.pools[1]);
    assert_eq!(ecs_pool.window.requests, 30);
    assert!(ecs_pool.window.request_rate > 0.0);
    assert_eq!(ecs_pool.window.error_ratio, 0.0);
    let (p50, p95, p99) = (
        ecs_pool.window.p50,
        ecs_pool.window.p95,
        ecs_pool.window.p99,
    );
    assert!(
        matches!((p50, p95, p99), (Some(a), Some(b), Some(c)) if 0.0 < a && a <= b && b <= c && c <= 30.0),
        "{p50:?} {p95:?} {p99:?}"
    );
    assert_eq!(k8s_pool.window.error_ratio, 1.0);
    let [b] = &ecs_pool.backends[..] else {
        panic!("{:?}", ecs_pool.backends)
    };
    assert_eq!(b.addr, ecs.addr.to_string());
    assert_eq!(
        (b.state.as_str(), b.weight, b.effective_weight),
        ("ready", 3, 3.0)
    );
    assert_eq!((b.in_flight, b.window.requests), (0, 30));
    assert_eq!(k8s_pool.backends[0].window.requests, 10);
    assert_eq!(k8s_pool.backends[0].window.error_ratio, 1.0);

    // A failed reload is reported and changes nothing; the next good one clears it.
    let err = proxy.try_reload("[pools.ecs]\nbackends = []\n").await;
    assert!(err.is_err());
    let s = status(&proxy).await;
    assert_eq!(s.generation, 1);
    let error = s.last_reload_error.expect("the failed reload's errors");
    assert!(error.contains("cutover.toml:"), "names the file: {error}");
    // Counted once, or twice when the watcher tried the file before the explicit
    // reload was asked.
    let metrics = get(proxy.admin, "/metrics", &[]).await.body;
    assert!(
        metrics.lines().any(|l| {
            l.strip_prefix(r#"cutover_config_reloads_total{result="failure"} "#)
                .is_some_and(|n| n == "1" || n == "2")
        }),
        "the failure is counted: {metrics}"
    );
    let generation = proxy.try_reload(&toml).await.expect("valid");
    let s = status(&proxy).await;
    assert!(generation >= 2);
    assert_eq!((s.generation, s.last_reload_error), (generation, None));
    assert_eq!(s.pools[0].window.requests, 30, "kept across the reload");
}

async fn status(proxy: &Proxy) -> cutover::status::Status {
    let r = get(proxy.admin, "/status", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body))
}
