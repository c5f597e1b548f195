//! The Prometheus text exposition (format 0.0.4): the families of DESIGN "Metrics",
//! filled from the live series at scrape time and written by the `prometheus` crate's
//! encoder. The admin listener walks the snapshot and hands each series here with its
//! labels; nothing in this file runs per request.

use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use prometheus::{Encoder as _, TextEncoder};

use super::series::{code_label, Totals, BUCKETS};

/// The content type of the exposition: the text format's, with the charset of the
/// label values (route and pool names) said, as Prometheus's own client libraries do.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every family cutover exports, in the order of DESIGN's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    Requests,
    RequestDuration,
    UpstreamRequests,
    UpstreamDuration,
    BackendUp,
    BackendEffectiveWeight,
    RouteSplitWeight,
    ConfigReloads,
    ConfigGeneration,
    ConfigLastReloadSuccess,
    PoolEffectiveWeight,
    Inflight,
    ClientConnections,
    DnsResolutions,
    AutopilotStep,
    AutopilotState,
    AutopilotRollbacks,
    AutopilotRun,
}

const FAMILIES: [(Family, &str, MetricType, &str); 18] = [
    (Family::Requests, "cutover_requests_total", MetricType::COUNTER,
        "Requests answered, by route, pool and the status sent to the client (pool=\"none\" when none was picked)."),
    (Family::RequestDuration, "cutover_request_duration_seconds", MetricType::HISTOGRAM,
        "Request received to response headers sent."),
    (Family::UpstreamRequests, "cutover_upstream_requests_total", MetricType::COUNTER,
        "Attempts sent to a backend, by outcome: its status, or connect_error, timeout, reset, bad_response."),
    (Family::UpstreamDuration, "cutover_upstream_duration_seconds", MetricType::HISTOGRAM,
        "Request sent to a backend to its response headers, per attempt."),
    (Family::BackendUp, "cutover_backend_up", MetricType::GAUGE,
        "1 if the backend can receive traffic."),
    (Family::BackendEffectiveWeight, "cutover_backend_effective_weight", MetricType::GAUGE,
        "Configured weight times the warm-up/slow-start factor; 0 while warming, down or ejected."),
    (Family::RouteSplitWeight, "cutover_route_split_weight", MetricType::GAUGE,
        "The split weight the config gives a pool on a route."),
    (Family::ConfigReloads, "cutover_config_reloads_total", MetricType::COUNTER,
        "Config reloads, by result."),
    (Family::ConfigGeneration, "cutover_config_generation", MetricType::GAUGE,
        "Generation of the live config: 1 at start, one more per applied reload."),
    (Family::ConfigLastReloadSuccess, "cutover_config_last_reload_success_timestamp_seconds", MetricType::GAUGE,
        "When the live config was loaded, in Unix seconds."),
    (Family::PoolEffectiveWeight, "cutover_pool_effective_weight", MetricType::GAUGE,
        "The weight the pool pick uses now: the split weight (while ramping, on its way) times the pool's ready capacity."),
    (Family::Inflight, "cutover_inflight_requests", MetricType::GAUGE,
        "Requests being handled now."),
    (Family::ClientConnections, "cutover_client_connections", MetricType::GAUGE,
        "Open client connections."),
    (Family::DnsResolutions, "cutover_dns_resolutions_total", MetricType::COUNTER,
        "Lookups of backend names, by pool and result: success, empty, failure (the last good answer is kept)."),
    (Family::AutopilotStep, "cutover_autopilot_step", MetricType::GAUGE,
        "The route's autopilot step, 1-based; 0 while pending."),
    (Family::AutopilotState, "cutover_autopilot_state", MetricType::GAUGE,
        "1 for the state the route's autopilot is in: pending, running, done or rolled_back."),
    (Family::AutopilotRollbacks, "cutover_autopilot_rollbacks_total", MetricType::COUNTER,
        "Autopilot rollbacks, by route and the check that failed."),
    (Family::AutopilotRun, "cutover_autopilot_run", MetricType::GAUGE,
        "The run of the route's autopilot, by which a fleet's instances tell this ramp from the one before."),
];

/// An exposition being filled.
#[derive(Debug)]
pub(crate) struct Exposition {
    families: Vec<MetricFamily>,
}

impl Default for Exposition {
    fn default() -> Self {
        Exposition::new()
    }
}

