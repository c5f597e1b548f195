//! One request and its response on a backend connection, driven from the request's own
//! task.
//!
//! hyper's client runs every connection as a task of its own and talks to it through
//! channels: two task switches and several channel operations per request, and a
//! header map built and cloned on the way. Here the request's task writes the head,
//! streams the body and reads the answer itself. The upload and the download are
//! polled side by side, so a backend that answers while it still reads (an echo, or
//! an early 413) works in both directions.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::StatusCode;
use http_body::Body;
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;

use super::body::{RequestBodyError, UpstreamRequestBody};
use super::response::{self, Head};
use super::{Conn, UpstreamError};
use crate::http1::body::{decode, Decoded, Framing};
use crate::http1::fields;

/// Body bytes gathered before writing: big enough for few syscalls, small enough that a
/// fast client cannot make the proxy buffer much.
const WRITE_HIGH_WATER: usize = 64 * 1024;

#[derive(Debug)]
pub(crate) struct Exchange {
    conn: Box<Conn>,
    upload: Upload,
    /// The request was a HEAD: whatever the answer declares, no body follows.
    to_head: bool,
    /// Set once the response head has been read.
    framing: Framing,
    keep_alive: bool,
    /// Whether any byte of a response arrived (a failure after that is never retried).
    answered: bool,
    /// The backend closed the connection (the end of an until-close body).
    closed: bool,
}

#[derive(Debug)]
enum Upload {
    Sending {
        /// `None` once the client's body has ended.
        body: Option<UpstreamRequestBody>,
        chunked: bool,
        /// Whether any byte of the request reached the socket. The client's body is
        /// only taken after that, so until then the whole request can go elsewhere.
        wrote: bool,
    },
    Done,
    /// Writing failed; the connection is good for nothing after this answer.
    Failed,
}

/// A request head as a backend gets it, encoded once: origin form, HTTP/1.1, fields
/// already rewritten. A retry writes the same bytes again.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub method: http::Method,
    /// Never frozen: a `Bytes` made of a buffer with room to spare costs an allocation.
    pub head: BytesMut,
    /// The body travels chunked: its length is unknown (the client's own framing was a
    /// hop-by-hop matter, and HTTP/2 has none).
    pub chunked: bool,
    /// Where a `Host` field goes when the client named no host (an HTTP/1.0 request):
    /// the backend's own address, written when the backend is known.
    pub host_at: Option<usize>,
}

/// Heads up to this size hand their buffer on to a later head written on the thread.
const SPARE_MAX: usize = 4096;
/// How many buffers a thread keeps: one per head in flight at once, up to this many.
/// Under load every connection has a head out waiting for its answer, so a single
/// spare was always taken and nearly every head cost an allocation and a free.
const SPARES: usize = 128;

