//! The body of the answer the proxy sends back to its client.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::upstream::UpstreamBody;

/// The body of a response the proxy sends to its client.
#[derive(Debug)]
// Proxied responses are the common case: boxing them would cost an allocation each,
// to make the rare proxy-made answers smaller.
#[allow(clippy::large_enum_variant)]
pub(crate) enum ProxyBody {
    /// A body the proxy made itself (errors, admin answers).
    Full(Option<Bytes>),
    Upstream(UpstreamBody),
}

impl ProxyBody {
    pub(crate) fn text(s: impl Into<Bytes>) -> Self {
        ProxyBody::Full(Some(s.into()))
    }

    /// The whole body, when the proxy made it and it has not been sent yet.
    pub(crate) fn full(&self) -> Option<&Bytes> {
        match self {
            ProxyBody::Full(data) => data.as_ref(),
            ProxyBody::Upstream(_) => None,
        }
    }

    pub(crate) fn empty() -> Self {
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
