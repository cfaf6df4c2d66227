//! [`Limits`]: what the server takes from a client, each limit documented
//! here once with its default.
//!
//! The server's configuration file holds them as its `[limits]` table and
//! its flags override them; the store enforces the entry limits, the
//! server the rest, and `GetServerInfo` reports the first four so that
//! clients keep to them. A client that talks to a server too old to report
//! a limit falls back to the `DEFAULT_*` constant.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The default of [`Limits::max_message_bytes`]: 4 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// The default of [`Limits::max_entry_bytes`]: 1 MiB.
pub const DEFAULT_MAX_ENTRY_BYTES: usize = 1024 * 1024;
/// The default of [`Limits::max_data_bytes`]: 256 KiB.
pub const DEFAULT_MAX_DATA_BYTES: usize = 256 * 1024;
/// The default of [`Limits::max_batch_entries`].
pub const DEFAULT_MAX_BATCH_ENTRIES: usize = 10_000;
/// The default of [`Limits::max_streams_per_connection`].
pub const DEFAULT_MAX_STREAMS_PER_CONNECTION: u32 = 1024;
/// The default of [`Limits::stream_window_bytes`]: 4 MiB.
pub const DEFAULT_STREAM_WINDOW_BYTES: u32 = 4 * 1024 * 1024;
/// The default of [`Limits::connection_window_bytes`]: 8 MiB.
pub const DEFAULT_CONNECTION_WINDOW_BYTES: u32 = 8 * 1024 * 1024;
/// The default of [`Limits::max_frame_bytes`]: 256 KiB.
pub const DEFAULT_MAX_FRAME_BYTES: u32 = 256 * 1024;
/// The smallest HTTP/2 frame size a server may announce (RFC 9113).
pub const MIN_FRAME_BYTES: u32 = 16_384;
/// The largest HTTP/2 frame size a server may announce (RFC 9113: 2^24 - 1).
pub const MAX_FRAME_BYTES: u32 = (1 << 24) - 1;
/// The smallest HTTP/2 flow-control window (RFC 9113's initial one).
pub const MIN_WINDOW_BYTES: u32 = 65_535;
/// The largest HTTP/2 flow-control window (RFC 9113: 2^31 - 1).
pub const MAX_WINDOW_BYTES: u32 = (1 << 31) - 1;
/// The default of [`Limits::codec_buffer_bytes`]: 1 KiB.
pub const DEFAULT_CODEC_BUFFER_BYTES: usize = 1024;
/// The default of [`Limits::max_open_files`].
pub const DEFAULT_MAX_OPEN_FILES: usize = 8192;
/// The default of [`Limits::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// The default of [`Limits::handshake_timeout`].
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The default of [`Limits::keepalive_interval`].
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// The default of [`Limits::keepalive_timeout`].
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// The default of [`Limits::append_idle_timeout`]: ten minutes.
pub const DEFAULT_APPEND_IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// The default of [`Limits::append_rate`].
pub const DEFAULT_APPEND_RATE: u64 = 1_000_000;
/// The default of [`Limits::max_followers_per_run`].
pub const DEFAULT_MAX_FOLLOWERS_PER_RUN: usize = 1024;
/// The default of [`Limits::max_followers`].
pub const DEFAULT_MAX_FOLLOWERS: usize = 65_536;
/// The default of [`Limits::max_follow_buffer_bytes`]: 64 MiB.
pub const DEFAULT_MAX_FOLLOW_BUFFER_BYTES: usize = 64 * 1024 * 1024;
/// The default of [`Limits::search_rate`]: 64 MiB a second.
pub const DEFAULT_SEARCH_RATE: u64 = 64 * 1024 * 1024;

