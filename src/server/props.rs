//! Property test: cutover's HTTP/1 request parsing never panics and is never looser
//! than hyper's. Valid heads and chunked bodies are mutated byte by byte; whatever the
//! framing guard passes whole, or cutover's own server takes, hyper must answer as a
//! good request too. Stricter is fine (the guard refuses what hyper would tolerate);
//! looser would let bytes through that another HTTP/1 reader takes differently.

use std::time::Duration;

use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::plain;
use crate::http1::framing::{self, Scan};

const SEEDS: &[&[u8]] = &[
    b"GET /a?b=1 HTTP/1.1\r\nHost: app.example.com\r\nX-A: 1\r\nCookie: u=1\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: v\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
];

/// Bytes that matter to HTTP/1's grammar, and now and then any byte at all.
fn byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => prop::sample::select(b"\r\n \t:;,0123456789aAfF-_/\x00\x7f\xff".to_vec()),
        1 => any::<u8>(),
    ]
}

#[derive(Debug, Clone)]
enum Edit {
    Set(usize, u8),
    Insert(usize, u8),
    Remove(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), byte()).prop_map(|(at, b)| Edit::Set(at, b)),
        (any::<usize>(), byte()).prop_map(|(at, b)| Edit::Insert(at, b)),
        any::<usize>().prop_map(Edit::Remove),
    ]
}

fn mutated() -> impl Strategy<Value = Vec<u8>> {
    (0..SEEDS.len(), prop::collection::vec(edit(), 1..4)).prop_map(|(seed, edits)| {
        let mut bytes = SEEDS[seed].to_vec();
        for e in edits {
            match e {
                Edit::Set(at, b) if !bytes.is_empty() => {
                    let at = at % bytes.len();
                    bytes[at] = b;
                }
                Edit::Insert(at, b) => bytes.insert(at % (bytes.len() + 1), b),
                Edit::Remove(at) if !bytes.is_empty() => {
                    bytes.remove(at % bytes.len());
                }
                _ => {}
            }
        }
        bytes
    })
}

/// Whether the guard passes every byte as whole, well-framed requests.
fn guard_passes(bytes: &[u8]) -> bool {
    let mut state = Scan::Head;
    matches!(framing::scan(&mut state, bytes, 8192, false), (n, None) if n == bytes.len())
        && state == Scan::Head
}

/// What hyper, configured as cutover's connections configure it, answers to `bytes`:
/// the status of each answer, in order. The service reads each body whole and answers
/// 400 when it cannot.
fn hyper_answers(bytes: &[u8]) -> Vec<u16> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let svc = hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| async {
            let ok = http_body_util::BodyExt::collect(req.into_body())
                .await
                .is_ok();
            let status = if ok { 200 } else { 400 };
            let mut resp = http::Response::new(http_body_util::Empty::<bytes::Bytes>::new());
            *resp.status_mut() = http::StatusCode::from_u16(status).expect("status");
            Ok::<_, std::convert::Infallible>(resp)
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .max_headers(framing::MAX_HEADERS)
            .half_close(true)
            .serve_connection(hyper_util::rt::TokioIo::new(server), svc);
        tokio::spawn(conn);
        let _ = client.write_all(bytes).await;
        let _ = client.shutdown().await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), client.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out)
            .match_indices("HTTP/1.")
            .filter_map(|(i, _)| out.get(i + 9..i + 12))
            .filter_map(|code| std::str::from_utf8(code).ok()?.parse().ok())
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn never_looser_than_hyper(bytes in mutated()) {
        let guard = guard_passes(&bytes);
        // cutover's own server judges the first request only; what follows is read
        // again, under the guard's rules.
        let plain = plain::takes(&bytes);
        if guard || plain {
            let answers = hyper_answers(&bytes);
            let good = if guard {
                !answers.is_empty() && answers.iter().all(|&s| s == 200)
            } else {
                answers.first() == Some(&200)
            };
            prop_assert!(
                good,
                "guard {} plain {} but hyper answered {:?} to {:?}",
                guard,
                plain,
                answers,
                String::from_utf8_lossy(&bytes)
            );
        }
    }
}

#[test]
fn the_seeds_pass_both() {
    for seed in SEEDS {
        assert!(guard_passes(seed), "{}", String::from_utf8_lossy(seed));
        assert_eq!(
            hyper_answers(seed),
            [200],
            "{}",
            String::from_utf8_lossy(seed)
        );
    }
}
