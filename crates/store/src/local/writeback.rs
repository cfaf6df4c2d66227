//! Large files written in a stream (staged uploads) have their dirty pages
//! sent to the disk as they go, not all at the final fsync: the kernel
//! starts writing back only when a tenth of memory is dirty, so a
//! gibibyte written without this waits for the whole gibibyte at its
//! fsync, after the transfer, where it could have been written during it.
//! This is the hint that RocksDB's `bytes_per_sync` gives.

use std::fs::File;

/// Write-back is started every this many bytes written.
pub(crate) const WRITEBACK_EVERY: u64 = 8 << 20;

/// Starts writing `len` bytes of `file` from `offset` to the disk, without
/// waiting for them. A hint: the fsync that follows is what makes the
/// bytes durable, and reports any error; this one is ignored.
pub(crate) fn start(file: &File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;

        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return;
        };
        // SAFETY: sync_file_range(2) takes a descriptor, which `file` keeps
        // open for the call, and integers; it touches no memory of ours.
        let _ = unsafe {
            nix::libc::sync_file_range(
                file.as_raw_fd(),
                offset,
                len,
                nix::libc::SYNC_FILE_RANGE_WRITE,
            )
        };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}
