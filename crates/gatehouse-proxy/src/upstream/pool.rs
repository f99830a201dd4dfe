//! Idle upstream HTTP/1.1 connections, per server address.
//!
//! A connection is taken out for one request and put back only when that request's response body has been
//! read to its end (the response body returns its [`Lease`]); one cut short is dropped, which closes it. The list is
//! LIFO so that surplus connections go idle at the bottom and age out. Each worker thread has its own list
//! (a connection's I/O task runs on the worker that opened it), so the short lock is never contended.

use super::sender::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Idle = Mutex<Vec<(Sender, Instant)>>;

#[derive(Debug)]
pub struct ConnPool {
    /// One list per worker thread.
    idle: Box<[Idle]>,
}

impl ConnPool {
    pub fn new(workers: usize) -> Self {
        ConnPool {
            idle: (0..workers.max(1))
                .map(|_| Mutex::new(Vec::new()))
                .collect(),
        }
    }

    /// This worker's idle list.
    fn mine(&self) -> &Idle {
        &self.idle[crate::worker::current() % self.idle.len()]
    }

    /// A ready idle connection not older than `idle_timeout`, if any. An HTTP/2 connection is shared: a
    /// handle holding one of its streams is returned and the connection stays in the pool; one whose streams
    /// are all in use is passed over (a new connection will be opened beside it).
    pub fn checkout(&self, idle_timeout: Duration) -> Option<Sender> {
        let mut idle = self.mine().lock().unwrap_or_else(|e| e.into_inner());
        // A pool holds one kind of connection (its key says HTTP/2 or not).
        if idle.last().is_some_and(|(s, _)| s.is_h2()) {
            idle.retain(|(s, _)| !s.is_closed());
            return idle.iter().find_map(|(s, _)| s.share());
        }
        // HTTP/1.1: last in, first out, so surplus connections age out at the bottom.
        while let Some((sender, since)) = idle.pop() {
            if sender.is_ready() && since.elapsed() < idle_timeout {
                return Some(sender);
            }
        }
        None
    }

    /// Offers a new HTTP/2 connection to other requests on this worker (beside the ones it has: each
    /// takes as many streams as its server allows).
    pub fn share_h2(&self, sender: &Sender) {
        if let Some(pooled) = sender.pooled() {
            let mut idle = self.mine().lock().unwrap_or_else(|e| e.into_inner());
            idle.push((pooled, Instant::now()));
        }
    }

    /// Keeps `sender` for a later request, once it is ready again; drops it when the pool is full or closed.
    pub fn put(self: &Arc<Self>, mut sender: Sender, max_idle: usize) {
        if sender.is_closed() || max_idle == 0 || sender.is_h2() {
            return; // HTTP/2 connections stay in the pool while lent; nothing to give back.
        }
        if sender.is_ready() {
            self.push(sender, max_idle);
            return;
        }
        // The connection task has not yet seen the end of the previous exchange; wait for it off the hot path.
        let pool = self.clone();
        tokio::spawn(async move {
            if sender.ready().await.is_ok() {
                pool.push(sender, max_idle);
            }
        });
    }

    fn push(&self, sender: Sender, max_idle: usize) {
        let mut idle = self.mine().lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < max_idle {
            idle.push((sender, Instant::now()));
        }
    }

    /// Drops connections idle for longer than `idle_timeout` or closed by the server.
    pub fn sweep(&self, idle_timeout: Duration) {
        for list in &self.idle {
            let mut idle = list.lock().unwrap_or_else(|e| e.into_inner());
            // A shared HTTP/2 connection stays while open (its own keep-alive decides); HTTP/1.1 ones age out.
            idle.retain(|(s, since)| {
                !s.is_closed() && (s.is_h2() || since.elapsed() < idle_timeout)
            });
        }
    }
}

/// A connection lent to one request; [`Lease::release`] returns it to the pool.
#[derive(Debug)]
pub struct Lease {
    pub sender: Sender,
    pub pool: Arc<ConnPool>,
    pub max_idle: usize,
}

impl Lease {
    pub fn release(self) {
        self.pool.put(self.sender, self.max_idle);
    }
}
