//! `SearchRuns`: a pattern over the output of one run, of a task's runs or
//! of every run the caller may read, newest run first, streamed as found.
//!
//! The search runs in a task of its own that hands responses to the
//! stream through a channel of two: a caller that stops reading stops the
//! search, and one that goes away ends it. Each step scans about 1 MiB of
//! one run (on the blocking pool, beside followers' reads), then waits as
//! long as the caller's rate says (`limits.search_rate`, shared by all of
//! a caller's searches), so a search takes a bounded share of the disk and
//! the cores whatever its pattern. The call's deadline (`grpc-timeout`)
//! ends it with `DEADLINE_EXCEEDED` after the matches found by then.

use std::{pin::Pin, sync::Arc, time::Duration};

use baa_logging::pb;
use baa_logging_store::{
    RunSearcher, RunStore, StoreError,
    model::{ChannelSet, RunKey, RunQuery, RunView},
    search::{LineScanner, MAX_CONTEXT_LINES, Pattern, SearchHit, SearchQuery},
};
use futures::Stream;
use prost::Message;
use tokio::{
    sync::{Semaphore, mpsc},
    time::Instant,
};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Status, metadata::MetadataMap};

use crate::{
    convert::{from_channel, from_timestamp, to_channel},
    limits::{Occupancy, OccupancyGuard, RateGuard, SearchRates},
    security::{TaskLimit, TokenName, tasks},
    status::to_status,
};

/// The response stream of `SearchRuns`.
pub type SearchRunsStream =
    Pin<Box<dyn Stream<Item = Result<pb::SearchRunsResponse, Status>> + Send>>;

/// The fewest stored bytes one step of a search scans.
const MIN_STEP_BYTES: u64 = 1024 * 1024;

/// The most stored bytes one step of a search scans: a step holds a
/// blocking thread and one of the search permits while it runs.
const MAX_STEP_BYTES: u64 = 16 * 1024 * 1024;

/// How many bytes a step scans at `rate` bytes a second (0: no limit):
/// an eighth of a second's worth, so that pacing stays smooth while a step
/// is large enough that handing it to a thread costs little.
fn step_bytes(rate: u64) -> usize {
    match rate {
        0 => MAX_STEP_BYTES as usize,
        rate => (rate / 8).clamp(MIN_STEP_BYTES, MAX_STEP_BYTES) as usize,
    }
}

/// The most matches one response carries.
const RESPONSE_MATCHES: usize = 256;

/// About the most bytes of matches one response carries, well under the
/// 4 MiB that gRPC clients take by default.
const RESPONSE_BYTES: usize = 1024 * 1024;

/// How long a search that stopped waits for its caller to take the last
/// matches and the status.
const LAST_SEND: Duration = Duration::from_secs(5);

/// The most searches one caller runs at once.
pub(crate) const MAX_SEARCHES_PER_CALLER: usize = 4;

/// The most searches the server runs at once.
pub(crate) const MAX_SEARCHES: usize = 64;

/// A response is sent at least this often while a search goes on, with
/// its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// The matches a search stops at when the request names no cap.
const DEFAULT_MAX_MATCHES: usize = 1000;

/// The most matches a search may ask for.
const MAX_MATCHES: usize = 100_000;

/// Runs listed at a time while looking for runs to search.
const LIST_PAGE: usize = 200;

/// What every search shares: the callers' paces, the caps on open
/// searches, and the steps that may run at once.
#[derive(Debug)]
pub(crate) struct Searches {
    /// Per-caller pacing.
    rates: Arc<SearchRates>,
    /// Open searches, per caller and in all.
    slots: Arc<Occupancy<String>>,
    /// Search steps running at once: half the cores (at least one), so
    /// that searches never take the cores writers need.
    steps: Arc<Semaphore>,
}

impl Searches {
    /// Searches paced to `rate` bytes a second per caller (0: no limit).
    pub(crate) fn new(rate: u64) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self {
            rates: Arc::new(SearchRates::new(rate)),
            slots: Arc::new(Occupancy::new(
                "searches",
                "caller",
                MAX_SEARCHES_PER_CALLER,
                MAX_SEARCHES,
            )),
            steps: Arc::new(Semaphore::new((cores / 2).max(1))),
        }
    }
}

/// What `SearchRuns` works with.
#[derive(Debug)]
pub(crate) struct SearchState<S> {
    /// Where runs are searched.
    pub(crate) store: Arc<S>,
    /// The tasks the caller's token may read; all when `None`.
    pub(crate) tasks: Option<Arc<TaskLimit>>,
    /// The pace of the caller's searches.
    pub(crate) pace: RateGuard<String>,
    /// When the search stops, a little before the call's `grpc-timeout`.
    pub(crate) deadline: Option<Instant>,
    /// Ends the search when the server shuts down.
    pub(crate) shutdown: CancellationToken,
    /// The search's place under the caps on open searches.
    pub(crate) _slot: OccupancyGuard<String>,
    /// Steps of all searches that may run at once.
    pub(crate) steps: Arc<Semaphore>,
}

