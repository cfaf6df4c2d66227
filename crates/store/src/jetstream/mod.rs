//! The replicated backend: runs on a NATS JetStream stream, so that
//! several stateless `baa-logd` nodes serve the same runs and a node (or
//! a NATS server) can die without losing an acknowledged line.
//!
//! # Design
//!
//! - **One subject per run, one message per commit.** A run's records are
//!   the messages of `<stream>.run.<task>.<run>` (ids mapped to subject
//!   tokens reversibly, see `subject`). A commit's entries travel as one
//!   message, so a follower never sees part of one (`record`).
//! - **One compare-and-set chain per run.** Every change of a run (its
//!   entries, its state, a lease expiring, its deletion) is a record
//!   published only if the subject's last record is still the one it was
//!   built on (`chain`, `writes`). So `seq` is gap-free across nodes, a
//!   terminal run takes no more entries, and a lease expires at most once
//!   whichever node expires it.
//! - **Cursors from the records.** Each record carries the run's head after
//!   it: state, next `seq`, every writer's cursor. `GetWriterCursor` reads
//!   the last record, so it is exact after any failure, with no separate
//!   write that could disagree with it.
//! - **Readers** are ordered consumers on the run's subject (`reader`),
//!   placed by binary searches over its records (`locate`).
//! - **An index bucket** lists runs for `ListRuns` and retention
//!   (`index`); it follows the chains and is mended from them.
//!
//! Acknowledged means stored by a quorum of the stream's replicas; for it
//! to survive a power loss of the whole cluster, the NATS servers must run
//! with `sync_interval: always` (see docs/scale-out.md).

mod chain;
mod feeds;
mod import;
mod index;
mod leases;
mod locate;
mod objects;
mod reader;
mod record;
mod subject;
#[cfg(test)]
#[path = "../../../../tests/util/nats_cluster.rs"]
mod test_cluster;
mod uses;
mod writes;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_nats::jetstream::{self, kv, stream};
use baa_logging_config::Limits;
use chrono::Utc;
use tracing::{info, warn};

use self::{
    chain::{Chains, Tip, TipCell, unavailable},
    index::Index,
    leases::LeaseHolds,
    objects::Objects,
    record::RunHead,
    subject::Subjects,
    uses::UseHolds,
};
pub use self::{
    import::Imported,
    objects::{JetStreamObjectReader, JetStreamUpload},
    reader::JetStreamReader,
};
use crate::{
    error::{Result, StoreError},
    ids::check_id,
    lease::LeaseExpiry,
    local::concurrency::lock,
    model::{
        AppendItem, AppendOutcome, LocalRunPaths, PreparedRun, RunKey, RunMetadata,
        RunMetadataInput, RunPage, RunQuery, RunStatePatch, RunStateSnapshot,
        RunStateSnapshotInput, RunStatus, RunView, WorkerLogChannel, WriterCursor,
    },
    objects::ObjectLimits,
    retention::{Collection, Outcome, RetentionPolicy, RunFacts, run_pass},
    run_store::{ReadFrom, RunStore},
    search::{LineScanner, ReaderSearch},
};

/// The stream's name when none is set.
pub const DEFAULT_STREAM: &str = "BAA_RUNS";

/// How many replicas the stream has when none is set.
pub const DEFAULT_REPLICAS: usize = 3;

/// How to reach the NATS cluster and which stream to use.
#[derive(Debug, Clone)]
pub struct JetStreamOptions {
    /// Server URLs (`nats://host:4222`, `tls://...`); the client moves
    /// between them and those the cluster announces.
    pub urls: Vec<String>,
    /// The stream's name; the index bucket is `<stream>_INDEX`.
    pub stream: String,
    /// The stream's replicas when this node creates it (1, 3 or 5).
    pub replicas: usize,
    /// A NATS credentials file (JWT and NKey seed).
    pub creds_file: Option<PathBuf>,
    /// CA certificates (PEM) to trust for the servers' TLS.
    pub ca_file: Option<PathBuf>,
    /// A client certificate and key (PEM) for mutual TLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Use TLS even when a URL does not say so.
    pub require_tls: bool,
    /// How long connecting may take at start.
    pub connect_timeout: Duration,
    /// The limits on what writers send.
    pub limits: Limits,
    /// The limits on a run's objects.
    pub objects: ObjectLimits,
}

