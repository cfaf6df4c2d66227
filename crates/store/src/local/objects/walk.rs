//! Finding a run's objects on disk: the regular files under `artifacts/`
//! and under each checkpoint slot, `checkpoints/<seq>/`, and the bytes of
//! the uploads staged in `.uploads/`. Symbolic links and other special
//! files are skipped, and never descended into.

use std::{fs, io, path::Path, time::SystemTime};

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

/// The run's object files, of `kind` or of both.
pub(super) fn objects(run: &RunDir, kind: Option<ObjectKind>) -> io::Result<Vec<Found>> {
    let mut found = Vec::new();
    if kind.is_none_or(|kind| kind == ObjectKind::Artifact) {
        files(&run.artifacts(), "", &mut |name, meta| {
            found.push(Found {
                kind: ObjectKind::Artifact,
                checkpoint_seq: 0,
                name,
                size: meta.len(),
                modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            })
        })?;
    }
    if kind.is_none_or(|kind| kind == ObjectKind::Checkpoint) {
        for slot in slots(run)? {
            let dir = run.checkpoints().join(slot.to_string());
            files(&dir, "", &mut |name, meta| {
                found.push(Found {
                    kind: ObjectKind::Checkpoint,
                    checkpoint_seq: slot,
                    name,
                    size: meta.len(),
                    modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                })
            })?;
        }
    }
    found.sort_by(|a, b| {
        (a.kind, a.checkpoint_seq, &a.name).cmp(&(b.kind, b.checkpoint_seq, &b.name))
    });
    Ok(found)
}

/// The checkpoint slots that exist: the directories of `checkpoints/`
/// named by a number from 1.
pub(crate) fn slots(run: &RunDir) -> io::Result<Vec<u64>> {
    let mut slots = Vec::new();
    if fs::symlink_metadata(run.checkpoints()).is_ok_and(|meta| meta.file_type().is_symlink()) {
        return Ok(slots);
    }
    let entries = match fs::read_dir(run.checkpoints()) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(slots),
        Err(err) => return Err(err),
    };
    for entry in entries {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        if let Some(seq) = entry
            .file_name()
            .to_str()
            .filter(|name| !name.starts_with('0') && !name.starts_with('+'))
            .and_then(|name| name.parse::<u64>().ok())
        {
            slots.push(seq);
        }
    }
    slots.sort_unstable();
    Ok(slots)
}

/// The bytes of every object file and staged upload of the run.
pub(super) fn total_bytes(run: &RunDir) -> io::Result<u64> {
    let mut total = 0;
    for dir in [run.artifacts(), run.checkpoints(), run.uploads()] {
        files(&dir, "", &mut |_, meta| total += meta.len())?;
    }
    Ok(total)
}

/// Calls `each` with every regular file under `dir`, by its `/`-joined
/// path after `prefix`. Names that are not UTF-8 are skipped.
fn files(dir: &Path, prefix: &str, each: &mut dyn FnMut(String, fs::Metadata)) -> io::Result<()> {
    // A directory swapped for a link is not walked through.
    if fs::symlink_metadata(dir).is_ok_and(|meta| meta.file_type().is_symlink()) {
        return Ok(());
    }
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err),
    };
    for entry in entries {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let path = match prefix {
            "" => name,
            prefix => format!("{prefix}/{name}"),
        };
        // `file_type` does not follow a symbolic link.
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            files(&entry.path(), &path, each)?;
        } else if file_type.is_file() {
            match entry.metadata() {
                Ok(meta) => each(path, meta),
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(err),
            }
        }
    }
    Ok(())
}
