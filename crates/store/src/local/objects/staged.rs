//! One staged upload: its file in `.uploads/`, the bytes written so far
//! and their running SHA-256, and the commit that verifies them and
//! renames the file into place.
//!
//! A stream that resumes an upload takes it over: the upload's generation
//! goes up by one, and a stream of an older generation may write no more
//! (a client whose connection broke reconnects before the server noticed).
//!
//! The staged file is open only while the upload's current stream lives:
//! an upload nobody writes to holds no descriptor, however long it waits
//! to be resumed, and a run holds at most `max_run_uploads` of them.

use std::{
    fs::File,
    io::{Read, Write},
    os::unix::fs::{FileExt, MetadataExt},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use sha2::{Digest, Sha256};

use super::{
    RunObjects, StagedTarget, hash_all, manifest, manifest_line, open_run_dir, parts,
    safe_dir::{Dir, PathTrouble, is_regular, modified},
    stored_info, trouble,
};
use crate::{
    error::{Result, StoreError},
    local::{
        concurrency::{blocking, lock},
        layout::RunDir,
        retention::LocalHold,
        run::Run,
        writeback,
    },
    objects::{ObjectInfo, ObjectLimits, ObjectRef, ObjectUpload, UploadCommit, UploadStatus},
};

/// Pieces of at least this many bytes are hashed on a thread of their own
/// while they are written.
const PARALLEL_HASH_BYTES: usize = 256 * 1024;

/// An upload's staged file and what is known of it.
#[derive(Debug)]
pub(crate) struct Staged {
    /// The object it becomes.
    object: ObjectRef,
    /// The bytes, open while the upload's current stream lives; `None`
    /// between streams, and once committed or swept.
    file: Option<File>,
    /// Committed or swept: no stream may open it again.
    done: bool,
    /// The bytes written.
    size: u64,
    /// Write-back to the disk was started for the bytes before this.
    written_back: u64,
    /// The SHA-256 of those bytes, so far.
    hasher: Sha256,
    /// Goes up by one with each stream that opens the upload.
    generation: u64,
    /// When a stream last opened the upload or wrote to it: the sweep
    /// takes only an upload idle since long enough.
    touched: Instant,
}

impl Staged {
    /// Forgets the file: the upload was committed or swept, and a stream
    /// still holding it may write no more.
    fn drop_files(&mut self) {
        self.file = None;
        self.done = true;
    }
}

/// The staged file's name.
fn part_name(upload_id: &str) -> String {
    format!("{upload_id}.part")
}

/// The name of the file that says what the upload becomes.
fn target_name(upload_id: &str) -> String {
    format!("{upload_id}.json")
}

/// What `.uploads/<id>.json` says the upload becomes, if it exists.
fn read_target(uploads: &Dir, upload_id: &str, object: &ObjectRef) -> Result<Option<StagedTarget>> {
    let fail = trouble(object, "read the upload of");
    let Some(mut file) = uploads.open_file(&target_name(upload_id)).map_err(&fail)? else {
        return Ok(None);
    };
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|err| fail(PathTrouble::Io(err)))?;
    // A target torn by a crash while it was created: the upload never
    // took a byte, and starts again.
    Ok(serde_json::from_str(&text).ok())
}

/// Refuses an upload id that stages another object.
fn check_target(found: &StagedTarget, object: &ObjectRef, upload_id: &str) -> Result<()> {
    if *found != StagedTarget::of(object) {
        return Err(StoreError::UploadConflict {
            upload_id: upload_id.to_owned(),
            other: format!(
                "{}: {} {}{}",
                object.key,
                found.kind,
                match found.checkpoint_seq {
                    0 => String::new(),
                    seq => format!("{seq}/"),
                },
                found.name
            ),
        });
    }
    Ok(())
}

