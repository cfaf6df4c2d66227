//! Which values `exec` masks: the values of environment variables named
//! by patterns (by default the names CI systems treat as secret, such as
//! `*_TOKEN`), and the lines of files. Values are read here and handed to
//! the writer, which masks them before anything leaves this process; they
//! never appear in baa-log's own messages or arguments.

use std::path::PathBuf;

use baa_logging_mask::{Added, SecretError, Secrets};
use clap::Args;
use glob::{MatchOptions, Pattern};

use crate::Failure;

/// The names whose values are masked unless --no-default-masks.
pub(crate) const DEFAULT_PATTERNS: &[&str] = &[
    "*_TOKEN",
    "*_SECRET",
    "*_PASSWORD",
    "*_PRIVATE_KEY",
    "*_ACCESS_KEY",
    "*_API_KEY",
];

/// The masking options of `baa-log exec`.
#[derive(Debug, Args)]
pub(crate) struct MaskArgs {
    /// Mask the value of this environment variable (a name, or a pattern
    /// with `*` such as `DEPLOY_*`; case is ignored) wherever it appears in
    /// the run, also base64-, URL- and JSON-encoded; repeat or separate
    /// with commas. Added to the defaults: the values of *_TOKEN,
    /// *_SECRET, *_PASSWORD, *_PRIVATE_KEY, *_ACCESS_KEY and *_API_KEY.
    #[arg(
        long,
        env = "BAA_LOG_MASK_ENV",
        value_name = "NAME",
        value_delimiter = ','
    )]
    mask_env: Vec<String>,
    /// Mask every line of this file (a file of secrets, one per line);
    /// repeat for more files.
    #[arg(long, value_name = "FILE")]
    mask_file: Vec<PathBuf>,
    /// Do not mask the default names' values; only what --mask-env and
    /// --mask-file name.
    #[arg(long)]
    no_default_masks: bool,
}

impl MaskArgs {
    /// The values to mask. A value shorter than the masked minimum (8
    /// bytes) is not masked, and said so by name on stderr (never its
    /// value or length): masking every occurrence of a short word would
    /// hide common text, and a short secret is a weak one. Variables whose
    /// names or values are not UTF-8 are passed over.
    pub(crate) fn secrets(&self) -> Result<Secrets, Failure> {
        let mut patterns = Vec::new();
        let defaults = if self.no_default_masks {
            &[][..]
        } else {
            DEFAULT_PATTERNS
        };
        for name in defaults
            .iter()
            .copied()
            .chain(self.mask_env.iter().map(String::as_str))
        {
            let pattern = Pattern::new(name.trim()).map_err(|err| {
                Failure::new(format!("invalid --mask-env pattern `{name}`: {err}"))
            })?;
            patterns.push(pattern);
        }
        let options = MatchOptions {
            case_sensitive: false,
            ..MatchOptions::default()
        };
        let mut secrets = Secrets::new();
        let mut names: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
            .filter(|(name, _)| patterns.iter().any(|p| p.matches_with(name, options)))
            .collect();
        names.sort();
        for (name, value) in names {
            add(&mut secrets, &value, &format!("${name}"));
        }
        for file in &self.mask_file {
            let text = std::fs::read_to_string(file).map_err(|err| {
                Failure::new(format!("cannot read --mask-file {}: {err}", file.display()))
            })?;
            for (number, line) in text.lines().enumerate() {
                add(
                    &mut secrets,
                    line,
                    &format!("line {} of {}", number + 1, file.display()),
                );
            }
        }
        Ok(secrets)
    }
}

/// Adds `value` to `secrets`; says by `what` (never by value) why not.
fn add(secrets: &mut Secrets, value: &str, what: &str) {
    match secrets.add(value) {
        Ok(Added::New { skipped_lines }) if skipped_lines > 0 => eprintln!(
            "baa-log: masking {what}, but not {skipped_lines} of its lines: under 8 bytes"
        ),
        Ok(_) => {}
        // The length is not said: it would tell part of the secret.
        Err(SecretError::TooShort { .. }) => eprintln!(
            "baa-log: not masking {what}: its value is shorter than the 8 bytes a masked value \
             needs"
        ),
        Err(err) => eprintln!("baa-log: not masking {what}: {err}"),
    }
}
