//! The three channels of a run's log session, and [`PerChannel`], the one
//! way the store keeps something for each of them.
//!
//! A new channel is a new variant of [`WorkerLogChannel`], a slot in
//! [`PerChannel`] (its `new`, and the order of [`WorkerLogChannel::ALL`]),
//! and a file name in the local store's `layout`; nothing else indexes
//! channels by number.

use std::ops::{Index, IndexMut};

use serde::{Deserialize, Serialize};

/// One of the three channels of a run's log session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerLogChannel {
    /// Lifecycle events, in `worker.log`.
    Worker,
    /// Standard output, in `stdout.log`.
    Stdout,
    /// Standard error, in `stderr.log`.
    Stderr,
}

impl WorkerLogChannel {
    /// The three channels, in the order [`PerChannel`] keeps them (and the
    /// journal stores its per-channel arrays).
    pub const ALL: [Self; 3] = [Self::Worker, Self::Stdout, Self::Stderr];

    /// The channel's slot in a [`PerChannel`].
    const fn slot(self) -> usize {
        match self {
            Self::Worker => 0,
            Self::Stdout => 1,
            Self::Stderr => 2,
        }
    }

    /// The contract's name of the channel.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Worker => "worker",
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }
}

/// The two channels that carry process output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamLogChannel {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl From<StreamLogChannel> for WorkerLogChannel {
    fn from(channel: StreamLogChannel) -> Self {
        match channel {
            StreamLogChannel::Stdout => Self::Stdout,
            StreamLogChannel::Stderr => Self::Stderr,
        }
    }
}

/// One value for each channel, indexed by [`WorkerLogChannel`].
///
/// Its serde form is a three-element array in the order of
/// [`WorkerLogChannel::ALL`] (worker, stdout, stderr), which is how the
/// journal has always stored its counts and offsets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PerChannel<T>([T; 3]);

impl<T> PerChannel<T> {
    /// The values of the worker, stdout and stderr channels.
    pub const fn new(worker: T, stdout: T, stderr: T) -> Self {
        Self([worker, stdout, stderr])
    }

    /// A value for each channel, made by `make`.
    pub fn from_fn(mut make: impl FnMut(WorkerLogChannel) -> T) -> Self {
        Self(WorkerLogChannel::ALL.map(&mut make))
    }

    /// A value for each channel, made by `make`, or the first error it
    /// returned.
    ///
    /// # Errors
    ///
    /// The first error `make` returns; the channels after it are not made.
    pub fn try_from_fn<E>(
        mut make: impl FnMut(WorkerLogChannel) -> Result<T, E>,
    ) -> Result<Self, E> {
        let [worker, stdout, stderr] = WorkerLogChannel::ALL;
        Ok(Self([make(worker)?, make(stdout)?, make(stderr)?]))
    }

    /// Each channel with its value, in the order of
    /// [`WorkerLogChannel::ALL`].
    pub fn iter(&self) -> impl Iterator<Item = (WorkerLogChannel, &T)> {
        WorkerLogChannel::ALL.into_iter().zip(&self.0)
    }

    /// Each channel with its value, mutable.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (WorkerLogChannel, &mut T)> {
        WorkerLogChannel::ALL.into_iter().zip(&mut self.0)
    }

    /// The values, in the order of [`WorkerLogChannel::ALL`].
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.0.iter()
    }

    /// A new value for each channel, from its old one.
    pub fn map<U>(self, mut change: impl FnMut(WorkerLogChannel, T) -> U) -> PerChannel<U> {
        let mut channels = WorkerLogChannel::ALL.into_iter();
        PerChannel(
            self.0
                .map(|value| change(channels.next().expect("three channels"), value)),
        )
    }

    /// The values by reference.
    pub fn each_ref(&self) -> PerChannel<&T> {
        PerChannel(self.0.each_ref())
    }
}

impl<T> Index<WorkerLogChannel> for PerChannel<T> {
    type Output = T;

    fn index(&self, channel: WorkerLogChannel) -> &T {
        &self.0[channel.slot()]
    }
}

impl<T> IndexMut<WorkerLogChannel> for PerChannel<T> {
    fn index_mut(&mut self, channel: WorkerLogChannel) -> &mut T {
        &mut self.0[channel.slot()]
    }
}

impl PerChannel<u64> {
    /// The sum over the channels.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Adds `other`'s value to each channel's.
    pub fn add(&mut self, other: &Self) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine += theirs;
        }
    }
}

/// A set of channels a reader returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelSet(PerChannel<bool>);

impl ChannelSet {
    /// All three channels.
    pub const ALL: Self = Self(PerChannel::new(true, true, true));

    /// The set of the given channels; all of them when `channels` is empty.
    pub fn of(channels: &[WorkerLogChannel]) -> Self {
        if channels.is_empty() {
            return Self::ALL;
        }
        Self(PerChannel::from_fn(|channel| channels.contains(&channel)))
    }

    /// Whether the set holds `channel`.
    pub fn contains(self, channel: WorkerLogChannel) -> bool {
        self.0[channel]
    }

    /// The channels of the set, in the order of [`WorkerLogChannel::ALL`].
    pub fn iter(self) -> impl Iterator<Item = WorkerLogChannel> {
        WorkerLogChannel::ALL
            .into_iter()
            .filter(move |channel| self.contains(*channel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values are found by channel, and the serde form is the journal's
    /// array in the order worker, stdout, stderr.
    #[test]
    fn indexed_by_channel_and_stored_as_an_array() {
        let mut counts = PerChannel::new(1u64, 2, 3);
        counts[WorkerLogChannel::Stderr] += 10;
        assert_eq!(counts[WorkerLogChannel::Stdout], 2);
        assert_eq!(counts.total(), 16);
        assert_eq!(serde_json::to_string(&counts).unwrap(), "[1,2,13]");
        let back: PerChannel<u64> = serde_json::from_str("[1,2,13]").unwrap();
        assert_eq!(back, counts);
        let named = counts.map(|channel, count| format!("{}={count}", channel.as_str()));
        assert_eq!(
            named.values().cloned().collect::<Vec<_>>(),
            ["worker=1", "stdout=2", "stderr=13"]
        );
    }
}
