//! Directories opened by descriptor, one component at a time, never
//! through a symbolic link: every object path under a run is resolved
//! here, so that nothing a worker (or anyone with access to the run
//! directory) plants there can send a write, or a read, outside the run.
//!
//! Each step is an `openat` with `O_NOFOLLOW | O_DIRECTORY` from the
//! directory before it; the last component is opened or renamed relative
//! to its parent's descriptor (`renameat2` with `RENAME_NOREPLACE` never
//! follows the target name, nor replaces it).

use std::{
    fs::File,
    io,
    os::fd::{AsFd, OwnedFd},
    path::Path,
    time::{Duration, SystemTime},
};

use nix::{
    errno::Errno,
    fcntl::{OFlag, RenameFlags, openat, renameat2},
    sys::stat::{FileStat, Mode, SFlag, fstat, fstatat, mkdirat},
    unistd::{UnlinkatFlags, unlinkat},
};

/// One entry of a directory, as `fstatat` tells it without following a
/// link.
#[derive(Debug)]
pub(crate) struct Entry {
    /// Its name.
    pub(crate) name: String,
    /// What it is: a symbolic link is itself, never its target.
    pub(crate) stat: FileStat,
}

/// What is in the way of a path.
#[derive(Debug)]
pub(crate) enum PathTrouble {
    /// A component is a symbolic link, or a file where a directory must
    /// be, or the object is not a regular file.
    Unsafe(String),
    /// The file system said no.
    Io(io::Error),
}

impl From<Errno> for PathTrouble {
    fn from(errno: Errno) -> Self {
        Self::Io(io::Error::from(errno))
    }
}

/// An open directory.
#[derive(Debug)]
pub(crate) struct Dir(OwnedFd);

/// Flags for a directory that must not be a symbolic link.
fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

impl Dir {
    /// Opens the directory at `path` (a run directory the store itself
    /// built; its last component is not followed).
    pub(crate) fn open(path: &Path) -> io::Result<Self> {
        nix::fcntl::open(path, dir_flags(), Mode::empty())
            .map(Self)
            .map_err(io::Error::from)
    }

    /// The child directory `name`, `None` when it does not exist.
    pub(crate) fn child(&self, name: &str) -> Result<Option<Self>, PathTrouble> {
        match openat(self.0.as_fd(), name, dir_flags(), Mode::empty()) {
            Ok(fd) => Ok(Some(Self(fd))),
            Err(Errno::ENOENT) => Ok(None),
            Err(Errno::ELOOP | Errno::ENOTDIR) => Err(PathTrouble::Unsafe(format!(
                "`{name}` is a symbolic link or not a directory"
            ))),
            Err(errno) => Err(errno.into()),
        }
    }

    /// The child directory `name`, created when missing; true when it was.
    pub(crate) fn child_or_create(&self, name: &str) -> Result<(Self, bool), PathTrouble> {
        if let Some(dir) = self.child(name)? {
            return Ok((dir, false));
        }
        match mkdirat(self.0.as_fd(), name, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(errno) => return Err(errno.into()),
        }
        match self.child(name)? {
            Some(dir) => Ok((dir, true)),
            None => Err(PathTrouble::Io(io::Error::from(Errno::ENOENT))),
        }
    }

