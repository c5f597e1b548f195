//! `server` and `location` blocks with `proxy_pass` → routes: hosts from
//! `server_name` (the default server's routes take any host), path prefixes from
//! locations, the split from the upstream or `split_clients` variable named.

use super::map::Mapper;
use super::parse::Directive;
use super::values::{sticky_of, weights_of, with_port};
use crate::import::model::{Backend, Pool, Route};
use crate::import::Finding;

impl Mapper {
    /// `is_default`: nginx's default server (its routes also take every Host no other
    /// route names); `alone`: the only server (so they need not name its own hosts).
    pub(super) fn server(&mut self, d: &Directive, is_default: bool, alone: bool) {
        let block = d.block.as_deref().unwrap_or_default();
        let mut names = Vec::new();
        let mut listens = 0;
        let mut tls = false;
        let (mut cert, mut key) = (None, None);
        for s in block {
            match s.name.as_str() {
                "listen" => {
                    listens += 1;
                    let (addr, ssl) = self.listen(s);
                    tls |= ssl;
                    let list = if ssl {
                        &mut self.model.https
                    } else {
                        &mut self.model.http
                    };
                    if let Some(addr) = addr.filter(|a| !list.contains(a)) {
                        list.push(addr);
                    }
                }
                "server_name" => names.extend(s.args.iter().cloned().map(|n| (n, s.clone()))),
                "ssl_certificate" => cert = s.args.first().cloned().map(|c| (c, s.at.clone())),
                "ssl_certificate_key" => key = s.args.first().cloned(),
                "location" => {}
                _ => {
                    if !self.limit(s) && !self.real_ip(s) {
                        self.other(s);
                    }
                }
            }
        }
        if let (Some((cert, at)), Some(key)) = (cert, key) {
            self.model.certs.push((cert, key, at));
        } else if tls {
            self.leave(
                d,
                "an ssl listener without ssl_certificate and ssl_certificate_key",
            );
        }
        if listens == 0 {
            // nginx's own default.
            let addr = "0.0.0.0:80".to_owned();
            if !self.model.http.contains(&addr) {
                self.model.http.push(addr);
            }
        }
        let mut hosts = Vec::new();
        for (name, at) in names {
            match name.as_str() {
                "" | "_" => {}
                n if n.starts_with('~') => {
                    self.leave(&at, "regex server names have no cutover equivalent")
                }
                n if n.starts_with('.') => {
                    hosts.push(n[1..].to_owned());
                    hosts.push(format!("*{n}"));
                }
                n if n.ends_with(".*") => self.leave(
                    &at,
                    "trailing wildcards (name.*) have no cutover equivalent",
                ),
                n => hosts.push(n.to_owned()),
            }
        }
        // A name an earlier server has is that server's, as nginx has it ("conflicting
        // server name ... ignored").
        let mut conflicting = false;
        hosts.retain(|h| {
            let fresh = self.server_names.insert(h.to_ascii_lowercase());
            conflicting |= !fresh;
            fresh
        });
        if conflicting {
            self.leave(d, "a server name an earlier server already has: nginx ignores it here, and so does the import");
        }
        let label = hosts
            .first()
            .cloned()
            .unwrap_or_else(|| "default".to_owned());
        if hosts.is_empty() && !is_default {
            if conflicting {
                return;
            }
            // `server_name _` and the like on a server that is not the default one:
            // nginx never picks it by name.
            return self.leave(
                d,
                "a server with no usable name that is not the default server: nginx never picks it",
            );
        }
        // The default server's routes also name no hosts: every Host reaches them that
        // no other route names, as nginx sends it to the default server. Alone, that is
        // all it needs.
        if is_default && !hosts.is_empty() {
            self.note(
                d,
                "the default server: its routes also take every Host no other route names",
            );
        }
        let named = if is_default && alone {
            Vec::new()
        } else {
            hosts
        };
        // Prefix locations before exact ones, and `/p/` before `/p`, so that where two
        // become the same cutover prefix, the one nginx sends most of it to keeps it.
        let mut locations: Vec<&Directive> =
            block.iter().filter(|s| s.name == "location").collect();
        locations.sort_by_key(|l| {
            let exact = l.args.first().is_some_and(|m| m == "=");
            let slash = l.args.last().is_some_and(|p| p.ends_with('/'));
            (exact, !slash)
        });
        for s in locations {
            if !named.is_empty() {
                self.location(s, &named, &label);
            }
            if is_default {
                let any = if named.is_empty() {
                    label.clone()
                } else {
                    format!("{label}-any")
                };
                self.location(s, &[], &any);
            }
        }
    }

