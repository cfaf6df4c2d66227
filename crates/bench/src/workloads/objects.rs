//! W10 objects: the upload and the download of one large artifact through
//! baa-logd, against `dd if=FILE of=OUT bs=1M conv=fsync` of the same file
//! to the same file system.
//!
//! One temporary directory holds the source file, dd's copy, the server's
//! data directory and the downloaded copy, so every write lands on the
//! same file system, which the report names (its `statfs` type). Each
//! round times three whole commands: dd, then `baa-log artifact put`
//! (read, SHA-256, stream; the server stages, hashes, fsyncs and renames),
//! then `baa-log artifact get` (stream, write and hash as it comes, fsync,
//! digest check). The source is read once before, so all three start from
//! the page cache.
//!
//! With `baa-logd-js3-sync` among the systems, a second row measures the
//! same on three baa-logd nodes on a three-server NATS cluster with
//! `sync_interval: always`: the upload goes through the first node, the
//! download through the third, so the object's bytes cross the cluster.

use std::{
    io::Write,
    path::Path,
    time::{Duration, Instant},
};

use baa_logging_client::{Client, NewRun, ObjectName, RunKey};
use serde::Serialize;

use crate::{
    error::{BenchError, Context, Result},
    process::{ServerProcess, find_cli, wait_serving},
    progress,
    report::ObjectsRow,
    samples::Samples,
    systems::{Launcher, Role, SystemKind, grpc::baa_logd_args, jetstream_logd::JetStreamLogd},
};

/// The servers of one row: a baa-logd on local disk, or nodes on a NATS
/// cluster.
enum Servers {
    /// One process with its data directory.
    Local(ServerProcess),
    /// The cluster and its nodes.
    Cluster(JetStreamLogd),
}

impl Servers {
    /// Where uploads go.
    fn upload_url(&self) -> String {
        match self {
            Self::Local(server) => server.url(),
            Self::Cluster(cluster) => cluster.node(Role::Writer(0)).url(),
        }
    }

    /// Where downloads come from.
    fn download_url(&self) -> String {
        match self {
            Self::Local(server) => server.url(),
            Self::Cluster(cluster) => cluster.node(Role::Follower).url(),
        }
    }

    /// Stops them.
    async fn stop(self) -> Result<()> {
        match self {
            Self::Local(server) => server.terminate().await,
            Self::Cluster(cluster) => cluster.stop().await,
        }
    }
}

/// W10's parameters.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ObjectsParams {
    /// The object's size, MiB.
    pub(crate) mib: u64,
    /// Rounds, each dd, an upload and a download.
    pub(crate) rounds: usize,
}

/// Runs W10 on each of `systems` (`baa-logd`, `baa-logd-js3-sync`).
pub(crate) async fn run(
    launcher: &Launcher,
    cli_bin: Option<std::path::PathBuf>,
    params: &ObjectsParams,
    systems: &[SystemKind],
) -> Vec<ObjectsRow> {
    let mut rows = Vec::new();
    for &system in systems {
        rows.push(run_one(launcher, cli_bin.clone(), params, system).await);
    }
    rows
}

/// Runs W10 on one system.
async fn run_one(
    launcher: &Launcher,
    cli_bin: Option<std::path::PathBuf>,
    params: &ObjectsParams,
    system: SystemKind,
) -> ObjectsRow {
    progress::phase(&format!(
        "W10 objects · {system:?} · {} MiB, {} rounds",
        params.mib, params.rounds
    ));
    let mut row = ObjectsRow {
        system,
        object_mib: params.mib,
        filesystem: String::new(),
        rounds: params.rounds,
        dd_secs: Samples::default(),
        upload_secs: Samples::default(),
        download_secs: Samples::default(),
        dd_mib_per_sec: None,
        upload_mib_per_sec: None,
        download_mib_per_sec: None,
        upload_ratio: None,
        download_ratio: None,
        note: None,
        wrong_answer: None,
    };
    if let Err(err) = measure(launcher, cli_bin, params, &mut row).await {
        match err {
            BenchError::WrongAnswer(wrong) => row.wrong_answer = Some(wrong),
            err => row.note = Some(err.to_string()),
        }
    }
    let rate = |samples: &Samples| {
        samples
            .median()
            .filter(|secs| *secs > 0.0)
            .map(|secs| params.mib as f64 / secs)
    };
    row.dd_mib_per_sec = rate(&row.dd_secs);
    row.upload_mib_per_sec = rate(&row.upload_secs);
    row.download_mib_per_sec = rate(&row.download_secs);
    let ratio = |got: Option<f64>| Some(got? / row.dd_mib_per_sec?);
    row.upload_ratio = ratio(row.upload_mib_per_sec);
    row.download_ratio = ratio(row.download_mib_per_sec);
    row
}

