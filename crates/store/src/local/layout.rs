//! Representations of the store in the file system: every name and path of
//! the `local-run-v1` layout is built here, and nowhere else.
//!
//! ```text
//! <runs root>/                the data directory (`runs` by default)
//!   <taskId>/<runId>/         a run: [`RunDir`]
//!     meta.json               RunMetadata, written once
//!     state.json              RunStateSnapshot, replaced atomically
//!     worker.log              lifecycle entries, JSON Lines
//!     stdout.log              stdout entries, JSON Lines
//!     stderr.log              stderr entries, JSON Lines
//!     journal.jsonl           one record per commit (see `journal`)
//!     checkpoints/<seq>/...   checkpoint slots and their objects
//!     artifacts/...           artifacts
//!     .uploads/               uploads in progress (see `objects`)
//!     .objects.jsonl          sizes and digests of committed objects
//!   .staging/<uuid>/          runs being prepared, renamed into place
//!   .trash/<uuid>/            runs being deleted by retention
//!   .write-probe              the disk probe's file (see `disk`)
//!   .lock                     held by the process that has the store
//!                             open, with its pid (see `dir_lock`)
//! ```
//!
//! Names that start with a dot are the store's own: ids never start with
//! one (see [`crate::ids`]), so listings skip them. A new file of a run is
//! a method of [`RunDir`] (and, when served, a field of
//! [`LocalRunPaths`]); a new directory of the store is a method of
//! [`StoreDir`].

use std::path::{Path, PathBuf};

use baa_logging_config::DEFAULT_RUN_LAYOUT_VERSION;

use crate::model::{LocalRunPaths, PerChannel, RunKey, WorkerLogChannel};

/// `meta.json`.
const META_FILE: &str = "meta.json";
/// `state.json`.
const STATE_FILE: &str = "state.json";
/// The append journal.
const JOURNAL_FILE: &str = "journal.jsonl";
/// Each channel's log file.
const LOG_FILES: PerChannel<&str> = PerChannel::new("worker.log", "stdout.log", "stderr.log");
/// A run's checkpoints.
const CHECKPOINTS_DIR: &str = "checkpoints";
/// A run's artifacts.
const ARTIFACTS_DIR: &str = "artifacts";
/// A run's uploads in progress, staged until they are committed.
const UPLOADS_DIR: &str = ".uploads";
/// The sizes and digests of a run's committed objects.
const OBJECTS_MANIFEST: &str = ".objects.jsonl";
/// Where runs are built before they are renamed into place.
const STAGING_DIR: &str = ".staging";
/// Where retention moves runs before it removes them.
const TRASH_DIR: &str = ".trash";
/// The file a disk probe writes and removes.
const PROBE_FILE: &str = ".write-probe";
/// The file whose lock says which process has the store open.
const LOCK_FILE: &str = ".lock";

/// The runs root and the store's own places in it.
#[derive(Debug, Clone)]
pub(crate) struct StoreDir {
    /// The runs root, absolute.
    root: PathBuf,
}

impl StoreDir {
    /// The layout under the runs root `root` (absolute).
    pub(crate) fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// The runs root.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// The directory that holds the runs root: the contract's `repoRoot`.
    pub(crate) fn repo_root(&self) -> &Path {
        self.root.parent().unwrap_or(&self.root)
    }

    /// The directory of a task's runs.
    pub(crate) fn task(&self, task_id: &str) -> PathBuf {
        self.root.join(task_id)
    }

    /// A run's directory.
    pub(crate) fn run(&self, key: &RunKey) -> RunDir {
        RunDir::new(self.task(&key.task_id).join(&key.run_id))
    }

    /// Where runs are built before they are renamed into place.
    pub(crate) fn staging(&self) -> PathBuf {
        self.root.join(STAGING_DIR)
    }

    /// A new, unused directory to build a run in.
    pub(crate) fn new_staged_run(&self) -> RunDir {
        RunDir::new(self.staging().join(uuid::Uuid::new_v4().to_string()))
    }

    /// Where retention moves runs before it removes them.
    pub(crate) fn trash(&self) -> PathBuf {
        self.root.join(TRASH_DIR)
    }

