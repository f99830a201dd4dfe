//! Automatic certificates with ACME (RFC 8555) on instant-acme, one file per concern:
//!
//! * [`storage`]: the seam several Gatehouse nodes share (async: a network store must never stall a worker),
//!   with the file backend; [`keys`] builds every storage key in one place.
//! * [`schedule`]: when a certificate is due, how long to back off after a failure (pure functions).
//! * [`account`]: the ACME account, loaded or created once under a lock.
//! * [`order`] and [`challenge`]: one order, its challenges published where the CA will look.
//! * [`ca`]: every call to the CA is bounded in time.
//! * [`manager::AcmeManager`]: the loop that ties them together (load stored certificates at start, order
//!   what is missing or due, swap the result in).
//! * [`error`]: what can go wrong, and how long the CA asked us to wait.
//!
//! See `docs/acme.md` for the operator's view and `docs/architecture.md` for the flow.

pub mod account;
pub mod ca;
pub mod challenge;
pub mod error;
pub mod keys;
pub mod manager;
pub mod order;
pub mod schedule;
pub mod storage;

pub use challenge::ChallengeKind;
pub use error::AcmeError;
pub use manager::{AcmeConfig, AcmeManager, AcmeSite, AcmeStats};
pub use storage::{FileStorage, RedisStorage, Storage, StoreHealth};
