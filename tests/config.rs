//! Config validation: every rule of DESIGN.md, each error located by line and column.

use std::path::Path;

use cutover::config;

/// Every error for `text`, as "line:column: message", in file order.
fn errors(text: &str) -> Vec<String> {
    match config::parse(Path::new("t.toml"), text) {
        Ok(_) => Vec::new(),
        Err(e) => e
            .errors
            .iter()
            .map(|d| format!("{}:{}: {}", d.line, d.column, d.message))
            .collect(),
    }
}

fn assert_error(text: &str, line: usize, contains: &str) {
    let errs = errors(text);
    assert!(
        errs.iter()
            .any(|e| e.starts_with(&format!("{line}:")) && e.contains(contains)),
        "expected an error on line {line} containing {contains:?}, got {errs:?}"
    );
}

const POOL: &str = "[pools.p]\nbackends = [\"127.0.0.1:1\"]\n";

#[test]
fn every_shipped_example_is_valid() {
    let mut n = 0;
    for entry in std::fs::read_dir("config").expect("config dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            if let Err(e) = config::load(&path) {
                panic!("{} is invalid:\n{e}", path.display());
            }
            n += 1;
        }
    }
    assert!(n >= 3, "expected the example configs, found {n}");
}

#[test]
fn defaults_are_the_documented_ones() {
    let c = config::parse(
        Path::new("t.toml"),
        &format!("{POOL}[[routes]]\nname = \"r\"\nsplit = {{ p = 1 }}\n"),
    )
    .expect("valid")
    .config;
    assert_eq!(c.listen.http, vec!["0.0.0.0:8080".parse().expect("addr")]);
    assert_eq!(c.admin, "127.0.0.1:9900".parse().expect("addr"));
    assert_eq!(c.limits.connect_timeout.as_secs(), 2);
    assert_eq!(c.limits.response_timeout.as_secs(), 30);
    assert_eq!(c.limits.client_header_timeout.as_secs(), 10);
    assert_eq!(c.limits.idle_timeout.as_secs(), 60);
    assert_eq!(c.limits.max_header_bytes, 65536);
    assert_eq!(c.limits.max_body_bytes, None);
    assert_eq!(c.limits.retries, 2);
    assert!(c.access_log);
    assert!(c.routes[0].fallback);
    assert_eq!(c.routes[0].path_prefix, "");
    assert_eq!(c.pools[0].eject.consecutive_failures, 5);
}

#[test]
fn unknown_keys_are_errors_at_their_position() {
    assert_error("[limits]\nretires = 2\n", 2, "retires");
    assert_error(
        &format!("{POOL}[[routes]]\nname = \"r\"\nsplit = {{ p = 1 }}\nstickky = \"ip\"\n"),
        6,
        "stickky",
    );
    assert_error(
        "[pools.p]\nbackends = [{ addr = \"127.0.0.1:1\", wieght = 2 }]\n",
        2,
        "wieght",
    );
    assert_error(
        "[pools.p]\nbackends = [\"127.0.0.1:1\"]\nwarmup = { path = \"/r\", intervall = \"1s\" }\n",
        3,
        "intervall",
    );
    assert_error("[serverr]\n", 1, "serverr");
}

