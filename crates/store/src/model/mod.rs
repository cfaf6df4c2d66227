//! The domain types of a run's log session, mirroring the run-logging
//! contract. Their serde form is the contract's JSON: camelCase keys, string
//! enums, optional fields absent when unset. That is what `meta.json`,
//! `state.json` and the channel files hold.
//!
//! # Layout
//!
//! - `channel`: the channels and [`PerChannel`], what the store keeps for
//!   each of them.
//! - `run`: a run — its key, metadata, state, status, patches, paths,
//!   summary — and the queries and views over runs.
//! - `entry`: what writers append and what the log stores and readers
//!   return.
//! - `commit`: one commit's entries as the followers that read it from
//!   memory share it.

mod channel;
mod commit;
mod entry;
mod run;

pub(crate) use self::commit::CommitEntry;
pub use self::{channel::*, commit::CommitEntries, entry::*, run::*};
