//! A client's request as the proxy reads it, whichever server parsed it: hyper (a
//! `Request` with its `HeaderMap`, for bodies, upgrades and HTTP/2), or cutover's own
//! HTTP/1 server (the head's bytes as they arrived, see [`RawRequest`]). Routing, the
//! split and the one head writer ([`super::head`]) read both alike.

use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Uri, Version};
use http_body::Body;
use hyper::upgrade::OnUpgrade;

use super::error::ProxyError;
use super::head::{self, Line};
use super::headers::{RequestId, X_REQUEST_ID};
use super::Client;
use crate::http1::fields::{self, Field, Fields, Span};
use crate::http1::hop;
use crate::upstream::{Outgoing, UpstreamRequestBody};

pub(crate) trait Incoming {
    fn method(&self) -> &Method;
    fn version(&self) -> Version;
    fn uri(&self) -> &Uri;
    /// The host asked for: the authority of an absolute-form (or HTTP/2) request, else
    /// the Host field. Kept as sent, port included (checked by the proxy before use).
    fn host(&self) -> Option<&[u8]>;
    /// The first value of the field `name`.
    fn field(&self, name: &HeaderName) -> Option<&[u8]>;
    /// Every `Cookie` field's value.
    fn cookies(&self) -> impl Iterator<Item = &[u8]>;
    /// Whether the request asks to switch protocols (see [`hop::wants_upgrade`]).
    fn wants_upgrade(&self) -> bool;
    /// The id the request is known by: the client's, when sane, else a new one.
    fn request_id(&self) -> RequestId;
    /// Every field as it came, in order.
    fn fields(&self) -> impl Iterator<Item = Field<'_>>;
    /// Whether a `Connection` field may be among them; and about how many bytes they
    /// take.
    fn shape(&self) -> (bool, usize);
    /// Whether a body follows the head.
    fn has_body(&self) -> bool;
    /// The body (`None`: it has none) and the client side of an upgrade.
    fn into_body(self) -> (Option<hyper::body::Incoming>, Option<OnUpgrade>);
}

/// What goes to the backend.
#[derive(Debug)]
pub(crate) struct Upstream {
    pub head: Outgoing,
    pub body: UpstreamRequestBody,
    pub on_upgrade: Option<OnUpgrade>,
}

/// The head the backend gets (written by [`head::write`]), the body, and the client
/// side of an upgrade.
pub(crate) fn into_upstream(
    req: impl Incoming,
    client: &Client,
    request_id: &RequestId,
    limits: &crate::config::Limits,
) -> Result<Upstream, ProxyError> {
    let upgrade = req.wants_upgrade();
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let (may_name, size) = req.shape();
    let has_body = req.has_body();
    let line = Line {
        method: req.method(),
        target,
        host: req.host(),
        upgrade,
        h2: req.version() == Version::HTTP_2,
        has_body,
    };
    let head = head::write(&line, || req.fields(), may_name, size, client, request_id)?;
    let (body, on_upgrade) = req.into_body();
    Ok(Upstream {
        head,
        body: UpstreamRequestBody::new(body, limits.max_body_bytes, limits.idle_timeout),
        on_upgrade: on_upgrade.filter(|_| upgrade),
    })
}

impl Incoming for Request<hyper::body::Incoming> {
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
        Request::version(self) == Version::HTTP_11
            && hop::wants_upgrade(
                self.headers()
                    .get_all(header::UPGRADE)
                    .iter()
                    .map(HeaderValue::as_bytes),
                self.headers()
                    .get_all(header::CONNECTION)
                    .iter()
                    .map(HeaderValue::as_bytes),
            )
    }

    fn request_id(&self) -> RequestId {
        let sent = self.headers().get_all(&X_REQUEST_ID).iter();
        RequestId::choose(sent, |v| Some(v.clone()))
    }

    fn fields(&self) -> impl Iterator<Item = Field<'_>> {
        self.headers()
            .iter()
            .map(|(n, v)| Field::new(n.as_str().as_bytes(), v.as_bytes()))
    }

    fn shape(&self) -> (bool, usize) {
        let h = self.headers();
        (h.contains_key(header::CONNECTION), fields::encoded_len(h))
    }

    fn has_body(&self) -> bool {
        !self.body().is_end_stream()
    }

    fn into_body(self) -> (Option<hyper::body::Incoming>, Option<OnUpgrade>) {
        let (mut parts, body) = self.into_parts();
        (Some(body), parts.extensions.remove::<OnUpgrade>())
    }
}

/// A request as cutover's own HTTP/1 server parsed it: origin form, no body, no
/// protocol switch, its fields as they arrived.
#[derive(Debug)]
pub(crate) struct RawRequest {
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
pub(crate) struct Sent {
    bits: u8,
    host: Option<Span>,
}

impl Sent {
    pub(crate) const HOST: u8 = 1;
    pub(crate) const CONTENT_LENGTH: u8 = 1 << 1;
    pub(crate) const CONNECTION: u8 = 1 << 2;
    pub(crate) const UPGRADE: u8 = 1 << 3;
    pub(crate) const COOKIE: u8 = 1 << 4;
    pub(crate) const X_REQUEST_ID: u8 = 1 << 5;
    pub(crate) const X_FORWARDED_FOR: u8 = 1 << 6;

    /// The bit of the field `name` (any case); 0 for a name not tracked.
    #[inline(always)]
    pub(crate) fn bit(name: &[u8]) -> u8 {
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
    pub(crate) fn note(&mut self, name: &[u8], span: Span) {
        let bit = Self::bit(name);
        if bit == Self::HOST && !self.has(bit) {
            self.host = Some(span);
        }
        self.bits |= bit;
    }

    #[inline(always)]
    pub(crate) fn has(self, bit: u8) -> bool {
        self.bits & bit != 0
    }

    /// Whether a field `name` may be there: tracked fields are known absent or not.
    #[inline(always)]
    fn may_have(self, name: &[u8]) -> bool {
        let bit = Self::bit(name);
        bit == 0 || self.has(bit)
    }
}

impl RawRequest {
    /// Every value of the field `name` (lower case), searched only when it may be there.
    #[inline(always)]
    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.sent
            .may_have(name.as_bytes())
            .then(|| self.fields.all(name))
            .into_iter()
            .flatten()
    }

    // Inlined so that a name known where it is asked for folds to its bit.
    #[inline(always)]
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
        self.sent.host.map(|span| self.fields.value_at(span))
    }

    #[inline(always)]
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

    fn fields(&self) -> impl Iterator<Item = Field<'_>> {
        self.fields.out()
    }

    fn shape(&self) -> (bool, usize) {
        (self.sent.has(Sent::CONNECTION), self.fields.encoded_len())
    }

    fn has_body(&self) -> bool {
        false
    }

    fn into_body(self) -> (Option<hyper::body::Incoming>, Option<OnUpgrade>) {
        (None, None)
    }

    fn request_id(&self) -> RequestId {
        let sent = self.all("x-request-id");
        RequestId::choose(sent, |v| {
            HeaderValue::from_maybe_shared(self.fields.share(v)).ok()
        })
    }
}
