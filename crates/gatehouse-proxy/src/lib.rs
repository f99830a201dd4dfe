//! Gatehouse's data path. The modules form layers; each uses only those listed before it:
//!
//! | layer | modules | what |
//! |---|---|---|
//! | 0 | [`worker`], [`conn`], [`headers`], [`socket`], [`signal`] | threads; one client connection's facts, clocks and drain unit; header rules; a plain-or-TLS socket; the shutdown and stop signals |
//! | 1 | [`context`] | what is learnt about one request while serving it |
//! | 2 | [`upstream`] | connections to servers: connect, pool, send, health probes |
//! | 3 | [`snapshot`] | one config compiled for requests, with its end-of-request [`Observer`] |
//! | 4 | [`exchange`], [`body`], [`error`], [`health`] | a request and its snapshot until its end is reported; bodies; status codes; which health probers run |
//! | 5 | [`layers`], [`phases`] | the request path: tower layers around the numbered phases |
//! | 6 | [`listener`] | sockets, accept loops, serving a connection |
//! | 7 | [`prepare()`], [`Proxy`] | applying a config: prepare (what `check` runs), bind, swap |
//!
//! A request's life, in order (see `docs/architecture.md` for the narrative): [`listener`] accepts and serves
//! the connection; [`phases::handle`] routes the request ([`phases::route`]), runs the route's [`layers`]
//! around its action, and forwards ([`phases::rewrite`] → [`phases::send`] → [`phases::respond`]); the
//! response body ([`body::ClientBody`]) reports the request's end to the snapshot's [`Observer`].

pub mod body;
pub mod conn;
pub mod context;
pub mod error;
pub mod exchange;
pub mod headers;
pub mod health;
pub mod layers;
pub mod listener;
pub mod phases;
mod prepare;
mod proxy;
pub mod signal;
pub mod snapshot;
pub mod socket;
pub mod upstream;
pub mod worker;

pub use context::RequestCtx;
pub use prepare::{prepare, Prepared};
pub use proxy::{ApplyError, LastReload, ListenerStatus, Proxy, ReloadReport, ShutdownReport};
pub use snapshot::{NoObserver, Observer, Registries, Snapshot};
pub use worker::Workers;
