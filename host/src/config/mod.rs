//! The relay's TOML configuration.
//!
//! Every key is documented in `docs/configuration.md`. Loading is strict:
//! unknown keys and bad values are errors that name the file, line and key;
//! `${ENV_VAR}` references are expanded in string values (see
//! [`interpolate`]); secrets never appear in `Debug` output.

mod check;
mod data_dir;
mod file;
mod interpolate;
mod poll;
mod units;
mod webhook;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

pub use crate::runtime::{Isolation, PluginKind};
pub use crate::secret::Secret;
pub use auditrelay_plugin_api::http::AllowList;
pub use data_dir::DataDir;
pub use file::{FileSettings, LineFormat, StartAt};
pub use interpolate::interpolate;
pub use poll::{FieldCursor, LINK_HEADER, PollAuth, PollSettings};
pub use webhook::{MapperLimits, MapperSettings, WebhookAuth, WebhookSettings};

/// The embedded default configuration used when no file is given.
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");

/// A configuration problem, naming where it is and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is malformed, has an unknown key or a wrongly typed value.
    /// `message` holds the line, column and key.
    #[error("{origin}: {message}")]
    Parse {
        /// The file (or `<embedded default>`).
        origin: String,
        /// toml's report: line, column, excerpt and problem.
        message: String,
    },
    /// A value is well-formed but unusable.
    #[error("{origin}: {key}: {message}")]
    Invalid {
        /// The file.
        origin: String,
        /// Dotted key, e.g. `plugins.file.batch.max_events`.
        key: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// Several values are unusable: every one is listed, so one run of
    /// `auditrelay check` shows them all.
    #[error("{origin}: {} problems:\n{}", problems.len(), list_problems(problems))]
    Several {
        /// The file.
        origin: String,
        /// Each as (dotted key, what is wrong and what to do).
        problems: Vec<(String, String)>,
    },
}

