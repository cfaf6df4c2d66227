//! The append journal, `journal.jsonl` in the run directory: one line per
//! commit, written before the commit's entries.
//!
//! The journal is what lets a run be recovered without reading its logs: the
//! sum of its records gives the next sequence number, the per-channel counts
//! and every writer's cursor, and its last record says where in each channel
//! file the last commit started. Since a record is written before its
//! entries and the next record only after them, only the last commit can be
//! incomplete after a crash, and recovery checks just that one (see
//! [`super::recovery`]).

use serde::{Deserialize, Serialize};

use crate::model::PerChannel;

/// One commit: a run of consecutive sequence numbers from at most one
/// writer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct JournalRecord {
    /// The first sequence number of the commit.
    pub(crate) first_seq: u64,
    /// The last sequence number of the commit.
    pub(crate) last_seq: u64,
    /// The writer; unset for entries the store writes itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) writer_id: Option<String>,
    /// The writer sequence number of the first entry; the rest follow it one
    /// by one.
    #[serde(default)]
    pub(crate) writer_seq: u64,
    /// Entries per channel, stored as `[worker, stdout, stderr]`.
    pub(crate) counts: PerChannel<u64>,
    /// The length of each channel file when the commit started: where its
    /// entries begin; stored as `[worker, stdout, stderr]`.
    pub(crate) offsets: PerChannel<u64>,
    /// True for the record that adopts channel files written without a
    /// journal (an existing run found on disk). Its entries are taken as
    /// they are, gaps included, and never cut by recovery.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) imported: bool,
}

impl JournalRecord {
    /// The number of entries of the commit.
    pub(crate) fn len(&self) -> u64 {
        self.last_seq + 1 - self.first_seq
    }

    /// The record as one journal line.
    pub(crate) fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).expect("a journal record serializes");
        line.push(b'\n');
        line
    }
}