    /// A `listen`: its address, and whether it is ssl.
    fn listen(&mut self, d: &Directive) -> (Option<String>, bool) {
        let Some(first) = d.args.first() else {
            return (None, false);
        };
        let rest = &d.args[1..];
        let ssl = rest.iter().any(|a| a == "ssl");
        if rest.iter().any(|a| a == "proxy_protocol") {
            self.model.proxy_protocol = true;
        }
        if first.starts_with("unix:") {
            self.leave(d, "unix socket listeners are not supported");
            return (None, ssl);
        }
        let addr = listen_addr(first);
        if addr.parse::<std::net::SocketAddr>().is_err() {
            self.leave(
                d,
                "cutover listens on an IP address and port; a name here is not resolved",
            );
            return (None, ssl);
        }
        (Some(addr), ssl)
    }

    fn location(&mut self, d: &Directive, hosts: &[String], label: &str) {
        let (modifier, path) = match d.args.as_slice() {
            [path] => ("", path.as_str()),
            [m, path] => (m.as_str(), path.as_str()),
            _ => return self.leave(d, "a location without a path"),
        };
        if !matches!(modifier, "" | "^~" | "=") {
            return self.leave(d, "regex locations have no cutover equivalent");
        }
        if path.starts_with('@') {
            return self.leave(d, "named locations have no cutover equivalent");
        }
        let block = d.block.as_deref().unwrap_or_default();
        let mut split = None;
        for s in block {
            match s.name.as_str() {
                "proxy_pass" => split = self.proxy_pass(s, path),
                "location" => self.leave(s, "nested locations have no cutover equivalent"),
                _ => {
                    if !self.limit(s) && !self.real_ip(s) {
                        self.other(s);
                    }
                }
            }
        }
        let Some((split, sticky)) = split else {
            if !block.iter().any(|s| s.name == "proxy_pass") {
                self.leave(d, "no proxy_pass: cutover only proxies");
            }
            return;
        };
        let prefix = path.trim_end_matches('/');
        let mut kept = Vec::new();
        for h in hosts
            .iter()
            .map(String::as_str)
            .chain(hosts.is_empty().then_some(""))
        {
            if self.claimed.insert((h.to_owned(), prefix.to_owned())) {
                kept.push(h.to_owned());
            }
        }
        if kept.is_empty() {
            return self.leave(d, "another location already routes this path for these names (cutover's prefixes are whole path segments)");
        }
        let hosts = if hosts.is_empty() { Vec::new() } else { kept };
        if modifier == "=" {
            self.leave(d, "an exact location: carried as a prefix on whole path segments, so the route also takes what lies under it");
        } else if !path.ends_with('/') {
            self.note(d, format!("nginx matches {path} as a string prefix (also {path}x); cutover on whole path segments ({path} and {path}/...)"));
        }
        let name = self.route_name(label, path);
        self.model.routes.push(Route {
            name,
            hosts,
            prefix: if path.is_empty() {
                "/".into()
            } else {
                path.to_owned()
            },
            split,
            sticky,
            at: d.at.clone(),
        });
    }

    fn route_name(&mut self, label: &str, path: &str) -> String {
        let base: String = format!("{label}{path}")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect::<String>()
            .split('-')
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("-");
        let base = if base.is_empty() || base == "none" {
            "route".to_owned()
        } else {
            base
        };
        let mut name = base.clone();
        let mut n = 2;
        while !self.route_names.insert(name.clone()) {
            name = format!("{base}-{n}");
            n += 1;
        }
        name
    }

