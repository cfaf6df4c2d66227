//! The files a run's commits write: its journal and its three channel
//! files, open for appending; how a failed commit is cut back off them;
//! and, with `--sync`, which of them have writes not yet synced.

use std::{
    fs::{File, OpenOptions},
    io::Write,
    path::Path,
    sync::Arc,
};

use super::layout::RunDir;
use crate::{
    error::{Result, StoreError},
    model::PerChannel,
};

/// The journal and channel files of one run, open for appending.
///
/// Shared (`Arc`), so that a group sync holds the files it syncs without
/// the run's lock, while the next commits are written to them.
#[derive(Debug)]
pub(crate) struct RunFiles {
    /// `journal.jsonl`.
    journal: Arc<File>,
    /// Each channel's log file.
    logs: PerChannel<Arc<File>>,
}

/// Where a run's files end: the lengths a commit starts from, and a failed
/// commit is cut back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct FileLens {
    /// The length of the journal.
    pub(crate) journal: u64,
    /// The length of each channel file.
    pub(crate) logs: PerChannel<u64>,
}

impl RunFiles {
    /// Opens the journal and channel files of `dir` for appending.
    pub(crate) fn open(dir: &RunDir) -> Result<Self> {
        let open = |path: &Path| {
            OpenOptions::new()
                .append(true)
                .create(true)
                .open(path)
                .map_err(|err| StoreError::io(format!("cannot open {}", path.display()), err))
        };
        Ok(Self {
            journal: Arc::new(open(&dir.journal())?),
            logs: PerChannel::try_from_fn(|channel| open(&dir.log(channel)).map(Arc::new))?,
        })
    }

    /// Appends a commit: its journal line, then each channel's lines in
    /// one write. Nothing is synced here (see [`Unsynced`]).
    pub(crate) fn write_commit(
        &self,
        dir: &RunDir,
        line: &[u8],
        entries: &PerChannel<Vec<u8>>,
    ) -> Result<()> {
        let fail =
            |path: &Path, err| StoreError::io(format!("cannot append to {}", path.display()), err);
        (&*self.journal)
            .write_all(line)
            .map_err(|err| fail(&dir.journal(), err))?;
        for (channel, bytes) in entries.iter() {
            if !bytes.is_empty() {
                (&*self.logs[channel])
                    .write_all(bytes)
                    .map_err(|err| fail(&dir.log(channel), err))?;
            }
        }
        Ok(())
    }

    /// Cuts every file back to `lens`.
    pub(crate) fn truncate(&self, lens: &FileLens) -> std::io::Result<()> {
        self.journal.set_len(lens.journal)?;
        self.logs
            .iter()
            .try_for_each(|(channel, file)| file.set_len(lens.logs[channel]))
    }
}

/// The files of a run written since their last sync: what the next group
/// sync must flush (see `group_sync`).
///
/// It holds the very files the commits wrote, not their paths: a file
/// reopened after a failed commit is the same file on disk, and a sync of
/// either handle flushes it.
#[derive(Debug, Default)]
pub(crate) struct Unsynced {
    /// The journal, once a commit wrote to it.
    journal: Option<Arc<File>>,
    /// Each channel file a commit wrote to.
    logs: PerChannel<Option<Arc<File>>>,
}

impl Unsynced {
    /// Adds what a commit wrote: the journal, and the channel files it
    /// wrote `entries` to.
    pub(crate) fn add(&mut self, files: &RunFiles, entries: &PerChannel<Vec<u8>>) {
        self.journal = Some(Arc::clone(&files.journal));
        for (channel, bytes) in entries.iter() {
            if !bytes.is_empty() {
                self.logs[channel] = Some(Arc::clone(&files.logs[channel]));
            }
        }
    }

    /// Syncs the data of every file written (`fdatasync`): the channel
    /// files first, then the journal, as a commit writes them. Blocking.
    ///
    /// # Errors
    ///
    /// The first sync that failed, naming its file.
    pub(crate) fn sync(&self, dir: &RunDir) -> Result<()> {
        let fail =
            |path: &Path, err| StoreError::io(format!("cannot sync {}", path.display()), err);
        for (channel, file) in self.logs.iter() {
            if let Some(file) = file {
                file.sync_data()
                    .map_err(|err| fail(&dir.log(channel), err))?;
            }
        }
        if let Some(journal) = &self.journal {
            journal
                .sync_data()
                .map_err(|err| fail(&dir.journal(), err))?;
        }
        Ok(())
    }
}
