//! Idle upstream HTTP/1.1 connections, per server address.
//!
//! A connection is taken out for one request and put back only when that request's response body has been
//! read to its end (see [`crate::body::ResponseBody`]); one cut short is dropped, which closes it. The list is
//! LIFO so that surplus connections go idle at the bottom and age out. Each worker thread has its own list
//! (a connection's I/O task runs on the worker that opened it), so the short lock is never contended.

use crate::body::RequestBody;
use hyper::client::conn::http1::SendRequest;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Sender = SendRequest<RequestBody>;

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

    /// A ready idle connection not older than `idle_timeout`, if any.
    pub fn checkout(&self, idle_timeout: Duration) -> Option<Sender> {
        let mut idle = self.mine().lock().unwrap_or_else(|e| e.into_inner());
        while let Some((sender, since)) = idle.pop() {
            if sender.is_ready() && since.elapsed() < idle_timeout {
                return Some(sender);
            }
        }
        None
    }

    /// Keeps `sender` for a later request, once it is ready again; drops it when the pool is full or closed.
    pub fn put(self: &Arc<Self>, mut sender: Sender, max_idle: usize) {
        if sender.is_closed() || max_idle == 0 {
            return;
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
            idle.retain(|(s, since)| !s.is_closed() && since.elapsed() < idle_timeout);
        }
    }

    pub fn idle_count(&self) -> usize {
        self.idle
            .iter()
            .map(|l| l.lock().map_or(0, |v| v.len()))
            .sum()
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
