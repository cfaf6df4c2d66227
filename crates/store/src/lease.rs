//! Worker leases, in terms every backend shares: the lifecycle entries a
//! store writes when a run's worker is lost and when it comes back, and
//! the summary of a run failed that way.
//!
//! The server decides *when* a lease expires (it sees the append streams);
//! the store decides *whether* it still can and records it, under the
//! run's own lock, through [`crate::RunStore::expire_lease`]. A run failed
//! only because its lease expired stays open to the writers that had
//! appended to it before: they may deliver what they spooled while cut
//! off, and set the run's final status once
//! ([`crate::RunStore::update_state_by`]). Every step leaves a lifecycle
//! entry on the worker channel, so a run's log tells the whole story in
//! `seq` order:
//!
//! 1. `step_failed` / error, [`LEASE_EXPIRED_REASON`]: the lease expired
//!    and the run failed;
//! 2. `worker_execution_deferred` / info, [`WORKER_RETURNED_REASON`]:
//!    before the first entry a returning writer delivers late;
//! 3. then that writer's entries;
//! 4. `step_completed`, `step_failed` or `step_blocked`,
//!    [`WORKER_RETURNED_REASON`]: the final status the writer set, and how
//!    many entries it delivered late.

use std::time::Duration;

use crate::model::{
    LogLevel, RunStatus, StructuredData, WorkerLifecycleEventInput, WorkerLifecycleEventType,
};

/// The `reason` in the data of the entry that records an expired lease.
pub const LEASE_EXPIRED_REASON: &str = "worker_lease_expired";

/// The `reason` in the data of the entries that record a writer coming
/// back after its lease expired.
pub const WORKER_RETURNED_REASON: &str = "worker_returned_late";

/// A lease that ran out: what the store records when it fails the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseExpiry {
    /// How long the run went without a writer: the lease that applied,
    /// the server's or the longer one a writer asked for.
    pub lease: Duration,
    /// The writer whose append stream closed last; none when no stream
    /// opened on the run since the server started or the run moved to
    /// `running`.
    pub last_writer: Option<String>,
}

impl LeaseExpiry {
    /// The summary of the failed run's state.
    pub fn summary(&self) -> String {
        format!(
            "worker lost: no writer for {} (the worker lease)",
            show_duration(self.lease)
        )
    }

    /// The lifecycle event that records the expiry.
    pub fn event(&self) -> WorkerLifecycleEventInput {
        let mut data = StructuredData::new();
        data.insert("reason".into(), LEASE_EXPIRED_REASON.into());
        data.insert("leaseMs".into(), millis(self.lease).into());
        if let Some(writer) = &self.last_writer {
            data.insert("lastWriter".into(), writer.clone().into());
        }
        WorkerLifecycleEventInput {
            event_type: WorkerLifecycleEventType::StepFailed,
            level: LogLevel::Error,
            message: format!("{}; the run failed", self.summary()),
            created_at: None,
            data,
        }
    }
}

/// The lifecycle event stored before the first entry that `writer_id`
/// delivers after its lease expired; `first_late_seq` is that entry's.
pub fn returned_event(writer_id: &str, first_late_seq: u64) -> WorkerLifecycleEventInput {
    let mut data = StructuredData::new();
    data.insert("reason".into(), WORKER_RETURNED_REASON.into());
    data.insert("writerId".into(), writer_id.into());
    data.insert("firstLateSeq".into(), first_late_seq.into());
    WorkerLifecycleEventInput {
        event_type: WorkerLifecycleEventType::WorkerExecutionDeferred,
        level: LogLevel::Info,
        message: format!(
            "worker returned after its lease expired: writer `{writer_id}` delivers late from \
             seq {first_late_seq} on"
        ),
        created_at: None,
        data,
    }
}

/// The lifecycle event stored when `writer_id`, back after its lease
/// expired, sets the run's final `status`, having delivered `late_entries`
/// entries late.
pub fn settled_event(
    writer_id: &str,
    status: RunStatus,
    late_entries: u64,
    exit_code: Option<i32>,
) -> WorkerLifecycleEventInput {
    let (event_type, level) = match status {
        RunStatus::Completed => (WorkerLifecycleEventType::StepCompleted, LogLevel::Info),
        RunStatus::Blocked => (WorkerLifecycleEventType::StepBlocked, LogLevel::Warn),
        _ => (WorkerLifecycleEventType::StepFailed, LogLevel::Error),
    };
    let mut data = StructuredData::new();
    data.insert("reason".into(), WORKER_RETURNED_REASON.into());
    data.insert("writerId".into(), writer_id.into());
    data.insert("status".into(), status.as_str().into());
    data.insert("lateEntries".into(), late_entries.into());
    if let Some(exit_code) = exit_code {
        data.insert("exitCode".into(), exit_code.into());
    }
    WorkerLifecycleEventInput {
        event_type,
        level,
        message: format!(
            "worker returned after its lease expired: writer `{writer_id}` delivered \
             {late_entries} entries late and set the final status {}",
            status.as_str()
        ),
        created_at: None,
        data,
    }
}

/// A duration in whole milliseconds, saturated.
pub fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A duration as people write it: `5m`, `1h30m`, `2s`, `1500ms`.
pub fn show_duration(duration: Duration) -> String {
    let ms = millis(duration);
    if ms % 1000 != 0 || ms == 0 {
        return format!("{ms}ms");
    }
    let mut secs = ms / 1000;
    let mut text = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= size {
            text.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Durations read as an operator wrote them.
    #[test]
    fn durations_show_as_written() {
        assert_eq!(show_duration(Duration::from_secs(300)), "5m");
        assert_eq!(show_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(show_duration(Duration::from_secs(2)), "2s");
        assert_eq!(show_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(show_duration(Duration::ZERO), "0ms");
    }

    /// The expiry's entry carries its reason, the lease and the writer.
    #[test]
    fn expiry_event_names_its_reason() {
        let expiry = LeaseExpiry {
            lease: Duration::from_secs(300),
            last_writer: Some("w1".into()),
        };
        let event = expiry.event();
        assert_eq!(event.event_type, WorkerLifecycleEventType::StepFailed);
        assert_eq!(event.data["reason"], LEASE_EXPIRED_REASON);
        assert_eq!(event.data["leaseMs"], 300_000);
        assert_eq!(event.data["lastWriter"], "w1");
        assert!(event.message.starts_with("worker lost: no writer for 5m"));
    }
}
