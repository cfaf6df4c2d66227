//! What a store tells the outside about its disk: a hook for metrics
//! ([`StoreObserver`]) and whether it can write at all ([`WriteHealth`]).
//!
//! The store knows nothing of the metrics library or of gRPC health: it
//! calls the observer it was given and publishes its health on a `watch`
//! channel, and the server turns both into metrics and health statuses.

use std::{fmt, io, time::Duration};

use crate::model::PerChannel;

/// A kind of disk write the store makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DiskWrite {
    /// A commit of entries: the journal record and the channel files.
    Commit,
    /// A run's `state.json`, replaced atomically.
    State,
    /// A new run's directory, built and renamed into place.
    Prepare,
    /// With `--sync`, the fsync of a run's files that makes the commits
    /// written since the last one durable (one for many commits: see
    /// [`StoreObserver::synced`]).
    Sync,
}

impl DiskWrite {
    /// A short lowercase name, for labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Commit => "commit",
            Self::State => "state",
            Self::Prepare => "prepare",
            Self::Sync => "sync",
        }
    }
}

/// What one commit stored, per channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommitStats {
    /// Entries stored.
    pub entries: PerChannel<u64>,
    /// Bytes added to the channel file (the stored JSON lines).
    pub bytes: PerChannel<u64>,
}

/// Receives what a store does on disk. Every method has an empty default,
/// so an observer implements only what it counts.
///
/// The methods are called on the store's blocking threads, in the middle
/// of its work: they must be quick and must not block.
pub trait StoreObserver: fmt::Debug + Send + Sync + 'static {
    /// A write finished after `elapsed` (including its fsync, when there
    /// is one; a commit's is a [`DiskWrite::Sync`] of its own).
    fn wrote(&self, kind: DiskWrite, elapsed: Duration) {
        let _ = (kind, elapsed);
    }

    /// A commit stored these entries.
    fn committed(&self, stats: &CommitStats) {
        let _ = stats;
    }

    /// With `--sync`, a sync made `commits` commits durable: as many
    /// commits as were written while the one before it ran.
    fn synced(&self, commits: u64) {
        let _ = commits;
    }

    /// A write failed; nothing of it was kept.
    fn write_failed(&self, kind: DiskWrite, error: &io::Error) {
        let _ = (kind, error);
    }
}

/// Whether a store can write, as it last found out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum WriteHealth {
    /// Writes work, as far as the store knows.
    #[default]
    Writable,
    /// A write failed in a way that will fail again until something
    /// changes on the machine (a full disk, a read-only file system); the
    /// store checks now and then and goes back to
    /// [`WriteHealth::Writable`] once it can write again.
    NotWritable {
        /// Why, for the log.
        reason: String,
    },
}

impl WriteHealth {
    /// Whether writes work.
    pub fn is_writable(&self) -> bool {
        matches!(self, Self::Writable)
    }
}
