use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::client::{percent_encode, sample, MAX_BODY};
use super::*;

// === Endpoint ===

#[test]
fn endpoints_that_parse() {
    let e = Endpoint::parse("http://prometheus:9090").expect("plain");
    assert_eq!(e.to_string(), "http://prometheus:9090");
    assert_eq!((e.base.host.as_str(), e.base.port), ("prometheus", 9090));
    assert_eq!(e.base.authority, "prometheus:9090");
    assert_eq!(e.base.prefix, "");
    assert_eq!(
        e,
        Endpoint::parse(" HTTP://prometheus:9090/ ").expect("case, slash")
    );

    let prefixed = Endpoint::parse("http://10.0.0.7:80/prom/").expect("prefix");
    assert_eq!(prefixed.base.prefix, "/prom");
    assert_eq!(prefixed.to_string(), "http://10.0.0.7:80/prom");

    let v6 = Endpoint::parse("http://[::1]:9090").expect("IPv6");
    assert_eq!(
        (v6.base.host.as_str(), v6.base.authority.as_str()),
        ("::1", "[::1]:9090")
    );
    assert_eq!(
        Endpoint::parse("http://prom.internal")
            .expect("no port")
            .base
            .port,
        80
    );
    // The host's own text is not taken for the port.
    assert_eq!(
        Endpoint::parse("http://0:9090").expect("host 0").base.port,
        9090
    );
}

#[test]
fn endpoints_refused_say_why() {
    let cases = [
        ("https://prometheus:9090", "https is not supported"),
        ("prometheus:9090", "expected http://HOST[:PORT][/PREFIX]"),
        ("ftp://prometheus:9090", "ftp is not supported"),
        ("http://", "http://"),
        ("http://:9090", "no host"),
        ("http://prometheus:9090/api?x=1", "query string"),
        ("http://prometheus:9090/#graph", "fragment"),
        ("http://u:p@prometheus:9090", "credentials"),
        ("http://prometheus:nine", "bad port \"nine\""),
        ("http://prometheus:0", "bad port \"0\""),
        ("http://prometheus:70000", "bad port"),
    ];
    for (value, why) in cases {
        match Endpoint::parse(value) {
            Ok(e) => panic!("{value:?} parsed as {e:?}"),
            Err(msg) => assert!(msg.contains(why), "{value:?}: {msg}"),
        }
    }
}

// === Queries ===

#[test]
fn queries_of_the_readme_example() {
    let q = Queries::new(
        &Scope::new("ad-api", 1, None),
        "k8s",
        "ecs",
        Duration::from_secs(60),
        0.99,
        Some(Duration::from_secs(30)),
    );
    let side = |p: &str| SideQueries {
        requests: format!(
            r#"sum(increase(cutover_requests_total{{route="ad-api",pool="{p}"}}[60s]))"#
        ),
        errors: format!(
            r#"sum(increase(cutover_requests_total{{route="ad-api",pool="{p}",code=~"5.."}}[60s]))"#
        ),
        observations: format!(
            r#"sum(increase(cutover_upstream_duration_seconds_count{{pool="{p}"}}[60s]))"#
        ),
        latency: format!(
            r#"histogram_quantile(0.99, sum by (le) (increase(cutover_upstream_duration_seconds_bucket{{pool="{p}"}}[60s])))"#
        ),
    };
    assert_eq!(q.pool, side("k8s"));
    assert_eq!(q.baseline, side("ecs"));
    assert_eq!(
        q.step_requests.as_deref(),
        Some(r#"sum(increase(cutover_requests_total{route="ad-api",pool="k8s"}[30s]))"#)
    );
    assert_eq!(
        step_query(&Scope::new("ad-api", 3, None)),
        r#"max(max_over_time((cutover_autopilot_step{route="ad-api"} and cutover_autopilot_run{route="ad-api"} == 3)[1m:1s]))"#
    );
    assert_eq!(
        rolled_back_query(&Scope::new("ad-api", 3, None)),
        r#"max(last_over_time(cutover_autopilot_state{route="ad-api",state="rolled_back"}[1m]) and ignoring(state) (last_over_time(cutover_autopilot_run{route="ad-api"}[1m]) == 3))"#
    );
    let shown = q.shown();
    let names: Vec<&str> = shown.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["error_ratio", "latency_ratio", "latency"]);
    assert_eq!(
        shown[0].1,
        format!("({} or vector(0)) / {}", q.pool.errors, q.pool.requests)
    );
    assert_eq!(
        shown[1].1,
        format!(
            "clamp_min({}, 0.025) / clamp_min({}, 0.025)",
            q.pool.latency, q.baseline.latency
        )
    );
    assert_eq!(shown[2].1, q.pool.latency);
}

