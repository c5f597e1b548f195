//! The checks of what faces clients: `[listen]` (addresses, PROXY protocol, trusted
//! proxies) and `[tls]` (each certificate and key read, parsed and matched here, so
//! that a broken pair is a config error and never a failed handshake later).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml::Spanned;

use super::Checker;
use crate::config::{raw, CertPair, Listen};

/// What `[tls]` came to.
#[derive(Default)]
pub(super) struct Tls {
    pub pairs: Vec<CertPair>,
    pub server: Option<Arc<rustls::ServerConfig>>,
    /// The hash of the bytes the pairs were read from.
    pub files_hash: u64,
}

impl Checker<'_> {
    pub(super) fn socket_addr(&mut self, s: &Spanned<String>) -> Option<SocketAddr> {
        match s.get_ref().parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.error(
                    s.span(),
                    format!(
                        "bad listen address {:?}: expected ip:port, e.g. \"0.0.0.0:8080\"",
                        s.get_ref()
                    ),
                );
                None
            }
        }
    }

    pub(super) fn listen(&mut self, raw: &raw::RawListen) -> Listen {
        let http = match &raw.http {
            Some(v) => v.iter().filter_map(|s| self.socket_addr(s)).collect(),
            None => vec![SocketAddr::from(([0, 0, 0, 0], 8080))],
        };
        let https = match &raw.https {
            Some(v) => v.iter().filter_map(|s| self.socket_addr(s)).collect(),
            None => Vec::new(),
        };
        let trusted_proxies = raw
            .trusted_proxies
            .iter()
            .flatten()
            .filter_map(|s| self.cidr(s))
            .collect();
        Listen {
            http,
            https,
            proxy_protocol: raw.proxy_protocol.as_ref().is_some_and(|b| *b.get_ref()),
            trusted_proxies,
        }
    }

    /// A CIDR, or a bare address (the one host).
    fn cidr(&mut self, s: &Spanned<String>) -> Option<ipnet::IpNet> {
        let text = s.get_ref().trim();
        let parsed = text.parse::<ipnet::IpNet>().ok().or_else(|| {
            text.parse::<std::net::IpAddr>()
                .ok()
                .map(ipnet::IpNet::from)
        });
        if parsed.is_none() {
            self.error(
                s.span(),
                format!(
                    "bad trusted proxy {text:?}: expected a CIDR such as \"10.0.0.0/8\" or an address"
                ),
            );
        }
        // `10.1.2.3/8` means the network, as every CIDR list reads it.
        parsed.map(|n| ipv4_if_mapped(n).trunc())
    }

    /// The certificate pairs, each loaded and checked, and the rustls config that
    /// serves them (None when there are none, or one is broken).
    pub(super) fn tls(&mut self, raw: &Spanned<raw::RawTls>) -> Tls {
        let certs = &raw.get_ref().certs;
        if certs.get_ref().is_empty() {
            self.error(certs.span(), "[tls] certs is empty");
        }
        let mut pairs = Vec::new();
        let mut loaded = Vec::new();
        let mut broken = false;
        let mut digest = crate::tls::FilesDigest::default();
        for pair in certs.get_ref() {
            let pair = pair.get_ref();
            let cert = self.readable_file(&pair.cert, "certificate");
            let key = self.readable_file(&pair.key, "key");
            let (Some(cert), Some(key)) = (cert, key) else {
                broken = true;
                continue;
            };
            match crate::tls::load_pair(&cert, &key, &mut digest) {
                Ok(l) => loaded.push(l),
                Err(e) => {
                    broken = true;
                    match e {
                        crate::tls::PairError::Cert(m) => self.error(pair.cert.span(), m),
                        crate::tls::PairError::Key(m) => self.error(pair.key.span(), m),
                    }
                }
            }
            pairs.push(CertPair { cert, key });
        }
        let files_hash = digest.finish();
        let server = match crate::tls::Certs::new(loaded).map(crate::tls::server_config) {
            _ if broken => None,
            Some(Ok(server)) => Some(server),
            Some(Err(e)) => {
                self.error(
                    certs.span(),
                    format!("cannot build the TLS configuration: {e}"),
                );
                None
            }
            None => None,
        };
        Tls {
            pairs,
            server,
            files_hash,
        }
    }

    fn readable_file(&mut self, s: &Spanned<String>, what: &str) -> Option<PathBuf> {
        let path = crate::config::resolve_relative(self.path, Path::new(s.get_ref()));
        match std::fs::File::open(&path) {
            Ok(_) => Some(path),
            Err(e) => {
                self.error(
                    s.span(),
                    format!("cannot read {what} file {}: {e}", path.display()),
                );
                None
            }
        }
    }
}

/// An IPv4 network written IPv4-mapped (`::ffff:10.0.0.0/104`) as the IPv4 one: peers
/// and `X-Forwarded-For` hops are compared as IPv4.
fn ipv4_if_mapped(net: ipnet::IpNet) -> ipnet::IpNet {
    let ipnet::IpNet::V6(v6) = net else {
        return net;
    };
    match v6.addr().to_ipv4_mapped() {
        Some(v4) if v6.prefix_len() >= 96 => {
            ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(net, ipnet::IpNet::V4)
        }
        _ => net,
    }
}

#[cfg(test)]
mod tests {
    use super::ipv4_if_mapped;

    #[test]
    fn an_ipv4_mapped_network_is_the_ipv4_one() {
        let net = |s: &str| s.parse::<ipnet::IpNet>().expect("net");
        assert_eq!(
            ipv4_if_mapped(net("::ffff:10.0.0.0/104")),
            net("10.0.0.0/8")
        );
        assert_eq!(
            ipv4_if_mapped(net("::ffff:192.0.2.7/128")),
            net("192.0.2.7/32")
        );
        assert_eq!(ipv4_if_mapped(net("2001:db8::/32")), net("2001:db8::/32"));
        assert_eq!(ipv4_if_mapped(net("10.0.0.0/8")), net("10.0.0.0/8"));
    }
}