#[test]
fn each_validation_rule() {
    let route =
        |extra: &str| format!("{POOL}[[routes]]\nname = \"r\"\nsplit = {{ p = 1 }}\n{extra}");
    assert_error(
        &format!("{POOL}[[routes]]\nname = \"r\"\nsplit = {{ q = 1 }}\n"),
        5,
        "does not exist",
    );
    assert_error(
        &format!("{POOL}[[routes]]\nname = \"r\"\nsplit = {{ p = 0 }}\n"),
        5,
        "every split weight at 0",
    );
    assert_error("[pools.p]\nbackends = []\n", 2, "no backends");
    assert_error(
        &format!("{POOL}warmup = {{ path = \"/ready now\" }}\n"),
        3,
        "not a valid request target",
    );
    // `none` is the metrics' label for no route: a route of that name would share it.
    assert_error(
        &format!("{POOL}[[routes]]\nname = \"none\"\nsplit = {{ p = 1 }}\n"),
        4,
        "\"none\" cannot be a route name",
    );
    assert_error(
        "[pools.p]\nbackends = [\"10.0.0.1\"]\n",
        2,
        "bad backend address",
    );
    assert_error(
        "[pools.p]\nbackends = [\"10.0.0.1:99999\"]\n",
        2,
        "bad backend address",
    );
    assert_error(
        &format!(
            "{}[[routes]]\nname = \"r\"\nsplit = {{ p = 1 }}\n",
            route("")
        ),
        7,
        "duplicate route name",
    );
    assert_error(
        &format!(
            "{}[[routes]]\nname = \"s\"\npath_prefix = \"/\"\nsplit = {{ p = 1 }}\n",
            route("")
        ),
        6,
        "both claim any host",
    );
    assert_error(
        &format!(
            "{POOL}[[routes]]\nname = \"a\"\nhosts = [\"A.example.com\"]\npath_prefix = \"/x/\"\nsplit = {{ p = 1 }}\n\
             [[routes]]\nname = \"b\"\nhosts = [\"a.example.com\"]\npath_prefix = \"/x\"\nsplit = {{ p = 1 }}\n"
        ),
        8,
        "both claim host",
    );
    assert_error(
        "[listen]\nhttps = [\"0.0.0.0:8443\"]\n",
        2,
        "needs certificates",
    );
    assert_error(
        "[tls]\ncerts = [{ cert = \"missing.pem\", key = \"missing.key\" }]\n",
        2,
        "cannot read certificate",
    );
    for key in [
        "connect_timeout",
        "response_timeout",
        "client_header_timeout",
        "idle_timeout",
    ] {
        assert_error(
            &format!("[limits]\n{key} = \"0ms\"\n"),
            2,
            "greater than zero",
        );
    }
    assert_error(
        "[limits]\nconnect_timeout = \"2 seconds\"\n",
        2,
        "invalid duration",
    );
    assert_error("[limits]\nmax_body_bytes = \"10MB\"\n", 2, "invalid size");
    assert_error(&route("sticky = \"session\"\n"), 6, "bad key source");
    assert_error(&route("override = \"ip\"\n"), 6, "bad key source");
    assert_error(
        &route("hosts = [\"api.example.com:8080\"]\n"),
        6,
        "bad host",
    );
    assert_error(&route("path_prefix = \"ad\"\n"), 6, "must start with '/'");
    assert_error(
        "[listen]\nhttp = [\"localhost\"]\n",
        2,
        "bad listen address",
    );
    assert_error(
        "[admin]\nlisten = \"0.0.0.0:8080\"\n",
        2,
        "also a proxy listener",
    );
}

#[test]
fn all_errors_are_reported_at_once() {
    let errs = errors("[limits]\nretries = 1\nidle_timeout = \"0s\"\n[pools.a]\nbackends = []\n[pools.b]\nbackends = [\"x\"]\n");
    assert!(errs.len() >= 3, "{errs:?}");
}

/// `errs` is exactly `want`, each given as ("line:column", a word of its message).
fn assert_exactly(errs: &[String], want: &[(&str, &str)]) {
    assert_eq!(errs.len(), want.len(), "{errs:?}");
    for (e, (at, word)) in errs.iter().zip(want) {
        assert!(
            e.starts_with(&format!("{at}: ")) && e.contains(word),
            "expected {at} {word:?}, got {errs:?}"
        );
    }
}

#[test]
fn typos_wrong_types_and_rule_errors_are_all_reported_together() {
    let errs = errors(
        "[limits]\n\
         retries = \"x\"\n\
         [pools.p]\n\
         backends = [\"127.0.0.1:1\"]\n\
         wieght = 3\n\
         [listen]\n\
         htp = [\"0.0.0.0:8080\"]\n\
         [[routes]]\n\
         name = \"r\"\n\
         split = { q = 1 }\n",
    );
    assert_exactly(
        &errs,
        &[
            ("2:11", "expected u32"),
            ("5:1", "unknown field `wieght`"),
            ("7:1", "unknown field `htp`"),
            ("10:15", "pool \"q\", which does not exist"),
        ],
    );
}

