//! [`LocalStoreOptions`]: how a [`super::LocalStore`] is opened.

use std::{path::PathBuf, sync::Arc};

use baa_logging_config::Limits;

use crate::{objects::ObjectLimits, observe::StoreObserver};

/// After its disk was found full, the store counts as writable again once
/// this many bytes are free: enough for a few of its largest commits, so
/// that health does not flap while a disk sits at the edge.
pub const MIN_FREE_BYTES: u64 = 16 * 1024 * 1024;

/// How a [`super::LocalStore`] behaves.
#[derive(Debug, Clone)]
pub struct LocalStoreOptions {
    /// The runs root: `<data_dir>/<taskId>/<runId>/`.
    pub data_dir: PathBuf,
    /// The limits, as the server's configuration sets them: the store
    /// enforces `max_entry_bytes` and `max_data_bytes` on every item.
    pub limits: Limits,
    /// The limits on a run's objects (artifacts and checkpoints).
    pub objects: ObjectLimits,
    /// fsync every commit before acknowledging it (or serving it to
    /// followers); commits that wait at the same time share one fsync.
    /// Without it, what was acknowledged survives a crash of the process
    /// but not of the machine.
    pub sync_commits: bool,
    /// The free space below which a full disk still counts as full.
    pub min_free_bytes: u64,
    /// Told of every disk write, for metrics; none: nobody is told.
    pub observer: Option<Arc<dyn StoreObserver>>,
}

impl LocalStoreOptions {
    /// The defaults for a data directory: the default [`Limits`], no fsync
    /// per commit, [`MIN_FREE_BYTES`], no observer.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            limits: Limits::default(),
            objects: ObjectLimits::default(),
            sync_commits: false,
            min_free_bytes: MIN_FREE_BYTES,
            observer: None,
        }
    }
}
