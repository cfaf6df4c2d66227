//! `baa-log follow` and `baa-log cat`: a run's entries, live or stored.

use std::io::Write;

use baa_logging_client::{Client, ClientError, FollowEvent, FollowOptions, pb};
use clap::Args;
use futures::StreamExt;

use crate::{ChannelArg, parse_run, prefix::PrefixArgs, render, run_ref::RunRef, wait};

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
    /// Start at this sequence number.
    #[arg(long, default_value_t = 1)]
    from: u64,
    /// Only this channel; repeat for several.
    #[arg(long = "channel", value_enum)]
    channels: Vec<ChannelArg>,
    /// One entry a line, as JSON in the contracts' shape.
    #[arg(long)]
    json: bool,
    /// What goes in front of every line.
    #[command(flatten)]
    prefix: PrefixArgs,
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
}

/// Follows a run until it ends.
pub(crate) async fn follow(client: &Client, args: FollowArgs) -> Result<u8, ClientError> {
    let options = FollowOptions {
        from_seq: args.from,
        channels: args
            .channels
            .iter()
            .map(|channel| channel.to_pb())
            .collect(),
        ..FollowOptions::default()
    };
    let key = if args.wait {
        wait::until_prepared(client, &args.run).await?
    } else {
        args.run.resolve(client).await?
    };
    let mut events = client.follow(key, options);
    let mut out = anstream::stdout().lock();
    let mut at_line_start = true;
    // A terminal state comes with the first response when following a run
    // that has ended; it is told after the entries, where it happened.
    let mut final_state = None;
    while let Some(event) = events.next().await {
        let event = event?;
        if let FollowEvent::State(state) = &event {
            if is_terminal(state.status()) {
                final_state = Some(event);
                continue;
            }
        }
        let text = if args.json {
            match render::entry_json(&event) {
                Some(json) => format!("{json}\n"),
                None => continue,
            }
        } else {
            let text =
                args.prefix
                    .apply(&event, render::human(&event, at_line_start), at_line_start);
            at_line_start = render::ends_line(&event, at_line_start);
            text
        };
        if write!(out, "{text}").and_then(|()| out.flush()).is_err() {
            // The reader went away (`| head`): that is the end.
            return Ok(0);
        }
    }
    if let (Some(state), false) = (final_state, args.json) {
        let _ = write!(out, "{}", render::human(&state, at_line_start));
    }
    Ok(0)
}

/// Whether a status is final.
fn is_terminal(status: pb::RunStatus) -> bool {
    matches!(
        status,
        pb::RunStatus::Completed | pb::RunStatus::Failed | pb::RunStatus::Blocked
    )
}

/// Prints a run's stored output.
pub(crate) async fn cat(client: &Client, args: CatArgs) -> Result<u8, ClientError> {
    let channels = if args.channels.is_empty() {
        vec![ChannelArg::Stdout, ChannelArg::Stderr]
    } else {
        args.channels
    };
    let options = FollowOptions {
        channels: channels.iter().map(|channel| channel.to_pb()).collect(),
        history_only: true,
        ..FollowOptions::default()
    };
    let mut events = client.follow(args.run.resolve(client).await?, options);
    let mut out = std::io::stdout().lock();
    let mut at_line_start = true;
    while let Some(event) = events.next().await {
        let event = event?;
        let text = match &event {
            FollowEvent::Stdout(chunk) | FollowEvent::Stderr(chunk) => chunk.text.clone(),
            FollowEvent::Lifecycle(entry) => format!("{}\n", entry.rendered_line),
            FollowEvent::State(_) => continue,
        };
        let text = args.prefix.apply(&event, text, at_line_start);
        at_line_start = render::ends_line(&event, at_line_start);
        if out.write_all(text.as_bytes()).is_err() {
            return Ok(0);
        }
    }
    let _ = out.flush();
    Ok(0)
}
