//! Retention in the server: the periodic pass, the `CollectRuns` RPC, and
//! the counters of what both deleted.
//!
//! The store decides and deletes (see `RunStore::collect`); the server
//! says when, with which policy, and tells operators: every deleted run is
//! logged with its task, run, bytes and reason, and counted in
//! [`RetentionCounters`], which `CollectRuns` replies with.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use baa_logging::pb;
use baa_logging_store::{Collection, RetentionPolicy, RunStore, time::format_iso};
use tokio::{task::JoinHandle, time::MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tracing::{debug, info, warn};

use crate::{
    convert::{from_duration, to_collect_response},
    metrics::Metrics,
    status::to_status,
};

/// What retention deleted since the server started, over every pass.
#[derive(Debug, Default)]
pub struct RetentionCounters {
    /// Runs deleted.
    runs: AtomicU64,
    /// Their bytes.
    bytes: AtomicU64,
    /// Where deletions are also exported, when metrics are on.
    metrics: Option<Metrics>,
}

impl RetentionCounters {
    /// Counters that also export to `metrics`.
    pub(crate) fn with_metrics(metrics: Option<Metrics>) -> Self {
        Self {
            metrics,
            ..Self::default()
        }
    }

    /// The runs retention deleted since the server started.
    pub fn deleted_runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    /// The bytes of those runs.
    pub fn deleted_bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Logs each run a pass deleted (or would have, in a dry run) and
    /// counts the deleted ones. `trigger` says which pass it was.
    fn record(&self, collection: &Collection, trigger: &'static str) {
        for run in &collection.runs {
            let (task_id, run_id) = (&run.key.task_id, &run.key.run_id);
            let finished_at = format_iso(run.finished_at);
            let reason = run.reason.as_str();
            if collection.dry_run {
                debug!(trigger, %task_id, %run_id, bytes = run.bytes, reason, %finished_at, "retention would delete a run (dry run)");
            } else {
                info!(trigger, %task_id, %run_id, bytes = run.bytes, reason, %finished_at, "retention deleted a run");
            }
        }
        if !collection.dry_run {
            self.runs
                .fetch_add(collection.runs.len() as u64, Ordering::Relaxed);
            self.bytes
                .fetch_add(collection.deleted_bytes(), Ordering::Relaxed);
            if let Some(metrics) = &self.metrics {
                metrics.record_retention(collection.runs.len() as u64, collection.deleted_bytes());
            }
        }
        let runs = collection.runs.len();
        let (bytes, kept_open) = (collection.deleted_bytes(), collection.kept_open);
        let (before, after) = (collection.bytes_before, collection.bytes_after);
        let dry_run = collection.dry_run;
        if runs > 0 || kept_open > 0 {
            info!(
                trigger,
                dry_run,
                runs,
                bytes,
                kept_open,
                total_bytes_before = before,
                total_bytes_after = after,
                "retention pass done"
            );
        } else {
            debug!(
                trigger,
                dry_run,
                total_bytes = before,
                "retention pass done: nothing due"
            );
        }
    }
}

/// Starts the periodic retention pass: one at once, then one every
/// `interval`, until `shutdown`. Returns `None`, and starts nothing, when
/// the policy sets no limit or `interval` is zero.
pub(crate) fn spawn_periodic<S: RunStore>(
    store: Arc<S>,
    policy: RetentionPolicy,
    interval: Duration,
    counters: Arc<RetentionCounters>,
    shutdown: CancellationToken,
) -> Option<JoinHandle<()>> {
    if !policy.is_set() || interval.is_zero() {
        return None;
    }
    info!(max_age = ?policy.max_age, max_bytes = ?policy.max_bytes, ?interval, "retention on");
    Some(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            match store.collect(policy, false).await {
                Ok(collection) => counters.record(&collection, "periodic"),
                Err(err) => {
                    warn!(cause = %err, "the retention pass failed; trying again next time")
                }
            }
        }
    }))
}

/// `CollectRuns`: one pass with the request's limits, or the
/// `configured` ones where it sets none; `counters` count what it deleted.
#[tracing::instrument(skip_all, fields(dry_run = request.dry_run))]
pub(crate) async fn collect_runs<S: RunStore>(
    store: &S,
    configured: RetentionPolicy,
    counters: &RetentionCounters,
    request: pb::CollectRunsRequest,
) -> Result<pb::CollectRunsResponse, Status> {
    let policy = RetentionPolicy {
        max_age: match request.max_age {
            Some(age) => Some(from_duration("max_age", age)?),
            None => configured.max_age,
        },
        max_bytes: request.max_bytes.or(configured.max_bytes),
    };
    if !policy.is_set() {
        return Err(Status::failed_precondition(
            "no retention limit: the server has no max_age or max_bytes configured \
             ([retention] in its configuration), and the request sets neither",
        ));
    }
    let collection = store
        .collect(policy, request.dry_run)
        .await
        .map_err(to_status)?;
    counters.record(&collection, "request");
    let since_start = (counters.deleted_runs(), counters.deleted_bytes());
    Ok(to_collect_response(collection, since_start))
}
