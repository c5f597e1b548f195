//! Header rules for the hop to the backend and back.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::fields::{self, Fields};

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Removes hop-by-hop headers: `Connection` and every header it names, `Keep-Alive`,
/// `Proxy-*`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`. For an upgrade handshake
/// `Connection: upgrade` and `Upgrade` are kept so the backend can switch protocols.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // One pass over the names, then removal of exactly what was found: most messages
    // carry one such header or none, and removing each possible name would hash every
    // one of them on every request.
    const MOST: usize = 8;
    let mut found: [Option<HeaderName>; MOST] = Default::default();
    let mut n = 0;
    for name in headers.keys().filter(|k| is_hop_by_hop(k)) {
        if n == MOST {
            break;
        }
        found[n] = Some(name.clone());
        n += 1;
    }
    if n == 0 && !keep_upgrade {
        return;
    }
    // Headers named by Connection (get_all is empty without one).
    if headers
        .get_all(header::CONNECTION)
        .iter()
        .any(|v| !is_std_hop(v.as_bytes()))
    {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| tokens(v.as_bytes()))
            .filter_map(|t| HeaderName::from_bytes(t).ok())
            .collect();
        for name in named {
            if !(keep_upgrade && name == header::UPGRADE) {
                headers.remove(&name);
            }
        }
    }

    for name in found.iter().flatten() {
        if !(keep_upgrade && name == header::UPGRADE) {
            headers.remove(name);
        }
    }
    if n == MOST {
        // More than we track at once (a hostile client): sweep until none is left.
        while let Some(name) = headers.keys().find(|k| is_hop_by_hop(k)).cloned() {
            if keep_upgrade && name == header::UPGRADE {
                break;
            }
            headers.remove(&name);
        }
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// [`strip_hop_by_hop`] for a backend's fields, which arrive without the standard
/// hop-by-hop fields already: takes out `Connection` and every field it names.
pub fn strip_connection_named(fields: &mut Fields) {
    let named: Vec<Vec<u8>> = connection_named(fields)
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect();
    fields.retain(|name, _| {
        !fields::name_is(name, b"connection") && !named.iter().any(|t| name.eq_ignore_ascii_case(t))
    });
}

/// The field names a head's `Connection` fields list, beyond `close` and `keep-alive`
/// (which name none): those fields are hop-by-hop too.
pub fn connection_named(fields: &Fields) -> Vec<&[u8]> {
    fields
        .all("connection")
        .flat_map(tokens)
        .filter(|t| !is_std_hop(t))
        .collect()
}

pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    is_hop_by_hop_name(name.as_str().as_bytes())
}

/// [`is_hop_by_hop`] for a name as it came off the wire, in any case.
pub fn is_hop_by_hop_name(name: &[u8]) -> bool {
    // By length first: asked of every field of every head, most of them no hop.
    let hops: &[&[u8]] = match name.len() {
        2 => &[b"te"],
        7 => &[b"trailer", b"upgrade"],
        10 => &[b"connection", b"keep-alive"],
        17 => &[b"transfer-encoding"],
        _ => &[],
    };
    hops.iter().any(|hop| fields::name_is(name, hop))
        || name.get(..6).is_some_and(|p| fields::name_is(p, b"proxy-"))
}

/// `close` and `keep-alive` name no extra header to remove.
pub fn is_std_hop(v: &[u8]) -> bool {
    let v = v.trim_ascii();
    v.eq_ignore_ascii_case(b"close") || v.eq_ignore_ascii_case(b"keep-alive")
}

/// Whether a request asks to switch protocols (WebSocket and friends). `h2c` is not
/// tunnelled: a backend that accepted it would take the client's later HTTP/2 streams
/// past routing, the split and every limit.
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::UPGRADE)
        .iter()
        .any(|v| switches(v.as_bytes()))
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| connection_upgrade(v.as_bytes()))
}

// The framing guard and the proxy must read a request's Upgrade and Connection fields
// alike, byte for byte: if the guard saw no switch where the proxy tunnels one, it
// would check bytes that are no longer HTTP; the other way round, it would stop
// checking bytes that still are. Both call these two.

/// Whether one `Upgrade` field offers a protocol the proxy would tunnel (any but h2c).
pub fn switches(upgrade: &[u8]) -> bool {
    tokens(upgrade).any(|t| !t.eq_ignore_ascii_case(b"h2c"))
}

/// Whether one `Connection` field lists `upgrade`.
pub fn connection_upgrade(connection: &[u8]) -> bool {
    tokens(connection).any(|t| t.eq_ignore_ascii_case(b"upgrade"))
}

fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// Takes `h2c` out of the protocols an upgrade offers: a backend that chose it would
/// take the client's later HTTP/2 streams past routing, the split and every limit.
pub fn drop_h2c(headers: &mut HeaderMap) {
    let offers = headers.get_all(header::UPGRADE).iter();
    if !offers
        .flat_map(|v| tokens(v.as_bytes()))
        .any(|t| t.eq_ignore_ascii_case(b"h2c"))
    {
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| {
            let rest: Vec<&[u8]> = tokens(v.as_bytes())
                .filter(|t| !t.eq_ignore_ascii_case(b"h2c"))
                .collect();
            HeaderValue::from_bytes(&rest.join(&b", "[..])).ok()
        })
        .filter(|v| !v.is_empty())
        .collect();
    headers.remove(header::UPGRADE);
    for v in kept {
        headers.append(header::UPGRADE, v);
    }
}

