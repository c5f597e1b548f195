//! The split between pools: ratios, weight 0, sticky keys, override, fallback.

mod support;

use support::{eventually, get, Proxy, Upstream};

async fn pools() -> (Upstream, Upstream) {
    (Upstream::start("ecs").await, Upstream::start("k8s").await)
}

fn two_pools(ecs: &Upstream, k8s: &Upstream, route: &str) -> String {
    format!(
        "[pools.ecs]\nbackends = [\"{}\"]\n[pools.k8s]\nbackends = [\"{}\"]\n[[routes]]\nname = \"r\"\n{route}\n",
        ecs.addr, k8s.addr
    )
}

async fn count(proxy: &Proxy, n: usize, headers: &[(&str, &str)]) -> (usize, usize) {
    let (mut ecs, mut k8s) = (0, 0);
    for _ in 0..n {
        let r = get(proxy.addr, "/", headers).await;
        assert_eq!(r.status, 200, "{}", r.body);
        match r.upstream() {
            "ecs" => ecs += 1,
            "k8s" => k8s += 1,
            other => panic!("unexpected upstream {other:?}"),
        }
    }
    (ecs, k8s)
}

#[tokio::test(flavor = "multi_thread")]
async fn weighted_split_follows_the_ratio() {
    let (ecs, k8s) = pools().await;
    let proxy = Proxy::start(&two_pools(&ecs, &k8s, "split = { ecs = 80, k8s = 20 }")).await;
    let n = 1000;
    let (_, to_k8s) = count(&proxy, n, &[]).await;
    // Binomial(1000, 0.2): sd ~ 12.6; 5 sd either side.
    assert!((137..=263).contains(&to_k8s), "k8s got {to_k8s} of {n}");
}

