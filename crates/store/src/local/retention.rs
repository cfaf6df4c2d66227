//! Retention on local disk: which runs there are and what they weigh, and
//! deleting a run so that it is gone whole or not at all.
//!
//! A pass surveys the runs root: for each run directory, `state.json` gives
//! the status and the finishing time, and the sizes of its files (walked
//! recursively, symbolic links not followed) give its bytes. A terminal
//! run never changes again, so what the survey learns of one is kept for
//! later passes, with the inode and modification time of its `state.json`
//! (which every state change replaces), so that a run deleted and prepared
//! again is read afresh.
//!
//! Deleting a run happens under the store's prepare lock, in this order:
//!
//! 1. [`Run::retire`] checks, under the run's locks, that it is terminal
//!    and that no stream is open on it, and marks it deleted: from here on
//!    every method answers `RunNotFound` and no stream can open on it.
//! 2. The directory is renamed into `<data dir>/.trash/<uuid>`, one atomic
//!    step: a crash leaves the run whole in place or whole in the trash,
//!    which the next start empties. Never a half-deleted run.
//! 3. The run leaves the map of open runs and the listing; a later call
//!    finds no directory and answers `RunNotFound`, and a `PrepareRun` of
//!    the same id (which waits for the prepare lock) creates a new run.
//! 4. The trash copy is removed, after the lock is released.

use std::{
    collections::{HashMap, HashSet},
    fs, io,
    os::unix::fs::MetadataExt,
    path::Path,
    sync::{Arc, Mutex},
};

use chrono::{DateTime, Utc};
use tracing::warn;

use super::{
    LocalStore,
    concurrency::{blocking, lock},
    fsio::{read_json, sync_dir},
    layout::{RunDir, StoreDir, is_store_name},
    run::{Busy, Run},
};
use crate::{
    error::{Result, StoreError},
    model::{RunKey, RunMetadata, RunStateSnapshot},
    retention::{Collection, Outcome, RetentionPolicy, RunFacts, run_pass},
};

/// Keeps a run from retention while it lives: readers hold one, and the
/// RPC layer holds one for each append stream (see
/// [`crate::RunStore::hold`]).
#[derive(Debug)]
pub struct LocalHold {
    /// The run held.
    run: Arc<Run>,
}

impl LocalHold {
    /// Holds `run`.
    ///
    /// # Errors
    ///
    /// [`StoreError::RunNotFound`] when retention took it.
    pub(super) fn new(run: Arc<Run>) -> Result<Self> {
        run.enter()?;
        Ok(Self { run })
    }
}

impl Drop for LocalHold {
    fn drop(&mut self) {
        self.run.leave();
    }
}

/// What the survey learnt of terminal runs, which never change.
#[derive(Debug, Default)]
pub(super) struct FactsCache {
    /// By run: the identity of its `state.json` when surveyed, and its
    /// facts.
    terminal: HashMap<RunKey, (StateIdentity, RunFacts)>,
}

/// Which `state.json` a run had: device, inode, and modification time in
/// nanoseconds.
type StateIdentity = (u64, u64, i64, i64);

impl LocalStore {
    /// Forgets what retention learnt of the run `key`, whose files changed
    /// (its abandoned uploads were swept): the next pass measures it
    /// again.
    pub(super) fn forget_run_facts(&self, key: &RunKey) {
        lock(&self.facts).terminal.remove(key);
    }

    /// A retention pass; see [`crate::RunStore::collect`].
    pub(super) async fn collect_runs(
        &self,
        policy: RetentionPolicy,
        dry_run: bool,
    ) -> Result<Collection> {
        let _pass = self.collect_lock.lock().await;
        let runs = {
            let (layout, facts) = (self.layout.clone(), self.facts.clone());
            blocking(move || survey(&layout, &facts)).await?
        };
        Ok(
            run_pass(policy, Utc::now(), runs, dry_run, |key| async move {
                match dry_run {
                    true => Ok(self.would_delete(&key)),
                    false => self.delete(&key).await,
                }
            })
            .await,
        )
    }

    /// What deleting a run would do now, for a dry run. A run that is not
    /// open has no stream open on it.
    fn would_delete(&self, key: &RunKey) -> Outcome {
        let run = lock(&self.runs)
            .get(key)
            .and_then(|cell| cell.get().cloned());
        match run {
            Some(run) if run.is_deleted() => Outcome::Gone,
            Some(run) if run.in_use() => Outcome::InUse,
            Some(run) if !run.state().status.is_terminal() => Outcome::NotTerminal,
            _ => Outcome::Deleted,
        }
    }

