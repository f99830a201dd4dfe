//! The fields the proxy adds to every request it forwards (the forwarded headers and X-Request-Id), kept
//! beside the request's header map rather than in it.
//!
//! Why beside: inserted into the map, each added field hashes its name and probes the table, and the map
//! grows to make room, about 1,000 instructions a request for the five (docs/benchmarks.md). Our HTTP/1.1
//! client writes them after the map's fields; every other sender takes them merged into the map.

use super::forwarded::{X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO, X_REAL_IP};
use super::X_REQUEST_ID;
use http::header::{HeaderMap, HeaderName, HeaderValue};

/// A field the proxy adds to every request it forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    ForwardedFor,
    RealIp,
    ForwardedProto,
    ForwardedHost,
    RequestId,
}

impl Field {
    const ALL: [Field; 5] = [
        Field::ForwardedFor,
        Field::RealIp,
        Field::ForwardedProto,
        Field::ForwardedHost,
        Field::RequestId,
    ];

    /// The field's name, lower-case as HTTP/2 and our HTTP/1.1 writer send every name.
    pub fn name(self) -> &'static str {
        self.header_name().as_str()
    }

    fn header_name(self) -> &'static HeaderName {
        static REQUEST_ID: HeaderName = X_REQUEST_ID;
        match self {
            Field::ForwardedFor => &X_FORWARDED_FOR,
            Field::RealIp => &X_REAL_IP,
            Field::ForwardedProto => &X_FORWARDED_PROTO,
            Field::ForwardedHost => &X_FORWARDED_HOST,
            Field::RequestId => &REQUEST_ID,
        }
    }
}

/// The fields added to one request, at most one value each.
#[derive(Debug, Clone, Default)]
pub struct Added([Option<HeaderValue>; 5]);

impl Added {
    /// Sets `field` (a second set replaces the first, as a map's insert does).
    pub fn set(&mut self, field: Field, value: HeaderValue) {
        self.0[field as usize] = Some(value);
    }

    pub fn get(&self, field: Field) -> Option<&HeaderValue> {
        self.0[field as usize].as_ref()
    }

    /// The fields set, in [`Field`]'s order.
    pub fn iter(&self) -> impl Iterator<Item = (Field, &HeaderValue)> {
        Field::ALL
            .into_iter()
            .zip(&self.0)
            .filter_map(|(f, v)| v.as_ref().map(|v| (f, v)))
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(Option::is_none)
    }

    /// Moves every field into `headers`, replacing any field of the same name.
    pub fn merge_into(&mut self, headers: &mut HeaderMap) {
        for (f, v) in Field::ALL.into_iter().zip(&mut self.0) {
            if let Some(v) = v.take() {
                headers.insert(f.header_name().clone(), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_fields_replace_and_leave_the_side_list_empty() {
        let mut added = Added::default();
        added.set(Field::ForwardedFor, HeaderValue::from_static("203.0.113.9"));
        added.set(Field::RequestId, HeaderValue::from_static("abc"));
        added.set(Field::RequestId, HeaderValue::from_static("def"));
        let names: Vec<_> = added.iter().map(|(f, _)| f.name()).collect();
        assert_eq!(names, ["x-forwarded-for", "x-request-id"]);
        let mut h = HeaderMap::new();
        h.insert(http::header::HOST, HeaderValue::from_static("example.com"));
        added.merge_into(&mut h);
        assert!(added.is_empty());
        assert_eq!(h["x-forwarded-for"], "203.0.113.9");
        assert_eq!(h["x-request-id"], "def");
        assert_eq!(h.len(), 3);
    }
}
