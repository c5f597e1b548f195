//! The `/status` document as a table for an 80-column terminal: a pure function of the
//! document, so it is tested without a network.

use std::fmt::Write as _;

use super::table::{
    clean, clip_left, clip_middle, fit, Align, Cell, Column, Paint, Pen, Table, WIDTH,
};
use crate::status::{Backend, Pool, Route, Status, Window};

/// The document as lines of at most [`WIDTH`] columns, with ANSI colours when `colour`.
///
/// A header (generation, load time, config path, the last reload error), then each
/// route with its pools side by side, then each pool with one line per backend.
pub(crate) fn render(s: &Status, colour: bool) -> String {
    let pen = Pen(colour);
    let mut out = Vec::new();
    out.push(format!(
        "{}  generation {}  loaded {}  figures over the last {}s",
        pen.paint(Paint::Bold, "cutover"),
        s.generation,
        clean(&s.loaded_at),
        s.window_seconds,
    ));
    out.push(format!(
        "config {}",
        clip_left(&clean(&s.config_path), WIDTH - 7)
    ));
    if let Some(e) = &s.last_reload_error {
        // A reload's errors come one per line; here they share one.
        let e = clean(&e.lines().collect::<Vec<_>>().join("; "));
        out.push(pen.paint(Paint::Red, &format!("last reload failed: {e}")));
    }
    for r in &s.routes {
        out.push(String::new());
        route(r, &pen, &mut out);
    }
    for p in &s.pools {
        out.push(String::new());
        pool(p, &pen, &mut out);
    }
    let mut text = String::new();
    for line in out {
        let _ = writeln!(text, "{}", fit(&line, WIDTH, colour));
    }
    text
}

/// A route's pools: configured weight, its share of the split, the effective share the
/// picks use now, then this route's traffic by the pool that answered it.
const ROUTE: &[Column] = &[
    Column("pool", Align::Left, 0),
    Column("split", Align::Right, 5),
    Column("share", Align::Right, 5),
    Column("eff", Align::Right, 5),
    Column("req/s", Align::Right, 5),
    Column("err%", Align::Right, 5),
    Column("p50", Align::Right, 5),
    Column("p95", Align::Right, 5),
    Column("p99", Align::Right, 5),
];

/// A pool's backends: with gaps of one, an IPv4 `ip:port` (21 characters) still fits.
const BACKENDS: &[Column] = &[
    Column("backend", Align::Left, 0),
    Column("state", Align::Left, 7),
    Column("weight", Align::Right, 0),
    Column("eff", Align::Right, 4),
    Column("infl", Align::Right, 0),
    Column("req/s", Align::Right, 5),
    Column("err%", Align::Right, 5),
    Column("p50", Align::Right, 5),
    Column("p95", Align::Right, 5),
    Column("p99", Align::Right, 5),
];

/// Names in headings are cut to this, to leave room for what follows them.
const NAME: usize = 32;

/// A route's heading, then one line per pool of its split (and one for the requests
/// that got no pool, when there were some).
fn route(r: &Route, pen: &Pen, out: &mut Vec<String>) {
    let hosts = if r.hosts.is_empty() {
        "any host".to_owned()
    } else {
        r.hosts.join(", ")
    };
    out.push(format!(
        "route {}  {}  {}",
        pen.paint(Paint::Bold, &clip_middle(&clean(&r.name), NAME)),
        clean(&r.path_prefix),
        clean(&hosts),
    ));
    let configured: f64 = r.split.values().map(|w| f64::from(*w)).sum();
    let effective: f64 = r.effective_split.values().sum();
    let mut t = Table::new(ROUTE);
    for (name, weight) in &r.split {
        let eff = r.effective_split.get(name).copied().unwrap_or(0.0);
        let mut row = vec![
            Cell::plain(clean(name)),
            Cell::plain(weight.to_string()),
            Cell::plain(share(f64::from(*weight), configured)),
            Cell::plain(share(eff, effective)),
        ];
        row.extend(traffic(r.traffic.get(name)));
        t.row(row);
    }
    for (name, w) in r.traffic.iter().filter(|(n, _)| !r.split.contains_key(*n)) {
        let mut row = vec![Cell::plain(format!("({})", clean(name)))];
        row.extend(["-", "-", "-"].map(|s| Cell::plain(s.to_owned())));
        row.extend(traffic(Some(w)));
        t.row(row);
    }
    t.render(pen, out);
    if let Some(a) = &r.autopilot {
        out.extend(super::autopilot::lines(a, pen));
    }
}