#[test]
fn an_unknown_key_in_an_inline_table_does_not_hide_the_next_one() {
    let errs = errors(
        "[pools.p]\n\
         backends = [{ addr = \"127.0.0.1:1\", wieght = 2 }]\n\
         [limits]\n\
         retires = 2\n",
    );
    assert_exactly(
        &errs,
        &[
            ("2:37", "unknown field `wieght`"),
            ("4:1", "unknown field `retires`"),
        ],
    );
}

#[test]
fn a_syntax_error_is_the_only_error() {
    let errs = errors("[limits]\nretires = 2\nretries = = 1\n[serverr]\n");
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("3:"), "{errs:?}");
}

#[test]
fn a_wrong_type_in_a_required_field_is_not_also_a_missing_field() {
    let errs = errors(&format!(
        "{POOL}[limits]\nretires = 2\n[[routes]]\nname = \"r\"\nsplit = \"x\"\n"
    ));
    assert_exactly(
        &errs,
        &[
            ("4:1", "unknown field `retires`"),
            ("7:9", "expected a map"),
        ],
    );
}

#[test]
fn sizes_and_slow_start_shorthand() {
    let c = config::parse(
        Path::new("t.toml"),
        "[limits]\nmax_body_bytes = \"10MiB\"\nmax_header_bytes = \"64KiB\"\n\
         [pools.p]\nbackends = [\"127.0.0.1:1\"]\nslow_start = \"30s\"\n\
         [[routes]]\nname = \"r\"\nsplit = { p = 1 }\n",
    )
    .expect("valid")
    .config;
    assert_eq!(c.limits.max_body_bytes, Some(10 << 20));
    assert_eq!(c.limits.max_header_bytes, 65536);
    let ss = c.pools[0].slow_start.as_ref().expect("slow start");
    assert_eq!((ss.window.as_secs(), ss.min_percent), (30, 10));
}

#[test]
fn an_unused_pool_is_a_warning_not_an_error() {
    let loaded = config::parse(
        Path::new("t.toml"),
        &format!("{POOL}[pools.spare]\nbackends = [\"127.0.0.1:2\"]\n[[routes]]\nname = \"r\"\nsplit = {{ p = 1 }}\n"),
    )
    .expect("valid");
    assert_eq!(loaded.warnings.len(), 1);
    assert!(loaded.warnings[0].message.contains("spare"));
}

#[test]
fn a_blanked_entry_leaves_no_echo_behind() {
    // Each wrong value is the user's one error: the empty split or backend list its
    // removal leaves is not reported as a second one.
    for (text, line, contains) in [
        (
            format!("{POOL}[[routes]]\nname = \"r\"\nsplit = {{ p = \"x\" }}\n"),
            5,
            "invalid type",
        ),
        (
            "[pools.p]\nbackends = [5]\n[[routes]]\nname = \"r\"\nsplit = { p = 1 }\n".to_owned(),
            2,
            "",
        ),
    ] {
        let errs = errors(&text);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with(&format!("{line}:")) && errs[0].contains(contains),
            "{errs:?}"
        );
    }
}

/// A route `r` over pools `ecs` and `k8s` (and `other`), with `autopilot` as its
/// `[routes.autopilot]` table: the table starts on line 10.
fn ramp(split: &str, autopilot: &str) -> String {
    format!(
        "[pools.ecs]\nbackends = [\"127.0.0.1:1\"]\n[pools.k8s]\nbackends = [\"127.0.0.1:2\"]\n\
         [pools.other]\nbackends = [\"127.0.0.1:3\"]\n\
         [[routes]]\nname = \"r\"\nsplit = {split}\n[routes.autopilot]\n{autopilot}\n"
    )
}

const RAMP: &str = "pool = \"k8s\"\nbaseline = \"ecs\"";

