//! The `Date` field for answers that lack one (RFC 9110 6.6.1: an origin server with a
//! clock must send it; hyper did for every answer it wrote). Formatted at most once a
//! second per worker thread.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

thread_local! {
    static NOW: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
}

/// Calls `f` with the current time as an HTTP date.
pub(crate) fn with<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    NOW.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs || cached.1.is_empty() {
            *cached = (secs, httpdate::fmt_http_date(now));
        }
        f(cached.1.as_bytes())
    })
}
