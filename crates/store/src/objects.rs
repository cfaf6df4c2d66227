//! The objects of a run: files that workers upload into the run's
//! `artifacts/` directory, or into a checkpoint slot under `checkpoints/`,
//! in terms every backend shares.
//!
//! An object appears only whole and verified: its bytes are staged in the
//! run, the upload ends with the size and SHA-256 the client computed, and
//! only when both match is the object put in place. A staged upload
//! survives a restart of the server, so a client resumes it from the
//! offset [`UploadStatus::committed_size`] gives.
//!
//! Object names become paths under the run directory, so they are checked
//! before they touch the disk ([`check_object_name`]), and backends never
//! follow a symbolic link inside the run.

use std::{fmt, future::Future};

use crate::{
    error::{Result, StoreError},
    model::{
        LogLevel, RunKey, RunStateSnapshot, StructuredData, WorkerLifecycleEventInput,
        WorkerLifecycleEventType,
    },
};

/// The longest object name, in bytes.
pub const MAX_OBJECT_NAME_BYTES: usize = 1024;
/// The most components of an object name.
pub const MAX_OBJECT_NAME_DEPTH: usize = 16;
/// The longest component of an object name, in bytes: the `NAME_MAX` of
/// Linux file systems, past which creating the file fails.
pub const MAX_OBJECT_NAME_COMPONENT_BYTES: usize = 255;

/// Whether `c`, beside what an id refuses, hides itself in an object's
/// name: spaces that look like none or like a plain space, line and
/// paragraph separators, the soft hyphen, fillers and joiners that
/// render as nothing, and the tag characters. Two names that print alike
/// must not be two objects.
fn is_hidden_in_name(c: char) -> bool {
    matches!(
        c,
        '\u{00A0}'                    // no-break space
            | '\u{00AD}'              // soft hyphen
            | '\u{034F}'              // combining grapheme joiner
            | '\u{115F}' | '\u{1160}' // Hangul choseong and jungseong fillers
            | '\u{17B4}' | '\u{17B5}' // Khmer inherent vowels
            | '\u{2000}'..='\u{200A}' // spaces of other widths
            | '\u{2028}' | '\u{2029}' // line and paragraph separators
            | '\u{202F}' | '\u{205F}' // narrow no-break and math spaces
            | '\u{3000}'              // ideographic space
            | '\u{3164}' | '\u{FFA0}' // Hangul fillers
            | '\u{FFF9}'..='\u{FFFB}' // interlinear annotation
            | '\u{E0000}'..='\u{E007F}' // tags
    )
}

/// Which directory of a run an object lives in.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    /// Under `artifacts/`.
    Artifact,
    /// Under `checkpoints/<checkpoint_seq>/`.
    Checkpoint,
}

impl ObjectKind {
    /// The kind as the manifest and messages spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Artifact => "artifact",
            Self::Checkpoint => "checkpoint",
        }
    }
}

/// Names one object of a run.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    /// The run.
    pub key: RunKey,
    /// The directory.
    pub kind: ObjectKind,
    /// The path under the directory (for a checkpoint, under its slot),
    /// checked by [`check_object_name`].
    pub name: String,
    /// The checkpoint slot; 0 for an artifact.
    pub checkpoint_seq: u64,
}

impl ObjectRef {
    /// Checks the name, and that the slot fits the kind.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidObjectName`] for a bad name,
    /// [`StoreError::InvalidSlot`] for a checkpoint without a slot or an
    /// artifact with one.
    pub fn check(&self) -> Result<()> {
        check_object_name(&self.name)?;
        match (self.kind, self.checkpoint_seq) {
            (ObjectKind::Checkpoint, 0) => Err(StoreError::InvalidSlot(
                "a checkpoint object needs its checkpoint_seq (1 or more)".to_owned(),
            )),
            (ObjectKind::Artifact, seq) if seq != 0 => Err(StoreError::InvalidSlot(format!(
                "an artifact has no checkpoint slot, but checkpoint_seq is {seq}"
            ))),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ObjectKind::Artifact => write!(f, "{}: artifacts/{}", self.key, self.name),
            ObjectKind::Checkpoint => write!(
                f,
                "{}: checkpoints/{}/{}",
                self.key, self.checkpoint_seq, self.name
            ),
        }
    }
}

/// One stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The directory.
    pub kind: ObjectKind,
    /// The path under it.
    pub name: String,
    /// The checkpoint slot; 0 for an artifact.
    pub checkpoint_seq: u64,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256.
    pub sha256: [u8; 32],
    /// Its file's modification time, in `toISOString` form.
    pub modified_at: String,
}

/// A run's objects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectListing {
    /// Artifacts by name, then checkpoints by slot and name.
    pub objects: Vec<ObjectInfo>,
    /// The bytes the run's objects and staged uploads take, as the
    /// per-run limit counts them.
    pub total_bytes: u64,
}

