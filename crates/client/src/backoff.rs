//! Waiting between reconnection attempts: exponential, capped, with jitter
//! so that many workers that lost the same server do not come back in step.

use std::time::{Duration, Instant};

/// How a reconnecting handle waits between attempts, and for how long in
/// all before it gives up.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// The first wait.
    pub initial: Duration,
    /// The longest single wait.
    pub max: Duration,
    /// Give up after trying this long without success; `None`: never.
    ///
    /// A worker's handle that never gives up holds its caller (and through
    /// backpressure, the process whose output it carries) until the server
    /// is back, which is what a log that must not lose a line wants.
    pub give_up_after: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(2),
            give_up_after: None,
        }
    }
}

/// One sequence of attempts under a [`RetryPolicy`].
#[derive(Debug)]
pub(crate) struct Backoff {
    /// The policy.
    policy: RetryPolicy,
    /// The next wait, before jitter.
    next: Duration,
    /// When the first attempt failed.
    since: Instant,
}

impl Backoff {
    /// Starts a sequence.
    pub(crate) fn new(policy: RetryPolicy) -> Self {
        Self {
            policy,
            next: policy.initial,
            since: Instant::now(),
        }
    }

    /// Waits before the next attempt; false when the policy says to give up.
    pub(crate) async fn wait(&mut self) -> bool {
        if let Some(limit) = self.policy.give_up_after {
            if self.since.elapsed() >= limit {
                return false;
            }
        }
        // Full jitter between half and all of the nominal wait.
        let nominal = self.next.as_secs_f64();
        let wait = Duration::from_secs_f64(nominal * (0.5 + fastrand::f64() * 0.5));
        tokio::time::sleep(wait).await;
        self.next = (self.next * 2).min(self.policy.max);
        true
    }
}
