//! Prometheus metrics of `baa-logd`, served at `GET /metrics` on a port of
//! their own (`--metrics-listen`).
//!
//! [`Metrics`] is a cheap handle on one registry. The server feeds it from
//! three places:
//!
//! - the store, through the [`StoreObserver`] that
//!   [`Metrics::store_observer`] returns: entries and bytes appended by
//!   channel, disk write latency and errors, and with `--sync` the fsyncs
//!   and the commits each made durable;
//! - a tower layer in front of every gRPC service (`rpc`): calls and their
//!   latency by method and status code, and the open Append and Follow
//!   streams;
//! - the server itself: follower lag, the store's write health, and the
//!   runs by status, counted from the store at each scrape.
//!
//! `process` adds the usual `process_*` figures of the process, and
//! `http` serves the text exposition format.
//!
//! `docs/operations.md` lists every metric with its type and labels.

mod http;
mod process;
mod rpc;

use std::{
    collections::HashSet,
    fmt,
    future::Future,
    io,
    pin::Pin,
    sync::{Arc, Mutex, Weak},
    time::Duration,
};

use baa_logging_store::{
    RunStore, StoreObserver,
    model::{RunStatus, WorkerLogChannel},
    observe::{CommitStats, DiskWrite},
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use prost::Message;
use tracing::warn;

use crate::sync::lock;

pub use self::http::serve;
pub(crate) use self::rpc::RpcMetricsLayer;

/// The metrics of one server: a cheap, cloneable handle.
///
/// Make one, give the store its [`Metrics::store_observer`], put it in
/// [`ServerConfig::metrics`](crate::ServerConfig::metrics) and serve it
/// with [`serve`]:
///
/// ```no_run
/// # async fn example() -> std::io::Result<()> {
/// use std::sync::Arc;
/// use baa_logd::{ServerConfig, metrics::{self, Metrics}};
/// use baa_logging_store::{LocalStore, LocalStoreOptions};
///
/// let metrics = Metrics::new();
/// let store = LocalStore::open(LocalStoreOptions {
///     observer: Some(metrics.store_observer()),
///     ..LocalStoreOptions::new("./runs")
/// })
/// .expect("store");
/// let metrics_listener = tokio::net::TcpListener::bind("127.0.0.1:9090").await?;
/// tokio::spawn(metrics::serve(metrics_listener, metrics.clone(), std::future::pending()));
/// let config = ServerConfig { metrics: Some(metrics), ..ServerConfig::default() };
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:50051").await?;
/// baa_logd::run(listener, Arc::new(store), config, std::future::pending()).await.ok();
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Metrics {
    /// Shared by every clone.
    inner: Arc<Inner>,
}

/// The registry and the metrics in it.
struct Inner {
    /// What `/metrics` encodes.
    registry: Registry,
    /// `baa_logd_appended_entries_total{channel}`.
    appended_entries: Family<ChannelLabels, Counter>,
    /// `baa_logd_appended_bytes_total{channel}`.
    appended_bytes: Family<ChannelLabels, Counter>,
    /// `baa_logd_open_streams{method}`.
    open_streams: Family<MethodLabels, Gauge>,
    /// `baa_logd_follow_lag_entries`.
    follow_lag: Histogram,
    /// `baa_logd_follow_buffered_bytes`.
    follow_buffered: Gauge,
    /// `baa_logd_disk_write_duration_seconds{write}`.
    disk_write_seconds: Family<WriteLabels, Histogram>,
    /// `baa_logd_disk_write_errors_total{write, error}`.
    disk_write_errors: Family<WriteErrorLabels, Counter>,
    /// `baa_logd_store_writable`.
    store_writable: Gauge,
    /// `baa_logd_store_syncs_total`.
    store_syncs: Counter,
    /// `baa_logd_store_synced_commits_total`.
    store_synced_commits: Counter,
    /// `baa_logd_grpc_requests_total{service, method, code}`.
    rpc_requests: Family<RpcLabels, Counter>,
    /// `baa_logd_grpc_request_duration_seconds{service, method, code}`.
    rpc_seconds: Family<RpcLabels, Histogram>,
    /// `baa_logd_runs{status}`.
    runs: Family<StatusLabels, Gauge>,
    /// `baa_logd_retention_deleted_runs_total`.
    retention_runs: Counter,
    /// `baa_logd_retention_deleted_bytes_total`.
    retention_bytes: Counter,
    /// `baa_logd_scrub_checked_runs_total`.
    scrub_runs: Counter,
    /// `baa_logd_scrub_damaged_commits_total`.
    scrub_damaged: Counter,
    /// `baa_logd_worker_leases_expired_total`.
    leases_expired: Counter,
    /// `baa_logd_masked_occurrences_total`.
    masked: Counter,
    /// `baa_logd_object_received_bytes_total`.
    object_received: Counter,
    /// `baa_logd_object_sent_bytes_total`.
    object_sent: Counter,
    /// The gRPC paths served, `/package.Service/Method`: a call to any
    /// other path is counted as `other`, so that made-up paths cannot grow
    /// the number of series without bound.
    known_paths: HashSet<String>,
    /// Counts runs by status at each scrape; set when a server starts over
    /// a store, and holding it weakly, so that the store closes its files
    /// when the server is done with it even while the metrics are served.
    run_counter: Mutex<Option<Arc<dyn CountRuns>>>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The `channel` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabels {
    channel: &'static str,
}

/// The `method` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: &'static str,
}

/// The `write` label: which kind of disk write.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriteLabels {
    write: &'static str,
}

