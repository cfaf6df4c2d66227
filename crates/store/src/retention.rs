//! Retention, in terms any backend shares: the policy, what a pass deleted,
//! and the [`Plan`] that picks the runs due, oldest first.
//!
//! A backend surveys its runs into [`RunFacts`], builds a [`Plan`], and
//! asks it for the next run due until it says none is. For each run due it
//! checks, under the run's own lock, that the run is still terminal and that
//! no stream is open on it, and deletes it (or, in a dry run, only checks).
//! A run it keeps is not reported to the plan, whose byte total then still
//! counts it, so the next run in line goes in its place.
//!
//! Age is measured from when a run finished (`finishedAt`), falling back to
//! `updatedAt` and then `createdAt` for runs written by other programs that
//! lack it. Only terminal runs (`completed`, `failed`, `blocked`) are ever
//! due.

use std::{collections::VecDeque, future::Future, time::Duration};

use chrono::{DateTime, Utc};
use tracing::{debug, warn};

use crate::{
    error::Result,
    model::{RunKey, RunStatus},
};

/// Which finished runs a retention pass deletes. With neither limit set,
/// nothing is ever due.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// A terminal run that finished longer ago than this is due.
    pub max_age: Option<Duration>,
    /// While all runs together (terminal or not) take more bytes than
    /// this, the oldest terminal runs are due, one by one, until they fit.
    pub max_bytes: Option<u64>,
}

impl RetentionPolicy {
    /// Whether the policy can make any run due.
    pub fn is_set(&self) -> bool {
        self.max_age.is_some() || self.max_bytes.is_some()
    }
}

/// Why a run is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CollectReason {
    /// It finished longer ago than `max_age`.
    MaxAge,
    /// All runs took more than `max_bytes`, and it was the oldest left.
    MaxBytes,
}

impl CollectReason {
    /// The name of the reason in logs and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MaxAge => "max_age",
            Self::MaxBytes => "max_bytes",
        }
    }
}

/// What a backend knows of one run when it plans a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFacts {
    /// The run.
    pub key: RunKey,
    /// Its status when surveyed. Only terminal runs are ever due; the
    /// backend checks again before it deletes.
    pub status: RunStatus,
    /// When it finished: `finishedAt`, else `updatedAt`, else `createdAt`.
    /// `None` when none of them reads as a time: such a run is never due,
    /// since it cannot be put in order, but its bytes still count.
    pub finished_at: Option<DateTime<Utc>>,
    /// The bytes its files take.
    pub bytes: u64,
}

/// A run a pass deleted, or would delete in a dry run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectedRun {
    /// The run.
    pub key: RunKey,
    /// Its status, always terminal.
    pub status: RunStatus,
    /// When it finished, the time its age is measured from.
    pub finished_at: DateTime<Utc>,
    /// The bytes its files took.
    pub bytes: u64,
    /// Why it was due.
    pub reason: CollectReason,
}

/// What a retention pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collection {
    /// True when nothing was deleted: `runs` are the runs that would have
    /// been.
    pub dry_run: bool,
    /// The runs deleted (or due, in a dry run), oldest first.
    pub runs: Vec<CollectedRun>,
    /// The bytes of all runs before the pass.
    pub bytes_before: u64,
    /// The bytes of all runs after the pass (in a dry run: had it deleted).
    pub bytes_after: u64,
    /// Runs that were due but kept because a stream was open on them.
    pub kept_open: u64,
}

impl Collection {
    /// The bytes of the runs in [`Collection::runs`].
    pub fn deleted_bytes(&self) -> u64 {
        self.runs.iter().map(|run| run.bytes).sum()
    }
}

/// The runs due in a pass, oldest first.
///
/// [`Plan::next_due`] gives the next run due and why; the backend reports the
/// runs it deleted with [`Plan::taken`]. A run it kept (a stream is open on
/// it, or it could not be deleted) is not reported, so its bytes still
/// count against `max_bytes` and the next oldest run is due in its place.
#[derive(Debug)]
pub struct Plan {
    /// The policy.
    policy: RetentionPolicy,
    /// Runs that finished before this are due by age.
    cutoff: Option<DateTime<Utc>>,
    /// Terminal runs with a finishing time, oldest first, not offered yet.
    candidates: VecDeque<(DateTime<Utc>, RunFacts)>,
    /// The bytes of all runs, less those taken.
    total: u64,
}