/// The staged upload `upload_id` of `object`, from this process's memory,
/// then from disk, else new (one of at most `max_run_uploads`).
///
/// The run's `objects` lock is held for short steps only: a staged file
/// resumed from disk (after a restart) is hashed without it, which takes
/// seconds for a large one, and is taken only if, under the lock again,
/// it is still the upload's file and nobody took the upload meanwhile;
/// else the lookup starts over. Staged files are created and removed
/// under that lock alone, so it sees them as they are.
fn staged(
    run: &Run,
    object: &ObjectRef,
    upload_id: &str,
    max_run_uploads: u64,
) -> Result<Arc<Mutex<Staged>>> {
    loop {
        if let Some(known) = known(&lock(&run.objects), object, upload_id)? {
            return Ok(known);
        }
        let hashed = hash_staged(run, object, upload_id)?;
        let mut objects = lock(&run.objects);
        if let Some(known) = known(&objects, object, upload_id)? {
            return Ok(known);
        }
        if let Some(staged) = settle(
            run,
            &mut objects,
            object,
            upload_id,
            hashed,
            max_run_uploads,
        )? {
            return Ok(staged);
        }
    }
}

/// The upload `upload_id` of `object` as this process knows it, if it
/// does; an upload id that stages another object is refused.
fn known(
    objects: &RunObjects,
    object: &ObjectRef,
    upload_id: &str,
) -> Result<Option<Arc<Mutex<Staged>>>> {
    let Some((target, staged)) = objects.uploads.get(upload_id) else {
        return Ok(None);
    };
    check_target(&StagedTarget::of(target), object, upload_id)?;
    Ok(Some(staged.clone()))
}

/// A staged file found on disk, made durable and hashed whole.
struct Hashed {
    /// The file, open for reading and writing.
    file: File,
    /// Its device and inode, to tell it is still the staged file.
    identity: (u64, u64),
    /// Its bytes.
    size: u64,
    /// Their SHA-256 so far.
    hasher: Sha256,
}

impl Hashed {
    /// Whether `stat`, of the staged file's name now, is this file as it
    /// was hashed.
    fn is(&self, stat: &nix::sys::stat::FileStat) -> bool {
        self.identity == (stat.st_dev, stat.st_ino) && self.size == stat.st_size as u64
    }
}

/// The staged file of upload `upload_id` as the disk holds it (after a
/// restart), synced and hashed; `None` when there is none. Takes no lock:
/// what it found is checked again under the run's `objects` lock.
fn hash_staged(run: &Run, object: &ObjectRef, upload_id: &str) -> Result<Option<Hashed>> {
    let fail = trouble(object, "stage");
    let io = |err| fail(PathTrouble::Io(err));
    let Some(uploads) = open_run_dir(run)?
        .child(RunDir::uploads_name())
        .map_err(&fail)?
    else {
        return Ok(None);
    };
    let Some(found) = read_target(&uploads, upload_id, object)? else {
        return Ok(None);
    };
    check_target(&found, object, upload_id)?;
    let Some(file) = uploads
        .open_rw(&part_name(upload_id), false)
        .map_err(&fail)?
    else {
        return Ok(None);
    };
    // What the file holds is made durable, then hashed once.
    file.sync_all().map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 20];
    let mut size = 0u64;
    let mut reader = &file;
    loop {
        let n = reader.read(&mut buffer).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        size += n as u64;
    }
    Ok(Some(Hashed {
        file,
        identity: (meta.dev(), meta.ino()),
        size,
        hasher,
    }))
}

