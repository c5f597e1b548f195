//! `cutover import nginx`, against a corpus of nginx configs: `tests/import/<case>/`
//! holds `nginx.conf` with the files it includes, and `nginx.expected.toml`, the
//! importer's output for it once reviewed.
//!
//! - Import: the real binary imports each case (`import nginx FILE -o OUT`); its exit
//!   code, the directives it lists on stderr, its output against the expected file,
//!   and `cutover check -c OUT`.
//! - Differential: a real nginx runs the original, cutover runs the import, and the
//!   same requests go to both. A route with one pool: each request reaches the same
//!   upstream under both. A split route: each proxy's shares match the config's (not
//!   key by key: cutover's sticky hash is not nginx's MurmurHash2).
//!
//! Placeholders, filled in before anything reads the files:
//! - `{{PORT}}`: the port nginx listens on: a free loopback port when nginx runs,
//!   8080 for the import tests.
//! - `{{UP_NAME}}`: the `host:port` of an upstream server. When nginx runs, that of an
//!   [`Upstream`] started by the test, answering with `x-upstream: name` (NAME in lower
//!   case); in the import tests the fixed address [`GOLDEN_ADDRS`] gives NAME, so that
//!   the expected output does not depend on free ports.
//! - `{{TMP}}`: the directory the case is written to (nginx's pid, logs, temp files).
//!
//! Markers: a config line whose comment holds `# import: listed` is one the importer
//! must list on stderr as `FILE:LINE: DIRECTIVE: why`. The test reads FILE (relative to
//! the case's directory), LINE and the directive's name off the marked lines and
//! accepts no other entry: plumbing such as `pid`, `error_log`, `events`, `access_log`
//! and the `*_temp_path`s is not routing and is ignored without a word. A case with
//! an entry exits 2, one without exits 0.
//!
//! Blessing: the expected files are the importer's own output, reviewed. With
//! `CUTOVER_BLESS=1 cargo test --test import_nginx`, the import tests write each
//! output to its `nginx.expected.toml` instead of comparing (read the diff before
//! committing it). Paths under the test's temp directory show as `{{DIR}}` there.

mod support;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use support::nginx::Nginx;
use support::process::BIN;
use support::tempdir::Dir;
use support::{Proxy, Upstream};

// === The corpus ===

/// One directory of tests/import/ and what the test expects of it.
struct Case {
    dir: &'static str,
    /// Requests that one pool answers: the upstreams that may answer each.
    probes: &'static [Probe],
    /// Requests to split routes (or to a pool of several servers), one key each.
    shares: &'static [Shares],
}

struct Probe {
    host: &'static str,
    path: &'static str,
    to: &'static [&'static str],
}

/// [`KEYS`] requests to `host` + `path`, each with its own `key`: each upstream's share
/// in percent.
struct Shares {
    host: &'static str,
    path: &'static str,
    key: Key,
    expect: &'static [(&'static str, f64)],
}

