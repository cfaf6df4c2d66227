//! Which of a writer's items a run takes: the ones past the writer's
//! cursor, in order, within the store's limits. Times are put in
//! `toISOString` form on the way in. Every backend admits items here, so
//! that they all take and refuse the same items.

use baa_logging_config::Limits;

use crate::{
    error::{EntryPart, Result, StoreError},
    model::{AppendItem, AppendPayload, RunKey, WorkerLifecycleEventType},
    time::normalize_iso_in_place,
};

/// What [`admit`] found in a writer's items.
#[derive(Debug, Default)]
pub(crate) struct Admitted {
    /// The payloads to store, in order, from the writer's next sequence
    /// number on.
    pub(crate) payloads: Vec<AppendPayload>,
    /// Items the run held already, skipped.
    pub(crate) duplicates: u64,
    /// Why the item after the last admitted one was refused, if one was.
    pub(crate) refused: Option<StoreError>,
}

/// Takes the items that follow the writer's cursor (`next_writer_seq`
/// is the one it takes next), skipping the ones it holds and stopping
/// at the first it cannot take.
pub(crate) fn admit(
    key: &RunKey,
    limits: &Limits,
    writer_id: &str,
    next_writer_seq: u64,
    items: Vec<AppendItem>,
) -> Admitted {
    let mut admitted = Admitted {
        payloads: Vec::with_capacity(items.len()),
        ..Admitted::default()
    };
    let mut expected = next_writer_seq;
    for mut item in items {
        if item.writer_seq == 0 {
            admitted.refused = Some(StoreError::ZeroWriterSeq);
            break;
        }
        if item.writer_seq < expected {
            admitted.duplicates += 1;
            continue;
        }
        if item.writer_seq != expected {
            admitted.refused = Some(StoreError::WriterSeqGap {
                key: key.clone(),
                writer_id: writer_id.to_owned(),
                expected,
                got: item.writer_seq,
            });
            break;
        }
        if let Err(err) = check_item(limits, &mut item) {
            admitted.refused = Some(err);
            break;
        }
        expected += 1;
        admitted.payloads.push(item.payload);
    }
    admitted
}

/// Checks an item against the limits and puts its time in
/// `toISOString` form.
fn check_item(limits: &Limits, item: &mut AppendItem) -> Result<()> {
    let too_large = |part, len, limit, max| StoreError::TooLarge {
        part,
        writer_seq: item.writer_seq,
        len,
        limit,
        max,
    };
    let created_at = match &mut item.payload {
        AppendPayload::Event(event) => {
            if event.event_type == WorkerLifecycleEventType::RunPrepared {
                return Err(StoreError::ReservedEvent {
                    writer_seq: item.writer_seq,
                });
            }
            if event.message.len() > limits.max_entry_bytes {
                return Err(too_large(
                    EntryPart::Message,
                    event.message.len(),
                    "max_entry_bytes",
                    limits.max_entry_bytes,
                ));
            }
            if !event.data.is_empty() {
                let len = serde_json::to_vec(&event.data).map_or(0, |data| data.len());
                if len > limits.max_data_bytes {
                    return Err(too_large(
                        EntryPart::Data,
                        len,
                        "max_data_bytes",
                        limits.max_data_bytes,
                    ));
                }
            }
            &mut event.created_at
        }
        AppendPayload::Chunk(_, chunk) => {
            if chunk.text.len() > limits.max_entry_bytes {
                return Err(too_large(
                    EntryPart::Text,
                    chunk.text.len(),
                    "max_entry_bytes",
                    limits.max_entry_bytes,
                ));
            }
            &mut chunk.created_at
        }
    };
    if let Some(time) = created_at {
        normalize_iso_in_place("created_at", time)?;
    }
    Ok(())
}
