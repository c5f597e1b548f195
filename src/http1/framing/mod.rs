//! A strict HTTP/1 framing scanner, free of I/O.
//!
//! It walks the bytes a client sends, request head by request head, and knows where
//! each body ends (Content-Length or chunked), so that every head can be checked
//! *before* hyper sees it: ambiguous framing (Content-Length with Transfer-Encoding,
//! differing Content-Lengths, obs-fold), oversized heads and malformed chunk sizes
//! are refused here. hyper alone would accept some of them (it resolves CL+TE in
//! favour of chunked), and its own error answers cannot carry `x-cutover-error`.

use super::{fields, hop};

/// What went wrong in the client's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FramingError {
    /// Malformed or ambiguous: 400.
    BadRequest(&'static str),
    /// The head exceeds the configured limit: 431.
    HeadTooLarge,
}

/// Where the scanner stands in the byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scan {
    /// Expecting (the rest of) a request head.
    Head,
    /// Inside a body of known length: bytes left.
    Body(u64),
    Chunked(Chunk),
    /// HTTP/2 or an upgraded connection: nothing more to check.
    Passthrough,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chunk {
    /// Reading hex digits: (value so far, digits seen).
    Size(u64, u8),
    /// After the digits: optional whitespace, then `;ext` or CR.
    SizeWs(u64),
    Ext(u64),
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    TrailerLineStart,
    /// Inside a trailer field's name: a token, up to its colon.
    TrailerName,
    /// Inside a trailer field's value, up to CR.
    TrailerLine,
    TrailerLineLf,
    EndLf,
}

/// What an HTTP/2 client with prior knowledge opens with.
pub(crate) const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Headers per request; hyper is configured with the same number.
pub(crate) const MAX_HEADERS: usize = 128;

/// Result of one scanning step.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// `n` bytes are checked and may be handed on.
    Consumed(usize),
    /// Nothing can be decided until more bytes arrive.
    NeedMore,
}

/// Scans as far as possible into `buf`. Returns how many leading bytes are checked
/// and, if it stopped at bad bytes, why; after the checked bytes comes either an
/// incomplete head (more must arrive) or, with an error, the bad part. `preface` says
/// whether `buf` starts the connection: only there is the HTTP/2 preface a preface
/// (anywhere else `PRI * HTTP/2.0` is a request line no HTTP/1 server takes).
pub(crate) fn scan(
    state: &mut Scan,
    buf: &[u8],
    max_head: usize,
    preface: bool,
) -> (usize, Option<FramingError>) {
    let mut pos = 0;
    while pos < buf.len() {
        match step(state, &buf[pos..], max_head, preface && pos == 0) {
            Ok(Step::Consumed(n)) => pos += n,
            Ok(Step::NeedMore) => break,
            Err(e) => return (pos, Some(e)),
        }
    }
    (pos, None)
}

fn step(
    state: &mut Scan,
    buf: &[u8],
    max_head: usize,
    preface: bool,
) -> Result<Step, FramingError> {
    match *state {
        Scan::Passthrough => Ok(Step::Consumed(buf.len())),
        Scan::Body(left) => {
            let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
            let left = left - n as u64;
            *state = if left == 0 {
                Scan::Head
            } else {
                Scan::Body(left)
            };
            Ok(Step::Consumed(n))
        }
        Scan::Chunked(c) => chunk_step(state, c, buf),
        Scan::Head => head_step(state, buf, max_head, preface),
    }
}

