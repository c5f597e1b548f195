//! Header fields as httparse found them, kept as the head's frozen bytes and where each
//! field lies in them ([`Fields`]); fields, lengths and chunks written back out; and
//! which answers carry no body.

use bytes::{Bytes, BytesMut};
use http::header::HeaderMap;
use http::StatusCode;
use smallvec::SmallVec;

/// Where one field's name and value lie in its head: offset and length of each. Heads
/// longer than 64 KiB never get here, and 16 bits keep the inline list of spans small.
pub(crate) type Span = [u16; 4];

/// The longest head whose fields [`span_of`] can record.
pub(crate) const MAX_HEAD: usize = u16::MAX as usize;

/// Where `field`, parsed from `head`, lies in it. `head` must be at most [`MAX_HEAD`]
/// bytes.
pub(crate) fn span_of(head: &[u8], field: &httparse::Header<'_>) -> Span {
    let at = |p: *const u8| (p as usize - head.as_ptr() as usize) as u16;
    [
        at(field.name.as_ptr()),
        field.name.len() as u16,
        at(field.value.as_ptr()),
        field.value.len() as u16,
    ]
}

/// Whether the field name `name`, in any case, is `lower`, a name with no upper-case
/// letter: what `eq_ignore_ascii_case` answers, for less.
///
/// Field names are compared on every field of every head, and the standard
/// comparison folds both sides byte by byte. Here one side is known lower case: where
/// it holds a letter, setting bit 0x20 of the other side's byte folds exactly that
/// letter's upper case onto it; any other byte must be equal.
#[inline]
pub(crate) fn name_is(name: &[u8], lower: &[u8]) -> bool {
    name.len() == lower.len()
        && name.iter().zip(lower).all(|(&n, &l)| {
            if l.is_ascii_lowercase() {
                n | 0x20 == l
            } else {
                n == l
            }
        })
}

/// A head's fields as they came off the wire: its frozen bytes, and where each field
/// kept lies in them. Most answers go straight back out over HTTP/1, where these bytes
/// are all that is needed: no name is looked up in a table, no value copied, no map
/// built and torn down. Only hyper's side makes a `HeaderMap` of them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Fields {
    head: Bytes,
    spans: Spans,
}

/// Spans of one head's fields: inline for as many as most heads carry, so that a head
/// costs no allocation of its own.
pub(crate) type Spans = SmallVec<[Span; 8]>;

impl Fields {
    /// The fields at `spans` of `head` (as [`span_of`] recorded them).
    pub(crate) fn new(head: Bytes, spans: Spans) -> Self {
        Fields { head, spans }
    }

