//! Worker leases: a `running` run whose worker is gone ends by itself.
//!
//! A run's lease is held while at least one of its append streams is
//! open: each stream takes a [`LeaseGuard`] for its life. When the last
//! one closes (the writer closed it, it failed, or its connection
//! dropped: a killed process closes its TCP connection), or when the run
//! moves to `running` with no stream open, the run's lease starts to run
//! out. If no stream opens within the lease, [`spawn`]'s sweeper asks the
//! store to fail the run ([`RunStore::expire_lease`]), which records a
//! lifecycle entry and the `failed` state under the store's own rules:
//! nothing happens to a run that finished meanwhile, and the expiry
//! happens at most once.
//!
//! A stream whose connection went half-open (a network partition, a
//! machine that lost power) is not watched here: the server pings every
//! connection (`limits.keepalive_interval`, `limits.keepalive_timeout`)
//! and closes one whose pings go unanswered, which ends the stream and
//! starts the lease; a stream that sends nothing at all is closed after
//! `limits.append_idle_timeout`. So a lost worker's run ends at most the
//! keepalive's interval and timeout later than the lease, and a live
//! worker with a quiet stream is never failed while its connection
//! answers pings.
//!
//! The lease is the server's `leases.worker_lease`, or the longest one a
//! writer of the run asked for in its `AppendOpen` (capped by
//! `leases.max_worker_lease`) since the run last had none. Leases live in
//! memory: at start every `running` run gets a fresh lease from the start
//! (and a writer's longer lease is forgotten), so a run found running
//! after a restart ends if no writer comes back within the lease.
//!
//! When several nodes serve one store (`--store jetstream`), a run's
//! writer streams through one of them, and the others see no stream:
//! every node tells the others which leases it holds, three times a lease
//! ([`RunStore::hold_leases`]), and a node whose lease ran out first asks
//! whether another holds it ([`RunStore::lease_held_elsewhere`]); it then
//! starts the lease again. Each node also looks for running runs it does
//! not watch yet as often, so a run another node started ends too. A node
//! that dies stops telling, and its runs fail a lease later on whichever
//! node looks first, once. A longer lease a writer asked for is known
//! only to the node it streamed through.
//!
//! One window is left open on purpose: a stream that opens just as its
//! run's lease expires may find the run failed. Its writer then delivers
//! late, which the store allows to a writer that had appended before (see
//! `baa_logging_store::lease`), and its final status still counts.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use baa_logging_store::{
    LeaseExpiry, RunStore, StoreError,
    lease::show_duration,
    model::{RunKey, RunQuery, RunStatus},
};
use tokio::{task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{metrics::Metrics, settings::Leases, sync::lock};

/// How often the sweeper looks for expired leases at most: a tenth of the
/// lease, but not more often than this.
const MIN_SWEEP: Duration = Duration::from_millis(50);
/// How often the sweeper looks for expired leases at least.
const MAX_SWEEP: Duration = Duration::from_secs(1);
/// How many runs a page of the startup listing holds.
const STARTUP_PAGE: usize = 500;

/// The leases of the runs that have a stream open or are running without
/// one.
#[derive(Debug)]
pub(crate) struct WorkerLeases {
    /// The server's lease; zero: leases are off, and nothing is tracked.
    lease: Duration,
    /// The longest lease a writer may ask for.
    max_lease: Duration,
    /// The tracked runs. A run leaves the map when its lease expires or
    /// when it finishes with no stream open.
    runs: Mutex<HashMap<RunKey, RunLease>>,
    /// Rung when a stream opens, so that the other nodes of a shared store
    /// hear of the lease at once.
    opened: tokio::sync::Notify,
}

/// One run's lease.
#[derive(Debug, Clone)]
struct RunLease {
    /// Append streams open on the run: while any is, the lease is held.
    streams: usize,
    /// The lease that applies: the server's, or the longest asked by the
    /// run's writers since the run entered the map.
    lease: Duration,
    /// When the lease started to run out: the last stream closed, the run
    /// moved to `running`, or the server started.
    free_since: Instant,
    /// The writer whose stream opened last, for the expiry's entry.
    last_writer: Option<String>,
}

/// Holds a run's lease for as long as it lives: an append stream keeps one.
#[derive(Debug)]
pub(crate) struct LeaseGuard {
    /// Whose map to leave.
    leases: Arc<WorkerLeases>,
    /// The run.
    key: RunKey,
}

impl WorkerLeases {
    /// Leases as `settings` has them.
    pub(crate) fn new(settings: &Leases) -> Arc<Self> {
        Arc::new(Self {
            lease: settings.worker_lease,
            max_lease: settings.max_worker_lease,
            runs: Mutex::new(HashMap::new()),
            opened: tokio::sync::Notify::new(),
        })
    }

    /// The server's lease, as `GetServerInfo` reports it; zero when leases
    /// are off.
    pub(crate) fn lease(&self) -> Duration {
        self.lease
    }

    /// The lease a writer gets when it asks for `asked_ms`: never shorter
    /// than the server's, never longer than `max_worker_lease`.
    fn granted(&self, asked_ms: u64) -> Duration {
        let asked = Duration::from_millis(asked_ms).min(self.max_lease);
        asked.max(self.lease)
    }

    /// An append stream of `writer_id`, asking for a lease of `asked_ms`,
    /// opened on `key`: the lease is held until the guard drops. `None`
    /// when leases are off.
    pub(crate) fn open(
        self: &Arc<Self>,
        key: &RunKey,
        writer_id: &str,
        asked_ms: u64,
    ) -> Option<LeaseGuard> {
        if self.lease.is_zero() {
            return None;
        }
        let granted = self.granted(asked_ms);
        let mut runs = lock(&self.runs);
        let run = runs.entry(key.clone()).or_insert_with(|| self.fresh());
        run.streams += 1;
        run.lease = run.lease.max(granted);
        run.last_writer = Some(writer_id.to_owned());
        drop(runs);
        self.opened.notify_one();
        Some(LeaseGuard {
            leases: self.clone(),
            key: key.clone(),
        })
    }

    /// `key` moved to `status`: a run that starts running without a stream
    /// open starts its lease now; a finished run with no stream open is
    /// forgotten.
    pub(crate) fn moved(&self, key: &RunKey, status: RunStatus) {
        if self.lease.is_zero() {
            return;
        }
        let mut runs = lock(&self.runs);
        match status {
            RunStatus::Running => {
                runs.entry(key.clone()).or_insert_with(|| self.fresh());
            }
            status if status.is_terminal() && runs.get(key).is_some_and(|run| run.streams == 0) => {
                runs.remove(key);
            }
            _ => {}
        }
    }

    /// A lease that starts to run out now.
    fn fresh(&self) -> RunLease {
        RunLease {
            streams: 0,
            lease: self.lease,
            free_since: Instant::now(),
            last_writer: None,
        }
    }

    /// Takes the runs whose lease ran out by `now` out of the map.
    fn take_expired(&self, now: Instant) -> Vec<(RunKey, LeaseExpiry)> {
        let mut runs = lock(&self.runs);
        let expired: Vec<RunKey> = runs
            .iter()
            .filter(|(_, run)| run.streams == 0 && now.duration_since(run.free_since) >= run.lease)
            .map(|(key, _)| key.clone())
            .collect();
        expired
            .into_iter()
            .filter_map(|key| {
                let run = runs.remove(&key)?;
                let expiry = LeaseExpiry {
                    lease: run.lease,
                    last_writer: run.last_writer,
                };
                Some((key, expiry))
            })
            .collect()
    }

    /// The leases this node holds and for how long from now: a run with a
    /// stream open here for its lease and the time to the next renewal, a
    /// run whose last stream closed here for what is left of its lease.
    fn held(&self, now: Instant) -> Vec<(RunKey, Duration)> {
        let renewal = self.renew_every();
        lock(&self.runs)
            .iter()
            .filter_map(|(key, run)| {
                let left = match run.streams {
                    0 if run.last_writer.is_some() => {
                        run.lease.checked_sub(now.duration_since(run.free_since))?
                    }
                    0 => return None,
                    _ => run.lease + renewal,
                };
                Some((key.clone(), left))
            })
            .collect()
    }

    /// How often this node tells the other nodes of a shared store which
    /// leases it holds: three times a lease.
    fn renew_every(&self) -> Duration {
        (self.lease / 3).max(MIN_SWEEP)
    }

    /// How often the sweeper looks.
    fn sweep_every(&self) -> Duration {
        (self.lease / 10).clamp(MIN_SWEEP, MAX_SWEEP)
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let mut runs = lock(&self.leases.runs);
        if let Some(run) = runs.get_mut(&self.key) {
            run.streams = run.streams.saturating_sub(1);
            if run.streams == 0 {
                run.free_since = Instant::now();
            }
        }
    }
}

/// Starts the sweeper: first it gives every `running` run of `store` a
/// fresh lease, then, until `token` is cancelled, it fails the runs whose
/// lease expired. `None` when leases are off.
pub(crate) fn spawn<S: RunStore>(
    store: Arc<S>,
    leases: Arc<WorkerLeases>,
    metrics: Option<Metrics>,
    token: CancellationToken,
) -> Option<JoinHandle<()>> {
    if leases.lease.is_zero() {
        return None;
    }
    Some(tokio::spawn(async move {
        let adopted = adopt_running(&*store, &leases).await;
        if adopted > 0 {
            info!(runs = adopted, lease = %show_duration(leases.lease), "running runs found at start: each has a fresh worker lease");
        }
        // Only a store that several nodes share needs to hear of leases.
        let renewals = store
            .shared_by_nodes()
            .then(|| tokio::spawn(renew(store.clone(), leases.clone(), token.clone())));
        let mut ticks = tokio::time::interval(leases.sweep_every());
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = token.cancelled() => break,
            }
            for (key, expiry) in leases.take_expired(Instant::now()) {
                if store.lease_held_elsewhere(&key).await {
                    // Another node has a stream open on it: start again.
                    debug!(run = %key, "another node holds the run's worker lease");
                    leases.moved(&key, RunStatus::Running);
                    continue;
                }
                expire(&*store, &leases, metrics.as_ref(), key, expiry).await;
            }
        }
        if let Some(renewals) = renewals {
            renewals.abort();
        }
    }))
}

