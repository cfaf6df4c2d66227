//! The client of `baa-logd`, for workers and followers.
//!
//! Workers get a [`RunWriter`]: append lifecycle events and output with
//! plain calls, and the handle batches them, bounds its memory (a slow or
//! absent server makes calls wait, never grow a queue), and carries the
//! session across broken connections and server restarts without losing
//! or duplicating an entry. A spooled writer
//! ([`Client::spooled_writer`]) never waits instead: what it is given goes
//! through a bounded local file, delivered behind the caller. Followers get a [`Follow`] stream of typed
//! [`FollowEvent`]s that resumes by itself and ends with the run. Given
//! several servers of a cluster ([`Client::connect_with`]), both move to
//! the next server when theirs fails and resume there.
//!
//! # Layout
//!
//! - [`connect`], [`ConnectOptions`]: a connection with timeouts,
//!   keepalives and credentials, to one server or the first that answers
//!   of several, and the generated stub ([`LoggingClient`]).
//! - `failover`: the connection a [`Client`] shares with its writers and
//!   followers, moved to the next server when its server fails, so that
//!   they resume there from their cursors.
//! - [`Client`]: typed calls: prepare, get, list, update state, and
//!   retention ([`CollectOptions`]).
//! - [`NewRun`], [`RunKey`]: naming runs, and describing a new one.
//! - [`RunWriter`] (module `writer`): the worker's handle, over a
//!   background task (`writer::session`) that batches, keeps and resends;
//!   the handles hand it items through `writer::inbox`, a bounded list it
//!   takes whole.
//!   Its child `writer::output` holds [`OutputWriter`],
//!   [`AsyncOutputWriter`] and [`Utf8Decoder`], which turn process output
//!   into chunks; it uses the writer, and the writer only re-exports it.
//! - [`Follow`]: a run's events, history then live.
//! - [`ObjectName`] (module `objects`): artifacts and checkpoints,
//!   uploaded and downloaded with [`Client::upload_file`] and
//!   [`Client::download_file`], resumed after a broken connection, with
//!   [`TransferOptions`] for progress.
//! - [`RetryPolicy`]: how long to wait between attempts (`backoff`).
//! - [`ClientError`]: every error of the crate.
//! - `writer::spool`: the spool file of a spooled writer ([`SpoolOptions`],
//!   [`SpoolReport`]).
//! - `timestamp`: the time stamps put on what the client sends.
//!
//! Limits the server does not report fall back to the defaults of
//! [`baa_logging::config::limits`], the ones the server itself starts with.
//!
//! # Locking
//!
//! The locks are the writer's failure slot (why its task stopped), its
//! inbox (the items its handles hand over), a spooled writer's appender
//! and its list of refused state changes, and a client's current
//! connection (`failover`). Each is a `std::sync::Mutex`,
//! held for one assignment, one clone, one push, one swap or one `write`
//! (the appender, rarely, for a rewrite of at most 8 MiB), and
//! never across an `.await`, so tokio's async mutex would buy nothing. Poisoning
//! is recovered with `lock().unwrap_or_else(PoisonError::into_inner)`:
//! such a short critical section cannot leave the value half-written, so
//! a panic elsewhere must not turn every later call into a second panic.
//! A new lock follows the same rules. The one exception is the `failover`
//! link's move lock, a tokio mutex held across the connection attempts of
//! a move to another server, so that handles that saw the same server
//! fail make one move between them; only moves take it.
//!
//! # Examples
//!
//! ```no_run
//! # async fn example() -> Result<(), baa_logging_client::ClientError> {
//! use baa_logging_client::{Client, NewRun, WriterOptions, pb};
//!
//! let client = Client::connect("http://127.0.0.1:50051").await?;
//! let writer = client
//!     .prepare_writer(NewRun::new("build", "run-1"), WriterOptions::default())
//!     .await?;
//! writer.stdout("hello\n").await?;
//! writer.finish(pb::RunStatus::Completed, Some(0), None).await?;
//! # Ok(())
//! # }
//! ```

mod backoff;
mod client;
mod connect;
mod error;
mod failover;
mod follow;
mod memory;
mod objects;
mod run;
mod timestamp;
mod writer;

pub use baa_logging::{json, pb};

pub use self::{
    backoff::RetryPolicy,
    client::{Client, CollectOptions, RunFilter},
    connect::{ConnectOptions, Credentials, LoggingClient, connect},
    error::ClientError,
    follow::{Follow, FollowEvent, FollowOptions},
    memory::tune_allocator,
    objects::{ObjectName, Progress, TransferOptions},
    run::{NewRun, RunKey},
    writer::{
        AsyncOutputWriter, Finished, OutputWriter, RunWriter, SpoolOptions, SpoolReport,
        Utf8Decoder, WriterOptions,
    },
};
