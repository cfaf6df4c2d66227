//! NATS JetStream as a log service: one file-backed stream over the
//! subjects `run.<run>.<channel>`, writers publishing one line per message
//! with a window of acks in flight, followers as ordered consumers filtered
//! on their run's subject. The server is a peer `scripts/peers.sh`
//! started, or a cluster the harness starts for the phase.

use std::{collections::VecDeque, path::PathBuf, time::Duration};

use async_nats::jetstream::{
    self,
    consumer::{DeliverPolicy, pull},
    context::PublishAckFuture,
    stream::{Config, StorageType},
};
use futures::{FutureExt, StreamExt};

use super::{
    Delivered, Role,
    nats_cluster::{ClusterShape, NatsCluster},
    peers::PeerAddr,
};
use crate::error::{Context, Result};

/// The stream every run goes into.
const STREAM: &str = "BAA_BENCH";

/// Publishes whose acks a writer waits for at most at once.
const ACKS_IN_FLIGHT: usize = 1024;

/// Messages a follower takes at most per batch.
const FOLLOW_BATCH: usize = 1024;

/// A NATS server (or a cluster the harness started) with an empty
/// benchmark stream.
#[derive(Debug)]
pub(crate) struct NatsSystem {
    /// Where its servers listen.
    urls: Vec<String>,
    /// The process id of a peer `scripts/peers.sh` started.
    pub(crate) pid: Option<u32>,
    /// The stream.
    stream: jetstream::stream::Stream,
    /// The cluster started for this phase, if it is one; killed when the
    /// system is dropped.
    cluster: Option<NatsCluster>,
}

impl NatsSystem {
    /// Connects to a peer and makes the stream anew, empty.
    pub(crate) async fn start(peer: &PeerAddr) -> Result<Self> {
        Self::start_on(vec![peer.url.clone()], peer.pid, 1, None).await
    }

    /// Starts a cluster of `shape` and makes the stream on it, of
    /// `shape.replicas` replicas.
    pub(crate) async fn start_cluster(
        nats_bin: Option<PathBuf>,
        shape: ClusterShape,
    ) -> Result<Self> {
        let cluster = NatsCluster::start(nats_bin, shape).await?;
        Self::start_on(cluster.urls(), None, shape.replicas, Some(cluster)).await
    }

    /// Makes the stream anew, empty, of `replicas` replicas, through the
    /// first of `urls`.
    async fn start_on(
        urls: Vec<String>,
        pid: Option<u32>,
        replicas: usize,
        cluster: Option<NatsCluster>,
    ) -> Result<Self> {
        let client = async_nats::connect(&urls[0])
            .await
            .context(format!("cannot connect to {}", urls[0]))?;
        let context = jetstream::new(client);
        // A stream left by an earlier phase goes, with its files.
        let _ = context.delete_stream(STREAM).await;
        let stream = context
            .create_stream(Config {
                name: STREAM.to_owned(),
                subjects: vec!["run.>".to_owned()],
                storage: StorageType::File,
                num_replicas: replicas,
                ..Config::default()
            })
            .await
            .context("cannot create the JetStream stream")?;
        Ok(Self {
            urls,
            pid,
            stream,
            cluster,
        })
    }

    /// A new connection for `role`. On a cluster, writers connect to all
    /// servers but the last (writer `i` to server `i mod (n - 1)`), and
    /// followers to the last, as the baa-logd nodes are spread.
    pub(crate) async fn connect(&self, role: Role) -> Result<async_nats::Client> {
        let writer_servers = self.urls.len().saturating_sub(1).max(1);
        let index = match role {
            Role::Setup => 0,
            Role::Writer(index) => index % writer_servers,
            Role::Follower => self.urls.len() - 1,
        };
        let url = &self.urls[index];
        async_nats::connect(url)
            .await
            .context(format!("cannot connect to {url}"))
    }

    /// The process ids of its servers, where known.
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.pid
            .into_iter()
            .chain(self.cluster.iter().flat_map(NatsCluster::pids))
            .collect()
    }

    /// A writer of `run`'s stdout on `client`.
    pub(crate) fn writer(&self, client: async_nats::Client, run: &str) -> NatsWriter {
        let context = jetstream::context::ContextBuilder::new()
            .max_ack_inflight(ACKS_IN_FLIGHT * 2)
            .timeout(Duration::from_secs(60))
            .build(client);
        NatsWriter {
            context,
            subject: subject(run),
            pending: VecDeque::new(),
            acked: 0,
        }
    }

    /// An ordered consumer of `run`'s stdout, from its first message.
    pub(crate) async fn follower(
        &self,
        client: async_nats::Client,
        run: &str,
    ) -> Result<NatsFollower> {
        let stream = jetstream::new(client)
            .get_stream(STREAM)
            .await
            .context("cannot find the stream")?;
        let _ = &self.stream;
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: subject(run),
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .context("cannot create an ordered consumer")?;
        let messages = consumer
            .messages()
            .await
            .context("cannot start the ordered consumer")?;
        Ok(NatsFollower { messages })
    }
}

/// The subject of a run's stdout.
fn subject(run: &str) -> String {
    format!("run.{run}.stdout")
}

/// Publishes one run's lines, keeping up to [`ACKS_IN_FLIGHT`] unacked.
#[derive(Debug)]
pub(crate) struct NatsWriter {
    /// The JetStream context of this writer's connection.
    context: jetstream::Context,
    /// Where it publishes.
    subject: String,
    /// Acks not received yet, oldest first.
    pending: VecDeque<PublishAckFuture>,
    /// Acks received.
    acked: u64,
}

impl NatsWriter {
    /// Publishes each line.
    pub(crate) async fn send(&mut self, lines: Vec<String>) -> Result<()> {
        for line in lines {
            let ack = self
                .context
                .publish(self.subject.clone(), line.into())
                .await
                .context("publish failed")?;
            self.pending.push_back(ack);
            while self.pending.len() > ACKS_IN_FLIGHT {
                self.wait_oldest().await?;
            }
        }
        Ok(())
    }

    /// Waits for every ack.
    pub(crate) async fn finish(mut self) -> Result<u64> {
        while !self.pending.is_empty() {
            self.wait_oldest().await?;
        }
        Ok(self.acked)
    }

    /// Waits for the oldest ack.
    async fn wait_oldest(&mut self) -> Result<()> {
        if let Some(ack) = self.pending.pop_front() {
            ack.await.context("publish not acknowledged")?;
            self.acked += 1;
        }
        Ok(())
    }
}

/// An ordered consumer's messages.
pub(crate) struct NatsFollower {
    /// The messages.
    messages: pull::Ordered,
}

impl std::fmt::Debug for NatsFollower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsFollower").finish_non_exhaustive()
    }
}

impl NatsFollower {
    /// The messages that are ready, waiting at most a second for the first.
    pub(crate) async fn next(&mut self) -> Result<Option<Vec<Delivered>>> {
        let mut batch = Vec::new();
        let first = tokio::time::timeout(Duration::from_secs(1), self.messages.next()).await;
        let mut message = match first {
            Err(_) => return Ok(Some(batch)),
            Ok(None) => return Ok(None),
            Ok(Some(message)) => Some(message),
        };
        while let Some(next) = message {
            let next = next.context("ordered consumer failed")?;
            batch.push(Delivered {
                seq: 0,
                text: next.payload.to_vec(),
            });
            if batch.len() >= FOLLOW_BATCH {
                break;
            }
            message = self.messages.next().now_or_never().flatten();
        }
        Ok(Some(batch))
    }
}
