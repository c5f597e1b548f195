//! A client's request as the proxy reads it, whichever server parsed it: hyper (a
//! `Request` with its `HeaderMap`, for bodies, upgrades and HTTP/2), or cutover's own
//! HTTP/1 server (the head's bytes as they arrived, see [`RawRequest`]). Routing and
//! the split read both alike; each rewrites its own head for the backend.

use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Uri, Version};
use http_body::Body;
use hyper::upgrade::OnUpgrade;

use super::body::ClientBody;
use super::fields::{self, Fields, Span};
use super::headers::{self, RequestId, X_FORWARDED_FOR, X_REQUEST_ID};
use super::upstream::Outgoing;
use super::Client;

pub trait Incoming {
    fn method(&self) -> &Method;
    fn version(&self) -> Version;
    fn uri(&self) -> &Uri;
    /// The host asked for: the authority of an absolute-form (or HTTP/2) request, else
    /// the Host field. Kept as sent, port included.
    fn host(&self) -> Option<&[u8]>;
    /// The first value of the field `name`.
    fn field(&self, name: &HeaderName) -> Option<&[u8]>;
    /// Every `Cookie` field's value.
    fn cookies(&self) -> impl Iterator<Item = &[u8]>;
    /// Whether the request asks to switch protocols (see [`headers::wants_upgrade`]).
    fn wants_upgrade(&self) -> bool;
    /// The id the request is known by: the client's, when sane, else a new one.
    fn request_id(&self) -> RequestId;
    /// The head the backend gets (hop-by-hop fields gone, `X-Forwarded-*` and
    /// `X-Request-Id` set), the body, and the client side of an upgrade.
    fn into_upstream(self, client: &Client, request_id: &RequestId) -> Upstream;
}

/// What goes to the backend.
#[derive(Debug)]
pub struct Upstream {
    pub head: Outgoing,
    pub body: ClientBody,
    pub on_upgrade: Option<OnUpgrade>,
}

fn proto(client: &Client) -> &'static str {
    if client.tls {
        "https"
    } else {
        "http"
    }
}

impl Incoming for Request<ClientBody> {
    fn method(&self) -> &Method {
        Request::method(self)
    }

    fn version(&self) -> Version {
        Request::version(self)
    }

    fn uri(&self) -> &Uri {
        Request::uri(self)
    }

    fn host(&self) -> Option<&[u8]> {
        if let Some(a) = Request::uri(self).authority() {
            return Some(a.as_str().as_bytes());
        }
        self.headers().get(header::HOST).map(HeaderValue::as_bytes)
    }

    fn field(&self, name: &HeaderName) -> Option<&[u8]> {
        self.headers().get(name).map(HeaderValue::as_bytes)
    }

    fn cookies(&self) -> impl Iterator<Item = &[u8]> {
        self.headers()
            .get_all(header::COOKIE)
            .iter()
            .map(HeaderValue::as_bytes)
    }

    fn wants_upgrade(&self) -> bool {
        Request::version(self) == Version::HTTP_11 && headers::wants_upgrade(self.headers())
    }

    fn request_id(&self) -> RequestId {
        let sent = self.headers().get_all(&X_REQUEST_ID).iter();
        RequestId::choose(sent, |v| Some(v.clone()))
    }

    fn into_upstream(self, client: &Client, request_id: &RequestId) -> Upstream {
        let host = Incoming::host(&self).and_then(|h| HeaderValue::from_bytes(h).ok());
        let upgrade = Incoming::wants_upgrade(&self);
        let (mut parts, body) = self.into_parts();
        let on_upgrade = upgrade
            .then(|| parts.extensions.remove::<OnUpgrade>())
            .flatten();
        let h = &mut parts.headers;
        headers::strip_hop_by_hop(h, upgrade);
        if upgrade {
            headers::drop_h2c(h);
        }
        if parts.version == Version::HTTP_2 {
            // HTTP/2 may split cookies into several fields; HTTP/1.1 wants one (RFC 9113 8.2.3).
            headers::join_cookies(h);
        }
        headers::set_forwarded(h, &client.ip, proto(client), host.clone());
        h.insert(&X_REQUEST_ID, request_id.to_value());
        // An absolute-form (or HTTP/2) request's authority is its host (RFC 9112 3.2.2).
        if !h.contains_key(header::HOST) || parts.uri.authority().is_some() {
            if let Some(host) = host {
                h.insert(header::HOST, host);
            }
        }
        let has_body = matches!(&body, ClientBody::Hyper(b) if !b.is_end_stream());
        // Backends get origin form whatever the client sent.
        let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        Upstream {
            head: Outgoing::encode(&parts, target, has_body),
            body,
            on_upgrade,
        }
    }
}

/// A request as cutover's own HTTP/1 server parsed it: origin form, no body, no
/// protocol switch, its fields as they arrived.
#[derive(Debug)]
pub struct RawRequest {
    pub method: Method,
    pub version: Version,
    pub uri: Uri,
    pub fields: Fields,
    /// Which fields the proxy reads are there, noted as the head was parsed.
    pub sent: Sent,
}

/// The fields the proxy reads that a plain request carries, noted in the pass that
/// records its fields. Most requests carry few of them, and an absent one then costs
/// no search of the head; the Host field, which nearly all carry and several steps
/// read, is kept where it lies.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sent {
    bits: u8,
    host: Option<Span>,
}

impl Sent {
    pub const HOST: u8 = 1;
    pub const CONTENT_LENGTH: u8 = 1 << 1;
    pub const CONNECTION: u8 = 1 << 2;
    pub const UPGRADE: u8 = 1 << 3;
    pub const COOKIE: u8 = 1 << 4;
    pub const X_REQUEST_ID: u8 = 1 << 5;
    pub const X_FORWARDED_FOR: u8 = 1 << 6;

