//! Writing entries, states and errors: for a person at a terminal (colour,
//! marks), for a pipe (plain text), and for programs (JSON in the
//! contracts' shape).

use anstyle::{AnsiColor, Style};
use baa_logging_client::{ClientError, FollowEvent, pb};
use serde_json::{Value as Json, json};
use tonic::Code;

use crate::Failure;

/// How lifecycle events are marked.
const WORKER: Style = AnsiColor::Cyan.on_default();
/// How error events and stderr stand out.
const ERROR: Style = AnsiColor::Red.on_default().bold();
/// How warnings stand out.
const WARN: Style = AnsiColor::Yellow.on_default();
/// How stderr text stands out.
const STDERR: Style = AnsiColor::Red.on_default();
/// How state changes are marked.
const STATE: Style = AnsiColor::Magenta.on_default().bold();

/// An event as text for a person. Output text is written as it is;
/// lifecycle events and states get a line of their own, marked. Styles are
/// stripped by the writer when it is not a terminal.
///
/// `at_line_start` says whether the text written so far ends a line; see
/// [`ends_line`].
pub(crate) fn human(event: &FollowEvent, at_line_start: bool) -> String {
    let newline = if at_line_start { "" } else { "\n" };
    match event {
        FollowEvent::Stdout(chunk) => chunk.text.clone(),
        FollowEvent::Stderr(chunk) => format!("{STDERR}{}{STDERR:#}", chunk.text),
        FollowEvent::Lifecycle(entry) => {
            let style = match entry.level() {
                pb::LogLevel::Error => ERROR,
                pb::LogLevel::Warn => WARN,
                _ => WORKER,
            };
            format!("{newline}{style}» {}{style:#}\n", entry.rendered_line)
        }
        FollowEvent::State(state) => format!(
            "{newline}{STATE}» run is {}{}{STATE:#}\n",
            status_name(state.status()),
            state
                .exit_code
                .map(|code| format!(" (exit code {code})"))
                .unwrap_or_default()
        ),
    }
}

/// Whether the terminal is at the start of a line after `event`, given
/// whether it was before.
pub(crate) fn ends_line(event: &FollowEvent, at_line_start: bool) -> bool {
    match event {
        FollowEvent::Stdout(chunk) | FollowEvent::Stderr(chunk) if chunk.text.is_empty() => {
            at_line_start
        }
        FollowEvent::Stdout(chunk) | FollowEvent::Stderr(chunk) => chunk.text.ends_with('\n'),
        FollowEvent::Lifecycle(_) | FollowEvent::State(_) => true,
    }
}

/// An entry in the contracts' JSON shape, as stored in the run's files;
/// `None` for a state change.
pub(crate) fn entry_json(event: &FollowEvent) -> Option<Json> {
    Some(match event {
        FollowEvent::Lifecycle(entry) => json!({
            "taskId": entry.task_id,
            "stepId": entry.step_id,
            "runId": entry.run_id,
            "seq": entry.seq,
            "channel": "worker",
            "eventId": entry.event_id,
            "type": event_type_name(entry.r#type()),
            "level": level_name(entry.level()),
            "createdAt": entry.created_at,
            "message": entry.message,
            "data": entry
                .data
                .clone()
                .and_then(|data| baa_logging_client::json::from_struct(data).ok())
                .map_or(json!({}), Json::Object),
            "renderedLine": entry.rendered_line,
        }),
        FollowEvent::Stdout(chunk) | FollowEvent::Stderr(chunk) => json!({
            "taskId": chunk.task_id,
            "stepId": chunk.step_id,
            "runId": chunk.run_id,
            "seq": chunk.seq,
            "channel": if matches!(event, FollowEvent::Stderr(_)) { "stderr" } else { "stdout" },
            "createdAt": chunk.created_at,
            "text": chunk.text,
        }),
        FollowEvent::State(_) => return None,
    })
}

/// A run status as the contracts write it.
pub(crate) fn status_name(status: pb::RunStatus) -> &'static str {
    match status {
        pb::RunStatus::Unspecified => "unspecified",
        pb::RunStatus::Prepared => "prepared",
        pb::RunStatus::Running => "running",
        pb::RunStatus::Completed => "completed",
        pb::RunStatus::Failed => "failed",
        pb::RunStatus::Blocked => "blocked",
    }
}

/// A level as the contracts write it.
fn level_name(level: pb::LogLevel) -> &'static str {
    match level {
        pb::LogLevel::Unspecified => "unspecified",
        pb::LogLevel::Debug => "debug",
        pb::LogLevel::Info => "info",
        pb::LogLevel::Warn => "warn",
        pb::LogLevel::Error => "error",
    }
}

