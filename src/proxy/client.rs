//! Who a request is from: the connection's client (the PROXY protocol source where the
//! listener reads one, else the TCP peer), and, when that is a trusted proxy, the
//! address its `X-Forwarded-For` names.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::HeaderValue;

use super::Incoming;

/// What the proxy knows about the client connection a request came on.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    /// The PROXY protocol source where the listener reads one, else the TCP peer.
    pub peer: SocketAddr,
    pub tls: bool,
    /// `peer`'s IP, formatted once per connection (for `X-Forwarded-For`).
    pub ip: HeaderValue,
    /// The trusted proxies, when `peer` is one of them: its `X-Forwarded-For` is
    /// believed.
    pub trusted: Option<Arc<[ipnet::IpNet]>>,
}

impl Client {
    /// A client at `peer`; `trusted` is the `[listen] trusted_proxies` list.
    pub(crate) fn new(peer: SocketAddr, tls: bool, trusted: &Arc<[ipnet::IpNet]>) -> Client {
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        let believed = trusted.iter().any(|net| net.contains(&peer.ip()));
        Client {
            peer,
            tls,
            ip: ip_header(peer.ip()),
            trusted: believed.then(|| trusted.clone()),
        }
    }

    /// The address `req` comes from, when it is not `peer`: from a trusted peer, the
    /// last address of `X-Forwarded-For` (all its fields, in order) that is not trusted
    /// itself, or the first one when all are (nginx's `real_ip_recursive`). A hop that
    /// is not an address ends the walk with no answer: what lies left of it cannot be
    /// vouched for.
    pub(crate) fn forwarded_for(&self, req: &impl Incoming) -> Option<IpAddr> {
        let trusted = self.trusted.as_deref()?;
        let lists: smallvec::SmallVec<[&[u8]; 2]> = req
            .fields()
            .filter(|f| f.name.eq_ignore_ascii_case(b"x-forwarded-for"))
            .map(|f| f.value)
            .collect();
        last_untrusted(&lists, trusted)
    }
}

/// The walk of [`Client::forwarded_for`] over the field values `lists`.
fn last_untrusted(lists: &[&[u8]], trusted: &[ipnet::IpNet]) -> Option<IpAddr> {
    let hops = lists
        .iter()
        .rev()
        .flat_map(|list| list.rsplit(|&b| b == b','))
        .map(|hop| hop.trim_ascii())
        .filter(|hop| !hop.is_empty());
    let mut leftmost = None;
    for hop in hops {
        let ip = parse_hop(hop)?;
        if !trusted.iter().any(|net| net.contains(&ip)) {
            return Some(ip);
        }
        leftmost = Some(ip);
    }
    leftmost
}

/// One `X-Forwarded-For` entry: an address, or an address with a port as some proxies
/// write it (`192.0.2.1:4711`, `[2001:db8::1]:4711`).
fn parse_hop(hop: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(hop).ok()?;
    text.parse::<IpAddr>()
        .or_else(|_| text.parse::<SocketAddr>().map(|a| a.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

/// The client's IP as a header value, formatted once per connection for
/// `X-Forwarded-For`.
fn ip_header(ip: IpAddr) -> HeaderValue {
    let value = match ip {
        // The common case, without the formatting machinery (a visible share of a
        // short connection's cost).
        IpAddr::V4(v4) => {
            let mut text = Vec::with_capacity(15);
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text.push(b'.');
                }
                text.extend_from_slice(crate::http1::fields::decimal(octet.into(), &mut [0u8; 20]));
            }
            HeaderValue::from_maybe_shared(bytes::Bytes::from(text))
        }
        ip => HeaderValue::try_from(ip.to_string()),
    };
    value.unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

#[cfg(test)]
mod tests {
    use super::*;
    fn client(peer: &str, trusted: &[&str]) -> Client {
        let list: Arc<[ipnet::IpNet]> = trusted.iter().map(|t| t.parse().expect("cidr")).collect();
        Client::new(SocketAddr::new(peer.parse().expect("ip"), 1), false, &list)
    }

    fn from(c: &Client, xff: &[&str]) -> Option<String> {
        let lists: Vec<&[u8]> = xff.iter().map(|v| v.as_bytes()).collect();
        let trusted = c.trusted.as_deref()?;
        last_untrusted(&lists, trusted).map(|ip| ip.to_string())
    }

    #[test]
    fn a_trusted_peer_names_the_last_untrusted_hop() {
        let c = client("127.0.0.1", &["127.0.0.0/8", "10.0.0.0/8"]);
        assert_eq!(from(&c, &["203.0.113.7"]), Some("203.0.113.7".into()));
        assert_eq!(
            from(&c, &["198.51.100.1, 203.0.113.7, 10.1.1.1"]),
            Some("203.0.113.7".into())
        );
        assert_eq!(
            from(&c, &["198.51.100.1", "203.0.113.7 , 10.1.1.1,"]),
            Some("203.0.113.7".into())
        );
        assert_eq!(from(&c, &["10.0.0.2, 127.0.0.9"]), Some("10.0.0.2".into()));
        assert_eq!(from(&c, &["192.0.2.1:4711"]), Some("192.0.2.1".into()));
        assert_eq!(
            from(&c, &["[2001:db8::1]:4711"]),
            Some("2001:db8::1".into())
        );
        assert_eq!(from(&c, &["garbage, 10.0.0.1"]), None);
        assert_eq!(from(&c, &[]), None);
    }

    #[test]
    fn an_untrusted_peer_is_not_believed() {
        let c = client("192.0.2.50", &["127.0.0.0/8"]);
        assert!(c.trusted.is_none());
        assert_eq!(from(&c, &["203.0.113.7"]), None);
        // An IPv4 peer on an IPv6 socket is the IPv4 address.
        let mapped = client("::ffff:127.0.0.1", &["127.0.0.0/8"]);
        assert!(mapped.trusted.is_some());
        assert_eq!(mapped.ip, "127.0.0.1");
    }

    #[test]
    fn client_ips_read_as_std_writes_them() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.255.9",
            "255.255.255.255",
            "::1",
            "2001:db8::7",
        ] {
            assert_eq!(ip_header(ip.parse().expect("ip")), ip);
        }
    }
}
