//! The server's settings that are not the store's: limits and sizes of the
//! gRPC layer, its security, where it counts what it does, and when
//! retention runs.

use std::time::Duration;

use baa_logging_store::RetentionPolicy;

use crate::{Metrics, Security, Settings};

/// Limits, sizes and security of the gRPC layer.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The largest request message decoded, in bytes. A larger message is
    /// refused with `RESOURCE_EXHAUSTED` (on an append stream) or
    /// `OUT_OF_RANGE` (on a unary call, from the gRPC library), naming the
    /// limit.
    pub max_message_bytes: usize,
    /// The largest text or message of one entry, in bytes, as the store
    /// enforces it; reported by `GetServerInfo`.
    pub max_entry_bytes: usize,
    /// The largest structured data of one event, as JSON, in bytes, as the
    /// store enforces it; reported by `GetServerInfo`.
    pub max_data_bytes: usize,
    /// A `FollowRun` response carries about this many bytes of entries.
    pub follow_batch_bytes: usize,
    /// An `AppendLogs` stream gathers messages that are already received up
    /// to about this many bytes into one commit.
    pub append_batch_bytes: usize,
    /// The most items in one Append message.
    pub max_batch_entries: usize,
    /// The most concurrent calls on one HTTP/2 connection, announced to
    /// clients in the connection's settings.
    pub max_streams_per_connection: u32,
    /// How often each connection is pinged.
    pub keepalive_interval: Duration,
    /// How long a ping may go unanswered before the connection is closed.
    pub keepalive_timeout: Duration,
    /// An Append stream that sends nothing for this long is closed; what it
    /// sent is kept.
    pub append_idle_timeout: Duration,
    /// The most entries a second one run takes; 0: no limit.
    pub append_rate: u64,
    /// The most followers of one run.
    pub max_followers_per_run: usize,
    /// The most followers in all.
    pub max_followers: usize,
    /// TLS and tokens.
    pub security: Security,
    /// Where calls, streams, follower lag and runs are counted; none: not
    /// counted. Serve it with [`crate::metrics::serve`], and give the store
    /// its [`Metrics::store_observer`] for the disk figures.
    pub metrics: Option<Metrics>,
    /// Which finished runs retention deletes. With no limit set there is no
    /// periodic pass, and `CollectRuns` needs limits of its own.
    pub retention: RetentionPolicy,
    /// How often the periodic retention pass runs (the first one at
    /// start); zero: never on its own, only through `CollectRuns`.
    pub retention_interval: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self::from_settings(&Settings::default(), Security::default())
    }
}

impl ServerConfig {
    /// The gRPC layer's part of `settings`.
    pub fn from_settings(settings: &Settings, security: Security) -> Self {
        let limits = &settings.limits;
        Self {
            max_message_bytes: limits.max_message_bytes,
            max_entry_bytes: limits.max_entry_bytes,
            max_data_bytes: limits.max_data_bytes,
            follow_batch_bytes: 256 * 1024,
            append_batch_bytes: 1024 * 1024,
            max_batch_entries: limits.max_batch_entries,
            max_streams_per_connection: limits.max_streams_per_connection,
            keepalive_interval: limits.keepalive_interval,
            keepalive_timeout: limits.keepalive_timeout,
            append_idle_timeout: limits.append_idle_timeout,
            append_rate: limits.append_rate,
            max_followers_per_run: limits.max_followers_per_run,
            max_followers: limits.max_followers,
            security,
            metrics: None,
            retention: RetentionPolicy {
                max_age: settings.retention.max_age,
                max_bytes: settings.retention.max_bytes,
            },
            retention_interval: settings.retention.interval,
        }
    }
}
