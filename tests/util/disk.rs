//! Small file systems made by a test: a tmpfs of a given size, mounted on
//! a directory and unmounted when the guard goes, whatever happens.
//! Mounting needs root; where it is not permitted, the helpers say so and
//! the test returns early.

use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
    process::Command,
};

/// A mounted tmpfs; unmounted on drop.
#[derive(Debug)]
pub struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    /// Mounts a tmpfs of `bytes` on `path` (created). `None`, after saying
    /// why on stderr, where it cannot be mounted (not root, or no
    /// permission to mount in this container).
    pub fn tmpfs(path: &Path, bytes: u64) -> Option<Self> {
        fs::create_dir_all(path).expect("a mount point");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(path)
            .output();
        match mounted {
            Ok(output) if output.status.success() => Some(Self {
                path: path.to_path_buf(),
            }),
            Ok(output) => {
                eprintln!(
                    "skipped: cannot mount a small tmpfs ({}); this test needs root and \
                     permission to mount",
                    String::from_utf8_lossy(&output.stderr).trim()
                );
                None
            }
            Err(err) => {
                eprintln!("skipped: cannot run mount ({err})");
                None
            }
        }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Remounts it read-only or read-write.
    pub fn remount(&self, read_only: bool) {
        let options = if read_only {
            "remount,ro"
        } else {
            "remount,rw"
        };
        let output = Command::new("mount")
            .args(["-o", options])
            .arg(&self.path)
            .output()
            .expect("mount runs");
        assert!(
            output.status.success(),
            "mount -o {options}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|status| status.success());
        if !unmounted {
            // Still busy (a server that panicked holds files open): detach
            // it now, the kernel frees it once the files are closed.
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// Appends zeros to `path` until the disk is full; returns its length.
pub fn fill_up(path: &Path) -> u64 {
    let mut file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("the filler opens");
    let chunk = vec![0u8; 64 * 1024];
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::StorageFull => break,
            Err(err) => panic!("cannot fill the disk: {err}"),
        }
    }
    file.metadata().expect("metadata").len()
}

/// Cuts `bytes` off the end of the file at `path`, freeing them.
pub fn free(path: &Path, bytes: u64) {
    let file = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("the filler opens");
    let len = file.metadata().expect("metadata").len();
    file.set_len(len.saturating_sub(bytes)).expect("cut");
}

/// The size of a memory page, which is what tmpfs allocates in.
pub fn page_size() -> u64 {
    let output = Command::new("getconf")
        .arg("PAGESIZE")
        .output()
        .expect("getconf runs");
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("a page size")
}
