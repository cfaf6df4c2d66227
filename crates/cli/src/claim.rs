//! Which run `baa-log exec` writes to when the id is not a fresh one: the
//! next attempt that `--retry-of` asks for ([`next_attempt`]), and whether
//! a run id may be taken at all ([`claim`]). Both ask the server before
//! `exec` prints its run line, so that a refusal prints no run and leaves
//! nothing behind.
//!
//! # What links attempts
//!
//! The contract's `RunMetadata` has no field for the run an attempt
//! retries. Attempts of a step are linked by what they share: the task,
//! the step id and consecutive attempt numbers; by their ids, the earlier
//! id with an attempt suffix (`crate::attempt_id`); and by the new run's
//! `worker_started` event, whose data says `retryOf: "TASK/RUN"`.
//!
//! # Which runs exec takes
//!
//! - An id no run has: `exec` prepares the run.
//! - A run that is the same attempt of the same step, still `prepared`
//!   (never started), with the same step name, worker kind, command and
//!   directory: `exec` prepares it again with the run's own creation time,
//!   which the server answers as a repeated prepare of the same run, and
//!   goes on in it. This is the idempotent re-prepare: the same command
//!   line tried again after an `exec` that prepared its run and then lost
//!   the server before it started the command.
//! - Anything else is refused: a run of another attempt or step (with a
//!   hint at `--retry-of`), a prepared run with other metadata, and a run
//!   of the same attempt that has started, whatever its status (a
//!   `running` one may have a live worker).
//!
//! # Why a taken attempt is refused, not skipped
//!
//! When the attempt after the run given to `--retry-of` exists and has
//! started, `exec` refuses and names that attempt as the one to retry,
//! rather than picking the next free number. So attempt N + 1 always
//! retries attempt N and its `retryOf` says so, a chain's numbers have no
//! gaps, and two workers that retry the same run at the same moment do not
//! both go on: one prepares the run first, and the other's prepare, whose
//! creation time differs, is refused by the server.
//!
//! One race is left: a `prepared` run has no owner the server knows of,
//! and a status has no compare-and-set, so two `exec`s that ask for the
//! same prepared run in the same moment can both take it; each then
//! writes to it under its own writer id.

use baa_logging_client::{Client, ClientError, NewRun, RunKey, pb};
use baa_logging_config::ids::id_problem;
use tonic::Code;

use crate::{Failure, attempt_id::derived_run_id, render, run_ref::RunRef};

/// Who a new run is and which run it retries, before its id is claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attempt {
    /// The run's name.
    pub(crate) key: RunKey,
    /// The step's id, which every attempt of the step shares.
    pub(crate) step_id: String,
    /// The step's name, taken over from the earlier attempt.
    pub(crate) step_name: String,
    /// The attempt number.
    pub(crate) attempt: u32,
    /// The run this one retries; `None` for an attempt that names no
    /// earlier run (`--attempt N` without `--retry-of`).
    pub(crate) retry_of: Option<RunKey>,
}

/// The attempt after the run `of` names: its task, step id and step name,
/// the next attempt number, and the id `run_id` or else the derived one
/// (`crate::attempt_id`). `task`, when given, must be the same task.
///
/// # Errors
///
/// A failure that says what is wrong: the run to retry does not exist,
/// `task` differs, the derived id is too long; errors of `ListRuns` (for
/// `@latest`) and `GetRun`.
pub(crate) async fn next_attempt(
    client: &Client,
    of: &RunRef,
    task: Option<&str>,
    run_id: Option<&str>,
    explain: &impl Fn(ClientError) -> Failure,
) -> Result<Attempt, Failure> {
    let earlier = of.resolve(client).await.map_err(explain)?;
    if let Some(task) = task.filter(|task| *task != earlier.task_id) {
        return Err(Failure::new(format!(
            "--task {task} and --retry-of {of} name different tasks; leave out --task"
        )));
    }
    let metadata = match client.get_run(&earlier).await {
        Ok(run) => run.metadata.unwrap_or_default(),
        Err(err) if err.code() == Some(Code::NotFound) => {
            return Err(Failure::new(format!(
                "the run to retry, {earlier}, does not exist; `baa-log runs --task {}` lists \
                 the task's runs",
                earlier.task_id
            )));
        }
        Err(err) => return Err(explain(err)),
    };
    let next = metadata.attempt.checked_add(1).ok_or_else(|| {
        Failure::new(format!(
            "{earlier} is attempt {}, the last there can be",
            metadata.attempt
        ))
    })?;
    let run_id = match run_id {
        Some(run_id) => run_id.to_owned(),
        None => derived_run_id(&earlier.run_id, metadata.attempt, next).map_err(|reason| {
            Failure::new(format!(
                "the run to retry, {earlier}, {reason}; name the new run with --run ID"
            ))
        })?,
    };
    Ok(Attempt {
        key: RunKey::new(&earlier.task_id, run_id),
        step_id: metadata.step_id,
        step_name: metadata.step_name,
        attempt: next,
        retry_of: Some(earlier),
    })
}

