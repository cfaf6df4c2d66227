//! The embedded default store: runs as directories on local disk, in the
//! `local-run-v1` layout.
//!
//! ```text
//! <data dir>/                 the runs root (`runs` by default)
//!   <taskId>/<runId>/
//!     meta.json               RunMetadata, written once
//!     state.json              RunStateSnapshot, replaced atomically
//!     worker.log              lifecycle entries, JSON Lines
//!     stdout.log              stdout entries, JSON Lines
//!     stderr.log              stderr entries, JSON Lines
//!     journal.jsonl           one record per commit (see `journal`)
//!     checkpoints/
//!     artifacts/
//!   .staging/                 runs being prepared, renamed into place
//!   .trash/                   runs being deleted by retention
//! ```
//!
//! Runs are opened lazily, on first use, so start-up reads nothing but the
//! directory itself. See `recovery` for what a crash can leave and how it
//! is repaired, `disk` for what happens when the disk fills up or turns
//! read-only, and `retention` for how runs are deleted.

mod catalog;
mod disk;
mod fsio;
mod journal;
mod lines;
mod reader;
mod recent;
mod recovery;
mod retention;
mod run;

use std::{
    collections::HashMap,
    fs, io,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use tokio::sync::{OnceCell, watch};
use tracing::{info, warn};

use self::{
    catalog::Catalog,
    disk::{Disk, PROBE_FILE},
    fsio::{read_json, sync_dir, write_json_atomic},
    journal::JournalRecord,
    retention::{FactsCache, TRASH_DIR},
    run::{INITIAL_STATUS, Run, RunLimits, encode_entries},
};
pub use self::{reader::LocalReader, retention::LocalHold};
use crate::{
    DEFAULT_RUN_LAYOUT_VERSION,
    error::{Result, StoreError},
    ids::check_id,
    model::{
        AppendItem, AppendOutcome, AppendPayload, LocalRunPaths, LogLevel, PreparedRun, RunKey,
        RunMetadata, RunMetadataInput, RunPage, RunQuery, RunStatePatch, RunStateSnapshot,
        RunStateSnapshotInput, RunStatus, RunView, WorkerLifecycleEventInput,
        WorkerLifecycleEventType, WorkerLogChannel, WriterCursor,
    },
    observe::{CommitStats, DiskWrite, StoreObserver, WriteHealth},
    retention::{Collection, RetentionPolicy},
    run_store::{ReadFrom, RunStore},
    time::{normalize_iso, now_iso},
};

/// `meta.json`.
const META_FILE: &str = "meta.json";
/// `state.json`.
const STATE_FILE: &str = "state.json";
/// The append journal.
const JOURNAL_FILE: &str = "journal.jsonl";
/// Where runs are built before they are renamed into place.
const STAGING_DIR: &str = ".staging";
/// How many prepares of different runs may create their runs at once.
const PREPARE_LOCK_STRIPES: usize = 64;

/// How a [`LocalStore`] behaves.
#[derive(Debug, Clone)]
pub struct LocalStoreOptions {
    /// The runs root: `<data_dir>/<taskId>/<runId>/`.
    pub data_dir: PathBuf,
    /// The largest text or message of one entry, in bytes.
    pub max_entry_bytes: usize,
    /// The largest structured data of one event, as JSON, in bytes.
    pub max_data_bytes: usize,
    /// fsync every commit before acknowledging it. Without it, what was
    /// acknowledged survives a crash of the process but not of the machine.
    pub sync_commits: bool,
    /// After its disk was found full, the store counts as writable again
    /// once this many bytes are free: enough for a few of its largest
    /// commits, so that health does not flap while a disk sits at the edge.
    pub min_free_bytes: u64,
    /// Told of every disk write, for metrics; none: nobody is told.
    pub observer: Option<Arc<dyn StoreObserver>>,
}

impl LocalStoreOptions {
    /// The defaults for a data directory: 1 MiB texts, 256 KiB data, no
    /// fsync per commit, 16 MiB free to count as writable again, no
    /// observer.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            max_entry_bytes: 1024 * 1024,
            max_data_bytes: 256 * 1024,
            sync_commits: false,
            min_free_bytes: 16 * 1024 * 1024,
            observer: None,
        }
    }
}

/// Runs on local disk, in the `local-run-v1` layout.
#[derive(Debug)]
pub struct LocalStore {
    /// The runs root, absolute.
    root: PathBuf,
    /// The directory that holds the runs root.
    repo_root: PathBuf,
    /// What every run applies.
    limits: RunLimits,
    /// The disk: write health and the observer.
    disk: Arc<Disk>,
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
}

