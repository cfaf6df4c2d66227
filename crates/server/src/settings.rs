//! The server's configuration: defaults, a TOML file, environment
//! variables and flags, in rising order of precedence.
//!
//! [`Settings`] is the whole of it, as the TOML file spells it. Flags and
//! environment variables are parsed by the binary (clap gives a flag
//! precedence over its variable) into a [`Settings`]-shaped set of
//! overrides, which [`Settings::load`] lays over the file, which is laid
//! over the defaults. `baa-logd --print-config` prints the result with
//! secrets masked.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use baa_logging::DEFAULT_RUNS_DIRECTORY_NAME;
pub use baa_logging::Limits;
use baa_logging_mask::Rules;
use baa_logging_store::{LocalStoreOptions, RetentionPolicy, objects::ObjectLimits};
use figment::{
    Figment,
    providers::{Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};

/// The effective configuration of `baa-logd`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The gRPC address to listen on.
    pub listen: SocketAddr,
    /// Where runs are kept: `local` (files under `data_dir`) or
    /// `jetstream` (a NATS JetStream cluster, see [`Nats`]).
    pub store: StoreKind,
    /// The runs root.
    pub data_dir: PathBuf,
    /// The Prometheus `/metrics` address; none: no metrics endpoint.
    pub metrics_listen: Option<SocketAddr>,
    /// An address of its own for the run page (plain HTTP/1.1); none: the
    /// gRPC address, which then speaks HTTP/1.1 and HTTP/2.
    pub web_listen: Option<SocketAddr>,
    /// How the server's own log lines are written.
    pub log_format: LogFormat,
    /// fsync every commit before acknowledging it or serving it to
    /// followers (commits waiting at the same time share one fsync).
    pub sync: bool,
    /// Allow listening beyond loopback without access control: neither
    /// tokens nor TLS client certificates (TLS alone does not count).
    pub insecure: bool,
    /// The bearer tokens and their scopes; none: no authentication.
    pub token_file: Option<PathBuf>,
    /// TLS; off unless a certificate and key are given.
    pub tls: TlsSettings,
    /// Limits that protect the server, shared with the store and reported
    /// to clients (see [`Limits`]).
    pub limits: Limits,
    /// Which finished runs are deleted, and when.
    pub retention: Retention,
    /// The background check of stored runs for damage.
    pub scrub: Scrub,
    /// How long a `running` run lives without a writer.
    pub leases: Leases,
    /// What the server masks on ingest, for writers that do not mask.
    pub masking: Masking,
    /// The run page for browsers.
    pub web: Web,
    /// Artifacts and checkpoints: their limits, and when an upload left
    /// unfinished is dropped.
    pub objects: Objects,
    /// The NATS JetStream cluster, for `store = "jetstream"`.
    pub nats: Nats,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            store: StoreKind::Local,
            data_dir: Path::new(".").join(DEFAULT_RUNS_DIRECTORY_NAME),
            metrics_listen: None,
            web_listen: None,
            log_format: LogFormat::Text,
            sync: false,
            insecure: false,
            token_file: None,
            tls: TlsSettings::default(),
            limits: Limits::default(),
            retention: Retention::default(),
            scrub: Scrub::default(),
            leases: Leases::default(),
            masking: Masking::default(),
            web: Web::default(),
            objects: Objects::default(),
            nats: Nats::default(),
        }
    }
}

/// Where runs are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// Files under the data directory, in the `local-run-v1` layout.
    Local,
    /// A NATS JetStream stream, shared by every node.
    Jetstream,
}

/// The NATS JetStream cluster under `store = "jetstream"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Nats {
    /// The servers' URLs; the client also learns the cluster's others.
    pub url: Vec<String>,
    /// The stream's name; the index bucket is `<stream>_INDEX`.
    pub stream: String,
    /// The stream's replicas when a node creates it.
    pub replicas: usize,
    /// A NATS credentials file (JWT and NKey seed).
    pub creds_file: Option<PathBuf>,
    /// CA certificates (PEM) to trust for the servers' TLS.
    pub ca_file: Option<PathBuf>,
    /// A client certificate (PEM) for mutual TLS, with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's key (PEM).
    pub key_file: Option<PathBuf>,
    /// Speak TLS even to `nats://` URLs.
    pub require_tls: bool,
    /// How long the node waits for the cluster at start.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
}

impl Default for Nats {
    fn default() -> Self {
        Self {
            url: vec!["nats://127.0.0.1:4222".to_owned()],
            stream: baa_logging_store::jetstream::DEFAULT_STREAM.to_owned(),
            replicas: baa_logging_store::jetstream::DEFAULT_REPLICAS,
            creds_file: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            require_tls: false,
            connect_timeout: Duration::from_secs(30),
        }
    }
}

