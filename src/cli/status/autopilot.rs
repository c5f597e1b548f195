//! A route's ramp in `cutover status`: where it stands, then the next gate and what
//! it waits for, or why it rolled back.

use super::table::{clean, Paint, Pen};
use crate::status::Autopilot;

/// Two lines: the state, step and share; then what comes next.
pub(super) fn lines(a: &Autopilot, pen: &Pen) -> Vec<String> {
    let paint = match a.state.as_str() {
        "running" | "done" => Paint::Green,
        "rolled_back" => Paint::Red,
        _ => Paint::Yellow,
    };
    let first = format!(
        "autopilot {}  step {}/{}  {} at {}%  since {}  ({} source)",
        pen.paint(paint, &clean(&a.state)),
        a.step,
        a.steps.len(),
        clean(&a.pool),
        percent(a.share),
        clean(a.since.split('T').nth(1).unwrap_or(&a.since)),
        clean(&a.source),
    );
    let mut out = vec![first, format!("  {}", next(a))];
    if a.state == "rolled_back" {
        out.push("  the file's split applies again; change run to start over".to_owned());
    }
    if let Some(why) = &a.holding {
        out.push(pen.paint(Paint::Yellow, &format!("  holding: {}", clean(why))));
    }
    out
}

/// The next gate and what it waits for, or the end the ramp came to.
fn next(a: &Autopilot) -> String {
    match a.state.as_str() {
        "pending" => "next: the first step, once the ramp has numbers to judge by".to_owned(),
        "rolled_back" => format!(
            "rolled back: {}",
            clean(a.reason.as_deref().unwrap_or("a check failed"))
        ),
        "done" => format!(
            "done: write split = {{ {} = {}, {} = {} }} into the config file",
            clean(&a.baseline),
            percent(100.0 - a.share),
            clean(&a.pool),
            percent(a.share),
        ),
        _ => {
            let target = match a.steps.get(a.step as usize) {
                Some(share) => format!("{share}%"),
                None => "done".to_owned(),
            };
            let mut waits = Vec::new();
            if a.hold_left_seconds > 0.0 {
                waits.push(format!("{}s of hold", a.hold_left_seconds));
            }
            let short = a.min_requests as f64 - a.step_requests;
            if short > 0.0 {
                waits.push(format!("{short:.0} more requests"));
            }
            for c in a.checks.iter().filter(|c| c.verdict != "pass") {
                waits.push(format!("{} ({})", clean(&c.name), clean(&c.verdict)));
            }
            if waits.is_empty() {
                format!("next: {target} at the next evaluation")
            } else {
                format!("next: {target} after {}", waits.join(", "))
            }
        }
    }
}

/// A share: whole when it is whole.
fn percent(p: f64) -> String {
    if (p - p.round()).abs() < 0.05 {
        format!("{p:.0}")
    } else {
        format!("{p:.1}")
    }
}
