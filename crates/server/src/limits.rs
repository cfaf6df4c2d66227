//! Limits that protect the server from a runaway client: how many
//! followers a run and the server take, and how fast one run is written.
//!
//! Going over a count limit is refused with `RESOURCE_EXHAUSTED` naming the
//! limit. The write rate is different: a writer over it is slowed down, not
//! refused. Its messages wait in the connection's flow-control window, and
//! the writer's own buffer fills and makes it wait, so nothing is lost and a
//! well-behaved client (one that retries, or the client crate's handle,
//! which waits) needs no special case; other runs are not affected.

use std::{
    collections::HashMap,
    fmt,
    hash::Hash,
    sync::{Arc, Mutex},
    time::Duration,
};

use baa_logging_store::model::RunKey;
use tokio::time::Instant;
use tonic::Status;

use crate::sync::lock;

/// Counts open streams per key (a run, a caller) and in all, against two
/// caps.
#[derive(Debug)]
pub(crate) struct Occupancy<K = RunKey> {
    /// What the streams are, for messages: "followers".
    what: &'static str,
    /// What a key is, for messages: "run", "caller".
    per: &'static str,
    /// The most per key.
    per_key: usize,
    /// The most in all.
    total: usize,
    /// Open streams per key, and in all.
    counts: Mutex<(HashMap<K, usize>, usize)>,
}

impl<K: Hash + Eq + Clone + fmt::Display> Occupancy<K> {
    /// Caps of `per_key` streams called `what` for each key (a `per`) and
    /// `total` in all. Refusals name the caps as the settings
    /// `max_{what}_per_{per}` and `max_{what}` do.
    pub(crate) fn new(what: &'static str, per: &'static str, per_key: usize, total: usize) -> Self {
        Self {
            what,
            per,
            per_key,
            total,
            counts: Mutex::new((HashMap::new(), 0)),
        }
    }

    /// Counts one more stream of `key`, or refuses it naming the cap.
    pub(crate) fn enter(self: &Arc<Self>, key: &K) -> Result<OccupancyGuard<K>, Status> {
        let mut counts = lock(&self.counts);
        let (per_key, total) = &mut *counts;
        if *total >= self.total {
            return Err(Status::resource_exhausted(format!(
                "the server has {total} {} open, its max_{} ({})",
                self.what, self.what, self.total
            )));
        }
        let count = per_key.entry(key.clone()).or_default();
        if *count >= self.per_key {
            return Err(Status::resource_exhausted(format!(
                "{} `{key}` has {count} {} open, its max_{}_per_{} ({})",
                self.per, self.what, self.what, self.per, self.per_key
            )));
        }
        *count += 1;
        *total += 1;
        Ok(OccupancyGuard {
            occupancy: self.clone(),
            key: key.clone(),
        })
    }

    /// The streams open now.
    #[cfg(test)]
    fn open(&self) -> usize {
        lock(&self.counts).1
    }
}

/// One counted stream; dropping it uncounts it.
#[derive(Debug)]
pub(crate) struct OccupancyGuard<K: Hash + Eq = RunKey> {
    /// Where it is counted.
    occupancy: Arc<Occupancy<K>>,
    /// Its key.
    key: K,
}

impl<K: Hash + Eq> Drop for OccupancyGuard<K> {
    fn drop(&mut self) {
        let mut counts = lock(&self.occupancy.counts);
        let (per_key, total) = &mut *counts;
        *total -= 1;
        if let Some(count) = per_key.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                per_key.remove(&self.key);
            }
        }
    }
}

/// Per-run token buckets that pace appends to `rate` entries a second,
/// with bursts of up to one second's worth.
pub(crate) type AppendRates = Rates<RunKey>;

/// Per-caller token buckets that pace searches to `rate` bytes scanned a
/// second, over all of a caller's searches.
pub(crate) type SearchRates = Rates<String>;

/// Token buckets, one per key with a stream open, that pace the streams
/// of each key to `rate` units a second, with bursts of up to one
/// second's worth.
#[derive(Debug)]
pub(crate) struct Rates<K> {
    /// Units a second; 0: no limit.
    rate: u64,
    /// The buckets of keys with a stream open, or in debt.
    buckets: Mutex<HashMap<K, Arc<Mutex<Bucket>>>>,
    /// How many buckets were left after the last look for idle ones.
    pruned_len: Mutex<usize>,
}

/// One key's bucket.
#[derive(Debug)]
struct Bucket {
    /// Units that may go now; negative while streams wait.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    updated: Instant,
    /// Open streams of the key.
    streams: usize,
}

impl<K: std::hash::Hash + Eq + Clone> Rates<K> {
    /// Buckets of `rate` units a second (0: no limit).
    pub(crate) fn new(rate: u64) -> Self {
        Self {
            rate,
            buckets: Mutex::new(HashMap::new()),
            pruned_len: Mutex::new(0),
        }
    }

