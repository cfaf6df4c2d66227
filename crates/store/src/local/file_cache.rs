//! The store's descriptor cache: the files that runs' commits append to
//! (journals and channel files) stay open between commits, up to a bound
//! on descriptors over every run; past it, the file used least recently
//! is closed first, and reopened when a commit needs it again.
//!
//! Without a bound, every run that was written to would keep its files
//! open while it stays in memory: four descriptors each, so 10,000 live
//! runs would need 40,000, over many machines' limits.
//!
//! The cache hands out `Arc<File>`s. A file it closes while a commit
//! writes to it, or while a group sync (`--sync`) holds it to flush it,
//! stays open until they are done with it: closing only forgets the
//! cache's handle. The bound is therefore on the files kept open between
//! commits; those in use by a commit or a sync under way come on top.

use std::{
    collections::{BTreeMap, HashMap},
    fs::{File, OpenOptions},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use super::{concurrency::lock, layout::RunDir};
use crate::{
    error::{Result, StoreError},
    model::{PerChannel, WorkerLogChannel},
};

/// One of a run's append files: the journal, or a channel file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum FileKind {
    /// `journal.jsonl`.
    Journal,
    /// A channel's log file.
    Log(WorkerLogChannel),
}

impl FileKind {
    /// The four kinds, so that a run's files can all be forgotten.
    const ALL: [Self; 4] = [
        Self::Journal,
        Self::Log(WorkerLogChannel::Worker),
        Self::Log(WorkerLogChannel::Stdout),
        Self::Log(WorkerLogChannel::Stderr),
    ];

    /// The file's path in `dir`.
    fn path(self, dir: &RunDir) -> PathBuf {
        match self {
            Self::Journal => dir.journal(),
            Self::Log(channel) => dir.log(channel),
        }
    }
}

/// A file in the cache: which run's, and which of its files.
type Key = (u64, FileKind);

/// The open files of every run, bounded, least recently used closed first.
#[derive(Debug)]
pub(crate) struct FileCache {
    /// The most files kept open between commits.
    capacity: usize,
    /// The id of the next run that registers.
    next_run: AtomicU64,
    /// The open files and their order of use.
    inner: Mutex<Lru>,
}

/// The cache's state: each open file with the tick of its last use, and
/// the keys by tick, oldest first.
#[derive(Debug, Default)]
struct Lru {
    /// Each open file, with the tick of its last use.
    files: HashMap<Key, (Arc<File>, u64)>,
    /// The keys of `files` by the tick of their last use.
    by_use: BTreeMap<u64, Key>,
    /// The tick of the last use.
    tick: u64,
}

impl Lru {
    /// The file of `key`, marked used now; `None` when it is not open.
    fn take(&mut self, key: Key) -> Option<Arc<File>> {
        self.tick += 1;
        let tick = self.tick;
        let (file, used) = self.files.get_mut(&key)?;
        self.by_use.remove(used);
        *used = tick;
        self.by_use.insert(tick, key);
        Some(Arc::clone(file))
    }

    /// Keeps `file` as `key`'s, used now, and returns the file kept (an
    /// earlier one, if `key` was opened meanwhile).
    fn keep(&mut self, key: Key, file: Arc<File>) -> Arc<File> {
        if let Some(open) = self.take(key) {
            return open;
        }
        self.files.insert(key, (Arc::clone(&file), self.tick));
        self.by_use.insert(self.tick, key);
        file
    }

    /// Forgets the files used least recently until at most `capacity`
    /// are kept, and returns them, to be closed without the lock.
    fn shrink(&mut self, capacity: usize) -> Vec<Arc<File>> {
        let mut closed = Vec::new();
        while self.files.len() > capacity {
            let Some((_, key)) = self.by_use.pop_first() else {
                break;
            };
            if let Some((file, _)) = self.files.remove(&key) {
                closed.push(file);
            }
        }
        closed
    }

    /// Forgets every file of `run`, and returns them.
    fn forget(&mut self, run: u64) -> Vec<Arc<File>> {
        FileKind::ALL
            .into_iter()
            .filter_map(|kind| {
                let (file, used) = self.files.remove(&(run, kind))?;
                self.by_use.remove(&used);
                Some(file)
            })
            .collect()
    }
}

