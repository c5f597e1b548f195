//! Every way the proxy itself can answer a request, and the one map from each to its
//! status code and `x-cutover-error` kind.

use http::StatusCode;

use super::body::ProxyBody;
use super::reply::Reply;
use crate::http1::fields::Fields;
use crate::upstream::{ConnectError, RequestBodyError, UpstreamError};

/// An error made by the proxy, as opposed to a status a backend sent.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    #[error("malformed request: {0}")]
    BadRequest(&'static str),
    #[error("no route for this host and path")]
    NoRoute,
    #[error("request body exceeds max_body_bytes")]
    BodyTooLarge,
    #[error("request head exceeds max_header_bytes")]
    HeadersTooLarge,
    #[error("request head not received within client_header_timeout")]
    ClientTimeout,
    #[error("could not connect to the backend")]
    ConnectFailed(#[source] ConnectError),
    #[error("the backend closed or reset the connection")]
    UpstreamReset(#[source] UpstreamError),
    #[error("the backend sent a malformed response")]
    BadUpstreamResponse(#[source] UpstreamError),
    #[error("no ready backend for this request")]
    NoReadyBackend,
    #[error("the backend did not answer within response_timeout")]
    UpstreamTimeout,
}

impl ProxyError {
    /// Status and `x-cutover-error` kind. Exhaustive on purpose: a new variant must
    /// decide both here.
    pub(crate) fn status_and_kind(&self) -> (StatusCode, &'static str) {
        match self {
            ProxyError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ProxyError::NoRoute => (StatusCode::NOT_FOUND, "no_route"),
            ProxyError::BodyTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            ProxyError::HeadersTooLarge => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
            ),
            ProxyError::ClientTimeout => (StatusCode::REQUEST_TIMEOUT, "client_timeout"),
            ProxyError::ConnectFailed(_) => (StatusCode::BAD_GATEWAY, "connect_failed"),
            ProxyError::UpstreamReset(_) => (StatusCode::BAD_GATEWAY, "upstream_reset"),
            ProxyError::BadUpstreamResponse(_) => {
                (StatusCode::BAD_GATEWAY, "bad_upstream_response")
            }
            ProxyError::NoReadyBackend => (StatusCode::SERVICE_UNAVAILABLE, "no_ready_backend"),
            ProxyError::UpstreamTimeout => (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout"),
        }
    }

    pub(crate) fn kind(&self) -> &'static str {
        self.status_and_kind().1
    }

    /// The short plain-text answer sent to the client: the one rendering of the
    /// proxy's own answers, written by whichever server has the client.
    pub(crate) fn reply(&self) -> Reply {
        let (status, kind) = self.status_and_kind();
        let fields = Fields::from_pairs(&[
            ("content-type", "text/plain; charset=utf-8"),
            ("x-cutover-error", kind),
        ]);
        Reply::new(status, fields, ProxyBody::text(format!("{self}\n")))
    }

    /// The answer when an exchange with a backend failed. Exhaustive, like the status
    /// map: a new way to fail must decide its answer here.
    pub(crate) fn from_upstream(e: UpstreamError) -> ProxyError {
        match e {
            UpstreamError::Malformed(_) => ProxyError::BadUpstreamResponse(e),
            UpstreamError::NotSent(_) | UpstreamError::Closed { .. } | UpstreamError::Io { .. } => {
                ProxyError::UpstreamReset(e)
            }
            UpstreamError::Body(body) => ProxyError::from_body(body),
        }
    }

    /// The answer when the client's own body could not be carried: its fault, not
    /// the backend's.
    pub(crate) fn from_body(e: RequestBodyError) -> ProxyError {
        match e {
            RequestBodyError::TooLarge => ProxyError::BodyTooLarge,
            RequestBodyError::Stalled => ProxyError::ClientTimeout,
            RequestBodyError::Client(_) => {
                ProxyError::BadRequest("the request body was malformed or cut short")
            }
        }
    }
}
