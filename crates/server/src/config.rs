//! The server's settings that are not the store's.

/// Limits and sizes of the gRPC layer.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The largest request message decoded, in bytes. A larger message is
    /// refused with `RESOURCE_EXHAUSTED` (on an append stream) or
    /// `OUT_OF_RANGE` (on a unary call, from the gRPC library), naming the
    /// limit.
    pub max_message_bytes: usize,
    /// The largest text, message or data of one entry, in bytes, as the
    /// store enforces it; reported by `GetServerInfo`.
    pub max_entry_bytes: usize,
    /// A `FollowRun` response carries about this many bytes of entries.
    pub follow_batch_bytes: usize,
    /// An `AppendLogs` stream gathers messages that are already received up
    /// to about this many bytes into one commit.
    pub append_batch_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: 4 * 1024 * 1024,
            max_entry_bytes: 1024 * 1024,
            follow_batch_bytes: 256 * 1024,
            append_batch_bytes: 1024 * 1024,
        }
    }
}
