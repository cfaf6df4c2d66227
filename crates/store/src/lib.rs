//! The run store of baa-logging: per-run log sessions, the core that the
//! gRPC server adapts. It knows nothing of gRPC.
//!
//! # Layout
//!
//! - [`model`]: the domain types, mirroring the run-logging contract; their
//!   serde form is the contract's JSON.
//! - [`run_store`]: the narrow [`RunStore`] and [`RunReader`] traits a
//!   storage backend implements.
//! - [`local`]: the embedded default backend, [`LocalStore`]: files on local
//!   disk in the `local-run-v1` layout.
//! - [`jetstream`]: the replicated backend, [`JetStreamStore`]: runs on a
//!   NATS JetStream stream, served by any number of nodes.
//! - [`objects`]: a run's artifacts and checkpoints: the
//!   [`ObjectStore`] trait, object names and their checks.
//! - [`retention`]: which finished runs are deleted, oldest first, in terms
//!   every backend shares.
//! - [`lease`]: worker leases in terms every backend shares: the entries
//!   that record an expired lease and a writer that came back after it.
//! - [`ids`], [`time`], [`render`]: id checks, `toISOString` times, the
//!   rendered line of a lifecycle event.
//! - [`error`]: the store's one error type, [`StoreError`].
//! - [`conformance`]: what any [`RunStore`] must do, as checks every
//!   backend runs unchanged.
//! - [`verify`]: checking stored runs for damage, offline or not.
//! - [`search`]: matching a run's lines against a pattern, with context,
//!   for any backend.
//! - [`observe`]: what the store tells about its disk: a
//!   [`StoreObserver`] hook for metrics and its [`WriteHealth`].
//!
//! # Where a new thing goes
//!
//! - **A limit**: a field of [`Limits`] in the `baa-logging-config` crate,
//!   with its `DEFAULT_*` constant and its check in `Limits::sanitize`;
//!   the store reads it from [`LocalStoreOptions::limits`] (item checks
//!   are in `local/run/admit.rs`), the server and the client from the
//!   same struct. A refusal is a [`StoreError`] variant naming it.
//! - **A channel**: a variant of [`model::WorkerLogChannel`] and a slot of
//!   [`model::PerChannel`] (see `model/channel.rs`); every per-channel
//!   value in the store is a `PerChannel`, so the compiler lists the rest.
//! - **A file or directory of a run**: a method of `RunDir` (or, for the
//!   store's own places, `StoreDir`) in `local/layout.rs`, the one module
//!   that joins file names; a field of [`model::LocalRunPaths`] when it is
//!   served.
//! - **A rule every backend keeps**: a check in [`conformance`].

mod admit;
pub mod conformance;
pub mod error;
pub mod ids;
pub mod jetstream;
pub mod lease;
pub mod local;
pub mod model;
pub mod objects;
pub mod observe;
pub mod render;
pub mod retention;
pub mod run_store;
pub mod search;
pub mod time;
mod transition;
pub mod verify;

pub use baa_logging_config::{DEFAULT_RUN_LAYOUT_VERSION, DEFAULT_RUNS_DIRECTORY_NAME, Limits};
pub use error::{EntryPart, Refused, Result, StoreError};
pub use jetstream::{JetStreamOptions, JetStreamStore};
pub use lease::LeaseExpiry;
pub use local::{
    LocalHold, LocalObjectReader, LocalReader, LocalSearch, LocalStore, LocalStoreOptions,
    LocalUpload,
};
pub use objects::{ObjectReader, ObjectStore, ObjectUpload};
pub use observe::{CommitStats, DiskWrite, StoreObserver, WriteHealth};
pub use retention::{CollectReason, CollectedRun, Collection, RetentionPolicy};
pub use run_store::{ReadFrom, RunReader, RunSearcher, RunStore};