impl JetStreamOptions {
    /// Options for `urls`, with the defaults.
    pub fn new(urls: Vec<String>) -> Self {
        Self {
            urls,
            stream: DEFAULT_STREAM.to_owned(),
            replicas: DEFAULT_REPLICAS,
            creds_file: None,
            ca_file: None,
            client_cert: None,
            require_tls: false,
            connect_timeout: Duration::from_secs(10),
            limits: Limits::default(),
            objects: ObjectLimits::default(),
        }
    }
}

/// The JetStream backend: a handle, cheap to clone.
#[derive(Debug, Clone)]
pub struct JetStreamStore {
    /// What every clone shares.
    shared: Arc<Shared>,
}

/// What the handles of one store share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The stream, as the chains of its subjects.
    chains: Chains,
    /// The index bucket.
    index: Index,
    /// The objects and uploads buckets.
    objects: Objects,
    /// Which node holds which run's worker lease.
    leases: LeaseHolds,
    /// Which nodes use which runs, for retention on every node.
    uses: UseHolds,
    /// The limits on items.
    limits: Limits,
    /// About the largest payload one message may carry.
    max_payload: usize,
    /// Each run's tip as this node last knew it, and the lock that puts
    /// this node's writes of the run in order.
    tips: Mutex<HashMap<RunKey, TipCell>>,
    /// Each run's metadata, which never changes (until retention deletes
    /// the run, and it is prepared again).
    metadata: Mutex<HashMap<RunKey, Known>>,
    /// Streams and readers open on each run here, which this node's
    /// retention passes leave alone.
    users: Mutex<HashMap<RunKey, usize>>,
    /// Those of them the other nodes' retention is told of (see `uses`).
    announced: Mutex<HashMap<RunKey, usize>>,
    /// The live consumers this node's readers share, one per run.
    feeds: Arc<feeds::Feeds>,
    /// Retention passes of this node do not overlap.
    collecting: tokio::sync::Mutex<()>,
    /// The stream's name.
    stream_name: String,
}

/// A run's metadata as a node knows it, and which run of those ids it is.
#[derive(Debug, Clone)]
pub(crate) struct Known {
    /// The stream sequence of the run's `Prepared` record.
    origin: u64,
    /// The metadata.
    metadata: RunMetadata,
}

/// Keeps a run from this node's retention while it lives.
#[derive(Debug)]
pub struct UseGuard {
    /// The store.
    shared: Arc<Shared>,
    /// The run.
    key: RunKey,
    /// Whether the other nodes were told of it.
    announced: bool,
}

impl Drop for UseGuard {
    fn drop(&mut self) {
        let key = &self.key;
        leave(&self.shared.users, key);
        // The other nodes learn it now; without a runtime, the use runs
        // out by itself.
        if self.announced
            && leave(&self.shared.announced, key)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let shared = self.shared.clone();
            let key = key.clone();
            runtime.spawn(async move { shared.uses.release(&key).await });
        }
    }
}

/// Counts one use of `key` more in `uses`; true when it is the first.
fn join(uses: &Mutex<HashMap<RunKey, usize>>, key: &RunKey) -> bool {
    let mut uses = lock(uses);
    let count = uses.entry(key.clone()).or_default();
    *count += 1;
    *count == 1
}

/// Counts one use of `key` less in `uses`; true when it was the last.
fn leave(uses: &Mutex<HashMap<RunKey, usize>>, key: &RunKey) -> bool {
    let mut uses = lock(uses);
    let last = match uses.get_mut(key) {
        Some(count) => {
            *count -= 1;
            *count == 0
        }
        None => false,
    };
    if last {
        uses.remove(key);
    }
    last
}