impl Exposition {
    pub(crate) fn new() -> Self {
        let families = FAMILIES
            .iter()
            .map(|(_, name, kind, help)| {
                let mut mf = MetricFamily::default();
                mf.set_name((*name).to_owned());
                mf.set_help((*help).to_owned());
                mf.set_field_type(*kind);
                mf
            })
            .collect();
        Exposition { families }
    }

    fn push(&mut self, family: Family, labels: &[(&str, &str)], fill: impl FnOnce(&mut Metric)) {
        let mut m = Metric::from_label(label_pairs(labels));
        fill(&mut m);
        self.families[family as usize].mut_metric().push(m);
    }

    pub(crate) fn gauge(&mut self, family: Family, labels: &[(&str, &str)], value: f64) {
        self.push(family, labels, |m| {
            let mut g = Gauge::default();
            g.set_value(value);
            m.set_gauge(g);
        });
    }

    pub(crate) fn counter(&mut self, family: Family, labels: &[(&str, &str)], value: f64) {
        self.push(family, labels, |m| {
            let mut c = Counter::default();
            c.set_value(value);
            m.set_counter(c);
        });
    }

    /// One counter per code the series has seen, labelled `code_name` (`code` or
    /// `outcome`).
    pub(crate) fn codes(
        &mut self,
        family: Family,
        labels: &[(&str, &str)],
        code_name: &str,
        totals: &Totals,
    ) {
        for &(code, n) in &totals.codes {
            let code = code_label(code);
            let mut all = labels.to_vec();
            all.push((code_name, &code));
            self.counter(family, &all, n as f64);
        }
    }

    pub(crate) fn histogram(&mut self, family: Family, labels: &[(&str, &str)], totals: &Totals) {
        self.push(family, labels, |m| {
            let mut h = Histogram::default();
            let mut cumulative = 0;
            let buckets = BUCKETS
                .iter()
                .zip(&totals.buckets)
                .map(|(&bound, &n)| {
                    cumulative += n;
                    let mut b = Bucket::default();
                    b.set_upper_bound(bound);
                    b.set_cumulative_count(cumulative);
                    b
                })
                .collect();
            h.set_bucket(buckets);
            h.set_sample_count(totals.observations());
            h.set_sample_sum(totals.sum_seconds);
            m.set_histogram(h);
        });
    }

    /// The text exposition; families without a series are left out (the format has no
    /// way to write an empty one).
    pub(crate) fn encode(self) -> String {
        let families: Vec<MetricFamily> = self
            .families
            .into_iter()
            .filter(|mf| !mf.get_metric().is_empty())
            .collect();
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            // Only an empty family or name fails, and both are ruled out above.
            tracing::error!(error = %e, "metrics encoding failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

fn label_pairs(labels: &[(&str, &str)]) -> Vec<LabelPair> {
    labels
        .iter()
        .map(|(name, value)| {
            let mut l = LabelPair::default();
            l.set_name((*name).to_owned());
            l.set_value((*value).to_owned());
            l
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_follow_the_table_order() {
        for (i, (family, ..)) in FAMILIES.iter().enumerate() {
            assert_eq!(*family as usize, i);
        }
    }

    #[test]
    fn a_histogram_is_written_cumulative_with_its_labels() {
        let mut totals = Totals::default();
        totals.buckets[0] = 2;
        totals.buckets[3] = 1;
        totals.sum_seconds = 0.012;
        totals.codes = vec![(200, 2), (3, 1)];
        let mut e = Exposition::new();
        let labels = [("pool", "k8s"), ("backend", "10.0.0.1:80")];
        e.histogram(Family::UpstreamDuration, &labels, &totals);
        e.codes(Family::UpstreamRequests, &labels, "outcome", &totals);
        let text = e.encode();
        for line in [
            r#"cutover_upstream_duration_seconds_bucket{pool="k8s",backend="10.0.0.1:80",le="0.001"} 2"#,
            r#"cutover_upstream_duration_seconds_bucket{pool="k8s",backend="10.0.0.1:80",le="0.01"} 3"#,
            r#"cutover_upstream_duration_seconds_bucket{pool="k8s",backend="10.0.0.1:80",le="+Inf"} 3"#,
            r#"cutover_upstream_duration_seconds_count{pool="k8s",backend="10.0.0.1:80"} 3"#,
            r#"cutover_upstream_requests_total{pool="k8s",backend="10.0.0.1:80",outcome="reset"} 1"#,
            r#"cutover_upstream_requests_total{pool="k8s",backend="10.0.0.1:80",outcome="200"} 2"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
        assert!(
            !text.contains("cutover_requests_total"),
            "empty families are left out"
        );
    }
}