/// The `write` and `error` labels.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriteErrorLabels {
    write: &'static str,
    error: &'static str,
}

/// The labels of a gRPC call.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    service: String,
    method: String,
    code: &'static str,
}

/// The `status` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

/// Histogram buckets of disk writes, in seconds: from a page-cache write
/// to a slow fsync.
const DISK_WRITE_BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
    5.0,
];

/// Histogram buckets of gRPC calls, in seconds: unary calls take
/// milliseconds, streams last as long as a run, hours at times.
const RPC_BUCKETS: [f64; 16] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0, 120.0, 600.0,
    3600.0, 14_400.0,
];

/// Histogram buckets of follower lag, in entries.
const LAG_BUCKETS: [f64; 8] = [
    0.0,
    1.0,
    10.0,
    100.0,
    1_000.0,
    10_000.0,
    100_000.0,
    1_000_000.0,
];

impl Metrics {
    /// A new registry with every metric at zero.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let baa = registry.sub_registry_with_prefix("baa_logd");
        let (appended_entries, appended_bytes, open_streams, follow_lag) = stream_metrics(baa);
        let (disk_write_seconds, disk_write_errors, store_writable) = store_metrics(baa);
        let (store_syncs, store_synced_commits) = sync_metrics(baa);
        let (rpc_requests, rpc_seconds) = rpc_metrics(baa);
        let (runs, retention_runs, retention_bytes) = run_metrics(baa);
        let (scrub_runs, scrub_damaged) = scrub_metrics(baa);
        let leases_expired = Counter::default();
        baa.register(
            "worker_leases_expired",
            "Running runs the server failed because no writer held their worker lease",
            leases_expired.clone(),
        );
        let masked = Counter::default();
        baa.register(
            "masked_occurrences",
            "Secrets and token matches the server replaced with [MASKED] on ingest, over all runs",
            masked.clone(),
        );
        let object_received = Counter::default();
        baa.register(
            "object_received_bytes",
            "Bytes of artifacts and checkpoints received by UploadObject and staged",
            object_received.clone(),
        );
        let object_sent = Counter::default();
        baa.register(
            "object_sent_bytes",
            "Bytes of artifacts and checkpoints sent by DownloadObject and the run page",
            object_sent.clone(),
        );
        let follow_buffered = Gauge::default();
        baa.register(
            "follow_buffered_bytes",
            "Bytes of FollowRun responses handed to connections and not yet taken by their followers (capped by limits.max_follow_buffer_bytes, plus 16 KiB per follower)",
            follow_buffered.clone(),
        );
        registry.register_collector(Box::new(process::ProcessCollector::new()));
        Self {
            inner: Arc::new(Inner {
                scrub_runs,
                scrub_damaged,
                leases_expired,
                masked,
                object_received,
                object_sent,
                retention_runs,
                retention_bytes,
                registry,
                appended_entries,
                appended_bytes,
                open_streams,
                follow_lag,
                follow_buffered,
                disk_write_seconds,
                disk_write_errors,
                store_writable,
                store_syncs,
                store_synced_commits,
                rpc_requests,
                rpc_seconds,
                runs,
                known_paths: served_paths(),
                run_counter: Mutex::new(None),
            }),
        }
    }

    /// The observer to give the store (in
    /// [`LocalStoreOptions::observer`](baa_logging_store::LocalStoreOptions::observer)),
    /// so that its writes are counted here.
    pub fn store_observer(&self) -> Arc<dyn StoreObserver> {
        Arc::new(Observer {
            metrics: self.clone(),
        })
    }

    /// The metrics in the Prometheus text exposition format (0.0.4), with
    /// the runs by status counted from the store just before.
    pub async fn render(&self) -> String {
        self.count_runs().await;
        let mut text = String::new();
        if let Err(err) =
            prometheus_client::encoding::prometheus_text::encode(&mut text, &self.inner.registry)
        {
            warn!(cause = %err, "cannot encode the metrics");
        }
        text
    }

    /// Counts runs from the store set with [`Metrics::count_runs_of`].
    async fn count_runs(&self) {
        let counter = lock(&self.inner.run_counter).clone();
        let Some(counter) = counter else {
            return;
        };
        match counter.count().await {
            Ok(counts) => {
                for (status, count) in counts {
                    self.inner
                        .runs
                        .get_or_create(&StatusLabels {
                            status: status.as_str(),
                        })
                        .set(i64::try_from(count).unwrap_or(i64::MAX));
                }
            }
            Err(err) => warn!(cause = %err, "cannot count the runs for the metrics"),
        }
    }

    /// Counts `store`'s runs at each scrape from now on.
    pub(crate) fn count_runs_of<S: RunStore>(&self, store: &Arc<S>) {
        let counter: Arc<dyn CountRuns> = Arc::new(StoreRuns(Arc::downgrade(store)));
        *lock(&self.inner.run_counter) = Some(counter);
    }

    /// Retention deleted `runs` runs of `bytes` bytes.
    pub(crate) fn record_retention(&self, runs: u64, bytes: u64) {
        self.inner.retention_runs.inc_by(runs);
        self.inner.retention_bytes.inc_by(bytes);
    }

    /// The scrub checked a run and found `damaged` damaged or lost ranges.
    pub(crate) fn record_scrub(&self, damaged: u64) {
        self.inner.scrub_runs.inc();
        self.inner.scrub_damaged.inc_by(damaged);
    }

    /// An upload staged `bytes` more bytes of an object.
    pub(crate) fn record_object_received(&self, bytes: u64) {
        self.inner.object_received.inc_by(bytes);
    }

    /// A download sent `bytes` bytes of an object.
    pub(crate) fn record_object_sent(&self, bytes: u64) {
        self.inner.object_sent.inc_by(bytes);
    }

    /// The server put `occurrences` masks into what it stored.
    pub(crate) fn record_masked(&self, occurrences: u64) {
        self.inner.masked.inc_by(occurrences);
    }

    /// A run's worker lease expired, and the run failed.
    pub(crate) fn record_lease_expired(&self) {
        self.inner.leases_expired.inc();
    }

    /// A follower was sent a batch while `lag` entries were stored beyond
    /// it.
    pub(crate) fn observe_follow_lag(&self, lag: u64) {
        self.inner.follow_lag.observe(lag as f64);
    }

    /// The gauge of follow response bytes waiting to be taken, which the
    /// follow budget keeps.
    pub(crate) fn follow_buffered(&self) -> Gauge {
        self.inner.follow_buffered.clone()
    }

    /// The store's write health changed.
    pub(crate) fn set_store_writable(&self, writable: bool) {
        self.inner.store_writable.set(i64::from(writable));
    }

    /// The layer that counts gRPC calls.
    pub(crate) fn rpc_layer(&self) -> RpcMetricsLayer {
        RpcMetricsLayer::new(self.clone())
    }
}

