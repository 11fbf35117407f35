//! `[ingest.webhook.<name>]`: signed webhooks from systems the relay does
//! not control, each mapped to envelopes by a mapper plugin (or taken as
//! envelopes when it names none).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

use super::{Secret, default_true, units};

/// `[ingest.webhook.<name>]`: `POST /v1/sources/<name>`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Whether the route answers.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// How a request proves it comes from the sender.
    pub auth: WebhookAuth,
    /// The bearer token or the HMAC key, shared with the sender (usually
    /// `"${ENV}"`); never logged or reported.
    pub secret: Secret,
    /// `hmac`: the header holding the signature.
    #[serde(default = "default_signature_header")]
    pub signature_header: String,
    /// `hmac`: the header holding the signing time (Unix seconds).
    #[serde(default = "default_timestamp_header")]
    pub timestamp_header: String,
    /// `hmac`: how far the signing time may be from the relay's clock, and
    /// how long a used signature is remembered (refused if used again).
    #[serde(default = "default_skew", with = "units::duration")]
    pub max_skew: Duration,
    /// Request headers handed to the mapper as metadata (lower-case), e.g.
    /// an event-type header. Never the auth headers.
    #[serde(default)]
    pub metadata_headers: Vec<String>,
    /// The most `<data_dir>/sources/<name>/refused.ndjson` may hold; past
    /// it, requests with refused records are answered `503`.
    #[serde(default = "default_max_refused_bytes")]
    pub max_refused_bytes: ByteSize,
    /// The mapper that turns a request body into envelopes; none: the body
    /// is envelopes, read as `POST /v1/events` reads them.
    #[serde(default)]
    pub mapper: Option<MapperSettings>,
}

/// `[ingest.webhook.<name>] auth`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WebhookAuth {
    /// `Authorization: Bearer <secret>`.
    Bearer,
    /// The GRC platform's v2 scheme: `signature_header` holds the hex
    /// HMAC-SHA256 of `<timestamp>:<hex SHA-256 of the body>`, keyed with
    /// the secret; `timestamp_header` the signing time. Each signature is
    /// accepted once within `max_skew`.
    Hmac,
    /// GitHub's (and Stalwart's) `X-Hub-Signature-256: sha256=<hex HMAC-SHA256
    /// of the raw body>`. Carries no time, so it cannot refuse a replay;
    /// the envelope id's dedup stores a resent body once.
    HubSignature,
}

impl WebhookAuth {
    /// The name in TOML.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookAuth::Bearer => "bearer",
            WebhookAuth::Hmac => "hmac",
            WebhookAuth::HubSignature => "hub-signature",
        }
    }
}

/// `[ingest.<kind>.<name>.mapper]`: the mapper plugin of a source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapperSettings {
    /// The mapper's `describe` name (e.g. `json-map`).
    pub plugin: String,
    /// Explicit path to its `.wasm` file (relative to `plugin_dir`).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Passed to the mapper's `init` as JSON.
    #[serde(default)]
    pub config: toml::Table,
    /// Secrets by the name the mapper asks for.
    #[serde(default)]
    pub secrets: BTreeMap<String, Secret>,
    /// Memory and time per call.
    #[serde(default)]
    pub limits: MapperLimits,
}

/// `[ingest.<kind>.<name>.mapper.limits]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapperLimits {
    /// Linear memory cap for the mapper.
    #[serde(default = "default_mapper_memory")]
    pub memory: ByteSize,
    /// Wall-clock deadline for each call: a sender waits on it, so it is
    /// short by default.
    #[serde(default = "default_mapper_timeout", with = "units::duration")]
    pub timeout: Duration,
}

impl Default for MapperLimits {
    fn default() -> Self {
        toml::from_str("").expect("every limit has a default")
    }
}

fn default_mapper_memory() -> ByteSize {
    ByteSize::mib(64)
}
fn default_mapper_timeout() -> Duration {
    Duration::from_secs(2)
}

fn default_signature_header() -> String {
    "x-webhook-signature".into()
}
fn default_timestamp_header() -> String {
    "x-webhook-timestamp".into()
}
pub(super) fn default_max_refused_bytes() -> ByteSize {
    ByteSize::gib(1)
}
fn default_skew() -> Duration {
    Duration::from_secs(300)
}

/// Fewest bytes of a secret: a shorter HMAC key or token is guessable.
pub const MIN_SECRET_BYTES: usize = 16;

/// Headers that carry credentials: never handed to a mapper.
pub const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "cookie",
    "proxy-authorization",
    "x-hub-signature",
    "x-hub-signature-256",
];
