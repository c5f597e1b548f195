//! A small open-loop load generator for `bench/run`, where wrk cannot do the job:
//!
//! - `loadgen rate URL RATE CONNECTIONS SECONDS`: a fixed request rate spread over
//!   keep-alive connections. Latency is measured from each request's *scheduled* start,
//!   so a stall shows up in the percentiles instead of lowering the rate
//!   (no coordinated omission). Prints one JSON object.
//! - `loadgen idle ADDR CONNECTIONS SECONDS`: opens that many keep-alive connections,
//!   sends one request on each, prints `holding N` on stderr and keeps them open.
//!
//! Built as an example: `cargo build --release --example loadgen`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

type Sender = http1::SendRequest<Empty<Bytes>>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let code = rt.block_on(async {
        match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            ["rate", url, rate, conns, secs] => rate_mode(url, num(rate), num(conns), num(secs)).await,
            ["idle", addr, conns, secs] => idle_mode(addr, num(conns), num(secs)).await,
            _ => {
                eprintln!("usage: loadgen rate URL RATE CONNECTIONS SECONDS | loadgen idle ADDR CONNECTIONS SECONDS");
                2
            }
        }
    });
    std::process::exit(code);
}

fn num(s: &str) -> u64 {
    s.parse().unwrap_or_else(|_| {
        eprintln!("not a number: {s}");
        std::process::exit(2)
    })
}

async fn connect(addr: SocketAddr) -> Option<Sender> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let _ = stream.set_nodelay(true);
    let (send, conn) = http1::handshake(TokioIo::new(stream)).await.ok()?;
    tokio::spawn(conn);
    Some(send)
}

async fn get(send: &mut Sender, host: &str, path: &str) -> bool {
    if send.ready().await.is_err() {
        return false;
    }
    let req = http::Request::get(path)
        .header("host", host)
        .body(Empty::new())
        .expect("request");
    match send.send_request(req).await {
        Ok(resp) => {
            let ok = resp.status().is_success();
            ok && resp.into_body().collect().await.is_ok()
        }
        Err(_) => false,
    }
}

fn split_url(url: &str) -> (SocketAddr, String, String) {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = authority.parse().unwrap_or_else(|_| {
        eprintln!("URL must be http://IP:PORT/path");
        std::process::exit(2)
    });
    (addr, authority.to_owned(), path.to_owned())
}

async fn rate_mode(url: &str, rate: u64, conns: u64, secs: u64) -> i32 {
    let (addr, host, path) = split_url(url);
    let conns = conns.max(1);
    let interval = Duration::from_secs_f64(conns as f64 / rate.max(1) as f64);
    let start = Instant::now() + Duration::from_millis(200);
    let end = start + Duration::from_secs(secs);
    // `LOADGEN_SLOW_US=N`: also list, on stderr, when each request slower than N us was
    // due (ms from the start), to tell a periodic stall from scattered ones.
    let slow_us: Option<u32> = std::env::var("LOADGEN_SLOW_US")
        .ok()
        .and_then(|v| v.parse().ok());
    let mut tasks = Vec::new();
    for c in 0..conns {
        let (host, path) = (host.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut slow = Vec::new();
            let mut errors = 0u64;
            let Some(mut send) = connect(addr).await else {
                return (lat, slow, 1);
            };
            // Stagger connections evenly over one interval.
            let mut next = start + interval.mul_f64(c as f64 / conns as f64);
            while next < end {
                tokio::time::sleep_until(next.into()).await;
                if get(&mut send, &host, &path).await {
                    let us = next.elapsed().as_micros() as u32;
                    lat.push(us);
                    if slow_us.is_some_and(|limit| us > limit) {
                        slow.push((next.duration_since(start).as_millis() as u64, us, c));
                    }
                } else {
                    errors += 1;
                    match connect(addr).await {
                        Some(s) => send = s,
                        None => return (lat, slow, errors),
                    }
                }
                next += interval;
            }
            (lat, slow, errors)
        }));
    }
    let mut all = Vec::new();
    let mut slow = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((lat, s, e)) = t.await {
            all.extend(lat);
            slow.extend(s);
            errors += e;
        }
    }
    slow.sort_unstable();
    for (at_ms, us, conn) in &slow {
        eprintln!("slow: due at {at_ms} ms, took {us} us, connection {conn}");
    }
    all.sort_unstable();
    let pct = |p: f64| -> u32 {
        if all.is_empty() {
            return 0;
        }
        all[((all.len() as f64 * p) as usize).min(all.len() - 1)]
    };
    println!(
        "{{\"requests\":{},\"errors\":{},\"rps\":{:.1},\"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{}}}",
        all.len(),
        errors,
        all.len() as f64 / secs.max(1) as f64,
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(0.999),
        all.last().copied().unwrap_or(0)
    );
    0
}

async fn idle_mode(addr: &str, conns: u64, secs: u64) -> i32 {
    let addr: SocketAddr = addr.parse().unwrap_or_else(|_| {
        eprintln!("ADDR must be IP:PORT");
        std::process::exit(2)
    });
    let host = addr.to_string();
    let mut held = Vec::new();
    let mut ok = 0u64;
    for _ in 0..conns {
        if let Some(mut s) = connect(addr).await {
            if get(&mut s, &host, "/").await {
                ok += 1;
            }
            held.push(s);
        }
    }
    eprintln!("holding {ok}");
    println!("{{\"opened\":{},\"ok\":{}}}", held.len(), ok);
    tokio::time::sleep(Duration::from_secs(secs)).await;
    drop(held);
    if ok == conns {
        0
    } else {
        1
    }
}
