//! `baa-log exec`: runs a command as a worker. Its stdout and stderr are
//! shown on this terminal and appended to a run as they come; its start
//! and exit are lifecycle events; its exit decides the run's status and
//! baa-log's own exit code. Which run it writes to, a fresh one, a given
//! id or the next attempt of an earlier run (`--retry-of`), is settled by
//! `claim` before the run line is printed.

use std::{
    os::unix::process::ExitStatusExt,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use baa_logging_client::{
    AsyncOutputWriter, Client, ClientError, ConnectOptions, NewRun, RunKey, RunWriter,
    WriterOptions, pb,
};
use baa_logging_config::ids;
use baa_logging_mask::{Masker, Rules};
use clap::Args;
use futures::FutureExt;
use nix::{sys::signal::Signal, unistd::Pid};
use serde_json::{Value as Json, json};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    signal::unix::{SignalKind, signal},
    sync::oneshot,
};
use tonic::Code;

use crate::{
    Failure,
    claim::{self, Attempt},
    masks::MaskArgs,
    parse_run,
    run_ref::RunRef,
    spawn::{self, Mode, SpawnError},
    spool::{self, SpoolArgs},
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

/// The exit code when the command succeeded but a file `--artifacts`
/// matched could not be uploaded: CI steps fail when their artifacts are
/// missing (as GitHub's upload-artifact and Buildkite's artifact upload
/// do), and this code tells that failure apart from the command's own and
/// from exec's failures before the command runs (125).
/// `--artifacts-optional` turns it off.
pub(crate) const ARTIFACTS_FAILED: u8 = 122;

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
    /// When the command has ended, upload the files that match this glob
    /// (relative to the working directory, e.g. 'target/*.xml') as
    /// artifacts of the run, each under its path as matched, before the
    /// run is finished; repeatable. exec says on stderr what it uploaded.
    /// A file that cannot be uploaded (over the server's max_object_bytes,
    /// its name taken by other content, the server away) fails a command
    /// that succeeded: exec exits 122 and the run is failed, with exit
    /// code 122 and a summary that says how many were not uploaded. A
    /// command that failed keeps its own code. A glob that matches no
    /// file is only a warning.
    #[arg(long = "artifacts", value_name = "GLOB", value_parser = parse_glob)]
    artifacts: Vec<String>,
    /// Artifacts that cannot be uploaded are only reported on stderr (and
    /// in the run's summary): exec exits with the command's code, and the
    /// run's status is the command's.
    #[arg(long, requires = "artifacts")]
    artifacts_optional: bool,
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
    /// Ask the server for a worker lease this long (10m, 2h) instead of
    /// its own, for a worker that may be cut off from the server for a
    /// while: the run is failed as lost only after that long without a
    /// word from this worker. The server caps it (max_worker_lease).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    lease: Option<Duration>,
    /// Where the output goes while the server is away, and how long exec
    /// waits for it at the end.
    #[command(flatten)]
    spool: SpoolArgs,
    /// Which values are masked in the run.
    #[command(flatten)]
    masks: MaskArgs,
    /// Run the command in a pseudo-terminal, also when baa-log's stdout is
    /// not a terminal (when it is, this is the default). One terminal is
    /// the command's stdin, stdout and stderr, so it writes line by line,
    /// in colour and with progress bars, as at a terminal; all it writes,
    /// stderr too, is stored on the stdout channel, as written (`\r` and
    /// escape sequences included; a `\n` stays a `\n`). Keys reach it as at
    /// a terminal: baa-log's terminal is raw meanwhile, so Ctrl-C, Ctrl-Z
    /// and Ctrl-D go to the command's terminal. Input that is not a
    /// terminal is passed on, then end of file. The window size is
    /// baa-log's terminal's, followed as it changes (without one,
    /// COLUMNS x LINES or 80 x 24).
    #[arg(long)]
    pty: bool,
    /// Like --pty, but stderr gets a pseudo-terminal of its own, so it is
    /// stored on the stderr channel while both stdout and stderr are
    /// terminals to the command (stdin and stdout share the first, the
    /// command's controlling terminal). As with pipes, what the command
    /// writes to the two at once may be stored in another order.
    #[arg(long)]
    split_pty: bool,
    /// Run the command with pipes for stdout and stderr and baa-log's own
    /// stdin (when baa-log's stdout is not a terminal, this is the
    /// default): the command sees no terminal (most programs then buffer
    /// their output and leave out colours), and its stdout and stderr are
    /// stored on their own channels.
    #[arg(long, conflicts_with_all = ["pty", "split_pty"])]
    no_pty: bool,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// Runs the command as a worker of a run; returns its exit code.
pub(crate) async fn exec(
    options: &ConnectOptions,
    args: ExecArgs,
    explain: &impl Fn(ClientError) -> Failure,
) -> Result<u8, Failure> {
    let cwd = std::env::current_dir()
        .map(|dir| dir.display().to_string())
        .unwrap_or_default();
    let Log {
        writer,
        attempt,
        warned,
    } = open_log(options, &args, &cwd, explain).await?;
    let key = attempt.key.clone();
    // Signals are caught before the command starts, so that none of them
    // ends baa-log before it has recorded how the command ended.
    let mode = Mode::choose(args.pty, args.no_pty, args.split_pty);
    let forwarder = SignalForwarder::new(mode.terminal_interrupts_command())
        .map_err(|err| Failure::new(err.to_string()))?;
    let spawned = match spawn::spawn(&args.command, mode) {
        Ok(spawned) => spawned,
        Err(err) => {
            let (code, message) = match err {
                SpawnError::Command(err) => (
                    match err.kind() {
                        std::io::ErrorKind::NotFound => NOT_FOUND,
                        _ => NOT_EXECUTABLE,
                    },
                    format!("cannot start {}: {err}", args.command[0]),
                ),
                SpawnError::Terminal(err) => (
                    OWN_FAILURE,
                    format!(
                        "cannot open a pseudo-terminal for {}: {err}",
                        args.command[0]
                    ),
                ),
            };
            let exited = Exited {
                level: pb::LogLevel::Error,
                message: message.clone(),
                data: json!({ "exitCode": code }),
                status: pb::RunStatus::Failed,
                code: i32::from(code),
                summary: message.clone(),
            };
            let stored = end_log(writer, &args, exited).await;
            return Err(Failure {
                message: match stored {
                    Ok(()) => message,
                    Err(()) => format!("{message} (and the run may not say so)"),
                },
                code,
            });
        }
    };
    // From here on nothing returns early: the command's output is carried
    // and its exit recorded whatever the log side does.
    let pid = spawned.pid;
    let pumps: Vec<_> = spawned
        .outputs
        .into_iter()
        .map(|(channel, output)| {
            let log = writer.async_output_writer(channel);
            match channel {
                pb::StreamLogChannel::Stderr => {
                    tokio::spawn(pump(output, tokio::io::stderr(), log))
                }
                _ => tokio::spawn(pump(output, tokio::io::stdout(), log)),
            }
        })
        .collect();
    let forwarding = spawned
        .signal_target
        .map(|target| tokio::spawn(forwarder.forward_to(target)));
    let (stop_watching, stop) = oneshot::channel();
    let warned = Arc::new(AtomicBool::new(warned));
    let command_ended = Arc::new(AtomicBool::new(false));
    let watching = tokio::spawn(watch_server(
        writer.clone(),
        options.addresses().join(","),
        warned.clone(),
        command_ended.clone(),
        args.spool.delivery_wait,
        stop,
    ));
    let mut log_errors = Vec::new();
    if let Err(err) = writer
        .event(
            pb::WorkerLifecycleEventType::WorkerStarted,
            pb::LogLevel::Info,
            format!("started {}", args.command[0]),
            started_data(pid, &args.command, &cwd, attempt.retry_of.as_ref(), mode),
        )
        .await
    {
        log_errors.push(explain(err).message);
    }
    let status = spawned.process.wait().await;
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
    for pump in pumps {
        match pump.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => log_errors.push(err),
            Err(err) => log_errors.push(err.to_string()),
        }
    }
    let mut exited = Exited {
        level: if success {
            pb::LogLevel::Info
        } else {
            pb::LogLevel::Error
        },
        message: format!("{} {ended}", args.command[0]),
        data: json!({ "exitCode": status.code(), "signal": status.signal() }),
        status: if success {
            pb::RunStatus::Completed
        } else {
            pb::RunStatus::Failed
        },
        code,
        summary: ended,
    };
    for err in &log_errors {
        eprintln!("baa-log: the log of run {key} may be incomplete: {err}");
    }
    // Before the run is finished: a terminal run takes no objects.
    let not_uploaded = upload_artifacts(options, &key, &args.artifacts).await;
    exited.artifacts_not_uploaded(not_uploaded, !args.artifacts_optional);
    let code = exited.code;
    command_ended.store(true, Ordering::Relaxed);
    if warned.load(Ordering::Relaxed) && writer.server_away() {
        eprintln!(
            "baa-log: the command has ended; waiting up to {} for the server to take its output",
            humantime::format_duration(args.spool.delivery_wait)
        );
    }
    let stored = end_log(writer, &args, exited).await.is_ok() && log_errors.is_empty();
    let _ = stop_watching.send(());
    let _ = watching.await;
    if args.spool.fail_closed && !stored {
        // The strict mode's code for a log not wholly stored.
        return Ok(OWN_FAILURE);
    }
    Ok(u8::try_from(code).unwrap_or(1))
}

