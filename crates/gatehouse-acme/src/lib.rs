//! Automatic certificates with ACME (RFC 8555) on instant-acme.
//!
//! * [`storage::Storage`] is the seam several Gatehouse nodes share (the "CertStore" of the design): load,
//!   store, list, and a per-name lock with a lease. [`storage::FileStorage`] is the backend for one machine
//!   (atomic writes, 0600 files in 0700 folders); a Redis backend would implement the same five methods.
//! * [`schedule`] decides when a certificate is due (a third of its lifetime left, or a configured window) and
//!   how long to back off after a failure.
//! * [`manager::AcmeManager`] runs the loop: load stored certificates at start (a restart orders nothing),
//!   then for each site that needs one take the name's lock, re-check storage, order with the preferred
//!   challenge (HTTP-01 or TLS-ALPN-01) and fall back to the other, store, and swap the certificate in.
//!
//! See `docs/acme.md` for the operator's view and `docs/architecture.md` for the flow.

pub mod manager;
pub mod schedule;
pub mod storage;

pub use manager::{AcmeConfig, AcmeManager, AcmeSite, ChallengeKind};
pub use storage::{FileStorage, Storage};
