//! Reading a backend's answer: the response head (RFC 9112 section 4) and how its
//! body is delimited (section 6.3); [`crate::http1::body`] reads the body itself.
//!
//! Header values are not copied: the head's bytes are frozen once and every value is a
//! slice of them.

use std::mem::MaybeUninit;
use std::time::Duration;

use bytes::BytesMut;
use http::StatusCode;

use super::UpstreamError;
use crate::http1::body::{Chunk, Framing};
use crate::http1::fields::{self, Fields};
use crate::http1::hop;

/// Most header fields a backend's response may carry (hyper's bound).
const MAX_HEADERS: usize = 100;
/// Largest response head accepted from a backend.
const MAX_HEAD_BYTES: usize = fields::MAX_HEAD;

/// A backend's response head, as the client will get it (hop-by-hop fields are still
/// there; the caller strips them).
#[derive(Debug)]
pub(crate) struct Head {
    pub status: StatusCode,
    pub fields: Fields,
    pub framing: Framing,
    /// Whether the backend lets the connection carry another request.
    pub keep_alive: bool,
    /// How long the backend keeps an idle connection open, if it says
    /// (`Keep-Alive: timeout=N`).
    pub idle_for: Option<Duration>,
    /// Hop-by-hop fields are left out of `fields`, unless `Connection` names more
    /// fields than the standard ones: then it is kept, for the caller to strip.
    pub names_more: bool,
}

/// Parses one response head from the front of `buf`, consuming it; `Ok(None)` when the
/// head is not complete yet. `to_head` says the request was a HEAD (no body follows
/// whatever the head declares).
pub(super) fn parse_head(buf: &mut BytesMut, to_head: bool) -> Result<Option<Head>, UpstreamError> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut []);
    let status = httparse::ParserConfig::default()
        .allow_obsolete_multiline_headers_in_responses(false)
        .parse_response_with_uninit_headers(&mut parsed, buf, &mut slots);
    let len = match status {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD_BYTES => len,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD_BYTES => return Ok(None),
        Ok(_) => return Err(UpstreamError::Malformed("response head too large")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(UpstreamError::Malformed("too many response header fields"))
        }
        Err(_) => return Err(UpstreamError::Malformed("invalid response head")),
    };
    let code = parsed.code.unwrap_or(0);
    let status = StatusCode::from_u16(code)
        .map_err(|_| UpstreamError::Malformed("invalid response status"))?;
    let http11 = parsed.version == Some(1);
    let spans: fields::Spans = parsed
        .headers
        .iter()
        .map(|field| fields::span_of(buf, field))
        .collect();
    let bytes = buf.split_to(len).freeze();

    let mut length: Option<u64> = None;
    let mut chunked = None;
    let mut keep_alive = http11;
    let mut idle_for = None;
    let mut names_more = false;
    // Hop-by-hop fields end here, but for a protocol switch, which the client must see
    // whole; or for a Connection that names other fields, which the caller strips.
    let switching = status == StatusCode::SWITCHING_PROTOCOLS;
    let mut kept = fields::Spans::new();
    for &span in &spans {
        let (name, value) = fields::field_at(&bytes, span);
        let keep = if fields::name_is(name, b"content-length") {
            let v = fields::content_length(value)
                .ok_or(UpstreamError::Malformed("invalid Content-Length"))?;
            if length.is_some_and(|l| l != v) {
                return Err(UpstreamError::Malformed("conflicting Content-Length"));
            }
            // Repeats of the same length travel as one (as hyper writes them): some
            // clients refuse a repeated Content-Length outright.
            length.replace(v).is_none()
        } else if fields::name_is(name, b"transfer-encoding") {
            // Only the last coding matters: chunked if it is chunked, else the body
            // runs until the connection closes (RFC 9112 6.3, rule 4).
            chunked = Some(fields::ends_in_chunked(value));
            switching
        } else if fields::name_is(name, b"connection") {
            keep_alive &= !fields::lists(value, b"close");
            let named = !hop::is_std_hop(value);
            names_more |= named;
            switching || named
        } else if fields::name_is(name, b"keep-alive") {
            idle_for = hop::keep_alive_timeout(value);
            switching
        } else {
            switching || !hop::is_hop_by_hop_name(name)
        };
        if keep {
            kept.push(span);
        }
    }
    let mut fields = Fields::new(bytes, kept);

    let bodiless = fields::has_no_body(status, to_head);
    let framing = match (chunked, length) {
        _ if bodiless => Framing::Empty,
        (Some(true), _) => Framing::Chunked(Chunk::Size),
        (Some(false), _) => Framing::UntilClose,
        (None, Some(0)) => Framing::Empty,
        (None, Some(n)) => Framing::Length(n),
        (None, None) => Framing::UntilClose,
    };
    if chunked.is_some() && !bodiless {
        // The body is re-framed for the client; a Content-Length beside
        // Transfer-Encoding is wrong and must not travel on (RFC 9112 6.3, rule 3).
        fields.retain(|name, _| !fields::name_is(name, b"content-length"));
    }
    if framing == Framing::UntilClose {
        keep_alive = false;
    }
    Ok(Some(Head {
        idle_for,
        names_more,
        status,
        fields,
        framing,
        keep_alive,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str, to_head: bool) -> Result<Option<Head>, UpstreamError> {
        parse_head(&mut BytesMut::from(raw), to_head)
    }

    #[test]
    fn framing_follows_rfc_9112_section_6_3() {
        let f = |raw: &str, to_head| head(raw, to_head).ok().flatten().map(|h| h.framing);
        assert_eq!(
            f("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", false),
            Some(Framing::Length(5))
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", true),
            Some(Framing::Empty)
        );
        assert_eq!(f("HTTP/1.1 204 No\r\n\r\n", false), Some(Framing::Empty));
        assert_eq!(
            f(
                "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\ncontent-length: 3\r\n\r\n",
                false
            ),
            Some(Framing::Chunked(Chunk::Size))
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n", false),
            Some(Framing::UntilClose)
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\n\r\n", false),
            Some(Framing::UntilClose)
        );
        assert!(head(
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
            false
        )
        .is_err());
        assert!(head("HTTP/1.1 200 OK\r\ncontent-length: -5\r\n\r\n", false).is_err());
        assert!(head("HTTP/1.1 200 OK\r\ncontent-le", false).is_ok_and(|h| h.is_none()));
        assert!(head("HTTX/1.1 200 OK\r\n\r\n", false).is_err());
    }

    #[test]
    fn keep_alive_needs_http11_without_close() {
        let k = |raw: &str| head(raw, false).ok().flatten().map(|h| h.keep_alive);
        assert_eq!(
            k("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"),
            Some(true)
        );
        assert_eq!(
            k("HTTP/1.1 200 OK\r\nconnection: keep-alive, close\r\ncontent-length: 0\r\n\r\n"),
            Some(false)
        );
        assert_eq!(
            k("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n"),
            Some(false)
        );
    }
}
