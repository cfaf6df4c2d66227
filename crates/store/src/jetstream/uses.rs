//! Which nodes use which runs: a node with a stream, a reader or a hold
//! open on a run writes "used by me until T" in the key-value bucket
//! `<stream>_USES`, one key per run and node, and renews it while the run
//! stays in use; retention on any node leaves a run that another node
//! uses, as it leaves one its own node uses. A node that dies stops
//! renewing, and its keys run out.

use std::{collections::HashSet, sync::Weak, time::Duration};

use async_nats::jetstream::kv;
use serde::{Deserialize, Serialize};
use tracing::debug;

use super::{Shared, index::latest_values, leases::now_ms, subject};
use crate::{error::Result, local::concurrency::lock, model::RunKey};

/// How long a use is held without being renewed.
const HOLD: Duration = Duration::from_secs(30);

/// How often a node renews its uses.
const RENEW_EVERY: Duration = Duration::from_secs(10);

/// One node's use of a run.
#[derive(Debug, Serialize, Deserialize)]
struct Used {
    /// Until when, in milliseconds since the epoch.
    until: u64,
}

/// The bucket of uses, and this node's name.
#[derive(Debug, Clone)]
pub(crate) struct UseHolds {
    /// The bucket.
    pub(crate) kv: kv::Store,
    /// This node's name, new at every start, as a key token.
    pub(crate) node: String,
}

impl UseHolds {
    /// The key of this node's use of `key`.
    fn name(&self, key: &RunKey) -> String {
        format!("{}.{}", subject::index_key(key), self.node)
    }

    /// Records that this node uses each of `keys`, for a while from now.
    pub(crate) async fn hold(&self, keys: Vec<RunKey>) {
        let value = serde_json::to_vec(&Used {
            until: now_ms() + HOLD.as_millis() as u64,
        })
        .expect("a use serializes");
        let puts = keys.iter().map(|key| {
            let value = value.clone();
            async move {
                if let Err(err) = self.kv.put(self.name(key), value.into()).await {
                    debug!(run = %key, cause = %err, "cannot record a use of a run");
                }
            }
        });
        futures::future::join_all(puts).await;
    }

    /// Forgets this node's use of `key`.
    pub(crate) async fn release(&self, key: &RunKey) {
        let subject = format!("{}{}", self.kv.prefix, self.name(key));
        let _ = self.kv.stream.purge().filter(subject).await;
    }

    /// The runs another node uses now.
    ///
    /// # Errors
    ///
    /// [`crate::StoreError::Unavailable`]: retention then keeps every run.
    pub(crate) async fn used_elsewhere(&self) -> Result<HashSet<RunKey>> {
        let now = now_ms();
        let mut used = HashSet::new();
        for (name, value, _) in latest_values(&self.kv, ">", "the uses of runs").await? {
            let Some((run, node)) = name.rsplit_once('.') else {
                continue;
            };
            let current = serde_json::from_slice::<Used>(&value).is_ok_and(|u| u.until > now);
            if node != self.node
                && current
                && let Some(key) = subject::key_of_index(run)
            {
                used.insert(key);
            }
        }
        Ok(used)
    }
}

/// Renews this node's uses of the runs it has open (and told the other
/// nodes of), until the store is dropped.
pub(crate) async fn renew(shared: Weak<Shared>) {
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let keys: Vec<RunKey> = lock(&shared.announced).keys().cloned().collect();
        if keys.is_empty() {
            continue;
        }
        shared.uses.hold(keys.clone()).await;
        // A run whose last use ended while these were written keeps no
        // use renewed by mistake.
        for key in keys {
            if !lock(&shared.announced).contains_key(&key) {
                shared.uses.release(&key).await;
            }
        }
    }
}