/// Under the run's `objects` lock, for an upload this process does not
/// know: takes the staged file `hashed` if it is still the upload's, or
/// creates what is missing; `None` when the disk changed since `hashed`
/// was read, and the lookup must start over.
fn settle(
    run: &Run,
    objects: &mut RunObjects,
    object: &ObjectRef,
    upload_id: &str,
    hashed: Option<Hashed>,
    max_run_uploads: u64,
) -> Result<Option<Arc<Mutex<Staged>>>> {
    let fail = trouble(object, "stage");
    let run_dir = open_run_dir(run)?;
    let (uploads, created) = run_dir
        .child_or_create(RunDir::uploads_name())
        .map_err(&fail)?;
    if created {
        run_dir.sync().map_err(|err| fail(PathTrouble::Io(err)))?;
    }
    let (file, size, hasher) = match read_target(&uploads, upload_id, object)? {
        Some(found) => {
            check_target(&found, object, upload_id)?;
            match (uploads.stat(&part_name(upload_id)).map_err(&fail)?, hashed) {
                (Some(stat), Some(hashed)) if hashed.is(&stat) => {
                    (hashed.file, hashed.size, hashed.hasher)
                }
                (Some(_), _) => return Ok(None),
                (None, _) => create_part(&uploads, upload_id, object)?,
            }
        }
        None => {
            check_upload_count(run, &uploads, max_run_uploads, object)?;
            create_target(&uploads, upload_id, object)?;
            create_part(&uploads, upload_id, object)?
        }
    };
    let staged = Arc::new(Mutex::new(Staged {
        object: object.clone(),
        file: Some(file),
        done: false,
        size,
        written_back: size,
        hasher,
        generation: 0,
        touched: Instant::now(),
    }));
    objects
        .uploads
        .insert(upload_id.to_owned(), (object.clone(), staged.clone()));
    Ok(Some(staged))
}

/// Writes `.uploads/<id>.json`, what the upload becomes, durably (a torn
/// one left by a crash is replaced).
fn create_target(uploads: &Dir, upload_id: &str, object: &ObjectRef) -> Result<()> {
    let fail = trouble(object, "stage");
    let mut bytes = serde_json::to_vec(&StagedTarget::of(object)).expect("a target serializes");
    bytes.push(b'\n');
    uploads
        .remove(&target_name(upload_id))
        .map_err(|err| fail(PathTrouble::Io(err)))?;
    let mut target = uploads
        .open_rw(&target_name(upload_id), true)
        .map_err(&fail)?
        .ok_or_else(|| fail(PathTrouble::Io(std::io::ErrorKind::NotFound.into())))?;
    target
        .write_all(&bytes)
        .and_then(|()| target.sync_all())
        .map_err(|err| fail(PathTrouble::Io(err)))
}

/// Opens the staged file of an upload known to this process again, for a
/// stream that resumes it.
fn reopen_part(run: &Run, object: &ObjectRef, upload_id: &str) -> Result<File> {
    let fail = trouble(object, "stage");
    let gone = || StoreError::UploadTakenOver {
        upload_id: upload_id.to_owned(),
    };
    open_run_dir(run)?
        .child(RunDir::uploads_name())
        .map_err(&fail)?
        .ok_or_else(gone)?
        .open_rw(&part_name(upload_id), false)
        .map_err(&fail)?
        .ok_or_else(gone)
}

/// Refuses a new upload when the run already stages
/// [`ObjectLimits::max_run_uploads`] of them (in `.uploads/`, each with its
/// `.json`): each one may be resumed, so each is kept until it is
/// committed or swept, and a write token could otherwise stage without end.
fn check_upload_count(run: &Run, uploads: &Dir, max: u64, object: &ObjectRef) -> Result<()> {
    let staged = uploads
        .entries()
        .map_err(|err| StoreError::io(format!("cannot stage {object}"), err))?
        .iter()
        .filter(|entry| entry.name.ends_with(".json"))
        .count() as u64;
    if staged >= max {
        return Err(StoreError::TooManyUploads {
            key: run.key.clone(),
            max,
        });
    }
    Ok(())
}

