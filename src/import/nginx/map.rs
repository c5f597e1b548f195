//! From nginx's directives to cutover's model: `upstream` → pools, `split_clients` →
//! a split with its sticky key, the proxy timeouts and body size → limits (`server`
//! and `location` with `proxy_pass` → routes are in [`super::server`]). Whatever has
//! no equivalent is listed with where it stood and why.

use std::collections::{HashMap, HashSet};

use super::known::{classify, Known};
use super::parse::{At, Directive};
use super::values::{duration, quoted, size, with_port};
use crate::import::model::{Backend, Model, Pool};
use crate::import::Finding;

/// What one `split_clients` block says.
#[derive(Clone)]
pub(super) struct Split {
    pub(super) key: String,
    pub(super) shares: Vec<(String, f64)>,
    pub(super) at: At,
}

pub(super) struct Mapper {
    pub model: Model,
    pub left_out: Vec<Finding>,
    pub notes: Vec<Finding>,
    pub(super) splits: HashMap<String, Split>,
    /// Upstream names by their lower case (nginx matches them in any case).
    pub(super) upstreams: HashMap<String, String>,
    /// (host or "" for any, prefix) already claimed by a route.
    pub(super) claimed: HashSet<(String, String)>,
    pub(super) route_names: HashSet<String>,
    /// Server names taken by a server already (lower case).
    pub(super) server_names: HashSet<String>,
}

impl Mapper {
    pub(super) fn new() -> Mapper {
        Mapper {
            model: Model::default(),
            left_out: Vec::new(),
            notes: Vec::new(),
            splits: HashMap::new(),
            upstreams: HashMap::new(),
            claimed: HashSet::new(),
            route_names: HashSet::new(),
            server_names: HashSet::new(),
        }
    }

    pub(super) fn leave(&mut self, d: &Directive, why: impl Into<String>) {
        self.left_out.push(Finding::new(&d.at, &d.name, why));
    }

    pub(super) fn note(&mut self, d: &Directive, why: impl Into<String>) {
        self.notes.push(Finding::new(&d.at, &d.name, why));
    }

    /// Takes a directive the mapping has no rule of its own for.
    pub(super) fn other(&mut self, d: &Directive) {
        match classify(&d.name, &d.args) {
            Known::Implicit => {}
            Known::Note(why) => self.note(d, why),
            Known::LeftOut(why) => self.leave(d, why),
        }
    }

    pub(super) fn main(&mut self, directives: &[Directive]) {
        // A file of a conf.d or sites-enabled, imported alone: what would be inside
        // `http` stands at the top.
        let bare = !directives.iter().any(|d| d.name == "http")
            && directives
                .iter()
                .any(|d| matches!(d.name.as_str(), "server" | "upstream"));
        if bare {
            return self.http(directives);
        }
        for d in directives {
            match d.name.as_str() {
                "http" => self.http(d.block.as_deref().unwrap_or_default()),
                "events" => {}
                "worker_processes" => {
                    self.model.workers = match d.args.first().map(String::as_str) {
                        Some("auto") => Some(0),
                        Some(n) => n.parse().ok(),
                        None => None,
                    };
                }
                _ => self.other(d),
            }
        }
    }

    fn http(&mut self, block: &[Directive]) {
        // Upstreams and splits first: servers refer to them wherever they stand.
        for d in block {
            match d.name.as_str() {
                "upstream" => {
                    if let Some(name) = d.args.first() {
                        self.upstreams
                            .insert(name.to_ascii_lowercase(), name.clone());
                    }
                }
                "split_clients" => self.split_clients(d),
                _ => {}
            }
        }
        // The server nginx picks for a Host no server names: the one marked
        // default_server, else the first.
        let servers = || block.iter().filter(|d| d.name == "server");
        let first_server = servers().next();
        let explicit_default = servers().find(|d| {
            d.block.as_deref().unwrap_or_default().iter().any(|l| {
                l.name == "listen"
                    && l.args
                        .iter()
                        .any(|a| a == "default_server" || a == "default")
            })
        });
        // nginx picks a server per listen address; cutover routes every listener alike.
        let listens = |d: &Directive| {
            let mut l: Vec<String> = d
                .block
                .as_deref()
                .unwrap_or_default()
                .iter()
                .filter(|l| l.name == "listen")
                .filter_map(|l| l.args.first().cloned())
                .collect();
            l.sort();
            l
        };
        if let Some(first) = first_server {
            if let Some(other) = servers().find(|s| listens(s) != listens(first)) {
                self.leave(other, "servers listen on different addresses: cutover routes every listener alike, by Host and path only");
            }
        }
        for d in block {
            match d.name.as_str() {
                "upstream" => self.upstream(d),
                "split_clients" => {}
                "server" => {
                    let is_default = match explicit_default {
                        Some(def) => std::ptr::eq(def, d),
                        None => first_server.is_some_and(|f| std::ptr::eq(f, d)),
                    };
                    self.server(d, is_default, servers().count() == 1);
                }
                _ => {
                    if !self.limit(d) && !self.real_ip(d) {
                        self.other(d);
                    }
                }
            }
        }
    }