/// Parses an `--artifacts` glob for clap, so that a bad pattern is
/// refused before the command runs.
fn parse_glob(text: &str) -> Result<String, String> {
    glob::Pattern::new(text)
        .map(|_| text.to_owned())
        .map_err(|err| format!("not a glob: {err}"))
}

/// Uploads the files that `patterns` (`--artifacts`) match as artifacts
/// of `key`, saying on stderr what it did; returns how many could not be
/// uploaded (a connection that cannot be made counts as one).
async fn upload_artifacts(options: &ConnectOptions, key: &RunKey, patterns: &[String]) -> usize {
    if patterns.is_empty() {
        return 0;
    }
    match Client::connect_lazy_with(options) {
        Ok(client) => crate::objects::upload_matches(&client, key, patterns).await,
        Err(err) => {
            eprintln!("baa-log: cannot upload the artifacts of {key}: {err}");
            1
        }
    }
}

/// How the command ended, as the run records it.
#[derive(Debug)]
struct Exited {
    /// The `worker_exited` event's level.
    level: pb::LogLevel,
    /// Its message.
    message: String,
    /// Its data.
    data: Json,
    /// The run's final status.
    status: pb::RunStatus,
    /// The exit code.
    code: i32,
    /// The state's summary.
    summary: String,
}

