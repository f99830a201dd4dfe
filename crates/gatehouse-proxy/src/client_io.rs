//! The client socket, wrapped to note when the bytes of a new request head start to arrive.
//!
//! hyper's own header timer also runs while a keep-alive connection sits idle, which would make the idle
//! timeout meaningless; so the listener's watchdog keeps both clocks instead: *idle* (nothing in flight, no
//! bytes) and *head* (bytes of a request arrived, but no complete head yet). This wrapper feeds the second with
//! one atomic store per read that starts a head. HTTP/2 connections (client preface `PRI `) are left to the
//! idle clock, since their bytes between requests are control frames, not heads.
//!
//! It also reads each HTTP/1 request head once, byte by byte, for one thing hyper hides: a head carrying both
//! Content-Length and Transfer-Encoding. hyper then (as RFC 9112 allows) drops Content-Length and closes after
//! the response; the service never sees the conflict. Gatehouse refuses such a request with 400 instead, the
//! request-smuggling shape that no backend should be asked to interpret.

use crate::listener::ConnInfo;
use gatehouse_balance::now_ms;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub struct ClientIo<S = TcpStream> {
    inner: S,
    info: Arc<ConnInfo>,
    /// Bytes read before hyper took over (to tell HTTP/2 from HTTP/1), handed to hyper first.
    prefix: Option<bytes::Bytes>,
    h2: bool,
    scan: HeadScan,
}

/// The HTTP/2 client preface starts with these bytes; no HTTP/1 method does.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

impl<S> ClientIo<S> {
    /// Wraps a stream whose protocol is already known (TLS: chosen by ALPN).
    /// The head clock starts with the first bytes read, as on a plain connection.
    pub fn new(inner: S, info: Arc<ConnInfo>, h2: bool) -> Self {
        ClientIo {
            inner,
            info,
            prefix: None,
            h2,
            scan: HeadScan::default(),
        }
    }
}

impl ClientIo<TcpStream> {
    /// Reads the first bytes of the connection to tell HTTP/2 (prior knowledge) from HTTP/1.
    /// Returns the wrapped socket and whether it speaks HTTP/2; `None` if the client closed first.
    pub async fn accept(
        mut inner: TcpStream,
        info: Arc<ConnInfo>,
    ) -> std::io::Result<Option<(ClientIo, bool)>> {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 16];
        let mut n = 0;
        // Read until the bytes either start the preface's first 3 bytes or cannot.
        while n < 3 {
            let got = inner.read(&mut buf[n..]).await?;
            if got == 0 {
                return Ok(None);
            }
            n += got;
            if !H2_PREFACE.starts_with(&buf[..n.min(3)]) {
                break;
            }
        }
        let h2 = buf[..n].starts_with(&H2_PREFACE[..3]);
        if !h2 {
            info.head_started_ms.store(now_ms(), Relaxed);
        }
        let mut io = ClientIo {
            inner,
            info,
            prefix: Some(bytes::Bytes::copy_from_slice(&buf[..n])),
            h2,
            scan: HeadScan::default(),
        };
        if !h2 {
            let started = io.info.started.load(Relaxed);
            if io.scan.ambiguous_in(&buf[..n], started) {
                io.info.ambiguous_framing.store(true, Relaxed);
            }
        }
        Ok(Some((io, h2)))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ClientIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if let Some(prefix) = this.prefix.as_mut() {
            // Bytes read to choose the protocol: already scanned in accept().
            let n = prefix.len().min(buf.remaining());
            buf.put_slice(&prefix.split_to(n));
            if prefix.is_empty() {
                this.prefix = None;
            }
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        let new = &buf.filled()[before..];
        if !new.is_empty() && !this.h2 && this.info.active.load(Relaxed) == 0 {
            {
                if this.info.head_started_ms.load(Relaxed) == 0 {
                    this.info.head_started_ms.store(now_ms(), Relaxed);
                }
                let started = this.info.started.load(Relaxed);
                if this.scan.ambiguous_in(new, started) {
                    this.info.ambiguous_framing.store(true, Relaxed);
                }
            }
        }
        res
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ClientIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Finds request heads with both Content-Length and Transfer-Encoding, reading each head's bytes once.
#[derive(Debug, Default)]
struct HeadScan {
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
    fn ambiguous_in(&mut self, bytes: &[u8], started: u32) -> bool {
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
    use super::HeadScan;

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
}
