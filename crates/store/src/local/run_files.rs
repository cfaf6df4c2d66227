//! The files a run's commits write: its journal and its three channel
//! files, open for appending, and how a failed commit is cut back off them.

use std::{
    fs::{File, OpenOptions},
    io::Write,
    path::Path,
};

use super::layout::RunDir;
use crate::{
    error::{Result, StoreError},
    model::PerChannel,
};

/// The journal and channel files of one run, open for appending.
#[derive(Debug)]
pub(crate) struct RunFiles {
    /// `journal.jsonl`.
    journal: File,
    /// Each channel's log file.
    logs: PerChannel<File>,
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
            journal: open(&dir.journal())?,
            logs: PerChannel::try_from_fn(|channel| open(&dir.log(channel)))?,
        })
    }

    /// Appends a commit: its journal line, then each channel's lines in
    /// one write, each synced first when `sync`.
    pub(crate) fn write_commit(
        &mut self,
        dir: &RunDir,
        line: &[u8],
        entries: &PerChannel<Vec<u8>>,
        sync: bool,
    ) -> Result<()> {
        let fail =
            |path: &Path, err| StoreError::io(format!("cannot append to {}", path.display()), err);
        self.journal
            .write_all(line)
            .map_err(|err| fail(&dir.journal(), err))?;
        for (channel, bytes) in entries.iter() {
            if !bytes.is_empty() {
                let file = &mut self.logs[channel];
                file.write_all(bytes)
                    .and_then(|()| if sync { file.sync_data() } else { Ok(()) })
                    .map_err(|err| fail(&dir.log(channel), err))?;
            }
        }
        if sync {
            self.journal
                .sync_data()
                .map_err(|err| fail(&dir.journal(), err))?;
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
