//! Bearer tokens and their scopes, from a TOML token file.
//!
//! ```toml
//! [[tokens]]
//! name = "ci-workers"
//! scopes = ["write"]
//! sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//!
//! [[tokens]]
//! name = "dashboard"
//! scopes = ["read"]
//! secret = "a long random string"
//! ```
//!
//! Only SHA-256 digests are kept in memory; a presented token is hashed
//! and compared with every digest in constant time, so neither the
//! comparison nor which entry matched shows in the response time.

use std::{path::Path, sync::Arc};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::tasks::TaskLimit;

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Get, list and follow runs.
    Read,
    /// Prepare runs, append to them, change their state.
    Write,
    /// Everything, including deleting runs.
    Admin,
}

impl Scope {
    /// The scope's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Admin => "admin",
        }
    }
}

/// The token file's shape.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    /// The tokens.
    #[serde(default)]
    tokens: Vec<TokenEntry>,
}

/// One token as the file gives it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    /// A name for logs and metrics; never the token itself.
    name: String,
    /// What it allows.
    scopes: Vec<Scope>,
    /// The token.
    secret: Option<String>,
    /// The token's SHA-256, in hex.
    sha256: Option<String>,
    /// The tasks it may touch (`*` matches any run of characters); all
    /// when left out.
    tasks: Option<Vec<String>>,
}

/// A known token.
#[derive(Clone)]
struct Token {
    /// Its name.
    name: String,
    /// The SHA-256 of the secret.
    digest: [u8; 32],
    /// What it allows.
    scopes: Vec<Scope>,
    /// The tasks it may touch; all when `None`.
    tasks: Option<Arc<TaskLimit>>,
}

/// A token that was accepted: its name, and the tasks it may touch.
#[derive(Debug, Clone)]
pub struct Authorized<'a> {
    /// The token's name.
    pub name: &'a str,
    /// The tasks it may touch; all when `None`.
    pub tasks: Option<Arc<TaskLimit>>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// The tokens the server accepts.
#[derive(Debug, Clone)]
pub struct TokenSet {
    /// Every token.
    tokens: Vec<Token>,
}

/// Why a token file cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("token file {path}: {reason}")]
pub struct TokenFileError {
    /// The file.
    path: String,
    /// What is wrong.
    reason: String,
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No token, or an unknown one.
    Unauthenticated(&'static str),
    /// A known token without the scope the call needs.
    PermissionDenied {
        /// The token's name.
        token: String,
        /// The scope the call needs.
        needs: Scope,
    },
}

impl TokenSet {
    /// Reads a token file.
    ///
    /// # Errors
    ///
    /// An unreadable or malformed file, an entry with neither or both of
    /// `secret` and `sha256`, an empty secret, no scope, or a token listed
    /// twice (by name, or the same secret under two names).
    pub fn load(path: &Path) -> Result<Self, TokenFileError> {
        let fail = |reason: String| TokenFileError {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|err| fail(err.to_string()))?;
        let file: TokenFile = toml::from_str(&text).map_err(|err| fail(err.to_string()))?;
        let mut tokens = Vec::new();
        for entry in file.tokens {
            let digest = match (&entry.secret, &entry.sha256) {
                (Some(secret), None) if secret.len() >= 16 => Sha256::digest(secret).into(),
                (Some(_), None) => {
                    return Err(fail(format!(
                        "token `{}` is shorter than 16 characters",
                        entry.name
                    )));
                }
                (None, Some(hex_digest)) => {
                    let bytes = hex::decode(hex_digest.trim())
                        .ok()
                        .filter(|b| b.len() == 32);
                    let bytes = bytes.ok_or_else(|| {
                        fail(format!(
                            "token `{}`: sha256 is not 64 hex digits",
                            entry.name
                        ))
                    })?;
                    let mut digest = [0u8; 32];
                    digest.copy_from_slice(&bytes);
                    digest
                }
                _ => {
                    return Err(fail(format!(
                        "token `{}` needs exactly one of `secret` and `sha256`",
                        entry.name
                    )));
                }
            };
            if entry.scopes.is_empty() {
                return Err(fail(format!("token `{}` has no scope", entry.name)));
            }
            // A token listed twice has two sets of scopes and two names,
            // and which one a request gets would depend on the order.
            if let Some(twin) = tokens
                .iter()
                .find(|token: &&Token| token.name == entry.name || token.digest == digest)
            {
                return Err(fail(if twin.name == entry.name {
                    format!("token `{}` is listed twice", entry.name)
                } else {
                    format!(
                        "tokens `{}` and `{}` are the same token",
                        twin.name, entry.name
                    )
                }));
            }
            let tasks = match entry.tasks {
                None => None,
                Some(patterns) if patterns.is_empty() || patterns.iter().any(String::is_empty) => {
                    return Err(fail(format!(
                        "token `{}`: tasks must list task ids or patterns, none empty",
                        entry.name
                    )));
                }
                Some(patterns) => Some(Arc::new(TaskLimit::new(entry.name.clone(), patterns))),
            };
            tokens.push(Token {
                name: entry.name,
                digest,
                scopes: entry.scopes,
                tasks,
            });
        }
        if tokens.is_empty() {
            return Err(fail("it holds no token".into()));
        }
        Ok(Self { tokens })
    }