impl JetStreamStore {
    /// Connects to the cluster, creates the stream and the index bucket
    /// when they do not exist, and returns the store.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the servers cannot be reached in
    /// `connect_timeout`, or refuse the stream.
    pub async fn open(options: JetStreamOptions) -> Result<Self> {
        let client = connect(&options).await?;
        let max_payload = client.server_info().max_payload;
        if options.limits.max_entry_bytes * 2 > max_payload {
            warn!(
                max_payload,
                max_entry_bytes = options.limits.max_entry_bytes,
                "the NATS servers' max_payload is under twice limits.max_entry_bytes: the largest \
                 entries will be refused; raise max_payload (the deploy files set 8MB)"
            );
        }
        let js = jetstream::new(client);
        let subjects = Subjects::new(&options.stream);
        let config = stream::Config {
            name: options.stream.clone(),
            subjects: vec![subjects.all()],
            storage: stream::StorageType::File,
            num_replicas: options.replicas,
            duplicate_window: Duration::from_secs(120),
            allow_direct: true,
            ..stream::Config::default()
        };
        let stream = retry_setup("create the stream", options.connect_timeout, || {
            js.get_or_create_stream(config.clone())
        })
        .await?;
        let bucket = |suffix: &str, max_age: Duration| kv::Config {
            bucket: format!("{}_{suffix}", options.stream),
            history: 1,
            storage: stream::StorageType::File,
            num_replicas: options.replicas,
            max_age,
            ..kv::Config::default()
        };
        let patience = options.connect_timeout;
        let kv = open_bucket(&js, bucket("INDEX", Duration::ZERO), patience).await?;
        // Holds of runs that finished long ago go by themselves.
        let holds = bucket("LEASES", Duration::from_secs(2 * 24 * 3600));
        let leases = open_bucket(&js, holds, patience).await?;
        // Uses of nodes that died go by themselves.
        let uses = bucket("USES", Duration::from_secs(24 * 3600));
        let uses = open_bucket(&js, uses, patience).await?;
        let objects = Objects::open(
            &js,
            &options.stream,
            options.replicas,
            options.connect_timeout,
            options.objects,
            max_payload.saturating_sub(64 * 1024).max(64 * 1024),
        )
        .await?;
        info!(stream = %options.stream, replicas = options.replicas, "JetStream store open");
        let node = uuid::Uuid::new_v4().simple().to_string();
        let shared = Arc::new(Shared {
            chains: Chains {
                js,
                stream,
                subjects,
            },
            index: Index { kv },
            objects,
            leases: LeaseHolds {
                kv: leases,
                node: node.clone(),
            },
            uses: UseHolds { kv: uses, node },
            limits: options.limits,
            max_payload: max_payload.saturating_sub(64 * 1024).max(64 * 1024),
            tips: Mutex::default(),
            metadata: Mutex::default(),
            users: Mutex::default(),
            announced: Mutex::default(),
            feeds: Arc::default(),
            collecting: tokio::sync::Mutex::new(()),
            stream_name: options.stream,
        });
        tokio::spawn(uses::renew(Arc::downgrade(&shared)));
        Ok(Self { shared })
    }

    /// Keeps `key` from retention, this node's and the others', while the
    /// guard lives.
    async fn enter(&self, key: &RunKey) -> UseGuard {
        let mut guard = self.enter_here(key);
        guard.announced = true;
        if join(&self.shared.announced, key) {
            // Told to the other nodes before the use starts, then renewed
            // while it lasts.
            self.shared.uses.hold(vec![key.clone()]).await;
        }
        guard
    }

    /// Keeps `key` from this node's retention while the guard lives.
    fn enter_here(&self, key: &RunKey) -> UseGuard {
        join(&self.shared.users, key);
        UseGuard {
            shared: self.shared.clone(),
            key: key.clone(),
            announced: false,
        }
    }

    /// The run's tip, read now.
    async fn fresh_tip(&self, key: &RunKey) -> Result<Tip> {
        check_id("task_id", &key.task_id)?;
        check_id("run_id", &key.run_id)?;
        let cell = self.shared.cell(key);
        let mut slot = cell.lock().await;
        *slot = None;
        Ok(self.shared.current(key, &mut slot).await?.clone())
    }
}

impl Shared {
    /// The tip cell of a run.
    pub(crate) fn cell(&self, key: &RunKey) -> TipCell {
        lock(&self.tips).entry(key.clone()).or_default().clone()
    }

    /// The chains, for a task of a reader.
    pub(crate) fn clone_chains(&self) -> Chains {
        self.chains.clone()
    }

    /// A run's metadata, when this node knows it.
    fn known_metadata(&self, key: &RunKey) -> Option<Known> {
        lock(&self.metadata).get(key).cloned()
    }

    /// Remembers a run's metadata.
    fn remember_metadata(&self, key: &RunKey, known: &Known) {
        lock(&self.metadata).insert(key.clone(), known.clone());
    }

    /// Forgets what this node keeps of a run (deleted, or finished): it is
    /// read again from the stream when needed.
    fn forget(&self, key: &RunKey) {
        lock(&self.metadata).remove(key);
        lock(&self.tips).remove(key);
        self.forget_objects(key);
    }

