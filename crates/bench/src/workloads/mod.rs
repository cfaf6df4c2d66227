//! The five workloads, each over every system it applies to, one fresh
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

pub(crate) mod fan_out;
pub(crate) mod many_runs;
pub(crate) mod restart;
pub(crate) mod slow_followers;
pub(crate) mod throughput;

use futures::{StreamExt, TryStreamExt};

use crate::{
    error::Result,
    systems::{Connection, System},
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

/// The name of a run: the workload and an index.
pub(crate) fn run_name(prefix: &str, index: usize) -> String {
    format!("{prefix}-{index}")
}