/// Limits that protect the server from a runaway or hostile client, each
/// with a default a single server can afford.
///
/// Going over a size or count limit is refused with `RESOURCE_EXHAUSTED`
/// naming the limit; going over [`Limits::append_rate`] slows the writer
/// down instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// The largest request message the server decodes, in bytes. An Append
    /// message over it ends its stream with `RESOURCE_EXHAUSTED`; a unary
    /// request over it gets the gRPC library's `OUT_OF_RANGE`.
    pub max_message_bytes: usize,
    /// The largest text of one output chunk, or message of one lifecycle
    /// event, in bytes. The store refuses a larger entry; the client crate
    /// splits output into chunks within it.
    pub max_entry_bytes: usize,
    /// The largest structured data of one lifecycle event, as JSON, in
    /// bytes; enforced by the store.
    pub max_data_bytes: usize,
    /// The most items in one Append message.
    pub max_batch_entries: usize,
    /// The most concurrent calls on one HTTP/2 connection, announced to
    /// clients in the connection's settings.
    pub max_streams_per_connection: u32,
    /// The HTTP/2 flow-control window of each call: the bytes a client may
    /// send on one call before the server has read them. A larger window
    /// keeps more of an upload in flight while the server writes; it is
    /// also the most one call's unread bytes hold in the server's memory.
    pub stream_window_bytes: u32,
    /// The HTTP/2 flow-control window of each connection: the bytes a
    /// client may send over all its calls before the server has read
    /// them, and so the most a connection's unread bytes hold in memory.
    pub connection_window_bytes: u32,
    /// The largest HTTP/2 frame the server takes, in bytes. HTTP/2's own
    /// 16 KiB cuts a 1 MiB upload message into 64 frames, each read and
    /// parsed on its own; larger frames cost fewer reads.
    pub max_frame_bytes: u32,
    /// The buffer each call starts with to decode its requests, and one
    /// to encode its responses; each grows to the largest message it
    /// carries, and lives as long as the call. tonic's own 8 KiB cost an
    /// idle Append stream and follower 16 KiB between them.
    pub codec_buffer_bytes: usize,
    /// The most files the store keeps open for appending between commits,
    /// over every run (each run that writes has up to four: its journal
    /// and three channel files). Past it, the file used least recently is
    /// closed, and opened again by its run's next commit; a commit or sync
    /// under way keeps the files it holds open until it is done.
    pub max_open_files: usize,
    /// The most client connections open at once; past it, new connections
    /// are closed as soon as they are accepted (and logged at most every
    /// few seconds), so that idle sockets cannot use up the descriptors
    /// that runs need.
    pub max_connections: usize,
    /// How long a new connection may take over its handshake (TLS, or the
    /// HTTP/2 preface on a plain listener) before it is closed.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// How often the server pings each HTTP/2 connection, so that dead
    /// followers and writers are noticed.
    #[serde(with = "humantime_serde")]
    pub keepalive_interval: Duration,
    /// How long a ping may go unanswered before the connection is closed.
    #[serde(with = "humantime_serde")]
    pub keepalive_timeout: Duration,
    /// An Append stream that sends nothing for this long is closed with
    /// `DEADLINE_EXCEEDED`; what it sent is kept.
    #[serde(with = "humantime_serde")]
    pub append_idle_timeout: Duration,
    /// The most entries a second one run takes; faster writers wait, in
    /// their connection's flow-control window (0: no limit).
    pub append_rate: u64,
    /// The most followers of one run.
    pub max_followers_per_run: usize,
    /// The most followers in all.
    pub max_followers: usize,
    /// The most bytes of Follow responses handed to connections and not
    /// yet taken by their followers, over every follower. Past it, each
    /// follower's responses shrink to 16 KiB until followers catch up, so
    /// followers that stop reading hold at most this plus 16 KiB each.
    pub max_follow_buffer_bytes: usize,
    /// The most bytes of stored entries a second that one caller's
    /// searches scan, over all of them, with bursts of one second's worth
    /// (0: no limit). A caller is a token, or a client address without
    /// tokens.
    pub search_rate: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_entry_bytes: DEFAULT_MAX_ENTRY_BYTES,
            max_data_bytes: DEFAULT_MAX_DATA_BYTES,
            max_batch_entries: DEFAULT_MAX_BATCH_ENTRIES,
            max_streams_per_connection: DEFAULT_MAX_STREAMS_PER_CONNECTION,
            stream_window_bytes: DEFAULT_STREAM_WINDOW_BYTES,
            connection_window_bytes: DEFAULT_CONNECTION_WINDOW_BYTES,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            codec_buffer_bytes: DEFAULT_CODEC_BUFFER_BYTES,
            max_open_files: DEFAULT_MAX_OPEN_FILES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            keepalive_interval: DEFAULT_KEEPALIVE_INTERVAL,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            append_idle_timeout: DEFAULT_APPEND_IDLE_TIMEOUT,
            append_rate: DEFAULT_APPEND_RATE,
            max_followers_per_run: DEFAULT_MAX_FOLLOWERS_PER_RUN,
            max_followers: DEFAULT_MAX_FOLLOWERS,
            max_follow_buffer_bytes: DEFAULT_MAX_FOLLOW_BUFFER_BYTES,
            search_rate: DEFAULT_SEARCH_RATE,
        }
    }
}

/// A limit that cannot work: the server would refuse everything, or
/// promise clients what it cannot take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("limits.{name} {problem}")]
pub struct InvalidLimit {
    /// The limit's key, as the configuration file spells it.
    pub name: &'static str,
    /// What is wrong with its value.
    pub problem: String,
}

