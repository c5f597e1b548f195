//! The binary as an operator runs it: `check`, graceful shutdown, memory under big
//! bodies.

mod support;

use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use support::process::{Process, BIN};
use support::tempdir::Dir;
use support::{eventually, get, Upstream};

fn write(dir: &Dir, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.path.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

/// Runs `cutover check -c path`.
fn check(path: &std::path::Path) -> std::process::Output {
    Command::new(BIN)
        .args(["check", "-c"])
        .arg(path)
        .output()
        .expect("run cutover check")
}

#[test]
fn check_accepts_a_good_config_and_names_every_error_of_a_bad_one() {
    let dir = Dir::new();
    let good = write(
        &dir,
        "good.toml",
        "[pools.ecs]\nbackends = [\"10.0.1.11:8080\", { addr = \"10.0.1.12:8080\", weight = 2 }]\n\
         [pools.spare]\nbackends = [\"10.0.9.9:80\"]\n\
         [[routes]]\nname = \"r\"\nsplit = { ecs = 1 }\n",
    );
    let out = check(&good);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "one-line summary: {stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("pool \"spare\" is not used"));

    let bad = write(
        &dir,
        "bad.toml",
        "[limits]\n\
         connect_timeout = \"0s\"\n\
         [pools.ecs]\n\
         backends = [\"not an address\"]\n\
         [pools.empty]\n\
         backends = []\n\
         [[routes]]\n\
         name = \"r\"\n\
         split = { ecs = 0 }\n\
         [[routes]]\n\
         name = \"r\"\n\
         split = { k9s = 10 }\n",
    );
    let out = check(&bad);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = bad.display().to_string();
    for (line, what) in [
        (2, "connect_timeout must be greater than zero"),
        (4, "bad backend address"),
        (6, "has no backends"),
        (9, "every split weight at 0"),
        (11, "duplicate route name"),
        (12, "which does not exist"),
    ] {
        assert!(
            err.lines()
                .any(|l| l.starts_with(&format!("{file}:{line}:")) && l.contains(what)),
            "missing line {line} {what:?} in:\n{err}"
        );
    }

    let typo = write(&dir, "typo.toml", "[limits]\nconect_timeout = \"2s\"\n");
    let out = check(&typo);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!("{}:2:1:", typo.display())),
        "{err}"
    );
    assert!(err.contains("conect_timeout"), "{err}");
}

