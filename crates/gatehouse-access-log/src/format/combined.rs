//! nginx's `combined` format, byte for byte:
//!
//! ```text
//! $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"
//! ```
//!
//! with nginx's escaping of `"`, `\` and bytes outside printable ASCII as `\xHH`, so GoAccess, Logstash's
//! `COMBINEDAPACHELOG` and every parser of nginx logs read it. Times are in UTC (`+0000`).

use super::Entry;

pub fn write(e: &Entry<'_>, out: &mut Vec<u8>) {
    use std::io::Write;
    let _ = write!(out, "{} - - [", e.client_ip);
    super::clock::with_time(e.time, |local, _, _| {
        out.extend_from_slice(local.as_bytes())
    });
    out.extend_from_slice(b"] \"");
    escape(e.method.as_bytes(), out);
    out.push(b' ');
    match e.target {
        // Origin-form as sent; HTTP/2 has no request line: its path and query, as nginx shows them.
        Some(u) if u.scheme().is_none() || e.version == http::Version::HTTP_2 => escape(
            u.path_and_query().map_or("/", |p| p.as_str()).as_bytes(),
            out,
        ),
        // Absolute-form (rare: a client that takes Gatehouse for a forward proxy).
        Some(u) => escape(u.to_string().as_bytes(), out),
        None => out.push(b'-'),
    }
    out.push(b' ');
    out.extend_from_slice(e.protocol().as_bytes());
    let _ = write!(out, "\" {} {} \"", e.status, e.bytes_sent);
    escape_or_dash(e.referer, out);
    out.extend_from_slice(b"\" \"");
    escape_or_dash(e.user_agent, out);
    out.extend_from_slice(b"\"\n");
}

fn escape_or_dash(v: Option<&[u8]>, out: &mut Vec<u8>) {
    match v {
        Some(b) if !b.is_empty() => escape(b, out),
        _ => out.push(b'-'),
    }
}

/// nginx's default log escaping (`ngx_escape_uri` with `NGX_ESCAPE_REFRESH`-like rules for log variables):
/// `"`, `\` and any byte below 0x20 or above 0x7e as `\xHH`.
pub fn escape(b: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &c in b {
        if c == b'"' || c == b'\\' || !(0x20..=0x7e).contains(&c) {
            out.extend_from_slice(&[
                b'\\',
                b'x',
                HEX[usize::from(c >> 4)],
                HEX[usize::from(c & 0xf)],
            ]);
        } else {
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_backslashes_and_control_bytes_are_escaped_as_nginx_does() {
        let mut out = Vec::new();
        escape(b"a\"b\\c\x01\xff d", &mut out);
        assert_eq!(out, b"a\\x22b\\x5Cc\\x01\\xFF d");
    }
}