fn list_problems(problems: &[(String, String)]) -> String {
    problems
        .iter()
        .map(|(key, message)| format!("  - {key}: {message}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Relay-wide settings (`[relay]`).
    #[serde(default)]
    pub relay: RelaySettings,
    /// Ways events come in (`[ingest]`).
    #[serde(default)]
    pub ingest: IngestSettings,
    /// The durable log of accepted events (`[spool]`).
    #[serde(default)]
    pub spool: SpoolSettings,
    /// Plugin instances by name (`[plugins.<name>]`).
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginSettings>,
    /// Redaction rules (`[[redact]]`), applied to every event before it
    /// reaches the spool, after the built-in ones (`relay.redact_defaults`).
    #[serde(default)]
    pub redact: Vec<crate::redact::RedactRule>,
    /// Tamper evidence: hash chains and signed checkpoints (`[integrity]`).
    #[serde(default)]
    pub integrity: IntegritySettings,
    /// Where this configuration came from, for error messages.
    #[serde(skip)]
    pub origin: String,
}

/// `[relay]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelaySettings {
    /// Directory for the relay's own state (compiled-plugin cache).
    #[serde(default = "default_data_dir")]
    pub data_dir: DataDir,
    /// Directory scanned for `*.wasm` plugins.
    #[serde(default = "default_plugin_dir")]
    pub plugin_dir: PathBuf,
    /// Where compiled plugins are cached; defaults to `<data_dir>/cache`.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// Threads that run plugin code, separate from the application's.
    #[serde(default = "default_plugin_threads")]
    pub plugin_threads: usize,
    /// Memory for events accepted but not yet written to the spool's
    /// files. It fills only while the disk is slow or failing; then `emit`
    /// refuses new events.
    #[serde(default = "default_max_buffered_bytes")]
    pub max_buffered_bytes: ByteSize,
    /// Largest accepted event (canonical JSON).
    #[serde(default = "default_max_event_bytes")]
    pub max_event_bytes: ByteSize,
    /// Whether the built-in redaction rules run (secret key names and
    /// value patterns, masked): see [`crate::redact`].
    #[serde(default = "default_true")]
    pub redact_defaults: bool,
    /// What an optional field that breaks a rule (`actor.ip = "testclient"`)
    /// does to its event: `set_aside` (kept without it, the value and the
    /// problem recorded in `metadata["auditrelay.invalid"]`) or `refuse`.
    #[serde(default)]
    pub invalid_optional: InvalidOptional,
    /// How long a graceful shutdown may take to deliver what is buffered.
    #[serde(default = "default_shutdown_timeout", with = "units::duration")]
    pub shutdown_timeout: Duration,
    /// Largest plugin file the relay reads.
    #[serde(default = "default_max_plugin_size")]
    pub max_plugin_size: ByteSize,
    /// Longest compiling one WASM plugin may take.
    #[serde(default = "default_plugin_load_timeout", with = "units::duration")]
    pub plugin_load_timeout: Duration,
    /// Free space a WASM plugin's writes never take on any filesystem.
    #[serde(default = "default_disk_reserve")]
    pub disk_reserve: ByteSize,
}

impl Default for RelaySettings {
    fn default() -> Self {
        toml::from_str("").expect("every relay setting has a default")
    }
}

/// `[spool]`: where accepted events wait until every plugin has them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolSettings {
    /// When an accepted event counts as durable.
    #[serde(default)]
    pub durability: DurabilityMode,
    /// With `durability = "group"`: the longest an event waits to be synced.
    #[serde(default = "default_group_commit", with = "units::duration")]
    pub group_commit: Duration,
    /// Size at which a new segment file is started.
    #[serde(default = "default_segment_size")]
    pub segment_size: ByteSize,
    /// Most the spool may hold on disk.
    #[serde(default = "default_spool_max_size")]
    pub max_size: ByteSize,
    /// What happens to new events when the spool is at `max_size`.
    #[serde(default)]
    pub when_full: WhenFullMode,
    /// With `when_full = "block"`: how long an emitter waits for room.
    #[serde(default = "default_block_timeout", with = "units::duration")]
    pub block_timeout: Duration,
    /// How many recent identities the dedup window remembers (0: none).
    #[serde(default = "default_dedup_ids")]
    pub dedup_ids: u64,
    /// How long the dedup window remembers an identity at most.
    #[serde(default = "default_dedup_age", with = "units::duration")]
    pub dedup_age: Duration,
}

impl Default for SpoolSettings {
    fn default() -> Self {
        toml::from_str("").expect("every spool setting has a default")
    }
}

/// `[integrity]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntegritySettings {
    /// Seal every event into its stream's hash chain as it is spooled,
    /// and sign checkpoints of each stream's Merkle tree (on by default:
    /// what `auditrelay verify` checks).
    #[serde(default = "default_true")]
    pub chain: bool,
    /// Which field names an event's stream: `tenant`, `source` or `all`.
    #[serde(default)]
    pub stream: crate::integrity::chain::StreamKey,
    /// How often each stream's tree is signed, events or not.
    #[serde(default = "default_checkpoint_interval", with = "units::duration")]
    pub checkpoint_interval: Duration,
    /// The Ed25519 key that signs checkpoints (`auditrelay keys generate`);
    /// default `<data_dir>/integrity/signing.key`, created at first start.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// The log's name: each stream's checkpoints have the origin
    /// `<log>/<stream>`.
    #[serde(default = "default_log_name")]
    pub log: String,
}

fn default_checkpoint_interval() -> Duration {
    Duration::from_secs(60)
}

fn default_log_name() -> String {
    "auditrelay".into()
}

impl Default for IntegritySettings {
    fn default() -> Self {
        toml::from_str("").expect("every integrity setting has a default")
    }
}

impl IntegritySettings {
    /// The signing key's file.
    pub fn key_path(&self, data_dir: &DataDir) -> PathBuf {
        self.key_file
            .clone()
            .unwrap_or_else(|| data_dir.integrity().join("signing.key"))
    }
}