thread_local! {
    /// Buffers of heads dropped on this thread, for the next heads to write into.
    static SPARE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

impl Drop for Outgoing {
    fn drop(&mut self) {
        if self.head.capacity() <= SPARE_MAX {
            let mut head = std::mem::take(&mut self.head);
            head.clear();
            // Not there while the thread is ending: the buffer is freed instead.
            let _ = SPARE.try_with(|spare| {
                let mut spare = spare.borrow_mut();
                if spare.len() < SPARES {
                    spare.push(head);
                }
            });
        }
    }
}

impl Exchange {
    /// Starts an exchange with the backend at `authority`: the head leaves with the
    /// first poll.
    pub(crate) fn new(
        mut conn: Box<Conn>,
        head: &Outgoing,
        authority: &str,
        body: UpstreamRequestBody,
    ) -> Self {
        conn.wbuf.clear();
        match head.host_at {
            None => conn.wbuf.extend_from_slice(&head.head),
            Some(at) => {
                // An HTTP/1.1 request must carry a Host (RFC 9112 3.2).
                conn.wbuf.extend_from_slice(&head.head[..at]);
                fields::put_field(&mut conn.wbuf, b"host", authority.as_bytes());
                conn.wbuf.extend_from_slice(&head.head[at..]);
            }
        }
        Exchange {
            conn,
            upload: Upload::Sending {
                body: (!body.is_empty()).then_some(body),
                chunked: head.chunked,
                wrote: false,
            },
            to_head: head.method == http::Method::HEAD,
            framing: Framing::Empty,
            keep_alive: false,
            answered: false,
            closed: false,
        }
    }

    /// Gives the request body back when not a byte of the request was written, so that
    /// it can go to another backend.
    pub(crate) fn into_unsent_body(self) -> Option<UpstreamRequestBody> {
        match self.upload {
            Upload::Sending {
                body, wrote: false, ..
            } => Some(body.unwrap_or(UpstreamRequestBody::Empty)),
            _ => None,
        }
    }

    /// Starts (or moves) the clock the response head must beat.
    pub(crate) fn set_response_deadline(&mut self, deadline: tokio::time::Instant) {
        self.conn.set_response_deadline(deadline);
    }

    /// Ready when the response clock has run out.
    pub(crate) fn poll_response_clock(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.conn.poll_response_clock(cx)
    }

    /// Whether the request, body included, has been written whole.
    pub(crate) fn request_sent(&self) -> bool {
        matches!(self.upload, Upload::Done)
    }

    /// Waits for the response head, writing the request meanwhile. Interim (1xx)
    /// answers other than 101 are skipped.
    pub(crate) fn poll_head(&mut self, cx: &mut Context<'_>) -> Poll<Result<Head, UpstreamError>> {
        loop {
            self.drive_upload(cx)?;
            if let Some(head) = response::parse_head(&mut self.conn.rbuf, self.to_head)? {
                self.answered = true;
                if head.status.is_informational() && head.status != StatusCode::SWITCHING_PROTOCOLS
                {
                    continue;
                }
                self.framing = head.framing;
                // After a 101 the connection belongs to whatever it switched to.
                self.keep_alive = head.keep_alive && head.status != StatusCode::SWITCHING_PROTOCOLS;
                return Poll::Ready(Ok(head));
            }
            self.answered |= !self.conn.rbuf.is_empty();
            match ready!(self.conn.poll_fill(cx)) {
                Ok(0) => {
                    return Poll::Ready(Err(UpstreamError::Closed {
                        answered: self.answered,
                    }))
                }
                Ok(_) => {}
                Err(error) => {
                    return Poll::Ready(Err(UpstreamError::Io {
                        error,
                        answered: self.answered,
                    }))
                }
            }
        }
    }

    /// The next piece of the response body; `None` at its end.
    pub(crate) fn poll_body(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        // A backend may stream its answer while it still reads the request: keep
        // uploading as long as the response is read.
        if let Err(e) = self.drive_upload(cx) {
            return Poll::Ready(Some(Err(io::Error::other(e))));
        }
        loop {
            match decode(&mut self.framing, &mut self.conn.rbuf) {
                Err(e) => return Poll::Ready(Some(Err(io::Error::other(e)))),
                Ok(Decoded::Data(d)) => return Poll::Ready(Some(Ok(d))),
                Ok(Decoded::End) => return Poll::Ready(None),
                Ok(Decoded::More) => {}
            }
            match ready!(self.conn.poll_fill(cx)) {
                Ok(0) if self.framing == Framing::UntilClose => {
                    self.framing = Framing::Empty;
                    self.closed = true;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the backend closed the connection before the body ended",
                    ))))
                }
                Ok(_) => {}
                Err(e) => return Poll::Ready(Some(Err(e))),
            }
        }
    }

    /// Whether the response body has been read whole.
    pub(crate) fn body_done(&self) -> bool {
        self.framing == Framing::Empty
    }

    /// Bytes of body still to come, when the backend declared them.
    pub(crate) fn body_left(&self) -> Option<u64> {
        match self.framing {
            Framing::Empty => Some(0),
            Framing::Length(n) => Some(n),
            _ => None,
        }
    }

    /// The connection, when it can carry another request: both messages complete,
    /// the backend willing, and nothing unexpected waiting to be read.
    pub(crate) fn into_reusable(self) -> Option<Box<Conn>> {
        let reusable = self.body_done()
            && self.keep_alive
            && !self.closed
            && matches!(self.upload, Upload::Done)
            && self.conn.rbuf.is_empty();
        reusable.then_some(self.conn)
    }

    /// The socket after a 101, with whatever the backend already sent past the head.
    pub(crate) fn into_upgraded(self) -> (TcpStream, BytesMut) {
        let conn = *self.conn;
        (conn.stream, conn.rbuf)
    }

    /// Polls the upload on. A failed write is kept for the response side to see (the
    /// backend may have answered and closed, which is a fine answer); only a failure
    /// before any byte left, or of the client's own body, is an error here.
    fn drive_upload(&mut self, cx: &mut Context<'_>) -> Result<(), UpstreamError> {
        match self.poll_upload(cx) {
            Poll::Ready(Err(UploadError::Body(e))) => Err(UpstreamError::Body(e)),
            Poll::Ready(Err(UploadError::Io {
                error,
                wrote: false,
            })) => Err(UpstreamError::NotSent(error)),
            _ => Ok(()),
        }
    }

    fn poll_upload(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), UploadError>> {
        let Upload::Sending {
            body,
            chunked,
            wrote,
        } = &mut self.upload
        else {
            return Poll::Ready(Ok(()));
        };
        let out = &mut self.conn.wbuf;
        loop {
            // Gather what the client has ready, once some of the head went out: until
            // then the body stays untouched, so that a connection found dead at the
            // first write leaves the whole request for another backend.
            while let Some(b) = body.as_mut().filter(|_| *wrote) {
                if out.len() >= WRITE_HIGH_WATER {
                    break;
                }
                match Pin::new(b).poll_frame(cx) {
                    Poll::Pending => break,
                    Poll::Ready(None) => {
                        if *chunked {
                            out.extend_from_slice(b"0\r\n\r\n");
                        }
                        *body = None;
                    }
                    Poll::Ready(Some(Ok(frame))) => {
                        // Trailers are not forwarded.
                        if let Ok(data) = frame.into_data() {
                            fields::put_body(out, &data, *chunked);
                        }
                    }
                    Poll::Ready(Some(Err(e))) => {
                        self.upload = Upload::Failed;
                        return Poll::Ready(Err(UploadError::Body(e)));
                    }
                }
            }
            if out.is_empty() {
                if body.is_none() {
                    self.upload = Upload::Done;
                    return Poll::Ready(Ok(()));
                }
                return Poll::Pending;
            }
            let written = ready!(Pin::new(&mut self.conn.stream).poll_write(cx, out));
            match written {
                Ok(n) if n > 0 => {
                    out.advance(n);
                    *wrote = true;
                }
                result => {
                    let error = result
                        .err()
                        .unwrap_or_else(|| io::ErrorKind::WriteZero.into());
                    let wrote = *wrote;
                    self.upload = Upload::Failed;
                    return Poll::Ready(Err(UploadError::Io { error, wrote }));
                }
            }
        }
    }
}

