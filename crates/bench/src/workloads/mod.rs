//! The workloads, each over every system it applies to, one fresh
//! system per measured phase.
//!
//! - [`throughput`] (W1): writers streaming lines as fast as they are
//!   acknowledged.
//! - [`fan_out`] (W2): one paced writer, many followers, latency and
//!   completeness.
//! - [`many_runs`] (W3): many open, quiet runs; what the server holds.
//! - [`restart`] (W4): a full data directory; how soon a restarted server
//!   serves.
//! - [`slow_followers`] (W5): followers that never read; what the server
//!   holds for them.
//! - [`tail`] (W6): the last entries of a large run against all of it.
//! - [`search`] (W7): `SearchRuns` against `grep`, and what a search costs
//!   the writers.
//! - [`exec_overhead`] (W8): a command that prints as fast as it can,
//!   bare and under `baa-log exec`, on a pipe and on a terminal.
//! - [`browser`] (W9): the run page in a headless chromium: opening a
//!   large run, scrolling through it, and a live run's latency against a
//!   gRPC follower's.
//! - [`objects`] (W10): a large artifact uploaded and downloaded, against
//!   `dd conv=fsync` of the same file to the same file system.
//!
//! [`data_set`] fills the runs W4 and W7 share.

pub(crate) mod browser;
pub(crate) mod data_set;
pub(crate) mod exec_overhead;
pub(crate) mod fan_out;
pub(crate) mod many_runs;
pub(crate) mod objects;
pub(crate) mod restart;
pub(crate) mod search;
pub(crate) mod slow_followers;
pub(crate) mod tail;
pub(crate) mod throughput;

use futures::{StreamExt, TryStreamExt};
use tonic::transport::Channel;

use crate::{
    error::{BenchError, Result},
    systems::{Connection, Role, System},
};

/// Prepares every run, a few at a time.
pub(crate) async fn prepare_runs(
    system: &System,
    connection: &Connection,
    runs: &[String],
) -> Result<()> {
    futures::stream::iter(runs.iter().map(Ok))
        .try_for_each_concurrent(16, |run| system.prepare_run(connection, run))
        .await
}

/// Opens `count` connections, a few at a time.
pub(crate) async fn connections(system: &System, count: usize) -> Result<Vec<Connection>> {
    futures::stream::iter(0..count)
        .map(|_| system.connect())
        .buffered(16)
        .try_collect()
        .await
}

/// Opens a connection for each of `count` writers, a few at a time: on
/// a system of several nodes, each on the node that serves writer `i`.
pub(crate) async fn writer_connections(system: &System, count: usize) -> Result<Vec<Connection>> {
    futures::stream::iter(0..count)
        .map(|index| system.connect_as(Role::Writer(index)))
        .buffered(16)
        .try_collect()
        .await
}

/// Opens a connection for each of `count` followers, a few at a time: on
/// a system of several nodes, on the node that serves followers.
pub(crate) async fn follower_connections(system: &System, count: usize) -> Result<Vec<Connection>> {
    futures::stream::iter(0..count)
        .map(|_| system.connect_as(Role::Follower))
        .buffered(16)
        .try_collect()
        .await
}

/// The name of a run: the workload and an index.
pub(crate) fn run_name(prefix: &str, index: usize) -> String {
    format!("{prefix}-{index}")
}

/// A new gRPC connection to `system`, which must be baa-logd.
pub(crate) async fn grpc_channel(system: &System) -> Result<Channel> {
    match system.connect().await? {
        Connection::Grpc(channel) => Ok(channel),
        _ => Err(BenchError::Failed("baa-logd speaks gRPC".into())),
    }
}
