//! `baa-log exec`: runs a command as a worker. Its stdout and stderr are
//! shown on this terminal and appended to a run as they come; its start
//! and exit are lifecycle events; its exit decides the run's status and
//! baa-log's own exit code. Which run it writes to, a fresh one, a given
//! id or the next attempt of an earlier run (`--retry-of`), is settled by
//! `claim` before the run line is printed.

use std::{io::IsTerminal, os::unix::process::ExitStatusExt, process::Stdio};

use baa_logging_client::{
    AsyncOutputWriter, Client, ClientError, NewRun, RunKey, RunWriter, WriterOptions, pb,
};
use clap::Args;
use nix::{sys::signal::Signal, unistd::Pid};
use serde_json::{Value as Json, json};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    signal::unix::{SignalKind, signal},
};
use tonic::Code;

use crate::{
    Failure,
    claim::{self, Attempt},
    parse_run,
    run_ref::RunRef,
};

/// The exit code when the command is not found, as shells, `env` and
/// `docker run` use it.
const NOT_FOUND: u8 = 127;

/// The exit code when the command is found but cannot be run (not
/// executable, not a program), as shells, `env` and `docker run` use it.
const NOT_EXECUTABLE: u8 = 126;

/// The exit code for `exec`'s own failures, before the command runs (the
/// server unreachable, the run refused), as `env`, `timeout` and `docker
/// run` use it: apart from any code the command itself can give.
pub(crate) const OWN_FAILURE: u8 = 125;

/// `failure` as `exec` reports it: its own failures exit with
/// [`OWN_FAILURE`]; the codes of a command that could not start stay.
pub(crate) fn own_failure(failure: Failure) -> Failure {
    match failure.code {
        NOT_FOUND | NOT_EXECUTABLE => failure,
        _ => Failure {
            code: OWN_FAILURE,
            ..failure
        },
    }
}

/// Arguments of `baa-log exec`.
#[derive(Debug, Args)]
pub(crate) struct ExecArgs {
    /// The task the run belongs to. With --retry-of, the task of the run
    /// retried, which --task may repeat but not change.
    #[arg(long, required_unless_present = "retry_of")]
    task: Option<String>,
    /// The run's id; default: a fresh one, or with --retry-of the retried
    /// run's id with the attempt as suffix (ID.2, ID.3, ...); printed
    /// first. A run that exists already is refused, unless it is the same
    /// attempt of the same step, prepared and never started.
    #[arg(long)]
    run: Option<String>,
    /// The step's id.
    #[arg(long, default_value = "main", conflicts_with = "retry_of")]
    step: String,
    /// The step's name; default: the step's id.
    #[arg(long, conflicts_with = "retry_of")]
    step_name: Option<String>,
    /// Which attempt of the step this is, for a run with a new id. To run
    /// the next attempt of a run that exists, use --retry-of instead.
    #[arg(long, default_value_t = 1, conflicts_with = "retry_of")]
    attempt: u32,
    /// Run the next attempt of this run (TASK/RUN, TASK/@latest or
    /// TASK/@latest~N): the same task, step id and step name, its attempt
    /// number plus one, and its id with that attempt as suffix. Refused
    /// when that attempt exists and has started: retry the latest attempt.
    /// The new run's worker_started event names the earlier run as retryOf.
    #[arg(long, value_name = "TASK/RUN", value_parser = parse_run)]
    retry_of: Option<RunRef>,
    /// The writer id, to go on after an earlier writer of the same run.
    #[arg(long)]
    writer_id: Option<String>,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// Runs the command as a worker of a run; returns its exit code.
pub(crate) async fn exec(
    client: &Client,
    args: ExecArgs,
    explain: &impl Fn(ClientError) -> Failure,
) -> Result<u8, Failure> {
    let cwd = std::env::current_dir()
        .map(|dir| dir.display().to_string())
        .unwrap_or_default();
    let attempt = prepare(client, &args, &cwd, explain).await?;
    let key = attempt.key.clone();
    // Printed once the run is ours, and before the command writes a line.
    match &attempt.retry_of {
        Some(earlier) => eprintln!(
            "baa-log: run {key} (attempt {} of {earlier})",
            attempt.attempt
        ),
        None => eprintln!("baa-log: run {key}"),
    }
    let options = WriterOptions {
        writer_id: args.writer_id.clone(),
        ..WriterOptions::default()
    };
    let writer = client.writer(key.clone(), options).await.map_err(explain)?;

    // The run is marked running before the command starts, so that a
    // failure here leaves no command behind without its run.
    writer
        .set_status(pb::RunStatus::Running)
        .await
        .map_err(explain)?;
    // Signals are caught before the command starts, so that none of them
    // ends baa-log before it has recorded how the command ended.
    let forwarder = SignalForwarder::new().map_err(|err| Failure::new(err.to_string()))?;
    let mut child = match tokio::process::Command::new(&args.command[0])
        .args(&args.command[1..])
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(err) => {
            let code = match err.kind() {
                std::io::ErrorKind::NotFound => NOT_FOUND,
                _ => NOT_EXECUTABLE,
            };
            let message = format!("cannot start {}: {err}", args.command[0]);
            let recorded = record_start_failure(&writer, &message, code).await;
            return Err(Failure {
                message: match recorded {
                    Ok(()) => message,
                    Err(log_err) => format!("{message} (and the run was not updated: {log_err})"),
                },
                code,
            });
        }
    };
    // From here on nothing returns early: the command's output is carried
    // and its exit recorded whatever the log side does.
    let pid = child.id();
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let out_pump = tokio::spawn(pump(
        stdout,
        tokio::io::stdout(),
        writer.async_output_writer(pb::StreamLogChannel::Stdout),
    ));
    let err_pump = tokio::spawn(pump(
        stderr,
        tokio::io::stderr(),
        writer.async_output_writer(pb::StreamLogChannel::Stderr),
    ));
    let forwarding = pid.map(|pid| tokio::spawn(forwarder.forward_to(pid)));
    let mut log_errors = Vec::new();
    if let Err(err) = writer
        .event(
            pb::WorkerLifecycleEventType::WorkerStarted,
            pb::LogLevel::Info,
            format!("started {}", args.command[0]),
            started_data(pid, &args.command, &cwd, attempt.retry_of.as_ref()),
        )
        .await
    {
        log_errors.push(explain(err).message);
    }
    let status = child.wait().await;
    // The process is reaped: its pid may be someone else's from now on.
    if let Some(forwarding) = forwarding {
        forwarding.abort();
    }
    let status =
        status.map_err(|err| Failure::new(format!("cannot wait for the command: {err}")))?;

