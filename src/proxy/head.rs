//! The one writer of the head a backend gets, for a request either server parsed.
//!
//! Every rule about what crosses the hop lives here, applied while the bytes are
//! written: hop-by-hop fields and those `Connection` names go, names with `_` go,
//! `Content-Length` travels once and normalised, the proxy writes `Host`,
//! `X-Forwarded-*` and `X-Request-Id` itself, an upgrade keeps its `Upgrade` (less h2c)
//! with `Connection: upgrade`, and HTTP/2's split cookies travel as one field. Two
//! copies of such rules are how request smuggling gets in: one of them drifts.

use smallvec::SmallVec;

use super::error::ProxyError;
use super::headers::RequestId;
use super::Client;
use crate::http1::fields::{self, Field};
use crate::http1::hop;
use crate::upstream::Outgoing;

/// What the head says besides its fields.
#[derive(Debug)]
pub(crate) struct Line<'a> {
    pub method: &'a http::Method,
    /// Origin form (or `*`).
    pub target: &'a str,
    /// The host the client asked for, already checked (see [`crate::http1::host`]);
    /// `None` or empty: the backend's own address is sent as `Host`.
    pub host: Option<&'a [u8]>,
    pub upgrade: bool,
    /// The request came over HTTP/2, whose cookies may come as several fields.
    pub h2: bool,
    /// A body follows the head.
    pub has_body: bool,
}

/// How the writer treats one field of the client's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Forward,
    Drop,
    Upgrade,
    ContentLength,
    Cookie,
    ForwardedFor,
}

