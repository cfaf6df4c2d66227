//! The systems under test, behind one interface the workloads drive:
//! prepare a run, open writers and followers on it, end it.
//!
//! - `grpc`: `baa-logd` and the transport ceiling (the harness's no-op
//!   server), both over the generated `baa.logging.v1` stubs.
//! - `nats`: NATS JetStream, one stream, a subject per run and channel.
//! - `redis`: Redis Streams, a key per run and channel.
//! - `disk`: the disk ceiling, buffered appends to plain files.
//! - `nats_cluster`: NATS clusters the harness starts itself, and
//!   `jetstream_logd`: baa-logd nodes with `--store jetstream` on one.
//!
//! A connection is opened for a [`Role`], so that a system of several
//! nodes can put writers and followers on different ones.
//!
//! Dispatch is by enum rather than trait objects: the set is closed, the
//! methods are async, and a new way of driving a system (the client
//! crate's batching handle next to the raw stubs, say) is one more variant
//! of [`Writer`] and one more [`SystemKind`].

mod disk;
pub(crate) mod grpc;
pub(crate) mod jetstream_logd;
mod nats;
mod nats_cluster;
pub(crate) mod peers;
mod redis;

use std::{fmt, path::PathBuf};

use serde::Serialize;

use self::nats_cluster::ClusterShape;
pub(crate) use self::peers::Peers;
use crate::{error::Result, pin::Pinning, process::Programs};

/// Which system a row of the report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
pub(crate) enum SystemKind {
    /// `baa-logd`, driven through the raw generated stubs.
    #[value(name = "baa-logd")]
    BaaLogd,
    /// `baa-logd`, driven through the client crate's `RunWriter`.
    #[value(name = "baa-logd-client")]
    BaaLogdClient,
    /// `baa-logd --sync`: a commit is acknowledged once it is on the disk.
    #[value(name = "baa-logd-sync")]
    BaaLogdSync,
    /// NATS JetStream.
    #[value(name = "nats")]
    Nats,
    /// NATS JetStream with `sync_interval: always`: a message is
    /// acknowledged once it is on the disk.
    #[value(name = "nats-sync")]
    NatsSync,
    /// Redis Streams.
    #[value(name = "redis")]
    Redis,
    /// Redis Streams with `appendfsync always`: a command is answered once
    /// the AOF is on the disk.
    #[value(name = "redis-always")]
    RedisAlways,
    /// The no-op gRPC server: what the transport alone costs.
    #[value(name = "transport")]
    TransportCeiling,
    /// Buffered appends to files: what the disk alone costs.
    #[value(name = "disk")]
    DiskCeiling,
    /// baa-logd nodes on one NATS server, a stream of 1 replica, the
    /// server's default sync.
    #[value(name = "baa-logd-js1")]
    BaaLogdJs1,
    /// baa-logd nodes on three NATS servers, a stream of 3 replicas, the
    /// servers' default sync.
    #[value(name = "baa-logd-js3")]
    BaaLogdJs3,
    /// baa-logd nodes on three NATS servers, a stream of 3 replicas,
    /// `sync_interval: always`.
    #[value(name = "baa-logd-js3-sync")]
    BaaLogdJs3Sync,
    /// Raw JetStream publishes, one line per message, to three NATS
    /// servers the harness starts, a stream of 3 replicas,
    /// `sync_interval: always`.
    #[value(name = "nats-js3-sync")]
    NatsJs3Sync,
}

impl SystemKind {
    /// Whether it acknowledges a write only once the write is on the disk.
    pub(crate) fn durable(self) -> bool {
        matches!(
            self,
            Self::BaaLogdSync
                | Self::NatsSync
                | Self::RedisAlways
                | Self::BaaLogdJs3Sync
                | Self::NatsJs3Sync
        )
    }

    /// The NATS cluster the harness starts for it, if it needs one.
    pub(crate) fn cluster(self) -> Option<ClusterShape> {
        let (servers, sync_always) = match self {
            Self::BaaLogdJs1 => (1, false),
            Self::BaaLogdJs3 => (3, false),
            Self::BaaLogdJs3Sync | Self::NatsJs3Sync => (3, true),
            _ => return None,
        };
        Some(ClusterShape {
            servers,
            replicas: servers,
            sync_always,
        })
    }

    /// Whether it is baa-logd, in any configuration.
    pub(crate) fn is_baa_logd(self) -> bool {
        matches!(
            self,
            Self::BaaLogd
                | Self::BaaLogdClient
                | Self::BaaLogdSync
                | Self::BaaLogdJs1
                | Self::BaaLogdJs3
                | Self::BaaLogdJs3Sync
        )
    }