/// What tells one request of a [`Shares`] check from another.
#[derive(Debug, Clone, Copy)]
enum Key {
    /// Nothing: the same request every time (a pool's own balancing).
    None,
    /// The source address, 127.10.x.y (any 127/8 address is loopback on Linux).
    ClientIp,
    /// A cookie of this name.
    Cookie(&'static str),
    /// A header of this name.
    Header(&'static str),
}

const fn probe(host: &'static str, path: &'static str, to: &'static [&'static str]) -> Probe {
    Probe { host, path, to }
}

/// Keys per [`Shares`] check, how far a share may stray from the config's (in
/// percentage points), and how many keys are asked again to see they stay put.
///
/// Take each proxy's pick as an independent draw per key: over 1000 keys the share of
/// a 10 % pool has a standard deviation of sqrt(p(1-p)/n) = 0.95 points, 20 %: 1.3,
/// 50 %: 1.6, so 6 points is 3.8 standard deviations or more, crossed by a sound pick
/// less than once in 5000 checks. The keys are fixed and both hashes are seed-free,
/// so a keyed verdict is the same on every run; only cutover's per-request pick
/// inside a pool ((a), (g)) is random. The mistakes this is for are 20 points or more
/// away: weights swapped, `*` read as 100 instead of the remainder (80/20 becomes
/// 44/56), a pool dropped.
const KEYS: usize = 1000;
const TOLERANCE: f64 = 6.0;
const ASKED_AGAIN: usize = 200;

const ECS_12: &[&str] = &["ecs_1", "ecs_2"];

const A_WEIGHTED: Case = Case {
    dir: "a-weighted",
    probes: &[
        probe("api.example.com", "/", ECS_12),
        probe("API.Example.COM:8080", "/v1/ads?id=7", ECS_12),
        probe("api.example.com", "/deep/path/x", ECS_12),
    ],
    shares: &[Shares {
        host: "api.example.com",
        path: "/",
        key: Key::None,
        expect: &[("ecs_1", 75.0), ("ecs_2", 25.0)],
    }],
};

const B_SERVERS: Case = Case {
    dir: "b-servers",
    probes: &[
        probe("www.example.com", "/", &["www"]),
        probe("www.example.com", "/index.html", &["www"]),
        probe("example.com", "/about", &["www"]),
        probe("WWW.Example.com:8080", "/x", &["www"]),
        probe("www.example.com", "/api/users", &["api"]),
        probe("www.example.com", "/api/", &["api"]),
        probe("www.example.com", "/apix", &["www"]),
        probe("www.example.com", "/static/app.js", &["static"]),
        probe("www.example.com", "/staticfiles/x", &["www"]),
        probe("www.example.com", "/healthz", &["api"]),
        probe("www.example.com", "/healthz?full=1", &["api"]),
        probe("a.shop.example.com", "/", &["shop"]),
        probe("x.y.shop.example.com", "/cart", &["shop"]),
        probe("shop.example.com", "/", &["tenant"]),
        probe("tenant1.example.com", "/", &["tenant"]),
        probe("tenant1.example.com", "/api/v1", &["api"]),
        probe("example.org", "/", &["org"]),
        probe("blog.example.org", "/post/1", &["org"]),
        probe("unknown.test", "/", &["default"]),
        probe("127.0.0.1", "/api/x", &["default"]),
    ],
    shares: &[],
};

const C_SPLIT_IP: Case = Case {
    dir: "c-split-ip",
    probes: &[
        probe("ad.example.com", "/", &["web"]),
        probe("ad.example.com", "/about", &["web"]),
        probe("ad.example.com", "/adx", &["web"]),
    ],
    shares: &[Shares {
        host: "ad.example.com",
        path: "/ad/show",
        key: Key::ClientIp,
        expect: &[("ecs", 80.0), ("k8s", 20.0)],
    }],
};

const D_SPLIT_COOKIE: Case = Case {
    dir: "d-split-cookie",
    probes: &[
        probe("shop.example.com", "/", &["web"]),
        probe("shop.example.com", "/cart", &["web"]),
        probe("shop.example.com", "/checkoutx", &["web"]),
    ],
    shares: &[
        Shares {
            host: "shop.example.com",
            path: "/checkout/pay",
            key: Key::Cookie("uid"),
            expect: &[("canary", 10.0), ("k8s", 40.0), ("ecs", 50.0)],
        },
        Shares {
            host: "shop.example.com",
            path: "/search/?q=shoes",
            key: Key::Header("x-user-id"),
            expect: &[("search_k8s", 50.0), ("search_ecs", 50.0)],
        },
    ],
};

const E_INCLUDES: Case = Case {
    dir: "e-includes",
    probes: &[
        probe("api.example.com", "/", &["api"]),
        probe("api.example.com", "/v1/x", &["api"]),
        probe("api.example.com", "/docs/intro", &["web"]),
        probe("www.example.com", "/", &["web"]),
        probe("www.example.com", "/api/v1", &["api"]),
        probe("www.example.com", "/assets/app.css", &["assets"]),
    ],
    shares: &[],
};

/// Checked by `nginx -t` and imported, not run: its point is what is left out.
const F_LEFTOVERS: Case = Case {
    dir: "f-leftovers",
    probes: &[],
    shares: &[],
};

const G_NESTED: Case = Case {
    dir: "g-nested-includes",
    probes: &[probe("shop.example.com", "/", &["shop_1", "shop_2"])],
    shares: &[Shares {
        host: "shop.example.com",
        path: "/",
        key: Key::None,
        expect: &[("shop_1", 50.0), ("shop_2", 50.0)],
    }],
};

const ALL: [&Case; 7] = [
    &A_WEIGHTED,
    &B_SERVERS,
    &C_SPLIT_IP,
    &D_SPLIT_COOKIE,
    &E_INCLUDES,
    &F_LEFTOVERS,
    &G_NESTED,
];

/// What `{{UP_NAME}}` becomes in the import tests: VMs in 10.0.1.0/24, pods in
/// 10.0.2.0/24, the rest in 10.0.3.0/24 and up.
const GOLDEN_ADDRS: &[(&str, &str)] = &[
    ("ECS_1", "10.0.1.11:8080"),
    ("ECS_2", "10.0.1.12:8080"),
    ("ECS", "10.0.1.21:8080"),
    ("SEARCH_ECS", "10.0.1.41:8080"),
    ("APP_1", "10.0.1.51:8080"),
    ("APP_2", "10.0.1.52:8080"),
    ("SHOP_1", "10.0.1.61:8080"),
    ("SHOP_2", "10.0.1.62:8080"),
    ("K8S", "10.0.2.21:8080"),
    ("CANARY", "10.0.2.31:8080"),
    ("SEARCH_K8S", "10.0.2.41:8080"),
    ("WWW", "10.0.3.10:8080"),
    ("API", "10.0.3.20:8080"),
    ("STATIC", "10.0.3.30:8080"),
    ("SHOP", "10.0.3.40:8080"),
    ("TENANT", "10.0.3.50:8080"),
    ("ORG", "10.0.3.60:8080"),
    ("DEFAULT", "10.0.3.70:8080"),
    ("WEB", "10.0.3.80:8080"),
    ("ASSETS", "10.0.4.10:9000"),
];

/// The port `{{PORT}}` becomes in the import tests.
const GOLDEN_PORT: &str = "8080";

fn corpus(case: &Case) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/import")
        .join(case.dir)
}

