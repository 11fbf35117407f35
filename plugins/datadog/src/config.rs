//! The `[plugins.<name>.config]` table of the Datadog Logs exporter.

use std::collections::BTreeMap;
use std::time::Duration;

use auditrelay_plugin_api::compression::Compression;
use auditrelay_plugin_api::settings;
use bytesize::ByteSize;
use serde::Deserialize;

/// Datadog sites, by the name Datadog's docs give them.
pub const SITES: [&str; 7] = [
    "datadoghq.com",
    "us3.datadoghq.com",
    "us5.datadoghq.com",
    "datadoghq.eu",
    "ap1.datadoghq.com",
    "ap2.datadoghq.com",
    "ddog-gov.com",
];

/// Settings; every key is listed with its default in the plugin's README.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatadogConfig {
    /// The Datadog site (`datadoghq.eu`, `us3.datadoghq.com`, ...).
    #[serde(default = "default_site")]
    pub site: String,
    /// Full intake URL, overriding `site` (a proxy, or a test receiver).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// `ddsource`.
    #[serde(default = "default_ddsource")]
    pub ddsource: String,
    /// `service`; unset uses each event's `source`.
    #[serde(default)]
    pub service: Option<String>,
    /// `hostname`; unset leaves it out.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Fixed tags, `key:value` each.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Tags from envelope fields: tag name → envelope path.
    #[serde(default = "default_tag_fields")]
    pub tag_fields: BTreeMap<String, String>,
    /// `gzip` (default), `zstd` or `none`.
    #[serde(default)]
    pub compression: Compression,
    /// Largest uncompressed request; Datadog takes 5 MB.
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: ByteSize,
    /// Limit for each request's response.
    #[serde(default = "default_timeout", deserialize_with = "settings::duration")]
    pub timeout: Duration,
}

impl DatadogConfig {
    /// The intake URL.
    pub fn url(&self) -> String {
        match &self.endpoint {
            Some(endpoint) => endpoint.clone(),
            None => format!("https://http-intake.logs.{}/api/v2/logs", self.site),
        }
    }
}

pub(crate) fn default_site() -> String {
    "datadoghq.com".to_owned()
}

pub(crate) fn default_ddsource() -> String {
    "auditrelay".to_owned()
}

pub(crate) fn default_tag_fields() -> BTreeMap<String, String> {
    [
        ("tenant", "tenant"),
        ("action", "type"),
        ("outcome", "action.outcome"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Under Datadog's 5 MB, with room for a proxy's additions (Vector aims the same).
fn default_max_request_bytes() -> ByteSize {
    ByteSize::b(4_250_000)
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
