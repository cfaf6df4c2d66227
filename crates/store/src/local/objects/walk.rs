//! Finding a run's objects on disk: the regular files under `artifacts/`
//! and under each checkpoint slot, `checkpoints/<seq>/`, and the bytes of
//! the uploads staged in `.uploads/`.
//!
//! The walk goes by descriptor (see `safe_dir`), like every other path
//! under a run: each directory is opened from its parent with
//! `O_NOFOLLOW`, and each entry is told by `fstatat` without following a
//! link. A directory swapped for a symbolic link while it is walked is
//! skipped, never walked through, so a listing or a count never reaches
//! outside the run. Symbolic links and other special files are skipped.

use std::{io, time::SystemTime};

use nix::sys::stat::FileStat;

use super::safe_dir::{Dir, PathTrouble, is_dir, is_regular, modified};
use crate::{local::layout::RunDir, objects::ObjectKind};

/// An object file found on disk.
#[derive(Debug, Clone)]
pub(super) struct Found {
    /// Its directory.
    pub(super) kind: ObjectKind,
    /// Its checkpoint slot; 0 for an artifact.
    pub(super) checkpoint_seq: u64,
    /// Its path under the directory (and slot).
    pub(super) name: String,
    /// Its size.
    pub(super) size: u64,
    /// Its modification time.
    pub(super) modified: SystemTime,
}

impl Found {
    /// The file `name` of `stat`, in the slot `checkpoint_seq` of `kind`.
    fn new(kind: ObjectKind, checkpoint_seq: u64, name: String, stat: &FileStat) -> Self {
        Self {
            kind,
            checkpoint_seq,
            name,
            size: stat.st_size as u64,
            modified: modified(stat),
        }
    }
}

/// The run's object files, of `kind` or of both; `run` is the run
/// directory, open.
pub(super) fn objects(run: &Dir, kind: Option<ObjectKind>) -> io::Result<Vec<Found>> {
    let mut found = Vec::new();
    if kind.is_none_or(|kind| kind == ObjectKind::Artifact)
        && let Some(artifacts) = subdir(run, RunDir::artifacts_name())?
    {
        files(&artifacts, "", &mut |name, stat| {
            found.push(Found::new(ObjectKind::Artifact, 0, name, stat));
        })?;
    }
    if kind.is_none_or(|kind| kind == ObjectKind::Checkpoint)
        && let Some(checkpoints) = subdir(run, RunDir::checkpoints_name())?
    {
        for (slot, dir) in slot_dirs(&checkpoints)? {
            files(&dir, "", &mut |name, stat| {
                found.push(Found::new(ObjectKind::Checkpoint, slot, name, stat));
            })?;
        }
    }
    found.sort_by(|a, b| {
        (a.kind, a.checkpoint_seq, &a.name).cmp(&(b.kind, b.checkpoint_seq, &b.name))
    });
    Ok(found)
}

/// The checkpoint slots that exist, in order: the directories of
/// `checkpoints/` named by a number from 1. `run` is the run directory,
/// open.
pub(crate) fn slots(run: &Dir) -> io::Result<Vec<u64>> {
    let Some(checkpoints) = subdir(run, RunDir::checkpoints_name())? else {
        return Ok(Vec::new());
    };
    let mut slots: Vec<u64> = checkpoints
        .entries()?
        .into_iter()
        .filter(|entry| is_dir(&entry.stat))
        .filter_map(|entry| slot_number(&entry.name))
        .collect();
    slots.sort_unstable();
    Ok(slots)
}

/// The slot a directory of `checkpoints/` is, when its name is one: a
/// number from 1, written without a sign or a leading zero.
fn slot_number(name: &str) -> Option<u64> {
    if name.starts_with('0') || name.starts_with('+') {
        return None;
    }
    name.parse().ok()
}

/// The slot directories of `checkpoints`, open, in order.
fn slot_dirs(checkpoints: &Dir) -> io::Result<Vec<(u64, Dir)>> {
    let mut dirs = Vec::new();
    for entry in checkpoints.entries()? {
        let Some(slot) = slot_number(&entry.name).filter(|_| is_dir(&entry.stat)) else {
            continue;
        };
        if let Some(dir) = subdir(checkpoints, &entry.name)? {
            dirs.push((slot, dir));
        }
    }
    dirs.sort_unstable_by_key(|(slot, _)| *slot);
    Ok(dirs)
}

/// The bytes of every object file and staged upload of the run; `run` is
/// the run directory, open.
pub(super) fn total_bytes(run: &Dir) -> io::Result<u64> {
    let mut total = 0;
    for name in [
        RunDir::artifacts_name(),
        RunDir::checkpoints_name(),
        RunDir::uploads_name(),
    ] {
        if let Some(dir) = subdir(run, name)? {
            files(&dir, "", &mut |_, stat| total += stat.st_size as u64)?;
        }
    }
    Ok(total)
}

/// The directory `name` in `parent`, open; `None` when it is missing or is
/// not a directory (a symbolic link, say).
fn subdir(parent: &Dir, name: &str) -> io::Result<Option<Dir>> {
    match parent.child(name) {
        Ok(dir) => Ok(dir),
        Err(PathTrouble::Unsafe(_)) => Ok(None),
        Err(PathTrouble::Io(err)) => Err(err),
    }
}

/// Calls `each` with every regular file under `dir`, by its `/`-joined
/// path after `prefix`.
fn files(dir: &Dir, prefix: &str, each: &mut dyn FnMut(String, &FileStat)) -> io::Result<()> {
    for entry in dir.entries()? {
        let path = match prefix {
            "" => entry.name.clone(),
            prefix => format!("{prefix}/{}", entry.name),
        };
        if is_regular(&entry.stat) {
            each(path, &entry.stat);
        } else if is_dir(&entry.stat)
            && let Some(inner) = subdir(dir, &entry.name)?
        {
            files(&inner, &path, each)?;
        }
    }
    Ok(())
}
