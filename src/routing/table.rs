//! Route matching: the most specific host tier that has a matching prefix wins, then the
//! longest whole-segment path prefix. Built once per snapshot; a lookup is a few hash
//! probes (one per host label and per path segment), whatever the number of routes.

use rustc_hash::FxHashMap;

use crate::config::{HostPattern, RouteConfig};

// The tables are built from the config and only read afterwards, so a fast hash without
// flooding resistance is safe: a request's key cannot add entries or lengthen chains.
type Map<V> = FxHashMap<String, V>;

/// Prefix (normalised, no trailing slash) -> route index, for one host tier.
#[derive(Debug, Default)]
struct Prefixes {
    by_prefix: Map<usize>,
    /// The longest prefix in the tier: longer candidates need no lookup.
    longest: usize,
}

#[derive(Debug, Default)]
pub(crate) struct RouteTable {
    exact: Map<Prefixes>,
    /// Keyed by the suffix with its leading dot: `*.example.com` is `.example.com`.
    wildcard: Map<Prefixes>,
    any: Prefixes,
}

impl Prefixes {
    fn insert(&mut self, prefix: &str, route: usize) {
        self.longest = self.longest.max(prefix.len());
        self.by_prefix.insert(prefix.to_owned(), route);
    }
}

impl RouteTable {
    pub(crate) fn build(routes: &[RouteConfig]) -> Self {
        let mut t = RouteTable::default();
        for (i, r) in routes.iter().enumerate() {
            if r.hosts.is_empty() {
                t.any.insert(&r.path_prefix, i);
            }
            for h in &r.hosts {
                let tier = match h {
                    HostPattern::Exact(name) => t.exact.entry(name.clone()).or_default(),
                    HostPattern::Suffix(sfx) => t.wildcard.entry(sfx.clone()).or_default(),
                };
                tier.insert(&r.path_prefix, i);
            }
        }
        t
    }

    /// Whether any route names a host: if none does, a request's host need not be read.
    pub(crate) fn by_host(&self) -> bool {
        !self.exact.is_empty() || !self.wildcard.is_empty()
    }

    /// The route for `host` (any case, port ignored; `None` if the request had none) and
    /// `path` (without the query).
    pub(crate) fn find(&self, host: Option<&str>, path: &str) -> Option<usize> {
        if let Some(host) = host.filter(|_| self.by_host()).map(strip_port) {
            let lower;
            let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
                lower = host.to_ascii_lowercase();
                lower.as_str()
            } else {
                host
            };
            let host = host.strip_suffix('.').unwrap_or(host);
            if let Some(i) = self.exact.get(host).and_then(|p| longest_prefix(p, path)) {
                return Some(i);
            }
            if !self.wildcard.is_empty() {
                // Suffixes from the longest (".b.example.com") to the shortest (".com").
                for (dot, _) in host.match_indices('.') {
                    let sfx = &host[dot..];
                    if let Some(i) = self.wildcard.get(sfx).and_then(|p| longest_prefix(p, path)) {
                        return Some(i);
                    }
                }
            }
        }
        longest_prefix(&self.any, path)
    }
}

/// `api.example.com:8443` -> `api.example.com`; `[::1]:80` -> `[::1]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// The longest prefix of `path` that ends on a segment boundary and has a route.
fn longest_prefix(prefixes: &Prefixes, path: &str) -> Option<usize> {
    if prefixes.by_prefix.is_empty() {
        return None;
    }
    let path = &path[..path
        .bytes()
        .position(|b| b == b'?' || b == b'#')
        .unwrap_or(path.len())];
    // The candidates, longest first: the whole path, then the part before each slash.
    // Only those no longer than the longest prefix are looked up, so a table with just
    // a catch-all (`""`) costs one probe, whatever the path.
    let mut end = path.len();
    loop {
        if end <= prefixes.longest {
            if let Some(&i) = prefixes.by_prefix.get(&path[..end]) {
                return Some(i);
            }
        }
        let within = end.min(prefixes.longest + 1);
        end = path.as_bytes()[..within].iter().rposition(|&b| b == b'/')?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(hosts: &[&str], prefix: &str) -> RouteConfig {
        RouteConfig {
            name: format!("{hosts:?}{prefix}"),
            hosts: hosts
                .iter()
                .map(|h| match h.strip_prefix('*') {
                    Some(s) => HostPattern::Suffix(s.to_owned()),
                    None => HostPattern::Exact((*h).to_owned()),
                })
                .collect(),
            path_prefix: prefix.trim_end_matches('/').to_owned(),
            split: vec![("p".into(), 1)],
            sticky: None,
            override_: None,
            fallback: true,
            ramp_up: std::time::Duration::ZERO,
            autopilot: None,
        }
    }

    #[test]
    fn matching_table() {
        let routes = vec![
            route(&[], "/"),                     // 0
            route(&[], "/ad/"),                  // 1
            route(&["api.example.com"], "/"),    // 2
            route(&["api.example.com"], "/ad"),  // 3
            route(&["*.example.com"], "/"),      // 4
            route(&["*.ads.example.com"], "/"),  // 5
            route(&["only.example.org"], "/x/"), // 6
        ];
        let t = RouteTable::build(&routes);
        let cases: &[(Option<&str>, &str, Option<usize>)] = &[
            (Some("api.example.com"), "/", Some(2)),
            (Some("API.Example.COM:8080"), "/ad/x", Some(3)),
            (Some("api.example.com"), "/ad", Some(3)),
            (Some("api.example.com"), "/adx", Some(2)),
            (Some("api.example.com"), "/ad?q=1", Some(3)),
            (Some("x.example.com"), "/ad/", Some(4)),
            (Some("a.b.example.com"), "/", Some(4)),
            (Some("x.ads.example.com"), "/", Some(5)),
            (Some("deep.x.ads.example.com"), "/", Some(5)),
            (Some("example.com"), "/ad/1", Some(1)),
            (Some("other.net"), "/adx", Some(0)),
            (None, "/ad", Some(1)),
            (Some("only.example.org"), "/x", Some(6)),
            (Some("only.example.org"), "/y", Some(0)),
            (Some("only.example.org"), "/x/deeper/still", Some(6)),
            (Some("only.example.org"), "/xy/z", Some(0)),
            (None, "/ad/ad/ad", Some(1)),
            (None, "/a/ad", Some(0)),
            (None, "", Some(0)),
        ];
        for (host, path, want) in cases {
            assert_eq!(t.find(*host, path), *want, "{host:?} {path}");
        }
    }

    #[test]
    fn no_catch_all_means_no_route() {
        let t = RouteTable::build(&[route(&["a.example.com"], "/a")]);
        assert_eq!(t.find(Some("a.example.com"), "/b"), None);
        assert_eq!(t.find(Some("b.example.com"), "/a"), None);
    }
}
