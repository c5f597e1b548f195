//! Reloads: what a new config file changes and what it must leave alone. Each test
//! writes a real file, renames it over the old one, and reloads through the one reload
//! task, as SIGHUP does (the watcher may get there first: the same content is one
//! reload either way).

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use support::{get, Proxy, Upstream};

fn pools(ecs: &Upstream, k8s: &Upstream, split: &str) -> String {
    format!(
        "[pools.ecs]\nbackends = [\"{}\"]\n[pools.k8s]\nbackends = [\"{}\"]\n\
         [[routes]]\nname = \"r\"\nsplit = {split}\n",
        ecs.addr, k8s.addr
    )
}

/// Which pool answers every one of `n` requests, or `None` if they differ.
async fn all_from(proxy: &Proxy, n: usize) -> Option<String> {
    let mut seen: Option<String> = None;
    for _ in 0..n {
        let r = get(proxy.addr, "/", &[]).await;
        let up = r.upstream().to_owned();
        match &seen {
            Some(s) if *s != up => return None,
            _ => seen = Some(up),
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_file_changes_nothing_and_the_next_good_one_applies() {
    let ecs = Upstream::start("ecs").await;
    let k8s = Upstream::start("k8s").await;
    let proxy = Proxy::start(&pools(&ecs, &k8s, "{ ecs = 1 }")).await;
    assert_eq!(proxy.generation(), 1);
    for bad in [
        // A syntax error, a semantic one, and a typo in a key.
        "[pools.ecs\nbackends = []\n".to_owned(),
        pools(&ecs, &k8s, "{ k9s = 1 }"),
        pools(&ecs, &k8s, "{ k8s = 1 }").replace("[[routes]]", "[[routes]]\nsplitt = 1"),
    ] {
        let err = proxy.try_reload(&bad).await.expect_err("invalid");
        assert!(err.errors.iter().all(|d| d.line > 0), "{err}");
        assert_eq!(proxy.generation(), 1);
        assert_eq!(all_from(&proxy, 5).await.as_deref(), Some("ecs"));
    }
    let generation = proxy
        .try_reload(&pools(&ecs, &k8s, "{ k8s = 1 }"))
        .await
        .expect("valid");
    assert!(generation >= 2, "applied: {generation}");
    assert_eq!(proxy.generation(), generation);
    assert_eq!(all_from(&proxy, 5).await.as_deref(), Some("k8s"));
}

/// An upstream that counts the TCP connections it accepted (and serves them all).
async fn counting(name: &'static str) -> (Upstream, Arc<AtomicUsize>) {
    let up = Upstream::start(name).await;
    let accepted = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let front: SocketAddr = listener.local_addr().expect("addr");
    let back = up.addr;
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut server) = tokio::net::TcpStream::connect(back).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    (Upstream { addr: front, ..up }, accepted)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_weight_change_keeps_backends_warm_and_their_connections_open() {
    let (ecs, ecs_conns) = counting("ecs").await;
    let (k8s, _) = counting("k8s").await;
    // A long probe interval: a backend warmed again would get no request for 30 s.
    let warm = "warmup = { path = \"/ready\", interval = \"30s\", healthy = 1 }\n";
    let config = |split: &str| {
        pools(&ecs, &k8s, split).replace("\n[[routes]]", &format!("\n{warm}[[routes]]"))
    };
    // One worker: idle backend connections are kept per worker, and a request landing
    // on a worker that has none yet would open one whatever the reload did.
    let one = |split: &str| format!("[runtime]\nworkers = 1\n{}", config(split));
    let proxy = Proxy::start(&one("{ ecs = 100, k8s = 0 }")).await;
    support::eventually("ecs is ready", async || {
        get(proxy.addr, "/", &[]).await.status == 200
    })
    .await;
    for _ in 0..5 {
        assert_eq!(get(proxy.addr, "/", &[]).await.upstream(), "ecs");
    }
    let opened = ecs_conns.load(Ordering::SeqCst);
    for split in ["{ ecs = 50, k8s = 0 }", "{ ecs = 7, k8s = 0 }"] {
        proxy.reload(&one(split)).await;
        // At once, with no probe in between: still ready, on the connections it had.
        for _ in 0..5 {
            let r = get(proxy.addr, "/", &[]).await;
            assert_eq!((r.status.as_u16(), r.upstream()), (200, "ecs"));
        }
    }
    assert_eq!(
        ecs_conns.load(Ordering::SeqCst),
        opened,
        "backend connections were reopened"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reloads_asked_for_at_once_apply_the_file_once() {
    let ecs = Upstream::start("ecs").await;
    let k8s = Upstream::start("k8s").await;
    let proxy = Proxy::start(&pools(&ecs, &k8s, "{ ecs = 1 }")).await;
    proxy.write_config(&pools(&ecs, &k8s, "{ k8s = 1 }"));
    let running = proxy.running();
    let (a, b, c) = tokio::join!(running.reload(), running.reload(), running.reload());
    let mut generations = [a.expect("a"), b.expect("b"), c.expect("c")];
    generations.sort_unstable();
    // Each ask is answered by a whole reload that read the file after it was asked
    // (one may answer several; the watcher may add one): the last is live.
    let live = proxy.generation();
    assert!(generations[0] >= 2, "{generations:?}");
    assert_eq!(generations[2], live);
    assert!(
        live <= 5,
        "at most one reload per ask and the watcher's: {live}"
    );
    assert_eq!(all_from(&proxy, 10).await.as_deref(), Some("k8s"));
}
