//! The serde layer: mirrors the TOML file one to one, rejects unknown keys, and keeps
//! the spans that `validate` needs to point at a line and column.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, value::MapAccessDeserializer, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

use super::units::{ByteSize, HumanDuration};

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub runtime: RawRuntime,
    #[serde(default)]
    pub listen: RawListen,
    pub tls: Option<Spanned<RawTls>>,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub access_log: RawAccessLog,
    #[serde(default)]
    pub pools: BTreeMap<String, Spanned<RawPool>>,
    #[serde(default)]
    pub routes: Vec<Spanned<RawRoute>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRuntime {
    pub workers: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListen {
    pub http: Option<Vec<Spanned<String>>>,
    pub https: Option<Vec<Spanned<String>>>,
    pub proxy_protocol: Option<Spanned<bool>>,
    pub trusted_proxies: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(crate) certs: Spanned<Vec<Spanned<RawCert>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCert {
    pub cert: Spanned<String>,
    pub key: Spanned<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub listen: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub connect_timeout: Option<Spanned<HumanDuration>>,
    pub response_timeout: Option<Spanned<HumanDuration>>,
    pub client_header_timeout: Option<Spanned<HumanDuration>>,
    pub idle_timeout: Option<Spanned<HumanDuration>>,
    pub max_header_bytes: Option<Spanned<ByteSize>>,
    pub max_body_bytes: Option<Spanned<ByteSize>>,
    pub(crate) shutdown_grace: Option<Spanned<HumanDuration>>,
    pub retries: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccessLog {
    pub(crate) enabled: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPool {
    pub backends: Spanned<Vec<Spanned<RawBackend>>>,
    pub(crate) resolve_every: Option<Spanned<HumanDuration>>,
    pub warmup: Option<Spanned<RawWarmup>>,
    pub slow_start: Option<Spanned<RawSlowStart>>,
    pub eject: Option<Spanned<RawEject>>,
}

/// `"10.0.1.11:8080"` or `{ addr = "10.0.1.12:8080", weight = 2 }`.
#[derive(Debug)]
pub(super) struct RawBackend {
    pub addr: String,
    pub weight: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackendTable {
    addr: String,
    weight: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWarmup {
    pub path: Spanned<String>,
    pub interval: Option<Spanned<HumanDuration>>,
    pub timeout: Option<Spanned<HumanDuration>>,
    pub healthy: Option<Spanned<u32>>,
    pub(crate) unhealthy: Option<Spanned<u32>>,
}

/// `"60s"` (the window) or `{ window = "60s", aggression = 1.0, min_percent = 10 }`.
#[derive(Debug, Default)]
pub(super) struct RawSlowStart {
    pub window: Option<HumanDuration>,
    pub(crate) aggression: Option<f64>,
    pub min_percent: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlowStartTable {
    window: Option<HumanDuration>,
    aggression: Option<f64>,
    min_percent: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEject {
    pub consecutive_failures: Option<u32>,
    pub base: Option<HumanDuration>,
    pub max: Option<HumanDuration>,
    pub(crate) max_percent: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub name: Spanned<String>,
    pub hosts: Option<Vec<Spanned<String>>>,
    pub path_prefix: Option<Spanned<String>>,
    pub split: Spanned<BTreeMap<String, Spanned<u32>>>,
    pub sticky: Option<Spanned<String>>,
    #[serde(rename = "override")]
    pub(crate) override_: Option<Spanned<String>>,
    pub fallback: Option<bool>,
    pub(crate) ramp_up: Option<Spanned<HumanDuration>>,
    pub autopilot: Option<Spanned<RawAutopilot>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAutopilot {
    pub run: Option<i64>,
    pub pool: Spanned<String>,
    pub baseline: Spanned<String>,
    pub steps: Option<Spanned<Vec<Spanned<i64>>>>,
    pub hold: Option<Spanned<HumanDuration>>,
    pub min_requests: Option<u64>,
    pub window: Option<Spanned<HumanDuration>>,
    pub max_error_ratio: Option<Spanned<f64>>,
    pub max_latency_ratio: Option<Spanned<f64>>,
    pub max_latency: Option<Spanned<HumanDuration>>,
    pub quantile: Option<Spanned<f64>>,
    pub source: Option<Spanned<String>>,
    pub prometheus: Option<Spanned<String>>,
    pub prometheus_selector: Option<Spanned<String>>,
}

// === impl RawBackend ===

impl<'de> Deserialize<'de> for RawBackend {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawBackend;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("\"host:port\" or { addr = \"host:port\", weight = N }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawBackend, E> {
                Ok(RawBackend {
                    addr: v.to_owned(),
                    weight: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawBackend, A::Error> {
                let t = RawBackendTable::deserialize(MapAccessDeserializer::new(map))?;
                Ok(RawBackend {
                    addr: t.addr,
                    weight: t.weight,
                })
            }
        }
        deserializer.deserialize_any(V)
    }
}

// === impl RawSlowStart ===

impl<'de> Deserialize<'de> for RawSlowStart {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawSlowStart;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a window such as \"60s\" or { window, aggression, min_percent }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawSlowStart, E> {
                let window = super::units::parse_duration(v).map_err(E::custom)?;
                Ok(RawSlowStart {
                    window: Some(HumanDuration(window)),
                    ..RawSlowStart::default()
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawSlowStart, A::Error> {
                let t = RawSlowStartTable::deserialize(MapAccessDeserializer::new(map))?;
                Ok(RawSlowStart {
                    window: t.window,
                    aggression: t.aggression,
                    min_percent: t.min_percent,
                })
            }
        }
        deserializer.deserialize_any(V)
    }
}
