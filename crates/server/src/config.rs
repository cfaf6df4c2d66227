//! [`ServerConfig`]: what the gRPC layer is given to serve with. It holds
//! the configuration's parts by value, each defined once in
//! [`Settings`](crate::Settings) and the `baa-logging-config` crate, and
//! the objects built from them (security, metrics); it copies no field.

use baa_logging::Limits;

use crate::{
    Metrics, PageOptions, Security, Settings,
    settings::{Leases, Masking, Objects, Retention, Scrub},
};

/// A `FollowRun` response carries about this many bytes of entries.
pub const FOLLOW_BATCH_BYTES: usize = 256 * 1024;

/// What the gRPC layer serves with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The limits. The store must be opened with the same value (its
    /// `LocalStoreOptions::limits`): it enforces the entry limits, the
    /// server the rest, and `GetServerInfo` reports them to clients.
    pub limits: Limits,
    /// Which finished runs retention deletes, and how often the periodic
    /// pass runs. With no limit set there is no periodic pass, and
    /// `CollectRuns` needs limits of its own.
    pub retention: Retention,
    /// When the scrub checks stored runs for damage, and how fast.
    pub scrub: Scrub,
    /// How long a `running` run lives without a writer, and the longest
    /// lease a writer may ask for.
    pub leases: Leases,
    /// The server-wide masking rules and the hold-back time of a chunk
    /// that may end in the start of a registered value.
    pub masking: Masking,
    /// The limits on a run's objects (the store enforces them: open it
    /// with the same value) and when unfinished uploads are dropped.
    pub objects: Objects,
    /// A `FollowRun` response carries about this many bytes of entries;
    /// [`FOLLOW_BATCH_BYTES`] unless a test wants smaller batches.
    pub follow_batch_bytes: usize,
    /// TLS and tokens.
    pub security: Security,
    /// Where calls, streams, follower lag and runs are counted; none: not
    /// counted. Serve it with [`crate::metrics::serve`], and give the store
    /// its [`Metrics::store_observer`] for the disk figures.
    pub metrics: Option<Metrics>,
    /// The run page and its session settings; none: no page, and the
    /// server answers gRPC only.
    pub page: Option<PageOptions>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self::from_settings(&Settings::default(), Security::default())
    }
}

impl ServerConfig {
    /// The gRPC layer's part of `settings`.
    pub fn from_settings(settings: &Settings, security: Security) -> Self {
        Self {
            limits: settings.limits.clone(),
            retention: settings.retention.clone(),
            scrub: settings.scrub.clone(),
            leases: settings.leases.clone(),
            masking: settings.masking.clone(),
            objects: settings.objects.clone(),
            follow_batch_bytes: FOLLOW_BATCH_BYTES,
            security,
            metrics: None,
            page: settings.web.enabled.then(|| PageOptions {
                session_ttl: settings.web.session_ttl,
                allowed_hosts: settings.web.allowed_hosts.clone(),
                ..PageOptions::default()
            }),
        }
    }
}