/// Sets `X-Forwarded-For` (appended), `X-Forwarded-Proto` and `X-Forwarded-Host`.
pub fn set_forwarded(
    headers: &mut HeaderMap,
    client_ip: &HeaderValue,
    proto: &'static str,
    host: Option<HeaderValue>,
) {
    if headers.contains_key(&X_FORWARDED_FOR) {
        let mut joined: Vec<u8> = Vec::new();
        for v in headers.get_all(&X_FORWARDED_FOR).iter() {
            joined.extend_from_slice(v.as_bytes());
            joined.extend_from_slice(b", ");
        }
        joined.extend_from_slice(client_ip.as_bytes());
        if let Ok(v) = HeaderValue::from_bytes(&joined) {
            headers.insert(&X_FORWARDED_FOR, v);
        }
    } else {
        headers.insert(&X_FORWARDED_FOR, client_ip.clone());
    }
    headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    match host {
        Some(h) => headers.insert(&X_FORWARDED_HOST, h),
        None => headers.remove(&X_FORWARDED_HOST),
    };
}

/// A request's id: the client's own, or one made here. A made one is kept inline: most
/// requests come without an id, and making one should cost no allocation.
#[derive(Debug, Clone)]
pub enum RequestId {
    Sent(HeaderValue),
    Made([u8; 32]),
}

impl RequestId {
    /// The client's `X-Request-Id` when it sent exactly one, of 1-128 characters of
    /// `[A-Za-z0-9._:-]`; else a new random one. `keep` makes the value of the one kept.
    pub fn choose<V: AsRef<[u8]>>(
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

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            RequestId::Sent(v) => v.as_bytes(),
            RequestId::Made(b) => b,
        }
    }

    /// Always ASCII: a sent id passed the check, a made one is hex.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    pub fn to_value(&self) -> HeaderValue {
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

/// The `timeout=N` of a `Keep-Alive` response header: how long the server keeps an idle
/// connection open.
pub fn keep_alive_timeout(value: &[u8]) -> Option<std::time::Duration> {
    let v = std::str::from_utf8(value).ok()?;
    v.split(',').find_map(|p| {
        let (k, n) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("timeout")
            .then(|| n.trim().parse::<u64>().ok())
            .flatten()
            .map(std::time::Duration::from_secs)
    })
}

/// Joins several `Cookie` fields into one, separated by "; ".
pub fn join_cookies(headers: &mut HeaderMap) {
    let mut all = headers.get_all(header::COOKIE).iter();
    if all.next().is_none() || all.next().is_none() {
        return;
    }
    let joined: Vec<&[u8]> = headers
        .get_all(header::COOKIE)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    if let Ok(v) = HeaderValue::from_bytes(&joined.join(&b"; "[..])) {
        headers.insert(header::COOKIE, v);
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(fields: impl Iterator<Item = &'a [u8]>, name: &str) -> Option<&'a str> {
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
    fn hop_by_hop_and_named_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("proxy-authorization", HeaderValue::from_static("x"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h, false);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["x-kept"]);
    }

    #[test]
    fn upgrade_rules_read_bytes_token_by_token() {
        assert!(switches(b"websocket"));
        assert!(switches(b"h2c, websocket"));
        assert!(!switches(b" h2c "));
        assert!(!switches(b""));
        assert!(connection_upgrade(b"keep-alive, Upgrade"));
        assert!(connection_upgrade(b"upgrade, \xff"));
        assert!(!connection_upgrade(b"upgraded"));
        let mut h = HeaderMap::new();
        h.append(header::UPGRADE, HeaderValue::from_static("h2c, websocket"));
        h.append(header::UPGRADE, HeaderValue::from_static("h2c"));
        drop_h2c(&mut h);
        let left: Vec<&[u8]> = h
            .get_all(header::UPGRADE)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect();
        assert_eq!(left, vec![&b"websocket"[..]]);
    }

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
    fn keep_alive_timeouts() {
        let t = |v: &'static str| keep_alive_timeout(v.as_bytes());
        assert_eq!(t("max=10"), None);
        assert_eq!(
            t("timeout=5, max=1000"),
            Some(std::time::Duration::from_secs(5))
        );
        assert_eq!(
            t("max=10, Timeout = 30"),
            Some(std::time::Duration::from_secs(30))
        );
    }

    #[test]
    fn fields_a_backend_connection_names_go() {
        let mut f = Fields::from_pairs(&[
            ("Connection", "X-Secret, close"),
            ("x-secret", "1"),
            ("x-kept", "2"),
        ]);
        strip_connection_named(&mut f);
        let names: Vec<_> = f.iter().map(|(n, _)| n).collect();
        assert_eq!(names, [&b"x-kept"[..]]);
        for hop in [
            "Proxy-Authenticate",
            "TE",
            "Trailer",
            "upgrade",
            "CONNECTION",
            "Keep-Alive",
            "Transfer-Encoding",
            "proxy-",
        ] {
            assert!(is_hop_by_hop_name(hop.as_bytes()), "{hop}");
        }
        for kept in [
            "proxy",
            "tea",
            "trailers",
            "upgrades",
            "connections",
            "x-upgrade",
        ] {
            assert!(!is_hop_by_hop_name(kept.as_bytes()), "{kept}");
        }
    }

    #[test]
    fn cookies() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; uid=u-42; b=2"),
        );
        let all = || h.get_all(header::COOKIE).iter().map(HeaderValue::as_bytes);
        assert_eq!(cookie(all(), "uid"), Some("u-42"));
        assert_eq!(cookie(all(), "x"), None);
    }
}