#[test]
fn a_selector_narrows_every_query_to_its_fleet() {
    let scope = Scope::new("ad-api", 2, Some(r#"job="cutover-prod""#));
    let q = Queries::new(&scope, "k8s", "ecs", Duration::from_secs(60), 0.99, None);
    assert_eq!(
        q.pool.errors,
        r#"sum(increase(cutover_requests_total{route="ad-api",pool="k8s",code=~"5..",job="cutover-prod"}[60s]))"#
    );
    assert_eq!(
        q.baseline.latency,
        r#"histogram_quantile(0.99, sum by (le) (increase(cutover_upstream_duration_seconds_bucket{pool="ecs",job="cutover-prod"}[60s])))"#
    );
    assert_eq!(
        q.step_requests, None,
        "the step's volume met: not asked again"
    );
    assert_eq!(
        step_query(&scope),
        r#"max(max_over_time((cutover_autopilot_step{route="ad-api",job="cutover-prod"} and cutover_autopilot_run{route="ad-api",job="cutover-prod"} == 2)[1m:1s]))"#
    );
    assert!(rolled_back_query(&scope)
        .contains(r#"{route="ad-api",state="rolled_back",job="cutover-prod"}"#));
}

#[test]
fn a_quote_in_a_route_name_stays_inside_the_string() {
    let q = Queries::new(
        &Scope::new(r#"say "hi"\now"#, 1, None),
        "k8s",
        "ecs",
        Duration::from_millis(90_900),
        0.5,
        Some(Duration::ZERO),
    );
    assert_eq!(
        q.pool.errors,
        r#"sum(increase(cutover_requests_total{route="say \"hi\"\\now",pool="k8s",code=~"5.."}[90s]))"#
    );
    // A step that just began still reads a valid range.
    assert_eq!(
        q.step_requests.as_deref(),
        Some(r#"sum(increase(cutover_requests_total{route="say \"hi\"\\now",pool="k8s"}[1s]))"#)
    );
    assert!(step_query(&Scope::new(r#"a"b"#, -1, None))
        .contains(r#"cutover_autopilot_run{route="a\"b"} == -1)"#));
}

#[test]
fn label_escaping() {
    assert_eq!(escape("ad-api"), "ad-api");
    assert_eq!(escape(r#"a\b"c"#), r#"a\\b\"c"#);
    assert_eq!(escape("a\nb\tc\r"), r"a\nb\tc\r");
    assert_eq!(escape("ünï"), "ünï");
    assert_eq!(range(Duration::from_millis(1500)), "1s");
    assert_eq!(range(Duration::from_millis(300)), "1s");
}

#[test]
fn percent_encoding_round_trips() {
    let q = Queries::new(
        &Scope::new("a b+c&d", 1, None),
        "k8s",
        "ecs",
        Duration::from_secs(60),
        0.99,
        Some(Duration::ZERO),
    );
    let encoded = percent_encode(&q.pool.latency);
    assert!(encoded
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)));
    assert_eq!(percent_encode("a+b c"), "a%2Bb%20c");
    assert_eq!(percent_decode(&encoded), q.pool.latency);
    assert_eq!(percent_decode(&percent_encode("ünï")), "ünï");
}

// === answers ===

fn vector(value: Option<&str>) -> String {
    let result = value.map_or(String::new(), |v| {
        format!(r#"{{"metric":{{}},"value":[1700000000.123,"{v}"]}}"#)
    });
    format!(r#"{{"status":"success","data":{{"resultType":"vector","result":[{result}]}}}}"#)
}

fn read(json: &str) -> Result<Option<f64>, String> {
    sample(serde_json::from_str(json).expect("an envelope"))
}

#[test]
fn answers_read() {
    assert_eq!(read(&vector(Some("1.5"))), Ok(Some(1.5)));
    assert_eq!(read(&vector(Some("120"))), Ok(Some(120.0)));
    assert_eq!(read(&vector(None)), Ok(None));
    assert!(read(&vector(Some("NaN")))
        .expect("NaN")
        .expect("a sample")
        .is_nan());
    assert_eq!(read(&vector(Some("+Inf"))), Ok(Some(f64::INFINITY)));
    assert_eq!(read(&vector(Some("-Inf"))), Ok(Some(f64::NEG_INFINITY)));
    let err = read(r#"{"status":"error","errorType":"bad_data","error":"parse error at char 4"}"#);
    assert_eq!(
        err,
        Err("refused the query: bad_data: parse error at char 4".to_owned())
    );
    let scalar = r#"{"status":"success","data":{"resultType":"scalar","result":[1,"2"]}}"#;
    assert_eq!(
        read(scalar),
        Err("answered a scalar, not a vector".to_owned())
    );
    let two = r#"{"status":"success","data":{"resultType":"vector","result":[
        {"metric":{"pool":"a"},"value":[1,"1"]},{"metric":{"pool":"b"},"value":[1,"2"]}]}}"#;
    assert_eq!(read(two), Err("answered 2 series, not one".to_owned()));
    assert!(read(&vector(Some("many"))).is_err_and(|e| e.contains("\"many\"")));
    assert!(read(r#"{"status":"success"}"#).is_err());
}

// === over a socket ===

/// What the test server does with one request.
#[derive(Clone)]
enum Reply {
    Answer {
        status: u16,
        body: String,
        chunked: bool,
    },
    /// Reads the request and never answers; says when the client closed.
    Silent,
}

fn ok(body: String) -> Reply {
    Reply::Answer {
        status: 200,
        body,
        chunked: false,
    }
}

/// A server on a port of its own answering each connection by the query it carries.
/// Every request head it read is kept, and `closed` fires when a silent one is closed.
struct Server {
    endpoint: Endpoint,
    heads: Arc<Mutex<Vec<String>>>,
    closed: Option<oneshot::Receiver<()>>,
}

async fn serve(prefix: &str, reply: impl Fn(&str) -> Reply + Send + Sync + 'static) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let heads = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = oneshot::channel();
    let tx = Arc::new(Mutex::new(Some(tx)));
    let reply = Arc::new(reply);
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (reply, seen, tx) = (reply.clone(), seen.clone(), tx.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8(head).expect("an ASCII head");
                let target = head.split(' ').nth(1).expect("a request line");
                let query = percent_decode(target.split_once("?query=").expect("a query").1);
                seen.lock().expect("heads").push(head.clone());
                match reply(&query) {
                    Reply::Silent => {
                        while stream.read(&mut buf).await.is_ok_and(|n| n > 0) {}
                        if let Some(tx) = tx.lock().expect("closed").take() {
                            let _ = tx.send(());
                        }
                    }
                    Reply::Answer {
                        status,
                        body,
                        chunked,
                    } => {
                        let framing = if chunked {
                            let (a, b) = body.split_at(body.len() / 2);
                            let chunks = format!(
                                "{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
                                a.len(),
                                b.len()
                            );
                            format!("Transfer-Encoding: chunked\r\n\r\n{chunks}")
                        } else {
                            format!("Content-Length: {}\r\n\r\n{body}", body.len())
                        };
                        let answer = format!(
                            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{framing}"
                        );
                        let _ = stream.write_all(answer.as_bytes()).await;
                    }
                }
            });
        }
    });
    Server {
        endpoint: Endpoint::parse(&format!("http://{addr}{prefix}")).expect("endpoint"),
        heads,
        closed: Some(rx),
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).expect("hex");
            out.push(u8::from_str_radix(hex, 16).expect("hex"));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("UTF-8")
}

/// Long enough for any answer on loopback; a test that fails ends within it.
const PATIENCE: Duration = Duration::from_secs(5);

/// Route `r`'s queries, k8s against ecs, for tests of the client rather than the text.
fn plain_queries() -> Queries {
    Queries::new(
        &Scope::new("r", 1, None),
        "k8s",
        "ecs",
        PATIENCE,
        0.99,
        Some(PATIENCE),
    )
}

#[tokio::test]
async fn measure_reads_every_query_of_both_sides() {
    let q = Queries::new(
        &Scope::new(r#"ad"api"#, 1, None),
        "k8s",
        "ecs",
        Duration::from_secs(60),
        0.99,
        Some(Duration::from_secs(30)),
    );
    let step_requests = q.step_requests.clone().unwrap_or_default();
    let answers: HashMap<String, Option<&str>> = [
        (&q.pool.requests, Some("120")),
        (&q.pool.errors, Some("3")),
        (&q.pool.observations, Some("118.5")),
        (&q.pool.latency, Some("0.25")),
        (&q.baseline.requests, Some("1000")),
        (&q.baseline.errors, None),
        (&q.baseline.observations, None),
        (&q.baseline.latency, Some("NaN")),
        (&step_requests, Some("40")),
    ]
    .into_iter()
    .map(|(k, v)| (k.clone(), v))
    .collect();
    let server = serve("/prom/", move |query| match answers.get(query) {
        Some(v) => ok(vector(*v)),
        None => panic!("an unexpected query: {query}"),
    })
    .await;
    let m = measure(&server.endpoint, &q, PATIENCE)
        .await
        .expect("measured");
    let expected = Measurements {
        pool: Side {
            requests: 120.0,
            errors: 3.0,
            observations: 118.5,
            latency: Some(0.25),
        },
        baseline: Side {
            requests: 1000.0,
            errors: 0.0,
            observations: 0.0,
            latency: None,
        },
        step_requests: 40.0,
    };
    assert_eq!(m, expected);
    let heads = server.heads.lock().expect("heads");
    assert_eq!(heads.len(), 9);
    let host = format!("\r\nhost: {}\r\n", server.endpoint.base.authority);
    for head in heads.iter() {
        assert!(head.starts_with("GET /prom/api/v1/query?query="), "{head}");
        assert!(head.to_ascii_lowercase().contains(&host), "{head}");
    }
}

#[tokio::test]
async fn fleet_with_and_without_chunked_answers() {
    for chunked in [false, true] {
        let server = serve("", move |query| {
            let v = if !query.contains(r#"route="ad-api""#) {
                None
            } else if query.contains("rolled_back") {
                Some("0")
            } else {
                Some("3")
            };
            Reply::Answer {
                status: 200,
                body: vector(v),
                chunked,
            }
        })
        .await;
        assert_eq!(
            fleet(&server.endpoint, &Scope::new("ad-api", 1, None), PATIENCE).await,
            Ok(Fleet {
                step: Some(3),
                rolled_back: false
            })
        );
        assert_eq!(
            fleet(&server.endpoint, &Scope::new("other", 1, None), PATIENCE).await,
            Ok(Fleet {
                step: None,
                rolled_back: false
            })
        );
    }
    let negative = serve("", |_| ok(vector(Some("-1")))).await;
    assert!(
        fleet(&negative.endpoint, &Scope::new("r", 1, None), PATIENCE)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn failures_say_what_failed() {
    let refusal = r#"{"status":"error","errorType":"unavailable","error":"too many queries"}"#;
    let busy = serve("", move |_| Reply::Answer {
        status: 503,
        body: refusal.to_owned(),
        chunked: true,
    })
    .await;
    let url = busy.endpoint.to_string();
    assert_eq!(
        fleet(&busy.endpoint, &Scope::new("r", 1, None), PATIENCE).await,
        Err(format!(
            "prometheus {url} answered 503 Service Unavailable: unavailable: too many queries"
        ))
    );

    let proxy = serve("", |_| Reply::Answer {
        status: 502,
        body: "<html>bad gateway</html>".to_owned(),
        chunked: false,
    })
    .await;
    let e = fleet(&proxy.endpoint, &Scope::new("r", 1, None), PATIENCE)
        .await
        .expect_err("502");
    assert_eq!(
        e,
        format!("prometheus {} answered 502 Bad Gateway", proxy.endpoint)
    );

    let refused = serve("", |_| {
        ok(r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#.to_owned())
    })
    .await;
    let q = plain_queries();
    let e = measure(&refused.endpoint, &q, PATIENCE)
        .await
        .expect_err("refused");
    assert!(
        e.ends_with("refused the query: bad_data: parse error"),
        "{e}"
    );

    let html = serve("", |_| ok("<html>grafana</html>".to_owned())).await;
    let e = measure(&html.endpoint, &q, PATIENCE)
        .await
        .expect_err("not JSON");
    assert!(e.contains("answered something else than its API"), "{e}");

    let huge = serve("", |_| ok(" ".repeat(MAX_BODY + 1))).await;
    let e = fleet(&huge.endpoint, &Scope::new("r", 1, None), PATIENCE)
        .await
        .expect_err("huge");
    assert!(
        e.ends_with("answered more than 1024 KiB: not its query API"),
        "{e}"
    );
}

#[tokio::test]
async fn an_unreachable_prometheus() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let endpoint = Endpoint::parse(&format!("http://{addr}")).expect("endpoint");
    assert_eq!(
        fleet(&endpoint, &Scope::new("r", 1, None), PATIENCE).await,
        Err(format!(
            "prometheus http://{addr} unreachable: connection refused"
        ))
    );
}

#[tokio::test]
async fn a_silent_prometheus_times_out_and_is_let_go() {
    let mut server = serve("", |_| Reply::Silent).await;
    let timeout = Duration::from_millis(200);
    let q = plain_queries();
    let e = measure(&server.endpoint, &q, timeout)
        .await
        .expect_err("silent");
    assert_eq!(
        e,
        format!("prometheus {} did not answer within 200ms", server.endpoint)
    );
    // The timeout closed the connections it gave up on: nothing keeps reading them.
    let closed = server.closed.take().expect("once");
    tokio::time::timeout(PATIENCE, closed)
        .await
        .expect("closed")
        .expect("sent");
}
