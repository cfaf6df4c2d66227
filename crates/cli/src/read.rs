//! `baa-log follow` and `baa-log cat`: a run's entries, live or stored.

use std::io::Write;

use baa_logging_client::{Client, ClientError, FollowEvent, FollowOptions, RunKey, pb};
use clap::Args;
use futures::StreamExt;

use crate::{
    ChannelArg, parse_run,
    prefix::PrefixArgs,
    range::{RangeArgs, last_lines},
    render,
    run_ref::RunRef,
    wait,
};

/// Arguments of `baa-log follow`.
#[derive(Debug, Args)]
pub(crate) struct FollowArgs {
    /// The run, as TASK/RUN, TASK/@latest or TASK/@latest~N.
    #[arg(value_parser = parse_run)]
    run: RunRef,
    /// If the run is not prepared yet, wait until it is (for TASK/@latest,
    /// until the task has a run) instead of failing.
    #[arg(long)]
    wait: bool,
    /// Exit with the run's outcome once it ends: 0 completed, 3 failed,
    /// 4 blocked (1 stays baa-log's own error, 2 a usage error). A follow
    /// that stops before the run ends (--to-seq, --until) exits 0, or with
    /// the outcome if the run had ended by then.
    #[arg(long)]
    exit_status: bool,
    /// Only this channel; repeat for several.
    #[arg(long = "channel", value_enum)]
    channels: Vec<ChannelArg>,
    /// One entry a line, as JSON in the contracts' shape.
    #[arg(long)]
    json: bool,
    /// What goes in front of every line.
    #[command(flatten)]
    prefix: PrefixArgs,
    /// Which part of the run.
    #[command(flatten)]
    range: RangeArgs,
}

/// Arguments of `baa-log cat`.
#[derive(Debug, Args)]
pub(crate) struct CatArgs {
    /// The run, as TASK/RUN, TASK/@latest or TASK/@latest~N.
    #[arg(value_parser = parse_run)]
    run: RunRef,
    /// Only this channel; repeat for several. Default: stdout and stderr.
    #[arg(long = "channel", value_enum)]
    channels: Vec<ChannelArg>,
    /// What goes in front of every line.
    #[command(flatten)]
    prefix: PrefixArgs,
    /// Which part of the run.
    #[command(flatten)]
    range: RangeArgs,
}

/// Follows a run until it ends (or the range does).
pub(crate) async fn follow(client: &Client, args: FollowArgs) -> Result<u8, ClientError> {
    let run = match args.wait {
        true => wait::until_prepared(client, &args.run).await?,
        false => args.run.resolve(client).await?,
    };
    let base = FollowOptions {
        channels: args
            .channels
            .iter()
            .map(|channel| channel.to_pb())
            .collect(),
        ..FollowOptions::default()
    };
    let mut printer = Printer::new(
        if args.json { Style::Json } else { Style::Human },
        args.prefix,
    );
    let live = match args.range.tail {
        Some(lines) => {
            let tail = tail(client, &run, &args.range, base, lines, true).await?;
            if !printer.print_tail(tail.history, tail.failed)? {
                return Ok(0);
            }
            tail.next
        }
        None => Some(args.range.options(base)),
    };
    if let Some(options) = live {
        let mut events = client.follow(run, options);
        while let Some(event) = events.next().await {
            if !printer.print(event?) {
                return Ok(0);
            }
        }
    }
    let outcome = printer.finish();
    Ok(match (args.exit_status, outcome) {
        (true, Some(pb::RunStatus::Failed)) => EXIT_FAILED,
        (true, Some(pb::RunStatus::Blocked)) => EXIT_BLOCKED,
        _ => 0,
    })
}

/// `follow --exit-status`'s code for a run that ended `failed`.
pub(crate) const EXIT_FAILED: u8 = 3;

/// `follow --exit-status`'s code for a run that ended `blocked`.
pub(crate) const EXIT_BLOCKED: u8 = 4;

/// Prints a run's stored output.
pub(crate) async fn cat(client: &Client, args: CatArgs) -> Result<u8, ClientError> {
    let run = args.run.resolve(client).await?;
    let channels = if args.channels.is_empty() {
        vec![ChannelArg::Stdout, ChannelArg::Stderr]
    } else {
        args.channels
    };
    let base = FollowOptions {
        channels: channels.iter().map(|channel| channel.to_pb()).collect(),
        history_only: true,
        ..FollowOptions::default()
    };
    let mut printer = Printer::new(Style::Raw, args.prefix);
    if let Some(lines) = args.range.tail {
        let tail = tail(client, &run, &args.range, base, lines, false).await?;
        if !printer.print_tail(tail.history, tail.failed)? {
            return Ok(0);
        }
    } else {
        let mut events = client.follow(run, args.range.options(base));
        while let Some(event) = events.next().await {
            if !printer.print(event?) {
                return Ok(0);
            }
        }
    }
    let _ = printer.finish();
    Ok(0)
}

