//! The disk ceiling: the same lines appended to plain files through a
//! 64 KiB buffer, no framing, no index, no fsync (baa-logd does not fsync
//! by default either). Nothing that stores logs can write them faster.

use std::{
    fs::{File, OpenOptions},
    io::{BufWriter, Write},
};

use tempfile::TempDir;

use crate::error::{BenchError, Result};

/// The buffer in front of each file.
const BUFFER_BYTES: usize = 64 * 1024;

/// A directory of files, one per run.
#[derive(Debug)]
pub(crate) struct DiskSystem {
    /// Removed when the phase ends.
    dir: TempDir,
}

impl DiskSystem {
    /// A fresh directory.
    pub(crate) fn start() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("baa-bench-disk-")
            .tempdir()
            .map_err(|err| BenchError::io("cannot create a directory", err))?;
        Ok(Self { dir })
    }

    /// A writer appending to the file of `run`; writers of one run share
    /// the file through `O_APPEND`.
    pub(crate) fn writer(&self, run: &str) -> Result<DiskWriter> {
        let path = self.dir.path().join(format!("{run}.log"));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|err| BenchError::io(format!("cannot open {}", path.display()), err))?;
        Ok(DiskWriter {
            out: BufWriter::with_capacity(BUFFER_BYTES, file),
            lines: 0,
        })
    }
}

/// Buffered appends to one file.
#[derive(Debug)]
pub(crate) struct DiskWriter {
    /// The buffered file.
    out: BufWriter<File>,
    /// Lines written.
    lines: u64,
}

impl DiskWriter {
    /// Appends lines; blocking, but only ever for a buffer's worth of
    /// copying into the page cache.
    pub(crate) fn send(&mut self, lines: &[String]) -> Result<()> {
        for line in lines {
            self.out
                .write_all(line.as_bytes())
                .map_err(|err| BenchError::io("cannot append", err))?;
        }
        self.lines += lines.len() as u64;
        Ok(())
    }

    /// Flushes the buffer.
    pub(crate) fn finish(mut self) -> Result<u64> {
        self.out
            .flush()
            .map_err(|err| BenchError::io("cannot flush", err))?;
        Ok(self.lines)
    }
}
