//! `cutover status`, the real binary against a live cutover's admin listener.

mod support;

use std::process::Output;

use support::process::BIN;
use support::{get, Proxy, Upstream};
use tokio::process::Command;

/// Two routes over two pools; ecs has two backends.
async fn proxy() -> (Proxy, [Upstream; 3]) {
    let ups = [
        Upstream::start("ecs").await,
        Upstream::start("ecs").await,
        Upstream::start("k8s").await,
    ];
    let toml = format!(
        "[pools.ecs]\nbackends = [\"{}\", {{ addr = \"{}\", weight = 2 }}]\n\
         [pools.k8s]\nbackends = [\"{}\"]\n\
         [[routes]]\nname = \"ad-api\"\nhosts = [\"api.example.test\"]\npath_prefix = \"/ad/\"\n\
         split = {{ ecs = 90, k8s = 10 }}\n\
         [[routes]]\nname = \"everything-else\"\nsplit = {{ ecs = 1 }}\n",
        ups[0].addr, ups[1].addr, ups[2].addr
    );
    (Proxy::start(&toml).await, ups)
}

/// Runs `cutover status ARGS...` to its end.
async fn status(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("status")
        .args(args)
        .env_remove("NO_COLOR")
        .output()
        .await
        .expect("run cutover status")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_table_names_every_route_pool_and_backend_in_80_columns() {
    let (proxy, ups) = proxy().await;
    for _ in 0..20 {
        let r = get(proxy.addr, "/ad/x", &[("host", "api.example.test")]).await;
        assert_eq!(r.status, 200);
        assert_eq!(get(proxy.addr, "/", &[]).await.status, 200);
    }
    let admin = format!("http://{}", proxy.admin);
    let out = status(&["--admin", &admin]).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    for name in [
        "ad-api",
        "everything-else",
        "api.example.test",
        "ecs",
        "k8s",
    ] {
        assert!(stdout.contains(name), "{name} missing:\n{stdout}");
    }
    for up in &ups {
        assert!(
            stdout.contains(&up.addr.to_string()),
            "{}:\n{stdout}",
            up.addr
        );
    }
    for line in stdout.lines() {
        assert!(line.chars().count() <= 80, "too wide: {line}");
    }
    assert!(!stdout.contains('\x1b'), "no colour on a pipe:\n{stdout}");
    // The traffic shows: ecs answered everything-else's 20 requests and most of ad-api's.
    let ecs = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("ecs "))
        .expect("the route's ecs line");
    assert!(ecs.contains("90.0%") && !ecs.ends_with('-'), "{ecs}");

    // Without the scheme, the same table.
    let bare = status(&["--admin", &proxy.admin.to_string()]).await;
    assert_eq!(bare.status.code(), Some(0), "{}", text(&bare.stderr));
    assert!(text(&bare.stdout).contains("everything-else"));
}

#[tokio::test(flavor = "multi_thread")]
async fn json_is_the_status_document_as_served() {
    let (proxy, ups) = proxy().await;
    let out = status(&["--admin", &format!("http://{}", proxy.admin), "--json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: cutover::status::Status =
        serde_json::from_slice(&out.stdout).expect("stdout is the /status document");
    assert_eq!(doc.generation, 1);
    assert_eq!(doc.config_path, proxy.config_path.display().to_string());
    let pools: Vec<(&str, Vec<&str>)> = doc
        .pools
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.backends.iter().map(|b| b.addr.as_str()).collect(),
            )
        })
        .collect();
    let (a, b, c) = (
        ups[0].addr.to_string(),
        ups[1].addr.to_string(),
        ups[2].addr.to_string(),
    );
    assert_eq!(
        pools,
        [
            ("ecs", vec![a.as_str(), b.as_str()]),
            ("k8s", vec![c.as_str()])
        ]
    );
    assert_eq!(doc.pools[0].backends[1].weight, 2);
    let ad = &doc.routes[0];
    assert_eq!(ad.name, "ad-api");
    assert_eq!(
        ad.split
            .iter()
            .map(|(p, w)| (p.as_str(), *w))
            .collect::<Vec<_>>(),
        [("ecs", 90), ("k8s", 10)]
    );
    assert_eq!(doc.routes[1].name, "everything-else");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_address_is_one_line_on_stderr_and_exit_1() {
    // A port that was free a moment ago and that nothing listens on now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let out = status(&["--admin", &format!("http://{addr}")]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&addr), "{stderr}");
    assert!(stderr.starts_with("cutover status: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_zero_is_refused() {
    let out = status(&["--watch", "0"]).await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "a usage error, as clap reports them"
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains("--watch"), "{stderr}");
    assert!(out.stdout.is_empty());
}
