//! Response bodies, streamed frame by frame, never collected.
//!
//! * [`ResponseBody`]: the upstream's body (or Gatehouse's own small answer), holding what must be released
//!   when it ends: the server's in-flight unit and the upstream connection (back to its pool when the body
//!   completed cleanly, closed otherwise).
//! * [`ClientBody`]: the outermost body, the one hyper writes to the client. It counts the bytes sent and owns
//!   the request's [`Exchange`](crate::exchange::Exchange) until the last byte is out or the client goes away,
//!   then reports the request's end. Layers that transform a body (compression) wrap `ResponseBody` inside it,
//!   so what it counts is what the client received.
//! * [`compress`]: a `ResponseBody` compressed on the way (`compress` on a route).

mod client;
pub mod compress;
mod response;

pub use client::ClientBody;
pub use response::{ResponseBody, UpstreamHold};
