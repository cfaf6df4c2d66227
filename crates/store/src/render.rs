//! The one human-readable line of a lifecycle event (`renderedLine`).

use crate::model::{LogLevel, StructuredData, WorkerLifecycleEventType};

/// Renders an event as `<time> <LEVEL> <type> <message> <data>`, where the
/// data is compact JSON and left out when empty. Newlines in the message are
/// escaped so that the result stays one line.
pub fn render_line(
    created_at: &str,
    level: LogLevel,
    event_type: WorkerLifecycleEventType,
    message: &str,
    data: &StructuredData,
) -> String {
    let mut line = format!(
        "{created_at} {:<5} {}",
        level.as_str().to_ascii_uppercase(),
        event_type.as_str()
    );
    if !message.is_empty() {
        line.push(' ');
        line.push_str(&message.replace('\r', "\\r").replace('\n', "\\n"));
    }
    if !data.is_empty() {
        line.push(' ');
        line.push_str(&serde_json::Value::Object(data.clone()).to_string());
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line holds time, level, type, message and data, on one line.
    #[test]
    fn renders_every_part_on_one_line() {
        let mut data = StructuredData::new();
        data.insert("exitCode".into(), 3.into());
        let line = render_line(
            "2026-01-02T03:04:05.678Z",
            LogLevel::Warn,
            WorkerLifecycleEventType::WorkerExited,
            "exited\nbadly",
            &data,
        );
        assert_eq!(
            line,
            r#"2026-01-02T03:04:05.678Z WARN  worker_exited exited\nbadly {"exitCode":3}"#
        );
    }
}
