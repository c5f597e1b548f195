//! Shapes of real nginx configs the importer must not get wrong, each a small config
//! imported through the library: where requests would go, and what is listed.

mod support;

use support::tempdir;

/// Imports `conf` (written as nginx.conf in a new directory): the TOML and the
/// `directive: why` of each entry left out.
fn import(conf: &str) -> (String, Vec<String>) {
    let dir = tempdir::Dir::new();
    let path = dir.path.join("nginx.conf");
    std::fs::write(&path, conf).expect("write");
    let imported = cutover::import::nginx(&path).expect("imports");
    let listed = imported
        .left_out
        .iter()
        .map(|f| format!("{}:{}: {}", f.at.line, f.directive, f.why))
        .collect();
    (imported.toml, listed)
}

/// The `[[routes]]` entries as (name, hosts line, prefix, split) text blocks.
fn routes(toml: &str) -> Vec<String> {
    toml.split("[[routes]]")
        .skip(1)
        .map(|r| r.trim().to_owned())
        .collect()
}

#[test]
fn the_default_server_keeps_its_names_beside_a_wildcard_server() {
    let (toml, _) = import(
        "http {\n upstream a { server 10.0.0.1:80; }\n upstream z { server 10.0.0.9:80; }\n \
         server { listen 80; server_name api.example.com; location / { proxy_pass http://a; } }\n \
         server { listen 80; server_name *.example.com; location / { proxy_pass http://z; } }\n}\n",
    );
    let r = routes(&toml);
    // api.example.com is named (an exact name beats the wildcard), and the default
    // server also takes every other Host.
    assert!(r.iter().any(|r| r.contains("hosts = [\"api.example.com\"]") && r.contains("split = { a = 1 }")), "{toml}");
    assert!(
        r.iter()
            .any(|r| !r.contains("hosts") && r.contains("split = { a = 1 }")),
        "{toml}"
    );
    assert!(
        r.iter()
            .any(|r| r.contains("\"*.example.com\"") && r.contains("split = { z = 1 }")),
        "{toml}"
    );
}

#[test]
fn a_name_an_earlier_server_has_stays_with_it() {
    let (toml, listed) = import(
        "http {\n upstream a { server 10.0.0.1:80; }\n upstream b { server 10.0.0.2:80; }\n \
         server { listen 80; server_name api; location / { proxy_pass http://a; } }\n \
         server { listen 80; server_name api; location /ad/ { proxy_pass http://b; } }\n}\n",
    );
    assert!(!toml.contains("split = { b = 1 }"), "{toml}");
    assert!(
        listed
            .iter()
            .any(|l| l.starts_with("5:server: a server name an earlier server")),
        "{listed:?}"
    );
}

#[test]
fn a_prefix_location_wins_over_an_exact_one_of_the_same_path() {
    let (toml, listed) = import(
        "http {\n upstream a { server 10.0.0.1:80; }\n upstream b { server 10.0.0.2:80; }\n \
         server { listen 80;\n location = / { proxy_pass http://a; }\n location / { proxy_pass http://b; }\n \
         location /api { proxy_pass http://a; }\n location /api/ { proxy_pass http://b; } }\n}\n",
    );
    let r = routes(&toml);
    assert!(
        r.iter()
            .any(|r| r.contains("path_prefix = \"/\"") && r.contains("split = { b = 1 }")),
        "{toml}"
    );
    assert!(
        r.iter()
            .any(|r| r.contains("path_prefix = \"/api/\"") && r.contains("split = { b = 1 }")),
        "{toml}"
    );
    assert_eq!(r.len(), 2, "{toml}");
    assert!(
        listed.iter().any(|l| l.starts_with("5:location:")),
        "the exact one is listed: {listed:?}"
    );
    assert!(
        listed.iter().any(|l| l.starts_with("7:location:")),
        "so is /api beside /api/: {listed:?}"
    );
}

#[test]
fn header_rules_are_carried_only_where_cutover_sends_the_same() {
    let (_, listed) = import(
        "http {\n upstream a { server 10.0.0.1:80; }\n server { listen 80;\n location / {\n \
         proxy_pass http://a;\n proxy_set_header Host $host;\n \
         proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n \
         proxy_set_header X-Real-IP $remote_addr;\n proxy_set_header Host backend.internal;\n } }\n}\n",
    );
    let headers: Vec<&String> = listed
        .iter()
        .filter(|l| l.contains("proxy_set_header"))
        .collect();
    assert_eq!(headers.len(), 2, "X-Real-IP and a fixed Host: {listed:?}");
    assert!(
        headers[0].starts_with("8:") && headers[1].starts_with("9:"),
        "{headers:?}"
    );
}

#[test]
fn odd_but_common_values_import_to_a_config_that_checks() {
    let (toml, listed) = import(
        "http {\n keepalive_timeout 0;\n proxy_next_upstream off;\n upstream Backend { server 10.0.0.1; }\n \
         server { listen 80; location / { proxy_pass http://backend$request_uri; } \
         location /x/ { proxy_pass http://a.b:81; } location /y/ { proxy_pass http://a-b:81; } }\n}\n",
    );
    assert!(
        listed.iter().any(|l| l.starts_with("2:keepalive_timeout:")),
        "{listed:?}"
    );
    assert!(toml.contains("retries = 0"), "{toml}");
    assert!(
        toml.contains("split = { Backend = 1 }"),
        "upstream names match in any case: {toml}"
    );
    assert!(
        toml.contains("direct-a-b-81-2"),
        "a second name of the same shape: {toml}"
    );
    let dir = tempdir::Dir::new();
    let out = dir.path.join("cutover.toml");
    cutover::config::parse(&out, &toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
}

#[test]
fn a_file_of_servers_alone_imports_as_the_http_block_it_belongs_in() {
    let (toml, listed) = import(
        "upstream a { server 10.0.0.1:8080; }\nserver { listen 8080; server_name x; location / { proxy_pass http://a; } }\n",
    );
    assert!(listed.is_empty(), "{listed:?}");
    assert!(
        toml.contains("[pools.a]") && toml.contains("split = { a = 1 }"),
        "{toml}"
    );
}
