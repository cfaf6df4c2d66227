//! Tokens limited to some tasks: `tasks = ["nightly", "release-*"]` in a
//! token's entry. The auth layer puts the limit of the token that
//! authorized a call in the request's extensions; each RPC checks the
//! task it touches against it before it reaches the store.
//!
//! A pattern is a task id where `*` stands for any run of characters
//! (none included). A limited token cannot call what spans every task:
//! `ListRuns` without a `task_id`, and `CollectRuns`.

use std::{fmt, sync::Arc};

use tonic::{Extensions, Status};

/// The tasks a token may touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskLimit {
    /// The token's name, for messages.
    token: String,
    /// The patterns.
    patterns: Vec<String>,
}

impl TaskLimit {
    /// The limit of token `token` to `patterns`.
    pub(crate) fn new(token: String, patterns: Vec<String>) -> Self {
        Self { token, patterns }
    }

    /// Whether the token may touch `task_id`.
    pub fn allows(&self, task_id: &str) -> bool {
        self.patterns
            .iter()
            .any(|pattern| glob_matches(pattern, task_id))
    }
}

impl fmt::Display for TaskLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.patterns.join(", "))
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of
/// characters.
fn glob_matches(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// The limit of the token that authorized a call, if it has one.
pub(crate) fn limit_of(extensions: &Extensions) -> Option<Arc<TaskLimit>> {
    extensions.get::<Arc<TaskLimit>>().cloned()
}

/// Refuses a call on `task_id` that `limit` does not allow.
pub(crate) fn check(limit: Option<&TaskLimit>, task_id: &str) -> Result<(), Status> {
    match limit {
        Some(limit) if !limit.allows(task_id) => Err(Status::permission_denied(format!(
            "token `{}` may not touch task `{task_id}`: it is limited to {limit}",
            limit.token
        ))),
        _ => Ok(()),
    }
}

/// Refuses a call that spans every task, for a limited token.
pub(crate) fn check_all_tasks(limit: Option<&TaskLimit>, what: &str) -> Result<(), Status> {
    match limit {
        Some(limit) => Err(Status::permission_denied(format!(
            "token `{}` is limited to {limit}: {what}",
            limit.token
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `*` matches any run of characters, none included; the rest must
    /// match exactly.
    #[test]
    fn patterns_match_as_globs() {
        let limit = TaskLimit::new(
            "t".into(),
            vec!["nightly".into(), "release-*".into(), "*-ci-*".into()],
        );
        for allowed in ["nightly", "release-", "release-1.2", "a-ci-b", "-ci-"] {
            assert!(limit.allows(allowed), "{allowed}");
        }
        for refused in ["nightly2", "xnightly", "releases", "ci", "a-ci", "release"] {
            assert!(!limit.allows(refused), "{refused}");
        }
    }
}