/// `spool.durability`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DurabilityMode {
    /// Synced after every write.
    Always,
    /// Synced every `group_commit`.
    #[default]
    Group,
    /// Never synced by the relay.
    None,
}

/// `spool.when_full`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFullMode {
    /// Refuse new events with an error (HTTP 503).
    #[default]
    Reject,
    /// Make emitters wait up to `block_timeout`, then refuse.
    Block,
    /// Delete the oldest undelivered events, loudly.
    DropOldest,
}

/// `[plugins.<name>] start_from`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartFromMode {
    /// With the next event accepted.
    #[default]
    Now,
    /// With the oldest event still in the spool.
    Earliest,
}

/// `[ingest]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSettings {
    /// `[ingest.http]`
    #[serde(default)]
    pub http: HttpIngestSettings,
    /// `[ingest.outbox.<name>]`: outbox tables read after their commit.
    #[serde(default)]
    pub outbox: BTreeMap<String, OutboxSettings>,
    /// `[ingest.webhook.<name>]`: signed webhooks, at
    /// `POST /v1/sources/<name>` on the HTTP endpoint.
    #[serde(default)]
    pub webhook: BTreeMap<String, WebhookSettings>,
    /// `[ingest.file.<name>]`: files other systems write audit lines to,
    /// tailed through rotation.
    #[serde(default)]
    pub file: BTreeMap<String, FileSettings>,
    /// `[ingest.poll.<name>]`: HTTP APIs of other systems, polled for
    /// their audit records.
    #[serde(default)]
    pub poll: BTreeMap<String, PollSettings>,
}

/// `[ingest.outbox.<name>]`: an outbox table in the application's database
/// (SQLite or PostgreSQL), whose committed rows the relay spools.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxSettings {
    /// Whether `auditrelay run` reads it.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// `postgres://user:${PASSWORD}@host:port/db` or `sqlite:///path/app.db`;
    /// a secret (it may hold a password): never logged or reported.
    pub url: Secret,
    /// The outbox table (`auditrelay outbox schema` creates it).
    #[serde(default = "default_outbox_table")]
    pub table: String,
    /// Most rows claimed, spooled and settled at once.
    #[serde(default = "default_outbox_batch")]
    pub batch: usize,
    /// Longest wait between two looks at an idle table (PostgreSQL is
    /// woken sooner by `NOTIFY`; SQLite looks sooner while rows arrive).
    #[serde(default = "default_poll_interval", with = "units::duration")]
    pub poll_interval: Duration,
    /// What happens to a row once its event is durable in the spool.
    #[serde(default)]
    pub on_spooled: OnSpooled,
}

/// `[ingest.outbox.<name>] on_spooled`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnSpooled {
    /// The row is deleted.
    #[default]
    Delete,
    /// The row stays, with `done_at` set (the application prunes).
    MarkDone,
}

/// `[ingest.http]`: the HTTP endpoint for applications in any language.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpIngestSettings {
    /// Whether `auditrelay run` serves HTTP.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Bearer token clients must send; none means no authentication (only
    /// allowed on a loopback address).
    #[serde(default)]
    pub auth_token: Option<Secret>,
    /// Largest accepted request body.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: ByteSize,
    /// How long `POST /v1/events` waits for its events to be durable
    /// before answering `503` (not acknowledged: the client retries).
    #[serde(default = "default_ack_timeout", with = "units::duration")]
    pub ack_timeout: Duration,
    /// Most connections served at once; at the cap the longest-idle one is
    /// closed to make room, and a new one is refused only if all are busy.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// How long a client may take to send a request's headers — and so
    /// how long a kept-alive connection may sit idle.
    #[serde(default = "default_header_timeout", with = "units::duration")]
    pub header_timeout: Duration,
    /// How long a client may take to send a request's body, or to read an
    /// answer.
    #[serde(default = "default_body_timeout", with = "units::duration")]
    pub body_timeout: Duration,
    /// Most live streams (`GET /v1/stream`) open at once; past it a new
    /// one is answered `503`.
    #[serde(default = "default_max_streams")]
    pub max_streams: usize,
    /// How long a live stream waits for a client that does not read
    /// before it ends the stream, with a last event saying so (the client
    /// reconnects with `Last-Event-ID` and misses nothing the spool holds).
    #[serde(default = "default_stream_stall", with = "units::duration")]
    pub stream_stall: Duration,
    /// Slowest pace a body may arrive at, in bytes per second (after its
    /// first two seconds); slower is answered `408`. `0` allows any pace.
    #[serde(default = "default_min_body_rate")]
    pub min_body_rate: ByteSize,
    /// Most bytes of request bodies held at once, across all connections,
    /// while they are read and decoded; a body that would go past it is
    /// answered `503` (retry) at once.
    #[serde(default = "default_max_body_memory")]
    pub max_body_memory: ByteSize,
}

