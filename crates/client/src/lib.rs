//! The client of `baa-logd`, for workers and followers.
//!
//! Workers get a [`RunWriter`]: append lifecycle events and output with
//! plain calls, and the handle batches them, bounds its memory (a slow or
//! absent server makes calls wait, never grow a queue), and carries the
//! session across broken connections and server restarts without losing
//! or duplicating an entry. Followers get a [`Follow`] stream of typed
//! [`FollowEvent`]s that resumes by itself and ends with the run.
//!
//! # Layout
//!
//! - [`connect`], [`ConnectOptions`]: a connection with timeouts,
//!   keepalives and credentials, and the generated stub ([`LoggingClient`]).
//! - [`Client`]: typed calls: prepare, get, list, update state, and
//!   retention ([`CollectOptions`]).
//! - [`RunWriter`]: the worker's handle; [`OutputWriter`] and
//!   [`AsyncOutputWriter`] turn process output into chunks.
//! - [`Follow`]: a run's events, history then live.
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
mod follow;
mod output;
mod run;
mod writer;

pub use baa_logging::{json, pb};

pub use self::{
    backoff::RetryPolicy,
    client::{Client, CollectOptions, RunFilter},
    connect::{ConnectOptions, Credentials, LoggingClient, connect},
    error::ClientError,
    follow::{Follow, FollowEvent, FollowOptions},
    output::{AsyncOutputWriter, OutputWriter, Utf8Decoder},
    run::{NewRun, RunKey},
    writer::{Finished, RunWriter, WriterOptions},
};