    /// The number of tokens.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether there is no token (never, for a loaded set).
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Checks an `authorization` header value for `needs` (`None`: any
    /// known token will do); returns the token's name.
    ///
    /// # Errors
    ///
    /// [`Denied`] says why, without the token.
    pub fn check(
        &self,
        authorization: Option<&[u8]>,
        needs: Option<Scope>,
    ) -> Result<Authorized<'_>, Denied> {
        let Some(header) = authorization else {
            return Err(Denied::Unauthenticated("no bearer token"));
        };
        let Some(secret) = header
            .strip_prefix(b"Bearer ")
            .or_else(|| header.strip_prefix(b"bearer "))
        else {
            return Err(Denied::Unauthenticated(
                "the authorization header is not `Bearer <token>`",
            ));
        };
        let presented: [u8; 32] = Sha256::digest(secret).into();
        let mut found = None;
        for token in &self.tokens {
            if bool::from(token.digest.ct_eq(&presented)) && found.is_none() {
                found = Some(token);
            }
        }
        let token = found.ok_or(Denied::Unauthenticated("unknown bearer token"))?;
        match needs {
            Some(needs)
                if !token.scopes.contains(&needs) && !token.scopes.contains(&Scope::Admin) =>
            {
                Err(Denied::PermissionDenied {
                    token: token.name.clone(),
                    needs,
                })
            }
            _ => Ok(Authorized {
                name: &token.name,
                tasks: token.tasks.clone(),
            }),
        }
    }
}

impl TokenSet {
    /// The SHA-256 digest of a presented secret, as tokens are known by.
    pub fn digest_of(secret: &[u8]) -> [u8; 32] {
        Sha256::digest(secret).into()
    }

    /// The token a browser session stands for: named `name`, whose digest
    /// `fingerprint_matches` (the session holds a keyed fingerprint of the
    /// digest, never the digest), and allowed `needs`. A session outlives
    /// nothing: once its token is removed from the file, renamed or its
    /// secret changed, the session is refused too.
    ///
    /// # Errors
    ///
    /// [`Denied`], as for [`TokenSet::check`].
    pub fn check_session(
        &self,
        name: &str,
        fingerprint_matches: impl Fn(&[u8; 32]) -> bool,
        needs: Scope,
    ) -> Result<Authorized<'_>, Denied> {
        let token = self
            .tokens
            .iter()
            .find(|token| token.name == name && fingerprint_matches(&token.digest))
            .ok_or(Denied::Unauthenticated(
                "the session's token is no longer accepted",
            ))?;
        if !token.scopes.contains(&needs) && !token.scopes.contains(&Scope::Admin) {
            return Err(Denied::PermissionDenied {
                token: token.name.clone(),
                needs,
            });
        }
        Ok(Authorized {
            name: &token.name,
            tasks: token.tasks.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<TokenSet, TokenFileError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        std::fs::write(&path, text).unwrap();
        TokenSet::load(&path)
    }

    fn set(text: &str) -> TokenSet {
        load(text).unwrap()
    }

    /// A name listed twice, or one secret under two names (once as a
    /// digest), is refused naming them.
    #[test]
    fn a_token_listed_twice_is_refused() {
        let twice = load(
            r#"
            [[tokens]]
            name = "ci"
            scopes = ["write"]
            secret = "first-secret-01234"
            [[tokens]]
            name = "ci"
            scopes = ["admin"]
            secret = "other-secret-01234"
            "#,
        )
        .unwrap_err();
        assert!(
            twice.to_string().contains("token `ci` is listed twice"),
            "{twice}"
        );
        let digest = hex::encode(Sha256::digest("shared-secret-0123"));
        let same = load(&format!(
            r#"
            [[tokens]]
            name = "reader"
            scopes = ["read"]
            secret = "shared-secret-0123"
            [[tokens]]
            name = "root"
            scopes = ["admin"]
            sha256 = "{digest}"
            "#
        ))
        .unwrap_err();
        assert!(
            same.to_string()
                .contains("tokens `reader` and `root` are the same token"),
            "{same}"
        );
    }

    /// A secret and a digest of it both match; scopes decide; admin is all.
    #[test]
    fn tokens_match_by_digest_and_scopes_decide() {
        let digest = hex::encode(Sha256::digest("reader-secret-0123"));
        let tokens = set(&format!(
            r#"
            [[tokens]]
            name = "writer"
            scopes = ["write"]
            secret = "writer-secret-0123"
            [[tokens]]
            name = "reader"
            scopes = ["read"]
            sha256 = "{digest}"
            [[tokens]]
            name = "root"
            scopes = ["admin"]
            secret = "admin-secret-01234"
            "#
        ));
        assert_eq!(
            tokens
                .check(Some(b"Bearer writer-secret-0123"), Some(Scope::Write))
                .map(|ok| ok.name),
            Ok("writer")
        );
        assert_eq!(
            tokens
                .check(Some(b"Bearer reader-secret-0123"), Some(Scope::Read))
                .map(|ok| ok.name),
            Ok("reader")
        );
        assert_eq!(
            tokens
                .check(Some(b"Bearer admin-secret-01234"), Some(Scope::Read))
                .map(|ok| ok.name),
            Ok("root")
        );
        assert_eq!(
            tokens
                .check(Some(b"Bearer reader-secret-0123"), Some(Scope::Write))
                .map(|ok| ok.name),
            Err(Denied::PermissionDenied {
                token: "reader".into(),
                needs: Scope::Write
            })
        );
        assert!(matches!(
            tokens.check(Some(b"Bearer nope"), Some(Scope::Read)),
            Err(Denied::Unauthenticated(_))
        ));
        assert!(matches!(
            tokens.check(None, None),
            Err(Denied::Unauthenticated(_))
        ));
    }
}
