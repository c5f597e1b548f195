//! The host a request names (RFC 9112 3.2; RFC 3986 3.2.2), checked before it is routed
//! on or sent anywhere.
//!
//! Stricter than RFC 3986's reg-name on purpose: a Host with a space, a slash, a comma
//! or userinfo (`a@b`) is read differently by different servers, and whatever cutover
//! forwards a backend reads again (as its Host and in `X-Forwarded-Host`). DNS names,
//! IPv4 and IPv6 literals, and a port of digits are all an edge ever needs.

/// The bytes of a host name: letters, digits, `-`, `.` and `_`.
const NAME: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || c == b'-' || c == b'.' || c == b'_';
        b += 1;
    }
    table
};

/// Whether `value` is `host [":" port]`: a name of letters, digits, `-`, `.` and `_`,
/// or an IPv6 literal in brackets; a port of at most five digits. Empty is valid (it
/// names no host, as RFC 9112 3.2 allows). Asked of every request: one table look-up
/// per byte of a name.
pub(crate) fn is_valid(value: &[u8]) -> bool {
    let name = value.iter().take_while(|&&b| NAME[usize::from(b)]).count();
    match value[name..].split_first() {
        None => true,
        Some((b':', port)) => name > 0 && is_port(port),
        Some((b'[', rest)) if name == 0 => {
            let Some(end) = rest.iter().position(|&b| b == b']') else {
                return false;
            };
            let literal = &rest[..end];
            let v6 = literal.iter().filter(|&&b| b == b':').count() >= 2
                && literal
                    .iter()
                    .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
            v6 && match rest[end + 1..].split_first() {
                None => true,
                Some((b':', port)) => is_port(port),
                Some(_) => false,
            }
        }
        Some(_) => false,
    }
}

/// Digits of a port number, 0-65535 (or none, as RFC 3986 allows).
fn is_port(digits: &[u8]) -> bool {
    digits.len() <= 5
        && digits.iter().all(u8::is_ascii_digit)
        && std::str::from_utf8(digits)
            .ok()
            .is_none_or(|d| d.is_empty() || d.parse::<u16>().is_ok())
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
            "host:65535",
            "[::]",
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
            "app.example.com:65536",
            ":80",
            "[:]",
            "[1]",
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
