//! One labelled series set, recorded without a lock or a hash: a latency histogram and a
//! count per status code (or failure kind), kept per worker and added up when read.
//!
//! The labels a series carries are fixed when the snapshot that holds it is built, so
//! recording is a thread-local read, a few compares and three atomic adds, each on the
//! worker's own cache lines.

use crate::sync::lock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::window::{Ring, Stats};

/// Upper bounds of the histogram buckets, in seconds (DESIGN "Metrics").
pub(crate) const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The same bounds in nanoseconds, for the compare on the request path.
const BOUNDS_NS: [u64; 14] = [
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
];

/// Bucket slots: one per bound, and the last for what exceeds them all (`+Inf`).
pub(crate) const SLOTS: usize = BOUNDS_NS.len() + 1;

/// Distinct codes a worker's shard counts without help. Past that, a code goes to the
/// series' shared overflow list, under a lock: only a series that has seen more than
/// this many different codes ever pays it.
const CODE_SLOTS: usize = 16;

/// At most this many shards per series: beyond, workers share them (atomics keep that
/// correct) rather than grow the memory of thousands of backends.
const MAX_SHARDS: usize = 8;

/// Codes live in the high 16 bits of a slot, the count in the rest.
const CODE_SHIFT: u32 = 48;
const COUNT_MASK: u64 = (1 << CODE_SHIFT) - 1;

/// What a backend attempt ended in when it got no status: `outcome` label values. They
/// share the code space below 100, where no HTTP status lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub(crate) enum Failure {
    ConnectError = 1,
    Timeout = 2,
    Reset = 3,
    /// A response cutover could not read as HTTP.
    BadResponse = 4,
}

/// A code's label value: the status, or the failure kind's name.
pub(crate) fn code_label(code: u16) -> std::borrow::Cow<'static, str> {
    match code {
        1 => "connect_error".into(),
        2 => "timeout".into(),
        3 => "reset".into(),
        4 => "bad_response".into(),
        c => c.to_string().into(),
    }
}

/// Whether a code counts as an error in `/status`: a failure kind or a 5xx.
pub(crate) fn is_error(code: u16) -> bool {
    !(100..500).contains(&code)
}

/// A histogram and code counts for one label set.
#[derive(Debug)]
pub(crate) struct Series {
    shards: Box<[Shard]>,
    overflow: Mutex<Vec<(u16, u64)>>,
    /// Samples of the totals, for `/status`'s last minute. Only the sampling task and
    /// the admin endpoint take this lock.
    window: Mutex<Ring>,
}

#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard {
    buckets: [AtomicU64; SLOTS],
    sum_ns: AtomicU64,
    codes: [AtomicU64; CODE_SLOTS],
}

/// A series' figures added up over its shards, at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Totals {
    /// Observations per bucket (not cumulative); their sum is the histogram's count.
    pub buckets: [u64; SLOTS],
    pub sum_seconds: f64,
    /// (code, count), ordered by code.
    pub codes: Vec<(u16, u64)>,
}

impl Default for Series {
    fn default() -> Self {
        Series::new()
    }
}

impl Series {
    pub(crate) fn new() -> Self {
        let shards = crate::worker::count().clamp(1, MAX_SHARDS);
        Series {
            shards: (0..shards).map(|_| Shard::default()).collect(),
            overflow: Mutex::new(Vec::new()),
            window: Mutex::new(Ring::new(Instant::now())),
        }
    }

    /// Counts one `code` that took `elapsed`.
    pub(crate) fn observe(&self, code: u16, elapsed: Duration) {
        let shard = self.shard();
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let slot = BOUNDS_NS.iter().position(|&b| ns <= b).unwrap_or(SLOTS - 1);
        shard.buckets[slot].fetch_add(1, Ordering::Relaxed);
        shard.sum_ns.fetch_add(ns, Ordering::Relaxed);
        self.count_in(shard, code);
    }

    /// Counts one `code` with no latency (a connection that never opened).
    pub(crate) fn count(&self, code: u16) {
        self.count_in(self.shard(), code);
    }

    fn shard(&self) -> &Shard {
        &self.shards[crate::worker::slot(self.shards.len())]
    }