/// Creates an empty staged file, durably.
fn create_part(uploads: &Dir, upload_id: &str, object: &ObjectRef) -> Result<(File, u64, Sha256)> {
    let fail = trouble(object, "stage");
    uploads
        .remove(&part_name(upload_id))
        .map_err(|err| fail(PathTrouble::Io(err)))?;
    let file = uploads
        .open_rw(&part_name(upload_id), true)
        .map_err(&fail)?
        .ok_or_else(|| fail(PathTrouble::Io(std::io::ErrorKind::NotFound.into())))?;
    uploads.sync().map_err(|err| fail(PathTrouble::Io(err)))?;
    Ok((file, 0, Sha256::new()))
}

/// How much of upload `upload_id` of `object` the run holds durably, and
/// the object of that name already in place, if any.
pub(super) fn status(run: &Run, object: &ObjectRef, upload_id: &str) -> Result<UploadStatus> {
    let run_dir = open_run_dir(run)?;
    let staged = staged_size(run, &run_dir, object, upload_id)?;
    let existing = stored_info(&run_dir, object)?;
    Ok(UploadStatus {
        committed_size: staged.unwrap_or(0),
        complete: existing.clone().filter(|_| staged.is_none()),
        existing,
    })
}

/// The bytes upload `upload_id` of `object` has staged, fsynced first;
/// `None` when nothing is staged for it.
fn staged_size(
    run: &Run,
    run_dir: &Dir,
    object: &ObjectRef,
    upload_id: &str,
) -> Result<Option<u64>> {
    let fail = trouble(object, "read the upload of");
    let in_memory = lock(&run.objects).uploads.get(upload_id).cloned();
    if let Some((target, staged)) = in_memory {
        check_target(&StagedTarget::of(&target), object, upload_id)?;
        let staged = lock(&staged);
        if let Some(file) = &staged.file {
            file.sync_data().map_err(|err| fail(PathTrouble::Io(err)))?;
            return Ok(Some(staged.size));
        }
    }
    if let Some(uploads) = run_dir.child(RunDir::uploads_name()).map_err(&fail)?
        && let Some(found) = read_target(&uploads, upload_id, object)?
    {
        check_target(&found, object, upload_id)?;
        if let Some(file) = uploads
            .open_rw(&part_name(upload_id), false)
            .map_err(&fail)?
        {
            file.sync_all().map_err(|err| fail(PathTrouble::Io(err)))?;
            let size = file
                .metadata()
                .map_err(|err| fail(PathTrouble::Io(err)))?
                .len();
            return Ok(Some(size));
        }
    }
    Ok(None)
}

/// The upload ids of the staged uploads of `run` whose files nothing
/// changed for `age` (all of them when `terminal`), as the disk shows them
/// now, without a lock: [`sweep`] decides again under the locks. A
/// `.json` whose `.part` a crash never created counts as an upload too.
pub(super) fn idle_uploads(run: &Run, age: Duration, terminal: bool) -> Result<Vec<String>> {
    let fail = |err| StoreError::io(format!("cannot read the uploads of {}", run.key), err);
    let uploads = match open_run_dir(run)?.child(RunDir::uploads_name()) {
        Ok(Some(uploads)) => uploads,
        Ok(None) => return Ok(Vec::new()),
        // Not a directory the store made: nothing it staged is there.
        Err(PathTrouble::Unsafe(_)) => return Ok(Vec::new()),
        Err(PathTrouble::Io(err)) => return Err(fail(err)),
    };
    let mut last_change = std::collections::BTreeMap::<String, SystemTime>::new();
    for entry in uploads.entries().map_err(fail)? {
        let Some(upload_id) = entry
            .name
            .strip_suffix(".part")
            .or_else(|| entry.name.strip_suffix(".json"))
        else {
            continue;
        };
        let changed = last_change
            .entry(upload_id.to_owned())
            .or_insert(SystemTime::UNIX_EPOCH);
        *changed = (*changed).max(modified(&entry.stat));
    }
    Ok(last_change
        .into_iter()
        .filter(|(_, changed)| terminal || idle_since(*changed) >= age)
        .map(|(upload_id, _)| upload_id)
        .collect())
}

