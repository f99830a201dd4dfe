//! Request heads out, response heads in. The response head is parsed with `httparse` (strict: no obsolete
//! line folding, no spaces before a colon) and its framing checked as RFC 9112 §6.3 says a proxy must: a
//! `Content-Length` that is not one number, or a transfer coding other than `chunked`, is a broken server
//! (502), never guessed at.

use super::Error;
use crate::headers::added::Added;
use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Version};

/// The most header fields a response head may carry (hyper's client allows as many).
const MAX_HEADERS: usize = 100;
/// Fields the response path may add to a response head.
const RESPONSE_HEADERS_ADDED: usize = 4;

/// How a request body goes up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Out {
    /// No body bytes follow the head.
    Empty,
    /// `Content-Length` bytes follow.
    Length(u64),
    /// Chunked (a body of unknown length: a chunked client body, or an HTTP/2 one without a length).
    Chunked,
}

/// Writes `req`'s head into `out` (cleared first), its map's fields then the `added` ones, and says how its
/// body follows. The request has been rewritten (hop-by-hop headers, `Transfer-Encoding` among them, are
/// gone); its length is its `Content-Length` or the body's exact size, else it is chunked.
pub fn encode<B: http_body::Body>(req: &Request<B>, added: &Added, out: &mut Vec<u8>) -> Out {
    out.clear();
    out.extend_from_slice(req.method().as_str().as_bytes());
    out.push(b' ');
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in req.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (field, value) in added.iter() {
        out.extend_from_slice(field.name().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let body = req.body();
    let framing = if let Some(n) = declared_length(req.headers()) {
        Out::Length(n)
    } else if body.is_end_stream() {
        // A method that means a body (POST, PUT, PATCH, …) says it has none, as hyper and nginx do.
        if !matches!(
            *req.method(),
            Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS | Method::TRACE
        ) {
            out.extend_from_slice(b"content-length: 0\r\n");
        }
        Out::Empty
    } else if let Some(n) = body.size_hint().exact() {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(n.to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        Out::Length(n)
    } else {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        Out::Chunked
    };
    out.extend_from_slice(b"\r\n");
    match framing {
        Out::Length(0) => Out::Empty,
        f => f,
    }
}

/// The request's own `Content-Length`, when it has one valid one (hyper refused the request otherwise).
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// A parsed response head.
#[derive(Debug)]
pub struct Head {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: In,
    /// The server keeps the connection open after this response (HTTP/1.1 without `Connection: close`,
    /// HTTP/1.0 with `keep-alive`).
    pub keep_alive: bool,
}

/// How a response body comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum In {
    Empty,
    Length(u64),
    Chunked,
    /// Until the server closes the connection.
    UntilClose,
}

/// Parses a complete response head at the start of `buf` and splits it off; `Ok(None)` while it is not all
/// there. `head_request`: the answer to HEAD has no body, whatever its headers say.
pub fn parse(buf: &mut BytesMut, head_request: bool) -> Result<Option<Head>, Error> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut fields);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Error::Head("too many header fields")),
        Err(_) => return Err(Error::Head("malformed response head")),
    };
    let code = resp.code.unwrap_or(0);
    let status = StatusCode::from_u16(code).map_err(|_| Error::Head("invalid status code"))?;
    let version = match resp.version {
        Some(1) => Version::HTTP_11,
        _ => Version::HTTP_10,
    };
    // Where each field sits in the head, so the values can share its bytes instead of being copied. On the
    // stack, uninitialised until pushed: no allocation per response, and no zeroing of room for 100 fields.
    let base = buf.as_ptr() as usize;
    let mut spans: smallvec::SmallVec<[(HeaderName, usize, usize); 24]> = smallvec::SmallVec::new();
    let mut seen = Seen::default();
    for f in resp.headers.iter() {
        let name = HeaderName::from_bytes(f.name.as_bytes())
            .map_err(|_| Error::Head("invalid header name"))?;
        if !seen.field(&name, f.value) {
            continue;
        }
        let start = f.value.as_ptr() as usize - base;
        spans.push((name, start, start + f.value.len()));
    }
    let head: Bytes = buf.split_to(len).freeze();
    // Room for what the response path adds (X-Request-Id, header rules): a full map would grow, rehashing
    // every field, on the first insert.
    let mut headers = HeaderMap::with_capacity(spans.len() + RESPONSE_HEADERS_ADDED);
    for (name, start, end) in spans {
        let value = HeaderValue::from_maybe_shared(head.slice(start..end))
            .map_err(|_| Error::Head("invalid header value"))?;
        headers.append(name, value);
    }
    let keep_alive = match version {
        Version::HTTP_11 => !seen.close,
        _ => seen.keep_alive,
    };
    let body = framing(status, &mut headers, head_request, &seen)?;
    Ok(Some(Head {
        status,
        version,
        headers,
        body,
        keep_alive,
    }))
}

