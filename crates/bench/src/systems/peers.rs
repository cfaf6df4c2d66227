//! The peers `scripts/peers.sh start` left running: for each, a `<name>.url`
//! and a `<name>.pid` file in its state directory.

use std::{fs, path::Path};

use super::SystemKind;

/// Where a running peer listens, and its process.
#[derive(Debug, Clone)]
pub(crate) struct PeerAddr {
    /// Its URL, `nats://…` or `redis://…`.
    pub(crate) url: String,
    /// Its process id, for CPU time and memory.
    pub(crate) pid: Option<u32>,
}

/// The peers of this run; each is its address or why it is not available.
#[derive(Debug, Clone)]
pub(crate) struct Peers {
    /// NATS JetStream.
    pub(crate) nats: Result<PeerAddr, String>,
    /// NATS JetStream with `sync_interval: always`.
    pub(crate) nats_sync: Result<PeerAddr, String>,
    /// Redis Streams.
    pub(crate) redis: Result<PeerAddr, String>,
    /// Redis Streams with `appendfsync always`.
    pub(crate) redis_always: Result<PeerAddr, String>,
}

impl Peers {
    /// No peers, for `reason`.
    pub(crate) fn none(reason: &str) -> Self {
        let none = || Err(format!("not available: {reason}"));
        Self {
            nats: none(),
            nats_sync: none(),
            redis: none(),
            redis_always: none(),
        }
    }

    /// The peer that runs as `kind`, or why it is not available.
    pub(crate) fn of(&self, kind: SystemKind) -> Result<&PeerAddr, String> {
        let peer = match kind {
            SystemKind::Nats => &self.nats,
            SystemKind::NatsSync => &self.nats_sync,
            SystemKind::Redis => &self.redis,
            SystemKind::RedisAlways => &self.redis_always,
            _ => return Err(format!("{kind} is not a peer")),
        };
        peer.as_ref().map_err(Clone::clone)
    }

    /// Reads the state directory of `scripts/peers.sh`.
    pub(crate) fn load(dir: &Path) -> Self {
        let peer = |name: &str| -> Result<PeerAddr, String> {
            let url = fs::read_to_string(dir.join(format!("{name}.url"))).map_err(|_| {
                format!(
                    "not available: not started (no {}; run scripts/peers.sh start)",
                    dir.join(format!("{name}.url")).display()
                )
            })?;
            let pid = fs::read_to_string(dir.join(format!("{name}.pid")))
                .ok()
                .and_then(|pid| pid.trim().parse().ok());
            if let Some(pid) = pid
                && !Path::new(&format!("/proc/{pid}")).exists()
            {
                return Err(format!("not available: process {pid} is not running"));
            }
            Ok(PeerAddr {
                url: url.trim().to_owned(),
                pid,
            })
        };
        Self {
            nats: peer("nats"),
            nats_sync: peer("nats-sync"),
            redis: peer("redis"),
            redis_always: peer("redis-always"),
        }
    }
}