impl Nats {
    /// The store's options, with the limits on items and objects.
    pub fn store_options(
        &self,
        limits: &Limits,
        objects: ObjectLimits,
    ) -> baa_logging_store::JetStreamOptions {
        baa_logging_store::JetStreamOptions {
            stream: self.stream.clone(),
            replicas: self.replicas,
            creds_file: self.creds_file.clone(),
            ca_file: self.ca_file.clone(),
            client_cert: self.cert_file.clone().zip(self.key_file.clone()),
            require_tls: self.require_tls,
            connect_timeout: self.connect_timeout,
            limits: limits.clone(),
            objects,
            ..baa_logging_store::JetStreamOptions::new(self.url.clone())
        }
    }

    /// Checks that the settings can work.
    fn sanitize(&self) -> Result<(), SettingsError> {
        if self.url.is_empty() {
            return Err(SettingsError::Invalid(
                "nats.url names no server".to_owned(),
            ));
        }
        if !matches!(self.replicas, 1..=5) {
            return Err(SettingsError::Invalid(format!(
                "nats.replicas is {}; JetStream takes 1 to 5 (3 is usual)",
                self.replicas
            )));
        }
        let name_ok = !self.stream.is_empty()
            && self
                .stream
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !name_ok {
            return Err(SettingsError::Invalid(format!(
                "nats.stream {:?} must be letters, digits, `-` and `_`",
                self.stream
            )));
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(SettingsError::Invalid(
                "nats.cert_file and nats.key_file go together".to_owned(),
            ));
        }
        Ok(())
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line, for log collectors.
    Json,
}

/// TLS files, all PEM.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// The server's certificate chain.
    pub cert: Option<PathBuf>,
    /// The certificate's private key.
    pub key: Option<PathBuf>,
    /// Require client certificates signed by these CAs (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

impl TlsSettings {
    /// Whether TLS is on.
    pub fn enabled(&self) -> bool {
        self.cert.is_some() || self.key.is_some()
    }
}

/// Retention: which finished runs are deleted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    /// Delete finished runs older than this; none: keep them by age.
    #[serde(with = "humantime_serde")]
    pub max_age: Option<Duration>,
    /// Delete the oldest finished runs while all runs take more bytes than
    /// this; none: no budget.
    pub max_bytes: Option<u64>,
    /// How often retention runs, the first time at start; zero: only on
    /// demand (`CollectRuns`, `baa-log gc`).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

impl Retention {
    /// Which runs a pass deletes.
    pub fn policy(&self) -> RetentionPolicy {
        RetentionPolicy {
            max_age: self.max_age,
            max_bytes: self.max_bytes,
        }
    }
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_age: None,
            max_bytes: None,
            interval: Duration::from_secs(600),
        }
    }
}

/// The scrub: a background pass that reads every stored run back and
/// checks each commit against its checksums, counting damaged ones in
/// `baa_logd_scrub_damaged_commits_total` and logging them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scrub {
    /// How long after start and between passes, e.g. a day; zero (the
    /// default): no scrub (`baa-logd verify` checks a data directory
    /// offline).
    #[serde(with = "humantime_serde")]
    pub period: Duration,
    /// The most bytes a second a pass reads, so that it never competes
    /// with writers and followers; 0: no bound.
    pub read_rate: u64,
}

impl Default for Scrub {
    fn default() -> Self {
        Self {
            // Off unless asked for: a pass opens every run, and the store
            // keeps opened runs in memory.
            period: Duration::ZERO,
            read_rate: 8 * 1024 * 1024,
        }
    }
}

/// Worker leases: a `running` run whose worker is gone (no append stream
/// open for the lease) is failed by the server, with a lifecycle entry
/// that says so (see docs/operations.md, "Worker leases").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Leases {
    /// How long a `running` run may go without an open append stream
    /// before its worker counts as lost; zero (`0` or `off` in the file
    /// and flags): no leases, runs wait for their worker forever.
    #[serde(with = "off_or_duration")]
    pub worker_lease: Duration,
    /// The longest lease a writer may ask for in its `AppendOpen`, for
    /// workers that expect to be cut off for longer than `worker_lease`.
    #[serde(with = "humantime_serde")]
    pub max_worker_lease: Duration,
}

impl Default for Leases {
    fn default() -> Self {
        Self {
            worker_lease: Duration::from_secs(5 * 60),
            max_worker_lease: Duration::from_secs(24 * 60 * 60),
        }
    }
}

