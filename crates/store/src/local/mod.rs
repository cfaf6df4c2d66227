//! The embedded default store: runs as directories on local disk, in the
//! `local-run-v1` layout (see `layout` for every file and directory).
//!
//! Runs are opened lazily, on first use, so start-up reads nothing but the
//! directory itself.
//!
//! # Layout
//!
//! - `layout`: every name and path on disk (`StoreDir`, `RunDir`).
//! - `prepare`: a new run, built in `.staging/` and renamed into place.
//! - `run`: one open run's log session: appends, state changes, the
//!   doorbell; `encode` turns payloads into stored lines, `run_files` holds
//!   the files a commit writes; `recent` keeps the last commits decoded.
//! - `journal` and `recovery`: what a crash can leave and how it is
//!   repaired; `lines`: scanning JSON Lines files.
//! - `reader`: following a run from its files.
//! - `catalog`: the listing; `retention`: deleting finished runs.
//! - `objects`: a run's artifacts and checkpoints: staged uploads,
//!   committed whole and verified, downloads and listings.
//! - `disk`: the store's write health and observer; `fsio`: atomic JSON
//!   files.
//! - `concurrency`: the locking policy and the blocking pool.

pub(crate) mod catalog;
pub(crate) mod channel_reader;
pub(crate) mod chunk_line;
pub(crate) mod concurrency;
mod dir_lock;
mod disk;
pub(crate) mod encode;
mod file_cache;
mod fsio;
mod group_sync;
pub(crate) mod journal;
mod journal_cursor;
mod layout;
mod lines;
mod objects;
mod options;
pub(crate) mod prepare;
mod range;
mod reader;
mod recent;
mod recovery;
mod retention;
pub(crate) mod run;
mod run_files;
mod search;
mod writeback;

use std::{
    collections::HashMap,
    fs,
    path::Path,
    sync::{Arc, Mutex},
};

use tokio::sync::{OnceCell, watch};
use tracing::{info, warn};

use self::{
    catalog::Catalog,
    concurrency::{blocking, lock},
    dir_lock::DirLock,
    disk::Disk,
    file_cache::FileCache,
    layout::StoreDir,
    retention::FactsCache,
    run::Run,
};
pub use self::{
    objects::{LocalObjectReader, LocalUpload},
    options::{LocalStoreOptions, MIN_FREE_BYTES},
    reader::LocalReader,
    retention::LocalHold,
    search::LocalSearch,
};
use crate::{
    error::{Result, StoreError},
    ids::check_id,
    lease::LeaseExpiry,
    model::{
        AppendItem, AppendOutcome, PreparedRun, RunKey, RunMetadata, RunMetadataInput, RunPage,
        RunQuery, RunStatePatch, RunStateSnapshot, RunStateSnapshotInput, RunStatus, RunView,
        WorkerLogChannel, WriterCursor,
    },
    observe::{CommitStats, DiskWrite, WriteHealth},
    retention::{Collection, RetentionPolicy},
    run_store::{ReadFrom, RunStore},
    search::LineScanner,
};

/// How many prepares of different runs may create their runs at once.
const PREPARE_LOCK_STRIPES: usize = 64;

/// Runs on local disk, in the `local-run-v1` layout.
#[derive(Debug)]
pub struct LocalStore {
    /// Where everything is on disk.
    layout: StoreDir,
    /// How the store was opened, shared with every run.
    options: Arc<LocalStoreOptions>,
    /// The disk: write health and the observer.
    disk: Arc<Disk>,
    /// The files runs append to, open up to `limits.max_open_files`.
    files: Arc<FileCache>,
    /// The runs opened so far. Each cell is filled once, by the first
    /// caller; the others wait for it instead of opening the run twice.
    runs: Mutex<HashMap<RunKey, Arc<OnceCell<Arc<Run>>>>>,
    /// Serializes the creation and deletion of each run, so that two
    /// prepares of one run, or a prepare and a deletion, cannot race.
    /// Striped by the run's key rather than one lock for the store:
    /// creating a run waits for several fsyncs, and one lock made every
    /// prepare wait for all the others' (2,000 runs took 36 s; see
    /// docs/benchmarks.md, W3).
    prepare_locks: Box<[tokio::sync::Mutex<()>]>,
    /// The listing, built on first use.
    catalog: tokio::sync::Mutex<Option<Catalog>>,
    /// Serializes retention passes.
    collect_lock: tokio::sync::Mutex<()>,
    /// What retention learnt of terminal runs.
    facts: Arc<Mutex<FactsCache>>,
    /// Keeps every other store off the directory while this one is open.
    _lock: DirLock,
}