impl LocalStore {
    /// Opens the store in `options.data_dir`, creating it when missing, and
    /// clears runs left half-prepared, or half-deleted, by a crash.
    ///
    /// # Errors
    ///
    /// [`StoreError::Io`] when the directory cannot be created or read.
    pub fn open(options: LocalStoreOptions) -> Result<Self> {
        let dir = &options.data_dir;
        fs::create_dir_all(dir)
            .map_err(|err| StoreError::io(format!("cannot create {}", dir.display()), err))?;
        let root = fs::canonicalize(dir)
            .map_err(|err| StoreError::io(format!("cannot resolve {}", dir.display()), err))?;
        for leftover in [STAGING_DIR, TRASH_DIR] {
            let leftover = root.join(leftover);
            if leftover.exists() {
                fs::remove_dir_all(&leftover).map_err(|err| {
                    StoreError::io(format!("cannot clear {}", leftover.display()), err)
                })?;
            }
        }
        // A probe interrupted by a crash.
        let _ = fs::remove_file(root.join(PROBE_FILE));
        let repo_root = root
            .parent()
            .map_or_else(|| root.clone(), Path::to_path_buf);
        info!(data_dir = %root.display(), "store open");
        let disk = Disk::new(root.clone(), options.observer, options.min_free_bytes);
        Ok(Self {
            root,
            repo_root,
            limits: RunLimits {
                max_entry_bytes: options.max_entry_bytes,
                max_data_bytes: options.max_data_bytes,
                max_commit_bytes: 1024 * 1024,
                sync_commits: options.sync_commits,
            },
            disk,
            runs: Mutex::new(HashMap::new()),
            prepare_locks: (0..PREPARE_LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            catalog: tokio::sync::Mutex::new(None),
            collect_lock: tokio::sync::Mutex::new(()),
            facts: Arc::default(),
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
        &self.root
    }

    /// The paths of a run.
    fn paths(&self, key: &RunKey) -> LocalRunPaths {
        let task_dir = self.root.join(&key.task_id);
        let run_dir = task_dir.join(&key.run_id);
        let show = |path: &Path| path.to_string_lossy().into_owned();
        LocalRunPaths {
            layout_version: DEFAULT_RUN_LAYOUT_VERSION.to_owned(),
            repo_root: show(&self.repo_root),
            runs_root_dir: show(&self.root),
            task_runs_dir: show(&task_dir),
            run_dir: show(&run_dir),
            checkpoints_dir: show(&run_dir.join("checkpoints")),
            artifacts_dir: show(&run_dir.join("artifacts")),
            meta_path: show(&run_dir.join(META_FILE)),
            state_path: show(&run_dir.join(STATE_FILE)),
            worker_log_path: show(&run_dir.join(WorkerLogChannel::Worker.file_name())),
            stdout_log_path: show(&run_dir.join(WorkerLogChannel::Stdout.file_name())),
            stderr_log_path: show(&run_dir.join(WorkerLogChannel::Stderr.file_name())),
        }
    }

    /// The run, opened from disk on first use.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidArgument`] for a bad id,
    /// [`StoreError::RunNotFound`] when it does not exist or retention took
    /// it.
    async fn run(&self, key: &RunKey) -> Result<Arc<Run>> {
        check_id("task_id", &key.task_id)?;
        check_id("run_id", &key.run_id)?;
        let cell = {
            let mut runs = self
                .runs
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            runs.entry(key.clone()).or_default().clone()
        };
        let opened = cell
            .get_or_try_init(|| {
                let key = key.clone();
                let dir = self.root.join(&key.task_id).join(&key.run_id);
                let paths = self.paths(&key);
                let limits = self.limits;
                let disk = self.disk.clone();
                async move {
                    tokio::task::spawn_blocking(move || open_run(key, dir, paths, limits, disk))
                        .await
                        .map_err(|err| {
                            StoreError::io("a store task failed", io::Error::other(err))
                        })?
                }
            })
            .await;
        match opened {
            Ok(run) if run.is_deleted() => Err(StoreError::RunNotFound(key.to_string())),
            Ok(run) => Ok(run.clone()),
            Err(err) => {
                if matches!(err, StoreError::RunNotFound(_)) {
                    let mut runs = self
                        .runs
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
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

    /// Runs a blocking closure on the blocking pool.
    async fn blocking<T: Send + 'static>(
        work: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|err| StoreError::io("a store task failed", io::Error::other(err)))?
    }

    /// Updates the listing, when it was built.
    async fn catalog_insert(&self, metadata: &RunMetadata, state: &RunStateSnapshot) {
        if let Some(catalog) = self.catalog.lock().await.as_mut() {
            catalog.insert(metadata, state.status);
        }
    }
}

impl RunStore for LocalStore {
    type Reader = LocalReader;
    type Hold = LocalHold;

    async fn prepare_run(
        &self,
        input: RunMetadataInput,
        state: RunStateSnapshotInput,
    ) -> Result<PreparedRun> {
        check_id("metadata.task_id", &input.task_id)?;
        check_id("metadata.run_id", &input.run_id)?;
        check_id("metadata.step_id", &input.step_id)?;
        let metadata = RunMetadata {
            layout_version: DEFAULT_RUN_LAYOUT_VERSION.to_owned(),
            created_at: normalize_iso("metadata.created_at", &input.created_at)?,
            task_id: input.task_id,
            step_id: input.step_id,
            step_name: input.step_name,
            run_id: input.run_id,
            worker_kind: input.worker_kind,
            attempt: input.attempt,
            repo_root: input.repo_root,
            worktree_path: input.worktree_path,
            checkpoint_mode: input.checkpoint_mode,
            prompt_summary: input.prompt_summary,
            command: input.command,
        };
        let now = now_iso();
        let initial = RunStateSnapshot {
            status: INITIAL_STATUS,
            attempt: state.attempt,
            started_at: normalize_iso("state.started_at", &state.started_at)?,
            updated_at: now,
            finished_at: None,
            last_event_seq: 1,
            checkpoint_seq: state.checkpoint_seq.unwrap_or(0),
            summary: state.summary,
            exit_code: None,
        };
        let key = metadata.key();
        let _guard = self.prepare_lock(&key).lock().await;
        match self.run(&key).await {
            Ok(run) => {
                if run.metadata != metadata {
                    return Err(StoreError::AlreadyExists(format!(
                        "run `{key}` exists with other metadata"
                    )));
                }
                return Ok(PreparedRun {
                    run: self.view(&run),
                    created: false,
                    entries: Vec::new(),
                });
            }
            Err(StoreError::RunNotFound(_)) => {}
            Err(err) => return Err(err),
        }
        let worker_line = {
            let (root, key, metadata, initial, disk) = (
                self.root.clone(),
                key.clone(),
                metadata.clone(),
                initial.clone(),
                self.disk.clone(),
            );
            Self::blocking(move || {
                disk.write(DiskWrite::Prepare, || {
                    create_run(&root, &key, &metadata, &initial)
                })
            })
            .await?
        };
        // The run's first entry, `run_prepared`, counts as appended.
        let mut stats = CommitStats::default();
        let worker = WorkerLogChannel::Worker.index();
        stats.entries[worker] = 1;
        stats.bytes[worker] = worker_line.len() as u64;
        self.disk.committed(&stats);
        let run = self.run(&key).await?;
        self.catalog_insert(&metadata, &initial).await;
        let entries = worker_line
            .split(|byte| *byte == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| {
                serde_json::from_slice(line).map_err(|err| {
                    StoreError::Corrupt(format!("a new entry does not read back: {err}"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(PreparedRun {
            run: self.view(&run),
            created: true,
            entries,
        })
    }

    async fn get_run(&self, key: &RunKey) -> Result<RunView> {
        let run = self.run(key).await?;
        Ok(self.view(&run))
    }

    async fn list_runs(&self, query: RunQuery) -> Result<RunPage> {
        if let Some(task_id) = &query.task_id {
            check_id("task_id", task_id)?;
        }
        let (keys, next_page_token) = {
            let mut catalog = self.catalog.lock().await;
            if catalog.is_none() {
                let root = self.root.clone();
                *catalog = Some(Self::blocking(move || Catalog::scan(&root)).await?);
            }
            catalog.as_ref().expect("built above").page(
                query.task_id.as_deref(),
                &query.statuses,
                query.page_size,
                query.page_token.as_deref(),
            )?
        };
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
        let state = {
            let run = run.clone();
            Self::blocking(move || run.update_state(patch)).await?
        };
        if let Some(catalog) = self.catalog.lock().await.as_mut() {
            catalog.set_status(key, state.status);
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
        Self::blocking(move || run.append(&writer_id, items)).await
    }

    async fn writer_cursor(&self, key: &RunKey, writer_id: &str) -> Result<WriterCursor> {
        check_id("writer_id", writer_id)?;
        Ok(self.run(key).await?.writer_cursor(writer_id))
    }

    async fn open_reader(&self, key: &RunKey, from: ReadFrom) -> Result<LocalReader> {
        let run = self.run(key).await?;
        let hold = LocalHold::new(run.clone())?;
        Self::blocking(move || LocalReader::open(run, hold, from)).await
    }

    async fn hold(&self, key: &RunKey) -> Result<LocalHold> {
        LocalHold::new(self.run(key).await?)
    }

    async fn collect(&self, policy: RetentionPolicy, dry_run: bool) -> Result<Collection> {
        self.collect_runs(policy, dry_run).await
    }

    async fn flush(&self) -> Result<()> {
        let runs: Vec<Arc<Run>> = {
            let runs = self
                .runs
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            runs.values()
                .filter_map(|cell| cell.get().cloned())
                .collect()
        };
        Self::blocking(move || {
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
        let mut catalog = self.catalog.lock().await;
        if catalog.is_none() {
            let root = self.root.clone();
            *catalog = Some(Self::blocking(move || Catalog::scan(&root)).await?);
        }
        Ok(catalog.as_ref().expect("built above").count_by_status())
    }
}

/// Builds the run directory in the staging area and renames it into
/// place, so that a run exists whole or not at all. Returns the lines of
/// `worker.log`. Blocking.
fn create_run(
    root: &Path,
    key: &RunKey,
    metadata: &RunMetadata,
    state: &RunStateSnapshot,
) -> Result<Vec<u8>> {
    let staging = root
        .join(STAGING_DIR)
        .join(uuid::Uuid::new_v4().to_string());
    let task_dir = root.join(&key.task_id);
    let target = task_dir.join(&key.run_id);
    let fail = |what: &str, err| StoreError::io(format!("cannot prepare run `{key}`: {what}"), err);
    let event = AppendPayload::Event(WorkerLifecycleEventInput {
        event_type: WorkerLifecycleEventType::RunPrepared,
        level: LogLevel::Info,
        message: format!("run {} prepared", key.run_id),
        created_at: None,
        data: [
            ("stepId".to_owned(), metadata.step_id.clone().into()),
            ("attempt".to_owned(), metadata.attempt.into()),
            ("workerKind".to_owned(), metadata.worker_kind.clone().into()),
        ]
        .into_iter()
        .collect(),
    });
    let encoded = encode_entries(metadata, 1, std::slice::from_ref(&event), &now_iso());
    let record = JournalRecord {
        first_seq: 1,
        last_seq: 1,
        writer_id: None,
        writer_seq: 0,
        counts: encoded.counts,
        offsets: [0; 3],
        imported: false,
    };
    let build = || -> Result<()> {
        for dir in ["checkpoints", "artifacts"] {
            fs::create_dir_all(staging.join(dir))
                .map_err(|err| fail("cannot create directories", err))?;
        }
        write_json_atomic(&staging.join(META_FILE), metadata)?;
        write_json_atomic(&staging.join(STATE_FILE), state)?;
        for channel in WorkerLogChannel::ALL {
            write_synced(
                &staging.join(channel.file_name()),
                &encoded.bytes[channel.index()],
            )
            .map_err(|err| fail(channel.file_name(), err))?;
        }
        write_synced(&staging.join(JOURNAL_FILE), &record.to_line())
            .map_err(|err| fail(JOURNAL_FILE, err))?;
        sync_dir(&staging).map_err(|err| fail("cannot sync", err))?;
        // Retention removes a task directory once its last run is gone,
        // under that run's lock, not this one's: when it does so between
        // these two steps, make the directory again.
        let mut attempts = 0;
        loop {
            fs::create_dir_all(&task_dir)
                .map_err(|err| fail("cannot create the task directory", err))?;
            match fs::rename(&staging, &target) {
                Ok(()) => break,
                Err(err) if err.kind() == io::ErrorKind::NotFound && attempts < 3 => {
                    attempts += 1;
                }
                Err(err) => return Err(fail("cannot move the run into place", err)),
            }
        }
        sync_dir(&task_dir).map_err(|err| fail("cannot sync", err))?;
        Ok(())
    };
    build().inspect_err(|_| {
        let _ = fs::remove_dir_all(&staging);
    })?;
    Ok(encoded.bytes[WorkerLogChannel::Worker.index()].clone())
}

/// Opens a run from its directory. Blocking.
fn open_run(
    key: RunKey,
    dir: PathBuf,
    paths: LocalRunPaths,
    limits: RunLimits,
    disk: Arc<Disk>,
) -> Result<Arc<Run>> {
    let Some(metadata) = read_json::<RunMetadata>(&dir.join(META_FILE))? else {
        return Err(StoreError::RunNotFound(key.to_string()));
    };
    if metadata.task_id != key.task_id || metadata.run_id != key.run_id {
        return Err(StoreError::Corrupt(format!(
            "{} names run `{}/{}`",
            dir.join(META_FILE).display(),
            metadata.task_id,
            metadata.run_id
        )));
    }
    let state = read_json::<RunStateSnapshot>(&dir.join(STATE_FILE))?.ok_or_else(|| {
        StoreError::Corrupt(format!("{} is missing", dir.join(STATE_FILE).display()))
    })?;
    Run::open(key, dir, paths, metadata, state, limits, disk).map(Arc::new)
}

/// Writes a new file and fsyncs it.
fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut file = fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
