//! `baa-log artifact` and `baa-log checkpoint`: a run's objects from the
//! command line, and the uploads `exec --artifacts` makes when its
//! command ends.
//!
//! Uploads resume by themselves after a broken connection, and a second
//! `put` of the same file resumes what an interrupted one left on the
//! server; `get` resumes a partial local file. Both check the SHA-256.

use std::{
    io::IsTerminal,
    path::{Path, PathBuf},
    sync::Arc,
};

use baa_logging_client::{Client, ClientError, ObjectName, RunKey, TransferOptions, pb};
use clap::{Args, Subcommand};

use crate::{parse_run, run_ref::RunRef};

/// Files past this size show their progress on a terminal.
const PROGRESS_FROM_BYTES: u64 = 16 * 1024 * 1024;

/// Arguments of `baa-log artifact`.
#[derive(Debug, Args)]
pub(crate) struct ArtifactArgs {
    /// What to do.
    #[command(subcommand)]
    command: ArtifactCommand,
}

/// The artifact subcommands.
#[derive(Debug, Subcommand)]
enum ArtifactCommand {
    /// Upload files into the run's artifacts/, each under its file name
    /// (or --as NAME), resumed after a broken connection.
    Put(PutArgs),
    /// Download an artifact into a file (-o PATH, or its file name here),
    /// resuming a partial file left by an earlier get.
    Get(GetArgs),
    /// List the run's artifacts: size, time, SHA-256, name.
    Ls(LsArgs),
}

/// Arguments of `baa-log checkpoint`.
#[derive(Debug, Args)]
pub(crate) struct CheckpointArgs {
    /// What to do.
    #[command(subcommand)]
    command: CheckpointCommand,
}

/// The checkpoint subcommands.
#[derive(Debug, Subcommand)]
enum CheckpointCommand {
    /// Save files as the run's next checkpoint: reserves a slot (the run's
    /// log records checkpoint_slot_reserved), uploads them into it, and
    /// commits it, which moves the run state's checkpointSeq. Prints the
    /// slot.
    Put(PutArgs),
    /// Download a file of a checkpoint: the run's current one, or --seq N.
    Get(CheckpointGetArgs),
    /// List the files of the run's checkpoints.
    Ls(LsArgs),
}

/// Arguments of `put`.
#[derive(Debug, Args)]
struct PutArgs {
    /// The run, as TASK/RUN, TASK/@latest or TASK/@latest~N.
    #[arg(value_parser = parse_run)]
    run: RunRef,
    /// The files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// The object's name (a relative path, `/`-separated), for one file;
    /// default: the file's name.
    #[arg(long = "as", value_name = "NAME")]
    name: Option<String>,
}

/// Arguments of `artifact get`.
#[derive(Debug, Args)]
struct GetArgs {
    /// The run, as TASK/RUN, TASK/@latest or TASK/@latest~N.
    #[arg(value_parser = parse_run)]
    run: RunRef,
    /// The object's name.
    name: String,
    /// Where to write it; default: its file name, here.
    #[arg(short, long, value_name = "PATH")]
    output: Option<PathBuf>,
}

/// Arguments of `checkpoint get`.
#[derive(Debug, Args)]
struct CheckpointGetArgs {
    /// The checkpoint and file.
    #[command(flatten)]
    get: GetArgs,
    /// The checkpoint slot; default: the run's checkpointSeq.
    #[arg(long)]
    seq: Option<u64>,
}

/// Arguments of `ls`.
#[derive(Debug, Args)]
struct LsArgs {
    /// The run, as TASK/RUN, TASK/@latest or TASK/@latest~N.
    #[arg(value_parser = parse_run)]
    run: RunRef,
}

/// `baa-log artifact`.
pub(crate) async fn artifact(client: &Client, args: ArtifactArgs) -> Result<u8, ClientError> {
    match args.command {
        ArtifactCommand::Put(args) => {
            let key = args.run.resolve(client).await?;
            for (file, name) in names(&args.files, args.name)? {
                let stored = upload(client, &key, ObjectName::artifact(name), &file).await?;
                println!("{}", line(&stored));
            }
            Ok(0)
        }
        ArtifactCommand::Get(args) => {
            let key = args.run.resolve(client).await?;
            download(client, &key, ObjectName::artifact(&args.name), args.output).await
        }
        ArtifactCommand::Ls(args) => list(client, args, pb::ObjectKind::Artifact).await,
    }
}

/// `baa-log checkpoint`.
pub(crate) async fn checkpoint(client: &Client, args: CheckpointArgs) -> Result<u8, ClientError> {
    match args.command {
        CheckpointCommand::Put(args) => {
            let key = args.run.resolve(client).await?;
            let files = names(&args.files, args.name)?;
            let slot = client.reserve_checkpoint(&key).await?;
            for (file, name) in files {
                upload(client, &key, ObjectName::checkpoint(slot, name), &file).await?;
            }
            let state = client.commit_checkpoint(&key, slot).await?;
            println!("{key} checkpoint {}", state.checkpoint_seq);
            Ok(0)
        }
        CheckpointCommand::Get(args) => {
            let key = args.get.run.resolve(client).await?;
            let seq = match args.seq {
                Some(seq) => seq,
                None => client
                    .get_run(&key)
                    .await?
                    .state
                    .map_or(0, |state| state.checkpoint_seq),
            };
            if seq == 0 {
                return Err(ClientError::InvalidInput {
                    what: "checkpoint",
                    reason: format!("run {key} has no committed checkpoint"),
                });
            }
            let name = ObjectName::checkpoint(seq, &args.get.name);
            download(client, &key, name, args.get.output).await
        }
        CheckpointCommand::Ls(args) => list(client, args, pb::ObjectKind::Checkpoint).await,
    }
}

