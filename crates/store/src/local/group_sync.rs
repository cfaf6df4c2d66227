//! Group commit: one fsync covers every commit that waits for one.
//!
//! With `--sync`, a commit is acknowledged only once an fsync that started
//! after its bytes were written has completed. A disk takes about as long
//! to sync one small commit as fifty, so syncing each commit under the
//! run's lock made a run's commits queue behind one fsync each. Here a
//! commit is written under the run's lock and noted ([`GroupSync::wrote`]);
//! its writer then leaves the lock and waits ([`GroupSync::wait`]). The
//! first waiter that finds no sync under way becomes the *leader*: it takes
//! what is pending (the files written since the last sync), syncs them
//! with no lock held, and publishes that every write noted before it
//! started is synced. The writes noted while it synced wait for the next
//! leader, and are synced together: the slower the disk, the larger the
//! groups.
//!
//! A failed sync is sticky: every write it was to cover, and every write
//! after it, fails with its error, since the kernel may have dropped the
//! dirty pages it could not write back and a later sync that succeeds says
//! nothing about them (the lesson of PostgreSQL's "fsyncgate").

use std::{
    mem,
    sync::{Arc, Condvar, Mutex},
};

use super::concurrency::lock;
use crate::error::StoreError;

/// A write as [`GroupSync`] counts it: the number of writes noted up to
/// and including it. A later write has a greater ticket, and a sync that
/// covers a ticket covers every ticket before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[must_use = "a write is acknowledged only once its ticket is synced"]
pub(crate) struct Ticket(u64);

/// Why a sync failed, shared by every write it was to cover and every write
/// after it.
#[derive(Debug, Clone)]
pub(crate) struct SyncFailed(Arc<StoreError>);

impl SyncFailed {
    /// The failure `error` caused.
    pub(crate) fn new(error: StoreError) -> Self {
        Self(Arc::new(error))
    }

    /// The error to give a waiter: an I/O error keeps its kind, so that a
    /// full disk still reads as one.
    pub(crate) fn to_error(&self) -> StoreError {
        match &*self.0 {
            StoreError::Io { context, source } => StoreError::io(
                context.clone(),
                std::io::Error::new(source.kind(), source.to_string()),
            ),
            other => StoreError::TaskFailed(other.to_string()),
        }
    }
}

/// The group sync of one set of files: what was written, what is synced,
/// and whether a leader is syncing.
#[derive(Debug)]
pub(crate) struct GroupSync<P> {
    /// The counters and what the next sync covers.
    state: Mutex<SyncState<P>>,
    /// Rung when a sync ends, well or not.
    done: Condvar,
}

/// The mutable part of a [`GroupSync`].
#[derive(Debug)]
struct SyncState<P> {
    /// The ticket of the last write noted.
    written: u64,
    /// Every write up to this ticket is synced.
    synced: u64,
    /// A leader is syncing now.
    syncing: bool,
    /// Set, for good, when a sync failed.
    failed: Option<SyncFailed>,
    /// What the writes noted since the last leader started left to sync
    /// (files, counts), handed whole to the next leader.
    pending: P,
}

