//! The one error type of the store. Each variant names what the store saw,
//! with the facts a caller needs to act on it; the gRPC layer maps each to
//! a status code in one place, and tests match variants, not messages.

use std::{io, path::PathBuf};

use crate::model::{RunKey, RunStatus};

/// What went wrong in a store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An id that cannot name a run, a task, a step or a writer: it would
    /// escape the run directory or hide in it (see [`crate::ids`]).
    #[error("{field} {value:?} {problem}")]
    InvalidId {
        /// The request field, e.g. `task_id`.
        field: String,
        /// The first characters of the value.
        value: String,
        /// The rule it breaks.
        problem: String,
    },
    /// A time that is not RFC 3339.
    #[error("{field} {value:?} is not an RFC 3339 time: {reason}")]
    InvalidTime {
        /// The request field, e.g. `created_at`.
        field: String,
        /// The value as sent.
        value: String,
        /// Why it does not parse.
        reason: String,
    },
    /// A page token this store did not give.
    #[error("page_token {token:?} is not a token this server gave")]
    InvalidPageToken {
        /// The token as sent.
        token: String,
    },
    /// An item with writer sequence number 0: they start at 1.
    #[error("writer_seq must be 1 or more")]
    ZeroWriterSeq,
    /// A writer's `run_prepared` event: only the store records it, as the
    /// first entry of every run.
    #[error(
        "item {writer_seq} is a run_prepared event, which only the server records, when it prepares a run"
    )]
    ReservedEvent {
        /// The item's writer sequence number.
        writer_seq: u64,
    },
    /// A patch that sets `finished_at` without moving the run to a terminal
    /// status.
    #[error("patch.finished_at is only taken with a terminal status")]
    FinishedAtWithoutTerminalStatus,
    /// The run does not exist, or retention deleted it.
    #[error("run `{0}` not found")]
    RunNotFound(RunKey),
    /// A prepare of a run that exists with other metadata.
    #[error("run `{0}` exists with other metadata")]
    MetadataMismatch(RunKey),
    /// A writer skipped sequence numbers: the run holds its items up to
    /// `expected - 1`, and it sent `got`. The items before it were stored.
    #[error(
        "writer `{writer_id}` sent writer_seq {got}, but run `{key}` holds its items up to {}: \
         re-send from {expected}",
        expected - 1
    )]
    WriterSeqGap {
        /// The run.
        key: RunKey,
        /// The writer.
        writer_id: String,
        /// The writer sequence number the run takes next.
        expected: u64,
        /// The one it was sent.
        got: u64,
    },
    /// The run is terminal: its state and its log never change again.
    #[error("run `{key}` is {}, a terminal status: {refused}", status.as_str())]
    Terminal {
        /// The run.
        key: RunKey,
        /// Its terminal status.
        status: RunStatus,
        /// What was refused.
        refused: Refused,
    },
    /// The run failed because its worker lease expired: only a writer
    /// that had appended to it before may still deliver entries late and
    /// set its final status, once (see [`crate::lease`]).
    #[error(
        "run `{key}` failed when its worker lease expired; only a writer that had appended to it \
         may still deliver late and set its final status, once ({}): {refused}",
        match writer_id {
            Some(writer_id) => format!("writer `{writer_id}` had not"),
            None => "the request names no writer".to_owned(),
        }
    )]
    LeaseLapsed {
        /// The run.
        key: RunKey,
        /// The writer that asked, when the request named one.
        writer_id: Option<String>,
        /// What was refused.
        refused: Refused,
    },
    /// A status change the run's life does not allow (see
    /// [`RunStatus::can_move_to`]).
    #[error("run `{key}` cannot move from {} to {}", from.as_str(), to.as_str())]
    BadTransition {
        /// The run.
        key: RunKey,
        /// Its status.
        from: RunStatus,
        /// The status asked for.
        to: RunStatus,
    },
    /// A part of an item over its limit. The items before it were stored.
    #[error("the {part} of item {writer_seq} is {len} bytes{}, over {limit} ({max})",
        if matches!(part, EntryPart::Data) { " as JSON" } else { "" })]
    TooLarge {
        /// Which part of the item.
        part: EntryPart,
        /// The item's writer sequence number.
        writer_seq: u64,
        /// Its size in bytes.
        len: usize,
        /// The limit's name, as the configuration spells it.
        limit: &'static str,
        /// The limit.
        max: usize,
    },
    /// A write of the run failed and could not be undone: the run takes no
    /// more writes until the store opens it again.
    #[error(
        "run `{key}` could not undo a failed write ({cause}); it takes no writes until the server restarts"
    )]
    Broken {
        /// The run.
        key: RunKey,
        /// Why the undo failed.
        cause: String,
    },
    /// The run's journal was damaged beyond reading: its entries were
    /// adopted as they are, but which items each writer sent is unknown,
    /// so writer appends are refused rather than let a re-send store lines
    /// twice.
    #[error(
        "run `{key}` takes no more appends: its journal on the server was damaged beyond repair, \
         so which items its writers sent is unknown and a re-send could store lines twice; its \
         entries stay readable"
    )]
    WritersLost {
        /// The run.
        key: RunKey,
    },
    /// A commit's bytes on disk do not match what the journal says was
    /// written (a flipped bit, a zeroed block), or a power loss took its
    /// entries: they are not served. Reading on from `last_seq + 1` works.
    #[error(
        "entries {first_seq} to {last_seq} of run `{key}` were damaged or lost on the server's \
         disk and are not served; follow again with from_seq {} to read on",
        last_seq + 1
    )]
    DataLoss {
        /// The run.
        key: RunKey,
        /// The damaged commit's first sequence number.
        first_seq: u64,
        /// Its last.
        last_seq: u64,
    },
    /// A stored file does not hold what the layout says it must.
    #[error("{} {problem}", path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// Another store (another `baa-logd`) has the data directory open.
    #[error("the data directory {} is in use by another baa-logd ({})", dir.display(),
        holder.map_or_else(|| "its pid is unknown".to_owned(), |pid| format!("pid {pid}")))]
    Locked {
        /// The data directory.
        dir: PathBuf,
        /// The process that holds it, as its lock file says.
        holder: Option<u32>,
    },
    /// A file of the store could not be read or written.
    #[error("{context}: {source}")]
    Io {
        /// What the store was doing.
        context: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// An object name that cannot be a path under its directory (see
    /// [`crate::objects::check_object_name`]).
    #[error("object name {name:?} {problem}")]
    InvalidObjectName {
        /// The first characters of the name.
        name: String,
        /// The rule it breaks.
        problem: String,
    },
    /// No checkpoint slot is left after the highest one on disk.
    #[error("run `{key}` has no checkpoint slot left after {highest}")]
    SlotsExhausted {
        /// The run.
        key: RunKey,
        /// The highest slot.
        highest: u64,
    },
    /// A checkpoint slot that does not fit the object's kind.
    #[error("{0}")]
    InvalidSlot(String),
    /// The object is not there.
    #[error("object {0} not found")]
    ObjectNotFound(String),
    /// An object of that name is there with other content.
    #[error("object {0} exists with other content")]
    ObjectExists(String),
    /// An object or a run's objects over a limit; nothing of the write
    /// that would pass it was kept.
    #[error("{what} would be {size} bytes, over {limit} ({max})")]
    ObjectTooLarge {
        /// What would pass the limit.
        what: String,
        /// Its size with the write.
        size: u64,
        /// The limit's name, as the configuration spells it.
        limit: &'static str,
        /// The limit.
        max: u64,
    },
    /// A write that would leave the disk with less than the store's
    /// headroom; nothing of it was kept.
    #[error(
        "{what}: the disk has {free} bytes free, and {bytes} more would leave less than min_free_bytes ({min_free_bytes})"
    )]
    NoRoom {
        /// What was written.
        what: String,
        /// The bytes free.
        free: u64,
        /// The bytes of the write.
        bytes: u64,
        /// The headroom the store keeps.
        min_free_bytes: u64,
    },
    /// A new upload of a run that stages as many as it may.
    #[error(
        "run `{key}` stages {max} unfinished uploads, the most max_run_uploads allows: commit or resume one of them, or wait until they are swept"
    )]
    TooManyUploads {
        /// The run.
        key: RunKey,
        /// The limit.
        max: u64,
    },
    /// A write at another offset than the bytes the upload holds.
    #[error(
        "upload `{upload_id}` holds {expected} bytes: data MUST come at offset {expected}, not {got}"
    )]
    UploadOffset {
        /// The upload.
        upload_id: String,
        /// The bytes it holds.
        expected: u64,
        /// The offset sent.
        got: u64,
    },
    /// A commit whose size is not the bytes the upload holds.
    #[error("upload `{upload_id}` holds {held} bytes, but its commit says {size}")]
    UploadSizeMismatch {
        /// The upload.
        upload_id: String,
        /// The bytes it holds.
        held: u64,
        /// The size the commit gave.
        size: u64,
    },
    /// A commit whose SHA-256 is not the staged bytes': the bytes were
    /// dropped, and the object did not appear.
    #[error(
        "the bytes of upload `{upload_id}` do not have the SHA-256 its commit gave; they were dropped, upload again"
    )]
    DigestMismatch {
        /// The upload.
        upload_id: String,
    },
    /// An upload id that stages another object.
    #[error("upload `{upload_id}` is an upload of another object ({other})")]
    UploadConflict {
        /// The upload.
        upload_id: String,
        /// The object it stages.
        other: String,
    },
    /// A later stream resumed the same upload: this one may write no more.
    #[error("upload `{upload_id}` was resumed by another stream")]
    UploadTakenOver {
        /// The upload.
        upload_id: String,
    },
    /// A checkpoint slot never reserved.
    #[error(
        "checkpoint slot {checkpoint_seq} of run `{key}` is not reserved (ReserveCheckpoint reserves one)"
    )]
    SlotNotReserved {
        /// The run.
        key: RunKey,
        /// The slot.
        checkpoint_seq: u64,
    },
    /// A checkpoint slot at or before the run's checkpoint: committed,
    /// or passed over, it takes no more objects and cannot be committed.
    #[error(
        "checkpoint slot {checkpoint_seq} of run `{key}` is closed: the run's checkpoint_seq is {current}"
    )]
    CheckpointClosed {
        /// The run.
        key: RunKey,
        /// The slot.
        checkpoint_seq: u64,
        /// The run's `checkpoint_seq`.
        current: u64,
    },
    /// A state patch that would move the run's checkpoint back: the slots
    /// after it would open again, and a committed checkpoint could be
    /// overwritten.
    #[error(
        "the checkpoint_seq of run `{key}` is {current} and cannot move back to {checkpoint_seq}"
    )]
    CheckpointMovedBack {
        /// The run.
        key: RunKey,
        /// The slot the patch asked for.
        checkpoint_seq: u64,
        /// The run's `checkpoint_seq`.
        current: u64,
    },
    /// A path inside the run that the store will not follow: a symbolic
    /// link, or a file where a directory must be.
    #[error("{object}: {problem}")]
    UnsafePath {
        /// The object.
        object: String,
        /// What is in the way.
        problem: String,
    },
    /// A task of the store's blocking pool panicked or was cancelled before
    /// it finished; what it did is undone as for a failed write.
    #[error("a store task failed: {0}")]
    TaskFailed(String),
    /// The replicated engine under the store did not answer, or answered
    /// with an error that may pass: the operation may be tried again, on
    /// this node or another.
    #[error("{context}: {cause}")]
    Unavailable {
        /// What the store was doing.
        context: String,
        /// What the engine said.
        cause: String,
    },
    /// The store's backend does not do this.
    #[error("{0}")]
    Unsupported(String),
}

/// What a terminal run refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// A change of its state.
    StateChange,
    /// More entries.
    Entries,
    /// Objects: uploads and checkpoint slots.
    Objects,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::StateChange => "its state cannot change",
            Self::Entries => "it takes no more entries",
            Self::Objects => "it takes no more objects or checkpoints",
        })
    }
}

/// The part of an appended item a size limit applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryPart {
    /// A lifecycle event's message.
    Message,
    /// An output chunk's text.
    Text,
    /// A lifecycle event's structured data, as JSON.
    Data,
}

impl std::fmt::Display for EntryPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Message => "message",
            Self::Text => "text",
            Self::Data => "data",
        })
    }
}

impl StoreError {
    /// An I/O error with what the store was doing.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// A damaged file, and what is wrong with it.
    pub(crate) fn damaged(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        Self::Damaged {
            path: path.into(),
            problem: problem.into(),
        }
    }
}

/// The result of a store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