/// How much of an upload the store holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadStatus {
    /// The bytes held durably (written and fsynced).
    pub committed_size: u64,
    /// The object, when it is in place already and nothing is staged.
    pub complete: Option<ObjectInfo>,
    /// The object of that name already in place, if any, whether or not
    /// the upload holds bytes: a client compares it with what it would
    /// send before it sends a byte, since a commit of other content under
    /// a taken name is refused.
    pub existing: Option<ObjectInfo>,
}

/// What an upload must match before its object appears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadCommit {
    /// The object's size.
    pub size: u64,
    /// Its SHA-256.
    pub sha256: [u8; 32],
}

/// The limits on a run's objects, as the server's configuration sets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectLimits {
    /// The largest object, in bytes.
    pub max_object_bytes: u64,
    /// The most bytes of one run's objects and staged uploads.
    pub max_run_objects_bytes: u64,
    /// The most uploads one run stages at a time: each is kept, to be
    /// resumed, until it is committed or swept.
    pub max_run_uploads: u64,
}

impl Default for ObjectLimits {
    /// 4 GiB an object, 16 GiB a run, 64 uploads staged a run.
    fn default() -> Self {
        Self {
            max_object_bytes: 4 << 30,
            max_run_objects_bytes: 16 << 30,
            max_run_uploads: 64,
        }
    }
}

/// Checks that `name` is usable as an object's path under its directory:
/// 1 to [`MAX_OBJECT_NAME_BYTES`] bytes, at most [`MAX_OBJECT_NAME_DEPTH`]
/// components separated by `/`, each at most
/// [`MAX_OBJECT_NAME_COMPONENT_BYTES`], none of them empty, `.` or `..`, and no
/// `\`, NUL, control, invisible or bidirectional-control character. Each
/// component is otherwise free, a leading dot included (`.coverage`).
///
/// # Errors
///
/// [`StoreError::InvalidObjectName`] naming the rule it breaks.
pub fn check_object_name(name: &str) -> Result<()> {
    let problem = if name.is_empty() {
        Some("must not be empty".to_owned())
    } else if name.len() > MAX_OBJECT_NAME_BYTES {
        Some(format!(
            "is {} bytes, over the limit of {MAX_OBJECT_NAME_BYTES}",
            name.len()
        ))
    } else if name.starts_with('/') {
        Some("must be relative: it starts with `/`".to_owned())
    } else if name.contains('\\') {
        Some("must not contain `\\`".to_owned())
    } else if name.split('/').count() > MAX_OBJECT_NAME_DEPTH {
        Some(format!(
            "has more than {MAX_OBJECT_NAME_DEPTH} path components"
        ))
    } else if name.split('/').any(|part| part.is_empty()) {
        Some("must not have an empty path component (`//` or a trailing `/`)".to_owned())
    } else if name.split('/').any(|part| part == "." || part == "..") {
        Some("must not have a `.` or `..` path component".to_owned())
    } else if let Some(part) = name
        .split('/')
        .find(|part| part.len() > MAX_OBJECT_NAME_COMPONENT_BYTES)
    {
        Some(format!(
            "has a path component of {} bytes, over the limit of {MAX_OBJECT_NAME_COMPONENT_BYTES}",
            part.len()
        ))
    } else if let Some(hidden) = name.chars().find(|c| is_hidden_in_name(*c)) {
        Some(format!(
            "must not contain invisible or look-alike space characters (U+{:04X})",
            u32::from(hidden)
        ))
    } else {
        // The id rule's character checks, on each component.
        name.split('/').find_map(|part| {
            baa_logging_config::ids::id_problem(part.trim_start_matches('.'))
                .filter(|problem| !problem.contains("empty") && !problem.contains("bytes"))
        })
    };
    match problem {
        Some(problem) => Err(StoreError::InvalidObjectName {
            name: name.chars().take(60).collect(),
            problem,
        }),
        None => Ok(()),
    }
}

