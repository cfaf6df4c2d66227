//! A run's objects, read from its chain: each record that committed an
//! object names the one before it (`ObjectsHead::last`), so the list is
//! walked from the run's tip back. Each node keeps the list it read last
//! for each run and walks only the records added since.

use super::super::{Shared, chain::Tip, record::ObjectMark};
use crate::{
    error::{Result, StoreError},
    model::RunKey,
    objects::{ObjectInfo, ObjectRef},
    time::format_iso,
};

/// The objects of a run, as of its object record at `last`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Listing {
    /// The stream sequence of the last object record read; 0 for none.
    last: u64,
    /// The objects, in the order committed.
    marks: Vec<ObjectMark>,
}

impl ObjectMark {
    /// The object as served.
    ///
    /// # Errors
    ///
    /// [`StoreError::Damaged`] for a digest that is not 64 hex digits.
    pub(crate) fn info(&self) -> Result<ObjectInfo> {
        let sha256 = hex::decode(&self.sha256)
            .ok()
            .and_then(|digest| <[u8; 32]>::try_from(digest).ok())
            .ok_or_else(|| {
                StoreError::damaged(
                    format!("the record of object {}", self.name),
                    "has an invalid SHA-256",
                )
            })?;
        Ok(ObjectInfo {
            kind: self.kind,
            name: self.name.clone(),
            checkpoint_seq: self.checkpoint_seq,
            size: self.size,
            sha256,
            modified_at: self.committed_at.clone(),
        })
    }

    /// Whether it is `object`.
    pub(crate) fn is(&self, object: &ObjectRef) -> bool {
        self.kind == object.kind
            && self.checkpoint_seq == object.checkpoint_seq
            && self.name == object.name
    }
}

/// The stream sequence of the last record up to `tip` that committed an
/// object; 0 for none.
pub(crate) fn last_object_record(tip: &Tip) -> u64 {
    match tip.head.object {
        Some(_) => tip.stream_seq,
        None => tip.head.run.objects.last,
    }
}

/// The time of a commit as an object's `modified_at`.
pub(crate) fn committed_at(time_ms: u64) -> String {
    let time = chrono::DateTime::from_timestamp_millis(time_ms as i64).unwrap_or_default();
    format_iso(time)
}

impl Shared {
    /// The objects of the run whose tip is `tip`, in the order committed.
    ///
    /// # Errors
    ///
    /// [`StoreError::RunNotFound`] when the run was deleted meanwhile;
    /// [`StoreError::Damaged`] for a record that fails its checks.
    pub(crate) async fn objects_at(&self, key: &RunKey, tip: &Tip) -> Result<Vec<ObjectMark>> {
        let last = last_object_record(tip);
        let known = crate::local::concurrency::lock(&self.objects.listings)
            .get(key)
            .cloned()
            .unwrap_or_default();
        if last == known.last {
            return Ok(known.marks);
        }
        let mut newer = Vec::new();
        let mut at = last;
        while at != 0 && at != known.last {
            let record = match (at == tip.stream_seq, &tip.head.object) {
                (true, Some(mark)) => {
                    newer.push(mark.clone());
                    at = tip.head.run.objects.last;
                    continue;
                }
                _ => self.chains.record_at(key, at).await?,
            };
            let mark = record.head.object.ok_or_else(|| {
                StoreError::damaged(
                    format!("jetstream message {at} of run {key}"),
                    "is named as an object record but commits no object",
                )
            })?;
            newer.push(mark);
            at = record.head.run.objects.last;
        }
        let mut marks = match at {
            0 => Vec::new(),
            _ => known.marks,
        };
        marks.extend(newer.into_iter().rev());
        crate::local::concurrency::lock(&self.objects.listings).insert(
            key.clone(),
            Listing {
                last,
                marks: marks.clone(),
            },
        );
        Ok(marks)
    }

    /// What the run at `tip` records of `object`, if it has it.
    pub(crate) async fn find_mark(
        &self,
        tip: &Tip,
        object: &ObjectRef,
    ) -> Result<Option<ObjectMark>> {
        let marks = self.objects_at(&object.key, tip).await?;
        Ok(marks.into_iter().rev().find(|mark| mark.is(object)))
    }

    /// Forgets the objects this node listed for `key`.
    pub(crate) fn forget_objects(&self, key: &RunKey) {
        crate::local::concurrency::lock(&self.objects.listings).remove(key);
    }
}
