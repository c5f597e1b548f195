//! The host a request names (RFC 9112 3.2; RFC 3986 3.2.2), checked before it is routed
//! on or sent anywhere.
//!
//! Stricter than RFC 3986's reg-name on purpose: a Host with a space, a slash, a comma
//! or userinfo (`a@b`) is read differently by different servers, and whatever cutover
//! forwards a backend reads again (as its Host and in `X-Forwarded-Host`). DNS names,
//! IPv4 and IPv6 literals, and a port of digits are all an edge ever needs.

/// Whether `value` is `host [":" port]`: a name of letters, digits, `-`, `.` and `_`,
/// or an IPv6 literal in brackets; a port of at most five digits. Empty is valid (it
/// names no host, as RFC 9112 3.2 allows).
pub(crate) fn is_valid(value: &[u8]) -> bool {
    let (host, port) = match value.strip_prefix(b"[") {
        Some(rest) => {
            let Some(end) = rest.iter().position(|&b| b == b']') else {
                return false;
            };
            let literal = &rest[..end];
            let ok = literal.contains(&b':')
                && literal
                    .iter()
                    .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
            if !ok {
                return false;
            }
            (&b""[..], &rest[end + 1..])
        }
        None => match value.iter().position(|&b| b == b':') {
            Some(colon) => (&value[..colon], &value[colon..]),
            None => (value, &b""[..]),
        },
    };
    let name_ok = host
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    let port_ok = match port.split_first() {
        None => true,
        Some((b':', digits)) => digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    name_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_an_edge_sees_are_valid() {
        for good in [
            "",
            "app.example.com",
            "APP.Example.com:8080",
            "127.0.0.1",
            "127.0.0.1:80",
            "[::1]",
            "[2001:db8::7]:443",
            "svc_name.internal",
            "localhost:",
        ] {
            assert!(is_valid(good.as_bytes()), "{good}");
        }
    }

    #[test]
    fn ambiguous_hosts_are_not() {
        for bad in [
            "app example.com",
            "evil.example/x",
            "a.example, b.example",
            "a.example,b.example",
            "app.example.com:80x",
            "app.example.com@evil.example",
            "evil@app.example.com",
            "app.example.com:123456",
            "app.example.com:80:80",
            "[::1",
            "[::1]x",
            "[not-v6]",
            "a\tb",
            "a%2fb",
            "\u{e9}.example",
        ] {
            assert!(!is_valid(bad.as_bytes()), "{bad}");
        }
    }
}