/// A pool's heading, one line per backend, then `(all)`: the requests the pool
/// answered on every route (a retried request counts once there, and once per attempt
/// on its backends).
fn pool(p: &Pool, pen: &Pen, out: &mut Vec<String>) {
    let ready = p.backends.iter().filter(|b| b.state == "ready").count();
    out.push(format!(
        "pool {}  {ready} of {} backends ready",
        pen.paint(Paint::Bold, &clip_middle(&clean(&p.name), NAME)),
        p.backends.len(),
    ));
    let mut t = Table::new(BACKENDS);
    for b in &p.backends {
        t.row(backend(b));
    }
    let mut all = vec![Cell::plain("(all)".to_owned())];
    all.extend(["", "", ""].map(|s| Cell::plain(s.to_owned())));
    all.push(Cell::plain(
        p.backends
            .iter()
            .map(|b| b.in_flight)
            .sum::<u64>()
            .to_string(),
    ));
    all.extend(traffic(Some(&p.window)));
    t.row(all);
    t.render(pen, out);
}

fn backend(b: &Backend) -> Vec<Cell> {
    let paint = match b.state.as_str() {
        "ready" => Some(Paint::Green),
        "warming" => Some(Paint::Yellow),
        "down" | "ejected" => Some(Paint::Red),
        _ => None,
    };
    let mut row = vec![
        Cell::plain(clean(&b.addr)),
        Cell {
            text: clean(&b.state),
            paint,
        },
        Cell::plain(b.weight.to_string()),
        Cell::plain(weight(b.effective_weight)),
        Cell::plain(b.in_flight.to_string()),
    ];
    row.extend(traffic(Some(&b.window)));
    row
}

/// req/s, err% and the three quantiles; those of no traffic when there is no entry.
fn traffic(w: Option<&Window>) -> Vec<Cell> {
    let none = Window::default();
    let w = w.unwrap_or(&none);
    vec![
        Cell::plain(rate(w.request_rate)),
        Cell {
            text: percent(w.error_ratio),
            paint: (w.error_ratio > 0.01).then_some(Paint::Red),
        },
        Cell::plain(latency(w.p50)),
        Cell::plain(latency(w.p95)),
        Cell::plain(latency(w.p99)),
    ]
}

// === numbers ===

/// A latency in seconds, compact: `350us`, `1.2ms`, `35ms`, `2.1s`; `-` when unknown.
fn latency(seconds: Option<f64>) -> String {
    let Some(s) = seconds.filter(|s| s.is_finite() && *s >= 0.0) else {
        return "-".to_owned();
    };
    // Each unit is used only while its rounded figure stays below the next unit.
    let us = s * 1e6;
    if us.round() < 1000.0 {
        return format!("{us:.0}us");
    }
    let ms = s * 1e3;
    if ms < 9.95 {
        format!("{ms:.1}ms")
    } else if ms.round() < 1000.0 {
        format!("{ms:.0}ms")
    } else if s < 9.95 {
        format!("{s:.1}s")
    } else {
        format!("{s:.0}s")
    }
}

fn rate(per_second: f64) -> String {
    if per_second < 99.95 {
        format!("{per_second:.1}")
    } else {
        format!("{per_second:.0}")
    }
}

/// A ratio (0..1) as a percentage.
fn percent(ratio: f64) -> String {
    let p = ratio * 100.0;
    if p < 99.95 {
        format!("{p:.1}%")
    } else {
        format!("{p:.0}%")
    }
}

/// `part` as a percentage of `whole`; `-` when the whole is nothing.
fn share(part: f64, whole: f64) -> String {
    if whole > 0.0 {
        percent(part / whole)
    } else {
        "-".to_owned()
    }
}

/// An effective weight: whole when it is whole, else with two significant decimals.
fn weight(w: f64) -> String {
    if (w - w.round()).abs() < 0.005 {
        format!("{w:.0}")
    } else if w < 10.0 {
        format!("{w:.2}")
    } else if w < 100.0 {
        format!("{w:.1}")
    } else {
        format!("{w:.0}")
    }
}

#[cfg(test)]
mod tests;