    /// Deletes a run, unless it is not terminal or a stream is open on it.
    async fn delete(&self, key: &RunKey) -> Result<Outcome> {
        let prepare = self.prepare_lock(key).lock().await;
        let run = match self.run(key).await {
            Ok(run) => run,
            Err(StoreError::RunNotFound(_)) => return Ok(Outcome::Gone),
            Err(err) => return Err(err),
        };
        match run.retire() {
            Ok(()) => {}
            Err(Busy::InUse) => return Ok(Outcome::InUse),
            Err(Busy::NotTerminal) => return Ok(Outcome::NotTerminal),
            Err(Busy::Deleted) => return Ok(Outcome::Gone),
        }
        let trash = self.layout.new_trash_entry();
        let moved = {
            let (layout, dir, trash) = (self.layout.clone(), run.dir.clone(), trash.clone());
            blocking(move || move_to_trash(&layout, &dir, &trash)).await
        };
        if let Err(err) = moved {
            run.unretire();
            return Err(err);
        }
        {
            let mut runs = lock(&self.runs);
            if runs
                .get(key)
                .and_then(|cell| cell.get())
                .is_some_and(|open| Arc::ptr_eq(open, &run))
            {
                runs.remove(key);
            }
        }
        if let Some(catalog) = self.catalog.lock().await.as_mut() {
            catalog.remove(&run.metadata);
        }
        lock(&self.facts).terminal.remove(key);
        drop(prepare);
        blocking(move || {
            if let Err(err) = fs::remove_dir_all(&trash) {
                warn!(dir = %trash.display(), cause = %err, "cannot empty the trash; the next start will");
            }
            Ok(())
        })
        .await?;
        Ok(Outcome::Deleted)
    }
}

/// Every run under `root` with what it weighs. Directories that are not
/// runs are left out. Blocking.
fn survey(layout: &StoreDir, cache: &Mutex<FactsCache>) -> Result<Vec<RunFacts>> {
    let root = layout.root();
    let mut cache = lock(cache);
    let mut seen = HashSet::new();
    let mut runs = Vec::new();
    let tasks = fs::read_dir(root)
        .map_err(|err| StoreError::io(format!("cannot list {}", root.display()), err))?;
    for task in tasks.flatten() {
        let Some(task_id) = plain_name(&task) else {
            continue;
        };
        let Ok(entries) = fs::read_dir(task.path()) else {
            continue;
        };
        for entry in entries.flatten() {
            let Some(run_id) = plain_name(&entry) else {
                continue;
            };
            let dir = RunDir::new(entry.path());
            let key = RunKey {
                task_id: task_id.clone(),
                run_id,
            };
            let Ok(meta) = fs::symlink_metadata(dir.state()) else {
                continue;
            };
            let identity = (meta.dev(), meta.ino(), meta.mtime(), meta.mtime_nsec());
            if let Some((cached, facts)) = cache.terminal.get(&key) {
                if *cached == identity {
                    runs.push(facts.clone());
                    seen.insert(key);
                    continue;
                }
            }
            match survey_run(&dir, key.clone()) {
                Ok(Some(facts)) => {
                    if facts.status.is_terminal() {
                        cache
                            .terminal
                            .insert(key.clone(), (identity, facts.clone()));
                    }
                    seen.insert(key);
                    runs.push(facts);
                }
                Ok(None) => {}
                Err(err) => {
                    warn!(dir = %dir.path().display(), cause = %err, "retention skips a run it cannot read")
                }
            }
        }
    }
    cache.terminal.retain(|key, _| seen.contains(key));
    Ok(runs)
}

/// The name of a directory entry that may be a task or run: a directory,
/// not a symbolic link, named in UTF-8 without a leading dot.
fn plain_name(entry: &fs::DirEntry) -> Option<String> {
    let name = entry.file_name().into_string().ok()?;
    let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
    (is_dir && !is_store_name(&name)).then_some(name)
}

