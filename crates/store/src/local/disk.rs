//! The store's watch over its disk: every write goes through [`Disk::write`],
//! which times it for the [`StoreObserver`] and, when it fails, decides
//! whether the store as a whole can still write.
//!
//! A failed write says little on its own: a run directory removed by hand
//! fails its writes and nothing else. So the store marks itself
//! [`WriteHealth::NotWritable`] only when the failure is one of the disk
//! itself (full, over quota, read-only) or when a probe of the data
//! directory fails right after it. A probe checks that the file system is
//! not read-only, that it has at least `min_free_bytes` free, and that a
//! small file can be written, synced and removed in the data directory.
//!
//! While the store is not writable, a thread of its own probes every
//! [`PROBE_INTERVAL`] and marks it writable again after the first probe
//! that passes. Writes are never refused on the health's account: each
//! one is tried and fails or not on its own, so a disk freed between two
//! probes takes entries at once.

use std::{
    fs, io,
    io::Write,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, Weak},
    time::{Duration, Instant},
};

use tokio::sync::watch;
use tracing::{info, warn};

use super::concurrency::lock;
use crate::{
    error::{Result, StoreError},
    observe::{CommitStats, DiskWrite, StoreObserver, WriteHealth},
};

/// How often a store that cannot write checks whether it can again.
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// The disk under a store: its health and its observer.
#[derive(Debug)]
pub(crate) struct Disk {
    /// The file a probe writes and removes, in the runs root.
    probe_file: PathBuf,
    /// Told of every write.
    observer: Option<Arc<dyn StoreObserver>>,
    /// The store's health, for whoever watches it.
    health: watch::Sender<WriteHealth>,
    /// The free space a probe asks for.
    min_free_bytes: u64,
    /// Held while the health changes. Under it, the health is
    /// `NotWritable` exactly while a probe thread runs, so a failure never
    /// finds the store unhealthy with nobody probing.
    changing: Mutex<()>,
}

impl Disk {
    /// The disk that holds `probe_file`, writable until a write says
    /// otherwise.
    pub(crate) fn new(
        probe_file: PathBuf,
        observer: Option<Arc<dyn StoreObserver>>,
        min_free_bytes: u64,
    ) -> Arc<Self> {
        Arc::new(Self {
            probe_file,
            observer,
            health: watch::Sender::new(WriteHealth::Writable),
            min_free_bytes,
            changing: Mutex::new(()),
        })
    }

    /// A receiver of the store's health.
    pub(crate) fn subscribe(&self) -> watch::Receiver<WriteHealth> {
        self.health.subscribe()
    }

    /// Runs `write`, a write of `kind`: times it when it succeeds, and
    /// reports it and checks the disk when it fails with an I/O error.
    /// Blocking.
    pub(crate) fn write<T>(
        self: &Arc<Self>,
        kind: DiskWrite,
        write: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let started = Instant::now();
        let result = write();
        match &result {
            Ok(_) => {
                if let Some(observer) = &self.observer {
                    observer.wrote(kind, started.elapsed());
                }
            }
            Err(StoreError::Io { source, .. }) => self.failed(kind, source),
            Err(_) => {}
        }
        result
    }

    /// Tells the observer what a commit stored.
    pub(crate) fn committed(&self, stats: &CommitStats) {
        if let Some(observer) = &self.observer {
            observer.committed(stats);
        }
    }

    /// Tells the observer that a sync made `commits` commits durable.
    pub(crate) fn synced(&self, commits: u64) {
        if let Some(observer) = &self.observer {
            observer.synced(commits);
        }
    }

    /// After a failed write: reports it, and marks the store not writable
    /// when the disk is to blame.
    fn failed(self: &Arc<Self>, kind: DiskWrite, error: &io::Error) {
        if let Some(observer) = &self.observer {
            observer.write_failed(kind, error);
        }
        let _changing = self.lock();
        if !self.health.borrow().is_writable() {
            return;
        }
        let verdict = match disk_trouble(error) {
            Some(reason) => Err(reason.to_owned()),
            None => self.probe(),
        };
        if let Err(reason) = verdict {
            warn!(%reason, write = kind.as_str(), cause = %error, "the store cannot write; probing the disk until it can");
            self.mark_not_writable(reason);
        }
    }