#[derive(Debug)]
enum UploadError {
    Body(RequestBodyError),
    Io { error: io::Error, wrote: bool },
}

impl Outgoing {
    /// An empty buffer for a head of about `capacity` bytes.
    pub(crate) fn buffer(capacity: usize) -> BytesMut {
        let mut out = SPARE
            .try_with(|spare| spare.borrow_mut().pop())
            .ok()
            .flatten()
            .unwrap_or_default();
        out.reserve(capacity);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dropped(head: BytesMut) {
        drop(Outgoing {
            method: http::Method::GET,
            head,
            chunked: false,
            host_at: None,
        });
    }

    #[test]
    fn dropped_heads_lend_their_buffers_to_the_next() {
        // Heads in flight at once, as on connections waiting for their answers: each
        // one's buffer comes back for a later head, not only the last one's.
        let heads: Vec<BytesMut> = (0..3)
            .map(|_| {
                let mut head = Outgoing::buffer(100);
                head.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
                head
            })
            .collect();
        let mut at: Vec<*const u8> = heads.iter().map(|h| h.as_ptr()).collect();
        heads.into_iter().for_each(dropped);
        // All three kept: a single spare would have freed two of them.
        assert_eq!(SPARE.with(|spare| spare.borrow().len()), 3);
        // Held together, so that none is freed and handed out again by malloc.
        let next: Vec<BytesMut> = (0..3).map(|_| Outgoing::buffer(100)).collect();
        assert!(next.iter().all(BytesMut::is_empty));
        let mut again: Vec<*const u8> = next.iter().map(|h| h.as_ptr()).collect();
        at.sort();
        again.sort();
        assert_eq!(again, at);
        // A big one is not kept.
        dropped(BytesMut::with_capacity(SPARE_MAX + 1));
        assert!(Outgoing::buffer(10).capacity() <= SPARE_MAX);
    }
}
