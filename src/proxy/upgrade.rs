//! Protocol switches (WebSocket and the like): once the backend answers 101, the two
//! connections are joined and bytes copied both ways until either side closes.

use http::Response;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::body::ProxyBody;
use super::forward::Answer;

/// Returns the 101 for the client and spawns the tunnel behind it.
pub fn tunnel(on_client: OnUpgrade, answer: Answer) -> Response<ProxyBody> {
    let Answer {
        mut response,
        sender,
        in_flight,
        ..
    } = answer;
    let on_backend = hyper::upgrade::on(&mut response);
    // The sender must go so the backend connection can hand over its socket.
    drop(sender);
    tokio::spawn(async move {
        // Held for the tunnel's life: an open tunnel counts as in flight.
        let _in_flight = in_flight;
        let (client, backend) = match tokio::try_join!(on_client, on_backend) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade did not complete");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut backend = TokioIo::new(backend);
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut backend).await {
            tracing::debug!(error = %e, "tunnel closed with an error");
        }
    });
    let (parts, _) = response.into_parts();
    Response::from_parts(parts, ProxyBody::empty())
}
