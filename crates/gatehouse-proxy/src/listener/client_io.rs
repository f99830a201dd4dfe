//! The client socket, wrapped to feed two things hyper does not do for us, from the bytes it reads anyway:
//! the watchdog's head clock ([`crate::conn::Clock::head_bytes`]: bytes of a new request head started to
//! arrive) and the head scanner ([`crate::conn::HeadScan`]: a head with both Content-Length and
//! Transfer-Encoding). HTTP/2 connections (client preface `PRI `) are left to the idle clock, since their
//! bytes between requests are control frames, not heads.

use crate::conn::{Conn, HeadScan};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub struct ClientIo<S = TcpStream> {
    inner: S,
    conn: Arc<Conn>,
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
    pub fn new(inner: S, conn: Arc<Conn>, h2: bool) -> Self {
        ClientIo {
            inner,
            conn,
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
        conn: Arc<Conn>,
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
            conn.clock.head_bytes();
        }
        let mut io = ClientIo {
            inner,
            conn,
            prefix: Some(bytes::Bytes::copy_from_slice(&buf[..n])),
            h2,
            scan: HeadScan::default(),
        };
        if !h2 && io.scan.ambiguous_in(&buf[..n], io.conn.clock.started()) {
            io.conn.framing.mark();
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
        if !new.is_empty() && !this.h2 && !this.conn.clock.busy() && !this.conn.framing.is_tunnel()
        {
            this.conn.clock.head_bytes();
            if this.scan.ambiguous_in(new, this.conn.clock.started()) {
                this.conn.framing.mark();
            }
        }
        res
    }
}

/// Notes on the connection's send clock whether a write could proceed (the watchdog cuts a client that
/// reads nothing for `send_timeout`).
fn note<T>(clock: &crate::conn::Clock, r: Poll<T>) -> Poll<T> {
    match &r {
        Poll::Pending => clock.write_blocked(),
        Poll::Ready(_) => clock.write_moved(),
    }
    r
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ClientIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        note(
            &this.conn.clock,
            Pin::new(&mut this.inner).poll_write(cx, buf),
        )
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        note(
            &this.conn.clock,
            Pin::new(&mut this.inner).poll_write_vectored(cx, bufs),
        )
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        note(&this.conn.clock, Pin::new(&mut this.inner).poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
