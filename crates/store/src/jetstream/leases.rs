//! Worker leases across nodes: which node holds a run's lease.
//!
//! A run's writer streams through one node, but every node's sweeper
//! watches the running runs, and a node that sees no stream of its own
//! would fail a run that another node serves. So each node writes, for
//! the runs it has a stream open on, "held by me until T" in a key-value
//! bucket (`<stream>_LEASES`), renewed well before T; a sweeper whose
//! lease ran out asks the bucket first and leaves a run that another node
//! holds. When that node dies its entries run out, and the first sweeper
//! to see it fails the run; the run's compare-and-set chain makes that
//! happen once, whichever node does it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::kv;
use serde::{Deserialize, Serialize};
use tracing::debug;

use super::subject;
use crate::model::RunKey;

/// One node's hold of a run's lease.
#[derive(Debug, Serialize, Deserialize)]
struct Held {
    /// The node, as it named itself at start.
    node: String,
    /// Until when, in milliseconds since the epoch.
    until: u64,
}

/// The bucket of lease holds, and this node's name.
#[derive(Debug, Clone)]
pub(crate) struct LeaseHolds {
    /// The bucket.
    pub(crate) kv: kv::Store,
    /// This node's name, new at every start.
    pub(crate) node: String,
}

/// Now, in milliseconds since the epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

impl LeaseHolds {
    /// Records that this node holds each run of `holds` for the time given
    /// with it, from now.
    pub(crate) async fn hold(&self, holds: Vec<(RunKey, Duration)>) {
        let now = now_ms();
        let puts = holds.iter().map(|(key, lease)| {
            let value = serde_json::to_vec(&Held {
                node: self.node.clone(),
                until: now + lease.as_millis() as u64,
            })
            .expect("a hold serializes");
            async move {
                if let Err(err) = self.kv.put(subject::index_key(key), value.into()).await {
                    debug!(run = %key, cause = %err, "cannot record a lease hold");
                }
            }
        });
        futures::future::join_all(puts).await;
    }

    /// Whether another node holds `key`'s lease now. An unreadable bucket
    /// says yes: a run is not failed on a guess.
    pub(crate) async fn held_elsewhere(&self, key: &RunKey) -> bool {
        match self.kv.get(subject::index_key(key)).await {
            Ok(Some(value)) => serde_json::from_slice::<Held>(&value)
                .is_ok_and(|held| held.node != self.node && held.until > now_ms()),
            Ok(None) => false,
            Err(err) => {
                debug!(run = %key, cause = %err, "cannot read a lease hold; not expiring");
                true
            }
        }
    }

    /// Forgets `key`'s hold (the run was deleted).
    pub(crate) async fn forget(&self, key: &RunKey) {
        // A purge of the key's subject leaves no marker behind.
        let subject = format!("{}{}", self.kv.prefix, subject::index_key(key));
        let _ = self.kv.stream.purge().filter(subject).await;
    }
}
