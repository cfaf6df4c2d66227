//! The local store's one locking policy and its one way to run blocking
//! work.
//!
//! # Locks
//!
//! - State that blocking code changes (a run's files and counters, its
//!   users, its recent commits, retention's cache, the disk's health) is
//!   behind a `std::sync::Mutex`, taken with [`lock`] and never held across
//!   an `.await`. Such a lock is held only by code that leaves its data
//!   consistent at every point a panic can happen (changes are made after
//!   the writes they record), so a poisoned lock is recovered, not
//!   propagated: one panicking task must not take the run down for every
//!   other caller.
//! - Order that spans awaits (the prepare lock of a run, the listing, the
//!   retention pass) is a `tokio::sync::Mutex`, which cannot be poisoned.
//! - Where two locks of a run are held at once, `inner` is taken before
//!   `life`, never the other way round; `recent` and a run's group sync
//!   (`group_sync`) are taken alone or under `inner`, and the group sync's
//!   lock is never held while its files sync.
//!
//! # Blocking work
//!
//! File I/O runs on tokio's blocking pool through [`blocking`], never on a
//! runtime thread; a task that panics there becomes
//! [`StoreError::TaskFailed`]. Reads for followers go through
//! [`blocking_read`], at most [`READ_CONCURRENCY`] at once: a thousand
//! followers reading at the same moment would otherwise start as many
//! threads, each with its stack and allocator arena, for no more
//! throughput. Writes never wait behind them.

use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::Semaphore;

use crate::error::{Result, StoreError};

/// Locks `mutex`, recovering it when a panic poisoned it (see the module
/// doc for why that is sound here).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `work` on the blocking pool and returns what it returned.
///
/// # Errors
///
/// What `work` returned, or [`StoreError::TaskFailed`] when it panicked.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| StoreError::TaskFailed(err.to_string()))?
}

/// The most follower reads on the blocking pool at once.
pub(crate) const READ_CONCURRENCY: usize = 32;

/// The permits of [`blocking_read`], shared by every store in the process.
static READS: Semaphore = Semaphore::const_new(READ_CONCURRENCY);

/// Runs a follower's read like [`blocking`], once one of
/// [`READ_CONCURRENCY`] permits is free.
///
/// The wait and the work run in a task of their own, which takes the
/// permit and gives it back by itself: a follow stream is polled only
/// while its HTTP/2 window has room, and a permit handed to a stream that
/// is not polled would be held for as long as its follower does not read.
///
/// # Errors
///
/// What `work` returned, or [`StoreError::TaskFailed`] when it panicked.
pub(crate) async fn blocking_read<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::spawn(async move {
        let _permit = READS
            .acquire()
            .await
            .expect("the read semaphore is never closed");
        blocking(work).await
    })
    .await
    .map_err(|err| StoreError::TaskFailed(err.to_string()))?
}
