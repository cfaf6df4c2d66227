//! `baa-logd`: reads its configuration, binds the listener, and serves
//! until SIGINT or SIGTERM.

use std::{collections::HashMap, net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc};

use baa_logd::{LogFormat, Metrics, ServerConfig, Settings, StoreKind};
use baa_logging_store::{
    JetStreamStore, LocalStore, LocalStoreOptions, RunStore, StoreError, verify,
};
use clap::{Args, CommandFactory, FromArgMatches, Parser, builder::BoolishValueParser};
use serde::Serialize;
use tokio::{net::TcpListener, task::JoinHandle};
use tracing::{error, info, warn};

mod import;

/// The baa-logging server: workers stream run logs in over gRPC, followers
/// watch them live. Runs are stored under the data directory in the
/// local-run-v1 layout.
///
/// Every setting is a flag, an environment variable `BAA_LOGD_<NAME>`, and
/// a key of the TOML file given with --config; a flag beats its variable,
/// which beats the file, which beats the default.
#[derive(Debug, Parser, Serialize)]
#[command(name = "baa-logd", version)]
struct Cli {
    /// What to do instead of serving.
    #[command(subcommand)]
    #[serde(skip)]
    command: Option<Command>,
    /// A TOML configuration file.
    #[arg(long, env = "BAA_LOGD_CONFIG")]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    #[serde(skip)]
    print_config: bool,
    /// The address to listen on; port 0 picks a free port.
    #[arg(long, env = "BAA_LOGD_LISTEN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<SocketAddr>,
    /// Where runs are kept: local (files under --data-dir) or jetstream
    /// (a NATS JetStream cluster shared by several nodes; see --nats-url).
    #[arg(long, env = "BAA_LOGD_STORE", value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    store: Option<StoreKind>,
    /// The runs root: runs live in <data-dir>/<taskId>/<runId>/.
    #[arg(long, env = "BAA_LOGD_DATA_DIR", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    /// Serve Prometheus metrics on this address, at /metrics [default: off].
    #[arg(long, env = "BAA_LOGD_METRICS_LISTEN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics_listen: Option<SocketAddr>,
    /// Serve the run page on this address of its own (plain HTTP/1.1)
    /// instead of beside gRPC [default: the gRPC address].
    #[arg(long, env = "BAA_LOGD_WEB_LISTEN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    web_listen: Option<SocketAddr>,
    /// How the server's own log lines are written.
    #[arg(long, env = "BAA_LOGD_LOG_FORMAT", value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    log_format: Option<LogFormat>,
    /// fsync every commit before acknowledging it, so that acknowledged
    /// entries survive a power loss, not only a crash of the process
    /// (true/false, 1/0, yes/no, on/off).
    #[arg(
        long,
        env = "BAA_LOGD_SYNC",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    sync: Option<bool>,
    /// Listen beyond loopback without access control: neither tokens nor
    /// TLS client certificates (TLS alone does not count).
    #[arg(
        long,
        env = "BAA_LOGD_INSECURE",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    insecure: Option<bool>,
    /// A TOML file of bearer tokens and their scopes (read, write, admin).
    #[arg(long, env = "BAA_LOGD_TOKEN_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    token_file: Option<PathBuf>,
    /// TLS.
    #[command(flatten)]
    tls: TlsArgs,
    /// Limits.
    #[command(flatten)]
    limits: LimitArgs,
    /// Retention.
    #[command(flatten)]
    retention: RetentionArgs,
    /// The scrub.
    #[command(flatten)]
    scrub: ScrubArgs,
    /// Worker leases.
    #[command(flatten)]
    leases: LeaseArgs,
    /// Masking on ingest.
    #[command(flatten)]
    masking: MaskingArgs,
    /// The run page.
    #[command(flatten)]
    web: WebArgs,
    /// Artifacts and checkpoints.
    #[command(flatten)]
    objects: ObjectArgs,
    /// The NATS JetStream store.
    #[command(flatten)]
    nats: NatsArgs,
}

