//! A run's objects on local disk: uploads staged in the run's `.uploads/`
//! and renamed into `artifacts/` or a checkpoint slot when whole and
//! verified, downloads, listings, and the sweep of abandoned uploads.
//!
//! # Invariants
//!
//! - An object appears under `artifacts/` or `checkpoints/<seq>/` only by
//!   one `renameat2(RENAME_NOREPLACE)` of a staged file that was fsynced
//!   and whose size and SHA-256 matched the commit; the directory is
//!   fsynced after. A reader never sees part of an object, and an object
//!   is never replaced by another.
//! - Every path under the run is resolved by descriptor, never through a
//!   symbolic link (`safe_dir`).
//! - A staged upload is `.uploads/<upload id>.part` (its bytes) and
//!   `.uploads/<upload id>.json` (the object it becomes), both created
//!   with fsyncs, so that it resumes after a crash of the server. Its
//!   committed size is what an fsync of the file holds.
//! - The bytes a run's objects and staged uploads take are counted once,
//!   when first needed, then kept in `RunObjects::total` as uploads write
//!   and are dropped; the per-run limit is checked against it before a
//!   byte is written.
//!
//! Lock order: one staged upload's lock, then the run's `inner` lock (a
//! commit places its object while the run's state holds still, so that
//! a run that ended, or a slot that was committed, takes nothing more),
//! then the run's `objects` lock, under which no other lock is taken.
//! Checkpoints take `inner` alone, and create the slot's directory under
//! it.

mod manifest;
mod reader;
pub(crate) mod safe_dir;
mod staged;
pub(crate) mod walk;

#[cfg(test)]
mod tests;

use std::{
    collections::HashMap,
    fs,
    io::{self, Read, Seek},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use self::{
    manifest::ManifestLine,
    safe_dir::{Dir, PathTrouble},
    staged::Staged,
};
pub use self::{reader::LocalObjectReader, staged::LocalUpload};
use super::{
    LocalStore,
    concurrency::{blocking, lock},
    layout::{RunDir, is_store_name},
    retention::LocalHold,
    run::Run,
};
use crate::{
    error::{Result, StoreError},
    ids::check_id,
    model::{RunKey, RunStateSnapshot},
    objects::{ObjectInfo, ObjectKind, ObjectListing, ObjectRef, ObjectStore, UploadStatus},
    time::format_iso,
};

/// The object state of one open run.
#[derive(Debug, Default)]
pub(crate) struct RunObjects {
    /// The bytes of the run's objects and staged uploads; `None` until
    /// counted from disk.
    total: Option<u64>,
    /// The uploads this process has open or had open, by upload id, with
    /// the object each becomes, so that it is checked without the upload's
    /// own lock: that lock is taken before this one, never after (a write
    /// holds its upload and counts its bytes here).
    uploads: HashMap<String, (ObjectRef, Arc<Mutex<Staged>>)>,
}

/// The object a staged upload becomes, as `.uploads/<id>.json` keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StagedTarget {
    /// `artifact` or `checkpoint`.
    kind: String,
    /// The checkpoint slot; 0 for an artifact.
    checkpoint_seq: u64,
    /// The path under the kind's directory.
    name: String,
}

impl StagedTarget {
    /// The target of an upload of `object`.
    fn of(object: &ObjectRef) -> Self {
        Self {
            kind: object.kind.as_str().to_owned(),
            checkpoint_seq: object.checkpoint_seq,
            name: object.name.clone(),
        }
    }
}

/// The store error for a path problem of `object`.
fn trouble<'a>(
    object: &'a ObjectRef,
    doing: &'static str,
) -> impl Fn(PathTrouble) -> StoreError + 'a {
    move |trouble| match trouble {
        PathTrouble::Unsafe(problem) => StoreError::UnsafePath {
            object: object.to_string(),
            problem,
        },
        PathTrouble::Io(err) => StoreError::io(format!("cannot {doing} {object}"), err),
    }
}

/// The directory components of `object` under the run, and its file name.
fn parts(object: &ObjectRef) -> (Vec<String>, String) {
    let mut dirs = match object.kind {
        ObjectKind::Artifact => vec![RunDir::artifacts_name().to_owned()],
        ObjectKind::Checkpoint => vec![
            RunDir::checkpoints_name().to_owned(),
            object.checkpoint_seq.to_string(),
        ],
    };
    let mut names: Vec<&str> = object.name.split('/').collect();
    let file = names
        .pop()
        .expect("a checked name has a component")
        .to_owned();
    dirs.extend(names.into_iter().map(str::to_owned));
    (dirs, file)
}

/// The SHA-256 of everything `reader` holds.
fn hash_all(mut reader: impl Read) -> io::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 20];
    loop {
        match reader.read(&mut buffer)? {
            0 => return Ok(hasher.finalize().into()),
            n => hasher.update(&buffer[..n]),
        }
    }
}

/// A SHA-256 from its hex form.
fn from_hex(hex_digest: &str) -> Option<[u8; 32]> {
    hex::decode(hex_digest).ok()?.try_into().ok()
}