fn head_step(
    state: &mut Scan,
    buf: &[u8],
    max_head: usize,
    preface: bool,
) -> Result<Step, FramingError> {
    if preface && (buf.starts_with(b"PRI ") || H2_PREFACE.starts_with(buf)) {
        if buf.len() < H2_PREFACE.len() {
            return if H2_PREFACE.starts_with(buf) {
                Ok(Step::NeedMore)
            } else {
                Err(FramingError::BadRequest("malformed request line"))
            };
        }
        if buf.starts_with(H2_PREFACE) {
            *state = Scan::Passthrough;
            return Ok(Step::Consumed(buf.len()));
        }
    }
    let skip = empty_lines(buf);
    if skip > 0 {
        return Ok(Step::Consumed(skip));
    }
    if buf == b"\r" {
        return Ok(Step::NeedMore);
    }
    let Some(end) = head_end(buf) else {
        return if buf.len() > max_head {
            Err(FramingError::HeadTooLarge)
        } else {
            Ok(Step::NeedMore)
        };
    };
    if end > max_head {
        return Err(FramingError::HeadTooLarge);
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let n = match req.parse(&buf[..end]) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return Err(FramingError::BadRequest("malformed request head"))
        }
        Err(httparse::Error::TooManyHeaders) => return Err(FramingError::HeadTooLarge),
        Err(httparse::Error::HeaderName) => {
            return Err(FramingError::BadRequest(
                "malformed header line (obs-fold is not accepted)",
            ))
        }
        Err(_) => return Err(FramingError::BadRequest("malformed request head")),
    };
    // A target hyper cannot read would get hyper's own 400, without the proxy's
    // `x-cutover-error`: refuse it here, as hyper would.
    if req.path.is_some_and(|p| http::Uri::try_from(p).is_err()) {
        return Err(FramingError::BadRequest("invalid request target"));
    }
    *state = framing_of(&req)?;
    Ok(Step::Consumed(n))
}

/// How many bytes of empty lines (CRLF, or a bare LF) come before a request line: RFC
/// 9112 2.2 lets a server skip them, and hyper does. A CR alone is no line end.
pub(crate) fn empty_lines(buf: &[u8]) -> usize {
    let mut n = 0;
    loop {
        match &buf[n..] {
            [b'\r', b'\n', ..] => n += 2,
            [b'\n', ..] => n += 1,
            _ => return n,
        }
    }
}

/// Index just past the blank line that ends a head, if the buffer holds one.
pub(crate) fn head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(off) = buf[i..].iter().position(|&b| b == b'\n') {
        let nl = i + off;
        match buf.get(nl + 1) {
            Some(b'\n') => return Some(nl + 2),
            Some(b'\r') if buf.get(nl + 2) == Some(&b'\n') => return Some(nl + 3),
            _ => {}
        }
        i = nl + 1;
    }
    None
}

pub(crate) fn framing_of(req: &httparse::Request<'_, '_>) -> Result<Scan, FramingError> {
    let mut content_length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut chunked_last = false;
    let mut hosts = 0;
    let mut upgrade = false;
    let mut connection_upgrade = false;
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        if fields::name_is(name, b"content-length") {
            let n = fields::content_length(h.value)
                .ok_or(FramingError::BadRequest("invalid Content-Length"))?;
            if content_length.is_some_and(|prev| prev != n) {
                return Err(FramingError::BadRequest(
                    "conflicting Content-Length headers",
                ));
            }
            content_length = Some(n);
        } else if fields::name_is(name, b"transfer-encoding") {
            transfer_encoding = true;
            chunked_last = fields::ends_in_chunked(h.value);
        } else if fields::name_is(name, b"host") {
            hosts += 1;
        } else if fields::name_is(name, b"upgrade") {
            // h2c upgrades are not tunnelled (the proxy strips them), so they do not
            // switch the connection. The proxy reads both fields by the same rules.
            upgrade |= hop::switches(h.value);
        } else if fields::name_is(name, b"connection") {
            connection_upgrade |= hop::connection_upgrade(h.value);
        }
    }
    if hosts > 1 {
        return Err(FramingError::BadRequest("more than one Host header"));
    }
    if transfer_encoding {
        if req.version == Some(0) {
            return Err(FramingError::BadRequest(
                "Transfer-Encoding in an HTTP/1.0 request",
            ));
        }
        if content_length.is_some() {
            return Err(FramingError::BadRequest(
                "both Content-Length and Transfer-Encoding",
            ));
        }
        if !chunked_last {
            return Err(FramingError::BadRequest(
                "Transfer-Encoding must end in chunked",
            ));
        }
        return Ok(Scan::Chunked(Chunk::Size(0, 0)));
    }
    if upgrade && connection_upgrade && req.version == Some(1) {
        // After a (possible) protocol switch the bytes are no longer HTTP/1. If the
        // switch is refused, the proxy closes the connection after its answer, so no
        // unchecked request can follow on it.
        return Ok(Scan::Passthrough);
    }
    Ok(match content_length {
        Some(n) if n > 0 => Scan::Body(n),
        _ => Scan::Head,
    })
}

