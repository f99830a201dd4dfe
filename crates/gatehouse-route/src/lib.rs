//! Request matching, compiled once per config snapshot and read lock-free per request:
//! [`HostTable`] picks a site by the request's host, [`PathTable`] picks a route by longest path prefix.
//! Generic over what a site or route carries, so it is table-tested here without sockets.

mod host;
mod normalize;
mod path;

pub use host::{is_valid_host, normalize_host, HostTable};
pub use normalize::{
    has_encoded_separator, has_malformed_escape, match_form, normalize_path, strip_matched_prefix,
};
pub use path::PathTable;