    fn count_in(&self, shard: &Shard, code: u16) {
        let tag = u64::from(code) << CODE_SHIFT;
        for slot in &shard.codes {
            let mut v = slot.load(Ordering::Relaxed);
            if v == 0 {
                // Claim the free slot; another thread of this shard may have taken it
                // for the same or another code meanwhile.
                match slot.compare_exchange(0, tag | 1, Ordering::Relaxed, Ordering::Relaxed) {
                    Ok(_) => return,
                    Err(now) => v = now,
                }
            }
            if v & !COUNT_MASK == tag {
                slot.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let mut overflow = lock(&self.overflow);
        match overflow.iter_mut().find(|(c, _)| *c == code) {
            Some((_, n)) => *n += 1,
            None => overflow.push((code, 1)),
        }
    }

    /// Keeps the totals now as a sample of the last minute (the sampler, every tick).
    pub(crate) fn sample(&self, now: Instant) {
        let totals = self.totals();
        lock(&self.window).push(now, &totals);
    }

    /// The last minute's figures, up to `now`.
    pub(crate) fn last_minute(&self, now: Instant) -> Stats {
        let totals = self.totals();
        lock(&self.window).stats(now, &totals)
    }

    /// The figures now, added up over the shards.
    pub(crate) fn totals(&self) -> Totals {
        let mut t = Totals::default();
        let mut sum_ns: u64 = 0;
        for shard in self.shards.iter() {
            for (total, b) in t.buckets.iter_mut().zip(&shard.buckets) {
                *total += b.load(Ordering::Relaxed);
            }
            sum_ns = sum_ns.wrapping_add(shard.sum_ns.load(Ordering::Relaxed));
            for slot in &shard.codes {
                let v = slot.load(Ordering::Relaxed);
                if v != 0 {
                    t.add_code((v >> CODE_SHIFT) as u16, v & COUNT_MASK);
                }
            }
        }
        for &(code, n) in lock(&self.overflow).iter() {
            t.add_code(code, n);
        }
        t.sum_seconds = sum_ns as f64 / 1e9;
        t.codes.sort_unstable();
        t
    }
}

impl Totals {
    fn add_code(&mut self, code: u16, n: u64) {
        match self.codes.iter_mut().find(|(c, _)| *c == code) {
            Some((_, total)) => *total += n,
            None => self.codes.push((code, n)),
        }
    }

    /// Observations in the histogram (answers with a latency).
    pub(crate) fn observations(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Everything counted by code: every answer and failed attempt, those without a
    /// latency (a connection never made, a request refused before routing) included.
    pub(crate) fn answers(&self) -> u64 {
        self.codes.iter().map(|(_, n)| n).sum()
    }

    pub(crate) fn errors(&self) -> u64 {
        self.codes
            .iter()
            .filter(|(c, _)| is_error(*c))
            .map(|(_, n)| n)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_bucket_and_code() {
        let s = Series::new();
        s.observe(200, Duration::from_micros(500));
        s.observe(200, Duration::from_millis(1));
        s.observe(503, Duration::from_millis(3));
        s.observe(200, Duration::from_secs(60));
        s.count(Failure::ConnectError as u16);
        let t = s.totals();
        assert_eq!(t.buckets[0], 2, "le 0.001 includes 1ms itself");
        assert_eq!(t.buckets[2], 1);
        assert_eq!(t.buckets[SLOTS - 1], 1, "+Inf");
        assert_eq!(t.observations(), 4);
        assert_eq!(t.codes, vec![(1, 1), (200, 3), (503, 1)]);
        assert_eq!((t.answers(), t.errors()), (5, 2));
        assert!((t.sum_seconds - 60.0045).abs() < 1e-9);
    }

    #[test]
    fn the_nanosecond_bounds_are_the_buckets() {
        for (ns, s) in BOUNDS_NS.iter().zip(BUCKETS) {
            assert_eq!(*ns as f64 / 1e9, s);
        }
    }

    #[test]
    fn codes_past_the_inline_slots_are_still_counted() {
        let s = Series::new();
        for code in 200..200 + CODE_SLOTS as u16 + 5 {
            s.count(code);
            s.count(code);
        }
        let t = s.totals();
        assert_eq!(t.codes.len(), CODE_SLOTS + 5);
        assert!(t.codes.iter().all(|&(_, n)| n == 2));
    }

    #[test]
    fn workers_count_in_their_own_shards_and_add_up() {
        crate::worker::set_count(2);
        let s = Series::new();
        std::thread::scope(|scope| {
            for w in 0..2 {
                let s = &s;
                scope.spawn(move || {
                    crate::worker::set_current(w);
                    for _ in 0..1000 {
                        s.observe(200, Duration::from_micros(100));
                    }
                });
            }
        });
        let t = s.totals();
        assert_eq!((t.observations(), t.answers()), (2000, 2000));
        assert_eq!(code_label(Failure::Timeout as u16), "timeout");
        assert_eq!(code_label(404), "404");
    }
}
