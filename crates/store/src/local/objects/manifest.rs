//! The objects' manifest, `.objects.jsonl` in the run directory: one JSON
//! line per committed object with its size and SHA-256, so that a listing
//! does not read every object to tell its digest. The files under
//! `artifacts/` and `checkpoints/` are the truth; a line only lends its
//! digest to a file of the same name and size (a file a local worker put
//! there itself has no line, and is hashed when listed). A later line for
//! the same object wins.

use std::{
    collections::HashMap,
    io::{self, BufRead, BufReader, Write},
};

use serde::{Deserialize, Serialize};

use super::safe_dir::{Dir, PathTrouble};
use crate::{local::layout::RunDir, objects::ObjectKind};

/// One line of the manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ManifestLine {
    /// `artifact` or `checkpoint`.
    pub(super) kind: String,
    /// The checkpoint slot; 0 for an artifact.
    pub(super) checkpoint_seq: u64,
    /// The path under the kind's directory (and slot).
    pub(super) name: String,
    /// The object's size.
    pub(super) size: u64,
    /// Its SHA-256, in hex.
    pub(super) sha256: String,
}

/// Where an object is, as the manifest keys it.
pub(super) type ManifestKey = (ObjectKind, u64, String);

impl ManifestLine {
    /// The key of the object.
    pub(super) fn key(&self) -> Option<ManifestKey> {
        let kind = match self.kind.as_str() {
            "artifact" => ObjectKind::Artifact,
            "checkpoint" => ObjectKind::Checkpoint,
            _ => return None,
        };
        Some((kind, self.checkpoint_seq, self.name.clone()))
    }
}

/// Appends a line to the manifest of the run open as `run`, and fsyncs it.
pub(super) fn append(run: &Dir, line: &ManifestLine) -> Result<(), PathTrouble> {
    let name = RunDir::objects_manifest_name();
    let mut file = match run.open_rw(name, false)? {
        Some(file) => file,
        None => match run.open_rw(name, true) {
            Ok(Some(file)) => {
                run.sync().map_err(PathTrouble::Io)?;
                file
            }
            // Created meanwhile: impossible under the run's objects lock,
            // but harmless.
            _ => run
                .open_rw(name, false)?
                .ok_or_else(|| PathTrouble::Io(io::ErrorKind::NotFound.into()))?,
        },
    };
    let mut bytes = serde_json::to_vec(line).expect("a manifest line serializes");
    bytes.push(b'\n');
    use std::io::Seek;
    file.seek(io::SeekFrom::End(0)).map_err(PathTrouble::Io)?;
    file.write_all(&bytes).map_err(PathTrouble::Io)?;
    file.sync_data().map_err(PathTrouble::Io)
}

/// The manifest's lines by object; empty when there is none. Lines that
/// do not read (a torn last line) are skipped.
pub(super) fn read(run: &Dir) -> Result<HashMap<ManifestKey, ManifestLine>, PathTrouble> {
    let mut lines = HashMap::new();
    let Some(file) = run.open_file(RunDir::objects_manifest_name())? else {
        return Ok(lines);
    };
    for line in BufReader::new(file).lines() {
        let line = line.map_err(PathTrouble::Io)?;
        if let Ok(parsed) = serde_json::from_str::<ManifestLine>(&line)
            && let Some(key) = parsed.key()
        {
            lines.insert(key, parsed);
        }
    }
    Ok(lines)
}