impl Exited {
    /// Records that `count` artifacts could not be uploaded: the summary
    /// and the `worker_exited` data (`artifactsNotUploaded`) say so, and
    /// when they are `required` and the command succeeded, the run fails
    /// with [`ARTIFACTS_FAILED`] as its exit code. A command that failed
    /// keeps its own status and code: that failure is the one to see.
    fn artifacts_not_uploaded(&mut self, count: usize, required: bool) {
        if count == 0 {
            return;
        }
        let noun = if count == 1 { "artifact" } else { "artifacts" };
        self.summary = format!("{}; {count} {noun} not uploaded", self.summary);
        self.data["artifactsNotUploaded"] = count.into();
        if required && self.status == pb::RunStatus::Completed {
            eprintln!(
                "baa-log: the command succeeded, but {count} {noun} could not be uploaded: \
                 exiting with {ARTIFACTS_FAILED} (--artifacts-optional makes this a warning)"
            );
            self.status = pb::RunStatus::Failed;
            self.level = pb::LogLevel::Error;
            self.code = i32::from(ARTIFACTS_FAILED);
        }
    }
}

/// The run's writer, once exec has one.
#[derive(Debug)]
struct Log {
    /// The writer: spooled, unless --fail-closed.
    writer: RunWriter,
    /// Which run and attempt.
    attempt: Attempt,
    /// Whether the user was told the server is away.
    warned: bool,
}

