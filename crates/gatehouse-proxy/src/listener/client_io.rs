//! The client socket, wrapped to feed what hyper does not do for us, from the bytes it moves anyway:
//! the watchdog's head clock ([`crate::conn::Clock::head_bytes`]: bytes of a new request head started to
//! arrive) and send clock (a write that cannot proceed: the client is not reading), and the framing scanner
//! ([`crate::conn::HeadScan`]: heads with both Content-Length and Transfer-Encoding, pipelined ones too; a
//! request line over `max_request_target`, answered 414 here before hyper would say 431). HTTP/2 connections
//! (client preface `PRI `) are left to the idle clock and hyper, since their bytes are frames, not heads.
//!
//! It also lets an idle HTTP/1 connection *park* (see `serve.rs`): while [`Conn::parking`] is set it reads
//! nothing more (hyper sees the end of input and ends idle) and does not shut the socket, so the wrapper comes
//! back whole from hyper; [`ClientIo::poll_wake`] then waits on the bare socket for the next request.

use crate::conn::{Conn, Found, HeadScan};
use bytes::{Buf, Bytes};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub struct ClientIo<S = TcpStream> {
    inner: S,
    conn: Arc<Conn>,
    /// Bytes read before hyper took over (to tell HTTP/2 from HTTP/1), handed to hyper first.
    prefix: Option<Bytes>,
    h2: bool,
    scan: HeadScan,
    max_target: usize,
    /// An answer written here, not by hyper (414), still to be sent; then the read side ends.
    refusal: Option<Bytes>,
}

/// The most the first read of a connection, or of a parked one waking, takes (see [`ClientIo::accept`]).
const FIRST_READ: usize = 4096;

/// The HTTP/2 client preface starts with these bytes; no HTTP/1 method does.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

const URI_TOO_LONG: &[u8] = b"HTTP/1.1 414 URI Too Long\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 17\r\nconnection: close\r\n\r\n414 URI Too Long\n";

impl<S> ClientIo<S> {
    /// Wraps a stream whose protocol is already known (TLS: chosen by ALPN).
    /// The head clock starts with the first bytes read, as on a plain connection.
    pub fn new(inner: S, conn: Arc<Conn>, h2: bool, max_target: usize) -> Self {
        ClientIo {
            inner,
            conn,
            prefix: None,
            h2,
            scan: HeadScan::default(),
            max_target,
            refusal: None,
        }
    }

    /// Runs the framing scanner over bytes just read; `true` when the read must end here (a 414 to send).
    fn scan(&mut self, bytes: &[u8]) -> bool {
        if self.h2 || self.conn.framing.is_tunnel() {
            return false;
        }
        let found = self.scan.feed(bytes, self.max_target);
        self.conn
            .framing
            .set_between_messages(self.scan.between_messages());
        match found {
            Found::Nothing => false,
            Found::Ambiguous(head) => {
                self.conn.framing.mark(head);
                false
            }
            Found::TargetTooLong => {
                // Answer it ourselves only between requests (mid-response it would corrupt the stream); either
                // way hyper reads no further.
                if !self.conn.clock.busy() {
                    self.refusal = Some(Bytes::from_static(URI_TOO_LONG));
                } else {
                    self.refusal = Some(Bytes::new());
                }
                true
            }
        }
    }
}

impl<S: AsyncRead + Unpin> ClientIo<S> {
    /// Puts back bytes hyper had read and not used (its read buffer when it handed the socket back): they
    /// come first again, and were scanned already.
    pub fn unread(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        self.prefix = Some(match self.prefix.take() {
            Some(rest) if !rest.is_empty() => {
                let mut all = bytes::BytesMut::with_capacity(bytes.len() + rest.len());
                all.extend_from_slice(&bytes);
                all.extend_from_slice(&rest);
                all.freeze()
            }
            _ => bytes,
        });
    }

