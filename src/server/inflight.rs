//! Counting a request as in flight until its response body is gone.
//!
//! A request counts from the moment the service is called until hyper drops the
//! response body: finished, failed or cancelled. The idle clock of the connection and
//! the shutdown count both read these numbers, so they must not drop when only the
//! response head has left (a long download is not an idle connection) and must drop
//! when the client goes away mid-request.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::guard::ConnShared;
use crate::proxy::ProxyBody;
use crate::state::Shared;

/// Decrements both counters when dropped.
#[derive(Debug)]
pub(super) struct InFlight {
    conn: Arc<ConnShared>,
    shared: Arc<Shared>,
    /// The slot of `shared.in_flight` it counts in.
    slot: usize,
}

impl InFlight {
    pub(super) fn start(conn: Arc<ConnShared>, shared: Arc<Shared>) -> Self {
        conn.request_started();
        let slot = shared.in_flight.add();
        InFlight { conn, shared, slot }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.shared.in_flight.sub(self.slot);
        self.conn.request_done();
    }
}

/// A request of cutover's own HTTP/1 server, counted for shutdown only: that server
/// keeps its connection's idle clock itself, and a borrowed count spares two shared
/// reference counts per request.
#[derive(Debug)]
pub(super) struct Counted<'a> {
    shared: &'a Shared,
    slot: usize,
}

impl<'a> Counted<'a> {
    pub(super) fn start(shared: &'a Shared) -> Self {
        let slot = shared.in_flight.add();
        Counted { shared, slot }
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.shared.in_flight.sub(self.slot);
    }
}

/// The response body handed to hyper, carrying the request's [`InFlight`].
#[derive(Debug)]
pub(super) struct CountedBody {
    pub body: ProxyBody,
    pub _in_flight: InFlight,
}

impl Body for CountedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