/// How long ago `time` was; nothing when it is in the future.
fn idle_since(time: SystemTime) -> Duration {
    SystemTime::now().duration_since(time).unwrap_or_default()
}

/// Removes the staged upload `upload_id` of `run` if it is still idle for
/// `age` (whatever its age when `terminal`); true when it was removed.
///
/// Exclusive with a resume: an upload this process knows is decided on
/// under its own lock, by when a stream last opened or wrote it, and is
/// marked done before its files go, so a stream or a resume that holds it
/// gets `UploadTakenOver`; its files go under the run's `objects` lock,
/// under which a resume looks an upload up and settles it (see
/// [`staged`]), so a later resume finds no file and starts afresh.
/// Blocking.
pub(super) fn sweep(run: &Run, upload_id: &str, age: Duration, terminal: bool) -> Result<bool> {
    let known = lock(&run.objects)
        .uploads
        .get(upload_id)
        .map(|(_, staged)| staged.clone());
    if let Some(known) = known {
        let mut staged = lock(&known);
        if staged.done || (!terminal && staged.touched.elapsed() < age) {
            return Ok(false);
        }
        staged.drop_files();
        let mut objects = lock(&run.objects);
        if objects
            .uploads
            .get(upload_id)
            .is_some_and(|(_, current)| Arc::ptr_eq(current, &known))
        {
            objects.uploads.remove(upload_id);
        }
        return remove_staged(run, &mut objects, upload_id, None);
    }
    let mut objects = lock(&run.objects);
    if objects.uploads.contains_key(upload_id) {
        // Resumed since it was looked up: not idle.
        return Ok(false);
    }
    remove_staged(run, &mut objects, upload_id, (!terminal).then_some(age))
}

/// Removes the files of the staged upload `upload_id`, unless `idle_for`
/// is given and one of them changed more recently; true when there was
/// something to remove. The caller holds the run's `objects` lock
/// (`objects`), and has taken the upload from whatever stream held it.
fn remove_staged(
    run: &Run,
    objects: &mut RunObjects,
    upload_id: &str,
    idle_for: Option<Duration>,
) -> Result<bool> {
    let fail = |err| {
        StoreError::io(
            format!("cannot sweep the upload {upload_id} of {}", run.key),
            err,
        )
    };
    let trouble = |trouble| match trouble {
        PathTrouble::Io(err) => fail(err),
        PathTrouble::Unsafe(problem) => fail(std::io::Error::other(problem)),
    };
    let Some(uploads) = open_run_dir(run)?
        .child(RunDir::uploads_name())
        .map_err(trouble)?
    else {
        return Ok(false);
    };
    let part = uploads.stat(&part_name(upload_id)).map_err(trouble)?;
    let target = uploads.stat(&target_name(upload_id)).map_err(trouble)?;
    let changed = [&part, &target].into_iter().flatten().map(modified).max();
    let Some(changed) = changed else {
        return Ok(false);
    };
    if idle_for.is_some_and(|age| idle_since(changed) < age) {
        return Ok(false);
    }
    uploads.remove(&target_name(upload_id)).map_err(fail)?;
    uploads.remove(&part_name(upload_id)).map_err(fail)?;
    uploads.sync().map_err(fail)?;
    let size = part.map_or(0, |part| part.st_size as u64);
    if let Some(total) = &mut objects.total {
        *total = total.saturating_sub(size);
    }
    Ok(true)
}

/// Removes the run's `.uploads/` if it holds nothing, so that the sweep
/// does not look at the run again until an upload stages there. Blocking.
pub(super) fn drop_uploads_dir_if_empty(run: &Run) -> Result<()> {
    let run_dir = open_run_dir(run)?;
    drop_if_empty(&run_dir, &lock(&run.objects));
    Ok(())
}

