//! The config file watched: every way a file gets replaced takes effect by itself
//! within 2 s, an unchanged rewrite is no reload, a bad file keeps the old config, and
//! reloads under load drop nothing.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use support::{get, tempdir, Proxy, Upstream};

fn pools(ecs: &Upstream, k8s: &Upstream, split: &str) -> String {
    format!(
        "[pools.ecs]\nbackends = [\"{}\"]\n[pools.k8s]\nbackends = [\"{}\"]\n\
         [[routes]]\nname = \"r\"\nsplit = {split}\n",
        ecs.addr, k8s.addr
    )
}

/// Listeners on free ports, as the harness adds them, for configs written here.
const LISTEN: &str = "[listen]\nhttp = [\"127.0.0.1:0\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n\
    [access_log]\nenabled = false\n";

/// Waits at most 2 s (the promise) for the live generation to reach `generation`.
async fn applied_within_2s(proxy: &Proxy, generation: u64, how: &str) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while proxy.generation() < generation {
        assert!(
            Instant::now() < deadline,
            "{how}: not applied within 2 s (generation {})",
            proxy.generation()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn answering(proxy: &Proxy) -> String {
    get(proxy.addr, "/", &[]).await.upstream().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_written_in_place_or_renamed_over_is_applied() {
    let ecs = Upstream::start("ecs").await;
    let k8s = Upstream::start("k8s").await;
    let proxy = Proxy::start(&pools(&ecs, &k8s, "{ ecs = 1 }")).await;

    // An editor's way: a new file renamed over the old one.
    proxy.write_config(&pools(&ecs, &k8s, "{ k8s = 1 }"));
    applied_within_2s(&proxy, 2, "renamed over").await;
    assert_eq!(answering(&proxy).await, "k8s");

    // In place: the same file truncated and written again.
    let text = std::fs::read_to_string(&proxy.config_path).expect("read");
    std::fs::write(
        &proxy.config_path,
        text.replace("{ k8s = 1 }", "{ ecs = 1 }"),
    )
    .expect("write in place");
    applied_within_2s(&proxy, 3, "written in place").await;
    assert_eq!(answering(&proxy).await, "ecs");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configmap_swapping_its_data_symlink_is_applied() {
    let ecs = Upstream::start("ecs").await;
    let k8s = Upstream::start("k8s").await;
    // The layout the kubelet makes: cutover.toml -> ..data/cutover.toml, and ..data ->
    // a timestamped directory, swapped for a new one on every update.
    let dir = tempdir::Dir::new();
    let version = |name: &str, split: &str| -> PathBuf {
        let d = dir.path.join(name);
        std::fs::create_dir(&d).expect("mkdir");
        std::fs::write(
            d.join("cutover.toml"),
            format!("{LISTEN}{}", pools(&ecs, &k8s, split)),
        )
        .expect("write");
        d
    };
    version("..2026_12_05_10_00_00.1", "{ ecs = 1 }");
    symlink("..2026_12_05_10_00_00.1", &dir.path.join("..data"));
    let path = dir.path.join("cutover.toml");
    symlink("..data/cutover.toml", &path);
    let proxy = start_at(&path).await;
    assert_eq!(answering(&proxy).await, "ecs");

    version("..2026_12_05_10_05_00.2", "{ k8s = 1 }");
    let tmp = dir.path.join("..data_tmp");
    symlink("..2026_12_05_10_05_00.2", &tmp);
    std::fs::rename(&tmp, dir.path.join("..data")).expect("swap ..data");
    std::fs::remove_dir_all(dir.path.join("..2026_12_05_10_00_00.1")).expect("old version");
    applied_within_2s(&proxy, 2, "..data swapped").await;
    assert_eq!(answering(&proxy).await, "k8s");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_bytes_again_are_no_reload() {
    let ecs = Upstream::start("ecs").await;
    let k8s = Upstream::start("k8s").await;
    let proxy = Proxy::start(&pools(&ecs, &k8s, "{ ecs = 1 }")).await;
    // Rewritten twice unchanged, then changed: only the change is a reload.
    proxy.write_config(&pools(&ecs, &k8s, "{ ecs = 1 }"));
    let text = std::fs::read_to_string(&proxy.config_path).expect("read");
    std::fs::write(&proxy.config_path, &text).expect("write in place");
    proxy.write_config(&pools(&ecs, &k8s, "{ k8s = 1 }"));
    applied_within_2s(&proxy, 2, "changed").await;
    assert_eq!(answering(&proxy).await, "k8s");
    assert_eq!(proxy.generation(), 2, "one reload for one change");
    // An explicit reload (SIGHUP's path) re-reads the same bytes all the same.
    assert_eq!(proxy.running().reload().await.expect("reload"), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_file_is_reported_and_the_old_config_keeps_serving() {
    let ecs = Upstream::start("ecs").await;
    let k8s = Upstream::start("k8s").await;
    let good = pools(&ecs, &k8s, "{ ecs = 1 }");
    let proxy = Proxy::start(&good).await;
    for (bad, says) in [
        ("[pools.ecs\n".to_owned(), "expected"),
        (
            good.replace("[[routes]]", "[[routes]]\nsplitt = 1"),
            "splitt",
        ),
        (pools(&ecs, &k8s, "{ k9s = 1 }"), "k9s"),
        (
            pools(&ecs, &k8s, "{ ecs = 0, k8s = 0 }"),
            "every split weight at 0",
        ),
    ] {
        proxy.write_config(&bad);
        let status = support::eventually_value("the bad file reported", async || {
            let s: cutover::status::Status =
                serde_json::from_str(&get(proxy.admin, "/status", &[]).await.body).ok()?;
            s.last_reload_error.filter(|e| e.contains(says))
        })
        .await;
        assert!(
            status.contains("cutover.toml:"),
            "file:line:column: {status}"
        );
        assert_eq!(proxy.generation(), 1);
        assert_eq!(answering(&proxy).await, "ecs");
    }
    proxy.write_config(&pools(&ecs, &k8s, "{ k8s = 1 }"));
    applied_within_2s(&proxy, 2, "the next good file").await;
    let s: cutover::status::Status =
        serde_json::from_str(&get(proxy.admin, "/status", &[]).await.body).expect("status");
    assert_eq!(s.last_reload_error, None, "cleared by the good file");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_slow_start_applies_to_a_backend_that_stays() {
    let ecs = Upstream::start("ecs").await;
    let k8s = Upstream::start("k8s").await;
    // Backends there at start are taken as warm; k8s comes later, as a new pod would.
    let only_ecs = format!(
        "[pools.ecs]\nbackends = [\"{}\"]\n[[routes]]\nname = \"r\"\nsplit = {{ ecs = 1 }}\n",
        ecs.addr
    );
    let proxy = Proxy::start(&only_ecs).await;
    let both = pools(&ecs, &k8s, "{ ecs = 1, k8s = 1 }");
    proxy.reload(&both).await;
    let k8s_weight = async || -> f64 {
        let s: cutover::status::Status =
            serde_json::from_str(&get(proxy.admin, "/status", &[]).await.body).expect("status");
        s.pools[1].backends[0].effective_weight
    };
    assert_eq!(k8s_weight().await, 1.0, "no slow start yet");
    // A slow start of an hour: the backend, ready for a moment, is barely into it.
    let slow = both.replace("[pools.k8s]\n", "[pools.k8s]\nslow_start = \"1h\"\n");
    proxy.reload(&slow).await;
    let w = k8s_weight().await;
    assert!(
        (w - 0.1).abs() < 0.01,
        "slow start at its 10 % floor: effective weight {w}"
    );
    // And going back to none ends it.
    proxy.reload(&both).await;
    assert_eq!(k8s_weight().await, 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_reloads_under_load_fail_no_request_and_close_no_tunnel() {
    let ecs = Upstream::start("ecs").await;
    let k8s = Upstream::start("k8s").await;
    let proxy = Proxy::start(&pools(&ecs, &k8s, "{ ecs = 1, k8s = 1 }")).await;
    let mut tunnel = open_tunnel(proxy.addr).await;

    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
            let addr = proxy.addr;
            tokio::spawn(keep_alive_client(addr, stop, sent, failed))
        })
        .collect();
    for i in 0..50u32 {
        // Each file differs from the one before (and from the first).
        let split = format!("{{ ecs = {}, k8s = {} }}", 2 + i % 3, 1 + i % 5);
        let generation = proxy
            .try_reload(&pools(&ecs, &k8s, &split))
            .await
            .expect("valid");
        assert!(generation >= u64::from(i) + 2);
        echo(&mut tunnel, format!("frame {i}").as_bytes()).await;
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.expect("client");
    }
    let sent = sent.load(Ordering::SeqCst);
    assert!(sent > 50, "load ran through the reloads: {sent} requests");
    assert_eq!(failed.load(Ordering::SeqCst), 0, "of {sent} requests");
    echo(&mut tunnel, b"still open").await;
}

/// GETs over one keep-alive connection until `stop`; a failure is any non-200 or a
/// broken connection.
async fn keep_alive_client(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
) {
    use http_body_util::{BodyExt, Empty};
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    while !stop.load(Ordering::SeqCst) {
        let req = http::Request::get("/")
            .header("host", "example.test")
            .body(Empty::<bytes::Bytes>::new())
            .expect("request");
        sent.fetch_add(1, Ordering::SeqCst);
        let ok = match send.send_request(req).await {
            Ok(r) => r.status() == 200 && r.into_body().collect().await.is_ok(),
            Err(_) => false,
        };
        if !ok {
            failed.fetch_add(1, Ordering::SeqCst);
            return;
        }
    }
}

/// A WebSocket-style tunnel through the proxy to an echoing upstream.
async fn open_tunnel(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .expect("write");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.expect("read head");
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

async fn echo(s: &mut TcpStream, msg: &[u8]) {
    s.write_all(msg).await.expect("tunnel write");
    let mut back = vec![0u8; msg.len()];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back))
        .await
        .expect("echo in time")
        .expect("tunnel still open");
    assert_eq!(back, msg);
}

fn symlink(target: &str, link: &Path) {
    std::os::unix::fs::symlink(target, link).expect("symlink");
}

/// A cutover started from a config at `path` that the test laid out itself.
async fn start_at(path: &Path) -> Proxy {
    Proxy::start_file(path, tempdir::Dir::new()).await
}
