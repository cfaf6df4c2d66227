//! `GET /api/runs/{task}/{run}/follow`: a run's entries as server-sent
//! events, history then live, over `FollowRun`.
//!
//! Each `entries` event's id is the last sequence number it covers, so a
//! browser that reconnects (EventSource does it by itself, sending
//! `Last-Event-ID`) resumes at the next one: no gap and no duplicate,
//! across a dropped connection or a server restart. Events:
//!
//! - `state`: the run's state, first and whenever it changes;
//! - `entries`: `{"entries": [...], "nextSeq": N}`, id `N - 1`;
//! - `end`: the run is finished and everything was sent; the page closes
//!   the stream (an EventSource would reconnect otherwise);
//! - `failure`: `{"error", "code"}`, then the stream ends. A server that
//!   shuts down ends streams without one, so that browsers reconnect.

use std::convert::Infallible;

use axum::{
    extract::{Path, RawQuery, State},
    http::{HeaderMap, HeaderValue, header},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use baa_logging::pb;
use baa_logging_store::RunStore;
use futures::{Stream, StreamExt, stream};
use serde_json::json;
use tonic::Code;

use super::{
    Page, json,
    problem::{Problem, code_name},
    session::Reader,
};

/// How long a browser waits before it reconnects, in milliseconds.
const RETRY_MS: u64 = 1_000;

/// The event stream, from `Last-Event-ID` + 1 when the browser resumes,
/// else from `from_seq`.
pub(super) async fn follow<S: RunStore>(
    State(page): State<Page<S>>,
    reader: Reader,
    Path((task_id, run_id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let params = super::api::Params::parse(query.as_deref());
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .filter(|value| !value.is_empty())
        .map(|value| {
            value.trim().parse::<u64>().map_err(|_| {
                Problem::invalid(format!("Last-Event-ID: {value:?} is not a sequence number"))
            })
        })
        .transpose()?;
    let from_seq = match last_event_id {
        Some(last) => last
            .checked_add(1)
            .ok_or_else(|| Problem::invalid("Last-Event-ID: past the last sequence number"))?,
        None => params.number("from_seq")?.unwrap_or(0),
    };
    let request = pb::FollowRunRequest {
        task_id,
        run_id,
        from_seq,
        channels: params.channels()?,
        ..Default::default()
    };
    // Opening the stream checks the run and the reader before the
    // response starts, so a missing run is a plain 404 the page can read.
    let responses = page
        .service
        .follow_messages(reader.request(request))
        .await?
        .into_inner();
    let events = events(responses);
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(page.keep_alive))
        .into_response();
    // Proxies that buffer responses (nginx) must pass events on at once.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The events for `responses`: `retry` first, then one event per state and
/// entry batch, then `end` when the run ended, `failure` on an error, or
/// nothing when the server shuts down (so that the browser reconnects to
/// the server that comes back).
fn events(
    responses: impl Stream<Item = Result<pb::FollowRunResponse, tonic::Status>> + Send + 'static,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    let retry = Event::default()
        .retry(std::time::Duration::from_millis(RETRY_MS))
        .comment("baa-logd");
    let start = (Box::pin(responses), 0_u64, false);
    let body = stream::unfold(start, |(mut responses, mut next_seq, done)| async move {
        if done {
            return None;
        }
        let events = match responses.next().await {
            Some(Ok(response)) => {
                next_seq = next_seq.max(response.next_seq);
                return Some((batch_events(&response), (responses, next_seq, false)));
            }
            None => Event::default()
                .event("end")
                .data(json!({"nextSeq": next_seq}).to_string()),
            Some(Err(status)) if status.code() == Code::Unavailable => return None,
            Some(Err(status)) => Event::default().event("failure").data(
                json!({"error": status.message(), "code": code_name(status.code())}).to_string(),
            ),
        };
        Some((vec![events], (responses, next_seq, true)))
    });
    stream::once(async { retry })
        .chain(body.flat_map(stream::iter))
        .map(Ok)
}

/// The events of one `FollowRun` response.
fn batch_events(response: &pb::FollowRunResponse) -> Vec<Event> {
    let mut events = Vec::with_capacity(2);
    if let Some(state) = &response.state {
        events.push(
            Event::default()
                .event("state")
                .data(json::state(state).to_string()),
        );
    }
    let entries: Vec<_> = response.entries.iter().filter_map(json::entry).collect();
    if !entries.is_empty() {
        events.push(
            Event::default()
                .event("entries")
                .id(response.next_seq.saturating_sub(1).to_string())
                .data(json!({"entries": entries, "nextSeq": response.next_seq}).to_string()),
        );
    }
    events
}