/// Removes `.uploads/` from the run open as `run_dir` if it is empty. The
/// caller holds the run's `objects` lock (`_objects`), under which staged
/// files are created: an upload that creates the directory has its files
/// in it before the lock is released, and is never left without it. Not
/// fsynced: a removal a crash forgets leaves an empty directory, which the
/// next sweep removes. A failure leaves the directory, which is harmless.
fn drop_if_empty(run_dir: &Dir, _objects: &RunObjects) {
    let _ = run_dir.remove_empty_dir(RunDir::uploads_name());
}

/// An upload in progress on local disk. While it lives, retention never
/// deletes its run.
#[derive(Debug)]
pub struct LocalUpload {
    /// What does not change while the stream lives, shared with the
    /// blocking pool.
    shared: Arc<UploadShared>,
    /// The bytes the upload holds, as of this stream's last write.
    size: u64,
}

/// The part of a [`LocalUpload`] the blocking pool works with.
#[derive(Debug)]
struct UploadShared {
    /// The run.
    run: Arc<Run>,
    /// Keeps the run from retention.
    _hold: LocalHold,
    /// The staged upload, shared with later streams that resume it.
    staged: Arc<Mutex<Staged>>,
    /// The upload's id.
    upload_id: String,
    /// This stream's generation: a later stream's takes over.
    generation: u64,
    /// The limits on the run's objects.
    limits: ObjectLimits,
}

impl LocalUpload {
    /// Opens (or resumes) the upload `upload_id` of `object`. Blocking.
    pub(super) fn open(
        run: Arc<Run>,
        hold: LocalHold,
        object: ObjectRef,
        upload_id: String,
        limits: ObjectLimits,
    ) -> Result<Self> {
        run.check_objects_allowed(&object)?;
        run.objects_total(&mut lock(&run.objects))?;
        let staged = staged(&run, &object, &upload_id, limits.max_run_uploads)?;
        let (generation, size) = {
            let mut staged = lock(&staged);
            if staged.done {
                // Committed or swept since it was looked up.
                return Err(StoreError::UploadTakenOver { upload_id });
            }
            if staged.file.is_none() {
                // Resumed after its last stream ended, which closed it.
                staged.file = Some(reopen_part(&run, &object, &upload_id)?);
            }
            staged.generation += 1;
            staged.touched = Instant::now();
            (staged.generation, staged.size)
        };
        Ok(Self {
            shared: Arc::new(UploadShared {
                run,
                _hold: hold,
                staged,
                upload_id,
                generation,
                limits,
            }),
            size,
        })
    }
}

impl UploadShared {
    /// Writes `data` at `offset`. Blocking.
    fn write_blocking(&self, offset: u64, data: &[u8]) -> Result<u64> {
        let mut staged = lock(&self.staged);
        if staged.generation != self.generation || staged.file.is_none() {
            return Err(StoreError::UploadTakenOver {
                upload_id: self.upload_id.clone(),
            });
        }
        if offset != staged.size {
            return Err(StoreError::UploadOffset {
                upload_id: self.upload_id.clone(),
                expected: staged.size,
                got: offset,
            });
        }
        let len = data.len() as u64;
        let size = staged.size + len;
        if size > self.limits.max_object_bytes {
            return Err(StoreError::ObjectTooLarge {
                what: format!("object {}", staged.object),
                size,
                limit: "max_object_bytes",
                max: self.limits.max_object_bytes,
            });
        }
        self.run
            .disk()
            .check_room(&format_args!("upload of {}", staged.object), len)?;
        {
            let mut objects = lock(&self.run.objects);
            let total = self.run.objects_total(&mut objects)?;
            if total + len > self.limits.max_run_objects_bytes {
                return Err(StoreError::ObjectTooLarge {
                    what: format!("the objects of run `{}`", self.run.key),
                    size: total + len,
                    limit: "max_run_objects_bytes",
                    max: self.limits.max_run_objects_bytes,
                });
            }
            objects.total = Some(total + len);
        }
        let staged = &mut *staged;
        let at = staged.size;
        let file = staged.file.as_ref().expect("checked above");
        let before = staged.hasher.clone();
        // A large piece is hashed on another thread while it is written:
        // both are worth about a memory copy's time.
        let beside = if data.len() >= PARALLEL_HASH_BYTES {
            let hasher = &mut staged.hasher;
            std::thread::scope(|scope| {
                std::thread::Builder::new()
                    .name("baa-logd-hash".to_owned())
                    .spawn_scoped(scope, move || hasher.update(data))
                    .ok()
                    .map(|_| file.write_all_at(data, at))
            })
        } else {
            None
        };
        // Small pieces, and a system that cannot start a thread: in turn.
        let written = beside.unwrap_or_else(|| {
            staged.hasher.update(data);
            file.write_all_at(data, at)
        });
        if let Err(err) = written {
            let _ = file.set_len(at);
            staged.hasher = before;
            self.run.add_objects_bytes(-i128::from(len));
            return Err(StoreError::io(
                format!("cannot stage {}", staged.object),
                err,
            ));
        }
        staged.size = size;
        staged.touched = Instant::now();
        if size - staged.written_back >= writeback::WRITEBACK_EVERY {
            writeback::start(file, staged.written_back, size - staged.written_back);
            staged.written_back = size;
        }
        Ok(size)
    }