    /// The split and sticky key a `proxy_pass` sends a location's requests by.
    #[allow(clippy::type_complexity)]
    fn proxy_pass(
        &mut self,
        d: &Directive,
        location: &str,
    ) -> Option<(Vec<(String, u32)>, Option<String>)> {
        let target = d.args.first()?;
        let Some(rest) = target.strip_prefix("http://") else {
            self.leave(
                d,
                "cutover speaks plain HTTP/1.1 to backends (https:// or another scheme)",
            );
            return None;
        };
        let (host, uri) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        // `http://backend$request_uri`: the path as it came, which is what cutover sends.
        let (host, uri) = match host.find('$').filter(|&i| i > 0) {
            Some(i) if &host[i..] == "$request_uri" && uri.is_empty() => (&host[..i], ""),
            Some(_) => {
                self.leave(d, "a variable in proxy_pass other than a split_clients one has no cutover equivalent");
                return None;
            }
            None => (host, uri),
        };
        if !uri.is_empty() && uri != location {
            self.leave(
                d,
                "a URI in proxy_pass rewrites the path; cutover forwards the path as it came",
            );
        }
        if let Some(var) = host.strip_prefix('$') {
            let Some(split) = self.splits.get(var) else {
                self.leave(d, format!("${var} is not a split_clients variable"));
                return None;
            };
            let (key, shares, at) = (split.key.clone(), split.shares.clone(), split.at.clone());
            let sticky = sticky_of(&key);
            if sticky.is_none() {
                self.left_out.push(Finding::new(&at, "split_clients", format!("the key {key:?}: cutover is sticky by a client address, a cookie or a header; the split stays, not sticky")));
            }
            let mut weights = Vec::new();
            for (pool, share) in weights_of(&shares) {
                let Some(pool) = self.upstreams.get(&pool.to_ascii_lowercase()).cloned() else {
                    self.left_out.push(Finding::new(
                        &at,
                        "split_clients",
                        format!("{pool:?} is not an upstream"),
                    ));
                    continue;
                };
                weights.push((pool, share));
            }
            return (!weights.is_empty()).then_some((weights, sticky));
        }
        if let Some(name) = self.upstreams.get(&host.to_ascii_lowercase()) {
            return Some((vec![(name.clone(), 1)], None));
        }
        // A backend named in proxy_pass itself: a pool of its own.
        let addr = with_port(host, 80);
        let base = format!("direct-{}", host.replace([':', '.', '[', ']'], "-"));
        // `a.b` and `a-b` read alike: the second gets a name of its own.
        let mut name = base.clone();
        let mut n = 2;
        while let Some(p) = self.model.pools.iter().find(|p| p.name == name) {
            if p.backends.first().is_some_and(|b| b.addr == addr) {
                return Some((vec![(name, 1)], None));
            }
            name = format!("{base}-{n}");
            n += 1;
        }
        let mut pool = Pool::new(&name, &d.at);
        pool.backends.push(Backend { addr, weight: 1 });
        self.model.pools.push(pool);
        Some((vec![(name, 1)], None))
    }
}

/// nginx's `listen` address as `ip:port`: a bare port is every IPv4 address, `*` is
/// `0.0.0.0`, `localhost` is `127.0.0.1`, no port is `:80`.
fn listen_addr(listen: &str) -> String {
    if let Ok(port) = listen.parse::<u16>() {
        return format!("0.0.0.0:{port}");
    }
    let (host, port) = match listen.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && (h.ends_with(']') || !h.contains(':')) => (h, p),
        _ if listen.starts_with('[') && listen.ends_with(']') => (listen, "80"),
        _ if listen.contains(':') => return listen.to_owned(),
        _ => (listen, "80"),
    };
    let host = match host {
        "*" => "0.0.0.0",
        "localhost" => "127.0.0.1",
        h => h,
    };
    format!("{host}:{port}")
}

#[cfg(test)]
mod tests {
    use super::listen_addr;

    #[test]
    fn listen_addresses_read_as_nginx_reads_them() {
        assert_eq!(listen_addr("80"), "0.0.0.0:80");
        assert_eq!(listen_addr("*:8080"), "0.0.0.0:8080");
        assert_eq!(listen_addr("127.0.0.1"), "127.0.0.1:80");
        assert_eq!(listen_addr("localhost:81"), "127.0.0.1:81");
        assert_eq!(listen_addr("[::]:443"), "[::]:443");
        assert_eq!(listen_addr("[::1]"), "[::1]:80");
    }
}
