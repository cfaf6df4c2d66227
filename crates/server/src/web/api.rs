//! The page's JSON routes: runs, a run, a page of a run's entries, and a
//! search in a run. Each is one call to the logging service's handler,
//! made for the reader's token.

use axum::{
    Json,
    extract::{Path, RawQuery, State},
};
use baa_logging::pb::{self, logging_service_server::LoggingService};
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
            list_allowed(&page, request, |task_id| limit.allows(task_id)).await?
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
/// found, the runs end, or [`MAX_SCANNED_PAGES`] were read (the page then
/// ends early, with a token to go on).
async fn list_allowed<S: RunStore>(
    page: &Page<S>,
    mut request: pb::ListRunsRequest,
    allows: impl Fn(&str) -> bool,
) -> Result<pb::ListRunsResponse, Problem> {
    let wanted = match request.page_size {
        0 => 50,
        size => size.min(500) as usize,
    };
    let mut found = pb::ListRunsResponse::default();
    for _ in 0..MAX_SCANNED_PAGES {
        // Not as the reader: the filter below is the task check.
        let listed = page
            .service
            .list_runs(tonic::Request::new(request.clone()))
            .await?
            .into_inner();
        found.runs.extend(listed.runs.into_iter().filter(|run| {
            run.metadata
                .as_ref()
                .is_some_and(|metadata| allows(&metadata.task_id))
        }));
        found.next_page_token = listed.next_page_token;
        if found.runs.len() >= wanted || found.next_page_token.is_empty() {
            break;
        }
        request.page_token = found.next_page_token.clone();
    }
    Ok(found)
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
/// `more` says the page was cut by `limit` or its byte bound, and
/// `nextSeq` where to go on.
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
    let request = pb::FollowRunRequest {
        task_id,
        run_id,
        from_seq: params.number("from_seq")?.unwrap_or(0),
        to_seq: params.number("to_seq")?.unwrap_or(0),
        tail: params.number("tail")?,
        history_only: true,
        ..Default::default()
    };
    let mut from_seq = request.from_seq.max(1);
    let mut stream = page
        .service
        .follow_run(reader.request(request))
        .await?
        .into_inner();
    let (mut entries, mut bytes, mut state, mut more) = (Vec::new(), 0, None, false);
    'batches: while let Some(batch) = stream.next().await {
        let batch = batch?;
        if let Some(snapshot) = &batch.state {
            state = Some(json::state(snapshot));
        }
        for entry in &batch.entries {
            if entries.len() >= limit || bytes >= MAX_PAGE_BYTES {
                more = true;
                break 'batches;
            }
            let Some(value) = json::entry(entry) else {
                continue;
            };
            bytes += entry_text_len(entry);
            entries.push(value);
            from_seq = json::seq_of(entry).map_or(from_seq, |seq| seq + 1);
        }
        from_seq = from_seq.max(batch.next_seq);
    }
    Ok(Json(json!({
        "entries": entries,
        "nextSeq": from_seq,
        "state": state,
        "more": more,
    })))
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
    while let Some(response) = stream.next().await {
        let response = response?;
        limit_reached |= response.limit_reached;
        for found in &response.matches {
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