impl<S> SearchState<S> {
    /// The state of one call: its token's task limit and pace, its
    /// deadline. Refuses a task the token may not read.
    pub(crate) fn of_call(
        store: &Arc<S>,
        searches: &Searches,
        shutdown: &CancellationToken,
        request: &Request<pb::SearchRunsRequest>,
    ) -> Result<Self, Status> {
        let tasks = tasks::limit_of(request.extensions());
        let task_id = &request.get_ref().task_id;
        if !task_id.is_empty() {
            tasks::check(tasks.as_deref(), task_id)?;
        }
        // A caller is its token, or without tokens its address.
        let caller = match (
            request.extensions().get::<TokenName>(),
            request.remote_addr(),
        ) {
            (Some(token), _) => format!("token {}", token.0),
            (None, Some(peer)) => format!("address {}", peer.ip()),
            (None, None) => "anonymous".to_owned(),
        };
        let slot = searches.slots.enter(&caller)?;
        Ok(Self {
            store: store.clone(),
            tasks,
            pace: searches.rates.open(&caller),
            deadline: deadline_of(request.metadata()),
            shutdown: shutdown.clone(),
            _slot: slot,
            steps: searches.steps.clone(),
        })
    }
}

/// The call's deadline, from its `grpc-timeout` header (`100m`, `5S`...).
fn deadline_of(metadata: &MetadataMap) -> Option<Instant> {
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (amount, unit) = value.split_at(value.len().checked_sub(1)?);
    let amount: u64 = amount.parse().ok()?;
    let timeout = match unit {
        "H" => Duration::from_secs(amount.checked_mul(3600)?),
        "M" => Duration::from_secs(amount.checked_mul(60)?),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    };
    // Stop a little early, so that the matches found and the status reach
    // the caller before its own deadline (or a proxy's) ends the call.
    let margin = (timeout / 10).min(Duration::from_millis(200));
    Instant::now().checked_add(timeout - margin)
}

/// What the request asks, checked.
#[derive(Debug)]
struct Search {
    /// The query each run is searched with.
    query: SearchQuery,
    /// One run, when the request names it.
    run: Option<RunKey>,
    /// Only this task's runs, when set.
    task_id: Option<String>,
    /// The most matches.
    max_matches: usize,
}

/// Checks a request.
fn checked(request: pb::SearchRunsRequest) -> Result<Search, Status> {
    let pattern = Pattern::new(&request.pattern, request.literal, request.ignore_case)
        .map_err(|err| Status::invalid_argument(format!("pattern: {err}")))?;
    let channels = request
        .channels
        .iter()
        .map(|channel| from_channel("channels", *channel))
        .collect::<Result<Vec<_>, _>>()?;
    for (field, lines) in [
        ("before_context", request.before_context),
        ("after_context", request.after_context),
    ] {
        if lines as usize > MAX_CONTEXT_LINES {
            return Err(Status::invalid_argument(format!(
                "{field} ({lines}) is over {MAX_CONTEXT_LINES} lines"
            )));
        }
    }
    if !request.run_id.is_empty() && request.task_id.is_empty() {
        return Err(Status::invalid_argument("run_id needs its task_id"));
    }
    let since = request
        .since
        .map(|since| from_timestamp("since", since))
        .transpose()?;
    let until = request
        .until
        .map(|until| from_timestamp("until", until))
        .transpose()?;
    let task_id = (!request.task_id.is_empty()).then_some(request.task_id);
    Ok(Search {
        query: SearchQuery {
            pattern,
            channels: ChannelSet::of(&channels),
            since,
            until,
            before: request.before_context as usize,
            after: request.after_context as usize,
        },
        run: (!request.run_id.is_empty()).then(|| RunKey {
            task_id: task_id.clone().unwrap_or_default(),
            run_id: request.run_id,
        }),
        task_id,
        max_matches: match request.max_matches as usize {
            0 => DEFAULT_MAX_MATCHES,
            max => max.min(MAX_MATCHES),
        },
    })
}

