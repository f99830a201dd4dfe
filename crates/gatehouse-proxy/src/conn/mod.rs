//! One client connection, as the rest of the proxy sees it. A leaf: nothing here knows of requests, routes or
//! upstreams, so every other module may use it.
//!
//! * [`drain`]: counts open connections and tunnels, so shutdown knows when everything has drained (and
//!   connections that gave their buffers back, for the memory trimmer).
//! * [`peer`]: the connection's immutable facts (addresses, listener, TLS), read by every request.
//! * [`clock`]: the watchdog's clocks (idle, request head) — the only code that reads or writes them.
//! * [`framing`]: the framing scanner, for what hyper hides or acts on too late.
//!
//! The files of this folder use the [`Conn`] defined here, and it uses theirs: one small folder, one concept.

mod clock;
mod drain;
mod framing;
mod peer;

pub use clock::{ActiveRequest, Clock, Timeouts, Verdict};
pub use drain::{connections_released, released, TrackGuard, Tracker};
pub use framing::{Found, FramingFlag, HeadScan};
pub use peer::{Peer, Scheme, TlsFacts};

use std::sync::atomic::AtomicBool;

/// A client connection, shared (`Arc`) by its serving task, its requests and any tunnel it became. It
/// holds the connection's drain unit, so a graceful shutdown waits for whichever of them ends last.
#[derive(Debug)]
pub struct Conn {
    pub peer: Peer,
    pub clock: Clock,
    pub framing: FramingFlag,
    /// The connection is being parked: its socket wrapper reads nothing more and does not shut the socket,
    /// so hyper's connection ends idle and hands the socket back (see `listener/serve.rs`).
    pub parking: AtomicBool,
    _open: TrackGuard,
    /// Whatever else must be held while the connection lives (its units of connection limits).
    _held: Box<dyn std::any::Any + Send + Sync>,
}

impl Conn {
    pub fn new(peer: Peer, open: TrackGuard) -> Self {
        Self::holding(peer, open, Box::new(()))
    }

    /// A connection that also holds `held` until its last user lets go.
    pub fn holding(
        peer: Peer,
        open: TrackGuard,
        held: Box<dyn std::any::Any + Send + Sync>,
    ) -> Self {
        Conn {
            peer,
            clock: Clock::new(),
            framing: FramingFlag::default(),
            parking: AtomicBool::new(false),
            _open: open,
            _held: held,
        }
    }
}