    let (code, ended) = match (status.code(), status.signal()) {
        (Some(code), _) => (code, format!("exited with code {code}")),
        (None, Some(signo)) => {
            let name =
                Signal::try_from(signo).map_or_else(|_| signo.to_string(), |s| s.to_string());
            (128 + signo, format!("killed by {name}"))
        }
        (None, None) => (1, "ended".to_string()),
    };
    let success = status.success();
    let run_status = if success {
        pb::RunStatus::Completed
    } else {
        pb::RunStatus::Failed
    };
    let record = async {
        for pump in [out_pump, err_pump] {
            match pump.await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => log_errors.push(err),
                Err(err) => log_errors.push(err.to_string()),
            }
        }
        let recorded = async {
            writer
                .event(
                    pb::WorkerLifecycleEventType::WorkerExited,
                    if success {
                        pb::LogLevel::Info
                    } else {
                        pb::LogLevel::Error
                    },
                    format!("{} {ended}", args.command[0]),
                    json!({ "exitCode": status.code(), "signal": status.signal() }),
                )
                .await?;
            writer
                .clone()
                .finish(run_status, Some(code), Some(ended.clone()))
                .await
        }
        .await;
        if let Err(err) = recorded {
            log_errors.push(explain(err).message);
            // The writer stopped; the run must still end, or its
            // followers wait for ever.
            let patch = pb::RunStatePatch {
                status: Some(run_status as i32),
                exit_code: Some(code),
                summary: Some(ended.clone()),
                ..Default::default()
            };
            let _ = client.update_run_state(&key, patch).await;
        }
    };
    // The command is gone; if the log side cannot finish (the server is
    // away), a SIGINT or SIGTERM ends the wait instead of being ignored.
    let mut interrupt = signal(SignalKind::interrupt()).ok();
    let mut terminate = signal(SignalKind::terminate()).ok();
    let gave_up = tokio::select! {
        () = record => false,
        Some(()) = recv(&mut interrupt) => true,
        Some(()) = recv(&mut terminate) => true,
    };
    if gave_up {
        log_errors.push("stopped waiting for the server to store the rest".into());
    }
    for err in &log_errors {
        eprintln!("baa-log: the log of run {key} may be incomplete: {err}");
    }
    Ok(u8::try_from(code).unwrap_or(1))
}

/// Prepares the run to write to and says who it is: the next attempt of
/// `--retry-of`, or the task, id (given or fresh), step and attempt the
/// flags name. An id that is not fresh is claimed first (see `claim`).
async fn prepare(
    client: &Client,
    args: &ExecArgs,
    cwd: &str,
    explain: &impl Fn(ClientError) -> Failure,
) -> Result<Attempt, Failure> {
    let attempt = match &args.retry_of {
        Some(of) => {
            let (task, run) = (args.task.as_deref(), args.run.as_deref());
            claim::next_attempt(client, of, task, run, explain).await?
        }
        None => Attempt {
            key: RunKey::new(
                args.task
                    .as_deref()
                    .expect("clap requires --task without --retry-of"),
                args.run.clone().unwrap_or_else(fresh_run_id),
            ),
            step_id: args.step.clone(),
            step_name: args.step_name.clone().unwrap_or_else(|| args.step.clone()),
            attempt: args.attempt,
            retry_of: None,
        },
    };
    let key = &attempt.key;
    let mut new_run = NewRun::new(&key.task_id, &key.run_id)
        .step(&attempt.step_id, &attempt.step_name)
        .attempt(attempt.attempt)
        .worker_kind("baa-log exec")
        .command(shell_line(&args.command))
        .paths(cwd, cwd);
    // A fresh id is taken to be new, as it was made to be; any other id is
    // checked against the runs there are.
    if args.run.is_some() || attempt.retry_of.is_some() {
        new_run = claim::claim(client, new_run, attempt.retry_of.as_ref(), explain).await?;
    }
    match client.prepare_run(new_run).await {
        Ok(_) => Ok(attempt),
        // Prepared by someone else between the claim and now.
        Err(err) if err.code() == Some(Code::AlreadyExists) => Err(Failure::new(format!(
            "cannot use run {key}: another worker prepared it a moment ago"
        ))),
        Err(err) => Err(explain(err)),
    }
}