/// Times the rounds into `row`.
async fn measure(
    launcher: &Launcher,
    cli_bin: Option<std::path::PathBuf>,
    params: &ObjectsParams,
    row: &mut ObjectsRow,
) -> Result<()> {
    let baa_log = tokio::task::spawn_blocking(move || find_cli(cli_bin))
        .await
        .map_err(|err| BenchError::Failed(format!("cannot find baa-log: {err}")))??;
    let dir = tempfile::Builder::new()
        .prefix("baa-bench-w10-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    row.filesystem = filesystem_name(dir.path());
    let source = dir.path().join("object.bin");
    progress::phase(&format!("  writing a {} MiB file", params.mib));
    write_source(&source, params.mib)?;
    let data_dir = dir.path().join("data");
    let baa_logd = &launcher.programs.baa_logd;
    let servers = match row.system.cluster() {
        Some(shape) => Servers::Cluster(
            JetStreamLogd::start(baa_logd, launcher.nats_server.clone(), shape).await?,
        ),
        None => Servers::Local(ServerProcess::start(baa_logd, baa_logd_args(&data_dir)).await?),
    };
    wait_serving(&servers.upload_url(), Duration::from_secs(30)).await?;
    wait_serving(&servers.download_url(), Duration::from_secs(30)).await?;
    let client = Client::connect(servers.upload_url())
        .await
        .map_err(|err| BenchError::Failed(format!("cannot connect: {err}")))?;
    for round in 0..=params.rounds {
        // Round 0 is not timed: the first transfers of a new server run
        // slower (its allocator, the source's pages).
        let timed = round > 0;
        progress::phase(&format!("  round {round}/{}: dd", params.rounds));
        warm_memory(dir.path(), 2 * params.mib)?;
        let copy = dir.path().join("dd.out");
        let started = Instant::now();
        let status = tokio::process::Command::new("dd")
            .arg(format!("if={}", source.display()))
            .arg(format!("of={}", copy.display()))
            .args(["bs=1M", "conv=fsync", "status=none"])
            .status()
            .await
            .context("cannot run dd")?;
        if !status.success() {
            return Err(BenchError::Failed(format!("dd failed: {status}")));
        }
        if timed {
            row.dd_secs.push(started.elapsed().as_secs_f64());
        }
        std::fs::remove_file(&copy).context("cannot remove dd's copy")?;

        progress::phase(&format!("  round {round}/{}: upload", params.rounds));
        warm_memory(dir.path(), 2 * params.mib)?;
        let key = RunKey::new("w10", format!("r{round}"));
        client
            .prepare_run(NewRun::new("w10", format!("r{round}")))
            .await
            .map_err(|err| BenchError::Failed(format!("PrepareRun: {err}")))?;
        let run = format!("w10/r{round}");
        let started = Instant::now();
        run_cli(
            &baa_log,
            &servers.upload_url(),
            &[
                "artifact",
                "put",
                &run,
                &source.to_string_lossy(),
                "--as",
                "object.bin",
            ],
        )
        .await?;
        if timed {
            row.upload_secs.push(started.elapsed().as_secs_f64());
        }
        let listing = client
            .list_objects(&key, baa_logging_client::pb::ObjectKind::Artifact)
            .await
            .map_err(|err| BenchError::Failed(format!("ListObjects: {err}")))?;
        let stored = listing
            .objects
            .iter()
            .find(|object| object.name == ObjectName::artifact("object.bin").name)
            .ok_or_else(|| BenchError::WrongAnswer("W10 stored no object.bin".into()))?;
        if stored.size != params.mib << 20 {
            return Err(BenchError::WrongAnswer(format!(
                "W10 stored {} bytes of {}",
                stored.size,
                params.mib << 20
            )));
        }

        progress::phase(&format!("  round {round}/{}: download", params.rounds));
        warm_memory(dir.path(), 2 * params.mib)?;
        let out = dir.path().join("download.out");
        let started = Instant::now();
        run_cli(
            &baa_log,
            &servers.download_url(),
            &[
                "artifact",
                "get",
                &run,
                "object.bin",
                "-o",
                &out.to_string_lossy(),
            ],
        )
        .await?;
        if timed {
            row.download_secs.push(started.elapsed().as_secs_f64());
        }
        // `get` checked the digest; the harness checks the bytes once more.
        let same = tokio::task::spawn_blocking({
            let (source, out) = (source.clone(), out.clone());
            move || same_bytes(&source, &out)
        })
        .await
        .map_err(|err| BenchError::Failed(format!("the comparison failed: {err}")))??;
        if !same {
            return Err(BenchError::WrongAnswer(
                "W10 downloaded other bytes than it uploaded".into(),
            ));
        }
        std::fs::remove_file(&out).context("cannot remove the download")?;
        // The next round's upload is a new object of a new run: the staged
        // and stored bytes of this one go, to keep the disk's state alike.
        let _ = std::fs::remove_dir_all(data_dir.join("w10").join(format!("r{round}")));
    }
    servers.stop().await?;
    Ok(())
}

/// Runs `baa-log ARGS` against `url`; an error when it fails.
async fn run_cli(baa_log: &Path, url: &str, args: &[&str]) -> Result<()> {
    let output = tokio::process::Command::new(baa_log)
        .args(args)
        .env("BAA_LOG_SERVER", url)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .context("cannot run baa-log")?;
    if !output.status.success() {
        return Err(BenchError::Failed(format!(
            "baa-log {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(())
}

/// Whether two files hold the same bytes.
fn same_bytes(a: &Path, b: &Path) -> Result<bool> {
    use std::io::Read;
    let open = |path: &Path| {
        std::fs::File::open(path)
            .map(std::io::BufReader::new)
            .context(format!("cannot open {}", path.display()))
    };
    let (mut a, mut b) = (open(a)?, open(b)?);
    let (mut left, mut right) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let got = a.read(&mut left).context("cannot read the source")?;
        if got == 0 {
            return Ok(b.read(&mut right).context("cannot read the download")? == 0);
        }
        if b.read_exact(&mut right[..got]).is_err() || left[..got] != right[..got] {
            return Ok(false);
        }
    }
}

/// Writes `mib` MiB of pseudo-random bytes (incompressible, so no file
/// system or transport shortcut helps) and reads them once, into the
/// page cache.
fn write_source(path: &Path, mib: u64) -> Result<()> {
    let mut rng = fastrand::Rng::with_seed(10);
    let mut file = std::fs::File::create(path).context("cannot create the source file")?;
    let mut chunk = vec![0u8; 1 << 20];
    for _ in 0..mib {
        rng.fill(&mut chunk);
        file.write_all(&chunk)
            .context("cannot write the source file")?;
    }
    file.sync_all().context("cannot sync the source file")?;
    std::fs::read(path).context("cannot read the source file")?;
    Ok(())
}

/// Writes `mib` MiB to a scratch file in `dir`, syncs it and removes it.
///
/// Called before each timed copy. On a virtual machine whose balloon
/// reports free pages to the host, a page the guest freed a few seconds
/// ago is handed back, and the next write to it pays the host's fault:
/// several times what a write to a page in use costs (here about
/// 200 MiB/s against 1.4 GiB/s). Each copy writes the object's size of new
/// page cache; without this, whichever came first after pages were freed
/// (dd, right after the previous round's files were removed) would write
/// into warm pages and the others into cold ones. The pages freed here
/// are the ones the kernel hands out next, so every copy starts alike.
fn warm_memory(dir: &Path, mib: u64) -> Result<()> {
    let path = dir.join("warm.scratch");
    let mut file = std::fs::File::create(&path).context("cannot create the scratch file")?;
    let chunk = vec![0x5au8; 1 << 20];
    for _ in 0..mib {
        file.write_all(&chunk)
            .context("cannot write the scratch file")?;
    }
    file.sync_all().context("cannot sync the scratch file")?;
    drop(file);
    std::fs::remove_file(&path).context("cannot remove the scratch file")?;
    Ok(())
}

/// The file system `path` is on, by its `statfs` type.
fn filesystem_name(path: &Path) -> String {
    use nix::sys::statfs::{self, statfs};
    let Ok(stat) = statfs(path) else {
        return "unknown".to_owned();
    };
    let kind = stat.filesystem_type();
    let name = match kind {
        statfs::EXT4_SUPER_MAGIC => "ext4",
        statfs::TMPFS_MAGIC => "tmpfs",
        statfs::XFS_SUPER_MAGIC => "xfs",
        statfs::BTRFS_SUPER_MAGIC => "btrfs",
        statfs::OVERLAYFS_SUPER_MAGIC => "overlayfs",
        _ => return format!("statfs type {:#x}", kind.0),
    };
    name.to_owned()
}