/// NATS JetStream flags, for --store jetstream.
#[derive(Debug, Args, Serialize)]
#[command(next_help_heading = "NATS JetStream store (--store jetstream)")]
struct NatsArgs {
    /// The NATS servers' URLs, comma-separated (nats://host:4222).
    #[arg(long = "nats-url", env = "BAA_LOGD_NATS_URL", value_delimiter = ',')]
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<Vec<String>>,
    /// The JetStream stream that holds the runs.
    #[arg(long = "nats-stream", env = "BAA_LOGD_NATS_STREAM")]
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<String>,
    /// The stream's replicas, when this node creates it (1 to 5).
    #[arg(long = "nats-replicas", env = "BAA_LOGD_NATS_REPLICAS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    replicas: Option<usize>,
    /// A NATS credentials file (JWT and NKey seed).
    #[arg(long = "nats-creds-file", env = "BAA_LOGD_NATS_CREDS_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    creds_file: Option<PathBuf>,
    /// CA certificates (PEM) to trust for the NATS servers' TLS.
    #[arg(long = "nats-ca-file", env = "BAA_LOGD_NATS_CA_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    ca_file: Option<PathBuf>,
    /// A client certificate (PEM) for NATS mutual TLS.
    #[arg(long = "nats-cert-file", env = "BAA_LOGD_NATS_CERT_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    cert_file: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[arg(long = "nats-key-file", env = "BAA_LOGD_NATS_KEY_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    key_file: Option<PathBuf>,
    /// Speak TLS to the NATS servers even with nats:// URLs.
    #[arg(
        long = "nats-require-tls",
        env = "BAA_LOGD_NATS_REQUIRE_TLS",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    require_tls: Option<bool>,
    /// How long to wait for the NATS cluster at start, e.g. 30s.
    #[arg(long = "nats-connect-timeout", env = "BAA_LOGD_NATS_CONNECT_TIMEOUT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    connect_timeout: Option<String>,
}

/// Object flags.
#[derive(Debug, Args, Serialize)]
#[command(next_help_heading = "Artifacts and checkpoints")]
struct ObjectArgs {
    /// The largest artifact or checkpoint object, in bytes.
    #[arg(long, env = "BAA_LOGD_MAX_OBJECT_BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_object_bytes: Option<u64>,
    /// The most bytes of one run's objects and unfinished uploads.
    #[arg(long, env = "BAA_LOGD_MAX_RUN_OBJECTS_BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_run_objects_bytes: Option<u64>,
    /// The most unfinished uploads one run stages at a time.
    #[arg(long, env = "BAA_LOGD_MAX_RUN_UPLOADS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_run_uploads: Option<u64>,
    /// Drop an unfinished upload nothing wrote to for this long, e.g. 1d.
    #[arg(long, env = "BAA_LOGD_UPLOAD_ABANDON_AFTER")]
    #[serde(skip_serializing_if = "Option::is_none")]
    upload_abandon_after: Option<String>,
}

/// Run page flags.
#[derive(Debug, Args, Serialize)]
#[command(next_help_heading = "Run page")]
struct WebArgs {
    /// Serve the run page to browsers at / (beside gRPC on the same
    /// address unless --web-listen moves it); false: gRPC only.
    #[arg(
        long = "web",
        env = "BAA_LOGD_WEB",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    enabled: Option<bool>,
    /// How long a browser session lasts with tokens on, e.g. 1h; the page
    /// renews it while open.
    #[arg(long = "web-session-ttl", env = "BAA_LOGD_WEB_SESSION_TTL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    session_ttl: Option<String>,
    /// Without tokens, the host names the page answers to beside IP
    /// addresses and localhost, comma-separated (a guard against DNS
    /// rebinding).
    #[arg(
        long = "web-allowed-hosts",
        env = "BAA_LOGD_WEB_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    allowed_hosts: Option<Vec<String>>,
}

/// Masking flags; the extra rules (`masking.rules`) are set in the file.
#[derive(Debug, Args, Serialize)]
#[command(next_help_heading = "Masking")]
struct MaskingArgs {
    /// Mask the built-in token formats (GitHub, AWS, JWT, Slack) without
    /// registration.
    #[arg(
        long = "mask-default-rules",
        env = "BAA_LOGD_MASK_DEFAULT_RULES",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    default_rules: Option<bool>,
    /// How long a chunk that may end in the start of a registered value
    /// waits for the next chunk of its channel, e.g. 300ms.
    #[arg(long = "mask-hold-back", env = "BAA_LOGD_MASK_HOLD_BACK")]
    #[serde(skip_serializing_if = "Option::is_none")]
    hold_back: Option<String>,
}

/// Worker lease flags.
#[derive(Debug, Args, Serialize)]
#[command(next_help_heading = "Worker leases")]
struct LeaseArgs {
    /// How long a running run may go without an open append stream before
    /// the server fails it as lost, e.g. 5m, 30s; 0 or off: no leases.
    #[arg(long, env = "BAA_LOGD_WORKER_LEASE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    worker_lease: Option<String>,
    /// The longest lease a writer may ask for when it opens a stream.
    #[arg(long, env = "BAA_LOGD_MAX_WORKER_LEASE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_worker_lease: Option<String>,
}