    /// Verifies the staged bytes and puts the object in place. Blocking.
    fn commit_blocking(&self, commit: UploadCommit) -> Result<ObjectInfo> {
        let mut staged = lock(&self.staged);
        if staged.generation != self.generation || staged.file.is_none() {
            return Err(StoreError::UploadTakenOver {
                upload_id: self.upload_id.clone(),
            });
        }
        let object = staged.object.clone();
        if commit.size != staged.size {
            return Err(StoreError::UploadSizeMismatch {
                upload_id: self.upload_id.clone(),
                held: staged.size,
                size: commit.size,
            });
        }
        let fail = trouble(&object, "commit");
        let run_dir = open_run_dir(&self.run)?;
        let uploads = run_dir
            .child(RunDir::uploads_name())
            .map_err(&fail)?
            .ok_or_else(|| StoreError::UploadTakenOver {
                upload_id: self.upload_id.clone(),
            })?;
        let sha256: [u8; 32] = staged.hasher.clone().finalize().into();
        if sha256 != commit.sha256 {
            self.discard(&mut staged, &run_dir, &uploads);
            return Err(StoreError::DigestMismatch {
                upload_id: self.upload_id.clone(),
            });
        }
        staged
            .file
            .as_ref()
            .expect("checked above")
            .sync_all()
            .map_err(|err| fail(PathTrouble::Io(err)))?;
        let (dirs, file_name) = parts(&object);
        let (base, inner) = dirs.split_at(match object.kind {
            crate::objects::ObjectKind::Artifact => 1,
            crate::objects::ObjectKind::Checkpoint => 2,
        });
        let size = staged.size;
        // While the run's state holds still: a run that just ended, or a
        // slot just committed, takes nothing more.
        let (moved, parent) = self.run.placing_object(&object, || {
            // The kind's directory (and the slot) must be there: the run
            // created `artifacts/`, and a slot is created by its
            // reservation.
            let base_dir = match run_dir
                .descend(base.iter().map(String::as_str))
                .map_err(&fail)?
            {
                Some(dir) => dir,
                None if object.kind == crate::objects::ObjectKind::Artifact => run_dir
                    .descend_creating(base.iter().map(String::as_str))
                    .map_err(&fail)?,
                None => {
                    return Err(StoreError::SlotNotReserved {
                        key: object.key.clone(),
                        checkpoint_seq: object.checkpoint_seq,
                    });
                }
            };
            let parent = base_dir
                .descend_creating(inner.iter().map(String::as_str))
                .map_err(&fail)?;
            let moved = uploads
                .rename_new(&part_name(&self.upload_id), &parent, &file_name)
                .map_err(|err| fail(PathTrouble::Io(err)))?;
            if moved {
                parent.sync().map_err(|err| fail(PathTrouble::Io(err)))?;
                // The line only once these bytes are the object: a rename
                // refused because the name is taken must not lend this
                // digest to the file already there (a line is trusted by
                // size). A crash before the line leaves an object without
                // one, hashed when it is read; a line that cannot be
                // written does the same, so the commit stands.
                if let Err(err) = manifest::append(&run_dir, &manifest_line(&object, size, &sha256))
                {
                    tracing::warn!(%object, cause = ?err, "cannot append to the objects manifest");
                }
            }
            Ok((moved, parent))
        })?;
        if !moved {
            // Something is there already: the same object (a commit
            // retried after its answer was lost) is success.
            let same = match parent.stat(&file_name).map_err(&fail)? {
                Some(stat) if is_regular(&stat) && stat.st_size as u64 == staged.size => {
                    let existing = parent
                        .open_file(&file_name)
                        .map_err(&fail)?
                        .map(|file| hash_all(file).map_err(|err| fail(PathTrouble::Io(err))))
                        .transpose()?;
                    existing == Some(sha256)
                }
                _ => false,
            };
            if !same {
                return Err(StoreError::ObjectExists(object.to_string()));
            }
            self.discard(&mut staged, &run_dir, &uploads);
        } else {
            staged.drop_files();
            let mut objects = lock(&self.run.objects);
            objects.uploads.remove(&self.upload_id);
            let _ = uploads.remove(&target_name(&self.upload_id));
            let _ = uploads.sync();
            drop_if_empty(&run_dir, &objects);
        }
        stored_info(&run_dir, &object)?
            .filter(|info| info.sha256 == sha256)
            .ok_or_else(|| StoreError::ObjectNotFound(object.to_string()))
    }

