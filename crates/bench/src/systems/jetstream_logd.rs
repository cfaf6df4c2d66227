//! `baa-logd` on NATS JetStream: a cluster the harness starts for the
//! phase, and [`NODES`] `baa-logd` nodes with `--store jetstream` on it,
//! spread as in the fault test: writers append through the first
//! [`WRITER_NODES`] nodes (writer `i` through node `i mod 2`), followers
//! read through the last one, so every line a follower gets went from one
//! node through the stream to another.

use std::path::{Path, PathBuf};

use super::{
    Role,
    grpc::GrpcSystem,
    nats_cluster::{ClusterShape, NatsCluster},
};
use crate::error::Result;

/// baa-logd nodes on the cluster.
const NODES: usize = 3;

/// The nodes writers go through; the rest serve followers.
const WRITER_NODES: usize = 2;

/// A NATS cluster and the baa-logd nodes on it.
#[derive(Debug)]
pub(crate) struct JetStreamLogd {
    /// The nodes, writers' first.
    nodes: Vec<GrpcSystem>,
    /// The NATS servers; killed after the nodes stopped.
    cluster: NatsCluster,
}

impl JetStreamLogd {
    /// Starts a cluster of `shape` with `nats_bin`, then the nodes one
    /// after the other (the first makes the stream, of `shape.replicas`
    /// replicas).
    pub(crate) async fn start(
        baa_logd: &Path,
        nats_bin: Option<PathBuf>,
        shape: ClusterShape,
    ) -> Result<Self> {
        let cluster = NatsCluster::start(nats_bin, shape).await?;
        let urls = cluster.urls().join(",");
        let replicas = shape.replicas.to_string();
        let extra = [
            "--store",
            "jetstream",
            "--nats-url",
            &urls,
            "--nats-replicas",
            &replicas,
        ];
        let mut nodes = Vec::with_capacity(NODES);
        for _ in 0..NODES {
            nodes.push(GrpcSystem::start_baa_logd(baa_logd, &extra).await?);
        }
        Ok(Self { nodes, cluster })
    }

    /// The node that serves `role`.
    pub(crate) fn node(&self, role: Role) -> &GrpcSystem {
        match role {
            Role::Setup => &self.nodes[0],
            Role::Writer(index) => &self.nodes[index % WRITER_NODES],
            Role::Follower => &self.nodes[WRITER_NODES],
        }
    }

    /// The process ids of the nodes and the NATS servers.
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .map(GrpcSystem::pid)
            .chain(self.cluster.pids())
            .collect()
    }

    /// Stops the nodes with SIGTERM, then kills the NATS servers.
    pub(crate) async fn stop(self) -> Result<()> {
        let mut result = Ok(());
        for node in self.nodes {
            let stopped = node.stop().await;
            if result.is_ok() {
                result = stopped;
            }
        }
        drop(self.cluster);
        result
    }
}
