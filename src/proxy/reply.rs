//! An answer for the client before a server writes it.
//!
//! A backend's fields stay as they came off the wire: cutover's own HTTP/1 server
//! writes them out as they are, and only hyper's side (bodies, upgrades, HTTP/2) makes
//! a `HeaderMap` of them.

use http::{header, HeaderValue, Response, StatusCode};

use super::body::ProxyBody;
use super::fields::{self, Fields};
use super::headers::{RequestId, X_REQUEST_ID};

#[derive(Debug)]
pub struct Reply {
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
    pub fn new(status: StatusCode, fields: Fields, body: ProxyBody) -> Self {
        Reply {
            status,
            fields,
            body,
            request_id: None,
            close: false,
        }
    }

    /// Whether an HTTP/1 writer passes the field `name` on as it is: it writes its own
    /// `Connection`, and the proxy's request id replaces the backend's.
    pub fn passes(&self, name: &[u8]) -> bool {
        !(fields::name_is(name, b"connection")
            || self.request_id.is_some() && fields::name_is(name, b"x-request-id"))
    }

    /// The answer as hyper takes it.
    pub fn into_response(self) -> Response<ProxyBody> {
        let mut headers = self.fields.to_map(2);
        if let Some(id) = self.request_id {
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
