//! Gatehouse's own HTTP/1.1 client for upstream connections, driven by the request that leased the
//! connection: the request's task writes the head and body, reads the response head, and the response body
//! is read off the socket by the task that writes it to the client. No connection task, no channel, no
//! wake-up handed between tasks; hyper's client (a task per connection, a oneshot per request and a channel
//! per body) stays for upgrades, which it hands over as a tunnel.
//!
//! * [`head`]: the request head out, the response head in, and the response's framing (RFC 9112 §6.3);
//! * [`body`]: the response body, decoded (length, chunked, until close) as it is polled.
//!
//! An idle connection is a socket and two buffers; the pool frees the buffers when it parks it.

pub mod body;
pub mod head;

use super::body::{BoxError, RequestBody};
use super::io::UpstreamIo;
use super::request::UpRequest;
use bytes::{Buf, BytesMut};
use http::{Method, Response};
use http_body::Body as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::AsyncWrite;
use tokio::time::{Instant, Sleep};

/// The most a response head may take, and the buffer that holds it (the rest waits in the socket).
const MAX_HEAD: usize = super::connect::UPSTREAM_MAX_BUF;
/// The first read of a response; reads grow to [`MAX_READ`] while each fills what it was given.
const MIN_READ: usize = 8 * 1024;
const MAX_READ: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the server closed the connection before responding")]
    Closed,
    #[error("the server closed the connection in the middle of its response")]
    Incomplete,
    #[error("{0}")]
    Head(&'static str),
    #[error("response head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("chunked body: {0}")]
    Chunk(&'static str),
    #[error("request body sent {sent} bytes, its length said {said}")]
    BodyLength { sent: u64, said: u64 },
    /// The client's side of the body failed (too large, stalled, broken): see `phases::send::blame`.
    #[error("{0}")]
    Body(#[source] BoxError),
    /// No response head within `response_timeout`.
    #[error("no response within the response timeout")]
    TimedOut,
}

/// One HTTP/1.1 connection to a server.
#[derive(Debug)]
pub struct H1Conn {
    io: UpstreamIo,
    /// What was read and not yet used: the response head, then body bytes.
    buf: BytesMut,
    /// The request head being written.
    out: Vec<u8>,
    /// Size of the next read (see [`MIN_READ`]).
    read_size: usize,
    /// Served a request before: the server may have closed it as the request went.
    reused: bool,
    /// The response clock, kept for the connection's life: moving a registered timer later is one atomic
    /// store, where a timer per request is a registration in the runtime's timer wheel and a removal.
    timer: Option<Pin<Box<Sleep>>>,
    /// The clock runs for the exchange under way (until its response head).
    timed: bool,
}

/// Why a request got no response head.
#[derive(Debug)]
pub enum SendError {
    /// Nothing the server could act on was sent: the request, untouched, for another connection.
    NotSent(Box<UpRequest>, Error),
    /// Written, and no response head came: final for a request with a body; one without comes back, and may
    /// go to another server if it is idempotent (the caller decides).
    Failed(Error, Option<Box<UpRequest>>),
}

impl H1Conn {
    /// A connection just opened; `reused` for one taken up again after parking.
    pub fn new(io: UpstreamIo, reused: bool) -> Box<H1Conn> {
        Box::new(H1Conn {
            io,
            buf: BytesMut::new(),
            out: Vec::new(),
            read_size: MIN_READ,
            reused,
            timer: None,
            timed: false,
        })
    }

    /// The socket alone, for parking: the buffers are freed.
    pub fn into_io(self) -> UpstreamIo {
        self.io
    }

    /// Whether an idle connection may take a request: nothing unread, and the server has neither closed it
    /// nor written to it.
    pub fn is_usable(&self) -> bool {
        self.buf.is_empty() && self.io.is_quiet()
    }

    /// Starts the response clock: it runs out `within` from now.
    fn arm(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        match self.timer.as_mut() {
            Some(t) => t.as_mut().reset(deadline),
            None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
        self.timed = true;
    }

    /// Ready with [`Error::TimedOut`] once the response clock of the exchange under way has run out.
    fn poll_clock(&mut self, cx: &mut Context<'_>) -> Poll<Error> {
        match self.timer.as_mut() {
            Some(t) if self.timed => {
                std::future::Future::poll(t.as_mut(), cx).map(|()| Error::TimedOut)
            }
            _ => Poll::Pending,
        }
    }

    /// Reads more of the response into `buf`; `Ok(0)` at the server's end of stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < self.read_size {
            self.buf.reserve(self.read_size);
        }
        let spare = self.buf.capacity() - self.buf.len();
        let r = tokio_util::io::poll_read_buf(std::pin::Pin::new(&mut self.io), cx, &mut self.buf);
        if let Poll::Ready(Ok(n)) = r {
            if n == spare && self.read_size < MAX_READ {
                self.read_size *= 2;
            }
        }
        r
    }
}

/// Sends `req` on `conn` and reads the response head; the response's body holds the connection. With
/// `within`, the whole exchange gets that long (the response clock, when the request body is complete).
pub async fn send(
    mut conn: Box<H1Conn>,
    mut req: Box<UpRequest>,
    within: Option<Duration>,
) -> Result<Response<body::Body>, SendError> {
    if let Some(within) = within {
        conn.arm(within);
    }
    let reused = std::mem::replace(&mut conn.reused, true);
    let framing = head::encode(&req, req.added(), &mut conn.out);
    let head_request = req.method() == Method::HEAD;
    let bodiless = framing == head::Out::Empty;
    // The write waits for the worker's next turn (tokio defers a yield until after its next I/O poll): the
    // requests a turn parsed go up together, after the answers it wrote. Written at once, each send wakes a
    // backend that, on a small machine, preempts the worker mid-turn (10x the involuntary context switches,
    // 0.87x requests/s; docs/benchmarks.md).
    tokio::task::yield_now().await;
    match write_head(&mut conn, bodiless).await {
        Ok(()) => {}
        // The server could not have read a request from a connection that failed this early; a new one
        // was never reused, so its failure is the server's (NotSent moves on to another server).
        Err(Error::Io(e)) => return Err(SendError::NotSent(req, Error::Io(e))),
        Err(e) => return Err(SendError::Failed(e, None)),
    }
    let got = if bodiless {
        read_head(&mut conn, head_request).await
    } else {
        let body = req.body_mut().take();
        send_body_and_read_head(&mut conn, body, framing, head_request).await
    };
    conn.timed = false;
    match got {
        Ok((head, early)) => {
            let keep_alive = head.keep_alive && !early;
            let mut resp = Response::new(body::Body::new(conn, head.body, keep_alive));
            *resp.status_mut() = head.status;
            *resp.version_mut() = head.version;
            *resp.headers_mut() = head.headers;
            Ok(resp)
        }
        // A reused connection the server closed as the request went: an idempotent request without a body
        // goes again on another connection (the server read nothing it acted on).
        Err(Error::Closed) if reused && bodiless && is_idempotent(req.method()) => {
            Err(SendError::NotSent(req, Error::Closed))
        }
        Err(e) => Err(SendError::Failed(e, bodiless.then_some(req))),
    }
}

/// Idempotent (RFC 9110 §9.2.2): a request the server may receive twice with the effect of once.
pub fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Writes the request head (and flushes it when no body follows), within the response clock.
async fn write_head(conn: &mut H1Conn, flush: bool) -> Result<(), Error> {
    let mut written = 0;
    std::future::poll_fn(|cx| {
        let H1Conn { io, out, .. } = &mut *conn;
        let mut io = Pin::new(io);
        let moved = loop {
            if written == out.len() {
                match flush {
                    true => break io.as_mut().poll_flush(cx),
                    false => return Poll::Ready(Ok(())),
                }
            }
            match io.as_mut().poll_write(cx, &out[written..]) {
                Poll::Ready(Ok(0)) => break Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => written += n,
                other => break other.map_ok(|_| ()),
            }
        };
        match moved {
            Poll::Ready(r) => Poll::Ready(r.map_err(Error::Io)),
            Poll::Pending => conn.poll_clock(cx).map(Err),
        }
    })
    .await
}

/// Reads until a final response head (1xx ones other than 101 are dropped, as hyper does). The bool says
/// the response came before the request body was all sent (always false here).
async fn read_head(conn: &mut H1Conn, head_request: bool) -> Result<(head::Head, bool), Error> {
    std::future::poll_fn(|cx| poll_head(conn, head_request, cx))
        .await
        .map(|h| (h, false))
}

fn poll_head(
    conn: &mut H1Conn,
    head_request: bool,
    cx: &mut Context<'_>,
) -> Poll<Result<head::Head, Error>> {
    loop {
        if !conn.buf.is_empty() {
            if let Some(h) = head::parse(&mut conn.buf, head_request)? {
                if h.status.is_informational() && h.status != http::StatusCode::SWITCHING_PROTOCOLS
                {
                    continue;
                }
                return Poll::Ready(Ok(h));
            }
            if conn.buf.len() >= MAX_HEAD {
                return Poll::Ready(Err(Error::HeadTooLarge));
            }
        }
        let filled = match conn.poll_fill(cx) {
            Poll::Ready(r) => r,
            Poll::Pending => return conn.poll_clock(cx).map(Err),
        };
        match filled {
            Ok(0) if conn.buf.is_empty() => return Poll::Ready(Err(Error::Closed)),
            Ok(0) => return Poll::Ready(Err(Error::Incomplete)),
            Ok(_) => {}
            // A reset before any byte of a response is the same as a close for the request's sake.
            Err(e) if conn.buf.is_empty() && is_reset(&e) => {
                return Poll::Ready(Err(Error::Closed))
            }
            Err(e) => return Poll::Ready(Err(Error::Io(e))),
        }
    }
}

fn is_reset(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    // UnexpectedEof: a TLS connection closed without close_notify.
    matches!(
        e.kind(),
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
    )
}

/// Streams the request body while watching for the response: a server may answer before the body is all
/// there (a 413, a redirect), and then the rest is not sent, and the connection not reused.
async fn send_body_and_read_head(
    conn: &mut H1Conn,
    body: RequestBody,
    framing: head::Out,
    head_request: bool,
) -> Result<(head::Head, bool), Error> {
    let mut body = std::pin::pin!(body);
    let mut sent = 0u64;
    let mut finished = false;
    let mut pending: Option<bytes::Bytes> = None;
    let mut tail: &'static [u8] = b"";
    std::future::poll_fn(|cx| {
        // The response first: it ends the exchange whatever the body does.
        if let Poll::Ready(r) = poll_head(conn, head_request, cx) {
            return Poll::Ready(r.map(|h| (h, !finished)));
        }
        loop {
            // Write what is pending, then the next frame.
            if let Some(data) = pending.as_mut() {
                while data.has_remaining() {
                    let n =
                        std::task::ready!(std::pin::Pin::new(&mut conn.io).poll_write(cx, data))?;
                    if n == 0 {
                        return Poll::Ready(Err(Error::Io(std::io::ErrorKind::WriteZero.into())));
                    }
                    data.advance(n);
                }
                pending = None;
            }
            if !tail.is_empty() {
                let n = std::task::ready!(std::pin::Pin::new(&mut conn.io).poll_write(cx, tail))?;
                tail = &tail[n..];
                continue;
            }
            if finished {
                std::task::ready!(std::pin::Pin::new(&mut conn.io).poll_flush(cx))?;
                // All sent: only the response is left (poll_head registered for it above, or does now).
                return poll_head(conn, head_request, cx).map(|r| r.map(|h| (h, false)));
            }
            match std::task::ready!(body.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue; // trailers: not forwarded (see body.rs)
                    };
                    if data.is_empty() {
                        continue;
                    }
                    sent += data.len() as u64;
                    pending = Some(match framing {
                        head::Out::Chunked => chunk(&data),
                        _ => data,
                    });
                    if let head::Out::Length(said) = framing {
                        if sent > said {
                            return Poll::Ready(Err(Error::BodyLength { sent, said }));
                        }
                    }
                }
                Some(Err(e)) => return Poll::Ready(Err(Error::Body(e))),
                None => {
                    finished = true;
                    match framing {
                        head::Out::Length(said) if sent != said => {
                            return Poll::Ready(Err(Error::BodyLength { sent, said }))
                        }
                        head::Out::Chunked => tail = b"0\r\n\r\n",
                        _ => {}
                    }
                }
            }
        }
    })
    .await
}

/// One chunk of a chunked body: size line, data, CRLF (one copy of the data; chunked uploads are rare next
/// to ones with a length, which go as they come).
fn chunk(data: &[u8]) -> bytes::Bytes {
    let mut out = Vec::with_capacity(data.len() + 20);
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out.into()
}