#[tokio::test(flavor = "multi_thread")]
async fn weight_zero_gets_no_traffic() {
    let (ecs, k8s) = pools().await;
    let proxy = Proxy::start(&two_pools(&ecs, &k8s, "split = { ecs = 100, k8s = 0 }")).await;
    let (to_ecs, to_k8s) = count(&proxy, 200, &[]).await;
    assert_eq!((to_ecs, to_k8s), (200, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn sticky_key_keeps_its_pool_and_ramping_only_moves_keys_in() {
    let (ecs, k8s) = pools().await;
    let route = |w: u32| format!("split = {{ ecs = 100, k8s = {w} }}\nsticky = \"header:x-user\"");
    let proxy = Proxy::start(&two_pools(&ecs, &k8s, &route(10))).await;
    let users: Vec<String> = (0..200).map(|i| format!("user-{i}")).collect();
    let mut placed = Vec::new();
    for u in &users {
        let first = get(proxy.addr, "/", &[("x-user", u)])
            .await
            .upstream()
            .to_owned();
        for _ in 0..3 {
            assert_eq!(
                get(proxy.addr, "/", &[("x-user", u)]).await.upstream(),
                first,
                "{u} moved"
            );
        }
        placed.push(first);
    }
    let mut in_k8s = placed.iter().filter(|p| *p == "k8s").count();
    assert!(
        in_k8s > 0 && in_k8s < 60,
        "k8s holds {in_k8s} of 200 at 10/110"
    );
    for w in [50, 100, 400] {
        proxy.reload(&two_pools(&ecs, &k8s, &route(w))).await;
        let mut now = Vec::new();
        for (u, before) in users.iter().zip(&placed) {
            let p = get(proxy.addr, "/", &[("x-user", u)])
                .await
                .upstream()
                .to_owned();
            assert!(
                p == *before || p == "k8s",
                "{u} moved {before} -> {p} while k8s was raised to {w}"
            );
            now.push(p);
        }
        let grown = now.iter().filter(|p| *p == "k8s").count();
        assert!(grown >= in_k8s, "k8s shrank from {in_k8s} to {grown}");
        in_k8s = grown;
        placed = now;
    }
    assert!(
        in_k8s > 150,
        "at 400/500 k8s should hold most keys, holds {in_k8s}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sticky_by_cookie_and_without_key_is_random() {
    let (ecs, k8s) = pools().await;
    let proxy = Proxy::start(&two_pools(
        &ecs,
        &k8s,
        "split = { ecs = 50, k8s = 50 }\nsticky = \"cookie:uid\"",
    ))
    .await;
    let first = get(proxy.addr, "/", &[("cookie", "a=1; uid=u-7")])
        .await
        .upstream()
        .to_owned();
    for _ in 0..20 {
        assert_eq!(
            get(proxy.addr, "/", &[("cookie", "uid=u-7; b=2")])
                .await
                .upstream(),
            first
        );
    }
    let (e, k) = count(&proxy, 100, &[]).await;
    assert!(
        e > 10 && k > 10,
        "no key: random pick expected, got {e}/{k}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn override_names_any_pool_of_the_route() {
    let (ecs, k8s) = pools().await;
    let proxy = Proxy::start(&two_pools(
        &ecs,
        &k8s,
        "split = { ecs = 100, k8s = 0 }\noverride = \"header:x-cutover-pool\"\nsticky = \"header:x-user\"",
    ))
    .await;
    let (_, k) = count(&proxy, 20, &[("x-cutover-pool", "k8s"), ("x-user", "u1")]).await;
    assert_eq!(k, 20, "override beats sticky and weight 0");
    let (e, _) = count(&proxy, 20, &[("x-cutover-pool", "nonexistent")]).await;
    assert_eq!(e, 20, "an unknown pool is ignored");
}

#[tokio::test(flavor = "multi_thread")]
async fn override_to_a_pool_without_ready_backends_is_503() {
    let (ecs, k8s) = pools().await;
    k8s.ready_status
        .store(503, std::sync::atomic::Ordering::SeqCst);
    let text = format!(
        "[pools.ecs]\nbackends = [\"{}\"]\n[pools.k8s]\nbackends = [\"{}\"]\nwarmup = {{ path = \"/ready\", interval = \"50ms\" }}\n\
         [[routes]]\nname = \"r\"\nsplit = {{ ecs = 50, k8s = 50 }}\noverride = \"cookie:pool\"\n",
        ecs.addr, k8s.addr
    );
    let proxy = Proxy::start(&text).await;
    let r = get(proxy.addr, "/", &[("cookie", "pool=k8s")]).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("x-cutover-error"), Some("no_ready_backend"));
}

fn warming_k8s(ecs: &Upstream, k8s: &Upstream, fallback: bool) -> String {
    format!(
        "[pools.ecs]\nbackends = [\"{}\"]\n[pools.k8s]\nbackends = [\"{}\"]\nwarmup = {{ path = \"/ready\", interval = \"50ms\", healthy = 1 }}\n\
         [[routes]]\nname = \"r\"\nsplit = {{ ecs = 50, k8s = 50 }}\nfallback = {fallback}\n",
        ecs.addr, k8s.addr
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn fallback_on_moves_an_unready_pools_share_to_the_others() {
    let (ecs, k8s) = pools().await;
    k8s.ready_status
        .store(503, std::sync::atomic::Ordering::SeqCst);
    let proxy = Proxy::start(&warming_k8s(&ecs, &k8s, true)).await;
    let (e, k) = count(&proxy, 50, &[]).await;
    assert_eq!(
        (e, k),
        (50, 0),
        "a warming pool gets nothing; ecs absorbs its share"
    );
    k8s.ready_status
        .store(200, std::sync::atomic::Ordering::SeqCst);
    eventually("k8s becomes ready and takes traffic", async || {
        get(proxy.addr, "/", &[]).await.upstream() == "k8s"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fallback_off_gives_an_unready_pools_share_503() {
    let (ecs, k8s) = pools().await;
    k8s.ready_status
        .store(503, std::sync::atomic::Ordering::SeqCst);
    let proxy = Proxy::start(&warming_k8s(&ecs, &k8s, false)).await;
    let mut errors = 0;
    for _ in 0..200 {
        let r = get(proxy.addr, "/", &[]).await;
        if r.status == 503 {
            assert_eq!(r.header("x-cutover-error"), Some("no_ready_backend"));
            errors += 1;
        } else {
            assert_eq!(r.upstream(), "ecs");
        }
    }
    assert!(
        (50..=150).contains(&errors),
        "about half should be 503, got {errors}"
    );
    assert_eq!(k8s.hits(), 0, "a warming backend never sees a request");
}

#[tokio::test(flavor = "multi_thread")]
async fn ramp_up_climbs_a_raised_weight_and_a_rollback_is_immediate() {
    let (ecs, k8s) = pools().await;
    let route = |w: u32| format!("split = {{ ecs = 100, k8s = {w} }}\nramp_up = \"4s\"");
    let proxy = Proxy::start(&two_pools(&ecs, &k8s, &route(0))).await;
    proxy.reload(&two_pools(&ecs, &k8s, &route(100))).await;
    let started = std::time::Instant::now();
    let (_, early) = count(&proxy, 100, &[]).await;
    // At most ~0.5 s into a 4 s ramp k8s weighs <= 12.5 against 100: far from half.
    if started.elapsed() < std::time::Duration::from_millis(500) {
        assert!(early < 30, "k8s got {early} of 100 right after the raise");
    }
    eventually("k8s climbs to about half", async || {
        count(&proxy, 100, &[]).await.1 >= 35
    })
    .await;
    proxy.reload(&two_pools(&ecs, &k8s, &route(0))).await;
    assert_eq!(
        count(&proxy, 100, &[]).await,
        (100, 0),
        "a rollback applies at once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sticky_by_client_ip_keeps_one_client_on_one_pool() {
    let (ecs, k8s) = pools().await;
    let proxy = Proxy::start(&two_pools(
        &ecs,
        &k8s,
        "split = { ecs = 50, k8s = 50 }\nsticky = \"ip\"",
    ))
    .await;
    let (e, k) = count(&proxy, 40, &[]).await;
    assert!(
        e == 40 || k == 40,
        "one client IP must stay on one pool, got {e}/{k}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_overridden_request_is_never_served_by_another_pool() {
    let ecs = Upstream::start("ecs").await;
    let dead = support::upstream::closed_port().await;
    let proxy = Proxy::start(&format!(
        "[pools.ecs]\nbackends = [\"{}\"]\n[pools.k8s]\nbackends = [\"{dead}\"]\n\
         [[routes]]\nname = \"r\"\nsplit = {{ ecs = 50, k8s = 50 }}\noverride = \"header:x-cutover-pool\"\n",
        ecs.addr
    ))
    .await;
    let r = get(proxy.addr, "/", &[("x-cutover-pool", "k8s")]).await;
    assert_eq!(r.status, 502, "{}", r.body);
    assert_eq!(r.header("x-cutover-error"), Some("connect_failed"));
    assert_eq!(ecs.hits(), 0);
}
