//! The framing facts hyper hides or acts on too late, read from the connection's bytes as they arrive.
//!
//! * A head with both Content-Length and Transfer-Encoding: hyper then (as RFC 9112 allows) drops
//!   Content-Length and closes after the response, so the request path never sees the conflict. Gatehouse
//!   refuses such a request with 400 — the request-smuggling shape no backend should be asked to interpret —
//!   including a *pipelined* one that arrived in the same read as an earlier request.
//! * A request target longer than `max_request_target`: hyper would answer 431 once its buffer is full; the
//!   socket wrapper answers 414 itself as soon as the request line passes the limit.
//!
//! [`HeadScan`] reads every byte of an HTTP/1 connection once: heads line by line, then each body by its own
//! framing (Content-Length bytes or chunks), so a head that follows a body is found as a head. When the bytes
//! stop making sense (a malformed chunk, an upgrade) it stops: hyper refuses what it cannot parse.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};

/// What the scanner found, for the requests to read.
#[derive(Debug)]
pub struct FramingFlag {
    /// 1 + the index of the first head with both framing headers; 0 = none.
    ambiguous_from: AtomicU32,
    /// The connection was upgraded: its bytes are no longer HTTP.
    tunnel: AtomicBool,
    /// Every byte read so far belongs to whole messages (no head or body under way): where a connection
    /// may park. False once the bytes stop making sense.
    between: AtomicBool,
}

impl Default for FramingFlag {
    fn default() -> Self {
        FramingFlag {
            ambiguous_from: AtomicU32::new(0),
            tunnel: AtomicBool::new(false),
            between: AtomicBool::new(true),
        }
    }
}

impl FramingFlag {
    /// Whether the bytes read so far end where a message ends (see [`HeadScan::between_messages`]).
    pub fn between_messages(&self) -> bool {
        self.between.load(Relaxed)
    }

    /// What the scanner says after the latest read.
    pub fn set_between_messages(&self, between: bool) {
        self.between.store(between, Relaxed);
    }

    /// Head `index` (0 = the first on the connection) had both framing headers.
    pub fn mark(&self, index: u32) {
        let _ = self
            .ambiguous_from
            .compare_exchange(0, index.saturating_add(1), Relaxed, Relaxed);
    }

    /// Whether request `index`, or one before it on this connection, had both framing headers: from the
    /// first such head on, nothing on the connection can be trusted.
    pub fn is_ambiguous(&self, index: u32) -> bool {
        let from = self.ambiguous_from.load(Relaxed);
        from != 0 && from - 1 <= index
    }

    /// The connection was upgraded: stop scanning its bytes for heads.
    pub fn tunnel(&self) {
        self.tunnel.store(true, Relaxed);
    }

    pub fn is_tunnel(&self) -> bool {
        self.tunnel.load(Relaxed)
    }
}

/// What a call to [`HeadScan::feed`] found first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    Nothing,
    /// Head number `index` had both Content-Length and Transfer-Encoding.
    Ambiguous(u32),
    /// The request line of the current head is longer than the limit.
    TargetTooLong,
}

/// The start of a header line kept to recognize its name and value (framing values are short).
const LINE_KEPT: usize = 64;

#[derive(Debug, Default)]
enum State {
    /// In a head (or before one).
    #[default]
    Head,
    /// In a body of this many more bytes.
    Fixed(u64),
    /// In a chunk-size line: the size so far, and whether an extension (`;...`) started.
    ChunkSize { size: u64, digits: u8, ext: bool },
    /// In chunk data: this many more bytes, then CRLF.
    ChunkData(u64),
    /// After chunk data: expecting CR (false) or LF (true).
    ChunkEnd(bool),
    /// In the trailer section after the last chunk: the length of the current line.
    Trailers(usize),
    /// The bytes no longer make sense (or became a tunnel): stop.
    Lost,
}

