//! W10 objects: the upload and the download of one large artifact through
//! baa-logd, against `dd if=FILE of=OUT bs=1M conv=fsync` of the same file
//! to the same file system.
//!
//! One temporary directory holds the source file, dd's copy, the server's
//! data directory and the downloaded copy, so every write lands on the
//! same file system, which the report names (its `statfs` type). Each
//! round times dd, then an upload with the client crate
//! (`Client::upload_file`: read, SHA-256, stream; the server stages,
//! hashes, fsyncs and renames), then a download (`Client::download_file`:
//! stream, write, fsync, then the whole file hashed against the object's
//! digest). The source is read once before, so all three start from the
//! page cache.

use std::{
    io::Write,
    path::Path,
    time::{Duration, Instant},
};

use baa_logging_client::{Client, NewRun, ObjectName, RunKey, TransferOptions};
use serde::Serialize;

use crate::{
    error::{BenchError, Context, Result},
    process::{ServerProcess, wait_serving},
    progress,
    report::ObjectsRow,
    samples::Samples,
    systems::grpc::baa_logd_args,
};

/// W10's parameters.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ObjectsParams {
    /// The object's size, MiB.
    pub(crate) mib: u64,
    /// Rounds, each dd, an upload and a download.
    pub(crate) rounds: usize,
}

/// Runs W10 on baa-logd.
pub(crate) async fn run(baa_logd: &Path, params: &ObjectsParams) -> Vec<ObjectsRow> {
    progress::phase(&format!(
        "W10 objects · {} MiB, {} rounds",
        params.mib, params.rounds
    ));
    let mut row = ObjectsRow {
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
    if let Err(err) = measure(baa_logd, params, &mut row).await {
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
    vec![row]
}

/// Times the rounds into `row`.
async fn measure(baa_logd: &Path, params: &ObjectsParams, row: &mut ObjectsRow) -> Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("baa-bench-w10-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    row.filesystem = filesystem_name(dir.path());
    let source = dir.path().join("object.bin");
    progress::phase(&format!("  writing a {} MiB file", params.mib));
    write_source(&source, params.mib)?;
    let data_dir = dir.path().join("data");
    let server = ServerProcess::start(baa_logd, baa_logd_args(&data_dir)).await?;
    wait_serving(&server.url(), Duration::from_secs(30)).await?;
    let client = Client::connect(server.url())
        .await
        .map_err(|err| BenchError::Failed(format!("cannot connect: {err}")))?;
    let failed = |what: &str| {
        let what = what.to_owned();
        move |err: baa_logging_client::ClientError| BenchError::Failed(format!("{what}: {err}"))
    };
    let options = TransferOptions::default();
    for round in 1..=params.rounds {
        progress::phase(&format!("  round {round}/{}: dd", params.rounds));
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
        row.dd_secs.push(started.elapsed().as_secs_f64());
        std::fs::remove_file(&copy).context("cannot remove dd's copy")?;

        progress::phase(&format!("  round {round}/{}: upload", params.rounds));
        let key = RunKey::new("w10", format!("r{round}"));
        client
            .prepare_run(NewRun::new("w10", format!("r{round}")))
            .await
            .map_err(failed("PrepareRun"))?;
        let object = ObjectName::artifact("object.bin");
        let started = Instant::now();
        let stored = client
            .upload_file(&key, &object, &source, &options)
            .await
            .map_err(failed("the upload"))?;
        row.upload_secs.push(started.elapsed().as_secs_f64());
        if stored.size != params.mib << 20 {
            return Err(BenchError::WrongAnswer(format!(
                "W10 stored {} bytes of {}",
                stored.size,
                params.mib << 20
            )));
        }

        progress::phase(&format!("  round {round}/{}: download", params.rounds));
        let out = dir.path().join("download.out");
        let started = Instant::now();
        let fetched = client
            .download_file(&key, &object, &out, &options)
            .await
            .map_err(failed("the download"))?;
        row.download_secs.push(started.elapsed().as_secs_f64());
        if fetched.sha256 != stored.sha256 {
            return Err(BenchError::WrongAnswer(
                "W10 downloaded another digest than it uploaded".into(),
            ));
        }
        std::fs::remove_file(&out).context("cannot remove the download")?;
        // The next round's upload is a new object of a new run: the staged
        // and stored bytes of this one go, to keep the disk's state alike.
        let _ = std::fs::remove_dir_all(data_dir.join("w10").join(format!("r{round}")));
    }
    server.terminate().await?;
    Ok(())
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
