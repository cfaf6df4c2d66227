//! Writing a commit to the files it holds (a run's journal and the
//! channel files it has entries for, from the descriptor cache, see
//! `file_cache`); how a failed commit is cut back off them; and, with
//! `--sync`, which of them have writes not yet synced.

use std::{fs::File, io::Write, path::Path, sync::Arc};

use super::{file_cache::CommitFiles, layout::RunDir};
use crate::{
    error::{Result, StoreError},
    model::PerChannel,
};

/// Where a run's files end: the lengths a commit starts from, and a failed
/// commit is cut back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct FileLens {
    /// The length of the journal.
    pub(crate) journal: u64,
    /// The length of each channel file.
    pub(crate) logs: PerChannel<u64>,
}

impl CommitFiles {
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
                let mut file = self.logs[channel]
                    .as_deref()
                    .expect("a commit holds the files it has entries for");
                file.write_all(bytes)
                    .map_err(|err| fail(&dir.log(channel), err))?;
            }
        }
        Ok(())
    }

    /// Cuts the files the commit wrote back to `lens`; the others it did
    /// not touch.
    pub(crate) fn truncate(&self, lens: &FileLens) -> std::io::Result<()> {
        self.journal.set_len(lens.journal)?;
        self.logs.iter().try_for_each(|(channel, file)| match file {
            Some(file) => file.set_len(lens.logs[channel]),
            None => Ok(()),
        })
    }
}

/// The files of a run written since their last sync: what the next group
/// sync must flush (see `group_sync`).
///
/// It holds the very files the commits wrote, not their paths, so that a
/// file the descriptor cache closes meanwhile stays open until it is
/// synced. It keeps the first handle written since the last sync: a file
/// reopened since (after the cache closed it, or after a failed commit) is
/// the same file on disk, a sync of either handle flushes it, and the
/// older handle also reports a write-back error from before the reopen.
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
    pub(crate) fn add(&mut self, files: &CommitFiles, entries: &PerChannel<Vec<u8>>) {
        self.journal
            .get_or_insert_with(|| Arc::clone(&files.journal));
        for (channel, bytes) in entries.iter() {
            if let (false, Some(file)) = (bytes.is_empty(), &files.logs[channel]) {
                self.logs[channel].get_or_insert_with(|| Arc::clone(file));
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
