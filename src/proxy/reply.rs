//! An answer for the client before a server writes it, and the one rule for the fields
//! it carries (see [`Reply::fields_out`]).
//!
//! A backend's fields stay as they came off the wire: cutover's own HTTP/1 server
//! writes them out as they are, and only hyper's side (bodies, upgrades, HTTP/2) makes
//! a `HeaderMap` of them; both take them from [`Reply::fields_out`].

use http::{header, HeaderName, HeaderValue, Response, StatusCode};

use super::body::ProxyBody;
use super::headers::{RequestId, X_REQUEST_ID};
use crate::http1::fields::{self, Field, Fields};

#[derive(Debug)]
pub(crate) struct Reply {
    pub status: StatusCode,
    /// Hop-by-hop fields already gone (but for a 101's).
    pub fields: Fields,
    pub body: ProxyBody,
    /// The proxy's `X-Request-Id`, written in place of any the backend sent.
    pub request_id: Option<RequestId>,
    /// The proxy ends the connection after this answer.
    pub close: bool,
}

impl Reply {
    pub(crate) fn new(status: StatusCode, fields: Fields, body: ProxyBody) -> Self {
        Reply {
            status,
            fields,
            body,
            request_id: None,
            close: false,
        }
    }

    /// The fields the client gets, whichever server writes them: the backend's as they
    /// came (hop-by-hop ones already gone), less any `Connection` (each server writes
    /// its own) and less the backend's request id, which the proxy's replaces (it comes
    /// last, from [`Reply::request_id`]).
    ///
    /// A 101 keeps its `Connection: upgrade`: the client's handshake needs it (RFC 6455
    /// 4.1), and hyper writes none of its own on a switch.
    pub(crate) fn fields_out(&self) -> impl Iterator<Item = Field<'_>> {
        let replace_id = self.request_id.is_some();
        let switching = self.status == StatusCode::SWITCHING_PROTOCOLS;
        self.fields.out().filter(move |f| {
            !(!switching && fields::name_is(f.name, b"connection")
                || replace_id && fields::name_is(f.name, b"x-request-id"))
        })
    }

    /// The answer as hyper takes it.
    pub(crate) fn into_response(self) -> Response<ProxyBody> {
        let mut headers = http::HeaderMap::with_capacity(self.fields.len() + 2);
        for Field { name, value, .. } in self.fields_out() {
            // httparse let no name or value through that the map would refuse; should
            // one be, it is left out rather than failing an answer already under way.
            let value = HeaderValue::from_maybe_shared(self.fields.share(value));
            if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), value) {
                headers.append(name, value);
            }
        }
        if let Some(id) = &self.request_id {
            headers.insert(&X_REQUEST_ID, id.to_value());
        }
        if self.close {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        let mut resp = Response::new(self.body);
        *resp.status_mut() = self.status;
        *resp.headers_mut() = headers;
        resp
    }
}
