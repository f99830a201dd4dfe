//! A response body read straight off the server's socket by whoever polls it (the client connection's
//! task): each frame is a slice of the read buffer, no copy, no channel. When the body ends where its
//! framing says, with nothing unasked after it, the connection is handed back ([`Body::take_finished`]).

use super::{Error, H1Conn};
use crate::upstream::body::BoxError;
use bytes::{Buf, Bytes};
use http_body::{Frame, SizeHint};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

/// The longest chunk-size line (with extensions) and the most trailer bytes taken (then dropped).
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Debug)]
pub struct Body {
    conn: Option<Box<H1Conn>>,
    state: State,
    /// The server keeps the connection after this response.
    keep_alive: bool,
    /// Ended cleanly and reusable: the connection waits here for [`Body::take_finished`].
    finished: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Length(u64),
    /// Waiting for a chunk-size line.
    ChunkSize,
    /// Inside a chunk, this many bytes left.
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    /// After the last chunk: trailer lines until an empty one, this many bytes so far.
    Trailers(usize),
    UntilClose,
    Done,
}

impl Body {
    pub(super) fn new(conn: Box<H1Conn>, framing: super::head::In, keep_alive: bool) -> Body {
        use super::head::In;
        let state = match framing {
            In::Empty => State::Done,
            In::Length(n) => State::Length(n),
            In::Chunked => State::ChunkSize,
            In::UntilClose => State::UntilClose,
        };
        let mut body = Body {
            conn: Some(conn),
            state,
            keep_alive: keep_alive && state != State::UntilClose,
            finished: false,
        };
        if state == State::Done {
            body.done();
        }
        body
    }

    /// The connection, once the body was read to its end and the server keeps it open.
    pub fn take_finished(&mut self) -> Option<Box<H1Conn>> {
        if self.finished {
            self.conn.take()
        } else {
            None
        }
    }

    fn done(&mut self) {
        self.state = State::Done;
        // Bytes past the end of the response were sent unasked: such a connection is not reused.
        self.finished = self.keep_alive && self.conn.as_ref().is_some_and(|c| c.buf.is_empty());
        if !self.finished {
            self.conn = None;
        }
    }

    fn fail(&mut self, e: Error) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.state = State::Done;
        self.conn = None;
        Poll::Ready(Some(Err(Box::new(e))))
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match this.state {
                State::Done => return Poll::Ready(None),
                State::Length(left) | State::ChunkData(left) if !conn.buf.is_empty() => {
                    let n = left.min(conn.buf.len() as u64);
                    let data = conn.buf.split_to(n as usize).freeze();
                    let left = left - n;
                    match this.state {
                        State::Length(_) if left == 0 => this.done(),
                        State::Length(_) => this.state = State::Length(left),
                        _ if left == 0 => this.state = State::ChunkEnd,
                        _ => this.state = State::ChunkData(left),
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                State::UntilClose if !conn.buf.is_empty() => {
                    let data = conn.buf.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                State::ChunkSize => match chunk_size(&conn.buf) {
                    Ok(Some((line, 0))) => {
                        conn.buf.advance(line);
                        this.state = State::Trailers(0);
                        continue;
                    }
                    Ok(Some((line, size))) => {
                        conn.buf.advance(line);
                        this.state = State::ChunkData(size);
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => return this.fail(e),
                },
                State::ChunkEnd if conn.buf.len() >= 2 => {
                    if &conn.buf[..2] != b"\r\n" {
                        return this.fail(Error::Chunk("no CRLF after a chunk's data"));
                    }
                    conn.buf.advance(2);
                    this.state = State::ChunkSize;
                    continue;
                }
                State::Trailers(seen) => match conn.buf.windows(2).position(|w| w == b"\r\n") {
                    Some(0) => {
                        conn.buf.advance(2);
                        this.done();
                        return Poll::Ready(None);
                    }
                    // Trailer fields are dropped: the request never said it takes them (TE is hop-by-hop).
                    Some(i) if seen + i + 2 <= MAX_TRAILERS => {
                        conn.buf.advance(i + 2);
                        this.state = State::Trailers(seen + i + 2);
                        continue;
                    }
                    Some(_) => return this.fail(Error::Chunk("trailers too large")),
                    None if seen + conn.buf.len() > MAX_TRAILERS => {
                        return this.fail(Error::Chunk("trailers too large"))
                    }
                    None => {}
                },
                _ => {}
            }
            // More bytes are needed.
            if conn.buf.len() > MAX_CHUNK_LINE && this.state == State::ChunkSize {
                return this.fail(Error::Chunk("chunk-size line too long"));
            }
            let n = match ready!(conn.poll_fill(cx)) {
                Ok(n) => n,
                Err(e) => return this.fail(Error::Io(e)),
            };
            if n == 0 {
                if this.state == State::UntilClose {
                    this.keep_alive = false;
                    this.done();
                    return Poll::Ready(None);
                }
                return this.fail(Error::Incomplete);
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.state == State::Done
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Done => SizeHint::with_exact(0),
            State::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

/// A complete chunk-size line at the start of `buf`: its length with the CRLF, and the size. Hex digits
/// (at most 16), then optional whitespace and `;extensions`, then CRLF; anything else is refused (a bare LF
/// too: lenient chunk parsing is how bodies are smuggled).
fn chunk_size(buf: &[u8]) -> Result<Option<(usize, u64)>, Error> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        if buf.contains(&b'\n') {
            return Err(Error::Chunk("bare LF in a chunk-size line"));
        }
        return Ok(None);
    };
    let line = &buf[..end];
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(Error::Chunk("invalid chunk size"));
    }
    let rest = line[digits..].trim_ascii_start();
    if !(rest.is_empty() || rest[0] == b';') || line.contains(&b'\n') {
        return Err(Error::Chunk("invalid chunk size"));
    }
    let hex =
        std::str::from_utf8(&line[..digits]).map_err(|_| Error::Chunk("invalid chunk size"))?;
    let size = u64::from_str_radix(hex, 16).map_err(|_| Error::Chunk("invalid chunk size"))?;
    Ok(Some((end + 2, size)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_size_lines() {
        assert_eq!(chunk_size(b"1a\r\nxx").unwrap(), Some((4, 26)));
        assert_eq!(chunk_size(b"0;ext=1\r\n").unwrap(), Some((9, 0)));
        assert_eq!(chunk_size(b"A \r\n").unwrap(), Some((4, 10)));
        assert_eq!(chunk_size(b"1a").unwrap(), None);
        for bad in [
            &b"\r\n"[..],
            b"-1\r\n",
            b"0x1\r\n",
            b"1 2\r\n",
            b"1\n",
            b"11111111111111111\r\n",
        ] {
            assert!(chunk_size(bad).is_err(), "{bad:?}");
        }
    }
}
