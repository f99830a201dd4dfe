//! Gatehouse's data path.
//!
//! A request's life, one module per step (see `docs/architecture.md` for the narrative):
//!
//! 0. [`worker`] threads each run a single-threaded runtime; every listener has an accept loop on each.
//! 1. [`listener`] accepts a TCP connection and serves HTTP/1.1 and h2c on it with hyper (`conn` idle watchdog).
//! 2. [`service`] loads the current [`snapshot`] once, finds the site by host and the route by path, applies
//!    access rules, and either answers itself (respond, redirect) or hands the request to [`forward`].
//! 3. [`forward`] rewrites headers ([`headers`]), picks a server with the pool's balancer, takes a pooled or new
//!    upstream connection ([`upstream`]), retries another server when a connect fails, and streams the response
//!    back ([`body`]). Upgrades (WebSocket) continue in [`upgrade`].
//! 4. Every failure becomes a status code in exactly one place: [`error`].
//!
//! [`Proxy`] owns what outlives a snapshot: listeners, per-server state and connection pools, the generation.

pub mod body;
mod client_io;
pub mod error;
pub mod forward;
pub mod headers;
pub mod listener;
mod proxy;
pub mod service;
pub mod snapshot;
pub mod upgrade;
pub mod upstream;
pub mod worker;

pub use proxy::{Proxy, ReloadReport, ShutdownReport};
pub use snapshot::Snapshot;
pub use worker::Workers;