    /// A parked connection's wait: ready with `true` once bytes of the next request arrived (read here,
    /// through TLS when there is TLS, into a buffer just their size, and handed to the next hyper connection
    /// first), `false` when the client closed. Nothing but the socket (and its TLS session) is held while
    /// this is pending.
    pub fn poll_wake(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<bool>> {
        if self.prefix.as_ref().is_some_and(|p| !p.is_empty()) || self.refusal.is_some() {
            return Poll::Ready(Ok(true));
        }
        let mut buf = [MaybeUninit::<u8>::uninit(); FIRST_READ];
        let mut read = ReadBuf::uninit(&mut buf);
        match Pin::new(&mut self.inner).poll_read(cx, &mut read) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) if read.filled().is_empty() => Poll::Ready(Ok(false)),
            Poll::Ready(Ok(())) => {
                let got = read.filled();
                self.conn.clock.head_bytes();
                if !self.scan(got) {
                    self.prefix = Some(Bytes::copy_from_slice(got));
                }
                Poll::Ready(Ok(true))
            }
        }
    }

    /// Reads the first bytes of the connection to tell HTTP/2 (prior knowledge) from HTTP/1.
    /// Returns the wrapped socket and whether it speaks HTTP/2; `None` if the client closed first.
    pub async fn accept(
        mut inner: S,
        conn: Arc<Conn>,
        max_target: usize,
    ) -> std::io::Result<Option<(ClientIo<S>, bool)>> {
        // As much as one read gives (a whole request head, mostly): hyper then parses the head from the first
        // bytes it is handed. A read of a few bytes only made hyper read again into its 8 KiB buffer — a
        // reallocation and a copy per new connection, and one more system call. (Not zeroed first: the
        // socket writes what it reads.) The buffer lives within one poll, never across an await: in the
        // future it would make every new connection's set-up 4 KiB larger, copied when the task is boxed.
        // What a poll read and could not decide on (up to 2 bytes that start the preface) waits in `carry`.
        let mut carry = [0u8; 2];
        let mut carried = 0;
        let got = std::future::poll_fn(|cx| {
            let mut buf = [MaybeUninit::<u8>::uninit(); FIRST_READ];
            let mut read = ReadBuf::uninit(&mut buf);
            read.put_slice(&carry[..carried]);
            // Read until the bytes either start the preface's first 3 bytes or cannot.
            while read.filled().len() < 3 {
                let before = read.filled().len();
                match Pin::new(&mut inner).poll_read(cx, &mut read) {
                    Poll::Pending => {
                        carried = before;
                        carry[..before].copy_from_slice(read.filled());
                        return Poll::Pending;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Ready(Ok(())) => {}
                }
                let got = read.filled();
                if got.len() == before {
                    return Poll::Ready(Ok(None));
                }
                if !H2_PREFACE.starts_with(&got[..got.len().min(3)]) {
                    break;
                }
            }
            Poll::Ready(Ok(Some(Bytes::copy_from_slice(read.filled()))))
        })
        .await?;
        let Some(got) = got else {
            return Ok(None);
        };
        let h2 = got.starts_with(&H2_PREFACE[..3]);
        if !h2 {
            conn.clock.head_bytes();
        }
        let mut io = ClientIo::new(inner, conn, h2, max_target);
        io.scan(&got);
        io.prefix = Some(got);
        Ok(Some((io, h2)))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for ClientIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.conn.parking.load(std::sync::atomic::Ordering::Relaxed) {
            // Being parked: what the client sends next waits in the socket for the next hyper connection.
            return Poll::Ready(Ok(()));
        }
        if let Some(refusal) = this.refusal.as_mut() {
            // Send the refusal, then end the read side: hyper sees the client close mid-head.
            while refusal.has_remaining() {
                match Pin::new(&mut this.inner).poll_write(cx, refusal.chunk()) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => break,
                    Poll::Ready(Ok(n)) => refusal.advance(n),
                    Poll::Pending => return Poll::Pending,
                }
            }
            let _ = Pin::new(&mut this.inner).poll_flush(cx);
            return Poll::Ready(Ok(()));
        }
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
        if !new.is_empty() && !this.h2 {
            if !this.conn.clock.busy() {
                this.conn.clock.head_bytes();
            }
            if this.scan(new) {
                // Hyper never sees these bytes: the refusal goes out on the next read.
                buf.set_filled(before);
                cx.waker().wake_by_ref();
                return Poll::Pending;
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
        if self.conn.parking.load(std::sync::atomic::Ordering::Relaxed) {
            // hyper ended because we parked it: the socket lives on.
            return Pin::new(&mut self.inner).poll_flush(cx);
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
