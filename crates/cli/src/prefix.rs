//! What `--timestamps` and `--seq` put in front of every line of output:
//! the time of the entry the line belongs to and its sequence number, so
//! that a line can be placed in time and cited.

use baa_logging_client::FollowEvent;
use clap::{Args, ValueEnum};

/// The flags, shared by `follow` and `cat`.
#[derive(Debug, Clone, Copy, Default, Args)]
pub(crate) struct PrefixArgs {
    /// The entry's time in front of every line: in local time (the
    /// default) or as stored, in UTC.
    #[arg(
        short = 't',
        long,
        value_enum,
        num_args = 0..=1,
        default_missing_value = "local",
        require_equals = true
    )]
    timestamps: Option<Zone>,
    /// The entry's sequence number in front of every line.
    #[arg(long)]
    seq: bool,
}

/// Which clock times are shown in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Zone {
    /// This machine's time zone.
    Local,
    /// UTC, as stored.
    Utc,
}

impl PrefixArgs {
    /// `text`, the rendering of `event`, with the prefix in front of each
    /// line that starts in it: at its start when `at_line_start`, and after
    /// each newline but a last one. State changes get none.
    pub(crate) fn apply(&self, event: &FollowEvent, text: String, at_line_start: bool) -> String {
        if self.timestamps.is_none() && !self.seq {
            return text;
        }
        let (seq, created_at) = match event {
            FollowEvent::Stdout(chunk) | FollowEvent::Stderr(chunk) => {
                (chunk.seq, &chunk.created_at)
            }
            FollowEvent::Lifecycle(entry) => (entry.seq, &entry.created_at),
            FollowEvent::State(_) => return text,
        };
        let prefix = self.prefix(seq, created_at);
        let mut out = String::with_capacity(text.len() + prefix.len());
        let mut line_start = at_line_start;
        for (index, piece) in text.split_inclusive('\n').enumerate() {
            if (line_start || index > 0) && piece != "\n" {
                out.push_str(&prefix);
            } else if (line_start || index > 0) && piece == "\n" {
                // An empty line gets its prefix too, without a trailing space.
                out.push_str(prefix.trim_end());
            }
            out.push_str(piece);
            line_start = false;
        }
        out
    }

    /// The prefix of an entry: `2026-01-02 03:04:05.678 ` and/or `42 `.
    fn prefix(&self, seq: u64, created_at: &str) -> String {
        let mut prefix = String::new();
        if let Some(zone) = self.timestamps {
            prefix.push_str(&time(zone, created_at));
            prefix.push(' ');
        }
        if self.seq {
            prefix.push_str(&format!("{seq:>6} "));
        }
        prefix
    }
}

/// `created_at` in `zone`, to the millisecond; as it is when it does not
/// parse.
fn time(zone: Zone, created_at: &str) -> String {
    let Ok(parsed) = chrono::DateTime::parse_from_rfc3339(created_at) else {
        return created_at.to_owned();
    };
    match zone {
        Zone::Local => parsed
            .with_timezone(&chrono::Local)
            .format("%Y-%m-%d %H:%M:%S%.3f")
            .to_string(),
        Zone::Utc => parsed
            .with_timezone(&chrono::Utc)
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use baa_logging_client::pb;

    use super::*;

    fn chunk(seq: u64, text: &str) -> FollowEvent {
        FollowEvent::Stdout(pb::StreamChunkLogEntry {
            seq,
            created_at: "2026-01-02T03:04:05.678Z".into(),
            text: text.into(),
            ..Default::default()
        })
    }

    /// Every line that starts in a chunk gets the prefix, a line continued
    /// from the last chunk does not, and an empty line gets it trimmed.
    #[test]
    fn every_line_that_starts_gets_the_prefix() {
        let args = PrefixArgs {
            timestamps: Some(Zone::Utc),
            seq: true,
        };
        let event = chunk(7, "a\n\nb\nc");
        let text = args.apply(&event, "a\n\nb\nc".into(), true);
        let p = "2026-01-02T03:04:05.678Z      7 ";
        assert_eq!(text, format!("{p}a\n{}\n{p}b\n{p}c", p.trim_end()));
        let continued = args.apply(&chunk(8, "d\n"), "d\n".into(), false);
        assert_eq!(continued, "d\n");
        let none = PrefixArgs::default().apply(&event, "a\n".into(), true);
        assert_eq!(none, "a\n");
    }
}