    /// The bit of the field `name` (any case); 0 for a name not tracked.
    pub fn bit(name: &[u8]) -> u8 {
        let (known, bit): (&[u8], u8) = match name.len() {
            4 => (b"host", Self::HOST),
            6 => (b"cookie", Self::COOKIE),
            7 => (b"upgrade", Self::UPGRADE),
            10 => (b"connection", Self::CONNECTION),
            12 => (b"x-request-id", Self::X_REQUEST_ID),
            14 => (b"content-length", Self::CONTENT_LENGTH),
            15 => (b"x-forwarded-for", Self::X_FORWARDED_FOR),
            _ => return 0,
        };
        if fields::name_is(name, known) {
            bit
        } else {
            0
        }
    }

    /// Notes the field at `span`, named `name`.
    pub fn note(&mut self, name: &[u8], span: Span) {
        let bit = Self::bit(name);
        if bit == Self::HOST && !self.has(bit) {
            self.host = Some(span);
        }
        self.bits |= bit;
    }

    pub fn has(self, bit: u8) -> bool {
        self.bits & bit != 0
    }

    /// Whether a field `name` may be there: tracked fields are known absent or not.
    fn may_have(self, name: &[u8]) -> bool {
        let bit = Self::bit(name);
        bit == 0 || self.has(bit)
    }
}

impl RawRequest {
    /// Every value of the field `name` (lower case), searched only when it may be there.
    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.sent
            .may_have(name.as_bytes())
            .then(|| self.fields.all(name))
            .into_iter()
            .flatten()
    }

    fn get(&self, name: &str) -> Option<&[u8]> {
        if name == "host" {
            return self.sent.host.map(|span| self.fields.value_at(span));
        }
        if self.sent.may_have(name.as_bytes()) {
            self.fields.get(name)
        } else {
            None
        }
    }
}

impl Incoming for RawRequest {
    fn method(&self) -> &Method {
        &self.method
    }

    fn version(&self) -> Version {
        self.version
    }

    fn uri(&self) -> &Uri {
        &self.uri
    }

    fn host(&self) -> Option<&[u8]> {
        self.get("host")
    }

    fn field(&self, name: &HeaderName) -> Option<&[u8]> {
        self.get(name.as_str())
    }

    fn cookies(&self) -> impl Iterator<Item = &[u8]> {
        self.all("cookie")
    }

    fn wants_upgrade(&self) -> bool {
        // The plain server hands every request with an Upgrade field to hyper.
        false
    }

    fn request_id(&self) -> RequestId {
        let sent = self.all("x-request-id");
        RequestId::choose(sent, |v| {
            HeaderValue::from_maybe_shared(self.fields.share(v)).ok()
        })
    }

    fn into_upstream(self, client: &Client, request_id: &RequestId) -> Upstream {
        let fields = &self.fields;
        let target = self.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let host = self.get("host");
        // The rules of `headers::strip_hop_by_hop`, on bytes: hop-by-hop fields go, and
        // so does every field a Connection field names.
        let named = if self.sent.has(Sent::CONNECTION) {
            headers::connection_named(fields)
        } else {
            Vec::new()
        };
        let goes = |name: &[u8]| {
            headers::is_hop_by_hop_name(name) || named.iter().any(|t| name.eq_ignore_ascii_case(t))
        };
        // Written by the proxy below, whatever the client sent.
        let ours = |name: &[u8]| {
            [
                "host",
                "x-forwarded-for",
                "x-forwarded-proto",
                "x-forwarded-host",
                "x-request-id",
            ]
            .iter()
            .any(|o| fields::name_is(name, o.as_bytes()))
        };
        let mut out = Outgoing::buffer(
            self.method.as_str().len()
                + target.len()
                + fields.encoded_len()
                + 2 * host.map_or(0, <[u8]>::len)
                + client.ip.len()
                + request_id.as_bytes().len()
                + 128,
        );
        out.extend_from_slice(self.method.as_str().as_bytes());
        out.extend_from_slice(b" ");
        out.extend_from_slice(target.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        let mut length_sent = false;
        for (name, line) in fields.lines() {
            if goes(name) || ours(name) {
                continue;
            }
            // The guard let through only equal repeats; one goes on (as hyper does).
            if fields::name_is(name, b"content-length") {
                if length_sent {
                    continue;
                }
                length_sent = true;
            }
            fields::put_line(&mut out, line);
        }
        if let Some(host) = host {
            fields::put_field(&mut out, b"host", host);
        }
        // X-Forwarded-For: the list the client brought, then the client.
        out.extend_from_slice(X_FORWARDED_FOR.as_str().as_bytes());
        out.extend_from_slice(b": ");
        if !goes(X_FORWARDED_FOR.as_str().as_bytes()) {
            for hop in self.all("x-forwarded-for") {
                out.extend_from_slice(hop);
                out.extend_from_slice(b", ");
            }
        }
        out.extend_from_slice(client.ip.as_bytes());
        out.extend_from_slice(b"\r\n");
        fields::put_field(&mut out, b"x-forwarded-proto", proto(client).as_bytes());
        if let Some(host) = host {
            fields::put_field(&mut out, b"x-forwarded-host", host);
        }
        fields::put_field(&mut out, b"x-request-id", request_id.as_bytes());
        out.extend_from_slice(b"\r\n");
        Upstream {
            head: Outgoing {
                method: self.method,
                head: out,
                chunked: false,
            },
            body: ClientBody::Empty,
            on_upgrade: None,
        }
    }
}
