//! Gives freed memory back to the system after waves of idle connections.
//!
//! A burst of clients holds hyper's buffers (about 16 KiB each) until their connections park or close; then
//! the allocator keeps the freed pages, and the process's RSS stays at the burst's peak. Neither allocator
//! returns them soon on its own (jemalloc purges as it allocates, so not while everything is idle; glibc only
//! when asked), so this asks — from the control thread, at most every [`EVERY`], and only after at least
//! [`AFTER`] connections parked or closed since the last time: a busy proxy whose connections stay busy never
//! pays for it.
//!
//! The allocator is jemalloc by default (the binary's `jemalloc` feature). glibc's malloc, without it, carves
//! the few hundred bytes each parked connection keeps out of the freed buffers, so those pages stay resident
//! however often it trims: see `docs/benchmarks.md` for the figures.

use std::time::Duration;

/// How often the trimmer looks (connections park 1 s after their last request: their memory is back within
/// 2 s of it).
const EVERY: Duration = Duration::from_secs(1);
/// Connections parked or closed since the last trim that make the next one worth its cost.
const AFTER: u64 = 256;

/// Starts the trimmer on the control runtime: both allocators release every thread's free pages from one call.
pub fn start(control: &tokio::runtime::Handle) {
    control.spawn(trimmer());
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

#[cfg(feature = "jemalloc")]
#[allow(unsafe_code)] // the one FFI call; the workspace denies unsafe code everywhere else
fn trim() {
    // 4096 is MALLCTL_ARENAS_ALL: every arena's unused dirty and muzzy pages go back to the system.
    const PURGE_ALL: &[u8] = b"arena.4096.purge\0";
    // SAFETY: a "void" mallctl: the name is NUL-terminated, and it reads and writes nothing (all null, 0).
    let rc = unsafe {
        tikv_jemalloc_sys::mallctl(
            PURGE_ALL.as_ptr().cast(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        )
    };
    if rc != 0 {
        tracing::debug!(rc, "jemalloc purge failed");
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu", not(feature = "jemalloc")))]
#[allow(unsafe_code)] // the one FFI call; the workspace denies unsafe code everywhere else
fn trim() {
    // SAFETY: malloc_trim only walks and releases glibc's own free lists; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(any(feature = "jemalloc", all(target_os = "linux", target_env = "gnu"))))]
fn trim() {}