    fn split_clients(&mut self, d: &Directive) {
        let (Some(key), Some(var)) = (d.args.first(), d.args.get(1)) else {
            return self.leave(d, "split_clients needs a key and a variable");
        };
        let mut shares = Vec::new();
        let mut given = 0.0;
        let mut rest = None;
        for entry in d.block.as_deref().unwrap_or_default() {
            let target = entry.args.first().cloned().unwrap_or_default();
            if entry.name == "*" {
                rest = Some(target);
            } else if let Some(p) = entry
                .name
                .strip_suffix('%')
                .and_then(|p| p.parse::<f64>().ok())
            {
                given += p;
                shares.push((target, p));
            } else {
                self.leave(entry, "not a split_clients share");
            }
        }
        if let Some(target) = rest {
            shares.push((target, (100.0 - given).max(0.0)));
        }
        let name = var.trim_start_matches('$').to_owned();
        self.splits.insert(
            name,
            Split {
                key: key.clone(),
                shares,
                at: d.at.clone(),
            },
        );
    }

    fn upstream(&mut self, d: &Directive) {
        let Some(name) = d.args.first() else {
            return self.leave(d, "upstream without a name");
        };
        let mut pool = Pool::new(name, &d.at);
        for s in d.block.as_deref().unwrap_or_default() {
            if s.name != "server" {
                self.other(s);
                continue;
            }
            let Some(addr) = s.args.first() else { continue };
            if addr.starts_with("unix:") {
                self.leave(s, "unix sockets are not backends cutover can reach");
                continue;
            }
            let mut backend = Backend {
                addr: with_port(addr, 80),
                weight: 1,
            };
            let mut skip = None;
            for param in &s.args[1..] {
                let (k, v) = param.split_once('=').unwrap_or((param, ""));
                match k {
                    "weight" => backend.weight = v.parse().unwrap_or(1),
                    "max_fails" => match v.parse::<u32>() {
                        Ok(0) => self.leave(s, "max_fails=0 turns failure counting off; cutover always ejects (eject has its defaults)"),
                        Ok(n) => pool.eject_failures = Some(n),
                        Err(_) => {}
                    },
                    "fail_timeout" => pool.eject_base = duration(v),
                    "slow_start" => pool.slow_start = duration(v),
                    "backup" => skip = Some("backup servers: cutover has no standby backends (a route's fallback moves traffic between pools instead)"),
                    "down" => skip = Some("marked down"),
                    "resolve" | "service" => {}
                    _ => self.note(s, format!("server parameter {k} is not carried")),
                }
            }
            match skip {
                Some(why) => self.leave(s, why),
                None => pool.backends.push(backend),
            }
        }
        if pool.backends.is_empty() {
            self.leave(d, "an upstream with no usable server");
            return;
        }
        self.model.pools.push(pool);
    }

    /// `[limits]` from the proxy directives; true when `d` was one.
    pub(super) fn limit(&mut self, d: &Directive) -> bool {
        let Some(arg) = d.args.first() else {
            return false;
        };
        let (key, value) = match d.name.as_str() {
            "proxy_connect_timeout" => ("connect_timeout", duration(arg).map(quoted)),
            "proxy_read_timeout" => ("response_timeout", duration(arg).map(quoted)),
            "client_header_timeout" => ("client_header_timeout", duration(arg).map(quoted)),
            "keepalive_timeout" => ("idle_timeout", duration(arg).map(quoted)),
            "client_max_body_size" => ("max_body_bytes", size(arg).map(quoted)),
            "proxy_next_upstream_tries" => (
                "retries",
                arg.parse::<u32>()
                    .ok()
                    .filter(|&n| n > 0)
                    .map(|n| (n - 1).to_string()),
            ),
            "proxy_next_upstream" if arg == "off" => ("retries", Some("0".to_owned())),
            "proxy_next_upstream" => {
                if d.args
                    .iter()
                    .any(|a| a.starts_with("http_") || a == "non_idempotent")
                {
                    self.leave(d, "cutover retries on connection failures only, never on a backend's 5xx or after a non-idempotent request reached it");
                }
                return true;
            }
            _ => return false,
        };
        let Some(value) = value else {
            self.leave(d, format!("cannot read {arg:?}"));
            return true;
        };
        if value.starts_with("\"0") && key != "max_body_bytes" {
            self.leave(d, "a zero time turns this off in nginx; cutover's timeouts are above zero, so its default stays");
            return true;
        }
        match self.model.limits.get(key) {
            Some((old, at)) if *old != value => {
                let why = format!("cutover's limits are global: {key} = {old} from {at} is kept");
                self.leave(d, why);
            }
            Some(_) => {}
            None => {
                self.model.limits.insert(key, (value, d.at.clone()));
            }
        }
        true
    }

    /// `set_real_ip_from` → trusted proxies; true when `d` was one of the realip
    /// directives.
    pub(super) fn real_ip(&mut self, d: &Directive) -> bool {
        match d.name.as_str() {
            "set_real_ip_from" => {
                self.model.trusted.extend(d.args.first().cloned());
                true
            }
            "real_ip_header" => {
                match d.args.first().map(String::as_str) {
                    Some("X-Forwarded-For") | Some("x-forwarded-for") => {}
                    Some("proxy_protocol") => self.model.proxy_protocol = true,
                    _ => self.leave(d, "cutover reads the client address from X-Forwarded-For or the PROXY protocol only"),
                }
                true
            }
            _ => false,
        }
    }
}
