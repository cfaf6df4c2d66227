//! `baa-log grep`: searching runs' output on the server, printed like
//! `grep -H`: `task/run:seq: line` for a match, `task/run-seq- line` for a
//! line of context, `--` between groups that do not touch.

use std::{io::Write, time::Duration};

use anstyle::{AnsiColor, Style};
use baa_logging_client::{Client, ClientError, pb};
use clap::Args;
use serde_json::json;

use crate::{ChannelArg, parse_run, range::parse_time, run_ref::RunRef};

/// How the run name stands out, as grep shows file names.
const RUN: Style = AnsiColor::Magenta.on_default();
/// How sequence numbers stand out, as grep shows line numbers.
const SEQ: Style = AnsiColor::Green.on_default();
/// How the matched text stands out.
const MATCH: Style = AnsiColor::Red.on_default().bold();
/// How separators stand out.
const SEPARATOR: Style = AnsiColor::Cyan.on_default();

/// Arguments of `baa-log grep`.
#[derive(Debug, Args)]
pub(crate) struct GrepArgs {
    /// A regular expression (Rust `regex` syntax), or a literal with -F.
    pattern: String,
    /// Only this run, as TASK/RUN, TASK/@latest or TASK/@latest~N.
    /// Without it: every run of --task, or of every task.
    #[arg(value_parser = parse_run)]
    run: Option<RunRef>,
    /// Only this task's runs.
    #[arg(long, conflicts_with = "run")]
    task: Option<String>,
    /// Take PATTERN as a literal string.
    #[arg(short = 'F', long = "fixed-strings")]
    fixed_strings: bool,
    /// Ignore case.
    #[arg(short = 'i', long = "ignore-case")]
    ignore_case: bool,
    /// Lines of context before and after each match.
    #[arg(short = 'C', long, value_name = "N")]
    context: Option<u32>,
    /// Lines of context before each match.
    #[arg(short = 'B', long = "before-context", value_name = "N")]
    before: Option<u32>,
    /// Lines of context after each match.
    #[arg(short = 'A', long = "after-context", value_name = "N")]
    after: Option<u32>,
    /// Only this channel; repeat for several. Default: all three.
    #[arg(long = "channel", value_enum)]
    channels: Vec<ChannelArg>,
    /// Only output the server stored at or after this time: a duration ago
    /// (10m, 7d) or a time (2026-11-30T14:00:00Z, 2026-11-30 14:00).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    since: Option<std::time::SystemTime>,
    /// Only output the server stored at or before this time.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    until: Option<std::time::SystemTime>,
    /// Stop after this many matching lines (at most 100000; the server's
    /// default: 1000).
    #[arg(short = 'm', long = "max-count", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    max_count: Option<u32>,
    /// Give up after this long, e.g. 30s: the matches found by then are
    /// shown, and the exit code is 2, as for any error.
    #[arg(long, value_parser = humantime::parse_duration)]
    timeout: Option<Duration>,
    /// One match a line, as JSON, with its context.
    #[arg(long)]
    json: bool,
}

/// Searches; exits 0 when a line matched, 1 when none did (and 2 on an
/// error, as grep does: see `main`).
pub(crate) async fn grep(client: &Client, args: GrepArgs) -> Result<u8, ClientError> {
    let context = args.context.unwrap_or(0);
    let run = match &args.run {
        Some(run) => Some(run.resolve(client).await?),
        None => None,
    };
    let (task_id, run_id) = match (run, &args.task) {
        (Some(run), _) => (run.task_id, run.run_id),
        (None, Some(task)) => (task.clone(), String::new()),
        (None, None) => (String::new(), String::new()),
    };
    let request = pb::SearchRunsRequest {
        pattern: args.pattern.clone(),
        literal: args.fixed_strings,
        ignore_case: args.ignore_case,
        channels: args
            .channels
            .iter()
            .map(|channel| channel.to_pb() as i32)
            .collect(),
        task_id,
        run_id,
        since: args.since.map(Into::into),
        until: args.until.map(Into::into),
        before_context: args.before.unwrap_or(context),
        after_context: args.after.unwrap_or(context),
        max_matches: args.max_count.unwrap_or(0),
    };
    let with_context = request.before_context > 0 || request.after_context > 0;
    let mut responses = client.search(request, args.timeout).await?;
    let mut out = anstream::stdout().lock();
    let mut printer = Printer::default();
    let mut matched = false;
    let mut limit_reached = false;
    while let Some(response) = responses.message().await? {
        for skipped in &response.skipped {
            eprintln!(
                "baa-log: {}/{}: entries {} to {} are damaged and were not searched",
                skipped.task_id, skipped.run_id, skipped.first_seq, skipped.last_seq
            );
        }
        for found in response.matches {
            matched = true;
            let text = match args.json {
                true => format!("{}\n", match_json(&found)),
                false => printer.human(&found, with_context),
            };
            if out.write_all(text.as_bytes()).is_err() {
                return Ok(0);
            }
        }
        limit_reached |= response.limit_reached;
    }
    let _ = out.flush();
    if limit_reached {
        eprintln!("baa-log: stopped at the most matches asked for (--max-count)");
    }
    Ok(if matched { 0 } else { 1 })
}