    /// A run as served.
    fn view(&self, key: &RunKey, metadata: RunMetadata, run: &RunHead) -> RunView {
        RunView {
            paths: self.paths(key, &metadata),
            metadata,
            state: run.state.clone(),
            summary: run.summary(),
        }
    }

    /// Where a run is, in the shape of the local layout's paths: the
    /// stream's name stands for the runs root.
    fn paths(&self, key: &RunKey, metadata: &RunMetadata) -> LocalRunPaths {
        let root = format!("nats:{}", self.stream_name);
        let task = format!("{root}/{}", key.task_id);
        let run = format!("{task}/{}", key.run_id);
        LocalRunPaths {
            layout_version: metadata.layout_version.clone(),
            repo_root: metadata.repo_root.clone(),
            runs_root_dir: root,
            task_runs_dir: task,
            checkpoints_dir: format!("{run}/checkpoints"),
            artifacts_dir: format!("{run}/artifacts"),
            meta_path: format!("{run}/meta.json"),
            state_path: format!("{run}/state.json"),
            worker_log_path: format!("{run}/{}.log", WorkerLogChannel::Worker.as_str()),
            stdout_log_path: format!("{run}/{}.log", WorkerLogChannel::Stdout.as_str()),
            stderr_log_path: format!("{run}/{}.log", WorkerLogChannel::Stderr.as_str()),
            run_dir: run,
        }
    }

    /// Whether a stream or reader of this node is open on `key`.
    fn in_use(&self, key: &RunKey) -> bool {
        lock(&self.users).contains_key(key)
    }
}