    /// Walks `parts` down from here, each a directory; `None` when one is
    /// missing.
    pub(crate) fn descend<'a>(
        &self,
        parts: impl IntoIterator<Item = &'a str>,
    ) -> Result<Option<Self>, PathTrouble> {
        let mut dir = self.dup()?;
        for part in parts {
            match dir.child(part)? {
                Some(next) => dir = next,
                None => return Ok(None),
            }
        }
        Ok(Some(dir))
    }

    /// Walks `parts` down from here, creating missing directories; returns
    /// the last one and whether any was created (their parents then need
    /// an fsync, which this does).
    pub(crate) fn descend_creating<'a>(
        &self,
        parts: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, PathTrouble> {
        let mut dir = self.dup()?;
        for part in parts {
            let (next, created) = dir.child_or_create(part)?;
            if created {
                dir.sync().map_err(PathTrouble::Io)?;
            }
            dir = next;
        }
        Ok(dir)
    }

    /// A second descriptor of this directory.
    fn dup(&self) -> Result<Self, PathTrouble> {
        Ok(Self(self.0.try_clone().map_err(PathTrouble::Io)?))
    }

    /// Opens the regular file `name` for reading, never through a link.
    pub(crate) fn open_file(&self, name: &str) -> Result<Option<File>, PathTrouble> {
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
        let fd = match openat(self.0.as_fd(), name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(Errno::ELOOP) => {
                return Err(PathTrouble::Unsafe(format!("`{name}` is a symbolic link")));
            }
            Err(errno) => return Err(errno.into()),
        };
        if !is_regular(&fstat(fd.as_fd())?) {
            return Err(PathTrouble::Unsafe(format!(
                "`{name}` is not a regular file"
            )));
        }
        Ok(Some(File::from(fd)))
    }

    /// Opens `name` for reading and writing, creating it when `create`.
    pub(crate) fn open_rw(&self, name: &str, create: bool) -> Result<Option<File>, PathTrouble> {
        let mut flags = OFlag::O_RDWR | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        if create {
            flags |= OFlag::O_CREAT | OFlag::O_EXCL;
        }
        match openat(self.0.as_fd(), name, flags, Mode::from_bits_truncate(0o644)) {
            Ok(fd) => Ok(Some(File::from(fd))),
            Err(Errno::ENOENT) => Ok(None),
            Err(Errno::ELOOP) => Err(PathTrouble::Unsafe(format!("`{name}` is a symbolic link"))),
            Err(errno) => Err(errno.into()),
        }
    }

    /// What `name` is, without following a link; `None` when missing.
    pub(crate) fn stat(&self, name: &str) -> Result<Option<FileStat>, PathTrouble> {
        match fstatat(
            self.0.as_fd(),
            name,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(stat) => Ok(Some(stat)),
            Err(Errno::ENOENT) => Ok(None),
            Err(errno) => Err(errno.into()),
        }
    }

    /// Renames `from` here to `to` in `target`, unless `to` exists: then
    /// `Ok(false)` and nothing moved.
    pub(crate) fn rename_new(&self, from: &str, target: &Dir, to: &str) -> io::Result<bool> {
        match renameat2(
            self.0.as_fd(),
            from,
            target.0.as_fd(),
            to,
            RenameFlags::RENAME_NOREPLACE,
        ) {
            Ok(()) => Ok(true),
            Err(Errno::EEXIST) => Ok(false),
            Err(errno) => Err(errno.into()),
        }
    }

    /// The entries of this directory but `.` and `..`. Names that are not
    /// UTF-8 are skipped (no object has one), and so are entries that
    /// vanish while they are listed.
    pub(crate) fn entries(&self) -> io::Result<Vec<Entry>> {
        // A descriptor of its own: reading a directory moves its offset,
        // which a duplicate would share.
        let own = openat(self.0.as_fd(), ".", dir_flags(), Mode::empty())?;
        let mut listing = nix::dir::Dir::from_fd(own)?;
        let mut entries = Vec::new();
        for entry in listing.iter() {
            let entry = entry?;
            let Ok(name) = entry.file_name().to_str() else {
                continue;
            };
            if name == "." || name == ".." {
                continue;
            }
            match self.stat(name) {
                Ok(Some(stat)) => entries.push(Entry {
                    name: name.to_owned(),
                    stat,
                }),
                Ok(None) => {}
                Err(PathTrouble::Io(err)) => return Err(err),
                Err(PathTrouble::Unsafe(problem)) => return Err(io::Error::other(problem)),
            }
        }
        Ok(entries)
    }

    /// Removes the directory `name` if it is empty; true when it was
    /// removed, false when it is missing or holds something.
    pub(crate) fn remove_empty_dir(&self, name: &str) -> io::Result<bool> {
        match unlinkat(self.0.as_fd(), name, UnlinkatFlags::RemoveDir) {
            Ok(()) => Ok(true),
            Err(Errno::ENOENT | Errno::ENOTEMPTY | Errno::EEXIST) => Ok(false),
            Err(errno) => Err(errno.into()),
        }
    }

    /// Removes the file `name`; a missing one is not an error.
    pub(crate) fn remove(&self, name: &str) -> io::Result<()> {
        match unlinkat(self.0.as_fd(), name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(errno) => Err(errno.into()),
        }
    }

    /// Flushes the directory's entries to disk.
    pub(crate) fn sync(&self) -> io::Result<()> {
        nix::unistd::fsync(self.0.as_fd()).map_err(io::Error::from)
    }
}

/// Whether `stat` is a regular file's.
pub(crate) fn is_regular(stat: &FileStat) -> bool {
    file_type(stat) == SFlag::S_IFREG
}

/// Whether `stat` is a directory's (a symbolic link to one is not).
pub(crate) fn is_dir(stat: &FileStat) -> bool {
    file_type(stat) == SFlag::S_IFDIR
}

/// The type bits of `stat`.
fn file_type(stat: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits())
}

/// When the file of `stat` was last modified.
pub(crate) fn modified(stat: &FileStat) -> SystemTime {
    let since_epoch = u64::try_from(stat.st_mtime)
        .ok()
        .map(|secs| Duration::new(secs, u32::try_from(stat.st_mtime_nsec).unwrap_or(0)));
    since_epoch.map_or(SystemTime::UNIX_EPOCH, |since| {
        SystemTime::UNIX_EPOCH + since
    })
}
