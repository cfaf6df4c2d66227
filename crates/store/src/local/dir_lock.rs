//! One store per data directory: an exclusive `flock` on the lock file in
//! the runs root, held for as long as the store is open, with the
//! holder's process id written in it for whoever finds it taken.
//!
//! Two servers on one directory would each hand out the same sequence
//! numbers and each clear the other's staging area, so the second one is
//! refused before it touches anything. The lock is the kernel's: it goes
//! with the process, however it ends, so a crash never leaves a stale
//! lock behind; the pid in the file is only for the message.

use std::{
    fs::{File, OpenOptions},
    io::{Read, Write},
    path::Path,
};

use nix::{
    errno::Errno,
    fcntl::{Flock, FlockArg},
};

use tracing::warn;

use crate::error::{Result, StoreError};

/// The exclusive lock on a data directory; released when dropped.
#[derive(Debug)]
pub(crate) struct DirLock {
    /// The locked lock file.
    _file: Flock<File>,
}

impl DirLock {
    /// Takes the lock on the data directory `root` through `lock_file`,
    /// and writes this process's id in it.
    ///
    /// # Errors
    ///
    /// [`StoreError::Locked`] when another process holds it, naming that
    /// process; [`StoreError::Io`] when the file cannot be opened or
    /// written.
    pub(crate) fn acquire(root: &Path, lock_file: &Path) -> Result<Self> {
        let io = |err| StoreError::io(format!("cannot lock {}", lock_file.display()), err);
        // The lock is held through a read-only descriptor: a file open for
        // writing would keep the file system from being remounted
        // read-only, which an operator (or the kernel, on errors) may do
        // under a running server. The pid is written through a second,
        // short-lived descriptor once the lock is ours.
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(lock_file)
            .map_err(io)?;
        let file = File::open(lock_file).map_err(io)?;
        let locked = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                return Err(StoreError::Locked {
                    dir: root.to_path_buf(),
                    holder: holder(&mut file),
                });
            }
            Err((_, errno)) => return Err(io(errno.into())),
        };
        // The pid is for a refused server's message only: on a full disk
        // the store still opens (and says it cannot write) without it.
        let written = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(lock_file)
            .and_then(|mut pid_file| {
                writeln!(pid_file, "{}", std::process::id())?;
                pid_file.sync_data()
            });
        if let Err(err) = written {
            warn!(path = %lock_file.display(), cause = %err, "cannot write the pid in the lock file");
        }
        Ok(Self { _file: locked })
    }
}

/// The process id the holder wrote in the lock file, when it reads back.
fn holder(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use crate::{LocalStore, LocalStoreOptions, StoreError};

    /// A second store on an open directory is refused, naming this
    /// process, and leaves the first one's staging area alone; once the
    /// first is closed, the directory opens again.
    #[test]
    fn a_second_store_on_one_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = LocalStore::open(LocalStoreOptions::new(dir.path())).unwrap();
        let staged = dir.path().join(".staging/in-flight");
        std::fs::create_dir_all(&staged).unwrap();
        let second = LocalStore::open(LocalStoreOptions::new(dir.path()));
        match second {
            Err(StoreError::Locked {
                dir: locked,
                holder,
            }) => {
                assert_eq!(locked, std::fs::canonicalize(dir.path()).unwrap());
                assert_eq!(holder, Some(std::process::id()));
            }
            other => panic!("a second store opened: {other:?}"),
        }
        assert!(
            staged.is_dir(),
            "the refused store touched the first one's files"
        );
        drop(first);
        LocalStore::open(LocalStoreOptions::new(dir.path())).unwrap();
        assert!(
            !staged.exists(),
            "a store that opens clears what a crash left"
        );
    }
}