/// Writes matches for people, with the separators context needs.
#[derive(Debug, Default)]
struct Printer {
    /// The run and channel of the last match printed: a match joined to
    /// it continues its group.
    last: Option<(String, i32)>,
}

impl Printer {
    /// A match and its context, as lines.
    fn human(&mut self, found: &pb::SearchMatch, with_context: bool) -> String {
        let run = format!("{}/{}", found.task_id, found.run_id);
        let mut text = String::new();
        if with_context {
            let same = self
                .last
                .as_ref()
                .is_some_and(|(last_run, channel)| *last_run == run && *channel == found.channel);
            if self.last.is_some() && !(found.joined && same) {
                text.push_str(&format!("{SEPARATOR}--{SEPARATOR:#}\n"));
            }
        }
        for line in &found.before {
            text.push_str(&context_line(&run, line));
        }
        text.push_str(&format!(
            "{RUN}{run}{RUN:#}{SEPARATOR}:{SEPARATOR:#}{SEQ}{}{SEQ:#}{SEPARATOR}:{SEPARATOR:#} {}\n",
            found.seq,
            highlighted(&found.text, &found.spans)
        ));
        for line in &found.after {
            text.push_str(&context_line(&run, line));
        }
        self.last = Some((run, found.channel));
        text
    }
}

/// A line of context.
fn context_line(run: &str, line: &pb::SearchLine) -> String {
    format!(
        "{RUN}{run}{RUN:#}{SEPARATOR}-{SEPARATOR:#}{SEQ}{}{SEQ:#}{SEPARATOR}-{SEPARATOR:#} {}\n",
        line.seq, line.text
    )
}

/// `text` with its matched spans highlighted.
fn highlighted(text: &str, spans: &[pb::SearchSpan]) -> String {
    let mut out = String::with_capacity(text.len() + spans.len() * 12);
    let mut at = 0;
    for span in spans {
        let (start, end) = (span.start as usize, span.end as usize);
        let (Some(before), Some(matched)) = (text.get(at..start), text.get(start..end)) else {
            continue;
        };
        out.push_str(before);
        out.push_str(&format!("{MATCH}{matched}{MATCH:#}"));
        at = end;
    }
    out.push_str(text.get(at..).unwrap_or_default());
    out
}

/// A match as JSON.
fn match_json(found: &pb::SearchMatch) -> serde_json::Value {
    let lines = |lines: &[pb::SearchLine]| {
        lines
            .iter()
            .map(|line| json!({ "seq": line.seq, "text": line.text }))
            .collect::<Vec<_>>()
    };
    let channel =
        pb::WorkerLogChannel::try_from(found.channel).map_or("unknown", |channel| match channel {
            pb::WorkerLogChannel::Worker => "worker",
            pb::WorkerLogChannel::Stdout => "stdout",
            pb::WorkerLogChannel::Stderr => "stderr",
            pb::WorkerLogChannel::Unspecified => "unknown",
        });
    json!({
        "taskId": found.task_id,
        "runId": found.run_id,
        "seq": found.seq,
        "channel": channel,
        "createdAt": found.created_at,
        "text": found.text,
        "spans": found.spans.iter().map(|span| [span.start, span.end]).collect::<Vec<_>>(),
        "before": lines(&found.before),
        "after": lines(&found.after),
        "joined": found.joined,
    })
}
