//! The HTTP/1 wire format, shared by cutover's own server for clients and its client
//! for backends: header fields as httparse found them ([`fields`]), the strict framing
//! rules every client head is checked against ([`framing`]), hop-by-hop fields
//! ([`hop`]), and the `Date` field ([`date`]). Nothing here knows about routes, pools or
//! the proxy's own policy; the head writers apply that policy with these parts.

pub(crate) mod body;
pub(crate) mod date;
pub(crate) mod fields;
pub(crate) mod framing;
pub(crate) mod hop;
pub(crate) mod host;
