//! Route matching through real requests: host tiers, path prefixes, file order.

mod support;

use support::{get, Proxy, Upstream};

#[tokio::test(flavor = "multi_thread")]
async fn the_most_specific_route_wins_whatever_the_file_order() {
    let names = ["any", "any-ad", "exact", "exact-ad", "wild", "wild-deep"];
    let mut ups = Vec::new();
    for n in names {
        ups.push(Upstream::start(n).await);
    }
    let mut text = String::new();
    for (n, u) in names.iter().zip(&ups) {
        text.push_str(&format!("[pools.{n}]\nbackends = [\"{}\"]\n", u.addr));
    }
    // Deliberately least specific last and most specific first, mixed.
    let routes = [
        ("wild-deep", "hosts = [\"*.ads.example.com\"]"),
        ("any-ad", "path_prefix = \"/ad/\""),
        (
            "exact-ad",
            "hosts = [\"api.example.com\"]\npath_prefix = \"/ad\"",
        ),
        ("wild", "hosts = [\"*.example.com\"]"),
        ("exact", "hosts = [\"api.example.com\"]"),
        ("any", ""),
    ];
    for (n, extra) in routes {
        text.push_str(&format!(
            "[[routes]]\nname = \"{n}\"\n{extra}\nsplit = {{ {n} = 1 }}\n"
        ));
    }
    let proxy = Proxy::start(&text).await;
    let cases = [
        ("api.example.com", "/", "exact"),
        ("API.example.com:8080", "/ad/x", "exact-ad"),
        ("api.example.com", "/ad", "exact-ad"),
        ("api.example.com", "/adx", "exact"),
        ("api.example.com", "/ad?x=/ad/", "exact-ad"),
        ("x.example.com", "/ad/1", "wild"),
        ("a.b.example.com", "/", "wild"),
        ("x.ads.example.com", "/", "wild-deep"),
        ("deep.x.ads.example.com", "/ad/", "wild-deep"),
        ("example.com", "/ad/1", "any-ad"),
        ("example.com", "/adx", "any"),
        ("other.net", "/", "any"),
    ];
    for (host, path, want) in cases {
        let r = get(proxy.addr, path, &[("host", host)]).await;
        assert_eq!(r.status, 200, "{host}{path}");
        assert_eq!(r.upstream(), want, "{host}{path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_matching_is_404_no_route() {
    let u = Upstream::start("u").await;
    let text = format!(
        "[pools.p]\nbackends = [\"{}\"]\n[[routes]]\nname = \"r\"\nhosts = [\"a.example.com\"]\npath_prefix = \"/api\"\nsplit = {{ p = 1 }}\n",
        u.addr
    );
    let proxy = Proxy::start(&text).await;
    for (host, path) in [
        ("a.example.com", "/apix"),
        ("b.example.com", "/api"),
        ("example.com", "/api"),
    ] {
        let r = get(proxy.addr, path, &[("host", host)]).await;
        assert_eq!(r.status, 404, "{host}{path}");
        assert_eq!(r.header("x-cutover-error"), Some("no_route"));
    }
    assert_eq!(u.hits(), 0);
}