/// The data of the `worker_started` event: the command's pid, words and
/// directory, and for a retry the run it retries, as `retryOf: "TASK/RUN"`
/// (the contracts' metadata has no field for it).
fn started_data(
    pid: Option<u32>,
    command: &[String],
    cwd: &str,
    retry_of: Option<&RunKey>,
) -> Json {
    let mut data = json!({ "pid": pid, "command": command, "cwd": cwd });
    if let Some(earlier) = retry_of {
        data["retryOf"] = earlier.to_string().into();
    }
    data
}

/// The next delivery of a signal, or never without a listener.
async fn recv(signal: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match signal {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
}

/// Copies a pipe to the terminal and to the run until it ends. The pipe is
/// always drained, so the command never blocks on a full pipe because the
/// terminal went away; when the run stops taking output, the terminal
/// still gets it, and the error is returned at the end.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut terminal: impl AsyncWrite + Unpin,
    mut log: AsyncOutputWriter,
) -> Result<(), String> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut terminal_open = true;
    let mut log_error = None;
    loop {
        let read = from.read(&mut buf).await.map_err(|err| err.to_string())?;
        if read == 0 {
            break;
        }
        if terminal_open {
            terminal_open =
                terminal.write_all(&buf[..read]).await.is_ok() && terminal.flush().await.is_ok();
        }
        if log_error.is_none() {
            if let Err(err) = log.write_all(&buf[..read]).await {
                log_error = Some(err.to_string());
            }
        }
    }
    if log_error.is_none() {
        if let Err(err) = log.shutdown().await {
            log_error = Some(err.to_string());
        }
    }
    log_error.map_or(Ok(()), Err)
}

/// Records that the command could not start, and fails the run.
async fn record_start_failure(
    writer: &RunWriter,
    message: &str,
    code: u8,
) -> Result<(), ClientError> {
    writer
        .event(
            pb::WorkerLifecycleEventType::WorkerExited,
            pb::LogLevel::Error,
            message,
            json!({ "exitCode": code }),
        )
        .await?;
    writer
        .clone()
        .finish(
            pb::RunStatus::Failed,
            Some(i32::from(code)),
            Some(message.to_string()),
        )
        .await
        .map(drop)
}

/// Catches SIGINT and SIGTERM and passes them on to the command.
///
/// A Ctrl-C at a terminal reaches the whole foreground process group, the
/// command included, so when stdin is a terminal SIGINT is not sent again:
/// a second one would cut short the command's own clean-up. SIGTERM is
/// aimed at baa-log alone and is always passed on.
struct SignalForwarder {
    /// SIGINT deliveries.
    interrupt: tokio::signal::unix::Signal,
    /// SIGTERM deliveries.
    terminate: tokio::signal::unix::Signal,
    /// Whether SIGINT is likely to come from the terminal.
    interactive: bool,
}

impl SignalForwarder {
    /// Starts catching the signals.
    fn new() -> std::io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            interactive: std::io::stdin().is_terminal(),
        })
    }

    /// Passes signals on to the process `pid` until aborted.
    async fn forward_to(mut self, pid: u32) {
        // Pid 0 would signal our whole process group.
        let Ok(pid) = i32::try_from(pid) else { return };
        if pid <= 0 {
            return;
        }
        let pid = Pid::from_raw(pid);
        loop {
            let signal = tokio::select! {
                _ = self.interrupt.recv() => {
                    if self.interactive {
                        continue;
                    }
                    Signal::SIGINT
                }
                _ = self.terminate.recv() => Signal::SIGTERM,
            };
            // The command may have ended already; nothing to do then.
            let _ = nix::sys::signal::kill(pid, signal);
        }
    }
}

/// A run id from the current time and a random part:
/// `20261126T041502Z-3fa2`.
fn fresh_run_id() -> String {
    format!(
        "{}-{:04x}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        fastrand::u16(..)
    )
}

/// A command line as a shell would take it back: words with spaces or
/// quotes are single-quoted.
fn shell_line(words: &[String]) -> String {
    words
        .iter()
        .map(|word| {
            let plain = !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c));
            if plain {
                word.clone()
            } else {
                format!("'{}'", word.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