/// Writes the head for the backend from the client's fields (as they came, in order).
/// `may_name` says whether a `Connection` field may be among them (a field it names
/// is hop-by-hop too); `size` is about how many bytes the fields take.
pub(crate) fn write<'f, I>(
    line: &Line<'_>,
    fields: impl Fn() -> I,
    may_name: bool,
    size: usize,
    client: &Client,
    request_id: &RequestId,
) -> Result<Outgoing, ProxyError>
where
    I: Iterator<Item = Field<'f>>,
{
    let named: SmallVec<[&[u8]; 4]> = if may_name {
        let values = fields()
            .filter(|f| fields::name_is(f.name, b"connection"))
            .map(|f| f.value);
        hop::connection_named(values).collect()
    } else {
        SmallVec::new()
    };
    let host = line.host.filter(|h| !h.is_empty());
    let mut out = Outgoing::buffer(
        line.method.as_str().len()
            + line.target.len()
            + size
            + 2 * host.map_or(0, <[u8]>::len)
            + client.ip.len()
            + request_id.as_bytes().len()
            + 160,
    );
    out.extend_from_slice(line.method.as_str().as_bytes());
    out.extend_from_slice(b" ");
    out.extend_from_slice(line.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let host_at = host.is_none().then_some(out.len());

    let mut length: Option<u64> = None;
    let mut forwarded_for: SmallVec<[&[u8]; 2]> = SmallVec::new();
    let mut cookies: SmallVec<[&[u8]; 2]> = SmallVec::new();
    let mut upgrades: SmallVec<[&[u8]; 1]> = SmallVec::new();
    for field in fields() {
        let (name, value) = (field.name, field.value);
        let mut class = classify(name, line.upgrade);
        // An upgrade's own `Connection: upgrade` names the field it keeps.
        let kept = matches!(class, Class::Drop | Class::Upgrade);
        if !kept && named.iter().any(|t| name.eq_ignore_ascii_case(t)) {
            class = Class::Drop;
        }
        match class {
            Class::Forward => field.put(&mut out),
            Class::Drop => {}
            Class::Upgrade => upgrades.push(value),
            Class::ForwardedFor => forwarded_for.push(value),
            Class::Cookie if line.h2 => cookies.push(value),
            Class::Cookie => field.put(&mut out),
            Class::ContentLength => {
                let n = fields::content_length(value)
                    .ok_or(ProxyError::BadRequest("invalid Content-Length"))?;
                match length {
                    Some(seen) if seen != n => {
                        return Err(ProxyError::BadRequest("conflicting Content-Length"))
                    }
                    // Repeats of the same length travel as one (RFC 9110 8.6).
                    Some(_) => {}
                    None => {
                        let mut digits = [0u8; 20];
                        let digits = fields::decimal(n, &mut digits);
                        fields::put_field(&mut out, b"content-length", digits);
                        length = Some(n);
                    }
                }
            }
        }
    }
    if let Some(host) = host {
        fields::put_field(&mut out, b"host", host);
    }
    // The list the client brought, then the client.
    out.extend_from_slice(b"x-forwarded-for: ");
    for hop in &forwarded_for {
        out.extend_from_slice(hop);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(client.ip.as_bytes());
    out.extend_from_slice(b"\r\n");
    let proto: &[u8] = if client.tls { b"https" } else { b"http" };
    fields::put_field(&mut out, b"x-forwarded-proto", proto);
    if let Some(host) = host {
        fields::put_field(&mut out, b"x-forwarded-host", host);
    }
    fields::put_field(&mut out, b"x-request-id", request_id.as_bytes());
    if !cookies.is_empty() {
        // HTTP/2 may split cookies over fields; HTTP/1.1 wants one (RFC 9113 8.2.3).
        fields::put_field(&mut out, b"cookie", &cookies.join(&b"; "[..]));
    }
    if line.upgrade {
        let offers: Vec<&[u8]> = upgrades
            .iter()
            .flat_map(|v| hop::offers_without_h2c(v))
            .collect();
        fields::put_field(&mut out, b"upgrade", &offers.join(&b", "[..]));
        fields::put_field(&mut out, b"connection", b"upgrade");
    }
    let chunked = line.has_body && length.is_none();
    if chunked {
        // The client's own framing was its hop's; HTTP/2 has none.
        fields::put_field(&mut out, b"transfer-encoding", b"chunked");
    }
    out.extend_from_slice(b"\r\n");
    Ok(Outgoing {
        method: line.method.clone(),
        head: out,
        chunked,
        host_at,
    })
}

/// What the writer does with a field named `name`, by its length first: asked of every
/// field of every request, most of them forwarded as they are.
fn classify(name: &[u8], upgrade: bool) -> Class {
    // Backends that fold `_` into `-` would read `Content_Length` as framing (nginx's
    // `underscores_in_headers off`).
    if name.contains(&b'_') {
        return Class::Drop;
    }
    let is = |lower: &[u8]| fields::name_is(name, lower);
    match name.len() {
        4 if is(b"host") => Class::Drop,
        6 if is(b"cookie") => Class::Cookie,
        7 if is(b"upgrade") => {
            if upgrade {
                Class::Upgrade
            } else {
                Class::Drop
            }
        }
        12 if is(b"x-request-id") => Class::Drop,
        14 if is(b"content-length") => Class::ContentLength,
        15 if is(b"x-forwarded-for") => Class::ForwardedFor,
        16 if is(b"x-forwarded-host") => Class::Drop,
        17 if is(b"x-forwarded-proto") => Class::Drop,
        _ if hop::is_hop_by_hop_name(name) => Class::Drop,
        _ => Class::Forward,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        Client {
            peer: "10.0.0.9:5000".parse().expect("addr"),
            tls: false,
            ip: http::HeaderValue::from_static("10.0.0.9"),
            trusted: None,
        }
    }

    fn written(line: &Line<'_>, pairs: &[(&str, &str)]) -> Result<String, ProxyError> {
        let fields = || {
            pairs
                .iter()
                .map(|(n, v)| Field::new(n.as_bytes(), v.as_bytes()))
        };
        let id = RequestId::choose(std::iter::once("rid"), |v| {
            Some(http::HeaderValue::from_static(v))
        });
        let out = write(line, fields, true, 0, &client(), &id)?;
        Ok(String::from_utf8_lossy(&out.head).into_owned())
    }

    fn get<'a>(host: Option<&'a [u8]>) -> Line<'a> {
        Line {
            method: &http::Method::GET,
            target: "/a?b",
            host,
            upgrade: false,
            h2: false,
            has_body: false,
        }
    }

    #[test]
    fn the_proxy_writes_its_own_fields_and_drops_the_hop_ones() {
        let head = written(
            &get(Some(b"app.example.com:8080")),
            &[
                ("Host", "app.example.com:8080"),
                ("Connection", "keep-alive, X-Secret"),
                ("X-Secret", "1"),
                ("Keep-Alive", "timeout=5"),
                ("Proxy-Authorization", "x"),
                ("TE", "trailers"),
                ("Upgrade", "websocket"),
                ("X-Forwarded-For", "1.2.3.4"),
                ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-Host", "evil"),
                ("X-Request-Id", "client-id"),
                ("Content_Length", "5"),
                ("X-Kept", "1"),
            ],
        )
        .expect("written");
        assert_eq!(
            head,
            "GET /a?b HTTP/1.1\r\nX-Kept: 1\r\nhost: app.example.com:8080\r\n\
             x-forwarded-for: 1.2.3.4, 10.0.0.9\r\nx-forwarded-proto: http\r\n\
             x-forwarded-host: app.example.com:8080\r\nx-request-id: rid\r\n\r\n"
        );
    }

    #[test]
    fn content_length_travels_once_and_normalised() {
        let mut line = get(Some(b"h"));
        line.has_body = true;
        let head = written(
            &line,
            &[("Content-Length", "010"), ("content-length", "10")],
        )
        .expect("written");
        assert_eq!(head.matches("content-length: 10\r\n").count(), 1, "{head}");
        assert!(!head.contains("chunked"), "{head}");
        assert!(matches!(
            written(&line, &[("content-length", "1"), ("content-length", "2")]),
            Err(ProxyError::BadRequest(_))
        ));
        let head = written(&line, &[]).expect("written");
        assert!(head.contains("transfer-encoding: chunked\r\n"), "{head}");
    }

    #[test]
    fn a_missing_host_is_left_for_the_backend_address() {
        let out = write(
            &get(None),
            std::iter::empty,
            false,
            0,
            &client(),
            &RequestId::choose(std::iter::empty::<&[u8]>(), |_| None),
        )
        .expect("written");
        assert_eq!(out.host_at, Some("GET /a?b HTTP/1.1\r\n".len()));
        assert!(!String::from_utf8_lossy(&out.head).contains("host"));
    }

    #[test]
    fn an_upgrade_keeps_its_offers_less_h2c_and_cookies_join_for_h2() {
        let mut line = get(Some(b"h"));
        line.upgrade = true;
        let head = written(
            &line,
            &[
                ("Connection", "Upgrade"),
                ("Upgrade", "h2c, websocket"),
                ("cookie", "a=1"),
            ],
        )
        .expect("written");
        assert!(
            head.contains("upgrade: websocket\r\nconnection: upgrade\r\n"),
            "{head}"
        );
        assert!(head.contains("cookie: a=1\r\n"), "{head}");
        let mut h2 = get(Some(b"h"));
        h2.h2 = true;
        let head = written(&h2, &[("cookie", "a=1"), ("cookie", "b=2")]).expect("written");
        assert_eq!(head.matches("cookie").count(), 1, "{head}");
        assert!(head.contains("cookie: a=1; b=2\r\n"), "{head}");
    }
}