#[test]
fn autopilot_rules() {
    let split = "{ ecs = 100, k8s = 0 }";
    let with = |extra: &str| ramp(split, &format!("{RAMP}\n{extra}"));
    assert_eq!(errors(&with("")), Vec::<String>::new());
    assert_exactly(
        &errors(&ramp(split, "pool = \"k9s\"\nbaseline = \"ecs\"")),
        &[
            (
                "9:9",
                "must name exactly its pool \"k9s\" and baseline \"ecs\"",
            ),
            (
                "11:8",
                "autopilot pool \"k9s\" of route \"r\" does not exist",
            ),
        ],
    );
    assert_exactly(
        &errors(&ramp("{ ecs = 90, k8s = 5, other = 5 }", RAMP)),
        &[(
            "9:9",
            "must name exactly its pool \"k8s\" and baseline \"ecs\"",
        )],
    );
    assert_exactly(
        &errors(&ramp(split, "pool = \"k8s\"\nbaseline = \"k8s\"")),
        &[("12:12", "baseline must be another pool")],
    );
    assert_exactly(
        &errors(&with("steps = [10, 5, 101, 0, 100]")),
        &[
            ("13:14", "step 5 does not increase"),
            ("13:17", "step 101 is outside 1..100"),
            ("13:22", "step 0 is outside 1..100"),
        ],
    );
    assert_exactly(&errors(&with("steps = []")), &[("13:9", "cannot be empty")]);
    assert_exactly(
        &errors(&with("steps = [10, 10]")),
        &[("13:14", "step 10 does not increase")],
    );
    assert_exactly(
        &errors(&with("max_error_ratio = 0\nmax_latency_ratio = -1.5")),
        &[
            ("13:19", "max_error_ratio must be above 0"),
            ("14:21", "max_latency_ratio must be above 0"),
        ],
    );
    assert_exactly(
        &errors(&with("max_error_ratio = 2")),
        &[("13:19", "at most 1")],
    );
    assert_exactly(
        &errors(&with(
            "quantile = 1.0\nwindow = \"200ms\"\nmax_latency = \"0s\"",
        )),
        &[
            ("13:12", "quantile must be between 0 and 1"),
            ("14:10", "window must be at least 250ms"),
            ("15:15", "max_latency must be above 0"),
        ],
    );
    assert_exactly(
        &errors(&with("source = \"prometheus\"")),
        &[("13:10", "needs the server's address")],
    );
    assert_exactly(
        &errors(&with(
            "source = \"prometheus\"\nprometheus = \"https://prom:9090\"",
        )),
        &[("14:14", "https is not supported")],
    );
    assert_exactly(
        &errors(&with("source = \"thanos\"")),
        &[("13:10", "expected \"local\" or \"prometheus\"")],
    );
    assert_exactly(
        &errors(&with("hold = \"10 minutes\"")),
        &[("13:8", "invalid duration")],
    );
    assert_exactly(
        &errors(&with("stpes = [1]")),
        &[("13:1", "unknown field `stpes`")],
    );
    assert_exactly(
        &errors(&ramp(split, "pool = \"k8s\"")),
        &[("10:1", "baseline")],
    );
}

#[test]
fn autopilot_defaults_are_the_documented_ones() {
    let c = config::parse(Path::new("t.toml"), &ramp("{ ecs = 100, k8s = 0 }", RAMP))
        .expect("valid")
        .config;
    let a = c.routes[0].autopilot.clone().expect("autopilot");
    assert_eq!(a.steps, [1, 10, 50, 90, 100]);
    assert_eq!((a.hold.as_secs(), a.window.as_secs()), (600, 60));
    assert_eq!((a.min_requests, a.run), (500, 0));
    assert_eq!((a.max_error_ratio, a.max_latency_ratio), (0.01, 1.5));
    assert_eq!((a.max_latency, a.quantile), (None, 0.99));
    assert_eq!(a.source, config::Source::Local);
    let fleet = config::parse(
        Path::new("t.toml"),
        &ramp(
            "{ ecs = 100, k8s = 0 }",
            &format!("{RAMP}\nsource = \"prometheus\"\nprometheus = \"http://prometheus:9090\""),
        ),
    )
    .expect("valid")
    .config;
    let source = fleet.routes[0].autopilot.as_ref().map(|a| a.source.clone());
    assert_eq!(
        source,
        Some(config::Source::Prometheus {
            url: "http://prometheus:9090".into(),
            selector: None
        })
    );
    // A URL with source = "local" is a warning: it would be read by nobody.
    let warned = config::parse(
        Path::new("t.toml"),
        &ramp(
            "{ ecs = 100, k8s = 0 }",
            &format!("{RAMP}\nprometheus = \"http://prometheus:9090\""),
        ),
    )
    .expect("valid");
    assert!(
        warned
            .warnings
            .iter()
            .any(|w| w.message.contains("only read with source")),
        "{:?}",
        warned.warnings
    );
}
