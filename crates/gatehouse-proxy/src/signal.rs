//! A one-shot signal that many tasks wait on: the proxy's shutdown, a listener's stop. Fired once (or when its
//! [`Trigger`] is dropped), it stays fired.
//!
//! Why not `tokio::sync::watch`: a connection's task polls its shutdown wait on every wake-up (a `select!` polls
//! every branch), and a pending `watch::Receiver::changed()` takes the channel's waiter lock on each poll: 538
//! instructions per keep-alive request, and 433 per accepted connection in the accept loop (callgrind,
//! docs/benchmarks.md). Here a wait takes the lock once, to register its waker; polling it again is an atomic
//! load and a waker comparison.

use slab::Slab;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

struct Inner {
    fired: AtomicBool,
    /// The wakers of the waits registered (pending at their last poll).
    waiters: Mutex<Slab<Waker>>,
}

impl Inner {
    fn waiters(&self) -> MutexGuard<'_, Slab<Waker>> {
        // A waker that panicked while the lock was held leaves the list whole: go on with it.
        self.waiters.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Fires the signal: on [`Trigger::fire`], or when dropped.
pub struct Trigger(Arc<Inner>);

/// A handle to wait on the signal with; cloned freely.
#[derive(Clone)]
pub struct Signal(Arc<Inner>);

impl Trigger {
    /// A new, unfired signal and its trigger.
    pub fn new() -> (Trigger, Signal) {
        let inner = Arc::new(Inner {
            fired: AtomicBool::new(false),
            waiters: Mutex::new(Slab::new()),
        });
        (Trigger(inner.clone()), Signal(inner))
    }

    /// Another handle to wait on this trigger's signal.
    pub fn signal(&self) -> Signal {
        Signal(self.0.clone())
    }

    /// Fires the signal and wakes every wait on it (again is harmless).
    pub fn fire(&self) {
        self.0.fired.store(true, SeqCst);
        for (_, w) in self.0.waiters().iter() {
            w.wake_by_ref();
        }
    }
}

impl Drop for Trigger {
    fn drop(&mut self) {
        self.fire();
    }
}

impl std::fmt::Debug for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trigger")
            .field("fired", &self.0.fired.load(SeqCst))
            .finish()
    }
}

impl std::fmt::Debug for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signal")
            .field("fired", &self.is_fired())
            .finish()
    }
}

impl Signal {
    pub fn is_fired(&self) -> bool {
        self.0.fired.load(SeqCst)
    }

    /// A future ready once the signal has fired.
    pub fn wait(&self) -> Wait<'_> {
        Wait {
            inner: &self.0,
            slot: None,
        }
    }
}

/// Waits for a [`Signal`]; see [`Signal::wait`].
pub struct Wait<'a> {
    inner: &'a Inner,
    /// Where this wait's waker is registered, and a copy of it to compare the next poll's with.
    slot: Option<(usize, Waker)>,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.inner.fired.load(SeqCst) {
            return Poll::Ready(());
        }
        let this = &mut *self;
        match &mut this.slot {
            // The same task polling again (always, for a task's own wait): nothing to change.
            Some((_, waker)) if waker.will_wake(cx.waker()) => return Poll::Pending,
            Some((key, waker)) => {
                waker.clone_from(cx.waker());
                if let Some(w) = this.inner.waiters().get_mut(*key) {
                    w.clone_from(cx.waker());
                }
            }
            None => {
                let key = this.inner.waiters().insert(cx.waker().clone());
                this.slot = Some((key, cx.waker().clone()));
            }
        }
        // Registered before looking again: a fire that came first is seen here, one that comes after wakes us.
        if self.inner.fired.load(SeqCst) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        if let Some((key, _)) = self.slot.take() {
            self.inner.waiters().try_remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn poll_once(w: &mut Wait<'_>) -> Poll<()> {
        std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *w).poll(cx))).await
    }

    #[tokio::test]
    async fn a_wait_ends_when_fired_from_another_thread_and_a_fired_signal_stays_fired() {
        let (trigger, signal) = Trigger::new();
        let waiting = {
            let signal = signal.clone();
            tokio::spawn(async move { signal.wait().await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "ended before the signal");
        std::thread::spawn(move || trigger.fire()).join().unwrap();
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the wait ended")
            .unwrap();
        assert!(signal.is_fired());
        signal.wait().await;
    }

    #[tokio::test]
    async fn dropping_the_trigger_fires_and_dropped_waits_leave_no_waker_behind() {
        let (trigger, signal) = Trigger::new();
        for _ in 0..100 {
            let mut w = signal.wait();
            assert!(poll_once(&mut w).await.is_pending());
            assert!(poll_once(&mut w).await.is_pending());
        }
        assert_eq!(signal.0.waiters().len(), 0);
        let waiting = {
            let signal = signal.clone();
            tokio::spawn(async move { signal.wait().await })
        };
        tokio::task::yield_now().await;
        drop(trigger);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the wait ended")
            .unwrap();
    }
}
