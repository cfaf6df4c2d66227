//! Finding records in a run's subject without reading it from the start.
//!
//! A run's records are in stream order, and `seq`, the commit time and
//! the run's counts only grow along them. So the first record with a
//! property that, once true, stays true is found by a binary search over
//! stream sequences: each probe asks JetStream for the run's first record
//! at or after a stream sequence (one request), which takes about 30
//! probes over a stream of a billion messages.

use std::time::{SystemTime, UNIX_EPOCH};

use super::{
    chain::{Chains, Tip},
    record::{Record, RecordHead, RecordKind},
};
use crate::{
    error::Result,
    model::{ChannelSet, RunKey},
    run_store::ReadFrom,
};

/// The `seq` range a reader returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SeqRange {
    /// The first `seq`.
    pub(crate) from_seq: u64,
    /// The last, when bounded.
    pub(crate) to_seq: Option<u64>,
}

/// The stream sequence where the run that `tip` ends starts: its
/// `Prepared` record.
fn origin(tip: &Tip) -> u64 {
    match tip.head.kind {
        RecordKind::Prepared => tip.stream_seq,
        _ => tip.head.run.origin,
    }
}

/// The first record of the run at or after its origin for which `holds`
/// is true, with its stream sequence; `None` when no record up to the tip
/// is.
async fn first_where(
    chains: &Chains,
    key: &RunKey,
    tip: &Tip,
    holds: impl Fn(&RecordHead) -> bool,
) -> Result<Option<(u64, Record)>> {
    if !holds(&tip.head) {
        return Ok(None);
    }
    let (mut low, mut high) = (origin(tip), tip.stream_seq);
    let mut found = None;
    while low <= high {
        let middle = low + (high - low) / 2;
        match chains.next_record(key, middle).await? {
            Some((stream_seq, record)) if stream_seq <= high => {
                if holds(&record.head) {
                    high = middle.saturating_sub(1);
                    found = Some((stream_seq, record));
                    if middle == 0 {
                        break;
                    }
                } else {
                    low = stream_seq + 1;
                }
            }
            _ => high = middle.saturating_sub(1),
        }
    }
    Ok(match found {
        Some(found) => Some(found),
        None => Some((tip.stream_seq, chains.record_at(key, tip.stream_seq).await?)),
    })
}

/// The stream sequence of the record that holds `seq` (or the first after
/// it): where a reader from `seq` starts its consumer.
pub(crate) async fn record_holding(
    chains: &Chains,
    key: &RunKey,
    tip: &Tip,
    seq: u64,
) -> Result<u64> {
    if seq <= 1 {
        return Ok(origin(tip));
    }
    let found = first_where(chains, key, tip, |head| head.run.next_seq > seq).await?;
    Ok(found.map_or(tip.stream_seq + 1, |(stream_seq, _)| stream_seq))
}

/// Resolves what a reader asks for against the run as `tip` ends it.
pub(crate) async fn resolve(
    chains: &Chains,
    key: &RunKey,
    tip: &Tip,
    from: &ReadFrom,
) -> Result<SeqRange> {
    let committed = tip.head.run.next_seq - 1;
    let mut from_seq = from.from_seq.max(1);
    let mut to_seq = from.to_seq.filter(|to_seq| *to_seq > 0);
    if from.history_only {
        to_seq = Some(to_seq.map_or(committed, |to_seq| to_seq.min(committed)));
    }
    if let Some(since) = from.since {
        let since = millis(since);
        // A record without entries counts too: its `first_seq` is the
        // `seq` of the next entry, which is committed after it.
        let first = first_where(chains, key, tip, |head| head.time >= since)
            .await?
            .filter(|(_, record)| record.head.time >= since);
        from_seq = from_seq.max(first.map_or(committed + 1, |(_, record)| record.head.first_seq));
    }
    if let Some(until) = from.until {
        let after = millis(until).saturating_add(1);
        let first = first_where(chains, key, tip, |head| head.time >= after)
            .await?
            .filter(|(_, record)| record.head.time >= after);
        let until_seq = first.map_or(committed, |(_, record)| record.head.first_seq - 1);
        to_seq = Some(to_seq.map_or(until_seq, |to_seq| to_seq.min(until_seq)));
    }
    if let Some(tail) = from.tail {
        let upper = to_seq.map_or(committed, |to_seq| to_seq.min(committed));
        let start = match tail {
            0 => upper + 1,
            _ if upper < from_seq => upper + 1,
            tail => tail_start(chains, key, tip, from.channels, tail, upper).await?,
        };
        from_seq = from_seq.max(start);
    }
    Ok(SeqRange { from_seq, to_seq })
}

/// The `seq` where the last `tail` entries of `channels` up to `upper`
/// start (1 when there are fewer).
async fn tail_start(
    chains: &Chains,
    key: &RunKey,
    tip: &Tip,
    channels: ChannelSet,
    tail: u64,
    upper: u64,
) -> Result<u64> {
    let selected = |head: &RecordHead| -> u64 {
        channels
            .iter()
            .map(|channel| head.run.counts[channel])
            .sum()
    };
    // The selected entries up to `upper`: the counts after the record that
    // holds it, less its entries past `upper`.
    let Some((_, holding)) =
        first_where(chains, key, tip, |head| head.run.next_seq > upper).await?
    else {
        return Ok(1);
    };
    let past_upper = holding
        .entries(key)?
        .iter()
        .filter(|entry| entry.seq() > upper && channels.contains(entry.channel()))
        .count() as u64;
    let up_to_upper = selected(&holding.head) - past_upper;
    if up_to_upper <= tail {
        return Ok(1);
    }
    // The first entry to return is the selected one numbered `wanted`.
    let wanted = up_to_upper - tail + 1;
    let Some((_, record)) = first_where(chains, key, tip, |head| selected(head) >= wanted).await?
    else {
        return Ok(1);
    };
    let mut number = selected(&record.head)
        - record
            .entries(key)?
            .iter()
            .filter(|entry| channels.contains(entry.channel()))
            .count() as u64;
    for entry in record.entries(key)? {
        if channels.contains(entry.channel()) {
            number += 1;
            if number == wanted {
                return Ok(entry.seq());
            }
        }
    }
    Ok(record.head.first_seq)
}

/// Milliseconds since the Unix epoch (0 for earlier times).
fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}