fn chunk_step(state: &mut Scan, c: Chunk, buf: &[u8]) -> Result<Step, FramingError> {
    const BAD: FramingError = FramingError::BadRequest("malformed chunked body");
    if let Chunk::Data(left) = c {
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        let left = left - n as u64;
        *state = Scan::Chunked(if left == 0 {
            Chunk::DataCr
        } else {
            Chunk::Data(left)
        });
        return Ok(Step::Consumed(n));
    }
    let b = buf[0];
    let next = match c {
        Chunk::Size(v, digits) => match hex(b) {
            Some(d) if digits < 15 => Chunk::Size(v << 4 | u64::from(d), digits + 1),
            Some(_) => return Err(FramingError::BadRequest("chunk size too large")),
            None if digits == 0 => return Err(FramingError::BadRequest("invalid chunk size")),
            None => match b {
                b' ' | b'\t' => Chunk::SizeWs(v),
                b';' => Chunk::Ext(v),
                b'\r' => Chunk::SizeLf(v),
                _ => return Err(FramingError::BadRequest("invalid chunk size")),
            },
        },
        Chunk::SizeWs(v) => match b {
            b' ' | b'\t' => Chunk::SizeWs(v),
            b';' => Chunk::Ext(v),
            b'\r' => Chunk::SizeLf(v),
            _ => return Err(FramingError::BadRequest("invalid chunk size")),
        },
        Chunk::Ext(v) => match b {
            b'\r' => Chunk::SizeLf(v),
            b'\n' => return Err(BAD),
            _ => Chunk::Ext(v),
        },
        Chunk::SizeLf(0) if b == b'\n' => Chunk::TrailerLineStart,
        Chunk::SizeLf(v) if b == b'\n' => Chunk::Data(v),
        Chunk::DataCr if b == b'\r' => Chunk::DataLf,
        Chunk::DataLf if b == b'\n' => Chunk::Size(0, 0),
        // Trailer fields are read as hyper reads them (a field line each): a looser
        // reading here would pass bytes hyper then refuses with its own 400.
        Chunk::TrailerLineStart => match b {
            b'\r' => Chunk::EndLf,
            _ if is_tchar(b) => Chunk::TrailerName,
            _ => return Err(BAD),
        },
        Chunk::TrailerName => match b {
            b':' => Chunk::TrailerLine,
            _ if is_tchar(b) => Chunk::TrailerName,
            _ => return Err(BAD),
        },
        Chunk::TrailerLine => match b {
            b'\r' => Chunk::TrailerLineLf,
            b'\t' | 0x20..=0x7e | 0x80..=0xff => Chunk::TrailerLine,
            _ => return Err(BAD),
        },
        Chunk::TrailerLineLf if b == b'\n' => Chunk::TrailerLineStart,
        Chunk::EndLf if b == b'\n' => {
            *state = Scan::Head;
            return Ok(Step::Consumed(1));
        }
        _ => return Err(BAD),
    };
    *state = Scan::Chunked(next);
    Ok(Step::Consumed(1))
}

/// A byte of a field name (RFC 9110 5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
