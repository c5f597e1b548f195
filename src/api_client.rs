//! cutover as the client of a small HTTP API: `cutover status` reading an admin
//! listener's `/status`, and a fleet ramp asking Prometheus. The base URL it is given,
//! and one plain-HTTP GET with the answer's size capped. (Backends have their own
//! client, [`crate::upstream`].)

use std::fmt;

use bytes::Bytes;
use http::header::{ACCEPT, HOST};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// `http://HOST[:PORT][/PREFIX]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BaseUrl {
    /// As messages name it: `http://HOST:PORT[/PREFIX]`.
    url: String,
    /// What to connect to: a name (resolved on every connect, so a moved Service is
    /// followed) or an IP address (IPv6 without brackets).
    pub(crate) host: String,
    pub(crate) port: u16,
    /// `HOST:PORT` for the Host field (IPv6 in brackets).
    pub(crate) authority: String,
    /// The path it is served under, without a trailing slash: an API behind a reverse
    /// proxy keeps it.
    pub(crate) prefix: String,
}

/// Why a GET got no answer to read.
#[derive(Debug)]
pub(crate) enum GetError {
    /// No connection, or no answer head: the reason in a few words.
    Unreachable(String),
    /// An answer larger than the caller's cap.
    TooLarge,
    /// The answer's body broke off.
    Broken(String),
}

impl BaseUrl {
    /// Plain http only, port 80 unless given; credentials, a query or a fragment are
    /// refused. An error says why, for the caller to say what it was parsing.
    pub(crate) fn parse(text: &str) -> Result<BaseUrl, String> {
        let s = text.trim();
        let shape = "expected http://HOST[:PORT][/PREFIX]";
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(shape.to_owned());
        };
        match scheme.to_ascii_lowercase().as_str() {
            "http" => {}
            "https" => return Err("https is not supported, only plain http".to_owned()),
            _ => return Err(format!("{scheme} is not supported, {shape}")),
        }
        // The caller's own paths and parameters follow the prefix; `#` would drop them.
        if rest.contains(['?', '#']) {
            return Err("no query string or fragment: give the base URL".to_owned());
        }
        let uri: Uri = s
            .parse()
            .map_err(|e: http::uri::InvalidUri| e.to_string())?;
        let Some(auth) = uri.authority() else {
            return Err("no host".to_owned());
        };
        if auth.as_str().contains('@') {
            return Err("credentials in the URL are not supported".to_owned());
        }
        let host = auth.host();
        if host.is_empty() {
            return Err("no host".to_owned());
        }
        // `Authority::port` is None for a port that is not a number; that must not
        // quietly become 80, so read what follows the host.
        let port = match auth.as_str()[host.len()..].strip_prefix(':') {
            None => 80,
            Some(p) => match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(format!("bad port {p:?}")),
                Ok(n) => n,
            },
        };
        let authority = format!("{host}:{port}");
        let prefix = uri.path().trim_end_matches('/').to_owned();
        Ok(BaseUrl {
            url: format!("http://{authority}{prefix}"),
            host: host.trim_matches(['[', ']']).to_owned(),
            port,
            authority,
            prefix,
        })
    }

    /// GET `path_and_query` under the prefix, reading at most `max_body` bytes of
    /// the answer. The connection is driven here rather than spawned, so a timeout
    /// that drops this future closes the socket too.
    pub(crate) async fn get(
        &self,
        path_and_query: &str,
        max_body: usize,
    ) -> Result<(StatusCode, Bytes), GetError> {
        let unreachable = GetError::Unreachable;
        let stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| unreachable(io_reason(&e)))?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let req = Request::get(format!("{}{path_and_query}", self.prefix))
            .header(HOST, &self.authority)
            .header(ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|e| unreachable(e.to_string()))?;
        let exchange = async move {
            let resp = send
                .send_request(req)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let status = resp.status();
            match Limited::new(resp.into_body(), max_body).collect().await {
                Ok(body) => Ok((status, body.to_bytes())),
                Err(e) if e.is::<LengthLimitError>() => Err(GetError::TooLarge),
                Err(e) => Err(GetError::Broken(e.to_string())),
            }
            // `send` drops here, which lets the connection below finish.
        };
        let (result, _closed) = tokio::join!(exchange, conn);
        result
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

/// An I/O error in a few words, without the OS's error number.
fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        ErrorKind::TimedOut => "timed out".to_owned(),
        ErrorKind::HostUnreachable => "host unreachable".to_owned(),
        ErrorKind::NetworkUnreachable => "network unreachable".to_owned(),
        ErrorKind::AddrNotAvailable => "address not available".to_owned(),
        _ => e.to_string(),
    }
}
