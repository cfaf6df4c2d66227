//! `baa-log`, the command line of baa-logging: runs a command as a worker
//! whose output goes to a run, follows runs live, and reads them back.
//!
//! # Layout
//!
//! - `exec`: `baa-log exec`, a command run as a worker; `claim`: which
//!   run it writes to, when the id is given or the run is the next
//!   attempt of another (`--retry-of`); `attempt_id`: the id of that next
//!   attempt; `spawn`: how it starts the command, with pipes or in a
//!   pseudo-terminal; `terminal`: the pseudo-terminals, and baa-log's own
//!   terminal while the command runs in one.
//! - `read`: `follow` and `cat`, a run's entries; `prefix`: what
//!   `--timestamps` and `--seq` put in front of their lines; `range`:
//!   which part of the run they print (`--tail`, `--since`, ...).
//! - `runs`: `runs` and `show`, what runs there are, a task's attempts of
//!   a step together.
//! - `grep`: `grep`, a search of runs' output on the server.
//! - `run_ref`: how a run is named (`TASK/RUN`, `TASK/@latest~N`);
//!   `wait`: `follow --wait`, for a run not prepared yet.
//! - `health`: `health`, whether a server serves.
//! - `gc`: `gc`, a retention pass on the server.
//! - `finish`: `finish`, a run ended by hand.
//! - `masks`: which values `exec` masks (environment variables by name,
//!   files of secrets).
//! - `spool`: where `exec` keeps output while the server is away, and how
//!   it reports what it did not deliver; `upload`: `upload`, a spool sent
//!   later.
//! - `objects`: `artifact` and `checkpoint`, a run's objects uploaded,
//!   downloaded and listed, and the uploads of `exec --artifacts`.
//! - `render`: how entries, states and errors are written for people and
//!   for programs.

mod attempt_id;
mod claim;
mod exec;
mod finish;
mod gc;
mod grep;
mod health;
mod masks;
mod objects;
mod prefix;
mod range;
mod read;
mod render;
mod run_ref;
mod runs;
mod spawn;
mod spool;
mod terminal;
mod upload;
mod wait;

use std::process::ExitCode;

use baa_logging_client::{Client, ConnectOptions};
use clap::{Parser, Subcommand, ValueEnum};

/// The baa-logging command line: run a command with its output logged to a
/// run, follow runs live, and read them back.
#[derive(Debug, Parser)]
#[command(name = "baa-log", version)]
struct Cli {
    /// The server's address: host:port (plain, or TLS with --ca-file or a
    /// client certificate), http://host:port or https://host:port. Several
    /// nodes of a cluster are separated by commas (`a:50051,b:50051`): they
    /// are tried in order, and exec, follow and the other commands move to
    /// the next one when theirs fails, resuming where they were.
    #[arg(
        long,
        global = true,
        env = "BAA_LOG_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    server: String,
    /// A bearer token for the server.
    #[arg(long, global = true, env = "BAA_LOG_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// CA certificates (PEM) to trust for the server's TLS certificate,
    /// instead of the system's; implies TLS.
    #[arg(long, global = true, env = "BAA_LOG_CA_FILE")]
    ca_file: Option<std::path::PathBuf>,
    /// A client certificate (PEM), for servers that require mutual TLS.
    #[arg(
        long,
        global = true,
        env = "BAA_LOG_CLIENT_CERT",
        requires = "client_key"
    )]
    client_cert: Option<std::path::PathBuf>,
    /// The client certificate's key (PEM).
    #[arg(
        long,
        global = true,
        env = "BAA_LOG_CLIENT_KEY",
        requires = "client_cert"
    )]
    client_key: Option<std::path::PathBuf>,
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run a command as a worker: its stdout and stderr go to a run (and
    /// to this terminal), its exit decides the run's status, and baa-log
    /// exits with its code; as env and docker run do, 127 when the command
    /// is not found, 126 when it cannot be run, 125 for exec's own failure
    /// (the run refused; with --fail-closed, no server), 122 when the
    /// command succeeded but a file --artifacts matched could not be
    /// uploaded (unless --artifacts-optional). The command never
    /// waits for the server: its output goes through a local spool, sent
    /// when the server answers (see `baa-log upload`). --retry-of TASK/RUN
    /// runs the next attempt of an earlier run, as run RUN.2, RUN.3, ...
    /// When baa-log's stdout is a terminal the command runs in a
    /// pseudo-terminal (see --pty, --split-pty and --no-pty).
    Exec(exec::ExecArgs),
    /// Print a run's entries as they come, like `tail -f`, until it ends.
    Follow(read::FollowArgs),
    /// Print the output a run stored, as the program wrote it (bytes that
    /// are not UTF-8 were stored as U+FFFD).
    Cat(read::CatArgs),
    /// Search runs' output on the server, like grep -H: one run, a task's
    /// runs, or every run. Prints `task/run:seq: line` per match; exits 0
    /// when a line matched, 1 when none did, 2 on an error.
    Grep(grep::GrepArgs),
    /// List runs, newest first; with --task, the attempts of a step
    /// together, the latest first.
    Runs(runs::RunsArgs),
    /// Show a run's metadata, state and log summary.
    Show(runs::ShowArgs),
    /// Ask the server's gRPC health service whether it serves: prints
    /// SERVING, NOT_SERVING, ... and exits 0 only for SERVING.
    Health(health::HealthArgs),
    /// End a run by hand with a final status (for a run whose worker is
    /// gone): `--status completed|failed|blocked [--error TEXT]`. The status
    /// rules hold (a finished run stays as it is). Needs the write scope.
    Finish(finish::FinishArgs),
    /// Delete finished runs now, oldest first, as the server's retention
    /// policy (or --max-age and --max-bytes) says; never a run that is not
    /// finished or that has a stream open. Needs the admin scope.
    Gc(gc::GcArgs),
    /// Send what a spool holds that the server does not: the output and
    /// final status of an exec that gave up waiting for the server (it
    /// printed the spool's path). Each entry is stored once, however often
    /// this runs; the file is removed once the server holds it all.
    Upload(upload::UploadArgs),
    /// A run's artifacts: `put RUN FILE... [--as NAME]` uploads files into
    /// its artifacts/ (resumed after a broken connection), `get RUN NAME
    /// [-o PATH]` downloads one (resuming a partial file), `ls RUN` lists
    /// them. put needs the write scope, get and ls the read scope.
    Artifact(objects::ArtifactArgs),
    /// A run's checkpoints: `put RUN FILE...` saves files as its next
    /// checkpoint (a slot reserved, filled and committed: the run state's
    /// checkpointSeq moves to it), `get RUN NAME [--seq N] [-o PATH]`
    /// downloads a file of one, `ls RUN` lists them.
    Checkpoint(objects::CheckpointArgs),
}