fn config(dir: &Dir, up: &Upstream, extra: &str) -> std::path::PathBuf {
    write(
        dir,
        "cutover.toml",
        &format!(
            "[listen]\nhttp = [\"127.0.0.1:0\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n{extra}\n\
             [pools.p]\nbackends = [\"{}\"]\n[[routes]]\nname = \"r\"\nsplit = {{ p = 1 }}\n",
            up.addr
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_even_an_unchanged_file() {
    // The watcher never reloads the same bytes; SIGHUP does (the certificates or names
    // a file points at may have changed): a reload seen here is SIGHUP's.
    let up = Upstream::start("u").await;
    let dir = Dir::new();
    let p = Process::start(&config(&dir, &up, ""));
    p.signal("HUP");
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = p
            .stderr
            .recv_timeout(left)
            .expect("a \"config reloaded\" line within 2 s of SIGHUP");
        let v: serde_json::Value = serde_json::from_str(&line).expect("json");
        if v["message"] == "config reloaded" {
            assert_eq!(v["generation"], 2, "{line}");
            break;
        }
    }
    assert_eq!(get(p.addr, "/", &[]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_in_flight_requests_then_exits_0() {
    let up = Upstream::start("u").await;
    let dir = Dir::new();
    let mut p = Process::start(&config(&dir, &up, "[limits]\nshutdown_grace = \"10s\""));
    assert_eq!(get(p.admin, "/readyz", &[]).await.status, 200);
    let addr = p.addr;
    let slow = tokio::spawn(async move { get(addr, "/slow/1500", &[]).await });
    eventually("the slow request reaches the backend", async || {
        up.hits() >= 1
    })
    .await;
    p.signal("TERM");
    eventually("the listener closes while the request drains", async || {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
    assert!(
        !slow.is_finished(),
        "the slow request was still running when the listener closed"
    );
    let r = slow.await.expect("join");
    assert_eq!(r.status, 200, "in-flight request finished");
    assert_eq!(
        r.header("connection"),
        Some("close"),
        "a draining proxy closes keep-alive"
    );
    let status = tokio::task::spawn_blocking(move || p.child.wait())
        .await
        .expect("join")
        .expect("wait");
    assert_eq!(status.code(), Some(0));
}

/// Sends `req` on a new connection and counts the response body's bytes.
async fn send_counting<B>(addr: std::net::SocketAddr, req: Request<B>) -> usize
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let resp = tokio::time::timeout(Duration::from_secs(60), send.send_request(req))
        .await
        .expect("in time")
        .expect("response");
    let mut body = resp.into_body();
    let mut got = 0;
    while let Some(f) = body.frame().await {
        got += f.expect("frame").data_ref().map_or(0, |d| d.len());
    }
    got
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_megabytes_each_way_without_buffering() {
    const SIZE: usize = 50 << 20;
    let up = Upstream::start("u").await;
    let dir = Dir::new();
    let p = Process::start(&config(&dir, &up, "[runtime]\nworkers = 2"));
    assert_eq!(get(p.addr, "/", &[]).await.status, 200);
    let base = p.status_kib("VmRSS");

    // Download.
    let req = Request::get(format!("/bytes/{SIZE}"))
        .header("host", "a")
        .body(http_body_util::Empty::<Bytes>::new())
        .expect("req");
    assert_eq!(send_counting(p.addr, req).await, SIZE);

    // Upload, echoed back.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
    tokio::spawn(async move {
        let chunk = Bytes::from(vec![b'u'; 256 * 1024]);
        for _ in 0..SIZE / chunk.len() {
            if tx.send(Ok(Frame::data(chunk.clone()))).await.is_err() {
                return;
            }
        }
    });
    let body = StreamBody::new(support::upstream::channel_stream(rx));
    let req = Request::post("/echo")
        .header("host", "a")
        .header("content-length", SIZE.to_string())
        .body(body)
        .expect("req");
    assert_eq!(send_counting(p.addr, req).await, SIZE);

    let peak = p.status_kib("VmHWM");
    let grown_mib = peak.saturating_sub(base) / 1024;
    eprintln!("proxy RSS: base {base} KiB, peak {peak} KiB");
    assert!(
        grown_mib < 16,
        "proxy memory grew by {grown_mib} MiB while moving 2 x 50 MiB"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn access_log_writes_one_json_line_per_request() {
    let up = Upstream::start("u").await;
    let dir = Dir::new();
    let p = Process::start(&config(&dir, &up, "[access_log]\nenabled = true"));
    let r = get(p.addr, "/logged?x=1", &[("x-request-id", "req-1")]).await;
    assert_eq!(r.status, 200);
    let r = get(p.addr, "/", &[("host", "nowhere.example")]).await;
    assert_eq!(r.status, 200);
    let line = p
        .stdout
        .recv_timeout(Duration::from_secs(10))
        .expect("an access log line");
    let v: serde_json::Value = serde_json::from_str(&line).expect("json");
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/logged?x=1");
    assert_eq!(v["status"], 200);
    assert_eq!(v["route"], "r");
    assert_eq!(v["pool"], "p");
    assert_eq!(v["backend"], up.addr.to_string());
    assert_eq!(v["request_id"], "req-1");
    assert_eq!(v["client"], "127.0.0.1");
    assert!(v["error"].is_null());
    for key in ["ts", "host", "bytes_sent", "duration_ms", "upstream_ms"] {
        assert!(v.get(key).is_some(), "{key} missing: {line}");
    }
    let line = p
        .stdout
        .recv_timeout(Duration::from_secs(10))
        .expect("second line");
    let v: serde_json::Value = serde_json::from_str(&line).expect("json");
    assert_eq!(v["host"], "nowhere.example");
}

#[tokio::test]
async fn workers_n_serve_on_n_threads() {
    // Worker 0 is the main runtime, workers 1.. their own threads: no runtime on top
    // that would add work-stealing threads of its own. (The access log is off: its
    // writes to stdout go through tokio's blocking threads.)
    let up = Upstream::start("u").await;
    let dir = Dir::new();
    let extra = "[runtime]\nworkers = 3\n[access_log]\nenabled = false";
    let p = Process::start(&config(&dir, &up, extra));
    for _ in 0..20 {
        assert_eq!(get(p.addr, "/", &[]).await.status, 200);
    }
    let tasks = std::fs::read_dir(format!("/proc/{}/task", p.pid())).expect("tasks");
    let mut names: Vec<String> = tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .collect();
    names.sort();
    // Besides: the config watcher's thread (inotify) and the blocking threads of the
    // scrapes and the sampler, when there are any; none of them serves a request.
    names.retain(|n| !n.starts_with("notify-rs") && !n.starts_with("cutover-blocki"));
    assert_eq!(
        names,
        ["cutover", "cutover-worker-", "cutover-worker-"],
        "serving threads of a 3-worker cutover"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn new_connections_are_answered_whether_the_request_comes_with_them_or_later() {
    // The first read of a new connection waits for the socket's first event
    // (`connection::forget_assumed_readability`). A request already there when the
    // connection is accepted must still wake it, and so must one sent later.
    let up = Upstream::start("u").await;
    let dir = Dir::new();
    let p = Process::start(&config(&dir, &up, "[runtime]\nworkers = 2"));
    const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    let at_once = (0..200).map(|_| tokio::spawn(support::raw(p.addr, REQUEST)));
    let pause = Duration::from_millis(50);
    let later = (0..20).map(|_| tokio::spawn(support::raw_after(p.addr, pause, REQUEST)));
    let all: Vec<_> = at_once.chain(later).collect();
    for answer in all {
        let answer = answer.await.expect("client task");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    }
}

#[test]
fn every_stderr_line_is_json_when_stderr_is_not_a_terminal() {
    // No --log-format: stderr is a pipe here, so the log is JSON, config findings
    // (a warning at start, the errors of a bad reload) included.
    let up_addr = "127.0.0.1:9";
    let dir = Dir::new();
    let text = format!(
        "[listen]\nhttp = [\"127.0.0.1:0\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [pools.p]\nbackends = [\"{up_addr}\"]\n[pools.spare]\nbackends = [\"{up_addr}\"]\n\
         [[routes]]\nname = \"r\"\nsplit = {{ p = 1 }}\n"
    );
    let path = write(&dir, "cutover.toml", &text);
    let mut child = Command::new(BIN)
        .args(["run", "-c"])
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn cutover");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut seen: Vec<serde_json::Value> = Vec::new();
    let mut wait_for = |what: &str| loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no log line with {what:?}; saw {seen:?}"));
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let hit = v["message"].as_str().is_some_and(|m| m.contains(what));
        seen.push(v);
        if hit {
            return;
        }
    };
    wait_for("pool \"spare\" is not used by any route");
    wait_for("admin listening");
    write(
        &dir,
        "cutover.toml",
        "[pools.p]\nbackends = [\"nope\"]\nbogus = 1\n",
    );
    let ok = Command::new("sh")
        .args(["-c", &format!("kill -HUP {}", child.id())])
        .status()
        .expect("kill");
    assert!(ok.success());
    wait_for("unknown field `bogus`");
    let _ = child.kill();
    let _ = child.wait();
    let warning = seen
        .iter()
        .find(|v| v["message"].as_str().is_some_and(|m| m.contains("spare")))
        .expect("the warning");
    assert_eq!(warning["level"], "WARN");
    assert_eq!(warning["line"], 7);
    let bogus = seen
        .iter()
        .find(|v| v["message"].as_str().is_some_and(|m| m.contains("bogus")))
        .expect("the error");
    assert_eq!(
        (bogus["level"].as_str(), bogus["line"].as_u64()),
        (Some("ERROR"), Some(3))
    );
}
