//! Bodies that stream through the proxy: the client's request body on its way up (with
//! the size limit), and the backend's response body on its way down (which hands the
//! connection back to its pool when it ends).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::upstream::Sender;
use crate::health::Backend;

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

/// Whether a request body has been handed over whole, and a way to wait for it.
#[derive(Debug, Default)]
pub struct Sent {
    done: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Sent {
    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    fn mark(&self) {
        if !self.done.swap(true, Ordering::AcqRel) {
            // notify_one keeps a permit when nobody waits yet, so `wait` cannot miss it.
            self.notify.notify_one();
        }
    }

    pub async fn wait(&self) {
        if !self.is_done() {
            self.notify.notified().await;
        }
    }
}

/// The client's request body as sent upstream.
#[derive(Debug)]
pub enum UpstreamRequestBody {
    Empty,
    Stream {
        inner: Incoming,
        limit: Option<u64>,
        seen: u64,
        /// Set once the whole body has been handed to the backend connection.
        sent: Arc<Sent>,
        /// Fires when the client has sent nothing for `gap_limit` (a stalled upload
        /// would otherwise hold a backend connection forever).
        gap: Pin<Box<tokio::time::Sleep>>,
        gap_limit: Duration,
    },
}

impl UpstreamRequestBody {
    pub fn new(inner: Incoming, limit: Option<u64>, gap_limit: Duration) -> Self {
        if inner.is_end_stream() {
            UpstreamRequestBody::Empty
        } else {
            UpstreamRequestBody::Stream {
                inner,
                limit,
                seen: 0,
                sent: Arc::new(Sent::default()),
                gap: Box::pin(tokio::time::sleep(gap_limit)),
                gap_limit,
            }
        }
    }

    /// Tells when the body has been sent whole; `None` when there is no body to send.
    pub fn completion(&self) -> Option<Arc<Sent>> {
        match self {
            UpstreamRequestBody::Empty => None,
            UpstreamRequestBody::Stream { sent, .. } => Some(sent.clone()),
        }
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
            UpstreamRequestBody::Stream {
                inner,
                limit,
                seen,
                sent,
                gap,
                gap_limit,
            } => {
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
                        // hyper stops polling once the body says it has ended.
                        if inner.is_end_stream() {
                            sent.mark();
                        }
                        Poll::Ready(Some(Ok(f)))
                    }
                    Some(Err(e)) => Poll::Ready(Some(Err(RequestBodyError::Client(e)))),
                    None => {
                        sent.mark();
                        Poll::Ready(None)
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamRequestBody::Empty => true,
            UpstreamRequestBody::Stream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamRequestBody::Empty => SizeHint::with_exact(0),
            UpstreamRequestBody::Stream { inner, .. } => inner.size_hint(),
        }
    }
}

/// Counts a request against its backend's in-flight number for as long as it lives.
#[derive(Debug)]
pub struct InFlight(Arc<Backend>);

impl InFlight {
    pub fn new(backend: Arc<Backend>) -> Self {
        backend.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(backend)
    }

    pub fn backend(&self) -> &Arc<Backend> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The body of a response the proxy sends to its client.
#[derive(Debug)]
pub enum ProxyBody {
    /// A body the proxy made itself (errors, admin answers).
    Full(Option<Bytes>),
    Upstream(UpstreamBody),
}

/// A backend's response body. When it ends cleanly the connection is reusable and goes
/// back to the backend's pool; dropped early, the connection is dropped with it.
#[derive(Debug)]
pub struct UpstreamBody {
    inner: Incoming,
    sender: Option<Sender>,
    in_flight: InFlight,
    /// The request body's completion: a connection still uploading is busy.
    request_sent: Option<Arc<Sent>>,
    /// How long the connection may be reused once idle.
    keep_for: std::time::Duration,
}

impl UpstreamBody {
    pub fn new(
        inner: Incoming,
        sender: Sender,
        in_flight: InFlight,
        request_sent: Option<Arc<Sent>>,
        keep_for: std::time::Duration,
    ) -> Self {
        let mut b = UpstreamBody {
            inner,
            sender: Some(sender),
            in_flight,
            request_sent,
            keep_for,
        };
        if b.inner.is_end_stream() {
            b.release();
        }
        b
    }

    /// Hands the connection back, unless the request is still being uploaded (the
    /// backend answered early): then it is dropped and closes once that ends.
    fn release(&mut self) {
        let Some(s) = self.sender.take() else { return };
        if self.request_sent.as_ref().is_none_or(|d| d.is_done()) {
            self.in_flight.backend().conns.checkin(s, self.keep_for);
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
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            ProxyBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            ProxyBody::Upstream(up) => {
                let frame = ready!(Pin::new(&mut up.inner).poll_frame(cx));
                match &frame {
                    None => up.release(),
                    Some(Ok(_)) if up.inner.is_end_stream() => up.release(),
                    Some(Err(_)) => drop(up.sender.take()),
                    Some(Ok(_)) => {}
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Full(d) => d.is_none(),
            ProxyBody::Upstream(up) => up.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Full(Some(d)) => SizeHint::with_exact(d.len() as u64),
            ProxyBody::Full(None) => SizeHint::with_exact(0),
            ProxyBody::Upstream(up) => up.inner.size_hint(),
        }
    }
}