impl Default for HttpIngestSettings {
    fn default() -> Self {
        toml::from_str("").expect("every ingest setting has a default")
    }
}

/// `[plugins.<name>]`: one plugin instance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSettings {
    /// Which plugin: the name it gives in `describe`. Defaults to the
    /// instance name.
    #[serde(default)]
    pub plugin: Option<String>,
    /// Explicit path to the `.wasm` or `.so` file (relative to
    /// `plugin_dir`); overrides `plugin`.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Only a plugin of this kind will do (inferred from the file
    /// otherwise); tells apart a WASM and a native build of one plugin.
    #[serde(default)]
    pub kind: Option<PluginKind>,
    /// Native plugins only: where the code runs (default `process`).
    #[serde(default)]
    pub isolation: Option<Isolation>,
    /// Whether the instance runs.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Where a new instance (one with no saved cursor) starts reading.
    #[serde(default)]
    pub start_from: StartFromMode,
    /// Passed to the plugin's `init` as JSON.
    #[serde(default)]
    pub config: toml::Table,
    /// Hosts the plugin may reach over HTTP (see [`AllowList`] for the
    /// patterns). Empty: none.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Secrets by the name the plugin asks for.
    #[serde(default)]
    pub secrets: BTreeMap<String, Secret>,
    /// The one host directory the plugin may read and write.
    #[serde(default)]
    pub grant_dir: Option<PathBuf>,
    /// WASM plugins: the most `grant_dir` may hold (every file in it).
    #[serde(default = "default_grant_quota")]
    pub grant_quota: ByteSize,
    /// Resource limits.
    #[serde(default)]
    pub limits: LimitSettings,
    /// Batching.
    #[serde(default)]
    pub batch: BatchSettings,
    /// Which events the instance receives.
    #[serde(default)]
    pub filter: FilterSettings,
    /// Retries and the circuit breaker.
    #[serde(default)]
    pub retry: RetrySettings,
}

/// `[plugins.<name>.limits]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    /// Linear memory cap for the plugin.
    #[serde(default = "default_memory")]
    pub memory: ByteSize,
    /// Wall-clock deadline for each call into the plugin.
    #[serde(default = "default_call_timeout", with = "units::duration")]
    pub timeout: Duration,
    /// WASM plugins: outgoing HTTP requests in flight at once.
    #[serde(default = "default_http_requests")]
    pub http_requests: usize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        toml::from_str("").expect("every limit has a default")
    }
}

/// `[plugins.<name>.batch]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchSettings {
    /// Most events per batch.
    #[serde(default = "default_max_events")]
    pub max_events: usize,
    /// Most bytes (canonical JSON) per batch; a single larger event still
    /// goes alone.
    #[serde(default = "default_max_batch_bytes")]
    pub max_bytes: ByteSize,
    /// How long to wait for a batch to fill before sending what there is.
    #[serde(default = "default_max_wait", with = "units::duration")]
    pub max_wait: Duration,
}

impl Default for BatchSettings {
    fn default() -> Self {
        toml::from_str("").expect("every batch setting has a default")
    }
}