    /// The name in the table.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::BaaLogd => "baa-logd",
            Self::BaaLogdClient => "baa-logd, client crate",
            Self::BaaLogdSync => "baa-logd --sync",
            Self::Nats => "NATS JetStream",
            Self::NatsSync => "NATS JetStream, sync always",
            Self::Redis => "Redis Streams",
            Self::RedisAlways => "Redis Streams, appendfsync always",
            Self::TransportCeiling => "transport ceiling",
            Self::DiskCeiling => "disk ceiling",
            Self::BaaLogdJs1 => "baa-logd on JetStream, 1 server, R1",
            Self::BaaLogdJs3 => "baa-logd on JetStream, 3 servers, R3",
            Self::BaaLogdJs3Sync => "baa-logd on JetStream, 3 servers, R3, sync always",
            Self::NatsJs3Sync => "NATS JetStream, 3 servers, R3, sync always",
        }
    }
}

impl fmt::Display for SystemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// What a connection is for: a system of several nodes puts each on
/// the node that serves it; a single server ignores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Preparing and ending runs.
    Setup,
    /// The writer with this index.
    Writer(usize),
    /// A follower.
    Follower,
}

/// What the harness needs to start any system.
#[derive(Debug, Clone)]
pub(crate) struct Launcher {
    /// The programs it starts.
    pub(crate) programs: Programs,
    /// The `nats-server` for the clusters the harness starts; by default
    /// the pinned one `scripts/install-nats-server.sh` installs.
    pub(crate) nats_server: Option<PathBuf>,
    /// The peers that `scripts/peers.sh` started, if any.
    pub(crate) peers: Peers,
    /// Where servers and the harness run, with `--pin`.
    pub(crate) pinning: Option<Pinning>,
}

impl Launcher {
    /// Starts `kind` fresh for one phase: a new process and data directory
    /// for the harness's own servers, emptied data for a peer. `Err` holds
    /// why it is not available. `relay_capacity` sizes the no-op server's
    /// per-run relay: large where followers must not lag (W2), small where
    /// runs are many and quiet (W3).
    pub(crate) async fn start(
        &self,
        kind: SystemKind,
        relay_capacity: usize,
    ) -> Result<System, String> {
        let system = self.start_unpinned(kind, relay_capacity).await?;
        if let (Some(pinning), Some(pid)) = (&self.pinning, system.pid()) {
            pinning.pin_server(pid).map_err(|err| err.to_string())?;
        }
        Ok(system)
    }

    /// Starts `kind`, wherever the scheduler puts it.
    async fn start_unpinned(
        &self,
        kind: SystemKind,
        relay_capacity: usize,
    ) -> Result<System, String> {
        match kind {
            SystemKind::BaaLogd | SystemKind::BaaLogdClient | SystemKind::BaaLogdSync => {
                let extra: &[&str] = if kind.durable() { &["--sync"] } else { &[] };
                grpc::GrpcSystem::start_baa_logd(&self.programs.baa_logd, extra)
                    .await
                    .map(|mut system| {
                        system.via_client = kind == SystemKind::BaaLogdClient;
                        System::Grpc(system)
                    })
                    .map_err(|err| err.to_string())
            }
            SystemKind::TransportCeiling => {
                grpc::GrpcSystem::start_noop(&self.programs.bench, relay_capacity)
                    .await
                    .map(System::Grpc)
                    .map_err(|err| err.to_string())
            }
            SystemKind::Nats | SystemKind::NatsSync => {
                nats::NatsSystem::start(self.peers.of(kind)?)
                    .await
                    .map(|system| System::Nats(Box::new(system)))
                    .map_err(|err| format!("not available: {err}"))
            }
            SystemKind::Redis | SystemKind::RedisAlways => {
                redis::RedisSystem::start(self.peers.of(kind)?)
                    .await
                    .map(System::Redis)
                    .map_err(|err| format!("not available: {err}"))
            }
            SystemKind::DiskCeiling => disk::DiskSystem::start()
                .map(System::Disk)
                .map_err(|err| err.to_string()),
            SystemKind::BaaLogdJs1 | SystemKind::BaaLogdJs3 | SystemKind::BaaLogdJs3Sync => {
                let shape = kind.cluster().expect("a JetStream system has a cluster");
                jetstream_logd::JetStreamLogd::start(
                    &self.programs.baa_logd,
                    self.nats_server.clone(),
                    shape,
                )
                .await
                .map(|system| System::JetStreamLogd(Box::new(system)))
                .map_err(|err| format!("failed: {err}"))
            }
            SystemKind::NatsJs3Sync => {
                let shape = kind.cluster().expect("a cluster peer has a cluster");
                nats::NatsSystem::start_cluster(self.nats_server.clone(), shape)
                    .await
                    .map(|system| System::Nats(Box::new(system)))
                    .map_err(|err| format!("failed: {err}"))
            }
        }
    }
}