/// What the framing and keep-alive verdicts need, noted as the fields go by: most responses then need no
/// lookup in the map (each hashes a name) — one `Content-Length` and a `Connection` is the usual head.
#[derive(Default)]
struct Seen {
    transfer_encoding: bool,
    content_lengths: usize,
    /// The last `Content-Length` value, when it is plain digits (`None`: a list, or not a number).
    content_length: Option<u64>,
    /// `Connection` tokens.
    close: bool,
    keep_alive: bool,
}

impl Seen {
    /// Notes a field; `false` when it is not to be kept in the map: a `Connection` that names no header (only
    /// `close` or `keep-alive`: what it says is noted here) and `Keep-Alive`. Both are hop-by-hop, and the
    /// response path would only remove them again, a hash and a removal each (most servers send them on every
    /// response). A `Connection` that names other headers stays, for those to be removed with it.
    fn field(&mut self, name: &HeaderName, value: &[u8]) -> bool {
        if *name == header::CONTENT_LENGTH {
            self.content_lengths += 1;
            self.content_length = parse_digits(value.trim_ascii());
        } else if *name == header::TRANSFER_ENCODING {
            self.transfer_encoding = true;
        } else if *name == header::CONNECTION {
            let mut names_others = false;
            for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                let close = token.eq_ignore_ascii_case(b"close");
                let keep_alive = token.eq_ignore_ascii_case(b"keep-alive");
                self.close |= close;
                self.keep_alive |= keep_alive;
                names_others |= !(close || keep_alive || token.is_empty());
            }
            return names_others;
        } else if name.as_str() == "keep-alive" {
            return false;
        }
        true
    }
}