impl Leases {
    /// Checks that the two settings can work together.
    fn sanitize(&self) -> Result<(), SettingsError> {
        if !self.worker_lease.is_zero() && self.max_worker_lease < self.worker_lease {
            return Err(SettingsError::Invalid(format!(
                "leases.max_worker_lease ({}) is shorter than leases.worker_lease ({})",
                humantime::format_duration(self.max_worker_lease),
                humantime::format_duration(self.worker_lease)
            )));
        }
        Ok(())
    }
}

/// Masking on ingest: the values writers register on their append
/// streams are always masked; these settings add token formats that are
/// masked without registration (applied to each text whole), and bound
/// how long a chunk that may end in the start of a registered value waits
/// for the next one (see docs/security.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Masking {
    /// Mask the built-in token formats (GitHub, AWS access key ids, JSON
    /// web tokens, Slack) without registration.
    pub default_rules: bool,
    /// More token formats, each a regular expression masked wherever it
    /// matches, in every run; checked at start.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<MaskRule>,
    /// How long a chunk whose end may be the start of a registered value
    /// waits for the next chunk of its channel before it is stored as it
    /// is.
    #[serde(with = "humantime_serde")]
    pub hold_back: Duration,
}

impl Default for Masking {
    fn default() -> Self {
        Self {
            default_rules: true,
            rules: Vec::new(),
            hold_back: Duration::from_millis(300),
        }
    }
}

/// A token format masked without registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskRule {
    /// What the rule catches, for the operator; never shown to readers.
    pub name: String,
    /// The regular expression (Rust `regex` syntax).
    pub pattern: String,
}

impl Masking {
    /// The rules every run is masked with: the built-in ones if asked for,
    /// then the configured ones.
    ///
    /// # Errors
    ///
    /// [`SettingsError::Invalid`] naming the first rule whose pattern is
    /// not a regular expression.
    pub fn rules(&self) -> Result<Rules, SettingsError> {
        let mut rules = match self.default_rules {
            true => Rules::default_rules(),
            false => Rules::none(),
        };
        for rule in &self.rules {
            let compiled = Rules::new([(rule.name.as_str(), rule.pattern.as_str())]).map_err(|err| {
                SettingsError::Invalid(format!(
                    "masking.rules: the pattern of rule {:?} is not a regular expression: {err}",
                    rule.name
                ))
            })?;
            if compiled
                .iter()
                .any(|compiled| compiled.regex().is_match(""))
            {
                return Err(SettingsError::Invalid(format!(
                    "masking.rules: the pattern of rule {:?} matches the empty text, so it \
                     would mask between every two characters",
                    rule.name
                )));
            }
            rules.extend(compiled);
        }
        Ok(rules)
    }

    /// Checks the rules and the hold-back time.
    fn sanitize(&self) -> Result<(), SettingsError> {
        if self.hold_back.is_zero() {
            return Err(SettingsError::Invalid(
                "masking.hold_back is 0; it must be a duration like 300ms".to_owned(),
            ));
        }
        self.rules().map(drop)
    }
}

/// The run page: `baa-logd` serves it to browsers at `/`, beside gRPC on
/// the same address unless `web_listen` moves it (see docs/web.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Web {
    /// Serve the page and its API; off: gRPC only.
    pub enabled: bool,
    /// How long a browser session lasts when tokens are on; the page renews
    /// it while it is open.
    #[serde(with = "humantime_serde")]
    pub session_ttl: Duration,
    /// Without tokens, the host names the page answers to beside IP
    /// addresses and `localhost` (a guard against DNS rebinding).
    pub allowed_hosts: Vec<String>,
}

impl Default for Web {
    fn default() -> Self {
        Self {
            enabled: true,
            session_ttl: Duration::from_secs(60 * 60),
            allowed_hosts: Vec::new(),
        }
    }
}

/// A run's objects: the artifacts and checkpoints workers upload (see
/// docs/storage.md, "Objects").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Objects {
    /// The largest object, in bytes: an upload past it is refused with
    /// `RESOURCE_EXHAUSTED` naming `max_object_bytes`.
    pub max_object_bytes: u64,
    /// The most bytes of one run's objects and staged uploads together.
    pub max_run_objects_bytes: u64,
    /// The most uploads one run stages at a time; a new one past it is
    /// refused with `RESOURCE_EXHAUSTED` naming `max_run_uploads`.
    pub max_run_uploads: u64,
    /// An upload nothing wrote to for this long is dropped, with its
    /// staged bytes; so is every staged upload of a terminal run.
    #[serde(with = "humantime_serde")]
    pub upload_abandon_after: Duration,
}

impl Default for Objects {
    fn default() -> Self {
        let limits = ObjectLimits::default();
        Self {
            max_object_bytes: limits.max_object_bytes,
            max_run_objects_bytes: limits.max_run_objects_bytes,
            max_run_uploads: limits.max_run_uploads,
            upload_abandon_after: Duration::from_secs(24 * 60 * 60),
        }
    }
}

