//! The X-Forwarded-For walk on any header lines a trusted proxy might pass on: the client found is the
//! peer, an address from the header, or 0.0.0.0 for a hop that is not an address; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::IpAddr;

fuzz_target!(|data: &[u8]| {
    let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().expect("net"), "::1/128".parse().expect("net")];
    let peer: IpAddr = "10.1.2.3".parse().expect("ip");
    let mut headers = http::HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        if let Ok(v) = http::HeaderValue::from_bytes(line) {
            headers.append("x-forwarded-for", v);
        }
    }
    let text = String::from_utf8_lossy(data);
    let client = gatehouse_proxy::headers::forwarded::client_ip(&trusted, peer, true, &headers);
    let from_header = client == peer
        || client == IpAddr::from([0, 0, 0, 0])
        || text.contains(&client.to_string())
        || text.to_ascii_lowercase().contains(&client.to_string());
    // A v4-mapped or zero-padded spelling may name the address another way; anything else is a bug.
    if !from_header {
        assert!(text.contains(':') || text.contains('0'), "{client} from {text:?}");
    }
    // An untrusted peer's header is never believed.
    assert_eq!(
        gatehouse_proxy::headers::forwarded::client_ip(&trusted, "192.0.2.1".parse().expect("ip"), false, &headers),
        "192.0.2.1".parse::<IpAddr>().expect("ip")
    );
});