    /// Drops the staged bytes from disk and from the run's total.
    fn discard(&self, staged: &mut Staged, run_dir: &Dir, uploads: &Dir) {
        let size = staged.size;
        staged.drop_files();
        let mut objects = lock(&self.run.objects);
        objects.uploads.remove(&self.upload_id);
        let _ = uploads.remove(&part_name(&self.upload_id));
        let _ = uploads.remove(&target_name(&self.upload_id));
        let _ = uploads.sync();
        drop_if_empty(run_dir, &objects);
        if let Some(total) = &mut objects.total {
            *total = total.saturating_sub(size);
        }
    }

    /// Makes what is staged durable. Blocking.
    fn close_blocking(&self) -> Result<u64> {
        let staged = lock(&self.staged);
        if let Some(file) = &staged.file
            && staged.generation == self.generation
        {
            file.sync_data()
                .map_err(|err| StoreError::io(format!("cannot sync {}", staged.object), err))?;
        }
        Ok(staged.size)
    }
}

impl Drop for UploadShared {
    /// Closes the staged file when the upload's current stream ends, so an
    /// idle upload holds no descriptor; a stream taken over leaves it to
    /// the newer one.
    fn drop(&mut self) {
        let mut staged = lock(&self.staged);
        if staged.generation == self.generation {
            staged.file = None;
        }
    }
}

impl ObjectUpload for LocalUpload {
    fn size(&self) -> u64 {
        self.size
    }

    async fn write(&mut self, offset: u64, data: bytes::Bytes) -> Result<()> {
        if data.is_empty() && offset == self.size {
            return Ok(());
        }
        let shared = self.shared.clone();
        self.size = blocking(move || shared.write_blocking(offset, &data)).await?;
        Ok(())
    }

    async fn commit(self, commit: UploadCommit) -> Result<ObjectInfo> {
        let shared = self.shared;
        blocking(move || shared.commit_blocking(commit)).await
    }

    async fn close(self) -> Result<u64> {
        let shared = self.shared;
        blocking(move || shared.close_blocking()).await
    }
}
