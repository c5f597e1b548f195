//! Bodies that stream through the proxy: the client's request body on its way up (with
//! the size limit), and the backend's response body on its way down (which hands the
//! connection back to its pool when it ends).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::upstream::{Exchange, InFlight};

/// Why a request body could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub enum RequestBodyError {
    #[error("request body exceeds max_body_bytes")]
    TooLarge,
    #[error("reading the request body: {0}")]
    Client(#[source] hyper::Error),
    #[error("the client sent nothing of its request body for idle_timeout")]
    Stalled,
}

/// A client's request body as the server hands it over.
#[derive(Debug)]
pub enum ClientBody {
    /// Known to be empty (cutover's own HTTP/1 server only takes such requests).
    Empty,
    Hyper(Incoming),
}

/// The client's request body as sent upstream.
#[derive(Debug)]
pub enum UpstreamRequestBody {
    Empty,
    /// Boxed: the body travels inside every exchange and reply, bodiless ones too,
    /// and its state would make each of them that much bigger to move.
    Stream(Box<Streaming>),
}

#[derive(Debug)]
pub struct Streaming {
    inner: Incoming,
    limit: Option<u64>,
    seen: u64,
    /// Fires when the client has sent nothing for `gap_limit` (a stalled upload would
    /// otherwise hold a backend connection forever).
    gap: Pin<Box<tokio::time::Sleep>>,
    gap_limit: Duration,
}

impl UpstreamRequestBody {
    pub fn new(body: ClientBody, limit: Option<u64>, gap_limit: Duration) -> Self {
        let inner = match body {
            ClientBody::Hyper(inner) if !inner.is_end_stream() => inner,
            _ => return UpstreamRequestBody::Empty,
        };
        UpstreamRequestBody::Stream(Box::new(Streaming {
            inner,
            limit,
            seen: 0,
            gap: Box::pin(tokio::time::sleep(gap_limit)),
            gap_limit,
        }))
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, UpstreamRequestBody::Empty)
    }
}

impl Body for UpstreamRequestBody {
    type Data = Bytes;
    type Error = RequestBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            UpstreamRequestBody::Empty => Poll::Ready(None),
            UpstreamRequestBody::Stream(stream) => {
                let Streaming {
                    inner,
                    limit,
                    seen,
                    gap,
                    gap_limit,
                } = &mut **stream;
                let frame = match Pin::new(&mut *inner).poll_frame(cx) {
                    Poll::Ready(frame) => frame,
                    Poll::Pending => {
                        ready!(gap.as_mut().poll(cx));
                        return Poll::Ready(Some(Err(RequestBodyError::Stalled)));
                    }
                };
                gap.as_mut().reset(tokio::time::Instant::now() + *gap_limit);
                match frame {
                    Some(Ok(f)) => {
                        if let Some(d) = f.data_ref() {
                            *seen += d.len() as u64;
                            if limit.is_some_and(|l| *seen > l) {
                                return Poll::Ready(Some(Err(RequestBodyError::TooLarge)));
                            }
                        }
                        Poll::Ready(Some(Ok(f)))
                    }
                    Some(Err(e)) => Poll::Ready(Some(Err(RequestBodyError::Client(e)))),
                    None => Poll::Ready(None),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamRequestBody::Empty => true,
            UpstreamRequestBody::Stream(stream) => stream.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamRequestBody::Empty => SizeHint::with_exact(0),
            UpstreamRequestBody::Stream(stream) => stream.inner.size_hint(),
        }
    }
}

/// The body of a response the proxy sends to its client.
#[derive(Debug)]
// Proxied responses are the common case: boxing them would cost an allocation each,
// to make the rare proxy-made answers smaller.
#[allow(clippy::large_enum_variant)]
pub enum ProxyBody {
    /// A body the proxy made itself (errors, admin answers).
    Full(Option<Bytes>),
    Upstream(UpstreamBody),
}

/// A backend's response body. When it ends cleanly the connection is reusable and goes
/// back to the backend's pool; dropped early, the connection is dropped with it.
#[derive(Debug)]
pub struct UpstreamBody {
    /// `None` once the body has ended (or failed).
    exchange: Option<Exchange>,
    in_flight: InFlight,
    /// Until when the connection may be reused; `None`: not at all.
    reusable_until: Option<tokio::time::Instant>,
}

impl UpstreamBody {
    pub fn new(
        exchange: Exchange,
        in_flight: InFlight,
        reusable_until: Option<tokio::time::Instant>,
    ) -> Self {
        let mut b = UpstreamBody {
            exchange: Some(exchange),
            in_flight,
            reusable_until,
        };
        if b.is_end_stream() {
            b.release();
        }
        b
    }

    /// Hands the connection back when it can carry another request (a backend that
    /// answered before the upload ended leaves a connection that cannot).
    fn release(&mut self) {
        let exchange = self.exchange.take();
        let (Some(conn), Some(until)) = (
            exchange.and_then(Exchange::into_reusable),
            self.reusable_until,
        ) else {
            return;
        };
        self.in_flight.checkin(conn, until);
    }

    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        let Some(exchange) = self.exchange.as_mut() else {
            return Poll::Ready(None);
        };
        match ready!(exchange.poll_body(cx)) {
            Some(Ok(data)) => {
                if exchange.body_done() {
                    self.release();
                }
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            None => {
                self.release();
                Poll::Ready(None)
            }
            Some(Err(e)) => {
                self.exchange = None;
                Poll::Ready(Some(Err(e)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.exchange.as_ref().is_none_or(Exchange::body_done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.exchange.as_ref().map(Exchange::body_left) {
            None => SizeHint::with_exact(0),
            Some(Some(n)) => SizeHint::with_exact(n),
            Some(None) => SizeHint::default(),
        }
    }
}

impl ProxyBody {
    pub fn text(s: impl Into<Bytes>) -> Self {
        ProxyBody::Full(Some(s.into()))
    }

    pub fn empty() -> Self {
        ProxyBody::Full(None)
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            ProxyBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            ProxyBody::Upstream(up) => up.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Full(d) => d.is_none(),
            ProxyBody::Upstream(up) => up.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Full(Some(d)) => SizeHint::with_exact(d.len() as u64),
            ProxyBody::Full(None) => SizeHint::with_exact(0),
            ProxyBody::Upstream(up) => up.size_hint(),
        }
    }
}
