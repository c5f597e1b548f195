//! Protocol switches (WebSocket and the like): once the backend answers 101, the two
//! connections are joined and bytes copied both ways until either side closes.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;

use super::body::ProxyBody;
use super::forward::Answer;
use super::reply::Reply;

/// Returns the 101 for the client and spawns the tunnel behind it.
pub(super) fn tunnel(on_client: OnUpgrade, answer: Answer) -> Reply {
    let Answer {
        head,
        exchange,
        in_flight,
        ..
    } = answer;
    let (mut backend, early) = exchange.into_upgraded();
    tokio::spawn(async move {
        // Held for the tunnel's life: an open tunnel counts as in flight.
        let _in_flight = in_flight;
        let mut client = match on_client.await {
            Ok(upgraded) => TokioIo::new(upgraded),
            Err(e) => {
                tracing::debug!(error = %e, "upgrade did not complete");
                return;
            }
        };
        // What the backend sent right behind its 101 came with the head.
        if !early.is_empty() {
            if let Err(e) = client.write_all(&early).await {
                tracing::debug!(error = %e, "tunnel closed with an error");
                return;
            }
        }
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut backend).await {
            tracing::debug!(error = %e, "tunnel closed with an error");
        }
    });
    Reply::new(head.status, head.fields, ProxyBody::empty())
}
