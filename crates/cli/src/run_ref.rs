//! How the command line names a run: `TASK/RUN` by its id, or
//! `TASK/@latest` and `TASK/@latest~N` by its place among the task's runs,
//! newest first. `follow`, `cat`, `show`, `grep` and `exec --retry-of`
//! (for the run it retries) take either; `exec --run` names a run to
//! create and takes ids only.
//!
//! A place is resolved here, in the client, with `ListRuns` for the task,
//! which lists runs newest first (by `created_at`, then by id); the server
//! knows nothing of `@latest`. The answer holds for the moment it was asked:
//! a run prepared a moment later becomes `@latest` only for the next
//! command.
//!
//! # Ids that look like places
//!
//! The store's id rules allow `@` (they refuse only a leading `.`, `/`,
//! `\`, control and invisible characters), so a run id can be `@latest`.
//! On the command line, a run part that starts with `@latest` is always a
//! place, never an id: a run whose id is `@latest` or `@latest~2` cannot be
//! named by it here (it is listed by `baa-log runs`, and the API names it
//! as usual). Every other id, including others that start with `@`, is an
//! id.

use std::fmt;

use baa_logging_client::{Client, ClientError, RunFilter, RunKey};

/// What a place starts with, after `TASK/`.
const LATEST: &str = "@latest";

/// The largest page `ListRuns` returns; a larger request gets this many a
/// page, so a place further back takes several pages.
const MAX_PAGE_SIZE: usize = 500;

/// A run as the command line names it, parsed by clap and resolved with
/// [`RunRef::resolve`] once connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RunRef {
    /// `TASK/RUN`: the run with this id, whether it exists or not.
    Id(RunKey),
    /// `TASK/@latest~N`: the task's run with `back` newer runs than it;
    /// `TASK/@latest` is `back` 0, the newest.
    Latest {
        /// The task.
        task_id: String,
        /// How many of the task's runs are newer.
        back: usize,
    },
}

/// What a [`RunRef`] names at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// This run. For [`RunRef::Id`] it may not exist.
    Run(RunKey),
    /// No run: the place is beyond the task's oldest run, of which there
    /// are this many.
    TooFew(usize),
}

impl RunRef {
    /// The run this names now.
    ///
    /// # Errors
    ///
    /// [`ClientError::InvalidInput`] naming the task when it has too few
    /// runs for the place; errors of `ListRuns`.
    pub(crate) async fn resolve(&self, client: &Client) -> Result<RunKey, ClientError> {
        match self.lookup(client).await? {
            Lookup::Run(key) => Ok(key),
            Lookup::TooFew(count) => Err(self.too_few(count)),
        }
    }

    /// What this names now. An id is taken as it is, without asking the
    /// server; a place asks for as many of the task's runs as it needs.
    ///
    /// # Errors
    ///
    /// Errors of `ListRuns`, such as `INVALID_ARGUMENT` for a task id the
    /// server refuses.
    pub(crate) async fn lookup(&self, client: &Client) -> Result<Lookup, ClientError> {
        let (task_id, back) = match self {
            Self::Id(key) => return Ok(Lookup::Run(key.clone())),
            Self::Latest { task_id, back } => (task_id, *back),
        };
        let mut filter = RunFilter {
            task_id: Some(task_id.clone()),
            page_size: back.saturating_add(1).min(MAX_PAGE_SIZE) as u32,
            ..RunFilter::default()
        };
        // How many of the task's runs the earlier pages held.
        let mut skipped = 0;
        loop {
            let page = client.list_runs(filter.clone()).await?;
            let count = page.runs.len();
            if let Some(run) = page.runs.into_iter().nth(back - skipped) {
                let run_id = run.metadata.unwrap_or_default().run_id;
                return Ok(Lookup::Run(RunKey::new(task_id, run_id)));
            }
            skipped += count;
            if page.next_page_token.is_empty() {
                return Ok(Lookup::TooFew(skipped));
            }
            filter.page_token = page.next_page_token;
        }
    }

    /// The error for a place beyond the task's `count` runs.
    fn too_few(&self, count: usize) -> ClientError {
        let task_id = match self {
            Self::Id(key) => &key.task_id,
            Self::Latest { task_id, .. } => task_id,
        };
        let runs = match count {
            0 => "no runs".to_owned(),
            1 => "only 1 run".to_owned(),
            _ => format!("only {count} runs"),
        };
        ClientError::InvalidInput {
            what: "run",
            reason: format!(
                "task `{task_id}` has {runs}, so `{self}` names none; `baa-log runs` lists the \
                 runs there are"
            ),
        }
    }
}

impl fmt::Display for RunRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id(key) => key.fmt(f),
            Self::Latest { task_id, back: 0 } => write!(f, "{task_id}/{LATEST}"),
            Self::Latest { task_id, back } => write!(f, "{task_id}/{LATEST}~{back}"),
        }
    }
}

impl std::str::FromStr for RunRef {
    type Err = ClientError;

    /// Parses `TASK/RUN`, `TASK/@latest` or `TASK/@latest~N`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let key: RunKey = text.parse()?;
        let Some(rest) = key.run_id.strip_prefix(LATEST) else {
            return Ok(Self::Id(key));
        };
        let back = match rest.strip_prefix('~') {
            None if rest.is_empty() => Some(0),
            Some(number) if number.bytes().all(|byte| byte.is_ascii_digit()) => number.parse().ok(),
            _ => None,
        };
        match back {
            Some(back) => Ok(Self::Latest {
                task_id: key.task_id,
                back,
            }),
            None => Err(ClientError::InvalidInput {
                what: "run",
                reason: format!(
                    "`{text}` is not of the form TASK/@latest or TASK/@latest~N, N a number"
                ),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `@latest` and `@latest~N` are places and print back as written; any
    /// other run part, even one starting with `@`, is an id; a malformed
    /// place is refused rather than taken for an id.
    #[test]
    fn places_parse_and_ids_stay_ids() {
        let latest = |back| RunRef::Latest {
            task_id: "t".into(),
            back,
        };
        for (text, expected) in [
            ("t/@latest", latest(0)),
            ("t/@latest~0", latest(0)),
            ("t/@latest~12", latest(12)),
            ("t/run-1", RunRef::Id(RunKey::new("t", "run-1"))),
            ("t/@other", RunRef::Id(RunKey::new("t", "@other"))),
            ("t/latest", RunRef::Id(RunKey::new("t", "latest"))),
        ] {
            let parsed: RunRef = text.parse().unwrap();
            assert_eq!(parsed, expected, "{text}");
        }
        assert_eq!(latest(0).to_string(), "t/@latest");
        assert_eq!(latest(3).to_string(), "t/@latest~3");
        for bad in [
            "t/@latest~",
            "t/@latest~x",
            "t/@latest~-1",
            "t/@latestx",
            "@latest",
        ] {
            assert!(bad.parse::<RunRef>().is_err(), "{bad} accepted");
        }
    }
}
