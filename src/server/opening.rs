//! What comes before a connection's first request: the PROXY protocol header where the
//! listener expects one, and the TLS handshake on an `https` listener. Both fit in the
//! client header timeout together, so a client that stalls or sends garbage here holds
//! a socket and a few kilobytes for at most that long, on its own task.
//!
//! The first bytes are read here, by cutover, not by rustls: a PROXY header must be
//! taken off before the handshake, and a plain-HTTP request sent to the TLS port is
//! recognised and answered with a 400 that says so, where rustls would only see a
//! record it cannot parse. Whatever follows the header is handed to rustls (or to the
//! HTTP server) as it is, so nothing is read twice.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;

use super::response::linger;
use crate::proxy::ProxyError;
use crate::state::Shared;

/// What one listener asks of its connections; fixed for the life of the process, as
/// `[listen]` changes need a restart.
#[derive(Debug)]
pub(super) struct Edge {
    pub tls: bool,
    pub proxy_protocol: bool,
    pub trusted: Arc<[ipnet::IpNet]>,
}

/// A connection ready for its first request.
pub(super) enum Opened {
    /// Plain TCP, with the bytes read after a PROXY header.
    Plain(TcpStream, SocketAddr, BytesMut),
    /// TLS done; whether ALPN chose `h2`.
    Tls(Box<TlsStream<TcpStream>>, SocketAddr, bool),
}

/// The longest PROXY header read: a v1 line is at most 107 bytes, and a v2 header with
/// the TLVs balancers send stays well under this.
const PROXY_HEADER_MAX: usize = 4096;
/// The first read of a TLS connection: a ClientHello usually fits.
const FIRST_READ: usize = 2048;

/// Reads the PROXY header and does the handshake the listener asks for, within the
/// client header timeout; None when the connection is to be dropped (after an answer,
/// if one is owed).
pub(super) async fn open(
    mut stream: TcpStream,
    peer: SocketAddr,
    edge: &Edge,
    shared: &Shared,
) -> Option<Opened> {
    // Read once, and not held across the waits below (a reload may come meanwhile).
    let (header_timeout, config) = {
        let snapshot = shared.live.load();
        let c = &snapshot.config;
        (c.limits.client_header_timeout, c.tls_server.clone())
    };
    let deadline = Instant::now() + header_timeout;
    let mut buf = BytesMut::new();
    let mut client = peer;
    if edge.proxy_protocol {
        let header = tokio::time::timeout_at(deadline, proxy_header(&mut stream, &mut buf));
        match header.await {
            Ok(Ok(source)) => client = source.unwrap_or(peer),
            Ok(Err(why)) => {
                tracing::debug!(peer = %peer, why, "connection without a valid PROXY protocol header closed");
                return None;
            }
            Err(_) => {
                tracing::debug!(peer = %peer, "no PROXY protocol header in time; closed");
                return None;
            }
        }
    }
    if !edge.tls {
        return Some(Opened::Plain(stream, client, buf));
    }
    let config = config?;
    let handshake = async {
        if buf.is_empty() {
            buf.reserve(FIRST_READ);
            if stream.read_buf(&mut buf).await.ok()? == 0 {
                return None;
            }
        }
        if looks_like_http(&buf) {
            let unrouted = shared.live.load().unrouted.clone();
            let answer = super::response::refusal(
                &ProxyError::BadRequest("plain HTTP request sent to the HTTPS port"),
                &unrouted,
            );
            if stream.write_all(&answer).await.is_ok() {
                linger(&mut stream).await;
            }
            return None;
        }
        let mut garbage = None;
        let accept = tokio_rustls::TlsAcceptor::from(config).accept_with(stream, |conn| {
            // The bytes already read go to rustls first; it asks the socket for more
            // only once they are used up.
            while buf.has_remaining() {
                match conn.read_tls(&mut (&buf[..])) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.advance(n),
                }
            }
            if let Err(e) = conn.process_new_packets() {
                garbage = Some(e);
            }
        });
        if let Some(e) = garbage {
            tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
            return None;
        }
        match accept.await {
            Ok(tls) => Some(tls),
            Err(e) => {
                tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                None
            }
        }
    };
    let Ok(Some(tls)) = tokio::time::timeout_at(deadline, handshake).await else {
        return None;
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    Some(Opened::Tls(Box::new(tls), client, h2))
}

/// Reads a PROXY protocol v1 or v2 header off the front of the connection into `buf`,
/// leaving there whatever followed it; the client's address it carries (None for a
/// LOCAL or UNKNOWN header: a balancer's own health check, whose peer is itself).
async fn proxy_header(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
) -> Result<Option<SocketAddr>, &'static str> {
    loop {
        if let Some((len, source)) = parse_proxy_header(buf)? {
            buf.advance(len);
            return Ok(source);
        }
        if buf.len() >= PROXY_HEADER_MAX {
            return Err("PROXY protocol header too long");
        }
        buf.reserve(512);
        match stream.read_buf(buf).await {
            Ok(0) | Err(_) => return Err("closed before the PROXY protocol header ended"),
            Ok(_) => {}
        }
    }
}

