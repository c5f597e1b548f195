//! Answers on their way to an HTTP/1 client of cutover's own server: the head (one
//! writer, fed by [`Reply::fields_out`], the rule hyper's side follows too), the body
//! streamed behind it, and the lingering close after a last answer.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::Version;
use http_body::Body;
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::http1::{date, fields};
use crate::metrics::Series;
use crate::proxy::{ProxyError, Reply};

/// Response bytes gathered before a write; a body piece larger than the write-through
/// size is written from where it lies rather than copied.
const WRITE_HIGH_WATER: usize = 64 * 1024;
const WRITE_THROUGH: usize = 8 * 1024;

/// How the body after a head written by [`write_head`] travels.
#[derive(Debug, Clone, Copy)]
struct Framed {
    bodiless: bool,
    chunked: bool,
    keep_alive: bool,
}

/// Writes the head of `reply` into `out`: the status line, [`Reply::fields_out`], a
/// `Date` and a length when the backend sent none, and the connection's fate.
fn write_head(
    out: &mut BytesMut,
    reply: &Reply,
    to_head: bool,
    version: Version,
    keep_alive: bool,
) -> Framed {
    let status = reply.status;
    let bodiless = fields::has_no_body(status, to_head);
    // The proxy itself may have decided the connection ends here.
    let mut keep_alive = keep_alive && !reply.close;

    out.clear();
    // One allocation for the head (a new connection's buffer would otherwise grow
    // through several).
    out.reserve(reply.fields.encoded_len() + 160);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.extend_from_slice(b" ");
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut dated = false;
    let mut has_length = false;
    for field in reply.fields_out() {
        field.put(out);
        dated |= fields::name_is(field.name, b"date");
        has_length |= fields::name_is(field.name, b"content-length");
    }
    if let Some(id) = &reply.request_id {
        fields::put_field(out, b"x-request-id", id.as_bytes());
    }
    if !dated {
        date::with(|now| fields::put_field(out, b"date", now));
    }
    // How the body is delimited: the backend's length, a known one, chunks, or (for an
    // HTTP/1.0 client) the end of the connection.
    let mut chunked = false;
    if !bodiless && !has_length {
        match reply.body.size_hint().exact() {
            Some(n) => {
                fields::put_field(out, b"content-length", fields::decimal(n, &mut [0u8; 20]))
            }
            None if version == Version::HTTP_11 => chunked = true,
            None => keep_alive = false,
        }
    }
    if chunked {
        fields::put_field(out, b"transfer-encoding", b"chunked");
    }
    if !keep_alive {
        fields::put_field(out, b"connection", b"close");
    } else if version == Version::HTTP_10 {
        fields::put_field(out, b"connection", b"keep-alive");
    }
    out.extend_from_slice(b"\r\n");
    Framed {
        bodiless,
        chunked,
        keep_alive,
    }
}

/// The proxy's answer to `e` as whole HTTP/1.1 bytes, for an error found before any
/// request could be served (the connection closes after it). The same rendering and
/// head writer as every other answer. Counted in `unrouted` (call it only for an answer
/// that is sent): a request refused before it could be routed still got an answer.
pub(super) fn refusal(e: &ProxyError, unrouted: &Series) -> Bytes {
    unrouted.count(e.status_and_kind().0.as_u16());
    let mut reply = e.reply();
    reply.close = true;
    let mut out = BytesMut::new();
    write_head(&mut out, &reply, false, Version::HTTP_11, false);
    if let Some(text) = reply.body.full() {
        out.extend_from_slice(text);
    }
    out.freeze()
}

/// Writes `reply` to the client; false when the connection must close after it (asked,
/// a body that ends with the connection, or a failure).
pub(super) async fn write_response<S: AsyncWrite + Unpin>(
    stream: &mut S,
    out: &mut BytesMut,
    reply: Reply,
    to_head: bool,
    version: Version,
    keep_alive: bool,
) -> bool {
    let Framed {
        bodiless,
        chunked,
        keep_alive,
    } = write_head(out, &reply, to_head, version, keep_alive);
    let mut body = reply.body;
    if bodiless {
        return send(stream, out).await && keep_alive;
    }

    loop {
        // Take whatever the body has ready now; write only when it has nothing more
        // yet, so a small answer leaves in one write with its head.
        let frame = match poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                if !out.is_empty() {
                    if !send(stream, out).await {
                        return false;
                    }
                    out.clear();
                }
                body.frame().await
            }
        };
        let data = match frame {
            None => break,
            // The answer cannot be finished: closing is how the client learns.
            Some(Err(e)) => {
                tracing::debug!(error = %e, "response body failed; closing the client connection");
                return false;
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue,
            },
        };
        if data.len() >= WRITE_THROUGH {
            if chunked {
                fields::put_chunk_size(out, data.len());
            }
            if stream.write_all(out).await.is_err() || !send(stream, &data).await {
                return false;
            }
            out.clear();
            if chunked {
                out.extend_from_slice(b"\r\n");
            }
        } else {
            fields::put_body(out, &data, chunked);
        }
        if out.len() >= WRITE_HIGH_WATER {
            if !send(stream, out).await {
                return false;
            }
            out.clear();
        }
    }
    if chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    send(stream, out).await && keep_alive
}

/// Writes `bytes` and flushes them: a TLS stream may keep the end of a write as a
/// record not yet on the wire, and the next thing a connection does may be to wait.
/// On a TCP stream the flush is free.
pub(super) async fn send<S: AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) -> bool {
    stream.write_all(bytes).await.is_ok() && stream.flush().await.is_ok()
}

/// Closes after a last answer while the client may still be sending: unread bytes make
/// close() send a reset, and a reset can destroy the answer before the client has read
/// it. So the sending side is shut and whatever still arrives is read and dropped, for
/// a moment (nginx's lingering close).
pub(super) async fn linger<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) {
    const FOR_AT_MOST: Duration = Duration::from_secs(2);
    const BYTES_AT_MOST: usize = 256 * 1024;
    if stream.shutdown().await.is_err() {
        return;
    }
    // On the heap: only a closing connection needs it, and held inline it would make
    // every connection's state (boxed for its whole plain life) 4 KiB larger.
    let mut sink = vec![0u8; 4096];
    let mut left = BYTES_AT_MOST;
    let drain = async {
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(FOR_AT_MOST, drain).await;
}
