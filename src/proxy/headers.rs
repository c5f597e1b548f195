//! Header rules for the hop to the backend and back.

use http::header::{HeaderName, HeaderValue};

use crate::http1::fields;

pub(super) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A request's id: the client's own, or one made here. A made one is kept inline: most
/// requests come without an id, and making one should cost no allocation.
#[derive(Debug, Clone)]
pub(crate) enum RequestId {
    Sent(HeaderValue),
    Made([u8; 32]),
}

impl RequestId {
    /// The client's `X-Request-Id` when it sent exactly one, of 1-128 characters of
    /// `[A-Za-z0-9._:-]`; else a new random one. `keep` makes the value of the one kept.
    pub(crate) fn choose<V: AsRef<[u8]>>(
        mut sent: impl Iterator<Item = V>,
        keep: impl FnOnce(V) -> Option<HeaderValue>,
    ) -> Self {
        match (sent.next(), sent.next()) {
            (Some(v), None) if is_sane_request_id(v.as_ref()) => {
                keep(v).map_or_else(RequestId::new, RequestId::Sent)
            }
            _ => RequestId::new(),
        }
    }

    /// 128 random bits in hex. Ids must be unique, not unguessable: a fast generator,
    /// seeded from the OS once per thread, is enough.
    fn new() -> Self {
        use rand::{RngCore, SeedableRng};
        thread_local! {
            static RNG: std::cell::RefCell<rand::rngs::SmallRng> =
                std::cell::RefCell::new(rand::rngs::SmallRng::from_os_rng());
        }
        let mut out = [0u8; 32];
        RNG.with(|rng| {
            let mut rng = rng.borrow_mut();
            for half in out.chunks_exact_mut(16) {
                half.copy_from_slice(&hex_digits(rng.next_u64()));
            }
        });
        RequestId::Made(out)
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            RequestId::Sent(v) => v.as_bytes(),
            RequestId::Made(b) => b,
        }
    }

    /// Always ASCII: a sent id passed the check, a made one is hex.
    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    pub(crate) fn to_value(&self) -> HeaderValue {
        match self {
            RequestId::Sent(v) => v.clone(),
            RequestId::Made(b) => {
                HeaderValue::from_bytes(b).unwrap_or_else(|_| HeaderValue::from_static("0"))
            }
        }
    }
}

/// The 16 nibbles of `x` as lower-case hex digits, eight at a time: a table lookup per
/// digit was a hundred instructions on every request. The digits come in no set order,
/// which is fine for random bits.
fn hex_digits(x: u64) -> [u8; 16] {
    const NIBBLES: u64 = 0x0f0f_0f0f_0f0f_0f0f;
    const ONES: u64 = 0x0101_0101_0101_0101;
    // One nibble per byte: '0' + n, and 39 more ('a' - '0' - 10) where n > 9, which is
    // where n + 6 carries into bit 4. No byte overflows into the next.
    let digits = |n: u64| n + 0x30 * ONES + (((n + 6 * ONES) >> 4) & ONES) * 39;
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&digits(x & NIBBLES).to_le_bytes());
    out[8..].copy_from_slice(&digits((x >> 4) & NIBBLES).to_le_bytes());
    out
}

fn is_sane_request_id(v: &[u8]) -> bool {
    (1..=128).contains(&v.len())
        && v.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-'))
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(super) fn cookie<'a>(fields: impl Iterator<Item = &'a [u8]>, name: &str) -> Option<&'a str> {
    fields
        .filter_map(fields::visible_str)
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k.trim() == name).then(|| v.trim().trim_matches('"'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_digits_are_the_nibbles() {
        for (x, want) in [
            (0x0123_4567_89ab_cdef_u64, "0123456789abcdef"),
            (0, "0000000000000000"),
            (u64::MAX, "ffffffffffffffff"),
            (0x9a9a_9a9a_9a9a_9a9a, "99999999aaaaaaaa"),
        ] {
            let mut got = hex_digits(x);
            got.sort_unstable();
            assert_eq!(std::str::from_utf8(&got), Ok(want), "{x:#x}");
        }
    }

    #[test]
    fn request_id_rules() {
        let id = |sent: &[&'static str]| {
            let id = RequestId::choose(sent.iter().copied(), |v| Some(HeaderValue::from_static(v)));
            id.as_str().to_owned()
        };
        assert_eq!(id(&["abc-123:x.y_z"]), "abc-123:x.y_z");
        let made = id(&["has space"]);
        assert_eq!(made.len(), 32);
        assert!(made.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(id(&[]), id(&[]));
        assert_ne!(id(&["a", "b"]), "a");
        let long: &'static str = "a".repeat(129).leak();
        assert_ne!(id(&[long]), long);
    }

    #[test]
    fn cookies() {
        let sent: [&[u8]; 2] = [b"z=0", b"a=1; uid=u-42; b=2"];
        let all = || sent.iter().copied();
        assert_eq!(cookie(all(), "uid"), Some("u-42"));
        assert_eq!(cookie(all(), "x"), None);
    }
}