/// The header at the front of `buf`: its length and source, or None while it may
/// still be arriving. ppp's own notion of a partial v1 line takes a cut address for a
/// bad one, so a v1 line is parsed only once its end is in.
fn parse_proxy_header(buf: &[u8]) -> Result<Option<(usize, Option<SocketAddr>)>, &'static str> {
    use ppp::PartialResult as _;
    const V1_MAX: usize = 107;
    let v2 = ppp::v2::PROTOCOL_PREFIX;
    if buf.len() < v2.len().min(6) {
        let could_be = v2.starts_with(buf) || b"PROXY ".starts_with(buf);
        return if could_be {
            Ok(None)
        } else {
            Err("not a PROXY protocol header")
        };
    }
    if buf.starts_with(&v2[..6]) {
        let parsed = ppp::v2::Header::try_from(buf);
        return match parsed {
            Ok(h) => Ok(Some((h.len(), v2_source(&h)))),
            Err(e) if e.is_incomplete() => Ok(None),
            Err(_) => Err("malformed PROXY protocol v2 header"),
        };
    }
    if !buf.starts_with(b"PROXY ") {
        return Err("not a PROXY protocol header");
    }
    let Some(end) = buf.iter().take(V1_MAX).position(|&b| b == b'\n') else {
        return if buf.len() >= V1_MAX {
            Err("PROXY protocol v1 line too long")
        } else {
            Ok(None)
        };
    };
    match ppp::v1::Header::try_from(&buf[..=end]) {
        Ok(h) if h.header.len() == end + 1 => Ok(Some((end + 1, v1_source(&h.addresses)))),
        _ => Err("malformed PROXY protocol v1 line"),
    }
}

fn v1_source(addresses: &ppp::v1::Addresses) -> Option<SocketAddr> {
    match addresses {
        ppp::v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        ppp::v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        ppp::v1::Addresses::Unknown => None,
    }
}

fn v2_source(header: &ppp::v2::Header<'_>) -> Option<SocketAddr> {
    if header.command == ppp::v2::Command::Local {
        return None;
    }
    match header.addresses {
        ppp::v2::Addresses::IPv4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        ppp::v2::Addresses::IPv6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        ppp::v2::Addresses::Unspecified | ppp::v2::Addresses::Unix(_) => None,
    }
}

/// Whether a connection to the TLS port opened with what reads like an HTTP request
/// line (a method in capitals) rather than a TLS record, whose first byte is 0x14-0x17.
fn looks_like_http(first: &[u8]) -> bool {
    let method = first.iter().take_while(|b| b.is_ascii_uppercase()).count();
    method > 0 && (method == first.len() || first[method] == b' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_on_the_tls_port_is_told_from_a_client_hello() {
        assert!(looks_like_http(b"GET / HTTP/1.1\r\n"));
        assert!(looks_like_http(b"PO"));
        assert!(!looks_like_http(&[0x16, 0x03, 0x01, 0x02, 0x00]));
        assert!(!looks_like_http(b"\x80\x2e\x01"));
        assert!(!looks_like_http(b"get / HTTP/1.1"));
    }

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = TcpStream::connect(addr).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        (client, server)
    }

    async fn header_of(parts: &[&[u8]]) -> (Result<Option<SocketAddr>, &'static str>, BytesMut) {
        let (mut client, mut server) = pair().await;
        for part in parts {
            client.write_all(part).await.expect("write");
            client.flush().await.expect("flush");
            tokio::task::yield_now().await;
        }
        drop(client);
        let mut buf = BytesMut::new();
        let got = proxy_header(&mut server, &mut buf).await;
        (got, buf)
    }

    #[tokio::test]
    async fn a_v1_header_names_the_client_and_leaves_the_request() {
        let (got, rest) = header_of(&[
            b"PROXY TCP4 203.0.113.7 10.0.0.1 5",
            b"6324 443\r\nGET / HTTP/1.1\r\n",
        ])
        .await;
        assert_eq!(got, Ok(Some("203.0.113.7:56324".parse().expect("addr"))));
        assert_eq!(&rest[..], b"GET / HTTP/1.1\r\n");
        let (got, _) = header_of(&[b"PROXY TCP6 2001:db8::7 ::1 4711 80\r\n"]).await;
        assert_eq!(got, Ok(Some("[2001:db8::7]:4711".parse().expect("addr"))));
        let (got, rest) = header_of(&[b"PROXY UNKNOWN\r\nx"]).await;
        assert_eq!((got, &rest[..]), (Ok(None), &b"x"[..]));
    }

    #[tokio::test]
    async fn a_v2_header_names_the_client_and_leaves_the_request() {
        let addresses = ppp::v2::Addresses::IPv4(ppp::v2::IPv4::new(
            [198, 51, 100, 9],
            [10, 0, 0, 1],
            40000,
            443,
        ));
        let header = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            addresses,
        )
        .write_tlv(ppp::v2::Type::NoOp, b"pad")
        .expect("tlv")
        .build()
        .expect("header");
        let (head, tail) = header.split_at(10);
        let (got, rest) = header_of(&[head, tail, b"\x16\x03\x01"]).await;
        assert_eq!(got, Ok(Some("198.51.100.9:40000".parse().expect("addr"))));
        assert_eq!(&rest[..], b"\x16\x03\x01");
        let local = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Local,
            ppp::v2::Protocol::Stream,
            addresses,
        )
        .build()
        .expect("header");
        assert_eq!(header_of(&[&local]).await.0, Ok(None));
    }

    #[tokio::test]
    async fn anything_else_is_refused() {
        for bad in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"PROXY TCP4 nonsense\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
            b"\r\n\r\n\0\r\nQUIT\n\x99\x11\x00\x0c",
            b"PROXY TCP4 203.0.113.7",
            b"",
        ] {
            assert!(header_of(&[bad]).await.0.is_err(), "{bad:?}");
        }
        let long = vec![b'A'; PROXY_HEADER_MAX + 10];
        assert!(header_of(&[&long]).await.0.is_err());
    }
}
