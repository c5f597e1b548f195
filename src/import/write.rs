//! The model as a cutover config file: every section in the order of the example
//! config, and a comment on each pool and route naming the lines it came from.

use std::fmt::Write as _;

use super::model::Model;
use super::Finding;

/// A TOML string literal.
fn q(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// A TOML key: bare when it can be.
fn key(s: &str) -> String {
    let bare = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if bare {
        s.to_owned()
    } else {
        q(s)
    }
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| q(s)).collect();
    format!("[{}]", quoted.join(", "))
}

pub(super) fn toml(m: &Model, source: &str, notes: &[Finding]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Imported from {source} by `cutover import nginx`.");
    let _ = writeln!(out, "# Check it with `cutover check -c FILE`; what could not be carried over was listed on stderr.");
    if !notes.is_empty() {
        out.push_str("#\n# Carried, with a difference:\n");
        for n in notes {
            let _ = writeln!(out, "#   {n}");
        }
    }
    if let Some(w) = m.workers {
        let _ = writeln!(out, "\n[runtime]\nworkers = {w}");
    }
    out.push_str("\n[listen]\n");
    let _ = writeln!(out, "http = {}", list(&m.http));
    if !m.https.is_empty() {
        let _ = writeln!(out, "https = {}", list(&m.https));
    }
    if m.proxy_protocol {
        out.push_str("proxy_protocol = true\n");
    }
    if !m.trusted.is_empty() {
        let _ = writeln!(out, "trusted_proxies = {}", list(&m.trusted));
    }
    if !m.certs.is_empty() {
        out.push_str("\n[tls]\ncerts = [\n");
        for (cert, k, at) in &m.certs {
            let _ = writeln!(out, "  {{ cert = {}, key = {} }},  # {at}", q(cert), q(k));
        }
        out.push_str("]\n");
    }
    out.push_str("\n[limits]\n");
    for (k, (v, at)) in &m.limits {
        let _ = writeln!(out, "{k} = {v}  # {at}");
    }
    if !m.limits.contains_key("max_body_bytes") {
        out.push_str("max_body_bytes = \"1MiB\"  # nginx's default client_max_body_size\n");
    }
    for p in &m.pools {
        let _ = writeln!(out, "\n# upstream {} ({})", p.name, p.at);
        let _ = writeln!(out, "[pools.{}]", key(&p.name));
        let backends: Vec<String> = p
            .backends
            .iter()
            .map(|b| match b.weight {
                1 => q(&b.addr),
                w => format!("{{ addr = {}, weight = {w} }}", q(&b.addr)),
            })
            .collect();
        let _ = writeln!(out, "backends = [{}]", backends.join(", "));
        let mut eject = Vec::new();
        if let Some(n) = p.eject_failures {
            eject.push(format!("consecutive_failures = {n}"));
        }
        if let Some(b) = &p.eject_base {
            eject.push(format!("base = {}", q(b)));
        }
        if !eject.is_empty() {
            let _ = writeln!(out, "eject = {{ {} }}", eject.join(", "));
        }
        if let Some(w) = &p.slow_start {
            let _ = writeln!(out, "slow_start = {}", q(w));
        }
    }
    for r in &m.routes {
        let _ = writeln!(out, "\n# location {} ({})", r.prefix, r.at);
        out.push_str("[[routes]]\n");
        let _ = writeln!(out, "name = {}", q(&r.name));
        if !r.hosts.is_empty() {
            let _ = writeln!(out, "hosts = {}", list(&r.hosts));
        }
        let _ = writeln!(out, "path_prefix = {}", q(&r.prefix));
        let split: Vec<String> = r
            .split
            .iter()
            .map(|(p, w)| format!("{} = {w}", key(p)))
            .collect();
        let _ = writeln!(out, "split = {{ {} }}", split.join(", "));
        if let Some(s) = &r.sticky {
            let _ = writeln!(out, "sticky = {}", q(s));
        }
    }
    out
}
