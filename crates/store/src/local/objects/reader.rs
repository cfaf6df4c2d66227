//! Reading a stored object: its file, by range, on the blocking pool.

use std::{
    fs::File,
    io::{Read, Seek, SeekFrom},
};

use bytes::Bytes;

use crate::{
    error::{Result, StoreError},
    local::concurrency::blocking,
    objects::ObjectReader,
};

/// An object of a run on local disk, open for reading.
#[derive(Debug)]
pub struct LocalObjectReader {
    /// The file; away on the blocking pool during a read, and gone after
    /// a read that failed to come back.
    file: Option<File>,
    /// What the object is, for errors.
    object: String,
}

impl LocalObjectReader {
    /// A reader of `file`, the object named `object`.
    pub(super) fn new(file: File, object: String) -> Self {
        Self {
            file: Some(file),
            object,
        }
    }
}

impl ObjectReader for LocalObjectReader {
    async fn read_at(&mut self, offset: u64, want: usize) -> Result<Bytes> {
        let object = self.object.clone();
        let mut file = self.file.take().ok_or_else(|| {
            StoreError::TaskFailed(format!("an earlier read of {object} did not finish"))
        })?;
        // The file goes to the blocking pool and back with each piece: one
        // reader, one position.
        let (file, data) = blocking(move || {
            let data = read_piece(&mut file, offset, want)
                .map_err(|err| StoreError::io(format!("cannot read {object}"), err));
            Ok((file, data))
        })
        .await?;
        self.file = Some(file);
        data
    }
}

/// Reads `want` bytes of `file` at `offset`, into memory that is not
/// zeroed first.
fn read_piece(file: &mut File, offset: u64, want: usize) -> std::io::Result<Bytes> {
    let mut data = Vec::with_capacity(want);
    file.seek(SeekFrom::Start(offset))?;
    file.take(want as u64).read_to_end(&mut data)?;
    if data.len() < want {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(data.into())
}
