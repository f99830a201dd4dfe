//! The one framing fact hyper hides: a request head carrying both Content-Length and Transfer-Encoding.
//! hyper then (as RFC 9112 allows) drops Content-Length and closes after the response; the service never sees
//! the conflict. Gatehouse refuses such a request with 400 instead — the request-smuggling shape that no
//! backend should be asked to interpret — so the listener's socket wrapper feeds every head's bytes, once, to a
//! [`HeadScan`], and a found conflict is left in the connection's [`FramingFlag`] for the request to read.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// Set when the head being served had both framing headers.
#[derive(Debug, Default)]
pub struct FramingFlag {
    ambiguous: AtomicBool,
    /// The connection became a tunnel: its bytes are no longer HTTP.
    tunnel: AtomicBool,
}

impl FramingFlag {
    pub fn mark(&self) {
        self.ambiguous.store(true, Relaxed);
    }

    /// Whether the flag was set, clearing it (one request reads it).
    pub fn take(&self) -> bool {
        self.ambiguous.load(Relaxed) && self.ambiguous.swap(false, Relaxed)
    }

    /// The connection was upgraded: stop scanning its bytes for heads.
    pub fn tunnel(&self) {
        self.tunnel.store(true, Relaxed);
    }

    pub fn is_tunnel(&self) -> bool {
        self.tunnel.load(Relaxed)
    }
}

/// Finds request heads with both Content-Length and Transfer-Encoding, reading each head's bytes once.
#[derive(Debug, Default)]
pub struct HeadScan {
    /// Bytes of the current line seen so far (CR not counted).
    line_len: usize,
    /// Which header names the current line may still be: bit 0 content-length, bit 1 transfer-encoding.
    candidates: u8,
    found: u8,
    /// A head ended and its request has not started yet: bytes now are its body, not a head.
    done_at: Option<u32>,
}

const NAMES: [&[u8]; 2] = [b"content-length:", b"transfer-encoding:"];

impl HeadScan {
    /// Feeds bytes read while no request runs; `started` counts requests started on the connection.
    /// Returns true when a head that just ended had both headers.
    pub fn ambiguous_in(&mut self, bytes: &[u8], started: u32) -> bool {
        if let Some(at) = self.done_at {
            if at == started {
                return false;
            }
            self.done_at = None;
            self.line_len = 0;
            self.found = 0;
        }
        let mut ambiguous = false;
        for &b in bytes {
            match b {
                b'\r' => {}
                b'\n' => {
                    if self.line_len == 0 {
                        // Blank line: end of the head.
                        ambiguous |= self.found == 0b11;
                        self.done_at = Some(started);
                        return ambiguous;
                    }
                    self.line_len = 0;
                }
                _ => {
                    if self.line_len == 0 {
                        self.candidates = 0b11;
                    }
                    let lower = b.to_ascii_lowercase();
                    for (i, name) in NAMES.iter().enumerate() {
                        let bit = 1 << i;
                        if self.candidates & bit != 0 {
                            if name.get(self.line_len) != Some(&lower) {
                                self.candidates &= !bit;
                            } else if self.line_len + 1 == name.len() {
                                self.found |= bit;
                                self.candidates &= !bit;
                            }
                        }
                    }
                    self.line_len += 1;
                }
            }
        }
        ambiguous
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_both_framing_headers_across_reads_once_per_head() {
        let mut s = HeadScan::default();
        assert!(!s.ambiguous_in(b"POST / HTTP/1.1\r\nContent-LENGTH: 5\r\nTransfer-", 0));
        assert!(s.ambiguous_in(b"Encoding: chunked\r\n\r\n0\r\n\r\n", 0));
        // The body that follows is not a head, until the next request starts.
        assert!(!s.ambiguous_in(b"Content-Length: 1\r\nTransfer-Encoding: x\r\n\r\n", 0));
        assert!(!s.ambiguous_in(
            b"GET / HTTP/1.1\r\nContent-Length: 0\r\nX-Transfer-Encoding: 1\r\n\r\n",
            1
        ));
        assert!(!s.ambiguous_in(b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 2));
    }

    #[test]
    fn the_flag_is_read_once() {
        let f = FramingFlag::default();
        assert!(!f.take());
        f.mark();
        assert!(f.take());
        assert!(!f.take());
    }
}
