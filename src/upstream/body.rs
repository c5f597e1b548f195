//! The bodies on a backend connection: the client's request body on its way up (with
//! the size limit and the stall clock), and the backend's response body on its way down
//! (which hands the connection back to its pool when it ends).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::{Exchange, InFlight};

/// Why a request body could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestBodyError {
    #[error("request body exceeds max_body_bytes")]
    TooLarge,
    #[error("reading the request body: {0}")]
    Client(#[source] hyper::Error),
    #[error("the client sent nothing of its request body for idle_timeout")]
    Stalled,
}

/// The client's request body as sent upstream.
#[derive(Debug)]
pub(crate) enum UpstreamRequestBody {
    Empty,
    /// Boxed: the body travels inside every exchange and reply, bodiless ones too,
    /// and its state would make each of them that much bigger to move.
    Stream(Box<Streaming>),
}

#[derive(Debug)]
pub(crate) struct Streaming {
    inner: Incoming,
    limit: Option<u64>,
    seen: u64,
    /// Fires when the client has sent nothing for `gap_limit` (a stalled upload would
    /// otherwise hold a backend connection forever).
    gap: Pin<Box<tokio::time::Sleep>>,
    gap_limit: Duration,
}

impl UpstreamRequestBody {
    /// The client's body (`None`: it has none), cut at `limit` bytes and when the
    /// client sends nothing for `gap_limit`.
    pub(crate) fn new(body: Option<Incoming>, limit: Option<u64>, gap_limit: Duration) -> Self {
        let Some(inner) = body.filter(|b| !b.is_end_stream()) else {
            return UpstreamRequestBody::Empty;
        };
        UpstreamRequestBody::Stream(Box::new(Streaming {
            inner,
            limit,
            seen: 0,
            gap: Box::pin(tokio::time::sleep(gap_limit)),
            gap_limit,
        }))
    }

    pub(crate) fn is_empty(&self) -> bool {
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

/// A backend's response body. When it ends cleanly the connection is reusable and goes
/// back to the backend's pool; dropped early, the connection is dropped with it.
#[derive(Debug)]
pub(crate) struct UpstreamBody {
    /// `None` once the body has ended (or failed).
    exchange: Option<Exchange>,
    in_flight: InFlight,
    /// Until when the connection may be reused; `None`: not at all.
    reusable_until: Option<tokio::time::Instant>,
}

impl UpstreamBody {
    pub(crate) fn new(
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

    pub(crate) fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>> {
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

    pub(crate) fn is_end_stream(&self) -> bool {
        self.exchange.as_ref().is_none_or(Exchange::body_done)
    }

    pub(crate) fn size_hint(&self) -> SizeHint {
        match self.exchange.as_ref().map(Exchange::body_left) {
            None => SizeHint::with_exact(0),
            Some(Some(n)) => SizeHint::with_exact(n),
            Some(None) => SizeHint::default(),
        }
    }
}