impl Objects {
    /// The limits the store enforces.
    pub fn limits(&self) -> ObjectLimits {
        ObjectLimits {
            max_object_bytes: self.max_object_bytes,
            max_run_objects_bytes: self.max_run_objects_bytes,
            max_run_uploads: self.max_run_uploads,
        }
    }

    /// Checks that the limits can work.
    fn sanitize(&self) -> Result<(), SettingsError> {
        if self.max_object_bytes == 0
            || self.max_run_objects_bytes == 0
            || self.max_run_uploads == 0
        {
            return Err(SettingsError::Invalid(
                "objects.max_object_bytes, objects.max_run_objects_bytes and objects.max_run_uploads must be 1 or more"
                    .to_owned(),
            ));
        }
        if self.upload_abandon_after.is_zero() {
            return Err(SettingsError::Invalid(
                "objects.upload_abandon_after is 0; it must be a duration like 1d".to_owned(),
            ));
        }
        Ok(())
    }
}

/// A duration that may be turned off: `off` or `0` is zero, anything else
/// is a duration as `humantime` reads it (`5m`, `2s`, `500ms`). Zero is
/// written back as `off`.
mod off_or_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    /// Writes `off` for zero, else the duration as `humantime` prints it.
    pub(super) fn serialize<S: Serializer>(
        duration: &Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match duration.is_zero() {
            true => serializer.serialize_str("off"),
            false => serializer.collect_str(&humantime::format_duration(*duration)),
        }
    }

    /// Reads `off`, `0` or a duration.
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.trim() {
            "off" | "0" => Ok(Duration::ZERO),
            text => humantime::parse_duration(text).map_err(|err| {
                D::Error::custom(format!(
                    "{text:?} is not a duration (like 5m, 30s or 500ms) nor off: {err}"
                ))
            }),
        }
    }
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file or an override is malformed.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// A limit cannot work.
    #[error("invalid configuration: {0}")]
    Limit(#[from] baa_logging::config::InvalidLimit),
}

impl Settings {
    /// The defaults, overlaid with the TOML file `file` (if given) and then
    /// with `overrides`, a [`Settings`]-shaped value that holds only what
    /// flags and environment variables set.
    ///
    /// # Errors
    ///
    /// [`SettingsError::Invalid`] for an unreadable or malformed file, an
    /// unknown key, or a value of the wrong type; [`SettingsError::Limit`]
    /// for limits that cannot work together (see [`Limits::sanitize`]).
    /// The message names the key.
    pub fn load(file: Option<&Path>, overrides: impl Serialize) -> Result<Self, SettingsError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(file) = file {
            if !file.is_file() {
                return Err(SettingsError::Invalid(format!(
                    "the configuration file {} does not exist",
                    file.display()
                )));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        let settings: Self = figment
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(|err| SettingsError::Invalid(err.to_string()))?;
        settings.limits.sanitize()?;
        settings.leases.sanitize()?;
        settings.masking.sanitize()?;
        settings.objects.sanitize()?;
        settings.nats.sanitize()?;
        Ok(settings)
    }

    /// The options to open the local store with: the data directory,
    /// `sync`, and the very limits the server serves with.
    pub fn store_options(&self) -> LocalStoreOptions {
        LocalStoreOptions {
            limits: self.limits.clone(),
            objects: self.objects.limits(),
            sync_commits: self.sync,
            ..LocalStoreOptions::new(&self.data_dir)
        }
    }

    /// The options to open the JetStream store with: the `[nats]`
    /// section, and the very limits the server serves with.
    pub fn jetstream_options(&self) -> baa_logging_store::JetStreamOptions {
        self.nats.store_options(&self.limits, self.objects.limits())
    }

    /// The default of every setting that has one, by its dotted key
    /// (`listen`, `limits.max_entry_bytes`), as the configuration file
    /// would spell it; for the flags' help and the documentation's check.
    pub fn defaults() -> Vec<(String, String)> {
        let mut defaults = Vec::new();
        let Ok(toml::Value::Table(table)) = toml::Value::try_from(Self::default()) else {
            return defaults;
        };
        for (key, value) in table {
            match value {
                toml::Value::Table(section) => defaults.extend(
                    section
                        .into_iter()
                        .map(|(name, value)| (format!("{key}.{name}"), show_value(&value))),
                ),
                value => defaults.push((key, show_value(&value))),
            }
        }
        defaults
    }

    /// The configuration as TOML, for `--print-config`. It holds no secret:
    /// tokens live in the token file, which is only named.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|err| format!("# cannot print: {err}\n"))
    }
}

/// A value as a flag takes it: strings unquoted.
fn show_value(value: &toml::Value) -> String {
    match value {
        toml::Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}
