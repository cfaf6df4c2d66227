//! Small file-system helpers: JSON files replaced atomically, and reading
//! them back.

use std::{
    fs::{self, File},
    io::{self, Write},
    path::Path,
};

use serde::{Serialize, de::DeserializeOwned};

use super::layout::temp_file;
use crate::error::{Result, StoreError};

/// Writes `value` as pretty JSON to `path`, atomically: a temporary file in
/// the same directory, fsync, rename over `path`, fsync of the directory. A
/// crash leaves either the old file or the new one, never a mix.
pub(crate) fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).expect("the store's JSON files serialize");
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// Replaces `path` with `bytes` atomically, as [`write_json_atomic`] does.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let context = || format!("cannot write {}", path.display());
    let dir = path.parent().expect("a file path has a parent");
    let tmp = temp_file(path);
    let write = || -> io::Result<()> {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    };
    write().map_err(|err| {
        let _ = fs::remove_file(&tmp);
        StoreError::io(context(), err)
    })
}

/// Reads a JSON file. `Ok(None)` when it does not exist.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => {
            return Err(StoreError::io(
                format!("cannot read {}", path.display()),
                err,
            ));
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|err| StoreError::damaged(path, format!("is not valid: {err}")))
}

/// Flushes a directory's entries (new, renamed or removed files) to disk.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
