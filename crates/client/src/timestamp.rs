//! The time stamps the client puts on what it sends: the run's creation
//! and every appended entry.
//!
//! A leaf module, so that `run` and `writer`, which both stamp, do not
//! import each other for it.

/// Now, as JavaScript's `toISOString` writes it.
pub(crate) fn now_iso() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}