    /// Fields made of name and value pairs (the proxy's own answers: a few short
    /// constants, far below [`MAX_HEAD`]).
    pub(crate) fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        let mut head = BytesMut::new();
        let mut spans = Spans::new();
        for (name, value) in pairs {
            let at = head.len();
            put_field(&mut head, name.as_bytes(), value.as_bytes());
            let value_at = at + name.len() + 2;
            spans.push([at, name.len(), value_at, value.len()].map(|n| n as u16));
        }
        debug_assert!(head.len() <= MAX_HEAD);
        Fields::new(head.freeze(), spans)
    }

    /// Each field's name and value, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.spans.iter().map(|&span| self.field(span))
    }

    /// Each field on its way out, with its line as it arrived.
    pub(crate) fn out(&self) -> impl Iterator<Item = Field<'_>> + '_ {
        self.spans.iter().map(|&[ns, nl, vs, vl]| {
            let [ns, nl, vs, vl] = [ns, nl, vs, vl].map(usize::from);
            Field {
                name: &self.head[ns..ns + nl],
                value: &self.head[vs..vs + vl],
                line: Some(&self.head[ns..vs + vl]),
            }
        })
    }

    /// The value of the field at `span`, one of these fields' own.
    #[inline]
    pub(crate) fn value_at(&self, span: Span) -> &[u8] {
        field_at(&self.head, span).1
    }

    /// The first value of the field `name` (lower case, see [`name_is`]).
    pub(crate) fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|(n, _)| name_is(n, name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// Every value of the field `name` (lower case, see [`name_is`]), in order.
    pub(crate) fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.iter()
            .filter(move |(n, _)| name_is(n, name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// `part` (a value these fields gave out) as a share of the head, not a copy.
    pub(crate) fn share(&self, part: &[u8]) -> Bytes {
        self.head.slice_ref(part)
    }

    /// Keeps only the fields `keep` says yes to.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&[u8], &[u8]) -> bool) {
        let head = &self.head;
        self.spans.retain(|&mut span| {
            let (name, value) = field_at(head, span);
            keep(name, value)
        });
    }

    /// Bytes the fields take on the wire.
    pub(crate) fn encoded_len(&self) -> usize {
        self.spans
            .iter()
            .map(|&[_, nl, _, vl]| usize::from(nl) + usize::from(vl) + 4)
            .sum()
    }

    /// How many fields there are.
    pub(crate) fn len(&self) -> usize {
        self.spans.len()
    }

    fn field(&self, span: Span) -> (&[u8], &[u8]) {
        field_at(&self.head, span)
    }
}

/// One header field on its way out of a head writer: its name and value, and, when it
/// came off the wire, its line from the name to the end of the value as it arrived
/// (the separator included): one copy writes that out, where name and value would take
/// four.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field<'a> {
    pub(crate) name: &'a [u8],
    pub(crate) value: &'a [u8],
    line: Option<&'a [u8]>,
}

impl<'a> Field<'a> {
    /// A field made of a name and a value (from a `HeaderMap`, or the proxy's own).
    pub(crate) fn new(name: &'a [u8], value: &'a [u8]) -> Self {
        Field {
            name,
            value,
            line: None,
        }
    }

    /// Appends the field and its line end.
    pub(crate) fn put(&self, out: &mut BytesMut) {
        match self.line {
            Some(line) => {
                out.extend_from_slice(line);
                out.extend_from_slice(b"\r\n");
            }
            None => put_field(out, self.name, self.value),
        }
    }
}

/// The name and value at `span` of `head`.
#[inline]
pub(crate) fn field_at(head: &[u8], [ns, nl, vs, vl]: Span) -> (&[u8], &[u8]) {
    let [ns, nl, vs, vl] = [ns, nl, vs, vl].map(usize::from);
    (&head[ns..ns + nl], &head[vs..vs + vl])
}

/// A field value as text, when it is all visible ASCII (what `HeaderValue::to_str`
/// accepts).
pub(crate) fn visible_str(value: &[u8]) -> Option<&str> {
    value
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
        .then(|| std::str::from_utf8(value).ok())
        .flatten()
}

