//! The checks of the `[[routes]]` list: names, the hosts and prefixes each claims,
//! splits, and key sources.

use std::collections::HashMap;
use std::time::Duration;

use http::HeaderName;
use toml::Spanned;

use super::{is_hostname, Checker};
use crate::config::raw;
use crate::config::{HostPattern, KeySource, RouteConfig};

impl Checker<'_> {
    pub(super) fn routes(
        &mut self,
        raw: &[Spanned<raw::RawRoute>],
        pools: &std::collections::BTreeMap<String, Spanned<raw::RawPool>>,
    ) -> Vec<RouteConfig> {
        let mut names: HashMap<String, ()> = HashMap::new();
        // (host pattern or None for any host, prefix) -> route name, to find overlaps.
        let mut claimed: HashMap<(Option<HostPattern>, String), String> = HashMap::new();
        let mut out = Vec::new();
        for route in raw {
            let r = route.get_ref();
            let name = r.name.get_ref().clone();
            if name.is_empty() {
                self.error(r.name.span(), "route name cannot be empty");
            } else if name == "none" {
                // The metrics' label for requests that matched no route.
                self.error(r.name.span(), "\"none\" cannot be a route name");
            } else if names.insert(name.clone(), ()).is_some() {
                self.error(r.name.span(), format!("duplicate route name {name:?}"));
            }
            let hosts: Vec<HostPattern> = r
                .hosts
                .iter()
                .flatten()
                .filter_map(|h| self.host_pattern(h))
                .collect();
            let path_prefix = match &r.path_prefix {
                None => String::new(),
                Some(p) if !p.get_ref().starts_with('/') => {
                    self.error(p.span(), "path_prefix must start with '/'");
                    String::new()
                }
                Some(p) => p.get_ref().trim_end_matches('/').to_owned(),
            };
            let keys: Vec<Option<HostPattern>> = if hosts.is_empty() {
                vec![None]
            } else {
                hosts.iter().cloned().map(Some).collect()
            };
            for key in keys {
                let shown = match &key {
                    None => "any host".to_owned(),
                    Some(HostPattern::Exact(h)) => format!("host {h:?}"),
                    Some(HostPattern::Suffix(s)) => format!("host \"*{s}\""),
                };
                if let Some(other) = claimed.insert((key, path_prefix.clone()), name.clone()) {
                    if other != name {
                        self.error(
                            route.span(),
                            format!(
                                "routes {other:?} and {name:?} both claim {shown} with path_prefix \"{}/\"",
                                path_prefix
                            ),
                        );
                    }
                }
            }
            let mut split = Vec::new();
            for (pool, weight) in r.split.get_ref() {
                if !pools.contains_key(pool) {
                    self.error(
                        weight.span(),
                        format!("route {name:?} splits to pool {pool:?}, which does not exist"),
                    );
                }
                split.push((pool.clone(), *weight.get_ref()));
            }
            if split.is_empty() {
                self.error(r.split.span(), format!("route {name:?} has an empty split"));
            } else if split.iter().all(|(_, w)| *w == 0) {
                self.error(
                    r.split.span(),
                    format!("route {name:?} has every split weight at 0"),
                );
            }
            let sticky = r.sticky.as_ref().and_then(|s| self.key_source(s, true));
            let override_ = r.override_.as_ref().and_then(|s| self.key_source(s, false));
            let ramp_up = r.ramp_up.as_ref().map_or(Duration::ZERO, |d| d.get_ref().0);
            let autopilot = r
                .autopilot
                .as_ref()
                .map(|a| self.autopilot(&name, a, &r.split, pools));
            out.push(RouteConfig {
                name,
                hosts,
                path_prefix,
                split,
                sticky,
                override_,
                fallback: r.fallback.unwrap_or(true),
                ramp_up,
                autopilot,
            });
        }
        out
    }

    fn host_pattern(&mut self, h: &Spanned<String>) -> Option<HostPattern> {
        let text = h.get_ref().to_ascii_lowercase();
        let (pattern, name) = match text.strip_prefix("*.") {
            Some(rest) => (HostPattern::Suffix(format!(".{rest}")), rest.to_owned()),
            None => (HostPattern::Exact(text.clone()), text.clone()),
        };
        if is_hostname(&name) {
            Some(pattern)
        } else {
            self.error(
                h.span(),
                format!("bad host {:?}: expected a name like \"api.example.com\" or \"*.example.com\" (no port)", h.get_ref()),
            );
            None
        }
    }

    fn key_source(&mut self, s: &Spanned<String>, allow_ip: bool) -> Option<KeySource> {
        let text = s.get_ref().as_str();
        let parsed = match text.split_once(':') {
            _ if text == "ip" && allow_ip => Some(KeySource::ClientIp),
            Some(("cookie", name)) if !name.is_empty() => Some(KeySource::Cookie(name.to_owned())),
            Some(("header", name)) => HeaderName::from_bytes(name.as_bytes())
                .ok()
                .map(KeySource::Header),
            _ => None,
        };
        if parsed.is_none() {
            let expected = if allow_ip {
                "\"cookie:NAME\", \"header:NAME\" or \"ip\""
            } else {
                "\"cookie:NAME\" or \"header:NAME\""
            };
            self.error(
                s.span(),
                format!("bad key source {text:?}: expected {expected}"),
            );
        }
        parsed
    }
}
