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
//! - [`retention`]: which finished runs are deleted, oldest first, in terms
//!   every backend shares.
//! - [`ids`], [`time`], [`render`]: id checks, `toISOString` times, the
//!   rendered line of a lifecycle event.
//! - [`error`]: the store's one error type, [`StoreError`].
//! - [`conformance`]: what any [`RunStore`] must do, as checks every
//!   backend runs unchanged.
//! - [`observe`]: what the store tells about its disk: a
//!   [`StoreObserver`] hook for metrics and its [`WriteHealth`].

pub mod conformance;
pub mod error;
pub mod ids;
pub mod local;
pub mod model;
pub mod observe;
pub mod render;
pub mod retention;
pub mod run_store;
pub mod time;

pub use baa_logging_config::{DEFAULT_RUN_LAYOUT_VERSION, DEFAULT_RUNS_DIRECTORY_NAME, Limits};
pub use error::{EntryPart, Refused, Result, StoreError};
pub use local::{LocalHold, LocalReader, LocalStore, LocalStoreOptions};
pub use observe::{CommitStats, DiskWrite, StoreObserver, WriteHealth};
pub use retention::{CollectReason, CollectedRun, Collection, RetentionPolicy};
pub use run_store::{ReadFrom, RunReader, RunStore};
