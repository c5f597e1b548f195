//! Message bodies on the wire (RFC 9112 section 6): how the body after a head ends,
//! and reading it back, de-chunked. Chunks are written by [`super::fields::put_body`].

use bytes::{Buf, Bytes, BytesMut};

/// Largest chunk-size line (with extensions) or trailer section accepted.
const MAX_CHUNK_LINE: usize = 4 * 1024;
const MAX_TRAILERS: usize = 16 * 1024;

/// Bytes that break the body's framing: the connection cannot go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed body: {0}")]
pub(crate) struct Malformed(pub(crate) &'static str);

/// How the body after a head ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body at all (HEAD, 1xx, 204, 304, or `Content-Length: 0`).
    Empty,
    /// This many bytes are left.
    Length(u64),
    Chunked(Chunk),
    /// Everything until the backend closes the connection.
    UntilClose,
}

/// Where a chunked body's decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers { seen: usize },
}

/// What the body decoder made of the bytes it has.
#[derive(Debug)]
pub(crate) enum Decoded {
    Data(Bytes),
    /// The body is complete.
    End,
    /// More bytes are needed.
    More,
}

/// Takes the next piece of body from `buf`.
pub(crate) fn decode(framing: &mut Framing, buf: &mut BytesMut) -> Result<Decoded, Malformed> {
    match framing {
        Framing::Empty => Ok(Decoded::End),
        Framing::Length(left) => {
            if buf.is_empty() {
                return Ok(Decoded::More);
            }
            let n = (*left).min(buf.len() as u64) as usize;
            *left -= n as u64;
            if *left == 0 {
                *framing = Framing::Empty;
            }
            Ok(Decoded::Data(buf.split_to(n).freeze()))
        }
        Framing::UntilClose if buf.is_empty() => Ok(Decoded::More),
        Framing::UntilClose => Ok(Decoded::Data(buf.split().freeze())),
        Framing::Chunked(state) => {
            let decoded = decode_chunked(state, buf)?;
            if matches!(decoded, Decoded::End) {
                *framing = Framing::Empty;
            }
            Ok(decoded)
        }
    }
}

fn decode_chunked(state: &mut Chunk, buf: &mut BytesMut) -> Result<Decoded, Malformed> {
    loop {
        match *state {
            Chunk::Size => match httparse::parse_chunk_size(buf) {
                Ok(httparse::Status::Complete((used, size))) => {
                    buf.advance(used);
                    *state = if size == 0 {
                        Chunk::Trailers { seen: 0 }
                    } else {
                        Chunk::Data(size)
                    };
                }
                Ok(httparse::Status::Partial) if buf.len() > MAX_CHUNK_LINE => {
                    return Err(Malformed("chunk size line too long"))
                }
                Ok(httparse::Status::Partial) => return Ok(Decoded::More),
                Err(_) => return Err(Malformed("invalid chunk size")),
            },
            Chunk::Data(left) => {
                if buf.is_empty() {
                    return Ok(Decoded::More);
                }
                let n = left.min(buf.len() as u64) as usize;
                *state = if left == n as u64 {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(left - n as u64)
                };
                return Ok(Decoded::Data(buf.split_to(n).freeze()));
            }
            Chunk::DataEnd => {
                if buf.len() < 2 {
                    return Ok(Decoded::More);
                }
                if &buf[..2] != b"\r\n" {
                    return Err(Malformed("chunk not followed by CRLF"));
                }
                buf.advance(2);
                *state = Chunk::Size;
            }
            // Trailer fields are dropped: the client's response is re-framed and
            // hyper sends none for it.
            Chunk::Trailers { seen } => {
                let Some(eol) = buf.iter().position(|&b| b == b'\n') else {
                    if seen + buf.len() > MAX_TRAILERS {
                        return Err(Malformed("trailers too large"));
                    }
                    return Ok(Decoded::More);
                };
                let last = buf[..eol].trim_ascii().is_empty();
                buf.advance(eol + 1);
                if last {
                    return Ok(Decoded::End);
                }
                if seen + eol + 1 > MAX_TRAILERS {
                    return Err(Malformed("trailers too large"));
                }
                *state = Chunk::Trailers {
                    seen: seen + eol + 1,
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(raw: &[u8], mut framing: Framing) -> Result<Vec<u8>, Malformed> {
        let mut buf = BytesMut::from(raw);
        let mut out = Vec::new();
        loop {
            match decode(&mut framing, &mut buf)? {
                Decoded::Data(d) => out.extend_from_slice(&d),
                Decoded::End => return Ok(out),
                Decoded::More => return Err(Malformed("incomplete")),
            }
        }
    }

    #[test]
    fn chunked_bodies_decode_and_reject_bad_framing() {
        let chunked = Framing::Chunked(Chunk::Size);
        assert_eq!(
            body(
                b"4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nx-t: 1\r\n\r\n",
                chunked
            )
            .ok(),
            Some(b"Wikipedia".to_vec())
        );
        assert!(body(b"4\r\nWikiXX0\r\n\r\n", chunked).is_err());
        assert!(body(b"zz\r\n", chunked).is_err());
        assert_eq!(
            body(b"abcdef", Framing::Length(3)).ok(),
            Some(b"abc".to_vec())
        );
    }
}