/// Connects, settles which run to write to, and opens its writer; prints
/// the run line. Without --fail-closed, a server that cannot be reached
/// does not stop the command: the run is prepared when the server is back,
/// and the output waits in the spool until then.
async fn open_log(
    options: &ConnectOptions,
    args: &ExecArgs,
    cwd: &str,
    explain: &impl Fn(ClientError) -> Failure,
) -> Result<Log, Failure> {
    let secrets = args.masks.secrets()?;
    // The run's metadata is masked too: its command line may hold a value.
    let masker = Masker::with_secrets(secrets.clone(), Rules::none());
    let writer_options = WriterOptions {
        writer_id: args.writer_id.clone(),
        lease: args.lease,
        secrets,
        ..WriterOptions::default()
    };
    let running = pb::RunStatePatch {
        status: Some(pb::RunStatus::Running as i32),
        ..Default::default()
    };
    let client = match Client::connect_with(options).await {
        Ok(client) => client,
        Err(err) if !args.spool.fail_closed && is_unreachable(&err) => {
            let reason = explain(err).message;
            if args.retry_of.is_some() || args.writer_id.is_some() {
                let flag = if args.retry_of.is_some() {
                    "--retry-of"
                } else {
                    "--writer-id"
                };
                return Err(Failure::new(format!(
                    "{reason}; {flag} needs the server, to know what came before"
                )));
            }
            let client = Client::connect_lazy_with(options).map_err(explain)?;
            let attempt = local_attempt(args)?;
            let new_run = new_run(&attempt, args, cwd, &masker);
            let spool = args.spool.options(&attempt.key);
            let writer = client
                .spooled_writer(attempt.key.clone(), Some(new_run), writer_options, &spool)
                .await
                .map_err(explain)?;
            announce(&attempt);
            eprintln!(
                "baa-log: {reason}\nbaa-log: running the command anyway; its output is kept in {} \
                 until the server is back",
                spool.path.display()
            );
            writer.queue_state(running).await.map_err(explain)?;
            return Ok(Log {
                writer,
                attempt,
                warned: true,
            });
        }
        Err(err) => return Err(explain(err)),
    };
    let attempt = prepare(&client, args, cwd, &masker, explain).await?;
    let key = attempt.key.clone();
    announce(&attempt);
    let writer = if args.spool.fail_closed {
        client.writer(key, writer_options).await.map_err(explain)?
    } else {
        let spool = args.spool.options(&key);
        client
            .spooled_writer(key, None, writer_options, &spool)
            .await
            .map_err(explain)?
    };
    // The run is marked running before the command starts, so that a
    // failure here leaves no command behind without its run.
    writer.queue_state(running).await.map_err(explain)?;
    Ok(Log {
        writer,
        attempt,
        warned: false,
    })
}

/// Prints the run line: once the run is ours, and before the command
/// writes a line.
fn announce(attempt: &Attempt) {
    let key = &attempt.key;
    match &attempt.retry_of {
        Some(earlier) => eprintln!(
            "baa-log: run {key} (attempt {} of {earlier})",
            attempt.attempt
        ),
        None => eprintln!("baa-log: run {key}"),
    }
}

/// Whether `err` says the server is not there (as opposed to refusing us,
/// or a TLS setup that cannot work).
fn is_unreachable(err: &ClientError) -> bool {
    match err {
        ClientError::Connect { source, .. } => {
            let mut cause: Option<&dyn std::error::Error> = Some(source);
            let mut text = String::new();
            while let Some(err) = cause {
                text.push_str(&err.to_string().to_ascii_lowercase());
                cause = err.source();
            }
            !(text.contains("certificate") || text.contains("tls") || text.contains("handshake"))
        }
        ClientError::Unreachable { attempts } => attempts.iter().all(is_unreachable),
        ClientError::Status(status) => status.code() == Code::Unavailable,
        _ => false,
    }
}

/// Records how the command ended and the run's final status, then waits
/// for the server to hold the log: a spooled writer at most
/// --delivery-wait (or until SIGINT or SIGTERM), then says what it did
/// not deliver and where the spool is. Err when the log is not all stored.
async fn end_log(writer: RunWriter, args: &ExecArgs, exited: Exited) -> Result<(), ()> {
    let key = writer.key().clone();
    let patch = pb::RunStatePatch {
        status: Some(exited.status as i32),
        exit_code: Some(exited.code),
        summary: Some(exited.summary.clone()),
        ..Default::default()
    };
    let spool = writer.spool_path().map(Path::to_path_buf);
    let waiting = async {
        let event = writer
            .event(
                pb::WorkerLifecycleEventType::WorkerExited,
                exited.level,
                exited.message.clone(),
                exited.data.clone(),
            )
            .await;
        if spool.is_none() {
            return strict_end(writer, event, patch).await;
        }
        // Neither the event nor the status waited: both are in the spool.
        let _ = writer.queue_state(patch).await;
        let report = writer.close_within(args.spool.delivery_wait).await;
        spool::report(&key, &report)
    };
    // If the server is away, a SIGINT or SIGTERM ends the wait instead of
    // being ignored.
    let mut interrupt = signal(SignalKind::interrupt()).ok();
    let mut terminate = signal(SignalKind::terminate()).ok();
    let stored = tokio::select! {
        stored = waiting => stored,
        Some(()) = recv(&mut interrupt) => {
            stopped_waiting(&key, spool.as_deref());
            false
        }
        Some(()) = recv(&mut terminate) => {
            stopped_waiting(&key, spool.as_deref());
            false
        }
    };
    if stored { Ok(()) } else { Err(()) }
}

