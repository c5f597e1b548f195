//! What an import comes to, before it is written as TOML: cutover's config in the
//! shape the writer needs, each part with the place it came from.

use std::collections::BTreeMap;

use super::nginx::At;

#[derive(Debug, Default)]
pub(crate) struct Model {
    /// `[runtime] workers`, when the source sets it (0 = one per core).
    pub workers: Option<u32>,
    pub http: Vec<String>,
    pub https: Vec<String>,
    pub proxy_protocol: bool,
    pub trusted: Vec<String>,
    /// cert, key, where.
    pub certs: Vec<(String, String, At)>,
    /// `[limits]` key → (TOML value, where).
    pub limits: BTreeMap<&'static str, (String, At)>,
    pub pools: Vec<Pool>,
    pub routes: Vec<Route>,
}

#[derive(Debug)]
pub(crate) struct Pool {
    pub name: String,
    pub backends: Vec<Backend>,
    pub eject_failures: Option<u32>,
    pub eject_base: Option<String>,
    pub slow_start: Option<String>,
    pub at: At,
}

impl Pool {
    pub(crate) fn new(name: &str, at: &At) -> Pool {
        Pool {
            name: name.to_owned(),
            backends: Vec::new(),
            eject_failures: None,
            eject_base: None,
            slow_start: None,
            at: at.clone(),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Backend {
    pub addr: String,
    pub weight: u32,
}

#[derive(Debug)]
pub(crate) struct Route {
    pub name: String,
    /// Empty: any host.
    pub hosts: Vec<String>,
    pub prefix: String,
    pub split: Vec<(String, u32)>,
    pub sticky: Option<String>,
    pub at: At,
}
