//! The real binary, started as an operator would.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_cutover");

/// A running `cutover run` with the addresses it logged.
pub struct Process {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub stderr: mpsc::Receiver<String>,
    pub stdout: mpsc::Receiver<String>,
}

fn lines(r: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

impl Process {
    /// Starts `cutover run -c path`; the config should listen on port 0.
    pub fn start(path: &Path) -> Process {
        Process::spawn(Command::new(BIN).args(["run", "-c"]).arg(path))
    }

    /// Starts `cutover demo ARGS...`, on the demo's fixed ports.
    pub fn demo(args: &[&str]) -> Process {
        Process::spawn(Command::new(BIN).arg("demo").args(args))
    }

    /// Spawns `cmd` with JSON logs and waits for the listeners it logs.
    fn spawn(cmd: &mut Command) -> Process {
        let mut child = cmd
            .args(["--log-format", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn cutover");
        let rx = lines(child.stderr.take().expect("stderr"));
        let stdout = lines(child.stdout.take().expect("stdout"));
        let (mut addr, mut admin) = (None, None);
        // What it said before listening: why, when it never does.
        let mut said = Vec::new();
        while addr.is_none() || admin.is_none() {
            let line = rx
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|e| {
                    panic!(
                        "cutover logs its listeners ({e}); it said:\n{}",
                        said.join("\n")
                    )
                });
            let field = |l: &str| -> Option<SocketAddr> {
                let at = l.find("\"addr\":\"")? + 8;
                l[at..].split('"').next()?.parse().ok()
            };
            if line.contains("listening (http)") {
                addr = field(&line);
            } else if line.contains("admin listening") {
                admin = field(&line);
            }
            said.push(line);
        }
        Process {
            child,
            addr: addr.expect("addr"),
            admin: admin.expect("admin"),
            stderr: rx,
            stdout,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        // The shell's builtin kill: no procps needed on a fresh machine.
        let ok = Command::new("sh")
            .args(["-c", &format!("kill -{sig} {}", self.pid())])
            .status()
            .expect("kill");
        assert!(ok.success());
    }

    /// A field of /proc/PID/status in KiB (e.g. "VmRSS", "VmHWM").
    pub fn status_kib(&self, field: &str) -> u64 {
        let text =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("field")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
