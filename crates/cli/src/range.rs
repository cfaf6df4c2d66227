//! Which part of a run `follow` and `cat` print: the last lines, a time
//! window, a range of sequence numbers.
//!
//! The server counts a tail in entries; a chunk of output may hold many
//! lines (or part of one), so the command line asks for as many entries as
//! lines and keeps the last lines of what comes (see [`last_lines`]).

use std::time::SystemTime;

use baa_logging_client::{FollowEvent, FollowOptions};
use chrono::{DateTime, Local, NaiveDate, NaiveDateTime, TimeZone};
use clap::Args;

/// The range flags, shared by `follow` and `cat`.
#[derive(Debug, Clone, Copy, Default, Args)]
pub(crate) struct RangeArgs {
    /// Only the last N lines stored (of the selected channels, within the
    /// other bounds); `follow` then goes on with new lines. 0: only new
    /// lines.
    #[arg(short = 'n', long, value_name = "N")]
    pub(crate) tail: Option<u64>,
    /// Only entries the server stored at or after this time: a duration
    /// ago (`90s`, `10m`, `2h`, `7d`), or a time (`2026-11-30T14:00:00Z`,
    /// `2026-11-30 14:00`, `2026-11-30`; local time unless it says).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub(crate) since: Option<SystemTime>,
    /// Only entries the server stored at or before this time, in the same
    /// forms as --since; the output ends there.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub(crate) until: Option<SystemTime>,
    /// Start at this sequence number (as --seq shows it).
    #[arg(long = "from-seq", alias = "from", value_name = "SEQ")]
    pub(crate) from_seq: Option<u64>,
    /// End at this sequence number; the output ends there.
    #[arg(long = "to-seq", value_name = "SEQ",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) to_seq: Option<u64>,
}

impl RangeArgs {
    /// The follow options for this range, the tail aside.
    pub(crate) fn options(&self, base: FollowOptions) -> FollowOptions {
        FollowOptions {
            from_seq: self.from_seq.unwrap_or(1),
            to_seq: self.to_seq,
            since: self.since,
            until: self.until,
            ..base
        }
    }
}

/// Parses a time as `--since` and `--until` take it.
pub(crate) fn parse_time(text: &str) -> Result<SystemTime, String> {
    let text = text.trim();
    if let Ok(ago) = humantime::parse_duration(text) {
        return SystemTime::now()
            .checked_sub(ago)
            .ok_or_else(|| format!("`{text}` ago is before 1970"));
    }
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.into());
    }
    let local = |naive: NaiveDateTime| {
        Local
            .from_local_datetime(&naive)
            .earliest()
            .map(SystemTime::from)
            .ok_or_else(|| format!("`{text}` does not exist in this time zone"))
    };
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return local(naive);
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return local(date.and_hms_opt(0, 0, 0).expect("midnight exists"));
    }
    Err(format!(
        "`{text}` is neither a duration (10m, 2h, 7d) nor a time \
         (2026-11-30T14:00:00Z, 2026-11-30 14:00, 2026-11-30)"
    ))
}

/// The events that hold the last `lines` lines of `events`: earlier
/// entries dropped, the first kept chunk cut to its last lines, and the
/// last state before the cut kept in front. A lifecycle event is one
/// line; a last line without its newline counts as a line. Unless
/// `whole` (the events start where the output does), text before the
/// first newline may be the end of a line whose start is not there, and
/// is left out when the events hold fewer lines than asked.
pub(crate) fn last_lines(events: Vec<FollowEvent>, lines: u64, whole: bool) -> Vec<FollowEvent> {
    let ends_open = events
        .iter()
        .rev()
        .find_map(|event| match event {
            FollowEvent::Stdout(chunk) | FollowEvent::Stderr(chunk) if !chunk.text.is_empty() => {
                Some(!chunk.text.ends_with('\n'))
            }
            FollowEvent::Lifecycle(_) => Some(false),
            _ => None,
        })
        .unwrap_or(false);
    // The newline, counted from the end, after which the kept text starts.
    let mut newlines_left = if ends_open { lines } else { lines + 1 };
    if lines == 0 && ends_open {
        newlines_left = 0;
    }
    let mut cut: Option<(usize, Option<usize>)> = None;
    if newlines_left == 0 {
        cut = Some((events.len(), None));
    }
    for (index, event) in events.iter().enumerate().rev() {
        if cut.is_some() {
            break;
        }
        match event {
            FollowEvent::Stdout(chunk) | FollowEvent::Stderr(chunk) => {
                for (at, _) in chunk.text.match_indices('\n').rev() {
                    newlines_left -= 1;
                    if newlines_left == 0 {
                        cut = Some((index, Some(at + 1)));
                        break;
                    }
                }
            }
            FollowEvent::Lifecycle(_) => {
                newlines_left -= 1;
                if newlines_left == 0 {
                    cut = Some((index + 1, None));
                }
            }
            FollowEvent::State(_) => {}
        }
    }
    let Some((index, within)) = cut else {
        return match whole {
            true => events,
            false => without_first_partial_line(events),
        };
    };
    let last_state = events[..index]
        .iter()
        .rev()
        .find(|event| matches!(event, FollowEvent::State(_)))
        .cloned();
    let mut kept: Vec<FollowEvent> = last_state.into_iter().collect();
    let mut rest = events.into_iter().skip(index);
    if let Some(at) = within {
        match rest.next() {
            Some(FollowEvent::Stdout(mut chunk)) => {
                chunk.text = chunk.text[at..].to_owned();
                if !chunk.text.is_empty() {
                    kept.push(FollowEvent::Stdout(chunk));
                }
            }
            Some(FollowEvent::Stderr(mut chunk)) => {
                chunk.text = chunk.text[at..].to_owned();
                if !chunk.text.is_empty() {
                    kept.push(FollowEvent::Stderr(chunk));
                }
            }
            other => kept.extend(other),
        }
    }
    kept.extend(rest);
    kept
}