/// A system started for one phase.
#[derive(Debug)]
pub(crate) enum System {
    /// `baa-logd` or the no-op server.
    Grpc(grpc::GrpcSystem),
    /// NATS JetStream (boxed: its client state is large).
    Nats(Box<nats::NatsSystem>),
    /// Redis Streams.
    Redis(redis::RedisSystem),
    /// Plain files.
    Disk(disk::DiskSystem),
    /// baa-logd nodes on a NATS cluster (boxed: it is large).
    JetStreamLogd(Box<jetstream_logd::JetStreamLogd>),
}

/// A client connection to a system, shared by writers and followers that
/// should share one (many runs on one worker machine).
#[derive(Debug, Clone)]
pub(crate) enum Connection {
    /// An HTTP/2 channel.
    Grpc(tonic::transport::Channel),
    /// A NATS connection.
    Nats(async_nats::Client),
    /// A Redis connection (pipelined; followers open their own).
    Redis(::redis::aio::MultiplexedConnection),
    /// Files need no connection.
    Disk,
}

impl System {
    /// The server's process id, when it is a process of its own.
    pub(crate) fn pid(&self) -> Option<u32> {
        match self {
            Self::Grpc(system) => Some(system.pid()),
            Self::Nats(system) => system.pid,
            Self::Redis(system) => system.pid,
            Self::Disk(_) | Self::JetStreamLogd(_) => None,
        }
    }

    /// The process ids whose CPU time and memory are the system's: its
    /// server, or every node and NATS server of a cluster.
    pub(crate) fn pids(&self) -> Vec<u32> {
        match self {
            Self::Nats(system) => system.pids(),
            Self::JetStreamLogd(system) => system.pids(),
            _ => self.pid().into_iter().collect(),
        }
    }

    /// A new connection, for preparing and ending runs.
    pub(crate) async fn connect(&self) -> Result<Connection> {
        self.connect_as(Role::Setup).await
    }

    /// A new connection for `role`.
    pub(crate) async fn connect_as(&self, role: Role) -> Result<Connection> {
        match self {
            Self::Grpc(system) => system.connect().await.map(Connection::Grpc),
            Self::Nats(system) => system.connect(role).await.map(Connection::Nats),
            Self::Redis(system) => system.connect().await.map(Connection::Redis),
            Self::Disk(_) => Ok(Connection::Disk),
            Self::JetStreamLogd(system) => system.node(role).connect().await.map(Connection::Grpc),
        }
    }

    /// Makes `run` ready for writers and followers.
    pub(crate) async fn prepare_run(&self, connection: &Connection, run: &str) -> Result<()> {
        match (self, connection) {
            (Self::Grpc(system), Connection::Grpc(channel)) => {
                system.prepare_run(channel.clone(), run).await
            }
            (Self::JetStreamLogd(system), Connection::Grpc(channel)) => {
                system
                    .node(Role::Setup)
                    .prepare_run(channel.clone(), run)
                    .await
            }
            _ => Ok(()),
        }
    }

    /// Opens a writer on `run`.
    pub(crate) async fn writer(
        &self,
        connection: &Connection,
        run: &str,
        writer_id: &str,
    ) -> Result<Writer> {
        Ok(match (self, connection) {
            (Self::Grpc(system), Connection::Grpc(_)) if system.via_client => Writer::Client(
                Box::new(grpc::ClientWriter::open(&system.url(), run, writer_id).await?),
            ),
            (Self::Grpc(_) | Self::JetStreamLogd(_), Connection::Grpc(channel)) => {
                Writer::Stubs(grpc::StubsWriter::open(channel.clone(), run, writer_id).await?)
            }
            (Self::Nats(system), Connection::Nats(client)) => {
                Writer::Nats(system.writer(client.clone(), run))
            }
            (Self::Redis(_), Connection::Redis(conn)) => {
                Writer::Redis(redis::RedisWriter::new(conn.clone(), run))
            }
            (Self::Disk(system), Connection::Disk) => Writer::Disk(system.writer(run)?),
            _ => unreachable!("a connection of another system"),
        })
    }

    /// Opens a writer on `run` that registers `mask_values` for the
    /// server to mask (baa-logd only).
    pub(crate) async fn masking_writer(
        &self,
        connection: &Connection,
        run: &str,
        writer_id: &str,
        mask_values: Vec<String>,
    ) -> Result<Writer> {
        match (self, connection) {
            (Self::Grpc(_) | Self::JetStreamLogd(_), Connection::Grpc(channel)) => {
                Ok(Writer::Stubs(
                    grpc::StubsWriter::open_masking(channel.clone(), run, writer_id, mask_values)
                        .await?,
                ))
            }
            _ => Err(crate::error::BenchError::Failed(
                "only baa-logd masks".to_owned(),
            )),
        }
    }