/// The object `object` as it is on disk now, `None` when it is not there.
/// Its digest comes from the manifest when a line has its size, else from
/// its bytes.
fn stored_info(run_dir: &Dir, object: &ObjectRef) -> Result<Option<ObjectInfo>> {
    Ok(open_stored(run_dir, object)?.map(|(info, _)| info))
}

/// The object `object` open for reading, positioned at its start, with
/// what it is, both from the one descriptor; `None` when it is not there.
/// Its digest comes from the manifest when a line has its size, else from
/// its bytes.
fn open_stored(run_dir: &Dir, object: &ObjectRef) -> Result<Option<(ObjectInfo, fs::File)>> {
    let (dirs, file) = parts(object);
    let fail = trouble(object, "read");
    let Some(parent) = run_dir
        .descend(dirs.iter().map(String::as_str))
        .map_err(&fail)?
    else {
        return Ok(None);
    };
    let Some(mut opened) = parent.open_file(&file).map_err(&fail)? else {
        return Ok(None);
    };
    let meta = opened
        .metadata()
        .map_err(|err| fail(PathTrouble::Io(err)))?;
    let manifest = manifest::read(run_dir).map_err(&fail)?;
    let key = (object.kind, object.checkpoint_seq, object.name.clone());
    let sha256 = match manifest
        .get(&key)
        .filter(|line| line.size == meta.len())
        .and_then(|line| from_hex(&line.sha256))
    {
        Some(sha256) => sha256,
        None => hash_all(&opened)
            .and_then(|sha256| opened.rewind().map(|()| sha256))
            .map_err(|err| fail(PathTrouble::Io(err)))?,
    };
    let info = ObjectInfo {
        kind: object.kind,
        name: object.name.clone(),
        checkpoint_seq: object.checkpoint_seq,
        size: meta.len(),
        sha256,
        modified_at: iso(meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)),
    };
    Ok(Some((info, opened)))
}

/// A file time in `toISOString` form.
fn iso(time: SystemTime) -> String {
    format_iso(time.into())
}

/// Opens the run directory by descriptor.
fn open_run_dir(run: &Run) -> Result<Dir> {
    Dir::open(run.dir.path())
        .map_err(|err| StoreError::io(format!("cannot open {}", run.dir.path().display()), err))
}

impl Run {
    /// The bytes of the run's objects and staged uploads, counted from
    /// disk the first time.
    fn objects_total(&self, objects: &mut RunObjects) -> Result<u64> {
        if let Some(total) = objects.total {
            return Ok(total);
        }
        let total = walk::total_bytes(&open_run_dir(self)?).map_err(|err| {
            StoreError::io(format!("cannot count the objects of {}", self.key), err)
        })?;
        objects.total = Some(total);
        Ok(total)
    }

    /// Counts `added` bytes more (or fewer, negative) in the run's total.
    fn add_objects_bytes(&self, added: i128) {
        let mut objects = lock(&self.objects);
        if let Some(total) = &mut objects.total {
            *total = (i128::from(*total) + added).max(0) as u64;
        }
    }
}

impl LocalStore {
    /// Removes the staged uploads of one run that nothing wrote to or
    /// resumed for `age` (all of them when the run is terminal), and its
    /// `.uploads/` once that is empty; returns how many. Blocking.
    ///
    /// Each upload is found idle by its files first, without a lock, then
    /// taken under its locks only if it still is (see `staged::sweep`),
    /// so that a resume racing the sweep keeps its upload, or starts
    /// afresh, but never writes to a file the sweep removed.
    fn sweep_run_uploads(run: &Run, age: Duration) -> Result<u64> {
        let terminal = run.state().status.is_terminal();
        let mut swept = 0;
        for upload_id in staged::idle_uploads(run, age, terminal)? {
            if staged::sweep(run, &upload_id, age, terminal)? {
                swept += 1;
            }
        }
        staged::drop_uploads_dir_if_empty(run)?;
        Ok(swept)
    }

    /// The runs whose directory holds staged uploads.
    fn runs_with_uploads(&self) -> Result<Vec<RunKey>> {
        let mut keys = Vec::new();
        let root = self.layout.root();
        let tasks = fs::read_dir(root)
            .map_err(|err| StoreError::io(format!("cannot read {}", root.display()), err))?;
        for task in tasks.flatten() {
            let task_id = task.file_name().to_string_lossy().into_owned();
            if is_store_name(&task_id) || !task.file_type().is_ok_and(|kind| kind.is_dir()) {
                continue;
            }
            let Ok(runs) = fs::read_dir(task.path()) else {
                continue;
            };
            for run in runs.flatten() {
                let run_id = run.file_name().to_string_lossy().into_owned();
                if is_store_name(&run_id) {
                    continue;
                }
                if run.path().join(RunDir::uploads_name()).is_dir() {
                    keys.push(RunKey {
                        task_id: task_id.clone(),
                        run_id,
                    });
                }
            }
        }
        Ok(keys)
    }
}

