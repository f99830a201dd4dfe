//! Traffic policy, the parts of it that are not HTTP plumbing: each module is one rule an operator writes
//! (`docs/configuration.md`, "Traffic policy"), compiled once per config into the form the request path
//! reads. Where each runs in a request's life is `gatehouse-proxy`'s business (its `layers` and `phases`):
//!
//! * [`rate_limit`]: `rate_limit`, a token bucket per client address (layer, before the action);
//! * [`conn_limit`]: `max_conns_per_ip` on listeners and streams (at accept, before TLS);
//! * [`basic_auth`]: `basic_auth` users and `gatehouse hash-password` (layer);
//! * [`header_rules`]: `request_headers` (phase 3a) and `response_headers` (layer);
//! * [`rewrite`]: a route's `rewrite` of the path (phase 3a);
//! * [`encoding`]: `compress`: which codec, and whether a response may be compressed (phase 3c).

pub mod basic_auth;
pub mod conn_limit;
pub mod encoding;
pub mod header_rules;
pub mod rate_limit;
pub mod rewrite;