/// `events` without the text before the first newline: the end of a
/// line whose start was not asked for.
fn without_first_partial_line(events: Vec<FollowEvent>) -> Vec<FollowEvent> {
    let mut events = events.into_iter();
    let mut kept = Vec::new();
    for event in events.by_ref() {
        match event {
            FollowEvent::Stdout(mut chunk) | FollowEvent::Stderr(mut chunk)
                if !chunk.text.contains('\n') =>
            {
                // All of it belongs to the cut line.
                chunk.text.clear();
            }
            FollowEvent::Stdout(mut chunk) => {
                let at = chunk.text.find('\n').expect("a newline") + 1;
                chunk.text.drain(..at);
                kept.push(FollowEvent::Stdout(chunk));
                break;
            }
            FollowEvent::Stderr(mut chunk) => {
                let at = chunk.text.find('\n').expect("a newline") + 1;
                chunk.text.drain(..at);
                kept.push(FollowEvent::Stderr(chunk));
                break;
            }
            other => {
                kept.push(other);
                if !matches!(kept.last(), Some(FollowEvent::State(_))) {
                    break;
                }
            }
        }
    }
    kept.extend(events);
    kept.retain(|event| match event {
        FollowEvent::Stdout(chunk) | FollowEvent::Stderr(chunk) => !chunk.text.is_empty(),
        _ => true,
    });
    kept
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use baa_logging_client::pb;

    use super::*;

    fn out(seq: u64, text: &str) -> FollowEvent {
        FollowEvent::Stdout(pb::StreamChunkLogEntry {
            seq,
            text: text.into(),
            ..Default::default()
        })
    }

    fn text(events: &[FollowEvent]) -> String {
        events
            .iter()
            .map(|event| match event {
                FollowEvent::Stdout(chunk) | FollowEvent::Stderr(chunk) => chunk.text.clone(),
                FollowEvent::Lifecycle(_) => "L\n".into(),
                FollowEvent::State(_) => String::new(),
            })
            .collect()
    }

    /// The last lines are kept across chunks, a chunk is cut inside, and a
    /// last line without a newline counts.
    #[test]
    fn keeps_the_last_lines() {
        let events = vec![out(1, "a\nb\n"), out(2, "c\nd"), out(3, "e\n")];
        assert_eq!(text(&last_lines(events.clone(), 2, true)), "c\nde\n");
        assert_eq!(text(&last_lines(events.clone(), 3, true)), "b\nc\nde\n");
        assert_eq!(text(&last_lines(events.clone(), 10, true)), "a\nb\nc\nde\n");
        assert_eq!(text(&last_lines(events.clone(), 0, true)), "");
        let open = vec![out(1, "a\nb\n"), out(2, "c")];
        assert_eq!(text(&last_lines(open.clone(), 1, true)), "c");
        assert_eq!(text(&last_lines(open, 2, true)), "b\nc");
        let lifecycle = vec![
            out(1, "a\n"),
            FollowEvent::Lifecycle(pb::WorkerLifecycleLogEntry::default()),
            out(3, "b\n"),
        ];
        assert_eq!(text(&last_lines(lifecycle.clone(), 2, true)), "L\nb\n");
        assert_eq!(text(&last_lines(lifecycle, 1, true)), "b\n");
        // Entries that start inside a line hold its end, left out when
        // they hold fewer lines than asked.
        let cut = vec![out(1, "wor"), out(2, "ld\n"), out(3, "x\n")];
        assert_eq!(text(&last_lines(cut.clone(), 3, false)), "x\n");
        assert_eq!(text(&last_lines(cut, 3, true)), "world\nx\n");
    }

    /// Durations count back from now; times parse in their forms; anything
    /// else is refused with the forms it takes.
    #[test]
    fn parses_times() {
        let ten_minutes_ago = parse_time("10m").unwrap();
        let ago = SystemTime::now().duration_since(ten_minutes_ago).unwrap();
        assert!(ago >= Duration::from_secs(600) && ago < Duration::from_secs(660));
        assert_eq!(
            parse_time("2026-11-30T14:00:00Z").unwrap(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_047_200)
        );
        assert!(parse_time("2026-11-30 14:00").is_ok());
        assert!(parse_time("2026-11-30").is_ok());
        let err = parse_time("yesterday").unwrap_err();
        assert!(err.contains("10m"), "{err}");
    }
}