impl LocalStore {
    /// Each writer of a run and the last writer sequence number the run
    /// holds from it, for moving the run to another store with its
    /// writers' cursors (`baa-logd import`).
    ///
    /// # Errors
    ///
    /// [`StoreError::RunNotFound`], and those of opening the run.
    pub async fn writer_cursors(&self, key: &RunKey) -> Result<Vec<(String, u64)>> {
        let run = self.run(key).await?;
        Ok(run.writers())
    }

    /// Opens the store in `options.data_dir`, creating it when missing,
    /// takes the directory's lock, and clears runs left half-prepared, or
    /// half-deleted, by a crash.
    ///
    /// # Errors
    ///
    /// [`StoreError::Locked`] when another store has the directory open
    /// (nothing was touched then); [`StoreError::Io`] when the directory
    /// cannot be created or read.
    pub fn open(mut options: LocalStoreOptions) -> Result<Self> {
        let dir = &options.data_dir;
        fs::create_dir_all(dir)
            .map_err(|err| StoreError::io(format!("cannot create {}", dir.display()), err))?;
        let root = fs::canonicalize(dir)
            .map_err(|err| StoreError::io(format!("cannot resolve {}", dir.display()), err))?;
        let layout = StoreDir::new(root.clone());
        let dir_lock = DirLock::acquire(&root, &layout.lock_file())?;
        for leftover in [layout.staging(), layout.trash()] {
            if leftover.exists() {
                fs::remove_dir_all(&leftover).map_err(|err| {
                    StoreError::io(format!("cannot clear {}", leftover.display()), err)
                })?;
            }
        }
        // A probe interrupted by a crash.
        let _ = fs::remove_file(layout.probe_file());
        info!(data_dir = %root.display(), "store open");
        let disk = Disk::new(
            layout.probe_file(),
            options.observer.take(),
            options.min_free_bytes,
        );
        disk.check_at_open();
        Ok(Self {
            layout,
            files: FileCache::new(options.limits.max_open_files),
            options: Arc::new(options),
            disk,
            runs: Mutex::new(HashMap::new()),
            prepare_locks: (0..PREPARE_LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            catalog: tokio::sync::Mutex::new(None),
            collect_lock: tokio::sync::Mutex::new(()),
            facts: Arc::default(),
            _lock: dir_lock,
        })
    }

    /// The lock that serializes the prepares of `key`.
    fn prepare_lock(&self, key: &RunKey) -> &tokio::sync::Mutex<()> {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(key);
        &self.prepare_locks[(hash % self.prepare_locks.len() as u64) as usize]
    }

    /// The runs root, absolute.
    pub fn data_dir(&self) -> &Path {
        self.layout.root()
    }

    /// The run, opened from disk on first use.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidId`] for a bad id, [`StoreError::RunNotFound`]
    /// when it does not exist or retention took it.
    async fn run(&self, key: &RunKey) -> Result<Arc<Run>> {
        check_id("task_id", &key.task_id)?;
        check_id("run_id", &key.run_id)?;
        let cell = lock(&self.runs).entry(key.clone()).or_default().clone();
        let opened = cell
            .get_or_try_init(|| {
                let (key, options, disk) = (key.clone(), self.options.clone(), self.disk.clone());
                let (dir, paths) = (self.layout.run(&key), self.layout.paths(&key));
                let files = self.files.clone();
                blocking(move || Run::load(key, dir, paths, options, disk, &files).map(Arc::new))
            })
            .await;
        match opened {
            Ok(run) if run.is_deleted() => Err(StoreError::RunNotFound(key.clone())),
            Ok(run) => Ok(run.clone()),
            Err(err) => {
                if matches!(err, StoreError::RunNotFound(_)) {
                    let mut runs = lock(&self.runs);
                    if runs.get(key).is_some_and(|cell| cell.get().is_none()) {
                        runs.remove(key);
                    }
                }
                Err(err)
            }
        }
    }

    /// The view of an open run.
    fn view(&self, run: &Run) -> RunView {
        let (state, summary) = run.snapshot();
        RunView {
            metadata: run.metadata.clone(),
            state,
            summary,
            paths: run.paths.clone(),
        }
    }

    /// The listing, built from disk on first use.
    async fn catalog(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Catalog>>> {
        let mut catalog = self.catalog.lock().await;
        if catalog.is_none() {
            let layout = self.layout.clone();
            *catalog = Some(blocking(move || Catalog::scan(&layout)).await?);
        }
        Ok(catalog)
    }

    /// Tells the catalog, when it is built, a run's new status.
    async fn catalog_status(&self, key: &RunKey, status: RunStatus) {
        if let Some(catalog) = self.catalog.lock().await.as_mut() {
            catalog.set_status(key, status);
        }
    }

    /// Updates the listing, when it was built.
    async fn catalog_insert(&self, metadata: &RunMetadata, state: &RunStateSnapshot) {
        if let Some(catalog) = self.catalog.lock().await.as_mut() {
            catalog.insert(metadata, state.status);
        }
    }

    /// Creates a run that does not exist yet, under its prepare lock.
    async fn create(
        &self,
        metadata: RunMetadata,
        initial: RunStateSnapshot,
    ) -> Result<PreparedRun> {
        let key = metadata.key();
        let worker_line = {
            let (layout, key, metadata, initial, disk) = (
                self.layout.clone(),
                key.clone(),
                metadata.clone(),
                initial.clone(),
                self.disk.clone(),
            );
            blocking(move || {
                disk.write(DiskWrite::Prepare, || {
                    prepare::create_run(&layout, &key, &metadata, &initial)
                })
            })
            .await?
        };
        // The run's first entry, `run_prepared`, counts as appended.
        let worker = WorkerLogChannel::Worker;
        let mut stats = CommitStats::default();
        stats.entries[worker] = 1;
        stats.bytes[worker] = worker_line.len() as u64;
        self.disk.committed(&stats);
        let run = self.run(&key).await?;
        self.catalog_insert(&metadata, &initial).await;
        let entries = worker_line
            .split(|byte| *byte == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| {
                serde_json::from_slice(line)
                    .map_err(|err| StoreError::damaged(run.dir.log(worker), err.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(PreparedRun {
            run: self.view(&run),
            created: true,
            entries,
        })
    }
}

impl RunStore for LocalStore {
    type Reader = LocalReader;
    type Hold = LocalHold;
    type Searcher = LocalSearch;

    async fn prepare_run(
        &self,
        input: RunMetadataInput,
        state: RunStateSnapshotInput,
    ) -> Result<PreparedRun> {
        check_id("metadata.task_id", &input.task_id)?;
        check_id("metadata.run_id", &input.run_id)?;
        check_id("metadata.step_id", &input.step_id)?;
        let (metadata, initial) = prepare::new_run(input, state)?;
        let key = metadata.key();
        let _guard = self.prepare_lock(&key).lock().await;
        match self.run(&key).await {
            Ok(run) if run.metadata != metadata => Err(StoreError::MetadataMismatch(key)),
            Ok(run) => Ok(PreparedRun {
                run: self.view(&run),
                created: false,
                entries: Vec::new(),
            }),
            Err(StoreError::RunNotFound(_)) => self.create(metadata, initial).await,
            Err(err) => Err(err),
        }
    }

    async fn get_run(&self, key: &RunKey) -> Result<RunView> {
        let run = self.run(key).await?;
        Ok(self.view(&run))
    }

    async fn list_runs(&self, query: RunQuery) -> Result<RunPage> {
        if let Some(task_id) = &query.task_id {
            check_id("task_id", task_id)?;
        }
        let (keys, next_page_token) = self.catalog().await?.as_ref().expect("built").page(
            query.task_id.as_deref(),
            &query.statuses,
            query.page_size,
            query.page_token.as_deref(),
        )?;
        let mut runs = Vec::with_capacity(keys.len());
        for key in keys {
            match self.run(&key).await {
                Ok(run) => runs.push(self.view(&run)),
                // Deleted by retention since the page was read.
                Err(StoreError::RunNotFound(_)) => {}
                Err(err) => {
                    warn!(run = %key, cause = %err, "leaving a run that cannot be opened out of a listing")
                }
            }
        }
        Ok(RunPage {
            runs,
            next_page_token,
        })
    }

    async fn update_state(&self, key: &RunKey, patch: RunStatePatch) -> Result<RunStateSnapshot> {
        let run = self.run(key).await?;
        let state = blocking(move || run.update_state(None, patch)).await?;
        self.catalog_status(key, state.status).await;
        Ok(state)
    }

    async fn update_state_by(
        &self,
        key: &RunKey,
        writer_id: &str,
        patch: RunStatePatch,
    ) -> Result<RunStateSnapshot> {
        check_id("writer_id", writer_id)?;
        let run = self.run(key).await?;
        let writer_id = writer_id.to_owned();
        let state = blocking(move || run.update_state(Some(&writer_id), patch)).await?;
        self.catalog_status(key, state.status).await;
        Ok(state)
    }

    async fn expire_lease(
        &self,
        key: &RunKey,
        expiry: LeaseExpiry,
    ) -> Result<Option<RunStateSnapshot>> {
        let run = self.run(key).await?;
        let state = blocking(move || run.expire_lease(&expiry)).await?;
        if let Some(state) = &state {
            self.catalog_status(key, state.status).await;
        }
        Ok(state)
    }

    async fn append(
        &self,
        key: &RunKey,
        writer_id: &str,
        items: Vec<AppendItem>,
    ) -> Result<AppendOutcome> {
        check_id("writer_id", writer_id)?;
        let run = self.run(key).await?;
        let writer_id = writer_id.to_owned();
        blocking(move || run.append(&writer_id, items)).await
    }

    async fn writer_cursor(&self, key: &RunKey, writer_id: &str) -> Result<WriterCursor> {
        check_id("writer_id", writer_id)?;
        let run = self.run(key).await?;
        if self.options.sync_commits {
            // Waits for the run's sync: on the blocking pool.
            let writer_id = writer_id.to_owned();
            blocking(move || run.writer_cursor(&writer_id)).await
        } else {
            run.writer_cursor(writer_id)
        }
    }

    async fn open_reader(&self, key: &RunKey, from: ReadFrom) -> Result<LocalReader> {
        let run = self.run(key).await?;
        let hold = LocalHold::new(run.clone())?;
        concurrency::blocking_read(move || LocalReader::open(run, hold, from)).await
    }

    async fn search(&self, key: &RunKey, scanner: LineScanner) -> Result<LocalSearch> {
        let run = self.run(key).await?;
        let hold = LocalHold::new(run.clone())?;
        Ok(LocalSearch::new(run, hold, scanner))
    }

    async fn hold(&self, key: &RunKey) -> Result<LocalHold> {
        LocalHold::new(self.run(key).await?)
    }

    async fn collect(&self, policy: RetentionPolicy, dry_run: bool) -> Result<Collection> {
        self.collect_runs(policy, dry_run).await
    }

    async fn flush(&self) -> Result<()> {
        let runs: Vec<Arc<Run>> = lock(&self.runs)
            .values()
            .filter_map(|cell| cell.get().cloned())
            .collect();
        blocking(move || {
            for run in runs {
                if let Err(err) = run.persist_state() {
                    warn!(run = %run.key, cause = %err, "cannot write the state on close");
                }
            }
            Ok(())
        })
        .await
    }

    fn write_health(&self) -> watch::Receiver<WriteHealth> {
        self.disk.subscribe()
    }

    async fn count_runs(&self) -> Result<Vec<(RunStatus, u64)>> {
        Ok(self
            .catalog()
            .await?
            .as_ref()
            .expect("built")
            .count_by_status())
    }
}
