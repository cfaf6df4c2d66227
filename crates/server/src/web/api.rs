//! The page's JSON routes: runs, a run, a page of a run's entries, and a
//! search in a run. Each is one call to the logging service's handler,
//! made for the reader's token.

use std::collections::VecDeque;

use axum::{
    Json,
    extract::{Path, RawQuery, State},
};
use baa_logging::{pb, pb_server::logging_service_server::LoggingService};
use baa_logging_store::RunStore;
use futures::StreamExt;
use serde_json::{Value, json};

use super::{Page, json, problem::Problem, session::Reader};

/// The most entries a page of `/entries` holds, and how many when the
/// request does not say.
const MAX_PAGE_ENTRIES: usize = 20_000;
/// How many entries a page of `/entries` holds when the request does not
/// say.
const DEFAULT_PAGE_ENTRIES: usize = 5_000;
/// About the most bytes of text a page of `/entries` holds.
const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;
/// The most matches a search returns, and how many when not said.
const MAX_MATCHES: u32 = 1_000;

/// A query string's parameters, in order, repeated keys kept.
#[derive(Debug, Default)]
pub(super) struct Params(Vec<(String, String)>);

impl Params {
    /// The parameters of `query`.
    pub(super) fn parse(query: Option<&str>) -> Self {
        Self(
            form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                .into_owned()
                .collect(),
        )
    }

    /// The last value of `key`, when given and not empty.
    pub(super) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(name, value)| name == key && !value.is_empty())
            .map(|(_, value)| value.as_str())
    }

    /// Every value of `key`; a value may also list several, comma-separated.
    pub(super) fn all(&self, key: &str) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(move |(name, _)| name == key)
            .flat_map(|(_, value)| value.split(','))
            .filter(|value| !value.is_empty())
    }

    /// `key` as a number, when given.
    pub(super) fn number<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, Problem> {
        self.get(key)
            .map(|value| {
                value
                    .parse()
                    .map_err(|_| Problem::invalid(format!("{key}: {value:?} is not a number")))
            })
            .transpose()
    }

    /// `key` as a flag: `1`, `true`, `yes` or `on`.
    pub(super) fn flag(&self, key: &str) -> bool {
        self.get(key)
            .is_some_and(|value| matches!(value, "1" | "true" | "yes" | "on"))
    }

    /// The channels `channel` names; empty: all three.
    pub(super) fn channels(&self) -> Result<Vec<i32>, Problem> {
        self.all("channel")
            .map(|name| {
                json::channel_by_name(name)
                    .map(|channel| channel as i32)
                    .ok_or_else(|| {
                        Problem::invalid(format!(
                            "channel: {name:?} is none of stdout, stderr, worker"
                        ))
                    })
            })
            .collect()
    }
}

