//! What the importer makes of directives it does not map one to one: those cutover
//! does by itself (nothing to say), those it does differently (a note), and those it
//! cannot do (left out, with why).

/// How a directive the mapping does not handle itself is taken.
pub(super) enum Known {
    /// cutover does this by itself (its own access log, logs, temp files: none), or it
    /// does not matter to a proxy.
    Implicit,
    /// Carried in spirit; the note says how cutover differs.
    Note(&'static str),
    /// Not carried: the reason.
    LeftOut(&'static str),
}

pub(super) fn classify(name: &str, args: &[String]) -> Known {
    use Known::*;
    match name {
        "user"
        | "pid"
        | "daemon"
        | "master_process"
        | "worker_connections"
        | "worker_rlimit_nofile"
        | "multi_accept"
        | "use"
        | "accept_mutex"
        | "sendfile"
        | "tcp_nopush"
        | "tcp_nodelay"
        | "types"
        | "default_type"
        | "types_hash_max_size"
        | "server_names_hash_bucket_size"
        | "server_names_hash_max_size"
        | "server_tokens"
        | "keepalive"
        | "keepalive_requests"
        | "keepalive_time"
        | "zone"
        | "http2"
        | "proxy_http_version"
        | "proxy_buffering"
        | "proxy_buffers"
        | "proxy_buffer_size"
        | "proxy_busy_buffers_size"
        | "proxy_request_buffering"
        | "client_body_buffer_size"
        | "client_header_buffer_size"
        | "proxy_send_timeout"
        | "send_timeout"
        | "reset_timedout_connection"
        | "proxy_next_upstream_timeout"
        | "real_ip_recursive"
        | "ssl_session_timeout"
        | "ssl_prefer_server_ciphers"
        | "resolver_timeout"
        | "charset"
        | "server_name_in_redirect"
        | "port_in_redirect"
        | "absolute_redirect"
        | "access_log"
        | "log_format"
        | "error_log"
        | "client_body_temp_path"
        | "proxy_temp_path"
        | "fastcgi_temp_path"
        | "uwsgi_temp_path"
        | "scgi_temp_path"
        | "worker_shutdown_timeout"
        | "lingering_close"
        | "lingering_time"
        | "lingering_timeout" => Implicit,
        "proxy_set_header" => {
            let name = args
                .first()
                .map(|a| a.to_ascii_lowercase())
                .unwrap_or_default();
            let value = args.get(1).map(String::as_str).unwrap_or_default();
            // Only the values cutover itself sends are carried by leaving them out.
            let same = match name.as_str() {
                "host" | "x-forwarded-host" => matches!(value, "$host" | "$http_host"),
                "x-forwarded-for" => value == "$proxy_add_x_forwarded_for",
                "x-forwarded-proto" => value == "$scheme",
                "connection" => matches!(
                    value,
                    "" | "upgrade" | "$connection_upgrade" | "$http_connection"
                ),
                "upgrade" => value == "$http_upgrade",
                "x-request-id" => value == "$request_id",
                _ => false,
            };
            if same {
                Implicit
            } else {
                LeftOut("a header rule: cutover sets Host (the client's), X-Forwarded-For/-Proto/-Host, X-Request-Id and the upgrade headers itself, and no others (no X-Real-IP)")
            }
        }
        "ssl_protocols"
        | "ssl_ciphers"
        | "ssl_ecdh_curve"
        | "ssl_session_cache"
        | "ssl_session_tickets"
        | "ssl_dhparam"
        | "ssl_buffer_size" => {
            Note("cutover's TLS is fixed: TLS 1.2 and 1.3, rustls' safe suites, session tickets")
        }
        "resolver" => {
            Note("cutover resolves backend names through the system resolver, every resolve_every")
        }
        "worker_cpu_affinity" | "worker_priority" => {
            Note("cutover's workers are threads, one per core by default")
        }
        "gzip" | "gzip_types" | "gzip_comp_level" | "gzip_proxied" | "gzip_vary"
        | "gzip_min_length" | "gzip_http_version" | "gzip_buffers" | "gzip_disable" => {
            LeftOut("cutover does not compress responses")
        }
        "rewrite"
        | "return"
        | "if"
        | "set"
        | "map"
        | "geo"
        | "try_files"
        | "error_page"
        | "proxy_intercept_errors"
        | "recursive_error_pages" => {
            LeftOut("request rewriting and conditional logic have no cutover equivalent")
        }
        "add_header"
        | "more_set_headers"
        | "more_clear_headers"
        | "proxy_hide_header"
        | "proxy_pass_header"
        | "proxy_redirect"
        | "proxy_cookie_path"
        | "proxy_cookie_domain"
        | "sub_filter"
        | "expires" => LeftOut("cutover does not rewrite response headers or bodies"),
        "root" | "alias" | "index" | "autoindex" => LeftOut("cutover serves no files"),
        "auth_basic" | "auth_basic_user_file" | "auth_request" | "allow" | "deny" | "satisfy" => {
            LeftOut("cutover does no access control")
        }
        "limit_req" | "limit_req_zone" | "limit_conn" | "limit_conn_zone" | "limit_rate" => {
            LeftOut("cutover does no rate or connection limiting")
        }
        "ip_hash" | "hash" | "least_conn" | "least_time" | "random" => LeftOut(
            "cutover picks a pool's backends by weight; stickiness is per pool (a route's sticky)",
        ),
        "proxy_cache" | "proxy_cache_path" | "proxy_cache_valid" | "proxy_cache_key"
        | "proxy_cache_bypass" | "proxy_no_cache" => LeftOut("cutover does not cache"),
        "stream" => LeftOut("TCP/UDP proxying (stream) is not HTTP"),
        "load_module" => LeftOut("a dynamic nginx module: what it adds is not carried"),
        "ssl_client_certificate"
        | "ssl_verify_client"
        | "ssl_stapling"
        | "ssl_trusted_certificate" => {
            LeftOut("client certificates and OCSP stapling are not supported")
        }
        "proxy_ssl_verify" | "proxy_ssl_server_name" | "proxy_ssl_certificate" => {
            LeftOut("cutover speaks plain HTTP/1.1 to backends")
        }
        _ => LeftOut("not known to the importer"),
    }
}