/// What an optional field that breaks a rule (`actor.ip = "testclient"`)
/// does to its event (`relay.invalid_optional`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvalidOptional {
    /// The event is kept without the field, whose value and problem are
    /// recorded in its metadata (`auditrelay.invalid`): a sender that
    /// cannot react to a refusal loses no event.
    #[default]
    SetAside,
    /// The event is refused, as for a required field.
    Refuse,
}

/// `[plugins.<name>.filter]`: an event is delivered if it matches every
/// non-empty list.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterSettings {
    /// Event types; a trailing `*` matches any suffix (`group.*`).
    #[serde(default)]
    pub types: Vec<String>,
    /// Tenants; `*` matches any suffix, and events without a tenant match
    /// only `""`.
    #[serde(default)]
    pub tenants: Vec<String>,
    /// Sources (the envelope's `source`); `*` matches any suffix.
    #[serde(default)]
    pub sources: Vec<String>,
}

/// `[plugins.<name>.retry]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySettings {
    /// First backoff after a failure.
    #[serde(default = "default_initial_backoff", with = "units::duration")]
    pub initial_backoff: Duration,
    /// Longest backoff (also caps a destination's Retry-After).
    #[serde(default = "default_max_backoff", with = "units::duration")]
    pub max_backoff: Duration,
    /// Consecutive failures that open the circuit.
    #[serde(default = "default_circuit_after")]
    pub circuit_after: u32,
    /// How long an open circuit waits before one trial call.
    #[serde(default = "default_circuit_open_for", with = "units::duration")]
    pub circuit_open_for: Duration,
    /// Consecutive crashes on one batch after which it is split to find
    /// the event that crashes the plugin (0: never).
    #[serde(default = "default_isolate_after")]
    pub isolate_after: u32,
}

impl Default for RetrySettings {
    fn default() -> Self {
        toml::from_str("").expect("every retry setting has a default")
    }
}

fn default_outbox_table() -> String {
    auditrelay_outbox::DEFAULT_TABLE.to_owned()
}

fn default_outbox_batch() -> usize {
    500
}

fn default_poll_interval() -> Duration {
    Duration::from_millis(50)
}

pub(super) fn default_true() -> bool {
    true
}
fn default_data_dir() -> DataDir {
    DataDir::new("auditrelay-data")
}
fn default_plugin_dir() -> PathBuf {
    PathBuf::from("plugins")
}
fn default_plugin_threads() -> usize {
    2
}
fn default_max_buffered_bytes() -> ByteSize {
    ByteSize::mib(64)
}
fn default_group_commit() -> Duration {
    Duration::from_millis(5)
}
fn default_segment_size() -> ByteSize {
    ByteSize::mib(64)
}
fn default_spool_max_size() -> ByteSize {
    ByteSize::gib(10)
}
fn default_block_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_dedup_ids() -> u64 {
    500_000
}
fn default_dedup_age() -> Duration {
    Duration::from_secs(600)
}
fn default_ack_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_connections() -> usize {
    1024
}
fn default_max_streams() -> usize {
    128
}
fn default_stream_stall() -> Duration {
    Duration::from_secs(10)
}
fn default_header_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_body_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_min_body_rate() -> ByteSize {
    ByteSize::kib(16)
}
fn default_max_body_memory() -> ByteSize {
    ByteSize::mib(256)
}
fn default_max_event_bytes() -> ByteSize {
    ByteSize::mib(1)
}
fn default_grant_quota() -> ByteSize {
    ByteSize::gib(10)
}
fn default_disk_reserve() -> ByteSize {
    ByteSize::mib(256)
}
fn default_max_plugin_size() -> ByteSize {
    ByteSize::mib(64)
}
fn default_plugin_load_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8686))
}
fn default_max_body_bytes() -> ByteSize {
    ByteSize::mib(10)
}
fn default_memory() -> ByteSize {
    ByteSize::mib(64)
}
fn default_http_requests() -> usize {
    8
}
fn default_call_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_events() -> usize {
    1000
}
fn default_max_batch_bytes() -> ByteSize {
    ByteSize::mib(1)
}
fn default_max_wait() -> Duration {
    Duration::from_millis(500)
}
fn default_initial_backoff() -> Duration {
    Duration::from_millis(100)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}