    /// The bucket of `key`, for one stream.
    pub(crate) fn open(self: &Arc<Self>, key: &K) -> RateGuard<K> {
        let bucket = (self.rate > 0).then(|| {
            let mut buckets = lock(&self.buckets);
            // Buckets left in debt by their last stream go once refilled,
            // looked for when the map has doubled since last time.
            let mut pruned = lock(&self.pruned_len);
            if buckets.len() >= 2 * (*pruned).max(64) {
                buckets.retain(|_, bucket| !lock(bucket).is_idle(self.rate));
                *pruned = buckets.len();
            }
            drop(pruned);
            let bucket = buckets.entry(key.clone()).or_insert_with(|| {
                Arc::new(Mutex::new(Bucket {
                    tokens: self.rate as f64,
                    updated: Instant::now(),
                    streams: 0,
                }))
            });
            lock(bucket).streams += 1;
            bucket.clone()
        });
        RateGuard {
            rates: self.clone(),
            key: key.clone(),
            bucket,
        }
    }
}

/// A stream's share of its key's bucket.
#[derive(Debug)]
pub(crate) struct RateGuard<K: std::hash::Hash + Eq + Clone> {
    /// The buckets, to clean up after the last stream of a key.
    rates: Arc<Rates<K>>,
    /// The key.
    key: K,
    /// The key's bucket; `None` without a limit.
    bucket: Option<Arc<Mutex<Bucket>>>,
}

impl<K: std::hash::Hash + Eq + Clone> RateGuard<K> {
    /// Units a second; 0: no limit.
    pub(crate) fn rate(&self) -> u64 {
        self.rates.rate
    }

    /// Waits until `units` more may go.
    pub(crate) async fn take(&self, units: usize) {
        let Some(bucket) = &self.bucket else { return };
        let rate = self.rates.rate as f64;
        let wait = {
            let mut bucket = lock(bucket);
            let now = Instant::now();
            let refill = now.duration_since(bucket.updated).as_secs_f64() * rate;
            bucket.tokens = (bucket.tokens + refill).min(rate);
            bucket.updated = now;
            bucket.tokens -= units as f64;
            (bucket.tokens < 0.0).then(|| Duration::from_secs_f64(-bucket.tokens / rate))
        };
        if let Some(wait) = wait {
            tokio::time::sleep(wait).await;
        }
    }
}

impl<K: std::hash::Hash + Eq + Clone> Drop for RateGuard<K> {
    fn drop(&mut self) {
        let Some(bucket) = self.bucket.take() else {
            return;
        };
        let mut buckets = lock(&self.rates.buckets);
        let idle = {
            let mut bucket = lock(&bucket);
            bucket.streams -= 1;
            bucket.is_idle(self.rates.rate)
        };
        // A key's debt outlives its streams: its bucket goes only once it
        // is full again (or later, see `Rates::open`), so closing and
        // reopening streams buys no new burst.
        if idle {
            buckets.remove(&self.key);
        }
    }
}

impl Bucket {
    /// No stream uses it and it has refilled: it can go.
    fn is_idle(&self, rate: u64) -> bool {
        let refill = self.updated.elapsed().as_secs_f64() * rate as f64;
        self.streams == 0 && self.tokens + refill >= rate as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(run: &str) -> RunKey {
        RunKey {
            task_id: "t".into(),
            run_id: run.into(),
        }
    }

    /// Caps per run and in all refuse with the limit's name and value, and
    /// a dropped guard frees its place.
    #[test]
    fn occupancy_caps_per_run_and_in_all() {
        let followers = Arc::new(Occupancy::new("followers", "run", 2, 3));
        let a1 = followers.enter(&key("a")).unwrap();
        let _a2 = followers.enter(&key("a")).unwrap();
        let err = followers.enter(&key("a")).unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        assert!(
            err.message().contains("max_followers_per_run (2)"),
            "{}",
            err.message()
        );
        let _b1 = followers.enter(&key("b")).unwrap();
        let err = followers.enter(&key("c")).unwrap_err();
        assert!(
            err.message().contains("max_followers (3)"),
            "{}",
            err.message()
        );
        drop(a1);
        assert_eq!(followers.open(), 2);
        followers.enter(&key("c")).unwrap();
    }

    /// Past the burst, entries go at the rate; the bucket is shared by the
    /// run's streams, outlives the last one while in debt (a new stream
    /// gets no fresh burst), and is forgotten once full again.
    #[tokio::test(start_paused = true)]
    async fn appends_are_paced_to_the_rate() {
        let rates = Arc::new(AppendRates::new(1000));
        let one = rates.open(&key("a"));
        let two = rates.open(&key("a"));
        let started = Instant::now();
        one.take(1000).await; // the burst
        assert_eq!(started.elapsed(), Duration::ZERO);
        one.take(500).await;
        two.take(500).await;
        assert_eq!(started.elapsed().as_millis(), 1000);
        drop((one, two));
        assert_eq!(lock(&rates.buckets).len(), 1, "kept while in debt");
        let three = rates.open(&key("a"));
        three.take(1000).await;
        assert!(started.elapsed().as_millis() >= 1900, "no fresh burst");
        tokio::time::advance(Duration::from_secs(2)).await;
        drop(three);
        assert!(lock(&rates.buckets).is_empty(), "forgotten once full");
    }
}
