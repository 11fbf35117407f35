//! The `[plugins.<name>.config]` table of the Splunk HEC exporter.

use std::collections::BTreeMap;
use std::time::Duration;

use auditrelay_plugin_api::compression::Compression;
use auditrelay_plugin_api::settings;
use bytesize::ByteSize;
use serde::Deserialize;

/// Settings; every key is listed with its default in the plugin's README.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HecConfig {
    /// `https://host:8088`, without a path.
    pub endpoint: String,
    /// HEC `index`; unset leaves the token's default index.
    #[serde(default)]
    pub index: Option<String>,
    /// HEC `source`; unset uses each event's `source`.
    #[serde(default)]
    pub source: Option<String>,
    /// HEC `sourcetype`.
    #[serde(default = "default_sourcetype")]
    pub sourcetype: String,
    /// HEC `host`; unset leaves Splunk's default (the sender's address).
    #[serde(default)]
    pub host: Option<String>,
    /// Indexed fields: field name → envelope path (`actor.id`). Absent
    /// values are left out.
    #[serde(default = "default_fields")]
    pub fields: BTreeMap<String, String>,
    /// `gzip` (default), `zstd` is not accepted by HEC, or `none`.
    #[serde(default)]
    pub compression: Compression,
    /// Wait for indexer acknowledgement before reporting success.
    #[serde(default)]
    pub acknowledgements: bool,
    /// How long to wait for acknowledgement before retrying the batch.
    #[serde(
        default = "default_ack_timeout",
        deserialize_with = "settings::duration"
    )]
    pub ack_timeout: Duration,
    /// Pause between polls of `/services/collector/ack`.
    #[serde(
        default = "default_ack_poll_interval",
        deserialize_with = "settings::duration"
    )]
    pub ack_poll_interval: Duration,
    /// Largest uncompressed request body; larger batches are split.
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: ByteSize,
    /// Limit for each request's response.
    #[serde(default = "default_timeout", deserialize_with = "settings::duration")]
    pub timeout: Duration,
}

pub(crate) fn default_sourcetype() -> String {
    "auditrelay:audit".to_owned()
}

pub(crate) fn default_fields() -> BTreeMap<String, String> {
    [
        ("tenant", "tenant"),
        ("actor", "actor.id"),
        ("action", "type"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn default_ack_timeout() -> Duration {
    Duration::from_secs(20)
}

fn default_ack_poll_interval() -> Duration {
    Duration::from_millis(500)
}

/// Splunk Cloud's request cap is 1 MB; Vector sends about that much.
fn default_max_request_bytes() -> ByteSize {
    ByteSize::b(1_000_000)
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