/// The `.conf` files of `dir` and below, as paths relative to it, sorted.
fn conf_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read corpus dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if path.extension().is_some_and(|e| e == "conf") {
                out.push(path.strip_prefix(root).expect("under root").to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The NAMEs of the `{{NAME}}` placeholders in `text`, in order.
fn placeholders(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("{{") {
        let end = rest[at..].find("}}").expect("a closed placeholder") + at;
        out.push(&rest[at + 2..end]);
        rest = &rest[end + 2..];
    }
    out
}

/// `text` with every `{{NAME}}` replaced by `value(NAME)`.
fn fill(text: &str, value: &dyn Fn(&str) -> String) -> String {
    let mut out = text.to_owned();
    for name in placeholders(text) {
        out = out.replacen(&format!("{{{{{name}}}}}"), &value(name), 1);
    }
    out
}

/// The NAMEs of the `{{UP_NAME}}` placeholders of the case, sorted, once each.
fn upstream_names(case: &Case) -> Vec<String> {
    let dir = corpus(case);
    let mut names = Vec::new();
    for file in conf_files(&dir) {
        let text = std::fs::read_to_string(dir.join(file)).expect("read corpus file");
        for name in placeholders(&text) {
            if let Some(up) = name.strip_prefix("UP_") {
                names.push(up.to_owned());
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

/// Writes the case's `.conf` files into `to`, placeholders filled: `{{PORT}}` with
/// `port`, `{{TMP}}` with `to`, `{{UP_NAME}}` with `upstream(NAME)`.
fn write_case(case: &Case, to: &Path, port: &str, upstream: &dyn Fn(&str) -> String) {
    let dir = corpus(case);
    for file in conf_files(&dir) {
        let text = std::fs::read_to_string(dir.join(&file)).expect("read corpus file");
        let filled = fill(&text, &|name| match name {
            "PORT" => port.to_owned(),
            "TMP" => to.display().to_string(),
            _ => match name.strip_prefix("UP_") {
                Some(up) => upstream(up),
                None => panic!("{}: unknown placeholder {{{{{name}}}}}", file.display()),
            },
        });
        let target = to.join(&file);
        std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
        std::fs::write(target, filled).expect("write case file");
    }
}

fn golden_addr(name: &str) -> String {
    GOLDEN_ADDRS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, a)| (*a).to_owned())
        .unwrap_or_else(|| panic!("{{{{UP_{name}}}}}: add {name} to GOLDEN_ADDRS"))
}

/// A fresh temp directory, as its canonical path (what an importer that resolves
/// paths would print).
fn canonical(dir: &Dir) -> PathBuf {
    std::fs::canonicalize(&dir.path).expect("canonical temp dir")
}

// === The importer ===

/// One `cutover import nginx` run.
struct Imported {
    code: Option<i32>,
    stderr: String,
    /// What it wrote to OUT, if anything.
    output: Option<String>,
}

fn import(conf: &Path, out: &Path) -> Imported {
    let run = Command::new(BIN)
        .args(["import", "nginx"])
        .arg(conf)
        .arg("-o")
        .arg(out)
        .output()
        .expect("run cutover import nginx");
    Imported {
        code: run.status.code(),
        stderr: String::from_utf8_lossy(&run.stderr).into_owned(),
        output: std::fs::read_to_string(out).ok(),
    }
}

/// A `FILE:LINE: DIRECTIVE` entry: FILE relative to the case's directory, and the
/// directive's name (its first word).
type Entry = (String, usize, String);

/// The entries of the importer's stderr, sorted; other lines (a summary) are skipped.
fn listed(stderr: &str, base: &Path) -> Vec<Entry> {
    let prefix = format!("{}/", base.display());
    let mut out: Vec<Entry> = stderr
        .lines()
        .filter_map(|l| {
            let l = l.strip_prefix(&prefix).unwrap_or(l);
            let (file, rest) = l.split_once(':')?;
            let (line, rest) = rest.split_once(':')?;
            let line = line.parse().ok()?;
            let directive = rest
                .trim_start()
                .split(|c: char| c.is_whitespace() || c == ':' || c == ';')
                .next()?;
            Some((file.to_owned(), line, directive.to_owned()))
        })
        .collect();
    out.sort();
    out
}

/// The entries the case's `# import: listed` markers call for, sorted.
fn marked(case: &Case) -> Vec<Entry> {
    let dir = corpus(case);
    let mut out = Vec::new();
    for file in conf_files(&dir) {
        let text = std::fs::read_to_string(dir.join(&file)).expect("read corpus file");
        for (i, line) in text.lines().enumerate() {
            if line.contains("# import: listed") && !line.trim_start().starts_with('#') {
                let directive = line
                    .split_whitespace()
                    .next()
                    .expect("a directive before the marker");
                out.push((
                    file.display().to_string(),
                    i + 1,
                    directive.trim_end_matches(';').to_owned(),
                ));
            }
        }
    }
    out.sort();
    out
}

fn expected_code(case: &Case) -> i32 {
    if marked(case).is_empty() {
        0
    } else {
        2
    }
}

fn check(path: &Path) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .args(["check", "-c"])
        .arg(path)
        .output()
        .expect("run cutover check");
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Imports the case (golden addresses, port 8080) and checks exit code, entries,
/// output (or writes it, under CUTOVER_BLESS=1) and that `check` accepts it.
fn import_case(case: &Case) {
    let dir = Dir::new();
    let base = canonical(&dir);
    let src = base.join("nginx");
    write_case(case, &src, GOLDEN_PORT, &golden_addr);
    let out = base.join("cutover.toml");
    let run = import(&src.join("nginx.conf"), &out);
    let expected_file = corpus(case).join("nginx.expected.toml");
    let output = run
        .output
        .as_ref()
        .map(|o| o.replace(&base.display().to_string(), "{{DIR}}"));
    let bless = std::env::var("CUTOVER_BLESS").is_ok_and(|v| v == "1");
    if let (true, Some(output)) = (bless, &output) {
        std::fs::write(&expected_file, output).expect("write expected output");
    }

    let code = expected_code(case);
    assert_eq!(
        run.code,
        Some(code),
        "{}: exit code; stderr:\n{}",
        case.dir,
        run.stderr
    );
    assert_eq!(
        listed(&run.stderr, &src),
        marked(case),
        "{}: the entries on stderr (left) against the `# import: listed` markers (right); stderr:\n{}",
        case.dir,
        run.stderr
    );
    let output = output.unwrap_or_else(|| {
        panic!(
            "{}: nothing written to -o OUT; stderr:\n{}",
            case.dir, run.stderr
        )
    });
    if !bless {
        let expected = std::fs::read_to_string(&expected_file).unwrap_or_else(|_| {
            panic!(
                "{} is missing: write it with CUTOVER_BLESS=1 cargo test --test import_nginx, and review it",
                expected_file.display()
            )
        });
        assert!(
            output == expected,
            "{}: the output differs from {} (CUTOVER_BLESS=1 rewrites it)\n--- output:\n{output}\n--- expected:\n{expected}",
            case.dir,
            expected_file.display()
        );
    }
    let (status, said) = check(&out);
    assert_eq!(
        status,
        Some(0),
        "{}: cutover check rejects the output:\n{said}\n{output}",
        case.dir
    );
}

#[test]
fn import_a_weighted_upstream() {
    import_case(&A_WEIGHTED);
}

#[test]
fn import_b_servers_and_locations() {
    import_case(&B_SERVERS);
}

#[test]
fn import_c_split_by_client_address() {
    import_case(&C_SPLIT_IP);
}

#[test]
fn import_d_split_by_cookie_and_header() {
    import_case(&D_SPLIT_COOKIE);
}

#[test]
fn import_e_includes() {
    import_case(&E_INCLUDES);
}

#[test]
fn import_f_lists_what_cannot_be_carried() {
    import_case(&F_LEFTOVERS);
}

#[test]
fn import_g_resolves_nested_includes_as_nginx_does() {
    import_case(&G_NESTED);
}

#[test]
fn import_without_o_writes_the_same_toml_to_stdout() {
    let dir = Dir::new();
    let base = canonical(&dir);
    let src = base.join("nginx");
    write_case(&E_INCLUDES, &src, GOLDEN_PORT, &golden_addr);
    let conf = src.join("nginx.conf");
    let to_file = import(&conf, &base.join("cutover.toml"));
    let to_stdout = Command::new(BIN)
        .args(["import", "nginx"])
        .arg(&conf)
        .output()
        .expect("run cutover import nginx");
    assert_eq!(
        to_stdout.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&to_stdout.stderr)
    );
    let file = to_file.output.expect("the -o run wrote its output");
    assert_eq!(String::from_utf8_lossy(&to_stdout.stdout), file);
}

#[test]
fn import_exits_1_on_a_syntax_error_with_its_file_and_line() {
    let dir = Dir::new();
    let base = canonical(&dir);
    let conf = base.join("nginx.conf");
    // The `;` after the server's address is missing: nginx stops at the `}` on line 5.
    std::fs::write(
        &conf,
        "events {}\nhttp {\n    upstream api {\n        server 10.0.1.11:8080\n    }\n    \
         server {\n        listen 8080;\n        location / {\n            proxy_pass http://api;\n        }\n    }\n}\n",
    )
    .expect("write config");
    let (accepted, said) = Nginx::test_config(&conf);
    assert!(!accepted, "nginx accepts it:\n{said}");
    let run = import(&conf, &base.join("cutover.toml"));
    assert_eq!(run.code, Some(1), "stderr:\n{}", run.stderr);
    // Line 4 (the directive without its `;`) or 5 (where nginx notices): both help.
    let at = |line: usize| format!("{}:{line}:", conf.display());
    assert!(
        run.stderr.contains(&at(4)) || run.stderr.contains(&at(5)),
        "no FILE:LINE for the error; stderr:\n{}",
        run.stderr
    );
}

#[test]
fn import_exits_1_on_a_file_it_cannot_read() {
    let dir = Dir::new();
    let base = canonical(&dir);
    let missing = base.join("missing.conf");
    let run = import(&missing, &base.join("cutover.toml"));
    assert_eq!(run.code, Some(1), "stderr:\n{}", run.stderr);
    assert!(
        run.stderr.contains("missing.conf"),
        "stderr:\n{}",
        run.stderr
    );

    // An include naming one file (no glob) that is not there: nginx refuses it too.
    let conf = base.join("nginx.conf");
    std::fs::write(&conf, "events {}\nhttp {\n    include sites/api.conf;\n}\n")
        .expect("write config");
    let (accepted, said) = Nginx::test_config(&conf);
    assert!(!accepted, "nginx accepts it:\n{said}");
    let run = import(&conf, &base.join("cutover.toml"));
    assert_eq!(run.code, Some(1), "stderr:\n{}", run.stderr);
    assert!(
        run.stderr.contains("sites/api.conf"),
        "stderr:\n{}",
        run.stderr
    );
}

#[test]
fn nginx_accepts_every_corpus_case() {
    for case in ALL {
        let dir = Dir::new();
        let base = canonical(&dir);
        write_case(case, &base, GOLDEN_PORT, &golden_addr);
        let (accepted, said) = Nginx::test_config(&base.join("nginx.conf"));
        assert!(accepted, "{}: nginx -t:\n{said}", case.dir);
    }
}

// === Differential: nginx and cutover side by side ===

/// GET `path` for `host` over a new connection from `from` (a loopback address; the
/// kernel's choice when `None`): the `x-upstream` that answered, or what came instead.
async fn ask(
    addr: SocketAddr,
    from: Option<Ipv4Addr>,
    host: &str,
    path: &str,
    headers: &[(&str, String)],
) -> Result<String, String> {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    if let Some(ip) = from {
        socket
            .bind(SocketAddr::from((ip, 0)))
            .expect("bind the client address");
    }
    let stream = socket.connect(addr).await.expect("connect to the proxy");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut req = Request::get(path).header("host", host);
    for (k, v) in headers {
        req = req.header(*k, v.as_str());
    }
    let req = req.body(Full::new(Bytes::new())).expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(10), send.send_request(req))
        .await
        .expect("an answer within 10 s")
        .map_err(|e| format!("no answer: {e}"))?;
    let status = resp.status();
    let upstream = resp
        .headers()
        .get("x-upstream")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    match upstream {
        Some(up) if status == 200 => Ok(up),
        _ => Err(format!(
            "{status} {}",
            String::from_utf8_lossy(&body).lines().next().unwrap_or("")
        )),
    }
}

/// The source address and headers that carry key number `i`.
fn keyed(key: Key, i: usize) -> (Option<Ipv4Addr>, Vec<(&'static str, String)>) {
    match key {
        Key::None => (None, Vec::new()),
        Key::ClientIp => {
            let (hi, lo) = (i / 250, i % 250 + 1);
            let hi = u8::try_from(hi).expect("fewer than 64000 keys");
            let lo = u8::try_from(lo).expect("1..=250");
            (Some(Ipv4Addr::new(127, 10, hi, lo)), Vec::new())
        }
        Key::Cookie(name) => (None, vec![("cookie", format!("{name}=user-{i}"))]),
        Key::Header(name) => (None, vec![(name, format!("user-{i}"))]),
    }
}

/// What one proxy did with a [`Shares`] check.
struct Spread {
    /// Upstream -> requests it answered (or "error: ..." -> count).
    counts: BTreeMap<String, usize>,
    /// Keys asked again that landed elsewhere the second time.
    moved: Vec<String>,
}

async fn spread(addr: SocketAddr, s: &Shares) -> Spread {
    let mut counts = BTreeMap::new();
    let mut first = Vec::new();
    for i in 0..KEYS {
        let (from, headers) = keyed(s.key, i);
        let got = ask(addr, from, s.host, s.path, &headers)
            .await
            .unwrap_or_else(|e| format!("error: {e}"));
        *counts.entry(got.clone()).or_insert(0) += 1;
        first.push(got);
    }
    let mut moved = Vec::new();
    if !matches!(s.key, Key::None) {
        for (i, was) in first.iter().enumerate().take(ASKED_AGAIN) {
            let (from, headers) = keyed(s.key, i);
            let now = ask(addr, from, s.host, s.path, &headers)
                .await
                .unwrap_or_else(|e| format!("error: {e}"));
            if &now != was {
                moved.push(format!("key {i}: {was} then {now}"));
            }
        }
    }
    Spread { counts, moved }
}

/// What one proxy answered to every probe and every shares check of the case.
struct Seen {
    probes: Vec<Result<String, String>>,
    spreads: Vec<Spread>,
}

async fn observe(addr: SocketAddr, case: &Case) -> Seen {
    let mut probes = Vec::new();
    for p in case.probes {
        probes.push(ask(addr, None, p.host, p.path, &[]).await);
    }
    let mut spreads = Vec::new();
    for s in case.shares {
        spreads.push(spread(addr, s).await);
    }
    Seen { probes, spreads }
}

/// Where `seen` strays from the case's comments: one line each. `nginx`, when given,
/// is what nginx answered, shown beside it.
fn strays(side: &str, case: &Case, seen: &Seen, nginx: Option<&Seen>) -> Vec<String> {
    let show = |r: &Result<String, String>| match r {
        Ok(up) => up.clone(),
        Err(e) => e.clone(),
    };
    let mut out = Vec::new();
    for (i, (p, got)) in case.probes.iter().zip(&seen.probes).enumerate() {
        if !matches!(got, Ok(up) if p.to.contains(&up.as_str())) {
            let beside = nginx.map_or(String::new(), |n| {
                format!(" (nginx: {})", show(&n.probes[i]))
            });
            out.push(format!(
                "{side}: Host {} GET {} -> {}{beside}; the config says {:?}",
                p.host,
                p.path,
                show(got),
                p.to
            ));
        }
    }
    for (i, (s, got)) in case.shares.iter().zip(&seen.spreads).enumerate() {
        let share =
            |up: &str| 100.0 * got.counts.get(up).copied().unwrap_or(0) as f64 / KEYS as f64;
        let off = s
            .expect
            .iter()
            .any(|(up, want)| (share(up) - want).abs() > TOLERANCE)
            || got
                .counts
                .keys()
                .any(|up| !s.expect.iter().any(|(e, _)| e == up));
        if off {
            let beside = nginx.map_or(String::new(), |n| {
                format!(" (nginx: {:?})", n.spreads[i].counts)
            });
            out.push(format!(
                "{side}: Host {} GET {} by {:?}, {KEYS} keys: {:?}{beside}; the config says {:?} (± {TOLERANCE} points)",
                s.host, s.path, s.key, got.counts, s.expect
            ));
        }
        if !got.moved.is_empty() {
            out.push(format!(
                "{side}: Host {} GET {} by {:?}: keys changed sides: {:?}",
                s.host, s.path, s.key, got.moved
            ));
        }
    }
    out
}

/// A loopback port nothing listens on right now.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// The import's TOML with the test's listeners: `[listen]`, `[admin]` and
/// `[access_log]` replaced (loopback, port 0, no access log).
fn on_test_ports(toml: &str) -> String {
    use toml_edit::{value, Array, DocumentMut, Item, Table};
    let mut doc: DocumentMut = toml
        .parse()
        .unwrap_or_else(|e| panic!("the import is not TOML: {e}\n{toml}"));
    let mut listen = Table::new();
    listen["http"] = value(Array::from_iter(["127.0.0.1:0"]));
    doc["listen"] = Item::Table(listen);
    let mut admin = Table::new();
    admin["listen"] = value("127.0.0.1:0");
    doc["admin"] = Item::Table(admin);
    let mut log = Table::new();
    log["enabled"] = value(false);
    doc["access_log"] = Item::Table(log);
    doc.to_string()
}

/// Runs the case under nginx, checks nginx routes as the config's comments say, then
/// imports the same files, runs cutover on the import, and checks it routes alike.
async fn differential(case: &Case) {
    let mut upstreams = BTreeMap::new();
    for name in upstream_names(case) {
        let label: &'static str = Box::leak(name.to_lowercase().into_boxed_str());
        upstreams.insert(name, Upstream::start(label).await);
    }
    let addr_of = |name: &str| {
        upstreams
            .get(name)
            .map(|u| u.addr.to_string())
            .expect("an upstream for every placeholder")
    };

    // nginx, on a port picked here: another test may take it before nginx binds it,
    // so a few tries.
    let mut started = None;
    for _ in 0..5 {
        let dir = Dir::new();
        let base = canonical(&dir);
        let port = free_port();
        write_case(case, &base, &port.to_string(), &addr_of);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        match Nginx::start(&base.join("nginx.conf"), addr).await {
            Ok(nginx) => {
                started = Some((nginx, dir, base));
                break;
            }
            Err(e) if e.contains("Address already in use") => continue,
            Err(e) => panic!("{}: nginx did not start: {e}", case.dir),
        }
    }
    let (nginx, _nginx_dir, base) = started.expect("nginx on a free port within 5 tries");
    let on_nginx = observe(nginx.addr, case).await;
    let wrong = strays("nginx", case, &on_nginx, None);
    assert!(
        wrong.is_empty(),
        "{}: nginx does not route as the config's comments say:\n{}\n{}",
        case.dir,
        wrong.join("\n"),
        nginx.logs()
    );

    let dir = Dir::new();
    let out = canonical(&dir).join("imported.toml");
    let run = import(&base.join("nginx.conf"), &out);
    assert_eq!(
        run.code,
        Some(expected_code(case)),
        "{}: import exit code; stderr:\n{}",
        case.dir,
        run.stderr
    );
    let toml = run.output.unwrap_or_else(|| {
        panic!(
            "{}: import wrote nothing to -o OUT; stderr:\n{}",
            case.dir, run.stderr
        )
    });
    let config = dir.path.join("cutover.toml");
    std::fs::write(&config, on_test_ports(&toml)).expect("write cutover config");
    let proxy = Proxy::start_file(&config, dir).await;
    let on_cutover = observe(proxy.addr, case).await;
    let wrong = strays("cutover", case, &on_cutover, Some(&on_nginx));
    assert!(
        wrong.is_empty(),
        "{}: cutover does not route as nginx does:\n{}\nimported:\n{toml}",
        case.dir,
        wrong.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_and_cutover_agree_on_a_weighted_upstream() {
    differential(&A_WEIGHTED).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_and_cutover_agree_on_servers_and_locations() {
    differential(&B_SERVERS).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_and_cutover_agree_on_a_split_by_client_address() {
    differential(&C_SPLIT_IP).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_and_cutover_agree_on_splits_by_cookie_and_header() {
    differential(&D_SPLIT_COOKIE).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_and_cutover_agree_on_included_files() {
    differential(&E_INCLUDES).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_and_cutover_agree_on_nested_includes() {
    differential(&G_NESTED).await;
}