/// RFC 9112 §6.3, for a response.
fn framing(
    status: StatusCode,
    headers: &mut HeaderMap,
    head_request: bool,
    seen: &Seen,
) -> Result<In, Error> {
    if head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(In::Empty);
    }
    if seen.transfer_encoding {
        let mut codings = headers
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|c| !c.is_empty());
        let only_chunked = codings
            .next()
            .is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"))
            && codings.next().is_none();
        if !only_chunked {
            return Err(Error::Head("transfer coding other than chunked"));
        }
        // Transfer-Encoding overrides Content-Length, which must not reach the client beside a new framing.
        headers.remove(header::CONTENT_LENGTH);
        return Ok(In::Chunked);
    }
    // No Content-Length, or one plain value (the usual case): nothing to look up or rewrite. Anything else
    // (a list, several fields, not a number) takes the whole check below.
    match (seen.content_lengths, seen.content_length) {
        (0, _) => return Ok(In::UntilClose),
        (1, Some(0)) => return Ok(In::Empty),
        (1, Some(n)) => return Ok(In::Length(n)),
        _ => {}
    }
    let mut length: Option<u64> = None;
    for v in headers.get_all(header::CONTENT_LENGTH) {
        for part in v.as_bytes().split(|&b| b == b',') {
            let n = parse_digits(part.trim_ascii()).ok_or(Error::Head("invalid Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(Error::Head("conflicting Content-Length values"));
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(0) => In::Empty,
        Some(n) => {
            // One value, as it goes to the client.
            if headers.get_all(header::CONTENT_LENGTH).iter().count() > 1
                || headers
                    .get(header::CONTENT_LENGTH)
                    .is_some_and(|v| v.as_bytes().contains(&b','))
            {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
            }
            In::Length(n)
        }
        None => In::UntilClose,
    })
}

/// Decimal digits only (no sign, no space), at most 19 of them.
fn parse_digits(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Result<Option<Head>, Error> {
        parse(&mut BytesMut::from(raw), false)
    }

    #[test]
    fn a_head_splits_off_and_keeps_what_follows() {
        let mut buf =
            BytesMut::from("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\nhiNEXT");
        let h = parse(&mut buf, false).unwrap().unwrap();
        assert_eq!(h.status, 200);
        assert_eq!(h.body, In::Length(2));
        assert!(h.keep_alive);
        assert_eq!(h.headers["x-a"], "b");
        assert_eq!(&buf[..], b"hiNEXT");
    }

    #[test]
    fn many_fields_all_arrive_in_order() {
        // More fields than the parser keeps on the stack (24), repeated names among them.
        let mut raw = String::from("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n");
        for i in 0..60 {
            raw.push_str(&format!("X-F{}: v{i}\r\n", i % 30));
        }
        raw.push_str("\r\n");
        let h = head(&raw).unwrap().unwrap();
        assert_eq!(h.headers.len(), 61);
        let values: Vec<_> = h.headers.get_all("x-f7").iter().collect();
        assert_eq!(values, ["v7", "v37"]);
    }

    #[test]
    fn connection_fields_that_name_no_header_are_noted_not_kept() {
        let h = head("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nContent-Length: 0\r\nX-A: b\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.keep_alive);
        assert_eq!(h.headers.len(), 2, "{:?}", h.headers);
        assert!(!h.headers.contains_key(header::CONNECTION));
        assert!(!h.headers.contains_key("keep-alive"));
        let h = head("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive);
        assert!(!h.headers.contains_key(header::CONNECTION));
        // One that names a header stays, for that header to be removed with it; so does `upgrade`.
        let h = head("HTTP/1.1 200 OK\r\nConnection: close, X-Secret\r\nX-Secret: s\r\nContent-Length: 0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive);
        assert_eq!(h.headers[header::CONNECTION], "close, X-Secret");
        let h = head(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.headers[header::CONNECTION], "Upgrade");
    }

    #[test]
    fn a_partial_head_waits() {
        assert!(head("HTTP/1.1 200 OK\r\nContent-Le").unwrap().is_none());
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let b = |raw| head(raw).unwrap().unwrap().body;
        assert_eq!(
            b("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"),
            In::Empty
        );
        assert_eq!(b("HTTP/1.1 200 OK\r\n\r\n"), In::UntilClose);
        assert_eq!(
            b("HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\n"),
            In::Length(3)
        );
        let h = head("HTTP/1.1 200 OK\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.body, In::Chunked);
        assert!(
            !h.headers.contains_key(header::CONTENT_LENGTH),
            "TE wins, CL goes"
        );
        let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n");
        assert_eq!(parse(&mut buf, true).unwrap().unwrap().body, In::Empty);
        // One plain value (read as the fields go by) and the shapes that take the whole check.
        assert_eq!(b("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), In::Empty);
        assert_eq!(
            b("HTTP/1.1 200 OK\r\nContent-Length:  12 \r\n\r\n"),
            In::Length(12)
        );
        for raw in [
            "HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
        ] {
            let h = head(raw).unwrap().unwrap();
            assert_eq!(h.body, In::Length(3), "{raw:?}");
            let values: Vec<_> = h.headers.get_all(header::CONTENT_LENGTH).iter().collect();
            assert_eq!(values, ["3"], "one value goes on: {raw:?}");
        }
    }

    #[test]
    fn smuggling_shapes_are_refused() {
        for raw in [
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 0x3\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
            "HTTP/1.1 200 OK\r\nBad Name: a\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
        ] {
            assert!(head(raw).is_err(), "{raw:?} must be refused");
        }
    }

    #[test]
    fn keep_alive_by_version() {
        let k = |raw| head(raw).unwrap().unwrap().keep_alive;
        assert!(!k(
            "HTTP/1.1 200 OK\r\nConnection: foo, close\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(!k("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(k(
            "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(!k(
            "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(k(
            "HTTP/1.0 200 OK\r\nconnection: foo,keep-alive\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(k("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
    }

    #[test]
    fn added_fields_follow_the_maps() {
        use crate::headers::added::Field;
        let req = Request::builder()
            .uri("/x")
            .header("host", "example.com")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let mut added = Added::default();
        added.set(Field::RequestId, HeaderValue::from_static("id-1"));
        added.set(Field::ForwardedFor, HeaderValue::from_static("203.0.113.9"));
        let mut out = Vec::new();
        assert_eq!(encode(&req, &added, &mut out), Out::Empty);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /x HTTP/1.1\r\nhost: example.com\r\nx-forwarded-for: 203.0.113.9\r\nx-request-id: id-1\r\n\r\n"
        );
    }

    #[test]
    fn request_heads_say_their_framing() {
        let mut out = Vec::new();
        let req = Request::post("/a?b")
            .header("host", "x")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        assert_eq!(encode(&req, &Added::default(), &mut out), Out::Empty);
        assert_eq!(
            out,
            b"POST /a?b HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n"
        );
        let req = Request::get("/")
            .body(http_body_util::Full::new(Bytes::from_static(b"abc")))
            .unwrap();
        assert_eq!(encode(&req, &Added::default(), &mut out), Out::Length(3));
        let req = Request::put("/")
            .body(http_body_util::StreamBody::new(
                futures_util::stream::empty::<
                    Result<http_body::Frame<Bytes>, std::convert::Infallible>,
                >(),
            ))
            .unwrap();
        assert_eq!(encode(&req, &Added::default(), &mut out), Out::Chunked);
        assert!(out.ends_with(b"transfer-encoding: chunked\r\n\r\n"));
    }
}