/// TLS flags.
#[derive(Debug, Args, Serialize)]
#[command(next_help_heading = "TLS")]
struct TlsArgs {
    /// The server's certificate chain (PEM); reloaded on SIGHUP.
    #[arg(long = "tls-cert", env = "BAA_LOGD_TLS_CERT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long = "tls-key", env = "BAA_LOGD_TLS_KEY")]
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<PathBuf>,
    /// Require client certificates signed by these CAs (PEM).
    #[arg(long = "tls-client-ca", env = "BAA_LOGD_TLS_CLIENT_CA")]
    #[serde(skip_serializing_if = "Option::is_none")]
    client_ca: Option<PathBuf>,
}

/// Limit flags.
#[derive(Debug, Args, Serialize)]
#[command(next_help_heading = "Limits")]
struct LimitArgs {
    /// The largest request message, in bytes.
    #[arg(long, env = "BAA_LOGD_MAX_MESSAGE_BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_message_bytes: Option<usize>,
    /// The largest text or message of one entry, in bytes.
    #[arg(long, env = "BAA_LOGD_MAX_ENTRY_BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_entry_bytes: Option<usize>,
    /// The largest structured data of one event, as JSON, in bytes.
    #[arg(long, env = "BAA_LOGD_MAX_DATA_BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_data_bytes: Option<usize>,
    /// The most items in one Append message.
    #[arg(long, env = "BAA_LOGD_MAX_BATCH_ENTRIES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_batch_entries: Option<usize>,
    /// The most concurrent calls on one HTTP/2 connection.
    #[arg(long, env = "BAA_LOGD_MAX_STREAMS_PER_CONNECTION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_streams_per_connection: Option<u32>,
    /// The HTTP/2 flow-control window of each call, in bytes.
    #[arg(long, env = "BAA_LOGD_STREAM_WINDOW_BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_window_bytes: Option<u32>,
    /// The HTTP/2 flow-control window of each connection, in bytes.
    #[arg(long, env = "BAA_LOGD_CONNECTION_WINDOW_BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    connection_window_bytes: Option<u32>,
    /// The largest HTTP/2 frame the server takes, in bytes.
    #[arg(long, env = "BAA_LOGD_MAX_FRAME_BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_frame_bytes: Option<u32>,
    /// The buffer each call starts with to encode, and one to decode, in
    /// bytes.
    #[arg(long, env = "BAA_LOGD_CODEC_BUFFER_BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    codec_buffer_bytes: Option<usize>,
    /// The most files the store keeps open for appending, over all runs.
    #[arg(long, env = "BAA_LOGD_MAX_OPEN_FILES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_open_files: Option<usize>,
    /// The most client connections open at once.
    #[arg(long, env = "BAA_LOGD_MAX_CONNECTIONS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_connections: Option<usize>,
    /// How long a new connection may take over its TLS handshake or HTTP/2
    /// preface, e.g. 10s.
    #[arg(long, env = "BAA_LOGD_HANDSHAKE_TIMEOUT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    handshake_timeout: Option<String>,
    /// How often to ping each connection, e.g. 30s.
    #[arg(long, env = "BAA_LOGD_KEEPALIVE_INTERVAL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    keepalive_interval: Option<String>,
    /// How long a ping may go unanswered.
    #[arg(long, env = "BAA_LOGD_KEEPALIVE_TIMEOUT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    keepalive_timeout: Option<String>,
    /// Close an Append stream that sends nothing for this long.
    #[arg(long, env = "BAA_LOGD_APPEND_IDLE_TIMEOUT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    append_idle_timeout: Option<String>,
    /// The most entries a second one run takes; 0: no limit.
    #[arg(long, env = "BAA_LOGD_APPEND_RATE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    append_rate: Option<u64>,
    /// The most followers of one run.
    #[arg(long, env = "BAA_LOGD_MAX_FOLLOWERS_PER_RUN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_followers_per_run: Option<usize>,
    /// The most followers in all.
    #[arg(long, env = "BAA_LOGD_MAX_FOLLOWERS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_followers: Option<usize>,
    /// The most bytes of Follow responses waiting to be sent, over every
    /// follower.
    #[arg(long, env = "BAA_LOGD_MAX_FOLLOW_BUFFER_BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_follow_buffer_bytes: Option<usize>,
    /// The most bytes a second one caller's searches scan; 0: no limit.
    #[arg(long, env = "BAA_LOGD_SEARCH_RATE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    search_rate: Option<u64>,
}

