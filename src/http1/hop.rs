//! Hop-by-hop fields (RFC 9110 7.6.1): the fields that concern one connection and must
//! not travel past it, and the protocol-switch fields, read the same way wherever a head
//! is checked or written.

use super::fields::{self, Fields};

/// For a backend's fields, which arrive without the standard hop-by-hop fields
/// already: takes out `Connection` and every field it names.
pub(crate) fn strip_connection_named(fields: &mut Fields) {
    let named: Vec<Vec<u8>> = connection_named(fields.all("connection"))
        .map(<[u8]>::to_vec)
        .collect();
    fields.retain(|name, _| {
        !fields::name_is(name, b"connection") && !named.iter().any(|t| name.eq_ignore_ascii_case(t))
    });
}

/// The field names a head's `Connection` field values list, beyond `close` and
/// `keep-alive` (which name none): those fields are hop-by-hop too. The one reading of
/// `Connection` for both directions.
pub(crate) fn connection_named<'a>(
    values: impl Iterator<Item = &'a [u8]>,
) -> impl Iterator<Item = &'a [u8]> {
    values.flat_map(tokens).filter(|t| !is_std_hop(t))
}

/// Whether a field is hop-by-hop by its name alone (any case): `Connection`,
/// `Keep-Alive`, `Proxy-*`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`.
pub(crate) fn is_hop_by_hop_name(name: &[u8]) -> bool {
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
pub(crate) fn is_std_hop(v: &[u8]) -> bool {
    let v = v.trim_ascii();
    v.eq_ignore_ascii_case(b"close") || v.eq_ignore_ascii_case(b"keep-alive")
}

/// Whether a head asks to switch protocols (WebSocket and friends), given its `Upgrade`
/// and its `Connection` field values: an offer of something other than h2c, and
/// `Connection: upgrade`.
pub(crate) fn wants_upgrade<'a>(
    mut upgrade: impl Iterator<Item = &'a [u8]>,
    mut connection: impl Iterator<Item = &'a [u8]>,
) -> bool {
    upgrade.any(switches) && connection.any(connection_upgrade)
}

// The framing guard and the proxy must read a request's Upgrade and Connection fields
// alike, byte for byte: if the guard saw no switch where the proxy tunnels one, it
// would check bytes that are no longer HTTP; the other way round, it would stop
// checking bytes that still are. Both call these two.

/// Whether one `Upgrade` field offers a protocol the proxy would tunnel (any but h2c).
pub(crate) fn switches(upgrade: &[u8]) -> bool {
    tokens(upgrade).any(|t| !t.eq_ignore_ascii_case(b"h2c"))
}

/// Whether one `Connection` field lists `upgrade`.
pub(crate) fn connection_upgrade(connection: &[u8]) -> bool {
    tokens(connection).any(|t| t.eq_ignore_ascii_case(b"upgrade"))
}

/// The comma-separated tokens of a field value, blanks trimmed, empty ones skipped.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// The protocols one `Upgrade` field offers, less `h2c`: a backend that chose it would
/// take the client's later HTTP/2 streams past routing, the split and every limit.
pub(crate) fn offers_without_h2c(upgrade: &[u8]) -> impl Iterator<Item = &[u8]> {
    tokens(upgrade).filter(|t| !t.eq_ignore_ascii_case(b"h2c"))
}

/// The `timeout=N` of a `Keep-Alive` response header: how long the server keeps an idle
/// connection open.
pub(crate) fn keep_alive_timeout(value: &[u8]) -> Option<std::time::Duration> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_rules_read_bytes_token_by_token() {
        assert!(switches(b"websocket"));
        assert!(switches(b"h2c, websocket"));
        assert!(!switches(b" h2c "));
        assert!(!switches(b""));
        assert!(connection_upgrade(b"keep-alive, Upgrade"));
        assert!(connection_upgrade(b"upgrade, \xff"));
        assert!(!connection_upgrade(b"upgraded"));
        let offers: Vec<&[u8]> = offers_without_h2c(b"h2c, websocket").collect();
        assert_eq!(offers, [&b"websocket"[..]]);
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
}
