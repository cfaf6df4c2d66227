//! Where `exec` keeps a run's output while the server is away, how long
//! it waits for the server at the end, and how it says what was not
//! delivered. `baa-log upload` (module `upload`) sends a spool later.

use std::{path::PathBuf, time::Duration};

use baa_logging_client::{RunKey, SpoolOptions, SpoolReport};
use clap::Args;

/// The spool's options of `baa-log exec`.
#[derive(Debug, Args)]
pub(crate) struct SpoolArgs {
    /// Where spools go: one file per run, removed once the server holds
    /// it. Default: $XDG_STATE_HOME/baa-log/spool, else
    /// ~/.local/state/baa-log/spool.
    #[arg(long, env = "BAA_LOG_SPOOL_DIR", value_name = "DIR")]
    spool_dir: Option<PathBuf>,
    /// The most a spool may hold (1GiB, 200MiB, ...); output past it is
    /// dropped from the run (not from the terminal), and the place marked.
    #[arg(long, env = "BAA_LOG_SPOOL_MAX", default_value = "1GiB", value_parser = parse_size)]
    spool_max: u64,
    /// How long to wait, once the command has ended, for the server to
    /// take what it does not hold yet (30s, 5m); after that exec exits with
    /// the command's code and says where the spool is.
    #[arg(
        long,
        env = "BAA_LOG_DELIVERY_WAIT",
        default_value = "60s",
        value_parser = humantime::parse_duration
    )]
    pub(crate) delivery_wait: Duration,
    /// Keep the strict behaviour instead of spooling: no server at start
    /// is exec's error (125) and the command does not run; the command's
    /// output waits while the server is slow or away; and a log not
    /// wholly stored at the end makes exec exit 125, whatever the command
    /// exited with.
    #[arg(long)]
    pub(crate) fail_closed: bool,
}

impl SpoolArgs {
    /// The spool of a new writer of `key`.
    pub(crate) fn options(&self, key: &RunKey) -> SpoolOptions {
        let dir = self.spool_dir.clone().unwrap_or_else(default_dir);
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
        SpoolOptions {
            path: dir.join(&key.task_id).join(format!(
                "{}.{stamp}.{}.spool",
                key.run_id,
                std::process::id()
            )),
            max_bytes: self.spool_max,
        }
    }
}

/// `$XDG_STATE_HOME/baa-log/spool`, `~/.local/state/baa-log/spool`, or
/// under the temporary directory without a home.
fn default_dir() -> PathBuf {
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|home| !home.is_empty())
                .map(|home| PathBuf::from(home).join(".local/state"))
        })
        .unwrap_or_else(std::env::temp_dir);
    state.join("baa-log").join("spool")
}

/// Parses a size: `1GiB`, `200MB`, `4096`.
fn parse_size(text: &str) -> Result<u64, String> {
    text.parse::<bytesize::ByteSize>()
        .map(|size| size.as_u64())
        .map_err(|err| format!("not a size like 1GiB or 200MiB: {err}"))
}

/// Says on stderr what a spooled writer did not deliver, if anything;
/// true when everything was delivered and nothing dropped.
pub(crate) fn report(key: &RunKey, report: &SpoolReport) -> bool {
    let (dropped, dropped_bytes) = report.dropped;
    if dropped > 0 {
        eprintln!(
            "baa-log: {dropped_bytes} bytes of output ({dropped} chunks) of run {key} were not \
             kept: the spool was full (--spool-max){}; the run marks where",
            report
                .write_error
                .as_ref()
                .map(|err| format!(" or could not be written ({err})"))
                .unwrap_or_default()
        );
    }
    for refused in &report.refused {
        eprintln!("baa-log: the server refused a state change of run {key}: {refused}");
    }
    if report.delivered {
        return dropped == 0;
    }
    let why = report.failure.as_deref().unwrap_or("not delivered");
    eprintln!(
        "baa-log: the log of run {key} is not all stored ({why}): {} entries and the run's \
         final status are kept in {}; send them with `baa-log upload {}`",
        report.undelivered_entries,
        report.path.display(),
        report.path.display()
    );
    false
}