    /// A new, unused place in the trash.
    pub(crate) fn new_trash_entry(&self) -> PathBuf {
        self.trash().join(uuid::Uuid::new_v4().to_string())
    }

    /// The file whose lock says which process has the store open, and
    /// holds its pid.
    pub(crate) fn lock_file(&self) -> PathBuf {
        self.root.join(LOCK_FILE)
    }

    /// The file a disk probe writes and removes.
    pub(crate) fn probe_file(&self) -> PathBuf {
        self.root.join(PROBE_FILE)
    }

    /// The paths of a run, as the contract serves them.
    pub(crate) fn paths(&self, key: &RunKey) -> LocalRunPaths {
        let run = self.run(key);
        let show = |path: &Path| path.to_string_lossy().into_owned();
        LocalRunPaths {
            layout_version: DEFAULT_RUN_LAYOUT_VERSION.to_owned(),
            repo_root: show(self.repo_root()),
            runs_root_dir: show(&self.root),
            task_runs_dir: show(&self.task(&key.task_id)),
            run_dir: show(run.path()),
            checkpoints_dir: show(&run.checkpoints()),
            artifacts_dir: show(&run.artifacts()),
            meta_path: show(&run.meta()),
            state_path: show(&run.state()),
            worker_log_path: show(&run.log(WorkerLogChannel::Worker)),
            stdout_log_path: show(&run.log(WorkerLogChannel::Stdout)),
            stderr_log_path: show(&run.log(WorkerLogChannel::Stderr)),
        }
    }
}

/// Whether a directory entry's name is the store's own, not a task or run.
pub(crate) fn is_store_name(name: &str) -> bool {
    name.starts_with('.')
}

/// A run's directory and the files in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunDir {
    /// The directory.
    path: PathBuf,
}

impl RunDir {
    /// The run directory at `path`.
    pub(crate) fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// The directory itself.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// `meta.json`.
    pub(crate) fn meta(&self) -> PathBuf {
        self.path.join(META_FILE)
    }

    /// `state.json`.
    pub(crate) fn state(&self) -> PathBuf {
        self.path.join(STATE_FILE)
    }

    /// `journal.jsonl`.
    pub(crate) fn journal(&self) -> PathBuf {
        self.path.join(JOURNAL_FILE)
    }

    /// A channel's log file.
    pub(crate) fn log(&self, channel: WorkerLogChannel) -> PathBuf {
        self.path.join(LOG_FILES[channel])
    }

    /// `checkpoints/`.
    pub(crate) fn checkpoints(&self) -> PathBuf {
        self.path.join(CHECKPOINTS_DIR)
    }

    /// `artifacts/`.
    pub(crate) fn artifacts(&self) -> PathBuf {
        self.path.join(ARTIFACTS_DIR)
    }

    /// The name of the directory of the uploads in progress, in the run
    /// directory: `<upload id>.part` (the bytes) and `<upload id>.json`
    /// (the object it becomes). It exists only while an upload is staged.
    pub(crate) fn uploads_name() -> &'static str {
        UPLOADS_DIR
    }

    /// The name of the objects' manifest in the run directory: one JSON
    /// line per committed object, with its size and SHA-256.
    pub(crate) fn objects_manifest_name() -> &'static str {
        OBJECTS_MANIFEST
    }

    /// The name of the artifacts directory in the run directory.
    pub(crate) fn artifacts_name() -> &'static str {
        ARTIFACTS_DIR
    }

    /// The name of the checkpoints directory in the run directory.
    pub(crate) fn checkpoints_name() -> &'static str {
        CHECKPOINTS_DIR
    }

    /// The directories a new run is created with.
    pub(crate) fn subdirectories(&self) -> [PathBuf; 2] {
        [self.checkpoints(), self.artifacts()]
    }
}

/// The temporary file `path` is written to before it is renamed over
/// `path`: in the same directory, named with a leading dot.
pub(crate) fn temp_file(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .expect("a file path has a name")
        .to_string_lossy();
    path.with_file_name(format!(".{name}.tmp"))
}
