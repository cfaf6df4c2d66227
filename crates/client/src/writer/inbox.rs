//! The handoff of items from a [`RunWriter`](super::RunWriter)'s handles
//! to its session task: one list, shared, that the session takes whole.
//!
//! A worker writes output a line at a time, and each line is an item.
//! Handing items over one by one on a channel cost a message and, as often
//! as not, a wake-up of the session per line, and the session then did a
//! turn of its loop per line: more than the rest of the writer together.
//! Here a handle appends its item to the list under a short lock, and
//! rings the session only twice per batch: when the list was empty (the
//! session learns when the linger ends) and when the list reaches a batch
//! (the session sends it at once). The session takes every item at once,
//! in the order the handles put them, when the batch is full or its first
//! item has waited the linger, and before a flush.
//!
//! The list is bounded in bytes by a semaphore: a handle takes room for
//! its item before it puts it in, and waits while there is none (the
//! backpressure of a full buffer, since the session takes nothing while
//! the items it keeps fill its buffer); the session gives the room back as
//! it takes items. A wait for room can be cancelled without anything
//! being queued. When the session stops, the semaphore is closed, and
//! every later item is refused.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use tokio::{
    sync::{Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError},
    time::Instant,
};

use crate::pb::append_item::Payload;

/// What an item costs of the list's room: its encoded size, at least 1
/// (an empty chunk still takes a place), and at most the whole room, so
/// that an item larger than the room still goes through, alone.
pub(crate) fn cost(payload: &Payload, capacity: usize) -> u32 {
    let size = payload.encoded_len().clamp(1, capacity.max(1));
    u32::try_from(size).unwrap_or(u32::MAX)
}

/// The list between the handles and the session.
#[derive(Debug)]
pub(crate) struct Inbox {
    /// The items, their cost and when the first came.
    queued: Mutex<Queued>,
    /// Room for items, in bytes; closed once the session stops.
    room: Arc<Semaphore>,
    /// The session's doorbell.
    bell: Notify,
    /// The room, in bytes, when the list is empty.
    capacity: usize,
    /// The bytes at which the list is a batch to send now.
    batch_bytes: usize,
    /// The items at which the list is a batch to send now.
    batch_items: usize,
}

/// The items that wait for the session.
#[derive(Debug, Default)]
struct Queued {
    /// In the order the handles put them.
    items: Vec<Payload>,
    /// The room they took.
    bytes: usize,
    /// When the first of them was put in.
    since: Option<Instant>,
}

impl Inbox {
    /// An empty list holding at most `capacity` bytes, a batch once it
    /// holds `batch_bytes` or `batch_items` items.
    pub(crate) fn new(capacity: usize, batch_bytes: usize, batch_items: usize) -> Self {
        let capacity = capacity.clamp(1, u32::MAX as usize);
        Self {
            queued: Mutex::new(Queued::default()),
            room: Arc::new(Semaphore::new(capacity)),
            bell: Notify::new(),
            capacity,
            batch_bytes: batch_bytes.max(1),
            batch_items: batch_items.max(1),
        }
    }

    /// The room, in bytes, when the list is empty.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// The room, for a handle that polls for it.
    pub(crate) fn room(&self) -> Arc<Semaphore> {
        self.room.clone()
    }

    /// Puts `payload` in once there is room; `Err` once the session has
    /// stopped. Cancelling the wait queues nothing.
    pub(crate) async fn push(&self, payload: Payload) -> Result<(), Stopped> {
        let cost = cost(&payload, self.capacity);
        let permit = match self.room.try_acquire_many(cost) {
            Ok(permit) => permit,
            Err(TryAcquireError::Closed) => return Err(Stopped),
            Err(TryAcquireError::NoPermits) => {
                self.room.acquire_many(cost).await.map_err(|_| Stopped)?
            }
        };
        // The room goes back when the session takes the item.
        permit.forget();
        self.put(payload, cost as usize);
        Ok(())
    }

    /// Puts `payload` in with the room `permit` holds for it, which
    /// should be its [`cost`]; more is given back at once.
    pub(crate) fn put_with(&self, payload: Payload, permit: OwnedSemaphorePermit) {
        let held = permit.num_permits();
        permit.forget();
        self.put(payload, held);
    }

    /// Puts `payload` in, with `held` bytes of room taken for it; more
    /// than its [`cost`] is given back at once.
    fn put(&self, payload: Payload, held: usize) {
        let cost = (cost(&payload, self.capacity) as usize).min(held);
        if held > cost {
            self.room.add_permits(held - cost);
        }
        // A poisoned list is whole; see the crate's `# Locking` section.
        let mut queued = self.queued.lock().unwrap_or_else(PoisonError::into_inner);
        let was_empty = queued.items.is_empty();
        if was_empty {
            queued.since = Some(Instant::now());
        }
        let before = queued.bytes;
        queued.bytes += cost;
        queued.items.push(payload);
        let became_batch = (before < self.batch_bytes && queued.bytes >= self.batch_bytes)
            || queued.items.len() == self.batch_items;
        drop(queued);
        if was_empty || became_batch {
            self.bell.notify_one();
        }
    }

    /// Waits until a handle rings: the list was empty or is a batch now.
    pub(crate) async fn rung(&self) {
        self.bell.notified().await;
    }

    /// When the session must take the list: `None` while it is empty, at
    /// once when it is a batch, else when its first item has waited
    /// `linger`.
    pub(crate) fn due(&self, linger: Duration) -> Option<Instant> {
        let queued = self.queued.lock().unwrap_or_else(PoisonError::into_inner);
        let since = queued.since?;
        if queued.bytes >= self.batch_bytes || queued.items.len() >= self.batch_items {
            return Some(since);
        }
        Some(since + linger)
    }

    /// Moves every item into `into`, in order, gives their room back, and
    /// returns when the first of them was put in.
    pub(crate) fn take(&self, into: &mut Vec<Payload>) -> Option<Instant> {
        let mut queued = self.queued.lock().unwrap_or_else(PoisonError::into_inner);
        let since = queued.since.take();
        let bytes = std::mem::take(&mut queued.bytes);
        if into.is_empty() {
            std::mem::swap(into, &mut queued.items);
        } else {
            into.append(&mut queued.items);
        }
        drop(queued);
        self.room.add_permits(bytes);
        since
    }

    /// The session has stopped: handles waiting for room, and every later
    /// item, are refused; what is in the list is dropped.
    pub(crate) fn close(&self) {
        self.room.close();
        let mut queued = self.queued.lock().unwrap_or_else(PoisonError::into_inner);
        *queued = Queued::default();
    }
}

/// The session has stopped and takes no more items.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stopped;
