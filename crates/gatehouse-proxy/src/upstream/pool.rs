//! Idle upstream connections, per server address.
//!
//! A connection is taken out for one request and put back only when that request's response body has been
//! read to its end (the response body returns its [`Lease`]); one cut short is dropped, which closes it. The list is
//! LIFO so that surplus connections go idle at the bottom and age out. Each worker thread has its own list
//! (a connection's I/O task runs on the worker that opened it), so the short lock is never contended.
//!
//! An HTTP/1.1 connection idle for [`PARK_AFTER`] is *parked*, as client connections are: its buffers are
//! freed and only the socket stays in the pool. The next request that finds no live connection takes a parked
//! one up again ([`super::connect::resume`]), after checking that the server has not closed it meanwhile. A
//! burst that left hundreds of connections idle then costs their sockets, not their buffers.

use super::io::UpstreamIo;
use super::sender::Sender;
use gatehouse_balance::now_ms;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long an HTTP/1.1 connection sits idle in the pool, with its buffers, before it is parked.
pub const PARK_AFTER: Duration = Duration::from_secs(1);

/// One worker's idle connections.
#[derive(Debug, Default)]
struct Idle {
    /// Ready senders (HTTP/1.1: lent one at a time; HTTP/2: shared), and since when each is idle.
    live: Vec<(Sender, Instant)>,
    /// Parked HTTP/1.1 sockets, and since when each is idle (`now_ms`), oldest first.
    parked: Vec<(UpstreamIo, u64)>,
}

#[derive(Debug)]
pub struct ConnPool {
    /// One list per worker thread.
    idle: Box<[Mutex<Idle>]>,
}

impl ConnPool {
    pub fn new(workers: usize) -> Self {
        ConnPool {
            idle: (0..workers.max(1))
                .map(|_| Mutex::new(Idle::default()))
                .collect(),
        }
    }

    /// This worker's idle lists.
    fn mine(&self) -> std::sync::MutexGuard<'_, Idle> {
        let list = &self.idle[crate::worker::current() % self.idle.len()];
        list.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A ready idle connection not older than `idle_timeout`, if any. An HTTP/2 connection is shared: a
    /// handle holding one of its streams is returned and the connection stays in the pool; one whose streams
    /// are all in use is passed over (a new connection will be opened beside it).
    pub fn checkout(&self, idle_timeout: Duration) -> Option<Sender> {
        let mut idle = self.mine();
        let live = &mut idle.live;
        // A pool holds one kind of connection (its key says HTTP/2 or not).
        if live.last().is_some_and(|(s, _)| s.is_h2()) {
            live.retain(|(s, _)| !s.is_closed());
            return live.iter().find_map(|(s, _)| s.share());
        }
        // HTTP/1.1: last in, first out, so surplus connections age out at the bottom.
        while let Some((sender, since)) = live.pop() {
            if since.elapsed() < idle_timeout && sender.is_ready() {
                return Some(sender);
            }
        }
        None
    }

    /// A parked socket not older than `idle_timeout` that the server has not closed, if any (the most
    /// recently parked first), for [`super::connect::resume`]; tried when no live connection is left.
    pub fn unpark(&self, idle_timeout: Duration) -> Option<UpstreamIo> {
        let now = now_ms();
        let mut idle = self.mine();
        while let Some((io, since)) = idle.parked.pop() {
            if usable(&io, since, now, idle_timeout) {
                return Some(io);
            }
        }
        None
    }

    /// Offers a new HTTP/2 connection to other requests on this worker (beside the ones it has: each
    /// takes as many streams as its server allows).
    pub fn share_h2(&self, sender: &Sender) {
        if let Some(pooled) = sender.pooled() {
            self.mine().live.push((pooled, Instant::now()));
        }
    }

    /// Keeps an HTTP/1.1 connection whose response was read to its end for a later request; drops it when
    /// the pool is full. (HTTP/2 connections stay in the pool while lent; upgrades' are never pooled.)
    pub fn put(&self, sender: Sender, max_idle: usize) {
        if matches!(sender, Sender::H1(_)) && max_idle > 0 {
            self.push(sender, max_idle);
        }
    }

    fn push(&self, sender: Sender, max_idle: usize) {
        let mut idle = self.mine();
        if idle.live.len() < max_idle {
            idle.live.push((sender, Instant::now()));
        }
    }

    /// How many connections are idle with hyper's state (`live`: HTTP/2 ones too) and parked, over every
    /// worker: for `/status`.
    pub fn idle_counts(&self) -> (usize, usize) {
        self.idle.iter().fold((0, 0), |(live, parked), list| {
            let idle = list.lock().unwrap_or_else(|e| e.into_inner());
            (live + idle.live.len(), parked + idle.parked.len())
        })
    }

    /// Drops connections idle for longer than `idle_timeout` or closed by the server, and parks HTTP/1.1
    /// ones idle for [`PARK_AFTER`]: only the socket is kept, at most `max_idle` of them per worker.
    pub fn sweep(&self, idle_timeout: Duration, max_idle: usize) {
        let now = now_ms();
        for list in &self.idle {
            let mut idle = list.lock().unwrap_or_else(|e| e.into_inner());
            // A shared HTTP/2 connection stays while open (its own keep-alive decides); HTTP/1.1 ones age out.
            idle.live.retain(|(s, since)| {
                !s.is_closed() && (s.is_h2() || since.elapsed() < idle_timeout)
            });
            let to_park: Vec<_> = idle
                .live
                .extract_if(.., |(s, since)| {
                    matches!(s, Sender::H1(_)) && since.elapsed() >= PARK_AFTER
                })
                .collect();
            let Idle { parked, .. } = &mut *idle;
            for (s, since) in to_park {
                if let Sender::H1(conn) = s {
                    let since_ms = now.saturating_sub(since.elapsed().as_millis() as u64);
                    parked.push((conn.into_io(), since_ms));
                    // Its buffers were just freed: worth a purge after many (`connections_released`).
                    crate::conn::released();
                }
            }
            // Oldest first: beyond max_idle, the ones idle longest go.
            parked.retain(|(io, since)| usable(io, *since, now, idle_timeout));
            let excess = parked.len().saturating_sub(max_idle);
            parked.drain(..excess);
        }
    }
}

/// Whether a parked socket idle since `since` (`now_ms`) may still serve: not older than `idle_timeout`, and
/// neither closed nor written to by the server meanwhile.
fn usable(io: &UpstreamIo, since: u64, now: u64, idle_timeout: Duration) -> bool {
    now.saturating_sub(since) < idle_timeout.as_millis() as u64 && io.is_quiet()
}

/// A connection lent to one request: an HTTP/2 handle (holding its stream until the response ends), or the
/// place an HTTP/1.1 connection goes back to (its response body holds it meanwhile).
#[derive(Debug)]
pub struct Lease {
    pub sender: Sender,
    pub pool: Arc<ConnPool>,
    pub max_idle: usize,
}

impl Lease {
    /// The response was read to its end: the HTTP/1.1 connection it gave back, if any, returns to the pool.
    pub fn release(self, conn: Option<Box<super::h1::H1Conn>>) {
        if let Some(conn) = conn {
            self.pool.put(Sender::H1(conn), self.max_idle);
        }
    }
}