fn default_isolate_after() -> u32 {
    3
}
fn default_circuit_after() -> u32 {
    5
}
fn default_circuit_open_for() -> Duration {
    Duration::from_secs(30)
}

impl Config {
    /// Reads, expands and checks a configuration file. Relative paths in it
    /// are resolved against the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut config = Self::parse(&text, &path.display().to_string(), &env_lookup)?;
        if let Some(base) = path.parent() {
            config.resolve_paths(base);
        }
        Ok(config)
    }

    /// The embedded default configuration (see [`DEFAULT_CONFIG`]).
    pub fn embedded_default() -> Config {
        Self::parse(DEFAULT_CONFIG, "<embedded default>", &env_lookup)
            .expect("the embedded default configuration is valid")
    }

    /// Parses TOML text; `origin` names it in errors, `env` resolves
    /// `${VAR}` references.
    pub fn parse(
        text: &str,
        origin: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        config.origin = origin.to_owned();
        config.expand_env(env)?;
        config.check()?;
        Ok(config)
    }

    /// The instances that will run, in name order.
    pub fn enabled_plugins(&self) -> impl Iterator<Item = (&str, &PluginSettings)> {
        self.plugins
            .iter()
            .filter(|(_, settings)| settings.enabled)
            .map(|(name, settings)| (name.as_str(), settings))
    }

    /// What loading one plugin file may cost.
    pub(crate) fn load_limits(&self) -> crate::runtime::LoadLimits {
        crate::runtime::LoadLimits {
            max_size: self.relay.max_plugin_size.as_u64(),
            timeout: self.relay.plugin_load_timeout,
        }
    }

    /// The compiled-plugin cache directory.
    pub fn cache_dir(&self) -> PathBuf {
        self.relay
            .cache_dir
            .clone()
            .unwrap_or_else(|| self.relay.data_dir.cache())
    }

    /// Makes relative paths relative to `base` (the config file's directory).
    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(self.relay.data_dir.path_mut());
        resolve(&mut self.relay.plugin_dir);
        if let Some(dir) = &mut self.relay.cache_dir {
            resolve(dir);
        }
        if let Some(file) = &mut self.integrity.key_file {
            resolve(file);
        }
        for settings in self.plugins.values_mut() {
            if let Some(dir) = &mut settings.grant_dir {
                resolve(dir);
            }
        }
        for settings in self.ingest.file.values_mut() {
            settings.paths.iter_mut().for_each(resolve);
        }
    }

    /// Replaces `${VAR}` references in every string an operator is likely
    /// to template: paths, tokens, secrets, hosts and plugin config.
    fn expand_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let origin = self.origin.clone();
        let expand = |key: &str, value: &str| {
            interpolate(value, env).map_err(|message| ConfigError::Invalid {
                origin: origin.clone(),
                key: key.to_owned(),
                message,
            })
        };
        // A secret's text is never quoted back, not even when it cannot
        // be expanded (a random password may hold a literal `${`).
        let expand_secret = |key: &str, secret: &Secret| -> Result<Secret, ConfigError> {
            interpolate(secret.expose(), env)
                .map(Secret::new)
                .map_err(|message| ConfigError::Invalid {
                    origin: origin.clone(),
                    key: key.to_owned(),
                    message: message.replace(
                        &format!("{:?}", secret.expose()),
                        "the value (a secret, not shown)",
                    ),
                })
        };
        let expand_path = |key: &str, path: &mut PathBuf| -> Result<(), ConfigError> {
            if let Some(text) = path.to_str() {
                *path = PathBuf::from(expand(key, text)?);
            }
            Ok(())
        };
        expand_path("relay.data_dir", self.relay.data_dir.path_mut())?;
        expand_path("relay.plugin_dir", &mut self.relay.plugin_dir)?;
        if let Some(dir) = &mut self.relay.cache_dir {
            expand_path("relay.cache_dir", dir)?;
        }
        if let Some(token) = &mut self.ingest.http.auth_token {
            *token = expand_secret("ingest.http.auth_token", token)?;
        }
        for (name, outbox) in &mut self.ingest.outbox {
            let key = format!("ingest.outbox.{name}.url");
            outbox.url = expand_secret(&key, &outbox.url)?;
        }
        // A source's mapper is a plugin like the others: its secrets and
        // config are templated the same way.
        let expand_mapper = |key: &str,
                             mapper: &mut Option<MapperSettings>|
         -> Result<(), ConfigError> {
            let Some(mapper) = mapper else {
                return Ok(());
            };
            for (secret_name, secret) in &mut mapper.secrets {
                *secret = expand_secret(&format!("{key}.mapper.secrets.{secret_name}"), secret)?;
            }
            expand_table(&format!("{key}.mapper.config"), &mut mapper.config, &expand)
        };
        for (name, webhook) in &mut self.ingest.webhook {
            let key = format!("ingest.webhook.{name}");
            webhook.secret = expand_secret(&format!("{key}.secret"), &webhook.secret)?;
            expand_mapper(&key, &mut webhook.mapper)?;
        }
        for (name, file) in &mut self.ingest.file {
            let key = format!("ingest.file.{name}");
            for (i, path) in file.paths.iter_mut().enumerate() {
                expand_path(&format!("{key}.paths[{i}]"), path)?;
            }
            expand_mapper(&key, &mut file.mapper)?;
        }
        for (name, poll) in &mut self.ingest.poll {
            let key = format!("ingest.poll.{name}");
            poll.url = expand(&format!("{key}.url"), &poll.url)?;
            if let Some(secret) = &mut poll.secret {
                *secret = expand_secret(&format!("{key}.secret"), secret)?;
            }
            if let Some(username) = &mut poll.username {
                *username = expand(&format!("{key}.username"), username)?;
            }
            for (header, value) in &mut poll.headers {
                *value = expand(&format!("{key}.headers.{header}"), value)?;
            }
            for (header, value) in &mut poll.secret_headers {
                *value = expand_secret(&format!("{key}.secret_headers.{header}"), value)?;
            }
            expand_mapper(&key, &mut poll.mapper)?;
        }
        for (i, rule) in self.redact.iter_mut().enumerate() {
            if let Some(secret) = &mut rule.hash_key {
                *secret = expand_secret(&format!("redact[{i}].hash_key"), secret)?;
            }
        }
        for (name, settings) in &mut self.plugins {
            let key = |rest: &str| format!("plugins.{name}.{rest}");
            for (i, host) in settings.allowed_hosts.iter_mut().enumerate() {
                *host = expand(&key(&format!("allowed_hosts[{i}]")), host)?;
            }
            for (secret_name, secret) in &mut settings.secrets {
                *secret = expand_secret(&key(&format!("secrets.{secret_name}")), secret)?;
            }
            if let Some(dir) = &mut settings.grant_dir {
                expand_path(&key("grant_dir"), dir)?;
            }
            expand_table(&key("config"), &mut settings.config, &expand)?;
        }
        Ok(())
    }
}

fn expand_table(
    prefix: &str,
    table: &mut toml::Table,
    expand: &dyn Fn(&str, &str) -> Result<String, ConfigError>,
) -> Result<(), ConfigError> {
    for (key, value) in table.iter_mut() {
        expand_value(&format!("{prefix}.{key}"), value, expand)?;
    }
    Ok(())
}

fn expand_value(
    key: &str,
    value: &mut toml::Value,
    expand: &dyn Fn(&str, &str) -> Result<String, ConfigError>,
) -> Result<(), ConfigError> {
    match value {
        toml::Value::String(text) => *text = expand(key, text)?,
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_value(&format!("{key}[{i}]"), item, expand)?;
            }
        }
        toml::Value::Table(table) => expand_table(key, table, expand)?,
        _ => {}
    }
    Ok(())
}

fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[cfg(test)]
mod tests;
