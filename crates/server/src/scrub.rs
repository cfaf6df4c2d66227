//! The scrub: a background pass, every `scrub.period` (off by default; the
//! first one a period after start), that reads every stored run back at no more than
//! `scrub.read_rate` bytes a second and checks each commit against its
//! checksums, as `baa-logd verify` does offline. Damaged or lost commits
//! are logged with their run and range and counted in
//! `baa_logd_scrub_damaged_commits_total`; they are already never served,
//! so the scrub only makes them known before a reader meets them.

use std::sync::Arc;

use baa_logging_store::{
    RunStore,
    verify::{Pace, check_run_at, runs_of},
};
use tokio::{task::JoinHandle, time::MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{Metrics, settings::Scrub};

/// Starts the scrub, unless its period is zero; it stops at `shutdown`.
pub(crate) fn spawn<S: RunStore>(
    store: Arc<S>,
    scrub: Scrub,
    metrics: Option<Metrics>,
    shutdown: CancellationToken,
) -> Option<JoinHandle<()>> {
    if scrub.period.is_zero() {
        return None;
    }
    Some(tokio::spawn(async move {
        let start = tokio::time::Instant::now() + scrub.period;
        let mut ticks = tokio::time::interval_at(start, scrub.period);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                () = pass(&*store, scrub.read_rate, metrics.as_ref()) => {}
            }
        }
    }))
}

/// One pass over every stored run.
async fn pass<S: RunStore>(store: &S, read_rate: u64, metrics: Option<&Metrics>) {
    let runs = match runs_of(store).await {
        Ok(runs) => runs,
        Err(err) => {
            warn!(cause = %err, "the scrub cannot list the runs; trying again next time");
            return;
        }
    };
    let mut pace = Pace::at(read_rate);
    let (mut checked, mut damaged) = (0u64, 0u64);
    for key in runs {
        match check_run_at(store, key.clone(), &mut pace).await {
            Ok(Some(check)) => {
                checked += 1;
                damaged += check.damaged.len() as u64;
                if let Some(metrics) = metrics {
                    metrics.record_scrub(check.damaged.len() as u64);
                }
                for (first_seq, last_seq) in &check.damaged {
                    warn!(run = %check.run, first_seq, last_seq, "the scrub found damaged or lost entries; readers get DATA_LOSS for them");
                }
            }
            Ok(None) => {}
            Err(err) => warn!(run = %key, cause = %err, "the scrub cannot read a run"),
        }
    }
    info!(checked, damaged, "scrub pass done");
}
