//! Progress on stderr while a phase runs: a counter the workers bump and a
//! task that prints it once a second, so a long run shows it is alive and
//! how fast it goes. The table and the JSON file are the results; this is
//! only for the person watching.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::task::JoinHandle;

/// A phase's progress counter, printed every second until dropped.
#[derive(Debug)]
pub(crate) struct Progress {
    /// What the workers count.
    count: Arc<AtomicU64>,
    /// The printer.
    printer: JoinHandle<()>,
}

impl Progress {
    /// Starts printing `label: <count> / <total> <unit>` every second.
    pub(crate) fn start(label: String, total: u64, unit: &'static str) -> Self {
        let count = Arc::new(AtomicU64::new(0));
        let printer = {
            let count = count.clone();
            tokio::spawn(async move {
                let start = Instant::now();
                let mut ticker = tokio::time::interval(Duration::from_secs(1));
                ticker.tick().await;
                loop {
                    ticker.tick().await;
                    let done = count.load(Ordering::Relaxed);
                    let secs = start.elapsed().as_secs_f64();
                    if total > 0 {
                        eprintln!(
                            "  {label}: {done} / {total} {unit} ({:.0}/s, {secs:.0} s)",
                            done as f64 / secs
                        );
                    } else {
                        eprintln!("  {label}: {done} {unit} ({secs:.0} s)");
                    }
                }
            })
        };
        Self { count, printer }
    }

    /// The counter, for the workers.
    pub(crate) fn counter(&self) -> Arc<AtomicU64> {
        self.count.clone()
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.printer.abort();
    }
}

/// Prints the start of a phase.
pub(crate) fn phase(text: &str) {
    eprintln!("{text}");
}
