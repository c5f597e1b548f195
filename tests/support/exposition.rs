//! `/metrics` read back with a real Prometheus text parser (`prometheus-parse`), for
//! tests to ask for a series by its labels.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use prometheus_parse::{Sample, Scrape, Value};

use super::get;

/// One scrape: its text and its parsed series.
pub struct Exposition {
    pub text: String,
    pub scrape: Scrape,
}

pub async fn scrape(admin: SocketAddr) -> Exposition {
    let r = get(admin, "/metrics", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8"),
        "the text format's content type"
    );
    let scrape = Scrape::parse(r.body.lines().map(|l| Ok(l.to_owned()))).expect("parse");
    Exposition {
        text: r.body,
        scrape,
    }
}

impl Exposition {
    pub fn samples<'a>(
        &'a self,
        metric: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.scrape.samples.iter().filter(move |s| {
            s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
    }

    /// The value of the one sample of `metric` with `labels` (0 when there is none).
    pub fn value(&self, metric: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<&Sample> = self.samples(metric, labels).collect();
        assert!(
            found.len() <= 1,
            "{metric} {labels:?} is not one series: {found:?}"
        );
        found.first().map_or(0.0, |s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            other => panic!("{metric} is not a number: {other:?}"),
        })
    }

    /// Sum over every series of `metric` that has `labels`.
    pub fn sum(&self, metric: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples(metric, labels)
            .map(|s| match &s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
                other => panic!("{metric} is not a number: {other:?}"),
            })
            .sum()
    }

    /// A histogram's buckets (upper bound, cumulative count); panics when absent.
    pub fn histogram(&self, metric: &str, labels: &[(&str, &str)]) -> Vec<(f64, f64)> {
        let s = self
            .samples(metric, labels)
            .next()
            .unwrap_or_else(|| panic!("no {metric} {labels:?} in\n{}", self.text));
        match &s.value {
            Value::Histogram(h) => h.iter().map(|b| (b.less_than, b.count)).collect(),
            other => panic!("{metric} is not a histogram: {other:?}"),
        }
    }

    pub fn count(&self, metric: &str, labels: &[(&str, &str)]) -> f64 {
        let buckets = self.histogram(metric, labels);
        buckets.last().map_or(0.0, |b| b.1)
    }

    pub fn label_values(&self, metric: &str, label: &str) -> BTreeSet<String> {
        self.samples(metric, &[])
            .filter_map(|s| s.labels.get(label).map(str::to_owned))
            .collect()
    }
}
