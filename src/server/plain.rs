//! cutover's own HTTP/1 server, for the requests most traffic is made of: a complete,
//! well-framed head with no body and no protocol switch.
//!
//! hyper serves every kind of HTTP/1 message, and pays for it on each one: its
//! dispatcher, its buffers and its encoder, and the framing guard's parse of each head
//! before hyper's own. Here a plain request is parsed once (the same framing rules the
//! guard applies), handed to the same proxy as hyper's requests as the head's bytes
//! ([`RawRequest`]), and its answer written straight to the socket, head and small
//! body in one write, the backend's fields copied as they came.
//!
//! Anything else (a body, an upgrade, a head the guard would refuse, HTTP/2) is handed
//! to hyper behind the guard, with every byte read so far.

use std::future::{poll_fn, Future};
use std::mem::MaybeUninit;
use std::sync::Arc;
use std::task::{ready, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use http::{Method, Uri, Version};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;
use tokio::time::Instant;

use super::guard::{self, GuardLimits};
use super::inflight;
use super::response::{linger, refusal, send, write_response};
use super::stream::ClientStream;
use crate::http1::fields::{self, Fields};
use crate::http1::framing::{self, Scan};
use crate::proxy::{Client, Proxy, ProxyError, RawRequest, Sent};
use crate::state::Shared;

/// What the connection does after this server let go of it.
#[derive(Debug)]
pub(super) enum Next {
    Close,
    /// Idle since then; park it.
    Parked(Instant),
    /// A request this server does not take is at the front of the buffer.
    Hyper,
    /// The buffer starts with the HTTP/2 preface (h2c with prior knowledge).
    H2,
}

/// Room made in the read buffer before a read: a typical head fits in one.
const READ_ROOM: usize = 4096;
/// Above this, the response buffer a connection keeps between requests is let go.
const KEEP_OUT: usize = 64 * 1024;

/// Serves plain requests from `buf` and the socket until one is not plain, the
/// connection idles long enough to park, or it ends. `fresh`: no request has been
/// served on the connection yet (only then, and where `h2c` allows, may it turn out to
/// be HTTP/2); cleared once one is. `parked_since`: when the connection went idle, if it
/// was parked.
#[allow(clippy::too_many_arguments)]
pub(super) async fn serve<S: ClientStream>(
    stream: &mut S,
    buf: &mut BytesMut,
    fresh: &mut bool,
    h2c: bool,
    parked_since: Option<Instant>,
    client: &Client,
    proxy: &Proxy,
    shared: &Arc<Shared>,
    limits: GuardLimits,
    stop: &mut watch::Receiver<Option<Duration>>,
) -> Next {
    let mut snapshot = proxy.snapshot();
    let mut out = BytesMut::new();
    // A parked connection woken by something other than a request (a TLS record with
    // no data in it) keeps its idle clock.
    let mut idle_since = parked_since.unwrap_or_else(Instant::now);
    // When the head being read started arriving, once it is known to take more than
    // one read: the clock is read only for heads that need the header timeout.
    let mut head_started: Option<Instant> = None;
    // How much of `buf` is known to hold no complete head.
    let mut searched: usize = 0;
    // Parks the connection after a short idle spell (see connection.rs). Moved only when
    // it rings early: a busy connection leaves the timer wheel alone between requests.
    let park_after = guard::park_after(limits.idle_timeout);
    let mut park_clock = std::pin::pin!(tokio::time::sleep_until(idle_since + park_after));
    loop {
        let (req, keep_alive) = loop {
            // Parse only once the blank line that ends a head is in: a head sent a byte
            // at a time must not be parsed again from its start at every byte.
            let from = searched.saturating_sub(3).min(buf.len());
            let preface_possible = *fresh && h2c;
            if preface_possible && buf.starts_with(framing::H2_PREFACE) {
                return Next::H2;
            }
            if preface_possible && !buf.is_empty() && framing::H2_PREFACE.starts_with(buf) {
                // The start of a preface: wait for the rest.
            } else if framing::head_end(&buf[from..]).is_some() {
                match parse(buf, limits.max_head) {
                    Parsed::Plain(req, keep_alive) => break (req, keep_alive),
                    Parsed::Other => return Next::Hyper,
                    Parsed::Bad(why) => {
                        let answer = refusal(&ProxyError::BadRequest(why), &snapshot.unrouted);
                        if send(stream, &answer).await {
                            linger(stream).await;
                        }
                        return Next::Close;
                    }
                    // Only empty lines before a head ended there: start over.
                    Parsed::Partial => searched = 0,
                }
            } else {
                searched = buf.len();
                if buf.len() > limits.max_head {
                    // The guard answers 431.
                    return Next::Hyper;
                }
            }
            if buf.capacity() - buf.len() < READ_ROOM / 4 {
                buf.reserve(READ_ROOM);
            }
            let read = if buf.is_empty() {
                if stop.borrow().is_some() {
                    return Next::Close;
                }
                // This wait comes once per request, so it polls the read and the park
                // clock only. A drain reaches an idle connection when it parks, within
                // `park_after`: the parked state watches for it.
                let idle = {
                    let mut reading = std::pin::pin!(stream.read_buf(buf));
                    poll_fn(|cx| {
                        if let Poll::Ready(r) = reading.as_mut().poll(cx) {
                            return Poll::Ready(Some(r));
                        }
                        loop {
                            ready!(park_clock.as_mut().poll(cx));
                            let due = idle_since + park_after;
                            if Instant::now() >= due {
                                return Poll::Ready(None);
                            }
                            park_clock.as_mut().reset(due);
                        }
                    })
                    .await
                };
                let Some(read) = idle else {
                    *buf = BytesMut::new();
                    return Next::Parked(idle_since);
                };
                read
            } else {
                tokio::select! {
                    r = stream.read_buf(buf) => r,
                    () = tokio::time::sleep_until(
                        *head_started.get_or_insert_with(Instant::now) + limits.header_timeout
                    ) => {
                        let answer = refusal(&ProxyError::ClientTimeout, &snapshot.unrouted);
                        if send(stream, &answer).await {
                            linger(stream).await;
                        }
                        return Next::Close;
                    }
                }
            };
            if !matches!(read, Ok(n) if n > 0) {
                return Next::Close;
            }
        };

        *fresh = false;
        let version = req.version;
        let to_head = req.method == Method::HEAD;
        let in_flight = inflight::Counted::start(shared);
        proxy.refresh(&mut snapshot);
        let reply = proxy.handle_on(&snapshot, req, client).await;
        // A drain that began meanwhile closes the connection after this answer.
        let keep_alive = keep_alive && stop.borrow().is_none();
        let kept = write_response(stream, &mut out, reply, to_head, version, keep_alive).await;
        drop(in_flight);
        if !kept {
            if !buf.is_empty() || stream.maybe_unread() {
                linger(stream).await;
            }
            return Next::Close;
        }
        if out.capacity() > KEEP_OUT {
            out = BytesMut::new();
        }
        searched = 0;
        idle_since = Instant::now();
        head_started = None;
    }
}

#[derive(Debug)]
// Matched as soon as it is returned; boxing the request would cost an allocation each.
#[allow(clippy::large_enum_variant)]
enum Parsed {
    /// A plain request, and whether the client keeps the connection open after it.
    Plain(RawRequest, bool),
    Partial,
    /// Not for this server: hyper and the guard take it as it is.
    Other,
    /// Framed right but unusable (a target hyper would refuse too).
    Bad(&'static str),
}

/// Takes a plain request off the front of `buf`; leaves `buf` as it was otherwise
/// (but for empty lines before a request line, which RFC 9112 2.2 lets us skip).
fn parse(buf: &mut BytesMut, max_head: usize) -> Parsed {
    let blank = framing::empty_lines(buf);
    buf.advance(blank);
    if buf.is_empty() || buf[..] == b"\r"[..] {
        return Parsed::Partial;
    }
    let max_head = max_head.min(fields::MAX_HEAD);
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; framing::MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_request_with_uninit_headers(&mut req, buf, &mut slots)
    {
        Ok(httparse::Status::Complete(len)) if len <= max_head => len,
        Ok(httparse::Status::Partial) if buf.len() <= max_head => return Parsed::Partial,
        _ => return Parsed::Other,
    };
    // The guard's rules: only a head it would pass, that ends where its body would
    // start (none) and switches no protocol, stays here.
    if !matches!(framing::framing_of(&req), Ok(Scan::Head)) {
        return Parsed::Other;
    }
    let mut sent = Sent::default();
    let mut spans = fields::Spans::new();
    for field in &*req.headers {
        let span = fields::span_of(buf, field);
        sent.note(field.name.as_bytes(), span);
        spans.push(span);
    }
    // Protocol switches, even refused ones (h2c), are hyper's: it owns the upgrade
    // machinery, and one path for them is one set of rules to get right.
    if sent.has(Sent::UPGRADE) {
        return Parsed::Other;
    }
    let version = match req.version {
        Some(1) => Version::HTTP_11,
        Some(0) => Version::HTTP_10,
        _ => return Parsed::Other,
    };
    let (Some(method), Some(path)) = (req.method, req.path) else {
        return Parsed::Other;
    };
    // Origin form only; CONNECT, `*` and absolute form take hyper's path.
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Parsed::Other;
    };
    if !path.starts_with('/') || method == Method::CONNECT {
        return Parsed::Other;
    }
    let path_at = path.as_ptr() as usize - buf.as_ptr() as usize;
    let path_len = path.len();

    let head = buf.split_to(len).freeze();
    let Ok(uri) = Uri::from_maybe_shared(head.slice(path_at..path_at + path_len)) else {
        return Parsed::Bad("invalid request target");
    };
    let fields = Fields::new(head, spans);
    let mut close = false;
    let mut keep_alive = false;
    if sent.has(Sent::CONNECTION) {
        for value in fields.all("connection") {
            close |= fields::lists(value, b"close");
            keep_alive |= fields::lists(value, b"keep-alive");
        }
    }
    let keep = if version == Version::HTTP_11 {
        !close
    } else {
        keep_alive && !close
    };
    let request = RawRequest {
        method,
        version,
        uri,
        fields,
        sent,
    };
    Parsed::Plain(request, keep)
}

/// Whether this server would take the request at the front of `bytes`, for tests.
#[cfg(test)]
pub(super) fn takes(bytes: &[u8]) -> bool {
    matches!(parse(&mut BytesMut::from(bytes), 8192), Parsed::Plain(..))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::Incoming;

    #[test]
    fn only_plain_requests_stay_here() {
        assert!(takes(b"GET /a?b HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(takes(b"\r\nHEAD / HTTP/1.0\r\n\r\n"));
        assert!(takes(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        ));
        for other in [
            &b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"[..],
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nUpgrade: h2c\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
            b"GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n",
            b"CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        ] {
            assert!(!takes(other), "{}", String::from_utf8_lossy(other));
        }
    }

    #[test]
    fn keep_alive_follows_the_version_and_connection() {
        let keeps = |raw: &[u8]| match parse(&mut BytesMut::from(raw), 8192) {
            Parsed::Plain(_, keep) => keep,
            other => panic!("{other:?}"),
        };
        assert!(keeps(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(!keeps(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
        assert!(!keeps(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(keeps(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
    }

    #[test]
    fn the_fields_the_proxy_reads_are_noted_in_any_case() {
        let raw = b"GET / HTTP/1.1\r\nHOST: x\r\ncookie: a=1\r\nX-Forwarded-For: 10.0.0.1\r\n\
                    x-request-ID: r\r\nConnection: x-a\r\nContent-Length: 0\r\nHoss: y\r\n\r\n";
        let Parsed::Plain(req, _) = parse(&mut BytesMut::from(&raw[..]), 8192) else {
            panic!("not plain");
        };
        for bit in [
            Sent::HOST,
            Sent::COOKIE,
            Sent::X_FORWARDED_FOR,
            Sent::X_REQUEST_ID,
            Sent::CONNECTION,
            Sent::CONTENT_LENGTH,
        ] {
            assert!(req.sent.has(bit), "bit {bit}");
        }
        let Parsed::Plain(bare, _) = parse(
            &mut BytesMut::from(&b"GET / HTTP/1.1\r\nHosts: x\r\nCookies: y\r\n\r\n"[..]),
            8192,
        ) else {
            panic!("not plain");
        };
        assert!(!bare.sent.has(Sent::HOST) && !bare.sent.has(Sent::COOKIE));
        assert_eq!(bare.host(), None);
        let Parsed::Plain(two, _) = parse(
            &mut BytesMut::from(&b"GET / HTTP/1.0\r\nX: 1\r\nhOST: a\r\n\r\n"[..]),
            8192,
        ) else {
            panic!("not plain");
        };
        assert_eq!(two.host(), Some(&b"a"[..]));
        assert_eq!(two.field(&http::header::HOST), Some(&b"a"[..]));
    }

    #[test]
    fn a_partial_head_waits_and_consumes_nothing() {
        let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\nHost"[..]);
        assert!(matches!(parse(&mut buf, 8192), Parsed::Partial));
        assert_eq!(buf.len(), 20);
        let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /next"[..]);
        assert!(matches!(parse(&mut buf, 8192), Parsed::Plain(..)));
        assert_eq!(&buf[..], b"GET /next");
    }
}