/// Scrub flags.
#[derive(Debug, Args, Serialize)]
#[command(next_help_heading = "Scrub")]
struct ScrubArgs {
    /// How long after start and between checks of every stored run against
    /// its checksums, e.g. 24h; 0s: no scrub.
    #[arg(long = "scrub-period", env = "BAA_LOGD_SCRUB_PERIOD")]
    #[serde(skip_serializing_if = "Option::is_none")]
    period: Option<String>,
    /// The most bytes a second the scrub reads; 0: no bound.
    #[arg(long = "scrub-read-rate", env = "BAA_LOGD_SCRUB_READ_RATE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    read_rate: Option<u64>,
}

/// Retention flags.
#[derive(Debug, Args, Serialize)]
#[command(next_help_heading = "Retention")]
struct RetentionArgs {
    /// Delete finished runs older than this, e.g. 30d [default: keep].
    #[arg(long = "retention-max-age", env = "BAA_LOGD_RETENTION_MAX_AGE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_age: Option<String>,
    /// Delete the oldest finished runs beyond this many bytes in all [default: none].
    #[arg(long = "retention-max-bytes", env = "BAA_LOGD_RETENTION_MAX_BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_bytes: Option<u64>,
    /// How often retention runs; 0s: only on demand, with `baa-log gc`.
    #[arg(long = "retention-interval", env = "BAA_LOGD_RETENTION_INTERVAL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    interval: Option<String>,
}

/// What `baa-logd` can do besides serving.
#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Check the stored runs for damaged or lost entries, offline.
    ///
    /// Reads every commit back and checks it against its checksums, and
    /// prints each run's damaged or lost ranges; exits 0 only when every
    /// run is intact, 1 when one is not, 2 while a server has the data
    /// directory open. Opening a run recovers it as a server start would.
    Verify {
        /// TASK or TASK/RUN; every run when left out.
        target: Option<String>,
    },
    /// Copy runs from a local data directory into the JetStream store
    /// that --store jetstream and the --nats-* settings name.
    ///
    /// Each run keeps its sequence numbers, times, state and writers'
    /// cursors, so a writer still running goes on through the cluster
    /// without sending a line twice. Runs already in the stream are left
    /// as they are; a run with damaged entries is not copied (see
    /// `baa-logd verify`). No server may have the directory open.
    Import {
        /// The local data directory to copy runs from.
        #[arg(long = "from")]
        from: PathBuf,
        /// TASK or TASK/RUN; every run when left out.
        target: Option<String>,
    },
}