    /// Probes the disk once, when the store opens, so that a store that
    /// starts on a full or read-only disk says so before its first write
    /// fails. Blocking.
    pub(crate) fn check_at_open(self: &Arc<Self>) {
        let _changing = self.lock();
        if let Err(reason) = self.probe() {
            warn!(%reason, "the store cannot write at start; probing the disk until it can");
            self.mark_not_writable(reason);
        }
    }

    /// Marks the store not writable and starts the thread that probes
    /// until it is again. Called with the health lock held.
    fn mark_not_writable(self: &Arc<Self>, reason: String) {
        let weak = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("baa-store-probe".to_owned())
            .spawn(move || probe_until_writable(&weak));
        match spawned {
            Ok(_) => {
                self.health
                    .send_replace(WriteHealth::NotWritable { reason });
            }
            Err(err) => warn!(cause = %err, "cannot start the disk probe"),
        }
    }

    /// Checks that the store can write: the file system is writable, has
    /// `min_free_bytes` free, and takes a small file. Blocking.
    fn probe(&self) -> Result<(), String> {
        use nix::sys::statvfs::{FsFlags, statvfs};
        let dir = self.probe_file.parent().unwrap_or(&self.probe_file);
        let stat = statvfs(dir).map_err(|err| format!("cannot check the disk: {err}"))?;
        if stat.flags().contains(FsFlags::ST_RDONLY) {
            return Err("the data directory's file system is read-only".to_owned());
        }
        let free = stat.blocks_available().saturating_mul(stat.fragment_size());
        if free < self.min_free_bytes {
            return Err(format!(
                "the data directory's disk is full: {free} bytes free, under the {} a store needs",
                self.min_free_bytes
            ));
        }
        write_probe_file(&self.probe_file)
            .map_err(|err| format!("cannot write in the data directory: {err}"))
    }

    /// Refuses to take `bytes` more when that would leave the disk under
    /// `min_free_bytes`: a large upload must not fill the disk the runs'
    /// logs need. Blocking.
    ///
    /// # Errors
    ///
    /// [`StoreError::NoRoom`]; [`StoreError::Io`] when the disk cannot be
    /// checked.
    pub(crate) fn check_room(&self, what: &dyn std::fmt::Display, bytes: u64) -> Result<()> {
        use nix::sys::statvfs::statvfs;
        let dir = self.probe_file.parent().unwrap_or(&self.probe_file);
        let stat = statvfs(dir).map_err(|err| {
            StoreError::io(format!("cannot check the disk for {what}"), err.into())
        })?;
        let free = stat.blocks_available().saturating_mul(stat.fragment_size());
        if free < bytes.saturating_add(self.min_free_bytes) {
            return Err(StoreError::NoRoom {
                what: what.to_string(),
                free,
                bytes,
                min_free_bytes: self.min_free_bytes,
            });
        }
        Ok(())
    }

    /// Locks the health for a change.
    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        lock(&self.changing)
    }
}

/// Probes every [`PROBE_INTERVAL`] until a probe passes, then marks the
/// store writable. Stops when the store is gone.
fn probe_until_writable(disk: &Weak<Disk>) {
    loop {
        std::thread::sleep(PROBE_INTERVAL);
        let Some(disk) = disk.upgrade() else {
            return;
        };
        let verdict = disk.probe();
        let _changing = disk.lock();
        match verdict {
            Ok(()) => {
                info!("the store can write again");
                disk.health.send_replace(WriteHealth::Writable);
                return;
            }
            Err(reason) => {
                disk.health.send_if_modified(|health| {
                    let changed = !matches!(health, WriteHealth::NotWritable { reason: old } if *old == reason);
                    if changed {
                        *health = WriteHealth::NotWritable { reason };
                    }
                    changed
                });
            }
        }
    }
}

/// Why a failed write means the whole disk cannot take writes, when it
/// does.
fn disk_trouble(error: &io::Error) -> Option<&'static str> {
    match error.kind() {
        io::ErrorKind::StorageFull => Some("the data directory's disk is full"),
        io::ErrorKind::QuotaExceeded => Some("the data directory's disk quota is used up"),
        io::ErrorKind::ReadOnlyFilesystem => Some("the data directory's file system is read-only"),
        _ => None,
    }
}

/// Writes, syncs and removes a small file.
fn write_probe_file(path: &Path) -> io::Result<()> {
    let written = (|| {
        let mut file = fs::File::create(path)?;
        file.write_all(b"baa-logd write probe\n")?;
        file.sync_all()
    })();
    let removed = fs::remove_file(path);
    written?;
    removed
}