/// The buckets of `disk_write_duration_seconds`.
fn disk_write_histogram() -> Histogram {
    Histogram::new(DISK_WRITE_BUCKETS)
}

/// The buckets of `grpc_request_duration_seconds`.
fn rpc_histogram() -> Histogram {
    Histogram::new(RPC_BUCKETS)
}

/// Every `/package.Service/Method` path of the services `run` serves,
/// read from their descriptors, so that a new RPC is counted by name
/// without a change here.
fn served_paths() -> HashSet<String> {
    let sets = [
        baa_logging::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ];
    let mut paths = HashSet::new();
    for bytes in sets {
        let Ok(set) = prost_types::FileDescriptorSet::decode(bytes) else {
            warn!("cannot read a file descriptor set; its calls are counted as `other`");
            continue;
        };
        for file in set.file {
            let package = file.package();
            for service in &file.service {
                for method in &service.method {
                    paths.insert(format!("/{package}.{}/{}", service.name(), method.name()));
                }
            }
        }
    }
    paths
}

// === impl Observer ===

/// Feeds the store's writes into the metrics.
#[derive(Debug)]
struct Observer {
    metrics: Metrics,
}

impl StoreObserver for Observer {
    fn wrote(&self, kind: DiskWrite, elapsed: Duration) {
        self.metrics
            .inner
            .disk_write_seconds
            .get_or_create(&WriteLabels {
                write: kind.as_str(),
            })
            .observe(elapsed.as_secs_f64());
    }

