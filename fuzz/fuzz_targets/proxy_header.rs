//! The PROXY protocol v1/v2 parser on any first bytes of a connection: a header is never longer than the
//! bytes given, and a parse never panics.
#![no_main]

use gatehouse_proxy::listener::proxy_header::{parse, Parsed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Parsed::Header { len, .. } = parse(data) {
        assert!(len <= data.len(), "a header of {len} bytes in {}", data.len());
        assert!(len > 0);
    }
});
