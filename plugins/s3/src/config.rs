//! The `[plugins.<name>.config]` table of the S3 exporter.

use std::time::Duration;

use auditrelay_plugin_api::compression::Compression;
use auditrelay_plugin_api::settings;
use serde::Deserialize;

/// Settings; every key is listed with its default in the plugin's README.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// The bucket objects are written to.
    pub bucket: String,
    /// The bucket's region; part of every signature.
    #[serde(default = "default_region")]
    pub region: String,
    /// `https://host[:port]` of an S3-compatible store; default
    /// `https://s3.<region>.amazonaws.com`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Address the bucket in the path (`endpoint/bucket/key`) instead of
    /// the host name (`bucket.endpoint/key`). Most S3-compatible stores
    /// need it.
    #[serde(default)]
    pub force_path_style: bool,
    /// Key prefix template: strftime fields (`%Y/%m/%d`, UTC, from each
    /// event's time) and `{tenant}`, `{source}`, `{type}`.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// `gzip` (default), `zstd` or `none`.
    #[serde(default)]
    pub compression: Compression,
    /// The access key id; when unset, the `aws_access_key_id` secret.
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// `x-amz-storage-class` for new objects (e.g. `STANDARD_IA`).
    #[serde(default)]
    pub storage_class: Option<String>,
    /// Limit for each PUT's response.
    #[serde(default = "default_timeout", deserialize_with = "settings::duration")]
    pub timeout: Duration,
}

fn default_region() -> String {
    "us-east-1".to_owned()
}

/// Partitioned by day, like most audit lakes; Athena and Glue read it as is.
pub(crate) fn default_key_prefix() -> String {
    "audit/%Y/%m/%d/".to_owned()
}

fn default_timeout() -> Duration {
    Duration::from_secs(60)
}
