//! A request as it goes upstream: the rewritten request, and the fields the proxy adds to it (the forwarded
//! headers and X-Request-Id) kept beside its header map.
//!
//! Why beside: inserted into the map, each added field hashes its name and probes the table, and the map
//! grows to make room, about 1,000 instructions a request for the five (docs/benchmarks.md). Our HTTP/1.1
//! client writes them after the map's fields instead. Every other sender (HTTP/2, and hyper's HTTP/1.1 client
//! for upgrades) takes the request with them merged into the map ([`UpRequest::into_request`]).
//!
//! The one rule: a field the side list carries is not also in the map. The rewrite removes the client's
//! copies before it adds ours, so a backend never sees a field twice, whichever way the request goes.

use super::body::RequestBody;
use crate::headers::added::Added;
use http::Request;
use std::ops::{Deref, DerefMut};

/// The request going upstream, with its [`Added`] fields. It reads as the request it wraps.
#[derive(Debug)]
pub struct UpRequest {
    req: Request<RequestBody>,
    added: Added,
}

impl UpRequest {
    /// `added` must name no field that `req`'s map has (see the module's rule).
    pub fn new(req: Request<RequestBody>, added: Added) -> UpRequest {
        debug_assert!(added
            .iter()
            .all(|(f, _)| !req.headers().contains_key(f.name())));
        UpRequest { req, added }
    }

    pub fn added(&self) -> &Added {
        &self.added
    }

    /// The request with the added fields in its map: for a sender that writes the map alone.
    pub fn into_request(mut self) -> Request<RequestBody> {
        self.added.merge_into(self.req.headers_mut());
        self.req
    }
}

impl From<Request<RequestBody>> for UpRequest {
    fn from(req: Request<RequestBody>) -> UpRequest {
        UpRequest {
            req,
            added: Added::default(),
        }
    }
}

impl Deref for UpRequest {
    type Target = Request<RequestBody>;
    fn deref(&self) -> &Request<RequestBody> {
        &self.req
    }
}

impl DerefMut for UpRequest {
    fn deref_mut(&mut self) -> &mut Request<RequestBody> {
        &mut self.req
    }
}
