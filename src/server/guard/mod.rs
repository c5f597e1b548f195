//! The client connection's I/O, checked before hyper reads it.
//!
//! [`Guarded`] sits between the TCP stream and hyper. Every byte passes the framing
//! scanner first; a request head reaches hyper only once it is complete and valid. A bad
//! head never reaches hyper at all: the guard answers it itself (with
//! `x-cutover-error`), then ends the stream. It also enforces the two client clocks:
//! the whole head within `client_header_timeout` (slow-loris), and `idle_timeout`
//! between requests.

use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use std::future::Future;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

mod conn;

pub(super) use conn::ConnShared;

use super::response::refusal;
use crate::http1::framing::{self, FramingError, Scan};
use crate::proxy::ProxyError;

#[derive(Debug, Clone, Copy)]
pub(super) struct GuardLimits {
    pub max_head: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

/// A client stream whose request heads are checked before hyper parses them.
pub(super) struct Guarded<IO> {
    io: IO,
    /// Bytes read from the client that hyper has not had yet: checked ones first
    /// (`checked` of them), then the start of an incomplete head.
    pending: BytesMut,
    checked: usize,
    /// Where the search for the end of the incomplete head in `pending` resumes.
    searched: usize,
    scan: Scan,
    limits: GuardLimits,
    clock: Pin<Box<Sleep>>,
    clock_for: Clock,
    /// Set once the guard has decided to end the connection.
    ending: Option<Ending>,
    /// Bad bytes found behind good requests: acted on once those are handed over.
    deferred: Option<FramingError>,
    shared: Arc<ConnShared>,
    /// Nothing has been scanned yet and the connection was found to open with the
    /// HTTP/2 preface: only there is it one.
    preface: bool,
}

/// How the guard ends a connection.
#[derive(Debug)]
enum Ending {
    /// Write this answer (until empty), then report end of stream; whatever hyper writes
    /// afterwards is dropped.
    Answer(bytes::Bytes),
    /// Report end of stream and let hyper finish what it is writing: used when a
    /// response to an earlier (pipelined) request is still on its way, which an answer
    /// of ours would otherwise overtake.
    Quiet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Clock {
    Off,
    /// A head has started and must complete by the deadline.
    Header,
    /// Between requests.
    Idle,
}

impl<IO> Guarded<IO> {
    /// The stream back once hyper is done with it, with the bytes of a request head
    /// that had started to arrive (they belong to the next connection state).
    pub(super) fn into_parts(self) -> (IO, BytesMut) {
        (self.io, self.pending)
    }

    /// Continues a connection whose first bytes were read elsewhere: what
    /// `into_parts` returned, or a whole request cutover's own server did not take.
    /// `preface`: those bytes open the connection with the HTTP/2 preface.
    pub(super) fn resume(
        io: IO,
        pending: BytesMut,
        limits: GuardLimits,
        shared: Arc<ConnShared>,
        preface: bool,
    ) -> Self {
        let mut g = Guarded::new(io, limits, shared);
        g.preface = preface;
        g.pending = pending;
        if let Err(e) = g.check_pending() {
            g.fail(e);
        }
        g
    }

    pub(super) fn new(io: IO, limits: GuardLimits, shared: Arc<ConnShared>) -> Self {
        let deadline = Instant::now() + park_after(limits.idle_timeout);
        Guarded {
            io,
            pending: BytesMut::new(),
            checked: 0,
            searched: 0,
            scan: Scan::Head,
            limits,
            clock: Box::pin(tokio::time::sleep_until(deadline)),
            clock_for: Clock::Idle,
            ending: None,
            deferred: None,
            shared,
            preface: false,
        }
    }

    fn fail(&mut self, err: FramingError) {
        let e = match err {
            FramingError::BadRequest(why) => ProxyError::BadRequest(why),
            FramingError::HeadTooLarge => ProxyError::HeadersTooLarge,
        };
        tracing::debug!(error = %e, "refused client bytes");
        self.end_with(&e);
        self.pending.clear();
        self.checked = 0;
    }

    /// Ends the connection with the proxy's answer to `e`, unless a response is still on
    /// its way (see [`Ending::Quiet`]): then the client gets no answer to count.
    fn end_with(&mut self, e: &ProxyError) {
        let busy = self.shared.in_flight.load(Ordering::Acquire) > 0;
        self.ending = Some(if busy {
            Ending::Quiet
        } else {
            Ending::Answer(refusal(e, &self.shared.unrouted))
        });
    }

    /// Checks more of `pending`; returns whether anything new became releasable.
    fn check_pending(&mut self) -> Result<(), FramingError> {
        if self.scan == Scan::Head {
            let from = self.searched.saturating_sub(3);
            if framing::head_end(&self.pending[self.checked + from..]).is_none() {
                self.searched = self.pending.len() - self.checked;
                if self.searched > self.limits.max_head {
                    return Err(FramingError::HeadTooLarge);
                }
                return Ok(());
            }
        }
        let (n, err) = framing::scan(
            &mut self.scan,
            &self.pending[self.checked..],
            self.limits.max_head,
            self.preface,
        );
        self.preface &= n == 0;
        self.checked += n;
        if n > 0 {
            self.searched = 0;
        }
        if let Some(e) = err {
            // Hand over what came before the bad bytes first; fail once it is taken.
            self.pending.truncate(self.checked);
            if self.checked > 0 {
                self.deferred = Some(e);
            } else {
                return Err(e);
            }
        }
        Ok(())
    }