/// Tells the other nodes of a shared store which leases this node holds,
/// when a stream opens and three times a lease, and watches the running
/// runs other nodes started, so that they end if that node dies. A task
/// of its own: an expiry that waits for the store does not delay it.
async fn renew<S: RunStore>(store: Arc<S>, leases: Arc<WorkerLeases>, token: CancellationToken) {
    let mut last_adopted = Instant::now();
    loop {
        store.hold_leases(leases.held(Instant::now())).await;
        if last_adopted.elapsed() >= leases.renew_every() {
            last_adopted = Instant::now();
            adopt_running(&*store, &leases).await;
        }
        tokio::select! {
            () = tokio::time::sleep(leases.renew_every()) => {}
            () = leases.opened.notified() => {}
            () = token.cancelled() => return,
        }
    }
}

/// Gives every `running` run a fresh lease; returns how many there are.
async fn adopt_running<S: RunStore>(store: &S, leases: &WorkerLeases) -> usize {
    let mut adopted = 0;
    let mut page_token = None;
    loop {
        let query = RunQuery {
            task_id: None,
            statuses: vec![RunStatus::Running],
            page_size: STARTUP_PAGE,
            page_token,
        };
        let page = match store.list_runs(query).await {
            Ok(page) => page,
            Err(err) => {
                warn!(cause = %err, "cannot list the running runs at start: their worker leases start when a writer comes and goes");
                return adopted;
            }
        };
        for run in &page.runs {
            leases.moved(&run.metadata.key(), RunStatus::Running);
            adopted += 1;
        }
        match page.next_page_token {
            Some(token) => page_token = Some(token),
            None => return adopted,
        }
    }
}

/// Asks the store to fail `key` because its lease expired, and says so.
async fn expire<S: RunStore>(
    store: &S,
    leases: &WorkerLeases,
    metrics: Option<&Metrics>,
    key: RunKey,
    expiry: LeaseExpiry,
) {
    let lease = show_duration(expiry.lease);
    match store.expire_lease(&key, expiry.clone()).await {
        Ok(Some(_)) => {
            warn!(run = %key, %lease, last_writer = expiry.last_writer.as_deref().unwrap_or("none"), "worker lost: no writer for the worker lease; the run failed");
            if let Some(metrics) = metrics {
                metrics.record_lease_expired();
            }
        }
        Ok(None) => debug!(run = %key, "lease ran out on a run that is not running"),
        // Retention deletes only finished runs: this one finished and went.
        Err(StoreError::RunNotFound(_)) => {}
        Err(err) => {
            warn!(run = %key, cause = %err, "cannot fail a run whose worker lease expired; trying again after another lease");
            leases.moved(&key, RunStatus::Running);
        }
    }
}
