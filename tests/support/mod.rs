//! Test harness: real upstream servers, a real cutover, real clients, all on loopback
//! with ports chosen by the kernel.

#![allow(dead_code, unused_imports, unreachable_pub)]

pub mod autopilot;
pub mod client;
pub mod exposition;
pub mod nginx;
pub mod process;
pub mod prometheus;
pub mod tls;
pub mod upstream;

use std::net::SocketAddr;
use std::path::PathBuf;

use cutover::app::Running;

pub use client::{get, raw, raw_after, request, Reply};
pub use upstream::{RawUpstream, Upstream};

/// A cutover started in this process on free ports, from config text.
pub struct Proxy {
    pub running: Option<Running>,
    pub addr: SocketAddr,
    /// The first `https` listener, when [`Proxy::start_with`] asked for one.
    pub https: Option<SocketAddr>,
    pub admin: SocketAddr,
    pub dir: tempdir::Dir,
    pub config_path: PathBuf,
    /// The extra `[listen]` lines it started with, kept through rewrites.
    listen: String,
}

impl Proxy {
    /// Starts cutover with `toml` (its `[listen]` and `[admin]` are supplied here).
    pub async fn start(toml: &str) -> Proxy {
        Proxy::start_with("", toml).await
    }

    /// Starts cutover with `listen` added to its `[listen]` table (`https = [...]`,
    /// `proxy_protocol`, `trusted_proxies`) and `toml` after it. Relative paths in
    /// `toml` (certificates) resolve against the config's directory, `self.dir`: write
    /// such files there first and use [`Proxy::start_in`].
    pub async fn start_with(listen: &str, toml: &str) -> Proxy {
        Proxy::start_in(tempdir::Dir::new(), listen, toml).await
    }

    /// [`Proxy::start_with`] in a directory the caller already filled.
    pub async fn start_in(dir: tempdir::Dir, listen: &str, toml: &str) -> Proxy {
        let path = dir.path.join("cutover.toml");
        std::fs::write(&path, with_listen(listen, toml)).expect("write config");
        let mut proxy = Proxy::start_file(&path, dir).await;
        proxy.listen = listen.to_owned();
        proxy
    }

    /// A cutover started from the config at `path`, as it is; `dir` is kept with it.
    pub async fn start_file(path: &std::path::Path, dir: tempdir::Dir) -> Proxy {
        let loaded = cutover::config::load(path).unwrap_or_else(|e| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            panic!("config invalid:\n{e}\n{text}")
        });
        let running = cutover::app::start(loaded.config)
            .await
            .expect("start cutover");
        Proxy {
            addr: running.http_addrs[0],
            https: running.https_addrs.first().copied(),
            listen: String::new(),
            admin: running.admin_addr,
            running: Some(running),
            dir,
            config_path: path.to_path_buf(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Rewrites the config (same listeners) and reloads it, as SIGHUP would.
    pub async fn reload(&self, toml: &str) {
        self.try_reload(toml).await.expect("reload");
    }

    /// Rewrites the config (same listeners), as an editor would (a new file renamed
    /// over the old), and reloads it; the new generation or the errors.
    pub async fn try_reload(&self, toml: &str) -> Result<u64, cutover::config::ConfigError> {
        self.write_config(toml);
        self.running().reload().await
    }

    /// Rewrites the config file (same listeners) without reloading it.
    pub fn write_config(&self, toml: &str) {
        let tmp = self.dir.path.join("cutover.toml.tmp");
        std::fs::write(&tmp, with_listen(&self.listen, toml)).expect("write config");
        std::fs::rename(&tmp, &self.config_path).expect("rename config");
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("running")
    }

    /// The generation of the live config.
    pub fn generation(&self) -> u64 {
        self.running().shared.live.load().generation
    }
}

fn with_listen(listen: &str, toml: &str) -> String {
    // The access log has its own test (tests/process.rs); here it would only clutter.
    format!(
        "[listen]\nhttp = [\"127.0.0.1:0\"]\n{listen}\n[admin]\nlisten = \"127.0.0.1:0\"\n[access_log]\nenabled = false\n{toml}"
    )
}

/// Runs `tests/deps/install`, which installs what the tests run when it is missing (a
/// plain `cargo test` on a fresh machine); for a test that found a tool missing.
pub fn install_deps() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/deps/install");
    let status = std::process::Command::new("bash")
        .arg(&script)
        .stdin(std::process::Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    assert!(status.success(), "{} failed: {status}", script.display());
}

/// Waits for `cond` to hold, polling; panics with `what` after 10 s.
pub async fn eventually(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        if cond().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// Waits for `value` to give something, polling; panics with `what` after 10 s.
pub async fn eventually_value<T>(what: &str, mut value: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        if let Some(v) = value().await {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
}

pub mod tempdir {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A directory under the system temp dir, removed on drop.
    pub struct Dir {
        pub path: PathBuf,
    }

    impl Dir {
        pub fn new() -> Dir {
            static N: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "cutover-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&path).expect("temp dir");
            Dir { path }
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