/// Each file with its object name: `--as` for one file, else its file
/// name.
fn names(files: &[PathBuf], name: Option<String>) -> Result<Vec<(PathBuf, String)>, ClientError> {
    if name.is_some() && files.len() > 1 {
        return Err(ClientError::InvalidInput {
            what: "--as",
            reason: "names one file; give one file with it".to_owned(),
        });
    }
    files
        .iter()
        .map(|file| {
            let name = match &name {
                Some(name) => name.clone(),
                None => file_name(file)?,
            };
            Ok((file.clone(), name))
        })
        .collect()
}

/// A file's own name, as an object name.
fn file_name(file: &Path) -> Result<String, ClientError> {
    file.file_name()
        .and_then(|name| name.to_str())
        .map(str::to_owned)
        .ok_or_else(|| ClientError::InvalidInput {
            what: "file",
            reason: format!("{} has no file name that is UTF-8", file.display()),
        })
}

/// How a transfer shows its progress: on stderr, when it is a terminal.
fn progress(label: String) -> TransferOptions {
    if !std::io::stderr().is_terminal() {
        return TransferOptions::default();
    }
    TransferOptions {
        progress: Some(Arc::new(move |done, size| {
            if size >= PROGRESS_FROM_BYTES {
                let percent = done * 100 / size.max(1);
                eprint!("\r{label}: {percent:>3}% of {size} bytes");
                if done == size {
                    eprintln!();
                }
            }
        })),
        ..TransferOptions::default()
    }
}

/// Uploads one file.
pub(crate) async fn upload(
    client: &Client,
    key: &RunKey,
    object: ObjectName,
    file: &Path,
) -> Result<pb::ObjectInfo, ClientError> {
    let options = progress(object.name.clone());
    client.upload_file(key, &object, file, &options).await
}

/// Downloads one object into `output`, or its file name here.
async fn download(
    client: &Client,
    key: &RunKey,
    object: ObjectName,
    output: Option<PathBuf>,
) -> Result<u8, ClientError> {
    let output = match output {
        Some(output) => output,
        None => PathBuf::from(object.name.rsplit('/').next().unwrap_or(&object.name)),
    };
    let options = progress(object.name.clone());
    let stored = client
        .download_file(key, &object, &output, &options)
        .await?;
    eprintln!(
        "{} -> {} ({} bytes, sha256 {})",
        stored.name,
        output.display(),
        stored.size,
        hex(&stored.sha256)
    );
    Ok(0)
}

/// Lists a run's objects of `kind`.
async fn list(client: &Client, args: LsArgs, kind: pb::ObjectKind) -> Result<u8, ClientError> {
    let key = args.run.resolve(client).await?;
    let listing = client.list_objects(&key, kind).await?;
    for object in &listing.objects {
        println!("{}", line(object));
    }
    Ok(0)
}

/// One object as `ls` and `put` print it: size, time, SHA-256, name
/// (a checkpoint's with its slot).
fn line(object: &pb::ObjectInfo) -> String {
    let name = match object.kind() {
        pb::ObjectKind::Checkpoint => format!("{}/{}", object.checkpoint_seq, object.name),
        _ => object.name.clone(),
    };
    format!(
        "{:>12}  {}  {}  {name}",
        object.size,
        object.modified_at,
        hex(&object.sha256)
    )
}

/// Bytes in hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Uploads the files that match `patterns` (globs, relative to the working
/// directory) as artifacts of `key`, each under its path as matched (its
/// file name when that path is absolute or climbs with `..`). Says on
/// stderr what it uploaded and what it could not; returns how many
/// failed.
pub(crate) async fn upload_matches(client: &Client, key: &RunKey, patterns: &[String]) -> usize {
    let mut failed = 0;
    let mut uploaded = 0;
    for pattern in patterns {
        let paths = match glob::glob(pattern) {
            Ok(paths) => paths,
            Err(err) => {
                eprintln!("baa-log: --artifacts {pattern:?} is not a pattern: {err}");
                failed += 1;
                continue;
            }
        };
        let mut matched = 0;
        for path in paths.flatten() {
            if !path.is_file() {
                continue;
            }
            matched += 1;
            let name = artifact_name(&path);
            match upload(client, key, ObjectName::artifact(&name), &path).await {
                Ok(stored) => {
                    uploaded += 1;
                    eprintln!(
                        "baa-log: artifact {} uploaded to {key} ({} bytes)",
                        stored.name, stored.size
                    );
                }
                Err(err) => {
                    failed += 1;
                    eprintln!(
                        "baa-log: cannot upload {} as artifact {name} of {key}: {err}",
                        path.display()
                    );
                }
            }
        }
        if matched == 0 {
            eprintln!("baa-log: --artifacts {pattern:?} matched no file");
        }
    }
    if uploaded > 0 || failed > 0 {
        eprintln!("baa-log: {uploaded} artifacts uploaded to {key}, {failed} failed");
    }
    failed
}

/// The artifact name of a matched path.
fn artifact_name(path: &Path) -> String {
    let plain = path.is_relative()
        && path
            .components()
            .all(|part| matches!(part, std::path::Component::Normal(_)));
    match (plain, path.to_str()) {
        (true, Some(text)) => text.to_owned(),
        _ => path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string()),
    }
}