/// The last `lines` lines stored in `range`, and the options that follow
/// on from them when `live` (`None` when the range ended with them).
///
/// The server counts a tail in entries, so as many entries as lines are
/// asked for, up to what is stored now, and the last lines of them kept.
async fn tail(
    client: &Client,
    run: &RunKey,
    range: &RangeArgs,
    base: FollowOptions,
    lines: u64,
    live: bool,
) -> Result<Tail, ClientError> {
    let options = range.options(base);
    let stored = match live {
        true => Some(
            client
                .get_run(run)
                .await?
                .summary
                .unwrap_or_default()
                .last_seq,
        ),
        false => None,
    };
    let upper = match (stored, range.to_seq) {
        (Some(stored), Some(to_seq)) => Some(stored.min(to_seq)),
        (stored, to_seq) => stored.or(to_seq),
    };
    let mut history = Vec::new();
    let mut failed = None;
    if upper != Some(0) {
        let mut events = client.follow(
            run.clone(),
            FollowOptions {
                tail: Some(lines),
                to_seq: upper,
                ..options.clone()
            },
        );
        while let Some(event) = events.next().await {
            match event {
                Ok(event) => history.push(event),
                Err(err) => {
                    failed = Some(err);
                    break;
                }
            }
        }
    }
    // Fewer entries than asked for: the tail holds the whole range.
    let entries = history.iter().filter(|event| event.seq().is_some()).count() as u64;
    let history = last_lines(history, lines, entries < lines && failed.is_none());
    let next = match (live, upper) {
        (false, _) => None,
        (true, Some(upper)) if range.to_seq.is_some_and(|to_seq| to_seq <= upper) => None,
        (true, upper) => Some(FollowOptions {
            from_seq: options.from_seq.max(upper.unwrap_or(0) + 1),
            ..options
        }),
    };
    Ok(Tail {
        history,
        next,
        failed,
    })
}

/// The last lines of a range, and what comes after them.
struct Tail {
    /// The events that hold the lines.
    history: Vec<FollowEvent>,
    /// The options that follow on from them, when the follow goes on.
    next: Option<FollowOptions>,
    /// The error that ended the tail early (damaged entries, say): the
    /// lines before it are printed first.
    failed: Option<ClientError>,
}

/// How entries are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    /// For people: lifecycle lines marked, states told (`follow`).
    Human,
    /// One JSON entry a line (`follow --json`).
    Json,
    /// The output as the program wrote it (`cat`).
    Raw,
}

/// Writes a run's events to stdout.
struct Printer {
    /// How.
    style: Style,
    /// What goes in front of every line.
    prefix: PrefixArgs,
    /// The output: as it is for `cat`, whose output is the program's;
    /// without colours where they are not wanted otherwise.
    out: Box<dyn Write>,
    /// The last output ended a line.
    at_line_start: bool,
    /// A terminal state, told after the entries, where it happened.
    final_state: Option<FollowEvent>,
    /// The last state printed, so that one told twice (a tail, then the
    /// live part) is printed once.
    last_state: Option<pb::RunStateSnapshot>,
}

impl Printer {
    /// A printer in `style`.
    fn new(style: Style, prefix: PrefixArgs) -> Self {
        Self {
            style,
            prefix,
            out: match style {
                Style::Raw => Box::new(std::io::stdout().lock()),
                _ => Box::new(anstream::stdout().lock()),
            },
            at_line_start: true,
            final_state: None,
            last_state: None,
        }
    }

    /// Prints one event; false when the reader went away (`| head`).
    fn print(&mut self, event: FollowEvent) -> bool {
        if let FollowEvent::State(state) = &event {
            if self.last_state.as_ref() == Some(state) || self.style == Style::Raw {
                return true;
            }
            self.last_state = Some(state.clone());
            // A terminal state comes with the first response when following
            // a run that has ended; it is told after the entries.
            if is_terminal(state.status()) {
                self.final_state = Some(event);
                return true;
            }
        }
        let text = match self.style {
            Style::Json => match render::entry_json(&event) {
                Some(json) => format!("{json}\n"),
                None => return true,
            },
            Style::Human => render::human(&event, self.at_line_start),
            Style::Raw => match &event {
                FollowEvent::Stdout(chunk) | FollowEvent::Stderr(chunk) => chunk.text.clone(),
                FollowEvent::Lifecycle(entry) => format!("{}\n", entry.rendered_line),
                FollowEvent::State(_) => return true,
            },
        };
        let text = match self.style {
            Style::Json => text,
            _ => self.prefix.apply(&event, text, self.at_line_start),
        };
        if self.style != Style::Json {
            self.at_line_start = render::ends_line(&event, self.at_line_start);
        }
        write!(self.out, "{text}")
            .and_then(|()| self.out.flush())
            .is_ok()
    }

    /// Prints the events of a tail, then the error that ended it early,
    /// if one did; false when the reader went away.
    fn print_tail(
        &mut self,
        history: Vec<FollowEvent>,
        failed: Option<ClientError>,
    ) -> Result<bool, ClientError> {
        for event in history {
            if !self.print(event) {
                return Ok(false);
            }
        }
        match failed {
            Some(err) => {
                let _ = self.finish();
                Err(err)
            }
            None => Ok(true),
        }
    }

    /// Tells the final state, if one came, and returns its status.
    fn finish(&mut self) -> Option<pb::RunStatus> {
        let state = self.final_state.take();
        let status = match &state {
            Some(FollowEvent::State(state)) => Some(state.status()),
            _ => None,
        };
        if let (Some(state), Style::Human) = (state, self.style) {
            let _ = write!(self.out, "{}", render::human(&state, self.at_line_start));
        }
        let _ = self.out.flush();
        status
    }
}

/// Whether a status is final.
fn is_terminal(status: pb::RunStatus) -> bool {
    matches!(
        status,
        pb::RunStatus::Completed | pb::RunStatus::Failed | pb::RunStatus::Blocked
    )
}