/// `run`, ready to prepare, when its id may be taken (see the module
/// header): as it is for an id no run has, or with the creation time of
/// the prepared run it takes again. `retry_of` is the run it retries, for
/// what a refusal suggests.
///
/// # Errors
///
/// A failure that says which run exists, as what, and what to do instead;
/// a run id that breaks the id rule; errors of `GetRun`.
pub(crate) async fn claim(
    client: &Client,
    run: NewRun,
    retry_of: Option<&RunKey>,
    explain: &impl Fn(ClientError) -> Failure,
) -> Result<NewRun, Failure> {
    let key = run.key();
    if let Some(problem) = id_problem(&key.run_id) {
        return Err(Failure::new(format!(
            "the run id `{}` {problem}",
            key.run_id
        )));
    }
    let existing = match client.get_run(&key).await {
        Ok(existing) => existing,
        Err(err) if err.code() == Some(Code::NotFound) => return Ok(run),
        Err(err) => return Err(explain(err)),
    };
    let have = existing.metadata.unwrap_or_default();
    let status = existing.state.unwrap_or_default().status();
    let wanted = run.clone().into_request().metadata.unwrap_or_default();
    let same_attempt = have.step_id == wanted.step_id && have.attempt == wanted.attempt;
    let prepared = status == pb::RunStatus::Prepared;
    if same_attempt && prepared && same_but_time(&have, &wanted) {
        return Ok(run.created_at(have.created_at));
    }
    let exists = format!(
        "cannot use run {key}: it exists already, as attempt {} of step `{}` ({})",
        have.attempt,
        have.step_id,
        render::status_name(status)
    );
    let instead = match retry_of {
        None => "leave out --run for a fresh id",
        Some(_) => "name the new run with --run ID",
    };
    let message = match retry_of {
        _ if same_attempt && prepared => {
            format!(
                "{exists}, prepared with other metadata (command, directory, step name or worker kind); {instead}"
            )
        }
        None => format!(
            "{exists}; to run its next attempt, use --retry-of {key} instead of --run and \
             --attempt"
        ),
        Some(earlier) if same_attempt => format!(
            "attempt {} of {earlier} exists already: {key} ({}); to retry again, use \
             --retry-of {key}",
            have.attempt,
            render::status_name(status)
        ),
        Some(earlier) => format!(
            "{exists}, so it cannot be attempt {} of {earlier}; {instead}",
            wanted.attempt
        ),
    };
    Err(Failure::new(message))
}

/// Whether a stored run's metadata is what `exec` would prepare, but for
/// the creation time (and the ids, which the caller compared).
fn same_but_time(have: &pb::RunMetadata, wanted: &pb::RunMetadataInput) -> bool {
    have.step_name == wanted.step_name
        && have.worker_kind == wanted.worker_kind
        && have.repo_root == wanted.repo_root
        && have.worktree_path == wanted.worktree_path
        && have.checkpoint_mode == wanted.checkpoint_mode
        && have.prompt_summary == wanted.prompt_summary
        && have.command == wanted.command
}
