//! How many bytes of `FollowRun` responses may wait in HTTP/2 send buffers
//! at once, over every follower, and how big each follower's next response
//! is.
//!
//! A follow stream reads its next batch only when the HTTP/2 layer asks
//! for it, and the layer asks only when the stream's flow-control window
//! has room for everything it still buffers. So a follower that stops
//! reading holds, on the server, its reader's position and at most the one
//! response it was last handed, waiting for a window that does not open.
//! This module bounds that response:
//!
//! - **Per follower**, responses start at [`MIN_RESPONSE_BYTES`] and
//!   double with each one the follower takes, up to the configured batch
//!   size. A follower that never read gets small responses; one that
//!   reads quickly reaches full-size batches within a few of them.
//! - **Ahead**: a follower at full speed gets its next batch read while
//!   the last one is sent, counted here too, only while the budget has
//!   room for a full batch.
//! - **In all**, a [`FollowBudget`] counts the bytes handed out and not
//!   yet taken. Once it is spent, every follower gets responses of
//!   [`MIN_RESPONSE_BYTES`] until room is made, so the bytes waiting stay
//!   within the budget plus one minimal response per follower.
//!
//! A response counts as taken when its follower asks for the next one, and
//! the bytes are given back when the stream ends for any reason. The
//! budget also counts the streams that ended, for `memory`'s trim.

use std::sync::{
    Arc,
    atomic::{AtomicU64, AtomicUsize, Ordering},
};

use prometheus_client::metrics::gauge::Gauge;

/// The smallest response a follower gets, whatever the budget says, so
/// that every follower makes progress.
pub(crate) const MIN_RESPONSE_BYTES: usize = 16 * 1024;

/// The bytes of responses handed to followers and not yet taken, against
/// a cap.
#[derive(Debug)]
pub(crate) struct FollowBudget {
    /// The most bytes waiting before responses shrink to the minimum.
    cap: usize,
    /// The bytes waiting now.
    held: AtomicUsize,
    /// Follow streams that ended since the server started.
    ended: AtomicU64,
    /// The same bytes as `held`, in the metrics, when they are on.
    gauge: Option<Gauge>,
}

impl FollowBudget {
    /// A budget of `cap` bytes, shown in `gauge` when metrics are on.
    pub(crate) fn new(cap: usize, gauge: Option<Gauge>) -> Arc<Self> {
        Arc::new(Self {
            cap,
            held: AtomicUsize::new(0),
            ended: AtomicU64::new(0),
            gauge,
        })
    }

    /// Counts `bytes` more waiting.
    fn add(&self, bytes: usize) {
        self.held.fetch_add(bytes, Ordering::Relaxed);
        if let Some(gauge) = &self.gauge {
            gauge.inc_by(bytes as i64);
        }
    }

    /// Counts `bytes` fewer waiting.
    fn sub(&self, bytes: usize) {
        self.held.fetch_sub(bytes, Ordering::Relaxed);
        if let Some(gauge) = &self.gauge {
            gauge.dec_by(bytes as i64);
        }
    }

    /// The bytes handed out and not yet taken.
    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// How many follow streams ended since the server started.
    pub(crate) fn ended(&self) -> u64 {
        self.ended.load(Ordering::Relaxed)
    }

    /// A share of the budget for one follow stream whose responses grow to
    /// `max_response` bytes.
    pub(crate) fn share(self: &Arc<Self>, max_response: usize) -> BudgetShare {
        BudgetShare {
            budget: self.clone(),
            held: 0,
            ahead: 0,
            next: MIN_RESPONSE_BYTES.min(max_response.max(1)),
            max: max_response.max(1),
        }
    }
}

/// One follow stream's part of a [`FollowBudget`]: the response it was
/// last handed, and how big its next one may be.
#[derive(Debug)]
pub(crate) struct BudgetShare {
    /// The budget.
    budget: Arc<FollowBudget>,
    /// The bytes of the response last handed out, until it is taken.
    held: usize,
    /// The bytes of a batch being read ahead, until it is handed out.
    ahead: usize,
    /// The size the next response grows to, budget permitting.
    next: usize,
    /// The configured batch size.
    max: usize,
}

impl BudgetShare {
    /// The follower asks for its next response, so it took the last one:
    /// gives that back, and lets the next grow.
    pub(crate) fn taken(&mut self) {
        if self.held > 0 {
            self.release();
            self.next = (self.next * 2).min(self.max);
        }
    }

    /// How many bytes the next response may hold (after [`Self::taken`]).
    pub(crate) fn next_size(&self) -> usize {
        let room = self.budget.cap.saturating_sub(self.budget.held());
        self.next.min(room).max(MIN_RESPONSE_BYTES.min(self.max))
    }

    /// How many bytes a batch read ahead may hold, and counts them: only
    /// for a follower at full speed (its responses have grown to the batch
    /// size) while the budget has room for a full batch.
    pub(crate) fn ahead_size(&mut self) -> Option<usize> {
        if self.next < self.max || self.budget.held() + self.max > self.budget.cap {
            return None;
        }
        self.ahead = self.max;
        self.budget.add(self.max);
        Some(self.max)
    }

    /// The follower asks for its next response, which the batch read ahead
    /// becomes: the last response and the read ahead are given back.
    pub(crate) fn take_ahead(&mut self) {
        self.release();
        let ahead = std::mem::take(&mut self.ahead);
        self.budget.sub(ahead);
    }

    /// A response of `bytes` was handed out.
    pub(crate) fn handed(&mut self, bytes: usize) {
        self.release();
        self.held = bytes;
        self.budget.add(bytes);
    }

    /// Gives the bytes held back to the budget.
    fn release(&mut self) {
        let held = std::mem::take(&mut self.held);
        self.budget.sub(held);
    }
}

impl Drop for BudgetShare {
    fn drop(&mut self) {
        self.release();
        self.budget.sub(std::mem::take(&mut self.ahead));
        self.budget.ended.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 256 * 1024;

    /// Responses start small and double while the follower takes them; a
    /// response not yet taken stays counted until the share goes.
    #[test]
    fn responses_grow_while_taken() {
        let budget = FollowBudget::new(64 * 1024 * 1024, None);
        let mut share = budget.share(MAX);
        let mut sizes = Vec::new();
        for _ in 0..6 {
            share.taken();
            let size = share.next_size();
            sizes.push(size / 1024);
            share.handed(size);
        }
        assert_eq!(sizes, [16, 32, 64, 128, 256, 256]);
        assert_eq!(budget.held(), MAX);
        drop(share);
        assert_eq!(budget.held(), 0);
    }

    /// Once the budget is spent, new followers get the minimum, and room
    /// comes back when others take what they were handed.
    #[test]
    fn a_spent_budget_shrinks_responses_to_the_minimum() {
        let budget = FollowBudget::new(100 * 1024, None);
        let mut fast = budget.share(MAX);
        for _ in 0..4 {
            fast.taken();
            let size = fast.next_size();
            fast.handed(size);
        }
        // The fourth response would have been 128 KiB: the cap cut it.
        assert_eq!(budget.held(), 100 * 1024);
        let mut slow = budget.share(MAX);
        slow.taken();
        assert_eq!(slow.next_size(), MIN_RESPONSE_BYTES);
        slow.handed(MIN_RESPONSE_BYTES);
        // The fast follower takes its response: the budget has room again,
        // but not for a doubled one.
        fast.taken();
        let size = fast.next_size();
        assert_eq!(size, 100 * 1024 - MIN_RESPONSE_BYTES);
        drop((fast, slow));
        assert_eq!(budget.held(), 0);
    }
}