impl<P: Default> GroupSync<P> {
    /// Nothing written, nothing to sync.
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(SyncState {
                written: 0,
                synced: 0,
                syncing: false,
                failed: None,
                pending: P::default(),
            }),
            done: Condvar::new(),
        }
    }

    /// Notes a write that has just been made: `note` adds to the pending
    /// work what the next sync must cover. Returns the write's ticket.
    ///
    /// Call it after the write and in the order of the writes (under the
    /// lock that orders them), so that a leader that takes the pending
    /// work also covers every ticket it was noted with.
    pub(crate) fn wrote(&self, note: impl FnOnce(&mut P)) -> Ticket {
        let mut state = lock(&self.state);
        note(&mut state.pending);
        state.written += 1;
        Ticket(state.written)
    }

    /// The ticket of the last write noted: waiting for it waits for every
    /// write made so far.
    pub(crate) fn last(&self) -> Ticket {
        Ticket(lock(&self.state).written)
    }

    /// Waits until `ticket` is synced. When no sync is under way and
    /// `ticket` is not synced yet, this caller leads: it runs `sync` on the
    /// pending work, with no lock held, and publishes the result to every
    /// waiter. Blocking.
    ///
    /// `sync` runs at most once per call. Whatever it must do before the
    /// writes it covers count as synced (tell followers, say) it does
    /// before it returns.
    ///
    /// # Errors
    ///
    /// The failure of the sync that was to cover `ticket`, or of any
    /// earlier one.
    pub(crate) fn wait(
        &self,
        ticket: Ticket,
        sync: impl FnOnce(P) -> Result<(), SyncFailed>,
    ) -> Result<(), SyncFailed> {
        let mut sync = Some(sync);
        let mut state = lock(&self.state);
        loop {
            if state.synced >= ticket.0 {
                return Ok(());
            }
            if let Some(failed) = &state.failed {
                return Err(failed.clone());
            }
            if !state.syncing {
                let sync = sync
                    .take()
                    .expect("a sync that ends covers every write noted before it started");
                let target = state.written;
                let pending = mem::take(&mut state.pending);
                state.syncing = true;
                drop(state);
                return self.lead(target, pending, sync);
            }
            state = self
                .done
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// Syncs `pending`, which covers every write up to `target`, and
    /// publishes the outcome.
    fn lead(
        &self,
        target: u64,
        pending: P,
        sync: impl FnOnce(P) -> Result<(), SyncFailed>,
    ) -> Result<(), SyncFailed> {
        // Ends the sync even when `sync` panics: the waiters must not wait
        // for a leader that is gone, and the work it took is lost, so its
        // writes fail rather than count as synced.
        let mut guard = Leading {
            group: self,
            outcome: Err(SyncFailed::new(StoreError::TaskFailed(
                "a sync of the run's files panicked".to_owned(),
            ))),
            target,
        };
        guard.outcome = sync(pending);
        guard.outcome.clone()
    }
}

/// A leader's sync under way: publishes its outcome when dropped.
struct Leading<'a, P> {
    /// The group synced.
    group: &'a GroupSync<P>,
    /// What the sync came to; a failure until it returns.
    outcome: Result<(), SyncFailed>,
    /// The last ticket it covers.
    target: u64,
}