    /// Opens a follower of `run`, from its first entry.
    pub(crate) async fn follower(&self, connection: &Connection, run: &str) -> Result<Follower> {
        Ok(match (self, connection) {
            (Self::Grpc(_) | Self::JetStreamLogd(_), Connection::Grpc(channel)) => {
                Follower::Grpc(grpc::GrpcFollower::open(channel.clone(), run).await?)
            }
            (Self::Nats(system), Connection::Nats(client)) => {
                Follower::Nats(Box::new(system.follower(client.clone(), run).await?))
            }
            (Self::Redis(system), Connection::Redis(_)) => {
                Follower::Redis(system.follower(run).await?)
            }
            _ => {
                return Err(crate::error::BenchError::Failed(
                    "this system has no followers".to_owned(),
                ));
            }
        })
    }

    /// Ends `run`, so that followers that end by themselves do.
    pub(crate) async fn end_run(&self, connection: &Connection, run: &str) -> Result<()> {
        match (self, connection) {
            (Self::Grpc(system), Connection::Grpc(channel)) => {
                system.end_run(channel.clone(), run).await
            }
            (Self::JetStreamLogd(system), Connection::Grpc(channel)) => {
                system.node(Role::Setup).end_run(channel.clone(), run).await
            }
            _ => Ok(()),
        }
    }

    /// Stops what the phase started.
    pub(crate) async fn stop(self) -> Result<()> {
        match self {
            Self::Grpc(system) => system.stop().await,
            Self::JetStreamLogd(system) => system.stop().await,
            Self::Nats(_) | Self::Redis(_) | Self::Disk(_) => Ok(()),
        }
    }
}

/// One writer of one run.
#[derive(Debug)]
pub(crate) enum Writer {
    /// An `AppendLogs` stream over the raw stubs.
    Stubs(grpc::StubsWriter),
    /// The client crate's `RunWriter` (boxed: it is large).
    Client(Box<grpc::ClientWriter>),
    /// JetStream publishes with acks in flight.
    Nats(nats::NatsWriter),
    /// Pipelined `XADD`s.
    Redis(redis::RedisWriter),
    /// Buffered appends.
    Disk(disk::DiskWriter),
}

impl Writer {
    /// Sends lines that are ready, as one batch where the system batches.
    pub(crate) async fn send(&mut self, lines: Vec<String>) -> Result<()> {
        match self {
            Self::Stubs(writer) => writer.send(lines).await,
            Self::Client(writer) => writer.send(lines).await,
            Self::Nats(writer) => writer.send(lines).await,
            Self::Redis(writer) => writer.send(lines).await,
            Self::Disk(writer) => writer.send(&lines),
        }
    }

    /// Waits until everything sent is acknowledged; returns how many lines
    /// the system acknowledged.
    pub(crate) async fn finish(self) -> Result<u64> {
        match self {
            Self::Stubs(writer) => writer.finish().await,
            Self::Client(writer) => writer.finish().await,
            Self::Nats(writer) => writer.finish().await,
            Self::Redis(writer) => writer.finish().await,
            Self::Disk(writer) => writer.finish(),
        }
    }
}

/// An entry a follower received.
#[derive(Debug)]
pub(crate) struct Delivered {
    /// The system's own sequence number within the run, where it has one
    /// (baa-logd's `seq`); 0 otherwise.
    pub(crate) seq: u64,
    /// The line's text; empty for entries that are not lines (lifecycle
    /// events).
    pub(crate) text: Vec<u8>,
}

/// One follower of one run.
#[derive(Debug)]
pub(crate) enum Follower {
    /// A `FollowRun` stream.
    Grpc(grpc::GrpcFollower),
    /// An ordered JetStream consumer (boxed: its state is large).
    Nats(Box<nats::NatsFollower>),
    /// `XREAD BLOCK` in a loop.
    Redis(redis::RedisFollower),
}

impl Follower {
    /// The next entries; `None` when the stream ended by itself. Systems
    /// whose streams never end return an empty batch now and then, so the
    /// caller can give up on a deadline.
    pub(crate) async fn next(&mut self) -> Result<Option<Vec<Delivered>>> {
        match self {
            Self::Grpc(follower) => follower.next().await,
            Self::Nats(follower) => follower.next().await,
            Self::Redis(follower) => follower.next().await,
        }
    }
}
