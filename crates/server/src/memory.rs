//! Giving the memory of followers that went back to the system.
//!
//! The C library's allocator keeps memory freed in the middle of its
//! heaps: a thousand followers that read a large run and went can leave
//! hundreds of MiB resident that nothing uses, for as long as the process
//! lives, and so can uploads and downloads (a few MiB of pieces each). So
//! every [`TRIM_INTERVAL`], when such streams ended since the last look, a
//! task trims the heaps (`malloc_trim`, on the blocking
//! pool), which hands their free pages back. With another C library the
//! task does nothing.
//!
//! [`tune_allocator`] keeps the allocator from handing large buffers (an
//! object's 1 MiB pieces) back to the system as soon as they are freed.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How often the task looks whether follow streams ended.
pub(crate) const TRIM_INTERVAL: Duration = Duration::from_secs(5);

/// Starts the task, which reads how many streams ended from `ended`; it
/// stops when `token` is cancelled.
pub(crate) fn spawn_trim(ended: impl Fn() -> u64 + Send + 'static, token: CancellationToken) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(TRIM_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = ended();
        loop {
            tokio::select! {
                () = token.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let now = ended();
            if now != last {
                last = now;
                let _ = tokio::task::spawn_blocking(trim).await;
            }
        }
    });
}

/// Hands the allocator's free pages back to the system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: `malloc_trim` only walks the allocator's own free lists under
    // its locks; it takes no pointer and is safe from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Nothing to do with this C library.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

/// Buffers up to this size come from the allocator's heaps, not from
/// mappings of their own.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 4 << 20;

/// Free memory at the top of a heap is handed back past this size.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 16 << 20;

/// Makes the C library's allocator keep buffers of up to 4 MiB in its
/// heaps. By default it maps each buffer over 128 KiB on its own and unmaps
/// it when freed (raising that bound only slowly), so every 1 MiB piece of
/// an upload or a download cost 256 page faults and the zeroing of fresh
/// pages: a quarter of a download's CPU time. The heaps are still trimmed
/// past 16 MiB of free memory at their top, and by the task above once
/// transfers end.
/// Called once, before the runtime starts.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune_allocator() {
    // SAFETY: `mallopt` sets two of the allocator's parameters under its
    // lock; it takes no pointer. It runs before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}

/// Nothing to do with this C library.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune_allocator() {}