/// An event type as the contracts write it: the Protobuf name without its
/// prefix, in lower case (`WORKER_LIFECYCLE_EVENT_TYPE_WORKER_STARTED` is
/// `worker_started`).
fn event_type_name(event_type: pb::WorkerLifecycleEventType) -> String {
    event_type
        .as_str_name()
        .trim_start_matches("WORKER_LIFECYCLE_EVENT_TYPE_")
        .to_ascii_lowercase()
}

/// How long ago an RFC 3339 time was, in its largest unit: `42s`, `5m`,
/// `3h`, `2d`.
pub(crate) fn age(time: &str) -> String {
    let Ok(then) = chrono::DateTime::parse_from_rfc3339(time) else {
        return "?".into();
    };
    let seconds = (chrono::Utc::now() - then.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m", seconds / 60),
        3600..86400 => format!("{}h", seconds / 3600),
        _ => format!("{}d", seconds / 86400),
    }
}

/// What a TLS failure in `causes` means, in words, and what to do; `None`
/// for other failures.
fn tls_advice(causes: &str) -> Option<String> {
    if causes.contains("InvalidContentType") {
        return Some(
            "the server there does not speak TLS; use http://HOST:PORT (or HOST:PORT) without \
             --ca-file"
                .into(),
        );
    }
    if causes.contains("CaUsedAsEndEntity") {
        return Some(
            "the server's certificate is a CA certificate, which TLS does not accept as a \
             server's own (plain `openssl req -x509` makes one); make a CA, then a server \
             certificate signed by it, and give the CA with --ca-file (see \
             docs/configuration.md, \"A certificate for testing\")"
                .into(),
        );
    }
    if causes.contains("UnknownIssuer") {
        return Some(
            "the server's certificate is not signed by a CA this client trusts; give its CA \
             with --ca-file"
                .into(),
        );
    }
    None
}

/// A client error as one line that says what failed and what to try.
pub(crate) fn explain(server: &str, err: ClientError) -> Failure {
    let message = match &err {
        ClientError::Connect { source, .. } => {
            let causes = causes(source);
            match tls_advice(&causes) {
                Some(advice) => format!("cannot reach baa-logd at {server} over TLS: {advice}"),
                None => format!(
                    "cannot reach baa-logd at {server}: {causes}; is it running? Point --server or BAA_LOG_SERVER at it"
                ),
            }
        }
        ClientError::Unreachable { attempts } => {
            let each: Vec<String> = attempts
                .iter()
                .map(|attempt| match attempt {
                    ClientError::Connect { address, source } => {
                        let causes = causes(source);
                        match tls_advice(&causes) {
                            Some(advice) => format!("{address} over TLS: {advice}"),
                            None => format!("{address}: {causes}"),
                        }
                    }
                    other => other.to_string(),
                })
                .collect();
            format!(
                "cannot reach baa-logd at any of {server}: {}; is it running? Point --server or BAA_LOG_SERVER at it",
                each.join("; ")
            )
        }
        ClientError::InvalidAddress { .. } => format!(
            "{err}; --server takes an address like 127.0.0.1:50051, http://127.0.0.1:50051 or https://logs.example:50051, or several separated by commas"
        ),
        ClientError::Status(status) => {
            let hint = match status.code() {
                Code::Unavailable | Code::Unknown => {
                    format!(
                        "; is baa-logd running at {server}? Point --server or BAA_LOG_SERVER at it"
                    )
                }
                Code::NotFound => "; `baa-log runs` lists the runs there are".into(),
                Code::Unauthenticated => "; give a token with --token or BAA_LOG_TOKEN".into(),
                Code::PermissionDenied => "; the token lacks the scope this needs".into(),
                _ => String::new(),
            };
            format!(
                "{} ({}){hint}",
                first_line(status.message()),
                code_name(status.code())
            )
        }
        _ => err.to_string(),
    };
    Failure::new(message)
}

/// An error and its causes, joined on one line.
fn causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The first line of a message, so that every failure is one line.
fn first_line(message: &str) -> &str {
    message.lines().next().unwrap_or("")
}

/// A status code as gRPC names it.
fn code_name(code: Code) -> String {
    format!("{code:?}")
        .chars()
        .enumerate()
        .flat_map(|(index, c)| {
            let sep = (index > 0 && c.is_ascii_uppercase()).then_some('_');
            sep.into_iter()
                .chain(std::iter::once(c.to_ascii_uppercase()))
        })
        .collect()
}