impl Plan {
    /// A plan over every run the backend holds (terminal or not: all count
    /// toward `max_bytes`), at time `now`.
    pub fn new(policy: RetentionPolicy, now: DateTime<Utc>, runs: Vec<RunFacts>) -> Self {
        let total = runs.iter().map(|run| run.bytes).sum();
        let cutoff = policy.max_age.map(|age| {
            chrono::Duration::from_std(age)
                .ok()
                .and_then(|age| now.checked_sub_signed(age))
                .unwrap_or(DateTime::<Utc>::MIN_UTC)
        });
        let mut candidates: Vec<(DateTime<Utc>, RunFacts)> = runs
            .into_iter()
            .filter(|run| run.status.is_terminal())
            .filter_map(|run| Some((run.finished_at?, run)))
            .collect();
        candidates
            .sort_by(|(a, run_a), (b, run_b)| a.cmp(b).then_with(|| run_a.key.cmp(&run_b.key)));
        Self {
            policy,
            cutoff,
            candidates: candidates.into(),
            total,
        }
    }

    /// The bytes of all runs, less those taken so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The next run due and why; `None` when no more is. Runs come oldest
    /// first, so once one is not due, none after it is.
    pub fn next_due(&mut self) -> Option<(RunFacts, CollectReason)> {
        let (finished_at, _) = self.candidates.front()?;
        let reason = if self.cutoff.is_some_and(|cutoff| *finished_at < cutoff) {
            CollectReason::MaxAge
        } else if self.policy.max_bytes.is_some_and(|max| self.total > max) {
            CollectReason::MaxBytes
        } else {
            self.candidates.clear();
            return None;
        };
        let (_, run) = self.candidates.pop_front()?;
        Some((run, reason))
    }

    /// Records that a run [`Plan::next_due`] gave was deleted (or would be).
    pub fn taken(&mut self, run: &RunFacts) {
        self.total = self.total.saturating_sub(run.bytes);
    }
}

/// What became of a run due, as a backend tells [`run_pass`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Deleted (or, in a dry run, it would be).
    Deleted,
    /// Kept: a stream is open on it.
    InUse,
    /// Kept: it is not terminal (it was deleted and prepared again since
    /// the survey).
    NotTerminal,
    /// It was gone already.
    Gone,
}

