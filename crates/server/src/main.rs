//! `baa-logd`: parses flags, binds the listener, and serves until SIGINT or
//! SIGTERM.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc};

use baa_logd::ServerConfig;
use baa_logging_store::{LocalStore, LocalStoreOptions};
use clap::Parser;
use tokio::net::TcpListener;
use tracing::{error, info, warn};

/// The baa-logging server: workers stream run logs in over gRPC, followers
/// watch them live. Runs are stored under the data directory in the
/// local-run-v1 layout.
#[derive(Debug, Parser)]
#[command(name = "baa-logd", version)]
struct Args {
    /// The address to listen on; port 0 picks a free port.
    #[arg(long, env = "BAA_LOGD_LISTEN", default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
    /// The runs root: runs live in <data-dir>/<taskId>/<runId>/.
    #[arg(long, env = "BAA_LOGD_DATA_DIR", default_value = "./runs")]
    data_dir: PathBuf,
    /// The largest request message, in bytes.
    #[arg(long, env = "BAA_LOGD_MAX_MESSAGE_BYTES", default_value_t = 4 * 1024 * 1024)]
    max_message_bytes: usize,
    /// The largest text, message or data of one entry, in bytes.
    #[arg(long, env = "BAA_LOGD_MAX_ENTRY_BYTES", default_value_t = 1024 * 1024)]
    max_entry_bytes: usize,
    /// fsync every commit before acknowledging it, so that acknowledged
    /// entries survive a power loss, not only a crash of the process.
    #[arg(long, env = "BAA_LOGD_SYNC")]
    sync: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
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
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            error!("{message}");
            eprintln!("baa-logd: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Opens the store, binds, and serves until a signal.
async fn serve(args: Args) -> Result<(), String> {
    // Each open run keeps a few files open; the default soft limit of
    // 1024 descriptors would cap a busy server at a few hundred runs.
    if let Err(err) = rlimit::increase_nofile_limit(u64::MAX) {
        warn!(cause = %err, "cannot raise the open-file limit");
    }
    let options = LocalStoreOptions {
        max_entry_bytes: args.max_entry_bytes,
        sync_commits: args.sync,
        ..LocalStoreOptions::new(&args.data_dir)
    };
    let store = LocalStore::open(options).map_err(|err| {
        format!(
            "cannot open the data directory {}: {err}",
            args.data_dir.display()
        )
    })?;
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|err| format!("cannot listen on {}: {err}", args.listen))?;
    let addr = listener.local_addr().map_err(|err| err.to_string())?;
    info!(%addr, data_dir = %store.data_dir().display(), "baa-logd listening");
    // Scripts that start the server on port 0 read the address from here.
    println!("listening on {addr}");
    let config = ServerConfig {
        max_message_bytes: args.max_message_bytes,
        max_entry_bytes: args.max_entry_bytes,
        ..ServerConfig::default()
    };
    baa_logd::run(listener, Arc::new(store), config, shutdown_signal())
        .await
        .map_err(|err| err.to_string())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            warn!(cause = %err, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
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
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => info!("SIGINT received"),
        () = terminate => info!("SIGTERM received"),
    }
}