/// Says that exec stopped waiting for the server, and where the rest is.
fn stopped_waiting(key: &RunKey, spool: Option<&Path>) {
    match spool {
        Some(path) => eprintln!(
            "baa-log: stopped waiting for the server; what run {key} does not hold is kept in \
             {0}: send it with `baa-log upload {0}`",
            path.display()
        ),
        None => eprintln!(
            "baa-log: the log of run {key} may be incomplete: stopped waiting for the server \
             to store the rest"
        ),
    }
}

/// The end of a --fail-closed writer: the event's outcome, then the final
/// status once everything is stored. True when all went in.
async fn strict_end(
    writer: RunWriter,
    event: Result<(), ClientError>,
    patch: pb::RunStatePatch,
) -> bool {
    let key = writer.key().clone();
    let status = patch
        .status
        .and_then(|status| pb::RunStatus::try_from(status).ok());
    let result = match event {
        Ok(()) => {
            writer
                .finish(
                    status.unwrap_or(pb::RunStatus::Failed),
                    patch.exit_code,
                    patch.summary.clone(),
                )
                .await
        }
        Err(err) => Err(err),
    };
    match result {
        Ok(_) => true,
        Err(err) => {
            eprintln!("baa-log: the log of run {key} may be incomplete: {err}");
            false
        }
    }
}

/// Prints one warning when the server stops answering, while the command
/// runs or while exec waits for the server at the end (`ended` says
/// which), unless one was printed already; ends when `stop` fires.
async fn watch_server(
    writer: RunWriter,
    server: String,
    warned: Arc<AtomicBool>,
    ended: Arc<AtomicBool>,
    wait: Duration,
    mut stop: oneshot::Receiver<()>,
) {
    let Some(path) = writer.spool_path().map(Path::to_path_buf) else {
        return;
    };
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut stop => return,
        }
        if warned.load(Ordering::Relaxed) || !writer.server_away() {
            continue;
        }
        if ended.load(Ordering::Relaxed) {
            eprintln!(
                "baa-log: baa-logd at {server} does not answer; waiting up to {} for it to \
                 take the rest of the output, kept in {}",
                humantime::format_duration(wait),
                path.display()
            );
        } else {
            eprintln!(
                "baa-log: baa-logd at {server} does not answer; the command goes on and its \
                 output is kept in {} until the server is back",
                path.display()
            );
        }
        warned.store(true, Ordering::Relaxed);
    }
}

