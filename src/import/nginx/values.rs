//! nginx's values in cutover's terms: times, sizes, `split_clients` shares as weights,
//! its key as a sticky source, addresses with their default port.

use std::collections::BTreeMap;

/// Integer weights for percentage shares (`0.5%` and `99.5%` → 1 and 199), summed per
/// target.
pub(super) fn weights_of(shares: &[(String, f64)]) -> Vec<(String, u32)> {
    let scale = shares
        .iter()
        .map(|(_, p)| {
            let text = format!("{p}");
            text.split_once('.').map_or(0, |(_, d)| d.len().min(3))
        })
        .max()
        .unwrap_or(0);
    let factor = 10f64.powi(scale as i32);
    let mut by: BTreeMap<String, u32> = BTreeMap::new();
    let mut order = Vec::new();
    for (t, p) in shares {
        if !by.contains_key(t) {
            order.push(t.clone());
        }
        *by.entry(t.clone()).or_default() += (p * factor).round() as u32;
    }
    let all: Vec<u32> = by.values().copied().filter(|&w| w > 0).collect();
    let g = all.iter().copied().fold(0, gcd).max(1);
    order
        .into_iter()
        .map(|t| {
            let w = by[&t] / g;
            (t, w)
        })
        .collect()
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// cutover's sticky key for a split_clients key: the one variable it names.
pub(super) fn sticky_of(key: &str) -> Option<String> {
    let key = key.replace(['{', '}'], "");
    if key.contains("$remote_addr") || key.contains("$binary_remote_addr") {
        return Some("ip".into());
    }
    if let Some(i) = key.find("$cookie_") {
        let name: String = key[i + 8..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .collect();
        return Some(format!("cookie:{name}"));
    }
    if let Some(i) = key.find("$http_") {
        let name: String = key[i + 6..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        return Some(format!("header:{}", name.replace('_', "-")));
    }
    None
}

/// `host` with `port` added when it has none.
pub(super) fn with_port(host: &str, port: u16) -> String {
    let has_port = match host.rfind(']') {
        Some(i) => host[i..].contains(':'),
        None => host.contains(':'),
    };
    if has_port {
        host.to_owned()
    } else {
        format!("{host}:{port}")
    }
}

/// An nginx time (`30`, `30s`, `500ms`, `1m`, `1h`, `1d`) as cutover writes it.
pub(super) fn duration(v: &str) -> Option<String> {
    let digits = v.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &v[digits.len()..];
    let n: u64 = digits.parse().ok()?;
    let unit = match unit {
        "" | "s" => "s",
        "ms" => "ms",
        "m" => "m",
        "h" => "h",
        "d" => return Some(format!("{}h", n * 24)),
        _ => return None,
    };
    Some(format!("{n}{unit}"))
}

/// An nginx size (`1m`, `512k`, `2g`, `100`) as cutover writes it.
pub(super) fn size(v: &str) -> Option<String> {
    let lower = v.to_ascii_lowercase();
    let digits = lower.trim_end_matches(['k', 'm', 'g']);
    let n: u64 = digits.parse().ok()?;
    Some(match &lower[digits.len()..] {
        "" => n.to_string(),
        "k" => format!("{n}KiB"),
        "m" => format!("{n}MiB"),
        "g" => format!("{n}GiB"),
        _ => return None,
    })
}

pub(super) fn quoted(s: String) -> String {
    format!("\"{s}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_become_small_integer_weights() {
        let s = |v: &[(&str, f64)]| {
            v.iter()
                .map(|(a, b)| (a.to_string(), *b))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            weights_of(&s(&[("a", 90.0), ("b", 10.0)])),
            [("a".into(), 9), ("b".into(), 1)]
        );
        assert_eq!(
            weights_of(&s(&[("a", 0.5), ("b", 99.5)])),
            [("a".into(), 1), ("b".into(), 199)]
        );
        assert_eq!(
            weights_of(&s(&[("a", 20.0), ("b", 30.0), ("a", 50.0)])),
            [("a".into(), 7), ("b".into(), 3)]
        );
    }

    #[test]
    fn sticky_keys_and_units() {
        assert_eq!(sticky_of("${remote_addr}AAA").as_deref(), Some("ip"));
        assert_eq!(sticky_of("$cookie_uid").as_deref(), Some("cookie:uid"));
        assert_eq!(
            sticky_of("$http_x_user_id").as_deref(),
            Some("header:x-user-id")
        );
        assert_eq!(sticky_of("$request_id"), None);
        assert_eq!(duration("30").as_deref(), Some("30s"));
        assert_eq!(duration("500ms").as_deref(), Some("500ms"));
        assert_eq!(duration("2d").as_deref(), Some("48h"));
        assert_eq!(size("10m").as_deref(), Some("10MiB"));
        assert_eq!(size("0").as_deref(), Some("0"));
        assert_eq!(with_port("10.0.0.1", 80), "10.0.0.1:80");
        assert_eq!(with_port("[::1]:81", 80), "[::1]:81");
        assert_eq!(with_port("[::1]", 80), "[::1]:80");
    }
}
