//! 4'. After a 101 Switching Protocols (WebSocket and any other allowed Upgrade), the two connections become
//! a plain byte tunnel. It holds the request's exchange — so the connection counts as open for graceful
//! shutdown, the server's in-flight unit is held (least_conn sees long-lived sockets), and the request's end is
//! reported when the tunnel closes, with the bytes that went through it. A tunnel with no bytes either way
//! for the route's `tunnel_idle_timeout` is closed.

use crate::context::{EndReason, PendingUpgrade};
use crate::exchange::Exchange;
use gatehouse_balance::now_ms;
use hyper_util::rt::TokioIo;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub fn spawn(pending: PendingUpgrade, x: Exchange) {
    tokio::spawn(async move {
        let PendingUpgrade {
            client,
            upstream,
            in_flight,
            idle_timeout,
        } = pending;
        let _in_flight = in_flight;
        let mut x = x;
        let joined = tokio::try_join!(
            async { client.await.map_err(|e| (EndReason::ClientAbort, e)) },
            async { upstream.await.map_err(|e| (EndReason::UpstreamError, e)) },
        );
        let (client, upstream) = match joined {
            Ok(both) => both,
            Err((reason, e)) => {
                tracing::debug!(error = %e, ?reason, "upgrade did not complete");
                return x.end(reason);
            }
        };
        let last = AtomicU64::new(now_ms());
        let (up, down) = (AtomicU64::new(0), AtomicU64::new(0));
        // Which side's I/O failed first, if one did: 1 the client's, 2 the upstream's.
        let failed = AtomicU8::new(0);
        let mut client = Active {
            io: TokioIo::new(client),
            last: &last,
            read: &up,
            failed: &failed,
            side: 1,
        };
        let mut upstream = Active {
            io: TokioIo::new(upstream),
            last: &last,
            read: &down,
            failed: &failed,
            side: 2,
        };
        let reason = tokio::select! {
            r = tokio::io::copy_bidirectional(&mut client, &mut upstream) => match r {
                Ok(_) => EndReason::Complete,
                Err(e) => {
                    tracing::debug!(error = %e, "tunnel ended");
                    match failed.load(Relaxed) {
                        2 => EndReason::UpstreamError,
                        _ => EndReason::ClientAbort,
                    }
                }
            },
            () = idle(&last, idle_timeout) => {
                tracing::debug!(?idle_timeout, "tunnel idle for tunnel_idle_timeout; closing");
                EndReason::Complete
            }
        };
        let ctx = x.ctx_mut();
        ctx.bytes_in.add(up.load(Relaxed));
        ctx.bytes_out += down.load(Relaxed);
        tracing::debug!(
            bytes_up = up.load(Relaxed),
            bytes_down = down.load(Relaxed),
            "tunnel closed"
        );
        x.end(reason);
    });
}

/// Resolves once nothing has moved for `timeout`.
async fn idle(last: &AtomicU64, timeout: Duration) {
    let timeout_ms = timeout.as_millis() as u64;
    loop {
        let quiet = now_ms().saturating_sub(last.load(Relaxed));
        if quiet >= timeout_ms {
            return;
        }
        tokio::time::sleep(Duration::from_millis(timeout_ms - quiet)).await;
    }
}

/// One side of the tunnel, noting when bytes last moved, how many it read, and whether its I/O failed.
struct Active<'a, T> {
    io: T,
    last: &'a AtomicU64,
    read: &'a AtomicU64,
    failed: &'a AtomicU8,
    side: u8,
}

impl<T> Active<'_, T> {
    fn note<R>(&self, r: &Poll<std::io::Result<R>>) {
        if let Poll::Ready(Err(_)) = r {
            let _ = self.failed.compare_exchange(0, self.side, Relaxed, Relaxed);
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Active<'_, T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        self.note(&r);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.last.store(now_ms(), Relaxed);
            self.read.fetch_add(n as u64, Relaxed);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Active<'_, T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        self.note(&r);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.last.store(now_ms(), Relaxed);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