/// Prepares the run to write to and says who it is: the next attempt of
/// `--retry-of`, or the task, id (given or fresh), step and attempt the
/// flags name. An id that is not fresh is claimed first (see `claim`).
async fn prepare(
    client: &Client,
    args: &ExecArgs,
    cwd: &str,
    masker: &Masker,
    explain: &impl Fn(ClientError) -> Failure,
) -> Result<Attempt, Failure> {
    let attempt = match &args.retry_of {
        Some(of) => {
            let (task, run) = (args.task.as_deref(), args.run.as_deref());
            claim::next_attempt(client, of, task, run, explain).await?
        }
        None => local_attempt(args)?,
    };
    let key = &attempt.key;
    let mut new_run = new_run(&attempt, args, cwd, masker);
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

/// The run the flags name (the task, the id given or a fresh one, the
/// step and attempt), its ids checked here.
fn local_attempt(args: &ExecArgs) -> Result<Attempt, Failure> {
    let task = args
        .task
        .as_deref()
        .expect("clap requires --task without --retry-of");
    let run = args.run.clone().unwrap_or_else(fresh_run_id);
    for (what, id) in [("task", task), ("run", run.as_str())] {
        if let Some(problem) = ids::id_problem(id) {
            return Err(Failure::new(format!(
                "invalid {what} id `{id}`: the id {problem}"
            )));
        }
    }
    Ok(Attempt {
        key: RunKey::new(task, run),
        step_id: args.step.clone(),
        step_name: args.step_name.clone().unwrap_or_else(|| args.step.clone()),
        attempt: args.attempt,
        retry_of: None,
    })
}

/// The metadata of the run `attempt` names, its command line masked.
fn new_run(attempt: &Attempt, args: &ExecArgs, cwd: &str, masker: &Masker) -> NewRun {
    let key = &attempt.key;
    NewRun::new(&key.task_id, &key.run_id)
        .step(&attempt.step_id, &attempt.step_name)
        .attempt(attempt.attempt)
        .worker_kind("baa-log exec")
        .command(masker.mask(&shell_line(&args.command)).0)
        .paths(cwd, cwd)
}

/// The data of the `worker_started` event: the command's pid, words and
/// directory, how its output was taken (`stdio`: `pipes`, `pty` with
/// stderr on the stdout channel, or `split-pty`), and for a retry the run
/// it retries, as `retryOf: "TASK/RUN"` (the contracts' metadata has no
/// field for it).
fn started_data(
    pid: Option<u32>,
    command: &[String],
    cwd: &str,
    retry_of: Option<&RunKey>,
    mode: Mode,
) -> Json {
    let mut data = json!({ "pid": pid, "command": command, "cwd": cwd, "stdio": mode.name() });
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
    let mut ended = false;
    while !ended {
        let mut read = from.read(&mut buf).await.map_err(|err| err.to_string())?;
        if read == 0 {
            break;
        }
        // Whatever else is there already joins this piece (a terminal
        // gives 4 KiB a read): fewer, larger writes and chunks, and no
        // wait for what is not there yet.
        let mut failed = None;
        while read < buf.len() {
            match from.read(&mut buf[read..]).now_or_never() {
                Some(Ok(0)) => ended = true,
                Some(Ok(more)) => {
                    read += more;
                    continue;
                }
                Some(Err(err)) => failed = Some(err.to_string()),
                None => {}
            }
            break;
        }
        // No flush per piece: the write is handed to a thread and goes
        // out at once, while the next piece is read.
        if terminal_open {
            terminal_open = terminal.write_all(&buf[..read]).await.is_ok();
        }
        if log_error.is_none() {
            if let Err(err) = log.write_all(&buf[..read]).await {
                log_error = Some(err.to_string());
            }
        }
        if let Some(err) = failed {
            return Err(err);
        }
    }
    if terminal_open {
        let _ = terminal.flush().await;
    }
    if log_error.is_none() {
        if let Err(err) = log.shutdown().await {
            log_error = Some(err.to_string());
        }
    }
    log_error.map_or(Ok(()), Err)
}

/// Catches SIGINT and SIGTERM and passes them on to the command.
///
/// A Ctrl-C at a terminal reaches the whole foreground process group, the
/// command included when it shares baa-log's (with pipes), so then SIGINT
/// is not sent again: a second one would cut short the command's own
/// clean-up. A command in a pseudo-terminal has a session of its own; a
/// SIGINT that reaches baa-log did not reach it (see
/// `Mode::terminal_interrupts_command`). SIGTERM is aimed at baa-log alone
/// and is always passed on.
struct SignalForwarder {
    /// SIGINT deliveries.
    interrupt: tokio::signal::unix::Signal,
    /// SIGTERM deliveries.
    terminate: tokio::signal::unix::Signal,
    /// Whether a SIGINT is likely to come from a terminal that signalled
    /// the command too.
    interactive: bool,
}

impl SignalForwarder {
    /// Starts catching the signals; `interactive`: whether a SIGINT is
    /// likely to have reached the command already.
    fn new(interactive: bool) -> std::io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            interactive,
        })
    }

    /// Passes signals on to `target` (a process, or a process group as a
    /// negative id) until aborted.
    async fn forward_to(mut self, target: Pid) {
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
            let _ = nix::sys::signal::kill(target, signal);
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
