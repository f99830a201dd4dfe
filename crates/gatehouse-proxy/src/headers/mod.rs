//! Header rules applied on the way through, one file per concern.

pub mod added;
pub mod forwarded;
pub mod hop;

/// The request id header: kept from the client when valid, else made; sent upstream and returned.
pub const X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");
