//! `GET /runs/{task}/{run}/raw?channel=&from_seq=`: a run's stored output
//! as plain text, streamed, exactly as `baa-log cat` prints it: chunks as
//! the program wrote them, lifecycle events (with `channel=worker`) as
//! their rendered line. Stdout and stderr unless `channel` says otherwise.
//!
//! A failure after the first byte (damage found on the way) aborts the
//! response, so that a download is never silently cut short.

use axum::{
    body::{Body, Bytes},
    extract::{Path, RawQuery, State},
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use baa_logging::pb;
use baa_logging_store::RunStore;
use futures::StreamExt;

use super::{Page, api::Params, json, problem::Problem, session::Reader};

/// The stored output, as a download.
pub(super) async fn raw<S: RunStore>(
    State(page): State<Page<S>>,
    reader: Reader,
    Path((task_id, run_id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response, Problem> {
    let params = Params::parse(query.as_deref());
    let mut channels = params.channels()?;
    let named: Vec<&str> = params.all("channel").collect();
    if channels.is_empty() {
        channels = vec![
            pb::WorkerLogChannel::Stdout as i32,
            pb::WorkerLogChannel::Stderr as i32,
        ];
    }
    let filename = file_name(&task_id, &run_id, &named);
    let request = pb::FollowRunRequest {
        task_id,
        run_id,
        from_seq: params.number("from_seq")?.unwrap_or(0),
        channels,
        history_only: true,
        ..Default::default()
    };
    let responses = page
        .service
        .follow_messages(reader.request(request))
        .await?
        .into_inner();
    let text = responses.map(|response| {
        response
            .map(|response| Bytes::from(text_of(&response)))
            .map_err(|status| std::io::Error::other(status.message().to_owned()))
    });
    let disposition = format!(
        "attachment; filename=\"{}\"; filename*=UTF-8''{}",
        ascii_name(&filename),
        percent_encode(&filename)
    );
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&disposition).map_err(|_| Problem::invalid("file name"))?,
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        Body::from_stream(text),
    )
        .into_response())
}

/// The text of one batch, as `baa-log cat` prints it.
fn text_of(response: &pb::FollowRunResponse) -> String {
    let mut text = String::new();
    for entry in &response.entries {
        match &entry.entry {
            Some(pb::log_entry::Entry::Chunk(chunk)) => text.push_str(&chunk.text),
            Some(pb::log_entry::Entry::Lifecycle(event)) => {
                text.push_str(&event.rendered_line);
                text.push('\n');
            }
            None => {}
        }
    }
    text
}

/// `TASK-RUN.log`, or `TASK-RUN.CHANNELS.log` for a channel filter.
fn file_name(task_id: &str, run_id: &str, channels: &[&str]) -> String {
    let channels: Vec<&str> = channels
        .iter()
        .copied()
        .filter(|name| json::channel_by_name(name).is_some())
        .collect();
    match channels.is_empty() {
        true => format!("{task_id}-{run_id}.log"),
        false => format!("{task_id}-{run_id}.{}.log", channels.join("+")),
    }
}

/// `name` with every character but ASCII letters, digits, `.`, `-`, `_`
/// and `+` replaced by `_`: the fallback `filename` of old browsers, which
/// can never break out of its quotes.
pub(super) fn ascii_name(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' | '+' => c,
            _ => '_',
        })
        .collect()
}

/// `name` percent-encoded for `filename*` (RFC 8187).
pub(super) fn percent_encode(name: &str) -> String {
    let mut encoded = String::new();
    for byte in name.bytes() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_' => {
                encoded.push(char::from(byte));
            }
            _ => encoded.push_str(&format!("%{byte:02X}")),
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_cannot_break_the_header() {
        let name = file_name("a\"b", "r;1", &["stdout"]);
        assert_eq!(ascii_name(&name), "a_b-r_1.stdout.log");
        assert_eq!(percent_encode("é\""), "%C3%A9%22");
    }
}