impl<P> Drop for Leading<'_, P> {
    fn drop(&mut self) {
        let mut state = lock(&self.group.state);
        state.syncing = false;
        match &self.outcome {
            Ok(()) => state.synced = state.synced.max(self.target),
            Err(failed) => {
                state.failed.get_or_insert_with(|| failed.clone());
            }
        }
        drop(state);
        self.group.done.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{
            Barrier,
            atomic::{AtomicU64, Ordering},
        },
        thread,
        time::Duration,
    };

    use super::*;

    /// Pending work that counts the writes noted.
    type Counted = GroupSync<u64>;

    fn failure() -> SyncFailed {
        SyncFailed::new(StoreError::io(
            "cannot sync journal.jsonl",
            std::io::Error::other("EIO"),
        ))
    }

    #[test]
    fn a_lone_write_is_synced_by_its_own_waiter() {
        let group = Counted::new();
        let ticket = group.wrote(|pending| *pending += 1);
        let mut covered = 0;
        group
            .wait(ticket, |pending| {
                covered = pending;
                Ok(())
            })
            .expect("synced");
        assert_eq!(covered, 1);
        // Synced already: no second sync.
        group
            .wait(ticket, |_| panic!("synced twice"))
            .expect("synced");
        assert_eq!(group.last(), ticket);
    }

    #[test]
    fn writes_noted_while_a_leader_syncs_are_synced_together_by_the_next() {
        let group = Arc::new(Counted::new());
        let first = group.wrote(|pending| *pending += 1);
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let leader = {
            let group = Arc::clone(&group);
            thread::spawn(move || {
                group.wait(first, |pending| {
                    started_tx.send(pending).expect("test alive");
                    release_rx.recv().expect("released");
                    Ok(())
                })
            })
        };
        assert_eq!(started_rx.recv().expect("leader started"), 1);
        // Three writes while the first sync is under way.
        let later: Vec<Ticket> = (0..3).map(|_| group.wrote(|p| *p += 1)).collect();
        let syncs = Arc::new(AtomicU64::new(0));
        let covered = Arc::new(AtomicU64::new(0));
        let waiters: Vec<_> = later
            .into_iter()
            .map(|ticket| {
                let (group, syncs, covered) =
                    (Arc::clone(&group), Arc::clone(&syncs), Arc::clone(&covered));
                thread::spawn(move || {
                    group.wait(ticket, |pending| {
                        syncs.fetch_add(1, Ordering::SeqCst);
                        covered.fetch_add(pending, Ordering::SeqCst);
                        Ok(())
                    })
                })
            })
            .collect();
        // Let the waiters queue behind the first sync, then end it.
        thread::sleep(Duration::from_millis(50));
        release_tx.send(()).expect("leader waits");
        leader.join().expect("leader").expect("synced");
        for waiter in waiters {
            waiter.join().expect("waiter").expect("synced");
        }
        // One of the three led a sync covering all three; the others it
        // woke found their writes covered.
        assert_eq!(syncs.load(Ordering::SeqCst), 1);
        assert_eq!(covered.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn many_writers_share_fewer_syncs_than_writes() {
        const THREADS: usize = 8;
        const WRITES: usize = 200;
        let group = Arc::new(Counted::new());
        let syncs = Arc::new(AtomicU64::new(0));
        let synced = Arc::new(AtomicU64::new(0));
        let barrier = Arc::new(Barrier::new(THREADS));
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let (group, syncs, synced, barrier) = (
                    Arc::clone(&group),
                    Arc::clone(&syncs),
                    Arc::clone(&synced),
                    Arc::clone(&barrier),
                );
                thread::spawn(move || {
                    barrier.wait();
                    for _ in 0..WRITES {
                        let ticket = group.wrote(|p| *p += 1);
                        group
                            .wait(ticket, |pending| {
                                syncs.fetch_add(1, Ordering::SeqCst);
                                synced.fetch_add(pending, Ordering::SeqCst);
                                // A disk's sync takes time; writes pile up.
                                thread::sleep(Duration::from_millis(1));
                                Ok(())
                            })
                            .expect("synced");
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("writer");
        }
        let writes = (THREADS * WRITES) as u64;
        // Every write was covered by exactly one sync...
        assert_eq!(synced.load(Ordering::SeqCst), writes);
        // ...and syncs were shared: eight writers that each wait a
        // millisecond per sync cannot all have missed each other 1600
        // times.
        assert!(syncs.load(Ordering::SeqCst) < writes);
    }

    #[test]
    fn a_failed_sync_fails_its_writes_and_every_later_one() {
        let group = Counted::new();
        let synced = group.wrote(|p| *p += 1);
        group.wait(synced, |_| Ok(())).expect("synced");
        let failed = group.wrote(|p| *p += 1);
        let err = group
            .wait(failed, |_| Err(failure()))
            .expect_err("the sync failed");
        assert!(err.to_error().to_string().contains("EIO"), "{err:?}");
        // A write synced before the failure stays synced.
        group.wait(synced, |_| panic!("no sync")).expect("synced");
        // A later write is not synced on the failed files' word.
        let later = group.wrote(|p| *p += 1);
        group
            .wait(later, |_| panic!("no sync after a failure"))
            .expect_err("failed for good");
    }

    #[test]
    fn a_leader_that_panics_fails_its_writes_instead_of_leaving_waiters_stuck() {
        let group = Arc::new(Counted::new());
        let ticket = group.wrote(|p| *p += 1);
        let leader = {
            let group = Arc::clone(&group);
            thread::spawn(move || group.wait(ticket, |_| panic!("the sync panics")))
        };
        assert!(leader.join().is_err());
        group
            .wait(ticket, |_| panic!("no second sync"))
            .expect_err("its writes failed");
    }

    #[test]
    fn an_io_failure_keeps_its_kind() {
        let failed = SyncFailed::new(StoreError::io(
            "cannot sync x",
            std::io::ErrorKind::StorageFull.into(),
        ));
        match failed.to_error() {
            StoreError::Io { context, source } => {
                assert_eq!(context, "cannot sync x");
                assert_eq!(source.kind(), std::io::ErrorKind::StorageFull);
            }
            other => panic!("{other:?}"),
        }
    }
}