impl FileCache {
    /// A cache that keeps at most `capacity` files open between commits
    /// (at least one).
    pub(crate) fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            capacity: capacity.max(1),
            next_run: AtomicU64::new(1),
            inner: Mutex::default(),
        })
    }

    /// How many files are open in the cache now.
    #[cfg(test)]
    fn open_files(&self) -> usize {
        lock(&self.inner).files.len()
    }

    /// A new run's handle on the cache; the run's files are forgotten
    /// when it is dropped.
    pub(crate) fn register(self: &Arc<Self>) -> CachedRunFiles {
        CachedRunFiles {
            run: self.next_run.fetch_add(1, Ordering::Relaxed),
            cache: Arc::clone(self),
        }
    }

    /// The files of `run` named by `kinds`, from the cache or opened.
    /// Files are opened without the cache's lock, so that other runs'
    /// commits do not wait for the disk. Blocking.
    fn files(&self, run: u64, dir: &RunDir, kinds: &[FileKind]) -> Result<Vec<Arc<File>>> {
        let mut found: Vec<Option<Arc<File>>> = {
            let mut lru = lock(&self.inner);
            kinds.iter().map(|&kind| lru.take((run, kind))).collect()
        };
        if found.iter().all(Option::is_some) {
            return Ok(found.into_iter().flatten().collect());
        }
        let mut opened = Vec::new();
        for (slot, &kind) in found.iter().zip(kinds) {
            if slot.is_none() {
                opened.push(Arc::new(open_append(&kind.path(dir))?));
            }
        }
        let closed = {
            let mut lru = lock(&self.inner);
            let mut opened = opened.into_iter();
            for (slot, &kind) in found.iter_mut().zip(kinds) {
                if slot.is_none() {
                    let file = opened.next().expect("one opened per missing file");
                    *slot = Some(lru.keep((run, kind), file));
                }
            }
            lru.shrink(self.capacity)
        };
        // Closed here, outside the lock.
        drop(closed);
        Ok(found.into_iter().flatten().collect())
    }

    /// Forgets (closes, unless in use) every file of `run`.
    fn forget(&self, run: u64) {
        let closed = lock(&self.inner).forget(run);
        drop(closed);
    }
}

/// One run's way to its files in the [`FileCache`].
#[derive(Debug)]
pub(crate) struct CachedRunFiles {
    /// The run's id in the cache.
    run: u64,
    /// The cache.
    cache: Arc<FileCache>,
}

impl CachedRunFiles {
    /// The files a commit of `entries` writes: the journal, and the
    /// channel files it has bytes for. Blocking.
    ///
    /// # Errors
    ///
    /// A file that cannot be opened.
    pub(crate) fn for_commit(
        &self,
        dir: &RunDir,
        entries: &PerChannel<Vec<u8>>,
    ) -> Result<CommitFiles> {
        let mut kinds = vec![FileKind::Journal];
        kinds.extend(
            entries
                .iter()
                .filter(|(_, bytes)| !bytes.is_empty())
                .map(|(channel, _)| FileKind::Log(channel)),
        );
        let mut files = self.cache.files(self.run, dir, &kinds)?.into_iter();
        let journal = files.next().expect("the journal was asked for");
        let mut logs = PerChannel::<Option<Arc<File>>>::default();
        for (kind, file) in kinds[1..].iter().zip(files) {
            if let FileKind::Log(channel) = kind {
                logs[*channel] = Some(file);
            }
        }
        Ok(CommitFiles { journal, logs })
    }

    /// Closes the run's files (once no commit or sync uses them), so that
    /// the next commit opens them again: after a failed commit, say.
    pub(crate) fn forget(&self) {
        self.cache.forget(self.run);
    }
}

impl Drop for CachedRunFiles {
    fn drop(&mut self) {
        self.cache.forget(self.run);
    }
}

/// The files one commit writes, held for it: the journal, and the channel
/// files it has entries for.
#[derive(Debug)]
pub(crate) struct CommitFiles {
    /// `journal.jsonl`.
    pub(crate) journal: Arc<File>,
    /// The channel files the commit writes to.
    pub(crate) logs: PerChannel<Option<Arc<File>>>,
}

/// Opens `path` for appending, creating it when missing.
fn open_append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|err| StoreError::io(format!("cannot open {}", path.display()), err))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The entries of a commit that writes stdout only.
    fn stdout_only() -> PerChannel<Vec<u8>> {
        let mut entries = PerChannel::<Vec<u8>>::default();
        entries[WorkerLogChannel::Stdout] = b"line\n".to_vec();
        entries
    }

    #[test]
    fn keeps_at_most_its_capacity_closing_the_least_recently_used() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = FileCache::new(4);
        let dirs: Vec<RunDir> = (0..3)
            .map(|index| {
                let path = tmp.path().join(index.to_string());
                std::fs::create_dir_all(&path).unwrap();
                RunDir::new(path)
            })
            .collect();
        let runs: Vec<CachedRunFiles> = dirs.iter().map(|_| cache.register()).collect();
        let first = runs[0].for_commit(&dirs[0], &stdout_only()).unwrap();
        let _ = runs[1].for_commit(&dirs[1], &stdout_only()).unwrap();
        assert_eq!(cache.open_files(), 4);
        // Run 0 is used again, so run 1's files are the ones closed.
        let again = runs[0].for_commit(&dirs[0], &stdout_only()).unwrap();
        assert!(Arc::ptr_eq(&first.journal, &again.journal));
        let _ = runs[2].for_commit(&dirs[2], &stdout_only()).unwrap();
        assert_eq!(cache.open_files(), 4);
        let kept = runs[0].for_commit(&dirs[0], &stdout_only()).unwrap();
        assert!(Arc::ptr_eq(&first.journal, &kept.journal));
        drop(runs);
        assert_eq!(cache.open_files(), 0);
    }
}
