//! The client streams the HTTP servers run on: a TCP socket, or TLS over one. Both
//! servers, the guard and idle parking are written once, over this trait.

use std::future::Future;
use std::io;
use std::task::{Context, Waker};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

pub(super) trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Waits until the client has sent something or the connection ended: what a
    /// parked connection waits on, holding nothing but the stream.
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send;

    /// Whether the client may have sent bytes not read yet, as far as is known without
    /// a syscall.
    fn maybe_unread(&self) -> bool;

    /// Ends the connection politely before it is dropped: TLS says `close_notify`, so
    /// that the client can tell the end from a cut. Bounded: a client that reads
    /// nothing does not hold the connection.
    fn goodbye(&mut self) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }
}

impl ClientStream for TcpStream {
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send {
        TcpStream::readable(self)
    }

    fn maybe_unread(&self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        !self.poll_read_ready(&mut cx).is_pending()
    }
}

/// A parked TLS connection cannot drop its session (the keys live there), but it holds
/// no HTTP buffers either. rustls may hold decrypted bytes already, which no socket
/// event would announce: those count as readable at once.
impl ClientStream for TlsStream<TcpStream> {
    async fn readable(&self) -> io::Result<()> {
        let (tcp, tls) = self.get_ref();
        if !tls.wants_read() {
            return Ok(());
        }
        tcp.readable().await
    }

    fn maybe_unread(&self) -> bool {
        let (tcp, tls) = self.get_ref();
        !tls.wants_read() || tcp.maybe_unread()
    }

    async fn goodbye(&mut self) {
        use tokio::io::AsyncWriteExt as _;
        self.get_mut().1.send_close_notify();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), self.flush()).await;
    }
}