/// Whether a comma-separated field value lists `token` (case-insensitive).
pub(crate) fn lists(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// A `Content-Length` value: digits only (surrounding blanks aside), within u64.
pub(crate) fn content_length(value: &[u8]) -> Option<u64> {
    let v = value.trim_ascii();
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// Whether a `Transfer-Encoding` value ends in chunked: only the last coding frames
/// the message (RFC 9112 6.1).
pub(crate) fn ends_in_chunked(value: &[u8]) -> bool {
    value
        .rsplit(|&b| b == b',')
        .next()
        .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// Whether an answer has no body whatever its fields declare (RFC 9112 6.3): one to a
/// HEAD request, 1xx, 204 and 304.
pub(crate) fn has_no_body(status: StatusCode, to_head: bool) -> bool {
    to_head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
}

/// Bytes `headers` take on the wire, so that a head can be written into one allocation.
pub(crate) fn encoded_len(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum()
}

/// Appends one field line.
pub(crate) fn put_field(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// `n` in decimal, in `buf`.
pub(crate) fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// Appends `data` to `out` as it goes on the wire: as is, or as one chunk.
pub(crate) fn put_body(out: &mut BytesMut, data: &[u8], chunked: bool) {
    if data.is_empty() {
        return;
    }
    if chunked {
        put_chunk_size(out, data.len());
    }
    out.extend_from_slice(data);
    if chunked {
        out.extend_from_slice(b"\r\n");
    }
}

/// The size line that starts a chunk of `n` bytes.
pub(crate) fn put_chunk_size(out: &mut BytesMut, n: usize) {
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_slices_of_the_head() {
        let raw = b"X-A: 1\r\nx-b:  two \r\n\r\n";
        let mut fields = [httparse::EMPTY_HEADER; 4];
        let Ok(httparse::Status::Complete((_, parsed))) = httparse::parse_headers(raw, &mut fields)
        else {
            panic!("parse");
        };
        let spans = parsed.iter().map(|f| span_of(raw, f)).collect();
        let head = Bytes::from_static(raw);
        let fields = Fields::new(head, spans);
        assert_eq!(fields.get("x-a"), Some(&b"1"[..]));
        assert_eq!(fields.get("x-b"), Some(&b"two"[..]));
    }

    #[test]
    fn name_is_agrees_with_the_standard_comparison() {
        // Any byte against any byte that is not an upper-case letter: names a config
        // gives (`x_user_id`, `a~b`) as well as the proxy's own.
        for n in 0..=255u8 {
            for l in (0..=255u8).filter(|l| !l.is_ascii_uppercase()) {
                assert_eq!(name_is(&[n], &[l]), n.eq_ignore_ascii_case(&l), "{n} {l}");
            }
        }
        assert!(name_is(b"Content-LENGTH", b"content-length"));
        assert!(name_is(b"X_User_Id", b"x_user_id"));
        assert!(!name_is(b"content_length", b"content-length"));
        assert!(!name_is(b"a^b", b"a~b"));
        assert!(!name_is(b"host", b"hos"));
        let f = Fields::from_pairs(&[("X_User_Id", "7")]);
        assert_eq!(f.get("x_user_id"), Some(&b"7"[..]));
    }

    #[test]
    fn fields_keep_their_bytes_and_order() {
        let mut f = Fields::from_pairs(&[("Server", "x"), ("x-a", "1"), ("X-A", "2")]);
        assert_eq!(f.get("x-a"), Some(&b"1"[..]));
        assert_eq!(f.get("server"), Some(&b"x"[..]));
        assert_eq!(f.encoded_len(), "Server: x\r\nx-a: 1\r\nX-A: 2\r\n".len());
        f.retain(|name, _| !name.eq_ignore_ascii_case(b"server"));
        let pairs: Vec<_> = f.iter().collect();
        assert_eq!(pairs, [(&b"x-a"[..], &b"1"[..]), (&b"X-A"[..], &b"2"[..])]);
        let all: Vec<_> = f.all("x-a").collect();
        assert_eq!(all, [&b"1"[..], &b"2"[..]]);
    }

    #[test]
    fn framing_fields() {
        assert_eq!(content_length(b" 42 "), Some(42));
        for bad in [&b""[..], b"-1", b"4 2", b"0x10", b"99999999999999999999"] {
            assert_eq!(content_length(bad), None);
        }
        assert!(ends_in_chunked(b"gzip, Chunked"));
        assert!(!ends_in_chunked(b"chunked, gzip"));
    }

    #[test]
    fn decimal_digits() {
        assert_eq!(decimal(0, &mut [0; 20]), b"0");
        assert_eq!(decimal(1_048_576, &mut [0; 20]), b"1048576");
        assert_eq!(decimal(u64::MAX, &mut [0; 20]), b"18446744073709551615");
    }

    #[test]
    fn chunks_carry_their_size_in_hex() {
        let mut out = BytesMut::new();
        put_body(&mut out, &[b'x'; 26], true);
        assert_eq!(&out[..4], b"1a\r\n");
        assert!(out.ends_with(b"x\r\n"));
    }
}
