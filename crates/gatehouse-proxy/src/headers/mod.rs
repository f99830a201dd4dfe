//! Header rules applied on the way through, one file per concern.

pub mod forwarded;
pub mod hop;