/// `GET /api/runs?task=&status=&page_size=&page_token=`: a page of runs,
/// newest first.
pub(super) async fn list<S: RunStore>(
    State(page): State<Page<S>>,
    reader: Reader,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, Problem> {
    let params = Params::parse(query.as_deref());
    let statuses = params
        .all("status")
        .map(|name| {
            json::status_by_name(name)
                .map(|status| status as i32)
                .ok_or_else(|| {
                    Problem::invalid(format!(
                        "status: {name:?} is none of prepared, running, completed, failed, blocked"
                    ))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let request = pb::ListRunsRequest {
        task_id: params.get("task").unwrap_or_default().to_owned(),
        statuses,
        page_size: params.number("page_size")?.unwrap_or(100),
        page_token: params.get("page_token").unwrap_or_default().to_owned(),
    };
    let page_of_runs = match reader.tasks() {
        // A token limited to some tasks cannot list every task; the page
        // lists what it may read instead.
        Some(limit) if request.task_id.is_empty() => {
            let limit = limit.clone();
            list_allowed(&page, &reader, request, |task_id| limit.allows(task_id)).await?
        }
        _ => page
            .service
            .list_runs(reader.request(request))
            .await?
            .into_inner(),
    };
    Ok(Json(json!({
        "runs": page_of_runs.runs.iter().map(json::run).collect::<Vec<_>>(),
        "nextPageToken": page_of_runs.next_page_token,
    })))
}

/// How many pages of every task's runs one listing for a task-limited
/// token reads at most, looking for runs it may read.
const MAX_SCANNED_PAGES: usize = 20;

/// A page of the runs of every task that `allows`, for a token limited to
/// some tasks: pages of all runs, filtered, until `page_size` runs are
/// found, the runs end, or [`MAX_SCANNED_PAGES`] were read.
///
/// The page token it returns always points just after a run the token may
/// read (the store's tokens name the last run of a page), never at another
/// task's run; a listing that finds no run it may read in its pages ends.
async fn list_allowed<S: RunStore>(
    page: &Page<S>,
    reader: &Reader,
    mut request: pb::ListRunsRequest,
    allows: impl Fn(&str) -> bool,
) -> Result<pb::ListRunsResponse, Problem> {
    let wanted = match request.page_size {
        0 => 50,
        size => size.min(500) as usize,
    };
    let allowed = |run: &pb::Run| {
        run.metadata
            .as_ref()
            .is_some_and(|metadata| allows(&metadata.task_id))
    };
    let mut found = Vec::new();
    // Where the last run taken is: the page's start token and its index.
    let mut last_taken: Option<(String, usize)> = None;
    let mut ended = false;
    for _ in 0..MAX_SCANNED_PAGES {
        let start = request.page_token.clone();
        let listed = page
            .service
            .list_runs(reader.request_unlimited(request.clone()))
            .await?
            .into_inner();
        for (index, run) in listed.runs.into_iter().enumerate() {
            if found.len() < wanted && allowed(&run) {
                found.push(run);
                last_taken = Some((start.clone(), index));
            }
        }
        ended = listed.next_page_token.is_empty();
        if found.len() >= wanted || ended {
            break;
        }
        request.page_token = listed.next_page_token;
    }
    // The runs ended with the last one taken: nothing more to list.
    let next_page_token = match (&last_taken, ended && found.len() < wanted) {
        (Some((start, index)), false) => {
            let after = pb::ListRunsRequest {
                page_token: start.clone(),
                page_size: u32::try_from(index + 1).unwrap_or(u32::MAX),
                ..request
            };
            page.service
                .list_runs(reader.request_unlimited(after))
                .await?
                .into_inner()
                .next_page_token
        }
        _ => String::new(),
    };
    Ok(pb::ListRunsResponse {
        runs: found,
        next_page_token,
    })
}

/// `GET /api/runs/{task}/{run}`: a run.
pub(super) async fn run<S: RunStore>(
    State(page): State<Page<S>>,
    reader: Reader,
    Path((task_id, run_id)): Path<(String, String)>,
) -> Result<Json<Value>, Problem> {
    let request = pb::GetRunRequest { task_id, run_id };
    let response = page
        .service
        .get_run(reader.request(request))
        .await?
        .into_inner();
    Ok(Json(response.run.as_ref().map_or(Value::Null, json::run)))
}

/// `GET /api/runs/{task}/{run}/entries?from_seq=&to_seq=&tail=&limit=`: a
/// page of stored entries of all three channels, with the run's state.
///
/// A page holds at most `limit` entries and about [`MAX_PAGE_BYTES`] of
/// text. From the front (`from_seq`), `more` says the page was cut and
/// `nextSeq` where to go on. With `tail`, the page is the last entries of
/// the range that fit: fewer than `tail` when they are large, so that a
/// tail is never cut from its end. `continues` says, for stdout and stderr,
/// whether a line of that channel was left open just before the page's
/// first entry, so that the page can tell a line's continuation from its
/// start.
pub(super) async fn entries<S: RunStore>(
    State(page): State<Page<S>>,
    reader: Reader,
    Path((task_id, run_id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, Problem> {
    let params = Params::parse(query.as_deref());
    let limit = params
        .number::<usize>("limit")?
        .unwrap_or(DEFAULT_PAGE_ENTRIES)
        .clamp(1, MAX_PAGE_ENTRIES);
    let tail = params
        .number::<u64>("tail")?
        .map(|tail| tail.min(limit as u64));
    let request = pb::FollowRunRequest {
        task_id: task_id.clone(),
        run_id: run_id.clone(),
        from_seq: params.number("from_seq")?.unwrap_or(0),
        to_seq: params.number("to_seq")?.unwrap_or(0),
        tail,
        history_only: true,
        ..Default::default()
    };
    let mut next_seq = request.from_seq.max(1);
    let mut stream = page
        .service
        .follow_messages(reader.request(request))
        .await?
        .into_inner();
    let mut kept: VecDeque<(pb::LogEntry, usize)> = VecDeque::new();
    let (mut bytes, mut state, mut more) = (0, None, false);
    'batches: while let Some(batch) = stream.next().await {
        let batch = batch?;
        if let Some(snapshot) = &batch.state {
            state = Some(json::state(snapshot));
        }
        for entry in batch.entries {
            let Some(seq) = json::seq_of(&entry) else {
                continue;
            };
            if tail.is_none() && (kept.len() >= limit || bytes >= MAX_PAGE_BYTES) {
                more = true;
                break 'batches;
            }
            let size = entry_text_len(&entry);
            bytes += size;
            kept.push_back((entry, size));
            next_seq = seq + 1;
            // A tail keeps its last entries: drop from the front.
            while tail.is_some() && bytes > MAX_PAGE_BYTES && kept.len() > 1 {
                let (_, size) = kept.pop_front().expect("more than one");
                bytes -= size;
            }
        }
        next_seq = next_seq.max(batch.next_seq);
    }
    let first_seq = kept
        .front()
        .and_then(|(entry, _)| json::seq_of(entry))
        .unwrap_or(next_seq);
    let continues = open_lines_before(&page, &reader, task_id, run_id, first_seq).await?;
    let entries: Vec<Value> = kept
        .iter()
        .filter_map(|(entry, _)| json::entry(entry))
        .collect();
    Ok(Json(json!({
        "entries": entries,
        "nextSeq": next_seq,
        "state": state,
        "more": more,
        "continues": continues,
    })))
}

/// How many entries before a page are looked at for a line left open.
const OPEN_LINE_LOOKBACK: u64 = 2_000;

/// For stdout and stderr, whether the channel's last chunk before entry
/// `first_seq` left a line open (did not end in a newline), looking at most
/// [`OPEN_LINE_LOOKBACK`] entries back: a channel silent for longer is
/// taken to start a line.
async fn open_lines_before<S: RunStore>(
    page: &Page<S>,
    reader: &Reader,
    task_id: String,
    run_id: String,
    first_seq: u64,
) -> Result<Value, Problem> {
    let mut open = json!({"stdout": false, "stderr": false});
    if first_seq <= 1 {
        return Ok(open);
    }
    let request = pb::FollowRunRequest {
        task_id,
        run_id,
        from_seq: first_seq.saturating_sub(OPEN_LINE_LOOKBACK).max(1),
        to_seq: first_seq - 1,
        channels: vec![
            pb::WorkerLogChannel::Stdout as i32,
            pb::WorkerLogChannel::Stderr as i32,
        ],
        history_only: true,
        ..Default::default()
    };
    let mut stream = page
        .service
        .follow_messages(reader.request(request))
        .await?
        .into_inner();
    while let Some(batch) = stream.next().await {
        for entry in batch?.entries {
            if let Some(pb::log_entry::Entry::Chunk(chunk)) = entry.entry {
                let channel = match chunk.channel() {
                    pb::StreamLogChannel::Stderr => "stderr",
                    _ => "stdout",
                };
                if !chunk.text.is_empty() {
                    open[channel] = json!(!chunk.text.ends_with('\n'));
                }
            }
        }
    }
    Ok(open)
}

/// About how many bytes an entry's text takes.
fn entry_text_len(entry: &pb::LogEntry) -> usize {
    match &entry.entry {
        Some(pb::log_entry::Entry::Chunk(chunk)) => chunk.text.len() + 64,
        Some(pb::log_entry::Entry::Lifecycle(event)) => {
            event.rendered_line.len() + event.message.len() + 128
        }
        None => 0,
    }
}

/// `GET /api/runs/{task}/{run}/search?q=&literal=&ignore_case=&channel=&max=`:
/// the lines of the run that match, through the server's search, with
/// spans in UTF-16 code units.
pub(super) async fn search<S: RunStore>(
    State(page): State<Page<S>>,
    reader: Reader,
    Path((task_id, run_id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, Problem> {
    let params = Params::parse(query.as_deref());
    let pattern = params
        .get("q")
        .ok_or_else(|| Problem::invalid("q: say what to search for"))?;
    let request = pb::SearchRunsRequest {
        pattern: pattern.to_owned(),
        literal: params.flag("literal"),
        ignore_case: params.flag("ignore_case"),
        channels: params.channels()?,
        task_id,
        run_id,
        max_matches: params
            .number::<u32>("max")?
            .unwrap_or(MAX_MATCHES)
            .clamp(1, MAX_MATCHES),
        ..Default::default()
    };
    let mut stream = page
        .service
        .search_runs(reader.request(request))
        .await?
        .into_inner();
    let (mut matches, mut skipped, mut limit_reached) = (Vec::new(), Vec::new(), false);
    let mut bytes = 0;
    'responses: while let Some(response) = stream.next().await {
        let response = response?;
        limit_reached |= response.limit_reached;
        for found in &response.matches {
            // Matching lines may be long: the answer stays a few MiB.
            if bytes >= MAX_PAGE_BYTES {
                limit_reached = true;
                break 'responses;
            }
            bytes += found.text.len() + 64;
            matches.push(json!({
                "seq": found.seq,
                "channel": json::channel_name(found.channel()),
                "createdAt": found.created_at,
                "text": found.text,
                "spans": json::utf16_spans(&found.text, &found.spans),
            }));
        }
        for range in &response.skipped {
            skipped.push(json!({"firstSeq": range.first_seq, "lastSeq": range.last_seq}));
        }
    }
    Ok(Json(json!({
        "matches": matches,
        "skipped": skipped,
        "limitReached": limit_reached,
    })))
}
