//! Which codec a response is compressed with, and whether it may be: the client's `Accept-Encoding`
//! q-values against the codecs the route offers (the route's order breaks ties), and the response's
//! type, size and headers.

use gatehouse_config::{Codec, Compress};
use http::{header, HeaderMap, StatusCode};

/// The codec to use for a client that sent `headers`, among `offered`.
pub fn choose(headers: &HeaderMap, offered: &[Codec]) -> Option<Codec> {
    let mut best: Option<(Codec, u16)> = None;
    for codec in offered {
        let q = quality(headers, codec.token());
        if q > 0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((*codec, q));
        }
    }
    best.map(|(c, _)| c)
}

/// The client's q-value for `token`, in thousandths: its own entry, else `*`'s, else 0.
fn quality(headers: &HeaderMap, token: &str) -> u16 {
    let mut star = None;
    for v in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(v) = v.to_str() else { continue };
        for item in v.split(',') {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim();
            let q = parts
                .find_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    k.trim()
                        .eq_ignore_ascii_case("q")
                        .then(|| parse_q(v.trim()))
                })
                .unwrap_or(Some(1000));
            let Some(q) = q else { continue };
            if name.eq_ignore_ascii_case(token) {
                return q;
            }
            if name == "*" {
                star = Some(q);
            }
        }
    }
    star.unwrap_or(0)
}

/// `0`, `0.5`, `1.000` → thousandths; anything else is not a q-value.
fn parse_q(s: &str) -> Option<u16> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let int: u16 = match int {
        "0" => 0,
        "1" => 1,
        _ => return None,
    };
    let frac_n: u16 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<3}").parse().ok()?
    };
    let q = int * 1000 + frac_n;
    (q <= 1000).then_some(q)
}

/// Whether a response with this status and these headers may be compressed by `rule`.
pub fn eligible(status: StatusCode, headers: &HeaderMap, rule: &Compress) -> bool {
    if status == StatusCode::PARTIAL_CONTENT
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || status.is_informational()
        || headers.contains_key(header::CONTENT_RANGE)
    {
        return false;
    }
    // Already encoded (anything but identity).
    if headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
    {
        return false;
    }
    let no_transform = headers.get_all(header::CACHE_CONTROL).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|d| d.trim().eq_ignore_ascii_case("no-transform"))
        })
    });
    if no_transform {
        return false;
    }
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len < rule.min_size {
            return false;
        }
    }
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(compressible)
}

/// Text and text-like types; images, video, archives and fonts in compressed formats are left alone.
pub fn compressible(content_type: &str) -> bool {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let Some((top, sub)) = mime.split_once('/') else {
        return false;
    };
    match top {
        "text" => true,
        "application" => {
            matches!(
                sub,
                "json"
                    | "javascript"
                    | "x-javascript"
                    | "ecmascript"
                    | "xml"
                    | "wasm"
                    | "x-ndjson"
                    | "graphql"
                    | "x-www-form-urlencoded"
                    | "vnd.ms-fontobject"
                    | "x-font-ttf"
            ) || sub.ends_with("+json")
                || sub.ends_with("+xml")
        }
        "image" => matches!(sub, "svg+xml" | "x-icon" | "vnd.microsoft.icon" | "bmp"),
        "font" => matches!(sub, "ttf" | "otf"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_config::CompressLevel;
    use http::HeaderValue;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
        h
    }

    const ALL: &[Codec] = &[Codec::Zstd, Codec::Br, Codec::Gzip];

    #[test]
    fn q_values_pick_the_codec_and_the_route_breaks_ties() {
        assert_eq!(
            choose(&accept("gzip, deflate, br, zstd"), ALL),
            Some(Codec::Zstd)
        );
        assert_eq!(choose(&accept("gzip, br"), ALL), Some(Codec::Br));
        assert_eq!(
            choose(&accept("gzip;q=1.0, br;q=0.5"), ALL),
            Some(Codec::Gzip)
        );
        assert_eq!(
            choose(&accept("br;q=0, gzip;q=0.001"), ALL),
            Some(Codec::Gzip)
        );
        assert_eq!(choose(&accept("*"), ALL), Some(Codec::Zstd));
        assert_eq!(choose(&accept("*;q=0.1, zstd;q=0"), ALL), Some(Codec::Br));
        assert_eq!(choose(&accept("identity"), ALL), None);
        assert_eq!(choose(&accept("gzip;q=2"), ALL), None, "not a q-value");
        assert_eq!(choose(&HeaderMap::new(), ALL), None);
        assert_eq!(choose(&accept("br"), &[Codec::Gzip]), None);
    }

    #[test]
    fn what_is_never_compressed() {
        let rule = Compress {
            codecs: vec![Codec::Gzip],
            level: CompressLevel::Default,
            min_size: 512,
        };
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.append(*k, HeaderValue::from_static(v));
            }
            m
        };
        let ok = StatusCode::OK;
        assert!(eligible(
            ok,
            &h(&[("content-type", "text/html; charset=utf-8")]),
            &rule
        ));
        assert!(eligible(
            ok,
            &h(&[
                ("content-type", "application/vnd.api+json"),
                ("content-length", "600")
            ]),
            &rule
        ));
        assert!(
            !eligible(
                ok,
                &h(&[("content-type", "text/html"), ("content-length", "100")]),
                &rule
            ),
            "small"
        );
        assert!(
            !eligible(ok, &h(&[("content-type", "image/png")]), &rule),
            "unlisted type"
        );
        assert!(!eligible(ok, &h(&[]), &rule), "no type");
        assert!(!eligible(
            ok,
            &h(&[("content-type", "text/css"), ("content-encoding", "gzip")]),
            &rule
        ));
        assert!(!eligible(
            ok,
            &h(&[
                ("content-type", "text/css"),
                ("cache-control", "public, no-transform")
            ]),
            &rule
        ));
        assert!(!eligible(
            StatusCode::PARTIAL_CONTENT,
            &h(&[("content-type", "text/css")]),
            &rule
        ));
        assert!(!eligible(
            StatusCode::NOT_MODIFIED,
            &h(&[("content-type", "text/css")]),
            &rule
        ));
    }
}