/// `SearchRuns`.
#[tracing::instrument(skip_all, fields(task_id = %request.task_id, run_id = %request.run_id))]
pub(crate) async fn search_runs<S: RunStore>(
    state: SearchState<S>,
    request: pb::SearchRunsRequest,
) -> Result<SearchRunsStream, Status> {
    let search = checked(request)?;
    if let Some(run) = &search.run {
        // A named run that does not exist is an error, not an empty search.
        state.store.get_run(run).await.map_err(to_status)?;
    }
    let (sender, receiver) = mpsc::channel(2);
    let span = tracing::Span::current();
    tokio::spawn(tracing::Instrument::instrument(
        run_search(state, search, sender),
        span,
    ));
    Ok(Box::pin(ReceiverStream::new(receiver)))
}

/// How a search ended early.
enum Stop {
    /// The caller went away.
    Gone,
    /// With this status.
    Failed(Status),
}

/// The search, sending responses to `sender` until it is done.
async fn run_search<S: RunStore>(
    state: SearchState<S>,
    search: Search,
    sender: mpsc::Sender<Result<pb::SearchRunsResponse, Status>>,
) {
    let mut progress = Progress::new(sender.clone());
    let outcome = tokio::select! {
        biased;
        () = sender.closed() => Err(Stop::Gone),
        () = state.shutdown.cancelled() => Err(Stop::Failed(Status::unavailable(
            "the server is shutting down; search again elsewhere or later",
        ))),
        () = sleep_until(state.deadline) => Err(Stop::Failed(Status::deadline_exceeded(
            "the search ran out of time; the matches found so far were sent",
        ))),
        outcome = search_all(&state, &search, &mut progress) => outcome,
    };
    match outcome {
        Ok(limit_reached) => {
            progress.response.limit_reached = limit_reached;
            let _ = progress.send().await;
        }
        Err(Stop::Gone) => {}
        Err(Stop::Failed(status)) => {
            // What was found before the end goes first, if the caller
            // takes it soon.
            let last = async {
                if !progress.response.matches.is_empty() || !progress.response.skipped.is_empty() {
                    progress.send().await?;
                }
                sender.send(Err(status)).await.map_err(|_| Stop::Gone)
            };
            let _ = tokio::time::timeout(LAST_SEND, last).await;
        }
    }
}

/// Waits until `deadline`, or for ever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Searches every run in scope, newest first; true when it stopped at the
/// cap.
async fn search_all<S: RunStore>(
    state: &SearchState<S>,
    search: &Search,
    progress: &mut Progress,
) -> Result<bool, Stop> {
    let mut found = 0usize;
    if let Some(run) = &search.run {
        return search_run(state, search, run, &mut found, progress).await;
    }
    let mut page_token = None;
    loop {
        let page = state
            .store
            .list_runs(RunQuery {
                task_id: search.task_id.clone(),
                statuses: Vec::new(),
                page_size: LIST_PAGE,
                page_token: page_token.take(),
            })
            .await
            .map_err(|err| Stop::Failed(to_status(err)))?;
        for run in page.runs.iter().filter(|run| in_scope(state, search, run)) {
            let key = run.metadata.key();
            if search_run(state, search, &key, &mut found, progress).await? {
                return Ok(true);
            }
        }
        match page.next_page_token {
            Some(token) => page_token = Some(token),
            None => return Ok(false),
        }
    }
}

/// Whether a listed run is searched: its task is one the caller may read,
/// and it was written within the window.
fn in_scope<S>(state: &SearchState<S>, search: &Search, run: &RunView) -> bool {
    if state
        .tasks
        .as_ref()
        .is_some_and(|tasks| !tasks.allows(&run.metadata.task_id))
    {
        return false;
    }
    let time = baa_logging_store::time::parse_iso;
    if let (Some(until), Some(created)) = (search.query.until, time(&run.metadata.created_at)) {
        if created > until {
            return false;
        }
    }
    if let (Some(since), Some(finished)) = (
        search.query.since,
        run.state.finished_at.as_deref().and_then(time),
    ) {
        if finished < since {
            return false;
        }
    }
    true
}