/// Follows an HTTP/1 connection's framing; see the module docs.
#[derive(Debug)]
pub struct HeadScan {
    state: State,
    /// Heads completed so far.
    heads: u32,
    /// The current line: its first bytes, and its whole length (CR not counted).
    line: [u8; LINE_KEPT],
    line_len: usize,
    /// The current head has had a non-empty line (its request line).
    started: bool,
    content_length: Option<u64>,
    transfer_encoding: bool,
    /// The last Transfer-Encoding line ended in `chunked`.
    chunked: bool,
    upgrade: bool,
}

impl Default for HeadScan {
    fn default() -> Self {
        HeadScan {
            state: State::Head,
            heads: 0,
            line: [0; LINE_KEPT],
            line_len: 0,
            started: false,
            content_length: None,
            transfer_encoding: false,
            chunked: false,
            upgrade: false,
        }
    }
}

impl HeadScan {
    /// The bytes fed so far end exactly where a message ends: no head, body or chunk is under way.
    pub fn between_messages(&self) -> bool {
        matches!(self.state, State::Head) && !self.started && self.line_len == 0
    }

    /// Feeds the bytes read from the client, in order; `max_target` bounds the request line.
    pub fn feed(&mut self, bytes: &[u8], max_target: usize) -> Found {
        let mut found = Found::Nothing;
        let mut i = 0;
        while i < bytes.len() {
            match &mut self.state {
                State::Lost => return found,
                State::Fixed(n) => {
                    let take = (*n).min((bytes.len() - i) as u64);
                    *n -= take;
                    i += take as usize;
                    if *n == 0 {
                        self.state = State::Head;
                    }
                }
                State::ChunkData(n) => {
                    let take = (*n).min((bytes.len() - i) as u64);
                    *n -= take;
                    i += take as usize;
                    if *n == 0 {
                        self.state = State::ChunkEnd(false);
                    }
                }
                State::ChunkEnd(seen_cr) => {
                    self.state = match (bytes[i], *seen_cr) {
                        (b'\r', false) => State::ChunkEnd(true),
                        (b'\n', _) => State::ChunkSize {
                            size: 0,
                            digits: 0,
                            ext: false,
                        },
                        _ => State::Lost,
                    };
                    i += 1;
                }
                State::ChunkSize { size, digits, ext } => {
                    let b = bytes[i];
                    i += 1;
                    match b {
                        b'\n' => {
                            self.state = match (*digits, *size) {
                                (0, _) => State::Lost,
                                (_, 0) => State::Trailers(0),
                                (_, n) => State::ChunkData(n),
                            };
                        }
                        b'\r' => {}
                        _ if *ext => {}
                        b';' => *ext = true,
                        b' ' | b'\t' => *ext = true, // whitespace before an extension
                        _ => match (b as char).to_digit(16) {
                            Some(d) if *digits < 16 => {
                                *size = *size * 16 + u64::from(d);
                                *digits += 1;
                            }
                            _ => self.state = State::Lost, // not hex, or a size that overflows
                        },
                    }
                }
                State::Trailers(len) => {
                    let b = bytes[i];
                    i += 1;
                    match b {
                        b'\n' if *len == 0 => self.state = State::Head,
                        b'\n' => *len = 0,
                        b'\r' => {}
                        _ => *len += 1,
                    }
                }
                State::Head => {
                    // A line (or the part of one this read holds) at a time: memchr finds its end, so a head
                    // costs a few instructions per line rather than per byte (a browser's is 500 to 1000).
                    let rest = &bytes[i..];
                    let end = memchr::memchr(b'\n', rest);
                    let part = &rest[..end.unwrap_or(rest.len())];
                    i += part.len() + usize::from(end.is_some());
                    self.take_line_part(part);
                    // The request line: its target is most of it (method and version are short).
                    if !self.started && self.line_len > max_target.saturating_add(32) {
                        self.state = State::Lost;
                        return Found::TargetTooLong;
                    }
                    if end.is_some() {
                        if let Some(f) = self.end_line() {
                            if found == Found::Nothing {
                                found = f;
                            }
                        }
                    }
                }
            }
        }
        found
    }