    fn committed(&self, stats: &CommitStats) {
        let inner = &self.metrics.inner;
        for (channel, &entries) in stats.entries.iter() {
            if entries > 0 {
                let labels = ChannelLabels {
                    channel: channel.as_str(),
                };
                inner
                    .appended_entries
                    .get_or_create(&labels)
                    .inc_by(entries);
                inner
                    .appended_bytes
                    .get_or_create(&labels)
                    .inc_by(stats.bytes[channel]);
            }
        }
    }

    fn synced(&self, commits: u64) {
        let inner = &self.metrics.inner;
        inner.store_syncs.inc();
        inner.store_synced_commits.inc_by(commits);
    }

    fn write_failed(&self, kind: DiskWrite, error: &io::Error) {
        self.metrics
            .inner
            .disk_write_errors
            .get_or_create(&WriteErrorLabels {
                write: kind.as_str(),
                error: error_label(error),
            })
            .inc();
    }
}

/// The `error` label of a failed write: a few kinds an operator acts on,
/// and `other`.
fn error_label(error: &io::Error) -> &'static str {
    match error.kind() {
        io::ErrorKind::StorageFull => "disk_full",
        io::ErrorKind::QuotaExceeded => "quota_exceeded",
        io::ErrorKind::ReadOnlyFilesystem => "read_only",
        io::ErrorKind::PermissionDenied => "permission_denied",
        io::ErrorKind::NotFound => "not_found",
        _ => "other",
    }
}

// === impl CountRuns ===

/// The runs of a store by status, as [`RunStore::count_runs`] gives them.
type RunCounts<'a> =
    Pin<Box<dyn Future<Output = baa_logging_store::Result<Vec<(RunStatus, u64)>>> + Send + 'a>>;

/// A store whose runs can be counted, with its type erased.
trait CountRuns: Send + Sync {
    /// The runs by status.
    fn count(&self) -> RunCounts<'_>;
}

/// A [`RunStore`] as [`CountRuns`], while it is in use.
struct StoreRuns<S>(Weak<S>);

impl<S: RunStore> CountRuns for StoreRuns<S> {
    fn count(&self) -> RunCounts<'_> {
        let store = self.0.upgrade();
        Box::pin(async move {
            match store {
                Some(store) => store.count_runs().await,
                None => Ok(Vec::new()),
            }
        })
    }
}

// === registration, in exposition order ===

/// A counter per channel.
type ChannelCounters = Family<ChannelLabels, Counter>;

/// Registers what the streams do: entries and bytes appended by channel,
/// open streams by method, and follower lag.
fn stream_metrics(
    baa: &mut Registry,
) -> (
    ChannelCounters,
    ChannelCounters,
    Family<MethodLabels, Gauge>,
    Histogram,
) {
    let appended_entries = Family::<ChannelLabels, Counter>::default();
    baa.register(
        "appended_entries",
        "Entries stored by Append streams and the server's own lifecycle entries, by channel",
        appended_entries.clone(),
    );
    let appended_bytes = Family::<ChannelLabels, Counter>::default();
    baa.register(
        "appended_bytes",
        "Bytes added to the channel files (stored JSON lines), by channel",
        appended_bytes.clone(),
    );
    let open_streams = Family::<MethodLabels, Gauge>::default();
    baa.register(
        "open_streams",
        "Open AppendLogs and FollowRun streams",
        open_streams.clone(),
    );
    // Series known in advance start at zero, so that they are there
    // before the first event.
    for method in rpc::STREAM_METHODS {
        let _ = open_streams.get_or_create(&MethodLabels { method });
    }
    for channel in WorkerLogChannel::ALL {
        let labels = ChannelLabels {
            channel: channel.as_str(),
        };
        let _ = appended_entries.get_or_create(&labels);
        let _ = appended_bytes.get_or_create(&labels);
    }
    let follow_lag = Histogram::new(LAG_BUCKETS);
    baa.register(
        "follow_lag_entries",
        "Entries a run had stored but a follower had not been sent yet, at each batch read for it",
        follow_lag.clone(),
    );
    (appended_entries, appended_bytes, open_streams, follow_lag)
}

