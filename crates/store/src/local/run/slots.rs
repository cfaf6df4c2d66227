//! Which checkpoint slots were reserved through the store: a slot is
//! reserved when the run's log holds the `checkpoint_slot_reserved` entry
//! that [`super::Run::reserve_checkpoint`] committed for it. A slot
//! directory alone proves nothing (anyone with access to the run directory
//! can make one, and a crash between the directory and its entry leaves
//! one behind), and neither does such an entry sent by a worker: only the
//! store's own commits, which name no writer, count.
//!
//! Recovery lists the store's one-entry commits from the journal (see
//! [`crate::local::recovery::Recovered::store_events`]); only those lines
//! of `worker.log` are read, once, when the run is opened.

use std::{
    collections::BTreeSet,
    fs::File,
    io::{self, BufRead, BufReader, Seek, SeekFrom},
};

use serde::Deserialize;

use crate::{
    local::layout::RunDir,
    model::{WorkerLifecycleEventType, WorkerLogChannel},
};

/// The fields of a stored lifecycle entry that tell a reservation.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EntryHead {
    /// The entry's sequence number.
    seq: u64,
    /// The event type, `checkpoint_slot_reserved` for a reservation.
    #[serde(rename = "type")]
    event_type: Option<WorkerLifecycleEventType>,
    /// The event's data; a reservation's names its slot.
    #[serde(default)]
    data: Option<ReservationData>,
}

/// The data of a `checkpoint_slot_reserved` entry.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReservationData {
    /// The slot reserved.
    checkpoint_seq: Option<u64>,
}

/// The slots reserved by the store's commits `store_events` (each its
/// `seq` and its offset in `worker.log`). Blocking.
pub(super) fn reserved(dir: &RunDir, store_events: &[(u64, u64)]) -> io::Result<BTreeSet<u64>> {
    let mut slots = BTreeSet::new();
    if store_events.is_empty() {
        return Ok(slots);
    }
    let mut log = File::open(dir.log(WorkerLogChannel::Worker))?;
    for &(seq, offset) in store_events {
        if let Some(slot) = reservation_at(&mut log, seq, offset)? {
            slots.insert(slot);
        }
    }
    Ok(slots)
}

/// The slot the line at `offset` reserves, when it is entry `seq` and a
/// reservation.
fn reservation_at(log: &mut File, seq: u64, offset: u64) -> io::Result<Option<u64>> {
    log.seek(SeekFrom::Start(offset))?;
    let mut line = Vec::new();
    BufReader::with_capacity(8 * 1024, log).read_until(b'\n', &mut line)?;
    let Ok(head) = serde_json::from_slice::<EntryHead>(&line) else {
        return Ok(None);
    };
    let is_reservation = head.seq == seq
        && head.event_type == Some(WorkerLifecycleEventType::CheckpointSlotReserved);
    Ok(head
        .data
        .and_then(|data| data.checkpoint_seq)
        .filter(|_| is_reservation))
}