    /// Bytes of the current head line, without its LF: CRs are dropped, the first [`LINE_KEPT`] other bytes
    /// kept, all counted.
    fn take_line_part(&mut self, mut part: &[u8]) {
        while !part.is_empty() {
            let (piece, rest) = match memchr::memchr(b'\r', part) {
                Some(cr) => (&part[..cr], &part[cr + 1..]),
                None => (part, &[][..]),
            };
            let room = LINE_KEPT.saturating_sub(self.line_len).min(piece.len());
            if room > 0 {
                self.line[self.line_len..self.line_len + room].copy_from_slice(&piece[..room]);
            }
            self.line_len += piece.len();
            part = rest;
        }
    }

    /// A head line ended (its LF was read). Returns what the head's end revealed.
    fn end_line(&mut self) -> Option<Found> {
        let len = std::mem::take(&mut self.line_len);
        if len == 0 {
            if !self.started {
                return None; // empty lines before a request line are allowed
            }
            return self.end_head();
        }
        if !self.started {
            self.started = true;
            return None;
        }
        let kept = &self.line[..len.min(LINE_KEPT)];
        let colon = kept.iter().position(|&b| b == b':')?;
        let (name, value) = (&kept[..colon], kept[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"content-length") {
            match std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
            {
                Some(n) if len <= LINE_KEPT => self.content_length = Some(n),
                // A value we cannot read: hyper will judge it; we cannot follow what comes after.
                _ => self.state = State::Lost,
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.transfer_encoding = true;
            let last = value
                .rsplit(|&b| b == b',')
                .next()
                .unwrap_or(b"")
                .trim_ascii();
            self.chunked = len <= LINE_KEPT && last.eq_ignore_ascii_case(b"chunked");
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            self.upgrade = true;
        }
        None
    }

    /// The blank line after a head: what its body is, and whether it was ambiguous.
    fn end_head(&mut self) -> Option<Found> {
        let index = self.heads;
        self.heads = self.heads.saturating_add(1);
        self.started = false;
        let (cl, te, chunked, upgrade) = (
            self.content_length.take(),
            std::mem::take(&mut self.transfer_encoding),
            std::mem::take(&mut self.chunked),
            std::mem::take(&mut self.upgrade),
        );
        if matches!(self.state, State::Lost) {
            return None;
        }
        if te && cl.is_some() {
            // Refused, and the connection closed: nothing after it matters.
            self.state = State::Lost;
            return Some(Found::Ambiguous(index));
        }
        self.state = if upgrade {
            // Bytes after an upgrade request may be another protocol's.
            State::Lost
        } else if te {
            if chunked {
                State::ChunkSize {
                    size: 0,
                    digits: 0,
                    ext: false,
                }
            } else {
                State::Lost
            }
        } else {
            match cl {
                Some(n) if n > 0 => State::Fixed(n),
                _ => State::Head,
            }
        };
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(parts: &[&[u8]]) -> Vec<Found> {
        let mut s = HeadScan::default();
        parts.iter().map(|p| s.feed(p, 8192)).collect()
    }

    #[test]
    fn between_messages_only_at_a_message_boundary() {
        let mut s = HeadScan::default();
        assert!(s.between_messages());
        s.feed(b"POST / HTTP/1.1\r\nContent-Length: 4\r\n", 8192);
        assert!(!s.between_messages(), "mid-head");
        s.feed(b"\r\nab", 8192);
        assert!(!s.between_messages(), "mid-body");
        s.feed(b"cd", 8192);
        assert!(s.between_messages());
        s.feed(
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
            8192,
        );
        assert!(!s.between_messages(), "mid-chunks");
        s.feed(b"0\r\n\r\n", 8192);
        assert!(s.between_messages());
        s.feed(b"G", 8192);
        assert!(!s.between_messages(), "a new head's first byte");
    }

    #[test]
    fn a_head_gives_the_same_verdict_however_it_is_split() {
        // Lines longer than what is kept, a CR inside a line, and the framing pair at the end.
        let long = "x".repeat(300);
        let head = format!(
            "POST /{long} HTTP/1.1\r\nX-Long: {long}\r\nX-Cr: a\rb\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        let bytes = head.as_bytes();
        let whole = scan(&[bytes]);
        assert_eq!(whole, [Found::Ambiguous(0)]);
        for at in 0..bytes.len() {
            let (a, b) = bytes.split_at(at);
            let found: Vec<Found> = scan(&[a, b])
                .into_iter()
                .filter(|f| *f != Found::Nothing)
                .collect();
            assert_eq!(found, [Found::Ambiguous(0)], "split at {at}");
        }
        // A byte at a time, and a target over the limit found as it grows.
        let mut s = HeadScan::default();
        let verdicts: Vec<Found> = bytes.iter().map(|b| s.feed(&[*b], 8192)).collect();
        assert!(verdicts.contains(&Found::Ambiguous(0)));
        let mut s = HeadScan::default();
        assert_eq!(s.feed(b"GET /", 100), Found::Nothing);
        assert_eq!(s.feed(long.as_bytes(), 100), Found::TargetTooLong);
    }

    #[test]
    fn finds_both_framing_headers_across_reads() {
        assert_eq!(
            scan(&[
                b"POST / HTTP/1.1\r\nContent-LENGTH: 5\r\nTransfer-",
                b"Encoding: chunked\r\n\r\n0\r\n\r\n"
            ]),
            [Found::Nothing, Found::Ambiguous(0)]
        );
    }

    #[test]
    fn bodies_are_skipped_so_only_heads_are_read_as_heads() {
        // A body that looks like a head is a body.
        let body = b"Content-Length: 1\r\nTransfer-Encoding: x\r\n\r\n";
        let head = format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len());
        assert_eq!(
            scan(&[head.as_bytes(), body]),
            [Found::Nothing, Found::Nothing]
        );
        // Chunked bodies too, then the next head.
        assert_eq!(
            scan(&[b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\nGET / HTTP/1.1\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n"]),
            [Found::Ambiguous(1)]
        );
    }

    #[test]
    fn a_pipelined_second_head_is_read() {
        assert_eq!(
            scan(&[b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"]),
            [Found::Ambiguous(1)]
        );
    }

    #[test]
    fn a_long_request_line_is_found_before_it_ends() {
        let mut s = HeadScan::default();
        assert_eq!(s.feed(b"GET /", 100), Found::Nothing);
        assert_eq!(s.feed(&[b'a'; 200], 100), Found::TargetTooLong);
        // Header lines may be long: only the request line is bounded.
        let mut s = HeadScan::default();
        let head = format!("GET / HTTP/1.1\r\nCookie: {}\r\n\r\n", "c".repeat(500));
        assert_eq!(s.feed(head.as_bytes(), 100), Found::Nothing);
    }

    #[test]
    fn malformed_chunks_and_upgrades_stop_the_scan() {
        for bad in [&b"zz\r\n"[..], b"fffffffffffffffff1\r\n", b"\r\n"] {
            let mut s = HeadScan::default();
            s.feed(
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                8192,
            );
            s.feed(bad, 8192);
            assert!(matches!(s.state, State::Lost), "{bad:?}");
        }
        let mut s = HeadScan::default();
        s.feed(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", 8192);
        assert!(matches!(s.state, State::Lost));
        assert_eq!(
            s.feed(&[b'x'; 20_000], 100),
            Found::Nothing,
            "tunnel bytes are never a long target"
        );
    }

    #[test]
    fn the_flag_covers_its_head_and_every_later_one() {
        let f = FramingFlag::default();
        assert!(!f.is_ambiguous(0));
        f.mark(1);
        f.mark(3);
        assert!(!f.is_ambiguous(0));
        assert!(f.is_ambiguous(1) && f.is_ambiguous(2));
    }
}
