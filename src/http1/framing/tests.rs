//! The scanner's rules, fed bytes whole and a byte at a time.

use super::*;

fn run(input: &[u8]) -> Result<(usize, Scan), FramingError> {
    let mut s = Scan::Head;
    match scan(&mut s, input, 8192, false) {
        (n, None) => Ok((n, s)),
        (_, Some(e)) => Err(e),
    }
}

#[test]
fn plain_requests_pass_whole() {
    let two = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_eq!(run(two), Ok((two.len(), Scan::Head)));
    let body = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET";
    assert_eq!(
        run(body),
        Ok((body.len() - 3, Scan::Head)),
        "next head incomplete"
    );
}

#[test]
fn chunked_body_is_followed_to_its_end() {
    let req = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
                4;x=y\r\nWiki\r\n5\r\npedia\r\n0\r\nTrailer: v\r\n\r\n";
    assert_eq!(run(req), Ok((req.len(), Scan::Head)));
    // Fed one byte at a time the outcome is the same.
    let mut s = Scan::Head;
    let mut fed = 0;
    let mut pending: Vec<u8> = Vec::new();
    for &b in req.iter() {
        pending.push(b);
        let (n, err) = scan(&mut s, &pending, 8192, false);
        assert_eq!(err, None);
        pending.drain(..n);
        fed += n;
    }
    assert_eq!((fed, s), (req.len(), Scan::Head));
}

#[test]
fn smuggling_vectors_are_refused() {
    let cases: &[&[u8]] = &[
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4, 5\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
        // Found by the property test (server/props.rs): each passed here and got
        // hyper's own 400 behind the guard.
        b"GET a?b=1 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT; v\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n: v\r\n\r\n",
        b"\rGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    ];
    for c in cases {
        assert!(
            matches!(run(c), Err(FramingError::BadRequest(_))),
            "accepted: {}",
            String::from_utf8_lossy(c)
        );
    }
}

#[test]
fn the_good_requests_before_a_bad_one_are_kept() {
    let mut s = Scan::Head;
    let good = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let mut both = good.to_vec();
    both.extend_from_slice(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    let (n, err) = scan(&mut s, &both, 8192, false);
    assert_eq!(n, good.len());
    assert!(matches!(err, Some(FramingError::BadRequest(_))));
}

#[test]
fn oversized_head_is_431() {
    let mut s = Scan::Head;
    let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
    big.resize(9000, b'a');
    assert_eq!(
        scan(&mut s, &big, 8192, false),
        (0, Some(FramingError::HeadTooLarge))
    );
}

#[test]
fn h2_preface_switches_to_passthrough() {
    let mut s = Scan::Head;
    assert_eq!(scan(&mut s, b"PRI * HT", 8192, true), (0, None));
    assert_eq!(
        scan(&mut s, H2_PREFACE, 8192, true),
        (H2_PREFACE.len(), None)
    );
    assert_eq!(s, Scan::Passthrough);
    // Behind a request, the same bytes are a request line HTTP/1 refuses.
    let mut s = Scan::Head;
    let mut behind = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec();
    let first = behind.len();
    behind.extend_from_slice(H2_PREFACE);
    let (n, err) = scan(&mut s, &behind, 8192, true);
    assert_eq!(n, first);
    assert!(matches!(err, Some(FramingError::BadRequest(_))), "{err:?}");
}

#[test]
fn upgrade_without_connection_upgrade_or_for_h2c_keeps_checking() {
    for head in [
        &b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
    ] {
        assert_eq!(run(head), Ok((head.len(), Scan::Head)));
    }
}

#[test]
fn upgrade_switches_to_passthrough() {
    let req =
        b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x05";
    assert_eq!(run(req), Ok((req.len(), Scan::Passthrough)));
}