/// Registers the store's disk: write times and errors, and whether it can
/// write.
fn store_metrics(
    baa: &mut Registry,
) -> (
    Family<WriteLabels, Histogram>,
    Family<WriteErrorLabels, Counter>,
    Gauge,
) {
    let disk_write_seconds =
        Family::<WriteLabels, Histogram>::new_with_constructor(disk_write_histogram as fn() -> _);
    baa.register(
        "disk_write_duration_seconds",
        "Time of the store's disk writes that succeeded, by kind: commit, state, prepare, and with --sync the group fsync of a run's commits (sync)",
        disk_write_seconds.clone(),
    );
    for write in [
        DiskWrite::Commit,
        DiskWrite::State,
        DiskWrite::Prepare,
        DiskWrite::Sync,
    ] {
        let _ = disk_write_seconds.get_or_create(&WriteLabels {
            write: write.as_str(),
        });
    }
    let disk_write_errors = Family::<WriteErrorLabels, Counter>::default();
    baa.register(
        "disk_write_errors",
        "Disk writes of the store that failed, by kind and error",
        disk_write_errors.clone(),
    );
    let store_writable = Gauge::default();
    store_writable.set(1);
    baa.register(
        "store_writable",
        "1 while the store can write, 0 while it cannot (disk full, read-only); gRPC health says NOT_SERVING then",
        store_writable.clone(),
    );
    (disk_write_seconds, disk_write_errors, store_writable)
}

/// Registers the group commit of `--sync`: fsyncs of runs' commits, and
/// the commits they made durable (their ratio is how many commits share an
/// fsync).
fn sync_metrics(baa: &mut Registry) -> (Counter, Counter) {
    let syncs = Counter::default();
    baa.register(
        "store_syncs",
        "With --sync, fsyncs of a run's files that made its commits durable (one for every commit waiting at the time)",
        syncs.clone(),
    );
    let synced_commits = Counter::default();
    baa.register(
        "store_synced_commits",
        "With --sync, commits made durable by those fsyncs",
        synced_commits.clone(),
    );
    (syncs, synced_commits)
}

/// Registers the gRPC calls: counts and durations.
fn rpc_metrics(baa: &mut Registry) -> (Family<RpcLabels, Counter>, Family<RpcLabels, Histogram>) {
    let rpc_requests = Family::<RpcLabels, Counter>::default();
    baa.register(
        "grpc_requests",
        "gRPC calls finished, by service, method and status code; a stream counts when it ends",
        rpc_requests.clone(),
    );
    let rpc_seconds =
        Family::<RpcLabels, Histogram>::new_with_constructor(rpc_histogram as fn() -> _);
    baa.register(
        "grpc_request_duration_seconds",
        "Time from a gRPC call's request to the end of its response, by service, method and status code",
        rpc_seconds.clone(),
    );
    (rpc_requests, rpc_seconds)
}

/// Registers what the scrub checked and found.
fn scrub_metrics(baa: &mut Registry) -> (Counter, Counter) {
    let runs = Counter::default();
    baa.register(
        "scrub_checked_runs",
        "Runs the scrub read back and checked against their checksums",
        runs.clone(),
    );
    let damaged = Counter::default();
    baa.register(
        "scrub_damaged_commits",
        "Damaged or lost commits the scrub found (each is reported to readers as DATA_LOSS)",
        damaged.clone(),
    );
    (runs, damaged)
}

/// Registers the runs by status and what retention deleted.
fn run_metrics(baa: &mut Registry) -> (Family<StatusLabels, Gauge>, Counter, Counter) {
    let runs = Family::<StatusLabels, Gauge>::default();
    baa.register(
        "runs",
        "Runs in the store by status, counted at each scrape",
        runs.clone(),
    );
    let retention_runs = Counter::default();
    baa.register(
        "retention_deleted_runs",
        "Runs deleted by retention, periodic or requested",
        retention_runs.clone(),
    );
    let retention_bytes = Counter::default();
    baa.register(
        "retention_deleted_bytes",
        "Bytes of the runs deleted by retention",
        retention_bytes.clone(),
    );
    (runs, retention_runs, retention_bytes)
}
