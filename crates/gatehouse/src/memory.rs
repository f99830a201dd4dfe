//! Gives freed memory back to the system after waves of idle connections.
//!
//! A burst of clients holds hyper's buffers (about 16 KiB each) until their connections park or close; then
//! the allocator keeps the freed pages, scattered between the few bytes each parked connection still holds,
//! and the process's RSS stays at the burst's peak. glibc returns such pages only when asked
//! (`malloc_trim`), so this asks — from the control thread, at most every [`EVERY`], and only after at
//! least [`AFTER`] connections parked or closed since the last time: a busy proxy whose connections stay
//! busy never pays for it.

use std::time::Duration;

/// How often the trimmer looks.
const EVERY: Duration = Duration::from_secs(2);
/// Connections parked or closed since the last trim that make the next one worth its cost.
const AFTER: u64 = 256;

/// Starts the trimmer: glibc trims every thread's arena from one call (the control runtime's); mimalloc's
/// heaps are per thread, so each worker trims its own.
pub fn start(control: &tokio::runtime::Handle, workers: &[tokio::runtime::Handle]) {
    if cfg!(feature = "mimalloc") {
        for w in workers {
            w.spawn(trimmer());
        }
    } else {
        control.spawn(trimmer());
    }
}

async fn trimmer() {
    let mut last = gatehouse_proxy::listener::connections_released();
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = gatehouse_proxy::listener::connections_released();
        if now.saturating_sub(last) >= AFTER {
            last = now;
            trim();
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu", not(feature = "mimalloc")))]
#[allow(unsafe_code)] // the one FFI call; the workspace denies unsafe code everywhere else
fn trim() {
    // SAFETY: malloc_trim only walks and releases glibc's own free lists; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(feature = "mimalloc")]
#[allow(unsafe_code)] // the one FFI call
fn trim() {
    // SAFETY: mi_collect releases the calling thread's free pages; it has no preconditions.
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
}

#[cfg(not(any(feature = "mimalloc", all(target_os = "linux", target_env = "gnu"))))]
fn trim() {}