/// Connects to the NATS servers.
async fn connect(options: &JetStreamOptions) -> Result<async_nats::Client> {
    let failed = |err: String| unavailable("cannot connect to the NATS servers".to_owned(), err);
    let mut connect = async_nats::ConnectOptions::new()
        .name("baa-logd")
        .connection_timeout(options.connect_timeout)
        .retry_on_initial_connect()
        .max_reconnects(None);
    if let Some(creds) = &options.creds_file {
        connect = connect
            .credentials_file(creds)
            .await
            .map_err(|err| failed(format!("{}: {err}", creds.display())))?;
    }
    if let Some(ca) = &options.ca_file {
        connect = connect.add_root_certificates(ca.clone());
    }
    if let Some((cert, key)) = &options.client_cert {
        connect = connect.add_client_certificate(cert.clone(), key.clone());
    }
    if options.require_tls || options.ca_file.is_some() || options.client_cert.is_some() {
        connect = connect.require_tls(true);
    }
    let addresses = options
        .urls
        .iter()
        .map(|url| url.parse::<async_nats::ServerAddr>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|err| failed(format!("a bad NATS URL: {err}")))?;
    if addresses.is_empty() {
        return Err(failed("no NATS URL is set (--nats-url)".to_owned()));
    }
    let client = tokio::time::timeout(options.connect_timeout, connect.connect(addresses))
        .await
        .map_err(|_| failed(format!("no answer in {:?}", options.connect_timeout)))?
        .map_err(|err| failed(err.to_string()))?;
    // `retry_on_initial_connect` returns before the first connection.
    let deadline = tokio::time::Instant::now() + options.connect_timeout;
    while client.connection_state() != async_nats::connection::State::Connected {
        if tokio::time::Instant::now() > deadline {
            return Err(failed(format!(
                "no server of {} answered in {:?}",
                options.urls.join(","),
                options.connect_timeout
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(client)
}

/// Opens the key-value bucket `config` names, creating it when it does not
/// exist, trying for `patience` (a new cluster elects its leaders in a
/// few seconds).
async fn open_bucket(
    js: &jetstream::Context,
    config: kv::Config,
    patience: Duration,
) -> Result<kv::Store> {
    let what = format!("create the bucket {}", config.bucket);
    retry_setup(&what, patience, || async {
        match js.get_key_value(config.bucket.clone()).await {
            Ok(kv) => Ok(kv),
            Err(_) => js
                .create_key_value(config.clone())
                .await
                .map_err(|err| err.to_string()),
        }
    })
    .await
}

/// Runs a setup step until it succeeds or `patience` passes (a new
/// cluster elects its leaders in a few seconds).
async fn retry_setup<T, E: std::fmt::Display, F: std::future::Future<Output = Result<T, E>>>(
    what: &str,
    patience: Duration,
    mut step: impl FnMut() -> F,
) -> Result<T> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match step().await {
            Ok(value) => return Ok(value),
            Err(err) if tokio::time::Instant::now() < deadline => {
                warn!(cause = %err, "cannot {what} yet; trying again");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(err) => return Err(unavailable(format!("cannot {what}"), err)),
        }
    }
}

impl RunStore for JetStreamStore {
    type Reader = JetStreamReader;
    type Hold = UseGuard;
    type Searcher = ReaderSearch<JetStreamReader>;

    async fn prepare_run(
        &self,
        metadata: RunMetadataInput,
        state: RunStateSnapshotInput,
    ) -> Result<PreparedRun> {
        self.shared.prepare_run(metadata, state).await
    }

    async fn get_run(&self, key: &RunKey) -> Result<RunView> {
        let tip = self.fresh_tip(key).await?;
        let metadata = self.shared.metadata_at(key, &tip).await?;
        Ok(self.shared.view(key, metadata, &tip.head.run))
    }

    async fn list_runs(&self, query: RunQuery) -> Result<RunPage> {
        if let Some(task_id) = &query.task_id {
            check_id("task_id", task_id)?;
        }
        let mut catalog = crate::local::catalog::Catalog::default();
        let entries = match &query.task_id {
            Some(task_id) => self.shared.index.of_task(task_id).await?,
            None => self.shared.index.all().await?,
        };
        for (_, entry) in entries {
            catalog.insert(&entry.metadata, entry.state.status);
        }
        let (keys, next_page_token) = catalog.page(
            query.task_id.as_deref(),
            &query.statuses,
            query.page_size,
            query.page_token.as_deref(),
        )?;
        let views = futures::future::join_all(keys.iter().map(|key| self.get_run(key))).await;
        let mut runs = Vec::with_capacity(views.len());
        for (key, view) in keys.iter().zip(views) {
            match view {
                Ok(view) => runs.push(view),
                Err(StoreError::RunNotFound(_)) => self.shared.index.remove(key).await,
                Err(err) => return Err(err),
            }
        }
        Ok(RunPage {
            runs,
            next_page_token,
        })
    }

    async fn update_state(&self, key: &RunKey, patch: RunStatePatch) -> Result<RunStateSnapshot> {
        self.shared.update_state(key, None, patch).await
    }

    async fn update_state_by(
        &self,
        key: &RunKey,
        writer_id: &str,
        patch: RunStatePatch,
    ) -> Result<RunStateSnapshot> {
        check_id("writer_id", writer_id)?;
        self.shared.update_state(key, Some(writer_id), patch).await
    }

    async fn expire_lease(
        &self,
        key: &RunKey,
        expiry: LeaseExpiry,
    ) -> Result<Option<RunStateSnapshot>> {
        self.shared.expire_lease(key, expiry).await
    }

    async fn append(
        &self,
        key: &RunKey,
        writer_id: &str,
        items: Vec<AppendItem>,
    ) -> Result<AppendOutcome> {
        self.shared.append(key, writer_id, items).await
    }

    async fn writer_cursor(&self, key: &RunKey, writer_id: &str) -> Result<WriterCursor> {
        self.shared.writer_cursor(key, writer_id).await
    }

    async fn open_reader(&self, key: &RunKey, from: ReadFrom) -> Result<Self::Reader> {
        let guard = self.enter(key).await;
        let tip = self.fresh_tip(key).await?;
        JetStreamReader::open(&self.shared, key, tip, from, guard).await
    }

    async fn search(&self, key: &RunKey, scanner: LineScanner) -> Result<Self::Searcher> {
        let reader = self.open_reader(key, scanner.read_from()).await?;
        Ok(ReaderSearch::new(reader, scanner))
    }

    async fn hold(&self, key: &RunKey) -> Result<Self::Hold> {
        let guard = self.enter(key).await;
        self.fresh_tip(key).await?;
        Ok(guard)
    }

    async fn collect(&self, policy: RetentionPolicy, dry_run: bool) -> Result<Collection> {
        let _pass = self.shared.collecting.lock().await;
        let entries = self.shared.index.all().await?;
        let facts = entries
            .iter()
            .map(|(key, entry)| RunFacts {
                key: key.clone(),
                status: entry.state.status,
                // Runs without `finished_at` count from `updated_at`.
                finished_at: entry
                    .state
                    .finished_at
                    .as_deref()
                    .unwrap_or(&entry.state.updated_at)
                    .parse::<chrono::DateTime<Utc>>()
                    .ok(),
                bytes: entry.bytes,
            })
            .collect();
        // Runs other nodes use are kept, as this node's are; when that
        // cannot be read, every run is.
        let elsewhere = &self.shared.uses.used_elsewhere().await?;
        Ok(
            run_pass(policy, Utc::now(), facts, dry_run, |key| async move {
                if self.shared.in_use(&key) || elsewhere.contains(&key) {
                    return Ok(Outcome::InUse);
                }
                match dry_run {
                    true => Ok(Outcome::Deleted),
                    false => self.delete(&key).await,
                }
            })
            .await,
        )
    }

    async fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn shared_by_nodes(&self) -> bool {
        true
    }

    async fn hold_leases(&self, holds: Vec<(RunKey, Duration)>) {
        self.shared.leases.hold(holds).await;
    }

    async fn lease_held_elsewhere(&self, key: &RunKey) -> bool {
        self.shared.leases.held_elsewhere(key).await
    }

    async fn count_runs(&self) -> Result<Vec<(RunStatus, u64)>> {
        let mut counts: Vec<(RunStatus, u64)> = RunStatus::ALL.iter().map(|s| (*s, 0)).collect();
        for (_, entry) in self.shared.index.all().await? {
            if let Some((_, count)) = counts.iter_mut().find(|(s, _)| *s == entry.state.status) {
                *count += 1;
            }
        }
        Ok(counts)
    }
}

impl Shared {
    /// Purges `key`'s records before stream sequence `deleted` (its
    /// `Deleted` record, or the one after it), and nothing after: a run
    /// prepared again meanwhile stays whole.
    async fn purge_before(&self, key: &RunKey, deleted: u64) -> Result<()> {
        let subject = self.chains.subjects.run(key);
        self.chains
            .stream
            .purge()
            .filter(subject)
            .sequence(deleted)
            .await
            .map_err(|err| unavailable(format!("cannot purge run `{key}`"), err))?;
        Ok(())
    }

    /// Finishes the deletion of a run whose tip is its `Deleted` record:
    /// its objects, then its records before that one. A pass that stopped
    /// part way, or a run prepared again over it, calls this again.
    pub(crate) async fn finish_deletion(&self, key: &RunKey, deleted: &Tip) -> Result<()> {
        self.drop_objects(key, deleted).await?;
        self.purge_before(key, deleted.stream_seq).await
    }
}

impl JetStreamStore {
    /// Deletes a terminal run: a `Deleted` record on its chain (so no
    /// node appends or prepares on the old run), then every record
    /// before it purged, then that record, then its index entry. Keeps a
    /// run that is not terminal, or whose worker lease another node holds
    /// (a writer that may still deliver late).
    async fn delete(&self, key: &RunKey) -> Result<Outcome> {
        check_id("task_id", &key.task_id)?;
        check_id("run_id", &key.run_id)?;
        let tip = match self.shared.chains.tip(key).await? {
            Some(tip) if tip.exists() => tip,
            Some(tip) => {
                // Marked deleted by a pass that did not get to purge.
                self.shared.finish_deletion(key, &tip).await?;
                self.shared.purge_before(key, tip.stream_seq + 1).await?;
                self.shared.index.remove_through(key, tip.stream_seq).await;
                return Ok(Outcome::Gone);
            }
            None => {
                self.shared.index.remove(key).await;
                return Ok(Outcome::Gone);
            }
        };
        if !tip.head.run.state.status.is_terminal() {
            return Ok(Outcome::NotTerminal);
        }
        if self.shared.leases.held_elsewhere(key).await {
            return Ok(Outcome::InUse);
        }
        let Some(deleted) = self.shared.mark_deleted(key, &tip).await? else {
            // The run changed meanwhile: the next pass looks again.
            return Ok(Outcome::NotTerminal);
        };
        // The records before `Deleted` name the objects: they go first.
        self.shared.drop_objects(key, &tip).await?;
        self.shared.purge_before(key, deleted).await?;
        // Then the `Deleted` record itself, so the stream keeps nothing of
        // the run, and last the index entry: a pass that stops before
        // finds the run again by it. A node that still knows the run's
        // tip has its next write refused (the subject's last message is
        // gone) and reads the run as gone.
        self.shared.purge_before(key, deleted + 1).await?;
        self.shared.index.remove_through(key, deleted).await;
        self.shared.leases.forget(key).await;
        self.shared.forget(key);
        Ok(Outcome::Deleted)
    }
}
