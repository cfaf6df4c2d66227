//! The JSON shapes of the run-logging contract (the TypeScript interfaces a
//! conductor reads and writes), transcribed field by field, and a check of
//! a JSON value against one of them: exactly the interface's camelCase
//! keys, string enums by their contract names, optional fields absent when
//! unset (a TypeScript `field?: string` is never `null`).

use serde_json::Value;

/// What a field of a contract interface holds.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// `string`.
    Text,
    /// `string`, a time in `Date.prototype.toISOString` form.
    Time,
    /// `number`; every number of the layout is an integer.
    Integer,
    /// A union of string literals, such as `RunStatus`.
    OneOf(&'static [&'static str]),
    /// `StructuredData`: an object of JSON values.
    Object,
}

/// One field of an interface.
#[derive(Debug)]
pub struct Field {
    /// The key, in camelCase as in the contract.
    pub name: &'static str,
    /// What the value must be.
    pub kind: Kind,
    /// False for `name?: …`.
    pub required: bool,
}

/// A contract interface.
#[derive(Debug)]
pub struct Interface {
    /// The interface's name in the contract, for messages.
    pub name: &'static str,
    /// Every field, inherited ones included; no other key is allowed.
    pub fields: &'static [Field],
}

/// A required field.
const fn field(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        required: true,
    }
}

/// An optional field (`name?: …`).
const fn optional(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        required: false,
    }
}

/// `LogLevel`.
pub const LOG_LEVELS: &[&str] = &["debug", "info", "warn", "error"];
/// `StreamLogChannel`.
pub const STREAM_CHANNELS: &[&str] = &["stdout", "stderr"];
/// `RunStatus`.
pub const RUN_STATUSES: &[&str] = &["prepared", "running", "completed", "failed", "blocked"];
/// `WorkerLifecycleEventType`.
pub const EVENT_TYPES: &[&str] = &[
    "run_prepared",
    "checkpoint_slot_reserved",
    "worker_started",
    "worker_execution_deferred",
    "worker_exited",
    "step_prepared",
    "step_completed",
    "step_failed",
    "step_blocked",
];

/// `RunMetadata`, the shape of `meta.json`.
pub const RUN_METADATA: Interface = Interface {
    name: "RunMetadata",
    fields: &[
        field("layoutVersion", Kind::Text),
        field("taskId", Kind::Text),
        field("stepId", Kind::Text),
        field("stepName", Kind::Text),
        field("runId", Kind::Text),
        field("workerKind", Kind::Text),
        field("attempt", Kind::Integer),
        field("repoRoot", Kind::Text),
        field("worktreePath", Kind::Text),
        field("createdAt", Kind::Time),
        field("checkpointMode", Kind::Text),
        optional("promptSummary", Kind::Text),
        optional("command", Kind::Text),
    ],
};

/// `RunStateSnapshot`, the shape of `state.json`.
pub const RUN_STATE_SNAPSHOT: Interface = Interface {
    name: "RunStateSnapshot",
    fields: &[
        field("status", Kind::OneOf(RUN_STATUSES)),
        field("attempt", Kind::Integer),
        field("startedAt", Kind::Time),
        field("updatedAt", Kind::Time),
        optional("finishedAt", Kind::Time),
        field("lastEventSeq", Kind::Integer),
        field("checkpointSeq", Kind::Integer),
        optional("summary", Kind::Text),
        optional("exitCode", Kind::Integer),
    ],
};

/// `WorkerLifecycleLogEntry` (with `LocalRunLogContext`), the shape of a
/// line of `worker.log`.
pub const WORKER_LIFECYCLE_LOG_ENTRY: Interface = Interface {
    name: "WorkerLifecycleLogEntry",
    fields: &[
        field("taskId", Kind::Text),
        field("stepId", Kind::Text),
        field("runId", Kind::Text),
        field("seq", Kind::Integer),
        field("channel", Kind::OneOf(&["worker"])),
        field("eventId", Kind::Text),
        field("type", Kind::OneOf(EVENT_TYPES)),
        field("level", Kind::OneOf(LOG_LEVELS)),
        field("createdAt", Kind::Time),
        field("message", Kind::Text),
        field("data", Kind::Object),
        field("renderedLine", Kind::Text),
    ],
};

/// `StreamChunkLogEntry` (with `LocalRunLogContext`), the shape of a line
/// of `stdout.log` and `stderr.log`.
pub const STREAM_CHUNK_LOG_ENTRY: Interface = Interface {
    name: "StreamChunkLogEntry",
    fields: &[
        field("taskId", Kind::Text),
        field("stepId", Kind::Text),
        field("runId", Kind::Text),
        field("seq", Kind::Integer),
        field("channel", Kind::OneOf(STREAM_CHANNELS)),
        field("createdAt", Kind::Time),
        field("text", Kind::Text),
    ],
};

/// Whether a string is a time as `toISOString` writes it.
pub fn is_iso_time(text: &str) -> bool {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| bytes[range].iter().all(u8::is_ascii_digit);
    bytes.len() == 24
        && digits(0..4)
        && digits(5..7)
        && digits(8..10)
        && digits(11..13)
        && digits(14..16)
        && digits(17..19)
        && digits(20..23)
        && [
            (4, b'-'),
            (7, b'-'),
            (10, b'T'),
            (13, b':'),
            (16, b':'),
            (19, b'.'),
            (23, b'Z'),
        ]
        .iter()
        .all(|&(at, byte)| bytes[at] == byte)
}

/// Asserts that `value` has the shape of `interface`; `what` names it in
/// the failure.
pub fn assert_shape(interface: &Interface, value: &Value, what: &str) {
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("{what}: a {} must be an object: {value}", interface.name));
    for key in object.keys() {
        assert!(
            interface.fields.iter().any(|field| field.name == key),
            "{what}: {} has no field {key:?}: {value}",
            interface.name
        );
    }
    for field in interface.fields {
        let Some(got) = object.get(field.name) else {
            assert!(
                !field.required,
                "{what}: {}.{} is missing: {value}",
                interface.name, field.name
            );
            continue;
        };
        let fits = match field.kind {
            Kind::Text => got.is_string(),
            Kind::Time => got.as_str().is_some_and(is_iso_time),
            Kind::Integer => got.is_i64() || got.is_u64(),
            Kind::OneOf(names) => got.as_str().is_some_and(|name| names.contains(&name)),
            Kind::Object => got.is_object(),
        };
        assert!(
            fits,
            "{what}: {}.{} must be {:?}, not {got}{}",
            interface.name,
            field.name,
            field.kind,
            if got.is_null() {
                " (an unset optional field is absent, never null)"
            } else {
                ""
            }
        );
    }
}