/// Runs a pass over `runs` at time `now`: offers each run due to
/// `delete` (which deletes it, or in a dry run says what deleting would
/// do), oldest first, and returns what went. A run `delete` fails on is
/// kept, and logged.
pub async fn run_pass<F, Fut>(
    policy: RetentionPolicy,
    now: DateTime<Utc>,
    runs: Vec<RunFacts>,
    dry_run: bool,
    mut delete: F,
) -> Collection
where
    F: FnMut(RunKey) -> Fut,
    Fut: Future<Output = Result<Outcome>>,
{
    let mut plan = Plan::new(policy, now, runs);
    let mut collection = Collection {
        dry_run,
        bytes_before: plan.total(),
        ..Collection::default()
    };
    while let Some((run, reason)) = plan.next_due() {
        match delete(run.key.clone()).await {
            Ok(Outcome::Deleted) => {
                plan.taken(&run);
                collection.runs.push(CollectedRun {
                    key: run.key,
                    status: run.status,
                    finished_at: run.finished_at.unwrap_or_default(),
                    bytes: run.bytes,
                    reason,
                });
            }
            Ok(Outcome::Gone) => plan.taken(&run),
            Ok(Outcome::InUse) => {
                debug!(run = %run.key, "retention keeps a run due: a stream is open on it");
                collection.kept_open += 1;
            }
            Ok(Outcome::NotTerminal) => {}
            Err(err) => {
                warn!(run = %run.key, cause = %err, "retention cannot delete a run; keeping it")
            }
        }
    }
    collection.bytes_after = plan.total();
    collection
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run of task `t` with `bytes`, finished `days_ago` days before
    /// `now()`, or not finished when `status` is not terminal.
    fn run(id: &str, status: RunStatus, days_ago: i64, bytes: u64) -> RunFacts {
        RunFacts {
            key: RunKey {
                task_id: "t".into(),
                run_id: id.into(),
            },
            status,
            finished_at: Some(now() - chrono::Duration::days(days_ago)),
            bytes,
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    /// Drains a plan, taking every run it offers except those in `kept`.
    fn drain(mut plan: Plan, kept: &[&str]) -> (Vec<(String, CollectReason)>, u64) {
        let mut due = Vec::new();
        while let Some((run, reason)) = plan.next_due() {
            if !kept.contains(&run.key.run_id.as_str()) {
                plan.taken(&run);
                due.push((run.key.run_id.clone(), reason));
            }
        }
        (due, plan.total())
    }

    const DAY: Duration = Duration::from_secs(86_400);

    /// Terminal runs older than the age are due, oldest first; newer and
    /// unfinished ones are not, however old.
    #[test]
    fn age_takes_old_terminal_runs_oldest_first() {
        let runs = vec![
            run("b", RunStatus::Failed, 40, 1),
            run("a", RunStatus::Completed, 50, 1),
            run("young", RunStatus::Completed, 10, 1),
            run("running", RunStatus::Running, 90, 1),
            run("c", RunStatus::Blocked, 31, 1),
        ];
        let policy = RetentionPolicy {
            max_age: Some(30 * DAY),
            max_bytes: None,
        };
        let (due, total) = drain(Plan::new(policy, now(), runs), &[]);
        let names: Vec<&str> = due.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert!(
            due.iter()
                .all(|(_, reason)| *reason == CollectReason::MaxAge)
        );
        assert_eq!(total, 2);
    }

    /// Over the budget, the oldest terminal runs go until all runs fit; a
    /// run kept for an open stream still counts, so the next one goes in
    /// its place; unfinished runs count but never go.
    #[test]
    fn budget_takes_oldest_until_everything_fits() {
        let runs = vec![
            run("old", RunStatus::Completed, 5, 100),
            run("open", RunStatus::Completed, 4, 100),
            run("mid", RunStatus::Completed, 3, 100),
            run("new", RunStatus::Completed, 2, 100),
            run("running", RunStatus::Running, 9, 150),
        ];
        let policy = RetentionPolicy {
            max_age: None,
            max_bytes: Some(360),
        };
        let (due, total) = drain(Plan::new(policy, now(), runs), &["open"]);
        assert_eq!(
            due,
            [
                ("old".to_owned(), CollectReason::MaxBytes),
                ("mid".to_owned(), CollectReason::MaxBytes)
            ]
        );
        assert_eq!(total, 350);
    }

    /// With both limits, age goes first, and the budget only takes what is
    /// still over it; a budget of 0 takes every terminal run.
    #[test]
    fn age_then_budget() {
        let runs = vec![
            run("old", RunStatus::Completed, 40, 10),
            run("a", RunStatus::Completed, 3, 10),
            run("b", RunStatus::Completed, 2, 10),
        ];
        let policy = RetentionPolicy {
            max_age: Some(30 * DAY),
            max_bytes: Some(10),
        };
        let (due, _) = drain(Plan::new(policy, now(), runs.clone()), &[]);
        assert_eq!(
            due,
            [
                ("old".to_owned(), CollectReason::MaxAge),
                ("a".to_owned(), CollectReason::MaxBytes)
            ]
        );
        let everything = RetentionPolicy {
            max_age: None,
            max_bytes: Some(0),
        };
        let (due, total) = drain(Plan::new(everything, now(), runs), &[]);
        assert_eq!(due.len(), 3);
        assert_eq!(total, 0);
    }

    /// A run whose finishing time cannot be read is never due, but counts.
    #[test]
    fn undated_runs_are_never_due() {
        let mut undated = run("undated", RunStatus::Completed, 0, 50);
        undated.finished_at = None;
        let policy = RetentionPolicy {
            max_age: Some(Duration::ZERO),
            max_bytes: Some(0),
        };
        let (due, total) = drain(Plan::new(policy, now(), vec![undated]), &[]);
        assert!(due.is_empty());
        assert_eq!(total, 50);
    }
}