impl Limits {
    /// Checks that the limits can work together: every count and duration
    /// is above zero (but `append_rate` and `search_rate`, where 0 means no
    /// limit), and one
    /// entry at the entry and data limits fits in a message.
    ///
    /// # Errors
    ///
    /// [`InvalidLimit`] naming the first limit that cannot work.
    pub fn sanitize(&self) -> Result<(), InvalidLimit> {
        let positive = [
            ("max_message_bytes", self.max_message_bytes == 0),
            ("max_entry_bytes", self.max_entry_bytes == 0),
            ("max_data_bytes", self.max_data_bytes == 0),
            ("max_batch_entries", self.max_batch_entries == 0),
            (
                "max_streams_per_connection",
                self.max_streams_per_connection == 0,
            ),
            ("max_open_files", self.max_open_files == 0),
            ("max_connections", self.max_connections == 0),
            ("handshake_timeout", self.handshake_timeout.is_zero()),
            ("keepalive_interval", self.keepalive_interval.is_zero()),
            ("keepalive_timeout", self.keepalive_timeout.is_zero()),
            ("append_idle_timeout", self.append_idle_timeout.is_zero()),
            ("max_followers_per_run", self.max_followers_per_run == 0),
            ("max_followers", self.max_followers == 0),
            ("max_follow_buffer_bytes", self.max_follow_buffer_bytes == 0),
        ];
        if let Some((name, _)) = positive.into_iter().find(|(_, zero)| *zero) {
            return Err(InvalidLimit {
                name,
                problem: "must be more than 0".to_owned(),
            });
        }
        for (name, value) in [
            ("stream_window_bytes", self.stream_window_bytes),
            ("connection_window_bytes", self.connection_window_bytes),
        ] {
            if !(MIN_WINDOW_BYTES..=MAX_WINDOW_BYTES).contains(&value) {
                return Err(InvalidLimit {
                    name,
                    problem: format!(
                        "({value}) must be from {MIN_WINDOW_BYTES} to {MAX_WINDOW_BYTES}, as \
                         HTTP/2 allows"
                    ),
                });
            }
        }
        if !(MIN_FRAME_BYTES..=MAX_FRAME_BYTES).contains(&self.max_frame_bytes) {
            return Err(InvalidLimit {
                name: "max_frame_bytes",
                problem: format!(
                    "({}) must be from {MIN_FRAME_BYTES} to {MAX_FRAME_BYTES}, as HTTP/2 allows",
                    self.max_frame_bytes
                ),
            });
        }
        for (name, value) in [
            ("max_entry_bytes", self.max_entry_bytes),
            ("max_data_bytes", self.max_data_bytes),
        ] {
            if value > self.max_message_bytes {
                return Err(InvalidLimit {
                    name,
                    problem: format!(
                        "({value}) is over max_message_bytes ({}): an entry at the limit could \
                         never be sent",
                        self.max_message_bytes
                    ),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults pass their own checks, and survive a trip through TOML.
    #[test]
    fn defaults_are_valid_and_round_trip() {
        let limits = Limits::default();
        limits.sanitize().unwrap();
        let text = toml::to_string(&limits).unwrap();
        assert_eq!(toml::from_str::<Limits>(&text).unwrap(), limits);
    }

    /// A flow-control window outside what HTTP/2 allows is refused.
    #[test]
    fn sanitize_keeps_windows_within_http2() {
        let small = Limits {
            stream_window_bytes: 1024,
            ..Limits::default()
        };
        assert_eq!(small.sanitize().unwrap_err().name, "stream_window_bytes");
        let large = Limits {
            connection_window_bytes: u32::MAX,
            ..Limits::default()
        };
        assert_eq!(
            large.sanitize().unwrap_err().name,
            "connection_window_bytes"
        );
    }

    /// A zero count and an entry limit over the message limit are refused,
    /// naming the limit; a zero append rate means no limit.
    #[test]
    fn sanitize_names_the_limit_that_cannot_work() {
        let zero = Limits {
            max_batch_entries: 0,
            ..Limits::default()
        };
        assert_eq!(zero.sanitize().unwrap_err().name, "max_batch_entries");
        let over = Limits {
            max_message_bytes: 1000,
            max_entry_bytes: 1001,
            max_data_bytes: 10,
            ..Limits::default()
        };
        let err = over.sanitize().unwrap_err();
        assert_eq!(err.name, "max_entry_bytes");
        assert!(err.to_string().starts_with("limits.max_entry_bytes (1001)"));
        Limits {
            append_rate: 0,
            ..Limits::default()
        }
        .sanitize()
        .unwrap();
    }
}