fn main() -> ExitCode {
    baa_logd::tune_allocator();
    let cli = parse_cli();
    let settings = match Settings::load(cli.config.as_deref(), &cli) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("baa-logd: {err}");
            return ExitCode::from(2);
        }
    };
    if cli.print_config {
        print!("{}", settings.to_toml());
        return ExitCode::SUCCESS;
    }
    init_logging(settings.log_format);
    if let Some(Command::Verify { target }) = &cli.command {
        return verify(&settings, target.as_deref());
    }
    if let Some(Command::Import { from, target }) = &cli.command {
        return import::run(&settings, from, target.as_deref());
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            error!(cause = %err, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            error!("{}", failure.message);
            eprintln!("baa-logd: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// Why the server could not start or serve, and the exit code that says
/// so: 2 for what the operator must change (a configuration error, a token
/// file, a data directory another server holds), 1 for the rest.
#[derive(Debug)]
struct Failure {
    /// What went wrong, for stderr and the log.
    message: String,
    /// The process's exit code.
    code: u8,
}

impl Failure {
    /// A failure the operator fixes in the configuration or the machine's
    /// setup: exit code 2, like a malformed configuration file.
    fn setup(message: impl ToString) -> Self {
        Self {
            message: message.to_string(),
            code: 2,
        }
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self { message, code: 1 }
    }
}

/// `baa-logd verify`: checks the runs `target` names and prints what it
/// found, a line a run and a total.
fn verify(settings: &Settings, target: Option<&str>) -> ExitCode {
    let target = match target.map(|target| {
        target
            .split_once('/')
            .map_or((target, None), |(task, run)| (task, Some(run)))
    }) {
        None => verify::Target::default(),
        Some((task, run)) => verify::Target {
            task_id: Some(task.to_owned()),
            run_id: run.map(str::to_owned),
        },
    };
    let report = |failure: Failure| {
        eprintln!("baa-logd: {}", failure.message);
        ExitCode::from(failure.code)
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return report(Failure::from(format!("cannot start the runtime: {err}"))),
    };
    let checked = runtime.block_on(async {
        let store = open_store(settings, None)?;
        verify::verify(&store, &target)
            .await
            .map_err(|err| Failure::from(err.to_string()))
    });
    let checks = match checked {
        Ok(checks) => checks,
        Err(failure) => return report(failure),
    };
    let damaged = checks
        .iter()
        .filter(|check| !check.damaged.is_empty())
        .count();
    for check in &checks {
        let ranges: Vec<String> = check
            .damaged
            .iter()
            .map(|(first, last)| format!("{first}-{last}"))
            .collect();
        match ranges.is_empty() {
            true => println!("{}: {} entries intact", check.run, check.entries),
            false => println!(
                "{}: {} entries intact; damaged or lost: {}",
                check.run,
                check.entries,
                ranges.join(", ")
            ),
        }
    }
    println!("{} runs checked, {damaged} with damage", checks.len());
    if damaged == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Parses the command line, with each flag's help ending in its default
/// as [`Settings::default`] has it: the defaults are written once, there.
fn parse_cli() -> Cli {
    // A flag's id is its field's name, the last part of the key; the
    // documentation's check keeps those unique.
    let defaults: HashMap<String, String> = Settings::defaults()
        .into_iter()
        .map(|(key, value)| (key.rsplit('.').next().unwrap_or(&key).to_owned(), value))
        .collect();
    let command = Cli::command().mut_args(|arg| {
        match (defaults.get(arg.get_id().as_str()), arg.get_help()) {
            (Some(default), Some(help)) => {
                let help = format!("{help} [default: {default}]");
                arg.help(help)
            }
            _ => arg,
        }
    });
    match Cli::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    }
}

/// Logs to stderr, as text or JSON, filtered by `RUST_LOG` (default info).
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: in a file, a pipe or journald the
    // escape codes would be noise (and `NO_COLOR` turns them off anyway).
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Raises the process's descriptor limit as far as it goes, and lowers
/// `limits.max_open_files` to half of it, with a warning, when it is set
/// higher: the rest is for connections and readers, and a store that
/// held every descriptor would refuse connections instead.
fn fit_open_files(mut settings: Settings) -> Settings {
    // Each open run keeps a few files open (up to `max_open_files` in
    // all); the default soft limit of 1024 descriptors would cap a busy
    // server at a few hundred runs.
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(err) => {
            warn!(cause = %err, "cannot raise the open-file limit");
            return settings;
        }
    };
    let half = usize::try_from(limit / 2).unwrap_or(usize::MAX).max(1);
    if settings.limits.max_open_files > half {
        warn!(
            max_open_files = settings.limits.max_open_files,
            descriptor_limit = limit,
            using = half,
            "limits.max_open_files is over half the descriptor limit; using half"
        );
        settings.limits.max_open_files = half;
    }
    settings
}

/// Opens the store, binds, and serves until a signal; with
/// `metrics_listen`, serves the metrics there too.
async fn serve(settings: Settings) -> Result<(), Failure> {
    // From here on a SIGHUP never ends the process: it reloads TLS, or
    // is logged. Registering a handler replaces the default action for
    // the life of the process, so this comes before anything that can
    // take time.
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    let security = baa_logd::Security::from_settings(&settings).map_err(Failure::setup)?;
    let settings = fit_open_files(settings);
    let metrics = settings.metrics_listen.map(|_| Metrics::new());
    match settings.store {
        StoreKind::Local => {
            let store = open_store(&settings, metrics.as_ref())?;
            let place = format!("data directory {}", store.data_dir().display());
            serve_store(settings, security, metrics, hangups, store, place).await
        }
        StoreKind::Jetstream => {
            let store = JetStreamStore::open(settings.jetstream_options())
                .await
                .map_err(|err| Failure::from(err.to_string()))?;
            let place = format!(
                "JetStream stream {} on {}",
                settings.nats.stream,
                settings.nats.url.join(",")
            );
            serve_store(settings, security, metrics, hangups, store, place).await
        }
    }
}

/// Binds, and serves `store` until a signal; `place` says where its runs
/// are, for the log.
async fn serve_store<S: RunStore>(
    settings: Settings,
    security: baa_logd::Security,
    metrics: Option<Metrics>,
    hangups: std::io::Result<tokio::signal::unix::Signal>,
    store: S,
    place: String,
) -> Result<(), Failure> {
    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|err| format!("cannot listen on {}: {err}", settings.listen))?;
    let addr = listener.local_addr().map_err(|err| err.to_string())?;
    info!(%addr, store = %place, tls = security.tls_enabled(), tokens = security.tokens_enabled(), "baa-logd listening");
    // Scripts that start the server on port 0 read the address from here.
    println!("listening on {addr}");
    if let (false, Ok(hangups)) = (security.tls_enabled(), hangups) {
        // SIGHUP reloads TLS; without it there is nothing to reload.
        tokio::spawn(ignore_hangups(hangups));
    }
    let metrics_server = match (settings.metrics_listen, &metrics) {
        (Some(metrics_addr), Some(metrics)) => Some(serve_metrics(metrics_addr, metrics).await?),
        _ => None,
    };
    let mut config = ServerConfig {
        metrics,
        ..ServerConfig::from_settings(&settings, security)
    };
    let page_listener = match &mut config.page {
        Some(page) => {
            if config.security.tokens_enabled() {
                // Sessions outlive a restart: their key is kept beside the runs.
                let path = settings.data_dir.join(SESSION_KEY_FILE);
                page.session_key = baa_logd::SessionKey::load_or_create(&path).map_err(|err| {
                    format!(
                        "cannot read or make the session key {}: {err}",
                        path.display()
                    )
                })?;
            }
            match settings.web_listen {
                Some(page_addr) => Some(bind_page(page_addr).await?),
                None => {
                    let scheme = if config.security.tls_enabled() {
                        "https"
                    } else {
                        "http"
                    };
                    say(&format!("page on {scheme}://{addr}/"));
                    None
                }
            }
        }
        None => None,
    };
    let served = baa_logd::run_with_page_listener(
        listener,
        page_listener,
        Arc::new(store),
        config,
        shutdown_signal(),
    )
    .await
    .map_err(|err| Failure::from(err.to_string()));
    // The metrics stay up until the gRPC server has drained.
    if let Some(metrics_server) = metrics_server {
        metrics_server.abort();
    }
    served
}

/// Opens the store in the data directory, reporting its writes to
/// `metrics` when they are on.
fn open_store(settings: &Settings, metrics: Option<&Metrics>) -> Result<LocalStore, Failure> {
    let options = LocalStoreOptions {
        observer: metrics.map(Metrics::store_observer),
        ..settings.store_options()
    };
    LocalStore::open(options).map_err(|err| match err {
        StoreError::Locked { .. } => Failure::setup(err),
        err => Failure::from(format!(
            "cannot open the data directory {}: {err}",
            settings.data_dir.display()
        )),
    })
}

/// Binds `addr` and serves `metrics` there at `/metrics`, in a task of its
/// own that runs until aborted.
async fn serve_metrics(
    addr: SocketAddr,
    metrics: &Metrics,
) -> Result<JoinHandle<std::io::Result<()>>, String> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|err| format!("cannot listen for metrics on {addr}: {err}"))?;
    let bound = listener.local_addr().map_err(|err| err.to_string())?;
    info!(addr = %bound, "metrics at /metrics");
    println!("metrics on {bound}");
    Ok(tokio::spawn(baa_logd::metrics::serve(
        listener,
        metrics.clone(),
        std::future::pending(),
    )))
}

/// The file in the data directory that holds the key browser sessions
/// are signed with.
const SESSION_KEY_FILE: &str = ".web-session-key";

/// Binds the run page's own address and says where it is.
async fn bind_page(addr: SocketAddr) -> Result<TcpListener, String> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|err| format!("cannot listen for the run page on {addr}: {err}"))?;
    let bound = listener.local_addr().map_err(|err| err.to_string())?;
    say(&format!("page on http://{bound}/"));
    Ok(listener)
}

/// Writes a line to stdout for whoever started the server, if anyone still
/// reads it: a closed pipe is no reason to stop serving.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{line}");
}

/// Logs SIGHUPs, which have nothing to reload without TLS.
async fn ignore_hangups(mut hangups: tokio::signal::unix::Signal) {
    while hangups.recv().await.is_some() {
        info!("SIGHUP: nothing to reload (TLS is off)");
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            warn!(cause = %err, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                warn!(cause = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => info!("SIGINT received"),
        () = terminate => info!("SIGTERM received"),
    }
}