/// The objects of runs: uploads, downloads, listings and checkpoint slots.
/// The RPC layer serves a store that implements this beside
/// [`crate::RunStore`].
pub trait ObjectStore: Send + Sync + 'static {
    /// An upload in progress, from [`ObjectStore::open_upload`].
    type Upload: ObjectUpload;
    /// An object open for reading, from [`ObjectStore::open_object`].
    type Download: ObjectReader;

    /// Starts an upload of `object`, or resumes the staged one named
    /// `upload_id`. While the upload lives, retention never deletes the
    /// run.
    ///
    /// # Errors
    ///
    /// A bad name or id; [`StoreError::Terminal`] for a terminal run;
    /// [`StoreError::SlotNotReserved`] or [`StoreError::CheckpointClosed`]
    /// for a checkpoint slot that takes no objects;
    /// [`StoreError::UploadConflict`] when `upload_id` stages another
    /// object.
    fn open_upload(
        &self,
        object: ObjectRef,
        upload_id: &str,
    ) -> impl Future<Output = Result<Self::Upload>> + Send;

    /// How much of an upload the store holds durably; it fsyncs what it
    /// holds before it answers.
    fn upload_status(
        &self,
        object: ObjectRef,
        upload_id: &str,
    ) -> impl Future<Output = Result<UploadStatus>> + Send;

    /// Opens an object for reading, with what it is.
    ///
    /// # Errors
    ///
    /// [`StoreError::ObjectNotFound`] when it is not there (or a path
    /// component is a symbolic link).
    fn open_object(
        &self,
        object: ObjectRef,
    ) -> impl Future<Output = Result<(ObjectInfo, Self::Download)>> + Send;

    /// Lists a run's objects, of one kind or both.
    fn list_objects(
        &self,
        key: &RunKey,
        kind: Option<ObjectKind>,
    ) -> impl Future<Output = Result<ObjectListing>> + Send;

    /// Reserves the run's next checkpoint slot: records a
    /// `checkpoint_slot_reserved` lifecycle entry and creates the slot's
    /// directory. Returns the slot and the entry's `seq`.
    fn reserve_checkpoint(&self, key: &RunKey) -> impl Future<Output = Result<(u64, u64)>> + Send;

    /// Makes a reserved slot the run's checkpoint: its state's
    /// `checkpoint_seq` moves to it.
    fn commit_checkpoint(
        &self,
        key: &RunKey,
        checkpoint_seq: u64,
    ) -> impl Future<Output = Result<RunStateSnapshot>> + Send;

    /// Removes staged uploads that nothing wrote to for `age`, and those
    /// of runs that are terminal; returns how many.
    fn sweep_uploads(&self, age: std::time::Duration) -> impl Future<Output = Result<u64>> + Send;
}

/// An upload in progress: bytes in order, then the commit.
pub trait ObjectUpload: Send + 'static {
    /// The bytes the store holds for the upload: the offset of the next
    /// write.
    fn size(&self) -> u64;

    /// Writes `data` at `offset`, which must be [`ObjectUpload::size`].
    ///
    /// # Errors
    ///
    /// [`StoreError::UploadOffset`] for another offset;
    /// [`StoreError::ObjectTooLarge`] past a limit (nothing of `data` is
    /// written then); [`StoreError::UploadTakenOver`] when a later stream
    /// resumed the same upload.
    fn write(&mut self, offset: u64, data: bytes::Bytes)
    -> impl Future<Output = Result<()>> + Send;

    /// Checks the staged bytes against `commit` and puts the object in
    /// place, whole; returns it.
    ///
    /// # Errors
    ///
    /// [`StoreError::UploadSizeMismatch`]; [`StoreError::DigestMismatch`]
    /// (the staged bytes are dropped then);
    /// [`StoreError::ObjectExists`] when another object of that name is
    /// there; the run's or the slot's state.
    fn commit(self, commit: UploadCommit) -> impl Future<Output = Result<ObjectInfo>> + Send;

    /// Ends the stream without a commit: fsyncs what is staged, for a later
    /// resume, and returns its size.
    fn close(self) -> impl Future<Output = Result<u64>> + Send;
}

/// The `checkpoint_slot_reserved` entry a store commits when it reserves
/// `slot`.
pub(crate) fn slot_reserved_event(slot: u64) -> WorkerLifecycleEventInput {
    let mut data = StructuredData::new();
    data.insert("checkpointSeq".into(), slot.into());
    WorkerLifecycleEventInput {
        event_type: WorkerLifecycleEventType::CheckpointSlotReserved,
        level: LogLevel::Info,
        message: format!("checkpoint slot {slot} reserved"),
        created_at: None,
        data,
    }
}

/// An object open for reading: its bytes by range, in any order, though
/// a reader is quickest read from start to end.
pub trait ObjectReader: Send + 'static {
    /// The `want` bytes at `offset`, all of them.
    ///
    /// # Errors
    ///
    /// A failed read, or fewer bytes than asked for (the object is
    /// shorter than its listing said); [`StoreError::Damaged`] for bytes
    /// that fail their checksum.
    fn read_at(
        &mut self,
        offset: u64,
        want: usize,
    ) -> impl Future<Output = Result<bytes::Bytes>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names that could leave their directory, or hide in it, are refused.
    #[test]
    fn refuses_names_that_escape_or_hide() {
        let deep = vec!["a"; MAX_OBJECT_NAME_DEPTH + 1].join("/");
        let long = "x".repeat(MAX_OBJECT_NAME_BYTES + 1);
        for bad in [
            "",
            "/etc/passwd",
            "..",
            "../x",
            "a/../../x",
            "a/./b",
            ".",
            "a//b",
            "a/",
            "a\\b",
            "a\0b",
            "a\nb",
            "a\u{202E}b",
            &deep,
            &long,
        ] {
            assert!(
                matches!(
                    check_object_name(bad),
                    Err(StoreError::InvalidObjectName { .. })
                ),
                "{bad:?} accepted"
            );
        }
        for good in [
            "report.html",
            "coverage/lcov.info",
            ".coverage",
            "a..b/c",
            "dir/.hidden/x",
            "é",
        ] {
            check_object_name(good).unwrap();
        }
    }
}