/// What one run directory holds; `None` when it is not a run.
fn survey_run(dir: &RunDir, key: RunKey) -> Result<Option<RunFacts>> {
    if !dir.meta().is_file() {
        return Ok(None);
    }
    let Some(state) = read_json::<RunStateSnapshot>(&dir.state())? else {
        return Ok(None);
    };
    let mut finished_at = [
        state.finished_at.as_deref(),
        Some(state.updated_at.as_str()),
    ]
    .into_iter()
    .flatten()
    .find_map(parse_time);
    if finished_at.is_none() {
        finished_at = read_json::<RunMetadata>(&dir.meta())?
            .and_then(|metadata| parse_time(&metadata.created_at));
    }
    let bytes = dir_bytes(dir.path())
        .map_err(|err| StoreError::io(format!("cannot measure {}", dir.path().display()), err))?;
    Ok(Some(RunFacts {
        key,
        status: state.status,
        finished_at,
        bytes,
    }))
}

/// An RFC 3339 time, in UTC.
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|time| time.with_timezone(&Utc))
}

/// The sizes of the files under `dir`, summed. Symbolic links count as
/// themselves; files that vanish meanwhile count as nothing.
fn dir_bytes(dir: &Path) -> io::Result<u64> {
    let mut total = 0u64;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = match entry.metadata() {
            Ok(meta) => meta,
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err),
        };
        total += if meta.is_dir() {
            match dir_bytes(&entry.path()) {
                Ok(bytes) => bytes,
                Err(err) if err.kind() == io::ErrorKind::NotFound => 0,
                Err(err) => return Err(err),
            }
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// Renames a run directory into the trash, and removes its task directory
/// when it was the task's last run. Blocking.
fn move_to_trash(layout: &StoreDir, dir: &RunDir, trash: &Path) -> Result<()> {
    let dir = dir.path();
    let fail =
        |what: &str, err| StoreError::io(format!("cannot delete {}: {what}", dir.display()), err);
    let trash_dir = trash.parent().expect("the trash path has a parent");
    fs::create_dir_all(trash_dir).map_err(|err| fail("cannot create the trash", err))?;
    fs::rename(dir, trash).map_err(|err| fail("cannot move it to the trash", err))?;
    let task_dir = dir.parent().expect("a run directory has a parent");
    sync_dir(task_dir).map_err(|err| fail("cannot sync", err))?;
    if fs::remove_dir(task_dir).is_ok() {
        sync_dir(layout.root()).map_err(|err| fail("cannot sync", err))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{
        LocalStoreOptions, ReadFrom, RunStore,
        model::{ChannelSet, RunMetadataInput, RunStatePatch, RunStateSnapshotInput, RunStatus},
    };

    /// Every terminal run, whatever its age.
    const EVERYTHING: RetentionPolicy = RetentionPolicy {
        max_age: Some(Duration::ZERO),
        max_bytes: None,
    };

    fn key(run: &str) -> RunKey {
        RunKey {
            task_id: "t".into(),
            run_id: run.into(),
        }
    }

    async fn prepare(store: &LocalStore, run: &str) -> bool {
        let metadata = RunMetadataInput {
            task_id: "t".into(),
            step_id: "s".into(),
            step_name: "S".into(),
            run_id: run.into(),
            worker_kind: "shell".into(),
            attempt: 1,
            repo_root: "/repo".into(),
            worktree_path: "/repo".into(),
            created_at: "2026-01-01T00:00:00.000Z".into(),
            checkpoint_mode: "none".into(),
            prompt_summary: None,
            command: None,
        };
        let state = RunStateSnapshotInput {
            attempt: 1,
            started_at: "2026-01-01T00:00:00.000Z".into(),
            checkpoint_seq: None,
            summary: None,
        };
        store.prepare_run(metadata, state).await.unwrap().created
    }

    /// Prepares a run and fails it at `finished_at`.
    async fn finished(store: &LocalStore, run: &str, finished_at: &str) {
        prepare(store, run).await;
        let patch = RunStatePatch {
            status: Some(RunStatus::Failed),
            finished_at: Some(finished_at.into()),
            ..RunStatePatch::default()
        };
        store.update_state(&key(run), patch).await.unwrap();
    }

    fn open(dir: &Path) -> LocalStore {
        LocalStore::open(LocalStoreOptions::new(dir)).unwrap()
    }

    fn ids(collection: &Collection) -> Vec<&str> {
        collection
            .runs
            .iter()
            .map(|run| run.key.run_id.as_str())
            .collect()
    }

    /// A hold and a reader each keep their run; once they are gone the run
    /// is deleted, from disk and from every method.
    #[tokio::test]
    async fn holds_and_readers_keep_their_run() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        finished(&store, "r", "2026-01-02T00:00:00Z").await;
        let hold = store.hold(&key("r")).await.unwrap();
        let reader = store
            .open_reader(
                &key("r"),
                ReadFrom {
                    from_seq: 1,
                    channels: ChannelSet::ALL,
                    history_only: false,
                    ..ReadFrom::default()
                },
            )
            .await
            .unwrap();
        let kept = store.collect(EVERYTHING, false).await.unwrap();
        assert!(kept.runs.is_empty());
        assert_eq!(kept.kept_open, 1);
        drop(hold);
        assert_eq!(store.collect(EVERYTHING, true).await.unwrap().kept_open, 1);
        drop(reader);

        let would = store.collect(EVERYTHING, true).await.unwrap();
        assert_eq!(ids(&would), ["r"]);
        assert!(
            store.get_run(&key("r")).await.is_ok(),
            "a dry run deletes nothing"
        );
        let deleted = store.collect(EVERYTHING, false).await.unwrap();
        assert_eq!(deleted.runs, would.runs);
        assert!(deleted.bytes_before > 0);
        assert_eq!(deleted.bytes_after, 0);
        assert!(
            !dir.path().join("t").exists(),
            "the task's last run took its directory along"
        );
        assert_eq!(
            fs::read_dir(StoreDir::new(dir.path().into()).trash())
                .unwrap()
                .count(),
            0
        );
        assert!(matches!(
            store.get_run(&key("r")).await,
            Err(StoreError::RunNotFound(_))
        ));
        assert!(matches!(
            store.hold(&key("r")).await,
            Err(StoreError::RunNotFound(_))
        ));
        let listed = store
            .list_runs(crate::model::RunQuery {
                page_size: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(listed.runs.is_empty());
    }

    /// A run deleted and prepared again is a new run, which is not terminal
    /// and so not due, whatever retention learnt of the old one.
    #[tokio::test]
    async fn a_run_prepared_again_after_deletion_is_new() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        finished(&store, "r", "2026-01-02T00:00:00Z").await;
        assert_eq!(ids(&store.collect(EVERYTHING, false).await.unwrap()), ["r"]);
        assert!(prepare(&store, "r").await, "prepared anew");
        let view = store.get_run(&key("r")).await.unwrap();
        assert_eq!(view.state.status, RunStatus::Prepared);
        let everything = RetentionPolicy {
            max_age: Some(Duration::ZERO),
            max_bytes: Some(0),
        };
        assert!(
            store
                .collect(everything, false)
                .await
                .unwrap()
                .runs
                .is_empty()
        );
        assert!(store.get_run(&key("r")).await.is_ok());
    }

    /// Prepares of the same run racing a deletion either find the old run
    /// or create a new one: the directory is always a whole run or absent.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn prepare_racing_a_deletion_is_safe() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(open(dir.path()));
        for round in 0..20 {
            let run = format!("r{round}");
            finished(&store, &run, "2026-01-02T00:00:00Z").await;
            let racer = {
                let (store, run) = (store.clone(), run.clone());
                tokio::spawn(async move { prepare(&store, &run).await })
            };
            store.collect(EVERYTHING, false).await.unwrap();
            let created = racer.await.unwrap();
            match store.get_run(&key(&run)).await {
                Ok(view) => {
                    assert!(created, "only a new run survives");
                    assert_eq!(view.state.status, RunStatus::Prepared);
                    assert!(
                        StoreDir::new(dir.path().into())
                            .run(&key(&run))
                            .meta()
                            .is_file()
                    );
                }
                Err(StoreError::RunNotFound(_)) => {
                    assert!(!created, "a new run is never deleted");
                    assert!(!dir.path().join("t").join(&run).exists());
                }
                Err(err) => panic!("{err}"),
            }
        }
    }

    /// What a crash left in the trash is removed when the store opens.
    #[test]
    fn the_trash_is_emptied_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let left = StoreDir::new(dir.path().into()).trash().join("x");
        fs::create_dir_all(&left).unwrap();
        fs::write(RunDir::new(left.clone()).meta(), b"{}").unwrap();
        open(dir.path());
        assert!(!StoreDir::new(dir.path().into()).trash().exists());
    }

    /// Sizes count every file of a run, in subdirectories too.
    #[test]
    fn sizes_count_every_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("a/b")).unwrap();
        fs::write(dir.path().join("x"), [0u8; 10]).unwrap();
        fs::write(dir.path().join("a/b/y"), [0u8; 32]).unwrap();
        assert_eq!(dir_bytes(dir.path()).unwrap(), 42);
    }
}