impl ObjectStore for LocalStore {
    type Upload = LocalUpload;
    type Download = LocalObjectReader;

    async fn open_upload(&self, object: ObjectRef, upload_id: &str) -> Result<LocalUpload> {
        object.check()?;
        check_id("upload_id", upload_id)?;
        let run = self.run(&object.key).await?;
        let hold = LocalHold::new(run.clone())?;
        let limits = self.options.objects;
        let upload_id = upload_id.to_owned();
        blocking(move || LocalUpload::open(run, hold, object, upload_id, limits)).await
    }

    async fn upload_status(&self, object: ObjectRef, upload_id: &str) -> Result<UploadStatus> {
        object.check()?;
        check_id("upload_id", upload_id)?;
        let run = self.run(&object.key).await?;
        let upload_id = upload_id.to_owned();
        blocking(move || staged::status(&run, &object, &upload_id)).await
    }

    async fn open_object(&self, object: ObjectRef) -> Result<(ObjectInfo, LocalObjectReader)> {
        object.check()?;
        let run = self.run(&object.key).await?;
        blocking(move || {
            let (info, file) = open_stored(&open_run_dir(&run)?, &object)?
                .ok_or_else(|| StoreError::ObjectNotFound(object.to_string()))?;
            Ok((info, LocalObjectReader::new(file, object.to_string())))
        })
        .await
    }

    async fn list_objects(&self, key: &RunKey, kind: Option<ObjectKind>) -> Result<ObjectListing> {
        let run = self.run(key).await?;
        blocking(move || {
            let run_dir = open_run_dir(&run)?;
            let found = walk::objects(&run_dir, kind).map_err(|err| {
                StoreError::io(format!("cannot list the objects of {}", run.key), err)
            })?;
            let listing_fail = |trouble: PathTrouble| match trouble {
                PathTrouble::Unsafe(problem) => StoreError::UnsafePath {
                    object: run.key.to_string(),
                    problem,
                },
                PathTrouble::Io(err) => {
                    StoreError::io(format!("cannot read the manifest of {}", run.key), err)
                }
            };
            let manifest = manifest::read(&run_dir).map_err(listing_fail)?;
            let mut objects = Vec::with_capacity(found.len());
            for file in found {
                let key = (file.kind, file.checkpoint_seq, file.name.clone());
                let sha256 = match manifest
                    .get(&key)
                    .filter(|line| line.size == file.size)
                    .and_then(|line| from_hex(&line.sha256))
                {
                    Some(sha256) => sha256,
                    None => {
                        let object = ObjectRef {
                            key: run.key.clone(),
                            kind: file.kind,
                            name: file.name.clone(),
                            checkpoint_seq: file.checkpoint_seq,
                        };
                        // A file of a name no upload could give is not
                        // an object.
                        if object.check().is_err() {
                            continue;
                        }
                        match stored_info(&run_dir, &object) {
                            Ok(Some(info)) => info.sha256,
                            Ok(None) | Err(StoreError::UnsafePath { .. }) => continue,
                            Err(err) => return Err(err),
                        }
                    }
                };
                objects.push(ObjectInfo {
                    kind: file.kind,
                    name: file.name,
                    checkpoint_seq: file.checkpoint_seq,
                    size: file.size,
                    sha256,
                    modified_at: iso(file.modified),
                });
            }
            let total_bytes = run.objects_total(&mut lock(&run.objects))?;
            Ok(ObjectListing {
                objects,
                total_bytes,
            })
        })
        .await
    }

    async fn reserve_checkpoint(&self, key: &RunKey) -> Result<(u64, u64)> {
        let run = self.run(key).await?;
        blocking(move || run.reserve_checkpoint()).await
    }

    async fn commit_checkpoint(
        &self,
        key: &RunKey,
        checkpoint_seq: u64,
    ) -> Result<RunStateSnapshot> {
        let run = self.run(key).await?;
        blocking(move || run.commit_checkpoint(checkpoint_seq)).await
    }

    async fn sweep_uploads(&self, age: Duration) -> Result<u64> {
        let mut swept = 0;
        for key in self.runs_with_uploads()? {
            let run = match self.run(&key).await {
                Ok(run) => run,
                Err(StoreError::RunNotFound(_)) => continue,
                Err(err) => return Err(err),
            };
            let swept_here = blocking(move || LocalStore::sweep_run_uploads(&run, age)).await?;
            if swept_here > 0 {
                // Retention keeps what it learnt of a terminal run: its
                // bytes just went down.
                self.forget_run_facts(&key);
            }
            swept += swept_here;
        }
        Ok(swept)
    }
}

/// The manifest line of a committed object.
fn manifest_line(object: &ObjectRef, size: u64, sha256: &[u8; 32]) -> ManifestLine {
    ManifestLine {
        kind: object.kind.as_str().to_owned(),
        checkpoint_seq: object.checkpoint_seq,
        name: object.name.clone(),
        size,
        sha256: hex::encode(sha256),
    }
}