/// A channel, as the command line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ChannelArg {
    /// Worker lifecycle events.
    Worker,
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl ChannelArg {
    /// The protocol's channel.
    fn to_pb(self) -> baa_logging_client::pb::WorkerLogChannel {
        use baa_logging_client::pb::WorkerLogChannel;
        match self {
            Self::Worker => WorkerLogChannel::Worker,
            Self::Stdout => WorkerLogChannel::Stdout,
            Self::Stderr => WorkerLogChannel::Stderr,
        }
    }
}

/// What went wrong, as one line for the user, and the exit code.
#[derive(Debug)]
struct Failure {
    /// The line, without the `baa-log: ` prefix.
    message: String,
    /// The exit code.
    code: u8,
}

impl Failure {
    /// A failure with exit code 1.
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: 1,
        }
    }
}

fn main() -> ExitCode {
    baa_logging_client::tune_allocator();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("baa-log: cannot start: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("baa-log: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// Connects and runs the subcommand; returns the exit code.
async fn run(cli: Cli) -> Result<u8, Failure> {
    let mut options = ConnectOptions::new(cli.server.clone());
    if let Some(token) = &cli.token {
        options = options.token(token);
    }
    if let Some(ca_file) = &cli.ca_file {
        options = options.ca_file(ca_file);
    }
    if let (Some(cert), Some(key)) = (&cli.client_cert, &cli.client_key) {
        options = options.client_identity(cert, key);
    }
    let server = cli.server.clone();
    let explain = move |err| render::explain(&server, err);
    // The health check asks another gRPC service over its own connection.
    let command = match cli.command {
        Command::Health(args) => return health::health(&options, args, &explain).await,
        // exec connects by itself: it runs the command without a server.
        Command::Exec(args) => {
            return exec::exec(&options, args, &explain)
                .await
                // exec's own failures have a code of their own.
                .map_err(exec::own_failure);
        }
        command => command,
    };
    let client = Client::connect_with(&options).await.map_err(&explain)?;
    match command {
        Command::Exec(_) => unreachable!("exec connects by itself"),
        Command::Upload(args) => upload::upload(&client, args, &explain).await,
        Command::Follow(args) => read::follow(&client, args).await.map_err(&explain),
        Command::Cat(args) => read::cat(&client, args).await.map_err(&explain),
        Command::Grep(args) => grep::grep(&client, args).await.map_err(|err| Failure {
            // grep's code for trouble, apart from 1 for no match.
            code: 2,
            ..explain(err)
        }),
        Command::Runs(args) => runs::runs(&client, args).await.map_err(&explain),
        Command::Show(args) => runs::show(&client, args).await.map_err(&explain),
        Command::Health(_) => unreachable!("answered before connecting"),
        Command::Gc(args) => gc::gc(&client, args).await.map_err(&explain),
        Command::Finish(args) => finish::finish(&client, args).await.map_err(&explain),
        Command::Artifact(args) => objects::artifact(&client, args).await.map_err(&explain),
        Command::Checkpoint(args) => objects::checkpoint(&client, args).await.map_err(&explain),
    }
}

/// Parses `TASK/RUN`, `TASK/@latest` or `TASK/@latest~N` for clap.
fn parse_run(text: &str) -> Result<run_ref::RunRef, String> {
    text.parse()
        .map_err(|err: baa_logging_client::ClientError| err.to_string())
}
