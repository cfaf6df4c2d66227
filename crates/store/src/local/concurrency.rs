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
//!   `life`, never the other way round; `recent` is taken alone or under
//!   `inner`.
//!
//! # Blocking work
//!
//! File I/O runs on tokio's blocking pool through [`blocking`], never on a
//! runtime thread; a task that panics there becomes
//! [`StoreError::TaskFailed`].

use std::sync::{Mutex, MutexGuard, PoisonError};

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