    fn set_clock(&mut self, want: Clock) {
        if self.clock_for == want {
            return;
        }
        self.clock_for = want;
        let deadline = match want {
            Clock::Off => return,
            Clock::Header => Instant::now() + self.limits.header_timeout,
            Clock::Idle => {
                Instant::now().max(self.shared.idle_since()) + park_after(self.limits.idle_timeout)
            }
        };
        self.clock.as_mut().reset(deadline);
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Guarded<IO> {
    /// Writes the guard's own answer, if any, then reports end of stream to hyper.
    fn poll_end(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(Ending::Answer(bytes)) = &mut self.ending {
            while !bytes.is_empty() {
                let n = ready!(Pin::new(&mut self.io).poll_write(cx, bytes))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                bytes.advance(n);
            }
            ready!(Pin::new(&mut self.io).poll_flush(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    /// The clocks: `Ready(true)` when the connection must end now.
    fn poll_clock(&mut self, cx: &mut Context<'_>) -> bool {
        let want = match self.scan {
            Scan::Head if self.pending.len() > self.checked => Clock::Header,
            Scan::Head => Clock::Idle,
            _ => Clock::Off,
        };
        self.set_clock(want);
        if want == Clock::Off || self.clock.as_mut().poll(cx).is_pending() {
            return false;
        }
        match want {
            Clock::Header => {
                self.end_with(&ProxyError::ClientTimeout);
                true
            }
            _ => {
                // Idle: once no request of this connection has been served for a while,
                // ask for the connection to be parked (hyper's buffers freed, only the
                // socket kept); the connection task closes it at idle_timeout.
                if self.shared.parking() {
                    return false;
                }
                let busy = self.shared.in_flight.load(Ordering::Acquire) > 0;
                let park_at = self.shared.idle_since() + park_after(self.limits.idle_timeout);
                if busy || park_at > Instant::now() {
                    let next = if busy {
                        Instant::now() + park_after(self.limits.idle_timeout)
                    } else {
                        park_at
                    };
                    self.clock.as_mut().reset(next);
                    let _ = self.clock.as_mut().poll(cx);
                    return false;
                }
                self.shared.parking.store(true, Ordering::Release);
                self.shared.park.notify_one();
                false
            }
        }
    }
}

/// How long a connection idles before it is parked: soon enough that idle clients cost
/// little, late enough that a busy keep-alive client never pays for a park.
pub(super) fn park_after(idle_timeout: Duration) -> Duration {
    (idle_timeout / 2).min(Duration::from_millis(250))
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for Guarded<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.ending.is_some() {
                return this.poll_end(cx);
            }
            if this.checked == 0 {
                if let Some(e) = this.deferred.take() {
                    this.fail(e);
                    continue;
                }
            }
            // 1. Hand over what is already checked.
            if this.checked > 0 {
                let n = this.checked.min(out.remaining());
                out.put_slice(&this.pending[..n]);
                this.pending.advance(n);
                this.checked -= n;
                return Poll::Ready(Ok(()));
            }
            if this.scan == Scan::Passthrough && this.pending.is_empty() {
                return Pin::new(&mut this.io).poll_read(cx, out);
            }
            if this.poll_clock(cx) {
                continue;
            }
            // 2. Nothing pending: read straight into hyper's buffer and check in place;
            // only an incomplete head is held back.
            if this.pending.is_empty() {
                let before = out.filled().len();
                ready!(Pin::new(&mut this.io).poll_read(cx, out))?;
                let fresh = &out.filled()[before..];
                if fresh.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                let scanned =
                    framing::scan(&mut this.scan, fresh, this.limits.max_head, this.preface);
                this.preface &= scanned.0 == 0;
                match scanned {
                    (n, None) => {
                        if n < fresh.len() {
                            this.pending.extend_from_slice(&fresh[n..]);
                            this.searched = 0;
                            out.set_filled(before + n);
                        }
                        if n > 0 {
                            return Poll::Ready(Ok(()));
                        }
                        if let Err(e) = this.check_pending() {
                            this.fail(e);
                        }
                        continue;
                    }
                    (n, Some(e)) => {
                        // Requests before the bad bytes go on to hyper; the failure waits
                        // until they have been taken (and so are in flight).
                        out.set_filled(before + n);
                        if n > 0 {
                            this.deferred = Some(e);
                            return Poll::Ready(Ok(()));
                        }
                        this.fail(e);
                        continue;
                    }
                }
            }
            // 3. An incomplete head is pending: read more behind it.
            let mut chunk = [0u8; 4096];
            let mut buf = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut buf))?;
            if buf.filled().is_empty() {
                // The client went away mid-head; hyper never saw any of it.
                this.pending.clear();
                return Poll::Ready(Ok(()));
            }
            this.pending.extend_from_slice(buf.filled());
            if let Err(e) = this.check_pending() {
                this.fail(e);
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Guarded<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if matches!(this.ending, Some(Ending::Answer(_))) {
            // The guard has answered; whatever hyper says after that is dropped.
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if matches!(this.ending, Some(Ending::Answer(_))) {
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.shared.parking() && this.ending.is_none() {
            // hyper is done with an idle connection that is being parked: the socket
            // stays open for the client's next request.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