/// Searches one run; true when the cap was reached.
async fn search_run<S: RunStore>(
    state: &SearchState<S>,
    search: &Search,
    key: &RunKey,
    found: &mut usize,
    progress: &mut Progress,
) -> Result<bool, Stop> {
    let scanner = LineScanner::new(search.query.clone(), search.max_matches - *found);
    let mut searcher = match state.store.search(key, scanner).await {
        Ok(searcher) => searcher,
        // Deleted since it was listed: nothing to search.
        Err(StoreError::RunNotFound(_)) if search.run.is_none() => return Ok(false),
        Err(err) => return Err(Stop::Failed(to_status(err))),
    };
    loop {
        let started = Instant::now();
        let batch = {
            let _step = state
                .steps
                .acquire()
                .await
                .expect("the semaphore stays open");
            searcher
                .next(step_bytes(state.pace.rate()))
                .await
                .map_err(|err| Stop::Failed(to_status(err)))?
        };
        // A step costs its bytes, or the time it took at the rate if that
        // is more (a slow pattern): so a search takes at most half a core.
        let rate = state.pace.rate() as f64;
        let took = (started.elapsed().as_secs_f64() * rate) as u64;
        let cost = (batch.scanned_bytes + batch.overhead_bytes).max(took);
        *found += batch.hits.len();
        progress.response.bytes_scanned += batch.scanned_bytes;
        for hit in batch.hits {
            progress.push(to_match(key, hit));
            if progress.full() {
                progress.send().await?;
            }
        }
        progress
            .response
            .skipped
            .extend(
                batch
                    .skipped
                    .into_iter()
                    .map(|(first_seq, last_seq)| pb::SearchSkipped {
                        task_id: key.task_id.clone(),
                        run_id: key.run_id.clone(),
                        first_seq,
                        last_seq,
                    }),
            );
        if batch.done {
            progress.response.runs_searched += 1;
        }
        if progress.due() {
            progress.send().await?;
        }
        state.pace.take(cost as usize).await;
        if batch.done {
            return Ok(*found >= search.max_matches);
        }
    }
}

/// The response being filled, and when one was last sent.
struct Progress {
    /// Where responses go.
    sender: mpsc::Sender<Result<pb::SearchRunsResponse, Status>>,
    /// The next response; its totals run over the whole search.
    response: pb::SearchRunsResponse,
    /// About how many bytes its matches take.
    bytes: usize,
    /// When the last response went.
    sent: Instant,
}

impl Progress {
    /// Nothing sent yet.
    fn new(sender: mpsc::Sender<Result<pb::SearchRunsResponse, Status>>) -> Self {
        Self {
            sender,
            response: pb::SearchRunsResponse::default(),
            bytes: 0,
            sent: Instant::now(),
        }
    }

    /// Adds a match to the response.
    fn push(&mut self, found: pb::SearchMatch) {
        self.bytes += found.encoded_len();
        self.response.matches.push(found);
    }

    /// Whether the response is as large as one should be.
    fn full(&self) -> bool {
        self.response.matches.len() >= RESPONSE_MATCHES || self.bytes >= RESPONSE_BYTES
    }

    /// Whether the response should go now: it is full, or the caller has
    /// heard nothing for a while.
    fn due(&self) -> bool {
        self.full() || self.sent.elapsed() >= PROGRESS_EVERY
    }

    /// Sends the response (with an empty one, the progress alone), and
    /// starts the next with the same totals.
    async fn send(&mut self) -> Result<(), Stop> {
        // Room first: a search stopped while it waits keeps the response.
        let permit = self.sender.reserve().await.map_err(|_| Stop::Gone)?;
        let next = pb::SearchRunsResponse {
            runs_searched: self.response.runs_searched,
            bytes_scanned: self.response.bytes_scanned,
            ..pb::SearchRunsResponse::default()
        };
        let response = std::mem::replace(&mut self.response, next);
        self.bytes = 0;
        self.sent = Instant::now();
        permit.send(Ok(response));
        Ok(())
    }
}

/// A hit as Protobuf.
fn to_match(key: &RunKey, hit: SearchHit) -> pb::SearchMatch {
    let line = |(seq, text): (u64, String)| pb::SearchLine { seq, text };
    pb::SearchMatch {
        task_id: key.task_id.clone(),
        run_id: key.run_id.clone(),
        seq: hit.seq,
        channel: to_channel(hit.channel).into(),
        created_at: hit.created_at,
        text: hit.text,
        spans: hit
            .spans
            .into_iter()
            .map(|(start, end)| pb::SearchSpan {
                start: start as u32,
                end: end as u32,
            })
            .collect(),
        before: hit.before.into_iter().map(line).collect(),
        after: hit.after.into_iter().map(line).collect(),
        joined: hit.joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `grpc-timeout` values in every unit, and nonsense ignored.
    #[test]
    fn reads_the_deadline() {
        let within = |value: &str, expected: Duration| {
            let mut metadata = MetadataMap::new();
            metadata.insert("grpc-timeout", value.parse().unwrap());
            let deadline = deadline_of(&metadata).unwrap();
            let left = deadline - Instant::now();
            assert!(
                left <= expected && left + Duration::from_secs(1) > expected,
                "{value}"
            );
        };
        within("5S", Duration::from_secs(5));
        within("1500m", Duration::from_millis(1500));
        within("2M", Duration::from_secs(120));
        let mut metadata = MetadataMap::new();
        metadata.insert("grpc-timeout", "soon".parse().unwrap());
        assert!(deadline_of(&metadata).is_none());
    }
}
